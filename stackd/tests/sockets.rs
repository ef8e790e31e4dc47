//! Programs' sockets on joyride-stackd, through the control protocol and carriers, against the
//! kernel's TCP and UDP on the far side of the daemon's TAP: downloads by curl, uploads to a
//! kernel server, UDP echo both ways, connect and reset semantics, a thousand connections, and
//! a client that misbehaves, and local connections (spliced, no TCP). Each test has its own
//! namespace and daemon. Needs root.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use stackd::client::{Client, StackSocket};
use stackd::proto::{
    datagram, Family, Operation, OptionName, OptionValue, ProtocolError, Reply, SocketKind,
};

mod common;

use common::{counter, is_root, wait_for, Daemon, Netns};

const STACK: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("SKIPPED: joyride-stackd needs CAP_NET_ADMIN for its TAP; run the tests as root");
    }
    !is_root()
}

/// A daemon in a namespace of its own, and a client with a session.
fn daemon_with_session(iface: &str) -> (Netns, Daemon, Client) {
    let ns = Netns::new();
    let daemon = Daemon::start(&ns, iface, &[]);
    let mut client = daemon.client();
    client.open_session("stackd socket test", &[std::process::id()]).unwrap();
    (ns, daemon, client)
}

/// `len` bytes of a deterministic pseudo-random stream (xorshift), so that no two windows of
/// it look alike and a misplaced segment changes the digest.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn stream(carrier: OwnedFd) -> UnixStream {
    let stream = UnixStream::from(carrier);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

