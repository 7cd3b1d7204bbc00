//! Route actors: the state of one client (bound name) that every worker shares.
//!
//! A client's endpoints are balanced per worker (see [`super::balance`]), but whether an
//! endpoint is ejected by failure accrual must be one verdict for all workers. The
//! [`RouteActor`] of a client owns its [`Accrual`] core: workers report each request's
//! outcome with a non-blocking message, the actor decides, and publishes a snapshot of
//! the ejected endpoints that workers read lock-free before picking. The actor runs under
//! a supervisor on the main arbiter; a restart starts its circuit breakers afresh without
//! touching any other client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix::prelude::*;
use arc_swap::ArcSwap;
use metrics::Counter;

use super::accrual::{Accrual, AccrualConfig, Policy, Snapshot, Transition};
use super::balance::BalancerConfig;
use super::choose::uniform;
use crate::naming::Path;

/// What one client's requests follow: its balancer, circuit breaker and requeue budget.
#[derive(Clone, Debug, Default)]
pub struct ClientPolicy {
    /// `loadBalancer`.
    pub balancer: BalancerConfig,
    /// `failureAccrual`.
    pub accrual: AccrualConfig,
    /// `requeueBudget`: (ttl, minRetriesPerSec, percentCanRetry).
    pub requeue_budget: (std::time::Duration, u32, f64),
    /// `requestAttemptTimeoutMs`.
    pub attempt_timeout: Option<std::time::Duration>,
    /// `peerUpgrades: [h2]`: HTTP/1.1 may ride HTTP/2 to Plexus peers.
    pub upgrade_h2: bool,
    /// `peerUpgrades: [tls]`: `tls` is used only with peers that accept it.
    pub negotiate_tls: bool,
    /// `tls:`: originate TLS to the endpoints.
    pub tls: Option<super::policy::ClientTlsTarget>,
    /// Thrift routers: framing, TTwitter and the Mux upgrade.
    pub thrift: ThriftClient,
}

/// How a Thrift router's client talks to its endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThriftClient {
    /// `thriftFramed` (default true).
    pub framed: bool,
    /// `attemptTTwitterUpgrade` (default false).
    pub ttwitter: bool,
    /// `peerUpgrades: [mux]`: carry calls to Plexus peers over one Mux session.
    pub mux: bool,
}

impl Default for ThriftClient {
    fn default() -> Self {
        ThriftClient {
            framed: true,
            ttwitter: false,
            mux: false,
        }
    }
}

/// Counters of a client's circuit breaker (`failure_accrual/*`).
struct AccrualStats {
    removals: Counter,
    revivals: Counter,
    probes: Counter,
    removed_for_ms: Counter,
}

impl AccrualStats {
    fn new(rt: &str, client: &str) -> Self {
        let c = |name: &'static str| metrics::counter!(name, "rt" => rt.to_string(), "client" => client.to_string());
        AccrualStats {
            removals: c("rt:client:failure_accrual:removals"),
            revivals: c("rt:client:failure_accrual:revivals"),
            probes: c("rt:client:failure_accrual:probes"),
            removed_for_ms: c("rt:client:failure_accrual:removed_for_ms"),
        }
    }
}

/// The part of a route that workers read.
pub struct RouteShared {
    /// The ejected endpoints, as last published.
    pub ejected: ArcSwap<Snapshot>,
    /// Failures reported per endpoint, so workers know when a success matters.
    failures: ArcSwap<BTreeMap<SocketAddr, Arc<AtomicU64>>>,
    /// Which outcomes the policy needs.
    report: Report,
}

impl RouteShared {
    fn new(config: &AccrualConfig) -> Self {
        let report = match config.policy {
            Policy::Disabled => Report::Nothing,
            Policy::ConsecutiveFailures { .. } => Report::FailuresAndRecoveries,
            Policy::SuccessRate { .. } | Policy::SuccessRateWindowed { .. } => Report::Everything,
        };
        RouteShared {
            ejected: ArcSwap::from_pointee(Accrual::new(*config).snapshot()),
            failures: ArcSwap::from_pointee(BTreeMap::new()),
            report,
        }
    }
}

