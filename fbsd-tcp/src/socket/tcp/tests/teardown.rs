//! Closing: FIN-WAIT-1, FIN-WAIT-2, CLOSING, TIME-WAIT (active close), CLOSE-WAIT, LAST-ACK
//! (passive close), simultaneous close, TIME-WAIT reuse (RFC 9293 §3.10.7.4 note, RFC 6191),
//! and the aborts (close with unread data or linger 0, RFC 2525 §2.17; abort; data after close).

use super::*;
use crate::socket::Errno;

/// Our window once the peer's FIN took a sequence number (the right edge does not move).
const AFTER_FIN: u16 = 63_999;

/// Our FIN after `established()` with nothing sent.
const OUR_FIN: TcpRepr<'static> = TcpRepr { flags: TcpFlags(ACK.0 | FIN.0), ..RECV_TEMPL };
/// The peer's FIN, acknowledging nothing of ours beyond the handshake.
const THEIR_FIN: TcpRepr<'static> = TcpRepr { flags: TcpFlags(ACK.0 | FIN.0), ..SEND_TEMPL };

/// FIN-WAIT-1: we closed, our FIN is out.
fn fin_wait_1() -> Tcb {
    let mut tcb = established();
    let now = tcb.now;
    tcb.close(now);
    assert_eq!(tcb.state(), TcpState::FinWait1);
    recv!(tcb, OUR_FIN);
    tcb
}

/// FIN-WAIT-2: our FIN acknowledged.
fn fin_wait_2() -> Tcb {
    let mut tcb = fin_wait_1();
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2), ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::FinWait2);
    recv_nothing!(tcb);
    tcb
}

/// TIME-WAIT after an active close.
fn time_wait() -> Tcb {
    let mut tcb = fin_wait_2();
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2), ..THEIR_FIN });
    assert_eq!(tcb.state(), TcpState::TimeWait);
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 2,
            ack_number: Some(REMOTE_SEQ + 2),
            window_len: AFTER_FIN,
            ..RECV_TEMPL
        }
    );
    tcb
}

/// CLOSE-WAIT: the peer closed first.
fn close_wait() -> Tcb {
    let mut tcb = established();
    send!(tcb, THEIR_FIN);
    assert_eq!(tcb.state(), TcpState::CloseWait);
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 2), window_len: AFTER_FIN, ..RECV_TEMPL });
    tcb
}

/// LAST-ACK: then we closed.
fn last_ack() -> Tcb {
    let mut tcb = close_wait();
    let now = tcb.now;
    tcb.close(now);
    assert_eq!(tcb.state(), TcpState::LastAck);
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 2), window_len: AFTER_FIN, ..OUR_FIN });
    tcb
}

// ===================================================================================
// FIN-WAIT-1
// ===================================================================================

#[test]
fn fin_wait_1_fin_follows_buffered_data() {
    let mut tcb = established();
    tcb.send(b"last words").unwrap();
    let now = tcb.now;
    tcb.shutdown_write(now).unwrap();
    assert_eq!(tcb.state(), TcpState::FinWait1);
    recv!(tcb, TcpRepr { flags: ACK | PSH | FIN, payload: b"last words", ..RECV_TEMPL });
    assert_eq!(tcb.send(b"more"), Err(Errno::BrokenPipe));
    assert!(tcb.readiness().writable, "a shut-down socket does not block writers");
    assert!(!tcb.readiness().hangup);
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 11), ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::FinWait1, "FIN not yet acknowledged");
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 12), ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::FinWait2);
}

#[test]
fn fin_wait_1_fin_and_ack_together_go_to_time_wait() {
    let mut tcb = fin_wait_1();
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2), ..THEIR_FIN });
    assert_eq!(tcb.state(), TcpState::TimeWait);
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 2,
            ack_number: Some(REMOTE_SEQ + 2),
            window_len: AFTER_FIN,
            ..RECV_TEMPL
        }
    );
}

#[test]
fn fin_wait_1_still_receives_data() {
    let mut tcb = established();
    let now = tcb.now;
    tcb.shutdown_write(now).unwrap();
    recv!(tcb, OUR_FIN);
    send!(tcb, TcpRepr { payload: b"reply", ..SEND_TEMPL });
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 2,
            ack_number: Some(REMOTE_SEQ + 6),
            window_len: 63_995,
            ..RECV_TEMPL
        }
    );
    let mut buf = [0; 8];
    assert_eq!(tcb.recv(&mut buf), Ok(5));
}

