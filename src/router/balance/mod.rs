//! Load balancers: pick an endpoint for each request among a changing endpoint set.
//!
//! These are sans-I/O cores, one per worker thread: a [`Balancer`] is plain data behind
//! `&mut self` (no lock, no atomic, no clock, no random source of its own). The caller
//! passes the time (`now`) and a uniform random source in `[0, 1)` to every call that
//! needs them, so tests drive it with explicit instants and scripted draws. The kinds are
//! Linkerd's `loadBalancer.kind`s:
//!
//! * `p2c` (the default): power of two choices on the fewest requests in flight
//!   (the `p2c` module explains the weighted draws and `maxEffort`);
//! * `ewma`: power of two choices on peak-EWMA latency times `(in flight + 1)`
//!   ([`PeakEwma`]);
//! * `aperture`: power of two choices within a subset sized to the load
//!   ([`ApertureConfig`]);
//! * `heap`: the least loaded endpoint, ties to the first listed;
//! * `roundRobin`: weighted turns.
//!
//! A request goes `pick` → `start` → `end`: [`Balancer::pick`] chooses an address,
//! [`Balancer::start`] counts a request in flight on it and returns a [`Pending`] token,
//! and [`Balancer::end`] gives the token back with the [`Outcome`] (the latency is
//! `now - start`). [`Balancer::set_endpoints`] applies a discovery update: endpoints
//! that stay keep their state (requests in flight, latency estimate, turn), new ones
//! start fresh, and ending a request on an endpoint that has since been removed is a
//! no-op (likewise one that was removed and added again: it is a new endpoint).
//!
//! **Weights** (from the namer, e.g. `* 2`) are relative: a negative or non-finite
//! weight counts as zero, an address listed twice gets the sum of its weights, and if no
//! endpoint has a positive weight they all count as 1. An endpoint of weight zero is
//! never picked while another has a positive weight. The P2C kinds draw candidates in
//! proportion to weight and compare `cost / weight`; `heap` compares
//! `in flight / weight`; `roundRobin` gives turns in proportion to weight.
//!
//! **Availability** (e.g. failure accrual's ejections) is the caller's `available`
//! predicate. The kinds with `maxEffort` retry that many times (rounds of two
//! candidates for P2C, turns for `roundRobin`) to find an available endpoint; `heap`
//! looks at every endpoint. If no available endpoint is found, `pick` still returns the
//! least loaded (lowest-scoring) unavailable candidate it met, like Finagle's balancers,
//! which send to a node marked down rather than fail the request: `pick` returns `None`
//! only when the endpoint set is empty.

mod aperture;
mod ewma;
mod heap;
mod p2c;
mod round_robin;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Instant;

pub use aperture::ApertureConfig;
pub use ewma::{EwmaConfig, PeakEwma};

use aperture::Aperture;
use p2c::{Best, Sampler};
use round_robin::RoundRobin;

/// Weights above this are clamped, so that sums stay finite.
const MAX_WEIGHT: f64 = 1e12;

/// A client's `loadBalancer` block.
#[derive(Clone, Debug, PartialEq)]
pub struct BalancerConfig {
    /// `kind`, with the kind's own parameters.
    pub kind: Kind,
    /// `maxEffort`: how many tries to find an available endpoint (default 5; 0 counts
    /// as 1; `heap` ignores it).
    pub max_effort: usize,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig {
            kind: Kind::P2c,
            max_effort: 5,
        }
    }
}

/// `loadBalancer.kind`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Kind {
    /// `p2c`: power of two choices on least outstanding requests.
    #[default]
    P2c,
    /// `ewma`: power of two choices on peak-EWMA latency × (outstanding + 1).
    Ewma(EwmaConfig),
    /// `aperture`: P2C within a load-sized subset of the endpoints.
    Aperture(ApertureConfig),
    /// `heap`: the least loaded endpoint.
    Heap,
    /// `roundRobin`: weighted turns.
    RoundRobin,
}

