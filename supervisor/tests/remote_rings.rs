//! The remote ring data plane end to end: TCP connections between a program under `joyride
//! run` and a peer on the kernel's TCP in the host namespace (the far side of stackd's TAP),
//! on the fast path (stackd moves the payload through the connection's two rings) and on the
//! trap path (`--no-fast-path`: through the carrier), with the same workloads and SHA-256 on
//! every byte both ways.
//!
//! Covered: 32 MiB each way with a half-close, from a client and from a server under joyride;
//! a stream a static program started on the carrier and a dynamic image it exec'd finishes (the
//! rings take over at exact counts with bytes unread both ways); a non-blocking connect held
//! up by the peer (not writable, no data taken, SO_ERROR 0) then an edge-triggered epoll
//! transfer, and one refused; resets both ways; and `joyride ss` naming the plane.
//!
//! stackd's counters say which plane carried the bytes: `ring_*` on the fast path, `carrier_*`
//! on the trap path. A control run (`JOYRIDE_TEST_NATIVE=1`) runs the same peers on the
//! kernel's stack alone, once, without the counter checks.

use std::time::Duration;

mod common;

use common::{
    app_on, payload, sha256_hex, skip, write_payload_file, Mode, Net, Proc, Route, Tool, HOST_IP,
    STACK_IP,
};

const START: Duration = Duration::from_secs(15);
const TRANSFER: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/remote_peer.py").to_owned()
}

/// The routes to run, or none when the test cannot run here.
fn routes(test: &str, tools: &[Tool]) -> Vec<Route> {
    if skip(test, tools) {
        return Vec::new();
    }
    match Mode::from_env() {
        Mode::Joyride => common::paths(),
        // Natively the route means nothing: one run validates the peers' logic.
        Mode::Native => vec![Route::Trap],
    }
}

fn fast(net: &Net, route: &Route) -> bool {
    net.mode == Mode::Joyride && matches!(route, Route::FastPath(_))
}

fn joyride(net: &Net) -> bool {
    net.mode == Mode::Joyride
}

/// remote_peer.py on the kernel's TCP, in the host namespace.
fn kernel_peer(net: &Net, name: &str, args: &[&str]) -> Proc {
    let mut command = net.host("python3");
    command.arg(script()).args(args);
    net.spawn(name, command)
}

/// remote_peer.py under joyride on `route`.
fn program(net: &Net, route: &Route, name: &str, args: &[&str]) -> Proc {
    let script = script();
    let mut argv = vec!["python3", script.as_str()];
    argv.extend_from_slice(args);
    net.spawn(name, app_on(net, route, &argv))
}

/// The program mapped rings on the fast path and none on the trap path.
fn check_route_rings(net: &Net, route: &Route, proc: &Proc, context: &str) {
    if !joyride(net) {
        return;
    }
    if fast(net, route) {
        assert!(rings(proc) >= 2, "{context}: {} mapped no ring", proc.name);
    } else {
        assert_eq!(rings(proc), 0, "{context}: {} mapped rings on the trap path", proc.name);
    }
}

/// The words after `key` on the first line of `proc`'s output that starts with it.
fn words(proc: &mut Proc, key: &str) -> Vec<String> {
    let line = proc.wait_line(&format!("{key} "), START);
    let rest = line.strip_prefix(&format!("{key} ")).unwrap_or_else(|| panic!("{line:?}"));
    rest.split_whitespace().map(str::to_owned).collect()
}

/// The `rings=N` figure of `proc`'s report: ring mappings in its process.
fn rings(proc: &Proc) -> usize {
    proc.output()
        .split_whitespace()
        .find_map(|field| field.strip_prefix("rings="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rings= in the output of {}\n{}", proc.name, proc.tail()))
}

/// Waits for `proc` to exit successfully within `timeout`.
fn finish(proc: &mut Proc, timeout: Duration, context: &str) {
    let status = proc.wait(timeout);
    assert!(status.success(), "{context}: {} failed ({status})\n{}", proc.name, proc.tail());
}

struct Counters {
    ring_sockets: u64,
    ring_in: u64,
    ring_out: u64,
    ring_direct: u64,
    carrier_in: u64,
    carrier_out: u64,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ring_sockets={} ring_in_bytes={} ring_out_bytes={} (direct {}) carrier_in_bytes={} \
             carrier_out_bytes={}",
            self.ring_sockets,
            self.ring_in,
            self.ring_out,
            self.ring_direct,
            self.carrier_in,
            self.carrier_out
        )
    }
}

