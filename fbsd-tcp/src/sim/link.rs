//! The impairment model: a point-to-point Ethernet link with two independent directions.
//!
//! A frame a stack sends goes through, in order:
//! 1. **The router** (only when a path MTU is configured): an IPv4 packet longer than the path
//!    MTU is dropped and answered with ICMP "fragmentation needed" carrying the path MTU
//!    (RFC 1191) if DF is set, and fragmented otherwise (fragments of fragments keep their
//!    offsets). Everything else, ARP included, passes untouched: the router is a bump in the
//!    wire that only acts on what does not fit, and does not even decrement TTL.
//! 2. **The bottleneck** (only with a bandwidth cap): a FIFO of at most `queue_bytes` bytes in
//!    front of a transmitter that serialises frames at the capped rate; a frame that does not
//!    fit is tail-dropped. Frame bytes are counted as they are (no preamble, FCS or gap).
//! 3. **The wire**: random loss, then the one-way delay plus a uniform jitter in
//!    `[0, jitter]` that never lets a frame overtake an earlier one, then with probability
//!    `reorder` an extra `reorder_delay` that does let later frames overtake it; then duplication
//!    (the copy arrives right behind the original), then corruption of each copy independently.
//!
//! Corruption flips one random bit in one random byte of an IPv4 frame. ARP frames are never
//! corrupted: ARP has no checksum, and on a real link the Ethernet FCS (which this model does
//! not carry) is what keeps a flipped bit from poisoning an ARP cache. Flips that land in bytes
//! no check covers (the Ethernet source address, padding after the IPv4 total length) are
//! counted separately in [`LinkCounters::corrupted_unchecked`]; they change nothing a stack
//! reads. Every other flip must make the receiving stack count a drop (checksum, malformed,
//! not-for-us), which is what the corruption test checks.
//!
//! Time inside the link is kept in nanoseconds so that serialisation at gigabit rates (12 µs
//! per full frame at 1 Gbit/s, 1.2 µs at 10 Gbit/s) does not accumulate rounding; deliveries are
//! reported to the driver rounded up to the engine's microsecond [`Instant`].
//!
//! Frames in flight live in recycled buffers from a pool, ordered by arrival in a binary heap:
//! no allocation per frame once the pool has grown to the largest number in flight.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;

use super::rng::Rng;
use super::Side;
use crate::iface::fragments;
use crate::time::{Duration, Instant};
use crate::wire::ethernet::HEADER_LEN as ETHERNET_HEADER_LEN;
use crate::wire::{
    ChecksumPolicy, DstUnreachable, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};

/// The address the router in the middle sends its ICMP from. Outside both stacks' addresses on
/// the simulated /24, so that nothing mistakes it for the peer.
pub const ROUTER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);

/// The most of the offending datagram an ICMP error quotes: as much as keeps the whole ICMP
/// datagram within 576 bytes (RFC 1812 §4.3.2.3): 576 − 20 (IP) − 8 (ICMP) − 20 (quoted header).
const ICMP_QUOTE_MAX: usize = 528;

/// The smallest MTU an IPv4 link may have (RFC 791: every module must forward 68-byte datagrams).
const MIN_IPV4_MTU: usize = 68;

/// How one direction of a [`Link`] mistreats frames. The default is a perfect link: no loss, no
/// delay, no cap.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairments {
    /// Probability that a frame is lost on the wire.
    pub loss: f64,
    /// Probability that a frame arrives twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by `reorder_delay` beyond its normal arrival, so
    /// that the frames behind it overtake it.
    pub reorder: f64,
    /// How long a reordered frame is held back.
    pub reorder_delay: Duration,
    /// Base one-way propagation delay.
    pub delay: Duration,
    /// Largest extra delay added to each frame, uniform in `[0, jitter]`. Jitter alone never
    /// reorders: a frame never arrives before one sent ahead of it (only `reorder` does that).
    pub jitter: Duration,
    /// Probability that one bit of an IPv4 frame is flipped (see the module documentation).
    pub corrupt: f64,
    /// IP MTU of a router in the middle, below the stacks' MTU; `None`: no router.
    pub path_mtu: Option<usize>,
    /// Bandwidth cap in bits per second; `None`: infinitely fast.
    pub bandwidth_bps: Option<u64>,
    /// Capacity of the queue in front of a capped link, in frame bytes (the frame being
    /// serialised included). An empty queue always accepts one frame, however large.
    pub queue_bytes: usize,
}

impl Default for Impairments {
    fn default() -> Self {
        Impairments {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            corrupt: 0.0,
            path_mtu: None,
            bandwidth_bps: None,
            queue_bytes: 0,
        }
    }
}

/// Why a set of [`Impairments`] cannot be simulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImpairmentError {
    /// A probability outside `[0, 1]` (or NaN).
    #[error("{name} must be a probability in [0, 1], not {value}")]
    Probability {
        /// The field.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// A path MTU below IPv4's minimum of 68 bytes, or above what an ICMP message can carry.
    #[error("path MTU {0} is outside 68..=65535")]
    PathMtu(usize),
    /// A bandwidth cap of 0 bit/s would never deliver anything.
    #[error("a bandwidth cap must be above 0 bit/s")]
    ZeroBandwidth,
}

impl Impairments {
    /// Checks that every value can be simulated.
    pub fn validate(&self) -> Result<(), ImpairmentError> {
        for (name, value) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("corrupt", self.corrupt),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ImpairmentError::Probability { name, value });
            }
        }
        if let Some(mtu) = self.path_mtu {
            if !(MIN_IPV4_MTU..=usize::from(u16::MAX)).contains(&mtu) {
                return Err(ImpairmentError::PathMtu(mtu));
            }
        }
        if self.bandwidth_bps == Some(0) {
            return Err(ImpairmentError::ZeroBandwidth);
        }
        Ok(())
    }
}

