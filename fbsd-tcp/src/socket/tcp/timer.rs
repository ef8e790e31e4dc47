//! The connection's timers (FreeBSD's tcp_timer.c), kept as a named table of deadlines in the
//! manner of quinn-proto's `timer.rs`: setting, stopping and finding the earliest one is a scan
//! of six slots, and the stack asks only for the earliest.

use super::{Recovery, TcpSocket, TcpState};
use crate::time::{Duration, Instant};

/// The timers one connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// RFC 6298 retransmission timeout (also SYN and SYN-ACK retransmission).
    Retransmit,
    /// RFC 8985 §6.2 step 5: a segment sent before a delivered one runs out of reordering
    /// window.
    Reorder,
    /// RFC 8985 §7.2 probe timeout: no ACK for two RTTs with data outstanding.
    LossProbe,
    /// Zero-window probing (RFC 9293 §3.8.6.1) and the sender-SWS override (RFC 1122 §4.2.3.4).
    Persist,
    /// RFC 1122 §4.2.3.6 keepalive: idle time, then probe interval.
    KeepAlive,
    /// RFC 1122 §4.2.3.2 delayed acknowledgment.
    DelayedAck,
    /// 2 × MSL in TIME-WAIT.
    TimeWait,
    /// How long an orphaned connection may wait in FIN-WAIT-2 for the peer's FIN.
    FinWait2,
}

