//! `joyride oci-runtime [--runtime runc|crun|PATH] [--agent PATH] -- RUNTIME-ARGS...`, and the
//! same program reached through a `joyride-runtime` link: a drop-in OCI runtime for engines
//! that take one (podman `--runtime`, containerd's runc shim `BinaryName`, Docker's `runtimes`
//! in daemon.json).
//!
//! On `create` and `run` it [`prepare()`]s the bundle (`--bundle`/`-b`, else the working
//! directory), makes sure an agent answers ([`ensure_agent`]), and then execs the real runtime
//! with the arguments exactly as given. Every other command (`start`, `state`, `kill`,
//! `delete`, `exec`, `features`...) is passed straight through: an `exec` into a prepared
//! container carries the container's profile already, and the runtime hands the agent the new
//! process's descriptor itself.
//!
//! Engines exec one path with the runtime's own arguments, so through the `joyride-runtime`
//! link ([`alias_main`]) the options come from the environment: `JOYRIDE_OCI_RUNTIME` (runc,
//! crun or a path) and `JOYRIDE_OCI_AGENT` (the agent socket, [`DEFAULT_AGENT_PATH`] otherwise).
//!
//! Limits: crun's `--config FILE` (a config other than `config.json`) is not followed; global
//! flags this wrapper does not know are assumed to take no value (the known ones of runc and
//! crun are listed in [`VALUE_FLAGS`]).

use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, Context};

pub use super::DEFAULT_AGENT_PATH;
use super::{ensure_agent, prepare};

/// The file name under which joyride acts as the runtime itself.
pub const RUNTIME_ALIAS: &str = "joyride-runtime";
/// Names the real runtime for the `joyride-runtime` link.
pub const RUNTIME_ENV: &str = "JOYRIDE_OCI_RUNTIME";
/// Names the agent socket for the `joyride-runtime` link.
pub const AGENT_ENV: &str = "JOYRIDE_OCI_AGENT";

/// Global flags of runc and crun that take a value (`--flag VALUE` or `--flag=VALUE`).
pub const VALUE_FLAGS: &[&str] =
    &["root", "log", "log-format", "log-level", "criu", "rootless", "cgroup-manager"];

/// Flags of `create` and `run` that take a value, besides `--bundle`.
const COMMAND_VALUE_FLAGS: &[&str] = &["console-socket", "pid-file", "preserve-fds", "config"];

/// Where runtimes are looked for when PATH is unset.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether joyride was started as the runtime itself (`argv[0]`'s file name is
/// `joyride-runtime`); `main` then calls [`alias_main`] with the remaining arguments.
pub fn is_runtime_alias(argv0: &OsStr) -> bool {
    Path::new(argv0).file_name() == Some(OsStr::new(RUNTIME_ALIAS))
}

/// `joyride-runtime ARGS...`: [`runtime_main`] with the runtime and agent from
/// `JOYRIDE_OCI_RUNTIME` and `JOYRIDE_OCI_AGENT`.
pub fn alias_main(args: &[OsString]) -> anyhow::Result<Infallible> {
    let runtime = std::env::var(RUNTIME_ENV).ok().filter(|r| !r.is_empty());
    let agent = std::env::var_os(AGENT_ENV)
        .filter(|a| !a.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_AGENT_PATH), PathBuf::from);
    runtime_main(runtime.as_deref(), &agent, args)
}

/// The runtime wrapper: finds the real runtime (`runtime`: `runc`, `crun` or a path; by
/// default runc if it is on PATH, else crun), prepares the bundle and starts an agent at
/// `agent` on `create`/`run`, then execs the runtime with `args` unchanged. Returns only on
/// failure; a failure before the exec is also appended to the runtime's `--log` file, where
/// engines look for the runtime's errors.
pub fn runtime_main(
    runtime: Option<&str>,
    agent: &Path,
    args: &[OsString],
) -> anyhow::Result<Infallible> {
    let parsed = RuntimeArgs::parse(args);
    let real = match before_exec(runtime, agent, &parsed) {
        Ok(real) => real,
        Err(error) => {
            parsed.log_error(&error);
            return Err(error);
        }
    };
    let error = Command::new(&real).args(args).exec();
    let error = anyhow::Error::new(error).context(format!("cannot run {}", real.display()));
    parsed.log_error(&error);
    Err(error)
}

