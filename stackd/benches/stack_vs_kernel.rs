//! joyride-stackd against the kernel's TCP, side by side in one run: bulk throughput, CPU
//! consumed, and request/response latency, at MTU 1500 and 9000 (issue 3, item 8).
//!
//! `cargo bench -p stackd --bench stack_vs_kernel` (as root; `scripts/bench-stackd.sh` wraps it).
//! Options after `--`: `--runs N` (3), `--seconds S` per transfer (3), `--round-trips N` (20000),
//! `--rtt-seconds S` (2, a bound on the round trips), `--message BYTES` (64), `--write BYTES`
//! (131072), `--mtu 1500,9000`, `--paths kernel,kernel-no-offload,shm,af-packet` (the default;
//! `shm-trap` and `shm-rings` are there to be asked for, and need the release build of the
//! workspace: `target/release/joyride` and `libjoyride_fastpath.so` beside it), `--stackd-args
//! "ARGS"` (more arguments for every joyride-stackd, e.g. `--segmentation-offload off`).
//!
//! # The paths
//! - `kernel`: two network namespaces joined by a veth pair at the MTU, Linux's TCP in both
//!   with its default offloads (TSO/GSO hand 64 KiB super-segments across the veth whatever
//!   the MTU, and a veth never computes checksums), the programs on plain TCP sockets. The
//!   goal is measured against this row: it is what users get.
//! - `kernel-no-offload`: the same with TSO, GSO and GRO off on both ends, so that the
//!   kernel too handles one segment of the MTU at a time, as stackd does.
//! - `shm`: two joyride-stackd instances joined by the shared-memory wire (`--backend shm`), no
//!   kernel in the frames' path; like the veth of `kernel`, the wire takes TCP segments of up
//!   to 64 KiB whole (segmentation offload; `--stackd-args "--segmentation-offload off"` cuts
//!   them to the MTU, as `kernel-no-offload` does for the kernel); the programs use stackd's
//!   app-facing data path of today, the carriers (an AF_UNIX stream per TCP socket), so a byte
//!   goes app → carrier → stackd → wire → stackd → carrier → app.
//! - `af-packet`: the same two daemons, but each bound through `--backend af-packet` to one end
//!   of a veth pair in a namespace of its own: the kernel's cost of moving frames shows in the
//!   difference to `shm`.
//! - `shm-rings`: two more daemons on the shm wire, but the programs are the kernel path's,
//!   on plain `std::net` sockets, started as `joyride run --stackd CONTROL -- PROGRAM`: the
//!   fast-path library joyride preloads moves their payload through the shared-memory rings
//!   (app → ring → stackd → wire → stackd → ring → app), which is what users get.
//! - `shm-trap`: the same with `joyride run --no-fast-path`, so the payload takes the carriers
//!   as in `shm`, but through real programs' system calls; against `shm-rings` it isolates the
//!   rings' effect, against `shm` the supervisor's.
//!
//!   Their programs run in their daemon's (otherwise empty) namespace: a socket that fell back
//!   to the kernel would find no route rather than measure the wrong stack. After each transfer
//!   both daemons' counters must show every byte on the plane the row claims (ring or
//!   carrier).
//!
//! # What is measured
//! - Throughput: one TCP connection, the sender writing `--write`-byte chunks for `--seconds`;
//!   the receiver counts bytes from its first to end-of-stream. Both counts must agree.
//! - CPU: busy time of the whole machine from /proc/stat (user, nice, system, irq, softirq,
//!   steal) over the transfer, because the kernel's TCP does much of its work in softirq
//!   context that no process is charged for; the same for both paths. The figure that matters
//!   is Gbit/s per busy core. Busy time of anything else on the machine counts too: run it
//!   idle (the load before the runs is printed). A second view charges utime/stime to each
//!   process we started (/proc/PID/stat, with its descendants: `joyride run` is the supervisor
//!   and the program its child) and adds the interrupt work the kernel did for them
//!   (see [`Accounting`]): "ours", which other load does not inflate. The daemons of the rows
//!   not running are watched too: they must sleep (they do, in epoll).
//! - Latency: `--message`-byte ping-pong over one connection (TCP_NODELAY on both sides), after
//!   a warm-up; p50 and p99 of the round trip, up to `--round-trips` or `--rtt-seconds`.
//! - Each (MTU, path) runs `--runs` times, paths taking turns within a run so that drift hits
//!   all alike; the tables show medians (min–max for throughput).
//!
//! # Housekeeping
//! The orchestrator starts copies of this executable (`--role sink|source|pong|ping`) in the
//! namespaces for the kernel path, or next to the daemons for the stackd paths (the control
//! socket is a file, reachable from anywhere). Namespaces are named `jrbench-PID-…`, addresses
//! (10.99.x.y) exist only inside them, and everything — processes, namespaces, the work
//! directory under /dev/shm — goes on exit, on error and on Ctrl-C; leftovers of a run that was
//! killed outright are removed by the next one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use stackd::client::Client;
use stackd::proto::{Family, OptionName, OptionValue, SocketKind};

