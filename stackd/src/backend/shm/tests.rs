//! The wire's rings, doorbells, header checks and side bookkeeping, with both sides in this
//! process (two mappings of one file, as two daemons would have).

use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use super::*;
use crate::backend::sys;

/// A wire name of this test's own under /dev/shm.
fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("jr-test-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A wire of MTU-sized slots (most tests are about the rings, not the slot size).
fn config(name: &str, mtu: usize) -> BackendConfig {
    BackendConfig { mtu, segmentation_offload: false, ..BackendConfig::new(BackendKind::Shm, name) }
}

/// Sides a and b of a new wire with `slots` slots per ring.
fn wire(tag: &str, slots: u32) -> (ShmBackend, ShmBackend) {
    let name = unique_name(tag);
    let a = ShmBackend::open_with(&config(&name, 1500), slots).unwrap();
    let b = ShmBackend::open_with(&config(&name, 1500), slots).unwrap();
    assert_eq!((a.side(), b.side()), (Side::A, Side::B));
    (a, b)
}

/// Sends `frames` (each must fit); returns how many the ring took.
fn send(backend: &mut ShmBackend, frames: &[Vec<u8>]) -> usize {
    let mut out = frames.iter();
    backend
        .transmit(&mut |buf| {
            let frame = out.next()?;
            buf[..frame.len()].copy_from_slice(frame);
            Some(frame.len())
        })
        .unwrap()
}

fn receive_all(backend: &mut ShmBackend, max: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    backend.receive(max, &mut |f| got.push(f.to_vec())).unwrap();
    got
}

fn readable(backend: &ShmBackend, within: Duration) -> bool {
    sys::wait_readable(backend.poll_fd().unwrap(), within).unwrap()
}

fn numbered(n: u32, len: usize) -> Vec<u8> {
    let mut frame = vec![(n % 251) as u8; len];
    frame[..4].copy_from_slice(&n.to_be_bytes());
    frame
}

#[test]
fn frames_cross_both_ways_in_place_and_the_indices_wrap() {
    let (mut a, mut b) = wire("wrap", 8);
    assert_eq!(a.mtu(), 1500);
    assert_ne!(a.mac(), b.mac());
    assert_eq!(a.peer_mac(), Some(b.mac()));
    assert_eq!(b.peer_mac(), Some(a.mac()));
    // 3 frames a round over an 8-slot ring: slot positions wrap every few rounds, and sizes
    // from the smallest to the largest frame.
    let mut n = 0u32;
    for round in 0..100 {
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                n += 1;
                numbered(n, [60, 1514, 4 + round + i][i % 3])
            })
            .collect();
        assert_eq!(send(&mut a, &frames), 3);
        assert_eq!(receive_all(&mut b, 2), frames[..2]);
        assert_eq!(receive_all(&mut b, 64), frames[2..]);
        assert!(receive_all(&mut b, 64).is_empty());
        // And back.
        assert_eq!(send(&mut b, &frames[1..2]), 1);
        assert_eq!(receive_all(&mut a, 64), frames[1..2]);
    }
    let stats = b.stats();
    assert_eq!((stats.rx_frames, stats.tx_frames), (300, 100));
    assert_eq!(a.stats().tx_frames, 300);
    assert_eq!(stats.rx_oversized + stats.rx_ignored + stats.rx_dropped, 0);
}

