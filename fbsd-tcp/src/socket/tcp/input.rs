//! Segment arrival (FreeBSD's tcp_input.c): RFC 9293 §3.10.7 "SEGMENT ARRIVES", with RFC 5961's
//! blind-attack checks, RFC 7323 PAWS and TS.Recent, ACK processing with RFC 6298 RTT samples,
//! RFC 5681/6582/6675 loss detection, and the receive path into the ring and the assembler.

use super::rack::AckTiming;
use super::timer::Timer;
use super::{
    seq_dist, ts_before, Recovery, SegmentOutcome, TcpSocket, TcpState, CHALLENGE_ACK_INTERVAL,
    CHALLENGE_ACK_LIMIT, PAWS_IDLE_LIMIT,
};
use crate::socket::tcp::sack::DUP_THRESH;
use crate::socket::Errno;
use crate::time::{Duration, Instant};
use crate::wire::{SackBlock, SeqNumber, TcpFlags, TcpRepr};

/// RFC 2883: the first SACK block of an ACK is a D-SACK (it reports a duplicate segment) when
/// it lies below the cumulative ACK or within the second block.
fn dsack_block(blocks: &[SackBlock], ack: SeqNumber) -> Option<SackBlock> {
    let first = *blocks.first()?;
    if first.left >= first.right {
        return None;
    }
    let within_second = blocks
        .get(1)
        .is_some_and(|second| second.left <= first.left && first.right <= second.right);
    (first.left < ack || within_second).then_some(first)
}

impl TcpSocket {
    pub(super) fn input(&mut self, now: Instant, seg: &TcpRepr<'_>) -> SegmentOutcome {
        self.stats.segs_in += 1;
        match self.state {
            TcpState::Closed | TcpState::Listen => {
                if seg.flags.contains(TcpFlags::RST) {
                    SegmentOutcome::Accepted
                } else {
                    SegmentOutcome::SendReset
                }
            }
            TcpState::SynSent => self.input_syn_sent(now, seg),
            TcpState::TimeWait => self.input_time_wait(now, seg),
            _ => self.input_synchronized(now, seg),
        }
    }

    /// RFC 9293 §3.10.7.3.
    fn input_syn_sent(&mut self, now: Instant, seg: &TcpRepr<'_>) -> SegmentOutcome {
        let rst = seg.flags.contains(TcpFlags::RST);
        // First: the ACK must acknowledge our SYN and nothing beyond.
        let acks_syn = match seg.ack_number {
            Some(ack) if ack <= self.iss || ack > self.snd_max => {
                return if rst { SegmentOutcome::Accepted } else { SegmentOutcome::SendReset };
            }
            Some(_) => true,
            None => false,
        };
        // Second: a reset counts only if it acknowledges our SYN (RFC 5961 §3 keeps this).
        if rst {
            if acks_syn {
                self.fail(Errno::ConnectionRefused);
            }
            return SegmentOutcome::Accepted;
        }
        // Fourth: without SYN there is nothing to do.
        if !seg.flags.contains(TcpFlags::SYN) {
            return SegmentOutcome::Accepted;
        }
        self.learn_from_syn(now, seg);
        self.rcv_adv = self.rcv_nxt + self.syn_window;
        if let Some(ack) = seg.ack_number.filter(|_| acks_syn) {
            self.establish(now);
            self.process_ack(now, seg, ack, false);
            self.ack_now = true;
            // Data or FIN riding on the SYN-ACK.
            if !seg.payload.is_empty() || seg.flags.contains(TcpFlags::FIN) {
                self.process_text(now, seg.seq_number + 1, seg.payload, seg.flags);
            }
        } else {
            // Simultaneous open: answer with SYN-ACK (our SYN again, now acknowledging theirs).
            // Data on the SYN is not acknowledged, so the peer sends it again later.
            self.state = TcpState::SynReceived;
            self.snd_nxt = self.iss;
            self.syn_ack_fresh = true;
        }
        SegmentOutcome::Accepted
    }

