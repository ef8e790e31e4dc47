//! A bulk-transfer workload: one TCP connection that moves a given number of bytes from one
//! side to the other, the way a well-behaved non-blocking program would (edge-triggered on
//! readiness events, writing and reading until `WouldBlock`, zero-copy calls).

use std::net::{SocketAddr, SocketAddrV4};

use super::pair::{Event, Pair};
use super::rng::word_at;
use super::Side;
use crate::socket::tcp::TcpInfo;
use crate::socket::{AddressFamily, Errno, Shutdown, SocketHandle, SocketType};
use crate::time::{Duration, Instant};

/// The bytes a [`Bulk`] sends: a pseudo-random stream addressed by offset, so that the
/// receiver checks every byte without keeping a copy, and a misplaced segment shows as a
/// mismatch at its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    seed: u64,
}

impl Pattern {
    /// The stream for `seed`.
    pub const fn new(seed: u64) -> Pattern {
        Pattern { seed }
    }

    /// The byte at stream offset `offset`.
    pub fn byte_at(&self, offset: u64) -> u8 {
        word_at(self.seed, offset / 8).to_le_bytes()[(offset % 8) as usize]
    }

    /// Writes the stream's bytes from `offset` on into `out`.
    pub fn fill(&self, offset: u64, out: &mut [u8]) {
        let head = out.len().min(((8 - offset % 8) % 8) as usize);
        let (head_bytes, body) = out.split_at_mut(head);
        for (i, byte) in head_bytes.iter_mut().enumerate() {
            *byte = self.byte_at(offset + i as u64);
        }
        let mut word = (offset + head as u64) / 8;
        let mut chunks = body.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&word_at(self.seed, word).to_le_bytes());
            word += 1;
        }
        let tail = chunks.into_remainder();
        let last = word_at(self.seed, word).to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }

    /// The stream offset of the first byte of `data` that differs from the stream at `offset`.
    pub fn find_mismatch(&self, offset: u64, data: &[u8]) -> Option<u64> {
        let head = data.len().min(((8 - offset % 8) % 8) as usize);
        let (head_bytes, body) = data.split_at(head);
        for (i, &byte) in head_bytes.iter().enumerate() {
            if byte != self.byte_at(offset + i as u64) {
                return Some(offset + i as u64);
            }
        }
        let body_offset = offset + head as u64;
        let mut chunks = body.chunks_exact(8);
        for (i, chunk) in (&mut chunks).enumerate() {
            let expected = word_at(self.seed, body_offset / 8 + i as u64).to_le_bytes();
            if chunk != expected {
                let at = chunk.iter().zip(expected).position(|(a, b)| *a != b).unwrap_or(0);
                return Some(body_offset + (i * 8 + at) as u64);
            }
        }
        let tail = chunks.remainder();
        let tail_offset = offset + (data.len() - tail.len()) as u64;
        let expected = word_at(self.seed, tail_offset / 8).to_le_bytes();
        tail.iter().zip(expected).position(|(a, b)| *a != b).map(|at| tail_offset + at as u64)
    }
}

/// What ended a [`Bulk`] transfer early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// A socket call failed where the workload did not expect it.
    #[error("{call} on side {side:?} failed: {errno}")]
    Call {
        /// The side the call went to.
        side: Side,
        /// The call (`"connect"`, `"recv"`, ...).
        call: &'static str,
        /// What it returned.
        errno: Errno,
    },
    /// The sender read data, though the receiver never sends any.
    #[error("side {side:?} read data from a peer that sends none")]
    UnexpectedData {
        /// The sending side.
        side: Side,
    },
}

/// One TCP connection moving `size` bytes from side `from` to the other: a listener on the
/// receiving side, a connect from the sending side, then `send_with` until done, shutdown of
/// the sending direction, `recv_with` until end of stream on the receiving side, which then
/// closes; the sender closes once it sees the receiver's FIN. Call [`poll`](Self::poll) from the
/// application hook of [`Pair::drive_until`].
#[derive(Debug)]
pub struct Bulk {
    from: Side,
    port: u16,
    size: u64,
    /// `None`: payload bytes are neither written nor checked (benchmarks measure the engine,
    /// not the pattern generator).
    pattern: Option<Pattern>,
    started: bool,
    listener: Option<SocketHandle>,
    sender: Option<SocketHandle>,
    receiver: Option<SocketHandle>,
    sent: u64,
    received: u64,
    shut_down: bool,
    receiver_done: bool,
    sender_done: bool,
    first_mismatch: Option<u64>,
    started_at: Instant,
    finished_at: Option<Instant>,
    sender_info: Option<TcpInfo>,
    error: Option<BulkError>,
}

impl Bulk {
    /// `size` bytes of [`Pattern::new(seed)`](Pattern) from `from` to the other side, which
    /// listens on `port`. Every received byte is checked against the pattern.
    pub fn new(from: Side, port: u16, size: u64, seed: u64) -> Bulk {
        Bulk {
            from,
            port,
            size,
            pattern: Some(Pattern::new(seed)),
            started: false,
            listener: None,
            sender: None,
            receiver: None,
            sent: 0,
            received: 0,
            shut_down: false,
            receiver_done: false,
            sender_done: false,
            first_mismatch: None,
            started_at: Instant::ZERO,
            finished_at: None,
            sender_info: None,
            error: None,
        }
    }

