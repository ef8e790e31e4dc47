//! NIC backends: where the engine's frames meet a real (or simulated) Ethernet link.
//!
//! Every backend implements [`Backend`], a frame-burst interface shaped after the engine's own
//! calls: [`Backend::receive`] hands each waiting frame, in place, to a closure that feeds
//! `Stack::receive_frame`, and [`Backend::transmit`] lends free transmit buffers to a closure
//! that fills them with `Stack::poll_transmit`. Neither ever blocks; [`Backend::poll_fd`] is what
//! the event loop sleeps on.
//!
//! - [`tap`]: a TAP device the backend creates, with the kernel as the host on its far side
//!   (the default; later with IFF_VNET_HDR/TUNSETOFFLOAD for 64 KiB segments).
//! - [`af_packet`]: an existing interface (one end of a veth pair, a NIC) through PACKET_MMAP
//!   rings.
//! - [`pair()`]: two in-memory ends connected to each other, for tests of the event loop.
//! - [`shm`]: a shared-memory wire between two instances (two daemons, or two backends in one
//!   process): slot rings in a file both map, no kernel in the data path, for measuring the stack.
//! - `dpdk`: a DPDK port (a NIC bound to a user-space driver, or a vdev), behind the `dpdk`
//!   cargo feature; polled, with no descriptor to sleep on.
//!
//! The only `unsafe` code of the crate is in `sys`, which also keeps the raw kernel structures
//! away from the rest (and holds the shared-memory wire's mapping and ring protocol), and in
//! `dpdk::sys` for DPDK's.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::str::FromStr;

use fbsd_tcp::wire::{EthernetAddress, Ipv4Cidr};

pub mod af_packet;
#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(test)]
mod engine_tests;
mod framed;
mod offload;
pub mod pair;
pub mod shm;
#[allow(unsafe_code)]
mod sys;
pub mod tap;
#[cfg(test)]
mod testnet;

pub use af_packet::{AfPacketBackend, RingConfig};
pub use pair::{pair, PairBackend};
pub use shm::ShmBackend;
pub use tap::TapBackend;

/// Ethernet header length: a transmit buffer holds `mtu + ETHERNET_HEADER` bytes.
pub const ETHERNET_HEADER: usize = 14;

/// Smallest IP MTU a backend accepts (RFC 791's minimum datagram every host must take).
pub const MIN_MTU: usize = 68;

/// Largest IP MTU a backend accepts (jumbo frames; what the engine supports).
pub const MAX_MTU: usize = 9000;

/// A NIC backend: a link the engine sends and receives Ethernet frames on.
///
/// # Driving it
/// The event loop, once per turn:
/// 1. `receive(max, |frame| stack.receive_frame(now, frame))` — repeat while it returns `max`
///    if the loop wants to drain completely;
/// 2. `transmit(|buf| stack.poll_transmit(now, buf))`, then `flush()`;
/// 3. sleep on `poll_fd()` for readable (and writable while [`tx_blocked`](Self::tx_blocked)),
///    application requests and the engine's next deadline; on an error condition, call
///    [`handle_poll_error`](Self::handle_poll_error).
///
/// # Backpressure
/// A backend calls the transmit closure only when it holds a free buffer the device will accept,
/// so a frame the engine built is never thrown away for lack of room. When the device is full,
/// `transmit` returns early without calling the closure again and `tx_blocked()` is true: the
/// engine keeps its frames (TCP's data stays in its send buffers) until `poll_fd` turns writable
/// or the next turn calls `transmit` again.
///
/// # Errors
/// An `Err` means the device is gone or failed in a way a retry will not fix. Transient
/// conditions are not errors: no frames (`receive` returns 0), a full device (`transmit` stops
/// early), a link that is down (as on a NIC without carrier, frames are dropped and counted in
/// [`stats`](Self::stats), or wait in a transmit ring until the link is back).
pub trait Backend: Send + fmt::Debug {
    /// The interface name (the TAP's, or the bound interface's).
    fn name(&self) -> &str;

    /// The MAC address the engine uses on this link.
    fn mac(&self) -> EthernetAddress;

    /// The IP MTU: frames carry at most `mtu() + 14` bytes.
    fn mtu(&self) -> usize;

