//! The event loop: one thread drives the NIC, the engine, its timers and the control socket.
//!
//! Each turn receives a burst of frames, runs the engine's due timers, serves control requests,
//! and transmits until the engine has nothing left; then it sleeps in epoll until a frame, a
//! request, a signal or the engine's next deadline. A machine with two cores shares them between
//! the daemon and its applications, so an idle daemon sleeps instead of spinning; under load the
//! turns run back to back without sleeping. The one exception is a request/response under way
//! on a connection to a remote peer: after each hand-over the loop polls for up to `--busy-poll`
//! (yielding the CPU at every pass) rather than pay a sleeping wake-up for an answer that comes
//! within a round trip ([`crate::busy_poll`]). A backend with nothing to wait on (DPDK) is
//! polled with a short sleep when idle.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime};

use fbsd_tcp::time::Instant;
use fbsd_tcp::wire::ChecksumPolicy;
use fbsd_tcp::{Shutdown, Stack, StackConfig};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::backend::{self, Backend, BackendConfig, BackendError, OpenError};
use crate::busy_poll::{BusyPoll, BusyPollCounters};
use crate::config::Config;
use crate::control::{ControlError, ControlServer, Handled, Served};
use crate::pcap::PcapWriter;
use crate::proto::{
    Operation, ProtocolError, Reply, SocketLine, MAX_MESSAGE, PROTOCOL_VERSION, SOCKETS_PER_PAGE,
};
use crate::sockets::{Context, SocketService, CARRIER_TOKENS};

const BACKEND: Token = Token(0);
const LISTENER: Token = Token(1);
const SIGNALS: Token = Token(2);
/// Control connections use tokens from here on (token = FIRST_CLIENT + key).
const FIRST_CLIENT: usize = 16;
/// Frames received per turn before the loop transmits and serves the control socket.
const RECEIVE_BURST: usize = 256;
/// How long a polled backend (no descriptor) sleeps when idle.
const POLLED_IDLE_SLEEP: Duration = Duration::from_micros(100);
/// Frames the engine may still emit at shutdown (RSTs for every connection, then nothing).
const SHUTDOWN_FRAMES: usize = 65536;
/// How long shutdown waits for a full device to take the last frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The NIC backend could not be opened.
    #[error(transparent)]
    Backend(#[from] OpenError),
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The pcap file could not be created.
    #[error("cannot capture to {path}: {source}")]
    Pcap {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: crate::pcap::PcapError,
    },
    /// The engine refused the configuration (the backend's MTU or MAC).
    #[error("the stack cannot run with this configuration: {reason}")]
    Engine {
        /// What is wrong.
        reason: String,
    },
    /// The device failed while running.
    #[error("the {iface} backend failed: {source}")]
    Device {
        /// The interface.
        iface: String,
        /// Why.
        source: BackendError,
    },
    /// epoll or the signal pipe failed.
    #[error("event loop: {step}: {source}")]
    EventLoop {
        /// Which step.
        step: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// Microseconds since the daemon started, as the engine's clock.
#[derive(Debug)]
struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// How long from now until `deadline`.
    fn until(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(self.now())
    }
}

/// The running daemon.
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    stack: Stack,
    backend: Box<dyn Backend>,
    pcap: Option<PcapWriter>,
    control: ControlServer,
    sockets: SocketService,
    poll: Poll,
    /// Receives a byte per SIGINT/SIGTERM (written by signal-hook's handler).
    signals: UnixStream,
    clock: Clock,
    stopping: bool,
    /// When to poll instead of sleeping (see [`Daemon::poll_for_answer`]).
    busy_poll: BusyPoll,
}

