//! A peak-EWMA latency estimate: one per endpoint, fed with each response's latency,
//! read at any `now` without changing it.
//!
//! The estimate is a mean of the latency samples, each weighted by `exp(-age / decay)`
//! (`decay` is Linkerd's `decayTimeMs`, 10 s by default), so recent samples count most
//! and the time between samples, not their number, sets the memory. While the samples'
//! total weight is below one (a single old sample, or none), the default latency fills
//! the missing weight: after one sample `r` and then silence for `t`, the estimate is
//! `default + (r - default) * exp(-t / decay)`, which halves its distance to the default
//! every `decay * ln 2` (6.9 s with the defaults). An endpoint with a long history keeps
//! its mean until that history's weight has decayed to one sample's worth. Three rules
//! make it "peak" and failure-aware:
//!
//! * a sample slower than the current estimate replaces it outright (the estimate jumps
//!   up at once and comes down only as faster samples accumulate);
//! * a sample no slower than the current estimate never raises it;
//! * a failure counts as a sample of `max(latency, estimate) + failure penalty`, carrying
//!   the weight of one sample: an endpoint that fails fast looks slow at once, each
//!   further failure adds the penalty again, and the penalty fades with `decay` whether
//!   or not traffic returns.
//!
//! tower's `PeakEwma` is not used: its estimate changes when read and it has no failure
//! penalty (see the crate notes on linkerd2-proxy's own EWMA).

use std::time::{Duration, Instant};

/// The largest estimate kept, in seconds (about eleven days): penalties add up, and an
/// infinite estimate would turn `cost * 0` into NaN.
const MAX_SECS: f64 = 1e6;

/// Parameters of the `ewma` balancer.
#[derive(Clone, Debug, PartialEq)]
pub struct EwmaConfig {
    /// `decayTimeMs`: the time constant of the samples' weight (default 10 s).
    pub decay: Duration,
    /// The latency assumed for an endpoint without samples, and what an idle endpoint's
    /// estimate returns to (default 30 ms; not a Linkerd key).
    pub default_rtt: Duration,
    /// Added to the estimate by each failure (default 1 s; not a Linkerd key).
    pub failure_penalty: Duration,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
            failure_penalty: Duration::from_secs(1),
        }
    }
}

/// A time-decayed, peak-sensitive latency estimate (see the module documentation).
#[derive(Clone, Debug)]
pub struct PeakEwma {
    /// Seconds: the weighted mean of the samples at `stamp`.
    value: f64,
    /// The samples' total weight at `stamp`.
    weight: f64,
    /// When `value` and `weight` were last updated; `None` before the first sample.
    stamp: Option<Instant>,
    /// The decay time constant, in seconds.
    decay: f64,
    /// The default latency, in seconds.
    default: f64,
}

impl PeakEwma {
    /// An estimate without samples: it reads `default_rtt` until the first sample.
    pub fn new(decay: Duration, default_rtt: Duration) -> Self {
        PeakEwma {
            value: 0.0,
            weight: 0.0,
            stamp: None,
            decay: decay.as_secs_f64(),
            default: default_rtt.as_secs_f64().min(MAX_SECS),
        }
    }

    /// The estimate at `now`, without changing it. A `now` before the last sample reads
    /// as that sample's time.
    pub fn get_at(&self, now: Instant) -> Duration {
        Duration::try_from_secs_f64(self.secs_at(now)).unwrap_or(Duration::MAX)
    }

    /// The estimate at `now`, in seconds.
    pub(super) fn secs_at(&self, now: Instant) -> f64 {
        self.at(now).1
    }

    /// Records a successful response that took `rtt`, observed at `now`.
    pub fn observe(&mut self, now: Instant, rtt: Duration) {
        let (weight, estimate) = self.at(now);
        let rtt = rtt.as_secs_f64().min(MAX_SECS);
        self.value = if rtt > estimate {
            rtt
        } else {
            // The mean of the history and the sample; where the default filled part of
            // the estimate, the sample takes its place, but never pushes it up.
            ((self.value * weight + rtt) / (weight + 1.0)).min(estimate)
        };
        self.weight = weight + 1.0;
        self.touch(now);
    }

    /// Records a failed response that took `rtt`: the estimate becomes
    /// `max(rtt, estimate) + penalty` with the weight of one sample.
    pub fn penalize(&mut self, now: Instant, rtt: Duration, penalty: Duration) {
        let (_, estimate) = self.at(now);
        let base = rtt.as_secs_f64().max(estimate);
        self.value = (base + penalty.as_secs_f64()).min(MAX_SECS);
        self.weight = 1.0;
        self.touch(now);
    }

    /// The samples' decayed weight and the estimate at `now`.
    fn at(&self, now: Instant) -> (f64, f64) {
        let Some(stamp) = self.stamp else {
            return (0.0, self.default);
        };
        let weight = self.weight * decay_factor(now.saturating_duration_since(stamp), self.decay);
        if weight >= 1.0 {
            (weight, self.value)
        } else {
            (weight, self.value * weight + self.default * (1.0 - weight))
        }
    }

    /// Moves the stamp to `now`, never backwards.
    fn touch(&mut self, now: Instant) {
        self.stamp = Some(self.stamp.map_or(now, |s| s.max(now)));
    }
}

