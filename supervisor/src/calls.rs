//! Each trapped call, translated for joyride sockets (the trap path of DESIGN.md).
//!
//! A call names its socket by a descriptor number; the supervisor takes a duplicate of that
//! descriptor (pidfd_getfd) and asks the [`Session`](crate::session::Session) what it is. A
//! descriptor that is not a stackd socket is the kernel's: the call is answered CONTINUE and
//! the kernel runs it as if nothing had trapped it. For stackd sockets:
//!
//! - socket, bind, listen, connect, accept, getsockname, getpeername, get/setsockopt and
//!   shutdown become control-protocol requests;
//! - sendto/recvfrom with an address, sendmsg/recvmsg and the mmsg forms on an *unconnected*
//!   UDP socket are served here, moving the datagram through the carrier with its 8-byte
//!   address header; on TCP and connected UDP sockets they mostly act natively on the carrier;
//! - a socket the daemon cannot serve (a real IPv6 address, IPV6_V6ONLY, a policy's `kernel`)
//!   is moved to the kernel: a kernel socket with the options set so far replaces the
//!   program's descriptor (ADDFD with SETFD, as dup2 does), and the call continues in the
//!   kernel.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::PollFlags;
use nix::sys::socket::{self as nixsock, MsgFlags, SockaddrStorage};
use policies::{Action, Call as PolicyCall, Subject};
use stackd::client::{StackSocket, JOYRIDE_RINGS, SOL_JOYRIDE};
use stackd::proto::{datagram, Family, OptionName, OptionValue, ShutdownHow, SocketKind};
use trap::{AddFd, Listener, NotifError, Notification, SockAddr, Syscall};

use crate::addr::{self, Route};
use crate::msg::{self, MsgHdr};
use crate::serve::{defer, Answer, Fail, Supervisor, Wait};
use crate::session::{Identity, SavedOption, StackdSocket};
use crate::sys;

/// The most a TCP send or receive served here moves in one call (a short count, which stream
/// sockets may return).
const STREAM_CHUNK: usize = 256 * 1024;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65507;
/// The longest option value read from the target.
const MAX_OPTION: usize = 256;
/// sizeof(struct tcp_info) as Linux 6.x writes it.
const TCP_INFO_LEN: usize = 232;
/// What `getsockopt(SOL_JOYRIDE, JOYRIDE_RINGS)` writes: two native-endian int32 descriptors.
const RINGS_LEN: usize = std::mem::size_of::<stackd::client::JoyrideRings>();

/// Serves one notification.
pub fn handle(
    supervisor: &Arc<Supervisor>,
    listener: &Arc<Listener>,
    notification: &Notification,
) -> Result<Answer, Fail> {
    let call = Call { supervisor, listener, n: notification };
    match notification.syscall() {
        Syscall::Socket { domain, ty, nonblock, cloexec, protocol } => {
            call.socket(domain, ty, protocol, nonblock, cloexec)
        }
        Syscall::Connect { fd, addr_ptr, addr_len } => call.on_any_socket(
            fd,
            |t| call.connect(t, addr_ptr, addr_len),
            |dup| call.on_kernel_socket(dup, PolicyCall::Connect, addr_ptr, addr_len, None),
        ),
        Syscall::Bind { fd, addr_ptr, addr_len } => call.on_any_socket(
            fd,
            |t| call.bind(t, addr_ptr, addr_len),
            |dup| call.on_kernel_socket(dup, PolicyCall::Bind, addr_ptr, addr_len, None),
        ),
        Syscall::Listen { fd, backlog } => call.on_socket(fd, |t| call.listen(&t, backlog)),
        Syscall::Accept { fd, addr_ptr, len_ptr } => {
            call.on_socket(fd, |t| call.accept(t, addr_ptr, len_ptr, 0))
        }
        Syscall::Accept4 { fd, addr_ptr, len_ptr, flags } => {
            call.on_socket(fd, |t| call.accept(t, addr_ptr, len_ptr, flags))
        }
        Syscall::GetSockName { fd, addr_ptr, len_ptr } => {
            call.on_socket(fd, |t| call.name(&t, addr_ptr, len_ptr, false))
        }
        Syscall::GetPeerName { fd, addr_ptr, len_ptr } => {
            call.on_socket(fd, |t| call.name(&t, addr_ptr, len_ptr, true))
        }
        Syscall::SetSockOpt { fd, level, name, value_ptr, len } => {
            call.on_socket(fd, |t| call.set_option(&t, level, name, value_ptr, len))
        }
        Syscall::GetSockOpt { fd, level, name, value_ptr, len_ptr } => {
            call.on_socket(fd, |t| call.get_option(&t, level, name, value_ptr, len_ptr))
        }
        Syscall::Shutdown { fd, how } => call.on_socket(fd, |t| call.shutdown(t, how)),
        Syscall::SendTo { fd, buf_ptr, len, flags, addr_ptr, addr_len } => call.on_any_socket(
            fd,
            |t| call.send_to(t, buf_ptr, len, flags, addr_ptr, addr_len),
            |dup| {
                let send = Some((buf_ptr, len, flags));
                call.on_kernel_socket(dup, PolicyCall::SendTo, addr_ptr, addr_len, send)
            },
        ),
        Syscall::RecvFrom { fd, buf_ptr, len, flags, addr_ptr, len_ptr } => {
            call.on_socket(fd, |t| call.recv_from(t, buf_ptr, len, flags, addr_ptr, len_ptr))
        }
        Syscall::SendMsg { fd, msg_ptr, flags } => {
            call.on_socket(fd, |t| call.send_msg(t, msg_ptr, flags))
        }
        Syscall::RecvMsg { fd, msg_ptr, flags } => {
            call.on_socket(fd, |t| call.recv_msg(t, msg_ptr, flags))
        }
        Syscall::SendMmsg { fd, vec_ptr, vlen, flags } => {
            call.on_socket(fd, |t| call.mmsg(t, vec_ptr, vlen, flags, Direction::Send))
        }
        Syscall::RecvMmsg { fd, vec_ptr, vlen, flags, .. } => {
            call.on_socket(fd, |t| call.mmsg(t, vec_ptr, vlen, flags, Direction::Receive))
        }
        // The filter refuses io_uring_setup itself; anything else is not ours to change.
        Syscall::SocketPair { .. } | Syscall::IoUringSetup { .. } | Syscall::Other { .. } => {
            Ok(Answer::Continue)
        }
    }
}

/// One notification being served.
struct Call<'a> {
    supervisor: &'a Arc<Supervisor>,
    listener: &'a Arc<Listener>,
    n: &'a Notification,
}

/// What a [`Call`] needs, owned, for an attempt that may run on a waiting thread.
struct Detached {
    supervisor: Arc<Supervisor>,
    listener: Arc<Listener>,
    n: Notification,
}

impl Detached {
    fn call(&self) -> Call<'_> {
        Call { supervisor: &self.supervisor, listener: &self.listener, n: &self.n }
    }
}

/// A stackd socket a call names: the program's number, the supervisor's duplicate, the socket.
struct Target {
    fd: i32,
    dup: OwnedFd,
    socket: Arc<StackdSocket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Send,
    Receive,
}

