//! Timers: retransmission timeout with backoff and give-up (RFC 6298, TCP_USER_TIMEOUT), the
//! tail loss probe (RFC 8985 §7), persist and zero-window probes (RFC 9293 §3.8.6.1),
//! keepalive (RFC 1122 §4.2.3.6), idle restart (RFC 5681 §4.1), and `poll_at`.

use super::*;
use crate::socket::tcp::timer::Timer;
use crate::socket::Errno;

fn ack(ack: usize, window: u16) -> TcpRepr<'static> {
    TcpRepr { ack_number: Some(LOCAL_SEQ + ack), window_len: window, ..SEND_TEMPL }
}

// ===================================================================================
// Retransmission timeout
// ===================================================================================

#[test]
fn rto_retransmits_with_exponential_backoff_then_gives_up() {
    let config = TcpConfig { max_retransmits: 3, ..config() };
    let mut tcb = established_with(&config, &options(&config));
    tcb.send(b"hello").unwrap();
    let segment = TcpRepr { flags: ACK | PSH, payload: b"hello", ..RECV_TEMPL };
    recv!(tcb, segment);
    // The handshake measured 0 ms, so the RTO starts at the 200 ms floor.
    for (i, wait_ms) in [200, 400, 800].into_iter().enumerate() {
        assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(wait_ms));
        recv!(tcb, segment);
        recv_nothing!(tcb);
        let info = tcb.info();
        assert_eq!(info.backoff, i as u32 + 1);
        assert_eq!(info.timeouts, i as u64 + 1);
        assert_eq!(info.total_retrans, i as u64 + 1);
    }
    assert_eq!(tcb.info().snd_cwnd, MSS, "the loss window is one segment");
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(1600));
    assert_eq!(tcb.state(), TcpState::Closed);
    recv_nothing!(tcb);
    assert!(tcb.readiness().error);
    assert_eq!(tcb.send(b"x"), Err(Errno::TimedOut));
}

#[test]
fn rto_soft_error_replaces_timed_out() {
    let config = TcpConfig { max_retransmits: 0, ..config() };
    let mut tcb = established_with(&config, &options(&config));
    tcb.send(b"hello").unwrap();
    tcb.emitted_all();
    let now = tcb.now;
    tcb.on_icmp_unreachable(now, Errno::NetUnreachable);
    assert_eq!(tcb.state(), TcpState::Established);
    tcb.advance_to_next_timer();
    assert_eq!(tcb.take_error(), Some(Errno::NetUnreachable));
}

#[test]
fn soft_error_alone_is_reported_by_take_error() {
    let mut tcb = established();
    let now = tcb.now;
    tcb.on_icmp_unreachable(now, Errno::HostUnreachable);
    assert!(!tcb.readiness().error, "a soft error is no POLLERR");
    assert_eq!(tcb.take_error(), Some(Errno::HostUnreachable));
    assert_eq!(tcb.take_error(), None);
}

#[test]
fn rto_go_back_n_resends_everything_outstanding() {
    let mut tcb = established();
    let data = pattern(0, 4380);
    tcb.send(&data).unwrap();
    assert_eq!(tcb.emitted_all().len(), 3);
    tcb.advance_to_next_timer();
    // cwnd is one segment after the timeout: the first segment only.
    recv!(tcb, TcpRepr { payload: &data[..1460], ..RECV_TEMPL });
    recv_nothing!(tcb);
    // Its ACK lets the next two go (slow start from one segment).
    send!(tcb, ack(1461, REMOTE_WINDOW));
    recv!(tcb, TcpRepr { seq_number: LOCAL_SEQ + 1461, payload: &data[1460..2920], ..RECV_TEMPL });
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 2921,
            flags: ACK | PSH,
            payload: &data[2920..],
            ..RECV_TEMPL
        }
    );
    assert_eq!(tcb.info().total_retrans, 3);
}

#[test]
fn rto_ack_beyond_a_pulled_back_snd_nxt_is_taken() {
    let mut tcb = established();
    let data = pattern(0, 4380);
    tcb.send(&data).unwrap();
    tcb.emitted_all();
    tcb.advance_to_next_timer();
    tcb.emitted_all();
    // The originals had arrived after all: the ACK covers what was not resent yet.
    send!(tcb, ack(4381, REMOTE_WINDOW));
    recv_nothing!(tcb);
    assert_eq!(tcb.info().unacked, 0);
    assert_eq!(tcb.poll_at(), None);
}

