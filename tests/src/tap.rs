//! A TAP device: the engine's Ethernet port, with the kernel on the other side.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::sys;

/// An open TAP interface. The interface exists as long as this value does (it is not made
/// persistent), so dropping it removes the device wherever it is, even inside a namespace.
/// The descriptor is non-blocking.
#[derive(Debug)]
pub struct Tap {
    // A `File` owns the descriptor (an `OwnedFd` inside) and gives `Read`/`Write` on it.
    file: File,
    name: String,
}

impl Tap {
    /// Creates the TAP interface `name` in the caller's network namespace.
    pub fn open(name: &str) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("opening /dev/net/tun: {e}")))?;
        let name = sys::tun_set_iff_tap(file.as_fd(), name)
            .map_err(|e| io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")))?;
        Ok(Tap { file, name })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf`: `Ok(None)` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match (&self.file).read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one frame. A TAP write hands the frame to the kernel's input path whole or fails.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = (&self.file).write(frame)?;
        if n != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short TAP write: {n} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }

    /// Waits up to `timeout` for a frame to arrive; returns whether one is waiting.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        sys::poll_readable(self.file.as_fd(), timeout)
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