fn v4(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn poll_revents(fd: std::os::fd::BorrowedFd<'_>, timeout_ms: i32) -> i16 {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    assert!(n >= 0, "poll failed");
    pfd.revents
}

/// A python program run in the namespace; its stdout is read line by line.
struct Python {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Python {
    fn start(ns: &Netns, program: &str) -> Python {
        let mut child = ns
            .command("python3")
            .args(["-c", program])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Python { child, stdout }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the python peer ended early");
        line.trim().to_owned()
    }

    /// Writes a line to the program's stdin.
    fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listener on the stack at `port`.
fn listen(client: &mut Client, port: u16, backlog: u32) -> StackSocket {
    let listener = client.socket(Family::Inet, SocketKind::Stream).unwrap();
    client.set_option(listener.token, OptionName::ReuseAddr, OptionValue::Int(1)).unwrap();
    client.bind(listener.token, v4(Ipv4Addr::UNSPECIFIED, port)).unwrap();
    client.listen(listener.token, backlog).unwrap();
    listener
}

#[test]
fn kernel_curl_downloads_32_mib_from_a_server_on_the_stack() {
    if skip_unless_root() {
        return;
    }
    let (ns, daemon, mut client) = daemon_with_session("jrdl0");
    serve_download_to_curl(&ns, &daemon, &mut client);
}

/// The same download with the DPDK backend on a net_tap vdev (the kernel side of the vdev
/// is the host; the test gives it its address, as DESIGN.md says someone must).
#[cfg(feature = "dpdk")]
#[test]
fn kernel_curl_downloads_32_mib_through_dpdk_net_tap() {
    if skip_unless_root() {
        return;
    }
    let ns = Netns::new();
    let prefix = format!("jrdl{}", std::process::id());
    let kernel_side = "jrdpdl0";
    let eal = format!(
        "-l 0 --no-huge --no-pci --file-prefix={prefix} --vdev=net_tap0,iface={kernel_side}"
    );
    let daemon = Daemon::start(&ns, "net_tap0", &["--backend", "dpdk", "--dpdk-args", &eal]);
    wait_for(
        || ns.run(&["ip", "link", "show", kernel_side]).status.success(),
        "net_tap's kernel side",
    );
    assert!(ns.run(&["ip", "addr", "add", "10.77.0.1/24", "dev", kernel_side]).status.success());
    assert!(ns.run(&["ip", "link", "set", kernel_side, "up"]).status.success());
    let mut client = daemon.client();
    client.open_session("dpdk download test", &[std::process::id()]).unwrap();
    serve_download_to_curl(&ns, &daemon, &mut client);
    drop(daemon);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

/// A one-file HTTP server on the stack that kernel-side curl downloads 32 MiB from; checks
/// the digest, the addresses, the owner in the socket list and the byte counters.
fn serve_download_to_curl(ns: &Netns, daemon: &Daemon, client: &mut Client) {
    let listener = listen(client, 8080, 16);
    assert_eq!(
        client.get_option(listener.token, OptionName::AcceptConn).unwrap(),
        OptionValue::Int(1)
    );
    let body = payload(32 << 20, 0xd0d0);
    let curl = ns
        .command("sh")
        .args(["-c", "curl -sSf --max-time 120 http://10.77.0.2:8080/file | sha256sum"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let (connection, peer) =
        client.accept_blocking(listener.token, listener.carrier.as_fd(), IO_TIMEOUT).unwrap();
    assert_eq!(peer.ip(), std::net::IpAddr::V4(HOST));
    assert_eq!(client.peer_address(connection.token).unwrap(), peer);
    assert_eq!(client.local_address(connection.token).unwrap(), v4(STACK, 8080));
    let owners = match client.call(Operation::Sockets { offset: 0 }).unwrap() {
        Reply::Sockets { sockets, .. } => sockets,
        other => panic!("{other:?}"),
    };
    let line = owners.iter().find(|line| line.state == "LISTEN").expect("the listener is listed");
    assert_eq!(line.local, "0.0.0.0:8080");
    assert!(line.owner.contains(&std::process::id().to_string()), "{line:?}");

    let mut http = stream(connection.carrier);
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        assert_eq!(http.read(&mut byte).unwrap(), 1, "request cut short");
        request.push(byte[0]);
    }
    assert!(request.starts_with(b"GET /file HTTP/1.1\r\n"), "{request:?}");
    let header =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    http.write_all(header.as_bytes()).unwrap();
    http.write_all(&body).unwrap();
    http.shutdown(std::net::Shutdown::Write).unwrap();
    // curl closes after the body: end of stream, then the socket goes.
    let mut rest = Vec::new();
    http.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    let output = curl.wait_with_output().unwrap();
    let digest = String::from_utf8(output.stdout).unwrap();
    assert_eq!(digest.split_whitespace().next(), Some(sha256_hex(&body).as_str()));
    drop(http);
    wait_for(|| counter(&mut daemon.client(), "sockets") == 1, "the connection to be released");
    assert_eq!(counter(client, "carrier_in_bytes"), (body.len() + header.len()) as u64);
    assert_eq!(counter(client, "carrier_out_bytes"), request.len() as u64);
}

#[test]
fn a_client_on_the_stack_uploads_32_mib_to_a_kernel_server() {
    if skip_unless_root() {
        return;
    }
    let (ns, _daemon, mut client) = daemon_with_session("jrul0");
    let mut server = Python::start(
        &ns,
        r#"
import socket, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 9000)); s.listen(1); print("ready", flush=True)
c, a = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
c.sendall(b"received"); c.close()
print(a[0], n, h.hexdigest(), flush=True)
"#,
    );
    assert_eq!(server.line(), "ready");
    let body = payload(32 << 20, 0x0b0e);
    let socket = client.socket(Family::Inet, SocketKind::Stream).unwrap();
    client.connect_blocking(&socket, v4(HOST, 9000), IO_TIMEOUT).unwrap();
    let local = client.local_address(socket.token).unwrap();
    assert_eq!(local.ip(), std::net::IpAddr::V4(STACK));
    let mut upload = stream(socket.carrier.try_clone().unwrap());
    upload.write_all(&body).unwrap();
    upload.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    upload.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "received");
    assert_eq!(server.line(), format!("10.77.0.2 {} {}", body.len(), sha256_hex(&body)));
}

#[test]
fn udp_echo_through_the_stack_both_ways() {
    if skip_unless_root() {
        return;
    }
    let (ns, _daemon, mut client) = daemon_with_session("jrudp0");

    // An echo server on the stack, unconnected: every datagram carries its address header.
    let server = client.socket(Family::Inet, SocketKind::Datagram).unwrap();
    client.bind(server.token, v4(Ipv4Addr::UNSPECIFIED, 7000)).unwrap();
    let server_carrier = server.carrier.try_clone().unwrap();
    let echo = std::thread::spawn(move || {
        let carrier = datagram_carrier(server_carrier);
        let mut buf = vec![0u8; 70000];
        let mut echoed = 0;
        while echoed < 64 {
            let n = match carrier.recv(&mut buf) {
                Ok(n) => n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => panic!("{error}"),
            };
            let (from, payload) = datagram::split(&buf[..n]).expect("address header");
            let mut reply = datagram::header(from).to_vec();
            reply.extend_from_slice(payload);
            carrier.send(&reply).unwrap();
            echoed += 1;
        }
        echoed
    });
    // Sizes include one that IP must fragment (8000 bytes over a 1500-byte MTU).
    let mut peer = Python::start(
        &ns,
        r#"
import socket, hashlib
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
ok = 0
for i in range(64):
    size = 8000 if i == 63 else 1 + (i * 97) % 1400
    data = hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
    data = data[:size]
    s.sendto(data, ("10.77.0.2", 7000))
    back, frm = s.recvfrom(65536)
    ok += back == data and frm == ("10.77.0.2", 7000)
print("echoed", ok, flush=True)
"#,
    );
    assert_eq!(peer.line(), "echoed 64");
    assert_eq!(echo.join().unwrap(), 64);

    // A connected client on the stack against a kernel echo server: bare datagrams.
    let mut kernel_echo = Python::start(
        &ns,
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.77.0.1", 7001))
print("ready", flush=True)
for i in range(32):
    d, a = s.recvfrom(65536); s.sendto(d[::-1], a)
"#,
    );
    assert_eq!(kernel_echo.line(), "ready");
    let udp = client.socket(Family::Inet, SocketKind::Datagram).unwrap();
    client.connect_socket(udp.token, v4(HOST, 7001)).unwrap();
    assert_eq!(client.peer_address(udp.token).unwrap(), v4(HOST, 7001));
    let carrier = datagram_carrier(udp.carrier.try_clone().unwrap());
    let mut buf = vec![0u8; 70000];
    for i in 0..32usize {
        let data = payload(1 + i * 131, i as u64);
        carrier.send(&data).unwrap();
        let n = carrier.recv(&mut buf).unwrap();
        let reversed: Vec<u8> = data.iter().rev().copied().collect();
        assert_eq!(&buf[..n], &reversed[..], "datagram {i}");
    }
}

/// The carrier of a UDP socket as a seqpacket socket with timeouts.
fn datagram_carrier(carrier: OwnedFd) -> std::os::unix::net::UnixDatagram {
    // A seqpacket socket reads and writes whole messages with recv/send like a datagram one.
    let socket = std::os::unix::net::UnixDatagram::from(carrier);
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket
}

#[test]
fn connect_readiness_errors_and_resets_look_like_the_kernels() {
    if skip_unless_root() {
        return;
    }
    let (ns, _daemon, mut client) = daemon_with_session("jrconn0");

    // Refused: EINPROGRESS, then the carrier reports error/hang-up, SO_ERROR is ECONNREFUSED
    // once, and reading the carrier gives ECONNRESET.
    let refused = client.socket(Family::Inet, SocketKind::Stream).unwrap();
    assert_eq!(poll_revents(refused.carrier.as_fd(), 0) & libc::POLLOUT, 0, "not writable");
    let error = client.connect_socket(refused.token, v4(HOST, 1)).unwrap_err();
    assert_eq!(error.errno(), libc::EINPROGRESS);
    let revents = poll_revents(refused.carrier.as_fd(), 5000);
    assert_ne!(revents & libc::POLLHUP, 0, "{revents:#x}");
    assert_eq!(
        client.get_option(refused.token, OptionName::Error).unwrap(),
        OptionValue::Int(libc::ECONNREFUSED.into())
    );
    assert_eq!(client.get_option(refused.token, OptionName::Error).unwrap(), OptionValue::Int(0));
    let error = stream(refused.carrier).read(&mut [0; 16]).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ECONNRESET));

    // Accepted, then reset by the peer (SO_LINGER 0): SO_ERROR is ECONNRESET and the program
    // reads the end of the stream or ECONNRESET, never data that was not sent.
    let mut server = Python::start(
        &ns,
        r#"
import socket, struct
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 9100)); s.listen(1); print("ready", flush=True)
c, a = s.accept(); c.sendall(b"bye")
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
input(); c.close(); print("reset", flush=True)
"#,
    );
    assert_eq!(server.line(), "ready");
    let socket = client.socket(Family::Inet, SocketKind::Stream).unwrap();
    client.connect_blocking(&socket, v4(HOST, 9100), IO_TIMEOUT).unwrap();
    assert_ne!(poll_revents(socket.carrier.as_fd(), 0) & libc::POLLOUT, 0, "writable");
    let mut connection = stream(socket.carrier.try_clone().unwrap());
    let mut bye = [0u8; 3];
    connection.read_exact(&mut bye).unwrap();
    assert_eq!(&bye, b"bye");
    server.send_line("reset now");
    assert_eq!(server.line(), "reset");
    let mut rest = [0u8; 16];
    match connection.read(&mut rest) {
        Ok(0) => {}
        Err(error) => assert_eq!(error.raw_os_error(), Some(libc::ECONNRESET)),
        Ok(n) => panic!("{n} bytes after the reset"),
    }
    wait_for(
        || {
            client.get_option(socket.token, OptionName::Error).unwrap()
                == OptionValue::Int(libc::ECONNRESET.into())
        },
        "SO_ERROR to report the reset",
    );
}