#[test]
fn a_full_ring_stops_transmit_and_the_consumer_rings_when_it_frees_slots() {
    let (mut a, mut b) = wire("full", 8);
    let mut built = 0u32;
    // Never ending: transmit must stop by itself when the ring is full.
    let accepted = a
        .transmit(&mut |buf| {
            built += 1;
            buf[..64].copy_from_slice(&numbered(built, 64));
            Some(64)
        })
        .unwrap();
    assert_eq!(accepted, 8);
    assert_eq!(built, 8, "no frame was built without a slot for it");
    assert!(a.tx_blocked());
    assert!(!readable(&a, Duration::ZERO), "nothing rang a yet");

    // b takes three: a asked to be told about room, so b rings it.
    let got = receive_all(&mut b, 3);
    assert_eq!(got.len(), 3);
    assert!(readable(&a, Duration::from_secs(2)), "a's doorbell rang when room appeared");
    let more: Vec<Vec<u8>> = (9..20).map(|i| numbered(i, 64)).collect();
    assert_eq!(send(&mut a, &more), 3, "exactly the freed slots");
    assert!(a.tx_blocked());
    let number = |frame: &Vec<u8>| u32::from_be_bytes(frame[..4].try_into().unwrap());
    let mut seq: Vec<u32> = got.iter().map(number).collect();
    let mut rest = &more[3..];
    for _ in 0..4 {
        seq.extend(receive_all(&mut b, 64).iter().map(number));
        let n = send(&mut a, rest);
        rest = &rest[n..];
    }
    assert_eq!(seq, (1..=19).collect::<Vec<_>>(), "in order, none lost");

    // The other order: the consumer frees slots while the producer's flag is down (no ring),
    // and only then does the producer raise it. Its second look finds the room.
    assert_eq!(send(&mut a, &more[..8]), 8);
    assert!(a.tx_blocked());
    while readable(&a, Duration::ZERO) {
        a.drain_bell();
    }
    let waiting = ring_word(Side::A, PRODUCER_WAITING);
    a.word(waiting).store(0, Ordering::Relaxed);
    assert_eq!(receive_all(&mut b, 2).len(), 2);
    assert!(!readable(&a, Duration::ZERO), "no ring without the flag");
    assert!(a.arm_tx(), "the second look sees the room");
    assert_eq!(send(&mut a, &more[..8]), 2);
    assert!(!a.arm_tx(), "a full ring after the flag is set: safe to sleep");
}

#[test]
fn a_sleeping_consumer_is_rung_once_and_a_late_flag_finds_the_frame() {
    let (mut a, mut b) = wire("bell", 8);
    // The consumer finds nothing and says it may sleep; nothing rings yet.
    assert!(receive_all(&mut b, 64).is_empty());
    assert!(!readable(&b, Duration::ZERO));
    // The producer publishes, sees the flag, clears it and rings.
    assert_eq!(send(&mut a, &[numbered(1, 60)]), 1);
    assert!(readable(&b, Duration::from_secs(2)), "the sleeping consumer was rung");
    // One ring per sleep: the flag is down until the consumer sets it again.
    let sleeping = ring_word(Side::A, CONSUMER_SLEEPING);
    assert_eq!(a.word(sleeping).load(Ordering::Relaxed), 0);
    assert_eq!(send(&mut a, &[numbered(2, 60)]), 1);
    assert_eq!(receive_all(&mut b, 64).len(), 2);
    assert!(!readable(&b, Duration::ZERO), "receive drained the doorbell");

    // The other order: the producer publishes while the consumer's flag is down (no ring), and
    // only then does the consumer set its flag. Its second look finds the frame: it must not
    // sleep, and nothing would have woken it.
    b.rx_armed = false;
    b.word(sleeping).store(0, Ordering::Relaxed);
    assert_eq!(send(&mut a, &[numbered(3, 60)]), 1);
    assert!(!readable(&b, Duration::ZERO), "no ring without the flag");
    assert!(b.arm_rx(), "the second look sees the frame");
    assert_eq!(receive_all(&mut b, 64), [numbered(3, 60)]);
    assert!(!b.arm_rx(), "an empty ring after the flag is set: safe to sleep");
}

/// A consumer that busy-polls takes its flag down: the producer does not ring, the frame is
/// seen without a system call, and the next `receive` that finds the ring empty puts the flag
/// back (so the loop may sleep after it). A flag the producer cleared first (it rang) stays
/// the producer's doing: the doorbell is drained by the next `receive`, not left readable.
#[test]
fn a_busy_polling_consumer_is_not_rung_and_asks_again_before_it_sleeps() {
    let (mut a, mut b) = wire("poll", 8);
    let sleeping = ring_word(Side::A, CONSUMER_SLEEPING);
    assert!(receive_all(&mut b, 64).is_empty());
    assert_eq!(b.word(sleeping).load(Ordering::Relaxed), 1, "armed to sleep");
    b.busy_poll_begin();
    assert_eq!(b.word(sleeping).load(Ordering::Relaxed), 0);
    assert!(!b.frames_waiting());
    assert_eq!(send(&mut a, &[numbered(1, 60)]), 1);
    assert!(!readable(&b, Duration::ZERO), "a polling consumer is not rung");
    assert!(b.frames_waiting());
    assert_eq!(receive_all(&mut b, 64), [numbered(1, 60)]);
    assert_eq!(b.word(sleeping).load(Ordering::Relaxed), 1, "asked again once empty");

    // The producer rang before the poll began: its datagram is drained, not left behind.
    assert_eq!(send(&mut a, &[numbered(2, 60)]), 1);
    assert!(readable(&b, Duration::from_secs(2)));
    b.busy_poll_begin();
    assert!(b.frames_waiting());
    assert_eq!(receive_all(&mut b, 64), [numbered(2, 60)]);
    assert!(!readable(&b, Duration::ZERO), "the doorbell was drained");
}

