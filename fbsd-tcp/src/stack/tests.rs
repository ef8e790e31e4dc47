//! Stack-level tests: frames in, frames out, for everything the stack itself decides (ARP, ICMP,
//! UDP, demultiplexing, listeners, ports, handles). The TCP machine has its own tests; the
//! simulated-link tests in `tests/` exercise the two together.

use std::net::{Ipv4Addr, SocketAddr};

use super::Stack;
use crate::iface::StackConfig;
use crate::socket::{AddressFamily, Errno, SocketOptions, SocketType};
use crate::time::{Duration, Instant};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumPolicy, DstUnreachable, EtherType, EthernetAddress,
    EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Cidr, Ipv4Packet,
    Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CHECKSUMS: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: true };

fn stack() -> Stack {
    let config = StackConfig::new(OUR_MAC, Ipv4Cidr::new(OUR_IP, 24).unwrap(), [7; 16]);
    let mut stack = Stack::new(config, Instant::ZERO);
    let announcement = drain(&mut stack);
    assert_eq!(announcement.len(), 1, "one gratuitous ARP at start");
    stack
}

/// Every frame the stack has to send now.
fn drain(stack: &mut Stack) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut buf = vec![0; 1514];
    while let Some(len) = stack.poll_transmit(Instant::ZERO, &mut buf) {
        frames.push(buf[..len].to_vec());
        assert!(frames.len() < 1000, "runaway transmit");
    }
    frames
}

fn ethernet(dst: EthernetAddress, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0; 14 + payload.len()];
    EthernetRepr { src_addr: PEER_MAC, dst_addr: dst, ethertype }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame[14..].copy_from_slice(payload);
    frame
}

fn ip_frame(protocol: IpProtocol, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    ip_frame_from(PEER_IP, protocol, dst, payload)
}

fn ip_frame_from(src: Ipv4Addr, protocol: IpProtocol, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let header = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: payload.len(),
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    };
    let mut packet = vec![0; 20 + payload.len()];
    header.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]), CHECKSUMS);
    packet[20..].copy_from_slice(payload);
    ethernet(OUR_MAC, EtherType::Ipv4, &packet)
}

fn arp_frame(operation: ArpOperation, target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr {
        operation,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER_IP,
        target_hardware_addr: if operation == ArpOperation::Reply {
            OUR_MAC
        } else {
            EthernetAddress::default()
        },
        target_protocol_addr: target,
    };
    let mut packet = vec![0; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut packet[..]));
    let dst = if operation == ArpOperation::Reply { OUR_MAC } else { EthernetAddress::BROADCAST };
    ethernet(dst, EtherType::Arp, &packet)
}

/// Teaches the stack the peer's MAC, as an ARP request from the peer would.
fn learn_peer(stack: &mut Stack) {
    stack.receive_frame(Instant::ZERO, &arp_frame(ArpOperation::Request, OUR_IP));
    let replies = drain(stack);
    assert_eq!(replies.len(), 1);
}

fn tcp_frame(
    src_port: u16,
    dst_port: u16,
    flags: TcpFlags,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    tcp_frame_from(PEER_IP, src_port, dst_port, flags, seq, ack, payload)
}

fn tcp_frame_from(
    src: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    flags: TcpFlags,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port,
        dst_port,
        seq_number: SeqNumber(seq),
        ack_number: ack.map(SeqNumber),
        flags: if ack.is_some() { flags | TcpFlags::ACK } else { flags },
        window_len: 65535,
        urgent_pointer: 0,
        options: TcpOptions {
            mss: flags.contains(TcpFlags::SYN).then_some(1460),
            ..TcpOptions::default()
        },
        payload,
    };
    let mut segment = vec![0; repr.header_len() + payload.len()];
    repr.emit(&mut TcpPacket::new_unchecked(&mut segment[..]), src, OUR_IP, CHECKSUMS);
    ip_frame_from(src, IpProtocol::Tcp, OUR_IP, &segment)
}

/// The IPv4 header and payload of a frame the stack sent to the peer.
fn parse_ip(frame: &[u8]) -> (Ipv4Repr, Vec<u8>) {
    let ethernet = EthernetFrame::new_checked(frame).unwrap();
    let eth = EthernetRepr::parse(&ethernet).unwrap();
    assert_eq!(eth.src_addr, OUR_MAC);
    assert_eq!(eth.ethertype, EtherType::Ipv4);
    let packet = Ipv4Packet::new_checked(ethernet.payload()).unwrap();
    let header = Ipv4Repr::parse(&packet, CHECKSUMS).unwrap();
    (header, packet.payload().to_vec())
}

fn parse_tcp(frame: &[u8]) -> (TcpFlags, Option<SeqNumber>, SeqNumber, u16) {
    let (header, payload) = parse_ip(frame);
    assert_eq!(header.protocol, IpProtocol::Tcp);
    let packet = TcpPacket::new_checked(&payload[..]).unwrap();
    let repr = TcpRepr::parse(&packet, header.src_addr, header.dst_addr, CHECKSUMS).unwrap();
    (repr.flags, repr.ack_number, repr.seq_number, repr.dst_port)
}

/// A TCP listener bound to `addr` (backlog 8).
fn listening(stack: &mut Stack, addr: &str) -> crate::socket::SocketHandle {
    let listener = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    stack.bind(listener, addr.parse().unwrap()).unwrap();
    stack.listen(listener, 8).unwrap();
    listener
}