/// `exp(-elapsed / tau)`; with `tau` zero, samples count only at their own instant.
pub(super) fn decay_factor(elapsed: Duration, tau: f64) -> f64 {
    if tau > 0.0 {
        (-elapsed.as_secs_f64() / tau).exp()
    } else if elapsed.is_zero() {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ewma() -> PeakEwma {
        let c = EwmaConfig::default();
        PeakEwma::new(c.decay, c.default_rtt)
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn reads_the_default_before_any_sample() {
        let t0 = Instant::now();
        let e = ewma();
        assert_eq!(e.get_at(t0), 30 * MS);
        assert_eq!(e.get_at(t0 + Duration::from_secs(100)), 30 * MS);
    }

    #[test]
    fn first_sample_sets_the_estimate_either_way() {
        let t0 = Instant::now();
        let mut fast = ewma();
        fast.observe(t0, 5 * MS);
        assert!(close(ms(fast.get_at(t0)), 5.0));
        let mut slow = ewma();
        slow.observe(t0, 200 * MS);
        assert!(close(ms(slow.get_at(t0)), 200.0));
    }

    #[test]
    fn a_sample_then_silence_decays_to_the_default_with_the_documented_half_life() {
        let t0 = Instant::now();
        let mut e = ewma();
        e.observe(t0, 230 * MS);
        // Distance to the default (30 ms) is 200 ms; it halves every 10 s * ln 2.
        let half_life = Duration::from_secs_f64(10.0 * std::f64::consts::LN_2);
        assert!(close(ms(e.get_at(t0 + half_life)), 130.0));
        assert!(close(ms(e.get_at(t0 + 2 * half_life)), 80.0));
        // One time constant: 30 + 200 / e.
        let one_tau = 30.0 + 200.0 * (-1.0f64).exp();
        assert!(close(ms(e.get_at(t0 + Duration::from_secs(10))), one_tau));
        assert!((ms(e.get_at(t0 + Duration::from_secs(300))) - 30.0).abs() < 1e-6);

        // A fast endpoint decays up to the default the same way.
        let mut f = ewma();
        f.observe(t0, 10 * MS);
        assert!(close(ms(f.get_at(t0 + half_life)), 20.0));
    }

    #[test]
    fn reading_does_not_change_the_estimate() {
        let t0 = Instant::now();
        let mut e = ewma();
        e.observe(t0, 100 * MS);
        let later = t0 + Duration::from_secs(5);
        let first = e.get_at(later);
        for _ in 0..10 {
            let _ = e.get_at(t0 + Duration::from_secs(7));
        }
        assert_eq!(e.get_at(later), first);
    }

    #[test]
    fn a_slower_sample_is_a_peak_and_recovery_is_gradual() {
        let t0 = Instant::now();
        let mut e = ewma();
        // A long history of 10 ms samples, one every 10 ms for 60 s (the weight reaches
        // its steady state, about 1000 samples' worth).
        let mut now = t0;
        for _ in 0..6000 {
            e.observe(now, 10 * MS);
            now += 10 * MS;
        }
        assert!(close(ms(e.get_at(now)), 10.0));
        e.observe(now, 500 * MS);
        assert!(close(ms(e.get_at(now)), 500.0), "jumps to the peak");
        // 10 ms samples bring it down by the samples' share of the weight: after one
        // decay time of them the peak's share is about 1/e.
        for _ in 0..1000 {
            now += 10 * MS;
            e.observe(now, 10 * MS);
        }
        let after = ms(e.get_at(now));
        let expected = 10.0 + 490.0 * (-1.0f64).exp();
        assert!((after - expected).abs() < 5.0, "{after} vs {expected}");
        assert!(after < 500.0 && after > 10.0);
    }

    #[test]
    fn a_faster_sample_never_raises_the_estimate() {
        let t0 = Instant::now();
        let mut e = ewma();
        e.observe(t0, 300 * MS);
        // Half-decayed toward 30 ms: about 165 ms; a 150 ms sample lowers it.
        let t = t0 + Duration::from_secs_f64(10.0 * std::f64::consts::LN_2);
        let before = ms(e.get_at(t));
        e.observe(t, 150 * MS);
        let after = ms(e.get_at(t));
        assert!(after <= before, "{after} > {before}");
        assert!(after >= 150.0 - 1e-9);
    }

    #[test]
    fn failures_penalize_and_compound_then_fade() {
        let t0 = Instant::now();
        let mut e = ewma();
        e.observe(t0, MS);
        e.penalize(t0 + MS, MS, Duration::from_secs(1));
        let one = ms(e.get_at(t0 + MS));
        assert!((one - 1001.0).abs() < 0.1, "{one}");
        e.penalize(t0 + 2 * MS, MS, Duration::from_secs(1));
        let two = ms(e.get_at(t0 + 2 * MS));
        assert!(two > 2000.0, "{two}");
        // The penalty carries one sample's weight: it fades toward the default.
        let later = ms(e.get_at(t0 + Duration::from_secs(100)));
        assert!((later - 30.0).abs() < 1.0, "{later}");
        // And successes pull it down quickly.
        let mut f = ewma();
        f.penalize(t0, MS, Duration::from_secs(1));
        for i in 1..=9 {
            f.observe(t0 + i * MS, MS);
        }
        assert!(ms(f.get_at(t0 + 9 * MS)) < 150.0);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut e = ewma();
        e.observe(t0, 50 * MS);
        e.observe(t0 - Duration::from_secs(5), 20 * MS);
        assert!(ms(e.get_at(t0 - Duration::from_secs(9))) <= 50.0);
        assert!(ms(e.get_at(t0)).is_finite());
    }

    #[test]
    fn zero_decay_keeps_only_the_current_instant() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::ZERO, 30 * MS);
        e.observe(t0, 100 * MS);
        assert!(close(ms(e.get_at(t0)), 100.0));
        assert!(close(ms(e.get_at(t0 + MS)), 30.0));
    }
}
