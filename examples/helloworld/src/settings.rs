//! The settings the control endpoints change at run time (latency and
//! failure rate), shared lock-free between connection tasks, and the small
//! xorshift generator that decides which requests fail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::flags::MAX_LATENCY;

/// Latency and failure rate, readable and writable from any task.
#[derive(Debug)]
pub(crate) struct Settings {
    latency_nanos: AtomicU64,
    failure_rate_bits: AtomicU64,
    rng: AtomicU64,
}

impl Settings {
    /// Starts with the given latency (capped at [`MAX_LATENCY`]) and failure
    /// rate, seeding the generator from the clock and the process id.
    pub(crate) fn new(latency: Duration, failure_rate: f64) -> Self {
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Settings::with_seed(
            latency,
            failure_rate,
            clock ^ (u64::from(std::process::id()) << 32),
        )
    }

    /// Like [`Settings::new`] with a fixed generator seed.
    fn with_seed(latency: Duration, failure_rate: f64, seed: u64) -> Self {
        let settings = Settings {
            latency_nanos: AtomicU64::new(0),
            failure_rate_bits: AtomicU64::new(0),
            // Xorshift never leaves zero, so never start there.
            rng: AtomicU64::new(if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            }),
        };
        settings.set_latency(latency);
        settings.set_failure_rate(failure_rate);
        settings
    }

    /// The current latency.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    /// Sets the latency, capped at [`MAX_LATENCY`]; returns the value kept.
    pub(crate) fn set_latency(&self, latency: Duration) -> Duration {
        let latency = latency.min(MAX_LATENCY);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.store(nanos, Ordering::Relaxed);
        latency
    }

    /// The current failure rate, between 0 and 1.
    pub(crate) fn failure_rate(&self) -> f64 {
        f64::from_bits(self.failure_rate_bits.load(Ordering::Relaxed))
    }

    /// Sets the failure rate, clamped into 0..=1 (NaN counts as 0).
    pub(crate) fn set_failure_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.failure_rate_bits
            .store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Draws whether this request should fail: true with probability equal
    /// to the failure rate (never at 0, always at 1).
    pub(crate) fn should_fail(&self) -> bool {
        let rate = self.failure_rate();
        rate > 0.0 && self.next_unit() < rate
    }

    /// The message of a failure [`Settings::should_fail`] asked for.
    pub(crate) fn injected_failure(&self) -> String {
        format!(
            "helloworld: injected failure (failure rate {})",
            self.failure_rate()
        )
    }

    /// A pseudo-random number in `[0, 1)` from a shared xorshift64 state.
    fn next_unit(&self) -> f64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let previous = self
            .rng
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        let next = step(previous);
        (next >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rate_extremes_are_exact() {
        let settings = Settings::new(Duration::ZERO, 0.0);
        assert!((0..1000).all(|_| !settings.should_fail()));
        settings.set_failure_rate(1.0);
        assert!((0..1000).all(|_| settings.should_fail()));
    }

    #[test]
    fn failure_rate_is_roughly_respected() {
        let settings = Settings::with_seed(Duration::ZERO, 0.5, 42);
        let failures = (0..10_000).filter(|_| settings.should_fail()).count();
        assert!((4_000..6_000).contains(&failures), "{failures} failures");
    }

    #[test]
    fn latency_is_capped() {
        let settings = Settings::new(Duration::from_secs(60), 0.0);
        assert_eq!(settings.latency(), MAX_LATENCY);
        assert_eq!(
            settings.set_latency(Duration::from_millis(5)),
            Duration::from_millis(5)
        );
        assert_eq!(settings.latency(), Duration::from_millis(5));
    }
}