/// The peer (port 40000, ISN 1000) opens a connection to `port` and `listener` accepts it:
/// returns the connection and our ISN.
fn handshake(
    stack: &mut Stack,
    listener: crate::socket::SocketHandle,
    port: u16,
) -> (crate::socket::SocketHandle, SeqNumber) {
    stack.receive_frame(Instant::ZERO, &tcp_frame(40000, port, TcpFlags::SYN, 1000, None, b""));
    let (_, _, isn, _) = parse_tcp(&drain(stack)[0]);
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(40000, port, TcpFlags::default(), 1001, Some(isn.0 + 1), b""),
    );
    let (connection, _) = stack.accept(listener).unwrap();
    (connection, isn)
}

/// The stack connects to the peer's port 80 and the peer (ISN 7000) accepts: returns the
/// connection and its local port.
fn connected(stack: &mut Stack) -> (crate::socket::SocketHandle, u16) {
    let socket = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    let _ = stack.connect(Instant::ZERO, socket, "10.77.0.1:80".parse().unwrap());
    let (_, _, isn, _) = parse_tcp(&drain(stack)[0]);
    let port = stack.local_addr(socket).unwrap().port();
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(80, port, TcpFlags::SYN, 7000, Some(isn.0 + 1), b""),
    );
    drain(stack);
    (socket, port)
}

// ---- ARP ----

#[test]
fn arp_request_for_our_address_gets_a_reply_and_teaches_us_the_sender() {
    let mut stack = stack();
    stack.receive_frame(Instant::ZERO, &arp_frame(ArpOperation::Request, OUR_IP));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1);
    let frame = EthernetFrame::new_checked(&frames[0][..]).unwrap();
    assert_eq!(EthernetRepr::parse(&frame).unwrap().dst_addr, PEER_MAC);
    let reply = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
    assert_eq!(reply.operation, ArpOperation::Reply);
    assert_eq!(reply.source_hardware_addr, OUR_MAC);
    assert_eq!(reply.source_protocol_addr, OUR_IP);
    assert_eq!(reply.target_hardware_addr, PEER_MAC);
    assert_eq!(reply.target_protocol_addr, PEER_IP);
    assert_eq!(stack.counters().arp_rx, 1);
    assert_eq!(stack.counters().arp_tx, 2, "announcement and reply");
}

#[test]
fn arp_request_for_another_host_is_ignored() {
    let mut stack = stack();
    stack.receive_frame(
        Instant::ZERO,
        &arp_frame(ArpOperation::Request, Ipv4Addr::new(10, 77, 0, 9)),
    );
    assert!(drain(&mut stack).is_empty());
}

#[test]
fn packets_to_an_unresolved_neighbour_wait_for_the_arp_reply() {
    let mut stack = stack();
    let echo = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: b"ping" };
    let mut icmp = vec![0; echo.buffer_len()];
    echo.emit(&mut Icmpv4Packet::new_unchecked(&mut icmp[..]), CHECKSUMS);
    stack.receive_frame(Instant::ZERO, &ip_frame(IpProtocol::Icmp, OUR_IP, &icmp));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1, "an ARP request, the reply waits");
    let frame = EthernetFrame::new_checked(&frames[0][..]).unwrap();
    let request = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
    assert_eq!(request.operation, ArpOperation::Request);
    assert_eq!(request.target_protocol_addr, PEER_IP);

    stack.receive_frame(Instant::ZERO, &arp_frame(ArpOperation::Reply, OUR_IP));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1, "the queued echo reply goes out");
    let (header, payload) = parse_ip(&frames[0]);
    assert_eq!(header.dst_addr, PEER_IP);
    let packet = Icmpv4Packet::new_checked(&payload[..]).unwrap();
    let reply = Icmpv4Repr::parse(&packet, CHECKSUMS).unwrap();
    assert_eq!(reply, Icmpv4Repr::EchoReply { ident: 7, seq_no: 1, data: b"ping" });
}

// ---- Robustness ----

#[test]
fn garbage_frames_are_counted_and_dropped() {
    let mut stack = stack();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for length in 0..2000 {
        let frame: Vec<u8> = (0..length % 200)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        stack.receive_frame(Instant::ZERO, &frame);
    }
    // Truncated headers of every kind.
    let valid = tcp_frame(1000, 80, TcpFlags::SYN, 1, None, b"");
    for cut in 0..valid.len() {
        stack.receive_frame(Instant::ZERO, &valid[..cut]);
    }
    let counters = stack.counters();
    assert_eq!(counters.rx_frames, 2000 + valid.len() as u64);
    assert!(counters.eth_dropped > 0 && counters.ip_malformed + counters.tcp_malformed > 0);
    assert_eq!(counters.tcp_rx, 0, "no truncated segment was taken for a real one");
}

#[test]
fn corrupted_checksums_are_counted() {
    let mut stack = stack();
    let mut frame = tcp_frame(1000, 80, TcpFlags::SYN, 1, None, b"");
    let last = frame.len() - 1;
    frame[last] ^= 0xff; // inside the TCP options
    stack.receive_frame(Instant::ZERO, &frame);
    assert_eq!(stack.counters().tcp_checksum_errors, 1);
    let mut frame = ip_frame(IpProtocol::Udp, OUR_IP, &[0; 8]);
    frame[14 + 10] ^= 0x01; // IP header checksum
    stack.receive_frame(Instant::ZERO, &frame);
    assert_eq!(stack.counters().ip_checksum_errors, 1);
}

// ---- UDP ----

