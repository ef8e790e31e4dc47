//! Opening: SYN-SENT, SYN-RECEIVED, simultaneous open, option negotiation (RFC 9293 §3.5,
//! §3.10.7.3; RFC 7323; RFC 2018), and SYN retransmission.

use super::*;
use crate::socket::Errno;

/// The peer's SYN-ACK to our SYN, with the options given.
fn syn_ack(options: TcpOptions) -> TcpRepr<'static> {
    TcpRepr { seq_number: REMOTE_SEQ, flags: SYN | ACK, options, ..SEND_TEMPL }
}

fn mss_only() -> TcpOptions {
    TcpOptions { mss: Some(MSS as u16), ..NO_OPTIONS }
}

// ===================================================================================
// SYN-SENT
// ===================================================================================

#[test]
fn syn_sent_emits_syn_with_every_option_once() {
    let mut tcb = syn_sent();
    assert_eq!(tcb.state(), TcpState::SynSent);
    recv_nothing!(tcb);
    let readiness = tcb.readiness();
    assert!(!readiness.writable, "a connect in progress is not writable");
    assert!(!readiness.readable && !readiness.hangup && !readiness.error);
}

#[test]
fn syn_sent_syn_ack_establishes_and_acks() {
    let mut tcb = syn_sent();
    send!(tcb, syn_ack(mss_only()));
    assert_eq!(tcb.state(), TcpState::Established);
    recv!(tcb, RECV_TEMPL);
    recv_nothing!(tcb);
    let readiness = tcb.readiness();
    assert!(readiness.writable && !readiness.readable);
    let info = tcb.info();
    assert!(!info.timestamps && !info.sack);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (0, 0));
    assert_eq!(info.snd_mss, MSS);
    assert_eq!(info.snd_wnd, usize::from(REMOTE_WINDOW));
}

#[test]
fn syn_sent_negotiates_scale_sack_and_timestamps() {
    let config = TcpConfig { recv_buffer: 1 << 20, ..config() };
    let mut tcb = syn_sent_with(&config, &options(&config));
    let syn = tcb.emitted().unwrap();
    // 1 MiB needs a shift of 5 (65535 << 4 < 2^20).
    assert_eq!(syn.repr.options.window_scale, Some(5));
    assert_eq!(syn.repr.window_len, 0xffff, "a SYN's window is never scaled");
    tcb.now += Duration::from_millis(30);
    send!(
        tcb,
        syn_ack(TcpOptions {
            mss: Some(1400),
            window_scale: Some(3),
            sack_permitted: true,
            timestamp: Some((7000, 0)),
            ..NO_OPTIONS
        })
    );
    assert_eq!(tcb.state(), TcpState::Established);
    // The ACK carries the timestamp echo and a scaled window.
    recv!(
        tcb,
        TcpRepr {
            window_len: ((1 << 20) >> 5) as u16,
            options: TcpOptions { timestamp: Some((30, 7000)), ..NO_OPTIONS },
            ..RECV_TEMPL
        }
    );
    let info = tcb.info();
    assert!(info.timestamps && info.sack);
    assert_eq!((info.rcv_wscale, info.snd_wscale), (5, 3));
    assert_eq!(info.snd_wnd, usize::from(REMOTE_WINDOW), "the SYN-ACK window is unscaled");
    assert_eq!(info.snd_mss, 1400 - 12, "peer's MSS minus the timestamp option");
    // The SYN was timed: 30 ms.
    assert_eq!(info.rtt, Duration::from_millis(30));
}

#[test]
fn syn_sent_without_mss_option_assumes_536() {
    let mut tcb = syn_sent();
    send!(tcb, syn_ack(NO_OPTIONS));
    assert_eq!(tcb.info().snd_mss, 536);
}

#[test]
fn syn_sent_tiny_mss_is_raised_to_the_floor() {
    let mut tcb = syn_sent();
    send!(tcb, syn_ack(TcpOptions { mss: Some(1), ..NO_OPTIONS }));
    assert_eq!(tcb.info().snd_mss, 88);
}

#[test]
fn syn_sent_max_segment_clamps_announced_and_used_mss() {
    let config = config();
    let options = SocketOptions { max_segment: Some(1000), ..options(&config) };
    let mut tcb = syn_sent_with(&config, &options);
    let syn = tcb.emitted().unwrap();
    assert_eq!(syn.repr.options.mss, Some(1000));
    send!(tcb, syn_ack(mss_only()));
    assert_eq!(tcb.info().snd_mss, 1000);
    assert_eq!(tcb.info().rcv_mss, 1000);
}