impl Received {
    /// What a receive returns: the bytes copied, or with MSG_TRUNC the datagram's full length.
    fn result_len(&self, flags: u32) -> usize {
        if flags & libc::MSG_TRUNC as u32 != 0 {
            self.full_len
        } else {
            self.payload.len()
        }
    }
}

/// The call that moves a socket to the kernel, as the supervisor read it.
enum Pending {
    /// The call needs no address (setsockopt IPV6_V6ONLY).
    Nothing,
    Connect(SocketAddr),
    Bind(SocketAddr),
    Send {
        destination: SocketAddr,
        payload: Vec<u8>,
        flags: u32,
    },
}

/// A datagram taken off an unconnected UDP carrier.
struct Received {
    payload: Vec<u8>,
    /// The payload's full length (it may have been cut to the program's buffer).
    full_len: usize,
    from: Option<SocketAddr>,
}

impl Call<'_> {
    fn listener(&self) -> &Listener {
        self.listener
    }

    fn detach(&self) -> Detached {
        Detached {
            supervisor: Arc::clone(self.supervisor),
            listener: Arc::clone(self.listener),
            n: *self.n,
        }
    }

    /// Runs `serve` if `fd` is a stackd socket; CONTINUE otherwise.
    fn on_socket(
        &self,
        fd: i32,
        serve: impl FnOnce(Target) -> Result<Answer, Fail>,
    ) -> Result<Answer, Fail> {
        self.on_any_socket(fd, serve, |_| Ok(Answer::Continue))
    }

    /// As [`Call::on_socket`], with `kernel` for a descriptor that is the kernel's.
    fn on_any_socket(
        &self,
        fd: i32,
        serve: impl FnOnce(Target) -> Result<Answer, Fail>,
        kernel: impl FnOnce(OwnedFd) -> Result<Answer, Fail>,
    ) -> Result<Answer, Fail> {
        let dup = match self.n.take_fd(self.listener(), fd) {
            Ok(dup) => dup,
            // The kernel gives the exact error for a closed number.
            Err(NotifError::BadDescriptor { .. }) => return Ok(Answer::Continue),
            Err(error) => return Err(error.into()),
        };
        match self.supervisor.session.identify(dup.as_fd()) {
            Identity::Kernel => kernel(dup),
            Identity::Stackd(socket) => serve(Target { fd, dup, socket }),
        }
    }

    fn decide(
        &self,
        call: PolicyCall,
        family: Family,
        kind: SocketKind,
        destination: Option<SocketAddr>,
    ) -> Action {
        // A readlink per decision (every unconnected datagram sent) only where a rule uses it.
        let executable: Option<PathBuf> = self
            .supervisor
            .policy
            .needs_executable()
            .then(|| std::fs::read_link(format!("/proc/{}/exe", self.n.tid)).ok())
            .flatten();
        let subject = Subject {
            call,
            family: match family {
                Family::Inet => policies::Family::Inet,
                Family::Inet6 => policies::Family::Inet6,
            },
            kind: match kind {
                SocketKind::Stream => policies::Kind::Stream,
                SocketKind::Datagram => policies::Kind::Datagram,
            },
            destination,
            executable: executable.as_deref(),
        };
        let decision = self.supervisor.policy.decide(&subject);
        if decision.action == Action::Audit {
            let socket = (domain_of(family), type_of(kind));
            self.supervisor.audited(self.listener, self.n, socket, decision.rule);
        }
        decision.action
    }

    // ---- creating, naming and connecting sockets ----

    fn socket(
        &self,
        domain: i32,
        ty: i32,
        protocol: i32,
        nonblock: bool,
        cloexec: bool,
    ) -> Result<Answer, Fail> {
        let family = match domain {
            libc::AF_INET => Family::Inet,
            libc::AF_INET6 => Family::Inet6,
            _ => return Ok(Answer::Continue),
        };
        let kind = match (ty, protocol) {
            (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => SocketKind::Stream,
            (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => SocketKind::Datagram,
            // Raw sockets, ICMP "ping" sockets, SCTP...: the kernel's.
            _ => return Ok(Answer::Continue),
        };
        match self.decide(PolicyCall::Socket, family, kind, None) {
            Action::Userspace => {}
            Action::Kernel | Action::Audit => return Ok(Answer::Continue),
            Action::Deny { errno } => return Ok(Answer::Errno(errno)),
        }
        let session = &self.supervisor.session;
        let made = session.with_client(|client| client.socket(family, kind))?;
        if nonblock {
            set_nonblocking(made.carrier.as_fd())?;
        }
        let socket = Arc::new(StackdSocket::new(made.token, family, kind));
        self.give(made, socket, cloexec, |_| Ok(()))
    }

    /// Installs a new socket's carrier as the call's result, after `before` (which writes the
    /// peer's address for accept). On failure the socket is closed again: nothing leaks.
    fn give(
        &self,
        made: StackSocket,
        socket: Arc<StackdSocket>,
        cloexec: bool,
        before: impl FnOnce(&Self) -> Result<(), NotifError>,
    ) -> Result<Answer, Fail> {
        let session = &self.supervisor.session;
        let token = made.token;
        // Known before the program has it: another of its threads may use it at once.
        let cookie = session.insert(made.carrier.as_fd(), socket);
        let given = before(self).and_then(|()| {
            self.listener().add_fd(
                self.n.id,
                made.carrier.as_fd(),
                AddFd { cloexec, target_fd: None, send: true },
            )
        });
        match given {
            Ok(_) => Ok(Answer::Answered),
            Err(error) => {
                if let Some(cookie) = cookie {
                    session.forget(cookie);
                }
                let _ = session.with_client(|client| client.close(token));
                Err(error.into())
            }
        }
    }

    /// Reads an inet address the program names, and where it can be served.
    fn read_inet_address(
        &self,
        t: &Target,
        ptr: u64,
        len: i32,
    ) -> Result<(SocketAddr, Route), Fail> {
        let raw = self.n.read_sockaddr(self.listener(), ptr, len)?;
        match (addr::route(t.socket.family, &raw).map_err(Fail::Errno)?, raw) {
            (Route::Stackd(addr), _) => Ok((addr, Route::Stackd(addr))),
            (Route::Kernel, SockAddr::Inet(addr)) => Ok((addr, Route::Kernel)),
            (Route::Kernel, _) => Err(Fail::Errno(libc::EAFNOSUPPORT)),
        }
    }

    /// A datagram to an address only the kernel serves: the policy decides, then the socket
    /// moves to the kernel with the datagram.
    fn send_to_kernel(
        &self,
        t: Target,
        payload: Vec<u8>,
        destination: SocketAddr,
        flags: u32,
    ) -> Result<Answer, Fail> {
        match self.decide(PolicyCall::SendTo, t.socket.family, t.socket.kind, Some(destination)) {
            Action::Deny { errno } => Ok(Answer::Errno(errno)),
            _ => self.to_kernel(&t, Pending::Send { destination, payload, flags }),
        }
    }

    fn connect(&self, t: Target, addr_ptr: u64, addr_len: i32) -> Result<Answer, Fail> {
        let (family, kind) = (t.socket.family, t.socket.kind);
        let raw = self.n.read_sockaddr(self.listener(), addr_ptr, addr_len)?;
        if matches!(raw, SockAddr::Other { family } if family == libc::AF_UNSPEC as u16) {
            // Dissolving a UDP association is not served: the socket keeps its peer.
            return Ok(if kind == SocketKind::Datagram {
                Answer::Value(0)
            } else {
                Answer::Errno(libc::EOPNOTSUPP)
            });
        }
        let (peer, route) = match (addr::route(family, &raw).map_err(Fail::Errno)?, &raw) {
            (Route::Stackd(peer), _) => (peer, Route::Stackd(peer)),
            (Route::Kernel, SockAddr::Inet(peer)) => (*peer, Route::Kernel),
            (Route::Kernel, _) => return Ok(Answer::Errno(libc::EAFNOSUPPORT)),
        };
        match (self.decide(PolicyCall::Connect, family, kind, Some(peer)), route) {
            (Action::Deny { errno }, _) => return Ok(Answer::Errno(errno)),
            (Action::Userspace, Route::Stackd(_)) => {}
            _ => return self.to_kernel(&t, Pending::Connect(peer)),
        }
        let token = t.socket.token;
        let started =
            self.supervisor.session.with_client(|client| client.connect_socket(token, peer));
        let errno = match started {
            Ok(()) => {
                t.socket.state().peer = Some(peer);
                return Ok(Answer::Value(0));
            }
            Err(error) => error.errno(),
        };
        if !matches!(errno, libc::EINPROGRESS | libc::EALREADY) {
            return Ok(Answer::Errno(errno));
        }
        t.socket.state().peer = Some(peer);
        if is_nonblocking(t.dup.as_fd()) {
            return Ok(Answer::Errno(errno));
        }
        // A blocking connect: the carrier turns writable (or hangs up) when the handshake ends.
        let supervisor = Arc::clone(self.supervisor);
        let deadline = deadline_of(t.dup.as_fd(), libc::SO_SNDTIMEO, libc::EINPROGRESS);
        let wait = Wait {
            carrier: t.dup,
            events: PollFlags::POLLOUT,
            exclusive: false,
            deadline,
            attempt: Box::new(move || connect_outcome(&supervisor, token)),
        };
        defer(self.supervisor, self.listener, *self.n, wait)
    }

    fn bind(&self, t: Target, addr_ptr: u64, addr_len: i32) -> Result<Answer, Fail> {
        let (local, route) = self.read_inet_address(&t, addr_ptr, addr_len)?;
        match (self.decide(PolicyCall::Bind, t.socket.family, t.socket.kind, Some(local)), route) {
            (Action::Deny { errno }, _) => return Ok(Answer::Errno(errno)),
            (Action::Userspace, Route::Stackd(_)) => {}
            _ => return self.to_kernel(&t, Pending::Bind(local)),
        }
        let token = t.socket.token;
        Ok(answer(self.supervisor.session.with_client(|client| client.bind(token, local))))
    }

    fn listen(&self, t: &Target, backlog: i32) -> Result<Answer, Fail> {
        let token = t.socket.token;
        let backlog = backlog.clamp(1, 65535) as u32;
        let listened = self.supervisor.session.with_client(|client| client.listen(token, backlog));
        if listened.is_ok() {
            t.socket.state().listening = true;
        }
        Ok(answer(listened))
    }

    fn accept(&self, t: Target, addr_ptr: u64, len_ptr: u64, flags: i32) -> Result<Answer, Fail> {
        if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
            return Ok(Answer::Errno(libc::EINVAL));
        }
        if !t.socket.state().listening {
            return Ok(Answer::Errno(libc::EINVAL));
        }
        let doorbell = duplicate(&t.dup)?;
        let socket = Arc::clone(&t.socket);
        let accept_once = {
            let detached = self.detach();
            let mut woken = false;
            move || {
                let outcome = detached.call().accept_once(
                    &socket,
                    doorbell.as_fd(),
                    addr_ptr,
                    len_ptr,
                    flags,
                    woken,
                );
                woken = true;
                outcome
            }
        };
        // One connection satisfies one waiter: wake one per ring of the listener's doorbell.
        self.now_or_wait(t.dup, PollFlags::POLLIN, true, libc::SO_RCVTIMEO, accept_once)
    }

    fn accept_once(
        &self,
        listening: &StackdSocket,
        doorbell: BorrowedFd<'_>,
        addr_ptr: u64,
        len_ptr: u64,
        flags: i32,
        woken: bool,
    ) -> Result<Answer, Fail> {
        // Taking a connection for a caller that has left would lose it.
        if !self.n.is_valid(self.listener()).unwrap_or(false) {
            return Err(Fail::Gone);
        }
        // One byte stands for the connections waiting and the daemon rings again while more
        // remain after an accept. Waiters wait exclusively (one woken per ring), but a waiter
        // may still find the bell drained by another caller (a non-blocking accept, a waiter
        // whose slice ended): it leaves the daemon alone rather than ask it for nothing.
        if woken && drain_doorbell(doorbell) == 0 {
            return Err(Fail::Errno(libc::EAGAIN));
        }
        let token = listening.token;
        let (made, peer) =
            self.supervisor.session.with_client(|client| client.accept(token, doorbell))?;
        if flags & libc::SOCK_NONBLOCK != 0 {
            set_nonblocking(made.carrier.as_fd())?;
        }
        let family = listening.family;
        let socket = Arc::new(StackdSocket::new(made.token, family, SocketKind::Stream));
        {
            let mut state = socket.state();
            state.peer = Some(peer);
            state.confirmed_peer = Some(peer);
        }
        self.give(made, socket, flags & libc::SOCK_CLOEXEC != 0, |call| {
            addr::write_to_program(call.n, call.listener(), addr_ptr, len_ptr, family, peer)
        })
    }

    /// Tries `attempt` now; if it would block on a blocking socket, waits for `events` on a
    /// thread of its own (bounded by the carrier's SO_RCVTIMEO/SO_SNDTIMEO `timeout_option`;
    /// `exclusive`: see [`Wait::exclusive`]).
    fn now_or_wait(
        &self,
        carrier: OwnedFd,
        events: PollFlags,
        exclusive: bool,
        timeout_option: i32,
        mut attempt: impl FnMut() -> Result<Answer, Fail> + Send + 'static,
    ) -> Result<Answer, Fail> {
        match attempt() {
            Err(Fail::Errno(libc::EAGAIN)) if !is_nonblocking(carrier.as_fd()) => {}
            other => return other,
        }
        let deadline = deadline_of(carrier.as_fd(), timeout_option, libc::EAGAIN);
        let wait = Wait { carrier, events, exclusive, deadline, attempt: Box::new(attempt) };
        defer(self.supervisor, self.listener, *self.n, wait)
    }

    fn name(&self, t: &Target, addr_ptr: u64, len_ptr: u64, peer: bool) -> Result<Answer, Fail> {
        if addr_ptr == 0 || len_ptr == 0 {
            return Ok(Answer::Errno(libc::EFAULT));
        }
        let cached = {
            let state = t.socket.state();
            if peer {
                state.confirmed_peer
            } else {
                state.local
            }
        };
        let addr = match cached {
            Some(addr) => addr,
            None => {
                let token = t.socket.token;
                let addr = self.supervisor.session.with_client(|client| {
                    if peer {
                        client.peer_address(token)
                    } else {
                        client.local_address(token)
                    }
                })?;
                let mut state = t.socket.state();
                if peer {
                    state.confirmed_peer = Some(addr);
                } else if state.listening
                    || state.peer.is_some() && addr.port() != 0 && !addr.ip().is_unspecified()
                {
                    // A listener's address, or a connection's chosen one, never changes again.
                    state.local = Some(addr);
                }
                addr
            }
        };
        addr::write_to_program(self.n, self.listener(), addr_ptr, len_ptr, t.socket.family, addr)?;
        Ok(Answer::Value(0))
    }

    fn shutdown(&self, t: Target, how: i32) -> Result<Answer, Fail> {
        let how = match how {
            libc::SHUT_RD => ShutdownHow::Read,
            libc::SHUT_WR => ShutdownHow::Write,
            libc::SHUT_RDWR => ShutdownHow::Both,
            _ => return Ok(Answer::Errno(libc::EINVAL)),
        };
        let socket = StackSocket { token: t.socket.token, carrier: t.dup };
        Ok(answer(self.supervisor.session.with_client(|client| client.shutdown(&socket, how))))
    }

    // ---- options ----

    fn set_option(
        &self,
        t: &Target,
        level: i32,
        name: i32,
        value_ptr: u64,
        len: i32,
    ) -> Result<Answer, Fail> {
        if carrier_option(level, name) {
            return Ok(Answer::Continue);
        }
        let Ok(len) = usize::try_from(len) else { return Ok(Answer::Errno(libc::EINVAL)) };
        let value = self.n.read(self.listener(), value_ptr, len.min(MAX_OPTION))?;
        let int = value.get(..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
        t.socket.state().options.push(SavedOption { level, name, value: value.clone() });
        if (level, name) == (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
            && t.socket.family == Family::Inet6
            && int.is_some_and(|v| v != 0)
        {
            // An IPv6-only socket has nothing for an IPv4 engine to serve.
            return self.to_kernel(t, Pending::Nothing);
        }
        let Some((option, shape)) = option_of(level, name) else {
            tracing::debug!(level, name, "setsockopt accepted and ignored");
            return Ok(Answer::Value(0));
        };
        let option_value = match shape {
            Shape::Int => match int {
                Some(v) => OptionValue::Int(i64::from(v)),
                None => return Ok(Answer::Errno(libc::EINVAL)),
            },
            Shape::Linger => match value.get(..8) {
                Some(l) => {
                    let on = i32::from_ne_bytes(l[..4].try_into().expect("4 bytes"));
                    let secs = i32::from_ne_bytes(l[4..].try_into().expect("4 bytes"));
                    OptionValue::Linger((on != 0).then_some(secs.max(0) as u32))
                }
                None => return Ok(Answer::Errno(libc::EINVAL)),
            },
            Shape::Text => {
                let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                OptionValue::Text(String::from_utf8_lossy(&value[..end]).into_owned())
            }
            Shape::ReadOnly => return Ok(Answer::Errno(libc::ENOPROTOOPT)),
        };
        let token = t.socket.token;
        Ok(answer(
            self.supervisor
                .session
                .with_client(|client| client.set_option(token, option, option_value)),
        ))
    }

    fn get_option(
        &self,
        t: &Target,
        level: i32,
        name: i32,
        value_ptr: u64,
        len_ptr: u64,
    ) -> Result<Answer, Fail> {
        if level == SOL_JOYRIDE {
            return self.joyride_option(t, name, value_ptr, len_ptr);
        }
        if carrier_option(level, name) {
            return Ok(Answer::Continue);
        }
        let room = self.n.read_i32(self.listener(), len_ptr)?;
        let Ok(room) = usize::try_from(room) else { return Ok(Answer::Errno(libc::EINVAL)) };
        let socket = &t.socket;
        let local = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_TYPE) => Some(type_of(socket.kind)),
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => Some(domain_of(socket.family)),
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => Some(match socket.kind {
                SocketKind::Stream => libc::IPPROTO_TCP,
                SocketKind::Datagram => libc::IPPROTO_UDP,
            }),
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => Some(i32::from(socket.state().listening)),
            _ => None,
        };
        let bytes = match local {
            Some(v) => v.to_ne_bytes().to_vec(),
            None => {
                let Some((option, _)) = option_of(level, name) else {
                    return Ok(Answer::Errno(libc::ENOPROTOOPT));
                };
                let token = socket.token;
                let value =
                    self.supervisor.session.with_client(|client| client.get_option(token, option));
                match value {
                    Ok(value) => option_bytes(&value),
                    Err(error) => return Ok(Answer::Errno(error.errno())),
                }
            }
        };
        let give = room.min(bytes.len());
        let given = (give as i32).to_ne_bytes();
        self.n.write_all(self.listener(), &[(value_ptr, &bytes[..give]), (len_ptr, &given)])?;
        Ok(Answer::Value(0))
    }

    /// joyride's private options (`SOL_JOYRIDE`): `JOYRIDE_RINGS` installs a local
    /// connection's two ring memfds in the program and writes their numbers (the ring this
    /// side reads, then the one it writes).
    fn joyride_option(
        &self,
        t: &Target,
        name: i32,
        value_ptr: u64,
        len_ptr: u64,
    ) -> Result<Answer, Fail> {
        if name != JOYRIDE_RINGS {
            return Ok(Answer::Errno(libc::ENOPROTOOPT));
        }
        let room = self.n.read_i32(self.listener(), len_ptr)?;
        if room < RINGS_LEN as i32 {
            return Ok(Answer::Errno(libc::EINVAL));
        }
        // A value the program cannot receive must fail before descriptors it would never
        // learn of are installed.
        self.n.write(self.listener(), value_ptr, &[0; RINGS_LEN])?;
        let token = t.socket.token;
        let (rx, tx, _) = match self.supervisor.session.with_client(|client| client.rings(token)) {
            Ok(rings) => rings,
            Err(error) => return Ok(Answer::Errno(error.errno())),
        };
        let install = |fd: &OwnedFd| {
            self.listener().add_fd(
                self.n.id,
                fd.as_fd(),
                AddFd { cloexec: true, target_fd: None, send: false },
            )
        };
        let rx_fd = install(&rx)?;
        let tx_fd = install(&tx)?;
        let mut value = [0u8; RINGS_LEN];
        value[..4].copy_from_slice(&rx_fd.to_ne_bytes());
        value[4..].copy_from_slice(&tx_fd.to_ne_bytes());
        let len = (RINGS_LEN as i32).to_ne_bytes();
        self.n.write_all(self.listener(), &[(value_ptr, &value), (len_ptr, &len)])?;
        Ok(Answer::Value(0))
    }

    // ---- data with addresses ----

    fn send_to(
        &self,
        t: Target,
        buf_ptr: u64,
        len: u64,
        flags: u32,
        addr_ptr: u64,
        addr_len: i32,
    ) -> Result<Answer, Fail> {
        if t.socket.kind == SocketKind::Stream {
            // TCP ignores the address of a send on a connected socket.
            let data = self.read_buffer(buf_ptr, len, STREAM_CHUNK)?;
            return self.send_carrier(t, data, 0, flags);
        }
        let (destination, route) = self.read_inet_address(&t, addr_ptr, addr_len)?;
        let Some(len) = usize::try_from(len).ok().filter(|&l| l <= MAX_DATAGRAM) else {
            return Ok(Answer::Errno(libc::EMSGSIZE));
        };
        let payload = self.read_buffer(buf_ptr, len as u64, MAX_DATAGRAM)?;
        if route == Route::Kernel {
            return self.send_to_kernel(t, payload, destination, flags);
        }
        self.send_datagram(t, payload, destination, flags)
    }

    /// Sends a UDP datagram the supervisor read: bare on a connected socket, behind the
    /// address header on an unconnected one.
    fn send_datagram(
        &self,
        t: Target,
        payload: Vec<u8>,
        destination: SocketAddr,
        flags: u32,
    ) -> Result<Answer, Fail> {
        if t.socket.state().peer.is_some() {
            return self.send_carrier(t, payload, 0, flags);
        }
        match self.decide(PolicyCall::SendTo, t.socket.family, t.socket.kind, Some(destination)) {
            Action::Userspace => {}
            Action::Kernel | Action::Audit => {
                let pending = Pending::Send { destination, payload, flags };
                return self.to_kernel(&t, pending);
            }
            Action::Deny { errno } => return Ok(Answer::Errno(errno)),
        }
        let Some(remote) = addr::ipv4_of(destination) else {
            return Ok(Answer::Errno(libc::EINVAL));
        };
        let mut framed = Vec::with_capacity(datagram::HEADER_LEN + payload.len());
        framed.extend_from_slice(&datagram::header(remote));
        framed.extend_from_slice(&payload);
        self.send_carrier(t, framed, datagram::HEADER_LEN, flags)
    }

    /// Writes `data` to the carrier for the program (`overhead` bytes of it are the header,
    /// not counted in the result), waiting if the socket blocks and the carrier is full.
    fn send_carrier(
        &self,
        t: Target,
        data: Vec<u8>,
        overhead: usize,
        flags: u32,
    ) -> Result<Answer, Fail> {
        let dontwait = flags & libc::MSG_DONTWAIT as u32 != 0;
        let nosignal = flags & libc::MSG_NOSIGNAL as u32 != 0;
        let carrier = duplicate(&t.dup)?;
        let n = *self.n;
        let send_once = move || {
            let sent = nixsock::send(
                carrier.as_raw_fd(),
                &data,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            );
            match sent {
                Ok(sent) => Ok(Answer::Value(sent.saturating_sub(overhead) as i64)),
                Err(nix::errno::Errno::EPIPE) => {
                    if !nosignal {
                        if let Ok(status) =
                            std::fs::read_to_string(format!("/proc/{}/status", n.tid))
                        {
                            if let Some(tgid) = tgid_of(&status) {
                                sys::signal_thread(tgid, n.tid, libc::SIGPIPE);
                            }
                        }
                    }
                    Err(Fail::Errno(libc::EPIPE))
                }
                Err(errno) => Err(Fail::Errno(errno as i32)),
            }
        };
        if dontwait {
            return send_once();
        }
        self.now_or_wait(t.dup, PollFlags::POLLOUT, false, libc::SO_SNDTIMEO, send_once)
    }

    fn recv_from(
        &self,
        t: Target,
        buf_ptr: u64,
        len: u64,
        flags: u32,
        addr_ptr: u64,
        len_ptr: u64,
    ) -> Result<Answer, Fail> {
        let room = usize::try_from(len).unwrap_or(usize::MAX);
        self.receive_then(t, room, flags, move |call, socket, got| {
            call.n.write(call.listener(), buf_ptr, &got.payload)?;
            match got.from {
                Some(from) => addr::write_to_program(
                    call.n,
                    call.listener(),
                    addr_ptr,
                    len_ptr,
                    socket.family,
                    from,
                )?,
                // Stream sockets report no source address (length 0), as TCP does.
                None if addr_ptr != 0 && len_ptr != 0 => {
                    call.n.write(call.listener(), len_ptr, &0i32.to_ne_bytes())?
                }
                None => {}
            }
            Ok(Answer::Value(got.result_len(flags) as i64))
        })
    }

    /// Takes one read's worth off the carrier (waiting for it if the socket blocks), then
    /// `deliver`s it to the program.
    fn receive_then(
        &self,
        t: Target,
        room: usize,
        flags: u32,
        deliver: impl Fn(&Call<'_>, &StackdSocket, &Received) -> Result<Answer, Fail> + Send + 'static,
    ) -> Result<Answer, Fail> {
        let socket = Arc::clone(&t.socket);
        let carrier = duplicate(&t.dup)?;
        let detached = self.detach();
        let attempt = move || {
            let call = detached.call();
            let got = call.receive(&socket, carrier.as_fd(), room, flags)?;
            deliver(&call, &socket, &got)
        };
        if flags & libc::MSG_DONTWAIT as u32 != 0 {
            return attempt();
        }
        self.now_or_wait(t.dup, PollFlags::POLLIN, false, libc::SO_RCVTIMEO, attempt)
    }

    /// Takes one read's worth off the carrier without blocking (EAGAIN when empty): stream
    /// bytes, a connected socket's bare datagram, or an unconnected socket's datagram with its
    /// source from the header.
    fn receive(
        &self,
        socket: &StackdSocket,
        carrier: BorrowedFd<'_>,
        room: usize,
        flags: u32,
    ) -> Result<Received, Fail> {
        let peek =
            if flags & libc::MSG_PEEK as u32 != 0 { MsgFlags::MSG_PEEK } else { MsgFlags::empty() };
        let recv_flags = MsgFlags::MSG_DONTWAIT | peek;
        let peer = socket.state().peer;
        if socket.kind == SocketKind::Stream {
            let mut buffer = vec![0; room.min(STREAM_CHUNK)];
            let got = nixsock::recv(carrier.as_raw_fd(), &mut buffer, recv_flags)
                .map_err(|e| Fail::Errno(e as i32))?;
            buffer.truncate(got);
            return Ok(Received { full_len: got, payload: buffer, from: None });
        }
        let header = if peer.is_some() { 0 } else { datagram::HEADER_LEN };
        let mut buffer = vec![0; header + MAX_DATAGRAM];
        let got = nixsock::recv(carrier.as_raw_fd(), &mut buffer, recv_flags)
            .map_err(|e| Fail::Errno(e as i32))?;
        buffer.truncate(got);
        let (from, payload) = if peer.is_some() {
            (peer, &buffer[..])
        } else {
            match datagram::split(&buffer) {
                Some((from, payload)) => (Some(SocketAddr::V4(from)), payload),
                None => (None, &buffer[..]),
            }
        };
        let full_len = payload.len();
        let payload = payload[..full_len.min(room)].to_vec();
        Ok(Received { payload, full_len, from })
    }

    fn send_msg(&self, t: Target, msg_ptr: u64, flags: u32) -> Result<Answer, Fail> {
        let header = MsgHdr::read(self.n, self.listener(), msg_ptr)?;
        let unconnected_udp =
            t.socket.kind == SocketKind::Datagram && t.socket.state().peer.is_none();
        if !header.has_name() && !unconnected_udp {
            return Ok(Answer::Continue);
        }
        let iovecs = header.iovecs(self.n, self.listener())?;
        if t.socket.kind == SocketKind::Stream {
            let data = msg::gather(self.n, self.listener(), &iovecs, STREAM_CHUNK)?;
            return self.send_carrier(t, data, 0, flags);
        }
        if msg::total_len(&iovecs)? > MAX_DATAGRAM as u64 {
            return Ok(Answer::Errno(libc::EMSGSIZE));
        }
        if !header.has_name() {
            return Ok(Answer::Errno(libc::EDESTADDRREQ));
        }
        let (destination, route) =
            self.read_inet_address(&t, header.name_ptr, header.name_len as i32)?;
        let payload = msg::gather(self.n, self.listener(), &iovecs, MAX_DATAGRAM)?;
        if route == Route::Kernel {
            return self.send_to_kernel(t, payload, destination, flags);
        }
        self.send_datagram(t, payload, destination, flags)
    }

    fn recv_msg(&self, t: Target, msg_ptr: u64, flags: u32) -> Result<Answer, Fail> {
        let header = MsgHdr::read(self.n, self.listener(), msg_ptr)?;
        let datagram = t.socket.kind == SocketKind::Datagram;
        let connected = t.socket.state().peer.is_some();
        // Stream sockets report no source address, which the carrier gives natively too.
        if !datagram || (connected && header.name_ptr == 0) {
            return Ok(Answer::Continue);
        }
        let iovecs = header.iovecs(self.n, self.listener())?;
        let room = msg::total_len(&iovecs)? as usize;
        self.receive_then(t, room, flags, move |call, socket, got| {
            call.deliver(&header, &iovecs, socket, got, flags)
        })
    }

    /// Writes a received datagram into a msghdr's buffers and name.
    fn deliver(
        &self,
        header: &MsgHdr,
        iovecs: &[(u64, u64)],
        socket: &StackdSocket,
        got: &Received,
        flags: u32,
    ) -> Result<Answer, Fail> {
        msg::scatter(self.n, self.listener(), iovecs, &got.payload)?;
        let mut name_len = 0u32;
        if let (Some(from), true) = (got.from, header.name_ptr != 0) {
            let bytes = SockAddr::Inet(addr::for_program(socket.family, from)).to_bytes();
            let give = (header.name_len as usize).min(bytes.len());
            self.n.write(self.listener(), header.name_ptr, &bytes[..give])?;
            name_len = bytes.len() as u32;
        }
        let truncated = got.payload.len() < got.full_len;
        let msg_flags = if truncated { libc::MSG_TRUNC } else { 0 };
        header.write_results(self.n, self.listener(), name_len, msg_flags)?;
        Ok(Answer::Value(got.result_len(flags) as i64))
    }

    /// sendmmsg/recvmmsg. On TCP and connected UDP the carrier serves them natively; on an
    /// unconnected UDP socket each message is served here, without waiting after the first.
    fn mmsg(
        &self,
        t: Target,
        vec_ptr: u64,
        vlen: u32,
        flags: u32,
        direction: Direction,
    ) -> Result<Answer, Fail> {
        let unconnected_udp =
            t.socket.kind == SocketKind::Datagram && t.socket.state().peer.is_none();
        if !unconnected_udp {
            return Ok(Answer::Continue);
        }
        let count = vlen.min(1024);
        let mut done = 0u32;
        let mut first_error = None;
        for i in 0..count {
            let at = vec_ptr + u64::from(i) * msg::MMSGHDR_LEN;
            // Only the first message may wait; the rest take what is there.
            let flags = if i == 0 { flags } else { flags | libc::MSG_DONTWAIT as u32 };
            let dup = duplicate(&t.dup)?;
            let one = Target { fd: t.fd, dup, socket: Arc::clone(&t.socket) };
            let outcome = match direction {
                Direction::Send => self.send_msg(one, at, flags),
                Direction::Receive => self.recv_msg_now(one, at, flags),
            };
            match outcome {
                Ok(Answer::Value(len)) => {
                    self.n.write(
                        self.listener(),
                        at + msg::MMSG_LEN_OFFSET,
                        &(len as u32).to_ne_bytes(),
                    )?;
                    done += 1;
                }
                Ok(other) => return Ok(other),
                Err(Fail::Errno(errno)) => {
                    first_error = Some(errno);
                    break;
                }
                Err(Fail::Gone) => return Err(Fail::Gone),
            }
        }
        Ok(match (done, first_error) {
            (0, Some(errno)) => Answer::Errno(errno),
            (done, _) => Answer::Value(i64::from(done)),
        })
    }

    /// recvmsg for one entry of recvmmsg: never waits on a thread (the batch answers once).
    fn recv_msg_now(&self, t: Target, msg_ptr: u64, flags: u32) -> Result<Answer, Fail> {
        let header = MsgHdr::read(self.n, self.listener(), msg_ptr)?;
        let iovecs = header.iovecs(self.n, self.listener())?;
        let room = msg::total_len(&iovecs)? as usize;
        let got = self.receive(&t.socket, t.dup.as_fd(), room, flags)?;
        self.deliver(&header, &iovecs, &t.socket, &got, flags)
    }

    fn read_buffer(&self, ptr: u64, len: u64, max: usize) -> Result<Vec<u8>, Fail> {
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(max);
        let mut data = vec![0; len];
        self.n.read_into(self.listener(), ptr, &mut data)?;
        Ok(data)
    }

    // ---- the kernel fallback ----

    /// Replaces the program's descriptor with a kernel socket of the same family and type
    /// (with the options set so far), releases the stackd socket, and lets the kernel run the
    /// call on the new socket.
    fn to_kernel(&self, t: &Target, pending: Pending) -> Result<Answer, Fail> {
        let (domain, ty) = match (t.socket.family, t.socket.kind) {
            (Family::Inet, SocketKind::Stream) => {
                (nixsock::AddressFamily::Inet, nixsock::SockType::Stream)
            }
            (Family::Inet, SocketKind::Datagram) => {
                (nixsock::AddressFamily::Inet, nixsock::SockType::Datagram)
            }
            (Family::Inet6, SocketKind::Stream) => {
                (nixsock::AddressFamily::Inet6, nixsock::SockType::Stream)
            }
            (Family::Inet6, SocketKind::Datagram) => {
                (nixsock::AddressFamily::Inet6, nixsock::SockType::Datagram)
            }
        };
        let mut flags = nixsock::SockFlag::SOCK_CLOEXEC;
        if is_nonblocking(t.dup.as_fd()) {
            flags |= nixsock::SockFlag::SOCK_NONBLOCK;
        }
        let kernel = nixsock::socket(domain, ty, flags, None).map_err(|e| Fail::Errno(e as i32))?;
        for option in &t.socket.state().options {
            if let Err(error) =
                sys::set_raw_option(kernel.as_fd(), option.level, option.name, &option.value)
            {
                tracing::debug!(%error, level = option.level, name = option.name, "option not carried to the kernel socket");
            }
        }
        let cloexec = target_cloexec(self.n.tid, t.fd);
        self.listener().add_fd(
            self.n.id,
            kernel.as_fd(),
            AddFd { cloexec, target_fd: Some(t.fd), send: false },
        )?;
        let session = &self.supervisor.session;
        if let Ok(cookie) = sys::socket_cookie(t.dup.as_fd()) {
            session.forget(cookie);
        }
        let token = t.socket.token;
        let _ = session.with_client(|client| client.close(token));
        tracing::debug!(fd = t.fd, tid = self.n.tid, "socket moved to the kernel");
        self.in_kernel(kernel, pending)
    }

    /// Lets the kernel run a call on a kernel socket. Without deny rules, CONTINUE does. With
    /// them, CONTINUE is no enforcement — the kernel would read the address again, after the
    /// program's other threads could have changed it — so the supervisor performs the call on
    /// the copy the policy judged, on its own descriptor of the socket.
    fn in_kernel(&self, socket: OwnedFd, pending: Pending) -> Result<Answer, Fail> {
        if !self.supervisor.policy.has_deny_rules() {
            return Ok(Answer::Continue);
        }
        let outcome = |result: nix::Result<usize>| match result {
            Ok(n) => Ok(Answer::Value(n as i64)),
            Err(errno) => Ok(Answer::Errno(errno as i32)),
        };
        match pending {
            Pending::Nothing => Ok(Answer::Continue),
            Pending::Bind(local) => outcome(
                nixsock::bind(socket.as_raw_fd(), &SockaddrStorage::from(local)).map(|()| 0),
            ),
            Pending::Send { destination, payload, flags } => outcome(nixsock::sendto(
                socket.as_raw_fd(),
                &payload,
                &SockaddrStorage::from(destination),
                MsgFlags::from_bits_truncate(flags as i32) | MsgFlags::MSG_NOSIGNAL,
            )),
            Pending::Connect(peer) if is_nonblocking(socket.as_fd()) => outcome(
                nixsock::connect(socket.as_raw_fd(), &SockaddrStorage::from(peer)).map(|()| 0),
            ),
            Pending::Connect(peer) => {
                // A blocking connect blocks a thread of its own, as the program's would.
                let listener = Arc::clone(self.listener);
                let n = *self.n;
                let spawned = std::thread::Builder::new().name("connect".into()).spawn(move || {
                    let result = nixsock::connect(socket.as_raw_fd(), &SockaddrStorage::from(peer));
                    let answer = match result {
                        Ok(()) => Answer::Value(0),
                        Err(errno) => Answer::Errno(errno as i32),
                    };
                    crate::serve::finish(&listener, &n, Ok(answer));
                });
                match spawned {
                    Ok(_) => Ok(Answer::Answered),
                    Err(_) => Ok(Answer::Errno(libc::EAGAIN)),
                }
            }
        }
    }

    /// connect, bind, sendto or sendmsg with an address on a *kernel* inet socket. Only a
    /// policy with deny rules has a say: it judges the supervisor's copy of the address, and
    /// the supervisor performs the call (see [`Call::in_kernel`]).
    fn on_kernel_socket(
        &self,
        dup: OwnedFd,
        call: PolicyCall,
        addr_ptr: u64,
        addr_len: i32,
        send: Option<(u64, u64, u32)>,
    ) -> Result<Answer, Fail> {
        if !self.supervisor.policy.has_deny_rules() || addr_ptr == 0 {
            return Ok(Answer::Continue);
        }
        let family = match sys::socket_domain(dup.as_fd()) {
            Ok(libc::AF_INET) => Family::Inet,
            Ok(libc::AF_INET6) => Family::Inet6,
            _ => return Ok(Answer::Continue),
        };
        let kind = match nixsock::getsockopt(&dup, nixsock::sockopt::SockType) {
            Ok(nixsock::SockType::Stream) => SocketKind::Stream,
            Ok(nixsock::SockType::Datagram) => SocketKind::Datagram,
            _ => return Ok(Answer::Continue),
        };
        let SockAddr::Inet(destination) =
            self.n.read_sockaddr(self.listener(), addr_ptr, addr_len)?
        else {
            return Ok(Answer::Continue);
        };
        if let Action::Deny { errno } = self.decide(call, family, kind, Some(destination)) {
            return Ok(Answer::Errno(errno));
        }
        let pending = match (call, send) {
            (PolicyCall::Connect, _) => Pending::Connect(destination),
            (PolicyCall::Bind, _) => Pending::Bind(destination),
            (_, Some((buf_ptr, len, flags))) => {
                let payload = self.read_buffer(buf_ptr, len, MAX_DATAGRAM)?;
                Pending::Send { destination, payload, flags }
            }
            _ => Pending::Nothing,
        };
        self.in_kernel(dup, pending)
    }
}

/// Takes the bytes waiting on a listener's doorbell; returns how many.
fn drain_doorbell(doorbell: BorrowedFd<'_>) -> usize {
    let mut bells = [0u8; 64];
    let mut drained = 0;
    while let Ok(n @ 1..) = nixsock::recv(doorbell.as_raw_fd(), &mut bells, MsgFlags::MSG_DONTWAIT)
    {
        drained += n;
    }
    drained
}

/// The outcome of a connect whose carrier turned writable: SO_ERROR.
fn connect_outcome(supervisor: &Supervisor, token: stackd::proto::Token) -> Result<Answer, Fail> {
    match supervisor.session.with_client(|client| client.get_option(token, OptionName::Error))? {
        OptionValue::Int(0) => Ok(Answer::Value(0)),
        OptionValue::Int(errno) => Ok(Answer::Errno(i32::try_from(errno).unwrap_or(libc::EIO))),
        _ => Ok(Answer::Errno(libc::EIO)),
    }
}

/// A request's outcome as the call's: 0 or the errno.
fn answer<T>(result: Result<T, stackd::client::ClientError>) -> Answer {
    match result {
        Ok(_) => Answer::Value(0),
        Err(error) => Answer::Errno(error.errno()),
    }
}

/// Options that belong to the carrier itself, which the kernel applies natively to it.
fn carrier_option(level: i32, name: i32) -> bool {
    level == libc::SOL_SOCKET
        && matches!(
            name,
            libc::SO_RCVTIMEO
                | libc::SO_SNDTIMEO
                | libc::SO_RCVTIMEO_NEW
                | libc::SO_SNDTIMEO_NEW
                | libc::SO_RCVLOWAT
                | libc::SO_SNDLOWAT
        )
}

/// How an option's value is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Int,
    Linger,
    Text,
    ReadOnly,
}

