//! Immediate ACKs owed for out-of-order and hole-filling segments (RFC 5681 §4.2, RFC 2018 §4).
//!
//! The stack processes every frame that arrived since its last round and only then calls
//! `dispatch`, so the TCB sees a batch of segments before it may answer any. A sender counts
//! duplicate ACKs and reads SACK blocks per ACK, so answering a batch of out-of-order segments
//! with a single ACK would hide losses from it (too few duplicate ACKs) and, with more holes than
//! one ACK has room for, the blocks of all but the latest arrivals. The TCB therefore records one
//! owed ACK per such segment and `dispatch` emits them all, each reporting first the block that
//! holds its segment, as if it had been sent the moment that segment arrived.
//!
//! What an owed ACK remembers is only where its segment began; the block is looked up when the
//! ACK is built, so it reports the block's extent at that time (which may have grown since).

use crate::wire::SeqNumber;

/// The most ACKs owed at once. Past it, the latest arrival replaces the last one owed, so the
/// final ACK of the round still reports the most recent block first: a flood of out-of-order
/// segments costs at most this many ACKs per round.
pub(super) const MAX_OWED_ACKS: usize = 64;

/// A FIFO of owed immediate ACKs, by the sequence number of the segment each answers. The
/// storage is allocated at the first out-of-order segment and kept (a few hundred bytes at
/// most), so that connections that never see one carry nothing but an empty `Vec`.
#[derive(Debug, Clone, Default)]
pub(super) struct OwedAcks {
    arrivals: Vec<SeqNumber>,
    /// The next entry to emit.
    head: usize,
}

impl OwedAcks {
    /// Owes an ACK for the segment starting at `seq`.
    pub(super) fn push(&mut self, seq: SeqNumber) {
        if self.head == self.arrivals.len() {
            self.clear();
        }
        if self.arrivals.len() < MAX_OWED_ACKS {
            self.arrivals.push(seq);
        } else {
            self.arrivals[MAX_OWED_ACKS - 1] = seq;
        }
    }

    /// The next owed ACK's segment, in arrival order.
    pub(super) fn pop(&mut self) -> Option<SeqNumber> {
        let seq = *self.arrivals.get(self.head)?;
        self.head += 1;
        Some(seq)
    }

    /// RCV.NXT moved to `rcv_nxt`: ACKs owed for segments now below it would report an
    /// acknowledgment state that no longer exists (every owed ACK carries the current RCV.NXT),
    /// so they are forgiven; the caller owes one for the segment that moved it instead.
    ///
    /// Counting them anyway would show a sender without SACK a run of duplicate ACKs for the
    /// next hole, which is not what happened.
    pub(super) fn forgive_below(&mut self, rcv_nxt: SeqNumber) {
        let mut kept = self.head;
        for i in self.head..self.arrivals.len() {
            if self.arrivals[i] >= rcv_nxt {
                self.arrivals[kept] = self.arrivals[i];
                kept += 1;
            }
        }
        self.arrivals.truncate(kept);
    }

    /// Forgets every owed ACK (the connection closed or entered TIME-WAIT, where one ACK says
    /// everything).
    pub(super) fn clear(&mut self) {
        self.arrivals.clear();
        self.head = 0;
    }

    /// Number of ACKs owed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.arrivals.len() - self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(owed: &mut OwedAcks) -> Vec<u32> {
        core::iter::from_fn(|| owed.pop()).map(|s| s.0).collect()
    }

    #[test]
    fn owed_acks_come_out_in_arrival_order() {
        let mut owed = OwedAcks::default();
        assert_eq!(owed.pop(), None);
        for seq in [300, 100, 200] {
            owed.push(SeqNumber(seq));
        }
        assert_eq!(owed.len(), 3);
        assert_eq!(drain(&mut owed), [300, 100, 200]);
        assert_eq!(owed.len(), 0);
        // Emptied, the ring starts over from its first slot.
        owed.push(SeqNumber(7));
        assert_eq!(drain(&mut owed), [7]);
    }

    #[test]
    fn the_debt_is_bounded_and_keeps_the_latest_arrival_last() {
        let mut owed = OwedAcks::default();
        for seq in 0..1000 {
            owed.push(SeqNumber(seq));
        }
        assert_eq!(owed.len(), MAX_OWED_ACKS);
        let drained = drain(&mut owed);
        assert_eq!(drained[..MAX_OWED_ACKS - 1], (0..MAX_OWED_ACKS as u32 - 1).collect::<Vec<_>>());
        assert_eq!(drained[MAX_OWED_ACKS - 1], 999);
    }

    #[test]
    fn acks_for_segments_below_rcv_nxt_are_forgiven() {
        let mut owed = OwedAcks::default();
        for seq in [500, 100, 700, 300] {
            owed.push(SeqNumber(seq));
        }
        assert_eq!(owed.pop(), Some(SeqNumber(500)));
        owed.forgive_below(SeqNumber(400));
        owed.push(SeqNumber(0));
        assert_eq!(drain(&mut owed), [700, 0]);
        // Sequence numbers compare in serial arithmetic across the wrap.
        owed.push(SeqNumber(u32::MAX - 10));
        owed.push(SeqNumber(5));
        owed.forgive_below(SeqNumber(u32::MAX));
        assert_eq!(drain(&mut owed), [5]);
        owed.push(SeqNumber(1));
        owed.clear();
        assert_eq!(owed.pop(), None);
    }
}
