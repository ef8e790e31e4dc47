//! The listener: installing the filter, receiving notifications, reading the target's memory
//! safely, and answering.
//!
//! The life of one notification: [`Listener::wait_readable`] (RECV itself ignores O_NONBLOCK,
//! so a supervisor that must stay responsive polls first), [`Listener::receive`], decode with
//! [`Notification::syscall`], read pointer arguments with [`Notification::read`] (which checks
//! afterwards that the notification is still pending), then exactly one answer:
//! [`Listener::respond_continue`], [`Listener::respond_value`], [`Listener::respond_errno`] or
//! [`Listener::add_fd`] with `send`.
//!
//! [`NotifError::Gone`] at any step means the target left the call (a signal interrupted it,
//! or it died): there is nobody to answer, and whatever the supervisor made for the call must
//! be rolled back. It is routine, not a failure to log loudly.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::filter::Filter;
use crate::memory::{self, MemoryError};
use crate::sockaddr::{SockAddr, SockAddrError, MAX_SOCKADDR_LEN};
use crate::sys;
use crate::syscall::Syscall;

/// The most bytes one [`Notification::read`] copies: the structures a supervisor reads (socket
/// addresses, msghdr, iovec arrays, option values) are far smaller, and a bound keeps a garbage
/// length from the target from becoming a huge allocation.
pub const MAX_READ: usize = 64 * 1024;

/// How to install the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallOptions {
    /// Set no_new_privs first (required unless the caller has CAP_SYS_ADMIN; it also stops
    /// set-user-ID programs from gaining privileges under the filter).
    pub no_new_privs: bool,
    /// Apply the filter to every thread of the process, not just the calling one (TSYNC; the
    /// kernel then also needs TSYNC_ESRCH, which this adds).
    pub all_threads: bool,
}

impl Default for InstallOptions {
    fn default() -> InstallOptions {
        InstallOptions { no_new_privs: true, all_threads: false }
    }
}

/// Why the filter could not be installed. Holds only an errno so that it can be made between
/// fork and exec, where nothing may allocate.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum InstallError {
    /// prctl(PR_SET_NO_NEW_PRIVS) failed.
    #[error("could not set no_new_privs: {}", io::Error::from_raw_os_error(*errno))]
    NoNewPrivs {
        /// The errno.
        errno: i32,
    },
    /// seccomp(SECCOMP_SET_MODE_FILTER) failed.
    #[error("could not install the seccomp filter: {}{}", io::Error::from_raw_os_error(*errno), install_hint(*errno))]
    Seccomp {
        /// The errno.
        errno: i32,
    },
}

fn install_hint(errno: i32) -> &'static str {
    match errno {
        libc::EBUSY => {
            " (the process already has a seccomp listener, e.g. it runs under another seccomp agent or a container runtime's; a filter chain supports only one)"
        }
        libc::EACCES => " (set no_new_privs or run with CAP_SYS_ADMIN)",
        libc::EINVAL => " (the kernel lacks seccomp user notification: Linux >= 5.5 is needed)",
        libc::ESRCH => " (another thread of the process has a conflicting filter)",
        _ => "",
    }
}

impl InstallError {
    /// The errno, e.g. to return from a `pre_exec` hook.
    pub fn errno(&self) -> i32 {
        match *self {
            InstallError::NoNewPrivs { errno } | InstallError::Seccomp { errno } => errno,
        }
    }
}

impl From<InstallError> for io::Error {
    fn from(e: InstallError) -> io::Error {
        io::Error::from_raw_os_error(e.errno())
    }
}

/// Installs `filter` on the calling thread (every thread with `all_threads`) and returns the
/// listener for its notifications.
///
/// Async-signal-safe: allocates nothing and makes two system calls, so it may run in a forked
/// child before exec (build the [`Filter`] before forking). Such a child must not make a call
/// the filter notifies before the listener is in the supervisor's hands, or it waits on itself
/// forever: see [`mod@crate::spawn`] for the hand-over.
pub fn install_listener(filter: &Filter, options: InstallOptions) -> Result<OwnedFd, InstallError> {
    if options.no_new_privs {
        sys::set_no_new_privs()
            .map_err(|e| InstallError::NoNewPrivs { errno: e.raw_os_error().unwrap_or(0) })?;
    }
    let mut flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    if options.all_threads {
        flags |= libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    }
    sys::seccomp_set_filter(filter.instructions(), flags)
        .map_err(|e| InstallError::Seccomp { errno: e.raw_os_error().unwrap_or(0) })
}

