//! Two [`Stack`]s on a [`Link`], driven in virtual time by the loop `Stack` documents.

use std::net::Ipv4Addr;

use super::link::Link;
use super::Side;
use crate::iface::StackConfig;
use crate::socket::SocketHandle;
use crate::time::{Duration, Instant};
use crate::wire::ethernet::HEADER_LEN as ETHERNET_HEADER_LEN;
use crate::wire::{EthernetAddress, Ipv4Cidr};
use crate::Stack;

/// A socket of one side whose readiness may have changed (from `Stack::poll_event`).
pub type Event = (Side, SocketHandle);

/// Why [`Pair::drive_until`] gave up. Each means the run is broken, not merely slow, except
/// `Deadline`, which means it was slower than the caller allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    /// Many steps ran without virtual time advancing: some timer or frame keeps asking for
    /// work at the same instant.
    #[error("livelock at {at}: {steps} steps without virtual time advancing")]
    Livelock {
        /// The instant time stopped at.
        at: Instant,
        /// Steps taken there.
        steps: u64,
    },
    /// Nothing is in flight, no timer is armed and no wake-up requested, yet the application
    /// is not done: it waits for something that will never come.
    #[error("stalled at {at}: nothing in flight, no timer armed, and the application is not done")]
    Idle {
        /// When it went quiet.
        at: Instant,
    },
    /// One stack kept producing frames at one instant: far more than any window could hold,
    /// so `poll_transmit` would likely never have returned `None`.
    #[error("flood at {at}: side {side:?} sent {frames} frames in one step")]
    Flood {
        /// The instant.
        at: Instant,
        /// The stack.
        side: Side,
        /// Frames it had sent when the driver stopped it.
        frames: u64,
    },
    /// The application was not done when the next event lay beyond the time limit.
    #[error("not done by {deadline} of virtual time (now {at})")]
    Deadline {
        /// The limit.
        deadline: Instant,
        /// The last instant simulated.
        at: Instant,
    },
}

/// Steps allowed at one instant before [`DriveError::Livelock`]. Real runs take a handful: a
/// frame delivered, a timer fired, the answers sent, all at one instant, but the next step is
/// always later because the link has a delay. A link with no delay at all puts every exchange
/// at the same instant and needs [`Pair::set_livelock_limit`].
const DEFAULT_LIVELOCK_LIMIT: u64 = 10_000;

/// Frames one stack may send in one step before [`DriveError::Flood`]: a 64 MiB window of
/// 536-byte segments is 125 000 frames, so this is well beyond anything legitimate.
const FLOOD_LIMIT: u64 = 1 << 20;

/// Two stacks on one simulated /24, A = 10.0.0.1 and B = 10.0.0.2, with fixed MAC addresses and
/// secrets, connected by a [`Link`] and driven in virtual time starting at [`Instant::ZERO`].
///
/// Each step follows `Stack`'s order of calls: advance to the next event (a frame arriving,
/// either stack's `poll_timeout`, or a wake-up the application asked for); deliver the frames
/// that arrived; run due timers; drain `poll_event` and let the application act; drain both
/// stacks' `poll_transmit` into the link.
#[derive(Debug)]
pub struct Pair {
    a: Stack,
    b: Stack,
    link: Link,
    now: Instant,
    /// Reused between steps: events drained for the application.
    events: Vec<Event>,
    wake: Option<Instant>,
    steps_at_now: u64,
    livelock_limit: u64,
    steps: u64,
}

