//! The shared-memory wire: an Ethernet link between two joyride-stackd instances (or two
//! backends in one process) made of a file both map, with no kernel in the data path, so that the
//! stack can be measured without TAP or veth costs.
//!
//! # Using it
//! Start both instances with the same name: `--backend shm --iface NAME`. A NAME without `/` is a
//! file under `/dev/shm`; an absolute path names the file itself (its directory must exist). The
//! first instance creates the region (mode 0600) and takes side `a`; the second attaches to it and
//! takes side `b`; a third is refused. Both must use the same `--mtu`. There is no side option:
//! whoever comes first is `a`, and an instance that leaves frees its side for a newcomer. The link
//! is up while both sides are attached; what one side sends while the other is absent waits in
//! the ring (and, once that is full, is dropped and counted, as a NIC without carrier drops it).
//!
//! # The region
//! One header page, then two rings of fixed-size slots, one per direction (ring `a` carries what
//! side a sends). The header holds a magic number, the layout version, the MTU, the slot size and
//! count, the file length, each side's attached flag, pid and MAC, and each ring's indices and
//! flags, each index on a cache line of its own with only its writer's flag beside it. Every
//! header word is accessed atomically; a slot is plain memory, lent by `sys::WireRings` only while
//! the ring protocol makes it ours (see there for the ordering argument). A slot is an 8-byte
//! header (the frame's length, little-endian, then padding) and `mtu + 14` bytes of frame,
//! rounded up to 64 bytes — or, on a wire made for segmentation offload (the default, see
//! below), `65535 + 14`. `receive` hands the engine the frame in place in its slot; `transmit`
//! lends the engine the free slot itself.
//!
//! Whoever attaches checks the header (magic, version, geometry against the file's length, MTU)
//! and refuses a region that does not fit with an [`OpenError::BadWire`] that says why. The
//! peer's frame lengths and indices are not trusted: a length beyond the slot is a counted drop
//! (`rx_oversized`), indices that make no sense drop what the ring holds (`rx_dropped`).
//!
//! # Segmentation offload
//! Both ends of the wire are joyride-stackd, so a TCP segment need not be cut to the MTU: as
//! veth hands the kernel's GSO packets to the peer namespace whole, the wire carries IP packets
//! of up to 65535 bytes, and the sending engine puts up to 45 full-sized segments' worth of new
//! data in one (`StackConfig::segmentation_offload`). Per-segment work on both sides falls by as
//! much. The creator decides the slot size (`segmentation-offload = "off"` makes MTU-sized
//! slots); a side that attaches takes whatever slots the wire has, receives any frame that fits
//! one, and sends bursts only if the slots hold them and it was not told "off".
//!
//! # Who is alive
//! Each side holds an open-file-description lock on one byte of the region (byte 0 for a, 1 for
//! b). The kernel releases it when the process exits, however it exits, so "the peer's byte is
//! locked" is a liveness test that a recycled pid cannot fool. Opening uses the same locks to
//! settle who is which side: a region whose sides are both unlocked is a stale one (its owners
//! died) and is replaced. The last instance to leave unlinks the region and the doorbells (it
//! takes both bytes' lock first, so a newcomer cannot attach to a file being removed — a newcomer
//! that loses that race sees the path name another file and starts over).
//!
//! # Sleeping: the doorbells
//! An idle event loop sleeps in epoll on [`Backend::poll_fd`]: here a unix datagram socket bound
//! at `REGION.bell-a` or `REGION.bell-b`. A producer rings the consumer's doorbell (one datagram)
//! only when the consumer said it may sleep, with the classic protocol against lost wake-ups:
//! - the consumer, finding its ring empty, sets its "sleeping" flag, then (after a full fence)
//!   looks at the ring once more before it returns to the loop;
//! - the producer publishes its frames, then (after a full fence) looks at that flag, and if it
//!   is set clears it and rings.
//!
//! The two fences order each side's store before its load, so at least one side sees the other's
//! store: either the consumer's second look finds the frames, or the producer finds the flag. The
//! same protocol, with the roles swapped, wakes a producer that found the ring full ("waiting"
//! flag, set by the producer, checked by the consumer after it frees slots): the doorbell turns
//! readable for both reasons, and the event loop runs a whole turn (receive, then transmit)
//! whatever woke it. Doorbell datagrams are drained only in `receive`, and only after a flag we
//! set was cleared by the peer, so an idle or saturated link costs no system call; a turn that
//! empties the ring and sleeps costs the producer one `sendto`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fbsd_tcp::wire::EthernetAddress;

use super::sys::{self, RingPlace, SharedMap, WireRings};
use super::{
    random_local_mac, Backend, BackendConfig, BackendError, BackendKind, BackendStats, OpenError,
    ETHERNET_HEADER, MAX_MTU, MIN_MTU,
};