fn counters(net: &Net) -> Counters {
    let stackd = net.stackd();
    Counters {
        ring_sockets: stackd.counter("ring_sockets"),
        ring_in: stackd.counter("ring_in_bytes"),
        ring_out: stackd.counter("ring_out_bytes"),
        ring_direct: stackd.counter("ring_direct_bytes"),
        carrier_in: stackd.counter("carrier_in_bytes"),
        carrier_out: stackd.counter("carrier_out_bytes"),
    }
}

/// A client's report: the download it got and the digest the server computed of its upload.
fn check_client_report(client: &mut Proc, download: (&str, usize), upload: &str, context: &str) {
    let got = words(client, "download");
    assert_eq!(
        (got[0].as_str(), got[1].parse::<usize>().unwrap()),
        download,
        "{context}: the download arrived altered\n{}",
        client.tail()
    );
    let uploaded = words(client, "uploaded");
    assert_eq!(uploaded[0], upload, "{context}: the server received an altered upload");
}

/// Checks the daemon moved exactly `sent` bytes from the program to the engine and `received`
/// from the engine to the program (the only connection of the run), and that rings carried
/// them on the fast path only; returns the counters for the caller's checks of the split.
fn check_counts(net: &Net, route: &Route, sent: u64, received: u64, context: &str) -> Counters {
    let seen = counters(net);
    eprintln!("{context}: {seen:?}");
    assert_eq!(
        (seen.ring_in + seen.carrier_in, seen.ring_out + seen.carrier_out),
        (sent, received),
        "{context}: bytes lost or counted twice: {seen:?}"
    );
    if fast(net, route) {
        assert_eq!(seen.ring_sockets, 1, "{context}: {seen:?}");
    } else {
        assert_eq!(
            (seen.ring_sockets, seen.ring_in, seen.ring_out),
            (0, 0, 0),
            "{context}: rings on the trap path: {seen:?}"
        );
    }
    seen
}

/// Checks which plane carried a transfer: the exact counts, and on the fast path the rings
/// carried all of it but what the engine received before the program's library asked for
/// rings (the peer may send the moment the connection exists), which the carrier holds within
/// its socket buffer.
fn check_planes(net: &Net, route: &Route, sent: u64, received: u64, context: &str) {
    if !joyride(net) {
        return;
    }
    let seen = check_counts(net, route, sent, received, context);
    if fast(net, route) {
        let before_rings = MIB as u64;
        assert!(
            seen.ring_in + before_rings >= sent && seen.ring_out + before_rings >= received,
            "{context}: the payload did not go through the rings: {seen:?}"
        );
        // Most of what came in went from the frame straight into the ring (the engine's buffer
        // takes a segment only while the program lags).
        assert!(
            seen.ring_direct <= seen.ring_out && seen.ring_direct >= received / 4,
            "{context}: the engine did not deliver into the ring: {seen:?}"
        );
    }
}

/// A client under joyride downloads 32 MiB from a kernel-side server while it uploads 32 MiB,
/// shuts its write side, and reads the server's digest of the upload to EOF.
#[test]
fn client_moves_32_mib_each_way_with_a_half_close() {
    for route in routes("remote rings, client 32 MiB", &[Tool::Python]) {
        let net = Net::new(Mode::from_env());
        let context = format!("{route:?} client 32 MiB");
        let down = net.dir.join("down");
        let up = net.dir.join("up");
        let down_digest = write_payload_file(&down, 32 * MIB, 0x6101);
        let up_digest = write_payload_file(&up, 32 * MIB, 0x6102);
        let mut server = kernel_peer(
            &net,
            "kernel-server",
            &["server", HOST_IP, "7610", down.to_str().unwrap()],
        );
        server.wait_line("listening", START);
        let size = (32 * MIB).to_string();
        let mut client = program(
            &net,
            &route,
            "client",
            &["client", HOST_IP, "7610", up.to_str().unwrap(), &size],
        );
        finish(&mut client, TRANSFER, &context);
        finish(&mut server, START, &context);
        check_client_report(&mut client, (&down_digest, 32 * MIB), &up_digest, &context);
        let received = words(&mut server, "received");
        assert_eq!(received[..2], [up_digest.clone(), size.clone()], "{context}");
        check_route_rings(&net, &route, &client, &context);
        // The program received the download and the digest line after it.
        check_planes(&net, &route, (32 * MIB) as u64, (32 * MIB + 65) as u64, &context);
    }
}