impl Timer {
    /// Every timer, in the order `run_timers` handles those due at the same time: losses first,
    /// then probes, then acknowledgments, then the ends of life.
    const ALL: [Timer; 8] = [
        Timer::Retransmit,
        Timer::Reorder,
        Timer::LossProbe,
        Timer::Persist,
        Timer::KeepAlive,
        Timer::DelayedAck,
        Timer::TimeWait,
        Timer::FinWait2,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A deadline per timer; `None` is stopped.
#[derive(Debug, Clone, Default)]
pub(super) struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(super) fn set(&mut self, timer: Timer, deadline: Instant) {
        self.deadlines[timer.index()] = Some(deadline);
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    pub(super) fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    pub(super) fn clear(&mut self) {
        self.deadlines = [None; Timer::ALL.len()];
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

impl TcpSocket {
    pub(super) fn run_timers(&mut self, now: Instant) {
        for timer in Timer::ALL {
            match self.timers.get(timer) {
                Some(deadline) if deadline <= now => {
                    self.timers.stop(timer);
                    self.wants_dispatch = true;
                    match timer {
                        Timer::Retransmit => self.on_retransmit_timeout(now),
                        Timer::Reorder => self.on_reorder_timeout(now),
                        Timer::LossProbe => self.on_loss_probe_timeout(now),
                        Timer::Persist => self.on_persist_timeout(now),
                        Timer::KeepAlive => self.on_keepalive_timeout(now),
                        Timer::DelayedAck => self.ack_now = true,
                        Timer::TimeWait => self.set_closed(),
                        Timer::FinWait2 => {
                            if self.state == TcpState::FinWait2 {
                                self.set_closed();
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// RFC 6298 §5.4–5.7: retransmit the earliest unacknowledged segment, back off, restart the
    /// timer. Everything outstanding is deemed lost, since after a timeout nothing beyond SND.UNA
    /// is known to have arrived (the scoreboard is cleared because the receiver may have
    /// reneged): with SACK it is retransmitted in sequence order under `Recovery::Timeout`,
    /// skipping what is SACKed again, without SACK by going back to SND.UNA (go-back-N).
    fn on_retransmit_timeout(&mut self, now: Instant) {
        match self.state {
            TcpState::SynSent | TcpState::SynReceived => {
                if self.rto_count >= self.config.syn_retries {
                    self.give_up();
                    return;
                }
                self.rto_count += 1;
                self.rtt.back_off();
                self.stats.timeouts += 1;
                self.snd_nxt = self.iss;
                self.rtt_timing = None;
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            }
            TcpState::Established
            | TcpState::CloseWait
            | TcpState::FinWait1
            | TcpState::Closing
            | TcpState::LastAck => {
                if self.snd_una == self.snd_max {
                    return;
                }
                // TCP_USER_TIMEOUT counts from the original transmission of the oldest
                // unacknowledged data, which left one RTO before the first timeout.
                let sent = Instant::from_micros(
                    now.total_micros().saturating_sub(self.rtt.rto().as_micros() as u64),
                );
                let start = *self.rto_episode_start.get_or_insert(sent);
                let user_timeout_over =
                    self.options.user_timeout.is_some_and(|limit| now - start >= limit);
                if self.rto_count >= self.config.max_retransmits || user_timeout_over {
                    self.give_up();
                    return;
                }
                if self.snd_wnd == 0 && self.data_end() > self.snd_una {
                    // The receiver shrank its window to zero under outstanding data: what was
                    // beyond SND.UNA is dropped there. Probe like the persist timer does, and do
                    // not count a peer that keeps answering "zero window" as lost. (A lone FIN
                    // needs no window: it is retransmitted, and counted, as usual.)
                    self.snd_nxt = self.snd_una;
                    self.force_probe = true;
                    self.rto_episode_start = None;
                    return;
                }
                let smss = self.smss();
                if self.rto_count == 0 {
                    let flight = self.snd_max - self.snd_una;
                    self.cc.on_retransmit_timeout(now, flight, smss);
                    self.eifel_tsval = self.ts_enabled.then(|| self.ts_now(now));
                }
                self.rto_count += 1;
                self.rtt.back_off();
                self.stats.timeouts += 1;
                self.recover = self.snd_max;
                self.inflation = 0;
                self.dup_acks = 0;
                self.scoreboard.clear();
                self.tlp_end = None;
                self.tlp_due = false;
                self.timers.stop(Timer::Reorder);
                self.timers.stop(Timer::LossProbe);
                self.sent.on_timeout();
                if self.sack_enabled && self.sent.has_lost() {
                    self.recovery = Some(Recovery::Timeout);
                    self.rtx_una = true;
                    self.snd_nxt = self.snd_max;
                } else {
                    self.recovery = None;
                    self.rtx_una = false;
                    self.snd_nxt = self.snd_una;
                }
                self.rtt_timing = None;
                let mut deadline = now + self.rtt.rto();
                if let Some(limit) = self.options.user_timeout {
                    deadline = deadline.min(start + limit).max(now + Duration::from_millis(1));
                }
                self.timers.set(Timer::Retransmit, deadline);
            }
            _ => {}
        }
    }

    /// RFC 8985 §6.2: a segment's reordering window ran out; RACK looks again.
    fn on_reorder_timeout(&mut self, now: Instant) {
        if self.sack_enabled && self.is_synchronized() && self.snd_una != self.snd_max {
            self.detect_losses(now);
        }
    }

    /// RFC 8985 §7.3: two RTTs without an ACK; a probe goes out with the next `dispatch` if
    /// one still may.
    fn on_loss_probe_timeout(&mut self, _now: Instant) {
        self.tlp_due = self.sack_enabled
            && self.recovery.is_none()
            && self.tlp_end.is_none()
            && self.snd_una != self.snd_max
            && matches!(
                self.state,
                TcpState::Established
                    | TcpState::CloseWait
                    | TcpState::FinWait1
                    | TcpState::Closing
                    | TcpState::LastAck
            );
    }

    /// The persist timer: probe a zero window (or push a segment held back by sender SWS
    /// avoidance). A peer that keeps answering is never given up on; `max_retransmits` probes
    /// in a row with no segment at all from the peer end the connection.
    fn on_persist_timeout(&mut self, _now: Instant) {
        if !matches!(
            self.state,
            TcpState::Established
                | TcpState::CloseWait
                | TcpState::FinWait1
                | TcpState::Closing
                | TcpState::LastAck
        ) {
            return;
        }
        if self.persist_probes >= self.config.max_retransmits {
            self.give_up();
            return;
        }
        self.persist_probes += 1;
        self.persist_backoff = (self.persist_backoff + 1).min(16);
        self.force_probe = true;
    }

    /// The persist interval: the RTO without its backoff, doubled per unanswered probe, within
    /// [min_rto, max_rto].
    pub(super) fn persist_interval(&self) -> Duration {
        let base = self.rtt.base_rto();
        let backed_off = base.saturating_mul(1 << self.persist_backoff.min(16));
        backed_off.clamp(self.config.min_rto, self.config.max_rto.max(self.config.min_rto))
    }

    /// RFC 1122 §4.2.3.6: after `keep_idle` without a segment from the peer, probe every
    /// `keep_interval`; `keep_count` unanswered probes end the connection with ETIMEDOUT. The
    /// deadline is not moved on every segment: it is checked against the last arrival when it
    /// fires, and re-armed from there.
    fn on_keepalive_timeout(&mut self, now: Instant) {
        if !self.options.keepalive || !self.keepalive_applies() {
            return;
        }
        let idle_deadline = self.last_recv + self.options.keep_idle;
        if self.keepalive_probes == 0 && now < idle_deadline {
            self.timers.set(Timer::KeepAlive, idle_deadline);
            return;
        }
        if self.snd_una != self.snd_max || self.data_end() != self.snd_una {
            // Data is outstanding or waiting: the retransmission or persist timer watches the
            // peer.
            self.keepalive_probes = 0;
            self.timers.set(Timer::KeepAlive, now + self.options.keep_idle);
            return;
        }
        if self.keepalive_probes >= self.options.keep_count {
            self.give_up();
            return;
        }
        self.keepalive_probes += 1;
        self.keepalive_due = true;
        self.timers.set(Timer::KeepAlive, now + self.options.keep_interval);
    }
}
