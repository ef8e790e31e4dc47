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
    for route in paths(&format!("fast path, {mode} echo")) {
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
