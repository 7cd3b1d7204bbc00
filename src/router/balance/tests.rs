//! Balancer tests: every kind through the public API, with explicit instants (one base
//! plus durations) and a seeded generator standing in for the random source.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

/// xorshift64*: a deterministic stand-in for the worker's generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn balancer(kind: Kind) -> Balancer {
    Balancer::new(BalancerConfig {
        kind,
        ..BalancerConfig::default()
    })
}

fn all_kinds() -> Vec<Kind> {
    vec![
        Kind::P2c,
        Kind::Ewma(EwmaConfig::default()),
        Kind::Aperture(ApertureConfig::default()),
        Kind::Heap,
        Kind::RoundRobin,
    ]
}

fn with_weights(set: &[(u16, f64)]) -> Vec<(SocketAddr, f64)> {
    set.iter().map(|&(p, w)| (addr(p), w)).collect()
}

fn equal(ports: &[u16]) -> Vec<(SocketAddr, f64)> {
    ports.iter().map(|&p| (addr(p), 1.0)).collect()
}

/// Picks `n` times, each request ending at once; the share of picks per address.
fn shares(b: &mut Balancer, now: Instant, rng: &mut Rng, n: usize) -> HashMap<SocketAddr, f64> {
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    for _ in 0..n {
        let a = b.pick(now, &mut || rng.next(), |_| true).unwrap();
        let p = b.start(a, now);
        b.end(p, now, Outcome::SUCCESS);
        *counts.entry(a).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(a, c)| (a, c as f64 / n as f64))
        .collect()
}

/// A closed loop: `clients` clients each send a request as soon as their previous one
/// ends; `service` gives an endpoint's latency and outcome. Returns requests per address.
fn simulate(
    b: &mut Balancer,
    t0: Instant,
    rng: &mut Rng,
    clients: usize,
    requests: usize,
    service: impl Fn(SocketAddr) -> (Duration, bool),
) -> HashMap<SocketAddr, usize> {
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    let mut in_flight: Vec<(Instant, Pending, bool)> = Vec::new();
    let mut send = |b: &mut Balancer, now: Instant, in_flight: &mut Vec<_>| {
        let a = b.pick(now, &mut || rng.next(), |_| true).unwrap();
        *counts.entry(a).or_default() += 1;
        let (latency, success) = service(a);
        in_flight.push((now + latency, b.start(a, now), success));
    };
    for _ in 0..clients {
        send(b, t0, &mut in_flight);
    }
    for _ in clients..requests {
        let next = (0..in_flight.len())
            .min_by_key(|&i| in_flight[i].0)
            .unwrap();
        let (now, pending, success) = in_flight.swap_remove(next);
        b.end(pending, now, Outcome { success });
        send(b, now, &mut in_flight);
    }
    counts
}

#[test]
fn an_empty_set_picks_nothing() {
    let t0 = Instant::now();
    for kind in all_kinds() {
        let mut b = balancer(kind.clone());
        assert_eq!(b.pick(t0, &mut || 0.5, |_| true), None, "{}", kind.name());
        b.set_endpoints(&equal(&[1, 2]), t0);
        assert!(b.pick(t0, &mut || 0.5, |_| true).is_some());
        b.set_endpoints(&[], t0);
        assert_eq!(b.pick(t0, &mut || 0.5, |_| true), None, "{}", kind.name());
        assert!(b.is_empty());
    }
}

#[test]
fn p2c_never_picks_the_busier_of_two() {
    let t0 = Instant::now();
    let mut rng = Rng::new(1);
    for kind in [Kind::P2c, Kind::Ewma(EwmaConfig::default())] {
        let mut b = balancer(kind);
        b.set_endpoints(&equal(&[1, 2]), t0);
        let _held: Vec<Pending> = (0..3).map(|_| b.start(addr(1), t0)).collect();
        for _ in 0..1000 {
            assert_eq!(b.pick(t0, &mut || rng.next(), |_| true), Some(addr(2)));
        }
        // Once the other is busier, the choice flips.
        let _more: Vec<Pending> = (0..4).map(|_| b.start(addr(2), t0)).collect();
        for _ in 0..1000 {
            assert_eq!(b.pick(t0, &mut || rng.next(), |_| true), Some(addr(1)));
        }
    }
}