#[test]
fn a_thousand_concurrent_connections_complete_and_memory_returns_to_idle() {
    if skip_unless_root() {
        return;
    }
    let (ns, daemon, mut client) = daemon_with_session("jrthou0");
    let idle_sockets = counter(&mut client, "engine_sockets");
    let idle_fds = open_descriptors(daemon.child.id());
    let listener = listen(&mut client, 8000, 1024);
    const CONNECTIONS: usize = 1000;
    let mut peer = Python::start(
        &ns,
        r#"
import socket
conns = [socket.create_connection(("10.77.0.2", 8000), timeout=30) for i in range(1000)]
print("connected", flush=True)
for i, c in enumerate(conns): c.sendall(b"hello %04d\n" % i)
ok = sum(c.recv(64) == b"HELLO\n" for c in conns)
print("ok", ok, flush=True)
input()
for c in conns: c.close()
"#,
    );
    let mut accepted = Vec::with_capacity(CONNECTIONS);
    while accepted.len() < CONNECTIONS {
        let (connection, _) =
            client.accept_blocking(listener.token, listener.carrier.as_fd(), IO_TIMEOUT).unwrap();
        accepted.push(stream(connection.carrier));
    }
    assert_eq!(peer.line(), "connected");
    let mut seen = vec![false; CONNECTIONS];
    for connection in &mut accepted {
        let mut line = [0u8; 11];
        connection.read_exact(&mut line).unwrap();
        let text = std::str::from_utf8(&line).unwrap();
        let index: usize = text["hello ".len()..10].parse().unwrap();
        assert!(!seen[index], "connection {index} twice");
        seen[index] = true;
        connection.write_all(b"HELLO\n").unwrap();
    }
    assert_eq!(peer.line(), "ok 1000");
    // A thousand idle connections cost an idle daemon nothing: it sleeps in epoll.
    let before = cpu_ticks(daemon.child.id());
    std::thread::sleep(Duration::from_secs(1));
    let busy = cpu_ticks(daemon.child.id()) - before;
    assert!(busy <= 10, "an idle daemon used {busy} clock ticks in a second");
    peer.send_line("close");
    for mut connection in accepted {
        let mut rest = Vec::new();
        connection.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    // The kernel closed first (its side holds TIME-WAIT): the stack's side is gone once the
    // last ACKs arrive; then only the listener remains, and after it nothing.
    wait_for(|| counter(&mut client, "engine_sockets") == idle_sockets + 1, "connections to end");
    assert_eq!(counter(&mut client, "sockets"), 1);
    drop(listener);
    wait_for(|| counter(&mut client, "engine_sockets") == idle_sockets, "the listener to go");
    assert_eq!(counter(&mut client, "sockets"), 0);
    assert_eq!(open_descriptors(daemon.child.id()), idle_fds, "descriptors back to idle");
}

/// User and system time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|dir| dir.count()).unwrap_or(0)
}

