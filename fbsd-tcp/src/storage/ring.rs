//! A fixed-capacity byte ring with in-place access, so that the layer above (stackd) and the
//! engine's segment builder read and write payload without an intermediate copy.

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
        let _ = capacity;
        todo!("storage helper")
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
        let _ = data;
        todo!("storage helper")
    }
    /// Removes up to `out.len()` bytes from the front into `out`; returns how many.
    pub fn dequeue_slice(&mut self, out: &mut [u8]) -> usize {
        let _ = out;
        todo!("storage helper")
    }
    /// The readable data in place, as (first part, wrapped part).
    pub fn readable(&self) -> (&[u8], &[u8]) {
        todo!("storage helper")
    }
    /// Drops `n` bytes from the front (`n <= len()`, else panics: a caller bug).
    pub fn consume(&mut self, n: usize) {
        let _ = n;
        todo!("storage helper")
    }
    /// The free space in place, as (first part, wrapped part); fill a prefix of it, then
    /// [`commit`](Self::commit) that many bytes.
    pub fn writable(&mut self) -> (&mut [u8], &mut [u8]) {
        todo!("storage helper")
    }
    /// Makes `n` bytes written through [`writable`](Self::writable) readable (`n <= free()`).
    pub fn commit(&mut self, n: usize) {
        let _ = n;
        todo!("storage helper")
    }
    /// Up to `len` readable bytes starting `offset` bytes after the front, in place, as two
    /// slices (empty if `offset >= len()`). TCP uses it to build segments from its send buffer,
    /// where the front is the oldest unacknowledged byte.
    pub fn peek(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let _ = (offset, len);
        todo!("storage helper")
    }
    /// Writes `data` into the free space starting `offset` bytes after the end of the readable
    /// data, without making it readable; returns how many bytes fit. TCP stores out-of-order
    /// segments this way and commits them once the gap before them is filled.
    pub fn write_unallocated(&mut self, offset: usize, data: &[u8]) -> usize {
        let _ = (offset, data);
        todo!("storage helper")
    }
    /// Changes the capacity, keeping the readable data. Fails (returns false, ring unchanged) if
    /// the data would not fit. Data written with `write_unallocated` is not preserved.
    pub fn resize(&mut self, capacity: usize) -> bool {
        let _ = capacity;
        todo!("storage helper")
    }
}