fn udp_frame(src_port: u16, dst: Ipv4Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr { src_port, dst_port, payload };
    let mut datagram = vec![0; repr.buffer_len()];
    repr.emit(&mut UdpPacket::new_unchecked(&mut datagram[..]), PEER_IP, dst, CHECKSUMS);
    ip_frame(IpProtocol::Udp, dst, &datagram)
}

#[test]
fn udp_datagrams_reach_the_bound_socket_with_their_source() {
    let mut stack = stack();
    let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    stack.bind(socket, "0.0.0.0:5353".parse().unwrap()).unwrap();
    stack.receive_frame(Instant::ZERO, &udp_frame(4000, OUR_IP, 5353, b"question"));
    assert_eq!(stack.poll_event(), Some(socket));
    assert!(stack.readiness(socket).unwrap().readable);
    let mut buf = [0u8; 64];
    let (copied, len, from) = stack.recv_from(socket, &mut buf).unwrap();
    assert_eq!((&buf[..copied], len), (&b"question"[..], 8));
    assert_eq!(from, "10.77.0.1:4000".parse::<SocketAddr>().unwrap());
    assert_eq!(stack.recv_from(socket, &mut buf), Err(Errno::WouldBlock));
}

#[test]
fn udp_send_to_emits_a_checksummed_datagram() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    stack.bind(socket, "0.0.0.0:7000".parse().unwrap()).unwrap();
    assert_eq!(stack.send_to(socket, b"answer", Some("10.77.0.1:4000".parse().unwrap())), Ok(6));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1);
    let (header, payload) = parse_ip(&frames[0]);
    assert_eq!(
        (header.src_addr, header.dst_addr, header.protocol),
        (OUR_IP, PEER_IP, IpProtocol::Udp)
    );
    let packet = UdpPacket::new_checked(&payload[..]).unwrap();
    let repr = UdpRepr::parse(&packet, OUR_IP, PEER_IP, CHECKSUMS).unwrap();
    assert_eq!((repr.src_port, repr.dst_port, repr.payload), (7000, 4000, &b"answer"[..]));
}

#[test]
fn udp_to_our_own_address_is_delivered_inside_the_stack_and_a_closed_port_refuses() {
    let mut stack = stack();
    let server = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    stack.bind(server, "0.0.0.0:5353".parse().unwrap()).unwrap();
    let client = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    stack.bind(client, "0.0.0.0:4444".parse().unwrap()).unwrap();
    let ours: SocketAddr = "10.77.0.2:5353".parse().unwrap();
    assert_eq!(stack.send_to(client, b"question", Some(ours)), Ok(8));
    assert!(drain(&mut stack).is_empty(), "no frame leaves for our own address");
    assert_eq!(stack.poll_event(), Some(server));
    let mut buf = [0u8; 64];
    let (copied, len, from) = stack.recv_from(server, &mut buf).unwrap();
    assert_eq!((&buf[..copied], len), (&b"question"[..], 8));
    assert_eq!(from, "10.77.0.2:4444".parse::<SocketAddr>().unwrap());
    assert_eq!(stack.send_to(server, b"answer", Some(from)), Ok(6));
    let (copied, _, from) = stack.recv_from(client, &mut buf).unwrap();
    assert_eq!((&buf[..copied], from), (&b"answer"[..], ours));

    // Connected to a port nobody holds: the next call reports ECONNREFUSED, once.
    stack.connect(Instant::ZERO, client, "10.77.0.2:9".parse().unwrap()).unwrap();
    assert_eq!(stack.send_to(client, b"anyone?", None), Ok(7));
    assert_eq!(stack.recv_from(client, &mut buf), Err(Errno::ConnectionRefused));
    assert_eq!(stack.recv_from(client, &mut buf), Err(Errno::WouldBlock));
    assert!(drain(&mut stack).is_empty());
    assert_eq!(stack.counters().udp_no_port, 1);
}

#[test]
fn large_udp_datagrams_are_fragmented() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    let payload = vec![0xab; 4000];
    stack.send_to(socket, &payload, Some("10.77.0.1:9".parse().unwrap())).unwrap();
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 3, "4008 bytes of UDP in 1480-byte fragments");
    let offsets: Vec<(u16, bool)> = frames
        .iter()
        .map(|f| {
            let (h, _) = parse_ip(f);
            (h.frag_offset, h.more_frags)
        })
        .collect();
    assert_eq!(offsets, vec![(0, true), (1480, true), (2960, false)]);
    assert_eq!(stack.counters().ip_frags_tx, 3);
}

#[test]
fn closed_udp_port_answers_port_unreachable_quoting_the_datagram() {
    let mut stack = stack();
    learn_peer(&mut stack);
    stack.receive_frame(Instant::ZERO, &udp_frame(4000, OUR_IP, 9999, b"anyone?"));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1);
    let (_, payload) = parse_ip(&frames[0]);
    let packet = Icmpv4Packet::new_checked(&payload[..]).unwrap();
    match Icmpv4Repr::parse(&packet, CHECKSUMS).unwrap() {
        Icmpv4Repr::DstUnreachable { reason, header, data } => {
            assert_eq!(reason, DstUnreachable::PortUnreachable);
            assert_eq!((header.src_addr, header.dst_addr), (PEER_IP, OUR_IP));
            assert_eq!(&data[..4], &[0x0f, 0xa0, 0x27, 0x0f], "quoted ports 4000 → 9999");
        }
        other => panic!("expected port unreachable, got {other:?}"),
    }
    assert_eq!(stack.counters().udp_no_port, 1);
}

