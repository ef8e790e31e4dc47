//! Engine throughput: bulk TCP from stack A to stack B through the simulated link with no
//! impairments (10 µs each way, no loss) and checksums computed and verified, at MTU 1500 and
//! 9000, in two link modes:
//! - *burst*: no rate cap, so a whole window arrives at one instant and the receiver acknowledges
//!   it with one ACK, as a NIC with receive coalescing (GRO/LRO) lets it;
//! - *paced*: a 10 Gbit/s wire, so frames arrive one by one and the receiver acknowledges every
//!   second segment: the per-packet cost a plain NIC imposes. The goals apply to this mode.
//!
//! Both stacks, the link and the application run in this one thread, so the figure is payload
//! bits per CPU second of sender *and* receiver together (a machine running only one end would
//! do roughly twice as well). The application uses the zero-copy `send_with`/`recv_with` calls
//! without touching the payload, so what is measured is the engine (plus the small cost of the
//! simulated link), not an application's copies or a pattern generator.
//!
//! `cargo bench -p fbsd-tcp --bench engine`; no harness, prints a table.

use std::time::Instant as WallInstant;

use fbsd_tcp::sim::{Bulk, Impairments, Link, Pair, Side};
use fbsd_tcp::time::Duration;

const RUNS: usize = 5;
const SIZE: u64 = 256 << 20;
const BUFFER: usize = 4 << 20;

/// Goals from the project brief, in Gbit/s of payload per CPU second.
const GOALS: [(usize, f64); 2] = [(1500, 10.0), (9000, 40.0)];

/// The paced mode's wire.
const PACED_BPS: u64 = 10_000_000_000;

/// CPU time this thread has used, in nanoseconds, from the scheduler's own accounting
/// (`/proc/thread-self/schedstat`, first field); `None` where that file does not exist.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A clock for one measurement: CPU time when the kernel reports it, wall time otherwise.
struct Clock {
    cpu_start: Option<u64>,
    wall_start: WallInstant,
}

impl Clock {
    fn start() -> Clock {
        Clock { cpu_start: thread_cpu_ns(), wall_start: WallInstant::now() }
    }

    /// Seconds elapsed, and whether they are CPU seconds.
    fn elapsed(&self) -> (f64, bool) {
        match (self.cpu_start, thread_cpu_ns()) {
            (Some(start), Some(end)) => ((end - start) as f64 / 1e9, true),
            _ => (self.wall_start.elapsed().as_secs_f64(), false),
        }
    }
}

struct Measurement {
    gbps: f64,
    cpu: bool,
    frames: u64,
}

fn run_once(mtu: usize, pacing_bps: Option<u64>) -> Measurement {
    let impairments = Impairments {
        delay: Duration::from_micros(10),
        bandwidth_bps: pacing_bps,
        // Never the limit: the socket buffers are.
        queue_bytes: 4 * BUFFER,
        ..Impairments::default()
    };
    let link = Link::symmetric(1, impairments).expect("valid impairments");
    let [a, b] = [Side::A, Side::B].map(|side| {
        let mut config = Pair::config(side);
        config.mtu = mtu;
        config.tcp.send_buffer = BUFFER;
        config.tcp.recv_buffer = BUFFER;
        config
    });
    let mut pair = Pair::with_configs(a, b, link);
    let mut bulk = Bulk::unchecked(Side::A, 5001, SIZE);
    let clock = Clock::start();
    let outcome = pair.drive_until(Duration::from_secs(3600), |pair, events| {
        bulk.poll(pair, events, &mut |_, _| {})
    });
    let (seconds, cpu) = clock.elapsed();
    if let Err(error) = outcome {
        panic!("MTU {mtu}: {error} after {} of {SIZE} bytes", bulk.received());
    }
    assert_eq!(bulk.error(), None, "MTU {mtu}");
    assert_eq!(bulk.received(), SIZE, "MTU {mtu}");
    let frames =
        pair.link().counters(Side::A).frames_sent + pair.link().counters(Side::B).frames_sent;
    Measurement { gbps: SIZE as f64 * 8.0 / seconds / 1e9, cpu, frames }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects MTUs ("1500", "9000").
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    println!("fbsd-tcp engine: bulk TCP A→B on the simulated link, no impairments, checksums on,");
    println!(
        "{} MiB per run, {RUNS} runs after one warm-up, {} MiB socket buffers.",
        SIZE >> 20,
        BUFFER >> 20
    );
    println!("Gbit/s = payload bits per CPU second of sender and receiver together (one thread).");
    println!("burst: windows arrive at one instant (one ACK per batch, as with GRO);");
    println!("paced: a 10 Gbit/s wire (an ACK per two segments); the goals apply to it.");
    println!();
    println!(
        "{:>5}  {:>6}  {:>9}  {:>9}  {:>9}  {:>10}  {:>6}",
        "MTU", "link", "median", "min", "max", "frames/run", "goal"
    );
    for (mtu, goal) in GOALS {
        if !filters.is_empty() && !filters.iter().any(|f| mtu.to_string().contains(f.as_str())) {
            continue;
        }
        for (mode, pacing_bps) in [("burst", None), ("paced", Some(PACED_BPS))] {
            let _warm_up = run_once(mtu, pacing_bps);
            let mut runs: Vec<Measurement> = (0..RUNS).map(|_| run_once(mtu, pacing_bps)).collect();
            runs.sort_by(|x, y| x.gbps.total_cmp(&y.gbps));
            let median = runs[RUNS / 2].gbps;
            let clock = if runs.iter().all(|r| r.cpu) { "" } else { " (wall time: no schedstat)" };
            let verdict = match pacing_bps {
                None => "",
                Some(_) if median >= goal => "meets goal",
                Some(_) => "BELOW GOAL",
            };
            println!(
                "{mtu:>5}  {mode:>6}  {median:>9.2}  {:>9.2}  {:>9.2}  {:>10}  {goal:>6.0}  \
                 {verdict}{clock}",
                runs[0].gbps,
                runs[RUNS - 1].gbps,
                runs[RUNS / 2].frames,
            );
        }
    }
}
