//! Buffers the sockets keep payload in.

mod ring;
mod send_queue;

pub use ring::RingBuffer;
pub use send_queue::{SendQueue, SendSource};

/// Where a connection may put received bytes itself: a buffer the application shares with the
/// stack (a ring in shared memory), so that in-order payload is copied once, from the frame
/// into it, instead of into the receive buffer first. The engine uses it only while it holds
/// nothing itself (no unread bytes, no out-of-order ones) and only for a segment that fits
/// whole; otherwise the receive buffer takes the segment, and its window rules as before.
pub trait RecvSink: std::fmt::Debug + Send {
    /// Bytes the sink takes now.
    fn room(&self) -> usize;

    /// Appends `data` (at most [`room`](Self::room) bytes) for the application to read.
    fn deliver(&mut self, data: &[u8]);
}
