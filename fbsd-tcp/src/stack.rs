//! [`Stack`]: the engine's entry point and socket API.

use std::net::SocketAddr;

use crate::iface::{Counters, StackConfig};
use crate::socket::tcp::TcpInfo;
use crate::socket::{
    AddressFamily, Errno, Readiness, Shutdown, SocketHandle, SocketOptions, SocketSummary,
    SocketType,
};
use crate::time::Instant;

/// One interface and every socket on it.
///
/// # Order of calls
/// The driver (stackd, or the simulator) loops:
/// 1. [`receive_frame`](Self::receive_frame) for every frame the NIC delivered;
/// 2. [`handle_timeout`](Self::handle_timeout) once `now` reaches [`poll_timeout`](Self::poll_timeout);
/// 3. socket calls for the applications, after draining [`poll_event`](Self::poll_event);
/// 4. [`poll_transmit`](Self::poll_transmit) until it returns `None`, handing each frame to the NIC;
/// 5. sleep until the next frame, application request or `poll_timeout()`.
///
/// Every method is a pure function of its arguments and the stack's state: no clock, no I/O.
#[derive(Debug)]
pub struct Stack {
    _private: (),
}

impl Stack {
    /// A stack with no sockets.
    pub fn new(config: StackConfig, now: Instant) -> Stack {
        let _ = (config, now);
        todo!("stack")
    }

    /// The configuration.
    pub fn config(&self) -> &StackConfig {
        todo!("stack")
    }

    /// Processes one received Ethernet frame. Malformed or unwanted frames are counted in
    /// [`counters`](Self::counters) and dropped; nothing in a frame can make this panic.
    pub fn receive_frame(&mut self, now: Instant, frame: &[u8]) {
        let _ = (now, frame);
        todo!("stack")
    }

    /// Writes the next frame to send into `buf` and returns its length, or `None` when nothing
    /// is waiting. `buf` must hold at least `mtu + 14` bytes.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let _ = (now, buf);
        todo!("stack")
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work, if any.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        todo!("stack")
    }

    /// Runs every timer due at `now`: TCP timers, ARP retries and expiry, reassembly timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!("stack")
    }

    /// A socket whose readiness may have changed since it was last reported. Each socket is
    /// reported at most once until the next change.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SocketHandle> {
        todo!("stack")
    }

    /// Opens a socket.
    pub fn socket(
        &mut self,
        family: AddressFamily,
        kind: SocketType,
    ) -> Result<SocketHandle, Errno> {
        let _ = (family, kind);
        todo!("stack")
    }

    /// bind(2).
    pub fn bind(&mut self, handle: SocketHandle, addr: SocketAddr) -> Result<(), Errno> {
        let _ = (handle, addr);
        todo!("stack")
    }

    /// listen(2).
    pub fn listen(&mut self, handle: SocketHandle, backlog: usize) -> Result<(), Errno> {
        let _ = (handle, backlog);
        todo!("stack")
    }

    /// accept(2), non-blocking: `WouldBlock` when no connection is ready.
    pub fn accept(&mut self, handle: SocketHandle) -> Result<(SocketHandle, SocketAddr), Errno> {
        let _ = handle;
        todo!("stack")
    }

    /// connect(2), non-blocking. TCP: `Err(InProgress)` once the SYN is under way; completion
    /// shows as writable readiness and `take_error() == None`. UDP: sets the default peer.
    pub fn connect(
        &mut self,
        now: Instant,
        handle: SocketHandle,
        addr: SocketAddr,
    ) -> Result<(), Errno> {
        let _ = (now, handle, addr);
        todo!("stack")
    }

    /// send(2) on a connected socket.
    pub fn send(&mut self, handle: SocketHandle, data: &[u8]) -> Result<usize, Errno> {
        let _ = (handle, data);
        todo!("stack")
    }

    /// Zero-copy send (TCP): `fill` writes into the send buffer's free space in place.
    pub fn send_with(
        &mut self,
        handle: SocketHandle,
        fill: impl FnOnce(&mut [u8], &mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        let _ = (handle, fill);
        todo!("stack")
    }

    /// recv(2). `Ok(0)` is end of stream (TCP).
    pub fn recv(&mut self, handle: SocketHandle, buf: &mut [u8]) -> Result<usize, Errno> {
        let _ = (handle, buf);
        todo!("stack")
    }

    /// Zero-copy receive (TCP): `consume` reads the receive buffer in place.
    pub fn recv_with(
        &mut self,
        handle: SocketHandle,
        consume: impl FnOnce(&[u8], &[u8]) -> usize,
    ) -> Result<usize, Errno> {
        let _ = (handle, consume);
        todo!("stack")
    }

    /// sendto(2) for UDP (`addr` None: the connected peer).
    pub fn send_to(
        &mut self,
        handle: SocketHandle,
        data: &[u8],
        addr: Option<SocketAddr>,
    ) -> Result<usize, Errno> {
        let _ = (handle, data, addr);
        todo!("stack")
    }

    /// recvfrom(2) for UDP: the datagram (truncated to `buf`, the rest discarded as the kernel
    /// does), its full length and its source.
    pub fn recv_from(
        &mut self,
        handle: SocketHandle,
        buf: &mut [u8],
    ) -> Result<(usize, usize, SocketAddr), Errno> {
        let _ = (handle, buf);
        todo!("stack")
    }

    /// shutdown(2).
    pub fn shutdown(
        &mut self,
        now: Instant,
        handle: SocketHandle,
        how: Shutdown,
    ) -> Result<(), Errno> {
        let _ = (now, handle, how);
        todo!("stack")
    }

    /// close(2): the handle is released at once; a TCP connection finishes in the background.
    pub fn close(&mut self, now: Instant, handle: SocketHandle) -> Result<(), Errno> {
        let _ = (now, handle);
        todo!("stack")
    }

    /// Options of a socket.
    pub fn options(&self, handle: SocketHandle) -> Result<&SocketOptions, Errno> {
        let _ = handle;
        todo!("stack")
    }

    /// Replaces a socket's options, applying the differences.
    pub fn set_options(
        &mut self,
        now: Instant,
        handle: SocketHandle,
        options: SocketOptions,
    ) -> Result<(), Errno> {
        let _ = (now, handle, options);
        todo!("stack")
    }

    /// What poll would report.
    pub fn readiness(&self, handle: SocketHandle) -> Result<Readiness, Errno> {
        let _ = handle;
        todo!("stack")
    }

    /// SO_ERROR: takes the pending error.
    pub fn take_error(&mut self, handle: SocketHandle) -> Result<Option<Errno>, Errno> {
        let _ = handle;
        todo!("stack")
    }

    /// getsockname(2).
    pub fn local_addr(&self, handle: SocketHandle) -> Result<SocketAddr, Errno> {
        let _ = handle;
        todo!("stack")
    }

    /// getpeername(2): `NotConnected` without a peer.
    pub fn peer_addr(&self, handle: SocketHandle) -> Result<SocketAddr, Errno> {
        let _ = handle;
        todo!("stack")
    }

    /// TCP_INFO.
    pub fn tcp_info(&self, handle: SocketHandle) -> Result<TcpInfo, Errno> {
        let _ = handle;
        todo!("stack")
    }

    /// Every socket and connection, orphans included (`ss -tani`).
    pub fn sockets(&self) -> Vec<SocketSummary> {
        todo!("stack")
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        todo!("stack")
    }
}
