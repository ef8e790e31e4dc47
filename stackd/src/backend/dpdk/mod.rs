//! The DPDK backend: a DPDK port — a NIC bound to a user-space driver in production, a virtual
//! device (net_tap, net_memif, net_af_packet) in tests — polled by the event loop.
//!
//! Opening initialises DPDK's EAL with `--dpdk-args` (split on whitespace, after an `argv[0]` of
//! `joyride-stackd`), so the same code drives `-a 0000:00:04.0` on a server and
//! `--no-huge --no-pci --vdev=net_tap0` on a laptop. It then picks the port the interface name
//! designates (a device name such as the PCI address or `net_tap0`, or a port number), gives it
//! one receive and one transmit queue fed by a packet pool of its own, sets the MTU (and the MAC,
//! if one is configured; otherwise the engine uses the port's), and starts it. Dropping the
//! backend stops and closes the port, frees the pool and cleans EAL up.
//!
//! # One per process
//! EAL initialises once per process and cannot initialise again after its cleanup, so a process
//! opens at most one DPDK backend in its lifetime: a second open is refused with a message that
//! says so. Two DPDK processes on one host need distinct `--file-prefix` values and disjoint
//! lcore lists (`-l`). EAL pins the thread that opens the backend to the first lcore of `-l`.
//!
//! # Virtual devices
//! With `--no-huge --no-pci` and a vdev, DPDK runs without hugepages or a NIC (the tests do):
//! - `--vdev=net_tap0,iface=NAME`: a TAP interface `NAME` (default `dtap0`) in the namespace of
//!   the opening thread, brought up by the port's start and removed by its close. net_tap gives
//!   it the port's own MAC, so the engine and the kernel share one on that link (neither
//!   minds); its address is the operator's to give (`ip addr add ... dev NAME`).
//! - `--vdev=net_memif0,role=server|client,socket=PATH,socket-abstract=no`: shared memory with
//!   another process. An abstract socket (memif's default) only reaches peers in the same
//!   network namespace; a path reaches any that see the file.
//!
//! # Polling
//! A DPDK port has no descriptor to sleep on: [`Backend::poll_fd`] is `None`, and the event loop
//! calls [`Backend::receive`] each turn.
//!
//! # Transmit and backpressure
//! `transmit` lends each frame a fresh buffer of the pool, exactly `mtu + 14` bytes long, and
//! stages the frame built in it; a full burst of staged frames goes to the device at once, the
//! rest at `flush`. Frames the device's ring has no room for stay staged, in order, for the next
//! `transmit` or `flush` (nothing the engine built is dropped for lack of room); while a full
//! burst is staged, or the pool has no free buffer (they are all in the rings), `transmit` stops
//! without asking for another frame and [`Backend::tx_blocked`] is true. A link that is down
//! keeps frames staged in the same way on drivers that refuse them then (net_tap).

use std::io;

use fbsd_tcp::wire::EthernetAddress;

use super::{Backend, BackendConfig, BackendError, BackendKind, BackendStats, OpenError};
use super::{ETHERNET_HEADER, MAX_MTU};

#[allow(unsafe_code)]
mod sys;

use sys::{Device, Eal, EalInitError, PortSpec, RX_BURST, TX_BURST};

/// `argv[0]` of EAL's command line, as it shows in DPDK's logs.
const PROGRAM: &str = "joyride-stackd";

/// Receive and transmit descriptors asked for; the driver fits them to its limits.
const RX_DESCRIPTORS: u16 = 1024;
const TX_DESCRIPTORS: u16 = 1024;

/// Smallest data room of a buffer (DPDK's default, RTE_MBUF_DEFAULT_DATAROOM): what NIC
/// drivers expect at the usual MTU.
const MIN_BUFFER: usize = 2048;

/// Bytes some NICs write past the frame into a receive buffer: a VLAN tag and the CRC.
const RX_SLACK: usize = 4 + 4;

/// A DPDK port and the engine's side of it.
#[derive(Debug)]
pub struct DpdkBackend {
    device: Device,
    name: String,
    driver: String,
    mac: EthernetAddress,
    mtu: usize,
    /// Where a received packet that came in several segments is put together.
    scratch: Box<[u8]>,
    tx_blocked: bool,
    stats: BackendStats,
}

