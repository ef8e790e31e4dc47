//! Helpers the `joyride` end-to-end tests share: a namespace of the test's own with
//! joyride-stackd on a TAP in it (or, for a native control run, a veth pair between two
//! namespaces), processes that die with the test, waits with deadlines, digests, and the C
//! test programs compiled on demand.
//!
//! The topology is the one the acceptance checks use: the kernel's side of the link (`jr0`,
//! 10.77.0.1) lives in the *host* namespace, where the kernel-side peers run; the program under
//! test owns 10.77.0.2 — through joyride and stackd, or natively in a second namespace when
//! `JOYRIDE_TEST_NATIVE=1` asks for a run that validates the tests themselves.

#![allow(dead_code)] // each test file uses its own subset

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use stackd::client::Client;
use stackd::proto::{Operation, Reply, SocketLine};

/// The stack's address (the program's own).
pub const STACK_IP: &str = "10.77.0.2";
/// The kernel's side of the TAP.
pub const HOST_IP: &str = "10.77.0.1";
/// The kernel-side interface whose byte counters prove traffic crossed the link.
pub const LINK: &str = "jr0";

/// How the program under test gets its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Under `joyride run`, with joyride-stackd on a TAP: what the tests are for.
    Joyride,
    /// Natively, in a namespace of its own whose veth owns 10.77.0.2: a control run that
    /// shows a test's logic holds on the kernel's stack.
    Native,
}

impl Mode {
    /// `JOYRIDE_TEST_NATIVE=1` runs every test natively.
    pub fn from_env() -> Mode {
        match std::env::var("JOYRIDE_TEST_NATIVE") {
            Ok(value) if value == "1" => Mode::Native,
            _ => Mode::Joyride,
        }
    }
}

/// What a test needs beyond root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// A statically linked busybox at /bin/busybox.
    StaticBusybox,
    Curl,
    Python,
    Gcc,
}