/// Frames one at a time from a producer thread to a consumer that sleeps on its doorbell
/// whenever `receive` comes back empty: a lost wake-up would leave it asleep for the whole
/// (long) poll timeout, so the test counts waits that ran out. The same with a ring of 4 slots
/// and a slow consumer exercises the producer's "waiting for room" wake-up.
#[test]
fn no_wake_up_is_lost_between_two_threads() {
    const FRAMES: u32 = 20_000;
    const STALL: Duration = Duration::from_secs(2);
    let (mut a, mut b) = wire("race", 4);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (sent, stalls_tx) = std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut next = 1u32;
            let mut stalls = 0;
            while next <= FRAMES && Instant::now() < deadline {
                let mut burst = 1 + next % 3;
                a.transmit(&mut |buf| {
                    if burst == 0 || next > FRAMES {
                        return None;
                    }
                    burst -= 1;
                    buf[..60].copy_from_slice(&numbered(next, 60));
                    next += 1;
                    Some(60)
                })
                .unwrap();
                if a.tx_blocked() && !readable(&a, STALL) {
                    stalls += 1;
                }
                if next.is_multiple_of(97) {
                    std::thread::yield_now();
                }
            }
            (next - 1, stalls)
        });
        let mut expected = 1u32;
        let mut stalls_rx = 0;
        while expected <= FRAMES && Instant::now() < deadline {
            let n = b
                .receive(if expected.is_multiple_of(5) { 1 } else { 64 }, &mut |f| {
                    assert_eq!(u32::from_be_bytes(f[..4].try_into().unwrap()), expected);
                    expected += 1;
                })
                .unwrap();
            if n == 0 && !readable(&b, STALL) {
                stalls_rx += 1;
            }
        }
        assert_eq!(expected - 1, FRAMES, "every frame arrived, in order");
        assert_eq!(stalls_rx, 0, "the consumer never slept through a frame");
        producer.join().unwrap()
    });
    assert_eq!(sent, FRAMES);
    assert_eq!(stalls_tx, 0, "the producer never slept through freed room");
}

