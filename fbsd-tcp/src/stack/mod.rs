//! [`Stack`]: the engine's entry point and socket API.
//!
//! This module owns the socket table and the calls applications make; `input.rs` is the receive
//! path (Ethernet → ARP/IPv4 → ICMP/UDP/TCP demultiplexing, FreeBSD's ip_input/udp_input and the
//! lookup half of tcp_input), `output.rs` the transmit path (routing, ARP resolution, IPv4
//! output and fragmentation, ICMP errors), `ports.rs` binding and ephemeral ports (RFC 6056).

mod input;
mod output;
mod ports;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::iface::{ArpCache, Counters, Reassembler, StackConfig};
use crate::socket::tcp::isn::IsnGenerator;
use crate::socket::tcp::{TcpInfo, TcpSocket, TcpState};
use crate::socket::udp::UdpSocket;
use crate::socket::{
    from_v4, to_v4, AddressFamily, Errno, Readiness, Shutdown, SocketHandle, SocketOptions,
    SocketSummary, SocketType,
};
use crate::storage::{RecvSink, SendSource};
use crate::time::Instant;

use output::{IcmpBudget, Outgoing};

/// The most connections a listener queues (Linux's somaxconn default).
const MAX_BACKLOG: usize = 4096;
/// Smallest and largest socket buffer sizes a socket may ask for.
const MIN_BUFFER: usize = 4096;
const MAX_BUFFER: usize = 64 << 20;
/// Segments one connection may emit before `poll_transmit` moves on to the next one, so that a
/// bulk sender does not starve interactive connections.
const TRANSMIT_BURST: u32 = 16;

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
    config: StackConfig,
    counters: Counters,
    arp: ArpCache,
    reassembler: Reassembler,
    isn: IsnGenerator,
    table: SocketTable,
    /// Established and embryonic connections by (local, remote).
    connections: HashMap<(SocketAddrV4, SocketAddrV4), u32>,
    /// Listening sockets by port.
    listeners: HashMap<u16, Vec<u32>>,
    /// Sockets holding each TCP / UDP port (bound, listening or connected), for bind conflicts.
    tcp_ports: HashMap<u16, Vec<u32>>,
    /// Connections per local port that hold it without being listed in `tcp_ports` (accepted
    /// ones, and those connected from an unbound socket): a count, so that a server with many
    /// connections on one port opens and frees them in O(1).
    tcp_connection_ports: HashMap<u16, usize>,
    udp_ports: HashMap<u16, Vec<u32>>,
    /// Where the next ephemeral-port search starts (RFC 6056 algorithm 3's counter).
    ephemeral_counter: u16,
    /// TCP connections with output to emit, in order.
    dirty: VecDeque<u32>,
    /// Segments the connection at the front of `dirty` has emitted in its current turn.
    front_burst: u32,
    /// Connections waiting for their next hop to resolve, by next hop.
    arp_waiters: Vec<(Ipv4Addr, u32)>,
    /// Ready frames (control traffic, UDP, fragments) to go out before connection data.
    tx_queue: VecDeque<Outgoing>,
    tx_queue_bytes: usize,
    /// UDP sockets that were refused for a full `tx_queue`; told when it drains.
    udp_blocked: Vec<u32>,
    /// TCP timer deadlines; entries are checked against the socket's current deadline when
    /// popped, so rescheduling never searches the heap.
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Sockets whose readiness may have changed.
    events: VecDeque<u32>,
    ip_ident: u16,
    icmp_budget: IcmpBudget,
    /// Retransmissions of connections already freed (live ones are summed on demand).
    retransmits_of_freed: u64,
}

/// What kind of socket a slot holds.
#[derive(Debug)]
enum Kind {
    /// A TCP socket that is neither listening nor connected (possibly bound).
    TcpIdle { local: Option<SocketAddrV4> },
    /// A listening TCP socket.
    TcpListener(Listener),
    /// A TCP connection in any state after the SYN.
    TcpConn(Box<TcpSocket>),
    /// A UDP socket.
    Udp(UdpSocket),
}

#[derive(Debug)]
struct Listener {
    local: SocketAddrV4,
    backlog: usize,
    /// Connections that completed the handshake, waiting for accept.
    accept_queue: VecDeque<u32>,
    /// Every connection this listener created that has not been accepted yet (embryonic and
    /// queued alike).
    children: Vec<u32>,
}

#[derive(Debug)]
struct Socket {
    family: AddressFamily,
    options: SocketOptions,
    kind: Kind,
    /// The application closed its handle; the connection finishes in the background.
    orphan: bool,
    /// The listener that created this connection, until it is accepted.
    parent: Option<u32>,
    /// In its parent's accept queue.
    queued_for_accept: bool,
    /// In `Stack::dirty`.
    dirty: bool,
    /// In `Stack::events`.
    event_pending: bool,
    /// The earliest entry this socket has in `Stack::timers`. A later deadline gets no entry of
    /// its own: when this one pops early, the real deadline is pushed then. That keeps the heap
    /// at about one entry per connection however often its timers move (an RTO restarts with
    /// every ACK).
    scheduled: Option<Instant>,
}

