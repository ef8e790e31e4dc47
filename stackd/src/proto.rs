//! The control protocol between joyride-stackd and its clients (the supervisor, the OCI agent,
//! `joyride ss`, later the fast-path library), and the format of datagrams on UDP carriers.
//!
//! Transport: a unix `SOCK_SEQPACKET` socket, so every message is one datagram with its
//! boundaries kept, and descriptors ride along with SCM_RIGHTS (a new socket's carrier in a
//! reply; a carrier to [`Operation::Identify`] in a request). Encoding: JSON, one [`Request`] or
//! [`Response`] per message, at most [`MAX_MESSAGE`] bytes. Every request carries the protocol
//! version it speaks and an id its response repeats, so a client may pipeline.
//!
//! # Sessions and capabilities
//! A connection opens a session ([`Operation::OpenSession`]) on behalf of a process tree or a
//! container, or joins one by its token; every socket it creates belongs to that session and is
//! named by a [`Token`]: 128 random bits, unforgeable, and valid only inside its own session. A
//! socket moves to another session only explicitly: [`Operation::Share`] gives a one-time
//! transfer token that another session redeems with [`Operation::Adopt`], or a holder of the
//! carrier itself proves possession with [`Operation::Identify`] (descriptors passed with
//! SCM_RIGHTS are how the kernel transfers sockets between programs, too).
//!
//! # Data planes
//! Version 1 has one: the *carrier*, an AF_UNIX socket per socket whose far end the client
//! holds and reads and writes like the socket itself (see `crate::sockets` for its rules). A
//! second, shared-memory plane for the fast-path library will be chosen per socket through
//! [`DataPlane`]; sessions, tokens and every other operation stay as they are.
//!
//! A TCP connection between two sockets of the same daemon is *spliced* (see `crate::sockets`,
//! "Local connections"): the connecting socket's carrier becomes the connection itself, and
//! [`Operation::Rings`] hands its two sides a pair of shared-memory rings
//! ([`SOL_JOYRIDE`], [`JOYRIDE_RINGS`]).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message either side sends or accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The most descriptors one message carries.
pub const MAX_DESCRIPTORS: usize = 4;

/// Sockets per [`Reply::Sockets`] page, so a listing never outgrows a message.
pub const SOCKETS_PER_PAGE: usize = 128;

/// The private getsockopt level through which the fast-path library asks for a local
/// connection's shared-memory rings (0x4a52 is "JR"). No kernel protocol uses it.
pub const SOL_JOYRIDE: i32 = 0x4a52;

/// `getsockopt(fd, SOL_JOYRIDE, JOYRIDE_RINGS, &rings, &len)` with `len >= 8`: on a local
/// (spliced) joyride connection, installs the connection's two ring memfds (close-on-exec) in
/// the caller and writes [`JoyrideRings`] (`len` becomes 8). ENOPROTOOPT on a joyride socket
/// that is not a connected local one, EINVAL with `len < 8`, EFAULT for bad pointers.
pub const JOYRIDE_RINGS: i32 = 1;

/// What `getsockopt(SOL_JOYRIDE, JOYRIDE_RINGS)` writes, native endian: the ring this side
/// reads and the ring this side writes. Each is a `crate::ring::RingRegion` memfd of
/// `HEADER_SIZE + capacity` bytes, to be mapped with `RingRegion::map`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JoyrideRings {
    /// Descriptor of the ring this side consumes.
    pub rx_fd: i32,
    /// Descriptor of the ring this side produces into.
    pub tx_fd: i32,
}

/// A capability: 128 random bits naming a socket or a session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub u128);

impl fmt::Debug for Token {
    // Logs show only the last digits, so that a token never leaks whole through a log file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(…{:04x})", self.0 & 0xffff)
    }
}

