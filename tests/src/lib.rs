//! End-to-end tests of joyride with real parts: a TAP device, the kernel's TCP as a peer and
//! real programs, each in a network namespace the test creates and removes. This library holds
//! the shared fixtures (namespaces, TAP devices); the tests live in `tests/`.
//!
//! A [`Fixture`] is one private link: a namespace whose kernel has 10.77.0.1/24 on a TAP
//! interface, and the fbsd-tcp engine at 10.77.0.2/24 on the other end of that TAP, run by a
//! [`Driver`]. Nothing is configured in the machine's own namespace: the TAP is created there
//! without an address and moved into the test's namespace before it comes up. Names carry the
//! process id and a counter, so tests run in parallel and next to other test runs.
//!
//! The fixtures need CAP_NET_ADMIN, `ip` (iproute2), `/dev/net/tun` and python3; when one is
//! missing, [`Fixture::new`] prints why the test is skipped and returns `None`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod driver;
pub mod kernel;
pub mod netns;
pub mod tap;
pub mod watchdog;

mod sys;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fbsd_tcp::wire::{EthernetAddress, Ipv4Cidr};
use fbsd_tcp::StackConfig;

pub use driver::{Driver, DriverStats};
pub use kernel::KernelProcess;
pub use netns::Netns;
pub use tap::Tap;
pub use watchdog::Watchdog;

/// How long one test may hold a fixture before the watchdog ends the test process. Far above any
/// test's own deadlines: it only catches calls that never return.
pub const TEST_LIMIT: Duration = Duration::from_secs(150);

/// The kernel's address on the test link.
pub const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The engine's address on the test link.
pub const ENGINE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The engine's MAC address (locally administered).
pub const ENGINE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x77, 0x00, 0x02];
/// Prefix length of the test link.
pub const PREFIX_LEN: u8 = 24;

/// `ip:port` on the kernel side.
pub fn kernel_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(KERNEL_IP, port))
}

/// `ip:port` on the engine side.
pub fn engine_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ENGINE_IP, port))
}

/// Why tests that need a namespace and a TAP cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !has_cap_net_admin() {
        return Some("needs CAP_NET_ADMIN (run as root) for network namespaces and TAP".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    if kernel::which("ip").is_none() {
        return Some("`ip` (iproute2) is not in PATH".into());
    }
    if kernel::python3().is_none() {
        return Some("python3 is not in PATH".into());
    }
    None
}

/// Prints, past the test harness's output capture, that `test` is skipped and why.
pub fn print_skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// CAP_NET_ADMIN (bit 12) in the effective set, read from /proc/self/status.
fn has_cap_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// One private link between the kernel (in its own namespace) and the engine.
#[derive(Debug)]
pub struct Fixture {
    /// The engine on its TAP. Declared first so it drops first: closing the TAP removes the
    /// interface before the namespace goes.
    pub driver: Driver,
    /// The kernel's namespace.
    pub netns: Netns,
    /// The TAP interface's name (inside `netns`).
    pub tap_name: String,
    _watchdog: Watchdog,
}

impl Fixture {
    /// Sets up the link for `test`, or prints why the test is skipped and returns `None`.
    /// Panics when the prerequisites are there but the setup fails.
    pub fn new(test: &str) -> Option<Fixture> {
        if let Some(reason) = skip_reason() {
            print_skip(test, &reason);
            return None;
        }
        let watchdog = Watchdog::arm(test, TEST_LIMIT);
        Some(Fixture::setup(
            watchdog,
            StackConfig::new(
                EthernetAddress(ENGINE_MAC),
                Ipv4Cidr::new(ENGINE_IP, PREFIX_LEN).expect("valid prefix length"),
                random_secret(),
            ),
        ))
    }

    fn setup(watchdog: Watchdog, config: StackConfig) -> Fixture {
        let (netns, tap) = open_link();
        let tap_name = tap.name().to_owned();
        let driver = Driver::new(tap, config);
        Fixture { driver, netns, tap_name, _watchdog: watchdog }
    }

    /// Starts `python3 -c script args...` in the namespace.
    pub fn python(&self, what: &str, script: &str, args: &[&str]) -> KernelProcess {
        KernelProcess::python(&self.netns, what, script, args)
    }
}

