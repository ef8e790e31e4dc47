//! Unmodified programs under `joyride run` (and `joyride audit`), against the kernel's TCP/IP
//! on the far side of joyride-stackd's TAP: static and dynamic servers and clients, a C program
//! that walks through the socket calls' semantics, fork and thread servers, UDP, exit status and
//! signals, the supervisor's death, exec, and the kernel fallback. Content is checked by SHA-256,
//! errors by their exact errno.
//!
//! Each test has its own network namespace (10.77.0.1 on the kernel side of `jr0`, 10.77.0.2 on
//! the stack) and its own daemon, so the tests run in parallel. They need root, and skip (saying
//! why) without it or without a program they run (busybox-static, curl, python3, gcc). The daemon
//! comes from another package: `cargo build -p stackd` first.
//!
//! `JOYRIDE_TEST_NATIVE=1` runs the same tests with the programs on the kernel's stack (a veth
//! pair between two namespaces instead of the TAP) — the control run that shows a failure under
//! joyride is joyride's. Tests of joyride-only behaviour skip in it.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

mod common;

use common::{
    compile_c, eventually, joyride_bin, run_capture, sha256_hex, skip, write_payload_file, Mode,
    Net, Netns, Proc, Scratch, Tool, BUSYBOX, HOST_IP, STACK_IP,
};

// A guard, not a timing: a test in parallel with the 1,000-thread one can wait seconds for a
// python start (one CI run took over 15 s).
const START: Duration = Duration::from_secs(60);
const TRANSFER: Duration = Duration::from_secs(90);
const SHORT: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;

/// The exit status as a shell reports it: the code, or 128 + the signal that ended the process.
fn shell_status(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|signal| 128 + signal)).unwrap_or(-1)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Waits until `server` accepts on `ip:port` (probed from the host namespace).
fn wait_serving(net: &Net, server: &mut Proc, ip: &str, port: u16) {
    if !net.host.wait_tcp(ip, port, START) {
        panic!("{} never accepted on {ip}:{port}\n{}", server.name, server.tail());
    }
    if let Some(status) = server.try_status() {
        panic!("{} exited ({status}) right after it started\n{}", server.name, server.tail());
    }
}

/// A python http.server on the kernel side, at 10.77.0.1:8000, serving `www`.
fn kernel_http_server(net: &Net, www: &Path) -> Proc {
    let mut command = net.host("python3");
    command.args(["-m", "http.server", "8000", "--bind", HOST_IP]).current_dir(www);
    let mut server = net.spawn("kernel-http-server", command);
    if !net.host.wait_tcp(HOST_IP, 8000, START) {
        panic!("the kernel-side http.server did not start\n{}", server.tail());
    }
    assert!(server.try_status().is_none(), "{}", server.tail());
    server
}

/// A directory `www` in the test's scratch space with a file `name` of `len` bytes; returns
/// the directory and the file's SHA-256.
fn www_with(net: &Net, name: &str, len: usize, seed: u64) -> (std::path::PathBuf, String) {
    let www = net.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let digest = write_payload_file(&www.join(name), len, seed);
    (www, digest)
}

// ---- servers under joyride, kernel-side clients -------------------------------------------

#[test]
fn static_busybox_httpd_serves_32_mib_to_kernel_curl() {
    if skip("static busybox httpd", &[Tool::StaticBusybox, Tool::Curl]) {
        return;
    }
    let net = Net::new(Mode::from_env());
    let (www, want) = www_with(&net, "big", 32 * MIB, 0x32);
    let mut httpd =
        net.spawn_app("httpd", &[BUSYBOX, "httpd", "-f", "-p", "8080", "-h", path_str(&www)]);
    wait_serving(&net, &mut httpd, STACK_IP, 8080);

    let before = net.link_bytes();
    let mut curl = net.host("curl");
    curl.args(["-sSf", "--max-time", "80", &format!("http://{STACK_IP}:8080/big")]);
    let got = run_capture(curl, b"", TRANSFER);
    assert!(got.status.success(), "curl: {} {}\n{}", got.status, got.stderr, httpd.tail());
    assert_eq!(got.stdout.len(), 32 * MIB, "{}", httpd.tail());
    assert_eq!(sha256_hex(&got.stdout), want, "the 32 MiB file arrived altered");
    net.assert_link_moved(before, (32 * MIB) as u64, "httpd download");
}

