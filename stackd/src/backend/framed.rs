//! The engine of backends that move one frame per system call (a TAP descriptor, a datagram
//! socket): receive and transmit buffers, the one frame held back when the device is full, and
//! the counters.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixDatagram;

use super::{BackendError, BackendStats, ETHERNET_HEADER};

/// A descriptor that carries exactly one frame per read and per write.
pub(crate) trait FrameIo {
    /// Reads one frame (truncated to `buf`).
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame.
    fn send_frame(&self, frame: &[u8]) -> io::Result<usize>;
}

impl FrameIo for File {
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn send_frame(&self, frame: &[u8]) -> io::Result<usize> {
        (&*self).write(frame)
    }
}

impl FrameIo for UnixDatagram {
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
    fn send_frame(&self, frame: &[u8]) -> io::Result<usize> {
        self.send(frame)
    }
}

/// What an error of the device means for the frame at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The device is full (or the call was interrupted): keep the frame, try later.
    Retry,
    /// The link is down or the device refused this frame: drop it, count it, go on.
    Drop,
    /// The device is gone.
    Gone,
    /// Unexpected.
    Fail,
}

/// How a device's errors are to be read (TAP and sockets say "link down" differently).
pub(crate) type Classify = fn(&io::Error) -> Verdict;

/// Buffers and state of a one-frame-per-call device.
#[derive(Debug)]
pub(crate) struct Framed<D> {
    pub(crate) io: D,
    pub(crate) name: String,
    classify: Classify,
    /// One byte longer than the largest frame, so that a read filling it shows truncation.
    rx_buf: Box<[u8]>,
    /// Exactly `mtu + 14` bytes: what `transmit` lends.
    tx_buf: Box<[u8]>,
    /// A frame in `tx_buf` the device had no room for, to write before building another.
    held: Option<usize>,
    tx_blocked: bool,
    /// Whether a dropped-frame warning was already logged (one per backend).
    warned_drop: bool,
    pub(crate) stats: BackendStats,
}

impl<D: FrameIo> Framed<D> {
    pub(crate) fn new(io: D, name: String, mtu: usize, classify: Classify) -> Framed<D> {
        let frame = mtu + ETHERNET_HEADER;
        Framed {
            io,
            name,
            classify,
            rx_buf: vec![0; frame + 1].into_boxed_slice(),
            tx_buf: vec![0; frame].into_boxed_slice(),
            held: None,
            tx_blocked: false,
            warned_drop: false,
            stats: BackendStats::default(),
        }
    }

    pub(crate) fn tx_blocked(&self) -> bool {
        self.tx_blocked
    }

