//! The policy language: which sockets go to joyride, which to the kernel, which are denied.
//!
//! Owns: parsing and evaluating policy files, and the policy files joyride ships. Must not touch:
//! system calls or any I/O beyond reading a policy file.
//!
//! Not yet built: this crate is filled by the `joyride run` issue.
