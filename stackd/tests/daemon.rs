//! joyride-stackd as a user runs it: the binary on a TAP in a network namespace of the test's
//! own, pinged by the kernel, asked over its control socket, fed garbage, and stopped with
//! SIGTERM. Needs root (CAP_NET_ADMIN); skipped with a message otherwise.

use std::path::Path;
use std::process::Command;

use stackd::client::{Client, ClientError};
use stackd::proto::{Operation, Reply};

mod common;

use common::{counter, is_root, Daemon, Netns, STACKD};

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
