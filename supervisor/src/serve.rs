//! The serving loop: takes notifications from one listener and answers each, whatever
//! launched the target (`joyride run`'s own child, or a container runtime's).
//!
//! Calls that finish at once are answered on the loop's thread. A call that must wait — a
//! blocking accept with no connection yet, a blocking connect during the handshake, a blocking
//! receive with nothing queued — moves to a thread of its own that waits on the socket's
//! carrier, so one target thread's wait never delays another's calls (the issue's "serves
//! notifications concurrently"). A waiting thread checks every [`WAIT_SLICE`] that its call is
//! still pending: a target interrupted by a signal has left the call, and nothing is done for
//! it (DESIGN.md: no reply for a dead notification, no leaked socket).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use trap::{Listener, NotifError, Notification, Readiness};

use crate::calls;
use crate::session::Session;

/// How often a waiting call checks that its target is still waiting.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Everything the loop needs to serve one session's targets.
#[derive(Debug)]
pub struct Supervisor {
    /// The stackd session of the target tree.
    pub session: Session,
    /// Where sockets go.
    pub policy: policies::Policy,
    /// The network namespace the targets live in, when it is not the supervisor's own (a
    /// container's): sockets moved to the kernel must be made there, or a container would
    /// reach the host's loopback services.
    netns: Option<OwnedFd>,
    /// Where calls a policy marks `audit` are logged.
    audit_log: crate::audit::AuditLog,
    waiting: AtomicUsize,
}

impl Supervisor {
    /// A supervisor for `session` under `policy`.
    pub fn new(session: Session, policy: policies::Policy) -> Supervisor {
        Supervisor {
            session,
            policy,
            netns: None,
            audit_log: crate::audit::AuditLog::to_stderr(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Makes kernel sockets in the network namespace `netns` (an open `/proc/PID/ns/net`).
    pub fn in_netns(mut self, netns: OwnedFd) -> Supervisor {
        self.netns = Some(netns);
        self
    }

    /// A kernel socket for the targets, made in their network namespace.
    pub fn kernel_socket(
        &self,
        family: AddressFamily,
        ty: SockType,
        flags: SockFlag,
    ) -> nix::Result<OwnedFd> {
        let Some(netns) = &self.netns else {
            return nix::sys::socket::socket(family, ty, flags, None);
        };
        // setns changes the calling thread for good: a thread of its own enters the namespace,
        // makes the socket (which stays in the namespace it was made in) and ends.
        let netns = netns.try_clone().map_err(|_| nix::errno::Errno::EMFILE)?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                    nix::sys::socket::socket(family, ty, flags, None)
                })
                .join()
                .unwrap_or(Err(nix::errno::Errno::EIO))
        })
    }

    /// Logs a call a policy rule marked `audit` (it proceeds in the kernel) as `joyride audit`
    /// would, one JSON line on standard error with the decision "audit". `socket` is the
    /// (domain, type) the program asked for: its descriptor may still be a carrier.
    pub fn audited(
        &self,
        listener: &Listener,
        notification: &Notification,
        socket: (i32, i32),
        rule: Option<&str>,
    ) {
        let time = crate::audit::rfc3339_micros(std::time::SystemTime::now());
        match crate::audit::record_call(listener, notification, time) {
            Ok((_, mut record)) => {
                record.decision = crate::audit::Decision::Audit;
                record.args.insert("family".into(), crate::audit::family_name(socket.0));
                record.args.insert("type".into(), crate::audit::type_name(socket.1));
                tracing::debug!(rule = rule.unwrap_or("default"), "audit rule");
                self.audit_log.record(&record);
            }
            Err(error) => tracing::debug!(%error, "an audited call could not be described"),
        }
    }

    /// Calls waiting on threads of their own right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// How a call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The kernel runs it (not one of ours, or moved to the kernel).
    Continue,
    /// It returns this value.
    Value(i64),
    /// It fails with this errno.
    Errno(i32),
    /// Already answered (a descriptor installed with SEND), or handed to a waiting thread.
    Answered,
}

/// Why a call could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// The target left the call: nobody to answer.
    Gone,
    /// The target sees this errno.
    Errno(i32),
}

impl From<NotifError> for Fail {
    fn from(error: NotifError) -> Fail {
        match error.errno() {
            None => Fail::Gone,
            Some(errno) => Fail::Errno(errno),
        }
    }
}

impl From<stackd::client::ClientError> for Fail {
    fn from(error: stackd::client::ClientError) -> Fail {
        Fail::Errno(error.errno())
    }
}

/// Serves `listener` until every process using its filter has exited.
pub fn serve(listener: Arc<Listener>, supervisor: Arc<Supervisor>) -> io::Result<()> {
    if let Err(error) = listener.set_sync_wakeup() {
        tracing::debug!(%error, "no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux < 6.6)");
    }
    loop {
        match listener.wait_readable(None)? {
            Readiness::Hangup => return Ok(()),
            Readiness::TimedOut => continue,
            Readiness::Readable => {}
        }
        let notification = match listener.receive() {
            Ok(notification) => notification,
            Err(error) if error.is_gone() => continue,
            Err(error) => return Err(io::Error::other(error)),
        };
        let outcome = calls::handle(&supervisor, &listener, &notification);
        finish(&listener, &notification, outcome);
    }
}

