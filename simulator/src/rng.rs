//! Deterministic hashing and random numbers.
//!
//! Synthesis must give the same pixels for the same (seed, path) on every machine, Rust version
//! and crate version, so neither `std`'s `DefaultHasher` nor `rand`'s `StdRng` (both allowed to
//! change between releases) is used: FNV-1a for keys and SplitMix64 for streams are fixed
//! forever.

/// Stable 64-bit hash of `key` under `seed` and a `domain` tag, so independent uses of the same
/// key (patient split, study pick, image anatomy, each finding) draw unrelated numbers.
pub(crate) fn stable_hash(seed: u64, domain: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in domain.bytes().chain([0xff]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h ^ mix64(seed))
}

/// SplitMix64 finalizer: a bijective avalanche on 64 bits.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a hash to [0, 1).
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// SplitMix64 stream.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    /// Uniform in 0..n (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32) as usize * n) >> 32
    }

    pub(crate) fn chance(&mut self, p: f32) -> bool {
        self.f32() < p
    }

    /// Approximately standard normal (Irwin–Hall with four terms, rescaled): cheap, bounded,
    /// and good enough for anatomical jitter.
    pub(crate) fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.f32()).sum();
        (s - 2.0) * 1.732_050_8
    }

    /// Either -1.0 or 1.0.
    pub(crate) fn sign(&mut self) -> f32 {
        if self.chance(0.5) {
            -1.0
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_domain_separated() {
        // Pinned: a change here silently changes every synthesized dataset.
        assert_eq!(stable_hash(7, "a", "b"), 15_626_730_893_805_626_308);
        assert_eq!(Rng::new(7).next_u64(), 7_191_089_600_892_374_487);
        assert_ne!(stable_hash(7, "a", "b"), stable_hash(7, "ab", ""));
        assert_ne!(stable_hash(7, "a", "b"), stable_hash(8, "a", "b"));
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::new(1);
        for n in 1..50 {
            assert!(rng.below(n) < n);
        }
        let u = rng.f32();
        assert!((0.0..1.0).contains(&u));
    }
}