impl Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{:032x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Token, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() != 32 {
            return Err(serde::de::Error::custom("a token is 32 hexadecimal digits"));
        }
        u128::from_str_radix(&text, 16)
            .map(Token)
            .map_err(|_| serde::de::Error::custom("a token is 32 hexadecimal digits"))
    }
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The protocol version the client speaks; the daemon refuses other versions.
    pub version: u32,
    /// Chosen by the client, repeated in the response.
    pub id: u64,
    /// What to do.
    pub op: Operation,
}

/// Address family of a socket, as the program asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// AF_INET.
    Inet,
    /// AF_INET6 (dual-stack: IPv4 peers appear as v4-mapped addresses).
    Inet6,
}

/// Socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketKind {
    /// SOCK_STREAM (TCP).
    Stream,
    /// SOCK_DGRAM (UDP).
    Datagram,
}

/// How a socket's data moves between the daemon and the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataPlane {
    /// An AF_UNIX carrier socket (stream for TCP, seqpacket for UDP).
    #[default]
    Carrier,
}

/// shutdown(2)'s `how`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownHow {
    /// SHUT_RD.
    Read,
    /// SHUT_WR.
    Write,
    /// SHUT_RDWR.
    Both,
}

/// A socket option, named as setsockopt/getsockopt know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptionName {
    /// SO_REUSEADDR (int).
    ReuseAddr,
    /// SO_REUSEPORT (int).
    ReusePort,
    /// SO_KEEPALIVE (int).
    KeepAlive,
    /// SO_SNDBUF (int, bytes).
    SendBuffer,
    /// SO_RCVBUF (int, bytes).
    RecvBuffer,
    /// SO_LINGER (linger).
    Linger,
    /// SO_BROADCAST (int).
    Broadcast,
    /// SO_ERROR (int, read-only; reading clears it).
    Error,
    /// SO_TYPE (int, read-only).
    Type,
    /// SO_ACCEPTCONN (int, read-only).
    AcceptConn,
    /// TCP_NODELAY (int).
    NoDelay,
    /// TCP_KEEPIDLE (int, seconds).
    KeepIdle,
    /// TCP_KEEPINTVL (int, seconds).
    KeepInterval,
    /// TCP_KEEPCNT (int).
    KeepCount,
    /// TCP_MAXSEG (int, bytes).
    MaxSegment,
    /// TCP_USER_TIMEOUT (int, milliseconds).
    UserTimeout,
    /// TCP_CONGESTION (text).
    Congestion,
    /// TCP_INFO (read-only).
    TcpInfo,
    /// IP_TTL / IPV6_UNICAST_HOPS (int).
    Ttl,
    /// IPV6_V6ONLY (int).
    V6Only,
}

/// The value of an option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptionValue {
    /// An integer (booleans are 0 or 1).
    Int(i64),
    /// SO_LINGER: `None` is off, `Some(seconds)` on.
    Linger(Option<u32>),
    /// TCP_CONGESTION's name.
    Text(String),
    /// TCP_INFO.
    TcpInfo(TcpInfoReport),
}

/// The TCP_INFO fields the daemon reports (times in microseconds, sizes in bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpInfoReport {
    /// Linux's TCP state number (1 = ESTABLISHED ... 10 = LISTEN, 7 = CLOSE).
    pub state: u8,
    /// Retransmission timeout.
    pub rto_us: u64,
    /// Smoothed round-trip time.
    pub rtt_us: u64,
    /// Its variation.
    pub rttvar_us: u64,
    /// Send MSS.
    pub snd_mss: u32,
    /// Receive MSS.
    pub rcv_mss: u32,
    /// Congestion window in segments.
    pub snd_cwnd: u32,
    /// Slow-start threshold in segments (0: not set).
    pub snd_ssthresh: u32,
    /// Sent, unacknowledged segments.
    pub unacked: u32,
    /// Retransmissions over the connection's life.
    pub total_retrans: u32,
    /// Bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Bytes received.
    pub bytes_received: u64,
}

