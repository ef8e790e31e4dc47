//! Initial sequence numbers per RFC 6528 and per-connection timestamp offsets (RFC 7323 §7.1):
//! ISN = M + F(local, remote, secret), M a 4 µs clock, F a keyed hash (SipHash-1-3) over the
//! 4-tuple. The secret comes from the caller (the engine has no source of randomness).

use core::hash::Hasher;
use std::net::SocketAddrV4;

use siphasher::sip::SipHasher13;

use crate::time::Instant;
use crate::wire::SeqNumber;

/// What a keyed hash is for. The ISN's F and the timestamp offset hash the same 4-tuple under
/// the same key; the tag makes them independent, so a peer that learns one (a TSval at a known
/// uptime) learns nothing about the other.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Domain {
    InitialSequence = 1,
    TimestampOffset = 2,
}

/// Generates ISNs and timestamp offsets from a secret key.
#[derive(Debug, Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
}

impl IsnGenerator {
    /// A generator keyed with `secret` (16 random bytes from the caller).
    pub fn new(secret: [u8; 16]) -> IsnGenerator {
        IsnGenerator { key: secret }
    }
    /// The ISN for a connection between `local` and `remote` at `now`.
    ///
    /// M ticks every 4 µs (250 000 per second, wrapping every 4.77 hours), which keeps successive
    /// incarnations of one 4-tuple moving forward through the sequence space; F spreads the
    /// 4-tuples over it unpredictably to off-path attackers.
    pub fn isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> SeqNumber {
        // Truncation to 32 bits is the wrap of the 4 µs counter.
        let clock = (now.total_micros() / 4) as u32;
        SeqNumber(clock.wrapping_add(self.keyed_hash(Domain::InitialSequence, local, remote)))
    }
    /// A per-connection offset added to the timestamp clock, so TSvals do not reveal uptime and
    /// differ between connections (but stay monotonic for one 4-tuple).
    pub fn timestamp_offset(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        self.keyed_hash(Domain::TimestampOffset, local, remote)
    }

    /// SipHash-1-3 under the secret of the domain tag and the 4-tuple (RFC 6528's F), cut to 32
    /// bits. The input has a fixed layout, so no two (domain, tuple) pairs hash the same bytes.
    fn keyed_hash(&self, domain: Domain, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let mut input = [0u8; 13];
        input[0] = domain as u8;
        input[1..5].copy_from_slice(&local.ip().octets());
        input[5..7].copy_from_slice(&local.port().to_be_bytes());
        input[7..11].copy_from_slice(&remote.ip().octets());
        input[11..13].copy_from_slice(&remote.port().to_be_bytes());
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write(&input);
        hasher.finish() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    fn addr(a: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, a), port)
    }

    fn at(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    // ---- ISN ----

    #[test]
    fn each_part_of_the_tuple_changes_the_isn() {
        let isns = IsnGenerator::new(KEY);
        let isn = |local, remote| isns.isn(at(1_000_000), local, remote);
        let reference = isn(addr(1, 40000), addr(2, 80));
        assert_ne!(isn(addr(3, 40000), addr(2, 80)), reference, "local address");
        assert_ne!(isn(addr(1, 40001), addr(2, 80)), reference, "local port");
        assert_ne!(isn(addr(1, 40000), addr(3, 80)), reference, "remote address");
        assert_ne!(isn(addr(1, 40000), addr(2, 81)), reference, "remote port");
        assert_ne!(isn(addr(2, 80), addr(1, 40000)), reference, "direction");
    }

    #[test]
    fn same_tuple_gives_same_isn_at_same_time() {
        let isns = IsnGenerator::new(KEY);
        let (local, remote) = (addr(1, 40000), addr(2, 80));
        assert_eq!(isns.isn(at(77), local, remote), isns.isn(at(77), local, remote));
        assert_eq!(
            IsnGenerator::new(KEY).isn(at(77), local, remote),
            isns.isn(at(77), local, remote)
        );
    }

    #[test]
    fn isn_advances_one_per_4_microseconds() {
        let isns = IsnGenerator::new(KEY);
        let (local, remote) = (addr(1, 40000), addr(2, 80));
        let start = isns.isn(at(8_000), local, remote);
        assert_eq!(isns.isn(at(8_003), local, remote), start);
        assert_eq!(isns.isn(at(8_004), local, remote) - start, 1);
        assert_eq!(isns.isn(at(1_008_000), local, remote) - start, 250_000);
    }

    #[test]
    fn isn_clock_wraps() {
        let isns = IsnGenerator::new(KEY);
        let (local, remote) = (addr(1, 40000), addr(2, 80));
        let lap = 4 << 32;
        assert_eq!(isns.isn(at(lap + 40), local, remote), isns.isn(at(40), local, remote));
    }

    #[test]
    fn different_keys_give_different_isns() {
        let (local, remote) = (addr(1, 40000), addr(2, 80));
        let mut other_key = KEY;
        other_key[15] ^= 1;
        assert_ne!(
            IsnGenerator::new(KEY).isn(at(0), local, remote),
            IsnGenerator::new(other_key).isn(at(0), local, remote)
        );
    }

    // ---- timestamp offsets ----

    #[test]
    fn timestamp_offset_is_per_tuple_and_per_key() {
        let isns = IsnGenerator::new(KEY);
        let (local, remote) = (addr(1, 40000), addr(2, 80));
        let offset = isns.timestamp_offset(local, remote);
        assert_eq!(isns.timestamp_offset(local, remote), offset);
        assert_ne!(isns.timestamp_offset(local, addr(2, 81)), offset);
        assert_ne!(isns.timestamp_offset(remote, local), offset);
        let mut other_key = KEY;
        other_key[0] ^= 1;
        assert_ne!(IsnGenerator::new(other_key).timestamp_offset(local, remote), offset);
    }

    #[test]
    fn timestamp_offset_is_not_the_isn_hash() {
        // At time 0 the ISN is F alone; the offset must not reveal it.
        let isns = IsnGenerator::new(KEY);
        let (local, remote) = (addr(1, 40000), addr(2, 80));
        assert_ne!(isns.timestamp_offset(local, remote), isns.isn(at(0), local, remote).0);
    }

    #[test]
    fn tuples_spread_over_the_sequence_space() {
        // A sanity check on F, not a statistical test: 256 ports give 256 distinct ISNs whose
        // top bits take many values.
        let isns = IsnGenerator::new(KEY);
        let mut seen: Vec<u32> =
            (0..256).map(|port| isns.isn(at(0), addr(1, 40000 + port), addr(2, 80)).0).collect();
        let top_nibbles: std::collections::HashSet<u32> = seen.iter().map(|s| s >> 28).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert!(top_nibbles.len() >= 12, "{top_nibbles:?}");
    }
}
