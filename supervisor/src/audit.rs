//! `joyride audit`: every intercepted socket call logged as one JSON line, then served by the
//! kernel unchanged — or refused, when a policy says so.
//!
//! The flow per call ([`serve_audit`]): receive the notification, find the caller's process and
//! executable, [`describe`] the arguments (reading socket addresses and `struct msghdr` from the
//! target), ask the decision function, answer, then write one [`AuditRecord`] to the
//! [`AuditLog`].
//!
//! What a decision is worth: a denial is answered by the supervisor itself, from the copy of the
//! arguments it read, so a denied call never reaches the kernel. An allowed call is answered
//! CONTINUE: the kernel reads the arguments again, and another thread of the target may have
//! rewritten them in between. So audit records what well-behaved programs do and stops the calls
//! it sees as denied, but it is no enforcement against a program that races its own memory
//! (`joyride run` serves calls from its own copy and has no such window).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use trap::{Listener, NotifError, Notification, Readiness, SockAddr, Syscall};

/// What a policy sees of one call: enough to match rules on, read once from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSubject {
    /// The system call's name ("socket", "connect", ...; "unknown" for an undecoded call).
    pub call: &'static str,
    /// The socket's family (AF_INET, ...): socket()'s argument, or the family of the socket the
    /// call operates on, or else the family of the address the call passes.
    pub family: Option<i32>,
    /// The socket's type without flags (SOCK_STREAM, SOCK_DGRAM, ...), when known.
    pub kind: Option<i32>,
    /// The inet address the call connects, binds or sends to. For sendmmsg, the first
    /// message's: audit decides once per call.
    pub destination: Option<SocketAddr>,
}

/// What the decision function wants done with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditDecision {
    /// Let the kernel serve it (CONTINUE).
    Continue,
    /// Fail it with this errno, answered by the supervisor.
    Deny {
        /// The errno the target sees (1..=4095; anything else is answered with EPERM).
        errno: i32,
    },
}

/// Who served a call, as an [`AuditRecord`] says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The kernel, unchanged (CONTINUE).
    Kernel,
    /// Nobody: the supervisor refused it with an errno.
    Deny,
    /// joyride-stackd (`joyride run`).
    Userspace,
    /// Logged because a policy rule asks for it; the rest of the record says how it was served.
    Audit,
}

/// An errno in a record: its name when [`errno_name`] knows it, else the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match errno_name(self.0) {
            Some(name) => serializer.serialize_str(name),
            None => serializer.serialize_i32(self.0),
        }
    }
}

/// One intercepted call: one JSON line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When the supervisor received the call: RFC 3339, UTC, microseconds
    /// ("2026-12-06T18:30:01.123456Z").
    pub time: String,
    /// The calling process (thread-group id); null if /proc could not say.
    pub pid: Option<u32>,
    /// The calling thread.
    pub tid: u32,
    /// The process's executable (/proc/PID/exe); null if unreadable.
    pub executable: Option<String>,
    /// The call's name ("connect").
    pub syscall: &'static str,
    /// The decoded arguments (see [`describe`]).
    pub args: Map<String, Value>,
    /// Who served it.
    pub decision: Decision,
    /// The call's return value, when the supervisor knows it (it does not after CONTINUE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<i64>,
    /// The errno the call failed with, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<Errno>,
    /// What could not be read or done (e.g. "EFAULT reading the address (16 bytes at 0x1)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where audit records go: a file or stderr, one JSON line per record.
///
/// Shared between threads: each record is serialised whole, then written under the lock with a
/// single `write_all` on an unbuffered descriptor. That both flushes it at once (a crash loses
/// no record already logged) and keeps it in one piece between other writers; a `BufWriter`
/// would only add a copy.
#[derive(Debug)]
pub struct AuditLog {
    sink: Mutex<Sink>,
    failures: AtomicU64,
}

#[derive(Debug)]
enum Sink {
    File { file: File, path: PathBuf },
    Stderr,
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            // O_APPEND: several audits may share one file, each line lands whole at its end.
            Sink::File { file, .. } => file.write_all(line),
            Sink::Stderr => io::stderr().lock().write_all(line),
        }
    }

    fn name(&self) -> String {
        match self {
            Sink::File { path, .. } => path.display().to_string(),
            Sink::Stderr => "stderr".into(),
        }
    }
}

impl AuditLog {
    /// Appends to `path`, creating it with mode 0640 (before the umask): an audit log names the
    /// addresses a program talks to, which is not for every user of the machine.
    pub fn to_file(path: &Path) -> io::Result<AuditLog> {
        let file =
            OpenOptions::new().create(true).append(true).mode(0o640).open(path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open audit log {}: {e}", path.display()))
            })?;
        Ok(AuditLog::with_sink(Sink::File { file, path: path.to_owned() }))
    }

    /// Writes to the supervisor's stderr. When that is a pipe the audited program also writes
    /// to, a record longer than PIPE_BUF (4096 bytes) may interleave with the program's output.
    pub fn to_stderr() -> AuditLog {
        AuditLog::with_sink(Sink::Stderr)
    }

    fn with_sink(sink: Sink) -> AuditLog {
        AuditLog { sink: Mutex::new(sink), failures: AtomicU64::new(0) }
    }

    /// Writes `rec` as one line. A failure is counted ([`AuditLog::failures`]) and the first
    /// one logged: the audited program must not stop because its log filled a disk.
    pub fn record(&self, rec: &AuditRecord) {
        let mut line = match serde_json::to_vec(rec) {
            Ok(line) => line,
            Err(e) => return self.failed(&io::Error::other(e)),
        };
        line.push(b'\n');
        // A panic elsewhere while holding the lock leaves the sink itself intact.
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = sink.write_line(&line) {
            let name = sink.name();
            drop(sink);
            self.failed(&io::Error::new(e.kind(), format!("{name}: {e}")));
        }
    }

    /// How many records could not be written.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn failed(&self, error: &io::Error) {
        if self.failures.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(%error, "cannot write an audit record; further failures are only counted");
        }
    }
}

