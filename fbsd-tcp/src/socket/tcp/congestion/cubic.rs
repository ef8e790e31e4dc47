//! CUBIC (RFC 9438): cubic window growth with the Reno-friendly region and fast convergence.
//!
//! Units: the RFC writes its formulas in segments. Here every window is in bytes and the cubic
//! constant is scaled by the MSS (C·MSS bytes/s³), which is the RFC's curve multiplied through
//! by the MSS. Time is in seconds since the start of the congestion-avoidance epoch. Floating
//! point is confined to the curve; the window itself stays in whole bytes, with the fractional
//! growth of each ACK carried to the next so that small increments are not lost to rounding.
//!
//! Slow start is NewReno's (RFC 5681 with RFC 3465 L = 2); HyStart++ is not implemented, since
//! it needs per-ACK RTT samples and the contract passes only the smoothed RTT.

use super::{
    deflate_after_recovery, idle_restart, initial_window, slow_start, CongestionAlgorithm,
    CongestionControl, MAX_CWND,
};
use crate::time::{Duration, Instant};

/// RFC 9438's C, in segments per second cubed.
const C: f64 = 0.4;
/// RFC 9438 §4.6: multiplicative decrease factor.
const BETA: f64 = 0.7;
/// RFC 9438 §4.3: the additive increase (segments per RTT) that makes an AIMD(α, β) flow as
/// fast on average as Reno's AIMD(1, 0.5).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
/// RFC 9438 §4.2: the target never exceeds 1.5 × cwnd, so that one RTT grows the window by at
/// most half, well short of slow start's doubling.
const MAX_TARGET_RATIO: f64 = 1.5;
/// The RTT the target looks ahead by when the connection has no RTT sample yet (possible only if
/// loss struck before any segment was timed). A typical Internet RTT: large enough not to stall
/// growth, far below RFC 6298's 1 s initial RTO, which would make the first RTT's target leap.
const FALLBACK_RTT: Duration = Duration::from_millis(100);

/// One congestion-avoidance stage: the cubic curve is anchored at its start.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Epoch {
    /// When the stage began, moved forward by every application-limited period, so that `t`
    /// counts only time in which the window was actually in use.
    start: Instant,
    /// K: seconds from `start` until the curve reaches W_max (RFC 9438 §4.2 equation 2).
    /// Negative when the stage began above W_max: the curve is then already convex.
    k: f64,
    /// W_est in bytes: the window an AIMD(α, β) flow would have now (RFC 9438 §4.3).
    w_est: f64,
}

/// Everything a congestion event changes, saved so that a spurious one can be undone
/// (RFC 9438 §4.9).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Snapshot {
    cwnd: usize,
    ssthresh: usize,
    w_max: f64,
    cwnd_prior: f64,
    epoch: Option<Epoch>,
    after_timeout: bool,
}

/// CUBIC state.
#[derive(Debug, Clone)]
pub struct Cubic {
    cwnd: usize,
    ssthresh: usize,
    /// W_max in bytes: the window at the last congestion event, lowered by fast convergence.
    /// Zero while no congestion event has happened.
    w_max: f64,
    /// cwnd_prior in bytes: the window just before the last reduction; once W_est passes it the
    /// Reno-friendly estimate grows at Reno's full rate (RFC 9438 §4.3).
    cwnd_prior: f64,
    /// The current congestion-avoidance stage; `None` in slow start and recovery, and until the
    /// first ACK of the next stage.
    epoch: Option<Epoch>,
    /// The last reduction was a retransmission timeout: the next stage anchors W_max at its own
    /// starting window with K = 0 (RFC 9438 §4.8).
    after_timeout: bool,
    /// Growth earned but not yet a whole byte, in [0, 1).
    carry: f64,
    /// Since when ACKs have reported the window not in use.
    app_limited_since: Option<Instant>,
    /// State before the last reduction, until the next one.
    before_reduction: Option<Snapshot>,
}

impl Cubic {
    /// Starts with the RFC 6928 initial window and an infinite ssthresh.
    pub fn new(mss: usize) -> Cubic {
        Cubic {
            cwnd: initial_window(mss.max(1)),
            ssthresh: usize::MAX,
            w_max: 0.0,
            cwnd_prior: 0.0,
            epoch: None,
            after_timeout: false,
            carry: 0.0,
            app_limited_since: None,
            before_reduction: None,
        }
    }

    /// RFC 9438 equation 1, in bytes: W_cubic(t) = C·MSS·(t − K)³ + W_max.
    fn w_cubic(&self, epoch: &Epoch, t: f64, mss: f64) -> f64 {
        let d = t - epoch.k;
        self.w_max + C * mss * d * d * d
    }

    /// Anchors the curve at the first ACK of a congestion-avoidance stage.
    fn begin_epoch(&mut self, now: Instant, mss: f64) -> Epoch {
        let cwnd_epoch = self.cwnd as f64;
        // After a timeout (§4.8), or when no congestion event has ever set W_max (slow start
        // ended on an ssthresh remembered at idle restart), the window at hand is the best
        // estimate of the saturation point.
        if self.after_timeout || self.w_max <= 0.0 {
            self.w_max = cwnd_epoch;
            self.after_timeout = false;
        }
        let epoch = Epoch {
            start: now,
            k: ((self.w_max - cwnd_epoch) / (C * mss)).cbrt(),
            w_est: cwnd_epoch,
        };
        self.epoch = Some(epoch);
        epoch
    }