/// Where bare names live.
pub const SHM_DIR: &str = "/dev/shm";

/// "JRWIRE" and the layout's generation; changes with any incompatible layout change, as does
/// [`VERSION`].
const MAGIC: u64 = u64::from_le_bytes(*b"JRWIRE\0\x01");
/// The layout version.
const VERSION: u32 = 2;

/// The header page; the rings start here (page-aligned on any page size up to 4 KiB).
const HEADER_LEN: usize = 4096;
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 8;
const MTU_AT: usize = 12;
const SLOT_SIZE_AT: usize = 16;
const SLOT_COUNT_AT: usize = 20;
const FILE_LEN_AT: usize = 24;
/// Per side (a cache line pair each): attached flag, pid, MAC.
const SIDES_AT: usize = 128;
const SIDE_STRIDE: usize = 128;
const ATTACHED: usize = 0;
const PID: usize = 4;
const MAC: usize = 8;
/// Per ring: the producer's line (tail, "waiting for room") and, 128 bytes on (clear of the
/// adjacent-line prefetcher), the consumer's line (head, "sleeping").
const RINGS_AT: usize = 512;
const RING_STRIDE: usize = 256;
const TAIL: usize = 0;
const PRODUCER_WAITING: usize = 4;
const HEAD: usize = 128;
const CONSUMER_SLEEPING: usize = 132;

/// A slot's own header: the frame length (u32, little-endian) and padding, so the frame starts
/// 8-byte aligned.
const SLOT_HEADER: usize = 8;
/// Slot sizes are multiples of a cache line.
const SLOT_ALIGN: usize = 64;
/// Bounds an attacher accepts, whatever the header says.
const MAX_SLOTS: u32 = 1 << 16;
const MIN_SLOTS: u32 = 2;
/// What the creator aims for per ring when it picks the slot count for MTU-sized slots: 2048
/// slots of 1536 bytes at MTU 1500 (3 MiB), 512 of 9088 at MTU 9000 (4.4 MiB) — more than a TCP
/// window of either.
const RING_BYTES_TARGET: usize = 8 << 20;
const DEFAULT_MAX_SLOTS: u32 = 2048;
/// Slots per ring of a wire made for segmentation offload: 1 MiB of 64 KiB packets. Few and
/// reused soon, so that the frames a daemon writes are still in cache when its peer reads them:
/// with 64 slots (4 MiB) the bench moved a third less per busy core. A full ring holds the
/// sender back (it is backpressure, not loss).
const OFFLOAD_SLOTS: u32 = 16;
/// The largest IP packet on a wire made for segmentation offload: all an IPv4 packet holds.
pub const OFFLOAD_PACKET: usize = 65535;

/// Opening retries this often when it races another instance (creating, leaving).
const OPEN_ATTEMPTS: usize = 20;
const OPEN_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// How long a "the peer is alive" answer is trusted before the lock is asked again.
const LIVENESS_CACHE: Duration = Duration::from_millis(10);

/// Which side of the wire this instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The creator's side (or whoever took it over).
    A,
    /// The attacher's side.
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn letter(self) -> char {
        match self {
            Side::A => 'a',
            Side::B => 'b',
        }
    }

    /// The byte of the region whose lock says this side is alive.
    fn lock_byte(self) -> u64 {
        self.index() as u64
    }
}

/// The slot size for frames of up to `frame_max` bytes.
fn slot_size_for(frame_max: usize) -> usize {
    (SLOT_HEADER + frame_max).next_multiple_of(SLOT_ALIGN)
}

/// The largest frame a wire carries: one IP packet of the MTU, or of [`OFFLOAD_PACKET`] bytes
/// on a wire made for segmentation offload.
fn frame_max_for(mtu: usize, offload: bool) -> usize {
    ETHERNET_HEADER + if offload { OFFLOAD_PACKET } else { mtu }
}

/// The slot count the creator picks when not told.
fn default_slots(mtu: usize, offload: bool) -> u32 {
    if offload {
        return OFFLOAD_SLOTS;
    }
    let fit = (RING_BYTES_TARGET / slot_size_for(frame_max_for(mtu, false))) as u32;
    let pow2 = if fit.is_power_of_two() { fit } else { fit.next_power_of_two() / 2 };
    pow2.clamp(64, DEFAULT_MAX_SLOTS)
}

/// The region's geometry: what the header says, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    mtu: usize,
    slot_size: usize,
    slots: u32,
}

impl Geometry {
    /// True if the slots hold segmentation-offload packets.
    fn offload(&self) -> bool {
        self.slot_size == slot_size_for(frame_max_for(self.mtu, true))
    }

