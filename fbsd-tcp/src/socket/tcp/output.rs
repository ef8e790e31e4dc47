//! What to send next (FreeBSD's tcp_output.c): one segment per call, in this order of
//! precedence: a pending RST; SYN or SYN-ACK; loss-recovery retransmissions; data and FIN from
//! SND.NXT under the windows, Nagle and SWS avoidance (which also covers go-back-N after a
//! timeout); window probes; keepalive probes; pure ACKs. The payload is copied from the send ring
//! straight into the caller's buffer. With segmentation offload (the link takes bigger segments
//! whole), new data goes out in bursts of whole SMSS, as FreeBSD's TSO path sends it;
//! retransmissions and probes stay one SMSS.

use super::timer::Timer;
use super::{
    seq_dist, Recovery, TcpSocket, TcpState, INITIAL_PTO, MAX_WINDOW_SHIFT, PTO_MARGIN,
    WORST_CASE_ACK_DELAY,
};
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr};

/// A TCP header without options.
const TCP_HEADER_LEN: usize = 20;
/// The most option bytes a segment carries.
const TCP_OPTIONS_MAX: usize = 40;

/// The most new data one segment may carry when the link takes segments of up to
/// `segment_max` bytes whole: one SMSS, or as many whole SMSS as fit with room for any options.
fn burst_payload(segment_max: usize, smss: usize) -> usize {
    let room = segment_max.saturating_sub(TCP_HEADER_LEN + TCP_OPTIONS_MAX);
    if smss == 0 || room < 2 * smss {
        smss
    } else {
        room - room % smss
    }
}

impl TcpSocket {
    pub(super) fn output(&mut self, now: Instant, buf: &mut [u8], fill: bool) -> Option<usize> {
        if self.rst_pending {
            self.rst_pending = false;
            let flags =
                if self.irs_known() { TcpFlags::RST | TcpFlags::ACK } else { TcpFlags::RST };
            return Some(self.emit(now, buf, fill, self.snd_max, flags, 0));
        }
        match self.state {
            TcpState::Closed | TcpState::Listen => return None,
            TcpState::SynSent => {
                return (self.snd_nxt == self.iss).then(|| self.output_syn(now, buf, fill));
            }
            TcpState::SynReceived if self.snd_nxt == self.iss => {
                return Some(self.output_syn(now, buf, fill));
            }
            TcpState::SynReceived | TcpState::TimeWait => {
                return self.ack_now.then(|| self.emit_ack(now, buf, fill));
            }
            _ => {}
        }
        // Owed duplicate ACKs first: they describe the receive side as it stood before
        // anything sent now, and a sender counts only pure ACKs as duplicates.
        if let Some(arrival) = self.owed_acks.pop() {
            if self.sack_enabled {
                self.sack_note_arrival(arrival);
            }
            return Some(self.emit_ack(now, buf, fill));
        }
        if core::mem::take(&mut self.tlp_due) {
            if let Some(len) = self.output_loss_probe(now, buf, fill) {
                return Some(len);
            }
        }
        if let Some(len) = self.output_retransmission(now, buf, fill) {
            return Some(len);
        }
        if let Some(len) = self.output_data(now, buf, fill) {
            return Some(len);
        }
        if self.keepalive_due {
            self.keepalive_due = false;
            // RFC 1122 §4.2.3.6: an old sequence number makes the peer answer with an ACK.
            return Some(self.emit(now, buf, fill, self.snd_una - 1, TcpFlags::ACK, 0));
        }
        if self.ack_now {
            return Some(self.emit_ack(now, buf, fill));
        }
        None
    }

    /// True once RCV.NXT means something (we have seen the peer's SYN).
    fn irs_known(&self) -> bool {
        self.state != TcpState::SynSent
    }

