//! The shared-memory data plane for connections to remote peers (DESIGN.md, "Fast path").
//!
//! A TCP socket whose program runs the fast-path library gets two rings on its first
//! [`Operation::Rings`](crate::proto::Operation::Rings); from then on the daemon moves payload
//! between the engine and the rings instead of through the carrier, which stays the socket's
//! identity and doorbell. The daemon writes one ring (engine → program) and reads the other
//! (program → engine), with the protocol of [`crate::ring`]:
//! - Engine → program: the daemon switches this direction the moment it makes the rings. The
//!   program may not have read every byte already on the carrier, so the ring's header is
//!   told how many it has not (the kernel's socket diagnostics give the program end's receive
//!   queue exactly); the library starts from that count and reads the rest of the carrier as
//!   data, then everything after as doorbells. Nothing else is written to the carrier between
//!   the count and the switch: the daemon is single-threaded.
//! - Program → engine: the daemon attaches as the reader only once the connection is
//!   established, since the program's library writes to the ring as soon as the reader has
//!   attached, and a connecting socket must neither take data nor poll writable (its carrier's
//!   filler keeps it from both). Carrier bytes are data up to the writer's published switch
//!   count and doorbells after it; the daemon peeks before it takes, as the library does.
//!
//! The program's ring is the connection's send buffer: the daemon lends the engine what the
//! program wrote ([`ProgramRing`], fbsd-tcp's `SendSource`), the engine copies it from there
//! into frames and hands the space back to the program once it is acknowledged. The other ring
//! is the engine's receive sink ([`ProgramSink`], fbsd-tcp's `RecvSink`): while the engine's
//! receive buffer is empty, in-order payload goes from the frame straight into it. Copies per
//! byte, program to wire: two (the program's into the ring, the engine's into the frame);
//! wire to program: two (frame into the ring, ring into the program's buffer), three when the
//! program lags and the receive buffer holds a segment first. The carrier plane copies three
//! times each way, two of them in system calls (the program's and the daemon's side of the
//! unix socket).
//!
//! A doorbell from the daemon costs it one system call, and only when the program is not
//! spinning on the ring; the program's doorbell wakes the daemon's event loop once per batch
//! (a writer skips the bell while one is outstanding).
//!
//! A request/response hands the connection over at each message: payload that moves one way
//! after it moved the other, once that other way is drained, is a turn (`ring_turns`). The
//! event loop polls for the other side's answer after a turn (`--busy-poll`), and the ring to
//! the program carries that time as advice: a program that wrote last spins as long on its
//! read. A stream, one way or both, makes no turns and so never polls.

use std::io::IoSlice;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fbsd_tcp::storage::{RecvSink, SendSource};
use fbsd_tcp::{Errno, Shutdown};

use super::{carrier_error, internal, Context, Fate, Flow, Record, ServiceCounters};
use crate::carrier::Transfer;
use crate::proto::ProtocolError;
use crate::ring::{Consumer, Drained, Producer, RingRegion};

/// Passes through the program → engine loop in one pump, at most (each moves bytes or drains
/// doorbells; the bound keeps a hostile program from holding the event loop).
const MAX_PASSES: usize = 64;

/// One remote connection's rings, as the daemon holds them.
#[derive(Debug)]
pub(super) struct SocketRings {
    /// Engine → program: the daemon writes, and so does the engine itself ([`ProgramSink`]).
    to_program: SharedProducer,
    /// The engine puts in-order payload straight into `to_program` (see [`ProgramSink`]).
    sink_lent: bool,
    /// Program → engine: the daemon reads, and lends the engine what it read.
    from_program: SharedConsumer,
    /// The engine holds `from_program` as its send buffer (see [`ProgramRing`]).
    lent_to_engine: bool,
    /// Bytes of the program's stream taken from the carrier as data.
    taken_plain: u64,
    /// The daemon reads `from_program` (set once the connection is established).
    attached: bool,
    /// The ring to the program is full: the daemon waits for the write-space edge its carrier
    /// gets when the program takes the doorbell queued for it.
    space_wanted: bool,
    /// The carrier is watched for write space (as every carrier starts). Only a full ring needs
    /// it: otherwise each doorbell the program takes would wake the daemon for nothing.
    watching_space: bool,
}