const STACKD: &str = env!("CARGO_BIN_EXE_joyride-stackd");
/// The library `joyride run` preloads, looked for next to joyride (as joyride itself does).
const FAST_PATH_LIBRARY: &str = "libjoyride_fastpath.so";
/// Prefix of every namespace and work directory this benchmark makes.
const PREFIX: &str = "jrbench";
/// Bound on any single socket read or write in a role.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Round trips before the measured ones (connection warm, caches and ARP settled).
const WARMUP_ROUND_TRIPS: usize = 200;
const RECEIVE_BUFFER: usize = 256 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome =
        if args.iter().any(|a| a == "--role") { role_main(&args) } else { orchestrate(&args) };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stack_vs_kernel: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `name` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn parsed<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match flag(args, name) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|e| anyhow!("{name} {text:?}: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Roles: the programs at either end of a connection.
// ---------------------------------------------------------------------------------------------

/// Where a role's connection goes: the kernel's TCP, or a stackd through its control socket.
enum Endpoint {
    Kernel(SocketAddr),
    Stack { control: PathBuf, addr: SocketAddr },
}

impl Endpoint {
    fn from_args(args: &[String]) -> Result<Endpoint> {
        let addr: SocketAddr =
            flag(args, "--addr").context("--addr IP:PORT is required")?.parse()?;
        Ok(match flag(args, "--stack") {
            Some(control) => Endpoint::Stack { control: control.into(), addr },
            None => Endpoint::Kernel(addr),
        })
    }
}

/// One connection, read and written the same way whichever stack serves it: a stackd socket's
/// carrier is read and written like the socket itself.
enum Conn {
    Kernel(TcpStream),
    /// The client holds the session the socket belongs to.
    Stack {
        carrier: UnixStream,
        _session: Client,
    },
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Kernel(stream) => stream.read(buf),
            Conn::Stack { carrier, .. } => carrier.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Kernel(stream) => stream.write(buf),
            Conn::Stack { carrier, .. } => carrier.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn {
    fn kernel(stream: TcpStream, nodelay: bool) -> Result<Conn> {
        stream.set_nodelay(nodelay)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn::Kernel(stream))
    }

    fn stack(carrier: std::os::fd::OwnedFd, session: Client) -> Result<Conn> {
        let carrier = UnixStream::from(carrier);
        carrier.set_read_timeout(Some(IO_TIMEOUT))?;
        carrier.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn::Stack { carrier, _session: session })
    }

    /// Sends end-of-stream (a FIN after the last byte written).
    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Kernel(stream) => stream.shutdown(std::net::Shutdown::Write),
            Conn::Stack { carrier, .. } => carrier.shutdown(std::net::Shutdown::Write),
        }
    }

    /// Reads until the peer's end-of-stream (the peer then has everything we sent).
    fn drain_to_end(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn open_session(control: &Path, what: &str) -> Result<Client> {
    let mut client = Client::connect(control)?;
    client.open_session(what, &[std::process::id()])?;
    Ok(client)
}

/// Listens at the endpoint, says `ready` on stdout, and accepts one connection.
fn accept_one(endpoint: &Endpoint, nodelay: bool) -> Result<Conn> {
    match endpoint {
        Endpoint::Kernel(addr) => {
            let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
            println!("ready");
            let (stream, _) = listener.accept().context("accept")?;
            Conn::kernel(stream, nodelay)
        }
        Endpoint::Stack { control, addr } => {
            let mut client = open_session(control, "stack_vs_kernel server")?;
            let listener = client.socket(Family::Inet, SocketKind::Stream)?;
            client.set_option(listener.token, OptionName::ReuseAddr, OptionValue::Int(1))?;
            client.bind(listener.token, *addr)?;
            client.listen(listener.token, 4)?;
            println!("ready");
            let (socket, _) = client.accept_blocking(
                listener.token,
                std::os::fd::AsFd::as_fd(&listener.carrier),
                IO_TIMEOUT,
            )?;
            if nodelay {
                client.set_option(socket.token, OptionName::NoDelay, OptionValue::Int(1))?;
            }
            Conn::stack(socket.carrier, client)
        }
    }
}

/// Connects to the endpoint and says `connected` on stdout.
fn connect(endpoint: &Endpoint, nodelay: bool) -> Result<Conn> {
    let conn = match endpoint {
        Endpoint::Kernel(addr) => {
            let stream = TcpStream::connect_timeout(addr, Duration::from_secs(10))
                .with_context(|| format!("connect {addr}"))?;
            Conn::kernel(stream, nodelay)?
        }
        Endpoint::Stack { control, addr } => {
            let mut client = open_session(control, "stack_vs_kernel client")?;
            let socket = client.socket(Family::Inet, SocketKind::Stream)?;
            if nodelay {
                client.set_option(socket.token, OptionName::NoDelay, OptionValue::Int(1))?;
            }
            client
                .connect_blocking(&socket, *addr, Duration::from_secs(10))
                .with_context(|| format!("connect {addr} through stackd"))?;
            Conn::stack(socket.carrier, client)?
        }
    };
    println!("connected");
    Ok(conn)
}

/// Waits for the orchestrator's `go` on stdin.
fn wait_for_go() -> Result<()> {
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "go" {
        bail!("expected `go` on stdin, got {line:?}");
    }
    Ok(())
}

fn role_main(args: &[String]) -> Result<()> {
    let endpoint = Endpoint::from_args(args)?;
    match flag(args, "--role").unwrap_or_default() {
        "sink" => sink(&endpoint),
        "source" => source(
            &endpoint,
            Duration::from_secs_f64(parsed(args, "--seconds", 3.0)?),
            parsed(args, "--write", 128 * 1024)?,
        ),
        "pong" => pong(&endpoint, parsed(args, "--message", 64)?),
        "ping" => ping(
            &endpoint,
            parsed(args, "--message", 64)?,
            parsed(args, "--round-trips", 20_000)?,
            Duration::from_secs_f64(parsed(args, "--rtt-seconds", 2.0)?),
        ),
        other => bail!("unknown role {other:?}"),
    }
}

/// Receives until end-of-stream; prints `received BYTES NANOS` (first byte to end-of-stream).
fn sink(endpoint: &Endpoint) -> Result<()> {
    let mut conn = accept_one(endpoint, false)?;
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut total = 0u64;
    let mut first = None;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                first.get_or_insert_with(Instant::now);
                total += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("receive"),
        }
    }
    let nanos = first.map_or(0, |t| t.elapsed().as_nanos());
    println!("received {total} {nanos}");
    Ok(())
}

/// Writes `chunk`-byte pieces for `duration` after `go`; prints `sent BYTES`.
fn source(endpoint: &Endpoint, duration: Duration, chunk: usize) -> Result<()> {
    let mut conn = connect(endpoint, false)?;
    // Not all zeros, so nothing on the way can take a shortcut on the payload.
    let data: Vec<u8> = (0..chunk).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    wait_for_go()?;
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        conn.write_all(&data).context("send")?;
        sent += data.len() as u64;
    }
    conn.shutdown_write().context("shutdown")?;
    conn.drain_to_end().context("wait for the receiver to close")?;
    println!("sent {sent}");
    Ok(())
}

/// Echoes `message`-byte requests until end-of-stream.
fn pong(endpoint: &Endpoint, message: usize) -> Result<()> {
    let mut conn = accept_one(endpoint, true)?;
    let mut buf = vec![0u8; message];
    loop {
        match conn.read_exact(&mut buf) {
            Ok(()) => conn.write_all(&buf).context("reply")?,
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e).context("request"),
        }
    }
}

