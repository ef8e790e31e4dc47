//! The control protocol between joyride-stackd and its clients (the supervisor, the OCI agent,
//! `joyride ss`, later the fast-path library).
//!
//! Transport: a unix `SOCK_SEQPACKET` socket, so every message is one datagram with its
//! boundaries kept, and descriptors (carriers) can ride along with SCM_RIGHTS. Encoding: JSON, one
//! [`Request`] or [`Response`] per message, at most [`MAX_MESSAGE`] bytes. Every request carries
//! the protocol version it speaks and an id its response repeats, so a client may pipeline.
//!
//! Version 1 holds the read-only operations (hello, counters, the socket list); the socket
//! operations and sessions come with the data planes and will extend [`Operation`].

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message either side sends or accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Sockets per [`Reply::Sockets`] page, so a listing never outgrows a message.
pub const SOCKETS_PER_PAGE: usize = 128;

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

/// The operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    /// Introduces the client; the reply tells who the daemon is.
    Hello {
        /// Free text for logs ("joyride ss", "joyride run").
        client: String,
    },
    /// Counters of the interface, the protocols and the backend.
    Counters,
    /// One page of the socket list (`ss -tani`), from `offset`.
    Sockets {
        /// Index of the first socket.
        offset: usize,
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
}
