//! System calls and raw kernel structures of seccomp user notification: the only module of the
//! crate that uses `unsafe`.
//!
//! Raw kernel types (`seccomp_notif`, `seccomp_notif_resp`, `seccomp_notif_addfd`, `sock_fprog`)
//! stay in here; the modules above see owned descriptors, byte slices and plain values. Every
//! descriptor is an [`OwnedFd`] from the moment the kernel returns it.
//!
//! Several functions here run in a forked child before `execve` (installing the filter, the
//! hand-over pipes): those make one raw system call each, allocate nothing and take no locks, so
//! they are async-signal-safe. They say so in their doc comment.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_short, c_ulong, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

pub(crate) use libc::{seccomp_notif, seccomp_notif_addfd, seccomp_notif_resp, sock_filter};

/// `AUDIT_ARCH_X86_64` (linux/audit.h): `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
/// libc does not export the `AUDIT_ARCH_*` values.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `AUDIT_ARCH_I386`: `EM_386 | __AUDIT_ARCH_LE` (int 0x80 and 32-bit programs).
#[cfg(test)]
pub(crate) const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
/// `__X32_SYSCALL_BIT`: x32 programs enter with `AUDIT_ARCH_X86_64` and this bit in the number.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (linux/seccomp.h, Linux 6.6), which neither libc nor
/// the headers of this machine's distribution carry yet.
pub(crate) const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: c_ulong = 1;

// The ioctl numbers come from libc (which computes them with `_IOWR`/`_IOW` from the structure
// sizes); `tests::ioctl_numbers_match_the_kernel_headers` pins them to the kernel's values.
pub(crate) use libc::{
    SECCOMP_IOCTL_NOTIF_ADDFD, SECCOMP_IOCTL_NOTIF_ID_VALID, SECCOMP_IOCTL_NOTIF_RECV,
    SECCOMP_IOCTL_NOTIF_SEND, SECCOMP_IOCTL_NOTIF_SET_FLAGS,
};

/// Turns a C-style `-1` return into the thread's `errno` (reading errno allocates nothing).
fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The same for `syscall(2)` and the `ssize_t` calls.
fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor a system call just returned.
fn own(fd: c_int) -> OwnedFd {
    // SAFETY: every caller passes a descriptor the kernel returned to it a moment ago (after
    // `cvt` refused negative values): it is open, and nothing else in the process knows it yet,
    // so `OwnedFd` is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

// ---------------------------------------------------------------------------------------------
// Installing a filter (async-signal-safe: runs between fork and exec)

/// prctl(PR_SET_NO_NEW_PRIVS, 1): required to install a filter without CAP_SYS_ADMIN.
/// Async-signal-safe.
pub(crate) fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl(2) with PR_SET_NO_NEW_PRIVS takes only integers and touches no memory.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_ulong, 0 as c_ulong, 0, 0) })?;
    Ok(())
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): installs `filter` on the calling thread (all
/// threads with TSYNC) and returns the listener when `flags` holds NEW_LISTENER.
/// Async-signal-safe: the program is borrowed, not copied.
pub(crate) fn seccomp_set_filter(filter: &[sock_filter], flags: c_ulong) -> io::Result<OwnedFd> {
    let len =
        u16::try_from(filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog { len, filter: filter.as_ptr().cast_mut() };
    // SAFETY: `prog` points at `len` initialised `sock_filter`s borrowed for the whole call; the
    // kernel only reads them (the `*mut` is the C header's, not a licence to write) and copies
    // the program before returning.
    let ret = cvt_long(unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &prog)
    })?;
    let fd = c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    Ok(own(fd))
}

/// seccomp(SECCOMP_GET_NOTIF_SIZES): the sizes of the notification structures this kernel uses.
pub(crate) fn seccomp_notif_sizes() -> io::Result<libc::seccomp_notif_sizes> {
    let mut sizes =
        libc::seccomp_notif_sizes { seccomp_notif: 0, seccomp_notif_resp: 0, seccomp_data: 0 };
    // SAFETY: the kernel writes exactly one `struct seccomp_notif_sizes` through the pointer,
    // which points at one we own exclusively.
    cvt_long(unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_GET_NOTIF_SIZES, 0 as c_ulong, &mut sizes)
    })?;
    Ok(sizes)
}

// ---------------------------------------------------------------------------------------------
// pidfds

/// pidfd_open(pid, 0): a descriptor that names process `pid` (a thread-group leader) for good,
/// whatever happens to the number later. Close-on-exec.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open(2) takes two integers and touches no memory of ours.
    let ret = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as c_ulong) })?;
    Ok(own(ret as c_int))
}

/// pidfd_open(tid, PIDFD_THREAD): a pidfd for one thread (Linux 6.9 or later; EINVAL before).
/// pidfd_getfd through it reads that thread's descriptor table, which is what a trapped call
/// of that thread names.
pub(crate) fn pidfd_open_thread(tid: u32) -> io::Result<OwnedFd> {
    const PIDFD_THREAD: c_ulong = libc::O_EXCL as c_ulong;
    let tid = libc::pid_t::try_from(tid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open(2) takes two integers and touches no memory of ours.
    let ret = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, tid, PIDFD_THREAD) })?;
    Ok(own(ret as c_int))
}

