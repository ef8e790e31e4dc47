//! joyride-stackd: the daemon that owns the NIC and runs fbsd-tcp for every application.
//!
//! Owns: the NIC backends (tap, af-packet, dpdk), the event loop, the control socket and its
//! sessions, the carrier and shared-memory data planes, pcap capture and statistics. Its `client`
//! module (to come) is the light protocol library that the supervisor and the fast path link.
//! Must not touch: protocol logic, which belongs to fbsd-tcp.
//!
//! Built so far:
//! - [`backend`]: the NIC backends behind one burst-oriented, zero-copy [`backend::Backend`]
//!   trait — a TAP the daemon creates, an existing interface through AF_PACKET rings, and an
//!   in-memory pair for tests, and DPDK behind the `dpdk` feature. All of the crate's `unsafe`
//!   code (system calls, ring memory shared with the kernel, DPDK's C API) is confined to
//!   `backend::sys` and `backend::dpdk::sys`.
//! - [`pcap`]: capture files that tcpdump and Wireshark read.
//!
//! - [`config`]: defaults, the TOML file and command-line settings.
//! - [`daemon`]: the event loop that drives the NIC, the engine and the control socket.
//! - [`control`], [`proto`] and [`client`]: the control socket, its protocol (version 1:
//!   hello, counters, the socket list) and the light blocking client other crates link.
//!
//! To come: sessions and the socket operations of the control protocol, and the data planes.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod carrier;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
mod fdpass;
pub mod pcap;
pub mod proto;
pub mod sockets;
