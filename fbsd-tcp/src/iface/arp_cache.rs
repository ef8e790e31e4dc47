//! The ARP neighbour cache (RFC 826, RFC 1122 §2.3.2.1): entries that expire, a bounded queue of
//! packets waiting for a resolution, and request pacing with give-up.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};
use crate::wire::EthernetAddress;

/// Tunables of the cache.
#[derive(Debug, Clone)]
pub struct ArpConfig {
    /// How long a learned entry stays valid (Linux: ~30 s reachable, then re-probed).
    pub entry_ttl: Duration,
    /// Time between requests for an unresolved address.
    pub request_interval: Duration,
    /// Requests before giving up (queued packets are dropped, counted as unresolved).
    pub max_requests: u32,
    /// Packets queued per unresolved address (Linux unres_qlen_bytes is similar).
    pub max_queued_per_addr: usize,
    /// Most entries (resolved + pending); the oldest is evicted beyond it.
    pub max_entries: usize,
}

impl Default for ArpConfig {
    fn default() -> Self {
        ArpConfig {
            entry_ttl: Duration::from_secs(60),
            request_interval: Duration::from_secs(1),
            max_requests: 3,
            max_queued_per_addr: 64,
            max_entries: 1024,
        }
    }
}

/// What happened to a packet handed to [`ArpCache::queue_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Queued; `send_request` says whether a request must go out now (first packet for this
    /// address).
    Queued {
        /// Send an ARP request for the address now.
        send_request: bool,
    },
    /// The per-address queue is full; the packet was dropped.
    Dropped,
}

/// The neighbour cache.
#[derive(Debug)]
pub struct ArpCache {
    config: ArpConfig,
    resolved: HashMap<Ipv4Addr, (EthernetAddress, Instant)>,
    // The ARP helper defines the pending-resolution state.
}

impl ArpCache {
    /// An empty cache.
    pub fn new(config: ArpConfig) -> ArpCache {
        let _ = config;
        todo!("iface helper")
    }
    /// The MAC for `ip` if resolved and not expired.
    pub fn lookup(&self, now: Instant, ip: Ipv4Addr) -> Option<EthernetAddress> {
        let _ = (now, ip);
        todo!("iface helper")
    }
    /// Learns or refreshes `ip` → `mac`. Returns the packets that were waiting for `ip`, in
    /// order, for the caller to send now.
    pub fn insert(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress) -> Vec<Vec<u8>> {
        let _ = (now, ip, mac);
        todo!("iface helper")
    }
    /// RFC 826's merge step: refreshes `ip` only if it is already known or pending (so that
    /// every broadcast request on the segment does not fill the cache). Returns waiting packets
    /// as `insert` does.
    pub fn update_if_known(
        &mut self,
        now: Instant,
        ip: Ipv4Addr,
        mac: EthernetAddress,
    ) -> Vec<Vec<u8>> {
        let _ = (now, ip, mac);
        todo!("iface helper")
    }
    /// Queues an IP packet (without Ethernet header) until `ip` resolves.
    pub fn queue_packet(&mut self, now: Instant, ip: Ipv4Addr, packet: Vec<u8>) -> QueueOutcome {
        let _ = (now, ip, packet);
        todo!("iface helper")
    }
    /// True if a resolution for `ip` is under way (requests sent, not answered, not given up).
    pub fn is_pending(&self, ip: Ipv4Addr) -> bool {
        let _ = ip;
        todo!("iface helper")
    }
    /// Marks `ip` as wanted without queuing a packet (TCP keeps its segments in its own buffers).
    /// Returns true if a request must be sent now.
    pub fn want(&mut self, now: Instant, ip: Ipv4Addr) -> bool {
        let _ = (now, ip);
        todo!("iface helper")
    }
    /// Advances time: expires entries, and returns the addresses to send a request for now
    /// (retries) and the number of queued packets dropped because resolution gave up.
    pub fn poll(&mut self, now: Instant) -> (Vec<Ipv4Addr>, usize) {
        let _ = now;
        todo!("iface helper")
    }
    /// The next instant `poll` has work.
    pub fn poll_at(&self) -> Option<Instant> {
        todo!("iface helper")
    }
    /// Resolved entries (address, MAC, expiry), for display.
    pub fn entries(&self) -> impl Iterator<Item = (Ipv4Addr, EthernetAddress, Instant)> + '_ {
        self.resolved.iter().map(|(ip, (mac, exp))| (*ip, *mac, *exp))
    }
}