/// Stop and wait: each side sends only after the other's frame arrived, and sleeps on its
/// doorbell whenever `receive` comes back empty, so every frame is the last one in flight and a
/// single lost wake-up would stall a side for the whole poll timeout.
#[test]
fn no_wake_up_is_lost_in_a_ping_pong() {
    const ROUNDS: u32 = 3000;
    const STALL: Duration = Duration::from_secs(2);
    let (a, b) = wire("pingpong", 8);
    let deadline = Instant::now() + Duration::from_secs(30);
    let bounce = |mut me: ShmBackend, first: bool| {
        move || {
            let mut stalls = 0;
            let (mut sent, mut seen) = (0u32, 0u32);
            let mut turn = first;
            loop {
                if turn && sent < ROUNDS {
                    sent += 1;
                    assert_eq!(send(&mut me, &[numbered(sent, 60)]), 1);
                    turn = false;
                }
                if seen == ROUNDS || Instant::now() > deadline {
                    break;
                }
                let mut got = 0;
                me.receive(64, &mut |f| {
                    assert_eq!(u32::from_be_bytes(f[..4].try_into().unwrap()), seen + 1);
                    got += 1;
                })
                .unwrap();
                if got == 0 {
                    if !readable(&me, STALL) {
                        stalls += 1;
                    }
                    continue;
                }
                seen += got;
                turn = true;
            }
            (seen, stalls)
        }
    };
    let (a_side, b_side) = std::thread::scope(|scope| {
        let a = scope.spawn(bounce(a, true));
        let b = scope.spawn(bounce(b, false));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a_side, (ROUNDS, 0), "a: frames seen, waits that ran out");
    assert_eq!(b_side, (ROUNDS, 0), "b: frames seen, waits that ran out");
}

#[test]
fn garbage_from_the_peer_is_counted_and_dropped() {
    let (mut a, mut b) = wire("garbage", 8);
    let file = std::fs::OpenOptions::new().write(true).open(a.path()).unwrap();
    let ring = a.geometry.ring(Side::A);
    let slot_at = |index: u32| (ring.slots + (index as usize % 8) * ring.slot_size) as u64;
    let frames: Vec<Vec<u8>> = (1..=4).map(|i| numbered(i, 100)).collect();
    assert_eq!(send(&mut a, &frames), 4);
    // The peer's length words are not to be trusted: one far too long, one zero.
    file.write_at(&0xffff_fff0u32.to_le_bytes(), slot_at(1)).unwrap();
    file.write_at(&1515u32.to_le_bytes(), slot_at(2)).unwrap();
    file.write_at(&0u32.to_le_bytes(), slot_at(3)).unwrap();
    assert_eq!(receive_all(&mut b, 64), frames[..1]);
    let stats = b.stats();
    assert_eq!((stats.rx_oversized, stats.rx_ignored, stats.rx_frames), (2, 1, 1));

    // A tail index more than a ring ahead of us: what the ring holds is dropped, once.
    assert_eq!(send(&mut a, &frames[..2]), 2);
    let tail = a.word(ring.tail).load(Ordering::Relaxed);
    file.write_at(&(tail + 1000).to_le_bytes(), ring.tail as u64).unwrap();
    assert!(receive_all(&mut b, 64).is_empty());
    assert_eq!(b.stats().rx_dropped, 1);
    // The producer's next publication puts the true index back; the consumer, now ahead of
    // it, drops once more and resynchronises, and the link carries on.
    a.rings.tx_publish();
    assert!(receive_all(&mut b, 64).is_empty());
    assert_eq!(b.stats().rx_dropped, 2);
    let ok = [numbered(9, 60)];
    assert_eq!(send(&mut a, &ok), 1);
    assert_eq!(receive_all(&mut b, 64), ok);
}

/// A header as the creator writes it, for `geometry`.
fn header(geometry: Geometry) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER_LEN];
    bytes[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(&MAGIC.to_le_bytes());
    bytes[VERSION_AT..VERSION_AT + 4].copy_from_slice(&VERSION.to_le_bytes());
    bytes[MTU_AT..MTU_AT + 4].copy_from_slice(&(geometry.mtu as u32).to_le_bytes());
    bytes[SLOT_SIZE_AT..SLOT_SIZE_AT + 4]
        .copy_from_slice(&(geometry.slot_size as u32).to_le_bytes());
    bytes[SLOT_COUNT_AT..SLOT_COUNT_AT + 4].copy_from_slice(&geometry.slots.to_le_bytes());
    bytes[FILE_LEN_AT..FILE_LEN_AT + 8]
        .copy_from_slice(&(geometry.file_len() as u64).to_le_bytes());
    bytes
}

/// Writes `header` into a file of `len` bytes at the wire `name` (mode `mode`).
fn plant(name: &str, header: &[u8], len: usize, mode: u32) -> PathBuf {
    let path = Path::new(SHM_DIR).join(name);
    let file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&path).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(mode)).unwrap();
    file.set_len(len as u64).unwrap();
    file.write_at(header, 0).unwrap();
    path
}

