//! Two fbsd-tcp stacks on the simulated link (`fbsd_tcp::sim`), in virtual time: bulk transfers
//! through loss, reordering, duplication, jitter, a bandwidth cap, corruption and a path MTU
//! below the stacks' MTU, checked byte for byte (every received byte against the sent pattern,
//! and SHA-256 of both ends), with bounds on the simulated time that tell a working SACK stack
//! from one that waits out a retransmission timeout for every loss.
//!
//! Every run prints its virtual time and goodput (`cargo test --test lossy_link -- --nocapture`)
//! so the bounds can be reviewed against the measurements.

use std::net::{SocketAddr, SocketAddrV4};

use fbsd_tcp::sim::{Bulk, Impairments, Link, Pair, Side};
use fbsd_tcp::socket::tcp::{CongestionAlgorithm, TcpInfo};
use fbsd_tcp::time::{Duration, Instant};
use fbsd_tcp::{AddressFamily, Counters, Errno, SocketType, StackConfig};
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

/// 1 Gbit/s, 5 ms each way.
const BANDWIDTH_BPS: u64 = 1_000_000_000;
const ONE_WAY_DELAY: Duration = Duration::from_millis(5);
const JITTER: Duration = Duration::from_micros(100);

/// Round trip at the base delay plus the mean jitter each way.
fn rtt() -> Duration {
    2 * ONE_WAY_DELAY + JITTER
}

/// Bandwidth-delay product in bytes.
fn bdp() -> usize {
    (BANDWIDTH_BPS as f64 / 8.0 * rtt().as_secs_f64()) as usize
}

/// The realistic WAN link of the loss matrix: 1 Gbit/s with a queue of 1.6 BDP, 5 ms one way
/// with up to 100 µs of jitter, 1 % of frames held back by 30 µs (overtaken by up to two
/// full-size frames, which arrive at least 12 µs apart at this rate: real reordering, short of
/// the three duplicate ACKs that fast retransmit takes for a loss), 0.2 % duplicated, and
/// `loss`.
fn wan(loss: f64) -> Impairments {
    Impairments {
        loss,
        duplicate: 0.002,
        reorder: 0.01,
        reorder_delay: Duration::from_micros(30),
        delay: ONE_WAY_DELAY,
        jitter: JITTER,
        bandwidth_bps: Some(BANDWIDTH_BPS),
        queue_bytes: bdp() * 8 / 5,
        ..Impairments::default()
    }
}

/// A 10 Gbit/s link with a 50 µs one-way delay and the given loss, like a LAN.
fn lan(loss: f64) -> Impairments {
    Impairments {
        loss,
        delay: Duration::from_micros(50),
        bandwidth_bps: Some(10_000_000_000),
        queue_bytes: 8 << 20,
        ..Impairments::default()
    }
}

/// Socket buffers large enough to fill the pipe and its queue.
fn wan_config(side: Side) -> StackConfig {
    let mut config = Pair::config(side);
    config.tcp.send_buffer = 4 * MIB as usize;
    config.tcp.recv_buffer = 4 * MIB as usize;
    config
}

fn pair_with(link: Link, configure: impl Fn(&mut StackConfig)) -> Pair {
    let mut a = wan_config(Side::A);
    let mut b = wan_config(Side::B);
    configure(&mut a);
    configure(&mut b);
    Pair::with_configs(a, b, link)
}

/// One finished bulk transfer.
struct Report {
    from: Side,
    size: u64,
    elapsed: Duration,
    sent_sha: [u8; 32],
    received_sha: [u8; 32],
    info: TcpInfo,
}

