//! Two joyride-stackd processes on one shared-memory wire (`--backend shm`): each sees the
//! other's frames, a third is refused, and the region disappears with the last of them. No
//! kernel interface is involved, so nothing here needs root or a network namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stackd::client::Client;
use stackd::proto::{Operation, Reply};

mod common;

use common::{wait_for, STACKD};

/// A temporary directory for control sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("jr-shm-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running daemon, killed on drop if the test did not stop it.
struct Daemon {
    child: Child,
    control: PathBuf,
}

impl Daemon {
    fn start(wire: &str, addr: &str, control: PathBuf) -> Daemon {
        let child = Command::new(STACKD)
            .args(["--backend", "shm", "--iface", wire, "--addr", addr, "--control"])
            .arg(&control)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start joyride-stackd");
        let mut daemon = Daemon { child, control };
        wait_for(
            || {
                let exited = daemon.child.try_wait().unwrap();
                assert!(exited.is_none(), "joyride-stackd exited: {}", daemon.stderr());
                daemon.control.exists()
            },
            "the control socket",
        );
        daemon
    }

    fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = self.child.kill();
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }

    fn counter(&self, name: &str) -> u64 {
        let mut client = Client::connect(&self.control).expect("connect to the control socket");
        common::counter(&mut client, name)
    }

    /// SIGTERM; the exit status and stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "joyride-stackd did not stop within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.stderr())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_daemons_see_each_other_over_a_shared_memory_wire() {
    let dir = TempDir::new("two");
    let wire = format!("jr-it-wire-{}", std::process::id());
    let region = Path::new("/dev/shm").join(&wire);
    let a = Daemon::start(&wire, "10.78.0.1/24", dir.0.join("a.sock"));
    assert!(region.exists(), "the first daemon created the region");
    let b = Daemon::start(&wire, "10.78.0.2/24", dir.0.join("b.sock"));

    let mut client = Client::connect(&a.control).unwrap();
    match client.call(Operation::Hello { client: "shm test".into() }).unwrap() {
        Reply::Hello { interface, .. } => assert_eq!(interface, format!("{wire} 10.78.0.1/24")),
        other => panic!("{other:?}"),
    }
    // Each engine announces itself with a gratuitous ARP at start: b's reaches a at once, a's
    // waited in the ring until b attached.
    wait_for(|| a.counter("arp_rx") > 0 && b.counter("arp_rx") > 0, "each side's ARP");
    assert_eq!(a.counter("nic_rx_oversized") + b.counter("nic_rx_oversized"), 0);

    // A third instance on the same wire is refused, and says why.
    let third = Command::new(STACKD)
        .args(["--backend", "shm", "--iface", &wire, "--addr", "10.78.0.3/24", "--control"])
        .arg(dir.0.join("c.sock"))
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&third.stderr);
    assert!(!third.status.success() && message.contains("both sides attached"), "{message}");

    let (status, stderr) = a.stop();
    assert!(status.success(), "a: {status:?}: {stderr}");
    assert!(region.exists(), "b still uses the region");
    let (status, stderr) = b.stop();
    assert!(status.success(), "b: {status:?}: {stderr}");
    assert!(!region.exists(), "the last daemon removed the region");
    assert!(!Path::new(&format!("{}.bell-a", region.display())).exists());
    assert!(!Path::new(&format!("{}.bell-b", region.display())).exists());
}

#[test]
fn a_wire_with_another_mtu_is_refused() {
    let dir = TempDir::new("mtu");
    let wire = format!("jr-it-mtu-{}", std::process::id());
    let a = Daemon::start(&wire, "10.78.0.1/24", dir.0.join("a.sock"));
    let out = Command::new(STACKD)
        .args(["--backend", "shm", "--iface", &wire, "--mtu", "9000", "--addr", "10.78.0.2/24"])
        .arg("--control")
        .arg(dir.0.join("b.sock"))
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && message.contains("uses MTU 1500, this one 9000"), "{message}");
    let (status, stderr) = a.stop();
    assert!(status.success(), "{stderr}");
}
