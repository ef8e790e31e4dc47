//! `joyride oci-agent`: the seccomp agent container runtimes hand their containers'
//! notification descriptors to (the OCI runtime spec's `linux.seccomp.listenerPath`).
//!
//! The protocol, as runc (≥ 1.1) and crun (≥ 1.6) speak it: for each container process they
//! install a filter for, the runtime connects to the agent's unix socket, sends the
//! *container process state* JSON — `ociVersion` (runc's 1.x, crun's "0.2.0"), `fds` (names;
//! the one called `seccompFd` is the notification descriptor), `pid`, `metadata` (the bundle's
//! `listenerMetadata`), and `state` (`id`, `pid`, `bundle`, `annotations`...) — with the
//! descriptors attached (SCM_RIGHTS) to the first message; the JSON may span several messages;
//! then it closes the connection.
//!
//! Each container (keyed by `state.id`) gets one stackd session and one [`Supervisor`]; a
//! `runc exec` into it brings another descriptor, served by the same supervisor. Each
//! descriptor is served by [`serve`] on a thread of its own, so a slow container never delays
//! another; when a container's last descriptor hangs up (every process gone), its supervisor —
//! and with it the stackd session and sockets — is dropped. Nothing per descriptor outlives it.
//!
//! `listenerMetadata`: `key=value` pairs separated by `;` or `,`. Known key: `policy` — a path
//! to a policy file, or one of the shipped names `default`, `audit-only`, `kernel-only`.
//! Unknown keys are logged and ignored.
//!
//! The agent also accepts `{"joyride-register": {"id", "pid", "annotations"}}` without a
//! descriptor, from `joyride oci-hook`: it records and logs the container (a hook cannot pass
//! the descriptor itself).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::socket::MsgFlags;
use serde::Deserialize;
use stackd::fdpass;
use trap::Listener;

use crate::serve::{serve, Supervisor};
use crate::session::Session;

/// The most state JSON one connection may send.
const MAX_STATE: usize = 1 << 20;
/// How long a runtime may take to send its state.
const STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent was started with.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The socket runtimes connect to.
    pub listen: PathBuf,
    /// joyride-stackd's control socket.
    pub stackd: PathBuf,
    /// The policy for containers whose metadata names none.
    pub policy: policies::Policy,
}

/// The container process state a runtime sends (runtime-spec `ContainerProcessState`).
#[derive(Debug, Deserialize)]
struct ProcessState {
    #[serde(rename = "ociVersion")]
    oci_version: String,
    fds: Vec<String>,
    pid: i64,
    #[serde(default)]
    metadata: String,
    state: ContainerState,
}

#[derive(Debug, Deserialize)]
struct ContainerState {
    id: String,
    #[serde(default)]
    pid: i64,
    #[serde(default)]
    bundle: String,
}

/// A hook's registration.
#[derive(Debug, Deserialize)]
struct Registration {
    #[serde(rename = "joyride-register")]
    register: RegisteredContainer,
}

