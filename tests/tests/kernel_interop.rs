//! The fbsd-tcp engine against Linux's own TCP/UDP/ICMP over a real TAP device.
//!
//! Each test builds a private link (a `Fixture`: the kernel at 10.77.0.1 in a namespace of its
//! own, the engine at 10.77.0.2 on the TAP) and drives the engine from the test thread while
//! kernel-side programs (python3 scripts, ping) act as peers. Every wait is bounded; the
//! namespace, the TAP and the programs go away when the test ends, whether it passed or not.
//! Without CAP_NET_ADMIN (or without `ip`, `/dev/net/tun`, python3) each test says why it is
//! skipped and passes.

use std::net::SocketAddr;
use std::time::Duration;

use fbsd_tcp::socket::tcp::TcpInfo;
use fbsd_tcp::{AddressFamily, Errno, Shutdown, SocketHandle, SocketType};
use joyride_tests::kernel::which;
use joyride_tests::{
    engine_addr, hex_digest, kernel_addr, Driver, Fixture, KernelProcess, Pattern, ENGINE_IP,
    KERNEL_IP,
};
use sha2::{Digest, Sha256};

/// Deadline for one protocol step on an idle two-host link (generous: the machine is shared).
const STEP: Duration = Duration::from_secs(10);
/// Deadline for a bulk transfer.
const BULK: Duration = Duration::from_secs(60);
/// Size of each bulk transfer.
const BULK_BYTES: usize = 32 << 20;

/// Helpers every kernel-side script starts with. A default socket timeout keeps a script from
/// hanging on an engine that stopped answering; the test's own deadline then reports it.
const PRELUDE: &str = r#"
import hashlib, os, socket, struct, sys, threading, time
socket.setdefaulttimeout(30)
KERNEL, ENGINE = "10.77.0.1", "10.77.0.2"

def out(*words):
    print(*words, flush=True)

def listener(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((KERNEL, port))
    s.listen(8)
    out("READY")
    return s

def recv_to_end(c):
    data = b""
    while True:
        d = c.recv(65536)
        if not d:
            return data
        data += d

def tcp_info(c):
    # struct tcp_info: u8 state, ca_state, retransmits, probes, backoff, options,
    # snd_wscale:4 | rcv_wscale:4, flags; u32 rto, ato, snd_mss, rcv_mss, ...
    b = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    snd_mss, rcv_mss = struct.unpack_from("II", b, 16)
    return b[5], b[6] & 15, b[6] >> 4, snd_mss, rcv_mss
"#;

fn python(fx: &Fixture, what: &str, body: &str, args: &[&str]) -> KernelProcess {
    fx.python(what, &format!("{PRELUDE}\n{body}"), args)
}

fn tcp_info(driver: &Driver, handle: SocketHandle) -> TcpInfo {
    driver.stack().tcp_info(handle).unwrap_or_else(|e| panic!("tcp_info({handle:?}): {e}"))
}

/// Whether the engine still holds a TCP connection with `peer` (orphans included), and in which
/// state.
fn engine_connection_state(driver: &Driver, peer: SocketAddr) -> Option<&'static str> {
    driver
        .stack()
        .sockets()
        .into_iter()
        .find(|s| s.kind == SocketType::Stream && SocketAddr::V4(s.peer) == peer)
        .map(|s| s.state)
}

/// Waits until the engine has forgotten every connection with `peer` (CLOSED and freed).
#[track_caller]
fn wait_connection_gone(driver: &mut Driver, peer: SocketAddr) {
    driver.run_until(STEP, "the connection to be freed", |stack, _| {
        let gone = !stack
            .sockets()
            .iter()
            .any(|s| s.kind == SocketType::Stream && SocketAddr::V4(s.peer) == peer);
        gone.then_some(())
    });
}

/// The kernel's TCP sockets in the namespace, as `ss -tanH` lists them (state first).
fn kernel_tcp_sockets(fx: &Fixture) -> String {
    fx.netns.run("ss", &["-tanH"]).unwrap_or_else(|e| panic!("ss in the namespace: {e}"))
}

fn parse_words<const N: usize>(line: &str) -> [String; N] {
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    words.try_into().unwrap_or_else(|w: Vec<String>| panic!("expected {N} words, got {w:?}"))
}

// ---------------------------------------------------------------------------------------------
// ICMP and ARP
// ---------------------------------------------------------------------------------------------

/// A raw-socket ping for machines without iputils: three echo requests, each reply checked for
/// identifier, sequence, payload and checksum. Prints ping's summary line.
const PY_PING: &str = r#"
def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    return ~t & 0xffff

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
ident = os.getpid() & 0xffff
received = 0
for seq in range(1, 4):
    payload = os.urandom(56)
    c = csum(struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload)
    s.sendto(struct.pack("!BBHHH", 8, 0, c, ident, seq) + payload, (ENGINE, 0))
    deadline = time.time() + 2
    while time.time() < deadline:
        try:
            data, addr = s.recvfrom(4096)
        except socket.timeout:
            break
        icmp = data[(data[0] & 15) * 4:]
        if (addr[0] == ENGINE and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq)
                and icmp[8:] == payload and csum(icmp) == 0):
            received += 1
            break
    time.sleep(0.2)
out(f"3 packets transmitted, {received} received")
sys.exit(0 if received == 3 else 1)
"#;