/// Which outcomes a client's circuit breaker needs to hear about. Each report is a
/// message to another thread, so the common policy is fed only what changes its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    /// Nothing (`failureAccrual: none`).
    Nothing,
    /// Failures, and the first success on an endpoint after a failure was reported by
    /// any worker: enough for consecutive failures, which only a success resets.
    FailuresAndRecoveries,
    /// Every outcome (success rates need them all).
    Everything,
}

/// The value of a memory of reported failure counts ([`RouteHandle::outcome`]) that
/// never reported a success.
pub const NEVER_SEEN: u64 = u64::MAX;

/// A worker's handle on a route: read the snapshot, report outcomes.
#[derive(Clone)]
pub struct RouteHandle {
    /// The published state.
    pub shared: Arc<RouteShared>,
    actor: Option<Addr<RouteActor>>,
}

impl RouteHandle {
    /// Reports the outcome of one request to `addr`, when the policy needs it (never
    /// blocks). `seen` is the caller's memory of the failure count it last reported a
    /// success against for `addr` (start it at [`NEVER_SEEN`]); it is an atomic so that a
    /// request judged after it was answered (a response stream judged at its end) can
    /// keep the worker's memory from wherever its body ends.
    pub fn outcome(&self, addr: SocketAddr, success: bool, seen: &AtomicU64) {
        self.report(addr, success, |now| {
            seen.swap(now, Ordering::Relaxed) != now
        });
    }

    /// Reports an outcome when the policy needs it; `changed(count)` says whether a
    /// success is news given the endpoint's failure count now.
    fn report(&self, addr: SocketAddr, success: bool, changed: impl FnOnce(u64) -> bool) {
        let Some(actor) = &self.actor else { return };
        let send = match self.shared.report {
            Report::Nothing => false,
            Report::Everything => true,
            Report::FailuresAndRecoveries => {
                let failures = self.shared.failures.load();
                let Some(count) = failures.get(&addr) else {
                    return;
                };
                if success {
                    changed(count.load(Ordering::Acquire))
                } else {
                    count.fetch_add(1, Ordering::AcqRel);
                    true
                }
            }
        };
        if send {
            actor.do_send(Outcome {
                addr,
                success,
                at: Instant::now(),
            });
        }
    }

    /// Tells the route the client's current endpoints.
    pub fn set_endpoints(&self, addrs: Vec<SocketAddr>) {
        self.shared.failures.rcu(|old| {
            addrs
                .iter()
                .map(|a| {
                    (
                        *a,
                        old.get(a)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(AtomicU64::new(0))),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        });
        if let Some(a) = &self.actor {
            a.do_send(SetEndpoints(addrs));
        }
    }
}

/// Owns one client's failure accrual.
pub struct RouteActor {
    id: String,
    config: AccrualConfig,
    accrual: Accrual,
    shared: Arc<RouteShared>,
    stats: Arc<AccrualStats>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Outcome {
    addr: SocketAddr,
    success: bool,
    at: Instant,
}

#[derive(Message)]
#[rtype(result = "()")]
struct SetEndpoints(Vec<SocketAddr>);

impl Actor for RouteActor {
    type Context = Context<Self>;
}

impl Supervised for RouteActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(client = %self.id, "route actor restarting; circuit breakers start afresh");
        let endpoints = self.accrual.endpoints().to_vec();
        self.accrual = Accrual::new(self.config);
        self.accrual.set_endpoints(&endpoints, Instant::now());
        self.publish();
    }
}

impl RouteActor {
    fn publish(&self) {
        self.shared.ejected.store(Arc::new(self.accrual.snapshot()));
    }
}

impl Handler<Outcome> for RouteActor {
    type Result = ();

