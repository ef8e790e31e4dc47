//! The transmit path: routing, next-hop resolution, IPv4 output with fragmentation, ARP and ICMP
//! messages, and the segments of every connection.
//!
//! Connection data is built straight into the caller's frame buffer (the TCB copies payload from
//! its send ring into place). Everything else — ARP, ICMP, RSTs, UDP datagrams and fragments —
//! is built once as an IPv4 packet into `tx_queue` and copied out; those paths are not hot.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Kind, Stack, TRANSMIT_BURST};
use crate::iface::{fragments, QueueOutcome};
use crate::socket::tcp::reset_reply;
use crate::socket::Errno;
use crate::time::Instant;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket, TcpRepr,
    UdpPacket, UdpRepr,
};

/// Bytes of ready frames the stack holds before UDP senders see `WouldBlock`.
pub(super) const TX_QUEUE_LIMIT: usize = 4 << 20;
/// What the largest UDP datagram (65507 bytes of payload) can take in `tx_queue` once
/// fragmented, headers included, at the smallest MTU the stack accepts.
pub(super) const MAX_UDP_DATAGRAM_FRAMES_BYTES: usize = 65535 + 128 * IPV4_HEADER;
const ETHERNET_HEADER: usize = crate::wire::ethernet::HEADER_LEN;
const IPV4_HEADER: usize = crate::wire::ipv4::HEADER_LEN;
/// An ICMP error quotes as much of the offending datagram as fits in 576 bytes (RFC 1812 §4.3.2.3).
const ICMP_ERROR_MAX: usize = 576;

/// A frame waiting in `tx_queue`.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// An ARP packet to a MAC address.
    Arp(ArpRepr, EthernetAddress),
    /// A complete IPv4 packet (header included) for a next hop, or for everyone on the link.
    Ip { hop: Option<Ipv4Addr>, packet: Vec<u8> },
}

/// A token bucket for ICMP errors (Linux rate-limits them too), so that a flood to closed ports
/// cannot turn the stack into an amplifier.
#[derive(Debug)]
pub(super) struct IcmpBudget {
    tokens: u32,
    refilled_at: Instant,
}

impl IcmpBudget {
    const BURST: u32 = 50;
    const PER_SECOND: u64 = 1000;

