//! The TAP backend: a TAP device this process creates, with the kernel as the host on the far
//! side of the link.
//!
//! Opening creates the device (`/dev/net/tun`, TUNSETIFF with IFF_TAP | IFF_NO_PI, and
//! IFF_TUN_EXCL so that an existing interface of that name is refused rather than silently
//! attached to), sets its MTU, gives the kernel's side `host_addr` and brings it up — all with
//! ioctls on an AF_INET datagram socket, no `ip` command. The engine gets its own MAC, distinct
//! from the TAP's kernel-side MAC. The device is not persistent: closing its descriptor (dropping
//! the backend) deletes it, addresses and routes included.
//!
//! A TAP belongs to the network namespace of the thread that opened it; to put one in another
//! namespace, open it from a thread that entered that namespace (setns) — the descriptor then
//! works from any thread.
//!
//! Frames move with one read(2) or write(2) each, on a non-blocking descriptor. Without
//! IFF_VNET_HDR the kernel completes checksums and segments everything to the MTU before handing
//! it over, so frames arrive as on a plain wire. The later optimisation — IFF_VNET_HDR plus
//! TUNSETOFFLOAD, which exchanges 64 KiB segments with a `virtio_net_hdr` in front — changes only
//! what one read or write carries: it fits behind the same [`Backend`] calls, with the receive
//! path splitting (or the engine accepting) large segments.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use fbsd_tcp::wire::EthernetAddress;

use super::framed::{Framed, Verdict};
use super::sys::{self, IfIoctl, IfReq};
use super::{
    check_interface, interface_running, random_local_mac, Backend, BackendConfig, BackendError,
    BackendKind, BackendStats, OpenError,
};

/// The TUN/TAP clone device.
const TUN_DEVICE: &str = "/dev/net/tun";

/// A TAP device and the engine's side of it.
#[derive(Debug)]
pub struct TapBackend {
    framed: Framed<File>,
    /// An AF_INET datagram socket in the TAP's namespace, for interface ioctls.
    control: OwnedFd,
    ifindex: i32,
    mac: EthernetAddress,
    host_mac: EthernetAddress,
    mtu: usize,
}

impl TapBackend {
    /// Creates and configures the TAP `config.iface` (see the module doc).
    pub fn open(config: &BackendConfig) -> Result<TapBackend, OpenError> {
        config.validate()?;
        let iface = config.iface.as_str();
        let fail = |step: &'static str| move |source: io::Error| setup_error(iface, step, source);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(TUN_DEVICE)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => {
                    OpenError::NoTunDevice { path: TUN_DEVICE, source }
                }
                _ => setup_error(iface, "open /dev/net/tun", source),
            })?;

        let mut req = IfReq::new(iface).map_err(fail("name the TAP"))?;
        // IFF_TUN_EXCL (0x8000) is the sign bit of the C `short`.
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL) as u16 as i16;
        req.set_flags(flags);
        sys::ioctl_ifreq(file.as_fd(), IfIoctl::TunSetIff, &mut req).map_err(|source| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                OpenError::InterfaceInUse { kind: BackendKind::Tap, iface: iface.to_owned() }
            } else {
                setup_error(iface, "create the TAP (TUNSETIFF)", source)
            }
        })?;
        // The kernel resolved any `%d` template.
        let name = req.name();
        let fail = |step: &'static str| {
            let name = name.clone();
            move |source: io::Error| setup_error(&name, step, source)
        };

        let control = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .map_err(fail("open a control socket"))?;
        let ioctl = |op: IfIoctl, req: &mut IfReq| sys::ioctl_ifreq(control.as_fd(), op, req);
        let fresh = || IfReq::new(&name);

        let mut req = fresh().map_err(fail("name the TAP"))?;
        req.set_int(config.mtu as i32);
        ioctl(IfIoctl::SetMtu, &mut req).map_err(fail("set the MTU (SIOCSIFMTU)"))?;

        if let Some(host) = config.host_addr {
            let mut req = fresh().map_err(fail("name the TAP"))?;
            req.set_ipv4(host.addr);
            ioctl(IfIoctl::SetAddr, &mut req)
                .map_err(fail("give the kernel side its address (SIOCSIFADDR)"))?;
            let mut req = fresh().map_err(fail("name the TAP"))?;
            req.set_ipv4(host.netmask());
            ioctl(IfIoctl::SetNetmask, &mut req)
                .map_err(fail("set the kernel side's netmask (SIOCSIFNETMASK)"))?;
        }

        let mut req = fresh().map_err(fail("name the TAP"))?;
        ioctl(IfIoctl::GetIndex, &mut req).map_err(fail("read its index (SIOCGIFINDEX)"))?;
        let ifindex = req.int();

        let mut req = fresh().map_err(fail("name the TAP"))?;
        ioctl(IfIoctl::GetHwAddr, &mut req).map_err(fail("read its MAC (SIOCGIFHWADDR)"))?;
        let host_mac = EthernetAddress(req.hw_addr().1);

        let mut req = fresh().map_err(fail("name the TAP"))?;
        ioctl(IfIoctl::GetFlags, &mut req).map_err(fail("read its flags (SIOCGIFFLAGS)"))?;
        req.set_flags(req.flags() | libc::IFF_UP as i16);
        ioctl(IfIoctl::SetFlags, &mut req).map_err(fail("bring it up (SIOCSIFFLAGS)"))?;

        let mac = match config.mac {
            Some(mac) if mac == host_mac => {
                return Err(OpenError::InvalidConfig {
                    kind: BackendKind::Tap,
                    reason: format!("MAC {mac} is the kernel side's own; the engine needs another"),
                })
            }
            Some(mac) => mac,
            None => loop {
                let mac = random_local_mac().map_err(fail("pick a MAC (/dev/urandom)"))?;
                if mac != host_mac {
                    break mac;
                }
            },
        };

        tracing::info!(iface = %name, mtu = config.mtu, %mac, kernel_mac = %host_mac,
            host_addr = ?config.host_addr, "TAP backend up");
        Ok(TapBackend {
            framed: Framed::new(file, name, config.mtu, classify),
            control,
            ifindex,
            mac,
            host_mac,
            mtu: config.mtu,
        })
    }

    /// The MAC address of the kernel's side of the TAP.
    pub fn host_mac(&self) -> EthernetAddress {
        self.host_mac
    }
}

