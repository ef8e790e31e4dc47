//! A deterministic simulated link between two [`crate::Stack`]s, in virtual time, with a seeded
//! impairment model: loss, reordering, duplication, delay and jitter, corruption, a path MTU
//! below the stacks' (a router in the middle that fragments or answers "fragmentation needed"),
//! and a bandwidth cap with a finite queue. Same seed, same run.
//!
//! Like the rest of the crate it is sans-IO: no threads, no clock, no sockets. Time only moves
//! when [`Pair`] steps to the next event, so a run that would take minutes on a real network
//! (a 10 ms RTT, RTOs of a second) takes as long as the engine needs to compute it.
//!
//! - [`Rng`]: our own splitmix64, so a seed means the same run forever.
//! - [`Link`] and [`Impairments`]: what happens to frames in each direction, counted in
//!   [`LinkCounters`].
//! - [`Pair`]: stacks A (10.0.0.1) and B (10.0.0.2) on a link, stepped in virtual time, with an
//!   application hook that acts between steps and a driver that fails loudly on livelock.
//! - [`Bulk`]: a TCP bulk-transfer workload for that hook, checking every byte it receives.
//!
//! Used by the lossy-link tests, the `lossy_link` example and the `engine` benchmark.

mod bulk;
mod link;
mod pair;
mod rng;

pub use bulk::{Bulk, BulkError, Pattern};
pub use link::{ImpairmentError, Impairments, Link, LinkCounters, ROUTER_ADDR};
pub use pair::{DriveError, Event, Pair};
pub use rng::Rng;

/// One end of the simulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// 10.0.0.1
    A,
    /// 10.0.0.2
    B,
}

impl Side {
    /// The other end.
    pub const fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    const fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}