    /// True if the link is administratively up and has carrier. May cost a system call: ask it
    /// on a timer or after an error, not per frame.
    fn link_up(&self) -> bool;

    /// A descriptor that polls readable while received frames are waiting (and writable when
    /// the device has room again after `tx_blocked`), level-triggered; `None` for a backend the
    /// event loop must poll by calling `receive` (DPDK).
    fn poll_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Hands up to `max` received frames to `deliver`, each as a slice valid only during the
    /// call (it may point straight into a ring shared with the kernel). Never blocks; returns
    /// the number of frames delivered (0 when none are waiting).
    fn receive(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BackendError>;

    /// Lends free transmit buffers, each of exactly `mtu() + 14` bytes (or
    /// `segmentation_offload() + 14` when that is larger), to `build`, which writes
    /// one frame at the buffer's start and returns its length, or `None` when it has nothing
    /// more to send. Stops when `build` returns `None` or the device has no more room (see
    /// "Backpressure" above). Returns the number of frames accepted; some backends send them
    /// only at [`flush`](Self::flush).
    fn transmit(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError>;

    /// Pushes accepted frames out (one system call for the whole burst on ring backends) and
    /// retries a frame the device refused for lack of room.
    fn flush(&mut self) -> Result<(), BackendError>;

    /// True if the last `transmit` or `flush` stopped because the device was full.
    fn tx_blocked(&self) -> bool;

    /// The largest IPv4 packet carrying one TCP segment that this link takes whole, beyond the
    /// MTU (the engine's `StackConfig::segmentation_offload`); 0 when it takes none. Only a
    /// link whose receiver is a joyride-stackd offers it: the shared-memory wire carries such
    /// packets as they are, as veth carries the kernel's GSO packets.
    fn segmentation_offload(&self) -> usize {
        0
    }

    /// True if frames on this link need no checksums, either way: the link is memory shared
    /// with another joyride-stackd, which neither corrupts frames nor checks them (what a veth
    /// pair does for the kernel's TCP). The engine then neither fills nor verifies them.
    fn checksums_unneeded(&self) -> bool {
        false
    }

    /// Call when `poll_fd` reports an error condition (EPOLLERR, EPOLLHUP): level-triggered
    /// epoll reports it again on every wait until it is cleared (an AF_PACKET socket raises
    /// ENETDOWN each time its interface goes down). Clears it, and returns
    /// [`BackendError::DeviceGone`] if the device went away.
    fn handle_poll_error(&mut self) -> Result<(), BackendError>;

    /// Counters since the backend was opened.
    fn stats(&self) -> BackendStats;

    /// The event loop polls [`frames_waiting`](Self::frames_waiting) for a while instead of
    /// sleeping: a device whose peer rings only when asked to (the shm wire) stops asking, to
    /// spare the peer a system call per frame. The next `receive` that finds nothing asks again.
    fn busy_poll_begin(&mut self) {}

    /// Whether received frames wait, without a system call. A device with a poll descriptor
    /// may say false and let the event loop poll that; a device without one says true, to be
    /// asked with `receive`.
    fn frames_waiting(&self) -> bool {
        self.poll_fd().is_none()
    }
}

/// Counters of one backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Frames delivered to the engine.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames the kernel dropped because the receive ring was full. The kernel reports drops
    /// with the next frame it hands over, so the count can lag until traffic resumes.
    pub rx_dropped: u64,
    /// Frames too long for the MTU (or for the receive slot), dropped undelivered.
    pub rx_oversized: u64,
    /// Frames the device showed us that were not received from the link (our own and the
    /// kernel's transmissions looped back to a packet socket), or were empty.
    pub rx_ignored: u64,
    /// Received frames whose partial TCP/UDP checksum (left for offload hardware by the local
    /// kernel) the backend completed before delivery.
    pub rx_checksum_completed: u64,
    /// Frames accepted from the engine for transmission.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Accepted frames the device dropped (link down) or refused (malformed).
    pub tx_dropped: u64,
}

/// Which backend to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// A TAP device created by the backend (`tap`).
    Tap,
    /// An existing interface through PACKET_MMAP (`af-packet`).
    AfPacket,
    /// A DPDK port (`dpdk`), only in builds with the `dpdk` feature.
    Dpdk,
    /// A shared-memory wire to another instance (`shm`).
    Shm,
}

