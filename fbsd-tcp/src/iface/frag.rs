//! IPv4 fragmentation on send and reassembly on receive (RFC 791, RFC 815), with a timeout and a
//! memory cap. Overlapping fragments drop the whole datagram, in the spirit of RFC 5722 (which
//! says so for IPv6): overlaps have no honest use and are a classic evasion and DoS vector.
//!
//! The one overlap tolerated is an exact duplicate (same offset, same bytes, same place in the
//! datagram) of a fragment already held: links and bridges do duplicate packets, and a duplicate
//! cannot change what the datagram says. It is ignored.
//!
//! Each fragment is kept as received, in a map ordered by offset, and copied once into the
//! datagram when the last hole fills: arrival order never costs more than O(log n) per fragment.
//! The memory cap charges every fragment its data plus a fixed bookkeeping cost, and every partial
//! datagram a fixed cost too, so that a flood of tiny fragments (or of one-byte datagrams with
//! distinct idents) is bounded by the cap like a flood of big ones.

use core::ops::Range;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};
use crate::wire::ipv4::HEADER_LEN;
use crate::wire::{IpProtocol, Ipv4Repr};

/// Why a fragment did not lead to a datagram. Each is a counted drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// The fragment overlaps data already held (other than as an exact duplicate): the whole
    /// datagram is discarded.
    #[error("overlapping fragment")]
    Overlap,
    /// The fragment is malformed on its own (empty; not the last one and not a multiple of 8
    /// bytes; ending beyond 65535 − 20; `payload_len` disagreeing with the payload): it alone is
    /// dropped. Or it contradicts the datagram's end as other fragments tell it (a second,
    /// different last fragment; data beyond the last fragment's end): the whole datagram is
    /// discarded, as nobody can tell which fragment lies.
    #[error("malformed fragment")]
    Malformed,
    /// The fragment cannot fit under the memory cap even with every other partial datagram
    /// evicted: it and the partial datagram it belongs to are dropped, since that datagram
    /// could never complete.
    #[error("reassembly memory exhausted")]
    MemoryExhausted,
    /// Too many disjoint pieces (runs of data with holes between them; 64 at most) in one
    /// datagram: the whole datagram is discarded.
    #[error("too many fragments")]
    TooManyFragments,
}

/// Most disjoint runs of data (pieces with holes between them) one partial datagram may hold.
/// Fragments arriving in order or in reverse order keep a single run however many there are;
/// only heavy reordering of a datagram split into more than this many fragments reaches it.
const MAX_PIECES: usize = 64;

/// What each held fragment costs against the memory cap on top of its data: its map node share,
/// its allocation, its bookkeeping.
const FRAGMENT_OVERHEAD: usize = 64;

/// What each partial datagram costs against the memory cap on top of its fragments: its table
/// entry, age index entry and first map node.
const DATAGRAM_OVERHEAD: usize = 512;

/// The largest reassembled payload: the total length field's maximum minus a header without
/// options.
const MAX_PAYLOAD: usize = 65535 - HEADER_LEN;

/// The largest offset the 13-bit fragment offset field (in units of 8 bytes) can carry.
const MAX_FRAG_OFFSET: usize = 0x1fff * 8;

/// Fragments of one datagram share these (RFC 791, "identification").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DatagramKey {
    src_addr: Ipv4Addr,
    dst_addr: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
}

impl DatagramKey {
    fn of(header: &Ipv4Repr) -> DatagramKey {
        DatagramKey {
            src_addr: header.src_addr,
            dst_addr: header.dst_addr,
            protocol: header.protocol,
            ident: header.ident,
        }
    }
}

/// The arrival of a partial datagram's first fragment, with a sequence number to order partials
/// that arrived at the same instant.
type Age = (Instant, u64);

/// A datagram whose fragments are still arriving.
#[derive(Debug)]
struct Partial {
    age: Age,
    /// The header of the fragment at offset 0, once it arrived.
    first_header: Option<Ipv4Repr>,
    /// The payload length, once the last fragment (MF clear) arrived.
    total_len: Option<usize>,
    /// Fragment data by offset; the ranges are disjoint.
    fragments: BTreeMap<usize, Vec<u8>>,
    /// Maximal contiguous runs among `fragments`.
    pieces: usize,
    data_len: usize,
    /// What this datagram costs against the memory cap.
    charge: usize,
}

/// Where a new fragment goes in a partial datagram.
enum Placement {
    /// An exact duplicate of a fragment held: nothing to do.
    Duplicate,
    /// New data; the partial will hold this many pieces once it is inserted.
    New { pieces: usize },
}

impl Partial {
    /// Checks a fragment against what is held: its end against the datagram's, its range
    /// against the held ranges.
    fn place(
        &self,
        start: usize,
        payload: &[u8],
        more_frags: bool,
    ) -> Result<Placement, ReassemblyError> {
        let end = start + payload.len();
        let held_end = self.fragments.last_key_value().map_or(0, |(at, data)| at + data.len());
        match (self.total_len, more_frags) {
            // More data after the datagram's end.
            (Some(total), true) if end >= total => return Err(ReassemblyError::Malformed),
            // A second last fragment with another end.
            (Some(total), false) if end != total => return Err(ReassemblyError::Malformed),
            // Held fragments, all with MF set, said there was data at or after this end.
            (None, false) if held_end >= end => return Err(ReassemblyError::Malformed),
            _ => {}
        }
        let mut touches_before = false;
        if let Some((&at, data)) = self.fragments.range(..=start).next_back() {
            if at == start && data.as_slice() == payload {
                return Ok(Placement::Duplicate);
            }
            if at + data.len() > start {
                return Err(ReassemblyError::Overlap);
            }
            touches_before = at + data.len() == start;
        }
        let mut touches_after = false;
        if let Some((&at, _)) = self.fragments.range(start + 1..).next() {
            if at < end {
                return Err(ReassemblyError::Overlap);
            }
            touches_after = at == end;
        }
        let pieces = self.pieces + 1 - usize::from(touches_before) - usize::from(touches_after);
        Ok(Placement::New { pieces })
    }

