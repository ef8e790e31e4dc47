//! The control socket: a unix `SOCK_SEQPACKET` listener at `--control` (mode 0660), its
//! connections, and the decoding and answering of requests. What a request does is the
//! daemon's business (a handler closure); this module owns the sockets and the protocol's edges:
//! garbage, oversized or truncated messages, unknown versions and clients that vanish get an
//! error or are dropped, and never stop the daemon.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::fdpass;
use crate::proto::{
    Operation, ProtocolError, Reply, Request, Response, MAX_DESCRIPTORS, MAX_MESSAGE,
    PROTOCOL_VERSION,
};

/// Connections served at once; more are refused (closed at once) and logged.
const MAX_CLIENTS: usize = 1024;

/// Who is on the other end of a control connection, as the kernel vouches (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Process id at connect time.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

#[derive(Debug)]
struct Connection {
    socket: OwnedFd,
    peer: Peer,
}

/// The listener and its connections.
#[derive(Debug)]
pub struct ControlServer {
    listener: OwnedFd,
    path: PathBuf,
    /// Device and inode of the socket file we bound: only that file is removed at exit.
    identity: (u64, u64),
    connections: HashMap<usize, Connection>,
    next_key: usize,
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another daemon answers at the path.
    #[error("control socket {path} is in use: another joyride-stackd is running (stop it, or pass --control with another path)")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Something that is not a socket is at the path.
    #[error("control socket {path}: the path exists and is not a socket; refusing to replace it (pass --control with another path)")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("control socket {path}: {step}: {source}")]
    System {
        /// The path.
        path: PathBuf,
        /// Which step.
        step: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// What became of a connection after serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Still open.
    Open,
    /// Closed (by the client, or dropped for misbehaving); deregister and forget it.
    Closed,
}

impl ControlServer {
    /// Listens at `path`: creates the parent directory if needed, replaces a stale socket file
    /// left by a daemon that died, refuses if a live daemon answers there.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        let system = |step: &'static str| {
            move |source: io::Error| ControlError::System { path: path.to_owned(), step, source }
        };
        let nix_system = |step: &'static str| {
            move |errno: Errno| ControlError::System {
                path: path.to_owned(),
                step,
                source: errno.into(),
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(system("create its directory"))?;
        }
        if let Ok(existing) = std::fs::symlink_metadata(path) {
            // Only a socket file may be replaced: a mistyped --control must never delete a
            // configuration file or anything else that happens to be there.
            if !existing.file_type().is_socket() {
                return Err(ControlError::NotASocket { path: path.to_owned() });
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() || seqpacket_answers(path) {
                return Err(ControlError::InUse { path: path.to_owned() });
            }
            std::fs::remove_file(path).map_err(system("remove the stale socket file"))?;
        }
        let listener = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(nix_system("socket"))?;
        let address = UnixAddr::new(path).map_err(nix_system("address"))?;
        socket::bind(listener.as_raw_fd(), &address).map_err(nix_system("bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(system("chmod 0660"))?;
        socket::listen(&listener, Backlog::new(128).unwrap_or(Backlog::MAXCONN))
            .map_err(nix_system("listen"))?;
        let identity = std::fs::symlink_metadata(path).map_err(system("stat the socket file"))?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            identity: (identity.dev(), identity.ino()),
            connections: HashMap::new(),
            next_key: 0,
        })
    }

    /// The listener, for the event loop to wait on.
    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Accepts every pending connection; returns (key, fd) of each for the event loop to
    /// register.
    pub fn accept_pending(&mut self) -> Vec<(usize, RawFd)> {
        let mut accepted = Vec::new();
        loop {
            let socket = match socket::accept4(
                &self.listener,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            ) {
                Ok(socket) => socket,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                Err(error) => {
                    tracing::warn!(%error, "control socket: accept failed");
                    break;
                }
            };
            if self.connections.len() >= MAX_CLIENTS {
                tracing::warn!(
                    limit = MAX_CLIENTS,
                    "control socket: too many connections, refusing one"
                );
                continue;
            }
            let peer = match socket::getsockopt(&socket, sockopt::PeerCredentials) {
                Ok(cred) => Peer { pid: cred.pid(), uid: cred.uid(), gid: cred.gid() },
                Err(error) => {
                    tracing::warn!(%error, "control socket: no peer credentials, refusing the connection");
                    continue;
                }
            };
            tracing::debug!(pid = peer.pid, uid = peer.uid, "control connection");
            let key = self.next_key;
            self.next_key += 1;
            accepted.push((key, socket.as_raw_fd()));
            self.connections.insert(key, Connection { socket, peer });
        }
        accepted
    }

