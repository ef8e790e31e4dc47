//! The `joyride` command: `run`, `audit`, `ss` and the container integration.
//!
//! Owns: launching and supervising target process trees, translating their trapped socket calls
//! into stackd requests. Must not touch: protocol logic (fbsd-tcp) or the NIC (stackd).
//!
//! Not yet built: this crate is filled by the `joyride run` and container issues.

pub mod audit;
pub mod ss;
