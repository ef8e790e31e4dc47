//! IPv4 (RFC 791): header checksum, options skipped, fragmentation fields.

use std::net::Ipv4Addr;

use super::{ChecksumPolicy, ParseError};

/// The protocol field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 1
    Icmp,
    /// 6
    Tcp,
    /// 17
    Udp,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> u8 {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(other) => other,
        }
    }
}

/// An address with a prefix length, e.g. 10.77.0.2/24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// A CIDR; `None` if `prefix_len > 32`.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Cidr> {
        (prefix_len <= 32).then_some(Ipv4Cidr { addr, prefix_len })
    }
    /// The netmask.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits =
            if self.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix_len)) };
        Ipv4Addr::from(bits)
    }
    /// True if `addr` is inside this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        u32::from(addr) & mask == u32::from(self.addr) & mask
    }
    /// The directed broadcast address of this network.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask()))
    }
}

impl core::str::FromStr for Ipv4Cidr {
    type Err = ParseError;
    /// Parses `a.b.c.d/len`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.split_once('/').ok_or(ParseError::Malformed)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| ParseError::Malformed)?;
        let len: u8 = len.parse().map_err(|_| ParseError::Malformed)?;
        Ipv4Cidr::new(addr, len).ok_or(ParseError::Malformed)
    }
}

/// A checked view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }
    /// Wraps a buffer after checking that the header length and total length fit inside it
    /// (total length ≥ header length ≥ 20). Trailing bytes beyond total length (Ethernet padding)
    /// are allowed and ignored by `payload`.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let _ = buffer;
        todo!("wire helper")
    }
    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        todo!("wire helper")
    }
    /// Total length field.
    pub fn total_len(&self) -> usize {
        todo!("wire helper")
    }
    /// The payload: bytes from the header's end to total length.
    pub fn payload(&self) -> &[u8] {
        todo!("wire helper")
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// The payload, writable (header length from the buffer's IHL field).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        todo!("wire helper")
    }
}

/// The meaning of an IPv4 header. Options are skipped on parse and never emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length (total length − header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (upper 6 bits) and ECN (lower 2 bits).
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// DF flag.
    pub dont_frag: bool,
    /// MF flag.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Parses a checked packet: version 4, IHL ≥ 5, the header checksum if `checksum.verify_rx`,
    /// and the reserved flag bit clear. Options are skipped.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Ipv4Packet<T>,
        checksum: ChecksumPolicy,
    ) -> Result<Ipv4Repr, ParseError> {
        let _ = (packet, checksum);
        todo!("wire helper")
    }
    /// Always [`HEADER_LEN`]: options are never emitted.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes a 20-byte header (and its checksum if `checksum.fill_tx`) into `packet`, whose
    /// buffer must be at least `HEADER_LEN` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
        checksum: ChecksumPolicy,
    ) {
        let _ = (packet, checksum);
        todo!("wire helper")
    }
    /// True if this header describes a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }
}