impl Kind {
    /// The kind's name in Linkerd's configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::P2c => "p2c",
            Kind::Ewma(_) => "ewma",
            Kind::Aperture(_) => "aperture",
            Kind::Heap => "heap",
            Kind::RoundRobin => "roundRobin",
        }
    }
}

/// The result of a request, for [`Balancer::end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the response was classified a success; failures penalize `ewma` costs.
    pub success: bool,
}

impl Outcome {
    /// A success.
    pub const SUCCESS: Outcome = Outcome { success: true };
    /// A failure.
    pub const FAILURE: Outcome = Outcome { success: false };
}

/// A request in flight on an endpoint, from [`Balancer::start`]; give it back to
/// [`Balancer::end`] (dropping it instead leaves the request counted in flight).
#[derive(Debug)]
#[must_use = "a started request stays counted in flight until it is given to `end`"]
pub struct Pending {
    addr: SocketAddr,
    /// The endpoint's incarnation; 0 when the address was not in the set.
    id: u64,
    start: Instant,
}

impl Pending {
    /// The endpoint the request went to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// When the request started.
    pub fn started(&self) -> Instant {
        self.start
    }
}

/// One endpoint as the balancer sees it, for metrics and `/client_state.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointView {
    /// The endpoint's address.
    pub addr: SocketAddr,
    /// Requests in flight.
    pub outstanding: usize,
    /// The kind's load measure, before dividing by the weight: for `ewma`, the latency
    /// estimate in milliseconds × (outstanding + 1); for the others, `outstanding`.
    pub cost: f64,
    /// The effective weight (after the rules in the module documentation).
    pub weight: f64,
}

/// An endpoint and its shared state.
#[derive(Clone, Debug)]
struct Endpoint {
    addr: SocketAddr,
    /// Effective weight: finite, non-negative.
    weight: f64,
    /// Distinguishes incarnations of one address (never 0).
    id: u64,
    outstanding: usize,
}

impl Endpoint {
    fn new(addr: SocketAddr, weight: f64, id: u64) -> Self {
        Endpoint {
            addr,
            weight,
            id,
            outstanding: 0,
        }
    }
}

/// The kind-specific state.
#[derive(Clone, Debug)]
enum KindState {
    P2c(Sampler),
    Ewma {
        config: EwmaConfig,
        sampler: Sampler,
        /// Parallel to the endpoints.
        estimates: Vec<PeakEwma>,
    },
    Aperture(Aperture),
    Heap,
    RoundRobin(RoundRobin),
}

/// A load balancer over one client's endpoints, owned by one worker thread.
#[derive(Clone, Debug)]
pub struct Balancer {
    kind: Kind,
    max_effort: usize,
    endpoints: Vec<Endpoint>,
    /// Looked up on every answer: foldhash (randomly seeded), not SipHash.
    by_addr: foldhash::HashMap<SocketAddr, usize>,
    /// The next endpoint incarnation.
    next_id: u64,
    /// Requests in flight on the current endpoints.
    in_flight: usize,
    kind_state: KindState,
}

impl Balancer {
    /// A balancer with no endpoints.
    pub fn new(config: BalancerConfig) -> Self {
        let strategy = match &config.kind {
            Kind::P2c => KindState::P2c(Sampler::default()),
            Kind::Ewma(c) => KindState::Ewma {
                config: c.clone(),
                sampler: Sampler::default(),
                estimates: Vec::new(),
            },
            Kind::Aperture(c) => KindState::Aperture(Aperture::new(c.clone())),
            Kind::Heap => KindState::Heap,
            Kind::RoundRobin => KindState::RoundRobin(RoundRobin::default()),
        };
        Balancer {
            kind: config.kind,
            max_effort: config.max_effort,
            endpoints: Vec::new(),
            by_addr: foldhash::HashMap::default(),
            next_id: 1,
            in_flight: 0,
            kind_state: strategy,
        }
    }

