//! TCP segments (RFC 9293) and their options: MSS, window scale, SACK-permitted, SACK (RFC 2018),
//! timestamps (RFC 7323).

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use std::net::Ipv4Addr;

use super::{checksum, ChecksumPolicy, ParseError};

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
        let sack_blocks = self.sack_blocks_to_emit();
        let sack_len = if sack_blocks == 0 { 0 } else { SACK_PREFIX_LEN + 8 * sack_blocks };
        self.fixed_len() + sack_len
    }

    /// Bytes of everything but SACK blocks, each already padded with NOPs to 4 bytes. At most
    /// 20 (MSS 4, SACK-permitted + timestamps 12, window scale 4).
    fn fixed_len(&self) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        // SACK-permitted (2 bytes) takes the place of the two NOPs that align timestamps.
        let sack_permitted_and_timestamps = match (self.sack_permitted, self.timestamp) {
            (_, Some(_)) => 12,
            (true, None) => 4,
            (false, None) => 0,
        };
        let window_scale = if self.window_scale.is_some() { 4 } else { 0 };
        mss + sack_permitted_and_timestamps + window_scale
    }

    /// How many SACK blocks fit after the other options: RFC 2018 sends the most recent blocks
    /// first, so when space runs out the last ones are dropped (3 fit beside timestamps, 4
    /// without).
    fn sack_blocks_to_emit(&self) -> usize {
        let blocks = self.sack().len();
        if blocks == 0 {
            return 0;
        }
        let room = MAX_OPTIONS_LEN.saturating_sub(self.fixed_len() + SACK_PREFIX_LEN);
        blocks.min(room / 8)
    }

    /// Writes the options in the order and NOP packing Linux uses, which middleboxes know
    /// best: MSS; SACK-permitted and timestamps sharing 12 bytes (or NOP-aligned alone);
    /// NOP and window scale; NOP NOP and the SACK blocks. Writes exactly `emitted_len()`
    /// bytes at the start of `buf`, and returns that length.
    fn emit(&self, buf: &mut [u8]) -> usize {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            put(&[kind::MSS, 4, hi, lo]);
        }
        match (self.sack_permitted, self.timestamp) {
            (sack_permitted, Some((tsval, tsecr))) => {
                if sack_permitted {
                    put(&[kind::SACK_PERMITTED, 2]);
                } else {
                    put(&[kind::NOP, kind::NOP]);
                }
                put(&[kind::TIMESTAMP, 10]);
                put(&tsval.to_be_bytes());
                put(&tsecr.to_be_bytes());
            }
            (true, None) => put(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]),
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(&[kind::NOP, kind::WINDOW_SCALE, 3, shift]);
        }
        let sack_blocks = self.sack_blocks_to_emit();
        if sack_blocks > 0 {
            // At most 4 blocks: 2 + 32 bytes fits the length byte.
            put(&[kind::NOP, kind::NOP, kind::SACK, (2 + 8 * sack_blocks) as u8]);
            for block in &self.sack()[..sack_blocks] {
                put(&block.left.0.to_be_bytes());
                put(&block.right.0.to_be_bytes());
            }
        }
        debug_assert_eq!(at, self.emitted_len());
        at
    }

    /// Parses an option list (the bytes between the fixed header and the data).
    fn parse(mut bytes: &[u8]) -> Result<TcpOptions, ParseError> {
        let mut options = TcpOptions::default();
        while let [option_kind, rest @ ..] = bytes {
            match *option_kind {
                kind::END => break,
                kind::NOP => {
                    bytes = rest;
                    continue;
                }
                _ => {}
            }
            let [length, ..] = rest else {
                return Err(ParseError::Malformed);
            };
            let length = usize::from(*length);
            if length < 2 || length > bytes.len() {
                return Err(ParseError::Malformed);
            }
            let body = &bytes[2..length];
            match (*option_kind, body) {
                (kind::MSS, &[hi, lo]) => options.mss = Some(u16::from_be_bytes([hi, lo])),
                (kind::WINDOW_SCALE, &[shift]) => {
                    options.window_scale = Some(shift.min(MAX_WINDOW_SCALE));
                }
                (kind::SACK_PERMITTED, &[]) => options.sack_permitted = true,
                (kind::SACK, blocks) if !blocks.is_empty() && blocks.len().is_multiple_of(8) => {
                    if blocks.len() > 8 * options.sack_blocks.len() {
                        return Err(ParseError::Malformed);
                    }
                    options.sack_blocks = [SackBlock::default(); 4];
                    for (slot, block) in options.sack_blocks.iter_mut().zip(blocks.chunks_exact(8))
                    {
                        slot.left = SeqNumber(u32_at(block, 0));
                        slot.right = SeqNumber(u32_at(block, 4));
                    }
                    // At most 4, checked above.
                    options.sack_len = (blocks.len() / 8) as u8;
                }
                (kind::TIMESTAMP, body) if body.len() == 8 => {
                    options.timestamp = Some((u32_at(body, 0), u32_at(body, 4)));
                }
                (
                    kind::MSS
                    | kind::WINDOW_SCALE
                    | kind::SACK_PERMITTED
                    | kind::SACK
                    | kind::TIMESTAMP,
                    _,
                ) => return Err(ParseError::Malformed),
                _ => {} // unknown: skipped by its length
            }
            bytes = &bytes[length..];
        }
        Ok(options)
    }
}

