//! Bulk TCP between two engines over the shared-memory wire, each in a thread of its own driving
//! its backend the way joyride-stackd's event loop does (receive a burst, timers, the
//! application, transmit; sleep in epoll on the doorbell when a turn received less than a full
//! burst), so the figure is what two daemons on one wire would move, minus the control plane.
//!
//! The applications use the zero-copy `send_with`/`recv_with` calls without touching the
//! payload, as the engine benchmark does. Reported per run: wall-clock Gbit/s, and Gbit/s per CPU
//! second of both threads together (from /proc/thread-self/schedstat) — on this 2-vCPU machine
//! the two threads share the cores with whatever else runs.
//!
//! `cargo bench -p stackd --bench shm_wire [-- 1500|9000] [--spin MICROS]`. `--spin` lets each
//! loop poll its ring for up to that long before it sleeps (default 0: sleep at once, as the
//! daemon does).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as WallInstant};

use fbsd_tcp::time::Instant;
use fbsd_tcp::wire::{ChecksumPolicy, Ipv4Cidr};
use fbsd_tcp::{AddressFamily, Errno, Shutdown, SocketType, Stack, StackConfig};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use stackd::backend::{Backend, BackendConfig, BackendKind, ShmBackend};

const SIZE: u64 = 1 << 30;
const RUNS: usize = 3;
const BUFFER: usize = 4 << 20;
const BURST: usize = 256;
const PORT: u16 = 5001;

/// CPU nanoseconds this thread has used (`/proc/thread-self/schedstat`, first field).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What one side's thread did.
#[derive(Debug, Default)]
struct SideReport {
    cpu_ns: u64,
    sleeps: u64,
    turns: u64,
    bytes: u64,
}

enum Role {
    Sender,
    Receiver,
}

/// One engine's event loop until its application is done.
fn run_side(
    mut backend: ShmBackend,
    role: Role,
    ip: [u8; 4],
    origin: WallInstant,
    spin: Duration,
    received_all: &AtomicBool,
) -> SideReport {
    let now = || Instant::from_micros(origin.elapsed().as_micros() as u64);
    let cpu_start = thread_cpu_ns();
    let mut config = StackConfig::new(
        backend.mac(),
        Ipv4Cidr::new(ip.into(), 24).expect("valid address"),
        [ip[3]; 16],
    );
    // As joyride-stackd configures its engine for this wire.
    config.mtu = backend.mtu();
    config.segmentation_offload = backend.segmentation_offload();
    if backend.checksums_unneeded() {
        config.checksum = ChecksumPolicy { fill_tx: false, verify_rx: false };
    }
    config.tcp.send_buffer = BUFFER;
    config.tcp.recv_buffer = BUFFER;
    let mut stack = Stack::new(config, now());
    let mut poll = Poll::new().expect("epoll");
    let fd = backend.poll_fd().expect("the wire has a doorbell").as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), Token(0), Interest::READABLE)
        .expect("watch the doorbell");
    let mut events = Events::with_capacity(8);

    let socket = stack.socket(AddressFamily::Inet, SocketType::Stream).expect("socket");
    let mut conn = None;
    match role {
        Role::Sender => {
            let peer = std::net::SocketAddr::from(([10, 78, 0, 2], PORT));
            assert_eq!(stack.connect(now(), socket, peer), Err(Errno::InProgress));
            conn = Some(socket);
        }
        Role::Receiver => {
            stack.bind(socket, std::net::SocketAddr::from(([0, 0, 0, 0], PORT))).expect("bind");
            stack.listen(socket, 1).expect("listen");
        }
    }
    let mut report = SideReport::default();
    let mut shut = false;
    let deadline = WallInstant::now() + Duration::from_secs(120);
    let mut idle_since: Option<WallInstant> = None;
    loop {
        assert!(WallInstant::now() < deadline, "the transfer took over 120 s");
        report.turns += 1;
        let t = now();
        let received =
            backend.receive(BURST, &mut |frame| stack.receive_frame(t, frame)).expect("receive");
        let t = now();
        if stack.poll_timeout().is_some_and(|deadline| deadline <= t) {
            stack.handle_timeout(t);
        }
        while stack.poll_event().is_some() {}
        let mut finished = false;
        match role {
            Role::Sender => {
                let c = conn.expect("connecting");
                while report.bytes < SIZE {
                    let left = (SIZE - report.bytes) as usize;
                    match stack.send_with(c, |a, b| (a.len() + b.len()).min(left)) {
                        Ok(0) | Err(Errno::WouldBlock | Errno::NotConnected) => break,
                        Ok(n) => report.bytes += n as u64,
                        Err(e) => panic!("send: {e}"),
                    }
                }
                if report.bytes == SIZE && !shut {
                    shut = stack.shutdown(t, c, Shutdown::Write).is_ok();
                }
                // Done once the receiver has read everything (until then, it may need a
                // retransmission from us).
                finished = received_all.load(Ordering::Acquire);
            }
            Role::Receiver => {
                if conn.is_none() {
                    conn = stack.accept(socket).ok().map(|(c, _)| c);
                }
                if let Some(c) = conn {
                    loop {
                        match stack.recv_with(c, |a, b| a.len() + b.len()) {
                            Ok(0) => {
                                finished = true;
                                received_all.store(true, Ordering::Release);
                                break;
                            }
                            Ok(n) => report.bytes += n as u64,
                            Err(Errno::WouldBlock) => break,
                            Err(e) => panic!("recv: {e}"),
                        }
                    }
                }
            }
        }
        let t = now();
        backend.transmit(&mut |buf| stack.poll_transmit(t, buf)).expect("transmit");
        backend.flush().expect("flush");
        if finished {
            break;
        }
        if received == BURST {
            idle_since = None;
            continue;
        }
        if received > 0 || idle_since.is_none() {
            idle_since = Some(WallInstant::now());
        }
        if idle_since.is_some_and(|since| since.elapsed() < spin) {
            std::hint::spin_loop();
            continue;
        }
        let timeout = stack.poll_timeout().map(|d| d.saturating_duration_since(now()));
        report.sleeps += 1;
        if let Err(error) = poll.poll(&mut events, timeout) {
            assert_eq!(error.kind(), std::io::ErrorKind::Interrupted, "epoll_wait: {error}");
        }
        idle_since = None;
    }
    report.cpu_ns = thread_cpu_ns() - cpu_start;
    report
}

