//! RACK (RFC 8985 §6): time-based loss detection over a log of the segments in flight, and the
//! per-segment loss state SACK recovery works from: what is lost, what has been retransmitted
//! since, and so `pipe` and NextSeg (RFC 6675 §4–5).
//!
//! The scoreboard (`sack.rs`) knows which ranges the receiver holds; it cannot know when each
//! segment left, so a retransmission that is lost again stays invisible to it until the RTO.
//! RACK deems a segment lost once a segment sent *after* it has been delivered and a reordering
//! window has passed beyond the RTT: a lost retransmission is detected like any other loss, one
//! RTT later.
//!
//! Layout, chosen for O(1) amortised work per ACK and no allocation once the window is reached:
//! - one record per transmitted segment, in sequence order (a `VecDeque`: SND.UNA pops the
//!   front, new data pushes the back). A record holds its end, its latest transmission time and
//!   transmission's serial number and four flags, 24 bytes. Records are split (never merged)
//!   when a retransmission starts or ends inside one, so that every transmission's edges, and so
//!   every edge a receiver SACKs, are record edges;
//! - segments never retransmitted were sent in sequence order, so they are also in time order:
//!   RACK scans them with a cursor that only moves forward;
//! - retransmissions are queued in the order they were sent; entries whose segments were
//!   delivered, or sent again, are skipped lazily;
//! - segments deemed lost and not yet retransmitted wait in a min-heap by sequence number, so
//!   NextSeg retransmits the lowest first whichever way the loss was detected.
//!
//! Byte counts of lost and of retransmitted segments are kept incrementally, so `pipe` is
//! O(1): unSACKed bytes − lost bytes + bytes retransmitted (and in flight) since being lost.
//!
//! "Sent after" (RFC 8985 RACK_sent_after) compares transmission serial numbers rather than
//! times: the caller's clock is the same for every segment of a `dispatch` round, and the RFC's
//! tie-break by sequence number would then call a retransmission "sent before" the new data
//! that followed it in the same round, and deem it lost as soon as that data is acknowledged.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::sack::{Scoreboard, DUP_THRESH};
use super::ts_before;
use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

/// The whole segment is SACKed.
const SACKED: u8 = 1 << 0;
/// Deemed lost (RFC 6675 IsLost, RACK, or a timeout) and not delivered since.
const LOST: u8 = 1 << 1;
/// Sent more than once.
const RETRANSMITTED: u8 = 1 << 2;
/// A retransmission is in flight: sent after the segment was last deemed lost (or, for a
/// segment never deemed lost, at all), and not deemed lost itself.
const RTX_IN_FLIGHT: u8 = 1 << 3;

/// Past this many records, new data extends the last record instead of adding one (only a
/// sender of many tiny segments gets here; RACK then sees those segments as one, which delays
/// its verdicts slightly but keeps the log's memory bounded at 768 KiB).
const MAX_RECORDS: usize = 1 << 15;

/// RFC 8985 §6.2 step 4: after this many recoveries without D-SACK the reordering window
/// returns to its base.
const REO_WND_PERSIST: u32 = 16;
/// A bound on the D-SACK-driven growth of the reordering window (it is capped by SRTT anyway).
const MAX_REO_WND_MULT: u32 = 64;

/// One transmitted segment; it starts where the previous record ends (or at `SegmentLog::start`).
#[derive(Debug, Clone, Copy)]
struct Record {
    end: SeqNumber,
    /// Its latest transmission's serial number (`SegmentLog::next_serial` when it left).
    serial: u32,
    /// When its latest transmission left.
    xmit: Instant,
    flags: u8,
}

/// What RACK needs from an ACK besides its sequence numbers.
#[derive(Debug, Clone, Copy)]
pub(super) struct AckTiming {
    pub(super) now: Instant,
    /// The ACK's TSecr, when timestamps are on, and our TSval clock's offset: together they
    /// tell whether the ACK answers a retransmission or the original before it.
    pub(super) tsecr: Option<u32>,
    pub(super) ts_offset: u32,
    /// The smallest RTT seen (RFC 8985 RACK.min_RTT).
    pub(super) min_rtt: Duration,
}

impl AckTiming {
    /// Our TSval for a transmission at `at` (as `TcpSocket::ts_now` computes it).
    fn tsval(&self, at: Instant) -> u32 {
        (at.total_millis() as u32).wrapping_add(self.ts_offset)
    }
}

/// RFC 8985 RACK_sent_after, by transmission serial numbers (serial-number arithmetic: the
/// transmissions alive at once are far fewer than 2^31).
fn sent_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The segments between SND.UNA and SND.MAX with their transmission times and loss state, and
/// RACK's state (RFC 8985 §5.2).
#[derive(Debug, Clone)]
pub(super) struct SegmentLog {
    records: VecDeque<Record>,
    /// Where the first record starts: SND.UNA once data flows.
    start: SeqNumber,
    /// `start` as a 64-bit count that never wraps (the heap's keys).
    start_ext: u64,
    /// Bytes of unSACKed records flagged LOST, and RTX_IN_FLIGHT.
    lost_bytes: usize,
    rtx_bytes: usize,
    /// Records wholly SACKed (RFC 8985 RACK.segs_sacked).
    sacked_records: usize,
    /// Starts (64-bit) of records deemed lost and waiting for retransmission; stale entries
    /// are dropped when they reach the top.
    to_retransmit: BinaryHeap<Reverse<u64>>,
    /// Retransmissions in the order they were sent: (start, end, serial, when).
    retransmissions: VecDeque<(SeqNumber, SeqNumber, u32, Instant)>,
    /// The next transmission's serial number.
    next_serial: u32,
    /// Every record below this is SACKed, lost or retransmitted: the never-retransmitted
    /// segments still in flight start at or above it, in time order.
    original_scan: SeqNumber,
    /// RFC 6675 IsLost marking has covered everything below this in the current recovery.
    marked_upto: SeqNumber,

