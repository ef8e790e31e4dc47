//! `serve_audit` against real programs: a Python script under `FilterSpec::audit()`, this test
//! as its supervisor, the JSON lines of the log compared field by field with what the script
//! did and what the kernel saw.
//!
//! Skipped (with the reason printed) where no python3 binary is installed. Every wait is bounded:
//! a script that hangs is killed after [`DEADLINE`], which also ends `serve_audit`.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use supervisor::audit::{rfc3339_micros, serve_audit, AuditDecision, AuditLog, CallSubject};
use trap::{FilterSpec, InstallOptions};

const DEADLINE: Duration = Duration::from_secs(30);

/// A python3 that is an ELF binary (not a pyenv shell shim), so that the record's executable
/// is the interpreter itself.
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::iter::once(PathBuf::from("/usr/bin/python3"))
        .chain(std::env::split_paths(&path).map(|dir| dir.join("python3")));
    for candidate in candidates {
        let Ok(real) = std::fs::canonicalize(&candidate) else { continue };
        let mut magic = [0u8; 4];
        let is_elf = std::fs::File::open(&real)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok_and(|()| &magic == b"\x7fELF");
        if is_elf {
            return Some(real);
        }
    }
    None
}

/// A file in the temporary directory, removed when the test ends, pass or fail.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let path =
            std::env::temp_dir().join(format!("joyride-audit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one audited run left behind.
struct Run {
    pid: u32,
    python: PathBuf,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    records: Vec<Value>,
    /// The UTC dates at the start and the end of the run.
    dates: [String; 2],
}

impl Run {
    /// The records' syscall names, in order.
    fn calls(&self) -> Vec<&str> {
        self.records.iter().map(|r| r["syscall"].as_str().expect("syscall")).collect()
    }

    /// The `index`th record of `call` (0 for the first).
    #[track_caller]
    fn record(&self, call: &str, index: usize) -> &Value {
        self.records
            .iter()
            .filter(|r| r["syscall"] == call)
            .nth(index)
            .unwrap_or_else(|| panic!("no record {index} of {call}; calls: {:?}", self.calls()))
    }

    /// Every record names the script's process and the interpreter, at a time of this run.
    #[track_caller]
    fn check_common_fields(&self) {
        let exe = self.python.to_str().expect("utf-8 path");
        for r in &self.records {
            assert_eq!(r["pid"], json!(self.pid), "{r}");
            assert_eq!(r["tid"], json!(self.pid), "{r}");
            assert_eq!(r["executable"], json!(exe), "{r}");
            let time = r["time"].as_str().expect("time");
            assert_eq!(time.len(), "2026-12-06T18:30:01.123456Z".len(), "{time}");
            assert!(self.dates.iter().any(|d| time.starts_with(d.as_str())), "{time}");
            assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        }
    }
}

/// Runs `script` under the audit filter with `args`, serving it with `decide`, or `None`
/// (after saying why) where there is no python3.
fn audit(
    script: &str,
    args: &[String],
    decide: &dyn Fn(&CallSubject) -> AuditDecision,
) -> Option<Run> {
    let Some(python) = python() else {
        eprintln!("skipped: no python3 ELF binary in /usr/bin or on PATH");
        return None;
    };
    let log_path = TempPath::new(&format!("{:x}.log", script.len() * 7919 + args.len()));
    let log = AuditLog::to_file(&log_path.0).expect("open the audit log");
    let start_date = rfc3339_micros(SystemTime::now())[..10].to_owned();
    let mut cmd = Command::new(&python);
    cmd.arg("-c").arg(script).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let filter = Arc::new(FilterSpec::audit().build().expect("build the audit filter"));
    let (child, listener) =
        trap::spawn(&mut cmd, filter, InstallOptions::default(), Duration::from_secs(10))
            .expect("spawn python under the filter");
    let pid = child.id();
    // The filter hangs up only once its last process is reaped: the reaper runs beside the
    // serving loop.
    let reaper = std::thread::spawn(move || reap_bounded(child));
    serve_audit(&listener, &log, decide).expect("serve_audit");
    let (status, stdout, stderr) = reaper.join().expect("reaper thread");
    assert_eq!(log.failures(), 0);
    let text = std::fs::read_to_string(&log_path.0).expect("read the audit log");
    let records = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let end_date = rfc3339_micros(SystemTime::now())[..10].to_owned();
    Some(Run { pid, python, status, stdout, stderr, records, dates: [start_date, end_date] })
}

fn reap_bounded(mut child: Child) -> (ExitStatus, String, String) {
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("reap python");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut stdout).expect("stdout");
    child.stderr.take().expect("piped").read_to_string(&mut stderr).expect("stderr");
    (status, stdout, stderr)
}

#[track_caller]
fn assert_success(run: &Run) {
    assert!(
        run.status.success(),
        "python failed ({}):\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
}

fn loopback_listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback listener")
}

const CONTINUE_ALL: &dyn Fn(&CallSubject) -> AuditDecision = &|_| AuditDecision::Continue;

const ALLOWED_SCRIPT: &str = r#"
import socket, sys
tcp_port, udp_port, unix_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t.connect(("127.0.0.1", tcp_port))
print("connected from", t.getsockname()[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
u.sendto(b"hello", ("127.0.0.1", udp_port))
u.sendmsg([b"wor", b"ld"], [], 0, ("127.0.0.1", udp_port))
x = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
x.connect(unix_path)
print("fds", t.fileno(), u.fileno(), x.fileno())
# Closed here, or Python's exit would describe each socket (getsockname, getpeername) in a
# ResourceWarning it then drops.
for sock in (t, u, x):
    sock.close()
"#;

#[test]
fn every_call_is_logged_and_served_by_the_kernel() {
    let tcp = loopback_listener();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind udp");
    let udp_port = udp.local_addr().unwrap().port();
    let unix_path = TempPath::new("unix.sock");
    let unix = UnixListener::bind(&unix_path.0).expect("bind a unix listener");
    let args = [tcp_port.to_string(), udp_port.to_string(), unix_path.0.display().to_string()];
    let Some(run) = audit(ALLOWED_SCRIPT, &args, CONTINUE_ALL) else { return };
    assert_success(&run);
    run.check_common_fields();

    // The kernel served every call: the connection, both datagrams and the unix connection
    // arrived.
    let (_conn, peer) = tcp.accept().expect("accept the script's connection");
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some(format!("connected from {}", peer.port()).as_str()));
    let fds: Vec<i64> = lines
        .next()
        .and_then(|l| l.strip_prefix("fds "))
        .expect("fds line")
        .split(' ')
        .map(|n| n.parse().expect("fd"))
        .collect();
    let (t, u, x) = (fds[0], fds[1], fds[2]);
    udp.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 16];
    let mut datagrams = Vec::new();
    for _ in 0..2 {
        let (n, _) = udp.recv_from(&mut buf).expect("a datagram from the script");
        datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(datagrams, ["hello", "world"]);
    unix.set_nonblocking(true).unwrap();
    unix.accept().expect("the script's unix connection is pending");

    assert_eq!(
        run.calls(),
        [
            "socket",
            "setsockopt",
            "connect",
            "getsockname",
            "socket",
            "bind",
            "sendto",
            "sendmsg",
            "connect"
        ]
    );
    for r in &run.records {
        assert_eq!(r["decision"], "kernel", "{r}");
        for absent in ["result", "errno", "error"] {
            assert!(r.get(absent).is_none(), "{absent} in {r}");
        }
    }
    assert_eq!(
        run.record("socket", 0)["args"],
        json!({"family": "AF_INET", "type": "SOCK_STREAM", "nonblock": false,
               "cloexec": true, "protocol": 0})
    );
    assert_eq!(
        run.record("setsockopt", 0)["args"],
        json!({"fd": t, "family": "AF_INET", "type": "SOCK_STREAM", "level": "IPPROTO_TCP",
               "option": "TCP_NODELAY", "length": 4, "value": 1})
    );
    assert_eq!(
        run.record("connect", 0)["args"],
        json!({"fd": t, "family": "AF_INET", "type": "SOCK_STREAM", "length": 16,
               "address": "127.0.0.1", "port": tcp_port})
    );
    assert_eq!(
        run.record("getsockname", 0)["args"],
        json!({"fd": t, "family": "AF_INET", "type": "SOCK_STREAM"})
    );
    assert_eq!(run.record("socket", 1)["args"]["type"], "SOCK_DGRAM");
    assert_eq!(
        run.record("bind", 0)["args"],
        json!({"fd": u, "family": "AF_INET", "type": "SOCK_DGRAM", "length": 16,
               "address": "127.0.0.1", "port": 0})
    );
    assert_eq!(
        run.record("sendto", 0)["args"],
        json!({"fd": u, "family": "AF_INET", "type": "SOCK_DGRAM", "length": 5, "flags": [],
               "address": "127.0.0.1", "port": udp_port})
    );
    assert_eq!(
        run.record("sendmsg", 0)["args"],
        json!({"fd": u, "family": "AF_INET", "type": "SOCK_DGRAM", "flags": [], "iovlen": 2,
               "length": 5, "address": "127.0.0.1", "port": udp_port})
    );
    let unix_args = &run.record("connect", 1)["args"];
    assert_eq!(
        unix_args,
        &json!({"fd": x, "family": "AF_UNIX", "type": "SOCK_STREAM",
                "length": unix_args["length"], "path": unix_path.0.to_str().unwrap()})
    );
    // Python passes the path with its terminating NUL: the family field and the bytes.
    assert_eq!(unix_args["length"], json!(2 + unix_path.0.as_os_str().len() + 1));
}

#[test]
fn a_denied_connect_fails_with_the_policy_errno_and_never_reaches_the_kernel() {
    let tcp = loopback_listener();
    let denied = tcp.local_addr().unwrap();
    let allowed = loopback_listener();
    let seen = Mutex::new(Vec::new());
    let decide = |s: &CallSubject| {
        seen.lock().unwrap().push(s.clone());
        if s.call == "connect" && s.destination == Some(denied) {
            AuditDecision::Deny { errno: libc::EACCES }
        } else {
            AuditDecision::Continue
        }
    };
    let script = r#"
import socket, sys
for port in sys.argv[1:]:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", int(port)))
        print("connected")
    except OSError as e:
        print("errno", e.errno)
    s.close()
"#;
    let args = [denied.port().to_string(), allowed.local_addr().unwrap().port().to_string()];
    let Some(run) = audit(script, &args, &decide) else { return };
    assert_success(&run);
    run.check_common_fields();
    assert_eq!(run.stdout, "errno 13\nconnected\n");

    let refused = run.record("connect", 0);
    assert_eq!(refused["decision"], "deny");
    assert_eq!(refused["result"], -1);
    assert_eq!(refused["errno"], "EACCES");
    assert_eq!(refused["args"]["port"], denied.port());
    let passed = run.record("connect", 1);
    assert_eq!(passed["decision"], "kernel");
    assert!(passed.get("errno").is_none());

    // The kernel never saw the denied connect: nothing waits on its listener.
    tcp.set_nonblocking(true).unwrap();
    assert_eq!(tcp.accept().map(|_| ()).unwrap_err().kind(), ErrorKind::WouldBlock);
    allowed.accept().expect("the allowed connection");

    let seen = seen.into_inner().unwrap();
    let connects: Vec<&CallSubject> = seen.iter().filter(|s| s.call == "connect").collect();
    assert_eq!(
        connects[0],
        &CallSubject {
            call: "connect",
            family: Some(libc::AF_INET),
            kind: Some(libc::SOCK_STREAM),
            destination: Some(denied),
        }
    );
    assert_eq!(
        seen.iter().find(|s| s.call == "socket"),
        Some(&CallSubject {
            call: "socket",
            family: Some(libc::AF_INET),
            kind: Some(libc::SOCK_STREAM),
            destination: None,
        })
    );
}

#[test]
fn bad_pointers_are_logged_and_left_to_the_kernel() {
    let tcp = loopback_listener();
    let port = tcp.local_addr().unwrap().port();
    // connect with an unmapped address, sendmsg with an unmapped msghdr, connect with an
    // address longer than sockaddr_storage; then an ordinary connect, which the supervisor
    // must still serve.
    let script = r#"
import ctypes, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket()
def show(name, r):
    print(name, r, ctypes.get_errno())
    ctypes.set_errno(0)
show("connect", libc.connect(s.fileno(), ctypes.c_void_p(1), 16))
show("sendmsg", libc.sendmsg(s.fileno(), ctypes.c_void_p(8), 0))
buf = ctypes.create_string_buffer(256)
show("long", libc.connect(s.fileno(), buf, 200))
s.connect(("127.0.0.1", int(sys.argv[1])))
print("connected")
s.close()
"#;
    let Some(run) = audit(script, &[port.to_string()], CONTINUE_ALL) else { return };
    assert_success(&run);
    run.check_common_fields();
    assert_eq!(run.stdout, "connect -1 14\nsendmsg -1 14\nlong -1 22\nconnected\n");
    assert_eq!(run.calls(), ["socket", "connect", "sendmsg", "connect", "connect"]);

    let fault = run.record("connect", 0);
    assert_eq!(fault["decision"], "kernel");
    assert_eq!(fault["error"], "EFAULT reading the address (16 bytes at 0x1)");
    assert!(fault["args"].get("address").is_none());
    assert_eq!(fault["args"]["length"], 16);
    assert_eq!(run.record("sendmsg", 0)["error"], "EFAULT reading the msghdr (56 bytes at 0x8)");
    assert_eq!(
        run.record("connect", 1)["error"],
        "EINVAL: the address length 200 is out of range (at most 128)"
    );
    let good = run.record("connect", 2);
    assert!(good.get("error").is_none(), "{good}");
    assert_eq!(good["args"]["port"], port);
    tcp.accept().expect("the connection after the bad calls");
}

#[test]
fn a_log_that_cannot_be_opened_names_its_path() {
    let err = AuditLog::to_file(Path::new("/nonexistent-dir/x.log")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent-dir/x.log"), "{err}");
}
