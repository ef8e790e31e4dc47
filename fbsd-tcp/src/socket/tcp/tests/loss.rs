//! Loss recovery: fast retransmit and NewReno (RFC 5681, RFC 6582), limited transmit
//! (RFC 3042), SACK-based recovery (RFC 6675), RACK (RFC 8985), the interplay with timeouts,
//! Karn's rule, and path-MTU reductions (RFC 1191).
//!
//! Segments are numbered from 0: segment `i` carries stream bytes `[1460 i, 1460 (i + 1))`.
//! The TCBs here use NewReno (halving, round numbers) and no timestamps (SMSS = 1460).

use super::*;
use crate::socket::tcp::CongestionAlgorithm;

const SMSS: usize = 1460;

fn reno_config() -> TcpConfig {
    TcpConfig { congestion: CongestionAlgorithm::NewReno, timestamps: false, ..config() }
}

/// The round trip the handshake measures in `sending`.
const HANDSHAKE_RTT: Duration = Duration::from_millis(10);

/// ESTABLISHED with NewReno, with or without SACK, `segments` full segments queued and the
/// initial window (10) of them sent. The handshake took `HANDSHAKE_RTT`; the peer's ACKs in the
/// tests arrive at the instant the data left unless a test lets time pass, so RACK's
/// reordering window (a quarter of the minimum RTT) has not run out for any of them.
fn sending(sack_permitted: bool, segments: usize) -> Tcb {
    let config = reno_config();
    let syn =
        TcpRepr { options: TcpOptions { sack_permitted, ..their_syn().options }, ..their_syn() };
    let mut tcb = syn_received_with(&config, &options(&config), &syn);
    tcb.emitted_all();
    tcb.advance(HANDSHAKE_RTT);
    send!(tcb, SEND_TEMPL);
    tcb.send(&pattern(0, segments * SMSS)).unwrap();
    assert_eq!(indices(&tcb.emitted_all()), (0..segments.min(10)).collect::<Vec<_>>());
    tcb
}

/// The segment numbers of emitted segments.
fn indices(emitted: &[Emitted]) -> Vec<usize> {
    emitted
        .iter()
        .map(|e| {
            assert!(e.payload.len() == SMSS || e.repr.flags.contains(PSH), "{e:?}");
            (e.repr.seq_number - (LOCAL_SEQ + 1)) / SMSS
        })
        .collect()
}

fn seq(segment: usize) -> SeqNumber {
    LOCAL_SEQ + 1 + segment * SMSS
}

/// An ACK up to segment `upto` (exclusive) with SACK blocks given as segment ranges.
fn ack(upto: usize, blocks: &[(usize, usize)]) -> TcpRepr<'static> {
    let blocks: Vec<(u32, u32)> = blocks.iter().map(|&(a, b)| (seq(a).0, seq(b).0)).collect();
    TcpRepr { ack_number: Some(seq(upto)), options: sack(&blocks), ..SEND_TEMPL }
}

/// Delivers an ACK and returns the segment numbers emitted in answer.
fn answer(tcb: &mut Tcb, segment: TcpRepr<'_>) -> Vec<usize> {
    send!(tcb, segment);
    indices(&tcb.emitted_all())
}

// ===================================================================================
// NewReno (no SACK)
// ===================================================================================

