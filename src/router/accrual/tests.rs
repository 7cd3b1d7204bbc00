//! Tests of the failure-accrual core: explicit instants (a base plus durations) and fixed
//! random samples, so every run takes the same path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 8080))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An accrual over `n` endpoints (`addr(1)..=addr(n)`), created at `t0`.
fn accrual(config: AccrualConfig, n: u8, t0: Instant) -> Accrual {
    let mut a = Accrual::new(config);
    let addrs: Vec<_> = (1..=n).map(addr).collect();
    a.set_endpoints(&addrs, t0);
    a
}

fn consecutive(failures: u32, backoff: Backoff) -> AccrualConfig {
    AccrualConfig {
        policy: Policy::ConsecutiveFailures { failures },
        backoff,
    }
}

/// Fails `addr` `n` times at `now`, returning the last transition.
fn fail(a: &mut Accrual, addr: SocketAddr, now: Instant, n: usize) -> Option<Transition> {
    let mut last = None;
    for _ in 0..n {
        last = a.record(addr, now, false, 0.5);
    }
    last
}

// === consecutive failures ===

#[test]
fn five_consecutive_failures_eject_and_four_do_not() {
    let t0 = Instant::now();
    let mut a = accrual(AccrualConfig::default(), 2, t0);
    assert_eq!(fail(&mut a, addr(1), t0, 4), None);
    assert!(a.is_available(addr(1), t0));
    assert_eq!(
        a.record(addr(1), t0, false, 0.5),
        Some(Transition::Removed {
            reason: Reason::ConsecutiveFailures { failures: 5 },
            backoff: secs(5),
        })
    );
    assert!(!a.is_available(addr(1), t0));
    assert_eq!(a.available(t0), vec![addr(2)]);
    assert_eq!(a.ejected_count(), 1);
}

#[test]
fn a_success_resets_the_count() {
    let t0 = Instant::now();
    let mut a = accrual(AccrualConfig::default(), 1, t0);
    assert_eq!(fail(&mut a, addr(1), t0, 4), None);
    assert_eq!(a.record(addr(1), t0, true, 0.5), None);
    assert_eq!(fail(&mut a, addr(1), t0, 4), None);
    assert!(a.is_available(addr(1), t0));
    assert!(matches!(
        fail(&mut a, addr(1), t0, 1),
        Some(Transition::Removed { .. })
    ));
}

#[test]
fn ejected_endpoint_is_out_until_the_backoff_then_one_probe_goes() {
    let t0 = Instant::now();
    let mut a = accrual(AccrualConfig::default(), 2, t0);
    fail(&mut a, addr(1), t0, 5);
    let before = t0 + secs(5) - ms(1);
    assert!(!a.is_available(addr(1), before));
    assert!(!a.try_acquire(addr(1), before));
    assert_eq!(a.available(before), vec![addr(2)]);
    assert_eq!(a.removed_for(addr(1), before), secs(5) - ms(1));
    assert_eq!(a.next_deadline(t0), Some(t0 + secs(5)));

    let open = t0 + secs(5);
    assert!(a.is_available(addr(1), open));
    assert_eq!(a.available(open), vec![addr(1), addr(2)]);
    assert!(a.try_acquire(addr(1), open), "the probe");
    assert!(!a.try_acquire(addr(1), open), "only one probe");
    assert!(!a.try_acquire(addr(1), open + secs(1)));
    assert!(!a.is_available(addr(1), open));
    assert_eq!(a.available(open), vec![addr(2)]);
    // The alive endpoint is unaffected.
    assert!(a.try_acquire(addr(2), open));
    assert!(a.try_acquire(addr(2), open));
}