    pub(crate) fn receive(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BackendError> {
        let mut delivered = 0;
        while delivered < max {
            let len = match self.io.recv_frame(&mut self.rx_buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.failure("read a frame", e)),
            };
            if len == 0 {
                self.stats.rx_ignored += 1;
            } else if len >= self.rx_buf.len() {
                self.stats.rx_oversized += 1;
            } else {
                deliver(&self.rx_buf[..len]);
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += len as u64;
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    pub(crate) fn transmit(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError> {
        let mut accepted = 0;
        self.tx_blocked = false;
        loop {
            if self.held.is_some() && !self.write_held()? {
                return Ok(accepted);
            }
            let Some(len) = build(&mut self.tx_buf) else {
                return Ok(accepted);
            };
            if len > self.tx_buf.len() {
                return Err(BackendError::FrameTooLong {
                    iface: self.name.clone(),
                    len,
                    capacity: self.tx_buf.len(),
                });
            }
            self.held = Some(len);
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += len as u64;
            accepted += 1;
        }
    }

    pub(crate) fn flush(&mut self) -> Result<(), BackendError> {
        self.tx_blocked = false;
        self.write_held()?;
        Ok(())
    }

    /// Writes the held frame, if any. False if the device is full (the frame stays held).
    fn write_held(&mut self) -> Result<bool, BackendError> {
        let Some(len) = self.held else {
            return Ok(true);
        };
        loop {
            match self.io.send_frame(&self.tx_buf[..len]) {
                Ok(_) => break,
                Err(e) => match (self.classify)(&e) {
                    Verdict::Retry if e.kind() == io::ErrorKind::Interrupted => continue,
                    Verdict::Retry => {
                        self.tx_blocked = true;
                        return Ok(false);
                    }
                    Verdict::Drop => {
                        self.stats.tx_dropped += 1;
                        if !self.warned_drop {
                            self.warned_drop = true;
                            tracing::warn!(iface = %self.name, error = %e,
                                "dropping frames the device refuses (further drops are only counted)");
                        }
                        break;
                    }
                    Verdict::Gone | Verdict::Fail => {
                        self.held = None;
                        return Err(self.failure("write a frame", e));
                    }
                },
            }
        }
        self.held = None;
        Ok(true)
    }

    fn failure(&self, step: &'static str, source: io::Error) -> BackendError {
        match (self.classify)(&source) {
            Verdict::Gone => BackendError::DeviceGone { iface: self.name.clone(), source },
            _ => BackendError::Io { iface: self.name.clone(), step, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    use super::*;

    /// A device scripted with the results of its next writes; reads come from a queue.
    #[derive(Default)]
    struct Scripted {
        reads: RefCell<VecDeque<io::Result<Vec<u8>>>>,
        writes: RefCell<VecDeque<io::Result<()>>>,
        written: RefCell<Vec<Vec<u8>>>,
        write_calls: Cell<usize>,
    }

    impl FrameIo for Scripted {
        fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.borrow_mut().pop_front() {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(Err(e)) => Err(e),
                Some(Ok(frame)) => {
                    let n = frame.len().min(buf.len());
                    buf[..n].copy_from_slice(&frame[..n]);
                    Ok(n)
                }
            }
        }
        fn send_frame(&self, frame: &[u8]) -> io::Result<usize> {
            self.write_calls.set(self.write_calls.get() + 1);
            match self.writes.borrow_mut().pop_front() {
                Some(Err(e)) => Err(e),
                _ => {
                    self.written.borrow_mut().push(frame.to_vec());
                    Ok(frame.len())
                }
            }
        }
    }

    fn classify(e: &io::Error) -> Verdict {
        match e.raw_os_error() {
            _ if e.kind() == io::ErrorKind::WouldBlock => Verdict::Retry,
            Some(libc::EIO) => Verdict::Drop,
            Some(libc::EBADFD) => Verdict::Gone,
            _ => Verdict::Fail,
        }
    }

    fn device(mtu: usize) -> Framed<Scripted> {
        Framed::new(Scripted::default(), "test0".into(), mtu, classify)
    }

    /// A builder that emits `frames` (each a length and a fill byte), then nothing.
    fn builder(frames: &[(usize, u8)]) -> impl FnMut(&mut [u8]) -> Option<usize> + '_ {
        let mut next = 0;
        move |buf| {
            let &(len, byte) = frames.get(next)?;
            next += 1;
            buf[..len].fill(byte);
            Some(len)
        }
    }

    #[test]
    fn transmit_lends_mtu_plus_header_and_writes_each_frame() {
        let mut dev = device(100);
        let mut seen = Vec::new();
        let mut frames = builder(&[(60, 1), (114, 2)]);
        let sent = dev
            .transmit(&mut |buf| {
                seen.push(buf.len());
                frames(buf)
            })
            .unwrap();
        assert_eq!(sent, 2);
        assert_eq!(seen, [114, 114, 114]);
        assert_eq!(*dev.io.written.borrow(), [vec![1; 60], vec![2; 114]]);
        assert!(!dev.tx_blocked());
        assert_eq!((dev.stats.tx_frames, dev.stats.tx_bytes), (2, 174));
    }

    #[test]
    fn a_full_device_holds_the_frame_and_stops_building() {
        let mut dev = device(100);
        dev.io.writes.borrow_mut().extend([Ok(()), Err(io::ErrorKind::WouldBlock.into())]);
        let mut calls = 0;
        let mut frames = builder(&[(60, 1), (61, 2), (62, 3)]);
        let sent = dev
            .transmit(&mut |buf| {
                calls += 1;
                frames(buf)
            })
            .unwrap();
        // Frame 2 was built, refused for room and held: the builder was not asked for frame 3.
        assert_eq!((sent, calls), (2, 2));
        assert!(dev.tx_blocked());
        assert_eq!(dev.io.written.borrow().len(), 1);
        // The next flush writes the held frame, unchanged.
        dev.flush().unwrap();
        assert!(!dev.tx_blocked());
        assert_eq!(*dev.io.written.borrow(), [vec![1; 60], vec![2; 61]]);
        // And transmit goes on with frame 3.
        let sent = dev.transmit(&mut frames).unwrap();
        assert_eq!(sent, 1);
        assert_eq!(dev.io.written.borrow()[2], vec![3; 62]);
    }

    #[test]
    fn a_down_link_drops_and_counts_frames() {
        let mut dev = device(100);
        dev.io.writes.borrow_mut().extend([Err(io::Error::from_raw_os_error(libc::EIO))]);
        let sent = dev.transmit(&mut builder(&[(60, 1), (60, 2)])).unwrap();
        assert_eq!(sent, 2);
        assert_eq!(dev.stats.tx_dropped, 1);
        assert_eq!(*dev.io.written.borrow(), [vec![2; 60]]);
    }

    #[test]
    fn a_gone_device_is_an_error() {
        let mut dev = device(100);
        dev.io.writes.borrow_mut().extend([Err(io::Error::from_raw_os_error(libc::EBADFD))]);
        let err = dev.transmit(&mut builder(&[(60, 1)])).unwrap_err();
        assert!(matches!(err, BackendError::DeviceGone { .. }), "{err}");
        dev.io.reads.borrow_mut().push_back(Err(io::Error::from_raw_os_error(libc::EBADFD)));
        let err = dev.receive(8, &mut |_| {}).unwrap_err();
        assert!(matches!(err, BackendError::DeviceGone { .. }), "{err}");
    }

    #[test]
    fn an_overlong_build_is_refused() {
        let mut dev = device(100);
        let err = dev.transmit(&mut |_| Some(115)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test0: the frame builder returned 115 bytes for a 114-byte buffer"
        );
        assert!(dev.io.written.borrow().is_empty());
    }

    #[test]
    fn receive_honours_max_and_drops_oversized_and_empty_frames() {
        let mut dev = device(100);
        dev.io.reads.borrow_mut().extend([
            Ok(vec![1; 60]),
            Ok(vec![]),
            Ok(vec![2; 115]),
            Ok(vec![3; 114]),
            Ok(vec![4; 64]),
            Err(io::ErrorKind::Interrupted.into()),
            Ok(vec![5; 64]),
        ]);
        let mut got = Vec::new();
        assert_eq!(dev.receive(3, &mut |f| got.push(f.to_vec())).unwrap(), 3);
        assert_eq!(got, [vec![1; 60], vec![3; 114], vec![4; 64]]);
        assert_eq!(dev.receive(3, &mut |f| got.push(f.to_vec())).unwrap(), 1);
        assert_eq!(dev.receive(3, &mut |f| got.push(f.to_vec())).unwrap(), 0);
        assert_eq!(got.last(), Some(&vec![5; 64]));
        let s = dev.stats;
        assert_eq!((s.rx_frames, s.rx_oversized, s.rx_ignored), (4, 1, 1));
        assert_eq!(s.rx_bytes, 60 + 114 + 64 + 64);
    }
}
