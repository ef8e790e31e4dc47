//! ESTABLISHED: the receive path (in order, out of order, SACK generation, trimming, zero
//! window, shutdown(RD)), segment validation (RFC 9293 acceptability, RFC 5961 RST/SYN/ACK
//! checks with challenge ACKs, RFC 7323 PAWS), the send path (Nagle, PSH, peer window), user-call
//! results and readiness.

use super::*;
use crate::socket::Errno;

fn ts(val: u32, ecr: u32) -> TcpOptions {
    TcpOptions { timestamp: Some((val, ecr)), ..NO_OPTIONS }
}

/// ESTABLISHED with SACK and timestamps (the peer's TSval starts at 500 and its window scale is
/// 7; ours is 0 with the 64 000-byte buffer).
fn established_sack() -> Tcb {
    let config = config();
    let mut tcb = syn_received_with(&config, &options(&config), &their_full_syn(500));
    assert!(tcb.emitted().is_some());
    send!(tcb, TcpRepr { options: ts(501, 0), ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Established);
    recv_nothing!(tcb);
    tcb
}

fn read_all(tcb: &mut Tcb) -> Vec<u8> {
    let mut out = vec![0; 1 << 17];
    match tcb.recv(&mut out) {
        Ok(n) => out[..n].to_vec(),
        Err(Errno::WouldBlock) => Vec::new(),
        Err(e) => panic!("recv: {e:?}"),
    }
}

// ===================================================================================
// Receiving in order
// ===================================================================================

#[test]
fn data_is_acked_at_once_during_quickack_and_readable() {
    let mut tcb = established();
    assert!(!tcb.readiness().readable);
    send!(tcb, TcpRepr { payload: b"abcdef", ..SEND_TEMPL });
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 7), window_len: 63_994, ..RECV_TEMPL });
    assert!(tcb.readiness().readable);
    assert_eq!(read_all(&mut tcb), b"abcdef");
    assert!(!tcb.readiness().readable);
    let mut buf = [0; 4];
    assert_eq!(tcb.recv(&mut buf), Err(Errno::WouldBlock));
    assert_eq!(tcb.info().bytes_received, 6);
}

#[test]
fn quickack_covers_the_first_sixteen_segments() {
    let mut tcb = established();
    let mut seq = REMOTE_SEQ + 1;
    for _ in 0..16 {
        send!(tcb, TcpRepr { seq_number: seq, payload: &[1; 100], ..SEND_TEMPL });
        seq += 100;
        assert!(tcb.emitted().is_some(), "every segment is acknowledged at once");
    }
    send!(tcb, TcpRepr { seq_number: seq, payload: &[1; 100], ..SEND_TEMPL });
    recv_nothing!(tcb);
}

#[test]
fn delayed_ack_every_second_segment() {
    let mut tcb = established();
    tcb.quickacks = 0;
    send!(tcb, TcpRepr { payload: &[1; 1460], ..SEND_TEMPL });
    recv_nothing!(tcb);
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 1461, payload: &[2; 1460], ..SEND_TEMPL });
    recv!(
        tcb,
        TcpRepr { ack_number: Some(REMOTE_SEQ + 2921), window_len: 64_000 - 2920, ..RECV_TEMPL }
    );
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), None, "no delayed-ACK timer left behind");
}

#[test]
fn delayed_ack_timer_acks_a_lone_segment() {
    let mut tcb = established();
    tcb.quickacks = 0;
    send!(tcb, TcpRepr { payload: b"x", ..SEND_TEMPL });
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), Some(Instant::from_millis(40)));
    tcb.advance(Duration::from_millis(39));
    recv_nothing!(tcb);
    tcb.advance(Duration::from_millis(1));
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 2), window_len: 63_999, ..RECV_TEMPL });
}

#[test]
fn delayed_ack_rides_on_data() {
    let mut tcb = established();
    tcb.quickacks = 0;
    send!(tcb, TcpRepr { payload: b"ping", ..SEND_TEMPL });
    recv_nothing!(tcb);
    assert_eq!(read_all(&mut tcb), b"ping");
    tcb.send(b"pong").unwrap();
    recv!(
        tcb,
        TcpRepr {
            flags: ACK | PSH,
            ack_number: Some(REMOTE_SEQ + 5),
            window_len: 63_996,
            payload: b"pong",
            ..RECV_TEMPL
        }
    );
    assert!(!tcb.timers.is_armed(super::super::timer::Timer::DelayedAck));
}

#[test]
fn duplicate_data_is_acked_at_once() {
    let mut tcb = established();
    tcb.quickacks = 0;
    send!(tcb, TcpRepr { payload: b"abc", ..SEND_TEMPL });
    recv_nothing!(tcb);
    send!(tcb, TcpRepr { payload: b"abc", ..SEND_TEMPL });
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 4), window_len: 63_997, ..RECV_TEMPL });
    assert_eq!(read_all(&mut tcb), b"abc");
}