#[test]
fn bad_requests_foreign_tokens_and_vanishing_clients_are_refused_without_leaks() {
    if skip_unless_root() {
        return;
    }
    let (_ns, daemon, mut alice) = daemon_with_session("jrbad0");
    let idle_fds = open_descriptors(daemon.child.id());
    let socket = alice.socket(Family::Inet, SocketKind::Stream).unwrap();

    // Another session cannot name Alice's socket, nor a made-up one; no session, no sockets.
    let mut bob = daemon.client();
    let refused = bob.socket(Family::Inet, SocketKind::Stream).unwrap_err();
    assert!(matches!(refused, stackd::client::ClientError::Refused(ProtocolError::NoSession)));
    bob.open_session("bob", &[]).unwrap();
    let foreign = bob.local_address(socket.token).unwrap_err();
    assert!(matches!(foreign, stackd::client::ClientError::Refused(ProtocolError::UnknownSocket)));
    assert_eq!(foreign.errno(), libc::EBADF);
    let made_up = stackd::proto::Token(socket.token.0 ^ 1);
    assert!(alice.local_address(made_up).is_err());
    let stolen_session = bob.call(Operation::JoinSession { session: stackd::proto::Token(7) });
    assert!(stolen_session.is_err());

    // Sharing is explicit and one-time; holding the carrier is proof enough to identify it.
    let Reply::Transfer { transfer } =
        alice.call(Operation::Share { socket: socket.token }).unwrap()
    else {
        panic!("no transfer token")
    };
    let adopted = bob.call(Operation::Adopt { transfer }).unwrap();
    assert!(matches!(adopted, Reply::Identified { socket: t, .. } if t == socket.token));
    assert!(bob.call(Operation::Adopt { transfer }).is_err(), "a transfer token works once");
    let mut carol = daemon.client();
    carol.open_session("carol", &[]).unwrap();
    let (token, family, kind, listening) = carol.identify(socket.carrier.as_fd()).unwrap();
    assert_eq!(
        (token, family, kind, listening),
        (socket.token, Family::Inet, SocketKind::Stream, false)
    );
    let (pipe_read, _pipe_write) = nix::unistd::pipe().unwrap();
    let not_a_carrier = carol.identify(pipe_read.as_fd()).unwrap_err();
    assert!(matches!(
        not_a_carrier,
        stackd::client::ClientError::Refused(ProtocolError::Descriptor { .. })
    ));

    // Garbage and truncated requests get errors on a connection that stays usable.
    alice.send_raw(b"\xff\xfe not json").unwrap();
    let answer = String::from_utf8(alice.receive_raw().unwrap()).unwrap();
    assert!(answer.contains("bad-request"), "{answer}");
    alice.send_raw(br#"{"version":1,"id":12,"op":{"op":"socket","family":"inet""#).unwrap();
    let answer = String::from_utf8(alice.receive_raw().unwrap()).unwrap();
    assert!(answer.contains("bad-request") && answer.contains("\"id\":0"), "{answer}");
    alice
        .send_raw(br#"{"version":1,"id":13,"op":{"op":"bind","socket":"zz","addr":"1.2.3.4:5"}}"#)
        .unwrap();
    let answer = String::from_utf8(alice.receive_raw().unwrap()).unwrap();
    assert!(answer.contains("bad-request") && answer.contains("\"id\":13"), "{answer}");

    // A client that asks for a socket and vanishes before the answer leaks nothing: the
    // carrier in the unread reply dies with the connection, and the socket with it.
    for _ in 0..20 {
        let mut vanishing = daemon.client();
        vanishing.open_session("vanishing", &[]).unwrap();
        vanishing
            .send_raw(
                br#"{"version":1,"id":2,"op":{"op":"socket","family":"inet","kind":"stream"}}"#,
            )
            .unwrap();
        drop(vanishing);
    }
    wait_for(|| counter(&mut alice, "sockets") == 1, "vanished clients' sockets to go");
    assert_eq!(counter(&mut alice, "sessions"), 3, "alice, bob and carol");

    // Closing every copy of the carrier releases the socket, whichever sessions knew it.
    drop(socket);
    wait_for(|| counter(&mut alice, "sockets") == 0, "the socket to be released");
    drop((bob, carol));
    wait_for(|| counter(&mut alice, "sessions") == 1, "sessions to end with their clients");
    assert_eq!(open_descriptors(daemon.child.id()), idle_fds, "descriptors back to idle");
    assert!(matches!(alice.call(Operation::Counters), Ok(Reply::Counters { .. })));
}

#[test]
fn half_close_and_socket_options() {
    if skip_unless_root() {
        return;
    }
    let (ns, _daemon, mut client) = daemon_with_session("jrhalf0");
    let mut server = Python::start(
        &ns,
        r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 9200)); s.listen(1); print("ready", flush=True)
c, a = s.accept(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
c.sendall(b"got %d" % n); c.close(); print("done", flush=True)
"#,
    );
    assert_eq!(server.line(), "ready");
    let socket = client.socket(Family::Inet, SocketKind::Stream).unwrap();
    let token = socket.token;
    let set = |client: &mut Client, name, value| client.set_option(token, name, value);
    set(&mut client, OptionName::NoDelay, OptionValue::Int(1)).unwrap();
    set(&mut client, OptionName::SendBuffer, OptionValue::Int(65536)).unwrap();
    set(&mut client, OptionName::KeepIdle, OptionValue::Int(30)).unwrap();
    set(&mut client, OptionName::Congestion, OptionValue::Text("reno".into())).unwrap();
    let unknown = set(&mut client, OptionName::Congestion, OptionValue::Text("bbr".into()));
    assert_eq!(unknown.unwrap_err().errno(), libc::ENOENT);
    let read_only = set(&mut client, OptionName::Error, OptionValue::Int(0));
    assert_eq!(read_only.unwrap_err().errno(), libc::ENOPROTOOPT);
    assert_eq!(
        set(&mut client, OptionName::KeepIdle, OptionValue::Int(0)).unwrap_err().errno(),
        libc::EINVAL
    );
    let not_connected = client.peer_address(token).unwrap_err();
    assert_eq!(not_connected.errno(), libc::ENOTCONN);

    client.connect_blocking(&socket, v4(HOST, 9200), IO_TIMEOUT).unwrap();
    let get = |client: &mut Client, name| client.get_option(token, name).unwrap();
    assert_eq!(get(&mut client, OptionName::NoDelay), OptionValue::Int(1));
    assert_eq!(get(&mut client, OptionName::SendBuffer), OptionValue::Int(131072));
    assert_eq!(get(&mut client, OptionName::KeepIdle), OptionValue::Int(30));
    assert_eq!(get(&mut client, OptionName::Congestion), OptionValue::Text("reno".into()));
    assert_eq!(get(&mut client, OptionName::Type), OptionValue::Int(libc::SOCK_STREAM.into()));
    assert_eq!(get(&mut client, OptionName::AcceptConn), OptionValue::Int(0));
    let OptionValue::TcpInfo(info) = get(&mut client, OptionName::TcpInfo) else {
        panic!("TCP_INFO")
    };
    assert_eq!(info.state, 1, "ESTABLISHED");
    assert_eq!(info.snd_mss, 1448, "1460 less the timestamp option, as Linux reports it");

    // Half close: the FIN follows the last byte written; the reply still arrives.
    let mut connection = stream(socket.carrier.try_clone().unwrap());
    connection.write_all(&payload(100_000, 3)).unwrap();
    client.shutdown(&socket, stackd::proto::ShutdownHow::Write).unwrap();
    let mut reply = String::new();
    connection.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "got 100000");
    assert_eq!(server.line(), "done");
}