#[test]
fn ewma_sends_clearly_less_to_a_ten_times_slower_endpoint() {
    let t0 = Instant::now();
    let mut rng = Rng::new(7);
    let mut b = balancer(Kind::Ewma(EwmaConfig::default()));
    b.set_endpoints(&equal(&[1, 2, 3]), t0);
    let counts = simulate(&mut b, t0, &mut rng, 4, 6000, |a| {
        if a == addr(3) {
            (100 * MS, true)
        } else {
            (10 * MS, true)
        }
    });
    let share = |p| counts.get(&addr(p)).copied().unwrap_or(0) as f64 / 6000.0;
    assert!(share(3) < 0.10, "slow endpoint got {}", share(3));
    assert!(share(1) > 0.4 && share(2) > 0.4, "{counts:?}");
    // Its estimate is visible in the snapshot.
    let view = b.snapshot(t0 + Duration::from_secs(1));
    assert!(view[2].cost > view[0].cost);
}

#[test]
fn ewma_does_not_prefer_an_endpoint_that_fails_fast() {
    let t0 = Instant::now();
    let mut rng = Rng::new(9);
    let mut b = balancer(Kind::Ewma(EwmaConfig::default()));
    b.set_endpoints(&equal(&[1, 2, 3]), t0);
    // Endpoint 1 answers in 1 ms with failures; the others take 20 ms and succeed.
    let counts = simulate(&mut b, t0, &mut rng, 2, 3000, |a| {
        if a == addr(1) {
            (MS, false)
        } else {
            (20 * MS, true)
        }
    });
    let failing = counts.get(&addr(1)).copied().unwrap_or(0) as f64 / 3000.0;
    assert!(failing < 0.1, "failing endpoint got {failing}");

    // The same endpoint succeeding would take most of the traffic.
    let mut b = balancer(Kind::Ewma(EwmaConfig::default()));
    b.set_endpoints(&equal(&[1, 2, 3]), t0);
    let counts = simulate(&mut b, t0, &mut rng, 2, 3000, |a| {
        if a == addr(1) {
            (MS, true)
        } else {
            (20 * MS, true)
        }
    });
    let fast = counts.get(&addr(1)).copied().unwrap_or(0) as f64 / 3000.0;
    assert!(fast > 0.5, "fast endpoint got {fast}");
}

#[test]
fn ewma_snapshot_cost_is_estimate_times_outstanding_plus_one() {
    let t0 = Instant::now();
    let mut b = balancer(Kind::Ewma(EwmaConfig::default()));
    b.set_endpoints(&equal(&[1]), t0);
    assert!(
        (b.snapshot(t0)[0].cost - 30.0).abs() < 1e-9,
        "default 30 ms"
    );
    let p = b.start(addr(1), t0);
    b.end(p, t0 + 50 * MS, Outcome::SUCCESS);
    let _a = b.start(addr(1), t0 + 50 * MS);
    let _b = b.start(addr(1), t0 + 50 * MS);
    let view = &b.snapshot(t0 + 50 * MS)[0];
    assert_eq!(view.outstanding, 2);
    assert!((view.cost - 150.0).abs() < 1e-6, "{}", view.cost);
}

#[test]
fn weights_bias_shares() {
    let t0 = Instant::now();
    let mut rng = Rng::new(3);
    for kind in [
        Kind::P2c,
        Kind::Ewma(EwmaConfig::default()),
        Kind::RoundRobin,
        Kind::Aperture(ApertureConfig {
            min_aperture: 2,
            ..ApertureConfig::default()
        }),
    ] {
        let mut b = balancer(kind.clone());
        b.set_endpoints(&with_weights(&[(1, 3.0), (2, 1.0)]), t0);
        // The same latency on both, so that only the weights differ under `ewma`.
        for a in [addr(1), addr(2)] {
            let p = b.start(a, t0);
            b.end(p, t0, Outcome::SUCCESS);
        }
        let s = shares(&mut b, t0, &mut rng, 20_000);
        let heavy = s[&addr(1)];
        assert!((heavy - 0.75).abs() < 0.02, "{}: {heavy}", kind.name());
    }
}

