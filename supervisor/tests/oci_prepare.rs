//! `joyride oci prepare` on bundles: the exact runtime-spec entries it writes, its merge with an
//! existing profile (checked by evaluating the result as runc's libseccomp would), its
//! refusals, its backup and its idempotence. Where the test runs as root with runc and a static
//! busybox, runc runs a container from a prepared bundle against a minimal agent that this
//! test serves, which proves runc accepts the profile and hands over the descriptor.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use supervisor::oci::{prepare, PrepareError, PrepareOutcome};

mod common;

const NOTIFY: &str = "SCMP_ACT_NOTIFY";
const ALLOW: &str = "SCMP_ACT_ALLOW";

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join(format!("joyride-oci-prepare-{}-{n}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A configuration shaped like `runc spec`'s (no seccomp profile), with an unknown field.
fn runc_like_config() -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "runc",
        "mounts": [{ "destination": "/proc", "type": "proc", "source": "proc" }],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"]
        },
        "org.example.unknown": { "kept": [1, 2, 3] }
    })
}

/// What prepare must write into a bundle without a profile.
fn expected_new_profile(agent: &Path) -> Value {
    json!({
        "defaultAction": ALLOW,
        "architectures": ["SCMP_ARCH_X86_64"],
        "listenerPath": agent.to_str().unwrap(),
        "syscalls": [
            { "names": ["socket"], "action": NOTIFY,
              "args": [{ "index": 0, "value": libc::AF_INET, "op": "SCMP_CMP_EQ" }] },
            { "names": ["socket"], "action": NOTIFY,
              "args": [{ "index": 0, "value": libc::AF_INET6, "op": "SCMP_CMP_EQ" }] },
            { "names": ["connect", "accept", "sendmsg", "recvmsg", "shutdown", "bind", "listen",
                        "getsockname", "getpeername", "setsockopt", "getsockopt", "accept4",
                        "recvmmsg", "sendmmsg"],
              "action": NOTIFY },
            { "names": ["sendto", "recvfrom"], "action": NOTIFY,
              "args": [{ "index": 4, "value": 0, "op": "SCMP_CMP_NE" }] },
            { "names": ["io_uring_setup"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS }
        ]
    })
}

fn write_config(bundle: &Path, config: &Value) -> Vec<u8> {
    let bytes = serde_json::to_vec_pretty(config).unwrap();
    std::fs::write(bundle.join("config.json"), &bytes).unwrap();
    bytes
}

fn read_config(bundle: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

/// Prepares twice: the first run rewrites and backs up, the second finds it done and leaves
/// the file byte for byte. Returns the prepared configuration.
#[track_caller]
fn prepare_twice(bundle: &Path, agent: &Path, original: &[u8]) -> Value {
    assert_eq!(prepare(bundle, agent, None).unwrap(), PrepareOutcome::Prepared);
    let backup = std::fs::read(bundle.join("config.json.joyride-orig")).unwrap();
    assert_eq!(backup, original, "the backup is the original file");
    let first = std::fs::read(bundle.join("config.json")).unwrap();
    assert_eq!(prepare(bundle, agent, None).unwrap(), PrepareOutcome::AlreadyPrepared);
    assert_eq!(std::fs::read(bundle.join("config.json")).unwrap(), first, "second run wrote");
    assert_eq!(std::fs::read(bundle.join("config.json.joyride-orig")).unwrap(), original);
    serde_json::from_slice(&first).unwrap()
}

#[test]
fn a_bundle_without_a_profile_gets_exactly_joyrides_rules() {
    let dir = TempDir::new("plain");
    let original = write_config(&dir.0, &runc_like_config());
    let agent = dir.0.join("agent.sock");
    let prepared = prepare_twice(&dir.0, &agent, &original);

    let mut want = runc_like_config();
    want["linux"]["seccomp"] = expected_new_profile(&agent);
    assert_eq!(prepared, want, "everything else is kept, namespaces included");
}

#[test]
fn the_agent_path_is_made_absolute_and_metadata_is_set() {
    let dir = TempDir::new("relative");
    let original = write_config(&dir.0, &runc_like_config());
    let cwd = std::env::current_dir().unwrap();
    let relative = Path::new("some/dir/agent.sock");
    assert_eq!(
        prepare(&dir.0, relative, Some("policy=audit-only")).unwrap(),
        PrepareOutcome::Prepared
    );
    let seccomp = &read_config(&dir.0)["linux"]["seccomp"];
    assert_eq!(seccomp["listenerPath"], json!(cwd.join(relative).to_str().unwrap()));
    assert_eq!(seccomp["listenerMetadata"], json!("policy=audit-only"));
    // The same metadata again: done; other metadata: rewritten, the backup still the original.
    assert_eq!(
        prepare(&dir.0, relative, Some("policy=audit-only")).unwrap(),
        PrepareOutcome::AlreadyPrepared
    );
    assert_eq!(
        prepare(&dir.0, relative, Some("policy=default")).unwrap(),
        PrepareOutcome::Prepared
    );
    assert_eq!(
        read_config(&dir.0)["linux"]["seccomp"]["listenerMetadata"],
        json!("policy=default")
    );
    assert_eq!(std::fs::read(dir.0.join("config.json.joyride-orig")).unwrap(), original);
}

#[test]
fn real_runc_spec_output_is_prepared() {
    if Command::new("runc").arg("--version").output().is_err() {
        eprintln!("skipped: runc is not on PATH");
        return;
    }
    let dir = TempDir::new("runcspec");
    let status = Command::new("runc").arg("spec").current_dir(&dir.0).status().unwrap();
    assert!(status.success(), "runc spec failed");
    let original = std::fs::read(dir.0.join("config.json")).unwrap();
    let before: Value = serde_json::from_slice(&original).unwrap();
    let agent = dir.0.join("agent.sock");
    let mut prepared = prepare_twice(&dir.0, &agent, &original);
    assert_eq!(prepared["linux"]["seccomp"], expected_new_profile(&agent));
    prepared["linux"].as_object_mut().unwrap().remove("seccomp");
    assert_eq!(prepared, before, "only linux.seccomp changed");
}

/// The action runc's libseccomp filter takes for `name` with `args`: the entries whose
/// conditions all hold (runc ORs conditions on one index; the profiles here have none such),
/// which must agree, else the default.
fn evaluate(profile: &Value, name: &str, args: [u64; 6]) -> String {
    let mut actions: Vec<String> = Vec::new();
    for entry in profile["syscalls"].as_array().unwrap() {
        if !entry["names"].as_array().unwrap().iter().any(|n| n == name) {
            continue;
        }
        let holds = entry["args"].as_array().is_none_or(|conditions| {
            conditions.iter().all(|c| {
                let x = args[c["index"].as_u64().unwrap() as usize];
                let value = c["value"].as_u64().unwrap();
                match c["op"].as_str().unwrap() {
                    "SCMP_CMP_EQ" => x == value,
                    "SCMP_CMP_NE" => x != value,
                    "SCMP_CMP_LT" => x < value,
                    "SCMP_CMP_GT" => x > value,
                    "SCMP_CMP_MASKED_EQ" => x & value == c["valueTwo"].as_u64().unwrap(),
                    op => panic!("op {op} not modelled"),
                }
            })
        });
        if holds {
            actions.push(entry["action"].as_str().unwrap().to_owned());
        }
    }
    actions.dedup();
    assert!(actions.len() <= 1, "{name}{args:?}: conflicting entries {actions:?}");
    actions.pop().unwrap_or_else(|| profile["defaultAction"].as_str().unwrap().to_owned())
}

fn docker_like_config() -> Value {
    let mut config = runc_like_config();
    config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            { "names": ["accept", "accept4", "bind", "connect", "read", "write", "socket",
                        "sendto", "recvfrom", "getsockopt", "exit_group"],
              "action": ALLOW, "comment": "kept" },
            { "names": ["listen"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 },
            { "names": ["personality"], "action": ALLOW,
              "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] }
        ]
    });
    config
}

#[test]
fn a_deny_by_default_profile_keeps_its_denials() {
    let dir = TempDir::new("docker");
    let original = write_config(&dir.0, &docker_like_config());
    let agent = dir.0.join("agent.sock");
    let prepared = prepare_twice(&dir.0, &agent, &original);
    let profile = &prepared["linux"]["seccomp"];
    let before = &docker_like_config()["linux"]["seccomp"];

    assert_eq!(profile["listenerPath"], json!(agent.to_str().unwrap()));
    for field in ["defaultAction", "defaultErrnoRet", "architectures"] {
        assert_eq!(profile[field], before[field], "{field}");
    }
    let entries = profile["syscalls"].as_array().unwrap();
    // The allow entry keeps its other calls and fields; the denial and the conditional allow
    // are untouched.
    assert!(entries.contains(&json!({ "names": ["read", "write", "exit_group"], "action": ALLOW,
                                      "comment": "kept" })));
    assert!(entries.contains(&before["syscalls"][1]));
    assert!(entries.contains(&before["syscalls"][2]));

    let call = |name: &str, args: [u64; 6]| evaluate(profile, name, args);
    let none = [0u64; 6];
    // Denied stays denied, not notified.
    assert_eq!(call("listen", none), "SCMP_ACT_ERRNO");
    assert!(!entries.iter().any(
        |e| e["action"] == NOTIFY && e["names"].as_array().unwrap().contains(&json!("listen"))
    ));
    // Allowed joyride calls are notified.
    for name in ["connect", "accept", "accept4", "bind", "getsockopt"] {
        assert_eq!(call(name, none), NOTIFY, "{name}");
    }
    // Conditional ones: notified for joyride's values, still allowed for every other.
    for (family, want) in [
        (0, ALLOW),
        (1, ALLOW),
        (2, NOTIFY),
        (3, ALLOW),
        (5, ALLOW),
        (9, ALLOW),
        (10, NOTIFY),
        (11, ALLOW),
        (16, ALLOW),
        (40, ALLOW),
        (1 << 40, ALLOW),
    ] {
        assert_eq!(call("socket", [family, 1, 0, 0, 0, 0]), want, "socket family {family}");
    }
    for name in ["sendto", "recvfrom"] {
        assert_eq!(call(name, [3, 0x1000, 10, 0, 0, 0]), ALLOW, "{name} without address");
        assert_eq!(call(name, [3, 0x1000, 10, 0, 0x2000, 16]), NOTIFY, "{name} with address");
    }
    // Calls the allow-list does not name stay denied by default: nothing is added for them.
    for name in [
        "shutdown",
        "getsockname",
        "getpeername",
        "setsockopt",
        "sendmsg",
        "recvmsg",
        "sendmmsg",
        "recvmmsg",
        "io_uring_setup",
    ] {
        assert!(
            !entries.iter().any(|e| e["names"].as_array().unwrap().contains(&json!(name))),
            "{name} was added"
        );
        assert_eq!(call(name, none), "SCMP_ACT_ERRNO", "{name}");
    }
    assert_eq!(call("write", none), ALLOW);
    assert_eq!(call("personality", none), ALLOW);
    assert_eq!(call("personality", [8, 0, 0, 0, 0, 0]), "SCMP_ACT_ERRNO");
}

#[test]
fn an_allow_by_default_profile_gains_the_calls_it_does_not_name() {
    let dir = TempDir::new("allowdefault");
    let mut config = runc_like_config();
    config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_LOG",
        "syscalls": [
            { "names": ["bind"], "action": "SCMP_ACT_KILL_PROCESS" },
            { "names": ["connect"], "action": ALLOW,
              "args": [{ "index": 2, "value": 16, "op": "SCMP_CMP_EQ" }] }
        ]
    });
    let original = write_config(&dir.0, &config);
    let prepared = prepare_twice(&dir.0, &dir.0.join("a.sock"), &original);
    let profile = &prepared["linux"]["seccomp"];
    let none = [0u64; 6];
    assert_eq!(evaluate(profile, "bind", none), "SCMP_ACT_KILL_PROCESS");
    // The conditional allow notifies under its own condition; the rest is the default's.
    assert_eq!(evaluate(profile, "connect", [3, 0, 16, 0, 0, 0]), NOTIFY);
    assert_eq!(evaluate(profile, "connect", [3, 0, 28, 0, 0, 0]), "SCMP_ACT_LOG");
    assert!(profile["syscalls"].as_array().unwrap().contains(&json!({
        "names": ["connect"], "action": NOTIFY,
        "args": [{ "index": 2, "value": 16, "op": "SCMP_CMP_EQ" }] })));
    for name in ["listen", "accept4", "sendmsg"] {
        assert_eq!(evaluate(profile, name, none), NOTIFY, "{name}");
    }
    assert_eq!(evaluate(profile, "socket", [2, 1, 0, 0, 0, 0]), NOTIFY);
    assert_eq!(evaluate(profile, "socket", [1, 1, 0, 0, 0, 0]), "SCMP_ACT_LOG");
    assert_eq!(evaluate(profile, "io_uring_setup", none), "SCMP_ACT_ERRNO");
}