impl BackendKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tap => "tap",
            BackendKind::AfPacket => "af-packet",
            BackendKind::Dpdk => "dpdk",
            BackendKind::Shm => "shm",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = UnknownBackendKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tap" => Ok(BackendKind::Tap),
            "af-packet" | "af_packet" => Ok(BackendKind::AfPacket),
            "dpdk" => Ok(BackendKind::Dpdk),
            "shm" => Ok(BackendKind::Shm),
            _ => Err(UnknownBackendKind(s.to_owned())),
        }
    }
}

/// A backend name that is not one of `tap`, `af-packet`, `dpdk`, `shm`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?}: expected tap, af-packet, dpdk or shm")]
pub struct UnknownBackendKind(pub String);

/// What to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Which backend.
    pub kind: BackendKind,
    /// The interface: the TAP to create (a `name%d` template lets the kernel number it), the
    /// existing interface to bind, the DPDK port (its device name, such as a PCI address or
    /// `net_tap0`, or its port number), or the shared-memory wire (a name under /dev/shm or an
    /// absolute path; see [`shm`]).
    pub iface: String,
    /// IP MTU of the link.
    pub mtu: usize,
    /// The engine's MAC address. Default: a random locally administered one for a TAP or a
    /// shared-memory wire, the interface's own for af-packet.
    pub mac: Option<EthernetAddress>,
    /// The address the backend gives the kernel's side of a TAP (the engine's peer on the
    /// link). TAP only: an af-packet interface's addresses are the administrator's business.
    pub host_addr: Option<Ipv4Cidr>,
    /// DPDK's EAL arguments (`--dpdk-args`), split on whitespace: lcores, devices, memory, e.g.
    /// `-l 0 -a 0000:00:04.0` for a NIC or `-l 0 --no-huge --no-pci --vdev=net_tap0` for a test.
    /// DPDK only.
    pub dpdk_args: String,
    /// Use the link's segmentation offload where the backend has one (the shared-memory wire:
    /// TCP segments of up to 64 KiB cross it whole). Default on.
    pub segmentation_offload: bool,
}

impl BackendConfig {
    /// A configuration with a 1500-byte MTU, default MAC and no host address.
    pub fn new(kind: BackendKind, iface: impl Into<String>) -> BackendConfig {
        BackendConfig {
            kind,
            iface: iface.into(),
            mtu: 1500,
            mac: None,
            host_addr: None,
            dpdk_args: String::new(),
            segmentation_offload: true,
        }
    }

    /// Checks what does not need the kernel: the name, the MTU, the MAC.
    pub(crate) fn validate(&self) -> Result<(), OpenError> {
        let invalid = |reason: String| OpenError::InvalidConfig { kind: self.kind, reason };
        // DPDK names its ports itself (PCI addresses have colons), and a shared-memory wire is a
        // file path: each checks its own when opening.
        if !matches!(self.kind, BackendKind::Dpdk | BackendKind::Shm) {
            validate_iface_name(&self.iface)
                .map_err(|why| invalid(format!("interface name {:?} {why}", self.iface)))?;
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(invalid(format!("MTU {} is outside {MIN_MTU}..={MAX_MTU}", self.mtu)));
        }
        if let Some(mac) = self.mac {
            if !mac.is_unicast() || mac.0 == [0; 6] {
                return Err(invalid(format!("MAC {mac} is not a unicast address")));
            }
        }
        Ok(())
    }
}

/// The kernel's rules for interface names (`dev_valid_name`), checked up front so that a bad
/// name gets a clear message rather than an EINVAL.
fn validate_iface_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return Err("is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("is reserved");
    }
    if name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0) {
        return Err("contains '/', ':', NUL or whitespace");
    }
    Ok(())
}

/// Runs `f` on a thread of its own inside the network namespace `ns` (`/run/netns/NAME`,
/// `/proc/PID/ns/net`) and returns its result. A backend `f` opens belongs to that namespace
/// (its TAP is created there, its packet socket binds that namespace's interface) and works from
/// any thread afterwards. A panic in `f` is propagated.
pub fn in_net_namespace<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let namespace = std::fs::File::open(ns)?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || -> io::Result<T> {
            // The thread ends with `f`, so no other code ever runs in the namespace by accident.
            sys::enter_net_namespace(namespace.as_fd())?;
            Ok(f())
        });
        worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Opens the backend `config` names.
