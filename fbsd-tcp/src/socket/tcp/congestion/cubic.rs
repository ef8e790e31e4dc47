//! CUBIC (RFC 9438): cubic window growth with the Reno-friendly region and fast convergence.

use super::{CongestionAlgorithm, CongestionControl};
use crate::time::{Duration, Instant};

/// CUBIC state.
#[derive(Debug, Clone)]
pub struct Cubic {
    cwnd: usize,
    ssthresh: usize,
}

impl Cubic {
    /// Starts with the RFC 6928 initial window and an infinite ssthresh.
    pub fn new(mss: usize) -> Cubic {
        let _ = mss;
        todo!("congestion helper")
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
        let _ = (now, acked, mss, cwnd_limited, rtt);
        todo!("congestion helper")
    }
    fn on_congestion_event(&mut self, now: Instant, flight_size: usize, mss: usize) {
        let _ = (now, flight_size, mss);
        todo!("congestion helper")
    }
    fn on_recovery_end(&mut self, now: Instant, flight_size: usize, mss: usize) {
        let _ = (now, flight_size, mss);
        todo!("congestion helper")
    }
    fn on_retransmit_timeout(&mut self, now: Instant, flight_size: usize, mss: usize) {
        let _ = (now, flight_size, mss);
        todo!("congestion helper")
    }
    fn on_idle_restart(&mut self, now: Instant, mss: usize) {
        let _ = (now, mss);
        todo!("congestion helper")
    }
}