    fn congestion_avoidance(&mut self, now: Instant, acked: usize, mss: f64, rtt: Duration) {
        let mut epoch = match self.epoch {
            Some(epoch) => epoch,
            None => self.begin_epoch(now, mss),
        };
        let cwnd = self.cwnd as f64;
        let acked = acked as f64;
        let t = (now - epoch.start).as_secs_f64();

        // §4.2: aim at where the curve will be one RTT from now, never below the current
        // window and never more than half again above it; close the gap over one window of ACKs.
        let target =
            self.w_cubic(&epoch, t + rtt.as_secs_f64(), mss).clamp(cwnd, MAX_TARGET_RATIO * cwnd);
        let mut next = cwnd + (target - cwnd) * (acked / cwnd).min(1.0);

        // §4.3: a flow that would do better as Reno does so.
        let alpha = if epoch.w_est >= self.cwnd_prior { 1.0 } else { ALPHA };
        epoch.w_est = (epoch.w_est + alpha * mss * acked / cwnd).min(MAX_CWND as f64);
        if self.w_cubic(&epoch, t, mss) < epoch.w_est {
            next = next.max(epoch.w_est);
        }
        self.epoch = Some(epoch);

        let next = next + self.carry;
        let whole = next.floor();
        if whole >= MAX_CWND as f64 {
            self.cwnd = MAX_CWND;
            self.carry = 0.0;
        } else {
            // `next` ≥ cwnd ≥ 1, so the conversion is exact and never negative.
            self.cwnd = whole as usize;
            self.carry = next - whole;
        }
    }

    fn remember_before_reduction(&mut self) {
        self.before_reduction = Some(Snapshot {
            cwnd: self.cwnd,
            ssthresh: self.ssthresh,
            w_max: self.w_max,
            cwnd_prior: self.cwnd_prior,
            epoch: self.epoch,
            after_timeout: self.after_timeout,
        });
        self.cwnd_prior = self.cwnd as f64;
        self.epoch = None;
        self.carry = 0.0;
        self.app_limited_since = None;
    }

    /// §4.6: ssthresh = flight_size · β, at least two segments.
    fn reduced_ssthresh(flight_size: usize, mss: usize) -> usize {
        ((flight_size as f64 * BETA) as usize).max(mss.saturating_mul(2)).min(MAX_CWND)
    }
}

impl CongestionControl for Cubic {
    fn algorithm(&self) -> CongestionAlgorithm {
        CongestionAlgorithm::Cubic
    }
    fn cwnd(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    fn on_ack(
        &mut self,
        now: Instant,
        acked: usize,
        mss: usize,
        cwnd_limited: bool,
        rtt: Option<Duration>,
    ) {
        if !cwnd_limited {
            // RFC 7661 and RFC 9438 §5.8: no growth while the application leaves the window
            // unused, and the curve's clock stops, lest the first ACK after a quiet period
            // find t far along the convex region and jump the window.
            self.app_limited_since.get_or_insert(now);
            return;
        }
        if let Some(since) = self.app_limited_since.take() {
            if let Some(epoch) = &mut self.epoch {
                epoch.start += now - since;
            }
        }
        if acked == 0 {
            return;
        }
        let mss = mss.max(1);
        let acked = slow_start(&mut self.cwnd, self.ssthresh, acked, mss);
        if acked == 0 {
            return;
        }
        self.congestion_avoidance(now, acked, mss as f64, rtt.unwrap_or(FALLBACK_RTT));
    }
    fn on_congestion_event(&mut self, _now: Instant, flight_size: usize, mss: usize) {
        let mss = mss.max(1);
        let cwnd = self.cwnd as f64;
        // §4.7 fast convergence: a flow whose window peaked below the last peak is probably
        // sharing the path with a newcomer; aim lower to leave it room. W_max from before a
        // timeout does not count: the stage after the timeout never reached its own W_max.
        let releasing = !self.after_timeout && cwnd < self.w_max;
        self.remember_before_reduction();
        self.w_max = if releasing { cwnd * (1.0 + BETA) / 2.0 } else { cwnd };
        self.after_timeout = false;
        self.ssthresh = Self::reduced_ssthresh(flight_size, mss);
        self.cwnd = self.ssthresh;
    }
    fn on_recovery_end(&mut self, _now: Instant, flight_size: usize, mss: usize) {
        deflate_after_recovery(&mut self.cwnd, self.ssthresh, flight_size, mss.max(1));
        self.carry = 0.0;
    }
    fn on_retransmit_timeout(&mut self, _now: Instant, flight_size: usize, mss: usize) {
        let mss = mss.max(1);
        self.remember_before_reduction();
        self.after_timeout = true;
        self.ssthresh = Self::reduced_ssthresh(flight_size, mss);
        // §4.8: the window itself falls as Reno's does, to the one-segment loss window.
        self.cwnd = mss;
    }
    fn on_idle_restart(&mut self, _now: Instant, mss: usize) {
        idle_restart(&mut self.cwnd, &mut self.ssthresh, mss.max(1));
        // The window changed under the curve: re-anchor it when growth resumes.
        self.epoch = None;
        self.carry = 0.0;
        self.app_limited_since = None;
    }
    /// RFC 9438 §4.9: put back the window, threshold and curve from before the reduction,
    /// unless the window has meanwhile grown past where it was.
    fn on_spurious_congestion_event(&mut self) {
        if let Some(saved) = self.before_reduction.take() {
            if self.cwnd < saved.cwnd {
                self.cwnd = saved.cwnd;
                self.ssthresh = saved.ssthresh;
                self.w_max = saved.w_max;
                self.cwnd_prior = saved.cwnd_prior;
                self.epoch = saved.epoch;
                self.after_timeout = saved.after_timeout;
                self.carry = 0.0;
                self.app_limited_since = None;
            }
        }
    }
}
