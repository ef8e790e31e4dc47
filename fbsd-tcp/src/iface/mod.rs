//! The interface: one Ethernet port with one IPv4 address, and every socket on it. [`Stack`](crate::Stack) is
//! the engine's entry point: frames and time in; frames, socket events and deadlines out.

mod arp_cache;
mod counters;
mod frag;

pub use arp_cache::{ArpCache, ArpConfig, QueueOutcome};
pub use counters::Counters;
pub use frag::{fragments, Reassembler, ReassemblyError};

use std::net::Ipv4Addr;

use crate::socket::tcp::TcpConfig;
use crate::time::Duration;
use crate::wire::{ChecksumPolicy, EthernetAddress, Ipv4Cidr};

/// Everything a [`Stack`](crate::Stack) is configured with.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Our MAC address.
    pub mac: EthernetAddress,
    /// Our address and the directly attached network.
    pub addr: Ipv4Cidr,
    /// Where packets for destinations off the network go (none: only the attached network).
    pub gateway: Option<Ipv4Addr>,
    /// IP MTU of the link (1500 for Ethernet; up to 9000 for jumbo frames).
    pub mtu: usize,
    /// The largest IPv4 packet (header included) carrying one TCP segment that the link takes
    /// whole, beyond the MTU: a device doing TCP segmentation offload, or a virtual wire whose
    /// receiver takes such packets as they are (as veth passes the kernel's GSO packets).
    /// Connections then send new data in segments of up to this size, a whole number of MSS
    /// each. 0, or anything up to the MTU, means none: every segment fits the MTU.
    pub segmentation_offload: usize,
    /// Checksum computation and verification.
    pub checksum: ChecksumPolicy,
    /// Secret for ISNs and timestamp offsets (RFC 6528), and for ephemeral-port selection.
    /// The caller fills it from a real source of randomness.
    pub secret: [u8; 16],
    /// TCP defaults.
    pub tcp: TcpConfig,
    /// ARP cache tunables.
    pub arp: ArpConfig,
    /// How long partial datagrams wait for their missing fragments.
    pub reassembly_timeout: Duration,
    /// Memory cap on fragments held for reassembly.
    pub reassembly_max_bytes: usize,
    /// Ephemeral port range for connect and autobind (Linux default 32768–60999).
    pub ephemeral_ports: (u16, u16),
    /// Default TTL.
    pub ttl: u8,
    /// Most sockets (and connections) the stack holds.
    pub max_sockets: usize,
}

impl StackConfig {
    /// Checks what the engine relies on: an MTU of 576 to 65535 bytes (576 keeps a full
    /// 536-byte segment, the smallest MSS TCP falls back to, inside one frame), a unicast MAC, a
    /// unicast address, a gateway on the attached network, a non-empty ephemeral port range.
    pub fn validate(&self) -> Result<(), String> {
        if !(576..=65535).contains(&self.mtu) {
            return Err(format!("MTU {} is outside 576..=65535", self.mtu));
        }
        if self.segmentation_offload > 65535 {
            return Err(format!(
                "segmentation offload of {} bytes: an IPv4 packet holds at most 65535",
                self.segmentation_offload
            ));
        }
        if !self.mac.is_unicast() {
            return Err(format!("MAC {} is not a unicast address", self.mac));
        }
        let addr = self.addr.addr;
        if addr.is_unspecified()
            || addr.is_multicast()
            || addr.is_broadcast()
            || self.addr.prefix_len > 30
        {
            return Err(format!("{addr}/{} is not a usable host address", self.addr.prefix_len));
        }
        if let Some(gateway) = self.gateway {
            if !self.addr.contains(gateway) || gateway == addr {
                return Err(format!(
                    "gateway {gateway} is not another host on {addr}/{}",
                    self.addr.prefix_len
                ));
            }
        }
        let (low, high) = self.ephemeral_ports;
        if low == 0 || low > high {
            return Err(format!("ephemeral port range {low}..={high} is empty or includes 0"));
        }
        Ok(())
    }

    /// A configuration with the usual defaults for everything but identity.
    pub fn new(mac: EthernetAddress, addr: Ipv4Cidr, secret: [u8; 16]) -> StackConfig {
        StackConfig {
            mac,
            addr,
            gateway: None,
            mtu: 1500,
            segmentation_offload: 0,
            checksum: ChecksumPolicy::default(),
            secret,
            tcp: TcpConfig::default(),
            arp: ArpConfig::default(),
            reassembly_timeout: Duration::from_secs(30),
            reassembly_max_bytes: 4 << 20,
            ephemeral_ports: (32768, 60999),
            ttl: 64,
            max_sockets: 65536,
        }
    }
}