pub fn open(config: &BackendConfig) -> Result<Box<dyn Backend>, OpenError> {
    match config.kind {
        BackendKind::Tap => Ok(Box::new(TapBackend::open(config)?)),
        BackendKind::AfPacket => Ok(Box::new(AfPacketBackend::open(config)?)),
        BackendKind::Dpdk => open_dpdk(config),
        BackendKind::Shm => Ok(Box::new(ShmBackend::open(config)?)),
    }
}

#[cfg(not(feature = "dpdk"))]
fn open_dpdk(_config: &BackendConfig) -> Result<Box<dyn Backend>, OpenError> {
    Err(OpenError::DpdkNotBuilt)
}

#[cfg(feature = "dpdk")]
fn open_dpdk(config: &BackendConfig) -> Result<Box<dyn Backend>, OpenError> {
    Ok(Box::new(dpdk::DpdkBackend::open(config)?))
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The process lacks a capability the step needs.
    #[error("{kind} backend on {iface}: {step} needs {capability}: run as root")]
    NeedsCapability {
        /// Backend kind.
        kind: BackendKind,
        /// Interface.
        iface: String,
        /// What was being done.
        step: &'static str,
        /// `CAP_NET_ADMIN` or `CAP_NET_RAW`.
        capability: &'static str,
    },
    /// The TUN/TAP device node is missing.
    #[error("tap backend: cannot open {path} ({source}): load the tun module (modprobe tun)")]
    NoTunDevice {
        /// The device node.
        path: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The interface to create already exists.
    #[error(
        "{kind} backend: interface {iface} already exists; choose another name or delete it \
         (ip link del {iface})"
    )]
    InterfaceInUse {
        /// Backend kind.
        kind: BackendKind,
        /// Interface.
        iface: String,
    },
    /// The interface to bind does not exist.
    #[error("{kind} backend: no interface named {iface} (create it first, e.g. a veth pair)")]
    NoSuchInterface {
        /// Backend kind.
        kind: BackendKind,
        /// Interface.
        iface: String,
    },
    /// The configuration cannot work.
    #[error("{kind} backend: {reason}")]
    InvalidConfig {
        /// Backend kind.
        kind: BackendKind,
        /// What is wrong.
        reason: String,
    },
    /// The shared-memory wire's region (or a file in its place) cannot be used.
    #[error("shm backend: {path}: {reason}")]
    BadWire {
        /// The region or doorbell path.
        path: std::path::PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// The `dpdk` kind in a build without it.
    #[error("joyride-stackd was built without DPDK support; rebuild with --features dpdk")]
    DpdkNotBuilt,
    /// Any other failure of a system call while setting up.
    #[error("{kind} backend on {iface}: {step}: {source}")]
    System {
        /// Backend kind.
        kind: BackendKind,
        /// Interface.
        iface: String,
        /// What was being done.
        step: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl OpenError {
    /// A set-up step of `kind` on `iface` failed: EPERM or EACCES mean the process lacks
    /// `capability`, anything else is a system error.
    pub(crate) fn from_setup(
        kind: BackendKind,
        capability: &'static str,
        iface: &str,
        step: &'static str,
        source: io::Error,
    ) -> OpenError {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => {
                OpenError::NeedsCapability { kind, iface: iface.to_owned(), step, capability }
            }
            _ => OpenError::System { kind, iface: iface.to_owned(), step, source },
        }
    }
}

/// A failure of a running backend (see the trait's "Errors").
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The device went away (deleted interface, closed peer): reopen the backend.
    #[error("{iface}: the device is gone ({source}); the backend must be reopened")]
    DeviceGone {
        /// Interface.
        iface: String,
        /// The error that showed it.
        #[source]
        source: io::Error,
    },
    /// A system call failed unexpectedly.
    #[error("{iface}: {step}: {source}")]
    Io {
        /// Interface.
        iface: String,
        /// What was being done.
        step: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The transmit closure claimed more bytes than the buffer it was lent (a caller bug; the
    /// frame is dropped).
    #[error("{iface}: the frame builder returned {len} bytes for a {capacity}-byte buffer")]
    FrameTooLong {
        /// Interface.
        iface: String,
        /// Length returned.
        len: usize,
        /// Buffer length.
        capacity: usize,
    },
}

/// Checks that interface `name` still exists with index `ifindex` (a deleted and recreated
/// interface is a different device: a socket bound to the old one never sees its frames).
pub(crate) fn check_interface(
    control: BorrowedFd<'_>,
    name: &str,
    ifindex: i32,
) -> Result<(), BackendError> {
    let gone = |source| BackendError::DeviceGone { iface: name.to_owned(), source };
    let mut req = sys::IfReq::new(name).map_err(gone)?;
    match sys::ioctl_ifreq(control, sys::IfIoctl::GetIndex, &mut req) {
        Ok(()) if req.int() == ifindex => Ok(()),
        Ok(()) => Err(gone(io::Error::from_raw_os_error(libc::ENODEV))),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(gone(e)),
        Err(e) => Err(BackendError::Io {
            iface: name.to_owned(),
            step: "look up the interface (SIOCGIFINDEX)",
            source: e,
        }),
    }
}

/// Whether interface `name` is up with carrier, by an ioctl on `control`.
pub(crate) fn interface_running(control: BorrowedFd<'_>, name: &str) -> bool {
    let Ok(mut req) = sys::IfReq::new(name) else {
        return false;
    };
    let up = (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    sys::ioctl_ifreq(control, sys::IfIoctl::GetFlags, &mut req).is_ok() && req.flags() & up == up
}

/// A random locally administered unicast MAC (02:…), for a TAP's engine side.
pub(crate) fn random_local_mac() -> io::Result<EthernetAddress> {
    let mut bytes: [u8; 6] = random_bytes()?;
    // Locally administered (bit 1), unicast (bit 0 clear); 02 in the first byte keeps it
    // recognisable in captures.
    bytes[0] = 0x02;
    Ok(EthernetAddress(bytes))
}

/// `N` bytes from the kernel's random source.
pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    use std::io::Read;
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in [BackendKind::Tap, BackendKind::AfPacket, BackendKind::Dpdk, BackendKind::Shm] {
            assert_eq!(kind.as_str().parse::<BackendKind>(), Ok(kind));
        }
        assert_eq!("af_packet".parse::<BackendKind>(), Ok(BackendKind::AfPacket));
        assert_eq!(
            "xdp".parse::<BackendKind>().unwrap_err().to_string(),
            "unknown backend \"xdp\": expected tap, af-packet, dpdk or shm"
        );
    }

    #[cfg(not(feature = "dpdk"))]
    #[test]
    fn dpdk_without_the_feature_says_how_to_rebuild() {
        let err = open(&BackendConfig::new(BackendKind::Dpdk, "0000:00:04.0")).unwrap_err();
        assert!(matches!(err, OpenError::DpdkNotBuilt));
        assert_eq!(
            err.to_string(),
            "joyride-stackd was built without DPDK support; rebuild with --features dpdk"
        );
    }

    #[test]
    fn config_validation_refuses_bad_names_mtus_and_macs() {
        let ok = BackendConfig::new(BackendKind::Tap, "jr0");
        assert!(ok.validate().is_ok());
        for (name, why) in [
            ("", "is empty"),
            ("sixteen-chars-xx", "is longer than 15 bytes"),
            ("..", "is reserved"),
            ("a/b", "contains"),
            ("eth0:1", "contains"),
            ("a b", "contains"),
        ] {
            let config = BackendConfig { iface: name.to_owned(), ..ok.clone() };
            let err = config.validate().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("tap backend: interface name {name:?} {why}")),
                "{err}"
            );
        }
        let config = BackendConfig { mtu: 9001, ..ok.clone() };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "tap backend: MTU 9001 is outside 68..=9000"
        );
        let config = BackendConfig { mac: Some(EthernetAddress([0x01, 0, 0x5e, 0, 0, 1])), ..ok };
        assert!(config.validate().unwrap_err().to_string().contains("is not a unicast address"));
    }

    #[test]
    fn random_macs_are_local_unicast_and_differ() {
        let a = random_local_mac().unwrap();
        let b = random_local_mac().unwrap();
        assert_eq!(a.0[0], 0x02);
        assert!(a.is_unicast());
        assert_ne!(a, b);
    }
}
