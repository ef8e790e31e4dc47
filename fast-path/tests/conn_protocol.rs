//! The fast-path connection protocol between two threads, over a real AF_UNIX socketpair and
//! two real memfd rings: the same objects two programs share, minus the supervisor that hands
//! the rings out.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use joyride_fastpath::conn::Conn;
use sha2::{Digest, Sha256};
use stackd::ring::{Producer, RingRegion, MAX_ANSWER_SPIN};

mod common;

use common::{conn_pair, Rng};

struct Side {
    conn: Arc<Conn>,
    socket: UnixStream,
}

impl Side {
    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
    fn send(&self, bytes: &[u8], flags: i32) -> Result<usize, i32> {
        self.conn.send(self.fd(), &[IoSlice::new(bytes)], flags)
    }
    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<usize, i32> {
        self.conn.recv(self.fd(), &mut [IoSliceMut::new(buf)], flags)
    }
}

/// Two connected sides; neither reads its ring yet (each direction starts plain).
fn pair(capacity: usize) -> (Side, Side) {
    let [(a, conn_a), (b, conn_b)] = conn_pair(capacity);
    (Side { conn: conn_a, socket: a }, Side { conn: conn_b, socket: b })
}

fn stream(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Writes `data` in random pieces; the first `plain_pieces` before the peer may read its ring.
fn write_all(side: &Side, data: &[u8], seed: u64) {
    let mut rng = Rng(seed);
    let mut at = 0;
    while at < data.len() {
        let piece = (1 + rng.below(70_000)).min(data.len() - at);
        let n = side.send(&data[at..at + piece], 0).expect("blocking send");
        assert!(n > 0 && n <= piece);
        at += n;
    }
}

fn read_exactly(side: &Side, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len);
    let mut buf = vec![0u8; 100_000];
    while out.len() < len {
        let want = (1 + rng.below(buf.len() - 1)).min(len - out.len());
        let n = side.recv(&mut buf[..want], 0).expect("blocking recv");
        assert!(n > 0, "EOF after {} of {len} bytes", out.len());
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn both_directions_survive_the_switch_from_socket_to_ring() {
    for (round, capacity) in [8 << 10, 64 << 10, 1 << 20].into_iter().enumerate() {
        let (a, b) = pair(capacity);
        let seed = 7 + round as u64;
        let to_b = stream(seed, 24 << 20);
        let to_a = stream(seed + 100, 12 << 20);
        // Some bytes go through the socket before either side reads a ring.
        a.send(&to_b[..3000], 0).unwrap();
        b.send(&to_a[..5], 0).unwrap();
        let (a, b) = (Arc::new(a), Arc::new(b));
        let threads = [
            {
                let (a, data) = (a.clone(), to_b.clone());
                thread::spawn(move || write_all(&a, &data[3000..], seed))
            },
            {
                let (b, data) = (b.clone(), to_a.clone());
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(5));
                    write_all(&b, &data[5..], seed + 1)
                })
            },
        ];
        let reader_b = {
            let b = b.clone();
            thread::spawn(move || {
                // Read part of the plain prefix before taking the ring.
                let mut head = read_exactly(&b, 1000, seed + 2);
                b.conn.start_reading();
                head.extend(read_exactly(&b, (24 << 20) - 1000, seed + 3));
                head
            })
        };
        a.conn.start_reading();
        let got_a = read_exactly(&a, 12 << 20, seed + 4);
        let got_b = reader_b.join().unwrap();
        for writer in threads {
            writer.join().unwrap();
        }
        assert_eq!(digest(&got_b), digest(&to_b), "a→b stream, ring of {capacity} bytes");
        assert_eq!(digest(&got_a), digest(&to_a), "b→a stream, ring of {capacity} bytes");
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: F_SETFL on a descriptor the test owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) }, 0);
}

fn epoll_readable(fd: RawFd, timeout_ms: i32) -> bool {
    // SAFETY: plain epoll calls on descriptors the test owns; the event buffer is valid.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0 };
        assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev), 0);
        let n = libc::epoll_wait(ep, &mut ev, 1, timeout_ms);
        libc::close(ep);
        n == 1
    }
}

