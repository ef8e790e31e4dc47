//! Per-socket options (the setsockopt/getsockopt surface) and readiness.

use crate::socket::tcp::{CongestionAlgorithm, TcpConfig};
use crate::time::Duration;

/// Options of one socket. Read them with `Stack::options`, change a copy and hand it back with
/// `Stack::set_options`, which applies the differences (resizing buffers, re-arming keepalive,
/// flushing Nagle-held data when `nodelay` turns on). Options that do not apply to a socket's
/// type are kept and ignored, as the kernel does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// TCP_NODELAY: disable Nagle's algorithm.
    pub nodelay: bool,
    /// SO_KEEPALIVE.
    pub keepalive: bool,
    /// TCP_KEEPIDLE: idle time before the first probe.
    pub keep_idle: Duration,
    /// TCP_KEEPINTVL: time between probes.
    pub keep_interval: Duration,
    /// TCP_KEEPCNT: unanswered probes before the connection is dropped with ETIMEDOUT.
    pub keep_count: u32,
    /// SO_SNDBUF in bytes.
    pub send_buffer: usize,
    /// SO_RCVBUF in bytes.
    pub recv_buffer: usize,
    /// SO_LINGER: `Some(Duration::ZERO)` makes close send RST and discard unsent data.
    pub linger: Option<Duration>,
    /// SO_REUSEADDR: bind may take a port held by TIME_WAIT connections.
    pub reuse_addr: bool,
    /// SO_REUSEPORT: several listening sockets share one port.
    pub reuse_port: bool,
    /// TCP_MAXSEG: clamp on the MSS announced and used (None: from the MTU).
    pub max_segment: Option<u16>,
    /// IPV6_V6ONLY for AF_INET6 sockets (a V6ONLY socket cannot carry IPv4, so it is refused by
    /// bind/connect with EAFNOSUPPORT: IPv6 proper is not spoken yet).
    pub v6_only: bool,
    /// SO_BROADCAST (UDP): allow sending to broadcast addresses.
    pub broadcast: bool,
    /// IP_TTL.
    pub ttl: u8,
    /// TCP_CONGESTION.
    pub congestion: CongestionAlgorithm,
    /// TCP_USER_TIMEOUT: abort when sent data stays unacknowledged this long (None: by retry
    /// count alone).
    pub user_timeout: Option<Duration>,
}

impl SocketOptions {
    /// The options a new socket starts with: the engine's TCP defaults, Nagle on, keepalive off,
    /// no linger, dual-stack, broadcast off.
    pub fn new(tcp: &TcpConfig, ttl: u8) -> SocketOptions {
        SocketOptions {
            nodelay: false,
            keepalive: false,
            keep_idle: tcp.keep_idle,
            keep_interval: tcp.keep_interval,
            keep_count: tcp.keep_count,
            send_buffer: tcp.send_buffer,
            recv_buffer: tcp.recv_buffer,
            linger: None,
            reuse_addr: false,
            reuse_port: false,
            max_segment: None,
            v6_only: false,
            broadcast: false,
            ttl,
            congestion: tcp.congestion,
            user_timeout: None,
        }
    }
}

/// What a poll on the socket would report now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// Data (or a datagram) to read, EOF reached, a connection to accept, or an error pending.
    pub readable: bool,
    /// Room to write (TCP: connected with send-buffer space; UDP: always).
    pub writable: bool,
    /// The peer closed its sending direction (POLLRDHUP).
    pub read_closed: bool,
    /// Both directions are finished or the connection was reset (POLLHUP).
    pub hangup: bool,
    /// An error is pending (POLLERR); `Stack::take_error` reads and clears it.
    pub error: bool,
}
