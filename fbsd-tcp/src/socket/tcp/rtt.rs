//! Round-trip time estimation and the retransmission timeout (RFC 6298), fed by timestamps
//! (RFC 7323) or by timing one segment per RTT (Karn's algorithm) when timestamps are off.

use crate::time::Duration;

/// Smoothed RTT, RTT variance and the RTO derived from them, with exponential backoff.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    backoff_shift: u32,
    initial_rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    /// No sample yet: the RTO is `initial_rto` (RFC 6298 §2.1 says 1 s). `min_rto` and `max_rto`
    /// clamp every RTO (RFC 6298 §2.4 and §2.5).
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            backoff_shift: 0,
            initial_rto,
            min_rto,
            max_rto,
        }
    }
    /// Feeds one RTT measurement (RFC 6298 §2.2 for the first, §2.3 after, α = 1/8, β = 1/4,
    /// clock granularity 1 ms). Does not reset the backoff: the caller does that when new data
    /// is acknowledged (RFC 6298 §5.7 note on Karn).
    pub fn sample(&mut self, rtt: Duration) {
        let _ = rtt;
        todo!("congestion helper")
    }
    /// The current RTO: (SRTT + max(G, 4·RTTVAR)) << backoff, clamped to [min_rto, max_rto].
    pub fn rto(&self) -> Duration {
        todo!("congestion helper")
    }
    /// The RTO without backoff (what TCP_INFO reports as the base).
    pub fn base_rto(&self) -> Duration {
        todo!("congestion helper")
    }
    /// Doubles the RTO after a timeout (RFC 6298 §5.5), up to `max_rto`.
    pub fn back_off(&mut self) {
        self.backoff_shift = (self.backoff_shift + 1).min(16);
    }
    /// Forgets the backoff (new data was acknowledged).
    pub fn reset_backoff(&mut self) {
        self.backoff_shift = 0;
    }
    /// How many times the RTO has been doubled.
    pub fn backoff_count(&self) -> u32 {
        self.backoff_shift
    }
    /// Smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
    /// RTT variance.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }
    /// The smallest RTT seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }
}