#[test]
fn kernel_pings_the_engine_and_resolves_it_through_arp() {
    let Some(mut fx) = Fixture::new("kernel_pings_the_engine_and_resolves_it_through_arp") else {
        return;
    };
    let mut ping = match which("ping") {
        Some(ping) => {
            let mut cmd = fx.netns.command(&ping.to_string_lossy());
            cmd.args(["-n", "-c", "3", "-W", "2", "-i", "0.2", &ENGINE_IP.to_string()]);
            KernelProcess::spawn(cmd, "ping").unwrap_or_else(|e| panic!("{e}"))
        }
        None => {
            eprintln!("note: no ping in PATH; pinging with a python raw socket instead");
            python(&fx, "python ping", PY_PING, &[])
        }
    };
    ping.expect_success(&mut fx.driver, STEP);
    let output = ping.remaining_lines(Duration::from_secs(2)).join("\n");
    assert!(output.contains("3 packets transmitted, 3 received"), "ping said:\n{output}");

    let neigh = fx
        .netns
        .run("ip", &["neigh", "show", &ENGINE_IP.to_string(), "dev", &fx.tap_name])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        neigh.contains("lladdr 02:00:00:77:00:02"),
        "the kernel's neighbour entry for the engine: {neigh:?}"
    );

    let counters = fx.driver.stack().counters().clone();
    assert_eq!(counters.icmp_rx, 3, "echo requests received: {counters:?}");
    assert_eq!(counters.icmp_tx, 3, "echo replies sent: {counters:?}");
    assert_eq!(counters.icmp_dropped, 0, "{counters:?}");
    assert!(counters.arp_rx >= 1, "the kernel's ARP request: {counters:?}");
    assert!(counters.arp_tx >= 1, "the engine's ARP reply: {counters:?}");
    assert_eq!(counters.ip_checksum_errors, 0, "{counters:?}");
}

// ---------------------------------------------------------------------------------------------
// Handshakes
// ---------------------------------------------------------------------------------------------

#[test]
fn engine_connects_to_a_kernel_listener() {
    let Some(mut fx) = Fixture::new("engine_connects_to_a_kernel_listener") else { return };
    let mut server = python(
        &fx,
        "kernel server",
        r#"
s = listener(5001)
c, peer = s.accept()
out("PEER", peer[0], peer[1])
data = b""
while len(data) < 17:
    d = c.recv(100)
    if not d:
        break
    data += d
out("GOT", data.decode())
c.sendall(b"hello from kernel")
c.close()
"#,
        &[],
    );
    server.expect_prefixed(&mut fx.driver, "READY", STEP);
    let conn = fx.driver.tcp_connect(kernel_addr(5001), STEP);
    let local = fx.driver.stack().local_addr(conn).expect("getsockname");
    assert_eq!(fx.driver.stack().peer_addr(conn), Ok(kernel_addr(5001)));
    let SocketAddr::V4(local_v4) = local else { panic!("AF_INET socket with address {local}") };
    assert_eq!(*local_v4.ip(), ENGINE_IP);
    let (low, high) = fx.driver.stack().config().ephemeral_ports;
    assert!((low..=high).contains(&local_v4.port()), "ephemeral port {local}");
    assert_eq!(tcp_info(&fx.driver, conn).state, "ESTAB");

    let [ip, port] = parse_words(&server.expect_prefixed(&mut fx.driver, "PEER", STEP));
    assert_eq!(format!("{ip}:{port}"), local.to_string(), "the kernel's view of the engine");

    fx.driver.tcp_send_all(conn, b"hello from engine", STEP);
    assert_eq!(server.expect_prefixed(&mut fx.driver, "GOT", STEP), "hello from engine");
    assert_eq!(fx.driver.tcp_recv_to_end(conn, STEP), b"hello from kernel");
    server.expect_success(&mut fx.driver, STEP);
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    wait_connection_gone(&mut fx.driver, kernel_addr(5001));

    let counters = fx.driver.stack().counters();
    assert_eq!(counters.tcp_active_opens, 1, "{counters:?}");
    assert_eq!(counters.tcp_passive_opens, 0, "{counters:?}");
    assert_eq!(counters.tcp_checksum_errors, 0, "{counters:?}");
}

#[test]
fn kernel_connects_to_an_engine_listener() {
    let Some(mut fx) = Fixture::new("kernel_connects_to_an_engine_listener") else { return };
    let listener = fx.driver.tcp_listen(engine_addr(7000), 8);
    let mut client = python(
        &fx,
        "kernel client",
        r#"
c = socket.create_connection((ENGINE, 7000))
out("LOCAL", *c.getsockname())
c.sendall(b"ping from kernel")
data = b""
while len(data) < 16:
    d = c.recv(100)
    if not d:
        break
    data += d
out("GOT", data.decode())
c.close()
"#,
        &[],
    );
    let (conn, peer) = fx.driver.tcp_accept(listener, STEP);
    let [ip, port] = parse_words(&client.expect_prefixed(&mut fx.driver, "LOCAL", STEP));
    assert_eq!(peer.to_string(), format!("{ip}:{port}"), "accept's peer is the kernel client");
    assert_eq!(ip, KERNEL_IP.to_string());
    assert_eq!(fx.driver.stack().peer_addr(conn), Ok(peer));
    assert_eq!(fx.driver.stack().local_addr(conn), Ok(engine_addr(7000)));
    assert_eq!(tcp_info(&fx.driver, conn).state, "ESTAB");

    assert_eq!(fx.driver.tcp_recv_exact(conn, 16, STEP), b"ping from kernel");
    fx.driver.tcp_send_all(conn, b"pong from engine", STEP);
    assert_eq!(client.expect_prefixed(&mut fx.driver, "GOT", STEP), "pong from engine");
    assert_eq!(fx.driver.tcp_recv_to_end(conn, STEP), b"", "EOF after the kernel's close");
    client.expect_success(&mut fx.driver, STEP);
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    wait_connection_gone(&mut fx.driver, peer);

    let counters = fx.driver.stack().counters();
    assert_eq!(counters.tcp_passive_opens, 1, "{counters:?}");
    assert_eq!(counters.tcp_active_opens, 0, "{counters:?}");
}