/// An open-time failure: EPERM / EACCES mean a missing CAP_NET_ADMIN.
fn setup_error(iface: &str, step: &'static str, source: io::Error) -> OpenError {
    OpenError::from_setup(BackendKind::Tap, "CAP_NET_ADMIN", iface, step, source)
}

/// What TAP read and write errors mean.
fn classify(e: &io::Error) -> Verdict {
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS | libc::ENOMEM) => Verdict::Retry,
        // EIO: the interface is down; EINVAL: a frame shorter than an Ethernet header.
        Some(libc::EIO | libc::EINVAL) => Verdict::Drop,
        // EBADFD: the descriptor lost its device.
        Some(libc::EBADFD | libc::ENODEV | libc::ENXIO) => Verdict::Gone,
        _ => Verdict::Fail,
    }
}

impl Backend for TapBackend {
    fn name(&self) -> &str {
        &self.framed.name
    }
    fn mac(&self) -> EthernetAddress {
        self.mac
    }
    fn mtu(&self) -> usize {
        self.mtu
    }
    fn link_up(&self) -> bool {
        interface_running(self.control.as_fd(), &self.framed.name)
    }
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.framed.io.as_fd())
    }
    fn receive(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BackendError> {
        self.framed.receive(max, deliver)
    }
    fn transmit(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError> {
        self.framed.transmit(build)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        self.framed.flush()
    }
    fn tx_blocked(&self) -> bool {
        self.framed.tx_blocked()
    }
    fn handle_poll_error(&mut self) -> Result<(), BackendError> {
        // A TAP descriptor only polls an error once its device is gone.
        check_interface(self.control.as_fd(), &self.framed.name, self.ifindex)
    }
    fn stats(&self) -> BackendStats {
        self.framed.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::testnet::{kernel_cidr, privileged, send, Engine, NetNs, ENGINE_IP};

    fn config(name: &str) -> BackendConfig {
        BackendConfig {
            host_addr: Some(kernel_cidr()),
            ..BackendConfig::new(BackendKind::Tap, name)
        }
    }

    #[test]
    fn arp_and_ping_the_kernel_through_a_tap_which_vanishes_on_drop() {
        if !privileged("tap exchange") {
            return;
        }
        let ns = NetNs::new("tap");
        let mut tap = ns.run(|| TapBackend::open(&config("jrtap0"))).unwrap();
        assert_eq!((tap.name(), tap.mtu()), ("jrtap0", 1500));
        assert!(tap.link_up());
        assert_eq!(tap.mac().0[0], 0x02, "a locally administered MAC");
        assert_ne!(tap.mac(), tap.host_mac());
        let (_, addrs) = ns.ip_output("-o -4 addr show dev jrtap0");
        assert!(addrs.contains("inet 10.77.0.1/24"), "{addrs}");
        let (_, link) = ns.ip_output("-o link show dev jrtap0");
        assert!(link.contains("mtu 1500") && link.contains(",UP"), "{link}");
        assert!(link.contains(&tap.host_mac().to_string()), "{link}");

        let engine = Engine { mac: tap.mac(), ip: ENGINE_IP };
        let kernel_mac = engine.arp_then_ping(&mut tap, kernel_cidr().addr);
        assert_eq!(kernel_mac, tap.host_mac());
        let stats = tap.stats();
        assert_eq!(stats.tx_frames, 2);
        assert_eq!(stats.tx_bytes, 42 + 98);
        assert!(stats.rx_frames >= 2, "{stats:?}");
        assert_eq!(stats.tx_dropped, 0);

        drop(tap);
        let (exists, _) = ns.ip_output("link show dev jrtap0");
        assert!(!exists, "closing a non-persistent TAP deletes it");
    }

    #[test]
    fn an_existing_interface_name_is_refused() {
        if !privileged("tap name in use") {
            return;
        }
        let ns = NetNs::new("tapbusy");
        let _first = ns.run(|| TapBackend::open(&config("jrtap0"))).unwrap();
        let err = ns.run(|| TapBackend::open(&config("jrtap0"))).unwrap_err();
        assert!(matches!(err, OpenError::InterfaceInUse { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "tap backend: interface jrtap0 already exists; choose another name or delete it \
             (ip link del jrtap0)"
        );
        // Not only TAPs: any interface of that name.
        ns.ip("link add jrveth0 type veth peer name jrveth1");
        let err = ns.run(|| TapBackend::open(&config("jrveth0"))).unwrap_err();
        assert!(matches!(err, OpenError::InterfaceInUse { .. }), "{err:?}");
    }

    #[test]
    fn name_templates_and_jumbo_mtus() {
        if !privileged("tap template") {
            return;
        }
        let ns = NetNs::new("tapjumbo");
        let config = BackendConfig { mtu: 9000, host_addr: None, ..config("jrt%d") };
        let mut tap = ns.run(|| TapBackend::open(&config)).unwrap();
        assert_eq!(tap.name(), "jrt0");
        let (_, link) = ns.ip_output("-o link show dev jrt0");
        assert!(link.contains("mtu 9000"), "{link}");
        let (_, addrs) = ns.ip_output("-o -4 addr show dev jrt0");
        assert!(addrs.is_empty(), "no host address asked, none given: {addrs}");
        let mut lent = 0;
        tap.transmit(&mut |buf| {
            lent = buf.len();
            None
        })
        .unwrap();
        assert_eq!(lent, 9014);
    }

    #[test]
    fn a_down_link_drops_and_a_deleted_tap_is_gone() {
        if !privileged("tap link down") {
            return;
        }
        let ns = NetNs::new("tapdown");
        let mut tap = ns.run(|| TapBackend::open(&config("jrtap0"))).unwrap();
        ns.ip("link set jrtap0 down");
        assert!(!tap.link_up());
        let engine = Engine { mac: tap.mac(), ip: ENGINE_IP };
        let request =
            crate::backend::testnet::arp_request(engine.mac, engine.ip, kernel_cidr().addr);
        send(&mut tap, &[request.clone(), request]);
        assert_eq!(tap.stats().tx_dropped, 2, "{:?}", tap.stats());
        assert!(tap.handle_poll_error().is_ok());

        ns.ip("link del jrtap0");
        let err = tap.receive(8, &mut |_| {}).unwrap_err();
        assert!(matches!(err, BackendError::DeviceGone { .. }), "{err:?}");
        let err = tap.handle_poll_error().unwrap_err();
        assert!(matches!(err, BackendError::DeviceGone { .. }), "{err:?}");
    }

    /// Set in the child process that runs as `nobody`.
    const UNPRIVILEGED_CHILD: &str = "STACKD_TEST_UNPRIVILEGED_CHILD";

    #[test]
    fn without_privileges_the_error_says_to_run_as_root() {
        if std::env::var_os(UNPRIVILEGED_CHILD).is_some() {
            let err = TapBackend::open(&config("jrtap9")).unwrap_err();
            assert!(matches!(err, OpenError::NeedsCapability { .. }), "{err:?}");
            // Which step refuses depends on /dev/net/tun's mode: 0600 fails the open, while
            // udev's usual 0666 lets it through to TUNSETIFF, which needs the capability.
            let message = err.to_string();
            assert!(
                [
                    "tap backend on jrtap9: open /dev/net/tun needs CAP_NET_ADMIN: run as root",
                    "tap backend on jrtap9: create the TAP (TUNSETIFF) needs CAP_NET_ADMIN: run as root",
                ]
                .contains(&message.as_str()),
                "{message}"
            );
            return;
        }
        if !privileged("tap unprivileged") {
            return;
        }
        // This very test again, in a child stripped of root and every capability.
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
            .args(["--bounding-set=-all", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "backend::tap::tests::without_privileges_the_error_says_to_run_as_root",
            ])
            .env(UNPRIVILEGED_CHILD, "1")
            .output();
        let Ok(out) = out else {
            eprintln!("skipping the unprivileged check: setpriv (util-linux) is not installed");
            return;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
