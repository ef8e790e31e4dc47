//! Buffers the sockets keep payload in.

mod ring;
mod send_queue;

pub use ring::RingBuffer;
pub use send_queue::{SendQueue, SendSource};