// ---------------------------------------------------------------------------------------------
// Options negotiated with Linux: window scaling, SACK, timestamps, MSS
// ---------------------------------------------------------------------------------------------

/// Checks the engine's view of a connection against Linux's TCP_INFO line
/// `options snd_wscale rcv_wscale snd_mss rcv_mss`.
#[track_caller]
fn check_negotiated_options(info: &TcpInfo, linux: &str, direction: &str) {
    let [options, snd_wscale, rcv_wscale, snd_mss, _rcv_mss] =
        parse_words::<5>(linux).map(|w| w.parse::<u32>().expect("a number"));
    // TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE
    assert_eq!(options & 7, 7, "{direction}: Linux did not agree on TS, SACK and WS: {linux}");
    assert!(info.timestamps, "{direction}: engine without timestamps: {info:?}");
    assert!(info.sack, "{direction}: engine without SACK: {info:?}");
    assert!(info.rcv_wscale > 0 && info.snd_wscale > 0, "{direction}: no scaling: {info:?}");
    assert_eq!(
        u32::from(info.rcv_wscale),
        snd_wscale,
        "{direction}: the shift the engine announced is the one Linux applies ({linux}): {info:?}"
    );
    assert_eq!(
        u32::from(info.snd_wscale),
        rcv_wscale,
        "{direction}: the engine applies Linux's announced shift ({linux}): {info:?}"
    );
    // The engine announced MSS 1460 (MTU 1500); Linux subtracts the 12 bytes of timestamps.
    assert_eq!(snd_mss, 1448, "{direction}: Linux's sending MSS ({linux})");
    // Linux announced 1460 too; whether the engine reports it with or without the timestamp
    // option's 12 bytes is its choice.
    assert!(
        info.snd_mss == 1460 || info.snd_mss == 1448,
        "{direction}: engine's sending MSS {}: {info:?}",
        info.snd_mss
    );
}

#[test]
fn window_scaling_sack_and_timestamps_are_negotiated_with_linux() {
    let Some(mut fx) = Fixture::new("window_scaling_sack_and_timestamps_are_negotiated_with_linux")
    else {
        return;
    };
    let listener = fx.driver.tcp_listen(engine_addr(7002), 8);
    let mut peer = python(
        &fx,
        "kernel peer",
        r#"
s = listener(5002)
c, _ = s.accept()
out("INFO", *tcp_info(c))
recv_to_end(c)
c.close()
c = socket.create_connection((ENGINE, 7002))
out("INFO", *tcp_info(c))
recv_to_end(c)
c.close()
"#,
        &[],
    );
    peer.expect_prefixed(&mut fx.driver, "READY", STEP);

    let active = fx.driver.tcp_connect(kernel_addr(5002), STEP);
    let linux = peer.expect_prefixed(&mut fx.driver, "INFO", STEP);
    check_negotiated_options(&tcp_info(&fx.driver, active), &linux, "engine connects");
    fx.driver.with_stack(|stack, now| stack.close(now, active)).expect("close");

    let (passive, _) = fx.driver.tcp_accept(listener, STEP);
    let linux = peer.expect_prefixed(&mut fx.driver, "INFO", STEP);
    check_negotiated_options(&tcp_info(&fx.driver, passive), &linux, "kernel connects");
    fx.driver.with_stack(|stack, now| stack.close(now, passive)).expect("close");
    peer.expect_success(&mut fx.driver, STEP);
}

/// The window the engine advertises, as Linux's `tcpi_snd_wnd` reports it, never exceeds the
/// engine's receive buffer, whatever Linux's initial sequence number. Sixteen connections: a
/// mistake that depends on where the ISN falls in sequence space shows with near certainty.
#[test]
fn advertised_window_fits_the_receive_buffer_for_any_peer_isn() {
    let Some(mut fx) = Fixture::new("advertised_window_fits_the_receive_buffer_for_any_peer_isn")
    else {
        return;
    };
    const CONNECTIONS: usize = 16;
    let listener = fx.driver.tcp_listen(engine_addr(7010), CONNECTIONS);
    let mut client = python(
        &fx,
        "kernel client",
        r#"
for i in range(int(sys.argv[1])):
    c = socket.create_connection((ENGINE, 7010))
    c.sendall(b"?")
    assert c.recv(1) == b"!"
    # tcpi_snd_wnd (Linux 5.19+) sits at byte 228 of struct tcp_info.
    b = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232).ljust(232, b"\0")
    out("WND", struct.unpack_from("I", b, 228)[0])
    c.close()
"#,
        &[&CONNECTIONS.to_string()],
    );
    for i in 0..CONNECTIONS {
        let (conn, _) = fx.driver.tcp_accept(listener, STEP);
        let buffer = fx.driver.stack().options(conn).expect("options").recv_buffer;
        assert_eq!(fx.driver.tcp_recv_exact(conn, 1, STEP), b"?");
        let info = tcp_info(&fx.driver, conn);
        assert!(info.rcv_wnd <= buffer, "connection {i}: window beyond the buffer: {info:?}");
        fx.driver.tcp_send_all(conn, b"!", STEP);
        let linux_view: usize =
            client.expect_prefixed(&mut fx.driver, "WND", STEP).parse().expect("a number");
        if linux_view != 0 {
            assert!(
                linux_view <= buffer && linux_view >= buffer / 2,
                "connection {i}: Linux sees a window of {linux_view} for a buffer of {buffer}: \
                 {info:?}"
            );
        }
        assert_eq!(fx.driver.tcp_recv_to_end(conn, STEP), b"");
        fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    }
    client.expect_success(&mut fx.driver, STEP);
}

