//! Test scaffolding for the kernel-backed backends: throwaway network namespaces, and the ARP
//! and ICMP frames of a scripted "engine", built and parsed with fbsd-tcp's wire module.
//!
//! Every test makes its own namespace (a unique name, deleted on drop even when the test
//! panics) and brings addresses up only inside it; nothing touches the root namespace's
//! addresses.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fbsd_tcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumPolicy, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Cidr, Ipv4Packet, Ipv4Repr,
};

use super::{in_net_namespace, sys, Backend};

/// The engine's address in every test namespace.
pub(crate) const ENGINE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// The kernel side's address (inside the test namespace only).
pub(crate) fn kernel_cidr() -> Ipv4Cidr {
    Ipv4Cidr::new(Ipv4Addr::new(10, 77, 0, 1), 24).unwrap()
}

/// True if the test can run; otherwise says why on stderr (the test then passes vacuously).
pub(crate) fn privileged(test: &str) -> bool {
    if sys::effective_uid() != 0 {
        eprintln!("skipping {test}: needs root (network namespaces, TAP devices, packet sockets)");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipping {test}: needs the `ip` command (iproute2)");
        return false;
    }
    true
}

/// A network namespace of our own, deleted on drop.
#[derive(Debug)]
pub(crate) struct NetNs {
    pub(crate) name: String,
}