impl SocketRings {
    /// Rings for `record`'s connection, taking over the streams where the carrier left them.
    pub(super) fn new(
        capacity: usize,
        answer_spin: Duration,
        record: &Record,
    ) -> Result<SocketRings, ProtocolError> {
        let carrier = record.carrier.as_ref().ok_or_else(|| internal("no carrier".into()))?;
        let make = || {
            RingRegion::create(capacity).map_err(|error| match error {
                crate::ring::RingError::Io(error) => carrier_error(error),
                other => internal(format!("cannot make a ring: {other}")),
            })
        };
        // Each count is a socket-diagnostics round trip: asked only when it can be non-zero
        // (nothing written to the program yet; a connecting socket's carrier is full of filler,
        // which keeps the program from writing).
        let unread_by_program = match record.sent_to_program {
            0 => 0,
            _ => carrier.unread_by_program().map_err(carrier_error)?,
        };
        let queued = if record.connecting {
            record.filler
        } else {
            carrier.queued_from_program().map_err(carrier_error)?
        };
        let to_region = make()?;
        to_region.mark_writer_relays();
        to_region.set_answer_spin(answer_spin);
        let to_program = Producer::new(Box::new(to_region)).map_err(|e| internal(e.to_string()))?;
        let from_program = Consumer::new(Box::new(make()?)).map_err(|e| internal(e.to_string()))?;
        to_program.take_over(record.sent_to_program, unread_by_program as u64);
        // The filler is not the program's: it waits in the queue until the connect completes.
        let queued_data = queued.saturating_sub(record.filler) as u64;
        from_program.take_over(record.taken_from_program + queued_data);
        Ok(SocketRings {
            to_program: Arc::new(Mutex::new(ToProgram {
                producer: to_program,
                delivered: 0,
                broken: false,
            })),
            sink_lent: false,
            from_program: Arc::new(Mutex::new(from_program)),
            lent_to_engine: false,
            taken_plain: record.taken_from_program,
            attached: false,
            space_wanted: false,
            watching_space: true,
        })
    }

    /// Copies of the two memfds for the program: (the ring it reads, the ring it writes).
    pub(super) fn descriptors(&self) -> Result<[OwnedFd; 2], ProtocolError> {
        let copy = |region: &RingRegion| {
            let fd = region.fd().ok_or_else(|| internal("a ring lost its descriptor".into()))?;
            fd.try_clone_to_owned().map_err(carrier_error)
        };
        let from_program = copy(lock(&self.from_program).region())?;
        let to_program = copy(lock(&self.to_program).producer.region())?;
        Ok([to_program, from_program])
    }

    /// Whether the carrier's watch must change: `Some(true)` to add write space, `Some(false)`
    /// to drop it. Call [`watched`](SocketRings::watched) once the change is made.
    pub(super) fn watch_change(&self) -> Option<bool> {
        (self.space_wanted != self.watching_space).then_some(self.space_wanted)
    }

    /// The carrier's watch now includes write space or not.
    pub(super) fn watched(&mut self, space: bool) {
        self.watching_space = space;
    }

    /// The capacity of each ring.
    pub(super) fn capacity(&self) -> usize {
        lock(&self.to_program).producer.region().capacity()
    }

    /// Bytes written for the program that it has not read.
    fn unread_by_program(&self) -> usize {
        // A corrupt ring is the program's doing: count its bytes as unread (a reset is due).
        lock(&self.to_program).producer.len().unwrap_or(1)
    }

    /// Nothing the program wrote waits to be lent to the engine.
    fn nothing_unsent(&self) -> bool {
        lock(&self.from_program).len().is_ok_and(|new| new == 0)
    }

    /// Sends one doorbell byte counted by the ring; takes the count back if it cannot go.
    fn ring_bell(&self, record: &Record, counters: &mut ServiceCounters) {
        let Some(carrier) = &record.carrier else { return };
        match carrier.write_from(&[0], &[]) {
            Transfer::Moved(_) => counters.ring_bells += 1,
            _ => lock(&self.to_program).producer.bell_not_sent(),
        }
    }
}