#[test]
fn new_ack_restarts_the_timer_and_forgets_the_backoff() {
    let mut tcb = established();
    tcb.send(&pattern(0, 2920)).unwrap();
    tcb.emitted_all();
    tcb.advance_to_next_timer();
    tcb.emitted_all();
    assert_eq!(tcb.info().backoff, 1);
    tcb.advance(Duration::from_millis(100));
    send!(tcb, ack(1461, REMOTE_WINDOW));
    assert_eq!(tcb.info().backoff, 0);
    assert_eq!(tcb.timers.get(Timer::Retransmit), Some(tcb.now + tcb.info().rto));
    send!(tcb, ack(2921, REMOTE_WINDOW));
    assert!(!tcb.timers.is_armed(Timer::Retransmit));
}

#[test]
fn user_timeout_ends_the_connection_early() {
    let config = config();
    let options = SocketOptions { user_timeout: Some(Duration::from_secs(1)), ..options(&config) };
    let mut tcb = established_with(&config, &options);
    tcb.send(b"hello").unwrap();
    tcb.emitted_all();
    // 200 ms, then 400 ms; the third wait is cut from 800 ms to the user timeout.
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(200));
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(400));
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(400));
    assert_eq!(tcb.now, Instant::from_millis(1000));
    assert_eq!(tcb.state(), TcpState::Closed);
    assert_eq!(tcb.take_error(), Some(Errno::TimedOut));
}

/// ESTABLISHED with timestamps (the peer's TSval 501; ours is the time in ms).
fn with_timestamps() -> Tcb {
    let config = config();
    let mut tcb = syn_received_with(&config, &options(&config), &their_full_syn(500));
    tcb.emitted_all();
    send!(
        tcb,
        TcpRepr { options: TcpOptions { timestamp: Some((501, 0)), ..NO_OPTIONS }, ..SEND_TEMPL }
    );
    tcb
}

fn ts_ack(ack: usize, tsecr: u32) -> TcpRepr<'static> {
    TcpRepr {
        ack_number: Some(LOCAL_SEQ + ack),
        options: TcpOptions { timestamp: Some((600, tsecr)), ..NO_OPTIONS },
        ..SEND_TEMPL
    }
}

#[test]
fn eifel_spurious_timeout_is_undone() {
    let mut tcb = with_timestamps();
    tcb.advance(Duration::from_millis(10));
    let data = pattern(0, 3 * 1448);
    tcb.send(&data).unwrap();
    assert_eq!(tcb.emitted_all().len(), 3);
    let cwnd = tcb.info().snd_cwnd;
    // Two RTTs (here the 2 ms margin alone) without an ACK: a tail loss probe, then the timeout.
    tcb.advance_to_next_timer();
    assert_eq!(tcb.emitted_all().len(), 1, "the loss probe");
    tcb.advance_to_next_timer();
    assert_eq!(tcb.now, Instant::from_millis(212));
    assert_eq!(tcb.emitted_all().len(), 1, "the timeout resends one segment");
    assert_eq!(tcb.info().snd_cwnd, 1448);
    // The ACK echoes the original's TSval (10), not the retransmission's (212): the original
    // arrived. The window comes back, and segments 2 and 3 are not sent again.
    send!(tcb, ts_ack(1449, 10));
    // Restored, then grown by the segment this ACK covers (slow start).
    assert_eq!(tcb.info().snd_cwnd, cwnd + 1448);
    assert_eq!(tcb.spurious_retransmits, 1);
    recv_nothing!(tcb);
    send!(tcb, ts_ack(3 * 1448 + 1, 10));
    assert_eq!(tcb.info().unacked, 0);
}

#[test]
fn eifel_genuine_timeout_keeps_the_reduction() {
    let mut tcb = with_timestamps();
    tcb.advance(Duration::from_millis(10));
    tcb.send(&pattern(0, 3 * 1448)).unwrap();
    tcb.emitted_all();
    tcb.advance_to_next_timer(); // the loss probe
    tcb.emitted_all();
    tcb.advance_to_next_timer(); // the timeout
    tcb.emitted_all();
    // Echoing the retransmission's TSval: it was needed.
    send!(tcb, ts_ack(1449, 212));
    assert_eq!(tcb.spurious_retransmits, 0);
    assert!(tcb.info().snd_cwnd < 3 * 1448);
    // The retransmission continues with the next segment.
    let resent = tcb.emitted_all();
    assert_eq!(resent[0].repr.seq_number, LOCAL_SEQ + 1449);
}

// ===================================================================================
// Tail loss probe (RFC 8985 §7)
// ===================================================================================

