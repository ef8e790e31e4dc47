//! The ARP neighbour cache (RFC 826, RFC 1122 §2.3.2.1): entries that expire, a bounded queue of
//! packets waiting for a resolution, and request pacing with give-up.
//!
//! Every address is in at most one of three states:
//! - *resolved*: a MAC and the instant it stops being trusted (`entry_ttl` after it was learned
//!   or last refreshed);
//! - *pending*: requests have gone out; the packets waiting for the answer, how many requests
//!   were sent, and when the next one is due;
//! - *held down*: resolution gave up. For `max_requests × request_interval` (as long as one
//!   unanswered resolution lasts) nothing restarts it: [`ArpCache::want`] says "no request" and
//!   [`ArpCache::queue_packet`] drops. RFC 1122 requires protection against ARP flooding and
//!   recommends at most one request per second per address; a TCP connection retrying against a
//!   dead neighbour would otherwise keep exactly that rate up forever. With the hold-down it costs
//!   at most `max_requests` requests per `2 × max_requests × request_interval`, and the caller can
//!   fail fast ([`ArpCache::is_unreachable`]) instead of queueing into the void. A reply or a
//!   merge during the hold-down resolves the address at once.
//!
//! Each state keeps its deadlines in an ordered index, so [`ArpCache::poll_at`] and eviction cost
//! O(log n) however large the table grows.

use std::collections::{BTreeSet, HashMap, VecDeque};
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
    /// Requests before giving up (queued packets are dropped, counted as unresolved). The first
    /// request always goes out, so 0 behaves as 1.
    pub max_requests: u32,
    /// Packets queued per unresolved address (Linux unres_qlen_bytes is similar). With 0, packets
    /// are never queued and only [`ArpCache::want`] starts a resolution.
    pub max_queued_per_addr: usize,
    /// Most entries (resolved + pending + held down). Making room evicts held-down addresses
    /// first, then the resolved entry closest to expiry (the least recently confirmed one);
    /// pending resolutions are never evicted, because that would silently drop their queued
    /// packets. When only pending resolutions are left, a new one is refused.
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
    /// The per-address queue is full, the address is held down after a failed resolution, or the
    /// table is full of pending resolutions; the packet was dropped.
    Dropped,
}

/// A resolution under way.
#[derive(Debug)]
struct Pending {
    /// Requests sent so far, including the one the caller sent when the resolution started.
    requests_sent: u32,
    /// IP packets waiting for the MAC, oldest first.
    queue: VecDeque<Vec<u8>>,
}

/// Values keyed by address, each with one deadline, indexed by deadline.
#[derive(Debug)]
struct Timed<V> {
    entries: HashMap<Ipv4Addr, (V, Instant)>,
    by_deadline: BTreeSet<(Instant, Ipv4Addr)>,
}

impl<V> Timed<V> {
    fn new() -> Self {
        Timed { entries: HashMap::new(), by_deadline: BTreeSet::new() }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        self.entries.contains_key(&ip)
    }

    fn get(&self, ip: Ipv4Addr) -> Option<&(V, Instant)> {
        self.entries.get(&ip)
    }

    fn get_mut(&mut self, ip: Ipv4Addr) -> Option<&mut V> {
        self.entries.get_mut(&ip).map(|(value, _)| value)
    }

    /// Inserts or replaces `ip`'s value and deadline.
    fn insert(&mut self, ip: Ipv4Addr, value: V, deadline: Instant) {
        if let Some((_, old)) = self.entries.insert(ip, (value, deadline)) {
            self.by_deadline.remove(&(old, ip));
        }
        self.by_deadline.insert((deadline, ip));
    }

    fn set_deadline(&mut self, ip: Ipv4Addr, deadline: Instant) {
        if let Some((_, old)) = self.entries.get_mut(&ip) {
            self.by_deadline.remove(&(*old, ip));
            *old = deadline;
            self.by_deadline.insert((deadline, ip));
        }
    }

