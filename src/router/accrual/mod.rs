//! Failure accrual: the circuit breaker of each endpoint of a client (Linkerd's
//! `client.failureAccrual`).
//!
//! This is a sans-I/O core. One [`Accrual`] belongs to the route actor of one client and
//! holds one state machine per endpoint. The actor feeds it the endpoint set
//! ([`Accrual::set_endpoints`]) and the outcome of every request ([`Accrual::record`]),
//! each with the current time and, for the backoff's jitter, a random sample; it gets
//! [`Transition`]s back for the logs and the `failure_accrual/*` metrics, and publishes a
//! [`Snapshot`] of the ejected endpoints that the workers' balancers read. Nothing here
//! reads a clock, draws a random number or sleeps, so tests drive it with explicit
//! instants.
//!
//! An endpoint is *alive* until its [`Policy`] (`failureAccrual.kind`, by default five
//! consecutive failures) ejects it. It is then *dead* for a [`Backoff`] (by default
//! equal-jittered from 5 s, doubling up to 300 s), out of the balancer. When the backoff
//! ends the *probe is open*: exactly one request may be sent (the first worker to pick the
//! endpoint claims its [`ProbeTicket`]). If that request succeeds the endpoint is alive
//! again with a clean policy and the backoff back at its start; if it fails the endpoint is
//! dead again for the next, longer, backoff. A probe whose outcome never arrives does not
//! wedge the endpoint: after the probe timeout (the backoff again, at least
//! [`MIN_PROBE_TIMEOUT`]) another probe may be sent. [States](#states) has the diagram.
//!
//! # When every endpoint is ejected: fail open
//!
//! When no endpoint of a client may take a request (all dead or with their probe in
//! flight), [`Accrual::all_ejected`] is `true` and [`Accrual::available`] returns *every*
//! endpoint: the balancer sends to ejected endpoints rather than failing the request
//! with "no hosts are available". This is what Linkerd 1 users saw (Finagle's balancers
//! treat a busy node as a last resort and pick among all nodes when none is open), and it
//! is the safer choice: failure accrual exists to steer traffic away from bad endpoints
//! towards good ones, and when there are no good ones failing fast would turn a partial
//! outage, or a wrong verdict (Linkerd marked healthy services dead during deploys,
//! linkerd#1114), into a total one. Outcomes of such requests do not revive or re-eject an
//! endpoint before its backoff ends; after it, the first outcome is the probe's verdict.
//! Envoy calls this the panic threshold; here it is fixed at 100 % and not configurable.
//! Surface `all_ejected` in logs and the admin views so that fail-open is visible.
//!
//! # States
//!
//! ```text
//!            policy verdict                 backoff over
//!   Alive ─────────────────────▶ Dead ───────────────────▶ ProbeOpen
//!     ▲                            ▲                           │ one request
//!     │ probe succeeded            │ probe failed              ▼ (ticket claimed)
//!     └────────────────────────────┴──────────────────── ProbeGranted
//!                                                              │ no outcome for the
//!                                                              ▼ probe timeout
//!                                                          ProbeOpen again
//! ```
//!
//! While alive, outcomes go to the policy. While dead (before the backoff ends), outcomes
//! are ignored: they are late results of requests sent before the ejection, or of
//! fail-open traffic. After the backoff, the first outcome is the probe's verdict,
//! whichever request carried it. Each ejected endpoint's state is visible in the
//! [`Snapshot`] ([`EjectedView`]: since, next probe, backoff, consecutive failures,
//! ejections, reason, probe state), so operators can see which endpoints are out and why.
//!
//! # Metrics
//!
//! Finagle's `failure_accrual/*` counters follow from the transitions: `removals` counts
//! [`Transition::Removed`]; `revivals` counts [`Transition::Revived`]; `probes` counts
//! probe verdicts ([`Transition::Revived`] and [`Transition::ProbeFailed`]; Finagle
//! counted probes when sent, so a lost probe is the one difference); the `removed_for_ms`
//! counter adds up the `backoff` of every `Removed` and `ProbeFailed`. As in Finagle, a
//! failed probe is not a new removal.
//! [`Accrual::removed_for`] gives one endpoint's time out so far, for gauges and the
//! admin views.

mod backoff;
mod policy;
mod probe;
mod snapshot;
mod state;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use backoff::Backoff;
pub use policy::{Policy, Reason};
pub use probe::{MIN_PROBE_TIMEOUT, ProbeTicket};
pub use snapshot::{EjectedView, ProbeState, Snapshot};
pub use state::Transition;

use state::Endpoint;

