//! System calls and raw kernel structures of the NIC backends: the only module of the crate
//! that uses `unsafe`.
//!
//! Raw kernel types (libc's `ifreq`, `sockaddr_ll`, `tpacket_*`) stay in here; the backends above
//! see owned descriptors, byte slices and plain values. Every descriptor is an [`OwnedFd`] from
//! the moment the kernel returns it, so none can leak or be closed twice.
//!
//! The PACKET_MMAP ownership protocol lives here too, because it is what makes handing out
//! slices of memory shared with the kernel sound: a ring block or frame belongs to whoever its
//! status word names, and [`RingMap`] only lends a slice of it after an acquire load of that word
//! has shown it to be ours, and gives it back with a release store once the slice is dead.

use std::ffi::{c_char, c_int, c_short, c_uint, c_void};
use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(test)]
use std::time::Duration;

/// `PACKET_MR_UNICAST` (linux/if_packet.h), which libc exports for uClibc only.
pub(crate) const PACKET_MR_UNICAST: c_int = 3;

/// Turns a C-style `-1` return into the thread's `errno`.
fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor a system call just returned.
fn own(fd: c_int) -> OwnedFd {
    // SAFETY: every caller passes a descriptor the kernel returned to it a moment ago (after
    // `cvt` refused negative values): it is open, and nothing else in the process knows it yet,
    // so `OwnedFd` is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// socket(2), always close-on-exec.
pub(crate) fn socket(domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers and touches no memory of ours.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) })?;
    Ok(own(fd))
}

/// The effective user id (to explain, rather than fail, when tests cannot run).
#[cfg(test)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Moves the calling thread into the network namespace `ns` (an open `/proc/PID/ns/net` or
/// `/run/netns/NAME`). Sockets and TAP devices the thread creates afterwards belong to that
/// namespace, and keep belonging to it whatever thread uses them later.
///
/// Only the calling thread moves, which is exactly why callers must do this on a thread of their
/// own that ends afterwards: a pool thread left in a foreign namespace would surprise its next
/// user.
pub(crate) fn enter_net_namespace(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns(2) takes no pointers; it changes the calling thread's namespace, which no
    // Rust invariant depends on.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// The size of a memory page (ring blocks are multiples of it).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf(3) takes no pointers; _SC_PAGESIZE cannot fail on Linux.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Waits up to `timeout` for `fd` to become readable; true if it is.
#[cfg(test)]
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    Ok(poll_events(fd, libc::POLLIN, timeout)? & libc::POLLIN != 0)
}

/// poll(2) on one descriptor: the events it reports within `timeout` (0 if none).
#[cfg(test)]
pub(crate) fn poll_events(
    fd: BorrowedFd<'_>,
    events: c_short,
    timeout: Duration,
) -> io::Result<c_short> {
    let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    let millis = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `pollfd` is one valid, exclusively borrowed `struct pollfd`, and we pass a count
    // of 1, so the kernel writes only its `revents` field.
    cvt(unsafe { libc::poll(&mut pollfd, 1, millis) })?;
    Ok(pollfd.revents)
}

// ---------------------------------------------------------------------------------------------
// Interface ioctls

/// A `struct ifreq` naming one interface: the argument of every interface ioctl.
pub(crate) struct IfReq(libc::ifreq);

