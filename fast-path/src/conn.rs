//! One fast-path connection: the two rings of a stream and the protocol that moves a
//! program's reads and writes through them (stackd::ring explains the doorbell and the switch).
//!
//! The descriptor stays the socket's identity and doorbell: the program's own poll, epoll,
//! select, dup, fork and close keep working on it. Per direction, bytes first flow through the
//! socket itself ("plain"); once the reading side has mapped the ring, the writer switches to it,
//! and from then on bytes on the socket are doorbells only.
//!
//! Each direction has one lock, uncontended unless two threads use the same direction of the
//! same socket at once.

#![allow(unsafe_code)]

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use stackd::busy_poll::Backoff;
use stackd::ring::{Consumer, Drained, Producer, RingError, RingRegion, Side, SideGuard};

use crate::spin;
use crate::sys::{self, Errno};

/// How long a writer waiting for ring space sleeps before it checks that the peer still exists.
const SPACE_WAIT: Duration = Duration::from_millis(20);

/// A fast-path connection (shared by every descriptor that dup'd it).
#[derive(Debug)]
pub struct Conn {
    rx: Mutex<Rx>,
    tx: Mutex<Tx>,
    // The same regions, for lock-free readiness checks and spin promises.
    rx_region: Arc<RingRegion>,
    tx_region: Arc<RingRegion>,
    /// Set once the reader is past the bytes that came through the socket.
    rx_on_ring: AtomicBool,
    /// Set in both processes when a fork shares this connection: from then on each call takes
    /// its direction's side of the ring for the process and resumes from the shared positions.
    shared: AtomicBool,
    /// Whether the socket is non-blocking, as this process last set or saw it: decides only
    /// whether an empty read spins first (the sleep itself asks the kernel, so a flag changed
    /// by another process costs at most one spin, never a wrong result).
    nonblocking_hint: AtomicBool,
    /// Set when a send found the ring full: re-arms an edge-triggered EPOLLOUT, as EAGAIN
    /// does for a kernel socket.
    tx_blocked: AtomicBool,
    /// This side wrote last and has read nothing since: it awaits an answer, which is what
    /// makes a spin on a ring stackd writes for a remote peer worth its CPU.
    answer_awaited: AtomicBool,
    /// The connection's names, fixed once connected: asked of the supervisor once each, then
    /// answered here.
    local_name: OnceLock<SocketName>,
    peer_name: OnceLock<SocketName>,
}

/// A socket address as the kernel writes it.
#[derive(Clone, Copy)]
pub struct SocketName {
    /// The address bytes.
    pub storage: libc::sockaddr_storage,
    /// How many of them are the address.
    pub len: libc::socklen_t,
}

impl std::fmt::Debug for SocketName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketName(family {}, {} bytes)", self.storage.ss_family, self.len)
    }
}

#[derive(Debug)]
struct Rx {
    ring: Consumer<Arc<RingRegion>>,
    /// Bytes of the stream read from the socket before the writer switched.
    plain_read: u64,
    /// An error the socket reported (and the kernel forgot in reporting it) while the ring
    /// still held bytes: reported once they are read, as the kernel's socket reports a reset
    /// after the data that came before it.
    error_after_data: Option<Errno>,
    /// Whether a blocking read spins before it sleeps: after four spins in a row found
    /// nothing, only every 32nd read spins, to see whether the writer got faster.
    spin: Backoff,
}