#[test]
fn overlapping_segment_is_trimmed() {
    let mut tcb = established();
    send!(tcb, TcpRepr { payload: b"abc", ..SEND_TEMPL });
    tcb.emitted_all();
    send!(tcb, TcpRepr { payload: b"abcdef", ..SEND_TEMPL });
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 7), window_len: 63_994, ..RECV_TEMPL });
    assert_eq!(read_all(&mut tcb), b"abcdef");
}

#[test]
fn segment_entirely_before_window_is_acked_and_dropped() {
    let mut tcb = established();
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ - 9, payload: b"old", ..SEND_TEMPL });
    recv!(tcb, RECV_TEMPL);
    assert!(read_all(&mut tcb).is_empty());
}

#[test]
fn data_beyond_the_window_is_dropped_with_an_ack() {
    let mut tcb = established();
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 1 + 64_000, payload: b"far", ..SEND_TEMPL });
    recv!(tcb, RECV_TEMPL);
    assert!(tcb.assembler.is_empty());
}

#[test]
fn segment_straddling_the_right_edge_keeps_what_fits() {
    let mut tcb = established();
    let data = pattern(0, 64_000);
    let mut offset = 0;
    while offset < 63_990 {
        let len = 1460.min(63_990 - offset);
        send!(
            tcb,
            TcpRepr {
                seq_number: REMOTE_SEQ + 1 + offset,
                payload: &data[offset..offset + len],
                ..SEND_TEMPL
            }
        );
        offset += len;
    }
    tcb.emitted_all();
    // 10 bytes of room; 20 offered, with a FIN that cannot fit after them.
    send!(
        tcb,
        TcpRepr {
            seq_number: REMOTE_SEQ + 63_991,
            flags: ACK | FIN,
            payload: &[9; 20],
            ..SEND_TEMPL
        }
    );
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 64_001), window_len: 0, ..RECV_TEMPL });
    assert_eq!(tcb.state(), TcpState::Established, "the FIN was cut off with the data");
    assert_eq!(tcb.info().recv_queue, 64_000);
}

// ===================================================================================
// Zero receive window
// ===================================================================================

/// Fills the 64 000-byte receive buffer without reading it.
fn fill_receive_buffer(tcb: &mut Tcb) {
    let data = [7; 1000];
    for i in 0..64 {
        send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 1 + 1000 * i, payload: &data, ..SEND_TEMPL });
    }
    tcb.emitted_all();
}

#[test]
fn full_buffer_advertises_zero_and_refuses_probes() {
    let mut tcb = established();
    fill_receive_buffer(&mut tcb);
    let edge = REMOTE_SEQ + 64_001;
    // A one-byte window probe: not stored, answered with the zero window.
    send!(tcb, TcpRepr { seq_number: edge, payload: b"p", ..SEND_TEMPL });
    recv!(tcb, TcpRepr { ack_number: Some(edge), window_len: 0, ..RECV_TEMPL });
    assert_eq!(tcb.info().recv_queue, 64_000);
    // A bare FIN is taken even into a zero window.
    send!(tcb, TcpRepr { seq_number: edge, flags: ACK | FIN, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::CloseWait);
    recv!(tcb, TcpRepr { ack_number: Some(edge + 1), window_len: 0, ..RECV_TEMPL });
}

#[test]
fn reading_a_full_buffer_sends_a_window_update() {
    let mut tcb = established();
    fill_receive_buffer(&mut tcb);
    let edge = REMOTE_SEQ + 64_001;
    // Reading less than an MSS: no update (receiver SWS avoidance).
    let mut buf = [0; 1000];
    assert_eq!(tcb.recv(&mut buf), Ok(1000));
    recv_nothing!(tcb);
    // Two MSS into a nearly closed window: update.
    let mut buf = [0; 2000];
    assert_eq!(tcb.recv(&mut buf), Ok(2000));
    recv!(tcb, TcpRepr { ack_number: Some(edge), window_len: 3000, ..RECV_TEMPL });
    recv_nothing!(tcb);
}

#[test]
fn small_reads_do_not_send_window_updates() {
    let mut tcb = established();
    send!(tcb, TcpRepr { payload: &[1; 3000], ..SEND_TEMPL });
    tcb.emitted_all();
    let mut buf = [0; 3000];
    assert_eq!(tcb.recv(&mut buf), Ok(3000));
    recv_nothing!(tcb);
}

// ===================================================================================
// Out of order, reassembly and SACK generation
// ===================================================================================

#[test]
fn out_of_order_segment_draws_duplicate_ack() {
    let mut tcb = established();
    tcb.quickacks = 0;
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 11, payload: b"later", ..SEND_TEMPL });
    recv!(tcb, RECV_TEMPL);
    assert!(read_all(&mut tcb).is_empty());
    // The hole fills: everything is acknowledged at once.
    send!(tcb, TcpRepr { payload: b"0123456789", ..SEND_TEMPL });
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 16), window_len: 63_985, ..RECV_TEMPL });
    assert_eq!(read_all(&mut tcb), b"0123456789later");
}