impl IfReq {
    /// A request for interface `name`, which must be shorter than `IFNAMSIZ` and hold no NUL.
    pub(crate) fn new(name: &str) -> io::Result<IfReq> {
        if name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: `ifreq` is a name array and a union of integers, socket addresses, a small
        // struct of integers and a pointer: all-zero bytes are a valid value of each member.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as c_char;
        }
        Ok(IfReq(req))
    }

    /// The interface name, as the kernel wrote it back (TUNSETIFF resolves `name%d` templates).
    pub(crate) fn name(&self) -> String {
        let bytes: Vec<u8> =
            self.0.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `ifr_flags`.
    pub(crate) fn flags(&self) -> c_short {
        // SAFETY: the union is at least as large as a `c_short` and was zero-initialised, and
        // every bit pattern is a valid `c_short`.
        unsafe { self.0.ifr_ifru.ifru_flags }
    }

    /// Sets `ifr_flags`.
    pub(crate) fn set_flags(&mut self, flags: c_short) {
        self.0.ifr_ifru.ifru_flags = flags;
    }

    /// `ifr_mtu` / `ifr_ifindex` (the same `int` member of the union).
    pub(crate) fn int(&self) -> c_int {
        // SAFETY: as for `flags`: zero-initialised, large enough, every bit pattern valid.
        unsafe { self.0.ifr_ifru.ifru_mtu }
    }

    /// Sets `ifr_mtu`.
    pub(crate) fn set_int(&mut self, value: c_int) {
        self.0.ifr_ifru.ifru_mtu = value;
    }

    /// Sets `ifr_addr` (or `ifr_netmask`, the same bytes) to an AF_INET address.
    pub(crate) fn set_ipv4(&mut self, addr: Ipv4Addr) {
        // A `sockaddr_in` laid out in a `sockaddr`: family, a zero port, the address.
        let mut sa =
            libc::sockaddr { sa_family: libc::AF_INET as libc::sa_family_t, sa_data: [0; 14] };
        for (dst, src) in sa.sa_data[2..6].iter_mut().zip(addr.octets()) {
            *dst = src as c_char;
        }
        self.0.ifr_ifru.ifru_addr = sa;
    }

    /// `ifr_hwaddr`: the hardware type (ARPHRD_*) and the first six address bytes.
    pub(crate) fn hw_addr(&self) -> (u16, [u8; 6]) {
        // SAFETY: zero-initialised, the union holds a whole `sockaddr`, and a `sockaddr` of
        // integers is valid for any bit pattern.
        let sa = unsafe { self.0.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (dst, &src) in mac.iter_mut().zip(&sa.sa_data) {
            *dst = src as u8;
        }
        (sa.sa_family, mac)
    }
}

/// The interface ioctls the backends use. Each one reads and writes exactly one `struct ifreq`
/// through its argument, which is what lets [`ioctl_ifreq`] be safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfIoctl {
    /// TUNSETIFF, on a `/dev/net/tun` descriptor: create or attach a TUN/TAP device.
    TunSetIff,
    /// SIOCGIFFLAGS.
    GetFlags,
    /// SIOCSIFFLAGS.
    SetFlags,
    /// SIOCGIFMTU.
    GetMtu,
    /// SIOCSIFMTU.
    SetMtu,
    /// SIOCSIFADDR (AF_INET).
    SetAddr,
    /// SIOCSIFNETMASK.
    SetNetmask,
    /// SIOCGIFHWADDR.
    GetHwAddr,
    /// SIOCGIFINDEX.
    GetIndex,
}

impl IfIoctl {
    fn request(self) -> libc::Ioctl {
        // The SIOC* constants are `c_ulong`; on musl `Ioctl` is `c_int`: the values fit both.
        #[allow(clippy::unnecessary_cast)]
        let request = match self {
            IfIoctl::TunSetIff => libc::TUNSETIFF as libc::Ioctl,
            IfIoctl::GetFlags => libc::SIOCGIFFLAGS as libc::Ioctl,
            IfIoctl::SetFlags => libc::SIOCSIFFLAGS as libc::Ioctl,
            IfIoctl::GetMtu => libc::SIOCGIFMTU as libc::Ioctl,
            IfIoctl::SetMtu => libc::SIOCSIFMTU as libc::Ioctl,
            IfIoctl::SetAddr => libc::SIOCSIFADDR as libc::Ioctl,
            IfIoctl::SetNetmask => libc::SIOCSIFNETMASK as libc::Ioctl,
            IfIoctl::GetHwAddr => libc::SIOCGIFHWADDR as libc::Ioctl,
            IfIoctl::GetIndex => libc::SIOCGIFINDEX as libc::Ioctl,
        };
        request
    }
}

/// Issues an interface ioctl on `fd` (a TUN descriptor for TUNSETIFF, an AF_INET datagram
/// socket for the rest).
pub(crate) fn ioctl_ifreq(fd: BorrowedFd<'_>, op: IfIoctl, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: every `IfIoctl` request reads and writes exactly one `struct ifreq` through its
    // pointer argument (none of them follows `ifr_data`), and `req` is a valid ifreq exclusively
    // borrowed for the duration of the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), op.request(), &mut req.0 as *mut libc::ifreq) })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Socket options and packet sockets

/// Plain C data that may be passed by value to setsockopt(2) and filled by getsockopt(2): every
/// byte initialised (no padding), and all-zero bytes a valid value.
///
/// # Safety
/// Implementors must be such types.
pub(crate) unsafe trait SockOptValue: Copy {}

// SAFETY: an `int` has no padding and every bit pattern is valid.
unsafe impl SockOptValue for c_int {}
// SAFETY: seven `unsigned int`s: no padding, every bit pattern valid.
unsafe impl SockOptValue for libc::tpacket_req3 {}
// SAFETY: `int`, two `unsigned short`s and 8 bytes (16 bytes, no padding); any bit pattern.
unsafe impl SockOptValue for libc::packet_mreq {}
// SAFETY: three `unsigned int`s: no padding, every bit pattern valid.
unsafe impl SockOptValue for libc::tpacket_stats_v3 {}

/// setsockopt(2) with a value of the type the option expects.
pub(crate) fn setsockopt<T: SockOptValue>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &T,
) -> io::Result<()> {
    let len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points to `len` initialised bytes (`SockOptValue`), which the kernel only
    // reads.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) })?;
    Ok(())
}