impl Report {
    fn goodput_mbps(&self) -> f64 {
        self.size as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Runs `bulks` concurrently to completion (or panics with the reason), checking every byte,
/// and prints a line per transfer.
fn transfer(pair: &mut Pair, bulks: Vec<Bulk>, limit: Duration, label: &str) -> Vec<Report> {
    let mut runs: Vec<(Bulk, Sha256, Sha256)> =
        bulks.into_iter().map(|bulk| (bulk, Sha256::new(), Sha256::new())).collect();
    let wall = std::time::Instant::now();
    let outcome = pair.drive_until(limit, |pair, events| {
        let mut all_done = true;
        for (bulk, sent, received) in &mut runs {
            let from = bulk.from();
            all_done &= bulk.poll(pair, events, &mut |side, bytes: &[u8]| {
                if side == from {
                    sent.update(bytes)
                } else {
                    received.update(bytes)
                }
            });
        }
        all_done
    });
    let wall = wall.elapsed();
    let progress: Vec<String> = runs
        .iter()
        .map(|(bulk, _, _)| format!("{:?}→ {}/{} bytes", bulk.from(), bulk.received(), bulk.size()))
        .collect();
    if let Err(error) = outcome {
        panic!("{label}: {error}; {}", progress.join(", "));
    }
    let mut reports = Vec::new();
    for (bulk, sent, received) in runs {
        assert_eq!(bulk.error(), None, "{label}: transfer from {:?} failed", bulk.from());
        assert_eq!(bulk.first_mismatch(), None, "{label}: corrupted stream from {:?}", bulk.from());
        assert_eq!(bulk.received(), bulk.size(), "{label}: short stream from {:?}", bulk.from());
        let report = Report {
            from: bulk.from(),
            size: bulk.size(),
            elapsed: bulk.elapsed().expect("finished"),
            sent_sha: sent.finalize().into(),
            received_sha: received.finalize().into(),
            info: bulk.sender_info().expect("sender closed").clone(),
        };
        assert_eq!(report.sent_sha, report.received_sha, "{label}: SHA-256 differs");
        println!(
            "{label}: {:?}→ {} MiB in {:.3} s virtual ({:.1} Mbit/s), {} retransmits, \
             {} fast recoveries, {} RTOs, sha256 {}…; {} steps, {:.2} s wall",
            report.from,
            report.size / MIB,
            report.elapsed.as_secs_f64(),
            report.goodput_mbps(),
            report.info.total_retrans,
            report.info.fast_recoveries,
            report.info.timeouts,
            hex(&report.sent_sha[..6]),
            pair.steps(),
            wall.as_secs_f64(),
        );
        reports.push(report);
    }
    reports
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_link(pair: &Pair, label: &str) {
    for side in [Side::A, Side::B] {
        println!("{label}: link {side:?}→ {:?}", pair.link().counters(side));
    }
}

mod loss_matrix {
    //! 64 MiB each way at once on one pair (one connection per direction, so data and ACKs
    //! share both queues) through the WAN link at 0, 1, 5 and 10 % loss.
    //!
    //! The bound on simulated time, per direction:
    //! - a loss-limited Reno-style flow (CUBIC is Reno-friendly at a 10 ms RTT) reaches the
    //!   Mathis et al. rate MSS/RTT × √(3/2)/√p; the transfer takes the longer of that and the
    //!   line-rate time; we allow 1.5 times it;
    //! - a retransmission is itself lost with probability p. RACK (RFC 8985) detects most of
    //!   those, but not when nothing sent after it is acknowledged (a small window, a lost tail
    //!   probe): the bound still allows for an RTO on each, p² of all segments, each waiting at
    //!   least the 200 ms minimum RTO, three times over (the backoff when the retransmission
    //!   after the timeout is lost too, and the restart from one segment);
    //! - plus 5 s for the handshake, slow start and the tail.
    //!
    //! A stack that stalled on an RTO for every loss would need at least p × segments × 200 ms;
    //! the test checks that the bound stays below that, so it keeps telling the two apart if
    //! the configuration changes.

    use super::*;

    const SIZE: u64 = 64 * MIB;
    const MIN_RTO_SECS: f64 = 0.2;

    fn run(loss: f64, seed: u64) {
        let label = format!("loss {:.0}%", loss * 100.0);
        let link = Link::symmetric(seed, wan(loss)).unwrap();
        let mut pair = pair_with(link, |_| {});
        let mss = 1500.0 - 40.0 - 12.0; // timestamps on
        let segments = SIZE as f64 / mss;
        let line_time = SIZE as f64 * 8.0 / BANDWIDTH_BPS as f64;
        let mathis_time = if loss > 0.0 {
            let mathis_bps = mss * 8.0 / rtt().as_secs_f64() * (1.5f64).sqrt() / loss.sqrt();
            SIZE as f64 * 8.0 / mathis_bps
        } else {
            0.0
        };
        let lost_retransmission_time = segments * loss * loss * MIN_RTO_SECS;
        let bound = 1.5 * line_time.max(mathis_time) + 3.0 * lost_retransmission_time + 5.0;
        let rto_per_loss = segments * loss * MIN_RTO_SECS;
        println!(
            "{label}: bound {bound:.1} s virtual (line rate {line_time:.2} s, Mathis \
             {mathis_time:.1} s, lost retransmissions {lost_retransmission_time:.1} s); an RTO \
             per loss would need {rto_per_loss:.0} s"
        );
        if loss > 0.0 {
            assert!(bound < rto_per_loss, "the bound no longer tells SACK from RTO stalls");
        }
        let bulks =
            vec![Bulk::new(Side::A, 5001, SIZE, seed), Bulk::new(Side::B, 5002, SIZE, !seed)];
        let reports = transfer(&mut pair, bulks, Duration::from_secs(3600), &label);
        print_link(&pair, &label);
        for report in &reports {
            let elapsed = report.elapsed.as_secs_f64();
            assert!(
                elapsed < bound,
                "{label}: {:?}→ took {elapsed:.1} s > {bound:.1} s",
                report.from
            );
            assert!(elapsed > line_time, "{label}: faster than the wire");
        }
        let counters = pair.link().counters(Side::A);
        assert!(counters.reordered > 0 && counters.duplicated > 0);
        if loss > 0.0 {
            assert!(reports.iter().all(|r| r.info.total_retrans > 0));
        }
    }

    #[test]
    fn no_loss() {
        run(0.0, 1);
    }

    #[test]
    fn one_percent_loss() {
        run(0.01, 2);
    }

    #[test]
    fn five_percent_loss() {
        run(0.05, 3);
    }

    #[test]
    fn ten_percent_loss() {
        run(0.10, 4);
    }
}

mod congestion_control {
    //! The algorithms and loss-recovery modes each carry a transfer through 1 % loss.

    use super::*;

    const SIZE: u64 = 16 * MIB;

    fn run(label: &str, configure: impl Fn(&mut StackConfig)) -> Vec<Report> {
        let link = Link::symmetric(11, wan(0.01)).unwrap();
        let mut pair = pair_with(link, configure);
        let bulks = vec![Bulk::new(Side::A, 5001, SIZE, 1), Bulk::new(Side::B, 5002, SIZE, 2)];
        transfer(&mut pair, bulks, Duration::from_secs(600), label)
    }

    #[test]
    fn newreno_and_cubic_both_complete() {
        let newreno = run("newreno", |config| config.tcp.congestion = CongestionAlgorithm::NewReno);
        let cubic = run("cubic", |config| config.tcp.congestion = CongestionAlgorithm::Cubic);
        assert!(newreno.iter().all(|r| r.info.congestion == "reno"));
        assert!(cubic.iter().all(|r| r.info.congestion == "cubic"));
    }

    #[test]
    fn without_sack_recovery_still_completes() {
        let reports = run("sack off", |config| config.tcp.sack = false);
        assert!(reports.iter().all(|r| !r.info.sack && r.info.total_retrans > 0));
    }
}

mod corruption {
    use super::*;

    /// Every drop a flipped bit can cause at a receiving stack.
    fn corruption_drops(c: &Counters) -> u64 {
        c.eth_dropped
            + c.eth_unknown_type
            + c.ip_malformed
            + c.ip_checksum_errors
            + c.ip_not_for_us
            + c.ip_unknown_protocol
            + c.ip_reassembly_failures
            + c.icmp_dropped
            + c.udp_checksum_errors
            + c.udp_malformed
            + c.tcp_checksum_errors
            + c.tcp_malformed
    }

    #[test]
    fn checksums_catch_every_flipped_bit() {
        let impairments = Impairments { corrupt: 0.01, ..wan(0.0) };
        let link = Link::symmetric(21, impairments).unwrap();
        let mut pair = pair_with(link, |_| {});
        let bulks =
            vec![Bulk::new(Side::A, 5001, 16 * MIB, 1), Bulk::new(Side::B, 5002, 16 * MIB, 2)];
        transfer(&mut pair, bulks, Duration::from_secs(600), "corruption");
        print_link(&pair, "corruption");
        for side in [Side::A, Side::B] {
            let link = pair.link().counters(side.peer());
            let counters = pair.stack(side).counters();
            println!("corruption: stack {side:?} {counters:?}");
            assert!(counters.tcp_checksum_errors > 0, "payload flips are the most likely");
            assert_eq!(
                corruption_drops(&counters),
                link.corrupted - link.corrupted_unchecked,
                "side {side:?}: every checked flip is one counted drop"
            );
        }
    }
}

mod path_mtu {
    use super::*;

    const PATH_MTU: usize = 1280;

    fn narrow_path() -> Link {
        let impairments = Impairments { path_mtu: Some(PATH_MTU), ..wan(0.0) };
        Link::symmetric(31, impairments).unwrap()
    }

    #[test]
    fn tcp_lowers_its_mss_on_fragmentation_needed() {
        let mut pair = pair_with(narrow_path(), |_| {});
        let bulks =
            vec![Bulk::new(Side::A, 5001, 8 * MIB, 1), Bulk::new(Side::B, 5002, 8 * MIB, 2)];
        let reports = transfer(&mut pair, bulks, Duration::from_secs(60), "path MTU");
        print_link(&pair, "path MTU");
        for report in &reports {
            // IP and TCP headers, and the 12 bytes of the timestamp option on every segment.
            assert_eq!(report.info.snd_mss, PATH_MTU - 40 - 12);
            let link = pair.link().counters(report.from);
            assert!(link.frag_needed_sent > 0);
            assert_eq!(link.fragmented, 0, "TCP sets DF");
        }
        // Each side learns once per connection, then stays within the path MTU; a few more
        // full-size segments may have been in flight when the first ICMP arrived.
        for side in [Side::A, Side::B] {
            assert!(pair.stack(side).counters().icmp_rx > 0);
        }
    }

    #[test]
    fn udp_datagrams_beyond_it_arrive_fragmented_and_reassembled() {
        let mut pair = pair_with(narrow_path(), |_| {});
        let addr_b = SocketAddr::V4(SocketAddrV4::new(Pair::addr(Side::B), 7000));
        let sender =
            pair.stack_mut(Side::A).socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
        let receiver =
            pair.stack_mut(Side::B).socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
        pair.stack_mut(Side::B).bind(receiver, addr_b).unwrap();
        // Fits the path; fits the stack but not the path (the router fragments); needs the
        // stack to fragment and the router to fragment the fragments.
        let sizes = [1000, PATH_MTU - 28, PATH_MTU - 27, 1472, 4000, 20_000];
        let datagrams: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|j| (j * 7 + i) as u8).collect())
            .collect();
        let mut next = 0;
        let mut received = Vec::new();
        let mut buf = vec![0u8; 65536];
        pair.drive_until(Duration::from_secs(5), |pair, _events| {
            // One datagram per turn, so ARP resolution holds at most one.
            if next < datagrams.len() {
                pair.stack_mut(Side::A).send_to(sender, &datagrams[next], Some(addr_b)).unwrap();
                next += 1;
            }
            loop {
                match pair.stack_mut(Side::B).recv_from(receiver, &mut buf) {
                    Ok((len, full, from)) => {
                        assert_eq!(len, full);
                        assert_eq!(
                            from,
                            SocketAddr::V4(SocketAddrV4::new(Pair::addr(Side::A), from.port()))
                        );
                        received.push(buf[..len].to_vec());
                    }
                    Err(Errno::WouldBlock) => break,
                    Err(errno) => panic!("recv_from: {errno}"),
                }
            }
            if received.len() < datagrams.len() {
                pair.wake_at(pair.now() + Duration::from_millis(1));
            }
            received.len() == datagrams.len()
        })
        .unwrap();
        assert_eq!(received, datagrams);
        print_link(&pair, "UDP path MTU");
        let link = pair.link().counters(Side::A);
        // Packets beyond 1280 bytes: one each for 1253 and 1472 bytes of payload; the stack's
        // 1480-byte fragments of the 4000-byte datagram (2 of 3) and of the 20000-byte one
        // (13 of 14).
        assert_eq!(link.fragmented, 1 + 1 + 2 + 13);
        assert_eq!(link.frag_needed_sent, 0, "UDP does not set DF");
        assert_eq!(pair.stack(Side::B).counters().ip_reassembled, 4);
    }
}

mod udp {
    use super::*;