    pub(super) fn new(now: Instant) -> IcmpBudget {
        IcmpBudget { tokens: Self::BURST, refilled_at: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let earned = (elapsed.as_micros() as u64 * Self::PER_SECOND / 1_000_000) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(Self::BURST);
            self.refilled_at = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Stack {
    /// Writes the next frame to send into `buf` and returns its length, or `None` when nothing
    /// is waiting. `buf` must hold at least `mtu + 14` bytes; with segmentation offload
    /// configured, a buffer of up to `segmentation_offload + 14` bytes lets a connection send a
    /// segment of that size.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        assert!(
            buf.len() >= self.config.mtu + ETHERNET_HEADER,
            "poll_transmit needs a buffer of mtu + 14 bytes"
        );
        while let Some(outgoing) = self.tx_queue.pop_front() {
            if let Some(len) = self.emit_queued(now, outgoing, buf) {
                return Some(self.count_tx(len));
            }
        }
        while let Some(&index) = self.dirty.front() {
            if let Some(len) = self.dispatch_connection(now, index, buf) {
                self.front_burst += 1;
                if self.front_burst >= TRANSMIT_BURST && self.dirty.len() > 1 {
                    self.front_burst = 0;
                    self.dirty.rotate_left(1);
                }
                return Some(self.count_tx(len));
            }
            self.front_burst = 0;
            self.dirty.pop_front();
            if let Some(socket) = self.table.get_mut(index) {
                socket.dirty = false;
            }
            self.tcp_settle(index);
            // The connection may have queued control frames (or the ARP request it waits for).
            while let Some(outgoing) = self.tx_queue.pop_front() {
                if let Some(len) = self.emit_queued(now, outgoing, buf) {
                    return Some(self.count_tx(len));
                }
            }
        }
        None
    }

    /// Tells UDP sockets refused for a full queue that it has room again.
    fn wake_blocked_udp(&mut self) {
        if !self.udp_blocked.is_empty() && self.udp_can_send() {
            for index in std::mem::take(&mut self.udp_blocked) {
                self.push_event(index);
            }
        }
    }

    /// The largest IPv4 packet a TCP segment may make: the MTU, or more with segmentation
    /// offload.
    fn largest_tcp_packet(&self) -> usize {
        self.config.mtu.max(self.config.segmentation_offload)
    }

    /// What a connection is told of segmentation offload: the largest TCP segment (header
    /// included) the link takes whole, 0 for none.
    pub(super) fn tcp_offload_segment(&self) -> usize {
        if self.config.segmentation_offload > self.config.mtu {
            self.config.segmentation_offload - IPV4_HEADER
        } else {
            0
        }
    }

    fn count_tx(&mut self, len: usize) -> usize {
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += len as u64;
        len
    }

    /// Builds one segment of connection `index` into `buf` and returns the frame's length, or
    /// `None` when the connection has nothing to send or its segment cannot leave now. The TCB
    /// always builds the segment it wants to send, so its retransmission timer runs whatever
    /// happens to the segment: with the next hop unresolved it waits in the ARP queue (as the
    /// kernel queues it on the neighbour entry) and the connection pauses until the neighbour
    /// answers; without a route it is dropped and the connection learns why.
    fn dispatch_connection(&mut self, now: Instant, index: u32, buf: &mut [u8]) -> Option<usize> {
        let socket = self.table.get(index)?;
        let Kind::TcpConn(tcb) = &socket.kind else { return None };
        let ttl = socket.options.ttl;
        let (local, remote) = tcb.endpoints();
        let hop = self.next_hop(*remote.ip());
        let mac = hop.ok().and_then(|hop| self.arp.lookup(now, hop));
        let packet_max = self.largest_tcp_packet();
        let fill_checksum = self.config.checksum.fill_tx;
        let ident = self.next_ident();
        let (ethernet, rest) = buf.split_at_mut(ETHERNET_HEADER);
        // A segment buffer longer than one MSS lets the connection send several at once.
        let packet_max = packet_max.min(rest.len());
        let (ip, segment) = rest[..packet_max].split_at_mut(IPV4_HEADER);
        let Kind::TcpConn(tcb) = &mut self.socket_mut(index).kind else { return None };
        let tcp_len = tcb.dispatch(now, segment, fill_checksum)?;
        if TcpPacket::new_unchecked(&segment[..tcp_len]).flags().contains(TcpFlags::RST) {
            self.counters.tcp_rst_tx += 1; // an abort (linger 0, close with unread data)
        }
        let header = Ipv4Repr {
            src_addr: *local.ip(),
            dst_addr: *remote.ip(),
            protocol: IpProtocol::Tcp,
            payload_len: tcp_len,
            ttl,
            tos: 0,
            ident,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        };
        header.emit(&mut Ipv4Packet::new_unchecked(&mut *ip), self.config.checksum);
        self.counters.ip_tx += 1;
        self.counters.tcp_tx += 1;
        match (hop, mac) {
            (Ok(_), Some(mac)) => {
                self.emit_ethernet_header(ethernet, mac, EtherType::Ipv4);
                Some(ETHERNET_HEADER + IPV4_HEADER + tcp_len)
            }
            (Ok(hop), None) => {
                let packet = rest[..IPV4_HEADER + tcp_len].to_vec();
                match self.arp.queue_packet(now, hop, packet) {
                    QueueOutcome::Queued { send_request: true } => self.queue_arp_request(hop),
                    QueueOutcome::Queued { send_request: false } => {}
                    QueueOutcome::Dropped => self.counters.arp_unresolved_drops += 1,
                }
                if !self.arp_waiters.contains(&(hop, index)) {
                    self.arp_waiters.push((hop, index));
                }
                None
            }
            (Err(error), _) => {
                self.counters.ip_tx_dropped += 1;
                if let Kind::TcpConn(tcb) = &mut self.socket_mut(index).kind {
                    tcb.on_icmp_unreachable(now, error);
                }
                None
            }
        }
    }

    /// Queues again the connections that waited for `hop`.
    pub(super) fn neighbour_resolved(&mut self, hop: Ipv4Addr) {
        let mut i = 0;
        while i < self.arp_waiters.len() {
            if self.arp_waiters[i].0 == hop {
                let (_, index) = self.arp_waiters.swap_remove(i);
                self.mark_dirty(index);
            } else {
                i += 1;
            }
        }
    }

    /// ARP retries, expiry and give-ups; connections whose neighbour never answered get a soft
    /// "host unreachable" error (fatal only if they then time out, RFC 1122 §4.2.3.9).
    pub(super) fn poll_arp(&mut self, now: Instant) {
        let (retries, dropped) = self.arp.poll(now);
        self.counters.arp_unresolved_drops += dropped as u64;
        for hop in retries {
            self.queue_arp_request(hop);
        }
        let mut i = 0;
        while i < self.arp_waiters.len() {
            let (hop, index) = self.arp_waiters[i];
            if self.arp.is_pending(hop) || self.arp.lookup(now, hop).is_some() {
                i += 1;
                continue;
            }
            self.arp_waiters.swap_remove(i);
            if let Some(Kind::TcpConn(tcb)) = self.table.get_mut(index).map(|s| &mut s.kind) {
                tcb.on_icmp_unreachable(now, Errno::HostUnreachable);
                self.tcp_touched(index);
            }
        }
    }

    /// Turns a queued packet into a frame in `buf`, or hands it to the ARP cache to wait.
    fn emit_queued(&mut self, now: Instant, outgoing: Outgoing, buf: &mut [u8]) -> Option<usize> {
        match outgoing {
            Outgoing::Arp(repr, dst) => {
                let (ethernet, rest) = buf.split_at_mut(ETHERNET_HEADER);
                repr.emit(&mut ArpPacket::new_unchecked(&mut rest[..repr.buffer_len()]));
                self.emit_ethernet_header(ethernet, dst, EtherType::Arp);
                self.counters.arp_tx += 1;
                Some(ETHERNET_HEADER + repr.buffer_len())
            }
            Outgoing::Ip { hop, packet } => {
                self.tx_queue_bytes -= packet.len();
                self.wake_blocked_udp();
                let mac = match hop {
                    None => EthernetAddress::BROADCAST,
                    Some(hop) => match self.arp.lookup(now, hop) {
                        Some(mac) => mac,
                        None => {
                            match self.arp.queue_packet(now, hop, packet) {
                                QueueOutcome::Queued { send_request: true } => {
                                    self.queue_arp_request(hop)
                                }
                                QueueOutcome::Queued { send_request: false } => {}
                                QueueOutcome::Dropped => self.counters.arp_unresolved_drops += 1,
                            }
                            return None;
                        }
                    },
                };
                let (ethernet, rest) = buf.split_at_mut(ETHERNET_HEADER);
                rest[..packet.len()].copy_from_slice(&packet);
                self.emit_ethernet_header(ethernet, mac, EtherType::Ipv4);
                self.counters.ip_tx += 1;
                Some(ETHERNET_HEADER + packet.len())
            }
        }
    }

    fn emit_ethernet_header(&self, header: &mut [u8], dst: EthernetAddress, ethertype: EtherType) {
        EthernetRepr { src_addr: self.config.mac, dst_addr: dst, ethertype }
            .emit(&mut EthernetFrame::new_unchecked(header));
    }

    fn next_ident(&mut self) -> u16 {
        self.ip_ident = self.ip_ident.wrapping_add(1);
        self.ip_ident
    }

    /// The neighbour a packet for `dst` goes to.
    pub(super) fn next_hop(&self, dst: Ipv4Addr) -> Result<Ipv4Addr, Errno> {
        if dst == self.config.addr.addr {
            // No frame goes to ourselves: UDP is delivered inside the stack (`deliver_to_self`),
            // and TCP between programs on one stackd takes joyride's local path.
            return Err(Errno::HostUnreachable);
        }
        if self.config.addr.contains(dst) {
            Ok(dst)
        } else {
            self.config.gateway.ok_or(Errno::NetUnreachable)
        }
    }

    fn is_broadcast(&self, addr: Ipv4Addr) -> bool {
        addr.is_broadcast() || addr == self.config.addr.broadcast()
    }

    /// Checks a UDP destination: broadcast needs SO_BROADCAST, multicast is not spoken, and a
    /// unicast destination needs a route.
    pub(super) fn check_destination(&self, remote: SocketAddrV4, index: u32) -> Result<(), Errno> {
        let ip = *remote.ip();
        if self.is_broadcast(ip) {
            return if self.socket_ref(index).options.broadcast {
                Ok(())
            } else {
                Err(Errno::PermissionDenied)
            };
        }
        if ip.is_multicast() || ip.is_unspecified() {
            return Err(Errno::NetUnreachable);
        }
        if ip == self.config.addr.addr {
            return Ok(()); // delivered inside the stack (`deliver_to_self`)
        }
        self.next_hop(ip).map(|_| ())
    }

    /// Builds a UDP datagram and queues it, fragmented if it exceeds the MTU.
    pub(super) fn send_udp(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        payload: &[u8],
        ttl: u8,
    ) -> Result<(), Errno> {
        let repr = UdpRepr { src_port: local.port(), dst_port: remote.port(), payload };
        let mut datagram = vec![0; repr.buffer_len()];
        repr.emit(
            &mut UdpPacket::new_unchecked(&mut datagram[..]),
            *local.ip(),
            *remote.ip(),
            self.config.checksum,
        );
        let header = self.ip_header(*remote.ip(), IpProtocol::Udp, datagram.len(), ttl);
        self.queue_ip(header, &datagram)?;
        self.counters.udp_tx += 1;
        Ok(())
    }

    fn ip_header(
        &mut self,
        dst: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: usize,
        ttl: u8,
    ) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: self.config.addr.addr,
            dst_addr: dst,
            protocol,
            payload_len,
            ttl,
            tos: 0,
            ident: self.next_ident(),
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Queues an IPv4 packet, as fragments when it does not fit the MTU.
    pub(super) fn queue_ip(&mut self, header: Ipv4Repr, payload: &[u8]) -> Result<(), Errno> {
        let hop = if self.is_broadcast(header.dst_addr) {
            None
        } else {
            Some(self.next_hop(header.dst_addr)?)
        };
        let mtu = self.config.mtu;
        if IPV4_HEADER + payload.len() > mtu && header.dont_frag {
            self.counters.ip_tx_dropped += 1;
            return Err(Errno::MessageTooLong);
        }
        let pieces: Vec<_> = fragments(&header, mtu).collect();
        let fragmented = pieces.len() > 1;
        for (piece, range) in pieces {
            let mut packet = vec![0; IPV4_HEADER + range.len()];
            piece.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]), self.config.checksum);
            packet[IPV4_HEADER..].copy_from_slice(&payload[range]);
            if fragmented {
                self.counters.ip_frags_tx += 1;
            }
            self.tx_queue_bytes += packet.len();
            self.tx_queue.push_back(Outgoing::Ip { hop, packet });
        }
        Ok(())
    }

    fn queue_arp_request(&mut self, target: Ipv4Addr) {
        let request = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: self.config.mac,
            source_protocol_addr: self.config.addr.addr,
            target_hardware_addr: EthernetAddress::default(),
            target_protocol_addr: target,
        };
        self.tx_queue.push_back(Outgoing::Arp(request, EthernetAddress::BROADCAST));
    }

    /// Announces our address (RFC 5227 §2.3 ARP announcement), so neighbours that cached an
    /// older MAC for it update at once.
    pub(super) fn queue_gratuitous_arp(&mut self) {
        let addr = self.config.addr.addr;
        let announcement = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: self.config.mac,
            source_protocol_addr: addr,
            target_hardware_addr: EthernetAddress::default(),
            target_protocol_addr: addr,
        };
        self.tx_queue.push_back(Outgoing::Arp(announcement, EthernetAddress::BROADCAST));
    }

    pub(super) fn queue_arp_reply(&mut self, request: &ArpRepr) {
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.config.mac,
            source_protocol_addr: self.config.addr.addr,
            target_hardware_addr: request.source_hardware_addr,
            target_protocol_addr: request.source_protocol_addr,
        };
        self.tx_queue.push_back(Outgoing::Arp(reply, request.source_hardware_addr));
    }

    /// Answers a segment no connection wants with RST (RFC 9293 §3.10.7.1).
    pub(super) fn queue_reset(&mut self, ip: &Ipv4Repr, segment: &TcpRepr<'_>) {
        let Some(reply) = reset_reply(segment) else { return };
        let mut bytes = vec![0; reply.header_len()];
        reply.emit(
            &mut TcpPacket::new_unchecked(&mut bytes[..]),
            ip.dst_addr,
            ip.src_addr,
            self.config.checksum,
        );
        let mut header = self.ip_header(ip.src_addr, IpProtocol::Tcp, bytes.len(), self.config.ttl);
        header.dont_frag = true;
        if self.queue_ip(header, &bytes).is_ok() {
            self.counters.tcp_rst_tx += 1;
            self.counters.tcp_tx += 1;
        }
    }

    /// Sends an ICMP message to `dst` (replies and errors alike).
    pub(super) fn queue_icmp(&mut self, dst: Ipv4Addr, message: &Icmpv4Repr<'_>) {
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut Icmpv4Packet::new_unchecked(&mut bytes[..]), self.config.checksum);
        let header = self.ip_header(dst, IpProtocol::Icmp, bytes.len(), self.config.ttl);
        if self.queue_ip(header, &bytes).is_ok() {
            self.counters.icmp_tx += 1;
        }
    }

    /// Sends an ICMP error about a datagram we received, unless RFC 1122 §3.2.2 forbids it (the
    /// datagram was itself an ICMP error, or went to or came from a broadcast or multicast
    /// address) or the rate limit is spent.
    pub(super) fn queue_icmp_error(
        &mut self,
        now: Instant,
        original: &Ipv4Repr,
        original_payload: &[u8],
        error: impl FnOnce(Ipv4Repr, &[u8]) -> Icmpv4Repr<'_>,
    ) {
        let src = original.src_addr;
        if self.is_broadcast(original.dst_addr)
            || original.dst_addr.is_multicast()
            || self.is_broadcast(src)
            || src.is_multicast()
            || src.is_unspecified()
            || !self.icmp_budget.take(now)
        {
            return;
        }
        let quoted_len = original_payload.len().min(ICMP_ERROR_MAX - IPV4_HEADER * 2 - 8);
        let message = error(*original, &original_payload[..quoted_len]);
        self.queue_icmp(src, &message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[test]
    fn icmp_budget_allows_a_burst_then_refills_with_time() {
        let start = Instant::from_millis(1000);
        let mut budget = IcmpBudget::new(start);
        let granted = (0..100).filter(|_| budget.take(start)).count();
        assert_eq!(granted, IcmpBudget::BURST as usize);
        assert!(!budget.take(start));
        assert!(budget.take(start + Duration::from_millis(2)), "two tokens earned in 2 ms");
    }
}