#[test]
fn nonblocking_reader_sees_eagain_and_its_epoll_wakes_on_data() {
    let (a, b) = pair(8 << 10);
    a.conn.start_reading();
    b.conn.start_reading();
    set_nonblocking(b.fd());
    let mut buf = [0u8; 64];
    assert_eq!(b.recv(&mut buf, 0), Err(libc::EAGAIN));
    assert!(!epoll_readable(b.fd(), 0), "readable with nothing sent");
    for round in 0..1000u32 {
        let message = round.to_le_bytes();
        assert_eq!(a.send(&message, 0), Ok(4));
        assert!(epoll_readable(b.fd(), 5000), "no wake-up for message {round}");
        assert_eq!(b.recv(&mut buf, 0), Ok(4));
        assert_eq!(&buf[..4], &message);
        assert_eq!(b.recv(&mut buf, 0), Err(libc::EAGAIN));
        // The doorbell was drained with the EAGAIN: no spurious readiness left behind.
        assert!(!epoll_readable(b.fd(), 0), "still readable after EAGAIN, round {round}");
    }
}

#[test]
fn peek_waitall_and_dontwait() {
    let (a, b) = pair(8 << 10);
    a.conn.start_reading();
    b.conn.start_reading();
    let mut buf = [0u8; 16];
    assert_eq!(b.recv(&mut buf, libc::MSG_DONTWAIT), Err(libc::EAGAIN));
    a.send(b"hello", 0).unwrap();
    assert_eq!(b.recv(&mut buf, libc::MSG_PEEK), Ok(5));
    assert_eq!(b.recv(&mut buf[..2], 0), Ok(2));
    assert_eq!(&buf[..2], b"he");
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        a.send(b" world", 0).unwrap();
        a
    });
    assert_eq!(b.recv(&mut buf[..9], libc::MSG_WAITALL), Ok(9));
    assert_eq!(&buf[..9], b"llo world");
    drop(writer.join().unwrap());
}

/// A blocking reader that sleeps takes the doorbell that wakes it with the wait itself: after
/// each message, no doorbell is left counted or queued on the socket (so nothing polls
/// readable), and every message arrives whole.
#[test]
fn a_sleeping_reader_takes_the_doorbell_that_wakes_it() {
    let (a, b) = pair(8 << 10);
    a.conn.start_reading();
    b.conn.start_reading();
    // Both directions onto their rings first.
    assert_eq!(a.send(b"x", 0), Ok(1));
    assert_eq!(read_exactly(&b, 1, 1), b"x");
    for round in 0..50u64 {
        let message = stream(round, 1 + (round as usize * 37) % 3000);
        let reader = std::thread::spawn({
            let b = Side { conn: b.conn.clone(), socket: b.socket.try_clone().unwrap() };
            let len = message.len();
            move || read_exactly(&b, len, round)
        });
        // Past the reader's spin (20 µs by default), so that it sleeps on the socket.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(a.send(&message, 0), Ok(message.len()));
        assert_eq!(reader.join().unwrap(), message, "round {round}");
        let mut queued: libc::c_int = -1;
        // SAFETY: FIONREAD writes one int.
        assert_eq!(unsafe { libc::ioctl(b.fd(), libc::FIONREAD, &mut queued) }, 0);
        assert_eq!(queued, 0, "round {round}: a doorbell was left on the socket");
        assert!(!epoll_readable(b.fd(), 0), "round {round}: the socket polls readable");
    }
}