/// The sizes of the notification structures, as the running kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifSizes {
    /// `struct seccomp_notif`.
    pub notif: u16,
    /// `struct seccomp_notif_resp`.
    pub resp: u16,
    /// `struct seccomp_data`.
    pub data: u16,
}

/// seccomp(SECCOMP_GET_NOTIF_SIZES). This crate's structures match Linux 5.5 through 6.18
/// (a unit test compares them with the running kernel's).
pub fn notif_sizes() -> io::Result<NotifSizes> {
    let s = sys::seccomp_notif_sizes()?;
    Ok(NotifSizes { notif: s.seccomp_notif, resp: s.seccomp_notif_resp, data: s.seccomp_data })
}

/// Why an operation on a notification did not complete.
#[derive(Debug, Error)]
pub enum NotifError {
    /// The notification is no longer pending: the target was interrupted by a signal (it will
    /// see EINTR, or be notified again with SA_RESTART) or died. Nobody is waiting for an
    /// answer; roll back what was made for the call.
    #[error("the target left the system call (interrupted or dead)")]
    Gone,
    /// A pointer the target passed does not cover mapped memory: answer EFAULT.
    #[error("{len} bytes at {addr:#x} are not mapped in the target (EFAULT)")]
    Fault {
        /// The address.
        addr: u64,
        /// The length.
        len: usize,
    },
    /// A length the target passed is negative or larger than the call allows: answer EINVAL.
    #[error("length {len} is out of range (at most {max} bytes)")]
    BadLength {
        /// The length the target passed.
        len: i64,
        /// The most this read allows.
        max: usize,
    },
    /// The target passed a socket address the kernel would refuse: answer EINVAL.
    #[error("bad socket address: {0}")]
    SockAddr(#[from] SockAddrError),
    /// The call names a descriptor the target does not have open: answer EBADF.
    #[error("descriptor {fd} is not open in the target (EBADF)")]
    BadDescriptor {
        /// The number the target passed.
        fd: i32,
    },
    /// A system call of the supervisor's failed.
    #[error("{op} failed: {source}")]
    Io {
        /// What failed (e.g. "SECCOMP_IOCTL_NOTIF_ADDFD").
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl NotifError {
    /// Whether the target left the call (see [`NotifError::Gone`]).
    pub fn is_gone(&self) -> bool {
        matches!(self, NotifError::Gone)
    }

    /// The errno to answer the target with when the call cannot go on; `None` for
    /// [`NotifError::Gone`], which has nobody to answer.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NotifError::Gone => None,
            NotifError::Fault { .. } => Some(libc::EFAULT),
            NotifError::BadLength { .. } => Some(libc::EINVAL),
            NotifError::SockAddr(e) => Some(e.errno()),
            NotifError::BadDescriptor { .. } => Some(libc::EBADF),
            NotifError::Io { source, .. } => Some(source.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn io(op: &'static str, source: io::Error) -> NotifError {
        if source.raw_os_error() == Some(libc::ENOENT) {
            NotifError::Gone
        } else {
            NotifError::Io { op, source }
        }
    }
}

/// What [`Listener::wait_readable`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// A notification is pending: [`Listener::receive`] will not block (unless the target
    /// leaves the call first, which receive reports as [`NotifError::Gone`]).
    Readable,
    /// Every process that used the filter has exited: no notification will ever come.
    Hangup,
    /// The timeout passed.
    TimedOut,
}

/// How [`Listener::add_fd`] installs a descriptor in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddFd {
    /// Give the new descriptor FD_CLOEXEC (as SOCK_CLOEXEC or accept4's flag ask).
    pub cloexec: bool,
    /// Install at this number, replacing whatever the target had there (SETFD, as dup2 does);
    /// `None` takes the lowest free number.
    pub target_fd: Option<i32>,
    /// Make the new number the call's result and answer the notification, atomically (SEND).
    /// Without it the notification stays pending and still needs an answer.
    pub send: bool,
}

/// One notification: a target thread blocked in a system call the filter sent here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// The kernel's cookie for this call; valid until answered or abandoned.
    pub id: u64,
    /// The *thread* id of the caller (the kernel's `pid` field), in the listener's pid
    /// namespace. Resolve the process with [`Notification::tgid`] before keying anything
    /// per-process on it.
    pub tid: u32,
    /// The system call number.
    pub nr: i32,
    /// The `AUDIT_ARCH_*` value (always x86_64 under this crate's filters).
    pub arch: u32,
    /// The address after the `syscall` instruction.
    pub instruction_pointer: u64,
    /// The raw arguments.
    pub args: [u64; 6],
}

impl Notification {
    fn from_raw(n: &sys::seccomp_notif) -> Notification {
        Notification {
            id: n.id,
            tid: n.pid,
            nr: n.data.nr,
            arch: n.data.arch,
            instruction_pointer: n.data.instruction_pointer,
            args: n.data.args,
        }
    }

