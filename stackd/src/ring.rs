//! Single-producer/single-consumer byte rings in shared memory (memfd), for the fast path.
//!
//! One region holds one ring: a page of header, then a power-of-two data area. stackd and a
//! program's preloaded library each map it; one side only writes, the other only reads. Positions
//! are free-running `u64` byte counts (the index is `position & (capacity - 1)`), so "empty" is
//! `producer == consumer` and "full" is `producer - consumer == capacity`, with no wasted slot.
//!
//! ## The doorbell (DESIGN.md, "Fast path")
//!
//! The ring never makes a system call; a sleeping reader is woken by a doorbell byte that the
//! writer's side sends through another channel (the socket's carrier). The shared header keeps
//! the bookkeeping that makes this free of lost wake-ups:
//!
//! - `bell`: the number of doorbell bytes sent or about to be sent and not yet drained, plus a
//!   [`DRAINING`] bit. A writer counts a byte *before* sending it, so the count is never below
//!   what sits in the channel.
//! - `spin`: while the reader spins on the ring it publishes how many bytes it will take; a
//!   writer skips the bell only if that covers everything in the ring.
//!
//! Invariant: whenever the ring is non-empty, either the bell count is non-zero (so the channel
//! is, or will be, readable) or a spinning reader will take every byte in it. The reader drains
//! doorbell bytes only through [`Consumer::drain_bells`], which sets DRAINING *before* it checks
//! that the ring is empty and re-checks the ring after clearing it.
//!
//! ## Joining a stream
//!
//! A ring may take over a byte stream that started on the carrier itself (a connection between two
//! programs whose bytes first flowed through a plain socket). Each direction switches on its own:
//! the reader, once it can read the ring, sets `reader_attached`; a writer that sees it records how
//! many bytes it sent through the carrier ([`Producer::switch_to_ring`]) *before* it writes to the
//! ring or sends a doorbell. The reader therefore treats carrier bytes as data up to that count
//! ([`Consumer::plain_prefix`]) and as doorbells after it: a doorbell byte is sent only after the
//! count is published, so a reader that has received one also sees the count. A side that makes
//! the regions for a stream already under way (stackd, for a connection to a remote peer)
//! writes the counts so far into the headers before it hands them out ([`Producer::take_over`],
//! [`Consumer::take_over`]).
//!
//! ## Waiting for space
//!
//! A writer that finds the ring full may sleep on a futex in the header
//! ([`Producer::wait_for_space`]); the reader wakes it when it hands back half the ring, as a
//! kernel socket reports POLLOUT only once half its buffer is free.
//!
//! ## Memory ordering
//!
//! Data: the producer writes bytes, then stores the producer position with Release; the consumer
//! loads it with Acquire before reading those bytes. Symmetrically the consumer's Release store of
//! its position hands the space back to a producer that loads it with Acquire. This alone moves
//! bytes safely.
//!
//! Wake-ups are a store-then-load pattern on both sides (Dekker): the writer stores its position
//! then loads `bell`/`spin`; the reader stores `bell`/`spin` then loads the producer position.
//! Acquire/Release does not order a store before a later load, so exactly these accesses are
//! SeqCst: in the single total order of SeqCst operations at least one side sees the other's
//! store, which is the whole argument in the proofs next to [`Producer::bell_needed`] and
//! [`Consumer::drain_bells`].
//!
//! ## Hostile peers
//!
//! The other side may be a buggy or hostile program. Each side keeps its own position in private
//! memory and only *reads* the peer's; a peer position that would make `producer - consumer`
//! exceed the capacity is reported as [`RingError::Corrupt`]. The data area's length comes from
//! the mapping's size (fstat), never from the header alone. A peer can still scribble over bytes
//! it has handed over, which gives the reader wrong bytes, never out-of-bounds access. It can
//! also hold a side's lock word ([`RingRegion::lock_side`], used only by processes that share a
//! side after a fork) and so stall that side — no more than by never reading.

#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Smallest data area.
pub const MIN_CAPACITY: usize = 8 << 10;
/// Largest data area.
pub const MAX_CAPACITY: usize = 1 << 20;
/// Bytes before the data area: one page, so that the data area is page-aligned.
pub const HEADER_SIZE: usize = 4096;
/// The longest answer spin a ring may advise ([`RingRegion::answer_spin`]); stackd's
/// `--busy-poll` is bounded by it too.
pub const MAX_ANSWER_SPIN: Duration = Duration::from_millis(10);
/// The bell word's "reader is draining" bit; the low bits are the count.
pub const DRAINING: u64 = 1 << 63;

const MAGIC: u64 = u64::from_le_bytes(*b"JRRING01");
const VERSION: u32 = 4;

const STATE_FIN: u32 = 1;
const STATE_RESET: u32 = 2;
const ERRNO_SHIFT: u32 = 16;

/// Errors of ring regions.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// A system call failed.
    #[error("ring region: {0}")]
    Io(#[from] io::Error),
    /// The requested capacity is not a power of two in [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
    #[error("ring capacity {0} is not a power of two between 8 KiB and 1 MiB")]
    BadCapacity(usize),
    /// The memfd's size cannot be a header plus a valid data area.
    #[error("ring region of {0} bytes has no valid layout")]
    BadSize(u64),
    /// The header does not start with the ring's magic and version.
    #[error("ring region has a wrong magic or version")]
    BadMagic,
    /// The header's capacity disagrees with the mapping's size.
    #[error("ring header says {header} bytes of data, the mapping has {mapped}")]
    CapacityMismatch {
        /// Capacity written in the header.
        header: u64,
        /// Capacity derived from the mapping.
        mapped: usize,
    },
    /// The positions are impossible (the peer is buggy or hostile).
    #[error("ring positions are corrupt: producer {producer}, consumer {consumer}")]
    Corrupt {
        /// Producer position seen.
        producer: u64,
        /// Consumer position seen.
        consumer: u64,
    },
    /// A commit or consume beyond the bytes available.
    #[error("ring overrun: {requested} bytes requested, {available} available")]
    Overrun {
        /// Bytes committed or consumed.
        requested: usize,
        /// Bytes there were.
        available: usize,
    },
    /// This process already holds the producer (or consumer) view of the region.
    #[error("ring role already taken in this process")]
    RoleTaken,
}

/// What one side tells the other about the stream, without a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Nothing to report.
    Open,
    /// The producer will write no more: once the ring is empty, reads are EOF.
    Fin,
    /// The connection failed with this errno (ECONNRESET, EPIPE, ETIMEDOUT...).
    Reset(i32),
}

/// A header field on its own cache line.
#[repr(C, align(64))]
struct Line<T>(T);