/// The daemon's name for a socket option it serves.
fn option_of(level: i32, name: i32) -> Option<(OptionName, Shape)> {
    use Shape::*;
    Some(match (level, name) {
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => (OptionName::ReuseAddr, Int),
        (libc::SOL_SOCKET, libc::SO_REUSEPORT) => (OptionName::ReusePort, Int),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => (OptionName::KeepAlive, Int),
        (libc::SOL_SOCKET, libc::SO_SNDBUF) => (OptionName::SendBuffer, Int),
        (libc::SOL_SOCKET, libc::SO_RCVBUF) => (OptionName::RecvBuffer, Int),
        (libc::SOL_SOCKET, libc::SO_LINGER) => (OptionName::Linger, Linger),
        (libc::SOL_SOCKET, libc::SO_BROADCAST) => (OptionName::Broadcast, Int),
        (libc::SOL_SOCKET, libc::SO_ERROR) => (OptionName::Error, ReadOnly),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => (OptionName::NoDelay, Int),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => (OptionName::KeepIdle, Int),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => (OptionName::KeepInterval, Int),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => (OptionName::KeepCount, Int),
        (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => (OptionName::MaxSegment, Int),
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => (OptionName::UserTimeout, Int),
        (libc::IPPROTO_TCP, libc::TCP_CONGESTION) => (OptionName::Congestion, Text),
        (libc::IPPROTO_TCP, libc::TCP_INFO) => (OptionName::TcpInfo, ReadOnly),
        (libc::IPPROTO_IP, libc::IP_TTL) => (OptionName::Ttl, Int),
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS) => (OptionName::Ttl, Int),
        (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => (OptionName::V6Only, Int),
        _ => return None,
    })
}

/// An option's value as getsockopt writes it.
fn option_bytes(value: &OptionValue) -> Vec<u8> {
    match value {
        OptionValue::Int(v) => (*v as i32).to_ne_bytes().to_vec(),
        OptionValue::Linger(linger) => {
            let (on, secs) = match linger {
                Some(secs) => (1i32, *secs as i32),
                None => (0, 0),
            };
            [on.to_ne_bytes(), secs.to_ne_bytes()].concat()
        }
        OptionValue::Text(text) => {
            let mut bytes = text.as_bytes().to_vec();
            bytes.push(0);
            bytes
        }
        OptionValue::TcpInfo(info) => tcp_info_bytes(info),
    }
}

/// `struct tcp_info` in Linux's layout, with the fields the engine reports; the rest zero.
fn tcp_info_bytes(info: &stackd::proto::TcpInfoReport) -> Vec<u8> {
    let mut bytes = vec![0u8; TCP_INFO_LEN];
    bytes[0] = info.state;
    let mut put32 = |offset: usize, value: u64| {
        let value = u32::try_from(value).unwrap_or(u32::MAX);
        bytes[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    };
    put32(8, info.rto_us);
    put32(16, u64::from(info.snd_mss));
    put32(20, u64::from(info.rcv_mss));
    put32(24, u64::from(info.unacked));
    put32(68, info.rtt_us);
    put32(72, info.rttvar_us);
    put32(76, u64::from(info.snd_ssthresh));
    put32(80, u64::from(info.snd_cwnd));
    put32(100, u64::from(info.total_retrans));
    bytes[120..128].copy_from_slice(&info.bytes_acked.to_ne_bytes());
    bytes[128..136].copy_from_slice(&info.bytes_received.to_ne_bytes());
    bytes
}

/// AF_INET or AF_INET6.
fn domain_of(family: Family) -> i32 {
    match family {
        Family::Inet => libc::AF_INET,
        Family::Inet6 => libc::AF_INET6,
    }
}

/// SOCK_STREAM or SOCK_DGRAM.
fn type_of(kind: SocketKind) -> i32 {
    match kind {
        SocketKind::Stream => libc::SOCK_STREAM,
        SocketKind::Datagram => libc::SOCK_DGRAM,
    }
}

/// A second descriptor of the socket, for a closure that outlives this call's stack.
fn duplicate(fd: &OwnedFd) -> Result<OwnedFd, Fail> {
    fd.try_clone().map_err(|_| Fail::Errno(libc::EMFILE))
}

fn is_nonblocking(fd: BorrowedFd<'_>) -> bool {
    fcntl(fd, FcntlArg::F_GETFL)
        .is_ok_and(|flags| OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK))
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Fail> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Fail::Errno(e as i32))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Fail::Errno(e as i32))?;
    Ok(())
}