#[test]
fn sack_blocks_report_the_latest_arrival_first() {
    let mut tcb = established_sack();
    let base = REMOTE_SEQ.0 + 1;
    let seg = |offset: u32, data: &'static [u8]| TcpRepr {
        seq_number: SeqNumber(base + offset),
        options: ts(502, 0),
        payload: data,
        ..SEND_TEMPL
    };
    let ack = |blocks: &[(u32, u32)]| TcpRepr {
        options: TcpOptions { timestamp: Some((0, 501)), ..sack(blocks) },
        ..RECV_TEMPL
    };
    let b = |from: u32, to: u32| (base + from, base + to);
    send!(tcb, seg(100, &[1; 100]));
    recv!(tcb, ack(&[b(100, 200)]));
    send!(tcb, seg(300, &[1; 100]));
    recv!(tcb, ack(&[b(300, 400), b(100, 200)]));
    send!(tcb, seg(500, &[1; 100]));
    recv!(tcb, ack(&[b(500, 600), b(300, 400), b(100, 200)]));
    // A fourth range: with timestamps only three blocks fit; the oldest report drops out.
    send!(tcb, seg(700, &[1; 100]));
    recv!(tcb, ack(&[b(700, 800), b(500, 600), b(300, 400)]));
    // Joining two ranges reports the merged block first; the room freed brings back the
    // oldest block still held.
    send!(tcb, seg(400, &[1; 100]));
    recv!(tcb, ack(&[b(300, 600), b(700, 800), b(100, 200)]));
    // Filling the first hole moves RCV.NXT; reported blocks below it disappear.
    send!(
        tcb,
        TcpRepr {
            seq_number: SeqNumber(base),
            payload: &[1; 100],
            options: ts(502, 0),
            ..SEND_TEMPL
        }
    );
    recv!(
        tcb,
        TcpRepr {
            ack_number: Some(SeqNumber(base + 200)),
            window_len: 63_800,
            options: TcpOptions { timestamp: Some((0, 502)), ..sack(&[b(300, 600), b(700, 800)]) },
            ..RECV_TEMPL
        }
    );
}

/// The stack hands the TCB every frame of a round before it dispatches: each out-of-order
/// segment of the batch still gets its own duplicate ACK (RFC 5681 §4.2), and each ACK reports
/// first the block holding its segment (RFC 2018 §4), so that with more holes than one ACK has
/// room for, every block reaches the sender.
#[test]
fn a_batch_of_out_of_order_segments_draws_one_duplicate_ack_each() {
    let mut tcb = established_sack();
    let base = REMOTE_SEQ.0 + 1;
    for offset in [100, 300, 500, 700, 900] {
        send!(
            tcb,
            TcpRepr {
                seq_number: SeqNumber(base + offset),
                options: ts(502, 0),
                payload: &[1; 100],
                ..SEND_TEMPL
            }
        );
    }
    let ack = |firsts: [u32; 3]| TcpRepr {
        options: TcpOptions {
            timestamp: Some((0, 501)),
            ..sack(&firsts.map(|from| (base + from, base + from + 100)))
        },
        ..RECV_TEMPL
    };
    // Three blocks fit beside the timestamp: the arrival's own, then the most recently
    // reported others.
    recv!(tcb, ack([100, 900, 700]));
    recv!(tcb, ack([300, 100, 900]));
    recv!(tcb, ack([500, 300, 100]));
    recv!(tcb, ack([700, 500, 300]));
    recv!(tcb, ack([900, 700, 500]));
    recv_nothing!(tcb);
}

#[test]
fn without_sack_a_batch_still_draws_one_duplicate_ack_per_segment() {
    let mut tcb = established();
    tcb.quickacks = 0;
    for offset in [10, 20, 30] {
        send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 1 + offset, payload: b"x", ..SEND_TEMPL });
    }
    for _ in 0..3 {
        recv!(tcb, RECV_TEMPL);
    }
    recv_nothing!(tcb);
}

/// A segment filling the hole in the same batch makes the earlier arrivals below the new
/// RCV.NXT in-order: their duplicate ACKs would now repeat the new acknowledgment number and
/// look like duplicates for the next hole, so one ACK for the filling segment replaces them.
#[test]
fn a_hole_filled_in_the_same_batch_replaces_the_acks_owed_below_it() {
    let mut tcb = established_sack();
    let base = REMOTE_SEQ.0 + 1;
    let seg = |offset: u32| TcpRepr {
        seq_number: SeqNumber(base + offset),
        options: ts(502, 0),
        payload: &[1; 100],
        ..SEND_TEMPL
    };
    send!(tcb, seg(300));
    send!(tcb, seg(100));
    send!(tcb, seg(0));
    let after_fill = TcpRepr {
        ack_number: Some(SeqNumber(base + 200)),
        window_len: 63_800,
        options: TcpOptions { timestamp: Some((0, 502)), ..sack(&[(base + 300, base + 400)]) },
        ..RECV_TEMPL
    };
    // One for the segment at 300, still out of order; one for the segment that filled the hole.
    recv!(tcb, after_fill);
    recv!(tcb, after_fill);
    recv_nothing!(tcb);
}