#[test]
fn outcomes_while_dead_are_ignored() {
    let t0 = Instant::now();
    let mut a = accrual(AccrualConfig::default(), 1, t0);
    fail(&mut a, addr(1), t0, 5);
    let late = t0 + secs(1);
    assert_eq!(a.record(addr(1), late, true, 0.5), None);
    assert_eq!(a.record(addr(1), late, false, 0.5), None);
    let e = a.ejected(addr(1)).expect("still ejected");
    assert_eq!(e.next_probe, t0 + secs(5));
    assert_eq!(e.consecutive_failures, 5);
    assert_eq!(e.ejections, 1);
}

#[test]
fn probe_success_revives_and_resets_backoff_and_policy() {
    let t0 = Instant::now();
    let cfg = consecutive(
        5,
        Backoff::Jittered {
            min: secs(1),
            max: secs(60),
        },
    );
    let mut a = accrual(cfg, 1, t0);
    fail(&mut a, addr(1), t0, 5);
    // One failed probe, so the next backoff is longer.
    let t1 = t0 + secs(1);
    assert!(a.try_acquire(addr(1), t1));
    assert!(matches!(
        a.record(addr(1), t1, false, 0.5),
        Some(Transition::ProbeFailed { ejections: 2, .. })
    ));
    let t2 = a.ejected(addr(1)).unwrap().next_probe;
    assert!(a.try_acquire(addr(1), t2));
    assert_eq!(
        a.record(addr(1), t2, true, 0.5),
        Some(Transition::Revived {
            removed_for: t2 - t0
        })
    );
    assert!(a.is_available(addr(1), t2));
    assert!(a.try_acquire(addr(1), t2));
    assert_eq!(a.removed_for(addr(1), t2), Duration::ZERO);
    assert!(a.ejected(addr(1)).is_none());
    // The policy starts over: four failures are not enough.
    assert_eq!(fail(&mut a, addr(1), t2, 4), None);
    // And the backoff is back at its start.
    assert_eq!(
        fail(&mut a, addr(1), t2, 1),
        Some(Transition::Removed {
            reason: Reason::ConsecutiveFailures { failures: 5 },
            backoff: secs(1),
        })
    );
    assert_eq!(a.ejected(addr(1)).unwrap().ejections, 1);
}

#[test]
fn probe_failure_re_ejects_for_longer_up_to_the_max() {
    let t0 = Instant::now();
    let cfg = consecutive(
        1,
        Backoff::Jittered {
            min: secs(1),
            max: secs(8),
        },
    );
    let mut a = accrual(cfg, 1, t0);
    let Some(Transition::Removed { backoff, .. }) = a.record(addr(1), t0, false, 0.99) else {
        panic!("not ejected");
    };
    assert_eq!(backoff, secs(1));
    let mut now = t0;
    let mut previous = backoff;
    let mut seen = vec![backoff];
    for ejections in 2..12 {
        now = a.ejected(addr(1)).unwrap().next_probe;
        assert!(a.try_acquire(addr(1), now));
        let Some(Transition::ProbeFailed {
            backoff,
            ejections: n,
        }) = a.record(addr(1), now, false, 0.99)
        else {
            panic!("probe failure did not re-eject");
        };
        assert_eq!(n, ejections);
        assert!(backoff >= previous, "{backoff:?} < {previous:?}");
        assert!(backoff <= secs(8));
        let e = a.ejected(addr(1)).unwrap();
        assert_eq!(e.next_probe, now + backoff);
        assert_eq!(e.since, t0);
        assert_eq!(e.consecutive_failures, ejections);
        previous = backoff;
        seen.push(backoff);
    }
    assert!(seen[3] > seen[1], "grows: {seen:?}");
    assert!(*seen.last().unwrap() > secs(7), "reaches the max: {seen:?}");
    assert_eq!(a.removed_for(addr(1), now), now - t0);
}

// === backoff ===