#[test]
fn python_dual_stack_http_server_serves_ipv4_curl() {
    if skip("python dual-stack server", &[Tool::Python, Tool::Curl]) {
        return;
    }
    let net = Net::new(Mode::from_env());
    let (www, want) = www_with(&net, "f", 4 * MIB, 0x44);
    // No --bind: http.server binds [::] with IPV6_V6ONLY off, and must still serve IPv4.
    let mut command = net.app(&["python3", "-m", "http.server", "8081"]);
    command.current_dir(&www);
    let mut server = net.spawn("python-http-server", command);
    wait_serving(&net, &mut server, STACK_IP, 8081);

    let before = net.link_bytes();
    let mut curl = net.host("curl");
    curl.args(["-sSf", "--max-time", "60", &format!("http://{STACK_IP}:8081/f")]);
    let got = run_capture(curl, b"", TRANSFER);
    assert!(got.status.success(), "curl: {} {}\n{}", got.status, got.stderr, server.tail());
    assert_eq!(sha256_hex(&got.stdout), want, "the 4 MiB file arrived altered");
    net.assert_link_moved(before, (4 * MIB) as u64, "dual-stack download");
}

#[test]
fn unconnected_udp_echo_server_answers_2000_datagrams() {
    if skip("udp echo", &[Tool::Python]) {
        return;
    }
    let net = Net::new(Mode::from_env());
    let server_py = net.dir.join("udp_server.py");
    std::fs::write(
        &server_py,
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', 9999))\n\
         print('ready', flush=True)\n\
         while True:\n\
         \x20   d, a = s.recvfrom(65535)\n\
         \x20   s.sendto(d, a)\n",
    )
    .unwrap();
    let mut server = net.spawn_app("udp-echo-server", &["python3", path_str(&server_py)]);
    server.wait_line("ready", START);

    // Each datagram gets three tries of 1 s; its echo must match and come from 10.77.0.2:9999.
    let client = format!(
        "import socket, os, sys\n\
         c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(1.0)\n\
         ok = bad = 0\n\
         for i in range(2000):\n\
         \x20   m = os.urandom(1 + (i * 7919) % 1400)\n\
         \x20   for _ in range(3):\n\
         \x20       c.sendto(m, ('{STACK_IP}', 9999))\n\
         \x20       try:\n\
         \x20           d, a = c.recvfrom(65535)\n\
         \x20       except socket.timeout:\n\
         \x20           continue\n\
         \x20       if d == m and a == ('{STACK_IP}', 9999): ok += 1\n\
         \x20       else:\n\
         \x20           bad += 1\n\
         \x20           if bad <= 5: print('mismatch: sent', len(m), 'got', len(d), 'from', a)\n\
         \x20       break\n\
         print('echoed', ok, 'of 2000')\n\
         sys.exit(0 if ok >= 1990 else 1)\n"
    );
    let before = net.link_bytes();
    let mut command = net.host("python3");
    command.args(["-c", &client]);
    let got = run_capture(command, b"", TRANSFER);
    assert!(
        got.status.success(),
        "UDP echo: {}{}\n{}",
        got.stdout_text(),
        got.stderr,
        server.tail()
    );
    net.assert_link_moved(before, 1_000_000, "udp echo");
}

/// A kernel-side python client: 20 connections at once, each asking for LEN bytes of the
/// xorshift stream of its own seed, each reply checked by SHA-256 against python's own copy.
const CONCURRENT_CLIENTS: &str = r#"
import hashlib, socket, sys, threading
host, port, n, length = sys.argv[1], int(sys.argv[2]), 20, 512 * 1024 + 5
M = (1 << 64) - 1
def expected(seed):
    s, out = (seed | 1) & M, bytearray()
    while len(out) < length:
        s ^= (s << 13) & M; s ^= s >> 7; s ^= (s << 17) & M
        out += s.to_bytes(8, "little")
    return hashlib.sha256(bytes(out[:length])).hexdigest()
