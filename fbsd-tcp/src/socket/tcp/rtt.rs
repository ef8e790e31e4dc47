//! Round-trip time estimation and the retransmission timeout (RFC 6298), fed by timestamps
//! (RFC 7323) or by timing one segment per RTT (Karn's algorithm) when timestamps are off.

use crate::time::Duration;

/// RFC 6298 §2: the clock granularity G. The engine's clock counts microseconds, but timestamps
/// (RFC 7323) tick in milliseconds, so a millisecond is what a sample can really resolve; it
/// also keeps the RTO from collapsing onto SRTT when the variance measures as zero.
const GRANULARITY: Duration = Duration::from_millis(1);

/// Samples are capped here before they enter the averages. A longer "RTT" can only come from a
/// peer echoing a bogus timestamp; capping it bounds the damage to one RTO of max_rto and keeps
/// the arithmetic far from overflow.
const MAX_SAMPLE: Duration = Duration::from_secs(3600);

/// Whole microseconds: the estimator's unit, as the engine's clock has no finer one.
fn micros(d: Duration) -> u64 {
    // Below MAX_SAMPLE (and any sane configured RTO), so this never saturates in practice.
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

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
    ///
    /// The averages are kept in whole microseconds, rounded down.
    pub fn sample(&mut self, rtt: Duration) {
        let rtt = micros(rtt.min(MAX_SAMPLE));
        let rtt_duration = Duration::from_micros(rtt);
        self.min_rtt = Some(self.min_rtt.map_or(rtt_duration, |m| m.min(rtt_duration)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt_duration);
                self.rttvar = Duration::from_micros(rtt / 2);
            }
            Some(srtt) => {
                let srtt = micros(srtt);
                // RTTVAR first: it measures the deviation from the SRTT before this sample.
                let rttvar = (3 * micros(self.rttvar) + srtt.abs_diff(rtt)) / 4;
                self.rttvar = Duration::from_micros(rttvar);
                self.srtt = Some(Duration::from_micros((7 * srtt + rtt) / 8));
            }
        }
    }
    /// The current RTO: the base RTO (already clamped to [min_rto, max_rto]) doubled once per
    /// backoff, and held at `max_rto` (RFC 6298 §5.5 doubles the clamped value, so a path whose
    /// measured RTO is below `min_rto` still backs off from `min_rto`).
    pub fn rto(&self) -> Duration {
        self.base_rto()
            .checked_mul(1 << self.backoff_shift)
            .unwrap_or(self.max_rto)
            .min(self.max_rto)
    }
    /// The RTO without backoff (what TCP_INFO reports as the base): SRTT + max(G, 4·RTTVAR), or
    /// `initial_rto` before the first sample, clamped to [min_rto, max_rto] (if the two
    /// conflict, `max_rto` wins).
    pub fn base_rto(&self) -> Duration {
        let rto = match self.srtt {
            None => self.initial_rto,
            Some(srtt) => srtt + GRANULARITY.max(self.rttvar * 4),
        };
        rto.max(self.min_rto).min(self.max_rto)
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