/// A library connection that reads its ring as a program does, and the other side as stackd
/// holds it: the writer's socket and the region it writes through a raw producer (the ring
/// back is never written).
fn stackd_like_pair() -> (UnixStream, RingRegion, Side) {
    let (writer_socket, reader_socket) = UnixStream::pair().unwrap();
    let to_reader = RingRegion::create(8 << 10).unwrap();
    let back = RingRegion::create(8 << 10).unwrap();
    let reader_view =
        RingRegion::map(to_reader.fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
    let back_view = RingRegion::map(back.fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
    let reader =
        Side { conn: Arc::new(Conn::new(reader_view, back_view).unwrap()), socket: reader_socket };
    reader.conn.start_reading();
    (writer_socket, to_reader, reader)
}

/// stackd's way of writing: a raw producer whose only wake-up, when the ring is full, is the
/// kernel's write-space edge on its socket (edge-triggered epoll), which comes when the reader
/// takes the doorbell queued for it (`bell_for_space`). The reader is a library connection
/// doing blocking reads that sleep on the socket. Every byte must arrive and the writer must
/// never wait out its timeout (a reader that took the doorbell before emptying the ring
/// without marking a drain once left the writer asleep for good).
#[test]
fn a_writer_woken_only_by_its_sockets_write_space_gets_every_wake_up() {
    let (writer_socket, to_reader, reader) = stackd_like_pair();
    let mut producer = Producer::new(&to_reader).unwrap();
    producer.take_over(0, 0);
    let data = stream(77, 16 << 20);
    let len = data.len();
    let reading = thread::spawn(move || {
        let mut rng = Rng(5);
        let mut out = Vec::with_capacity(len);
        let mut buf = vec![0u8; 20_000];
        while out.len() < len {
            let want = 1 + rng.below(buf.len() - 1);
            let n = reader.recv(&mut buf[..want], 0).expect("blocking recv");
            assert!(n > 0);
            out.extend_from_slice(&buf[..n]);
            if rng.below(64) == 0 {
                thread::sleep(Duration::from_micros(300)); // let the ring fill up
            }
        }
        out
    });
    let fd = writer_socket.as_raw_fd();
    set_nonblocking(fd);
    // SAFETY: plain epoll calls on descriptors the test owns; the event buffer is valid.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let mut ev = libc::epoll_event { events: (libc::EPOLLOUT | libc::EPOLLET) as u32, u64: 0 };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }, 0);
    let ring = |n| {
        // SAFETY: a one-byte send on the test's own socket.
        let sent = unsafe { libc::send(fd, [0u8].as_ptr().cast(), 1, libc::MSG_DONTWAIT) };
        assert_eq!(sent, 1, "doorbell {n}");
    };
    let mut at = 0;
    let mut waits = 0;
    while at < data.len() {
        let n = producer.write(&data[at..]).unwrap();
        at += n;
        if n > 0 && producer.bell_needed().unwrap() {
            ring(at);
        }
        if at < data.len() && producer.free().unwrap() == 0 {
            if producer.bell_for_space() {
                ring(at);
            }
            // SAFETY: as above.
            let woke = unsafe { libc::epoll_wait(ep, &mut ev, 1, 10_000) };
            assert_eq!(woke, 1, "the writer was never woken, {at} of {} bytes written", data.len());
            waits += 1;
        }
    }
    let out = reading.join().unwrap();
    assert!(out == data, "the bytes differ");
    assert!(waits > 0, "the ring never filled: the test did not test the wake-up");
    // SAFETY: closing the test's own epoll descriptor.
    unsafe { libc::close(ep) };
}

/// A library connection to a ring stackd writes for a remote peer, advised to spin `advice`
/// for answers; the ring back is read by a raw consumer, as stackd reads it.
fn relayed_pair(advice: Duration) -> (UnixStream, RingRegion, RingRegion, Side) {
    let (writer_socket, reader_socket) = UnixStream::pair().unwrap();
    let to_reader = RingRegion::create(8 << 10).unwrap();
    to_reader.mark_writer_relays();
    to_reader.set_answer_spin(advice);
    let back = RingRegion::create(8 << 10).unwrap();
    let view = |region: &RingRegion| {
        RingRegion::map(region.fd().unwrap().try_clone_to_owned().unwrap()).unwrap()
    };
    let reader = Side {
        conn: Arc::new(Conn::new(view(&to_reader), view(&back)).unwrap()),
        socket: reader_socket,
    };
    reader.conn.start_reading();
    (writer_socket, to_reader, back, reader)
}

/// On a relayed ring a blocking read spins only while it awaits an answer (it wrote last) and
/// only if stackd advises a time: the writer sees the spin as a read that needs no doorbell.
/// A read with no request before it, or without advice, sleeps on the socket at once and needs
/// the doorbell.
#[test]
fn a_relayed_ring_is_spun_on_only_for_an_answer_and_as_long_as_advised() {
    let cases = [
        ("request sent, advised", true, MAX_ANSWER_SPIN, false),
        ("no request, advised", false, MAX_ANSWER_SPIN, true),
        ("request sent, not advised", true, Duration::ZERO, true),
    ];
    for (case, request, advice, bell_expected) in cases {
        let (writer_socket, to_reader, back, reader) = relayed_pair(advice);
        let from_reader = stackd::ring::Consumer::new(&back).unwrap();
        from_reader.attach();
        let mut producer = Producer::new(&to_reader).unwrap();
        producer.take_over(0, 0);
        let reading = thread::spawn(move || {
            if request {
                assert_eq!(reader.send(b"request", 0), Ok(7));
            }
            read_exactly(&reader, 6, 1)
        });
        // A spinning reader shows its promise in the header (a loaded machine may take a while
        // to get it there), and the answer follows at once, well within the advised 10 ms; one
        // that must not spin is watched for 50 ms on its way to sleep.
        let start = Instant::now();
        if bell_expected {
            while start.elapsed() < Duration::from_millis(50) {
                assert!(!to_reader.spin_promised(), "{case}: the reader spun");
                thread::sleep(Duration::from_millis(1));
            }
        } else {
            while !to_reader.spin_promised() {
                assert!(start.elapsed() < Duration::from_secs(10), "{case}: no spin");
                thread::yield_now();
            }
        }
        assert_eq!(producer.write(b"answer").unwrap(), 6);
        let bell = producer.bell_needed().unwrap();
        if bell {
            let fd = writer_socket.as_raw_fd();
            // SAFETY: a one-byte send on the test's own socket.
            assert_eq!(unsafe { libc::send(fd, [0u8].as_ptr().cast(), 1, 0) }, 1);
        }
        assert_eq!(reading.join().unwrap(), b"answer", "{case}");
        assert_eq!(bell, bell_expected, "{case}: doorbell needed");
        assert_eq!(from_reader.len().unwrap(), if request { 7 } else { 0 }, "{case}");
    }
}

/// A reset that reaches a sleeping reader while the ring still holds bytes (stackd writes what
/// came before a reset, then resets the socket): the bytes first, then ECONNRESET — which the
/// kernel reports only once, so the library must remember it — and end-of-stream after.
#[test]
fn a_reset_comes_after_the_bytes_in_the_ring() {
    let (writer_socket, to_reader, reader) = stackd_like_pair();
    let poke = reader.socket.try_clone().unwrap();
    let mut producer = Producer::new(&to_reader).unwrap();
    producer.take_over(0, 0);
    let reading = thread::spawn(move || {
        let mut buf = [0u8; 64];
        let first = reader.recv(&mut buf, 0).map(|n| buf[..n].to_vec());
        let second = reader.recv(&mut buf, 0);
        let third = reader.recv(&mut buf, 0);
        (first, second, third)
    });
    thread::sleep(Duration::from_millis(50)); // the reader is asleep on its socket by now
                                              // Bytes in the ring with no doorbell (one was outstanding, say), then the reset: the
                                              // writer's end closes with a byte unread.
    assert_eq!(producer.write(b"before the reset").unwrap(), 16);
    // SAFETY: a one-byte send on the test's own socket.
    assert_eq!(unsafe { libc::send(poke.as_raw_fd(), [7u8].as_ptr().cast(), 1, 0) }, 1);
    drop(writer_socket);
    let (first, second, third) = reading.join().unwrap();
    assert_eq!(first, Ok(b"before the reset".to_vec()));
    assert_eq!(second, Err(libc::ECONNRESET));
    assert_eq!(third, Ok(0));
}

#[test]
fn eof_comes_after_the_bytes_in_the_ring() {
    let (a, b) = pair(8 << 10);
    a.conn.start_reading();
    b.conn.start_reading();
    let data = stream(3, 5000);
    assert_eq!(a.send(&data, 0), Ok(5000));
    drop(a);
    assert_eq!(read_exactly(&b, 5000, 9), data);
    let mut buf = [0u8; 8];
    assert_eq!(b.recv(&mut buf, 0), Ok(0));
    assert_eq!(b.recv(&mut buf, 0), Ok(0));
}

#[test]
fn writer_to_a_closed_peer_gets_epipe() {
    let (a, b) = pair(8 << 10);
    a.conn.start_reading();
    b.conn.start_reading();
    drop(b);
    let start = Instant::now();
    let chunk = vec![1u8; 4096];
    let errno = loop {
        match a.send(&chunk, libc::MSG_NOSIGNAL) {
            Ok(n) => assert!(n > 0),
            Err(errno) => break errno,
        }
        assert!(start.elapsed() < Duration::from_secs(5), "writer never noticed the closed peer");
    };
    assert_eq!(errno, libc::EPIPE);
}

#[test]
fn blocking_writer_waits_for_half_the_ring_then_finishes() {
    let (a, b) = pair(8 << 10);
    a.conn.start_reading();
    b.conn.start_reading();
    let data = stream(11, 1 << 20);
    let expected = digest(&data);
    let writer = thread::spawn(move || {
        // One send far larger than the ring: blocks until the reader has taken it all.
        assert_eq!(a.send(&data, 0), Ok(1 << 20));
        a
    });
    let got = read_exactly(&b, 1 << 20, 5);
    let _a = writer.join().unwrap();
    assert_eq!(digest(&got), expected);
}
