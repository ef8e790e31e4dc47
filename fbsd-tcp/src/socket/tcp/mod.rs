//! TCP (RFC 9293), structured after FreeBSD: `input.rs` is tcp_input (segment arrival, the state
//! machine), `output.rs` is tcp_output (what to send next), `timer.rs` the named timers, `sack.rs`
//! the scoreboard, `congestion/` the pluggable algorithms, `rtt.rs` the RTO, `assembler.rs` the
//! out-of-order queue, `isn.rs` RFC 6528.
//!
//! Read first: RFC 9293 (the state machine), RFC 7323 (window scale, timestamps, PAWS),
//! RFC 2018 + RFC 6675 (SACK and SACK-based recovery), RFC 5681 + RFC 6582 (congestion control,
//! NewReno), RFC 9438 (CUBIC), RFC 6298 (RTO), RFC 5961 (blind-attack mitigation), RFC 3042
//! (limited transmit), RFC 1122 §4.2.3 (delayed ACK, SWS avoidance, keepalive).
//!
//! A [`TcpSocket`] is one connection's TCB. It does no demultiplexing and knows no listeners:
//! the stack finds the TCB for a segment, creates TCBs for SYNs that reach a listener, and wraps
//! emitted segments in IP and Ethernet. The TCB is a pure function of the segments, user calls and
//! instants given to it.

pub mod assembler;
pub mod congestion;
pub mod isn;
pub mod rtt;
pub mod sack;

pub use congestion::CongestionAlgorithm;

use std::net::SocketAddrV4;

use crate::socket::{Errno, Readiness, SocketOptions};
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpRepr};

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

/// One connection's TCB.
#[derive(Debug)]
pub struct TcpSocket {
    // Fields are the TCP core's to define.
    _private: (),
}