/// Everything before the exec: the real runtime, and on create/run the bundle and the agent.
fn before_exec(
    runtime: Option<&str>,
    agent: &Path,
    parsed: &RuntimeArgs,
) -> anyhow::Result<PathBuf> {
    let real = find_runtime(runtime)?;
    if parsed.prepares() {
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        let bundle = parsed.bundle_dir(&cwd);
        let outcome = prepare(&bundle, agent, None)
            .with_context(|| format!("cannot prepare the bundle {}", bundle.display()))?;
        tracing::info!("{outcome}");
        ensure_agent(agent)?;
    }
    Ok(real)
}

/// What a runtime command line asks for, as far as the wrapper cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeArgs {
    /// The command (`create`, `run`, `state`...), if any.
    pub command: Option<String>,
    /// The command's `--bundle`/`-b`, if given.
    pub bundle: Option<PathBuf>,
    /// The global `--log` file.
    pub log: Option<PathBuf>,
    /// The global `--log-format` (`text` or `json`).
    pub log_format: Option<String>,
    /// `--help`/`-h` was given after the command.
    pub help: bool,
}

impl RuntimeArgs {
    /// Reads `args` as runc (Go flags: `-flag` or `--flag`, `=VALUE` or a separate word) and
    /// crun (GNU style, also `-bVALUE`) both accept them: global flags, the command, then the
    /// command's flags, up to `--`.
    pub fn parse(args: &[OsString]) -> RuntimeArgs {
        let mut parsed = RuntimeArgs::default();
        let mut words = args.iter().map(|a| a.as_os_str());
        // Global flags, up to the command.
        while let Some(word) = words.next() {
            let Some((name, inline)) = flag(word) else {
                parsed.command = Some(word.to_string_lossy().into_owned());
                break;
            };
            if name == "--" {
                // `runc -- create` is no command runc knows; nor does the wrapper.
                return parsed;
            }
            if !VALUE_FLAGS.contains(&name.as_str()) {
                continue;
            }
            let value = inline.or_else(|| words.next().map(OsStr::to_owned));
            match name.as_str() {
                "log" => parsed.log = value.map(PathBuf::from),
                "log-format" => parsed.log_format = value.map(|v| v.to_string_lossy().into_owned()),
                _ => {}
            }
        }
        if !matches!(parsed.command.as_deref(), Some("create" | "run")) {
            return parsed;
        }
        // The command's flags; crun permutes arguments, so they may follow the container id.
        while let Some(word) = words.next() {
            if word == "--" {
                break;
            }
            let bytes = word.as_bytes();
            // crun's short form with the value attached: -b/path/to/bundle.
            if bytes.len() > 2 && bytes.starts_with(b"-b") && !bytes.starts_with(b"-bundle") {
                let value = &bytes[2..];
                let value = value.strip_prefix(b"=").unwrap_or(value);
                parsed.bundle = Some(PathBuf::from(OsStr::from_bytes(value)));
                continue;
            }
            let Some((name, inline)) = flag(word) else { continue };
            match name.as_str() {
                "bundle" | "b" => {
                    parsed.bundle =
                        inline.or_else(|| words.next().map(OsStr::to_owned)).map(PathBuf::from)
                }
                "help" | "h" => parsed.help = true,
                name if COMMAND_VALUE_FLAGS.contains(&name) && inline.is_none() => {
                    words.next();
                }
                _ => {}
            }
        }
        parsed
    }

    /// Whether the wrapper prepares a bundle before the runtime runs.
    pub fn prepares(&self) -> bool {
        matches!(self.command.as_deref(), Some("create" | "run")) && !self.help
    }

    /// The bundle directory: `--bundle`, relative to `cwd` if it is relative, else `cwd`.
    pub fn bundle_dir(&self, cwd: &Path) -> PathBuf {
        match &self.bundle {
            Some(bundle) => cwd.join(bundle),
            None => cwd.to_owned(),
        }
    }