#[test]
fn a_region_that_does_not_fit_is_refused_and_left_alone() {
    let geometry = Geometry { mtu: 1500, slot_size: slot_size_for(1500), slots: 8 };
    let good = header(geometry);
    let len = geometry.file_len();
    let with = |at: usize, value: &[u8]| {
        let mut bytes = good.clone();
        bytes[at..at + value.len()].copy_from_slice(value);
        bytes
    };
    let too_long = format!(
        "corrupt header: the layout needs {len} bytes, the header says {len}, the file has {}",
        len + 4096
    );
    let old_version = format!("wire layout version 7, this joyride-stackd speaks {VERSION}");
    let cases: Vec<(Vec<u8>, usize, u32, &str)> = vec![
        (vec![0x55; 64], len, 0o600, "not a joyride shm wire (magic 0x5555555555555555)"),
        (with(VERSION_AT, &7u32.to_le_bytes()), len, 0o600, &old_version),
        (
            with(MTU_AT, &20u32.to_le_bytes()),
            len,
            0o600,
            "corrupt header: MTU 20 outside 68..=9000",
        ),
        (
            with(SLOT_SIZE_AT, &64u32.to_le_bytes()),
            len,
            0o600,
            "corrupt header: slot size 64 for MTU 1500",
        ),
        (with(SLOT_COUNT_AT, &6u32.to_le_bytes()), len, 0o600, "corrupt header: 6 slots per ring"),
        (good.clone(), len + 4096, 0o600, &too_long),
        (good.clone(), 100, 0o600, "is 100 bytes, too short for a wire's header"),
        (good.clone(), len, 0o644, "is mode 0644: other users could write into the link"),
    ];
    for (bytes, file_len, mode, expected) in cases {
        let name = unique_name("bad");
        let path = plant(&name, &bytes[..bytes.len().min(file_len)], file_len, mode);
        let error = ShmBackend::open_with(&config(&name, 1500), 8).unwrap_err();
        assert!(matches!(error, OpenError::BadWire { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("shm backend: {}: {expected}", path.display())),
            "{message}\nexpected: {expected}"
        );
        assert!(path.exists(), "a file that is not ours to judge stays");
        std::fs::remove_file(path).unwrap();
    }

    let error = ShmBackend::open_with(&config("a/b", 1500), 8).unwrap_err().to_string();
    assert_eq!(
        error,
        "shm backend: wire \"a/b\": give a name (a file under /dev/shm) or an absolute path"
    );
    let long = format!("/tmp/{}", "x".repeat(100));
    let error = ShmBackend::open_with(&config(&long, 1500), 8).unwrap_err().to_string();
    assert!(error.contains("is too long: its doorbell"), "{error}");
    let error = ShmBackend::open_with(&config("jr-x", 1500), 12).unwrap_err().to_string();
    assert_eq!(error, "shm backend: 12 slots per ring: expected a power of two in 2..=65536");
    let missing_dir = format!("/nonexistent-{}/wire", std::process::id());
    let error = ShmBackend::open_with(&config(&missing_dir, 1500), 8).unwrap_err().to_string();
    assert_eq!(error, format!("shm backend: {missing_dir}: its directory does not exist"));
}

#[test]
fn sides_are_settled_by_locks_and_the_last_one_out_removes_the_region() {
    let name = unique_name("sides");
    let a = ShmBackend::open_with(&config(&name, 1500), 8).unwrap();
    let path = a.path().to_owned();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "region mode");
    assert!(!a.link_up(), "alone: link down");

    // A different MTU is refused while the peer runs.
    let error = ShmBackend::open_with(&config(&name, 9000), 8).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "shm backend: {}: the instance on side a uses MTU 1500, this one 9000: give both \
             the same --mtu",
            path.display()
        )
    );
    let b = ShmBackend::open_with(&config(&name, 1500), 64).unwrap();
    assert_eq!((b.side(), b.slots()), (Side::B, 8), "the attacher takes the creator's geometry");
    assert!(a.link_up() && b.link_up());
    let bell_a = bell_path(&path, Side::A);
    let bell_b = bell_path(&path, Side::B);
    assert!(bell_a.exists() && bell_b.exists());

    // A third is refused.
    let error = ShmBackend::open_with(&config(&name, 1500), 8).unwrap_err().to_string();
    assert!(error.contains("both sides attached"), "{error}");

    // a leaves: b stays, the region stays, a newcomer takes the free side a.
    drop(a);
    assert!(!b.link_up());
    assert!(path.exists() && !bell_a.exists());
    let a2 = ShmBackend::open_with(&config(&name, 1500), 8).unwrap();
    assert_eq!(a2.side(), Side::A);
    assert!(a2.link_up() && b.link_up());
    drop(b);
    assert!(path.exists(), "a2 is still attached");
    drop(a2);
    assert!(!path.exists() && !bell_a.exists() && !bell_b.exists(), "the last one out cleans up");
}

#[test]
fn a_stale_region_is_replaced() {
    // A complete region nobody holds: its owners were killed.
    let name = unique_name("stale");
    let geometry = Geometry { mtu: 9000, slot_size: slot_size_for(9000), slots: 4 };
    let path = plant(&name, &header(geometry), geometry.file_len(), 0o600);
    let old = std::fs::metadata(&path).unwrap().ino();
    let a = ShmBackend::open_with(&config(&name, 1500), 8).unwrap();
    assert_eq!((a.side(), a.mtu(), a.slots()), (Side::A, 1500, 8));
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), old, "a new region");
    drop(a);
    assert!(!path.exists());
}