barrier = threading.Barrier(n, timeout=30)
results = [None] * n
def client(i):
    seed = 1000 + i * 7919
    try:
        c = socket.create_connection((host, port), timeout=30)
        barrier.wait()  # all 20 connected before any asks
        c.sendall(b"%d %d\n" % (seed, length))
        h, got = hashlib.sha256(), 0
        while True:
            d = c.recv(65536)
            if not d:
                break
            h.update(d); got += len(d)
        c.close()
        results[i] = (got, h.hexdigest() == expected(seed))
    except Exception as e:
        results[i] = repr(e)
threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join(90)
good = sum(1 for r in results if r == (length, True))
for i, r in enumerate(results):
    if r != (length, True): print("client", i, "got", r)
print("%d/%d replies intact" % (good, n))
sys.exit(0 if good == n else 1)
"#;

fn concurrent_clients_against(how: &str, link_static: bool) {
    const PORT: u16 = 7200;
    let net = Net::new(Mode::from_env());
    let program = compile_c("fork_server", link_static, &net.dir.path);
    let mut server = net.spawn_app("fork_server", &[path_str(&program), how, "7200"]);
    let ready = server.wait_line("ready pid=", START);
    let target: i32 = ready["ready pid=".len()..].trim().parse().expect("a pid");
    wait_serving(&net, &mut server, STACK_IP, PORT);
    let joyride = net.mode == Mode::Joyride;
    let local = format!("{STACK_IP}:{PORT}");
    if joyride {
        let lines = net.stackd().socket_lines();
        assert!(
            lines.iter().any(|l| l.state == "LISTEN" && l.local == format!("0.0.0.0:{PORT}")),
            "stackd does not list the server's listener: {lines:#?}"
        );
        let ss = joyride_ss(&net);
        assert!(
            ss.lines().any(|l| l.contains("LISTEN") && l.contains(&format!(":{PORT}"))),
            "`joyride ss` does not show the listener:\n{ss}"
        );
    }

    let mut clients = net.host("python3");
    clients.args(["-c", CONCURRENT_CLIENTS, STACK_IP, "7200"]);
    let got = run_capture(clients, b"", TRANSFER);
    assert!(
        got.status.success(),
        "{how} server: {}{}\n{}",
        got.stdout_text(),
        got.stderr,
        server.tail()
    );

    if joyride {
        // The server closed every connection after its reply and the clients read to the end:
        // none of the server's connections may stay established.
        let settled = eventually(Duration::from_secs(10), || {
            !net.stackd().socket_lines().iter().any(|l| l.state == "ESTAB" && l.local == local)
        });
        assert!(
            settled,
            "{how} server: connections still ESTAB after the clients finished: {:#?}",
            net.stackd().socket_lines()
        );
        let ss = joyride_ss(&net);
        assert!(
            !ss.lines().any(|l| l.contains("ESTAB") && l.contains(&local)),
            "`joyride ss` still shows established connections of the server:\n{ss}"
        );
    }

    // SAFETY: kill has no memory effects; the pid is the server the test started.
    assert_eq!(unsafe { libc::kill(target, libc::SIGTERM) }, 0);
    let status = server.wait(SHORT);
    assert_eq!(shell_status(status), 143, "{how} server killed by SIGTERM\n{}", server.tail());
    if joyride {
        let released = eventually(Duration::from_secs(10), || {
            !net.stackd()
                .socket_lines()
                .iter()
                .any(|l| l.local.ends_with(&format!(":{PORT}")) && l.state == "LISTEN")
        });
        assert!(
            released,
            "the killed server's listener is still listed: {:#?}",
            net.stackd().socket_lines()
        );
    }
}

fn joyride_ss(net: &Net) -> String {
    let mut command = std::process::Command::new(joyride_bin());
    command.arg("ss").arg("--stackd").arg(&net.stackd().control);
    let got = run_capture(command, b"", SHORT);
    assert!(got.status.success(), "joyride ss: {} {}", got.status, got.stderr);
    got.stdout_text()
}

#[test]
fn static_fork_per_connection_server_serves_20_concurrent_clients() {
    if skip("fork server", &[Tool::Gcc, Tool::Python]) {
        return;
    }
    concurrent_clients_against("fork", true);
}

