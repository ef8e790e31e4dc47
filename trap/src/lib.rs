//! Seccomp filter construction and user-notification primitives.
//!
//! Owns: the classic-BPF filter joyride installs, the raw kernel structures of seccomp user
//! notifications, and safe wrappers to receive, decode and answer them. Must not touch: stackd,
//! policies or any decision about what a call means.
//!
//! The pieces, in the order a supervisor meets them:
//! - [`FilterSpec`] → [`Filter`]: which calls trap (DESIGN.md, "The filter"), built by hand in
//!   classic BPF ([`filter`] says why), with the i386/x32 guard always in front.
//! - [`spawn()`] (or [`install_listener`] + [`take_listener_from`] for other launchers): the
//!   child installs the filter before exec, the parent takes the [`Listener`] with pidfd_getfd.
//! - [`Listener::wait_readable`], [`Listener::receive`] → [`Notification`] →
//!   [`Notification::syscall`] → [`Syscall`]: what the target asked for, decoded.
//! - [`Notification::read`], [`Notification::read_sockaddr`] → [`SockAddr`],
//!   [`Notification::write`]: the target's memory, each read checked against the notification's
//!   validity afterwards (TOCTOU, pid reuse); [`read_memory`] / [`write_memory`] underneath.
//! - [`Listener::respond_continue`], [`Listener::respond_value`], [`Listener::respond_errno`],
//!   [`Listener::add_fd`]: the answer. [`NotifError::Gone`] everywhere means the target left
//!   the call.
//!
//! All `unsafe` code is in the private `sys` module. x86_64 Linux only: the filter compares
//! x86_64 system call numbers.

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!("trap builds x86_64 seccomp filters and runs on x86_64 Linux only");

pub mod filter;
pub mod memory;
pub mod notify;
pub mod sockaddr;
pub mod spawn;
mod sys;
pub mod syscall;

pub use filter::{Filter, FilterError, FilterSpec, Rule};
pub use memory::{read_memory, read_memory_into, write_memory, write_memory_pieces, MemoryError};
pub use notify::{
    install_listener, notif_sizes, AddFd, InstallError, InstallOptions, Listener, NotifError,
    NotifSizes, Notification, Readiness,
};
pub use sockaddr::{SockAddr, SockAddrError};
pub use spawn::{spawn, take_listener_from, HandoverError, SpawnError};
pub use syscall::{Syscall, Sysno};