#[test]
fn frames_wait_for_an_absent_peer_and_a_dead_one_does_not_stall_the_sender() {
    let name = unique_name("absent");
    let mut a = ShmBackend::open_with(&config(&name, 1500), 8).unwrap();
    // No peer yet: frames wait in the ring (the engine's gratuitous ARP reaches a late peer).
    let early: Vec<Vec<u8>> = (1..=3).map(|i| numbered(i, 60)).collect();
    assert_eq!(send(&mut a, &early), 3);
    assert!(!a.tx_blocked());
    let mut b = ShmBackend::open_with(&config(&name, 1500), 8).unwrap();
    assert_eq!(receive_all(&mut b, 64), early);

    // b dies without a word: its attached flag stays, its lock goes (as when it is killed).
    sys::ofd_unlock(b.file.as_fd(), Side::B.lock_byte(), 1).unwrap();
    assert!(!a.link_up());
    let mut built = 0u32;
    let accepted = a
        .transmit(&mut |buf| {
            built += 1;
            (built <= 20).then(|| {
                buf[..60].copy_from_slice(&numbered(built, 60));
                60
            })
        })
        .unwrap();
    assert_eq!(accepted, 20, "the ring's 8 slots, then dropped as on a link without carrier");
    assert!(!a.tx_blocked(), "a dead peer does not block the sender");
    assert_eq!(a.stats().tx_dropped, 12);
    drop(b);
}

#[test]
fn an_offload_wire_carries_whole_64k_packets_and_each_side_chooses_to_send_them() {
    let name = unique_name("offload");
    let offload = BackendConfig { segmentation_offload: true, ..config(&name, 1500) };
    let mut a = ShmBackend::open(&offload).unwrap();
    // The attacher asked for MTU-sized slots and gets the creator's; it receives bursts but,
    // told "off", sends none.
    let mut b = ShmBackend::open(&config(&name, 1500)).unwrap();
    assert_eq!((a.segmentation_offload(), b.segmentation_offload()), (OFFLOAD_PACKET, 0));
    assert_eq!(a.geometry, b.geometry);
    assert_eq!(a.slots(), OFFLOAD_SLOTS);

    let burst = numbered(1, ETHERNET_HEADER + OFFLOAD_PACKET);
    let mut lent = 0;
    let sent = a
        .transmit(&mut |buf| {
            if lent > 0 {
                return None;
            }
            lent = buf.len();
            buf[..burst.len()].copy_from_slice(&burst);
            Some(burst.len())
        })
        .unwrap();
    assert_eq!((sent, lent), (1, ETHERNET_HEADER + OFFLOAD_PACKET));
    assert_eq!(receive_all(&mut b, 8), [burst]);
    let mut lent = 0;
    b.transmit(&mut |buf| {
        lent = buf.len();
        None
    })
    .unwrap();
    assert_eq!(lent, ETHERNET_HEADER + 1500, "b sends MTU frames only");

    // One byte more than a slot's frame is the peer's garbage: counted, not delivered.
    let file = std::fs::OpenOptions::new().write(true).open(a.path()).unwrap();
    let ring = a.geometry.ring(Side::A);
    assert_eq!(send(&mut a, &[numbered(2, 100)]), 1);
    let too_long = (ETHERNET_HEADER + OFFLOAD_PACKET + 1) as u32;
    file.write_at(&too_long.to_le_bytes(), (ring.slots + ring.slot_size) as u64).unwrap();
    assert!(receive_all(&mut b, 8).is_empty());
    assert_eq!(b.stats().rx_oversized, 1);
}

#[test]
fn a_wire_of_mtu_slots_offers_no_offload_even_when_asked() {
    let name = unique_name("no-offload");
    let a = ShmBackend::open(&config(&name, 9000)).unwrap();
    let b = ShmBackend::open(&BackendConfig { segmentation_offload: true, ..config(&name, 9000) })
        .unwrap();
    assert_eq!((a.segmentation_offload(), b.segmentation_offload()), (0, 0));
    assert_eq!(b.geometry.frame_max(), ETHERNET_HEADER + 9000);
}