/// `t` as RFC 3339 in UTC with microseconds: "2026-12-06T18:30:01.123456Z".
pub fn rfc3339_micros(t: SystemTime) -> String {
    let (secs, micros) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_micros()),
        Err(before) => {
            let d = before.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_micros() {
                0 => (secs, 0),
                us => (secs - 1, 1_000_000 - us),
            }
        }
    };
    format_utc(secs, micros)
}

/// Seconds since the epoch (and microseconds into that second) as RFC 3339 UTC.
fn format_utc(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01.
///
/// Counts in 400-year eras (146 097 days each, the Gregorian cycle) of years that start on
/// March 1st, so that the leap day is the last day of a year and month lengths repeat in a
/// fixed 153-day pattern over March..July and August..December.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // 1970-01-01 is day 719 468 counted from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    // Minus the leap days before this day: one every 4 years, none every 100, one every 400.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // 0 = March ... 11 = February.
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// The symbolic name of a common errno ("EACCES" for 13).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        // EWOULDBLOCK is the same number.
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        // ENOTSUP is the same number on Linux.
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPFNOSUPPORT => "EPFNOSUPPORT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENETRESET => "ENETRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOBUFS => "ENOBUFS",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ESHUTDOWN => "ESHUTDOWN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ECANCELED => "ECANCELED",
        libc::EXFULL => "EXFULL",
        _ => return None,
    })
}

pub(crate) fn family_name(family: i32) -> Value {
    match family {
        libc::AF_UNSPEC => "AF_UNSPEC".into(),
        libc::AF_UNIX => "AF_UNIX".into(),
        libc::AF_INET => "AF_INET".into(),
        libc::AF_INET6 => "AF_INET6".into(),
        libc::AF_NETLINK => "AF_NETLINK".into(),
        libc::AF_PACKET => "AF_PACKET".into(),
        libc::AF_VSOCK => "AF_VSOCK".into(),
        other => other.into(),
    }
}

pub(crate) fn type_name(ty: i32) -> Value {
    match ty {
        libc::SOCK_STREAM => "SOCK_STREAM".into(),
        libc::SOCK_DGRAM => "SOCK_DGRAM".into(),
        libc::SOCK_RAW => "SOCK_RAW".into(),
        libc::SOCK_RDM => "SOCK_RDM".into(),
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET".into(),
        other => other.into(),
    }
}

fn level_name(level: i32) -> Value {
    match level {
        libc::SOL_SOCKET => "SOL_SOCKET".into(),
        libc::IPPROTO_IP => "IPPROTO_IP".into(),
        libc::IPPROTO_TCP => "IPPROTO_TCP".into(),
        libc::IPPROTO_UDP => "IPPROTO_UDP".into(),
        libc::IPPROTO_IPV6 => "IPPROTO_IPV6".into(),
        other => other.into(),
    }
}

