//! The exported libc functions. Each one looks the descriptor up in the table: a fast-path
//! socket is served by [`Conn`]; anything else goes to the next definition (libc), untouched.
//!
//! The pointer arguments come from the program and carry the C function's contract; like libc,
//! the library trusts them (a bad pointer faults where the kernel would have said EFAULT).

#![allow(unsafe_code)]
#![allow(clippy::missing_safety_doc)]

use std::io::{IoSlice, IoSliceMut};
use std::sync::Arc;

use libc::{
    c_int, c_uint, c_ulong, c_void, iovec, msghdr, off_t, size_t, sockaddr, socklen_t, ssize_t,
};

use crate::conn::Conn;
use crate::sys::{self, Errno};
use crate::{readiness, real, spin, table};

/// Most iovec entries served in one call (more is a short read or write, which the calls allow).
const MAX_IOV: usize = 64;

fn ret(result: Result<usize, Errno>) -> ssize_t {
    match result {
        Ok(n) => n as ssize_t,
        Err(errno) => {
            sys::set_errno(errno);
            -1
        }
    }
}

/// # Safety
/// `buf` is valid for writes of `len` bytes (or `len` is 0).
unsafe fn slice_mut<'a>(buf: *mut c_void, len: size_t) -> &'a mut [u8] {
    if len == 0 || buf.is_null() {
        return &mut [];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(buf.cast(), len) }
}

/// # Safety
/// `buf` is valid for reads of `len` bytes (or `len` is 0).
unsafe fn slice<'a>(buf: *const c_void, len: size_t) -> &'a [u8] {
    if len == 0 || buf.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(buf.cast(), len) }
}

