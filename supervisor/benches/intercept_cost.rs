//! The cost of one intercepted call: getsockname(2) natively, trapped by a supervisor that
//! does nothing but answer CONTINUE, and served by `joyride run` — measured in the same run,
//! side by side.
//!
//! ```text
//! cargo bench -p supervisor --bench intercept_cost [-- --rounds R --calls N --batch B]
//! scripts/bench-intercept.sh                      # builds the release binaries first
//! ```
//!
//! The measured program is `benches/programs/getsockname_loop.c`, compiled with gcc into a
//! scratch directory: it makes one socket, warms up, then times N getsockname calls in batches
//! and prints the per-call median and 99th percentile over its batches. The modes:
//!
//! - `native tcp` / `native unix`: no filter, a kernel TCP socket (bound to 0.0.0.0:0) and an
//!   AF_UNIX one;
//! - `bare CONTINUE`: a filter that notifies getsockname only, served by a loop in this
//!   process that answers CONTINUE (SYNC_WAKE_UP on, poll + receive as `joyride run` does):
//!   the seccomp-notify round trip and nothing else;
//! - `joyride stackd`: under `joyride run`, the socket is the daemon's — the whole path
//!   (pidfd_getfd, SO_COOKIE, the stackd request, the address written back);
//! - `joyride unix`: under `joyride run`, a kernel AF_UNIX socket (its socket() is not
//!   trapped, its getsockname is): the "not ours, CONTINUE" path;
//! - `model`: a supervisor in this process doing the steps `joyride run` does for a stackd
//!   getsockname, each step timed, against the same daemon: where the time goes. Beside it,
//!   the stackd request in a plain client loop, and a unix datagram ping-pong between two
//!   threads: the two wake-ups under any request to the daemon.
//!
//! The 99th percentiles are of batch means (a batch is `--batch` calls between two clock
//! reads), not of single calls.
//!
//! Rounds run every mode once, in an order rotated each round, so that the machine's drift
//! (it is shared) spreads over all of them; the table shows the median over rounds of each
//! run's median and 99th percentile. Needs root (a network namespace and a TAP for the
//! daemon) and gcc: without them it says why and exits 0.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use stackd::client::Client;
use stackd::proto::{Family, SocketKind, Token};
use trap::{FilterSpec, InstallOptions, Listener, Readiness, Rule, SockAddr, Sysno};

use common::{Mode, Net};