#[test]
fn a_listener_shared_by_two_sessions_serves_both_and_closes_with_its_last_carrier() {
    if skip_unless_root() {
        return;
    }
    let (ns, daemon, mut first) = daemon_with_session("jrshare0");
    let listener = listen(&mut first, 8081, 8);
    // A second program (another session) that received the listener's descriptor.
    let mut second = daemon.client();
    second.open_session("second worker", &[]).unwrap();
    let copy = listener.carrier.try_clone().unwrap();
    let (token, _, kind, listening) = second.identify(copy.as_fd()).unwrap();
    assert_eq!((token, kind, listening), (listener.token, SocketKind::Stream, true));

    let mut peer = Python::start(
        &ns,
        r#"
import socket
a = socket.create_connection(("10.77.0.2", 8081), timeout=10)
b = socket.create_connection(("10.77.0.2", 8081), timeout=10)
print(a.recv(16).decode(), b.recv(16).decode(), flush=True)
a.close(); b.close(); input()
try:
    socket.create_connection(("10.77.0.2", 8081), timeout=10); print("connected", flush=True)
except ConnectionRefusedError:
    print("refused", flush=True)
"#,
    );
    let (one, _) =
        first.accept_blocking(listener.token, listener.carrier.as_fd(), IO_TIMEOUT).unwrap();
    let (two, _) = second.accept_blocking(token, copy.as_fd(), IO_TIMEOUT).unwrap();
    stream(one.carrier).write_all(b"first").unwrap();
    stream(two.carrier).write_all(b"second").unwrap();
    let mut words: Vec<String> = peer.line().split(' ').map(str::to_owned).collect();
    words.sort();
    assert_eq!(words, ["first", "second"]);
    drop(listener);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counter(&mut first, "sockets"), 1, "one descriptor still holds the listener");
    drop(copy);
    wait_for(|| counter(&mut first, "sockets") == 0, "the listener to close");
    peer.send_line("go");
    assert_eq!(peer.line(), "refused");
}