// ---------------------------------------------------------------------------------------------
// Bulk data with content checks
// ---------------------------------------------------------------------------------------------

fn throughput(bytes: usize, elapsed: Duration) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    format!("{mib:.0} MiB in {elapsed:.2?}: {:.1} MiB/s", mib / elapsed.as_secs_f64())
}

#[test]
fn bulk_engine_to_kernel_arrives_intact() {
    let Some(mut fx) = Fixture::new("bulk_engine_to_kernel_arrives_intact") else { return };
    let mut sink = python(
        &fx,
        "kernel sink",
        r#"
s = listener(5003)
c, _ = s.accept()
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
out("DONE", n, h.hexdigest())
c.close()
"#,
        &[],
    );
    sink.expect_prefixed(&mut fx.driver, "READY", STEP);
    let conn = fx.driver.tcp_connect(kernel_addr(5003), STEP);
    let started = std::time::Instant::now();

    let mut pattern = Pattern::new(0x5eed_0001);
    let mut chunk = vec![0; 256 << 10];
    let mut chunk_at = chunk.len();
    let mut sent = 0;
    let mut hasher = Sha256::new();
    let mut max_snd_wnd = 0;
    fx.driver.run_until(BULK, "the engine to queue all data", |stack, now| {
        let info = stack.tcp_info(conn).expect("tcp_info");
        max_snd_wnd = max_snd_wnd.max(info.snd_wnd);
        while sent < BULK_BYTES {
            if chunk_at == chunk.len() {
                let len = chunk.len().min(BULK_BYTES - sent);
                chunk.truncate(len);
                pattern.fill(&mut chunk);
                hasher.update(&chunk);
                chunk_at = 0;
            }
            match stack.send(conn, &chunk[chunk_at..]) {
                Ok(n) => {
                    chunk_at += n;
                    sent += n;
                }
                Err(Errno::WouldBlock) => return None,
                Err(e) => panic!("send after {sent} bytes: {e}"),
            }
        }
        stack.shutdown(now, conn, Shutdown::Write).expect("shutdown(WR)");
        Some(())
    });
    let [len, digest] = parse_words(&sink.expect_prefixed(&mut fx.driver, "DONE", BULK));
    let elapsed = started.elapsed();
    assert_eq!(len, BULK_BYTES.to_string(), "bytes the kernel received");
    assert_eq!(digest, hex_digest(hasher), "SHA-256 of what the kernel received");
    sink.expect_success(&mut fx.driver, STEP);
    let info = tcp_info(&fx.driver, conn);
    println!(
        "engine -> kernel: {}; engine: retrans {} fast recoveries {} timeouts {}; driver {:?}",
        throughput(BULK_BYTES, elapsed),
        info.total_retrans,
        info.fast_recoveries,
        info.timeouts,
        fx.driver.stats()
    );
    assert_eq!(info.bytes_acked, BULK_BYTES as u64, "every byte acknowledged: {info:?}");
    assert!(
        max_snd_wnd > 65535,
        "Linux's window as the engine saw it never exceeded 64 KiB ({max_snd_wnd}): is its \
         window scale applied?"
    );
    assert_eq!(fx.driver.tcp_recv_to_end(conn, STEP), b"");
    assert_eq!(tcp_info(&fx.driver, conn).state, "TIME-WAIT", "FIN acknowledged, FIN received");
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
}

const PY_BOTH_WAYS: &str = r#"
total, port = int(sys.argv[1]), int(sys.argv[2])
c = socket.create_connection((ENGINE, port))
sent_hash = hashlib.sha256()
failure = []
def sender():
    try:
        left = total
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            sent_hash.update(chunk)
            c.sendall(chunk)
            left -= len(chunk)
        c.shutdown(socket.SHUT_WR)
    except Exception as e:
        failure.append(repr(e))
t = threading.Thread(target=sender)
t.start()
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
t.join()
if failure:
    sys.exit("sender failed: " + failure[0])
out("SENT", total, sent_hash.hexdigest())
out("RECV", n, h.hexdigest())
# struct tcp_info: total_retrans at byte 100; dsack_dups, reord_seen at 216, 220; total_rto,
# total_rto_recoveries (u16) at 240, 242 (Linux 6.7+: zero-filled on older kernels).
b = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 248).ljust(248, b"\0")
retrans, = struct.unpack_from("I", b, 100)
dsack_dups, reord_seen = struct.unpack_from("II", b, 216)
rtos, = struct.unpack_from("H", b, 240)
out("RETRANS", retrans, "rto", rtos, "dsack_dups", dsack_dups, "reord_seen", reord_seen)
c.close()
"#;

/// What [`bulk_both_ways`] saw.
struct BothWays {
    info: TcpInfo,
    linux_retransmits: u64,
    max_sacked: usize,
}