/// The shared header. Every field is an atomic: the peer may change any of them at any time.
#[repr(C)]
struct Header {
    // Written once by the creator; the mapper checks them.
    magic: AtomicU64,
    version: AtomicU32,
    capacity: AtomicU64,
    // Each written by one side only, on its own cache line so that the two sides do not
    // invalidate each other's lines on every operation.
    producer: Line<AtomicU64>,
    consumer: Line<AtomicU64>,
    state: Line<AtomicU32>,
    bell: Line<AtomicU64>,
    spin: Line<AtomicU32>,
    // The switch from the plain carrier to the ring (see "Joining a stream" above).
    reader_attached: Line<AtomicU32>,
    switch_mark: Line<AtomicU64>,
    // Bytes of the stream that went through the carrier: sent (by the writer) and taken (by the
    // reader). Shared so that a new program image (exec) picks the stream up where it was.
    plain_sent: Line<AtomicU64>,
    plain_taken: Line<AtomicU64>,
    // A writer waiting for space sets `writer_waiting` and sleeps on the futex word `space`,
    // which the reader bumps when it hands back half the ring.
    writer_waiting: Line<AtomicU32>,
    space: Line<AtomicU32>,
    // Per side (producer, consumer): a lock word (0 free, 1 held, 2 held with waiters) and the
    // holder's process id, for processes that share one side after a fork.
    side_locks: [Line<[AtomicU32; 2]>; 2],
    // The CPU the reader last read on, plus one (0: not known yet), so that the writer knows
    // whether its copies will be read from its own cache.
    reader_cpu: Line<AtomicU32>,
    // Set by the creator when the writer relays a network peer (stackd): see
    // `RingRegion::writer_relays` and `RingRegion::answer_spin`.
    writer_relays: Line<AtomicU32>,
    answer_spin_us: Line<AtomicU32>,
}

/// A side of a ring, for [`RingRegion::lock_side`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The writers.
    Producer = 0,
    /// The readers.
    Consumer = 1,
}

/// Holds one side of a ring for this process; released on drop.
#[derive(Debug)]
pub struct SideGuard<'a> {
    words: &'a [AtomicU32; 2],
}

impl Drop for SideGuard<'_> {
    fn drop(&mut self) {
        let [lock, owner] = self.words;
        owner.store(0, Ordering::Relaxed);
        if lock.swap(0, Ordering::Release) == 2 {
            futex_wake(lock);
        }
    }
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);

/// One mapped ring region (the creator's or a mapper's).
#[derive(Debug)]
pub struct RingRegion {
    base: NonNull<u8>,
    map_len: usize,
    capacity: usize,
    /// The memfd; `None` once a mapper that needs no descriptor has closed it.
    fd: Option<OwnedFd>,
    producer_taken: AtomicBool,
    consumer_taken: AtomicBool,
}

// SAFETY: the mapping is plain shared memory owned by this value (unmapped in Drop); all header
// access goes through atomics and data access through the producer/consumer views, at most one
// of each per region in this process (enforced by the role flags).
unsafe impl Send for RingRegion {}
// SAFETY: as above; `&RingRegion` only hands out atomics and role-checked views.
unsafe impl Sync for RingRegion {}

impl RingRegion {
    /// Creates a region with a data area of `capacity` bytes in a fresh memfd (close-on-exec,
    /// sealed against shrinking and growing so that a peer cannot SIGBUS the other side).
    pub fn create(capacity: usize) -> Result<Self, RingError> {
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(RingError::BadCapacity(capacity));
        }
        // SAFETY: the name is a NUL-terminated literal; the flags are valid.
        let raw = unsafe {
            libc::memfd_create(
                c"joyride-ring".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = HEADER_SIZE + capacity;
        // SAFETY: plain system calls on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: as above.
        let sealed = unsafe {
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )
        };
        if sealed < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let region = Self::mmap(fd, capacity)?;
        let header = region.header();
        header.version.store(VERSION, Ordering::Relaxed);
        header.capacity.store(capacity as u64, Ordering::Relaxed);
        // Release: a mapper in this process that sees the magic sees the rest (another process
        // only gets the fd after this returns anyway).
        header.magic.store(MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Maps a region received from a peer, checking its size and header.
    pub fn map(fd: OwnedFd) -> Result<Self, RingError> {
        // SAFETY: fstat writes into the zeroed struct we pass.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and pointer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let size = stat.st_size as u64;
        let capacity = usize::try_from(size)
            .ok()
            .and_then(|size| size.checked_sub(HEADER_SIZE))
            .filter(|c| c.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(c))
            .ok_or(RingError::BadSize(size))?;
        // A region that can still shrink could be truncated under us (SIGBUS on access).
        // SAFETY: plain system call.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err(RingError::BadSize(size));
        }
        let region = Self::mmap(fd, capacity)?;
        let header = region.header();
        if header.magic.load(Ordering::Acquire) != MAGIC
            || header.version.load(Ordering::Relaxed) != VERSION
        {
            return Err(RingError::BadMagic);
        }
        let declared = header.capacity.load(Ordering::Relaxed);
        if declared != capacity as u64 {
            return Err(RingError::CapacityMismatch { header: declared, mapped: capacity });
        }
        Ok(region)
    }

    fn mmap(fd: OwnedFd, capacity: usize) -> Result<Self, RingError> {
        let map_len = HEADER_SIZE + capacity;
        // SAFETY: a fresh shared mapping of a descriptor we own; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error().into());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(RingError::BadSize(map_len as u64))?;
        Ok(Self {
            base,
            map_len,
            capacity,
            fd: Some(fd),
            producer_taken: AtomicBool::new(false),
            consumer_taken: AtomicBool::new(false),
        })
    }

    /// The memfd, to pass to the peer (SCM_RIGHTS or inheritance); `None` after
    /// [`close_fd`](RingRegion::close_fd).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Closes the memfd, keeping the mapping: a program's library does not keep two extra
    /// descriptors per connection (they would count against its limits and select()'s
    /// FD_SETSIZE).
    pub fn close_fd(&mut self) {
        self.fd = None;
    }

    /// Bytes in the data area.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// What the peers reported (see [`PeerState`]).
    pub fn state(&self) -> PeerState {
        decode_state(self.header().state.0.load(Ordering::Acquire))
    }

    /// Reports FIN or a reset to the other side. A reset is final and keeps its first errno;
    /// FIN after a reset changes nothing. SeqCst: a writer then checks the bell (see
    /// [`Producer::close`]), a reader checks the state after its drain.
    pub fn set_state(&self, state: PeerState) {
        let word = &self.header().state.0;
        match state {
            PeerState::Open => {}
            PeerState::Fin => {
                word.fetch_or(STATE_FIN, Ordering::SeqCst);
            }
            PeerState::Reset(errno) => {
                let errno = (errno as u32) & 0xffff;
                let _ = word.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |old| {
                    (old & STATE_RESET == 0).then_some(old | STATE_RESET | (errno << ERRNO_SHIFT))
                });
            }
        }
    }

    /// Bytes published and not yet consumed, from the shared positions (for readiness checks
    /// by threads that hold neither view).
    pub fn unread(&self) -> Result<usize, RingError> {
        let header = self.header();
        let consumer = header.consumer.0.load(Ordering::SeqCst);
        let producer = header.producer.0.load(Ordering::SeqCst);
        distance(producer, consumer, self.capacity)
    }

    /// Marks the ring as written by stackd for a peer across the network (a remote
    /// connection), before it is handed to the reader.
    pub fn mark_writer_relays(&self) {
        self.header().writer_relays.0.store(1, Ordering::Relaxed);
    }

    /// Whether the writer relays a network peer: its bytes come a network round trip after the
    /// reader's own, beyond a local spin, so a blocking reader spins only while it awaits an
    /// answer, and as long as [`answer_spin`](Self::answer_spin) says (spinning for a stream
    /// took the CPU from the daemon and the peer it waited for: on two cores a 20 µs spin made
    /// a bulk receiver twice as busy).
    pub fn writer_relays(&self) -> bool {
        self.header().writer_relays.0.load(Ordering::Relaxed) != 0
    }

    /// Advises the reader how long to poll for an answer from the writer's side (stackd's
    /// busy-poll setting, which it polls as long itself), before it is handed out.
    pub fn set_answer_spin(&self, spin: Duration) {
        let us = u32::try_from(spin.as_micros()).unwrap_or(u32::MAX);
        self.header().answer_spin_us.0.store(us, Ordering::Relaxed);
    }