fn option_name(level: i32, name: i32) -> Value {
    let known = match level {
        libc::SOL_SOCKET => match name {
            libc::SO_DEBUG => "SO_DEBUG",
            libc::SO_REUSEADDR => "SO_REUSEADDR",
            libc::SO_TYPE => "SO_TYPE",
            libc::SO_ERROR => "SO_ERROR",
            libc::SO_DONTROUTE => "SO_DONTROUTE",
            libc::SO_BROADCAST => "SO_BROADCAST",
            libc::SO_SNDBUF => "SO_SNDBUF",
            libc::SO_RCVBUF => "SO_RCVBUF",
            libc::SO_SNDBUFFORCE => "SO_SNDBUFFORCE",
            libc::SO_RCVBUFFORCE => "SO_RCVBUFFORCE",
            libc::SO_KEEPALIVE => "SO_KEEPALIVE",
            libc::SO_OOBINLINE => "SO_OOBINLINE",
            libc::SO_PRIORITY => "SO_PRIORITY",
            libc::SO_LINGER => "SO_LINGER",
            libc::SO_REUSEPORT => "SO_REUSEPORT",
            libc::SO_PASSCRED => "SO_PASSCRED",
            libc::SO_PEERCRED => "SO_PEERCRED",
            libc::SO_RCVLOWAT => "SO_RCVLOWAT",
            libc::SO_SNDLOWAT => "SO_SNDLOWAT",
            libc::SO_RCVTIMEO => "SO_RCVTIMEO",
            libc::SO_SNDTIMEO => "SO_SNDTIMEO",
            libc::SO_BINDTODEVICE => "SO_BINDTODEVICE",
            libc::SO_TIMESTAMP => "SO_TIMESTAMP",
            libc::SO_ACCEPTCONN => "SO_ACCEPTCONN",
            libc::SO_MARK => "SO_MARK",
            libc::SO_PROTOCOL => "SO_PROTOCOL",
            libc::SO_DOMAIN => "SO_DOMAIN",
            libc::SO_BUSY_POLL => "SO_BUSY_POLL",
            libc::SO_ZEROCOPY => "SO_ZEROCOPY",
            _ => return name.into(),
        },
        libc::IPPROTO_TCP => match name {
            libc::TCP_NODELAY => "TCP_NODELAY",
            libc::TCP_MAXSEG => "TCP_MAXSEG",
            libc::TCP_CORK => "TCP_CORK",
            libc::TCP_KEEPIDLE => "TCP_KEEPIDLE",
            libc::TCP_KEEPINTVL => "TCP_KEEPINTVL",
            libc::TCP_KEEPCNT => "TCP_KEEPCNT",
            libc::TCP_SYNCNT => "TCP_SYNCNT",
            libc::TCP_LINGER2 => "TCP_LINGER2",
            libc::TCP_DEFER_ACCEPT => "TCP_DEFER_ACCEPT",
            libc::TCP_WINDOW_CLAMP => "TCP_WINDOW_CLAMP",
            libc::TCP_INFO => "TCP_INFO",
            libc::TCP_QUICKACK => "TCP_QUICKACK",
            libc::TCP_CONGESTION => "TCP_CONGESTION",
            libc::TCP_USER_TIMEOUT => "TCP_USER_TIMEOUT",
            libc::TCP_FASTOPEN => "TCP_FASTOPEN",
            libc::TCP_NOTSENT_LOWAT => "TCP_NOTSENT_LOWAT",
            libc::TCP_FASTOPEN_CONNECT => "TCP_FASTOPEN_CONNECT",
            libc::TCP_ULP => "TCP_ULP",
            _ => return name.into(),
        },
        libc::IPPROTO_IP => match name {
            libc::IP_TOS => "IP_TOS",
            libc::IP_TTL => "IP_TTL",
            libc::IP_HDRINCL => "IP_HDRINCL",
            libc::IP_OPTIONS => "IP_OPTIONS",
            libc::IP_PKTINFO => "IP_PKTINFO",
            libc::IP_MTU_DISCOVER => "IP_MTU_DISCOVER",
            libc::IP_RECVERR => "IP_RECVERR",
            libc::IP_RECVTTL => "IP_RECVTTL",
            libc::IP_RECVTOS => "IP_RECVTOS",
            libc::IP_MTU => "IP_MTU",
            libc::IP_FREEBIND => "IP_FREEBIND",
            libc::IP_TRANSPARENT => "IP_TRANSPARENT",
            libc::IP_BIND_ADDRESS_NO_PORT => "IP_BIND_ADDRESS_NO_PORT",
            libc::IP_MULTICAST_IF => "IP_MULTICAST_IF",
            libc::IP_MULTICAST_TTL => "IP_MULTICAST_TTL",
            libc::IP_MULTICAST_LOOP => "IP_MULTICAST_LOOP",
            libc::IP_ADD_MEMBERSHIP => "IP_ADD_MEMBERSHIP",
            libc::IP_DROP_MEMBERSHIP => "IP_DROP_MEMBERSHIP",
            _ => return name.into(),
        },
        libc::IPPROTO_IPV6 => match name {
            libc::IPV6_UNICAST_HOPS => "IPV6_UNICAST_HOPS",
            libc::IPV6_MULTICAST_IF => "IPV6_MULTICAST_IF",
            libc::IPV6_MULTICAST_HOPS => "IPV6_MULTICAST_HOPS",
            libc::IPV6_MULTICAST_LOOP => "IPV6_MULTICAST_LOOP",
            libc::IPV6_ADD_MEMBERSHIP => "IPV6_ADD_MEMBERSHIP",
            libc::IPV6_DROP_MEMBERSHIP => "IPV6_DROP_MEMBERSHIP",
            libc::IPV6_MTU_DISCOVER => "IPV6_MTU_DISCOVER",
            libc::IPV6_MTU => "IPV6_MTU",
            libc::IPV6_RECVERR => "IPV6_RECVERR",
            libc::IPV6_V6ONLY => "IPV6_V6ONLY",
            libc::IPV6_RECVPKTINFO => "IPV6_RECVPKTINFO",
            libc::IPV6_TCLASS => "IPV6_TCLASS",
            libc::IPV6_FREEBIND => "IPV6_FREEBIND",
            _ => return name.into(),
        },
        _ => return name.into(),
    };
    known.into()
}

fn shutdown_name(how: i32) -> Value {
    match how {
        libc::SHUT_RD => "SHUT_RD".into(),
        libc::SHUT_WR => "SHUT_WR".into(),
        libc::SHUT_RDWR => "SHUT_RDWR".into(),
        other => other.into(),
    }
}