/// getsockopt(2) into a value of the type the option produces.
pub(crate) fn getsockopt<T: SockOptValue>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
) -> io::Result<T> {
    // SAFETY: all-zero bytes are a valid `T` (`SockOptValue`).
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable `T` of `len` bytes; the kernel writes at most `len` bytes
    // and any bytes it writes form a valid `T`.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut T).cast(), &mut len)
    })?;
    Ok(value)
}

/// Binds a packet socket to interface `ifindex` for frames of `protocol` (host order;
/// ETH_P_ALL for every frame).
pub(crate) fn bind_packet(fd: BorrowedFd<'_>, ifindex: c_int, protocol: u16) -> io::Result<()> {
    // SAFETY: `sockaddr_ll` is integers and a byte array: all-zero is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex;
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `addr` is a valid `sockaddr_ll` of `len` bytes, which bind(2) only reads.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_ll).cast(), len) })?;
    Ok(())
}

/// `send(fd, NULL, 0, MSG_DONTWAIT)`: asks the kernel to transmit every TX-ring frame marked
/// TP_STATUS_SEND_REQUEST, without waiting for them to leave. Returns the bytes queued.
pub(crate) fn kick_tx_ring(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: a zero-length send with a null buffer: the kernel reads no memory of ours (a
    // packet socket with a TX ring takes its data from the ring).
    let sent = unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

// ---------------------------------------------------------------------------------------------
// PACKET_MMAP rings

/// Where the kernel puts things in PACKET_MMAP rings, as byte offsets derived from the raw
/// structures, so that the ring walkers read them from plain byte slices.
pub(crate) mod layout {
    use std::ffi::c_int;
    use std::mem::{offset_of, size_of};

    /// V3 block descriptor: `block_status`.
    pub(crate) const BLOCK_STATUS: usize =
        offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);
    /// V3 block descriptor: `num_pkts`.
    pub(crate) const BLOCK_NUM_PKTS: usize =
        offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);
    /// V3 block descriptor: `offset_to_first_pkt`.
    pub(crate) const BLOCK_FIRST_PKT: usize = offset_of!(libc::tpacket_block_desc, hdr)
        + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
    /// Size of the V3 block descriptor.
    pub(crate) const BLOCK_DESC_LEN: usize = size_of::<libc::tpacket_block_desc>();
    /// `sockaddr_ll::sll_pkttype`, from the start of the `sockaddr_ll`.
    pub(crate) const LL_PKTTYPE: usize = offset_of!(libc::sockaddr_ll, sll_pkttype);

    const fn align(len: usize) -> usize {
        (len + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1)
    }

    /// Where one TPACKET version's frame header keeps its fields.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct FrameFormat {
        /// The PACKET_VERSION value.
        pub(crate) version: c_int,
        /// `tp_status`.
        pub(crate) status: usize,
        /// `tp_len`: bytes the frame had.
        pub(crate) len: usize,
        /// `tp_snaplen`: bytes present.
        pub(crate) snaplen: usize,
        /// `tp_mac`: from the header to the Ethernet header.
        pub(crate) mac: usize,
        /// `tp_next_offset` (V3 only): from this header to the next one in the block.
        pub(crate) next: Option<usize>,
        /// Size of the fixed header.
        pub(crate) header_len: usize,
        /// Where the `sockaddr_ll` describing a received frame follows the header.
        pub(crate) ll: usize,
        /// Where a TX frame's data starts: the kernel reads it at `tp_hdrlen -
        /// sizeof(sockaddr_ll)`, right after the aligned header, unless PACKET_TX_HAS_OFF is set
        /// (it is not).
        pub(crate) tx_data: usize,
    }

    /// `struct tpacket3_hdr`.
    pub(crate) const V3: FrameFormat = FrameFormat {
        version: libc::tpacket_versions::TPACKET_V3 as c_int,
        status: offset_of!(libc::tpacket3_hdr, tp_status),
        len: offset_of!(libc::tpacket3_hdr, tp_len),
        snaplen: offset_of!(libc::tpacket3_hdr, tp_snaplen),
        mac: offset_of!(libc::tpacket3_hdr, tp_mac),
        next: Some(offset_of!(libc::tpacket3_hdr, tp_next_offset)),
        header_len: size_of::<libc::tpacket3_hdr>(),
        ll: align(size_of::<libc::tpacket3_hdr>()),
        tx_data: libc::TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>(),
    };

    /// `struct tpacket2_hdr`.
    pub(crate) const V2: FrameFormat = FrameFormat {
        version: libc::tpacket_versions::TPACKET_V2 as c_int,
        status: offset_of!(libc::tpacket2_hdr, tp_status),
        len: offset_of!(libc::tpacket2_hdr, tp_len),
        snaplen: offset_of!(libc::tpacket2_hdr, tp_snaplen),
        mac: offset_of!(libc::tpacket2_hdr, tp_mac),
        next: None,
        header_len: size_of::<libc::tpacket2_hdr>(),
        ll: align(size_of::<libc::tpacket2_hdr>()),
        tx_data: libc::TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>(),
    };
}