    #[test]
    fn echo_exchange_over_a_lossy_link() {
        let link = Link::symmetric(41, wan(0.05)).unwrap();
        let mut pair = pair_with(link, |_| {});
        let server_addr = SocketAddr::V4(SocketAddrV4::new(Pair::addr(Side::B), 7));
        let client =
            pair.stack_mut(Side::A).socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
        let server =
            pair.stack_mut(Side::B).socket(AddressFamily::Inet, SocketType::Datagram).unwrap();
        pair.stack_mut(Side::B).bind(server, server_addr).unwrap();
        pair.stack_mut(Side::A).connect(Instant::ZERO, client, server_addr).unwrap();
        const REQUESTS: u32 = 2000;
        let mut sent = 0u32;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 2048];
        let mut next_send = Instant::ZERO;
        pair.drive_until(Duration::from_secs(30), |pair, _events| {
            let now = pair.now();
            if sent < REQUESTS && now >= next_send {
                let len = 4 + (sent as usize * 13) % 1400;
                let mut request = vec![(sent % 251) as u8; len];
                request[..4].copy_from_slice(&sent.to_be_bytes());
                pair.stack_mut(Side::A).send(client, &request).unwrap();
                sent += 1;
                next_send = now + Duration::from_micros(200);
            }
            while let Ok((len, _, from)) = pair.stack_mut(Side::B).recv_from(server, &mut buf) {
                pair.stack_mut(Side::B).send_to(server, &buf[..len], Some(from)).unwrap();
            }
            while let Ok(len) = pair.stack_mut(Side::A).recv(client, &mut buf) {
                let number = u32::from_be_bytes(buf[..4].try_into().unwrap());
                let expected_len = 4 + (number as usize * 13) % 1400;
                assert_eq!(len, expected_len);
                assert!(buf[4..len].iter().all(|&b| b == (number % 251) as u8));
                replies.push(number);
            }
            if sent < REQUESTS {
                pair.wake_at(next_send);
                false
            } else {
                // Done once everything still in flight had time to come back.
                pair.wake_at(next_send + Duration::from_millis(50));
                now >= next_send + Duration::from_millis(50)
            }
        })
        .unwrap();
        let link_ab = pair.link().counters(Side::A).clone();
        let link_ba = pair.link().counters(Side::B).clone();
        print_link(&pair, "UDP echo");
        // A request comes back unless it or its reply was lost (ARP frames share the link's
        // fate, hence the slack); duplicates on the way out or back are delivered as such.
        let lost = link_ab.lost + link_ba.lost;
        let duplicated = link_ab.duplicated + link_ba.duplicated;
        let expected = u64::from(REQUESTS) - lost;
        let got = replies.len() as u64;
        assert!(
            got + 4 >= expected && got <= expected + 2 * duplicated + 4,
            "{got} replies, {lost} frames lost, {duplicated} duplicated"
        );
        assert!(got > u64::from(REQUESTS) * 85 / 100);
        replies.sort_unstable();
        replies.dedup();
        assert!(replies.iter().all(|&n| n < REQUESTS));
    }
}

