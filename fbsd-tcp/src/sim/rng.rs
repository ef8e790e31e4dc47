//! A seeded PRNG of our own (splitmix64), so that a simulated run is a pure function of its seed
//! and stays reproducible across toolchains and dependency upgrades: no `rand` crate, whose
//! streams are allowed to change between versions.

/// Sebastiano Vigna's splitmix64: a 64-bit counter pushed through a strong mixing function.
/// Statistically good enough for loss and jitter decisions, and one add plus three multiplies
/// per draw. Not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

/// The counter increment: 2^64 / φ, odd, so the counter visits every value once per period.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's output function: a bijection on u64 with full avalanche.
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `index`th word of the stream a generator seeded with `seed` produces, without stepping
/// through the ones before it: lets a payload pattern be addressed by offset.
pub(crate) const fn word_at(seed: u64, index: u64) -> u64 {
    mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub const fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// A uniform value in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        // The top 53 bits fit an f64 mantissa exactly; the scale is a power of two, so the
        // result is the same on every IEEE 754 platform.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (clamped to `[0, 1]`). Draws nothing when the outcome is
    /// certain, so a disabled impairment does not shift the stream of the others.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.next_f64() < p
        }
    }

    /// A uniform value in `[0, bound)`; 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        // Lemire's multiply-shift: the bias is below 2^-64 × bound, far under anything a
        // simulation can observe, and it needs no rejection loop.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A generator for a sub-stream (one per link direction, one per workload), independent of
    /// this one's future draws and a function of this generator's seed and `stream` alone.
    pub fn fork(&self, stream: u64) -> Rng {
        Rng::new(mix(self.state ^ mix(stream.wrapping_add(GOLDEN_GAMMA))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64_stream() {
        // First outputs of the reference C implementation seeded with 1234567.
        let mut rng = Rng::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(rng.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn word_at_addresses_the_stream_by_index() {
        let mut rng = Rng::new(99);
        for index in 0..100 {
            assert_eq!(word_at(99, index), rng.next_u64());
        }
    }

    #[test]
    fn chance_hits_its_probability() {
        let mut rng = Rng::new(7);
        let hits = (0..100_000).filter(|_| rng.chance(0.1)).count();
        assert!((9_500..10_500).contains(&hits), "{hits} hits of 100000 at p = 0.1");
        assert!(!Rng::new(1).chance(0.0));
        assert!(Rng::new(1).chance(1.0));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(3);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = rng.below(10);
            seen[usize::try_from(v).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| (900..1100).contains(&n)), "{seen:?}");
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn forks_are_independent_of_each_other() {
        let root = Rng::new(5);
        let mut a = root.fork(0);
        let mut b = root.fork(1);
        let same = (0..64).filter(|_| a.next_u64() == b.next_u64()).count();
        assert_eq!(same, 0);
        assert_eq!(root.fork(0).next_u64(), Rng::new(5).fork(0).next_u64());
    }
}