#[test]
fn a_socket_outlives_its_session_while_the_program_holds_its_carrier() {
    if skip_unless_root() {
        return;
    }
    let (ns, daemon, mut client) = daemon_with_session("jrorph0");
    let mut server = Python::start(
        &ns,
        r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 9300)); s.listen(1); print("ready", flush=True)
c, a = s.accept()
while True:
    b = c.recv(100)
    if not b: break
    c.sendall(b.upper())
print("closed", flush=True)
"#,
    );
    assert_eq!(server.line(), "ready");
    let socket = client.socket(Family::Inet, SocketKind::Stream).unwrap();
    client.connect_blocking(&socket, v4(HOST, 9300), IO_TIMEOUT).unwrap();
    drop(client); // the supervisor goes; the program keeps its socket
    let mut observer = daemon.client();
    wait_for(|| counter(&mut observer, "sessions") == 0, "the session to end");
    let mut connection = stream(socket.carrier);
    connection.write_all(b"still here").unwrap();
    let mut answer = [0u8; 10];
    connection.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"STILL HERE");
    drop(connection);
    assert_eq!(server.line(), "closed");
    wait_for(|| counter(&mut observer, "sockets") == 0, "the socket to go with its carrier");
}

/// A connect to the daemon's own address, from a session of its own.
fn local_client(daemon: &Daemon, port: u16) -> (Client, StackSocket, Result<(), ProtocolError>) {
    let mut client = daemon.client();
    client.open_session("local client", &[std::process::id()]).unwrap();
    let socket = client.socket(Family::Inet, SocketKind::Stream).unwrap();
    let outcome = client.connect_socket(socket.token, v4(STACK, port)).map_err(|e| match e {
        stackd::client::ClientError::Refused(error) => error,
        other => panic!("{other}"),
    });
    (client, socket, outcome)
}

