//! Tests of the DPDK backend.
//!
//! EAL initialises once per process, so no test initialises it in the test process itself:
//! each DPDK scenario runs in a child — this test binary again, filtered to the one test, with
//! [`CHILD`] set — entered into a network namespace of the test's own (`ip netns exec`), with
//! its own `--file-prefix`. The tests in this process only check what fails before EAL starts.
//!
//! The scenarios need root (network namespaces, TAP devices, DPDK's memory); without it, or
//! when EAL cannot initialise here, they say why on stderr and pass vacuously.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fbsd_tcp::wire::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};

use super::*;
use crate::backend::testnet::{
    arp_request, kernel_cidr, privileged, send, Engine, NetNs, ENGINE_IP,
};
use crate::backend::OpenError;

/// Set in a child: the name of the test whose DPDK scenario it runs.
const CHILD: &str = "JOYRIDE_DPDK_TEST_CHILD";
/// The child's EAL arguments.
const CHILD_ARGS: &str = "JOYRIDE_DPDK_TEST_ARGS";
/// The child's scenario parameter (the TAP's kernel-side name, the memif role).
const CHILD_PARAM: &str = "JOYRIDE_DPDK_TEST_PARAM";
/// What a child prints when EAL cannot initialise here.
const SKIP_MARK: &str = "DPDK-TEST-SKIPPED:";

/// How long a child may run before it is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

fn dpdk_config(port: &str, dpdk_args: &str) -> BackendConfig {
    BackendConfig { dpdk_args: dpdk_args.to_owned(), ..BackendConfig::new(BackendKind::Dpdk, port) }
}

mod before_eal {
    //! What is refused before EAL is touched (so these run in the test process).
    use super::*;

    #[test]
    fn eal_arguments_are_the_program_name_and_the_words_of_dpdk_args() {
        assert_eq!(eal_args("").unwrap(), ["joyride-stackd"]);
        assert_eq!(
            eal_args("  -l 0\t--no-huge  --vdev=net_tap0,iface=jr0\n").unwrap(),
            ["joyride-stackd", "-l", "0", "--no-huge", "--vdev=net_tap0,iface=jr0"]
        );
        for help in ["-h", "--help"] {
            let err = eal_args(&format!("-l 0 {help}")).unwrap_err();
            assert!(err.starts_with(&format!("{help} in the DPDK arguments would make EAL exit")));
        }
    }

    #[test]
    fn buffers_hold_a_frame_and_a_nics_extras_in_whole_kibibytes() {
        assert_eq!(buffer_len(68), 2048);
        assert_eq!(buffer_len(1500), 2048);
        // 2026 + 14 + 8 > 2048.
        assert_eq!(buffer_len(2027), 3072);
        assert_eq!(buffer_len(9000), 9216);
    }

    #[test]
    fn the_largest_mtu_counts_the_drivers_overhead() {
        let info = |max_mtu, max_rx_pktlen| sys::PortInfo {
            driver: "x".into(),
            min_mtu: 68,
            max_mtu,
            max_rx_pktlen,
        };
        // A driver that reports only its frame limit (net_tap: 1522 with a VLAN tag).
        assert_eq!(info(u16::MAX, 1522).largest_mtu(), 1504);
        // One that reports both: the difference is its overhead.
        assert_eq!(info(9000, 9026).largest_mtu(), 9000);
        assert_eq!(info(1500, 1518).largest_mtu(), 1500);
        assert_eq!(info(u16::MAX, 10).largest_mtu(), 0);
    }