use layout::{FrameFormat, BLOCK_STATUS};

/// The shared mapping of a packet socket's rings (the RX ring first, then the TX ring, as the
/// kernel lays them out), unmapped on drop.
pub(crate) struct RingMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is process memory not tied to the thread that made it; every access goes
// through `&mut self` (lending slices) or through atomics, whatever the thread.
unsafe impl Send for RingMap {}

impl std::fmt::Debug for RingMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingMap").field("len", &self.len).finish_non_exhaustive()
    }
}

impl RingMap {
    /// Maps the `len` bytes of rings configured on packet socket `fd`.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<RingMap> {
        // SAFETY: a new shared mapping at an address the kernel chooses overlaps no Rust object;
        // the kernel refuses any length other than the size of the rings configured on `fd`,
        // so the mapping is exactly the ring memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        Ok(RingMap { base, len })
    }

    /// The status word at `offset`, for atomic access.
    ///
    /// # Panics
    /// If the word is not inside the mapping or not 4-byte aligned (a geometry bug of ours).
    fn status_word(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len,
            "ring status word out of place"
        );
        // SAFETY: the word is inside the live mapping and aligned (checked above; the mapping
        // is page-aligned). Status words are only ever accessed atomically — by us through
        // here, by the kernel with its own barriers — while no slice lent by this map covers
        // them: lending takes `&mut self` and the guards derive their own pointer to the word.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// A slice of the mapping, exclusively borrowed through `&mut self`.
    ///
    /// # Safety
    /// The caller must know the kernel does not touch `offset..offset + len` until the slice is
    /// dead: the region is a block or frame whose status word says it belongs to user space.
    unsafe fn lend(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "ring slice out of place"
        );
        // SAFETY: in bounds (checked above) of a live mapping that is readable and writable;
        // `&mut self` guarantees no other slice of the map exists; the caller guarantees the
        // kernel leaves the region alone while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(offset), len) }
    }

    /// The TPACKET_V3 receive block of `len` bytes at `offset`, if the kernel has retired it to
    /// user space (TP_STATUS_USER). The block stays ours until [`RxArea::release`]; a block
    /// dropped without release is found again, still ours, by the next call.
    pub(crate) fn rx_block(&mut self, offset: usize, len: usize) -> Option<RxArea<'_>> {
        self.rx_owned(offset, len, BLOCK_STATUS)
    }

    /// The TPACKET_V2 receive slot of `len` bytes at `offset`, if the kernel has filled it and
    /// handed it to user space (TP_STATUS_USER); ours until [`RxArea::release`].
    pub(crate) fn rx_frame(&mut self, offset: usize, len: usize) -> Option<RxArea<'_>> {
        self.rx_owned(offset, len, layout::V2.status)
    }

    fn rx_owned(&mut self, offset: usize, len: usize, status_at: usize) -> Option<RxArea<'_>> {
        let status = self.status_word(offset + status_at).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the area's status says user space owns it, and the acquire load makes the
        // kernel's writes to it visible. The kernel neither reads nor writes an owned block or
        // frame until its status is set back to TP_STATUS_KERNEL, which only `RxArea::release`
        // does, after the slice's last use.
        let bytes = unsafe { self.lend(offset, len) };
        Some(RxArea { bytes, status, status_at })
    }

    /// The TX-ring frame of `len` bytes at `offset`, laid out as `format`, if it is free for us
    /// to fill (TP_STATUS_AVAILABLE, or TP_STATUS_WRONG_FORMAT: a frame the kernel refused,
    /// which it will not look at again until we mark it for sending).
    pub(crate) fn tx_frame(
        &mut self,
        offset: usize,
        len: usize,
        format: &'static FrameFormat,
    ) -> Option<TxFrame<'_>> {
        let status = self.status_word(offset + format.status).load(Ordering::Acquire);
        let refused = status == libc::TP_STATUS_WRONG_FORMAT;
        if status != libc::TP_STATUS_AVAILABLE && !refused {
            return None;
        }
        assert!(len > format.tx_data, "TX frame smaller than its header");
        // SAFETY: the frame's status says the kernel is done with it (available, or refused and
        // parked); the kernel only looks at it again once its status is TP_STATUS_SEND_REQUEST,
        // which only `TxFrame::submit` stores, after the slice's last use.
        let bytes = unsafe { self.lend(offset, len) };
        Some(TxFrame { bytes, refused, format })
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly the mapping made in `new`, and no slice of it
        // outlives `self` (slices borrow `&mut self`).
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}

