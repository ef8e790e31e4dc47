//! The sender's SACK scoreboard and RFC 6675 loss recovery helpers (FreeBSD's tcp_sack.c, in
//! spirit): which outstanding ranges the receiver reported holding, which holes are deemed lost,
//! what to retransmit next, and how much data is in the network (`pipe`).
//!
//! Everything is kept as ranges, never per segment, and updated incrementally, so an ACK costs
//! O(blocks) even with windows of thousands of segments.
//!
//! RFC 6675 defines IsLost, NextSeg and SetPipe per octet. Two facts let them run over ranges:
//! within one hole (a run of unSACKed octets) every octet has the same SACKed octets above it,
//! so IsLost is constant over the hole; and IsLost only gets harder to satisfy going up. Hence
//! one sequence number, the *loss boundary*, splits the unSACKed octets into lost (below it) and
//! not lost (above it), exactly as the per-octet definition would, and it is always the left edge
//! of one of the top DupThresh SACKed ranges, so finding it costs O(DupThresh).
//!
//! The connection takes IsLost's verdicts (`loss_boundary`) and the SACKed ranges from here,
//! but `pipe` and NextSeg from the per-segment log in `rack.rs`, which also knows what RACK
//! found lost and so what must be retransmitted again; `pipe`, `next_lost_segment` and HighRxt
//! here remain RFC 6675's definitions over ranges, exact and tested against the per-octet model.

use crate::wire::{SackBlock, SeqNumber};

/// Most disjoint SACKed ranges the scoreboard keeps (FreeBSD caps holes at 128 per connection);
/// blocks that would open more are ignored.
pub const MAX_RANGES: usize = 256;

/// RFC 6675 DupThresh.
pub const DUP_THRESH: usize = 3;