/// Calls the C program makes before it starts timing (its WARMUP).
const PROGRAM_WARMUP: usize = 1000;
/// The longest one measured run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// A serving loop that hears nothing for this long gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
struct Args {
    rounds: usize,
    calls: usize,
    batch: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { rounds: 7, calls: 20_000, batch: 100 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--rounds" => args.rounds = value("--rounds")?,
            "--calls" => args.calls = value("--calls")?,
            "--batch" => args.batch = value("--batch")?,
            // cargo bench passes --bench; filters and other harness flags mean nothing here.
            _ => {}
        }
    }
    if args.rounds == 0
        || args.batch == 0
        || args.calls == 0
        || !args.calls.is_multiple_of(args.batch)
    {
        bail!("--rounds and --batch must be positive and --calls a multiple of --batch");
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if !common::is_root() {
        println!("intercept_cost: skipped: needs root (a network namespace and a TAP for joyride-stackd, seccomp listeners)");
        return Ok(());
    }
    if Command::new("gcc").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        println!("intercept_cost: skipped: needs gcc to build the measured program");
        return Ok(());
    }
    let net = Net::new(Mode::Joyride);
    let program = compile(&net.dir.path)?;
    let control = net.stackd().control.clone();
    println!(
        "intercept_cost: getsockname, {} calls per run in batches of {}, {} rounds \
         (kernel {}, {} CPUs)",
        args.calls,
        args.batch,
        args.rounds,
        kernel_release(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let modes = [
        Measured::NativeTcp,
        Measured::NativeUnix,
        Measured::Bare,
        Measured::JoyrideStackd,
        Measured::JoyrideUnix,
        Measured::Model,
    ];
    let mut results: HashMap<Measured, Vec<RunResult>> = HashMap::new();
    let mut steps = Steps::default();
    let mut client_loop = Vec::new();
    let mut ipc_floor = Vec::new();
    for round in 0..args.rounds {
        for i in 0..modes.len() {
            let mode = modes[(i + round) % modes.len()];
            let result = match mode {
                Measured::NativeTcp => run_plain(Command::new(&program), "tcp", args)?,
                Measured::NativeUnix => run_plain(Command::new(&program), "unix", args)?,
                Measured::Bare => run_bare(&program, args)?,
                Measured::JoyrideStackd => run_plain(net.app(&[&program]), "tcp", args)?,
                Measured::JoyrideUnix => run_plain(net.app(&[&program]), "unix", args)?,
                Measured::Model => run_model(&program, &control, args, &mut steps)?,
            };
            results.entry(mode).or_default().push(result);
        }
        client_loop.push(stackd_client_loop(&control, args)?);
        ipc_floor.push(unix_ping_pong(args)?);
        eprintln!("intercept_cost: round {}/{} done", round + 1, args.rounds);
    }

    report(&modes, &results, &steps, &client_loop, &ipc_floor);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measured {
    NativeTcp,
    NativeUnix,
    Bare,
    JoyrideStackd,
    JoyrideUnix,
    Model,
}

impl Measured {
    fn label(self) -> &'static str {
        match self {
            Measured::NativeTcp => "native, kernel TCP socket",
            Measured::NativeUnix => "native, AF_UNIX socket",
            Measured::Bare => "bare notify round trip (CONTINUE)",
            Measured::JoyrideStackd => "joyride run, stackd socket",
            Measured::JoyrideUnix => "joyride run, AF_UNIX socket (CONTINUE)",
            Measured::Model => "model of the stackd path (this process)",
        }
    }
}

/// One run's figures, per call, over its batches.
#[derive(Debug, Clone, Copy)]
struct RunResult {
    median_ns: f64,
    p99_ns: f64,
}

fn compile(dir: &Path) -> Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/programs/getsockname_loop.c");
    let out = dir.join("getsockname_loop");
    let result = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&source)
        .output()
        .context("run gcc")?;
    if !result.status.success() {
        bail!(
            "gcc could not build {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&result.stderr)
        );
    }
    Ok(out)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// Runs the program (natively or under `joyride run`, as `command` says) and reads its line.
fn run_plain(mut command: Command, kind: &str, args: Args) -> Result<RunResult> {
    command.args([kind, &args.calls.to_string(), &args.batch.to_string()]);
    let out = common::run_capture(command, b"", RUN_TIMEOUT);
    if !out.status.success() {
        bail!("the measured program failed ({}): {}", out.status, out.stderr);
    }
    parse_result(&out.stdout_text())
}

/// `RESULT kind=.. median_ns=X p99_ns=Y ...`
fn parse_result(text: &str) -> Result<RunResult> {
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .with_context(|| format!("no RESULT line in {text:?}"))?;
    let field = |name: &str| -> Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name} in {line:?}"))?
            .parse()
            .with_context(|| format!("bad {name} in {line:?}"))
    };
    Ok(RunResult { median_ns: field("median_ns")?, p99_ns: field("p99_ns")? })
}