#[test]
fn broadcast_udp_datagrams_get_no_icmp_error() {
    let mut stack = stack();
    learn_peer(&mut stack);
    stack.receive_frame(Instant::ZERO, &udp_frame(68, Ipv4Addr::BROADCAST, 67, b"dhcp?"));
    assert!(drain(&mut stack).is_empty());
}

#[test]
fn connected_udp_socket_hears_port_unreachable_as_econnrefused() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    stack.connect(Instant::ZERO, socket, "10.77.0.1:53".parse().unwrap()).unwrap();
    stack.send(socket, b"query").unwrap();
    let sent = drain(&mut stack);
    let (header, payload) = parse_ip(&sent[0]);
    let error = Icmpv4Repr::DstUnreachable {
        reason: DstUnreachable::PortUnreachable,
        header,
        data: &payload[..8],
    };
    let mut icmp = vec![0; error.buffer_len()];
    error.emit(&mut Icmpv4Packet::new_unchecked(&mut icmp[..]), CHECKSUMS);
    stack.receive_frame(Instant::ZERO, &ip_frame(IpProtocol::Icmp, OUR_IP, &icmp));
    assert!(stack.readiness(socket).unwrap().error);
    assert_eq!(stack.take_error(socket), Ok(Some(Errno::ConnectionRefused)));
    assert_eq!(stack.take_error(socket), Ok(None));
}

#[test]
fn broadcast_needs_so_broadcast() {
    let mut stack = stack();
    let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    let broadcast = Some("10.77.0.255:9".parse().unwrap());
    assert_eq!(stack.send_to(socket, b"hi", broadcast), Err(Errno::PermissionDenied));
    let options = SocketOptions { broadcast: true, ..stack.options(socket).unwrap().clone() };
    stack.set_options(Instant::ZERO, socket, options).unwrap();
    assert_eq!(stack.send_to(socket, b"hi", broadcast), Ok(2));
    let frames = drain(&mut stack);
    let frame = EthernetFrame::new_checked(&frames[0][..]).unwrap();
    assert_eq!(EthernetRepr::parse(&frame).unwrap().dst_addr, EthernetAddress::BROADCAST);
}

// ---- Ports and handles ----

#[test]
fn bind_conflicts_follow_the_reuse_options() {
    let mut stack = stack();
    let first = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    let second = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    stack.bind(first, "0.0.0.0:8080".parse().unwrap()).unwrap();
    assert_eq!(stack.bind(second, "10.77.0.2:8080".parse().unwrap()), Err(Errno::AddrInUse));
    assert_eq!(stack.bind(second, "10.1.1.1:8081".parse().unwrap()), Err(Errno::AddrNotAvailable));
    assert_eq!(
        stack.bind(first, "0.0.0.0:8082".parse().unwrap()),
        Err(Errno::InvalidArgument),
        "bound twice"
    );

    for socket in [first, second] {
        let options = SocketOptions { reuse_addr: true, ..stack.options(socket).unwrap().clone() };
        stack.set_options(Instant::ZERO, socket, options).unwrap();
    }
    stack.bind(second, "0.0.0.0:8080".parse().unwrap()).unwrap();
    stack.listen(first, 16).unwrap();
    assert_eq!(stack.listen(second, 16), Err(Errno::AddrInUse), "two listeners need SO_REUSEPORT");

    // UDP ports are a separate space.
    let udp = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    stack.bind(udp, "0.0.0.0:8080".parse().unwrap()).unwrap();
}

#[test]
fn ephemeral_ports_are_distinct_and_in_range() {
    let mut stack = stack();
    let mut ports = std::collections::HashSet::new();
    for _ in 0..200 {
        let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
        stack.bind(socket, "0.0.0.0:0".parse().unwrap()).unwrap();
        let port = stack.local_addr(socket).unwrap().port();
        assert!((32768..=60999).contains(&port));
        assert!(ports.insert(port), "port {port} handed out twice");
    }
}

#[test]
fn closed_handles_stay_invalid_when_the_slot_is_reused() {
    let mut stack = stack();
    let old = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    stack.close(Instant::ZERO, old).unwrap();
    let new = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    assert_ne!(old, new);
    assert_eq!(stack.readiness(old), Err(Errno::BadHandle));
    assert_eq!(stack.close(Instant::ZERO, old), Err(Errno::BadHandle));
    assert!(stack.readiness(new).is_ok());
}

#[test]
fn operations_on_the_wrong_kind_of_socket_fail_like_the_kernel() {
    let mut stack = stack();
    let udp = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    assert_eq!(stack.listen(udp, 1), Err(Errno::NotSupported));
    assert_eq!(stack.accept(udp).map(|_| ()), Err(Errno::NotSupported));
    let tcp = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    assert_eq!(stack.send(tcp, b"x"), Err(Errno::BrokenPipe), "Linux: EPIPE before any connect");
    let mut buf = [0u8; 4];
    assert_eq!(stack.recv(tcp, &mut buf), Err(Errno::NotConnected));
    assert_eq!(
        stack.shutdown(Instant::ZERO, udp, crate::socket::Shutdown::Write),
        Err(Errno::NotConnected)
    );
    let listener = listening(&mut stack, "0.0.0.0:81");
    assert_eq!(
        stack.connect(Instant::ZERO, listener, "10.77.0.1:80".parse().unwrap()),
        Err(Errno::IsConnected)
    );
    assert_eq!(stack.shutdown(Instant::ZERO, listener, crate::socket::Shutdown::Both), Ok(()));
    assert_eq!(stack.peer_addr(tcp), Err(Errno::NotConnected));
    assert_eq!(stack.accept(tcp).map(|_| ()), Err(Errno::InvalidArgument));
    let v6 = stack.socket(AddressFamily::Inet6, SocketType::Stream).unwrap();
    assert_eq!(stack.bind(v6, "[::1]:80".parse().unwrap()), Err(Errno::AfNotSupported));
}