    /// The largest frame a slot carries.
    fn frame_max(&self) -> usize {
        frame_max_for(self.mtu, self.offload())
    }

    fn ring_bytes(&self) -> usize {
        (self.slot_size * self.slots as usize).next_multiple_of(HEADER_LEN)
    }

    fn file_len(&self) -> usize {
        HEADER_LEN + 2 * self.ring_bytes()
    }

    /// Ring `producer` (the one that side sends on).
    fn ring(&self, producer: Side) -> RingPlace {
        let control = RINGS_AT + producer.index() * RING_STRIDE;
        RingPlace {
            tail: control + TAIL,
            head: control + HEAD,
            slots: HEADER_LEN + producer.index() * self.ring_bytes(),
            slot_size: self.slot_size,
            count: self.slots,
        }
    }
}

fn side_word(side: Side, field: usize) -> usize {
    SIDES_AT + side.index() * SIDE_STRIDE + field
}

fn ring_word(producer: Side, field: usize) -> usize {
    RINGS_AT + producer.index() * RING_STRIDE + field
}

/// One side of a shared-memory wire (see the module doc).
#[derive(Debug)]
pub struct ShmBackend {
    /// `--iface` as given.
    name: String,
    path: PathBuf,
    /// The region, holding our side's lock.
    file: File,
    side: Side,
    geometry: Geometry,
    rings: WireRings,
    mac: EthernetAddress,
    bell: UnixDatagram,
    bell_path: PathBuf,
    peer_bell: PathBuf,
    /// We set our consumer "sleeping" flag and have not drained a ring for it since.
    rx_armed: bool,
    /// We set our producer "waiting" flag and have not drained a ring for it since.
    tx_armed: bool,
    tx_blocked: bool,
    /// The last liveness answer about the peer and when it was asked.
    peer_alive: Option<(Instant, bool)>,
    /// Where frames go while the link is down and the ring is full.
    scratch: Box<[u8]>,
    /// We send segments beyond the MTU (the wire has the slots for them, and we were asked to).
    offload: bool,
    warned_corrupt: bool,
    warned_link_down: bool,
    stats: BackendStats,
}

impl ShmBackend {
    /// Creates or attaches to the wire `config.iface` (see the module doc), with the default
    /// number of slots for its slot size if this side creates it.
    pub fn open(config: &BackendConfig) -> Result<ShmBackend, OpenError> {
        ShmBackend::open_with(config, default_slots(config.mtu, config.segmentation_offload))
    }

    /// As [`open`](Self::open), with `slots` slots per ring (a power of two, 2..=65536) if this
    /// side creates the region; an attacher takes the creator's geometry.
    pub fn open_with(config: &BackendConfig, slots: u32) -> Result<ShmBackend, OpenError> {
        config.validate()?;
        let invalid = |reason: String| OpenError::InvalidConfig { kind: BackendKind::Shm, reason };
        let path = region_path(&config.iface).map_err(invalid)?;
        if !slots.is_power_of_two() || !(MIN_SLOTS..=MAX_SLOTS).contains(&slots) {
            return Err(invalid(format!(
                "{slots} slots per ring: expected a power of two in {MIN_SLOTS}..={MAX_SLOTS}"
            )));
        }
        let frame_max = frame_max_for(config.mtu, config.segmentation_offload);
        let wanted = Geometry { mtu: config.mtu, slot_size: slot_size_for(frame_max), slots };
        let mac = match config.mac {
            Some(mac) => mac,
            None => random_local_mac().map_err(|e| system(&config.iface, "pick a MAC", e))?,
        };
        let (file, side, geometry, map) = settle(&config.iface, &path, wanted)?;

        let (bell, bell_path, peer_bell) = match bind_bell(&config.iface, &path, side) {
            Ok(bell) => bell,
            Err(error) => {
                // Leave no region behind that only we held.
                if sys::ofd_try_lock(file.as_fd(), 0, 2).unwrap_or(false) && same_file(&path, &file)
                {
                    let _ = std::fs::remove_file(&path);
                }
                return Err(error);
            }
        };
        let rings = WireRings::new(map, geometry.ring(side.other()), geometry.ring(side));
        let map = rings.map();
        map.u64_at(side_word(side, MAC)).store(mac_word(mac), Ordering::Relaxed);
        map.u32_at(side_word(side, PID)).store(std::process::id(), Ordering::Relaxed);
        map.u32_at(ring_word(side.other(), CONSUMER_SLEEPING)).store(0, Ordering::Relaxed);
        map.u32_at(ring_word(side, PRODUCER_WAITING)).store(0, Ordering::Relaxed);
        // Release: the peer that sees us attached sees our MAC and cleared flags too.
        map.u32_at(side_word(side, ATTACHED)).store(1, Ordering::Release);
        let backend = ShmBackend {
            name: config.iface.clone(),
            path,
            file,
            side,
            geometry,
            rings,
            mac,
            bell,
            bell_path,
            peer_bell,
            rx_armed: false,
            tx_armed: false,
            tx_blocked: false,
            peer_alive: None,
            scratch: vec![0; geometry.frame_max()].into_boxed_slice(),
            offload: config.segmentation_offload && geometry.offload(),
            warned_corrupt: false,
            warned_link_down: false,
            stats: BackendStats::default(),
        };
        tracing::info!(
            wire = %backend.path.display(),
            side = %side.letter(),
            slots = geometry.slots,
            slot_size = geometry.slot_size,
            mtu = geometry.mtu,
            %mac,
            peer_attached = backend.peer_attached(),
            "shared-memory wire attached"
        );
        Ok(backend)
    }