/// Starts the program under a filter that notifies getsockname only.
fn spawn_trapped(program: &Path, args: Args) -> Result<(std::process::Child, Listener)> {
    let filter = FilterSpec::new().rule(Sysno::GetSockName, Rule::Notify).build()?;
    let mut command = Command::new(program);
    command
        .args(["tcp", &args.calls.to_string(), &args.batch.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let (child, listener) = trap::spawn(
        &mut command,
        Arc::new(filter),
        InstallOptions::default(),
        Duration::from_secs(10),
    )?;
    if !listener.set_sync_wakeup()? {
        bail!("this kernel lacks SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6)");
    }
    Ok((child, listener))
}

/// Reaps the child on a thread of its own: the listener hangs up only once every user of the
/// filter is gone, which for a child of ours means reaped.
fn collect(mut child: std::process::Child) -> std::thread::JoinHandle<Result<String>> {
    std::thread::spawn(move || {
        let mut out = String::new();
        child.stdout.take().context("piped stdout")?.read_to_string(&mut out)?;
        let status = child.wait()?;
        if !status.success() {
            bail!("the measured program failed under the bench's filter: {status}");
        }
        Ok(out)
    })
}

/// Serves every notification of `listener` with `serve` until the program is gone.
fn serve_all(
    listener: &Listener,
    mut serve: impl FnMut(&trap::Notification) -> Result<()>,
) -> Result<()> {
    loop {
        match listener.wait_readable(Some(IDLE_TIMEOUT))? {
            Readiness::Hangup => return Ok(()),
            Readiness::TimedOut => bail!("no notification for {IDLE_TIMEOUT:?}"),
            Readiness::Readable => {}
        }
        match listener.receive() {
            Ok(n) => serve(&n)?,
            Err(error) if error.is_gone() => {}
            Err(error) => return Err(error.into()),
        }
    }
}

fn run_bare(program: &Path, args: Args) -> Result<RunResult> {
    let (child, listener) = spawn_trapped(program, args)?;
    let output = collect(child);
    serve_all(&listener, |n| Ok(listener.respond_continue(n.id)?))?;
    parse_result(&output.join().expect("the collecting thread")?)
}

/// Per-notification times of the model's steps, in ns, over every run (after the warm-up).
#[derive(Debug, Default)]
struct Steps {
    pidfd_open: Vec<f64>,
    pidfd_getfd: Vec<f64>,
    id_valid: Vec<f64>,
    cookie: Vec<f64>,
    stackd: Vec<f64>,
    memory: Vec<f64>,
    respond: Vec<f64>,
    close: Vec<f64>,
    total: Vec<f64>,
}

/// Times the steps of one notification, in order.
struct Stopwatch {
    start: Instant,
    last: Instant,
}

impl Stopwatch {
    fn new() -> Stopwatch {
        let now = Instant::now();
        Stopwatch { start: now, last: now }
    }

    /// Nanoseconds since the previous lap.
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let ns = (now - self.last).as_nanos() as f64;
        self.last = now;
        ns
    }
}

/// The steps `joyride run` takes for getsockname on a stackd socket (`Notification::take_fd`,
/// `Session::identify`, the request, `addr::write_to_program`, the answer), done here step by
/// step on a kernel TCP socket of the program's, with a stackd socket of our own standing in
/// for it: pidfd_open(PIDFD_THREAD) and pidfd_getfd, then ID_VALID; SO_COOKIE and the table;
/// the daemon's answer; the length read and the address and length written (each checked with
/// ID_VALID first, as `Notification::write` does); the answer (value 0); both descriptors
/// closed.
fn run_model(program: &Path, control: &Path, args: Args, steps: &mut Steps) -> Result<RunResult> {
    let mut client = Client::connect(control)?;
    client.open_session("intercept_cost model", &[std::process::id()])?;
    let socket = client.socket(Family::Inet, SocketKind::Stream)?;
    client.bind(socket.token, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    let mut table: HashMap<u64, Token> = HashMap::new();

    let (child, listener) = spawn_trapped(program, args)?;
    let output = collect(child);
    let mut seen = 0usize;
    serve_all(&listener, |n| {
        let trap::Syscall::GetSockName { fd, addr_ptr, len_ptr } = n.syscall() else {
            listener.respond_continue(n.id)?;
            return Ok(());
        };
        let valid = |n: &trap::Notification| -> Result<()> {
            if !n.is_valid(&listener)? {
                bail!("the program left its call");
            }
            Ok(())
        };
        let mut watch = Stopwatch::new();
        let pidfd = pidfd_open_thread(n.tid)?;
        let t_open = watch.lap();
        let dup = pidfd_getfd(pidfd.as_fd(), fd)?;
        let t_getfd = watch.lap();
        valid(n)?;
        let mut t_valid = watch.lap();
        let cookie = socket_cookie(dup.as_fd())?;
        let token = *table.entry(cookie).or_insert(socket.token);
        let t_cookie = watch.lap();
        let addr = client.local_address(token)?;
        let t_stackd = watch.lap();
        let bytes = SockAddr::Inet(addr).to_bytes();
        let mut room = [0u8; 4];
        trap::read_memory_into(n.tid, len_ptr, &mut room)?;
        let mut t_memory = watch.lap();
        valid(n)?;
        t_valid += watch.lap();
        let room = usize::try_from(i32::from_ne_bytes(room)).unwrap_or(0);
        valid(n)?;
        t_valid += watch.lap();
        trap::write_memory(n.tid, addr_ptr, &bytes[..room.min(bytes.len())])?;
        t_memory += watch.lap();
        valid(n)?;
        t_valid += watch.lap();
        trap::write_memory(n.tid, len_ptr, &(bytes.len() as i32).to_ne_bytes())?;
        t_memory += watch.lap();
        listener.respond_value(n.id, 0)?;
        let t_respond = watch.lap();
        drop(dup);
        drop(pidfd);
        let t_close = watch.lap();
        seen += 1;
        if seen > PROGRAM_WARMUP {
            steps.pidfd_open.push(t_open);
            steps.pidfd_getfd.push(t_getfd);
            steps.id_valid.push(t_valid);
            steps.cookie.push(t_cookie);
            steps.stackd.push(t_stackd);
            steps.memory.push(t_memory);
            steps.respond.push(t_respond);
            steps.close.push(t_close);
            steps.total.push((watch.last - watch.start).as_nanos() as f64);
        }
        Ok(())
    })?;
    let result = parse_result(&output.join().expect("the collecting thread")?)?;
    client.close(socket.token)?;
    Ok(result)
}

fn pidfd_open_thread(tid: u32) -> Result<OwnedFd> {
    // PIDFD_THREAD (Linux 6.9) is O_EXCL.
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, libc::O_EXCL) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("pidfd_open(PIDFD_THREAD)");
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes three integers and touches no memory of ours; the pidfd is
    // borrowed for the call.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("pidfd_getfd");
    }
    // SAFETY: pidfd_getfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn socket_cookie(fd: BorrowedFd<'_>) -> Result<u64> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: SO_COOKIE writes at most `len` bytes into `cookie`, which has that many; the
    // descriptor is borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(SO_COOKIE)");
    }
    Ok(cookie)
}

