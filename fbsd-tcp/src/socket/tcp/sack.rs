//! The sender's SACK scoreboard and RFC 6675 loss recovery helpers (FreeBSD's tcp_sack.c, in
//! spirit): which outstanding ranges the receiver reported holding, which holes are deemed lost,
//! what to retransmit next, and how much data is in the network (`pipe`).
//!
//! Everything is kept as ranges, never per segment, and updated incrementally, so an ACK costs
//! O(blocks) even with windows of thousands of segments.

use crate::wire::{SackBlock, SeqNumber};

/// RFC 6675 DupThresh.
pub const DUP_THRESH: usize = 3;

/// SACKed ranges above `SND.UNA` and the retransmission progress in the holes between them.
#[derive(Debug, Clone, Default)]
pub struct Scoreboard {
    /// SACKed ranges (left, right), sorted, disjoint, all above the last `snd_una` seen.
    sacked: Vec<(SeqNumber, SeqNumber)>,
    /// Bytes in `sacked`.
    sacked_bytes: usize,
    /// HighRxt: the highest sequence number retransmitted in this recovery episode.
    high_rxt: Option<SeqNumber>,
}

impl Scoreboard {
    /// An empty scoreboard.
    pub fn new() -> Scoreboard {
        Scoreboard::default()
    }
    /// Forgets everything (RTO: RFC 6675 §5.1 keeps SACK info, but a timeout may renege; the
    /// connection decides).
    pub fn clear(&mut self) {
        self.sacked.clear();
        self.sacked_bytes = 0;
        self.high_rxt = None;
    }
    /// Processes one ACK: drops state below `snd_una`, merges the blocks that lie within
    /// (`snd_una`, `snd_max`] and ignores the others (D-SACK blocks below SND.UNA, garbage).
    /// Returns the number of bytes newly SACKed by this ACK (RFC 6675 §2's "SACKs new data").
    pub fn update(
        &mut self,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        blocks: &[SackBlock],
    ) -> usize {
        let _ = (snd_una, snd_max, blocks);
        todo!("storage helper")
    }
    /// True if no range is SACKed.
    pub fn is_empty(&self) -> bool {
        self.sacked.is_empty()
    }
    /// Bytes SACKed above SND.UNA.
    pub fn sacked_bytes(&self) -> usize {
        self.sacked_bytes
    }
    /// True if `seq` lies in a SACKed range.
    pub fn is_sacked(&self, seq: SeqNumber) -> bool {
        let _ = seq;
        todo!("storage helper")
    }
    /// The highest SACKed sequence number (right edge of the last range), if any.
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.sacked.last().map(|&(_, right)| right)
    }
    /// RFC 6675 IsLost(seq): DupThresh discontiguous SACKed ranges lie above `seq`, or more than
    /// (DupThresh − 1) × `mss` bytes are SACKed above it.
    pub fn is_lost(&self, seq: SeqNumber, mss: usize) -> bool {
        let _ = (seq, mss);
        todo!("storage helper")
    }
    /// RFC 6675 NextSeg() rule 1: the first unSACKed range at or above max(HighRxt, `snd_una`)
    /// and below the highest SACKed byte whose first byte IsLost; returned as (start, len) with
    /// len ≤ `mss`. Rules 2–4 (new data, rescue retransmission) are the connection's.
    pub fn next_lost_segment(&self, snd_una: SeqNumber, mss: usize) -> Option<(SeqNumber, usize)> {
        let _ = (snd_una, mss);
        todo!("storage helper")
    }
    /// Records that `[seq, seq + len)` was retransmitted (advances HighRxt).
    pub fn on_retransmit(&mut self, seq: SeqNumber, len: usize) {
        let end = seq + len;
        self.high_rxt = Some(self.high_rxt.map_or(end, |h| h.max(end)));
    }
    /// HighRxt, if anything was retransmitted in this episode.
    pub fn high_rxt(&self) -> Option<SeqNumber> {
        self.high_rxt
    }
    /// Resets HighRxt at the start of a recovery episode.
    pub fn start_recovery(&mut self) {
        self.high_rxt = None;
    }
    /// RFC 6675 SetPipe(): bytes outstanding in the network, computed from ranges: for every
    /// unSACKed byte in [`snd_una`, `snd_max`): counted once if not lost, plus once more if it was
    /// retransmitted (below HighRxt). Cost O(ranges).
    pub fn pipe(&self, snd_una: SeqNumber, snd_max: SeqNumber, mss: usize) -> usize {
        let _ = (snd_una, snd_max, mss);
        todo!("storage helper")
    }
}