#[test]
fn a_flood_of_out_of_order_segments_owes_a_bounded_number_of_acks() {
    let mut tcb = established_sack();
    let base = REMOTE_SEQ.0 + 1;
    for i in 0..200u32 {
        send!(
            tcb,
            TcpRepr {
                seq_number: SeqNumber(base + 1 + i),
                options: ts(502, 0),
                payload: b"x",
                ..SEND_TEMPL
            }
        );
    }
    let acks = tcb.emitted_all();
    assert_eq!(acks.len(), crate::socket::tcp::acks::MAX_OWED_ACKS);
    assert!(acks.iter().all(|a| a.payload.is_empty() && a.repr.ack_number == Some(REMOTE_SEQ + 1)));
    // The last one reports the block as it stands after the latest arrival.
    let last = acks.last().unwrap().repr.options;
    assert_eq!(
        last.sack(),
        [SackBlock { left: SeqNumber(base + 1), right: SeqNumber(base + 201) }]
    );
}

/// RFC 2883: a segment that arrives again is reported in a D-SACK block, first and once, so
/// that the sender knows its retransmission was not needed.
#[test]
fn a_duplicate_segment_is_reported_once_in_a_dsack_block() {
    let mut tcb = established_sack();
    let base = REMOTE_SEQ.0 + 1;
    let seg = |offset: u32, tsval: u32| TcpRepr {
        seq_number: SeqNumber(base + offset),
        options: ts(tsval, 0),
        payload: &[1; 100],
        ..SEND_TEMPL
    };
    send!(tcb, seg(0, 502));
    send!(tcb, seg(200, 502));
    tcb.emitted_all();
    // The first segment again (a spurious retransmission, newer TSval), then the same with the
    // original's TSval (PAWS drops it, but it is a duplicate all the same).
    for tsval in [503, 501] {
        send!(tcb, seg(0, tsval));
        let acks = tcb.emitted_all();
        assert_eq!(acks.len(), 1);
        let blocks = acks[0].repr.options.sack();
        assert_eq!(
            blocks,
            [
                SackBlock { left: SeqNumber(base), right: SeqNumber(base + 100) },
                SackBlock { left: SeqNumber(base + 200), right: SeqNumber(base + 300) },
            ]
        );
    }
    // Reported once: the next ACK has the usual block only.
    send!(tcb, seg(300, 503));
    let acks = tcb.emitted_all();
    assert_eq!(
        acks.last().unwrap().repr.options.sack(),
        [SackBlock { left: SeqNumber(base + 200), right: SeqNumber(base + 400) }]
    );
}

#[test]
fn four_sack_blocks_without_timestamps() {
    let config = config();
    let syn = TcpRepr {
        options: TcpOptions { sack_permitted: true, ..their_syn().options },
        ..their_syn()
    };
    let mut tcb = syn_received_with(&config, &options(&config), &syn);
    tcb.emitted_all();
    send!(tcb, SEND_TEMPL);
    let base = REMOTE_SEQ.0 + 1;
    for i in 0..5u32 {
        send!(
            tcb,
            TcpRepr {
                seq_number: SeqNumber(base + 100 + 200 * i),
                payload: &[1; 100],
                ..SEND_TEMPL
            }
        );
        tcb.emitted_all();
    }
    send!(tcb, TcpRepr { seq_number: SeqNumber(base + 1100), payload: &[1; 100], ..SEND_TEMPL });
    let b = |from: u32| (base + from, base + from + 100);
    recv!(tcb, TcpRepr { options: sack(&[b(1100), b(900), b(700), b(500)]), ..RECV_TEMPL });
}

#[test]
fn fin_out_of_order_waits_for_the_gap() {
    let mut tcb = established();
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 6, flags: ACK | FIN, payload: b"world", ..SEND_TEMPL }
    );
    recv!(tcb, RECV_TEMPL);
    assert_eq!(tcb.state(), TcpState::Established);
    assert!(!tcb.readiness().read_closed);
    send!(tcb, TcpRepr { payload: b"hello", ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::CloseWait);
    // The FIN took a sequence number but no buffer: the right edge stays, 63 989 remain.
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 12), window_len: 63_989, ..RECV_TEMPL });
    assert!(tcb.readiness().read_closed);
    assert_eq!(read_all(&mut tcb), b"helloworld");
    let mut buf = [0; 4];
    assert_eq!(tcb.recv(&mut buf), Ok(0));
}

#[test]
fn bare_fin_out_of_order_waits_for_the_gap() {
    let mut tcb = established();
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 4, flags: ACK | FIN, ..SEND_TEMPL });
    recv!(tcb, RECV_TEMPL);
    send!(tcb, TcpRepr { payload: b"abc", ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::CloseWait);
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 5), window_len: 63_996, ..RECV_TEMPL });
}