/// What happened to the frames one side sent. All monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames the stack handed to the link.
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// Frames delivered to the other stack (duplicates and fragments included).
    pub frames_delivered: u64,
    /// Bytes of those frames.
    pub bytes_delivered: u64,
    /// Frames lost on the wire.
    pub lost: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames held back so that later ones overtook them.
    pub reordered: u64,
    /// Frame copies with a flipped bit.
    pub corrupted: u64,
    /// Of `corrupted`, flips in bytes no check covers (Ethernet source, padding).
    pub corrupted_unchecked: u64,
    /// Frames tail-dropped at the bottleneck queue.
    pub queue_drops: u64,
    /// Most bytes the bottleneck queue held.
    pub max_queue_bytes: u64,
    /// Datagrams the router fragmented.
    pub fragmented: u64,
    /// Fragments it produced from them.
    pub fragments: u64,
    /// Packets the router dropped for DF, answering each with ICMP "fragmentation needed"
    /// back to this side.
    pub frag_needed_sent: u64,
}

/// One direction's state.
#[derive(Debug)]
struct Direction {
    impairments: Impairments,
    rng: Rng,
    /// The bottleneck's transmitter has been busy since this instant without a break...
    busy_since_ns: u64,
    /// ...sending this many bits. Kept apart rather than as a finishing time so that rounding
    /// each frame's serialisation time to the nanosecond does not accumulate.
    busy_bits: u128,
    /// Arrival of the last frame that was not reordered: jitter never schedules earlier.
    last_arrival_ns: u64,
    counters: LinkCounters,
}

impl Direction {
    /// When the bottleneck's transmitter finishes the last frame queued.
    fn busy_until_ns(&self, bandwidth_bps: u64) -> u64 {
        let busy_ns = (self.busy_bits * 1_000_000_000).div_ceil(u128::from(bandwidth_bps));
        self.busy_since_ns.saturating_add(u64::try_from(busy_ns).unwrap_or(u64::MAX))
    }

    /// Bytes queued at the bottleneck (the frame in service included) at `now_ns`.
    fn backlog_bytes(&self, now_ns: u64, bandwidth_bps: u64) -> usize {
        let busy_ns = self.busy_until_ns(bandwidth_bps).saturating_sub(now_ns);
        let bytes = (u128::from(busy_ns) * u128::from(bandwidth_bps)).div_ceil(8_000_000_000);
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }
}

/// A frame on its way.
#[derive(Debug)]
struct InFlight {
    arrival_ns: u64,
    /// Order of entry, so frames arriving at the same nanosecond keep their sending order.
    seq: u64,
    to: Side,
    /// ICMP the router generated, not a frame a stack sent: counted apart.
    from_router: bool,
    len: usize,
    buf: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest arrival first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.arrival_ns, other.seq).cmp(&(self.arrival_ns, self.seq))
    }
}

/// A simulated point-to-point link between side A and side B (see the module documentation for
/// what it does to frames). Deterministic: the same seed, impairments and sequence of calls give
/// the same deliveries.
#[derive(Debug)]
pub struct Link {
    directions: [Direction; 2],
    in_flight: BinaryHeap<InFlight>,
    pool: Vec<Vec<u8>>,
    next_seq: u64,
    /// Size of the buffers handed to a stack's `poll_transmit`.
    frame_len: usize,
    router_ident: u16,
}

/// Nanoseconds in a duration, saturating.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Time to clock `len` bytes onto a wire of `bandwidth_bps`, rounded down: used only to keep
/// bunched frames apart, where rounding up would make back-to-back frames drift later than the
/// bottleneck's exact departures.
fn serialisation_ns(len: usize, bandwidth_bps: u64) -> u64 {
    let bits = (len as u128).saturating_mul(8_000_000_000);
    u64::try_from(bits / u128::from(bandwidth_bps)).unwrap_or(u64::MAX)
}

fn instant_ns(instant: Instant) -> u64 {
    instant.total_micros().saturating_mul(1000)
}

/// What the router did with an oversized frame.
enum Routed {
    /// Not an IPv4 packet it can read: forwarded unchanged.
    PassThrough,
    /// Dropped (and answered with ICMP) or split into fragments already sent on.
    Consumed,
}

impl Link {
    /// A link with `a_to_b` applied to frames A sends and `b_to_a` to frames B sends. Each
    /// direction draws from its own stream derived from `seed`.
    pub fn new(
        seed: u64,
        a_to_b: Impairments,
        b_to_a: Impairments,
    ) -> Result<Link, ImpairmentError> {
        a_to_b.validate()?;
        b_to_a.validate()?;
        let root = Rng::new(seed);
        let direction = |impairments, stream| Direction {
            impairments,
            rng: root.fork(stream),
            busy_since_ns: 0,
            busy_bits: 0,
            last_arrival_ns: 0,
            counters: LinkCounters::default(),
        };
        Ok(Link {
            directions: [direction(a_to_b, 0), direction(b_to_a, 1)],
            in_flight: BinaryHeap::new(),
            pool: Vec::new(),
            next_seq: 0,
            frame_len: ETHERNET_HEADER_LEN + 1500,
            router_ident: 0,
        })
    }

    /// A link that treats both directions alike.
    pub fn symmetric(seed: u64, impairments: Impairments) -> Result<Link, ImpairmentError> {
        Link::new(seed, impairments.clone(), impairments)
    }