    /// Which side this instance took.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The region's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Slots per ring.
    pub fn slots(&self) -> u32 {
        self.geometry.slots
    }

    /// The peer's MAC, if a peer is attached.
    pub fn peer_mac(&self) -> Option<EthernetAddress> {
        self.peer_attached().then(|| {
            let word = self.word64(side_word(self.side.other(), MAC)).load(Ordering::Relaxed);
            EthernetAddress(word.to_le_bytes()[..6].try_into().unwrap_or([0; 6]))
        })
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.rings.map().u32_at(offset)
    }

    fn word64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        self.rings.map().u64_at(offset)
    }

    /// The peer's attached flag (no system call).
    fn peer_attached(&self) -> bool {
        self.word(side_word(self.side.other(), ATTACHED)).load(Ordering::Acquire) != 0
    }

    /// Whether the peer process still holds its side (a system call, cached briefly).
    fn peer_alive(&mut self) -> bool {
        let now = Instant::now();
        if let Some((asked, alive)) = self.peer_alive {
            if now.duration_since(asked) < LIVENESS_CACHE {
                return alive;
            }
        }
        let alive = sys::ofd_locked_by_other(self.file.as_fd(), self.side.other().lock_byte(), 1)
            .unwrap_or(true);
        self.peer_alive = Some((now, alive));
        alive
    }

    /// Rings the peer's doorbell. Errors are not ours to handle: a full doorbell queue means the
    /// peer has wake-ups pending already, a missing or refusing one that it is gone.
    fn ring_peer(&self) {
        if let Err(error) = self.bell.send_to(&[1], &self.peer_bell) {
            if !matches!(
                error.kind(),
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::NotFound
            ) {
                tracing::debug!(wire = %self.name, %error, "cannot ring the peer's doorbell");
            }
        }
    }

    /// Reads every waiting doorbell datagram.
    fn drain_bell(&self) {
        let mut buf = [0u8; 16];
        for _ in 0..1024 {
            if self.bell.recv(&mut buf).is_err() {
                break;
            }
        }
    }

    /// Tells the producer we may sleep (our "sleeping" flag), then looks at the ring once more:
    /// true if frames arrived meanwhile, and the caller must take them rather than sleep.
    fn arm_rx(&mut self) -> bool {
        self.word(ring_word(self.side.other(), CONSUMER_SLEEPING)).store(1, Ordering::Relaxed);
        self.rx_armed = true;
        // Pairs with the fence in `publish`, between the producer's tail store and its look at
        // our flag: with both fences, one of us sees the other's store.
        fence(Ordering::SeqCst);
        self.rings.rx_pending() != 0
    }

    /// Tells the consumer we wait for room (our "waiting" flag), then looks at the ring once
    /// more: true if slots were freed meanwhile, and the caller must fill them rather than
    /// report the device full.
    fn arm_tx(&mut self) -> bool {
        self.word(ring_word(self.side, PRODUCER_WAITING)).store(1, Ordering::Relaxed);
        self.tx_armed = true;
        // Pairs with the fence in `receive` between the consumer's head store and its look at
        // our flag.
        fence(Ordering::SeqCst);
        self.rings.tx_free() != 0
    }

    /// Publishes what `transmit` filled and wakes the peer if it sleeps.
    fn publish(&mut self) {
        if self.rings.tx_unpublished() == 0 {
            return;
        }
        self.rings.tx_publish();
        // Pairs with the fence in the peer's `arm_rx`.
        fence(Ordering::SeqCst);
        let sleeping = self.word(ring_word(self.side, CONSUMER_SLEEPING));
        if sleeping.load(Ordering::Relaxed) != 0 && sleeping.swap(0, Ordering::AcqRel) != 0 {
            self.ring_peer();
        }
    }

    /// Frames the engine builds while the link is down and the ring full: accepted and dropped,
    /// as a NIC without carrier drops them, so that the engine does not stall on a dead peer.
    fn drop_rest(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError> {
        if !self.warned_link_down {
            self.warned_link_down = true;
            tracing::warn!(wire = %self.name, "the peer is gone and the ring is full: dropping \
                frames until it is back (further drops are only counted)");
        }
        let mut accepted = 0;
        while let Some(len) = build(&mut self.scratch) {
            if len > self.scratch.len() {
                return Err(self.too_long(len));
            }
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += len as u64;
            self.stats.tx_dropped += 1;
            accepted += 1;
        }
        Ok(accepted)
    }

    fn too_long(&self, len: usize) -> BackendError {
        BackendError::FrameTooLong { iface: self.name.clone(), len, capacity: self.tx_frame_max() }
    }

    /// The buffer `transmit` lends: a frame of the MTU, or of an offload packet.
    fn tx_frame_max(&self) -> usize {
        frame_max_for(self.geometry.mtu, self.offload)
    }

    /// Counts and discards what the ring holds when the peer's indices make no sense.
    fn discard_corrupt(&mut self, pending: u32) {
        self.stats.rx_dropped += 1;
        if !self.warned_corrupt {
            self.warned_corrupt = true;
            tracing::warn!(wire = %self.name, pending, slots = self.geometry.slots,
                "the peer's ring indices are corrupt: dropping what the ring holds");
        }
        self.rings.rx_discard_all();
    }
}

