//! Pluggable congestion control (FreeBSD's `cc` framework, in Rust): the connection tells the
//! algorithm what happened; the algorithm owns `cwnd` and `ssthresh`.
//!
//! Loss-recovery mechanics (fast retransmit, NewReno partial ACKs, SACK pipe accounting,
//! window inflation) belong to the connection, not here: an algorithm only decides how the window
//! grows on ACKs and how far it falls on a congestion signal.

mod cubic;
mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

use crate::time::{Duration, Instant};

/// Which algorithm a socket uses (TCP_CONGESTION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CongestionAlgorithm {
    /// RFC 5681 + RFC 6582.
    NewReno,
    /// RFC 9438, the default (as on Linux and FreeBSD 14).
    #[default]
    Cubic,
}

impl CongestionAlgorithm {
    /// The name TCP_CONGESTION uses ("reno", "cubic").
    pub fn name(self) -> &'static str {
        match self {
            CongestionAlgorithm::NewReno => "reno",
            CongestionAlgorithm::Cubic => "cubic",
        }
    }
    /// Parses a TCP_CONGESTION name ("reno" or "newreno", "cubic").
    pub fn from_name(name: &str) -> Option<CongestionAlgorithm> {
        match name {
            "reno" | "newreno" => Some(CongestionAlgorithm::NewReno),
            "cubic" => Some(CongestionAlgorithm::Cubic),
            _ => None,
        }
    }
    /// A fresh controller with the RFC 6928 initial window for `mss`.
    pub fn build(self, mss: usize) -> Box<dyn CongestionControl> {
        match self {
            CongestionAlgorithm::NewReno => Box::new(NewReno::new(mss)),
            CongestionAlgorithm::Cubic => Box::new(Cubic::new(mss)),
        }
    }
}

/// RFC 6928 initial window: min(10 × MSS, max(2 × MSS, 14600)).
pub fn initial_window(mss: usize) -> usize {
    mss.saturating_mul(10).min(mss.saturating_mul(2).max(14600))
}

/// No window grows past 1 GiB: far beyond any bandwidth-delay product this stack serves, and it
/// keeps every byte count (and CUBIC's floating-point arithmetic) far from overflow.
pub const MAX_CWND: usize = 1 << 30;

/// RFC 3465 §2.2: in slow start one ACK may grow the window by at most L = 2 segments, so that
/// a stretch ACK (or an ACK after loss) cannot release a burst.
const ABC_LIMIT_SEGMENTS: usize = 2;

/// Slow start with appropriate byte counting, shared by every algorithm (RFC 5681 §3.1,
/// RFC 3465): grows `cwnd` by min(acked, L·MSS) but not past `ssthresh`. Returns the part of
/// `acked` that slow start did not consume once it reached `ssthresh`, which the caller counts
/// toward congestion avoidance so that crossing the threshold loses no credit. Returns 0 while
/// the window is still below `ssthresh`: the bytes beyond L·MSS are deliberately forgotten.
fn slow_start(cwnd: &mut usize, ssthresh: usize, acked: usize, mss: usize) -> usize {
    if *cwnd >= ssthresh {
        return acked;
    }
    let room = ssthresh - *cwnd;
    let increase = acked.min(mss.saturating_mul(ABC_LIMIT_SEGMENTS)).min(room);
    *cwnd = (*cwnd + increase).min(MAX_CWND);
    if *cwnd >= ssthresh {
        acked - increase
    } else {
        0
    }
}

/// RFC 5681 §4.1 restart after idle, shared by every algorithm: the window falls to the
/// restart window min(IW, cwnd). Before it falls, ssthresh remembers 3/4 of the window it had
/// (the max(ssthresh, 3/4·cwnd) rule of RFC 2861 and RFC 7661's window validation, as Linux
/// does), so that slow start climbs straight back to near the rate the path sustained instead
/// of crawling there in congestion avoidance.
fn idle_restart(cwnd: &mut usize, ssthresh: &mut usize, mss: usize) {
    *ssthresh = (*ssthresh).max(*cwnd / 4 * 3);
    *cwnd = (*cwnd).min(initial_window(mss));
}

/// RFC 6582 §3.2 step 3, option 1: leaving recovery, the window deflates to ssthresh, or to
/// what is actually in flight plus one segment if that is smaller, so that the ACK ending
/// recovery cannot release a burst of ssthresh − flight bytes at once.
fn deflate_after_recovery(cwnd: &mut usize, ssthresh: usize, flight_size: usize, mss: usize) {
    *cwnd = ssthresh.min(flight_size.max(mss).saturating_add(mss)).min(MAX_CWND);
}

