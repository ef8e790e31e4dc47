//! NewReno window management (RFC 5681 slow start and congestion avoidance with appropriate
//! byte counting, RFC 3465 L = 2).

use super::{CongestionAlgorithm, CongestionControl};
use crate::time::{Duration, Instant};

/// NewReno's window arithmetic.
#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
}

impl NewReno {
    /// Starts with the RFC 6928 initial window and an infinite ssthresh.
    pub fn new(mss: usize) -> NewReno {
        let _ = mss;
        todo!("congestion helper")
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
