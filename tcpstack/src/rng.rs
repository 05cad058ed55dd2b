//! SplitMix64: a small seeded PRNG for ephemeral-port offsets, the randomized
//! tests and the benches, so all repeat exactly from a seed without a dependency.

/// SplitMix64 (Steele, Lea, Flood 2014): any seed, zero included, is fine.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Return the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Return a number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}
