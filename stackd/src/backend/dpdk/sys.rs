//! The raw DPDK API and the thin safe layer over it: the only `unsafe` code of the DPDK backend.
//!
//! `raw` is what build.rs generates: bindgen's bindings of the exported DPDK functions the
//! backend calls, and of the `jr_*` wrappers in `shim.c` that put DPDK's static-inline functions
//! (the burst calls, the mbuf helpers, `rte_errno`) out of line. Above it, three owners carry the
//! invariants the raw calls need:
//!
//! - [`Eal`]: proof that `rte_eal_init` succeeded in this process and `rte_eal_cleanup` has not
//!   run; at most one exists per process, ever (DPDK cannot initialise twice).
//! - [`Device`]: one started port with one receive and one transmit queue fed by a packet pool
//!   of its own. It owns the [`Eal`], so the port, the pool and every buffer taken from the pool
//!   are released, in that order, before EAL is cleaned up.
//! - Buffers (`Mbuf`) never leave a [`Device`]: received ones are lent to a closure and freed,
//!   transmit ones are lent as [`TxBuffer`]s that borrow the device mutably.

use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt;
use std::io;
use std::ptr::{self, NonNull};
use std::sync::Mutex;

/// Generated bindings (see build.rs): C names, C types, no documentation.
#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    missing_docs,
    missing_debug_implementations,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]
mod raw {
    include!(concat!(env!("OUT_DIR"), "/dpdk_bindings.rs"));
}

/// Bytes DPDK keeps in front of a packet's data in every buffer.
pub(super) const HEADROOM: usize = raw::RTE_PKTMBUF_HEADROOM as usize;

/// The most packets one receive call asks the device for.
pub(super) const RX_BURST: usize = 32;

/// Frames staged for transmission before `transmit` hands them to the device in one burst.
pub(super) const TX_BURST: usize = 32;

/// Per-lcore buffer cache of the pool. Only EAL threads use it; the event loop may not be one.
const POOL_CACHE: u32 = 256;

/// Size of the buffer `rte_eth_dev_get_name_by_port` writes (including the NUL).
const NAME_LEN: usize = raw::RTE_ETH_NAME_MAX_LEN as usize;

/// A DPDK error number: a negative return value, or `rte_errno` after a failed call. Codes
/// below 1000 are errno values; DPDK's own (`E_RTE_SECONDARY`, `E_RTE_NO_CONFIG`) are above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RteError(pub(super) i32);

impl RteError {
    /// From a DPDK return value: `-errno`.
    fn from_ret(ret: c_int) -> RteError {
        RteError(ret.saturating_neg())
    }

    /// The current thread's `rte_errno`, set by the call that just failed.
    fn last() -> RteError {
        // SAFETY: jr_rte_errno only reads the calling thread's own thread-local variable.
        RteError(unsafe { raw::jr_rte_errno() })
    }

    /// True for "the driver does not implement this".
    pub(super) fn is_unsupported(self) -> bool {
        self.0 == libc::ENOTSUP || self.0 == libc::EOPNOTSUPP
    }
}

impl fmt::Display for RteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror accepts any number and returns a pointer to a NUL-terminated
        // string that is static or in a thread-local buffer; it is copied before this thread
        // can call rte_strerror again.
        let text = unsafe { CStr::from_ptr(raw::rte_strerror(self.0)) };
        write!(f, "{} (DPDK error {})", text.to_string_lossy(), self.0)
    }
}

impl From<RteError> for io::Error {
    fn from(e: RteError) -> io::Error {
        if (1..1000).contains(&e.0) {
            io::Error::from_raw_os_error(e.0)
        } else {
            io::Error::other(e.to_string())
        }
    }
}

/// Where the process stands with EAL, which initialises at most once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EalState {
    Fresh,
    /// An [`Eal`] exists.
    Running,
    /// `rte_eal_init` failed; DPDK does not reliably allow another attempt.
    Failed,
    /// Initialised and cleaned up: DPDK refuses to initialise again.
    CleanedUp,
}

static EAL: Mutex<EalState> = Mutex::new(EalState::Fresh);