#[test]
fn jittered_backoff_stays_within_bounds_and_grows() {
    let b = Backoff::default();
    let (min, max) = (secs(5), secs(300));
    let samples = [0.0, 0.25, 0.5, 0.999_999, 1.0, -3.0, 7.0, f64::NAN];
    for attempt in 0..70 {
        for r in samples {
            let d = b.delay(attempt, r);
            assert!(min <= d && d <= max, "attempt {attempt}, r {r}: {d:?}");
        }
    }
    assert_eq!(b.delay(0, 0.0), min);
    assert_eq!(b.delay(0, 0.999), min);
    // Equal jitter: attempt k lies in [min·2^(k-1), min·2^k], so until the cap the
    // shortest delay of one attempt is at least the longest of the one before.
    for attempt in 0..5 {
        assert!(b.delay(attempt + 1, 0.0) >= b.delay(attempt, 0.999_999));
    }
    assert_eq!(b.delay(1, 0.0), secs(5));
    assert_eq!(b.delay(1, 0.5), ms(7500));
    assert_eq!(b.delay(3, 0.0), secs(20));
    assert_eq!(b.delay(3, 0.5), secs(30));
    assert!(b.delay(3, 0.999_999) < secs(40));
    // Capped: half the max plus jitter.
    assert_eq!(b.delay(40, 0.0), secs(150));
    assert!(b.delay(40, 0.999_999) > secs(299));
    assert_eq!(b.delay(u32::MAX, 1.0), max);
}

#[test]
fn jittered_backoff_with_swapped_or_equal_bounds() {
    let b = Backoff::Jittered {
        min: secs(9),
        max: secs(3),
    };
    for attempt in 0..10 {
        let d = b.delay(attempt, 0.7);
        assert!(secs(3) <= d && d <= secs(9));
    }
    let flat = Backoff::Jittered {
        min: secs(4),
        max: secs(4),
    };
    for attempt in 0..10 {
        assert_eq!(flat.delay(attempt, 0.3), secs(4));
    }
}

#[test]
fn constant_backoff() {
    let b = Backoff::Constant(secs(7));
    assert_eq!(b.kind(), "constant");
    for attempt in [0, 1, 2, 10, u32::MAX] {
        assert_eq!(b.delay(attempt, 0.9), secs(7));
    }
    let t0 = Instant::now();
    let mut a = accrual(consecutive(2, b), 1, t0);
    fail(&mut a, addr(1), t0, 2);
    let mut now = t0;
    for _ in 0..5 {
        now += secs(7);
        assert!(a.try_acquire(addr(1), now));
        assert!(matches!(
            a.record(addr(1), now, false, 0.9),
            Some(Transition::ProbeFailed { backoff, .. }) if backoff == secs(7)
        ));
    }
}

// === success rate ===

fn success_rate(success_rate: f64, requests: u32) -> AccrualConfig {
    AccrualConfig {
        policy: Policy::SuccessRate {
            success_rate,
            requests,
        },
        backoff: Backoff::Constant(secs(10)),
    }
}

#[test]
fn success_rate_ewma_ejects_below_the_threshold() {
    let t0 = Instant::now();
    let mut a = accrual(success_rate(0.9, 20), 1, t0);
    for _ in 0..20 {
        assert_eq!(a.record(addr(1), t0, true, 0.5), None);
    }
    let w = (-1.0f64 / 20.0).exp();
    let ewma = |a: &Accrual| a.endpoint(addr(1)).unwrap().policy().ewma().unwrap();
    assert_eq!(ewma(&a), 1.0);
    // Each failure multiplies the average by w = e^(-1/20) ≈ 0.951.
    assert_eq!(a.record(addr(1), t0, false, 0.5), None);
    assert!((ewma(&a) - w).abs() < 1e-12);
    assert_eq!(a.record(addr(1), t0, false, 0.5), None);
    assert!((ewma(&a) - w * w).abs() < 1e-12, "0.905 is still above 0.9");
    let Some(Transition::Removed {
        reason: Reason::SuccessRate { rate },
        backoff,
    }) = a.record(addr(1), t0, false, 0.5)
    else {
        panic!("0.861 is below 0.9");
    };
    assert!((rate - w * w * w).abs() < 1e-12);
    assert_eq!(backoff, secs(10));
}

