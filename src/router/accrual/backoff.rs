//! How long an ejected endpoint stays out: Linkerd's `failureAccrual.backoff`.
//!
//! `constant` {ms} keeps every ejection the same length. `jittered` {minMs, maxMs} (the
//! default, 5 s to 300 s) is Finagle's *equal jitter*: the first ejection lasts exactly
//! `min`; ejection `k` (counting from 0) has a ceiling of `min × 2^k`, capped at `max`, and
//! lasts half that ceiling plus a random share of the other half. Because each range starts
//! where the previous one ended (`[min·2^(k-1), min·2^k]`), consecutive ejections never get
//! shorter until the cap is reached, and every delay stays within `[min, max]`.
//!
//! Randomness is passed in as a uniform sample in `[0, 1)`, so the arithmetic is
//! deterministic under test.

use std::time::Duration;

/// How long an endpoint stays ejected, as a function of how many times in a row it has
/// been ejected without a successful probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// `kind: constant`, `ms`: every ejection lasts this long.
    Constant(Duration),
    /// `kind: jittered`, `minMs`, `maxMs`: equal-jittered exponential growth from `min`
    /// to `max`.
    Jittered {
        /// The first ejection's length, and the floor of every later one.
        min: Duration,
        /// The ceiling of every ejection.
        max: Duration,
    },
}

impl Default for Backoff {
    /// Linkerd's default: equal-jittered from 5 s to 300 s.
    fn default() -> Self {
        Backoff::Jittered {
            min: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Linkerd's `kind` for this backoff (`constant` or `jittered`).
    pub fn kind(&self) -> &'static str {
        match self {
            Backoff::Constant(_) => "constant",
            Backoff::Jittered { .. } => "jittered",
        }
    }

    /// The length of ejection number `attempt` (0 for the first ejection after the
    /// endpoint was alive, 1 after one failed probe, …). `rand` is a uniform sample in
    /// `[0, 1)`; values outside are clamped and NaN counts as 0.
    pub fn delay(&self, attempt: u32, rand: f64) -> Duration {
        let (min, max) = match *self {
            Backoff::Constant(d) => return d,
            Backoff::Jittered { min, max } if min <= max => (min, max),
            Backoff::Jittered { min, max } => (max, min),
        };
        if attempt == 0 {
            return min;
        }
        let ceiling = min.saturating_mul(1u32 << attempt.min(31)).min(max);
        let half = ceiling / 2;
        let jitter = scale(ceiling - half, rand);
        (half + jitter).clamp(min, max)
    }
}

/// `d × r` for `r` in `[0, 1]`, in integer nanoseconds (no float overflow or rounding
/// past `d`).
fn scale(d: Duration, r: f64) -> Duration {
    let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
    const ONE: u128 = 1 << 32;
    let factor = ((r * ONE as f64) as u128).min(ONE);
    let nanos = d.as_nanos() * factor / ONE;
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}