/// A server under joyride accepts a kernel client and streams 32 MiB each way.
#[test]
fn server_moves_32_mib_each_way_with_a_kernel_client() {
    for route in routes("remote rings, server 32 MiB", &[Tool::Python]) {
        let net = Net::new(Mode::from_env());
        let context = format!("{route:?} server 32 MiB");
        let down = net.dir.join("down");
        let up = net.dir.join("up");
        let down_digest = write_payload_file(&down, 32 * MIB, 0x6201);
        let up_digest = write_payload_file(&up, 32 * MIB, 0x6202);
        let mut server =
            program(&net, &route, "server", &["server", "0.0.0.0", "7650", down.to_str().unwrap()]);
        server.wait_line("listening", START);
        let size = (32 * MIB).to_string();
        let mut client = kernel_peer(
            &net,
            "kernel-client",
            &["client", STACK_IP, "7650", up.to_str().unwrap(), &size],
        );
        finish(&mut client, TRANSFER, &context);
        finish(&mut server, START, &context);
        check_client_report(&mut client, (&down_digest, 32 * MIB), &up_digest, &context);
        let received = words(&mut server, "received");
        assert_eq!(received[..2], [up_digest.clone(), size.clone()], "{context}");
        check_route_rings(&net, &route, &server, &context);
        check_planes(&net, &route, (32 * MIB + 65) as u64, (32 * MIB) as u64, &context);
    }
}

/// A static program (no library: the carrier) reads 100 003 bytes of a download and writes
/// 3 000 017 of an upload, then execs a dynamic image that finishes both on the inherited
/// socket. The peer keeps sending meanwhile, so carrier bytes are unread at the exec; on the
/// fast path the new image asks for rings and stackd must take over at exact counts.
#[test]
fn stream_started_on_the_carrier_continues_after_exec() {
    let tools = [Tool::Python, Tool::Gcc];
    for route in routes("remote rings, exec mid-stream", &tools) {
        let net = Net::new(Mode::from_env());
        let context = format!("{route:?} exec mid-stream");
        let exec = common::compile_c("remote_exec", true, &net.dir.path);
        let down = net.dir.join("down");
        let up = net.dir.join("up");
        let prefix = net.dir.join("prefix");
        let (down_len, up_len) = (8 * MIB, 8 * MIB);
        let (down_head, up_head) = (100_003, 3_000_017);
        let down_digest = write_payload_file(&down, down_len, 0x6301);
        let up_digest = write_payload_file(&up, up_len, 0x6302);
        let mut server = kernel_peer(
            &net,
            "kernel-server",
            &["server", HOST_IP, "7620", down.to_str().unwrap()],
        );
        server.wait_line("listening", START);
        let script = script();
        let args = [
            exec.to_str().unwrap(),
            HOST_IP,
            "7620",
            &down_head.to_string(),
            prefix.to_str().unwrap(),
            up.to_str().unwrap(),
            &up_head.to_string(),
            "python3",
            &script,
            "continue",
            prefix.to_str().unwrap(),
            &down_len.to_string(),
            up.to_str().unwrap(),
            &up_head.to_string(),
        ];
        let mut client = net.spawn("exec-client", app_on(&net, &route, &args));
        finish(&mut client, TRANSFER, &context);
        finish(&mut server, START, &context);
        client.wait_line("handed over after 100003 down, 3000017 up", START);
        assert_eq!(
            std::fs::metadata(&prefix).unwrap().len(),
            down_head as u64,
            "{context}: the static image's part"
        );
        check_client_report(&mut client, (&down_digest, down_len), &up_digest, &context);
        let received = words(&mut server, "received");
        assert_eq!(received[..2], [up_digest.clone(), up_len.to_string()], "{context}");
        check_route_rings(&net, &route, &client, &context);
        if !joyride(&net) {
            continue;
        }
        let seen = check_counts(&net, &route, up_len as u64, (down_len + 65) as u64, &context);
        if fast(&net, &route) {
            assert!(seen.ring_in > 0 && seen.ring_out > 0, "{context}: {seen:?}");
            // The static image's part went through the carrier; the download's carrier bytes
            // beyond it were written while the static image sent its 3 MB, and were still
            // unread when the rings took over (the case this test is about).
            assert!(seen.carrier_in >= up_head as u64, "{context}: {seen:?}");
            assert!(seen.carrier_out > down_head as u64, "{context}: nothing unread: {seen:?}");
        }
    }
}

