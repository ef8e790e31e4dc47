//! UDP (RFC 768).

use std::net::Ipv4Addr;

use super::{checksum, ChecksumPolicy, ParseError};

/// A checked view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// The IP protocol number, for the pseudo-header.
const PROTOCOL: u8 = 17;

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }
    /// Wraps a buffer after checking that 8 ≤ length field ≤ buffer length.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = UdpPacket { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let length = packet.len();
        if length < HEADER_LEN {
            return Err(ParseError::Malformed);
        }
        if length > len {
            return Err(ParseError::Truncated);
        }
        Ok(packet)
    }
    fn u16_at(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }
    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)] // a datagram is never shorter than its header
    pub fn len(&self) -> usize {
        usize::from(self.u16_at(field::LENGTH))
    }
    /// The checksum field (0: none was computed).
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    /// True if the checksum field matches header, payload and pseudo-header (a zero field
    /// matches anything: the sender did not compute one).
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let length = self.len();
        checksum::verifies(&[
            checksum::pseudo_header(src_addr, dst_addr, PROTOCOL, length as u32),
            checksum::data(&self.buffer.as_ref()[..length]),
        ])
    }
    /// The payload (up to the length field).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len()]
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
    /// Computes and stores the checksum over header and payload (up to the length field) with
    /// the pseudo-header; a computed 0 is stored as 0xffff, since 0 means "no checksum".
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        let length = self.len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].fill(0);
        let sum = match checksum::checksum(&[
            checksum::pseudo_header(src_addr, dst_addr, PROTOCOL, length as u32),
            checksum::data(&b[..length]),
        ]) {
            0 => 0xffff,
            sum => sum,
        };
        b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
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
        packet: &UdpPacket<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        checksum: ChecksumPolicy,
    ) -> Result<UdpRepr<'a>, ParseError> {
        if packet.dst_port() == 0 {
            return Err(ParseError::Malformed);
        }
        if checksum.verify_rx && !packet.verify_checksum(src_addr, dst_addr) {
            return Err(ParseError::Checksum);
        }
        // Borrow the payload from the buffer itself (lifetime 'a), not from `packet`.
        let buffer: &'a T = packet.buffer;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: &buffer.as_ref()[HEADER_LEN..packet.len()],
        })
    }
    /// Header plus payload length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
    /// Writes header and payload (and the checksum if `checksum.fill_tx`; a computed 0 is sent
    /// as 0xffff) into a buffer of at least `buffer_len()` bytes.
    ///
    /// # Panics
    /// If the payload does not fit the 16-bit length field (the caller bounds datagrams by
    /// the IP limit long before).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        checksum: ChecksumPolicy,
    ) {
        let length = u16::try_from(self.buffer_len())
            .expect("UDP payload exceeds the 65535-byte datagram limit");
        let b = packet.buffer.as_mut();
        b[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        b[field::LENGTH].copy_from_slice(&length.to_be_bytes());
        b[field::CHECKSUM].fill(0);
        b[HEADER_LEN..usize::from(length)].copy_from_slice(self.payload);
        if checksum.fill_tx {
            packet.fill_checksum(src_addr, dst_addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: true };
    const NO_VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: false };
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A DNS query header (id 0x1234, RD, one question, no question body) from port 53000 to 53,
    /// with its checksum for 10.0.0.1 → 10.0.0.2.
    const QUERY: [u8; 20] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x14, 0x09, 0x51, // header
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn parse_captured_datagram() {
        let packet = UdpPacket::new_checked(&QUERY[..]).unwrap();
        let repr = UdpRepr::parse(&packet, SRC, DST, VERIFY).unwrap();
        assert_eq!(repr.src_port, 53000);
        assert_eq!(repr.dst_port, 53);
        assert_eq!(repr.payload, &QUERY[8..]);
    }

    #[test]
    fn emit_matches_capture() {
        let repr = UdpRepr { src_port: 53000, dst_port: 53, payload: &QUERY[8..] };
        let mut buf = [0xffu8; 20];
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), SRC, DST, VERIFY);
        assert_eq!(buf, QUERY);
    }

    #[test]
    fn round_trips_every_payload_length() {
        let data: Vec<u8> = (0..=255).collect();
        for len in 0..data.len() {
            let repr = UdpRepr { src_port: 1000 + len as u16, dst_port: 7, payload: &data[..len] };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), SRC, DST, VERIFY);
            let packet = UdpPacket::new_checked(&buf[..]).unwrap();
            assert_ne!(packet.checksum(), 0);
            assert_eq!(UdpRepr::parse(&packet, SRC, DST, VERIFY).unwrap(), repr);
        }
    }

    #[test]
    fn computed_zero_is_sent_as_all_ones() {
        // Choose two payload bytes so that the checksum computes to 0: the region must sum to
        // 0xffff, so the payload word is 0xffff minus the sum of everything else.
        let mut buf = [0u8; 10];
        let repr = UdpRepr { src_port: 1, dst_port: 2, payload: &[0, 0] };
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), SRC, DST, NO_VERIFY);
        buf[6..8].fill(0);
        let rest = checksum::combine(&[
            checksum::pseudo_header(SRC, DST, PROTOCOL, 10),
            checksum::data(&buf),
        ]);
        let word = (0xffff - rest).to_be_bytes();
        let repr = UdpRepr { src_port: 1, dst_port: 2, payload: &word };
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), SRC, DST, VERIFY);
        assert_eq!(buf[6..8], [0xff, 0xff]);
        let packet = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(UdpRepr::parse(&packet, SRC, DST, VERIFY).unwrap(), repr);
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut bytes = QUERY;
        bytes[6..8].fill(0);
        bytes[19] = 0x77; // would fail any real checksum
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(UdpRepr::parse(&packet, SRC, DST, VERIFY).is_ok());
        let mut out = QUERY;
        let repr = UdpRepr { src_port: 53000, dst_port: 53, payload: &QUERY[8..] };
        let no_fill = ChecksumPolicy { fill_tx: false, verify_rx: false };
        repr.emit(&mut UdpPacket::new_unchecked(&mut out[..]), SRC, DST, no_fill);
        assert_eq!(out[6..8], [0, 0]);
    }

    #[test]
    fn bad_checksum_is_refused_only_when_verifying() {
        let mut bytes = QUERY;
        bytes[19] = 1;
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(UdpRepr::parse(&packet, SRC, DST, VERIFY), Err(ParseError::Checksum));
        assert!(UdpRepr::parse(&packet, SRC, DST, NO_VERIFY).is_ok());
        // The pseudo-header counts: the same bytes from another source fail.
        let packet = UdpPacket::new_checked(&QUERY[..]).unwrap();
        let other = Ipv4Addr::new(10, 0, 0, 3);
        assert_eq!(UdpRepr::parse(&packet, other, DST, VERIFY), Err(ParseError::Checksum));
    }

    #[test]
    fn lengths_are_checked() {
        for len in 0..QUERY.len() {
            assert_eq!(UdpPacket::new_checked(&QUERY[..len]).err(), Some(ParseError::Truncated));
        }
        let mut bytes = QUERY;
        bytes[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&bytes[..]).err(), Some(ParseError::Malformed));
        // A length field shorter than the buffer: the rest is padding, not payload.
        bytes[4..6].copy_from_slice(&10u16.to_be_bytes());
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), &[0x12, 0x34]);
        let repr = UdpRepr::parse(&packet, SRC, DST, NO_VERIFY).unwrap();
        assert_eq!(repr.payload, &[0x12, 0x34]);
    }

    #[test]
    fn destination_port_zero_is_refused() {
        let mut bytes = QUERY;
        bytes[2..4].fill(0);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(UdpRepr::parse(&packet, SRC, DST, NO_VERIFY), Err(ParseError::Malformed));
    }
}
