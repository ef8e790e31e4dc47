//! The daemon's settings: defaults, a TOML file (`--config`), and command-line flags, in that
//! order of precedence (a flag beats the file, the file beats the default).
//!
//! ```toml
//! # /etc/joyride/stackd.toml
//! backend = "tap"            # tap | af-packet | dpdk | shm
//! iface = "jr0"
//! addr = "10.77.0.2/24"      # the stack's address and network
//! host-addr = "10.77.0.1/24" # given to the kernel's side of the TAP
//! gateway = "10.77.0.1"      # default: host-addr's address
//! mtu = 1500
//! control = "/run/joyride/stackd.sock"
//! pcap = "/var/tmp/stackd.pcap"
//! dpdk-args = "-l 0 --no-huge --no-pci --vdev=net_tap0"
//! ring-size = 1048576        # bytes per direction of a local connection's shared-memory rings
//! segmentation-offload = "on" # TCP segments of up to 64 KiB on links that take them (shm)
//! busy-poll = 100            # µs to poll for the other side's turn of a request/response
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fbsd_tcp::wire::Ipv4Cidr;
use serde::Deserialize;

use crate::backend::BackendKind;

/// Busy poll for the other side's turn unless told otherwise (µs).
pub const DEFAULT_BUSY_POLL_US: u64 = 100;
/// A longer poll would be a core given away, not a wake-up saved (and programs are advised
/// no longer spins than the ring allows).
const MAX_BUSY_POLL_US: u64 = crate::ring::MAX_ANSWER_SPIN.as_micros() as u64;

/// Where the control socket lives unless told otherwise.
pub const DEFAULT_CONTROL_PATH: &str = "/run/joyride/stackd.sock";

/// Settings as a file or the command line gives them: every field optional, strings not yet
/// checked. The same struct is the TOML schema (kebab-case keys) and the flag set, so a setting
/// added here exists in both at once.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// NIC backend: tap (creates the interface), af-packet (binds an existing one), dpdk, shm
    /// (a shared-memory wire to a second joyride-stackd started with the same --iface).
    #[arg(long, value_name = "tap|af-packet|dpdk|shm")]
    pub backend: Option<String>,
    /// The interface to create (tap) or bind (af-packet), the DPDK port, or the shm wire (a
    /// name under /dev/shm, or an absolute path).
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    /// The stack's address and network.
    #[arg(long, value_name = "IP/PREFIX")]
    pub addr: Option<String>,
    /// The address given to the kernel's side of the TAP.
    #[arg(long, value_name = "IP/PREFIX")]
    pub host_addr: Option<String>,
    /// Next hop for destinations outside the network (default: host-addr's address).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// IP MTU of the link.
    #[arg(long, value_name = "N")]
    pub mtu: Option<usize>,
    /// Control socket path.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Write every frame in and out to this pcap file (tcpdump -r reads it).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// DPDK EAL arguments, e.g. "-l 0 --no-huge --no-pci --vdev=net_tap0".
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub dpdk_args: Option<String>,
    /// Data capacity of each shared-memory ring of a local connection, in bytes: a power of
    /// two from 8 KiB to 1 MiB (default 1 MiB).
    #[arg(long, value_name = "BYTES")]
    pub ring_size: Option<usize>,
    /// "on" (default) or "off": send TCP segments of up to 64 KiB whole on a link that takes
    /// them (the shm wire), as the kernel does over veth.
    #[arg(long, value_name = "on|off")]
    pub segmentation_offload: Option<String>,
    /// Microseconds to poll instead of sleeping when a fast-path connection's turn passes to
    /// the other side (a request sent, an answer delivered), since that side usually answers
    /// within a round trip; the waiting program polls its ring as long. 0 turns it off
    /// (default 100, at most 10000).
    #[arg(long, value_name = "USEC")]
    pub busy_poll: Option<u64>,
}

impl Settings {
    /// Fields set in `overrides` replace ours.
    pub fn merge(&mut self, overrides: Settings) {
        macro_rules! take {
            ($($field:ident),*) => { $(if overrides.$field.is_some() { self.$field = overrides.$field; })* };
        }
        take!(
            backend,
            iface,
            addr,
            host_addr,
            gateway,
            mtu,
            control,
            pcap,
            dpdk_args,
            ring_size,
            segmentation_offload,
            busy_poll
        );
    }

    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })
    }
}