    /// How long a reader that awaits an answer (it wrote last) may poll this ring before it
    /// sleeps, as the writer advises; zero when it advises nothing. The header is shared with
    /// the writer, so more than [`MAX_ANSWER_SPIN`] is taken as that: a writer cannot make its
    /// reader spin for minutes.
    pub fn answer_spin(&self) -> Duration {
        let us = u64::from(self.header().answer_spin_us.0.load(Ordering::Relaxed));
        Duration::from_micros(us).min(MAX_ANSWER_SPIN)
    }

    /// A reader's promise to poll the ring for up to `want` bytes (see
    /// [`Consumer::spin_begin`]); any thread of the reading process may make it.
    pub fn promise_spin(&self, want: usize) {
        let want = u32::try_from(want).unwrap_or(u32::MAX).max(1);
        self.header().spin.0.store(want, Ordering::SeqCst);
    }

    /// Withdraws a spin promise; returns the bytes now unread (checked after the withdrawal,
    /// which is what makes a skipped doorbell safe).
    pub fn withdraw_spin(&self) -> Result<usize, RingError> {
        self.header().spin.0.store(0, Ordering::SeqCst);
        self.unread()
    }

    /// Whether a reader has a spin promise out now. A writer decides on its doorbell with
    /// [`Producer::bell_needed`], never with this: it is for watching a reader (tests, stats).
    pub fn spin_promised(&self) -> bool {
        self.header().spin.0.load(Ordering::SeqCst) != 0
    }

    /// Whether the reader has attached (see "Joining a stream").
    pub fn reader_attached(&self) -> bool {
        self.header().reader_attached.0.load(Ordering::SeqCst) != 0
    }

    /// Takes one side of the ring for this process (processes that share a side after a fork
    /// take turns; threads of one process are the caller's business). A holder that died is
    /// noticed within a few tens of milliseconds and its hold broken.
    pub fn lock_side(&self, side: Side) -> SideGuard<'_> {
        let words = &self.header().side_locks[side as usize].0;
        let [lock, owner] = words;
        let me = std::process::id();
        if lock.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            owner.store(me, Ordering::Relaxed);
            return SideGuard { words };
        }
        loop {
            if lock.swap(2, Ordering::Acquire) == 0 {
                owner.store(me, Ordering::Relaxed);
                return SideGuard { words };
            }
            futex_wait(lock, 2, Duration::from_millis(20));
            let holder = owner.load(Ordering::Relaxed);
            // SAFETY: kill with signal 0 only checks that the process exists.
            let gone = holder != 0
                && holder != me
                && unsafe { libc::kill(holder as libc::pid_t, 0) } != 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone {
                let _ = owner.compare_exchange(holder, 0, Ordering::Relaxed, Ordering::Relaxed);
                lock.store(0, Ordering::Release);
            }
        }
    }

    /// The producer's view, borrowing the region. One per region per process.
    pub fn producer(&self) -> Result<Producer<&Self>, RingError> {
        Producer::new(self)
    }

    /// The consumer's view, borrowing the region. One per region per process.
    pub fn consumer(&self) -> Result<Consumer<&Self>, RingError> {
        Consumer::new(self)
    }

    /// The header's atomics: the one place that turns the mapping into typed references.
    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_SIZE bytes (>= size_of::<Header>(), checked at
        // compile time), page-aligned (>= align_of::<Header>()), lives as long as `self`, and
        // Header holds only atomics, for which any bit pattern is valid and concurrent access
        // from other threads or processes is sound.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// The data area as up to two slices: `len` bytes from ring index `start` (wrapping).
    ///
    /// # Safety
    /// The caller owns that range of the data area for the lifetime of the slices (the
    /// producer's free space or the consumer's readable bytes), so no `&mut` aliases it here.
    unsafe fn data(&self, start: u64, len: usize) -> (*mut u8, usize, *mut u8, usize) {
        assert!(len <= self.capacity, "ring range larger than the ring");
        let index = (start as usize) & (self.capacity - 1);
        let first = len.min(self.capacity - index);
        // SAFETY: HEADER_SIZE + index + first <= map_len, and index 0 is inside the mapping.
        let data = unsafe { self.base.as_ptr().add(HEADER_SIZE) };
        // SAFETY: index < capacity, so data + index is inside the mapping.
        (unsafe { data.add(index) }, first, data, len - first)
    }
}

impl Drop for RingRegion {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by mmap with this length and no reference into it
        // outlives `self` (views borrow the region).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
    }
}

/// FUTEX_WAIT on a word of the shared mapping while it still holds `seen`, for at most
/// `timeout`. Not FUTEX_PRIVATE: the waker is another process.
fn futex_wait(word: &AtomicU32, seen: u32, timeout: Duration) {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: the word lives in the mapping, which outlives the call; the timespec is valid for
    // the call; FUTEX_WAIT only reads the word. EINTR, EAGAIN and ETIMEDOUT are all "look again".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            &timeout as *const libc::timespec,
        )
    };
}

/// Wakes every waiter on a word of the shared mapping.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: the word lives in the mapping; FUTEX_WAKE does not access memory beyond hashing
    // its address.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

fn decode_state(word: u32) -> PeerState {
    if word & STATE_RESET != 0 {
        PeerState::Reset((word >> ERRNO_SHIFT) as i32)
    } else if word & STATE_FIN != 0 {
        PeerState::Fin
    } else {
        PeerState::Open
    }
}

/// Bytes between positions, or an error if the peer made them impossible.
fn distance(producer: u64, consumer: u64, capacity: usize) -> Result<usize, RingError> {
    let used = producer.wrapping_sub(consumer);
    if used > capacity as u64 {
        return Err(RingError::Corrupt { producer, consumer });
    }
    Ok(used as usize)
}

/// The writing side of a ring, over a borrowed (`&RingRegion`) or shared (`Arc`) region.
#[derive(Debug)]
pub struct Producer<R: Deref<Target = RingRegion>> {
    region: R,
    /// Our own position, kept privately: the shared copy is only published, never trusted.
    position: u64,
    /// Free space last seen; it only grows unless the consumer is hostile.
    granted: usize,
}

impl<R: Deref<Target = RingRegion>> Producer<R> {
    /// The producer's view of `region`. One per region per process.
    pub fn new(region: R) -> Result<Self, RingError> {
        if region.producer_taken.swap(true, Ordering::Acquire) {
            return Err(RingError::RoleTaken);
        }
        let position = region.header().producer.0.load(Ordering::Acquire);
        Ok(Self { region, position, granted: 0 })
    }

    /// The region this view writes.
    pub fn region(&self) -> &RingRegion {
        &self.region
    }

    fn consumer_position(&self) -> u64 {
        // Acquire: the consumer finished reading the bytes it hands back before this store.
        self.region.header().consumer.0.load(Ordering::Acquire)
    }

