//! The Internet checksum (RFC 1071), with incremental helpers for the TCP/UDP pseudo-header.
//!
//! Speed matters here: every payload byte of every segment passes through [`data`] once on
//! transmit and once on receive, so it sums 64-bit words rather than 16-bit ones.
//!
//! # Why the wide sum is the Internet checksum
//!
//! The ones'-complement sum of 16-bit words is addition modulo 2^16 − 1 (RFC 1071 §2), where
//! 0x0000 and 0xffff both stand for zero. Because 2^16 ≡ 1 (mod 2^16 − 1), a 32-bit half of a
//! 64-bit word, `hi·2^16 + lo`, is congruent to `hi + lo`: adding 32-bit halves into a 64-bit
//! accumulator keeps the same residue as adding the 16-bit words one by one, and so does every
//! "add the high part to the low part" fold at the end. The fold also keeps a non-zero sum
//! non-zero, so the result is 0x0000 exactly when every word is zero, like the 16-bit reference.
//!
//! The words are loaded in native byte order, which on a little-endian machine swaps the two
//! bytes of every 16-bit word. RFC 1071 §2(B) shows the sum is byte-order independent: the sum
//! of swapped words is the swapped sum, so one swap of the 16-bit result ([`u16::from_be`])
//! puts it back in network order. The tests check all of this against a naive 16-bit
//! big-endian sum.

use std::net::Ipv4Addr;

/// Bytes summed before the 64-bit accumulator is folded. Each 8-byte word adds less than 2^33,
/// so 2^25 words (256 MiB) stay far below 2^64; the bound only exists so that no slice length
/// could overflow the accumulator. It is a multiple of 8, so blocks stay word-aligned in the
/// stream.
const BLOCK_LEN: usize = 1 << 28;

/// Ones'-complement sum of `bytes` in network byte order, folded to 16 bits but not
/// complemented, as a 32-bit partial sum for [`combine`].
///
/// `bytes` must start at an even offset of the summed stream (partial sums of pieces that start
/// at odd offsets would need a byte swap); every header and payload the engine sums does.
pub fn data(bytes: &[u8]) -> u32 {
    let mut total: u64 = 0;
    for block in bytes.chunks(BLOCK_LEN) {
        total += u64::from(fold_to_u16(sum_native(block)));
    }
    u32::from(u16::from_be(fold_to_u16(total)))
}

/// Sum of `bytes` as native-order 32-bit halves of 64-bit words, unfolded. A trailing partial
/// word is zero-padded, which is exactly RFC 1071's padding of an odd final byte.
fn sum_native(bytes: &[u8]) -> u64 {
    let (words, tail) = bytes.as_chunks::<8>();
    // Two accumulators let the two additions chains of consecutive words run in parallel.
    let mut even: u64 = 0;
    let mut odd: u64 = 0;
    let (pairs, last) = words.as_chunks::<2>();
    for [a, b] in pairs {
        let a = u64::from_ne_bytes(*a);
        let b = u64::from_ne_bytes(*b);
        even += (a & 0xffff_ffff) + (a >> 32);
        odd += (b & 0xffff_ffff) + (b >> 32);
    }
    let mut padded = [0u8; 16];
    let rest = last.len() * 8 + tail.len();
    padded[..rest].copy_from_slice(&bytes[bytes.len() - rest..]);
    for word in padded.as_chunks::<8>().0 {
        let w = u64::from_ne_bytes(*word);
        even += (w & 0xffff_ffff) + (w >> 32);
    }
    // Both are below 2^59 for any block of at most BLOCK_LEN bytes: no overflow.
    even + odd
}

/// Folds a wide sum to 16 bits with end-around carries, keeping its residue mod 2^16 − 1.
fn fold_to_u16(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 0xffff.
    sum as u16
}

/// Folds partial sums from [`data`] / [`pseudo_header`] into a 16-bit ones'-complement sum
/// (not complemented). A checksummed region verifies when this is 0xffff; the checksum to store
/// is its complement.
pub fn combine(partials: &[u32]) -> u16 {
    fold_to_u16(partials.iter().map(|&p| u64::from(p)).sum())
}