// ---- TCP demultiplexing and listeners ----

#[test]
fn syn_to_a_closed_port_is_answered_with_rst_ack() {
    let mut stack = stack();
    learn_peer(&mut stack);
    stack.receive_frame(Instant::ZERO, &tcp_frame(40000, 81, TcpFlags::SYN, 1000, None, b""));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1);
    let (flags, ack, seq, port) = parse_tcp(&frames[0]);
    assert_eq!(flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!((ack, seq, port), (Some(SeqNumber(1001)), SeqNumber(0), 40000));
    assert_eq!(stack.counters().tcp_no_socket, 1);
}

#[test]
fn a_reset_is_never_answered() {
    let mut stack = stack();
    learn_peer(&mut stack);
    stack.receive_frame(Instant::ZERO, &tcp_frame(40000, 81, TcpFlags::RST, 1000, None, b""));
    assert!(drain(&mut stack).is_empty());
}

#[test]
fn dual_stack_listener_accepts_ipv4_and_reports_v4_mapped_peers() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let listener = stack.socket(AddressFamily::Inet6, SocketType::Stream).unwrap();
    stack.bind(listener, "[::]:8000".parse().unwrap()).unwrap();
    stack.listen(listener, 8).unwrap();
    assert_eq!(stack.accept(listener).map(|_| ()), Err(Errno::WouldBlock));

    stack.receive_frame(Instant::ZERO, &tcp_frame(40000, 8000, TcpFlags::SYN, 1000, None, b""));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1);
    let (flags, ack, our_isn, _) = parse_tcp(&frames[0]);
    assert_eq!(flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(ack, Some(SeqNumber(1001)));
    assert_eq!(
        stack.accept(listener).map(|_| ()),
        Err(Errno::WouldBlock),
        "not before the handshake completes"
    );

    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(40000, 8000, TcpFlags::default(), 1001, Some(our_isn.0 + 1), b"GET"),
    );
    assert_eq!(stack.poll_event(), Some(listener));
    let (connection, peer) = stack.accept(listener).unwrap();
    assert_eq!(peer, "[::ffff:10.77.0.1]:40000".parse::<SocketAddr>().unwrap());
    assert_eq!(
        stack.local_addr(connection).unwrap(),
        "[::ffff:10.77.0.2]:8000".parse::<SocketAddr>().unwrap()
    );
    let mut buf = [0u8; 8];
    assert_eq!(stack.recv(connection, &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"GET");
    assert_eq!(stack.sockets().len(), 2);
}

#[test]
fn closing_a_listener_resets_its_unaccepted_connections() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let listener = listening(&mut stack, "0.0.0.0:8000");
    stack.receive_frame(Instant::ZERO, &tcp_frame(40000, 8000, TcpFlags::SYN, 1000, None, b""));
    let (_, _, our_isn, _) = parse_tcp(&drain(&mut stack)[0]);
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(40000, 8000, TcpFlags::default(), 1001, Some(our_isn.0 + 1), b""),
    );
    drain(&mut stack);
    stack.close(Instant::ZERO, listener).unwrap();
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1);
    assert!(parse_tcp(&frames[0]).0.contains(TcpFlags::RST));
    assert_eq!(stack.socket_count(), 0, "the aborted connection is freed");
}

#[test]
fn connect_resolves_the_neighbour_then_sends_syn() {
    let mut stack = stack();
    let socket = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    assert_eq!(
        stack.connect(Instant::ZERO, socket, "10.77.0.1:80".parse().unwrap()),
        Err(Errno::InProgress)
    );
    assert!(!stack.readiness(socket).unwrap().writable, "not writable while connecting");
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1, "ARP request first");
    stack.receive_frame(Instant::ZERO, &arp_frame(ArpOperation::Reply, OUR_IP));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1);
    let (flags, _, isn, port) = parse_tcp(&frames[0]);
    assert_eq!((flags, port), (TcpFlags::SYN, 80));
    let local_port = stack.local_addr(socket).unwrap().port();
    assert!((32768..=60999).contains(&local_port));

    // RST to our SYN: ECONNREFUSED.
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(80, local_port, TcpFlags::RST, 0, Some(isn.0 + 1), b""),
    );
    assert_eq!(stack.take_error(socket), Ok(Some(Errno::ConnectionRefused)));
}

#[test]
fn connect_without_a_route_fails_at_once() {
    let mut stack = stack();
    let socket = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    assert_eq!(
        stack.connect(Instant::ZERO, socket, "192.0.2.1:80".parse().unwrap()),
        Err(Errno::NetUnreachable)
    );
    assert_eq!(
        stack.connect(Instant::ZERO, socket, "10.77.0.255:80".parse().unwrap()),
        Err(Errno::NetUnreachable)
    );
}

#[test]
fn timers_drive_syn_retransmission() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let socket = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    let _ = stack.connect(Instant::ZERO, socket, "10.77.0.1:80".parse().unwrap());
    assert_eq!(drain(&mut stack).len(), 1);
    let deadline = stack.poll_timeout().expect("a retransmission timer");
    assert!(deadline > Instant::ZERO && deadline <= Instant::ZERO + Duration::from_secs(3));
    stack.handle_timeout(deadline);
    let mut buf = vec![0; 1514];
    let len = stack.poll_transmit(deadline, &mut buf).expect("SYN retransmitted");
    assert_eq!(parse_tcp(&buf[..len]).0, TcpFlags::SYN);
}