/// Ping-pong after `go`; prints `rtt COUNT P50_NS P99_NS MEAN_NS`.
fn ping(endpoint: &Endpoint, message: usize, count: usize, bound: Duration) -> Result<()> {
    let mut conn = connect(endpoint, true)?;
    let request = vec![0x5au8; message];
    let mut reply = vec![0u8; message];
    wait_for_go()?;
    let mut round_trip = |conn: &mut Conn| -> Result<()> {
        conn.write_all(&request).context("request")?;
        conn.read_exact(&mut reply).context("reply")?;
        Ok(())
    };
    let warmup_end = Instant::now() + bound / 4;
    for _ in 0..WARMUP_ROUND_TRIPS {
        if Instant::now() > warmup_end {
            break;
        }
        round_trip(&mut conn)?;
    }
    let mut samples = Vec::with_capacity(count);
    let deadline = Instant::now() + bound;
    while samples.len() < count && Instant::now() < deadline {
        let start = Instant::now();
        round_trip(&mut conn)?;
        samples.push(start.elapsed().as_nanos() as u64);
    }
    conn.shutdown_write()?;
    conn.drain_to_end()?;
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        bail!("no round trip completed");
    }
    let mean = samples.iter().sum::<u64>() / n as u64;
    println!("rtt {n} {} {} {mean}", samples[n / 2], samples[(n * 99 / 100).min(n - 1)]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The orchestrator: namespaces, daemons, processes, measurements.
// ---------------------------------------------------------------------------------------------

/// Set by SIGINT/SIGTERM: every wait gives up, and the guards clean up as the error unwinds.
fn interrupted() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

fn check_interrupted() -> Result<()> {
    if interrupted().load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

fn run_cmd(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Makes a child die with us: SIGKILL for our roles, SIGTERM for daemons (so they still
/// release their devices and files) if the orchestrator is killed outright.
fn die_with_parent(command: &mut Command, signal: libc::c_int) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(move || {
            // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A network namespace of ours, removed on drop with whatever still runs in it.
struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> Result<Netns> {
        run_cmd("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip("link set lo up")?;
        // No IPv6 chatter on the links (router solicitations, DAD) during the runs.
        for key in ["all", "default"] {
            ns.exec(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{key}.disable_ipv6=1")])?;
        }
        Ok(ns)
    }

    fn ip(&self, args: &str) -> Result<()> {
        let mut argv = vec!["-n", &self.name];
        argv.extend(args.split_whitespace());
        run_cmd("ip", &argv)
    }

    fn exec(&self, argv: &[&str]) -> Result<()> {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run_cmd("ip", &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_netns(&self.name);
    }
}

fn remove_netns(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// Namespaces and work directories of earlier runs whose process is gone.
fn remove_leftovers() {
    let owner_gone = |name: &str| {
        let pid = name.strip_prefix(PREFIX).and_then(|rest| rest.strip_prefix('-'));
        let pid = pid.and_then(|rest| rest.split('-').next()).unwrap_or_default();
        !pid.is_empty() && !Path::new("/proc").join(pid).exists()
    };
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if owner_gone(name) {
                // Not eprintln!: a closed stderr must not stop the clean-up half way.
                let _ = writeln!(io::stderr(), "removing namespace {name} left by an earlier run");
                remove_netns(name);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_gone(&name) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Our work directory on tmpfs (control sockets, the shm wire, daemon logs).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<WorkDir> {
        let dir = PathBuf::from(format!("/dev/shm/{PREFIX}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A joyride-stackd we started; stopped with SIGTERM (killed if it does not stop) on drop.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(netns: &Netns, args: &[String], control: &Path, log: &Path) -> Result<Daemon> {
        let log_file = std::fs::File::create(log)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &netns.name, STACKD])
            .args(args)
            .arg("--control")
            .arg(control)
            .env("JOYRIDE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        die_with_parent(&mut command, libc::SIGTERM);
        let child = command.spawn().context("start joyride-stackd")?;
        let mut daemon = Daemon { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !control.exists() {
            check_interrupted()?;
            if let Some(status) = daemon.child.try_wait()? {
                bail!(
                    "joyride-stackd {} exited ({status}): {}",
                    args.join(" "),
                    std::fs::read_to_string(log).unwrap_or_default().trim()
                );
            }
            if Instant::now() > deadline {
                bail!("joyride-stackd {} did not open its control socket in 10 s", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(daemon)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A role process we started: its stdout lines arrive on a channel; killed on drop.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(name: &'static str, via: &Via, args: &[String]) -> Result<Proc> {
        let exe = std::env::current_exe()?;
        let mut command = match via {
            Via::Kernel { netns } => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(exe);
                command
            }
            Via::Stack { .. } => Command::new(exe),
            Via::Joyride { netns, control, fast_path } => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(joyride_exe()).arg("run");
                if !fast_path {
                    command.arg("--no-fast-path");
                }
                command.arg("--stackd").arg(control).arg("--").arg(exe);
                command.env("JOYRIDE_LOG", "warn");
                command
            }
        };
        command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        die_with_parent(&mut command, libc::SIGKILL);
        let mut child = command.spawn().with_context(|| format!("start the {name}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc { name, child, stdin, lines })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line starting with `word`, and returns the rest of it.
    fn expect(&mut self, word: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => match line.strip_prefix(word) {
                    Some(rest) => return Ok(rest.trim().to_owned()),
                    None => eprintln!("{}: {line}", self.name),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("the {} ended ({status}) before it said `{word}`", self.name);
                }
            }
            if Instant::now() > deadline {
                bail!("the {} did not say `{word}` within {timeout:?}", self.name);
            }
        }
    }

    fn say(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin is piped")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A role that said its last line is on its way out; under joyride, the supervisor
        // returns once the program has exited. Only what is still there after a moment is
        // killed, descendants first (the program under a supervisor does not die with it).
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                for pid in descendants(self.child.id()) {
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                }
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.wait();
    }
}

/// How a role reaches its stack: in a namespace with the kernel's TCP, through a daemon's
/// control socket, or on plain sockets under `joyride run` (in `netns`) served by the daemon
/// at `control`.
#[derive(Clone, Debug)]
enum Via {
    Kernel { netns: String },
    Stack { control: PathBuf },
    Joyride { netns: String, control: PathBuf, fast_path: bool },
}

impl Via {
    fn endpoint_args(&self, addr: SocketAddr) -> Vec<String> {
        // A role under joyride is a kernel-socket role: joyride makes its sockets stackd's.
        let mut args = vec!["--addr".to_owned(), addr.to_string()];
        if let Via::Stack { control } = self {
            args.extend(["--stack".to_owned(), control.display().to_string()]);
        }
        args
    }
}

/// `joyride` of the same build as the daemon under test (cargo puts both in one directory).
fn joyride_exe() -> PathBuf {
    Path::new(STACKD).with_file_name("joyride")
}

/// joyride and its fast-path library must have been built (cargo bench builds neither: the
/// former is another package's binary, the latter a cdylib).
fn check_joyride_built() -> Result<()> {
    let joyride = joyride_exe();
    let library = joyride.with_file_name(FAST_PATH_LIBRARY);
    for file in [&joyride, &library] {
        if !file.is_file() {
            bail!(
                "the shm-trap and shm-rings paths run their programs under {}, which needs {} — \
                 missing: build the workspace first (`cargo build --release --locked --workspace`; \
                 scripts/bench-stackd.sh does)",
                joyride.display(),
                file.display()
            );
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PathKind {
    Kernel,
    KernelNoOffload,
    Shm,
    ShmTrap,
    ShmRings,
    AfPacket,
}

impl PathKind {
    fn parse(name: &str) -> Result<PathKind> {
        Ok(match name {
            "kernel" => PathKind::Kernel,
            "kernel-no-offload" => PathKind::KernelNoOffload,
            "shm" => PathKind::Shm,
            "shm-trap" => PathKind::ShmTrap,
            "shm-rings" => PathKind::ShmRings,
            "af-packet" => PathKind::AfPacket,
            other => bail!(
                "unknown path {other:?} (expected kernel, kernel-no-offload, shm, shm-trap, \
                 shm-rings or af-packet)"
            ),
        })
    }

    fn short(self) -> &'static str {
        match self {
            PathKind::Kernel => "kernel",
            PathKind::KernelNoOffload => "kernel-no-offload",
            PathKind::Shm => "shm",
            PathKind::ShmTrap => "shm-trap",
            PathKind::ShmRings => "shm-rings",
            PathKind::AfPacket => "af-packet",
        }
    }

    fn label(self) -> &'static str {
        match self {
            PathKind::Kernel => "kernel TCP, veth between two netns",
            PathKind::KernelNoOffload => "kernel TCP, same veth with TSO/GSO/GRO off",
            PathKind::Shm => "stackd ↔ stackd, shm wire",
            PathKind::ShmTrap => "stackd ↔ stackd, shm wire, joyride run --no-fast-path",
            PathKind::ShmRings => "stackd ↔ stackd, shm wire, joyride run (rings)",
            PathKind::AfPacket => "stackd ↔ stackd, af-packet on a veth",
        }
    }

    fn subnet(self) -> u8 {
        match self {
            PathKind::Kernel => 1,
            PathKind::AfPacket => 2,
            PathKind::Shm => 3,
            PathKind::KernelNoOffload => 4,
            PathKind::ShmTrap => 5,
            PathKind::ShmRings => 6,
        }
    }

    /// Whether the frames go over the shm wire (no veth).
    fn shm_wire(self) -> bool {
        matches!(self, PathKind::Shm | PathKind::ShmTrap | PathKind::ShmRings)
    }

    /// For the paths whose programs run under `joyride run`: whether with the fast path.
    fn joyride(self) -> Option<bool> {
        match self {
            PathKind::ShmTrap => Some(false),
            PathKind::ShmRings => Some(true),
            _ => None,
        }
    }
}

/// One path at one MTU, ready for connections: the client side is `a`, the server side `b`.
struct Setup {
    kind: PathKind,
    client: Via,
    server: Via,
    server_ip: IpAddr,
    /// Client side's daemon first. Dropped before the namespaces they run in.
    daemons: Vec<Daemon>,
    _namespaces: Vec<Netns>,
}

impl Setup {
    fn new(kind: PathKind, mtu: usize, dir: &Path, stackd_args: &[String]) -> Result<Setup> {
        let tag = format!("{PREFIX}-{}-{}-{mtu}", std::process::id(), kind.short());
        let a = Netns::new(format!("{tag}-a"))?;
        let b = Netns::new(format!("{tag}-b"))?;
        let ip = |host: u8| Ipv4Addr::new(10, 99, kind.subnet(), host);
        if !kind.shm_wire() {
            a.ip(&format!("link add veth0 type veth peer name veth1 netns {}", b.name))?;
            a.ip(&format!("link set veth0 mtu {mtu} up"))?;
            b.ip(&format!("link set veth1 mtu {mtu} up"))?;
        }
        let mut daemons = Vec::new();
        let (client, server) = match kind {
            PathKind::Kernel | PathKind::KernelNoOffload => {
                if kind == PathKind::KernelNoOffload {
                    // Segments of the MTU all the way, as stackd sends them.
                    let off = ["tso", "off", "gso", "off", "gro", "off"];
                    for (ns, iface) in [(&a, "veth0"), (&b, "veth1")] {
                        ns.exec(&[&["ethtool", "-K", iface][..], &off].concat())?;
                    }
                }
                a.ip(&format!("addr add {}/24 dev veth0", ip(1)))?;
                b.ip(&format!("addr add {}/24 dev veth1", ip(2)))?;
                (Via::Kernel { netns: a.name.clone() }, Via::Kernel { netns: b.name.clone() })
            }
            PathKind::Shm | PathKind::ShmTrap | PathKind::ShmRings | PathKind::AfPacket => {
                // One wire per pair of daemons.
                let wire = dir.join(format!("wire-{}-{mtu}", kind.short()));
                let mut vias = Vec::new();
                for (ns, host, iface) in [(&a, 1, "veth0"), (&b, 2, "veth1")] {
                    let side = if host == 1 { "a" } else { "b" };
                    let control = dir.join(format!("{}-{mtu}-{side}.sock", kind.short()));
                    let log = dir.join(format!("{}-{mtu}-{side}.log", kind.short()));
                    let backend: Vec<String> = match kind {
                        PathKind::Shm | PathKind::ShmTrap | PathKind::ShmRings => {
                            vec![
                                "--backend".into(),
                                "shm".into(),
                                "--iface".into(),
                                path_arg(&wire),
                            ]
                        }
                        _ => vec![
                            "--backend".into(),
                            "af-packet".into(),
                            "--iface".into(),
                            iface.into(),
                        ],
                    };
                    let mut args = backend;
                    args.extend([
                        "--addr".into(),
                        format!("{}/24", ip(host)),
                        "--mtu".into(),
                        mtu.to_string(),
                    ]);
                    args.extend(stackd_args.iter().cloned());
                    daemons.push(Daemon::start(ns, &args, &control, &log)?);
                    vias.push(match kind.joyride() {
                        Some(fast_path) => {
                            Via::Joyride { netns: ns.name.clone(), control, fast_path }
                        }
                        None => Via::Stack { control },
                    });
                }
                let server = vias.pop().expect("two daemons");
                (vias.pop().expect("two daemons"), server)
            }
        };
        Ok(Setup {
            kind,
            client,
            server,
            server_ip: IpAddr::V4(ip(2)),
            daemons,
            _namespaces: vec![a, b],
        })
    }
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// Bytes a daemon moved between programs and its engine, by plane, from its counters.
#[derive(Clone, Copy, Debug, Default)]
struct Planes {
    carrier: u64,
    ring: u64,
}

impl Planes {
    fn read(control: &Path) -> Result<Planes> {
        let mut client = Client::connect(control)?;
        let stackd::proto::Reply::Counters { counters } =
            client.call(stackd::proto::Operation::Counters)?
        else {
            bail!("{}: no counters in the reply", control.display());
        };
        let sum = |names: [&str; 2]| {
            counters.iter().filter(|(name, _)| names.contains(&name.as_str())).map(|c| c.1).sum()
        };
        Ok(Planes {
            carrier: sum(["carrier_in_bytes", "carrier_out_bytes"]),
            ring: sum(["ring_in_bytes", "ring_out_bytes"]),
        })
    }

    fn since(&self, before: &Planes) -> Planes {
        Planes {
            carrier: self.carrier.saturating_sub(before.carrier),
            ring: self.ring.saturating_sub(before.ring),
        }
    }
}

impl Setup {
    /// Each daemon's planes, client side first (none for the kernel paths).
    fn planes(&self) -> Result<Vec<Planes>> {
        [&self.client, &self.server]
            .into_iter()
            .filter_map(|via| match via {
                Via::Kernel { .. } => None,
                Via::Stack { control } | Via::Joyride { control, .. } => Some(control),
            })
            .map(|control| Planes::read(control))
            .collect()
    }

    /// Fails unless every daemon moved a transfer's `bytes` on the plane this path is about:
    /// the carriers, or for shm-rings the rings (all but the first few bytes, which may pass
    /// through the carrier before the daemon attaches to the sender's ring).
    fn check_planes(&self, before: &[Planes], after: &[Planes], bytes: u64) -> Result<()> {
        let sides = ["sender's", "receiver's"];
        for (side, (before, after)) in sides.iter().zip(before.iter().zip(after)) {
            let moved = after.since(before);
            let ok = if self.kind == PathKind::ShmRings {
                moved.ring >= bytes - bytes / 100
            } else {
                moved.carrier >= bytes && moved.ring == 0
            };
            if !ok {
                bail!(
                    "the {side} stackd moved {} bytes through carriers and {} through rings \
                     during a {bytes}-byte transfer over {}: not the plane this path measures",
                    moved.carrier,
                    moved.ring,
                    self.kind.short()
                );
            }
        }
        Ok(())
    }
}

// --- CPU accounting --------------------------------------------------------------------------

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf takes a constant and reads no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The machine's CPU time by kind, in ticks, from /proc/stat's `cpu` line.
#[derive(Clone, Copy, Debug, Default)]
struct MachineCpu {
    user: u64,
    system: u64,
    /// Hard and soft interrupts.
    interrupts: u64,
    /// nice + steal.
    other: u64,
}

impl MachineCpu {
    fn read() -> Result<MachineCpu> {
        let text = std::fs::read_to_string("/proc/stat")?;
        let line = text.lines().next().context("/proc/stat is empty")?;
        let v: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        let field = |i: usize| v.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        Ok(MachineCpu {
            user: field(0),
            system: field(2),
            interrupts: field(5) + field(6),
            other: field(1) + field(7),
        })
    }

    fn busy(&self) -> u64 {
        self.user + self.system + self.interrupts + self.other
    }

    fn since(&self, before: &MachineCpu) -> MachineCpu {
        MachineCpu {
            user: self.user - before.user,
            system: self.system - before.system,
            interrupts: self.interrupts - before.interrupts,
            other: self.other - before.other,
        }
    }
}

/// What /proc/PID/stat says of one process, times in ticks.
#[derive(Clone, Copy, Debug)]
struct ProcStat {
    ppid: u32,
    user: u64,
    system: u64,
    /// cutime and cstime: the children it has waited for, with theirs.
    reaped_user: u64,
    reaped_system: u64,
}

impl ProcStat {
    fn read(pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces: fields count from after its closing parenthesis.
        let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
        Some(ProcStat {
            ppid: field(1) as u32,
            user: field(11),
            system: field(12),
            reaped_user: field(13),
            reaped_system: field(14),
        })
    }
}

/// Every process's children, from the parent links in /proc.
fn children_by_parent() -> BTreeMap<u32, Vec<u32>> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse().ok()) else {
            continue;
        };
        if let Some(stat) = ProcStat::read(pid) {
            children.entry(stat.ppid).or_default().push(pid);
        }
    }
    children
}

/// The processes below `pid`, deepest first.
fn descendants(pid: u32) -> Vec<u32> {
    fn walk(pid: u32, children: &BTreeMap<u32, Vec<u32>>, out: &mut Vec<u32>) {
        for &child in children.get(&pid).into_iter().flatten() {
            walk(child, children, out);
            out.push(child);
        }
    }
    let mut out = Vec::new();
    walk(pid, &children_by_parent(), &mut out);
    out
}

/// utime and stime of a process and its descendants, living or reaped, in ticks (zero if it
/// is gone). `joyride run` is the supervisor and the program its child; the program may exit
/// and be reaped between two snapshots, when its time moves into the supervisor's cutime.
fn tree_cpu(pid: u32, children: &BTreeMap<u32, Vec<u32>>) -> (u64, u64) {
    // A child reaped while we read would count twice (its own times, then in the parent's
    // cutime) or not at all (the other way round): read the parent before and after its
    // children, and again if its reaped times moved meanwhile.
    let mut total = (0, 0);
    for _ in 0..5 {
        let Some(before) = ProcStat::read(pid) else { return (0, 0) };
        total = (before.user + before.reaped_user, before.system + before.reaped_system);
        for &child in children.get(&pid).into_iter().flatten() {
            let (user, system) = tree_cpu(child, children);
            total = (total.0 + user, total.1 + system);
        }
        let Some(after) = ProcStat::read(pid) else { return total };
        if (after.reaped_user, after.reaped_system) == (before.reaped_user, before.reaped_system) {
            break;
        }
    }
    total
}

/// CPU of the machine and of the watched process trees at one instant.
struct Snapshot {
    at: Instant,
    machine: MachineCpu,
    processes: Vec<(u64, u64)>,
}

impl Snapshot {
    fn take(pids: &[u32]) -> Result<Snapshot> {
        let children = children_by_parent();
        Ok(Snapshot {
            at: Instant::now(),
            machine: MachineCpu::read()?,
            processes: pids.iter().map(|&pid| tree_cpu(pid, &children)).collect(),
        })
    }
}

/// Where the kernel charges interrupt work, which decides what "our" CPU time is.
struct Accounting {
    /// CONFIG_IRQ_TIME_ACCOUNTING: interrupt and softirq time is kept apart from the tasks it
    /// interrupted (only /proc/stat's irq and softirq show it). Without it (tick-based
    /// accounting), a tick that lands in softirq counts in /proc/stat's softirq *and* in the
    /// stime of the task it interrupted, so adding both would count it twice; softirq work
    /// deferred to ksoftirqd is then that thread's.
    irq_time: bool,
    /// Whether the kernel's configuration said so (otherwise tick-based is assumed).
    known: bool,
    /// The ksoftirqd/N threads.
    ksoftirqd: Vec<u32>,
}

impl Accounting {
    fn detect() -> Accounting {
        let config = Command::new("zcat")
            .arg("/proc/config.gz")
            .stderr(Stdio::null())
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        let irq_time = config.lines().any(|l| l == "CONFIG_IRQ_TIME_ACCOUNTING=y");
        let known = irq_time || config.contains("CONFIG_IRQ_TIME_ACCOUNTING is not set");
        let ksoftirqd = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
                comm.starts_with("ksoftirqd/").then_some(pid)
            })
            .collect();
        Accounting { irq_time, known, ksoftirqd }
    }

    fn describe(&self) -> &'static str {
        match (self.irq_time, self.known) {
            (true, _) => {
                "\"ours\" = the row's processes with their descendants (utime+stime from \
                          /proc/PID/stat) plus the machine's irq+softirq time \
                          (CONFIG_IRQ_TIME_ACCOUNTING=y)"
            }
            (false, true) => {
                "\"ours\" = the row's processes with their descendants (utime+stime from \
                              /proc/PID/stat, which here include softirq work done in their context: tick-based \
                              accounting) plus the ksoftirqd threads"
            }
            (false, false) => {
                "\"ours\" = the row's processes with their descendants (utime+stime from \
                               /proc/PID/stat) plus the ksoftirqd threads (assuming tick-based accounting: no \
                               /proc/config.gz to tell)"
            }
        }
    }
}

/// Busy cores of the machine over `window` with nothing of ours running.
fn idle_load(window: Duration) -> Result<f64> {
    let before = MachineCpu::read()?;
    let start = Instant::now();
    std::thread::sleep(window);
    let busy = MachineCpu::read()?.since(&before).busy() as f64 / ticks_per_second();
    Ok(busy / start.elapsed().as_secs_f64())
}

// --- Measurements ----------------------------------------------------------------------------

/// One bulk transfer.
#[derive(Clone, Debug)]
struct Transfer {
    gbps: f64,
    /// Busy cores of the whole machine.
    cores: f64,
    /// Gbit per busy CPU-second.
    per_core: f64,
    user: f64,
    system: f64,
    interrupts: f64,
    /// Our processes plus the machine's interrupt time: what the transfer itself cost, less
    /// sensitive to other work on the machine than `cores`.
    own_cores: f64,
    /// Gbit per CPU-second of `own_cores`.
    own_per_core: f64,
    /// (name, user cores, system cores) of each process we watched.
    processes: Vec<(String, f64, f64)>,
    /// Cores used by the daemons of the other paths, which should sleep meanwhile.
    bystanders: f64,
}

#[derive(Clone, Debug)]
struct Latency {
    count: u64,
    p50_us: f64,
    p99_us: f64,
    /// Busy cores of the machine while the ping-pong ran (polling waiters count).
    busy_cores: f64,
}

struct Options {
    runs: usize,
    seconds: f64,
    round_trips: usize,
    rtt_seconds: f64,
    message: usize,
    write: usize,
    mtus: Vec<usize>,
    /// More arguments for every joyride-stackd, e.g. `--segmentation-offload off`.
    stackd_args: Vec<String>,
    paths: Vec<PathKind>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        const KNOWN: [&str; 9] = [
            "--runs",
            "--seconds",
            "--round-trips",
            "--rtt-seconds",
            "--message",
            "--write",
            "--mtu",
            "--paths",
            "--stackd-args",
        ];
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                // cargo bench passes --bench to a benchmark without harness.
                "--bench" => i += 1,
                name if KNOWN.contains(&name) => i += 2,
                other => bail!("unknown option {other:?}; options: {}", KNOWN.join(" ")),
            }
        }
        let list = |name: &str, default: &str| -> Vec<String> {
            flag(args, name).unwrap_or(default).split(',').map(str::to_owned).collect()
        };
        let options = Options {
            runs: parsed(args, "--runs", 3)?,
            seconds: parsed(args, "--seconds", 3.0)?,
            round_trips: parsed(args, "--round-trips", 20_000)?,
            rtt_seconds: parsed(args, "--rtt-seconds", 2.0)?,
            message: parsed(args, "--message", 64)?,
            write: parsed(args, "--write", 128 * 1024)?,
            mtus: list("--mtu", "1500,9000")
                .iter()
                .map(|m| m.parse().map_err(|e| anyhow!("--mtu {m:?}: {e}")))
                .collect::<Result<_>>()?,
            paths: list("--paths", "kernel,kernel-no-offload,shm,af-packet")
                .iter()
                .map(|p| PathKind::parse(p))
                .collect::<Result<_>>()?,
            stackd_args: flag(args, "--stackd-args")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        };
        if options.runs == 0 || options.seconds <= 0.0 || options.message == 0 || options.write == 0
        {
            bail!("--runs, --seconds, --message and --write must be positive");
        }
        Ok(options)
    }
}

fn transfer(
    setup: &Setup,
    bystanders: &[u32],
    accounting: &Accounting,
    options: &Options,
    port: u16,
) -> Result<Transfer> {
    let addr = SocketAddr::new(setup.server_ip, port);
    let role = |name: &str| vec!["--role".to_owned(), name.to_owned()];
    let mut args = role("sink");
    args.extend(setup.server.endpoint_args(addr));
    let mut sink = Proc::spawn("receiver", &setup.server, &args)?;
    sink.expect("ready", Duration::from_secs(10))?;
    let mut args = role("source");
    args.extend(setup.client.endpoint_args(addr));
    args.extend([
        "--seconds".into(),
        options.seconds.to_string(),
        "--write".into(),
        options.write.to_string(),
    ]);
    let mut source = Proc::spawn("sender", &setup.client, &args)?;
    source.expect("connected", Duration::from_secs(10))?;

    let mut watched =
        vec![("sender".to_owned(), source.pid()), ("receiver".to_owned(), sink.pid())];
    if let [client_daemon, server_daemon] = setup.daemons.as_slice() {
        watched.push(("stackd, sender's".to_owned(), client_daemon.pid()));
        watched.push(("stackd, receiver's".to_owned(), server_daemon.pid()));
    }
    let mut pids: Vec<u32> = watched.iter().map(|(_, pid)| *pid).collect();
    pids.extend_from_slice(bystanders);
    let softirq_threads = pids.len()..pids.len() + accounting.ksoftirqd.len();
    pids.extend_from_slice(&accounting.ksoftirqd);

    let planes_before = setup.planes()?;
    let before = Snapshot::take(&pids)?;
    source.say("go")?;
    let timeout = Duration::from_secs_f64(options.seconds) + IO_TIMEOUT;
    let received = sink.expect("received", timeout)?;
    let after = Snapshot::take(&pids)?;
    let planes_after = setup.planes()?;
    let sent: u64 = source.expect("sent", IO_TIMEOUT)?.parse()?;

    let mut fields = received.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(bytes)), Some(Ok(nanos))) = (fields.next(), fields.next()) else {
        bail!("the receiver said {received:?}");
    };
    if bytes != sent || nanos == 0 {
        bail!("the sender sent {sent} bytes, the receiver got {bytes} (in {nanos} ns)");
    }
    setup.check_planes(&planes_before, &planes_after, bytes)?;
    let hz = ticks_per_second();
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let cores = |ticks: u64| ticks as f64 / hz / wall;
    let machine = after.machine.since(&before.machine);
    let gbits = bytes as f64 * 8.0 / 1e9;
    let delta = |i: usize| {
        let ((u0, s0), (u1, s1)) = (before.processes[i], after.processes[i]);
        (u1.saturating_sub(u0), s1.saturating_sub(s0))
    };
    let processes = watched
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let (u, s) = delta(i);
            (name.clone(), cores(u), cores(s))
        })
        .collect();
    let ticks = |range: std::ops::Range<usize>| range.map(|i| delta(i).0 + delta(i).1).sum::<u64>();
    let bystanders = ticks(watched.len()..softirq_threads.start);
    let own = ticks(0..watched.len())
        + if accounting.irq_time { machine.interrupts } else { ticks(softirq_threads) };
    let per = |ticks: u64| if ticks > 0 { gbits / (ticks as f64 / hz) } else { f64::NAN };
    Ok(Transfer {
        gbps: gbits / (nanos as f64 / 1e9),
        cores: cores(machine.busy()),
        per_core: per(machine.busy()),
        user: cores(machine.user),
        system: cores(machine.system),
        interrupts: cores(machine.interrupts),
        own_cores: cores(own),
        own_per_core: per(own),
        processes,
        bystanders: cores(bystanders),
    })
}

fn latency(setup: &Setup, options: &Options, port: u16) -> Result<Latency> {
    let addr = SocketAddr::new(setup.server_ip, port);
    let mut args = vec!["--role".to_owned(), "pong".to_owned()];
    args.extend(setup.server.endpoint_args(addr));
    args.extend(["--message".into(), options.message.to_string()]);
    let mut pong = Proc::spawn("echo server", &setup.server, &args)?;
    pong.expect("ready", Duration::from_secs(10))?;
    let mut args = vec!["--role".to_owned(), "ping".to_owned()];
    args.extend(setup.client.endpoint_args(addr));
    args.extend([
        "--message".into(),
        options.message.to_string(),
        "--round-trips".into(),
        options.round_trips.to_string(),
        "--rtt-seconds".into(),
        options.rtt_seconds.to_string(),
    ]);
    let mut ping = Proc::spawn("echo client", &setup.client, &args)?;
    ping.expect("connected", Duration::from_secs(10))?;
    let (before, start) = (MachineCpu::read()?, Instant::now());
    ping.say("go")?;
    let line =
        ping.expect("rtt", Duration::from_secs_f64(options.rtt_seconds * 2.0) + IO_TIMEOUT)?;
    let busy = MachineCpu::read()?.since(&before).busy() as f64 / ticks_per_second();
    let busy_cores = busy / start.elapsed().as_secs_f64();
    let v: Vec<u64> = line.split_whitespace().map(|f| f.parse()).collect::<Result<_, _>>()?;
    let [count, p50, p99, _mean] = v[..] else { bail!("the echo client said {line:?}") };
    Ok(Latency { count, p50_us: p50 as f64 / 1e3, p99_us: p99 as f64 / 1e3, busy_cores })
}

// --- Reporting -------------------------------------------------------------------------------

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn range(values: impl IntoIterator<Item = f64> + Clone) -> (f64, f64) {
    let min = values.clone().into_iter().fold(f64::INFINITY, f64::min);
    let max = values.into_iter().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

#[derive(Default)]
struct Row {
    transfers: Vec<Transfer>,
    latencies: Vec<Latency>,
}

fn machine_description() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {}", kernel.trim())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn report(
    rows: &BTreeMap<(usize, PathKind), Row>,
    accounting: &Accounting,
    options: &Options,
) -> String {
    let mut out = String::new();
    let per_core_of = |mtu: usize, kind: PathKind, own: bool| {
        rows.get(&(mtu, kind)).map(|row| {
            median(row.transfers.iter().map(|t| if own { t.own_per_core } else { t.per_core }))
        })
    };
    let versus = |value: f64, kernel: Option<f64>| match kernel {
        Some(k) if k > 0.0 => format!("{:.2}×", value / k),
        _ => "–".into(),
    };
    let _ = writeln!(
        out,
        "| MTU | path | Gbit/s, median (min–max) | busy cores | Gbit/s per busy core (min–max) | \
         per core vs kernel | RTT p50 µs | RTT p99 µs | busy cores, ping-pong |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for (&(mtu, kind), row) in rows {
        let gbps = row.transfers.iter().map(|t| t.gbps);
        let per_core = row.transfers.iter().map(|t| t.per_core);
        let (gmin, gmax) = range(gbps.clone());
        let (pmin, pmax) = range(per_core.clone());
        let per_core = median(per_core);
        let _ = writeln!(
            out,
            "| {mtu} | {} | {:.2} ({gmin:.2}–{gmax:.2}) | {:.2} | {per_core:.2} ({pmin:.2}–{pmax:.2}) \
             | {} | {:.1} | {:.1} | {:.2} |",
            kind.label(),
            median(gbps),
            median(row.transfers.iter().map(|t| t.cores)),
            versus(per_core, per_core_of(mtu, PathKind::Kernel, false)),
            median(row.latencies.iter().map(|l| l.p50_us)),
            median(row.latencies.iter().map(|l| l.p99_us)),
            median(row.latencies.iter().map(|l| l.busy_cores)),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Where the CPU went during the transfers (medians, in cores). Machine-wide from /proc/stat; \
         {}, a cross-check that other work on the machine does not count in; per process as \
         user+system:",
        accounting.describe()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| MTU | path | user | system | irq+softirq | ours | Gbit/s per core of ours | vs kernel | \
         per process (user+system) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for (&(mtu, kind), row) in rows {
        let t = &row.transfers;
        let names: Vec<&str> =
            t.first().map_or(Vec::new(), |f| f.processes.iter().map(|p| p.0.as_str()).collect());
        let per_process = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let u = median(t.iter().map(|x| x.processes[i].1));
                let s = median(t.iter().map(|x| x.processes[i].2));
                format!("{name} {u:.2}+{s:.2}")
            })
            .collect::<Vec<_>>()
            .join("; ");
        let own_per_core = median(t.iter().map(|x| x.own_per_core));
        let _ = writeln!(
            out,
            "| {mtu} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {own_per_core:.2} | {} | {per_process} |",
            kind.short(),
            median(t.iter().map(|x| x.user)),
            median(t.iter().map(|x| x.system)),
            median(t.iter().map(|x| x.interrupts)),
            median(t.iter().map(|x| x.own_cores)),
            versus(own_per_core, per_core_of(mtu, PathKind::Kernel, true)),
        );
    }
    let _ = writeln!(out);
    let bystanders = rows.values().flat_map(|r| r.transfers.iter().map(|t| t.bystanders));
    let bystanders = bystanders.fold(0.0, f64::max);
    let round_trips = rows.values().flat_map(|r| r.latencies.iter().map(|l| l.count));
    let _ = writeln!(
        out,
        "Daemons of the other rows, idle meanwhile, used at most {bystanders:.2} cores during a \
         transfer; the fewest round trips in a latency run were {} (of at most {}).",
        round_trips.min().unwrap_or(0),
        options.round_trips,
    );
    let _ = writeln!(out);
    for &mtu in &options.mtus {
        let Some(kernel) = rows.get(&(mtu, PathKind::Kernel)) else { continue };
        let k_core = median(kernel.transfers.iter().map(|t| t.per_core));
        let k_own = median(kernel.transfers.iter().map(|t| t.own_per_core));
        let k_p50 = median(kernel.latencies.iter().map(|l| l.p50_us));
        let k_busy = median(kernel.latencies.iter().map(|l| l.busy_cores));
        for kind in [PathKind::Shm, PathKind::ShmTrap, PathKind::ShmRings, PathKind::AfPacket] {
            let Some(row) = rows.get(&(mtu, kind)) else { continue };
            let ratio = median(row.transfers.iter().map(|t| t.per_core)) / k_core;
            let own = median(row.transfers.iter().map(|t| t.own_per_core)) / k_own;
            let p50 = median(row.latencies.iter().map(|l| l.p50_us));
            let busy = median(row.latencies.iter().map(|l| l.busy_cores));
            let _ = writeln!(
                out,
                "- MTU {mtu}, {}: {ratio:.2}× the kernel's Gbit/s per busy core ({own:.2}× counting \
                 only ours; goal ≥ 1.5×: {}); RTT p50 {p50:.1} µs against {k_p50:.1} µs (goal \
                 lower: {}), at {busy:.2} busy cores against {k_busy:.2}.",
                kind.short(),
                if ratio >= 1.5 { "met" } else { "not met" },
                if p50 < k_p50 { "met" } else { "not met" },
            );
        }
    }
    // The rings against the carriers, the rest of the path alike.
    for &mtu in &options.mtus {
        let Some(rings) = rows.get(&(mtu, PathKind::ShmRings)) else { continue };
        for kind in [PathKind::Shm, PathKind::ShmTrap] {
            let Some(row) = rows.get(&(mtu, kind)) else { continue };
            let of = |row: &Row, pick: fn(&Transfer) -> f64| median(row.transfers.iter().map(pick));
            let p50 = |row: &Row| median(row.latencies.iter().map(|l| l.p50_us));
            let _ = writeln!(
                out,
                "- MTU {mtu}, shm-rings against {}: {:.2}× the Gbit/s, {:.2}× per busy core \
                 ({:.2}× counting only ours); RTT p50 {:.1} µs against {:.1} µs.",
                kind.short(),
                of(rings, |t| t.gbps) / of(row, |t| t.gbps),
                of(rings, |t| t.per_core) / of(row, |t| t.per_core),
                of(rings, |t| t.own_per_core) / of(row, |t| t.own_per_core),
                p50(rings),
                p50(row),
            );
        }
    }
    out
}

fn orchestrate(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces, veth pairs, joyride-stackd's af-packet backend): run it as root, e.g. sudo scripts/bench-stackd.sh");
    }
    run_cmd("ip", &["-V"]).context("needs iproute2's `ip`")?;
    if options.paths.iter().any(|kind| kind.joyride().is_some()) {
        check_joyride_built()?;
    }
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(interrupted()))?;
    }
    remove_leftovers();
    let dir = WorkDir::new()?;
    let accounting = Accounting::detect();

    let load_before = idle_load(Duration::from_secs(1))?;
    let loadavg_before = loadavg();
    eprintln!(
        "stack_vs_kernel: {}; machine busy before the runs: {load_before:.2} cores (loadavg {loadavg_before})",
        machine_description()
    );
    let started = Instant::now();
    let mut rows: BTreeMap<(usize, PathKind), Row> = BTreeMap::new();
    for &mtu in &options.mtus {
        let setups = options
            .paths
            .iter()
            .map(|&kind| {
                Setup::new(kind, mtu, &dir.0, &options.stackd_args)
                    .with_context(|| format!("set up {} at MTU {mtu}", kind.short()))
            })
            .collect::<Result<Vec<_>>>()?;
        let all_daemons: Vec<u32> =
            setups.iter().flat_map(|s| s.daemons.iter().map(Daemon::pid)).collect();
        for run in 0..options.runs {
            for i in 0..setups.len() {
                check_interrupted()?;
                // Each run starts with a different path, so that drift does not favour one.
                let setup = &setups[(i + run) % setups.len()];
                let own: Vec<u32> = setup.daemons.iter().map(Daemon::pid).collect();
                let bystanders: Vec<u32> =
                    all_daemons.iter().copied().filter(|p| !own.contains(p)).collect();
                let port = 5000 + 2 * run as u16;
                let t = transfer(setup, &bystanders, &accounting, &options, port).with_context(
                    || format!("transfer over {} at MTU {mtu}", setup.kind.short()),
                )?;
                let l = latency(setup, &options, port + 1).with_context(|| {
                    format!("ping-pong over {} at MTU {mtu}", setup.kind.short())
                })?;
                eprintln!(
                    "  MTU {mtu} {:>9} run {}: {:6.2} Gbit/s, {:.2} busy cores, {:6.2} Gbit/s per core; RTT p50 {:7.1} µs p99 {:7.1} µs ({} round trips, {:.2} busy cores)",
                    setup.kind.short(),
                    run + 1,
                    t.gbps,
                    t.cores,
                    t.per_core,
                    l.p50_us,
                    l.p99_us,
                    l.count,
                    l.busy_cores
                );
                let row = rows.entry((mtu, setup.kind)).or_default();
                row.transfers.push(t);
                row.latencies.push(l);
            }
        }
    }
    let command = if args.iter().any(|a| a != "--bench") {
        format!(
            "cargo bench -p stackd --bench stack_vs_kernel -- {}",
            args.iter().filter(|a| *a != "--bench").cloned().collect::<Vec<_>>().join(" ")
        )
    } else {
        "cargo bench -p stackd --bench stack_vs_kernel".to_owned()
    };
    println!();
    println!("    {command}");
    println!();
    println!(
        "{}; {} runs per row, {} s transfers of {}-byte writes, {}-byte ping-pong; machine busy \
         before the runs {load_before:.2} cores (loadavg {loadavg_before}, after {}); total {:.0} s.",
        machine_description(),
        options.runs,
        options.seconds,
        options.write,
        options.message,
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    println!();
    print!("{}", report(&rows, &accounting, &options));
    Ok(())
}