/// Runs prepare on `config` (raw bytes) and checks that it fails and touches nothing.
#[track_caller]
fn refused(what: &str, config: &[u8]) -> PrepareError {
    let dir = TempDir::new(what);
    std::fs::write(dir.0.join("config.json"), config).unwrap();
    let error = prepare(&dir.0, &dir.0.join("agent.sock"), None).unwrap_err();
    assert_eq!(std::fs::read(dir.0.join("config.json")).unwrap(), config, "{what}: file changed");
    assert!(!dir.0.join("config.json.joyride-orig").exists(), "{what}: backup written");
    error
}

fn with_seccomp(seccomp: Value) -> Vec<u8> {
    let mut config = runc_like_config();
    config["linux"]["seccomp"] = seccomp;
    serde_json::to_vec_pretty(&config).unwrap()
}

#[test]
fn refusals_say_why_and_leave_the_bundle_alone() {
    let foreign = refused(
        "foreign",
        &with_seccomp(json!({ "defaultAction": ALLOW, "listenerPath": "/run/other-agent.sock" })),
    );
    assert!(
        matches!(&foreign, PrepareError::ForeignListener { existing, .. } if existing == "/run/other-agent.sock")
    );
    assert!(foreign.to_string().contains("/run/other-agent.sock"), "{foreign}");

    let write = refused(
        "write",
        &with_seccomp(json!({ "defaultAction": ALLOW, "syscalls": [
            { "names": ["read", "write"], "action": NOTIFY }] })),
    );
    assert!(matches!(write, PrepareError::NotifyOnWrite { .. }), "{write}");
    assert!(write.to_string().contains("`write`"), "{write}");

    let default = refused("default", &with_seccomp(json!({ "defaultAction": NOTIFY })));
    assert!(matches!(default, PrepareError::DefaultNotify { .. }), "{default}");

    let broken = refused("broken", b"{\n  \"ociVersion\": \"1.0.2\",\n  \"linux\": {,\n}\n");
    match &broken {
        PrepareError::NotJson { line, column, .. } => assert_eq!((*line, *column), (3, 13)),
        other => panic!("not NotJson: {other}"),
    }
    let message = broken.to_string();
    assert!(message.contains("line 3, column 13") && message.contains("config.json"), "{message}");

    let array = refused("array", b"[1, 2]");
    assert!(matches!(array, PrepareError::Malformed { .. }), "{array}");
    let entry = refused(
        "entry",
        &with_seccomp(json!({ "defaultAction": ALLOW, "syscalls": [{ "action": ALLOW }] })),
    );
    assert!(entry.to_string().contains("syscalls[0]"), "{entry}");

    let dir = TempDir::new("missing");
    let missing = prepare(&dir.0, &dir.0.join("agent.sock"), None).unwrap_err();
    assert!(
        matches!(&missing, PrepareError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(missing.to_string().contains("runc spec"), "{missing}");
}

#[test]
fn a_prepared_bundle_whose_rules_were_removed_is_refused() {
    let dir = TempDir::new("edited");
    let original = write_config(&dir.0, &runc_like_config());
    let agent = dir.0.join("agent.sock");
    prepare_twice(&dir.0, &agent, &original);
    let mut config = read_config(&dir.0);
    config["linux"]["seccomp"]["syscalls"].as_array_mut().unwrap().remove(2);
    let edited = write_config(&dir.0, &config);
    let error = prepare(&dir.0, &agent, None).unwrap_err();
    assert!(matches!(error, PrepareError::Incomplete { syscall: "connect", .. }), "{error}");
    assert!(error.to_string().contains("config.json.joyride-orig"), "{error}");
    assert_eq!(std::fs::read(dir.0.join("config.json")).unwrap(), edited);
}

// --- the runtimes themselves --------------------------------------------------------------

/// Deletes the container however the test ends.
struct Container<'a> {
    runtime: &'a str,
    id: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = common::runtime_command(self.runtime)
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// What the minimal agent saw.
#[derive(Debug, Default)]
struct Served {
    state: Value,
    /// (system call number, first argument) of every notification.
    calls: Vec<(i32, u64)>,
}

/// A minimal agent: one connection, its descriptor, CONTINUE to every call until hang-up.
fn serve_one(listener: UnixListener, deadline: Instant) -> Result<Served, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let connection = loop {
        match listener.accept() {
            Ok((connection, _)) => break connection,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("runc never connected to listenerPath".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    connection.set_nonblocking(false).map_err(|e| e.to_string())?;
    connection.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut data = Vec::new();
    let mut descriptors = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let received = stackd::fdpass::receive(
            connection.as_fd(),
            &mut buffer,
            nix::sys::socket::MsgFlags::empty(),
        )
        .map_err(|e| format!("receive: {e}"))?;
        descriptors.extend(received.descriptors);
        if received.len == 0 {
            break;
        }
        data.extend_from_slice(&buffer[..received.len]);
        // runc keeps the connection open once it has sent the state.
        if serde_json::from_slice::<Value>(&data).is_ok() {
            break;
        }
    }
    let state: Value = serde_json::from_slice(&data).map_err(|e| format!("state: {e}"))?;
    let index = state["fds"]
        .as_array()
        .and_then(|fds| fds.iter().position(|f| f == "seccompFd"))
        .ok_or_else(|| format!("no seccompFd in {state}"))?;
    if index >= descriptors.len() {
        return Err(format!("{} descriptors for {state}", descriptors.len()));
    }
    let seccomp = trap::Listener::from_fd(descriptors.swap_remove(index));
    let mut served = Served { state, calls: Vec::new() };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match seccomp.wait_readable(Some(left)).map_err(|e| e.to_string())? {
            trap::Readiness::Hangup => return Ok(served),
            trap::Readiness::TimedOut => return Err(format!("no hang-up; saw {:?}", served.calls)),
            trap::Readiness::Readable => {}
        }
        let Ok(notification) = seccomp.receive() else { continue };
        served.calls.push((notification.nr, notification.args[0]));
        let _ = seccomp.respond_continue(notification.id);
    }
}

/// Runs a busybox container under `rt` (runc or crun) from a bundle prepared over `seccomp`
/// (the bundle's own profile, if any), served by [`serve_one`]; checks that it exits 0 and that
/// the agent got its descriptor and the container's inet socket calls. `None`: skipped (the
/// reason printed).
fn run_prepared_container(rt: &str, what: &str, seccomp: Option<Value>) -> Option<Served> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: {rt} needs root");
        return None;
    }
    for needed in ["runc", rt] {
        if Command::new(needed).arg("--version").output().is_err() {
            eprintln!("skipped: {needed} is not on PATH");
            return None;
        }
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        eprintln!("skipped: no /bin/busybox (install busybox-static)");
        return None;
    }
    let dir = TempDir::new(what);
    let bundle = dir.0.join("bundle");
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for name in ["sh", "nc"] {
        std::os::unix::fs::symlink("busybox", bin.join(name)).unwrap();
    }
    let status = Command::new("runc").arg("spec").current_dir(&bundle).status().unwrap();
    assert!(status.success(), "runc spec failed");
    let mut config = read_config(&bundle);
    config["process"]["terminal"] = json!(false);
    // An AF_INET socket and a connect (refused or unreachable in the container's own network
    // namespace, which is fine: the calls are what the agent must see).
    config["process"]["args"] = json!(["sh", "-c", "nc 127.0.0.1 9 </dev/null; exit 0"]);
    if rt == "crun" {
        config["linux"].as_object_mut().unwrap().remove("resources");
    }
    if let Some(seccomp) = seccomp {
        config["linux"]["seccomp"] = seccomp;
    }
    write_config(&bundle, &config);

    let agent = dir.0.join("agent.sock");
    let listener = UnixListener::bind(&agent).unwrap();
    assert_eq!(prepare(&bundle, &agent, None).unwrap(), PrepareOutcome::Prepared);
    let deadline = Instant::now() + Duration::from_secs(60);
    let server = std::thread::spawn(move || serve_one(listener, deadline));

    let id = format!("joyride-oci-test-{}-{rt}-{what}", std::process::id());
    let _container = Container { runtime: rt, id: id.clone() };
    let mut child = common::runtime_command(rt)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{rt} run did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let served = server.join().unwrap();
    assert!(status.success(), "{rt} run: {status}; stderr: {stderr}; agent: {served:?}");
    let served = served.unwrap();
    assert_eq!(served.state["state"]["id"], json!(id), "{:?}", served.state);
    let socket = (libc::SYS_socket as i32, libc::AF_INET as u64);
    assert!(served.calls.contains(&socket), "no AF_INET socket() notified: {:?}", served.calls);
    assert!(
        served.calls.iter().any(|&(nr, _)| nr == libc::SYS_connect as i32),
        "no connect() notified: {:?}",
        served.calls
    );
    // socket() is notified only for inet families.
    assert!(
        served.calls.iter().all(|&(nr, family)| nr != libc::SYS_socket as i32
            || family == libc::AF_INET as u64
            || family == libc::AF_INET6 as u64),
        "{:?}",
        served.calls
    );
    Some(served)
}

