//! The policy language: which sockets go to joyride, which to the kernel, which are denied.
//!
//! Owns: parsing and evaluating policy files, and the policy files joyride ships
//! (`shipped/default.toml`, `shipped/audit-only.toml`, `shipped/kernel-only.toml`). Must not
//! touch: system calls or any I/O beyond reading a policy file. The supervisor traps a socket
//! call, describes it as a [`Subject`], and asks [`Policy::decide`] what to do with it.
//!
//! # The language
//!
//! A policy is a TOML file:
//!
//! ```toml
//! version = 1                 # required, must be 1
//! default = "userspace"       # when no rule matches: userspace | kernel | audit | deny
//!                             # (optional, userspace when left out)
//! default-errno = "EACCES"    # only with default = "deny"; EACCES when left out
//!
//! [[rule]]
//! name = "loopback stays with the kernel"      # optional; "rule N" (1-based) when left out
//! family = ["inet", "inet6"]                   # optional: a string or a list
//! type = ["stream", "dgram"]                   # optional: a string or a list
//! destination = ["127.0.0.0/8", "::1/128"]     # optional: CIDRs; a bare address is /32 or /128
//! port = [53, "8000-8100"]                     # optional: numbers 1..=65535 or "lo-hi" ranges
//! executable = ["/usr/bin/curl", "/opt/app/*"] # optional: exact paths, or prefixes ending in *
//! call = ["connect", "bind", "sendto", "socket"] # optional: a string or a list
//! action = "kernel"                            # required: userspace | kernel | audit | deny
//! errno = "ECONNREFUSED"                       # only with deny: a name or 1..=4095; EACCES
//! ```
//!
//! What the actions mean: `userspace` gives the socket to joyride-stackd; `kernel` leaves it to
//! the kernel, as without joyride; `audit` also leaves it to the kernel and has the supervisor
//! log the call; `deny` fails the call with the errno.
//!
//! Rules are tried in file order and the first whose conditions all hold decides; when none
//! does, `default` decides. Each condition holds when the call matches any item of its list:
//!
//! - `destination` and `port` test the peer's address (connect, sendto) or the local one (bind).
//!   A rule with either never matches a call without an address, so at `socket()` only rules
//!   without them decide. An IPv4 CIDR also matches v4-mapped IPv6 addresses (`::ffff:a.b.c.d`),
//!   the way dual-stack sockets carry IPv4 peers; an IPv6 CIDR matches IPv6 addresses only.
//! - `executable` is compared byte for byte with the program's executable as the kernel reports
//!   it (`/proc/PID/exe`); a pattern ending in `*` matches every path that starts with what
//!   comes before the `*`. A rule with `executable` never matches when the path is unknown.
//!
//! Every error — a TOML syntax error, an unknown key, a value of the wrong type, a bad CIDR, a
//! port of 0 or above 65535, a reversed range, an unknown name, an errno out of range, an errno
//! with an action other than deny, an empty list — rejects the whole file with the line and
//! column of the offending value and a reason that says what to write instead
//! (`policy.toml:7:10: unknown action "userpace": expected userspace, kernel, audit or deny`).
//!
//! # Enforcement is the supervisor's job
//!
//! A decision is only as good as the copy of the arguments it was made on. Answering a trapped
//! call with `SECCOMP_USER_NOTIF_FLAG_CONTINUE` lets the kernel read the address again from the
//! target's memory, which another thread of the target can change after the supervisor looked at
//! it. CONTINUE is therefore not an enforcement mechanism: a `deny` decision must be made on a
//! copy of the address the supervisor read, and the call answered by the supervisor itself (with
//! the errno). While [`Policy::has_deny_rules`] is true the same holds for every decision made
//! on an address, `kernel` and `audit` included — the supervisor performs the call on its own
//! copy (for example `connect()` on a descriptor taken with `pidfd_getfd`) rather than letting
//! the kernel re-read the target's — and the preloaded fast path must stay off, because any code
//! in the process could use its gadget to make calls that are never trapped.

mod parse;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// A socket's address family; the supervisor only traps these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

/// A socket's type, as `type = "stream" | "dgram"` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Datagram,
}

/// The trapped call being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Socket,
    Connect,
    Bind,
    SendTo,
}

/// What the supervisor knows about a trapped call, from its own copy of the arguments.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub call: Call,
    pub family: Family,
    pub kind: Kind,
    /// None at `socket()`; the peer (connect, sendto) or the local address (bind) otherwise.
    pub destination: Option<SocketAddr>,
    /// The program's executable (`/proc/PID/exe`), when it could be read.
    pub executable: Option<&'a Path>,
}

/// What to do with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The socket is joyride-stackd's.
    Userspace,
    /// The kernel serves the socket, as without joyride.
    Kernel,
    /// The call fails with this errno; the supervisor answers it (see the crate doc).
    Deny { errno: i32 },
    /// The kernel serves the socket and the supervisor logs the call.
    Audit,
}

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub action: Action,
    /// The matching rule's name; None when the policy's default decided.
    pub rule: Option<&'p str>,
}

/// A parsed, checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    default: Action,
    rules: Vec<Rule>,
}

/// Why a policy was rejected.
#[derive(thiserror::Error, Debug)]
pub enum PolicyError {
    #[error("cannot read policy file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Line and column are 1-based; the column counts characters, not bytes.
    #[error("{origin}:{line}:{column}: {reason}")]
    Invalid { origin: String, line: usize, column: usize, reason: String },
}