    /// The kind, with its parameters.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the endpoint set is empty.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Requests in flight on the current endpoints.
    pub fn outstanding(&self) -> usize {
        self.in_flight
    }

    /// For `aperture`, the number of endpoints in the aperture.
    pub fn aperture(&self) -> Option<usize> {
        match &self.kind_state {
            KindState::Aperture(a) => Some(a.size()),
            _ => None,
        }
    }

    /// Replaces the endpoint set with `(address, weight)` pairs, keeping the state of
    /// the addresses that stay (see the module documentation for weights).
    pub fn set_endpoints(&mut self, endpoints: &[(SocketAddr, f64)], now: Instant) {
        let mut next: Vec<Endpoint> = Vec::with_capacity(endpoints.len());
        let mut previous: Vec<Option<usize>> = Vec::with_capacity(endpoints.len());
        let mut by_addr =
            foldhash::HashMap::with_capacity_and_hasher(endpoints.len(), Default::default());
        for &(addr, weight) in endpoints {
            let weight = if weight.is_finite() {
                weight.clamp(0.0, MAX_WEIGHT)
            } else {
                0.0
            };
            if let Some(&j) = by_addr.get(&addr) {
                let e: &mut Endpoint = &mut next[j];
                e.weight = (e.weight + weight).min(MAX_WEIGHT);
                continue;
            }
            by_addr.insert(addr, next.len());
            match self.by_addr.get(&addr) {
                Some(&old) => {
                    let mut e = self.endpoints[old].clone();
                    e.weight = weight;
                    next.push(e);
                    previous.push(Some(old));
                }
                None => {
                    next.push(Endpoint::new(addr, weight, self.next_id));
                    self.next_id += 1;
                    previous.push(None);
                }
            }
        }
        if !next.iter().any(|e| e.weight > 0.0) {
            for e in &mut next {
                e.weight = 1.0;
            }
        }
        self.endpoints = next;
        self.by_addr = by_addr;
        self.in_flight = self.endpoints.iter().map(|e| e.outstanding).sum();
        let eps = &self.endpoints;
        match &mut self.kind_state {
            KindState::P2c(sampler) => sampler.rebuild(0..eps.len(), |i| eps[i].weight),
            KindState::Ewma {
                config,
                sampler,
                estimates,
            } => {
                sampler.rebuild(0..eps.len(), |i| eps[i].weight);
                let mut old: Vec<Option<PeakEwma>> =
                    std::mem::take(estimates).into_iter().map(Some).collect();
                *estimates = previous
                    .iter()
                    .map(|p| {
                        p.and_then(|i| old[i].take())
                            .unwrap_or_else(|| PeakEwma::new(config.decay, config.default_rtt))
                    })
                    .collect();
            }
            KindState::Aperture(a) => {
                a.rebuild(eps);
                a.record(now, self.in_flight);
            }
            KindState::Heap => {}
            KindState::RoundRobin(rr) => rr.rebuild(eps, &previous),
        }
    }