#[test]
fn syn_sent_rst_acking_our_syn_refuses_the_connection() {
    let mut tcb = syn_sent();
    send!(tcb, TcpRepr { seq_number: SeqNumber(0), flags: RST | ACK, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Closed);
    assert!(tcb.is_finished());
    recv_nothing!(tcb);
    let readiness = tcb.readiness();
    assert!(readiness.error && readiness.hangup && readiness.writable && readiness.readable);
    assert_eq!(tcb.send(b"x"), Err(Errno::ConnectionRefused));
    assert_eq!(tcb.send(b"x"), Err(Errno::BrokenPipe));
    assert_eq!(tcb.take_error(), None);
    let mut buf = [0; 4];
    assert_eq!(tcb.recv(&mut buf), Ok(0));
}

#[test]
fn syn_sent_rst_without_ack_is_ignored() {
    let mut tcb = syn_sent();
    send!(tcb, TcpRepr { seq_number: REMOTE_SEQ, ack_number: None, flags: RST, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::SynSent);
    assert_eq!(tcb.take_error(), None);
}

#[test]
fn syn_sent_unacceptable_ack_is_answered_with_reset() {
    let mut tcb = syn_sent();
    for ack in [LOCAL_SEQ, LOCAL_SEQ + 2, LOCAL_SEQ - 100] {
        send!(
            tcb,
            TcpRepr {
                seq_number: REMOTE_SEQ,
                ack_number: Some(ack),
                flags: SYN | ACK,
                ..SEND_TEMPL
            },
            SegmentOutcome::SendReset
        );
        // ... but a bad RST is just dropped.
        send!(tcb, TcpRepr { ack_number: Some(ack), flags: RST | ACK, ..SEND_TEMPL });
    }
    assert_eq!(tcb.state(), TcpState::SynSent);
    recv_nothing!(tcb);
}

#[test]
fn syn_sent_ack_without_syn_is_dropped() {
    let mut tcb = syn_sent();
    send!(tcb, SEND_TEMPL);
    assert_eq!(tcb.state(), TcpState::SynSent);
    recv_nothing!(tcb);
}

#[test]
fn syn_sent_data_queued_before_establishment_follows_the_ack() {
    let mut tcb = syn_sent();
    assert_eq!(tcb.send(b"early"), Ok(5));
    recv_nothing!(tcb);
    send!(tcb, syn_ack(mss_only()));
    recv!(tcb, TcpRepr { flags: ACK | PSH, payload: b"early", ..RECV_TEMPL });
    recv_nothing!(tcb);
}

#[test]
fn syn_sent_data_and_fin_on_syn_ack_are_received() {
    let mut tcb = syn_sent();
    send!(
        tcb,
        TcpRepr {
            seq_number: REMOTE_SEQ,
            flags: SYN | ACK | FIN,
            options: mss_only(),
            payload: b"hi",
            ..SEND_TEMPL
        }
    );
    assert_eq!(tcb.state(), TcpState::CloseWait);
    // The right edge stays where the SYN put it: two bytes and the FIN later, 63997 remain.
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 4), window_len: 63_997, ..RECV_TEMPL });
    let mut buf = [0; 8];
    assert_eq!(tcb.recv(&mut buf), Ok(2));
    assert_eq!(&buf[..2], b"hi");
    assert_eq!(tcb.recv(&mut buf), Ok(0));
}

#[test]
fn syn_sent_retransmits_syn_with_backoff_then_times_out() {
    let config = TcpConfig { syn_retries: 3, ..config() };
    let mut tcb = syn_sent_with(&config, &options(&config));
    recv!(tcb, our_syn(0));
    // 1 s, 2 s, 4 s: three retransmissions.
    for (waited, at_ms) in [(1, 1000), (2, 3000), (4, 7000)] {
        assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(waited));
        recv!(tcb, our_syn(at_ms));
        recv_nothing!(tcb);
    }
    assert_eq!(tcb.info().total_retrans, 3);
    assert_eq!(tcb.info().timeouts, 3);
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(8));
    assert_eq!(tcb.state(), TcpState::Closed);
    recv_nothing!(tcb);
    assert_eq!(tcb.take_error(), Some(Errno::TimedOut));
    assert_eq!(tcb.poll_at(), None);
}

