//! The AF_PACKET backend: an existing interface (one end of a veth pair, a NIC) driven through
//! PACKET_MMAP rings shared with the kernel.
//!
//! - **Receive**, two ways ([`RxMode`]):
//!   - `Blocks` (the default): a TPACKET_V3 ring of blocks. The kernel packs frames into the
//!     current block and hands it over (status TP_STATUS_USER) when it is full or when
//!     [`RingConfig::rx_block_timeout_ms`] has passed since it opened it; `receive` walks the
//!     frames of each handed-over block, delivering them straight out of the ring, and gives
//!     the block back. Memory-dense and cheap per frame under load, but a lone frame waits for
//!     the timeout before the socket even polls readable: measured here, a UDP ping-pong through
//!     the engine takes ~1 ms per round trip (against ~11 µs over a TAP).
//!   - `Frames`: a TPACKET_V2 ring of fixed-size slots, each handed over as soon as it is
//!     filled: no added latency, at the cost of a full slot (2 KiB at MTU 1500) per frame.
//! - **Transmit**: a ring of fixed-size slots (in the socket's TPACKET version; the kernel
//!   transmits frame by frame either way). `transmit` lends free slots to the engine and marks
//!   them ready; [`flush`](Backend::flush) sends them all with one
//!   `send(fd, NULL, 0, MSG_DONTWAIT)`. When the ring is full, `transmit` kicks once to make room
//!   and otherwise stops (`tx_blocked`); the socket polls writable once a slot is free again.
//! - The socket is made with protocol 0 (receiving nothing) and bound to the interface only once
//!   the rings exist, so no frame of another interface slips in; our own transmissions and the
//!   kernel's are not looped back (PACKET_IGNORE_OUTGOING, and a PACKET_OUTGOING check for
//!   kernels without it). Malformed TX frames are skipped by the kernel (PACKET_LOSS) instead of
//!   stalling the ring. PACKET_QDISC_BYPASS is left off: with it, a busy device drops frames
//!   instead of queueing them.
//! - Frames the local kernel sent through a veth peer usually carry partial TCP/UDP checksums
//!   (TP_STATUS_CSUMNOTREADY: the kernel left them to offload hardware): they are completed in
//!   place before delivery. Frames longer than the MTU — GSO super-segments, which a veth passes
//!   unsegmented from a peer with GSO/TSO on — cannot be received whole and are counted as
//!   oversized; cap the peer's segments (`ip link set dev PEER gso_max_segs 1`, or
//!   `ethtool -K PEER tso off gso off`).
//!
//! **Sharing the interface with the kernel.** Promiscuous mode stays off: the engine uses the
//! interface's own MAC (read with SIOCGIFHWADDR) unless told otherwise, and then the kernel
//! receives the same frames as the engine. That is harmless as long as the kernel has no IP
//! address on the interface that the engine also uses (it would answer ARP for it and reset the
//! engine's TCP connections) and does not forward (ip_forward=0), so it drops the engine's
//! traffic silently. A different engine MAC is added to the interface's unicast filter
//! (PACKET_MR_UNICAST), which puts NICs without such a filter into promiscuous mode.
//!
//! **Link down.** The kernel flags the socket with ENETDOWN (EPOLLERR, level-triggered) when the
//! interface goes down; [`Backend::handle_poll_error`] clears it. Frames queued in the TX ring
//! meanwhile go out when the link comes back.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use fbsd_tcp::wire::EthernetAddress;

use super::offload;
use super::sys::layout::{self, FrameFormat};
use super::sys::{self, IfIoctl, IfReq, RingMap};
use super::{
    check_interface, interface_running, Backend, BackendConfig, BackendError, BackendKind,
    BackendStats, OpenError, ETHERNET_HEADER,
};

/// How the kernel hands received frames over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxMode {
    /// TPACKET_V3 blocks: batched, handed over when full or after the block timeout.
    Blocks,
    /// TPACKET_V2 slots: each frame handed over at once.
    Frames,
}

/// Sizes of the rings shared with the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// How received frames are handed over.
    pub rx_mode: RxMode,
    /// Bytes per receive block: a multiple of the page size, with room for one whole frame
    /// (its slot, in `Frames` mode).
    pub rx_block_size: usize,
    /// Receive blocks.
    pub rx_blocks: usize,
    /// `Blocks` mode: milliseconds the kernel waits before handing over a partly filled block
    /// (≥ 1).
    pub rx_block_timeout_ms: u32,
    /// Transmit slots (rounded up to fill whole blocks).
    pub tx_frames: usize,
}

impl Default for RingConfig {
    /// `Blocks` mode with 8 MiB of receive ring in 64 blocks of 128 KiB (at 10 Gbit/s a block
    /// fills in ~0.1 ms), a 1 ms block timeout, and 1024 transmit slots.
    fn default() -> Self {
        RingConfig {
            rx_mode: RxMode::Blocks,
            rx_block_size: 128 << 10,
            rx_blocks: 64,
            rx_block_timeout_ms: 1,
            tx_frames: 1024,
        }
    }
}

impl RingConfig {
    /// `Frames` mode for latency: 4096 receive slots (8 MiB at MTU 1500) and 1024 transmit
    /// slots.
    pub fn low_latency() -> RingConfig {
        RingConfig { rx_mode: RxMode::Frames, rx_blocks: 64, ..RingConfig::default() }
    }

    fn format(&self) -> &'static FrameFormat {
        match self.rx_mode {
            RxMode::Blocks => &layout::V3,
            RxMode::Frames => &layout::V2,
        }
    }
}

/// Transmit blocks are this large unless one slot needs more.
const TX_BLOCK_SIZE: usize = 64 << 10;

/// Room a received frame needs in front of its Ethernet header: the frame header and its
/// `sockaddr_ll`, aligned, plus the slack the kernel leaves so that the IP header is aligned.
const RX_HEADROOM: usize = 128;