    /// TIME-WAIT (RFC 9293 §3.10.7.4 for this state, RFC 6191 for reuse, RFC 1337 for RST).
    fn input_time_wait(&mut self, now: Instant, seg: &TcpRepr<'_>) -> SegmentOutcome {
        // RFC 1337 (TIME-WAIT assassination): a reset must not cut TIME-WAIT short. FreeBSD
        // drops it too; Linux honours it unless `tcp_rfc1337` is set.
        if seg.flags.contains(TcpFlags::RST) {
            return SegmentOutcome::Accepted;
        }
        if seg.flags.contains(TcpFlags::SYN) && seg.ack_number.is_none() {
            // RFC 6191: with timestamps on both incarnations, a newer TSval proves the SYN is
            // new; otherwise a sequence number above the old connection's does.
            let newer = match (self.ts_enabled, seg.options.timestamp) {
                (true, Some((tsval, _))) => ts_before(self.ts_recent, tsval),
                _ => seg.seq_number > self.rcv_nxt,
            };
            if newer {
                return SegmentOutcome::ReopenFromTimeWait;
            }
            self.challenge_ack(now);
            return SegmentOutcome::Accepted;
        }
        let fin_at = seg.seq_number + seg.payload.len();
        if seg.flags.contains(TcpFlags::FIN) && fin_at + 1 == self.rcv_nxt {
            // The peer did not get our ACK of its FIN: acknowledge again, restart 2 MSL.
            self.ack_now = true;
            self.timers.set(Timer::TimeWait, now + 2 * self.config.msl);
        } else if seg.segment_len() > 0 {
            self.ack_now = true;
        }
        SegmentOutcome::Accepted
    }

    /// SYN-RECEIVED through LAST-ACK (RFC 9293 §3.10.7.4).
    fn input_synchronized(&mut self, now: Instant, seg: &TcpRepr<'_>) -> SegmentOutcome {
        let rst = seg.flags.contains(TcpFlags::RST);
        let syn = seg.flags.contains(TcpFlags::SYN);

        // A retransmitted SYN in SYN-RECEIVED means our SYN-ACK was lost: send it again.
        if self.state == TcpState::SynReceived
            && syn
            && !rst
            && seg.ack_number.is_none()
            && seg.seq_number == self.irs
        {
            self.snd_nxt = self.iss;
            return SegmentOutcome::Accepted;
        }

        // RFC 7323 §5.3 R1 (PAWS): a segment with a timestamp older than TS.Recent is an old
        // duplicate. Acknowledge it (unless it is a reset) and drop it. A segment without a
        // timestamp on a connection that negotiated them is accepted, as Linux and FreeBSD do
        // (RFC 7323 §3.2 says it SHOULD be dropped).
        if self.ts_enabled && !rst {
            if let Some((tsval, _)) = seg.options.timestamp {
                let recent_valid = now - self.ts_recent_stamp < PAWS_IDLE_LIMIT;
                if recent_valid && ts_before(tsval, self.ts_recent) {
                    self.ack_now = true;
                    self.note_duplicate(seg.seq_number, seg.payload.len());
                    return SegmentOutcome::Accepted;
                }
            }
        }

        // First: is the segment in the window at all?
        if !self.segment_acceptable(seg) {
            if !rst {
                self.ack_now = true;
                self.note_duplicate(seg.seq_number, seg.payload.len());
            }
            return SegmentOutcome::Accepted;
        }

        // Second: RST (RFC 5961 §3.2): only one exactly at RCV.NXT resets; any other in the
        // window draws a challenge ACK, so a blind attacker must guess the exact number.
        if rst {
            if seg.seq_number == self.rcv_nxt {
                self.reset_by_peer();
            } else {
                self.challenge_ack(now);
            }
            return SegmentOutcome::Accepted;
        }

        // Fourth: SYN in a synchronized state (RFC 5961 §4.2): challenge ACK, whatever its
        // sequence number. A genuine restarted peer answers it with an RST at RCV.NXT.
        if syn {
            self.challenge_ack(now);
            return SegmentOutcome::Accepted;
        }

        // Fifth: the ACK field.
        let Some(ack) = seg.ack_number else {
            return SegmentOutcome::Accepted;
        };
        if self.state == TcpState::SynReceived {
            if self.snd_una < ack && ack <= self.snd_max {
                self.establish(now);
                self.snd_wnd = usize::from(seg.window_len) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seg.seq_number;
                self.snd_wl2 = ack;
            } else {
                return SegmentOutcome::SendReset;
            }
        }
        // RFC 5961 §5.2: an ACK for data never sent, or too old to be from this connection's
        // recent past, is answered with an ACK and dropped.
        if ack > self.snd_max || ack < self.snd_una - self.max_snd_wnd {
            self.challenge_ack(now);
            return SegmentOutcome::Accepted;
        }

        self.update_ts_recent(now, seg);
        self.last_recv = now;
        self.keepalive_probes = 0;
        self.persist_probes = 0;

        let fin_was_sent = self.fin_sent();
        let data_end = self.data_end();
        self.process_ack(now, seg, ack, true);
        let fin_acked = fin_was_sent && ack == data_end + 1;

        match self.state {
            TcpState::FinWait1 if fin_acked => {
                self.state = TcpState::FinWait2;
                if self.orphaned {
                    self.timers.set(Timer::FinWait2, now + self.config.fin_wait2_timeout);
                }
            }
            TcpState::Closing => {
                if fin_acked {
                    self.enter_time_wait(now);
                }
                return SegmentOutcome::Accepted;
            }
            TcpState::LastAck => {
                if fin_acked {
                    self.set_closed();
                }
                return SegmentOutcome::Accepted;
            }
            _ => {}
        }

        // Sixth and seventh: text and FIN, only while the peer's stream is open.
        if matches!(self.state, TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2) {
            // Nobody will read data arriving after close(): reset, as Linux does.
            let data_end = seg.seq_number + seg.payload.len();
            if self.orphaned && !seg.payload.is_empty() && data_end > self.rcv_nxt {
                self.rst_pending = true;
                self.set_closed();
                return SegmentOutcome::Accepted;
            }
            self.process_text(now, seg.seq_number, seg.payload, seg.flags);
        }
        SegmentOutcome::Accepted
    }

