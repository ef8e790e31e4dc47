//! TCP (RFC 9293), structured after FreeBSD: `input.rs` is tcp_input (segment arrival, the state
//! machine), `output.rs` is tcp_output (what to send next), `timer.rs` the named timers, `sack.rs`
//! the scoreboard, `rack.rs` the per-segment log and RACK (FreeBSD's rack stack keeps a
//! similar send map), `acks.rs` the immediate ACKs owed, `congestion/` the pluggable
//! algorithms, `rtt.rs` the RTO, `assembler.rs` the out-of-order queue, `isn.rs` RFC 6528.
//!
//! Read first: RFC 9293 (the state machine), RFC 7323 (window scale, timestamps, PAWS),
//! RFC 2018 + RFC 6675 (SACK and SACK-based recovery), RFC 8985 (RACK-TLP), RFC 5681 +
//! RFC 6582 (congestion control, NewReno), RFC 9438 (CUBIC), RFC 6298 (RTO), RFC 5961
//! (blind-attack mitigation), RFC 3042 (limited transmit), RFC 1122 §4.2.3 (delayed ACK, SWS
//! avoidance, keepalive).
//!
//! A [`TcpSocket`] is one connection's TCB. It does no demultiplexing and knows no listeners:
//! the stack finds the TCB for a segment, creates TCBs for SYNs that reach a listener, and wraps
//! emitted segments in IP and Ethernet. The TCB is a pure function of the segments, user calls and
//! instants given to it.
//!
//! Choices where the RFCs leave room or where practice departs from them:
//! - RFC 5961 challenge ACKs are limited per connection (10 a second), not globally.
//! - A segment without a timestamp on a connection that negotiated them is accepted (Linux and
//!   FreeBSD do; RFC 7323 §3.2 says SHOULD drop).
//! - TIME-WAIT ignores RSTs (RFC 1337, as FreeBSD). A SYN may reopen it per RFC 6191.
//! - A bare FIN is accepted at RCV.NXT even into a zero window, and our own FIN needs none.
//! - Data arriving for an orphaned connection (after `close`) is answered with RST, as on Linux.
//! - Readiness follows Linux's `tcp_poll`: a closed or write-shut socket polls writable.
//! - Loss detection with SACK is RFC 6675's (DupThresh, IsLost) and RACK-TLP's (RFC 8985) side
//!   by side, as Linux does by default: RACK finds lost retransmissions and losses with too few
//!   SACKs above them, the tail loss probe turns tail losses into recoveries instead of
//!   timeouts. NextSeg retransmits whatever either deemed lost, lowest first (rule 1) before
//!   new data (rule 2); rules 3 and 4 (rescue retransmission) are left to TLP and RACK. D-SACKs
//!   from the peer widen RACK's reordering window and mark probes spurious; we send them for
//!   duplicates below RCV.NXT (not for duplicates of out-of-order data already held).
//! - A timeout with SACK deems everything outstanding lost and retransmits it through NextSeg,
//!   skipping what the peer then SACKs (RFC 6675 §5.1); the scoreboard is cleared first, as
//!   the receiver may have reneged. Without SACK it goes back to SND.UNA. Eifel (RFC 3522)
//!   undoes spurious timeouts only: undoing a spurious fast retransmit would also abandon the
//!   recovery of other holes in that window.
//! - RACK's reordering timer is armed for the earliest segment whose window runs out, not the
//!   latest (RFC 8985 §6.2 step 5): each is marked when its own time comes.
//! - Not implemented: urgent data (the pointer is ignored), ECN, TCP Fast Open, SYN cookies
//!   (the stack's business), the RFC 5681 one-segment window after a lost SYN.

pub mod assembler;
pub mod congestion;
pub mod isn;
pub mod rtt;
pub mod sack;

mod acks;
mod input;
mod output;
mod rack;
mod timer;

#[cfg(test)]
mod tests;

pub use congestion::CongestionAlgorithm;

use std::net::SocketAddrV4;

use self::acks::OwedAcks;
use self::assembler::Assembler;
use self::congestion::CongestionControl;
use self::rack::SegmentLog;
use self::rtt::RttEstimator;
use self::sack::Scoreboard;
use self::timer::{Timer, TimerTable};
use crate::socket::{Errno, Readiness, SocketOptions};
use crate::storage::{RecvSink, RingBuffer, SendQueue, SendSource};
use crate::time::{Duration, Instant};
use crate::wire::{SackBlock, SeqNumber, TcpFlags, TcpOptions, TcpRepr};

/// The RFC 9293 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// No connection.
    Closed,
    /// Waiting for SYNs (listeners only; kept by the stack, never by a TCB).
    Listen,
    /// SYN sent, waiting for SYN-ACK.
    SynSent,
    /// SYN received and SYN-ACK sent, waiting for its ACK.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We closed; FIN sent, not yet acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both sent FIN simultaneously; waiting for the ACK of ours.
    Closing,
    /// The peer closed first, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both closed; waiting 2 × MSL for stray segments.
    TimeWait,
}

impl TcpState {
    /// The name `ss` prints (ESTAB, SYN-SENT, ...).
    pub fn ss_name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynReceived => "SYN-RECV",
            TcpState::Established => "ESTAB",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST-ACK",
            TcpState::TimeWait => "TIME-WAIT",
        }
    }
}