struct Run {
    wall_gbps: f64,
    cpu_gbps: f64,
    sender: SideReport,
    receiver: SideReport,
}

fn run_once(mtu: usize, spin: Duration) -> Run {
    let wire = format!("jr-bench-{}-{mtu}", std::process::id());
    let config = BackendConfig { mtu, ..BackendConfig::new(BackendKind::Shm, wire) };
    let a = ShmBackend::open(&config).expect("open side a");
    let b = ShmBackend::open(&config).expect("open side b");
    let origin = WallInstant::now();
    let done = AtomicBool::new(false);
    let (sender, receiver) = std::thread::scope(|scope| {
        let receiver =
            scope.spawn(|| run_side(b, Role::Receiver, [10, 78, 0, 2], origin, spin, &done));
        let sender = scope.spawn(|| run_side(a, Role::Sender, [10, 78, 0, 1], origin, spin, &done));
        (sender.join().expect("sender"), receiver.join().expect("receiver"))
    });
    let seconds = origin.elapsed().as_secs_f64();
    assert_eq!(receiver.bytes, SIZE, "every byte arrived");
    let bits = SIZE as f64 * 8.0;
    let cpu = (sender.cpu_ns + receiver.cpu_ns) as f64 / 1e9;
    Run { wall_gbps: bits / seconds / 1e9, cpu_gbps: bits / cpu / 1e9, sender, receiver }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spin = args
        .iter()
        .position(|a| a == "--spin")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_micros);
    let filters: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--spin"))
        .map(|(_, a)| a)
        .collect();
    println!(
        "stackd shm wire: bulk TCP, {} MiB per run, {RUNS} runs, two threads (one engine and its \
         event loop each), {} MiB socket buffers, spin before sleeping {spin:?}.",
        SIZE >> 20,
        BUFFER >> 20
    );
    println!(
        "{:>5}  {:>10}  {:>14}  {:>22}  {:>22}",
        "MTU", "wall Gb/s", "Gb/s per CPU-s", "sender cpu/sleeps", "receiver cpu/sleeps"
    );
    for mtu in [1500, 9000] {
        if !filters.is_empty() && !filters.iter().any(|f| mtu.to_string() == **f) {
            continue;
        }
        let _warm_up = run_once(mtu, spin);
        let mut runs: Vec<Run> = (0..RUNS).map(|_| run_once(mtu, spin)).collect();
        runs.sort_by(|x, y| x.wall_gbps.total_cmp(&y.wall_gbps));
        for run in &runs {
            println!(
                "{mtu:>5}  {:>10.2}  {:>14.2}  {:>13.2} s/{:>7}  {:>13.2} s/{:>7}",
                run.wall_gbps,
                run.cpu_gbps,
                run.sender.cpu_ns as f64 / 1e9,
                run.sender.sleeps,
                run.receiver.cpu_ns as f64 / 1e9,
                run.receiver.sleeps,
            );
        }
    }
}
