//! The rings and doorbells under the library's own readiness machinery: a non-blocking writer
//! and an epoll reader (edge- and level-triggered) exchange 10^6 length-prefixed messages of
//! random sizes through rings of 8 KiB to 1 MiB; every message is checked, nothing may hang,
//! and the reader's wake-ups that find nothing are bounded.
//!
//! This test binary links the library, so its epoll_ctl/epoll_wait and recv/send are the
//! library's interposed ones, with both ends registered in its descriptor table.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use joyride_fastpath::table;

mod common;

use common::{conn_pair, Rng};

fn connected_pair(capacity: usize) -> (UnixStream, UnixStream) {
    let [(a, conn_a), (b, conn_b)] = conn_pair(capacity);
    conn_a.start_reading();
    conn_b.start_reading();
    assert!(table::insert(a.as_raw_fd(), conn_a));
    assert!(table::insert(b.as_raw_fd(), conn_b));
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

fn message(index: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 1 + (rng.next() % 3000) as usize;
    let mut out = Vec::with_capacity(len + 12);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend((0..len).map(|i| (index as usize).wrapping_mul(31).wrapping_add(i) as u8));
    out
}

fn epoll_for(fd: RawFd, events: u32) -> RawFd {
    // SAFETY: plain epoll calls (the library's interposed ones) on descriptors the test owns.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        assert!(ep >= 0);
        let mut event = libc::epoll_event { events, u64: fd as u64 };
        assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut event), 0);
        ep
    }
}

fn wait(ep: RawFd) -> i32 {
    let mut event = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: one event slot, valid for the call.
    unsafe { libc::epoll_wait(ep, &mut event, 1, 5000) }
}

fn run(capacity: usize, messages: u64, edge: bool) {
    let started = Instant::now();
    let (writer_socket, reader_socket) = connected_pair(capacity);
    let deadline = Instant::now() + Duration::from_secs(120);
    let writer = thread::spawn(move || {
        let fd = writer_socket.as_raw_fd();
        let ep = epoll_for(fd, (libc::EPOLLOUT | libc::EPOLLET) as u32);
        let conn = table::get(fd).unwrap();
        let mut rng = Rng(capacity as u64 | 1);
        for index in 0..messages {
            let bytes = message(index, &mut rng);
            let mut at = 0;
            while at < bytes.len() {
                match conn.send(fd, &[IoSlice::new(&bytes[at..])], 0) {
                    Ok(n) => at += n,
                    Err(libc::EAGAIN) => {
                        assert!(wait(ep) >= 0);
                        assert!(Instant::now() < deadline, "writer stuck at message {index}");
                    }
                    Err(errno) => panic!("send: errno {errno}"),
                }
            }
        }
        writer_socket
    });
    let fd = reader_socket.as_raw_fd();
    let trigger = if edge { libc::EPOLLET as u32 } else { 0 };
    let ep = epoll_for(fd, libc::EPOLLIN as u32 | trigger);
    let conn = table::get(fd).unwrap();
    let mut rng = Rng(capacity as u64 | 1);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    let (mut next, mut empty_wakeups, mut wakeups) = (0u64, 0u64, 0u64);
    while next < messages {
        assert!(Instant::now() < deadline, "reader stuck at message {next}");
        let ready = wait(ep);
        assert!(ready >= 0);
        if ready == 0 {
            continue;
        }
        wakeups += 1;
        let mut got_any = false;
        loop {
            match conn.recv(fd, &mut [IoSliceMut::new(&mut buf)], 0) {
                Ok(0) => panic!("EOF after {next} messages"),
                Ok(n) => {
                    got_any = true;
                    pending.extend_from_slice(&buf[..n]);
                }
                Err(libc::EAGAIN) => break,
                Err(errno) => panic!("recv: errno {errno}"),
            }
            if !edge {
                break;
            }
        }
        empty_wakeups += u64::from(!got_any);
        let mut at = 0;
        while pending.len() - at >= 12 {
            let len = u32::from_le_bytes(pending[at..at + 4].try_into().unwrap()) as usize;
            if pending.len() - at < 12 + len {
                break;
            }
            assert_eq!(&pending[at..at + 12 + len], &message(next, &mut rng)[..], "message {next}");
            at += 12 + len;
            next += 1;
        }
        pending.drain(..at);
    }
    let writer_socket = writer.join().unwrap();
    assert!(
        empty_wakeups * 10 <= wakeups.max(100),
        "{empty_wakeups} of {wakeups} wake-ups found nothing to read"
    );
    table::remove(fd);
    table::remove(writer_socket.as_raw_fd());
    eprintln!(
        "ring {capacity}, edge {edge}: {messages} messages in {:?}, {wakeups} wake-ups, {empty_wakeups} empty",
        started.elapsed()
    );
}

#[test]
fn a_million_messages_edge_triggered_through_a_64_kib_ring() {
    run(64 << 10, 1_000_000, true);
}

#[test]
fn level_and_edge_triggered_through_8_kib_and_1_mib_rings() {
    for capacity in [8 << 10, 1 << 20] {
        for edge in [false, true] {
            run(capacity, 200_000, edge);
        }
    }
}