/// Why [`Eal::init`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EalInitError {
    /// An argument contains a NUL byte.
    Nul(String),
    /// Another [`Eal`] of this process is alive.
    InUse,
    /// An earlier `rte_eal_init` of this process failed.
    FailedBefore,
    /// EAL ran in this process and was cleaned up.
    CleanedUp,
    /// `rte_eal_init` failed.
    Failed(RteError),
}

/// DPDK's Environment Abstraction Layer, initialised (see the module doc).
#[derive(Debug)]
pub(super) struct Eal {
    /// Not constructible outside this module.
    _private: (),
}

impl Eal {
    /// `rte_eal_init` with `args` (`args[0]` is the program name). EAL parses them as a command
    /// line: lcores (`-l`), devices (`--vdev`, `-a`), memory (`--no-huge`), `--file-prefix`...
    pub(super) fn init(args: &[String]) -> Result<Eal, EalInitError> {
        let mut state = EAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *state {
            EalState::Fresh => {}
            EalState::Running => return Err(EalInitError::InUse),
            EalState::Failed => return Err(EalInitError::FailedBefore),
            EalState::CleanedUp => return Err(EalInitError::CleanedUp),
        }
        let args = args
            .iter()
            .map(|arg| CString::new(arg.as_str()).map_err(|_| EalInitError::Nul(arg.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv: Vec<*mut c_char> = args.into_iter().map(CString::into_raw).collect();
        let argc = c_int::try_from(argv.len()).unwrap_or(c_int::MAX);
        // C's argv ends with a null pointer.
        argv.push(ptr::null_mut());
        // EAL permutes argv while parsing it, and some of its options keep pointers into the
        // strings (device arguments, the program name for logs) for the life of the process:
        // the strings and the array are leaked on purpose, once per process.
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());
        // SAFETY: argv holds `argc` pointers to NUL-terminated strings followed by a null
        // pointer, all leaked so they outlive EAL; the EAL mutex held here (and the state check
        // above) makes this the process's only call to rte_eal_init.
        let ret = unsafe { raw::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            *state = EalState::Failed;
            return Err(EalInitError::Failed(RteError::last()));
        }
        *state = EalState::Running;
        Ok(Eal { _private: () })
    }

    /// The port DPDK knows by `name` (a PCI address, a vdev name such as `net_tap0`).
    pub(super) fn port_by_name(&self, name: &str) -> Option<u16> {
        let name = CString::new(name).ok()?;
        let mut port = 0u16;
        // SAFETY: EAL is initialised (self exists); name is NUL-terminated; port is a valid
        // u16 for the call to write.
        let ret = unsafe { raw::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut port) };
        (ret == 0).then_some(port)
    }

    /// True if `port` is a port DPDK has probed.
    pub(super) fn is_valid_port(&self, port: u16) -> bool {
        // SAFETY: EAL is initialised; the call only checks the port table.
        unsafe { raw::rte_eth_dev_is_valid_port(port) == 1 }
    }

    /// Every port, in order, with its device name.
    pub(super) fn ports(&self) -> Vec<(u16, String)> {
        let mut ports = Vec::new();
        let mut next = 0u16;
        loop {
            // SAFETY: EAL is initialised; rte_eth_find_next accepts any port number and
            // returns the next valid one, or RTE_MAX_ETHPORTS.
            let port = unsafe { raw::rte_eth_find_next(next) };
            if u32::from(port) >= raw::RTE_MAX_ETHPORTS {
                return ports;
            }
            ports.push((port, self.port_name(port).unwrap_or_default()));
            next = port + 1;
        }
    }

    /// The device name of `port`.
    pub(super) fn port_name(&self, port: u16) -> Result<String, RteError> {
        let mut name = [0 as c_char; NAME_LEN];
        // SAFETY: EAL is initialised; `name` has the RTE_ETH_NAME_MAX_LEN bytes the call may
        // write, NUL included.
        let ret = unsafe { raw::rte_eth_dev_get_name_by_port(port, name.as_mut_ptr()) };
        if ret != 0 {
            return Err(RteError::from_ret(ret));
        }
        // SAFETY: on success the call wrote a NUL-terminated name into `name`.
        Ok(unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned())
    }

    /// What the driver of `port` says about it.
    pub(super) fn port_info(&self, port: u16) -> Result<PortInfo, RteError> {
        let mut info = raw::rte_eth_dev_info::default();
        // SAFETY: EAL is initialised; `info` is a writable rte_eth_dev_info.
        let ret = unsafe { raw::rte_eth_dev_info_get(port, &mut info) };
        if ret != 0 {
            return Err(RteError::from_ret(ret));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null driver_name points to the driver's static, NUL-terminated name.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        Ok(PortInfo {
            driver,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            max_rx_pktlen: info.max_rx_pktlen,
        })
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        let mut state = EAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: this is the only Eal, so EAL is initialised and not yet cleaned up, and
        // whatever owned DPDK objects (a Device) has released them before dropping it.
        let ret = unsafe { raw::rte_eal_cleanup() };
        if ret != 0 {
            tracing::warn!(error = %RteError::from_ret(ret), "rte_eal_cleanup failed");
        }
        *state = EalState::CleanedUp;
    }
}