/// pidfd_getfd(pidfd, fd, 0): a duplicate, in this process, of descriptor `fd` of the process
/// `pidfd` names (close-on-exec; needs ptrace-attach rights over it).
pub(crate) fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd(2) takes three integers and touches no memory of ours.
    let ret = cvt_long(unsafe {
        libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0 as c_ulong)
    })?;
    Ok(own(ret as c_int))
}

// ---------------------------------------------------------------------------------------------
// The notification ioctls

/// SECCOMP_IOCTL_NOTIF_RECV: blocks (whatever O_NONBLOCK says) until a notification is pending,
/// then returns it.
pub(crate) fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<seccomp_notif> {
    // SAFETY: `seccomp_notif` is integers only; the kernel insists on an all-zero buffer.
    let mut notif: seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV writes exactly one `struct seccomp_notif` (its size is encoded in the
    // request number and matches libc's definition, see the tests) through the pointer, which
    // points at one we own exclusively.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_RECV, &mut notif) })?;
    Ok(notif)
}

/// SECCOMP_IOCTL_NOTIF_SEND: answers a received notification.
pub(crate) fn notif_send(listener: BorrowedFd<'_>, resp: &seccomp_notif_resp) -> io::Result<()> {
    let mut resp = *resp;
    // SAFETY: SEND reads one `struct seccomp_notif_resp` through the pointer (the _IOWR
    // encoding notwithstanding, it writes nothing back); the pointer is to our own copy.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_SEND, &mut resp) })?;
    Ok(())
}

/// SECCOMP_IOCTL_NOTIF_ID_VALID: Ok if notification `id` is still pending (its target is still
/// blocked in that very system call), ENOENT if not.
pub(crate) fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    // SAFETY: ID_VALID reads one u64 through the pointer, which points at our local `id`.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_ID_VALID, &id) })?;
    Ok(())
}

/// SECCOMP_IOCTL_NOTIF_ADDFD: installs a duplicate of `addfd.srcfd` in the target; returns its
/// number there.
pub(crate) fn notif_addfd(
    listener: BorrowedFd<'_>,
    addfd: &seccomp_notif_addfd,
    _src: BorrowedFd<'_>,
) -> io::Result<c_int> {
    // SAFETY: ADDFD reads one `struct seccomp_notif_addfd` through the pointer, a shared borrow
    // of the caller's. Its `srcfd` is the number of `_src`, which the caller's borrow keeps open
    // for the duration of the call.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_ADDFD, addfd) })
}

/// SECCOMP_IOCTL_NOTIF_SET_FLAGS: sets listener flags. Unlike the other requests the argument
/// is the flag word itself, not a pointer to it (kernel/seccomp.c passes `arg` straight to
/// `seccomp_notify_set_flags`).
pub(crate) fn notif_set_flags(listener: BorrowedFd<'_>, flags: c_ulong) -> io::Result<()> {
    // SAFETY: the kernel reads no memory for this request: the third argument is a value.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_SET_FLAGS, flags) })?;
    Ok(())
}

/// poll(2) on one descriptor for `events`: the events it reports within `timeout_ms` (-1:
/// forever; 0 if none came).
pub(crate) fn poll_one(
    fd: BorrowedFd<'_>,
    events: c_short,
    timeout_ms: c_int,
) -> io::Result<c_short> {
    let mut fds = [libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 }];
    poll_many(&mut fds, timeout_ms)?;
    Ok(fds[0].revents)
}

/// poll(2) on several descriptors; their `revents` say what happened.
pub(crate) fn poll_many(fds: &mut [libc::pollfd], timeout_ms: c_int) -> io::Result<c_int> {
    // SAFETY: the pointer and count describe exactly `fds`, which we borrow exclusively; the
    // kernel writes only their `revents` fields.
    cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) })
}

// ---------------------------------------------------------------------------------------------
// Another process's memory

/// process_vm_readv(2) of `buf.len()` bytes at `addr` in process (or thread) `pid`: the number
/// of bytes copied, which is short when the range runs into an unmapped page.
pub(crate) fn vm_read(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast::<c_void>(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as usize as *mut c_void, iov_len: buf.len() };
    // SAFETY: the one local iovec covers exactly `buf`, which we borrow exclusively, so the
    // kernel writes only there. The remote iovec is an address in the *other* process: the
    // kernel validates it against that process's mappings and never dereferences it here.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    Ok(cvt_long(n as libc::c_long)? as usize)
}