/// Answers `notification` with `outcome`.
pub fn finish(listener: &Listener, notification: &Notification, outcome: Result<Answer, Fail>) {
    let id = notification.id;
    let sent = match outcome {
        Ok(Answer::Continue) => listener.respond_continue(id),
        Ok(Answer::Value(value)) => listener.respond_value(id, value),
        Ok(Answer::Errno(errno)) | Err(Fail::Errno(errno)) => listener.respond_errno(id, errno),
        Ok(Answer::Answered) | Err(Fail::Gone) => Ok(()),
    };
    match sent {
        Ok(()) => {}
        Err(error) if error.is_gone() => {
            tracing::debug!(tid = notification.tid, "target left the call before its answer")
        }
        Err(error) => tracing::warn!(%error, "cannot answer a notification"),
    }
}

/// A call that waits for its socket's carrier to become ready.
pub struct Wait {
    /// The supervisor's duplicate of the carrier.
    pub carrier: OwnedFd,
    /// What to wait for (POLLIN, POLLOUT).
    pub events: PollFlags,
    /// Wake only one of the threads that wait on the same socket (EPOLLEXCLUSIVE), for a call
    /// that one event satisfies once: accept, where one connection is for one waiter and the
    /// daemon rings the listener again while more wait. A thousand threads blocked in accept
    /// then cost one wake-up per connection instead of a thousand.
    pub exclusive: bool,
    /// When to give up (SO_RCVTIMEO/SO_SNDTIMEO), and the errno then.
    pub deadline: Option<(Instant, i32)>,
    /// Tries the call once more; `Err(Fail::Errno(EAGAIN))` means "not yet".
    pub attempt: Box<dyn FnMut() -> Result<Answer, Fail> + Send>,
}

impl std::fmt::Debug for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wait").field("events", &self.events).finish_non_exhaustive()
    }
}

/// Hands a waiting call to a thread of its own; the thread answers it.
pub fn defer(
    supervisor: &Arc<Supervisor>,
    listener: &Arc<Listener>,
    notification: Notification,
    wait: Wait,
) -> Result<Answer, Fail> {
    let supervisor = Arc::clone(supervisor);
    let listener = Arc::clone(listener);
    supervisor.waiting.fetch_add(1, Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name(format!("wait-{}", notification.tid))
        .stack_size(256 * 1024)
        .spawn({
            let supervisor = Arc::clone(&supervisor);
            move || {
                let outcome = wait_and_attempt(&listener, &notification, wait);
                finish(&listener, &notification, outcome);
                supervisor.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        });
    match spawned {
        Ok(_) => Ok(Answer::Answered),
        Err(_) => {
            supervisor.waiting.fetch_sub(1, Ordering::Relaxed);
            Err(Fail::Errno(libc::EAGAIN))
        }
    }
}

/// An epoll instance of the waiting thread's own that watches its carrier with EPOLLEXCLUSIVE:
/// of the threads waiting on one socket so, the kernel wakes one per event.
fn exclusive_poller(wait: &Wait) -> Result<Epoll, Fail> {
    let errno = |e: nix::errno::Errno| Fail::Errno(e as i32);
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(errno)?;
    let mut flags = EpollFlags::EPOLLEXCLUSIVE;
    if wait.events.contains(PollFlags::POLLIN) {
        flags |= EpollFlags::EPOLLIN;
    }
    if wait.events.contains(PollFlags::POLLOUT) {
        flags |= EpollFlags::EPOLLOUT;
    }
    epoll.add(wait.carrier.as_fd(), EpollEvent::new(flags, 0)).map_err(errno)?;
    Ok(epoll)
}

fn wait_and_attempt(
    listener: &Listener,
    notification: &Notification,
    mut wait: Wait,
) -> Result<Answer, Fail> {
    let exclusive = if wait.exclusive { Some(exclusive_poller(&wait)?) } else { None };
    loop {
        let mut slice = WAIT_SLICE;
        if let Some((deadline, errno)) = wait.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Fail::Errno(errno));
            }
            slice = slice.min(left);
        }
        let millis = u16::try_from(slice.as_millis()).unwrap_or(u16::MAX).max(1);
        // Whether the carrier is ready, and whether only with an error or hang-up.
        let waited = match &exclusive {
            Some(epoll) => {
                let mut events = [EpollEvent::empty()];
                let bad = EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
                epoll
                    .wait(&mut events, EpollTimeout::from(millis))
                    .map(|n| (n > 0, n > 0 && events[0].events().intersects(bad)))
            }
            None => {
                let mut fds = [PollFd::new(wait.carrier.as_fd(), wait.events)];
                let bad = PollFlags::POLLHUP | PollFlags::POLLERR;
                nix::poll::poll(&mut fds, PollTimeout::from(millis))
                    .map(|n| (n > 0, fds[0].revents().is_some_and(|r| r.intersects(bad))))
            }
        };
        let (ready, failed) = match waited {
            Ok(outcome) => outcome,
            Err(nix::errno::Errno::EINTR) => (false, false),
            Err(errno) => return Err(Fail::Errno(errno as i32)),
        };
        // A target that left the call (a signal) must not have data taken off its socket or
        // a connection accepted for it: check before every attempt.
        if !notification.is_valid(listener).unwrap_or(false) {
            return Err(Fail::Gone);
        }
        if ready {
            match (wait.attempt)() {
                Err(Fail::Errno(libc::EAGAIN)) => {
                    // Ready but not for us (another thread took it, or only an error/hang-up
                    // the call does not report): do not spin on it.
                    if failed {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                other => return other,
            }
        }
    }
}
