//! A fixed-capacity byte ring with in-place access, so that the layer above (stackd) and the
//! engine's segment builder read and write payload without an intermediate copy.
//!
//! Every payload byte passes through a ring twice (in and out), so all transfers are at most two
//! `copy_from_slice` calls (one per side of the wrap point) and nothing allocates after
//! [`RingBuffer::new`] except an explicit [`RingBuffer::resize`].

/// A byte ring buffer. Readable data starts at the read position and is `len()` bytes long; the
/// free space follows it. Both may wrap, so in-place views come as two slices.
#[derive(Debug)]
pub struct RingBuffer {
    storage: Box<[u8]>,
    read_at: usize,
    len: usize,
}

impl RingBuffer {
    /// An empty ring of `capacity` bytes. The memory is zero-initialised lazily by the allocator
    /// (pages are not touched until written), so large idle buffers cost little.
    pub fn new(capacity: usize) -> RingBuffer {
        // `vec![0; n]` goes through the zeroed allocator (calloc), which maps fresh zero pages
        // for large sizes instead of writing them.
        RingBuffer { storage: vec![0u8; capacity].into_boxed_slice(), read_at: 0, len: 0 }
    }
    /// Total bytes the ring holds when full.
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }
    /// Bytes readable.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True if nothing is readable.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes that can still be written.
    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }
    /// True if nothing can be written.
    pub fn is_full(&self) -> bool {
        self.free() == 0
    }
    /// Appends as much of `data` as fits; returns how much.
    pub fn enqueue_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        let at = self.wrap(self.read_at + self.len);
        self.copy_in(at, &data[..n]);
        self.len += n;
        n
    }
    /// Removes up to `out.len()` bytes from the front into `out`; returns how many.
    pub fn dequeue_slice(&mut self, out: &mut [u8]) -> usize {
        let (first, second) = self.peek(0, out.len());
        let n = first.len() + second.len();
        out[..first.len()].copy_from_slice(first);
        out[first.len()..n].copy_from_slice(second);
        self.consume(n);
        n
    }
    /// The readable data in place, as (first part, wrapped part).
    pub fn readable(&self) -> (&[u8], &[u8]) {
        self.peek(0, self.len)
    }
    /// Drops `n` bytes from the front (`n <= len()`, else panics: a caller bug).
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len, "consume({n}) with only {} bytes readable", self.len);
        // The read position is not reset when the ring empties: data stored past the end with
        // `write_unallocated` is addressed relative to it and must stay where it is.
        self.read_at = self.wrap(self.read_at + n);
        self.len -= n;
    }
    /// The free space in place, as (first part, wrapped part); fill a prefix of it, then
    /// [`commit`](Self::commit) that many bytes.
    pub fn writable(&mut self) -> (&mut [u8], &mut [u8]) {
        let at = self.wrap(self.read_at + self.len);
        let free = self.free();
        let (before, from_at) = self.storage.split_at_mut(at);
        if free <= from_at.len() {
            (&mut from_at[..free], &mut [])
        } else {
            let wrapped = free - from_at.len();
            (from_at, &mut before[..wrapped])
        }
    }
    /// Makes `n` bytes written through [`writable`](Self::writable) readable (`n <= free()`).
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.free(), "commit({n}) with only {} bytes free", self.free());
        self.len += n;
    }
    /// Up to `len` readable bytes starting `offset` bytes after the front, in place, as two
    /// slices (empty if `offset >= len()`). TCP uses it to build segments from its send buffer,
    /// where the front is the oldest unacknowledged byte.
    pub fn peek(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        if offset >= self.len {
            return (&[], &[]);
        }
        let n = len.min(self.len - offset);
        let at = self.wrap(self.read_at + offset);
        let first = n.min(self.capacity() - at);
        (&self.storage[at..at + first], &self.storage[..n - first])
    }
    /// Writes `data` into the free space starting `offset` bytes after the end of the readable
    /// data, without making it readable; returns how many bytes fit. TCP stores out-of-order
    /// segments this way and commits them once the gap before them is filled.
    pub fn write_unallocated(&mut self, offset: usize, data: &[u8]) -> usize {
        let free = self.free();
        if offset >= free {
            return 0;
        }
        let n = data.len().min(free - offset);
        // read_at + len + offset < read_at + capacity < 2 × capacity: one wrap suffices.
        let at = self.wrap(self.read_at + self.len + offset);
        self.copy_in(at, &data[..n]);
        n
    }
    /// Changes the capacity, keeping the readable data. Fails (returns false, ring unchanged) if
    /// the data would not fit. Data written with `write_unallocated` is not preserved.
    ///
    /// The readable data moves to the start of the new storage, so right after a resize it is
    /// one contiguous slice. Resizing to the current capacity changes nothing.
    pub fn resize(&mut self, capacity: usize) -> bool {
        if capacity < self.len {
            return false;
        }
        if capacity == self.capacity() {
            return true;
        }
        let mut storage = vec![0u8; capacity].into_boxed_slice();
        let (first, second) = self.readable();
        storage[..first.len()].copy_from_slice(first);
        storage[first.len()..self.len].copy_from_slice(second);
        self.storage = storage;
        self.read_at = 0;
        true
    }

    /// Maps a position that is at most one lap past the end of the storage back into it.
    /// Written without `%` so that capacity 0 (where every position is 0) needs no special case.
    fn wrap(&self, position: usize) -> usize {
        debug_assert!(position <= 2 * self.capacity(), "position {position} more than a lap out");
        if position >= self.capacity() {
            position - self.capacity()
        } else {
            position
        }
    }

    /// Copies `data` into the storage starting at index `at`, continuing at index 0 past the
    /// end. The caller has checked that `data` fits in the free space.
    fn copy_in(&mut self, at: usize, data: &[u8]) {
        let first = data.len().min(self.capacity() - at);
        self.storage[at..at + first].copy_from_slice(&data[..first]);
        self.storage[..data.len() - first].copy_from_slice(&data[first..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

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
        /// Random bytes, between none and `max` of them.
        fn bytes_upto(&mut self, max: usize) -> Vec<u8> {
            let len = self.upto(max);
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    fn joined((first, second): (&[u8], &[u8])) -> Vec<u8> {
        [first, second].concat()
    }

    /// A ring whose read position sits `read_at` bytes into its storage, empty.
    fn ring_at(capacity: usize, read_at: usize) -> RingBuffer {
        let mut ring = RingBuffer::new(capacity);
        assert_eq!(ring.enqueue_slice(&vec![0xee; read_at]), read_at);
        ring.consume(read_at);
        ring
    }

    // ---- basic queue behaviour ----

    #[test]
    fn enqueue_dequeue_roundtrip() {
        let mut ring = RingBuffer::new(8);
        assert!(ring.is_empty());
        assert_eq!(ring.enqueue_slice(b"hello"), 5);
        assert_eq!((ring.len(), ring.free()), (5, 3));
        let mut out = [0u8; 3];
        assert_eq!(ring.dequeue_slice(&mut out), 3);
        assert_eq!(&out, b"hel");
        assert_eq!(joined(ring.readable()), b"lo");
    }

    #[test]
    fn enqueue_stops_when_full() {
        let mut ring = RingBuffer::new(4);
        assert_eq!(ring.enqueue_slice(b"abcdef"), 4);
        assert!(ring.is_full());
        assert_eq!(ring.enqueue_slice(b"x"), 0);
        let mut out = [0u8; 10];
        assert_eq!(ring.dequeue_slice(&mut out), 4);
        assert_eq!(&out[..4], b"abcd");
        assert!(ring.is_empty());
    }

    #[test]
    fn zero_capacity_is_empty_and_full() {
        let mut ring = RingBuffer::new(0);
        assert!(ring.is_empty() && ring.is_full());
        assert_eq!(ring.enqueue_slice(b"abc"), 0);
        assert_eq!(ring.dequeue_slice(&mut [0u8; 4]), 0);
        assert_eq!(ring.readable(), (&[][..], &[][..]));
        assert_eq!(ring.peek(0, 5), (&[][..], &[][..]));
        let (first, second) = ring.writable();
        assert!(first.is_empty() && second.is_empty());
        ring.commit(0);
        ring.consume(0);
        assert_eq!(ring.write_unallocated(0, b"abc"), 0);
        assert!(ring.resize(0));
        assert!(ring.resize(3));
        assert_eq!(ring.enqueue_slice(b"abcd"), 3);
        assert!(!ring.resize(0));
    }

    #[test]
    #[should_panic(expected = "consume(3)")]
    fn consume_past_end_panics() {
        let mut ring = RingBuffer::new(8);
        ring.enqueue_slice(b"ab");
        ring.consume(3);
    }

    #[test]
    #[should_panic(expected = "commit(9)")]
    fn commit_past_free_panics() {
        RingBuffer::new(8).commit(9);
    }

    // ---- the wrap point ----

    #[test]
    fn readable_splits_at_wrap_point() {
        let mut ring = ring_at(8, 6);
        assert_eq!(ring.enqueue_slice(b"abcde"), 5);
        assert_eq!(ring.readable(), (&b"ab"[..], &b"cde"[..]));
        assert_eq!(ring.peek(1, 3), (&b"b"[..], &b"cd"[..]));
        assert_eq!(ring.peek(2, 10), (&b"cde"[..], &b""[..]));
        assert_eq!(ring.peek(5, 1), (&b""[..], &b""[..]));
    }

    #[test]
    fn data_ending_exactly_at_wrap_point_is_one_slice() {
        let mut ring = ring_at(8, 5);
        ring.enqueue_slice(b"xyz");
        assert_eq!(ring.readable(), (&b"xyz"[..], &b""[..]));
        let (first, second) = ring.writable();
        assert_eq!((first.len(), second.len()), (5, 0));
    }

    #[test]
    fn writable_splits_at_wrap_point() {
        let mut ring = ring_at(8, 3);
        ring.enqueue_slice(b"ab");
        let (first, second) = ring.writable();
        assert_eq!((first.len(), second.len()), (3, 3));
        first.copy_from_slice(b"cde");
        second[..1].copy_from_slice(b"f");
        ring.commit(4);
        assert_eq!(ring.readable(), (&b"abcde"[..], &b"f"[..]));
    }

    #[test]
    fn dequeue_across_wrap_point() {
        let mut ring = ring_at(8, 7);
        ring.enqueue_slice(b"abcdef");
        let mut out = [0u8; 6];
        assert_eq!(ring.dequeue_slice(&mut out), 6);
        assert_eq!(&out, b"abcdef");
    }

    #[test]
    fn out_of_order_data_across_wrap_point_commits_in_order() {
        let mut ring = ring_at(8, 4);
        ring.enqueue_slice(b"ab");
        // Free space runs from index 6 around to 3; a segment two bytes past the end lands
        // across the wrap point.
        assert_eq!(ring.write_unallocated(2, b"efgh"), 4);
        assert_eq!(ring.len(), 2, "unallocated data is not readable");
        assert_eq!(ring.write_unallocated(0, b"cd"), 2);
        ring.commit(6);
        assert_eq!(ring.readable(), (&b"abcd"[..], &b"efgh"[..]));
    }

    #[test]
    fn write_unallocated_is_clipped_to_free_space() {
        let mut ring = ring_at(8, 2);
        ring.enqueue_slice(b"abc");
        assert_eq!(ring.write_unallocated(3, b"xyz"), 2);
        assert_eq!(ring.write_unallocated(5, b"xyz"), 0);
        assert_eq!(ring.write_unallocated(9, b"xyz"), 0);
    }

    #[test]
    fn out_of_order_data_survives_reads() {
        let mut ring = RingBuffer::new(8);
        ring.enqueue_slice(b"abc");
        ring.write_unallocated(1, b"yz");
        ring.consume(3);
        assert!(ring.is_empty());
        ring.write_unallocated(0, b"x");
        ring.commit(3);
        assert_eq!(joined(ring.readable()), b"xyz");
    }

    // ---- resize ----

    #[test]
    fn resize_keeps_wrapped_data_linearised() {
        let mut ring = ring_at(8, 6);
        ring.enqueue_slice(b"abcde");
        assert!(ring.resize(5));
        assert_eq!(ring.capacity(), 5);
        assert_eq!(ring.readable(), (&b"abcde"[..], &b""[..]));
        assert!(ring.resize(16));
        assert_eq!(ring.readable(), (&b"abcde"[..], &b""[..]));
        assert_eq!(ring.free(), 11);
    }

    #[test]
    fn resize_below_len_fails_and_changes_nothing() {
        let mut ring = ring_at(8, 6);
        ring.enqueue_slice(b"abcde");
        assert!(!ring.resize(4));
        assert_eq!(ring.capacity(), 8);
        assert_eq!(ring.readable(), (&b"ab"[..], &b"cde"[..]));
    }

    // ---- against a VecDeque model ----

    /// Random operations against a `VecDeque` of readable bytes plus a model of what is known
    /// to sit in the free space past the end (written with `write_unallocated`).
    #[test]
    fn random_operations_match_model() {
        let mut rng = Rng(0x5eed_0001);
        let mut out_of_order_bytes_committed = 0;
        for round in 0..40 {
            let capacity = [0, 1, 2, 7, 64, 257][round % 6];
            let mut ring = RingBuffer::new(capacity);
            let mut model: VecDeque<u8> = VecDeque::new();
            // pending[i]: the byte known to be stored i bytes past the readable end.
            let mut pending: VecDeque<Option<u8>> = VecDeque::new();
            for _ in 0..2000 {
                let cap = ring.capacity();
                match rng.upto(8) {
                    0 => {
                        let data = rng.bytes_upto(cap + 2);
                        let n = ring.enqueue_slice(&data);
                        assert_eq!(n, data.len().min(cap - model.len()));
                        model.extend(&data[..n]);
                        pending.drain(..n.min(pending.len()));
                    }
                    1 => {
                        let mut out = vec![0u8; rng.upto(cap + 2)];
                        let n = ring.dequeue_slice(&mut out);
                        assert_eq!(n, out.len().min(model.len()));
                        let expected: Vec<u8> = model.drain(..n).collect();
                        assert_eq!(out[..n], expected[..]);
                    }
                    2 => {
                        let n = rng.upto(model.len());
                        ring.consume(n);
                        model.drain(..n);
                    }
                    3 => {
                        let offset = rng.upto(cap + 1);
                        let len = rng.upto(cap + 1);
                        let got = joined(ring.peek(offset, len));
                        let expected: Vec<u8> =
                            model.iter().copied().skip(offset).take(len).collect();
                        assert_eq!(got, expected);
                    }
                    4 => {
                        let data = rng.bytes_upto(cap + 1);
                        let (first, second) = ring.writable();
                        assert_eq!(first.len() + second.len(), cap - model.len());
                        let n = data.len().min(first.len() + second.len());
                        let split = n.min(first.len());
                        first[..split].copy_from_slice(&data[..split]);
                        second[..n - split].copy_from_slice(&data[split..n]);
                        ring.commit(n);
                        model.extend(&data[..n]);
                        pending.drain(..n.min(pending.len()));
                    }
                    5 | 6 => {
                        let free = cap - model.len();
                        let offset = rng.upto(free + 1);
                        let data = rng.bytes_upto(free / 2 + 1);
                        let n = ring.write_unallocated(offset, &data);
                        assert_eq!(n, data.len().min(free.saturating_sub(offset)));
                        if n > 0 && pending.len() < offset + n {
                            pending.resize(offset + n, None);
                        }
                        for (i, &byte) in data[..n].iter().enumerate() {
                            pending[offset + i] = Some(byte);
                        }
                    }
                    7 => {
                        // Commit a prefix of the known out-of-order bytes, as TCP does once
                        // the hole before them is filled.
                        let known = pending.iter().take_while(|b| b.is_some()).count();
                        let n = rng.upto(known);
                        ring.commit(n);
                        model.extend(pending.drain(..n).map(|b| b.unwrap()));
                        out_of_order_bytes_committed += n;
                    }
                    _ => {
                        let new_capacity = rng.upto(300);
                        let ok = ring.resize(new_capacity);
                        assert_eq!(ok, new_capacity >= model.len());
                        if ok && new_capacity != cap {
                            pending.clear();
                            assert!(ring.readable().1.is_empty(), "resize linearises");
                        }
                        pending.truncate(ring.capacity() - model.len());
                    }
                }
                assert_eq!(ring.len(), model.len());
                assert_eq!(ring.free(), ring.capacity() - model.len());
                assert!(pending.len() <= ring.free());
                assert!(joined(ring.readable()).iter().eq(model.iter()));
            }
        }
        assert!(out_of_order_bytes_committed > 1000, "{out_of_order_bytes_committed}");
    }
}