/// Option kinds (IANA "TCP Option Kind Numbers").
mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// Room for options: a data offset of 15 words minus the fixed header.
const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;
/// NOP, NOP, kind and length before the SACK blocks.
const SACK_PREFIX_LEN: usize = 4;
/// RFC 7323 §2.3: a larger shift would let the window exceed 2^30.
const MAX_WINDOW_SCALE: u8 = 14;

/// The big-endian u32 at `at` in a slice the caller knows to be long enough.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
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

/// The IP protocol number, for the pseudo-header.
const PROTOCOL: u8 = 6;

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset in the upper 4 bits; the lower 4 are reserved (and AccECN's AE bit).
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const OPTIONS_START: usize = 20;
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }
    /// Wraps a buffer after checking that 20 ≤ data offset × 4 ≤ buffer length.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = TcpPacket { buffer };
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
    /// Sequence number.
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(u32_at(self.buffer.as_ref(), field::SEQ_NUM.start))
    }
    /// The acknowledgment number field, meaningful only when ACK is set.
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(u32_at(self.buffer.as_ref(), field::ACK_NUM.start))
    }
    /// Header length (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }
    /// The flag bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }
    /// The window field (not scaled).
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }
    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    /// The urgent pointer.
    pub fn urgent_pointer(&self) -> u16 {
        self.u16_at(field::URGENT)
    }
    /// The raw option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS_START..self.header_len()]
    }
    /// True if the checksum over the whole buffer (which must be exactly the segment) and the
    /// pseudo-header of `src`/`dst` matches.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let segment = self.buffer.as_ref();
        checksum::verifies(&[
            checksum::pseudo_header(src, dst, PROTOCOL, segment.len() as u32),
            checksum::data(segment),
        ])
    }
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// The payload, writable (after the header length recorded in the buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
    /// Computes and stores the checksum over the whole buffer (header + payload; the buffer
    /// must be exactly the segment) with the pseudo-header of `src`/`dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        fill_checksum(self.buffer.as_mut(), src, dst);
    }
}