#[test]
fn success_rate_ewma_math() {
    let t0 = Instant::now();
    let mut a = accrual(success_rate(0.0, 4), 1, t0);
    let w = (-1.0f64 / 4.0).exp();
    let mut expected = None;
    for (i, ok) in [false, true, true, false, true].into_iter().enumerate() {
        a.record(addr(1), t0, ok, 0.5);
        let x = if ok { 1.0 } else { 0.0 };
        // The first request sets the average; then new = x + w (old - x).
        let e = match expected {
            None => x,
            Some(old) => x + w * (old - x),
        };
        expected = Some(e);
        let got = a.endpoint(addr(1)).unwrap().policy().ewma().unwrap();
        assert!((got - e).abs() < 1e-12, "request {i}: {got} != {e}");
    }
}

#[test]
fn success_rate_needs_the_window_of_requests() {
    let t0 = Instant::now();
    let mut a = accrual(success_rate(0.9, 20), 1, t0);
    for _ in 0..19 {
        assert_eq!(a.record(addr(1), t0, false, 0.5), None);
    }
    assert!(matches!(
        a.record(addr(1), t0, false, 0.5),
        Some(Transition::Removed {
            reason: Reason::SuccessRate { rate },
            ..
        }) if rate == 0.0
    ));
    // Revival starts a fresh window.
    let t1 = t0 + secs(10);
    assert!(matches!(
        a.record(addr(1), t1, true, 0.5),
        Some(Transition::Revived { .. })
    ));
    for _ in 0..19 {
        assert_eq!(a.record(addr(1), t1, false, 0.5), None);
    }
    assert!(a.record(addr(1), t1, false, 0.5).is_some());
}

#[test]
fn a_success_never_ejects_under_success_rate() {
    let t0 = Instant::now();
    let mut a = accrual(success_rate(1.0, 2), 1, t0);
    assert_eq!(a.record(addr(1), t0, false, 0.5), None);
    // Below 1.0 after two requests, but the verdict is only given on a failure.
    assert_eq!(a.record(addr(1), t0, true, 0.5), None);
    assert!(a.record(addr(1), t0, false, 0.5).is_some());
}

// === windowed success rate ===

fn windowed(success_rate: f64, window: Duration) -> AccrualConfig {
    AccrualConfig {
        policy: Policy::SuccessRateWindowed {
            success_rate,
            window,
        },
        backoff: Backoff::Constant(secs(30)),
    }
}

#[test]
fn windowed_success_rate_waits_for_a_full_window() {
    let t0 = Instant::now();
    let mut a = accrual(windowed(0.5, secs(10)), 1, t0);
    for s in 0..10 {
        assert_eq!(fail(&mut a, addr(1), t0 + secs(s) + ms(999), 3), None);
    }
    assert!(matches!(
        a.record(addr(1), t0 + secs(10), false, 0.5),
        Some(Transition::Removed {
            reason: Reason::SuccessRate { rate },
            ..
        }) if rate == 0.0
    ));
}

#[test]
fn windowed_success_rate_remembers_within_the_window() {
    let t0 = Instant::now();
    let mut a = accrual(windowed(0.5, secs(10)), 1, t0);
    fail(&mut a, addr(1), t0 + secs(1), 4);
    // 9.5 s later the four failures still count: 2 ok of 7.
    let later = t0 + ms(10_500);
    a.record(addr(1), later, true, 0.5);
    a.record(addr(1), later, true, 0.5);
    assert!(matches!(
        a.record(addr(1), later, false, 0.5),
        Some(Transition::Removed { reason: Reason::SuccessRate { rate }, .. })
            if (rate - 2.0 / 7.0).abs() < 1e-12
    ));
}

