//! Buffers the sockets keep payload in.

mod ring;

pub use ring::RingBuffer;
