//! NewReno window management (RFC 5681 slow start and congestion avoidance with appropriate
//! byte counting, RFC 3465 L = 2).
//!
//! Congestion avoidance counts bytes rather than ACKs: one MSS is added each time a full
//! window's worth of bytes has been acknowledged. That is exactly "one segment per RTT" whatever
//! the ACK pattern (delayed ACKs, stretch ACKs), and unlike the classic per-ACK `MSS·MSS/cwnd`
//! it never rounds to zero and stalls when the window is large.

use super::{
    deflate_after_recovery, idle_restart, initial_window, slow_start, CongestionAlgorithm,
    CongestionControl, MAX_CWND,
};
use crate::time::{Duration, Instant};

/// NewReno's window arithmetic.
#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    /// RFC 3465 `bytes_acked`: bytes acknowledged in congestion avoidance since the window last
    /// grew by one MSS.
    bytes_acked: usize,
    /// `(cwnd, ssthresh)` just before the last reduction, kept until the next one so that a
    /// reduction shown to be spurious can be undone.
    before_reduction: Option<(usize, usize)>,
}

impl NewReno {
    /// Starts with the RFC 6928 initial window and an infinite ssthresh.
    pub fn new(mss: usize) -> NewReno {
        NewReno {
            cwnd: initial_window(mss.max(1)),
            ssthresh: usize::MAX,
            bytes_acked: 0,
            before_reduction: None,
        }
    }

    /// RFC 5681 equation (4): half the flight, but never below two segments so that fast
    /// retransmit still has dupacks to work with.
    fn halved_ssthresh(flight_size: usize, mss: usize) -> usize {
        (flight_size / 2).max(mss.saturating_mul(2)).min(MAX_CWND)
    }

    fn remember_before_reduction(&mut self) {
        self.before_reduction = Some((self.cwnd, self.ssthresh));
        self.bytes_acked = 0;
    }
}