#[test]
fn newreno_fast_retransmit_with_limited_transmit_and_inflation() {
    let mut tcb = sending(false, 30);
    // Segment 0 is lost; segments 1.. draw duplicate ACKs.
    assert_eq!(answer(&mut tcb, ack(0, &[])), [10], "limited transmit");
    assert_eq!(answer(&mut tcb, ack(0, &[])), [11], "limited transmit");
    // The third: fast retransmit. ssthresh = cwnd = 12 × 1460 / 2; inflated by 3 SMSS.
    assert_eq!(answer(&mut tcb, ack(0, &[])), [0]);
    let info = tcb.info();
    assert_eq!((info.snd_ssthresh, info.snd_cwnd), (6 * SMSS, 6 * SMSS));
    assert_eq!(info.fast_recoveries, 1);
    assert_eq!(info.total_retrans, 1);
    // Each further dup ACK inflates by one SMSS; new data flows once the inflated window
    // exceeds the 12 segments outstanding: at the 7th dup ACK.
    for _ in 4..7 {
        assert_eq!(answer(&mut tcb, ack(0, &[])), [] as [usize; 0]);
    }
    for next in 12..17 {
        assert_eq!(answer(&mut tcb, ack(0, &[])), [next]);
    }
    // The retransmission fills the hole: the ACK covers the recovery point (segment 12).
    // Deflated to ssthresh (6); 5 segments are out, so one more goes.
    assert_eq!(answer(&mut tcb, ack(12, &[])), [17]);
    assert_eq!(tcb.info().snd_cwnd, 6 * SMSS);
    assert!(tcb.recovery.is_none());
    // Congestion avoidance: one ACKed, one sent.
    assert_eq!(answer(&mut tcb, ack(13, &[])), [18]);
}

#[test]
fn newreno_partial_ack_retransmits_the_next_hole() {
    let mut tcb = sending(false, 30);
    // Segments 0 and 4 are lost.
    for _ in 0..2 {
        answer(&mut tcb, ack(0, &[]));
    }
    assert_eq!(answer(&mut tcb, ack(0, &[])), [0]);
    // The retransmission of 0 arrives; the receiver still misses 4: a partial ACK.
    assert_eq!(answer(&mut tcb, ack(4, &[])), [4], "retransmitted at once, no new dup ACKs");
    assert!(tcb.recovery.is_some());
    // The full ACK leaves nothing outstanding: cwnd = min(ssthresh, 0 + SMSS + SMSS).
    assert_eq!(answer(&mut tcb, ack(12, &[])), [12, 13]);
    assert!(tcb.recovery.is_none());
    assert_eq!(tcb.info().fast_recoveries, 1);
    assert_eq!(tcb.info().total_retrans, 2);
}

#[test]
fn duplicate_acks_that_change_the_window_or_carry_data_do_not_count() {
    let mut tcb = sending(false, 10);
    for window in [50_000, 40_000, 30_000] {
        send!(tcb, TcpRepr { window_len: window, ..ack(0, &[]) });
    }
    for i in 0..3 {
        send!(
            tcb,
            TcpRepr {
                seq_number: REMOTE_SEQ + 1 + i,
                payload: b"x",
                window_len: 30_000,
                ..ack(0, &[])
            }
        );
    }
    tcb.emitted_all();
    assert_eq!(tcb.info().fast_recoveries, 0);
}

#[test]
fn no_fast_retransmit_for_losses_before_a_timeout() {
    let mut tcb = sending(false, 10);
    tcb.advance_to_next_timer();
    assert_eq!(indices(&tcb.emitted_all()), [0]);
    // Dup ACKs for data sent before the timeout (below `recover`) start no recovery.
    for _ in 0..5 {
        send!(tcb, ack(0, &[]));
    }
    assert_eq!(tcb.info().fast_recoveries, 0);
}

#[test]
fn timeout_during_recovery_ends_it_and_goes_back_to_snd_una() {
    let mut tcb = sending(false, 30);
    for _ in 0..3 {
        answer(&mut tcb, ack(0, &[]));
    }
    assert!(tcb.recovery.is_some());
    tcb.advance_to_next_timer();
    assert!(tcb.recovery.is_none());
    assert_eq!(indices(&tcb.emitted_all()), [0]);
    assert_eq!(tcb.info().snd_cwnd, SMSS);
    // Slow start again from segment 1.
    assert_eq!(answer(&mut tcb, ack(1, &[])), [1, 2]);
}

// ===================================================================================
// SACK (RFC 6675)
// ===================================================================================