    /// The datagram, if every byte from 0 to the end arrived.
    fn complete(&mut self) -> Option<(Ipv4Repr, Vec<u8>)> {
        let total = self.total_len?;
        let first = self.first_header?;
        if self.data_len != total {
            return None;
        }
        let mut fragments = core::mem::take(&mut self.fragments).into_values();
        let mut payload = fragments.next().unwrap_or_default();
        payload.reserve_exact(total - payload.len());
        for data in fragments {
            payload.extend_from_slice(&data);
        }
        let header = Ipv4Repr { more_frags: false, frag_offset: 0, payload_len: total, ..first };
        Some((header, payload))
    }
}

/// Partial datagrams being reassembled.
#[derive(Debug)]
pub struct Reassembler {
    timeout: Duration,
    max_bytes: usize,
    partials: HashMap<DatagramKey, Partial>,
    /// Every partial by age, oldest first: timeout and eviction order.
    by_age: BTreeMap<Age, DatagramKey>,
    next_seq: u64,
    /// Sum of the partials' charges.
    charged: usize,
    /// Partials `add` found past their timeout before `expire` ran, for `expire` to report.
    unreported_timeouts: usize,
    /// Partials evicted to make room, not yet taken by `take_evictions`.
    evictions: usize,
}

impl Reassembler {
    /// Keeps partial datagrams at most `timeout` (RFC 791 suggests 15 s; Linux uses 30 s) and at
    /// most `max_bytes` of fragment data and bookkeeping in all (see
    /// [`held_bytes`](Self::held_bytes)).
    pub fn new(timeout: Duration, max_bytes: usize) -> Reassembler {
        Reassembler {
            timeout,
            max_bytes,
            partials: HashMap::new(),
            by_age: BTreeMap::new(),
            next_seq: 0,
            charged: 0,
            unreported_timeouts: 0,
            evictions: 0,
        }
    }

    /// Adds a fragment (`header.is_fragment()` must be true; `payload` is its data). Returns the
    /// whole datagram when this fragment completes it: the first fragment's header with the
    /// fragmentation fields cleared and `payload_len` set, and the payload.
    ///
    /// A header that is not a fragment is returned as is, as a datagram already whole. Room for
    /// a new fragment is made by evicting the oldest other partial datagrams (see
    /// [`take_evictions`](Self::take_evictions)).
    pub fn add(
        &mut self,
        now: Instant,
        header: &Ipv4Repr,
        payload: &[u8],
    ) -> Result<Option<(Ipv4Repr, Vec<u8>)>, ReassemblyError> {
        if !header.is_fragment() {
            return Ok(Some((*header, payload.to_vec())));
        }
        let start = usize::from(header.frag_offset);
        let end = start + payload.len();
        if payload.is_empty()
            || header.payload_len != payload.len()
            || !start.is_multiple_of(8)
            || end > MAX_PAYLOAD
            || (header.more_frags && !payload.len().is_multiple_of(8))
        {
            return Err(ReassemblyError::Malformed);
        }
        let key = DatagramKey::of(header);
        // Past its timeout a partial is dead even if `expire` has not run yet: joining it could
        // splice two datagrams that happened to share an ident.
        if self.partials.get(&key).is_some_and(|partial| self.is_timed_out(partial, now)) {
            self.remove(key);
            self.unreported_timeouts += 1;
        }

        let cost = payload.len() + FRAGMENT_OVERHEAD;
        let (pieces, charge_after) = match self.partials.get(&key) {
            None => (1, DATAGRAM_OVERHEAD + cost),
            Some(partial) => match partial.place(start, payload, header.more_frags) {
                Ok(Placement::Duplicate) => return Ok(None),
                Ok(Placement::New { pieces }) if pieces > MAX_PIECES => {
                    self.remove(key);
                    return Err(ReassemblyError::TooManyFragments);
                }
                Ok(Placement::New { pieces }) => (pieces, partial.charge + cost),
                Err(error) => {
                    self.remove(key);
                    return Err(error);
                }
            },
        };
        if charge_after > self.max_bytes {
            self.remove(key);
            return Err(ReassemblyError::MemoryExhausted);
        }
        let charge_before = self.partials.get(&key).map_or(0, |partial| partial.charge);
        self.make_room(charge_after - charge_before, key);

        let (by_age, next_seq) = (&mut self.by_age, &mut self.next_seq);
        let partial = self.partials.entry(key).or_insert_with(|| {
            let age = (now, *next_seq);
            *next_seq += 1;
            by_age.insert(age, key);
            Partial {
                age,
                first_header: None,
                total_len: None,
                fragments: BTreeMap::new(),
                pieces: 0,
                data_len: 0,
                charge: 0,
            }
        });
        partial.fragments.insert(start, payload.to_vec());
        partial.pieces = pieces;
        partial.data_len += payload.len();
        self.charged += charge_after - partial.charge;
        partial.charge = charge_after;
        if start == 0 {
            partial.first_header = Some(*header);
        }
        if !header.more_frags {
            partial.total_len = Some(end);
        }
        let Some(datagram) = partial.complete() else { return Ok(None) };
        self.remove(key);
        Ok(Some(datagram))
    }