/// Random segments of a stream (lost, duplicated, overlapping, reordered) against the model:
/// whatever arrives, what the TCB delivers is a prefix of the stream, RCV.NXT is the first byte
/// it has not got contiguously, and retransmitting the whole stream in order completes it.
#[test]
fn random_reassembly_matches_the_stream() {
    let mut rng = super::pair::Rng(99);
    for _ in 0..50 {
        let mut tcb = established();
        let stream = pattern(0, 20_000);
        let mut have = vec![false; stream.len()];
        for _ in 0..60 {
            let start = (rng.next() % 19_000) as usize;
            let len = 1 + (rng.next() % 1_400) as usize;
            let end = (start + len).min(stream.len());
            send!(
                tcb,
                TcpRepr {
                    seq_number: REMOTE_SEQ + 1 + start,
                    payload: &stream[start..end],
                    ..SEND_TEMPL
                }
            );
            tcb.emitted_all();
            have[start..end].iter_mut().for_each(|b| *b = true);
            let contiguous = have.iter().position(|b| !b).unwrap_or(have.len());
            assert_eq!(tcb.rcv_nxt, REMOTE_SEQ + 1 + contiguous);
        }
        for start in (0..stream.len()).step_by(1000) {
            send!(
                tcb,
                TcpRepr {
                    seq_number: REMOTE_SEQ + 1 + start,
                    payload: &stream[start..start + 1000],
                    ..SEND_TEMPL
                }
            );
        }
        assert_eq!(read_all(&mut tcb), stream);
        assert!(tcb.assembler.is_empty());
    }
}

// ===================================================================================
// Validation: RFC 5961 and acceptability
// ===================================================================================

#[test]
fn rst_at_rcv_nxt_resets() {
    let mut tcb = established();
    send!(tcb, TcpRepr { payload: b"unread", ..SEND_TEMPL });
    tcb.emitted_all();
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 7, flags: RST, ack_number: None, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Closed);
    recv_nothing!(tcb);
    let readiness = tcb.readiness();
    assert!(readiness.readable && readiness.error && readiness.hangup && readiness.read_closed);
    // Data first, then the error once, then end of stream.
    assert_eq!(read_all(&mut tcb), b"unread");
    let mut buf = [0; 8];
    assert_eq!(tcb.recv(&mut buf), Err(Errno::ConnectionReset));
    assert_eq!(tcb.recv(&mut buf), Ok(0));
    assert_eq!(tcb.send(b"x"), Err(Errno::BrokenPipe));
    assert!(!tcb.readiness().error);
}

#[test]
fn rst_in_window_but_not_at_rcv_nxt_draws_challenge_ack() {
    let mut tcb = established();
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 1000, flags: RST, ack_number: None, ..SEND_TEMPL }
    );
    assert_eq!(tcb.state(), TcpState::Established);
    recv!(tcb, RECV_TEMPL);
    assert_eq!(tcb.take_error(), None);
}

#[test]
fn rst_outside_window_is_ignored_silently() {
    let mut tcb = established();
    for seq in [REMOTE_SEQ, REMOTE_SEQ + 64_001, REMOTE_SEQ + 1_000_000] {
        send!(tcb, TcpRepr { seq_number: seq, flags: RST, ack_number: None, ..SEND_TEMPL });
    }
    assert_eq!(tcb.state(), TcpState::Established);
    recv_nothing!(tcb);
}

#[test]
fn syn_in_established_draws_challenge_ack() {
    let mut tcb = established();
    // In the window or not, a SYN is never acted on.
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 1, ack_number: None, flags: SYN, ..SEND_TEMPL });
    recv!(tcb, RECV_TEMPL);
    assert_eq!(tcb.state(), TcpState::Established);
}

#[test]
fn ack_of_unsent_data_is_answered_and_dropped() {
    let mut tcb = established();
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 100), payload: b"data", ..SEND_TEMPL });
    recv!(tcb, RECV_TEMPL);
    assert!(read_all(&mut tcb).is_empty(), "the segment was dropped, data and all");
}

#[test]
fn ack_older_than_the_window_is_answered_and_dropped() {
    let mut tcb = established();
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ - 70_000), payload: b"data", ..SEND_TEMPL });
    recv!(tcb, RECV_TEMPL);
    assert!(read_all(&mut tcb).is_empty());
    // Within MAX.SND.WND below SND.UNA: merely old; the data is taken.
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ - 100), payload: b"data", ..SEND_TEMPL });
    assert_eq!(read_all(&mut tcb), b"data");
}

#[test]
fn challenge_acks_are_rate_limited() {
    let mut tcb = established();
    let bogus =
        TcpRepr { seq_number: REMOTE_SEQ + 1000, flags: RST, ack_number: None, ..SEND_TEMPL };
    for _ in 0..10 {
        send!(tcb, bogus);
        recv!(tcb, RECV_TEMPL);
    }
    send!(tcb, bogus);
    recv_nothing!(tcb);
    tcb.advance(Duration::from_secs(1));
    send!(tcb, bogus);
    recv!(tcb, RECV_TEMPL);
}

#[test]
fn segment_without_ack_is_dropped() {
    let mut tcb = established();
    send!(
        tcb,
        TcpRepr { ack_number: None, flags: TcpFlags::default(), payload: b"noack", ..SEND_TEMPL }
    );
    recv_nothing!(tcb);
    assert!(read_all(&mut tcb).is_empty());
}

// ===================================================================================
// Timestamps and PAWS (RFC 7323)
// ===================================================================================

