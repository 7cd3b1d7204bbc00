//! Lock-free histograms for latencies and sizes, with Linkerd's "last minute" summaries.
//!
//! Recording must be cheap enough for every request on every core: a handful of relaxed
//! atomic adds into fixed buckets, no lock and no allocation. Linkerd reports stats as
//! percentiles over the last completed snapshot interval (one minute), so each histogram
//! keeps two windows of buckets: writers fill the current one, readers summarise the
//! previous one, and [`AtomicHistogram::rotate`] swaps them. Time never enters this file;
//! the registry decides when to rotate from the `now` its callers pass in.
//!
//! Buckets are log-linear: values below 64 are exact, and every power of two above that
//! is cut into 32 equal buckets, so a reported percentile (the bucket's midpoint, clamped
//! to the window's exact min and max) is within 1/64 (≈1.6 %) of the true value, about two
//! significant digits. Values of 2^30 (≈1.07·10^9) and more share one overflow bucket
//! reported as the window's max. Bucket counts are 32-bit (four billion samples per bucket
//! per window), which keeps a histogram near 6.7 KiB.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// log2 of the number of buckets each power of two is split into.
const SUB_BITS: u32 = 5;
/// Buckets per power of two.
const SUBS: usize = 1 << SUB_BITS;
/// Values below this have a bucket each.
const EXACT: u64 = 1 << (SUB_BITS + 1);
/// Values at or above `2^MAX_EXP` go to the overflow bucket.
const MAX_EXP: u32 = 30;
/// Number of regular buckets, and the index of the overflow bucket.
const OVERFLOW: usize = EXACT as usize + (MAX_EXP - SUB_BITS - 1) as usize * SUBS;
/// Total bucket count.
const BUCKETS: usize = OVERFLOW + 1;

/// The bucket a value falls into.
fn bucket_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    if exp >= MAX_EXP {
        return OVERFLOW;
    }
    let sub = (v >> (exp - SUB_BITS)) as usize - SUBS;
    EXACT as usize + (exp - SUB_BITS - 1) as usize * SUBS + sub
}

/// The value reported for a bucket: the midpoint of its range, rounded down.
/// The overflow bucket has no range; callers clamp to the window's max.
fn bucket_value(i: usize) -> u64 {
    if i < EXACT as usize {
        return i as u64;
    }
    if i >= OVERFLOW {
        return u64::MAX;
    }
    let k = i - EXACT as usize;
    let shift = (k / SUBS) as u32 + 1;
    let low = ((k % SUBS + SUBS) as u64) << shift;
    low + ((1u64 << shift) - 1) / 2
}

/// Converts a recorded value to whole units: negatives and NaN count as 0, fractions
/// round to nearest (Finagle stats are integral too).
fn to_units(value: f64) -> u64 {
    if value.is_nan() || value <= 0.0 {
        0
    } else {
        // `as` saturates at u64::MAX for huge values and infinity.
        value.round() as u64
    }
}

/// One interval's worth of samples.
struct Window {
    buckets: Box<[AtomicU32]>,
    count: AtomicU64,
    sum: AtomicU64,
    /// `u64::MAX` while empty.
    min: AtomicU64,
    max: AtomicU64,
}

impl Window {
    fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, v: u64, n: u64) {
        self.buckets[bucket_of(v)].fetch_add(n as u32, Relaxed);
        self.count.fetch_add(n, Relaxed);
        self.sum.fetch_add(v.saturating_mul(n), Relaxed);
        self.min.fetch_min(v, Relaxed);
        self.max.fetch_max(v, Relaxed);
    }

    /// Empties the window, returning the count and sum it held.
    fn drain(&self) -> (u64, u64) {
        for b in self.buckets.iter() {
            b.store(0, Relaxed);
        }
        self.min.store(u64::MAX, Relaxed);
        self.max.store(0, Relaxed);
        (self.count.swap(0, Relaxed), self.sum.swap(0, Relaxed))
    }

    fn summary(&self) -> Summary {
        let count = self.count.load(Relaxed);
        let sum = self.sum.load(Relaxed);
        if count == 0 {
            return Summary::default();
        }
        let (min, max) = (self.min.load(Relaxed), self.max.load(Relaxed));
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| u64::from(b.load(Relaxed)))
            .collect();
        // Racing writers may leave the buckets a few samples off `count`; rank against the
        // buckets themselves so every percentile lands on a filled bucket.
        let total: u64 = counts.iter().sum::<u64>().max(1);
        let pick = |q: f64| -> u64 {
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_value(i).clamp(min.min(max), max);
                }
            }
            max
        };
        Summary {
            count,
            sum,
            min,
            max,
            p50: pick(0.5),
            p90: pick(0.9),
            p95: pick(0.95),
            p99: pick(0.99),
            p9990: pick(0.999),
            p9999: pick(0.9999),
        }
    }
}

/// A summary of one window, in recorded units (milliseconds, bytes, ...).
///
/// All zero when the window saw no sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) sum: u64,
    pub(crate) min: u64,
    pub(crate) max: u64,
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p95: u64,
    pub(crate) p99: u64,
    pub(crate) p9990: u64,
    pub(crate) p9999: u64,
}