#[test]
fn fin_wait_1_retransmits_fin() {
    let mut tcb = fin_wait_1();
    // The handshake measured 0 ms: the RTO is the 200 ms floor.
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(200));
    recv!(tcb, OUR_FIN);
    assert_eq!(tcb.info().total_retrans, 1);
}

// ===================================================================================
// Simultaneous close (RFC 9293 figure 13)
// ===================================================================================

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut tcb = fin_wait_1();
    // Their FIN crosses ours: it does not acknowledge our FIN.
    send!(tcb, THEIR_FIN);
    assert_eq!(tcb.state(), TcpState::Closing);
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 2,
            ack_number: Some(REMOTE_SEQ + 2),
            window_len: AFTER_FIN,
            ..RECV_TEMPL
        }
    );
    // An ACK that does not cover our FIN leaves us in CLOSING.
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 2, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Closing);
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 2, ack_number: Some(LOCAL_SEQ + 2), ..SEND_TEMPL }
    );
    assert_eq!(tcb.state(), TcpState::TimeWait);
    recv_nothing!(tcb);
}

#[test]
fn closing_retransmits_fin_until_acknowledged() {
    let mut tcb = fin_wait_1();
    send!(tcb, THEIR_FIN);
    tcb.emitted_all();
    tcb.advance_to_next_timer();
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 2), window_len: AFTER_FIN, ..OUR_FIN });
}

// ===================================================================================
// FIN-WAIT-2
// ===================================================================================

#[test]
fn fin_wait_2_orphan_times_out() {
    let mut tcb = fin_wait_2();
    assert_eq!(tcb.poll_at(), Some(Instant::ZERO + Duration::from_secs(60)));
    tcb.advance(Duration::from_secs(60));
    assert_eq!(tcb.state(), TcpState::Closed);
    assert!(tcb.is_finished());
    recv_nothing!(tcb);
}

#[test]
fn fin_wait_2_after_shutdown_waits_forever() {
    let mut tcb = established();
    let now = tcb.now;
    tcb.shutdown_write(now).unwrap();
    recv!(tcb, OUR_FIN);
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2), ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::FinWait2);
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), None);
    // Closing now starts the orphan timeout.
    tcb.advance(Duration::from_secs(1000));
    let now = tcb.now;
    tcb.close(now);
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), Some(now + Duration::from_secs(60)));
}

#[test]
fn fin_wait_2_orphan_receiving_data_resets() {
    let mut tcb = fin_wait_2();
    send!(
        tcb,
        TcpRepr { ack_number: Some(LOCAL_SEQ + 2), payload: b"nobody reads this", ..SEND_TEMPL }
    );
    assert_eq!(tcb.state(), TcpState::Closed);
    recv!(
        tcb,
        TcpRepr { seq_number: LOCAL_SEQ + 2, flags: RST | ACK, window_len: 0, ..RECV_TEMPL }
    );
    assert!(tcb.is_finished());
}

// ===================================================================================
// TIME-WAIT
// ===================================================================================

#[test]
fn time_wait_lasts_two_msl() {
    let mut tcb = time_wait();
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), Some(Instant::ZERO + Duration::from_secs(60)));
    assert!(tcb.readiness().hangup);
    tcb.advance(Duration::from_secs(59));
    assert_eq!(tcb.state(), TcpState::TimeWait);
    tcb.advance(Duration::from_secs(1));
    assert_eq!(tcb.state(), TcpState::Closed);
    assert!(tcb.is_finished());
}

#[test]
fn time_wait_acks_a_retransmitted_fin_and_restarts() {
    let mut tcb = time_wait();
    tcb.advance(Duration::from_secs(30));
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2), ..THEIR_FIN });
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 2,
            ack_number: Some(REMOTE_SEQ + 2),
            window_len: AFTER_FIN,
            ..RECV_TEMPL
        }
    );
    recv_nothing!(tcb);
    assert_eq!(tcb.poll_at(), Some(Instant::ZERO + Duration::from_secs(90)));
}

#[test]
fn time_wait_ignores_rst() {
    let mut tcb = time_wait();
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 2, flags: RST, ack_number: None, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::TimeWait);
    recv_nothing!(tcb);
}