impl Backend for ShmBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> EthernetAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.geometry.mtu
    }

    fn link_up(&self) -> bool {
        self.peer_attached()
            && sys::ofd_locked_by_other(self.file.as_fd(), self.side.other().lock_byte(), 1)
                .unwrap_or(false)
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.bell.as_fd())
    }

    fn receive(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BackendError> {
        let sleeping = ring_word(self.side.other(), CONSUMER_SLEEPING);
        let waiting = ring_word(self.side, PRODUCER_WAITING);
        // A flag we set and the peer cleared means it rang: take the datagram away now, before
        // we set a flag again, so the next ring is a new event for the event loop's epoll.
        let rx_rung = self.rx_armed && self.word(sleeping).load(Ordering::Relaxed) == 0;
        let tx_rung = self.tx_armed && self.word(waiting).load(Ordering::Relaxed) == 0;
        if rx_rung || tx_rung {
            self.drain_bell();
            self.rx_armed &= !rx_rung;
            self.tx_armed &= !tx_rung;
        }

        let frame_max = self.geometry.frame_max();
        let mut delivered = 0;
        let mut released = false;
        loop {
            while delivered < max {
                let pending = self.rings.rx_pending();
                if pending > self.geometry.slots {
                    self.discard_corrupt(pending);
                    break;
                }
                let Some(slot) = self.rings.rx_slot() else { break };
                let bytes = slot.bytes();
                // Read once: the length is the peer's word, checked before use.
                let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                if len == 0 {
                    self.stats.rx_ignored += 1;
                } else if len > frame_max {
                    self.stats.rx_oversized += 1;
                } else {
                    deliver(&bytes[SLOT_HEADER..SLOT_HEADER + len]);
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    delivered += 1;
                }
                slot.release();
                released = true;
            }
            // Either the loop comes back at once, or the flag we set earlier is still set (the
            // producer has not rung since), or the ring stays empty after we set it: in each
            // case the event loop may sleep safely.
            if delivered == max || self.rx_armed || !self.arm_rx() {
                break;
            }
        }

        if released {
            // Pairs with the fence in the peer's `arm_tx`.
            fence(Ordering::SeqCst);
            let peer_waiting = self.word(ring_word(self.side.other(), PRODUCER_WAITING));
            if peer_waiting.load(Ordering::Relaxed) != 0
                && peer_waiting.swap(0, Ordering::AcqRel) != 0
            {
                self.ring_peer();
            }
        }
        Ok(delivered)
    }

    fn transmit(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError> {
        self.tx_blocked = false;
        let frame_max = self.tx_frame_max();
        let mut accepted = 0;
        loop {
            let Some(mut slot) = self.rings.tx_slot() else {
                // Full. A peer that is gone will not free slots: drop rather than stall.
                if !self.peer_attached() || !self.peer_alive() {
                    self.publish();
                    return Ok(accepted + self.drop_rest(build)?);
                }
                // Unless our "waiting" flag is still up from before (the consumer has not
                // rung since), raise it and look once more.
                let waiting = self.word(ring_word(self.side, PRODUCER_WAITING));
                if waiting.load(Ordering::Relaxed) == 0 && self.arm_tx() {
                    continue;
                }
                self.tx_blocked = true;
                break;
            };
            let bytes = slot.bytes_mut();
            let Some(len) = build(&mut bytes[SLOT_HEADER..SLOT_HEADER + frame_max]) else {
                break;
            };
            if len > frame_max {
                self.publish();
                return Err(self.too_long(len));
            }
            bytes[..4].copy_from_slice(&(len as u32).to_le_bytes());
            slot.commit();
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += len as u64;
            accepted += 1;
        }
        if self.peer_attached() {
            self.warned_link_down = false;
        }
        self.publish();
        Ok(accepted)
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        // `transmit` publishes as it returns; nothing is held back.
        self.publish();
        Ok(())
    }

    fn tx_blocked(&self) -> bool {
        self.tx_blocked
    }

    fn busy_poll_begin(&mut self) {
        if !self.rx_armed {
            return;
        }
        let sleeping = self.word(ring_word(self.side.other(), CONSUMER_SLEEPING));
        // Still set: the producer has not rung, and now will not. Cleared: it rang, and
        // `receive` drains the datagram (`rx_armed` stays up for that).
        if sleeping.swap(0, Ordering::AcqRel) != 0 {
            self.rx_armed = false;
        }
    }

    fn frames_waiting(&self) -> bool {
        self.rings.rx_pending() != 0
    }

    fn segmentation_offload(&self) -> usize {
        if self.offload {
            OFFLOAD_PACKET
        } else {
            0
        }
    }

    fn checksums_unneeded(&self) -> bool {
        // Both ends are joyride-stackd instances on this host: frames cross in shared memory.
        true
    }

    fn handle_poll_error(&mut self) -> Result<(), BackendError> {
        match self.bell.take_error() {
            Ok(_) => Ok(()),
            Err(source) => Err(BackendError::Io {
                iface: self.name.clone(),
                step: "read the doorbell's error",
                source,
            }),
        }
    }

    fn stats(&self) -> BackendStats {
        self.stats
    }
}

impl Drop for ShmBackend {
    fn drop(&mut self) {
        let map = self.rings.map();
        map.u32_at(side_word(self.side, ATTACHED)).store(0, Ordering::Release);
        map.u32_at(ring_word(self.side.other(), CONSUMER_SLEEPING)).store(0, Ordering::Relaxed);
        map.u32_at(ring_word(self.side, PRODUCER_WAITING)).store(0, Ordering::Relaxed);
        remove_socket(&self.bell_path);
        let fd = self.file.as_fd();
        let _ = sys::ofd_unlock(fd, self.side.lock_byte(), 1);
        // The last one out removes the region: holding both sides' lock, no one else is
        // attached, and a newcomer that attaches after we release finds the path gone.
        if sys::ofd_try_lock(fd, 0, 2).unwrap_or(false) {
            if same_file(&self.path, &self.file) {
                let _ = std::fs::remove_file(&self.path);
            }
            remove_socket(&self.peer_bell);
            let _ = sys::ofd_unlock(fd, 0, 2);
        }
    }
}

/// The region's path for `--iface`: a bare name under [`SHM_DIR`], or an absolute path.
fn region_path(iface: &str) -> Result<PathBuf, String> {
    let path = if iface.starts_with('/') {
        PathBuf::from(iface)
    } else if iface.contains('/') {
        return Err(format!(
            "wire {iface:?}: give a name (a file under {SHM_DIR}) or an absolute path"
        ));
    } else if iface.is_empty() || iface == "." || iface == ".." {
        return Err(format!("wire name {iface:?} is not a file name"));
    } else {
        Path::new(SHM_DIR).join(iface)
    };
    if iface.bytes().any(|b| b == 0) {
        return Err(format!("wire name {iface:?} contains a NUL byte"));
    }
    if path.file_name().is_none() {
        return Err(format!("wire {iface:?} names a directory, not a file"));
    }
    // The doorbells' paths must fit a sockaddr_un (108 bytes with the NUL).
    let bell = bell_path(&path, Side::A);
    if bell.as_os_str().len() >= 108 {
        return Err(format!(
            "wire path {} is too long: its doorbell {} must fit in 107 bytes",
            path.display(),
            bell.display()
        ));
    }
    Ok(path)
}

fn bell_path(region: &Path, side: Side) -> PathBuf {
    let mut name = region.as_os_str().to_owned();
    name.push(format!(".bell-{}", side.letter()));
    PathBuf::from(name)
}

fn system(iface: &str, step: &'static str, source: io::Error) -> OpenError {
    OpenError::System { kind: BackendKind::Shm, iface: iface.to_owned(), step, source }
}

fn bad_wire(path: &Path, reason: impl Into<String>) -> OpenError {
    OpenError::BadWire { path: path.to_owned(), reason: reason.into() }
}

fn mac_word(mac: EthernetAddress) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(&mac.0);
    u64::from_le_bytes(bytes)
}

