//! The light client of the control protocol: blocking, no async runtime, no threads, so that the
//! supervisor and (later) the preloaded fast-path library can both link it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

use crate::proto::{
    Operation, ProtocolError, Reply, Request, Response, MAX_MESSAGE, PROTOCOL_VERSION,
};

/// A connection to joyride-stackd's control socket.
#[derive(Debug)]
pub struct Client {
    socket: OwnedFd,
    next_id: u64,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers at the path.
    #[error("cannot connect to joyride-stackd at {path}: {source} (is it running? start it with joyride-stackd --control {path})")]
    Connect {
        /// The control socket path.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// Sending or receiving failed.
    #[error("control socket {step}: {source}")]
    Io {
        /// Which step.
        step: &'static str,
        /// Why.
        source: nix::Error,
    },
    /// The daemon closed the connection.
    #[error("joyride-stackd closed the control connection")]
    Closed,
    /// The daemon's answer could not be decoded, or answers another request.
    #[error("unexpected answer from joyride-stackd: {0}")]
    Unexpected(String),
    /// The daemon refused the request.
    #[error("joyride-stackd refused the request: {0}")]
    Refused(#[from] ProtocolError),
}

impl Client {
    /// Connects to the daemon's control socket.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect { path: path.to_owned(), source };
        let socket =
            socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
                .map_err(connect_error)?;
        let address = UnixAddr::new(path).map_err(connect_error)?;
        socket::connect(std::os::fd::AsRawFd::as_raw_fd(&socket), &address)
            .map_err(connect_error)?;
        Ok(Client { socket, next_id: 1 })
    }

    /// Sends one request and waits for its reply.
    pub fn call(&mut self, op: Operation) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::to_vec(&Request { version: PROTOCOL_VERSION, id, op })
            .map_err(|error| ClientError::Unexpected(error.to_string()))?;
        self.send_raw(&request)?;
        let response = self.receive_raw()?;
        let response: Response = serde_json::from_slice(&response)
            .map_err(|error| ClientError::Unexpected(error.to_string()))?;
        if response.id != id {
            return Err(ClientError::Unexpected(format!(
                "reply to request {} while waiting for {id}",
                response.id
            )));
        }
        Ok(response.result?)
    }

    /// Sends raw bytes as one message (tests use it to send garbage).
    pub fn send_raw(&mut self, message: &[u8]) -> Result<(), ClientError> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.socket);
        socket::send(fd, message, MsgFlags::MSG_NOSIGNAL)
            .map_err(|source| ClientError::Io { step: "send", source })?;
        Ok(())
    }

    /// Receives one raw message.
    pub fn receive_raw(&mut self) -> Result<Vec<u8>, ClientError> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.socket);
        let mut buffer = vec![0; MAX_MESSAGE];
        let len = socket::recv(fd, &mut buffer, MsgFlags::empty())
            .map_err(|source| ClientError::Io { step: "receive", source })?;
        if len == 0 {
            return Err(ClientError::Closed);
        }
        buffer.truncate(len);
        Ok(buffer)
    }
}
