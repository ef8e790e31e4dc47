//! Helpers the daemon's end-to-end tests share: a network namespace of the test's own, the
//! daemon started in it, waiting with a deadline, counters.

#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use stackd::client::Client;
use stackd::proto::{Operation, Reply};

pub const STACKD: &str = env!("CARGO_BIN_EXE_joyride-stackd");

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace with a unique name, deleted on drop (processes in it are killed first).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("jrstackd{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let status =
            Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(status.success(), "cannot create namespace {name}");
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    pub fn run(&self, argv: &[&str]) -> std::process::Output {
        self.command(argv[0]).args(&argv[1..]).output().expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A running daemon, killed on drop if the test did not stop it.
pub struct Daemon {
    pub child: Child,
    pub control: PathBuf,
    pub dir: PathBuf,
}

impl Daemon {
    pub fn start(ns: &Netns, iface: &str, extra: &[&str]) -> Daemon {
        let dir =
            std::env::temp_dir().join(format!("jrstackd-test-{}-{iface}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let control = dir.join("stackd.sock");
        let child = ns
            .command(STACKD)
            .args(["--iface", iface, "--control"])
            .arg(&control)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start joyride-stackd");
        let daemon = Daemon { child, control, dir };
        wait_for(|| daemon.control.exists(), "the control socket");
        daemon
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.control).expect("connect to the control socket")
    }

    /// SIGTERM, then the exit status and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "joyride-stackd did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        use std::io::Read;
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        (status, stderr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn counter(client: &mut Client, name: &str) -> u64 {
    let Reply::Counters { counters } = client.call(Operation::Counters).unwrap() else {
        panic!("not counters")
    };
    counters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}
