//! Errors the socket API returns, as the errno a kernel socket would give for the same call.

/// An error from a socket call, named after the errno the Linux kernel returns in the same
/// situation, so the layer above can hand it to a program unchanged ([`Errno::raw`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Errno {
    /// The handle names no socket (closed, or never opened).
    #[error("bad socket handle (EBADF)")]
    BadHandle,
    /// Non-blocking call would block: no data, no space, no pending connection.
    #[error("operation would block (EAGAIN)")]
    WouldBlock,
    /// A non-blocking connect was started; completion is reported through readiness and
    /// `take_error`.
    #[error("connection in progress (EINPROGRESS)")]
    InProgress,
    /// connect while a connect is already in progress.
    #[error("connection already in progress (EALREADY)")]
    Already,
    /// connect on a connected socket.
    #[error("already connected (EISCONN)")]
    IsConnected,
    /// Data call on a socket that is not connected.
    #[error("not connected (ENOTCONN)")]
    NotConnected,
    /// The peer answered the SYN with RST, or an ICMP port unreachable arrived.
    #[error("connection refused (ECONNREFUSED)")]
    ConnectionRefused,
    /// The peer reset an established connection.
    #[error("connection reset by peer (ECONNRESET)")]
    ConnectionReset,
    /// Retransmissions or keepalive probes went unanswered.
    #[error("connection timed out (ETIMEDOUT)")]
    TimedOut,
    /// Write after the sending direction was shut down or the connection closed.
    #[error("broken pipe (EPIPE)")]
    BrokenPipe,
    /// bind to an address another socket holds.
    #[error("address in use (EADDRINUSE)")]
    AddrInUse,
    /// bind to an address that is not this host's.
    #[error("address not available (EADDRNOTAVAIL)")]
    AddrNotAvailable,
    /// An argument is invalid for this socket in its state (listen on UDP, bind twice, ...).
    #[error("invalid argument (EINVAL)")]
    InvalidArgument,
    /// The address family is not supported by this socket.
    #[error("address family not supported (EAFNOSUPPORT)")]
    AfNotSupported,
    /// The operation does not apply to this socket type (accept on UDP, ...).
    #[error("operation not supported (EOPNOTSUPP)")]
    NotSupported,
    /// No route to the destination.
    #[error("no route to host (EHOSTUNREACH)")]
    HostUnreachable,
    /// The network is unreachable.
    #[error("network unreachable (ENETUNREACH)")]
    NetUnreachable,
    /// Datagram too large for the socket (UDP beyond 65507 bytes or the send buffer).
    #[error("message too long (EMSGSIZE)")]
    MessageTooLong,
    /// Broadcast destination without SO_BROADCAST.
    #[error("permission denied (EACCES)")]
    PermissionDenied,
    /// Destination address required (sendto without address on an unconnected UDP socket).
    #[error("destination address required (EDESTADDRREQ)")]
    DestAddrRequired,
    /// The engine's socket table is full.
    #[error("too many sockets (EMFILE)")]
    TooManySockets,
    /// No buffer space (no ephemeral port free, allocation refused).
    #[error("no buffer space (ENOBUFS)")]
    NoBufferSpace,
}

impl Errno {
    /// The Linux errno value.
    pub const fn raw(self) -> i32 {
        match self {
            Errno::BadHandle => 9,
            Errno::WouldBlock => 11,
            Errno::InProgress => 115,
            Errno::Already => 114,
            Errno::IsConnected => 106,
            Errno::NotConnected => 107,
            Errno::ConnectionRefused => 111,
            Errno::ConnectionReset => 104,
            Errno::TimedOut => 110,
            Errno::BrokenPipe => 32,
            Errno::AddrInUse => 98,
            Errno::AddrNotAvailable => 99,
            Errno::InvalidArgument => 22,
            Errno::AfNotSupported => 97,
            Errno::NotSupported => 95,
            Errno::HostUnreachable => 113,
            Errno::NetUnreachable => 101,
            Errno::MessageTooLong => 90,
            Errno::PermissionDenied => 13,
            Errno::DestAddrRequired => 89,
            Errno::TooManySockets => 24,
            Errno::NoBufferSpace => 105,
        }
    }
}