/// When a wait bounded by the carrier's `option` (SO_RCVTIMEO/SO_SNDTIMEO) gives up.
fn deadline_of(carrier: BorrowedFd<'_>, option: i32, errno: i32) -> Option<(Instant, i32)> {
    sys::timeout_option(carrier, option)
        .ok()
        .flatten()
        .map(|timeout| (Instant::now() + timeout, errno))
}

/// Whether descriptor `fd` of thread `tid` has FD_CLOEXEC (from /proc/TID/fdinfo/FD).
fn target_cloexec(tid: u32, fd: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}"))
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("flags:"))
                .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
        })
        .is_some_and(|flags| flags & libc::O_CLOEXEC as u32 != 0)
}

fn tgid_of(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_info_layout_puts_fields_where_linux_has_them() {
        let info = stackd::proto::TcpInfoReport {
            state: 1,
            rto_us: 204_000,
            rtt_us: 1500,
            rttvar_us: 700,
            snd_mss: 1448,
            rcv_mss: 1448,
            snd_cwnd: 10,
            snd_ssthresh: 0,
            unacked: 2,
            total_retrans: 3,
            bytes_acked: 1 << 33,
            bytes_received: 12345,
        };
        let bytes = tcp_info_bytes(&info);
        let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
        assert_eq!(bytes.len(), TCP_INFO_LEN);
        assert_eq!(bytes[0], 1);
        assert_eq!(u32_at(8), 204_000);
        assert_eq!(u32_at(16), 1448);
        assert_eq!(u32_at(68), 1500);
        assert_eq!(u32_at(80), 10);
        assert_eq!(u32_at(100), 3);
        assert_eq!(u64::from_ne_bytes(bytes[120..128].try_into().unwrap()), 1 << 33);
    }

    #[test]
    fn options_the_carrier_keeps_and_options_the_daemon_serves() {
        assert!(carrier_option(libc::SOL_SOCKET, libc::SO_RCVTIMEO));
        assert!(!carrier_option(libc::IPPROTO_TCP, libc::SO_RCVTIMEO));
        assert_eq!(
            option_of(libc::IPPROTO_TCP, libc::TCP_NODELAY),
            Some((OptionName::NoDelay, Shape::Int))
        );
        assert_eq!(option_of(libc::IPPROTO_IP, libc::IP_TOS), None);
        assert_eq!(option_bytes(&OptionValue::Linger(Some(5))), [1, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(option_bytes(&OptionValue::Text("cubic".into())), b"cubic\0");
    }

    #[test]
    fn tgid_from_proc_status() {
        assert_eq!(tgid_of("Name:\tx\nTgid:\t4242\nPid:\t4243\n"), Some(4242));
        assert_eq!(tgid_of("Name:\tx\n"), None);
    }
}
