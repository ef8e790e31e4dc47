//! UDP (RFC 768).

use std::net::Ipv4Addr;

use super::{ChecksumPolicy, ParseError};

/// A checked view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }
    /// Wraps a buffer after checking that 8 ≤ length field ≤ buffer length.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let _ = buffer;
        todo!("wire helper")
    }
    /// The payload (up to the length field).
    pub fn payload(&self) -> &[u8] {
        todo!("wire helper")
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        todo!("wire helper")
    }
}

/// The meaning of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Parses a checked datagram, verifying the checksum when `checksum.verify_rx` and the
    /// checksum field is non-zero (zero means "none" in IPv4). Destination port 0 is malformed.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &'a UdpPacket<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        checksum: ChecksumPolicy,
    ) -> Result<UdpRepr<'a>, ParseError> {
        let _ = (packet, src_addr, dst_addr, checksum);
        todo!("wire helper")
    }
    /// Header plus payload length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
    /// Writes header and payload (and the checksum if `checksum.fill_tx`; a computed 0 is sent
    /// as 0xffff) into a buffer of at least `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        checksum: ChecksumPolicy,
    ) {
        let _ = (packet, src_addr, dst_addr, checksum);
        todo!("wire helper")
    }
}
