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
    ///
    /// Adding an empty range changes nothing and always succeeds.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<(), TooManyHoles> {
        if len == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(len);
        // Ranges [first, last) are the ones the new range overlaps or touches: every one before
        // `first` ends before `offset`, every one from `last` on starts after `end`.
        let first = self.ranges.partition_point(|&(_, e)| e < offset);
        let last = self.ranges.partition_point(|&(s, _)| s <= end);
        if first == last {
            if self.ranges.len() >= self.max_ranges {
                return Err(TooManyHoles);
            }
            self.ranges.insert(first, (offset, end));
        } else {
            let start = offset.min(self.ranges[first].0);
            let end = end.max(self.ranges[last - 1].1);
            self.ranges[first] = (start, end);
            self.ranges.drain(first + 1..last);
        }
        Ok(())
    }
    /// If a range starts at offset 0, removes it, shifts every other range down by its length and
    /// returns that length (the bytes that became contiguous); otherwise 0.
    pub fn remove_front(&mut self) -> usize {
        match self.ranges.first() {
            Some(&(0, len)) => {
                self.ranges.remove(0);
                for range in &mut self.ranges {
                    range.0 -= len;
                    range.1 -= len;
                }
                len
            }
            _ => 0,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn ranges(assembler: &Assembler) -> Vec<(usize, usize)> {
        assembler.ranges().collect()
    }

    fn assembler_with(max_ranges: usize, held: &[(usize, usize)]) -> Assembler {
        let mut assembler = Assembler::new(max_ranges);
        for &(start, end) in held {
            assembler.add(start, end - start).unwrap();
        }
        assembler
    }

    // ---- add ----

    #[test]
    fn add_keeps_ranges_sorted() {
        let assembler = assembler_with(8, &[(20, 30), (0, 5), (10, 12)]);
        assert_eq!(ranges(&assembler), [(0, 5), (10, 12), (20, 30)]);
    }

    #[test]
    fn add_merges_overlapping_ranges() {
        let mut assembler = assembler_with(8, &[(10, 20), (30, 40), (50, 60)]);
        assembler.add(15, 20).unwrap();
        assert_eq!(ranges(&assembler), [(10, 40), (50, 60)]);
        assembler.add(5, 100).unwrap();
        assert_eq!(ranges(&assembler), [(5, 105)]);
    }

    #[test]
    fn add_merges_adjacent_ranges() {
        let mut assembler = assembler_with(8, &[(10, 20), (30, 40)]);
        assembler.add(20, 10).unwrap();
        assert_eq!(ranges(&assembler), [(10, 40)]);
        assembler.add(40, 1).unwrap();
        assembler.add(9, 1).unwrap();
        assert_eq!(ranges(&assembler), [(9, 41)]);
    }

    #[test]
    fn add_inside_existing_range_changes_nothing() {
        let mut assembler = assembler_with(1, &[(10, 20)]);
        assembler.add(12, 3).unwrap();
        assert_eq!(ranges(&assembler), [(10, 20)]);
    }

    #[test]
    fn add_empty_range_is_a_no_op() {
        let mut assembler = assembler_with(1, &[(10, 20)]);
        assembler.add(50, 0).unwrap();
        assert_eq!(ranges(&assembler), [(10, 20)]);
    }

    #[test]
    fn add_beyond_max_ranges_fails_and_changes_nothing() {
        let mut assembler = assembler_with(2, &[(10, 20), (30, 40)]);
        assert_eq!(assembler.add(50, 5), Err(TooManyHoles));
        assert_eq!(assembler.add(0, 5), Err(TooManyHoles));
        assert_eq!(assembler.add(22, 5), Err(TooManyHoles));
        assert_eq!(ranges(&assembler), [(10, 20), (30, 40)]);
        // Merging never needs a new range, so it still works when full.
        assembler.add(20, 10).unwrap();
        assembler.add(50, 5).unwrap();
        assert_eq!(ranges(&assembler), [(10, 40), (50, 55)]);
    }

    #[test]
    fn zero_max_ranges_holds_nothing() {
        let mut assembler = Assembler::new(0);
        assert_eq!(assembler.add(0, 5), Err(TooManyHoles));
        assert!(assembler.is_empty());
    }

    // ---- remove_front ----

    #[test]
    fn remove_front_shifts_the_rest_down() {
        let mut assembler = assembler_with(8, &[(0, 10), (15, 20), (30, 31)]);
        assert_eq!(assembler.remove_front(), 10);
        assert_eq!(ranges(&assembler), [(5, 10), (20, 21)]);
        assert_eq!(assembler.remove_front(), 0);
        assert_eq!(ranges(&assembler), [(5, 10), (20, 21)]);
    }

    #[test]
    fn in_order_segment_joins_held_data() {
        // The receiver's pattern: an in-order segment is added at offset 0, then everything
        // contiguous with it is taken.
        let mut assembler = assembler_with(8, &[(5, 10), (20, 30)]);
        assembler.add(0, 5).unwrap();
        assert_eq!(assembler.remove_front(), 10);
        assert_eq!(ranges(&assembler), [(10, 20)]);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut assembler = assembler_with(8, &[(5, 10), (20, 30)]);
        assembler.clear();
        assert!(assembler.is_empty());
        assert_eq!(assembler.remove_front(), 0);
    }

    // ---- against a bitmap model ----

    #[test]
    fn random_adds_and_removes_match_bitmap() {
        const SPACE: usize = 200;
        let mut rng = Rng(0x5eed_0002);
        for round in 0..50 {
            let max_ranges = [1, 2, 3, 8, 64][round % 5];
            let mut assembler = Assembler::new(max_ranges);
            let mut held = vec![false; SPACE + 64];
            for _ in 0..500 {
                if rng.upto(5) == 0 {
                    let len = assembler.remove_front();
                    let expected = held.iter().take_while(|&&b| b).count();
                    assert_eq!(len, expected);
                    held.drain(..len);
                    held.resize(SPACE + 64, false);
                } else {
                    let offset = rng.upto(SPACE);
                    let len = rng.upto(20);
                    let mut with_range = held.clone();
                    with_range[offset..offset + len].fill(true);
                    let needed = runs(&with_range).len();
                    match assembler.add(offset, len) {
                        Ok(()) => {
                            assert!(needed <= max_ranges);
                            held = with_range;
                        }
                        Err(TooManyHoles) => assert!(needed > max_ranges),
                    }
                }
                assert_eq!(ranges(&assembler), runs(&held));
                assert_eq!(assembler.is_empty(), !held.contains(&true));
            }
        }
    }

    /// Maximal runs of `true`, as (start, end).
    fn runs(bitmap: &[bool]) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < bitmap.len() {
            if bitmap[i] {
                let start = i;
                while i < bitmap.len() && bitmap[i] {
                    i += 1;
                }
                runs.push((start, i));
            } else {
                i += 1;
            }
        }
        runs
    }
}
