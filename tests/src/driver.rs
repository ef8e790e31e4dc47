//! The engine driver: the loop that joyride-stackd will run, reduced to one TAP device and driven
//! from the test's own thread.
//!
//! A test never blocks outside the driver: whatever it waits for (a connection, data, a line
//! from a kernel-side program, a program's exit) it waits for inside [`Driver::run_until`], whose
//! step closure is called once per loop iteration with the stack, so the engine keeps answering
//! the kernel meanwhile. Every wait has a deadline; a missed one panics with the stack's counters.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use fbsd_tcp::time::Instant;
use fbsd_tcp::{AddressFamily, Errno, Readiness, SocketHandle, SocketType, Stack, StackConfig};

use crate::tap::Tap;

/// Most frames read from the TAP in one iteration before the stack's frames are sent. The
/// engine answers everything received between two `poll_transmit` rounds with one ACK (whose
/// SACK option holds at most 3–4 blocks), so large batches starve a lossy sender of ACKs and
/// SACK information (measured: 256 here made Linux retransmit 2–5 times what was lost; 16–32
/// brings it down to the loss itself). 32 is a typical NIC burst.
const RX_BATCH: usize = 32;
/// Most frames written in one iteration; more wait for the next (the loop does not sleep while
/// the stack still has something due).
const TX_BATCH: usize = 4096;
/// Most socket events drained in one iteration.
const EVENT_BATCH: usize = 65536;
/// The longest sleep: step closures watch things the stack does not know about (a child's line
/// or exit), so they must run now and then even when the engine is idle.
const MAX_IDLE: Duration = Duration::from_millis(5);
/// Frame buffer: larger than any frame a TAP without offloads delivers or the stack emits.
const FRAME_BUFFER: usize = 65536;

/// What the loop did, for diagnostics and the throughput lines the tests print.
#[derive(Debug, Clone, Default)]
pub struct DriverStats {
    /// Loop iterations.
    pub iterations: u64,
    /// Frames read from the TAP and handed to the stack.
    pub frames_in: u64,
    /// Frames the stack emitted and the TAP took.
    pub frames_out: u64,
    /// TAP writes that failed (the frame is lost, as on a lossy link).
    pub tap_write_errors: u64,
    /// The last TAP write error.
    pub last_tap_write_error: Option<String>,
    /// Frames from the TAP dropped on purpose (see [`Driver::set_loss`]).
    pub dropped_in: u64,
    /// Frames of the stack dropped on purpose.
    pub dropped_out: u64,
    /// `handle_timeout` calls.
    pub timer_runs: u64,
    /// Iterations after which `poll_timeout` was already due although the stack had just run its
    /// timers and emitted everything: a stack that keeps asking for work it then does not do
    /// makes this grow fast (a busy loop).
    pub already_due: u64,
}

/// Runs a [`Stack`] on a [`Tap`] with the real clock.
pub struct Driver {
    stack: Stack,
    tap: Tap,
    epoch: std::time::Instant,
    frame: Vec<u8>,
    stats: DriverStats,
    loss: Loss,
}

/// Deterministic loss: every `n`th frame of a direction is dropped. The kernel has no netem
/// here, so recovery against Linux is tested by losing frames in the driver.
#[derive(Debug, Clone, Copy, Default)]
struct Loss {
    inbound_every: Option<u64>,
    outbound_every: Option<u64>,
    inbound_seen: u64,
    outbound_seen: u64,
}

impl Loss {
    fn drop_next(every: Option<u64>, seen: &mut u64) -> bool {
        let Some(every) = every else { return false };
        *seen += 1;
        seen.is_multiple_of(every)
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver").field("tap", &self.tap.name()).field("stats", &self.stats).finish()
    }
}

impl Driver {
    /// A driver whose clock starts now (the engine's `Instant::ZERO`).
    pub fn new(tap: Tap, config: StackConfig) -> Driver {
        let epoch = std::time::Instant::now();
        let stack = Stack::new(config, Instant::ZERO);
        Driver {
            stack,
            tap,
            epoch,
            frame: vec![0; FRAME_BUFFER],
            stats: DriverStats::default(),
            loss: Loss::default(),
        }
    }

    /// The engine's time: microseconds since the driver started.
    pub fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The stack, for reading (counters, readiness, `tcp_info`, socket listing).
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Loop statistics so far.
    pub fn stats(&self) -> &DriverStats {
        &self.stats
    }

    /// From now on, drops every `inbound_every`th frame from the kernel and every
    /// `outbound_every`th frame to it (`None`: no loss in that direction).
    pub fn set_loss(&mut self, inbound_every: Option<u64>, outbound_every: Option<u64>) {
        assert!(inbound_every.is_none_or(|n| n > 1) && outbound_every.is_none_or(|n| n > 1));
        self.loss = Loss { inbound_every, outbound_every, inbound_seen: 0, outbound_seen: 0 };
    }

