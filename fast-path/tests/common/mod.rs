//! What the library's protocol tests share: a connected socketpair with a fast-path
//! connection on each end, and a cheap deterministic generator.

#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use joyride_fastpath::conn::Conn;
use stackd::ring::RingRegion;

/// Two connected sockets and their connections (neither reads its ring yet: each direction
/// starts on the socket), each side mapping the two rings on its own, as two programs would.
pub fn conn_pair(capacity: usize) -> [(UnixStream, Arc<Conn>); 2] {
    let (a, b) = UnixStream::pair().unwrap();
    let a_to_b = RingRegion::create(capacity).unwrap();
    let b_to_a = RingRegion::create(capacity).unwrap();
    let a_to_b_peer = RingRegion::map(a_to_b.fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
    let b_to_a_peer = RingRegion::map(b_to_a.fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
    [
        (a, Arc::new(Conn::new(b_to_a, a_to_b).unwrap())),
        (b, Arc::new(Conn::new(a_to_b_peer, b_to_a_peer).unwrap())),
    ]
}

/// xorshift64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