#[test]
fn weight_rules() {
    let t0 = Instant::now();
    let mut rng = Rng::new(5);
    let mut b = balancer(Kind::P2c);
    // Zero, negative and NaN weights are never picked while another weight is positive.
    b.set_endpoints(
        &with_weights(&[(1, 0.0), (2, -1.0), (3, f64::NAN), (4, 2.0)]),
        t0,
    );
    let s = shares(&mut b, t0, &mut rng, 1000);
    assert_eq!(s.get(&addr(4)), Some(&1.0));
    // All zero: all count as 1.
    b.set_endpoints(&with_weights(&[(1, 0.0), (2, 0.0)]), t0);
    let s = shares(&mut b, t0, &mut rng, 4000);
    assert!((s[&addr(1)] - 0.5).abs() < 0.05);
    // A repeated address sums its weights.
    b.set_endpoints(&with_weights(&[(1, 1.0), (2, 1.0), (1, 2.0)]), t0);
    assert_eq!(b.len(), 2);
    assert_eq!(b.snapshot(t0)[0].weight, 3.0);
}

#[test]
fn heavier_endpoints_hold_more_in_flight_before_losing() {
    let t0 = Instant::now();
    let mut b = balancer(Kind::P2c);
    b.set_endpoints(&with_weights(&[(1, 4.0), (2, 1.0)]), t0);
    // 3 in flight on weight 4 (0.75) beats 1 in flight on weight 1.
    let _h: Vec<Pending> = (0..3).map(|_| b.start(addr(1), t0)).collect();
    let _l = b.start(addr(2), t0);
    let mut rng = Rng::new(11);
    for _ in 0..100 {
        assert_eq!(b.pick(t0, &mut || rng.next(), |_| true), Some(addr(1)));
    }
}

#[test]
fn max_effort_skips_unavailable_endpoints() {
    let t0 = Instant::now();
    let up = addr(5);
    for kind in [
        Kind::P2c,
        Kind::Ewma(EwmaConfig::default()),
        Kind::Aperture(ApertureConfig::default()),
        Kind::Heap,
        Kind::RoundRobin,
    ] {
        let mut rng = Rng::new(13);
        let mut b = balancer(kind.clone());
        b.set_endpoints(&equal(&[1, 2, 3, 4, 5]), t0);
        let mut hits = 0;
        for _ in 0..2000 {
            if b.pick(t0, &mut || rng.next(), |a| a == up) == Some(up) {
                hits += 1;
            }
        }
        // P2C misses only when 5 rounds of 2 draws from 5 never meet it: 0.6^5 = 8%.
        assert!(hits >= 1700, "{}: {hits}", kind.name());
    }
}

#[test]
fn scripted_p2c_retries_rounds_then_falls_back_to_the_least_bad() {
    let t0 = Instant::now();
    let mut b = balancer(Kind::P2c);
    b.set_endpoints(&equal(&[1, 2, 3, 4]), t0);
    let _busy = b.start(addr(1), t0);
    // Round 1 draws endpoints 1 and 2 (both down), round 2 draws 3 and 4.
    let mut script = [0.0, 0.0, 0.5, 0.9].into_iter().cycle();
    let up = |a: SocketAddr| a == addr(4);
    assert_eq!(
        b.pick(t0, &mut || script.next().unwrap(), up),
        Some(addr(4))
    );
    // With one round only: nothing available, the less loaded of the two drawn.
    let mut b1 = Balancer::new(BalancerConfig {
        kind: Kind::P2c,
        max_effort: 1,
    });
    b1.set_endpoints(&equal(&[1, 2, 3, 4]), t0);
    let _busy = b1.start(addr(1), t0);
    let mut script = [0.0, 0.0].into_iter().cycle();
    assert_eq!(
        b1.pick(t0, &mut || script.next().unwrap(), up),
        Some(addr(2))
    );
    // Everything down: still an endpoint, never None.
    for kind in all_kinds() {
        let mut b = balancer(kind);
        b.set_endpoints(&equal(&[1, 2, 3]), t0);
        let _busy = b.start(addr(1), t0);
        let got = b.pick(t0, &mut || 0.3, |_| false);
        assert!(got.is_some() && got != Some(addr(1)), "{got:?}");
    }
}