#[test]
fn windowed_success_rate_forgets_after_the_window() {
    let t0 = Instant::now();
    let mut a = accrual(windowed(0.5, secs(10)), 1, t0);
    fail(&mut a, addr(1), t0 + secs(1), 4);
    // 11 s later the four failures are forgotten: 2 ok of 3.
    let later = t0 + secs(12);
    a.record(addr(1), later, true, 0.5);
    a.record(addr(1), later, true, 0.5);
    assert_eq!(a.record(addr(1), later, false, 0.5), None);
    assert!(a.is_available(addr(1), later));
    // Two more failures in the window: 2 ok of 5.
    assert_eq!(a.record(addr(1), later + secs(1), false, 0.5), None);
    assert!(matches!(
        a.record(addr(1), later + secs(2), false, 0.5),
        Some(Transition::Removed { reason: Reason::SuccessRate { rate }, .. })
            if (rate - 0.4).abs() < 1e-12
    ));
}

#[test]
fn windowed_success_rate_starts_over_after_revival() {
    let t0 = Instant::now();
    let mut a = accrual(windowed(0.5, secs(10)), 1, t0);
    let t1 = t0 + secs(10);
    assert!(fail(&mut a, addr(1), t1, 1).is_some());
    let t2 = t1 + secs(30);
    assert!(matches!(
        a.record(addr(1), t2, true, 0.5),
        Some(Transition::Revived { .. })
    ));
    // A fresh window: failures during the first 10 s do not eject.
    assert_eq!(fail(&mut a, addr(1), t2 + secs(9), 10), None);
    assert!(fail(&mut a, addr(1), t2 + secs(10), 1).is_some());
}

// === none ===

#[test]
fn none_never_ejects() {
    let t0 = Instant::now();
    let cfg = AccrualConfig {
        policy: Policy::Disabled,
        backoff: Backoff::default(),
    };
    assert_eq!(cfg.policy.kind(), "none");
    let mut a = accrual(cfg, 1, t0);
    for i in 0..1000 {
        assert_eq!(a.record(addr(1), t0 + ms(i), false, 0.5), None);
    }
    assert!(a.is_available(addr(1), t0));
    assert!(!a.all_ejected(t0));
    assert!(a.snapshot().ejected().is_empty());
}

// === the endpoint set ===

#[test]
fn set_endpoints_keeps_survivors_and_drops_the_removed() {
    let t0 = Instant::now();
    let mut a = accrual(AccrualConfig::default(), 3, t0);
    fail(&mut a, addr(1), t0, 5);
    fail(&mut a, addr(2), t0, 3);
    fail(&mut a, addr(3), t0, 5);
    let t1 = t0 + secs(1);
    a.set_endpoints(&[addr(2), addr(3), addr(4), addr(3)], t1);
    assert_eq!(a.endpoints(), &[addr(2), addr(3), addr(4)]);
    // addr(1) is forgotten.
    assert!(!a.is_available(addr(1), t1));
    assert!(!a.try_acquire(addr(1), t1));
    assert_eq!(a.record(addr(1), t1, false, 0.5), None);
    assert_eq!(a.removed_for(addr(1), t1), Duration::ZERO);
    assert!(a.ejected(addr(1)).is_none());
    // addr(3) is still out, addr(2) keeps its count, addr(4) is new and alive.
    assert_eq!(a.removed_for(addr(3), t1), secs(1));
    assert_eq!(a.available(t1), vec![addr(2), addr(4)]);
    assert!(fail(&mut a, addr(2), t1, 2).is_some());
    assert_eq!(fail(&mut a, addr(4), t1, 4), None);
    let snap = a.snapshot();
    assert_eq!(snap.endpoints(), 3);
    let out: Vec<_> = snap.ejected().iter().map(|(a, _)| *a).collect();
    assert_eq!(out, vec![addr(2), addr(3)]);
    // Coming back, addr(1) starts alive.
    a.set_endpoints(&[addr(1), addr(3)], t1);
    assert!(a.is_available(addr(1), t1));
    assert!(!a.is_available(addr(3), t1));
    assert_eq!(a.ejected_count(), 1);
}

// === all endpoints ejected ===

