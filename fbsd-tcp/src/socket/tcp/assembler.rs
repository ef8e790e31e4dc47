//! The receiver's out-of-order bookkeeping: which byte ranges beyond `RCV.NXT` are already held
//! in the receive ring (written there with `RingBuffer::write_unallocated`). Offsets are relative
//! to the current front (`RCV.NXT`).

/// Too many disjoint ranges to track; the segment must be dropped (its data is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many holes in the out-of-order queue")]
pub struct TooManyHoles;

/// Sorted, disjoint, non-adjacent byte ranges held beyond the contiguous front.
#[derive(Debug, Clone)]
pub struct Assembler {
    /// (start, end) offsets relative to the front, sorted, disjoint and non-adjacent.
    ranges: Vec<(usize, usize)>,
    max_ranges: usize,
}

impl Assembler {
    /// An empty assembler that tracks at most `max_ranges` disjoint ranges.
    pub fn new(max_ranges: usize) -> Assembler {
        Assembler { ranges: Vec::new(), max_ranges }
    }
    /// True if nothing is held beyond the front.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    /// Records that bytes `[offset, offset + len)` are held, merging with overlapping or adjacent
    /// ranges. Fails, recording nothing, if that would exceed `max_ranges`.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<(), TooManyHoles> {
        let _ = (offset, len);
        todo!("storage helper")
    }
    /// If a range starts at offset 0, removes it, shifts every other range down by its length and
    /// returns that length (the bytes that became contiguous); otherwise 0.
    pub fn remove_front(&mut self) -> usize {
        todo!("storage helper")
    }
    /// The held ranges, (start, end) relative to the front, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges.iter().copied()
    }
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}