#[test]
fn runc_runs_a_prepared_bundle_and_hands_the_agent_its_descriptor() {
    run_prepared_container("runc", "plain", None);
}

fn merged_profile() -> Value {
    json!({
        "defaultAction": ALLOW,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{ "names": ["socket", "sendto", "getpid"], "action": "SCMP_ACT_LOG" }]
    })
}

#[test]
fn runc_accepts_a_merged_profile_with_complement_entries() {
    // socket and sendto allowed (logged) by an entry: prepare splits them into NOTIFY entries
    // for joyride's values and LOG entries (LT, MASKED_EQ, GT) for every other value, which
    // libseccomp must accept and runc must still run.
    run_prepared_container("runc", "merged", Some(merged_profile()));
}

#[test]
fn crun_runs_prepared_bundles_and_hands_the_agent_its_descriptor() {
    let served = run_prepared_container("crun", "plain", None);
    if let Some(served) = served {
        // crun's own protocol version, not the runtime-spec's.
        assert_eq!(served.state["ociVersion"], json!("0.2.0"), "{:?}", served.state);
    }
    run_prepared_container("crun", "merged", Some(merged_profile()));
}

// --- the agent starter and the hook --------------------------------------------------------

#[test]
fn the_hook_registers_with_a_running_agent() {
    let dir = TempDir::new("hook");
    let agent = dir.0.join("agent.sock");
    let listener = UnixListener::bind(&agent).unwrap();
    let reader = std::thread::spawn(move || {
        // ensure_agent's probe first (an empty connection), then the registration.
        let mut messages = Vec::new();
        for _ in 0..2 {
            let (mut connection, _) = listener.accept().unwrap();
            connection.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut message = Vec::new();
            connection.read_to_end(&mut message).unwrap();
            messages.push(message);
        }
        messages
    });
    let state = br#"{"ociVersion":"1.0.2","id":"c7","status":"created","pid":4242,
                     "bundle":"/b","annotations":{"org.example/policy":"audit-only"}}"#;
    supervisor::oci::hook::hook_main(&agent, &state[..]).unwrap();
    let messages = reader.join().unwrap();
    assert_eq!(messages[0], b"", "the probe sends nothing");
    let registration: Value = serde_json::from_slice(&messages[1]).unwrap();
    assert_eq!(
        registration,
        json!({ "joyride-register": { "id": "c7", "pid": 4242,
                                      "annotations": { "org.example/policy": "audit-only" } } })
    );
    // No agent was started: nothing written next to the socket but the starter's lock, if any.
    assert!(!dir.0.join("agent.sock.log").exists());
}

#[test]
fn an_agent_that_exits_at_once_is_reported_with_its_log() {
    // This test binary stands in for joyride: given `oci-agent --listen PATH` it rejects the
    // option and exits, as an agent that cannot reach stackd would.
    let dir = TempDir::new("starter");
    let agent = dir.0.join("sub/agent.sock");
    let error = supervisor::oci::ensure_agent(&agent).unwrap_err();
    match &error {
        supervisor::oci::AgentError::Exited { status, log, tail, .. } => {
            assert!(!status.success(), "{error}");
            assert_eq!(log, &dir.0.join("sub/agent.sock.log"));
            assert!(tail.contains("listen"), "the log's tail: {tail}");
        }
        other => panic!("not Exited: {other}"),
    }
    assert!(error.to_string().contains("joyride oci-agent --listen"), "{error}");
}
