//! Messages that carry descriptors (SCM_RIGHTS) over the control socket, for both its ends.
//!
//! The one place outside the backends where the crate needs `unsafe`: descriptors the kernel
//! installed while receiving arrive as plain numbers, and only this module turns them into
//! owned descriptors (so that every path, errors included, closes them).

#![allow(unsafe_code)]

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::proto::MAX_DESCRIPTORS;

/// One received message.
#[derive(Debug)]
pub struct Received {
    /// Bytes of the message.
    pub len: usize,
    /// Descriptors that came with it (close-on-exec).
    pub descriptors: Vec<OwnedFd>,
    /// The message or its descriptors did not fit (the kernel dropped the excess).
    pub truncated: bool,
}

/// Sends `message` with `descriptors` as one message.
pub fn send(
    socket: BorrowedFd<'_>,
    message: &[u8],
    descriptors: &[BorrowedFd<'_>],
    flags: MsgFlags,
) -> nix::Result<usize> {
    let raw: Vec<RawFd> = descriptors.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let control: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    socket::sendmsg::<()>(socket.as_raw_fd(), &[IoSlice::new(message)], control, flags, None)
}

/// Receives one message into `buffer`, with up to [`MAX_DESCRIPTORS`] descriptors.
pub fn receive(
    socket: BorrowedFd<'_>,
    buffer: &mut [u8],
    flags: MsgFlags,
) -> nix::Result<Received> {
    let mut space = nix::cmsg_space!([RawFd; MAX_DESCRIPTORS]);
    let mut iov = [IoSliceMut::new(buffer)];
    let message = socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut descriptors = Vec::new();
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = control {
            // SAFETY: the kernel installed these descriptors in this process for this message
            // just now; nothing else knows their numbers, so each is owned exactly once here.
            descriptors.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let truncated = message.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    Ok(Received { len: message.bytes, descriptors, truncated })
}