/// Calls `f` with the program's iovecs as IoSliceMut (the first MAX_IOV of them).
///
/// # Safety
/// `iov` points to `count` iovecs whose buffers are valid for writes.
unsafe fn with_iov_mut<R>(
    iov: *const iovec,
    count: c_int,
    f: impl FnOnce(&mut [IoSliceMut<'_>]) -> R,
) -> R {
    let count = usize::try_from(count).unwrap_or(0).min(MAX_IOV);
    let mut slices: [IoSliceMut<'_>; MAX_IOV] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
    for (index, slot) in slices.iter_mut().take(count).enumerate() {
        // SAFETY: index < count, inside the program's array.
        let entry = unsafe { *iov.add(index) };
        // SAFETY: the caller's contract.
        *slot = IoSliceMut::new(unsafe { slice_mut(entry.iov_base, entry.iov_len) });
    }
    f(&mut slices[..count])
}

/// Calls `f` with the program's iovecs as IoSlice (the first MAX_IOV of them).
///
/// # Safety
/// `iov` points to `count` iovecs whose buffers are valid for reads.
unsafe fn with_iov<R>(iov: *const iovec, count: c_int, f: impl FnOnce(&[IoSlice<'_>]) -> R) -> R {
    let count = usize::try_from(count).unwrap_or(0).min(MAX_IOV);
    let mut slices: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
    for (index, slot) in slices.iter_mut().take(count).enumerate() {
        // SAFETY: index < count, inside the program's array.
        let entry = unsafe { *iov.add(index) };
        // SAFETY: the caller's contract.
        *slot = IoSlice::new(unsafe { slice(entry.iov_base, entry.iov_len) });
    }
    f(&slices[..count])
}

fn read_one(conn: &Conn, fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the program passed `buf` for `len` bytes, as read(2) requires.
    let mut bufs = [IoSliceMut::new(unsafe { slice_mut(buf, len) })];
    ret(conn.recv(fd, &mut bufs, flags))
}

fn write_one(conn: &Conn, fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the program passed `buf` for `len` bytes, as write(2) requires.
    let bufs = [IoSlice::new(unsafe { slice(buf, len) })];
    ret(conn.send(fd, &bufs, flags))
}

/// A stream socket's recvfrom/recvmsg names no peer: the kernel writes a zero length.
///
/// # Safety
/// `len` is null or valid for writes.
unsafe fn no_address(len: *mut socklen_t) {
    if !len.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *len = 0 };
    }
}

fn is_inet(addr: *const sockaddr, len: socklen_t) -> bool {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return false;
    }
    // SAFETY: at least the family field is readable (checked against len).
    let family = c_int::from(unsafe { (*addr).sa_family });
    family == libc::AF_INET || family == libc::AF_INET6
}

/// Takes `fd` onto the fast path if it is a local joyride connection.
fn adopt(fd: c_int) {
    if fd >= 0 && crate::enabled() && table::get(fd).is_none() {
        if let Some(conn) = Conn::attach(fd) {
            table::insert(fd, conn);
        }
    }
}

fn lookup(fd: c_int) -> Option<Arc<Conn>> {
    table::get(fd)
}

#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    match lookup(fd) {
        Some(conn) => read_one(&conn, fd, buf, count, 0),
        // SAFETY: the program's own arguments, passed on.
        None => unsafe { real::read(fd, buf, count) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    buflen: size_t,
) -> ssize_t {
    if count > buflen {
        // What _FORTIFY_SOURCE's check does: the program overflowed its buffer.
        std::process::abort();
    }
    // SAFETY: as read.
    unsafe { read(fd, buf, count) }
}

#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    match lookup(fd) {
        Some(conn) => write_one(&conn, fd, buf, count, 0),
        // SAFETY: the program's own arguments, passed on.
        None => unsafe { real::write(fd, buf, count) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    match lookup(fd) {
        // SAFETY: readv's contract on iov.
        Some(conn) => unsafe { with_iov_mut(iov, count, |bufs| ret(conn.recv(fd, bufs, 0))) },
        // SAFETY: the program's own arguments, passed on.
        None => unsafe { real::readv(fd, iov, count) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    match lookup(fd) {
        // SAFETY: writev's contract on iov.
        Some(conn) => unsafe { with_iov(iov, count, |bufs| ret(conn.send(fd, bufs, 0))) },
        // SAFETY: the program's own arguments, passed on.
        None => unsafe { real::writev(fd, iov, count) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    match lookup(fd) {
        Some(conn) => read_one(&conn, fd, buf, len, flags),
        // SAFETY: the program's own arguments, passed on.
        None => unsafe { real::recv(fd, buf, len, flags) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if len > buflen {
        std::process::abort();
    }
    // SAFETY: as recv.
    unsafe { recv(fd, buf, len, flags) }
}

#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    match lookup(fd) {
        Some(conn) => write_one(&conn, fd, buf, len, flags),
        // SAFETY: the program's own arguments, passed on.
        None => unsafe { real::send(fd, buf, len, flags) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    match lookup(fd) {
        Some(conn) => {
            let n = read_one(&conn, fd, buf, len, flags);
            if n >= 0 && !addr.is_null() {
                // SAFETY: recvfrom's contract on addrlen.
                unsafe { no_address(addrlen) };
            }
            n
        }
        // SAFETY: the program's own arguments, passed on.
        None => unsafe { real::recvfrom(fd, buf, len, flags, addr, addrlen) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    if len > buflen {
        std::process::abort();
    }
    // SAFETY: as recvfrom.
    unsafe { recvfrom(fd, buf, len, flags, addr, addrlen) }
}

#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    match lookup(fd) {
        // A connected stream ignores the address, as TCP does.
        Some(conn) => write_one(&conn, fd, buf, len, flags),
        // SAFETY: the program's own arguments, passed on.
        None => unsafe { real::sendto(fd, buf, len, flags, addr, addrlen) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let Some(conn) = lookup(fd) else {
        // SAFETY: the program's own arguments, passed on.
        let received = unsafe { real::recvmsg(fd, msg, flags) };
        // SAFETY: recvmsg succeeded, so msg is a filled msghdr.
        if received >= 0 && !msg.is_null() && unsafe { (*msg).msg_controllen } > 0 {
            let errno = sys::errno();
            // SAFETY: as above.
            unsafe { adopt_received(msg) };
            sys::set_errno(errno);
        }
        return received;
    };
    if msg.is_null() {
        sys::set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: recvmsg's contract: msg is a valid msghdr.
    let header = unsafe { &mut *msg };
    let count = c_int::try_from(header.msg_iovlen).unwrap_or(c_int::MAX);
    // SAFETY: the msghdr's iovecs, per recvmsg's contract.
    let n = unsafe { with_iov_mut(header.msg_iov, count, |bufs| ret(conn.recv(fd, bufs, flags))) };
    if n >= 0 {
        header.msg_namelen = 0;
        header.msg_controllen = 0;
        header.msg_flags = 0;
    }
    n
}

#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    let Some(conn) = lookup(fd) else {
        // SAFETY: the program's own arguments, passed on.
        return unsafe { real::sendmsg(fd, msg, flags) };
    };
    if msg.is_null() {
        sys::set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: sendmsg's contract: msg is a valid msghdr.
    let header = unsafe { &*msg };
    let count = c_int::try_from(header.msg_iovlen).unwrap_or(c_int::MAX);
    // SAFETY: the msghdr's iovecs, per sendmsg's contract.
    unsafe { with_iov(header.msg_iov, count, |bufs| ret(conn.send(fd, bufs, flags))) }
}

/// The loop recvmmsg and sendmmsg share on a stream: `op(message, index)` for each message in
/// turn, its length stored in `msg_len`; an error on the first message is the call's, an error
/// after it ends the call with the count done, as the kernel does.
///
/// # Safety
/// `msgs` holds `count` valid headers (the calls' contract).
unsafe fn each_message(
    msgs: *mut libc::mmsghdr,
    count: c_uint,
    mut op: impl FnMut(&mut libc::mmsghdr, c_uint) -> Result<usize, Errno>,
) -> c_int {
    if msgs.is_null() && count > 0 {
        sys::set_errno(libc::EFAULT);
        return -1;
    }
    let mut done: c_uint = 0;
    while done < count.min(libc::UIO_MAXIOV as c_uint) {
        // SAFETY: the caller's contract; done < count.
        let message = unsafe { &mut *msgs.add(done as usize) };
        match op(message, done) {
            Ok(n) => {
                message.msg_len = n as c_uint;
                done += 1;
            }
            Err(errno) if done == 0 => {
                sys::set_errno(errno);
                return -1;
            }
            Err(_) => break,
        }
    }
    done as c_int
}

/// recvmmsg on a stream: one recv per message, as the kernel's TCP does (MSG_WAITFORONE: only
/// the first may wait; at end of stream every further message reads empty, as the kernel fills
/// them). The timeout, checked by the kernel only between messages, is not applied: a blocking
/// socket's messages after the first wait as their recv would.
#[no_mangle]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    count: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    let Some(conn) = lookup(fd) else {
        // SAFETY: the program's own arguments, passed on.
        return unsafe { real::recvmmsg(fd, msgs, count, flags, timeout) };
    };
    let receive = |message: &mut libc::mmsghdr, index: c_uint| {
        let mut call_flags = flags & !libc::MSG_WAITFORONE;
        if index > 0 && flags & libc::MSG_WAITFORONE != 0 {
            call_flags |= libc::MSG_DONTWAIT;
        }
        let header = &mut message.msg_hdr;
        let iov_count = c_int::try_from(header.msg_iovlen).unwrap_or(c_int::MAX);
        // SAFETY: the header's iovecs, per recvmmsg's contract.
        let received = unsafe {
            with_iov_mut(header.msg_iov, iov_count, |bufs| conn.recv(fd, bufs, call_flags))
        };
        if received.is_ok() {
            header.msg_namelen = 0;
            header.msg_controllen = 0;
            header.msg_flags = 0;
        }
        received
    };
    // SAFETY: recvmmsg's contract.
    unsafe { each_message(msgs, count, receive) }
}

/// sendmmsg on a stream: one send per message.
#[no_mangle]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    count: c_uint,
    flags: c_int,
) -> c_int {
    let Some(conn) = lookup(fd) else {
        // SAFETY: the program's own arguments, passed on.
        return unsafe { real::sendmmsg(fd, msgs, count, flags) };
    };
    let send = |message: &mut libc::mmsghdr, _index: c_uint| {
        let header = &message.msg_hdr;
        let iov_count = c_int::try_from(header.msg_iovlen).unwrap_or(c_int::MAX);
        // SAFETY: the header's iovecs, per sendmmsg's contract.
        unsafe { with_iov(header.msg_iov, iov_count, |bufs| conn.send(fd, bufs, flags)) }
    };
    // SAFETY: sendmmsg's contract.
    unsafe { each_message(msgs, count, send) }
}

#[no_mangle]
pub unsafe extern "C" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    let Some(conn) = lookup(out_fd) else {
        // SAFETY: the program's own arguments, passed on.
        return unsafe { real::sendfile(out_fd, in_fd, offset, count) };
    };
    ret(sendfile_to_ring(&conn, out_fd, in_fd, offset, count))
}

/// sendfile into a ring: read the file in chunks at its offset, send, and advance the offset by
/// what was sent (so a short non-blocking send leaves the file where the kernel would).
fn sendfile_to_ring(
    conn: &Conn,
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> Result<usize, Errno> {
    let mut position = if offset.is_null() {
        // SAFETY: lseek on the program's descriptor; no memory access.
        let now = unsafe { libc::syscall(libc::SYS_lseek, in_fd, 0, libc::SEEK_CUR) };
        if now < 0 {
            return Err(sys::errno());
        }
        now
    } else {
        // SAFETY: sendfile's contract: a non-null offset is readable and writable.
        unsafe { *offset }
    };
    let mut chunk = [0u8; 16 << 10];
    let mut sent = 0;
    while sent < count {
        let want = chunk.len().min(count - sent);
        // SAFETY: the chunk is valid for writes of `want` bytes.
        let got =
            unsafe { libc::syscall(libc::SYS_pread64, in_fd, chunk.as_mut_ptr(), want, position) };
        if got < 0 {
            if sent == 0 {
                return Err(sys::errno());
            }
            break;
        }
        if got == 0 {
            break;
        }
        let bufs = [IoSlice::new(&chunk[..got as usize])];
        let n = match conn.send(out_fd, &bufs, 0) {
            Ok(n) => n,
            Err(errno) if sent == 0 => return Err(errno),
            Err(_) => break,
        };
        sent += n;
        position += n as i64;
        if n < got as usize {
            break;
        }
    }
    if offset.is_null() {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_lseek, in_fd, position, libc::SEEK_SET) };
    } else {
        // SAFETY: as above.
        unsafe { *offset = position as off_t };
    }
    Ok(sent)
}

#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the program's own arguments, passed on.
    let result = unsafe { real::connect(fd, addr, len) };
    let errno = sys::errno();
    let connected = result == 0 || errno == libc::EINPROGRESS || errno == libc::EISCONN;
    if connected && is_inet(addr, len) {
        adopt(fd);
    }
    sys::set_errno(errno);
    result
}

#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the program's own arguments, passed on.
    let new = unsafe { real::accept(fd, addr, len) };
    adopt_accepted(new, addr, len)
}

#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the program's own arguments, passed on.
    let new = unsafe { real::accept4(fd, addr, len, flags) };
    adopt_accepted(new, addr, len)
}

fn adopt_accepted(new: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if new < 0 {
        return new;
    }
    // A peer address that is not inet (an AF_UNIX listener's) needs no question to the
    // supervisor; without one, ask.
    // SAFETY: accept wrote *len when both are non-null.
    let known_len = if addr.is_null() || len.is_null() { None } else { Some(unsafe { *len }) };
    if known_len.is_none_or(|len| is_inet(addr, len)) {
        let errno = sys::errno();
        adopt(new);
        sys::set_errno(errno);
    }
    new
}

/// getsockname/getpeername: a fast-path connection's names never change, so only the first
/// call of each goes to the supervisor (a trap, ~10 µs); later ones are answered here.
///
/// # Safety
/// `addr` and `len` as the C functions require.
unsafe fn socket_name(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    peer: bool,
    kernel: unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int,
) -> c_int {
    let Some(conn) = lookup(fd) else {
        // SAFETY: the program's own arguments, passed on.
        return unsafe { kernel(fd, addr, len) };
    };
    if addr.is_null() || len.is_null() {
        sys::set_errno(libc::EFAULT);
        return -1;
    }
    if let Some(name) = conn.name(peer) {
        // SAFETY: the caller's contract: *len readable, addr writable for *len bytes; the copy
        // is truncated to that, and *len reports the full size, as the kernel does.
        unsafe {
            let room = (*len as usize).min(name.len as usize);
            std::ptr::copy_nonoverlapping(
                (&name.storage as *const libc::sockaddr_storage).cast::<u8>(),
                addr.cast::<u8>(),
                room,
            );
            *len = name.len;
        }
        return 0;
    }
    // SAFETY: zeroed storage is a valid (empty) address to fill.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut full = std::mem::size_of::<libc::sockaddr_storage>() as socklen_t;
    // SAFETY: our own buffer and length.
    let result =
        unsafe { kernel(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut full) };
    if result != 0 {
        return result;
    }
    conn.remember_name(peer, crate::conn::SocketName { storage, len: full });
    // SAFETY: as above, now answered from the cache.
    unsafe { socket_name(fd, addr, len, peer, kernel) }
}

#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: getsockname's contract.
    unsafe { socket_name(fd, addr, len, false, real_getsockname) }
}

#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: getpeername's contract.
    unsafe { socket_name(fd, addr, len, true, real_getpeername) }
}