/// The kernel connects to the engine on `port` and both send `total` bytes at once on that one
/// connection, each hashing what it sends and receives; the digests must match crosswise.
/// `loss` is the driver's (inbound, outbound) loss, applied once the connection is up.
fn bulk_both_ways(
    fx: &mut Fixture,
    port: u16,
    total: usize,
    loss: (Option<u64>, Option<u64>),
    label: &str,
) -> BothWays {
    let listener = fx.driver.tcp_listen(engine_addr(port), 8);
    let args = [total.to_string(), port.to_string()];
    let mut peer = python(fx, "kernel peer", PY_BOTH_WAYS, &[&args[0], &args[1]]);
    let (conn, _) = fx.driver.tcp_accept(listener, STEP);
    fx.driver.set_loss(loss.0, loss.1);
    let started = std::time::Instant::now();

    let mut pattern = Pattern::new(0x5eed_0002 ^ u64::from(port));
    let (mut sent, mut received, mut max_sacked) = (0, 0, 0);
    let (mut sent_hash, mut received_hash) = (Sha256::new(), Sha256::new());
    let (mut write_shut, mut eof) = (false, false);
    fx.driver.run_until(BULK, "both directions to finish", |stack, now| {
        max_sacked = max_sacked.max(stack.tcp_info(conn).expect("tcp_info").sacked);
        while sent < total {
            let left = total - sent;
            let result = stack.send_with(conn, |a, b| {
                let a_len = a.len().min(left);
                let b_len = b.len().min(left - a_len);
                pattern.fill(&mut a[..a_len]);
                pattern.fill(&mut b[..b_len]);
                sent_hash.update(&a[..a_len]);
                sent_hash.update(&b[..b_len]);
                a_len + b_len
            });
            match result {
                Ok(0) | Err(Errno::WouldBlock) => break,
                Ok(n) => sent += n,
                Err(e) => panic!("send_with after {sent} bytes: {e}"),
            }
        }
        if sent == total && !write_shut {
            stack.shutdown(now, conn, Shutdown::Write).expect("shutdown(WR)");
            write_shut = true;
        }
        while !eof {
            let result = stack.recv_with(conn, |a, b| {
                received_hash.update(a);
                received_hash.update(b);
                a.len() + b.len()
            });
            match result {
                Ok(0) => eof = true,
                Ok(n) => received += n,
                Err(Errno::WouldBlock) => break,
                Err(e) => panic!("recv_with after {received} bytes: {e}"),
            }
        }
        (write_shut && eof).then_some(())
    });
    let [sent_len, kernel_sent] = parse_words(&peer.expect_prefixed(&mut fx.driver, "SENT", BULK));
    let [recv_len, kernel_received] =
        parse_words(&peer.expect_prefixed(&mut fx.driver, "RECV", BULK));
    let elapsed = started.elapsed();
    assert_eq!(sent_len, total.to_string());
    assert_eq!(received, total, "bytes the engine received");
    assert_eq!(kernel_sent, hex_digest(received_hash), "kernel -> engine content");
    assert_eq!(recv_len, total.to_string(), "bytes the kernel received");
    assert_eq!(kernel_received, hex_digest(sent_hash), "engine -> kernel content");
    let linux_stats = peer.expect_prefixed(&mut fx.driver, "RETRANS", STEP);
    let linux_retransmits = linux_stats
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("Linux's retransmit count in {linux_stats:?}"));
    peer.expect_success(&mut fx.driver, STEP);
    let info = tcp_info(&fx.driver, conn);
    println!(
        "{label}: {} each way at once; engine: retrans {} fast recoveries {} timeouts {} max \
         sacked {max_sacked}; Linux retrans {linux_stats}; driver {:?}",
        throughput(total, elapsed),
        info.total_retrans,
        info.fast_recoveries,
        info.timeouts,
        fx.driver.stats()
    );
    assert_eq!(info.bytes_received, total as u64, "{info:?}");
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    BothWays { info, linux_retransmits, max_sacked }
}

#[test]
fn bulk_both_ways_on_one_connection_arrives_intact() {
    let Some(mut fx) = Fixture::new("bulk_both_ways_on_one_connection_arrives_intact") else {
        return;
    };
    bulk_both_ways(&mut fx, 7003, BULK_BYTES, (None, None), "both ways");
}

/// Every 89th frame from Linux and every 97th frame to it is lost: both ends must recover,
/// the engine from Linux's SACK blocks and Linux from the engine's.
#[test]
fn bulk_both_ways_recovers_from_loss_with_sack() {
    let Some(mut fx) = Fixture::new("bulk_both_ways_recovers_from_loss_with_sack") else {
        return;
    };
    let seen = bulk_both_ways(&mut fx, 7004, 8 << 20, (Some(89), Some(97)), "both ways, lossy");
    assert!(seen.info.total_retrans > 0, "the engine retransmitted: {:?}", seen.info);
    assert!(seen.info.fast_recoveries > 0, "the engine recovered without RTO: {:?}", seen.info);
    assert!(seen.max_sacked > 0, "the engine saw Linux's SACK blocks: {:?}", seen.info);
    assert!(seen.linux_retransmits > 0, "Linux retransmitted what the driver dropped");
}

// ---------------------------------------------------------------------------------------------
// Zero windows
// ---------------------------------------------------------------------------------------------