#[test]
fn set_endpoints_keeps_state_and_tolerates_removed_endpoints() {
    let t0 = Instant::now();
    for kind in all_kinds() {
        let mut b = balancer(kind.clone());
        b.set_endpoints(&equal(&[1, 2]), t0);
        let done = b.start(addr(1), t0);
        b.end(done, t0 + 80 * MS, Outcome::SUCCESS);
        let kept = b.start(addr(1), t0 + 80 * MS);
        let gone = b.start(addr(2), t0 + 80 * MS);
        let cost_before = b.snapshot(t0 + 80 * MS)[0].cost;

        // A reweight plus a new endpoint keeps endpoint 1's state.
        b.set_endpoints(&with_weights(&[(3, 1.0), (1, 2.0)]), t0 + 90 * MS);
        let view = b.snapshot(t0 + 80 * MS);
        assert_eq!(view[1].addr, addr(1));
        assert_eq!(view[1].outstanding, 1, "{}", kind.name());
        assert_eq!(view[1].weight, 2.0);
        assert_eq!(view[1].cost, cost_before, "{}", kind.name());
        assert_eq!(b.outstanding(), 1);

        // Ending a request on a removed endpoint is a no-op.
        b.end(gone, t0 + 100 * MS, Outcome::FAILURE);
        assert_eq!(b.outstanding(), 1);

        // Removed then added back: a new endpoint, which old tokens do not touch.
        b.set_endpoints(&equal(&[3]), t0 + 110 * MS);
        b.set_endpoints(&equal(&[3, 1]), t0 + 120 * MS);
        let fresh = b.start(addr(1), t0 + 120 * MS);
        b.end(kept, t0 + 130 * MS, Outcome::SUCCESS);
        assert_eq!(
            b.snapshot(t0 + 130 * MS)[1].outstanding,
            1,
            "{}",
            kind.name()
        );
        b.end(fresh, t0 + 140 * MS, Outcome::SUCCESS);
        assert_eq!(b.outstanding(), 0);

        // A token for an address that was never in the set is ignored too.
        let stray = b.start(addr(99), t0);
        assert_eq!(stray.addr(), addr(99));
        b.end(stray, t0, Outcome::SUCCESS);
        assert_eq!(b.outstanding(), 0);
    }
}

#[test]
fn aperture_grows_under_load_and_shrinks_when_idle() {
    let t0 = Instant::now();
    let mut rng = Rng::new(17);
    let mut b = balancer(Kind::Aperture(ApertureConfig::default()));
    let ports: Vec<u16> = (1..=10).collect();
    b.set_endpoints(&equal(&ports), t0);
    assert_eq!(b.aperture(), Some(1));

    // Light load stays in the minimum aperture, on one endpoint.
    let s = shares(&mut b, t0, &mut rng, 100);
    assert_eq!(s.len(), 1);

    // Hold 12 requests in flight for a while: the load per endpoint is above 2 until
    // the aperture reaches 6 endpoints (12 / 6 = 2).
    let mut held = Vec::new();
    for _ in 0..12 {
        let a = b.pick(t0, &mut || rng.next(), |_| true).unwrap();
        held.push(b.start(a, t0));
    }
    let mut now = t0;
    for _ in 0..100 {
        now += Duration::from_millis(500);
        let _ = b.pick(now, &mut || rng.next(), |_| true);
    }
    assert_eq!(
        b.aperture(),
        Some(6),
        "grew to hold load per endpoint at most 2"
    );

    // Within the aperture, picks spread over its endpoints only: the five idle ones
    // (the first endpoint holds all 12 requests, so it loses every comparison).
    let s = shares(&mut b, now, &mut rng, 600);
    assert_eq!(s.len(), 5);
    assert!(!s.contains_key(&held[0].addr()));

    // All requests end; the smoothed load falls below 0.5 per endpoint: it shrinks.
    for p in held {
        b.end(p, now, Outcome::SUCCESS);
    }
    for _ in 0..100 {
        now += Duration::from_millis(500);
        let _ = b.pick(now, &mut || rng.next(), |_| true);
    }
    assert_eq!(b.aperture(), Some(1));
}

#[test]
fn aperture_looks_outside_when_its_endpoints_are_down() {
    let t0 = Instant::now();
    let mut b = balancer(Kind::Aperture(ApertureConfig::default()));
    b.set_endpoints(&equal(&[1, 2, 3]), t0);
    let inside = b.pick(t0, &mut || 0.1, |_| true).unwrap();
    let mut rng = Rng::new(19);
    for _ in 0..100 {
        let got = b.pick(t0, &mut || rng.next(), |a| a != inside).unwrap();
        assert_ne!(got, inside);
    }
}