unsafe extern "C" fn real_getsockname(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: passed through with the caller's contract.
    unsafe { real::getsockname(fd, addr, len) }
}

unsafe extern "C" fn real_getpeername(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: passed through with the caller's contract.
    unsafe { real::getpeername(fd, addr, len) }
}

#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    table::remove(fd);
    readiness::forget_epoll(fd);
    // SAFETY: the program's own argument, passed on.
    unsafe { real::close(fd) }
}

#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 && table::any() {
        let last = last.min(table::MAX_FDS as c_uint - 1);
        for fd in first..=last {
            table::remove(fd as c_int);
        }
    }
    // SAFETY: the program's own arguments, passed on.
    unsafe { real::close_range(first, last, flags) }
}

#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: the program's own argument, passed on.
    let new = unsafe { real::dup(fd) };
    if new >= 0 {
        table::duplicate(fd, new);
    }
    new
}

#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: the program's own arguments, passed on.
    let result = unsafe { real::dup2(old, new) };
    if result >= 0 && old != new {
        table::duplicate(old, new);
    }
    result
}

#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: the program's own arguments, passed on.
    let result = unsafe { real::dup3(old, new, flags) };
    if result >= 0 {
        table::duplicate(old, new);
    }
    result
}

/// fcntl is variadic in C; on x86-64 and aarch64 a third integer argument is passed the same way
/// whether or not the callee is variadic, so a fixed three-argument definition is ABI-compatible.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the program's own arguments, passed on.
    let result = unsafe { real::fcntl(fd, cmd, arg) };
    if result >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
        table::duplicate(fd, result);
    }
    if result >= 0 && cmd == libc::F_SETFL {
        if let Some(conn) = lookup(fd) {
            conn.set_nonblocking_hint(arg as c_int & libc::O_NONBLOCK != 0);
        }
    }
    result
}