/// Partial sum of the IPv4 pseudo-header for TCP or UDP (RFC 9293 §3.1, RFC 768): source and
/// destination addresses, the protocol number and the TCP/UDP length.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u32 {
    let src = u32::from(src);
    let dst = u32::from(dst);
    let sum = u64::from(src >> 16)
        + u64::from(src & 0xffff)
        + u64::from(dst >> 16)
        + u64::from(dst & 0xffff)
        + u64::from(protocol)
        + u64::from(length >> 16)
        + u64::from(length & 0xffff);
    u32::from(fold_to_u16(sum))
}

/// The checksum to store for a region whose partial sums are `partials`: the complement of
/// their ones'-complement sum.
pub fn checksum(partials: &[u32]) -> u16 {
    !combine(partials)
}

/// True if a region that includes its own checksum field sums to "negative zero", i.e. the
/// stored checksum matches the contents.
pub fn verifies(partials: &[u32]) -> bool {
    combine(partials) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's definition, word by word in network order with an end-around carry after
    /// every addition: obviously correct, slow.
    fn reference(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
            if sum > 0xffff {
                sum -= 0xffff;
            }
        }
        sum as u16
    }

    /// splitmix64: a deterministic source of test bytes.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next() as u8;
            }
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(combine(&[data(&bytes)]), 0xddf2);
        assert_eq!(checksum(&[data(&bytes)]), 0x220d);
    }

    #[test]
    fn matches_reference_on_every_length_and_alignment() {
        let mut rng = Rng(0x5eed);
        let mut backing = [0u8; 320];
        for len in 0..300 {
            for offset in 0..8 {
                rng.fill(&mut backing);
                let bytes = &backing[offset..offset + len];
                assert_eq!(combine(&[data(bytes)]), reference(bytes), "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn extreme_contents() {
        for len in 0..64 {
            let ones = vec![0xffu8; len];
            let zeros = vec![0u8; len];
            assert_eq!(combine(&[data(&ones)]), reference(&ones), "ones len {len}");
            assert_eq!(combine(&[data(&zeros)]), 0, "zeros len {len}");
        }
        // A non-zero buffer whose sum is ≡ 0 mod 0xffff is "negative zero", never 0.
        assert_eq!(combine(&[data(&[0xff, 0xff])]), 0xffff);
        assert_eq!(combine(&[data(&[0x80, 0x00, 0x7f, 0xff])]), 0xffff);
    }

    #[test]
    fn large_buffer_matches_reference() {
        let mut rng = Rng(7);
        let mut buf = vec![0u8; 65_537];
        rng.fill(&mut buf);
        assert_eq!(combine(&[data(&buf)]), reference(&buf));
        buf.fill(0xff);
        assert_eq!(combine(&[data(&buf)]), reference(&buf));
    }

    #[test]
    fn partial_sums_combine_at_even_splits() {
        let mut rng = Rng(11);
        let mut buf = [0u8; 200];
        rng.fill(&mut buf);
        for split in (0..=200).step_by(2) {
            let (a, b) = buf.split_at(split);
            assert_eq!(combine(&[data(a), data(b)]), reference(&buf), "split {split}");
        }
    }

    #[test]
    fn pseudo_header_matches_its_bytes() {
        let mut rng = Rng(3);
        for _ in 0..100 {
            let src = Ipv4Addr::from(rng.next() as u32);
            let dst = Ipv4Addr::from(rng.next() as u32);
            let protocol = rng.next() as u8;
            let length = rng.next() as u16;
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&src.octets());
            bytes.extend_from_slice(&dst.octets());
            bytes.extend_from_slice(&[0, protocol]);
            bytes.extend_from_slice(&length.to_be_bytes());
            assert_eq!(
                combine(&[pseudo_header(src, dst, protocol, u32::from(length))]),
                reference(&bytes)
            );
        }
    }

    #[test]
    fn stored_checksum_verifies() {
        let mut rng = Rng(99);
        for len in (4..100).step_by(2) {
            let mut buf = vec![0u8; len];
            rng.fill(&mut buf);
            buf[2..4].fill(0);
            let sum = checksum(&[data(&buf)]);
            buf[2..4].copy_from_slice(&sum.to_be_bytes());
            assert!(verifies(&[data(&buf)]), "len {len}");
            buf[len - 1] ^= 0x10;
            assert!(!verifies(&[data(&buf)]), "corrupted len {len}");
        }
    }
}