#[derive(Debug)]
struct Tx {
    ring: Producer<Arc<RingRegion>>,
    /// Bytes written to the socket before this side switched to the ring.
    plain_written: u64,
    switched: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it cannot leave the ring views inconsistent (positions are only
    // published after the bytes are in place), so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ring_errno(_: RingError) -> Errno {
    // The peer broke the ring's invariants: the connection is unusable, as after a reset.
    libc::ECONNRESET
}

/// Where a read stands.
enum Phase {
    /// Socket bytes are data; at most this many more of them (None: no limit known yet).
    Plain(Option<u64>),
    /// Socket bytes are doorbells; data is in the ring.
    Ring,
}

impl Rx {
    fn phase(&self) -> Phase {
        match self.ring.plain_prefix() {
            None => Phase::Plain(None),
            Some(prefix) if self.plain_read < prefix => {
                Phase::Plain(Some(prefix - self.plain_read))
            }
            Some(_) => Phase::Ring,
        }
    }
}

impl Conn {
    /// Asks the supervisor for `fd`'s rings and maps them; `None` if `fd` carries no joyride
    /// stream (the trap path keeps serving it). A local connection's rings join the two
    /// programs; a remote one's join the program and stackd, which starts from the counts it
    /// wrote into the headers (`Conn::new` picks them up).
    pub fn attach(fd: RawFd) -> Option<Arc<Conn>> {
        let (rx_fd, tx_fd) = sys::joyride_rings(fd)?;
        // SAFETY: the supervisor installed these two descriptors in this process for us just
        // now; nothing else knows them.
        let (rx_fd, tx_fd) = unsafe { (OwnedFd::from_raw_fd(rx_fd), OwnedFd::from_raw_fd(tx_fd)) };
        let mapped = RingRegion::map(rx_fd).and_then(|mut rx_region| {
            let mut tx_region = RingRegion::map(tx_fd)?;
            rx_region.close_fd();
            tx_region.close_fd();
            Conn::new(rx_region, tx_region)
        });
        let Ok(conn) = mapped else {
            // stackd may already write this connection's payload to the ring (a remote
            // connection switches when its rings are made): left on the socket, the program
            // would take doorbells for data. Ending the stream is the honest failure.
            sys::shutdown_both(fd);
            return None;
        };
        conn.set_nonblocking_hint(sys::nonblocking(fd));
        conn.start_reading();
        Some(Arc::new(conn))
    }

    /// A connection over two mapped regions: `rx` is read, `tx` written. Until
    /// [`start_reading`](Conn::start_reading), the peer keeps writing to the socket.
    pub fn new(rx: RingRegion, tx: RingRegion) -> Result<Conn, RingError> {
        let (rx, tx) = (Arc::new(rx), Arc::new(tx));
        let consumer = Consumer::new(rx.clone())?;
        let producer = Producer::new(tx.clone())?;
        // A stream already under way (this program image was exec'd with the socket open)
        // continues from the shared counts and positions.
        let plain_read = consumer.plain_taken();
        let (plain_written, switched) = (producer.plain_sent(), producer.switched());
        Ok(Conn {
            rx: Mutex::new(Rx {
                ring: consumer,
                plain_read,
                error_after_data: None,
                spin: Backoff::default(),
            }),
            tx: Mutex::new(Tx { ring: producer, plain_written, switched }),
            rx_region: rx,
            tx_region: tx,
            rx_on_ring: AtomicBool::new(false),
            tx_blocked: AtomicBool::new(false),
            answer_awaited: AtomicBool::new(false),
            nonblocking_hint: AtomicBool::new(false),
            shared: AtomicBool::new(false),
            local_name: OnceLock::new(),
            peer_name: OnceLock::new(),
        })
    }

    /// Tells the peer's writer that this side reads the ring from now on.
    pub fn start_reading(&self) {
        lock(&self.rx).ring.attach();
    }

    /// What the rings say about readiness, with no system call and no lock (any thread may
    /// ask while another sleeps in a read): `(readable, writable)`, each `None` where the socket
    /// itself decides (a direction still on the socket). Writable means half the ring free, as
    /// a kernel socket reports POLLOUT.
    pub fn readiness(&self) -> (Option<bool>, Option<bool>) {
        let readable = self
            .rx_on_ring
            .load(Ordering::Acquire)
            .then(|| self.rx_region.unread().map_or(true, |unread| unread > 0));
        let writable = self.tx_region.reader_attached().then(|| {
            let capacity = self.tx_region.capacity();
            self.tx_region.unread().map_or(true, |unread| capacity - unread >= capacity / 2)
        });
        (readable, writable)
    }

