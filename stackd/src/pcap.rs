//! Packet capture in the classic pcap format (LINKTYPE_ETHERNET, microsecond timestamps), which
//! tcpdump, Wireshark and every other capture tool read.
//!
//! The format: a 24-byte file header (magic, version 2.4, snapshot length, link type), then per
//! frame a 16-byte record header (seconds, microseconds, captured length, original length) and
//! the captured bytes. Fields are written little-endian; readers recognise the byte order by the
//! magic number.
//!
//! Capture must never stop the daemon: a failed write disables the writer, logs one error and
//! returns it, and every later call returns [`PcapError::Disabled`] at once. The caller decides
//! whether that matters (typically: drop the writer and go on).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The magic number of microsecond-resolution pcap files.
const MAGIC_MICROSECONDS: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
/// Frames longer than this are captured truncated (the original length is kept). Jumbo frames
/// and the shm wire's 64 KiB offload segments (65549 bytes with the Ethernet header) fit: the
/// value is tcpdump's own default.
pub const SNAPLEN: u32 = 262_144;
/// Size of the write buffer: flushes happen about every few dozen full-size frames.
const BUFFER: usize = 64 << 10;

/// Why a capture write failed.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// An I/O error; the writer is disabled from now on.
    #[error("pcap capture to {path}: {step}: {source}")]
    Io {
        /// The capture file.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An earlier error disabled the writer.
    #[error("pcap capture to {path} is disabled after an earlier error")]
    Disabled {
        /// The capture file.
        path: PathBuf,
    },
}

/// A capture file being written.
#[derive(Debug)]
pub struct PcapWriter {
    out: BufWriter<File>,
    path: PathBuf,
    failed: bool,
}

impl PcapWriter {
    /// Creates (or truncates) `path` and writes the file header.
    pub fn create(path: impl AsRef<Path>) -> Result<PcapWriter, PcapError> {
        let path = path.as_ref().to_path_buf();
        // The daemon runs as root and a capture holds every frame's payload: never follow a
        // symlink someone planted in a shared directory (it could point at /etc/shadow), write
        // only to a regular file or a character device (/dev/null), and keep it private (0600).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .and_then(|file| {
                let kind = file.metadata()?.file_type();
                if kind.is_file() || kind.is_char_device() {
                    Ok(file)
                } else {
                    Err(std::io::Error::other("not a regular file or a character device"))
                }
            })
            .map_err(|source| PcapError::Io {
                path: path.clone(),
                step: "create the file",
                source,
            })?;
        let mut writer =
            PcapWriter { out: BufWriter::with_capacity(BUFFER, file), path, failed: false };
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&MAGIC_MICROSECONDS.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs (8..16) stay zero: timestamps are UTC.
        header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        writer.guard("write the file header", |out| out.write_all(&header))?;
        Ok(writer)
    }

    /// The capture file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once an error has disabled the writer.
    pub fn is_disabled(&self) -> bool {
        self.failed
    }

    /// Appends one Ethernet frame seen at `timestamp` (wall-clock; times before 1970 are
    /// written as 1970, after 2106 saturate).
    pub fn write(&mut self, timestamp: SystemTime, frame: &[u8]) -> Result<(), PcapError> {
        let since_epoch = timestamp.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX);
        let original = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let captured = original.min(SNAPLEN);
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&seconds.to_le_bytes());
        record[4..8].copy_from_slice(&since_epoch.subsec_micros().to_le_bytes());
        record[8..12].copy_from_slice(&captured.to_le_bytes());
        record[12..16].copy_from_slice(&original.to_le_bytes());
        self.guard("write a frame", |out| {
            out.write_all(&record)?;
            out.write_all(&frame[..captured as usize])
        })
    }

    /// Pushes buffered frames to the file (so that a reader sees them now).
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.guard("flush", |out| out.flush())
    }

    /// Runs one write step unless disabled; on failure disables the writer and logs once.
    fn guard(
        &mut self,
        step: &'static str,
        op: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    ) -> Result<(), PcapError> {
        if self.failed {
            return Err(PcapError::Disabled { path: self.path.clone() });
        }
        op(&mut self.out).map_err(|source| {
            self.failed = true;
            let error = PcapError::Io { path: self.path.clone(), step, source };
            tracing::error!(%error, "packet capture disabled");
            error
        })
    }
}