#[test]
fn time_wait_ignores_stray_acks() {
    let mut tcb = time_wait();
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 2, ack_number: Some(LOCAL_SEQ + 2), ..SEND_TEMPL }
    );
    recv_nothing!(tcb);
}

#[test]
fn time_wait_reopens_for_a_syn_above_rcv_nxt() {
    let mut tcb = time_wait();
    let syn = TcpRepr { seq_number: REMOTE_SEQ + 100_000, ..their_syn() };
    send!(tcb, syn, SegmentOutcome::ReopenFromTimeWait);
    // One at or below RCV.NXT may be an old duplicate: ACK (challenge), stay.
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 1, ..their_syn() });
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ + 2,
            ack_number: Some(REMOTE_SEQ + 2),
            window_len: AFTER_FIN,
            ..RECV_TEMPL
        }
    );
    assert_eq!(tcb.state(), TcpState::TimeWait);
}

#[test]
fn time_wait_reopens_for_a_newer_timestamp() {
    let config = config();
    let mut tcb = syn_received_with(&config, &options(&config), &their_full_syn(500));
    tcb.emitted_all();
    let ts = |val| TcpOptions { timestamp: Some((val, 0)), ..NO_OPTIONS };
    send!(tcb, TcpRepr { options: ts(501), ..SEND_TEMPL });
    let now = tcb.now;
    tcb.close(now);
    tcb.emitted_all();
    send!(tcb, TcpRepr { ack_number: Some(LOCAL_SEQ + 2), options: ts(502), ..THEIR_FIN });
    assert_eq!(tcb.state(), TcpState::TimeWait);
    tcb.emitted_all();
    // RFC 6191: a newer TSval is enough, whatever the sequence number...
    let syn = |seq, tsval| TcpRepr { seq_number: seq, options: ts(tsval), ..their_syn() };
    send!(tcb, syn(REMOTE_SEQ - 5000, 503), SegmentOutcome::ReopenFromTimeWait);
    // ... and an older one is refused even with a higher sequence number.
    send!(tcb, syn(REMOTE_SEQ + 5000, 400));
    assert!(tcb.emitted().is_some());
}

#[test]
fn time_wait_abort_deletes_quietly() {
    let mut tcb = time_wait();
    let now = tcb.now;
    tcb.abort(now);
    assert!(tcb.is_finished());
    recv_nothing!(tcb);
}

// ===================================================================================
// CLOSE-WAIT and LAST-ACK
// ===================================================================================

#[test]
fn close_wait_reads_eof_and_may_still_send() {
    let mut tcb = established();
    send!(tcb, TcpRepr { flags: ACK | FIN, payload: b"bye", ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::CloseWait);
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 5), window_len: 63_996, ..RECV_TEMPL });
    let readiness = tcb.readiness();
    assert!(readiness.readable && readiness.read_closed && readiness.writable && !readiness.hangup);
    let mut buf = [0; 8];
    assert_eq!(tcb.recv(&mut buf), Ok(3));
    assert_eq!(tcb.recv(&mut buf), Ok(0));
    assert_eq!(tcb.recv(&mut buf), Ok(0));
    tcb.send(b"ok").unwrap();
    recv!(
        tcb,
        TcpRepr {
            flags: ACK | PSH,
            ack_number: Some(REMOTE_SEQ + 5),
            window_len: 63_996,
            payload: b"ok",
            ..RECV_TEMPL
        }
    );
}

#[test]
fn close_wait_duplicate_fin_is_acked() {
    let mut tcb = close_wait();
    send!(tcb, THEIR_FIN);
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 2), window_len: AFTER_FIN, ..RECV_TEMPL });
    assert_eq!(tcb.state(), TcpState::CloseWait);
}

#[test]
fn last_ack_closes_on_the_ack_of_our_fin() {
    let mut tcb = last_ack();
    assert!(tcb.readiness().hangup);
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 2, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::LastAck);
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 2, ack_number: Some(LOCAL_SEQ + 2), ..SEND_TEMPL }
    );
    assert_eq!(tcb.state(), TcpState::Closed);
    assert!(tcb.is_finished());
    recv_nothing!(tcb);
}

