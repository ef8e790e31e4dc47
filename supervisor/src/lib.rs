//! The `joyride` command: `run`, `audit`, `ss`, and the container integration (`oci-agent`,
//! `oci prepare`, `oci-runtime`, `oci-hook`).
//!
//! Owns: launching and supervising target process trees ([`launch`], [`embedded`] for a
//! daemon of its own), the stackd session on their behalf ([`session`]), the translation of
//! their trapped socket calls into stackd requests ([`serve`], [`calls`], with [`addr`] and
//! [`msg`]), the audit log ([`audit`]), `joyride ss` ([`ss`]), and containers ([`oci_agent`],
//! [`oci`]). Must not touch: protocol logic (fbsd-tcp), the NIC (stackd), the filter's
//! encoding (trap), or policy parsing (policies). Its `unsafe` code is in [`sys`].
//!
//! The serving loop takes a notification descriptor from wherever it came — `joyride run`'s
//! own child, or a container runtime through the agent — so there is one copy of the trap
//! path.

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