/// Where the next frame of a partly consumed V3 block is.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Offset of the next frame header from the block's start.
    offset: usize,
    /// Frames left in the block.
    remaining: u32,
}

#[derive(Debug)]
struct RxRing {
    mode: RxMode,
    block_size: usize,
    /// Blocks (V3) or slots (V2) in the ring.
    areas: usize,
    /// Slot size and slots per block (V2).
    frame_size: usize,
    frames_per_block: usize,
    /// The block or slot `receive` reads next.
    next: usize,
    /// Progress inside block `next` when a previous call stopped at `max` (V3).
    cursor: Option<Cursor>,
}

impl RxRing {
    /// Offset and length of area `index` (a block in V3, a slot in V2).
    fn area(&self, index: usize) -> (usize, usize) {
        match self.mode {
            RxMode::Blocks => (index * self.block_size, self.block_size),
            RxMode::Frames => (
                index / self.frames_per_block * self.block_size
                    + index % self.frames_per_block * self.frame_size,
                self.frame_size,
            ),
        }
    }
}

#[derive(Debug)]
struct TxRing {
    format: &'static FrameFormat,
    /// Offset of the TX ring in the mapping (the RX ring comes first).
    base: usize,
    block_size: usize,
    frame_size: usize,
    frames_per_block: usize,
    frames: usize,
    /// The slot `transmit` fills next.
    head: usize,
    /// Slots marked for sending since the last successful kick.
    unkicked: usize,
    blocked: bool,
}

impl TxRing {
    fn offset(&self, slot: usize) -> usize {
        self.base
            + slot / self.frames_per_block * self.block_size
            + slot % self.frames_per_block * self.frame_size
    }
}

/// Counters and the one-warning-per-kind flags, apart from the rings so that frame handling can
/// update them while a ring area is borrowed.
#[derive(Debug, Default)]
struct Book {
    stats: BackendStats,
    warned_oversized: bool,
    warned_corrupt: bool,
    warned_link_down: bool,
}

/// An interface bound through PACKET_MMAP rings.
#[derive(Debug)]
pub struct AfPacketBackend {
    // Field order is drop order: the mapping goes before the socket it maps.
    rings: RingMap,
    socket: OwnedFd,
    /// An AF_INET datagram socket in the interface's namespace, for interface ioctls.
    control: OwnedFd,
    name: String,
    ifindex: i32,
    mac: EthernetAddress,
    mtu: usize,
    rx: RxRing,
    tx: TxRing,
    book: Book,
}

impl AfPacketBackend {
    /// Binds the existing interface `config.iface` with the default rings.
    pub fn open(config: &BackendConfig) -> Result<AfPacketBackend, OpenError> {
        Self::open_with(config, RingConfig::default())
    }