/// Limits of a port, from its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortInfo {
    pub(super) driver: String,
    pub(super) min_mtu: u16,
    pub(super) max_mtu: u16,
    /// Longest frame the port receives, with the overhead the driver counts (header, CRC).
    pub(super) max_rx_pktlen: u32,
}

impl PortInfo {
    /// The largest MTU the port takes. Like ethdev's own check, counts the driver's overhead as
    /// `max_rx_pktlen - max_mtu` when it reports both, else as an Ethernet header and CRC.
    pub(super) fn largest_mtu(&self) -> u16 {
        let reported = u32::from(self.max_mtu);
        let overhead = if self.max_mtu != u16::MAX && self.max_rx_pktlen > reported {
            self.max_rx_pktlen - reported
        } else {
            (ETHER_HEADER + ETHER_CRC) as u32
        };
        let by_frame = self.max_rx_pktlen.saturating_sub(overhead);
        u16::try_from(by_frame.min(reported)).unwrap_or(u16::MAX)
    }
}

/// RTE_ETHER_HDR_LEN and RTE_ETHER_CRC_LEN.
const ETHER_HEADER: usize = 14;
const ETHER_CRC: usize = 4;

/// How to set a port up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortSpec {
    pub(super) port: u16,
    pub(super) mtu: u16,
    /// Replaces the port's MAC address.
    pub(super) mac: Option<[u8; 6]>,
    /// Descriptors asked for each ring; the driver may round them to its limits.
    pub(super) rx_descriptors: u16,
    pub(super) tx_descriptors: u16,
    /// Bytes a transmit buffer lends: the largest frame.
    pub(super) frame_len: usize,
    /// Data room of each pool buffer past the headroom (at least `frame_len`; receive buffers
    /// also take the CRC and VLAN tags some NICs write).
    pub(super) buffer_len: u16,
}

/// A setup step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetupError {
    pub(super) step: &'static str,
    pub(super) error: RteError,
}

/// Counters the port keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PortStats {
    /// Frames the hardware dropped because the receive ring was full.
    pub(super) imissed: u64,
    /// Receive failures for want of a buffer.
    pub(super) rx_nombuf: u64,
}

