//! `struct msghdr`, `struct mmsghdr` and `struct iovec` in the target's memory (x86_64 layout),
//! read and written through the notification so every access is checked.

use trap::{Listener, NotifError, Notification};

/// sizeof(struct msghdr) on x86_64.
pub const MSGHDR_LEN: usize = 56;
/// sizeof(struct mmsghdr) on x86_64: a msghdr, `msg_len`, padding.
pub const MMSGHDR_LEN: u64 = 64;
/// Offset of `msg_len` in `struct mmsghdr`.
pub const MMSG_LEN_OFFSET: u64 = 56;
/// The kernel's limit on iovecs per call (UIO_MAXIOV).
const MAX_IOVECS: u64 = 1024;

const NAMELEN_OFFSET: u64 = 8;
const CONTROLLEN_OFFSET: u64 = 40;
const FLAGS_OFFSET: u64 = 48;

/// A `struct msghdr` as the target passed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHdr {
    /// Where it lives in the target.
    pub at: u64,
    /// `msg_name` (0 for none).
    pub name_ptr: u64,
    /// `msg_namelen`.
    pub name_len: u32,
    /// `msg_iov`.
    pub iov_ptr: u64,
    /// `msg_iovlen`.
    pub iov_len: u64,
    /// `msg_controllen`.
    pub control_len: u64,
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_ne_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

impl MsgHdr {
    /// Reads the msghdr at `at`.
    pub fn read(
        notification: &Notification,
        listener: &Listener,
        at: u64,
    ) -> Result<MsgHdr, NotifError> {
        let bytes = notification.read(listener, at, MSGHDR_LEN)?;
        Ok(MsgHdr {
            at,
            name_ptr: u64_at(&bytes, 0),
            name_len: u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes")),
            iov_ptr: u64_at(&bytes, 16),
            iov_len: u64_at(&bytes, 24),
            control_len: u64_at(&bytes, 40),
        })
    }

    /// Whether it names an address.
    pub fn has_name(&self) -> bool {
        self.name_ptr != 0 && self.name_len != 0
    }

    /// Its iovecs as (base, length) pairs.
    pub fn iovecs(
        &self,
        notification: &Notification,
        listener: &Listener,
    ) -> Result<Vec<(u64, u64)>, NotifError> {
        if self.iov_len > MAX_IOVECS {
            return Err(NotifError::BadLength {
                len: self.iov_len as i64,
                max: MAX_IOVECS as usize,
            });
        }
        let raw = notification.read(listener, self.iov_ptr, self.iov_len as usize * 16)?;
        Ok(raw.chunks_exact(16).map(|iov| (u64_at(iov, 0), u64_at(iov, 8))).collect())
    }

    /// After a receive: `msg_namelen`, `msg_controllen` (no ancillary data is delivered) and
    /// `msg_flags`.
    pub fn write_results(
        &self,
        notification: &Notification,
        listener: &Listener,
        name_len: u32,
        flags: i32,
    ) -> Result<(), NotifError> {
        notification.write(listener, self.at + NAMELEN_OFFSET, &name_len.to_ne_bytes())?;
        notification.write(listener, self.at + CONTROLLEN_OFFSET, &0u64.to_ne_bytes())?;
        notification.write(listener, self.at + FLAGS_OFFSET, &flags.to_ne_bytes())
    }
}

/// The total length of `iovecs` (EINVAL if it overflows, as the kernel says).
pub fn total_len(iovecs: &[(u64, u64)]) -> Result<u64, NotifError> {
    iovecs
        .iter()
        .try_fold(0u64, |sum, &(_, len)| sum.checked_add(len))
        .filter(|&sum| sum <= isize::MAX as u64)
        .ok_or(NotifError::BadLength { len: -1, max: isize::MAX as usize })
}

/// Reads up to `max` bytes from the target's buffers.
pub fn gather(
    notification: &Notification,
    listener: &Listener,
    iovecs: &[(u64, u64)],
    max: usize,
) -> Result<Vec<u8>, NotifError> {
    let mut data = Vec::new();
    for &(base, len) in iovecs {
        let take = (len as usize).min(max - data.len());
        if take == 0 {
            continue;
        }
        let start = data.len();
        data.resize(start + take, 0);
        notification.read_into(listener, base, &mut data[start..])?;
        if data.len() == max {
            break;
        }
    }
    Ok(data)
}

/// Writes `data` across the target's buffers; returns how much fitted.
pub fn scatter(
    notification: &Notification,
    listener: &Listener,
    iovecs: &[(u64, u64)],
    data: &[u8],
) -> Result<usize, NotifError> {
    let mut done = 0;
    for &(base, len) in iovecs {
        if done == data.len() {
            break;
        }
        let take = (len as usize).min(data.len() - done);
        if take > 0 {
            notification.write(listener, base, &data[done..done + take])?;
        }
        done += take;
    }
    Ok(done)
}