    /// Reads and answers the requests waiting on connection `key`. The handler gets the
    /// descriptors that came with a request and returns those to send with its reply.
    pub fn serve(
        &mut self,
        key: usize,
        mut handle: impl FnMut(&Peer, Operation, Vec<OwnedFd>) -> Handled,
    ) -> Served {
        let Some(connection) = self.connections.get(&key) else { return Served::Closed };
        let peer = connection.peer;
        let mut buffer = vec![0u8; MAX_MESSAGE + 1];
        // Read until EAGAIN: the event loop's epoll is edge-triggered, so requests left unread
        // now would wait for the client's next one (a pipelining client would hang).
        loop {
            let socket = self.connections[&key].socket.as_fd();
            let received = match fdpass::receive(socket, &mut buffer, MsgFlags::MSG_DONTWAIT) {
                Ok(received) if received.len == 0 && received.descriptors.is_empty() => {
                    return self.close(key, "closed by the client")
                }
                Ok(received) => received,
                Err(Errno::EAGAIN) => return Served::Open,
                Err(Errno::EINTR) => continue,
                Err(_) => return self.close(key, "receive failed"),
            };
            let (response, descriptors) = if received.truncated {
                // Whatever came with a cut message is dropped (closed) with it.
                let message = format!(
                    "message cut short: longer than {MAX_MESSAGE} bytes or more than {MAX_DESCRIPTORS} descriptors"
                );
                (Response { id: 0, result: Err(ProtocolError::BadRequest { message }) }, Vec::new())
            } else {
                answer(&buffer[..received.len], received.descriptors, |op, fds| {
                    handle(&peer, op, fds)
                })
            };
            let Ok(encoded) = serde_json::to_vec(&response) else {
                return self.close(key, "reply could not be encoded");
            };
            let socket = self.connections[&key].socket.as_fd();
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            let lent: Vec<_> = descriptors.iter().map(AsFd::as_fd).collect();
            match fdpass::send(socket, &encoded, &lent, flags) {
                Ok(_) => {}
                // A client that does not read its replies is not waited for.
                Err(Errno::EAGAIN) => return self.close(key, "client does not read its replies"),
                Err(_) => return self.close(key, "client gone before its reply"),
            }
            // Our copies of the descriptors sent close here; the client holds its own.
        }
    }

    /// Closes connection `key` (the event loop could not watch it).
    pub fn drop_connection(&mut self, key: usize) {
        self.close(key, "dropped by the daemon");
    }