impl Daemon {
    /// Opens the NIC, the control socket and the capture file, and builds the engine.
    pub fn start(config: Config) -> Result<Daemon, DaemonError> {
        let event_loop = |step| move |source| DaemonError::EventLoop { step, source };
        // Signals first: a SIGTERM during start-up must still end in a clean stop.
        let (signals, signal_writer) = UnixStream::pair().map_err(event_loop("signal pipe"))?;
        signals.set_nonblocking(true).map_err(event_loop("signal pipe"))?;
        // The first SIGINT/SIGTERM asks for a clean stop; a second one, while that stop (or a
        // start-up step) hangs, ends the process at once, as users expect of a second Ctrl-C.
        let stop_requested = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(signal, 130, stop_requested.clone())
                .map_err(event_loop("install signal handler"))?;
            signal_hook::flag::register(signal, stop_requested.clone())
                .map_err(event_loop("install signal handler"))?;
            let writer = signal_writer.try_clone().map_err(event_loop("signal pipe"))?;
            signal_hook::low_level::pipe::register(signal, writer)
                .map_err(event_loop("install signal handler"))?;
        }

        let mut backend_config = BackendConfig::new(config.backend, config.iface.clone());
        backend_config.mtu = config.mtu;
        backend_config.host_addr = config.host_addr;
        backend_config.dpdk_args = config.dpdk_args.clone();
        backend_config.segmentation_offload = config.segmentation_offload;
        let backend = backend::open(&backend_config)?;
        let control = ControlServer::bind(&config.control)?;
        let pcap = match &config.pcap {
            Some(path) => Some(
                PcapWriter::create(path)
                    .map_err(|source| DaemonError::Pcap { path: path.clone(), source })?,
            ),
            None => None,
        };

        let clock = Clock { origin: std::time::Instant::now() };
        let mut stack_config = StackConfig::new(backend.mac(), config.addr, random_secret());
        stack_config.gateway = config.gateway;
        stack_config.mtu = backend.mtu();
        stack_config.segmentation_offload = backend.segmentation_offload();
        if backend.checksums_unneeded() {
            stack_config.checksum = ChecksumPolicy { fill_tx: false, verify_rx: false };
        }
        stack_config.validate().map_err(|reason| DaemonError::Engine { reason })?;
        let stack = Stack::new(stack_config, clock.now());

        let poll = Poll::new().map_err(event_loop("epoll"))?;
        let registry = poll.registry();
        if let Some(fd) = backend.poll_fd() {
            registry
                .register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    BACKEND,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(event_loop("watch the NIC"))?;
        }
        registry
            .register(&mut SourceFd(&control.listener_fd()), LISTENER, Interest::READABLE)
            .map_err(event_loop("watch the control socket"))?;
        registry
            .register(&mut SourceFd(&signals.as_raw_fd()), SIGNALS, Interest::READABLE)
            .map_err(event_loop("watch signals"))?;