/// The MSG_* names of `flags`, with any bits left over as one hexadecimal entry.
fn msg_flag_names(flags: u32) -> Value {
    const NAMES: [(i32, &str); 21] = [
        (libc::MSG_OOB, "MSG_OOB"),
        (libc::MSG_PEEK, "MSG_PEEK"),
        (libc::MSG_DONTROUTE, "MSG_DONTROUTE"),
        (libc::MSG_CTRUNC, "MSG_CTRUNC"),
        (0x10, "MSG_PROXY"),
        (libc::MSG_TRUNC, "MSG_TRUNC"),
        (libc::MSG_DONTWAIT, "MSG_DONTWAIT"),
        (libc::MSG_EOR, "MSG_EOR"),
        (libc::MSG_WAITALL, "MSG_WAITALL"),
        (libc::MSG_FIN, "MSG_FIN"),
        (libc::MSG_SYN, "MSG_SYN"),
        (libc::MSG_CONFIRM, "MSG_CONFIRM"),
        (libc::MSG_RST, "MSG_RST"),
        (libc::MSG_ERRQUEUE, "MSG_ERRQUEUE"),
        (libc::MSG_NOSIGNAL, "MSG_NOSIGNAL"),
        (libc::MSG_MORE, "MSG_MORE"),
        (libc::MSG_WAITFORONE, "MSG_WAITFORONE"),
        (0x40000, "MSG_BATCH"),
        (libc::MSG_ZEROCOPY, "MSG_ZEROCOPY"),
        (libc::MSG_FASTOPEN, "MSG_FASTOPEN"),
        (libc::MSG_CMSG_CLOEXEC, "MSG_CMSG_CLOEXEC"),
    ];
    let mut left = flags;
    let mut names: Vec<Value> = Vec::new();
    for (bit, name) in NAMES {
        let bit = bit as u32;
        if left & bit != 0 {
            names.push(name.into());
            left &= !bit;
        }
    }
    if left != 0 {
        names.push(format!("{left:#x}").into());
    }
    Value::Array(names)
}

/// The JSON fields of a socket address: `address` and `port` for inet (plus `scope_id` and
/// `flowinfo` when set), `path` for AF_UNIX ("@name" for an abstract one, as ss prints it),
/// `address_family` otherwise.
fn address_fields(addr: &SockAddr) -> Map<String, Value> {
    let mut fields = Map::new();
    match addr {
        SockAddr::Inet(inet) => {
            fields.insert("address".into(), inet.ip().to_string().into());
            fields.insert("port".into(), inet.port().into());
            if let SocketAddr::V6(v6) = inet {
                if v6.scope_id() != 0 {
                    fields.insert("scope_id".into(), v6.scope_id().into());
                }
                if v6.flowinfo() != 0 {
                    fields.insert("flowinfo".into(), v6.flowinfo().into());
                }
            }
        }
        SockAddr::Unix(path) => {
            let shown = match path.split_first() {
                Some((0, name)) => format!("@{}", String::from_utf8_lossy(name)),
                _ => {
                    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                    String::from_utf8_lossy(&path[..end]).into_owned()
                }
            };
            fields.insert("path".into(), shown.into());
        }
        SockAddr::Other { family } => {
            fields.insert("address_family".into(), family_name(i32::from(*family)));
        }
    }
    fields
}

/// How a pointer argument's read failure reads in a record.
fn read_error(what: &str, e: &NotifError) -> String {
    match e {
        NotifError::Fault { addr, len } => {
            format!("EFAULT reading {what} ({len} bytes at {addr:#x})")
        }
        NotifError::BadLength { len, max } => {
            format!("EINVAL: {what} length {len} is out of range (at most {max})")
        }
        NotifError::SockAddr(e) => format!("EINVAL: {what}: {e}"),
        other => format!("reading {what}: {other}"),
    }
}

// The x86_64 layouts of `struct msghdr` (56 bytes), `struct mmsghdr` (64) and `struct iovec`
// (16), as the kernel copies them in (include/linux/socket.h).
const MSGHDR_LEN: usize = 56;
const MMSGHDR_LEN: usize = 64;
const IOVEC_LEN: usize = 16;
/// UIO_MAXIOV: the kernel refuses longer iovec arrays (EMSGSIZE) and caps sendmmsg's vlen at it.
const UIO_MAXIOV: u64 = 1024;
/// How many of a sendmmsg's messages have their address logged.
const MMSG_ADDRESSES: usize = 8;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The fields of a `struct msghdr` that audit logs.
struct MsgHdr {
    name: u64,
    namelen: i32,
    iov: u64,
    iovlen: u64,
    controllen: u64,
}

impl MsgHdr {
    fn parse(bytes: &[u8]) -> MsgHdr {
        MsgHdr {
            name: u64_at(bytes, 0),
            namelen: i32_at(bytes, 8),
            iov: u64_at(bytes, 16),
            iovlen: u64_at(bytes, 24),
            controllen: u64_at(bytes, 40),
        }
    }
}