impl Socket {
    fn new(family: AddressFamily, options: SocketOptions, kind: Kind) -> Socket {
        Socket {
            family,
            options,
            kind,
            orphan: false,
            parent: None,
            queued_for_accept: false,
            dirty: false,
            event_pending: false,
            scheduled: None,
        }
    }

    fn kind_type(&self) -> SocketType {
        match self.kind {
            Kind::Udp(_) => SocketType::Datagram,
            _ => SocketType::Stream,
        }
    }

    fn local(&self) -> Option<SocketAddrV4> {
        match &self.kind {
            Kind::TcpIdle { local } => *local,
            Kind::TcpListener(listener) => Some(listener.local),
            Kind::TcpConn(tcb) => Some(tcb.endpoints().0),
            Kind::Udp(udp) => udp.local,
        }
    }
}

/// Slots with generations, so that a stale handle never reaches a reused slot.
#[derive(Debug, Default)]
struct SocketTable {
    slots: Vec<(u32, Option<Socket>)>,
    free: Vec<u32>,
    live: usize,
}

impl SocketTable {
    fn insert(&mut self, socket: Socket) -> u32 {
        self.live += 1;
        if let Some(index) = self.free.pop() {
            self.slots[index as usize].1 = Some(socket);
            index
        } else {
            self.slots.push((0, Some(socket)));
            (self.slots.len() - 1) as u32
        }
    }

    fn remove(&mut self, index: u32) -> Option<Socket> {
        let slot = self.slots.get_mut(index as usize)?;
        let socket = slot.1.take()?;
        slot.0 = slot.0.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
        Some(socket)
    }

    fn get(&self, index: u32) -> Option<&Socket> {
        self.slots.get(index as usize)?.1.as_ref()
    }

    fn get_mut(&mut self, index: u32) -> Option<&mut Socket> {
        self.slots.get_mut(index as usize)?.1.as_mut()
    }

    fn generation(&self, index: u32) -> u32 {
        self.slots.get(index as usize).map_or(0, |slot| slot.0)
    }

    fn handle(&self, index: u32) -> SocketHandle {
        SocketHandle { index, generation: self.generation(index) }
    }