    /// RACK.xmit_ts: the serial number of the most recently sent segment known delivered.
    rack: Option<u32>,
    /// RACK.rtt: that segment's RTT.
    rack_rtt: Duration,
    /// RACK.fack: the highest end delivered.
    fack: SeqNumber,
    /// RACK.reordering_seen.
    reordering_seen: bool,
    /// RACK.reo_wnd_mult, RACK.reo_wnd_persist, RACK.dsack_round (RFC 8985 §6.2 step 4).
    reo_wnd_mult: u32,
    reo_wnd_persist: u32,
    dsack_round: Option<SeqNumber>,
}

impl SegmentLog {
    /// An empty log whose first segment will start at `first`.
    pub(super) fn new(first: SeqNumber) -> SegmentLog {
        SegmentLog {
            records: VecDeque::new(),
            start: first,
            start_ext: 0,
            lost_bytes: 0,
            rtx_bytes: 0,
            sacked_records: 0,
            to_retransmit: BinaryHeap::new(),
            retransmissions: VecDeque::new(),
            next_serial: 0,
            original_scan: first,
            marked_upto: first,
            rack: None,
            rack_rtt: Duration::ZERO,
            fack: first,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            dsack_round: None,
        }
    }

    // ---- Positions. ----

    /// Offset of `seq` from `start`, for sequence numbers within the log (or just past it).
    fn offset(&self, seq: SeqNumber) -> u32 {
        seq.0.wrapping_sub(self.start.0)
    }

    /// The index of the record holding `seq` (the first that ends after it), or `len` if none.
    fn index_of(&self, seq: SeqNumber) -> usize {
        let target = self.offset(seq);
        self.records.partition_point(|r| self.offset(r.end) <= target)
    }

    fn record_start(&self, i: usize) -> SeqNumber {
        if i == 0 {
            self.start
        } else {
            self.records[i - 1].end
        }
    }

    fn record_len(&self, i: usize) -> usize {
        self.records[i].end - self.record_start(i)
    }

    /// One past the last sequence number recorded.
    fn end(&self) -> SeqNumber {
        self.records.back().map_or(self.start, |r| r.end)
    }

    fn ext(&self, seq: SeqNumber) -> u64 {
        self.start_ext + u64::from(self.offset(seq))
    }

    // ---- Transmissions. ----

    /// A segment covering [`seq`, `seq + span`) left at `now`; `snd_max` is SND.MAX before it.
    /// What lies below SND.MAX is a retransmission, what lies above it new.
    pub(super) fn on_transmit(
        &mut self,
        seq: SeqNumber,
        span: usize,
        snd_max: SeqNumber,
        now: Instant,
    ) {
        if span == 0 {
            return;
        }
        let end = seq + span;
        let serial = self.next_serial;
        self.next_serial = serial.wrapping_add(1);
        if seq < snd_max {
            let from = seq.max(self.start);
            let to = if end < snd_max { end } else { snd_max };
            if from < to {
                self.on_retransmit(from, to, serial, now);
            }
        }
        if end > snd_max {
            self.append(snd_max.max(seq), end, serial, now);
        }
    }

    fn append(&mut self, from: SeqNumber, end: SeqNumber, serial: u32, now: Instant) {
        if self.records.is_empty() && from != self.start {
            // Nothing outstanding: the log restarts where the sender is.
            self.start_ext += u64::from(self.offset(from));
            self.start = from;
            self.original_scan = from;
            self.marked_upto = from;
        }
        if self.records.len() >= MAX_RECORDS {
            if let Some(last) = self.records.back_mut().filter(|r| r.flags == 0) {
                last.end = end;
                last.serial = serial;
                last.xmit = now;
                return;
            }
        }
        self.records.push_back(Record { end, serial, xmit: now, flags: 0 });
    }

    fn on_retransmit(&mut self, from: SeqNumber, to: SeqNumber, serial: u32, now: Instant) {
        self.split_at(from);
        self.split_at(to);
        let mut i = self.index_of(from);
        while i < self.records.len() && self.record_start(i) < to {
            let len = self.record_len(i);
            let record = &mut self.records[i];
            record.serial = serial;
            record.xmit = now;
            record.flags |= RETRANSMITTED;
            if record.flags & (SACKED | RTX_IN_FLIGHT) == 0 {
                record.flags |= RTX_IN_FLIGHT;
                self.rtx_bytes += len;
            }
            i += 1;
        }
        // Entries at the front that no longer watch anything go now, so that the queue stays
        // short even when RACK has nothing to compare with (repeated zero-window probes).
        while let Some(&(from, to, serial, _)) = self.retransmissions.front() {
            let (first, last) = self.retransmission_in_flight(from, to, serial);
            if first != last {
                break;
            }
            self.retransmissions.pop_front();
        }
        self.retransmissions.push_back((from, to, serial, now));
    }