/// `with_timestamps` with three segments sent at 10 ms. The handshake measured 0 ms, so the
/// probe timeout is the 2 ms margin alone.
fn three_segments_out() -> Tcb {
    let mut tcb = with_timestamps();
    tcb.advance(Duration::from_millis(10));
    tcb.send(&pattern(0, 3 * 1448)).unwrap();
    assert_eq!(tcb.emitted_all().len(), 3);
    tcb
}

#[test]
fn loss_probe_resends_the_last_segment_and_its_ack_shows_the_repaired_loss() {
    let mut tcb = three_segments_out();
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(2));
    let probe = tcb.emitted_all();
    assert_eq!((probe.len(), tcb.stats.loss_probes), (1, 1));
    assert_eq!(probe[0].repr.seq_number, LOCAL_SEQ + 1 + 2 * 1448);
    assert_eq!(probe[0].payload, pattern(2 * 1448, 1448));
    // Only one probe until it is answered; the retransmission timer runs from the probe.
    assert_eq!(tcb.timers.get(Timer::LossProbe), None);
    assert_eq!(tcb.timers.get(Timer::Retransmit), Some(Instant::from_millis(212)));
    // The last segment had been lost: the ACK echoes the probe's TSval (12 ms). Nothing timed
    // out, but the window reacts as fast recovery would have.
    let cwnd = tcb.info().snd_cwnd;
    send!(tcb, ts_ack(3 * 1448 + 1, 12));
    assert_eq!(tcb.stats.probe_recoveries, 1);
    assert!(tcb.info().snd_cwnd < cwnd && tcb.info().snd_ssthresh < usize::MAX);
    assert_eq!(tcb.info().timeouts, 0);
}

#[test]
fn loss_probe_answered_by_the_original_changes_nothing() {
    let mut tcb = three_segments_out();
    tcb.advance_to_next_timer();
    assert_eq!(tcb.emitted_all().len(), 1);
    // The ACK echoes the original's TSval (10 ms): the probe was not needed.
    send!(tcb, ts_ack(3 * 1448 + 1, 10));
    assert_eq!(tcb.stats.probe_recoveries, 0);
    assert_eq!(tcb.info().snd_ssthresh, usize::MAX);
    assert_eq!(tcb.tlp_end, None);
}

#[test]
fn loss_probe_sends_new_data_when_there_is_some() {
    let mut tcb = with_timestamps();
    tcb.advance(Duration::from_millis(10));
    // Twelve segments queued, ten (the initial window) sent.
    tcb.send(&pattern(0, 12 * 1448)).unwrap();
    assert_eq!(tcb.emitted_all().len(), 10);
    tcb.advance_to_next_timer();
    let probe = tcb.emitted_all();
    assert_eq!(probe.len(), 1, "one probe, whatever the congestion window");
    assert_eq!(probe[0].repr.seq_number, LOCAL_SEQ + 1 + 10 * 1448);
    assert!(!tcb.tlp_retransmitted);
    // Its ACK ends the probe episode without a reduction.
    send!(tcb, ts_ack(11 * 1448 + 1, 12));
    assert_eq!((tcb.tlp_end, tcb.stats.probe_recoveries), (None, 0));
}

/// A tail loss: the first of three segments lost. The probe draws a SACK, RACK deems the first
/// segment lost, and fast recovery repairs it: no timeout.
#[test]
fn loss_probe_turns_a_tail_loss_into_fast_recovery() {
    let mut tcb = three_segments_out();
    tcb.advance_to_next_timer();
    assert_eq!(tcb.emitted_all().len(), 1);
    tcb.advance(Duration::from_millis(10));
    let sack = TcpOptions {
        timestamp: Some((600, 10)),
        ..sack(&[((LOCAL_SEQ + 1449).0, (LOCAL_SEQ + 1 + 3 * 1448).0)])
    };
    send!(tcb, TcpRepr { options: sack, ..ts_ack(1, 10) });
    let resent = tcb.emitted_all();
    assert_eq!(resent[0].repr.seq_number, LOCAL_SEQ + 1);
    let info = tcb.info();
    assert_eq!((info.fast_recoveries, info.timeouts), (1, 0));
}