    #[test]
    fn bad_configurations_are_refused_before_eal_starts() {
        // A PCI address is a fine DPDK port name (no kernel interface-name rules).
        assert!(dpdk_config("0000:00:04.0", "").validate().is_ok());
        let config = BackendConfig { mtu: 9001, ..dpdk_config("0", "") };
        assert_eq!(
            DpdkBackend::open(&config).unwrap_err().to_string(),
            "dpdk backend: MTU 9001 is outside 68..=9000"
        );
        let err = DpdkBackend::open(&dpdk_config("0", "--no-huge --help")).unwrap_err();
        assert!(matches!(err, OpenError::InvalidConfig { .. }), "{err:?}");
        let err = DpdkBackend::open(&dpdk_config("0", "--vdev=net_tap0,iface=a\0b")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dpdk backend: DPDK argument \"--vdev=net_tap0,iface=a\\0b\" contains a NUL byte"
        );
        let config = BackendConfig { host_addr: Some(kernel_cidr()), ..dpdk_config("0", "") };
        assert!(DpdkBackend::open(&config).unwrap_err().to_string().contains("host_addr is for"));
        let multicast = EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]);
        let config = BackendConfig { mac: Some(multicast), ..dpdk_config("0", "") };
        assert!(DpdkBackend::open(&config).unwrap_err().to_string().contains("not a unicast"));
    }
}

/// The name of the scenario this process runs as a child, if it is one.
fn child_scenario() -> Option<String> {
    std::env::var(CHILD).ok()
}

fn child_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the parent sets {name}"))
}

/// Opens the backend in a child, or prints why EAL cannot run here (the parent then skips).
fn open_or_skip(config: &BackendConfig) -> Option<DpdkBackend> {
    match DpdkBackend::open(config) {
        Ok(backend) => Some(backend),
        Err(OpenError::System { step, source, .. }) if step.contains("rte_eal_init") => {
            println!("{SKIP_MARK} EAL cannot initialise here: {source}");
            None
        }
        Err(e) => panic!("open the DPDK backend: {e}"),
    }
}

/// A unique `--file-prefix`; its runtime directory is removed on drop.
struct FilePrefix(String);

impl FilePrefix {
    fn new() -> FilePrefix {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        FilePrefix(format!("jrtest{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl Drop for FilePrefix {
    fn drop(&mut self) {
        // Where EAL keeps a process's runtime files, as root.
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.0));
    }
}

/// A directory of our own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("jr-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts this test binary again, running only `test`, inside `ns`.
fn spawn_child(test: &str, ns: &NetNs, args: &str, param: &str) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .env(CHILD_ARGS, args)
        .env(CHILD_PARAM, param)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child")
}

/// Waits for a child (killing it after [`CHILD_TIMEOUT`]) and checks that its one test
/// passed. False if it skipped because EAL cannot initialise here (the reason is printed).
fn child_passed(mut child: Child, what: &str) -> bool {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while child.try_wait().expect("wait for the child").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect the child's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    if let Some(line) = stdout.lines().find(|line| line.contains(SKIP_MARK)) {
        eprintln!("skipping {what}: {}", line.trim_start_matches(SKIP_MARK).trim());
        return false;
    }
    true
}

/// The scripted engine of testnet sleeps on `poll_fd` between receives; a polled backend has
/// none, so this wrapper offers an always-readable descriptor (/dev/null) and paces empty
/// polls itself, a millisecond apart.
#[derive(Debug)]
struct Paced {
    inner: DpdkBackend,
    always_readable: File,
}

impl Paced {
    fn new(inner: DpdkBackend) -> Paced {
        Paced { inner, always_readable: File::open("/dev/null").expect("open /dev/null") }
    }
}

