//! `joyride`: runs unmodified programs with their TCP and UDP sockets on joyride-stackd.
//! A thin front: arguments, logging and exit codes here; everything else in the library.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use stackd::client::Client;
use stackd::config::{Config, Settings, DEFAULT_CONTROL_PATH};
use stackd::daemon::Daemon;
use supervisor::audit::{serve_audit, AuditDecision, AuditLog, CallSubject};
use supervisor::embedded::ensure_daemon;
use supervisor::launch::{fast_path_library, forward_signals, launch, shell_status};
use supervisor::oci_agent::{run_agent, AgentOptions};
use supervisor::serve::{serve, Supervisor};
use supervisor::session::Session;
use supervisor::ss::print_sockets;
use trap::FilterSpec;

/// joyride: kernel-bypass networking for unmodified programs.
#[derive(Debug, Parser)]
#[command(name = "joyride", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs CMD with its TCP and UDP sockets on joyride-stackd. Static and dynamic programs
    /// alike; nothing is rebuilt. joyride exits with CMD's status (128+N if a signal N ended it),
    /// once every process of CMD's tree has exited.
    Run {
        /// The daemon's control socket. If no daemon answers there, one is started for the
        /// lifetime of CMD with the default settings (TAP jr0, 10.77.0.2/24).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_PATH)]
        stackd: PathBuf,
        /// A policy file (see policies/shipped/default.toml); the default policy otherwise.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Serve every call through the supervisor: do not preload the fast-path library
        /// (JOYRIDE_FASTPATH_LIB, else libjoyride_fastpath.so next to this executable).
        #[arg(long)]
        no_fast_path: bool,
        /// The program and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
    /// Runs CMD on the kernel's stack, logging every socket call it makes as one JSON line.
    Audit {
        /// Where the JSON lines go (appended); standard error otherwise.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// A policy whose deny rules are enforced (the audit-only policy otherwise).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
    /// Lists the daemon's sockets, like `ss -tani`.
    Ss {
        /// The daemon's control socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_PATH)]
        stackd: PathBuf,
    },
    /// The seccomp agent for container runtimes (runc ≥ 1.1, crun ≥ 1.6): serves the
    /// containers whose bundle's linux.seccomp.listenerPath is PATH (see `joyride oci prepare`).
    OciAgent {
        /// The socket runtimes connect to.
        #[arg(long, value_name = "PATH")]
        listen: PathBuf,
        /// The daemon's control socket.
        #[arg(long, value_name = "SOCK", default_value = DEFAULT_CONTROL_PATH)]
        stackd: PathBuf,
        /// The policy for containers whose listenerMetadata names none.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Container bundles: `joyride oci prepare BUNDLE --agent PATH`.
    Oci {
        #[command(subcommand)]
        command: OciCommand,
    },
    /// A drop-in OCI runtime: on create/run, prepares the bundle and makes sure an agent runs,
    /// then execs the real runtime with the same arguments; every other command passes
    /// through. A link named joyride-runtime to this binary behaves as `oci-runtime --`.
    OciRuntime {
        /// The real runtime: runc, crun or a path (default: runc if on PATH, else crun).
        #[arg(long, value_name = "RUNTIME")]
        runtime: Option<String>,
        /// The agent's socket (started if none answers).
        #[arg(long, value_name = "PATH", default_value = supervisor::oci::DEFAULT_AGENT_PATH)]
        agent: PathBuf,
        /// The runtime's own arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "RUNTIME-ARGS")]
        args: Vec<OsString>,
    },
    /// An OCI hook (prestart / createRuntime, state on stdin): makes sure an agent runs and
    /// registers the container with it. A hook cannot install a seccomp filter or receive the
    /// notification descriptor: the container's profile must carry joyride's NOTIFY rules and
    /// listenerPath already (`joyride oci prepare` on a copy of the bundle makes them).
    OciHook {
        /// The agent's socket (started if none answers).
        #[arg(long, value_name = "PATH", default_value = supervisor::oci::DEFAULT_AGENT_PATH)]
        agent: PathBuf,
    },
    /// Runs joyride-stackd in the foreground (the same daemon, same flags).
    Stackd {
        /// A TOML file with the daemon's settings.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
}

#[derive(Debug, Subcommand)]
enum OciCommand {
    /// Edits BUNDLE/config.json in place (a backup is kept; running it twice changes nothing)
    /// so that the container's socket calls go to the agent at PATH, merged with any seccomp
    /// profile the bundle has.
    Prepare {
        /// The bundle directory.
        bundle: PathBuf,
        /// The agent's socket (`joyride oci-agent --listen PATH`).
        #[arg(long, value_name = "PATH")]
        agent: PathBuf,
        /// A policy file for this container (passed to the agent as listenerMetadata).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JOYRIDE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Engines exec one runtime path with the runtime's own arguments.
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.first().is_some_and(|argv0| supervisor::oci::runtime::is_runtime_alias(argv0)) {
        let Err(error) = supervisor::oci::runtime::alias_main(&argv[1..]);
        eprintln!("joyride-runtime: {error:#}");
        return ExitCode::from(125);
    }
    let outcome = match Cli::parse().command {
        Command::Run { stackd, policy, no_fast_path, command } => {
            run(&stackd, policy.as_deref(), !no_fast_path, &command)
        }
        Command::Audit { log, policy, command } => {
            audit(log.as_deref(), policy.as_deref(), &command)
        }
        Command::Ss { stackd } => ss(&stackd).map(|()| 0),
        Command::OciAgent { listen, stackd, policy } => {
            oci_agent(listen, stackd, policy.as_deref())
        }
        Command::Oci { command: OciCommand::Prepare { bundle, agent, policy } } => {
            oci_prepare(&bundle, &agent, policy.as_deref())
        }
        Command::OciRuntime { runtime, agent, args } => {
            supervisor::oci::runtime::runtime_main(runtime.as_deref(), &agent, &args)
                .map(|never| match never {})
        }
        Command::OciHook { agent } => {
            supervisor::oci::hook::hook_main(&agent, std::io::stdin().lock()).map(|()| 0)
        }
        Command::Stackd { config, settings } => {
            stackd_daemon(config.as_deref(), *settings).map(|()| 0)
        }
    };
    match outcome {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("joyride: {error:#}");
            // As env(1) and timeout(1) do: 125 is joyride's own failure, not the command's.
            ExitCode::from(125)
        }
    }
}

fn load_policy(
    path: Option<&Path>,
    default: fn() -> policies::Policy,
) -> anyhow::Result<policies::Policy> {
    match path {
        Some(path) => policies::Policy::load(path).context("the policy file is not valid"),
        None => Ok(default()),
    }
}

fn run(
    control: &Path,
    policy: Option<&Path>,
    fast_path: bool,
    command: &[OsString],
) -> anyhow::Result<u8> {
    let policy = load_policy(policy, policies::Policy::default_policy)?;
    let _embedded = ensure_daemon(control)?;
    let filter = FilterSpec::joyride().build().context("cannot build the seccomp filter")?;
    let preload = if fast_path { fast_path_library() } else { None };
    let (mut child, listener) = launch(command, filter, preload.as_deref())
        .with_context(|| format!("cannot start {}", command[0].to_string_lossy()))?;
    let name = format!("joyride run {}", command[0].to_string_lossy());
    let session = match Session::open(control, &name, &[child.id()]) {
        Ok(session) => session,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error).context("cannot open a joyride-stackd session");
        }
    };
    let supervisor = Arc::new(Supervisor::new(session, policy));
    let listener = Arc::new(listener);
    let server = std::thread::Builder::new()
        .name("serve".into())
        .spawn(move || serve(listener, supervisor))
        .context("cannot start the serving thread")?;
    forward_signals(child.id()).context("cannot install signal handlers")?;
    let status = child.wait().context("cannot wait for the command")?;
    // Processes CMD left behind still use the filter: serve them until the last one exits.
    match server.join() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "the serving loop failed"),
        Err(_) => tracing::error!("the serving loop panicked"),
    }
    Ok(shell_status(status))
}