#[test]
fn dynamic_threaded_server_serves_20_concurrent_clients() {
    if skip("threaded server", &[Tool::Gcc, Tool::Python]) {
        return;
    }
    concurrent_clients_against("thread", false);
}

// ---- clients under joyride, kernel-side servers -------------------------------------------

fn download_from_kernel_server(client: &[&str], len: usize) {
    let net = Net::new(Mode::from_env());
    let (www, want) = www_with(&net, "big", len, len as u64);
    let server = kernel_http_server(&net, &www);
    let before = net.link_bytes();
    let got = run_capture(net.app(client), b"", TRANSFER);
    assert!(got.status.success(), "{client:?}: {} {}\n{}", got.status, got.stderr, server.tail());
    assert_eq!(got.stdout.len(), len, "{client:?} got a short body");
    assert_eq!(sha256_hex(&got.stdout), want, "{client:?} got altered content");
    net.assert_link_moved(before, len as u64, "download");
}

#[test]
fn static_busybox_wget_downloads_32_mib_from_a_kernel_server() {
    if skip("static busybox wget", &[Tool::StaticBusybox, Tool::Python]) {
        return;
    }
    let url = format!("http://{HOST_IP}:8000/big");
    download_from_kernel_server(&[BUSYBOX, "wget", "-q", "-O-", &url], 32 * MIB);
}

#[test]
fn dynamic_curl_downloads_32_mib_from_a_kernel_server() {
    if skip("dynamic curl", &[Tool::Curl, Tool::Python]) {
        return;
    }
    let url = format!("http://{HOST_IP}:8000/big");
    download_from_kernel_server(&["curl", "-sSf", "--max-time", "80", &url], 32 * MIB);
}

#[test]
fn exec_into_static_busybox_stays_supervised() {
    if skip("exec into busybox", &[Tool::StaticBusybox, Tool::Python]) {
        return;
    }
    // sh (dynamic) replaces itself with busybox (static): the filter and the supervisor must
    // follow the exec, and the download must cross the stack.
    let script = format!("exec {BUSYBOX} wget -q -O- http://{HOST_IP}:8000/big");
    download_from_kernel_server(&["sh", "-c", &script], 8 * MIB);
}

// ---- the socket calls' semantics, one by one ----------------------------------------------

fn connect_accept(mode: Mode) {
    let net = Net::new(mode);
    let program = compile_c("connect_accept", true, &net.dir.path);
    let program = path_str(&program);
    let mut peer_command = net.host(program);
    peer_command.args(["peer", "7000"]);
    let mut peer = net.spawn("connect_accept-peer", peer_command);
    peer.wait_line("peer listening", START);
    // Nothing listens on 7999 on the kernel side.
    let app = net.app(&[program, "app", HOST_IP, "7000", "7999", "7001", STACK_IP]);
    let got = run_capture(app, b"", Duration::from_secs(120));
    let report = got.stdout_text();
    assert!(
        got.status.success() && report.contains("PASSED: 0 failed"),
        "connect_accept ({mode:?}) exited {}:\n{report}\nstderr:\n{}\n{}",
        got.status,
        got.stderr,
        peer.tail()
    );
}

/// The control: the program's checks hold on the kernel's own stack, so any failure of the
/// next test is joyride's.
#[test]
fn connect_accept_program_passes_natively() {
    if skip("connect_accept natively", &[Tool::Gcc]) {
        return;
    }
    connect_accept(Mode::Native);
}

#[test]
fn static_connect_accept_program_passes_under_joyride() {
    if skip("connect_accept", &[Tool::Gcc]) {
        return;
    }
    connect_accept(Mode::from_env());
}

// ---- what a launcher must pass through ------------------------------------------------------