impl NetNs {
    pub(crate) fn new(tag: &str) -> NetNs {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("jr-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        NetNs { name }
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub(crate) fn ip(&self, args: &str) {
        run(Command::new("ip").args(["-n", &self.name]).args(args.split_whitespace()));
    }

    /// `ip -n NS ARGS`, returning its stdout and success.
    pub(crate) fn ip_output(&self, args: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args.split_whitespace())
            .output()
            .expect("run ip");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip netns exec NS CMD...`, which must succeed.
    pub(crate) fn exec(&self, cmd: &str) {
        run(Command::new("ip").args(["netns", "exec", &self.name]).args(cmd.split_whitespace()));
    }

    /// Runs `f` on a thread inside the namespace.
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_net_namespace(&PathBuf::from(format!("/run/netns/{}", self.name)), f)
            .expect("enter the test namespace")
    }

    /// A veth pair `a`–`b` in the namespace, `b` holding the kernel's address, both up; IPv6 off
    /// so that its chatter stays out of the way.
    pub(crate) fn veth_pair(&self, a: &str, b: &str) {
        self.exec("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1");
        self.exec("sysctl -q -w net.ipv6.conf.default.disable_ipv6=1");
        self.ip(&format!("link add {a} type veth peer name {b}"));
        self.ip(&format!("addr add {}/{} dev {b}", kernel_cidr().addr, kernel_cidr().prefix_len));
        self.ip(&format!("link set {a} up"));
        self.ip(&format!("link set {b} up"));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A frame as the scripted engine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    Arp {
        dst: EthernetAddress,
        arp: ArpRepr,
    },
    EchoReply {
        dst: EthernetAddress,
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        ident: u16,
        seq: u16,
        data: Vec<u8>,
    },
    Other,
}

pub(crate) fn parse(frame: &[u8]) -> Seen {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return Seen::Other };
    match eth.ethertype() {
        EtherType::Arp => ArpPacket::new_checked(eth.payload())
            .and_then(|p| ArpRepr::parse(&p))
            .map_or(Seen::Other, |arp| Seen::Arp { dst: eth.dst_addr(), arp }),
        EtherType::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return Seen::Other };
            let Ok(repr) = Ipv4Repr::parse(&ip, ChecksumPolicy::default()) else {
                return Seen::Other;
            };
            if repr.protocol != IpProtocol::Icmp {
                return Seen::Other;
            }
            let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else { return Seen::Other };
            match Icmpv4Repr::parse(&icmp, ChecksumPolicy::default()) {
                Ok(Icmpv4Repr::EchoReply { ident, seq_no, data }) => Seen::EchoReply {
                    dst: eth.dst_addr(),
                    src_ip: repr.src_addr,
                    dst_ip: repr.dst_addr,
                    ident,
                    seq: seq_no,
                    data: data.to_vec(),
                },
                _ => Seen::Other,
            }
        }
        _ => Seen::Other,
    }
}

fn ethernet(
    src: EthernetAddress,
    dst: EthernetAddress,
    ethertype: EtherType,
    payload_len: usize,
) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + payload_len];
    EthernetRepr { src_addr: src, dst_addr: dst, ethertype }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame
}

/// An ARP frame for `arp`, to `dst`.
pub(crate) fn arp_frame(dst: EthernetAddress, arp: ArpRepr) -> Vec<u8> {
    let mut frame = ethernet(arp.source_hardware_addr, dst, EtherType::Arp, arp.buffer_len());
    arp.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
    frame
}

/// "who-has `target` tell `ip`", broadcast from `mac`.
pub(crate) fn arp_request(mac: EthernetAddress, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    arp_frame(EthernetAddress::BROADCAST, repr)
}

/// An ICMP echo request from (`mac`, `ip`) to (`dst_mac`, `dst_ip`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn echo_request(
    mac: EthernetAddress,
    ip: Ipv4Addr,
    dst_mac: EthernetAddress,
    dst_ip: Ipv4Addr,
    ident: u16,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest { ident, seq_no: seq, data };
    let ip_repr = Ipv4Repr {
        src_addr: ip,
        dst_addr: dst_ip,
        protocol: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        ttl: 64,
        tos: 0,
        ident: seq,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut frame = ethernet(mac, dst_mac, EtherType::Ipv4, 20 + icmp.buffer_len());
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]), ChecksumPolicy::default());
    icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut frame[34..]), ChecksumPolicy::default());
    frame
}

/// Sends `frames` through `backend` (transmit + flush), asserting they were all accepted.
pub(crate) fn send(backend: &mut dyn Backend, frames: &[Vec<u8>]) {
    let mut next = frames.iter();
    let accepted = backend
        .transmit(&mut |buf| {
            let frame = next.next()?;
            buf[..frame.len()].copy_from_slice(frame);
            Some(frame.len())
        })
        .expect("transmit");
    backend.flush().expect("flush");
    assert_eq!(accepted, frames.len(), "the backend accepted every frame");
}

/// The scripted engine: a MAC and an address, answering the kernel's ARP requests for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Engine {
    pub(crate) mac: EthernetAddress,
    pub(crate) ip: Ipv4Addr,
}

impl Engine {
    /// Receives until `want` picks a frame or `timeout` passes, answering ARP requests for our
    /// address on the way.
    pub(crate) fn await_frame<T>(
        &self,
        backend: &mut dyn Backend,
        timeout: Duration,
        mut want: impl FnMut(&Seen) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut frames = Vec::new();
            backend.receive(64, &mut |f| frames.push(parse(f))).expect("receive");
            for seen in &frames {
                self.answer_arp(backend, seen);
                if let Some(found) = want(seen) {
                    return Some(found);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if frames.is_empty() {
                let fd = backend.poll_fd().expect("kernel backends have a poll fd");
                sys::wait_readable(fd, (deadline - now).min(Duration::from_millis(50)))
                    .expect("poll");
            }
        }
    }

    /// Answers a request for our address.
    pub(crate) fn answer_arp(&self, backend: &mut dyn Backend, seen: &Seen) {
        if let Seen::Arp { arp, .. } = seen {
            if arp.operation == ArpOperation::Request && arp.target_protocol_addr == self.ip {
                let reply = ArpRepr {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: self.mac,
                    source_protocol_addr: self.ip,
                    target_hardware_addr: arp.source_hardware_addr,
                    target_protocol_addr: arp.source_protocol_addr,
                };
                send(backend, &[arp_frame(arp.source_hardware_addr, reply)]);
            }
        }
    }

    /// Resolves `kernel` with ARP, then pings it once; returns the kernel side's MAC.
    pub(crate) fn arp_then_ping(
        &self,
        backend: &mut dyn Backend,
        kernel: Ipv4Addr,
    ) -> EthernetAddress {
        send(backend, &[arp_request(self.mac, self.ip, kernel)]);
        let me = *self;
        let kernel_mac = self
            .await_frame(backend, Duration::from_secs(5), |seen| match seen {
                Seen::Arp { dst, arp }
                    if arp.operation == ArpOperation::Reply
                        && arp.source_protocol_addr == kernel =>
                {
                    assert_eq!(*dst, me.mac, "the reply is addressed to the engine");
                    assert_eq!(arp.target_hardware_addr, me.mac);
                    assert_eq!(arp.target_protocol_addr, me.ip);
                    Some(arp.source_hardware_addr)
                }
                _ => None,
            })
            .expect("the kernel answers ARP within 5 s");

        let payload: Vec<u8> = (0..56u8).collect();
        send(backend, &[echo_request(self.mac, self.ip, kernel_mac, kernel, 0x4a52, 1, &payload)]);
        let reply = self
            .await_frame(backend, Duration::from_secs(5), |seen| match seen {
                Seen::EchoReply { ident: 0x4a52, .. } => Some(seen.clone()),
                _ => None,
            })
            .expect("the kernel answers the echo request within 5 s");
        assert_eq!(
            reply,
            Seen::EchoReply {
                dst: self.mac,
                src_ip: kernel,
                dst_ip: self.ip,
                ident: 0x4a52,
                seq: 1,
                data: payload,
            }
        );
        kernel_mac
    }
}