/// One buffer of the device's pool, owned: freed on drop.
#[repr(transparent)]
struct Mbuf(NonNull<raw::rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf (DPDK hands it over on allocation and receive,
// and takes it back on transmit); freeing returns it to a pool whose operations are
// multi-producer/multi-consumer safe, from any thread.
unsafe impl Send for Mbuf {}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own this mbuf (see the type), so it is freed exactly once; the pool it
        // returns to outlives it (Device frees its buffers before the pool).
        unsafe { raw::jr_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// A started port and its buffers (see the module doc).
pub(super) struct Device {
    // Field order is drop order: buffers before the port (in Drop), the pool, then EAL.
    /// Frames accepted for transmission, waiting for room in the device's ring.
    staged: Vec<Mbuf>,
    /// A fresh buffer lent by `tx_buffer` and not used, kept for the next one.
    spare: Option<Mbuf>,
    port: u16,
    started: bool,
    frame_len: usize,
    /// Created during `open`; from then on as long as the device.
    pool: Option<Pool>,
    _eal: Eal,
}

/// A packet pool, freed on drop.
struct Pool(NonNull<raw::rte_mempool>);

// SAFETY: a pktmbuf pool is a process-wide DPDK object whose get/put operations are
// multi-producer/multi-consumer safe; the pointer is only freed by Drop, once.
unsafe impl Send for Pool {}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the pool exists, and the Device that owns it has closed its port (the queues
        // held buffers of it) and freed its own buffers first.
        unsafe { raw::rte_mempool_free(self.0.as_ptr()) }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("port", &self.port)
            .field("started", &self.started)
            .field("staged", &self.staged.len())
            .field("frame_len", &self.frame_len)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Configures and starts `spec.port` with one receive and one transmit queue and a pool of
    /// its own. The device keeps `eal` to the end; on failure, EAL is cleaned up with it.
    pub(super) fn open(eal: Eal, spec: &PortSpec) -> Result<Device, SetupError> {
        let port = spec.port;
        let fail = |step| move |error| SetupError { step, error };
        // From here on, dropping `device` on an error undoes what was done (closes the port,
        // frees the pool, cleans EAL up).
        let mut device = Device {
            staged: Vec::with_capacity(TX_BURST),
            spare: None,
            port,
            started: false,
            frame_len: spec.frame_len,
            pool: None,
            _eal: eal,
        };
        // The unsafe calls below share one contract: EAL is initialised (the device holds the
        // Eal); every one of them checks `port` and fails on a port DPDK does not know (so the
        // Device this returns has a valid, started port for the burst calls, which do not
        // check); and every pointer passed is to a live local of the type DPDK expects, or NULL
        // where DPDK documents NULL as "the driver's defaults".

        // SAFETY: the shared contract.
        let socket = unsafe { raw::rte_eth_dev_socket_id(port) };
        let mut conf = raw::rte_eth_conf::default();
        conf.rxmode.mtu = u32::from(spec.mtu);
        // SAFETY: the shared contract; `conf` is an all-zero configuration (no offloads, no
        // multi-queue mode) but for the MTU.
        let ret = unsafe { raw::rte_eth_dev_configure(port, 1, 1, &conf) };
        check(ret).map_err(fail("configure the port (rte_eth_dev_configure)"))?;

        let (mut rx_descriptors, mut tx_descriptors) = (spec.rx_descriptors, spec.tx_descriptors);
        // SAFETY: the shared contract; the port is configured, as the call requires.
        let ret = unsafe {
            raw::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut rx_descriptors, &mut tx_descriptors)
        };
        check(ret).map_err(fail("fit the ring sizes (rte_eth_dev_adjust_nb_rx_tx_desc)"))?;

        // Enough buffers to fill both rings, a receive burst, the staged frames and the spare,
        // plus what the lcore caches may hold.
        let buffers = u32::from(rx_descriptors)
            + u32::from(tx_descriptors)
            + (RX_BURST + TX_BURST + 1) as u32
            + POOL_CACHE * 3 / 2;
        let data_room = u16::try_from(HEADROOM + usize::from(spec.buffer_len))
            .map_err(|_| SetupError { step: "size the buffers", error: RteError(libc::EINVAL) })?;
        let name = CString::new(format!("joyride_port{port}")).expect("no NUL in the pool name");
        // SAFETY: the shared contract; DPDK copies the NUL-terminated name.
        let pool = unsafe {
            raw::rte_pktmbuf_pool_create(name.as_ptr(), buffers, POOL_CACHE, 0, data_room, socket)
        };
        let pool = NonNull::new(pool)
            .ok_or_else(RteError::last)
            .map_err(fail("create the packet pool (rte_pktmbuf_pool_create)"))?;
        let pool = device.pool.insert(Pool(pool)).0.as_ptr();

        // rte_eth_dev_socket_id's -1 (SOCKET_ID_ANY) converts to the unsigned the queue calls
        // take exactly as C converts it.
        let socket = socket as u32;
        // SAFETY: the shared contract; the pool outlives the port's queues (Device::drop closes
        // the port before the pool is freed).
        let ret = unsafe {
            raw::rte_eth_rx_queue_setup(port, 0, rx_descriptors, socket, ptr::null(), pool)
        };
        check(ret).map_err(fail("set up the receive queue (rte_eth_rx_queue_setup)"))?;
        // SAFETY: the shared contract.
        let ret =
            unsafe { raw::rte_eth_tx_queue_setup(port, 0, tx_descriptors, socket, ptr::null()) };
        check(ret).map_err(fail("set up the transmit queue (rte_eth_tx_queue_setup)"))?;

        if let Some(bytes) = spec.mac {
            let mut mac = raw::rte_ether_addr { addr_bytes: bytes };
            // SAFETY: the shared contract.
            let ret = unsafe { raw::rte_eth_dev_default_mac_addr_set(port, &mut mac) };
            check(ret).map_err(fail("set the MAC address (rte_eth_dev_default_mac_addr_set)"))?;
        }

        // Configure recorded the MTU; drivers that program it (net_tap sets its kernel side's)
        // do so here. One that cannot change it has accepted it within its limits already.
        // SAFETY: the shared contract.
        let ret = unsafe { raw::rte_eth_dev_set_mtu(port, spec.mtu) };
        match check(ret) {
            Err(e) if !e.is_unsupported() => {
                return Err(SetupError { step: "set the MTU (rte_eth_dev_set_mtu)", error: e })
            }
            _ => {}
        }

        // SAFETY: the shared contract; both queues are set up.
        let ret = unsafe { raw::rte_eth_dev_start(port) };
        check(ret).map_err(fail("start the port (rte_eth_dev_start)"))?;
        device.started = true;
        // Counters from zero, as the backend's own are; not every driver can reset them.
        // SAFETY: the shared contract.
        let _ = unsafe { raw::rte_eth_stats_reset(port) };
        Ok(device)
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// The port's MAC address.
    pub(super) fn mac(&self) -> Result<[u8; 6], RteError> {
        let mut mac = raw::rte_ether_addr::default();
        // SAFETY: the port is configured (self exists); `mac` is writable.
        check(unsafe { raw::rte_eth_macaddr_get(self.port, &mut mac) })?;
        Ok(mac.addr_bytes)
    }

    /// The port's MTU.
    pub(super) fn mtu(&self) -> Result<u16, RteError> {
        let mut mtu = 0u16;
        // SAFETY: the port is configured; `mtu` is writable.
        check(unsafe { raw::rte_eth_dev_get_mtu(self.port, &mut mtu) })?;
        Ok(mtu)
    }

    /// Whether the link is up, without waiting for the driver to find out (`None` if it cannot
    /// tell).
    pub(super) fn link_up(&self) -> Option<bool> {
        // SAFETY: the port is configured; the shim's rte_eth_link lives on its own stack.
        let ret = unsafe { raw::jr_link_up(self.port) };
        (ret >= 0).then_some(ret == 1)
    }

    /// True while DPDK still knows the port (a hot-unplugged device disappears).
    pub(super) fn is_present(&self) -> bool {
        // SAFETY: EAL is initialised; the call only checks the port table.
        unsafe { raw::rte_eth_dev_is_valid_port(self.port) == 1 }
    }

    /// The port's counters.
    pub(super) fn stats(&self) -> Result<PortStats, RteError> {
        let mut stats = raw::rte_eth_stats::default();
        // SAFETY: the port is configured; `stats` is writable.
        check(unsafe { raw::rte_eth_stats_get(self.port, &mut stats) })?;
        Ok(PortStats { imissed: stats.imissed, rx_nombuf: stats.rx_nombuf })
    }

    /// Receives up to `max` (at most [`RX_BURST`]) packets and lends each to `each`, then frees
    /// it. Returns how many the device handed over.
    pub(super) fn receive(&mut self, max: usize, mut each: impl FnMut(RxPacket<'_>)) -> usize {
        let mut burst = RxBurst { mbufs: [ptr::null_mut(); RX_BURST], len: 0, next: 0 };
        let want = max.min(RX_BURST) as u16;
        // SAFETY: the port is started with receive queue 0, which only this &mut self uses;
        // `mbufs` has room for the `want` pointers the call may write.
        burst.len =
            usize::from(unsafe { raw::jr_rx_burst(self.port, 0, burst.mbufs.as_mut_ptr(), want) });
        while burst.next < burst.len {
            let mbuf = burst.mbufs[burst.next];
            each(RxPacket { mbuf, _burst: std::marker::PhantomData });
            burst.next += 1;
            // SAFETY: the driver handed this mbuf over (it is ours to free, once); `next` has
            // moved past it, so RxBurst::drop will not free it again.
            unsafe { raw::jr_pktmbuf_free(mbuf) };
        }
        burst.len
    }

    /// A fresh transmit buffer, or `None` when the pool is empty (every buffer is in a ring or
    /// staged: the device is behind).
    pub(super) fn tx_buffer(&mut self) -> Option<TxBuffer<'_>> {
        let mbuf = match self.spare.take() {
            Some(mbuf) => mbuf,
            None => {
                let pool = self.pool.as_ref()?.0.as_ptr();
                // SAFETY: the pool exists while self holds it; a non-null result is a fresh
                // mbuf that we own.
                Mbuf(NonNull::new(unsafe { raw::jr_pktmbuf_alloc(pool) })?)
            }
        };
        let mut room = 0u16;
        // SAFETY: we own the fresh mbuf; the call reads its offsets and writes `room`.
        let data = unsafe { raw::jr_pktmbuf_room(mbuf.0.as_ptr(), &mut room) }.cast::<u8>();
        // The pool's data room covers frame_len past the headroom a fresh buffer starts with.
        debug_assert!(usize::from(room) >= self.frame_len, "{room} < {}", self.frame_len);
        let len = usize::from(room).min(self.frame_len);
        Some(TxBuffer { device: self, mbuf: Some(mbuf), data, len })
    }

    /// Frames staged and not yet taken by the device.
    pub(super) fn staged(&self) -> usize {
        self.staged.len()
    }

    /// Offers the staged frames to the device; returns how many it took. The rest stay staged,
    /// in order.
    pub(super) fn transmit_staged(&mut self) -> usize {
        if self.staged.is_empty() {
            return 0;
        }
        let count = u16::try_from(self.staged.len()).unwrap_or(u16::MAX);
        // SAFETY: the port is started with transmit queue 0, which only this &mut self uses;
        // Mbuf is a transparent NonNull<rte_mbuf>, so `staged` is an array of `count` valid
        // mbuf pointers.
        let sent =
            unsafe { raw::jr_tx_burst(self.port, 0, self.staged.as_mut_ptr().cast(), count) };
        let sent = usize::from(sent).min(self.staged.len());
        let rest = self.staged.len() - sent;
        // SAFETY: the driver now owns the first `sent` mbufs, so they must not be dropped: the
        // remaining `rest` are moved to the front (ptr::copy handles the overlap) and the
        // length is cut to them, which forgets the sent ones without freeing them.
        unsafe {
            let base = self.staged.as_mut_ptr();
            ptr::copy(base.add(sent), base, rest);
            self.staged.set_len(rest);
        }
        sent
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if self.started {
            // SAFETY: EAL is initialised (self holds the Eal) and the port is started.
            let ret = unsafe { raw::rte_eth_dev_stop(self.port) };
            if ret != 0 {
                tracing::warn!(port = self.port, error = %RteError::from_ret(ret),
                    "rte_eth_dev_stop failed");
            }
        }
        self.staged.clear();
        self.spare = None;
        // SAFETY: EAL is initialised and `port` was probed (a failed open closes a port it may
        // only have configured); afterwards no queue holds a buffer of the pool, which is freed
        // next (field drop), before EAL is cleaned up.
        let ret = unsafe { raw::rte_eth_dev_close(self.port) };
        if ret != 0 {
            tracing::warn!(port = self.port, error = %RteError::from_ret(ret),
                "rte_eth_dev_close failed");
        }
    }
}

/// A received burst: frees what the closure has not seen, even if it panics.
struct RxBurst {
    mbufs: [*mut raw::rte_mbuf; RX_BURST],
    len: usize,
    next: usize,
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        for &mbuf in &self.mbufs[self.next..self.len] {
            // SAFETY: mbufs[next..len] were handed over by the driver and not yet freed.
            unsafe { raw::jr_pktmbuf_free(mbuf) };
        }
    }
}

/// A received packet, lent for the duration of the closure.
pub(super) struct RxPacket<'a> {
    mbuf: *mut raw::rte_mbuf,
    _burst: std::marker::PhantomData<&'a ()>,
}

impl RxPacket<'_> {
    /// Its length in bytes, all segments together.
    pub(super) fn len(&self) -> usize {
        // SAFETY: the mbuf is alive while lent (freed only after the closure returns).
        unsafe { raw::jr_pktmbuf_pkt_len(self.mbuf) as usize }
    }

    /// Its bytes: in place when the packet is one segment (the usual case), else copied into
    /// `scratch`. `None` if a chained packet is longer than `scratch`.
    pub(super) fn bytes<'s>(&'s self, scratch: &'s mut [u8]) -> Option<&'s [u8]> {
        let len = self.len();
        let scratch_len = u32::try_from(scratch.len()).unwrap_or(u32::MAX);
        // SAFETY: the mbuf is alive while lent; the call writes at most `scratch_len` bytes
        // into `scratch`, or none.
        let data =
            unsafe { raw::jr_pktmbuf_read(self.mbuf, scratch.as_mut_ptr().cast(), scratch_len) };
        if data.is_null() {
            return None;
        }
        // SAFETY: a non-null result points to the packet's `len` contiguous bytes, in the
        // mbuf or in `scratch`, both borrowed for 's and not written while the slice lives
        // (bytes a device or C wrote are initialised as far as Rust is concerned).
        Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
    }
}