impl CongestionControl for NewReno {
    fn algorithm(&self) -> CongestionAlgorithm {
        CongestionAlgorithm::NewReno
    }
    fn cwnd(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    fn on_ack(
        &mut self,
        _now: Instant,
        acked: usize,
        mss: usize,
        cwnd_limited: bool,
        _rtt: Option<Duration>,
    ) {
        // RFC 7661: a window the application does not fill has not been shown safe to grow;
        // byte credit is not banked either, or it would be spent in a burst later.
        if !cwnd_limited || acked == 0 {
            return;
        }
        let mss = mss.max(1);
        let acked = slow_start(&mut self.cwnd, self.ssthresh, acked, mss);
        if acked == 0 {
            return;
        }
        self.bytes_acked = self.bytes_acked.saturating_add(acked);
        // A loop rather than a division because each added MSS raises the bar for the next;
        // it runs more than once only for stretch ACKs covering more than a window.
        while self.bytes_acked >= self.cwnd && self.cwnd < MAX_CWND {
            self.bytes_acked -= self.cwnd;
            self.cwnd = (self.cwnd + mss).min(MAX_CWND);
        }
        if self.cwnd >= MAX_CWND {
            self.bytes_acked = 0;
        }
    }
    fn on_congestion_event(&mut self, _now: Instant, flight_size: usize, mss: usize) {
        let mss = mss.max(1);
        self.remember_before_reduction();
        self.ssthresh = Self::halved_ssthresh(flight_size, mss);
        self.cwnd = self.ssthresh;
    }
    fn on_recovery_end(&mut self, _now: Instant, flight_size: usize, mss: usize) {
        deflate_after_recovery(&mut self.cwnd, self.ssthresh, flight_size, mss.max(1));
        self.bytes_acked = 0;
    }
    fn on_retransmit_timeout(&mut self, _now: Instant, flight_size: usize, mss: usize) {
        let mss = mss.max(1);
        self.remember_before_reduction();
        self.ssthresh = Self::halved_ssthresh(flight_size, mss);
        // RFC 5681 §3.1: the loss window is one segment.
        self.cwnd = mss;
    }
    fn on_idle_restart(&mut self, _now: Instant, mss: usize) {
        idle_restart(&mut self.cwnd, &mut self.ssthresh, mss.max(1));
        self.bytes_acked = 0;
    }
    /// Restores the window and threshold from before the last reduction (the idea of RFC 4015's
    /// Eifel response), unless the window has meanwhile grown past where it was.
    fn on_spurious_congestion_event(&mut self) {
        if let Some((cwnd, ssthresh)) = self.before_reduction.take() {
            if self.cwnd < cwnd {
                self.cwnd = cwnd;
                self.ssthresh = ssthresh;
                self.bytes_acked = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const T0: Instant = Instant::ZERO;

    /// A fresh NewReno (IW = 10 000 bytes) and a shorthand for a window-limited ACK.
    fn reno() -> NewReno {
        NewReno::new(MSS)
    }

    fn ack(cc: &mut NewReno, bytes: usize) {
        cc.on_ack(T0, bytes, MSS, true, Some(Duration::from_millis(50)));
    }

    /// Puts `cc` in congestion avoidance at `cwnd` = `ssthresh` = `window`, with no byte credit.
    fn in_avoidance(window: usize) -> NewReno {
        let mut cc = reno();
        cc.on_congestion_event(T0, 2 * window, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (window, window));
        cc
    }

    // ---- Slow start (RFC 5681 §3.1, RFC 3465) ----

    #[test]
    fn starts_at_the_initial_window_with_infinite_ssthresh() {
        let cc = reno();
        assert_eq!(cc.cwnd(), 10_000);
        assert_eq!(cc.ssthresh(), usize::MAX);
        assert_eq!(cc.algorithm(), CongestionAlgorithm::NewReno);
        assert_eq!(NewReno::new(1460).cwnd(), 14_600);
        assert_eq!(NewReno::new(9000).cwnd(), 18_000);
    }

    #[test]
    fn slow_start_grows_by_the_bytes_acked_up_to_two_segments_per_ack() {
        let mut cc = reno();
        let mut seen = Vec::new();
        for bytes in [1000, 500, 2000, 3000, 10_000, 1] {
            ack(&mut cc, bytes);
            seen.push(cc.cwnd());
        }
        assert_eq!(seen, [11_000, 11_500, 13_500, 15_500, 17_500, 17_501]);
    }

    #[test]
    fn slow_start_doubles_the_window_each_round_trip() {
        let mut cc = reno();
        for round in 0..5 {
            assert_eq!(cc.cwnd(), 10_000 << round);
            for _ in 0..cc.cwnd() / MSS {
                ack(&mut cc, MSS);
            }
        }
    }

    #[test]
    fn slow_start_stops_at_ssthresh_and_carries_the_rest_into_avoidance() {
        let mut cc = in_avoidance(10_000);
        cc.on_recovery_end(T0, 8_500, MSS);
        assert_eq!(cc.cwnd(), 9_500);
        ack(&mut cc, 1500); // 500 bytes fill the window to ssthresh, 1000 count as avoidance
        assert_eq!((cc.cwnd(), cc.bytes_acked), (10_000, 1000));
        for _ in 0..9 {
            ack(&mut cc, MSS);
        }
        assert_eq!((cc.cwnd(), cc.bytes_acked), (11_000, 0));
    }

    #[test]
    fn no_growth_when_the_window_is_not_in_use() {
        let mut cc = reno();
        cc.on_ack(T0, 5000, MSS, false, None);
        assert_eq!(cc.cwnd(), 10_000);
        let mut cc = in_avoidance(10_000);
        for _ in 0..20 {
            cc.on_ack(T0, MSS, MSS, false, None);
        }
        assert_eq!((cc.cwnd(), cc.bytes_acked), (10_000, 0));
    }

    // ---- Congestion avoidance (RFC 5681 §3.1, RFC 3465 byte counting) ----

    #[test]
    fn avoidance_adds_one_segment_per_window_acknowledged() {
        let mut cc = in_avoidance(10_000);
        let mut seen = Vec::new();
        for _ in 0..(10 + 11 + 12) {
            ack(&mut cc, MSS);
            seen.push(cc.cwnd());
        }
        let mut expected = vec![10_000; 9];
        expected.extend([11_000; 11]);
        expected.extend([12_000; 12]);
        expected.push(13_000);
        assert_eq!(seen, expected);
    }

    #[test]
    fn avoidance_does_not_stall_with_a_huge_window() {
        // MSS·MSS/cwnd would round to zero here; byte counting still adds a segment per window.
        let window = 400_000_000;
        let mut cc = in_avoidance(window);
        ack(&mut cc, window - 1);
        assert_eq!(cc.cwnd(), window);
        ack(&mut cc, 1);
        assert_eq!(cc.cwnd(), window + MSS);
    }

    /// Whatever the sizes of the ACKs, after B bytes in avoidance from window W the window is
    /// W + k·MSS for the largest k with W + (W + MSS) + … + (W + (k−1)·MSS) ≤ B.
    #[test]
    fn avoidance_matches_the_byte_counting_model_for_any_ack_pattern() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20 {
            let start = 2 * MSS + (next() % 50) as usize * MSS;
            let mut cc = in_avoidance(start);
            let mut total = 0;
            for _ in 0..2000 {
                let bytes = 1 + (next() % (4 * MSS as u64)) as usize;
                total += bytes;
                ack(&mut cc, bytes);
                let (mut model, mut spent) = (start, 0);
                while spent + model <= total {
                    spent += model;
                    model += MSS;
                }
                assert_eq!(cc.cwnd(), model);
            }
        }
    }

    #[test]
    fn window_is_capped_at_one_gibibyte() {
        let mut cc = reno();
        for _ in 0..1_000_000 {
            ack(&mut cc, 2 * MSS);
            if cc.cwnd() == MAX_CWND {
                break;
            }
        }
        assert_eq!(cc.cwnd(), MAX_CWND);
        let mut cc = in_avoidance(MAX_CWND - 10);
        ack(&mut cc, usize::MAX);
        ack(&mut cc, usize::MAX);
        assert_eq!(cc.cwnd(), MAX_CWND);
    }

    // ---- Loss: fast retransmit and recovery (RFC 5681 §3.2, RFC 6582 §3.2) ----

    #[test]
    fn congestion_event_halves_the_flight() {
        let mut cc = reno();
        cc.on_congestion_event(T0, 30_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (15_000, 15_000));
        cc.on_congestion_event(T0, 15_001, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (7_500, 7_500));
    }

    #[test]
    fn congestion_event_keeps_at_least_two_segments() {
        let mut cc = reno();
        cc.on_congestion_event(T0, 3_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (2_000, 2_000));
        cc.on_congestion_event(T0, 0, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (2_000, 2_000));
    }

    #[test]
    fn recovery_end_deflates_to_ssthresh_or_the_flight_plus_one_segment() {
        let mut cc = reno();
        cc.on_congestion_event(T0, 40_000, MSS);
        cc.on_recovery_end(T0, 30_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (20_000, 20_000));

        let mut cc = reno();
        cc.on_congestion_event(T0, 40_000, MSS);
        cc.on_recovery_end(T0, 12_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (13_000, 20_000));
        // Below ssthresh again: slow start resumes.
        ack(&mut cc, 3000);
        assert_eq!(cc.cwnd(), 15_000);

        let mut cc = reno();
        cc.on_congestion_event(T0, 40_000, MSS);
        cc.on_recovery_end(T0, 0, MSS);
        assert_eq!(cc.cwnd(), 2_000);
    }

    #[test]
    fn a_full_cycle_of_slow_start_loss_recovery_and_avoidance() {
        let mut cc = reno();
        for _ in 0..10 {
            ack(&mut cc, MSS);
        }
        assert_eq!(cc.cwnd(), 20_000);
        cc.on_congestion_event(T0, 20_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (10_000, 10_000));
        cc.on_recovery_end(T0, 10_000, MSS);
        assert_eq!(cc.cwnd(), 10_000);
        for _ in 0..10 {
            ack(&mut cc, MSS);
        }
        assert_eq!((cc.cwnd(), cc.ssthresh()), (11_000, 10_000));
    }

    // ---- Retransmission timeout (RFC 5681 §3.1) ----

    #[test]
    fn timeout_falls_to_the_loss_window_and_slow_starts_to_half_the_flight() {
        let mut cc = reno();
        cc.on_retransmit_timeout(T0, 24_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1_000, 12_000));
        let mut seen = Vec::new();
        for _ in 0..8 {
            ack(&mut cc, MSS);
            seen.push(cc.cwnd());
        }
        assert_eq!(seen, [2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000, 9_000]);
        for _ in 0..3 {
            ack(&mut cc, MSS);
        }
        assert_eq!(cc.cwnd(), 12_000);
        ack(&mut cc, MSS);
        assert_eq!(cc.cwnd(), 12_000);
    }

    #[test]
    fn timeout_with_nothing_in_flight_still_leaves_one_segment() {
        let mut cc = reno();
        cc.on_retransmit_timeout(T0, 0, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1_000, 2_000));
    }

    // ---- Idle restart (RFC 5681 §4.1) ----

    #[test]
    fn idle_restart_falls_to_the_initial_window_and_remembers_three_quarters() {
        let mut cc = in_avoidance(40_000);
        cc.on_idle_restart(T0, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (10_000, 40_000));

        let mut cc = in_avoidance(40_000);
        for _ in 0..(40 + 41 + 42 + 43 + 44 + 45 + 46 + 47 + 48 + 49 + 50 + 51 + 52 + 53) {
            ack(&mut cc, MSS);
        }
        assert_eq!(cc.cwnd(), 54_000);
        cc.on_idle_restart(T0, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (10_000, 40_500));
    }

    #[test]
    fn idle_restart_never_raises_a_small_window() {
        let mut cc = reno();
        cc.on_retransmit_timeout(T0, 8_000, MSS);
        cc.on_idle_restart(T0, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1_000, 4_000));
    }

    // ---- Undo (spurious retransmission) ----

    #[test]
    fn spurious_reduction_is_undone_once() {
        let mut cc = in_avoidance(30_000);
        cc.on_congestion_event(T0, 30_000, MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (15_000, 15_000));
        cc.on_spurious_congestion_event();
        assert_eq!((cc.cwnd(), cc.ssthresh()), (30_000, 30_000));
        cc.on_spurious_congestion_event();
        assert_eq!((cc.cwnd(), cc.ssthresh()), (30_000, 30_000));

        let mut cc = reno();
        cc.on_retransmit_timeout(T0, 20_000, MSS);
        cc.on_spurious_congestion_event();
        assert_eq!((cc.cwnd(), cc.ssthresh()), (10_000, usize::MAX));
    }

    #[test]
    fn undo_keeps_a_window_that_has_already_regrown() {
        let mut cc = reno();
        cc.on_retransmit_timeout(T0, 10_000, MSS);
        while cc.cwnd() <= 10_000 {
            ack(&mut cc, 2 * MSS);
        }
        assert_eq!(cc.cwnd(), 11_000);
        cc.on_spurious_congestion_event();
        assert_eq!((cc.cwnd(), cc.ssthresh()), (11_000, 5_000));
    }
}
