//! A connection's outgoing bytes, from SND.UNA on: first those the engine holds itself (copied in
//! by `send`), then, once the application lends one, those of a [`SendSource`] it shares with the
//! stack, which the engine copies straight into segments and hands back when acknowledged.

use std::fmt;

use super::RingBuffer;

/// Outgoing bytes that live outside the engine until they are acknowledged: a buffer the
/// application shares with the stack (a ring in shared memory), so that a byte is copied once,
/// from there into its segment, instead of into a send buffer first. The engine reads a byte as
/// often as it sends it (retransmissions included) and releases it once acknowledged; the
/// source must keep the bytes unchanged until then.
pub trait SendSource: fmt::Debug + Send {
    /// Copies the bytes at `offset` (counted from the oldest byte not yet released) into
    /// `into`, which is never longer than what the engine was told the source holds.
    fn copy_out(&mut self, offset: usize, into: &mut [u8]);

    /// The oldest `n` bytes are acknowledged: their space may be reused.
    fn release(&mut self, n: usize);
}

/// The send queue: owned bytes, then lent ones (see the module doc).
#[derive(Debug)]
pub struct SendQueue {
    owned: RingBuffer,
    lent: Option<Box<dyn SendSource>>,
    /// Bytes of the lent source in the queue (added by `extend_lent`, not yet released).
    lent_len: usize,
}

impl SendQueue {
    /// An empty queue whose own buffer holds `capacity` bytes.
    pub fn new(capacity: usize) -> SendQueue {
        SendQueue { owned: RingBuffer::new(capacity), lent: None, lent_len: 0 }
    }

    /// Bytes queued, owned and lent.
    pub fn len(&self) -> usize {
        self.owned.len() + self.lent_len
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The own buffer's capacity (SO_SNDBUF).
    pub fn capacity(&self) -> usize {
        self.owned.capacity()
    }

    /// Free space in the own buffer.
    pub fn free(&self) -> usize {
        self.owned.free()
    }

    /// True if `send` has nowhere to put bytes: the own buffer is full, or a source was lent
    /// (bytes copied in now would go after the lent ones already queued).
    pub fn is_full(&self) -> bool {
        self.lent.is_some() || self.owned.is_full()
    }

    /// The own buffer's free space, for `send` to fill; then [`commit`](Self::commit).
    pub fn writable(&mut self) -> (&mut [u8], &mut [u8]) {
        if self.lent.is_some() {
            return (&mut [], &mut []);
        }
        self.owned.writable()
    }

    /// Adds `n` bytes written into [`writable`](Self::writable) to the queue.
    pub fn commit(&mut self, n: usize) {
        self.owned.commit(n);
    }

    /// Resizes the own buffer (false if its bytes do not fit).
    pub fn resize(&mut self, capacity: usize) -> bool {
        self.owned.resize(capacity)
    }

    /// True once a source was lent.
    pub fn has_source(&self) -> bool {
        self.lent.is_some()
    }

    /// From now on the queue's new bytes come from `source`, after the owned ones. Refused
    /// (the source is handed back) if one was lent already.
    pub fn lend(&mut self, source: Box<dyn SendSource>) -> Result<(), Box<dyn SendSource>> {
        if self.lent.is_some() {
            return Err(source);
        }
        self.lent = Some(source);
        Ok(())
    }

    /// `n` more bytes of the lent source are queued; false (nothing added) without a source.
    pub fn extend_lent(&mut self, n: usize) -> bool {
        if self.lent.is_none() {
            return false;
        }
        self.lent_len += n;
        true
    }

    /// Copies the queued bytes at `offset` into `into` (`offset + into.len() <= len()`).
    pub fn copy_out(&mut self, offset: usize, into: &mut [u8]) {
        let owned = self.owned.len();
        let mut done = 0;
        if offset < owned {
            let (first, second) = self.owned.peek(offset, into.len().min(owned - offset));
            into[..first.len()].copy_from_slice(first);
            into[first.len()..first.len() + second.len()].copy_from_slice(second);
            done = first.len() + second.len();
        }
        if done < into.len() {
            debug_assert!(offset + into.len() <= self.len(), "read beyond the send queue");
            if let Some(source) = &mut self.lent {
                source.copy_out(offset + done - owned, &mut into[done..]);
            }
        }
    }

    /// Drops the oldest `n` bytes (acknowledged): owned ones first, then lent ones, released
    /// to their source.
    pub fn consume(&mut self, n: usize) {
        let owned = n.min(self.owned.len());
        self.owned.consume(owned);
        let lent = (n - owned).min(self.lent_len);
        if lent > 0 {
            self.lent_len -= lent;
            if let Some(source) = &mut self.lent {
                source.release(lent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source over a vector: `released` counts what the queue gave back.
    #[derive(Debug, Default)]
    struct VecSource {
        bytes: Vec<u8>,
        released: usize,
    }

    impl SendSource for VecSource {
        fn copy_out(&mut self, offset: usize, into: &mut [u8]) {
            let at = self.released + offset;
            into.copy_from_slice(&self.bytes[at..at + into.len()]);
        }

        fn release(&mut self, n: usize) {
            self.released += n;
        }
    }

    #[test]
    fn lent_bytes_follow_owned_ones_and_are_released_when_consumed() {
        let mut queue = SendQueue::new(8);
        let (first, _) = queue.writable();
        first[..3].copy_from_slice(b"abc");
        queue.commit(3);
        let source = VecSource { bytes: b"defghij".to_vec(), released: 0 };
        queue.lend(Box::new(source)).unwrap();
        assert!(queue.is_full(), "owned sends would overtake lent bytes");
        assert_eq!(queue.writable().0.len(), 0);
        assert!(queue.extend_lent(5));
        assert_eq!(queue.len(), 8);

        let mut out = [0u8; 6];
        queue.copy_out(1, &mut out);
        assert_eq!(&out, b"bcdefg");
        queue.consume(4); // "abc" and "d"
        let mut out = [0u8; 4];
        queue.copy_out(0, &mut out);
        assert_eq!(&out, b"efgh");
        assert_eq!(queue.len(), 4);
        queue.consume(10); // more than queued: only what is
        assert!(queue.is_empty());
        let lent = format!("{:?}", queue.lent);
        assert!(lent.contains("released: 5"), "{lent}");
        assert!(queue.lend(Box::new(VecSource::default())).is_err(), "one source per queue");
    }

    #[test]
    fn without_a_source_nothing_is_lent() {
        let mut queue = SendQueue::new(8);
        assert!(!queue.extend_lent(3));
        assert_eq!(queue.len(), 0);
        assert!(!queue.is_full());
    }
}
