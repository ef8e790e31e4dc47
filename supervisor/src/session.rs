//! One stackd session on behalf of a supervised process tree (or a container): the control
//! connections that serve its calls, and what the supervisor knows about its sockets.
//!
//! Sockets are known by their SO_COOKIE, not by (pid, fd): dup, dup2, fork and close are not
//! trapped, so descriptor numbers go stale, while a cookie names the socket itself for life and
//! is never reused (DESIGN.md, "Identity of a trapped fd").

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use stackd::client::{Client, ClientError};
use stackd::proto::{Family, Operation, OptionName, Reply, SocketKind, Token};

use crate::sys;

/// Above this many known sockets the table is swept of closed ones (then the bound doubles
/// from what is left), so a connection storm does not grow it for ever.
const SWEEP_FLOOR: usize = 4096;
/// Cookies of sockets that are not stackd's, remembered so that each is asked about once.
const MAX_STRANGERS: usize = 65536;

/// A stackd socket as the supervisor knows it.
#[derive(Debug)]
pub struct StackdSocket {
    /// Its capability in the session.
    pub token: Token,
    /// The family the program asked for (AF_INET6 sockets see v4-mapped addresses).
    pub family: Family,
    /// Stream or datagram.
    pub kind: SocketKind,
    state: Mutex<SocketState>,
}

/// What changes over a socket's life.
#[derive(Debug, Default, Clone)]
pub struct SocketState {
    /// listen() succeeded.
    pub listening: bool,
    /// The connected peer (UDP after connect, TCP once connect was asked for or accepted).
    pub peer: Option<SocketAddr>,
    /// Every option the program set, in order, so that a socket moved to the kernel keeps them.
    pub options: Vec<SavedOption>,
    /// The local address once it can no longer change (listening or connected), so that
    /// getsockname needs no request to the daemon.
    pub local: Option<SocketAddr>,
    /// The peer's address once the daemon confirmed the connection, for getpeername.
    pub confirmed_peer: Option<SocketAddr>,
}

/// One setsockopt call, kept as the program made it.
#[derive(Debug, Clone)]
pub struct SavedOption {
    /// SOL_SOCKET, IPPROTO_TCP, ...
    pub level: i32,
    /// The option.
    pub name: i32,
    /// The value's bytes.
    pub value: Vec<u8>,
}

impl StackdSocket {
    /// A socket the program has just been given.
    pub fn new(token: Token, family: Family, kind: SocketKind) -> StackdSocket {
        StackdSocket { token, family, kind, state: Mutex::new(SocketState::default()) }
    }

    /// Its changing state.
    pub fn state(&self) -> MutexGuard<'_, SocketState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a descriptor of the target turned out to be.
#[derive(Debug)]
pub enum Identity {
    /// A stackd socket of this session.
    Stackd(Arc<StackdSocket>),
    /// Anything else: the kernel serves it.
    Kernel,
}

/// A session: its token, a pool of control connections and the socket table.
#[derive(Debug)]
pub struct Session {
    control: PathBuf,
    token: Token,
    /// The daemon's pid: carriers are socketpairs it made, so their peer is this process.
    daemon_pid: Option<i32>,
    /// The connection that opened the session: held for its whole life, since the session
    /// ends with its last connection.
    anchor: Mutex<Client>,
    idle: Mutex<Vec<Client>>,
    sockets: Mutex<SocketTable>,
    strangers: Mutex<HashSet<u64>>,
}

#[derive(Debug, Default)]
struct SocketTable {
    by_cookie: HashMap<u64, Arc<StackdSocket>>,
    sweep_at: usize,
}

impl Session {
    /// Opens a session named `name` for the processes `pids` on the daemon at `control`.
    pub fn open(control: &Path, name: &str, pids: &[u32]) -> Result<Session, ClientError> {
        let mut anchor = Client::connect(control)?;
        let token = anchor.open_session(name, pids)?;
        let daemon_pid = anchor.daemon_pid();
        Ok(Session {
            control: control.to_owned(),
            token,
            daemon_pid,
            anchor: Mutex::new(anchor),
            idle: Mutex::new(Vec::new()),
            sockets: Mutex::new(SocketTable { by_cookie: HashMap::new(), sweep_at: SWEEP_FLOOR }),
            strangers: Mutex::new(HashSet::new()),
        })
    }

    /// The session's token (a container's further processes join with it).
    pub fn token(&self) -> Token {
        self.token
    }