    fn handle(&mut self, o: Outcome, _: &mut Self::Context) {
        let Some(t) = self.accrual.record(o.addr, o.at, o.success, uniform()) else {
            return;
        };
        match &t {
            Transition::Removed { reason, backoff } => {
                self.stats.removals.increment(1);
                self.stats
                    .removed_for_ms
                    .increment(backoff.as_millis() as u64);
                tracing::info!(client = %self.id, endpoint = %o.addr, ?reason, ?backoff, "endpoint ejected");
            }
            Transition::ProbeFailed { backoff, .. } => {
                self.stats.probes.increment(1);
                self.stats
                    .removed_for_ms
                    .increment(backoff.as_millis() as u64);
                tracing::info!(client = %self.id, endpoint = %o.addr, ?backoff, "probe failed; endpoint stays ejected");
            }
            Transition::Revived { removed_for } => {
                self.stats.probes.increment(1);
                self.stats.revivals.increment(1);
                tracing::info!(client = %self.id, endpoint = %o.addr, ?removed_for, "endpoint revived");
            }
        }
        self.publish();
    }
}

impl Handler<SetEndpoints> for RouteActor {
    type Result = ();

    fn handle(&mut self, SetEndpoints(addrs): SetEndpoints, _: &mut Self::Context) {
        self.accrual.set_endpoints(&addrs, Instant::now());
        self.publish();
    }
}

/// The routes of one router, by client id. Looked up when a worker first uses a client
/// (not per request).
#[derive(Default)]
pub struct Routes {
    arbiter: Option<actix_rt::ArbiterHandle>,
    routes: std::sync::Mutex<BTreeMap<Path, RouteHandle>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Routes")
    }
}

impl Routes {
    /// Routes whose actors run on the current arbiter (none outside an actix system,
    /// e.g. in offline tools: then nothing is ever ejected).
    pub fn new() -> Self {
        let arbiter = actix_rt::System::try_current().map(|_| actix_rt::Arbiter::current());
        Routes {
            arbiter,
            routes: Default::default(),
        }
    }

    /// The route of client `id`, started on first use with `policy`.
    pub fn get_or_start(&self, rt: &str, id: &Path, policy: &ClientPolicy) -> RouteHandle {
        let Ok(mut routes) = self.routes.lock() else {
            return RouteHandle {
                shared: Arc::new(RouteShared::new(&policy.accrual)),
                actor: None,
            };
        };
        if let Some(r) = routes.get(id) {
            return r.clone();
        }
        let shared = Arc::new(RouteShared::new(&policy.accrual));
        let actor = self.arbiter.as_ref().map(|arbiter| {
            let (shared, config, id, stats) = (
                shared.clone(),
                policy.accrual,
                id.show(),
                Arc::new(AccrualStats::new(rt, id.show().trim_start_matches('/'))),
            );
            Supervisor::start_in_arbiter(arbiter, move |_| RouteActor {
                id,
                accrual: Accrual::new(config),
                config,
                shared,
                stats,
            })
        });
        let handle = RouteHandle { shared, actor };
        routes.insert(id.clone(), handle.clone());
        handle
    }

    /// Forgets an idle client's route (its actor stops when the last handle is gone).
    pub fn forget(&self, id: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.retain(|k, _| k.show() != id);
        }
    }

    /// The ejected endpoints of every route, for `/client_state.json`.
    pub fn ejected(&self, now: Instant) -> BTreeMap<String, Vec<serde_json::Value>> {
        let Ok(routes) = self.routes.lock() else {
            return BTreeMap::new();
        };
        routes
            .iter()
            .map(|(id, r)| {
                let snap = r.shared.ejected.load();
                let list = snap
                    .ejected()
                    .iter()
                    .map(|(addr, v)| {
                        serde_json::json!({
                            "address": addr.to_string(),
                            "reason": format!("{:?}", v.reason),
                            "removed_for_ms": v.removed_for(now).as_millis() as u64,
                            "next_probe_in_ms": v.next_probe.saturating_duration_since(now).as_millis() as u64,
                            "ejections": v.ejections,
                        })
                    })
                    .collect();
                (id.show(), list)
            })
            .collect()
    }
}
