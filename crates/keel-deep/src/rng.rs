//! The one source of randomness (initialisation, shuffling, dropout): keel-core's SplitMix64
//! salted with this crate's constant, so training is reproducible from a seed on any machine.

pub use keel_core::SplitMix64 as Rng;
use keel_core::SplitMix64;

/// keel-deep's generator for `seed`: [`SplitMix64`] started at `seed` XOR a fixed salt (so a
/// model seed and a data seed of the same value give unrelated streams).
pub fn rng(seed: u64) -> SplitMix64 {
    SplitMix64::new(seed ^ 0x5DEE_CE66_D1CE_4E5B)
}