    /// Runs `call` on an idle control connection of the session (a new one joins when none is
    /// idle: concurrent calls never wait for each other). A connection that failed is dropped.
    pub fn with_client<R>(
        &self,
        call: impl FnOnce(&mut Client) -> Result<R, ClientError>,
    ) -> Result<R, ClientError> {
        let pooled = lock(&self.idle).pop();
        let mut client = match pooled {
            Some(client) => client,
            None => self.join()?,
        };
        let result = call(&mut client);
        let healthy = match &result {
            Ok(_) | Err(ClientError::Refused(_)) => true,
            Err(_) => false,
        };
        if healthy {
            lock(&self.idle).push(client);
        }
        result
    }

    fn join(&self) -> Result<Client, ClientError> {
        let mut client = Client::connect(&self.control)?;
        match client.call(Operation::JoinSession { session: self.token })? {
            Reply::Session { .. } | Reply::Done => Ok(client),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Whether the session's first connection still answers (the daemon is alive).
    pub fn daemon_alive(&self) -> bool {
        lock(&self.anchor).call(Operation::Hello { client: "joyride run".into() }).is_ok()
    }

    /// Records a socket the program has been given (before it can use it).
    pub fn insert(&self, carrier: BorrowedFd<'_>, socket: Arc<StackdSocket>) -> Option<u64> {
        let cookie = sys::socket_cookie(carrier).ok()?;
        let mut table = lock(&self.sockets);
        table.by_cookie.insert(cookie, socket);
        if table.by_cookie.len() >= table.sweep_at {
            drop(table);
            self.sweep();
        }
        Some(cookie)
    }

    /// Forgets a socket (closed, or moved to the kernel).
    pub fn forget(&self, cookie: u64) {
        lock(&self.sockets).by_cookie.remove(&cookie);
    }

    /// What `fd` (a duplicate of the target's descriptor) is.
    pub fn identify(&self, fd: BorrowedFd<'_>) -> Identity {
        let Ok(cookie) = sys::socket_cookie(fd) else { return Identity::Kernel };
        if let Some(socket) = lock(&self.sockets).by_cookie.get(&cookie) {
            return Identity::Stackd(Arc::clone(socket));
        }
        if lock(&self.strangers).contains(&cookie) {
            return Identity::Kernel;
        }
        match self.ask_daemon(fd) {
            Some(socket) => {
                let socket = Arc::new(socket);
                lock(&self.sockets).by_cookie.insert(cookie, Arc::clone(&socket));
                Identity::Stackd(socket)
            }
            None => {
                let mut strangers = lock(&self.strangers);
                if strangers.len() >= MAX_STRANGERS {
                    strangers.clear();
                }
                strangers.insert(cookie);
                Identity::Kernel
            }
        }
    }

    /// A socket the table does not know may still be a carrier: inherited through exec from
    /// before the table existed, or received from another joyride program over SCM_RIGHTS.
    /// Only unix sockets whose peer is the daemon are worth a question.
    fn ask_daemon(&self, fd: BorrowedFd<'_>) -> Option<StackdSocket> {
        if sys::socket_domain(fd).ok()? != libc::AF_UNIX {
            return None;
        }
        if self.daemon_pid.is_some_and(|pid| sys::peer_pid(fd).ok() != Some(pid)) {
            return None;
        }
        let (token, family, kind, listening) =
            self.with_client(|client| client.identify(fd.as_fd())).ok()?;
        let socket = StackdSocket::new(token, family, kind);
        socket.state().listening = listening;
        Some(socket)
    }

    /// Drops the sockets the daemon no longer knows (every descriptor of them closed).
    fn sweep(&self) {
        let known: Vec<(u64, Token)> = lock(&self.sockets)
            .by_cookie
            .iter()
            .map(|(&cookie, socket)| (cookie, socket.token))
            .collect();
        let closed: Vec<u64> = known
            .into_iter()
            .filter(|&(_, token)| {
                let answer = self.with_client(|client| client.get_option(token, OptionName::Type));
                matches!(answer, Err(ref e) if e.errno() == libc::EBADF)
            })
            .map(|(cookie, _)| cookie)
            .collect();
        let mut table = lock(&self.sockets);
        for cookie in closed {
            table.by_cookie.remove(&cookie);
        }
        table.sweep_at = (table.by_cookie.len() * 2).max(SWEEP_FLOOR);
    }

    /// How many sockets the table holds (tests and `joyride ss` diagnostics).
    pub fn known_sockets(&self) -> usize {
        lock(&self.sockets).by_cookie.len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
