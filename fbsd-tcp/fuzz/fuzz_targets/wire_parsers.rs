//! Raw bytes into every wire parser.
//!
//! The input is tried as an Ethernet frame (and from there as ARP or IPv4 and its TCP, UDP or
//! ICMP payload), and also fed straight to each parser so that short inputs reach them too.
//! Checksums are not verified, or random input would almost never get past them.
//!
//! Besides "never panics", every successful parse is checked for a round trip: emitting the
//! `Repr` and parsing the result gives the same `Repr` back (with checksum verification on,
//! which also checks that emit fills checksums correctly).

#![no_main]

use std::net::Ipv4Addr;

use fbsd_tcp::wire::{
    ArpPacket, ArpRepr, ChecksumPolicy, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use libfuzzer_sys::fuzz_target;

const RX: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: false };
const TX_VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: true };

/// Addresses for the pseudo-header when a transport parser gets the raw input.
const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fuzz_target!(|data: &[u8]| {
    ethernet(data);
    arp(data);
    ipv4(data);
    tcp(data, SRC, DST);
    udp(data, SRC, DST);
    icmp(data);
});

fn ethernet(data: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(data) else { return };
    let Ok(repr) = EthernetRepr::parse(&frame) else { return };
    // Every header bit is meaningful: the emitted header is the input's.
    let mut out = [0u8; 14];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    assert_eq!(out[..], data[..14]);
    match repr.ethertype {
        EtherType::Arp => arp(frame.payload()),
        EtherType::Ipv4 => ipv4(frame.payload()),
        _ => {}
    }
}

fn arp(data: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(data) else { return };
    let Ok(repr) = ArpRepr::parse(&packet) else { return };
    // Parse accepts only the one layout emit writes: the bytes round-trip exactly.
    let mut out = [0u8; 28];
    repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
    assert_eq!(out[..], data[..28]);
}

fn ipv4(data: &[u8]) {
    let Ok(packet) = Ipv4Packet::new_checked(data) else { return };
    let Ok(repr) = Ipv4Repr::parse(&packet, RX) else { return };
    assert_eq!(repr.payload_len, packet.payload().len());

    let mut out = vec![0u8; repr.header_len() + repr.payload_len];
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), TX_VERIFY);
    let reparsed = Ipv4Packet::new_checked(&out[..]).expect("emitted IPv4 header is well-formed");
    assert_eq!(Ipv4Repr::parse(&reparsed, TX_VERIFY), Ok(repr));

    let payload = packet.payload();
    match repr.protocol {
        IpProtocol::Tcp => tcp(payload, repr.src_addr, repr.dst_addr),
        IpProtocol::Udp => udp(payload, repr.src_addr, repr.dst_addr),
        IpProtocol::Icmp => icmp(payload),
        IpProtocol::Unknown(_) => {}
    }
}

fn tcp(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Ok(packet) = TcpPacket::new_checked(data) else { return };
    let Ok(repr) = TcpRepr::parse(&packet, src, dst, RX) else { return };
    assert_eq!(repr.ack_number.is_some(), repr.flags.contains(TcpFlags::ACK));
    assert!(repr.options.sack().len() <= 4);

    let mut out = vec![0u8; repr.header_len() + repr.payload.len()];
    assert!(repr.header_len() <= 60 && repr.header_len() % 4 == 0);
    repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), src, dst, TX_VERIFY);
    let reparsed = TcpPacket::new_checked(&out[..]).expect("emitted TCP header is well-formed");
    assert_eq!(reparsed.header_len(), repr.header_len());
    let again = TcpRepr::parse(&reparsed, src, dst, TX_VERIFY).expect("emitted TCP segment parses");

    // Options emitted Linux-style may hold fewer SACK blocks than a compact sender fit in:
    // exactly the first ones that fit, and only when another would not have.
    let kept = again.options.sack().len();
    assert_eq!(again.options.sack(), &repr.options.sack()[..kept]);
    if kept < repr.options.sack().len() {
        assert!(repr.options.emitted_len() + 8 > 40);
    }
    let mut expected = repr;
    expected.options.sack_len = again.options.sack_len;
    expected.options.sack_blocks = again.options.sack_blocks;
    assert_eq!(again, expected);
}

fn udp(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Ok(packet) = UdpPacket::new_checked(data) else { return };
    let Ok(repr) = UdpRepr::parse(&packet, src, dst, RX) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut UdpPacket::new_unchecked(&mut out[..]), src, dst, TX_VERIFY);
    let reparsed = UdpPacket::new_checked(&out[..]).expect("emitted UDP header is well-formed");
    assert_ne!(reparsed.checksum(), 0);
    assert_eq!(UdpRepr::parse(&reparsed, src, dst, TX_VERIFY), Ok(repr));
}

fn icmp(data: &[u8]) {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else { return };
    let Ok(repr) = Icmpv4Repr::parse(&packet, RX) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]), TX_VERIFY);
    let reparsed = Icmpv4Packet::new_checked(&out[..]).expect("emitted ICMP header is well-formed");
    assert_eq!(Icmpv4Repr::parse(&reparsed, TX_VERIFY), Ok(repr));
}