    /// RFC 9293 §3.10.7.4 "first": the four cases of the acceptability test against the window
    /// we advertised. A FIN exactly at RCV.NXT is taken even into a zero window (Linux does the
    /// same; some peers send bare FINs into closed windows), and a data segment at RCV.NXT into
    /// a zero window is accepted for its ACK (RFC 9293's "special allowance"); its data is then
    /// cut to the buffer space, which may be none.
    fn segment_acceptable(&self, seg: &TcpRepr<'_>) -> bool {
        let seq = seg.seq_number;
        let len = seg.segment_len();
        let wnd = self.rcv_wnd();
        let in_window = |s: SeqNumber| self.rcv_nxt <= s && s < self.rcv_nxt + wnd;
        match (len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => in_window(seq),
            (_, 0) => seq == self.rcv_nxt,
            (_, _) => in_window(seq) || in_window(seq + (len - 1)),
        }
    }

    /// An RST at RCV.NXT: the connection is gone.
    fn reset_by_peer(&mut self) {
        let error = match self.state {
            TcpState::SynReceived if self.passive => None,
            TcpState::SynReceived => Some(Errno::ConnectionRefused),
            _ => Some(Errno::ConnectionReset),
        };
        match error {
            Some(error) => self.fail(error),
            None => self.set_closed(),
        }
    }

    /// RFC 5961 challenge ACK, rate-limited per connection (see `CHALLENGE_ACK_LIMIT`).
    fn challenge_ack(&mut self, now: Instant) {
        if now - self.challenge_window_start >= CHALLENGE_ACK_INTERVAL {
            self.challenge_window_start = now;
            self.challenge_acks = 0;
        }
        if self.challenge_acks < CHALLENGE_ACK_LIMIT {
            self.challenge_acks += 1;
            self.ack_now = true;
        }
    }

    /// RFC 7323 §4.3 (2): TS.Recent follows the segment that is due next (not a later one, so
    /// that a delayed ACK still echoes the oldest unacknowledged segment's TSval).
    fn update_ts_recent(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        if !self.ts_enabled {
            return;
        }
        if let Some((tsval, _)) = seg.options.timestamp {
            if !ts_before(tsval, self.ts_recent) && seg.seq_number <= self.last_ack_sent {
                self.ts_recent = tsval;
                self.ts_recent_stamp = now;
            }
        }
    }

    /// RFC 9293 §3.10.7.4 "fifth", for an ACK already known to be in range: advance SND.UNA,
    /// free acknowledged data, sample the RTT, update the send window, drive congestion control
    /// and loss recovery. `update_window` is false for a SYN-ACK, whose window was taken
    /// unscaled already.
    pub(super) fn process_ack(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        ack: SeqNumber,
        update_window: bool,
    ) {
        let advanced = ack > self.snd_una;
        self.process_ack_sequence(now, seg, ack, update_window);
        if self.sack_enabled {
            let dsack = dsack_block(seg.options.sack(), ack);
            self.sent.update_dsack_round(dsack.is_some(), self.snd_una, self.snd_max);
            self.loss_probe_acknowledged(now, seg, ack, advanced, dsack);
            self.detect_losses(now);
            // RFC 8985 §7.2: an ACK of new data restarts the probe timeout; once anything is
            // SACKed, RACK and recovery take over from the probe.
            if advanced {
                self.arm_loss_probe(now);
            } else if !self.scoreboard.is_empty() {
                self.timers.stop(Timer::LossProbe);
            }
        }
    }

