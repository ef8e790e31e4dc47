//! End to end: a child process under the filter, this test as its supervisor.
//!
//! The child is this very test binary, re-run with `TRAP_TEST_ROLE` naming what it must do
//! (the ignored test `child_role` at the bottom); [`trap::spawn`] installs the filter between
//! fork and exec and hands the listener over with pidfd_getfd. The child prints `RESULT` lines
//! (what each of its calls returned, and the errno) that the tests compare exactly.
//!
//! Every wait is bounded, and a [`Target`] kills and reaps its child when a test fails.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trap::{
    AddFd, FilterSpec, HandoverError, InstallOptions, Listener, NotifError, Notification,
    Readiness, SockAddr, SpawnError, Syscall,
};

const ROLE: &str = "TRAP_TEST_ROLE";
const PORT: &str = "TRAP_TEST_PORT";
const TIMEOUT: Duration = Duration::from_secs(10);
/// An errno socket() and connect() never produce on their own.
const EXFULL: i32 = libc::EXFULL;

/// A child running `role` under a filter, and the listener of its notifications.
struct Target {
    child: Child,
    listener: Listener,
}

impl Target {
    fn start(role: &str, spec: FilterSpec) -> Target {
        Target::start_with(role, spec, &[])
    }

    fn start_with(role: &str, spec: FilterSpec, env: &[(&str, String)]) -> Target {
        let mut cmd = child_command(role);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let filter = Arc::new(spec.build().expect("filter"));
        let (child, listener) = trap::spawn(&mut cmd, filter, InstallOptions::default(), TIMEOUT)
            .expect("spawn the child under the filter");
        Target { child, listener }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next notification (within the time limit).
    #[track_caller]
    fn next(&self) -> Notification {
        let ready = self.listener.wait_readable(Some(TIMEOUT)).expect("poll the listener");
        assert_eq!(ready, Readiness::Readable, "no notification within {TIMEOUT:?}");
        self.listener.receive().expect("receive")
    }

    /// Waits for the child to exit successfully; its RESULT lines.
    #[track_caller]
    fn finish(mut self) -> Vec<String> {
        let status = wait_bounded(&mut self.child);
        let mut out = String::new();
        self.child.stdout.take().expect("piped").read_to_string(&mut out).expect("read stdout");
        assert!(status.success(), "child failed ({status}); its output:\n{out}");
        results(&out)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This test binary, to run `child_role` as `role`.
fn child_command(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", "child_role", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

fn results(out: &str) -> Vec<String> {
    out.lines().filter_map(|l| l.strip_prefix("RESULT ")).map(str::to_owned).collect()
}

#[track_caller]
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "child still running after {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until notification `n` is no longer pending.
#[track_caller]
fn wait_invalid(listener: &Listener, n: &Notification) {
    let deadline = Instant::now() + TIMEOUT;
    while n.is_valid(listener).expect("ID_VALID") {
        assert!(Instant::now() < deadline, "notification still valid after {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_notified_socket_call_arrives_decoded_and_gets_the_errno_we_answer() {
    let t = Target::start("socket_errno", FilterSpec::joyride());
    assert!(t.listener.set_sync_wakeup().expect("SET_FLAGS"), "SYNC_WAKE_UP needs Linux >= 6.6");
    let n = t.next();
    assert_eq!(
        n.syscall(),
        Syscall::Socket {
            domain: libc::AF_INET,
            ty: libc::SOCK_STREAM,
            nonblock: true,
            cloexec: true,
            protocol: libc::IPPROTO_TCP
        }
    );
    assert_eq!(n.syscall().name(), "socket");
    assert_eq!(n.tgid(&t.listener).expect("tgid"), t.pid());
    t.listener.respond_errno(n.id, EXFULL).expect("respond");
    let tid = n.tid;
    assert_eq!(t.finish(), [format!("socket -1 {EXFULL}"), format!("tid {tid} 0")]);
}

#[test]
fn kernel_sockets_and_addressless_sends_never_trap_and_io_uring_gets_enosys() {
    let t = Target::start("kernel_calls", FilterSpec::joyride());
    // The first notification is the AF_INET6 marker: socketpair, AF_UNIX, AF_NETLINK, send
    // without an address and io_uring_setup all went by without one.
    let n = t.next();
    assert_eq!(
        n.syscall(),
        Syscall::Socket {
            domain: libc::AF_INET6,
            ty: libc::SOCK_DGRAM,
            nonblock: false,
            cloexec: false,
            protocol: 0
        }
    );
    t.listener.respond_continue(n.id).expect("continue");
    // Then the sendto with an address.
    let n = t.next();
    let Syscall::SendTo { buf_ptr, len, flags: 0, addr_ptr, addr_len, .. } = n.syscall() else {
        panic!("expected sendto, got {:?}", n.syscall());
    };
    assert_eq!(n.read(&t.listener, buf_ptr, len as usize).expect("read the data"), b"ping");
    let to = n.read_sockaddr(&t.listener, addr_ptr, addr_len).expect("read the address");
    let mut name = b"\0trap-test-".to_vec();
    name.extend_from_slice(t.pid().to_string().as_bytes());
    assert_eq!(to, SockAddr::Unix(name));
    t.listener.respond_value(n.id, 4).expect("respond");
    assert_eq!(
        t.finish(),
        [
            "socketpair 0 0",
            "unix 0 0",
            "netlink 0 0",
            "send 1 0",
            "io_uring_setup -1 38",
            "inet6_is_a_socket 1 0",
            "sendto 4 0",
        ]
    );
}

#[test]
fn addfd_injects_the_carrier_as_the_result_or_at_a_chosen_number() {
    let t = Target::start("addfd", FilterSpec::joyride());
    // First socket(): the carrier becomes the call's result (SEND), close-on-exec as asked.
    let n = t.next();
    assert!(matches!(n.syscall(), Syscall::Socket { domain: libc::AF_INET, .. }));
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let how = AddFd { cloexec: true, target_fd: None, send: true };
    let first = t.listener.add_fd(n.id, theirs.as_fd(), how).expect("ADDFD|SEND");
    drop(theirs);
    // Second socket(): installed at a number we choose (SETFD), then answered separately.
    let n = t.next();
    let (mut ours2, theirs2) = UnixStream::pair().expect("socketpair");
    let how = AddFd { cloexec: false, target_fd: Some(77), send: false };
    assert_eq!(t.listener.add_fd(n.id, theirs2.as_fd(), how).expect("ADDFD|SETFD"), 77);
    t.listener.respond_value(n.id, 77).expect("respond");
    drop(theirs2);

    let mut got = Vec::new();
    ours.read_to_end(&mut got).expect("read the first carrier");
    assert_eq!(got, b"through the first carrier");
    let mut got = Vec::new();
    ours2.read_to_end(&mut got).expect("read the second carrier");
    assert_eq!(got, b"and the second");
    assert_eq!(
        t.finish(),
        [
            format!("socket {first} 0"),
            "cloexec 1 0".into(),
            "socket 77 0".into(),
            "cloexec 0 0".into()
        ]
    );
}

#[test]
fn connect_address_is_read_from_the_target_and_continue_lets_the_kernel_serve_it() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("local_addr").port();
    let t = Target::start_with("connect", FilterSpec::joyride(), &[(PORT, port.to_string())]);
    let n = t.next();
    assert!(matches!(n.syscall(), Syscall::Socket { domain: libc::AF_INET, .. }));
    t.listener.respond_continue(n.id).expect("continue");
    let n = t.next();
    let Syscall::Connect { addr_ptr, addr_len, .. } = n.syscall() else {
        panic!("expected connect, got {:?}", n.syscall());
    };
    assert_eq!(addr_len, 16);
    let to = n.read_sockaddr(&t.listener, addr_ptr, addr_len).expect("read the address");
    assert_eq!(to, SockAddr::Inet(format!("127.0.0.1:{port}").parse().unwrap()));
    t.listener.respond_continue(n.id).expect("continue");
    let (mut conn, _) = server.accept().expect("accept");
    let mut got = Vec::new();
    conn.read_to_end(&mut got).expect("read");
    assert_eq!(got, b"hello over the kernel's tcp");
    assert_eq!(t.finish(), ["connect 0 0"]);
}

#[test]
fn bad_pointers_and_lengths_become_efault_and_einval_for_the_target() {
    let t = Target::start("bad_connects", FilterSpec::joyride());
    // connect(3, 0x10, 16): unmapped.
    let n = t.next();
    let Syscall::Connect { addr_ptr: 0x10, addr_len: 16, .. } = n.syscall() else {
        panic!("unexpected {:?}", n.syscall());
    };
    let err = n.read_sockaddr(&t.listener, 0x10, 16).unwrap_err();
    assert!(matches!(err, NotifError::Fault { addr: 0x10, len: 16 }), "{err:?}");
    t.listener.respond_errno(n.id, err.errno().unwrap()).expect("respond");
    // connect(3, &addr, 200) and (.., -1): longer than any sockaddr, negative.
    for expected_len in [200, -1] {
        let n = t.next();
        let Syscall::Connect { addr_ptr, addr_len, .. } = n.syscall() else {
            panic!("unexpected {:?}", n.syscall());
        };
        assert_eq!(addr_len, expected_len);
        let err = n.read_sockaddr(&t.listener, addr_ptr, addr_len).unwrap_err();
        assert!(matches!(err, NotifError::BadLength { max: 128, .. }), "{err:?}");
        t.listener.respond_errno(n.id, err.errno().unwrap()).expect("respond");
    }
    // connect(3, &sockaddr_in, 8): too short for AF_INET.
    let n = t.next();
    let Syscall::Connect { addr_ptr, addr_len: 8, .. } = n.syscall() else {
        panic!("unexpected {:?}", n.syscall());
    };
    let err = n.read_sockaddr(&t.listener, addr_ptr, 8).unwrap_err();
    assert!(matches!(err, NotifError::SockAddr(_)), "{err:?}");
    t.listener.respond_errno(n.id, err.errno().unwrap()).expect("respond");
    assert_eq!(
        t.finish(),
        [
            "connect_unmapped -1 14",
            "connect_long -1 22",
            "connect_negative -1 22",
            "connect_short -1 22"
        ]
    );
}

#[test]
fn the_supervisor_writes_results_into_the_target() {
    let t = Target::start("getsockname", FilterSpec::joyride());
    let n = t.next();
    let Syscall::GetSockName { fd: 5, addr_ptr, len_ptr } = n.syscall() else {
        panic!("unexpected {:?}", n.syscall());
    };
    assert_eq!(n.read_i32(&t.listener, len_ptr).expect("read the length"), 128);
    let addr = SockAddr::Inet("10.77.0.2:8080".parse().unwrap()).to_bytes();
    n.write(&t.listener, addr_ptr, &addr).expect("write the address");
    n.write(&t.listener, len_ptr, &16i32.to_ne_bytes()).expect("write the length");
    t.listener.respond_value(n.id, 0).expect("respond");
    assert_eq!(t.finish(), ["getsockname 0 0", "address 10.77.0.2:8080 16"]);
}

#[test]
fn a_dead_target_invalidates_its_notification() {
    let mut t = Target::start("socket_errno", FilterSpec::joyride());
    let n = t.next();
    assert!(n.is_valid(&t.listener).expect("ID_VALID"));
    assert_eq!(n.read(&t.listener, n.instruction_pointer - 2, 2).expect("read"), [0x0f, 0x05]);
    t.child.kill().expect("kill");
    t.child.wait().expect("reap");
    assert!(!n.is_valid(&t.listener).expect("ID_VALID"));
    assert!(t.listener.respond_errno(n.id, EXFULL).unwrap_err().is_gone());
    assert!(n.read(&t.listener, n.instruction_pointer - 2, 2).unwrap_err().is_gone());
    assert_eq!(t.listener.wait_readable(Some(TIMEOUT)).expect("poll"), Readiness::Hangup);
}

#[test]
fn a_signal_withdraws_the_notification_and_the_target_sees_eintr() {
    let t = Target::start("interrupted", FilterSpec::joyride());
    let n = t.next();
    // The child's SIGUSR1 handler has no SA_RESTART: the call ends with EINTR.
    // SAFETY: tgkill(2) takes integers only; `n.tid` is a thread of our own child, which is
    // blocked in the notified call, so the signal cannot reach a stranger.
    let ret = unsafe {
        libc::syscall(libc::SYS_tgkill, t.pid() as libc::pid_t, n.tid as libc::pid_t, libc::SIGUSR1)
    };
    assert_eq!(ret, 0, "tgkill: {}", std::io::Error::last_os_error());
    wait_invalid(&t.listener, &n);
    assert!(t.listener.respond_value(n.id, 3).unwrap_err().is_gone());
    assert_eq!(t.finish(), ["socket -1 4"]);
}

#[test]
fn calls_from_other_threads_carry_their_thread_id() {
    let t = Target::start("thread", FilterSpec::joyride());
    let n = t.next();
    assert!(matches!(n.syscall(), Syscall::Socket { domain: libc::AF_INET6, .. }));
    assert_ne!(n.tid, t.pid());
    assert_eq!(n.tgid(&t.listener).expect("tgid"), t.pid());
    t.listener.respond_errno(n.id, EXFULL).expect("respond");
    let tid = n.tid;
    assert_eq!(t.finish(), [format!("thread {tid} 0"), format!("socket -1 {EXFULL}")]);
}

#[test]
fn the_gadget_exemption_lets_its_calls_through() {
    // The child maps `syscall; ret` at GADGET (as the fast path will) and calls socket(AF_INET)
    // through it, then through libc.
    let spec = FilterSpec::joyride().allow_from_gadget(GADGET + 2);
    let t = Target::start("gadget", spec);
    let n = t.next();
    assert!(matches!(n.syscall(), Syscall::Socket { domain: libc::AF_INET, .. }));
    assert_ne!(n.instruction_pointer, GADGET + 2);
    t.listener.respond_errno(n.id, EXFULL).expect("respond");
    assert_eq!(
        t.finish(),
        ["gadget_socket_is_a_socket 1 0".to_owned(), format!("libc_socket -1 {EXFULL}")]
    );
}

/// Where the child maps its gadget (a page no loader uses).
const GADGET: u64 = 0x3a5a_0000_0000;

#[test]
fn i386_calls_cannot_bypass_the_filter() {
    // Unfiltered, `int 0x80` socketcall(SYS_SOCKET, AF_INET) makes a socket that no x86_64
    // rule sees; under the filter every i386 call gets ENOSYS.
    let out = child_command("int80").output().expect("run the probe");
    let probe = results(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() || probe.first().map(String::as_str) != Some("int80_getpid 0 1") {
        eprintln!("skipped: this kernel runs no i386 system calls ({probe:?}, {})", out.status);
        return;
    }
    assert_eq!(probe, ["int80_getpid 0 1", "int80_socketcall 0 1"]);
    let t = Target::start("int80", FilterSpec::joyride());
    assert_eq!(t.finish(), ["int80_getpid -38 0", "int80_socketcall -38 0"]);
}

#[test]
fn a_second_listener_in_one_filter_chain_is_refused_with_ebusy() {
    let t = Target::start("nested", FilterSpec::socket_creation());
    assert_eq!(t.finish(), ["nested_spawn 16 0"]);
}

#[test]
fn spawn_reports_a_missing_program() {
    let filter = Arc::new(FilterSpec::joyride().build().unwrap());
    let mut cmd = Command::new("/nonexistent/trap-test-program");
    let err = trap::spawn(&mut cmd, filter, InstallOptions::default(), TIMEOUT).unwrap_err();
    let SpawnError::Spawn { source, .. } = err else { panic!("unexpected {err:?}") };
    assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
    // The hook serves one child only.
    let err = cmd.spawn().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EALREADY));
}

// ---------------------------------------------------------------------------------------------
// The child's side

#[test]
#[ignore = "the supervised child of the other tests: does nothing unless TRAP_TEST_ROLE is set"]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else { return };
    match role.as_str() {
        "socket_errno" => child::socket_errno(),
        "kernel_calls" => child::kernel_calls(),
        "addfd" => child::addfd(),
        "connect" => child::connect(),
        "bad_connects" => child::bad_connects(),
        "getsockname" => child::getsockname(),
        "interrupted" => child::interrupted(),
        "thread" => child::thread(),
        "gadget" => child::gadget(),
        "int80" => child::int80(),
        "nested" => child::nested(),
        other => panic!("unknown role {other}"),
    }
}

/// Raw system calls, so that the tests control every argument. Each `unsafe` block passes
/// pointers only to locals that outlive the call.
mod child {
    use super::*;
    use std::ffi::{c_int, c_long, c_void};

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Prints `RESULT what ret errno` (errno only for a failure).
    fn report(what: &str, ret: i64) {
        let e = if ret < 0 { errno() } else { 0 };
        println!("RESULT {what} {ret} {e}");
        std::io::stdout().flush().unwrap();
    }

    fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        // SAFETY: socket(2) takes integers only.
        unsafe { libc::socket(domain, ty, protocol) }
    }

    fn is_socket(fd: c_int) -> bool {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .is_ok_and(|p| p.to_string_lossy().starts_with("socket:["))
    }

    fn gettid() -> i64 {
        // SAFETY: gettid(2) takes no arguments.
        i64::from(unsafe { libc::gettid() })
    }

    fn sockaddr_in(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip) },
            sin_zero: [0; 8],
        }
    }

    fn connect_raw(fd: c_int, addr: *const c_void, len: c_int) -> i64 {
        // SAFETY: connect(2) reads `len` bytes at `addr`; callers pass a local of at least
        // that size, or a deliberately bad pointer that the kernel or supervisor refuses.
        i64::from(unsafe { libc::connect(fd, addr.cast(), len as libc::socklen_t) })
    }

    pub(super) fn socket_errno() {
        let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        report("socket", i64::from(socket(libc::AF_INET, ty, libc::IPPROTO_TCP)));
        println!("RESULT tid {} 0", gettid());
    }

    pub(super) fn kernel_calls() {
        let mut pair = [-1 as c_int; 2];
        // SAFETY: socketpair(2) writes two ints into `pair`.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
        report("socketpair", i64::from(r));
        let unix = socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
        report("unix", i64::from(unix.min(0)));
        let netlink = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
        report("netlink", i64::from(netlink.min(0)));
        // SAFETY: send(2) reads one byte of the literal.
        let r = unsafe { libc::send(pair[0], b"x".as_ptr().cast(), 1, 0) };
        report("send", r as i64);
        let mut params = [0u8; 120]; // struct io_uring_params
                                     // SAFETY: io_uring_setup(2) reads and writes one io_uring_params, 120 bytes.
        let r =
            unsafe { libc::syscall(libc::SYS_io_uring_setup, 1 as c_long, params.as_mut_ptr()) };
        report("io_uring_setup", r);
        let inet6 = socket(libc::AF_INET6, libc::SOCK_DGRAM, 0);
        report("inet6_is_a_socket", i64::from(is_socket(inet6)));
        // An abstract unix address: the call traps because an address is given.
        let mut to: libc::sockaddr_un = zeroed_sockaddr_un();
        to.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let name = format!("\0trap-test-{}", std::process::id());
        for (dst, src) in to.sun_path.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let len = (2 + name.len()) as libc::socklen_t;
        // SAFETY: sendto(2) reads 4 bytes of the literal and `len` bytes of `to`.
        let r = unsafe {
            libc::sendto(unix, b"ping".as_ptr().cast(), 4, 0, (&raw const to).cast(), len)
        };
        report("sendto", r as i64);
    }

    fn zeroed_sockaddr_un() -> libc::sockaddr_un {
        // SAFETY: sockaddr_un is integers only; all zeroes is a valid (unnamed) address.
        unsafe { std::mem::zeroed() }
    }

    pub(super) fn addfd() {
        for msg in [&b"through the first carrier"[..], b"and the second"] {
            let fd = socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            report("socket", i64::from(fd));
            // SAFETY: write(2) reads `msg.len()` bytes of `msg`; fcntl and close take ints.
            unsafe {
                assert_eq!(libc::write(fd, msg.as_ptr().cast(), msg.len()), msg.len() as isize);
                let flags = libc::fcntl(fd, libc::F_GETFD);
                report("cloexec", i64::from(flags & libc::FD_CLOEXEC));
                libc::close(fd);
            }
        }
    }

    pub(super) fn connect() {
        let port: u16 = std::env::var(PORT).unwrap().parse().unwrap();
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let addr = sockaddr_in([127, 0, 0, 1], port);
        report("connect", connect_raw(fd, (&raw const addr).cast(), 16));
        let msg = b"hello over the kernel's tcp";
        // SAFETY: write(2) reads `msg.len()` bytes of `msg`; close takes an int.
        unsafe {
            assert_eq!(libc::write(fd, msg.as_ptr().cast(), msg.len()), msg.len() as isize);
            libc::close(fd);
        }
    }

    pub(super) fn bad_connects() {
        report("connect_unmapped", connect_raw(3, 0x10 as *const c_void, 16));
        let storage = [0u8; 256];
        report("connect_long", connect_raw(3, storage.as_ptr().cast(), 200));
        report("connect_negative", connect_raw(3, storage.as_ptr().cast(), -1));
        let addr = sockaddr_in([127, 0, 0, 1], 9);
        report("connect_short", connect_raw(3, (&raw const addr).cast(), 8));
    }

    pub(super) fn getsockname() {
        let mut storage = [0u8; 128];
        let mut len: libc::socklen_t = 128;
        // SAFETY: getsockname(2) writes at most `len` (128) bytes into `storage` and the
        // length into `len`.
        let r = unsafe { libc::getsockname(5, storage.as_mut_ptr().cast(), &mut len) };
        report("getsockname", i64::from(r));
        let addr = SockAddr::parse(&storage[..len as usize]).unwrap();
        let SockAddr::Inet(addr) = addr else { panic!("{addr:?}") };
        println!("RESULT address {addr} {len}");
    }

    extern "C" fn on_signal(_: c_int) {}

    pub(super) fn interrupted() {
        // SAFETY: a zeroed sigaction with a handler that does nothing (async-signal-safe) and
        // no SA_RESTART; sigaction(2) reads it.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(c_int) as usize;
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
        report("socket", i64::from(socket(libc::AF_INET, libc::SOCK_STREAM, 0)));
    }

    pub(super) fn thread() {
        let results = std::thread::spawn(|| {
            let tid = gettid();
            let r = socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
            (tid, r, errno())
        })
        .join()
        .unwrap();
        println!("RESULT thread {} 0", results.0);
        println!("RESULT socket {} {}", results.1, results.2);
    }

    /// Maps `syscall; ret` at GADGET and makes socket(domain, ty, 0) through it.
    fn gadget_socket(domain: c_int, ty: c_int) -> i64 {
        // SAFETY: a fresh anonymous private mapping at an address nothing else uses
        // (MAP_FIXED_NOREPLACE refuses to replace anything).
        let page = unsafe {
            libc::mmap(
                GADGET as *mut c_void,
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(page as u64, GADGET, "mmap: {}", std::io::Error::last_os_error());
        let code = [0x0f, 0x05, 0xc3]; // syscall; ret
                                       // SAFETY: the mapping is 4096 writable bytes that nothing else refers to; then it
                                       // becomes read-only and executable.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), page.cast::<u8>(), code.len());
            assert_eq!(libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC), 0);
        }
        let ret: i64;
        // SAFETY: calls the three instructions above with an x86_64 socket(2) system call
        // (number in rax, arguments in rdi, rsi, rdx); the kernel clobbers rcx and r11, and
        // the `call` pushes (and `ret` pops) one return address on our stack.
        unsafe {
            std::arch::asm!(
                "call {gadget}",
                gadget = in(reg) GADGET,
                inlateout("rax") libc::SYS_socket => ret,
                in("rdi") i64::from(domain),
                in("rsi") i64::from(ty),
                in("rdx") 0i64,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        ret
    }

    pub(super) fn gadget() {
        let fd = gadget_socket(libc::AF_INET, libc::SOCK_STREAM);
        report("gadget_socket_is_a_socket", i64::from(fd >= 0 && is_socket(fd as c_int)));
        report("libc_socket", i64::from(socket(libc::AF_INET, libc::SOCK_STREAM, 0)));
    }

    /// An i386 system call through `int 0x80` (arguments truncated to 32 bits).
    fn int80_call(nr: u32, a: u32, b: u32) -> i64 {
        let ret: u64;
        // SAFETY: `int 0x80` makes an i386 system call: number in eax, arguments in ebx, ecx
        // (rbx is reserved by the compiler, hence the exchange); the kernel clears r8-r11.
        // The calls made (getpid, socketcall(SYS_SOCKET)) read at most the 12-byte argument
        // block the caller mapped below 4 GiB.
        unsafe {
            std::arch::asm!(
                "xchg {a:r}, rbx",
                "int 0x80",
                "xchg {a:r}, rbx",
                a = inout(reg) u64::from(a) => _,
                inlateout("rax") u64::from(nr) => ret,
                in("rcx") u64::from(b),
                lateout("r8") _,
                lateout("r9") _,
                lateout("r10") _,
                lateout("r11") _,
            );
        }
        i64::from(ret as u32 as i32)
    }

    /// Prints `int80_getpid <ret or 0> <is our pid>` and `int80_socketcall <ret or 0> <is a
    /// socket>`.
    pub(super) fn int80() {
        let pid = int80_call(20, 0, 0); // i386 getpid
        println!(
            "RESULT int80_getpid {} {}",
            pid.min(0),
            i32::from(pid == i64::from(std::process::id()))
        );
        // socketcall(SYS_SOCKET = 1, args), args = [AF_INET, SOCK_STREAM, 0] below 4 GiB.
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let args = [libc::AF_INET as u32, libc::SOCK_STREAM as u32, 0];
        // SAFETY: the mapping is 4096 writable bytes; we write 12.
        unsafe { std::ptr::copy_nonoverlapping(args.as_ptr(), page.cast::<u32>(), 3) };
        let fd = int80_call(102, 1, page as u64 as u32);
        println!(
            "RESULT int80_socketcall {} {}",
            fd.min(0),
            i32::from(fd >= 0 && is_socket(fd as c_int))
        );
        std::io::stdout().flush().unwrap();
    }

    pub(super) fn nested() {
        // This process already has a listener in its filter chain: a second one is EBUSY.
        let filter = Arc::new(FilterSpec::socket_creation().build().unwrap());
        let mut cmd = Command::new("/bin/true");
        let err = trap::spawn(&mut cmd, filter, InstallOptions::default(), TIMEOUT).unwrap_err();
        let SpawnError::Handover(HandoverError::Install(e)) = err else {
            panic!("unexpected {err:?}")
        };
        println!("RESULT nested_spawn {} 0", e.errno());
    }
}
