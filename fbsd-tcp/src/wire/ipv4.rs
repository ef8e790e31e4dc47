//! IPv4 (RFC 791): header checksum, options skipped, fragmentation fields.

use std::net::Ipv4Addr;

use super::{checksum, ChecksumPolicy, ParseError};

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

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// The "evil bit" (RFC 3514 notwithstanding, RFC 791 says it must be zero).
const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DONT_FRAG: u16 = 0x4000;
const FLAG_MORE_FRAGS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }
    /// Wraps a buffer after checking that the header length and total length fit inside it
    /// (total length ≥ header length ≥ 20). Trailing bytes beyond total length (Ethernet padding)
    /// are allowed and ignored by `payload`.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Ipv4Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let header_len = packet.header_len();
        if header_len < HEADER_LEN {
            return Err(ParseError::Malformed);
        }
        if header_len > len {
            return Err(ParseError::Truncated);
        }
        let total_len = packet.total_len();
        if total_len < header_len {
            return Err(ParseError::Malformed);
        }
        if total_len > len {
            return Err(ParseError::Truncated);
        }
        Ok(packet)
    }
    fn u16_at(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }
    fn addr_at(&self, range: core::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[range];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    /// The version field (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// DSCP and ECN.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }
    /// Total length field.
    pub fn total_len(&self) -> usize {
        usize::from(self.u16_at(field::LENGTH))
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }
    /// The reserved flag bit, which must be clear.
    pub fn reserved_flag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_RESERVED != 0
    }
    /// The DF flag.
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_DONT_FRAG != 0
    }
    /// The MF flag.
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_MORE_FRAGS != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & FRAG_OFFSET_MASK) * 8
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// Payload protocol.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }
    /// The header checksum field.
    pub fn header_checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        self.addr_at(field::SRC_ADDR)
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.addr_at(field::DST_ADDR)
    }
    /// True if the header checksum (over the header with its options) matches.
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(&[checksum::data(&self.buffer.as_ref()[..self.header_len()])])
    }
    /// The payload: bytes from the header's end to total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// The payload, writable (header length from the buffer's IHL field, end at total length:
    /// after [`Ipv4Repr::emit`] it is exactly `payload_len` bytes).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..self.total_len();
        &mut self.buffer.as_mut()[range]
    }
    /// Recomputes the header checksum over the header (with its options).
    pub fn fill_checksum(&mut self) {
        let header_len = self.header_len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].fill(0);
        let sum = checksum::checksum(&[checksum::data(&b[..header_len])]);
        b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
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
        if packet.version() != 4 {
            return Err(ParseError::Malformed);
        }
        if checksum.verify_rx && !packet.verify_checksum() {
            return Err(ParseError::Checksum);
        }
        if packet.reserved_flag() {
            return Err(ParseError::Malformed);
        }
        Ok(Ipv4Repr::read(packet))
    }

    /// Parses the original datagram's header quoted in an ICMP error, and returns it with its
    /// length in bytes (options included). Lenient where a quote legitimately differs from a
    /// datagram: the checksum is not verified (routers rewrite TTL and checksum after the
    /// fact, and some quote the rewritten header), and the total length may exceed the bytes
    /// quoted (only the start of the datagram is quoted). The version and IHL must still make
    /// sense, and the header itself must be complete.
    pub(super) fn parse_quoted(bytes: &[u8]) -> Result<(Ipv4Repr, usize), ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let packet = Ipv4Packet::new_unchecked(bytes);
        if packet.version() != 4 {
            return Err(ParseError::Malformed);
        }
        let header_len = packet.header_len();
        if header_len < HEADER_LEN || packet.total_len() < header_len {
            return Err(ParseError::Malformed);
        }
        if header_len > bytes.len() {
            return Err(ParseError::Truncated);
        }
        Ok((Ipv4Repr::read(&packet), header_len))
    }

    /// The fields of a packet whose header length and total length are known to be consistent
    /// (header_len ≤ total_len, and the fixed header present).
    fn read<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - packet.header_len(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        }
    }

    /// Always [`HEADER_LEN`]: options are never emitted.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes a 20-byte header (and its checksum if `checksum.fill_tx`) into `packet`, whose
    /// buffer must be at least `HEADER_LEN` bytes.
    ///
    /// # Panics
    /// If `payload_len` does not fit a datagram (more than 65515 bytes): the engine never builds
    /// such a header, so this is a bug, not input.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
        checksum: ChecksumPolicy,
    ) {
        let total_len = u16::try_from(HEADER_LEN + self.payload_len)
            .expect("IPv4 payload_len exceeds the 65535-byte datagram limit");
        debug_assert_eq!(self.frag_offset % 8, 0, "fragment offsets are multiples of 8");
        let mut flags_offset = (self.frag_offset / 8) & FRAG_OFFSET_MASK;
        if self.dont_frag {
            flags_offset |= FLAG_DONT_FRAG;
        }
        if self.more_frags {
            flags_offset |= FLAG_MORE_FRAGS;
        }
        let b = packet.buffer.as_mut();
        b[field::VER_IHL] = 0x40 | (HEADER_LEN / 4) as u8;
        b[field::TOS] = self.tos;
        b[field::LENGTH].copy_from_slice(&total_len.to_be_bytes());
        b[field::IDENT].copy_from_slice(&self.ident.to_be_bytes());
        b[field::FLG_OFF].copy_from_slice(&flags_offset.to_be_bytes());
        b[field::TTL] = self.ttl;
        b[field::PROTOCOL] = self.protocol.into();
        b[field::CHECKSUM].fill(0);
        b[field::SRC_ADDR].copy_from_slice(&self.src_addr.octets());
        b[field::DST_ADDR].copy_from_slice(&self.dst_addr.octets());
        if checksum.fill_tx {
            let sum = checksum::checksum(&[checksum::data(&b[..HEADER_LEN])]);
            b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
    }
    /// True if this header describes a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: true };
    const NO_VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: false };

    /// The header of a ping from 10.0.0.1 to 10.0.0.2 as Linux sends it (DF, TTL 64), with the
    /// 64-byte ICMP message zeroed.
    fn ping() -> Vec<u8> {
        let mut bytes = vec![
            0x45, 0x00, 0x00, 0x54, 0xb2, 0xce, 0x40, 0x00, 0x40, 0x01, 0x73, 0xd8, 10, 0, 0, 1,
            10, 0, 0, 2,
        ];
        bytes.resize(0x54, 0);
        bytes
    }

    fn ping_repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Icmp,
            payload_len: 64,
            ttl: 64,
            tos: 0,
            ident: 0xb2ce,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    #[test]
    fn parse_captured_header() {
        let bytes = ping();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet, VERIFY).unwrap(), ping_repr());
        assert_eq!(packet.payload().len(), 64);
        assert_eq!(packet.header_checksum(), 0x73d8);
    }

    #[test]
    fn rfc_textbook_checksum() {
        // The widely reproduced example header 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        let mut bytes = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        bytes.resize(0x73, 0);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let repr = Ipv4Repr::parse(&packet, VERIFY).unwrap();
        assert_eq!(repr.protocol, IpProtocol::Udp);
        assert_eq!(repr.payload_len, 0x73 - 20);
        let mut out = [0u8; 20];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), VERIFY);
        assert_eq!(out[..], bytes[..20]);
    }

    #[test]
    fn emit_matches_capture() {
        let mut out = vec![0xaau8; 0x54];
        let mut packet = Ipv4Packet::new_unchecked(&mut out[..]);
        ping_repr().emit(&mut packet, VERIFY);
        packet.payload_mut().fill(0);
        assert_eq!(out, ping());
    }

    #[test]
    fn round_trips_flags_and_fragments() {
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..200 {
            let r = next();
            let repr = Ipv4Repr {
                src_addr: Ipv4Addr::from(next()),
                dst_addr: Ipv4Addr::from(next()),
                protocol: IpProtocol::from(r as u8),
                payload_len: (next() % 1480) as usize,
                ttl: (r >> 8) as u8,
                tos: (r >> 16) as u8,
                ident: next() as u16,
                dont_frag: r & (1 << 24) != 0,
                more_frags: r & (1 << 25) != 0,
                frag_offset: (next() as u16 & FRAG_OFFSET_MASK) * 8,
            };
            let mut buf = vec![0u8; HEADER_LEN + repr.payload_len];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), VERIFY);
            let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(Ipv4Repr::parse(&packet, VERIFY).unwrap(), repr);
            assert_eq!(repr.is_fragment(), repr.more_frags || repr.frag_offset != 0);
        }
    }

    #[test]
    fn options_are_skipped() {
        // IHL 6 with a 4-byte option (Router Alert, RFC 2113), then an 8-byte payload.
        let mut bytes = [0u8; 32];
        bytes[..20].copy_from_slice(&ping()[..20]);
        bytes[0] = 0x46;
        bytes[2..4].copy_from_slice(&32u16.to_be_bytes());
        bytes[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        bytes[24..32].copy_from_slice(b"payload!");
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let repr = Ipv4Repr::parse(&packet, VERIFY).unwrap();
        assert_eq!(repr.payload_len, 8);
        assert_eq!(packet.payload(), b"payload!");
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut bytes = ping();
        bytes[2..4].copy_from_slice(&28u16.to_be_bytes());
        bytes.truncate(46);
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet, VERIFY).unwrap().payload_len, 8);
        assert_eq!(packet.payload().len(), 8);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = ping();
        for len in 0..bytes.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&bytes[..len]).err(),
                Some(ParseError::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let check = |patch: &dyn Fn(&mut Vec<u8>), policy, expected| {
            let mut bytes = ping();
            patch(&mut bytes);
            let result = Ipv4Packet::new_checked(&bytes[..])
                .and_then(|packet| Ipv4Repr::parse(&packet, policy));
            assert_eq!(result, Err(expected));
        };
        check(&|b| b[0] = 0x65, NO_VERIFY, ParseError::Malformed); // version 6
        check(&|b| b[0] = 0x44, NO_VERIFY, ParseError::Malformed); // IHL 4
        check(&|b| b[0] = 0x40, NO_VERIFY, ParseError::Malformed); // IHL 0
        check(
            &|b| {
                b[0] = 0x4f; // IHL 15: a 60-byte header in a 40-byte datagram
                b[2..4].copy_from_slice(&40u16.to_be_bytes());
            },
            NO_VERIFY,
            ParseError::Malformed,
        );
        check(&|b| b[2..4].copy_from_slice(&19u16.to_be_bytes()), NO_VERIFY, ParseError::Malformed);
        check(
            &|b| b[2..4].copy_from_slice(&0x55u16.to_be_bytes()),
            NO_VERIFY,
            ParseError::Truncated,
        );
        check(&|b| b[6] |= 0x80, NO_VERIFY, ParseError::Malformed); // reserved flag
        check(&|b| b[8] = 63, VERIFY, ParseError::Checksum); // TTL changed, checksum not
        check(&|b| b[11] ^= 1, VERIFY, ParseError::Checksum);
    }

    #[test]
    fn checksum_is_ignored_when_verification_is_off() {
        let mut bytes = ping();
        bytes[10] ^= 0xff;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet, NO_VERIFY).unwrap(), ping_repr());
        let mut out = [0u8; 20];
        let no_fill = ChecksumPolicy { fill_tx: false, verify_rx: false };
        ping_repr().emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), no_fill);
        assert_eq!(out[10..12], [0, 0]);
    }

    #[test]
    fn quoted_header_is_parsed_leniently() {
        // A quote of the ping: its header and 8 payload bytes, checksum broken, total length
        // still saying 84.
        let mut bytes = ping()[..28].to_vec();
        bytes[10] ^= 0xff;
        assert_eq!(Ipv4Repr::parse_quoted(&bytes), Ok((ping_repr(), 20)));
        assert_eq!(Ipv4Repr::parse_quoted(&bytes[..19]), Err(ParseError::Truncated));
        bytes[0] = 0x46;
        assert_eq!(Ipv4Repr::parse_quoted(&bytes[..23]), Err(ParseError::Truncated));
        assert_eq!(
            Ipv4Repr::parse_quoted(&bytes).map(|(r, len)| (r.payload_len, len)),
            Ok((60, 24))
        );
        bytes[0] = 0x55;
        assert_eq!(Ipv4Repr::parse_quoted(&bytes), Err(ParseError::Malformed));
    }

    #[test]
    fn cidr() {
        let cidr: Ipv4Cidr = "10.77.0.2/24".parse().unwrap();
        assert_eq!(cidr.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(cidr.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
        assert!(cidr.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 77, 1, 2)));
        assert_eq!(
            Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).unwrap().netmask(),
            Ipv4Addr::UNSPECIFIED
        );
        assert!("10.0.0.1/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.1".parse::<Ipv4Cidr>().is_err());
    }
}