    /// `process_ack` up to loss detection: the sequence-number side of the ACK.
    fn process_ack_sequence(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        ack: SeqNumber,
        update_window: bool,
    ) {
        let old_wnd = self.snd_wnd;
        // RFC 9293: only an ACK at or above SND.UNA says where the window is now (the window
        // counts from the ACK number), and only the newest such segment (SND.WL1, SND.WL2).
        if update_window
            && ack >= self.snd_una
            && (self.snd_wl1 < seg.seq_number
                || (self.snd_wl1 == seg.seq_number && self.snd_wl2 <= ack))
        {
            self.snd_wnd = usize::from(seg.window_len) << self.snd_wscale;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seg.seq_number;
            self.snd_wl2 = ack;
        }
        // The window opened while probing: a probe byte the peer did not take goes again with
        // what follows it (from SND.UNA, under the retransmission timer from now on).
        let reopened = self.snd_wnd > 0 && self.timers.is_armed(Timer::Persist);
        if reopened {
            self.timers.stop(Timer::Persist);
            self.persist_backoff = 0;
            self.snd_nxt = self.snd_una;
        }

        let smss = self.smss();
        let timing = self.ack_timing(now, seg);
        if ack > self.snd_una {
            let flight_before = self.snd_max - self.snd_una;
            let mut data_acked = ack - self.snd_una;
            if self.syn_unacked() {
                data_acked -= 1; // our SYN
            }
            if self.fin_sent() && ack == self.data_end() + 1 {
                data_acked -= 1; // our FIN
            }
            let data_acked = data_acked.min(self.tx.len());
            self.tx.consume(data_acked);
            self.snd_una = ack;
            if self.recovery.is_none() && self.snd_una > self.recover {
                // Once SND.UNA has passed `recover` its exact value no longer matters; dragging
                // it along keeps the serial comparisons with it valid on connections that move
                // more than 2 GiB between losses. (Ahead of SND.UNA it still guards, e.g. the
                // resends after a path-MTU drop.)
                self.recover = self.snd_una;
            }
            if self.snd_nxt < ack {
                self.snd_nxt = ack;
            }
            self.stats.bytes_acked += data_acked as u64;
            if self.sack_enabled {
                self.sent.on_cumulative_ack(ack, &timing);
                self.update_scoreboard(seg, &timing);
            }

            self.sample_rtt(now, seg, ack);
            self.rtt.reset_backoff();
            self.rto_count = 0;
            self.rto_episode_start = None;
            if self.retransmission_was_spurious(seg) {
                // RFC 3522 / RFC 4015: the timeout was spurious, the original arrived. Undo the
                // reduction and do not send again what is already there.
                self.spurious_retransmits += 1;
                self.cc.on_spurious_congestion_event();
                self.snd_nxt = self.snd_max;
                if self.recovery == Some(Recovery::Timeout) {
                    // Nothing was lost: losses found from here on may start a recovery at once
                    // (`recover` kept fast retransmit from reacting to the timeout's own
                    // duplicates, and there were none).
                    self.recovery = None;
                    self.recover = self.snd_una;
                    self.sent.forget_losses();
                }
            }

            // Outside recovery, and recovering from a timeout, the window grows per ACK.
            let grows = matches!(self.recovery, None | Some(Recovery::Timeout));
            match self.recovery {
                Some(recovery) if ack >= self.recover => {
                    if recovery != Recovery::Timeout {
                        let flight = self.snd_max - self.snd_una;
                        self.cc.on_recovery_end(now, flight, smss);
                    }
                    self.recovery = None;
                    self.inflation = 0;
                    self.rtx_una = false;
                    self.sent.on_recovery_exit();
                }
                Some(Recovery::NewReno) => {
                    // RFC 6582 §3.2 step 5: a partial ACK. Retransmit the next hole, deflate
                    // by what was acknowledged, add back one SMSS if a full one was.
                    self.rtx_una = true;
                    self.inflation = self.inflation.saturating_sub(data_acked);
                    if data_acked >= smss {
                        self.inflation += smss;
                    }
                }
                _ => {}
            }
            if grows && data_acked > 0 {
                let cwnd = self.cc.cwnd();
                let in_slow_start = cwnd < self.cc.ssthresh();
                let cwnd_limited = self.cwnd_blocked
                    || flight_before + smss >= cwnd
                    || (in_slow_start && 2 * flight_before >= cwnd);
                self.cc.on_ack(now, data_acked, smss, cwnd_limited, self.rtt.srtt());
            }
            self.dup_acks = 0;

            // RFC 6298 §5.2–5.3.
            if self.snd_una == self.snd_max {
                self.timers.stop(Timer::Retransmit);
            } else if !self.timers.is_armed(Timer::Persist) {
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            }
            return;
        }

        // Not new: maybe a duplicate ACK (RFC 5681 §2, RFC 6675 §2 for SACK).
        let newly_sacked = if self.sack_enabled { self.update_scoreboard(seg, &timing) } else { 0 };
        // Answers to zero-window probes are not duplicate ACKs (FreeBSD requires an open
        // window too): nothing is lost, the peer just has no room.
        let outstanding = self.snd_una != self.snd_max;
        let is_dup = ack == self.snd_una
            && outstanding
            && old_wnd > 0
            && if self.sack_enabled {
                newly_sacked > 0
            } else {
                seg.payload.is_empty()
                    && !seg.flags.contains(TcpFlags::FIN)
                    && usize::from(seg.window_len) << self.snd_wscale == old_wnd
            };
        if !is_dup {
            return;
        }
        self.dup_acks += 1;
        match self.recovery {
            Some(Recovery::NewReno) => self.inflation += smss,
            Some(Recovery::Sack | Recovery::Timeout) => {}
            None => {
                let lost = usize::try_from(self.dup_acks).unwrap_or(usize::MAX) >= DUP_THRESH
                    || (self.sack_enabled && self.scoreboard.is_lost(self.snd_una, smss));
                // RFC 6582 §3.2 step 1: not again for losses from before the last recovery
                // or timeout.
                if lost && self.snd_una >= self.recover {
                    self.enter_recovery(now, true);
                }
            }
        }
    }