    /// Bytes in the ring (not yet consumed).
    pub fn len(&self) -> Result<usize, RingError> {
        distance(self.position, self.consumer_position(), self.region.capacity)
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> Result<bool, RingError> {
        Ok(self.len()? == 0)
    }

    /// Bytes that can be written now.
    pub fn free(&self) -> Result<usize, RingError> {
        Ok(self.region.capacity - self.len()?)
    }

    /// Free space as up to two slices (the second after the wrap); fill them, then [`commit`].
    ///
    /// [`commit`]: Producer::commit
    pub fn writable(&mut self) -> Result<(&mut [u8], &mut [u8]), RingError> {
        let free = self.free()?;
        self.granted = free;
        // SAFETY: [position, position + free) is free space: the consumer reads only below our
        // published position, and `&mut self` keeps a second borrow of it from this view.
        let (a, alen, b, blen) = unsafe { self.region.data(self.position, free) };
        // SAFETY: both ranges are inside the mapping, disjoint, and owned by us (see above).
        Ok(unsafe {
            (std::slice::from_raw_parts_mut(a, alen), std::slice::from_raw_parts_mut(b, blen))
        })
    }

    /// Publishes `n` bytes written through [`writable`](Producer::writable).
    ///
    /// More than the free space is [`RingError::Overrun`]: a caller bug, or a consumer that moved
    /// its position backwards; never a panic, so a hostile peer cannot bring stackd down.
    pub fn commit(&mut self, n: usize) -> Result<(), RingError> {
        if n == 0 {
            return Ok(());
        }
        if n > self.granted {
            self.granted = self.free()?;
        }
        if n > self.granted {
            return Err(RingError::Overrun { requested: n, available: self.granted });
        }
        self.granted -= n;
        self.position = self.position.wrapping_add(n as u64);
        // SeqCst (a Release store, and part of the wake-up order): see bell_needed.
        self.region.header().producer.0.store(self.position, Ordering::SeqCst);
        Ok(())
    }

    /// Copies as much of `bytes` as fits and publishes it; returns how much.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, RingError> {
        self.write_vectored(&[IoSlice::new(bytes)])
    }

    /// Copies as much of `slices` (in order) as fits and publishes it; returns how much.
    pub fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> Result<usize, RingError> {
        let reader_cpu = self.region.header().reader_cpu.0.load(Ordering::Relaxed);
        let streaming = reader_cpu != 0 && reader_cpu != current_cpu().wrapping_add(1);
        let (first, second) = self.writable()?;
        let targets = [first, second];
        let (mut target, mut offset, mut written) = (0, 0, 0);
        'outer: for slice in slices {
            let mut source: &[u8] = slice;
            while !source.is_empty() {
                while offset == targets[target].len() {
                    target += 1;
                    offset = 0;
                    if target == targets.len() {
                        break 'outer;
                    }
                }
                let n = source.len().min(targets[target].len() - offset);
                copy_into_ring(&mut targets[target][offset..offset + n], &source[..n], streaming);
                offset += n;
                written += n;
                source = &source[n..];
            }
        }
        // Streaming stores are weakly ordered: fence them before the position is published.
        #[cfg(target_arch = "x86_64")]
        // SAFETY: sfence has no preconditions (SSE is part of x86_64).
        unsafe {
            std::arch::x86_64::_mm_sfence()
        };
        self.commit(written)?;
        Ok(written)
    }

    /// After a commit: whether this writer must send one doorbell byte. If it returns true the
    /// bell is already counted; send exactly one byte, or call [`bell_not_sent`] if the send
    /// failed.
    ///
    /// Why no wake-up is lost: our position store (SeqCst, in commit) precedes the SeqCst loads
    /// here. A skip happens in two cases.
    /// - A spinning reader that will take everything: it clears `spin` (SeqCst) before it loads
    ///   the producer position (SeqCst); we loaded `spin` before that clear, and our store
    ///   precedes our load, so its load sees our bytes, and its promise covers all of them.
    /// - A bell already counted and no drain in progress: a drain sets DRAINING (SeqCst) after
    ///   our load and only then checks that the ring is empty, so it sees our bytes and does not
    ///   drain; the counted byte keeps the channel readable.
    ///
    /// [`bell_not_sent`]: Producer::bell_not_sent
    pub fn bell_needed(&self) -> Result<bool, RingError> {
        let header = self.region.header();
        let spin = header.spin.0.load(Ordering::SeqCst);
        // The bytes in the ring are at most what our last look at the consumer left plus what we
        // wrote since (the consumer only moves forward): if the promise covers that, skip the
        // consumer's cache line too — on a ping-pong that is one cache miss per message less.
        let at_most = self.region.capacity - self.granted;
        if spin != 0 && at_most <= spin as usize {
            return Ok(false);
        }
        let consumer = header.consumer.0.load(Ordering::SeqCst);
        let len = distance(self.position, consumer, self.region.capacity)?;
        if len == 0 || (spin != 0 && len <= spin as usize) {
            return Ok(false);
        }
        Ok(count_bell(&header.bell.0))
    }

    /// Reports FIN or a reset and says whether to send a doorbell byte for it, as
    /// [`bell_needed`](Producer::bell_needed) does for data (a spinning reader's promise does not
    /// cover a state change, so only an outstanding bell lets the writer skip).
    pub fn close(&self, state: PeerState) -> bool {
        self.region.set_state(state);
        count_bell(&self.region.header().bell.0)
    }

    /// Before a non-blocking writer reports a full ring: makes sure a doorbell byte of ours is
    /// queued at the reader, which drains it once it has emptied the ring. Taking that byte
    /// frees space in *our* socket's send queue, and the kernel's write-space wake-up then
    /// reaches a writer sleeping in epoll for EPOLLOUT (nothing else would wake it: the reader
    /// frees ring space without a system call). True if the caller must send the byte.
    pub fn bell_for_space(&self) -> bool {
        count_bell(&self.region.header().bell.0)
    }

    /// Takes back a bell counted by [`bell_needed`](Producer::bell_needed) whose byte could not
    /// be sent, so that later writers do not rely on a byte that never comes.
    pub fn bell_not_sent(&self) {
        release_bells(&self.region.header().bell.0, 1);
    }

    /// Whether the reader reads this ring (so this direction may leave the carrier).
    pub fn reader_attached(&self) -> bool {
        self.region.reader_attached()
    }

    /// Whether this direction already left the carrier (see [`switch_to_ring`]).
    ///
    /// [`switch_to_ring`]: Producer::switch_to_ring
    pub fn switched(&self) -> bool {
        self.region.header().switch_mark.0.load(Ordering::SeqCst) != 0
    }

    /// Takes the position from the shared header (another process sharing this side after a
    /// fork may have written since); call holding [`Side::Producer`].
    pub fn resync(&mut self) {
        self.position = self.region.header().producer.0.load(Ordering::Acquire);
        self.granted = 0;
    }

    /// Bytes this side sent through the carrier so far (0 for a fresh stream).
    pub fn plain_sent(&self) -> u64 {
        self.region.header().plain_sent.0.load(Ordering::SeqCst)
    }

    /// Counts bytes sent through the carrier (before the switch).
    pub fn note_plain_sent(&self, bytes: u64) {
        self.region.header().plain_sent.0.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Publishes that the first `plain_bytes` bytes of the stream went through the carrier and
    /// every later byte goes through the ring. Call once, before the first ring write or bell.
    pub fn switch_to_ring(&self, plain_bytes: u64) {
        let mark = plain_bytes.saturating_add(1);
        self.region.header().switch_mark.0.store(mark, Ordering::SeqCst);
    }

    /// For a writer that takes over a stream under way on the carrier when the region is made
    /// (stackd, for a connection to a remote peer): `plain_sent` bytes went through the
    /// carrier, of which the reader has not taken `plain_unread` yet; every later byte goes
    /// through the ring. Call before the region is handed to the reader.
    pub fn take_over(&self, plain_sent: u64, plain_unread: u64) {
        let header = self.region.header();
        header.plain_sent.0.store(plain_sent, Ordering::SeqCst);
        header.plain_taken.0.store(plain_sent.saturating_sub(plain_unread), Ordering::SeqCst);
        self.switch_to_ring(plain_sent);
    }

    /// Sleeps until at least `want` bytes (capped at half the ring) are free, the reader wakes
    /// the writer, or `timeout` passes; returns the free space then. Spurious returns are
    /// possible; the caller loops and checks whatever else can end its wait (a closed peer).
    pub fn wait_for_space(&self, want: usize, timeout: Duration) -> Result<usize, RingError> {
        let header = self.region.header();
        let want = want.clamp(1, self.region.capacity / 2);
        let seen = header.space.0.load(Ordering::SeqCst);
        // Store the flag, then load the consumer position (SeqCst both); the reader stores its
        // position, then loads the flag: one of us sees the other.
        // Free space from the shared positions: a process sharing this side after a fork may
        // have written since our own position was taken.
        let free = || Ok::<_, RingError>(self.region.capacity - self.region.unread()?);
        header.writer_waiting.0.store(1, Ordering::SeqCst);
        if free()? < want {
            futex_wait(&header.space.0, seen, timeout);
        }
        header.writer_waiting.0.store(0, Ordering::SeqCst);
        free()
    }
}