    fn emit_ack(&mut self, now: Instant, buf: &mut [u8], fill: bool) -> usize {
        // SND.MAX rather than a SND.NXT pulled back by go-back-N: the peer's RCV.NXT may be
        // past SND.NXT, and an ACK below it would be unacceptable there.
        self.emit(now, buf, fill, self.snd_max, TcpFlags::ACK, 0)
    }

    fn output_syn(&mut self, now: Instant, buf: &mut [u8], fill: bool) -> usize {
        let flags = if self.state == TcpState::SynSent {
            TcpFlags::SYN
        } else {
            TcpFlags::SYN | TcpFlags::ACK
        };
        let first = self.snd_max == self.iss;
        if !first && !core::mem::take(&mut self.syn_ack_fresh) {
            self.stats.total_retrans += 1;
        }
        let len = self.emit(now, buf, fill, self.iss, flags, 0);
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if first {
            self.rtt_timing = Some((self.iss, now));
        }
        if !self.timers.is_armed(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        len
    }

    /// How much of the sequence space at `seq` (up to `max_len` data bytes) is data, and whether
    /// our FIN follows it.
    fn segment_at(&self, seq: SeqNumber, max_len: usize) -> (usize, bool) {
        let data_end = self.data_end();
        let data = seq_dist(data_end, seq).min(max_len);
        (data, self.fin_sent() && seq + data == data_end)
    }

    /// Loss-recovery retransmissions. NewReno (RFC 6582): the segment at SND.UNA when fast
    /// retransmit or a partial ACK asks for it. SACK (RFC 6675 §5, and after a timeout §5.1):
    /// NextSeg rule 1 over what RFC 6675 and RACK deemed lost, lowest first, while `pipe`
    /// leaves room in cwnd, the first of an episode regardless. (Rule 2, new data, is
    /// `output_data`'s; rules 3 and 4 are left to RACK and the loss probe.)
    fn output_retransmission(&mut self, now: Instant, buf: &mut [u8], fill: bool) -> Option<usize> {
        let recovery = self.recovery?;
        let smss = self.smss();
        let (seq, max_len) = if recovery == Recovery::NewReno {
            if !core::mem::take(&mut self.rtx_una) {
                return None;
            }
            (self.snd_una, smss)
        } else {
            let forced = core::mem::take(&mut self.rtx_una);
            if !forced && self.cc.cwnd() < self.pipe() + smss {
                self.retransmissions_blocked = self.sent.has_lost();
                return None;
            }
            self.retransmissions_blocked = false;
            self.sent.next_to_retransmit(smss)?
        };
        let (data, fin) = self.segment_at(seq, max_len);
        if data == 0 && !fin {
            return None;
        }
        let flags = if fin { TcpFlags::ACK | TcpFlags::FIN } else { TcpFlags::ACK };
        Some(self.emit_data(now, buf, fill, seq, data, flags))
    }

    /// RFC 8985 §7.3: the loss-probe timer fired with no ACK for two RTTs. Send one segment to
    /// draw an ACK (and with it SACK information, or RACK's verdict): new data if there is
    /// some and the peer's window allows, else the last segment again; cwnd does not apply.
    /// The retransmission timer then restarts.
    fn output_loss_probe(&mut self, now: Instant, buf: &mut [u8], fill: bool) -> Option<usize> {
        if self.recovery.is_some() || self.snd_una == self.snd_max {
            return None;
        }
        let smss = self.smss();
        let data_end = self.data_end();
        let new_data = seq_dist(data_end, self.snd_max);
        let rwnd_room = seq_dist(self.snd_una + self.snd_wnd, self.snd_max);
        let snd_max = self.snd_max;
        let len = if new_data > 0 && rwnd_room > 0 && self.snd_nxt == self.snd_max {
            let len = new_data.min(smss).min(rwnd_room);
            let mut flags = TcpFlags::ACK;
            if snd_max + len == data_end {
                flags |= TcpFlags::PSH;
                if self.write_shutdown
                    && matches!(
                        self.state,
                        TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck
                    )
                {
                    flags |= TcpFlags::FIN;
                }
            }
            self.emit_data(now, buf, fill, snd_max, len, flags)
        } else {
            let seq = self.sent.last_segment(smss)?;
            let (data, fin) = self.segment_at(seq, smss);
            if data == 0 && !fin {
                return None;
            }
            let flags = if fin { TcpFlags::ACK | TcpFlags::FIN } else { TcpFlags::ACK };
            self.emit_data(now, buf, fill, seq, data, flags)
        };
        self.tlp_end = Some(self.snd_max);
        self.tlp_retransmitted = self.snd_max == snd_max;
        self.tlp_tsval = self.ts_now(now);
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        self.stats.loss_probes += 1;
        Some(len)
    }

    /// RFC 8985 §7.2: (re)arms the loss-probe timer for two RTTs from now (plus the peer's
    /// delayed-ACK time when a single segment is out), if a probe may be sent: SACK on, not in
    /// recovery, nothing SACKed, no probe unanswered, data outstanding, and the probe would
    /// fire before the retransmission timer.
    pub(super) fn arm_loss_probe(&mut self, now: Instant) {
        let eligible = self.sack_enabled
            && self.recovery.is_none()
            && self.tlp_end.is_none()
            && self.snd_una != self.snd_max
            && self.snd_wnd > 0
            && self.scoreboard.is_empty()
            && matches!(
                self.state,
                TcpState::Established
                    | TcpState::CloseWait
                    | TcpState::FinWait1
                    | TcpState::Closing
                    | TcpState::LastAck
            );
        self.pto_armed_at = None;
        if !eligible {
            self.timers.stop(Timer::LossProbe);
            return;
        }
        // In whole microseconds: this runs for every segment sent.
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let single_segment = seq_dist(self.snd_max, self.snd_una) <= self.smss();
        let pto = match self.rtt.srtt() {
            Some(srtt) if single_segment => {
                micros(srtt) * 2 + micros(PTO_MARGIN + WORST_CASE_ACK_DELAY)
            }
            Some(srtt) => micros(srtt) * 2 + micros(PTO_MARGIN),
            None => micros(INITIAL_PTO),
        };
        let at = Instant::from_micros(now.total_micros().saturating_add(pto));
        match self.timers.get(Timer::Retransmit) {
            Some(rto_at) if at < rto_at => {
                self.timers.set(Timer::LossProbe, at);
                if !single_segment {
                    self.pto_armed_at = Some(now);
                }
            }
            _ => self.timers.stop(Timer::LossProbe),
        }
    }

    /// New data (or data again after a timeout) and FIN from SND.NXT.
    fn output_data(&mut self, now: Instant, buf: &mut [u8], fill: bool) -> Option<usize> {
        if !matches!(
            self.state,
            TcpState::Established
                | TcpState::CloseWait
                | TcpState::FinWait1
                | TcpState::Closing
                | TcpState::LastAck
        ) {
            return None;
        }
        let data_end = self.data_end();
        let fin_pending = self.write_shutdown
            && matches!(self.state, TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck)
            && self.snd_nxt <= data_end;
        let available = seq_dist(data_end, self.snd_nxt);
        let force = core::mem::take(&mut self.force_probe);
        if available == 0 && !fin_pending {
            // Limited by the window if retransmissions were.
            self.cwnd_blocked = core::mem::take(&mut self.retransmissions_blocked);
            return None;
        }
        let smss = self.smss();

        let right_edge = self.snd_una + self.snd_wnd;
        let rwnd_room = seq_dist(right_edge, self.snd_nxt);
        if force && rwnd_room == 0 && seq_dist(data_end, self.snd_una) > 0 {
            return Some(self.output_window_probe(now, buf, fill));
        }

        let (cwnd, flight) = match self.recovery {
            Some(Recovery::Sack | Recovery::Timeout) => (self.cc.cwnd(), self.pipe()),
            Some(Recovery::NewReno) => {
                (self.cc.cwnd() + self.inflation, self.snd_nxt - self.snd_una)
            }
            // RFC 3042 limited transmit: one more segment for each of the first two dup ACKs.
            None => {
                (self.cc.cwnd() + smss * self.dup_acks.min(2) as usize, self.snd_nxt - self.snd_una)
            }
        };
        let cwnd_room = cwnd.saturating_sub(flight);
        let retransmitting = self.snd_nxt < self.snd_max;
        let burst = if retransmitting || force {
            smss
        } else {
            burst_payload(self.offload_segment.min(buf.len()), smss)
        };
        let wanted = available.min(burst);
        self.cwnd_blocked = cwnd_room < wanted && rwnd_room >= wanted;
        let mut len =
            if force { wanted.min(rwnd_room) } else { wanted.min(rwnd_room).min(cwnd_room) };
        if len > smss && self.snd_nxt + len != data_end {
            // A burst is whole segments (FreeBSD's TSO rule): a short one in mid-stream would
            // leave a runt on the wire once the device cuts it up.
            len -= len % smss;
        }

        if len == 0 {
            // A FIN needs no window (RFC 9293 lets it through a closed one; so does Linux).
            if available == 0 && fin_pending && (cwnd_room > 0 || retransmitting) {
                let seq = self.snd_nxt;
                return Some(self.emit_data(now, buf, fill, seq, 0, TcpFlags::ACK | TcpFlags::FIN));
            }
            self.arm_persist_if_stalled(now);
            return None;
        }

        let completes = self.snd_nxt + len == data_end;
        let nothing_outstanding = self.snd_una == self.snd_max;
        // RFC 1122 §4.2.3.4 sender SWS avoidance, with RFC 896 Nagle as its "push" rule.
        let send = len >= smss
            || retransmitting
            || force
            || (completes && (self.options.nodelay || nothing_outstanding || fin_pending))
            || (self.max_snd_wnd > 0 && len >= self.max_snd_wnd / 2);
        if !send {
            self.arm_persist_if_stalled(now);
            return None;
        }

        if nothing_outstanding
            && self.recovery.is_none()
            && now - self.last_data_sent >= self.rtt.rto()
        {
            // RFC 5681 §4.1: after an idle period the old window says nothing about the path.
            self.cc.on_idle_restart(now, smss);
        }
        let mut flags = TcpFlags::ACK;
        if completes {
            flags |= TcpFlags::PSH;
            if fin_pending {
                flags |= TcpFlags::FIN;
            }
        }
        let seq = self.snd_nxt;
        let len = self.emit_data(now, buf, fill, seq, len, flags);
        // RFC 8985 §7.2: new data restarts the probe timeout (unless it was armed at this very
        // instant for several segments already: the deadline would be the same).
        let armed_now = self.pto_armed_at == Some(now) && self.timers.is_armed(Timer::LossProbe);
        if !retransmitting && !armed_now {
            self.arm_loss_probe(now);
        }
        Some(len)
    }

    /// One byte beyond a zero window (RFC 9293 §3.8.6.1), always the first unacknowledged one so
    /// that repeated probes carry the same byte; the persist timer comes back with backoff.
    fn output_window_probe(&mut self, now: Instant, buf: &mut [u8], fill: bool) -> usize {
        self.snd_nxt = self.snd_una;
        let seq = self.snd_una;
        let len = self.emit_data(now, buf, fill, seq, 1, TcpFlags::ACK);
        self.timers.stop(Timer::Retransmit);
        self.timers.set(Timer::Persist, now + self.persist_interval());
        len
    }

    /// Nothing is in flight and nothing may be sent: only the persist timer will get things
    /// going again (window updates can be lost).
    fn arm_persist_if_stalled(&mut self, now: Instant) {
        if self.snd_una == self.snd_max
            && !self.timers.is_armed(Timer::Retransmit)
            && !self.timers.is_armed(Timer::Persist)
        {
            self.timers.set(Timer::Persist, now + self.persist_interval());
        }
    }

    /// Emits a segment carrying sequence space (data, FIN) and does the send-side bookkeeping:
    /// SND.NXT and SND.MAX, retransmission counting, RTT timing, the retransmission timer.
    fn emit_data(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        fill: bool,
        seq: SeqNumber,
        data: usize,
        flags: TcpFlags,
    ) -> usize {
        let len = self.emit(now, buf, fill, seq, flags, data);
        let end = seq + self.last_emitted_span;
        if self.sack_enabled {
            self.sent.on_transmit(seq, self.last_emitted_span, self.snd_max, now);
        }
        if seq < self.snd_max {
            self.stats.total_retrans += 1;
            self.rtt_timing = None;
        } else if !self.ts_enabled && self.rtt_timing.is_none() {
            self.rtt_timing = Some((seq, now));
        }
        if seq == self.snd_nxt {
            self.snd_nxt = end;
        }
        self.snd_max = self.snd_max.max(end);
        self.last_data_sent = now;
        if !self.timers.is_armed(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        self.timers.stop(Timer::Persist);
        len
    }

    /// Builds one segment into `buf`: header and options, `data` payload bytes copied from the
    /// send ring at `seq`, checksum. Clips the payload to what fits with the options (SACK
    /// blocks take room) and drops FIN and PSH if that cut it short. Records in
    /// `last_emitted_span` how much sequence space the segment took.
    fn emit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        fill: bool,
        seq: SeqNumber,
        flags: TcpFlags,
        data: usize,
    ) -> usize {
        let mut flags = flags;
        let syn = flags.contains(TcpFlags::SYN);
        let rst = flags.contains(TcpFlags::RST);
        let mut options = TcpOptions::default();
        if syn {
            options.mss = Some(u16::try_from(self.rcv_mss).unwrap_or(u16::MAX));
            let offering = self.state == TcpState::SynSent;
            if (offering && self.config.window_scaling) || (!offering && self.ws_enabled) {
                options.window_scale = Some(self.rcv_wscale);
            }
            options.sack_permitted = if offering { self.config.sack } else { self.sack_enabled };
        }
        let timestamps =
            if self.state == TcpState::SynSent { self.config.timestamps } else { self.ts_enabled };
        if timestamps && !rst {
            let echo = if self.state == TcpState::SynSent { 0 } else { self.ts_recent };
            options.timestamp = Some((self.ts_now(now), echo));
        }
        let ack = flags.contains(TcpFlags::ACK);
        if ack && !syn && !rst && self.sack_enabled {
            let room = if options.timestamp.is_some() { 3 } else { 4 };
            // RFC 2883: a D-SACK block goes first, once; the usual blocks follow.
            let mut count = 0;
            if let Some(dsack) = self.dsack.take() {
                options.sack_blocks[0] = dsack;
                count = 1;
            }
            let usual = self.sack_report_len.min(room - count);
            options.sack_blocks[count..count + usual].copy_from_slice(&self.sack_report[..usual]);
            options.sack_len = (count + usual) as u8;
        }

        let options_len = options.emitted_len();
        let mut data = data;
        let fits = if data > self.smss() {
            // A burst for segmentation offload (only `output_data` asks for one): as much as
            // the buffer holds.
            buf.len().saturating_sub(TCP_HEADER_LEN + options_len)
        } else {
            self.eff_mss().saturating_sub(options_len)
        };
        if data > fits {
            data = fits;
            flags = TcpFlags(flags.0 & !(TcpFlags::FIN.0 | TcpFlags::PSH.0));
        }

        let window_len = if syn {
            let window = self.rx.free().min(0xffff);
            self.syn_window = window;
            if self.irs_known() {
                // The first window we announce sets the right edge; `rcv_adv` has no meaning
                // before it (a serial-number max against its initial value would keep garbage
                // for half of all peer ISNs).
                self.rcv_adv = self.rcv_nxt + window;
            }
            window as u16
        } else if rst {
            0
        } else {
            self.window_field()
        };

        let repr = TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq_number: seq,
            ack_number: ack.then_some(self.rcv_nxt),
            flags,
            window_len,
            urgent_pointer: 0,
            options,
            payload: &[],
        };
        let header_len = repr.header_len();
        let total = header_len + data;
        let segment = &mut buf[..total];
        repr.emit_header(&mut TcpPacket::new_unchecked(&mut *segment));
        if data > 0 {
            let offset = seq - self.tx_front();
            self.tx.copy_out(offset, &mut segment[header_len..header_len + data]);
        }
        if fill {
            TcpPacket::new_unchecked(&mut *segment)
                .fill_checksum(*self.local.ip(), *self.remote.ip());
        }

        self.stats.segs_out += 1;
        self.last_emitted_span =
            data + usize::from(syn) + usize::from(flags.contains(TcpFlags::FIN));
        if ack && !rst {
            self.ack_now = false;
            self.delayed_segs = 0;
            self.timers.stop(Timer::DelayedAck);
            self.last_ack_sent = self.rcv_nxt;
            if !syn {
                let advertised = usize::from(window_len) << self.rcv_wscale;
                self.rcv_adv = self.rcv_adv.max(self.rcv_nxt + advertised);
            }
        }
        total
    }