pub const BUSYBOX: &str = "/bin/busybox";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True (after saying why on stderr) when the test cannot run here.
pub fn skip(test: &str, tools: &[Tool]) -> bool {
    let reason = if !is_root() {
        Some("needs root (network namespaces, a TAP, seccomp listeners)".to_owned())
    } else {
        tools.iter().find_map(|tool| match tool {
            Tool::StaticBusybox if !is_static_elf(Path::new(BUSYBOX)) => {
                Some(format!("needs a statically linked busybox at {BUSYBOX} (busybox-static)"))
            }
            Tool::Curl if which("curl").is_none() => Some("needs curl".into()),
            Tool::Python if which("python3").is_none() => Some("needs python3".into()),
            Tool::Gcc if which("gcc").is_none() => Some("needs gcc (build-essential)".into()),
            _ => None,
        })
    };
    match reason {
        Some(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            true
        }
        None => false,
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// An ELF executable without a program interpreter (PT_INTERP) is statically linked.
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |at: usize| {
        bytes.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    // 64-bit little-endian ELF only: the machines we run on.
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..usize::from(phnum)).all(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        bytes
            .get(at..at + 4)
            .is_some_and(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

/// The `joyride` binary cargo built for these tests.
pub fn joyride_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_joyride"))
}

/// joyride-stackd, which another package builds: next to `joyride` in cargo's output
/// directory.
pub fn stackd_bin() -> PathBuf {
    let path = joyride_bin().parent().expect("cargo's output directory").join("joyride-stackd");
    assert!(
        path.is_file(),
        "{} is missing: build the daemon first with `cargo build -p stackd`",
        path.display()
    );
    path
}

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A directory of the test's own, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let path = std::env::temp_dir().join(unique("jrrun-"));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Scratch { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A network namespace with a unique name; every process in it is killed, and the namespace
/// deleted, on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("jrrun");
        let status =
            Command::new("ip").args(["netns", "add", &name]).status().expect("run ip netns add");
        assert!(status.success(), "cannot create network namespace {name}");
        let ns = Netns { name };
        ns.run_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a short set-up command in the namespace; it must succeed.
    pub fn run_ok(&self, argv: &[&str]) -> String {
        let out = self.command(argv[0]).args(&argv[1..]).output().expect("run ip netns exec");
        assert!(
            out.status.success(),
            "{argv:?} failed in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `work` on a thread that has joined the namespace (setns moves only the calling
    /// thread, so the test's own threads stay where they are).
    pub fn within<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let handle = File::open(format!("/run/netns/{}", self.name)).expect("open the namespace");
        std::thread::spawn(move || {
            // SAFETY: a descriptor of a network namespace we own; CLONE_NEWNET changes only this
            // thread's network namespace, which ends with the thread.
            let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            work()
        })
        .join()
        .expect("the thread in the namespace panicked")
    }

    /// Bytes that crossed `iface` in both directions, as the kernel counts them.
    pub fn link_bytes(&self, iface: &str) -> u64 {
        let stats = format!("/sys/class/net/{iface}/statistics");
        self.run_ok(&["cat", &format!("{stats}/rx_bytes"), &format!("{stats}/tx_bytes")])
            .split_whitespace()
            .map(|n| n.parse::<u64>().expect("a byte counter"))
            .sum()
    }

    /// Waits until something accepts TCP connections at `ip:port`; each probe is bounded, as a
    /// dropped SYN must not stall the wait.
    pub fn wait_tcp(&self, ip: &str, port: u16, timeout: Duration) -> bool {
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("an address");
        self.within(move || {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill has no memory effects; the pid is in our namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A background process whose stdout and stderr go to a log file; killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Proc {
        let out = File::create(&log).expect("create a log file");
        let err = out.try_clone().expect("dup the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Proc { name: name.to_owned(), child, log, status: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub fn tail(&self) -> String {
        let text = self.output();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("--- last lines of {} ---\n{}", self.name, lines[from..].join("\n"))
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait for a child");
        }
        self.status
    }

    /// The exit status; panics (with the log) if the process runs past `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("{} did not exit within {timeout:?}\n{}", self.name, self.tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a line of the log that contains `needle` and returns it; panics (with the log)
    /// on timeout or if the process exits first.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output().lines().find(|line| line.contains(needle)) {
                return line.to_owned();
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "{} exited ({status}) before printing {needle:?}\n{}",
                    self.name,
                    self.tail()
                );
            }
            if Instant::now() > deadline {
                panic!("{} printed no {needle:?} within {timeout:?}\n{}", self.name, self.tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A finished command's results.
#[derive(Debug)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Captured {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `command` to completion with `input` on its stdin, collecting its output; kills it and
/// panics if it runs past `timeout`.
pub fn run_capture(mut command: Command, input: &[u8], timeout: Duration) -> Captured {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input); // a command that ignores its input may close it early
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        let _ = out_tx.send(bytes);
    });
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        let _ = err_tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
            panic!("{command:?} did not finish within {timeout:?}; its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    // The pipes close when the last holder goes: a process the command left behind (a target
    // that outlived its supervisor) would keep them open, which is a failure of its own.
    let grace = Duration::from_secs(10);
    let stdout = out_rx.recv_timeout(grace).unwrap_or_else(|_| {
        panic!("{command:?} exited ({status}) but something it started still holds its stdout")
    });
    let stderr = err_rx.recv_timeout(grace).unwrap_or_else(|_| {
        panic!("{command:?} exited ({status}) but something it started still holds its stderr")
    });
    Captured { status, stdout, stderr }
}

/// A running joyride-stackd on a TAP in a namespace, killed on drop.
#[derive(Debug)]
pub struct Stackd {
    process: Proc,
    pub control: PathBuf,
}

impl Stackd {
    /// Starts the daemon with the acceptance checks' command line and waits until it serves:
    /// its control socket exists and the kernel's side of the TAP has its address.
    pub fn start(ns: &Netns, dir: &Path) -> Stackd {
        let control = dir.join("stackd.sock");
        let mut command = ns.command(stackd_bin());
        command
            .args(["--backend", "tap", "--iface", LINK])
            .args(["--addr", &format!("{STACK_IP}/24"), "--host-addr", &format!("{HOST_IP}/24")])
            .arg("--control")
            .arg(&control);
        let mut process = Proc::spawn("joyride-stackd", command, dir.join("stackd.log"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = control.exists()
                && ns.run_ok(&["ip", "-4", "addr", "show", "dev", LINK]).contains(HOST_IP);
            if up {
                break;
            }
            if let Some(status) = process.try_status() {
                panic!("joyride-stackd exited ({status}) during start-up\n{}", process.tail());
            }
            assert!(
                Instant::now() < deadline,
                "joyride-stackd did not come up within 10 s\n{}",
                process.tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The kernel must not own the stack's address, or traffic need not cross joyride.
        let kernel_addrs = ns.run_ok(&["ip", "-4", "addr", "show"]);
        assert!(
            !kernel_addrs.contains(&format!("inet {STACK_IP}/")),
            "{STACK_IP} is a kernel address in the namespace: joyride would not be in the path"
        );
        Stackd { process, control }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.control).expect("connect to stackd's control socket")
    }

    pub fn counter(&self, name: &str) -> u64 {
        let Reply::Counters { counters } =
            self.client().call(Operation::Counters).expect("stackd counters")
        else {
            panic!("stackd answered Counters with something else")
        };
        counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("stackd has no counter {name}"))
    }

    /// Every socket the daemon holds, as `joyride ss` would list them.
    pub fn socket_lines(&self) -> Vec<SocketLine> {
        let mut client = self.client();
        let mut lines = Vec::new();
        loop {
            match client.call(Operation::Sockets { offset: lines.len() }) {
                Ok(Reply::Sockets { total, sockets }) => {
                    let done = sockets.is_empty() || lines.len() + sockets.len() >= total;
                    lines.extend(sockets);
                    if done {
                        return lines;
                    }
                }
                other => panic!("stackd answered Sockets with {other:?}"),
            }
        }
    }

    pub fn tail(&self) -> String {
        self.process.tail()
    }

    /// Panics (with its log) if the daemon has died.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.process.try_status() {
            panic!("joyride-stackd died ({status})\n{}", self.process.tail());
        }
    }
}

/// A test's network: the host namespace (kernel-side peers, `jr0` at 10.77.0.1) and the
/// program's side at 10.77.0.2 — joyride-stackd's TAP, or natively a veth peer in a second
/// namespace.
#[derive(Debug)]
pub struct Net {
    pub mode: Mode,
    // Fields drop in this order: the daemon first, then the namespaces, then the files.
    stackd: Option<Stackd>,
    app_ns: Option<Netns>,
    pub host: Netns,
    pub dir: Scratch,
}

impl Net {
    pub fn new(mode: Mode) -> Net {
        let dir = Scratch::new();
        let host = Netns::new();
        let (stackd, app_ns) = match mode {
            Mode::Joyride => (Some(Stackd::start(&host, &dir.path)), None),
            Mode::Native => {
                let app = Netns::new();
                let cidr = |ip: &str| format!("{ip}/24");
                host.run_ok(&[
                    "ip", "link", "add", LINK, "type", "veth", "peer", "name", "app0", "netns",
                    &app.name,
                ]);
                host.run_ok(&["ip", "addr", "add", &cidr(HOST_IP), "dev", LINK]);
                host.run_ok(&["ip", "link", "set", LINK, "up"]);
                app.run_ok(&["ip", "addr", "add", &cidr(STACK_IP), "dev", "app0"]);
                app.run_ok(&["ip", "link", "set", "app0", "up"]);
                (None, Some(app))
            }
        };
        Net { mode, stackd, app_ns, host, dir }
    }

    /// The daemon (joyride mode only).
    pub fn stackd(&self) -> &Stackd {
        self.stackd.as_ref().expect("no joyride-stackd in a native run")
    }

    pub fn stackd_mut(&mut self) -> &mut Stackd {
        self.stackd.as_mut().expect("no joyride-stackd in a native run")
    }

    /// A kernel-side command, in the host namespace.
    pub fn host(&self, program: impl AsRef<OsStr>) -> Command {
        self.host.command(program)
    }

    /// The program under test: `joyride run --stackd SOCK -- ARGV`, or ARGV natively.
    /// `JOYRIDE_TEST_NO_FAST_PATH=1` adds `--no-fast-path` (the suite runs both ways in CI).
    pub fn app<S: AsRef<OsStr>>(&self, argv: &[S]) -> Command {
        match (&self.stackd, &self.app_ns) {
            (Some(stackd), _) => {
                let mut command = self.host.command(joyride_bin());
                command.args(["run", "--stackd"]).arg(&stackd.control);
                if std::env::var_os("JOYRIDE_TEST_NO_FAST_PATH").is_some_and(|value| value == "1") {
                    command.arg("--no-fast-path");
                }
                command.arg("--").args(argv);
                command
            }
            (None, Some(app)) => {
                let mut command = app.command(argv[0].as_ref());
                command.args(&argv[1..]);
                command
            }
            (None, None) => unreachable!("a Net has a daemon or an app namespace"),
        }
    }

    /// A command in the program's namespace, never under joyride (its loopback peers).
    pub fn app_side(&self, program: impl AsRef<OsStr>) -> Command {
        self.app_ns.as_ref().unwrap_or(&self.host).command(program)
    }

    /// The program's namespace, for [`Netns::wait_tcp`] on its loopback.
    pub fn app_netns(&self) -> &Netns {
        self.app_ns.as_ref().unwrap_or(&self.host)
    }

    /// Bytes that crossed the link, both directions.
    pub fn link_bytes(&self) -> u64 {
        self.host.link_bytes(LINK)
    }

    /// Panics unless at least `min` bytes crossed the link since `before`.
    pub fn assert_link_moved(&self, before: u64, min: u64, what: &str) {
        let moved = self.link_bytes() - before;
        assert!(
            moved >= min,
            "{what}: only {moved} bytes crossed {LINK} (expected >= {min}): the traffic did not \
             go through the stack"
        );
    }

    pub fn spawn_app<S: AsRef<OsStr>>(&self, name: &str, argv: &[S]) -> Proc {
        Proc::spawn(name, self.app(argv), self.dir.join(&format!("{name}.log")))
    }

    pub fn spawn(&self, name: &str, command: Command) -> Proc {
        Proc::spawn(name, command, self.dir.join(&format!("{name}.log")))
    }
}

/// `len` bytes of a deterministic xorshift stream: no two windows alike, so a misplaced
/// segment changes the digest.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_file(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `len` pseudo-random bytes to `path`; returns their SHA-256.
pub fn write_payload_file(path: &Path, len: usize, seed: u64) -> String {
    let bytes = payload(len, seed);
    std::fs::write(path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    sha256_hex(&bytes)
}

/// Compiles tests/programs/NAME.c into `dir` (statically linked if asked) and returns the
/// executable's path; panics with gcc's diagnostics on failure.
pub fn compile_c(name: &str, link_static: bool, dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/programs/{name}.c"));
    let out = dir.join(name);
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]);
    if link_static {
        gcc.arg("-static");
    }
    let result = gcc.arg("-o").arg(&out).arg(&source).output().expect("run gcc");
    assert!(
        result.status.success(),
        "gcc could not build {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How the programs run under joyride.
#[derive(Debug, Clone)]
pub enum Route {
    /// `--no-fast-path`: the trap path only.
    Trap,
    /// With the fast-path library preloaded.
    FastPath(PathBuf),
}

/// The fast-path library cargo built, if it did.
pub fn fast_path_library() -> PathBuf {
    let path =
        joyride_bin().parent().expect("cargo's output directory").join("libjoyride_fastpath.so");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build -p fast-path` (`cargo test` alone does \
         not put the library next to the joyride binary, and `joyride run` looks for it there)",
        path.display()
    );
    path
}

/// The ways to run a local-path test: the trap path and the fast path.
pub fn paths() -> Vec<Route> {
    vec![Route::Trap, Route::FastPath(fast_path_library())]
}

/// `argv` under its own `joyride run` (natively, in the program's namespace, for a control run).
pub fn app_on(net: &Net, path: &Route, argv: &[&str]) -> Command {
    if net.mode == Mode::Native {
        return net.app(argv);
    }
    let mut command = net.host.command(joyride_bin());
    command.args(["run", "--stackd"]).arg(&net.stackd().control);
    match path {
        Route::Trap => {
            command.arg("--no-fast-path");
        }
        Route::FastPath(library) => {
            command.env("JOYRIDE_FASTPATH_LIB", library);
        }
    }
    command.arg("--").args(argv);
    command
}

/// A command running the OCI runtime `name` ("runc", "crun"). crun 1.8.1 refuses these
/// machines' hybrid cgroup layout, so it runs in a private mount namespace with cgroup2 on
/// /sys/fs/cgroup (as acceptance/oci-runc does), and bundles for it carry no `linux.resources`.
pub fn runtime_command(name: &str) -> Command {
    if name != "crun" {
        return Command::new(name);
    }
    let mut command = Command::new("unshare");
    command.args([
        "-m",
        "sh",
        "-c",
        "mount -t cgroup2 none /sys/fs/cgroup && exec \"$@\"",
        "rt",
        "crun",
    ]);
    command
}
