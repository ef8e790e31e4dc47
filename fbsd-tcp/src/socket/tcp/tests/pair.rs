//! Two TCBs against each other, no stack in between: each side's `dispatch` output goes through
//! a seeded lossy, reordering link with a fixed delay into the other's `process`, in virtual
//! time. Checks that a large transfer arrives intact, in a bounded time, and that both ends
//! finish cleanly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;
use crate::socket::tcp::reset_reply;
use crate::socket::Errno;

/// SplitMix64: deterministic, tiny, good enough for loss decisions.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `per_million` / 1e6.
    pub(super) fn chance(&mut self, per_million: u64) -> bool {
        self.next() % 1_000_000 < per_million
    }
}

/// What the link does to segments.
#[derive(Debug, Clone, Copy)]
pub(super) struct Link {
    /// One-way delay.
    pub(super) delay: Duration,
    /// Probability of loss, per million segments, each direction.
    pub(super) loss_ppm: u64,
    /// Probability that a segment is held back by up to `delay` more (and so overtaken).
    pub(super) reorder_ppm: u64,
    pub(super) seed: u64,
}

/// A segment on the wire.
struct Flight {
    to_server: bool,
    bytes: Vec<u8>,
}

pub(super) struct Pair {
    pub(super) client: TcpSocket,
    pub(super) server: Option<TcpSocket>,
    pub(super) now: Instant,
    link: Link,
    rng: Rng,
    /// (arrival, tie-break) → segment.
    wire: BinaryHeap<Reverse<(Instant, u64)>>,
    flights: std::collections::HashMap<u64, Flight>,
    next_id: u64,
    config: TcpConfig,
    server_options: SocketOptions,
    buf: Vec<u8>,
    pub(super) segments: u64,
    pub(super) dropped: u64,
}

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5001);

impl Pair {
    pub(super) fn new(config: TcpConfig, options: SocketOptions, link: Link) -> Pair {
        let client = TcpSocket::connect(
            &config,
            &options,
            Instant::ZERO,
            CLIENT,
            SERVER,
            SeqNumber(0xffff_0000), // wraps during the transfer
            77,
            1460,
        );
        Pair {
            client,
            server: None,
            now: Instant::ZERO,
            link,
            rng: Rng(link.seed),
            wire: BinaryHeap::new(),
            flights: Default::default(),
            next_id: 0,
            config,
            server_options: options,
            buf: vec![0; 65_600],
            segments: 0,
            dropped: 0,
        }
    }