    fn close(&mut self, key: usize, why: &'static str) -> Served {
        if let Some(connection) = self.connections.remove(&key) {
            tracing::debug!(pid = connection.peer.pid, why, "control connection ends");
        }
        Served::Closed
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Another daemon may have replaced the file since (after this one was declared stale).
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a request handler returns: the outcome, and descriptors to send with the reply.
pub type Handled = (Result<Reply, ProtocolError>, Vec<OwnedFd>);

/// Decodes one message and answers it.
fn answer(
    message: &[u8],
    descriptors: Vec<OwnedFd>,
    handle: impl FnOnce(Operation, Vec<OwnedFd>) -> Handled,
) -> (Response, Vec<OwnedFd>) {
    let refuse = |id, error| (Response { id, result: Err(error) }, Vec::new());
    if message.len() > MAX_MESSAGE {
        let message = format!("message longer than {MAX_MESSAGE} bytes");
        return refuse(0, ProtocolError::BadRequest { message });
    }
    let request: Request = match serde_json::from_slice(message) {
        Ok(request) => request,
        Err(error) => {
            // Answer with the id if the envelope at least had one.
            let id = serde_json::from_slice::<serde_json::Value>(message)
                .ok()
                .and_then(|value| value.get("id").and_then(|id| id.as_u64()))
                .unwrap_or(0);
            return refuse(id, ProtocolError::BadRequest { message: error.to_string() });
        }
    };
    if request.version != PROTOCOL_VERSION {
        let error =
            ProtocolError::UnsupportedVersion { client: request.version, daemon: PROTOCOL_VERSION };
        return refuse(request.id, error);
    }
    let (result, descriptors) = handle(request.op, descriptors);
    (Response { id: request.id, result }, descriptors)
}

/// True if a SOCK_SEQPACKET connect to `path` succeeds (a live daemon is listening).
fn seqpacket_answers(path: &Path) -> bool {
    let Ok(probe) =
        socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
    else {
        return false;
    };
    let Ok(address) = UnixAddr::new(path) else { return false };
    socket::connect(probe.as_raw_fd(), &address).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_handler(op: Operation, _descriptors: Vec<OwnedFd>) -> Handled {
        let result = match op {
            Operation::Counters => Ok(Reply::Counters { counters: vec![("rx_frames".into(), 7)] }),
            _ => Ok(Reply::Sockets { total: 0, sockets: vec![] }),
        };
        (result, Vec::new())
    }

    fn answer_of(message: &[u8]) -> Response {
        answer(message, Vec::new(), ok_handler).0
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stackd-control-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_path_that_is_not_a_socket_is_never_replaced() {
        let dir = temp_dir("notsocket");
        let file = dir.join("stackd.toml");
        std::fs::write(&file, "precious").unwrap();
        let error = ControlServer::bind(&file).unwrap_err();
        assert!(matches!(error, ControlError::NotASocket { .. }), "{error}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pipelined_requests_are_all_answered_in_one_turn() {
        let dir = temp_dir("pipeline");
        let path = dir.join("s.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let mut client = crate::client::Client::connect(&path).unwrap();
        for id in 1..=40 {
            let request = format!(r#"{{"version":1,"id":{id},"op":{{"op":"counters"}}}}"#);
            client.send_raw(request.as_bytes()).unwrap();
        }
        let accepted = server.accept_pending();
        assert_eq!(accepted.len(), 1);
        assert_eq!(server.serve(accepted[0].0, |_, op, fds| ok_handler(op, fds)), Served::Open);
        for id in 1..=40u64 {
            let reply: Response = serde_json::from_slice(&client.receive_raw().unwrap()).unwrap();
            assert_eq!(reply.id, id);
        }
        drop(server);
        assert!(!path.exists(), "the socket file goes with the server");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_well_formed_request_is_answered_under_its_id() {
        let request = br#"{"version":1,"id":42,"op":{"op":"counters"}}"#;
        let response = answer_of(request);
        assert_eq!(response.id, 42);
        assert_eq!(
            response.result,
            Ok(Reply::Counters { counters: vec![("rx_frames".into(), 7)] })
        );
    }

    #[test]
    fn garbage_and_unknown_versions_get_clear_errors() {
        let response = answer_of(b"\x00\xffnot json");
        assert_eq!(response.id, 0);
        assert!(matches!(response.result, Err(ProtocolError::BadRequest { .. })));

        let response = answer_of(br#"{"version":1,"id":9,"op":{"op":"launch-missiles"}}"#);
        assert_eq!(response.id, 9, "the id is echoed even when the operation is unknown");
        let Err(ProtocolError::BadRequest { message }) = response.result else {
            panic!("{response:?}")
        };
        assert!(message.contains("launch-missiles"), "{message}");

        let response = answer_of(br#"{"version":7,"id":3,"op":{"op":"counters"}}"#);
        assert_eq!(
            response.result,
            Err(ProtocolError::UnsupportedVersion { client: 7, daemon: 1 })
        );

        let response = answer_of(br#"{"version":1,"id":5,"op""#);
        assert!(matches!(response.result, Err(ProtocolError::BadRequest { .. })), "truncated JSON");

        let oversized = vec![b' '; MAX_MESSAGE + 1];
        assert!(matches!(answer_of(&oversized).result, Err(ProtocolError::BadRequest { .. })));
    }
}