    /// Binds the existing interface `config.iface` with rings of the given sizes.
    pub fn open_with(
        config: &BackendConfig,
        rings: RingConfig,
    ) -> Result<AfPacketBackend, OpenError> {
        config.validate()?;
        let iface = config.iface.as_str();
        let invalid =
            |reason: String| OpenError::InvalidConfig { kind: BackendKind::AfPacket, reason };
        if config.host_addr.is_some() {
            return Err(invalid(format!(
                "host_addr is for the tap backend; give {iface} its kernel-side address yourself"
            )));
        }
        let fail = |step: &'static str| move |source: io::Error| setup_error(iface, step, source);

        let control = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .map_err(fail("open a control socket"))?;
        let ioctl = |op: IfIoctl| -> io::Result<IfReq> {
            let mut req = IfReq::new(iface)?;
            sys::ioctl_ifreq(control.as_fd(), op, &mut req)?;
            Ok(req)
        };
        let ifindex = ioctl(IfIoctl::GetIndex)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENODEV) => OpenError::NoSuchInterface {
                    kind: BackendKind::AfPacket,
                    iface: iface.to_owned(),
                },
                _ => setup_error(iface, "look up the interface (SIOCGIFINDEX)", source),
            })?
            .int();
        let (hw_type, own_mac) =
            ioctl(IfIoctl::GetHwAddr).map_err(fail("read its MAC (SIOCGIFHWADDR)"))?.hw_addr();
        if hw_type != libc::ARPHRD_ETHER {
            return Err(invalid(format!("{iface} is not an Ethernet interface (type {hw_type})")));
        }
        let if_mtu = ioctl(IfIoctl::GetMtu).map_err(fail("read its MTU (SIOCGIFMTU)"))?.int();
        if config.mtu > usize::try_from(if_mtu).unwrap_or(0) {
            return Err(invalid(format!("MTU {} exceeds {iface}'s MTU of {if_mtu}", config.mtu)));
        }
        let own_mac = EthernetAddress(own_mac);
        let mac = config.mac.unwrap_or(own_mac);

        let geometry = Geometry::new(rings, config.mtu).map_err(invalid)?;
        let format = rings.format();

        // Protocol 0: nothing is queued to the socket until `bind_packet` below.
        let socket = sys::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => OpenError::NeedsCapability {
                    kind: BackendKind::AfPacket,
                    iface: iface.to_owned(),
                    step: "open a packet socket",
                    capability: "CAP_NET_RAW",
                },
                _ => setup_error(iface, "open a packet socket", source),
            })?;
        let fd = socket.as_fd();
        let sol = libc::SOL_PACKET;
        sys::setsockopt(fd, sol, libc::PACKET_VERSION, &format.version)
            .map_err(fail("select the ring layout (PACKET_VERSION)"))?;
        sys::setsockopt(fd, sol, libc::PACKET_LOSS, &1i32)
            .map_err(fail("skip malformed TX frames (PACKET_LOSS)"))?;
        if let Err(e) = sys::setsockopt(fd, sol, libc::PACKET_IGNORE_OUTGOING, &1i32) {
            // Before Linux 4.20: the PACKET_OUTGOING check in `receive` does the same work.
            tracing::debug!(iface, error = %e, "PACKET_IGNORE_OUTGOING unavailable");
        }
        let rx_req = sys::tpacket_req3(
            geometry.rx_block_size,
            geometry.rx_blocks,
            geometry.rx_frame_size,
            match rings.rx_mode {
                RxMode::Blocks => rings.rx_block_timeout_ms,
                RxMode::Frames => 0,
            },
        )
        .map_err(fail("size the RX ring"))?;
        sys::setsockopt(fd, sol, libc::PACKET_RX_RING, &rx_req)
            .map_err(fail("set up the RX ring (PACKET_RX_RING)"))?;
        let tx_req = sys::tpacket_req3(
            geometry.tx_block_size,
            geometry.tx_blocks,
            geometry.tx_frame_size,
            0,
        )
        .map_err(fail("size the TX ring"))?;
        sys::setsockopt(fd, sol, libc::PACKET_TX_RING, &tx_req)
            .map_err(fail("set up the TX ring (PACKET_TX_RING)"))?;
        let map = RingMap::new(fd, geometry.rx_len() + geometry.tx_len())
            .map_err(fail("map the rings"))?;
        sys::bind_packet(fd, ifindex, libc::ETH_P_ALL as u16)
            .map_err(fail("bind to the interface"))?;
        if mac != own_mac {
            let mut mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: sys::PACKET_MR_UNICAST as u16,
                mr_alen: 6,
                mr_address: [0; 8],
            };
            mreq.mr_address[..6].copy_from_slice(&mac.0);
            sys::setsockopt(fd, sol, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(fail("add the engine's MAC to the interface (PACKET_MR_UNICAST)"))?;
        }

        tracing::info!(iface, ifindex, mtu = config.mtu, %mac, rx_mode = ?rings.rx_mode,
            rx_ring = geometry.rx_len(), tx_slots = geometry.tx_frames(), "af-packet backend up");
        let rx_frames_per_block = geometry.rx_block_size / geometry.rx_frame_size;
        Ok(AfPacketBackend {
            rings: map,
            socket,
            control,
            name: iface.to_owned(),
            ifindex,
            mac,
            mtu: config.mtu,
            rx: RxRing {
                mode: rings.rx_mode,
                block_size: geometry.rx_block_size,
                areas: match rings.rx_mode {
                    RxMode::Blocks => geometry.rx_blocks,
                    RxMode::Frames => geometry.rx_blocks * rx_frames_per_block,
                },
                frame_size: geometry.rx_frame_size,
                frames_per_block: rx_frames_per_block,
                next: 0,
                cursor: None,
            },
            tx: TxRing {
                format,
                base: geometry.rx_len(),
                block_size: geometry.tx_block_size,
                frame_size: geometry.tx_frame_size,
                frames_per_block: geometry.tx_block_size / geometry.tx_frame_size,
                frames: geometry.tx_frames(),
                head: 0,
                unkicked: 0,
                blocked: false,
            },
            book: Book::default(),
        })
    }

    /// Asks the kernel to send every frame marked ready. Transient refusals (no buffer, link
    /// down) leave the frames queued for the next kick.
    fn kick(&mut self) -> Result<(), BackendError> {
        match sys::kick_tx_ring(self.socket.as_fd()) {
            Ok(_) => {
                self.tx.unkicked = 0;
                self.book.warned_link_down = false;
                Ok(())
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS) => Ok(()),
                Some(libc::ENETDOWN) => {
                    if !self.book.warned_link_down {
                        self.book.warned_link_down = true;
                        tracing::warn!(iface = %self.name,
                            "link down: transmit frames wait in the ring until it comes back");
                    }
                    Ok(())
                }
                Some(libc::ENXIO | libc::ENODEV) => {
                    Err(BackendError::DeviceGone { iface: self.name.clone(), source: e })
                }
                _ => Err(BackendError::Io {
                    iface: self.name.clone(),
                    step: "kick the TX ring",
                    source: e,
                }),
            },
        }
    }

    /// `receive` for V3 blocks.
    fn receive_blocks(&mut self, max: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let max_frame = self.mtu + ETHERNET_HEADER;
        let mut delivered = 0;
        while delivered < max {
            let (offset, len) = self.rx.area(self.rx.next);
            let Some(mut block) = self.rings.rx_block(offset, len) else {
                break;
            };
            let mut cursor = match self.rx.cursor {
                Some(cursor) => cursor,
                None => {
                    if block.status() & libc::TP_STATUS_LOSING != 0 {
                        self.book.stats.rx_dropped += read_drops(&self.socket, &self.name);
                    }
                    parse_block(block.bytes()).unwrap_or_else(|| {
                        self.book.corrupt(&self.name, self.rx.next);
                        Cursor { offset: 0, remaining: 0 }
                    })
                }
            };
            while cursor.remaining > 0 && delivered < max {
                let frame = parse_frame(block.bytes(), cursor.offset, &layout::V3)
                    // Every frame but the last must point past itself.
                    .filter(|frame| cursor.remaining == 1 || frame.next > 0);
                let Some(frame) = frame else {
                    self.book.corrupt(&self.name, self.rx.next);
                    self.book.stats.rx_dropped += u64::from(cursor.remaining);
                    cursor.remaining = 0;
                    break;
                };
                cursor.remaining -= 1;
                cursor.offset = cursor.offset.saturating_add(frame.next);
                if self.book.take(&self.name, max_frame, frame, block.bytes_mut(), deliver) {
                    delivered += 1;
                }
            }
            if cursor.remaining > 0 {
                self.rx.cursor = Some(cursor);
                break;
            }
            block.release();
            self.rx.cursor = None;
            self.rx.next = (self.rx.next + 1) % self.rx.areas;
        }
        delivered
    }

    /// `receive` for V2 slots.
    fn receive_frames(&mut self, max: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let max_frame = self.mtu + ETHERNET_HEADER;
        let mut delivered = 0;
        while delivered < max {
            let (offset, len) = self.rx.area(self.rx.next);
            let Some(mut slot) = self.rings.rx_frame(offset, len) else {
                break;
            };
            if slot.status() & libc::TP_STATUS_LOSING != 0 {
                self.book.stats.rx_dropped += read_drops(&self.socket, &self.name);
            }
            match parse_frame(slot.bytes(), 0, &layout::V2) {
                Some(frame) => {
                    if self.book.take(&self.name, max_frame, frame, slot.bytes_mut(), deliver) {
                        delivered += 1;
                    }
                }
                None => {
                    self.book.corrupt(&self.name, self.rx.next);
                    self.book.stats.rx_dropped += 1;
                }
            }
            slot.release();
            self.rx.next = (self.rx.next + 1) % self.rx.areas;
        }
        delivered
    }
}