    /// Drops partial datagrams older than the timeout; returns how many.
    ///
    /// A partial times out `timeout` after its first fragment (in arrival order) arrived,
    /// whatever arrived since (RFC 791's timer is not restarted by later fragments).
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = core::mem::take(&mut self.unreported_timeouts);
        while let Some((&(arrived, _), &key)) = self.by_age.first_key_value() {
            if now < arrived + self.timeout {
                break;
            }
            self.remove(key);
            expired += 1;
        }
        expired
    }

    /// When the oldest partial datagram times out (already past if `add` found one timed out
    /// that `expire` has not reported yet).
    pub fn poll_at(&self) -> Option<Instant> {
        if self.unreported_timeouts > 0 {
            return Some(Instant::ZERO);
        }
        self.by_age.first_key_value().map(|(&(arrived, _), _)| arrived + self.timeout)
    }

    /// Bytes charged against the memory cap: fragment data, plus 64 per fragment and 512 per
    /// partial datagram for bookkeeping.
    pub fn held_bytes(&self) -> usize {
        self.charged
    }

    /// Partial datagrams evicted to make room for newer fragments since the last call. Each is a
    /// reassembly failure the caller counts.
    pub fn take_evictions(&mut self) -> usize {
        core::mem::take(&mut self.evictions)
    }

    /// Partial datagrams held.
    pub fn len(&self) -> usize {
        self.partials.len()
    }

    /// True if no partial datagram is held.
    pub fn is_empty(&self) -> bool {
        self.partials.is_empty()
    }

    fn is_timed_out(&self, partial: &Partial, now: Instant) -> bool {
        now >= partial.age.0 + self.timeout
    }

    /// Evicts the oldest partials other than `keep` until `extra` more bytes fit under the cap.
    /// The caller checked that `keep`'s own charge plus `extra` fits.
    fn make_room(&mut self, extra: usize, keep: DatagramKey) {
        while self.charged + extra > self.max_bytes {
            let Some(victim) = self.by_age.values().copied().find(|key| *key != keep) else {
                return;
            };
            self.remove(victim);
            self.evictions += 1;
        }
    }

    fn remove(&mut self, key: DatagramKey) {
        if let Some(partial) = self.partials.remove(&key) {
            self.by_age.remove(&partial.age);
            self.charged -= partial.charge;
        }
    }
}

/// Splits a datagram of `payload_len` bytes for a link of `mtu` bytes: each item is the header of
/// one fragment (ident, MF and offset set; `payload_len` set) and the byte range of the payload it
/// carries. Fragment payloads are multiples of 8 bytes except the last. A datagram that fits is
/// one item equal to `header`.
///
/// Re-fragmenting a fragment works: offsets are relative to `header.frag_offset`, and the last
/// piece keeps `header.more_frags`. `dont_frag` is copied, not obeyed: checking it (and answering
/// with ICMP "fragmentation needed" or EMSGSIZE) is the caller's decision, taken before calling
/// this. An `mtu` too small for a header and 8 bytes of payload yields nothing, as does a piece
/// whose offset the 13-bit field cannot carry (from a `header` already claiming more than 65535
/// bytes).
pub fn fragments(
    header: &Ipv4Repr,
    mtu: usize,
) -> impl Iterator<Item = (Ipv4Repr, Range<usize>)> + '_ {
    let room = mtu.saturating_sub(HEADER_LEN);
    let whole = header.payload_len <= room;
    Fragments { header: *header, piece_len: room & !7, whole, next_start: 0, done: false }
}

/// The iterator behind [`fragments`].
#[derive(Debug)]
struct Fragments {
    header: Ipv4Repr,
    /// Payload of every piece but the last.
    piece_len: usize,
    /// The datagram fits: one item, `header` itself.
    whole: bool,
    next_start: usize,
    done: bool,
}

impl Iterator for Fragments {
    type Item = (Ipv4Repr, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let total = self.header.payload_len;
        if self.done {
            return None;
        }
        if self.whole {
            self.done = true;
            return Some((self.header, 0..total));
        }
        let start = self.next_start;
        let offset = usize::from(self.header.frag_offset) + start;
        if self.piece_len == 0 || start >= total || offset > MAX_FRAG_OFFSET {
            self.done = true;
            return None;
        }
        let Ok(frag_offset) = u16::try_from(offset) else {
            self.done = true;
            return None;
        };
        let end = total.min(start + self.piece_len);
        self.next_start = end;
        let last = end == total;
        let header = Ipv4Repr {
            payload_len: end - start,
            frag_offset,
            more_frags: !last || self.header.more_frags,
            ..self.header
        };
        Some((header, start..end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const MTUS: [usize; 4] = [68, 576, 1500, 9000];
    const BIG_CAP: usize = 4 << 20;

    /// splitmix64: a seeded, deterministic source of test cases.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
        fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                items.swap(i, self.below(i + 1));
            }
        }
    }

    fn secs(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    fn header(ident: u16, payload_len: usize) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: SRC,
            dst_addr: DST,
            protocol: IpProtocol::Udp,
            payload_len,
            ttl: 64,
            tos: 0,
            ident,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// A fragment header for `len` bytes at `offset`.
    fn frag(ident: u16, offset: usize, len: usize, more_frags: bool) -> Ipv4Repr {
        Ipv4Repr { frag_offset: offset as u16, more_frags, ..header(ident, len) }
    }

    fn payload(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed);
        (0..len).map(|_| rng.next() as u8).collect()
    }

    /// The datagram cut by `fragments`, each piece with its bytes.
    fn split(header: &Ipv4Repr, data: &[u8], mtu: usize) -> Vec<(Ipv4Repr, Vec<u8>)> {
        fragments(header, mtu).map(|(h, range)| (h, data[range].to_vec())).collect()
    }

    /// Feeds `pieces` in order; the datagram must complete exactly at the last one.
    #[track_caller]
    fn reassemble_all(pieces: &[(Ipv4Repr, Vec<u8>)]) -> (Ipv4Repr, Vec<u8>) {
        let mut reassembler = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        let (last, rest) = pieces.split_last().expect("at least one piece");
        for (h, data) in rest {
            assert_eq!(reassembler.add(secs(0), h, data), Ok(None));
        }
        let done = reassembler.add(secs(0), &last.0, &last.1).unwrap().expect("completes");
        assert!(reassembler.is_empty());
        assert_eq!(reassembler.held_bytes(), 0);
        assert_eq!(reassembler.poll_at(), None);
        done
    }

    // --- Fragmentation ---

