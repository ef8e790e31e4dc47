//! IPv4 fragmentation on send and reassembly on receive (RFC 791, RFC 815), with a timeout and a
//! memory cap. Overlapping fragments drop the whole datagram, in the spirit of RFC 5722 (which
//! says so for IPv6): overlaps have no honest use and are a classic evasion and DoS vector.

use core::ops::Range;

use crate::time::{Duration, Instant};
use crate::wire::Ipv4Repr;

/// Why a fragment did not lead to a datagram. Each is a counted drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// The fragment overlaps data already held: the whole datagram is discarded.
    #[error("overlapping fragment")]
    Overlap,
    /// The fragments describe a datagram longer than 65535 bytes, or inconsistent ends.
    #[error("malformed fragment")]
    Malformed,
    /// Holding it would exceed the memory cap: the fragment (and, if needed, the oldest
    /// partial datagram) is dropped.
    #[error("reassembly memory exhausted")]
    MemoryExhausted,
    /// Too many disjoint pieces in one datagram.
    #[error("too many fragments")]
    TooManyFragments,
}

/// Partial datagrams being reassembled.
#[derive(Debug)]
pub struct Reassembler {
    timeout: Duration,
    max_bytes: usize,
    // The iface helper defines the rest.
}

impl Reassembler {
    /// Keeps partial datagrams at most `timeout` (RFC 791 suggests 15 s; Linux uses 30 s) and at
    /// most `max_bytes` of fragment data in all.
    pub fn new(timeout: Duration, max_bytes: usize) -> Reassembler {
        let _ = (timeout, max_bytes);
        todo!("iface helper")
    }
    /// Adds a fragment (`header.is_fragment()` must be true; `payload` is its data). Returns the
    /// whole datagram when this fragment completes it: the first fragment's header with the
    /// fragmentation fields cleared and `payload_len` set, and the payload.
    pub fn add(
        &mut self,
        now: Instant,
        header: &Ipv4Repr,
        payload: &[u8],
    ) -> Result<Option<(Ipv4Repr, Vec<u8>)>, ReassemblyError> {
        let _ = (now, header, payload);
        todo!("iface helper")
    }
    /// Drops partial datagrams older than the timeout; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let _ = now;
        todo!("iface helper")
    }
    /// When the oldest partial datagram times out.
    pub fn poll_at(&self) -> Option<Instant> {
        todo!("iface helper")
    }
    /// Bytes of fragment data held.
    pub fn held_bytes(&self) -> usize {
        todo!("iface helper")
    }
}

/// Splits a datagram of `payload_len` bytes for a link of `mtu` bytes: each item is the header of
/// one fragment (ident, MF and offset set; `payload_len` set) and the byte range of the payload it
/// carries. Fragment payloads are multiples of 8 bytes except the last. A datagram that fits is
/// one item equal to `header`.
pub fn fragments(
    header: &Ipv4Repr,
    mtu: usize,
) -> impl Iterator<Item = (Ipv4Repr, Range<usize>)> + '_ {
    let _ = mtu;
    let _: &Ipv4Repr = header;
    core::iter::from_fn(|| todo!("iface helper"))
}