/// Engine-wide TCP settings: defaults for new sockets and protocol constants.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Default SO_SNDBUF.
    pub send_buffer: usize,
    /// Default SO_RCVBUF.
    pub recv_buffer: usize,
    /// Default congestion control.
    pub congestion: CongestionAlgorithm,
    /// RTO before any RTT sample (RFC 6298: 1 s).
    pub initial_rto: Duration,
    /// Lower clamp on the RTO (Linux 200 ms; RFC 6298 says 1 s, which is too slow for a LAN).
    pub min_rto: Duration,
    /// Upper clamp on the RTO.
    pub max_rto: Duration,
    /// Delayed-ACK timeout (RFC 1122 §4.2.3.2 allows up to 500 ms; 40 ms as Linux and FreeBSD).
    pub delayed_ack: Duration,
    /// Maximum segment lifetime; TIME_WAIT lasts 2 × MSL.
    pub msl: Duration,
    /// SYN (and SYN-ACK) retransmissions before giving up with ETIMEDOUT.
    pub syn_retries: u32,
    /// Data retransmissions before giving up with ETIMEDOUT (like Linux tcp_retries2).
    pub max_retransmits: u32,
    /// How long an orphaned connection (closed by the user) may stay in FIN_WAIT_2.
    pub fin_wait2_timeout: Duration,
    /// Default keepalive idle time, probe interval and probe count.
    pub keep_idle: Duration,
    /// See `keep_idle`.
    pub keep_interval: Duration,
    /// See `keep_idle`.
    pub keep_count: u32,
    /// Offer and accept RFC 7323 timestamps.
    pub timestamps: bool,
    /// Offer and accept SACK.
    pub sack: bool,
    /// Offer and accept window scaling.
    pub window_scaling: bool,
    /// Most disjoint out-of-order ranges kept per connection.
    pub max_ooo_ranges: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            congestion: CongestionAlgorithm::Cubic,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            delayed_ack: Duration::from_millis(40),
            msl: Duration::from_secs(30),
            syn_retries: 6,
            max_retransmits: 15,
            fin_wait2_timeout: Duration::from_secs(60),
            keep_idle: Duration::from_secs(7200),
            keep_interval: Duration::from_secs(75),
            keep_count: 9,
            timestamps: true,
            sack: true,
            window_scaling: true,
            max_ooo_ranges: 64,
        }
    }
}

/// TCP_INFO-like statistics of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// State, as `ss` names it (`TcpState::ss_name`).
    pub state: &'static str,
    /// MSS used for sending.
    pub snd_mss: usize,
    /// MSS the peer may send (what we announced).
    pub rcv_mss: usize,
    /// Current RTO.
    pub rto: Duration,
    /// Smoothed RTT (zero before the first sample).
    pub rtt: Duration,
    /// RTT variance.
    pub rttvar: Duration,
    /// Smallest RTT seen.
    pub min_rtt: Duration,
    /// Congestion window in bytes.
    pub snd_cwnd: usize,
    /// Slow-start threshold in bytes (usize::MAX while infinite).
    pub snd_ssthresh: usize,
    /// Peer's receive window (scaled), bytes.
    pub snd_wnd: usize,
    /// Our advertised receive window, bytes.
    pub rcv_wnd: usize,
    /// Window scale shifts: ours (what we apply to our window), the peer's.
    pub rcv_wscale: u8,
    /// See `rcv_wscale`.
    pub snd_wscale: u8,
    /// Options in use.
    pub timestamps: bool,
    /// See `timestamps`.
    pub sack: bool,
    /// Bytes sent and not yet acknowledged.
    pub unacked: usize,
    /// Bytes SACKed by the peer above SND.UNA.
    pub sacked: usize,
    /// Bytes queued in the send buffer, not yet sent.
    pub notsent: usize,
    /// Bytes waiting in the receive buffer for the user.
    pub recv_queue: usize,
    /// Retransmitted segments in all.
    pub total_retrans: u64,
    /// Consecutive timeouts without progress.
    pub backoff: u32,
    /// Bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Segments sent and received.
    pub segs_out: u64,
    /// See `segs_out`.
    pub segs_in: u64,
    /// Fast-recovery episodes entered.
    pub fast_recoveries: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Congestion-control algorithm.
    pub congestion: &'static str,
}

/// What the stack must do after a segment was processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// Nothing beyond calling `dispatch` later.
    Accepted,
    /// The segment was unacceptable in a way RFC 9293 answers with a reset (e.g. an ACK in
    /// SYN-SENT that acknowledges nothing we sent): the stack sends `reset_reply(segment)`.
    SendReset,
    /// A SYN arrived on a TIME_WAIT connection that may reuse the 4-tuple (RFC 9293 §3.10.7.4
    /// note, RFC 6191 with timestamps): the stack deletes this TCB and hands the SYN to the
    /// listener.
    ReopenFromTimeWait,
}

/// The MSS assumed when a SYN carries no MSS option (RFC 9293 §3.7.1, RFC 1122 §4.2.2.6), and
/// the floor for path-MTU reductions (an MTU of 576, Linux's `min_pmtu`).
const DEFAULT_MSS: usize = 536;
/// The smallest MSS a peer may make us use: a tiny announced MSS would multiply the per-segment
/// work (the "SACK panic" lesson), so it is raised to this, as Linux does with `TCP_MIN_SND_MSS`
/// (48 bytes of payload) plus room for 40 bytes of options.
const MIN_PEER_MSS: usize = 88;
/// RFC 7323 §2.3: the largest window shift.
const MAX_WINDOW_SHIFT: u8 = 14;
/// The timestamp option as emitted (two NOPs and ten bytes), subtracted from every data segment.
const TIMESTAMP_OPTION_LEN: usize = 12;
/// Segments ACKed at once at the start of a connection, so that the peer's slow start is not
/// slowed by delayed ACKs (Linux's quick-ACK mode).
const QUICKACK_SEGMENTS: u32 = 16;
/// RFC 5961 §7 asks for a limit on challenge ACKs. It is kept per connection here (Linux keeps
/// a global one, which itself became a side channel, CVE-2016-5696): at most this many...
const CHALLENGE_ACK_LIMIT: u32 = 10;
/// ...in this interval.
const CHALLENGE_ACK_INTERVAL: Duration = Duration::from_secs(1);
/// RFC 7323 §5.5: a TS.Recent older than this is no longer trusted for PAWS.
const PAWS_IDLE_LIMIT: Duration = Duration::from_secs(24 * 24 * 3600);
/// RFC 8985 §7.2 WCDelAckT: how long a peer may delay the ACK of a lone segment (the RFC's
/// suggestion, and Linux's longest delayed ACK).
const WORST_CASE_ACK_DELAY: Duration = Duration::from_millis(200);
/// Added to 2 × SRTT for the loss-probe timeout: SRTT is measured in whole milliseconds (from
/// timestamps) and may be nearly zero on a LAN; a probe must not fire before an ACK could be
/// back. Linux adds two clock ticks likewise.
const PTO_MARGIN: Duration = Duration::from_millis(2);
/// With no RTT sample yet, the loss-probe timeout (RFC 8985 §7.2).
const INITIAL_PTO: Duration = Duration::from_secs(1);

