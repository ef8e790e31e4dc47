//! Tests of the TCB, driven by hand-built segments and virtual time.
//!
//! Read first: RFC 9293 §3.10 (event processing), RFC 5961 (challenge ACKs), RFC 7323 (window
//! scale, timestamps, PAWS), RFC 2018 and RFC 6675 (SACK), RFC 8985 (RACK-TLP), RFC 5681 and
//! RFC 6582 (fast retransmit, NewReno), RFC 6298 (RTO), RFC 1122 §4.2.3 (delayed ACK, SWS,
//! keepalive).
//!
//! The tests are grouped the way RFC 9293 §3.10 describes event processing, by
//! state (banners below and one file per group) and then by mechanism (windows, SACK, timers,
//! loss recovery). Each test reads as a segment exchange: `send!` hands the TCB a segment from
//! the peer, `recv!` asserts the exact segment it emits next, `recv_nothing!` that it is quiet.
//! `pair.rs` then runs two TCBs against each other over a lossy, reordering link.
//!
//! Conventions: the TCB under test is LOCAL (ISS = `LOCAL_SEQ`); the peer is REMOTE (its ISS is
//! `REMOTE_SEQ`). `SEND_TEMPL` is a segment from the peer, `RECV_TEMPL` one from the TCB, both
//! in ESTABLISHED right after the handshake; tests override fields with `..TEMPL`.

mod established;
mod handshake;
mod loss;
mod pair;
mod robustness;
mod teardown;
mod timers;
mod windows;

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{SegmentOutcome, TcpConfig, TcpSocket, TcpState};
use crate::socket::SocketOptions;
use crate::time::{Duration, Instant};
use crate::wire::{ChecksumPolicy, SackBlock, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr};

pub(super) const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
pub(super) const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub(super) const LOCAL: SocketAddrV4 = SocketAddrV4::new(LOCAL_IP, 80);
pub(super) const REMOTE: SocketAddrV4 = SocketAddrV4::new(REMOTE_IP, 49500);
pub(super) const LOCAL_SEQ: SeqNumber = SeqNumber(10_000);
pub(super) const REMOTE_SEQ: SeqNumber = SeqNumber(50_000);
/// Route MSS (MTU 1500).
pub(super) const MSS: usize = 1460;
/// The TCB's receive buffer: its window is this, unscaled, in every test without scaling.
pub(super) const RECV_BUFFER: usize = 64_000;
pub(super) const SEND_BUFFER: usize = 64_000;
/// The peer's window in `SEND_TEMPL`.
pub(super) const REMOTE_WINDOW: u16 = 60_000;
pub(super) const TS_OFFSET: u32 = 0;

pub(super) const SEND_TEMPL: TcpRepr<'static> = TcpRepr {
    src_port: 49500,
    dst_port: 80,
    seq_number: SeqNumber(REMOTE_SEQ.0 + 1),
    ack_number: Some(SeqNumber(LOCAL_SEQ.0 + 1)),
    flags: TcpFlags::ACK,
    window_len: REMOTE_WINDOW,
    urgent_pointer: 0,
    options: NO_OPTIONS,
    payload: &[],
};

pub(super) const RECV_TEMPL: TcpRepr<'static> = TcpRepr {
    src_port: 80,
    dst_port: 49500,
    seq_number: SeqNumber(LOCAL_SEQ.0 + 1),
    ack_number: Some(SeqNumber(REMOTE_SEQ.0 + 1)),
    flags: TcpFlags::ACK,
    window_len: RECV_BUFFER as u16,
    urgent_pointer: 0,
    options: NO_OPTIONS,
    payload: &[],
};

pub(super) const NO_OPTIONS: TcpOptions = TcpOptions {
    mss: None,
    window_scale: None,
    sack_permitted: false,
    sack_blocks: [SackBlock { left: SeqNumber(0), right: SeqNumber(0) }; 4],
    sack_len: 0,
    timestamp: None,
};

pub(super) const ACK: TcpFlags = TcpFlags::ACK;
pub(super) const SYN: TcpFlags = TcpFlags::SYN;
pub(super) const FIN: TcpFlags = TcpFlags::FIN;
pub(super) const RST: TcpFlags = TcpFlags::RST;
pub(super) const PSH: TcpFlags = TcpFlags::PSH;

/// Engine defaults, with deterministic, readable numbers.
pub(super) fn config() -> TcpConfig {
    TcpConfig { send_buffer: SEND_BUFFER, recv_buffer: RECV_BUFFER, ..TcpConfig::default() }
}

pub(super) fn options(config: &TcpConfig) -> SocketOptions {
    SocketOptions::new(config, 64)
}

/// Options with SACK blocks.
pub(super) fn sack(blocks: &[(u32, u32)]) -> TcpOptions {
    let mut options = NO_OPTIONS;
    for (slot, &(left, right)) in options.sack_blocks.iter_mut().zip(blocks) {
        *slot = SackBlock { left: SeqNumber(left), right: SeqNumber(right) };
    }
    options.sack_len = blocks.len() as u8;
    options
}