/// Decodes a notification into the policy's view of it and the `args` of its record.
///
/// Pointer arguments are read from the target: the socket address of connect, bind and sendto
/// (when not NULL), the `struct msghdr` of sendmsg with its `msg_name` and iovec lengths, the
/// first messages' addresses of sendmmsg, an `int` option value of setsockopt. For calls on a
/// socket, the socket's family and type are asked of a duplicate of it (pidfd_getfd), so that a
/// connect() record says whether it is TCP or UDP.
///
/// A bad pointer or length is no failure: the target will get the kernel's errno for it, and
/// `args` gets an `error` field saying what could not be read. Only [`NotifError::Gone`] (the
/// target left the call) is returned as an error.
pub fn describe(
    notification: &Notification,
    listener: &Listener,
) -> Result<(CallSubject, Map<String, Value>), NotifError> {
    describe_with(notification, listener)
}

fn describe_with(
    n: &Notification,
    listener: &Listener,
) -> Result<(CallSubject, Map<String, Value>), NotifError> {
    let call = n.syscall();
    let mut d = Describer {
        n,
        listener,
        args: Map::new(),
        errors: Vec::new(),
        subject: CallSubject { call: call.name(), family: None, kind: None, destination: None },
    };
    d.describe(&call)?;
    let Describer { mut args, errors, subject, .. } = d;
    if !errors.is_empty() {
        args.insert("error".into(), errors.join("; ").into());
    }
    Ok((subject, args))
}

struct Describer<'a> {
    n: &'a Notification,
    listener: &'a Listener,
    args: Map<String, Value>,
    errors: Vec<String>,
    subject: CallSubject,
}