    fn remove(&mut self, ip: Ipv4Addr) -> Option<V> {
        let (value, deadline) = self.entries.remove(&ip)?;
        self.by_deadline.remove(&(deadline, ip));
        Some(value)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// The address with the earliest deadline.
    fn earliest(&self) -> Option<Ipv4Addr> {
        self.by_deadline.first().map(|(_, ip)| *ip)
    }

    /// Addresses whose deadline is at or before `now`, earliest first. Collected up front so that
    /// callers may move deadlines while walking them, even to `now` itself.
    fn due(&self, now: Instant) -> Vec<Ipv4Addr> {
        self.by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, ip)| *ip)
            .collect()
    }
}

/// The neighbour cache.
#[derive(Debug)]
pub struct ArpCache {
    config: ArpConfig,
    /// MAC and expiry.
    resolved: Timed<EthernetAddress>,
    /// Deadline: when the next request is due, or when to give up after the last one.
    pending: Timed<Pending>,
    /// Deadline: when the address may be resolved again.
    held_down: Timed<()>,
}

impl ArpCache {
    /// An empty cache.
    pub fn new(config: ArpConfig) -> ArpCache {
        ArpCache { config, resolved: Timed::new(), pending: Timed::new(), held_down: Timed::new() }
    }

    /// The MAC for `ip` if resolved and not expired.
    pub fn lookup(&self, now: Instant, ip: Ipv4Addr) -> Option<EthernetAddress> {
        match self.resolved.get(ip) {
            Some((mac, expiry)) if now < *expiry => Some(*mac),
            _ => None,
        }
    }

    /// Learns or refreshes `ip` → `mac`. Returns the packets that were waiting for `ip`, in
    /// order, for the caller to send now.
    ///
    /// A group or all-zero `mac` is ignored (nothing changes, nothing is returned): no host owns
    /// one, and believing a reply that claims it would broadcast that neighbour's traffic. A new
    /// entry that finds the table full of pending resolutions is not cached.
    pub fn insert(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress) -> Vec<Vec<u8>> {
        if !mac.is_unicast() {
            return Vec::new();
        }
        self.held_down.remove(ip);
        let waiting =
            self.pending.remove(ip).map(|pending| pending.queue.into()).unwrap_or_default();
        if self.resolved.contains(ip) || self.make_room() {
            self.resolved.insert(ip, mac, now + self.config.entry_ttl);
        }
        waiting
    }

    /// RFC 826's merge step: refreshes `ip` only if it is already known or pending (so that
    /// every broadcast request on the segment does not fill the cache). Returns waiting packets
    /// as `insert` does. A held-down address counts as known: hearing from it proves it alive.
    pub fn update_if_known(
        &mut self,
        now: Instant,
        ip: Ipv4Addr,
        mac: EthernetAddress,
    ) -> Vec<Vec<u8>> {
        if self.resolved.contains(ip) || self.pending.contains(ip) || self.held_down.contains(ip) {
            self.insert(now, ip, mac)
        } else {
            Vec::new()
        }
    }

    /// Queues an IP packet (without Ethernet header) until `ip` resolves.
    ///
    /// Meant for after [`lookup`](Self::lookup) failed; an entry that is still valid is discarded
    /// and resolved afresh, since the caller evidently did not use it.
    pub fn queue_packet(&mut self, now: Instant, ip: Ipv4Addr, packet: Vec<u8>) -> QueueOutcome {
        let max_queued = self.config.max_queued_per_addr;
        if let Some(pending) = self.pending.get_mut(ip) {
            if pending.queue.len() >= max_queued {
                return QueueOutcome::Dropped;
            }
            pending.queue.push_back(packet);
            return QueueOutcome::Queued { send_request: false };
        }
        if max_queued == 0 || self.is_held_down(now, ip) {
            return QueueOutcome::Dropped;
        }
        self.resolved.remove(ip);
        if !self.start_resolution(now, ip, VecDeque::from([packet])) {
            return QueueOutcome::Dropped;
        }
        QueueOutcome::Queued { send_request: true }
    }

    /// True if a resolution for `ip` is under way (requests sent, not answered, not given up).
    pub fn is_pending(&self, ip: Ipv4Addr) -> bool {
        self.pending.contains(ip)
    }