/// With SACK, a timeout resends what is outstanding through recovery, skipping what the peer
/// then SACKs; the loss probe is not armed again until the timeout recovery is over.
#[test]
fn timeout_with_sack_resends_in_order_and_skips_what_is_sacked() {
    let mut tcb = three_segments_out();
    tcb.advance_to_next_timer(); // the probe
    tcb.emitted_all();
    tcb.advance_to_next_timer(); // the timeout
    assert_eq!(tcb.recovery, Some(crate::socket::tcp::Recovery::Timeout));
    let resent = tcb.emitted_all();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].repr.seq_number, LOCAL_SEQ + 1);
    // The peer had the third segment: SACKed with the ACK of the first, it is not resent.
    let sack = TcpOptions {
        timestamp: Some((600, 212)),
        ..sack(&[((LOCAL_SEQ + 1 + 2 * 1448).0, (LOCAL_SEQ + 1 + 3 * 1448).0)])
    };
    send!(tcb, TcpRepr { options: sack, ..ts_ack(1449, 212) });
    let resent = tcb.emitted_all();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].repr.seq_number, LOCAL_SEQ + 1449);
    send!(tcb, ts_ack(3 * 1448 + 1, 212));
    assert_eq!(tcb.recovery, None);
    check_loss_state(&tcb);
}

// ===================================================================================
// Persist and zero-window probes
// ===================================================================================

#[test]
fn zero_window_probes_back_off_and_never_give_up_while_answered() {
    let config = TcpConfig { max_retransmits: 3, ..config() };
    let mut tcb = established_with(&config, &options(&config));
    send!(tcb, ack(1, 0));
    tcb.send(b"abc").unwrap();
    recv_nothing!(tcb);
    let probe = TcpRepr { payload: b"a", ..RECV_TEMPL };
    let mut expected_wait = 200;
    for _ in 0..8 {
        assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(expected_wait));
        recv!(tcb, probe);
        recv_nothing!(tcb);
        // "Still no room."
        send!(tcb, ack(1, 0));
        recv_nothing!(tcb);
        expected_wait = (expected_wait * 2).min(120_000);
    }
    assert_eq!(tcb.state(), TcpState::Established);
    assert_eq!(tcb.info().fast_recoveries, 0, "probe answers are no duplicate ACKs");
    // The window opens: everything goes, the probe byte again first.
    send!(tcb, ack(1, REMOTE_WINDOW));
    recv!(tcb, TcpRepr { flags: ACK | PSH, payload: b"abc", ..RECV_TEMPL });
}

#[test]
fn zero_window_probe_accepted_moves_on() {
    let mut tcb = established();
    send!(tcb, ack(1, 0));
    tcb.send(b"abc").unwrap();
    recv_nothing!(tcb);
    tcb.advance_to_next_timer();
    recv!(tcb, TcpRepr { payload: b"a", ..RECV_TEMPL });
    // The peer took the byte but is full again.
    send!(tcb, ack(2, 0));
    tcb.advance_to_next_timer();
    recv!(tcb, TcpRepr { seq_number: LOCAL_SEQ + 2, payload: b"b", ..RECV_TEMPL });
}

#[test]
fn unanswered_zero_window_probes_give_up() {
    let config = TcpConfig { max_retransmits: 3, ..config() };
    let mut tcb = established_with(&config, &options(&config));
    send!(tcb, ack(1, 0));
    tcb.send(b"abc").unwrap();
    recv_nothing!(tcb);
    for _ in 0..3 {
        tcb.advance_to_next_timer();
        assert_eq!(tcb.emitted_all().len(), 1);
    }
    tcb.advance_to_next_timer();
    assert_eq!(tcb.state(), TcpState::Closed);
    assert_eq!(tcb.take_error(), Some(Errno::TimedOut));
}

#[test]
fn persist_pushes_data_held_by_sender_sws_avoidance() {
    let mut tcb = established();
    tcb.send(&pattern(0, 5000)).unwrap();
    send!(tcb, ack(1, 500));
    recv_nothing!(tcb);
    tcb.advance_to_next_timer();
    recv!(tcb, TcpRepr { payload: &pattern(0, 500), ..RECV_TEMPL });
}

#[test]
fn window_shrunk_to_zero_under_outstanding_data_is_probed() {
    let mut tcb = established();
    tcb.send(&pattern(0, 2920)).unwrap();
    tcb.emitted_all();
    // The peer took the first segment and has no room left.
    send!(tcb, ack(1461, 0));
    tcb.advance_to_next_timer();
    recv!(tcb, TcpRepr { seq_number: LOCAL_SEQ + 1461, payload: &pattern(1460, 1), ..RECV_TEMPL });
    assert!(tcb.timers.is_armed(Timer::Persist));
    assert_eq!(tcb.info().timeouts, 0, "not counted as a timeout");
    send!(tcb, ack(1461, REMOTE_WINDOW));
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 1461,
            flags: ACK | PSH,
            payload: &pattern(1460, 1460),
            ..RECV_TEMPL
        }
    );
}

