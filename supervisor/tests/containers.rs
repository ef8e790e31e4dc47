//! Containers on joyride: runc and crun run busybox-static containers whose only interface is
//! loopback, prepared with `joyride oci prepare` and served by `joyride oci-agent`, which runs
//! beside joyride-stackd in the test's namespace. The runtimes themselves run outside any
//! `ip netns exec` (which remounts /sys and hides the cgroup mounts); each container gets a
//! network namespace of its own from the bundle.

mod common;

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{
    eventually, joyride_bin, run_capture, sha256_hex, skip, write_payload_file, Mode, Net, Proc,
    Tool, BUSYBOX, HOST_IP, STACK_IP,
};

/// A container runtime as the tests drive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Runc,
    Crun,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Crun => "crun",
        }
    }

    fn available(self) -> bool {
        Command::new(self.name()).arg("--version").output().is_ok_and(|o| o.status.success())
    }

    /// A runtime command (see `common::runtime_command`).
    fn command(self) -> Command {
        common::runtime_command(self.name())
    }
}

/// A container id, unique across tests and runs.
fn container_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("jrct{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A bundle with busybox as its whole root file system, prepared for the agent.
struct Bundle {
    dir: PathBuf,
    id: String,
    runtime: Runtime,
}

impl Bundle {
    fn new(root: &Path, runtime: Runtime, args: &[&str], agent: &Path) -> Bundle {
        let id = container_id();
        let dir = root.join(&id);
        let bin = dir.join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for applet in ["sh", "wget", "httpd", "sleep", "cat"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let spec = Command::new("runc").arg("spec").current_dir(&dir).output().unwrap();
        assert!(spec.status.success(), "runc spec: {}", String::from_utf8_lossy(&spec.stderr));
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        if runtime == Runtime::Crun {
            config["linux"].as_object_mut().unwrap().remove("resources");
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let prepared = Command::new(joyride_bin())
            .args(["oci", "prepare"])
            .arg(&dir)
            .arg("--agent")
            .arg(agent)
            .output()
            .unwrap();
        assert!(
            prepared.status.success(),
            "joyride oci prepare failed: {}",
            String::from_utf8_lossy(&prepared.stderr)
        );
        Bundle { dir, id, runtime }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join("rootfs").join(name)
    }

    /// Runs the container in the foreground; returns its standard output and status.
    fn run(&self, timeout: Duration) -> (Vec<u8>, Option<i32>) {
        let mut command = self.runtime.command();
        command.args(["run", "--bundle"]).arg(&self.dir).arg(&self.id);
        let captured = run_capture(command, b"", timeout);
        (captured.stdout, captured.status.code())
    }

    /// Starts the container detached.
    fn start(&self) {
        let mut command = self.runtime.command();
        command
            .args(["run", "--detach", "--bundle"])
            .arg(&self.dir)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // Not a pipe: the detached container keeps its standard streams open for its life.
        let log = self.dir.join("runtime.log");
        command.stderr(std::fs::File::create(&log).unwrap());
        let status = command.status().unwrap();
        let messages = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "{} run -d: {messages}", self.runtime.name());
    }

    /// `exec` into the running container; returns standard output.
    fn exec(&self, args: &[&str], timeout: Duration) -> Vec<u8> {
        let mut command = self.runtime.command();
        command.arg("exec").arg(&self.id).args(args);
        run_capture(command, b"", timeout).stdout
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let mut command = self.runtime.command();
        let _ = command
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A namespace with stackd, a kernel-side web server and the agent.
struct Setup {
    net: Net,
    agent: Proc,
    agent_socket: PathBuf,
    want: String,
    _server: Proc,
}

const FILE_LEN: usize = 8 << 20;

impl Setup {
    fn new() -> Setup {
        let net = Net::new(Mode::Joyride);
        let www = net.dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        let want = write_payload_file(&www.join("f"), FILE_LEN, 61);
        let mut server = net.host("python3");
        server.args(["-m", "http.server", "8000", "--bind", HOST_IP]).current_dir(&www);
        let server = net.spawn("http-server", server);
        assert!(
            net.host.wait_tcp(HOST_IP, 8000, Duration::from_secs(10)),
            "kernel-side server did not start"
        );
        let agent_socket = net.dir.join("agent.sock");
        let agent = start_agent(&net, &agent_socket);
        Setup { net, agent, agent_socket, want, _server: server }
    }

    fn url(&self) -> String {
        format!("http://{HOST_IP}:8000/f")
    }
}

fn start_agent(net: &Net, socket: &Path) -> Proc {
    let mut command = net.host(joyride_bin());
    command
        .args(["oci-agent", "--listen"])
        .arg(socket)
        .arg("--stackd")
        .arg(&net.stackd().control)
        .env("JOYRIDE_LOG", "info");
    let agent = net.spawn("oci-agent", command);
    assert!(
        eventually(Duration::from_secs(10), || UnixStream::connect(socket).is_ok()),
        "the agent did not listen at {}",
        socket.display()
    );
    agent
}

fn descriptors_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn skip_runtime(test: &str, runtime: Runtime) -> bool {
    if skip(test, &[Tool::StaticBusybox, Tool::Curl, Tool::Python]) {
        return true;
    }
    if !Runtime::Runc.available() || !runtime.available() {
        eprintln!("SKIPPED {test}: needs {} (and runc for `runc spec`)", runtime.name());
        return true;
    }
    false
}

fn download_in_container(runtime: Runtime) {
    let test = format!("{}_container_downloads_through_joyride", runtime.name());
    if skip_runtime(&test, runtime) {
        return;
    }
    let setup = Setup::new();
    let url = setup.url();
    let bundle = Bundle::new(
        &setup.net.dir.path,
        runtime,
        &["wget", "-q", "-O-", &url],
        &setup.agent_socket,
    );
    let before = setup.net.link_bytes();
    let (out, status) = bundle.run(Duration::from_secs(60));
    assert_eq!(status, Some(0), "container failed\n{}", setup.agent.tail());
    assert_eq!(sha256_hex(&out), setup.want, "container download differs");
    setup.net.assert_link_moved(before, FILE_LEN as u64, "container download");
}

#[test]
fn runc_container_downloads_through_joyride() {
    download_in_container(Runtime::Runc);
}

#[test]
fn crun_container_downloads_through_joyride() {
    download_in_container(Runtime::Crun);
}

/// A server container, an `exec` into it, a second container at the same time, and the clean
/// state after both exit.
#[test]
fn runc_server_exec_and_two_containers_then_nothing_left() {
    let test = "runc_server_exec_and_two_containers_then_nothing_left";
    if skip_runtime(test, Runtime::Runc) {
        return;
    }
    let setup = Setup::new();
    let idle_descriptors = descriptors_of(setup.agent.pid());
    let server = Bundle::new(
        &setup.net.dir.path,
        Runtime::Runc,
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
        &setup.agent_socket,
    );
    std::fs::create_dir_all(server.file("www")).unwrap();
    let served = write_payload_file(&server.file("www/big"), FILE_LEN, 62);
    server.start();
    assert!(
        setup.net.host.wait_tcp(STACK_IP, 8080, Duration::from_secs(10)),
        "httpd in the container never accepted on {STACK_IP}:8080\n{}",
        setup.agent.tail()
    );

    // A second container downloads while the first serves.
    let url = setup.url();
    let client = Bundle::new(
        &setup.net.dir.path,
        Runtime::Runc,
        &["wget", "-q", "-O-", &url],
        &setup.agent_socket,
    );
    let downloader = std::thread::spawn({
        let client_dir = client.dir.clone();
        let client_id = client.id.clone();
        move || {
            let mut command = Runtime::Runc.command();
            command.args(["run", "--bundle"]).arg(&client_dir).arg(&client_id);
            run_capture(command, b"", Duration::from_secs(60)).stdout
        }
    });
    let mut curl = setup.net.host("curl");
    curl.args(["-sf", "--max-time", "40", &format!("http://{STACK_IP}:8080/big")]);
    let fetched = run_capture(curl, b"", Duration::from_secs(45));
    assert_eq!(sha256_hex(&fetched.stdout), served, "curl from the container's httpd differs");
    assert_eq!(sha256_hex(&downloader.join().unwrap()), setup.want, "concurrent container differs");

    // exec brings a new notification descriptor that joins the running container.
    let execed = server.exec(&["wget", "-q", "-O-", &url], Duration::from_secs(60));
    assert_eq!(sha256_hex(&execed), setup.want, "download from `runc exec` differs");
    let owner = format!("container {}", server.id);
    assert!(
        setup
            .net
            .stackd()
            .socket_lines()
            .iter()
            .any(|l| l.state == "LISTEN" && l.owner.contains(&owner)),
        "joyride-stackd does not show the container's listener"
    );

    // After both containers exit: none of their sockets, and no descriptor of theirs in the agent.
    drop(client);
    drop(server);
    assert!(
        eventually(Duration::from_secs(10), || {
            !setup
                .net
                .stackd()
                .socket_lines()
                .iter()
                .any(|l| l.state == "LISTEN" || l.owner.contains("container"))
        }),
        "sockets of exited containers remain: {:?}",
        setup.net.stackd().socket_lines()
    );
    assert!(
        eventually(Duration::from_secs(10), || descriptors_of(setup.agent.pid())
            <= idle_descriptors),
        "the agent holds {} descriptors, {idle_descriptors} when idle",
        descriptors_of(setup.agent.pid())
    );
    let mut ss = setup.net.host(joyride_bin());
    ss.args(["ss", "--stackd"]).arg(&setup.net.stackd().control);
    let listing = run_capture(ss, b"", Duration::from_secs(10)).stdout_text();
    assert!(!listing.contains("container"), "joyride ss still shows a container:\n{listing}");
}

/// A killed agent fails the container's intercepted calls instead of hanging them; a new agent
/// serves new containers.
#[test]
fn a_killed_agent_fails_calls_and_a_restarted_one_serves() {
    let test = "a_killed_agent_fails_calls_and_a_restarted_one_serves";
    if skip_runtime(test, Runtime::Runc) {
        return;
    }
    let mut setup = Setup::new();
    let url = setup.url();
    let script = format!("sleep 2; wget -q -O- {url}; echo status=$?");
    let bundle = Bundle::new(
        &setup.net.dir.path,
        Runtime::Runc,
        &["sh", "-c", &script],
        &setup.agent_socket,
    );
    let runner = std::thread::spawn({
        let (dir, id) = (bundle.dir.clone(), bundle.id.clone());
        move || {
            let mut command = Runtime::Runc.command();
            command.args(["run", "--bundle"]).arg(&dir).arg(&id);
            run_capture(command, b"", Duration::from_secs(30))
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    setup.agent.kill();
    let outcome = runner.join().unwrap();
    let text = outcome.stdout_text();
    // run_capture panics if the container hangs past its timeout.
    assert!(
        text.contains("status=") && !text.contains("status=0"),
        "wget should fail without its agent; output: {text:?}"
    );
    drop(bundle);

    let _ = std::fs::remove_file(&setup.agent_socket);
    setup.agent = start_agent(&setup.net, &setup.agent_socket);
    let fresh = Bundle::new(
        &setup.net.dir.path,
        Runtime::Runc,
        &["wget", "-q", "-O-", &url],
        &setup.agent_socket,
    );
    let (out, status) = fresh.run(Duration::from_secs(60));
    assert_eq!(status, Some(0), "{}", setup.agent.tail());
    assert_eq!(sha256_hex(&out), setup.want);
}

/// Garbage, truncated state, a state without its descriptor and a descriptor of the wrong kind
/// are each a logged error for that connection; the agent goes on serving.
#[test]
fn the_agent_survives_bad_input() {
    let test = "the_agent_survives_bad_input";
    if skip_runtime(test, Runtime::Runc) {
        return;
    }
    let setup = Setup::new();
    let state = |id: &str| {
        format!(
            r#"{{"ociVersion":"1.0.2","fds":["seccompFd"],"pid":1,"metadata":"","state":{{"ociVersion":"1.0.2","id":"{id}","status":"creating","pid":1,"bundle":"/"}}}}"#
        )
    };
    let send = |bytes: &[u8], with_pipe: bool| {
        let connection = UnixStream::connect(&setup.agent_socket).unwrap();
        let (pipe_read, _pipe_write) = nix::unistd::pipe().unwrap();
        let fds: Vec<_> = if with_pipe { vec![pipe_read.as_fd()] } else { Vec::new() };
        stackd::fdpass::send(connection.as_fd(), bytes, &fds, nix::sys::socket::MsgFlags::empty())
            .unwrap();
    };
    send(b"\x00\xffnot json at all", false);
    send(&state("bad1").as_bytes()[..40], false);
    send(state("bad2").as_bytes(), false);
    send(state("bad3").as_bytes(), true);
    // A connection that sends nothing and closes.
    drop(UnixStream::connect(&setup.agent_socket).unwrap());
    for (needle, what) in [
        ("not a container process state", "garbage"),
        ("did not arrive", "no descriptor"),
        ("is not a seccomp listener", "wrong descriptor type"),
    ] {
        assert!(
            eventually(Duration::from_secs(10), || setup.agent.output().contains(needle)),
            "no error logged for {what}:\n{}",
            setup.agent.tail()
        );
    }
    let url = setup.url();
    let bundle = Bundle::new(
        &setup.net.dir.path,
        Runtime::Runc,
        &["wget", "-q", "-O-", &url],
        &setup.agent_socket,
    );
    let (out, status) = bundle.run(Duration::from_secs(60));
    assert_eq!(status, Some(0), "{}", setup.agent.tail());
    assert_eq!(sha256_hex(&out), setup.want, "after bad input the agent no longer serves");
}