#[derive(Debug, Deserialize)]
struct RegisteredContainer {
    id: String,
    #[serde(default)]
    pid: Option<i64>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// One container being served.
#[derive(Debug)]
struct Container {
    supervisor: Arc<Supervisor>,
    descriptors: AtomicUsize,
}

/// The agent's shared state.
#[derive(Debug)]
struct Agent {
    options: AgentOptions,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    registered: Mutex<HashMap<String, HashMap<String, String>>>,
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run_agent(options: AgentOptions) -> anyhow::Result<()> {
    stackd::client::Client::connect(&options.stackd)
        .context("the agent serves containers through joyride-stackd: start it first")?;
    let listener = bind(&options.listen)?;
    listener.set_nonblocking(true).context("cannot make the agent socket non-blocking")?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    tracing::info!(listen = %options.listen.display(), stackd = %options.stackd.display(), "joyride oci-agent serving");
    let agent = Arc::new(Agent {
        options,
        containers: Mutex::new(HashMap::new()),
        registered: Mutex::new(HashMap::new()),
    });
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [nix::poll::PollFd::new(listener.as_fd(), nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16));
        loop {
            match listener.accept() {
                Ok((connection, _)) => {
                    let agent = Arc::clone(&agent);
                    let spawned = std::thread::Builder::new()
                        .name("oci-conn".into())
                        .spawn(move || agent.take_connection(connection));
                    if let Err(error) = spawned {
                        tracing::error!(%error, "cannot start a thread for a runtime's connection");
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    tracing::warn!(%error, "accept on the agent socket failed");
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&agent.options.listen);
    tracing::info!("joyride oci-agent stopped");
    Ok(())
}

/// Binds the agent socket, replacing a stale one (nobody answering) but never a live agent's.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!("another agent already listens at {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen at {}", path.display()))?;
    // Runtimes run as root; nobody else may hand the agent descriptors.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(listener)
}

/// Reads one connection's message: the JSON (possibly over several messages) and the
/// descriptors of the first one, until the peer closes or the JSON is complete.
fn read_message(connection: &UnixStream) -> anyhow::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let deadline = Instant::now() + STATE_TIMEOUT;
    let mut data = Vec::new();
    let mut descriptors = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!("the runtime sent no complete state within {STATE_TIMEOUT:?}");
        }
        connection.set_read_timeout(Some(left))?;
        let received = fdpass::receive(connection.as_fd(), &mut buffer, MsgFlags::empty())
            .context("cannot receive from the runtime")?;
        descriptors.extend(received.descriptors);
        if received.len == 0 {
            break;
        }
        data.extend_from_slice(&buffer[..received.len]);
        if data.len() > MAX_STATE {
            anyhow::bail!("the runtime's state exceeds {MAX_STATE} bytes");
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_ok() {
            break;
        }
    }
    Ok((data, descriptors))
}

impl Agent {
    fn take_connection(self: Arc<Agent>, connection: UnixStream) {
        let (data, mut descriptors) = match read_message(&connection) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!("a runtime's connection failed: {error:#}");
                return;
            }
        };
        drop(connection);
        if data.is_empty() && descriptors.is_empty() {
            // A probe (is an agent listening?) from `oci-runtime` or `oci-hook`.
            tracing::debug!("a connection closed without a message");
            return;
        }
        if let Ok(registration) = serde_json::from_slice::<Registration>(&data) {
            self.register(registration.register);
            return;
        }
        let state: ProcessState = match serde_json::from_slice(&data) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, bytes = data.len(), "not a container process state: ignored");
                return;
            }
        };
        let id = state.state.id.clone();
        let Some(index) = state.fds.iter().position(|name| name == "seccompFd") else {
            tracing::warn!(container = id, fds = ?state.fds, "state names no seccompFd: ignored");
            return;
        };
        if index >= descriptors.len() {
            tracing::warn!(
                container = id,
                received = descriptors.len(),
                "the seccompFd descriptor did not arrive"
            );
            return;
        }
        let fd = descriptors.swap_remove(index);
        if !is_seccomp_listener(&fd) {
            tracing::warn!(
                container = id,
                "the descriptor named seccompFd is not a seccomp listener"
            );
            return;
        }
        tracing::info!(
            container = id,
            pid = state.pid,
            oci_version = state.oci_version,
            bundle = state.state.bundle,
            "serving a container process"
        );
        let container = match self.container(&id, &state) {
            Ok(container) => container,
            Err(error) => {
                // Dropping the descriptor fails the container's trapped calls (ENOSYS) rather
                // than leaving them waiting.
                tracing::error!(container = id, "cannot serve the container: {error:#}");
                return;
            }
        };
        let listener = Arc::new(Listener::from_fd(fd));
        if let Err(error) = serve(listener, Arc::clone(&container.supervisor)) {
            tracing::warn!(container = id, %error, "serving a descriptor failed");
        }
        self.release(&id, &container);
    }

    /// The container's supervisor, made on its first descriptor.
    fn container(&self, id: &str, state: &ProcessState) -> anyhow::Result<Arc<Container>> {
        let mut containers = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(container) = containers.get(id) {
            container.descriptors.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(container));
        }
        let pid = if state.pid > 0 { state.pid } else { state.state.pid };
        let pid = u32::try_from(pid).context("the state has no process id")?;
        let policy = policy_from_metadata(&state.metadata, &self.options.policy)?;
        let session = Session::open(&self.options.stackd, &format!("container {id}"), &[pid])
            .context("cannot open a joyride-stackd session")?;
        let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .with_context(|| format!("cannot open the network namespace of process {pid}"))?;
        let supervisor = Supervisor::new(session, policy).in_netns(OwnedFd::from(netns));
        let container = Arc::new(Container {
            supervisor: Arc::new(supervisor),
            descriptors: AtomicUsize::new(1),
        });
        containers.insert(id.to_owned(), Arc::clone(&container));
        Ok(container)
    }

    /// One descriptor of the container hung up; the last one frees the container.
    fn release(&self, id: &str, container: &Arc<Container>) {
        let mut containers = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        if container.descriptors.fetch_sub(1, Ordering::Relaxed) == 1 {
            containers.remove(id);
            self.registered.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
            tracing::info!(container = id, "every process of the container has exited: released");
        }
    }

    fn register(&self, container: RegisteredContainer) {
        tracing::info!(
            container = container.id,
            pid = container.pid.unwrap_or(0),
            annotations = container.annotations.len(),
            "container registered by a hook"
        );
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container.id, container.annotations);
    }
}

