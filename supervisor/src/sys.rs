//! The few socket facts the supervisor reads that nix has no wrapper for. All of this crate's
//! `unsafe` code is here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Reads an integer-sized socket option.
fn get_option<T: Copy>(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<T> {
    // SAFETY: only used with plain C structures and integers, for which all-zero is valid.
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable `T` and `len` says exactly how many bytes it has; the
    // kernel writes at most `len` bytes and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if ret == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// setsockopt with the value's bytes as a program gave them (replaying a program's options on
/// the kernel socket that replaces a stackd one).
pub fn set_raw_option(fd: BorrowedFd<'_>, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the kernel reads exactly `len` bytes from `value`, a live slice of that length.
    let ret = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast::<libc::c_void>(), len)
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SO_COOKIE: the socket's number for life, never reused (unlike descriptor numbers and
/// inodes), shared by every descriptor of the socket in every process.
pub fn socket_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    get_option::<u64>(fd, libc::SOL_SOCKET, libc::SO_COOKIE)
}

/// SO_DOMAIN: AF_UNIX, AF_INET, ...
pub fn socket_domain(fd: BorrowedFd<'_>) -> io::Result<i32> {
    get_option::<i32>(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// SO_TYPE: SOCK_STREAM, SOCK_DGRAM, ...
pub fn socket_type(fd: BorrowedFd<'_>) -> io::Result<i32> {
    get_option::<i32>(fd, libc::SOL_SOCKET, libc::SO_TYPE)
}

/// The pid of the process that made the peer end of a unix socket (SO_PEERCRED).
pub fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<i32> {
    get_option::<libc::ucred>(fd, libc::SOL_SOCKET, libc::SO_PEERCRED).map(|cred| cred.pid)
}

/// A `timeval` option (SO_RCVTIMEO, SO_SNDTIMEO) as a duration; `None` for "no timeout".
pub fn timeout_option(fd: BorrowedFd<'_>, name: i32) -> io::Result<Option<std::time::Duration>> {
    let tv = get_option::<libc::timeval>(fd, libc::SOL_SOCKET, name)?;
    let duration = std::time::Duration::from_secs(tv.tv_sec.max(0) as u64)
        + std::time::Duration::from_micros(tv.tv_usec.max(0) as u64);
    Ok((!duration.is_zero()).then_some(duration))
}

/// Has the child that `command` starts receive SIGTERM when this process dies.
pub fn terminate_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and only calls prctl, which is
    // async-signal-safe and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Closes every descriptor above standard error. A long-running process started by a
/// container engine (the agent, through `oci-runtime`) must not keep the engine's pipes open.
pub fn close_inherited_descriptors() {
    // SAFETY: close_range takes integers only; closing descriptors this process does not use
    // yet (nothing is open above 2 at start-up but what was inherited) invalidates nothing.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}

/// Sends SIGPIPE to one thread of the target, as the kernel does to a writer on a closed
/// connection without MSG_NOSIGNAL.
pub fn signal_thread(tgid: u32, tid: u32, signal: i32) {
    // SAFETY: tgkill takes integers only; a wrong or dead tid just fails with ESRCH.
    unsafe {
        libc::syscall(libc::SYS_tgkill, tgid as libc::pid_t, tid as libc::pid_t, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn cookies_are_per_socket_and_shared_by_duplicates() {
        let (a, b) = UnixStream::pair().unwrap();
        let a2 = a.try_clone().unwrap();
        let ca = socket_cookie(a.as_fd()).unwrap();
        assert_eq!(ca, socket_cookie(a2.as_fd()).unwrap());
        assert_ne!(ca, socket_cookie(b.as_fd()).unwrap());
        assert_eq!(socket_domain(a.as_fd()).unwrap(), libc::AF_UNIX);
        assert_eq!(peer_pid(a.as_fd()).unwrap(), std::process::id() as i32);
        assert_eq!(timeout_option(a.as_fd(), libc::SO_RCVTIMEO).unwrap(), None);
    }

    #[test]
    fn a_file_is_not_a_socket() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(socket_cookie(file.as_fd()).unwrap_err().raw_os_error(), Some(libc::ENOTSOCK));
    }
}