#[test]
fn a_new_syn_reuses_a_four_tuple_in_time_wait() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let listener = listening(&mut stack, "0.0.0.0:8000");

    // Handshake, then the stack closes first and the peer answers with its own FIN: the stack's
    // side ends in TIME-WAIT.
    let (connection, _) = handshake(&mut stack, listener, 8000);
    stack.close(Instant::ZERO, connection).unwrap();
    let (flags, _, fin_seq, _) = parse_tcp(&drain(&mut stack)[0]);
    assert!(flags.contains(TcpFlags::FIN));
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(40000, 8000, TcpFlags::FIN, 1001, Some(fin_seq.0 + 1), b""),
    );
    drain(&mut stack);
    let states: Vec<&str> = stack.sockets().iter().map(|s| s.state).collect();
    assert_eq!(states, vec!["LISTEN", "TIME-WAIT"]);

    // A SYN above the old incarnation's sequence space opens a new connection at once.
    stack.receive_frame(Instant::ZERO, &tcp_frame(40000, 8000, TcpFlags::SYN, 500_000, None, b""));
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1);
    let (flags, ack, _, _) = parse_tcp(&frames[0]);
    assert_eq!(flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(ack, Some(SeqNumber(500_001)));
    let states: Vec<&str> = stack.sockets().iter().map(|s| s.state).collect();
    assert_eq!(states, vec!["LISTEN", "SYN-RECV"], "the TIME-WAIT incarnation is gone");
}

#[test]
fn time_wait_ends_after_two_msl_and_frees_the_connection() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let (socket, port) = connected(&mut stack);
    stack.close(Instant::ZERO, socket).unwrap();
    let (_, _, fin_seq, _) = parse_tcp(&drain(&mut stack)[0]);
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(80, port, TcpFlags::FIN, 7001, Some(fin_seq.0 + 1), b""),
    );
    drain(&mut stack);
    assert_eq!(stack.socket_count(), 1, "the orphan waits in TIME-WAIT");
    let mut now = Instant::ZERO;
    for _ in 0..100 {
        let Some(deadline) = stack.poll_timeout() else { break };
        now = deadline;
        stack.handle_timeout(now);
    }
    assert_eq!(stack.socket_count(), 0);
    assert_eq!(now, Instant::ZERO + Duration::from_secs(60), "2 × MSL of 30 s");
}

// ---- Failure paths found in review ----

/// Runs every timer until `limit`, draining output after each; returns the frames sent.
fn run_timers_until(stack: &mut Stack, limit: Instant) -> usize {
    let mut sent = 0;
    let mut buf = vec![0; 1514];
    for _ in 0..100_000 {
        let Some(deadline) = stack.poll_timeout() else { break };
        if deadline > limit {
            break;
        }
        stack.handle_timeout(deadline);
        while stack.poll_transmit(deadline, &mut buf).is_some() {
            sent += 1;
        }
    }
    sent
}

#[test]
fn connect_to_a_host_that_never_answers_arp_fails_with_ehostunreach() {
    let mut stack = stack();
    let socket = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    let _ = stack.connect(Instant::ZERO, socket, "10.77.0.9:80".parse().unwrap());
    let frames = drain(&mut stack);
    assert_eq!(frames.len(), 1, "only the ARP request: the SYN waits for the neighbour");
    run_timers_until(&mut stack, Instant::ZERO + Duration::from_secs(10));
    assert_eq!(stack.take_error(socket), Ok(Some(Errno::HostUnreachable)));
    assert!(stack.readiness(socket).unwrap().hangup);
    assert_eq!(
        stack.counters().arp_unresolved_drops,
        2,
        "the SYN and its retransmission after 1 s waited for the neighbour and were dropped at give-up"
    );
}

#[test]
fn an_established_connection_whose_peer_vanishes_times_out() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let (socket, _) = connected(&mut stack);
    stack.send(socket, b"are you there?").unwrap();
    // The peer never answers again, and its ARP entry expires on the way.
    run_timers_until(&mut stack, Instant::ZERO + Duration::from_secs(3600));
    let error = stack.take_error(socket).unwrap();
    assert!(matches!(error, Some(Errno::TimedOut | Errno::HostUnreachable)), "{error:?}");
    assert_eq!(stack.poll_timeout(), None, "nothing left to do");
}

#[test]
fn packets_from_martian_sources_are_discarded_silently() {
    let mut stack = stack();
    learn_peer(&mut stack);
    listening(&mut stack, "0.0.0.0:80");
    for source in
        [OUR_IP, Ipv4Addr::BROADCAST, Ipv4Addr::new(10, 77, 0, 255), Ipv4Addr::new(127, 0, 0, 1)]
    {
        let frame = tcp_frame_from(source, 40000, 80, TcpFlags::SYN, 1, None, b"");
        stack.receive_frame(Instant::ZERO, &frame);
    }
    assert!(drain(&mut stack).is_empty(), "no SYN-ACK or RST to a martian");
    assert_eq!(stack.counters().ip_martian_sources, 4);
    assert_eq!(stack.socket_count(), 1, "only the listener");
    assert!(stack.timers.is_empty(), "and nothing spins");
}