/// A non-blocking connect that the peer holds up (its accept queue is full, so the kernel drops
/// the SYNs): EINPROGRESS, then the socket stays unwritable, refuses data with EAGAIN and
/// reports SO_ERROR 0; once the peer accepts, it polls writable with SO_ERROR 0 and an
/// edge-triggered epoll loop moves 8 MiB each way.
#[test]
fn nonblocking_connect_held_up_then_edge_triggered_transfer() {
    for route in routes("remote rings, non-blocking connect", &[Tool::Python]) {
        let net = Net::new(Mode::from_env());
        let context = format!("{route:?} non-blocking connect");
        let down = net.dir.join("down");
        let up = net.dir.join("up");
        let gate = net.dir.join("gate");
        let down_digest = write_payload_file(&down, 8 * MIB, 0x6401);
        let up_digest = write_payload_file(&up, 8 * MIB, 0x6402);
        let mut server = kernel_peer(
            &net,
            "kernel-server",
            &["gated-server", HOST_IP, "7630", down.to_str().unwrap(), gate.to_str().unwrap()],
        );
        server.wait_line("listening", START);
        let size = (8 * MIB).to_string();
        let mut client = program(
            &net,
            &route,
            "nbclient",
            &["nbclient", HOST_IP, "7630", up.to_str().unwrap(), &size, gate.to_str().unwrap()],
        );
        finish(&mut client, TRANSFER, &context);
        finish(&mut server, START, &context);
        client.wait_line("pending ok", START);
        client.wait_line("connected", START);
        check_client_report(&mut client, (&down_digest, 8 * MIB), &up_digest, &context);
        // The first rings= figure is the pending line's: on the fast path the library asked
        // for rings at EINPROGRESS, so they existed while the connect was held up.
        check_route_rings(&net, &route, &client, &context);
        check_planes(&net, &route, (8 * MIB) as u64, (8 * MIB + 65) as u64, &context);
    }
}

/// A non-blocking connect to a port nobody listens on reports ECONNREFUSED through SO_ERROR.
#[test]
fn nonblocking_connect_to_a_closed_port_is_refused() {
    for route in routes("remote rings, refused connect", &[Tool::Python]) {
        let net = Net::new(Mode::from_env());
        let mut client = program(&net, &route, "refused", &["refused", HOST_IP, "7640"]);
        finish(&mut client, START, &format!("{route:?} refused"));
        assert_eq!(
            words(&mut client, "so_error"),
            ["ECONNREFUSED"],
            "{route:?}: refused connect\n{}",
            client.tail()
        );
    }
}

/// A program under joyride sends 200 requests to a kernel-side echo server, each after the
/// answer to the one before: every answer is its request, and each message but the first
/// hands the connection over (the request after an answer, the answer after a request:
/// `ring_turns` on the fast path, `carrier_turns` on the trap path), which is when stackd polls
/// for the other side instead of sleeping (`busy_polls`).
#[test]
fn request_response_hands_the_rings_over_and_stackd_polls_for_the_answers() {
    for route in routes("remote rings, request/response", &[Tool::Python]) {
        let net = Net::new(Mode::from_env());
        let context = format!("{route:?} request/response");
        let mut server = kernel_peer(&net, "kernel-echo", &["echo", HOST_IP, "7620"]);
        server.wait_line("listening", START);
        let (count, size) = (200usize, 100usize);
        let args = ["exchange", HOST_IP, "7620", &count.to_string(), &size.to_string()];
        let mut client = program(&net, &route, "exchange", &args);
        finish(&mut client, TRANSFER, &context);
        finish(&mut server, START, &context);
        let requests: Vec<u8> =
            (0..count).flat_map(|i| (0..size).map(move |j| ((7 * i + j) % 251) as u8)).collect();
        let exchanged = words(&mut client, "exchanged");
        assert_eq!(exchanged[..2], [count.to_string(), sha256_hex(&requests)], "{context}");
        assert_eq!(words(&mut server, "echoed"), [(count * size).to_string()], "{context}");
        check_route_rings(&net, &route, &client, &context);
        if !joyride(&net) {
            continue;
        }
        let stackd = net.stackd();
        let (on_rings, on_carrier) =
            (stackd.counter("ring_turns"), stackd.counter("carrier_turns"));
        let started = stackd.counter("busy_polls") + stackd.counter("busy_polls_paused");
        eprintln!("{context}: turns {on_rings} on rings, {on_carrier} on the carrier; {started} polls started or paused");
        // Each plane counts its own: the fast path maps the rings before the first request.
        let (turns, elsewhere) =
            if fast(&net, &route) { (on_rings, on_carrier) } else { (on_carrier, on_rings) };
        // Every message but the first request follows one the other way.
        assert_eq!(turns, 2 * count as u64 - 1, "{context}: turns");
        assert_eq!(elsewhere, 0, "{context}: turns on the other plane");
        // The event loop looks at the count between its turns, so turns that came in one
        // pass start one poll; a poll that is neither started nor paused is a bug.
        assert!(started > 0 && started <= turns, "{context}: {started} polls, {turns} turns");
    }
}