/// process_vm_writev(2) of several pieces, each to its own address, in one call: the number
/// of bytes copied in all, short when a range runs into an unmapped or read-only page.
pub(crate) fn vm_write_pieces(pid: u32, pieces: &[(u64, &[u8])]) -> io::Result<usize> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let local: Vec<libc::iovec> = pieces
        .iter()
        .map(|(_, data)| libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast::<c_void>(),
            iov_len: data.len(),
        })
        .collect();
    let remote: Vec<libc::iovec> = pieces
        .iter()
        .map(|(addr, data)| libc::iovec {
            iov_base: *addr as usize as *mut c_void,
            iov_len: data.len(),
        })
        .collect();
    // SAFETY: each local iovec covers exactly one borrowed slice, which the kernel only reads;
    // the remote addresses are validated by the kernel against the other process's mappings,
    // not dereferenced here; both arrays live across the call and their lengths are passed.
    let n = unsafe {
        libc::process_vm_writev(
            pid,
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    Ok(cvt_long(n as libc::c_long)? as usize)
}

/// process_vm_writev(2) of `data` to `addr` in process (or thread) `pid`: the number of bytes
/// copied, short when the range runs into an unmapped or read-only page.
pub(crate) fn vm_write(pid: u32, addr: u64, data: &[u8]) -> io::Result<usize> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let local =
        libc::iovec { iov_base: data.as_ptr().cast_mut().cast::<c_void>(), iov_len: data.len() };
    let remote = libc::iovec { iov_base: addr as usize as *mut c_void, iov_len: data.len() };
    // SAFETY: the local iovec covers exactly `data`, which the kernel only reads (the `*mut` is
    // the C type's); the remote address is validated by the kernel against the other process's
    // mappings, not dereferenced here.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    Ok(cvt_long(n as libc::c_long)? as usize)
}

// ---------------------------------------------------------------------------------------------
// The hand-over pipes (the child's side is async-signal-safe)

/// pipe2(O_CLOEXEC): (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: pipe2(2) writes exactly two ints through the pointer, which points at our array
    // of two.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((own(fds[0]), own(fds[1])))
}

/// write(2) once. Async-signal-safe.
pub(crate) fn write_once(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `data.len()` bytes from `data`, which we borrow.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast::<c_void>(), data.len()) };
    Ok(cvt_long(n as libc::c_long)? as usize)
}

/// read(2) once. Async-signal-safe.
pub(crate) fn read_once(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which we borrow
    // exclusively.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
    Ok(cvt_long(n as libc::c_long)? as usize)
}

/// Closes, in a forked child, the child's inherited copy of a descriptor the *parent* owns.
/// Async-signal-safe.
///
/// Only for use between fork and exec: the parent's `OwnedFd` for `fd` lives on in the child's
/// copy of memory, but the child never runs its destructor (exec replaces the image, and a failed
/// set-up ends in `_exit`), so this close is the only one the child makes.
pub(crate) fn close_inherited(fd: RawFd) {
    // SAFETY: per the contract above, no owner in this (child) process will use or close `fd`
    // again. An error (EBADF if it was never inherited) leaves nothing to undo.
    unsafe { libc::close(fd) };
}

/// Registers `hook` to run in the child between fork and exec.
///
/// The hook must be async-signal-safe: it runs in a copy of a possibly multi-threaded process in
/// which another thread may have held the allocator's lock at the fork.
pub(crate) fn set_pre_exec<F>(cmd: &mut Command, hook: F)
where
    F: FnMut() -> io::Result<()> + Send + Sync + 'static,
{
    // SAFETY: `pre_exec` demands a hook that is async-signal-safe and does not rely on other
    // threads or on the parent's locks; the crate's only caller (`spawn::spawn`) passes a hook
    // made of this module's raw system calls (prctl, seccomp, getpid, write, read, close) on
    // descriptors and a filter prepared before the fork, with no allocation.
    unsafe {
        cmd.pre_exec(hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers, as linux/seccomp.h computes them on x86_64 (`_IOWR('!', 0,
    /// struct seccomp_notif)` and so on; SET_FLAGS arrived with Linux 6.6).
    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        assert_eq!(SECCOMP_IOCTL_NOTIF_RECV, 0xc050_2100);
        assert_eq!(SECCOMP_IOCTL_NOTIF_SEND, 0xc018_2101);
        assert_eq!(SECCOMP_IOCTL_NOTIF_ID_VALID, 0x4008_2102);
        assert_eq!(SECCOMP_IOCTL_NOTIF_ADDFD, 0x4018_2103);
        assert_eq!(SECCOMP_IOCTL_NOTIF_SET_FLAGS, 0x4008_2104);
    }

    /// The structures' sizes, which are encoded in the request numbers and must equal the
    /// running kernel's (SECCOMP_GET_NOTIF_SIZES).
    #[test]
    fn structure_sizes_match_the_running_kernel() {
        let sizes = seccomp_notif_sizes().expect("SECCOMP_GET_NOTIF_SIZES (Linux >= 5.0)");
        assert_eq!(usize::from(sizes.seccomp_notif), std::mem::size_of::<seccomp_notif>());
        assert_eq!(
            usize::from(sizes.seccomp_notif_resp),
            std::mem::size_of::<seccomp_notif_resp>()
        );
        assert_eq!(usize::from(sizes.seccomp_data), std::mem::size_of::<libc::seccomp_data>());
        assert_eq!(std::mem::size_of::<seccomp_notif_addfd>(), 24);
    }

    #[test]
    fn audit_arch_values() {
        assert_eq!(AUDIT_ARCH_X86_64, 0xc000_003e);
        assert_eq!(AUDIT_ARCH_I386, 0x4000_0003);
    }
}