/// A receive block (V3) or frame slot (V2) user space owns: its bytes, header included, are
/// ours to read and write.
#[derive(Debug)]
pub(crate) struct RxArea<'a> {
    bytes: &'a mut [u8],
    status: u32,
    /// Where the status word is in `bytes`.
    status_at: usize,
}

impl RxArea<'_> {
    /// The whole area, from its header on.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The whole area, writable (to complete checksums in place before delivery).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    /// The status the kernel handed it over with (TP_STATUS_LOSING means it dropped frames
    /// since the last PACKET_STATISTICS read).
    pub(crate) fn status(&self) -> u32 {
        self.status
    }

    /// Hands the area back to the kernel for refilling.
    pub(crate) fn release(self) {
        let word = self.bytes[self.status_at..self.status_at + 4].as_mut_ptr();
        // SAFETY: the pointer comes from our exclusive slice, is in bounds and 4-aligned (areas
        // start at page or TPACKET_ALIGNMENT boundaries and status words sit at multiples of 4);
        // the slice is not used after this store, which is the handover: the release ordering
        // keeps our reads and writes of the area before the point where the kernel may refill
        // it.
        unsafe { AtomicU32::from_ptr(word.cast()) }
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

/// A TX-ring frame user space may fill.
#[derive(Debug)]
pub(crate) struct TxFrame<'a> {
    bytes: &'a mut [u8],
    refused: bool,
    format: &'static FrameFormat,
}

impl TxFrame<'_> {
    /// True if the kernel had refused the frame last put here (TP_STATUS_WRONG_FORMAT).
    pub(crate) fn was_refused(&self) -> bool {
        self.refused
    }

    /// Where the frame's bytes go.
    pub(crate) fn data(&mut self) -> &mut [u8] {
        &mut self.bytes[self.format.tx_data..]
    }

    /// Marks the first `len` data bytes for sending (the next kick transmits them).
    ///
    /// # Panics
    /// If `len` exceeds the data area (callers check first).
    pub(crate) fn submit(self, len: usize) {
        let format = self.format;
        assert!(len <= self.bytes.len() - format.tx_data, "TX frame overflows its slot");
        let len = len as u32;
        self.bytes[format.len..format.len + 4].copy_from_slice(&len.to_ne_bytes());
        self.bytes[format.snaplen..format.snaplen + 4].copy_from_slice(&len.to_ne_bytes());
        if let Some(next) = format.next {
            self.bytes[next..next + 4].copy_from_slice(&0u32.to_ne_bytes());
        }
        let word = self.bytes[format.status..format.status + 4].as_mut_ptr();
        // SAFETY: the pointer comes from our exclusive slice, is in bounds and 4-aligned (frames
        // start at multiples of TPACKET_ALIGNMENT); the slice is not used after this store. The
        // release ordering makes the frame's bytes and length visible to the kernel before it
        // can see the frame as ready.
        unsafe { AtomicU32::from_ptr(word.cast()) }
            .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
    }
}