impl Book {
    /// Delivers `frame` (found in `area`) unless it is a looped-back transmission or too long,
    /// completing a partial checksum first. True if delivered.
    fn take(
        &mut self,
        iface: &str,
        max_frame: usize,
        frame: RxFrame,
        area: &mut [u8],
        deliver: &mut dyn FnMut(&[u8]),
    ) -> bool {
        if frame.pkttype == libc::PACKET_OUTGOING {
            self.stats.rx_ignored += 1;
            return false;
        }
        if frame.snaplen < frame.len || frame.len > max_frame {
            self.stats.rx_oversized += 1;
            if !self.warned_oversized {
                self.warned_oversized = true;
                tracing::warn!(
                    iface,
                    len = frame.len,
                    max_frame,
                    "dropping a frame longer than the MTU: if the peer is a veth or bridge port, \
                     cap its GSO (ip link set dev PEER gso_max_segs 1); further drops are only \
                     counted"
                );
            }
            return false;
        }
        let bytes = &mut area[frame.data..frame.data + frame.snaplen];
        if frame.status & libc::TP_STATUS_CSUMNOTREADY != 0 && offload::complete_l4_checksum(bytes)
        {
            self.stats.rx_checksum_completed += 1;
        }
        deliver(bytes);
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.snaplen as u64;
        true
    }

    /// Notes a ring area whose header points outside it (never seen; the kernel writes them).
    fn corrupt(&mut self, iface: &str, area: usize) {
        if !self.warned_corrupt {
            self.warned_corrupt = true;
            tracing::error!(iface, area, "receive ring area describes frames outside itself");
        }
    }
}

/// Ring sizes derived from a [`RingConfig`] and the MTU, checked against the kernel's rules.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    rx_block_size: usize,
    rx_blocks: usize,
    rx_frame_size: usize,
    tx_block_size: usize,
    tx_blocks: usize,
    tx_frame_size: usize,
}

impl Geometry {
    fn new(rings: RingConfig, mtu: usize) -> Result<Geometry, String> {
        let page = sys::page_size();
        let frame = mtu + ETHERNET_HEADER;
        // Power-of-two slots keep slots from straddling pages needlessly.
        let rx_slot = (RX_HEADROOM + frame).next_power_of_two();
        let rx_min = match rings.rx_mode {
            RxMode::Blocks => layout::BLOCK_DESC_LEN + RX_HEADROOM + frame,
            RxMode::Frames => rx_slot,
        };
        if !rings.rx_block_size.is_multiple_of(page) || rings.rx_block_size < rx_min {
            return Err(format!(
                "RX block size {} must be a multiple of the page size ({page}) and at least {rx_min}",
                rings.rx_block_size
            ));
        }
        if rings.rx_blocks == 0 || rings.tx_frames == 0 || rings.rx_block_timeout_ms == 0 {
            return Err("rings need at least one block, one TX slot and a 1 ms timeout".to_owned());
        }
        let tx_frame_size = (rings.format().tx_data + frame).next_power_of_two();
        let tx_block_size = TX_BLOCK_SIZE.max(tx_frame_size).next_multiple_of(page);
        let per_block = tx_block_size / tx_frame_size;
        Ok(Geometry {
            rx_block_size: rings.rx_block_size,
            rx_blocks: rings.rx_blocks,
            // V3 packs frames by their real size and only checks that this divides blocks.
            rx_frame_size: rx_slot.min(rings.rx_block_size),
            tx_block_size,
            tx_blocks: rings.tx_frames.div_ceil(per_block),
            tx_frame_size,
        })
    }

    fn rx_len(&self) -> usize {
        self.rx_block_size * self.rx_blocks
    }

    fn tx_len(&self) -> usize {
        self.tx_block_size * self.tx_blocks
    }

    fn tx_frames(&self) -> usize {
        self.tx_blocks * (self.tx_block_size / self.tx_frame_size)
    }
}

fn setup_error(iface: &str, step: &'static str, source: io::Error) -> OpenError {
    OpenError::from_setup(BackendKind::AfPacket, "CAP_NET_RAW", iface, step, source)
}

/// One received frame, as the kernel described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RxFrame {
    /// Offset of the Ethernet header from the area's start.
    data: usize,
    /// Bytes present.
    snaplen: usize,
    /// Bytes the frame had.
    len: usize,
    status: u32,
    pkttype: u8,
    /// Offset to the next frame header in a V3 block (0 for the last, and in V2).
    next: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

/// The frame count and first frame offset of a V3 block; `None` if they do not fit the block.
fn parse_block(block: &[u8]) -> Option<Cursor> {
    let remaining = u32_at(block, layout::BLOCK_NUM_PKTS)?;
    let offset = u32_at(block, layout::BLOCK_FIRST_PKT)? as usize;
    (offset >= layout::BLOCK_DESC_LEN && offset < block.len())
        .then_some(Cursor { offset, remaining })
}

