//! Delays between the retries of one request (`retries.backoff`).
//!
//! Linkerd 1.x offers two kinds. `constant` waits the same `ms` (default 0) before every
//! retry. `jittered` is *decorrelated jitter*: the first retry waits `minMs`, each later
//! one a uniformly random time between `minMs` and three times the previous delay, capped
//! at `maxMs`. The delays grow roughly geometrically while staying spread out, so the
//! retries of many clients do not arrive in lockstep.
//!
//! A [`Backoff`] is the per-request state: call [`Backoff::next_delay`] once per retry with
//! a uniform random number in `[0, 1)` (the caller owns the generator, so tests choose the
//! numbers). It never ends: how many retries happen is the budget's and the deadline's
//! business, not the backoff's.

use std::fmt;
use std::time::Duration;

/// The floor of the jittered range when `minMs` is 0, so the delays can still grow.
const JITTER_FLOOR: Duration = Duration::from_millis(1);

/// A configured backoff (`retries.backoff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffConfig {
    /// `kind: constant`: the same delay before every retry.
    Constant {
        /// `ms` (default 0).
        delay: Duration,
    },
    /// `kind: jittered`: decorrelated jitter between `min` and `max`.
    Jittered {
        /// `minMs`: the first delay, and the least of any later one.
        min: Duration,
        /// `maxMs`: the cap.
        max: Duration,
    },
}

impl Default for BackoffConfig {
    /// `constant` with 0 ms: retry at once.
    fn default() -> Self {
        BackoffConfig::Constant {
            delay: Duration::ZERO,
        }
    }
}

/// Why a backoff configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffError {
    /// The configured `minMs`.
    pub min: Duration,
    /// The configured `maxMs`, less than `min`.
    pub max: Duration,
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "jittered backoff: maxMs ({} ms) is less than minMs ({} ms)",
            self.max.as_millis(),
            self.min.as_millis()
        )
    }
}

impl std::error::Error for BackoffError {}

impl BackoffConfig {
    /// `kind: constant` with `ms`.
    pub fn constant(delay: Duration) -> BackoffConfig {
        BackoffConfig::Constant { delay }
    }

    /// `kind: jittered` with `minMs` and `maxMs`; `max` must not be less than `min`.
    pub fn jittered(min: Duration, max: Duration) -> Result<BackoffConfig, BackoffError> {
        if max < min {
            return Err(BackoffError { min, max });
        }
        Ok(BackoffConfig::Jittered { min, max })
    }

    /// The delays for a new request.
    pub fn start(self) -> Backoff {
        Backoff {
            config: self,
            prev: None,
        }
    }
}

/// The backoff state of one request: the delays still to come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    config: BackoffConfig,
    /// The delay returned last; `None` before the first retry.
    prev: Option<Duration>,
}