/// The ring sizes in a `tpacket_req3` (plain values; see `af_packet::RingConfig`). A TPACKET_V2
/// socket reads only the leading `tpacket_req` and ignores the rest.
pub(crate) fn tpacket_req3(
    block_size: usize,
    block_nr: usize,
    frame_size: usize,
    retire_blk_tov_ms: u32,
) -> io::Result<libc::tpacket_req3> {
    let c =
        |v: usize| c_uint::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    Ok(libc::tpacket_req3 {
        tp_block_size: c(block_size)?,
        tp_block_nr: c(block_nr)?,
        tp_frame_size: c(frame_size)?,
        tp_frame_nr: c(block_size / frame_size * block_nr)?,
        tp_retire_blk_tov: retire_blk_tov_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    })
}

// ---------------------------------------------------------------------------------------------
// The shared-memory wire (backend::shm): a file mapped by two processes, its single-producer /
// single-consumer slot rings, and the OFD locks that say which side is alive.
//
// Everything in the region other than slot bytes is an atomic word, so the only plain memory
// shared with the other process is a slot, and a slot is lent out here only while the ring
// protocol makes it ours (see `WireRings`).

/// A file mapped shared and writable, unmapped on drop.
pub(crate) struct SharedMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is process memory not tied to the thread that made it; words are only
// reached as atomics and slot bytes only through `&mut WireRings`, whatever the thread.
unsafe impl Send for SharedMap {}

impl std::fmt::Debug for SharedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMap").field("len", &self.len).finish_non_exhaustive()
    }
}

impl SharedMap {
    /// Maps the first `len` bytes of file `fd`, which must be at least that long (a shorter file
    /// would raise SIGBUS on access past its end: callers compare `len` with its size first).
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a new shared mapping at an address the kernel chooses overlaps no Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        Ok(SharedMap { base, len })
    }

    /// The mapping's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The 32-bit word at `offset`, for atomic access.
    ///
    /// # Panics
    /// If the word is not inside the mapping or not aligned (a layout bug of ours).
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len, "shm word out of place");
        // SAFETY: inside the live mapping and aligned (checked; the mapping is page-aligned).
        // Words are only ever accessed atomically, here and in the other process, and never lie
        // inside a slot (`WireRings::new` checks the geometry), so no plain slice aliases them.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// The 64-bit word at `offset`, for atomic access.
    ///
    /// # Panics
    /// As [`u32_at`](Self::u32_at).
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len, "shm word out of place");
        // SAFETY: as in `u32_at`.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }
}

impl SharedMap {
    /// A slice of the mapping.
    ///
    /// # Safety
    /// The range must be clear of every word accessed atomically, and no other access to it —
    /// by this process or the other one — may happen while the slice lives (for the wire: the
    /// slot is ours under the ring protocol, and the caller holds `&mut` of the side).
    ///
    /// # Panics
    /// If the range is not inside the mapping.
    #[allow(clippy::mut_from_ref)] // exclusivity is the caller's contract, as for a raw pointer
    unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "shm slice out of place"
        );
        // SAFETY: in bounds of a live, readable and writable mapping (checked above); the
        // caller guarantees exclusivity for the slice's life, which `&self` ties to the map's.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(offset), len) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly the mapping made in `new`; no atomic or slice
        // borrowed from it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}

/// Where one ring of a wire lives in its region. Plain numbers, checked by [`WireRings::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingPlace {
    /// The producer's published index (free-running; slot = index % count).
    pub(crate) tail: usize,
    /// The consumer's published index.
    pub(crate) head: usize,
    /// The first slot.
    pub(crate) slots: usize,
    /// Bytes per slot.
    pub(crate) slot_size: usize,
    /// Slots (a power of two).
    pub(crate) count: u32,
}

impl RingPlace {
    fn slot_offset(&self, index: u32) -> usize {
        self.slots + (index & (self.count - 1)) as usize * self.slot_size
    }

    fn slot_area(&self) -> std::ops::Range<usize> {
        self.slots..self.slots + self.count as usize * self.slot_size
    }
}