    /// After a fork: both processes hold this connection now.
    pub fn mark_shared(&self) {
        self.shared.store(true, Ordering::Release);
    }

    /// In a shared connection, takes the read side for this process and resumes from the
    /// shared state (another process may have read since).
    fn hold_rx(&self, rx: &mut Rx) -> Option<SideGuard<'_>> {
        if !self.shared.load(Ordering::Acquire) {
            return None;
        }
        let guard = self.rx_region.lock_side(Side::Consumer);
        rx.ring.resync();
        rx.plain_read = rx.ring.plain_taken();
        Some(guard)
    }

    /// In a shared connection, takes the write side for this process and resumes from the
    /// shared state.
    fn hold_tx(&self, tx: &mut Tx) -> Option<SideGuard<'_>> {
        if !self.shared.load(Ordering::Acquire) {
            return None;
        }
        let guard = self.tx_region.lock_side(Side::Producer);
        tx.ring.resync();
        tx.plain_written = tx.ring.plain_sent();
        tx.switched = tx.ring.switched();
        Some(guard)
    }

    /// For a waiting call whose program waits for this socket to turn writable: sleeps until
    /// the reader has freed half the ring (it wakes the futex in the header) or `timeout`
    /// passes. False if another thread is writing right now (the caller sleeps otherwise).
    pub fn sleep_for_space(&self, timeout: Duration) -> bool {
        let Ok(tx) = self.tx.try_lock() else { return false };
        let capacity = tx.ring.region().capacity();
        let _ = tx.ring.wait_for_space(capacity / 2, timeout);
        true
    }

    /// Records O_NONBLOCK as this process just set it (fcntl F_SETFL, ioctl FIONBIO).
    pub fn set_nonblocking_hint(&self, nonblocking: bool) {
        self.nonblocking_hint.store(nonblocking, Ordering::Relaxed);
    }

    /// Whether a send found the ring full since the last call (and forgets it): an
    /// edge-triggered EPOLLOUT is due once the ring is writable again.
    pub fn take_tx_blocked(&self) -> bool {
        self.tx_blocked.swap(false, Ordering::AcqRel)
    }

    /// Promises the peer's writer that this process polls the ring, so that it may skip the
    /// doorbell; false if this direction is not on the ring (nothing was promised then).
    /// [`end_spin`](Conn::end_spin) must follow, and its answer be acted on.
    pub fn begin_spin(&self) -> bool {
        if !self.rx_on_ring.load(Ordering::Acquire) {
            return false;
        }
        self.rx_region.promise_spin(u32::MAX as usize);
        true
    }

    /// Withdraws a [`begin_spin`](Conn::begin_spin) promise; true if the ring holds bytes (which
    /// a writer may have published without a doorbell).
    pub fn end_spin(&self) -> bool {
        self.rx_region.withdraw_spin().map_or(true, |unread| unread > 0)
    }

    /// The cached local (`peer == false`) or peer name, if asked before.
    pub fn name(&self, peer: bool) -> Option<&SocketName> {
        if peer {
            self.peer_name.get()
        } else {
            self.local_name.get()
        }
    }

    /// Caches a name the supervisor answered.
    pub fn remember_name(&self, peer: bool, name: SocketName) {
        let _ = if peer { self.peer_name.set(name) } else { self.local_name.set(name) };
    }

    /// Bytes ready to read now without blocking (FIONREAD).
    pub fn readable_now(&self, fd: RawFd) -> usize {
        let rx = lock(&self.rx);
        match rx.phase() {
            Phase::Ring => rx.ring.len().unwrap_or(0),
            Phase::Plain(limit) => {
                let mut queued: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int.
                unsafe { libc::syscall(libc::SYS_ioctl, fd, libc::FIONREAD, &mut queued) };
                let queued = queued.max(0) as u64;
                limit.map_or(queued, |limit| queued.min(limit)) as usize
            }
        }
    }

    /// recv(2) semantics over the rings: MSG_PEEK, MSG_DONTWAIT and MSG_WAITALL are honoured,
    /// O_NONBLOCK and SO_RCVTIMEO act through the socket the reader sleeps on.
    pub fn recv(&self, fd: RawFd, bufs: &mut [IoSliceMut<'_>], flags: i32) -> Result<usize, Errno> {
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        let peek = flags & libc::MSG_PEEK != 0;
        let dontwait = flags & libc::MSG_DONTWAIT;
        let wait_all = flags & libc::MSG_WAITALL != 0 && !peek;
        let mut rx = lock(&self.rx);
        let mut side = self.hold_rx(&mut rx);
        let mut got = 0;
        loop {
            let step = match rx.phase() {
                Phase::Plain(limit) => rx.read_plain(fd, bufs, got, limit, peek),
                Phase::Ring => {
                    // Once: a store on every read would dirty a line other threads poll.
                    if !self.rx_on_ring.load(Ordering::Relaxed) {
                        self.rx_on_ring.store(true, Ordering::Release);
                    }
                    rx.read_ring(bufs, got, peek).map_err(ring_errno)
                }
            };
            match step {
                Ok(0) => {}
                Ok(n) => {
                    got += n;
                    if !peek && self.answer_awaited.load(Ordering::Relaxed) {
                        self.answer_awaited.store(false, Ordering::Relaxed);
                    }
                    if !wait_all || got == total {
                        rx.drain_if_empty(fd);
                        return Ok(got);
                    }
                    continue;
                }
                Err(libc::EAGAIN) => {}
                Err(errno) => return if got > 0 { Ok(got) } else { Err(errno) },
            }
            if got > 0 && !wait_all {
                return Ok(got);
            }
            if let Some(errno) = rx.error_after_data {
                if got > 0 {
                    return Ok(got);
                }
                if !peek {
                    rx.error_after_data = None;
                }
                return Err(errno);
            }
            // Nothing to read: spin (blocking reads only), then the drain protocol, then sleep
            // in a read of the socket (not holding a shared side: another process's
            // non-blocking read must not wait for our sleep).
            let spin_first = dontwait == 0 && !self.nonblocking_hint.load(Ordering::Relaxed);
            let awaiting_answer = self.answer_awaited.load(Ordering::Relaxed);
            match rx.prepare_sleep(fd, total - got, spin_first, awaiting_answer) {
                Ok(Some(Woke::Again)) => continue,
                Ok(Some(Woke::Eof)) => return Ok(got),
                Ok(None) => {}
                Err(errno) => return if got > 0 { Ok(got) } else { Err(errno) },
            }
            drop(side.take());
            // On the ring, every socket byte is a doorbell: the sleep takes the one that wakes
            // it, which saves the drain that would follow (a system call per wake-up). Before
            // the switch socket bytes may be data, so the sleep only peeks.
            let waited = if matches!(rx.phase(), Phase::Ring) {
                rx.ring.sleep_begin();
                let waited = sys::recv(fd, &mut [0u8; 1], dontwait);
                let taken = waited.map_or(0, |n| n as u64);
                rx.ring.sleep_end(taken).map_err(ring_errno)?;
                waited
            } else {
                sys::recv(fd, &mut [0u8; 1], libc::MSG_PEEK | dontwait)
            };
            side = self.hold_rx(&mut rx);
            match waited {
                // EOF on the socket; bytes the writer put in the ring before closing come first.
                Ok(0) if rx.at_eof().map_err(ring_errno)? => return Ok(got),
                Ok(_) => {}
                // So do they before a reset (stackd writes what came before one, then resets).
                Err(errno)
                    if errno != libc::EAGAIN
                        && errno != libc::EINTR
                        && !rx.at_eof().map_err(ring_errno)? =>
                {
                    rx.error_after_data = Some(errno);
                }
                Err(errno) => return if got > 0 { Ok(got) } else { Err(errno) },
            }
        }
    }

    /// send(2) semantics over the rings: a blocking send takes every byte (waiting for space),
    /// a non-blocking one what fits; EPIPE and SIGPIPE (unless MSG_NOSIGNAL) once the peer is
    /// gone.
    pub fn send(&self, fd: RawFd, bufs: &[IoSlice<'_>], flags: i32) -> Result<usize, Errno> {
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        let mut tx = lock(&self.tx);
        let mut side = self.hold_tx(&mut tx);
        if !tx.switched {
            if !tx.ring.reader_attached() {
                return tx.write_plain(fd, bufs, flags);
            }
            // Before the first ring byte or doorbell (stackd::ring, "Joining a stream").
            tx.ring.switch_to_ring(tx.plain_written);
            tx.switched = true;
        }
        if total == 0 {
            return Ok(0);
        }
        let mut sent = 0;
        loop {
            let n = tx.write_ring(bufs, sent).map_err(ring_errno)?;
            sent += n;
            if n > 0 && !self.answer_awaited.load(Ordering::Relaxed) {
                self.answer_awaited.store(true, Ordering::Relaxed);
            }
            if n > 0 && tx.ring.bell_needed().map_err(ring_errno)? {
                if let Err(errno) = ring_bell(fd) {
                    tx.ring.bell_not_sent();
                    return peer_gone(fd, flags, sent, errno);
                }
            }
            if sent == total {
                return Ok(sent);
            }
            if flags & libc::MSG_DONTWAIT != 0 || sys::nonblocking(fd) {
                if sent > 0 {
                    return Ok(sent);
                }
                self.tx_blocked.store(true, Ordering::Release);
                if tx.ring.bell_for_space() && ring_bell(fd).is_err() {
                    tx.ring.bell_not_sent();
                }
                return Err(libc::EAGAIN);
            }
            drop(side.take());
            loop {
                let free = tx.ring.wait_for_space(total - sent, SPACE_WAIT).map_err(ring_errno)?;
                if free > 0 {
                    break;
                }
                if sys::hung_up(fd) {
                    return peer_gone(fd, flags, sent, libc::EPIPE);
                }
            }
            side = self.hold_tx(&mut tx);
        }
    }
}

/// What ended a wait for data.
enum Woke {
    /// Look again (data, a doorbell, or a spurious wake-up).
    Again,
    /// The peer closed its side and nothing is left to read.
    Eof,
}

impl Rx {
    /// Reads socket bytes that are data: at most `limit` of them, peeking first so that no
    /// doorbell that follows them is taken as data (a doorbell is only sent after the limit is
    /// published, so a peek that returns one also sees the limit).
    fn read_plain(
        &mut self,
        fd: RawFd,
        bufs: &mut [IoSliceMut<'_>],
        offset: usize,
        limit: Option<u64>,
        peek: bool,
    ) -> Result<usize, Errno> {
        let Some(buf) = segment_at_mut(bufs, offset) else { return Ok(0) };
        let want = limit.map_or(buf.len(), |limit| buf.len().min(limit as usize));
        let seen = sys::recv(fd, &mut buf[..want], libc::MSG_PEEK | libc::MSG_DONTWAIT)?;
        if seen == 0 {
            return Ok(0);
        }
        let data = match (limit, self.ring.plain_prefix()) {
            (None, Some(prefix)) => seen.min(prefix.saturating_sub(self.plain_read) as usize),
            _ => seen,
        };
        if peek || data == 0 {
            return Ok(data);
        }
        // The bytes are queued already, and this thread holds the read side: this takes exactly
        // them.
        let taken = sys::recv(fd, &mut buf[..data], libc::MSG_DONTWAIT)?;
        self.plain_read += taken as u64;
        self.ring.note_plain_taken(taken as u64);
        Ok(taken)
    }

    /// Eager draining: once a read empties the ring, take the doorbell bytes that announced
    /// it, so that the socket stops polling readable. A stale doorbell would make a program's
    /// select() report a readable socket whose blocking read then blocks (iperf3's control
    /// channel deadlocks on that), and would keep an edge-triggered epoll from seeing the next
    /// doorbell's edge.
    fn drain_if_empty(&mut self, fd: RawFd) {
        if !matches!(self.phase(), Phase::Ring) || self.ring.pending_bells() == 0 {
            return;
        }
        if self.ring.is_empty().unwrap_or(false) {
            let mut eof = false;
            let _ = self.ring.drain_bells(|pending| drain_bells(fd, pending, &mut eof));
        }
    }

    /// Copies ring bytes into `bufs` from `offset` on; consumes them unless peeking.
    fn read_ring(
        &mut self,
        bufs: &mut [IoSliceMut<'_>],
        offset: usize,
        peek: bool,
    ) -> Result<usize, RingError> {
        let (first, second) = self.ring.readable()?;
        let available = first.len() + second.len();
        if available == 0 {
            return Ok(0);
        }
        let mut copied = 0;
        let mut skip = offset;
        for buf in bufs.iter_mut() {
            if skip >= buf.len() {
                skip -= buf.len();
                continue;
            }
            let target = &mut buf[skip..];
            skip = 0;
            let n = target.len().min(available - copied);
            copy_from_ring(first, second, copied, &mut target[..n]);
            copied += n;
            if copied == available {
                break;
            }
        }
        if !peek {
            self.ring.consume(copied)?;
        }
        Ok(copied)
    }

    /// How long a blocking read may spin before it sleeps, in ns. On a ring stackd writes for
    /// a remote peer, only while an answer is awaited and as long as stackd advises (it polls
    /// as long itself); a stream's next bytes come when the network brings them, and a spin
    /// for them only takes the CPU from the daemon that brings them.
    fn spin_budget_ns(&self, awaiting_answer: bool) -> u64 {
        let region = self.ring.region();
        match (region.writer_relays(), awaiting_answer) {
            (false, _) => spin::budget_ns(),
            (true, true) if spin::budget_ns() > 0 => {
                u64::try_from(region.answer_spin().as_nanos()).unwrap_or(u64::MAX)
            }
            (true, _) => 0,
        }
    }

    /// Before sleeping for something to read: a bounded spin on the ring (blocking reads), then
    /// the drain protocol. `None`: nothing came, sleep on the socket (a peek, so that
    /// O_NONBLOCK, SO_RCVTIMEO and SA_RESTART behave as on the socket itself).
    fn prepare_sleep(
        &mut self,
        fd: RawFd,
        want: usize,
        spin_first: bool,
        awaiting_answer: bool,
    ) -> Result<Option<Woke>, Errno> {
        if !matches!(self.phase(), Phase::Ring) {
            return Ok(None);
        }
        let budget = self.spin_budget_ns(awaiting_answer);
        if spin_first && budget > 0 && self.spin.worth_trying() {
            self.ring.spin_begin(want);
            let ring = &self.ring;
            let _ = spin::spin_for(budget, || {
                ring.len().map_or(Some(()), |len| (len > 0).then_some(()))
            });
            if self.ring.spin_end().map_err(ring_errno)? > 0 {
                self.spin.found();
                return Ok(Some(Woke::Again));
            }
            self.spin.missed();
        }
        let mut eof = false;
        match self.ring.drain_bells(|pending| drain_bells(fd, pending, &mut eof)) {
            Ok(Drained::Readable) => Ok(Some(Woke::Again)),
            Ok(Drained::Sleep) if eof => Ok(Some(Woke::Eof)),
            Ok(Drained::Sleep) => Ok(None),
            Err(error) => Err(ring_errno(error)),
        }
    }

    /// After the socket read EOF: whether the stream is over (nothing left in the ring, and no
    /// data bytes still due from the socket).
    fn at_eof(&self) -> Result<bool, RingError> {
        Ok(self.ring.is_empty()? && !matches!(self.phase(), Phase::Plain(Some(_))))
    }
}

impl Tx {
    /// Writes to the socket itself (the reader has no ring yet), as the kernel call would.
    fn write_plain(&mut self, fd: RawFd, bufs: &[IoSlice<'_>], flags: i32) -> Result<usize, Errno> {
        let sent = if flags == 0 {
            sys::writev(fd, bufs)?
        } else {
            let mut sent = 0;
            for buf in bufs.iter().filter(|buf| !buf.is_empty()) {
                match sys::send(fd, buf, flags) {
                    Ok(n) => {
                        sent += n;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(errno) if sent == 0 => return Err(errno),
                    Err(_) => break,
                }
            }
            sent
        };
        self.plain_written += sent as u64;
        self.ring.note_plain_sent(sent as u64);
        Ok(sent)
    }

    /// Copies as much of `bufs` (from `offset`) as fits into the ring.
    fn write_ring(&mut self, bufs: &[IoSlice<'_>], offset: usize) -> Result<usize, RingError> {
        let mut skip = offset;
        let mut written = 0;
        for buf in bufs {
            if skip >= buf.len() {
                skip -= buf.len();
                continue;
            }
            let part = &buf[skip..];
            skip = 0;
            let n = self.ring.write(part)?;
            written += n;
            if n < part.len() {
                break;
            }
        }
        Ok(written)
    }
}

/// Sends one doorbell byte; blocks only if the socket buffer is full (it never holds more than
/// a few bells).
fn ring_bell(fd: RawFd) -> Result<(), Errno> {
    match sys::send(fd, &[0], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
        Err(libc::EAGAIN) => sys::send(fd, &[0], libc::MSG_NOSIGNAL).map(drop),
        other => other.map(drop),
    }
}

/// The peer closed its end: what the kernel would report for this send. Bytes already taken
/// are reported as a short send; otherwise a one-byte send with the caller's flags gets the
/// kernel's own EPIPE and SIGPIPE (unless MSG_NOSIGNAL).
fn peer_gone(fd: RawFd, flags: i32, sent: usize, errno: Errno) -> Result<usize, Errno> {
    if sent > 0 {
        return Ok(sent);
    }
    match sys::send(fd, &[0], (flags & libc::MSG_NOSIGNAL) | libc::MSG_DONTWAIT) {
        Err(kernel) => Err(kernel),
        Ok(_) => Err(errno),
    }
}

/// Reads up to `pending` doorbell bytes without blocking; notes EOF.
fn drain_bells(fd: RawFd, pending: u64, eof: &mut bool) -> std::io::Result<u64> {
    let mut scratch = [0u8; 64];
    let mut drained = 0;
    while drained < pending {
        let want = (pending - drained).min(scratch.len() as u64) as usize;
        match sys::recv(fd, &mut scratch[..want], libc::MSG_DONTWAIT) {
            Ok(0) => {
                *eof = true;
                break;
            }
            Ok(n) => drained += n as u64,
            Err(libc::EAGAIN) | Err(libc::EINTR) => break,
            Err(errno) => return Err(std::io::Error::from_raw_os_error(errno)),
        }
    }
    Ok(drained)
}

/// The remainder of `bufs` after `offset` bytes, as one slice (the first non-empty segment).
fn segment_at_mut<'a>(bufs: &'a mut [IoSliceMut<'_>], offset: usize) -> Option<&'a mut [u8]> {
    let mut skip = offset;
    for buf in bufs.iter_mut() {
        if skip < buf.len() {
            return Some(&mut buf[skip..]);
        }
        skip -= buf.len();
    }
    None
}

/// Copies `out.len()` bytes starting `from` bytes into the two readable ring slices.
fn copy_from_ring(first: &[u8], second: &[u8], from: usize, out: &mut [u8]) {
    let mut done = 0;
    if from < first.len() {
        let n = out.len().min(first.len() - from);
        out[..n].copy_from_slice(&first[from..from + n]);
        done = n;
    }
    if done < out.len() {
        let start = from + done - first.len();
        let rest = out.len() - done;
        out[done..].copy_from_slice(&second[start..start + rest]);
    }
}