    /// What happens to frames `from` sends.
    pub fn impairments(&self, from: Side) -> &Impairments {
        &self.directions[from.index()].impairments
    }

    /// Changes what happens to frames `from` sends from now on (frames in flight keep their
    /// fate).
    pub fn set_impairments(
        &mut self,
        from: Side,
        impairments: Impairments,
    ) -> Result<(), ImpairmentError> {
        impairments.validate()?;
        self.directions[from.index()].impairments = impairments;
        Ok(())
    }

    /// What happened to the frames `from` sent.
    pub fn counters(&self, from: Side) -> &LinkCounters {
        &self.directions[from.index()].counters
    }

    /// Frames on their way, in both directions.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Size of the buffer [`send_with`](Self::send_with) hands out: the largest frame either
    /// stack may send. Raise it to the stacks' MTU plus the 14-byte Ethernet header.
    pub fn max_frame_len(&self) -> usize {
        self.frame_len
    }

    /// See [`max_frame_len`](Self::max_frame_len). Never shrinks.
    pub fn set_max_frame_len(&mut self, len: usize) {
        self.frame_len = self.frame_len.max(len);
    }

    /// Puts a copy of `frame`, sent by `from` at `now`, on the link.
    pub fn send(&mut self, now: Instant, from: Side, frame: &[u8]) {
        let mut buf = self.take_buffer(frame.len());
        buf[..frame.len()].copy_from_slice(frame);
        self.enter(instant_ns(now), from, buf, frame.len());
    }

    /// Lets `fill` write a frame sent by `from` at `now` straight into a link buffer of
    /// [`max_frame_len`](Self::max_frame_len) bytes (as `Stack::poll_transmit` does), saving a
    /// copy. Returns false, sending nothing, when `fill` returns `None`.
    pub fn send_with(
        &mut self,
        now: Instant,
        from: Side,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let mut buf = self.take_buffer(self.frame_len);
        match fill(&mut buf[..self.frame_len]) {
            Some(len) => {
                let len = len.min(self.frame_len);
                self.enter(instant_ns(now), from, buf, len);
                true
            }
            None => {
                self.pool.push(buf);
                false
            }
        }
    }