/// One side's view of a wire: it consumes ring `rx` and produces ring `tx`.
///
/// The ownership protocol of a single-producer single-consumer ring: slots from `head` up to
/// `tail` hold frames and belong to the consumer; the others belong to the producer. Only the
/// producer stores `tail`, only the consumer stores `head`. The producer fills a slot and then
/// publishes it with a release store of `tail`; the consumer's acquire load of `tail` makes the
/// slot's bytes visible before it reads them. Symmetrically the consumer's release store of
/// `head` orders its last read of a slot before the acquire load by which the producer learns
/// that it may overwrite it. Nothing else is needed: each index has one writer.
///
/// Slots are lent only while this protocol makes them ours, and through `&mut self`, so at most
/// one slice of the region exists in this process at a time. The other process is trusted to
/// follow the protocol (it is another joyride-stackd of the same user; the region is mode 0600):
/// one that does not can change a frame's bytes while we read them, which the engine sees as a
/// corrupt frame, but cannot make this side touch memory outside its mapping, since every offset
/// is computed from the geometry checked at attach time, never from the region's contents.
pub(crate) struct WireRings {
    map: SharedMap,
    rx: RingPlace,
    tx: RingPlace,
    /// Our copy of rx.head (we are its only writer).
    rx_head: u32,
    /// Slots filled since the last publication: tx.tail as it will be published.
    tx_tail: u32,
}

impl std::fmt::Debug for WireRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireRings")
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("rx_head", &self.rx_head)
            .field("tx_tail", &self.tx_tail)
            .finish_non_exhaustive()
    }
}

impl WireRings {
    /// This side of the wire in `map`, continuing from the indices the region holds.
    ///
    /// # Panics
    /// If a ring's slots are not inside the mapping, overlap the other ring or any index word,
    /// or its count is not a power of two (the caller validated the region's header; this is
    /// the last line of defence of the lending below).
    pub(crate) fn new(map: SharedMap, rx: RingPlace, tx: RingPlace) -> WireRings {
        for ring in [rx, tx] {
            assert!(ring.count.is_power_of_two() && ring.slot_size >= 4, "bad ring geometry");
            let area = ring.slot_area();
            assert!(area.end <= map.len(), "ring slots outside the region");
            for word in [rx.head, rx.tail, tx.head, tx.tail] {
                assert!(word + 4 <= area.start || word >= area.end, "index inside the slots");
            }
        }
        let (a, b) = (rx.slot_area(), tx.slot_area());
        assert!(a.end <= b.start || b.end <= a.start, "rings overlap");
        let rx_head = map.u32_at(rx.head).load(Ordering::Acquire);
        let tx_tail = map.u32_at(tx.tail).load(Ordering::Acquire);
        WireRings { map, rx, tx, rx_head, tx_tail }
    }

    /// The region, for its header words.
    pub(crate) fn map(&self) -> &SharedMap {
        &self.map
    }

    /// Frames the producer has published and we have not consumed, as the indices say. More
    /// than the ring's count means the producer wrote garbage into `tail`.
    pub(crate) fn rx_pending(&self) -> u32 {
        self.map.u32_at(self.rx.tail).load(Ordering::Acquire).wrapping_sub(self.rx_head)
    }