impl Backend for Paced {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn mac(&self) -> EthernetAddress {
        self.inner.mac()
    }
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn link_up(&self) -> bool {
        self.inner.link_up()
    }
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.always_readable.as_fd())
    }
    fn receive(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BackendError> {
        let got = self.inner.receive(max, deliver)?;
        if got == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(got)
    }
    fn transmit(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError> {
        self.inner.transmit(build)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn tx_blocked(&self) -> bool {
        self.inner.tx_blocked()
    }
    fn handle_poll_error(&mut self) -> Result<(), BackendError> {
        self.inner.handle_poll_error()
    }
    fn stats(&self) -> BackendStats {
        self.inner.stats()
    }
}

/// `ip ARGS` in the child's namespace, which must succeed; its stdout.
fn ip(args: &str) -> String {
    let out = Command::new("ip").args(args.split_whitespace()).output().expect("run ip");
    assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

mod net_tap {
    //! A net_tap port, whose far side is a TAP interface of the kernel in the namespace.
    use super::*;

    const TEST: &str =
        "backend::dpdk::tests::net_tap::arp_ping_backpressure_and_one_eal_per_process";

    #[test]
    fn arp_ping_backpressure_and_one_eal_per_process() {
        if child_scenario().as_deref() == Some(TEST) {
            return child(&child_env(CHILD_ARGS), &child_env(CHILD_PARAM));
        }
        if !privileged("dpdk net_tap") {
            return;
        }
        let ns = NetNs::new("dpdktap");
        ns.exec("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1");
        ns.exec("sysctl -q -w net.ipv6.conf.default.disable_ipv6=1");
        let prefix = FilePrefix::new();
        let iface = "jrdtap0";
        let args = format!(
            "-l 0 --no-huge --no-pci --file-prefix={} --vdev=net_tap0,iface={iface}",
            prefix.0
        );
        if !child_passed(spawn_child(TEST, &ns, &args, iface), "dpdk net_tap") {
            return;
        }
        let (exists, _) = ns.ip_output(&format!("link show dev {iface}"));
        assert!(!exists, "closing the port removed the kernel side");
    }

    fn child(args: &str, iface: &str) {
        let config = BackendConfig { mtu: 1400, ..dpdk_config("net_tap0", args) };
        let Some(backend) = open_or_skip(&config) else { return };
        assert_eq!((backend.name(), backend.driver(), backend.port()), ("net_tap0", "net_tap", 0));
        assert_eq!(backend.mtu(), 1400);
        assert!(backend.mac().is_unicast() && backend.mac().0 != [0; 6]);
        assert!(backend.link_up(), "starting the port brings its kernel side up");
        assert!(backend.poll_fd().is_none());
        let link = ip(&format!("-o link show dev {iface}"));
        assert!(link.contains("mtu 1400") && link.contains(",UP"), "net_tap set its MTU: {link}");

        // A second backend in this process is refused: EAL is taken.
        let err = DpdkBackend::open(&config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dpdk backend on net_tap0: initialise DPDK's EAL: DPDK's EAL is already \
             initialised by another DPDK backend of this process; EAL initialises once per \
             process, so a process drives one DPDK backend"
        );

        // Someone must give the kernel side its address: here, the test.
        let kernel = kernel_cidr();
        ip(&format!("addr add {}/{} dev {iface}", kernel.addr, kernel.prefix_len));
        let mut backend = Paced::new(backend);
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel_mac = engine.arp_then_ping(&mut backend, kernel.addr);
        let link = ip(&format!("-o link show dev {iface}"));
        assert!(link.contains(&format!("link/ether {kernel_mac}")), "{link} vs {kernel_mac}");
        // net_tap gives its kernel side the port's MAC: both ends of this link share one, which
        // neither the kernel nor the engine minds.
        assert_eq!(kernel_mac, engine.mac);
        let stats = backend.stats();
        assert_eq!((stats.tx_frames, stats.tx_bytes), (2, 42 + 98), "{stats:?}");
        assert!(stats.rx_frames >= 2, "{stats:?}");
        assert_eq!((stats.rx_oversized, stats.tx_dropped), (0, 0), "{stats:?}");

        let mut lent = 0;
        backend
            .transmit(&mut |buf| {
                lent = buf.len();
                None
            })
            .unwrap();
        assert_eq!(lent, 1414, "a transmit buffer is exactly mtu + 14 bytes");
        assert!(matches!(
            backend.transmit(&mut |_| Some(1415)).unwrap_err(),
            BackendError::FrameTooLong { len: 1415, capacity: 1414, .. }
        ));

        backpressure(&mut backend.inner, iface, engine);
        assert!(backend.handle_poll_error().is_ok());

        // After the backend is gone, EAL cannot come back in this process.
        drop(backend);
        let err = DpdkBackend::open(&config).unwrap_err();
        assert!(err.to_string().contains("cleaned up earlier in this process"), "{err}");
    }

    /// With its kernel side down, net_tap refuses frames: they stay staged, `transmit` stops
    /// asking for more once a burst waits, and they leave in order when the link is back.
    fn backpressure(backend: &mut DpdkBackend, iface: &str, engine: Engine) {
        ip(&format!("link set {iface} down"));
        assert!(!backend.link_up());
        let before = backend.stats().tx_frames;
        let frames: Vec<Vec<u8>> = (0..40u8)
            .map(|i| arp_request(engine.mac, engine.ip, Ipv4Addr::new(10, 77, 0, 100 + i)))
            .collect();
        let mut next = frames.iter();
        let mut asked = 0;
        {
            let mut build = |buf: &mut [u8]| {
                asked += 1;
                let frame = next.next()?;
                buf[..frame.len()].copy_from_slice(frame);
                Some(frame.len())
            };
            let accepted = backend.transmit(&mut build).unwrap();
            assert_eq!(accepted, TX_BURST);
            assert!(backend.tx_blocked());
            backend.flush().unwrap();
            assert!(backend.tx_blocked(), "still down");
            let accepted = backend.transmit(&mut build).unwrap();
            assert_eq!(accepted, 0, "nothing is built while a whole burst waits");
        }
        assert_eq!(asked, TX_BURST, "no frame was built without room for it");

        ip(&format!("link set {iface} up"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !backend.link_up() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        backend.flush().unwrap();
        assert!(!backend.tx_blocked());
        let mut rest = frames[TX_BURST..].iter();
        let accepted = backend
            .transmit(&mut |buf| {
                let frame = rest.next()?;
                buf[..frame.len()].copy_from_slice(frame);
                Some(frame.len())
            })
            .unwrap();
        backend.flush().unwrap();
        assert_eq!(accepted, 40 - TX_BURST);
        assert!(!backend.tx_blocked());
        assert_eq!(backend.stats().tx_frames - before, 40);
        // The kernel got them all: it answers the ones for its own address... none here, but
        // one more request for it proves the path is clear again.
        send(backend, &[arp_request(engine.mac, engine.ip, kernel_cidr().addr)]);
    }
}

mod net_memif {
    //! Two processes joined by net_memif over a socket path (`socket-abstract=no`): each in a
    //! network namespace of its own, which an abstract socket could not cross.
    use super::*;

    const TEST: &str = "backend::dpdk::tests::net_memif::two_processes_exchange_frames";

    /// An IEEE 802 local experimental EtherType for the test's frames.
    const ETHERTYPE: u16 = 0x88b5;
    const FRAMES: u8 = 16;
    const BYE: &[u8] = b"bye";

    #[test]
    fn two_processes_exchange_frames() {
        if child_scenario().as_deref() == Some(TEST) {
            return child(&child_env(CHILD_ARGS), &child_env(CHILD_PARAM));
        }
        if !privileged("dpdk net_memif") {
            return;
        }
        let dir = TempDir::new("memif");
        let socket = dir.0.join("memif.sock");
        let (server_ns, client_ns) = (NetNs::new("memifs"), NetNs::new("memifc"));
        let (server_prefix, client_prefix) = (FilePrefix::new(), FilePrefix::new());
        let args = |role: &str, lcore: u32, prefix: &FilePrefix| {
            format!(
                "-l {lcore} --no-huge --no-pci --file-prefix={} \
                 --vdev=net_memif0,role={role},socket={},socket-abstract=no",
                prefix.0,
                socket.display()
            )
        };
        let server = spawn_child(TEST, &server_ns, &args("server", 0, &server_prefix), "server");
        // The client connects when it starts: wait for the server's socket.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !socket.exists() {
            // The server failed or skipped; its outcome says which.
            if child_passed(server, "dpdk net_memif server") {
                panic!("the memif server never created {}", socket.display());
            }
            return;
        }
        let client = spawn_child(TEST, &client_ns, &args("client", 1, &client_prefix), "client");
        let client_ran = child_passed(client, "dpdk net_memif client");
        let server_ran = child_passed(server, "dpdk net_memif server");
        assert_eq!(client_ran, server_ran, "both sides ran, or neither");
    }

    fn child(args: &str, role: &str) {
        let Some(mut backend) = open_or_skip(&dpdk_config("net_memif0", args)) else { return };
        assert_eq!(backend.driver(), "net_memif");
        await_link(&backend);
        if role == "server" {
            reflect(&mut backend);
        } else {
            exchange(&mut backend);
        }
    }

    fn await_link(backend: &DpdkBackend) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !backend.link_up() {
            assert!(Instant::now() < deadline, "the memif peers connect within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn frame(src: EthernetAddress, dst: EthernetAddress, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0; 14 + payload.len()];
        let repr =
            EthernetRepr { src_addr: src, dst_addr: dst, ethertype: EtherType::Unknown(ETHERTYPE) };
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        repr.emit(&mut eth);
        eth.payload_mut().copy_from_slice(payload);
        frame
    }

    /// The server: sends every frame back to its sender until "bye".
    fn reflect(backend: &mut DpdkBackend) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let me = backend.mac();
        let mut reflected = 0;
        loop {
            let mut replies = Vec::new();
            let mut bye = false;
            backend
                .receive(64, &mut |f| {
                    let Ok(eth) = EthernetFrame::new_checked(f) else { return };
                    if eth.ethertype() != EtherType::Unknown(ETHERTYPE) {
                        return;
                    }
                    bye |= eth.payload() == BYE;
                    replies.push(frame(me, eth.src_addr(), eth.payload()));
                })
                .unwrap();
            if bye {
                break;
            }
            reflected += replies.len();
            if !replies.is_empty() {
                send(backend, &replies);
            }
            assert!(Instant::now() < deadline, "the client says bye within 20 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(reflected, usize::from(FRAMES));
    }

    /// The client: sends numbered frames, checks each comes back intact, then says bye.
    fn exchange(backend: &mut DpdkBackend) {
        let me = backend.mac();
        let payload = |i: u8| -> Vec<u8> { (0..100).map(|b: u8| b.wrapping_mul(i)).collect() };
        let sent: Vec<Vec<u8>> =
            (1..=FRAMES).map(|i| frame(me, EthernetAddress::BROADCAST, &payload(i))).collect();
        send(backend, &sent);
        let mut echoes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while echoes.len() < usize::from(FRAMES) {
            assert!(Instant::now() < deadline, "the echoes come back within 10 s");
            backend
                .receive(64, &mut |f| {
                    let Ok(eth) = EthernetFrame::new_checked(f) else { return };
                    if eth.ethertype() == EtherType::Unknown(ETHERTYPE) {
                        assert_eq!(eth.dst_addr(), me, "an echo is addressed to its sender");
                        assert_ne!(eth.src_addr(), me);
                        echoes.push(eth.payload().to_vec());
                    }
                })
                .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let expected: Vec<Vec<u8>> = (1..=FRAMES).map(payload).collect();
        assert_eq!(echoes, expected, "every frame came back, in order, intact");
        send(backend, &[frame(me, EthernetAddress::BROADCAST, BYE)]);
        // Give the frame time to leave before the port closes.
        std::thread::sleep(Duration::from_millis(200));
        let stats = backend.stats();
        assert_eq!(stats.tx_frames, u64::from(FRAMES) + 1);
        assert_eq!(stats.rx_frames, u64::from(FRAMES), "{stats:?}");
    }
}

mod refusals {
    //! What is refused once EAL runs: each case needs a process of its own, since a refused
    //! open cleans EAL up for good.
    use super::*;

    const TEST: &str = "backend::dpdk::tests::refusals::each_refusal_says_what_to_fix";

    #[test]
    fn each_refusal_says_what_to_fix() {
        if child_scenario().as_deref() == Some(TEST) {
            return child(&child_env(CHILD_ARGS), &child_env(CHILD_PARAM));
        }
        if !privileged("dpdk refusals") {
            return;
        }
        let ns = NetNs::new("dpdkno");
        for case in ["port", "mtu", "args"] {
            let prefix = FilePrefix::new();
            let device = if case == "args" { "--no-such-eal-option" } else { "--vdev=net_tap0" };
            let args = format!("-l 0 --no-huge --no-pci --file-prefix={} {device}", prefix.0);
            if !child_passed(spawn_child(TEST, &ns, &args, case), &format!("dpdk refusal {case}")) {
                return;
            }
        }
    }

    /// The error opening `config` gives, or `None` (skip) if EAL cannot run here.
    fn refused(config: &BackendConfig) -> Option<OpenError> {
        match DpdkBackend::open(config) {
            Ok(backend) => panic!("{backend:?} opened"),
            Err(OpenError::System { step, source, .. }) if step.contains("rte_eal_init") => {
                println!("{SKIP_MARK} EAL cannot initialise here: {source}");
                None
            }
            Err(e) => Some(e),
        }
    }

    fn child(args: &str, case: &str) {
        match case {
            "port" => {
                let Some(err) = refused(&dpdk_config("jr0", args)) else { return };
                assert_eq!(
                    err.to_string(),
                    "dpdk backend: no DPDK port \"jr0\"; the ports are 0 (net_tap0)"
                );
            }
            "mtu" => {
                let config = BackendConfig { mtu: 9000, ..dpdk_config("0", args) };
                let Some(err) = refused(&config) else { return };
                assert_eq!(
                    err.to_string(),
                    "dpdk backend: MTU 9000 is outside the 46..=1504 that port 0 (net_tap0, \
                     driver net_tap) takes"
                );
            }
            "args" => {
                let config = dpdk_config("0", args);
                let err = DpdkBackend::open(&config).unwrap_err();
                assert!(
                    matches!(&err, OpenError::System { step, .. } if step.contains("rte_eal_init")),
                    "{err:?}"
                );
                let text = err.to_string();
                assert!(
                    text.starts_with("dpdk backend on 0: initialise DPDK's EAL (rte_eal_init): ")
                        && text.contains(&format!("the EAL arguments were {:?}", config.dpdk_args)),
                    "{text}"
                );
                assert_eq!(
                    DpdkBackend::open(&config).unwrap_err().to_string(),
                    "dpdk backend on 0: initialise DPDK's EAL: DPDK's EAL failed to initialise \
                     earlier in this process and cannot be retried: restart the process"
                );
            }
            _ => unreachable!("unknown case {case}"),
        }
    }
}

mod net_af_packet {
    //! A net_af_packet port on one end of a veth pair, the kernel on the other.
    use super::*;

    const TEST: &str = "backend::dpdk::tests::net_af_packet::arp_and_ping_the_kernel_across_a_veth";

    #[test]
    fn arp_and_ping_the_kernel_across_a_veth() {
        if child_scenario().as_deref() == Some(TEST) {
            return child(&child_env(CHILD_ARGS), &child_env(CHILD_PARAM));
        }
        if !privileged("dpdk net_af_packet") {
            return;
        }
        let ns = NetNs::new("dpdkpkt");
        ns.veth_pair("veth0", "veth1");
        let prefix = FilePrefix::new();
        let args = format!(
            "-l 0 --no-huge --no-pci --file-prefix={} --vdev=net_af_packet0,iface=veth0",
            prefix.0
        );
        child_passed(spawn_child(TEST, &ns, &args, "veth0"), "dpdk net_af_packet");
    }

    fn child(args: &str, iface: &str) {
        let Some(backend) = open_or_skip(&dpdk_config("net_af_packet0", args)) else { return };
        assert_eq!(backend.driver(), "net_af_packet");
        let link = ip(&format!("-o link show dev {iface}"));
        assert!(link.contains(&format!("link/ether {}", backend.mac())), "the veth's MAC: {link}");
        let mut backend = Paced::new(backend);
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel_mac = engine.arp_then_ping(&mut backend, kernel_cidr().addr);
        assert_ne!(kernel_mac, engine.mac);
        let stats = backend.stats();
        assert_eq!((stats.tx_frames, stats.tx_bytes), (2, 42 + 98), "{stats:?}");
    }
}