/// The data plane for a stream socket with rings (the carrier plane's `pump_stream`).
pub(super) fn pump(
    cx: &mut Context<'_>,
    record: &mut Record,
    scratch: &mut [u8],
    counters: &mut ServiceCounters,
) -> Fate {
    if let Some(fate) = super::finish_connecting(cx.stack, record, scratch) {
        return fate;
    }
    let Some(mut rings) = record.rings.take() else { return Fate::Keep };
    if !rings.attached {
        lock(&rings.from_program).attach();
        rings.attached = true;
    }
    let mut ring_full = false;
    let fate = match to_program(cx, record, &mut rings, counters, &mut ring_full) {
        Fate::Keep if record.failing => super::failure_waits(record, ring_full),
        Fate::Keep => match from_program(cx, record, &mut rings, scratch, counters) {
            Fate::Failed if record.failing => super::failure_waits(record, ring_full),
            fate => fate,
        },
        fate => fate,
    };
    rings.space_wanted = ring_full;
    record.rings = Some(rings);
    fate
}

/// Engine → ring, while the ring takes it: what the engine put there itself (see
/// [`ProgramSink`]) and what its receive buffer holds.
fn to_program(
    cx: &mut Context<'_>,
    record: &mut Record,
    rings: &mut SocketRings,
    counters: &mut ServiceCounters,
    ring_full: &mut bool,
) -> Fate {
    if let (false, Some(handle)) = (rings.sink_lent, record.handle) {
        // Possible once the socket is a connection (from the first pump after a connect or an
        // accept); the ring's direction switched when it was made, so any time after is right.
        let sink = Box::new(ProgramSink(rings.to_program.clone()));
        rings.sink_lent = cx.stack.lend_recv_sink(handle, sink).is_ok();
    }
    let input_drained = record.handovers.would_turn(Flow::ToProgram) && rings.nothing_unsent();
    let mut corrupt = false;
    // Held across `recv_with`, which never calls the sink (only a frame's arrival does).
    let mut ring = lock(&rings.to_program);
    let direct = std::mem::take(&mut ring.delivered);
    corrupt |= ring.broken;
    let delivery = super::deliver_to_program(cx.stack, record, |_, first, second| {
        match ring.producer.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]) {
            Ok(n) => n,
            Err(_) => {
                corrupt = true;
                0
            }
        }
    });
    let moved = direct + delivery.moved;
    counters.ring_out_bytes += moved as u64;
    counters.ring_direct_bytes += direct as u64;
    if corrupt {
        // The program broke the ring's invariants: nothing it reads can be trusted.
        record.error = Some(libc::ECONNRESET);
        return Fate::Abort;
    }
    *ring_full = delivery.sink_full;
    if delivery.failed {
        return Fate::Failed;
    }
    // One look at the bell after the last commit covers every byte written before it. A full
    // ring: the reader drains our doorbell once it has emptied the ring, and that read is the
    // carrier's writable edge which brings the daemon back.
    let bell = (moved > 0 && ring.producer.bell_needed().unwrap_or(true))
        || (*ring_full && ring.producer.bell_for_space());
    drop(ring);
    if moved > 0 && record.handovers.flowed(Flow::ToProgram, || input_drained) {
        counters.ring_turns += 1;
    }
    if bell {
        rings.ring_bell(record, counters);
    }
    Fate::Keep
}

