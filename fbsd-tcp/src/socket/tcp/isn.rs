//! Initial sequence numbers per RFC 6528 and per-connection timestamp offsets (RFC 7323 §7.1):
//! ISN = M + F(local, remote, secret), M a 4 µs clock, F a keyed hash (SipHash-1-3) over the
//! 4-tuple. The secret comes from the caller (the engine has no source of randomness).

use std::net::SocketAddrV4;

use crate::time::Instant;
use crate::wire::SeqNumber;

/// Generates ISNs and timestamp offsets from a secret key.
#[derive(Debug, Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
}

impl IsnGenerator {
    /// A generator keyed with `secret` (16 random bytes from the caller).
    pub fn new(secret: [u8; 16]) -> IsnGenerator {
        IsnGenerator { key: secret }
    }
    /// The ISN for a connection between `local` and `remote` at `now`.
    pub fn isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> SeqNumber {
        let _ = (now, local, remote);
        todo!("storage helper")
    }
    /// A per-connection offset added to the timestamp clock, so TSvals do not reveal uptime and
    /// differ between connections (but stay monotonic for one 4-tuple).
    pub fn timestamp_offset(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let _ = (local, remote);
        todo!("storage helper")
    }
}
