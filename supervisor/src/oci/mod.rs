//! Containers on joyride, from the runtime's side: the three ways a container's seccomp
//! notifications reach `joyride oci-agent` (the agent itself is [`crate::oci_agent`]).
//!
//! - [`mod@prepare`]: `joyride oci prepare BUNDLE` rewrites the bundle's `config.json` so that the
//!   runtime (runc ≥ 1.1, crun ≥ 1.6) installs joyride's rules with `SCMP_ACT_NOTIFY` and hands
//!   the notification descriptor to the agent at `listenerPath`.
//! - [`runtime`]: `joyride oci-runtime` (or a `joyride-runtime` link), a drop-in OCI runtime for
//!   engines: it prepares the bundle on `create`/`run`, makes sure an agent answers, and execs
//!   the real runtime with the same arguments.
//! - [`hook`]: `joyride oci-hook`, for setups whose seccomp profile carries the rules already: it
//!   starts or finds the agent and registers the container with it.
//!
//! [`ensure_agent`] is the one place that starts an agent, for the runtime wrapper and the hook.

pub mod hook;
pub mod prepare;
pub mod runtime;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

pub use prepare::{prepare, PrepareError, PrepareOutcome};

/// Where the runtime wrapper and the hook expect the agent when told nothing else.
pub const DEFAULT_AGENT_PATH: &str = "/run/joyride/oci-agent.sock";

/// How long a freshly started agent may take to accept connections.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to keep trying once the started agent has exited: another starter's agent may be
/// the one that won the socket.
const AFTER_EXIT_GRACE: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Whether an agent was already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    /// An agent answered at the path.
    Running,
    /// None answered; one was started and now answers.
    Started {
        /// The new agent's process id.
        pid: u32,
        /// Where its output goes.
        log: PathBuf,
    },
}

/// Why no agent answers.
#[derive(Debug, Error)]
pub enum AgentError {
    /// `/proc/self/exe` could not be read.
    #[error("cannot find joyride's own executable to start an agent: {0}")]
    OwnExecutable(#[source] io::Error),
    /// The socket's directory, lock or log file could not be made.
    #[error(
        "cannot prepare {path} for the agent: {source} (is the directory writable by this user?)"
    )]
    Setup {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The agent process could not be started.
    #[error("cannot start `{exe} oci-agent --listen {agent}`: {source}")]
    Spawn {
        /// joyride's executable.
        exe: PathBuf,
        /// The agent socket.
        agent: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The agent exited without ever answering.
    #[error(
        "the joyride oci-agent started for {agent} exited ({status}) without answering; its log \
         {log} ends with:\n{tail}\n(is joyride-stackd running? start it, or start \
         `joyride oci-agent --listen {agent}` yourself)"
    )]
    Exited {
        /// The agent socket.
        agent: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// The agent runs but has not answered in time.
    #[error(
        "the joyride oci-agent started for {agent} (pid {pid}) did not accept connections within \
         {waited:?}; see {log}"
    )]
    Timeout {
        /// The agent socket.
        agent: PathBuf,
        /// The agent's process id (still running).
        pid: u32,
        /// How long we waited.
        waited: Duration,
        /// Its log file.
        log: PathBuf,
    },
}

/// Makes sure an agent accepts connections at `agent`: if none does, starts
/// `joyride oci-agent --listen AGENT` (this executable) in a process group of its own, with
/// its output appended to `AGENT.log`, and waits up to 5 s for it to answer.
///
/// Starters serialise on `AGENT.lock`, so that two containers created at once start one agent.
/// The agent is not waited for: it outlives the caller (which usually execs the runtime next).
pub fn ensure_agent(agent: &Path) -> Result<AgentStatus, AgentError> {
    if answers(agent) {
        return Ok(AgentStatus::Running);
    }
    if let Some(dir) = agent.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(setup(dir))?;
    }
    let lock_path = sibling(agent, ".lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(setup(&lock_path))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| setup(&lock_path)(io::Error::from(errno)))?;
    // Whoever held the lock before us may have started one.
    if answers(agent) {
        return Ok(AgentStatus::Running);
    }
    let log_path = sibling(agent, ".log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(setup(&log_path))?;
    let start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let log_err = log.try_clone().map_err(setup(&log_path))?;
    let exe = std::env::current_exe().map_err(AgentError::OwnExecutable)?;
    let mut command = Command::new(&exe);
    command
        // argv[0] decides what joyride is (see runtime::is_runtime_alias): never the alias here.
        .arg0("joyride")
        .arg("oci-agent")
        .arg("--listen")
        // Absolute, since the agent runs from `/`.
        .arg(std::path::absolute(agent).map_err(setup(agent))?)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: the engine's signals to the runtime's group (^C, a shim's
        // kill of the group) must not reach an agent that serves other containers too.
        .process_group(0)
        // Not the bundle directory (or wherever the engine ran the runtime): a long-lived agent
        // there would keep it busy.
        .current_dir("/");
    if std::env::var_os("JOYRIDE_LOG").is_none() {
        // Nobody reads a background agent's stderr: let its log say what it served.
        command.env("JOYRIDE_LOG", "info");
    }
    let mut child = command.spawn().map_err(|source| AgentError::Spawn {
        exe: exe.clone(),
        agent: agent.to_owned(),
        source,
    })?;
    let pid = child.id();
    tracing::info!(pid, agent = %agent.display(), log = %log_path.display(), "started joyride oci-agent");
    let started = Instant::now();
    let mut exited: Option<(ExitStatus, Instant)> = None;
    loop {
        if answers(agent) {
            return Ok(AgentStatus::Started { pid, log: log_path });
        }
        if exited.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some((status, Instant::now()));
            }
        }
        if let Some((status, at)) = exited {
            if at.elapsed() >= AFTER_EXIT_GRACE {
                let tail = log_tail(&log_path, start);
                return Err(AgentError::Exited {
                    agent: agent.to_owned(),
                    status,
                    log: log_path,
                    tail,
                });
            }
        } else if started.elapsed() >= AGENT_START_TIMEOUT {
            return Err(AgentError::Timeout {
                agent: agent.to_owned(),
                pid,
                waited: AGENT_START_TIMEOUT,
                log: log_path,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Whether something accepts connections at `path`. The probe connection is closed at once;
/// the agent sees a connection that sends nothing, which it logs and drops.
fn answers(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// The error for a failure to make `path` (for `map_err`).
fn setup(path: &Path) -> impl FnOnce(io::Error) -> AgentError + '_ {
    move |source| AgentError::Setup { path: path.to_owned(), source }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The last few lines the agent wrote to its log, from byte `start` on.
fn log_tail(path: &Path, start: u64) -> String {
    const MAX: u64 = 2048;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(start.max(len.saturating_sub(MAX))))?;
        let mut bytes = Vec::new();
        file.take(MAX).read_to_end(&mut bytes)?;
        // The seek may have landed inside a character.
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) if !text.trim().is_empty() => {
            let lines: Vec<&str> = text.trim_end().lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n")
        }
        Ok(_) => "(nothing)".to_owned(),
        Err(error) => format!("(unreadable: {error})"),
    }
}