    /// Makes `seq` a record boundary (if it lies inside a record).
    fn split_at(&mut self, seq: SeqNumber) {
        if seq <= self.start || seq >= self.end() {
            return;
        }
        let i = self.index_of(seq);
        if self.record_start(i) == seq {
            return;
        }
        let mut first = self.records[i];
        first.end = seq;
        self.records.insert(i, first);
        if first.flags & SACKED != 0 {
            self.sacked_records += 1;
        }
        if Self::waits_for_retransmission(first.flags) {
            // The heap holds the first part's start; the second part needs its own entry.
            self.to_retransmit.push(Reverse(self.ext(seq)));
        }
    }

    fn waits_for_retransmission(flags: u8) -> bool {
        flags & (SACKED | LOST | RTX_IN_FLIGHT) == LOST
    }

    // ---- Acknowledgments. ----

    /// SND.UNA moved to `ack`: the records below it are delivered.
    pub(super) fn on_cumulative_ack(&mut self, ack: SeqNumber, timing: &AckTiming) {
        if ack <= self.start {
            return;
        }
        let mut start = self.start;
        while let Some(&front) = self.records.front() {
            if front.end > ack {
                break;
            }
            self.records.pop_front();
            if front.flags == 0 {
                // The usual record: sent once, in flight, now delivered.
                self.deliver_original(front, timing);
            } else if front.flags & SACKED == 0 {
                self.uncount(front.flags, front.end - start);
                self.delivered(front, timing);
            } else {
                self.sacked_records -= 1;
            }
            start = front.end;
        }
        self.start_ext += u64::from(start.0.wrapping_sub(self.start.0));
        self.start = start;
        let cut = ack - self.start.min(ack);
        if cut > 0 {
            if let Some(front) = self.records.front() {
                if front.flags & SACKED == 0 {
                    let flags = front.flags;
                    self.uncount(flags, cut);
                }
            }
            self.start_ext += cut as u64;
            self.start = ack;
        }
        self.original_scan = self.original_scan.max(self.start);
        self.marked_upto = self.marked_upto.max(self.start);
        self.fack = self.fack.max(self.start);
    }

    /// The scoreboard SACKed `pieces` (ranges not SACKed before) with this ACK: records now
    /// wholly SACKed are delivered.
    pub(super) fn on_sacked(
        &mut self,
        pieces: &[(SeqNumber, SeqNumber)],
        scoreboard: &Scoreboard,
        timing: &AckTiming,
    ) {
        for &(left, right) in pieces {
            let left = left.max(self.start);
            let mut i = self.index_of(left);
            while i < self.records.len() && self.record_start(i) < right {
                let start = self.record_start(i);
                let record = self.records[i];
                if record.flags & SACKED == 0 && scoreboard.is_range_sacked(start, record.end) {
                    self.uncount(record.flags, record.end - start);
                    self.records[i].flags |= SACKED;
                    self.sacked_records += 1;
                    self.delivered(record, timing);
                }
                i += 1;
            }
        }
    }

    /// Removes an unSACKed record's bytes from the lost and retransmitted counts.
    fn uncount(&mut self, flags: u8, len: usize) {
        if flags & LOST != 0 {
            self.lost_bytes -= len;
        }
        if flags & RTX_IN_FLIGHT != 0 {
            self.rtx_bytes -= len;
        }
    }

    /// `delivered` for a segment sent once and not SACKed, the common case, without the
    /// retransmission checks.
    fn deliver_original(&mut self, record: Record, timing: &AckTiming) {
        if record.end > self.fack {
            self.fack = record.end;
        } else if record.end < self.fack {
            self.reordering_seen = true;
        }
        if self.rack.is_none_or(|rack| sent_after(record.serial, rack)) {
            self.rack = Some(record.serial);
            self.rack_rtt = timing.now - record.xmit;
        }
    }

    /// RFC 8985 §6.2 steps 2 and 3 for one newly delivered segment: RACK_update and
    /// RACK_detect_reordering.
    fn delivered(&mut self, record: Record, timing: &AckTiming) {
        let retransmitted = record.flags & RETRANSMITTED != 0;
        if record.end > self.fack {
            self.fack = record.end;
        } else if record.end < self.fack && !retransmitted {
            self.reordering_seen = true;
        }
        if retransmitted {
            // Which transmission arrived is ambiguous: the timestamp echo says when it is older
            // than the last one, and an RTT below the minimum can only be the original's.
            if timing.tsecr.is_some_and(|tsecr| ts_before(tsecr, timing.tsval(record.xmit))) {
                return;
            }
            if timing.now - record.xmit < timing.min_rtt {
                return;
            }
        }
        if self.rack.is_none_or(|rack| sent_after(record.serial, rack)) {
            self.rack = Some(record.serial);
            self.rack_rtt = timing.now - record.xmit;
        }
    }

    // ---- Loss detection. ----

    /// Deems the record at `i` lost (again, if its retransmission was in flight). False if it
    /// already waits for retransmission or is SACKed.
    fn mark_lost(&mut self, i: usize) -> bool {
        let flags = self.records[i].flags;
        if flags & SACKED != 0 || Self::waits_for_retransmission(flags) {
            return false;
        }
        let len = self.record_len(i);
        if flags & LOST == 0 {
            self.lost_bytes += len;
        }
        if flags & RTX_IN_FLIGHT != 0 {
            self.rtx_bytes -= len;
        }
        self.records[i].flags = (flags | LOST) & !RTX_IN_FLIGHT;
        let start = self.record_start(i);
        self.to_retransmit.push(Reverse(self.ext(start)));
        true
    }