/// The operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    /// Introduces the client; the reply tells who the daemon is.
    Hello {
        /// Free text for logs ("joyride ss", "joyride run").
        client: String,
    },
    /// Counters of the interface, the protocols, the backend and the daemon's sockets.
    Counters,
    /// One page of the socket list (`ss -tani`), from `offset`.
    Sockets {
        /// Index of the first socket.
        offset: usize,
    },
    /// Opens a session for this connection, on behalf of the processes `pids` (shown as the
    /// owners of its sockets). Answered with [`Reply::Session`].
    OpenSession {
        /// What the session serves ("joyride run -- curl", a container id).
        name: String,
        /// The processes it serves.
        pids: Vec<u32>,
    },
    /// Attaches this connection to an existing session (same user, or root).
    JoinSession {
        /// The token [`Reply::Session`] gave.
        session: Token,
    },
    /// socket(2): a new socket and, in the reply's descriptor, its carrier.
    Socket {
        /// Family.
        family: Family,
        /// Type.
        kind: SocketKind,
        /// Data plane (only the carrier in version 1).
        #[serde(default)]
        plane: DataPlane,
    },
    /// bind(2).
    Bind {
        /// The socket.
        socket: Token,
        /// Where.
        addr: SocketAddr,
    },
    /// listen(2).
    Listen {
        /// The socket.
        socket: Token,
        /// Backlog.
        backlog: u32,
    },
    /// accept(2), never blocking: the next connection and, in the reply's descriptor, its
    /// carrier; `EAGAIN` when none waits. Drain the listener's carrier *before* asking (see
    /// `crate::sockets`).
    Accept {
        /// The listening socket.
        socket: Token,
    },
    /// connect(2), never blocking: TCP answers `EINPROGRESS`, and the carrier turns writable
    /// when the handshake ends (then read the result with [`OptionName::Error`]).
    Connect {
        /// The socket.
        socket: Token,
        /// The peer.
        addr: SocketAddr,
    },
    /// shutdown(2). For `Write` (and `Both`) on TCP, also shut down the carrier's write side:
    /// the FIN follows the last byte written before it.
    Shutdown {
        /// The socket.
        socket: Token,
        /// Which directions.
        how: ShutdownHow,
    },
    /// Releases the session's socket now (closing every carrier descriptor does too).
    Close {
        /// The socket.
        socket: Token,
    },
    /// setsockopt(2).
    SetOption {
        /// The socket.
        socket: Token,
        /// Which option.
        name: OptionName,
        /// Its new value.
        value: OptionValue,
    },
    /// getsockopt(2).
    GetOption {
        /// The socket.
        socket: Token,
        /// Which option.
        name: OptionName,
    },
    /// getsockname(2).
    LocalAddress {
        /// The socket.
        socket: Token,
    },
    /// getpeername(2).
    PeerAddress {
        /// The socket.
        socket: Token,
    },
    /// What poll would report for the socket in the engine.
    Readiness {
        /// The socket.
        socket: Token,
    },
    /// Names the socket whose carrier rides along with the request (SCM_RIGHTS), and adds it
    /// to this connection's session: holding the carrier is the right to the socket.
    Identify,
    /// A one-time token that hands the socket to another session.
    Share {
        /// The socket.
        socket: Token,
    },
    /// Redeems a token from [`Operation::Share`]: the socket joins this session.
    Adopt {
        /// The transfer token.
        transfer: Token,
    },
    /// The shared-memory rings of a local (spliced) connection, made on the first request from
    /// either side: answered with [`Reply::Rings`] and two descriptors, the ring this side
    /// reads, then the ring it writes. ENOPROTOOPT for a socket that is not a connected local
    /// one.
    Rings {
        /// The socket.
        socket: Token,
    },
}

/// The daemon's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id (0 when the request could not be read at all).
    pub id: u64,
    /// The outcome.
    pub result: Result<Reply, ProtocolError>,
}

