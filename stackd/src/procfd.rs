//! Reaching a program's end of a carrier from the daemon, when a connection is reset.
//!
//! A unix stream socket whose peer closes reads as end-of-stream — unless the closing end
//! still had unread data, in which case the survivor reads ECONNRESET (DESIGN.md, "Resets").
//! The daemon gives its end of the carrier unread data by writing one byte through the
//! program's end, which it reaches with pidfd_getfd from a process of the owning session (or a
//! descendant) that holds it, found by the end's inode in `/proc/PID/fd`. Best effort: a
//! program end nobody in the session's tree holds, or a process the daemon may not trace,
//! leaves the ordinary end-of-stream.
//!
//! The crate's `unsafe` here is two system calls (pidfd_open, pidfd_getfd) that libc does not
//! wrap.

#![allow(unsafe_code)]

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{self, MsgFlags};

/// The most processes one search visits (a fork bomb must not make a reset expensive).
const MAX_PROCESSES: usize = 4096;

/// Writes one byte through the program end with inode `inode`, held by one of `pids` or
/// their descendants. Returns whether it found it.
pub fn poke_program_end(inode: u64, pids: &[u32]) -> bool {
    let wanted = format!("socket:[{inode}]");
    let mut queue = pids.to_vec();
    let mut seen = HashSet::new();
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) || seen.len() > MAX_PROCESSES {
            continue;
        }
        if let Some(fd) = find_descriptor(pid, &wanted) {
            if let Some(end) = take_descriptor(pid, fd) {
                let sent = socket::send(
                    end.as_raw_fd(),
                    &[0],
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                );
                return sent.is_ok();
            }
        }
        queue.extend(children(pid));
    }
    false
}

fn find_descriptor(pid: u32, wanted: &str) -> Option<i32> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten().find_map(|entry| {
        let target = std::fs::read_link(entry.path()).ok()?;
        (target.as_os_str() == wanted).then(|| entry.file_name().to_str()?.parse().ok())?
    })
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>()
        })
        .collect()
}

/// A duplicate of descriptor `fd` of process `pid`.
fn take_descriptor(pid: u32, fd: i32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd takes three integers and touches no memory of ours.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if dup < 0 {
        return None;
    }
    // SAFETY: as above, a fresh descriptor that only we own.
    Some(unsafe { OwnedFd::from_raw_fd(dup as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_poked_end_makes_the_survivor_read_connection_reset() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let inode = nix::sys::stat::fstat(&theirs).unwrap().st_ino;
        assert!(poke_program_end(inode, &[std::process::id()]));
        drop(ours);
        let mut buf = [0u8; 8];
        let error = theirs.read(&mut buf).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ECONNRESET));
    }

    #[test]
    fn an_end_nobody_holds_is_not_found() {
        assert!(!poke_program_end(u64::MAX, &[std::process::id()]));
    }
}