/// True if `path` still names the file `file` is open on.
fn same_file(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes `path` if it is a socket (never a file of someone else's that happens to be there).
fn remove_socket(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// What one attempt at opening found.
enum Attempt {
    /// We hold a side of a region that fits.
    Settled(File, Side, Geometry, SharedMap),
    /// Somebody else was creating, leaving or replacing it at the same moment: try again.
    Retry,
}

/// Creates the region or attaches to it, and settles which side we are (module doc, "Who is
/// alive").
fn settle(
    iface: &str,
    path: &Path,
    wanted: Geometry,
) -> Result<(File, Side, Geometry, SharedMap), OpenError> {
    for _ in 0..OPEN_ATTEMPTS {
        let attempt = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => attach(iface, path, file, wanted)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => create(iface, path, wanted)?,
            Err(e) => return Err(system(iface, "open the wire's region", e)),
        };
        match attempt {
            Attempt::Settled(file, side, geometry, map) => return Ok((file, side, geometry, map)),
            Attempt::Retry => std::thread::sleep(OPEN_RETRY_PAUSE),
        }
    }
    Err(bad_wire(
        path,
        "two other instances keep it busy (both sides attached): stop one, or \
        use another name",
    ))
}

/// Makes a region under a temporary name, takes side a of it, and links it into place; if
/// another instance linked one first, we attach to that one instead (the next attempt).
fn create(iface: &str, path: &Path, wanted: Geometry) -> Result<Attempt, OpenError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".new-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let temp = PathBuf::from(temp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad_wire(path, "its directory does not exist"),
        _ => system(iface, "create the wire's region", e),
    })?;
    let result = (|| {
        // The umask cannot widen 0600, but a strange one could narrow it to unusable.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| system(iface, "make the region mode 0600", e))?;
        let len = wanted.file_len();
        file.set_len(len as u64).map_err(|e| system(iface, "size the wire's region", e))?;
        let map = SharedMap::new(file.as_fd(), len)
            .map_err(|e| system(iface, "map the wire's region", e))?;
        map.u32_at(VERSION_AT).store(VERSION, Ordering::Relaxed);
        map.u32_at(MTU_AT).store(wanted.mtu as u32, Ordering::Relaxed);
        map.u32_at(SLOT_SIZE_AT).store(wanted.slot_size as u32, Ordering::Relaxed);
        map.u32_at(SLOT_COUNT_AT).store(wanted.slots, Ordering::Relaxed);
        map.u64_at(FILE_LEN_AT).store(len as u64, Ordering::Relaxed);
        map.u64_at(MAGIC_AT).store(MAGIC, Ordering::Release);
        if !sys::ofd_try_lock(file.as_fd(), Side::A.lock_byte(), 1)
            .map_err(|e| system(iface, "lock side a of the region", e))?
        {
            return Err(system(iface, "lock side a of a new region", io::ErrorKind::Other.into()));
        }
        // link(2) is the atomic publication: the region appears complete and locked, or not
        // at all if another instance's came first.
        match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(Attempt::Settled(file, Side::A, wanted, map)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Attempt::Retry),
            Err(e) => Err(system(iface, "link the wire's region into place", e)),
        }
    })();
    let _ = std::fs::remove_file(&temp);
    result
}