mod determinism {
    use super::*;

    /// A short lossy run's finish time and everything the link and stacks counted.
    fn run(seed: u64) -> (Vec<Instant>, String) {
        let link = Link::symmetric(seed, wan(0.05)).unwrap();
        let mut pair = pair_with(link, |_| {});
        let bulks =
            vec![Bulk::new(Side::A, 5001, 2 * MIB, 1), Bulk::new(Side::B, 5002, 2 * MIB, 2)];
        let mut runs = bulks;
        let finished = pair
            .drive_until(Duration::from_secs(600), |pair, events| {
                let mut done = true;
                for bulk in &mut runs {
                    done &= bulk.poll(pair, events, &mut |_, _| {});
                }
                done
            })
            .unwrap();
        let mut finishes: Vec<Instant> = runs.iter().map(|b| b.finished_at().unwrap()).collect();
        finishes.push(finished);
        let fingerprint = format!(
            "{:?} {:?} {:?} {:?} {}",
            pair.link().counters(Side::A),
            pair.link().counters(Side::B),
            pair.stack(Side::A).counters(),
            pair.stack(Side::B).counters(),
            pair.steps()
        );
        (finishes, fingerprint)
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let first = run(51);
        println!("determinism: seed 51 finished at {:?}", first.0);
        assert_eq!(first, run(51));
        assert_ne!(first.0, run(52).0, "a different seed should change the losses");
    }
}