impl DpdkBackend {
    /// Initialises EAL and starts the port `config.iface` (see the module doc).
    pub fn open(config: &BackendConfig) -> Result<DpdkBackend, OpenError> {
        config.validate()?;
        let invalid = |reason: String| OpenError::InvalidConfig { kind: BackendKind::Dpdk, reason };
        let system = |step: &'static str, source: io::Error| OpenError::System {
            kind: BackendKind::Dpdk,
            iface: config.iface.clone(),
            step,
            source,
        };
        if config.host_addr.is_some() {
            // Not even net_tap's kernel side: its name is in the EAL arguments, not ours.
            return Err(invalid(
                "host_addr is for the tap backend; a DPDK port's peer (net_tap's kernel side \
                 included) gets its address from whoever runs it"
                    .to_owned(),
            ));
        }
        let args = eal_args(&config.dpdk_args).map_err(invalid)?;
        let eal = Eal::init(&args).map_err(|e| eal_error(config, e))?;

        let port = select_port(&eal, &config.iface).map_err(invalid)?;
        let name = eal.port_name(port).map_err(|e| system("name the port", e.into()))?;
        let info = eal.port_info(port).map_err(|e| system("query the port", e.into()))?;
        let mtu = u16::try_from(config.mtu).unwrap_or(u16::MAX);
        if !(info.min_mtu..=info.largest_mtu()).contains(&mtu) {
            return Err(invalid(format!(
                "MTU {} is outside the {}..={} that port {port} ({name}, driver {}) takes",
                config.mtu,
                info.min_mtu,
                info.largest_mtu(),
                info.driver
            )));
        }
        let frame_len = config.mtu + ETHERNET_HEADER;
        let spec = PortSpec {
            port,
            mtu,
            mac: config.mac.map(|mac| mac.0),
            rx_descriptors: RX_DESCRIPTORS,
            tx_descriptors: TX_DESCRIPTORS,
            frame_len,
            buffer_len: buffer_len(config.mtu),
        };
        let device = Device::open(eal, &spec).map_err(|e| system(e.step, e.error.into()))?;

        let mac =
            device.mac().map_err(|e| system("read the MAC (rte_eth_macaddr_get)", e.into()))?;
        let mac = EthernetAddress(mac);
        let port_mtu = device.mtu().map_err(|e| system("read the MTU", e.into()))?;
        if port_mtu != mtu {
            return Err(invalid(format!("port {port} ({name}) kept MTU {port_mtu}, not {mtu}")));
        }
        tracing::info!(port, name = %name, driver = %info.driver, %mac, mtu = config.mtu,
            built_with = concat!("DPDK ", env!("JOYRIDE_DPDK_VERSION")), "DPDK backend up");
        Ok(DpdkBackend {
            device,
            name,
            driver: info.driver,
            mac,
            mtu: config.mtu,
            scratch: vec![0; frame_len].into_boxed_slice(),
            tx_blocked: false,
            stats: BackendStats::default(),
        })
    }

    /// The DPDK port number.
    pub fn port(&self) -> u16 {
        self.device.port()
    }

    /// The name of the port's poll-mode driver (`net_tap`, `net_memif`, `net_ice`...).
    pub fn driver(&self) -> &str {
        &self.driver
    }
}

/// EAL's command line: `argv[0]`, then `dpdk_args` split on whitespace.
fn eal_args(dpdk_args: &str) -> Result<Vec<String>, String> {
    let mut args = vec![PROGRAM.to_owned()];
    for arg in dpdk_args.split_whitespace() {
        // EAL prints its usage and exits the process on these.
        if arg == "-h" || arg == "--help" {
            return Err(format!(
                "{arg} in the DPDK arguments would make EAL exit the process; see \
                 https://doc.dpdk.org/guides/linux_gsg/linux_eal_parameters.html"
            ));
        }
        args.push(arg.to_owned());
    }
    Ok(args)
}

/// What an [`Eal::init`] failure means to the operator.
fn eal_error(config: &BackendConfig, e: EalInitError) -> OpenError {
    let system = |step: &'static str, source: io::Error| OpenError::System {
        kind: BackendKind::Dpdk,
        iface: config.iface.clone(),
        step,
        source,
    };
    match e {
        EalInitError::Nul(arg) => OpenError::InvalidConfig {
            kind: BackendKind::Dpdk,
            reason: format!("DPDK argument {arg:?} contains a NUL byte"),
        },
        EalInitError::InUse => system(
            "initialise DPDK's EAL",
            io::Error::other(
                "DPDK's EAL is already initialised by another DPDK backend of this \
                 process; EAL initialises once per process, so a process drives one DPDK \
                 backend",
            ),
        ),
        EalInitError::FailedBefore => system(
            "initialise DPDK's EAL",
            io::Error::other(
                "DPDK's EAL failed to initialise earlier in this process and cannot be \
                 retried: restart the process",
            ),
        ),
        EalInitError::CleanedUp => system(
            "initialise DPDK's EAL",
            io::Error::other(
                "DPDK's EAL was initialised and cleaned up earlier in this process and \
                 cannot initialise again: restart the process to reopen a DPDK backend",
            ),
        ),
        EalInitError::Failed(e) => system(
            "initialise DPDK's EAL (rte_eal_init)",
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "{e}; DPDK's log above says why (the EAL arguments were {:?})",
                    config.dpdk_args
                ),
            ),
        ),
    }
}