/// Checks an existing region and takes a free side of it.
fn attach(iface: &str, path: &Path, file: File, wanted: Geometry) -> Result<Attempt, OpenError> {
    let meta = file.metadata().map_err(|e| system(iface, "stat the wire's region", e))?;
    if !meta.file_type().is_file() {
        return Err(bad_wire(path, "is not a regular file"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(bad_wire(
            path,
            format!(
                "is mode {:04o}: other users could write into the link; remove it",
                meta.mode() & 0o7777
            ),
        ));
    }
    let size = meta.len();
    if size < HEADER_LEN as u64 {
        return Err(bad_wire(
            path,
            format!(
                "is {size} bytes, too short for a wire's header: not a \
            joyride shm wire (remove it or choose another name)"
            ),
        ));
    }
    if size > (1 << 30) {
        return Err(bad_wire(path, format!("is {size} bytes: not a joyride shm wire")));
    }
    let map = SharedMap::new(file.as_fd(), size as usize)
        .map_err(|e| system(iface, "map the wire's region", e))?;
    let geometry = check_header(&map, size).map_err(|reason| bad_wire(path, reason))?;

    let fd = file.as_fd();
    let lock = |side: Side| {
        sys::ofd_try_lock(fd, side.lock_byte(), 1)
            .map_err(|e| system(iface, "lock a side of the region", e))
    };
    let side = if lock(Side::A)? {
        Side::A
    } else if lock(Side::B)? {
        Side::B
    } else {
        // Both held — or one held only for a moment by an instance that is leaving.
        return Ok(Attempt::Retry);
    };
    if !same_file(path, &file) {
        // The last one out removed it between our open and our lock.
        return Ok(Attempt::Retry);
    }
    let peer_alive = sys::ofd_locked_by_other(fd, side.other().lock_byte(), 1)
        .map_err(|e| system(iface, "look at the peer's lock", e))?;
    if !peer_alive {
        // Nobody holds the other side: its owners are gone without cleaning up (they were
        // killed). Replace it, holding both locks so no one attaches meanwhile.
        if sys::ofd_try_lock(fd, 0, 2).map_err(|e| system(iface, "lock the stale region", e))?
            && same_file(path, &file)
        {
            tracing::info!(wire = %path.display(), "replacing a stale wire region");
            let _ = std::fs::remove_file(path);
            remove_socket(&bell_path(path, Side::A));
            remove_socket(&bell_path(path, Side::B));
        }
        return Ok(Attempt::Retry);
    }
    if geometry.mtu != wanted.mtu {
        return Err(bad_wire(
            path,
            format!(
                "the instance on side {} uses MTU {}, this one {}: give both the same --mtu",
                side.other().letter(),
                geometry.mtu,
                wanted.mtu
            ),
        ));
    }
    Ok(Attempt::Settled(file, side, geometry, map))
}

/// The geometry a region's header describes, if it is a wire of ours and consistent with the
/// file's `size`.
fn check_header(map: &SharedMap, size: u64) -> Result<Geometry, String> {
    let magic = map.u64_at(MAGIC_AT).load(Ordering::Acquire);
    if magic != MAGIC {
        return Err(format!(
            "not a joyride shm wire (magic {magic:#018x}); remove it or choose another name"
        ));
    }
    let version = map.u32_at(VERSION_AT).load(Ordering::Relaxed);
    if version != VERSION {
        return Err(format!(
            "wire layout version {version}, this joyride-stackd speaks {VERSION}: run the same \
             version on both sides"
        ));
    }
    let mtu = map.u32_at(MTU_AT).load(Ordering::Relaxed) as usize;
    let slot_size = map.u32_at(SLOT_SIZE_AT).load(Ordering::Relaxed) as usize;
    let slots = map.u32_at(SLOT_COUNT_AT).load(Ordering::Relaxed);
    let file_len = map.u64_at(FILE_LEN_AT).load(Ordering::Relaxed);
    let corrupt = |what: String| Err(format!("corrupt header: {what}"));
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return corrupt(format!("MTU {mtu} outside {MIN_MTU}..={MAX_MTU}"));
    }
    if ![false, true].iter().any(|&offload| slot_size == slot_size_for(frame_max_for(mtu, offload)))
    {
        return corrupt(format!("slot size {slot_size} for MTU {mtu}"));
    }
    if !slots.is_power_of_two() || !(MIN_SLOTS..=MAX_SLOTS).contains(&slots) {
        return corrupt(format!("{slots} slots per ring"));
    }
    let geometry = Geometry { mtu, slot_size, slots };
    if file_len != geometry.file_len() as u64 || size != file_len {
        return corrupt(format!(
            "the layout needs {} bytes, the header says {file_len}, the file has {size}",
            geometry.file_len()
        ));
    }
    Ok(geometry)
}

/// Binds our doorbell socket (mode 0600), replacing a dead predecessor's.
fn bind_bell(
    iface: &str,
    region: &Path,
    side: Side,
) -> Result<(UnixDatagram, PathBuf, PathBuf), OpenError> {
    let path = bell_path(region, side);
    match std::fs::symlink_metadata(&path) {
        // We hold this side's lock, so a socket there is a dead instance's.
        Ok(meta) if meta.file_type().is_socket() => {
            let _ = std::fs::remove_file(&path);
        }
        Ok(_) => {
            return Err(bad_wire(
                &path,
                "is in the way of the wire's doorbell and is not a socket: remove it",
            ))
        }
        Err(_) => {}
    }
    let bell = UnixDatagram::bind(&path).map_err(|e| system(iface, "bind the doorbell", e))?;
    let setup = || -> io::Result<()> {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        bell.set_nonblocking(true)
    };
    if let Err(e) = setup() {
        let _ = std::fs::remove_file(&path);
        return Err(system(iface, "set the doorbell up", e));
    }
    Ok((bell, path, bell_path(region, side.other())))
}

#[cfg(test)]
mod tests;