    /// A recovery episode begins: RFC 6675 marking starts over from SND.UNA.
    pub(super) fn start_recovery(&mut self) {
        self.marked_upto = self.start;
    }

    /// RFC 6675 §5 step 4: the first segment is lost (DupThresh duplicate ACKs said so).
    pub(super) fn mark_first_lost(&mut self) {
        if !self.records.is_empty() && self.records[0].flags & LOST == 0 {
            self.mark_lost(0);
        }
    }

    /// RFC 6675 IsLost: every unSACKed segment below `boundary` (the scoreboard's loss
    /// boundary) is lost. Segments already deemed lost keep their state (their retransmission
    /// may be in flight). Amortised O(1): the boundary only moves up within an episode.
    pub(super) fn mark_lost_below(&mut self, boundary: SeqNumber) {
        let from = self.marked_upto.max(self.start);
        if boundary <= from {
            return;
        }
        let mut i = self.index_of(from);
        while i < self.records.len() && self.record_start(i) < boundary {
            if self.records[i].flags & LOST == 0 {
                self.mark_lost(i);
            }
            i += 1;
        }
        self.marked_upto = boundary;
    }

    /// RFC 8985 §6.2 step 4, RACK_update_reo_wnd's D-SACK part, for every ACK: `dsack` says
    /// whether this one carried a D-SACK.
    pub(super) fn update_dsack_round(
        &mut self,
        dsack: bool,
        snd_una: SeqNumber,
        snd_nxt: SeqNumber,
    ) {
        if self.dsack_round.is_some_and(|round| snd_una >= round) {
            self.dsack_round = None;
        }
        if dsack && self.dsack_round.is_none() {
            // A spurious retransmission: reordering beyond the window. Widen it, once a round.
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult = (self.reo_wnd_mult + 1).min(MAX_REO_WND_MULT);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
    }

    /// A recovery episode (fast or timeout) ended: the widened reordering window decays after
    /// enough of them without D-SACK.
    pub(super) fn on_recovery_exit(&mut self) {
        if self.reo_wnd_persist > 0 {
            self.reo_wnd_persist -= 1;
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
            }
        }
    }

    /// RFC 8985 §6.2 step 4: the reordering window. Zero until reordering is seen, in recovery
    /// or once DupThresh segments are SACKed (RACK then behaves like DupThresh); otherwise a
    /// quarter of the minimum RTT (times the D-SACK multiplier), at most SRTT.
    pub(super) fn reo_wnd(
        &self,
        in_recovery: bool,
        srtt: Option<Duration>,
        min_rtt: Duration,
    ) -> Duration {
        if !self.reordering_seen && (in_recovery || self.sacked_records >= DUP_THRESH) {
            return Duration::ZERO;
        }
        let window = min_rtt * self.reo_wnd_mult / 4;
        srtt.map_or(window, |srtt| window.min(srtt))
    }

    /// RFC 8985 §6.2 step 5, RACK_detect_loss: every segment sent before the most recently sent
    /// delivered one, and sent longer ago than RACK.rtt + the reordering window (`reo_wnd`,
    /// asked only when some segment was sent before), is lost. Returns whether any segment was
    /// deemed lost, and when the next segment sent before RACK's will be (for the reordering
    /// timer).
    ///
    /// The RFC arms the timer for the latest such segment; this arms it for the earliest,
    /// which marks each segment as soon as its own window expires at the price of more timer
    /// events. Walks only segments that are lost now, plus the first that is not yet.
    pub(super) fn detect_losses(
        &mut self,
        now: Instant,
        reo_wnd: impl FnOnce(&Self) -> Duration,
    ) -> (bool, Option<Instant>) {
        let Some(rack) = self.rack else {
            return (false, None);
        };
        let mut reo_wnd = Some(reo_wnd);
        let mut threshold = Duration::ZERO;
        let mut threshold = move |log: &Self| {
            if let Some(reo_wnd) = reo_wnd.take() {
                threshold = log.rack_rtt + reo_wnd(log);
            }
            threshold
        };
        let mut newly_lost = false;
        let mut timer: Option<Instant> = None;

        // Segments never retransmitted: in sequence order, which is their time order.
        let mut i = if self.original_scan <= self.start {
            0 // the usual case, without a search
        } else {
            self.index_of(self.original_scan)
        };
        while i < self.records.len() {
            let record = self.records[i];
            if record.flags & (SACKED | LOST | RETRANSMITTED) == 0 {
                if !sent_after(rack, record.serial) {
                    break;
                }
                let deadline = record.xmit + threshold(self);
                if deadline > now {
                    timer = Some(deadline);
                    break;
                }
                newly_lost |= self.mark_lost(i);
            }
            self.original_scan = record.end;
            i += 1;
        }

        // Retransmissions, in the order they were sent.
        while let Some(&(from, to, serial, xmit)) = self.retransmissions.front() {
            let (first, last) = self.retransmission_in_flight(from, to, serial);
            if first == last {
                self.retransmissions.pop_front();
                continue;
            }
            if !sent_after(rack, serial) {
                break;
            }
            let deadline = xmit + threshold(self);
            if deadline > now {
                timer = Some(timer.map_or(deadline, |t| t.min(deadline)));
                break;
            }
            for i in first..last {
                if self.records[i].serial == serial {
                    newly_lost |= self.mark_lost(i);
                }
            }
            self.retransmissions.pop_front();
        }
        (newly_lost, timer)
    }

