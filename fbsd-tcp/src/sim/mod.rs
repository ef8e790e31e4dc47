//! A deterministic simulated link between two [`crate::Stack`]s, in virtual time, with a seeded
//! impairment model: loss, reordering, duplication, delay and jitter, corruption, a path MTU
//! below the stacks' (a router in the middle that fragments or answers "fragmentation needed"),
//! and a bandwidth cap with a finite queue. Same seed, same run.
//!
//! Filled by the simulator helper.