#[test]
fn exit_status_and_signal_death_pass_through() {
    if skip("exit status", &[]) {
        return;
    }
    let net = Net::new(Mode::from_env());
    for (script, want) in
        [("exit 7", 7), ("exit 0", 0), ("kill -TERM $$", 143), ("kill -KILL $$", 137)]
    {
        let got = run_capture(net.app(&["sh", "-c", script]), b"", SHORT);
        assert_eq!(shell_status(got.status), want, "sh -c {script:?}: {}", got.stderr);
        if net.mode == Mode::Joyride {
            // joyride itself exits: a signal that killed the target is reported as 128 + N.
            assert_eq!(got.status.code(), Some(want), "joyride's own status for {script:?}");
        }
    }
}

#[test]
fn stdio_arguments_environment_and_cwd_pass_through() {
    if skip("stdio pass-through", &[]) {
        return;
    }
    let net = Net::new(Mode::from_env());

    let got = run_capture(net.app(&["cat"]), b"hi\n", SHORT);
    assert!(got.status.success(), "cat: {}", got.stderr);
    assert_eq!(got.stdout_text(), "hi\n");

    let bulk = common::payload(MIB + 3, 0xca7);
    let got = run_capture(net.app(&["cat"]), &bulk, SHORT);
    assert_eq!(sha256_hex(&got.stdout), sha256_hex(&bulk), "1 MiB through cat's stdin and stdout");

    let got = run_capture(net.app(&["sh", "-c", "echo to-stderr >&2"]), b"", SHORT);
    assert!(got.stderr.lines().any(|l| l == "to-stderr"), "stderr: {:?}", got.stderr);

    let got = run_capture(net.app(&["printf", "%s\\n", "a b", "", "c\"d", "é"]), b"", SHORT);
    assert_eq!(got.stdout_text(), "a b\n\nc\"d\né\n", "arguments arrive unchanged");

    let mut env = net.app(&["env"]);
    env.env("JOYRIDE_TEST_MARK", "mark 7f3a=x");
    let got = run_capture(env, b"", SHORT);
    assert!(
        got.stdout_text().lines().any(|l| l == "JOYRIDE_TEST_MARK=mark 7f3a=x"),
        "the environment did not pass through:\n{}",
        got.stdout_text()
    );

    let cwd = net.dir.path.canonicalize().unwrap();
    let mut pwd = net.app(&["/bin/pwd"]);
    pwd.current_dir(&cwd);
    let got = run_capture(pwd, b"", SHORT);
    assert_eq!(got.stdout_text(), format!("{}\n", cwd.display()), "working directory");
}

// ---- joyride's own robustness -------------------------------------------------------------

#[test]
fn sockets_of_an_exited_target_are_released() {
    if skip("socket release", &[Tool::Python]) {
        return;
    }
    let mut net = Net::new(Mode::from_env());
    if net.mode == Mode::Native {
        eprintln!("SKIPPED socket release: stackd's books exist only under joyride");
        return;
    }
    let mut command = net.host("python3");
    command.args([
        "-c",
        "import socket\n\
         l = socket.socket(); l.bind(('10.77.0.1', 7401)); l.listen(8)\n\
         print('listening', flush=True)\n\
         conns = []\n\
         while True: conns.append(l.accept())\n",
    ]);
    let mut holder = net.spawn("kernel-listener", command);
    holder.wait_line("listening", START);

    let baseline = net.stackd().counter("sockets");
    let go = net.dir.join("go");
    let script = format!(
        "import socket, os, time\n\
         l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         l.bind(('0.0.0.0', 7400)); l.listen(8)\n\
         c = socket.create_connection(('{HOST_IP}', 7401), timeout=10)\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 7402))\n\
         print('holding', flush=True)\n\
         deadline = time.monotonic() + 30\n\
         while not os.path.exists({go:?}) and time.monotonic() < deadline: time.sleep(0.05)\n\
         os._exit(0)  # no close(): the process's exit alone must release them\n",
        go = path_str(&go)
    );
    let mut target = net.spawn_app("socket-holder", &["python3", "-c", &script]);
    target.wait_line("holding", START);

    let held = net.stackd().counter("sockets");
    assert!(held >= baseline + 3, "stackd holds {held} sockets, {baseline} before the target's 3");
    let lines = net.stackd().socket_lines();
    for (protocol, state, local, peer) in [
        ("tcp", "LISTEN", "0.0.0.0:7400", None),
        ("tcp", "ESTAB", "10.77.0.2:", Some("10.77.0.1:7401")),
        ("udp", "UNCONN", "0.0.0.0:7402", None),
    ] {
        assert!(
            lines.iter().any(|l| l.protocol == protocol
                && l.state == state
                && l.local.starts_with(local)
                && peer.is_none_or(|peer| l.peer == peer)),
            "no {protocol} {state} {local} socket listed: {lines:#?}"
        );
    }

    std::fs::write(&go, b"").unwrap();
    let status = target.wait(SHORT);
    assert_eq!(status.code(), Some(0), "the target's exit status\n{}", target.tail());
    let released =
        eventually(Duration::from_secs(10), || net.stackd().counter("sockets") == baseline);
    assert!(
        released,
        "stackd still holds {} sockets ({baseline} before the target): {:#?}",
        net.stackd().counter("sockets"),
        net.stackd().socket_lines()
    );
    let lines = net.stackd().socket_lines();
    assert!(
        !lines.iter().any(|l| l.local == "0.0.0.0:7400" || l.local == "0.0.0.0:7402"),
        "the exited target's listener or UDP socket is still listed: {lines:#?}"
    );
    net.stackd_mut().assert_alive();
}

