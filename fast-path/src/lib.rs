//! libjoyride_fastpath.so: the library `joyride run` preloads into dynamic programs.
//!
//! Owns: interposed libc socket functions and the shared-memory rings they use. Must not touch:
//! an async runtime, locks or allocation on the hot path.
//!
//! Not yet built: this crate is filled by the fast-path issue (until then it is not a cdylib, and
//! `joyride run --no-fast-path` is the only mode).