#[test]
fn sack_recovery_retransmits_lost_then_sends_new_data_by_pipe() {
    let mut tcb = sending(true, 40);
    // Segment 0 lost; each dup ACK SACKs one more segment.
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 2)])), [10]);
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 3)])), [11]);
    // Third dup ACK: recovery. cwnd = ssthresh = 6 segments.
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 4)])), [0]);
    assert_eq!(tcb.info().snd_cwnd, 6 * SMSS);
    assert_eq!(tcb.info().sacked, 3 * SMSS);
    // pipe = 12 outstanding − 3 SACKed − 1 lost + 1 retransmitted = 9: nothing until it is
    // down to cwnd − 1 SMSS = 5 segments.
    for upto in 5..8 {
        assert_eq!(answer(&mut tcb, ack(0, &[(1, upto)])), [] as [usize; 0]);
    }
    // Each newly SACKed segment now lets one new segment go.
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 8)])), [12]);
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 9)])), [13]);
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 10)])), [14]);
    // The retransmission arrives: all acknowledged up to the recovery point and beyond.
    send!(tcb, ack(12, &[]));
    assert!(tcb.recovery.is_none());
    assert_eq!(tcb.info().sacked, 0);
}

#[test]
fn sack_recovery_retransmits_every_lost_hole_once() {
    let mut tcb = sending(true, 40);
    // Segments 0, 2 and 5 are lost.
    answer(&mut tcb, ack(0, &[(1, 2)]));
    answer(&mut tcb, ack(0, &[(3, 4), (1, 2)]));
    assert_eq!(answer(&mut tcb, ack(0, &[(3, 5), (1, 2)])), [0]);
    // 2 is lost (three SACKed segments above it): NextSeg picks it when pipe allows.
    let mut retransmitted = vec![0];
    for upto in 7..11 {
        let sent = answer(&mut tcb, ack(0, &[(6, upto), (3, 5), (1, 2)]));
        retransmitted.extend(sent.into_iter().filter(|&s| s < 10));
    }
    assert_eq!(retransmitted, [0, 2, 5]);
    send!(tcb, ack(12, &[]));
    assert!(tcb.recovery.is_none());
    assert_eq!(tcb.info().total_retrans, 3);
}

#[test]
fn sack_showing_loss_starts_recovery_before_three_dup_acks() {
    let mut tcb = sending(true, 20);
    // One dup ACK SACKing three segments (the earlier ACKs were lost): IsLost(SND.UNA).
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 4)])), [0]);
    assert_eq!(tcb.info().fast_recoveries, 1);
}

#[test]
fn sack_acks_without_new_sack_information_are_not_dup_acks() {
    let mut tcb = sending(true, 20);
    for _ in 0..5 {
        send!(tcb, ack(0, &[(1, 2)]));
    }
    assert_eq!(tcb.info().fast_recoveries, 0);
}

#[test]
fn timeout_clears_the_scoreboard_and_resends_in_order() {
    let mut tcb = sending(true, 20);
    send!(tcb, ack(0, &[(1, 3)]));
    // RACK deems segment 0 lost a quarter RTT later and recovery retransmits it.
    assert_eq!(tcb.advance_to_next_timer(), HANDSHAKE_RTT / 4);
    assert_eq!(indices(&tcb.emitted_all()), [0]);
    // No answer at all: the timeout.
    tcb.advance_to_next_timer();
    assert_eq!(tcb.info().timeouts, 1);
    assert_eq!(tcb.info().sacked, 0);
    assert_eq!(indices(&tcb.emitted_all()), [0]);
    // Everything outstanding is resent in order as the window opens; what the peer SACKs
    // meanwhile is skipped.
    assert_eq!(answer(&mut tcb, ack(1, &[(3, 4)])), [1, 2]);
    assert_eq!(answer(&mut tcb, ack(3, &[])), [4, 5, 6, 7]);
}

// ===================================================================================
// RACK (RFC 8985)
// ===================================================================================

