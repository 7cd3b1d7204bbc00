//! Phase 5, choose: one bound leaf of the tree (unions split traffic by weight); the
//! client's balancer (see [`super::balance`]) then picks one of the leaf's endpoints.
//! Also the per-thread random source both use.

use std::cell::Cell;

use super::error::ProxyError;
use crate::naming::{Bound, NameTree, choose};

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A different seed per thread and process (std's hasher keys are random).
fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1
}

/// A uniform number in `[0, 1)` from a per-thread xorshift64* generator.
pub fn uniform() -> f64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// A random identifier (16 hex digits), for request ids and obfuscated labels.
pub fn random_id() -> String {
    let hi = (uniform() * (1u64 << 32) as f64) as u64;
    let lo = (uniform() * (1u64 << 32) as f64) as u64;
    let id = hi << 32 | lo;
    // Every request gets one: written out digit by digit, without `format!`'s machinery.
    (0..16)
        .rev()
        .map(|i| char::from(b"0123456789abcdef"[(id >> (i * 4)) as usize & 0xf]))
        .collect()
}

/// The leaf a request goes to.
pub fn leaf(
    tree: &NameTree<Bound>,
    no_hosts: impl Fn() -> ProxyError,
) -> Result<&Bound, ProxyError> {
    choose(tree, &mut uniform).ok_or_else(no_hosts)
}