    /// What RACK needs to know about this ACK's timing.
    fn ack_timing(&self, now: Instant, seg: &TcpRepr<'_>) -> AckTiming {
        let tsecr = match seg.options.timestamp {
            Some((_, tsecr)) if self.ts_enabled && tsecr != 0 => Some(tsecr),
            _ => None,
        };
        AckTiming {
            now,
            tsecr,
            ts_offset: self.ts_offset,
            min_rtt: self.rtt.min_rtt().unwrap_or(Duration::ZERO),
        }
    }

    /// Merges the ACK's SACK blocks into the scoreboard and marks the segments they complete
    /// as delivered in the segment log. Returns the bytes newly SACKed.
    fn update_scoreboard(&mut self, seg: &TcpRepr<'_>, timing: &AckTiming) -> usize {
        if seg.options.sack().is_empty() && self.scoreboard.is_empty() {
            return 0;
        }
        let mut pieces = core::mem::take(&mut self.sack_pieces);
        pieces.clear();
        let newly = self.scoreboard.update_with(
            self.snd_una,
            self.snd_max,
            seg.options.sack(),
            |left, right| pieces.push((left, right)),
        );
        if !pieces.is_empty() {
            self.sent.on_sacked(&pieces, &self.scoreboard, timing);
        }
        self.sack_pieces = pieces;
        newly
    }

    /// After every ACK (and when the reordering timer fires), with SACK: RFC 6675 marks what
    /// IsLost during recovery, RACK (RFC 8985 §6.2) what was sent before a delivered segment
    /// and is overdue; the reordering timer follows the next segment that may become so, and
    /// losses found outside recovery start one.
    pub(super) fn detect_losses(&mut self, now: Instant) {
        if self.recovery == Some(Recovery::Sack) {
            if let Some(boundary) = self.scoreboard.loss_boundary(self.smss()) {
                self.sent.mark_lost_below(boundary);
            }
        }
        // Without SACKs and retransmissions in flight, every segment sent before a delivered
        // one was cumulatively acknowledged with it: RACK has nothing to look at (the common
        // case, skipped at no cost).
        let deadline = if self.scoreboard.is_empty() && !self.sent.retransmissions_in_flight() {
            None
        } else {
            let (in_recovery, srtt) = (self.recovery.is_some(), self.rtt.srtt());
            let min_rtt = self.rtt.min_rtt().unwrap_or(Duration::ZERO);
            self.sent.detect_losses(now, |log| log.reo_wnd(in_recovery, srtt, min_rtt)).1
        };
        match deadline {
            Some(at) => self.timers.set(Timer::Reorder, at),
            None => self.timers.stop(Timer::Reorder),
        }
        if self.recovery.is_none()
            && self.snd_una >= self.recover
            && self.snd_una != self.snd_max
            && self.sent.has_lost()
        {
            self.enter_recovery(now, false);
        }
    }