/// The stackd request alone: Client::local_address in a loop, no seccomp anywhere, timed in
/// batches like the program's calls.
fn stackd_client_loop(control: &Path, args: Args) -> Result<RunResult> {
    let mut client = Client::connect(control)?;
    client.open_session("intercept_cost client loop", &[std::process::id()])?;
    let socket = client.socket(Family::Inet, SocketKind::Stream)?;
    client.bind(socket.token, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    for _ in 0..PROGRAM_WARMUP {
        client.local_address(socket.token)?;
    }
    let mut per_call = Vec::with_capacity(args.calls / args.batch);
    for _ in 0..args.calls / args.batch {
        let start = Instant::now();
        for _ in 0..args.batch {
            std::hint::black_box(client.local_address(socket.token)?);
        }
        per_call.push(start.elapsed().as_nanos() as f64 / args.batch as f64);
    }
    client.close(socket.token)?;
    per_call.sort_by(f64::total_cmp);
    Ok(RunResult { median_ns: quantile(&per_call, 0.5), p99_ns: quantile(&per_call, 0.99) })
}

/// A request and its reply over a unix datagram pair to a thread that echoes: the two wake-ups
/// any request to another process costs, with no work on either side (the floor under a stackd
/// request).
fn unix_ping_pong(args: Args) -> Result<RunResult> {
    let (ours, theirs) = std::os::unix::net::UnixDatagram::pair()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buffer = [0u8; 128];
        loop {
            let n = theirs.recv(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            theirs.send(&buffer[..n])?;
        }
    });
    let message = [0x5au8; 64];
    let mut buffer = [0u8; 128];
    let mut trip = || -> Result<()> {
        ours.send(&message)?;
        ours.recv(&mut buffer)?;
        Ok(())
    };
    for _ in 0..PROGRAM_WARMUP {
        trip()?;
    }
    let mut per_call = Vec::with_capacity(args.calls / args.batch);
    for _ in 0..args.calls / args.batch {
        let start = Instant::now();
        for _ in 0..args.batch {
            trip()?;
        }
        per_call.push(start.elapsed().as_nanos() as f64 / args.batch as f64);
    }
    // An empty datagram ends the echo.
    ours.send(&[])?;
    echo.join().expect("the echo thread")?;
    per_call.sort_by(f64::total_cmp);
    Ok(RunResult { median_ns: quantile(&per_call, 0.5), p99_ns: quantile(&per_call, 0.99) })
}

