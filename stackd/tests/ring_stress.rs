//! A million messages through `stackd::ring` between two threads and between two processes, with
//! a real doorbell: a unix socketpair on which the writer sends one byte when `bell_needed` says
//! so and the reader sleeps in poll after the drain protocol. Checks every byte against a
//! deterministic stream, fails instead of hanging (60 s), and reports spurious wake-ups.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use stackd::ring::{Consumer, Drained, PeerState, RingRegion};

const MESSAGES: u64 = 1_000_000;
// A guard against a hang, not a speed test (a lost wake-up fails within a second on its own):
// on a loaded 2-vCPU machine one stream of 10^6 messages across fork took over a minute.
const DEADLINE: Duration = Duration::from_secs(240);
/// How long a reader spins on an empty ring before the drain protocol, and how often it yields
/// meanwhile (DESIGN.md: plain spinning on 2 vCPUs doubles latency).
const SPIN: Duration = Duration::from_micros(15);
const YIELD_EVERY: Duration = Duration::from_micros(3);

/// xorshift64: message sizes and the byte stream, reproducible on both sides.
#[derive(Clone)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The byte stream: eight bytes per xorshift step.
struct Stream {
    rng: XorShift,
    word: [u8; 8],
    used: usize,
}

impl Stream {
    fn new() -> Self {
        Self { rng: XorShift(0x9e37_79b9_7f4a_7c15), word: [0; 8], used: 8 }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            if self.used == 8 {
                self.word = self.rng.next().to_le_bytes();
                self.used = 0;
            }
            *byte = self.word[self.used];
            self.used += 1;
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct WriterStats {
    bells: u64,
    full_waits: u64,
}

#[derive(Debug, Default)]
struct ReaderStats {
    bytes: u64,
    sleeps: u64,
    spurious: u64,
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: fds has room for the two descriptors.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn ring_bell(bell: &OwnedFd) -> bool {
    // SAFETY: one byte from a valid buffer on a valid descriptor.
    let sent = unsafe { libc::send(bell.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
    sent == 1
}

/// The writer: allocates nothing, so that it can run in a forked child of a threaded process.
/// Returns None if it ran out of time or the ring was corrupt.
/// With `pauses`, the writer stops after about one message in 32 (a sleep or a yield), so that
/// the reader goes through the drain protocol and sleeps tens of thousands of times.
fn write_all(
    region: &RingRegion,
    bell: &OwnedFd,
    start: Instant,
    pauses: bool,
) -> Option<WriterStats> {
    let mut producer = region.producer().ok()?;
    let mut sizes = XorShift(0x2545_f491_4f6c_dd1d);
    let mut stream = Stream::new();
    let mut message = [0u8; 4096];
    let mut stats = WriterStats::default();
    for _ in 0..MESSAGES {
        let draw = sizes.next();
        let size = 1 + (draw % 4096) as usize;
        if pauses && (draw >> 32).is_multiple_of(32) {
            if (draw >> 40).is_multiple_of(2) {
                std::thread::sleep(Duration::from_micros(20));
            } else {
                std::thread::yield_now();
            }
        }
        stream.fill(&mut message[..size]);
        let mut sent = 0;
        let mut waits = 0u32;
        while sent < size {
            let n = producer.write(&message[sent..size]).ok()?;
            sent += n;
            if n > 0 {
                waits = 0;
                if producer.bell_needed().ok()? {
                    stats.bells += 1;
                    if !ring_bell(bell) {
                        producer.bell_not_sent();
                    }
                }
                continue;
            }
            // Full: bounded spin, then yield, then short sleeps (no doorbell for space yet).
            stats.full_waits += 1;
            waits += 1;
            if waits < 64 {
                std::hint::spin_loop();
            } else if waits < 256 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
            if start.elapsed() > DEADLINE {
                return None;
            }
        }
    }
    if producer.close(PeerState::Fin) {
        stats.bells += 1;
        if !ring_bell(bell) {
            producer.bell_not_sent();
        }
    }
    Some(stats)
}

fn drain(bell: &OwnedFd, pending: u64) -> std::io::Result<u64> {
    let mut sink = [0u8; 256];
    let want = sink.len().min(pending as usize);
    // SAFETY: reads into a valid buffer of `want` bytes.
    let got = unsafe { libc::recv(bell.as_raw_fd(), sink.as_mut_ptr().cast(), want, 0) };
    if got < 0 {
        let error = std::io::Error::last_os_error();
        return if error.kind() == std::io::ErrorKind::WouldBlock { Ok(0) } else { Err(error) };
    }
    Ok(got as u64)
}

/// How the reading program waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    /// A blocking recv in the library: it polls the doorbell only when the drain protocol says
    /// to sleep.
    Blocking,
    /// An event-loop program: it polls the carrier (level-triggered) before every recv of a
    /// random size, and the library's non-blocking recv answers EAGAIN after the drain protocol.
    /// This needs the invariant "ring non-empty => doorbell readable": data left behind by a
    /// short read must keep the carrier readable.
    EventLoop,
}

enum Recv {
    Data(usize),
    Eof,
    WouldBlock,
}

/// The library's non-blocking recv: ring, then a bounded spin, then the drain protocol.
fn recv(consumer: &mut Consumer<&RingRegion>, bell: &OwnedFd, buf: &mut [u8]) -> Recv {
    loop {
        let n = consumer.read(buf).unwrap();
        if n > 0 {
            return Recv::Data(n);
        }
        match consumer.region().state() {
            PeerState::Open => {}
            PeerState::Fin if consumer.is_empty().unwrap() => return Recv::Eof,
            PeerState::Fin => continue,
            PeerState::Reset(errno) => panic!("unexpected reset {errno}"),
        }
        consumer.spin_begin(buf.len());
        let spin_start = Instant::now();
        let mut last_yield = spin_start;
        while consumer.is_empty().unwrap() && spin_start.elapsed() < SPIN {
            if last_yield.elapsed() >= YIELD_EVERY {
                std::thread::yield_now();
                last_yield = Instant::now();
            }
            std::hint::spin_loop();
        }
        if consumer.spin_end().unwrap() > 0 {
            continue;
        }
        if consumer.drain_bells(|pending| drain(bell, pending)).unwrap() == Drained::Sleep {
            return Recv::WouldBlock;
        }
    }
}

/// Waits for the doorbell; a second without one is a lost wake-up (the writer never pauses
/// that long).
fn wait(consumer: &Consumer<&RingRegion>, bell: &OwnedFd, stats: &ReaderStats) {
    let mut poll = libc::pollfd { fd: bell.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, 1000) };
    assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
    assert!(
        ready == 1,
        "lost wake-up: no doorbell within 1 s, {} bytes in the ring, state {:?} ({stats:?})",
        consumer.len().unwrap(),
        consumer.region().state(),
    );
}

/// The reader: checks every byte against the stream.
fn read_all(region: &RingRegion, bell: &OwnedFd, start: Instant, waiter: Waiter) -> ReaderStats {
    let mut consumer = region.consumer().unwrap();
    let mut stream = Stream::new();
    let mut sizes = XorShift(0xdead_beef_cafe_f00d);
    let mut buf = vec![0u8; 16 << 10];
    let mut expected = vec![0u8; buf.len()];
    let mut stats = ReaderStats::default();
    loop {
        assert!(start.elapsed() < DEADLINE, "reader hung: {stats:?}");
        let want = match waiter {
            Waiter::Blocking => buf.len(),
            Waiter::EventLoop => {
                wait(&consumer, bell, &stats);
                stats.sleeps += 1;
                1 + (sizes.next() as usize % buf.len())
            }
        };
        match recv(&mut consumer, bell, &mut buf[..want]) {
            Recv::Data(n) => {
                stream.fill(&mut expected[..n]);
                assert!(buf[..n] == expected[..n], "wrong bytes after {} bytes", stats.bytes);
                stats.bytes += n as u64;
            }
            Recv::Eof => return stats,
            Recv::WouldBlock if waiter == Waiter::EventLoop => stats.spurious += 1,
            Recv::WouldBlock => {
                stats.sleeps += 1;
                wait(&consumer, bell, &stats);
                if consumer.is_empty().unwrap() && region.state() == PeerState::Open {
                    stats.spurious += 1;
                }
            }
        }
    }
}

fn expected_bytes() -> u64 {
    let mut sizes = XorShift(0x2545_f491_4f6c_dd1d);
    (0..MESSAGES).map(|_| 1 + sizes.next() % 4096).sum()
}

fn report(
    waiter: Waiter,
    label: &str,
    capacity: usize,
    start: Instant,
    writer: WriterStats,
    reader: &ReaderStats,
) {
    println!(
        "{label} ({waiter:?}) ring {} KiB: {} messages, {} MiB in {:.2?}; bells sent {}, full-ring waits {}, \
         reader waits {}, spurious wake-ups {}",
        capacity >> 10,
        MESSAGES,
        reader.bytes >> 20,
        start.elapsed(),
        writer.bells,
        writer.full_waits,
        reader.sleeps,
        reader.spurious,
    );
    assert_eq!(reader.bytes, expected_bytes());
    // Spurious wake-ups come from bells counted but still in flight when the reader drained;
    // each needs a bell, so they stay well below the messages.
    assert!(reader.spurious <= writer.bells, "more spurious wake-ups than bells");
    assert!(reader.spurious < MESSAGES / 10, "too many spurious wake-ups: {}", reader.spurious);
}

fn across_threads(capacity: usize, pauses: bool, waiter: Waiter) {
    let region = RingRegion::create(capacity).unwrap();
    let (writer_end, reader_end) = socketpair();
    let start = Instant::now();
    let (writer, reader) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_all(&region, &writer_end, start, pauses));
        let reader = read_all(&region, &reader_end, start, waiter);
        (writer.join().unwrap().expect("writer ran out of time"), reader)
    });
    report(
        waiter,
        if pauses { "threads, bursty" } else { "threads" },
        capacity,
        start,
        writer,
        &reader,
    );
}