/// RFC 6675 alone cannot see a retransmission lost again: nothing above it is SACKed anew
/// for it. RACK sees that data sent after it arrived, and deems it lost once an RTT has passed.
#[test]
fn a_lost_retransmission_is_sent_again_without_a_timeout() {
    let mut tcb = sending(true, 40);
    answer(&mut tcb, ack(0, &[(1, 2)]));
    answer(&mut tcb, ack(0, &[(1, 3)]));
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 4)])), [0]);
    for upto in 5..8 {
        answer(&mut tcb, ack(0, &[(1, upto)]));
    }
    // New data leaves after the retransmission of 0.
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 8)])), [12]);
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 10)])), [13, 14]);
    // An RTT later the peer reports 12, sent after the retransmission, but still not 0, nor
    // 10 and 11, sent before 12: all three are lost (no reordering seen: no window) and go
    // first, then new data as the pipe allows (unSACKed 0, 10, 11, 13, 14; lost 0, 10, 11).
    tcb.advance(HANDSHAKE_RTT);
    assert_eq!(answer(&mut tcb, ack(0, &[(12, 13), (1, 10)])), [0, 10, 11, 15]);
    let info = tcb.info();
    assert_eq!((info.timeouts, info.fast_recoveries, info.total_retrans), (0, 1, 4));
    check_loss_state(&tcb);
}

/// A loss with fewer than DupThresh segments behind it: the duplicate ACKs never come, RACK's
/// timer does, a quarter RTT (the reordering window) after the RTT.
#[test]
fn too_few_segments_after_a_loss_for_dup_thresh_rack_recovers_it() {
    let mut tcb = sending(true, 3);
    assert_eq!(answer(&mut tcb, ack(0, &[(1, 3)])), [] as [usize; 0]);
    assert!(tcb.recovery.is_none());
    assert_eq!(tcb.advance_to_next_timer(), HANDSHAKE_RTT / 4);
    assert_eq!(indices(&tcb.emitted_all()), [0]);
    let info = tcb.info();
    assert_eq!((info.timeouts, info.fast_recoveries, info.total_retrans), (0, 1, 1));
    // The retransmission arrives: recovery ends.
    send!(tcb, ack(3, &[]));
    assert!(tcb.recovery.is_none());
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), None, "nothing outstanding, no timer");
}

#[test]
fn segments_delivered_out_of_order_open_the_reordering_window() {
    let mut tcb = sending(true, 10);
    send!(tcb, ack(0, &[(1, 2)]));
    // Segment 0 was only late: no loss, but reordering is seen from now on.
    send!(tcb, ack(2, &[]));
    tcb.emitted_all();
    let srtt = tcb.rtt.srtt();
    assert_eq!(tcb.sent.reo_wnd(true, srtt, HANDSHAKE_RTT), HANDSHAKE_RTT / 4);
    assert_eq!(tcb.info().fast_recoveries, 0);
}

/// A D-SACK says a retransmission was spurious: reordering beyond RACK's window. The window
/// grows by a quarter of the minimum RTT per round trip that sees one (RFC 8985 §6.2).
#[test]
fn a_dsack_widens_the_reordering_window() {
    let mut tcb = sending(true, 10);
    send!(tcb, ack(2, &[]));
    let srtt = tcb.rtt.srtt();
    assert_eq!(tcb.sent.reo_wnd(false, srtt, HANDSHAKE_RTT), HANDSHAKE_RTT / 4);
    send!(tcb, ack(2, &[(0, 1)]));
    assert_eq!(tcb.sent.reo_wnd(false, srtt, HANDSHAKE_RTT), HANDSHAKE_RTT / 2);
}

/// Without timestamps, the ACK of exactly a probe that resent the last segment cannot tell
/// whether the original had arrived too; a D-SACK of the probe says it had, an ACK beyond it
/// without one says the probe repaired a loss (RFC 8985 §7.4).
#[test]
fn without_timestamps_a_loss_probe_is_judged_by_dsack_or_a_later_ack() {
    for dsack in [false, true] {
        let mut tcb = sending(true, 10);
        let pto = 2 * HANDSHAKE_RTT + Duration::from_millis(2);
        assert_eq!(tcb.advance_to_next_timer(), pto);
        assert_eq!(indices(&tcb.emitted_all()), [9]);
        send!(tcb, ack(10, &[]));
        assert!(tcb.tlp_end.is_some(), "undecided");
        if dsack {
            // Both copies arrived: the peer reports the second as a duplicate.
            send!(tcb, ack(10, &[(9, 10)]));
            assert_eq!(tcb.tlp_end, None);
        }
        tcb.send(&pattern(10 * SMSS, SMSS)).unwrap();
        assert_eq!(indices(&tcb.emitted_all()), [10]);
        send!(tcb, ack(11, &[]));
        assert_eq!(tcb.tlp_end, None);
        assert_eq!(tcb.stats.probe_recoveries, u64::from(!dsack));
        assert_eq!(tcb.info().snd_ssthresh < usize::MAX, !dsack);
    }
}