/// What a congestion-control algorithm is told, and what it answers. All sizes in bytes.
pub trait CongestionControl: core::fmt::Debug + Send {
    /// The algorithm.
    fn algorithm(&self) -> CongestionAlgorithm;
    /// Congestion window.
    fn cwnd(&self) -> usize;
    /// Slow-start threshold.
    fn ssthresh(&self) -> usize;
    /// `acked` bytes of new data were cumulatively acknowledged outside loss recovery.
    /// `cwnd_limited` says whether the sender was using its whole window before this ACK (RFC 7661:
    /// do not grow a window the application is not filling). `rtt` is the smoothed RTT if known.
    fn on_ack(
        &mut self,
        now: Instant,
        acked: usize,
        mss: usize,
        cwnd_limited: bool,
        rtt: Option<Duration>,
    );
    /// Loss detected by duplicate ACKs or SACK: enter recovery. `flight_size` is the data
    /// outstanding when the loss was detected. Sets ssthresh and cwnd (RFC 5681 §3.2 step 2,
    /// RFC 9438 §4.6).
    fn on_congestion_event(&mut self, now: Instant, flight_size: usize, mss: usize);
    /// Recovery ended with an ACK covering the recovery point (RFC 6582 §3.2 step 3: cwnd deflates
    /// to ssthresh, or to flight size + MSS if smaller).
    fn on_recovery_end(&mut self, now: Instant, flight_size: usize, mss: usize);
    /// The retransmission timer fired (RFC 5681 §3.1: ssthresh from flight size, cwnd = 1 MSS).
    /// Called once per timeout episode, not per backoff.
    fn on_retransmit_timeout(&mut self, now: Instant, flight_size: usize, mss: usize);
    /// The connection was idle (nothing outstanding) for longer than one RTO: restart from the
    /// restart window (RFC 5681 §4.1).
    fn on_idle_restart(&mut self, now: Instant, mss: usize);
    /// The retransmission that caused the last reduction turned out to be spurious (RFC 7323
    /// timestamps or D-SACK showed the original arrived): restore the previous window if the
    /// algorithm supports it.
    fn on_spurious_congestion_event(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    // ---- Names and shared helpers ----

    #[test]
    fn algorithm_names_round_trip() {
        for algorithm in [CongestionAlgorithm::NewReno, CongestionAlgorithm::Cubic] {
            assert_eq!(CongestionAlgorithm::from_name(algorithm.name()), Some(algorithm));
            assert_eq!(algorithm.build(MSS).algorithm(), algorithm);
        }
        assert_eq!(CongestionAlgorithm::from_name("newreno"), Some(CongestionAlgorithm::NewReno));
        assert_eq!(CongestionAlgorithm::from_name("bbr"), None);
        assert_eq!(CongestionAlgorithm::default(), CongestionAlgorithm::Cubic);
    }

    #[test]
    fn initial_window_follows_rfc_6928() {
        assert_eq!(initial_window(536), 5_360);
        assert_eq!(initial_window(1460), 14_600);
        assert_eq!(initial_window(4000), 14_600);
        assert_eq!(initial_window(8960), 17_920);
        assert_eq!(initial_window(usize::MAX), usize::MAX);
    }

    #[test]
    fn slow_start_hands_what_it_does_not_use_to_congestion_avoidance() {
        let mut cwnd = 10_000;
        assert_eq!(slow_start(&mut cwnd, 20_000, 1_500, MSS), 0);
        assert_eq!(cwnd, 11_500);
        assert_eq!(slow_start(&mut cwnd, 20_000, 5_000, MSS), 0);
        assert_eq!(cwnd, 13_500);
        assert_eq!(slow_start(&mut cwnd, 14_000, 1_800, MSS), 1_300);
        assert_eq!(cwnd, 14_000);
        assert_eq!(slow_start(&mut cwnd, 14_000, 700, MSS), 700);
        assert_eq!(cwnd, 14_000);
    }

    // ---- Simulated flows ----

    /// Runs `algorithm` on a path with a fixed `rtt` that drops every `loss_every`-th packet,
    /// in virtual time, for `rounds` round trips, and returns the time-averaged window in
    /// segments over the rounds after the first fifth. Each round trip the sender sends its
    /// window and gets one ACK per segment, evenly spaced. A loss is detected at the end of its
    /// round; recovery then takes one round trip, after which the ACK clock resumes.
    fn average_window(
        algorithm: CongestionAlgorithm,
        rtt: Duration,
        loss_every: u64,
        rounds: usize,
    ) -> f64 {
        let mut cc = algorithm.build(MSS);
        let mut now = Instant::ZERO;
        let mut sent = 0_u64;
        let (mut window_time, mut time) = (0.0, 0.0);
        let mut account = |round: usize, window: u64| {
            if round >= rounds / 5 {
                window_time += window as f64 * rtt.as_secs_f64();
                time += rtt.as_secs_f64();
            }
        };
        for round in 0..rounds {
            let window = (cc.cwnd() / MSS).max(1) as u64;
            account(round, window);
            let next_loss = (sent / loss_every + 1) * loss_every;
            let delivered = if next_loss <= sent + window { next_loss - sent - 1 } else { window };
            sent += window;
            let spacing = rtt / window as u32;
            for _ in 0..delivered {
                now += spacing;
                cc.on_ack(now, MSS, MSS, true, Some(rtt));
            }
            if delivered < window {
                now += spacing * (window - delivered) as u32;
                cc.on_congestion_event(now, window as usize * MSS, MSS);
                let recovery_window = (cc.cwnd() / MSS).max(1) as u64;
                account(round, recovery_window);
                sent += recovery_window;
                now += rtt;
                cc.on_recovery_end(now, cc.cwnd(), MSS);
            }
        }
        window_time / time
    }

    /// The deterministic-loss response function of an AIMD flow growing one segment per RTT
    /// and halving on loss: the window saws between W/2 and W, 3W²/8 packets per cycle, so the
    /// average 3W/4 is sqrt(3 / 2p) segments.
    fn reno_response(loss_every: u64) -> f64 {
        (1.5 * loss_every as f64).sqrt()
    }

    #[test]
    fn newreno_flow_averages_the_reno_response_function() {
        for (loss_every, rounds) in [(1000, 2000), (10_000, 4000)] {
            let average = average_window(
                CongestionAlgorithm::NewReno,
                Duration::from_millis(100),
                loss_every,
                rounds,
            );
            let expected = reno_response(loss_every);
            assert!(
                (average - expected).abs() < 0.1 * expected,
                "p = 1/{loss_every}: {average} segments, expected {expected}"
            );
        }
    }

    #[test]
    fn cubic_flow_outgrows_reno_on_a_long_fat_path() {
        let rtt = Duration::from_millis(100);
        let loss_every = 10_000;
        let cubic = average_window(CongestionAlgorithm::Cubic, rtt, loss_every, 3000);
        let reno = average_window(CongestionAlgorithm::NewReno, rtt, loss_every, 4000);
        // RFC 9438 §5.1: the deterministic-loss average of the cubic curve,
        // (C·(3+β) / (4·(1−β)))^¼ · RTT^¾ / p^¾ segments, ≈ 187 here. The simulated flow lands
        // some 10% below it: each cycle also spends a round trip in recovery, and once the first
        // cycles (slow-start overshoot, fast convergence) have pushed the peak down, the flat
        // top of the curve lets it climb back to its fixed point only slowly.
        let p = 1.0 / loss_every as f64;
        let formula =
            (0.4_f64 * 3.7 / (4.0 * 0.3)).powf(0.25) * rtt.as_secs_f64().powf(0.75) / p.powf(0.75);
        assert!((186.0..188.0).contains(&formula), "{formula}");
        assert!(
            cubic > 0.75 * formula && cubic < 1.05 * formula,
            "{cubic} segments, formula {formula}"
        );
        assert!(cubic > 1.2 * reno, "cubic {cubic} vs reno {reno}");
    }

    #[test]
    fn cubic_flow_is_reno_friendly_on_a_short_path() {
        // At 1 ms the curve's average would be ≈ 1 segment; the Reno-friendly region, an
        // AIMD(α_cubic, β) with Reno's average, takes over.
        for loss_every in [1000, 10_000] {
            let average = average_window(
                CongestionAlgorithm::Cubic,
                Duration::from_millis(1),
                loss_every,
                3000,
            );
            let expected = reno_response(loss_every);
            assert!(
                (average - expected).abs() < 0.15 * expected,
                "p = 1/{loss_every}: {average} segments, expected {expected}"
            );
        }
    }
}
