//! joyride-stackd: the daemon that owns the NIC and runs fbsd-tcp for every application.
//!
//! Owns: the NIC backends (tap, af-packet, dpdk), the event loop, the control socket and its
//! sessions, the two data planes (carriers for every program, shared-memory rings for those
//! running the fast-path library), pcap capture and statistics. Its `client` module is the light protocol library that the supervisor
//! and the fast path link.
//! Must not touch: protocol logic, which belongs to fbsd-tcp.
//!
//! Built so far:
//! - [`backend`]: the NIC backends behind one burst-oriented, zero-copy [`backend::Backend`]
//!   trait — a TAP the daemon creates, an existing interface through AF_PACKET rings, a
//!   shared-memory wire between two daemons (`shm`), an in-memory pair for tests, and DPDK
//!   behind the `dpdk` feature. The crate's `unsafe` code (system calls, ring memory shared
//!   with the kernel or a peer, DPDK's C API) is confined to `backend::sys`,
//!   `backend::dpdk::sys`, `fdpass` (descriptors received with SCM_RIGHTS), and `procfd`
//!   (pidfd_getfd, to reach a carrier's program end when a connection is reset), `carrier`
//!   (two queue-length ioctls), and `ring` (the fast path's shared-memory rings: memfd
//!   mapping, header atomics, data slices).
//! - [`ring`]: the fast path's single-producer/single-consumer byte rings in memfd shared
//!   memory, with the doorbell bookkeeping that keeps wake-ups from being lost.
//! - [`pcap`]: capture files that tcpdump and Wireshark read.
//!
//! - [`config`]: defaults, the TOML file and command-line settings.
//! - [`daemon`]: the event loop that drives the NIC, the engine and the control socket;
//!   [`busy_poll`]: when it polls for a request/response's answer instead of sleeping (and
//!   the pause-and-probe rule the fast-path library's spins share).
//! - [`control`], [`proto`] and [`client`]: the control socket, its protocol (version 1:
//!   reports, sessions, the socket operations) and the light blocking client other crates link.
//! - [`sockets`] and [`carrier`]: sessions, capability tokens, socket records and the data
//!   planes that move each socket's bytes between the engine and its program (the carrier, or
//!   the rings of a fast-path program's TCP connection).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod busy_poll;
pub mod carrier;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fdpass;
pub mod pcap;
mod procfd;
pub mod proto;
pub mod ring;
pub mod sockets;
