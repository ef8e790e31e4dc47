//! `joyride oci-hook`: an OCI hook (`createRuntime` or `prestart`; the state JSON on standard
//! input) for setups that manage the container's seccomp profile themselves.
//!
//! A hook cannot install a seccomp filter in the container, nor receive its notification
//! descriptor: the runtime installs the filter from the bundle's profile and hands the
//! descriptor to the profile's `listenerPath` itself. So the profile must already carry
//! joyride's `SCMP_ACT_NOTIFY` rules and `listenerPath` — e.g. produced by
//! `joyride oci prepare` on a copy of the bundle and pasted into the engine's seccomp profile.
//! What the hook does: it makes sure an agent answers at the agent path (starting
//! `joyride oci-agent` if none does — before the runtime connects to `listenerPath`, which
//! happens after the `createRuntime` and `prestart` hooks), and registers the container
//! (`id`, `pid`, `annotations`) with it, so the agent's log names the container before its
//! first call arrives.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::ensure_agent;

/// The help text of `joyride oci-hook`.
pub const HOOK_HELP: &str = "\
An OCI hook (createRuntime or prestart) for containers whose seccomp profile already sends \
joyride's calls to the agent. It reads the container state from standard input, starts \
`joyride oci-agent` if none answers at the agent path, and registers the container with it.

A hook cannot install a seccomp filter or receive the container's notification descriptor: \
the runtime does both from the bundle's profile. That profile must carry joyride's \
SCMP_ACT_NOTIFY rules and a listenerPath naming the agent — `joyride oci prepare` on a copy of \
the bundle writes them. Without them the container runs on the kernel's stack.";

/// The most state JSON a hook reads.
const MAX_STATE: u64 = 1 << 20;
/// How long the agent may take to take the registration.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The parts of the OCI state a registration carries.
#[derive(Debug, Deserialize)]
struct State {
    id: String,
    #[serde(default)]
    pid: Option<i64>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Runs the hook: the OCI state from `stdin`, an agent at `agent` (started if none answers),
/// the container registered with it.
pub fn hook_main(agent: &Path, stdin: impl Read) -> anyhow::Result<()> {
    let mut data = Vec::new();
    stdin
        .take(MAX_STATE + 1)
        .read_to_end(&mut data)
        .context("cannot read the container state from standard input")?;
    if data.len() as u64 > MAX_STATE {
        bail!("the container state on standard input exceeds {MAX_STATE} bytes");
    }
    let state: State = serde_json::from_slice(&data).context(
        "standard input is not an OCI container state (runtimes give every hook one: run \
         joyride oci-hook as a createRuntime or prestart hook)",
    )?;
    ensure_agent(agent)?;
    register(agent, &state)
}

/// The message the agent records: `{"joyride-register": {"id", "pid", "annotations"}}`, the
/// pid left out when the state has none.
fn registration(state: &State) -> Vec<u8> {
    let mut container = serde_json::Map::new();
    container.insert("id".into(), state.id.clone().into());
    if let Some(pid) = state.pid {
        container.insert("pid".into(), pid.into());
    }
    container.insert("annotations".into(), serde_json::json!(state.annotations));
    serde_json::json!({ "joyride-register": container }).to_string().into_bytes()
}

/// Sends the registration, without a descriptor, and waits for the agent to close the
/// connection (it has then recorded the container).
fn register(agent: &Path, state: &State) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(agent)
        .with_context(|| format!("cannot reach the joyride agent at {}", agent.display()))?;
    stream.set_write_timeout(Some(AGENT_TIMEOUT))?;
    stream.set_read_timeout(Some(AGENT_TIMEOUT))?;
    stream
        .write_all(&registration(state))
        .and_then(|()| stream.shutdown(Shutdown::Write))
        .with_context(|| {
            format!("cannot register with the joyride agent at {}", agent.display())
        })?;
    if let Err(error) = stream.read_to_end(&mut Vec::new()) {
        tracing::warn!(%error, container = state.id, "the agent did not confirm the registration");
    }
    tracing::info!(container = state.id, agent = %agent.display(), "container registered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_carries_id_pid_and_annotations() {
        let state: State = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","id":"c1","status":"created","pid":4242,
                "bundle":"/b","annotations":{"org.example/a":"1","b":"two"}}"#,
        )
        .unwrap();
        let message: serde_json::Value = serde_json::from_slice(&registration(&state)).unwrap();
        assert_eq!(
            message,
            serde_json::json!({ "joyride-register": {
                "id": "c1", "pid": 4242, "annotations": { "org.example/a": "1", "b": "two" } } })
        );
        // No pid (a hook run after the process is gone), no annotations.
        let state: State = serde_json::from_str(r#"{"id":"c2","status":"stopped"}"#).unwrap();
        let message: serde_json::Value = serde_json::from_slice(&registration(&state)).unwrap();
        assert_eq!(
            message,
            serde_json::json!({ "joyride-register": { "id": "c2", "annotations": {} } })
        );
    }

    #[test]
    fn a_state_without_an_id_is_refused_before_any_agent_is_started() {
        let agent = Path::new("/nonexistent/joyride-test/agent.sock");
        let error = hook_main(agent, &br#"{"pid": 1}"#[..]).unwrap_err();
        assert!(format!("{error:#}").contains("not an OCI container state"), "{error:#}");
        assert!(!agent.parent().unwrap().exists());
    }
}