    /// Appends `error` to the runtime's `--log` file, if one was given, in the runtime's log
    /// format (engines such as containerd read the reason of a failed create from there).
    fn log_error(&self, error: &anyhow::Error) {
        let Some(log) = &self.log else { return };
        let message = format!("joyride: {error:#}");
        let time = crate::audit::rfc3339_micros(SystemTime::now());
        let line = if self.log_format.as_deref() == Some("json") {
            serde_json::json!({ "level": "error", "msg": message, "time": time }).to_string()
        } else {
            format!("time={time:?} level=error msg={message:?}")
        };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(e) = written {
            tracing::warn!(log = %log.display(), error = %e, "cannot write to the runtime's log");
        }
    }
}

/// `word` as a flag: its name without the leading dashes (`--` itself for the terminator) and
/// its `=VALUE`, or `None` for a positional word (`-` alone is one).
fn flag(word: &OsStr) -> Option<(String, Option<OsString>)> {
    let bytes = word.as_bytes();
    if bytes == b"--" {
        return Some(("--".into(), None));
    }
    let body = bytes.strip_prefix(b"--").or_else(|| bytes.strip_prefix(b"-"))?;
    if body.is_empty() {
        return None;
    }
    match body.iter().position(|&b| b == b'=') {
        Some(at) => Some((
            String::from_utf8_lossy(&body[..at]).into_owned(),
            Some(OsStr::from_bytes(&body[at + 1..]).to_owned()),
        )),
        None => Some((String::from_utf8_lossy(body).into_owned(), None)),
    }
}