#[test]
fn round_robin_cycles_and_skips_unavailable() {
    let t0 = Instant::now();
    let mut b = balancer(Kind::RoundRobin);
    b.set_endpoints(&equal(&[1, 2, 3]), t0);
    let picks: Vec<u16> = (0..6)
        .map(|_| b.pick(t0, &mut || 0.0, |_| true).unwrap().port())
        .collect();
    assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
    let picks: Vec<u16> = (0..4)
        .map(|_| b.pick(t0, &mut || 0.0, |a| a != addr(2)).unwrap().port())
        .collect();
    assert_eq!(picks, vec![1, 3, 1, 3]);
    // An update keeps the turn: after 1 comes 3 (2 left), not 1 again.
    let _ = b.pick(t0, &mut || 0.0, |_| true);
    b.set_endpoints(&equal(&[1, 3, 4]), t0);
    let next = b.pick(t0, &mut || 0.0, |_| true).unwrap();
    assert_ne!(next, addr(1));
}

#[test]
fn heap_picks_the_least_loaded_with_ties_by_order() {
    let t0 = Instant::now();
    let mut b = balancer(Kind::Heap);
    b.set_endpoints(&equal(&[3, 1, 2]), t0);
    assert_eq!(b.pick(t0, &mut || 0.9, |_| true), Some(addr(3)));
    let _p = b.start(addr(3), t0);
    assert_eq!(b.pick(t0, &mut || 0.9, |_| true), Some(addr(1)));
    let _q = b.start(addr(1), t0);
    assert_eq!(b.pick(t0, &mut || 0.9, |_| true), Some(addr(2)));
    assert_eq!(b.pick(t0, &mut || 0.9, |a| a != addr(2)), Some(addr(3)));
}

#[test]
fn bad_random_values_are_clamped() {
    let t0 = Instant::now();
    for kind in all_kinds() {
        let mut b = balancer(kind);
        b.set_endpoints(&equal(&[1, 2, 3]), t0);
        for v in [f64::NAN, -1.0, 1.0, 7.5, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(b.pick(t0, &mut || v, |_| true).is_some());
        }
    }
}

// Property tests: arbitrary sequences of updates, picks, starts and ends.

#[derive(Clone, Debug)]
enum Op {
    /// A new endpoint set: (address number, weight).
    Set(Vec<(u8, f64)>),
    /// A pick with scripted draws; bit `n` of the mask marks address `n` unavailable.
    Pick(Vec<f64>, u8),
    /// A request started on address `n` (maybe not in the set).
    Start(u8),
    /// The `n`th live request (modulo) ends.
    End(usize, bool),
    /// Time moves by this many milliseconds (backwards too).
    Advance(i32),
}

fn port_addr(n: u8) -> SocketAddr {
    if n.is_multiple_of(2) {
        SocketAddr::from(([10, 0, 0, n], 80))
    } else {
        SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(n)], 8080))
    }
}

fn any_weight() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..10.0f64,
        1 => Just(0.0),
        1 => proptest::num::f64::ANY,
    ]
}

fn any_draw() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..1.0f64,
        1 => proptest::num::f64::ANY,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => proptest::collection::vec((0..8u8, any_weight()), 0..8).prop_map(Op::Set),
        4 => (proptest::collection::vec(any_draw(), 1..6), any::<u8>()).prop_map(|(d, m)| Op::Pick(d, m)),
        3 => (0..9u8).prop_map(Op::Start),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, s)| Op::End(i, s)),
        2 => (-2_000..60_000i32).prop_map(Op::Advance),
    ]
}

fn kind() -> impl Strategy<Value = BalancerConfig> {
    let kinds = prop_oneof![
        Just(Kind::P2c),
        (0..20_000u64, 0..100u64, 0..2_000u64).prop_map(|(d, r, p)| Kind::Ewma(EwmaConfig {
            decay: Duration::from_millis(d),
            default_rtt: Duration::from_millis(r),
            failure_penalty: Duration::from_millis(p),
        })),
        (
            0..10_000u64,
            0.0..3.0f64,
            0.0..4.0f64,
            0..5usize,
            any::<u64>()
        )
            .prop_map(|(w, lo, hi, min, seed)| Kind::Aperture(ApertureConfig {
                smooth_window: Duration::from_millis(w),
                low_load: lo,
                high_load: hi,
                min_aperture: min,
                seed,
            })),
        Just(Kind::Heap),
        Just(Kind::RoundRobin),
    ];
    (kinds, 0..7usize).prop_map(|(kind, max_effort)| BalancerConfig { kind, max_effort })
}