#[test]
fn a_syn_from_a_source_we_cannot_route_to_is_dropped() {
    let mut stack = stack(); // no gateway: only 10.77.0.0/24 is reachable
    listening(&mut stack, "0.0.0.0:80");
    let source = Ipv4Addr::new(192, 0, 2, 1);
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame_from(source, 40000, 80, TcpFlags::SYN, 1, None, b""),
    );
    assert!(drain(&mut stack).is_empty());
    assert_eq!(stack.socket_count(), 1);
    assert_eq!(stack.poll_timeout(), None);
}

#[test]
fn the_timer_heap_stays_small_however_often_timers_move() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let listener = listening(&mut stack, "0.0.0.0:80");
    let options = SocketOptions { keepalive: true, ..stack.options(listener).unwrap().clone() };
    stack.set_options(Instant::ZERO, listener, options).unwrap();
    stack.receive_frame(Instant::ZERO, &tcp_frame(40000, 80, TcpFlags::SYN, 1000, None, b""));
    let (_, _, isn, _) = parse_tcp(&drain(&mut stack)[0]);
    let mut seq = 1001u32;
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(40000, 80, TcpFlags::default(), seq, Some(isn.0 + 1), b""),
    );
    let (connection, _) = stack.accept(listener).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..5000u64 {
        let now = Instant::from_micros(i * 100);
        stack.receive_frame(
            now,
            &tcp_frame(40000, 80, TcpFlags::default(), seq, Some(isn.0 + 1), &[7; 1000]),
        );
        seq = seq.wrapping_add(1000);
        while stack.recv(connection, &mut buf).is_ok() {}
        let mut out = vec![0; 1514];
        while stack.poll_transmit(now, &mut out).is_some() {}
        if i % 50 == 0 {
            stack.handle_timeout(now);
        }
    }
    assert!(stack.timers.len() <= 4, "{} timer entries for 2 sockets", stack.timers.len());
}

#[test]
fn a_udp_socket_is_writable_exactly_when_a_datagram_fits_and_hears_when_room_returns() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    let datagram = vec![0x5a; 60_000];
    let to = Some("10.77.0.1:9".parse().unwrap());
    let mut sent = 0;
    while stack.readiness(socket).unwrap().writable {
        assert_eq!(stack.send_to(socket, &datagram, to), Ok(60_000), "writable, so it must fit");
        sent += 1;
        assert!(sent < 1000);
    }
    assert_eq!(stack.send_to(socket, &datagram, to), Err(Errno::WouldBlock));
    while stack.poll_event().is_some() {}
    let mut buf = vec![0; 1514];
    let mut frames = 0;
    while stack.poll_transmit(Instant::ZERO, &mut buf).is_some() {
        frames += 1;
    }
    assert_eq!(frames, sent * 41, "60008 bytes of UDP in 41 fragments each");
    assert_eq!(stack.poll_event(), Some(socket), "told that the queue drained");
    assert!(stack.readiness(socket).unwrap().writable);
}

#[test]
fn broadcasts_reach_every_wildcard_socket_on_the_port() {
    let mut stack = stack();
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
        let options = SocketOptions { reuse_addr: true, ..stack.options(socket).unwrap().clone() };
        stack.set_options(Instant::ZERO, socket, options).unwrap();
        stack.bind(socket, "0.0.0.0:67".parse().unwrap()).unwrap();
        sockets.push(socket);
    }
    stack.receive_frame(Instant::ZERO, &udp_frame(68, Ipv4Addr::BROADCAST, 67, b"discover"));
    for socket in sockets {
        let mut buf = [0u8; 16];
        let (copied, _, _) = stack.recv_from(socket, &mut buf).unwrap();
        assert_eq!(&buf[..copied], b"discover", "no SO_BROADCAST needed to receive");
    }
}

#[test]
fn tcp_recv_from_keeps_data_read_after_the_connection_closed() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let listener = listening(&mut stack, "0.0.0.0:80");
    stack.receive_frame(Instant::ZERO, &tcp_frame(40000, 80, TcpFlags::SYN, 1000, None, b""));
    let (_, _, isn, _) = parse_tcp(&drain(&mut stack)[0]);
    let fin_data = TcpFlags::FIN | TcpFlags::PSH;
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(40000, 80, TcpFlags::default(), 1001, Some(isn.0 + 1), b""),
    );
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(40000, 80, fin_data, 1001, Some(isn.0 + 1), b"hello"),
    );
    let (connection, _) = stack.accept(listener).unwrap();
    stack.shutdown(Instant::ZERO, connection, crate::socket::Shutdown::Write).unwrap();
    let (_, _, our_fin, _) = parse_tcp(drain(&mut stack).last().unwrap());
    stack.receive_frame(
        Instant::ZERO,
        &tcp_frame(40000, 80, TcpFlags::default(), 1007, Some(our_fin.0 + 1), b""),
    );
    let mut buf = [0u8; 16];
    let (copied, _, peer) = stack.recv_from(connection, &mut buf).unwrap();
    assert_eq!((&buf[..copied], peer), (&b"hello"[..], "10.77.0.1:40000".parse().unwrap()));
    assert_eq!(stack.recv(connection, &mut buf), Ok(0));
}

