//! The fast path end to end: unmodified Python programs under two `joyride run`s, with the
//! preloaded library moving their bytes through shared-memory rings, checked against the trap
//! path (`--no-fast-path`) on the same workloads. Each echo handler reports how many ring
//! mappings its process holds, which is how the test knows which path carried the bytes.
//!
//! Covered: a connection handled in the accepting process, in a forked child (the parent
//! closes its copy), in an exec'd program image (the connection dup'd onto stdin and stdout
//! after part of the stream went through the ring), in a process that received the socket with
//! SCM_RIGHTS, and an epoll server with non-blocking sockets serving several clients at once;
//! payloads in random pieces both ways at once, checked by SHA-256.

use std::time::Duration;

mod common;

use common::{app_on, paths, skip, Mode, Net, Proc, Route, Tool};

const START: Duration = Duration::from_secs(15);
const TRANSFER: Duration = Duration::from_secs(120);

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/fast_peer.py").to_owned()
}

fn spawn(net: &Net, route: &Route, name: &str, argv: &[&str]) -> Proc {
    net.spawn(name, app_on(net, route, argv))
}

/// The `rings=N` figure of a report line.
fn rings(line: &str) -> usize {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("rings="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rings= in {line:?}"))
}

/// Streams `size` bytes from `clients` clients through the server's echo; checks every byte
/// came back and which path carried them.
fn echo_through(mode: &str, clients: usize, size: usize) {
    if skip(&format!("fast path, {mode} echo"), &[Tool::Python])
        || Mode::from_env() != Mode::Joyride
    {
        return;
    }
    let script = script();
    for route in paths() {
        let net = Net::new(Mode::Joyride);
        let port = "7300";
        let mut server = spawn(&net, &route, "server", &["python3", &script, "server", mode, port]);
        server.wait_line("listening", START);
        let size_arg = size.to_string();
        let mut running: Vec<Proc> = (0..clients)
            .map(|index| {
                let seed = (100 + index).to_string();
                let argv = ["python3", &script, "client", port, &size_arg, &seed];
                spawn(&net, &route, &format!("client{index}"), &argv)
            })
            .collect();
        for client in &mut running {
            let status = client.wait(TRANSFER);
            assert!(status.success(), "{route:?} {mode}: client failed\n{}", client.tail());
            let sent = client.wait_line("sent ", START);
            let echoed = client.wait_line("echoed ", START);
            let digest = sent.strip_prefix("sent ").unwrap();
            assert!(
                echoed.starts_with(&format!("echoed {digest} {size} ")),
                "{route:?} {mode}: the echo differs: {sent} / {echoed}\n{}",
                server.tail()
            );
            let client_rings = rings(&echoed);
            match route {
                Route::Trap => assert_eq!(client_rings, 0, "{route:?}: {echoed}"),
                Route::FastPath(_) => {
                    assert!(client_rings >= 2, "no rings in the client: {echoed}")
                }
            }
        }
        let expected_handlers = clients;
        let handled =
            |server: &Proc| server.output().lines().filter(|l| l.contains("handler ")).count();
        assert!(
            common::eventually(START, || handled(&server) >= expected_handlers),
            "{route:?} {mode}: handlers did not finish\n{}",
            server.tail()
        );
        for line in server.output().lines().filter(|line| line.contains("handler ")) {
            match route {
                Route::Trap => assert_eq!(rings(line), 0, "{route:?} {mode}: {line}"),
                Route::FastPath(_) => {
                    assert!(rings(line) >= 2, "{mode}: the handler used no ring: {line}")
                }
            }
        }
        server.kill();
    }
}

#[test]
fn echo_in_the_accepting_process() {
    echo_through("inline", 1, 24 << 20);
}

#[test]
fn echo_in_a_forked_child() {
    echo_through("fork", 2, 8 << 20);
}

#[test]
fn echo_in_an_execed_program_image() {
    echo_through("exec", 1, 8 << 20);
}

#[test]
fn echo_in_a_process_that_received_the_socket_with_scm_rights() {
    echo_through("scm", 1, 8 << 20);
}

#[test]
fn epoll_server_with_nonblocking_sockets_and_several_clients() {
    echo_through("epoll", 4, 4 << 20);
}

/// A static program (trap path: no library, so its side never reads a ring) and a dynamic one
/// (fast path) on one local connection: each direction stays on the socket unless its reader
/// has the library, so both work.
#[test]
fn mixed_pairs_static_and_fast_path_programs() {
    use common::{sha256_file, write_payload_file, BUSYBOX, STACK_IP};
    if skip("fast path, mixed pairs", &[Tool::Python, Tool::StaticBusybox])
        || Mode::from_env() != Mode::Joyride
    {
        return;
    }
    let fast = Route::FastPath(common::fast_path_library());
    let net = Net::new(Mode::Joyride);
    let www = net.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let digest = write_payload_file(&www.join("blob"), 16 << 20, 0x313);
    let www_arg = www.to_str().unwrap().to_owned();

    // Dynamic server on the fast path, static client.
    let mut python = spawn(
        &net,
        &fast,
        "python-httpd",
        &["python3", "-m", "http.server", "8081", "--directory", &www_arg],
    );
    assert!(net.host.wait_tcp(STACK_IP, 8081, START), "{}", python.tail());
    let out = net.dir.join("from-python");
    let out_arg = out.to_str().unwrap().to_owned();
    let url = format!("http://{STACK_IP}:8081/blob");
    let mut wget = spawn(&net, &fast, "wget", &[BUSYBOX, "wget", "-q", "-O", &out_arg, &url]);
    assert!(wget.wait(TRANSFER).success(), "{}\n{}", wget.tail(), python.tail());
    assert_eq!(sha256_file(&out), digest, "static client ← fast-path server");

    // Static server, dynamic client on the fast path.
    let mut httpd = spawn(
        &net,
        &fast,
        "busybox-httpd",
        &[BUSYBOX, "httpd", "-f", "-p", "8082", "-h", &www_arg],
    );
    assert!(net.host.wait_tcp(STACK_IP, 8082, START), "{}", httpd.tail());
    let out = net.dir.join("from-busybox");
    let fetch = format!(
        "import urllib.request,hashlib; d=urllib.request.urlopen('http://{STACK_IP}:8082/blob').read(); \
         open('{}','wb').write(d)",
        out.display()
    );
    let mut client = spawn(&net, &fast, "python-client", &["python3", "-c", &fetch]);
    assert!(client.wait(TRANSFER).success(), "{}\n{}", client.tail(), httpd.tail());
    assert_eq!(sha256_file(&out), digest, "fast-path client ← static server");
    python.kill();
    httpd.kill();
}

/// Runs the C program `name` (tests/programs/NAME.c: a connected pair through the local path in
/// one process, one line per case, then `rings=N`) on both paths: the same lines each time, and
/// the four ring mappings of its two connections on the fast path only.
fn c_program_answers_as_the_kernel(name: &str, port: &str, expected: &[&str]) {
    if skip(&format!("fast path, {name}"), &[Tool::Gcc]) || Mode::from_env() != Mode::Joyride {
        return;
    }
    let program_dir = common::Scratch::new();
    let program = common::compile_c(name, false, &program_dir.path);
    let program = program.to_str().unwrap().to_owned();
    for route in paths() {
        let net = Net::new(Mode::Joyride);
        let mut run = spawn(&net, &route, name, &[&program, common::STACK_IP, port]);
        let status = run.wait(TRANSFER);
        assert!(status.success(), "{route:?}: {}", run.tail());
        let out = run.output();
        let lines: Vec<&str> = out.lines().filter(|line| !line.starts_with("rings=")).collect();
        assert_eq!(lines, expected, "{route:?}: {out}");
        let mapped = rings(out.lines().find(|line| line.starts_with("rings=")).unwrap());
        match route {
            Route::Trap => assert_eq!(mapped, 0, "{out}"),
            Route::FastPath(_) => assert_eq!(mapped, 4, "two connections' rings: {out}"),
        }
    }
}

/// EINTR without SA_RESTART, a restarted wait with it, and SO_RCVTIMEO, on a blocking recv of
/// a fast-path socket: exactly the kernel's answers (the reader sleeps in a recv on the socket
/// itself), the same on the trap path.
#[test]
fn signals_and_receive_timeouts_on_a_blocking_recv() {
    c_program_answers_as_the_kernel(
        "fast_signals",
        "7400",
        &[
            "no-restart: result=-1 errno=EINTR handled=1 waited=yes",
            "restart: result=4 data=late handled=1",
            "rcvtimeo: result=-1 errno=EAGAIN waited=yes",
        ],
    );
}

/// sendmmsg/recvmmsg (MSG_WAITFORONE, lengths, EAGAIN, end of stream) and ppoll/pselect (a
/// timeout with nothing ready, then readiness) answer as the kernel's do, on both paths.
#[test]
fn multi_message_calls_and_ppoll_and_pselect() {
    c_program_answers_as_the_kernel(
        "fast_calls",
        "7450",
        &[
            "ppoll idle: ready=0 waited=yes",
            "pselect idle: ready=0 waited=yes",
            "sendmmsg: result=3 lengths=10,9,12",
            "ppoll data: ready=1",
            "pselect data: ready=1",
            "recvmmsg: bytes=31 data=alpha-one|beta-two|gamma-three|",
            "recvmmsg empty: result=-1 errno=EAGAIN",
            "recvmmsg eof: result=8 bytes=0",
        ],
    );
}

/// After a fork, parent and child write to one connection at the same time: every 100-byte
/// record arrives whole and each writer's in order (the two processes take turns on the ring's
/// write side instead of keeping positions of their own).
#[test]
fn parent_and_child_write_one_connection_at_once() {
    if skip("fast path, fork writers", &[Tool::Python]) || Mode::from_env() != Mode::Joyride {
        return;
    }
    let script = script();
    for route in paths() {
        let net = Net::new(Mode::Joyride);
        let mut server =
            spawn(&net, &route, "server", &["python3", &script, "server", "forkwrite", "7500"]);
        server.wait_line("listening", START);
        let mut client =
            spawn(&net, &route, "client", &["python3", &script, "records", "7500", "20000"]);
        let status = client.wait(TRANSFER);
        assert!(status.success(), "{route:?}: {}\n{}", client.tail(), server.tail());
        let line = client.wait_line("records ok", START);
        assert!(line.starts_with("records ok 40000 "), "{route:?}: {line}");
        if let Route::FastPath(_) = route {
            assert!(rings(&line) >= 2, "the client read no ring: {line}");
        }
        server.kill();
    }
}
