//! The local path: two programs under two `joyride run`s (two supervisors, two stackd sessions)
//! talking to each other at stackd's own address, which stackd splices into one unix stream
//! pair instead of running TCP (stackd's `sockets` module, "Local connections"). Checked: the
//! bytes arrive (SHA-256) without crossing the link, names and errors are exactly the kernel's,
//! `joyride ss` shows the connection while it lives, a listener closed with a connection
//! queued resets it, the fast-path library's ring hand-out, and that a storm of connections
//! leaves stackd's books as they were.
//!
//! The tests that exercise the local path run once with `--no-fast-path` and once more with the
//! fast-path library preloaded (libjoyride_fastpath.so next to the joyride binary under test).
//! `JOYRIDE_TEST_NATIVE=1` runs the programs on the kernel's stack instead (both in one
//! namespace that owns 10.77.0.2), which shows the expectations are the kernel's.

use std::path::Path;
use std::time::Duration;

mod common;

use common::{
    app_on, compile_c, eventually, paths, sha256_file, skip, write_payload_file, Mode, Net, Proc,
    Route, Tool, BUSYBOX, STACK_IP,
};

const START: Duration = Duration::from_secs(15);
const TRANSFER: Duration = Duration::from_secs(90);
const MIB: usize = 1 << 20;

fn spawn(net: &Net, path: &Route, name: &str, argv: &[&str]) -> Proc {
    net.spawn(name, app_on(net, path, argv))
}

fn peer_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs/local_peer.py")
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

fn touch(dir: &Path, name: &str) {
    std::fs::write(dir.join(name), b"").expect("create a step file");
}

/// The local connections stackd lists (joyride mode).
fn local_lines(net: &Net) -> Vec<stackd::proto::SocketLine> {
    net.stackd()
        .socket_lines()
        .into_iter()
        .filter(|line| line.details.starts_with("local"))
        .collect()
}

#[test]
fn static_busybox_wget_fetches_32_mib_from_busybox_httpd_over_the_local_path() {
    if skip("local busybox httpd → wget", &[Tool::StaticBusybox]) {
        return;
    }
    for path in paths() {
        let net = Net::new(Mode::from_env());
        let www = net.dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        let digest = write_payload_file(&www.join("blob"), 32 * MIB, 0x10ca1);
        let www_arg = www.to_str().unwrap().to_owned();
        let mut httpd =
            spawn(&net, &path, "httpd", &[BUSYBOX, "httpd", "-f", "-p", "8080", "-h", &www_arg]);
        // Probing from the kernel's side crosses the link: it happens before the count starts.
        assert!(net.host.wait_tcp(STACK_IP, 8080, START), "{}", httpd.tail());
        assert!(httpd.try_status().is_none(), "{}", httpd.tail());
        let before = net.link_bytes();
        let out = net.dir.join("blob.out");
        let out_arg = out.to_str().unwrap().to_owned();
        let url = format!("http://{STACK_IP}:8080/blob");
        let mut wget = spawn(&net, &path, "wget", &[BUSYBOX, "wget", "-q", "-O", &out_arg, &url]);
        let status = wget.wait(TRANSFER);
        assert!(status.success(), "{path:?}: wget failed ({status})\n{}", wget.tail());
        assert_eq!(sha256_file(&out), digest, "{path:?}: the download differs");
        if net.mode == Mode::Joyride {
            let moved = net.link_bytes() - before;
            assert!(
                moved < 64 * 1024,
                "{path:?}: {moved} bytes crossed the link: the download did not take the local path"
            );
        }
        httpd.kill();
    }
}

#[test]
fn python_peers_see_kernel_names_errors_and_resets_on_the_local_path() {
    if skip("local python peers", &[Tool::Python]) {
        return;
    }
    for path in paths() {
        let net = Net::new(Mode::from_env());
        let steps = net.dir.join("steps");
        std::fs::create_dir_all(&steps).unwrap();
        let steps_arg = steps.to_str().unwrap().to_owned();
        let script = peer_script();
        let mut server =
            spawn(&net, &path, "server", &["python3", &script, "server", "7100", &steps_arg]);
        server.wait_line("listening", START);
        let mut client =
            spawn(&net, &path, "client", &["python3", &script, "client", "7100", &steps_arg]);
        let connected = client.wait_line("connected ", START);
        let client_name = connected
            .split_whitespace()
            .find_map(|field| field.strip_prefix("name="))
            .expect("the client's name")
            .to_owned();
        let port: u16 = client_name.rsplit(':').next().unwrap().parse().unwrap();
        assert!(client_name.starts_with(&format!("{STACK_IP}:")) && port != 0, "{connected}");
        assert_eq!(connected, format!("connected name={client_name} peername={STACK_IP}:7100"));
        assert_eq!(
            server.wait_line("accepted ", START),
            format!("accepted peer={client_name} name={STACK_IP}:7100 peername={client_name}")
        );
        // TCP_INFO's first byte is the state: 1, ESTABLISHED.
        assert_eq!(client.wait_line("nodelay=", START), "nodelay=1 tcp_state=1 mss=65483");
        assert_eq!(client.wait_line("reply=", START), "reply=b'echo:ping\\n'");

        let ready = steps.join("client-ready");
        assert!(eventually(START, || ready.exists()), "{}", client.tail());
        if net.mode == Mode::Joyride {
            let lines = local_lines(&net);
            let mut pairs: Vec<(String, String, String)> = lines
                .iter()
                .map(|line| (line.state.clone(), line.local.clone(), line.peer.clone()))
                .collect();
            pairs.sort();
            let server_name = format!("{STACK_IP}:7100");
            let mut expected = vec![
                ("ESTAB".to_owned(), client_name.clone(), server_name.clone()),
                ("ESTAB".to_owned(), server_name, client_name.clone()),
            ];
            expected.sort();
            assert_eq!(pairs, expected, "{path:?}: joyride ss while the connection is open");
            assert!(lines.iter().all(|line| line.owner.contains("pids=")), "{lines:?}");
        }

        touch(&steps, "close-server");
        assert_eq!(client.wait_line("after-close=", START), "after-close=b''");
        server.wait_line("closed", START);
        if net.mode == Mode::Joyride {
            assert!(
                eventually(START, || local_lines(&net).is_empty()),
                "{path:?}: joyride ss still shows the closed connection: {:?}",
                local_lines(&net)
            );
        }

        touch(&steps, "go-on");
        assert_eq!(client.wait_line("closed-port=", START), "closed-port=ECONNREFUSED");
        client.wait_line("queued-connected", START);
        server.wait_line("listener-closed", START);
        assert_eq!(client.wait_line("queued-recv=", START), "queued-recv=ECONNRESET");
        let status = client.wait(START);
        assert!(status.success(), "{path:?}: client {status}\n{}", client.tail());
        let status = server.wait(START);
        assert!(status.success(), "{path:?}: server {status}\n{}", server.tail());
        if net.mode == Mode::Joyride {
            let stackd = net.stackd();
            assert!(
                eventually(START, || stackd.counter("local_connections") == 0),
                "{path:?}: a local connection outlived both programs"
            );
        }
    }
}