/// Large copies into the ring for a reader on another CPU bypass the writer's cache (streaming
/// stores): measured here, a reader on another core pulled 1 MiB rings out of the writer's
/// cache at 30–47 Gbit/s and out of memory at 95; on the writer's own CPU the cached copy is
/// faster (115 against 65), so the writer looks where the reader last read.
const STREAMING_COPY_MIN: usize = 16 << 10;

/// The calling thread's CPU (rseq or vDSO in glibc: no system call).
fn current_cpu() -> u32 {
    // SAFETY: no arguments; -1 (unknown) maps to a value no reader publishes.
    unsafe { libc::sched_getcpu() as u32 }
}

fn copy_into_ring(target: &mut [u8], source: &[u8], streaming: bool) {
    #[cfg(target_arch = "x86_64")]
    if streaming && source.len() >= STREAMING_COPY_MIN {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let head = target.as_ptr().align_offset(16).min(source.len());
        target[..head].copy_from_slice(&source[..head]);
        let body = (source.len() - head) / 16 * 16;
        let mut at = head;
        while at < head + body {
            // SAFETY: target[at..at + 16] is inside the slice and 16-byte aligned (head aligned
            // it); source[at..at + 16] is inside its slice (unaligned load).
            unsafe {
                let value = _mm_loadu_si128(source.as_ptr().add(at).cast::<__m128i>());
                _mm_stream_si128(target.as_mut_ptr().add(at).cast::<__m128i>(), value);
            }
            at += 16;
        }
        target[at..].copy_from_slice(&source[at..]);
        return;
    }
    target.copy_from_slice(source);
}

/// Counts a doorbell byte unless one is outstanding and no drain is in progress; true if the
/// caller must send it.
fn count_bell(bell: &AtomicU64) -> bool {
    let mut word = bell.load(Ordering::SeqCst);
    loop {
        if word & !DRAINING != 0 && word & DRAINING == 0 {
            return false;
        }
        // Counted before sent: the count never drops below what sits in the channel.
        match bell.compare_exchange_weak(
            word,
            word.wrapping_add(1),
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => return true,
            Err(now) => word = now,
        }
    }
}

/// Subtracts `n` from the bell count, saturating (a hostile peer may have zeroed it).
fn release_bells(bell: &AtomicU64, n: u64) {
    let _ = bell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |word| {
        Some((word & DRAINING) | (word & !DRAINING).saturating_sub(n))
    });
}

/// The outcome of [`Consumer::drain_bells`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The ring has bytes (or FIN/reset to report): read instead of sleeping.
    Readable,
    /// The ring is empty and the doorbell channel drained: sleep on the channel (or return
    /// EAGAIN). A wake-up may still be spurious; run the protocol again after it.
    Sleep,
}

/// The reading side of a ring, over a borrowed (`&RingRegion`) or shared (`Arc`) region.
#[derive(Debug)]
pub struct Consumer<R: Deref<Target = RingRegion>> {
    region: R,
    /// Our own position, kept privately (see [`Producer`]).
    position: u64,
    /// Readable bytes last seen; they only grow unless the producer is hostile.
    granted: usize,
    /// Bytes after `position` handed on with [`lend`](Consumer::lend) and not yet released: no
    /// longer readable, still ours (the producer does not reuse them).
    lent: usize,
}

impl<R: Deref<Target = RingRegion>> Consumer<R> {
    /// The consumer's view of `region`. One per region per process.
    pub fn new(region: R) -> Result<Self, RingError> {
        if region.consumer_taken.swap(true, Ordering::Acquire) {
            return Err(RingError::RoleTaken);
        }
        let position = region.header().consumer.0.load(Ordering::Acquire);
        Ok(Self { region, position, granted: 0, lent: 0 })
    }

    /// The region this view reads.
    pub fn region(&self) -> &RingRegion {
        &self.region
    }

    fn producer_position(&self, order: Ordering) -> u64 {
        // Acquire (or SeqCst): the bytes below the position were written before its store.
        self.region.header().producer.0.load(order)
    }

    fn len_with(&self, order: Ordering) -> Result<usize, RingError> {
        let producer = self.producer_position(order);
        let used = distance(producer, self.position, self.region.capacity)?;
        used.checked_sub(self.lent).ok_or(RingError::Corrupt { producer, consumer: self.position })
    }

    /// Bytes ready to read.
    pub fn len(&self) -> Result<usize, RingError> {
        self.len_with(Ordering::Acquire)
    }

    /// Whether nothing is ready to read.
    pub fn is_empty(&self) -> Result<bool, RingError> {
        Ok(self.len()? == 0)
    }

    /// Readable bytes as up to two slices (the second after the wrap); then [`consume`].
    ///
    /// [`consume`]: Consumer::consume
    pub fn readable(&mut self) -> Result<(&[u8], &[u8]), RingError> {
        let len = self.len()?;
        self.granted = len;
        let start = self.position.wrapping_add(self.lent as u64);
        // SAFETY: [start, start + len) was published by the producer, which does not write it
        // again until we move our position past it (which needs `&mut self`).
        let (a, alen, b, blen) = unsafe { self.region.data(start, len) };
        // SAFETY: both ranges are inside the mapping and not mutably borrowed in this process.
        Ok(unsafe { (std::slice::from_raw_parts(a, alen), std::slice::from_raw_parts(b, blen)) })
    }

    /// Hands `n` read bytes back to the producer. More than is readable is
    /// [`RingError::Overrun`] (see [`Producer::commit`]), and so is any while bytes are lent.
    pub fn consume(&mut self, n: usize) -> Result<(), RingError> {
        if self.lent != 0 && n != 0 {
            // The space to hand back would be the lent bytes', not these.
            return Err(RingError::Overrun { requested: n, available: 0 });
        }
        self.lend(n)?;
        self.release(n)
    }

    /// Takes `n` readable bytes without handing their space back: they stop being readable but
    /// stay in place, unchanged, until [`release`](Consumer::release)d (a reader that passes
    /// them on by reference, as stackd lends a program's bytes to its TCP engine until they are
    /// acknowledged). More than is readable is [`RingError::Overrun`].
    pub fn lend(&mut self, n: usize) -> Result<(), RingError> {
        if n == 0 {
            return Ok(());
        }
        if n > self.granted {
            self.granted = self.len()?;
        }
        if n > self.granted {
            return Err(RingError::Overrun { requested: n, available: self.granted });
        }
        self.granted -= n;
        self.lent += n;
        Ok(())
    }