#[test]
fn last_ack_retransmits_fin_then_gives_up() {
    let config = TcpConfig { max_retransmits: 2, ..config() };
    let mut tcb = established_with(&config, &options(&config));
    send!(tcb, THEIR_FIN);
    let now = tcb.now;
    tcb.close(now);
    tcb.emitted_all();
    let fin = TcpRepr { ack_number: Some(REMOTE_SEQ + 2), window_len: AFTER_FIN, ..OUR_FIN };
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(200));
    recv!(tcb, fin);
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_millis(400));
    recv!(tcb, fin);
    tcb.advance_to_next_timer();
    assert_eq!(tcb.state(), TcpState::Closed);
    recv_nothing!(tcb);
}

#[test]
fn last_ack_reset_closes() {
    let mut tcb = last_ack();
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ + 2, flags: RST, ack_number: None, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Closed);
}

// ===================================================================================
// Aborts
// ===================================================================================

#[test]
fn close_with_unread_data_resets() {
    let mut tcb = established();
    send!(tcb, TcpRepr { payload: b"unread", ..SEND_TEMPL });
    tcb.emitted_all();
    let now = tcb.now;
    tcb.close(now);
    assert_eq!(tcb.state(), TcpState::Closed);
    assert!(!tcb.is_finished());
    recv!(
        tcb,
        TcpRepr { flags: RST | ACK, ack_number: Some(REMOTE_SEQ + 7), window_len: 0, ..RECV_TEMPL }
    );
    assert!(tcb.is_finished());
}

#[test]
fn close_with_linger_zero_resets() {
    let config = config();
    let options = SocketOptions { linger: Some(Duration::ZERO), ..options(&config) };
    let mut tcb = established_with(&config, &options);
    tcb.send(b"discarded").unwrap();
    tcb.emitted_all();
    let now = tcb.now;
    tcb.close(now);
    // SEQ is SND.MAX: the peer's RCV.NXT if everything arrived (RFC 5961 then accepts it).
    recv!(
        tcb,
        TcpRepr { seq_number: LOCAL_SEQ + 10, flags: RST | ACK, window_len: 0, ..RECV_TEMPL }
    );
    recv_nothing!(tcb);
}

#[test]
fn abort_in_close_wait_resets_and_last_ack_does_not() {
    let mut tcb = close_wait();
    let now = tcb.now;
    tcb.abort(now);
    recv!(
        tcb,
        TcpRepr { flags: RST | ACK, ack_number: Some(REMOTE_SEQ + 2), window_len: 0, ..RECV_TEMPL }
    );
    let mut tcb = last_ack();
    let now = tcb.now;
    tcb.abort(now);
    recv_nothing!(tcb);
    assert!(tcb.is_finished());
}

#[test]
fn segments_to_a_closed_tcb_draw_resets() {
    let mut tcb = established();
    let now = tcb.now;
    tcb.abort(now);
    tcb.emitted_all();
    send!(tcb, TcpRepr { payload: b"late", ..SEND_TEMPL }, SegmentOutcome::SendReset);
    send!(tcb, TcpRepr { flags: RST, ..SEND_TEMPL });
}

#[test]
fn reset_reply_follows_rfc_9293() {
    use super::super::reset_reply;
    let with_ack = TcpRepr { payload: b"data", ..SEND_TEMPL };
    assert_eq!(
        reset_reply(&with_ack),
        Some(TcpRepr {
            seq_number: LOCAL_SEQ + 1,
            ack_number: None,
            flags: RST,
            window_len: 0,
            ..RECV_TEMPL
        })
    );
    let syn = their_syn();
    assert_eq!(
        reset_reply(&syn),
        Some(TcpRepr {
            seq_number: SeqNumber(0),
            ack_number: Some(REMOTE_SEQ + 1),
            flags: RST | ACK,
            window_len: 0,
            ..RECV_TEMPL
        })
    );
    let fin = TcpRepr { ack_number: None, flags: FIN, payload: b"ab", ..SEND_TEMPL };
    assert_eq!(reset_reply(&fin).unwrap().ack_number, Some(REMOTE_SEQ + 4));
    assert_eq!(reset_reply(&TcpRepr { flags: RST, ..SEND_TEMPL }), None);
}

#[test]
fn hangup_once_both_directions_are_done() {
    let mut tcb = established();
    let now = tcb.now;
    tcb.shutdown_write(now).unwrap();
    assert!(!tcb.readiness().hangup);
    send!(tcb, THEIR_FIN);
    assert!(tcb.readiness().hangup);
}
