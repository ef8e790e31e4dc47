//! UDP sockets (RFC 768): a bounded queue of received datagrams with their sources, an optional
//! default peer (connect), and the error an ICMP message left for a connected socket.
//!
//! Sending needs no per-socket queue: the stack turns a datagram into frames at once.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use crate::socket::{Errno, Readiness};

/// Bytes charged per queued datagram beyond its payload, so that a flood of empty datagrams
/// cannot queue without bound (the kernel charges the skb overhead the same way).
const DATAGRAM_OVERHEAD: usize = 64;

/// One UDP socket's state.
#[derive(Debug, Default)]
pub(crate) struct UdpSocket {
    /// Bound address (`None` until bind or an implicit bind by send/connect).
    pub(crate) local: Option<SocketAddrV4>,
    /// Default peer set by connect; datagrams from other sources are then dropped.
    pub(crate) peer: Option<SocketAddrV4>,
    queue: VecDeque<(SocketAddrV4, Box<[u8]>)>,
    queued_bytes: usize,
    error: Option<Errno>,
    read_shut: bool,
    write_shut: bool,
}

impl UdpSocket {
    /// Queues a received datagram if the receive buffer (`limit` bytes) has room; false if it
    /// was dropped.
    pub(crate) fn deliver(&mut self, source: SocketAddrV4, payload: &[u8], limit: usize) -> bool {
        if self.read_shut {
            return true; // accepted and discarded, as after shutdown(SHUT_RD)
        }
        let charge = payload.len() + DATAGRAM_OVERHEAD;
        if self.queued_bytes + charge > limit && !self.queue.is_empty() {
            return false;
        }
        self.queued_bytes += charge;
        self.queue.push_back((source, payload.into()));
        true
    }

    /// Takes the oldest datagram: copies what fits into `buf` and returns (copied, full
    /// length, source). `WouldBlock` if none; a pending error is reported first.
    pub(crate) fn recv_from(
        &mut self,
        buf: &mut [u8],
    ) -> Result<(usize, usize, SocketAddrV4), Errno> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let (source, payload) = self.queue.pop_front().ok_or(Errno::WouldBlock)?;
        self.queued_bytes -= payload.len() + DATAGRAM_OVERHEAD;
        let copied = payload.len().min(buf.len());
        buf[..copied].copy_from_slice(&payload[..copied]);
        Ok((copied, payload.len(), source))
    }

    /// Records an error from ICMP (only connected sockets get them, as on Linux).
    pub(crate) fn set_error(&mut self, error: Errno) {
        self.error = Some(error);
    }

    /// Takes the pending error (SO_ERROR).
    pub(crate) fn take_error(&mut self) -> Option<Errno> {
        self.error.take()
    }

    /// shutdown(2) on a datagram socket only records the directions.
    pub(crate) fn shutdown(&mut self, read: bool, write: bool) {
        self.read_shut |= read;
        self.write_shut |= write;
        if read {
            self.queue.clear();
            self.queued_bytes = 0;
        }
    }

    /// True after shutdown(SHUT_WR).
    pub(crate) fn write_shut(&self) -> bool {
        self.write_shut
    }

    /// Bytes waiting to be read (payload only).
    pub(crate) fn queued_payload(&self) -> usize {
        self.queued_bytes - self.queue.len() * DATAGRAM_OVERHEAD
    }

    /// What poll would report.
    pub(crate) fn readiness(&self, can_send: bool) -> Readiness {
        Readiness {
            readable: !self.queue.is_empty() || self.error.is_some() || self.read_shut,
            writable: can_send && !self.write_shut,
            read_closed: self.read_shut,
            hangup: self.read_shut && self.write_shut,
            error: self.error.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new([10, 0, 0, 1].into(), port)
    }

    #[test]
    fn datagrams_keep_boundaries_and_truncate_like_the_kernel() {
        let mut socket = UdpSocket::default();
        assert!(socket.deliver(addr(1), b"hello", 4096));
        assert!(socket.deliver(addr(2), b"world!", 4096));
        let mut buf = [0u8; 3];
        assert_eq!(socket.recv_from(&mut buf), Ok((3, 5, addr(1))));
        assert_eq!(&buf, b"hel");
        let mut buf = [0u8; 16];
        assert_eq!(socket.recv_from(&mut buf), Ok((6, 6, addr(2))));
        assert_eq!(socket.recv_from(&mut buf), Err(Errno::WouldBlock));
    }

    #[test]
    fn receive_buffer_limit_drops_datagrams_but_always_admits_one() {
        let mut socket = UdpSocket::default();
        assert!(socket.deliver(addr(1), &[0; 1000], 100), "an empty queue admits any datagram");
        assert!(!socket.deliver(addr(1), &[0; 10], 100));
        assert_eq!(socket.queued_payload(), 1000);
    }

    #[test]
    fn pending_error_is_reported_once_before_data() {
        let mut socket = UdpSocket::default();
        socket.deliver(addr(1), b"x", 4096);
        socket.set_error(Errno::ConnectionRefused);
        assert!(socket.readiness(true).error);
        let mut buf = [0u8; 4];
        assert_eq!(socket.recv_from(&mut buf), Err(Errno::ConnectionRefused));
        assert_eq!(socket.recv_from(&mut buf), Ok((1, 1, addr(1))));
    }
}