#[test]
fn all_ejected_fails_open() {
    let t0 = Instant::now();
    let mut a = accrual(AccrualConfig::default(), 2, t0);
    assert!(!a.all_ejected(t0));
    fail(&mut a, addr(1), t0, 5);
    assert!(!a.all_ejected(t0));
    fail(&mut a, addr(2), t0 + secs(1), 5);
    let t1 = t0 + secs(2);
    assert!(a.all_ejected(t1));
    assert!(a.snapshot().all_ejected(t1));
    // Fail open: balance over every endpoint.
    assert_eq!(a.available(t1), vec![addr(1), addr(2)]);
    // addr(1)'s probe opens: it is the only one available.
    let t2 = t0 + secs(5);
    assert!(!a.all_ejected(t2));
    assert_eq!(a.available(t2), vec![addr(1)]);
    // Its probe is in flight: every endpoint is out again, so fail open again.
    assert!(a.try_acquire(addr(1), t2));
    assert!(a.all_ejected(t2));
    assert_eq!(a.available(t2), vec![addr(1), addr(2)]);
    // Fail-open traffic to addr(2) while it is dead changes nothing.
    assert_eq!(a.record(addr(2), t2, true, 0.5), None);
    assert!(a.all_ejected(t2));
    // The probe succeeds.
    assert!(matches!(
        a.record(addr(1), t2, true, 0.5),
        Some(Transition::Revived { .. })
    ));
    assert!(!a.all_ejected(t2));
    assert_eq!(a.available(t2), vec![addr(1)]);
}

#[test]
fn no_endpoints_is_not_all_ejected() {
    let t0 = Instant::now();
    let a = Accrual::new(AccrualConfig::default());
    assert!(!a.all_ejected(t0));
    assert!(a.available(t0).is_empty());
    assert!(!a.snapshot().all_ejected(t0));
    assert_eq!(a.next_deadline(t0), None);
}

// === lost probes ===

#[test]
fn a_lost_probe_does_not_wedge_the_endpoint() {
    let t0 = Instant::now();
    let mut a = accrual(AccrualConfig::default(), 1, t0);
    fail(&mut a, addr(1), t0, 5);
    let t1 = t0 + secs(5);
    assert!(a.try_acquire(addr(1), t1));
    // No outcome comes back. The claim lasts one backoff (5 s).
    assert_eq!(a.next_deadline(t1), Some(t1 + secs(5)));
    assert!(!a.is_available(addr(1), t1 + secs(5) - ms(1)));
    assert!(!a.try_acquire(addr(1), t1 + secs(5) - ms(1)));
    let t2 = t1 + secs(5);
    assert!(a.is_available(addr(1), t2));
    assert!(a.try_acquire(addr(1), t2), "a new probe");
    assert!(!a.try_acquire(addr(1), t2), "still only one at a time");
    // Whichever outcome arrives first decides.
    assert!(matches!(
        a.record(addr(1), t2 + secs(1), true, 0.5),
        Some(Transition::Revived { .. })
    ));
    assert!(a.is_available(addr(1), t2 + secs(1)));
}

#[test]
fn a_zero_backoff_still_grants_one_probe_per_second() {
    let t0 = Instant::now();
    let mut a = accrual(consecutive(1, Backoff::Constant(Duration::ZERO)), 1, t0);
    assert!(fail(&mut a, addr(1), t0, 1).is_some());
    assert!(a.try_acquire(addr(1), t0));
    assert!(!a.try_acquire(addr(1), t0 + ms(999)));
    assert!(a.try_acquire(addr(1), t0 + MIN_PROBE_TIMEOUT));
}

// === snapshots ===

