//! `joyride-stackd`: the network service that owns the NIC and runs fbsd-tcp for every
//! application on the host. A thin front: arguments and logging here, everything else in the
//! library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use stackd::config::{Config, Settings};
use stackd::daemon::Daemon;

/// joyride-stackd: a user-space TCP/IP stack serving every application on this host.
///
/// Defaults: a TAP named jr0, the stack at 10.77.0.2/24, the kernel's side of the TAP at
/// 10.77.0.1/24 (also the gateway), control socket /run/joyride/stackd.sock. Flags override the
/// --config file, which overrides the defaults. Stops cleanly on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// A TOML file with the same settings (kebab-case keys: backend, iface, addr, host-addr,
    /// gateway, mtu, control, pcap, dpdk-args).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JOYRIDE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("joyride-stackd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config =
        Config::load(cli.config.as_deref(), cli.settings).context("invalid configuration")?;
    let daemon = Daemon::start(config).context("cannot start")?;
    daemon.run().context("stopped on an error")
}