impl Describer<'_> {
    fn put(&mut self, key: &str, value: impl Into<Value>) {
        self.args.insert(key.into(), value.into());
    }

    /// `Ok(None)` with the failure noted for anything but Gone.
    fn soft<T>(&mut self, what: &str, r: Result<T, NotifError>) -> Result<Option<T>, NotifError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(NotifError::Gone) => Err(NotifError::Gone),
            Err(e) => {
                self.errors.push(read_error(what, &e));
                Ok(None)
            }
        }
    }

    fn describe(&mut self, call: &Syscall) -> Result<(), NotifError> {
        if let Some(fd) = call.fd() {
            self.put("fd", fd);
            self.socket(fd)?;
        }
        match *call {
            Syscall::Socket { domain, ty, nonblock, cloexec, protocol }
            | Syscall::SocketPair { domain, ty, nonblock, cloexec, protocol, .. } => {
                self.put("family", family_name(domain));
                self.put("type", type_name(ty));
                self.put("nonblock", nonblock);
                self.put("cloexec", cloexec);
                self.put("protocol", protocol);
                self.subject.family = Some(domain);
                self.subject.kind = Some(ty);
            }
            Syscall::Connect { addr_ptr, addr_len, .. }
            | Syscall::Bind { addr_ptr, addr_len, .. } => {
                self.put("length", addr_len);
                self.address(addr_ptr, addr_len)?;
            }
            Syscall::Listen { backlog, .. } => self.put("backlog", backlog),
            Syscall::Accept { .. } | Syscall::GetSockName { .. } | Syscall::GetPeerName { .. } => {}
            Syscall::Accept4 { flags, .. } => {
                self.put("nonblock", flags & libc::SOCK_NONBLOCK != 0);
                self.put("cloexec", flags & libc::SOCK_CLOEXEC != 0);
            }
            Syscall::SetSockOpt { level, name, value_ptr, len, .. } => {
                self.put("level", level_name(level));
                self.put("option", option_name(level, name));
                self.put("length", len);
                // Most options are an int; longer values (linger, timeouts) are left unread.
                if len == 4 && value_ptr != 0 {
                    let value = self.n.read_i32(self.listener, value_ptr);
                    if let Some(value) = self.soft("the option value", value)? {
                        self.put("value", value);
                    }
                }
            }
            Syscall::GetSockOpt { level, name, .. } => {
                self.put("level", level_name(level));
                self.put("option", option_name(level, name));
            }
            Syscall::Shutdown { how, .. } => self.put("how", shutdown_name(how)),
            Syscall::SendTo { len, flags, addr_ptr, addr_len, .. } => {
                self.put("length", len);
                self.put("flags", msg_flag_names(flags));
                if addr_ptr != 0 {
                    self.address(addr_ptr, addr_len)?;
                }
            }
            Syscall::RecvFrom { len, flags, .. } => {
                self.put("length", len);
                self.put("flags", msg_flag_names(flags));
            }
            Syscall::SendMsg { msg_ptr, flags, .. } => {
                self.put("flags", msg_flag_names(flags));
                self.send_msg(msg_ptr)?;
            }
            Syscall::RecvMsg { flags, .. } => self.put("flags", msg_flag_names(flags)),
            Syscall::SendMmsg { vec_ptr, vlen, flags, .. } => {
                self.put("vlen", vlen);
                self.put("flags", msg_flag_names(flags));
                self.send_mmsg(vec_ptr, vlen)?;
            }
            Syscall::RecvMmsg { vlen, flags, .. } => {
                self.put("vlen", vlen);
                self.put("flags", msg_flag_names(flags));
            }
            Syscall::IoUringSetup { entries, .. } => self.put("entries", entries),
            Syscall::Other { nr } => self.put("nr", nr),
        }
        Ok(())
    }

    /// The family and type of the target's socket `fd`, from a duplicate of it. Skipped
    /// silently when the process is unknown, the duplicate is refused or `fd` is no socket:
    /// the kernel will answer the call for those.
    fn socket(&mut self, fd: i32) -> Result<(), NotifError> {
        let socket = match self.n.take_fd(self.listener, fd) {
            Ok(socket) => socket,
            Err(NotifError::Gone) => return Err(NotifError::Gone),
            Err(_) => return Ok(()),
        };
        if let Ok(domain) = crate::sys::socket_domain(std::os::fd::AsFd::as_fd(&socket)) {
            self.put("family", family_name(domain));
            self.subject.family = Some(domain);
        }
        if let Ok(ty) = crate::sys::socket_type(std::os::fd::AsFd::as_fd(&socket)) {
            self.put("type", type_name(ty));
            self.subject.kind = Some(ty);
        }
        Ok(())
    }

    /// Reads the socket address at `ptr` into the record and the subject.
    fn address(&mut self, ptr: u64, len: i32) -> Result<(), NotifError> {
        // A zero length passes no address (the kernel copies nothing).
        if len == 0 {
            return Ok(());
        }
        let addr = self.n.read_sockaddr(self.listener, ptr, len);
        if let Some(addr) = self.soft("the address", addr)? {
            self.note_address(&addr);
            self.args.extend(address_fields(&addr));
        }
        Ok(())
    }

    fn note_address(&mut self, addr: &SockAddr) {
        if let SockAddr::Inet(inet) = addr {
            self.subject.destination.get_or_insert(*inet);
        }
        self.subject.family.get_or_insert(i32::from(addr.family()));
    }

    fn send_msg(&mut self, msg_ptr: u64) -> Result<(), NotifError> {
        let bytes = self.n.read(self.listener, msg_ptr, MSGHDR_LEN);
        let Some(bytes) = self.soft("the msghdr", bytes)? else { return Ok(()) };
        let msg = MsgHdr::parse(&bytes);
        self.put("iovlen", msg.iovlen);
        if msg.controllen != 0 {
            self.put("controllen", msg.controllen);
        }
        if msg.iovlen <= UIO_MAXIOV && msg.iovlen != 0 {
            let iov = self.n.read(self.listener, msg.iov, msg.iovlen as usize * IOVEC_LEN);
            if let Some(iov) = self.soft("the iovec array", iov)? {
                let total = iov
                    .chunks_exact(IOVEC_LEN)
                    .fold(0u64, |sum, entry| sum.saturating_add(u64_at(entry, 8)));
                self.put("length", total);
            }
        }
        if let Some(addr) = self.msg_name(&msg)? {
            self.note_address(&addr);
            self.args.extend(address_fields(&addr));
        }
        Ok(())
    }

    /// A msghdr's `msg_name`, as the kernel takes it: NULL or empty is none, a longer one is
    /// cut to `sizeof(struct sockaddr_storage)`.
    fn msg_name(&mut self, msg: &MsgHdr) -> Result<Option<SockAddr>, NotifError> {
        if msg.name == 0 || msg.namelen == 0 {
            return Ok(None);
        }
        let len = msg.namelen.min(trap::sockaddr::MAX_SOCKADDR_LEN as i32);
        let addr = self.n.read_sockaddr(self.listener, msg.name, len);
        self.soft("the message address", addr)
    }

    fn send_mmsg(&mut self, vec_ptr: u64, vlen: u32) -> Result<(), NotifError> {
        let count = u64::from(vlen).min(UIO_MAXIOV).min(MMSG_ADDRESSES as u64) as usize;
        if count == 0 {
            return Ok(());
        }
        let bytes = self.n.read(self.listener, vec_ptr, count * MMSGHDR_LEN);
        let Some(bytes) = self.soft("the mmsghdr array", bytes)? else { return Ok(()) };
        let mut addresses = Vec::new();
        for entry in bytes.chunks_exact(MMSGHDR_LEN) {
            let msg = MsgHdr::parse(&entry[..MSGHDR_LEN]);
            match self.msg_name(&msg)? {
                Some(addr) => {
                    self.note_address(&addr);
                    addresses.push(Value::Object(address_fields(&addr)));
                }
                None => addresses.push(Value::Null),
            }
        }
        self.put("addresses", addresses);
        Ok(())
    }
}

/// How long one wait for a notification lasts: the loop notices a hang-up on the next round
/// even on a kernel whose poll does not wake for it.
const WAIT: Duration = Duration::from_secs(1);

