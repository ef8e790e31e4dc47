//! libjoyride_fastpath.so: the library `joyride run` preloads into dynamic programs.
//!
//! Owns: the interposed libc socket functions, the table of this process's fast-path sockets
//! and the shared-memory rings those use. Must not touch: an async runtime; allocation or locks
//! beyond one uncontended mutex per direction on the hot path; any socket it does not own (those
//! go to the next definition of the function — normally libc — and so to the kernel or the
//! supervisor exactly as without the library). Correctness never depends on the library: without
//! it, the trap path serves every call.
//!
//! The fast path covers every TCP connection: after connect and accept the library asks the
//! supervisor for the connection's two rings (a private getsockopt, one trap per connection),
//! and reads and writes move through them with no system call in steady state. A local
//! connection's rings (both ends joyride programs on one stackd, spliced by stackd into one
//! AF_UNIX socket) join the two programs; a remote one's have stackd on the other side. The
//! socket stays the connection's identity and doorbell (stackd::ring has the protocol).

pub mod conn;
mod interpose;
pub mod readiness;
pub mod real;
pub mod spin;
pub mod sys;
pub mod table;

use std::sync::atomic::{AtomicBool, Ordering};

static DISABLED: AtomicBool = AtomicBool::new(false);

/// Whether the library takes new sockets onto the fast path (false for programs that make
/// their own system calls, which would bypass it).
pub fn enabled() -> bool {
    !DISABLED.load(Ordering::Relaxed)
}

/// Turns the fast path off for this process (new sockets stay on the trap path).
pub fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}