    #[test]
    fn datagram_that_fits_is_one_unchanged_item() {
        let h = Ipv4Repr { dont_frag: true, ..header(7, 1480) };
        assert_eq!(fragments(&h, 1500).collect::<Vec<_>>(), vec![(h, 0..1480)]);
        let empty = header(7, 0);
        assert_eq!(fragments(&empty, 1500).collect::<Vec<_>>(), vec![(empty, 0..0)]);
    }

    #[test]
    fn split_has_exact_offsets_flags_and_ranges() {
        let h = header(0x1234, 4000);
        let got: Vec<_> = fragments(&h, 1500).collect();
        assert_eq!(
            got,
            vec![
                (frag(0x1234, 0, 1480, true), 0..1480),
                (frag(0x1234, 1480, 1480, true), 1480..2960),
                (frag(0x1234, 2960, 1040, false), 2960..4000),
            ]
        );
        // 68 − 20 = 48 bytes a piece.
        let got: Vec<_> = fragments(&header(1, 100), 68).map(|(h, r)| (h.frag_offset, r)).collect();
        assert_eq!(got, vec![(0, 0..48), (48, 48..96), (96, 96..100)]);
        // 75 − 20 = 55 rounds down to 48.
        let got: Vec<_> = fragments(&header(1, 100), 75).map(|(_, r)| r).collect();
        assert_eq!(got, vec![0..48, 48..96, 96..100]);
    }

    #[test]
    fn split_properties_hold_for_many_sizes_and_mtus() {
        for mtu in MTUS.into_iter().chain([28, 69, 1499, 1501]) {
            for len in (0..70_000).step_by(997).chain([1, 7, 8, 9, 48, 49, 1480, 1481, 65515]) {
                let len = len.min(65515);
                let h = header(9, len);
                let pieces: Vec<_> = fragments(&h, mtu).collect();
                let mut expect_start = 0;
                for (i, (fh, range)) in pieces.iter().enumerate() {
                    let last = i == pieces.len() - 1;
                    assert_eq!(range.start, expect_start);
                    assert_eq!(fh.payload_len, range.len());
                    assert!(HEADER_LEN + fh.payload_len <= mtu || len == 0);
                    assert_eq!(fh.ident, 9);
                    if pieces.len() > 1 {
                        assert_eq!(usize::from(fh.frag_offset), range.start);
                        assert_eq!(fh.more_frags, !last);
                        if !last {
                            assert_eq!(fh.payload_len % 8, 0);
                        }
                    }
                    expect_start = range.end;
                }
                assert_eq!(expect_start, len, "mtu {mtu} len {len}");
                let per_piece = (mtu - HEADER_LEN) & !7;
                let expected_count =
                    if len <= mtu - HEADER_LEN { 1 } else { len.div_ceil(per_piece) };
                assert_eq!(pieces.len(), expected_count);
            }
        }
    }

    #[test]
    fn refragmenting_a_fragment_adds_offsets_and_keeps_more_frags() {
        let middle = frag(5, 1480, 1480, true);
        let got: Vec<_> =
            fragments(&middle, 576).map(|(h, r)| (h.frag_offset, h.more_frags, r)).collect();
        assert_eq!(
            got,
            vec![(1480, true, 0..552), (2032, true, 552..1104), (2584, true, 1104..1480)]
        );
        let last = frag(5, 2960, 1040, false);
        let got: Vec<_> =
            fragments(&last, 576).map(|(h, r)| (h.frag_offset, h.more_frags, r)).collect();
        assert_eq!(got, vec![(2960, true, 0..552), (3512, false, 552..1040)]);
    }

    #[test]
    fn refragmented_datagram_reassembles() {
        let data = payload(20_000, 1);
        let h = header(77, data.len());
        let mut pieces = Vec::new();
        for (fh, fdata) in split(&h, &data, 9000) {
            pieces.extend(split(&fh, &fdata, 576));
        }
        // 20 000 at 9000: 8976 + 8976 + 2048; each at 576: 17 + 17 + 4.
        assert_eq!(pieces.len(), 38);
        assert_eq!(reassemble_all(&pieces), (h, data));
    }

