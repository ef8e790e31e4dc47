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

/// RFC 6298 §5.7: the RTO to start data transfer with when the SYN (or SYN-ACK) had to be
/// retransmitted and no RTT was measured: the initial RTO proved too short for this path.
pub const SYN_TIMEOUT_FALLBACK_RTO: Duration = Duration::from_secs(3);

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
    /// RFC 6298 §5.7: the SYN or SYN-ACK timed out. Until the first RTT sample, the RTO is at
    /// least [`SYN_TIMEOUT_FALLBACK_RTO`] (still within [min_rto, max_rto]); a sample replaces
    /// it as usual.
    pub fn syn_timed_out(&mut self) {
        self.initial_rto = self.initial_rto.max(SYN_TIMEOUT_FALLBACK_RTO);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// The clamps out of the way, so the RFC 6298 arithmetic shows through.
    fn unclamped() -> RttEstimator {
        RttEstimator::new(Duration::from_secs(1), Duration::ZERO, Duration::from_secs(3600))
    }

    // ---- RFC 6298 §2 arithmetic ----

    #[test]
    fn before_any_sample_the_rto_is_the_initial_one() {
        let est = RttEstimator::new(Duration::from_secs(1), ms(200), ms(120_000));
        assert_eq!(est.srtt(), None);
        assert_eq!(est.min_rtt(), None);
        assert_eq!(est.rttvar(), Duration::ZERO);
        assert_eq!(est.base_rto(), Duration::from_secs(1));
        assert_eq!(est.rto(), Duration::from_secs(1));
    }

    #[test]
    fn first_sample_sets_srtt_and_half_of_it_as_variance() {
        let mut est = unclamped();
        est.sample(ms(100));
        assert_eq!(est.srtt(), Some(ms(100)));
        assert_eq!(est.rttvar(), ms(50));
        assert_eq!(est.rto(), ms(300));
    }

    #[test]
    fn later_samples_follow_the_alpha_beta_filters() {
        let mut est = unclamped();
        est.sample(ms(100));
        // RTTVAR = 3/4·50 + 1/4·|100 − 200| = 62.5 ms; SRTT = 7/8·100 + 1/8·200 = 112.5 ms.
        est.sample(ms(200));
        assert_eq!(est.rttvar(), us(62_500));
        assert_eq!(est.srtt(), Some(us(112_500)));
        assert_eq!(est.rto(), us(112_500 + 4 * 62_500));
        // RTTVAR = 3/4·62.5 + 1/4·12.5 = 50 ms; SRTT = 7/8·112.5 + 1/8·100 = 110.9375 ms,
        // rounded down to the microsecond.
        est.sample(ms(100));
        assert_eq!(est.rttvar(), ms(50));
        assert_eq!(est.srtt(), Some(us(110_937)));
        assert_eq!(est.rto(), us(110_937 + 200_000));
        assert_eq!(est.min_rtt(), Some(ms(100)));
    }

    #[test]
    fn variance_below_the_granularity_still_leaves_one_millisecond_of_margin() {
        let mut est = unclamped();
        for _ in 0..100 {
            est.sample(ms(40));
        }
        assert_eq!(est.srtt(), Some(ms(40)));
        assert!(est.rttvar() < us(250), "{:?}", est.rttvar());
        assert_eq!(est.rto(), ms(41));
    }

    #[test]
    fn syn_timeout_raises_the_rto_to_three_seconds_until_a_sample() {
        let mut est = RttEstimator::new(Duration::from_secs(1), ms(200), ms(120_000));
        est.syn_timed_out();
        assert_eq!(est.rto(), Duration::from_secs(3));
        est.sample(ms(100));
        assert_eq!(est.rto(), ms(300));
        // A configured initial RTO above 3 s is kept, and max_rto still caps it.
        let mut est = RttEstimator::new(Duration::from_secs(5), ms(200), ms(120_000));
        est.syn_timed_out();
        assert_eq!(est.rto(), Duration::from_secs(5));
        let mut est = RttEstimator::new(Duration::from_secs(1), ms(200), ms(2_000));
        est.syn_timed_out();
        assert_eq!(est.rto(), ms(2_000));
    }

    #[test]
    fn min_rtt_is_the_smallest_sample() {
        let mut est = unclamped();
        for rtt in [30, 20, 50, 25, 80] {
            est.sample(ms(rtt));
        }
        assert_eq!(est.min_rtt(), Some(ms(20)));
    }

    /// The integer filters against the RFC's real-valued ones on a seeded random sequence: the
    /// truncation to whole microseconds must not accumulate.
    #[test]
    fn integer_filters_track_the_real_valued_model() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut est = unclamped();
        let (mut srtt, mut rttvar) = (0.0_f64, 0.0_f64);
        for i in 0..10_000 {
            // Mostly around 50 ms, with occasional spikes up to 1 s.
            let micros =
                if next() % 20 == 0 { next() % 1_000_000 } else { 40_000 + next() % 20_000 };
            est.sample(us(micros));
            let r = micros as f64;
            if i == 0 {
                srtt = r;
                rttvar = r / 2.0;
            } else {
                rttvar = 0.75 * rttvar + 0.25 * (srtt - r).abs();
                srtt = 0.875 * srtt + 0.125 * r;
            }
            let got_srtt = est.srtt().unwrap().as_micros() as f64;
            let got_rttvar = est.rttvar().as_micros() as f64;
            assert!((got_srtt - srtt).abs() <= 8.0, "sample {i}: {got_srtt} vs {srtt}");
            assert!((got_rttvar - rttvar).abs() <= 8.0, "sample {i}: {got_rttvar} vs {rttvar}");
        }
    }

    // ---- Clamping (RFC 6298 §2.4, §2.5) ----

    #[test]
    fn rto_is_clamped_to_the_configured_range() {
        let mut est = RttEstimator::new(Duration::from_secs(1), ms(200), ms(60_000));
        est.sample(ms(10));
        assert_eq!(est.base_rto(), ms(200));
        assert_eq!(est.rto(), ms(200));

        let mut est = RttEstimator::new(Duration::from_secs(1), ms(200), ms(60_000));
        est.sample(ms(40_000));
        assert_eq!(est.base_rto(), ms(60_000));
    }

    #[test]
    fn initial_rto_is_clamped_too() {
        let est = RttEstimator::new(Duration::from_secs(1), ms(1500), ms(60_000));
        assert_eq!(est.rto(), ms(1500));
        let est = RttEstimator::new(Duration::from_secs(1), ms(100), ms(500));
        assert_eq!(est.rto(), ms(500));
    }

    #[test]
    fn max_rto_wins_when_the_clamps_conflict() {
        let est = RttEstimator::new(Duration::from_secs(1), ms(900), ms(300));
        assert_eq!(est.rto(), ms(300));
    }

    #[test]
    fn an_absurd_sample_is_capped_instead_of_overflowing() {
        let mut est = RttEstimator::new(Duration::from_secs(1), ms(200), ms(120_000));
        est.sample(Duration::MAX);
        assert_eq!(est.srtt(), Some(MAX_SAMPLE));
        assert_eq!(est.rto(), ms(120_000));
        est.sample(Duration::MAX);
        est.back_off();
        assert_eq!(est.rto(), ms(120_000));
    }

    // ---- Backoff (RFC 6298 §5.5) ----

    #[test]
    fn backoff_doubles_the_clamped_rto_up_to_the_maximum() {
        let mut est = RttEstimator::new(Duration::from_secs(1), ms(200), ms(5_000));
        est.sample(ms(10)); // raw RTO 30 ms, clamped to 200 ms
        let mut seen = Vec::new();
        for _ in 0..7 {
            est.back_off();
            seen.push(est.rto().as_millis());
        }
        assert_eq!(seen, [400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(est.backoff_count(), 7);
        assert_eq!(est.base_rto(), ms(200));
    }

    #[test]
    fn backoff_applies_before_the_first_sample() {
        let mut est = RttEstimator::new(Duration::from_secs(1), ms(200), ms(120_000));
        est.back_off();
        est.back_off();
        assert_eq!(est.rto(), ms(4000));
    }

    #[test]
    fn backoff_saturates_and_resets() {
        let mut est = RttEstimator::new(Duration::from_secs(1), ms(200), Duration::MAX);
        for _ in 0..100 {
            est.back_off();
        }
        assert_eq!(est.backoff_count(), 16);
        assert_eq!(est.rto(), Duration::from_secs(1 << 16));
        est.reset_backoff();
        assert_eq!(est.backoff_count(), 0);
        assert_eq!(est.rto(), Duration::from_secs(1));
    }

    #[test]
    fn samples_do_not_reset_the_backoff() {
        let mut est = unclamped();
        est.sample(ms(100));
        est.back_off();
        est.sample(ms(100));
        assert_eq!(est.backoff_count(), 1);
        // RTTVAR = 3/4·50 = 37.5 ms: base 250 ms, doubled.
        assert_eq!(est.rto(), ms(500));
    }
}