/// One `[[rule]]`. A condition left out of the file is None and always holds; a given one is
/// never an empty list (the parser refuses those).
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    families: Option<Vec<Family>>,
    kinds: Option<Vec<Kind>>,
    calls: Option<Vec<Call>>,
    destinations: Option<Vec<Cidr>>,
    ports: Option<Vec<(u16, u16)>>,
    executables: Option<Vec<Executable>>,
    action: Action,
}

/// An address block; the network is stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cidr {
    V4 { network: u32, prefix: u8 },
    V6 { network: u128, prefix: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Executable {
    Exact(String),
    Prefix(String),
}

impl Policy {
    /// Parses and checks a policy; `origin` names it in error messages (usually the file name).
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        parse::parse(text, origin)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PolicyError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// `shipped/default.toml`: joyride serves everything except loopback destinations.
    pub fn default_policy() -> Policy {
        shipped(include_str!("../shipped/default.toml"), "default.toml")
    }

    /// `shipped/audit-only.toml`: the kernel serves everything and every call is logged.
    pub fn audit_only() -> Policy {
        shipped(include_str!("../shipped/audit-only.toml"), "audit-only.toml")
    }

    /// `shipped/kernel-only.toml`: the kernel serves everything.
    pub fn kernel_only() -> Policy {
        shipped(include_str!("../shipped/kernel-only.toml"), "kernel-only.toml")
    }

    /// The first rule that matches decides; the default when none does.
    pub fn decide(&self, subject: &Subject) -> Decision<'_> {
        match self.rules.iter().find(|rule| rule.matches(subject)) {
            Some(rule) => Decision { action: rule.action, rule: Some(&rule.name) },
            None => Decision { action: self.default, rule: None },
        }
    }

    /// Whether any rule names executables: only then must a caller find the program's path
    /// (a read of `/proc/PID/exe` per decision) before [`Policy::decide`].
    pub fn needs_executable(&self) -> bool {
        self.rules.iter().any(|rule| rule.executables.is_some())
    }

    /// Whether any decision can be a deny. The fast path may only be used when this is false.
    pub fn has_deny_rules(&self) -> bool {
        std::iter::once(self.default)
            .chain(self.rules.iter().map(|rule| rule.action))
            .any(|action| matches!(action, Action::Deny { .. }))
    }
}

/// The shipped files are tested to parse, so a failure here is a build defect, not user input.
fn shipped(text: &str, name: &str) -> Policy {
    Policy::parse(text, name).unwrap_or_else(|error| panic!("shipped policy is invalid: {error}"))
}

impl Rule {
    fn matches(&self, subject: &Subject) -> bool {
        fn any<T>(condition: &Option<Vec<T>>, test: impl Fn(&T) -> bool) -> bool {
            condition.as_ref().is_none_or(|items| items.iter().any(test))
        }
        let destination = subject.destination;
        any(&self.families, |&family| family == subject.family)
            && any(&self.kinds, |&kind| kind == subject.kind)
            && any(&self.calls, |&call| call == subject.call)
            && any(&self.destinations, |cidr| destination.is_some_and(|d| cidr.contains(d.ip())))
            && any(&self.ports, |&(low, high)| {
                destination.is_some_and(|d| (low..=high).contains(&d.port()))
            })
            && any(&self.executables, |pattern| {
                subject.executable.is_some_and(|path| pattern.matches(path))
            })
    }
}

impl Cidr {
    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { network, prefix }, IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(prefix) == network
            }
            (Cidr::V4 { .. }, IpAddr::V6(ip)) => {
                ip.to_ipv4_mapped().is_some_and(|ip| self.contains(IpAddr::V4(ip)))
            }
            (Cidr::V6 { network, prefix }, IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(prefix) == network
            }
            (Cidr::V6 { .. }, IpAddr::V4(_)) => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Executable {
    fn matches(&self, path: &Path) -> bool {
        let path = path.as_os_str().as_encoded_bytes();
        match self {
            Executable::Exact(exact) => path == exact.as_bytes(),
            Executable::Prefix(prefix) => path.starts_with(prefix.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Cidr::contains` against the obvious model: the first `prefix` bits are equal.
    #[test]
    fn cidr_matching_agrees_with_bitwise_comparison() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let bit = |value: u128, width: u8, i: u8| value >> (width - 1 - i) & 1;
        for _ in 0..20_000 {
            // The address differs from the network in at most one bit, so that long prefixes
            // match as often as short ones.
            let (a, b, flip) = (next(), next(), next());
            let diff = if flip % 2 == 0 { 0 } else { 1u128 << ((flip >> 1) % 128) };

            let prefix = (next() % 33) as u8;
            let (network, ip) = (a as u32, a as u32 ^ diff as u32);
            let model = (0..prefix).all(|i| bit(network.into(), 32, i) == bit(ip.into(), 32, i));
            let cidr = Cidr::V4 { network: network & mask32(prefix), prefix };
            assert_eq!(cidr.contains(IpAddr::V4(ip.into())), model, "{network:x}/{prefix} {ip:x}");
            let mapped = IpAddr::V6(std::net::Ipv4Addr::from(ip).to_ipv6_mapped());
            assert_eq!(cidr.contains(mapped), model);

            let prefix = (next() % 129) as u8;
            let network = u128::from(a) << 64 | u128::from(b);
            let ip = network ^ diff;
            let model = (0..prefix).all(|i| bit(network, 128, i) == bit(ip, 128, i));
            let cidr = Cidr::V6 { network: network & mask128(prefix), prefix };
            assert_eq!(cidr.contains(IpAddr::V6(ip.into())), model, "{network:x}/{prefix} {ip:x}");
        }
    }
}