    /// RFC 8985 §7.4: whether the ACK shows the last loss probe repaired a loss, which calls for
    /// the congestion response fast recovery would have made. A probe of new data, or a
    /// retransmission the peer reports as a duplicate (D-SACK) or whose original the timestamp
    /// echo shows arrived first, repaired nothing.
    fn loss_probe_acknowledged(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        ack: SeqNumber,
        advanced: bool,
        dsack: Option<SackBlock>,
    ) {
        let Some(end) = self.tlp_end else { return };
        if ack < end {
            return;
        }
        if !self.tlp_retransmitted || dsack.is_some_and(|b| b.left < end && end <= b.right) {
            self.tlp_end = None;
            return;
        }
        let repaired = match seg.options.timestamp {
            Some((_, tsecr)) if self.ts_enabled && tsecr != 0 => !ts_before(tsecr, self.tlp_tsval),
            _ if ack > end => true,
            // Without timestamps an ACK of exactly the probe is ambiguous until a D-SACK or a
            // later ACK tells; a duplicate ACK without SACK blocks means both copies arrived.
            _ if !advanced && seg.options.sack().is_empty() => {
                self.tlp_end = None;
                return;
            }
            _ => return,
        };
        self.tlp_end = None;
        if repaired {
            let smss = self.smss();
            let flight = seq_dist(self.snd_max, self.snd_una);
            self.cc.on_congestion_event(now, flight, smss);
            self.cc.on_recovery_end(now, flight, smss);
            self.stats.probe_recoveries += 1;
        }
    }

    /// RFC 3522: the first ACK of new data after a retransmission echoes a TSval older than the
    /// retransmission's, so it was the original that arrived. (Only the first such ACK tells.)
    fn retransmission_was_spurious(&mut self, seg: &TcpRepr<'_>) -> bool {
        let Some(retransmitted) = self.eifel_tsval.take() else {
            return false;
        };
        match seg.options.timestamp {
            Some((_, tsecr)) => tsecr != 0 && ts_before(tsecr, retransmitted),
            None => false,
        }
    }

    /// Fast retransmit: RFC 6675 §5 step 4 with SACK, RFC 6582 §3.2 step 2 without.
    /// `dup_thresh`: DupThresh duplicate ACKs (or IsLost) found the first segment lost, rather
    /// than RACK finding some segment lost.
    fn enter_recovery(&mut self, now: Instant, dup_thresh: bool) {
        let smss = self.smss();
        let flight = self.snd_max - self.snd_una;
        self.cc.on_congestion_event(now, flight, smss);
        self.recover = self.snd_max;
        // The first retransmission goes whatever the window (RFC 6675 §5 step 4.2).
        self.rtx_una = true;
        self.rtt_timing = None;
        self.stats.fast_recoveries += 1;
        if self.sack_enabled {
            self.recovery = Some(Recovery::Sack);
            self.sent.start_recovery();
            if dup_thresh {
                self.sent.mark_first_lost();
            }
            if let Some(boundary) = self.scoreboard.loss_boundary(smss) {
                self.sent.mark_lost_below(boundary);
            }
            // The recovery's reduction covers what a loss probe in flight would have shown.
            self.tlp_end = None;
            self.timers.stop(Timer::LossProbe);
        } else {
            self.recovery = Some(Recovery::NewReno);
            self.inflation = 3 * smss;
        }
    }

    /// RFC 6298 §3 RTT samples: from the timestamp echo when timestamps are on (RFC 7323 §4,
    /// every ACK of new data gives one), else from the one timed segment (Karn: the timing is
    /// dropped whenever anything is retransmitted).
    fn sample_rtt(&mut self, now: Instant, seg: &TcpRepr<'_>, ack: SeqNumber) {
        if self.ts_enabled {
            if let Some((_, tsecr)) = seg.options.timestamp {
                if tsecr != 0 {
                    let elapsed_ms = self.ts_now(now).wrapping_sub(tsecr);
                    // A huge value is an echo from the future or a bogus one: no sample.
                    if elapsed_ms < 0x8000_0000 {
                        self.rtt.sample(Duration::from_millis(u64::from(elapsed_ms)));
                        self.rtt_timing = None;
                        return;
                    }
                }
            }
        }
        if let Some((seq, sent)) = self.rtt_timing {
            if ack > seq {
                self.rtt.sample(now - sent);
                self.rtt_timing = None;
            }
        }
    }

