//! joyride-stackd: the daemon that owns the NIC and runs fbsd-tcp for every application.
//!
//! Owns: the NIC backends (tap, af-packet, dpdk), the event loop, the control socket and its
//! sessions, the carrier and shared-memory data planes, pcap capture and statistics. Its `client`
//! module (to come) is the light protocol library that the supervisor and the fast path link.
//! Must not touch: protocol logic, which belongs to fbsd-tcp.
//!
//! Not yet built: this crate is filled by the stackd issue.