/// A program that closes its connection with a download unread resets it: the kernel-side
/// sender's next sends fail with ECONNRESET or EPIPE (not a timeout).
#[test]
fn closing_with_data_unread_resets_the_kernel_peer() {
    for route in routes("remote rings, close with data unread", &[Tool::Python]) {
        let net = Net::new(Mode::from_env());
        let context = format!("{route:?} close with data unread");
        let block = net.dir.join("block");
        write_payload_file(&block, MIB, 0x6601);
        let mut server = kernel_peer(
            &net,
            "kernel-blaster",
            &["blast", HOST_IP, "7660", block.to_str().unwrap()],
        );
        server.wait_line("listening", START);
        let n = 300_007;
        let mut client =
            program(&net, &route, "partial", &["partial", HOST_IP, "7660", &n.to_string()]);
        finish(&mut client, TRANSFER, &context);
        check_route_rings(&net, &route, &client, &context);
        let read = words(&mut client, "read");
        assert_eq!(
            read[..2],
            [sha256_hex(&payload(MIB, 0x6601)[..n]), n.to_string()],
            "{context}: the part read"
        );
        if joyride(&net) {
            // A stream one way never hands the connection over: nothing to poll for.
            let stackd = net.stackd();
            let turns = ["ring_turns", "carrier_turns", "busy_polls"].map(|c| stackd.counter(c));
            assert_eq!(turns, [0; 3], "{context}: ring_turns, carrier_turns, busy_polls");
        }
        // The blaster's SO_SNDTIMEO (30 s) bounds how long a missing reset takes to show.
        finish(&mut server, Duration::from_secs(60), &context);
        let failed = server.wait_line("send ", START);
        eprintln!("{context}: {failed}");
        assert!(
            failed.starts_with("send failed ECONNRESET ")
                || failed.starts_with("send failed EPIPE "),
            "{context}: the kernel peer was not reset: {failed}\n{}",
            if joyride(&net) { net.stackd().tail() } else { String::new() }
        );
    }
}

/// The kernel peer resets the connection (SO_LINGER 0, close): a program that read everything
/// and is waiting in recv gets ECONNRESET; one that still had data unread when the reset came
/// gets what the stack had received (a prefix of the data) and then ECONNRESET — never a
/// clean EOF.
#[test]
fn reset_by_the_kernel_peer_is_econnreset() {
    for route in routes("remote rings, reset by the peer", &[Tool::Python]) {
        let net = Net::new(Mode::from_env());
        let block = net.dir.join("block");
        let size = 2 * MIB + 3;
        let digest = write_payload_file(&block, size, 0x6701);
        let bytes = payload(size, 0x6701);
        for (port, when, mode) in [("7670", "after", "ack"), ("7671", "before", "late")] {
            let context = format!("{route:?} reset by the peer, {mode}");
            let mut server = kernel_peer(
                &net,
                &format!("kernel-rst-{mode}"),
                &["rst", HOST_IP, port, block.to_str().unwrap(), when],
            );
            server.wait_line("listening", START);
            let mut client = program(
                &net,
                &route,
                &format!("expect-reset-{mode}"),
                &["expect-reset", HOST_IP, port, &size.to_string(), mode],
            );
            finish(&mut client, TRANSFER, &context);
            finish(&mut server, START, &context);
            check_route_rings(&net, &route, &client, &context);
            let got = words(&mut client, "got");
            eprintln!("{context}: {got:?}");
            let len: usize = got[1].parse().unwrap();
            assert!(len <= size, "{context}: {got:?}");
            assert_eq!(got[0], sha256_hex(&bytes[..len]), "{context}: not a prefix of the data");
            if mode == "ack" {
                assert_eq!((got[0].as_str(), len), (digest.as_str(), size), "{context}");
            } else {
                // The peer's first window reached the stack before its RST: it is delivered
                // before the error, as the kernel does.
                assert!(len > 0, "{context}: the data received before the reset was lost");
            }
            assert_eq!(got[2], "end=ECONNRESET", "{context}: {got:?}\n{}", client.tail());
        }
    }
}