mod segmentation_offload {
    //! A link that takes TCP segments beyond its MTU whole (`StackConfig::segmentation_offload`,
    //! what the shared-memory wire between two joyride-stackd instances does): new data leaves
    //! in bursts of whole segments, and everything the stack does per segment — loss recovery,
    //! ACK clocking, a receiver that does not offload — still holds.

    use super::*;

    const SIZE: u64 = 16 * MIB;
    /// The largest IPv4 packet a burst may make, as on the shared-memory wire.
    const OFFLOAD: usize = 65535;
    /// SMSS at MTU 1500 with timestamps.
    const SMSS: u64 = 1448;

    fn offload(config: &mut StackConfig) {
        config.segmentation_offload = OFFLOAD;
    }

    fn both_ways(pair: &mut Pair, label: &str) -> Vec<Report> {
        let bulks = vec![Bulk::new(Side::A, 5001, SIZE, 1), Bulk::new(Side::B, 5002, SIZE, 2)];
        let reports = transfer(pair, bulks, Duration::from_secs(600), label);
        print_link(pair, label);
        reports
    }

    #[test]
    fn bursts_carry_the_stream_in_a_fraction_of_the_frames() {
        let mut plain = pair_with(Link::symmetric(21, lan(0.0)).unwrap(), |_| {});
        both_ways(&mut plain, "offload off");
        let mut bursts = pair_with(Link::symmetric(21, lan(0.0)).unwrap(), offload);
        both_ways(&mut bursts, "offload on");
        for side in [Side::A, Side::B] {
            let without = plain.link().counters(side);
            let with = bursts.link().counters(side);
            // Without offload, at least one frame per SMSS each way carries the data.
            assert!(without.frames_sent >= SIZE / SMSS, "{side:?}: {without:?}");
            // With it, frames average well over ten segments each (data and ACKs both ways
            // counted), and no byte more crossed than the headers saved allow.
            assert!(with.frames_sent * 10 < SIZE / SMSS, "{side:?}: {with:?}");
            assert!(with.bytes_sent < without.bytes_sent, "{side:?}: {with:?} {without:?}");
            assert!(with.bytes_sent > SIZE, "{side:?}: {with:?}");
        }
    }