    /// Bytes lent and not yet released.
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// Copies lent bytes from `offset` (counted from the oldest one) into `into`. Beyond the
    /// lent bytes is [`RingError::Overrun`].
    pub fn copy_lent(&self, offset: usize, into: &mut [u8]) -> Result<(), RingError> {
        if offset.saturating_add(into.len()) > self.lent {
            return Err(RingError::Overrun {
                requested: offset + into.len(),
                available: self.lent,
            });
        }
        let start = self.position.wrapping_add(offset as u64);
        // SAFETY: the range lies within the lent bytes, which the producer published and does
        // not write again before `release` moves our position past them; nothing in this process
        // borrows them mutably.
        let (a, alen, b, blen) = unsafe { self.region.data(start, into.len()) };
        // SAFETY: both ranges are inside the mapping (see `data`) and readable as above.
        let (first, second) =
            unsafe { (std::slice::from_raw_parts(a, alen), std::slice::from_raw_parts(b, blen)) };
        into[..alen].copy_from_slice(first);
        into[alen..].copy_from_slice(second);
        Ok(())
    }

    /// Hands the oldest `n` lent bytes back to the producer (more than are lent is
    /// [`RingError::Overrun`]), waking a writer that waits for space.
    pub fn release(&mut self, n: usize) -> Result<(), RingError> {
        if n == 0 {
            return Ok(());
        }
        if n > self.lent {
            return Err(RingError::Overrun { requested: n, available: self.lent });
        }
        self.lent -= n;
        self.position = self.position.wrapping_add(n as u64);
        let header = self.region.header();
        let cpu = current_cpu().wrapping_add(1);
        if header.reader_cpu.0.load(Ordering::Relaxed) != cpu {
            header.reader_cpu.0.store(cpu, Ordering::Relaxed);
        }
        // Release: our reads of those bytes happen before the producer reuses the space.
        header.consumer.0.store(self.position, Ordering::SeqCst);
        if header.writer_waiting.0.load(Ordering::SeqCst) != 0 {
            let free = self.region.capacity - (self.len_with(Ordering::SeqCst)? + self.lent);
            if free >= self.region.capacity / 2 {
                header.space.0.fetch_add(1, Ordering::SeqCst);
                futex_wake(&header.space.0);
            }
        }
        Ok(())
    }

    /// Takes the position from the shared header (another process sharing this side after a
    /// fork may have read since); call holding [`Side::Consumer`].
    pub fn resync(&mut self) {
        self.position = self.region.header().consumer.0.load(Ordering::Acquire);
        self.granted = 0;
        self.lent = 0;
    }

    /// Bytes of the stream this side took from the carrier so far.
    pub fn plain_taken(&self) -> u64 {
        self.region.header().plain_taken.0.load(Ordering::SeqCst)
    }

    /// Counts bytes taken from the carrier (before the switch).
    pub fn note_plain_taken(&self, bytes: u64) {
        self.region.header().plain_taken.0.fetch_add(bytes, Ordering::SeqCst);
    }

    /// For a reader that joins a stream under way on the carrier when the region is made
    /// (stackd, for a connection to a remote peer): the writer has sent `plain_sent` bytes
    /// through the carrier so far, and counts on from there. Call before the region is handed
    /// to the writer.
    pub fn take_over(&self, plain_sent: u64) {
        self.region.header().plain_sent.0.store(plain_sent, Ordering::SeqCst);
    }

    /// Tells writers that this side reads the ring (see "Joining a stream").
    pub fn attach(&self) {
        self.region.header().reader_attached.0.store(1, Ordering::SeqCst);
    }

    /// How many bytes of the stream came through the carrier before the writer switched to
    /// the ring, or `None` while it still writes to the carrier.
    pub fn plain_prefix(&self) -> Option<u64> {
        let mark = self.region.header().switch_mark.0.load(Ordering::SeqCst);
        mark.checked_sub(1)
    }