#[test]
fn a_dead_supervisor_makes_intercepted_calls_fail_with_enosys() {
    if skip("supervisor death", &[Tool::Gcc]) {
        return;
    }
    let mut net = Net::new(Mode::from_env());
    if net.mode == Mode::Native {
        eprintln!("SKIPPED supervisor death: there is no supervisor in a native run");
        return;
    }
    let program = compile_c("supervisor_death", true, &net.dir.path);
    let report = net.dir.join("report");
    let baseline = net.stackd().counter("sockets");
    let mut joyride =
        net.spawn_app("supervisor_death", &[path_str(&program), "7300", path_str(&report)]);
    let read_report = || std::fs::read_to_string(&report).unwrap_or_default();
    let ready = eventually(START, || read_report().contains("ready pid="));
    assert!(ready, "the target never got ready:\n{}\n{}", read_report(), joyride.tail());
    let target: i32 = read_report()
        .lines()
        .find_map(|l| l.strip_prefix("ready pid="))
        .and_then(|pid| pid.trim().parse().ok())
        .expect("the target's pid");
    // Let the target block in accept (held by the supervisor) before the supervisor dies.
    std::thread::sleep(Duration::from_millis(300));
    joyride.kill(); // SIGKILL: no chance to clean up

    let finished = eventually(SHORT, || read_report().contains("result"));
    let text = read_report();
    // The target outlived its supervisor: end it whatever happened (the netns guard would too).
    // SAFETY: kill has no memory effects; the pid is the target the test started.
    unsafe { libc::kill(target, libc::SIGKILL) };
    assert!(finished, "the target hangs after its supervisor died:\n{text}");
    assert!(
        text.lines().any(|l| l == "result ENOSYS"),
        "the target's calls did not fail with ENOSYS once its supervisor died:\n{text}"
    );
    // With the supervisor's session and the target's carriers gone, nothing may stay behind.
    let released =
        eventually(Duration::from_secs(10), || net.stackd().counter("sockets") == baseline);
    assert!(
        released,
        "stackd still holds {} sockets ({baseline} before) after the supervisor and its target \
         died: {:#?}",
        net.stackd().counter("sockets"),
        net.stackd().socket_lines()
    );
    net.stackd_mut().assert_alive();
}