/// The port `iface` designates: a port number, or a device name DPDK knows.
fn select_port(eal: &Eal, iface: &str) -> Result<u16, String> {
    let found = match iface.parse::<u16>() {
        Ok(port) => eal.is_valid_port(port).then_some(port),
        Err(_) => eal.port_by_name(iface),
    };
    if let Some(port) = found {
        return Ok(port);
    }
    let ports = eal.ports();
    if ports.is_empty() {
        return Err(format!(
            "no DPDK port {iface:?}: DPDK found no port at all; name a device in --dpdk-args \
             (-a with the PCI address of a NIC bound to vfio-pci, or --vdev=...)"
        ));
    }
    let list: Vec<String> = ports.iter().map(|(port, name)| format!("{port} ({name})")).collect();
    Err(format!("no DPDK port {iface:?}; the ports are {}", list.join(", ")))
}

/// Data room of a pool buffer for `mtu`: a whole frame and what a NIC may add to it, in
/// kibibytes, never less than DPDK's default.
fn buffer_len(mtu: usize) -> u16 {
    let frame = mtu.min(MAX_MTU) + ETHERNET_HEADER + RX_SLACK;
    let len = frame.div_ceil(1024) * 1024;
    u16::try_from(len.max(MIN_BUFFER)).unwrap_or(u16::MAX)
}

impl Backend for DpdkBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> EthernetAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn link_up(&self) -> bool {
        self.device.link_up().unwrap_or(false)
    }

    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    fn receive(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BackendError> {
        let DpdkBackend { device, scratch, stats, .. } = self;
        let mut delivered = 0;
        let mut taken = 0;
        while taken < max {
            let want = (max - taken).min(RX_BURST);
            let got = device.receive(want, |packet| {
                let len = packet.len();
                if len == 0 {
                    stats.rx_ignored += 1;
                    return;
                }
                let frame = if len > scratch.len() { None } else { packet.bytes(scratch) };
                match frame {
                    Some(frame) => {
                        deliver(frame);
                        stats.rx_frames += 1;
                        stats.rx_bytes += len as u64;
                        delivered += 1;
                    }
                    None => stats.rx_oversized += 1,
                }
            });
            taken += got;
            if got < want {
                break;
            }
        }
        Ok(delivered)
    }

    fn transmit(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError> {
        let mut accepted = 0;
        self.tx_blocked = false;
        loop {
            if self.device.staged() >= TX_BURST {
                self.device.transmit_staged();
                if self.device.staged() >= TX_BURST {
                    self.tx_blocked = true;
                    return Ok(accepted);
                }
            }
            let Some(mut buffer) = self.device.tx_buffer() else {
                // Every buffer is in a ring or staged: the device is behind.
                self.tx_blocked = true;
                return Ok(accepted);
            };
            let capacity = buffer.data().len();
            let Some(len) = build(buffer.data()) else {
                return Ok(accepted);
            };
            if len > capacity {
                return Err(BackendError::FrameTooLong { iface: self.name.clone(), len, capacity });
            }
            if len == 0 {
                // A NIC given an empty descriptor may hang; nothing to send anyway.
                self.stats.tx_dropped += 1;
                continue;
            }
            buffer.stage(len);
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += len as u64;
            accepted += 1;
        }
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        self.device.transmit_staged();
        self.tx_blocked = self.device.staged() > 0;
        Ok(())
    }

    fn tx_blocked(&self) -> bool {
        self.tx_blocked
    }

    fn handle_poll_error(&mut self) -> Result<(), BackendError> {
        // There is no descriptor to report errors; a port that vanished (hot unplug) is gone.
        if self.device.is_present() {
            Ok(())
        } else {
            Err(BackendError::DeviceGone {
                iface: self.name.clone(),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })
        }
    }

    fn stats(&self) -> BackendStats {
        let mut stats = self.stats;
        if let Ok(port) = self.device.stats() {
            stats.rx_dropped = port.imissed + port.rx_nombuf;
        }
        stats
    }
}

#[cfg(test)]
mod tests;