#[test]
fn paws_drops_old_timestamps_with_an_ack() {
    let mut tcb = established_sack();
    send!(tcb, TcpRepr { payload: b"new", options: ts(600, 0), ..SEND_TEMPL });
    recv!(
        tcb,
        TcpRepr {
            ack_number: Some(REMOTE_SEQ + 4),
            window_len: 63_997,
            options: ts(0, 600),
            ..RECV_TEMPL
        }
    );
    // An old duplicate from a previous wrap of the sequence space: TSval 550 < 600.
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 4, payload: b"old", options: ts(550, 0), ..SEND_TEMPL }
    );
    recv!(
        tcb,
        TcpRepr {
            ack_number: Some(REMOTE_SEQ + 4),
            window_len: 63_997,
            options: ts(0, 600),
            ..RECV_TEMPL
        }
    );
    assert_eq!(read_all(&mut tcb), b"new");
    // A reset is not subject to PAWS.
    send!(
        tcb,
        TcpRepr {
            seq_number: REMOTE_SEQ + 4,
            flags: RST,
            ack_number: None,
            options: ts(550, 0),
            ..SEND_TEMPL
        }
    );
    assert_eq!(tcb.state(), TcpState::Closed);
}

#[test]
fn paws_forgets_a_timestamp_idle_for_24_days() {
    let mut tcb = established_sack();
    tcb.advance(Duration::from_secs(25 * 24 * 3600));
    send!(tcb, TcpRepr { payload: b"x", options: ts(100, 0), ..SEND_TEMPL });
    assert_eq!(read_all(&mut tcb), b"x");
}

#[test]
fn ts_recent_follows_the_segment_at_the_left_edge() {
    let mut tcb = established_sack();
    tcb.quickacks = 0;
    send!(tcb, TcpRepr { payload: b"a", options: ts(600, 0), ..SEND_TEMPL });
    // The delayed ACK has not gone out: Last.ACK.sent is still REMOTE_SEQ + 1, so the next
    // segment (beyond it) does not move TS.Recent, and the ACK echoes 600 (RFC 7323 §4.3).
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 2, payload: b"b", options: ts(700, 0), ..SEND_TEMPL }
    );
    recv!(
        tcb,
        TcpRepr {
            ack_number: Some(REMOTE_SEQ + 3),
            window_len: 63_998,
            options: ts(0, 600),
            ..RECV_TEMPL
        }
    );
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 3, payload: b"c", options: ts(800, 0), ..SEND_TEMPL }
    );
    tcb.advance(Duration::from_millis(40));
    recv!(
        tcb,
        TcpRepr {
            ack_number: Some(REMOTE_SEQ + 4),
            window_len: 63_997,
            options: ts(40, 800),
            ..RECV_TEMPL
        }
    );
}

#[test]
fn timestamp_echo_samples_rtt_on_every_ack() {
    let mut tcb = established_sack();
    tcb.advance(Duration::from_millis(10));
    tcb.send(&[1; 100]).unwrap();
    recv!(
        tcb,
        TcpRepr { flags: ACK | PSH, options: ts(10, 501), payload: &[1; 100], ..RECV_TEMPL }
    );
    tcb.advance(Duration::from_millis(25));
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 101), options: ts(520, 10), ..SEND_TEMPL });
    // The handshake gave a 0 ms sample; SRTT moves by 1/8 of the new 25 ms one.
    assert_eq!(tcb.info().rtt, Duration::from_micros(3125));
    assert_eq!(tcb.info().min_rtt, Duration::ZERO);
}

// ===================================================================================
// Sending: Nagle, PSH, windows
// ===================================================================================

#[test]
fn nagle_holds_small_segments_while_data_is_unacknowledged() {
    let mut tcb = established();
    tcb.send(b"abc").unwrap();
    recv!(tcb, TcpRepr { flags: ACK | PSH, payload: b"abc", ..RECV_TEMPL });
    tcb.send(b"def").unwrap();
    tcb.send(b"ghi").unwrap();
    recv_nothing!(tcb);
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 4), ..SEND_TEMPL });
    recv!(
        tcb,
        TcpRepr { seq_number: LOCAL_SEQ + 4, flags: ACK | PSH, payload: b"defghi", ..RECV_TEMPL }
    );
}

#[test]
fn nodelay_sends_small_segments_at_once() {
    let config = config();
    let options = SocketOptions { nodelay: true, ..options(&config) };
    let mut tcb = established_with(&config, &options);
    tcb.send(b"abc").unwrap();
    recv!(tcb, TcpRepr { flags: ACK | PSH, payload: b"abc", ..RECV_TEMPL });
    tcb.send(b"def").unwrap();
    recv!(
        tcb,
        TcpRepr { seq_number: LOCAL_SEQ + 4, flags: ACK | PSH, payload: b"def", ..RECV_TEMPL }
    );
}

#[test]
fn turning_nodelay_on_flushes_held_data() {
    let mut tcb = established();
    tcb.send(b"abc").unwrap();
    tcb.emitted_all();
    tcb.send(b"def").unwrap();
    recv_nothing!(tcb);
    let options = SocketOptions { nodelay: true, ..tcb.options.clone() };
    let now = tcb.now;
    tcb.set_options(now, &options);
    recv!(
        tcb,
        TcpRepr { seq_number: LOCAL_SEQ + 4, flags: ACK | PSH, payload: b"def", ..RECV_TEMPL }
    );
}