#[test]
fn audit_logs_curl_connecting_to_loopback_and_lets_the_kernel_serve_it() {
    if skip("audit", &[Tool::Curl, Tool::Python]) {
        return;
    }
    if Mode::from_env() == Mode::Native {
        eprintln!("SKIPPED audit: joyride only");
        return;
    }
    const PORT: u16 = 8123;
    let dir = Scratch::new();
    let ns = Netns::new();
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("h"), "hello\n").unwrap();
    let mut command = ns.command("python3");
    command.args(["-m", "http.server", "8123", "--bind", "127.0.0.1"]).current_dir(&www);
    let server = Proc::spawn("loopback-server", command, dir.join("server.log"));
    assert!(ns.wait_tcp("127.0.0.1", PORT, START), "{}", server.tail());

    let log = dir.join("audit.jsonl");
    let mut audit = ns.command(joyride_bin());
    audit.arg("audit").arg("--log").arg(&log).args(["--", "curl", "-sf"]);
    audit.arg(format!("http://127.0.0.1:{PORT}/h"));
    let got = run_capture(audit, b"", SHORT);
    assert!(got.status.success(), "curl under audit: {} {}", got.status, got.stderr);
    assert_eq!(got.stdout_text(), "hello\n", "body under audit");

    let text = std::fs::read_to_string(&log).expect("the audit log exists");
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let hit = records.iter().any(|r| {
        r["syscall"] == "connect"
            && r["decision"] == "kernel"
            && r["args"]["address"] == "127.0.0.1"
            && r["args"]["port"] == PORT
    });
    assert!(hit, "no connect to 127.0.0.1:{PORT} decided \"kernel\" in the audit log:\n{text}");
}

// ---- the kernel fallback ------------------------------------------------------------------

#[test]
fn loopback_and_unix_sockets_fall_back_to_the_kernel() {
    if skip("kernel fallback", &[Tool::Curl, Tool::Python]) {
        return;
    }
    let net = Net::new(Mode::from_env());
    let www = net.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("h"), "hello over loopback\n").unwrap();
    let mut command = net.app_side("python3");
    command.args(["-m", "http.server", "8124", "--bind", "127.0.0.1"]).current_dir(&www);
    let server = net.spawn("loopback-server", command);
    assert!(net.app_netns().wait_tcp("127.0.0.1", 8124, START), "{}", server.tail());

    let got = run_capture(net.app(&["curl", "-sSf", "http://127.0.0.1:8124/h"]), b"", SHORT);
    assert!(got.status.success(), "curl to loopback: {} {}", got.status, got.stderr);
    assert_eq!(got.stdout_text(), "hello over loopback\n");

    let unix_path = net.dir.join("unix.sock");
    let script = format!(
        "import socket\n\
         a, b = socket.socketpair()\n\
         a.sendall(b'ping'); assert b.recv(4) == b'ping'\n\
         b.sendall(b'pong'); assert a.recv(4) == b'pong'\n\
         print('socketpair ok')\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind({path:?}); s.listen(1)\n\
         c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect({path:?})\n\
         d, _ = s.accept()\n\
         c.sendall(b'x' * 100000); c.shutdown(socket.SHUT_WR)\n\
         got = b''\n\
         while True:\n\
         \x20   chunk = d.recv(65536)\n\
         \x20   if not chunk: break\n\
         \x20   got += chunk\n\
         assert got == b'x' * 100000, len(got)\n\
         print('unix listener ok')\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n\
         v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.settimeout(5)\n\
         v.sendto(b'lo', u.getsockname()); u.settimeout(5)\n\
         data, addr = u.recvfrom(16)\n\
         assert data == b'lo' and addr == ('127.0.0.1', v.getsockname()[1]), addr\n\
         print('loopback udp ok')\n",
        path = path_str(&unix_path)
    );
    let got = run_capture(net.app(&["python3", "-c", &script]), b"", SHORT);
    assert!(got.status.success(), "{}{}", got.stdout_text(), got.stderr);
    assert_eq!(got.stdout_text(), "socketpair ok\nunix listener ok\nloopback udp ok\n");
}