/// The daemon's checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Which NIC backend.
    pub backend: BackendKind,
    /// Its interface.
    pub iface: String,
    /// The stack's address and network.
    pub addr: Ipv4Cidr,
    /// The kernel side's address (TAP only).
    pub host_addr: Option<Ipv4Cidr>,
    /// Next hop for destinations off the network.
    pub gateway: Option<Ipv4Addr>,
    /// IP MTU.
    pub mtu: usize,
    /// Control socket path.
    pub control: PathBuf,
    /// Capture file.
    pub pcap: Option<PathBuf>,
    /// DPDK EAL arguments.
    pub dpdk_args: String,
    /// Data capacity of each ring of a local connection.
    pub ring_size: usize,
    /// Use segmentation offload where the link has it.
    pub segmentation_offload: bool,
    /// How long to poll for the other side's turn of a request/response (zero: never).
    pub busy_poll: Duration,
}

impl Config {
    /// The configuration from an optional file and command-line settings (which win).
    pub fn load(file: Option<&Path>, command_line: Settings) -> Result<Config, ConfigError> {
        let mut settings = match file {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        settings.merge(command_line);
        Config::from_settings(settings)
    }

    /// Checks settings and fills in the defaults: backend tap, iface jr0, addr 10.77.0.2/24,
    /// host-addr 10.77.0.1/24 (tap only), gateway = host-addr's address, MTU 1500, control
    /// /run/joyride/stackd.sock.
    pub fn from_settings(settings: Settings) -> Result<Config, ConfigError> {
        let invalid = |field: &'static str, value: &str, reason: &str| ConfigError::Invalid {
            field,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let backend = match settings.backend.as_deref() {
            None => BackendKind::Tap,
            Some(name) => name
                .parse()
                .map_err(|_| invalid("backend", name, "expected tap, af-packet, dpdk or shm"))?,
        };
        let cidr = |field: &'static str, value: &str| -> Result<Ipv4Cidr, ConfigError> {
            value.parse().map_err(|_| {
                invalid(field, value, "expected an IPv4 address with prefix, like 10.77.0.2/24")
            })
        };
        let addr = cidr("addr", settings.addr.as_deref().unwrap_or("10.77.0.2/24"))?;
        let host_addr = match (settings.host_addr.as_deref(), backend) {
            (Some(value), _) => Some(cidr("host-addr", value)?),
            (None, BackendKind::Tap) => Some(cidr("host-addr", "10.77.0.1/24")?),
            (None, _) => None,
        };
        if let Some(host) = host_addr {
            if host.addr == addr.addr {
                return Err(invalid(
                    "host-addr",
                    &host.addr.to_string(),
                    "is the stack's own address (addr)",
                ));
            }
            if !addr.contains(host.addr) {
                return Err(invalid(
                    "host-addr",
                    &host.addr.to_string(),
                    "is outside the stack's network (addr)",
                ));
            }
        }
        let gateway = match settings.gateway.as_deref() {
            Some(value) => {
                let gateway: Ipv4Addr = value
                    .parse()
                    .map_err(|_| invalid("gateway", value, "expected an IPv4 address"))?;
                if !addr.contains(gateway) || gateway == addr.addr {
                    return Err(invalid(
                        "gateway",
                        value,
                        "must be another host on the stack's network",
                    ));
                }
                Some(gateway)
            }
            None => host_addr.map(|host| host.addr),
        };
        let ring_size = settings.ring_size.unwrap_or(crate::ring::MAX_CAPACITY);
        if !ring_size.is_power_of_two()
            || !(crate::ring::MIN_CAPACITY..=crate::ring::MAX_CAPACITY).contains(&ring_size)
        {
            return Err(invalid(
                "ring-size",
                &ring_size.to_string(),
                "must be a power of two from 8192 to 1048576",
            ));
        }
        let segmentation_offload = match settings.segmentation_offload.as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(invalid("segmentation-offload", other, "expected on or off"))
            }
        };
        let busy_poll = settings.busy_poll.unwrap_or(DEFAULT_BUSY_POLL_US);
        if busy_poll > MAX_BUSY_POLL_US {
            return Err(invalid(
                "busy-poll",
                &busy_poll.to_string(),
                "must be at most 10000 (µs); 0 turns polling off",
            ));
        }
        let mtu = settings.mtu.unwrap_or(1500);
        if !(576..=9000).contains(&mtu) {
            return Err(invalid("mtu", &mtu.to_string(), "must be between 576 and 9000"));
        }
        Ok(Config {
            backend,
            iface: match (settings.iface, backend) {
                (Some(iface), _) => iface,
                (None, BackendKind::Tap) => "jr0".to_owned(),
                // The TAP's name is ours to pick; an interface or a port to bind is not.
                (None, _) => {
                    return Err(ConfigError::Invalid {
                        field: "iface",
                        value: String::new(),
                        reason: format!(
                        "the {backend} backend needs --iface: the interface, DPDK port or shm wire to use"
                    ),
                    })
                }
            },
            addr,
            host_addr,
            gateway,
            mtu,
            control: settings.control.unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_PATH)),
            pcap: settings.pcap,
            dpdk_args: settings.dpdk_args.unwrap_or_default(),
            ring_size,
            segmentation_offload,
            busy_poll: Duration::from_micros(busy_poll),
        })
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("{field} = {value:?}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What was given.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::from_settings(Settings::default()).unwrap();
        assert_eq!(config.backend, BackendKind::Tap);
        assert_eq!(config.iface, "jr0");
        assert_eq!(config.addr, "10.77.0.2/24".parse().unwrap());
        assert_eq!(config.host_addr, Some("10.77.0.1/24".parse().unwrap()));
        assert_eq!(config.gateway, Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(config.mtu, 1500);
        assert_eq!(config.control, PathBuf::from("/run/joyride/stackd.sock"));
        assert_eq!(config.pcap, None);
        assert_eq!(config.ring_size, 1 << 20);
        assert!(config.segmentation_offload);
        let off = Settings { segmentation_offload: Some("off".into()), ..Default::default() };
        assert!(!Config::from_settings(off).unwrap().segmentation_offload);
        assert_eq!(config.busy_poll, Duration::from_micros(100));
        let off = Settings { busy_poll: Some(0), ..Default::default() };
        assert_eq!(Config::from_settings(off).unwrap().busy_poll, Duration::ZERO);
        let file: Settings = toml::from_str("busy-poll = 250").unwrap();
        assert_eq!(Config::from_settings(file).unwrap().busy_poll, Duration::from_micros(250));
    }

    #[test]
    fn the_command_line_beats_the_file() {
        let dir = std::env::temp_dir().join(format!("stackd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("stackd.toml");
        std::fs::write(
            &file,
            "backend = \"af-packet\"\niface = \"veth0\"\nmtu = 9000\naddr = \"192.168.5.2/24\"\n",
        )
        .unwrap();
        let cli = Settings { mtu: Some(1400), ..Settings::default() };
        let config = Config::load(Some(&file), cli).unwrap();
        assert_eq!(
            (config.backend, config.iface.as_str(), config.mtu),
            (BackendKind::AfPacket, "veth0", 1400)
        );
        assert_eq!(config.host_addr, None, "only a TAP gets a default host address");
        assert_eq!(config.gateway, None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_files_and_values_say_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("stackd-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("stackd.toml");
        std::fs::write(&file, "mtu = 1500\nbogus = 1\n").unwrap();
        let error = Config::load(Some(&file), Settings::default()).unwrap_err().to_string();
        assert!(
            error.contains("stackd.toml") && error.contains("bogus") && error.contains("line 2"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();

        let missing =
            Config::load(Some(Path::new("/nonexistent/stackd.toml")), Settings::default());
        assert!(missing
            .unwrap_err()
            .to_string()
            .starts_with("cannot read config file /nonexistent/stackd.toml"));

        let cases = [
            (
                Settings { backend: Some("xdp".into()), ..Default::default() },
                "backend = \"xdp\": expected tap, af-packet, dpdk or shm",
            ),
            (
                Settings { addr: Some("10.77.0.2".into()), ..Default::default() },
                "addr = \"10.77.0.2\": expected an IPv4 address with prefix, like 10.77.0.2/24",
            ),
            (
                Settings { host_addr: Some("10.77.0.2/24".into()), ..Default::default() },
                "host-addr = \"10.77.0.2\": is the stack's own address (addr)",
            ),
            (
                Settings { host_addr: Some("10.78.0.1/24".into()), ..Default::default() },
                "host-addr = \"10.78.0.1\": is outside the stack's network (addr)",
            ),
            (
                Settings { gateway: Some("10.9.9.9".into()), ..Default::default() },
                "gateway = \"10.9.9.9\": must be another host on the stack's network",
            ),
            (
                Settings { ring_size: Some(12288), ..Default::default() },
                "ring-size = \"12288\": must be a power of two from 8192 to 1048576",
            ),
            (
                Settings { ring_size: Some(2 << 20), ..Default::default() },
                "ring-size = \"2097152\": must be a power of two from 8192 to 1048576",
            ),
            (
                Settings { mtu: Some(100), ..Default::default() },
                "mtu = \"100\": must be between 576 and 9000",
            ),
            (
                Settings { segmentation_offload: Some("yes".into()), ..Default::default() },
                "segmentation-offload = \"yes\": expected on or off",
            ),
            (
                Settings { busy_poll: Some(10_001), ..Default::default() },
                "busy-poll = \"10001\": must be at most 10000 (µs); 0 turns polling off",
            ),
            (
                Settings { backend: Some("af-packet".into()), ..Default::default() },
                "iface = \"\": the af-packet backend needs --iface: the interface, DPDK port or shm wire to use",
            ),
        ];
        for (settings, expected) in cases {
            assert_eq!(Config::from_settings(settings).unwrap_err().to_string(), expected);
        }
    }
}