#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: same contract as fcntl.
    unsafe { fcntl(fd, cmd, arg) }
}

/// ioctl is variadic like fcntl (same ABI note). FIONREAD on a fast-path socket counts ring
/// bytes; everything else is the kernel's.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    if request == libc::FIONREAD {
        if let Some(conn) = lookup(fd) {
            if arg.is_null() {
                sys::set_errno(libc::EFAULT);
                return -1;
            }
            let ready = c_int::try_from(conn.readable_now(fd)).unwrap_or(c_int::MAX);
            // SAFETY: FIONREAD's contract: arg points to an int.
            unsafe { *arg.cast::<c_int>() = ready };
            return 0;
        }
    }
    // SAFETY: the program's own arguments, passed straight to the kernel (libc's ioctl is a
    // plain system call wrapper).
    let result = unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) } as c_int;
    if result == 0 && request == libc::FIONBIO && !arg.is_null() {
        if let Some(conn) = lookup(fd) {
            // SAFETY: FIONBIO's argument is an int the kernel just read.
            conn.set_nonblocking_hint(unsafe { *arg.cast::<c_int>() } != 0);
        }
    }
    result
}

/// The optional busy-poll in front of a waiting call that watches no fast-path socket: while
/// this process has some, poll with a zero timeout for the spin budget before sleeping (a
/// doorbell makes a socket ready, so the kernel's readiness is all there is to poll). Never
/// needed for correctness.
pub(crate) fn busy_then(timeout: c_int, mut call: impl FnMut(c_int) -> c_int) -> c_int {
    if timeout == 0 || !table::any() {
        return call(timeout);
    }
    let start = spin::now_ns();
    match spin::spin(|| {
        let ready = call(0);
        (ready != 0).then_some(ready)
    }) {
        Some(ready) => ready,
        None => call(readiness::remaining_ms(timeout, start)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut libc::epoll_event,
) -> c_int {
    // SAFETY: the program's own arguments, passed on.
    let result = unsafe { real::epoll_ctl(epfd, op, fd, event) };
    if result == 0 && table::any() {
        // SAFETY: epoll_ctl read it successfully, so it is readable (or null for DEL).
        readiness::epoll_ctl(epfd, op, fd, unsafe { event.as_ref().copied() });
    }
    result
}

#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    // SAFETY: the program's own arguments; the real call gets parts of its own array.
    unsafe {
        readiness::epoll_wait(epfd, events, max, timeout, |events, max, timeout| {
            real::epoll_wait(epfd, events, max, timeout)
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: as epoll_wait, with the program's signal mask passed on.
    unsafe {
        readiness::epoll_wait(epfd, events, max, timeout, |events, max, timeout| {
            real::epoll_pwait(epfd, events, max, timeout, mask)
        })
    }
}

/// epoll_pwait2 (a timespec timeout): served like epoll_pwait, with the timeout rounded up to
/// whole milliseconds (a wait must not become shorter), so that the rings' standing promises are
/// withdrawn before any sleep here too.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let timeout_ms = timespec_ms(timeout);
    // SAFETY: as epoll_pwait.
    unsafe { epoll_pwait(epfd, events, max, timeout_ms, mask) }
}

#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: c_int) -> c_int {
    // SAFETY: the program's own arguments; the real call gets the program's array or a copy.
    unsafe {
        readiness::poll(fds, nfds, timeout, |fds, nfds, timeout| real::poll(fds, nfds, timeout))
    }
}

/// A timespec timeout as whole milliseconds, rounded up (a wait must not become shorter, nor a
/// short one non-blocking); -1 for none.
fn timespec_ms(timeout: *const libc::timespec) -> c_int {
    if timeout.is_null() {
        return -1;
    }
    // SAFETY: the callers' contracts: a non-null timeout is readable.
    let ts = unsafe { *timeout };
    let nanos = ts.tv_sec.saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec);
    (nanos.saturating_add(999_999) / 1_000_000).clamp(0, c_int::MAX as i64) as c_int
}

/// Milliseconds as a timespec for the real call: `None` for no timeout.
fn ms_timespec(ms: c_int) -> Option<libc::timespec> {
    (ms >= 0).then(|| libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    })
}