/// A client's `failureAccrual` settings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AccrualConfig {
    /// When to eject an endpoint (`kind` and its parameters).
    pub policy: Policy,
    /// How long an ejected endpoint stays out (`backoff`).
    pub backoff: Backoff,
}

/// A `failureAccrual` setting out of range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConfigError {
    /// `failures` is 0.
    ZeroFailures,
    /// `successRate` is not within `[0, 1]`.
    SuccessRateOutOfRange(f64),
    /// `requests` is 0.
    ZeroRequests,
    /// `window` is 0.
    ZeroWindow,
    /// The jittered backoff's `minMs` is above its `maxMs`.
    BackoffMinAboveMax {
        /// `minMs`.
        min: Duration,
        /// `maxMs`.
        max: Duration,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::ZeroFailures => write!(f, "failureAccrual.failures must be at least 1"),
            ConfigError::SuccessRateOutOfRange(r) => {
                write!(
                    f,
                    "failureAccrual.successRate must be within [0, 1], not {r}"
                )
            }
            ConfigError::ZeroRequests => write!(f, "failureAccrual.requests must be at least 1"),
            ConfigError::ZeroWindow => write!(f, "failureAccrual.window must be at least 1 s"),
            ConfigError::BackoffMinAboveMax { min, max } => write!(
                f,
                "failureAccrual.backoff.minMs ({}) is above maxMs ({})",
                min.as_millis(),
                max.as_millis()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl AccrualConfig {
    /// Checks the ranges, for the configuration loader.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.policy {
            Policy::ConsecutiveFailures { failures: 0 } => return Err(ConfigError::ZeroFailures),
            Policy::SuccessRate { success_rate, .. }
            | Policy::SuccessRateWindowed { success_rate, .. }
                if !(0.0..=1.0).contains(&success_rate) =>
            {
                return Err(ConfigError::SuccessRateOutOfRange(success_rate));
            }
            Policy::SuccessRate { requests: 0, .. } => return Err(ConfigError::ZeroRequests),
            Policy::SuccessRateWindowed { window, .. } if window.is_zero() => {
                return Err(ConfigError::ZeroWindow);
            }
            _ => {}
        }
        match self.backoff {
            Backoff::Jittered { min, max } if min > max => {
                Err(ConfigError::BackoffMinAboveMax { min, max })
            }
            _ => Ok(()),
        }
    }

    /// The nearest valid configuration: counts of 0 become 1, success rates are clamped
    /// to `[0, 1]` (NaN becomes 0, which never ejects), a zero window becomes 1 ms and a
    /// jittered backoff's bounds are put in order.
    pub fn normalized(self) -> Self {
        let rate = |r: f64| if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        let policy = match self.policy {
            Policy::ConsecutiveFailures { failures } => Policy::ConsecutiveFailures {
                failures: failures.max(1),
            },
            Policy::SuccessRate {
                success_rate,
                requests,
            } => Policy::SuccessRate {
                success_rate: rate(success_rate),
                requests: requests.max(1),
            },
            Policy::SuccessRateWindowed {
                success_rate,
                window,
            } => Policy::SuccessRateWindowed {
                success_rate: rate(success_rate),
                window: window.max(Duration::from_millis(1)),
            },
            Policy::Disabled => Policy::Disabled,
        };
        let backoff = match self.backoff {
            Backoff::Jittered { min, max } if min > max => Backoff::Jittered { min: max, max: min },
            b => b,
        };
        AccrualConfig { policy, backoff }
    }
}

/// The failure-accrual state of one client's endpoints, owned by its route actor.
#[derive(Debug)]
pub struct Accrual {
    config: AccrualConfig,
    /// The endpoint set, in the order discovery gave it.
    order: Vec<SocketAddr>,
    endpoints: HashMap<SocketAddr, Endpoint>,
}

impl Accrual {
    /// No endpoints yet; `config` is [normalized](AccrualConfig::normalized).
    pub fn new(config: AccrualConfig) -> Self {
        Accrual {
            config: config.normalized(),
            order: Vec::new(),
            endpoints: HashMap::new(),
        }
    }

    /// The (normalized) configuration.
    pub fn config(&self) -> &AccrualConfig {
        &self.config
    }

    /// Replaces the endpoint set: endpoints that stay keep their state (an ejected one
    /// stays ejected), removed ones are forgotten, new ones start alive at `now`.
    /// Duplicates are ignored.
    pub fn set_endpoints(&mut self, addrs: &[SocketAddr], now: Instant) {
        let mut old = std::mem::take(&mut self.endpoints);
        self.order.clear();
        for &addr in addrs {
            if self.endpoints.contains_key(&addr) {
                continue;
            }
            let endpoint = old
                .remove(&addr)
                .unwrap_or_else(|| Endpoint::new(&self.config.policy, now));
            self.endpoints.insert(addr, endpoint);
            self.order.push(addr);
        }
    }