/// Serves `listener` for `joyride audit` until every process under the filter has exited.
///
/// Each call is described, decided by `decide`, answered (CONTINUE, or the denial's errno) and
/// then logged as one record: decision "kernel" for a continued call, "deny" with the errno
/// for a refused one. A call whose target left it (interrupted, killed) is skipped: it has no
/// answer, and a restarted call arrives again. Returns an error only when the listener itself
/// fails.
pub fn serve_audit(
    listener: &Listener,
    log: &AuditLog,
    decide: &dyn Fn(&CallSubject) -> AuditDecision,
) -> io::Result<()> {
    loop {
        match listener.wait_readable(Some(WAIT))? {
            Readiness::Hangup => return Ok(()),
            Readiness::TimedOut => continue,
            Readiness::Readable => {}
        }
        let time = rfc3339_micros(SystemTime::now());
        let notification = match listener.receive() {
            Ok(n) => n,
            Err(NotifError::Gone) => {
                tracing::debug!("a notification was withdrawn before it was received");
                continue;
            }
            Err(e) => return Err(io::Error::other(e)),
        };
        match serve_one(listener, &notification, time, decide) {
            Ok(record) => log.record(&record),
            Err(NotifError::Gone) => {
                tracing::debug!(
                    tid = notification.tid,
                    nr = notification.nr,
                    "the target left the call before it was answered"
                );
            }
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// The record of one call, before its decision (marked "kernel"), and what the policy judges.
/// Errors are Gone and failures of the listener's validity check; a failed read is a field of
/// the record.
pub fn record_call(
    listener: &Listener,
    n: &Notification,
    time: String,
) -> Result<(CallSubject, AuditRecord), NotifError> {
    let tgid = match n.tgid(listener) {
        Ok(tgid) => Some(tgid),
        Err(NotifError::Gone) => return Err(NotifError::Gone),
        Err(e) => {
            tracing::debug!(tid = n.tid, error = %e, "cannot tell the caller's process");
            None
        }
    };
    let executable = tgid.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok());
    let (subject, mut args) = describe_with(n, listener)?;
    // Checked after the read, like every read of the target: a pid reused by then would name
    // a stranger's program.
    if executable.is_some() && !n.is_valid(listener)? {
        return Err(NotifError::Gone);
    }
    let error = args.remove("error").and_then(|e| e.as_str().map(str::to_owned));
    let record = AuditRecord {
        time,
        pid: tgid,
        tid: n.tid,
        executable: executable.map(|p| p.to_string_lossy().into_owned()),
        syscall: subject.call,
        args,
        decision: Decision::Kernel,
        result: None,
        errno: None,
        error,
    };
    Ok((subject, record))
}

/// Describes, decides and answers one call. Errors are Gone and failures of the listener's
/// validity check; a failed read or answer is a field of the record.
fn serve_one(
    listener: &Listener,
    n: &Notification,
    time: String,
    decide: &dyn Fn(&CallSubject) -> AuditDecision,
) -> Result<AuditRecord, NotifError> {
    let (subject, mut record) = record_call(listener, n, time)?;
    let answered = match decide(&subject) {
        AuditDecision::Continue => listener.respond_continue(n.id),
        AuditDecision::Deny { errno } => {
            let errno = if (1..=4095).contains(&errno) {
                errno
            } else {
                tracing::warn!(errno, "a policy denial with an impossible errno; answering EPERM");
                libc::EPERM
            };
            record.decision = Decision::Deny;
            record.result = Some(-1);
            record.errno = Some(Errno(errno));
            listener.respond_errno(n.id, errno)
        }
    };
    match answered {
        Ok(()) => Ok(record),
        Err(NotifError::Gone) => Err(NotifError::Gone),
        // The target may still wait; nothing else can be sent for this call. Logged and kept
        // in the record, and the next calls are served as usual.
        Err(e) => {
            tracing::warn!(tid = n.tid, call = subject.call, error = %e, "cannot answer a call");
            let answer_error = format!("answering: {e}");
            record.error = Some(match record.error.take() {
                Some(read) => format!("{read}; {answer_error}"),
                None => answer_error,
            });
            Ok(record)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64, micros: u32) -> String {
        format_utc(secs, micros)
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(1_000_000_000, 123_456), "2001-09-09T01:46:40.123456Z");
        // Leap days: 2000 has one (divisible by 400), 2024 too (divisible by 4).
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(at(951_868_799, 999_999), "2000-02-29T23:59:59.999999Z");
        assert_eq!(at(1_709_164_800, 1), "2024-02-29T00:00:00.000001Z");
        assert_eq!(at(1_709_251_200, 0), "2024-03-01T00:00:00.000000Z");
        // 2100 is not (divisible by 100, not by 400): February 28th is followed by March 1st.
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59.000000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(1_798_761_599, 0), "2026-12-31T23:59:59.000000Z");
        assert_eq!(at(-1, 0), "1969-12-31T23:59:59.000000Z");
        assert_eq!(at(-62_135_596_800, 0), "0001-01-01T00:00:00.000000Z");
    }

    #[test]
    fn system_time_is_split_into_seconds_and_micros() {
        let t = UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
        assert_eq!(rfc3339_micros(t), "2001-09-09T01:46:40.123456Z");
        let before = UNIX_EPOCH - Duration::from_micros(1);
        assert_eq!(rfc3339_micros(before), "1969-12-31T23:59:59.999999Z");
    }

    /// The date `days` after 1970-01-01, counted one year and one month at a time.
    fn model(mut days: i64) -> (i64, u32, u32) {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut year = 1970;
        while days < 0 {
            year -= 1;
            days += if leap(year) { 366 } else { 365 };
        }
        loop {
            let len = if leap(year) { 366 } else { 365 };
            if days < len {
                break;
            }
            days -= len;
            year += 1;
        }
        let mut month = 1;
        for len in [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] {
            if days < len {
                break;
            }
            days -= len;
            month += 1;
        }
        (year, month, days as u32 + 1)
    }

    #[test]
    fn civil_dates_match_a_day_by_day_model() {
        // 1600-01-01 to 2400-12-31, every day near the century boundaries and every 7th
        // elsewhere (7 is coprime with every month and year length, so all positions occur).
        for days in (-135_140..157_000).step_by(7).chain(47_400..47_600).chain(-25_600..-25_400) {
            assert_eq!(civil_from_days(days), model(days), "day {days}");
        }
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EACCES), Some("EACCES"));
        assert_eq!(errno_name(13), Some("EACCES"));
        assert_eq!(errno_name(libc::EFAULT), Some("EFAULT"));
        assert_eq!(errno_name(libc::ECONNREFUSED), Some("ECONNREFUSED"));
        assert_eq!(errno_name(libc::EWOULDBLOCK), Some("EAGAIN"));
        assert_eq!(errno_name(libc::ENOTSUP), Some("EOPNOTSUPP"));
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(4000), None);
        assert_eq!(serde_json::to_string(&Errno(111)).unwrap(), "\"ECONNREFUSED\"");
        assert_eq!(serde_json::to_string(&Errno(4000)).unwrap(), "4000");
    }

    #[test]
    fn flags_and_option_names() {
        let flags = (libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as u32 | 0x0100_0000;
        assert_eq!(msg_flag_names(flags), json!(["MSG_DONTWAIT", "MSG_NOSIGNAL", "0x1000000"]));
        assert_eq!(msg_flag_names(0), json!([]));
        assert_eq!(option_name(libc::SOL_SOCKET, libc::SO_REUSEADDR), json!("SO_REUSEADDR"));
        assert_eq!(option_name(libc::IPPROTO_TCP, libc::TCP_NODELAY), json!("TCP_NODELAY"));
        // The same number means another option at another level.
        assert_eq!(option_name(libc::IPPROTO_IP, 1), json!("IP_TOS"));
        assert_eq!(option_name(libc::IPPROTO_TCP, 9999), json!(9999));
        assert_eq!(option_name(1234, 1), json!(1));
        assert_eq!(level_name(1234), json!(1234));
        assert_eq!(family_name(libc::AF_INET6), json!("AF_INET6"));
        assert_eq!(type_name(libc::SOCK_DGRAM), json!("SOCK_DGRAM"));
        assert_eq!(shutdown_name(libc::SHUT_WR), json!("SHUT_WR"));
    }

    #[test]
    fn address_fields_by_family() {
        let v4 = SockAddr::Inet("127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            Value::Object(address_fields(&v4)),
            json!({"address": "127.0.0.1", "port": 8080})
        );
        let v6 = SockAddr::Inet("[fe80::1%3]:53".parse().unwrap());
        assert_eq!(
            Value::Object(address_fields(&v6)),
            json!({"address": "fe80::1", "port": 53, "scope_id": 3})
        );
        let abstract_name = SockAddr::Unix(b"\0joyride".to_vec());
        assert_eq!(Value::Object(address_fields(&abstract_name)), json!({"path": "@joyride"}));
        let path = SockAddr::Unix(b"/run/x.sock\0".to_vec());
        assert_eq!(Value::Object(address_fields(&path)), json!({"path": "/run/x.sock"}));
        let unspec = SockAddr::Other { family: 0 };
        assert_eq!(Value::Object(address_fields(&unspec)), json!({"address_family": "AF_UNSPEC"}));
    }

    #[test]
    fn records_serialise_with_optional_fields_left_out() {
        let mut args = Map::new();
        args.insert("fd".into(), 3.into());
        let mut record = AuditRecord {
            time: at(0, 0),
            pid: Some(10),
            tid: 11,
            executable: None,
            syscall: "connect",
            args,
            decision: Decision::Kernel,
            result: None,
            errno: None,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            json!({"time": "1970-01-01T00:00:00.000000Z", "pid": 10, "tid": 11,
                   "executable": null, "syscall": "connect", "args": {"fd": 3},
                   "decision": "kernel"})
        );
        record.decision = Decision::Deny;
        record.result = Some(-1);
        record.errno = Some(Errno(libc::EACCES));
        let v = serde_json::to_value(&record).unwrap();
        assert_eq!(
            (&v["decision"], &v["result"], &v["errno"]),
            (&json!("deny"), &json!(-1), &json!("EACCES"))
        );
    }

    #[test]
    fn the_log_writes_whole_lines_from_many_threads() {
        let path =
            std::env::temp_dir().join(format!("joyride-audit-unit-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::to_file(&path).unwrap();
        let record = |i: u32| AuditRecord {
            time: at(0, i),
            pid: Some(i),
            tid: i,
            executable: Some("x".repeat(3000)),
            syscall: "bind",
            args: Map::new(),
            decision: Decision::Kernel,
            result: None,
            errno: None,
            error: None,
        };
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = &log;
                s.spawn(move || (0..200).for_each(|i| log.record(&record(t * 1000 + i))));
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let mut pids: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["pid"].as_u64().unwrap())
            .collect();
        pids.sort_unstable();
        let want: Vec<u64> = (0..4).flat_map(|t| (0..200).map(move |i| t * 1000 + i)).collect();
        assert_eq!(pids, want);
        assert_eq!(log.failures(), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // Mode 0640 less the umask: never writable by the group, nothing for others.
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        std::fs::remove_file(&path).unwrap();
    }
}