#[test]
fn engine_sender_waits_out_a_zero_window() {
    let Some(mut fx) = Fixture::new("engine_sender_waits_out_a_zero_window") else { return };
    let mut sink = python(
        &fx,
        "kernel sink",
        r#"
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
s.bind((KERNEL, 5008))
s.listen(1)
out("READY")
c, _ = s.accept()
sys.stdin.readline()
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    h.update(d)
    n += len(d)
out("DONE", n, h.hexdigest())
"#,
        &[],
    );
    sink.expect_prefixed(&mut fx.driver, "READY", STEP);
    let conn = fx.driver.tcp_connect(kernel_addr(5008), STEP);
    let total = 4 << 20;
    let mut data = vec![0; total];
    Pattern::new(0x5eed_0003).fill(&mut data);
    let mut sent = 0;
    // The kernel reads nothing yet: its window closes and the engine's send buffer stops
    // draining.
    fx.driver.run_until(STEP, "Linux to close its window", |stack, _| {
        while let Ok(n) = stack.send(conn, &data[sent..]) {
            sent += n;
        }
        (stack.tcp_info(conn).expect("tcp_info").snd_wnd == 0).then_some(())
    });
    // The window stays shut for a while: the engine probes it and must not give up or send
    // beyond it.
    fx.driver.run_for(Duration::from_millis(1500));
    let info = tcp_info(&fx.driver, conn);
    assert_eq!(info.state, "ESTAB", "{info:?}");
    assert_eq!(info.snd_wnd, 0, "{info:?}");
    sink.send_line("read");
    fx.driver.tcp_send_all(conn, &data[sent..], BULK);
    fx.driver.with_stack(|stack, now| stack.shutdown(now, conn, Shutdown::Write)).expect("shut");
    let [len, digest] = parse_words(&sink.expect_prefixed(&mut fx.driver, "DONE", BULK));
    assert_eq!(len, total.to_string());
    assert_eq!(digest, hex_digest(Sha256::new_with_prefix(&data)));
    sink.expect_success(&mut fx.driver, STEP);
}

#[test]
fn engine_receiver_closes_and_reopens_its_window() {
    let Some(mut fx) = Fixture::new("engine_receiver_closes_and_reopens_its_window") else {
        return;
    };
    let listener = fx.driver.tcp_listen(engine_addr(7009), 8);
    let mut source = python(
        &fx,
        "kernel source",
        r#"
c = socket.create_connection((ENGINE, 7009))
data = os.urandom(4 << 20)
c.sendall(data)
c.shutdown(socket.SHUT_WR)
out("SENT", len(data), hashlib.sha256(data).hexdigest())
recv_to_end(c)
"#,
        &[],
    );
    let (conn, _) = fx.driver.tcp_accept(listener, STEP);
    let buffer = fx.driver.stack().options(conn).expect("options").recv_buffer;
    // Nothing is read: the engine's buffer fills and its window closes.
    let closed = fx.driver.try_run_until(STEP, |stack, _| {
        let info = stack.tcp_info(conn).expect("tcp_info");
        // Less than a segment of room left: receiver SWS avoidance closes the window there.
        (info.recv_queue + info.rcv_mss > buffer).then_some(())
    });
    assert!(
        closed.is_some(),
        "the engine's buffer never filled: {:?}\n{}",
        tcp_info(&fx.driver, conn),
        fx.driver.diagnostics()
    );
    // Linux probes the closed window; the connection must survive without data loss.
    fx.driver.run_for(Duration::from_millis(1500));
    let info = tcp_info(&fx.driver, conn);
    assert_eq!(info.state, "ESTAB", "{info:?}");
    assert!(info.recv_queue <= buffer && info.recv_queue + info.rcv_mss > buffer, "{info:?}");
    // The window is closed but for the rounding of a right edge that is never moved left (each
    // ACK may round it up to the scale unit, as Linux does too): far below a segment's worth
    // per ACK, and nowhere near the buffer.
    assert!(info.rcv_wnd < 1 << 16, "{info:?}");
    println!(
        "engine's closed window: {} bytes (scale unit {})",
        info.rcv_wnd,
        1 << info.rcv_wscale
    );
    let received = fx.driver.tcp_recv_to_end(conn, BULK);
    let [len, digest] = parse_words(&source.expect_prefixed(&mut fx.driver, "SENT", STEP));
    assert_eq!(len, received.len().to_string());
    assert_eq!(digest, hex_digest(Sha256::new_with_prefix(&received)));
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    source.expect_success(&mut fx.driver, STEP);
}

// ---------------------------------------------------------------------------------------------
// Orderly close (FIN)
// ---------------------------------------------------------------------------------------------

#[test]
fn kernel_closes_first() {
    let Some(mut fx) = Fixture::new("kernel_closes_first") else { return };
    let mut server = python(
        &fx,
        "kernel server",
        r#"
s = listener(5004)
c, _ = s.accept()
c.sendall(b"bye from kernel")
c.shutdown(socket.SHUT_WR)
out("GOT", recv_to_end(c).decode())
c.close()
"#,
        &[],
    );
    server.expect_prefixed(&mut fx.driver, "READY", STEP);
    let conn = fx.driver.tcp_connect(kernel_addr(5004), STEP);
    assert_eq!(fx.driver.tcp_recv_to_end(conn, STEP), b"bye from kernel");
    let readiness = fx.driver.stack().readiness(conn).expect("readiness");
    assert!(readiness.read_closed && readiness.readable, "after the kernel's FIN: {readiness:?}");
    assert!(readiness.writable && !readiness.hangup, "half-closed only: {readiness:?}");
    assert_eq!(tcp_info(&fx.driver, conn).state, "CLOSE-WAIT");

    // Half-closed: the engine may still send, and the kernel still receives.
    fx.driver.tcp_send_all(conn, b"reply after your FIN", STEP);
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    assert_eq!(server.expect_prefixed(&mut fx.driver, "GOT", STEP), "reply after your FIN");
    server.expect_success(&mut fx.driver, STEP);
    // LAST-ACK ends with the kernel's ACK: nothing is left of the connection in the engine.
    wait_connection_gone(&mut fx.driver, kernel_addr(5004));
    // The kernel closed first, so TIME-WAIT is its to keep.
    let kernel = kernel_tcp_sockets(&fx);
    assert!(
        kernel.lines().any(|l| l.starts_with("TIME-WAIT") && l.contains("10.77.0.1:5004")),
        "the kernel's sockets:\n{kernel}"
    );
}