/// RFC 6298 §5.7: a SYN that timed out shows the initial RTO too short for the path; without an
/// RTT sample (Karn: none from a retransmitted SYN without timestamps), data starts with 3 s.
#[test]
fn syn_sent_timeout_without_a_sample_starts_data_with_a_three_second_rto() {
    let mut tcb = syn_sent();
    tcb.advance_to_next_timer();
    recv!(tcb, our_syn(1000));
    tcb.now += Duration::from_millis(30);
    send!(tcb, syn_ack(mss_only()));
    assert_eq!(tcb.state(), TcpState::Established);
    recv!(tcb, RECV_TEMPL);
    assert_eq!(tcb.info().rtt, Duration::ZERO, "no sample");
    assert_eq!(tcb.info().rto, Duration::from_secs(3));
    tcb.send(b"data").unwrap();
    recv!(tcb, TcpRepr { flags: ACK | PSH, payload: b"data", ..RECV_TEMPL });
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(3));
}

/// With timestamps the SYN-ACK echoes the retransmitted SYN's TSval: a valid sample, which
/// sets the RTO as usual.
#[test]
fn syn_sent_timeout_with_a_timestamp_sample_keeps_the_measured_rto() {
    let mut tcb = syn_sent();
    tcb.advance_to_next_timer();
    recv!(tcb, our_syn(1000));
    tcb.now += Duration::from_millis(30);
    let options = TcpOptions { timestamp: Some((700, 1000)), ..mss_only() };
    send!(tcb, syn_ack(options));
    assert_eq!(tcb.info().rtt, Duration::from_millis(30));
    assert_eq!(tcb.info().rto, Duration::from_millis(200), "30 ms + 4 × 15 ms, min_rto");
}

#[test]
fn syn_received_timeout_without_a_sample_starts_data_with_a_three_second_rto() {
    let mut tcb = syn_received();
    tcb.advance_to_next_timer();
    assert!(tcb.emitted().unwrap().repr.flags.contains(SYN));
    send!(tcb, SEND_TEMPL);
    assert_eq!(tcb.state(), TcpState::Established);
    assert_eq!(tcb.info().rto, Duration::from_secs(3));
}

#[test]
fn syn_sent_host_unreachable_fails_the_connect_at_once() {
    // As Linux's tcp_v4_err: while connecting, an unreachable (or a next hop that never
    // answered ARP) is the connect's answer, not a soft error waiting for the SYN retries.
    let mut tcb = syn_sent();
    let now = tcb.now;
    tcb.on_icmp_unreachable(now, Errno::HostUnreachable);
    assert_eq!(tcb.state(), TcpState::Closed);
    assert!(tcb.readiness().error);
    assert_eq!(tcb.take_error(), Some(Errno::HostUnreachable));
}

#[test]
fn syn_sent_port_unreachable_is_fatal() {
    let mut tcb = syn_sent();
    let now = tcb.now;
    tcb.on_icmp_unreachable(now, Errno::ConnectionRefused);
    assert_eq!(tcb.state(), TcpState::Closed);
    assert_eq!(tcb.take_error(), Some(Errno::ConnectionRefused));
}

#[test]
fn syn_sent_close_deletes_the_tcb_silently() {
    let mut tcb = syn_sent();
    let now = tcb.now;
    tcb.close(now);
    assert_eq!(tcb.state(), TcpState::Closed);
    assert!(tcb.is_finished());
    recv_nothing!(tcb);
}

#[test]
fn syn_sent_shutdown_write_sends_fin_after_establishment() {
    let mut tcb = syn_sent();
    tcb.send(b"bye").unwrap();
    let now = tcb.now;
    tcb.shutdown_write(now).unwrap();
    assert_eq!(tcb.state(), TcpState::SynSent);
    send!(tcb, syn_ack(mss_only()));
    assert_eq!(tcb.state(), TcpState::FinWait1);
    recv!(tcb, TcpRepr { flags: ACK | PSH | FIN, payload: b"bye", ..RECV_TEMPL });
}

// ===================================================================================
// Simultaneous open (RFC 9293 figure 7)
// ===================================================================================