/// Stores the checksum of `segment` (exactly header + payload) into its checksum field.
fn fill_checksum(segment: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    segment[field::CHECKSUM].fill(0);
    let sum = checksum::checksum(&[
        checksum::pseudo_header(src, dst, PROTOCOL, segment.len() as u32),
        checksum::data(segment),
    ]);
    segment[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
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
        packet: &TcpPacket<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        checksum: ChecksumPolicy,
    ) -> Result<TcpRepr<'a>, ParseError> {
        if checksum.verify_rx && !packet.verify_checksum(src_addr, dst_addr) {
            return Err(ParseError::Checksum);
        }
        if packet.src_port() == 0 || packet.dst_port() == 0 {
            return Err(ParseError::Malformed);
        }
        let flags = packet.flags();
        if flags.contains(TcpFlags::SYN)
            && (flags.contains(TcpFlags::FIN) || flags.contains(TcpFlags::RST))
        {
            return Err(ParseError::Malformed);
        }
        let options = TcpOptions::parse(packet.options())?;
        // Borrow the payload from the buffer itself (lifetime 'a), not from `packet`.
        let buffer: &'a T = packet.buffer;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: flags.contains(TcpFlags::ACK).then(|| packet.ack_number()),
            flags,
            window_len: packet.window_len(),
            urgent_pointer: packet.urgent_pointer(),
            options,
            payload: &buffer.as_ref()[packet.header_len()..],
        })
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
    ///
    /// The ACK flag is written from `ack_number` (set iff it is `Some`), whatever `flags` says,
    /// so that the two can never disagree on the wire. The checksum field is zeroed.
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        let header_len = self.header_len();
        let mut flags = TcpFlags(self.flags.0 & !TcpFlags::ACK.0);
        if self.ack_number.is_some() {
            flags |= TcpFlags::ACK;
        }
        let b = packet.buffer.as_mut();
        b[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        b[field::SEQ_NUM].copy_from_slice(&self.seq_number.0.to_be_bytes());
        let ack = self.ack_number.unwrap_or_default();
        b[field::ACK_NUM].copy_from_slice(&ack.0.to_be_bytes());
        // header_len ≤ 60: the data offset fits its 4 bits.
        b[field::DATA_OFFSET] = ((header_len / 4) as u8) << 4;
        b[field::FLAGS] = flags.0;
        b[field::WINDOW].copy_from_slice(&self.window_len.to_be_bytes());
        b[field::CHECKSUM].fill(0);
        b[field::URGENT].copy_from_slice(&self.urgent_pointer.to_be_bytes());
        self.options.emit(&mut b[field::OPTIONS_START..header_len]);
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
        self.emit_header(packet);
        let header_len = self.header_len();
        let segment_end = header_len + self.payload.len();
        let b = packet.buffer.as_mut();
        b[header_len..segment_end].copy_from_slice(self.payload);
        if checksum.fill_tx {
            fill_checksum(&mut b[..segment_end], src_addr, dst_addr);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: true };
    const NO_VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: false };
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A Linux client's SYN to port 80: MSS 1460, SACK-permitted + timestamps, NOP + WS 7.
    const SYN: [u8; 40] = [
        0xb5, 0xa2, 0x00, 0x50, 0x6e, 0x8f, 0x1d, 0x2c, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0xc1, 0x06, 0x00, 0x00, // header
        0x02, 0x04, 0x05, 0xb4, // MSS
        0x04, 0x02, 0x08, 0x0a, 0x0a, 0x1b, 0x2c, 0x3d, 0x00, 0x00, 0x00, 0x00, // SACKOK, TS
        0x01, 0x03, 0x03, 0x07, // NOP, WS
    ];

    /// The server's duplicate ACK with timestamps and one SACK block.
    const SACK_ACK: [u8; 44] = [
        0x00, 0x50, 0xb5, 0xa2, 0x11, 0x22, 0x33, 0x44, 0x6e, 0x8f, 0x1d, 0x2d, 0xb0, 0x10, 0x01,
        0xf5, 0x3d, 0x1c, 0x00, 0x00, // header
        0x01, 0x01, 0x08, 0x0a, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x1b, 0x2c, 0x3d, // NOP NOP TS
        0x01, 0x01, 0x05, 0x0a, 0x6e, 0x8f, 0x20, 0x00, 0x6e, 0x8f, 0x30,
        0x00, // NOP NOP SACK
    ];

    /// The client's request: PSH|ACK, timestamps, 18 bytes of HTTP.
    fn request() -> Vec<u8> {
        let mut bytes = vec![
            0xb5, 0xa2, 0x00, 0x50, 0x6e, 0x8f, 0x1d, 0x2d, 0x11, 0x22, 0x33, 0x45, 0x80, 0x18,
            0x01, 0xf6, 0xc1, 0x95, 0x00, 0x00, // header
            0x01, 0x01, 0x08, 0x0a, 0x0a, 0x1b, 0x2c, 0x3e, 0x01, 0x02, 0x03,
            0x04, // NOP NOP TS
        ];
        bytes.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        bytes
    }

    fn parse(
        bytes: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        policy: ChecksumPolicy,
    ) -> Result<TcpRepr<'_>, ParseError> {
        TcpRepr::parse(&TcpPacket::new_checked(bytes)?, src, dst, policy)
    }

    fn emit(repr: &TcpRepr<'_>, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut buf = vec![0xa5u8; repr.header_len() + repr.payload.len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst, VERIFY);
        buf
    }

    fn parse_options(bytes: &[u8]) -> Result<TcpOptions, ParseError> {
        TcpOptions::parse(bytes)
    }

    fn emit_options(options: &TcpOptions) -> Vec<u8> {
        let mut buf = vec![0xa5u8; options.emitted_len()];
        assert_eq!(options.emit(&mut buf), buf.len());
        buf
    }

    /// xorshift64*: deterministic test input.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn chance(&mut self, one_in: u64) -> bool {
            self.next().is_multiple_of(one_in)
        }
    }

    fn random_options(rng: &mut Rng) -> TcpOptions {
        let mut options = TcpOptions {
            mss: rng.chance(2).then(|| rng.next() as u16),
            window_scale: rng.chance(2).then(|| (rng.next() % 15) as u8),
            sack_permitted: rng.chance(2),
            timestamp: rng.chance(2).then(|| (rng.next() as u32, rng.next() as u32)),
            ..TcpOptions::default()
        };
        options.sack_len = (rng.next() % 5) as u8;
        for block in &mut options.sack_blocks[..usize::from(options.sack_len)] {
            block.left = SeqNumber(rng.next() as u32);
            block.right = SeqNumber(rng.next() as u32);
        }
        options
    }

    /// What a receiver sees of `options` after emission: the SACK blocks that fit.
    fn as_received(options: &TcpOptions) -> TcpOptions {
        let mut received = *options;
        let kept = options.sack_blocks_to_emit();
        received.sack_len = kept as u8;
        for block in &mut received.sack_blocks[kept..] {
            *block = SackBlock::default();
        }
        received
    }

    // ---- captured segments ----

    #[test]
    fn parse_captured_syn() {
        let repr = parse(&SYN, CLIENT, SERVER, VERIFY).unwrap();
        assert_eq!(repr.src_port, 46498);
        assert_eq!(repr.dst_port, 80);
        assert_eq!(repr.seq_number, SeqNumber(0x6e8f_1d2c));
        assert_eq!(repr.ack_number, None);
        assert_eq!(repr.flags, TcpFlags::SYN);
        assert_eq!(repr.control(), TcpControl::Syn);
        assert_eq!(repr.window_len, 64240);
        assert_eq!(
            repr.options,
            TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some((0x0a1b_2c3d, 0)),
                ..TcpOptions::default()
            }
        );
        assert!(repr.payload.is_empty());
        assert_eq!(repr.segment_len(), 1);
        assert_eq!(emit(&repr, CLIENT, SERVER), SYN);
    }

    #[test]
    fn parse_captured_ack_with_sack() {
        let repr = parse(&SACK_ACK, SERVER, CLIENT, VERIFY).unwrap();
        assert_eq!(repr.ack_number, Some(SeqNumber(0x6e8f_1d2d)));
        assert_eq!(repr.flags, TcpFlags::ACK);
        assert_eq!(repr.control(), TcpControl::None);
        assert_eq!(repr.options.timestamp, Some((0x0102_0304, 0x0a1b_2c3d)));
        assert_eq!(
            repr.options.sack(),
            &[SackBlock { left: SeqNumber(0x6e8f_2000), right: SeqNumber(0x6e8f_3000) }]
        );
        assert_eq!(repr.segment_len(), 0);
        assert_eq!(emit(&repr, SERVER, CLIENT), SACK_ACK);
    }

    #[test]
    fn parse_captured_request_with_payload() {
        let bytes = request();
        let repr = parse(&bytes, CLIENT, SERVER, VERIFY).unwrap();
        assert_eq!(repr.flags, TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(repr.payload, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(repr.segment_len(), 18);
        assert_eq!(emit(&repr, CLIENT, SERVER), bytes);
    }

    // ---- emit ----

    #[test]
    fn emit_header_then_payload_then_checksum_equals_emit() {
        let bytes = request();
        let repr = parse(&bytes, CLIENT, SERVER, VERIFY).unwrap();
        let mut buf = vec![0xffu8; bytes.len()];
        let mut packet = TcpPacket::new_unchecked(&mut buf[..]);
        repr.emit_header(&mut packet);
        assert_eq!(packet.checksum(), 0);
        packet.payload_mut().copy_from_slice(repr.payload);
        packet.fill_checksum(CLIENT, SERVER);
        assert_eq!(buf, bytes);
    }

    #[test]
    fn emit_without_fill_leaves_checksum_zero() {
        let repr = parse(&SYN, CLIENT, SERVER, VERIFY).unwrap();
        let mut buf = [0xffu8; 40];
        let no_fill = ChecksumPolicy { fill_tx: false, verify_rx: false };
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), CLIENT, SERVER, no_fill);
        assert_eq!(buf[16..18], [0, 0]);
        assert_eq!(buf[18..], SYN[18..]);
    }

    #[test]
    fn ack_flag_follows_ack_number() {
        let mut repr = parse(&SYN, CLIENT, SERVER, VERIFY).unwrap();
        repr.flags = TcpFlags::SYN | TcpFlags::ACK; // claims ACK without a number
        let bytes = emit(&repr, CLIENT, SERVER);
        assert_eq!(bytes[13], TcpFlags::SYN.0);
        repr.flags = TcpFlags::SYN;
        repr.ack_number = Some(SeqNumber(77));
        let bytes = emit(&repr, CLIENT, SERVER);
        assert_eq!(bytes[13], (TcpFlags::SYN | TcpFlags::ACK).0);
        let parsed = parse(&bytes, CLIENT, SERVER, VERIFY).unwrap();
        assert_eq!(parsed.ack_number, Some(SeqNumber(77)));
        assert_eq!(parsed.flags, TcpFlags::SYN | TcpFlags::ACK);
    }

    #[test]
    fn option_layouts_are_linux_style() {
        let ts = Some((0x0102_0304, 0x0506_0708));
        let cases: [(TcpOptions, &[u8]); 7] = [
            (TcpOptions::default(), &[]),
            (TcpOptions { sack_permitted: true, ..TcpOptions::default() }, &[1, 1, 4, 2]),
            (
                TcpOptions { timestamp: ts, ..TcpOptions::default() },
                &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8],
            ),
            (
                TcpOptions { sack_permitted: true, timestamp: ts, ..TcpOptions::default() },
                &[4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8],
            ),
            (TcpOptions { window_scale: Some(14), ..TcpOptions::default() }, &[1, 3, 3, 14]),
            (TcpOptions { mss: Some(536), ..TcpOptions::default() }, &[2, 4, 2, 24]),
            (
                TcpOptions {
                    mss: Some(9000),
                    sack_permitted: true,
                    window_scale: Some(0),
                    ..TcpOptions::default()
                },
                &[2, 4, 0x23, 0x28, 1, 1, 4, 2, 1, 3, 3, 0],
            ),
        ];
        for (options, expected) in cases {
            assert_eq!(emit_options(&options), expected, "{options:?}");
            assert_eq!(parse_options(expected), Ok(options));
        }
    }

    #[test]
    fn sack_blocks_are_cut_to_the_option_space() {
        let mut options = TcpOptions { sack_len: 4, ..TcpOptions::default() };
        for (i, block) in options.sack_blocks.iter_mut().enumerate() {
            *block = SackBlock {
                left: SeqNumber(i as u32 * 100),
                right: SeqNumber(i as u32 * 100 + 50),
            };
        }
        // Without timestamps all four fit: 4 + 32 bytes.
        assert_eq!(options.emitted_len(), 36);
        assert_eq!(parse_options(&emit_options(&options)).unwrap().sack(), options.sack());
        // With timestamps only the first three: 12 + 4 + 24 = 40.
        options.timestamp = Some((1, 2));
        assert_eq!(options.emitted_len(), 40);
        let received = parse_options(&emit_options(&options)).unwrap();
        assert_eq!(received.sack(), &options.sack()[..3]);
        assert_eq!(received.timestamp, Some((1, 2)));
        // Beside every SYN option (20 bytes) two still fit.
        options.mss = Some(1460);
        options.window_scale = Some(7);
        options.sack_permitted = true;
        assert_eq!(options.emitted_len(), 40);
        assert_eq!(parse_options(&emit_options(&options)).unwrap().sack(), &options.sack()[..2]);
    }

    #[test]
    fn random_options_round_trip_and_emitted_len_is_exact() {
        let mut rng = Rng(0x0dd_ba11);
        for _ in 0..2000 {
            let options = random_options(&mut rng);
            let bytes = emit_options(&options);
            assert_eq!(bytes.len() % 4, 0);
            assert!(bytes.len() <= MAX_OPTIONS_LEN);
            assert_eq!(parse_options(&bytes), Ok(as_received(&options)), "{options:?}");
        }
    }

    #[test]
    fn random_segments_round_trip() {
        let mut rng = Rng(42);
        let payload: Vec<u8> = (0..1500).map(|i| (i * 7) as u8).collect();
        for _ in 0..500 {
            let mut flags = TcpFlags(rng.next() as u8);
            if flags.contains(TcpFlags::SYN) {
                flags = TcpFlags(flags.0 & !(TcpFlags::FIN.0 | TcpFlags::RST.0));
            }
            let ack_number = flags.contains(TcpFlags::ACK).then(|| SeqNumber(rng.next() as u32));
            let len = (rng.next() % 1500) as usize;
            let repr = TcpRepr {
                src_port: (rng.next() as u16).max(1),
                dst_port: (rng.next() as u16).max(1),
                seq_number: SeqNumber(rng.next() as u32),
                ack_number,
                flags,
                window_len: rng.next() as u16,
                urgent_pointer: rng.next() as u16,
                options: as_received(&random_options(&mut rng)),
                payload: &payload[..len],
            };
            let bytes = emit(&repr, CLIENT, SERVER);
            assert_eq!(parse(&bytes, CLIENT, SERVER, VERIFY), Ok(repr));
        }
    }

    // ---- option parsing ----

    #[test]
    fn unknown_options_are_skipped_and_end_stops() {
        // Unknown kind 30 (MPTCP) of length 4, then MSS, then EOL, then garbage.
        let bytes = [30, 4, 0xde, 0xad, 2, 4, 0x05, 0xb4, 0, 0xff, 0xff, 0xff];
        assert_eq!(
            parse_options(&bytes),
            Ok(TcpOptions { mss: Some(1460), ..TcpOptions::default() })
        );
        assert_eq!(parse_options(&[1, 1, 1, 1]), Ok(TcpOptions::default()));
        assert_eq!(parse_options(&[0, 2, 0]), Ok(TcpOptions::default()));
    }

    #[test]
    fn window_scale_is_clamped_to_14() {
        assert_eq!(parse_options(&[3, 3, 15, 1]).unwrap().window_scale, Some(14));
        assert_eq!(parse_options(&[3, 3, 255, 1]).unwrap().window_scale, Some(14));
        assert_eq!(parse_options(&[3, 3, 14, 1]).unwrap().window_scale, Some(14));
    }

    #[test]
    fn sack_of_one_to_four_blocks() {
        for n in 1..=4u8 {
            let mut bytes = vec![5, 2 + 8 * n];
            for i in 0..u32::from(n) {
                bytes.extend_from_slice(&(i * 10).to_be_bytes());
                bytes.extend_from_slice(&(i * 10 + 5).to_be_bytes());
            }
            let options = parse_options(&bytes).unwrap();
            assert_eq!(options.sack_len, n);
            assert_eq!(
                options.sack()[usize::from(n) - 1].right,
                SeqNumber(u32::from(n - 1) * 10 + 5)
            );
        }
    }

    #[test]
    fn malformed_option_lists() {
        let malformed: [&[u8]; 16] = [
            &[2],                // kind without length
            &[1, 1, 8],          // same, after NOPs
            &[30, 0],            // length 0
            &[30, 1, 1, 1],      // length 1
            &[30, 5, 0, 0],      // runs past the header
            &[2, 3, 5],          // MSS of length 3
            &[2, 5, 5, 0xb4, 0], // MSS of length 5
            &[3, 4, 7, 0],       // WS of length 4
            &[3, 2, 1, 1],       // WS of length 2
            &[4, 3, 0, 1],       // SACK-permitted of length 3
            &[5, 2, 1, 1],       // SACK without blocks
            &[5, 6, 0, 0, 0, 0], // SACK with half a block
            &[5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[8, 8, 0, 0, 0, 0, 0, 0],     // timestamps of length 8
            &[8, 10, 0, 0, 0, 0, 0, 0, 0], // timestamps running past
            &[2, 4, 5, 0xb4, 30, 4, 0],    // good, then a length running past
        ];
        for bytes in malformed {
            assert_eq!(parse_options(bytes), Err(ParseError::Malformed), "{bytes:?}");
        }
        // Five SACK blocks cannot fit a real header, but an option list may claim them.
        let mut five = vec![5, 42];
        five.resize(42, 0);
        assert_eq!(parse_options(&five), Err(ParseError::Malformed));
    }

    // ---- segment validation ----

    #[test]
    fn zero_ports_are_refused() {
        for at in [0, 2] {
            let mut bytes = SYN;
            bytes[at..at + 2].fill(0);
            assert_eq!(parse(&bytes, CLIENT, SERVER, NO_VERIFY), Err(ParseError::Malformed));
        }
    }

    #[test]
    fn syn_with_fin_or_rst_is_refused() {
        for extra in [TcpFlags::FIN, TcpFlags::RST, TcpFlags::FIN | TcpFlags::RST] {
            let mut bytes = SYN;
            bytes[13] |= extra.0;
            assert_eq!(parse(&bytes, CLIENT, SERVER, NO_VERIFY), Err(ParseError::Malformed));
        }
        // FIN with RST is odd but not contradictory: RST wins in control().
        let mut bytes = SACK_ACK;
        bytes[13] |= (TcpFlags::FIN | TcpFlags::RST).0;
        let repr = parse(&bytes, SERVER, CLIENT, NO_VERIFY).unwrap();
        assert_eq!(repr.control(), TcpControl::Rst);
        assert_eq!(repr.segment_len(), 1);
    }

    #[test]
    fn ack_number_only_with_ack_flag() {
        let mut bytes = SACK_ACK;
        bytes[13] = TcpFlags::RST.0;
        let repr = parse(&bytes, SERVER, CLIENT, NO_VERIFY).unwrap();
        assert_eq!(repr.ack_number, None);
        assert_eq!(repr.control(), TcpControl::Rst);
    }

    #[test]
    fn header_length_checks() {
        for len in 0..HEADER_LEN {
            assert_eq!(TcpPacket::new_checked(&SYN[..len]).err(), Some(ParseError::Truncated));
        }
        for len in HEADER_LEN..40 {
            assert_eq!(TcpPacket::new_checked(&SYN[..len]).err(), Some(ParseError::Truncated));
        }
        for offset in 0..5u8 {
            let mut bytes = SYN;
            bytes[12] = offset << 4;
            assert_eq!(TcpPacket::new_checked(&bytes[..]).err(), Some(ParseError::Malformed));
        }
    }

    #[test]
    fn every_prefix_of_a_segment_is_refused_or_consistent() {
        let bytes = request();
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            match parse(prefix, CLIENT, SERVER, NO_VERIFY) {
                Err(error) => {
                    assert!(len < 32, "len {len}");
                    assert_eq!(error, ParseError::Truncated);
                }
                Ok(repr) => {
                    assert!(len >= 32, "len {len}");
                    assert_eq!(repr.payload, &bytes[32..len]);
                    assert_eq!(
                        parse(prefix, CLIENT, SERVER, VERIFY).err(),
                        Some(ParseError::Checksum)
                    );
                }
            }
        }
    }

    #[test]
    fn checksum_failures() {
        let bytes = request();
        for at in [0, 13, 17, 31, 32, bytes.len() - 1] {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x04;
            assert_eq!(
                parse(&corrupt, CLIENT, SERVER, VERIFY).err(),
                Some(ParseError::Checksum),
                "at {at}"
            );
        }
        // The pseudo-header counts: addresses swapped in one half, or another host.
        assert_eq!(
            parse(&bytes, CLIENT, Ipv4Addr::new(10, 0, 0, 3), VERIFY).err(),
            Some(ParseError::Checksum)
        );
        assert!(parse(&bytes, CLIENT, SERVER, VERIFY).is_ok());
    }

    #[test]
    fn checksum_covers_odd_length_payload() {
        let repr =
            TcpRepr { payload: b"odd", ..parse(&request(), CLIENT, SERVER, VERIFY).unwrap() };
        let bytes = emit(&repr, CLIENT, SERVER);
        assert_eq!(bytes.len(), 35);
        assert_eq!(parse(&bytes, CLIENT, SERVER, VERIFY).unwrap().payload, b"odd");
    }
}