#[test]
fn socket_buffer_sizes_are_clamped_and_nonsense_options_refused() {
    let mut stack = stack();
    let socket = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    let defaults = stack.options(socket).unwrap().clone();
    let huge = SocketOptions { send_buffer: usize::MAX, recv_buffer: 1, ..defaults.clone() };
    stack.set_options(Instant::ZERO, socket, huge).unwrap();
    let options = stack.options(socket).unwrap();
    assert_eq!((options.send_buffer, options.recv_buffer), (64 << 20, 4096));
    for bad in [
        SocketOptions { keep_count: 0, ..defaults.clone() },
        SocketOptions { ttl: 0, ..defaults.clone() },
        SocketOptions { max_segment: Some(40), ..defaults.clone() },
        SocketOptions { keep_interval: Duration::ZERO, ..defaults.clone() },
    ] {
        assert_eq!(stack.set_options(Instant::ZERO, socket, bad), Err(Errno::InvalidArgument));
    }
}

#[test]
fn configurations_the_engine_cannot_run_are_refused_with_a_reason() {
    let good = StackConfig::new(OUR_MAC, Ipv4Cidr::new(OUR_IP, 24).unwrap(), [0; 16]);
    assert_eq!(good.validate(), Ok(()));
    let cases = [
        (StackConfig { mtu: 100, ..good.clone() }, "MTU 100 is outside 576..=65535"),
        (
            StackConfig { mac: EthernetAddress::BROADCAST, ..good.clone() },
            "MAC ff:ff:ff:ff:ff:ff is not a unicast address",
        ),
        (
            StackConfig { gateway: Some(Ipv4Addr::new(192, 0, 2, 1)), ..good.clone() },
            "gateway 192.0.2.1 is not another host on 10.77.0.2/24",
        ),
        (
            StackConfig { ephemeral_ports: (0, 10), ..good.clone() },
            "ephemeral port range 0..=10 is empty or includes 0",
        ),
    ];
    for (config, reason) in cases {
        assert_eq!(config.validate(), Err(reason.to_owned()));
    }
}

#[test]
#[should_panic(expected = "invalid StackConfig: MTU 40 is outside 576..=65535")]
fn a_stack_is_never_built_from_an_invalid_configuration() {
    let config = StackConfig {
        mtu: 40,
        ..StackConfig::new(OUR_MAC, Ipv4Cidr::new(OUR_IP, 24).unwrap(), [0; 16])
    };
    let _ = Stack::new(config, Instant::ZERO);
}

#[test]
fn connections_left_on_a_port_block_a_bind_without_so_reuseaddr() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let listener = listening(&mut stack, "0.0.0.0:8000");
    let (connection, _) = handshake(&mut stack, listener, 8000);
    stack.close(Instant::ZERO, listener).unwrap();

    // The server restarts while its old connection lives on.
    let restarted = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    assert_eq!(stack.bind(restarted, "0.0.0.0:8000".parse().unwrap()), Err(Errno::AddrInUse));
    let options = SocketOptions { reuse_addr: true, ..stack.options(restarted).unwrap().clone() };
    stack.set_options(Instant::ZERO, restarted, options).unwrap();
    stack.bind(restarted, "0.0.0.0:8000".parse().unwrap()).unwrap();

    // Once the connection is gone, the port is free for anyone.
    let options = SocketOptions {
        linger: Some(Duration::ZERO),
        ..stack.options(connection).unwrap().clone()
    };
    stack.set_options(Instant::ZERO, connection, options).unwrap();
    stack.close(Instant::ZERO, connection).unwrap();
    drain(&mut stack);
    assert!(stack.tcp_connection_ports.is_empty());
    stack.close(Instant::ZERO, restarted).unwrap();
    let plain = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    stack.bind(plain, "0.0.0.0:8000".parse().unwrap()).unwrap();
}

#[test]
fn icmp_errors_must_quote_a_sequence_number_in_flight() {
    let mut stack = stack();
    learn_peer(&mut stack);
    let socket = stack.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
    let _ = stack.connect(Instant::ZERO, socket, "10.77.0.1:80".parse().unwrap());
    let syn = drain(&mut stack).remove(0);
    let (header, segment) = parse_ip(&syn);
    let unreachable = |quoted_segment: &[u8]| {
        let error = Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable::HostUnreachable,
            header,
            data: quoted_segment,
        };
        let mut icmp = vec![0; error.buffer_len()];
        error.emit(&mut Icmpv4Packet::new_checked(&mut icmp[..]).unwrap(), CHECKSUMS);
        ip_frame(IpProtocol::Icmp, OUR_IP, &icmp)
    };
    // A blind forgery: right ports, a sequence number nobody sent.
    let mut forged = segment[..8].to_vec();
    forged[4] ^= 0x80;
    stack.receive_frame(Instant::ZERO, &unreachable(&forged));
    assert_eq!(stack.take_error(socket), Ok(None), "ignored");
    assert_eq!(stack.counters().icmp_dropped, 1);
    // The real thing quotes our SYN.
    stack.receive_frame(Instant::ZERO, &unreachable(&segment[..8]));
    assert_eq!(stack.take_error(socket), Ok(Some(Errno::HostUnreachable)));
}

#[test]
fn connected_udp_reports_the_source_address_it_sends_from() {
    let mut stack = stack();
    let socket = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
    stack.bind(socket, "0.0.0.0:0".parse().unwrap()).unwrap();
    let unconnected = stack.local_addr(socket).unwrap();
    assert!(unconnected.ip().is_unspecified(), "unconnected: {unconnected}");
    stack.connect(Instant::ZERO, socket, "10.77.0.1:53".parse().unwrap()).unwrap();
    let connected = stack.local_addr(socket).unwrap();
    assert_eq!(connected.ip().to_string(), "10.77.0.2");
    assert_eq!(connected.port(), unconnected.port());
}
