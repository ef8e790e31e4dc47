//! Starting a program under the filter and handing its listener to the supervisor.
//!
//! The child installs the filter between fork and exec, and from then on must make no call the
//! filter notifies: nobody holds the listener yet, so it would wait on itself forever (passing
//! the listener over a socket with sendmsg is exactly such a call). So the child only *reports*
//! its pid and the listener's number through a pipe, and the parent takes the descriptor with
//! pidfd_getfd — runc's way (DESIGN.md, "Handing the notification fd over"). The child waits
//! for the parent's acknowledgement before it execs, because the listener is close-on-exec and
//! would vanish with the exec.
//!
//! [`spawn`] does this dance for a [`Command`]; [`take_listener_from`] is the parent's half for
//! launchers that fork by other means.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::filter::Filter;
use crate::notify::{install_listener, InstallError, InstallOptions, Listener};
use crate::sys;

/// Why the listener could not be handed over.
#[derive(Debug, Error)]
pub enum HandoverError {
    /// The child could not install the filter.
    #[error("the child could not install the filter: {0}")]
    Install(#[from] InstallError),
    /// pidfd_open or pidfd_getfd failed.
    #[error("could not take the listener (fd {fd}) from process {pid}: {step} failed: {source}; the supervisor needs ptrace rights over the child (same user, or CAP_SYS_PTRACE) and Linux >= 5.6")]
    Take {
        /// "pidfd_open" or "pidfd_getfd".
        step: &'static str,
        /// The child.
        pid: u32,
        /// The listener's number in the child.
        fd: i32,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The child did not report within the time allowed.
    #[error("the child did not report its listener within {0:?}")]
    TimedOut(Duration),
    /// The child ended (or failed in an earlier set-up step) before it reported.
    #[error("the child exited before it installed the filter")]
    ChildExited,
    /// The launcher gave up (its spawn failed) before the child reported.
    #[error("the launch was abandoned before the child reported")]
    Cancelled,
    /// The child reported a pid that is not the spawned process (a pid namespace between
    /// them?).
    #[error("the child reported pid {reported}, but the spawned process is {spawned}; the supervisor must share the child's pid namespace")]
    PidMismatch {
        /// What the child reported.
        reported: u32,
        /// What spawn returned.
        spawned: u32,
    },
    /// A pipe operation of the hand-over failed.
    #[error("hand-over pipe: {step} failed: {source}")]
    Io {
        /// What failed.
        step: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Why [`spawn`] failed.
#[derive(Debug, Error)]
pub enum SpawnError {
    /// The command could not be started (not found, not executable, bad working directory...).
    #[error("could not start {program:?}: {source}")]
    Spawn {
        /// The program.
        program: std::ffi::OsString,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The listener could not be handed over (the child has been killed and reaped).
    #[error(transparent)]
    Handover(#[from] HandoverError),
}

/// Takes descriptor `fd` of process `pid` (a listener the process installed) with pidfd_open
/// and pidfd_getfd.
pub fn take_listener_from(pid: u32, fd: i32) -> Result<Listener, HandoverError> {
    let take = |step, source| HandoverError::Take { step, pid, fd, source };
    let pidfd = sys::pidfd_open(pid).map_err(|e| take("pidfd_open", e))?;
    let listener = sys::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| take("pidfd_getfd", e))?;
    Ok(Listener::from_fd(listener))
}

/// Starts `cmd` with `filter` installed (between fork and exec, in the child) and returns the
/// child and the listener of its notifications.
///
/// The filter applies to the program `cmd` runs and everything it starts. `pre_exec` hooks the
/// caller registered on `cmd` before this call run before the installation, later ones after it
/// (under the filter, where they must not make a notified call). `timeout` bounds the
/// wait for the child to reach the installation (it covers fork and the earlier set-up steps of
/// `cmd`, normally well under a millisecond).
///
/// `cmd` keeps the hook that does the hand-over, and the hook serves one child only: spawning
/// the same `cmd` again (by itself or through this function) fails with EALREADY. Use a fresh
/// `Command` for each supervised child.
pub fn spawn(
    cmd: &mut Command,
    filter: Arc<Filter>,
    options: InstallOptions,
    timeout: Duration,
) -> Result<(Child, Listener), SpawnError> {
    let io = |step| move |source| HandoverError::Io { step, source };
    let (report_r, report_w) = sys::pipe().map_err(io("pipe"))?;
    let (ack_r, ack_w) = sys::pipe().map_err(io("pipe"))?;
    let (cancel_r, cancel_w) = sys::pipe().map_err(io("pipe"))?;
    let spent = Arc::new(AtomicBool::new(false));
    let child_end = ChildEnd {
        report: report_w,
        ack: ack_r,
        parent_ends: [
            report_r.as_raw_fd(),
            ack_w.as_raw_fd(),
            cancel_r.as_raw_fd(),
            cancel_w.as_raw_fd(),
        ],
        filter,
        options,
        spent: Arc::clone(&spent),
    };
    sys::set_pre_exec(cmd, move || child_end.install_and_report());

    // `Command::spawn` returns only once the child has exec'd, which it does only after our
    // acknowledgement: the parent's half must run on another thread.
    let parent =
        ParentEnd { report: File::from(report_r), ack: File::from(ack_w), cancel: cancel_r };
    let waiter = std::thread::Builder::new()
        .name("trap-handover".into())
        .spawn(move || parent.receive(timeout))
        .map_err(io("spawn the hand-over thread"))?;
    let spawned = cmd.spawn();
    // Children forked from now on see the flag set: the descriptor numbers the hook would close
    // may by then belong to something else.
    spent.store(true, Ordering::Release);
    // Wakes the waiter if the child never reported (the spawn failed before our hook ran).
    drop(cancel_w);
    let handed = waiter.join().unwrap_or(Err(HandoverError::Cancelled));
    match (spawned, handed) {
        (Ok(child), Ok((pid, listener))) if pid == child.id() => Ok((child, listener)),
        (Ok(mut child), Ok((pid, _))) => {
            kill_and_reap(&mut child);
            Err(HandoverError::PidMismatch { reported: pid, spawned: child.id() }.into())
        }
        (Ok(mut child), Err(e)) => {
            kill_and_reap(&mut child);
            Err(e.into())
        }
        // The child's own report of why it failed says more than spawn's bare errno.
        (Err(_), Err(e @ HandoverError::Install(_))) => Err(e.into()),
        (Err(source), _) => {
            Err(SpawnError::Spawn { program: cmd.get_program().to_owned(), source })
        }
    }
}

fn kill_and_reap(child: &mut Child) {
    // Errors mean it already exited; wait reaps it either way.
    let _ = child.kill();
    let _ = child.wait();
}

/// The child's side: moved into the pre-exec hook.
struct ChildEnd {
    report: OwnedFd,
    ack: OwnedFd,
    /// The parent's ends, which the child inherits at fork and closes at once, so that a
    /// parent that dies leaves the child reading EOF rather than waiting on its own copy.
    parent_ends: [RawFd; 4],
    filter: Arc<Filter>,
    options: InstallOptions,
    /// Set by the parent once its spawn returned.
    spent: Arc<AtomicBool>,
}

/// The report: `[pid, kind, value]` as native-endian i32s, 12 bytes (one atomic pipe write).
const REPORT_LEN: usize = 12;
const REPORT_OK: i32 = 0;
const REPORT_NO_NEW_PRIVS: i32 = 1;
const REPORT_SECCOMP: i32 = 2;
/// The parent's acknowledgement: it holds the listener now.
const ACK: u8 = b'1';

impl ChildEnd {
    /// Runs between fork and exec: async-signal-safe (raw system calls on descriptors and a
    /// filter prepared before the fork; nothing allocates).
    fn install_and_report(&self) -> io::Result<()> {
        if self.spent.load(Ordering::Acquire) {
            return Err(io::Error::from_raw_os_error(libc::EALREADY));
        }
        for fd in self.parent_ends {
            sys::close_inherited(fd);
        }
        let pid = std::process::id() as i32;
        let (report, result) = match install_listener(&self.filter, self.options) {
            Ok(listener) => ([pid, REPORT_OK, listener.as_raw_fd()], Ok(listener)),
            Err(e @ InstallError::NoNewPrivs { errno }) => {
                ([pid, REPORT_NO_NEW_PRIVS, errno], Err(e))
            }
            Err(e @ InstallError::Seccomp { errno }) => ([pid, REPORT_SECCOMP, errno], Err(e)),
        };
        let mut bytes = [0u8; REPORT_LEN];
        for (chunk, v) in bytes.chunks_exact_mut(4).zip(report) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        // write(2) and read(2) on pipes: the filter never notifies them.
        if sys::write_once(self.report.as_fd(), &bytes)? != REPORT_LEN {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        let listener = result?;
        let mut ack = [0u8; 1];
        loop {
            match sys::read_once(self.ack.as_fd(), &mut ack) {
                Ok(1) if ack[0] == ACK => break,
                // EOF or a refusal: the parent could not take the listener.
                Ok(_) => return Err(io::Error::from_raw_os_error(libc::ECANCELED)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The parent holds its own reference now; the child's copy would close at exec anyway.
        drop(listener);
        Ok(())
    }
}

/// The parent's side: runs on the hand-over thread.
struct ParentEnd {
    report: File,
    ack: File,
    cancel: OwnedFd,
}

impl ParentEnd {
    fn receive(mut self, timeout: Duration) -> Result<(u32, Listener), HandoverError> {
        let deadline = Instant::now() + timeout;
        let io = |step| move |source| HandoverError::Io { step, source };
        let mut bytes = [0u8; REPORT_LEN];
        let mut got = 0;
        while got < REPORT_LEN {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandoverError::TimedOut(timeout));
            }
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            let mut fds = [
                libc::pollfd { fd: self.report.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.cancel.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            match sys::poll_many(&mut fds, ms) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("poll")(e)),
            }
            if fds[0].revents != 0 {
                match self.report.read(&mut bytes[got..]) {
                    Ok(0) => return Err(HandoverError::ChildExited),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io("read")(e)),
                }
            } else if fds[1].revents != 0 {
                return Err(HandoverError::Cancelled);
            }
        }
        let field = |i: usize| i32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4"));
        let (pid, kind, value) = (field(0) as u32, field(1), field(2));
        match kind {
            REPORT_OK => {}
            REPORT_NO_NEW_PRIVS => return Err(InstallError::NoNewPrivs { errno: value }.into()),
            _ => return Err(InstallError::Seccomp { errno: value }.into()),
        }
        // On failure, dropping `self.ack` unacknowledged makes the child fail its exec.
        let listener = take_listener_from(pid, value)?;
        self.ack.write_all(&[ACK]).map_err(io("write"))?;
        Ok((pid, listener))
    }
}