impl Pair {
    /// Side `side`'s IPv4 address.
    pub const fn addr(side: Side) -> Ipv4Addr {
        match side {
            Side::A => Ipv4Addr::new(10, 0, 0, 1),
            Side::B => Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    /// Side `side`'s MAC address (locally administered).
    pub const fn mac(side: Side) -> EthernetAddress {
        match side {
            Side::A => EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]),
            Side::B => EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]),
        }
    }

    /// The configuration side `side` gets by default: its identity, a fixed secret (runs must
    /// be reproducible; these stacks guard nothing) and the engine's defaults. Change a copy and
    /// hand it to [`with_configs`](Self::with_configs).
    pub fn config(side: Side) -> StackConfig {
        let secret = match side {
            Side::A => *b"fbsd-tcp sim: A!",
            Side::B => *b"fbsd-tcp sim: B!",
        };
        let addr = Ipv4Cidr { addr: Pair::addr(side), prefix_len: 24 };
        StackConfig::new(Pair::mac(side), addr, secret)
    }

    /// Two stacks with the default configurations.
    pub fn new(link: Link) -> Pair {
        Pair::with_configs(Pair::config(Side::A), Pair::config(Side::B), link)
    }

    /// Two stacks with the given configurations (normally from [`config`](Self::config)). The
    /// link's frame buffers are sized for the larger MTU (or segmentation offload).
    pub fn with_configs(a: StackConfig, b: StackConfig, mut link: Link) -> Pair {
        let largest = |c: &StackConfig| c.mtu.max(c.segmentation_offload);
        link.set_max_frame_len(ETHERNET_HEADER_LEN + largest(&a).max(largest(&b)));
        let now = Instant::ZERO;
        Pair {
            a: Stack::new(a, now),
            b: Stack::new(b, now),
            link,
            now,
            events: Vec::new(),
            wake: None,
            steps_at_now: 0,
            livelock_limit: DEFAULT_LIVELOCK_LIMIT,
            steps: 0,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// One side's stack.
    pub fn stack(&self, side: Side) -> &Stack {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// One side's stack, for socket calls.
    pub fn stack_mut(&mut self, side: Side) -> &mut Stack {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// The link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The link, to change its impairments mid-run.
    pub fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }

    /// Makes sure a step happens at `at` even if nothing else is due then, for applications
    /// that act on their own schedule (a paced sender).
    pub fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |wake| wake.min(at)));
    }

    /// Steps allowed at one instant before the driver reports a livelock.
    pub fn set_livelock_limit(&mut self, steps: u64) {
        self.livelock_limit = steps;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One step without an application: send what socket calls made since the last step left
    /// waiting, advance to the next event, deliver frames, fire timers, send. Readiness events
    /// stay queued in the stacks for the next application turn. `Ok(false)` when there was
    /// nothing to do.
    pub fn step(&mut self) -> Result<bool, DriveError> {
        self.transmit()?;
        if !self.advance(None)? {
            return Ok(false);
        }
        self.transmit()?;
        Ok(true)
    }

    /// Runs without an application until `duration` of virtual time has passed (or nothing is
    /// left to do; the clock still moves to the end). For letting timers run out.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), DriveError> {
        let end = self.now + duration;
        self.transmit()?;
        while self.advance(Some(end))? {
            self.transmit()?;
        }
        self.now = self.now.max(end);
        self.steps_at_now = 0;
        Ok(())
    }

    /// Runs `app` now and after every step until it returns true (done), for at most `limit`
    /// of virtual time. `app` gets the pair (socket calls go to [`stack_mut`](Self::stack_mut),
    /// at [`now`](Self::now)) and the readiness events drained since its last turn; what it
    /// sends goes out in the same step. Returns the instant it finished.
    pub fn drive_until(
        &mut self,
        limit: Duration,
        mut app: impl FnMut(&mut Pair, &[Event]) -> bool,
    ) -> Result<Instant, DriveError> {
        let deadline = self.now + limit;
        loop {
            let done = self.run_app(&mut app);
            self.transmit()?;
            if done {
                return Ok(self.now);
            }
            match self.advance(Some(deadline)) {
                Ok(true) => {}
                Ok(false) if self.next_event().0.is_some() => {
                    return Err(DriveError::Deadline { deadline, at: self.now });
                }
                Ok(false) => return Err(DriveError::Idle { at: self.now }),
                Err(error) => return Err(error),
            }
        }
    }

    fn run_app(&mut self, app: &mut impl FnMut(&mut Pair, &[Event]) -> bool) -> bool {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        while let Some(handle) = self.a.poll_event() {
            events.push((Side::A, handle));
        }
        while let Some(handle) = self.b.poll_event() {
            events.push((Side::B, handle));
        }
        let done = app(self, &events);
        self.events = events;
        done
    }

    /// The next instant anything is due, and each stack's own deadline.
    fn next_event(&mut self) -> (Option<Instant>, [Option<Instant>; 2]) {
        let deadlines = [self.a.poll_timeout(), self.b.poll_timeout()];
        let next =
            [self.link.next_delivery(), self.wake].into_iter().chain(deadlines).flatten().min();
        (next, deadlines)
    }

    /// Moves to the next event (unless it lies beyond `until`), delivers the frames due and runs
    /// due timers. `Ok(false)` when there is no event (by `until`).
    fn advance(&mut self, until: Option<Instant>) -> Result<bool, DriveError> {
        let (next, deadlines) = self.next_event();
        let Some(next) = next else { return Ok(false) };
        if until.is_some_and(|until| next > until) {
            return Ok(false);
        }
        if next > self.now {
            self.now = next;
            self.steps_at_now = 0;
        } else {
            self.steps_at_now += 1;
            if self.steps_at_now > self.livelock_limit {
                return Err(DriveError::Livelock { at: self.now, steps: self.steps_at_now });
            }
        }
        self.steps += 1;
        let now = self.now;
        if self.wake.is_some_and(|wake| wake <= now) {
            self.wake = None;
        }
        let (a, b) = (&mut self.a, &mut self.b);
        self.link.deliver(now, |to, frame| match to {
            Side::A => a.receive_frame(now, frame),
            Side::B => b.receive_frame(now, frame),
        });
        // The deadlines from before the deliveries: a frame may cancel a timer (then
        // `handle_timeout` finds nothing due) or arm one for later, never for an instant that
        // has passed; asking again would double the driver's cost per step.
        for (stack, deadline) in [a, b].into_iter().zip(deadlines) {
            if deadline.is_some_and(|due| due <= now) {
                stack.handle_timeout(now);
            }
        }
        Ok(true)
    }

    /// Drains both stacks' `poll_transmit` into the link.
    fn transmit(&mut self) -> Result<(), DriveError> {
        let now = self.now;
        for side in [Side::A, Side::B] {
            let stack = match side {
                Side::A => &mut self.a,
                Side::B => &mut self.b,
            };
            let mut frames = 0;
            while self.link.send_with(now, side, |buf| stack.poll_transmit(now, buf)) {
                frames += 1;
                if frames >= FLOOD_LIMIT {
                    return Err(DriveError::Flood { at: now, side, frames });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, SocketAddrV4};

    use super::*;
    use crate::sim::Impairments;
    use crate::socket::{AddressFamily, SocketType};

    fn link(delay: Duration) -> Link {
        Link::symmetric(1, Impairments { delay, ..Impairments::default() }).unwrap()
    }

    fn udp_socket(pair: &mut Pair, side: Side, port: u16) -> (SocketHandle, SocketAddr) {
        let addr = SocketAddr::V4(SocketAddrV4::new(Pair::addr(side), port));
        let stack = pair.stack_mut(side);
        let handle = stack.socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
        stack.bind(handle, addr).unwrap();
        (handle, addr)
    }

    #[test]
    fn a_datagram_waits_for_arp_then_crosses() {
        let mut pair = Pair::new(link(Duration::from_millis(3)));
        let (a, _) = udp_socket(&mut pair, Side::A, 1000);
        let (b, b_addr) = udp_socket(&mut pair, Side::B, 2000);
        pair.stack_mut(Side::A).send_to(a, b"hello", Some(b_addr)).unwrap();
        let mut got = Vec::new();
        let finished = pair
            .drive_until(Duration::from_secs(1), |pair, events| {
                if events.contains(&(Side::B, b)) {
                    let mut buf = [0u8; 16];
                    let (len, _, _) = pair.stack_mut(Side::B).recv_from(b, &mut buf).unwrap();
                    got.extend_from_slice(&buf[..len]);
                }
                !got.is_empty()
            })
            .unwrap();
        assert_eq!(got, b"hello");
        // B's gratuitous ARP at start reaches A at 3 ms (before A's own request is answered);
        // the datagram A held for it then takes 3 ms.
        assert_eq!(finished, Instant::from_millis(6));
        assert_eq!(pair.now(), finished);
    }

    #[test]
    fn what_the_application_sends_leaves_in_the_same_step() {
        let mut pair = Pair::new(link(Duration::from_millis(1)));
        let (a, a_addr) = udp_socket(&mut pair, Side::A, 1000);
        let (b, b_addr) = udp_socket(&mut pair, Side::B, 2000);
        // Resolve ARP both ways first.
        pair.stack_mut(Side::A).send_to(a, b"x", Some(b_addr)).unwrap();
        pair.stack_mut(Side::B).send_to(b, b"x", Some(a_addr)).unwrap();
        pair.run_for(Duration::from_millis(10)).unwrap();
        let mut buf = [0u8; 16];
        pair.stack_mut(Side::A).recv_from(a, &mut buf).unwrap();
        pair.stack_mut(Side::B).recv_from(b, &mut buf).unwrap();
        let start = pair.now();
        let mut bounces = 0;
        // Ping-pong: each side answers at once, so each bounce takes exactly one delay.
        pair.stack_mut(Side::A).send_to(a, b"ping", Some(b_addr)).unwrap();
        let end = pair
            .drive_until(Duration::from_secs(1), |pair, events| {
                for &(side, handle) in events {
                    let peer = if side == Side::A { b_addr } else { a_addr };
                    while pair.stack_mut(side).recv_from(handle, &mut buf).is_ok() {
                        bounces += 1;
                        if bounces < 10 {
                            pair.stack_mut(side).send_to(handle, b"pong", Some(peer)).unwrap();
                        }
                    }
                }
                bounces >= 10
            })
            .unwrap();
        assert_eq!(end - start, Duration::from_millis(10));
    }

    #[test]
    fn step_goes_from_event_to_event() {
        let mut pair = Pair::new(link(Duration::from_millis(2)));
        // The first step sends both gratuitous ARPs and moves to their arrival.
        assert_eq!(pair.step(), Ok(true));
        assert_eq!(pair.now(), Instant::from_millis(2));
        assert_eq!(pair.link().counters(Side::A).frames_delivered, 1);
        assert_eq!(pair.link().counters(Side::B).frames_delivered, 1);
        assert_eq!(pair.steps(), 1);
        pair.run_for(Duration::from_millis(5)).unwrap();
        assert_eq!(pair.now(), Instant::from_millis(7));
    }

    #[test]
    fn a_zero_delay_ping_pong_is_reported_as_livelock() {
        let mut pair = Pair::new(link(Duration::ZERO));
        pair.set_livelock_limit(500);
        let (a, a_addr) = udp_socket(&mut pair, Side::A, 1000);
        let (b, b_addr) = udp_socket(&mut pair, Side::B, 2000);
        pair.stack_mut(Side::A).send_to(a, b"ping", Some(b_addr)).unwrap();
        let mut buf = [0u8; 16];
        let error = pair
            .drive_until(Duration::from_secs(1), |pair, _| {
                for (side, handle, peer) in [(Side::A, a, b_addr), (Side::B, b, a_addr)] {
                    while pair.stack_mut(side).recv_from(handle, &mut buf).is_ok() {
                        pair.stack_mut(side).send_to(handle, b"pong", Some(peer)).unwrap();
                    }
                }
                false
            })
            .unwrap_err();
        assert_eq!(error, DriveError::Livelock { at: Instant::ZERO, steps: 501 });
    }

    #[test]
    fn an_application_waiting_for_nothing_is_reported_idle() {
        let mut pair = Pair::new(link(Duration::from_millis(1)));
        let error = pair.drive_until(Duration::from_secs(1), |_, _| false).unwrap_err();
        assert!(matches!(error, DriveError::Idle { .. }), "{error}");
    }

    #[test]
    fn the_deadline_stops_a_slow_application_before_its_wake_up() {
        let mut pair = Pair::new(link(Duration::from_millis(1)));
        let mut turns = 0;
        let error = pair
            .drive_until(Duration::from_millis(25), |pair, _| {
                turns += 1;
                pair.wake_at(pair.now() + Duration::from_millis(10));
                false
            })
            .unwrap_err();
        assert_eq!(
            error,
            DriveError::Deadline {
                deadline: Instant::from_millis(25),
                at: Instant::from_millis(20)
            }
        );
        // At 0, at 1 ms (the gratuitous ARPs arrive), at 10 and at 20 ms.
        assert_eq!(turns, 4);
        assert!(pair.now() <= Instant::from_millis(25));
    }
}