#[test]
fn engine_closes_first() {
    let Some(mut fx) = Fixture::new("engine_closes_first") else { return };
    let listener = fx.driver.tcp_listen(engine_addr(7005), 8);
    let mut client = python(
        &fx,
        "kernel client",
        r#"
c = socket.create_connection((ENGINE, 7005))
out("EOF", recv_to_end(c).decode())
sys.stdin.readline()
c.sendall(b"late words from kernel")
c.close()
out("CLOSED")
"#,
        &[],
    );
    let (conn, peer) = fx.driver.tcp_accept(listener, STEP);
    fx.driver.tcp_send_all(conn, b"bye from engine", STEP);
    fx.driver.with_stack(|stack, now| stack.shutdown(now, conn, Shutdown::Write)).expect("shut");
    assert_eq!(client.expect_prefixed(&mut fx.driver, "EOF", STEP), "bye from engine");
    // The kernel acknowledged the FIN and keeps its own direction open.
    fx.driver.run_until(STEP, "FIN-WAIT-2", |stack, _| {
        (stack.tcp_info(conn).expect("tcp_info").state == "FIN-WAIT-2").then_some(())
    });
    let readiness = fx.driver.stack().readiness(conn).expect("readiness");
    assert!(!readiness.read_closed && !readiness.hangup, "only our side closed: {readiness:?}");

    client.send_line("go");
    assert_eq!(fx.driver.tcp_recv_to_end(conn, STEP), b"late words from kernel");
    assert_eq!(tcp_info(&fx.driver, conn).state, "TIME-WAIT");
    let readiness = fx.driver.stack().readiness(conn).expect("readiness");
    assert!(readiness.hangup, "both directions finished: {readiness:?}");
    client.expect_prefixed(&mut fx.driver, "CLOSED", STEP);
    client.expect_success(&mut fx.driver, STEP);
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    // The engine closed first: its orphaned connection waits in TIME-WAIT ...
    assert_eq!(engine_connection_state(&fx.driver, peer), Some("TIME-WAIT"));
    // ... and the kernel's socket went from LAST-ACK to nothing with the engine's ACK.
    let port = format!(":{}", peer.port());
    let mut kernel = String::new();
    for _ in 0..50 {
        kernel = kernel_tcp_sockets(&fx);
        if !kernel.lines().any(|l| l.contains(&port)) {
            break;
        }
        fx.driver.run_for(Duration::from_millis(50));
    }
    assert!(!kernel.lines().any(|l| l.contains(&port)), "the kernel's sockets:\n{kernel}");
}

// ---------------------------------------------------------------------------------------------
// Resets
// ---------------------------------------------------------------------------------------------

#[test]
fn kernel_abort_resets_the_engine() {
    let Some(mut fx) = Fixture::new("kernel_abort_resets_the_engine") else { return };
    let mut server = python(
        &fx,
        "kernel server",
        r#"
s = listener(5006)
c, _ = s.accept()
out("ACCEPTED")
sys.stdin.readline()
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
out("ABORTED")
"#,
        &[],
    );
    server.expect_prefixed(&mut fx.driver, "READY", STEP);
    let conn = fx.driver.tcp_connect(kernel_addr(5006), STEP);
    server.expect_prefixed(&mut fx.driver, "ACCEPTED", STEP);
    server.send_line("abort");
    server.expect_prefixed(&mut fx.driver, "ABORTED", STEP);
    let readiness =
        fx.driver.wait_readiness(conn, STEP, "the reset to show", |r| r.error || r.hangup);
    assert!(readiness.error && readiness.hangup && readiness.readable, "{readiness:?}");
    let mut buf = [0; 16];
    assert_eq!(
        fx.driver.with_stack(|stack, _| stack.recv(conn, &mut buf)),
        Err(Errno::ConnectionReset)
    );
    assert_eq!(tcp_info(&fx.driver, conn).state, "CLOSED");
    server.expect_success(&mut fx.driver, STEP);
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    wait_connection_gone(&mut fx.driver, kernel_addr(5006));
    assert_eq!(fx.driver.stack().counters().tcp_rst_tx, 0, "never answer a reset");
}

#[test]
fn connect_to_a_closed_kernel_port_is_refused() {
    let Some(mut fx) = Fixture::new("connect_to_a_closed_kernel_port_is_refused") else {
        return;
    };
    let conn = fx.driver.tcp_connect_start(kernel_addr(5999));
    assert_eq!(fx.driver.tcp_connect_finish(conn, STEP), Err(Errno::ConnectionRefused));
    assert_eq!(fx.driver.with_stack(|stack, _| stack.take_error(conn)), Ok(None), "taken once");
    fx.driver.with_stack(|stack, now| stack.close(now, conn)).expect("close");
    wait_connection_gone(&mut fx.driver, kernel_addr(5999));
    assert_eq!(fx.driver.stack().counters().tcp_active_opens, 1);
}