#[test]
fn simultaneous_open() {
    let mut tcb = syn_sent();
    // Their SYN crosses ours.
    send!(
        tcb,
        TcpRepr {
            seq_number: REMOTE_SEQ,
            ack_number: None,
            flags: SYN,
            options: mss_only(),
            ..SEND_TEMPL
        }
    );
    assert_eq!(tcb.state(), TcpState::SynReceived);
    // We answer with SYN-ACK: our ISS again, now acknowledging theirs.
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ,
            flags: SYN | ACK,
            options: TcpOptions { mss: Some(MSS as u16), ..NO_OPTIONS },
            ..RECV_TEMPL
        }
    );
    assert_eq!(tcb.info().total_retrans, 0);
    // Their SYN-ACK arrives: it acknowledges our SYN, but its SYN is old news.
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ, flags: SYN | ACK, options: mss_only(), ..SEND_TEMPL }
    );
    // In SYN-RECEIVED a SYN is answered by a challenge ACK...
    assert_eq!(tcb.state(), TcpState::SynReceived);
    recv!(tcb, RECV_TEMPL);
    // ... and the peer's ACK of our SYN-ACK completes the handshake.
    send!(tcb, SEND_TEMPL);
    assert_eq!(tcb.state(), TcpState::Established);
    assert!(tcb.readiness().writable);
}

#[test]
fn simultaneous_open_then_ack_first() {
    let mut tcb = syn_sent();
    send!(
        tcb,
        TcpRepr {
            seq_number: REMOTE_SEQ,
            ack_number: None,
            flags: SYN,
            options: mss_only(),
            ..SEND_TEMPL
        }
    );
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ,
            flags: SYN | ACK,
            options: TcpOptions { mss: Some(MSS as u16), ..NO_OPTIONS },
            ..RECV_TEMPL
        }
    );
    send!(tcb, TcpRepr { payload: b"data", ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Established);
    let mut buf = [0; 8];
    assert_eq!(tcb.recv(&mut buf), Ok(4));
}

#[test]
fn simultaneous_open_reset_refuses() {
    let mut tcb = syn_sent();
    send!(
        tcb,
        TcpRepr {
            seq_number: REMOTE_SEQ,
            ack_number: None,
            flags: SYN,
            options: mss_only(),
            ..SEND_TEMPL
        }
    );
    send!(tcb, TcpRepr { flags: RST, ack_number: None, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Closed);
    assert_eq!(tcb.take_error(), Some(Errno::ConnectionRefused));
}

// ===================================================================================
// SYN-RECEIVED
// ===================================================================================

#[test]
fn syn_received_emits_syn_ack_and_ack_establishes() {
    let mut tcb = syn_received();
    assert_eq!(tcb.state(), TcpState::SynReceived);
    assert!(!tcb.readiness().writable);
    recv_nothing!(tcb);
    send!(tcb, SEND_TEMPL);
    assert_eq!(tcb.state(), TcpState::Established);
    recv_nothing!(tcb);
    assert_eq!(tcb.info().snd_wnd, usize::from(REMOTE_WINDOW));
}

#[test]
fn syn_received_answers_full_syn_with_every_option() {
    let config = TcpConfig { recv_buffer: 1 << 20, ..config() };
    let mut tcb = syn_received_with(&config, &options(&config), &their_full_syn(500));
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ,
            flags: SYN | ACK,
            window_len: 0xffff,
            options: TcpOptions {
                mss: Some(MSS as u16),
                window_scale: Some(5),
                sack_permitted: true,
                timestamp: Some((0, 500)),
                ..NO_OPTIONS
            },
            ..RECV_TEMPL
        }
    );
    let info = tcb.info();
    assert!(info.sack && info.timestamps);
    assert_eq!((info.rcv_wscale, info.snd_wscale), (5, 7));
}

#[test]
fn syn_received_declines_what_it_does_not_offer() {
    let config = TcpConfig { sack: false, timestamps: false, window_scaling: false, ..config() };
    let mut tcb = syn_received_with(&config, &options(&config), &their_full_syn(500));
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ,
            flags: SYN | ACK,
            options: TcpOptions { mss: Some(MSS as u16), ..NO_OPTIONS },
            ..RECV_TEMPL
        }
    );
    let info = tcb.info();
    assert!(!info.sack && !info.timestamps);
    assert_eq!((info.rcv_wscale, info.snd_wscale), (0, 0));
}