    #[test]
    fn bursts_recover_from_loss_one_segment_at_a_time() {
        let mut pair = pair_with(Link::symmetric(22, lan(0.01)).unwrap(), offload);
        let reports = both_ways(&mut pair, "offload on, 1% loss");
        for report in &reports {
            assert!(report.info.total_retrans > 0, "{:?}→ lost nothing?", report.from);
            // A lost burst of up to 45 segments comes back as one retransmission per SMSS
            // (RFC 6675 NextSeg), never as a burst.
            assert!(report.info.total_retrans < 45 * 2 * pair.link().counters(report.from).lost);
        }
        for side in [Side::A, Side::B] {
            assert!(pair.link().counters(side).lost > 0);
        }
    }

    #[test]
    fn a_receiver_without_offload_takes_bursts_and_sends_plain_segments() {
        let one_way = |from: Side, label: &str| {
            let mut a = wan_config(Side::A);
            offload(&mut a);
            let link = Link::symmetric(23, lan(0.0)).unwrap();
            let mut pair = Pair::with_configs(a, wan_config(Side::B), link);
            transfer(
                &mut pair,
                vec![Bulk::new(from, 5001, SIZE, 3)],
                Duration::from_secs(60),
                label,
            );
            print_link(&pair, label);
            pair.link().counters(from).frames_sent
        };
        let bursts = one_way(Side::A, "offload on A only, A→B");
        assert!(bursts * 10 < SIZE / SMSS, "A sent {bursts} frames");
        let plain = one_way(Side::B, "offload on A only, B→A");
        assert!(plain >= SIZE / SMSS, "B sent {plain} frames");
    }

    #[test]
    fn an_offload_beyond_what_ipv4_holds_is_refused() {
        let mut config = Pair::config(Side::A);
        config.segmentation_offload = 65536;
        let error = config.validate().unwrap_err();
        assert!(error.contains("65535"), "{error}");
    }
}

mod lent_send_source {
    //! A connection whose outgoing bytes live in a buffer the application lends the engine
    //! (`Stack::lend_send_source`), as joyride-stackd lends a program's shared-memory ring: the
    //! engine copies them straight into segments, retransmissions included, and gives each
    //! back once acknowledged. Through loss, with and without segmentation offload.

    use std::sync::{Arc, Mutex};

    use fbsd_tcp::sim::Pattern;
    use fbsd_tcp::storage::SendSource;

    use super::*;

    const SIZE: u64 = 16 * MIB;
    /// What the application's buffer holds: bytes lent and not yet released.
    const CAPACITY: u64 = MIB;
    const PATTERN: Pattern = Pattern::new(77);

    /// The application's side of the buffer, shared with the source the engine holds.
    #[derive(Debug, Default, Clone)]
    struct Shared {
        /// Stream offset of the oldest byte not released.
        released: u64,
        /// Bytes announced to the engine (`send_lent`) so far.
        lent: u64,
        /// Reads beyond what was announced, or of released bytes: must stay 0.
        bad_reads: u64,
        /// Bytes copied out, retransmissions included.
        copied: u64,
    }

    #[derive(Debug)]
    struct PatternSource(Arc<Mutex<Shared>>);

    impl SendSource for PatternSource {
        fn copy_out(&mut self, offset: usize, into: &mut [u8]) {
            let mut shared = self.0.lock().unwrap();
            let at = shared.released + offset as u64;
            if at + into.len() as u64 > shared.lent {
                shared.bad_reads += 1;
            }
            shared.copied += into.len() as u64;
            PATTERN.fill(at, into);
        }

        fn release(&mut self, n: usize) {
            let mut shared = self.0.lock().unwrap();
            shared.released += n as u64;
            if shared.released > shared.lent {
                shared.bad_reads += 1;
            }
        }
    }

