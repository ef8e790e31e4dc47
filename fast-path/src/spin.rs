//! The spin policy: how long a waiter polls before it sleeps.
//!
//! A sleeping wake-up costs tens of µs on a VM, a spinning one well under one; but the daemon and
//! the programs share few cores, so spinning is bounded (`JOYRIDE_SPIN_US`, default 20 µs, 0 turns
//! it off) and yields the CPU every few µs (plain spinning on 2 vCPUs measured twice the latency:
//! the peer the spinner waits for needs the core). A read from a remote peer (a ring stackd
//! relays) spins only for an answer, as long as stackd advises ([`spin_for`], see
//! `Rx::spin_budget_ns`); `JOYRIDE_SPIN_US=0` turns that off too.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// Default spin budget.
const DEFAULT_SPIN_NS: u64 = 20_000;
/// Yield the CPU this often while spinning.
const YIELD_EVERY_NS: u64 = 3_000;
/// Polls between two clock reads.
const POLLS_PER_CLOCK_READ: u32 = 16;

static SPIN_NS: AtomicU64 = AtomicU64::new(DEFAULT_SPIN_NS);

/// Reads `JOYRIDE_SPIN_US` (called once, from the library's constructor).
pub fn configure(spin_us: Option<&str>) {
    if let Some(value) = spin_us.and_then(|text| text.trim().parse::<u64>().ok()) {
        SPIN_NS.store(value.saturating_mul(1000), Ordering::Relaxed);
    }
}

/// The spin budget in nanoseconds (0: never spin).
pub fn budget_ns() -> u64 {
    SPIN_NS.load(Ordering::Relaxed)
}

/// Monotonic nanoseconds (vDSO clock, no system call).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// A yield that took longer than this gave the CPU to someone: another task shares our CPU.
const CROWDED_YIELD_NS: u64 = 1_000;

thread_local! {
    /// How often this thread yields while it spins: every YIELD_EVERY_NS normally, at every
    /// clock read while its CPU is crowded. Two spinning peers placed on one CPU otherwise take
    /// turns only at each yield (a round trip measured 5.2 µs there against 0.6 µs on two CPUs);
    /// yielding at once hands the CPU to the peer that has work.
    static YIELD_INTERVAL_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(YIELD_EVERY_NS) };
}

/// Calls `poll` until it returns `Some`, or the budget runs out (then `None`).
pub fn spin<T>(poll: impl FnMut() -> Option<T>) -> Option<T> {
    spin_for(budget_ns(), poll)
}

/// [`spin`] with a budget of its own, in ns.
pub fn spin_for<T>(budget: u64, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    if budget == 0 {
        return None;
    }
    let start = now_ns();
    let mut last_yield = start;
    let mut interval = YIELD_INTERVAL_NS.with(|cell| cell.get());
    loop {
        for _ in 0..POLLS_PER_CLOCK_READ {
            if let Some(value) = poll() {
                YIELD_INTERVAL_NS.with(|cell| cell.set(interval));
                return Some(value);
            }
            std::hint::spin_loop();
        }
        let now = now_ns();
        if now.wrapping_sub(start) >= budget {
            YIELD_INTERVAL_NS.with(|cell| cell.set(interval));
            return poll();
        }
        if now.wrapping_sub(last_yield) >= interval {
            crate::sys::yield_now();
            last_yield = now_ns();
            interval =
                if last_yield.wrapping_sub(now) > CROWDED_YIELD_NS { 0 } else { YIELD_EVERY_NS };
        }
    }
}