    /// RFC 9293 §3.10.7.4 "seventh" and "eighth": store the text and take the FIN. `seq` is
    /// where `payload` starts (the SYN already removed).
    pub(super) fn process_text(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        payload: &[u8],
        flags: TcpFlags,
    ) {
        let mut seq = seq;
        let mut payload = payload;
        let mut fin = flags.contains(TcpFlags::FIN);
        let mut duplicate = false;
        // Trim what was received already.
        if seq < self.rcv_nxt {
            self.note_duplicate(seq, payload.len());
            let old = (self.rcv_nxt - seq).min(payload.len());
            payload = &payload[old..];
            seq += old;
            duplicate = old > 0;
            if seq < self.rcv_nxt {
                fin = false; // only a FIN before RCV.NXT is left: old news.
            }
        }
        // An immediate ACK for duplicates tells a sender whose ACK was lost where we are.
        if duplicate {
            self.ack_now = true;
        }
        if payload.is_empty() && !fin {
            return;
        }

        let offset = seq - self.rcv_nxt;
        if self.read_shutdown {
            // Acknowledged and discarded: only in-order data moves RCV.NXT.
            if offset == 0 {
                self.rcv_nxt += payload.len();
                if fin {
                    self.rx_fin = Some(self.rcv_nxt);
                }
            }
            self.ack_now = true;
        } else if offset == 0 {
            self.receive_in_order(now, payload, fin);
        } else {
            self.receive_out_of_order(seq, offset, payload, fin);
        }

        match self.rx_fin {
            Some(at) if at == self.rcv_nxt => {
                self.rx_fin = None;
                self.process_fin(now);
            }
            Some(at) if at < self.rcv_nxt => self.rx_fin = None,
            _ => {}
        }
    }

    fn receive_in_order(&mut self, now: Instant, payload: &[u8], fin: bool) {
        if self.deliver_to_sink(payload) {
            if fin {
                self.rx_fin = Some(self.rcv_nxt + payload.len());
            }
            self.rcv_nxt += payload.len();
            self.stats.bytes_received += payload.len() as u64;
            self.count_for_ack(now, payload.len());
            return;
        }
        let stored = self.rx.write_unallocated(0, payload);
        if stored < payload.len() {
            // Beyond the buffer: dropped, and the FIN after it with it. Say where we are.
            self.ack_now = true;
        } else if fin {
            self.rx_fin = Some(self.rcv_nxt + stored);
        }
        if stored == 0 {
            return;
        }
        let filled_hole = !self.assembler.is_empty();
        let advance = if filled_hole {
            match self.assembler.add(0, stored) {
                Ok(()) => self.assembler.remove_front(),
                Err(_) => {
                    // No room to record it with the others: keep the in-order data and give
                    // up the out-of-order data (SACK reneging, RFC 2018 §8; the sender keeps
                    // SACKed data until it is cumulatively acknowledged).
                    self.assembler.clear();
                    self.sack_report_len = 0;
                    stored
                }
            }
        } else {
            stored
        };
        let seq = self.rcv_nxt;
        self.rx.commit(advance);
        self.rcv_nxt += advance;
        self.stats.bytes_received += advance as u64;
        if filled_hole {
            // RFC 5681 §4.2: a segment that fills a gap is acknowledged at once. The ACKs still
            // owed for segments it made in-order are replaced by this one.
            self.owed_acks.forgive_below(self.rcv_nxt);
            self.owed_acks.push(seq);
            self.sack_refresh();
            return;
        }
        self.count_for_ack(now, advance);
    }

    /// With a sink lent and nothing held here (no unread bytes, no hole), in-order payload goes
    /// straight to the sink when it fits whole.
    fn deliver_to_sink(&mut self, payload: &[u8]) -> bool {
        let Some(sink) = &mut self.rx_sink else { return false };
        if payload.is_empty()
            || !self.rx.is_empty()
            || !self.assembler.is_empty()
            || sink.room() < payload.len()
        {
            return false;
        }
        sink.deliver(payload);
        self.sink_news = true;
        true
    }

    /// In-order data of `len` bytes arrived: acknowledge now or later.
    fn count_for_ack(&mut self, now: Instant, len: usize) {
        // RFC 1122 §4.2.3.2 / RFC 5681 §4.2: ACK at least every second segment, else within the
        // delayed-ACK timeout; at the start of a connection, every segment. A segment beyond
        // our MSS (a sender's offload burst taken whole) counts as the segments it stands for.
        let segments = len.div_ceil(self.rcv_mss.max(1)).max(1);
        self.delayed_segs =
            self.delayed_segs.saturating_add(u32::try_from(segments).unwrap_or(u32::MAX));
        if self.quickacks > 0 {
            self.quickacks -= 1;
            self.ack_now = true;
        } else if self.delayed_segs >= 2 {
            self.ack_now = true;
        } else if !self.timers.is_armed(Timer::DelayedAck) {
            self.timers.set(Timer::DelayedAck, now + self.config.delayed_ack);
        }
    }