    /// The call, decoded.
    pub fn syscall(&self) -> Syscall {
        if self.arch != sys::AUDIT_ARCH_X86_64 {
            return Syscall::Other { nr: self.nr };
        }
        Syscall::decode(self.nr, self.args)
    }

    /// Reads `len` bytes (at most [`MAX_READ`]) at `addr` in the target, then checks that the
    /// notification is still pending — so that the bytes came from the process that made the
    /// call and not from a stranger that reused its pid.
    ///
    /// The bytes are a snapshot: the target's other threads may change them afterwards, so a
    /// decision made on them must be carried out on this copy (never by answering CONTINUE).
    pub fn read(&self, listener: &Listener, addr: u64, len: usize) -> Result<Vec<u8>, NotifError> {
        if len > MAX_READ {
            return Err(NotifError::BadLength { len: len as i64, max: MAX_READ });
        }
        let mut buf = vec![0u8; len];
        self.read_into(listener, addr, &mut buf)?;
        Ok(buf)
    }

    /// As [`Notification::read`], into `buf`.
    pub fn read_into(
        &self,
        listener: &Listener,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<(), NotifError> {
        let read = memory::read_memory_into(self.tid, addr, buf);
        // Checked whatever the read gave: a fault in a process that is no longer the target
        // is not the target's fault.
        listener.check_valid(self.id)?;
        read.map_err(memory_error)
    }

    /// Reads a socket address of `len` bytes at `addr`, with the kernel's checks: a length
    /// below 0 or above 128 is [`NotifError::BadLength`], a too-short address for its family
    /// [`NotifError::SockAddr`] (both EINVAL for the target).
    pub fn read_sockaddr(
        &self,
        listener: &Listener,
        addr: u64,
        len: i32,
    ) -> Result<SockAddr, NotifError> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_SOCKADDR_LEN)
            .ok_or(NotifError::BadLength { len: i64::from(len), max: MAX_SOCKADDR_LEN })?;
        let mut buf = [0u8; MAX_SOCKADDR_LEN];
        self.read_into(listener, addr, &mut buf[..len])?;
        Ok(SockAddr::parse(&buf[..len])?)
    }

    /// Reads an `int` (a `socklen_t` length, an option value) at `addr`.
    pub fn read_i32(&self, listener: &Listener, addr: u64) -> Result<i32, NotifError> {
        let mut buf = [0u8; 4];
        self.read_into(listener, addr, &mut buf)?;
        Ok(i32::from_ne_bytes(buf))
    }

    /// Writes `data` at `addr` in the target (e.g. the address an accept() returns), after
    /// checking that the notification is still pending.
    ///
    /// The check comes first, since a write into a stranger cannot be undone. What remains is
    /// the window between the check and the write, in which the target would have to die *and*
    /// its pid be reused; the target is blocked in the call, so only a fatal signal can end it.
    pub fn write(&self, listener: &Listener, addr: u64, data: &[u8]) -> Result<(), NotifError> {
        listener.check_valid(self.id)?;
        memory::write_memory(self.tid, addr, data).map_err(memory_error)
    }

    /// Writes several pieces (an address and its length, say) after one validity check, in one
    /// process_vm_writev.
    pub fn write_all(
        &self,
        listener: &Listener,
        pieces: &[(u64, &[u8])],
    ) -> Result<(), NotifError> {
        listener.check_valid(self.id)?;
        memory::write_memory_pieces(self.tid, pieces).map_err(memory_error)
    }