/// A TCB under test with its own virtual clock.
pub(super) struct Tcb {
    pub(super) socket: TcpSocket,
    pub(super) now: Instant,
    buf: Vec<u8>,
}

impl core::ops::Deref for Tcb {
    type Target = TcpSocket;
    fn deref(&self) -> &TcpSocket {
        &self.socket
    }
}

impl core::ops::DerefMut for Tcb {
    fn deref_mut(&mut self) -> &mut TcpSocket {
        &mut self.socket
    }
}

impl Tcb {
    pub(super) fn new(socket: TcpSocket, now: Instant) -> Tcb {
        Tcb { socket, now, buf: vec![0; 65_600] }
    }

    /// The peer's segment arrives now.
    pub(super) fn deliver(&mut self, segment: &TcpRepr<'_>) -> SegmentOutcome {
        self.socket.process(self.now, segment)
    }

    /// The next segment the TCB emits now, parsed back from the wire format (checksum checked).
    #[track_caller]
    pub(super) fn emitted(&mut self) -> Option<Emitted> {
        let len = self.socket.dispatch(self.now, &mut self.buf, true)?;
        let packet = TcpPacket::new_checked(&self.buf[..len]).expect("emitted a valid header");
        let repr = TcpRepr::parse(&packet, LOCAL_IP, REMOTE_IP, ChecksumPolicy::default())
            .expect("emitted a valid segment");
        Some(Emitted::from(&repr))
    }

    /// Lets time pass, running timers at every deadline on the way (dispatching nothing).
    pub(super) fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.socket.timers.next_deadline().filter(|&at| at <= until) {
            self.now = self.now.max(at);
            self.socket.on_timer(self.now);
        }
        self.now = until;
    }

    /// Lets time pass to exactly the next timer deadline and runs it.
    pub(super) fn advance_to_next_timer(&mut self) -> Duration {
        let at = self.socket.timers.next_deadline().expect("a timer is armed");
        let waited = at - self.now;
        self.now = at;
        self.socket.on_timer(at);
        waited
    }

    /// Drains everything the TCB has to send now.
    pub(super) fn emitted_all(&mut self) -> Vec<Emitted> {
        core::iter::from_fn(|| self.emitted()).collect()
    }
}

/// An emitted segment, owned, so that tests can hold it; compares equal to the `TcpRepr` it
/// should be.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Emitted {
    pub(super) repr: TcpRepr<'static>,
    pub(super) payload: Vec<u8>,
}

impl From<&TcpRepr<'_>> for Emitted {
    fn from(repr: &TcpRepr<'_>) -> Emitted {
        Emitted { repr: TcpRepr { payload: &[], ..*repr }, payload: repr.payload.to_vec() }
    }
}

impl Emitted {
    pub(super) fn as_repr(&self) -> TcpRepr<'_> {
        TcpRepr { payload: &self.payload, ..self.repr }
    }
}

impl core::fmt::Debug for Emitted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let r = &self.repr;
        write!(
            f,
            "[{:?}] seq={} ack={:?} win={} len={} opts={:?}",
            r.flags,
            r.seq_number,
            r.ack_number,
            r.window_len,
            self.payload.len(),
            r.options
        )
    }
}

/// Hands the TCB a segment from the peer: `send!(tcb, TcpRepr { .. })` expects
/// `SegmentOutcome::Accepted`; `send!(tcb, repr, outcome)` another outcome.
macro_rules! send {
    ($tcb:expr, $repr:expr) => {
        send!($tcb, $repr, $crate::socket::tcp::SegmentOutcome::Accepted)
    };
    ($tcb:expr, $repr:expr, $outcome:expr) => {{
        let outcome = $tcb.deliver(&$repr);
        assert_eq!(outcome, $outcome, "outcome of sending {:?}", $repr);
    }};
}

/// Asserts the next segment the TCB emits: `recv!(tcb, TcpRepr { .. })`.
macro_rules! recv {
    ($tcb:expr, $repr:expr) => {{
        let expected: $crate::wire::TcpRepr<'_> = $repr;
        match $tcb.emitted() {
            Some(emitted) => {
                if emitted.as_repr() != expected {
                    panic!(
                        "segment differs\n emitted: {emitted:?}\nexpected: {:?}{}",
                        $crate::socket::tcp::tests::Emitted::from(&expected),
                        $crate::socket::tcp::tests::payload_difference(
                            &emitted.payload,
                            expected.payload
                        ),
                    );
                }
            }
            None => panic!(
                "expected {:?}, the TCB emitted nothing",
                $crate::socket::tcp::tests::Emitted::from(&expected)
            ),
        }
    }};
}