impl Drop for PcapWriter {
    fn drop(&mut self) {
        if !self.failed {
            // Errors were reported by `guard`; there is nobody left to return them to.
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::*;

    /// A capture file in the system's temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> TempFile {
            TempFile(std::env::temp_dir().join(format!("stackd-{tag}-{}.pcap", std::process::id())))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// One parsed record: seconds, microseconds, original length, captured bytes.
    type Record = (u32, u32, u32, Vec<u8>);

    /// An independent reader of what the writer should produce: the file header's fields, then
    /// the records.
    fn parse(bytes: &[u8]) -> ([u32; 5], Vec<Record>) {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u16_at =
            |at: usize| u32::from(u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()));
        let header = [u32_at(0), u16_at(4), u16_at(6), u32_at(16), u32_at(20)];
        assert_eq!(u32_at(8), 0, "thiszone");
        assert_eq!(u32_at(12), 0, "sigfigs");
        let mut records = Vec::new();
        let mut at = 24;
        while at < bytes.len() {
            let captured = u32_at(at + 8) as usize;
            let body = bytes[at + 16..at + 16 + captured].to_vec();
            records.push((u32_at(at), u32_at(at + 4), u32_at(at + 12), body));
            at += 16 + captured;
        }
        assert_eq!(at, bytes.len(), "no trailing bytes");
        (header, records)
    }

    /// An ARP request from 02:00:00:00:00:01 (10.77.0.2) for 10.77.0.1.
    fn arp_frame() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 1, 10, 77, 0, 2]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 77, 0, 1]);
        f
    }

    #[test]
    fn writes_headers_and_frames_readers_parse_back() {
        let file = TempFile::new("roundtrip");
        let t0 = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let frames = [arp_frame(), vec![0xab; 1514], vec![7; 65_549], vec![9; 300_000]];
        {
            let mut pcap = PcapWriter::create(&file.0).unwrap();
            for (i, frame) in frames.iter().enumerate() {
                pcap.write(t0 + Duration::from_millis(250 * i as u64), frame).unwrap();
            }
            // Dropped here: the buffer reaches the file without an explicit flush.
        }
        let bytes = std::fs::read(&file.0).unwrap();
        let (header, records) = parse(&bytes);
        assert_eq!(header, [0xa1b2_c3d4, 2, 4, 262_144, 1]);
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian magic");
        assert_eq!(records.len(), 4);
        assert_eq!(records[0], (1_700_000_000, 123_456, 42, frames[0].clone()));
        assert_eq!(records[1], (1_700_000_000, 373_456, 1514, frames[1].clone()));
        // The shm wire's largest offload frame, whole.
        assert_eq!(records[2], (1_700_000_000, 623_456, 65_549, frames[2].clone()));
        // Longer than the snapshot length: truncated, original length kept.
        assert_eq!((records[3].0, records[3].1, records[3].2), (1_700_000_000, 873_456, 300_000));
        assert_eq!(records[3].3, frames[3][..262_144].to_vec());
    }

    #[test]
    fn flush_makes_frames_visible_while_writing() {
        let file = TempFile::new("flush");
        let mut pcap = PcapWriter::create(&file.0).unwrap();
        pcap.write(UNIX_EPOCH, &arp_frame()).unwrap();
        assert_eq!(std::fs::read(&file.0).unwrap().len(), 0, "still buffered");
        pcap.flush().unwrap();
        assert_eq!(std::fs::read(&file.0).unwrap().len(), 24 + 16 + 42);
    }

    #[test]
    fn an_io_error_disables_the_writer() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        if !Path::new("/dev/full").exists() {
            eprintln!("skipping: no /dev/full");
            return;
        }
        let mut pcap = PcapWriter::create("/dev/full").unwrap();
        pcap.write(UNIX_EPOCH, &arp_frame()).unwrap();
        let err = pcap.flush().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("pcap capture to /dev/full: flush: No space left on device"),
            "{err}"
        );
        assert!(pcap.is_disabled());
        assert!(matches!(pcap.write(UNIX_EPOCH, &arp_frame()), Err(PcapError::Disabled { .. })));
        assert!(matches!(pcap.flush(), Err(PcapError::Disabled { .. })));
    }

    #[test]
    fn create_names_the_file_it_could_not_create() {
        let err = PcapWriter::create("/nonexistent-dir/x.pcap").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("pcap capture to /nonexistent-dir/x.pcap: create the file:"),
            "{err}"
        );
    }

    #[test]
    fn tcpdump_reads_the_file() {
        let Ok(version) = Command::new("tcpdump").arg("--version").output() else {
            eprintln!("skipping the tcpdump check: tcpdump is not installed");
            return;
        };
        assert!(version.status.success());
        let file = TempFile::new("tcpdump");
        {
            let mut pcap = PcapWriter::create(&file.0).unwrap();
            pcap.write(UNIX_EPOCH + Duration::from_secs(1), &arp_frame()).unwrap();
        }
        let out = Command::new("tcpdump")
            .args(["-r"])
            .arg(&file.0)
            .args(["-nn", "-tt"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "tcpdump failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            stdout.trim(),
            "1.000000 ARP, Request who-has 10.77.0.1 tell 10.77.0.2, length 28"
        );
    }
}

#[cfg(test)]
mod safety_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_planted_symlink_or_fifo_is_refused_and_captures_are_private() {
        let dir = std::env::temp_dir().join(format!("stackd-pcap-safety-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "do not truncate").unwrap();
        let link = dir.join("capture.pcap");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(PcapWriter::create(&link).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not truncate");

        let fifo = dir.join("fifo.pcap");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(
            PcapWriter::create(&fifo).is_err(),
            "refused at once, without blocking on the FIFO"
        );

        let real = dir.join("real.pcap");
        drop(PcapWriter::create(&real).unwrap());
        let mode = std::fs::metadata(&real).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