/// A policy's deny rules hold on every path: a stackd socket, a socket moved to the kernel
/// (loopback), a kernel socket from the start (IPv6 loopback), for connect and sendto; and
/// the calls the policy allows to the kernel still work, performed by the supervisor on its
/// own copy of the address (CONTINUE would be no enforcement).
#[test]
fn deny_rules_hold_on_stackd_and_kernel_sockets() {
    if skip("deny rules", &[Tool::Python]) {
        return;
    }
    let net = Net::new(Mode::Joyride);
    let policy = net.dir.join("deny.toml");
    std::fs::write(
        &policy,
        "version = 1\n\
         [[rule]]\nname = \"no port 9\"\nport = [9]\naction = \"deny\"\nerrno = \"ECONNREFUSED\"\n\
         [[rule]]\ndestination = [\"127.0.0.0/8\", \"::1/128\"]\naction = \"kernel\"\n",
    )
    .unwrap();
    let script = format!(
        "import socket, errno\n\
         def err(f):\n\
         \x20   try: f(); return 0\n\
         \x20   except OSError as e: return e.errno\n\
         s = socket.socket(); print('stackd', err(lambda: s.connect(('{HOST_IP}', 9))))\n\
         s = socket.socket(); print('moved', err(lambda: s.connect(('127.0.0.1', 9))))\n\
         k = socket.socket(); k.bind(('127.0.0.1', 0)); k.listen(1)\n\
         c = socket.socket(); c.settimeout(5); c.connect(k.getsockname()); a, _ = k.accept()\n\
         c.send(b'x'); print('allowed', a.recv(1))\n\
         c3 = socket.socket(); print('again', err(lambda: c3.connect(('127.0.0.1', 9))))\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n\
         v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         print('udp', v.sendto(b'hello', u.getsockname()), u.recv(10))\n\
         print('udp-deny', err(lambda: v.sendto(b'x', ('127.0.0.1', 9))))\n\
         x = socket.socket(socket.AF_INET6); print('v6', err(lambda: x.connect(('::1', 9))))\n"
    );
    let mut command = net.host(joyride_bin());
    command
        .args(["run", "--stackd"])
        .arg(&net.stackd().control)
        .arg("--policy")
        .arg(&policy)
        .args(["--", "python3", "-c", &script]);
    let got = run_capture(command, b"", SHORT);
    assert!(got.status.success(), "{}{}", got.stdout_text(), got.stderr);
    let refused = libc::ECONNREFUSED;
    assert_eq!(
        got.stdout_text(),
        format!(
            "stackd {refused}\nmoved {refused}\nallowed b'x'\nagain {refused}\n\
             udp 5 b'hello'\nudp-deny {refused}\nv6 {refused}\n"
        )
    );
}

/// A thousand target threads blocked in accept at once: each waits on a supervisor thread of
/// its own, none delays another, and every connection reaches exactly one of them.
#[test]
fn a_thousand_threads_blocked_in_accept_are_all_served() {
    if skip("a thousand threads", &[Tool::Python]) {
        return;
    }
    const THREADS: usize = 1000;
    let net = Net::new(Mode::from_env());
    let server = format!(
        "import socket, threading\n\
         l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         l.bind(('0.0.0.0', 7300)); l.listen(1024)\n\
         got = []; lock = threading.Lock(); stage = {{}}\n\
         def worker(i):\n\
         \x20   stage[i] = 'accept'; c, _ = l.accept()\n\
         \x20   stage[i] = 'recv'; d = c.recv(16)\n\
         \x20   with lock: got.append(d)\n\
         \x20   stage[i] = 'close'; c.close(); stage[i] = 'done'\n\
         ts = [threading.Thread(target=worker, args=(i,)) for i in range({THREADS})]\n\
         for t in ts: t.start()\n\
         print('ready', flush=True)\n\
         for t in ts: t.join(50)\n\
         stuck = sorted(set(stage.values()) - {{'done'}})\n\
         print('accepted', len(got), 'distinct', len(set(got)), 'stuck in', stuck, flush=True)\n"
    );
    let mut app = net.spawn_app("threads", &["python3", "-c", &server]);
    app.wait_line("ready", START);
    let clients = format!(
        "import socket, time\n\
         socks = []\n\
         for i in range({THREADS}):\n\
         \x20   s = socket.create_connection(('{STACK_IP}', 7300), timeout=10)\n\
         \x20   s.send(b'%08d' % i); socks.append(s)\n\
         time.sleep(1)\n"
    );
    let mut command = net.host("python3");
    command.args(["-c", &clients]);
    let sent = run_capture(command, b"", Duration::from_secs(60));
    assert!(sent.status.success(), "clients: {}", sent.stderr);
    let line = app.wait_line("accepted", Duration::from_secs(60));
    assert_eq!(line.trim(), format!("accepted {THREADS} distinct {THREADS} stuck in []"));
}