#[test]
fn lone_fin_into_a_zero_window_is_retransmitted_and_given_up() {
    let config = TcpConfig { max_retransmits: 2, ..config() };
    let mut tcb = established_with(&config, &options(&config));
    send!(tcb, ack(1, 0));
    let now = tcb.now;
    tcb.shutdown_write(now).unwrap();
    let fin = TcpRepr { flags: ACK | FIN, ..RECV_TEMPL };
    recv!(tcb, fin);
    for wait in [200, 400] {
        assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(wait));
        recv!(tcb, fin);
    }
    tcb.advance_to_next_timer();
    assert_eq!(tcb.state(), TcpState::Closed);
}

// ===================================================================================
// Keepalive
// ===================================================================================

fn keepalive_tcb() -> Tcb {
    let config = config();
    let options = SocketOptions {
        keepalive: true,
        keep_idle: Duration::from_secs(10),
        keep_interval: Duration::from_secs(1),
        keep_count: 3,
        ..options(&config)
    };
    established_with(&config, &options)
}

/// A keepalive probe: one sequence number back, no data.
const PROBE: TcpRepr<'static> = TcpRepr { seq_number: LOCAL_SEQ, ..RECV_TEMPL };

#[test]
fn keepalive_probes_then_times_out() {
    let mut tcb = keepalive_tcb();
    recv_nothing!(tcb);
    for wait in [10, 1, 1] {
        assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(wait));
        recv!(tcb, PROBE);
        recv_nothing!(tcb);
    }
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(1));
    assert_eq!(tcb.state(), TcpState::Closed);
    assert_eq!(tcb.take_error(), Some(Errno::TimedOut));
}

#[test]
fn keepalive_answer_restarts_the_idle_wait() {
    let mut tcb = keepalive_tcb();
    tcb.advance_to_next_timer();
    recv!(tcb, PROBE);
    send!(tcb, SEND_TEMPL);
    recv_nothing!(tcb);
    // The pending 1 s deadline finds the peer alive and waits the idle time again.
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(1));
    recv_nothing!(tcb);
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(9));
    recv!(tcb, PROBE);
}

#[test]
fn keepalive_idle_counts_from_the_last_segment() {
    let mut tcb = keepalive_tcb();
    tcb.advance(Duration::from_secs(6));
    send!(tcb, TcpRepr { payload: b"x", ..SEND_TEMPL });
    tcb.emitted_all();
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(4));
    recv_nothing!(tcb);
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(6));
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ,
            ack_number: Some(REMOTE_SEQ + 2),
            window_len: 63_999,
            ..RECV_TEMPL
        }
    );
}

#[test]
fn keepalive_enabled_later_by_set_options() {
    let mut tcb = established();
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), None);
    let options =
        SocketOptions { keepalive: true, keep_idle: Duration::from_secs(5), ..tcb.options.clone() };
    let now = tcb.now;
    tcb.set_options(now, &options);
    assert_eq!(tcb.timers.get(Timer::KeepAlive), Some(Instant::from_millis(5000)));
    let options = SocketOptions { keepalive: false, ..options };
    tcb.set_options(now, &options);
    assert!(!tcb.timers.is_armed(Timer::KeepAlive));
}

// ===================================================================================
// Idle restart and poll_at
// ===================================================================================

#[test]
fn idle_connection_restarts_from_the_initial_window() {
    let mut tcb = established();
    let data = pattern(0, 30_000);
    tcb.send(&data[..14_600]).unwrap();
    assert_eq!(tcb.emitted_all().len(), 10);
    send!(tcb, ack(14_601, REMOTE_WINDOW));
    assert!(tcb.info().snd_cwnd > 14_600);
    tcb.advance(Duration::from_secs(10));
    tcb.send(&data[14_600..]).unwrap();
    assert_eq!(tcb.emitted_all().len(), 10, "restart window after idle");
}

#[test]
fn poll_at_is_now_while_output_waits_then_the_next_deadline() {
    let mut tcb = established();
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), None);
    tcb.now = Instant::from_millis(5);
    send!(tcb, TcpRepr { payload: b"x", ..SEND_TEMPL });
    assert_eq!(tcb.poll_at(), Some(Instant::from_millis(5)));
    tcb.emitted_all();
    assert_eq!(tcb.poll_at(), None);
    tcb.send(b"y").unwrap();
    assert!(tcb.poll_at().is_some());
    tcb.emitted_all();
    assert_eq!(tcb.poll_at(), Some(Instant::from_millis(205)));
}
