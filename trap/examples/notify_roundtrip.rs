//! The cost of one seccomp user-notification round trip, with and without
//! SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP.
//!
//! ```text
//! cargo run --release -p trap --example notify_roundtrip [-- CALLS [CHILD_CPU]]
//! taskset -c 0 target/release/examples/notify_roundtrip        # both on one CPU
//! taskset -c 0 target/release/examples/notify_roundtrip 20000 1  # on two CPUs (taskset(1))
//! ```
//!
//! The child (this program again, under `FilterSpec::socket_creation()`) calls
//! socket(AF_INET) CALLS times and times each call; the supervisor answers each with an errno,
//! the cheapest answer there is. The supervisor either polls before each receive (as a
//! supervisor that must stay responsive does) or blocks in RECV. A native system call
//! (getpid) is measured in the same child for scale. Figures are medians with the 10th and
//! 90th percentiles.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trap::{FilterSpec, InstallOptions, Listener, Readiness};

const ROLE: &str = "TRAP_ROUNDTRIP_CHILD";
const WARMUP: usize = 500;
const DEFAULT_CALLS: usize = 20_000;
/// The longest a whole run may take before the watchdog ends the program.
const WATCHDOG: Duration = Duration::from_secs(120);

fn main() {
    let calls = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("CALLS must be a number"))
        .unwrap_or(DEFAULT_CALLS);
    let child_cpu: Option<u32> =
        std::env::args().nth(2).map(|a| a.parse().expect("CHILD_CPU must be a CPU number"));
    if std::env::var_os(ROLE).is_some() {
        child(calls);
        return;
    }
    // A blocked RECV does not return when the target dies: bound the whole run instead.
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("notify_roundtrip: no result after {WATCHDOG:?}; giving up");
        std::process::exit(1);
    });

    println!("seccomp notification round trip, {calls} calls each: median [p10 .. p90]");
    let mut native = None;
    for (sync, poll) in [(false, true), (false, false), (true, true), (true, false)] {
        let r = run(calls, child_cpu, sync, poll);
        native.get_or_insert(r.native);
        let wakeup = if sync { "SYNC_WAKE_UP" } else { "default wake-up" };
        let how = if poll { "poll + recv" } else { "blocking recv" };
        println!("  {wakeup:<16} {how:<14} {}", r.trip);
    }
    if let Some(native) = native {
        println!("  native getpid (in the child)    {native}");
    }
}

struct Figures {
    trip: String,
    native: String,
}

fn run(calls: usize, child_cpu: Option<u32>, sync: bool, poll: bool) -> Figures {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match child_cpu {
        // taskset runs under the filter too and execs the child: the filter stays.
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    cmd.arg(calls.to_string()).env(ROLE, "1").stdout(Stdio::piped());
    let filter = Arc::new(FilterSpec::socket_creation().build().expect("filter"));
    let (mut child, listener) =
        trap::spawn(&mut cmd, filter, InstallOptions::default(), Duration::from_secs(10))
            .expect("start the child under the filter");
    if sync {
        assert!(listener.set_sync_wakeup().expect("SET_FLAGS"), "this kernel lacks SYNC_WAKE_UP");
    }
    serve(&listener, WARMUP + calls, poll);
    let mut out = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut out).expect("read the child");
    let status = child.wait().expect("wait");
    assert!(status.success(), "child failed: {status}");
    let mut lines = out.lines();
    let mut next = || lines.next().expect("the child prints two lines").to_owned();
    Figures { trip: next(), native: next() }
}

/// Answers `count` notifications with EACCES.
fn serve(listener: &Listener, count: usize, poll: bool) {
    for _ in 0..count {
        if poll {
            let ready = listener.wait_readable(Some(Duration::from_secs(10))).expect("poll");
            assert_eq!(ready, Readiness::Readable, "the child stopped calling");
        }
        let n = listener.receive().expect("receive");
        listener.respond_errno(n.id, libc::EACCES).expect("respond");
    }
}

fn child(calls: usize) {
    let any: SocketAddr = ([0, 0, 0, 0], 0).into();
    // One notified socket() per bind: the supervisor's errno fails it before bind(2).
    let trapped = || {
        let err = UdpSocket::bind(any).expect_err("the supervisor answers EACCES");
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    };
    for _ in 0..WARMUP {
        trapped();
    }
    let trips = time(calls, trapped);
    let natives = time(calls, || {
        std::hint::black_box(std::process::id());
    });
    println!("{}", summary(trips));
    println!("{}", summary(natives));
}

fn time(calls: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        f();
        times.push(start.elapsed());
    }
    times
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    format!("{:>8.2} µs [{:.2} .. {:.2}]", us(at(0.5)), us(at(0.1)), us(at(0.9)))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
