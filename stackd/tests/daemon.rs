//! joyride-stackd as a user runs it: the binary on a TAP in a network namespace of the test's
//! own, pinged by the kernel, asked over its control socket, fed garbage, and stopped with
//! SIGTERM. Needs root (CAP_NET_ADMIN); skipped with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use stackd::client::{Client, ClientError};
use stackd::proto::{Operation, Reply};

const STACKD: &str = env!("CARGO_BIN_EXE_joyride-stackd");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace with a unique name, deleted on drop (processes in it are killed first).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
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

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    fn run(&self, argv: &[&str]) -> std::process::Output {
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
struct Daemon {
    child: Child,
    control: PathBuf,
    dir: PathBuf,
}

impl Daemon {
    fn start(ns: &Netns, iface: &str, extra: &[&str]) -> Daemon {
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

    fn client(&self) -> Client {
        Client::connect(&self.control).expect("connect to the control socket")
    }

    /// SIGTERM, then the exit status and stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
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

fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn counter(client: &mut Client, name: &str) -> u64 {
    let Reply::Counters { counters } = client.call(Operation::Counters).unwrap() else {
        panic!("not counters")
    };
    counters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

#[test]
fn serves_ping_and_control_requests_then_stops_cleanly() {
    if !is_root() {
        eprintln!("SKIPPED: joyride-stackd needs CAP_NET_ADMIN for its TAP; run the tests as root");
        return;
    }
    let ns = Netns::new();
    let pcap_dir = std::env::temp_dir().join(format!("jrstackd-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&pcap_dir).unwrap();
    let pcap = pcap_dir.join("capture.pcap");
    let daemon = Daemon::start(&ns, "jrt0", &["--pcap", pcap.to_str().unwrap()]);

    let mode = std::fs::metadata(&daemon.control)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    assert_eq!(mode.unwrap() & 0o777, 0o660, "control socket mode");
    let addresses =
        String::from_utf8(ns.run(&["ip", "-4", "addr", "show", "jrt0"]).stdout).unwrap();
    assert!(addresses.contains("10.77.0.1/24"), "kernel side of the TAP: {addresses}");
    let all = String::from_utf8(ns.run(&["ip", "-4", "addr"]).stdout).unwrap();
    assert!(!all.contains("inet 10.77.0.2/"), "the stack's address must not be a kernel address");

    let ping = ns.run(&["ping", "-c", "5", "-i", "0.05", "-W", "1", "10.77.0.2"]);
    let ping_out = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.status.success() && ping_out.contains(" 0% packet loss"), "{ping_out}");
    let neighbours =
        String::from_utf8(ns.run(&["ip", "neigh", "show", "10.77.0.2"]).stdout).unwrap();
    assert!(
        neighbours.contains("lladdr 02:"),
        "the kernel resolved the stack through ARP: {neighbours}"
    );

    let mut client = daemon.client();
    match client.call(Operation::Hello { client: "daemon test".into() }).unwrap() {
        Reply::Hello { version, interface, pid } => {
            assert_eq!((version, interface.as_str()), (1, "jrt0 10.77.0.2/24"));
            assert!(pid > 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(counter(&mut client, "icmp_rx"), 5);
    assert_eq!(counter(&mut client, "icmp_tx"), 5);
    assert!(counter(&mut client, "arp_rx") >= 1);
    assert_eq!(
        client.call(Operation::Sockets { offset: 0 }).unwrap(),
        Reply::Sockets { total: 0, sockets: vec![] }
    );

    // Garbage gets an error and the connection stays usable; a vanished client costs nothing.
    client.send_raw(b"\x00\x01garbage{{").unwrap();
    let answer = String::from_utf8(client.receive_raw().unwrap()).unwrap();
    assert!(answer.contains("bad-request"), "{answer}");
    client.send_raw(br#"{"version":99,"id":4,"op":{"op":"counters"}}"#).unwrap();
    let answer = String::from_utf8(client.receive_raw().unwrap()).unwrap();
    assert!(answer.contains("unsupported-version") && answer.contains("\"id\":4"), "{answer}");
    drop(Client::connect(&daemon.control).unwrap());
    let mut vanishing = Client::connect(&daemon.control).unwrap();
    vanishing.send_raw(br#"{"version":1,"id":1,"op":{"op":"counters"}}"#).unwrap();
    drop(vanishing);
    assert!(
        matches!(client.call(Operation::Counters), Ok(Reply::Counters { .. })),
        "daemon still serves"
    );

    // A second daemon on the same control socket is refused with a clear message.
    let second = ns
        .command(STACKD)
        .args(["--iface", "jrt1", "--control"])
        .arg(&daemon.control)
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && message.contains("another joyride-stackd is running"),
        "{message}"
    );

    let control = daemon.control.clone();
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(!control.exists(), "control socket unlinked");
    let links = String::from_utf8(ns.run(&["ip", "link"]).stdout).unwrap();
    assert!(!links.contains("jrt0"), "TAP removed: {links}");
    assert!(matches!(Client::connect(&control), Err(ClientError::Connect { .. })));

    let capture = std::fs::read(&pcap).unwrap();
    assert_eq!(&capture[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    if Command::new("tcpdump").arg("--version").output().is_ok() {
        let out = Command::new("tcpdump").args(["-nn", "-r"]).arg(&pcap).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.matches("ICMP echo reply").count(), 5, "{text}");
    } else {
        eprintln!("tcpdump not installed: the capture's contents were not decoded");
    }
    std::fs::remove_dir_all(pcap_dir).unwrap();
}

#[test]
fn start_up_failures_say_what_to_do() {
    let run = |args: &[&str]| {
        let out = Command::new(STACKD).args(args).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let tmp = std::env::temp_dir().join(format!("jrstackd-fail-{}", std::process::id()));
    let control = tmp.join("s.sock");
    let control = control.to_str().unwrap();
    let message = run(&["--backend", "dpdk", "--iface", "net_tap0", "--control", control]);
    assert!(
        message.contains("rebuild with --features dpdk") || cfg!(feature = "dpdk"),
        "{message}"
    );
    let message = run(&["--mtu", "50"]);
    assert!(message.contains("invalid configuration") && message.contains("mtu"), "{message}");
    let message = run(&["--config", "/nonexistent/stackd.toml"]);
    assert!(message.contains("cannot read config file /nonexistent/stackd.toml"), "{message}");
    let message = run(&["--backend", "af-packet", "--iface", "jrnosuch0", "--control", control]);
    assert!(message.contains("jrnosuch0"), "{message}");
    let _ = std::fs::remove_dir_all(Path::new(&tmp));
}