    /// Like [`new`](Self::new), but the payload is whatever the send buffer held and nothing is
    /// checked: for measuring the engine alone.
    pub fn unchecked(from: Side, port: u16, size: u64) -> Bulk {
        Bulk { pattern: None, ..Bulk::new(from, port, size, 0) }
    }

    /// The sending side.
    pub fn from(&self) -> Side {
        self.from
    }

    /// Bytes to move.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes the sender has written so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes the receiver has read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The stream offset of the first received byte that was not what was sent.
    pub fn first_mismatch(&self) -> Option<u64> {
        self.first_mismatch
    }

    /// The failed call that ended the transfer early, if one did.
    pub fn error(&self) -> Option<BulkError> {
        self.error
    }

    /// True once both ends have closed (or a call failed).
    pub fn is_done(&self) -> bool {
        self.error.is_some() || (self.receiver_done && self.sender_done)
    }

    /// When the connect was issued.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// When the receiver read end of stream.
    pub fn finished_at(&self) -> Option<Instant> {
        self.finished_at
    }

    /// Virtual time from connect to end of stream at the receiver.
    pub fn elapsed(&self) -> Option<Duration> {
        self.finished_at.map(|end| end - self.started_at)
    }

    /// Goodput in bits per second of virtual time, once finished.
    pub fn goodput_bps(&self) -> Option<f64> {
        let elapsed = self.elapsed()?.as_secs_f64();
        (elapsed > 0.0).then(|| self.received as f64 * 8.0 / elapsed)
    }

    /// The sender's TCP_INFO when it saw the receiver's FIN, just before it closed.
    pub fn sender_info(&self) -> Option<&TcpInfo> {
        self.sender_info.as_ref()
    }

    /// The sending socket while it is open (for TCP_INFO mid-transfer).
    pub fn sender(&self) -> Option<SocketHandle> {
        self.sender.filter(|_| !self.sender_done)
    }

    /// One application turn: opens the sockets on the first call, then acts on `events`.
    /// `observe(side, bytes)` sees every byte the sender writes (`side` = the sender) and the
    /// receiver reads (`side` = the receiver), in stream order, for hashing. Returns true when
    /// done.
    pub fn poll(
        &mut self,
        pair: &mut Pair,
        events: &[Event],
        observe: &mut impl FnMut(Side, &[u8]),
    ) -> bool {
        if self.is_done() {
            return true;
        }
        if !self.started {
            self.started = true;
            if let Err(error) = self.start(pair) {
                self.error = Some(error);
                return true;
            }
        }
        let to = self.from.peer();
        for &(side, handle) in events {
            let result = if side == to && Some(handle) == self.listener {
                self.on_listener(pair, observe)
            } else if side == self.from && Some(handle) == self.sender && !self.sender_done {
                self.on_sender(pair, observe)
            } else if side == to && Some(handle) == self.receiver && !self.receiver_done {
                self.on_receiver(pair, observe)
            } else {
                Ok(())
            };
            if let Err(error) = result {
                self.error = Some(error);
                break;
            }
        }
        self.is_done()
    }

    fn start(&mut self, pair: &mut Pair) -> Result<(), BulkError> {
        let (from, to) = (self.from, self.from.peer());
        let addr = SocketAddr::V4(SocketAddrV4::new(Pair::addr(to), self.port));
        let fail = |side, call| move |errno| BulkError::Call { side, call, errno };
        let receiving = pair.stack_mut(to);
        let listener = receiving
            .socket(AddressFamily::Inet, SocketType::Stream)
            .map_err(fail(to, "socket"))?;
        self.listener = Some(listener);
        receiving.bind(listener, addr).map_err(fail(to, "bind"))?;
        receiving.listen(listener, 1).map_err(fail(to, "listen"))?;
        let now = pair.now();
        let sending = pair.stack_mut(from);
        let sender = sending
            .socket(AddressFamily::Inet, SocketType::Stream)
            .map_err(fail(from, "socket"))?;
        self.sender = Some(sender);
        self.started_at = now;
        match sending.connect(now, sender, addr) {
            Ok(()) | Err(Errno::InProgress) => Ok(()),
            Err(errno) => Err(fail(from, "connect")(errno)),
        }
    }

    fn on_listener(
        &mut self,
        pair: &mut Pair,
        observe: &mut impl FnMut(Side, &[u8]),
    ) -> Result<(), BulkError> {
        let to = self.from.peer();
        let Some(listener) = self.listener else { return Ok(()) };
        let now = pair.now();
        let stack = pair.stack_mut(to);
        match stack.accept(listener) {
            Ok((receiver, _peer)) => {
                self.receiver = Some(receiver);
                // One connection is all this workload takes.
                self.listener = None;
                stack.close(now, listener).map_err(|errno| BulkError::Call {
                    side: to,
                    call: "close",
                    errno,
                })?;
                // Data may have arrived before the accept; no event will repeat it.
                self.on_receiver(pair, observe)
            }
            Err(Errno::WouldBlock) => Ok(()),
            Err(errno) => Err(BulkError::Call { side: to, call: "accept", errno }),
        }
    }

