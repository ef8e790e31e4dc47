//! fbsd-tcp: a sans-IO TCP/IP engine for one Ethernet interface.
//!
//! It contains no I/O and reads no clock: frames and the current [`time::Instant`] go in through
//! [`Stack::receive_frame`] and [`Stack::handle_timeout`]; frames to send come out of
//! [`Stack::poll_transmit`], readiness changes out of [`Stack::poll_event`], and the next deadline
//! out of [`Stack::poll_timeout`]. The caller (joyride-stackd, or the simulator in [`sim`]) owns
//! the NIC, the clock and the threads. That makes every behaviour here deterministic and testable
//! on a simulated link in virtual time.
//!
//! The layers, bottom up, follow FreeBSD's netinet:
//! - [`wire`]: checked views and parsed representations of Ethernet, ARP, IPv4, ICMPv4, UDP and
//!   TCP headers. Untrusted bytes are only read through these.
//! - [`iface`]: the interface: ARP cache, IPv4 input and output, fragmentation and reassembly,
//!   ICMP, demultiplexing to sockets, counters.
//! - [`socket`]: the socket API's types, UDP sockets, and [`socket::tcp`], the TCP machine
//!   (input, output, timers, SACK, congestion control).
//! - [`storage`]: the rings that hold socket payload, readable and writable in place.
//! - [`sim`]: a deterministic simulated link with a seeded impairment model, for tests, the demo
//!   and the benchmark.
//!
//! IPv6 is not spoken yet; AF_INET6 dual-stack sockets carry IPv4 through v4-mapped addresses.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod iface;
pub mod sim;
pub mod socket;
mod stack;
pub mod storage;
pub mod time;
pub mod wire;

pub use iface::{Counters, StackConfig};
pub use socket::{
    AddressFamily, Errno, Readiness, Shutdown, SocketHandle, SocketOptions, SocketType,
};
pub use stack::Stack;