    /// Picks an endpoint for a request. `rand` yields uniform numbers in `[0, 1)` (others
    /// are clamped into it); `available` says whether the caller may use an endpoint.
    /// Returns `None` only when the endpoint set is empty; when no available endpoint is
    /// found within `maxEffort` tries, returns the least loaded unavailable one tried.
    pub fn pick(
        &mut self,
        now: Instant,
        rand: &mut dyn FnMut() -> f64,
        available: impl Fn(SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let mut rand = || unit(rand());
        let eps = &self.endpoints;
        let available = |i: usize| available(eps[i].addr);
        let least_outstanding = |i: usize| eps[i].outstanding as f64 / eps[i].weight;
        let effort = self.max_effort;
        let mut fallback: Best = None;
        let chosen = match &mut self.kind_state {
            KindState::P2c(sampler) => p2c::pick(
                sampler,
                sampler.len(),
                effort,
                &mut rand,
                least_outstanding,
                available,
                &mut fallback,
            ),
            KindState::Ewma {
                sampler, estimates, ..
            } => {
                let score =
                    |i: usize| ewma_cost(&estimates[i], eps[i].outstanding, now) / eps[i].weight;
                p2c::pick(
                    sampler,
                    sampler.len(),
                    effort,
                    &mut rand,
                    score,
                    available,
                    &mut fallback,
                )
            }
            KindState::Aperture(a) => {
                a.adjust(now, self.in_flight);
                let ranking = a.ranking();
                p2c::pick(
                    ranking,
                    a.size(),
                    effort,
                    &mut rand,
                    least_outstanding,
                    available,
                    &mut fallback,
                )
                .or_else(|| {
                    if a.size() < ranking.len() {
                        p2c::pick(
                            ranking,
                            ranking.len(),
                            effort,
                            &mut rand,
                            least_outstanding,
                            available,
                            &mut fallback,
                        )
                    } else {
                        None
                    }
                })
            }
            KindState::Heap => heap::pick(eps, available),
            KindState::RoundRobin(rr) => {
                rr.pick(eps, effort, least_outstanding, available, &mut fallback)
            }
        };
        chosen
            .or(fallback.map(|(_, i)| i))
            .map(|i| self.endpoints[i].addr)
    }

    /// Counts a request in flight on `addr` from `now`. An address not in the set gives
    /// a token that `end` ignores.
    pub fn start(&mut self, addr: SocketAddr, now: Instant) -> Pending {
        let Some(&i) = self.by_addr.get(&addr) else {
            return Pending {
                addr,
                id: 0,
                start: now,
            };
        };
        let e = &mut self.endpoints[i];
        e.outstanding += 1;
        let id = e.id;
        self.in_flight += 1;
        if let KindState::Aperture(a) = &mut self.kind_state {
            a.record(now, self.in_flight);
        }
        Pending {
            addr,
            id,
            start: now,
        }
    }

    /// Ends a request: it is no longer in flight, and for `ewma` its latency
    /// (`now - start`, zero if `now` is earlier) and outcome update the estimate. A token
    /// whose endpoint has left the set since `start` is ignored.
    pub fn end(&mut self, pending: Pending, now: Instant, outcome: Outcome) {
        let Some(&i) = self.by_addr.get(&pending.addr) else {
            return;
        };
        let e = &mut self.endpoints[i];
        if e.id != pending.id || e.outstanding == 0 {
            return;
        }
        e.outstanding -= 1;
        self.in_flight -= 1;
        let latency = now.saturating_duration_since(pending.start);
        match &mut self.kind_state {
            KindState::Ewma {
                config, estimates, ..
            } => {
                let estimate = &mut estimates[i];
                if outcome.success {
                    estimate.observe(now, latency);
                } else {
                    estimate.penalize(now, latency, config.failure_penalty);
                }
            }
            KindState::Aperture(a) => a.record(now, self.in_flight),
            _ => {}
        }
    }

    /// Every endpoint's state at `now`, in the order of the endpoint set.
    pub fn snapshot(&self, now: Instant) -> Vec<EndpointView> {
        self.endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointView {
                addr: e.addr,
                outstanding: e.outstanding,
                cost: match &self.kind_state {
                    KindState::Ewma { estimates, .. } => {
                        ewma_cost(&estimates[i], e.outstanding, now)
                    }
                    _ => e.outstanding as f64,
                },
                weight: e.weight,
            })
            .collect()
    }
}

/// The `ewma` cost: the latency estimate in milliseconds × (outstanding + 1).
fn ewma_cost(estimate: &PeakEwma, outstanding: usize, now: Instant) -> f64 {
    estimate.secs_at(now) * 1e3 * (outstanding as f64 + 1.0)
}

/// A draw clamped into `[0, 1)`; NaN counts as 0.
fn unit(x: f64) -> f64 {
    const BELOW_ONE: f64 = 1.0 - f64::EPSILON / 2.0;
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, BELOW_ONE)
    }
}