    /// Runs `f` on the stack now, then sends whatever it queued.
    pub fn with_stack<R>(&mut self, f: impl FnOnce(&mut Stack, Instant) -> R) -> R {
        let now = self.now();
        let result = f(&mut self.stack, now);
        self.flush(now);
        result
    }

    /// Drives the stack until `step` returns `Some`, for at most `timeout`; `None` on timeout.
    /// `step` runs once per iteration, after received frames and due timers were processed and
    /// before the stack's frames are sent (the order `Stack` documents).
    pub fn try_run_until<T>(
        &mut self,
        timeout: Duration,
        mut step: impl FnMut(&mut Stack, Instant) -> Option<T>,
    ) -> Option<T> {
        let start = std::time::Instant::now();
        loop {
            self.stats.iterations += 1;
            let now = self.input();
            let done = step(&mut self.stack, now);
            self.flush(now);
            if done.is_some() {
                return done;
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return None;
            }
            self.sleep(timeout - elapsed);
        }
    }

    /// [`try_run_until`](Self::try_run_until) that panics on timeout, naming `what` it waited
    /// for and showing the stack's counters.
    #[track_caller]
    pub fn run_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        step: impl FnMut(&mut Stack, Instant) -> Option<T>,
    ) -> T {
        match self.try_run_until(timeout, step) {
            Some(v) => v,
            None => {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.diagnostics())
            }
        }
    }

    /// Keeps the engine running for `duration`.
    pub fn run_for(&mut self, duration: Duration) {
        let _: Option<()> = self.try_run_until(duration, |_, _| None);
    }

    /// Counters, loop statistics and the socket listing, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut s =
            format!("driver: {:?}\ncounters: {:?}\nsockets:\n", self.stats, self.stack.counters());
        for sock in self.stack.sockets() {
            s.push_str(&format!(
                "  {:?} {} {} -> {} rq={} sq={}\n",
                sock.kind, sock.state, sock.local, sock.peer, sock.recv_queue, sock.send_queue
            ));
        }
        s
    }

    /// Loop steps 1–3: received frames, due timers, socket events.
    fn input(&mut self) -> Instant {
        let now = self.now();
        for _ in 0..RX_BATCH {
            match self.tap.recv(&mut self.frame) {
                Ok(Some(len)) => {
                    if Loss::drop_next(self.loss.inbound_every, &mut self.loss.inbound_seen) {
                        self.stats.dropped_in += 1;
                        continue;
                    }
                    self.stats.frames_in += 1;
                    self.stack.receive_frame(now, &self.frame[..len]);
                }
                Ok(None) => break,
                Err(e) => panic!("reading TAP {}: {e}", self.tap.name()),
            }
        }
        if self.stack.poll_timeout().is_some_and(|due| due <= now) {
            self.stats.timer_runs += 1;
            self.stack.handle_timeout(now);
        }
        // Readiness is read directly by the step closures; events only need draining.
        for _ in 0..EVENT_BATCH {
            if self.stack.poll_event().is_none() {
                break;
            }
        }
        now
    }

    /// Loop step 4: everything the stack wants to send goes to the TAP.
    fn flush(&mut self, now: Instant) {
        for _ in 0..TX_BATCH {
            let Some(len) = self.stack.poll_transmit(now, &mut self.frame) else { break };
            if Loss::drop_next(self.loss.outbound_every, &mut self.loss.outbound_seen) {
                self.stats.dropped_out += 1;
                continue;
            }
            match self.tap.send(&self.frame[..len]) {
                Ok(()) => self.stats.frames_out += 1,
                Err(e) => {
                    self.stats.tap_write_errors += 1;
                    self.stats.last_tap_write_error = Some(e.to_string());
                }
            }
        }
    }

    /// Loop step 5: sleep until a frame arrives, the stack's deadline, `MAX_IDLE` or `limit`.
    fn sleep(&mut self, limit: Duration) {
        let now = self.now();
        let wait = match self.stack.poll_timeout() {
            Some(due) if due <= now => {
                self.stats.already_due += 1;
                return;
            }
            Some(due) => due.saturating_duration_since(now),
            None => MAX_IDLE,
        };
        let wait = wait.min(MAX_IDLE).min(limit);
        if let Err(e) = self.tap.wait_readable(wait) {
            panic!("poll on TAP {}: {e}", self.tap.name());
        }
    }
}

/// Socket operations with waits, for tests: each drives the engine while it waits and panics
/// with diagnostics when its deadline passes.
impl Driver {
    /// Opens a TCP socket and starts a non-blocking connect to `remote`.
    #[track_caller]
    pub fn tcp_connect_start(&mut self, remote: SocketAddr) -> SocketHandle {
        self.with_stack(|stack, now| {
            let handle = stack
                .socket(AddressFamily::Inet, SocketType::Stream)
                .expect("opening a TCP socket");
            match stack.connect(now, handle, remote) {
                Err(Errno::InProgress) => {}
                other => panic!("connect to {remote}: expected EINPROGRESS, got {other:?}"),
            }
            handle
        })
    }

