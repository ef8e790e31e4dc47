//! The receive path: Ethernet → ARP or IPv4 → reassembly → ICMP, UDP or TCP, each frame checked
//! through the wire module's `new_checked` + `parse` so that no byte of it can cause a panic.
//! Every frame that goes nowhere is counted by the reason it went nowhere.

use std::net::SocketAddrV4;

use super::{Kind, Socket, Stack};
use crate::socket::tcp::{SegmentOutcome, TcpSocket};
use crate::socket::Errno;
use crate::time::Instant;
use crate::wire::SeqNumber;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, DstUnreachable, EtherType, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, ParseError, TcpControl, TcpFlags,
    TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

impl Stack {
    /// Processes one received Ethernet frame. Malformed or unwanted frames are counted in
    /// [`counters`](Self::counters) and dropped; nothing in a frame can make this panic.
    pub fn receive_frame(&mut self, now: Instant, frame: &[u8]) {
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += frame.len() as u64;
        let Ok(frame) = EthernetFrame::new_checked(frame) else {
            self.counters.eth_dropped += 1;
            return;
        };
        let Ok(ethernet) = EthernetRepr::parse(&frame) else {
            self.counters.eth_dropped += 1;
            return;
        };
        if ethernet.dst_addr != self.config.mac && !ethernet.dst_addr.is_broadcast() {
            self.counters.eth_dropped += 1;
            return;
        }
        match ethernet.ethertype {
            EtherType::Arp => self.receive_arp(now, frame.payload()),
            EtherType::Ipv4 => self.receive_ipv4(now, frame.payload()),
            EtherType::Ipv6 | EtherType::Unknown(_) => self.counters.eth_unknown_type += 1,
        }
    }

    fn receive_arp(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(repr) = ArpPacket::new_checked(bytes).and_then(|packet| ArpRepr::parse(&packet))
        else {
            self.counters.arp_dropped += 1;
            return;
        };
        self.counters.arp_rx += 1;
        let sender = repr.source_protocol_addr;
        if !repr.source_hardware_addr.is_unicast()
            || sender.is_unspecified()
            || sender == self.config.addr.addr
        {
            // Garbage, a probe (RFC 5227, sender 0.0.0.0), or someone claiming our address.
            self.counters.arp_dropped += 1;
            return;
        }
        let for_us = repr.target_protocol_addr == self.config.addr.addr;
        // RFC 826: merge the sender into the table if known; add it if the request is for us.
        let waiting = if for_us {
            self.arp.insert(now, sender, repr.source_hardware_addr)
        } else {
            self.arp.update_if_known(now, sender, repr.source_hardware_addr)
        };
        for packet in waiting {
            self.tx_queue_bytes += packet.len();
            self.tx_queue.push_back(super::output::Outgoing::Ip { hop: Some(sender), packet });
        }
        if self.arp.lookup(now, sender).is_some() {
            self.neighbour_resolved(sender);
        }
        if for_us && repr.operation == ArpOperation::Request {
            self.queue_arp_reply(&repr);
        }
    }

    fn receive_ipv4(&mut self, now: Instant, bytes: &[u8]) {
        let packet = match Ipv4Packet::new_checked(bytes) {
            Ok(packet) => packet,
            Err(_) => {
                self.counters.ip_malformed += 1;
                return;
            }
        };
        let header = match Ipv4Repr::parse(&packet, self.config.checksum) {
            Ok(header) => header,
            Err(ParseError::Checksum) => {
                self.counters.ip_checksum_errors += 1;
                return;
            }
            Err(_) => {
                self.counters.ip_malformed += 1;
                return;
            }
        };
        self.counters.ip_rx += 1;
        if self.is_martian_source(header.src_addr) {
            self.counters.ip_martian_sources += 1;
            return;
        }
        let dst = header.dst_addr;
        if dst != self.config.addr.addr
            && !dst.is_broadcast()
            && dst != self.config.addr.broadcast()
        {
            self.counters.ip_not_for_us += 1;
            return;
        }
        if header.is_fragment() {
            self.counters.ip_frags_rx += 1;
            let result = self.reassembler.add(now, &header, packet.payload());
            // Partial datagrams pushed out by the memory cap fail as surely as refused ones.
            self.counters.ip_reassembly_failures += self.reassembler.take_evictions() as u64;
            match result {
                Ok(Some((whole, payload))) => {
                    self.counters.ip_reassembled += 1;
                    self.receive_transport(now, &whole, &payload);
                }
                Ok(None) => {}
                Err(_) => self.counters.ip_reassembly_failures += 1,
            }
            return;
        }
        self.receive_transport(now, &header, packet.payload());
    }