/// RFC 1982 comparison of two 32-bit timestamps: `a` is older than `b`.
fn ts_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Which loss-recovery algorithm runs until SND.UNA reaches `TcpSocket::recover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// RFC 6582: no SACK; partial ACKs retransmit the next hole, the window is inflated per
    /// duplicate ACK.
    NewReno,
    /// RFC 6675 with RACK (RFC 8985): the scoreboard and the segment log say what is lost,
    /// `pipe` replaces the flight size.
    Sack,
    /// After a retransmission timeout, with SACK (RFC 6675 §5.1, RFC 8985 §6.3): everything
    /// outstanding was deemed lost and is retransmitted in sequence order as the window, which
    /// grows as in slow start, allows, skipping what gets SACKed and repeating what RACK finds
    /// lost again. No fast recovery starts before SND.UNA reaches `recover`. (Without SACK a
    /// timeout goes back to SND.UNA instead: go-back-N through `snd_nxt`.)
    Timeout,
}

/// What a connection counts, reported through [`TcpInfo`].
#[derive(Debug, Clone, Default)]
struct Stats {
    segs_in: u64,
    segs_out: u64,
    total_retrans: u64,
    bytes_acked: u64,
    bytes_received: u64,
    fast_recoveries: u64,
    timeouts: u64,
    /// Tail loss probes sent, and those that repaired a loss (RFC 8985 §7).
    loss_probes: u64,
    probe_recoveries: u64,
}

/// One connection's TCB.
///
/// Sequence space on the send side: the send ring's front is the oldest unacknowledged data byte
/// (SND.UNA, or ISS + 1 while our SYN is unacknowledged), so the ring holds exactly the data
/// between SND.UNA and the end of what the user wrote; a FIN, once queued, sits one past it.
/// On the receive side the ring holds the in-order data not yet read, then (in its free space,
/// at their offsets from RCV.NXT) the out-of-order segments the assembler tracks.
pub struct TcpSocket {
    state: TcpState,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    config: TcpConfig,
    options: SocketOptions,
    /// Created by `accept_syn` (RFC 9293 distinguishes passive opens in SYN-RECEIVED).
    passive: bool,

    // Send sequence variables (RFC 9293 §3.3.1). `snd_max` is the highest sequence number sent
    // plus one; `snd_nxt` falls back below it after a timeout (go-back-N).
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    snd_max: SeqNumber,
    /// The peer's window, scaled, in bytes from SND.UNA.
    snd_wnd: usize,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// The largest window the peer offered (RFC 5961 §5.2 MAX.SND.WND, sender SWS avoidance).
    max_snd_wnd: usize,
    /// The peer's window shift, applied to the windows it sends.
    snd_wscale: u8,

    // Receive sequence variables.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// The right edge of the window we last advertised (RCV.NXT + RCV.WND at that time); never
    /// moved left (RFC 9293 §3.8.6.2.2).
    rcv_adv: SeqNumber,
    /// Our window shift, applied to the windows we send.
    rcv_wscale: u8,
    /// The (unscaled) window our SYN carried, which bounds the peer until our first ACK.
    syn_window: usize,

    // Segment sizes.
    /// The largest MSS the route allows (MTU − 40), lowered by path-MTU discovery.
    mss_limit: usize,
    /// What the peer announced (536 if nothing).
    peer_mss: usize,
    /// What we announced.
    rcv_mss: usize,

    // Negotiated options.
    /// Both SYNs carried the window scale option (the shifts may still be 0).
    ws_enabled: bool,
    sack_enabled: bool,
    ts_enabled: bool,
    ts_offset: u32,
    /// RFC 7323 TS.Recent and when it was last updated.
    ts_recent: u32,
    ts_recent_stamp: Instant,
    /// RCV.NXT as carried by the last ACK we sent (RFC 7323 Last.ACK.sent).
    last_ack_sent: SeqNumber,

    // Buffers.
    tx: SendQueue,
    rx: RingBuffer,
    assembler: Assembler,
    /// A FIN that arrived (possibly beyond a gap) and is not yet in sequence.
    rx_fin: Option<SeqNumber>,
    /// The peer's FIN was received in sequence: end of stream.
    fin_received: bool,
    /// SACK blocks for our ACKs, most recently changed first (RFC 2018 §4).
    sack_report: [SackBlock; 4],
    sack_report_len: usize,
    /// RFC 2883 D-SACK: a duplicate segment's range, reported first in the next ACK (once). It
    /// tells the sender a retransmission was spurious, which widens RACK's reordering window
    /// there (and lets Linux undo the window reduction).
    dsack: Option<SackBlock>,

    // User side.
    /// shutdown(WR) or close(): a FIN follows the buffered data.
    write_shutdown: bool,
    /// shutdown(RD): further data is acknowledged and discarded.
    read_shutdown: bool,
    /// close() was called: nobody reads or writes any more.
    orphaned: bool,
    /// An RST (abort) waits to be emitted.
    rst_pending: bool,
    /// The fatal error to report once (SO_ERROR, or the next failing call).
    error: Option<Errno>,
    /// An ICMP error to report only if the connection later times out (RFC 1122 §4.2.3.9).
    soft_error: Option<Errno>,

    // Acknowledgment generation.
    /// Send an ACK with the next `dispatch`.
    ack_now: bool,
    /// Immediate ACKs owed, one per out-of-order or hole-filling segment since the last
    /// `dispatch` (see `acks.rs`).
    owed_acks: OwedAcks,
    /// In-order data segments received since our last ACK.
    delayed_segs: u32,
    /// The largest segment the link takes whole (`set_segmentation_offload`); 0 for none.
    offload_segment: usize,
    /// Where in-order payload goes when the receive buffer holds nothing (`lend_recv_sink`).
    rx_sink: Option<Box<dyn RecvSink>>,
    /// Bytes went to the sink since the application last called `recv`: the socket polls
    /// readable, so that the application learns of them.
    sink_news: bool,
    /// Segments still to ACK at once (quick-ACK at connection start).
    quickacks: u32,
    challenge_window_start: Instant,
    challenge_acks: u32,

    // Loss recovery and congestion control.
    cc: Box<dyn CongestionControl>,
    rtt: RttEstimator,
    /// Without timestamps: the segment being timed (its first sequence number) and when it left.
    rtt_timing: Option<(SeqNumber, Instant)>,
    scoreboard: Scoreboard,
    /// Per-segment transmission times and loss state, and RACK (with SACK only).
    sent: SegmentLog,
    /// Scratch space for the ranges one ACK newly SACKs (kept to avoid allocating per ACK).
    sack_pieces: Vec<(SeqNumber, SeqNumber)>,
    /// RFC 8985 TLP.end_seq: SND.MAX after the last loss probe, until an ACK covers it.
    tlp_end: Option<SeqNumber>,
    /// The probe retransmitted data (RFC 8985 TLP.is_retrans), and its TSval.
    tlp_retransmitted: bool,
    tlp_tsval: u32,
    /// The loss-probe timer fired: send a probe with the next `dispatch`.
    tlp_due: bool,
    /// When the loss-probe timer was last armed for a flight of several segments: sending more
    /// at that same instant would arm it for the same deadline.
    pto_armed_at: Option<Instant>,
    dup_acks: u32,
    recovery: Option<Recovery>,
    /// RFC 6582 `recover`: SND.MAX when recovery or the last timeout began; fast retransmit is
    /// not entered again before SND.UNA reaches it.
    recover: SeqNumber,
    /// NewReno window inflation (RFC 6582 §3.2), on top of the algorithm's cwnd.
    inflation: usize,
    /// Retransmit the segment at SND.UNA with the next `dispatch` (fast retransmit, partial ACK).
    rtx_una: bool,
    /// Output last stopped because of the congestion window (RFC 7661 input to the algorithm).
    cwnd_blocked: bool,
    /// The last `output_retransmission` held back a lost segment for lack of window.
    retransmissions_blocked: bool,
    /// Eifel (RFC 3522): the TSval carried by the first retransmission of the current timeout
    /// or recovery episode, until the first ACK of new data shows whether it was needed.
    eifel_tsval: Option<u32>,
    /// Retransmissions found spurious.
    spurious_retransmits: u64,
    /// Consecutive retransmission timeouts without progress.
    rto_count: u32,
    /// During a run of timeouts, when its oldest unacknowledged data was first sent (for
    /// TCP_USER_TIMEOUT).
    rto_episode_start: Option<Instant>,
    /// The last time data left (idle restart, RFC 5681 §4.1).
    last_data_sent: Instant,
    /// The last time a segment arrived (keepalive, and "the peer still answers").
    last_recv: Instant,
    /// Persist timer backoff and unanswered probes.
    persist_backoff: u32,
    persist_probes: u32,
    /// The persist timer fired: send a probe (or an SWS-held segment) regardless of windows.
    force_probe: bool,
    /// Keepalive probes sent without an answer.
    keepalive_probes: u32,
    /// A keepalive probe waits to be emitted.
    keepalive_due: bool,
    /// The next SYN-ACK answers a simultaneous open and is no retransmission.
    syn_ack_fresh: bool,

    /// Sequence space taken by the segment `emit` built last.
    last_emitted_span: usize,

    timers: TimerTable,
    /// Something may be ready for `dispatch` (cleared when it returns `None`).
    wants_dispatch: bool,
    /// The latest instant any entry point was given.
    last_now: Instant,
    stats: Stats,
}

impl core::fmt::Debug for TcpSocket {
    // The rings would print megabytes: show the connection, not the buffers.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpSocket")
            .field("state", &self.state)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("snd_max", &self.snd_max)
            .field("snd_wnd", &self.snd_wnd)
            .field("rcv_nxt", &self.rcv_nxt)
            .field("rcv_adv", &self.rcv_adv)
            .field("tx_len", &self.tx.len())
            .field("rx_len", &self.rx.len())
            .field("cc", &self.cc)
            .field("recovery", &self.recovery)
            .field("timers", &self.timers)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// `to − from` in sequence space, or 0 when `to` is not after `from`.
fn seq_dist(to: SeqNumber, from: SeqNumber) -> usize {
    if to > from {
        to - from
    } else {
        0
    }
}

/// The smallest shift that lets a window of `buffer` bytes be advertised (RFC 7323 §2.3).
fn window_shift_for(buffer: usize) -> u8 {
    let mut shift = 0;
    while shift < MAX_WINDOW_SHIFT && (0xffff_usize << shift) < buffer {
        shift += 1;
    }
    shift
}

impl TcpSocket {
    #[allow(clippy::too_many_arguments)]
    fn new(
        state: TcpState,
        config: &TcpConfig,
        options: &SocketOptions,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        ts_offset: u32,
        mss_limit: usize,
    ) -> TcpSocket {
        let mss_limit = mss_limit.clamp(DEFAULT_MSS, usize::from(u16::MAX));
        let rcv_mss = match options.max_segment {
            Some(clamp) => mss_limit.min(usize::from(clamp).max(MIN_PEER_MSS)),
            None => mss_limit,
        };
        let rcv_wscale =
            if config.window_scaling { window_shift_for(options.recv_buffer) } else { 0 };
        TcpSocket {
            state,
            local,
            remote,
            config: config.clone(),
            options: options.clone(),
            passive: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            max_snd_wnd: 0,
            snd_wscale: 0,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            rcv_wscale,
            syn_window: 0,
            mss_limit,
            peer_mss: DEFAULT_MSS,
            rcv_mss,
            ws_enabled: false,
            sack_enabled: false,
            ts_enabled: false,
            ts_offset,
            ts_recent: 0,
            ts_recent_stamp: now,
            last_ack_sent: SeqNumber(0),
            tx: SendQueue::new(options.send_buffer),
            rx: RingBuffer::new(options.recv_buffer),
            assembler: Assembler::new(config.max_ooo_ranges),
            rx_fin: None,
            fin_received: false,
            sack_report: [SackBlock::default(); 4],
            sack_report_len: 0,
            dsack: None,
            write_shutdown: false,
            read_shutdown: false,
            orphaned: false,
            rst_pending: false,
            error: None,
            soft_error: None,
            ack_now: false,
            owed_acks: OwedAcks::default(),
            delayed_segs: 0,
            offload_segment: 0,
            rx_sink: None,
            sink_news: false,
            quickacks: QUICKACK_SEGMENTS,
            challenge_window_start: now,
            challenge_acks: 0,
            cc: options.congestion.build(DEFAULT_MSS),
            rtt: RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto),
            rtt_timing: None,
            scoreboard: Scoreboard::new(),
            sent: SegmentLog::new(iss + 1),
            sack_pieces: Vec::new(),
            tlp_end: None,
            tlp_retransmitted: false,
            tlp_tsval: 0,
            tlp_due: false,
            pto_armed_at: None,
            dup_acks: 0,
            recovery: None,
            recover: iss,
            inflation: 0,
            rtx_una: false,
            cwnd_blocked: false,
            retransmissions_blocked: false,
            eifel_tsval: None,
            spurious_retransmits: 0,
            rto_count: 0,
            rto_episode_start: None,
            last_data_sent: now,
            last_recv: now,
            persist_backoff: 0,
            persist_probes: 0,
            force_probe: false,
            keepalive_probes: 0,
            keepalive_due: false,
            syn_ack_fresh: false,
            last_emitted_span: 0,
            timers: TimerTable::default(),
            wants_dispatch: true,
            last_now: now,
            stats: Stats::default(),
        }
    }

    /// Active open: a TCB in SYN-SENT whose first `dispatch` emits the SYN. `mss_limit` is the
    /// largest MSS the route allows (MTU − 40); `options.max_segment` may clamp it further.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        config: &TcpConfig,
        options: &SocketOptions,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        ts_offset: u32,
        mss_limit: usize,
    ) -> TcpSocket {
        TcpSocket::new(
            TcpState::SynSent,
            config,
            options,
            now,
            local,
            remote,
            iss,
            ts_offset,
            mss_limit,
        )
    }

    /// Passive open: a TCB in SYN-RECEIVED built from a SYN that reached a listener (options
    /// negotiated from `syn`), whose first `dispatch` emits the SYN-ACK.
    #[allow(clippy::too_many_arguments)]
    pub fn accept_syn(
        config: &TcpConfig,
        options: &SocketOptions,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        ts_offset: u32,
        mss_limit: usize,
        syn: &TcpRepr<'_>,
    ) -> TcpSocket {
        let mut socket = TcpSocket::new(
            TcpState::SynReceived,
            config,
            options,
            now,
            local,
            remote,
            iss,
            ts_offset,
            mss_limit,
        );
        socket.passive = true;
        socket.stats.segs_in = 1;
        socket.learn_from_syn(now, syn);
        socket
    }

    /// Tells the connection that the link takes TCP segments of up to `segment_max` bytes
    /// (header included) whole, beyond the MSS: new data then leaves in bursts of whole SMSS,
    /// as big as that and the buffer `dispatch` gets allow. 0 (the default) turns it off.
    pub fn set_segmentation_offload(&mut self, segment_max: usize) {
        self.offload_segment = segment_max;
    }

    /// Processes a segment addressed to this connection (4-tuple already matched, checksum
    /// verified): RFC 9293 §3.10.7 "SEGMENT ARRIVES" for every state but LISTEN and CLOSED.
    pub fn process(&mut self, now: Instant, segment: &TcpRepr<'_>) -> SegmentOutcome {
        self.last_now = now;
        self.wants_dispatch = true;
        self.input(now, segment)
    }

    /// Emits the next segment this connection wants to send, if any, as a complete TCP segment
    /// (header, options, payload, checksum) into `buf`, returning its length. `buf` is at least
    /// the MSS plus 60 bytes (more with segmentation offload, see
    /// [`set_segmentation_offload`](Self::set_segmentation_offload)). Call repeatedly until
    /// `None`. Decides everything tcp_output decides: SYN/SYN-ACK, new data under min(cwnd,
    /// rwnd) with Nagle and SWS avoidance, retransmissions (RTO, fast retransmit, SACK NextSeg),
    /// pure ACKs (immediate or when the delayed-ACK timer fired), window updates, window
    /// probes, keepalives, FIN, RST after abort.
    pub fn dispatch(&mut self, now: Instant, buf: &mut [u8], fill_checksum: bool) -> Option<usize> {
        self.last_now = self.last_now.max(now);
        let emitted = self.output(now, buf, fill_checksum);
        if emitted.is_none() {
            self.wants_dispatch = false;
        }
        emitted
    }

    /// The earliest instant at which `on_timer` or `dispatch` has work: a timer deadline, or
    /// `Some(now-or-earlier)` when a segment is ready to go. `None` when idle with no timer.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.wants_dispatch {
            return Some(self.last_now);
        }
        self.timers.next_deadline()
    }

    /// RFC 5927 §4.1: an ICMP error about this connection is believable only if the segment it
    /// quotes starts within what we have sent and not yet seen acknowledged.
    pub fn quotes_outstanding(&self, seq: SeqNumber) -> bool {
        self.snd_una <= seq && seq < self.snd_max.max(self.snd_una + 1)
    }

    /// The earliest armed timer, leaving pending output aside: for a caller that dispatches
    /// after every interaction anyway and must keep timers running while it cannot send (a next
    /// hop that does not resolve).
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Runs every timer due at `now` (retransmit, persist, keepalive, delayed ACK, 2MSL,
    /// FIN_WAIT_2). Afterwards `dispatch` emits what the timers asked for.
    pub fn on_timer(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.run_timers(now);
    }

    /// Appends up to `data.len()` bytes to the send buffer. Errors: `WouldBlock` when the buffer
    /// is full, `BrokenPipe` after shutdown(WR)/close, and a pending fatal error (reset,
    /// timeout) takes precedence. Data may be queued in SYN-SENT and SYN-RECEIVED (RFC 9293
    /// allows it); it is sent once the connection is established.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Errno> {
        self.send_with(|first, second| {
            let n1 = first.len().min(data.len());
            first[..n1].copy_from_slice(&data[..n1]);
            let n2 = second.len().min(data.len() - n1);
            second[..n2].copy_from_slice(&data[n1..n1 + n2]);
            n1 + n2
        })
    }

    /// What a send reports before it looks at the buffer: a pending error, or EPIPE once the
    /// connection can take no more data (closed, or shut for writing).
    fn check_sendable(&mut self) -> Result<(), Errno> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let open = matches!(
            self.state,
            TcpState::SynSent | TcpState::SynReceived | TcpState::Established | TcpState::CloseWait
        );
        if !open || self.write_shutdown {
            return Err(Errno::BrokenPipe);
        }
        Ok(())
    }

    /// Zero-copy send: `fill` gets the free space of the send buffer as two slices, writes a
    /// prefix and returns how many bytes it wrote. Same errors as `send`.
    pub fn send_with(
        &mut self,
        fill: impl FnOnce(&mut [u8], &mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        self.check_sendable()?;
        if self.tx.has_source() {
            return Err(Errno::InvalidArgument); // bytes copied in would overtake the lent ones
        }
        if self.tx.is_full() {
            return Err(Errno::WouldBlock);
        }
        let (first, second) = self.tx.writable();
        let room = first.len() + second.len();
        let written = fill(first, second).min(room);
        self.tx.commit(written);
        if written > 0 {
            self.wants_dispatch = true;
        }
        Ok(written)
    }

    /// Lends the connection a [`SendSource`]: from now on its new bytes come from there (after
    /// those already queued), announced with [`send_lent`](Self::send_lent), and `send` is
    /// refused. The engine copies them straight from the source into segments and releases them
    /// once acknowledged. `InvalidArgument` if a source was lent already.
    pub fn lend_send_source(&mut self, source: Box<dyn SendSource>) -> Result<(), Errno> {
        self.tx.lend(source).map_err(|_| Errno::InvalidArgument)
    }

    /// `n` more bytes of the lent source are part of the stream (errors as `send`'s, and
    /// `InvalidArgument` without a source). The bytes must stay unchanged in the source until
    /// released.
    pub fn send_lent(&mut self, n: usize) -> Result<usize, Errno> {
        if !self.tx.has_source() {
            return Err(Errno::InvalidArgument);
        }
        self.check_sendable()?;
        self.tx.extend_lent(n);
        if n > 0 {
            self.wants_dispatch = true;
        }
        Ok(n)
    }

    /// Lends the connection a [`RecvSink`]: in-order payload goes straight there whenever the
    /// receive buffer holds nothing and the segment fits, and the socket polls readable until
    /// the next `recv` (which finds only what the buffer holds). `InvalidArgument` if a sink was
    /// lent already.
    pub fn lend_recv_sink(&mut self, sink: Box<dyn RecvSink>) -> Result<(), Errno> {
        if self.rx_sink.is_some() {
            return Err(Errno::InvalidArgument);
        }
        self.rx_sink = Some(sink);
        Ok(())
    }

    /// Moves up to `buf.len()` received bytes into `buf`. `Ok(0)` at end of stream (FIN
    /// received and all data read); `WouldBlock` if nothing yet; `ConnectionReset` after RST.
    /// Reading opens the window (a window update is sent when it grows by 2 MSS or half the
    /// buffer, RFC 1122 SWS avoidance).
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        self.recv_with(|first, second| {
            let n1 = first.len().min(buf.len());
            buf[..n1].copy_from_slice(&first[..n1]);
            let n2 = second.len().min(buf.len() - n1);
            buf[n1..n1 + n2].copy_from_slice(&second[..n2]);
            n1 + n2
        })
    }

    /// Zero-copy receive: `consume` sees the readable data as two slices and returns how many
    /// bytes it took. Same results as `recv`.
    ///
    /// Data received before a reset is still delivered first; the error comes after it, as on
    /// Linux.
    pub fn recv_with(
        &mut self,
        consume: impl FnOnce(&[u8], &[u8]) -> usize,
    ) -> Result<usize, Errno> {
        self.sink_news = false;
        if self.rx.is_empty() {
            if let Some(error) = self.error.take() {
                return Err(error);
            }
            if self.fin_received || self.read_shutdown || self.state == TcpState::Closed {
                return Ok(0);
            }
            return Err(Errno::WouldBlock);
        }
        let (first, second) = self.rx.readable();
        let available = first.len() + second.len();
        let taken = consume(first, second).min(available);
        self.rx.consume(taken);
        if taken > 0 && self.window_update_due() {
            self.ack_now = true;
            self.wants_dispatch = true;
        }
        Ok(taken)
    }

    /// shutdown(SHUT_WR): queue a FIN after the buffered data.
    ///
    /// In SYN-SENT and SYN-RECEIVED the FIN waits until the connection is established (Linux
    /// instead drops a connecting socket on shutdown; queueing keeps the data the user wrote).
    /// `NotConnected` once the connection is closed.
    pub fn shutdown_write(&mut self, now: Instant) -> Result<(), Errno> {
        self.last_now = self.last_now.max(now);
        if self.state == TcpState::Closed {
            return Err(Errno::NotConnected);
        }
        if self.write_shutdown {
            return Ok(());
        }
        self.write_shutdown = true;
        self.wants_dispatch = true;
        match self.state {
            TcpState::Established => self.state = TcpState::FinWait1,
            TcpState::CloseWait => self.state = TcpState::LastAck,
            _ => {}
        }
        Ok(())
    }

    /// shutdown(SHUT_RD): further received data is acknowledged and discarded. Data already
    /// received stays readable.
    pub fn shutdown_read(&mut self) {
        self.read_shutdown = true;
        self.assembler.clear();
        self.sack_report_len = 0;
    }

    /// close(): the user is done with this connection. Unread received data or linger 0 makes it
    /// an abort (RST, RFC 2525 §2.17); otherwise a FIN follows the buffered data and the TCB lives
    /// on, orphaned, until TIME_WAIT ends or the FIN_WAIT_2 timeout.
    pub fn close(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.wants_dispatch = true;
        self.orphaned = true;
        self.read_shutdown = true;
        match self.state {
            TcpState::Closed | TcpState::Listen => {}
            // RFC 9293: CLOSE in SYN-SENT deletes the TCB; nothing was synchronized.
            TcpState::SynSent => self.set_closed(),
            _ if !self.rx.is_empty() || self.options.linger == Some(Duration::ZERO) => {
                self.abort(now)
            }
            TcpState::FinWait2 => {
                self.timers.set(Timer::FinWait2, now + self.config.fin_wait2_timeout);
            }
            _ => {
                let _ = self.shutdown_write(now);
            }
        }
    }

    /// Abort: send RST (in synchronized states) and go to CLOSED.
    pub fn abort(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.wants_dispatch = true;
        // RFC 9293 ABORT: a reset in SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1/2 and CLOSE-WAIT;
        // CLOSING, LAST-ACK and TIME-WAIT just delete the TCB.
        if matches!(
            self.state,
            TcpState::SynReceived
                | TcpState::Established
                | TcpState::FinWait1
                | TcpState::FinWait2
                | TcpState::CloseWait
        ) {
            self.rst_pending = true;
        }
        self.write_shutdown = true;
        self.read_shutdown = true;
        self.set_closed();
    }

    /// The connection's state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// True when the TCB can be freed: CLOSED with nothing left to send (an RST after abort
    /// counts as something to send).
    pub fn is_finished(&self) -> bool {
        self.state == TcpState::Closed && !self.rst_pending
    }

    /// Applies changed options (buffer sizes, Nagle, keepalive and its timers, MSS clamp,
    /// congestion algorithm, user timeout).
    ///
    /// A receive buffer is only resized when the new size still holds the unread data and the
    /// window already advertised; out-of-order data held in the old buffer is dropped (the peer
    /// retransmits it: SACK reneging, RFC 2018 §8). A send buffer is only shrunk down to what it
    /// holds. A new congestion algorithm starts from its initial state.
    pub fn set_options(&mut self, now: Instant, options: &SocketOptions) {
        self.last_now = self.last_now.max(now);
        self.wants_dispatch = true;
        let old = core::mem::replace(&mut self.options, options.clone());
        if options.send_buffer != self.tx.capacity() {
            let _ = self.tx.resize(options.send_buffer.max(self.tx.len()));
        }
        if options.recv_buffer != self.rx.capacity() {
            let needed = self.rx.len() + self.rcv_wnd();
            if options.recv_buffer >= needed && self.rx.resize(options.recv_buffer) {
                self.assembler.clear();
                self.sack_report_len = 0;
            }
        }
        if options.max_segment != old.max_segment {
            if let Some(clamp) = options.max_segment {
                self.rcv_mss = self.rcv_mss.min(usize::from(clamp).max(MIN_PEER_MSS));
            }
        }
        if options.congestion != old.congestion {
            self.cc = options.congestion.build(self.smss());
        }
        if options.keepalive != old.keepalive
            || options.keep_idle != old.keep_idle
            || options.keep_interval != old.keep_interval
        {
            self.keepalive_probes = 0;
            if options.keepalive && self.keepalive_applies() {
                self.timers.set(Timer::KeepAlive, self.last_recv.max(now) + options.keep_idle);
            } else {
                self.timers.stop(Timer::KeepAlive);
            }
        }
    }

    /// Readiness as poll would report it.
    ///
    /// As on Linux, a connection that is closed or shut for writing reports writable (a write
    /// fails at once with EPIPE rather than blocking), and a connect in progress does not.
    pub fn readiness(&self) -> Readiness {
        let closed = self.state == TcpState::Closed;
        let read_closed = self.fin_received || self.read_shutdown || closed;
        let connecting = matches!(self.state, TcpState::SynSent | TcpState::SynReceived);
        let writable = if closed || self.write_shutdown {
            !connecting
        } else if connecting {
            false
        } else {
            let free = self.tx.free();
            free > 0 && free >= self.tx.len() / 2
        };
        Readiness {
            readable: !self.rx.is_empty() || self.sink_news || read_closed || self.error.is_some(),
            writable,
            read_closed,
            hangup: closed
                || self.state == TcpState::TimeWait
                || (self.write_shutdown && (self.fin_received || self.read_shutdown)),
            error: self.error.is_some(),
        }
    }

    /// Takes the pending error (SO_ERROR): ECONNREFUSED, ECONNRESET, ETIMEDOUT, or a soft error
    /// recorded from ICMP.
    pub fn take_error(&mut self) -> Option<Errno> {
        self.error.take().or_else(|| self.soft_error.take())
    }

    /// Local and remote address.
    pub fn endpoints(&self) -> (SocketAddrV4, SocketAddrV4) {
        (self.local, self.remote)
    }

    /// Statistics.
    pub fn info(&self) -> TcpInfo {
        TcpInfo {
            state: self.state.ss_name(),
            snd_mss: self.smss(),
            rcv_mss: self.rcv_mss,
            rto: self.rtt.rto(),
            rtt: self.rtt.srtt().unwrap_or(Duration::ZERO),
            rttvar: self.rtt.rttvar(),
            min_rtt: self.rtt.min_rtt().unwrap_or(Duration::ZERO),
            snd_cwnd: self.cc.cwnd(),
            snd_ssthresh: self.cc.ssthresh(),
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_wnd(),
            rcv_wscale: self.rcv_wscale,
            snd_wscale: self.snd_wscale,
            timestamps: self.ts_enabled,
            sack: self.sack_enabled,
            unacked: seq_dist(self.snd_max, self.snd_una),
            sacked: self.scoreboard.sacked_bytes(),
            notsent: seq_dist(self.data_end(), self.snd_max),
            recv_queue: self.rx.len(),
            total_retrans: self.stats.total_retrans,
            backoff: self.rto_count,
            bytes_acked: self.stats.bytes_acked,
            bytes_received: self.stats.bytes_received,
            segs_out: self.stats.segs_out,
            segs_in: self.stats.segs_in,
            fast_recoveries: self.stats.fast_recoveries,
            timeouts: self.stats.timeouts,
            congestion: self.cc.algorithm().name(),
        }
    }

    /// An ICMP "fragmentation needed" quoted one of our segments: lower the MSS to fit `mtu`
    /// (RFC 1191), never below 536 bytes (an MTU of 576, as Linux's min_pmtu floor), and
    /// retransmit what no longer fits.
    ///
    /// Everything outstanding is sent again from SND.UNA in the new size (segments that were
    /// small enough are resent needlessly; finding them would need per-segment records). This is
    /// not a congestion signal: the window is left alone.
    pub fn on_path_mtu(&mut self, now: Instant, mtu: usize) {
        self.last_now = self.last_now.max(now);
        let limit = mtu.saturating_sub(40).max(DEFAULT_MSS);
        if limit >= self.mss_limit {
            return;
        }
        self.mss_limit = limit;
        if self.is_synchronized() && self.snd_una < self.snd_max {
            self.snd_nxt = self.snd_una;
            self.rtt_timing = None;
            self.wants_dispatch = true;
            // RACK will see the resent segments arrive before the originals beyond them, which
            // the path dropped: those are resent here too, and must not start a recovery (and
            // its window reduction) of their own.
            self.recover = self.recover.max(self.snd_max);
        }
    }

    /// An ICMP destination-unreachable (other than fragmentation-needed) quoted one of our
    /// segments, or the next hop never resolved: in SYN-SENT it fails the connect with `error`
    /// (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH); otherwise it is recorded as a soft error
    /// reported only if the connection later times out (RFC 1122 §4.2.3.9).
    pub fn on_icmp_unreachable(&mut self, now: Instant, error: Errno) {
        self.last_now = self.last_now.max(now);
        // As Linux's tcp_v4_err: while connecting, any unreachable is the connect's answer
        // (a host that never answers ARP fails the connect in seconds, not after every SYN
        // retry); once established it is only a soft error.
        if self.state == TcpState::SynSent {
            self.fail(error);
        } else if self.state != TcpState::Closed {
            self.soft_error = Some(error);
        }
    }

    // ---- Helpers shared by input, output and timers. ----

    /// RFC 9293's synchronized states (a SYN was exchanged both ways), plus SYN-RECEIVED where
    /// our SYN may still be unacknowledged.
    fn is_synchronized(&self) -> bool {
        !matches!(self.state, TcpState::Closed | TcpState::Listen | TcpState::SynSent)
    }

    /// States in which keepalive probes are sent.
    fn keepalive_applies(&self) -> bool {
        matches!(
            self.state,
            TcpState::Established
                | TcpState::CloseWait
                | TcpState::FinWait1
                | TcpState::FinWait2
                | TcpState::Closing
                | TcpState::LastAck
        )
    }

    /// Data plus options per segment: min(peer's MSS, route, TCP_MAXSEG).
    fn eff_mss(&self) -> usize {
        let mut mss = self.peer_mss.min(self.mss_limit);
        if let Some(clamp) = self.options.max_segment {
            mss = mss.min(usize::from(clamp).max(MIN_PEER_MSS));
        }
        mss
    }

    /// SMSS: payload bytes per full-sized segment (the options every segment carries removed).
    fn smss(&self) -> usize {
        self.eff_mss() - if self.ts_enabled { TIMESTAMP_OPTION_LEN } else { 0 }
    }

    /// The sequence number of the send ring's first byte.
    fn tx_front(&self) -> SeqNumber {
        if self.syn_unacked() {
            self.iss + 1
        } else {
            self.snd_una
        }
    }

    /// True until our SYN is acknowledged. SND.UNA = ISS alone does not say it: after 2^32 − 1
    /// bytes of data SND.UNA wraps back to ISS.
    fn syn_unacked(&self) -> bool {
        self.snd_una == self.iss && self.stats.bytes_acked == 0
    }

    /// One past the last data byte the user wrote: where a FIN goes.
    fn data_end(&self) -> SeqNumber {
        self.tx_front() + self.tx.len()
    }

    /// Our FIN is sent and not yet acknowledged.
    fn fin_sent(&self) -> bool {
        self.write_shutdown && self.snd_max == self.data_end() + 1
    }

    /// RFC 6675 SetPipe, in SACK recovery: the bytes in the network, from the scoreboard (what
    /// the receiver holds) and the segment log (what is lost, what was retransmitted).
    fn pipe(&self) -> usize {
        let unsacked = seq_dist(self.snd_max, self.snd_una) - self.scoreboard.sacked_bytes();
        self.sent.pipe(unsacked)
    }

    /// RCV.WND as the peer knows it: up to the right edge we advertised.
    fn rcv_wnd(&self) -> usize {
        seq_dist(self.rcv_adv, self.rcv_nxt)
    }

    /// Our TSval: a millisecond clock plus the connection's offset (RFC 7323 §5.4, §7.1).
    fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// Records the options and initial sequence number of a SYN (or SYN-ACK) from the peer.
    fn learn_from_syn(&mut self, now: Instant, syn: &TcpRepr<'_>) {
        self.irs = syn.seq_number;
        self.rcv_nxt = syn.seq_number + 1;
        self.last_ack_sent = self.rcv_nxt;
        self.peer_mss =
            syn.options.mss.map_or(DEFAULT_MSS, |mss| usize::from(mss).max(MIN_PEER_MSS));
        match syn.options.window_scale {
            Some(shift) if self.config.window_scaling => {
                self.ws_enabled = true;
                self.snd_wscale = shift.min(MAX_WINDOW_SHIFT);
            }
            _ => {
                self.ws_enabled = false;
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.sack_enabled = self.config.sack && syn.options.sack_permitted;
        match syn.options.timestamp {
            Some((tsval, _)) if self.config.timestamps => {
                self.ts_enabled = true;
                self.ts_recent = tsval;
                self.ts_recent_stamp = now;
            }
            _ => self.ts_enabled = false,
        }
        // A SYN's window is never scaled (RFC 7323 §2.2).
        self.snd_wnd = usize::from(syn.window_len);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = syn.seq_number;
        self.snd_wl2 = syn.ack_number.unwrap_or(self.iss);
        self.last_recv = now;
    }

    /// Our SYN was acknowledged: data may flow.
    fn establish(&mut self, now: Instant) {
        if self.rto_count > 0 {
            // RFC 6298 §5.7 (the ACK about to be processed may still give a sample).
            self.rtt.syn_timed_out();
        }
        self.state = if self.write_shutdown { TcpState::FinWait1 } else { TcpState::Established };
        self.cc = self.options.congestion.build(self.smss());
        self.last_recv = now;
        self.last_data_sent = now;
        if self.options.keepalive {
            self.timers.set(Timer::KeepAlive, now + self.options.keep_idle);
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = TcpState::TimeWait;
        self.timers.clear();
        self.owed_acks.clear();
        self.timers.set(Timer::TimeWait, now + 2 * self.config.msl);
    }

    /// CLOSED: every timer stops; what remains to send is at most an RST.
    fn set_closed(&mut self) {
        self.state = TcpState::Closed;
        self.timers.clear();
        self.ack_now = false;
        self.owed_acks.clear();
        self.keepalive_due = false;
        self.force_probe = false;
        self.rtx_una = false;
        self.recovery = None;
        self.tlp_due = false;
    }

    /// The connection dies with `error` (reported unless nobody holds the socket).
    fn fail(&mut self, error: Errno) {
        if !self.orphaned {
            self.error = Some(error);
        }
        self.set_closed();
    }

    /// Retransmissions or probes went unanswered: ETIMEDOUT, or the ICMP error that explains it.
    fn give_up(&mut self) {
        let error = self.soft_error.take().unwrap_or(Errno::TimedOut);
        self.fail(error);
    }
}

/// The RST that answers `segment` when no connection wants it (RFC 9293 §3.10.7.1): if it
/// carries an ACK, `<SEQ=SEG.ACK><CTL=RST>`, else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
/// Returns `None` for a segment that itself carries RST (never answer a reset).
pub fn reset_reply<'a>(segment: &TcpRepr<'_>) -> Option<TcpRepr<'a>> {
    if segment.flags.contains(TcpFlags::RST) {
        return None;
    }
    let (seq_number, ack_number, flags) = match segment.ack_number {
        Some(ack) => (ack, None, TcpFlags::RST),
        None => (
            SeqNumber(0),
            Some(segment.seq_number + segment.segment_len()),
            TcpFlags::RST | TcpFlags::ACK,
        ),
    };
    Some(TcpRepr {
        src_port: segment.dst_port,
        dst_port: segment.src_port,
        seq_number,
        ack_number,
        flags,
        window_len: 0,
        urgent_pointer: 0,
        options: TcpOptions::default(),
        payload: &[],
    })
}