    /// The records a queued retransmission covers whose latest transmission it still is and
    /// which are still in flight: their index range (empty if none).
    fn retransmission_in_flight(
        &self,
        from: SeqNumber,
        to: SeqNumber,
        serial: u32,
    ) -> (usize, usize) {
        if to <= self.start {
            return (0, 0);
        }
        let mut i = self.index_of(from.max(self.start));
        let (mut first, mut last) = (usize::MAX, 0);
        while i < self.records.len() && self.record_start(i) < to {
            let record = self.records[i];
            if record.serial == serial && record.flags & (SACKED | RTX_IN_FLIGHT) == RTX_IN_FLIGHT {
                first = first.min(i);
                last = i + 1;
            }
            i += 1;
        }
        if last == 0 {
            (0, 0)
        } else {
            (first, last)
        }
    }

    // ---- Recovery. ----

    /// NextSeg (RFC 6675 §4 rule 1, with RACK's verdicts): the lowest segment deemed lost and
    /// not retransmitted since, as (start, length ≤ `mss`).
    pub(super) fn next_to_retransmit(&mut self, mss: usize) -> Option<(SeqNumber, usize)> {
        if self.lost_bytes == 0 {
            // A record waiting for retransmission is lost and unSACKed: it would count here.
            // Whatever the heap still holds is stale.
            self.to_retransmit.clear();
            return None;
        }
        while let Some(&Reverse(key)) = self.to_retransmit.peek() {
            // Keys below the start belong to records acknowledged since, or to the front
            // record, cut by a partial acknowledgment: look at the front.
            let seq = if key < self.start_ext {
                self.start
            } else {
                match u32::try_from(key - self.start_ext) {
                    Ok(offset) => self.start + offset as usize,
                    Err(_) => self.end(),
                }
            };
            let i = self.index_of(seq);
            if i < self.records.len() && Self::waits_for_retransmission(self.records[i].flags) {
                let start = self.record_start(i);
                return Some((start, (self.records[i].end - start).min(mss)));
            }
            self.to_retransmit.pop();
        }
        None
    }

    /// Whether retransmissions may be in flight (some are queued for RACK to watch).
    pub(super) fn retransmissions_in_flight(&self) -> bool {
        !self.retransmissions.is_empty()
    }

    /// Whether any segment waits for retransmission.
    pub(super) fn has_lost(&mut self) -> bool {
        self.next_to_retransmit(usize::MAX).is_some()
    }

    /// RFC 6675 SetPipe from the per-segment state: `unsacked` bytes outstanding, less those
    /// deemed lost, plus those retransmitted since (or, never deemed lost, retransmitted at
    /// all: counted twice, as RFC 6675 counts a retransmission above HighRxt's lost octets).
    pub(super) fn pipe(&self, unsacked: usize) -> usize {
        (unsacked + self.rtx_bytes).saturating_sub(self.lost_bytes)
    }

    /// The start of the last segment sent, at most `mss` before its end (what a tail loss
    /// probe retransmits, RFC 8985 §7.3), if anything is outstanding.
    pub(super) fn last_segment(&self, mss: usize) -> Option<SeqNumber> {
        let last = self.records.len().checked_sub(1)?;
        let end = self.records[last].end;
        let from = end - (end - self.record_start(last)).min(mss);
        Some(from)
    }

    /// The retransmission timer fired: everything outstanding is deemed lost (RFC 8985 §6.3;
    /// after a whole RTO every segment is older than RACK.rtt + the reordering window), and
    /// the SACK marks are forgotten with the scoreboard (the receiver may have reneged).
    pub(super) fn on_timeout(&mut self) {
        self.to_retransmit.clear();
        self.retransmissions.clear();
        let mut start = self.start;
        for record in &mut self.records {
            record.flags = (record.flags & RETRANSMITTED) | LOST;
            self.to_retransmit
                .push(Reverse(self.start_ext + u64::from(start.0.wrapping_sub(self.start.0))));
            start = record.end;
        }
        self.lost_bytes = self.end() - self.start;
        self.rtx_bytes = 0;
        self.sacked_records = 0;
        self.original_scan = self.end();
        self.marked_upto = self.end();
        // What was SACKed counts as undelivered now: its later acknowledgment is no reordering.
        self.fack = self.start;
    }

    /// The last timeout was spurious (the originals arrived): nothing outstanding is deemed
    /// lost any more. (Segments retransmitted meanwhile leave RACK's sight until acknowledged:
    /// which of their copies is in flight is unknown.)
    pub(super) fn forget_losses(&mut self) {
        for record in &mut self.records {
            record.flags &= !(LOST | RTX_IN_FLIGHT);
        }
        self.lost_bytes = 0;
        self.rtx_bytes = 0;
        self.to_retransmit.clear();
        self.retransmissions.clear();
        self.original_scan = self.start;
        self.marked_upto = self.start;
    }