fn is_writable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    poll_revents(fd, 0) & libc::POLLOUT != 0
}

#[test]
fn local_connections_are_spliced_with_backlog_names_rings_and_release() {
    if skip_unless_root() {
        return;
    }
    let ns = Netns::new();
    let daemon = Daemon::start(&ns, "jrloc0", &["--ring-size", "16384"]);
    let mut server = daemon.client();
    server.open_session("local server", &[std::process::id()]).unwrap();
    let listener = listen(&mut server, 7400, 1);

    // Nobody listens on 7401: refused at once, as the kernel answers its own address.
    let (c0, s0, refused) = local_client(&daemon, 7401);
    assert_eq!(refused, Err(ProtocolError::Errno { errno: libc::ECONNREFUSED }));
    drop((s0, c0));

    // Backlog 1 completes two connections before an accept (Linux's backlog + 1); the third
    // stays in progress, not writable, until an accept makes room.
    let (mut c1, s1, first) = local_client(&daemon, 7400);
    let (c2, s2, second) = local_client(&daemon, 7400);
    let (mut c3, s3, third) = local_client(&daemon, 7400);
    assert_eq!((first, second), (Ok(()), Ok(())));
    assert_eq!(third, Err(ProtocolError::Errno { errno: libc::EINPROGRESS }));
    assert!(is_writable(s1.carrier.as_fd()) && is_writable(s2.carrier.as_fd()));
    assert!(!is_writable(s3.carrier.as_fd()), "a connect waiting for backlog room is writable");
    let mut s1_stream = stream(s1.carrier.try_clone().unwrap());
    s1_stream.write_all(b"before accept").unwrap();

    let (a1, peer) = server.accept(listener.token, listener.carrier.as_fd()).unwrap();
    let local1 = c1.local_address(s1.token).unwrap();
    assert_eq!(peer, local1, "accept's peer is the client's name");
    assert_eq!(local1.ip(), std::net::IpAddr::V4(STACK));
    assert_eq!(c1.peer_address(s1.token).unwrap(), v4(STACK, 7400));
    assert_eq!(server.local_address(a1.token).unwrap(), v4(STACK, 7400));
    assert_eq!(server.peer_address(a1.token).unwrap(), local1);
    wait_for(|| is_writable(s3.carrier.as_fd()), "the third connect to complete");
    assert_eq!(c3.get_option(s3.token, OptionName::Error).unwrap(), OptionValue::Int(0));
    let mut a1_stream = stream(a1.carrier.try_clone().unwrap());
    let mut got = [0u8; 13];
    a1_stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"before accept", "bytes written before the accept wait for it");
    let Ok(OptionValue::TcpInfo(info)) = c1.get_option(s1.token, OptionName::TcpInfo) else {
        panic!("no TCP_INFO")
    };
    assert_eq!(info.state, 1, "ESTABLISHED");

    // Rings: made once, the same for both sides, crossed (one side's rx is the other's tx).
    let (c_rx, c_tx, capacity) = c1.rings(s1.token).unwrap();
    let (a_rx, a_tx, _) = server.rings(a1.token).unwrap();
    assert_eq!(capacity, 16384);
    let inode = |fd: &OwnedFd| nix::sys::stat::fstat(fd).unwrap().st_ino;
    let size = |fd: &OwnedFd| nix::sys::stat::fstat(fd).unwrap().st_size;
    assert_eq!((inode(&c_rx), inode(&c_tx)), (inode(&a_tx), inode(&a_rx)));
    assert_ne!(inode(&c_rx), inode(&c_tx));
    assert_eq!(size(&c_rx), 4096 + 16384);
    let writer = stackd::ring::RingRegion::map(c_tx).unwrap();
    let reader = stackd::ring::RingRegion::map(a_rx).unwrap();
    assert_eq!(writer.producer().unwrap().write(b"through the ring").unwrap(), 16);
    let mut buf = [0u8; 32];
    assert_eq!(reader.consumer().unwrap().read(&mut buf).unwrap(), 16);
    assert_eq!(&buf[..16], b"through the ring");
    // Only a session that holds the socket gets its rings; a socket that is not local, none.
    assert_eq!(server.rings(s1.token).unwrap_err().errno(), libc::EBADF);
    assert_eq!(server.rings(listener.token).unwrap_err().errno(), libc::ENOPROTOOPT);
    assert!(c3.rings(s3.token).is_ok(), "a complete connection has rings before its accept");

    // Closing the listener resets the connections still queued: the client reads ECONNRESET.
    server.close(listener.token).unwrap();
    drop(listener);
    let mut s2_stream = stream(s2.carrier.try_clone().unwrap());
    let error = s2_stream.read(&mut buf).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ECONNRESET));

    // Every side closed and every client gone: nothing is left in the books, or the listing.
    drop((s1_stream, a1_stream, s2_stream, writer, reader));
    drop((s1, a1, s2, s3, c1, c2, c3));
    let books = |server: &mut Client| {
        ["sockets", "engine_sockets", "local_connections"].map(|name| counter(server, name))
    };
    wait_for(|| books(&mut server) == [0, 0, 0], "the local connections to be released");
    let Reply::Sockets { total, .. } = server.call(Operation::Sockets { offset: 0 }).unwrap()
    else {
        panic!("not a socket list")
    };
    assert_eq!(total, 0);
    assert_eq!(counter(&mut server, "tcp_active_opens"), 0, "TCP ran for a local connect");
}