#[test]
fn engine_abort_resets_the_kernel() {
    let Some(mut fx) = Fixture::new("engine_abort_resets_the_kernel") else { return };
    let mut server = python(
        &fx,
        "kernel server",
        r#"
s = listener(5007)
c, _ = s.accept()
out("ACCEPTED")
try:
    out("NO RESET", repr(c.recv(100)))
except ConnectionResetError:
    out("RESET")
"#,
        &[],
    );
    server.expect_prefixed(&mut fx.driver, "READY", STEP);
    let conn = fx.driver.tcp_connect(kernel_addr(5007), STEP);
    server.expect_prefixed(&mut fx.driver, "ACCEPTED", STEP);
    fx.driver.with_stack(|stack, now| {
        let mut options = stack.options(conn).expect("options").clone();
        options.linger = Some(Duration::ZERO);
        stack.set_options(now, conn, options).expect("SO_LINGER 0");
        stack.close(now, conn).expect("close");
    });
    let line = server.expect_line(&mut fx.driver, STEP);
    assert_eq!(line, "RESET", "the kernel's recv after the engine's abort");
    server.expect_success(&mut fx.driver, STEP);
    wait_connection_gone(&mut fx.driver, kernel_addr(5007));
}

// ---------------------------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------------------------

#[test]
fn engine_echoes_udp_datagrams() {
    let Some(mut fx) = Fixture::new("engine_echoes_udp_datagrams") else { return };
    // Empty, tiny, exactly one full frame (1472), one byte over (fragmented), and the largest
    // UDP datagram IPv4 carries (45 fragments each way).
    let sizes = [0usize, 1, 100, 1472, 1473, 3000, 8000, 65507];
    let sock = fx.driver.with_stack(|stack, _| {
        let sock = stack.socket(AddressFamily::Inet, SocketType::Datagram).expect("socket");
        stack.bind(sock, engine_addr(7008)).expect("bind");
        sock
    });
    let size_args: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    let size_args: Vec<&str> = size_args.iter().map(String::as_str).collect();
    let mut client = python(
        &fx,
        "kernel UDP client",
        r#"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for size in map(int, sys.argv[1:]):
    payload = os.urandom(size)
    s.sendto(payload, (ENGINE, 7008))
    data, addr = s.recvfrom(70000)
    if data != payload or addr != (ENGINE, 7008):
        sys.exit(f"bad echo of {size} bytes: {len(data)} bytes from {addr}")
    out("ECHO", size)
out("DONE")
"#,
        &size_args,
    );
    let mut seen = Vec::new();
    let mut buf = vec![0; 65536];
    let mut echoed = Vec::new();
    fx.driver.run_until(STEP, "the client to finish", |stack, _| {
        loop {
            match stack.recv_from(sock, &mut buf) {
                Ok((len, full_len, from)) => {
                    assert_eq!(len, full_len, "datagram truncated");
                    seen.push(len);
                    let sent = stack.send_to(sock, &buf[..len], Some(from)).expect("send_to");
                    assert_eq!(sent, len);
                }
                Err(Errno::WouldBlock) => break,
                Err(e) => panic!("recv_from: {e}"),
            }
        }
        loop {
            match client.try_line() {
                Ok(Some(line)) if line == "DONE" => return Some(()),
                Ok(Some(line)) => echoed.push(line),
                Ok(None) => return None,
                Err(e) => panic!("{e}"),
            }
        }
    });
    client.expect_success(&mut fx.driver, STEP);
    assert_eq!(seen, sizes, "datagrams the engine received, in order");
    assert_eq!(echoed.len(), sizes.len(), "{echoed:?}");
    let counters = fx.driver.stack().counters();
    assert_eq!(counters.udp_rx, sizes.len() as u64, "{counters:?}");
    assert_eq!(counters.udp_tx, sizes.len() as u64, "{counters:?}");
    assert_eq!(counters.ip_reassembly_failures, 0, "{counters:?}");
    // 1473, 3000, 8000 and 65507 bytes take 2, 3, 6 and 45 fragments of 1480 bytes each way.
    assert_eq!(counters.ip_reassembled, 4, "datagrams reassembled: {counters:?}");
    assert_eq!(counters.ip_frags_rx, 2 + 3 + 6 + 45, "fragments received: {counters:?}");
    assert_eq!(counters.ip_frags_tx, 2 + 3 + 6 + 45, "fragments sent: {counters:?}");
    fx.driver.with_stack(|stack, now| stack.close(now, sock)).expect("close");
}

#[test]
fn closed_udp_port_answers_port_unreachable() {
    let Some(mut fx) = Fixture::new("closed_udp_port_answers_port_unreachable") else { return };
    let mut client = python(
        &fx,
        "kernel UDP client",
        r#"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((ENGINE, 7999))
s.settimeout(3)
s.send(b"anyone there?")
try:
    out("ANSWERED", s.recv(100))
except ConnectionRefusedError:
    out("REFUSED")
except socket.timeout:
    out("TIMEOUT")
"#,
        &[],
    );
    assert_eq!(client.expect_line(&mut fx.driver, STEP), "REFUSED");
    client.expect_success(&mut fx.driver, STEP);
    let counters = fx.driver.stack().counters();
    assert_eq!(counters.udp_no_port, 1, "{counters:?}");
    assert_eq!(counters.icmp_tx, 1, "the port unreachable: {counters:?}");
}