    /// Checks the incremental state against a recount (for tests): the log spans exactly
    /// [`snd_una`, `snd_max`), a record is flagged SACKED exactly when the scoreboard holds all
    /// of it, and the byte counts add up.
    #[cfg(test)]
    pub(super) fn check(&self, scoreboard: &Scoreboard, snd_una: SeqNumber, snd_max: SeqNumber) {
        if self.records.is_empty() {
            return;
        }
        assert_eq!((self.start, self.end()), (snd_una, snd_max), "the log spans the flight");
        let (mut lost, mut rtx, mut sacked) = (0, 0, 0);
        for i in 0..self.records.len() {
            let (start, record) = (self.record_start(i), self.records[i]);
            assert!(start < record.end, "empty record {i}");
            let flagged = record.flags & SACKED != 0;
            assert_eq!(flagged, scoreboard.is_range_sacked(start, record.end), "record {i}");
            if flagged {
                sacked += 1;
                continue;
            }
            if record.flags & LOST != 0 {
                lost += record.end - start;
            }
            if record.flags & RTX_IN_FLIGHT != 0 {
                rtx += record.end - start;
            }
        }
        assert_eq!(
            (lost, rtx, sacked),
            (self.lost_bytes, self.rtx_bytes, self.sacked_records),
            "incremental counts"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SackBlock;

    /// Segments are 100 bytes; sequence numbers start just below the wrap point.
    const BASE: u32 = u32::MAX - 350;
    const LEN: usize = 100;

    fn seq(segment: usize) -> SeqNumber {
        SeqNumber(BASE) + segment * LEN
    }

    fn at(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    fn timing(now: Instant) -> AckTiming {
        AckTiming { now, tsecr: None, ts_offset: 0, min_rtt: Duration::from_millis(10) }
    }

    /// A sender's view: the log, the scoreboard, SND.UNA and SND.MAX.
    struct Sender {
        log: SegmentLog,
        board: Scoreboard,
        una: SeqNumber,
        max: SeqNumber,
    }

    impl Sender {
        fn new() -> Sender {
            Sender {
                log: SegmentLog::new(seq(0)),
                board: Scoreboard::new(),
                una: seq(0),
                max: seq(0),
            }
        }

        /// Sends `count` new segments at `now`.
        fn send_new(&mut self, count: usize, now: Instant) {
            for _ in 0..count {
                self.log.on_transmit(self.max, LEN, self.max, now);
                self.max += LEN;
            }
        }

        fn retransmit(&mut self, from: SeqNumber, len: usize, now: Instant) {
            self.log.on_transmit(from, len, self.max, now);
        }

        /// An ACK up to segment `upto` SACKing segment ranges `blocks`, at `now`.
        fn ack(&mut self, upto: usize, blocks: &[(usize, usize)], now: Instant) {
            let timing = timing(now);
            if seq(upto) > self.una {
                self.una = seq(upto);
                self.log.on_cumulative_ack(self.una, &timing);
            }
            let blocks: Vec<SackBlock> =
                blocks.iter().map(|&(l, r)| SackBlock { left: seq(l), right: seq(r) }).collect();
            let mut pieces = Vec::new();
            self.board.update_with(self.una, self.max, &blocks, |l, r| pieces.push((l, r)));
            self.log.on_sacked(&pieces, &self.board, &timing);
            self.check();
        }

        fn pipe(&self) -> usize {
            self.log.pipe((self.max - self.una) - self.board.sacked_bytes())
        }

        fn next(&mut self) -> Option<usize> {
            self.log.next_to_retransmit(LEN).map(|(s, len)| {
                assert_eq!(len, LEN);
                (s - seq(0)) / LEN
            })
        }

        fn check(&self) {
            self.log.check(&self.board, self.una, self.max);
        }
    }

    #[test]
    fn pipe_counts_what_is_in_the_network() {
        let mut s = Sender::new();
        s.send_new(10, at(0));
        assert_eq!(s.pipe(), 10 * LEN);
        // Segments 0 and 2 missing, 1 and 3..6 SACKed.
        s.ack(0, &[(1, 2), (3, 6)], at(10));
        assert_eq!(s.pipe(), 6 * LEN);
        // RFC 6675 IsLost below the loss boundary: 0 and 2.
        s.log.start_recovery();
        s.log.mark_lost_below(s.board.loss_boundary(LEN).unwrap());
        s.check();
        assert_eq!(s.pipe(), 4 * LEN);
        assert_eq!(s.next(), Some(0));
        s.retransmit(seq(0), LEN, at(10));
        assert_eq!((s.pipe(), s.next()), (5 * LEN, Some(2)));
        s.retransmit(seq(2), LEN, at(10));
        assert_eq!((s.pipe(), s.next()), (6 * LEN, None));
        // A segment retransmitted without being deemed lost counts twice (RFC 6675).
        s.retransmit(seq(9), LEN, at(10));
        assert_eq!(s.pipe(), 7 * LEN);
        s.check();
        // The retransmissions arrive: everything up to 6 is acknowledged.
        s.ack(6, &[], at(20));
        assert_eq!(s.pipe(), 5 * LEN);
        assert!(!s.log.has_lost());
    }

    #[test]
    fn a_segment_sent_before_a_delivered_one_is_lost_a_reordering_window_later() {
        let mut s = Sender::new();
        s.send_new(3, at(0));
        s.send_new(1, at(1));
        // Segment 3 (sent at 1 ms) arrives after 10 ms; 0..2 are missing.
        s.ack(0, &[(3, 4)], at(11));
        let reo = s.log.reo_wnd(false, Some(Duration::from_millis(10)), Duration::from_millis(10));
        assert_eq!(reo, Duration::from_micros(2500), "a quarter of the minimum RTT");
        // Sent 1 ms before it: lost once 10 ms + 2.5 ms have passed since they left.
        assert_eq!(
            s.log.detect_losses(at(11), |_| reo),
            (false, Some(Instant::from_micros(12_500)))
        );
        assert_eq!(s.next(), None);
        let (lost, timer) = s.log.detect_losses(Instant::from_micros(12_500), |_| reo);
        assert!(lost && timer.is_none());
        s.check();
        assert_eq!(s.next(), Some(0));
        assert_eq!(s.pipe(), 0);
    }

    #[test]
    fn without_reordering_dup_thresh_sacks_or_recovery_make_the_window_zero() {
        let mut s = Sender::new();
        s.send_new(5, at(0));
        let (srtt, min_rtt) = (Some(Duration::from_millis(10)), Duration::from_millis(10));
        s.ack(0, &[(1, 3)], at(10));
        assert_eq!(s.log.reo_wnd(false, srtt, min_rtt), Duration::from_micros(2500));
        assert_eq!(s.log.reo_wnd(true, srtt, min_rtt), Duration::ZERO);
        s.ack(0, &[(1, 4)], at(10));
        assert_eq!(s.log.reo_wnd(false, srtt, min_rtt), Duration::ZERO);
        // Segment 0 arriving after later ones is reordering: the window is back for good.
        s.ack(4, &[], at(10));
        assert_eq!(s.log.reo_wnd(true, srtt, min_rtt), Duration::from_micros(2500));
        // At most SRTT.
        assert_eq!(
            s.log.reo_wnd(true, Some(Duration::from_millis(1)), min_rtt),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn a_lost_retransmission_is_found_by_data_sent_after_it() {
        let mut s = Sender::new();
        s.send_new(5, at(0));
        s.ack(0, &[(1, 5)], at(10));
        s.log.start_recovery();
        s.log.mark_first_lost();
        s.retransmit(seq(0), LEN, at(10));
        s.send_new(2, at(10));
        // New data sent after the retransmission arrives; the retransmission does not.
        s.ack(0, &[(1, 7)], at(20));
        assert_eq!(s.next(), None);
        let (lost, timer) = s.log.detect_losses(at(20), |_| Duration::ZERO);
        assert!(lost && timer.is_none());
        assert_eq!(s.next(), Some(0), "retransmitted again");
        s.check();
    }

    /// The caller's clock is the same for a whole `dispatch` round: a retransmission and the
    /// new data sent after it in the same round share their time, and only the transmission
    /// order tells that the retransmission was not sent after the data.
    #[test]
    fn a_retransmission_is_not_lost_because_data_sent_after_it_in_the_same_round_arrived() {
        let mut s = Sender::new();
        s.send_new(5, at(0));
        s.ack(0, &[(1, 5)], at(10));
        s.log.start_recovery();
        s.log.mark_first_lost();
        s.retransmit(seq(0), LEN, at(10));
        s.send_new(1, at(10));
        // Data sent before the retransmission (segment 4) arrives at the same instant: nothing.
        s.ack(0, &[(1, 5)], at(10));
        assert_eq!(s.log.detect_losses(at(10), |_| Duration::ZERO), (false, None));
        // The new segment arrives 10 ms later: the retransmission, sent before it, is late.
        s.ack(0, &[(1, 6)], at(20));
        assert!(s.log.detect_losses(at(20), |_| Duration::ZERO).0);
        assert_eq!(s.next(), Some(0));
        // ...but had it been sent after, it would be in time.
        let mut s = Sender::new();
        s.send_new(5, at(0));
        s.ack(0, &[(1, 5)], at(10));
        s.log.start_recovery();
        s.log.mark_first_lost();
        s.send_new(1, at(10));
        s.retransmit(seq(0), LEN, at(10));
        s.ack(0, &[(1, 6)], at(20));
        assert_eq!(s.log.detect_losses(at(20), |_| Duration::ZERO), (false, None));
    }

    #[test]
    fn timestamps_tell_which_transmission_an_ack_answers() {
        let mut s = Sender::new();
        s.send_new(2, at(0));
        s.log.start_recovery();
        s.log.mark_first_lost();
        s.retransmit(seq(0), LEN, at(5));
        s.send_new(1, at(6));
        // An ACK of segment 0 echoing the original's TSval (0 ms): it says nothing about when
        // the retransmission arrived, so RACK keeps its state.
        let mut timing = timing(at(10));
        timing.tsecr = Some(0);
        s.log.on_cumulative_ack(seq(1), &timing);
        s.una = seq(1);
        assert_eq!(s.log.rack, None);
        // Echoing the retransmission's (5 ms): a sample, RACK.rtt 5 ms.
        let mut s2 = Sender::new();
        s2.send_new(2, at(0));
        s2.retransmit(seq(0), LEN, at(5));
        timing.tsecr = Some(5);
        timing.min_rtt = Duration::from_millis(1);
        s2.log.on_cumulative_ack(seq(1), &timing);
        assert_eq!(s2.log.rack_rtt, Duration::from_millis(5));
        // Without timestamps, an RTT below the minimum can only be the original's.
        let mut s3 = Sender::new();
        s3.send_new(2, at(0));
        s3.retransmit(seq(0), LEN, at(5));
        let min_rtt = Duration::from_millis(10);
        s3.log.on_cumulative_ack(seq(1), &AckTiming { tsecr: None, min_rtt, ..timing });
        assert_eq!(s3.log.rack, None, "5 ms < min_rtt 10 ms");
    }

    #[test]
    fn dsack_widens_the_reordering_window_until_sixteen_recoveries_pass() {
        let mut s = Sender::new();
        s.send_new(4, at(0));
        s.ack(1, &[], at(10));
        s.ack(1, &[(3, 4)], at(10));
        s.ack(4, &[], at(10)); // reordering seen
        s.send_new(2, at(10));
        let min_rtt = Duration::from_millis(40);
        assert_eq!(s.log.reo_wnd(false, None, min_rtt), Duration::from_millis(10));
        s.log.update_dsack_round(true, s.una, s.max);
        assert_eq!(s.log.reo_wnd(false, None, min_rtt), Duration::from_millis(20));
        // Once per round trip: a second D-SACK before SND.UNA passes the round's end counts
        // nothing.
        s.log.update_dsack_round(true, s.una, s.max);
        assert_eq!(s.log.reo_wnd(false, None, min_rtt), Duration::from_millis(20));
        s.log.update_dsack_round(true, seq(6), s.max);
        assert_eq!(s.log.reo_wnd(false, None, min_rtt), Duration::from_millis(30));
        for _ in 0..15 {
            s.log.on_recovery_exit();
        }
        assert_eq!(s.log.reo_wnd(false, None, min_rtt), Duration::from_millis(30));
        s.log.on_recovery_exit();
        assert_eq!(s.log.reo_wnd(false, None, min_rtt), Duration::from_millis(10));
    }

    #[test]
    fn retransmissions_in_other_sizes_split_records_at_their_edges() {
        let mut s = Sender::new();
        s.send_new(4, at(0));
        s.log.on_timeout();
        s.check();
        assert_eq!(s.pipe(), 0);
        // Resent in 150-byte pieces: every piece's edge becomes a record edge.
        s.retransmit(seq(0), 150, at(300));
        s.retransmit(seq(0) + 150, 150, at(300));
        s.check();
        assert_eq!(s.log.records.len(), 5, "0..100 split at 150");
        assert_eq!(s.pipe(), 300);
        // The rest waits, from where the second piece ended.
        assert_eq!(s.log.next_to_retransmit(LEN), Some((seq(3), LEN)));
        // The receiver SACKs the second piece: its records (150..200, 200..300) are delivered.
        let timing = timing(at(310));
        let mut pieces = Vec::new();
        let blocks = [SackBlock { left: seq(0) + 150, right: seq(3) }];
        s.board.update_with(s.una, s.max, &blocks, |l, r| pieces.push((l, r)));
        s.log.on_sacked(&pieces, &s.board, &timing);
        s.check();
        assert_eq!(s.log.sacked_records, 2);
        // A partial cumulative ACK cuts the first record.
        s.una = seq(0) + 50;
        s.log.on_cumulative_ack(s.una, &timing);
        s.check();
        assert_eq!(s.pipe(), 100, "the rest of the first piece");
    }

    #[test]
    fn repeated_retransmissions_of_one_segment_keep_one_queue_entry() {
        let mut s = Sender::new();
        s.send_new(1, at(0));
        for i in 1..100 {
            s.retransmit(seq(0), 1, at(i * 1000));
        }
        assert_eq!(s.log.retransmissions.len(), 1);
        s.check();
    }

    /// SplitMix64 for the model test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn upto(&mut self, max: usize) -> usize {
            (self.next() % (max as u64 + 1)) as usize
        }
    }

    /// Random sends, retransmissions of odd sizes, SACKs, cumulative ACKs, loss marking,
    /// detection and timeouts: after each, the incremental state matches a recount, and NextSeg
    /// returns the lowest record that waits for retransmission, found by a scan.
    #[test]
    fn random_operations_keep_the_log_consistent() {
        let mut rng = Rng(0x2ac4);
        let mut found = 0;
        for _ in 0..40 {
            let mut s = Sender::new();
            let mut now = 0;
            for _ in 0..300 {
                now += rng.upto(3) as u64;
                let outstanding = (s.max - s.una) / LEN;
                match rng.upto(9) {
                    0 | 1 => s.send_new(1 + rng.upto(4), at(now)),
                    2 | 3 if outstanding > 0 => {
                        let first = (s.una - seq(0)) / LEN;
                        let l = first + rng.upto(outstanding);
                        let r = l + rng.upto(3);
                        let upto =
                            first + rng.upto(outstanding.min(2)) * usize::from(rng.upto(3) == 0);
                        s.ack(upto, &[(l, r)], at(now));
                    }
                    4 => {
                        s.log.start_recovery();
                        if let Some(boundary) = s.board.loss_boundary(LEN) {
                            s.log.mark_lost_below(boundary);
                        }
                    }
                    5 => {
                        let reo = Duration::from_millis(rng.upto(3) as u64);
                        s.log.detect_losses(at(now), |_| reo);
                    }
                    6 | 7 => {
                        let len = [LEN, 30, 170][rng.upto(2)];
                        if let Some((start, n)) = s.log.next_to_retransmit(len) {
                            s.retransmit(start, n, at(now));
                            found += 1;
                        }
                    }
                    8 if outstanding > 0 => {
                        // A retransmission at an odd offset (after a path-MTU change).
                        let from = s.una + rng.upto(outstanding * LEN - 1);
                        let len = 1 + rng.upto((s.max - from).min(2 * LEN) - 1);
                        s.retransmit(from, len, at(now));
                    }
                    9 if rng.upto(4) == 0 => {
                        s.log.on_timeout();
                        s.board.clear();
                    }
                    _ => {}
                }
                s.check();
                let expected = (0..s.log.records.len())
                    .find(|&i| SegmentLog::waits_for_retransmission(s.log.records[i].flags))
                    .map(|i| s.log.record_start(i));
                assert_eq!(s.log.next_to_retransmit(usize::MAX).map(|(start, _)| start), expected);
            }
        }
        assert!(found > 500, "{found}");
    }
}