/// A fresh transmit buffer of the device: fill [`data`](Self::data), then
/// [`stage`](Self::stage) it; dropped unstaged, it goes back to the device as its spare.
pub(super) struct TxBuffer<'a> {
    device: &'a mut Device,
    /// Always `Some` until stage or drop takes it.
    mbuf: Option<Mbuf>,
    data: *mut u8,
    len: usize,
}

impl TxBuffer<'_> {
    /// The buffer's data room: the device's `frame_len` bytes.
    pub(super) fn data(&mut self) -> &mut [u8] {
        // SAFETY: `data` points to the data room of the fresh mbuf we own, which has at least
        // `len` bytes (tx_buffer checked the tailroom); nothing else accesses it while this
        // &mut self lives (its previous contents are initialised bytes: a device or C wrote
        // them, or the zeroed memory the pool was built on).
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }

    /// Stages the first `len` bytes (at most the data room) as a frame to transmit.
    pub(super) fn stage(mut self, len: usize) {
        let len = u16::try_from(len.min(self.len)).unwrap_or(u16::MAX);
        if let Some(mbuf) = self.mbuf.take() {
            // SAFETY: we own the fresh mbuf (data length 0), whose tailroom is at least
            // self.len >= len, so the append only sets its data and packet lengths.
            let ret = unsafe { raw::jr_pktmbuf_append(mbuf.0.as_ptr(), len) };
            debug_assert_eq!(ret, 0, "a fresh buffer takes frame_len bytes");
            self.device.staged.push(mbuf);
        }
    }
}

impl Drop for TxBuffer<'_> {
    fn drop(&mut self) {
        if let Some(mbuf) = self.mbuf.take() {
            self.device.spare = Some(mbuf);
        }
    }
}

/// A DPDK return value: 0 (or positive) is success, negative is `-errno`.
fn check(ret: c_int) -> Result<(), RteError> {
    if ret < 0 {
        Err(RteError::from_ret(ret))
    } else {
        Ok(())
    }
}
