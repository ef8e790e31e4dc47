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
    /// NIC backend: tap (creates the interface), af-packet (binds an existing one), dpdk.
    #[arg(long, value_name = "tap|af-packet|dpdk")]
    backend: Option<String>,
    /// The interface to create (tap) or bind (af-packet), or the DPDK port.
    #[arg(long, value_name = "NAME")]
    iface: Option<String>,
    /// The stack's address and network.
    #[arg(long, value_name = "IP/PREFIX")]
    addr: Option<String>,
    /// The address given to the kernel's side of the TAP.
    #[arg(long, value_name = "IP/PREFIX")]
    host_addr: Option<String>,
    /// Next hop for destinations outside the network (default: host-addr's address).
    #[arg(long, value_name = "IP")]
    gateway: Option<String>,
    /// IP MTU of the link.
    #[arg(long, value_name = "N")]
    mtu: Option<usize>,
    /// Control socket path.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Write every frame in and out to this pcap file (tcpdump -r reads it).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// DPDK EAL arguments, e.g. "-l 0 --no-huge --no-pci --vdev=net_tap0".
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    dpdk_args: Option<String>,
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
    let settings = Settings {
        backend: cli.backend,
        iface: cli.iface,
        addr: cli.addr,
        host_addr: cli.host_addr,
        gateway: cli.gateway,
        mtu: cli.mtu,
        control: cli.control,
        pcap: cli.pcap,
        dpdk_args: cli.dpdk_args,
    };
    let config = Config::load(cli.config.as_deref(), settings).context("invalid configuration")?;
    let daemon = Daemon::start(config).context("cannot start")?;
    daemon.run().context("stopped on an error")
}