/// The frame whose `format` header is at `at` in `area`; `None` if any part of it falls
/// outside the area.
fn parse_frame(area: &[u8], at: usize, format: &FrameFormat) -> Option<RxFrame> {
    let field = |offset: usize| at.checked_add(offset);
    let pkttype = *area.get(field(format.ll)?.checked_add(layout::LL_PKTTYPE)?)?;
    let data = at.checked_add(usize::from(u16_at(area, field(format.mac)?)?))?;
    let snaplen = u32_at(area, field(format.snaplen)?)? as usize;
    if data < field(format.header_len)? || data.checked_add(snaplen)? > area.len() {
        return None;
    }
    let next = match format.next {
        Some(next) => u32_at(area, field(next)?)? as usize,
        None => 0,
    };
    Some(RxFrame {
        data,
        snaplen,
        len: u32_at(area, field(format.len)?)? as usize,
        status: u32_at(area, field(format.status)?)?,
        pkttype,
        next,
    })
}

impl Backend for AfPacketBackend {
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
        interface_running(self.control.as_fd(), &self.name)
    }
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.socket.as_fd())
    }

    fn receive(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BackendError> {
        Ok(match self.rx.mode {
            RxMode::Blocks => self.receive_blocks(max, deliver),
            RxMode::Frames => self.receive_frames(max, deliver),
        })
    }

    fn transmit(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError> {
        let capacity = self.mtu + ETHERNET_HEADER;
        let (frame_size, format) = (self.tx.frame_size, self.tx.format);
        let mut accepted = 0;
        self.tx.blocked = false;
        loop {
            let offset = self.tx.offset(self.tx.head);
            if self.rings.tx_frame(offset, frame_size, format).is_none() && self.tx.unkicked > 0 {
                // Full: sending what is queued frees slots (at once on most devices).
                self.kick()?;
            }
            let Some(mut slot) = self.rings.tx_frame(offset, frame_size, format) else {
                self.tx.blocked = true;
                return Ok(accepted);
            };
            let Some(len) = build(&mut slot.data()[..capacity]) else {
                return Ok(accepted);
            };
            if len > capacity {
                return Err(BackendError::FrameTooLong { iface: self.name.clone(), len, capacity });
            }
            if slot.was_refused() {
                self.book.stats.tx_dropped += 1;
            }
            slot.submit(len);
            self.tx.head = (self.tx.head + 1) % self.tx.frames;
            self.tx.unkicked += 1;
            self.book.stats.tx_frames += 1;
            self.book.stats.tx_bytes += len as u64;
            accepted += 1;
        }
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        if self.tx.unkicked > 0 {
            self.kick()?;
        }
        let head = self.tx.offset(self.tx.head);
        self.tx.blocked = self.rings.tx_frame(head, self.tx.frame_size, self.tx.format).is_none();
        Ok(())
    }

    fn tx_blocked(&self) -> bool {
        self.tx.blocked
    }

    fn handle_poll_error(&mut self) -> Result<(), BackendError> {
        // Reading SO_ERROR clears it.
        let error: i32 = sys::getsockopt(self.socket.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)
            .map_err(|source| BackendError::Io {
                iface: self.name.clone(),
                step: "read the socket error (SO_ERROR)",
                source,
            })?;
        check_interface(self.control.as_fd(), &self.name, self.ifindex)?;
        if error != 0 {
            tracing::warn!(iface = %self.name, error = %io::Error::from_raw_os_error(error),
                link_up = self.link_up(), "packet socket reported an error");
        }
        Ok(())
    }

    fn stats(&self) -> BackendStats {
        self.book.stats
    }
}

/// Reads and resets the kernel's drop counter (PACKET_STATISTICS).
fn read_drops(socket: &OwnedFd, name: &str) -> u64 {
    match sys::getsockopt::<libc::tpacket_stats_v3>(
        socket.as_fd(),
        libc::SOL_PACKET,
        libc::PACKET_STATISTICS,
    ) {
        Ok(kernel) => u64::from(kernel.tp_drops),
        Err(e) => {
            tracing::debug!(iface = name, error = %e, "PACKET_STATISTICS");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use fbsd_tcp::wire::{ChecksumPolicy, Ipv4Packet, UdpPacket, UdpRepr};

    use super::*;
    use crate::backend::testnet::{
        echo_request, kernel_cidr, parse, privileged, Engine, NetNs, Seen, ENGINE_IP,
    };

    fn open_in(ns: &NetNs, iface: &str, rings: RingConfig) -> AfPacketBackend {
        let config = BackendConfig::new(BackendKind::AfPacket, iface);
        ns.run(|| AfPacketBackend::open_with(&config, rings)).expect("open the af-packet backend")
    }

    /// The MAC `ip` reports for `iface`.
    fn link_mac(ns: &NetNs, iface: &str) -> String {
        let (_, out) = ns.ip_output(&format!("-o link show dev {iface}"));
        let after = out.split("link/ether ").nth(1).expect("an Ethernet link");
        after.split_whitespace().next().unwrap().to_owned()
    }

    #[test]
    fn arp_and_ping_the_kernel_through_a_veth_with_blocks() {
        arp_and_ping(RingConfig::default());
    }

    #[test]
    fn arp_and_ping_the_kernel_through_a_veth_with_frames() {
        arp_and_ping(RingConfig::low_latency());
    }

    fn arp_and_ping(rings: RingConfig) {
        if !privileged("af-packet exchange") {
            return;
        }
        let ns = NetNs::new("afp");
        ns.veth_pair("veth0", "veth1");
        let mut backend = open_in(&ns, "veth0", rings);
        assert_eq!((backend.name(), backend.mtu()), ("veth0", 1500));
        assert_eq!(backend.mac().to_string(), link_mac(&ns, "veth0"), "the interface's own MAC");
        assert!(backend.link_up());
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel_mac = engine.arp_then_ping(&mut backend, kernel_cidr().addr);
        assert_eq!(kernel_mac.to_string(), link_mac(&ns, "veth1"));
        let stats = backend.stats();
        assert_eq!((stats.tx_frames, stats.tx_bytes), (2, 42 + 98));
        assert!(stats.rx_frames >= 2, "{stats:?}");
        assert_eq!((stats.rx_dropped, stats.rx_oversized), (0, 0));
        let (_, promisc) = ns.ip_output("-d -o link show dev veth0");
        assert!(promisc.contains("promiscuity 0"), "{promisc}");
    }

    /// Rings small enough that 10,000 frames wrap them many times.
    fn tiny_rings(rx_mode: RxMode) -> RingConfig {
        RingConfig {
            rx_mode,
            rx_block_size: sys::page_size(),
            rx_blocks: 4,
            rx_block_timeout_ms: 1,
            tx_frames: 32,
        }
    }

    #[test]
    fn ten_thousand_echoes_wrap_both_rings_with_blocks() {
        ten_thousand_echoes(tiny_rings(RxMode::Blocks));
    }

    #[test]
    fn ten_thousand_echoes_wrap_both_rings_with_frames() {
        ten_thousand_echoes(tiny_rings(RxMode::Frames));
    }

    fn ten_thousand_echoes(rings: RingConfig) {
        if !privileged("af-packet burst") {
            return;
        }
        const COUNT: usize = 10_000;
        // Requests in flight: fewer than the receive ring is sure to hold, so the kernel never
        // has to drop a reply. A V3 block retires on its timeout with whatever it holds, so while
        // this process is descheduled (a busy machine) each of the four blocks may close on a
        // single reply: only three are certain. Frames mode has 8 slots.
        let window = match rings.rx_mode {
            RxMode::Blocks => 3,
            RxMode::Frames => 6,
        };
        let ns = NetNs::new("afpburst");
        ns.veth_pair("veth0", "veth1");
        let mut backend = open_in(&ns, "veth0", rings);
        assert_eq!(backend.tx.frames, 32);
        let started = Instant::now();
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel = kernel_cidr().addr;
        let kernel_mac = engine.arp_then_ping(&mut backend, kernel);

        let mut answered = vec![false; COUNT];
        let (mut sent, mut received, mut duplicates) = (0usize, 0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(20);
        while received < COUNT && Instant::now() < deadline {
            let mut frames = Vec::new();
            backend.receive(64, &mut |f| frames.push(parse(f))).unwrap();
            for seen in &frames {
                engine.answer_arp(&mut backend, seen);
                if let Seen::EchoReply { ident: 0x0b0b, seq, data, .. } = seen {
                    let seq = usize::from(*seq);
                    assert_eq!(data.as_slice(), &seq.to_be_bytes()[..], "payload echoed");
                    if std::mem::replace(&mut answered[seq], true) {
                        duplicates += 1;
                    } else {
                        received += 1;
                    }
                }
            }
            let accepted = backend
                .transmit(&mut |buf| {
                    if sent >= COUNT || sent - received >= window {
                        return None;
                    }
                    let frame = echo_request(
                        engine.mac,
                        engine.ip,
                        kernel_mac,
                        kernel,
                        0x0b0b,
                        sent as u16,
                        &sent.to_be_bytes(),
                    );
                    buf[..frame.len()].copy_from_slice(&frame);
                    sent += 1;
                    Some(frame.len())
                })
                .unwrap();
            backend.flush().unwrap();
            if frames.is_empty() && accepted == 0 {
                sys::wait_readable(backend.poll_fd().unwrap(), Duration::from_millis(20)).unwrap();
            }
        }
        let stats = backend.stats();
        assert_eq!((received, duplicates), (COUNT, 0), "every echo answered once; {stats:?}");
        assert_eq!(stats.tx_frames, COUNT as u64 + 2);
        assert!(stats.rx_frames >= COUNT as u64 + 2);
        assert_eq!(stats.rx_dropped, 0);
        // Every frame takes at least its own length of ring: the rings wrapped many times.
        let rx_ring = (rings.rx_block_size * rings.rx_blocks) as u64;
        assert!(stats.rx_bytes > 10 * rx_ring, "{stats:?}");
        assert!(stats.tx_frames > 10 * backend.tx.frames as u64);
        eprintln!("{:?}: {COUNT} echoes in {:?}", rings.rx_mode, started.elapsed());
    }

    #[test]
    fn receive_stops_at_max_inside_a_block_and_resumes_there() {
        if !privileged("af-packet max") {
            return;
        }
        let ns = NetNs::new("afpmax");
        ns.veth_pair("veth0", "veth1");
        let mut backend = open_in(&ns, "veth0", RingConfig::default());
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel = kernel_cidr().addr;
        let kernel_mac = engine.arp_then_ping(&mut backend, kernel);
        let requests: Vec<Vec<u8>> = (0..8u16)
            .map(|seq| {
                echo_request(engine.mac, engine.ip, kernel_mac, kernel, 0x0c0c, seq, &[0; 8])
            })
            .collect();
        crate::backend::testnet::send(&mut backend, &requests);
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seqs.len() < 8 && Instant::now() < deadline {
            let n = backend
                .receive(1, &mut |f| {
                    if let Seen::EchoReply { ident: 0x0c0c, seq, .. } = parse(f) {
                        seqs.push(seq);
                    }
                })
                .unwrap();
            assert!(n <= 1);
            if n == 0 {
                sys::wait_readable(backend.poll_fd().unwrap(), Duration::from_millis(20)).unwrap();
            }
        }
        assert_eq!(seqs, (0..8).collect::<Vec<u16>>(), "one at a time, in order, none lost");
    }

    #[test]
    fn open_errors_say_what_is_wrong() {
        if !privileged("af-packet open errors") {
            return;
        }
        let ns = NetNs::new("afperr");
        ns.veth_pair("veth0", "veth1");
        let open = |config: BackendConfig| {
            ns.run(|| AfPacketBackend::open(&config)).unwrap_err().to_string()
        };
        let base = BackendConfig::new(BackendKind::AfPacket, "veth0");
        assert_eq!(
            open(BackendConfig { iface: "nosuch0".into(), ..base.clone() }),
            "af-packet backend: no interface named nosuch0 (create it first, e.g. a veth pair)"
        );
        assert_eq!(
            open(BackendConfig { mtu: 1600, ..base.clone() }),
            "af-packet backend: MTU 1600 exceeds veth0's MTU of 1500"
        );
        assert_eq!(
            open(BackendConfig { host_addr: Some(kernel_cidr()), ..base.clone() }),
            "af-packet backend: host_addr is for the tap backend; give veth0 its kernel-side \
             address yourself"
        );
        assert_eq!(
            open(BackendConfig { iface: "lo".into(), ..base }),
            "af-packet backend: lo is not an Ethernet interface (type 772)"
        );
        let rings = RingConfig { rx_block_size: 1000, ..RingConfig::default() };
        let err = ns
            .run(|| {
                AfPacketBackend::open_with(
                    &BackendConfig::new(BackendKind::AfPacket, "veth0"),
                    rings,
                )
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("af-packet backend: RX block size 1000 must be a multiple"),
            "{err}"
        );
    }

    #[test]
    fn partial_checksums_from_the_kernel_are_completed() {
        if !privileged("af-packet checksums") {
            return;
        }
        let ns = NetNs::new("afpcsum");
        ns.veth_pair("veth0", "veth1");
        let mut backend = open_in(&ns, "veth0", RingConfig::default());
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel = kernel_cidr().addr;
        engine.arp_then_ping(&mut backend, kernel);
        // The kernel sends UDP through veth1 with checksum offload: only the pseudo-header sum
        // is filled in, and the packet socket on veth0 sees TP_STATUS_CSUMNOTREADY.
        let payload = b"joyride partial checksum".to_vec();
        ns.run(|| {
            let socket = std::net::UdpSocket::bind((kernel, 4000)).unwrap();
            socket.send_to(&payload, (ENGINE_IP, 5000)).unwrap();
        });
        let frame = receive_raw(&mut backend, &engine, |f| {
            f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == 17
        })
        .expect("the datagram arrives within 5 s");
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        let repr = UdpRepr::parse(&udp, kernel, ENGINE_IP, ChecksumPolicy::default())
            .expect("a complete, verifying checksum");
        assert_eq!((repr.src_port, repr.dst_port, repr.payload), (4000, 5000, &payload[..]));
        assert_eq!(backend.stats().rx_checksum_completed, 1);
    }

    /// Receives raw frames until `want` accepts one (answering ARP on the way), for 5 s.
    fn receive_raw(
        backend: &mut AfPacketBackend,
        engine: &Engine,
        mut want: impl FnMut(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mut frames = Vec::new();
            backend.receive(64, &mut |f| frames.push(f.to_vec())).unwrap();
            for frame in frames {
                engine.answer_arp(backend, &parse(&frame));
                if want(&frame) {
                    return Some(frame);
                }
            }
            sys::wait_readable(backend.poll_fd().unwrap(), Duration::from_millis(20)).unwrap();
        }
        None
    }

    #[test]
    fn link_down_raises_a_poll_error_that_is_cleared_and_deletion_is_gone() {
        if !privileged("af-packet link down") {
            return;
        }
        let ns = NetNs::new("afpdown");
        ns.veth_pair("veth0", "veth1");
        let mut backend = open_in(&ns, "veth0", RingConfig::default());
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel = kernel_cidr().addr;
        engine.arp_then_ping(&mut backend, kernel);
        let no_wait = Duration::ZERO;
        let fd = || backend.poll_fd().unwrap();
        assert_eq!(sys::poll_events(fd(), libc::POLLIN, no_wait).unwrap() & libc::POLLERR, 0);

        ns.ip("link set veth0 down");
        assert!(!backend.link_up());
        let events = sys::poll_events(backend.poll_fd().unwrap(), libc::POLLIN, no_wait).unwrap();
        assert_ne!(events & libc::POLLERR, 0, "ENETDOWN shows as POLLERR");
        let events = sys::poll_events(backend.poll_fd().unwrap(), libc::POLLIN, no_wait).unwrap();
        assert_ne!(events & libc::POLLERR, 0, "and stays until it is read");
        backend.handle_poll_error().unwrap();
        let events = sys::poll_events(backend.poll_fd().unwrap(), libc::POLLIN, no_wait).unwrap();
        assert_eq!(events & libc::POLLERR, 0, "handle_poll_error cleared it");
        // A frame sent while down waits in the ring.
        let request = crate::backend::testnet::arp_request(engine.mac, engine.ip, kernel);
        crate::backend::testnet::send(&mut backend, &[request]);

        assert_eq!((backend.tx.unkicked, backend.stats().tx_dropped), (1, 0));

        ns.ip("link set veth0 up");
        engine.arp_then_ping(&mut backend, kernel);
        assert_eq!(backend.tx.unkicked, 0, "the waiting frame went out with the next kick");

        ns.ip("link del veth0");
        let err = backend.handle_poll_error().unwrap_err();
        assert!(matches!(err, BackendError::DeviceGone { .. }), "{err:?}");
    }

    #[test]
    fn gso_super_frames_from_a_veth_peer_are_oversized_until_its_gso_is_capped() {
        if !privileged("af-packet gso") {
            return;
        }
        use std::os::fd::AsFd;
        const UDP_SEGMENT: i32 = 103;
        let ns = NetNs::new("afpgso");
        ns.veth_pair("veth0", "veth1");
        let mut backend = open_in(&ns, "veth0", RingConfig::default());
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel = kernel_cidr().addr;
        engine.arp_then_ping(&mut backend, kernel);
        let send_gso = || {
            ns.run(|| {
                let socket = std::net::UdpSocket::bind((kernel, 0)).unwrap();
                sys::setsockopt(socket.as_fd(), libc::SOL_UDP, UDP_SEGMENT, &1000i32).unwrap();
                socket.send_to(&[0x5a; 3000], (ENGINE_IP, 5000)).unwrap();
            })
        };
        let is_udp = |f: &[u8]| f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == 17;

        // One 3000-byte GSO datagram crosses the veth unsegmented: too long to deliver.
        send_gso();
        let deadline = Instant::now() + Duration::from_secs(2);
        while backend.stats().rx_oversized == 0 && Instant::now() < deadline {
            let _ = receive_raw_once(&mut backend, &engine, is_udp);
        }
        assert_eq!(backend.stats().rx_oversized, 1, "{:?}", backend.stats());

        // Capping the peer's GSO at one segment makes the kernel segment before the veth.
        ns.ip("link set dev veth1 gso_max_segs 1");
        send_gso();
        let mut segments = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while segments.len() < 3 && Instant::now() < deadline {
            segments.extend(receive_raw_once(&mut backend, &engine, is_udp));
        }
        let lens: Vec<usize> = segments.iter().map(Vec::len).collect();
        assert_eq!(lens, [1042, 1042, 1042]);
        assert_eq!(backend.stats().rx_oversized, 1);
    }

    /// One round of receive (answering ARP), returning the frames `want` accepts.
    fn receive_raw_once(
        backend: &mut AfPacketBackend,
        engine: &Engine,
        want: impl Fn(&[u8]) -> bool,
    ) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        backend.receive(64, &mut |f| frames.push(f.to_vec())).unwrap();
        for frame in &frames {
            engine.answer_arp(backend, &parse(frame));
        }
        if frames.is_empty() {
            sys::wait_readable(backend.poll_fd().unwrap(), Duration::from_millis(20)).unwrap();
        }
        frames.into_iter().filter(|f| want(f)).collect()
    }

    #[test]
    fn kernel_drops_on_a_full_ring_are_counted_with_blocks() {
        kernel_drops_are_counted(tiny_rings(RxMode::Blocks), 300);
    }

    #[test]
    fn kernel_drops_on_a_full_ring_are_counted_with_frames() {
        kernel_drops_are_counted(tiny_rings(RxMode::Frames), 30);
    }

    /// Sends `count` echo requests without reading, so that the replies overflow the receive
    /// ring, then reads everything and checks that each reply was delivered or counted dropped.
    fn kernel_drops_are_counted(rings: RingConfig, count: u16) {
        if !privileged("af-packet drops") {
            return;
        }
        let ns = NetNs::new("afpdrop");
        ns.veth_pair("veth0", "veth1");
        let mut backend = open_in(&ns, "veth0", rings);
        let engine = Engine { mac: backend.mac(), ip: ENGINE_IP };
        let kernel = kernel_cidr().addr;
        let kernel_mac = engine.arp_then_ping(&mut backend, kernel);
        let echo = |seq| echo_request(engine.mac, engine.ip, kernel_mac, kernel, 0x0e0e, seq, &[]);
        let requests: Vec<Vec<u8>> = (0..count).map(echo).collect();
        crate::backend::testnet::send(&mut backend, &requests);
        std::thread::sleep(Duration::from_millis(20));
        let mut replies = 0u16;
        let mut drain = |backend: &mut AfPacketBackend| {
            let deadline = Instant::now() + Duration::from_millis(200);
            while Instant::now() < deadline {
                backend
                    .receive(64, &mut |f| {
                        if matches!(parse(f), Seen::EchoReply { ident: 0x0e0e, .. }) {
                            replies += 1;
                        }
                    })
                    .unwrap();
                sys::wait_readable(backend.poll_fd().unwrap(), Duration::from_millis(10)).unwrap();
            }
        };
        drain(&mut backend);
        // The kernel reports drops with the next frame it hands over: one more exchange.
        crate::backend::testnet::send(&mut backend, &[echo(count)]);
        drain(&mut backend);
        let dropped = backend.stats().rx_dropped;
        eprintln!("{:?}: {replies} replies delivered, {dropped} counted dropped", rings.rx_mode);
        assert!(dropped > 0, "the ring overflowed");
        assert!(u64::from(replies) < u64::from(count));
        // Every reply was either delivered or counted (the kernel may have dropped an ARP
        // probe too).
        let accounted = u64::from(replies) + dropped;
        assert!(
            (u64::from(count) + 1..=u64::from(count) + 3).contains(&accounted),
            "{replies} replies + {dropped} dropped for {} requests",
            count + 1
        );
    }

    #[test]
    fn ring_headers_pointing_anywhere_never_panic_or_escape_their_area() {
        // xorshift64*: deterministic bytes, offsets and lengths.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for round in 0..20_000 {
            let len = (next() % 300) as usize;
            let mut area: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the time, make the lengths plausible so deeper checks are reached.
            if round % 2 == 0 && len >= 64 {
                area[12..16].copy_from_slice(&((next() % 64) as u32).to_ne_bytes());
                area[24..26].copy_from_slice(&((next() % 80) as u16).to_ne_bytes());
            }
            let at = (next() % 320) as usize;
            for format in [&layout::V3, &layout::V2] {
                if let Some(frame) = parse_frame(&area, at, format) {
                    assert!(frame.data >= at + format.header_len);
                    assert!(frame.data + frame.snaplen <= area.len());
                }
            }
            if let Some(cursor) = parse_block(&area) {
                assert!(cursor.offset < area.len());
            }
        }
    }
}