    /// Copies up to `buf.len()` bytes out and consumes them; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        let (first, second) = self.readable()?;
        let a = first.len().min(buf.len());
        buf[..a].copy_from_slice(&first[..a]);
        let b = second.len().min(buf.len() - a);
        buf[a..a + b].copy_from_slice(&second[..b]);
        self.consume(a + b)?;
        Ok(a + b)
    }

    /// Starts spinning on the ring, promising to take up to `want` bytes at once; writers then
    /// skip the doorbell for data that fits. Must be followed by [`spin_end`] before reading.
    ///
    /// [`spin_end`]: Consumer::spin_end
    pub fn spin_begin(&self, want: usize) {
        self.region.promise_spin(want);
    }

    /// Ends a spin; returns the bytes now readable. Load after clear (both SeqCst): every writer
    /// that skipped the bell because of our promise published before our clear, so it is seen.
    pub fn spin_end(&self) -> Result<usize, RingError> {
        self.region.header().spin.0.store(0, Ordering::SeqCst);
        self.len_with(Ordering::SeqCst)
    }

    /// The drain protocol, to run before sleeping on the doorbell channel or returning EAGAIN.
    ///
    /// Sets DRAINING, then checks the ring (so a writer that skipped the bell because one was
    /// counted is seen here, see [`Producer::bell_needed`]); if the ring is empty, calls
    /// `drain(pending)` which reads up to `pending` doorbell bytes without blocking and returns
    /// how many it read; clears DRAINING and checks the ring again (a writer that published
    /// after the first check loaded the bell after DRAINING was set: if before the clear, it saw
    /// DRAINING and rang, so its byte is counted; if after, it saw the drained count).
    ///
    /// Checking the ring only after DRAINING is set matters: checked before, a writer could
    /// publish, see the old bell outstanding and skip, and the drain would then consume that
    /// bell, leaving bytes in the ring with no doorbell for an event loop that polls the carrier
    /// after a short read (the ping-pong in `tests/ring_stress.rs` hangs without it).
    pub fn drain_bells(
        &self,
        drain: impl FnOnce(u64) -> io::Result<u64>,
    ) -> Result<Drained, RingError> {
        let bell = &self.region.header().bell.0;
        let pending = bell.fetch_or(DRAINING, Ordering::SeqCst) & !DRAINING;
        let clear = || bell.fetch_and(!DRAINING, Ordering::SeqCst);
        let len = match self.len_with(Ordering::SeqCst) {
            Ok(len) => len,
            Err(error) => {
                clear();
                return Err(error);
            }
        };
        if len != 0 {
            clear();
            return Ok(Drained::Readable);
        }
        let drained = if pending == 0 { Ok(0) } else { drain(pending) };
        if let Ok(n) = drained {
            release_bells(bell, n);
        }
        clear();
        drained?;
        if self.len_with(Ordering::SeqCst)? != 0 || self.region.state() != PeerState::Open {
            return Ok(Drained::Readable);
        }
        Ok(Drained::Sleep)
    }

    /// Before a reader sleeps by *reading* a doorbell byte from the channel (so that the
    /// wake-up is also the drain): marks a drain in progress for the whole sleep. Between
    /// taking a byte and giving its count back the reader holds a bell that is counted but no
    /// longer queued, and a writer must not skip its own byte on the strength of it — least of
    /// all a writer that found the ring full and counts on a queued byte to be drained once the
    /// ring is empty ([`Producer::bell_for_space`]). While DRAINING is set every writer sends.
    pub fn sleep_begin(&self) {
        self.region.header().bell.0.fetch_or(DRAINING, Ordering::SeqCst);
    }

    /// After [`sleep_begin`](Consumer::sleep_begin) and the read: gives back the `taken`
    /// doorbell bytes, ends the drain, and returns the bytes now readable (looked at after the
    /// clear, as in [`drain_bells`](Consumer::drain_bells)).
    pub fn sleep_end(&self, taken: u64) -> Result<usize, RingError> {
        let bell = &self.region.header().bell.0;
        release_bells(bell, taken);
        bell.fetch_and(!DRAINING, Ordering::SeqCst);
        self.len_with(Ordering::SeqCst)
    }

    /// Doorbell bytes counted and not yet drained (for tests and statistics).
    pub fn pending_bells(&self) -> u64 {
        self.region.header().bell.0.load(Ordering::Relaxed) & !DRAINING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(seed: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8).collect()
    }

    #[test]
    fn a_relaying_writer_and_its_advice_are_seen_by_every_mapping_of_the_ring() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let plain = RingRegion::create(MIN_CAPACITY).unwrap();
        region.mark_writer_relays();
        region.set_answer_spin(Duration::from_micros(150));
        let remap = |r: &RingRegion| {
            RingRegion::map(r.fd().unwrap().try_clone_to_owned().unwrap()).unwrap()
        };
        assert!(remap(&region).writer_relays(), "the reader's own mapping sees the mark");
        assert_eq!(remap(&region).answer_spin(), Duration::from_micros(150));
        assert!(!remap(&plain).writer_relays(), "a program's ring is not marked");
        assert_eq!(remap(&plain).answer_spin(), Duration::ZERO, "nor advised");
        region.header().answer_spin_us.0.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(remap(&region).answer_spin(), MAX_ANSWER_SPIN, "advice beyond the bound");
    }

    #[test]
    fn lent_bytes_stay_put_until_released_and_only_then_free_space() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        let cap = region.capacity();
        let first = pattern(1, cap - 100);
        assert_eq!(producer.write(&first).unwrap(), first.len());
        consumer.lend(cap - 200).unwrap();
        assert_eq!((consumer.len().unwrap(), consumer.lent()), (100, cap - 200));
        assert_eq!(producer.free().unwrap(), 100, "lent bytes still hold their space");
        assert!(consumer.consume(1).is_err(), "consume would hand back the lent bytes' space");
        let mut copy = vec![0u8; 300];
        consumer.copy_lent(cap - 500, &mut copy).unwrap();
        assert_eq!(copy, first[cap - 500..cap - 200]);
        assert!(consumer.copy_lent(cap - 500, &mut vec![0u8; 301]).is_err());
        // The rest of the bytes are still readable after the lent ones.
        let (a, b) = consumer.readable().unwrap();
        assert_eq!([a, b].concat(), first[cap - 200..]);

        consumer.release(1000).unwrap();
        assert_eq!((consumer.lent(), producer.free().unwrap()), (cap - 1200, 1100));
        // New bytes wrap around the end; lent ones that wrap copy out whole.
        let second = pattern(2, 1000);
        assert_eq!(producer.write(&second).unwrap(), 1000);
        consumer.lend(1100).unwrap();
        let mut tail = vec![0u8; 1100];
        consumer.copy_lent(cap - 1200, &mut tail).unwrap();
        assert_eq!(tail, [&first[cap - 200..], &second[..]].concat());
        assert!(consumer.release(cap).is_err(), "more than is lent");
        consumer.release(cap - 100).unwrap();
        assert_eq!((consumer.lent(), consumer.len().unwrap()), (0, 0));
        assert_eq!(producer.free().unwrap(), cap);
        consumer.consume(0).unwrap();
    }

    #[test]
    fn wraps_at_every_offset() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        let cap = region.capacity();
        // Move the start through every offset, writing a chunk that crosses the end each time.
        for offset in 0..cap {
            let chunk = pattern(offset, 1 + offset % 700 + 300);
            assert_eq!(producer.write(&chunk).unwrap(), chunk.len());
            assert_eq!(consumer.len().unwrap(), chunk.len());
            let mut out = vec![0; chunk.len() + 5];
            assert_eq!(consumer.read(&mut out).unwrap(), chunk.len());
            assert_eq!(&out[..chunk.len()], &chunk[..]);
            // Advance the start by one byte beyond the chunk so the next offset differs.
            let skew = cap - chunk.len() % cap + 1;
            let step = skew % cap;
            let filler = vec![0xee; step];
            assert_eq!(producer.write(&filler).unwrap(), step);
            let mut sink = vec![0; step];
            assert_eq!(consumer.read(&mut sink).unwrap(), step);
            assert!(consumer.is_empty().unwrap());
            assert_eq!(consumer.position as usize % cap, (offset + 1) % cap);
        }
    }

    #[test]
    fn full_ring_takes_what_fits() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        let big = pattern(1, MIN_CAPACITY + 100);
        assert_eq!(producer.write(&big).unwrap(), MIN_CAPACITY);
        assert_eq!(producer.free().unwrap(), 0);
        assert_eq!(producer.write(b"x").unwrap(), 0);
        let mut out = vec![0; 10];
        assert_eq!(consumer.read(&mut out).unwrap(), 10);
        assert_eq!(producer.write(&big[MIN_CAPACITY..]).unwrap(), 10);
        let mut rest = vec![0; MIN_CAPACITY];
        assert_eq!(consumer.read(&mut rest).unwrap(), MIN_CAPACITY);
        assert_eq!(&out[..], &big[..10]);
        assert_eq!(&rest[..], &big[10..MIN_CAPACITY + 10]);
    }

    #[test]
    fn vectored_writes_across_the_wrap() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        let lead = vec![1; MIN_CAPACITY - 10];
        producer.write(&lead).unwrap();
        consumer.read(&mut vec![0; MIN_CAPACITY - 10]).unwrap();
        let parts = [pattern(2, 7), Vec::new(), pattern(3, 9), pattern(4, 20)];
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        assert_eq!(producer.write_vectored(&slices).unwrap(), 36);
        let (first, second) = consumer.readable().unwrap();
        assert_eq!((first.len(), second.len()), (10, 26));
        let joined: Vec<u8> = [first, second].concat();
        assert_eq!(joined, parts.concat());
        // A vectored write larger than the free space stops exactly at full.
        let huge = [pattern(5, MIN_CAPACITY), pattern(6, 10)];
        let slices: Vec<IoSlice<'_>> = huge.iter().map(|p| IoSlice::new(p)).collect();
        assert_eq!(producer.write_vectored(&slices).unwrap(), MIN_CAPACITY - 36);
    }

    #[test]
    fn zero_copy_slices() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        producer.write(&vec![0; MIN_CAPACITY - 4]).unwrap();
        consumer.consume(MIN_CAPACITY - 4).unwrap();
        let (a, b) = producer.writable().unwrap();
        assert_eq!((a.len(), b.len()), (4, MIN_CAPACITY - 4));
        a.copy_from_slice(b"abcd");
        b[..3].copy_from_slice(b"efg");
        producer.commit(7).unwrap();
        let (a, b) = consumer.readable().unwrap();
        assert_eq!((a, b), (&b"abcd"[..], &b"efg"[..]));
        consumer.consume(5).unwrap();
        let (a, b) = consumer.readable().unwrap();
        assert_eq!((a, b), (&b"fg"[..], &b""[..]));
        assert_eq!(producer.len().unwrap(), 2);
    }

    #[test]
    fn state_bits() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        assert_eq!(region.state(), PeerState::Open);
        region.set_state(PeerState::Fin);
        assert_eq!(region.state(), PeerState::Fin);
        region.set_state(PeerState::Reset(libc::ECONNRESET));
        assert_eq!(region.state(), PeerState::Reset(libc::ECONNRESET));
        region.set_state(PeerState::Reset(libc::EPIPE));
        region.set_state(PeerState::Fin);
        assert_eq!(region.state(), PeerState::Reset(libc::ECONNRESET));
        // The peer's mapping sees the same word.
        let dup = region.fd().unwrap().try_clone_to_owned().unwrap();
        let peer = RingRegion::map(dup).unwrap();
        assert_eq!(peer.state(), PeerState::Reset(libc::ECONNRESET));
    }

    #[test]
    fn corrupt_positions_are_an_error() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        // A hostile peer moves the producer position far ahead of the consumer.
        region.header().producer.0.store(1 << 40, Ordering::SeqCst);
        assert!(matches!(
            consumer.len(),
            Err(RingError::Corrupt { producer: 0x100_0000_0000, consumer: 0 })
        ));
        assert!(matches!(consumer.read(&mut [0; 16]), Err(RingError::Corrupt { .. })));
        assert!(matches!(consumer.readable(), Err(RingError::Corrupt { .. })));
        // ...or the consumer position ahead of the producer.
        region.header().consumer.0.store(5, Ordering::SeqCst);
        assert!(matches!(producer.write(b"x"), Err(RingError::Corrupt { .. })));
        assert!(matches!(producer.bell_needed(), Err(RingError::Corrupt { .. })));
    }

    #[test]
    fn overruns_are_errors_not_panics() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        assert!(matches!(
            producer.commit(MIN_CAPACITY + 1),
            Err(RingError::Overrun { requested, available: MIN_CAPACITY }) if requested == MIN_CAPACITY + 1
        ));
        producer.write(&[7; 100]).unwrap();
        assert!(matches!(
            consumer.consume(101),
            Err(RingError::Overrun { requested: 101, available: 100 })
        ));
        consumer.consume(100).unwrap();
        // A hostile producer rewinds its position under a consumer: detected, nothing read.
        region.header().producer.0.store(50, Ordering::SeqCst);
        assert!(matches!(
            consumer.read(&mut [0; 8]),
            Err(RingError::Corrupt { producer: 50, consumer: 100 })
        ));
        assert!(matches!(consumer.consume(1), Err(RingError::Corrupt { .. })));
    }

    #[test]
    fn roles_are_single() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let _producer = region.producer().unwrap();
        assert!(matches!(region.producer(), Err(RingError::RoleTaken)));
    }

    #[test]
    fn create_refuses_bad_capacities() {
        for capacity in [0, 4096, MIN_CAPACITY + 1, MAX_CAPACITY * 2, 3 * MIN_CAPACITY] {
            assert!(
                matches!(RingRegion::create(capacity), Err(RingError::BadCapacity(c)) if c == capacity)
            );
        }
    }

    fn memfd(size: usize, seal: bool, fill: impl FnOnce(&mut [u8])) -> OwnedFd {
        use std::io::Write;
        // SAFETY: literal name, valid flags.
        let raw = unsafe {
            libc::memfd_create(c"t".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        assert!(raw >= 0);
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut bytes = vec![0; size];
        fill(&mut bytes);
        let mut file = std::fs::File::from(fd);
        file.write_all(&bytes).unwrap();
        let fd = OwnedFd::from(file);
        if seal {
            // SAFETY: plain system call.
            let sealed =
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
            assert_eq!(sealed, 0);
        }
        fd
    }

    fn good_header(bytes: &mut [u8], capacity: u64) {
        bytes[..8].copy_from_slice(&MAGIC.to_ne_bytes());
        bytes[8..12].copy_from_slice(&VERSION.to_ne_bytes());
        bytes[16..24].copy_from_slice(&capacity.to_ne_bytes());
    }

    #[test]
    fn map_checks_the_region() {
        let cap = MIN_CAPACITY as u64;
        // A handcrafted good region maps (so the refusals below are for the stated reason).
        assert!(RingRegion::map(memfd(HEADER_SIZE + MIN_CAPACITY, true, |b| good_header(b, cap)))
            .is_ok());
        let too_small = memfd(HEADER_SIZE + 4096, true, |b| good_header(b, 4096));
        assert!(matches!(RingRegion::map(too_small), Err(RingError::BadSize(s)) if s == 8192));
        let odd = memfd(HEADER_SIZE + MIN_CAPACITY + 1, true, |b| good_header(b, cap));
        assert!(matches!(RingRegion::map(odd), Err(RingError::BadSize(_))));
        let unsealed = memfd(HEADER_SIZE + MIN_CAPACITY, false, |b| good_header(b, cap));
        assert!(matches!(RingRegion::map(unsealed), Err(RingError::BadSize(_))));
        let wrong_magic = memfd(HEADER_SIZE + MIN_CAPACITY, true, |b| {
            good_header(b, cap);
            b[0] ^= 1;
        });
        assert!(matches!(RingRegion::map(wrong_magic), Err(RingError::BadMagic)));
        // The header claims more data than is mapped: refused, the mapping size wins.
        let lying = memfd(HEADER_SIZE + MIN_CAPACITY, true, |b| good_header(b, 1 << 20));
        assert!(matches!(
            RingRegion::map(lying),
            Err(RingError::CapacityMismatch { header: 0x10_0000, mapped: MIN_CAPACITY })
        ));
    }

    #[test]
    fn doorbell_protocol() {
        let region = RingRegion::create(MIN_CAPACITY).unwrap();
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        // Reader asleep, ring empty: the first write rings, the second relies on that bell.
        producer.write(b"ab").unwrap();
        assert!(producer.bell_needed().unwrap());
        producer.write(b"cd").unwrap();
        assert!(!producer.bell_needed().unwrap());
        assert_eq!(consumer.pending_bells(), 1);
        // Non-empty ring: the drain protocol refuses to drain.
        assert_eq!(
            consumer.drain_bells(|_| panic!("drained a non-empty ring")).unwrap(),
            Drained::Readable
        );
        consumer.read(&mut [0; 4]).unwrap();
        assert_eq!(consumer.drain_bells(Ok).unwrap(), Drained::Sleep);
        assert_eq!(consumer.pending_bells(), 0);
        // A spinning reader that takes everything: no bell; one that takes less: bell.
        consumer.spin_begin(8);
        producer.write(b"12345678").unwrap();
        assert!(!producer.bell_needed().unwrap());
        producer.write(b"9").unwrap();
        assert!(producer.bell_needed().unwrap());
        assert_eq!(consumer.spin_end().unwrap(), 9);
        // A failed send takes its bell back.
        producer.bell_not_sent();
        assert_eq!(consumer.pending_bells(), 0);
        // FIN on an empty ring is readable (EOF), not a reason to sleep.
        consumer.read(&mut [0; 9]).unwrap();
        assert!(producer.close(PeerState::Fin));
        assert!(!producer.close(PeerState::Fin), "a second bell while one is outstanding");
        assert_eq!(consumer.drain_bells(Ok).unwrap(), Drained::Readable);
    }
}