proptest! {
    /// Whatever the sequence: picks come from the current set (`None` exactly when it is
    /// empty), nothing panics, and the in-flight counts match the requests started on
    /// each endpoint's current incarnation and not yet ended.
    #[test]
    fn picks_stay_in_the_set_and_counts_add_up(
        config in kind(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let base = Instant::now();
        let mut offset: i64 = 0;
        let mut b = Balancer::new(config);
        let mut current: HashMap<SocketAddr, u64> = HashMap::new();
        let mut generation: HashMap<SocketAddr, u64> = HashMap::new();
        let mut live: Vec<(Pending, Option<u64>)> = Vec::new();
        for op in ops {
            let now = base + Duration::from_millis(offset as u64);
            match op {
                Op::Set(set) => {
                    let set: Vec<(SocketAddr, f64)> =
                        set.into_iter().map(|(n, w)| (port_addr(n), w)).collect();
                    b.set_endpoints(&set, now);
                    let next: HashMap<SocketAddr, u64> = set
                        .iter()
                        .map(|&(a, _)| {
                            let g = match current.get(&a) {
                                Some(&g) => g,
                                None => {
                                    let g = generation.entry(a).or_default();
                                    *g += 1;
                                    *g
                                }
                            };
                            (a, g)
                        })
                        .collect();
                    current = next;
                }
                Op::Pick(draws, mask) => {
                    let mut d = draws.iter().copied().cycle();
                    let down = |a: SocketAddr| {
                        let n = match a.ip() {
                            std::net::IpAddr::V4(v) => v.octets()[3],
                            std::net::IpAddr::V6(v) => v.segments()[7] as u8,
                        };
                        mask & (1 << n) != 0
                    };
                    let got = b.pick(now, &mut || d.next().unwrap(), |a| !down(a));
                    match got {
                        Some(a) => prop_assert!(current.contains_key(&a), "{a} not in set"),
                        None => prop_assert!(current.is_empty()),
                    }
                }
                Op::Start(n) => {
                    let a = port_addr(n);
                    live.push((b.start(a, now), current.get(&a).copied()));
                }
                Op::End(i, success) => {
                    if !live.is_empty() {
                        let (p, _) = live.swap_remove(i % live.len());
                        b.end(p, now, Outcome { success });
                    }
                }
                Op::Advance(ms) => offset = (offset + i64::from(ms)).max(0),
            }
            let now = base + Duration::from_millis(offset as u64);
            let view = b.snapshot(now);
            prop_assert_eq!(view.len(), current.len());
            let mut total = 0;
            for v in &view {
                let g = current[&v.addr];
                let expected = live
                    .iter()
                    .filter(|(p, pg)| p.addr() == v.addr && *pg == Some(g))
                    .count();
                prop_assert_eq!(v.outstanding, expected, "{}", v.addr);
                prop_assert!(v.cost.is_finite() && v.cost >= 0.0);
                prop_assert!(v.weight.is_finite() && v.weight >= 0.0);
                total += expected;
            }
            prop_assert_eq!(b.outstanding(), total);
            if let Some(size) = b.aperture() {
                let eligible = view.iter().filter(|v| v.weight > 0.0).count();
                prop_assert!(size <= eligible && (eligible == 0 || size >= 1));
            }
        }
    }

    /// P2C on least outstanding never picks the unique busiest endpoint when another
    /// is available, whatever the draws.
    #[test]
    fn p2c_never_picks_the_unique_busiest(
        loads in proptest::collection::vec(0..5usize, 2..6),
        draws in proptest::collection::vec(0.0..1.0f64, 2..12),
    ) {
        let t0 = Instant::now();
        let mut b = balancer(Kind::P2c);
        let ports: Vec<u16> = (1..=loads.len() as u16).collect();
        b.set_endpoints(&equal(&ports), t0);
        let mut held = Vec::new();
        for (i, &n) in loads.iter().enumerate() {
            for _ in 0..n {
                held.push(b.start(addr(i as u16 + 1), t0));
            }
        }
        let max = *loads.iter().max().unwrap();
        let busiest: Vec<usize> = (0..loads.len()).filter(|&i| loads[i] == max).collect();
        let mut d = draws.iter().copied().cycle();
        let got = b.pick(t0, &mut || d.next().unwrap(), |_| true).unwrap();
        if busiest.len() == 1 {
            prop_assert_ne!(got, addr(busiest[0] as u16 + 1));
        }
    }
}