/// UDP between two programs at stackd's own address: delivered inside the engine, datagrams of
/// every size (fragment-sized ones included) intact both ways, unconnected and connected; a
/// connected socket aimed at a closed port finds ECONNREFUSED in SO_ERROR, as with the kernel
/// (where the read itself fails too; a carrier cannot fail a read).
#[test]
fn udp_between_two_programs_at_the_stacks_own_address() {
    if skip("local UDP", &[Tool::Python]) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/local_udp.py");
    let net = Net::new(Mode::from_env());
    let mut server = net.spawn_app("server", &["python3", script, "server", "7520"]);
    server.wait_line("listening", START);
    let mut client = net.spawn_app("client", &["python3", script, "client", STACK_IP, "7520", "9"]);
    let status = client.wait(TRANSFER);
    assert!(status.success(), "client failed\n{}\n{}", client.tail(), server.tail());
    assert_eq!(client.wait_line("plain good=", START), "plain good=100");
    assert_eq!(client.wait_line("linked good=", START), "linked good=100");
    assert_eq!(client.wait_line("closed-port=", START), "closed-port=ECONNREFUSED");
    assert_eq!(server.wait_line("served ", START), "served 200");
}

#[test]
fn a_dynamic_program_gets_a_local_connections_rings_through_the_private_getsockopt() {
    if skip("rings getsockopt", &[Tool::Gcc]) || Mode::from_env() == Mode::Native {
        return;
    }
    let net = Net::new(Mode::Joyride);
    let program = compile_c("rings", false, &net.dir.path);
    let program = program.to_str().unwrap().to_owned();
    // The daemon's default ring size: 1 MiB per direction.
    let mut rings = spawn(&net, &Route::Trap, "rings", &[&program, "7200", "1048576"]);
    let status = rings.wait(START);
    assert!(status.success(), "rings failed ({status})\n{}", rings.tail());
    assert_eq!(rings.output().trim_end(), "ok");
    let stackd = net.stackd();
    assert!(
        eventually(START, || stackd.counter("local_connections") == 0),
        "the connection (and its rings) outlived the program"
    );
}

#[test]
fn a_thousand_local_connections_leave_stackds_books_as_they_were() {
    if skip("local connection storm", &[Tool::Python]) || Mode::from_env() == Mode::Native {
        return;
    }
    const COUNT: &str = "1000";
    for path in paths() {
        let net = Net::new(Mode::Joyride);
        let stackd = net.stackd();
        let script = peer_script();
        let mut server = spawn(
            &net,
            &path,
            "storm-server",
            &["python3", &script, "storm-server", "7300", COUNT],
        );
        server.wait_line("listening", START);
        let idle = (
            stackd.counter("sockets"),
            stackd.counter("engine_sockets"),
            stackd.counter("local_connections"),
        );
        assert_eq!(idle.2, 0);
        let mut client = spawn(
            &net,
            &path,
            "storm-client",
            &["python3", &script, "storm-client", "7300", COUNT],
        );
        let status = client.wait(TRANSFER);
        assert!(status.success(), "{path:?}: storm client {status}\n{}", client.tail());
        assert_eq!(client.output().trim_end(), "done 1000");
        server.wait_line("served", START);
        let now = || {
            (
                stackd.counter("sockets"),
                stackd.counter("engine_sockets"),
                stackd.counter("local_connections"),
            )
        };
        assert!(
            eventually(START, || now() == idle),
            "{path:?}: stackd holds {:?} (sockets, engine sockets, local connections) after the \
             storm, {idle:?} before",
            now()
        );
        assert_eq!(stackd.counter("tcp_active_opens"), 0, "{path:?}: TCP ran for a local connect");
        server.kill();
    }
}
