//! When the event loop polls instead of sleeping: a pure policy, fed the service's count of
//! request/response turns (`SocketService::turns`: `ring_turns` and `carrier_turns`) and the
//! time, so that it is tested without a network.
//!
//! A turn (a request sent, an answer delivered) starts a poll of up to `--busy-poll`: the other
//! side usually answers within a round trip, and on a VM a sleeping wake-up costs more than
//! that round trip. The next turn ends the poll as answered (and may start another); the
//! deadline ends it as expired. After a few polls in a row expire (a peer slower than the
//! budget, a server waiting for its clients' next requests) the loop sleeps at once, polling
//! again only now and then to see whether answers got faster: the [`Backoff`] rule, which the
//! fast-path library applies to its own spins too.

use std::time::{Duration, Instant};

/// Polls in a row that found nothing before polling pauses...
const MISSES_BEFORE_PAUSE: u32 = 4;
/// ...and then only every this many chances to poll is taken, as a probe.
const PROBE_EVERY: u32 = 32;

/// When a poll that may not pay is worth trying: a poll pays only if what it waits for comes
/// within its budget, and one that runs out took the CPU from the processes that had work.
/// After four misses in a row, only every 32nd chance polls, to see whether the other side got
/// faster; a poll that finds something resumes polling at every chance.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    misses_in_a_row: u32,
    chances_since_probe: u32,
}

impl Backoff {
    /// A chance to poll: whether to take it.
    pub fn worth_trying(&mut self) -> bool {
        if self.misses_in_a_row < MISSES_BEFORE_PAUSE {
            return true;
        }
        self.chances_since_probe += 1;
        if self.chances_since_probe >= PROBE_EVERY {
            self.chances_since_probe = 0;
            return true;
        }
        false
    }

    /// The poll found what it waited for.
    pub fn found(&mut self) {
        self.misses_in_a_row = 0;
    }

    /// The poll ran out.
    pub fn missed(&mut self) {
        self.misses_in_a_row = self.misses_in_a_row.saturating_add(1);
    }
}

/// The polling state of one event loop.
#[derive(Debug, Default)]
pub struct BusyPoll {
    budget: Duration,
    turns_seen: u64,
    until: Option<Instant>,
    backoff: Backoff,
    counters: BusyPollCounters,
}

/// What the policy did since the daemon started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BusyPollCounters {
    /// Polls started.
    pub polls: u64,
    /// Of those, polls whose time ran out before the next turn.
    pub expired: u64,
    /// Turns that started no poll: polling paused after polls in a row expired.
    pub paused: u64,
}

impl BusyPoll {
    /// A policy polling for up to `budget` after each turn; zero never polls.
    pub fn new(budget: Duration) -> BusyPoll {
        BusyPoll { budget, ..BusyPoll::default() }
    }

    /// The service has seen `turns` turns so far; returns until when to poll, if at all.
    pub fn deadline(&mut self, turns: u64, now: Instant) -> Option<Instant> {
        if self.until.is_some_and(|until| now >= until) {
            self.until = None;
            self.counters.expired += 1;
            self.backoff.missed();
        }
        if turns != self.turns_seen && !self.budget.is_zero() {
            self.turns_seen = turns;
            if self.until.is_some() {
                // The answer came while we polled for it.
                self.backoff.found();
            }
            self.until = if self.backoff.worth_trying() {
                self.counters.polls += 1;
                Some(now + self.budget)
            } else {
                self.counters.paused += 1;
                None
            };
        }
        self.until
    }

    /// Counters since the start.
    pub fn counters(&self) -> BusyPollCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_micros(100);

    fn at(start: Instant, us: u64) -> Instant {
        start + Duration::from_micros(us)
    }

    #[test]
    fn a_turn_starts_a_poll_that_the_next_turn_renews_and_the_deadline_ends() {
        let start = Instant::now();
        let mut policy = BusyPoll::new(BUDGET);
        assert_eq!(policy.deadline(0, start), None, "no turn yet: sleep");
        assert_eq!(policy.deadline(1, at(start, 10)), Some(at(start, 110)));
        assert_eq!(policy.deadline(1, at(start, 50)), Some(at(start, 110)), "same turn");
        assert_eq!(policy.deadline(2, at(start, 60)), Some(at(start, 160)), "answered");
        assert_eq!(policy.deadline(2, at(start, 160)), None, "ran out");
        let counters = policy.counters();
        assert_eq!(counters, BusyPollCounters { polls: 2, expired: 1, paused: 0 });
    }

    #[test]
    fn polls_pause_after_four_expire_in_a_row_and_probe_every_32nd_turn() {
        let start = Instant::now();
        let mut policy = BusyPoll::new(BUDGET);
        let mut now = 0;
        let mut turns = 0;
        // Each turn's poll runs out before the next turn.
        let mut turn = |policy: &mut BusyPoll| {
            turns += 1;
            now += 1000;
            let polled = policy.deadline(turns, at(start, now)).is_some();
            assert_eq!(policy.deadline(turns, at(start, now + 500)), None);
            polled
        };
        let polled: Vec<bool> = (0..4 + 64).map(|_| turn(&mut policy)).collect();
        assert!(polled[..4].iter().all(|&p| p), "the first four poll");
        let probes: Vec<usize> = (4..polled.len()).filter(|&i| polled[i]).collect();
        assert_eq!(probes, [4 + 31, 4 + 63], "then only every 32nd turn probes");
        assert_eq!(policy.counters(), BusyPollCounters { polls: 6, expired: 6, paused: 62 });
    }

    #[test]
    fn an_answered_probe_resumes_polling() {
        let start = Instant::now();
        let mut policy = BusyPoll::new(BUDGET);
        let mut turns = 0;
        for i in 0..4 {
            turns += 1;
            policy.deadline(turns, at(start, i * 1000));
            policy.deadline(turns, at(start, i * 1000 + 500));
        }
        for i in 4..4 + 31 {
            turns += 1;
            assert_eq!(policy.deadline(turns, at(start, i * 1000)), None, "paused");
        }
        turns += 1;
        assert!(policy.deadline(turns, at(start, 40_000)).is_some(), "the probe");
        // Answered within the budget: polling resumes at every turn.
        for i in 0..8 {
            turns += 1;
            let now = at(start, 40_050 + i * 50);
            assert!(policy.deadline(turns, now).is_some(), "turn {i} after the answered probe");
        }
    }

    #[test]
    fn a_zero_budget_never_polls() {
        let start = Instant::now();
        let mut policy = BusyPoll::new(Duration::ZERO);
        for turns in 1..10 {
            assert_eq!(policy.deadline(turns, at(start, turns)), None);
        }
        assert_eq!(policy.counters(), BusyPollCounters::default());
    }
}