#[test]
fn snapshot_shares_the_probe_with_the_actor() {
    let t0 = Instant::now();
    let mut a = accrual(AccrualConfig::default(), 2, t0);
    fail(&mut a, addr(2), t0, 5);
    let snap = a.snapshot();
    let copy = snap.clone();
    let view = snap.get(addr(2)).expect("ejected");
    assert_eq!(view.since, t0);
    assert_eq!(view.next_probe, t0 + secs(5));
    assert_eq!(view.backoff, secs(5));
    assert_eq!(view.consecutive_failures, 5);
    assert_eq!(view.ejections, 1);
    assert_eq!(view.reason, Reason::ConsecutiveFailures { failures: 5 });
    assert_eq!(view.probe_state(t0), ProbeState::Waiting);
    assert_eq!(view.removed_for(t0 + secs(3)), secs(3));
    assert!(snap.get(addr(1)).is_none());
    assert!(snap.is_available(addr(1), t0));
    assert!(snap.try_acquire(addr(1), t0));
    assert!(!snap.is_available(addr(2), t0));
    assert!(!snap.all_ejected(t0));

    let t1 = t0 + secs(5);
    assert_eq!(view.probe_state(t1), ProbeState::Open);
    assert!(copy.try_acquire(addr(2), t1), "a worker claims the probe");
    assert!(!snap.try_acquire(addr(2), t1), "another worker cannot");
    assert!(!a.is_available(addr(2), t1), "the actor sees the claim");
    assert_eq!(view.probe_state(t1), ProbeState::Granted { since: t1 });
}

// === configuration ===

#[test]
fn config_validation_and_normalization() {
    let ok = AccrualConfig::default();
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(ok.policy.kind(), "io.l5d.consecutiveFailures");
    assert_eq!(ok.backoff.kind(), "jittered");
    let bad = [
        (
            Policy::ConsecutiveFailures { failures: 0 },
            ConfigError::ZeroFailures,
        ),
        (
            Policy::SuccessRate {
                success_rate: 1.5,
                requests: 10,
            },
            ConfigError::SuccessRateOutOfRange(1.5),
        ),
        (
            Policy::SuccessRate {
                success_rate: 0.5,
                requests: 0,
            },
            ConfigError::ZeroRequests,
        ),
        (
            Policy::SuccessRateWindowed {
                success_rate: 0.5,
                window: Duration::ZERO,
            },
            ConfigError::ZeroWindow,
        ),
    ];
    for (policy, err) in bad {
        let cfg = AccrualConfig {
            policy,
            backoff: Backoff::default(),
        };
        assert_eq!(cfg.validate(), Err(err));
        assert!(!err.to_string().is_empty());
        assert_eq!(cfg.normalized().validate(), Ok(()));
    }
    let nan = AccrualConfig {
        policy: Policy::SuccessRateWindowed {
            success_rate: f64::NAN,
            window: secs(1),
        },
        backoff: Backoff::Jittered {
            min: secs(2),
            max: secs(1),
        },
    };
    assert!(nan.validate().is_err());
    assert_eq!(nan.normalized().validate(), Ok(()));
    assert_eq!(
        nan.normalized().backoff,
        Backoff::Jittered {
            min: secs(1),
            max: secs(2)
        }
    );
}

// === properties ===

#[derive(Clone, Debug)]
enum Op {
    /// Replace the set with these pool indices.
    Set(Vec<u8>),
    /// An outcome for a pool index (some never in any set).
    Record(u8, bool, f64),
    /// Move time forward.
    Advance(u64),
    /// Try to send to a pool index, through the actor or a snapshot.
    Acquire(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => prop::collection::vec(0u8..6, 0..6).prop_map(Op::Set),
        6 => (0u8..8, any::<bool>(), prop_oneof![0.0..1.0, Just(f64::NAN), Just(2.0)])
            .prop_map(|(i, ok, r)| Op::Record(i, ok, r)),
        3 => prop_oneof![0u64..50, 0u64..5_000, 0u64..400_000].prop_map(Op::Advance),
        2 => (0u8..8, any::<bool>()).prop_map(|(i, snap)| Op::Acquire(i, snap)),
    ]
}