/// Nearest rank on sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median_of(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

fn report(
    modes: &[Measured],
    results: &HashMap<Measured, Vec<RunResult>>,
    steps: &Steps,
    client_loop: &[RunResult],
    ipc_floor: &[RunResult],
) {
    let summary = |mode: Measured| {
        let runs = &results[&mode];
        (
            median_of(runs.iter().map(|r| r.median_ns)),
            median_of(runs.iter().map(|r| r.p99_ns)),
            runs.iter().map(|r| r.median_ns).fold(f64::INFINITY, f64::min),
            runs.iter().map(|r| r.median_ns).fold(0.0, f64::max),
        )
    };
    let bare = summary(Measured::Bare).0;
    println!();
    println!(
        "{:<42} | {:>12} | {:>10} | {:>8} | {:>19}",
        "mode", "median ns", "p99 ns", "x bare", "run medians min-max"
    );
    println!("{}", "-".repeat(42 + 12 + 10 + 8 + 19 + 12));
    for &mode in modes {
        let (median, p99, lo, hi) = summary(mode);
        println!(
            "{:<42} | {:>12.0} | {:>10.0} | {:>8.2} | {:>9.0}-{:<9.0}",
            mode.label(),
            median,
            p99,
            median / bare,
            lo,
            hi
        );
    }
    let joyride = summary(Measured::JoyrideStackd).0;
    let unix = summary(Measured::JoyrideUnix).0;
    println!();
    println!(
        "joyride (stackd socket) over the bare round trip: {:+.0}% ({:.0} ns added per call; goal <= +20%)",
        (joyride / bare - 1.0) * 100.0,
        joyride - bare
    );
    println!(
        "joyride (not ours, CONTINUE) over the bare round trip: {:+.0}% ({:.0} ns added per call)",
        (unix / bare - 1.0) * 100.0,
        unix - bare
    );
    println!();
    println!("where the time goes (the model's steps inside the supervisor, median ns per call):");
    let step = |name: &str, values: &[f64]| {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        println!("  {name:<58} {:>8.0}   p99 {:>8.0}", quantile(&v, 0.5), quantile(&v, 0.99));
    };
    step("pidfd_open(PIDFD_THREAD)", &steps.pidfd_open);
    step("pidfd_getfd", &steps.pidfd_getfd);
    step("NOTIF_ID_VALID x4", &steps.id_valid);
    step("SO_COOKIE + table lookup", &steps.cookie);
    step("stackd request (Client::local_address)", &steps.stackd);
    step("process_vm_readv + process_vm_writev x2", &steps.memory);
    step("answer (NOTIF_SEND)", &steps.respond);
    step("close the duplicate and the pidfd", &steps.close);
    step("total in the supervisor, receive to close", &steps.total);
    let rounds = |label: &str, runs: &[RunResult]| {
        println!(
            "  {label:<58} {:>8.0}   p99 {:>8.0}",
            median_of(runs.iter().map(|r| r.median_ns)),
            median_of(runs.iter().map(|r| r.p99_ns))
        );
    };
    rounds("stackd request alone (client loop, no seccomp)", client_loop);
    rounds("unix datagram ping-pong between two threads (IPC floor)", ipc_floor);
}