    /// Waits for a connect to finish: `Ok` once established, or the error SO_ERROR reports.
    #[track_caller]
    pub fn tcp_connect_finish(
        &mut self,
        handle: SocketHandle,
        timeout: Duration,
    ) -> Result<(), Errno> {
        self.wait_readiness(handle, timeout, "connect to complete", |r| {
            r.writable || r.error || r.hangup
        });
        match self.with_stack(|stack, _| stack.take_error(handle)) {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(e) => panic!("SO_ERROR on {handle:?}: {e}"),
        }
    }

    /// Connects to `remote` and waits until established; panics on failure.
    #[track_caller]
    pub fn tcp_connect(&mut self, remote: SocketAddr, timeout: Duration) -> SocketHandle {
        let handle = self.tcp_connect_start(remote);
        if let Err(e) = self.tcp_connect_finish(handle, timeout) {
            panic!("connect to {remote} failed: {e}\n{}", self.diagnostics());
        }
        handle
    }

    /// A TCP socket bound to `local` and listening.
    #[track_caller]
    pub fn tcp_listen(&mut self, local: SocketAddr, backlog: usize) -> SocketHandle {
        self.with_stack(|stack, _| {
            let handle = stack
                .socket(AddressFamily::Inet, SocketType::Stream)
                .expect("opening a TCP socket");
            stack.bind(handle, local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
            stack.listen(handle, backlog).unwrap_or_else(|e| panic!("listen on {local}: {e}"));
            handle
        })
    }

    /// Waits for a connection on `listener` and accepts it.
    #[track_caller]
    pub fn tcp_accept(
        &mut self,
        listener: SocketHandle,
        timeout: Duration,
    ) -> (SocketHandle, SocketAddr) {
        self.run_until(timeout, "a connection to accept", |stack, _| match stack.accept(listener) {
            Ok(accepted) => Some(accepted),
            Err(Errno::WouldBlock) => None,
            Err(e) => panic!("accept: {e}"),
        })
    }

    /// Waits until `handle`'s readiness satisfies `ready`, and returns it.
    #[track_caller]
    pub fn wait_readiness(
        &mut self,
        handle: SocketHandle,
        timeout: Duration,
        what: &str,
        ready: impl Fn(Readiness) -> bool,
    ) -> Readiness {
        self.run_until(timeout, what, |stack, _| {
            let readiness =
                stack.readiness(handle).unwrap_or_else(|e| panic!("readiness of {handle:?}: {e}"));
            ready(readiness).then_some(readiness)
        })
    }

    /// Sends all of `data` on a connected TCP socket.
    #[track_caller]
    pub fn tcp_send_all(&mut self, handle: SocketHandle, data: &[u8], timeout: Duration) {
        let mut sent = 0;
        self.run_until(timeout, "room in the send buffer", |stack, _| {
            while sent < data.len() {
                match stack.send(handle, &data[sent..]) {
                    Ok(n) => sent += n,
                    Err(Errno::WouldBlock) => return None,
                    Err(e) => panic!("send after {sent} of {} bytes: {e}", data.len()),
                }
            }
            Some(())
        });
    }

    /// Reads from a TCP socket until end of stream; panics on an error.
    #[track_caller]
    pub fn tcp_recv_to_end(&mut self, handle: SocketHandle, timeout: Duration) -> Vec<u8> {
        let mut data = Vec::new();
        let mut buf = vec![0; 65536];
        self.run_until(timeout, "end of stream", |stack, _| loop {
            match stack.recv(handle, &mut buf) {
                Ok(0) => return Some(()),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(Errno::WouldBlock) => return None,
                Err(e) => panic!("recv after {} bytes: {e}", data.len()),
            }
        });
        data
    }

    /// Reads from a TCP socket until `len` bytes arrived (or end of stream came first).
    #[track_caller]
    pub fn tcp_recv_exact(
        &mut self,
        handle: SocketHandle,
        len: usize,
        timeout: Duration,
    ) -> Vec<u8> {
        let mut data = Vec::new();
        let mut buf = vec![0; 65536];
        self.run_until(timeout, "data", |stack, _| loop {
            if data.len() >= len {
                return Some(());
            }
            let want = (len - data.len()).min(buf.len());
            match stack.recv(handle, &mut buf[..want]) {
                Ok(0) => panic!("end of stream after {} of {len} bytes", data.len()),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(Errno::WouldBlock) => return None,
                Err(e) => panic!("recv after {} of {len} bytes: {e}", data.len()),
            }
        });
        data
    }
}