    fn on_sender(
        &mut self,
        pair: &mut Pair,
        observe: &mut impl FnMut(Side, &[u8]),
    ) -> Result<(), BulkError> {
        let from = self.from;
        let Some(sender) = self.sender else { return Ok(()) };
        let now = pair.now();
        let stack = pair.stack_mut(from);
        let fail = |call| move |errno| BulkError::Call { side: from, call, errno };
        let readiness = stack.readiness(sender).map_err(fail("poll"))?;
        if readiness.error {
            if let Some(errno) = stack.take_error(sender).map_err(fail("getsockopt"))? {
                return Err(fail("SO_ERROR")(errno));
            }
        }
        while readiness.writable && self.sent < self.size {
            let remaining = self.size - self.sent;
            let (offset, pattern) = (self.sent, self.pattern);
            let written = stack.send_with(sender, |first, second| {
                let mut written = 0;
                for part in [first, second] {
                    let room =
                        part.len().min(usize::try_from(remaining).unwrap_or(usize::MAX) - written);
                    let part = &mut part[..room];
                    if let Some(pattern) = pattern {
                        pattern.fill(offset + written as u64, part);
                        observe(from, part);
                    }
                    written += room;
                }
                written
            });
            match written {
                Ok(0) | Err(Errno::WouldBlock) => break,
                Ok(n) => self.sent += n as u64,
                Err(errno) => return Err(fail("send")(errno)),
            }
        }
        if self.sent == self.size && !self.shut_down {
            self.shut_down = true;
            stack.shutdown(now, sender, Shutdown::Write).map_err(fail("shutdown"))?;
        }
        if readiness.readable {
            let mut byte = [0u8; 1];
            match stack.recv(sender, &mut byte) {
                Ok(0) => {
                    self.sender_info = Some(stack.tcp_info(sender).map_err(fail("TCP_INFO"))?);
                    self.sender_done = true;
                    stack.close(now, sender).map_err(fail("close"))?;
                }
                Ok(_) => return Err(BulkError::UnexpectedData { side: from }),
                Err(Errno::WouldBlock) => {}
                Err(errno) => return Err(fail("recv")(errno)),
            }
        }
        Ok(())
    }

    fn on_receiver(
        &mut self,
        pair: &mut Pair,
        observe: &mut impl FnMut(Side, &[u8]),
    ) -> Result<(), BulkError> {
        let to = self.from.peer();
        let Some(receiver) = self.receiver else { return Ok(()) };
        let now = pair.now();
        let stack = pair.stack_mut(to);
        let fail = |call| move |errno| BulkError::Call { side: to, call, errno };
        loop {
            let (offset, pattern) = (self.received, self.pattern);
            let mut mismatch = None;
            let read = stack.recv_with(receiver, |first, second| {
                let mut read = 0;
                for part in [first, second] {
                    if let Some(pattern) = pattern {
                        if mismatch.is_none() {
                            mismatch = pattern.find_mismatch(offset + read as u64, part);
                        }
                        observe(to, part);
                    }
                    read += part.len();
                }
                read
            });
            if self.first_mismatch.is_none() {
                self.first_mismatch = mismatch;
            }
            match read {
                Ok(0) => {
                    self.finished_at = Some(now);
                    self.receiver_done = true;
                    return stack.close(now, receiver).map_err(fail("close"));
                }
                Ok(n) => self.received += n as u64,
                Err(Errno::WouldBlock) => return Ok(()),
                Err(errno) => return Err(fail("recv")(errno)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_fill_is_the_same_stream_at_any_alignment() {
        let pattern = Pattern::new(42);
        let mut whole = [0u8; 100];
        pattern.fill(0, &mut whole);
        for (i, &byte) in whole.iter().enumerate() {
            assert_eq!(byte, pattern.byte_at(i as u64));
        }
        for start in 0..20 {
            for len in 0..40 {
                let mut part = vec![0u8; len];
                pattern.fill(start as u64, &mut part);
                assert_eq!(part, whole[start..start + len]);
                assert_eq!(pattern.find_mismatch(start as u64, &part), None);
            }
        }
    }

    #[test]
    fn pattern_finds_the_first_wrong_byte() {
        let pattern = Pattern::new(7);
        let mut data = vec![0u8; 64];
        pattern.fill(3, &mut data);
        for wrong in [0, 4, 5, 12, 13, 60, 63] {
            let mut copy = data.clone();
            copy[wrong] ^= 0x10;
            assert_eq!(pattern.find_mismatch(3, &copy), Some(3 + wrong as u64), "byte {wrong}");
        }
        let shifted = (0..64u64).find(|&i| data[i as usize] != pattern.byte_at(4 + i));
        assert_eq!(pattern.find_mismatch(4, &data), shifted.map(|i| 4 + i));
        assert_ne!(Pattern::new(8).find_mismatch(3, &data), None);
    }
}