fn audit(log: Option<&Path>, policy: Option<&Path>, command: &[OsString]) -> anyhow::Result<u8> {
    let policy = load_policy(policy, policies::Policy::audit_only)?;
    let log = match log {
        Some(path) => AuditLog::to_file(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?,
        None => AuditLog::to_stderr(),
    };
    let filter = FilterSpec::audit().build().context("cannot build the seccomp filter")?;
    // Audit never preloads: it watches the program as the kernel serves it.
    let (mut child, listener) = launch(command, filter, None)
        .with_context(|| format!("cannot start {}", command[0].to_string_lossy()))?;
    if let Err(error) = listener.set_sync_wakeup() {
        tracing::debug!(%error, "no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux < 6.6)");
    }
    forward_signals(child.id()).context("cannot install signal handlers")?;
    // The listener hangs up only once its last process is reaped: wait beside the loop.
    let waiter = std::thread::Builder::new()
        .name("wait".into())
        .spawn(move || child.wait())
        .context("cannot start the waiting thread")?;
    serve_audit(&listener, &log, &|subject| audit_decision(&policy, subject))
        .context("the audit loop failed")?;
    let status = waiter.join().map_err(|_| anyhow::anyhow!("the waiting thread panicked"))?;
    Ok(shell_status(status.context("cannot wait for the command")?))
}

/// The policy's word on an audited call: only deny changes anything (the kernel serves the
/// rest, and every call is logged anyway).
fn audit_decision(policy: &policies::Policy, subject: &CallSubject) -> AuditDecision {
    let call = match subject.call {
        "socket" => policies::Call::Socket,
        "connect" => policies::Call::Connect,
        "bind" => policies::Call::Bind,
        "sendto" | "sendmsg" | "sendmmsg" => policies::Call::SendTo,
        _ => return AuditDecision::Continue,
    };
    let family = match subject.family {
        Some(libc::AF_INET) => policies::Family::Inet,
        Some(libc::AF_INET6) => policies::Family::Inet6,
        _ => return AuditDecision::Continue,
    };
    let kind = match subject.kind {
        Some(libc::SOCK_STREAM) => policies::Kind::Stream,
        Some(libc::SOCK_DGRAM) => policies::Kind::Datagram,
        _ => return AuditDecision::Continue,
    };
    let subject = policies::Subject {
        call,
        family,
        kind,
        destination: subject.destination,
        executable: None,
    };
    match policy.decide(&subject).action {
        policies::Action::Deny { errno } => AuditDecision::Deny { errno },
        _ => AuditDecision::Continue,
    }
}

fn ss(control: &Path) -> anyhow::Result<()> {
    let mut client = Client::connect(control)?;
    print_sockets(&mut client, &mut std::io::stdout().lock())?;
    Ok(())
}

fn oci_agent(listen: PathBuf, stackd: PathBuf, policy: Option<&Path>) -> anyhow::Result<u8> {
    supervisor::sys::close_inherited_descriptors();
    let policy = load_policy(policy, policies::Policy::default_policy)?;
    run_agent(AgentOptions { listen, stackd, policy })?;
    Ok(0)
}

fn oci_prepare(bundle: &Path, agent: &Path, policy: Option<&Path>) -> anyhow::Result<u8> {
    let metadata = match policy {
        Some(path) => {
            // The agent reads it, from wherever it runs: an absolute, checked path.
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("cannot find the policy {}", path.display()))?;
            policies::Policy::load(&path).context("the policy file is not valid")?;
            Some(format!("policy={}", path.display()))
        }
        None => None,
    };
    let outcome = supervisor::oci::prepare(bundle, agent, metadata.as_deref())
        .with_context(|| format!("cannot prepare the bundle {}", bundle.display()))?;
    println!("{}: {outcome}", bundle.display());
    Ok(0)
}

fn stackd_daemon(config: Option<&Path>, settings: Settings) -> anyhow::Result<()> {
    let config = Config::load(config, settings).context("invalid configuration")?;
    let daemon = Daemon::start(config).context("cannot start")?;
    daemon.run().context("stopped on an error")
}