/// `span × random` rounded down, with `random` clamped to `[0, 1]` (NaN as 0). Integer
/// arithmetic on a 53-bit fixed-point fraction, so halves and quarters are exact.
fn scale(span: Duration, random: f64) -> Duration {
    const ONE: u128 = 1 << 53;
    let r = if random.is_nan() {
        0.0
    } else {
        random.clamp(0.0, 1.0)
    };
    let fraction = (r * ONE as f64) as u128;
    let nanos = span.as_nanos() * fraction / ONE;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl Backoff {
    /// The delay before the next retry. `random` is uniform in `[0, 1)`; values outside
    /// are clamped (NaN counts as 0). Only `jittered` uses it.
    ///
    /// `jittered` returns `min` first, then `min(max, min + random × (3 × prev − min))`.
    /// When `min` is 0 the upper end of the range is at least 1 ms, so the sequence can
    /// leave zero (Finagle's would stay at zero forever); it is still capped at `max`.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let delay = match self.config {
            BackoffConfig::Constant { delay } => delay,
            BackoffConfig::Jittered { min, max } => match self.prev {
                None => min,
                Some(prev) => {
                    let high = prev.saturating_mul(3).max(min).max(JITTER_FLOOR);
                    (min + scale(high - min, random)).min(max)
                }
            },
        };
        self.prev = Some(delay);
        delay
    }

    /// The configuration these delays come from.
    pub fn config(&self) -> BackoffConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn default_is_immediate() {
        let mut b = BackoffConfig::default().start();
        for r in [0.0, 0.5, 0.99] {
            assert_eq!(b.next_delay(r), Duration::ZERO);
        }
    }

    #[test]
    fn constant_ignores_randomness() {
        let mut b = BackoffConfig::constant(ms(250)).start();
        for r in [0.0, 0.3, 0.999, f64::NAN, 7.0] {
            assert_eq!(b.next_delay(r), ms(250));
        }
    }

    #[test]
    fn jittered_rejects_max_below_min() {
        assert_eq!(
            BackoffConfig::jittered(ms(10), ms(5)),
            Err(BackoffError {
                min: ms(10),
                max: ms(5)
            })
        );
        assert!(BackoffConfig::jittered(ms(10), ms(10)).is_ok());
    }

    #[test]
    fn jittered_starts_at_min_then_follows_the_previous_delay() {
        let mut b = BackoffConfig::jittered(ms(100), ms(10_000))
            .unwrap()
            .start();
        assert_eq!(b.next_delay(0.9), ms(100));
        // Range [100, 300): the bottom, the middle, the top.
        let mut low = b;
        assert_eq!(low.next_delay(0.0), ms(100));
        let mut mid = b;
        assert_eq!(mid.next_delay(0.5), ms(200));
        assert_eq!(b.next_delay(1.0), ms(300));
        // Next range [100, 900).
        assert_eq!(b.next_delay(1.0), ms(900));
        assert_eq!(b.next_delay(0.5), ms(1_400)); // 100 + 0.5 × (2 700 − 100)
    }

    #[test]
    fn jittered_is_capped_at_max() {
        let mut b = BackoffConfig::jittered(ms(100), ms(1_000)).unwrap().start();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(delays[..4], [ms(100), ms(300), ms(900), ms(1_000)]);
        assert!(delays[4..].iter().all(|&d| d == ms(1_000)));
    }

    #[test]
    fn jittered_from_zero_can_grow() {
        let mut b = BackoffConfig::jittered(Duration::ZERO, ms(50))
            .unwrap()
            .start();
        assert_eq!(b.next_delay(0.5), Duration::ZERO);
        assert_eq!(b.next_delay(1.0), ms(1));
        assert_eq!(b.next_delay(1.0), ms(3));
        assert_eq!(b.next_delay(1.0), ms(9));
    }

    #[test]
    fn jittered_equal_bounds_is_constant() {
        let mut b = BackoffConfig::jittered(ms(40), ms(40)).unwrap().start();
        for r in [0.0, 0.5, 0.99] {
            assert_eq!(b.next_delay(r), ms(40));
        }
    }

    proptest! {
        /// Every jittered delay lies in `[min, max]` and below three times the previous one
        /// (or the 1 ms floor).
        #[test]
        fn jittered_stays_in_bounds(
            min_ms in 0u64..2_000,
            extra_ms in 0u64..60_000,
            randoms in prop::collection::vec(0.0f64..1.0, 1..50),
        ) {
            let (min, max) = (ms(min_ms), ms(min_ms + extra_ms));
            let mut b = BackoffConfig::jittered(min, max).unwrap().start();
            let mut prev: Option<Duration> = None;
            for r in randoms {
                let d = b.next_delay(r);
                prop_assert!(min <= d && d <= max, "{:?} outside [{:?}, {:?}]", d, min, max);
                if let Some(p) = prev {
                    prop_assert!(d <= (p * 3).max(min).max(JITTER_FLOOR));
                } else {
                    prop_assert_eq!(d, min);
                }
                prev = Some(d);
            }
        }
    }
}