    /// When the next frame arrives (rounded up to the microsecond), if any is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.peek().map(|frame| Instant::from_micros(frame.arrival_ns.div_ceil(1000)))
    }

    /// Hands every frame that has arrived by `now` to `receive(to, frame)`, in arrival order.
    /// Returns how many.
    pub fn deliver(&mut self, now: Instant, mut receive: impl FnMut(Side, &[u8])) -> usize {
        let now_ns = instant_ns(now);
        let mut delivered = 0;
        while self.in_flight.peek().is_some_and(|frame| frame.arrival_ns <= now_ns) {
            let Some(frame) = self.in_flight.pop() else { break };
            if !frame.from_router {
                let counters = &mut self.directions[frame.to.peer().index()].counters;
                counters.frames_delivered += 1;
                counters.bytes_delivered += frame.len as u64;
            }
            receive(frame.to, &frame.buf[..frame.len]);
            self.pool.push(frame.buf);
            delivered += 1;
        }
        delivered
    }

    fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.pool.pop().unwrap_or_default();
        if buf.len() < len.max(self.frame_len) {
            buf.resize(len.max(self.frame_len), 0);
        }
        buf
    }

    /// A frame enters the link: the router, then the bottleneck and the wire.
    fn enter(&mut self, now_ns: u64, from: Side, buf: Vec<u8>, len: usize) {
        let direction = &mut self.directions[from.index()];
        direction.counters.frames_sent += 1;
        direction.counters.bytes_sent += len as u64;
        if let Some(path_mtu) = direction.impairments.path_mtu {
            if len > ETHERNET_HEADER_LEN + path_mtu {
                if let Routed::Consumed = self.route_oversized(now_ns, from, &buf[..len], path_mtu)
                {
                    self.pool.push(buf);
                    return;
                }
            }
        }
        self.transit(now_ns, from, buf, len);
    }

    /// The router's work on a frame longer than the path MTU.
    fn route_oversized(
        &mut self,
        now_ns: u64,
        from: Side,
        frame: &[u8],
        path_mtu: usize,
    ) -> Routed {
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else { return Routed::PassThrough };
        if ethernet.ethertype() != EtherType::Ipv4 {
            return Routed::PassThrough;
        }
        let Ok(packet) = Ipv4Packet::new_checked(ethernet.payload()) else {
            return Routed::PassThrough;
        };
        let checksum = ChecksumPolicy::default();
        let Ok(header) = Ipv4Repr::parse(&packet, checksum) else { return Routed::PassThrough };
        if packet.total_len() <= path_mtu {
            // Only Ethernet padding made the frame look long.
            return Routed::PassThrough;
        }
        let payload = packet.payload();
        if header.dont_frag {
            self.directions[from.index()].counters.frag_needed_sent += 1;
            self.send_frag_needed(now_ns, from, &ethernet, &header, payload, path_mtu);
            return Routed::Consumed;
        }
        self.directions[from.index()].counters.fragmented += 1;
        // Split as if this were a whole datagram, then shift the pieces to where this packet
        // sits in its datagram: a fragment of a fragment keeps its offset, and its last piece
        // keeps the original's MF.
        let whole = Ipv4Repr { more_frags: false, frag_offset: 0, ..header };
        for (piece, range) in fragments(&whole, path_mtu) {
            let piece = Ipv4Repr {
                ident: header.ident,
                dont_frag: false,
                more_frags: piece.more_frags || header.more_frags,
                frag_offset: header.frag_offset.saturating_add(piece.frag_offset),
                ..piece
            };
            let Some(data) = payload.get(range) else { continue };
            let ip_start = ETHERNET_HEADER_LEN;
            let data_start = ip_start + piece.header_len();
            let len = data_start + data.len();
            let mut buf = self.take_buffer(len);
            buf[..ip_start].copy_from_slice(&frame[..ip_start]);
            piece.emit(&mut Ipv4Packet::new_unchecked(&mut buf[ip_start..data_start]), checksum);
            buf[data_start..len].copy_from_slice(data);
            self.directions[from.index()].counters.fragments += 1;
            self.transit(now_ns, from, buf, len);
        }
        Routed::Consumed
    }

    /// RFC 1191: ICMP destination unreachable, fragmentation needed, with the next-hop MTU, back
    /// to the sender of `header`. It travels unimpaired and takes the reverse direction's base
    /// delay.
    fn send_frag_needed(
        &mut self,
        now_ns: u64,
        to: Side,
        ethernet: &EthernetFrame<&[u8]>,
        header: &Ipv4Repr,
        payload: &[u8],
        path_mtu: usize,
    ) {
        let checksum = ChecksumPolicy::default();
        let next_hop_mtu = u16::try_from(path_mtu).unwrap_or(u16::MAX);
        let icmp = Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable::FragRequired { next_hop_mtu },
            header: *header,
            data: &payload[..payload.len().min(ICMP_QUOTE_MAX)],
        };
        self.router_ident = self.router_ident.wrapping_add(1);
        let ip = Ipv4Repr {
            src_addr: ROUTER_ADDR,
            dst_addr: header.src_addr,
            protocol: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            ttl: 64,
            tos: 0,
            ident: self.router_ident,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        };
        let ethernet = EthernetRepr {
            src_addr: ethernet.dst_addr(),
            dst_addr: ethernet.src_addr(),
            ethertype: EtherType::Ipv4,
        };
        let icmp_start = ETHERNET_HEADER_LEN + ip.header_len();
        let len = icmp_start + icmp.buffer_len();
        let mut buf = self.take_buffer(len);
        ethernet.emit(&mut EthernetFrame::new_unchecked(&mut buf[..ETHERNET_HEADER_LEN]));
        ip.emit(
            &mut Ipv4Packet::new_unchecked(&mut buf[ETHERNET_HEADER_LEN..icmp_start]),
            checksum,
        );
        icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[icmp_start..len]), checksum);
        let delay_ns = nanos(self.directions[to.peer().index()].impairments.delay);
        self.push(now_ns.saturating_add(delay_ns), to, true, buf, len);
    }

    /// The bottleneck, then the wire.
    fn transit(&mut self, now_ns: u64, from: Side, mut buf: Vec<u8>, len: usize) {
        let direction = &mut self.directions[from.index()];
        let impairments = &direction.impairments;
        let departure_ns = match impairments.bandwidth_bps {
            None => now_ns,
            Some(bandwidth_bps) => {
                let backlog = direction.backlog_bytes(now_ns, bandwidth_bps);
                if backlog > 0 && backlog + len > impairments.queue_bytes {
                    direction.counters.queue_drops += 1;
                    self.pool.push(buf);
                    return;
                }
                let queued = (backlog + len) as u64;
                direction.counters.max_queue_bytes = direction.counters.max_queue_bytes.max(queued);
                if backlog == 0 {
                    direction.busy_since_ns = now_ns;
                    direction.busy_bits = 0;
                }
                direction.busy_bits += len as u128 * 8;
                direction.busy_until_ns(bandwidth_bps)
            }
        };
        if direction.rng.chance(impairments.loss) {
            direction.counters.lost += 1;
            self.pool.push(buf);
            return;
        }
        let jitter_ns = match nanos(impairments.jitter) {
            0 => 0,
            max => direction.rng.below(max.saturating_add(1)),
        };
        // Frames that jitter bunched up still arrive one after the other at the link rate, as
        // they would out of a queue: arriving all at one instant would let a reordered frame
        // be overtaken by a whole bunch, however short its hold-back.
        let spacing_ns = impairments.bandwidth_bps.map_or(0, |bps| serialisation_ns(len, bps));
        let mut arrival_ns = departure_ns
            .saturating_add(nanos(impairments.delay))
            .saturating_add(jitter_ns)
            .max(direction.last_arrival_ns.saturating_add(spacing_ns));
        direction.last_arrival_ns = arrival_ns;
        if direction.rng.chance(impairments.reorder) {
            direction.counters.reordered += 1;
            arrival_ns = arrival_ns.saturating_add(nanos(impairments.reorder_delay));
        }
        let duplicate = direction.rng.chance(impairments.duplicate);
        let to = from.peer();
        if duplicate {
            direction.counters.duplicated += 1;
            let mut copy = self.take_buffer(len);
            copy[..len].copy_from_slice(&buf[..len]);
            self.corrupt(from, &mut buf[..len]);
            self.push(arrival_ns, to, false, buf, len);
            self.corrupt(from, &mut copy[..len]);
            self.push(arrival_ns, to, false, copy, len);
        } else {
            self.corrupt(from, &mut buf[..len]);
            self.push(arrival_ns, to, false, buf, len);
        }
    }

    /// With the configured probability, flips one bit of an IPv4 frame.
    fn corrupt(&mut self, from: Side, frame: &mut [u8]) {
        let direction = &mut self.directions[from.index()];
        if !direction.rng.chance(direction.impairments.corrupt) {
            return;
        }
        let Ok(ethernet) = EthernetFrame::new_checked(&*frame) else { return };
        if ethernet.ethertype() != EtherType::Ipv4 {
            return;
        }
        let covered_end = Ipv4Packet::new_checked(ethernet.payload())
            .map_or(frame.len(), |packet| ETHERNET_HEADER_LEN + packet.total_len());
        let byte = direction.rng.below(frame.len() as u64) as usize;
        let bit = direction.rng.below(8);
        frame[byte] ^= 1 << bit;
        direction.counters.corrupted += 1;
        let in_source_address = (6..12).contains(&byte);
        if in_source_address || byte >= covered_end {
            direction.counters.corrupted_unchecked += 1;
        }
    }

    fn push(&mut self, arrival_ns: u64, to: Side, from_router: bool, buf: Vec<u8>, len: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(InFlight { arrival_ns, seq, to, from_router, len, buf });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EthernetAddress;

    /// An Ethernet frame of an EtherType nobody parses (IEEE local experimental), carrying its
    /// sequence number, so that only the timing impairments apply to it.
    fn raw_frame(number: u32, len: usize) -> Vec<u8> {
        let mut frame = vec![0u8; len];
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        frame[14..18].copy_from_slice(&number.to_be_bytes());
        frame
    }

    fn number(frame: &[u8]) -> u32 {
        u32::from_be_bytes(frame[14..18].try_into().unwrap())
    }

    /// Everything still in flight, with its arrival instant and destination.
    fn drain(link: &mut Link) -> Vec<(Instant, Side, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(at) = link.next_delivery() {
            link.deliver(at, |to, frame| out.push((at, to, frame.to_vec())));
        }
        out
    }

    fn send_numbered(link: &mut Link, count: u32, interval: Duration) {
        for n in 0..count {
            let at = Instant::ZERO + interval * n;
            link.send(at, Side::A, &raw_frame(n, 100));
        }
    }

    mod timing {
        use super::*;

        #[test]
        fn a_perfect_link_delivers_at_once_in_order() {
            let mut link = Link::symmetric(1, Impairments::default()).unwrap();
            link.send(Instant::from_millis(3), Side::A, &raw_frame(1, 60));
            link.send(Instant::from_millis(3), Side::B, &raw_frame(2, 60));
            link.send(Instant::from_millis(3), Side::A, &raw_frame(3, 60));
            let delivered = drain(&mut link);
            let summary: Vec<_> =
                delivered.iter().map(|(at, to, f)| (*at, *to, number(f))).collect();
            let t = Instant::from_millis(3);
            assert_eq!(summary, [(t, Side::B, 1), (t, Side::A, 2), (t, Side::B, 3)]);
            assert_eq!(link.counters(Side::A).frames_delivered, 2);
            assert_eq!(link.counters(Side::B).bytes_delivered, 60);
            assert_eq!(link.in_flight(), 0);
        }

        #[test]
        fn delay_is_per_direction() {
            let a_to_b = Impairments { delay: Duration::from_millis(5), ..Impairments::default() };
            let b_to_a = Impairments { delay: Duration::from_micros(7), ..Impairments::default() };
            let mut link = Link::new(1, a_to_b, b_to_a).unwrap();
            link.send(Instant::ZERO, Side::A, &raw_frame(1, 60));
            link.send(Instant::ZERO, Side::B, &raw_frame(2, 60));
            assert_eq!(link.next_delivery(), Some(Instant::from_micros(7)));
            assert_eq!(link.deliver(Instant::from_micros(6), |_, _| panic!("too early")), 0);
            let delivered = drain(&mut link);
            assert_eq!(delivered[0].0, Instant::from_micros(7));
            assert_eq!(delivered[1].0, Instant::from_millis(5));
        }

        #[test]
        fn jitter_never_lets_a_frame_overtake_an_earlier_one() {
            let impairments = Impairments {
                delay: Duration::from_millis(1),
                jitter: Duration::from_millis(2),
                ..Impairments::default()
            };
            let mut link = Link::symmetric(9, impairments).unwrap();
            send_numbered(&mut link, 2000, Duration::from_micros(10));
            let delivered = drain(&mut link);
            let order: Vec<u32> = delivered.iter().map(|(_, _, f)| number(f)).collect();
            assert_eq!(order, (0..2000).collect::<Vec<_>>());
            // The jitter is really there: arrival gaps vary although sends were evenly spaced.
            let first_gap = delivered[1].0 - delivered[0].0;
            assert!(delivered.windows(2).any(|w| w[1].0 - w[0].0 != first_gap));
            let last_possible = Instant::from_micros(19_990) + Duration::from_millis(3);
            assert!(delivered.iter().all(|(at, _, _)| *at <= last_possible));
        }

        #[test]
        fn reordered_frames_are_overtaken_and_the_rest_keep_their_order() {
            let impairments = Impairments {
                delay: Duration::from_millis(1),
                reorder: 0.1,
                reorder_delay: Duration::from_micros(35),
                ..Impairments::default()
            };
            let mut link = Link::symmetric(4, impairments).unwrap();
            send_numbered(&mut link, 1000, Duration::from_micros(10));
            let order: Vec<u32> = drain(&mut link).iter().map(|(_, _, f)| number(f)).collect();
            let held_back = link.counters(Side::A).reordered;
            assert!((70..130).contains(&held_back), "{held_back} reordered of 1000 at p = 0.1");
            // A frame is held back iff a later-numbered frame arrived before it.
            let mut overtaken = 0;
            let mut highest_seen = None;
            for &n in &order {
                if highest_seen.is_some_and(|h| h > n) {
                    overtaken += 1;
                }
                highest_seen = highest_seen.max(Some(n));
            }
            // Consecutive held-back frames keep their mutual order, so a held-back frame
            // overtaken by nobody is possible only at the very end.
            assert!(
                overtaken <= held_back && overtaken + 2 >= held_back,
                "{overtaken} vs {held_back}"
            );
            // 35 µs at one frame per 10 µs: displaced by at most 4 places.
            for (place, &n) in order.iter().enumerate() {
                assert!((place as i64 - i64::from(n)).abs() <= 4, "frame {n} arrived {place}th");
            }
        }

        #[test]
        fn duplicates_arrive_right_behind_the_original() {
            let impairments = Impairments { duplicate: 0.05, ..Impairments::default() };
            let mut link = Link::symmetric(2, impairments).unwrap();
            send_numbered(&mut link, 4000, Duration::from_micros(10));
            let order: Vec<u32> = drain(&mut link).iter().map(|(_, _, f)| number(f)).collect();
            let duplicated = link.counters(Side::A).duplicated;
            assert!((160..240).contains(&duplicated), "{duplicated} of 4000 at p = 0.05");
            assert_eq!(order.len() as u64, 4000 + duplicated);
            let mut expected = 0;
            let mut i = 0;
            while i < order.len() {
                assert_eq!(order[i], expected);
                i += if order.get(i + 1) == Some(&expected) { 2 } else { 1 };
                expected += 1;
            }
            assert_eq!(link.counters(Side::A).frames_delivered, 4000 + duplicated);
        }

        #[test]
        fn loss_drops_its_share() {
            let impairments = Impairments { loss: 0.1, ..Impairments::default() };
            let mut link = Link::symmetric(3, impairments).unwrap();
            send_numbered(&mut link, 10_000, Duration::from_micros(1));
            let delivered = drain(&mut link).len() as u64;
            let counters = link.counters(Side::A);
            assert!((900..1100).contains(&counters.lost), "{} lost of 10000", counters.lost);
            assert_eq!(delivered + counters.lost, 10_000);
            assert_eq!(counters.frames_sent, 10_000);
        }
    }

    mod bottleneck {
        use super::*;

        fn gigabit(queue_bytes: usize) -> Impairments {
            Impairments {
                bandwidth_bps: Some(1_000_000_000),
                queue_bytes,
                ..Impairments::default()
            }
        }

        #[test]
        fn frames_leave_one_serialisation_time_apart() {
            let mut link = Link::symmetric(1, gigabit(1 << 20)).unwrap();
            for n in 0..10 {
                link.send(Instant::ZERO, Side::A, &raw_frame(n, 1500));
            }
            let arrivals: Vec<u64> =
                drain(&mut link).iter().map(|(at, _, _)| at.total_micros()).collect();
            // 1500 bytes at 1 Gbit/s: 12 µs each, rounded up to the microsecond.
            assert_eq!(arrivals, (1..=10).map(|n| n * 12).collect::<Vec<_>>());
            assert_eq!(link.counters(Side::A).max_queue_bytes, 15_000);
        }

        #[test]
        fn serialisation_does_not_accumulate_rounding() {
            // 1000 bytes at 1 Gbit/s is 8 µs; at 3 Gbit/s it is 2.667 µs.
            let impairments = Impairments {
                bandwidth_bps: Some(3_000_000_000),
                queue_bytes: 4 << 20,
                ..Impairments::default()
            };
            let mut link = Link::symmetric(1, impairments).unwrap();
            for n in 0..3000 {
                link.send(Instant::ZERO, Side::A, &raw_frame(n, 1000));
            }
            let last = drain(&mut link).last().unwrap().0;
            assert_eq!(last, Instant::from_micros(8000));
        }

        #[test]
        fn a_full_queue_drops_the_tail() {
            let mut link = Link::symmetric(1, gigabit(3000)).unwrap();
            for n in 0..3 {
                link.send(Instant::ZERO, Side::A, &raw_frame(n, 1500));
            }
            // 12 µs later the first frame has left: room for one more.
            link.send(Instant::from_micros(12), Side::A, &raw_frame(3, 1500));
            link.send(Instant::from_micros(12), Side::A, &raw_frame(4, 1500));
            let order: Vec<u32> = drain(&mut link).iter().map(|(_, _, f)| number(f)).collect();
            assert_eq!(order, [0, 1, 3]);
            assert_eq!(link.counters(Side::A).queue_drops, 2);
        }

        #[test]
        fn an_empty_queue_takes_a_frame_larger_than_itself() {
            let mut link = Link::symmetric(1, gigabit(100)).unwrap();
            link.send(Instant::ZERO, Side::A, &raw_frame(0, 1500));
            link.send(Instant::ZERO, Side::A, &raw_frame(1, 60));
            assert_eq!(drain(&mut link).len(), 1);
            assert_eq!(link.counters(Side::A).queue_drops, 1);
        }

        #[test]
        fn jitter_bunches_frames_no_closer_than_the_link_rate() {
            let impairments = Impairments {
                delay: Duration::from_millis(1),
                jitter: Duration::from_micros(500),
                ..gigabit(1 << 20)
            };
            let mut link = Link::symmetric(8, impairments).unwrap();
            for n in 0..500 {
                link.send(Instant::ZERO, Side::A, &raw_frame(n, 1500));
            }
            let delivered = drain(&mut link);
            let order: Vec<u32> = delivered.iter().map(|(_, _, f)| number(f)).collect();
            assert_eq!(order, (0..500).collect::<Vec<_>>());
            let gaps: Vec<u64> =
                delivered.windows(2).map(|w| (w[1].0 - w[0].0).as_micros() as u64).collect();
            // 12 µs per frame, less the rounding of instants to the microsecond.
            assert!(gaps.iter().all(|&gap| gap >= 11), "{gaps:?}");
            assert!(gaps.iter().any(|&gap| gap > 13), "jitter spreads some frames further");
        }

        #[test]
        fn directions_have_separate_queues() {
            let mut link = Link::symmetric(1, gigabit(1500)).unwrap();
            link.send(Instant::ZERO, Side::A, &raw_frame(0, 1500));
            link.send(Instant::ZERO, Side::B, &raw_frame(1, 1500));
            let arrivals: Vec<(u64, Side)> =
                drain(&mut link).iter().map(|(at, to, _)| (at.total_micros(), *to)).collect();
            assert_eq!(arrivals, [(12, Side::B), (12, Side::A)]);
        }
    }

    mod determinism {
        use super::*;

        fn run(seed: u64) -> Vec<(Instant, Side, Vec<u8>)> {
            let impairments = Impairments {
                loss: 0.05,
                duplicate: 0.02,
                reorder: 0.03,
                reorder_delay: Duration::from_micros(50),
                delay: Duration::from_micros(300),
                jitter: Duration::from_micros(40),
                bandwidth_bps: Some(100_000_000),
                queue_bytes: 20_000,
                ..Impairments::default()
            };
            let mut link = Link::symmetric(seed, impairments).unwrap();
            for n in 0..500 {
                let at = Instant::from_micros(u64::from(n) * 20);
                link.send(
                    at,
                    if n % 3 == 0 { Side::B } else { Side::A },
                    &raw_frame(n, 200 + n as usize),
                );
            }
            drain(&mut link)
        }

        #[test]
        fn the_same_seed_gives_the_same_deliveries() {
            assert_eq!(run(77), run(77));
            assert_ne!(run(77), run(78));
        }
    }

    /// An IPv4 frame from A to B with `payload_len` bytes of numbered payload.
    fn ipv4_frame(
        payload_len: usize,
        dont_frag: bool,
        more_frags: bool,
        frag_offset: u16,
    ) -> Vec<u8> {
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 0x0a]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 0x0b]),
            ethertype: EtherType::Ipv4,
        };
        let ip = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Udp,
            payload_len,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_frag,
            more_frags,
            frag_offset,
        };
        let mut frame = vec![0u8; ETHERNET_HEADER_LEN + 20 + payload_len];
        ethernet.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        ip.emit(
            &mut Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]),
            ChecksumPolicy::default(),
        );
        for (i, byte) in frame[ETHERNET_HEADER_LEN + 20..].iter_mut().enumerate() {
            *byte = (i % 251) as u8;
        }
        frame
    }

    /// The IPv4 header and payload of a frame, checksum verified.
    fn parse_ipv4(frame: &[u8]) -> (Ipv4Repr, Vec<u8>) {
        let ethernet = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(ethernet.ethertype(), EtherType::Ipv4);
        let packet = Ipv4Packet::new_checked(ethernet.payload()).unwrap();
        let header = Ipv4Repr::parse(&packet, ChecksumPolicy::default()).unwrap();
        (header, packet.payload().to_vec())
    }

    mod corruption {
        use super::*;

        #[test]
        fn flips_exactly_one_bit_of_each_ipv4_frame() {
            let impairments = Impairments { corrupt: 1.0, ..Impairments::default() };
            let mut link = Link::symmetric(5, impairments).unwrap();
            let original = ipv4_frame(200, true, false, 0);
            for _ in 0..1000 {
                link.send(Instant::ZERO, Side::A, &original);
            }
            let mut unchecked = 0;
            for (_, _, frame) in drain(&mut link) {
                let flipped: u32 =
                    frame.iter().zip(&original).map(|(a, b)| (a ^ b).count_ones()).sum();
                assert_eq!(flipped, 1);
                let byte = frame.iter().zip(&original).position(|(a, b)| a != b).unwrap();
                if (6..12).contains(&byte) {
                    unchecked += 1;
                }
            }
            let counters = link.counters(Side::A);
            assert_eq!(counters.corrupted, 1000);
            assert_eq!(counters.corrupted_unchecked, unchecked);
            assert!(unchecked > 0, "6 of 234 bytes are the source address");
        }

        #[test]
        fn leaves_arp_alone() {
            let impairments = Impairments { corrupt: 1.0, ..Impairments::default() };
            let mut link = Link::symmetric(5, impairments).unwrap();
            let mut arp = raw_frame(1, 42);
            arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
            link.send(Instant::ZERO, Side::A, &arp);
            assert_eq!(drain(&mut link)[0].2, arp);
            assert_eq!(link.counters(Side::A).corrupted, 0);
        }

        #[test]
        fn counts_flips_in_padding_as_unchecked() {
            let impairments = Impairments { corrupt: 1.0, ..Impairments::default() };
            let mut link = Link::symmetric(6, impairments).unwrap();
            // 14 + 20 + 6 = 40 bytes of packet, padded to the 60-byte Ethernet minimum.
            let mut padded = ipv4_frame(6, true, false, 0);
            padded.resize(60, 0);
            for _ in 0..1000 {
                link.send(Instant::ZERO, Side::A, &padded);
            }
            let mut expected_unchecked = 0;
            for (_, _, frame) in drain(&mut link) {
                let byte = frame.iter().zip(&padded).position(|(a, b)| a != b).unwrap();
                if (6..12).contains(&byte) || byte >= 40 {
                    expected_unchecked += 1;
                }
            }
            assert_eq!(link.counters(Side::A).corrupted_unchecked, expected_unchecked);
            assert!(expected_unchecked > 300, "26 of 60 bytes are unchecked");
        }
    }

    mod router {
        use super::*;

        fn router_link(path_mtu: usize) -> Link {
            let impairments = Impairments {
                path_mtu: Some(path_mtu),
                delay: Duration::from_millis(2),
                ..Impairments::default()
            };
            let mut link = Link::symmetric(1, impairments).unwrap();
            link.set_max_frame_len(ETHERNET_HEADER_LEN + 9000);
            link
        }

        #[test]
        fn answers_df_with_fragmentation_needed() {
            let mut link = router_link(1280);
            let frame = ipv4_frame(1480, true, false, 0);
            link.send(Instant::from_millis(1), Side::A, &frame);
            let delivered = drain(&mut link);
            assert_eq!(delivered.len(), 1, "only the ICMP comes out");
            let (at, to, icmp_frame) = &delivered[0];
            assert_eq!((*at, *to), (Instant::from_millis(3), Side::A));
            let ethernet = EthernetFrame::new_checked(&icmp_frame[..]).unwrap();
            assert_eq!(ethernet.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 0x0a]));
            assert_eq!(ethernet.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 0x0b]));
            let (ip, icmp_bytes) = parse_ipv4(icmp_frame);
            assert_eq!((ip.src_addr, ip.dst_addr), (ROUTER_ADDR, Ipv4Addr::new(10, 0, 0, 1)));
            assert_eq!(ip.protocol, IpProtocol::Icmp);
            assert!(ip.header_len() + ip.payload_len <= 576);
            let packet = Icmpv4Packet::new_checked(&icmp_bytes[..]).unwrap();
            let (original, original_payload) = parse_ipv4(&frame);
            match Icmpv4Repr::parse(&packet, ChecksumPolicy::default()).unwrap() {
                Icmpv4Repr::DstUnreachable { reason, header, data } => {
                    assert_eq!(reason, DstUnreachable::FragRequired { next_hop_mtu: 1280 });
                    assert_eq!(header, original);
                    assert_eq!(data, &original_payload[..ICMP_QUOTE_MAX]);
                }
                other => panic!("expected fragmentation needed, got {other:?}"),
            }
            let counters = link.counters(Side::A);
            assert_eq!((counters.frag_needed_sent, counters.frames_delivered), (1, 0));
        }

        #[test]
        fn fragments_without_df() {
            let mut link = router_link(1280);
            let frame = ipv4_frame(4000, false, false, 0);
            link.send(Instant::ZERO, Side::A, &frame);
            let (original, original_payload) = parse_ipv4(&frame);
            let mut reassembled = Vec::new();
            let pieces = drain(&mut link);
            for (i, (_, to, piece)) in pieces.iter().enumerate() {
                assert_eq!(*to, Side::B);
                assert!(piece.len() <= ETHERNET_HEADER_LEN + 1280);
                assert_eq!(piece[..ETHERNET_HEADER_LEN], frame[..ETHERNET_HEADER_LEN]);
                let (header, payload) = parse_ipv4(piece);
                assert_eq!(header.ident, original.ident);
                assert_eq!(usize::from(header.frag_offset), reassembled.len());
                assert_eq!(header.more_frags, i + 1 < pieces.len());
                assert!(!header.dont_frag);
                reassembled.extend_from_slice(&payload);
            }
            assert_eq!(reassembled, original_payload);
            let counters = link.counters(Side::A);
            assert_eq!((counters.fragmented, counters.fragments), (1, pieces.len() as u64));
            assert_eq!(pieces.len(), 4, "4000 bytes in 1256-byte pieces");
        }

        #[test]
        fn a_fragment_of_a_fragment_keeps_its_place_in_the_datagram() {
            let mut link = router_link(1000);
            let frame = ipv4_frame(1480, false, true, 2960);
            link.send(Instant::ZERO, Side::A, &frame);
            let pieces = drain(&mut link);
            assert_eq!(pieces.len(), 2);
            let (first, first_payload) = parse_ipv4(&pieces[0].2);
            let (second, _) = parse_ipv4(&pieces[1].2);
            assert_eq!((first.frag_offset, first.more_frags), (2960, true));
            assert_eq!(usize::from(second.frag_offset), 2960 + first_payload.len());
            assert!(second.more_frags, "the original was not the last fragment");
        }

        #[test]
        fn passes_what_fits_and_what_is_not_ipv4() {
            let mut link = router_link(1280);
            let fits = ipv4_frame(1260, true, false, 0);
            let mut big_non_ip = raw_frame(7, 3000);
            big_non_ip[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            link.send(Instant::ZERO, Side::A, &fits);
            link.send(Instant::ZERO, Side::A, &big_non_ip);
            let delivered: Vec<Vec<u8>> = drain(&mut link).into_iter().map(|(_, _, f)| f).collect();
            assert_eq!(delivered, [fits, big_non_ip]);
        }
    }

    #[test]
    fn impossible_impairments_are_refused() {
        let bad_loss = Impairments { loss: 1.5, ..Impairments::default() };
        assert_eq!(
            Link::symmetric(0, bad_loss).unwrap_err(),
            ImpairmentError::Probability { name: "loss", value: 1.5 }
        );
        let nan = Impairments { corrupt: f64::NAN, ..Impairments::default() };
        assert!(matches!(
            nan.validate(),
            Err(ImpairmentError::Probability { name: "corrupt", .. })
        ));
        let tiny_mtu = Impairments { path_mtu: Some(67), ..Impairments::default() };
        assert_eq!(tiny_mtu.validate(), Err(ImpairmentError::PathMtu(67)));
        let no_rate = Impairments { bandwidth_bps: Some(0), ..Impairments::default() };
        assert_eq!(no_rate.validate(), Err(ImpairmentError::ZeroBandwidth));
    }
}