impl Summary {
    /// Mean of the window, 0 when empty.
    pub(crate) fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// A histogram written lock-free by any number of threads.
///
/// `rotate` and the readers may run concurrently with writers; the registry serialises
/// `rotate` calls among themselves.
pub(crate) struct AtomicHistogram {
    windows: [Window; 2],
    /// Index of the window writers fill.
    current: AtomicUsize,
    /// Count and sum of windows already rotated out, for lifetime totals.
    retired_count: AtomicU64,
    retired_sum: AtomicU64,
}

impl AtomicHistogram {
    pub(crate) fn new() -> Self {
        Self {
            windows: [Window::new(), Window::new()],
            current: AtomicUsize::new(0),
            retired_count: AtomicU64::new(0),
            retired_sum: AtomicU64::new(0),
        }
    }

    fn current(&self) -> &Window {
        &self.windows[self.current.load(Relaxed) & 1]
    }

    fn previous(&self) -> &Window {
        &self.windows[(self.current.load(Relaxed) + 1) & 1]
    }

    /// Records `n` samples of `value`.
    pub(crate) fn record_n(&self, value: f64, n: u64) {
        self.current().record(to_units(value), n);
    }

    /// Closes the current window: it becomes the one summarised, and writers move to a
    /// fresh window (the one summarised until now, emptied first).
    pub(crate) fn rotate(&self) {
        let (count, sum) = self.previous().drain();
        self.retired_count.fetch_add(count, Relaxed);
        self.retired_sum.fetch_add(sum, Relaxed);
        self.current.fetch_add(1, Relaxed);
    }

    /// Summary of the last closed window.
    pub(crate) fn last_window(&self) -> Summary {
        self.previous().summary()
    }

    /// Count and sum of every sample ever recorded (for Prometheus' `_count` and `_sum`).
    pub(crate) fn totals(&self) -> (u64, u64) {
        let [a, b] = &self.windows;
        (
            self.retired_count.load(Relaxed) + a.count.load(Relaxed) + b.count.load(Relaxed),
            self.retired_sum.load(Relaxed) + a.sum.load(Relaxed) + b.sum.load(Relaxed),
        )
    }
}

impl metrics::HistogramFn for AtomicHistogram {
    fn record(&self, value: f64) {
        self.record_n(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.record_n(value, count as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        assert_eq!(BUCKETS, 64 + 24 * 32 + 1);
        let mut last = 0;
        let mut v = 0u64;
        while v < 1 << MAX_EXP {
            let b = bucket_of(v);
            assert!(b == last || b == last + 1, "gap at {v}");
            last = b;
            let rep = bucket_value(b);
            let err = rep.abs_diff(v) as f64 / v.max(1) as f64;
            assert!(err <= 1.0 / 64.0, "{v} reported as {rep}");
            v = if v < 4096 { v + 1 } else { v + v / 1000 };
        }
        assert_eq!(bucket_of((1 << MAX_EXP) - 1), OVERFLOW - 1);
        assert_eq!(bucket_of(1 << MAX_EXP), OVERFLOW);
        assert_eq!(bucket_of(u64::MAX), OVERFLOW);
    }

    #[test]
    fn conversions() {
        assert_eq!(to_units(-3.0), 0);
        assert_eq!(to_units(f64::NAN), 0);
        assert_eq!(to_units(2.5), 3);
        assert_eq!(to_units(f64::INFINITY), u64::MAX);
    }

    fn within(got: u64, want: u64) {
        let err = got.abs_diff(want) as f64 / want as f64;
        assert!(err <= 1.0 / 64.0, "got {got}, want {want}");
    }

    #[test]
    fn percentiles_on_known_data() {
        let h = AtomicHistogram::new();
        for v in 1..=10_000 {
            h.record_n(v as f64, 1);
        }
        assert_eq!(h.last_window(), Summary::default(), "nothing closed yet");
        h.rotate();
        let s = h.last_window();
        assert_eq!(
            (s.count, s.sum, s.min, s.max),
            (10_000, 50_005_000, 1, 10_000)
        );
        within(s.p50, 5_000);
        within(s.p90, 9_000);
        within(s.p95, 9_500);
        within(s.p99, 9_900);
        within(s.p9990, 9_990);
        within(s.p9999, 9_999);
        assert!((s.avg() - 5_000.5).abs() < 1e-9);
    }

    #[test]
    fn small_values_are_exact_and_clamped() {
        let h = AtomicHistogram::new();
        for v in [3.0, 3.0, 7.0, 40.0] {
            h.record_n(v, 1);
        }
        h.record_n(5.0, 96);
        h.rotate();
        let s = h.last_window();
        assert_eq!((s.min, s.p50, s.p95, s.p99, s.max), (3, 5, 5, 7, 40));
        // A single huge sample is reported exactly: the overflow bucket clamps to max.
        let h = AtomicHistogram::new();
        h.record_n(5e12, 1);
        h.rotate();
        assert_eq!(h.last_window().p50, 5_000_000_000_000);
    }

    #[test]
    fn rotation_moves_windows_and_keeps_totals() {
        let h = AtomicHistogram::new();
        h.record_n(10.0, 1);
        h.rotate();
        h.record_n(20.0, 2);
        assert_eq!(h.last_window().max, 10, "the open window is not reported");
        h.rotate();
        let s = h.last_window();
        assert_eq!((s.count, s.min, s.max, s.sum), (2, 20, 20, 40));
        h.rotate();
        assert_eq!(h.last_window(), Summary::default());
        assert_eq!(h.totals(), (3, 50));
    }
}
