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
        // After a timeout (§4.8) the window at hand is the best estimate of the saturation
        // point. So it would be if W_max had never been set, a state no sequence of calls
        // reaches today (the first ssthresh comes with a W_max or a timeout) but cheap to guard.
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

    /// §4.6: ssthresh = flight_size · β, at least two segments. In integers (β = 7/10), so that
    /// the threshold is exactly what the RFC's arithmetic gives, without float rounding.
    fn reduced_ssthresh(flight_size: usize, mss: usize) -> usize {
        (flight_size / 10 * 7 + flight_size % 10 * 7 / 10).max(mss.saturating_mul(2)).min(MAX_CWND)
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

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const RTT: Duration = Duration::from_millis(100);

    /// A CUBIC sender that slow-started to `segments` and then saw a loss with its whole window
    /// in flight, at time zero.
    fn after_loss_at(segments: usize) -> Cubic {
        let mut cc = Cubic::new(MSS);
        while cc.cwnd() < segments * MSS {
            cc.on_ack(Instant::ZERO, MSS, MSS, true, Some(RTT));
        }
        assert_eq!(cc.cwnd(), segments * MSS);
        cc.on_congestion_event(Instant::ZERO, segments * MSS, MSS);
        cc
    }

    /// An ACK clock: each round trip acknowledges the window as it stood at the round's start,
    /// one MSS per ACK, evenly spread. Returns the time and window at the start of every round.
    fn drive(cc: &mut Cubic, now: &mut Instant, rtt: Duration, rounds: usize) -> Vec<(f64, usize)> {
        let mut trace = Vec::new();
        for _ in 0..rounds {
            trace.push((now.total_micros() as f64 / 1e6, cc.cwnd()));
            let acks = (cc.cwnd() / MSS).max(1);
            for _ in 0..acks {
                *now += rtt / acks as u32;
                cc.on_ack(*now, MSS, MSS, true, Some(rtt));
            }
        }
        trace
    }

    /// RFC 9438 equations 1 and 2, in segments, written out independently of the code.
    fn rfc_k(w_max: f64, cwnd_epoch: f64) -> f64 {
        ((w_max - cwnd_epoch) / 0.4).cbrt()
    }
    fn rfc_w_cubic(t: f64, w_max: f64, k: f64) -> f64 {
        0.4 * (t - k).powi(3) + w_max
    }

    /// RFC 9438's α_cubic, written out again.
    const RFC_ALPHA: f64 = 3.0 * (1.0 - 0.7) / (1.0 + 0.7);

    fn segments(bytes: usize) -> f64 {
        bytes as f64 / MSS as f64
    }

    // ---- Multiplicative decrease and fast convergence (§4.6, §4.7) ----

    #[test]
    fn congestion_event_cuts_to_seven_tenths_of_the_flight() {
        let cc = after_loss_at(100);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (70_000, 70_000));
        assert_eq!((cc.w_max, cc.cwnd_prior), (100_000.0, 100_000.0));
        assert_eq!(cc.epoch, None);

        let mut cc = Cubic::new(MSS);
        cc.on_congestion_event(Instant::ZERO, 14_599, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (10_219, 10_219));
    }

    #[test]
    fn congestion_event_keeps_at_least_two_segments() {
        let mut cc = Cubic::new(MSS);
        cc.on_congestion_event(Instant::ZERO, 2_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (2_000, 2_000));
        cc.on_congestion_event(Instant::ZERO, 0, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (2_000, 2_000));
    }

    #[test]
    fn fast_convergence_lowers_w_max_when_the_peak_falls_short() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::ZERO;
        drive(&mut cc, &mut now, RTT, 10);
        let peak = cc.cwnd();
        assert!(peak < 100_000 && peak > 80_000, "{peak}");
        cc.on_congestion_event(now, peak, MSS);
        assert_eq!(cc.w_max, peak as f64 * 0.85);
        assert_eq!(cc.cwnd_prior, peak as f64);
        assert_eq!(cc.ssthresh(), peak * 7 / 10);
    }

    #[test]
    fn without_fast_convergence_w_max_is_the_window_at_the_loss() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::ZERO;
        drive(&mut cc, &mut now, RTT, 70);
        let peak = cc.cwnd();
        assert!(peak > 100_000, "{peak}");
        cc.on_congestion_event(now, peak, MSS);
        assert_eq!(cc.w_max, peak as f64);
    }

    // ---- The cubic curve (§4.2, §4.4, §4.5) ----

    #[test]
    fn k_is_the_time_to_climb_back_to_w_max() {
        let mut cc = after_loss_at(100);
        cc.on_ack(Instant::from_millis(1), MSS, MSS, true, Some(RTT));
        let epoch = cc.epoch.expect("congestion avoidance began");
        assert_eq!(epoch.start, Instant::from_millis(1));
        assert!((epoch.k - rfc_k(100.0, 70.0)).abs() < 1e-9, "{}", epoch.k);
        assert!((epoch.k - 4.217_163_3).abs() < 1e-6);
    }

    #[test]
    fn window_follows_w_cubic_and_reaches_w_max_at_k() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::ZERO;
        let k = rfc_k(100.0, 70.0);
        // Up to 5 s: past K, before the Reno-friendly estimate (growing since 70 segments at
        // α_cubic, then at 1) overtakes the flat top of the curve.
        let trace = drive(&mut cc, &mut now, RTT, 50);
        for &(t, cwnd) in &trace {
            let expected = rfc_w_cubic(t, 100.0, k);
            assert!(
                (segments(cwnd) - expected).abs() < 0.25,
                "t = {t}: {} segments, W_cubic = {expected}",
                segments(cwnd)
            );
        }
        let &(_, at_k) =
            trace.iter().min_by(|a, b| (a.0 - k).abs().total_cmp(&(b.0 - k).abs())).unwrap();
        assert!(at_k.abs_diff(100_000) <= MSS, "{at_k}");
    }

    #[test]
    fn growth_is_concave_below_w_max_and_convex_above() {
        // A large window at a long RTT: the Reno-friendly estimate stays far below the curve, so
        // the shape is the cubic's alone. K = cbrt(300 / 0.4) ≈ 9.1 s.
        let mut cc = after_loss_at(1000);
        let mut now = Instant::ZERO;
        let k = rfc_k(1000.0, 700.0);
        let trace = drive(&mut cc, &mut now, RTT, 180);
        let growth_per_second: Vec<(f64, f64)> = trace
            .windows(11)
            .step_by(10)
            .map(|w| (w[0].0, segments(w[10].1) - segments(w[0].1)))
            .collect();
        let mut previous: Option<f64> = None;
        for &(t, growth) in &growth_per_second {
            if let Some(previous) = previous {
                if t + 1.0 < k {
                    assert!(growth < previous, "t = {t}: not concave ({growth} ≥ {previous})");
                } else if t > k {
                    assert!(growth > previous, "t = {t}: not convex ({growth} ≤ {previous})");
                }
            }
            previous = Some(growth);
        }
        for &(t, cwnd) in &trace {
            if t < k {
                assert!(cwnd <= 1000 * MSS, "t = {t}: {cwnd} above W_max before K");
            }
        }
        let &(end, last) = trace.last().unwrap();
        assert!((segments(last) - rfc_w_cubic(end, 1000.0, k)).abs() < 1.0);
    }

    #[test]
    fn target_is_capped_at_one_and_a_half_windows_per_round_trip() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::ZERO;
        drive(&mut cc, &mut now, RTT, 1);
        // A round trip so long that the curve's target runs far ahead.
        let before = cc.cwnd();
        drive(&mut cc, &mut now, Duration::from_secs(30), 1);
        let after = cc.cwnd();
        assert!(after <= before * 3 / 2 + 1, "{before} → {after}");
        assert!(after >= before * 3 / 2 - MSS, "{before} → {after}");
    }

    // ---- The Reno-friendly region (§4.3) ----

    #[test]
    fn reno_friendly_region_dominates_at_small_rtt() {
        // 20 segments at 1 ms: the curve would take K ≈ 2.5 s to climb 6 segments, while Reno
        // adds a segment every millisecond.
        let rtt = Duration::from_millis(1);
        let mut cc = after_loss_at(20);
        let mut now = Instant::ZERO;
        let trace = drive(&mut cc, &mut now, rtt, 200);

        // W_est alone, per ACK and in segments: α_cubic until it passes cwnd_prior, then 1.
        let mut w_est = 14.0_f64;
        for &(t, cwnd) in &trace {
            assert!(
                (segments(cwnd) - w_est).abs() <= 0.02 * w_est + 1.0,
                "t = {t}: {} segments, W_est = {w_est}",
                segments(cwnd)
            );
            let acks = (cwnd / MSS).max(1);
            for _ in 0..acks {
                let alpha = if w_est >= 20.0 { 1.0 } else { RFC_ALPHA };
                w_est += alpha / w_est;
            }
        }
        let end = trace.last().unwrap().0;
        let k = rfc_k(20.0, 14.0);
        assert!(segments(cc.cwnd()) > 10.0 * rfc_w_cubic(end, 20.0, k));
    }

    #[test]
    fn reno_friendly_estimate_grows_at_alpha_cubic_until_the_prior_window() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::ZERO;
        drive(&mut cc, &mut now, RTT, 10);
        let w_est = cc.epoch.unwrap().w_est;
        // Ten round trips at ≈ 0.53 segments each.
        assert!((w_est - 70_000.0 - 10.0 * RFC_ALPHA * 1000.0).abs() < 100.0, "{w_est}");
    }

    // ---- Timeout (§4.8) ----

    #[test]
    fn timeout_falls_to_one_segment_and_restarts_the_curve_at_the_next_stage() {
        let mut cc = Cubic::new(MSS);
        for _ in 0..40 {
            cc.on_ack(Instant::ZERO, MSS, MSS, true, Some(RTT));
        }
        cc.on_retransmit_timeout(Instant::ZERO, 50_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1_000, 35_000));
        assert_eq!(cc.cwnd_prior, 50_000.0);
        assert!(cc.after_timeout);

        let mut now = Instant::ZERO;
        while cc.cwnd() < cc.ssthresh() {
            now += Duration::from_millis(1);
            cc.on_ack(now, MSS, MSS, true, Some(RTT));
        }
        assert_eq!(cc.epoch, None);
        now += Duration::from_millis(1);
        cc.on_ack(now, MSS, MSS, true, Some(RTT));
        let epoch = cc.epoch.unwrap();
        assert_eq!((cc.w_max, epoch.k), (35_000.0, 0.0));
        assert!(!cc.after_timeout);
    }

    #[test]
    fn timeout_with_nothing_in_flight_still_leaves_one_segment() {
        let mut cc = Cubic::new(MSS);
        cc.on_retransmit_timeout(Instant::ZERO, 0, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1_000, 2_000));
    }

    #[test]
    fn loss_after_a_timeout_does_not_apply_fast_convergence() {
        let mut cc = after_loss_at(100);
        cc.on_retransmit_timeout(Instant::ZERO, 70_000, MSS);
        for _ in 0..20 {
            cc.on_ack(Instant::ZERO, MSS, MSS, true, Some(RTT));
        }
        assert_eq!(cc.cwnd(), 21_000);
        cc.on_congestion_event(Instant::ZERO, 21_000, MSS);
        assert_eq!(cc.w_max, 21_000.0);
    }

    // ---- Recovery end, idle restart ----

    #[test]
    fn recovery_end_deflates_and_the_curve_starts_from_ssthresh() {
        let mut cc = after_loss_at(100);
        cc.on_recovery_end(Instant::ZERO, 50_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (51_000, 70_000));
        let mut now = Instant::ZERO;
        while cc.cwnd() < cc.ssthresh() {
            now += Duration::from_millis(1);
            cc.on_ack(now, MSS, MSS, true, Some(RTT));
        }
        assert_eq!(cc.epoch, None);
        now += Duration::from_millis(1);
        cc.on_ack(now, MSS, MSS, true, Some(RTT));
        assert!((cc.epoch.unwrap().k - rfc_k(100.0, 70.0)).abs() < 1e-9);
    }

    #[test]
    fn idle_restart_falls_to_the_initial_window() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::ZERO;
        drive(&mut cc, &mut now, RTT, 5);
        let window = cc.cwnd();
        cc.on_idle_restart(now, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (10_000, 70_000.max(window / 4 * 3)));
        assert_eq!(cc.epoch, None);
        assert_eq!(cc.w_max, 100_000.0);
    }

    // ---- Application-limited periods ----

    #[test]
    fn no_growth_and_no_curve_time_while_application_limited() {
        let mut steady = after_loss_at(100);
        let mut paused = steady.clone();
        let mut stalled = steady.clone();
        let (mut now_steady, mut now_paused, mut now_stalled) =
            (Instant::ZERO, Instant::ZERO, Instant::ZERO);
        drive(&mut steady, &mut now_steady, RTT, 20);
        drive(&mut paused, &mut now_paused, RTT, 20);
        drive(&mut stalled, &mut now_stalled, RTT, 20);

        // Ten seconds of ACKs for a window the application does not fill.
        let window = paused.cwnd();
        for _ in 0..100 {
            now_paused += RTT;
            paused.on_ack(now_paused, MSS, MSS, false, Some(RTT));
        }
        assert_eq!(paused.cwnd(), window);
        // Ten seconds in which nothing is acknowledged and nothing tells the curve why.
        now_stalled += Duration::from_secs(10);

        let steady_trace = drive(&mut steady, &mut now_steady, RTT, 10);
        let paused_trace = drive(&mut paused, &mut now_paused, RTT, 10);
        let stalled_trace = drive(&mut stalled, &mut now_stalled, RTT, 10);
        for (s, p) in steady_trace.iter().zip(&paused_trace) {
            assert!(s.1.abs_diff(p.1) <= 2 * MSS, "{s:?} vs {p:?}");
        }
        // Without the pause accounting the curve would have leapt ahead.
        assert!(stalled_trace[9].1 > 2 * steady_trace[9].1);
    }

    // ---- Spurious congestion events (§4.9) ----

    #[test]
    fn spurious_loss_restores_the_state_before_it() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::ZERO;
        drive(&mut cc, &mut now, RTT, 20);
        let before = cc.clone();
        cc.on_congestion_event(now, cc.cwnd(), MSS);
        drive(&mut cc, &mut now, RTT, 2);
        cc.on_spurious_congestion_event();
        assert_eq!(cc.cwnd(), before.cwnd());
        assert_eq!(cc.ssthresh(), before.ssthresh());
        assert_eq!(cc.w_max, before.w_max);
        assert_eq!(cc.cwnd_prior, before.cwnd_prior);
        assert_eq!(cc.epoch, before.epoch);
        // Only once.
        cc.on_congestion_event(now, cc.cwnd(), MSS);
        cc.on_spurious_congestion_event();
        cc.on_spurious_congestion_event();
        assert_eq!(cc.cwnd(), before.cwnd());
    }

    #[test]
    fn spurious_timeout_restores_the_window() {
        let mut cc = after_loss_at(100);
        cc.on_retransmit_timeout(Instant::ZERO, 70_000, MSS);
        cc.on_spurious_congestion_event();
        assert_eq!((cc.cwnd(), cc.ssthresh()), (70_000, 70_000));
        assert_eq!(cc.w_max, 100_000.0);
        assert!(!cc.after_timeout);
    }

    #[test]
    fn late_spurious_detection_keeps_a_window_that_already_regrew() {
        let mut cc = Cubic::new(MSS);
        cc.on_congestion_event(Instant::ZERO, 10_000, MSS);
        let mut now = Instant::ZERO;
        drive(&mut cc, &mut now, RTT, 20);
        let grown = (cc.cwnd(), cc.ssthresh());
        assert!(grown.0 > 10_000);
        cc.on_spurious_congestion_event();
        assert_eq!((cc.cwnd(), cc.ssthresh()), grown);
    }

    // ---- Limits ----

    #[test]
    fn window_is_capped_and_arithmetic_stays_finite() {
        let mut cc = after_loss_at(100);
        let mut now = Instant::ZERO;
        for _ in 0..200 {
            now += Duration::from_secs(1_000_000);
            cc.on_ack(now, usize::MAX / 2, MSS, true, Some(Duration::from_secs(1 << 20)));
            assert!(cc.cwnd() <= MAX_CWND);
            assert!(cc.carry.is_finite() && cc.epoch.unwrap().w_est.is_finite());
        }
        assert_eq!(cc.cwnd(), MAX_CWND);
    }

    #[test]
    fn missing_rtt_falls_back_to_a_sane_look_ahead() {
        let mut with_rtt = after_loss_at(100);
        let mut without = with_rtt.clone();
        for i in 1..=100 {
            let now = Instant::from_millis(i);
            with_rtt.on_ack(now, MSS, MSS, true, Some(FALLBACK_RTT));
            without.on_ack(now, MSS, MSS, true, None);
        }
        assert_eq!(with_rtt.cwnd(), without.cwnd());
        assert!(without.cwnd() > 70_000);
    }
}