    /// The endpoint set, in the order it was given.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.order
    }

    /// Counts the outcome of a request to `addr` that finished at `now`. `rand` is a
    /// uniform sample in `[0, 1)` that jitters the backoff if this outcome ejects the
    /// endpoint (values outside are clamped). Outcomes for addresses outside the set
    /// (removed while the request was in flight) are ignored.
    pub fn record(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        success: bool,
        rand: f64,
    ) -> Option<Transition> {
        let backoff = self.config.backoff;
        self.endpoints
            .get_mut(&addr)?
            .record(now, success, rand, &backoff)
    }

    /// Whether `addr` may take a request at `now`: it is alive, or its probe is open and
    /// free. Does not claim the probe (see [`Accrual::try_acquire`]). `false` for
    /// addresses outside the set.
    pub fn is_available(&self, addr: SocketAddr, now: Instant) -> bool {
        self.endpoints
            .get(&addr)
            .is_some_and(|e| e.is_available(now))
    }

    /// Call just before sending to `addr`: `true` when it is alive, or when its probe was
    /// free and is now claimed by the caller. `false` for addresses outside the set.
    pub fn try_acquire(&self, addr: SocketAddr, now: Instant) -> bool {
        self.endpoints
            .get(&addr)
            .is_some_and(|e| e.try_acquire(now))
    }

    /// The endpoints to balance over at `now`: the available ones, in set order, or
    /// every endpoint when none is available (fail open, see the module docs).
    pub fn available(&self, now: Instant) -> Vec<SocketAddr> {
        let live: Vec<_> = self
            .order
            .iter()
            .copied()
            .filter(|a| self.is_available(*a, now))
            .collect();
        if live.is_empty() {
            self.order.clone()
        } else {
            live
        }
    }

    /// `true` when the set is not empty and no endpoint may take a request at `now`, so
    /// the balancer fails open.
    pub fn all_ejected(&self, now: Instant) -> bool {
        !self.order.is_empty() && !self.order.iter().any(|a| self.is_available(*a, now))
    }

    /// How long `addr` has been out at `now`, from the first ejection of its current run;
    /// zero when it is alive or unknown.
    pub fn removed_for(&self, addr: SocketAddr, now: Instant) -> Duration {
        self.endpoints
            .get(&addr)
            .and_then(Endpoint::ejection)
            .map_or(Duration::ZERO, |e| now.saturating_duration_since(e.since))
    }

    /// `addr`'s ejection, if it is out.
    pub fn ejected(&self, addr: SocketAddr) -> Option<EjectedView> {
        let endpoint = self.endpoints.get(&addr)?;
        let e = endpoint.ejection()?;
        Some(EjectedView {
            since: e.since,
            next_probe: e.until,
            backoff: e.backoff,
            consecutive_failures: endpoint.consecutive_failures(),
            ejections: e.ejections,
            reason: e.reason,
            probe: e.probe.clone(),
        })
    }

    /// How many endpoints are ejected (dead or probing).
    pub fn ejected_count(&self) -> usize {
        self.endpoints
            .values()
            .filter(|e| e.ejection().is_some())
            .count()
    }

    /// The ejected endpoints, for the workers; publish it after every transition and
    /// every change of the set.
    pub fn snapshot(&self) -> Snapshot {
        let ejected = self
            .order
            .iter()
            .filter_map(|&a| Some((a, self.ejected(a)?)))
            .collect();
        Snapshot::new(self.order.len(), ejected)
    }

    /// The next instant after `now` at which availability changes without an outcome
    /// (a backoff ending, or an outstanding probe's claim expiring), for an actor that
    /// refreshes gauges or its own view on a timer. Not needed for correctness: probes
    /// open and expire on their own.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.endpoints
            .values()
            .filter_map(Endpoint::ejection)
            .filter_map(|e| {
                if e.until > now {
                    return Some(e.until);
                }
                let granted = e.probe.granted_at()?;
                let expiry = granted.checked_add(e.probe.timeout())?;
                (expiry > now).then_some(expiry)
            })
            .min()
    }

    /// One endpoint's state machine (tests).
    #[cfg(test)]
    fn endpoint(&self, addr: SocketAddr) -> Option<&Endpoint> {
        self.endpoints.get(&addr)
    }
}
