//! The light client of the control protocol: blocking, no async runtime, no threads, so that the
//! supervisor and (later) the preloaded fast-path library can both link it.
//!
//! [`Client::call`] is the protocol itself; the other methods are the socket calls on top of
//! it, each the daemon's half of a system call a program made: they return the errno the
//! program should see ([`ClientError::errno`]).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

use crate::fdpass;
use crate::proto::{
    DataPlane, Family, Operation, OptionName, OptionValue, ProtocolError, Reply, Request, Response,
    ShutdownHow, SocketKind, Token, MAX_MESSAGE, PROTOCOL_VERSION,
};
pub use crate::proto::{JoyrideRings, JOYRIDE_RINGS, SOL_JOYRIDE};

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
    #[error("cannot connect to joyride-stackd at {path}: {errno} (is it running? start it with joyride-stackd --control {path})")]
    Connect {
        /// The control socket path.
        path: PathBuf,
        /// Why (named so that the message above is the whole story, not followed by a cause).
        errno: nix::Error,
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

impl ClientError {
    /// The errno a program should see for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            ClientError::Refused(error) => error.errno(),
            // The daemon is gone or confused: the call cannot be served.
            _ => libc::EIO,
        }
    }
}

/// A socket the daemon made: its token and the program's end of its carrier.
#[derive(Debug)]
pub struct StackSocket {
    /// Names the socket in requests.
    pub token: Token,
    /// The carrier: read, write and poll it as the socket.
    pub carrier: OwnedFd,
}