#[test]
fn full_segments_go_out_and_the_tail_waits_for_nagle() {
    let mut tcb = established();
    let data = pattern(0, 3000);
    tcb.send(&data).unwrap();
    recv!(tcb, TcpRepr { payload: &data[..1460], ..RECV_TEMPL });
    recv!(tcb, TcpRepr { seq_number: LOCAL_SEQ + 1461, payload: &data[1460..2920], ..RECV_TEMPL });
    recv_nothing!(tcb);
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2921), ..SEND_TEMPL });
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 2921,
            flags: ACK | PSH,
            payload: &data[2920..],
            ..RECV_TEMPL
        }
    );
}

#[test]
fn initial_window_is_ten_segments() {
    let mut tcb = established();
    tcb.send(&pattern(0, 20_000)).unwrap();
    assert_eq!(tcb.emitted_all().len(), 10);
    // Each ACK of a segment opens room for two more (slow start).
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 1461), ..SEND_TEMPL });
    assert_eq!(tcb.emitted_all().len(), 2);
}

#[test]
fn peer_window_limits_sending_and_updates_reopen_it() {
    let mut tcb = established();
    send!(tcb, TcpRepr { window_len: 2920, ..SEND_TEMPL });
    let data = pattern(0, 10_000);
    tcb.send(&data).unwrap();
    assert_eq!(tcb.emitted_all().len(), 2);
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2921), window_len: 2920, ..SEND_TEMPL });
    assert_eq!(tcb.emitted_all().len(), 2);
    // A window update with the same ACK lets more go; the 1240-byte tail waits for Nagle.
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2921), window_len: 20_000, ..SEND_TEMPL });
    recv!(tcb, TcpRepr { seq_number: LOCAL_SEQ + 5841, payload: &data[5840..7300], ..RECV_TEMPL });
    recv!(tcb, TcpRepr { seq_number: LOCAL_SEQ + 7301, payload: &data[7300..8760], ..RECV_TEMPL });
    recv_nothing!(tcb);
}

#[test]
fn window_from_an_old_ack_is_ignored() {
    let mut tcb = established();
    tcb.send(&pattern(0, 1000)).unwrap();
    tcb.emitted_all();
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 1001), window_len: 1000, ..SEND_TEMPL });
    // Newer in sequence but acknowledging less: its window is not about SND.UNA.
    send!(
        tcb,
        TcpRepr {
            seq_number: REMOTE_SEQ + 1,
            ack_number: Some(LOCAL_SEQ + 1),
            window_len: 50_000,
            payload: b"x",
            ..SEND_TEMPL
        }
    );
    assert_eq!(tcb.info().snd_wnd, 1000);
}

#[test]
fn peer_window_is_scaled_by_its_shift() {
    let mut tcb = established_sack();
    send!(tcb, TcpRepr { window_len: 100, options: ts(502, 0), ..SEND_TEMPL });
    assert_eq!(tcb.info().snd_wnd, 100 << 7);
}

#[test]
fn sender_sws_avoidance_holds_a_sliver_of_window() {
    let mut tcb = established();
    tcb.send(&pattern(0, 5000)).unwrap();
    send!(tcb, TcpRepr { window_len: 500, ..SEND_TEMPL });
    // 500 bytes: less than an MSS and less than half the largest window seen (60 000).
    recv_nothing!(tcb);
    assert!(tcb.timers.is_armed(super::super::timer::Timer::Persist));
}

// ===================================================================================
// User calls and readiness
// ===================================================================================

#[test]
fn send_buffer_full_would_block_and_writable_follows_the_half_rule() {
    let mut tcb = established();
    send!(tcb, TcpRepr { window_len: 0, ..SEND_TEMPL });
    assert_eq!(tcb.send(&pattern(0, 70_000)), Ok(SEND_BUFFER));
    assert_eq!(tcb.send(b"x"), Err(Errno::WouldBlock));
    assert!(!tcb.readiness().writable);
    // Acknowledging data frees space: writable once free ≥ queued / 2.
    tcb.tx.consume(21_000);
    assert!(!tcb.readiness().writable, "21 000 free < 43 000 / 2");
    tcb.tx.consume(400);
    assert!(tcb.readiness().writable, "21 400 free ≥ 42 600 / 2");
}

#[test]
fn zero_length_send_and_recv() {
    let mut tcb = established();
    assert_eq!(tcb.send(b""), Ok(0));
    recv_nothing!(tcb);
}

#[test]
fn zero_copy_send_and_recv() {
    let mut tcb = established();
    assert_eq!(
        tcb.send_with(|a, _| {
            a[..3].copy_from_slice(b"zc!");
            3
        }),
        Ok(3)
    );
    recv!(tcb, TcpRepr { flags: ACK | PSH, payload: b"zc!", ..RECV_TEMPL });
    send!(tcb, TcpRepr { payload: b"abcdef", ..SEND_TEMPL });
    assert_eq!(
        tcb.recv_with(|a, b| {
            assert_eq!([a, b].concat(), b"abcdef");
            2
        }),
        Ok(2)
    );
    assert_eq!(read_all(&mut tcb), b"cdef");
}