#[test]
fn syn_received_bad_ack_draws_reset() {
    let mut tcb = syn_received();
    for ack in [LOCAL_SEQ, LOCAL_SEQ + 2] {
        send!(tcb, TcpRepr { ack_number: Some(ack), ..SEND_TEMPL }, SegmentOutcome::SendReset);
    }
    assert_eq!(tcb.state(), TcpState::SynReceived);
}

#[test]
fn syn_received_reset_at_rcv_nxt_closes_a_passive_open_quietly() {
    let mut tcb = syn_received();
    send!(tcb, TcpRepr { flags: RST, ack_number: None, ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Closed);
    assert!(tcb.is_finished());
    assert_eq!(tcb.take_error(), None);
}

#[test]
fn syn_received_reset_elsewhere_in_window_draws_challenge_ack() {
    let mut tcb = syn_received();
    send!(
        tcb,
        TcpRepr { seq_number: REMOTE_SEQ + 100, flags: RST, ack_number: None, ..SEND_TEMPL }
    );
    assert_eq!(tcb.state(), TcpState::SynReceived);
    recv!(tcb, RECV_TEMPL);
}

#[test]
fn syn_received_duplicate_syn_resends_syn_ack() {
    let mut tcb = syn_received();
    send!(tcb, their_syn());
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ,
            flags: SYN | ACK,
            options: TcpOptions { mss: Some(MSS as u16), ..NO_OPTIONS },
            ..RECV_TEMPL
        }
    );
    recv_nothing!(tcb);
    assert_eq!(tcb.info().total_retrans, 1);
}

#[test]
fn syn_received_retransmits_syn_ack_then_gives_up() {
    let config = TcpConfig { syn_retries: 2, ..config() };
    let mut tcb = syn_received_with(&config, &options(&config), &their_syn());
    let syn_ack = tcb.emitted().unwrap();
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(1));
    assert_eq!(tcb.emitted().unwrap(), syn_ack);
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(2));
    assert_eq!(tcb.emitted().unwrap(), syn_ack);
    assert_eq!(tcb.advance_to_next_timer(), Duration::from_secs(4));
    assert_eq!(tcb.state(), TcpState::Closed);
    recv_nothing!(tcb);
}

#[test]
fn syn_received_ack_with_data_delivers_it() {
    let mut tcb = syn_received();
    send!(tcb, TcpRepr { payload: b"hello", ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::Established);
    let mut buf = [0; 8];
    assert_eq!(tcb.recv(&mut buf), Ok(5));
    // Reading 5 bytes does not move the right edge (receiver SWS avoidance).
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 6), window_len: 63_995, ..RECV_TEMPL });
}

#[test]
fn syn_received_syn_ack_rtt_is_sampled() {
    let mut tcb = syn_received();
    tcb.now += Duration::from_millis(12);
    send!(tcb, SEND_TEMPL);
    assert_eq!(tcb.info().rtt, Duration::from_millis(12));
}

#[test]
fn syn_received_close_sends_fin_once_established() {
    let mut tcb = syn_received();
    let now = tcb.now;
    tcb.close(now);
    assert_eq!(tcb.state(), TcpState::SynReceived);
    recv_nothing!(tcb);
    send!(tcb, SEND_TEMPL);
    assert_eq!(tcb.state(), TcpState::FinWait1);
    recv!(tcb, TcpRepr { flags: ACK | FIN, ..RECV_TEMPL });
}

#[test]
fn syn_received_abort_sends_reset() {
    let mut tcb = syn_received();
    let now = tcb.now;
    tcb.abort(now);
    assert!(!tcb.is_finished());
    recv!(tcb, TcpRepr { flags: RST | ACK, window_len: 0, ..RECV_TEMPL });
    assert!(tcb.is_finished());
}

#[test]
fn syn_received_ack_with_fin_goes_to_close_wait() {
    let mut tcb = syn_received();
    send!(tcb, TcpRepr { flags: ACK | FIN, payload: b"only", ..SEND_TEMPL });
    assert_eq!(tcb.state(), TcpState::CloseWait);
    recv!(tcb, TcpRepr { ack_number: Some(REMOTE_SEQ + 6), window_len: 63_995, ..RECV_TEMPL });
}