    fn run(loss: f64, offload: bool, label: &str) -> (Shared, u64) {
        let link = Link::symmetric(31, lan(loss)).unwrap();
        let mut pair = pair_with(link, |config| {
            if offload {
                config.segmentation_offload = 65535;
            }
        });
        let addr = SocketAddr::V4(SocketAddrV4::new(Pair::addr(Side::B), 5001));
        let now = pair.now();
        let b = pair.stack_mut(Side::B);
        let listener = b.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
        b.bind(listener, addr).unwrap();
        b.listen(listener, 1).unwrap();
        let a = pair.stack_mut(Side::A);
        let sender = a.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
        assert_eq!(a.connect(now, sender, addr), Err(Errno::InProgress));
        // Bytes the application copied in before it lent its buffer go first.
        let head = vec![0u8; 1000];
        assert_eq!(a.send_lent(sender, 1), Err(Errno::InvalidArgument), "nothing lent yet");
        let mut first = head.clone();
        PATTERN.fill(0, &mut first);
        assert_eq!(a.send(sender, &first), Ok(1000));
        let shared =
            Arc::new(Mutex::new(Shared { released: 1000, lent: 1000, ..Shared::default() }));
        a.lend_send_source(sender, Box::new(PatternSource(shared.clone()))).unwrap();
        assert_eq!(a.send(sender, &head), Err(Errno::InvalidArgument), "copies would overtake");
        assert!(a.lend_send_source(sender, Box::new(PatternSource(shared.clone()))).is_err());

        let (mut receiver, mut received, mut shut, mut max_held) = (None, 0u64, false, 0u64);
        let mut buf = vec![0u8; 256 << 10];
        let outcome = pair.drive_until(Duration::from_secs(60), |pair, _events| {
            let now = pair.now();
            let a = pair.stack_mut(Side::A);
            {
                let mut state = shared.lock().unwrap();
                let held = state.lent - state.released;
                max_held = max_held.max(held);
                let n = (CAPACITY - held).min(SIZE - state.lent).min(200_000) as usize;
                if n > 0 {
                    state.lent += a.send_lent(sender, n).unwrap() as u64;
                }
                if state.lent == SIZE && !shut {
                    a.shutdown(now, sender, fbsd_tcp::Shutdown::Write).unwrap();
                    shut = true;
                }
            }
            let b = pair.stack_mut(Side::B);
            if receiver.is_none() {
                receiver = b.accept(listener).ok().map(|(conn, _)| conn);
            }
            let Some(conn) = receiver else { return false };
            loop {
                match b.recv(conn, &mut buf) {
                    Ok(0) => return true,
                    Ok(n) => {
                        assert_eq!(PATTERN.find_mismatch(received, &buf[..n]), None, "{label}");
                        received += n as u64;
                    }
                    Err(Errno::WouldBlock) => return false,
                    Err(e) => panic!("{label}: recv: {e}"),
                }
            }
        });
        outcome.unwrap_or_else(|e| panic!("{label}: {e}; {received} of {SIZE} bytes"));
        print_link(&pair, label);
        assert_eq!(received, SIZE, "{label}");
        // Let the last ACK reach the sender.
        pair.drive_until(Duration::from_secs(1), |pair, _| {
            pair.stack(Side::A).tcp_info(sender).is_ok_and(|info| info.unacked == 0)
        })
        .unwrap();
        let lost = pair.link().counters(Side::A).lost;
        let state = shared.lock().unwrap().clone();
        assert!(max_held <= CAPACITY);
        (state, lost)
    }

    #[test]
    fn the_engine_sends_from_the_lent_buffer_and_releases_what_is_acknowledged() {
        for (loss, offload) in [(0.0, false), (0.01, false), (0.01, true)] {
            let label = format!("lent source, loss {loss}, offload {offload}");
            let (state, lost) = run(loss, offload, &label);
            println!("{label}: {state:?}, {lost} frames lost");
            assert_eq!(state.bad_reads, 0, "{label}");
            assert_eq!((state.lent, state.released), (SIZE, SIZE), "{label}: all given back");
            let lent_bytes = SIZE - 1000;
            if loss == 0.0 {
                assert_eq!(state.copied, lent_bytes, "{label}: each byte copied once");
            } else {
                assert!(lost > 0 && state.copied > lent_bytes, "{label}: resent from the source");
            }
        }
    }
}

mod lent_recv_sink {
    //! A connection that puts in-order payload straight into a buffer the application lends
    //! (`Stack::lend_recv_sink`), as joyride-stackd lends a program's shared-memory ring, while
    //! its own receive buffer holds nothing: the application drains the receive buffer into the
    //! same place, and the stream must come out whole and in order whichever way each segment
    //! took, through loss and a reader slower than the link.

    use std::sync::{Arc, Mutex};

    use fbsd_tcp::sim::Pattern;
    use fbsd_tcp::storage::RecvSink;

    use super::*;

    const SIZE: u64 = 16 * MIB;
    const PATTERN: Pattern = Pattern::new(78);
    /// What the application's buffer holds before it must read.
    const CAPACITY: usize = 256 << 10;

