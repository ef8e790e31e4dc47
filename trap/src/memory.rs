//! Reading and writing another process's memory: process_vm_readv/writev, with
//! `/proc/PID/mem` as the fallback where those are refused (EPERM) or absent (ENOSYS, a kernel
//! without CONFIG_CROSS_MEMORY_ATTACH).
//!
//! These functions know nothing of notifications: a pid may have been reused by the time they
//! run. [`crate::Notification::read`] and [`crate::Notification::write`] add the validity check
//! that makes them safe to use on a target.
//!
//! A range the target has not mapped (a bad pointer it passed) is [`MemoryError::Fault`], which
//! the supervisor answers with EFAULT as the kernel would: never a panic.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;

use thiserror::Error;

use crate::sys;

/// Why the memory of another process could not be read or written.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// Part of the range is not mapped (for writes: or not writable) in the target.
    #[error("{len} bytes at {addr:#x} are not mapped in process {pid} (EFAULT)")]
    Fault {
        /// The process (or thread).
        pid: u32,
        /// The start of the range.
        addr: u64,
        /// Its length.
        len: usize,
    },
    /// The process no longer exists.
    #[error("process {pid} no longer exists")]
    Gone {
        /// The process (or thread).
        pid: u32,
    },
    /// Anything else (usually EPERM: no ptrace rights over the process).
    #[error("could not {op} process {pid}'s memory: {source}; the supervisor needs ptrace rights over its targets")]
    Io {
        /// What failed ("read", "write", "open /proc/PID/mem of").
        op: &'static str,
        /// The process (or thread).
        pid: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl MemoryError {
    /// The errno to give the target when the supervisor cannot go on with its call.
    pub fn errno(&self) -> i32 {
        match self {
            MemoryError::Fault { .. } => libc::EFAULT,
            MemoryError::Gone { .. } => libc::ESRCH,
            MemoryError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// Reads `len` bytes at `addr` in process or thread `pid`.
pub fn read_memory(pid: u32, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
    let mut buf = vec![0u8; len];
    read_memory_into(pid, addr, &mut buf)?;
    Ok(buf)
}

/// Fills `buf` from `addr` in process or thread `pid`.
pub fn read_memory_into(pid: u32, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
    let len = buf.len();
    if len == 0 {
        return Ok(());
    }
    check_range(pid, addr, len)?;
    match sys::vm_read(pid, addr, buf) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(MemoryError::Fault { pid, addr, len }),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => {
            proc_mem(pid, Access::Read(buf), addr)
        }
        Err(e) => Err(classify(e, "read", pid, addr, len)),
    }
}

/// Writes `data` to `addr` in process or thread `pid`.
///
/// Unlike a debugger, this refuses read-only pages (the fallback through `/proc/PID/mem` would
/// write through them, which is why it is only taken when process_vm_writev is refused
/// altogether): a target that passes a pointer into its own code gets EFAULT, as from the
/// kernel.
pub fn write_memory(pid: u32, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
    let len = data.len();
    if len == 0 {
        return Ok(());
    }
    check_range(pid, addr, len)?;
    match sys::vm_write(pid, addr, data) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(MemoryError::Fault { pid, addr, len }),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => {
            proc_mem(pid, Access::Write(data), addr)
        }
        Err(e) => Err(classify(e, "write", pid, addr, len)),
    }
}

/// Writes several pieces, each at its own address in process `pid`, with one
/// process_vm_writev when the kernel allows it (one piece at a time through `/proc/PID/mem`
/// otherwise). A piece that does not fit mapped, writable memory is a fault, as in
/// [`write_memory`].
pub fn write_memory_pieces(pid: u32, pieces: &[(u64, &[u8])]) -> Result<(), MemoryError> {
    let total: usize = pieces.iter().map(|(_, data)| data.len()).sum();
    for &(addr, data) in pieces {
        check_range(pid, addr, data.len())?;
    }
    match sys::vm_write_pieces(pid, pieces) {
        Ok(n) if n == total => Ok(()),
        // Short: find which piece faulted, the way one write at a time reports it.
        Ok(_) => pieces.iter().try_for_each(|&(addr, data)| write_memory(pid, addr, data)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => {
            pieces.iter().try_for_each(|&(addr, data)| write_memory(pid, addr, data))
        }
        Err(e) => Err(classify(e, "write", pid, pieces.first().map_or(0, |p| p.0), total)),
    }
}

/// A range that wraps around the address space is a fault, not a request to the kernel.
fn check_range(pid: u32, addr: u64, len: usize) -> Result<(), MemoryError> {
    match addr.checked_add(len as u64) {
        Some(_) => Ok(()),
        None => Err(MemoryError::Fault { pid, addr, len }),
    }
}

fn classify(e: io::Error, op: &'static str, pid: u32, addr: u64, len: usize) -> MemoryError {
    match e.raw_os_error() {
        Some(libc::EFAULT | libc::EIO) => MemoryError::Fault { pid, addr, len },
        Some(libc::ESRCH | libc::ENOENT) => MemoryError::Gone { pid },
        _ => MemoryError::Io { op, pid, source: e },
    }
}

enum Access<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// The fallback: pread/pwrite on `/proc/PID/mem` (EIO there means an unmapped page).
fn proc_mem(pid: u32, access: Access<'_>, addr: u64) -> Result<(), MemoryError> {
    let path = format!("/proc/{pid}/mem");
    let write = matches!(access, Access::Write(_));
    let file = OpenOptions::new()
        .read(!write)
        .write(write)
        .open(&path)
        .map_err(|e| classify(e, "open /proc/PID/mem of", pid, addr, 0))?;
    match access {
        Access::Read(buf) => {
            let len = buf.len();
            let mut done = 0;
            while done < len {
                match file.read_at(&mut buf[done..], addr + done as u64) {
                    Ok(0) => return Err(MemoryError::Fault { pid, addr, len }),
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(classify(e, "read", pid, addr, len)),
                }
            }
        }
        Access::Write(data) => {
            let len = data.len();
            let mut done = 0;
            while done < len {
                match file.write_at(&data[done..], addr + done as u64) {
                    Ok(0) => return Err(MemoryError::Fault { pid, addr, len }),
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(classify(e, "write", pid, addr, len)),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Against this process itself: process_vm_readv and /proc/self/mem work on one's own pid,
    //! and the test owns the memory it reads.

    use super::*;

    fn me() -> u32 {
        std::process::id()
    }

    #[test]
    fn reads_and_writes_own_memory() {
        let src = *b"the target's bytes";
        let got = read_memory(me(), src.as_ptr() as u64, src.len()).unwrap();
        assert_eq!(got, src);
        let mut dst = [0u8; 5];
        write_memory(me(), dst.as_mut_ptr() as u64, b"hello").unwrap();
        assert_eq!(std::hint::black_box(&dst), b"hello");
    }

    #[test]
    fn pieces_land_each_at_its_address_and_a_bad_one_is_a_fault() {
        let mut name = [0u8; 16];
        let mut len = [0u8; 4];
        let pieces: [(u64, &[u8]); 2] = [
            (name.as_mut_ptr() as u64, b"sixteen bytes!!!"),
            (len.as_mut_ptr() as u64, &[16, 0, 0, 0]),
        ];
        write_memory_pieces(me(), &pieces).unwrap();
        assert_eq!(std::hint::black_box(&name), b"sixteen bytes!!!");
        assert_eq!(std::hint::black_box(&len), &[16, 0, 0, 0]);
        let bad: [(u64, &[u8]); 2] = [(len.as_mut_ptr() as u64, &[1, 2, 3, 4]), (8, b"x")];
        let err = write_memory_pieces(me(), &bad).unwrap_err();
        assert!(matches!(err, MemoryError::Fault { addr: 8, len: 1, .. }), "{err:?}");
    }

    #[test]
    fn the_proc_mem_fallback_reads_and_writes() {
        let src = *b"fallback";
        let mut buf = [0u8; 8];
        proc_mem(me(), Access::Read(&mut buf), src.as_ptr() as u64).unwrap();
        assert_eq!(buf, src);
        let mut dst = [0u8; 3];
        proc_mem(me(), Access::Write(b"abc"), dst.as_mut_ptr() as u64).unwrap();
        assert_eq!(std::hint::black_box(&dst), b"abc");
        let bad = proc_mem(me(), Access::Read(&mut buf), 8);
        assert!(matches!(bad, Err(MemoryError::Fault { addr: 8, len: 8, .. })), "{bad:?}");
    }

    #[test]
    fn bad_pointers_are_faults_not_panics() {
        for addr in [0, 8, 0xffff_ffff_ffff_0000, u64::MAX - 3] {
            let err = read_memory(me(), addr, 16).unwrap_err();
            assert!(matches!(err, MemoryError::Fault { .. }), "{addr:#x}: {err:?}");
            assert_eq!(err.errno(), libc::EFAULT);
        }
        // Writes into a read-only page are faults too (no FOLL_FORCE as through /proc/PID/mem).
        static CONSTANT: [u8; 4] = *b"ro!!";
        let err = write_memory(me(), CONSTANT.as_ptr() as u64, b"xx").unwrap_err();
        assert!(matches!(err, MemoryError::Fault { .. }), "{err:?}");
        assert_eq!(CONSTANT, *b"ro!!");
        assert!(read_memory(me(), 0, 0).unwrap().is_empty());
    }

    #[test]
    fn a_missing_process_is_gone() {
        // pid_max is at most 2^22: this pid cannot exist.
        let err = read_memory(u32::MAX >> 1, 0x1000, 4).unwrap_err();
        assert!(matches!(err, MemoryError::Gone { .. }), "{err:?}");
    }
}