/// Where two payloads of a failed comparison part.
pub(super) fn payload_difference(emitted: &[u8], expected: &[u8]) -> String {
    match emitted.iter().zip(expected).position(|(a, b)| a != b) {
        Some(i) => format!("\npayloads differ first at byte {i}"),
        None if emitted.len() != expected.len() => String::from("\npayload lengths differ"),
        None => String::new(),
    }
}

/// Asserts the TCB has nothing to send now.
macro_rules! recv_nothing {
    ($tcb:expr) => {{
        if let Some(emitted) = $tcb.emitted() {
            panic!("expected nothing, the TCB emitted {emitted:?}");
        }
    }};
}

pub(super) use {recv, recv_nothing, send};

// ---- Building TCBs in each state. ----

pub(super) fn syn_sent_with(config: &TcpConfig, options: &SocketOptions) -> Tcb {
    let socket = TcpSocket::connect(
        config,
        options,
        Instant::ZERO,
        LOCAL,
        REMOTE,
        LOCAL_SEQ,
        TS_OFFSET,
        MSS,
    );
    Tcb::new(socket, Instant::ZERO)
}

/// The SYN a TCB built by `syn_sent` emits with `config()`.
pub(super) fn our_syn(tsval: u32) -> TcpRepr<'static> {
    TcpRepr {
        seq_number: LOCAL_SEQ,
        ack_number: None,
        flags: SYN,
        options: TcpOptions {
            mss: Some(MSS as u16),
            window_scale: Some(0),
            sack_permitted: true,
            timestamp: Some((tsval, 0)),
            ..NO_OPTIONS
        },
        ..RECV_TEMPL
    }
}

/// SYN-SENT, the SYN already emitted.
pub(super) fn syn_sent() -> Tcb {
    let config = config();
    let mut tcb = syn_sent_with(&config, &options(&config));
    assert_eq!(tcb.state(), TcpState::SynSent);
    recv!(tcb, our_syn(TS_OFFSET));
    tcb
}

/// The peer's plain SYN (no options but MSS).
pub(super) fn their_syn() -> TcpRepr<'static> {
    TcpRepr {
        seq_number: REMOTE_SEQ,
        ack_number: None,
        flags: SYN,
        options: TcpOptions { mss: Some(MSS as u16), ..NO_OPTIONS },
        ..SEND_TEMPL
    }
}

pub(super) fn syn_received_with(
    config: &TcpConfig,
    options: &SocketOptions,
    syn: &TcpRepr<'_>,
) -> Tcb {
    let socket = TcpSocket::accept_syn(
        config,
        options,
        Instant::ZERO,
        LOCAL,
        REMOTE,
        LOCAL_SEQ,
        TS_OFFSET,
        MSS,
        syn,
    );
    Tcb::new(socket, Instant::ZERO)
}

/// SYN-RECEIVED after the peer's plain SYN, the SYN-ACK already emitted.
pub(super) fn syn_received() -> Tcb {
    let config = config();
    let mut tcb = syn_received_with(&config, &options(&config), &their_syn());
    recv!(
        tcb,
        TcpRepr {
            seq_number: LOCAL_SEQ,
            flags: SYN | ACK,
            options: TcpOptions { mss: Some(MSS as u16), ..NO_OPTIONS },
            ..RECV_TEMPL
        }
    );
    tcb
}

/// ESTABLISHED through a passive open with no options but MSS (no scaling, SACK or
/// timestamps): segments look exactly like `SEND_TEMPL` and `RECV_TEMPL`.
pub(super) fn established() -> Tcb {
    let mut tcb = syn_received();
    send!(tcb, SEND_TEMPL);
    assert_eq!(tcb.state(), TcpState::Established);
    recv_nothing!(tcb);
    tcb
}

/// ESTABLISHED with the given socket options (same handshake as `established`).
pub(super) fn established_with(config: &TcpConfig, options: &SocketOptions) -> Tcb {
    let mut tcb = syn_received_with(config, options, &their_syn());
    assert!(tcb.emitted().is_some());
    send!(tcb, SEND_TEMPL);
    assert_eq!(tcb.state(), TcpState::Established);
    tcb
}

/// The peer's SYN offering everything (window scale 7, SACK, timestamps with TSval `tsval`).
pub(super) fn their_full_syn(tsval: u32) -> TcpRepr<'static> {
    TcpRepr {
        options: TcpOptions {
            mss: Some(MSS as u16),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((tsval, 0)),
            ..NO_OPTIONS
        },
        ..their_syn()
    }
}

/// `n` bytes of a recognizable pattern starting at stream offset `from`.
pub(super) fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(pattern_byte).collect()
}

pub(super) fn pattern_byte(i: usize) -> u8 {
    ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// The per-segment loss state agrees with the scoreboard and with a recount (with SACK, once
/// data flows).
#[track_caller]
pub(super) fn check_loss_state(socket: &TcpSocket) {
    if socket.sack_enabled && socket.snd_una != socket.iss {
        socket.sent.check(&socket.scoreboard, socket.snd_una, socket.snd_max);
    }
}
