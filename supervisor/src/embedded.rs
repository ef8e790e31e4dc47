//! A joyride-stackd for the lifetime of one `joyride run`, when none answers at the control
//! path: the same daemon (this binary's `stackd` command) as a child process, so that its
//! event loop and signal handling stay its own, stopped cleanly when the command ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use stackd::client::{Client, ClientError};

/// How long the daemon may take to open its TAP and control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a clean stop may take before the daemon is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The embedded daemon; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct EmbeddedDaemon {
    child: Child,
    control: PathBuf,
}

/// Whether a daemon answers at `control`; if none does, starts one there with the default
/// settings. `None` means an outside daemon serves.
pub fn ensure_daemon(control: &Path) -> anyhow::Result<Option<EmbeddedDaemon>> {
    match Client::connect(control) {
        Ok(_) => return Ok(None),
        Err(ClientError::Connect {
            errno: nix::errno::Errno::ENOENT | nix::errno::Errno::ECONNREFUSED,
            ..
        }) => {}
        Err(error) => return Err(error).context("cannot reach joyride-stackd"),
    }
    tracing::info!(control = %control.display(), "no joyride-stackd answers: starting one for this command");
    let exe = std::env::current_exe().context("cannot find the joyride binary to start stackd")?;
    let mut command = Command::new(exe);
    command
        .arg("stackd")
        .arg("--control")
        .arg(control)
        .stdin(Stdio::null())
        .env("JOYRIDE_LOG", std::env::var("JOYRIDE_LOG").unwrap_or_else(|_| "warn".into()));
    // The daemon must not outlive joyride, even when joyride is killed.
    crate::sys::terminate_with_parent(&mut command);
    let child = command.spawn().context("cannot start the embedded joyride-stackd")?;
    let mut daemon = EmbeddedDaemon { child, control: control.to_owned() };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if Client::connect(control).is_ok() {
            return Ok(Some(daemon));
        }
        if let Some(status) = daemon.child.try_wait()? {
            bail!("the embedded joyride-stackd exited at start ({status}); its message is above");
        }
        if Instant::now() > deadline {
            bail!(
                "the embedded joyride-stackd did not open {} within {START_TIMEOUT:?}",
                control.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for EmbeddedDaemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(control = %self.control.display(), "the embedded joyride-stackd did not stop: killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