    /// True if resolving `ip` recently gave up and is held down: the caller may report the
    /// neighbour unreachable (EHOSTUNREACH) instead of waiting. Cleared by a reply, a merge, or
    /// the [`poll`](Self::poll) that ends the hold-down.
    pub fn is_unreachable(&self, ip: Ipv4Addr) -> bool {
        self.held_down.contains(ip)
    }

    /// Marks `ip` as wanted without queuing a packet (TCP keeps its segments in its own buffers).
    /// Returns true if a request must be sent now.
    ///
    /// False also when nothing can start: `ip` is already resolved, held down after a failed
    /// resolution, or the table is full of pending resolutions. A caller that keeps wanting an
    /// unreachable address thus gets one burst of `max_requests` requests per hold-down cycle.
    pub fn want(&mut self, now: Instant, ip: Ipv4Addr) -> bool {
        if self.pending.contains(ip) || self.lookup(now, ip).is_some() || self.is_held_down(now, ip)
        {
            return false;
        }
        self.resolved.remove(ip);
        self.start_resolution(now, ip, VecDeque::new())
    }

    /// Advances time: expires entries, and returns the addresses to send a request for now
    /// (retries) and the number of queued packets dropped because resolution gave up.
    ///
    /// A resolution gives up `request_interval` after its `max_requests`-th request; the address
    /// is then held down for `max_requests × request_interval`.
    pub fn poll(&mut self, now: Instant) -> (Vec<Ipv4Addr>, usize) {
        for ip in self.resolved.due(now) {
            self.resolved.remove(ip);
        }
        // Before the pending pass, so that a hold-down starting now lasts until the next poll
        // even when configured to zero.
        for ip in self.held_down.due(now) {
            self.held_down.remove(ip);
        }
        let max_requests = self.config.max_requests.max(1);
        let mut retries = Vec::new();
        let mut dropped = 0;
        for ip in self.pending.due(now) {
            let Some(pending) = self.pending.get_mut(ip) else { continue };
            if pending.requests_sent < max_requests {
                pending.requests_sent += 1;
                self.pending.set_deadline(ip, now + self.config.request_interval);
                retries.push(ip);
            } else if let Some(pending) = self.pending.remove(ip) {
                dropped += pending.queue.len();
                self.held_down.insert(ip, (), now + self.hold_down());
            }
        }
        (retries, dropped)
    }

    /// The next instant `poll` has work.
    pub fn poll_at(&self) -> Option<Instant> {
        [
            self.resolved.next_deadline(),
            self.pending.next_deadline(),
            self.held_down.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Resolved entries (address, MAC, expiry), for display.
    pub fn entries(&self) -> impl Iterator<Item = (Ipv4Addr, EthernetAddress, Instant)> + '_ {
        self.resolved.entries.iter().map(|(ip, (mac, expiry))| (*ip, *mac, *expiry))
    }

    /// How long an address stays held down after its resolution gave up: as long as one
    /// unanswered resolution lasts, so that probing a dead neighbour fills at most half the time.
    fn hold_down(&self) -> Duration {
        self.config.request_interval.saturating_mul(self.config.max_requests.max(1))
    }

    /// True if `ip` is held down at `now`. A hold-down that ended but was not polled away yet
    /// does not count.
    fn is_held_down(&self, now: Instant, ip: Ipv4Addr) -> bool {
        matches!(self.held_down.get(ip), Some((_, until)) if now < *until)
    }

    /// Starts resolving `ip` (the caller sends the first request now). False if there is no room.
    fn start_resolution(&mut self, now: Instant, ip: Ipv4Addr, queue: VecDeque<Vec<u8>>) -> bool {
        self.held_down.remove(ip);
        if !self.make_room() {
            return false;
        }
        let pending = Pending { requests_sent: 1, queue };
        self.pending.insert(ip, pending, now + self.config.request_interval);
        true
    }

    /// Evicts until one more entry fits under `max_entries`; false if only pending resolutions
    /// are left to evict.
    fn make_room(&mut self) -> bool {
        while self.resolved.len() + self.pending.len() + self.held_down.len()
            >= self.config.max_entries
        {
            if let Some(ip) = self.held_down.earliest() {
                self.held_down.remove(ip);
            } else if let Some(ip) = self.resolved.earliest() {
                self.resolved.remove(ip);
            } else {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const D: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
    const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xa]);
    const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xb]);