impl Client {
    /// Connects to the daemon's control socket.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let connect_error = |errno| ClientError::Connect { path: path.to_owned(), errno };
        let socket =
            socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
                .map_err(connect_error)?;
        let address = UnixAddr::new(path).map_err(connect_error)?;
        socket::connect(socket.as_raw_fd(), &address).map_err(connect_error)?;
        Ok(Client { socket, next_id: 1 })
    }

    /// The daemon's process id, as the kernel saw it connect (SO_PEERCRED). Carriers are
    /// socketpairs the daemon made, so their peer is this process too.
    pub fn daemon_pid(&self) -> Option<i32> {
        socket::getsockopt(&self.socket, socket::sockopt::PeerCredentials)
            .ok()
            .map(|credentials| credentials.pid())
    }

    /// Sends one request and waits for its reply (descriptors that come with it are closed).
    pub fn call(&mut self, op: Operation) -> Result<Reply, ClientError> {
        self.call_with(op, &[]).map(|(reply, _)| reply)
    }

    /// Sends one request with `descriptors` and waits for its reply and the descriptors that
    /// come with it.
    pub fn call_with(
        &mut self,
        op: Operation,
        descriptors: &[BorrowedFd<'_>],
    ) -> Result<(Reply, Vec<OwnedFd>), ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::to_vec(&Request { version: PROTOCOL_VERSION, id, op })
            .map_err(|error| ClientError::Unexpected(error.to_string()))?;
        fdpass::send(self.socket.as_fd(), &request, descriptors, MsgFlags::MSG_NOSIGNAL)
            .map_err(|source| ClientError::Io { step: "send", source })?;
        let mut buffer = vec![0; MAX_MESSAGE];
        let received = loop {
            match fdpass::receive(self.socket.as_fd(), &mut buffer, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        }
        .map_err(|source| ClientError::Io { step: "receive", source })?;
        if received.len == 0 {
            return Err(ClientError::Closed);
        }
        if received.truncated {
            return Err(ClientError::Unexpected("reply cut short".into()));
        }
        let response: Response = serde_json::from_slice(&buffer[..received.len])
            .map_err(|error| ClientError::Unexpected(error.to_string()))?;
        if response.id != id {
            return Err(ClientError::Unexpected(format!(
                "reply to request {} while waiting for {id}",
                response.id
            )));
        }
        Ok((response.result?, received.descriptors))
    }

    /// Sends raw bytes as one message (tests use it to send garbage).
    pub fn send_raw(&mut self, message: &[u8]) -> Result<(), ClientError> {
        socket::send(self.socket.as_raw_fd(), message, MsgFlags::MSG_NOSIGNAL)
            .map_err(|source| ClientError::Io { step: "send", source })?;
        Ok(())
    }

    /// Receives one raw message.
    pub fn receive_raw(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut buffer = vec![0; MAX_MESSAGE];
        let len = socket::recv(self.socket.as_raw_fd(), &mut buffer, MsgFlags::empty())
            .map_err(|source| ClientError::Io { step: "receive", source })?;
        if len == 0 {
            return Err(ClientError::Closed);
        }
        buffer.truncate(len);
        Ok(buffer)
    }

    /// Opens a session for this connection on behalf of `pids`.
    pub fn open_session(&mut self, name: &str, pids: &[u32]) -> Result<Token, ClientError> {
        match self.call(Operation::OpenSession { name: name.into(), pids: pids.to_vec() })? {
            Reply::Session { session } => Ok(session),
            other => Err(unexpected(other)),
        }
    }

    /// socket(2).
    pub fn socket(&mut self, family: Family, kind: SocketKind) -> Result<StackSocket, ClientError> {
        let op = Operation::Socket { family, kind, plane: DataPlane::Carrier };
        match self.call_with(op, &[])? {
            (Reply::Socket { socket }, descriptors) => {
                Ok(StackSocket { token: socket, carrier: one_descriptor(descriptors)? })
            }
            (other, _) => Err(unexpected(other)),
        }
    }

    /// bind(2).
    pub fn bind(&mut self, socket: Token, addr: SocketAddr) -> Result<(), ClientError> {
        self.done(Operation::Bind { socket, addr })
    }

    /// listen(2).
    pub fn listen(&mut self, socket: Token, backlog: u32) -> Result<(), ClientError> {
        self.done(Operation::Listen { socket, backlog })
    }

    /// accept(2) without blocking: drains the listener's doorbell, then asks for the next
    /// connection (`EAGAIN` when none waits; poll the listener's carrier for readable).
    pub fn accept(
        &mut self,
        listener: Token,
        listener_carrier: BorrowedFd<'_>,
    ) -> Result<(StackSocket, SocketAddr), ClientError> {
        let mut bells = [0u8; 64];
        while matches!(
            socket::recv(listener_carrier.as_raw_fd(), &mut bells, MsgFlags::MSG_DONTWAIT),
            Ok(n) if n > 0
        ) {}
        match self.call_with(Operation::Accept { socket: listener }, &[])? {
            (Reply::Accepted { socket, peer }, descriptors) => {
                Ok((StackSocket { token: socket, carrier: one_descriptor(descriptors)? }, peer))
            }
            (other, _) => Err(unexpected(other)),
        }
    }

    /// accept(2), waiting up to `timeout` for a connection.
    pub fn accept_blocking(
        &mut self,
        listener: Token,
        listener_carrier: BorrowedFd<'_>,
        timeout: Duration,
    ) -> Result<(StackSocket, SocketAddr), ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.accept(listener, listener_carrier) {
                Err(error) if error.errno() == libc::EAGAIN => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() || !wait_for(listener_carrier, PollFlags::POLLIN, left) {
                        return Err(ProtocolError::Errno { errno: libc::ETIMEDOUT }.into());
                    }
                }
                other => return other,
            }
        }
    }

    /// connect(2) without blocking: `EINPROGRESS` for TCP (see [`Client::connect_blocking`]).
    pub fn connect_socket(&mut self, socket: Token, addr: SocketAddr) -> Result<(), ClientError> {
        self.done(Operation::Connect { socket, addr })
    }

    /// connect(2) as a blocking socket does it: the handshake's outcome, within `timeout`.
    pub fn connect_blocking(
        &mut self,
        socket: &StackSocket,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        match self.connect_socket(socket.token, addr) {
            Err(error) if error.errno() == libc::EINPROGRESS => {}
            other => return other,
        }
        if !wait_for(socket.carrier.as_fd(), PollFlags::POLLOUT, timeout) {
            return Err(ProtocolError::Errno { errno: libc::ETIMEDOUT }.into());
        }
        match self.get_option(socket.token, OptionName::Error)? {
            OptionValue::Int(0) => Ok(()),
            OptionValue::Int(errno) => {
                Err(ProtocolError::Errno { errno: i32::try_from(errno).unwrap_or(libc::EIO) }
                    .into())
            }
            other => Err(ClientError::Unexpected(format!("SO_ERROR {other:?}"))),
        }
    }

    /// shutdown(2). For `Write`/`Both` on TCP this shuts down the carrier's writing side too,
    /// which is what sends the FIN (after every byte written before).
    pub fn shutdown(&mut self, socket: &StackSocket, how: ShutdownHow) -> Result<(), ClientError> {
        self.done(Operation::Shutdown { socket: socket.token, how })?;
        if how != ShutdownHow::Read {
            let _ = socket::shutdown(socket.carrier.as_raw_fd(), socket::Shutdown::Write);
        }
        Ok(())
    }

    /// Releases a socket now (dropping every copy of its carrier does it too).
    pub fn close(&mut self, socket: Token) -> Result<(), ClientError> {
        self.done(Operation::Close { socket })
    }

    /// setsockopt(2).
    pub fn set_option(
        &mut self,
        socket: Token,
        name: OptionName,
        value: OptionValue,
    ) -> Result<(), ClientError> {
        self.done(Operation::SetOption { socket, name, value })
    }

    /// getsockopt(2).
    pub fn get_option(
        &mut self,
        socket: Token,
        name: OptionName,
    ) -> Result<OptionValue, ClientError> {
        match self.call(Operation::GetOption { socket, name })? {
            Reply::Option { value } => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// getsockname(2).
    pub fn local_address(&mut self, socket: Token) -> Result<SocketAddr, ClientError> {
        self.address(Operation::LocalAddress { socket })
    }

    /// getpeername(2).
    pub fn peer_address(&mut self, socket: Token) -> Result<SocketAddr, ClientError> {
        self.address(Operation::PeerAddress { socket })
    }

    /// The socket a carrier belongs to, which joins this session: (token, family, kind,
    /// listening).
    pub fn identify(
        &mut self,
        carrier: BorrowedFd<'_>,
    ) -> Result<(Token, Family, SocketKind, bool), ClientError> {
        match self.call_with(Operation::Identify, &[carrier])? {
            (Reply::Identified { socket, family, kind, listening }, _) => {
                Ok((socket, family, kind, listening))
            }
            (other, _) => Err(unexpected(other)),
        }
    }

    /// A local connection's rings: (the ring this side reads, the ring it writes, capacity).
    pub fn rings(&mut self, socket: Token) -> Result<(OwnedFd, OwnedFd, usize), ClientError> {
        match self.call_with(Operation::Rings { socket }, &[])? {
            (Reply::Rings { capacity }, descriptors) => {
                let [rx, tx] = <[OwnedFd; 2]>::try_from(descriptors).map_err(|got| {
                    ClientError::Unexpected(format!("{} descriptors with the rings", got.len()))
                })?;
                Ok((rx, tx, capacity))
            }
            (other, _) => Err(unexpected(other)),
        }
    }

    fn address(&mut self, op: Operation) -> Result<SocketAddr, ClientError> {
        match self.call(op)? {
            Reply::Address { addr } => Ok(addr),
            other => Err(unexpected(other)),
        }
    }

    fn done(&mut self, op: Operation) -> Result<(), ClientError> {
        match self.call(op)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: Reply) -> ClientError {
    ClientError::Unexpected(format!("{reply:?}"))
}

fn one_descriptor(descriptors: Vec<OwnedFd>) -> Result<OwnedFd, ClientError> {
    let count = descriptors.len();
    <[OwnedFd; 1]>::try_from(descriptors)
        .map(|[fd]| fd)
        .map_err(|_| ClientError::Unexpected(format!("{count} descriptors instead of one")))
}

/// Waits until `fd` polls `events` (or an error or hang-up); false on timeout.
fn wait_for(fd: BorrowedFd<'_>, events: PollFlags, timeout: Duration) -> bool {
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match nix::poll::poll(&mut fds, PollTimeout::from(millis)) {
            Err(Errno::EINTR) => continue,
            Ok(n) => return n > 0,
            Err(_) => return false,
        }
    }
}