    /// The slot a handle names, if the application may use it: right generation, not closed
    /// by the application, not a connection still waiting in a listener's queue.
    fn resolve(&self, handle: SocketHandle) -> Result<u32, Errno> {
        let (generation, socket) = self.slots.get(handle.index as usize).ok_or(Errno::BadHandle)?;
        match socket {
            Some(socket)
                if *generation == handle.generation
                    && !socket.orphan
                    && socket.parent.is_none() =>
            {
                Ok(handle.index)
            }
            _ => Err(Errno::BadHandle),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &Socket)> {
        self.slots.iter().enumerate().filter_map(|(i, (_, s))| s.as_ref().map(|s| (i as u32, s)))
    }
}

impl Stack {
    /// A stack with no sockets. It announces its address with a gratuitous ARP on the first
    /// `poll_transmit`.
    ///
    /// # Panics
    /// If `config` fails [`StackConfig::validate`]: a configuration is the caller's to check
    /// (with a message for its user) before it builds a stack.
    pub fn new(config: StackConfig, now: Instant) -> Stack {
        if let Err(reason) = config.validate() {
            panic!("invalid StackConfig: {reason}");
        }
        let mut stack = Stack {
            counters: Counters::default(),
            arp: ArpCache::new(config.arp.clone()),
            reassembler: Reassembler::new(config.reassembly_timeout, config.reassembly_max_bytes),
            isn: IsnGenerator::new(config.secret),
            table: SocketTable::default(),
            connections: HashMap::new(),
            listeners: HashMap::new(),
            tcp_ports: HashMap::new(),
            tcp_connection_ports: HashMap::new(),
            udp_ports: HashMap::new(),
            ephemeral_counter: 0,
            dirty: VecDeque::new(),
            front_burst: 0,
            arp_waiters: Vec::new(),
            tx_queue: VecDeque::new(),
            tx_queue_bytes: 0,
            udp_blocked: Vec::new(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            ip_ident: u16::from_be_bytes([config.secret[0], config.secret[1]]),
            icmp_budget: IcmpBudget::new(now),
            retransmits_of_freed: 0,
            config,
        };
        stack.queue_gratuitous_arp();
        stack
    }

    /// The configuration.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work, if any.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            if self.timer_entry_is_current(at, index, generation) {
                break;
            }
            self.timers.pop();
        }
        let tcp = self.timers.peek().map(|Reverse((at, _, _))| *at);
        [tcp, self.arp.poll_at(), self.reassembler.poll_at()].into_iter().flatten().min()
    }

    fn timer_entry_is_current(&self, at: Instant, index: u32, generation: u32) -> bool {
        self.table.generation(index) == generation
            && self.table.get(index).is_some_and(|socket| socket.scheduled == Some(at))
    }

    /// Runs every timer due at `now`: TCP timers, ARP retries and expiry, reassembly timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if !self.timer_entry_is_current(at, index, generation) {
                continue;
            }
            let Some(socket) = self.table.get_mut(index) else { continue };
            socket.scheduled = None;
            let Kind::TcpConn(tcb) = &mut socket.kind else { continue };
            if tcb.next_timer().is_some_and(|deadline| deadline <= now) {
                tcb.on_timer(now);
                self.tcp_touched(index);
            } else {
                // The deadline moved later since this entry was pushed: schedule the real one.
                self.tcp_settle(index);
            }
        }
        self.poll_arp(now);
        let expired = self.reassembler.expire(now);
        self.counters.ip_reassembly_failures += expired as u64;
    }

    /// A socket whose readiness may have changed since it was last reported. Each socket is
    /// reported at most once until the next change.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SocketHandle> {
        while let Some(index) = self.events.pop_front() {
            let Some(socket) = self.table.get_mut(index) else { continue };
            socket.event_pending = false;
            if !socket.orphan && socket.parent.is_none() {
                return Some(self.table.handle(index));
            }
        }
        None
    }

    /// Opens a socket.
    pub fn socket(
        &mut self,
        family: AddressFamily,
        kind: SocketType,
    ) -> Result<SocketHandle, Errno> {
        if self.table.live >= self.config.max_sockets {
            return Err(Errno::TooManySockets);
        }
        let options = SocketOptions::new(&self.config.tcp, self.config.ttl);
        let kind = match kind {
            SocketType::Stream => Kind::TcpIdle { local: None },
            SocketType::Datagram => Kind::Udp(UdpSocket::default()),
        };
        let index = self.table.insert(Socket::new(family, options, kind));
        Ok(self.table.handle(index))
    }

    /// bind(2).
    pub fn bind(&mut self, handle: SocketHandle, addr: SocketAddr) -> Result<(), Errno> {
        let index = self.table.resolve(handle)?;
        let socket = self.socket_ref(index);
        let requested = to_v4(socket.family, socket.options.v6_only, addr)?;
        if socket.local().is_some() {
            return Err(Errno::InvalidArgument);
        }
        if !requested.ip().is_unspecified() && *requested.ip() != self.config.addr.addr {
            return Err(Errno::AddrNotAvailable);
        }
        let local = self.bind_port(index, requested)?;
        match &mut self.socket_mut(index).kind {
            Kind::TcpIdle { local: bound } => *bound = Some(local),
            Kind::Udp(udp) => udp.local = Some(local),
            Kind::TcpListener(_) | Kind::TcpConn(_) => {
                unreachable!("checked: socket had no local address")
            }
        }
        Ok(())
    }

    /// listen(2).
    pub fn listen(&mut self, handle: SocketHandle, backlog: usize) -> Result<(), Errno> {
        let index = self.table.resolve(handle)?;
        let backlog = backlog.clamp(1, MAX_BACKLOG);
        let local = match &mut self.socket_mut(index).kind {
            Kind::TcpListener(listener) => {
                listener.backlog = backlog;
                return Ok(());
            }
            Kind::TcpIdle { local } => *local,
            Kind::TcpConn(_) => return Err(Errno::InvalidArgument),
            Kind::Udp(_) => return Err(Errno::NotSupported),
        };
        let local = match local {
            Some(local) => {
                self.check_listen_conflict(index, local)?;
                local
            }
            // listen on an unbound socket binds an ephemeral port, as Linux does.
            None => self.bind_port(index, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?,
        };
        self.socket_mut(index).kind = Kind::TcpListener(Listener {
            local,
            backlog,
            accept_queue: VecDeque::new(),
            children: Vec::new(),
        });
        self.listeners.entry(local.port()).or_default().push(index);
        Ok(())
    }

    /// accept(2), non-blocking: `WouldBlock` when no connection is ready.
    pub fn accept(&mut self, handle: SocketHandle) -> Result<(SocketHandle, SocketAddr), Errno> {
        let index = self.table.resolve(handle)?;
        let socket = self.socket_mut(index);
        let family = socket.family;
        let Kind::TcpListener(listener) = &mut socket.kind else {
            return Err(match socket.kind {
                Kind::Udp(_) => Errno::NotSupported,
                _ => Errno::InvalidArgument,
            });
        };
        let child = listener.accept_queue.pop_front().ok_or(Errno::WouldBlock)?;
        listener.children.retain(|&c| c != child);
        let child_socket = self.socket_mut(child);
        child_socket.parent = None;
        child_socket.queued_for_accept = false;
        let remote = match &child_socket.kind {
            Kind::TcpConn(tcb) => tcb.endpoints().1,
            _ => unreachable!("listener children are connections"),
        };
        self.push_event(index);
        Ok((self.table.handle(child), from_v4(family, remote)))
    }

    /// connect(2), non-blocking. TCP: `Err(InProgress)` once the SYN is under way; completion
    /// shows as writable readiness and `take_error() == None`. UDP: sets the default peer.
    pub fn connect(
        &mut self,
        now: Instant,
        handle: SocketHandle,
        addr: SocketAddr,
    ) -> Result<(), Errno> {
        let index = self.table.resolve(handle)?;
        let socket = self.socket_mut(index);
        let remote = to_v4(socket.family, socket.options.v6_only, addr)?;
        match &mut socket.kind {
            Kind::TcpIdle { local } => {
                let local = *local;
                self.tcp_connect(now, index, local, remote)
            }
            Kind::TcpConn(tcb) => Err(match tcb.state() {
                TcpState::SynSent | TcpState::SynReceived => Errno::Already,
                TcpState::Closed => tcb.take_error().unwrap_or(Errno::InvalidArgument),
                _ => Errno::IsConnected,
            }),
            Kind::TcpListener(_) => Err(Errno::IsConnected), // as Linux's inet_stream_connect
            Kind::Udp(udp) => {
                let bound = udp.local;
                if remote.port() == 0 {
                    return Err(Errno::InvalidArgument);
                }
                self.check_destination(remote, index)?;
                if bound.is_none() {
                    let local =
                        self.bind_port(index, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
                    self.udp_mut(index).local = Some(local);
                }
                self.udp_mut(index).peer = Some(remote);
                Ok(())
            }
        }
    }

    fn tcp_connect(
        &mut self,
        now: Instant,
        index: u32,
        bound: Option<SocketAddrV4>,
        remote: SocketAddrV4,
    ) -> Result<(), Errno> {
        if remote.port() == 0 {
            return Err(Errno::ConnectionRefused);
        }
        if remote.ip().is_broadcast()
            || remote.ip().is_multicast()
            || *remote.ip() == self.config.addr.broadcast()
        {
            return Err(Errno::NetUnreachable);
        }
        self.next_hop(*remote.ip())?;
        let local = match bound {
            Some(bound) => {
                let local = SocketAddrV4::new(self.config.addr.addr, bound.port());
                if self.connections.contains_key(&(local, remote)) {
                    return Err(Errno::AddrNotAvailable);
                }
                local
            }
            None => self.bind_ephemeral_for(remote)?,
        };
        let options = &self.socket_ref(index).options;
        let mut tcb = TcpSocket::connect(
            &self.config.tcp,
            options,
            now,
            local,
            remote,
            self.isn.isn(now, local, remote),
            self.isn.timestamp_offset(local, remote),
            self.config.mtu - 40,
        );
        tcb.set_segmentation_offload(self.tcp_offload_segment());
        self.socket_mut(index).kind = Kind::TcpConn(Box::new(tcb));
        self.connections.insert((local, remote), index);
        self.counters.tcp_active_opens += 1;
        self.tcp_touched(index);
        Err(Errno::InProgress)
    }

    /// send(2) on a connected socket.
    pub fn send(&mut self, handle: SocketHandle, data: &[u8]) -> Result<usize, Errno> {
        let index = self.table.resolve(handle)?;
        match &mut self.socket_mut(index).kind {
            Kind::Udp(_) => self.send_to(handle, data, None),
            // Linux answers a send on a TCP socket that never connected with EPIPE.
            _ => self.with_tcb(index, Errno::BrokenPipe, |tcb| tcb.send(data)),
        }
    }

    /// Zero-copy send (TCP): `fill` writes into the send buffer's free space in place.
    pub fn send_with(
        &mut self,
        handle: SocketHandle,
        fill: impl FnOnce(&mut [u8], &mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        let index = self.table.resolve(handle)?;
        self.with_tcb(index, Errno::BrokenPipe, |tcb| tcb.send_with(fill))
    }

    /// Lends connection `handle` a source of outgoing bytes shared with the application (see
    /// [`SendSource`]): its new bytes come from there from now on, announced with
    /// [`send_lent`](Self::send_lent), copied into segments straight from it and released to it
    /// once acknowledged; `send` is refused (`InvalidArgument`) after this.
    pub fn lend_send_source(
        &mut self,
        handle: SocketHandle,
        source: Box<dyn SendSource>,
    ) -> Result<(), Errno> {
        let index = self.table.resolve(handle)?;
        self.with_tcb(index, Errno::NotConnected, |tcb| tcb.lend_send_source(source))
    }

    /// Lends connection `handle` a sink for received bytes shared with the application (see
    /// [`RecvSink`]): in-order payload goes straight there while the receive buffer holds
    /// nothing, and the socket polls readable until the next `recv`.
    pub fn lend_recv_sink(
        &mut self,
        handle: SocketHandle,
        sink: Box<dyn RecvSink>,
    ) -> Result<(), Errno> {
        let index = self.table.resolve(handle)?;
        self.with_tcb(index, Errno::NotConnected, |tcb| tcb.lend_recv_sink(sink))
    }

    /// `n` more bytes of the source lent to `handle` are part of its stream (`send`'s errors).
    pub fn send_lent(&mut self, handle: SocketHandle, n: usize) -> Result<usize, Errno> {
        let index = self.table.resolve(handle)?;
        self.with_tcb(index, Errno::BrokenPipe, |tcb| tcb.send_lent(n))
    }

    /// recv(2). `Ok(0)` is end of stream (TCP).
    pub fn recv(&mut self, handle: SocketHandle, buf: &mut [u8]) -> Result<usize, Errno> {
        let index = self.table.resolve(handle)?;
        if let Kind::Udp(_) = self.socket_ref(index).kind {
            return self.recv_from(handle, buf).map(|(copied, _, _)| copied);
        }
        self.with_tcb(index, Errno::NotConnected, |tcb| tcb.recv(buf))
    }

    /// Zero-copy receive (TCP): `consume` reads the receive buffer in place.
    pub fn recv_with(
        &mut self,
        handle: SocketHandle,
        consume: impl FnOnce(&[u8], &[u8]) -> usize,
    ) -> Result<usize, Errno> {
        let index = self.table.resolve(handle)?;
        self.with_tcb(index, Errno::NotConnected, |tcb| tcb.recv_with(consume))
    }

    /// Runs a data call on a connection and settles what it changed. Sockets that are not
    /// connections answer as the kernel does for an unconnected TCP socket.
    fn with_tcb<T>(
        &mut self,
        index: u32,
        not_connected: Errno,
        call: impl FnOnce(&mut TcpSocket) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let result = match &mut self.socket_mut(index).kind {
            Kind::TcpConn(tcb) => call(tcb),
            Kind::TcpIdle { .. } | Kind::TcpListener(_) => return Err(not_connected),
            Kind::Udp(_) => return Err(Errno::NotSupported),
        };
        self.tcp_touched(index);
        result
    }

    /// sendto(2) for UDP (`addr` None: the connected peer).
    pub fn send_to(
        &mut self,
        handle: SocketHandle,
        data: &[u8],
        addr: Option<SocketAddr>,
    ) -> Result<usize, Errno> {
        let index = self.table.resolve(handle)?;
        let socket = self.socket_ref(index);
        let Kind::Udp(udp) = &socket.kind else {
            return match addr {
                // sendto with an address on a connected TCP socket ignores it, as Linux does.
                Some(_) | None => self.send(handle, data),
            };
        };
        if udp.write_shut() {
            return Err(Errno::BrokenPipe);
        }
        let remote = match addr {
            Some(addr) => to_v4(socket.family, socket.options.v6_only, addr)?,
            None => udp.peer.ok_or(Errno::DestAddrRequired)?,
        };
        if remote.port() == 0 {
            return Err(Errno::InvalidArgument);
        }
        self.check_destination(remote, index)?;
        if data.len() > 65507 {
            return Err(Errno::MessageTooLong);
        }
        if !self.udp_can_send() {
            if !self.udp_blocked.contains(&index) {
                self.udp_blocked.push(index);
            }
            return Err(Errno::WouldBlock);
        }
        let local = match self.udp_mut(index).local {
            Some(local) => local,
            None => {
                let local = self.bind_port(index, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
                self.udp_mut(index).local = Some(local);
                local
            }
        };
        let source = SocketAddrV4::new(self.config.addr.addr, local.port());
        if *remote.ip() == self.config.addr.addr {
            self.deliver_to_self(index, source, remote, data);
            return Ok(data.len());
        }
        let ttl = self.socket_ref(index).options.ttl;
        self.send_udp(source, remote, data, ttl)?;
        Ok(data.len())
    }

    /// recvfrom(2) for UDP: the datagram (truncated to `buf`, the rest discarded as the kernel
    /// does), its full length and its source.
    pub fn recv_from(
        &mut self,
        handle: SocketHandle,
        buf: &mut [u8],
    ) -> Result<(usize, usize, SocketAddr), Errno> {
        let index = self.table.resolve(handle)?;
        let socket = self.socket_mut(index);
        let family = socket.family;
        match &mut socket.kind {
            Kind::Udp(udp) => {
                let (copied, len, source) = udp.recv_from(buf)?;
                Ok((copied, len, from_v4(family, source)))
            }
            Kind::TcpConn(tcb) => {
                // The peer is known whatever the state, so data read here is never lost to a
                // getpeername failure after the connection closed.
                let peer = from_v4(family, tcb.endpoints().1);
                let copied = self.recv(handle, buf)?;
                Ok((copied, copied, peer))
            }
            Kind::TcpIdle { .. } | Kind::TcpListener(_) => Err(Errno::NotConnected),
        }
    }

    /// shutdown(2).
    pub fn shutdown(
        &mut self,
        now: Instant,
        handle: SocketHandle,
        how: Shutdown,
    ) -> Result<(), Errno> {
        let index = self.table.resolve(handle)?;
        let (read, write) = match how {
            Shutdown::Read => (true, false),
            Shutdown::Write => (false, true),
            Shutdown::Both => (true, true),
        };
        match &mut self.socket_mut(index).kind {
            // An unconnected datagram socket has nothing to shut down (Linux: ENOTCONN).
            Kind::Udp(udp) if udp.peer.is_none() => Err(Errno::NotConnected),
            Kind::Udp(udp) => {
                udp.shutdown(read, write);
                self.push_event(index);
                Ok(())
            }
            Kind::TcpConn(tcb) => {
                let result = if write { tcb.shutdown_write(now) } else { Ok(()) };
                if read {
                    tcb.shutdown_read();
                }
                self.tcp_touched(index);
                result
            }
            Kind::TcpIdle { .. } => Err(Errno::NotConnected),
            // Linux accepts shutdown on a listener (SHUT_RD stops it listening; here it keeps
            // listening until close, which no program we know of minds).
            Kind::TcpListener(_) => Ok(()),
        }
    }

    /// close(2): the handle is released at once; a TCP connection finishes in the background.
    pub fn close(&mut self, now: Instant, handle: SocketHandle) -> Result<(), Errno> {
        let index = self.table.resolve(handle)?;
        match &mut self.socket_mut(index).kind {
            Kind::TcpConn(tcb) => {
                tcb.close(now);
                self.socket_mut(index).orphan = true;
                self.tcp_touched(index);
            }
            Kind::TcpListener(listener) => {
                let children: Vec<u32> = listener.children.drain(..).collect();
                listener.accept_queue.clear();
                for child in children {
                    let socket = self.socket_mut(child);
                    socket.parent = None;
                    socket.queued_for_accept = false;
                    socket.orphan = true;
                    if let Kind::TcpConn(tcb) = &mut socket.kind {
                        tcb.abort(now);
                    }
                    self.tcp_touched(child);
                }
                self.free_socket(index);
            }
            Kind::TcpIdle { .. } | Kind::Udp(_) => self.free_socket(index),
        }
        Ok(())
    }

    /// Options of a socket.
    pub fn options(&self, handle: SocketHandle) -> Result<&SocketOptions, Errno> {
        let index = self.table.resolve(handle)?;
        Ok(&self.socket_ref(index).options)
    }

    /// Replaces a socket's options, applying the differences.
    pub fn set_options(
        &mut self,
        now: Instant,
        handle: SocketHandle,
        options: SocketOptions,
    ) -> Result<(), Errno> {
        let index = self.table.resolve(handle)?;
        let mut options = options;
        if options.ttl == 0 || options.keep_count == 0 || options.keep_interval.is_zero() {
            return Err(Errno::InvalidArgument);
        }
        if options.max_segment.is_some_and(|mss| mss < 88) {
            return Err(Errno::InvalidArgument); // Linux's TCP_MIN_MSS
        }
        // Like SO_SNDBUF/SO_RCVBUF under Linux's wmem_max/rmem_max: sizes are clamped, not
        // refused, so that an absurd request cannot make the engine allocate without bound.
        options.send_buffer = options.send_buffer.clamp(MIN_BUFFER, MAX_BUFFER);
        options.recv_buffer = options.recv_buffer.clamp(MIN_BUFFER, MAX_BUFFER);
        // TCP_USER_TIMEOUT 0 means "the default", as on Linux.
        options.user_timeout = options.user_timeout.filter(|timeout| !timeout.is_zero());
        let socket = self.socket_mut(index);
        socket.options = options;
        if let Kind::TcpConn(tcb) = &mut socket.kind {
            tcb.set_options(now, &socket.options);
            self.tcp_touched(index);
        }
        Ok(())
    }

    /// What poll would report.
    pub fn readiness(&self, handle: SocketHandle) -> Result<Readiness, Errno> {
        let index = self.table.resolve(handle)?;
        Ok(match &self.socket_ref(index).kind {
            Kind::TcpConn(tcb) => tcb.readiness(),
            Kind::TcpListener(listener) => {
                Readiness { readable: !listener.accept_queue.is_empty(), ..Readiness::default() }
            }
            // A TCP socket that never connected polls as writable and hung up, as on Linux.
            Kind::TcpIdle { .. } => {
                Readiness { writable: true, hangup: true, ..Readiness::default() }
            }
            Kind::Udp(udp) => udp.readiness(self.udp_can_send()),
        })
    }

    /// SO_ERROR: takes the pending error.
    pub fn take_error(&mut self, handle: SocketHandle) -> Result<Option<Errno>, Errno> {
        let index = self.table.resolve(handle)?;
        let error = match &mut self.socket_mut(index).kind {
            Kind::TcpConn(tcb) => tcb.take_error(),
            Kind::Udp(udp) => udp.take_error(),
            Kind::TcpIdle { .. } | Kind::TcpListener(_) => None,
        };
        self.push_event(index);
        Ok(error)
    }

    /// getsockname(2).
    pub fn local_addr(&self, handle: SocketHandle) -> Result<SocketAddr, Errno> {
        let index = self.table.resolve(handle)?;
        let socket = self.socket_ref(index);
        let mut local = socket.local().unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        // A connected UDP socket bound to "any" still receives on every address, but, as on
        // Linux, reports the source address its datagrams carry.
        if let Kind::Udp(udp) = &socket.kind {
            if udp.peer.is_some() && local.ip().is_unspecified() {
                local.set_ip(self.config.addr.addr);
            }
        }
        Ok(from_v4(socket.family, local))
    }

    /// getpeername(2): `NotConnected` without a peer.
    pub fn peer_addr(&self, handle: SocketHandle) -> Result<SocketAddr, Errno> {
        let index = self.table.resolve(handle)?;
        let socket = self.socket_ref(index);
        let peer = match &socket.kind {
            Kind::TcpConn(tcb) if tcb.state() != TcpState::Closed => Some(tcb.endpoints().1),
            Kind::Udp(udp) => udp.peer,
            _ => None,
        };
        peer.map(|peer| from_v4(socket.family, peer)).ok_or(Errno::NotConnected)
    }

    /// TCP_INFO.
    pub fn tcp_info(&self, handle: SocketHandle) -> Result<TcpInfo, Errno> {
        let index = self.table.resolve(handle)?;
        match &self.socket_ref(index).kind {
            Kind::TcpConn(tcb) => Ok(tcb.info()),
            Kind::TcpIdle { .. } => {
                Ok(TcpInfo { state: TcpState::Closed.ss_name(), ..TcpInfo::default() })
            }
            Kind::TcpListener(_) => {
                Ok(TcpInfo { state: TcpState::Listen.ss_name(), ..TcpInfo::default() })
            }
            Kind::Udp(_) => Err(Errno::NotSupported),
        }
    }

    /// Every socket and connection, orphans included (`ss -tani`), in slot order.
    pub fn sockets(&self) -> Vec<SocketSummary> {
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        self.table
            .iter()
            .map(|(index, socket)| {
                let handle =
                    (!socket.orphan && socket.parent.is_none()).then(|| self.table.handle(index));
                let mut summary = SocketSummary {
                    handle,
                    kind: socket.kind_type(),
                    state: "UNCONN",
                    local: socket.local().unwrap_or(unspecified),
                    peer: unspecified,
                    recv_queue: 0,
                    send_queue: 0,
                    tcp: None,
                };
                match &socket.kind {
                    Kind::TcpIdle { .. } => summary.state = TcpState::Closed.ss_name(),
                    Kind::TcpListener(listener) => {
                        summary.state = TcpState::Listen.ss_name();
                        summary.recv_queue = listener.accept_queue.len();
                        summary.send_queue = listener.backlog;
                    }
                    Kind::TcpConn(tcb) => {
                        let info = tcb.info();
                        summary.state = info.state;
                        summary.peer = tcb.endpoints().1;
                        summary.recv_queue = info.recv_queue;
                        summary.send_queue = info.unacked + info.notsent;
                        summary.tcp = Some(info);
                    }
                    Kind::Udp(udp) => {
                        if let Some(peer) = udp.peer {
                            summary.state = "ESTAB";
                            summary.peer = peer;
                        }
                        summary.recv_queue = udp.queued_payload();
                    }
                }
                summary
            })
            .collect()
    }

    /// Counters, with the retransmissions of live connections added in.
    pub fn counters(&self) -> Counters {
        let mut counters = self.counters.clone();
        let live: u64 = self
            .table
            .iter()
            .filter_map(|(_, socket)| match &socket.kind {
                Kind::TcpConn(tcb) => Some(tcb.info().total_retrans),
                _ => None,
            })
            .sum();
        counters.tcp_retransmits = self.retransmits_of_freed + live;
        counters
    }

    /// Sockets and connections the stack holds (orphans and unaccepted connections included):
    /// what stackd reports as the engine's memory use in sockets.
    pub fn socket_count(&self) -> usize {
        self.table.live
    }

    // ---- internal plumbing shared by input, output and the API ----

    /// True while a datagram of the largest size still fits in `tx_queue`: what a UDP socket's
    /// writability means, so that a writable socket never gets `WouldBlock`.
    fn udp_can_send(&self) -> bool {
        self.tx_queue_bytes + output::MAX_UDP_DATAGRAM_FRAMES_BYTES <= output::TX_QUEUE_LIMIT
    }

    fn socket_ref(&self, index: u32) -> &Socket {
        self.table.get(index).expect("slot resolved by the caller")
    }

    fn socket_mut(&mut self, index: u32) -> &mut Socket {
        self.table.get_mut(index).expect("slot resolved by the caller")
    }

    fn udp_mut(&mut self, index: u32) -> &mut UdpSocket {
        match &mut self.socket_mut(index).kind {
            Kind::Udp(udp) => udp,
            _ => unreachable!("caller checked the socket is UDP"),
        }
    }

    fn push_event(&mut self, index: u32) {
        if let Some(socket) = self.table.get_mut(index) {
            if !socket.event_pending {
                socket.event_pending = true;
                self.events.push_back(index);
            }
        }
    }

    fn mark_dirty(&mut self, index: u32) {
        if let Some(socket) = self.table.get_mut(index) {
            if !socket.dirty {
                socket.dirty = true;
                self.dirty.push_back(index);
            }
        }
    }

    /// After anything happened to a connection (a segment, a user call, a timer): queue it for
    /// output and settle its bookkeeping.
    fn tcp_touched(&mut self, index: u32) {
        self.mark_dirty(index);
        self.tcp_settle(index);
    }

    /// Brings the table in line with a connection's state: promotes a connection that
    /// completed its handshake into its listener's accept queue, frees finished connections
    /// nobody holds, reschedules the timer and reports readiness.
    fn tcp_settle(&mut self, index: u32) {
        let Some(socket) = self.table.get_mut(index) else { return };
        let Kind::TcpConn(tcb) = &socket.kind else {
            return;
        };
        let state = tcb.state();
        let finished = tcb.is_finished();
        let deadline = tcb.next_timer();
        let established =
            !matches!(state, TcpState::SynSent | TcpState::SynReceived | TcpState::Closed);

        if let Some(parent) = socket.parent {
            if established && !socket.queued_for_accept {
                socket.queued_for_accept = true;
                if let Some(Kind::TcpListener(listener)) =
                    self.table.get_mut(parent).map(|p| &mut p.kind)
                {
                    listener.accept_queue.push_back(index);
                }
                self.push_event(parent);
            } else if finished && !self.socket_ref(index).queued_for_accept {
                // An embryonic connection that failed (RST, SYN-ACK retries exhausted) simply
                // disappears from the listener; one already queued stays, and its accepter reads
                // the error, as on Linux.
                if let Some(Kind::TcpListener(listener)) =
                    self.table.get_mut(parent).map(|p| &mut p.kind)
                {
                    listener.children.retain(|&c| c != index);
                }
                self.socket_mut(index).orphan = true;
                self.socket_mut(index).parent = None;
            }
        }

        let socket = self.socket_mut(index);
        if finished {
            let endpoints = match &socket.kind {
                Kind::TcpConn(tcb) => tcb.endpoints(),
                _ => unreachable!(),
            };
            if self.connections.get(&endpoints) == Some(&index) {
                self.connections.remove(&endpoints);
            }
            if self.socket_ref(index).orphan {
                self.free_socket(index);
                return;
            }
        }

        let socket = self.socket_mut(index);
        if let Some(at) =
            deadline.filter(|&at| socket.scheduled.is_none_or(|scheduled| at < scheduled))
        {
            socket.scheduled = Some(at);
            let generation = self.table.generation(index);
            self.timers.push(Reverse((at, index, generation)));
        }
        self.push_event(index);
    }

    /// Removes a socket from every table and frees its slot.
    fn free_socket(&mut self, index: u32) {
        let Some(socket) = self.table.remove(index) else { return };
        if let Some(local) = socket.local() {
            let port = local.port();
            let port_map = match socket.kind {
                Kind::Udp(_) => &mut self.udp_ports,
                _ => &mut self.tcp_ports,
            };
            match port_map.get_mut(&port) {
                Some(holders) if holders.contains(&index) => {
                    holders.retain(|&holder| holder != index);
                    if holders.is_empty() {
                        port_map.remove(&port);
                    }
                }
                _ if matches!(socket.kind, Kind::TcpConn(_)) => self.release_connection_port(port),
                _ => {}
            }
        }
        match &socket.kind {
            Kind::TcpListener(listener) => {
                if let Some(listeners) = self.listeners.get_mut(&listener.local.port()) {
                    listeners.retain(|&l| l != index);
                    if listeners.is_empty() {
                        self.listeners.remove(&listener.local.port());
                    }
                }
            }
            Kind::TcpConn(tcb) => {
                self.retransmits_of_freed += tcb.info().total_retrans;
                let endpoints = tcb.endpoints();
                if self.connections.get(&endpoints) == Some(&index) {
                    self.connections.remove(&endpoints);
                }
            }
            Kind::TcpIdle { .. } | Kind::Udp(_) => {}
        }
        self.arp_waiters.retain(|&(_, waiter)| waiter != index);
        self.udp_blocked.retain(|&blocked| blocked != index);
    }
}