/// Program → engine: first what the program wrote to the carrier before it switched, then the
/// ring; doorbells drained once the ring is empty.
fn from_program(
    cx: &mut Context<'_>,
    record: &mut Record,
    rings: &mut SocketRings,
    scratch: &mut [u8],
    counters: &mut ServiceCounters,
) -> Fate {
    let (Some(handle), Some(carrier)) = (record.handle, &record.carrier) else { return Fate::Keep };
    let stack = &mut *cx.stack;
    for _ in 0..MAX_PASSES {
        if record.program_done_writing {
            break;
        }
        let plain_left =
            lock(&rings.from_program).plain_prefix().map(|p| p.saturating_sub(rings.taken_plain));
        if plain_left != Some(0) {
            // The carrier's bytes are data (up to the switch count, once there is one).
            let mut seen = Transfer::WouldBlock;
            let mut taken_short = false;
            let result = stack.send_with(handle, |first, second| {
                seen = carrier.peek_into(first, second);
                let Transfer::Moved(peeked) = seen else { return 0 };
                // A doorbell follows the count's publication: a peek that returned one sees it.
                let data = match lock(&rings.from_program).plain_prefix() {
                    None => peeked,
                    Some(prefix) => peeked.min(prefix.saturating_sub(rings.taken_plain) as usize),
                };
                match carrier.discard(data, scratch) {
                    Transfer::Moved(n) if n == data => n,
                    _ if data == 0 => 0,
                    _ => {
                        taken_short = true;
                        0
                    }
                }
            });
            if taken_short {
                // The queue shrank under our peek: only another reader of our own end could
                // do that, which never happens; give up on the connection rather than guess.
                record.error = Some(libc::EIO);
                return Fate::Abort;
            }
            match (result, seen) {
                (Ok(n), _) if n > 0 => {
                    rings.taken_plain += n as u64;
                    record.taken_from_program += n as u64;
                    counters.carrier_in_bytes += n as u64;
                    continue;
                }
                (Ok(_), Transfer::EndOfStream) => {
                    record.program_done_writing = true;
                    let _ = stack.shutdown(cx.now, handle, Shutdown::Write);
                    break;
                }
                (Ok(_), Transfer::Failed(_)) => return closed_with_unread(rings),
                (Ok(_), Transfer::Moved(_)) => continue, // bytes at the switch: ring next
                (Ok(_), Transfer::WouldBlock) | (Err(Errno::WouldBlock), _) => break,
                (Err(Errno::BrokenPipe), _) => {
                    // Written after a shutdown: dropped, as the kernel's EPIPE drops them.
                    match carrier.discard(usize::MAX, scratch) {
                        Transfer::Moved(n) => rings.taken_plain += n as u64,
                        Transfer::EndOfStream => record.program_done_writing = true,
                        Transfer::Failed(_) => return Fate::Abort,
                        Transfer::WouldBlock => break,
                    }
                    continue;
                }
                (Err(error), _) => {
                    record.error = Some(error.raw());
                    record.failing = true;
                    return Fate::Failed;
                }
            }
        }

        // The ring: its new bytes join the engine's send queue where they are, lent until
        // acknowledged (the ring is the connection's send buffer; no copy into the engine's).
        let new = match lock(&rings.from_program).len() {
            Ok(new) => new,
            Err(_) => {
                record.error = Some(libc::ECONNRESET);
                return Fate::Abort;
            }
        };
        if new > 0 {
            if !rings.lent_to_engine {
                let source = Box::new(ProgramRing(rings.from_program.clone()));
                if let Err(error) = stack.lend_send_source(handle, source) {
                    record.error = Some(error.raw());
                    record.failing = true;
                    return Fate::Failed;
                }
                rings.lent_to_engine = true;
            }
            match stack.send_lent(handle, new) {
                Ok(n) => {
                    if lock(&rings.from_program).lend(n).is_err() {
                        record.error = Some(libc::ECONNRESET);
                        return Fate::Abort;
                    }
                    counters.ring_in_bytes += n as u64;
                    let drained = || rings.unread_by_program() == 0;
                    if n > 0 && record.handovers.flowed(Flow::FromProgram, drained) {
                        counters.ring_turns += 1;
                    }
                    continue;
                }
                Err(Errno::BrokenPipe) => {
                    // Written after a shutdown: dropped, as the kernel's EPIPE drops them,
                    // once the bytes before them are acknowledged (until then they wait).
                    let mut from = lock(&rings.from_program);
                    if from.lent() > 0 {
                        break;
                    }
                    if from.consume(new).is_err() {
                        return Fate::Abort;
                    }
                    continue;
                }
                Err(error) => {
                    record.error = Some(error.raw());
                    record.failing = true;
                    return Fate::Failed;
                }
            }
        }

        // The ring is empty: take the doorbells, and see whether the program is done.
        let mut end = None;
        let drained = lock(&rings.from_program).drain_bells(|pending| {
            let mut taken = 0;
            while taken < pending {
                let want = (pending - taken).min(scratch.len() as u64) as usize;
                match carrier.read_into(&mut scratch[..want], &mut []) {
                    Transfer::Moved(n) => taken += n as u64,
                    Transfer::WouldBlock => break,
                    other => {
                        end = Some(other);
                        break;
                    }
                }
            }
            Ok(taken)
        });
        match drained {
            Ok(Drained::Readable) if lock(&rings.from_program).len().unwrap_or(0) > 0 => continue,
            Ok(_) => {}
            Err(_) => {
                record.error = Some(libc::ECONNRESET);
                return Fate::Abort;
            }
        }
        if end.is_none() && record.carrier_news {
            // A close or shutdown with no doorbell pending signals only on the carrier.
            end = match carrier.peek_into(&mut scratch[..1], &mut []) {
                // A doorbell rang after the drain: the ring has bytes.
                Transfer::Moved(_) if lock(&rings.from_program).pending_bells() > 0 => continue,
                Transfer::Moved(_) => {
                    // A byte no writer counted (a program that writes the socket directly
                    // after its switch): not data, and it must not stay in the way.
                    let _ = carrier.read_into(&mut scratch[..1], &mut []);
                    counters.ring_stray_bytes += 1;
                    continue;
                }
                Transfer::WouldBlock => None,
                other => Some(other),
            };
        }
        record.carrier_news = false;
        match end {
            Some(Transfer::EndOfStream) => {
                record.program_done_writing = true;
                let _ = stack.shutdown(cx.now, handle, Shutdown::Write);
            }
            Some(Transfer::Failed(_)) => return closed_with_unread(rings),
            _ => {}
        }
        break;
    }

    if record.program_done_writing && (record.program_told_eof || carrier.hung_up()) {
        // As the kernel does, a program that closes with received data unread resets.
        return if rings.unread_by_program() > 0 && carrier.hung_up() {
            Fate::Abort
        } else {
            Fate::Close
        };
    }
    Fate::Keep
}