    /// RFC 1122 §3.2.1.3: a source that cannot be a real host (ourselves, a broadcast or
    /// multicast address, 0.0.0.0, loopback) is silently discarded; answering it would reach
    /// everyone on the link, or nobody.
    fn is_martian_source(&self, src: std::net::Ipv4Addr) -> bool {
        src == self.config.addr.addr
            || src.is_unspecified()
            || src.is_loopback()
            || src.is_multicast()
            || src.is_broadcast()
            || src == self.config.addr.broadcast()
    }

    fn receive_transport(&mut self, now: Instant, header: &Ipv4Repr, payload: &[u8]) {
        match header.protocol {
            IpProtocol::Tcp => self.receive_tcp(now, header, payload),
            IpProtocol::Udp => self.receive_udp(now, header, payload),
            IpProtocol::Icmp => self.receive_icmp(now, header, payload),
            IpProtocol::Unknown(_) => {
                self.counters.ip_unknown_protocol += 1;
                self.queue_icmp_error(now, header, payload, |quoted, data| {
                    Icmpv4Repr::DstUnreachable {
                        reason: DstUnreachable::ProtoUnreachable,
                        header: quoted,
                        data,
                    }
                });
            }
        }
    }

    fn receive_icmp(&mut self, now: Instant, header: &Ipv4Repr, payload: &[u8]) {
        let Ok(packet) = Icmpv4Packet::new_checked(payload) else {
            self.counters.icmp_dropped += 1;
            return;
        };
        let message = match Icmpv4Repr::parse(&packet, self.config.checksum) {
            Ok(message) => message,
            Err(_) => {
                self.counters.icmp_dropped += 1;
                return;
            }
        };
        self.counters.icmp_rx += 1;
        match message {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                // Like Linux's icmp_echo_ignore_broadcasts: no smurf amplification.
                if header.dst_addr == self.config.addr.addr {
                    self.queue_icmp(
                        header.src_addr,
                        &Icmpv4Repr::EchoReply { ident, seq_no, data },
                    );
                }
            }
            Icmpv4Repr::DstUnreachable { reason, header: quoted, data } => {
                self.receive_unreachable(now, reason, &quoted, data);
            }
            Icmpv4Repr::EchoReply { .. } | Icmpv4Repr::TimeExceeded { .. } => {}
        }
    }

    /// An ICMP destination-unreachable about one of our datagrams: find the connection or
    /// socket its quoted ports name and tell it.
    fn receive_unreachable(
        &mut self,
        now: Instant,
        reason: DstUnreachable,
        quoted: &Ipv4Repr,
        data: &[u8],
    ) {
        if quoted.src_addr != self.config.addr.addr || data.len() < 4 {
            self.counters.icmp_dropped += 1;
            return;
        }
        let local = SocketAddrV4::new(quoted.src_addr, u16::from_be_bytes([data[0], data[1]]));
        let remote = SocketAddrV4::new(quoted.dst_addr, u16::from_be_bytes([data[2], data[3]]));
        let error = match reason {
            DstUnreachable::PortUnreachable | DstUnreachable::ProtoUnreachable => {
                Errno::ConnectionRefused
            }
            DstUnreachable::NetUnreachable => Errno::NetUnreachable,
            DstUnreachable::HostUnreachable | DstUnreachable::Other(_) => Errno::HostUnreachable,
            DstUnreachable::FragRequired { .. } => Errno::MessageTooLong,
        };
        match quoted.protocol {
            IpProtocol::Tcp => {
                let Some(&index) = self.connections.get(&(local, remote)) else { return };
                let Some(Kind::TcpConn(tcb)) = self.table.get_mut(index).map(|s| &mut s.kind)
                else {
                    return;
                };
                let quoted_seq =
                    data.get(4..8).map(|b| SeqNumber(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
                if !quoted_seq.is_some_and(|seq| tcb.quotes_outstanding(seq)) {
                    // A blind attacker does not know what is in flight (RFC 5927 §4.1).
                    self.counters.icmp_dropped += 1;
                    return;
                }
                match reason {
                    // RFC 1191: a router without next-hop MTU support sends 0; guess the next
                    // plateau below what we sent (RFC 1191 §5's table, coarsely).
                    DstUnreachable::FragRequired { next_hop_mtu } => {
                        let mtu = if next_hop_mtu >= 68 {
                            usize::from(next_hop_mtu)
                        } else {
                            plateau_below(quoted.payload_len + crate::wire::ipv4::HEADER_LEN)
                        };
                        tcb.on_path_mtu(now, mtu);
                    }
                    _ => tcb.on_icmp_unreachable(now, error),
                }
                self.tcp_touched(index);
            }
            IpProtocol::Udp => {
                // Only connected sockets hear about errors, as on Linux.
                let Some(holders) = self.udp_ports.get(&local.port()) else { return };
                let target = holders.iter().copied().find(|&h| {
                    matches!(&self.socket_ref(h).kind, Kind::Udp(udp) if udp.peer == Some(remote))
                });
                if let Some(index) = target {
                    if let Kind::Udp(udp) = &mut self.socket_mut(index).kind {
                        udp.set_error(error);
                    }
                    self.push_event(index);
                }
            }
            IpProtocol::Icmp | IpProtocol::Unknown(_) => {}
        }
    }

    fn receive_udp(&mut self, now: Instant, header: &Ipv4Repr, payload: &[u8]) {
        let Ok(packet) = UdpPacket::new_checked(payload) else {
            self.counters.udp_malformed += 1;
            return;
        };
        let repr =
            match UdpRepr::parse(&packet, header.src_addr, header.dst_addr, self.config.checksum) {
                Ok(repr) => repr,
                Err(ParseError::Checksum) => {
                    self.counters.udp_checksum_errors += 1;
                    return;
                }
                Err(_) => {
                    self.counters.udp_malformed += 1;
                    return;
                }
            };
        self.counters.udp_rx += 1;
        let source = SocketAddrV4::new(header.src_addr, repr.src_port);
        if header.dst_addr != self.config.addr.addr {
            // A broadcast goes to every socket bound to the wildcard address on its port, as on
            // Linux (SO_BROADCAST only governs sending); nobody answers one with an ICMP error.
            let receivers: Vec<u32> = self.udp_ports.get(&repr.dst_port).into_iter().flatten().copied()
                .filter(|&index| matches!(&self.socket_ref(index).kind,
                    Kind::Udp(udp) if udp.local.is_some_and(|l| l.ip().is_unspecified()) && udp.peer.is_none_or(|p| p == source)))
                .collect();
            if receivers.is_empty() {
                self.counters.udp_no_port += 1;
            }
            for index in receivers {
                self.deliver_datagram(index, source, repr.payload);
            }
            return;
        }
        let Some(index) = self.udp_lookup(header.dst_addr, repr.dst_port, source) else {
            self.counters.udp_no_port += 1;
            self.queue_icmp_error(now, header, payload, |quoted, data| {
                Icmpv4Repr::DstUnreachable {
                    reason: DstUnreachable::PortUnreachable,
                    header: quoted,
                    data,
                }
            });
            return;
        };
        self.deliver_datagram(index, source, repr.payload);
    }

    /// A datagram from socket `sender` to our own address: delivered without a frame, as over
    /// the kernel's loopback (no checksum, no fragments). With no socket on the port, a sender
    /// connected to it hears ECONNREFUSED, as the loopback's port unreachable would tell it.
    pub(super) fn deliver_to_self(
        &mut self,
        sender: u32,
        source: SocketAddrV4,
        remote: SocketAddrV4,
        payload: &[u8],
    ) {
        self.counters.udp_tx += 1;
        self.counters.udp_rx += 1;
        if let Some(index) = self.udp_lookup(*remote.ip(), remote.port(), source) {
            self.deliver_datagram(index, source, payload);
            return;
        }
        self.counters.udp_no_port += 1;
        if let Kind::Udp(udp) = &mut self.socket_mut(sender).kind {
            if udp.peer == Some(remote) {
                udp.set_error(Errno::ConnectionRefused);
                self.push_event(sender);
            }
        }
    }

    fn deliver_datagram(&mut self, index: u32, source: SocketAddrV4, payload: &[u8]) {
        let socket = self.socket_mut(index);
        let limit = socket.options.recv_buffer;
        let Kind::Udp(udp) = &mut socket.kind else { return };
        if udp.deliver(source, payload, limit) {
            self.push_event(index);
        } else {
            self.counters.udp_queue_full += 1;
        }
    }

    /// The socket a unicast datagram goes to: a connected socket whose peer sent it, else the
    /// most specific bound one (our exact address before the wildcard).
    fn udp_lookup(&self, dst: std::net::Ipv4Addr, port: u16, source: SocketAddrV4) -> Option<u32> {
        let holders = self.udp_ports.get(&port)?;
        let mut best: Option<(u8, u32)> = None;
        for &index in holders {
            let Kind::Udp(udp) = &self.socket_ref(index).kind else { continue };
            let Some(local) = udp.local else { continue };
            if !local.ip().is_unspecified() && *local.ip() != dst {
                continue;
            }
            let score = match udp.peer {
                Some(peer) if peer == source => 3,
                Some(_) => continue,
                None if !local.ip().is_unspecified() => 2,
                None => 1,
            };
            if best.is_none_or(|(best_score, _)| score > best_score) {
                best = Some((score, index));
            }
        }
        best.map(|(_, index)| index)
    }

    fn receive_tcp(&mut self, now: Instant, header: &Ipv4Repr, payload: &[u8]) {
        if header.dst_addr != self.config.addr.addr {
            self.counters.ip_not_for_us += 1; // TCP to a broadcast address is meaningless
            return;
        }
        let Ok(packet) = TcpPacket::new_checked(payload) else {
            self.counters.tcp_malformed += 1;
            return;
        };
        let segment =
            match TcpRepr::parse(&packet, header.src_addr, header.dst_addr, self.config.checksum) {
                Ok(segment) => segment,
                Err(ParseError::Checksum) => {
                    self.counters.tcp_checksum_errors += 1;
                    return;
                }
                Err(_) => {
                    self.counters.tcp_malformed += 1;
                    return;
                }
            };
        self.counters.tcp_rx += 1;
        let local = SocketAddrV4::new(header.dst_addr, segment.dst_port);
        let remote = SocketAddrV4::new(header.src_addr, segment.src_port);

        if let Some(&index) = self.connections.get(&(local, remote)) {
            let Some(Kind::TcpConn(tcb)) = self.table.get_mut(index).map(|s| &mut s.kind) else {
                return;
            };
            match tcb.process(now, &segment) {
                SegmentOutcome::Accepted => {
                    self.tcp_touched(index);
                    return;
                }
                SegmentOutcome::SendReset => {
                    self.tcp_touched(index);
                    self.queue_reset(header, &segment);
                    return;
                }
                SegmentOutcome::ReopenFromTimeWait => {
                    // The old incarnation yields its 4-tuple to the new one.
                    self.connections.remove(&(local, remote));
                    if self.socket_ref(index).orphan {
                        self.free_socket(index);
                    }
                }
            }
        }

        match self.tcp_listener_for(local, remote) {
            Some(listener)
                if segment.control() == TcpControl::Syn && segment.ack_number.is_none() =>
            {
                self.accept_syn(now, listener, local, remote, &segment);
            }
            // RFC 9293 §3.10.7.2: a listener ignores RSTs, answers ACKs with RST, and drops
            // anything else (no SYN, no ACK).
            Some(_) if segment.ack_number.is_none() => {}
            _ => {
                if !segment.flags.contains(TcpFlags::RST) {
                    self.counters.tcp_no_socket += 1;
                }
                self.queue_reset(header, &segment);
            }
        }
    }

    /// The listener for a connection to `local`: those bound to exactly that address before
    /// wildcard ones; among several SO_REUSEPORT listeners, one picked by a hash of the remote
    /// end, so that each connection sticks to one listener and they share the load.
    fn tcp_listener_for(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<u32> {
        let candidates = self.listeners.get(&local.port())?;
        let bound_to = |exact: bool| {
            candidates.iter().copied().filter(move |&l| {
                self.socket_ref(l).local().is_some_and(|a| {
                    if exact {
                        a == local
                    } else {
                        a.ip().is_unspecified()
                    }
                })
            })
        };
        let mut matching: Vec<u32> = bound_to(true).collect();
        if matching.is_empty() {
            matching = bound_to(false).collect();
        }
        match matching.len() {
            0 => None,
            1 => Some(matching[0]),
            n => {
                let spread =
                    u32::from(*remote.ip()).wrapping_mul(0x9e37_79b9) ^ u32::from(remote.port());
                Some(matching[spread as usize % n])
            }
        }
    }

    /// A SYN reached a listener: create an embryonic connection in SYN-RECEIVED, unless the
    /// listener's queues are full (then the SYN is dropped and the peer retries, as Linux does).
    fn accept_syn(
        &mut self,
        now: Instant,
        listener: u32,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &TcpRepr<'_>,
    ) {
        if self.next_hop(*remote.ip()).is_err() {
            // We could never answer it: a SYN-ACK with no route would only sit in the table.
            self.counters.ip_tx_dropped += 1;
            return;
        }
        let listening = self.socket_ref(listener);
        let Kind::TcpListener(state) = &listening.kind else { return };
        let embryonic_limit = state.backlog.max(64);
        if state.accept_queue.len() >= state.backlog
            || state.children.len() >= state.backlog + embryonic_limit
            || self.table.live >= self.config.max_sockets
        {
            self.counters.tcp_listen_overflows += 1;
            return;
        }
        let family = listening.family;
        let options = listening.options.clone();
        let mut tcb = TcpSocket::accept_syn(
            &self.config.tcp,
            &options,
            now,
            local,
            remote,
            self.isn.isn(now, local, remote),
            self.isn.timestamp_offset(local, remote),
            self.config.mtu - 40,
            syn,
        );
        tcb.set_segmentation_offload(self.tcp_offload_segment());
        let mut socket = Socket::new(family, options, Kind::TcpConn(Box::new(tcb)));
        socket.parent = Some(listener);
        let index = self.table.insert(socket);
        self.connections.insert((local, remote), index);
        self.hold_connection_port(local.port());
        if let Kind::TcpListener(state) = &mut self.socket_mut(listener).kind {
            state.children.push(index);
        }
        self.counters.tcp_passive_opens += 1;
        self.tcp_touched(index);
    }
}

/// RFC 1191 §7's plateau table: the largest common MTU below `size`.
fn plateau_below(size: usize) -> usize {
    const PLATEAUS: [usize; 10] = [65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296];
    PLATEAUS.iter().copied().find(|&p| p < size).unwrap_or(68)
}

#[cfg(test)]
mod tests {
    use super::plateau_below;

    #[test]
    fn plateau_table_steps_down() {
        assert_eq!(plateau_below(1500), 1492);
        assert_eq!(plateau_below(1492), 1006);
        assert_eq!(plateau_below(9000), 8166);
        assert_eq!(plateau_below(100), 68);
    }
}