impl TcpSocket {
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
        let _ = (config, options, now, local, remote, iss, ts_offset, mss_limit);
        todo!("tcp core helper")
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
        let _ = (config, options, now, local, remote, iss, ts_offset, mss_limit, syn);
        todo!("tcp core helper")
    }

    /// Processes a segment addressed to this connection (4-tuple already matched, checksum
    /// verified): RFC 9293 §3.10.7 "SEGMENT ARRIVES" for every state but LISTEN and CLOSED.
    pub fn process(&mut self, now: Instant, segment: &TcpRepr<'_>) -> SegmentOutcome {
        let _ = (now, segment);
        todo!("tcp core helper")
    }

    /// Emits the next segment this connection wants to send, if any, as a complete TCP segment
    /// (header, options, payload, checksum) into `buf`, returning its length. `buf` is at least
    /// the MSS plus 60 bytes. Call repeatedly until `None`. Decides everything tcp_output
    /// decides: SYN/SYN-ACK, new data under min(cwnd, rwnd) with Nagle and SWS avoidance,
    /// retransmissions (RTO, fast retransmit, SACK NextSeg), pure ACKs (immediate or when the
    /// delayed-ACK timer fired), window updates, window probes, keepalives, FIN, RST after abort.
    pub fn dispatch(&mut self, now: Instant, buf: &mut [u8], fill_checksum: bool) -> Option<usize> {
        let _ = (now, buf, fill_checksum);
        todo!("tcp core helper")
    }

    /// The earliest instant at which `on_timer` or `dispatch` has work: a timer deadline, or
    /// `Some(now-or-earlier)` when a segment is ready to go. `None` when idle with no timer.
    pub fn poll_at(&self) -> Option<Instant> {
        todo!("tcp core helper")
    }

    /// Runs every timer due at `now` (retransmit, persist, keepalive, delayed ACK, 2MSL,
    /// FIN_WAIT_2). Afterwards `dispatch` emits what the timers asked for.
    pub fn on_timer(&mut self, now: Instant) {
        let _ = now;
        todo!("tcp core helper")
    }

    /// Appends up to `data.len()` bytes to the send buffer. Errors: `WouldBlock` when the buffer
    /// is full, `BrokenPipe` after shutdown(WR)/close, and a pending fatal error (reset,
    /// timeout) takes precedence. Data may be queued in SYN-SENT and SYN-RECEIVED (RFC 9293
    /// allows it); it is sent once the connection is established.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Errno> {
        let _ = data;
        todo!("tcp core helper")
    }

    /// Zero-copy send: `fill` gets the free space of the send buffer as two slices, writes a
    /// prefix and returns how many bytes it wrote. Same errors as `send`.
    pub fn send_with(
        &mut self,
        fill: impl FnOnce(&mut [u8], &mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        let _ = fill;
        todo!("tcp core helper")
    }

    /// Moves up to `buf.len()` received bytes into `buf`. `Ok(0)` at end of stream (FIN
    /// received and all data read); `WouldBlock` if nothing yet; `ConnectionReset` after RST.
    /// Reading opens the window (a window update is sent when it grows by 2 MSS or half the
    /// buffer, RFC 1122 SWS avoidance).
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        let _ = buf;
        todo!("tcp core helper")
    }

    /// Zero-copy receive: `consume` sees the readable data as two slices and returns how many
    /// bytes it took. Same results as `recv`.
    pub fn recv_with(
        &mut self,
        consume: impl FnOnce(&[u8], &[u8]) -> usize,
    ) -> Result<usize, Errno> {
        let _ = consume;
        todo!("tcp core helper")
    }

    /// shutdown(SHUT_WR): queue a FIN after the buffered data.
    pub fn shutdown_write(&mut self, now: Instant) -> Result<(), Errno> {
        let _ = now;
        todo!("tcp core helper")
    }

    /// shutdown(SHUT_RD): further received data is acknowledged and discarded.
    pub fn shutdown_read(&mut self) {
        todo!("tcp core helper")
    }

    /// close(): the user is done with this connection. Unread received data or linger 0 makes it
    /// an abort (RST, RFC 2525 §2.17); otherwise a FIN follows the buffered data and the TCB lives
    /// on, orphaned, until TIME_WAIT ends or the FIN_WAIT_2 timeout.
    pub fn close(&mut self, now: Instant) {
        let _ = now;
        todo!("tcp core helper")
    }

    /// Abort: send RST (in synchronized states) and go to CLOSED.
    pub fn abort(&mut self, now: Instant) {
        let _ = now;
        todo!("tcp core helper")
    }

    /// The connection's state.
    pub fn state(&self) -> TcpState {
        todo!("tcp core helper")
    }

    /// True when the TCB can be freed: CLOSED with nothing left to send (an RST after abort
    /// counts as something to send).
    pub fn is_finished(&self) -> bool {
        todo!("tcp core helper")
    }

    /// Applies changed options (buffer sizes, Nagle, keepalive and its timers, MSS clamp,
    /// congestion algorithm, user timeout).
    pub fn set_options(&mut self, now: Instant, options: &SocketOptions) {
        let _ = (now, options);
        todo!("tcp core helper")
    }

    /// Readiness as poll would report it.
    pub fn readiness(&self) -> Readiness {
        todo!("tcp core helper")
    }

    /// Takes the pending error (SO_ERROR): ECONNREFUSED, ECONNRESET, ETIMEDOUT, or a soft error
    /// recorded from ICMP.
    pub fn take_error(&mut self) -> Option<Errno> {
        todo!("tcp core helper")
    }

    /// Local and remote address.
    pub fn endpoints(&self) -> (SocketAddrV4, SocketAddrV4) {
        todo!("tcp core helper")
    }

    /// Statistics.
    pub fn info(&self) -> TcpInfo {
        todo!("tcp core helper")
    }

    /// An ICMP "fragmentation needed" quoted one of our segments: lower the MSS to fit `mtu`
    /// (RFC 1191), never below 536 bytes (an MTU of 576, as Linux's min_pmtu floor), and
    /// retransmit what no longer fits.
    pub fn on_path_mtu(&mut self, now: Instant, mtu: usize) {
        let _ = (now, mtu);
        todo!("tcp core helper")
    }

    /// An ICMP destination-unreachable (other than fragmentation-needed) quoted one of our
    /// segments: in SYN-SENT a port/protocol unreachable is fatal (ECONNREFUSED); otherwise it
    /// is recorded as a soft error reported only if the connection later times out (RFC 1122
    /// §4.2.3.9).
    pub fn on_icmp_unreachable(&mut self, now: Instant, error: Errno) {
        let _ = (now, error);
        todo!("tcp core helper")
    }
}

/// The RST that answers `segment` when no connection wants it (RFC 9293 §3.10.7.1): if it
/// carries an ACK, `<SEQ=SEG.ACK><CTL=RST>`, else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
/// Returns `None` for a segment that itself carries RST (never answer a reset).
pub fn reset_reply<'a>(segment: &TcpRepr<'_>) -> Option<TcpRepr<'a>> {
    let _ = segment;
    todo!("tcp core helper")
}