    fn transmit(&mut self, to_server: bool, bytes: Vec<u8>) {
        self.segments += 1;
        if self.rng.chance(self.link.loss_ppm) {
            self.dropped += 1;
            return;
        }
        let mut at = self.now + self.link.delay;
        if self.rng.chance(self.link.reorder_ppm) {
            let extra = self.rng.next() % (self.link.delay.as_micros() as u64 + 1);
            at += Duration::from_micros(extra);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.flights.insert(id, Flight { to_server, bytes });
        self.wire.push(Reverse((at, id)));
    }

    /// Everything both sides want to send now goes on the wire.
    fn flush(&mut self) {
        while let Some(len) = self.client.dispatch(self.now, &mut self.buf, true) {
            let bytes = self.buf[..len].to_vec();
            self.transmit(true, bytes);
        }
        while let Some(server) = self.server.as_mut() {
            let Some(len) = server.dispatch(self.now, &mut self.buf, true) else { break };
            let bytes = self.buf[..len].to_vec();
            self.transmit(false, bytes);
        }
    }

    fn deliver(&mut self, flight: Flight) {
        let (src, dst) = if flight.to_server { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
        let packet = TcpPacket::new_checked(&flight.bytes[..]).unwrap();
        let repr = TcpRepr::parse(&packet, *src.ip(), *dst.ip(), ChecksumPolicy::default())
            .expect("a TCB emitted a malformed segment");
        let target = if flight.to_server {
            if self.server.is_none() {
                // A listener that accepts the first SYN.
                if repr.flags.contains(SYN) && repr.ack_number.is_none() {
                    self.server = Some(TcpSocket::accept_syn(
                        &self.config,
                        &self.server_options,
                        self.now,
                        SERVER,
                        CLIENT,
                        SeqNumber(0x7fff_f000),
                        12345,
                        1460,
                        &repr,
                    ));
                }
                return;
            }
            self.server.as_mut().unwrap()
        } else {
            &mut self.client
        };
        let outcome = target.process(self.now, &repr);
        check_loss_state(target);
        if outcome == SegmentOutcome::SendReset {
            let reset = reset_reply(&repr).unwrap();
            let mut bytes = vec![0; reset.header_len()];
            reset.emit(
                &mut TcpPacket::new_unchecked(&mut bytes[..]),
                *dst.ip(),
                *src.ip(),
                ChecksumPolicy::default(),
            );
            self.transmit(!flight.to_server, bytes);
        }
    }

    /// Moves virtual time to the next event (a delivery, a timer, or `wake`) and handles it.
    pub(super) fn step(&mut self, wake: Option<Instant>) {
        self.flush();
        let mut next = self.wire.peek().map(|Reverse((at, _))| *at);
        if let Some(wake) = wake {
            next = Some(next.map_or(wake, |n| n.min(wake)));
        }
        for at in [self.client.poll_at(), self.server.as_ref().and_then(TcpSocket::poll_at)]
            .into_iter()
            .flatten()
        {
            next = Some(next.map_or(at, |n: Instant| n.min(at)));
        }
        let Some(next) = next else { return };
        self.now = self.now.max(next);
        while let Some(&Reverse((at, id))) = self.wire.peek() {
            if at > self.now {
                break;
            }
            self.wire.pop();
            let flight = self.flights.remove(&id).unwrap();
            self.deliver(flight);
            // The stack dispatches after every call it makes on a TCB.
            self.flush();
        }
        if self.client.poll_at().is_some_and(|at| at <= self.now) {
            self.client.on_timer(self.now);
            check_loss_state(&self.client);
        }
        if let Some(server) = self.server.as_mut() {
            if server.poll_at().is_some_and(|at| at <= self.now) {
                server.on_timer(self.now);
                check_loss_state(server);
            }
        }
    }
}

/// What the applications at both ends do.
#[derive(Debug, Clone)]
pub(super) struct Scenario {
    pub(super) config: TcpConfig,
    pub(super) link: Link,
    /// Bytes the client sends to the server, and back.
    pub(super) client_bytes: usize,
    pub(super) server_bytes: usize,
    /// The server reads at most this many bytes this often (a slow reader); else everything
    /// at once.
    pub(super) slow_reader: Option<(Duration, usize)>,
    /// The run must be over by then, in virtual time.
    pub(super) limit: Duration,
}

/// One end's application: writes its stream, then shuts down writing; reads and checks the
/// other's stream; closes once both are done.
struct App {
    /// Added to stream offsets so the two directions carry different bytes.
    out_base: usize,
    in_base: usize,
    written: usize,
    to_write: usize,
    read: usize,
    to_read: usize,
    shut: bool,
    closed: bool,
    next_read: Instant,
}

impl App {
    fn new(out_base: usize, to_write: usize, in_base: usize, to_read: usize) -> App {
        App {
            out_base,
            in_base,
            written: 0,
            to_write,
            read: 0,
            to_read,
            shut: false,
            closed: false,
            next_read: Instant::ZERO,
        }
    }

    fn run(&mut self, socket: &mut TcpSocket, now: Instant, slow: Option<(Duration, usize)>) {
        if self.written < self.to_write {
            let (base, from, to) = (self.out_base, self.written, self.to_write);
            match socket.send_with(|a, b| {
                let n = (a.len() + b.len()).min(to - from);
                for (i, slot) in a.iter_mut().chain(b.iter_mut()).take(n).enumerate() {
                    *slot = pattern_byte(base + from + i);
                }
                n
            }) {
                Ok(n) => self.written += n,
                Err(Errno::WouldBlock) => {}
                Err(e) => panic!("send: {e:?} after {} bytes", self.written),
            }
        }
        if self.written == self.to_write && !self.shut && socket.state() != TcpState::SynSent {
            socket.shutdown_write(now).unwrap();
            self.shut = true;
        }
        if now < self.next_read {
            return;
        }
        let limit = slow.map_or(usize::MAX, |(_, chunk)| chunk);
        let mut budget = limit;
        while budget > 0 {
            let (base, from) = (self.in_base, self.read);
            let result = socket.recv_with(|a, b| {
                let n = (a.len() + b.len()).min(budget);
                for (i, &byte) in a.iter().chain(b).take(n).enumerate() {
                    assert_eq!(byte, pattern_byte(base + from + i), "byte {} corrupted", from + i);
                }
                n
            });
            match result {
                Ok(0) => {
                    assert_eq!(self.read, self.to_read, "early end of stream");
                    if self.shut && !self.closed {
                        socket.close(now);
                        self.closed = true;
                    }
                    break;
                }
                Ok(n) => {
                    self.read += n;
                    budget -= n;
                }
                Err(Errno::WouldBlock) => break,
                Err(e) => panic!("recv: {e:?} after {} bytes", self.read),
            }
        }
        if let Some((every, _)) = slow {
            if budget < limit {
                self.next_read = now + every;
            }
        }
    }
}

const SERVER_STREAM: usize = 0x5555;

/// Runs a scenario to the end: every byte checked both ways, both ends closed (TIME-WAIT or
/// CLOSED) within the time limit. Returns the pair for further checks.
pub(super) fn run(scenario: Scenario) -> Pair {
    let options = options(&scenario.config);
    let mut pair = Pair::new(scenario.config.clone(), options, scenario.link);
    let mut client = App::new(0, scenario.client_bytes, SERVER_STREAM, scenario.server_bytes);
    let mut server = App::new(SERVER_STREAM, scenario.server_bytes, 0, scenario.client_bytes);
    let mut steps = 0u64;
    loop {
        steps += 1;
        assert!(steps < 50_000_000, "livelock");
        assert!(
            pair.now < Instant::ZERO + scenario.limit,
            "too slow: client read {} of {}, server read {} of {}, at {:?}; client {:?}; \
             server {:?}",
            client.read,
            client.to_read,
            server.read,
            server.to_read,
            pair.now,
            pair.client,
            pair.server
        );
        let now = pair.now;
        client.run(&mut pair.client, now, None);
        if let Some(socket) = pair.server.as_mut() {
            server.run(socket, now, scenario.slow_reader);
        }
        let closed = |s: &TcpSocket| matches!(s.state(), TcpState::TimeWait | TcpState::Closed);
        if closed(&pair.client)
            && pair.server.as_ref().is_some_and(closed)
            && client.closed
            && server.closed
        {
            assert_eq!((client.read, server.read), (client.to_read, server.to_read));
            return pair;
        }
        let wake = (server.next_read > now).then_some(server.next_read);
        pair.step(wake);
    }
}

/// The classic case: `total` bytes client → server.
pub(super) fn transfer(config: TcpConfig, link: Link, total: usize, limit: Duration) -> Pair {
    run(Scenario { config, link, client_bytes: total, server_bytes: 0, slow_reader: None, limit })
}

fn lossy(loss_ppm: u64, seed: u64) -> Link {
    Link { delay: Duration::from_millis(5), loss_ppm, reorder_ppm: loss_ppm, seed }
}

const EIGHT_MIB: usize = 8 << 20;

fn big_buffers(sack: bool) -> TcpConfig {
    TcpConfig { send_buffer: 1 << 20, recv_buffer: 1 << 20, sack, ..TcpConfig::default() }
}

#[test]
fn eight_mib_without_loss() {
    let pair = transfer(big_buffers(true), lossy(0, 1), EIGHT_MIB, Duration::from_secs(1));
    assert_eq!(pair.dropped, 0);
    let info = pair.client.info();
    assert_eq!(info.total_retrans, 0);
    assert_eq!(info.bytes_acked, EIGHT_MIB as u64);
    assert!(info.timestamps && info.sack);
    assert!(pair.now < Instant::from_millis(1000), "took {:?}", pair.now);
}

#[test]
fn eight_mib_one_percent_loss_with_sack() {
    let pair = transfer(big_buffers(true), lossy(10_000, 2), EIGHT_MIB, Duration::from_secs(20));
    assert!(pair.dropped > 0);
    assert!(pair.client.info().fast_recoveries > 0);
}

#[test]
fn eight_mib_one_percent_loss_without_sack() {
    let pair = transfer(big_buffers(false), lossy(10_000, 3), EIGHT_MIB, Duration::from_secs(20));
    assert!(pair.dropped > 0);
    assert!(!pair.client.info().sack);
}

#[test]
fn eight_mib_five_percent_loss_with_sack() {
    let pair = transfer(big_buffers(true), lossy(50_000, 4), EIGHT_MIB, Duration::from_secs(60));
    assert!(pair.dropped > 0);
}

#[test]
fn eight_mib_five_percent_loss_without_sack() {
    let pair = transfer(big_buffers(false), lossy(50_000, 5), EIGHT_MIB, Duration::from_secs(60));
    assert!(pair.dropped > 0);
}

#[test]
fn both_directions_at_once_with_loss() {
    for sack in [true, false] {
        let pair = run(Scenario {
            config: big_buffers(sack),
            link: lossy(10_000, 6),
            client_bytes: 2 << 20,
            server_bytes: 3 << 20,
            slow_reader: None,
            limit: Duration::from_secs(30),
        });
        let server = pair.server.as_ref().unwrap().info();
        assert_eq!(server.bytes_acked, 3 << 20);
        assert_eq!(server.bytes_received, 2 << 20);
    }
}

#[test]
fn heavy_reordering_without_loss() {
    let link = Link { delay: Duration::from_millis(5), loss_ppm: 0, reorder_ppm: 100_000, seed: 7 };
    let pair = transfer(big_buffers(true), link, 4 << 20, Duration::from_secs(10));
    assert_eq!(pair.dropped, 0);
}

#[test]
fn slow_reader_with_small_buffers_stalls_and_resumes() {
    // 16 KiB buffers, a reader taking 4 KiB every 50 ms: the window closes again and again.
    let config = TcpConfig { send_buffer: 16 << 10, recv_buffer: 16 << 10, ..TcpConfig::default() };
    let pair = run(Scenario {
        config,
        link: lossy(10_000, 8),
        client_bytes: 256 << 10,
        server_bytes: 0,
        slow_reader: Some((Duration::from_millis(50), 4 << 10)),
        limit: Duration::from_secs(10),
    });
    assert!(pair.now > Instant::from_millis(3000), "64 reads of 4 KiB, 50 ms apart");
}

#[test]
fn handshake_and_close_survive_heavy_loss() {
    // 30 % loss: SYNs, FINs and their ACKs are lost too; everything still completes.
    let link = Link { delay: Duration::from_millis(5), loss_ppm: 300_000, reorder_ppm: 0, seed: 9 };
    for seed in 0..10 {
        let link = Link { seed, ..link };
        run(Scenario {
            config: big_buffers(true),
            link,
            client_bytes: 20_000,
            server_bytes: 20_000,
            slow_reader: None,
            limit: Duration::from_secs(600),
        });
    }
}

/// Engine throughput on one core: two TCBs handing segments straight to each other (no link
/// model, no allocation), checksums filled and verified, the receiver reading everything.
/// Run with `cargo test --release -p fbsd-tcp throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: run it in release mode"]
fn throughput_benchmark() {
    let config = big_buffers(true);
    let options = options(&config);
    let mut client =
        TcpSocket::connect(&config, &options, Instant::ZERO, CLIENT, SERVER, SeqNumber(1), 0, 1460);
    let mut buf = vec![0u8; 65_600];
    let mut now = Instant::ZERO;
    let len = client.dispatch(now, &mut buf, true).unwrap();
    let packet = TcpPacket::new_checked(&buf[..len]).unwrap();
    let syn =
        TcpRepr::parse(&packet, *CLIENT.ip(), *SERVER.ip(), ChecksumPolicy::default()).unwrap();
    let mut server =
        TcpSocket::accept_syn(&config, &options, now, SERVER, CLIENT, SeqNumber(7), 0, 1460, &syn);
    let total: u64 = 4 << 30;
    let mut sent = 0u64;
    let mut received = 0u64;
    let start = std::time::Instant::now();
    let mut segments = 0u64;
    while received < total {
        now += Duration::from_micros(1);
        if sent < total {
            if let Ok(n) = client.send_with(|a, b| a.len() + b.len()) {
                sent += n as u64;
            }
        }
        while let Some(len) = client.dispatch(now, &mut buf, true) {
            segments += 1;
            let packet = TcpPacket::new_checked(&buf[..len]).unwrap();
            let repr =
                TcpRepr::parse(&packet, *CLIENT.ip(), *SERVER.ip(), ChecksumPolicy::default())
                    .unwrap();
            server.process(now, &repr);
        }
        while let Ok(n) = server.recv_with(|a, b| a.len() + b.len()) {
            if n == 0 {
                break;
            }
            received += n as u64;
        }
        while let Some(len) = server.dispatch(now, &mut buf, true) {
            let packet = TcpPacket::new_checked(&buf[..len]).unwrap();
            let repr =
                TcpRepr::parse(&packet, *SERVER.ip(), *CLIENT.ip(), ChecksumPolicy::default())
                    .unwrap();
            client.process(now, &repr);
        }
    }
    let elapsed = start.elapsed();
    let gbps = received as f64 * 8.0 / elapsed.as_secs_f64() / 1e9;
    eprintln!(
        "{received} bytes, {segments} data segments in {elapsed:?}: {gbps:.1} Gbit/s, {:.0} ns per segment",
        elapsed.as_nanos() as f64 / segments as f64
    );
}

/// Mean transfer time and timeouts over 20 seeds per loss rate, with and without SACK: the
/// figures to compare when tuning loss recovery.
/// Run with `cargo test --release -p fbsd-tcp loss_matrix -- --ignored --nocapture`.
#[test]
#[ignore = "a report, not a check: run it in release mode"]
fn loss_matrix_report() {
    for sack in [true, false] {
        for loss_ppm in [10_000, 50_000] {
            let (mut seconds, mut timeouts, mut spurious) = (0.0, 0, 0);
            for seed in 100..120 {
                let link = lossy(loss_ppm, seed);
                let pair = transfer(big_buffers(sack), link, 2 << 20, Duration::from_secs(600));
                seconds += pair.now.total_micros() as f64 / 1e6;
                timeouts += pair.client.info().timeouts;
                spurious += pair.client.spurious_retransmits;
            }
            eprintln!(
                "2 MiB, sack={sack}, loss={loss_ppm} ppm: mean {:.2} s, {timeouts} timeouts \
                 ({spurious} spurious) in 20 runs",
                seconds / 20.0
            );
        }
    }
}