fn config() -> impl Strategy<Value = AccrualConfig> {
    let policy = prop_oneof![
        (0u32..4).prop_map(|failures| Policy::ConsecutiveFailures { failures }),
        (0.0..=1.0, 0u32..6).prop_map(|(success_rate, requests)| Policy::SuccessRate {
            success_rate,
            requests
        }),
        (0.0..=1.0, 0u64..20_000).prop_map(|(success_rate, w)| Policy::SuccessRateWindowed {
            success_rate,
            window: ms(w),
        }),
        Just(Policy::Disabled),
    ];
    let backoff = prop_oneof![
        (0u64..10_000).prop_map(|d| Backoff::Constant(ms(d))),
        (0u64..10_000, 0u64..400_000).prop_map(|(min, max)| Backoff::Jittered {
            min: ms(min),
            max: ms(max),
        }),
    ];
    (policy, backoff).prop_map(|(policy, backoff)| AccrualConfig { policy, backoff })
}

fn bounds(backoff: &Backoff) -> (Duration, Duration) {
    match *backoff {
        Backoff::Constant(d) => (d, d),
        Backoff::Jittered { min, max } => (min.min(max), min.max(max)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_histories_never_panic_or_leave_the_set(
        cfg in config(),
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut a = Accrual::new(cfg);
        a.set_endpoints(&[addr(0), addr(1), addr(2)], now);
        let (lo, hi) = bounds(&a.config().backoff);
        for op in ops {
            match op {
                Op::Set(ix) => {
                    let addrs: Vec<_> = ix.into_iter().map(addr).collect();
                    a.set_endpoints(&addrs, now);
                }
                Op::Record(i, ok, r) => {
                    let member = a.endpoints().contains(&addr(i));
                    let t = a.record(addr(i), now, ok, r);
                    if !member {
                        prop_assert_eq!(t, None);
                    }
                    match t {
                        Some(Transition::Removed { backoff, .. })
                        | Some(Transition::ProbeFailed { backoff, .. }) => {
                            prop_assert!(lo <= backoff && backoff <= hi);
                            prop_assert!(!ok);
                            prop_assert!(a.ejected(addr(i)).is_some());
                        }
                        Some(Transition::Revived { .. }) => {
                            prop_assert!(ok);
                            prop_assert!(a.is_available(addr(i), now));
                        }
                        None => {}
                    }
                }
                Op::Advance(d) => now += ms(d),
                Op::Acquire(i, through_snapshot) => {
                    let member = a.endpoints().contains(&addr(i));
                    let got = if through_snapshot {
                        a.snapshot().try_acquire(addr(i), now)
                    } else {
                        a.try_acquire(addr(i), now)
                    };
                    if !member && !through_snapshot {
                        prop_assert!(!got);
                    }
                }
            }

            let set = a.endpoints().to_vec();
            let available = a.available(now);
            prop_assert!(available.iter().all(|x| set.contains(x)));
            prop_assert_eq!(available.is_empty(), set.is_empty());
            let all_out = a.all_ejected(now);
            prop_assert_eq!(all_out, !set.is_empty() && !set.iter().any(|x| a.is_available(*x, now)));
            if all_out {
                prop_assert_eq!(&available, &set);
            }
            let snap = a.snapshot();
            prop_assert_eq!(snap.endpoints(), set.len());
            prop_assert_eq!(snap.all_ejected(now), all_out);
            prop_assert_eq!(snap.ejected().len(), a.ejected_count());
            prop_assert!(snap.ejected().iter().all(|(x, _)| set.contains(x)));
            for x in &set {
                prop_assert_eq!(snap.is_available(*x, now), a.is_available(*x, now));
            }
            for i in 0..8 {
                if !set.contains(&addr(i)) {
                    prop_assert!(!a.is_available(addr(i), now));
                    prop_assert_eq!(a.removed_for(addr(i), now), Duration::ZERO);
                    prop_assert!(a.ejected(addr(i)).is_none());
                }
            }
            if let Some(d) = a.next_deadline(now) {
                prop_assert!(d > now);
            }
        }
    }
}