#[test]
fn million_messages_across_threads_8k() {
    across_threads(8 << 10, false, Waiter::Blocking);
}

#[test]
fn million_messages_across_threads_1m() {
    across_threads(1 << 20, false, Waiter::Blocking);
}

#[test]
fn million_bursty_messages_across_threads_64k() {
    across_threads(64 << 10, true, Waiter::EventLoop);
}

#[test]
fn million_messages_across_fork_64k() {
    across_fork(64 << 10, false, Waiter::Blocking);
}

#[test]
fn million_bursty_messages_across_fork_8k() {
    across_fork(8 << 10, true, Waiter::EventLoop);
}

/// The real use: two processes, the child mapping the region from the inherited memfd.
fn across_fork(capacity: usize, pauses: bool, waiter: Waiter) {
    let region = RingRegion::create(capacity).unwrap();
    let (writer_end, reader_end) = socketpair();
    let mut stats_pipe = [0 as RawFd; 2];
    // SAFETY: room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(stats_pipe.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let start = Instant::now();
    // The child gets its own mapping from a duplicate of the descriptor (what inheritance across
    // exec or SCM_RIGHTS would give), made before fork so the child need not allocate.
    let inherited = region.fd().unwrap().try_clone_to_owned().unwrap();
    // SAFETY: the child only makes system calls, touches preallocated memory and leaves with
    // _exit; it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match RingRegion::map(inherited) {
            Ok(child_region) => match write_all(&child_region, &writer_end, start, pauses) {
                Some(stats) => {
                    let words = [stats.bells, stats.full_waits];
                    // SAFETY: writes 16 bytes from a valid array.
                    let written = unsafe { libc::write(stats_pipe[1], words.as_ptr().cast(), 16) };
                    if written == 16 {
                        0
                    } else {
                        3
                    }
                }
                None => 2,
            },
            Err(_) => 1,
        };
        // SAFETY: leaves the child without running the parent's destructors or harness.
        unsafe { libc::_exit(code) };
    }
    drop(inherited);
    // SAFETY: the parent owns both pipe ends now; it keeps the read end.
    let (stats_read, _) =
        unsafe { (OwnedFd::from_raw_fd(stats_pipe[0]), OwnedFd::from_raw_fd(stats_pipe[1])) };
    let reader = read_all(&region, &reader_end, start, waiter);
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    let mut words = [0u64; 2];
    // SAFETY: reads 16 bytes into a valid array.
    let got = unsafe { libc::read(stats_read.as_raw_fd(), words.as_mut_ptr().cast(), 16) };
    assert_eq!(got, 16);
    let writer = WriterStats { bells: words[0], full_waits: words[1] };
    report(waiter, if pauses { "fork, bursty" } else { "fork" }, capacity, start, writer, &reader);
}