    fn ms(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    fn config() -> ArpConfig {
        ArpConfig {
            entry_ttl: Duration::from_secs(60),
            request_interval: Duration::from_secs(1),
            max_requests: 3,
            max_queued_per_addr: 4,
            max_entries: 16,
        }
    }

    fn packet(tag: u8) -> Vec<u8> {
        vec![0x45, tag]
    }

    // --- Resolution flow ---

    #[test]
    fn first_packet_asks_for_a_request_and_reply_releases_queue_in_order() {
        let mut cache = ArpCache::new(config());
        assert_eq!(cache.lookup(ms(0), A), None);
        assert_eq!(
            cache.queue_packet(ms(0), A, packet(1)),
            QueueOutcome::Queued { send_request: true }
        );
        assert_eq!(
            cache.queue_packet(ms(10), A, packet(2)),
            QueueOutcome::Queued { send_request: false }
        );
        assert_eq!(
            cache.queue_packet(ms(20), A, packet(3)),
            QueueOutcome::Queued { send_request: false }
        );
        assert!(cache.is_pending(A));
        assert_eq!(cache.lookup(ms(20), A), None);

        let released = cache.insert(ms(30), A, MAC_A);
        assert_eq!(released, vec![packet(1), packet(2), packet(3)]);
        assert!(!cache.is_pending(A));
        assert_eq!(cache.lookup(ms(30), A), Some(MAC_A));
        assert_eq!(cache.entries().collect::<Vec<_>>(), vec![(A, MAC_A, ms(60_030))]);
        // The retry deadline went away with the pending state.
        assert_eq!(cache.poll_at(), Some(ms(60_030)));
    }

    #[test]
    fn want_starts_a_resolution_once() {
        let mut cache = ArpCache::new(config());
        assert!(cache.want(ms(0), A));
        assert!(!cache.want(ms(5), A));
        assert!(cache.is_pending(A));
        // A packet joins the resolution `want` started, without a second request.
        assert_eq!(
            cache.queue_packet(ms(6), A, packet(1)),
            QueueOutcome::Queued { send_request: false }
        );
        assert_eq!(cache.insert(ms(7), A, MAC_A), vec![packet(1)]);
        // Resolved: nothing more to want.
        assert!(!cache.want(ms(8), A));
    }

    #[test]
    fn queue_is_bounded_per_address() {
        let mut cache = ArpCache::new(config());
        for tag in 0..4 {
            assert!(matches!(
                cache.queue_packet(ms(0), A, packet(tag)),
                QueueOutcome::Queued { .. }
            ));
        }
        assert_eq!(cache.queue_packet(ms(0), A, packet(4)), QueueOutcome::Dropped);
        assert_eq!(cache.queue_packet(ms(0), A, packet(5)), QueueOutcome::Dropped);
        // Another address has its own queue.
        assert_eq!(
            cache.queue_packet(ms(0), B, packet(9)),
            QueueOutcome::Queued { send_request: true }
        );
        assert_eq!(cache.insert(ms(1), A, MAC_A), (0..4).map(packet).collect::<Vec<_>>());
        assert_eq!(cache.insert(ms(1), B, MAC_B), vec![packet(9)]);
    }

    #[test]
    fn zero_queue_length_never_queues() {
        let mut cache = ArpCache::new(ArpConfig { max_queued_per_addr: 0, ..config() });
        assert_eq!(cache.queue_packet(ms(0), A, packet(1)), QueueOutcome::Dropped);
        assert!(!cache.is_pending(A));
        assert!(cache.want(ms(0), A));
        assert_eq!(cache.queue_packet(ms(0), A, packet(1)), QueueOutcome::Dropped);
    }

    #[test]
    fn group_or_zero_mac_is_ignored() {
        let mut cache = ArpCache::new(config());
        cache.queue_packet(ms(0), A, packet(1));
        assert_eq!(cache.insert(ms(1), A, EthernetAddress::BROADCAST), Vec::<Vec<u8>>::new());
        assert_eq!(
            cache.insert(ms(1), A, EthernetAddress([0x01, 0, 0x5e, 0, 0, 1])),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(cache.insert(ms(1), A, EthernetAddress([0; 6])), Vec::<Vec<u8>>::new());
        assert!(cache.is_pending(A));
        assert_eq!(cache.lookup(ms(1), A), None);
        assert_eq!(cache.insert(ms(2), A, MAC_A), vec![packet(1)]);
    }

    // --- Retries and give-up ---

    #[test]
    fn retries_are_paced_then_resolution_gives_up_with_exact_drops() {
        let mut cache = ArpCache::new(config());
        assert_eq!(
            cache.queue_packet(ms(0), A, packet(1)),
            QueueOutcome::Queued { send_request: true }
        );
        cache.queue_packet(ms(100), A, packet(2));
        assert_eq!(cache.poll_at(), Some(ms(1000)));
        assert_eq!(cache.poll(ms(999)), (vec![], 0));
        assert_eq!(cache.poll(ms(1000)), (vec![A], 0));
        assert_eq!(cache.poll_at(), Some(ms(2000)));
        assert_eq!(cache.poll(ms(1500)), (vec![], 0));
        assert_eq!(cache.poll(ms(2000)), (vec![A], 0));
        // Three requests are out (t = 0, 1, 2 s); the third gets its interval to be answered.
        assert!(cache.is_pending(A));
        assert_eq!(cache.poll(ms(3000)), (vec![], 2));
        assert!(!cache.is_pending(A));
        assert!(cache.is_unreachable(A));
        assert_eq!(cache.lookup(ms(3000), A), None);
        // Held down for max_requests × request_interval.
        assert_eq!(cache.poll_at(), Some(ms(6000)));
        assert!(!cache.want(ms(3000), A));
        assert_eq!(cache.queue_packet(ms(4000), A, packet(3)), QueueOutcome::Dropped);
        assert!(!cache.want(ms(5999), A));
        assert_eq!(cache.poll(ms(6000)), (vec![], 0));
        assert!(!cache.is_unreachable(A));
        assert_eq!(cache.poll_at(), None);
        assert!(cache.want(ms(6000), A));
    }

    #[test]
    fn late_poll_retries_once_and_paces_from_now() {
        let mut cache = ArpCache::new(config());
        cache.want(ms(0), A);
        // A poll far too late sends one retry, not a burst to catch up.
        assert_eq!(cache.poll(ms(5000)), (vec![A], 0));
        assert_eq!(cache.poll_at(), Some(ms(6000)));
    }

    #[test]
    fn want_after_hold_down_ended_but_before_poll_restarts() {
        let mut cache = ArpCache::new(config());
        cache.want(ms(0), A);
        for t in [1000, 2000, 3000] {
            cache.poll(ms(t));
        }
        assert!(cache.is_unreachable(A));
        assert!(cache.want(ms(6000), A));
        assert!(cache.is_pending(A));
        assert!(!cache.is_unreachable(A));
        assert_eq!(cache.poll_at(), Some(ms(7000)));
    }

    #[test]
    fn reply_during_hold_down_resolves() {
        let mut cache = ArpCache::new(config());
        cache.want(ms(0), A);
        for t in [1000, 2000, 3000] {
            cache.poll(ms(t));
        }
        assert!(cache.is_unreachable(A));
        assert_eq!(cache.update_if_known(ms(3500), A, MAC_A), Vec::<Vec<u8>>::new());
        assert!(!cache.is_unreachable(A));
        assert_eq!(cache.lookup(ms(3500), A), Some(MAC_A));
    }

    #[test]
    fn hammering_an_unreachable_neighbour_is_rate_limited() {
        let mut cache = ArpCache::new(config());
        let mut requests = Vec::new();
        let mut unreachable_reports = 0;
        // A TCP connection retrying every 100 ms for 30 s.
        for step in 0..300 {
            let now = ms(step * 100);
            let (retries, dropped) = cache.poll(now);
            assert_eq!(dropped, 0);
            requests.extend(retries.iter().map(|_| now));
            if cache.want(now, A) {
                requests.push(now);
            }
            if cache.is_unreachable(A) {
                unreachable_reports += 1;
            }
        }
        // Bursts of three (0, 1, 2 s) every 6 s: give up at 3 s, held down until 6 s.
        let expected: Vec<Instant> =
            (0..5).flat_map(|cycle| (0..3).map(move |i| ms(cycle * 6000 + i * 1000))).collect();
        assert_eq!(requests, expected);
        // Held down for 3 s of each 6 s cycle, 30 steps per cycle.
        assert_eq!(unreachable_reports, 5 * 30);
    }

    #[test]
    fn zero_interval_does_not_spin() {
        let mut cache = ArpCache::new(ArpConfig { request_interval: Duration::ZERO, ..config() });
        assert!(cache.want(ms(0), A));
        assert_eq!(cache.poll(ms(0)), (vec![A], 0));
        assert_eq!(cache.poll(ms(0)), (vec![A], 0));
        assert_eq!(cache.poll(ms(0)), (vec![], 0));
        assert!(cache.is_unreachable(A));
        assert_eq!(cache.poll(ms(0)), (vec![], 0));
        assert!(!cache.is_unreachable(A));
        assert_eq!(cache.poll_at(), None);
    }

    #[test]
    fn zero_max_requests_behaves_as_one() {
        let mut cache = ArpCache::new(ArpConfig { max_requests: 0, ..config() });
        assert_eq!(
            cache.queue_packet(ms(0), A, packet(1)),
            QueueOutcome::Queued { send_request: true }
        );
        assert_eq!(cache.poll(ms(1000)), (vec![], 1));
        assert!(cache.is_unreachable(A));
        assert_eq!(cache.poll_at(), Some(ms(2000)));
    }

    // --- Expiry ---

    #[test]
    fn entries_expire_after_ttl() {
        let mut cache = ArpCache::new(config());
        cache.insert(ms(0), A, MAC_A);
        assert_eq!(cache.lookup(ms(59_999), A), Some(MAC_A));
        assert_eq!(cache.lookup(ms(60_000), A), None);
        assert_eq!(cache.poll_at(), Some(ms(60_000)));
        // Still listed until polled, but never returned by lookup.
        assert_eq!(cache.entries().count(), 1);
        assert_eq!(cache.poll(ms(60_000)), (vec![], 0));
        assert_eq!(cache.entries().count(), 0);
        assert_eq!(cache.poll_at(), None);
    }

    #[test]
    fn expired_entry_not_yet_polled_is_resolved_afresh() {
        let mut cache = ArpCache::new(config());
        cache.insert(ms(0), A, MAC_A);
        assert!(cache.want(ms(60_000), A));
        assert_eq!(cache.entries().count(), 0);
        assert!(cache.is_pending(A));
    }

    #[test]
    fn refresh_extends_expiry() {
        let mut cache = ArpCache::new(config());
        cache.insert(ms(0), A, MAC_A);
        cache.insert(ms(30_000), A, MAC_A);
        assert_eq!(cache.poll_at(), Some(ms(90_000)));
        assert_eq!(cache.poll(ms(60_000)), (vec![], 0));
        assert_eq!(cache.lookup(ms(60_000), A), Some(MAC_A));
    }

    #[test]
    fn poll_at_is_the_earliest_of_all_deadlines() {
        let mut cache = ArpCache::new(config());
        assert_eq!(cache.poll_at(), None);
        cache.insert(ms(0), A, MAC_A);
        assert_eq!(cache.poll_at(), Some(ms(60_000)));
        cache.want(ms(500), B);
        assert_eq!(cache.poll_at(), Some(ms(1500)));
        cache.insert(ms(700), B, MAC_B);
        assert_eq!(cache.poll_at(), Some(ms(60_000)));
    }

    // --- RFC 826 merge ---

    #[test]
    fn merge_ignores_strangers() {
        let mut cache = ArpCache::new(config());
        assert_eq!(cache.update_if_known(ms(0), A, MAC_A), Vec::<Vec<u8>>::new());
        assert_eq!(cache.lookup(ms(0), A), None);
        assert_eq!(cache.entries().count(), 0);
        assert_eq!(cache.poll_at(), None);
    }

    #[test]
    fn merge_updates_known_entry_mac_and_expiry() {
        let mut cache = ArpCache::new(config());
        cache.insert(ms(0), A, MAC_A);
        assert_eq!(cache.update_if_known(ms(10_000), A, MAC_B), Vec::<Vec<u8>>::new());
        assert_eq!(cache.lookup(ms(10_000), A), Some(MAC_B));
        assert_eq!(cache.entries().collect::<Vec<_>>(), vec![(A, MAC_B, ms(70_000))]);
    }

    #[test]
    fn merge_completes_pending_resolution() {
        let mut cache = ArpCache::new(config());
        cache.queue_packet(ms(0), A, packet(1));
        cache.queue_packet(ms(0), A, packet(2));
        assert_eq!(cache.update_if_known(ms(5), A, MAC_A), vec![packet(1), packet(2)]);
        assert_eq!(cache.lookup(ms(5), A), Some(MAC_A));
        assert!(!cache.is_pending(A));
    }

    // --- Eviction ---

    #[test]
    fn full_table_evicts_entry_closest_to_expiry() {
        let mut cache = ArpCache::new(ArpConfig { max_entries: 3, ..config() });
        cache.insert(ms(0), A, MAC_A);
        cache.insert(ms(1), B, MAC_B);
        cache.insert(ms(2), C, MAC_A);
        // A is refreshed, so B is now the least recently confirmed.
        cache.insert(ms(3), A, MAC_A);
        cache.insert(ms(4), D, MAC_B);
        let mut held: Vec<Ipv4Addr> = cache.entries().map(|(ip, _, _)| ip).collect();
        held.sort();
        assert_eq!(held, vec![A, C, D]);
        // A new resolution also makes room by evicting the oldest resolved entry (C).
        assert!(cache.want(ms(5), B));
        let mut held: Vec<Ipv4Addr> = cache.entries().map(|(ip, _, _)| ip).collect();
        held.sort();
        assert_eq!(held, vec![A, D]);
    }

    #[test]
    fn held_down_addresses_are_evicted_before_resolved_ones() {
        let mut cache = ArpCache::new(ArpConfig { max_entries: 2, ..config() });
        cache.insert(ms(0), A, MAC_A);
        cache.want(ms(0), B);
        for t in [1000, 2000, 3000] {
            cache.poll(ms(t));
        }
        assert!(cache.is_unreachable(B));
        assert!(cache.want(ms(3000), C));
        assert!(!cache.is_unreachable(B));
        assert_eq!(cache.lookup(ms(3000), A), Some(MAC_A));
    }

    #[test]
    fn pending_resolutions_are_never_evicted() {
        let mut cache = ArpCache::new(ArpConfig { max_entries: 2, ..config() });
        cache.queue_packet(ms(0), A, packet(1));
        cache.queue_packet(ms(0), B, packet(2));
        assert!(!cache.want(ms(0), C));
        assert!(!cache.is_pending(C));
        assert_eq!(cache.queue_packet(ms(0), C, packet(3)), QueueOutcome::Dropped);
        // An unsolicited entry finds no room and is not cached.
        assert_eq!(cache.insert(ms(0), C, MAC_A), Vec::<Vec<u8>>::new());
        assert_eq!(cache.lookup(ms(0), C), None);
        // Answers to pending resolutions always fit: they take the pending slot.
        assert_eq!(cache.insert(ms(0), A, MAC_A), vec![packet(1)]);
        assert_eq!(cache.lookup(ms(0), A), Some(MAC_A));
        assert!(cache.want(ms(1), C));
        assert_eq!(cache.lookup(ms(1), A), None);
        assert!(cache.is_pending(B));
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut cache = ArpCache::new(ArpConfig { max_entries: 0, ..config() });
        assert!(!cache.want(ms(0), A));
        assert_eq!(cache.insert(ms(0), A, MAC_A), Vec::<Vec<u8>>::new());
        assert_eq!(cache.lookup(ms(0), A), None);
    }
}