/// SACKed ranges above `SND.UNA` and the retransmission progress in the holes between them.
#[derive(Debug, Clone, Default)]
pub struct Scoreboard {
    /// SACKed ranges (left, right), sorted, disjoint, all above the last `snd_una` seen.
    sacked: Vec<(SeqNumber, SeqNumber)>,
    /// Bytes in `sacked`.
    sacked_bytes: usize,
    /// HighRxt: one past the highest sequence number retransmitted in this recovery episode.
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
    ///
    /// Block edges are compared with `snd_una` in serial-number arithmetic; a block straddling
    /// SND.UNA or SND.MAX keeps its part inside.
    pub fn update(
        &mut self,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        blocks: &[SackBlock],
    ) -> usize {
        self.update_with(snd_una, snd_max, blocks, |_, _| {})
    }
    /// `update`, also calling `newly_sacked(left, right)` for every range this ACK SACKed that
    /// was not SACKed before (the parts of each block between the ranges already held), so
    /// that per-segment state can follow at a cost proportional to the news, not to the size
    /// of the blocks, which repeat the same ranges ACK after ACK.
    pub fn update_with(
        &mut self,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        blocks: &[SackBlock],
        mut newly_sacked: impl FnMut(SeqNumber, SeqNumber),
    ) -> usize {
        self.drop_below(snd_una);
        let window = if snd_max > snd_una { (snd_max - snd_una) as u32 } else { 0 };
        let before = self.sacked_bytes;
        for block in blocks {
            if let Some((left, right)) = clip_block(block, snd_una, window) {
                self.insert(left, right, &mut newly_sacked);
            }
        }
        self.sacked_bytes - before
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
        let i = self.sacked.partition_point(|&(_, right)| right <= seq);
        self.sacked.get(i).is_some_and(|&(left, _)| left <= seq)
    }
    /// True if all of the non-empty range [`left`, `right`) is SACKed (one range holds it:
    /// ranges never touch).
    pub fn is_range_sacked(&self, left: SeqNumber, right: SeqNumber) -> bool {
        let i = self.sacked.partition_point(|&(_, r)| r <= left);
        self.sacked.get(i).is_some_and(|&(l, r)| l <= left && right <= r)
    }
    /// The highest SACKed sequence number (right edge of the last range), if any.
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.sacked.last().map(|&(_, right)| right)
    }
    /// RFC 6675 IsLost(seq): DupThresh discontiguous SACKed ranges lie above `seq`, or more than
    /// (DupThresh − 1) × `mss` bytes are SACKed above it.
    ///
    /// Looks at DupThresh ranges at most: the count rule holds as soon as that many are above.
    pub fn is_lost(&self, seq: SeqNumber, mss: usize) -> bool {
        let first_above = seq + 1;
        let byte_threshold = (DUP_THRESH - 1) * mss;
        let mut bytes_above = 0;
        for (count, &(left, right)) in self.sacked.iter().rev().enumerate() {
            if right <= first_above {
                break;
            }
            bytes_above += right - left.max(first_above);
            if count + 1 >= DUP_THRESH || bytes_above > byte_threshold {
                return true;
            }
        }
        false
    }
    /// RFC 6675 NextSeg() rule 1: the first unSACKed range at or above max(HighRxt, `snd_una`)
    /// and below the highest SACKed byte whose first byte IsLost; returned as (start, len) with
    /// len ≤ `mss`. Rules 2–4 (new data, rescue retransmission) are the connection's.
    ///
    /// The segment never reaches into the SACKed range above it. HighRxt is kept as one past the
    /// last octet retransmitted, so "S2 > HighRxt" of the RFC is `start >= high_rxt()` here.
    /// `None` with `mss == 0`.
    pub fn next_lost_segment(&self, snd_una: SeqNumber, mss: usize) -> Option<(SeqNumber, usize)> {
        if mss == 0 {
            return None;
        }
        let boundary = self.loss_boundary(mss)?;
        let from = self.high_rxt.map_or(snd_una, |high_rxt| high_rxt.max(snd_una));
        // The first range that ends after `from`: either `from` is inside it (the hole starts at
        // its right edge) or the hole runs from `from` up to it.
        let i = self.sacked.partition_point(|&(_, right)| right <= from);
        let (start, next_range) = match *self.sacked.get(i)? {
            (left, right) if left <= from => (right, i + 1),
            _ => (from, i),
        };
        if start >= boundary {
            // Not lost, and neither is anything above it.
            return None;
        }
        // The boundary is the left edge of a range above `start`, so the next range exists.
        let hole_end = self.sacked.get(next_range)?.0;
        Some((start, (hole_end - start).min(mss)))
    }
    /// Records that `[seq, seq + len)` was retransmitted (advances HighRxt).
    pub fn on_retransmit(&mut self, seq: SeqNumber, len: usize) {
        let end = seq + len;
        self.high_rxt = Some(self.high_rxt.map_or(end, |h| h.max(end)));
    }
    /// HighRxt, if anything was retransmitted in this episode: one past the last octet
    /// retransmitted (the RFC's HighRxt + 1).
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
    ///
    /// This is the per-octet definition computed exactly, not approximated: IsLost is the same
    /// for every octet of a hole and false above the loss boundary (see the module comment), so
    ///
    /// ```text
    /// pipe = unSACKed octets in [snd_una, snd_max)
    ///      − unSACKed octets below the loss boundary      (lost, not in the network)
    ///      + unSACKed octets below HighRxt                (retransmitted copies)
    /// ```
    ///
    /// each term clipped to [`snd_una`, `snd_max`), HighRxt being one past the last octet
    /// retransmitted. Each term is a prefix count over the ranges (summing the smaller side);
    /// the loss boundary term touches DupThresh ranges at most.
    pub fn pipe(&self, snd_una: SeqNumber, snd_max: SeqNumber, mss: usize) -> usize {
        if snd_max <= snd_una {
            return 0;
        }
        let unsacked_below = |seq: SeqNumber| {
            let seq = seq.max(snd_una).min(snd_max);
            (seq - snd_una) - (self.sacked_below(seq) - self.sacked_below(snd_una))
        };
        let in_flight = unsacked_below(snd_max);
        let lost = self.loss_boundary(mss).map_or(0, unsacked_below);
        let retransmitted = self.high_rxt.map_or(0, unsacked_below);
        in_flight - lost + retransmitted
    }

    /// The sequence number below which every unSACKed octet IsLost and at or above which none
    /// is; `None` if nothing is lost.
    ///
    /// The count rule makes everything below the DupThresh-th range from the top lost. The byte
    /// rule makes everything below the first range (from the top) at which the SACKed bytes
    /// accumulated from the top exceed (DupThresh − 1) × `mss` lost. Whichever is higher wins,
    /// and it is one of the top DupThresh ranges.
    pub fn loss_boundary(&self, mss: usize) -> Option<SeqNumber> {
        let byte_threshold = (DUP_THRESH - 1) * mss;
        let mut bytes_above = 0;
        for &(left, right) in self.sacked.iter().rev().take(DUP_THRESH) {
            bytes_above += right - left;
            if bytes_above > byte_threshold {
                return Some(left);
            }
        }
        let n = self.sacked.len();
        n.checked_sub(DUP_THRESH).map(|i| self.sacked[i].0)
    }

    /// SACKed octets below `seq`. Sums whichever side of `seq` holds fewer ranges.
    fn sacked_below(&self, seq: SeqNumber) -> usize {
        let range_len = |&(left, right): &(SeqNumber, SeqNumber)| right - left;
        let i = self.sacked.partition_point(|&(_, right)| right <= seq);
        let whole = if i <= self.sacked.len() / 2 {
            self.sacked[..i].iter().map(range_len).sum()
        } else {
            self.sacked_bytes - self.sacked[i..].iter().map(range_len).sum::<usize>()
        };
        let partial = match self.sacked.get(i) {
            Some(&(left, _)) if left < seq => seq - left,
            _ => 0,
        };
        whole + partial
    }

    /// Forgets SACK state for octets below `snd_una` (cumulatively acknowledged now).
    fn drop_below(&mut self, snd_una: SeqNumber) {
        let acked = self.sacked.partition_point(|&(_, right)| right <= snd_una);
        let mut dropped: usize = self.sacked.drain(..acked).map(|(left, right)| right - left).sum();
        if let Some(first) = self.sacked.first_mut() {
            if first.0 < snd_una {
                dropped += snd_una - first.0;
                first.0 = snd_una;
            }
        }
        self.sacked_bytes -= dropped;
    }

    /// Records [`left`, `right`) as SACKed, merging it with the ranges it overlaps or touches,
    /// and reports the parts that were not SACKed before to `newly_sacked`.
    fn insert(
        &mut self,
        left: SeqNumber,
        right: SeqNumber,
        newly_sacked: &mut impl FnMut(SeqNumber, SeqNumber),
    ) {
        let first = self.sacked.partition_point(|&(_, r)| r < left);
        let last = self.sacked.partition_point(|&(l, _)| l <= right);
        if first == last {
            if self.sacked.len() >= MAX_RANGES {
                // SACK information is advisory (RFC 2018 §8: a sender may ignore it); a receiver
                // reporting thousands of one-byte islands must not make every ACK cost
                // thousands of moves in a daemon that serves every application.
                return;
            }
            newly_sacked(left, right);
            self.sacked.insert(first, (left, right));
            self.sacked_bytes += right - left;
            return;
        }
        let mut covered_to = left;
        for &(l, r) in &self.sacked[first..last] {
            if l > covered_to {
                newly_sacked(covered_to, l);
            }
            covered_to = covered_to.max(r);
        }
        if right > covered_to {
            newly_sacked(covered_to, right);
        }
        let covered: usize = self.sacked[first..last].iter().map(|&(l, r)| r - l).sum();
        let merged = (left.min(self.sacked[first].0), right.max(self.sacked[last - 1].1));
        self.sacked[first] = merged;
        self.sacked.drain(first + 1..last);
        self.sacked_bytes = self.sacked_bytes - covered + (merged.1 - merged.0);
    }
}