    /// The oldest waiting frame's slot, whole (the backend's length word first), if a frame is
    /// waiting and the indices are sane. The slot stays ours until [`RxSlot::release`]; one
    /// dropped without release is found again by the next call.
    pub(crate) fn rx_slot(&mut self) -> Option<RxSlot<'_>> {
        let pending = self.rx_pending();
        if pending == 0 || pending > self.rx.count {
            return None;
        }
        let offset = self.rx.slot_offset(self.rx_head);
        // SAFETY: the slot lies between head and tail (pending is 1..=count), so the producer
        // handed it to us and, by the protocol, does not write it until `head` passes it, which
        // only `RxSlot::release` does after the slice's last use. The acquire load of `tail` in
        // `rx_pending` made the producer's writes to it visible. `&mut self` (which the slot
        // borrows) keeps any other slice of this side from existing meanwhile. `new` checked
        // that every slot is inside the mapping and clear of every index word.
        let bytes = unsafe { self.map.slice_mut(offset, self.rx.slot_size) };
        Some(RxSlot { bytes, head: &mut self.rx_head, word: self.map.u32_at(self.rx.head) })
    }

    /// Gives every waiting frame back unread (the producer's indices are garbage, or the
    /// frames are a previous session's).
    pub(crate) fn rx_discard_all(&mut self) {
        let tail = self.map.u32_at(self.rx.tail).load(Ordering::Acquire);
        self.rx_head = tail;
        self.map.u32_at(self.rx.head).store(tail, Ordering::Release);
    }

    /// Slots we may fill before the consumer frees more. Zero as well when the consumer's
    /// `head` is garbage (ahead of our tail or more than a ring behind it).
    pub(crate) fn tx_free(&self) -> u32 {
        let head = self.map.u32_at(self.tx.head).load(Ordering::Acquire);
        let used = self.tx_tail.wrapping_sub(head);
        self.tx.count.saturating_sub(used)
    }

    /// The next free slot, whole, if the ring has room. Filling it sends nothing until
    /// [`TxSlot::commit`] and then [`tx_publish`](Self::tx_publish).
    pub(crate) fn tx_slot(&mut self) -> Option<TxSlot<'_>> {
        if self.tx_free() == 0 {
            return None;
        }
        let offset = self.tx.slot_offset(self.tx_tail);
        // SAFETY: the slot is outside head..tail (tx_free > 0 after an acquire load of `head`,
        // which also ordered the consumer's last read of it before this point), so it is ours:
        // the consumer does not look at it until a published `tail` covers it, which only
        // `tx_publish` does, and that takes `&mut self`, so the slice is dead by then. In
        // bounds and exclusive within this process as in `rx_slot`.
        let bytes = unsafe { self.map.slice_mut(offset, self.tx.slot_size) };
        Some(TxSlot { bytes, tail: &mut self.tx_tail })
    }

    /// Slots committed but not yet published.
    pub(crate) fn tx_unpublished(&self) -> u32 {
        self.tx_tail.wrapping_sub(self.map.u32_at(self.tx.tail).load(Ordering::Relaxed))
    }

    /// Hands every committed slot to the consumer.
    pub(crate) fn tx_publish(&mut self) {
        self.map.u32_at(self.tx.tail).store(self.tx_tail, Ordering::Release);
    }
}

/// A received frame's slot, ours until released.
#[derive(Debug)]
pub(crate) struct RxSlot<'a> {
    bytes: &'a [u8],
    head: &'a mut u32,
    word: &'a AtomicU32,
}

impl RxSlot<'_> {
    /// The slot's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// Hands the slot back to the producer. The release store orders our reads of the slot
    /// before the producer's acquire load that lets it overwrite the slot.
    pub(crate) fn release(self) {
        *self.head = self.head.wrapping_add(1);
        self.word.store(*self.head, Ordering::Release);
    }
}

/// A free slot to fill.
#[derive(Debug)]
pub(crate) struct TxSlot<'a> {
    bytes: &'a mut [u8],
    tail: &'a mut u32,
}

impl TxSlot<'_> {
    /// The slot's bytes.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    /// Counts the slot as filled; the next `tx_publish` hands it over.
    pub(crate) fn commit(self) {
        *self.tail = self.tail.wrapping_add(1);
    }
}

/// What `fcntl(F_OFD_GETLK)` found on a byte range.
fn ofd_flock(l_type: c_int, start: u64, len: u64) -> libc::flock {
    // SAFETY: `flock` is integers only: all-zero bytes are a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = l_type as c_short;
    lock.l_whence = libc::SEEK_SET as c_short;
    lock.l_start = start as libc::off_t;
    lock.l_len = len as libc::off_t;
    lock
}

/// Takes an exclusive open-file-description lock on bytes `start..start + len` of `fd` without
/// waiting. Ok(false) if another open file description holds a conflicting lock. The kernel
/// drops the lock when the description's last descriptor closes — also when the process dies,
/// which is what makes it a liveness signal.
pub(crate) fn ofd_try_lock(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<bool> {
    let lock = ofd_flock(libc::F_WRLCK, start, len);
    // SAFETY: `lock` is a valid `struct flock` that F_OFD_SETLK only reads.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &lock) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases our open-file-description lock on bytes `start..start + len` of `fd`.
pub(crate) fn ofd_unlock(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
    let lock = ofd_flock(libc::F_UNLCK, start, len);
    // SAFETY: as in `ofd_try_lock`.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &lock) })?;
    Ok(())
}

/// True if another open file description holds a lock on bytes `start..start + len` of `fd`.
pub(crate) fn ofd_locked_by_other(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<bool> {
    let mut lock = ofd_flock(libc::F_WRLCK, start, len);
    // SAFETY: `lock` is a valid, exclusively borrowed `struct flock`; F_OFD_GETLK writes only
    // into it.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) })?;
    Ok(lock.l_type != libc::F_UNLCK as c_short)
}