    /// The process (thread-group id) of the calling thread, from `/proc/TID/status`, checked
    /// against the notification afterwards like a read.
    pub fn tgid(&self, listener: &Listener) -> Result<u32, NotifError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.tid));
        listener.check_valid(self.id)?;
        let status = status.map_err(|e| NotifError::io("read /proc/TID/status", e))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| NotifError::Io {
                op: "parse /proc/TID/status",
                source: io::Error::new(io::ErrorKind::InvalidData, "no Tgid line"),
            })
    }

    /// A duplicate, in the supervisor, of the calling thread's descriptor `fd` (close-on-exec):
    /// the open file itself, whatever number the target gives it — the way to know which socket
    /// a call names when dup, dup2 and fork are not trapped (DESIGN.md, "Identity of a trapped
    /// fd"). Checked against the notification afterwards like a read.
    ///
    /// A number that is not open in the target is [`NotifError::BadDescriptor`] (EBADF, as the
    /// kernel would answer).
    pub fn take_fd(&self, listener: &Listener, fd: i32) -> Result<OwnedFd, NotifError> {
        if fd < 0 {
            return Err(NotifError::BadDescriptor { fd });
        }
        let taken = listener.take_thread_fd(self, fd);
        listener.check_valid(self.id)?;
        taken
    }

    /// A pidfd for the calling thread (its process's before Linux 6.9, which has no thread
    /// pidfds).
    fn open_pidfd(&self, listener: &Listener) -> Result<OwnedFd, NotifError> {
        match sys::pidfd_open_thread(self.tid) {
            Ok(pidfd) => Ok(pidfd),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.tgid(listener).and_then(|tgid| {
                    sys::pidfd_open(tgid).map_err(|e| NotifError::io("pidfd_open", e))
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(NotifError::Gone),
            Err(e) => Err(NotifError::io("pidfd_open", e)),
        }
    }

    /// Whether the notification is still pending.
    pub fn is_valid(&self, listener: &Listener) -> Result<bool, NotifError> {
        match listener.check_valid(self.id) {
            Ok(()) => Ok(true),
            Err(NotifError::Gone) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn memory_error(e: MemoryError) -> NotifError {
    match e {
        MemoryError::Fault { addr, len, .. } => NotifError::Fault { addr, len },
        MemoryError::Gone { .. } => NotifError::Gone,
        MemoryError::Io { op, source, .. } => NotifError::Io { op, source },
    }
}

/// The supervisor's end of a filter: a seccomp notification descriptor.
///
/// All methods take `&self`: one thread may receive while others answer earlier notifications.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    /// pidfds of the threads that made calls lately, so that identifying a descriptor costs
    /// one pidfd_getfd and not a pidfd_open and a close as well. A pidfd of a thread that has
    /// died answers ESRCH, and is then replaced: an entry can go stale, never name a stranger.
    pidfds: Mutex<HashMap<u32, OwnedFd>>,
}

/// The most pidfds a [`Listener`] keeps (each is a descriptor of the supervisor's).
const MAX_CACHED_PIDFDS: usize = 256;

impl Listener {
    /// Wraps a listener descriptor made elsewhere (e.g. sent by runc or crun over the OCI
    /// `listenerPath` socket).
    pub fn from_fd(fd: OwnedFd) -> Listener {
        Listener { fd, pidfds: Mutex::new(HashMap::new()) }
    }

    /// pidfd_getfd of descriptor `fd` of the thread that made `notification`, through the
    /// cached pidfd of that thread (opened on first use).
    fn take_thread_fd(&self, notification: &Notification, fd: i32) -> Result<OwnedFd, NotifError> {
        let mut pidfds = self.pidfds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for _ in 0..2 {
            if !pidfds.contains_key(&notification.tid) {
                let pidfd = notification.open_pidfd(self)?;
                if pidfds.len() >= MAX_CACHED_PIDFDS {
                    pidfds.clear();
                }
                pidfds.insert(notification.tid, pidfd);
            }
            let pidfd = pidfds.get(&notification.tid).expect("inserted above");
            match sys::pidfd_getfd(pidfd.as_fd(), fd) {
                // The cached pidfd names a thread that has died (the tid was reused): again.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    pidfds.remove(&notification.tid);
                }
                other => {
                    return other.map_err(|e| match e.raw_os_error() {
                        Some(libc::EBADF) => NotifError::BadDescriptor { fd },
                        _ => NotifError::io("pidfd_getfd", e),
                    })
                }
            }
        }
        Err(NotifError::Gone)
    }

    /// Asks for synchronous wake-ups (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, Linux 6.6): the
    /// kernel then wakes the supervisor and the target on the CPU that woke them, which cut a
    /// round trip from ~58 µs to ~6 µs on our machines. `Ok(false)` on a kernel without it.
    pub fn set_sync_wakeup(&self) -> io::Result<bool> {
        match sys::notif_set_flags(self.fd.as_fd(), sys::SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until a notification is pending, every user of the filter has exited, or
    /// `timeout` passes (`None`: no limit). Signals do not cut the wait short.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<Readiness> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Rounded up, so that a short timeout does not become a busy loop.
                    let ms = left.as_nanos().div_ceil(1_000_000);
                    i32::try_from(ms).unwrap_or(i32::MAX)
                }
            };
            match sys::poll_one(self.fd.as_fd(), libc::POLLIN, ms) {
                Ok(ev) if ev & libc::POLLIN != 0 => return Ok(Readiness::Readable),
                Ok(ev) if ev & (libc::POLLHUP | libc::POLLERR) != 0 => {
                    return Ok(Readiness::Hangup)
                }
                Ok(_) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Readiness::TimedOut);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives the next notification, blocking until there is one (RECV ignores O_NONBLOCK:
    /// call [`Listener::wait_readable`] first to bound the wait). [`NotifError::Gone`] when
    /// the notification that made the listener readable was withdrawn before we got to it.
    pub fn receive(&self) -> Result<Notification, NotifError> {
        loop {
            match sys::notif_recv(self.fd.as_fd()) {
                Ok(n) => return Ok(Notification::from_raw(&n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NotifError::io("SECCOMP_IOCTL_NOTIF_RECV", e)),
            }
        }
    }

    /// Whether notification `id` is still pending.
    pub fn is_valid(&self, id: u64) -> Result<bool, NotifError> {
        match self.check_valid(id) {
            Ok(()) => Ok(true),
            Err(NotifError::Gone) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn check_valid(&self, id: u64) -> Result<(), NotifError> {
        sys::notif_id_valid(self.fd.as_fd(), id)
            .map_err(|e| NotifError::io("SECCOMP_IOCTL_NOTIF_ID_VALID", e))
    }

    /// Lets the kernel run the call as if no filter had trapped it. Not enforcement: the
    /// target may have changed its memory since the supervisor looked.
    pub fn respond_continue(&self, id: u64) -> Result<(), NotifError> {
        self.send(sys::seccomp_notif_resp {
            id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        })
    }

    /// Makes the call return `val` (a success; e.g. 0, a byte count, a descriptor number).
    pub fn respond_value(&self, id: u64, val: i64) -> Result<(), NotifError> {
        self.send(sys::seccomp_notif_resp { id, val, error: 0, flags: 0 })
    }

    /// Makes the call fail with `errno` (1..=4095; others are refused with EINVAL).
    pub fn respond_errno(&self, id: u64, errno: i32) -> Result<(), NotifError> {
        if !(1..=4095).contains(&errno) {
            return Err(NotifError::Io {
                op: "respond_errno",
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("errno {errno} out of range 1..=4095"),
                ),
            });
        }
        self.send(sys::seccomp_notif_resp { id, val: 0, error: -errno, flags: 0 })
    }

    fn send(&self, resp: sys::seccomp_notif_resp) -> Result<(), NotifError> {
        loop {
            match sys::notif_send(self.fd.as_fd(), &resp) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NotifError::io("SECCOMP_IOCTL_NOTIF_SEND", e)),
            }
        }
    }

    /// Installs a duplicate of `fd` in the target of notification `id` and returns its number
    /// there. With [`AddFd::send`] that number is also the call's result and the notification
    /// is answered (the way a trapped socket() returns a carrier). ADDFD obeys the target's
    /// RLIMIT_NOFILE: EMFILE comes back as [`NotifError::Io`], whose errno to answer with.
    pub fn add_fd(&self, id: u64, fd: BorrowedFd<'_>, how: AddFd) -> Result<i32, NotifError> {
        let mut flags = 0;
        if how.target_fd.is_some() {
            flags |= libc::SECCOMP_ADDFD_FLAG_SETFD as u32;
        }
        if how.send {
            flags |= libc::SECCOMP_ADDFD_FLAG_SEND as u32;
        }
        let newfd = match how.target_fd {
            Some(n) => u32::try_from(n).map_err(|_| NotifError::Io {
                op: "SECCOMP_IOCTL_NOTIF_ADDFD",
                source: io::Error::from_raw_os_error(libc::EBADF),
            })?,
            None => 0,
        };
        let addfd = sys::seccomp_notif_addfd {
            id,
            flags,
            srcfd: fd.as_raw_fd() as u32,
            newfd,
            newfd_flags: if how.cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        loop {
            match sys::notif_addfd(self.fd.as_fd(), &addfd, fd) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NotifError::io("SECCOMP_IOCTL_NOTIF_ADDFD", e)),
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<Listener> for OwnedFd {
    fn from(l: Listener) -> OwnedFd {
        l.fd
    }
}

impl From<OwnedFd> for Listener {
    fn from(fd: OwnedFd) -> Listener {
        Listener::from_fd(fd)
    }
}
