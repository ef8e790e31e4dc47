//! Seccomp filter construction and user-notification primitives.
//!
//! Owns: the classic-BPF filter joyride installs, the raw kernel structures of seccomp user
//! notifications, and safe wrappers to receive, decode and answer them. Must not touch: stackd,
//! policies or any decision about what a call means.
//!
//! Not yet built: this crate is filled by the `joyride run` issue.