    /// The window field for a non-SYN segment: the free receive space, scaled, with receiver
    /// SWS avoidance (RFC 1122 §4.2.3.3: the right edge moves only by min(half the buffer,
    /// one MSS) or more), holding the right edge already advertised (RFC 9293 §3.8.6.2.2).
    ///
    /// With a window shift the edges a field can express are RCV.NXT plus multiples of the scale
    /// unit, and RCV.NXT is rarely aligned, so the field is rounded. It is rounded *down*, so
    /// that the edge never lies beyond what the ring can hold, except where rounding up is what
    /// holds the edge already advertised and the ring holds that much. Both promises follow:
    ///
    /// - *Never beyond the buffer.* Let E = RCV.NXT + free space: the sequence number one past
    ///   the last byte the ring can hold. E never decreases (in-order data moves RCV.NXT up as
    ///   much as it fills the ring; reading frees space; a FIN or discarded data after
    ///   shutdown(RD) moves RCV.NXT alone; out-of-order data sits in free space without
    ///   counting; `set_options` only resizes to a ring that keeps the advertised window). Every
    ///   field chosen here is at most free / unit (both branches below are), and the SYN's
    ///   window is at most the free space, so every edge advertised is ≤ E at its time, hence
    ///   ≤ E forever after, and so is `rcv_adv`, their maximum: whatever the peer may send is
    ///   storable.
    /// - *Never moved left* whenever the ring holds the rounded-up old edge; otherwise the edge
    ///   on the wire falls short of the old one by less than one unit (RFC 7323 Appendix F's
    ///   window retraction), but `rcv_adv` keeps the old edge, so data up to it is still
    ///   accepted, and it fits by the first point. Rounding down everywhere would not hold the
    ///   edge: with a unit of 32, a window of 64 and 10 bytes arriving, 54 bytes rounds down
    ///   to 32.
    pub(super) fn window_field(&self) -> u16 {
        let shift = self.rcv_wscale.min(MAX_WINDOW_SHIFT);
        let unit = 1_usize << shift;
        let free = self.rx.free().min(0xffff_usize << shift);
        let current = self.rcv_wnd();
        let mut window = free;
        if window > current && window - current < (self.rx.capacity() / 2).min(self.rcv_mss) {
            window = current;
        }
        let mut field = window >> shift;
        let holding = current.div_ceil(unit);
        if holding << shift <= free {
            field = field.max(holding);
        }
        field.min(0xffff) as u16
    }
}