/// Successful replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// Answer to [`Operation::Hello`].
    Hello {
        /// The daemon's protocol version.
        version: u32,
        /// The daemon's process id.
        pid: u32,
        /// The interface and address it serves, e.g. "jr0 10.77.0.2/24".
        interface: String,
    },
    /// Named counters, in a stable order.
    Counters {
        /// (name, value) pairs.
        counters: Vec<(String, u64)>,
    },
    /// A page of sockets.
    Sockets {
        /// All sockets the daemon holds.
        total: usize,
        /// This page.
        sockets: Vec<SocketLine>,
    },
    /// The session this connection now belongs to.
    Session {
        /// Its token (for [`Operation::JoinSession`]).
        session: Token,
    },
    /// A new socket; its carrier is the message's descriptor.
    Socket {
        /// Its token.
        socket: Token,
    },
    /// A connection from [`Operation::Accept`]; its carrier is the message's descriptor.
    Accepted {
        /// Its token.
        socket: Token,
        /// The peer.
        peer: SocketAddr,
    },
    /// The operation succeeded and has nothing to tell.
    Done,
    /// An address (getsockname, getpeername).
    Address {
        /// The address.
        addr: SocketAddr,
    },
    /// An option's value.
    Option {
        /// The value.
        value: OptionValue,
    },
    /// Readiness as poll would report it.
    Readiness {
        /// POLLIN.
        readable: bool,
        /// POLLOUT.
        writable: bool,
        /// POLLRDHUP.
        read_closed: bool,
        /// POLLHUP.
        hangup: bool,
        /// POLLERR.
        error: bool,
    },
    /// The socket a carrier belongs to ([`Operation::Identify`], [`Operation::Adopt`]).
    Identified {
        /// Its token in this session.
        socket: Token,
        /// Family.
        family: Family,
        /// Type.
        kind: SocketKind,
        /// True for a listening socket.
        listening: bool,
    },
    /// A transfer token ([`Operation::Share`]).
    Transfer {
        /// Redeem it with [`Operation::Adopt`].
        transfer: Token,
    },
    /// A local connection's rings ([`Operation::Rings`]): the message's two descriptors are
    /// the ring this side reads and the ring it writes, in that order.
    Rings {
        /// Their data capacity in bytes (the memfds are `ring::HEADER_SIZE` larger).
        capacity: usize,
    },
}

/// One socket as `joyride ss` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketLine {
    /// "tcp" or "udp".
    pub protocol: String,
    /// State as ss names it.
    pub state: String,
    /// Bytes waiting to be read (listeners: connections waiting).
    pub recv_queue: usize,
    /// Bytes not yet acknowledged or sent (listeners: backlog).
    pub send_queue: usize,
    /// Local address.
    pub local: String,
    /// Peer address.
    pub peer: String,
    /// TCP details (cwnd, srtt, retransmits...) as `ss -i` prints them; empty for UDP.
    pub details: String,
    /// The processes of the owning session ("" for connections the daemon finishes alone).
    #[serde(default)]
    pub owner: String,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum ProtocolError {
    /// The message is not a request this daemon understands.
    #[error("bad request: {message}")]
    BadRequest {
        /// What the decoder said.
        message: String,
    },
    /// The client speaks another protocol version.
    #[error("protocol version {client} is not supported (this daemon speaks {daemon})")]
    UnsupportedVersion {
        /// The client's version.
        client: u32,
        /// Ours.
        daemon: u32,
    },
    /// The socket call failed as the kernel's would, with this errno.
    #[error("{}", errno_text(*errno))]
    Errno {
        /// Linux errno value.
        errno: i32,
    },
    /// The operation needs a session: open or join one first.
    #[error("this connection has no session: send open-session or join-session first")]
    NoSession,
    /// The connection already belongs to a session.
    #[error("this connection already belongs to a session")]
    SessionExists,
    /// No session has that token, or it belongs to another user.
    #[error("no session with that token is open to this user")]
    UnknownSession,
    /// No socket with that token belongs to this connection's session.
    #[error("no socket with that token belongs to this session")]
    UnknownSocket,
    /// The request needs a descriptor it did not carry, or carried one it should not.
    #[error("descriptor: {message}")]
    Descriptor {
        /// What is wrong.
        message: String,
    },
    /// The daemon could not do it for a reason of its own (out of descriptors...).
    #[error("joyride-stackd: {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
}