    /// The application's buffer: what arrived (whichever way) and has not been read yet.
    #[derive(Debug, Default)]
    struct Shared {
        held: Vec<u8>,
        direct: u64,
    }

    #[derive(Debug)]
    struct VecSink(Arc<Mutex<Shared>>);

    impl RecvSink for VecSink {
        fn room(&self) -> usize {
            CAPACITY - self.0.lock().unwrap().held.len()
        }

        fn deliver(&mut self, data: &[u8]) {
            let mut shared = self.0.lock().unwrap();
            assert!(shared.held.len() + data.len() <= CAPACITY, "beyond the room it had");
            shared.held.extend_from_slice(data);
            shared.direct += data.len() as u64;
        }
    }

    fn run(loss: f64, label: &str) -> (u64, u64) {
        let link = Link::symmetric(41, lan(loss)).unwrap();
        let mut pair = pair_with(link, |_| {});
        let addr = SocketAddr::V4(SocketAddrV4::new(Pair::addr(Side::B), 5001));
        let b = pair.stack_mut(Side::B);
        let listener = b.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
        b.bind(listener, addr).unwrap();
        b.listen(listener, 1).unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let now = pair.now();
        let a = pair.stack_mut(Side::A);
        let sender = a.socket(AddressFamily::Inet, SocketType::Stream).unwrap();
        assert_eq!(a.connect(now, sender, addr), Err(Errno::InProgress));

        let (mut receiver, mut sent, mut read, mut shut, mut turns) =
            (None, 0u64, 0u64, false, 0u64);
        let mut chunk = vec![0u8; 64 << 10];
        let outcome = pair.drive_until(Duration::from_secs(60), |pair, _| {
            turns += 1;
            let now = pair.now();
            let a = pair.stack_mut(Side::A);
            while sent < SIZE {
                let n = (SIZE - sent).min(chunk.len() as u64) as usize;
                PATTERN.fill(sent, &mut chunk[..n]);
                match a.send(sender, &chunk[..n]) {
                    Ok(n) => sent += n as u64,
                    Err(Errno::WouldBlock | Errno::NotConnected) => break,
                    Err(e) => panic!("{label}: send: {e}"),
                }
            }
            if sent == SIZE && !shut && a.shutdown(now, sender, fbsd_tcp::Shutdown::Write).is_ok() {
                shut = true;
            }
            let b = pair.stack_mut(Side::B);
            if receiver.is_none() {
                if let Ok((conn, _)) = b.accept(listener) {
                    b.lend_recv_sink(conn, Box::new(VecSink(shared.clone()))).unwrap();
                    assert!(b.lend_recv_sink(conn, Box::new(VecSink(shared.clone()))).is_err());
                    receiver = Some(conn);
                }
            }
            let Some(conn) = receiver else { return false };
            // The application: drains the receive buffer into its own buffer behind what the
            // engine put there, then reads that, but only every third turn (a slow reader, so
            // that segments also take the receive buffer's way).
            let mut shared = shared.lock().unwrap();
            let mut ended = false;
            loop {
                let room = CAPACITY - shared.held.len();
                if room == 0 {
                    break;
                }
                match b.recv_with(conn, |first, second| {
                    let a = first.len().min(room);
                    shared.held.extend_from_slice(&first[..a]);
                    let b = second.len().min(room - a);
                    shared.held.extend_from_slice(&second[..b]);
                    a + b
                }) {
                    Ok(0) => {
                        ended = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(Errno::WouldBlock) => break,
                    Err(e) => panic!("{label}: recv: {e}"),
                }
            }
            if turns % 3 == 0 || ended {
                let held = std::mem::take(&mut shared.held);
                assert_eq!(PATTERN.find_mismatch(read, &held), None, "{label}: out of order");
                read += held.len() as u64;
            }
            ended && shared.held.is_empty()
        });
        outcome.unwrap_or_else(|e| panic!("{label}: {e}; {read} of {SIZE} bytes"));
        print_link(&pair, label);
        let direct = shared.lock().unwrap().direct;
        (read, direct)
    }

    #[test]
    fn in_order_payload_goes_straight_to_the_sink_and_the_stream_stays_whole() {
        for loss in [0.0, 0.01] {
            let label = format!("recv sink, loss {loss}");
            let (read, direct) = run(loss, &label);
            println!("{label}: {direct} of {read} bytes went straight to the sink");
            assert_eq!(read, SIZE, "{label}");
            // Both ways were taken: straight in, and through the receive buffer when the
            // reader lagged or a hole was being filled.
            assert!(direct > SIZE / 10 && direct < SIZE, "{label}: {direct} direct");
        }
    }
}