        tracing::info!(
            backend = %config.backend,
            iface = backend.name(),
            mac = %backend.mac(),
            addr = %format_args!("{}/{}", config.addr.addr, config.addr.prefix_len),
            mtu = backend.mtu(),
            control = %config.control.display(),
            "joyride-stackd serving"
        );
        let mut sockets =
            SocketService::new().map_err(event_loop("open /dev/urandom for tokens"))?;
        sockets.set_ring_capacity(config.ring_size);
        sockets.set_answer_spin(config.busy_poll);
        Ok(Daemon {
            stack,
            backend,
            pcap,
            control,
            sockets,
            poll,
            signals,
            clock,
            stopping: false,
            busy_poll: BusyPoll::new(config.busy_poll),
            config,
        })
    }

    /// Runs until SIGINT or SIGTERM, then stops cleanly: every connection is reset, the last
    /// frames go out, the control socket is unlinked, and the TAP disappears with the backend.
    pub fn run(mut self) -> Result<(), DaemonError> {
        let mut events = Events::with_capacity(256);
        let result = self.serve(&mut events);
        self.stop();
        result
    }

    fn serve(&mut self, events: &mut Events) -> Result<(), DaemonError> {
        while !self.stopping {
            let busy = self.turn()?;
            if busy || !self.poll_for_answer(events)? {
                let timeout = if busy { Some(Duration::ZERO) } else { self.idle_timeout() };
                self.wait(events, timeout)?;
            }
            for event in events.iter() {
                match event.token() {
                    BACKEND if event.is_error() => self
                        .backend
                        .handle_poll_error()
                        .map_err(|source| self.device_error(source))?,
                    BACKEND => {}
                    LISTENER => self.accept_clients(),
                    SIGNALS => self.take_signals(),
                    Token(token) if token >= CARRIER_TOKENS => {
                        let now = self.clock.now();
                        let mut cx = cx_of(&mut self.stack, &self.poll, now);
                        let closed = event.is_read_closed() || event.is_error();
                        self.sockets.carrier_event(&mut cx, token - CARRIER_TOKENS, closed);
                    }
                    Token(token) => self.serve_client(token - FIRST_CLIENT),
                }
            }
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<(), DaemonError> {
        match self.poll.poll(events, timeout) {
            Err(error) if error.kind() != std::io::ErrorKind::Interrupted => {
                Err(DaemonError::EventLoop { step: "epoll_wait", source: error })
            }
            _ => Ok(()),
        }
    }

    /// Polls instead of sleeping while [`BusyPoll`] says so (after a turn of a request/response,
    /// for up to `--busy-poll`): the wire without a system call, the descriptors
    /// with a zero-timeout epoll, yielding the CPU at each pass so that a program with work on
    /// this CPU runs at once.
    ///
    /// Returns true if it polled: `events` holds what came, or frames wait, or the time ran
    /// out; the caller must run a turn before it sleeps (the turn's `receive` asks the device
    /// for a wake-up again).
    fn poll_for_answer(&mut self, events: &mut Events) -> Result<bool, DaemonError> {
        let turns = self.sockets.turns();
        let Some(until) = self.busy_poll.deadline(turns, std::time::Instant::now()) else {
            return Ok(false);
        };
        self.backend.busy_poll_begin();
        loop {
            // Descriptors first, so that a device that always says frames wait (a polled one)
            // does not keep the loop from the carriers and the control socket.
            self.wait(events, Some(Duration::ZERO))?;
            if !events.is_empty()
                || self.backend.frames_waiting()
                || std::time::Instant::now() >= until
            {
                return Ok(true);
            }
            std::thread::yield_now();
        }
    }

    /// One turn of receive, timers, transmit. Returns true if there may be more work at once
    /// (a full receive burst, or a device that refused frames).
    fn turn(&mut self) -> Result<bool, DaemonError> {
        let now = self.clock.now();
        let stack = &mut self.stack;
        let pcap = &mut self.pcap;
        let received = self
            .backend
            .receive(RECEIVE_BURST, &mut |frame| {
                capture(pcap, frame);
                stack.receive_frame(now, frame);
            })
            .map_err(|source| DaemonError::Device { iface: self.config.iface.clone(), source })?;

        let now = self.clock.now();
        if self.stack.poll_timeout().is_some_and(|deadline| deadline <= now) {
            self.stack.handle_timeout(now);
        }
        self.sockets.engine_events(&mut cx_of(&mut self.stack, &self.poll, now));
        self.sockets.housekeeping(&mut cx_of(&mut self.stack, &self.poll, now));

        self.transmit(now)?;
        // A full device is not a reason to spin: the NIC's descriptor turns writable (epoll
        // tells us) when it has room again, and the engine keeps its frames meanwhile.
        let polled = self.backend.poll_fd().is_none();
        Ok(received == RECEIVE_BURST || (polled && received > 0))
    }

    fn transmit(&mut self, now: Instant) -> Result<(), DaemonError> {
        let stack = &mut self.stack;
        let pcap = &mut self.pcap;
        let result = self.backend.transmit(&mut |buf| {
            let len = stack.poll_transmit(now, buf)?;
            capture(pcap, &buf[..len]);
            Some(len)
        });
        result.and_then(|_| self.backend.flush()).map_err(|source| self.device_error(source))
    }

    fn device_error(&self, source: BackendError) -> DaemonError {
        DaemonError::Device { iface: self.config.iface.clone(), source }
    }

    /// How long to sleep: until the engine's next deadline, or briefly for a polled backend.
    fn idle_timeout(&mut self) -> Option<Duration> {
        let until_deadline = self.stack.poll_timeout().map(|deadline| self.clock.until(deadline));
        let until_housekeeping = self
            .sockets
            .housekeeping_deadline()
            .map(|at| at.saturating_duration_since(std::time::Instant::now()));
        let until_deadline = match (until_deadline, until_housekeeping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.backend.poll_fd().is_none() {
            return Some(until_deadline.map_or(POLLED_IDLE_SLEEP, |d| d.min(POLLED_IDLE_SLEEP)));
        }
        until_deadline
    }

    fn accept_clients(&mut self) {
        for (key, fd) in self.control.accept_pending() {
            let registered = self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(FIRST_CLIENT + key),
                Interest::READABLE,
            );
            if let Err(error) = registered {
                tracing::warn!(%error, "cannot watch a control connection; dropping it");
                self.forget_client(key, fd);
            }
        }
    }

    fn serve_client(&mut self, key: usize) {
        let now = self.clock.now();
        let Daemon { stack, config, backend, sockets, control, poll, busy_poll, .. } = self;
        let mut cx = cx_of(stack, poll, now);
        let served = control.serve(key, |peer, op, descriptors| match op {
            Operation::Hello { .. } | Operation::Counters | Operation::Sockets { .. } => {
                // A report shows local connections as they are now, not as of the last sweep.
                if !matches!(op, Operation::Hello { .. }) {
                    sockets.sweep_local(&mut cx);
                }
                (
                    report(cx.stack, sockets, config, &**backend, busy_poll.counters(), op),
                    Vec::new(),
                )
            }
            op => {
                let answer = sockets.handle(&mut cx, key, peer, op, descriptors);
                (answer.result, answer.descriptors) as Handled
            }
        });
        if served == Served::Closed {
            // The descriptor is closed with the connection; epoll forgets it then.
            tracing::trace!(key, "control connection closed");
            sockets.connection_closed(&mut cx, key);
        }
    }

    fn forget_client(&mut self, key: usize, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.control.drop_connection(key);
        let now = self.clock.now();
        self.sockets.connection_closed(&mut cx_of(&mut self.stack, &self.poll, now), key);
    }

    fn take_signals(&mut self) {
        let mut bytes = [0u8; 16];
        while matches!((&self.signals).read(&mut bytes), Ok(n) if n > 0) {
            self.stopping = true;
        }
        if self.stopping {
            tracing::info!("signal received: stopping");
        }
    }

    /// Resets every connection, sends what the engine still has, and flushes the capture.
    fn stop(&mut self) {
        let now = self.clock.now();
        for socket in self.stack.sockets() {
            let Some(handle) = socket.handle else { continue };
            if let Ok(options) = self.stack.options(handle) {
                let options =
                    fbsd_tcp::SocketOptions { linger: Some(Duration::ZERO), ..options.clone() };
                let _ = self.stack.set_options(now, handle, options);
            }
            let _ = self.stack.shutdown(now, handle, Shutdown::Both);
            let _ = self.stack.close(now, handle);
        }
        // Every reset must leave, though a ring may fill on the way: keep handing frames over,
        // giving the device a moment whenever it is full, within a frame budget and a deadline.
        let mut budget = SHUTDOWN_FRAMES;
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        loop {
            let stack = &mut self.stack;
            let pcap = &mut self.pcap;
            let mut drained = true;
            let sent = self.backend.transmit(&mut |buf| {
                budget = budget.checked_sub(1)?;
                let len = stack.poll_transmit(now, buf)?;
                drained = false;
                capture(pcap, &buf[..len]);
                Some(len)
            });
            let flushed = self.backend.flush();
            let blocked = self.backend.tx_blocked();
            if sent.is_err()
                || flushed.is_err()
                || budget == 0
                || std::time::Instant::now() > deadline
            {
                break;
            }
            if !blocked && drained {
                break;
            }
            if blocked {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some(pcap) = &mut self.pcap {
            if let Err(error) = pcap.flush() {
                tracing::warn!(%error, "capture file incomplete");
            }
        }
        let counters = self.stack.counters();
        let polls = self.busy_poll.counters();
        tracing::info!(
            rx_frames = counters.rx_frames,
            tx_frames = counters.tx_frames,
            tcp_retransmits = counters.tcp_retransmits,
            turns = self.sockets.turns(),
            busy_polls = polls.polls,
            busy_polls_expired = polls.expired,
            busy_polls_paused = polls.paused,
            "joyride-stackd stopped"
        );
    }
}

/// Writes a frame to the capture file, if capturing. A failed write disables capture (the
/// writer logs it once); the daemon keeps serving.
fn capture(pcap: &mut Option<PcapWriter>, frame: &[u8]) {
    if let Some(writer) = pcap {
        if writer.write(SystemTime::now(), frame).is_err() && writer.is_disabled() {
            *pcap = None;
        }
    }
}

fn cx_of<'a>(stack: &'a mut Stack, poll: &'a Poll, now: Instant) -> Context<'a> {
    Context { stack, registry: poll.registry(), now }
}

/// Answers the requests that report on the daemon (hello, counters, the socket list).
fn report(
    stack: &Stack,
    sockets: &SocketService,
    config: &Config,
    backend: &dyn Backend,
    polls: BusyPollCounters,
    op: Operation,
) -> Result<Reply, ProtocolError> {
    Ok(match op {
        Operation::Hello { client } => {
            tracing::debug!(client, "hello");
            Reply::Hello {
                version: PROTOCOL_VERSION,
                pid: std::process::id(),
                interface: format!(
                    "{} {}/{}",
                    backend.name(),
                    config.addr.addr,
                    config.addr.prefix_len
                ),
            }
        }
        Operation::Counters => {
            Reply::Counters { counters: counter_list(stack, sockets, backend, polls) }
        }
        Operation::Sockets { offset } => {
            // Engine sockets that only stand in for a side of a local connection are listed as
            // that connection instead.
            let engine: Vec<_> = stack
                .sockets()
                .into_iter()
                .filter(|socket| !socket.handle.is_some_and(|h| sockets.is_local_stand_in(h)))
                .collect();
            let local = sockets.local_lines();
            let total = engine.len() + local.len();
            // A page ends at SOCKETS_PER_PAGE lines or at a byte budget well inside one message,
            // whichever comes first; the client asks again from where it ended.
            let mut budget = MAX_MESSAGE / 2;
            let lines = engine
                .iter()
                .map(|socket| socket_line(socket, sockets))
                .chain(local)
                .skip(offset)
                .take(SOCKETS_PER_PAGE)
                .take_while(|line| {
                    let size = line.details.len() + line.local.len() + line.peer.len() + 160;
                    budget = budget.saturating_sub(size);
                    budget > 0
                })
                .collect();
            Reply::Sockets { total, sockets: lines }
        }
        op => {
            let message = format!("{op:?} is not a report");
            return Err(ProtocolError::BadRequest { message });
        }
    })
}

fn socket_line(socket: &fbsd_tcp::socket::SocketSummary, sockets: &SocketService) -> SocketLine {
    let details = socket.tcp.as_ref().map_or_else(String::new, |info| {
        format!(
            "{} wscale:{},{} rto:{} rtt:{:.3}/{:.3} mss:{} cwnd:{} ssthresh:{} bytes_acked:{} bytes_received:{} segs_out:{} segs_in:{} retrans:{}",
            info.congestion,
            info.snd_wscale,
            info.rcv_wscale,
            info.rto.as_millis(),
            info.rtt.as_secs_f64() * 1e3,
            info.rttvar.as_secs_f64() * 1e3,
            info.snd_mss,
            info.snd_cwnd / info.snd_mss.max(1),
            if info.snd_ssthresh == usize::MAX { 0 } else { info.snd_ssthresh / info.snd_mss.max(1) },
            info.bytes_acked,
            info.bytes_received,
            info.segs_out,
            info.segs_in,
            info.total_retrans,
        )
    });
    let on_rings = socket.handle.is_some_and(|handle| sockets.has_rings(handle));
    let details = if on_rings { format!("{details} plane:rings") } else { details };
    SocketLine {
        protocol: match socket.kind {
            fbsd_tcp::SocketType::Stream => "tcp".into(),
            fbsd_tcp::SocketType::Datagram => "udp".into(),
        },
        state: socket.state.into(),
        recv_queue: socket.recv_queue,
        send_queue: socket.send_queue,
        local: socket.local.to_string(),
        peer: socket.peer.to_string(),
        details,
        owner: socket.handle.map_or_else(String::new, |handle| sockets.owner_of(handle)),
    }
}

/// The engine's and the backend's counters as (name, value) pairs.
fn counter_list(
    stack: &Stack,
    sockets: &SocketService,
    backend: &dyn Backend,
    polls: BusyPollCounters,
) -> Vec<(String, u64)> {
    let c = stack.counters();
    let b = backend.stats();
    let d = sockets.counters();
    let pairs: [(&str, u64); 60] = [
        ("rx_frames", c.rx_frames),
        ("rx_bytes", c.rx_bytes),
        ("tx_frames", c.tx_frames),
        ("tx_bytes", c.tx_bytes),
        ("eth_dropped", c.eth_dropped),
        ("eth_unknown_type", c.eth_unknown_type),
        ("arp_rx", c.arp_rx),
        ("arp_tx", c.arp_tx),
        ("arp_dropped", c.arp_dropped),
        ("arp_unresolved_drops", c.arp_unresolved_drops),
        ("ip_rx", c.ip_rx),
        ("ip_tx", c.ip_tx),
        ("ip_malformed", c.ip_malformed),
        ("ip_checksum_errors", c.ip_checksum_errors),
        ("ip_not_for_us", c.ip_not_for_us),
        ("ip_frags_rx", c.ip_frags_rx),
        ("ip_reassembled", c.ip_reassembled),
        ("ip_reassembly_failures", c.ip_reassembly_failures),
        ("ip_frags_tx", c.ip_frags_tx),
        ("icmp_rx", c.icmp_rx),
        ("icmp_tx", c.icmp_tx),
        ("icmp_dropped", c.icmp_dropped),
        ("udp_rx", c.udp_rx),
        ("udp_tx", c.udp_tx),
        ("udp_checksum_errors", c.udp_checksum_errors),
        ("udp_no_port", c.udp_no_port),
        ("udp_queue_full", c.udp_queue_full),
        ("tcp_rx", c.tcp_rx),
        ("tcp_tx", c.tcp_tx),
        ("tcp_checksum_errors", c.tcp_checksum_errors),
        ("tcp_malformed", c.tcp_malformed),
        ("tcp_no_socket", c.tcp_no_socket),
        ("tcp_rst_tx", c.tcp_rst_tx),
        ("tcp_retransmits", c.tcp_retransmits),
        ("nic_rx_dropped", b.rx_dropped),
        ("nic_rx_oversized", b.rx_oversized),
        ("nic_tx_dropped", b.tx_dropped),
        ("nic_rx_checksum_completed", b.rx_checksum_completed),
        ("tcp_active_opens", c.tcp_active_opens),
        ("tcp_passive_opens", c.tcp_passive_opens),
        ("sessions", sockets.session_count() as u64),
        ("sockets", sockets.socket_count() as u64),
        ("local_connections", sockets.local_connection_count() as u64),
        ("engine_sockets", stack.socket_count() as u64),
        ("carrier_in_bytes", d.carrier_in_bytes),
        ("carrier_out_bytes", d.carrier_out_bytes),
        ("carrier_failures", d.carrier_failures),
        ("datagrams_dropped", d.datagrams_dropped),
        ("datagrams_refused", d.datagrams_refused),
        ("ring_sockets", d.ring_sockets),
        ("ring_turns", d.ring_turns),
        ("carrier_turns", d.carrier_turns),
        ("ring_in_bytes", d.ring_in_bytes),
        ("ring_out_bytes", d.ring_out_bytes),
        ("ring_direct_bytes", d.ring_direct_bytes),
        ("ring_bells", d.ring_bells),
        ("ring_stray_bytes", d.ring_stray_bytes),
        ("busy_polls", polls.polls),
        ("busy_polls_expired", polls.expired),
        ("busy_polls_paused", polls.paused),
    ];
    pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// 16 bytes from the kernel's random source for ISNs and ephemeral ports (RFC 6528). Falls back
/// to time and pid mixed, with a warning, if /dev/urandom cannot be read (a chroot without /dev).
fn random_secret() -> [u8; 16] {
    match backend::random_bytes() {
        Ok(secret) => secret,
        Err(error) => {
            tracing::warn!(%error, "no /dev/urandom: sequence numbers will be more predictable");
            let seed = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                ^ (u128::from(std::process::id()) << 64);
            seed.to_le_bytes()
        }
    }
}