    #[test]
    fn dont_frag_is_copied_not_obeyed() {
        let h = Ipv4Repr { dont_frag: true, ..header(3, 3000) };
        let pieces: Vec<_> = fragments(&h, 1500).collect();
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|(fh, _)| fh.dont_frag));
    }

    #[test]
    fn degenerate_inputs_yield_nothing_rather_than_bad_fragments() {
        // No room for 8 bytes of payload.
        assert_eq!(fragments(&header(1, 100), 27).count(), 0);
        assert_eq!(fragments(&header(1, 100), 0).count(), 0);
        assert_eq!(fragments(&header(1, 100), 28).count(), 13);
        // A fragment already at the highest offset: the second piece's offset is not encodable.
        let high = frag(1, MAX_FRAG_OFFSET, 100, false);
        let got: Vec<_> = fragments(&high, 68).map(|(h, r)| (h.frag_offset, r)).collect();
        assert_eq!(got, vec![(65528, 0..48)]);
    }

    // --- Reassembly round trips ---

    /// Reorders `pieces` so that the datagram completes only at the last one.
    fn orders(pieces: &[(Ipv4Repr, Vec<u8>)], seed: u64) -> Vec<Vec<(Ipv4Repr, Vec<u8>)>> {
        let mut rng = Rng(seed);
        let mut orders = vec![pieces.to_vec(), pieces.iter().rev().cloned().collect()];
        // Any order holds at most ⌈n/2⌉ disjoint pieces.
        if pieces.len() <= 2 * MAX_PIECES {
            for _ in 0..3 {
                let mut shuffled = pieces.to_vec();
                rng.shuffle(&mut shuffled);
                orders.push(shuffled);
            }
        }
        // Local reordering, as a real path does it.
        let mut windowed = pieces.to_vec();
        for window in windowed.chunks_mut(16) {
            rng.shuffle(window);
        }
        orders.push(windowed);
        orders
    }

    #[test]
    fn round_trips_in_every_order() {
        let sizes = [
            49, 100, 552, 553, 1472, 1480, 1481, 2960, 4000, 8972, 8980, 9000, 20_000, 65_000,
            65_515,
        ];
        let mut checked = 0;
        for mtu in MTUS {
            for (i, &len) in sizes.iter().enumerate() {
                let data = payload(len, i as u64);
                let h = Ipv4Repr { ttl: 9, tos: 0xb8, dont_frag: false, ..header(i as u16, len) };
                let pieces = split(&h, &data, mtu);
                if pieces.len() < 2 {
                    continue;
                }
                for order in orders(&pieces, (mtu * 1000 + len) as u64) {
                    assert_eq!(reassemble_all(&order), (h, data.clone()), "mtu {mtu} len {len}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 150, "only {checked} cases");
    }

    #[test]
    fn exact_duplicates_are_tolerated() {
        let mut rng = Rng(42);
        for mtu in MTUS {
            for len in [100, 1481, 4000, 9000, 30_000] {
                let data = payload(len, len as u64);
                let h = header(1, len);
                let pieces = split(&h, &data, mtu);
                if pieces.len() < 2 {
                    continue;
                }
                // Shuffle locally, duplicate a third of the fragments, and put the fragment that
                // completes the datagram last so that no duplicate trails the completion.
                let mut order = pieces.clone();
                for window in order.chunks_mut(16) {
                    rng.shuffle(window);
                }
                let completing = order.pop().unwrap();
                let mut with_dups = Vec::new();
                for piece in order {
                    let duplicate = rng.chance(33);
                    with_dups.push(piece.clone());
                    if duplicate {
                        with_dups.push(piece);
                    }
                }
                with_dups.push(completing);
                assert_eq!(reassemble_all(&with_dups), (h, data));
            }
        }
    }

    #[test]
    fn duplicate_costs_nothing() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        let data = payload(16, 0);
        assert_eq!(r.add(secs(0), &frag(1, 0, 16, true), &data), Ok(None));
        let held = r.held_bytes();
        assert_eq!(held, DATAGRAM_OVERHEAD + 16 + FRAGMENT_OVERHEAD);
        assert_eq!(r.add(secs(1), &frag(1, 0, 16, true), &data), Ok(None));
        assert_eq!(r.held_bytes(), held);
        assert_eq!(r.add(secs(1), &frag(1, 16, 8, false), &[7; 8]).unwrap().unwrap().1.len(), 24);
    }

    #[test]
    fn completed_header_is_the_first_fragments() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        // The last fragment arrives first and carries another TTL: the offset-0 header wins.
        let tail = Ipv4Repr { ttl: 1, ..frag(4, 8, 4, false) };
        let head = Ipv4Repr { ttl: 200, dont_frag: true, ..frag(4, 0, 8, true) };
        assert_eq!(r.add(secs(0), &tail, &[2; 4]), Ok(None));
        let (h, data) = r.add(secs(0), &head, &[1; 8]).unwrap().unwrap();
        assert_eq!(h, Ipv4Repr { ttl: 200, dont_frag: true, ..header(4, 12) });
        assert_eq!(data, [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn datagrams_are_kept_apart_by_src_dst_protocol_and_ident() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        let base = frag(1, 0, 8, true);
        let variants = [
            base,
            Ipv4Repr { ident: 2, ..base },
            Ipv4Repr { src_addr: DST, ..base },
            Ipv4Repr { dst_addr: SRC, ..base },
            Ipv4Repr { protocol: IpProtocol::Tcp, ..base },
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_eq!(r.add(secs(0), v, &[i as u8; 8]), Ok(None));
        }
        assert_eq!(r.len(), 5);
        for (i, v) in variants.iter().enumerate() {
            let tail = Ipv4Repr { frag_offset: 8, more_frags: false, ..*v };
            let (h, data) = r.add(secs(0), &tail, &[0xff; 8]).unwrap().unwrap();
            assert_eq!(h.ident, v.ident);
            assert_eq!(h.src_addr, v.src_addr);
            assert_eq!(&data[..8], &[i as u8; 8]);
        }
        assert!(r.is_empty());
    }

    #[test]
    fn non_fragment_passes_through() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        let h = header(1, 3);
        assert_eq!(r.add(secs(0), &h, &[1, 2, 3]), Ok(Some((h, vec![1, 2, 3]))));
        assert!(r.is_empty());
    }

    // --- Overlaps ---

    /// Asserts that `second` is rejected with `error` and the whole datagram went with it.
    #[track_caller]
    fn assert_rejects(first: (Ipv4Repr, &[u8]), second: (Ipv4Repr, &[u8]), error: ReassemblyError) {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        assert_eq!(r.add(secs(0), &first.0, first.1), Ok(None));
        assert_eq!(r.add(secs(0), &second.0, second.1), Err(error));
        assert!(r.is_empty());
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(r.poll_at(), None);
    }

    #[test]
    fn teardrop_fragment_inside_another_is_rejected() {
        // The classic: a last fragment lying wholly inside the first one.
        assert_rejects(
            (frag(1, 0, 24, true), &[0; 24]),
            (frag(1, 16, 3, false), &[0; 3]),
            ReassemblyError::Malformed,
        );
        // The same with MF set, so only the overlap speaks against it.
        assert_rejects(
            (frag(1, 0, 24, true), &[0; 24]),
            (frag(1, 8, 8, true), &[0; 8]),
            ReassemblyError::Overlap,
        );
    }

    #[test]
    fn tiny_fragment_overlap_is_rejected() {
        // RFC 1858: a second fragment at offset 8 rewrites the TCP flags of the first.
        let mut tcp_header = [0u8; 16];
        tcp_header[13] = 0x10;
        let mut rewrite = [0u8; 16];
        rewrite[5] = 0x02;
        assert_rejects(
            (frag(1, 0, 16, true), &tcp_header),
            (frag(1, 8, 16, true), &rewrite),
            ReassemblyError::Overlap,
        );
        // Arriving in the other order changes nothing.
        assert_rejects(
            (frag(1, 8, 16, true), &rewrite),
            (frag(1, 0, 16, true), &tcp_header),
            ReassemblyError::Overlap,
        );
    }

    #[test]
    fn near_duplicates_are_overlaps() {
        let data = payload(16, 3);
        let mut other = data.clone();
        other[15] ^= 1;
        // Same range, other bytes.
        assert_rejects(
            (frag(1, 0, 16, true), &data),
            (frag(1, 0, 16, true), &other),
            ReassemblyError::Overlap,
        );
        // Same start and bytes, shorter.
        assert_rejects(
            (frag(1, 0, 16, true), &data),
            (frag(1, 0, 8, true), &data[..8]),
            ReassemblyError::Overlap,
        );
        // Same start and bytes, longer.
        assert_rejects(
            (frag(1, 0, 8, true), &data[..8]),
            (frag(1, 0, 16, true), &data),
            ReassemblyError::Overlap,
        );
        // Reaching into the next fragment.
        assert_rejects(
            (frag(1, 16, 16, true), &data),
            (frag(1, 8, 16, true), &data),
            ReassemblyError::Overlap,
        );
    }

    #[test]
    fn adjacent_fragments_do_not_overlap() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        assert_eq!(r.add(secs(0), &frag(1, 8, 8, true), &[2; 8]), Ok(None));
        assert_eq!(r.add(secs(0), &frag(1, 16, 8, false), &[3; 8]), Ok(None));
        let (_, data) = r.add(secs(0), &frag(1, 0, 8, true), &[1; 8]).unwrap().unwrap();
        assert_eq!(data, [[1; 8], [2; 8], [3; 8]].concat());
    }

    #[test]
    fn after_an_overlap_the_datagram_cannot_complete() {
        let data = payload(3000, 5);
        let pieces = split(&header(1, 3000), &data, 1500);
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        assert_eq!(r.add(secs(0), &pieces[0].0, &pieces[0].1), Ok(None));
        assert_eq!(
            r.add(secs(0), &frag(1, 1472, 16, true), &[0; 16]),
            Err(ReassemblyError::Overlap)
        );
        // The remaining fragments start a new partial datagram that lacks the first.
        assert_eq!(r.add(secs(0), &pieces[1].0, &pieces[1].1), Ok(None));
        assert_eq!(r.add(secs(0), &pieces[2].0, &pieces[2].1), Ok(None));
        assert_eq!(r.len(), 1);
    }

    // --- Malformed fragments ---

    #[test]
    fn malformed_fragment_alone_is_dropped() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        assert_eq!(r.add(secs(0), &frag(1, 0, 16, true), &[1; 16]), Ok(None));
        let held = r.held_bytes();
        let cases: [(Ipv4Repr, &[u8]); 5] = [
            // Not the last, not a multiple of 8.
            (frag(1, 16, 12, true), &[0; 12]),
            // Empty.
            (frag(1, 16, 0, false), &[]),
            // Header and payload disagree.
            (frag(1, 16, 9, false), &[0; 8]),
            // Offset not a multiple of 8 (no wire header says this, but the type allows it).
            (frag(1, 20, 8, false), &[0; 8]),
            // Ends beyond 65535 − 20.
            (frag(1, 65_512, 8, false), &[0; 8]),
        ];
        for (h, data) in cases {
            assert_eq!(r.add(secs(0), &h, data), Err(ReassemblyError::Malformed), "{h:?}");
        }
        assert_eq!(r.held_bytes(), held);
        assert_eq!(r.len(), 1);
        let (h, _) = r.add(secs(0), &frag(1, 16, 4, false), &[2; 4]).unwrap().unwrap();
        assert_eq!(h.payload_len, 20);
    }

    #[test]
    fn largest_datagram_is_accepted() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        assert_eq!(r.add(secs(0), &frag(1, 65_504, 11, false), &[0; 11]), Ok(None));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn contradicting_ends_drop_the_datagram() {
        let m = ReassemblyError::Malformed;
        // Two last fragments with different ends.
        assert_rejects((frag(1, 16, 8, false), &[0; 8]), (frag(1, 32, 8, false), &[0; 8]), m);
        assert_rejects((frag(1, 32, 8, false), &[0; 8]), (frag(1, 8, 8, false), &[0; 8]), m);
        // Data held beyond the end a last fragment sets.
        assert_rejects((frag(1, 32, 8, true), &[0; 8]), (frag(1, 8, 8, false), &[0; 8]), m);
        // Data arriving beyond the known end.
        assert_rejects((frag(1, 16, 8, false), &[0; 8]), (frag(1, 24, 8, true), &[0; 8]), m);
        // A non-last fragment ending exactly at the known end.
        assert_rejects((frag(1, 16, 8, false), &[0; 8]), (frag(1, 8, 16, true), &[0; 16]), m);
        // The same bytes once with MF set, once without.
        assert_rejects((frag(1, 16, 8, true), &[0; 8]), (frag(1, 16, 8, false), &[0; 8]), m);
        assert_rejects((frag(1, 16, 8, false), &[0; 8]), (frag(1, 16, 8, true), &[0; 8]), m);
    }

    // --- Piece limit ---

    #[test]
    fn too_many_disjoint_pieces_drop_the_datagram() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        // Every other 8-byte slot: 64 disjoint pieces.
        for i in 0..MAX_PIECES {
            assert_eq!(r.add(secs(0), &frag(1, i * 16, 8, true), &[0; 8]), Ok(None));
        }
        // Filling a hole joins two pieces, so a new disjoint one fits again.
        assert_eq!(r.add(secs(0), &frag(1, 8, 8, true), &[0; 8]), Ok(None));
        assert_eq!(r.add(secs(0), &frag(1, 2048, 8, true), &[0; 8]), Ok(None));
        // Extending a piece at either side adds none.
        assert_eq!(r.add(secs(0), &frag(1, 2056, 8, true), &[0; 8]), Ok(None));
        assert_eq!(r.add(secs(0), &frag(1, 2040, 8, true), &[0; 8]), Ok(None));
        assert_eq!(
            r.add(secs(0), &frag(1, 4000, 8, true), &[0; 8]),
            Err(ReassemblyError::TooManyFragments)
        );
        assert!(r.is_empty());
        assert_eq!(r.held_bytes(), 0);
    }

    // --- Memory cap ---

    /// What one partial datagram holding fragments of these sizes costs.
    fn charge(sizes: &[usize]) -> usize {
        DATAGRAM_OVERHEAD + sizes.iter().map(|len| len + FRAGMENT_OVERHEAD).sum::<usize>()
    }

    #[test]
    fn memory_cap_evicts_oldest_partials_first() {
        let one = charge(&[1000]);
        let mut r = Reassembler::new(Duration::from_secs(30), 2 * one + 100);
        for ident in 0..2 {
            assert_eq!(
                r.add(secs(ident.into()), &frag(ident, 0, 1000, true), &[0; 1000]),
                Ok(None)
            );
        }
        assert_eq!(r.held_bytes(), 2 * one);
        assert_eq!(r.take_evictions(), 0);
        // The third evicts the first.
        assert_eq!(r.add(secs(2), &frag(2, 0, 1000, true), &[0; 1000]), Ok(None));
        assert_eq!(r.take_evictions(), 1);
        assert_eq!(r.take_evictions(), 0);
        assert_eq!(r.len(), 2);
        assert_eq!(r.held_bytes(), 2 * one);
        assert_eq!(r.poll_at(), Some(secs(31)));
    }

    #[test]
    fn growing_partial_evicts_others_not_itself() {
        let one = charge(&[1000]);
        let mut r = Reassembler::new(Duration::from_secs(30), 2 * one + 100);
        assert_eq!(r.add(secs(0), &frag(1, 0, 1000, true), &[0; 1000]), Ok(None));
        assert_eq!(r.add(secs(1), &frag(2, 0, 1000, true), &[0; 1000]), Ok(None));
        // The oldest partial grows: the younger one goes.
        assert_eq!(r.add(secs(2), &frag(1, 1008, 1000, false), &[0; 1000]), Ok(None));
        assert_eq!(r.take_evictions(), 1);
        assert_eq!(r.held_bytes(), charge(&[1000, 1000]));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn fragment_that_cannot_fit_is_refused_without_evicting() {
        let one = charge(&[1000]);
        let mut r = Reassembler::new(Duration::from_secs(30), one);
        assert_eq!(r.add(secs(0), &frag(1, 0, 1000, true), &[0; 1000]), Ok(None));
        // Alone it is too big: nothing else is touched.
        assert_eq!(
            r.add(secs(0), &frag(2, 0, 1008, true), &[0; 1008]),
            Err(ReassemblyError::MemoryExhausted)
        );
        assert_eq!(r.take_evictions(), 0);
        assert_eq!(r.held_bytes(), one);
        // Its own partial plus it is too big: that partial goes, as it could never complete.
        assert_eq!(
            r.add(secs(0), &frag(1, 1000, 8, false), &[0; 8]),
            Err(ReassemblyError::MemoryExhausted)
        );
        assert_eq!(r.take_evictions(), 0);
        assert!(r.is_empty());
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn flood_of_tiny_datagrams_is_bounded_by_the_cap() {
        let cap = 64 * 1024;
        let mut r = Reassembler::new(Duration::from_secs(30), cap);
        for ident in 0..10_000u16 {
            assert_eq!(r.add(secs(0), &frag(ident, 8, 1, false), &[0]), Ok(None));
        }
        let per = charge(&[1]);
        assert_eq!(r.len(), cap / per);
        assert_eq!(r.held_bytes(), cap / per * per);
        assert_eq!(r.take_evictions(), 10_000 - cap / per);
    }

    // --- Timeout ---

    #[test]
    fn partials_time_out_from_their_first_fragment() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        assert_eq!(r.poll_at(), None);
        assert_eq!(r.add(secs(0), &frag(1, 0, 8, true), &[0; 8]), Ok(None));
        assert_eq!(r.add(secs(10), &frag(2, 0, 8, true), &[0; 8]), Ok(None));
        // Later fragments do not restart the timer.
        assert_eq!(r.add(secs(20), &frag(1, 16, 8, true), &[0; 8]), Ok(None));
        assert_eq!(r.poll_at(), Some(secs(30)));
        assert_eq!(r.expire(Instant::from_millis(29_999)), 0);
        assert_eq!(r.expire(secs(30)), 1);
        assert_eq!(r.poll_at(), Some(secs(40)));
        assert_eq!(r.held_bytes(), charge(&[8]));
        assert_eq!(r.expire(secs(100)), 1);
        assert_eq!(r.expire(secs(100)), 0);
        assert_eq!(r.poll_at(), None);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn late_fragment_does_not_join_a_timed_out_partial() {
        let mut r = Reassembler::new(Duration::from_secs(30), BIG_CAP);
        assert_eq!(r.add(secs(0), &frag(1, 0, 8, true), &[0; 8]), Ok(None));
        // Would complete the datagram, but the first half is 30 s old.
        assert_eq!(r.add(secs(30), &frag(1, 8, 8, false), &[0; 8]), Ok(None));
        assert_eq!(r.len(), 1);
        // The dropped partial is reported by the next expire, which poll_at asks for at once.
        assert_eq!(r.poll_at(), Some(Instant::ZERO));
        assert_eq!(r.expire(secs(30)), 1);
        assert_eq!(r.poll_at(), Some(secs(60)));
        assert_eq!(r.held_bytes(), charge(&[8]));
    }

    // --- Against a model ---

    /// Bytes the model tracks: enough for the datagrams and garbage the model test sends.
    const MODEL_SPAN: usize = 8192;

    /// The reassembly rules written the obvious way: a byte map and a list of held fragments.
    struct Model {
        cap: usize,
        bytes: Vec<Option<u8>>,
        held: Vec<(usize, Vec<u8>)>,
        total: Option<usize>,
    }

    impl Model {
        fn new(cap: usize) -> Model {
            Model { cap, bytes: vec![None; MODEL_SPAN], held: Vec::new(), total: None }
        }

        fn charge(&self) -> usize {
            if self.held.is_empty() {
                0
            } else {
                charge(&self.held.iter().map(|(_, d)| d.len()).collect::<Vec<_>>())
            }
        }

        fn pieces(&self) -> usize {
            let mut pieces = 0;
            let mut previous = false;
            for byte in &self.bytes {
                if byte.is_some() && !previous {
                    pieces += 1;
                }
                previous = byte.is_some();
            }
            pieces
        }

        fn add(
            &mut self,
            start: usize,
            data: &[u8],
            more: bool,
        ) -> Result<Option<Vec<u8>>, ReassemblyError> {
            if start == 0 && !more {
                return Ok(Some(data.to_vec()));
            }
            let end = start + data.len();
            if data.is_empty() || end > MAX_PAYLOAD || (more && !data.len().is_multiple_of(8)) {
                return Err(ReassemblyError::Malformed);
            }
            let result = self.add_checked(start, data, more);
            if result.is_err() {
                *self = Model::new(self.cap);
            }
            result
        }

        fn add_checked(
            &mut self,
            start: usize,
            data: &[u8],
            more: bool,
        ) -> Result<Option<Vec<u8>>, ReassemblyError> {
            let end = start + data.len();
            let held_end = self.bytes.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
            let contradicts = match (self.total, more) {
                (Some(total), true) => end >= total,
                (Some(total), false) => end != total,
                (None, false) => held_end >= end,
                (None, true) => false,
            };
            if !self.held.is_empty() && contradicts {
                return Err(ReassemblyError::Malformed);
            }
            if self.held.iter().any(|(at, d)| *at == start && d == data) {
                return Ok(None);
            }
            if self.bytes[start..end].iter().any(Option::is_some) {
                return Err(ReassemblyError::Overlap);
            }
            for (slot, byte) in self.bytes[start..end].iter_mut().zip(data) {
                *slot = Some(*byte);
            }
            self.held.push((start, data.to_vec()));
            if self.pieces() > MAX_PIECES {
                return Err(ReassemblyError::TooManyFragments);
            }
            if self.charge() > self.cap {
                return Err(ReassemblyError::MemoryExhausted);
            }
            if !more {
                self.total = Some(end);
            }
            match self.total {
                Some(total) if self.bytes[..total].iter().all(Option::is_some) => {
                    let datagram = self.bytes[..total].iter().map(|b| b.unwrap_or(0)).collect();
                    *self = Model::new(self.cap);
                    Ok(Some(datagram))
                }
                _ => Ok(None),
            }
        }
    }

    #[test]
    fn random_fragment_sets_match_the_model() {
        let mut rng = Rng(0x5eed);
        let mut completed = 0;
        let mut errors = [0usize; 4];
        for round in 0..400 {
            let max_len = if rng.chance(30) { 4000 } else { 600 };
            let len = 8 + rng.below(max_len);
            let truth = payload(len, rng.next());
            let grid_choices = if len > 1000 { 2 } else { 8 };
            let grid = 8 * (1 + rng.below(grid_choices));
            let mut cuts: Vec<(usize, usize)> =
                (0..len).step_by(grid).map(|s| (s, (s + grid).min(len))).collect();
            rng.shuffle(&mut cuts);
            // Percent of steps sending something other than an honest cut or an exact resend.
            let noise = [0, 1, 3, 10][rng.below(4)];
            let cap = if rng.chance(15) { 600 + rng.below(4000) } else { BIG_CAP };

            let mut model = Model::new(cap);
            let mut real = Reassembler::new(Duration::from_secs(30), cap);
            let mut sent: Vec<(usize, Vec<u8>, bool)> = Vec::new();
            for step in 0..cuts.len() + 20 {
                let roll = rng.below(100);
                let (start, data, more) = if roll < noise / 2 {
                    // Garbage: a random aligned start, any length, either flag.
                    let start = 8 * rng.below(len / 8 + 2);
                    let data = payload(1 + rng.below(64), rng.next());
                    (start, data, rng.chance(70))
                } else if roll < noise && !sent.is_empty() {
                    // A resend with a flipped byte or flag.
                    let (start, mut data, mut more) = sent[rng.below(sent.len())].clone();
                    if rng.chance(80) {
                        let i = rng.below(data.len());
                        data[i] ^= 0x80;
                    } else {
                        more = !more;
                    }
                    (start, data, more)
                } else if roll < noise + 10 && !sent.is_empty() {
                    // An exact resend.
                    sent[rng.below(sent.len())].clone()
                } else {
                    let (start, end) = cuts[step % cuts.len()];
                    (start, truth[start..end].to_vec(), end != len)
                };
                let h = frag(1, start, data.len(), more);
                let expected = model.add(start, &data, more);
                let got = real.add(secs(0), &h, &data).map(|done| {
                    done.map(|(dh, payload)| {
                        assert_eq!(dh, header(1, payload.len()));
                        payload
                    })
                });
                let len = data.len();
                assert_eq!(got, expected, "round {round} step {step} frag {start}+{len} mf {more}");
                assert_eq!(real.held_bytes(), model.charge());
                match got {
                    Ok(Some(_)) => completed += 1,
                    Err(e) => errors[e as usize] += 1,
                    Ok(None) => {}
                }
                sent.push((start, data, more));
            }
        }
        // The mix reached every outcome.
        assert!(completed > 100, "{completed}");
        assert!(errors.iter().all(|&n| n > 10), "{errors:?}");
    }
}