    fn receive_out_of_order(&mut self, seq: SeqNumber, offset: usize, payload: &[u8], fin: bool) {
        // A duplicate ACK at once for every such segment (RFC 5681 §4.2), carrying the SACK
        // news, even when it cannot be stored.
        self.owed_acks.push(seq);
        if payload.is_empty() {
            // A bare FIN beyond a gap.
            if fin && self.rx_fin.is_none() {
                self.rx_fin = Some(seq);
            }
            return;
        }
        let stored = self.rx.write_unallocated(offset, payload);
        if stored == 0 || self.assembler.add(offset, stored).is_err() {
            return;
        }
        if fin && stored == payload.len() && self.rx_fin.is_none() {
            self.rx_fin = Some(seq + stored);
        }
        self.sack_note_arrival(seq);
    }

    /// RFC 2883: data below RCV.NXT arrived again; the next ACK reports the duplicate part
    /// first (a later duplicate replaces an unsent report).
    fn note_duplicate(&mut self, seq: SeqNumber, len: usize) {
        if !self.sack_enabled || len == 0 || seq >= self.rcv_nxt {
            return;
        }
        let end = seq + len;
        let right = if end < self.rcv_nxt { end } else { self.rcv_nxt };
        self.dsack = Some(SackBlock { left: seq, right });
    }

    /// RFC 9293 §3.10.7.4 "eighth": the FIN is in sequence.
    fn process_fin(&mut self, now: Instant) {
        self.rcv_nxt += 1;
        self.fin_received = true;
        self.ack_now = true;
        match self.state {
            TcpState::SynReceived | TcpState::Established => self.state = TcpState::CloseWait,
            // Our FIN is not acknowledged yet (else this would be FIN-WAIT-2).
            TcpState::FinWait1 => self.state = TcpState::Closing,
            TcpState::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    /// The assembler range holding `seq`, as a SACK block.
    fn held_block(&self, seq: SeqNumber) -> Option<SackBlock> {
        if seq < self.rcv_nxt {
            return None;
        }
        let offset = seq - self.rcv_nxt;
        self.assembler
            .ranges()
            .find(|&(start, end)| start <= offset && offset < end)
            .map(|(start, end)| SackBlock { left: self.rcv_nxt + start, right: self.rcv_nxt + end })
    }

    /// RFC 2018 §4: the first block reports the segment that just arrived; the others repeat
    /// the most recently reported ones, refreshed to their current extent.
    pub(super) fn sack_note_arrival(&mut self, seq: SeqNumber) {
        let mut blocks = [SackBlock::default(); 4];
        let mut count = 0;
        if let Some(block) = self.held_block(seq) {
            blocks[0] = block;
            count = 1;
        }
        for i in 0..self.sack_report_len {
            if count == blocks.len() {
                break;
            }
            if let Some(block) = self.held_block(self.sack_report[i].left) {
                if !blocks[..count].contains(&block) {
                    blocks[count] = block;
                    count += 1;
                }
            }
        }
        self.sack_report = blocks;
        self.sack_report_len = count;
    }

    /// After RCV.NXT moved: drop blocks it passed and refresh the others.
    fn sack_refresh(&mut self) {
        let mut blocks = [SackBlock::default(); 4];
        let mut count = 0;
        for i in 0..self.sack_report_len {
            if let Some(block) = self.held_block(self.sack_report[i].left) {
                if !blocks[..count].contains(&block) {
                    blocks[count] = block;
                    count += 1;
                }
            }
        }
        self.sack_report = blocks;
        self.sack_report_len = count;
    }

    /// Whether reading just opened the window enough to tell the peer now (RFC 1122
    /// §4.2.3.3, with FreeBSD's thresholds): by two segments and a quarter of the buffer, or by
    /// two segments into a window that was nearly shut, or by half the buffer.
    pub(super) fn window_update_due(&self) -> bool {
        if !matches!(self.state, TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2)
            || self.fin_received
        {
            return false;
        }
        let current = self.rcv_wnd();
        let offered = usize::from(self.window_field()) << self.rcv_wscale;
        let growth = seq_dist(self.rcv_nxt + offered, self.rcv_adv);
        let capacity = self.rx.capacity();
        let mss = self.rcv_mss;
        (growth >= 2 * mss
            && (growth >= capacity / 4 || current <= capacity / 8 || capacity <= 8 * mss))
            || 2 * growth >= capacity
    }
}