// ===================================================================================
// RTT sampling without timestamps (Karn)
// ===================================================================================

#[test]
fn karn_no_sample_from_a_retransmitted_segment() {
    let mut tcb = sending(false, 1);
    let before = tcb.info().rtt;
    tcb.advance_to_next_timer();
    tcb.emitted_all();
    tcb.advance(Duration::from_millis(50));
    send!(tcb, ack(1, &[]));
    assert_eq!(tcb.info().rtt, before);
}

#[test]
fn one_segment_per_rtt_is_timed() {
    let mut tcb = sending(false, 12);
    tcb.advance(Duration::from_millis(30));
    // The ACK of segment 0 ends the timing started when it left.
    send!(tcb, ack(1, &[]));
    let after_first = tcb.info();
    assert_eq!(after_first.min_rtt, HANDSHAKE_RTT, "measured by the handshake");
    assert_eq!(after_first.rtt, Duration::from_micros(12_500), "7/8 × 10 ms + 1/8 × 30 ms");
    // Segment 1's ACK gives no sample: it was not the timed one.
    tcb.advance(Duration::from_millis(30));
    send!(tcb, ack(2, &[]));
    assert_eq!(tcb.info().rtt, after_first.rtt);
}

// ===================================================================================
// Path MTU
// ===================================================================================

#[test]
fn path_mtu_lowers_the_mss_and_resends_in_smaller_segments() {
    let mut tcb = sending(false, 10);
    let now = tcb.now;
    tcb.on_path_mtu(now, 1000);
    assert_eq!(tcb.info().snd_mss, 960);
    let resent = tcb.emitted_all();
    assert_eq!(resent[0].repr.seq_number, LOCAL_SEQ + 1);
    assert!(resent.iter().all(|e| e.payload.len() <= 960));
    assert_eq!(resent[0].payload, pattern(0, 960));
    assert_eq!(tcb.info().snd_cwnd, 10 * SMSS, "not a congestion signal");
}

#[test]
fn path_mtu_has_a_floor_and_ignores_increases() {
    let mut tcb = sending(false, 1);
    let now = tcb.now;
    tcb.on_path_mtu(now, 300);
    assert_eq!(tcb.info().snd_mss, 536);
    tcb.on_path_mtu(now, 1500);
    assert_eq!(tcb.info().snd_mss, 536);
}

/// The segments the path dropped for their size are resent by going back to SND.UNA; when the
/// window does not cover all of them at once, RACK then sees resent segments arrive before the
/// originals beyond them, which must not count as a congestion signal.
#[test]
fn path_mtu_resending_starts_no_recovery_with_sack() {
    let mut tcb = sending(true, 20);
    assert_eq!(answer(&mut tcb, ack(2, &[])), [10, 11, 12, 13]);
    // 12 segments out; a fresh window of 10 (as after an idle restart) resends 10 × 1460
    // bytes in 960-byte segments, leaving the last 2 segments' worth unsent.
    tcb.cc = CongestionAlgorithm::NewReno.build(SMSS);
    let now = tcb.now;
    tcb.on_path_mtu(now, 1000);
    assert_eq!(tcb.emitted_all().len(), 16);
    tcb.advance(HANDSHAKE_RTT);
    send!(tcb, TcpRepr { ack_number: Some(seq(2) + 2 * 960), ..SEND_TEMPL });
    tcb.advance(HANDSHAKE_RTT);
    tcb.emitted_all();
    assert_eq!(tcb.info().fast_recoveries, 0);
    assert_eq!(tcb.info().snd_ssthresh, usize::MAX);
    check_loss_state(&tcb);
}
