//! The only unsafe code of the fixtures: the TUNSETIFF ioctl and poll(2). Everything above this
//! module works with `BorrowedFd`s and safe types.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use libc::{c_char, c_short};

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags at the start of the union.
/// Spelled out with explicit padding (rather than `libc::ifreq`, a union) so that it can be built
/// without `mem::zeroed` and no byte the kernel copies in is left uninitialised.
#[repr(C)]
struct TunIfReq {
    name: [c_char; libc::IFNAMSIZ],
    flags: c_short,
    pad: [u8; IFREQ_UNION_PAD],
}

const IFREQ_UNION_PAD: usize =
    std::mem::size_of::<libc::ifreq>() - libc::IFNAMSIZ - std::mem::size_of::<c_short>();

const _: () = assert!(std::mem::size_of::<TunIfReq>() == std::mem::size_of::<libc::ifreq>());

/// Attaches the freshly opened `/dev/net/tun` file `fd` to a new TAP interface named `name`
/// (IFF_TAP | IFF_NO_PI: whole Ethernet frames, no packet-information prefix) and returns the
/// name the kernel gave it.
pub(crate) fn tun_set_iff_tap(fd: BorrowedFd<'_>, name: &str) -> io::Result<String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} must be 1..{} bytes without NUL", libc::IFNAMSIZ),
        ));
    }
    let mut req = TunIfReq {
        name: [0; libc::IFNAMSIZ],
        // The flag constants are small (0x0002, 0x1000) and fit the C `short` of the union.
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as c_short,
        pad: [0; IFREQ_UNION_PAD],
    };
    for (dst, &src) in req.name.iter_mut().zip(name.as_bytes()) {
        *dst = src as c_char;
    }
    // SAFETY: TUNSETIFF reads and writes exactly one `struct ifreq` through the pointer; `req` is
    // a live, exclusively borrowed value of that size and layout (checked by the const assert
    // above) for the whole call, and its name is NUL-terminated (length checked above, the array
    // was zeroed). `fd` is a valid open descriptor for the call's duration (BorrowedFd).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut TunIfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = req.name.iter().position(|&c| c == 0).unwrap_or(libc::IFNAMSIZ);
    Ok(req.name[..len].iter().map(|&c| c as u8 as char).collect())
}

/// Waits up to `timeout` (rounded up to whole milliseconds, poll(2)'s resolution) for `fd` to
/// become readable. Returns whether it is; an interrupted wait counts as "not yet".
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let millis = timeout.as_micros().div_ceil(1000);
    let millis = libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid `pollfd` that lives, exclusively borrowed, for the whole call,
    // and nfds is 1 to match; `fd` stays open for the call's duration (BorrowedFd).
    let rc = unsafe { libc::poll(&mut pfd, 1, millis) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(err) };
    }
    Ok(rc > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
}