const ROUNDS: u64 = 200_000;

/// One side of a ping-pong: a writer that stops after every message is where a lost wake-up
/// cannot be rescued by the next write, so it hangs (and the 1 s poll fails the test).
fn ping_pong_side(
    tx: &RingRegion,
    rx: &RingRegion,
    bell: &OwnedFd,
    starts: bool,
    start: Instant,
) -> (WriterStats, ReaderStats) {
    let mut producer = tx.producer().unwrap();
    let mut consumer = rx.consumer().unwrap();
    // Both sides draw the same sizes; each direction has its own byte stream.
    let mut sizes = XorShift(0x1234_5678_9abc_def1);
    let mut reads = XorShift(if starts { 7 } else { 11 });
    let (mut out_stream, mut in_stream) = (Stream::new(), Stream::new());
    let mut message = vec![0u8; 4096];
    let mut buf = vec![0u8; 4096];
    let mut expected = vec![0u8; 4096];
    let (mut writer, mut reader) = (WriterStats::default(), ReaderStats::default());
    for round in 0..2 * ROUNDS {
        assert!(start.elapsed() < DEADLINE, "ping-pong hung at round {round}");
        let size = 1 + (sizes.next() % 4096) as usize;
        if (round % 2 == 0) == starts {
            out_stream.fill(&mut message[..size]);
            // The ring (8 KiB) is empty here: the peer read our last message before replying.
            assert_eq!(producer.write(&message[..size]).unwrap(), size);
            if producer.bell_needed().unwrap() {
                writer.bells += 1;
                if !ring_bell(bell) {
                    producer.bell_not_sent();
                }
            }
            continue;
        }
        let mut remaining = size;
        while remaining > 0 {
            // Either an event loop (poll, then recv) or a blocking recv (spin, drain, poll): the
            // mix puts short reads after a spinning reader's promise and after a drain.
            let draw = reads.next();
            let poll_first = draw.is_multiple_of(2);
            if poll_first {
                wait(&consumer, bell, &reader);
                reader.sleeps += 1;
            }
            let want = remaining.min(1 + ((draw >> 1) as usize % 4096));
            match recv(&mut consumer, bell, &mut buf[..want]) {
                Recv::Data(n) => {
                    in_stream.fill(&mut expected[..n]);
                    assert!(buf[..n] == expected[..n], "wrong bytes in round {round}");
                    reader.bytes += n as u64;
                    remaining -= n;
                }
                Recv::Eof => panic!("unexpected EOF"),
                Recv::WouldBlock if poll_first => reader.spurious += 1,
                Recv::WouldBlock => {
                    wait(&consumer, bell, &reader);
                    reader.sleeps += 1;
                }
            }
        }
    }
    (writer, reader)
}