impl ProtocolError {
    /// The errno a program should see for this failure (EBADF for a socket that is not its).
    pub fn errno(&self) -> i32 {
        match self {
            ProtocolError::Errno { errno } => *errno,
            ProtocolError::UnknownSocket | ProtocolError::Descriptor { .. } => libc::EBADF,
            ProtocolError::Internal { .. } => libc::ENOBUFS,
            _ => libc::EINVAL,
        }
    }
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// The format of datagrams on the carrier of an *unconnected* UDP socket: every datagram, in
/// both directions, starts with an 8-byte header naming the remote end (the source of a
/// received datagram, the destination of one to send). Connected UDP sockets carry bare
/// datagrams. IPv4 only, as the engine; AF_INET6 sockets show it v4-mapped.
///
/// Layout: `b"JR"`, the port (big-endian), the IPv4 address.
pub mod datagram {
    use super::*;

    /// Header length.
    pub const HEADER_LEN: usize = 8;
    const MAGIC: [u8; 2] = *b"JR";

    /// The header for `remote`.
    pub fn header(remote: SocketAddrV4) -> [u8; HEADER_LEN] {
        let mut header = [0; HEADER_LEN];
        header[..2].copy_from_slice(&MAGIC);
        header[2..4].copy_from_slice(&remote.port().to_be_bytes());
        header[4..].copy_from_slice(&remote.ip().octets());
        header
    }

    /// Splits a datagram into its remote address and payload; `None` if it has no valid header.
    pub fn split(datagram: &[u8]) -> Option<(SocketAddrV4, &[u8])> {
        let header = datagram.get(..HEADER_LEN)?;
        if header[..2] != MAGIC {
            return None;
        }
        let port = u16::from_be_bytes([header[2], header[3]]);
        let ip = Ipv4Addr::new(header[4], header[5], header[6], header[7]);
        Some((SocketAddrV4::new(ip, port), &datagram[HEADER_LEN..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_travel_as_32_hex_digits_and_nothing_else() {
        let token = Token(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let text = serde_json::to_string(&token).unwrap();
        assert_eq!(text, "\"0123456789abcdeffedcba9876543210\"");
        assert_eq!(serde_json::from_str::<Token>(&text).unwrap(), token);
        for bad in ["\"12\"", "\"0123456789abcdeffedcba987654321g\"", "17", "\"\""] {
            assert!(serde_json::from_str::<Token>(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{token:?}"), "Token(…3210)");
    }

    #[test]
    fn datagram_headers_round_trip_and_garbage_is_refused() {
        let remote = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 5353);
        let mut datagram = datagram::header(remote).to_vec();
        datagram.extend_from_slice(b"payload");
        assert_eq!(datagram::split(&datagram), Some((remote, &b"payload"[..])));
        assert_eq!(datagram::split(b"JR\x00"), None, "short");
        assert_eq!(datagram::split(b"XX\x00\x35\x0a\x4d\x00\x01data"), None, "bad magic");
    }

    #[test]
    fn errno_failures_read_like_the_kernel() {
        let error = ProtocolError::Errno { errno: libc::ECONNREFUSED };
        assert_eq!(error.to_string(), "Connection refused (os error 111)");
        assert_eq!(error.errno(), libc::ECONNREFUSED);
        assert_eq!(ProtocolError::UnknownSocket.errno(), libc::EBADF);
    }
}