/// The part of `block` within [`snd_una`, `snd_una + window`), or `None` if there is none.
///
/// The edges are read as signed distances from `snd_una` (serial-number arithmetic), so a block
/// that is inverted, empty, wholly below SND.UNA (a D-SACK) or wholly beyond SND.MAX yields
/// nothing whatever its raw values; a block straddling either end is cut at it.
fn clip_block(
    block: &SackBlock,
    snd_una: SeqNumber,
    window: u32,
) -> Option<(SeqNumber, SeqNumber)> {
    debug_assert!(window <= i32::MAX as u32);
    let distance = |seq: SeqNumber| i64::from(seq.0.wrapping_sub(snd_una.0) as i32);
    let (left, right) = (distance(block.left), distance(block.right));
    if left >= right {
        return None;
    }
    let window = i64::from(window);
    let (left, right) = (left.max(0), right.min(window));
    if left >= right {
        return None;
    }
    // Both within 0..=window < 2^31 now.
    Some((snd_una + left as usize, snd_una + right as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequence numbers in the tests start just below the wrap point, so every scenario crosses
    /// it.
    const BASE: u32 = u32::MAX - 499;

    fn seq(offset: usize) -> SeqNumber {
        SeqNumber(BASE) + offset
    }

    fn block(left: usize, right: usize) -> SackBlock {
        SackBlock { left: seq(left), right: seq(right) }
    }

    fn ranges(board: &Scoreboard) -> Vec<(usize, usize)> {
        board.sacked.iter().map(|&(l, r)| (l - seq(0), r - seq(0))).collect()
    }

    /// A scoreboard for [0, `snd_max`) sent and nothing acknowledged, with `blocks` SACKed.
    fn board_with(snd_max: usize, blocks: &[(usize, usize)]) -> Scoreboard {
        let mut board = Scoreboard::new();
        let blocks: Vec<SackBlock> = blocks.iter().map(|&(l, r)| block(l, r)).collect();
        board.update(seq(0), seq(snd_max), &blocks);
        board
    }

    // ---- update ----

    #[test]
    fn islands_beyond_the_range_cap_are_ignored_but_still_merge() {
        let mut board = Scoreboard::new();
        let islands: Vec<SackBlock> =
            (0..MAX_RANGES + 10).map(|i| block(10 * i + 1, 10 * i + 2)).collect();
        for chunk in islands.chunks(4) {
            board.update(seq(0), seq(1 << 20), chunk);
        }
        assert_eq!(ranges(&board).len(), MAX_RANGES);
        assert_eq!(board.sacked_bytes(), MAX_RANGES);
        // A block that touches a range already held still counts.
        assert_eq!(board.update(seq(0), seq(1 << 20), &[block(2, 5)]), 3);
        assert_eq!(ranges(&board).len(), MAX_RANGES);
    }

    #[test]
    fn update_merges_and_counts_new_bytes() {
        let mut board = Scoreboard::new();
        assert_eq!(board.update(seq(0), seq(1000), &[block(100, 200), block(300, 400)]), 200);
        assert_eq!(ranges(&board), [(100, 200), (300, 400)]);
        // Overlapping one range, touching the other: 150..200 and 300..400 are not new.
        assert_eq!(board.update(seq(0), seq(1000), &[block(150, 300), block(300, 400)]), 100);
        assert_eq!(ranges(&board), [(100, 400)]);
        assert_eq!(board.sacked_bytes(), 300);
        assert_eq!(board.highest_sacked(), Some(seq(400)));
    }

    #[test]
    fn update_trims_below_snd_una() {
        let mut board = board_with(1000, &[(100, 200), (300, 400), (500, 600)]);
        assert_eq!(board.update(seq(350), seq(1000), &[]), 0);
        assert_eq!(ranges(&board), [(350, 400), (500, 600)]);
        assert_eq!(board.sacked_bytes(), 150);
        board.update(seq(600), seq(1000), &[]);
        assert!(board.is_empty());
        assert_eq!(board.sacked_bytes(), 0);
        assert_eq!(board.highest_sacked(), None);
    }

    #[test]
    fn dsack_blocks_sack_nothing() {
        let mut board = board_with(1000, &[(300, 400)]);
        // Below SND.UNA, then inside an already SACKed range (RFC 2883 reports both).
        let dsacks = [block(100, 200), block(320, 340)];
        assert_eq!(board.update(seq(200), seq(1000), &dsacks), 0);
        assert_eq!(ranges(&board), [(300, 400)]);
    }

    #[test]
    fn blocks_are_clipped_to_the_window() {
        let mut board = Scoreboard::new();
        let newly = board.update(seq(100), seq(500), &[block(50, 150), block(450, 600)]);
        assert_eq!(newly, 100);
        assert_eq!(ranges(&board), [(100, 150), (450, 500)]);
    }

    #[test]
    fn garbage_blocks_are_ignored() {
        let mut board = Scoreboard::new();
        let far = SeqNumber(BASE.wrapping_add(1 << 31));
        let garbage = [
            block(300, 200),                                   // inverted
            block(300, 300),                                   // empty
            block(600, 700),                                   // beyond SND.MAX
            SackBlock { left: far, right: far + 100 },         // half the space away
            SackBlock { left: seq(200), right: seq(200) - 1 }, // the whole space, inverted
        ];
        assert_eq!(board.update(seq(100), seq(500), &garbage), 0);
        assert!(board.is_empty());
    }

    #[test]
    fn is_sacked_checks_range_edges() {
        let board = board_with(1000, &[(100, 200)]);
        assert!(!board.is_sacked(seq(99)));
        assert!(board.is_sacked(seq(100)));
        assert!(board.is_sacked(seq(199)));
        assert!(!board.is_sacked(seq(200)));
    }

    // ---- IsLost ----

    #[test]
    fn lost_by_count_of_ranges_above() {
        let board = board_with(1000, &[(100, 110), (200, 210), (300, 310)]);
        assert!(board.is_lost(seq(50), 100));
        assert!(!board.is_lost(seq(150), 100));
    }

    #[test]
    fn lost_by_bytes_above() {
        // Exactly 2 × MSS above is not enough; one byte more is.
        let board = board_with(1000, &[(300, 500)]);
        assert!(!board.is_lost(seq(0), 100));
        let board = board_with(1000, &[(300, 501)]);
        assert!(board.is_lost(seq(0), 100));
        assert!(board.is_lost(seq(299), 100));
        // Inside the range only the octets above count: 501 − 301 = 200.
        assert!(!board.is_lost(seq(300), 100));
    }

    #[test]
    fn nothing_is_lost_without_sacks() {
        let board = Scoreboard::new();
        assert!(!board.is_lost(seq(0), 1));
        assert_eq!(board.next_lost_segment(seq(0), 100), None);
    }

    // ---- NextSeg ----

    #[test]
    fn next_lost_segment_walks_lost_holes_behind_high_rxt() {
        // Holes: 0..100 (3 ranges above: lost), 150..300 (2 ranges, 200 bytes: lost only by
        // bytes with MSS 50), 350..500 and beyond the last range (never lost).
        let mut board = board_with(1000, &[(100, 150), (300, 350), (500, 600)]);
        board.start_recovery();
        assert_eq!(board.next_lost_segment(seq(0), 100), Some((seq(0), 100)));
        board.on_retransmit(seq(0), 100);
        assert_eq!(board.next_lost_segment(seq(0), 100), None);

        let mut board = board_with(1000, &[(100, 150), (300, 350), (500, 600)]);
        assert_eq!(board.next_lost_segment(seq(0), 50), Some((seq(0), 50)));
        board.on_retransmit(seq(0), 50);
        assert_eq!(board.next_lost_segment(seq(0), 50), Some((seq(50), 50)));
        board.on_retransmit(seq(50), 50);
        // HighRxt is at a SACKed range: the next hole starts past it.
        assert_eq!(board.next_lost_segment(seq(0), 50), Some((seq(150), 50)));
        board.on_retransmit(seq(150), 140);
        // Only 10 bytes of the hole remain; the segment stops at the SACKed range.
        assert_eq!(board.next_lost_segment(seq(0), 50), Some((seq(290), 10)));
        board.on_retransmit(seq(290), 10);
        assert_eq!(board.next_lost_segment(seq(0), 50), None);
    }

    #[test]
    fn next_lost_segment_starts_at_snd_una() {
        let board = board_with(1000, &[(100, 150), (300, 350), (500, 600)]);
        assert_eq!(board.next_lost_segment(seq(60), 100), Some((seq(60), 40)));
        assert_eq!(board.next_lost_segment(seq(0), 0), None);
    }

    // ---- SetPipe ----

    #[test]
    fn pipe_discounts_lost_and_recounts_retransmitted() {
        let mut board = board_with(1000, &[(100, 200), (300, 400), (500, 600)]);
        // 700 unSACKed; 0..100 is lost (3 ranges above).
        assert_eq!(board.pipe(seq(0), seq(1000), 100), 600);
        board.on_retransmit(seq(0), 100);
        assert_eq!(board.pipe(seq(0), seq(1000), 100), 700);
        // A retransmission of data not deemed lost counts twice.
        board.on_retransmit(seq(200), 100);
        assert_eq!(board.pipe(seq(0), seq(1000), 100), 800);
        board.start_recovery();
        assert_eq!(board.pipe(seq(0), seq(1000), 100), 600);
        assert_eq!(board.pipe(seq(0), seq(0), 100), 0);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut board = board_with(1000, &[(100, 200)]);
        board.on_retransmit(seq(0), 100);
        board.clear();
        assert!(board.is_empty());
        assert_eq!(board.sacked_bytes(), 0);
        assert_eq!(board.high_rxt(), None);
        assert_eq!(board.pipe(seq(0), seq(1000), 100), 1000);
    }

    // ---- against a per-octet model of RFC 6675 ----

    /// SplitMix64: a tiny deterministic generator for the model test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// Uniform in `0..=max`.
        fn upto(&mut self, max: usize) -> usize {
            (self.next() % (max as u64 + 1)) as usize
        }
    }

    /// RFC 6675's definitions, octet by octet. Offsets are from `seq(0)`.
    struct Model {
        una: usize,
        max: usize,
        sacked: Vec<bool>,
        /// One past the highest octet retransmitted.
        high_rxt: Option<usize>,
    }

    impl Model {
        /// Marks the blocks' octets within [una, max) and returns how many were new. Edges are
        /// given as offsets and may lie outside the window or be inverted.
        fn sack(&mut self, blocks: &[(usize, usize)]) -> usize {
            let mut newly = 0;
            for &(left, right) in blocks {
                for octet in left.max(self.una)..right.min(self.max) {
                    if !self.sacked[octet] {
                        self.sacked[octet] = true;
                        newly += 1;
                    }
                }
            }
            newly
        }

        fn is_sacked(&self, octet: usize) -> bool {
            (self.una..self.max).contains(&octet) && self.sacked[octet]
        }

        /// For every offset s in [0, max]: (SACKed octets above s, SACKed runs reaching above
        /// s), from one pass down the window.
        fn above(&self) -> Vec<(usize, usize)> {
            let mut above = vec![(0, 0); self.max + 1];
            let (mut bytes, mut runs) = (0, 0);
            for s in (0..self.max).rev() {
                above[s] = (bytes, runs);
                if self.is_sacked(s) {
                    bytes += 1;
                    if !self.is_sacked(s + 1) {
                        runs += 1;
                    }
                }
            }
            above
        }

        fn is_lost(above: &[(usize, usize)], octet: usize, mss: usize) -> bool {
            let (bytes, runs) = above.get(octet).copied().unwrap_or((0, 0));
            runs >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss
        }

        fn highest_sacked(&self) -> Option<usize> {
            (self.una..self.max).rev().find(|&s| self.sacked[s]).map(|s| s + 1)
        }

        fn next_lost_segment(&self, mss: usize) -> Option<(usize, usize)> {
            let above = self.above();
            let highest = self.highest_sacked()?;
            let from = self.high_rxt.map_or(self.una, |h| h.max(self.una));
            let start =
                (from..highest).find(|&s| !self.is_sacked(s) && Self::is_lost(&above, s, mss))?;
            let len = (start..start + mss).take_while(|&s| !self.is_sacked(s)).count();
            Some((start, len))
        }

        fn pipe(&self, mss: usize) -> usize {
            let above = self.above();
            let mut pipe = 0;
            for s in self.una..self.max {
                if self.is_sacked(s) {
                    continue;
                }
                if !Self::is_lost(&above, s, mss) {
                    pipe += 1;
                }
                if self.high_rxt.is_some_and(|h| s < h) {
                    pipe += 1;
                }
            }
            pipe
        }
    }

    #[test]
    fn random_recovery_matches_per_octet_model() {
        const SPACE: usize = 12_000;
        const MAX_WINDOW: usize = 2_500;
        let mut rng = Rng(0x5eed_0003);
        let mut retransmissions = 0;
        for round in 0..30 {
            let mss = [1, 10, 50, 100, 300][round % 5];
            let mut board = Scoreboard::new();
            let mut model = Model { una: 0, max: 0, sacked: vec![false; SPACE], high_rxt: None };
            for _ in 0..400 {
                match rng.upto(9) {
                    0..=1 => {
                        let room = (MAX_WINDOW - (model.max - model.una)).min(SPACE - model.max);
                        model.max += rng.upto(room.min(4 * mss));
                        assert_eq!(board.update(seq(model.una), seq(model.max), &[]), 0);
                    }
                    2..=4 => {
                        // Up to four blocks, mostly plausible, some straddling the window
                        // edges, some empty or inverted.
                        let count = 1 + rng.upto(3);
                        let blocks: Vec<(usize, usize)> = (0..count)
                            .map(|_| {
                                let left = model.una + rng.upto(model.max - model.una + 40);
                                let left = left.saturating_sub(20);
                                let right = (left + rng.upto(3 * mss)).saturating_sub(mss / 2);
                                (left, right)
                            })
                            .collect();
                        let sack_blocks: Vec<SackBlock> =
                            blocks.iter().map(|&(l, r)| block(l, r)).collect();
                        let before: Vec<bool> = model.sacked.clone();
                        let mut pieces = Vec::new();
                        let newly = board.update_with(
                            seq(model.una),
                            seq(model.max),
                            &sack_blocks,
                            |l, r| pieces.push((l - seq(0), r - seq(0))),
                        );
                        assert_eq!(newly, model.sack(&blocks));
                        // The pieces reported are exactly the octets newly SACKed, once each.
                        let mut reported = vec![false; SPACE];
                        for &(l, r) in &pieces {
                            assert!(l < r, "empty piece");
                            for octet in l..r {
                                assert!(!reported[octet] && !before[octet], "octet {octet}");
                                reported[octet] = true;
                            }
                        }
                        let fresh = (0..SPACE).filter(|&o| model.sacked[o] && !before[o]);
                        assert!(fresh.clone().all(|o| reported[o]));
                        assert_eq!(reported.iter().filter(|&&b| b).count(), fresh.count());
                    }
                    5 => {
                        model.una += rng.upto((model.max - model.una).min(3 * mss));
                        assert_eq!(board.update(seq(model.una), seq(model.max), &[]), 0);
                    }
                    6..=7 => {
                        let got = board.next_lost_segment(seq(model.una), mss);
                        let expected = model.next_lost_segment(mss);
                        assert_eq!(got, expected.map(|(s, len)| (seq(s), len)));
                        if let Some((start, len)) = expected {
                            board.on_retransmit(seq(start), len);
                            model.high_rxt = model.high_rxt.max(Some(start + len));
                            retransmissions += 1;
                        }
                    }
                    8 => {
                        // A retransmission outside NextSeg rule 1 (RTO, rescue).
                        let start = model.una + rng.upto(model.max - model.una);
                        let len = rng.upto((model.max - start).min(mss));
                        board.on_retransmit(seq(start), len);
                        model.high_rxt = model.high_rxt.max(Some(start + len));
                    }
                    _ => {
                        board.start_recovery();
                        model.high_rxt = None;
                    }
                }
                assert_eq!(board.high_rxt(), model.high_rxt.map(seq));
                assert_eq!(
                    board.sacked_bytes(),
                    (model.una..model.max).filter(|&s| model.sacked[s]).count()
                );
                assert_eq!(board.highest_sacked(), model.highest_sacked().map(seq));
                assert_eq!(board.pipe(seq(model.una), seq(model.max), mss), model.pipe(mss));
                assert_eq!(
                    board.next_lost_segment(seq(model.una), mss),
                    model.next_lost_segment(mss).map(|(s, len)| (seq(s), len))
                );
                let above = model.above();
                if model.una < model.max {
                    let left = model.una + rng.upto(model.max - model.una - 1);
                    let right = left + 1 + rng.upto(model.max - left - 1);
                    assert_eq!(
                        board.is_range_sacked(seq(left), seq(right)),
                        (left..right).all(|o| model.is_sacked(o)),
                        "is_range_sacked({left}, {right})"
                    );
                }
                for _ in 0..8 {
                    let octet =
                        (model.una + rng.upto(model.max - model.una + 10)).saturating_sub(5);
                    assert_eq!(board.is_sacked(seq(octet)), model.is_sacked(octet), "{octet}");
                    assert_eq!(
                        board.is_lost(seq(octet), mss),
                        Model::is_lost(&above, octet, mss),
                        "is_lost({octet})"
                    );
                }
            }
        }
        assert!(retransmissions > 200, "{retransmissions}");
    }
}
