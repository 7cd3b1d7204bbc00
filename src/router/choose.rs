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
    random_hex().iter().map(|&b| char::from(b)).collect()
}

/// [`random_id`]'s digits, as bytes: every request gets one (its `l5d-reqid`), written
/// out digit by digit without `format!`'s machinery or a `String` of its own.
pub fn random_hex() -> [u8; 16] {
    let hi = (uniform() * (1u64 << 32) as f64) as u64;
    let lo = (uniform() * (1u64 << 32) as f64) as u64;
    let id = hi << 32 | lo;
    std::array::from_fn(|i| b"0123456789abcdef"[(id >> ((15 - i) * 4)) as usize & 0xf])
}

/// The leaf a request goes to.
pub fn leaf(
    tree: &NameTree<Bound>,
    no_hosts: impl Fn() -> ProxyError,
) -> Result<&Bound, ProxyError> {
    choose(tree, &mut uniform).ok_or_else(no_hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sixteen_lowercase_hex_digits_and_differ() {
        let a = random_id();
        assert_eq!(a.len(), 16, "{a}");
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{a}"
        );
        assert_ne!(random_hex(), random_hex());
    }
}