#[test]
fn ping_pong_loses_no_wake_up() {
    let a_to_b = RingRegion::create(8 << 10).unwrap();
    let b_to_a = RingRegion::create(8 << 10).unwrap();
    // One socketpair is both doorbells: a byte written on one end wakes the other.
    let (a_end, b_end) = socketpair();
    let start = Instant::now();
    let ((a_writer, a_reader), (b_writer, b_reader)) = std::thread::scope(|scope| {
        let b = scope.spawn(|| ping_pong_side(&b_to_a, &a_to_b, &b_end, false, start));
        let a = ping_pong_side(&a_to_b, &b_to_a, &a_end, true, start);
        (a, b.join().unwrap())
    });
    println!(
        "ping-pong 8 KiB rings: {ROUNDS} round trips in {:.2?}; bells sent {} + {}, \
         waits {} + {}, spurious wake-ups {} + {}",
        start.elapsed(),
        a_writer.bells,
        b_writer.bells,
        a_reader.sleeps,
        b_reader.sleeps,
        a_reader.spurious,
        b_reader.spurious,
    );
    let mut sizes = XorShift(0x1234_5678_9abc_def1);
    let (mut to_b, mut to_a) = (0, 0);
    for round in 0..2 * ROUNDS {
        let size = 1 + sizes.next() % 4096;
        if round % 2 == 0 {
            to_b += size
        } else {
            to_a += size
        }
    }
    assert_eq!((a_reader.bytes, b_reader.bytes), (to_a, to_b));
    assert!(a_reader.spurious + b_reader.spurious < 2 * ROUNDS, "a spurious wake-up per message");
}
