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