/// ppoll: served as poll, with the timeout in whole milliseconds (rounded up) and the
/// program's signal mask applied to every real call. glibc's ppoll leaves the timeout as it was.
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    nfds: libc::nfds_t,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let timeout_ms = timespec_ms(timeout);
    // SAFETY: as poll; the mask is the program's, passed on.
    unsafe {
        readiness::poll(fds, nfds, timeout_ms, |fds, nfds, ms| {
            let ts = ms_timespec(ms);
            let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
            real::ppoll(fds, nfds, ts_ptr, mask)
        })
    }
}

/// pselect: served as select, with the timeout in whole milliseconds (rounded up) and the
/// program's signal mask applied to every real call; pselect leaves the timeout as it was.
#[no_mangle]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    readfds: *mut libc::fd_set,
    writefds: *mut libc::fd_set,
    exceptfds: *mut libc::fd_set,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let timeout_ms = timespec_ms(timeout);
    // SAFETY: as select; the mask is the program's, passed on.
    unsafe {
        readiness::select(nfds, [readfds, writefds, exceptfds], timeout_ms, |r, w, e, ms| {
            let ts = ms_timespec(ms);
            let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
            real::pselect(nfds, r, w, e, ts_ptr, mask)
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut libc::fd_set,
    writefds: *mut libc::fd_set,
    exceptfds: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    let timeout_ms = if timeout.is_null() {
        -1
    } else {
        // SAFETY: select's contract: a non-null timeout is readable.
        let tv = unsafe { *timeout };
        let micros = tv.tv_sec.saturating_mul(1_000_000).saturating_add(tv.tv_usec);
        // Round up: a 100 µs timeout must not become a zero (non-blocking) one.
        ((micros + 999) / 1000).clamp(0, c_int::MAX as i64) as c_int
    };
    let start = spin::now_ns();
    // SAFETY: the program's sets; the real call gets them or our copies, with our own timeout.
    let ready = unsafe {
        readiness::select(nfds, [readfds, writefds, exceptfds], timeout_ms, |r, w, e, ms| {
            let mut tv = libc::timeval {
                tv_sec: (ms.max(0) / 1000) as libc::time_t,
                tv_usec: ((ms.max(0) % 1000) * 1000) as libc::suseconds_t,
            };
            let tv_ptr = if ms < 0 { std::ptr::null_mut() } else { &mut tv as *mut libc::timeval };
            real::select(nfds, r, w, e, tv_ptr)
        })
    };
    if !timeout.is_null() && ready >= 0 {
        // Linux reports the time left, as the real select would have.
        let left = readiness::remaining_ms(timeout_ms, start).max(0);
        // SAFETY: select's contract: a non-null timeout is writable.
        unsafe {
            *timeout = libc::timeval {
                tv_sec: (left / 1000) as libc::time_t,
                tv_usec: ((left % 1000) * 1000) as libc::suseconds_t,
            }
        };
    }
    ready
}

/// The library's constructor: reads its settings, and stands aside in programs that make their
/// own system calls (Go's runtime does, so interposing libc would miss its reads and writes).
extern "C" fn init() {
    // SAFETY: getenv with a NUL-terminated name; the result is read before any setenv can run.
    let spin_us = unsafe { libc::getenv(c"JOYRIDE_SPIN_US".as_ptr()) };
    if !spin_us.is_null() {
        // SAFETY: getenv returned a NUL-terminated string.
        let text = unsafe { std::ffi::CStr::from_ptr(spin_us) };
        spin::configure(text.to_str().ok());
    }
    // After a fork both processes hold every connection: from then on they take turns per
    // direction (stackd::ring::RingRegion::lock_side).
    // SAFETY: plain C function pointers without arguments, valid for the process's life.
    unsafe { libc::pthread_atfork(None, Some(after_fork), Some(after_fork)) };
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    let go = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_cgo_init".as_ptr()) };
    if !go.is_null() {
        crate::disable();
        return;
    }
    adopt_inherited();
}

extern "C" fn after_fork() {
    table::mark_all_shared();
}

/// A program exec'd with fast-path sockets open (a server that execs a handler with the
/// connection as its stdin) finds them here: the rings' shared state says where each stream
/// stands. Only sockets are asked about (one trap each; most programs start with none).
fn adopt_inherited() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
    let mut sockets = [(0 as c_int, 0 as libc::ino_t); 64];
    let mut count = 0;
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<c_int>().ok())
        else {
            continue;
        };
        // SAFETY: fstat writes into the zeroed struct; a closed descriptor only fails.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let is_socket = unsafe { libc::fstat(fd, &mut stat) } == 0
            && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK;
        if is_socket && count < sockets.len() {
            sockets[count] = (fd, stat.st_ino);
            count += 1;
        }
    }
    // After the directory is closed: its descriptor was among those listed. Descriptors of
    // one socket (dup'd onto stdin and stdout) share one connection, as before the exec.
    for index in 0..count {
        let (fd, inode) = sockets[index];
        match sockets[..index].iter().find(|(_, earlier)| *earlier == inode) {
            Some((first, _)) => table::duplicate(*first, fd),
            None => adopt(fd),
        }
    }
}

/// Takes onto the fast path the sockets a program receives with SCM_RIGHTS.
///
/// # Safety
/// `msg` is a msghdr that recvmsg just filled.
unsafe fn adopt_received(msg: *const msghdr) {
    // SAFETY: the caller's contract; the CMSG macros walk the control buffer recvmsg filled,
    // within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<c_int>();
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for index in 0..bytes / std::mem::size_of::<c_int>() {
                    let fd = data.add(index).read_unaligned();
                    let mut stat: libc::stat = std::mem::zeroed();
                    if libc::fstat(fd, &mut stat) == 0
                        && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
                    {
                        adopt(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
