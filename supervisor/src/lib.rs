//! The `joyride` command: `run`, `audit`, `ss`, and the serving loop the container
//! integration shares.
//!
//! Owns: launching and supervising target process trees ([`launch`]), the stackd session on
//! their behalf ([`session`]), and the translation of their trapped socket calls into stackd
//! requests ([`serve`], [`calls`]). Must not touch: protocol logic (fbsd-tcp), the NIC
//! (stackd), the filter's encoding (trap), or policy parsing (policies).
//!
//! The serving loop takes a notification descriptor from wherever it came — `joyride run`'s
//! own child, or later a container runtime — so there is one copy of the trap path.

#![warn(missing_docs)]

pub mod addr;
pub mod audit;
pub mod calls;
pub mod embedded;
pub mod launch;
pub mod msg;
pub mod oci;
pub mod oci_agent;
pub mod serve;
pub mod session;
pub mod ss;
pub mod sys;
