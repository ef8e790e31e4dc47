//! TCP segments (RFC 9293) and their options: MSS, window scale, SACK-permitted, SACK (RFC 2018),
//! timestamps (RFC 7323).

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use std::net::Ipv4Addr;

use super::{ChecksumPolicy, ParseError};

/// A TCP sequence number: arithmetic wraps modulo 2^32 and comparison is RFC 1982 serial-number
/// comparison, valid while the two numbers are less than 2^31 apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The larger of two sequence numbers.
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self > other {
            self
        } else {
            other
        }
    }
    /// The smaller of two sequence numbers.
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self < other {
            self
        } else {
            other
        }
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, rhs: usize) -> SeqNumber {
        // Offsets are windows and segment lengths, always < 2^31; truncation is the intended
        // modular arithmetic.
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl Sub<SeqNumber> for SeqNumber {
    type Output = usize;
    /// The distance from `rhs` forward to `self`. Callers must know `self >= rhs` (debug-checked).
    fn sub(self, rhs: SeqNumber) -> usize {
        let diff = self.0.wrapping_sub(rhs.0) as i32;
        debug_assert!(diff >= 0, "sequence difference {self:?} - {rhs:?} is negative");
        diff.max(0) as usize
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Serial-number order. Not a total order over all of u32 (it is not transitive across
/// half the space), but it is within any window the engine compares.
impl Ord for SeqNumber {
    fn cmp(&self, other: &SeqNumber) -> Ordering {
        (self.0.wrapping_sub(other.0) as i32).cmp(&0)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The flag bits of a segment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union.
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        self.union(rhs)
    }
}

impl core::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        *self = self.union(rhs);
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, &str); 8] = [
            (TcpFlags::SYN, "S"),
            (TcpFlags::FIN, "F"),
            (TcpFlags::RST, "R"),
            (TcpFlags::PSH, "P"),
            (TcpFlags::ACK, "."),
            (TcpFlags::URG, "U"),
            (TcpFlags::ECE, "E"),
            (TcpFlags::CWR, "W"),
        ];
        for (flag, name) in NAMES {
            if self.contains(flag) {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

/// The control a segment carries, in the order RFC 9293's state machine tests them. Derived from
/// [`TcpFlags`] for convenience; SYN+FIN and SYN+RST combinations are refused by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpControl {
    /// None of SYN, FIN, RST.
    None,
    /// SYN.
    Syn,
    /// FIN.
    Fin,
    /// RST.
    Rst,
}

/// One SACK block: the half-open range `[left, right)` the receiver holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SackBlock {
    /// First sequence number held.
    pub left: SeqNumber,
    /// One past the last sequence number held.
    pub right: SeqNumber,
}

/// The options the engine understands. Unknown options are skipped; malformed option lists
/// (a length that runs past the header, a length < 2) make the segment malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN only; values above 14 are clamped to 14 per RFC 7323).
    pub window_scale: Option<u8>,
    /// SACK-permitted (SYN only).
    pub sack_permitted: bool,
    /// Up to 4 SACK blocks, first `sack_len` valid (a 40-byte option space holds at most 4; 3
    /// when timestamps are present).
    pub sack_blocks: [SackBlock; 4],
    /// How many of `sack_blocks` are valid.
    pub sack_len: u8,
    /// Timestamps: (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

impl TcpOptions {
    /// The valid SACK blocks.
    pub fn sack(&self) -> &[SackBlock] {
        &self.sack_blocks[..usize::from(self.sack_len).min(4)]
    }
    /// Bytes these options take when emitted, padded to a multiple of 4.
    pub fn emitted_len(&self) -> usize {
        todo!("wire helper")
    }
}

/// A checked view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Longest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }
    /// Wraps a buffer after checking that 20 ≤ data offset × 4 ≤ buffer length.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let _ = buffer;
        todo!("wire helper")
    }
    /// Header length (data offset × 4).
    pub fn header_len(&self) -> usize {
        todo!("wire helper")
    }
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        todo!("wire helper")
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// The payload, writable (after the header length recorded in the buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        todo!("wire helper")
    }
    /// Computes and stores the checksum over the whole buffer (header + payload; the buffer
    /// must be exactly the segment) with the pseudo-header of `src`/`dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let _ = (src, dst);
        todo!("wire helper")
    }
}

/// The meaning of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number of the first octet (or of the SYN).
    pub seq_number: SeqNumber,
    /// Acknowledgment number, `Some` iff ACK is set.
    pub ack_number: Option<SeqNumber>,
    /// All flag bits as received (including ACK, PSH, ECE, CWR, URG).
    pub flags: TcpFlags,
    /// The window field as on the wire (not scaled).
    pub window_len: u16,
    /// Urgent pointer (the engine does not implement urgent data; it is parsed and ignored).
    pub urgent_pointer: u16,
    /// Options.
    pub options: TcpOptions,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Parses a checked segment. Verifies the checksum if `checksum.verify_rx`. Refuses as
    /// malformed: a port of 0, SYN together with FIN or RST, and broken option lists.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &'a TcpPacket<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        checksum: ChecksumPolicy,
    ) -> Result<TcpRepr<'a>, ParseError> {
        let _ = (packet, src_addr, dst_addr, checksum);
        todo!("wire helper")
    }
    /// The control this segment carries.
    pub fn control(&self) -> TcpControl {
        if self.flags.contains(TcpFlags::RST) {
            TcpControl::Rst
        } else if self.flags.contains(TcpFlags::SYN) {
            TcpControl::Syn
        } else if self.flags.contains(TcpFlags::FIN) {
            TcpControl::Fin
        } else {
            TcpControl::None
        }
    }
    /// Sequence space the segment occupies: payload plus one for SYN and one for FIN.
    pub fn segment_len(&self) -> usize {
        self.payload.len()
            + usize::from(self.flags.contains(TcpFlags::SYN))
            + usize::from(self.flags.contains(TcpFlags::FIN))
    }
    /// Header length including options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.emitted_len()
    }
    /// Writes the header (with options) into the start of `packet`'s buffer, not the payload and
    /// not the checksum. The caller writes `payload_len` bytes after it, then calls
    /// [`TcpPacket::fill_checksum`] on exactly header + payload. This split lets the engine copy
    /// payload straight from its send ring (which may wrap) into the frame.
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        let _ = packet;
        todo!("wire helper")
    }
    /// Writes header, `self.payload` and (if `checksum.fill_tx`) the checksum into a buffer of
    /// exactly `header_len() + payload.len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        checksum: ChecksumPolicy,
    ) {
        let _ = (packet, src_addr, dst_addr, checksum);
        todo!("wire helper")
    }
}

#[cfg(test)]
mod seq_tests {
    use super::SeqNumber;

    #[test]
    fn comparison_and_distance_wrap() {
        let a = SeqNumber(u32::MAX - 10);
        let b = a + 20;
        assert_eq!(b.0, 9);
        assert!(b > a);
        assert!(a < b);
        assert_eq!(b - a, 20);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
    }
}