/// Whether `fd` is a seccomp notification descriptor ("anon_inode:seccomp notify").
fn is_seccomp_listener(fd: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|target| target.to_string_lossy().contains("seccomp"))
}

/// The policy `listenerMetadata` asks for (see the module documentation), or `default`.
fn policy_from_metadata(
    metadata: &str,
    default: &policies::Policy,
) -> anyhow::Result<policies::Policy> {
    let mut policy = default.clone();
    for pair in metadata.split([';', ',']).map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("policy", "default")) => policy = policies::Policy::default_policy(),
            Some(("policy", "audit-only")) => policy = policies::Policy::audit_only(),
            Some(("policy", "kernel-only")) => policy = policies::Policy::kernel_only(),
            Some(("policy", path)) => {
                policy = policies::Policy::load(Path::new(path))
                    .with_context(|| format!("listenerMetadata names policy {path}"))?
            }
            _ => tracing::warn!(pair, "unknown listenerMetadata entry: ignored"),
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_chooses_shipped_policies_and_rejects_bad_files() {
        let default = policies::Policy::default_policy();
        let kernel = policy_from_metadata("policy=kernel-only", &default).unwrap();
        let subject = policies::Subject {
            call: policies::Call::Socket,
            family: policies::Family::Inet,
            kind: policies::Kind::Stream,
            destination: None,
            executable: None,
        };
        assert_eq!(kernel.decide(&subject).action, policies::Action::Kernel);
        assert_eq!(
            policy_from_metadata("", &default).unwrap().decide(&subject).action,
            policies::Action::Userspace
        );
        assert!(policy_from_metadata("policy=/nonexistent/p.toml", &default).is_err());
        assert!(policy_from_metadata("color=blue; policy=default", &default).is_ok());
    }

    #[test]
    fn runc_and_crun_states_parse() {
        let runc = br#"{"ociVersion":"1.0.2","fds":["seccompFd"],"pid":4242,"metadata":"","state":{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":4242,"bundle":"/b","annotations":{}}}"#;
        let crun = br#"{"ociVersion":"0.2.0","fds":["seccompFd"],"pid":77,"metadata":"policy=default","state":{"ociVersion":"1.0.0","id":"c2","status":"creating","pid":77,"bundle":"/b2"}}"#;
        let state: ProcessState = serde_json::from_slice(runc).unwrap();
        assert_eq!((state.state.id.as_str(), state.pid), ("c1", 4242));
        let state: ProcessState = serde_json::from_slice(crun).unwrap();
        assert_eq!(
            (state.oci_version.as_str(), state.metadata.as_str()),
            ("0.2.0", "policy=default")
        );
        let hook: Registration = serde_json::from_slice(
            br#"{"joyride-register":{"id":"c3","pid":5,"annotations":{"a":"b"}}}"#,
        )
        .unwrap();
        assert_eq!(hook.register.annotations["a"], "b");
    }
}