#[test]
fn shutdown_read_acknowledges_and_discards() {
    let mut tcb = established();
    send!(tcb, TcpRepr { payload: b"kept", ..SEND_TEMPL });
    tcb.emitted_all();
    tcb.shutdown_read();
    assert!(tcb.readiness().read_closed && tcb.readiness().readable);
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 5, payload: b"gone", ..SEND_TEMPL });
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 9), window_len: 63_992, ..RECV_TEMPL });
    assert_eq!(read_all(&mut tcb), b"kept");
    let mut buf = [0; 4];
    assert_eq!(tcb.recv(&mut buf), Ok(0));
}

#[test]
fn info_reports_counters() {
    let mut tcb = established();
    tcb.send(b"abc").unwrap();
    tcb.emitted_all();
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 4), payload: b"xy", ..SEND_TEMPL });
    tcb.emitted_all();
    let info = tcb.info();
    assert_eq!(info.state, "ESTAB");
    assert_eq!(info.bytes_acked, 3);
    assert_eq!(info.bytes_received, 2);
    assert_eq!(info.segs_in, 3);
    assert_eq!(info.segs_out, 3);
    assert_eq!(info.recv_queue, 2);
    assert_eq!(info.unacked, 0);
    assert_eq!(info.congestion, "cubic");
    assert_eq!(info.snd_ssthresh, usize::MAX);
    assert_eq!(info.snd_cwnd, 14_600);
    assert_eq!(info.rcv_wnd, 63_998);
    assert_eq!(tcb.endpoints(), (LOCAL, REMOTE));
}

#[test]
fn peer_keepalive_probe_is_answered() {
    let mut tcb = established();
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ, ..SEND_TEMPL });
    recv!(tcb, RECV_TEMPL);
}

/// poll(2) through a connection's life, as a program sees it.
#[test]
fn readiness_through_a_connection() {
    use crate::socket::Readiness;
    let none = Readiness::default();
    let mut tcb = syn_sent();
    assert_eq!(tcb.readiness(), none, "connecting");
    send!(
        tcb,
        TcpRepr {
            seq_number: REMOTE_SEQ,
            flags: SYN | ACK,
            options: TcpOptions { mss: Some(1460), ..NO_OPTIONS },
            ..SEND_TEMPL
        }
    );
    tcb.emitted_all();
    let writable = Readiness { writable: true, ..none };
    assert_eq!(tcb.readiness(), writable, "connected");
    send!(tcb, TcpRepr { payload: b"data", ..SEND_TEMPL });
    assert_eq!(tcb.readiness(), Readiness { readable: true, ..writable }, "data to read");
    assert_eq!(read_all(&mut tcb), b"data");
    assert_eq!(tcb.readiness(), writable);
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 5, flags: ACK | FIN, ..SEND_TEMPL });
    let eof = Readiness { readable: true, writable: true, read_closed: true, ..none };
    assert_eq!(tcb.readiness(), eof, "end of stream");
    let now = tcb.now;
    tcb.shutdown_write(now).unwrap();
    assert_eq!(tcb.readiness(), Readiness { hangup: true, ..eof }, "both directions done");
    tcb.emitted_all();
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 6, ack_number: Some(LOCAL_SEQ + 2), ..SEND_TEMPL }
    );
    assert_eq!(tcb.state(), TcpState::Closed);
    assert_eq!(tcb.readiness(), Readiness { hangup: true, ..eof });
}

#[test]
fn readiness_after_reset() {
    let mut tcb = established();
    send!(tcb, TcpRepr { flags: RST, ack_number: None, ..SEND_TEMPL });
    let all = crate::socket::Readiness {
        readable: true,
        writable: true,
        read_closed: true,
        hangup: true,
        error: true,
    };
    assert_eq!(tcb.readiness(), all);
    assert_eq!(tcb.take_error(), Some(Errno::ConnectionReset));
    assert_eq!(tcb.readiness(), crate::socket::Readiness { error: false, ..all });
}

#[test]
fn data_keeps_its_place_when_snd_una_wraps_back_onto_the_iss() {
    let mut tcb = established();
    // As after 2^32 − 1 bytes sent and acknowledged: SND.UNA has wrapped back onto the ISS,
    // which must not be mistaken for an unacknowledged SYN.
    let iss = tcb.iss;
    tcb.snd_una = iss;
    tcb.snd_nxt = iss;
    tcb.snd_max = iss;
    tcb.stats.bytes_acked = u64::from(u32::MAX);
    assert_eq!(tcb.send(b"after the wrap"), Ok(14));
    let segment = tcb.emitted().expect("the data goes out");
    assert_eq!(segment.repr.seq_number, iss);
    assert_eq!(segment.payload, b"after the wrap");
    send!(tcb, TcpRepr { ack_number: Some(iss + 14), ..SEND_TEMPL });
    assert_eq!(tcb.info().unacked, 0);
    assert_eq!(tcb.info().bytes_acked, u64::from(u32::MAX) + 14);
}
