//! Raw system calls the library makes for itself, and errno handling.
//!
//! The library's own calls go straight to the kernel with `syscall(2)`, never through the libc
//! functions it interposes (those would come back into the library). None of them is a call the
//! seccomp filter notifies: `recvfrom`/`sendto` are only notified with an address, and the
//! library passes none; the one call meant to trap is [`joyride_rings`].

#![allow(unsafe_code)]

use std::os::fd::RawFd;

use stackd::proto::{JoyrideRings, JOYRIDE_RINGS, SOL_JOYRIDE};

/// An errno value.
pub type Errno = i32;

/// The calling thread's errno.
pub fn errno() -> Errno {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno.
pub fn set_errno(value: Errno) {
    // SAFETY: as above; writing it is how C functions report errors.
    unsafe { *libc::__errno_location() = value };
}

/// Turns a C-style return (-1 and errno) into a Result.
fn check(ret: libc::c_long) -> Result<usize, Errno> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

/// recvfrom(2) without an address into `buf`.
pub fn recv(fd: RawFd, buf: &mut [u8], flags: i32) -> Result<usize, Errno> {
    // SAFETY: the buffer is valid for writes of its length; no address is passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            flags,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    })
}

/// sendto(2) without an address.
pub fn send(fd: RawFd, buf: &[u8], flags: i32) -> Result<usize, Errno> {
    // SAFETY: the buffer is valid for reads of its length; no address is passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            flags,
            std::ptr::null::<libc::sockaddr>(),
            0,
        )
    })
}

/// writev(2) of `bufs` (IoSlice has iovec's layout).
pub fn writev(fd: RawFd, bufs: &[std::io::IoSlice<'_>]) -> Result<usize, Errno> {
    // SAFETY: IoSlice is guaranteed ABI-compatible with iovec, and each points to readable
    // memory of its length for the duration of the call.
    check(unsafe { libc::syscall(libc::SYS_writev, fd, bufs.as_ptr(), bufs.len()) })
}

/// The descriptor's file status flags (to see O_NONBLOCK as it is now: another process sharing
/// the open file may have changed it).
pub fn nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL takes no argument and touches no memory.
    let flags = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) };
    flags >= 0 && (flags as i32) & libc::O_NONBLOCK != 0
}

/// Whether the peer is gone (the stream's both directions are shut: POLLHUP).
pub fn hung_up(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd { fd, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let ret = unsafe { libc::syscall(libc::SYS_poll, &mut pfd as *mut libc::pollfd, 1, 0) };
    ret > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Shuts a socket down both ways, in the kernel only (not a call the supervisor serves).
pub fn shutdown_both(fd: RawFd) {
    // SAFETY: plain system call on a descriptor number; a wrong one fails harmlessly.
    unsafe { libc::syscall(libc::SYS_shutdown, fd, libc::SHUT_RDWR) };
}

/// Closes a descriptor the library itself opened.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd`.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// Yields the CPU (the spin loops' pause on a machine with few cores).
pub fn yield_now() {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_sched_yield) };
}

/// Asks the supervisor for the rings of a local connection: `(rx, tx)` descriptors, installed in
/// this process close-on-exec. This call traps on purpose (that is how the supervisor knows the
/// caller holds the socket); errno is left as the caller had it.
pub fn joyride_rings(fd: RawFd) -> Option<(RawFd, RawFd)> {
    let saved = errno();
    let mut rings = JoyrideRings { rx_fd: -1, tx_fd: -1 };
    let size = std::mem::size_of::<JoyrideRings>();
    let mut len = size as libc::socklen_t;
    // SAFETY: the option buffer and its length are valid for writes of the sizes given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_getsockopt,
            fd,
            SOL_JOYRIDE,
            JOYRIDE_RINGS,
            &mut rings as *mut JoyrideRings,
            &mut len as *mut libc::socklen_t,
        )
    };
    set_errno(saved);
    (ret == 0 && len as usize == size && rings.rx_fd >= 0 && rings.tx_fd >= 0)
        .then_some((rings.rx_fd, rings.tx_fd))
}