/// Creates a namespace and a TAP whose far end is the namespace's kernel at 10.77.0.1/24, up.
/// Panics when a step fails (the guards created so far clean up).
fn open_link() -> (Netns, Tap) {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    // IFNAMSIZ allows 15 characters: "jt" + up to 7 pid digits + "n" + the counter.
    let tap_name = format!("jt{pid}n{n}");
    let netns = Netns::create(&format!("joyride-test-{pid}-{n}"))
        .unwrap_or_else(|e| panic!("creating the test namespace: {e}"));
    let tap = Tap::open(&tap_name).unwrap_or_else(|e| panic!("creating the TAP: {e}"));
    // The open descriptor keeps working after the move: it is bound to the device.
    netns::run(Command::new("ip").args(["link", "set", &tap_name, "netns", netns.name()]))
        .unwrap_or_else(|e| panic!("moving the TAP into the namespace: {e}"));
    // IPv6 off on the test link: no router solicitations or DAD probes in the engine's way.
    // Best effort: a kernel without IPv6 has nothing to turn off.
    let _ = netns
        .run("sh", &["-c", &format!("echo 1 > /proc/sys/net/ipv6/conf/{tap_name}/disable_ipv6")]);
    let kernel_cidr = format!("{KERNEL_IP}/{PREFIX_LEN}");
    for args in [
        &["link", "set", "lo", "up"][..],
        &["addr", "add", &kernel_cidr, "dev", &tap_name],
        &["link", "set", &tap_name, "up"],
    ] {
        netns.run("ip", args).unwrap_or_else(|e| panic!("configuring the namespace: {e}"));
    }
    (netns, tap)
}

/// 16 bytes from the kernel's random source (the engine's ISN and port secret).
fn random_secret() -> [u8; 16] {
    let mut secret = [0; 16];
    let mut urandom = std::fs::File::open("/dev/urandom").expect("opening /dev/urandom");
    std::io::Read::read_exact(&mut urandom, &mut secret).expect("reading /dev/urandom");
    secret
}

/// A cheap pseudo-random byte stream (xorshift64*) for bulk transfers: data that no simple bug
/// (a repeated, skipped or shifted block) can turn into other valid-looking data.
#[derive(Debug, Clone)]
pub struct Pattern {
    state: u64,
}

impl Pattern {
    /// A stream determined by `seed`.
    pub fn new(seed: u64) -> Pattern {
        Pattern { state: seed | 1 }
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let word = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Lowercase hex SHA-256 of a finished hasher.
pub fn hex_digest(hasher: sha2::Sha256) -> String {
    use sha2::Digest;
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The link itself, without the engine: traffic the kernel sends towards 10.77.0.2 comes out
    /// of the TAP, starting with an ARP request for it from the kernel's side.
    #[test]
    fn kernel_traffic_for_the_engine_comes_out_of_the_tap() {
        if let Some(reason) = skip_reason() {
            print_skip("kernel_traffic_for_the_engine_comes_out_of_the_tap", &reason);
            return;
        }
        let (netns, tap) = open_link();
        let python = kernel::python3().expect("checked by skip_reason");
        let script = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\
                      .sendto(b'x', ('10.77.0.2', 9))";
        netns.run(&python.to_string_lossy(), &["-c", script]).expect("sending a datagram");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            tap.wait_readable(Duration::from_millis(100)).expect("poll");
            while let Some(len) = tap.recv(&mut buf).expect("read") {
                let frame = &buf[..len];
                // Ethernet broadcast, EtherType ARP, opcode request, target 10.77.0.2.
                if len >= 42
                    && frame[..6] == [0xff; 6]
                    && frame[12..14] == [0x08, 0x06]
                    && frame[20..22] == [0, 1]
                    && frame[38..42] == ENGINE_IP.octets()
                {
                    assert_eq!(frame[28..32], KERNEL_IP.octets(), "sender protocol address");
                    return;
                }
                seen.push(len);
            }
        }
        panic!("no ARP request for {ENGINE_IP} on the TAP; other frames: {seen:?}");
    }
}