/// The carrier failed with ECONNRESET: the program closed its end with carrier bytes unread,
/// which here may be only doorbells. A reset is due only if the program left data unread.
fn closed_with_unread(rings: &SocketRings) -> Fate {
    if rings.unread_by_program() > 0 {
        Fate::Abort
    } else {
        Fate::Close
    }
}

/// The program → engine ring, shared by the daemon (which reads new bytes and doorbells) and the
/// engine (which copies lent bytes into segments and releases them once acknowledged). One
/// thread uses both; the lock only makes the sharing safe to express.
type SharedConsumer = Arc<Mutex<Consumer<Box<RingRegion>>>>;

fn lock<T>(ring: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding it; if something did, the ring's state is still sound
    // (every update is a single store), so carry on rather than poison the connection.
    ring.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The engine → program ring, shared by the daemon (which copies the engine's receive buffer
/// into it and rings the program's doorbell) and the engine (which puts in-order payload
/// straight into it, [`ProgramSink`]).
type SharedProducer = Arc<Mutex<ToProgram>>;

#[derive(Debug)]
struct ToProgram {
    producer: Producer<Box<RingRegion>>,
    /// Bytes the engine put into the ring since the daemon last looked: they need the doorbell
    /// (and the counters) as much as the daemon's own.
    delivered: usize,
    /// A write the engine made failed (the program corrupted the ring): the daemon resets.
    broken: bool,
}

/// A program's ring as its connection's receive sink (fbsd-tcp's [`RecvSink`]): while the
/// engine's receive buffer is empty, a segment's payload goes from the frame straight into
/// the ring, one copy instead of two. The daemon rings the doorbell for it on its next pump,
/// which the engine's readable edge brings.
#[derive(Debug)]
struct ProgramSink(SharedProducer);

impl RecvSink for ProgramSink {
    fn room(&self) -> usize {
        let ring = lock(&self.0);
        if ring.broken {
            return 0;
        }
        ring.producer.free().unwrap_or(0)
    }

    fn deliver(&mut self, data: &[u8]) {
        let mut ring = lock(&self.0);
        match ring.producer.write_vectored(&[IoSlice::new(data)]) {
            Ok(n) if n == data.len() => ring.delivered += n,
            // Room was asked just before: only a program that broke the ring gets here.
            _ => ring.broken = true,
        }
    }
}

/// A program's ring as its connection's send buffer (fbsd-tcp's [`SendSource`]): the engine
/// copies the program's bytes from the ring straight into segments, as often as it sends them,
/// and releases them when acknowledged, which frees the program's space (and wakes a writer
/// waiting for it). The program cannot rewrite them meanwhile: the ring's protocol keeps a
/// writer off space the reader has not handed back.
#[derive(Debug)]
struct ProgramRing(SharedConsumer);

impl SendSource for ProgramRing {
    fn copy_out(&mut self, offset: usize, into: &mut [u8]) {
        if let Err(error) = lock(&self.0).copy_lent(offset, into) {
            // The engine asks only for bytes it was lent; this is a bug, not the program's.
            tracing::error!(%error, offset, len = into.len(), "engine read beyond a lent ring");
            into.fill(0);
        }
    }

    fn release(&mut self, n: usize) {
        if let Err(error) = lock(&self.0).release(n) {
            tracing::error!(%error, n, "engine released more of a ring than was lent");
        }
    }
}