/// The kernel peer resets the connection while the program has not read: every byte the stack
/// acknowledged before the RST is still delivered, then ECONNRESET — as the kernel's TCP does
/// (its receive queue survives a reset). The peer measures what was acknowledged (SIOCOUTQ)
/// once its sends stop progressing (the stack's window is closed), resets, and only then lets
/// the program read.
///
/// This test found that stackd used to drop the bytes still in the engine's receive queue
/// when the RST came (the pump's program → engine step took the reset from the engine and
/// released the socket): now the failure waits until the program has been given every byte
/// (`failure_waits` in stackd's sockets module), on both routes, as natively.
#[test]
fn reset_by_the_kernel_peer_keeps_the_data_the_stack_acknowledged() {
    let mut failures = Vec::new();
    for route in routes("remote rings, reset keeps acknowledged data", &[Tool::Python]) {
        let net = Net::new(Mode::from_env());
        let context = format!("{route:?} reset keeps acknowledged data");
        let block = net.dir.join("block");
        let gate = net.dir.join("gate");
        let size = 8 * MIB;
        write_payload_file(&block, size, 0x6801);
        let bytes = payload(size, 0x6801);
        let mut server = kernel_peer(
            &net,
            "kernel-rst-acked",
            &["rst-acked", HOST_IP, "7672", block.to_str().unwrap(), gate.to_str().unwrap()],
        );
        server.wait_line("listening", START);
        let mut client = program(
            &net,
            &route,
            "read-after-reset",
            &["read-after-reset", HOST_IP, "7672", gate.to_str().unwrap()],
        );
        finish(&mut client, TRANSFER, &context);
        finish(&mut server, START, &context);
        check_route_rings(&net, &route, &client, &context);
        let acked: usize = words(&mut server, "acked")[0].parse().unwrap();
        let got = words(&mut client, "got");
        eprintln!("{context}: acked {acked}, got {got:?}");
        assert!(acked > 0 && acked < size, "{context}: the window never closed: acked {acked}");
        let len: usize = got[1].parse().unwrap();
        assert!(len <= acked, "{context}: more than was acknowledged: {got:?}");
        assert_eq!(got[0], sha256_hex(&bytes[..len]), "{context}: not a prefix of the data");
        // Both routes run before the verdict, so that a failure says which ones lose data.
        if (len, got[2].as_str()) != (acked, "end=ECONNRESET") {
            failures.push(format!("{context}: acknowledged {acked}, delivered {len}, {}", got[2]));
        }
    }
    assert!(failures.is_empty(), "not every acknowledged byte, then ECONNRESET: {failures:#?}");
}

/// `joyride ss` names the ring plane of an open remote connection on the fast path, and only
/// there.
#[test]
fn ss_shows_the_ring_plane_of_an_open_connection() {
    if Mode::from_env() != Mode::Joyride {
        return;
    }
    for route in routes("remote rings, ss", &[Tool::Python]) {
        let net = Net::new(Mode::Joyride);
        let context = format!("{route:?} ss");
        let gate = net.dir.join("gate");
        let mut server =
            kernel_peer(&net, "kernel-hold", &["hold", HOST_IP, "7680", gate.to_str().unwrap()]);
        server.wait_line("listening", START);
        let mut client = program(&net, &route, "wait-eof", &["wait-eof", HOST_IP, "7680"]);
        server.wait_line("accepted", START);
        let peer = format!("{HOST_IP}:7680");
        let mut details = None;
        let found = common::eventually(START, || {
            details = net
                .stackd()
                .socket_lines()
                .into_iter()
                .find(|line| line.peer == peer && line.state == "ESTAB")
                .map(|line| line.details);
            details.as_ref().is_some_and(|d| !fast(&net, &route) || d.contains(" plane:rings"))
        });
        let lines = net.stackd().socket_lines();
        assert!(found, "{context}: no established line (with rings) for {peer}: {lines:#?}");
        if !fast(&net, &route) {
            assert!(!details.unwrap().contains("plane:rings"), "{context}: {lines:#?}");
        }
        std::fs::write(&gate, b"").unwrap();
        finish(&mut server, START, &context);
        finish(&mut client, START, &context);
        assert_eq!(words(&mut client, "got"), ["5"], "{context}");
    }
}
