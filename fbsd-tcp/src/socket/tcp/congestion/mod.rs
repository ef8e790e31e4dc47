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
/// does), so that slow start climbs straight back to near
/// the rate the path sustained instead of crawling there in congestion avoidance.
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