/// The real runtime: `runtime` as a path (with a `/`) or a name on PATH; by default runc,
/// else crun. joyride itself (a `joyride-runtime` link installed as `runc`) is skipped.
pub fn find_runtime(runtime: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(path) = runtime.filter(|r| r.contains('/')) {
        let path = PathBuf::from(path);
        if !is_executable(&path) {
            bail!("the runtime {} is not an executable file", path.display());
        }
        return Ok(path);
    }
    let own = std::env::current_exe().and_then(std::fs::canonicalize).ok();
    let search =
        std::env::var_os("PATH").filter(|p| !p.is_empty()).unwrap_or_else(|| DEFAULT_PATH.into());
    let names: &[&str] = match runtime {
        Some(name) => &[name][..],
        None => &["runc", "crun"],
    };
    for name in names {
        for dir in std::env::split_paths(&search) {
            let candidate = dir.join(name);
            if !is_executable(&candidate) {
                continue;
            }
            if own.is_some() && std::fs::canonicalize(&candidate).ok() == own {
                continue;
            }
            return Ok(candidate);
        }
    }
    match runtime {
        Some(name) => bail!(
            "no runtime {name} on PATH ({}); give its path with --runtime /path/to/{name}",
            search.to_string_lossy()
        ),
        None => bail!(
            "neither runc nor crun is on PATH ({}); install one, or give the runtime's path with \
             --runtime (JOYRIDE_OCI_RUNTIME for the joyride-runtime link)",
            search.to_string_lossy()
        ),
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RuntimeArgs {
        RuntimeArgs::parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn create_and_run_are_found_behind_global_flags() {
        // containerd's runc shim.
        let shim = parse(&[
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/run/containerd/x/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/run/containerd/x",
            "--pid-file",
            "/run/containerd/x/init.pid",
            "c1",
        ]);
        assert_eq!(shim.command.as_deref(), Some("create"));
        assert_eq!(shim.bundle, Some(PathBuf::from("/run/containerd/x")));
        assert_eq!(shim.log, Some(PathBuf::from("/run/containerd/x/log.json")));
        assert_eq!(shim.log_format.as_deref(), Some("json"));
        assert!(shim.prepares());
        // Go's single-dash and `=` forms, crun's --cgroup-manager.
        let go = parse(&["-root=/tmp/r", "--debug", "-log", "/tmp/l", "run", "-b=/b", "id"]);
        assert_eq!(go.command.as_deref(), Some("run"));
        assert_eq!(go.bundle, Some(PathBuf::from("/b")));
        assert_eq!(go.log, Some(PathBuf::from("/tmp/l")));
        let crun = parse(&["--cgroup-manager", "cgroupfs", "--log-level=debug", "run", "id"]);
        assert_eq!(crun.command.as_deref(), Some("run"));
        assert_eq!(crun.bundle, None);
        assert!(crun.prepares());
    }

    #[test]
    fn the_bundle_in_every_spelling() {
        for (args, bundle) in [
            (&["create", "--bundle", "/b1", "id"][..], "/b1"),
            (&["create", "--bundle=/b2", "id"], "/b2"),
            (&["create", "-b", "/b3", "id"], "/b3"),
            (&["create", "-bundle", "/b4", "id"], "/b4"),
            (&["create", "-b/b5", "id"], "/b5"),
            // crun takes options after the id.
            (&["run", "id", "--bundle", "/b6"], "/b6"),
            // Values of other options are not mistaken for it.
            (&["create", "--console-socket", "-b", "--bundle", "/b7", "id"], "/b7"),
            (&["create", "--pid-file", "/p", "-b", "rel", "id"], "rel"),
        ] {
            assert_eq!(parse(args).bundle, Some(PathBuf::from(bundle)), "{args:?}");
        }
        let cwd = Path::new("/work/c");
        assert_eq!(parse(&["create", "-b", "rel", "id"]).bundle_dir(cwd), cwd.join("rel"));
        assert_eq!(parse(&["create", "-b", "/abs", "id"]).bundle_dir(cwd), Path::new("/abs"));
        assert_eq!(parse(&["create", "id"]).bundle_dir(cwd), cwd);
        // After `--` nothing is an option.
        assert_eq!(parse(&["create", "id", "--", "--bundle", "/x"]).bundle, None);
    }

    #[test]
    fn other_commands_pass_through() {
        for args in [
            &["state", "id"][..],
            &["--root", "/r", "delete", "--force", "id"],
            &["kill", "id", "KILL"],
            &["start", "id"],
            &["exec", "--process", "/p.json", "id"],
            &["features"],
            &["--version"],
            &[],
            // A global flag's value named like a command is still its value.
            &["--root", "create", "state", "id"],
            &["--log", "run", "delete", "id"],
            // Help is help.
            &["create", "--help"],
            &["run", "-h"],
            &["--", "create", "id"],
        ] {
            assert!(!parse(args).prepares(), "{args:?}");
        }
        assert_eq!(parse(&["--root", "create", "state", "id"]).command.as_deref(), Some("state"));
        // The bundle is looked for only where it matters.
        assert_eq!(parse(&["exec", "-b", "/x", "id"]).bundle, None);
    }

    #[test]
    fn the_alias_is_the_file_name() {
        assert!(is_runtime_alias(OsStr::new("joyride-runtime")));
        assert!(is_runtime_alias(OsStr::new("/usr/local/bin/joyride-runtime")));
        assert!(!is_runtime_alias(OsStr::new("/usr/local/bin/joyride")));
        assert!(!is_runtime_alias(OsStr::new("joyride-runtime.sh")));
        assert!(!is_runtime_alias(OsStr::new("/joyride-runtime/joyride")));
    }

    #[test]
    fn runtimes_are_found_by_path_and_name() {
        assert_eq!(find_runtime(Some("/bin/sh")).unwrap(), PathBuf::from("/bin/sh"));
        assert!(find_runtime(Some("/nonexistent/runc")).is_err());
        let missing = find_runtime(Some("joyride-no-such-runtime")).unwrap_err().to_string();
        assert!(missing.contains("--runtime /path/to/joyride-no-such-runtime"), "{missing}");
        // `sh` is on every PATH this test runs with.
        let sh = find_runtime(Some("sh")).unwrap();
        assert_eq!(sh.file_name(), Some(OsStr::new("sh")));
        assert!(sh.is_absolute());
    }
}
