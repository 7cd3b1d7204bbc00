//! Request metrics for the server, service and client scopes of a router.
//!
//! Handles are registered once per scope (per worker) and kept, so counting a request
//! is a few atomic adds: no lock, no allocation. Names follow Linkerd: `requests`,
//! `success`, `failures` (with the failure's kind), `status/<code>` and `status/<N>XX`,
//! `request_latency_ms`, `pending`, and `connections` for servers.
//!
//! A request counts in `requests` when it starts, and in `success` or `failures` (leaving
//! `pending`) when it ends; latency and status are taken when it is answered. For a
//! response judged at the end of its stream ([`InFlight::defer`]) those are two moments.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// Which scope a set of stats belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `rt/<router>/server/<ip>/<port>`.
    Server,
    /// `rt/<router>/service/<name>`.
    Service,
    /// `rt/<router>/client/<id>`.
    Client,
}

impl Scope {
    /// The label key of this scope's id.
    pub fn key(self) -> &'static str {
        match self {
            Scope::Server => "server",
            Scope::Service => "service",
            Scope::Client => "client",
        }
    }
}

/// When each service and client scope of a router was last used, so idle ones can be
/// evicted with their metrics. Workers stamp it on every request (one relaxed atomic
/// store); the sweeper reads it.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    scopes: Mutex<HashMap<(Scope, String), Arc<AtomicU64>>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: Instant::now(),
            scopes: Mutex::default(),
        }
    }
}

impl Activity {
    fn stamp(&self, scope: Scope, id: &str) -> Arc<AtomicU64> {
        let stamp = Arc::new(AtomicU64::new(self.millis(Instant::now())));
        match self.scopes.lock() {
            Ok(mut scopes) => scopes
                .entry((scope, id.to_string()))
                .or_insert(stamp)
                .clone(),
            Err(_) => stamp,
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Forgets the scopes idle for longer than `ttl` and returns them.
    pub fn take_idle(&self, ttl: Duration, now: Instant) -> Vec<(Scope, String)> {
        let now = self.millis(now);
        let ttl = ttl.as_millis() as u64;
        let Ok(mut scopes) = self.scopes.lock() else {
            return Vec::new();
        };
        let idle: Vec<(Scope, String)> = scopes
            .iter()
            .filter(|(_, last)| now.saturating_sub(last.load(Ordering::Relaxed)) > ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &idle {
            scopes.remove(key);
        }
        idle
    }
}

/// The request stats of one scope.
pub struct ScopeStats {
    scope: Scope,
    last_used: Option<(Arc<AtomicU64>, Instant)>,
    requests: Counter,
    latency: Histogram,
    /// Per status code seen: its counter and its class's (`2XX`). A scope sees a
    /// handful of codes, so a list is searched faster than a map is hashed.
    by_status: RefCell<Vec<(u16, Counter, Counter)>>,
    /// What a request's end counts, shared with the [`Deferred`] ends of streams.
    ends: Arc<Ends>,
}

/// The counters a request's end touches: kept apart (and `Send`) so that a response
/// body judged at the end of its stream, which may be dropped anywhere, can count it.
struct Ends {
    scope: Scope,
    labels: [(String, String); 2],
    success: Counter,
    failures: Counter,
    pending: Gauge,
    /// Registered on a failure of that kind first (failures only: the lock is never
    /// taken for a success).
    by_failure: Mutex<HashMap<&'static str, Counter>>,
}

impl Ends {
    fn end(&self, success: bool, failure: Option<&'static str>) {
        self.pending.decrement(1.0);
        if success {
            self.success.increment(1);
        } else {
            self.failures.increment(1);
            if let Some(kind) = failure {
                self.failure(kind).increment(1);
            }
        }
    }

    fn failure(&self, kind: &'static str) -> Counter {
        let mut by_failure = self
            .by_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_failure
            .entry(kind)
            .or_insert_with(|| {
                let mut labels: Vec<(String, String)> = self.labels.to_vec();
                labels.push(("exception".to_string(), kind.to_string()));
                counter!(format!("rt:{}:failures", self.scope.key()), &labels)
            })
            .clone()
    }
}

macro_rules! scoped {
    ($kind:ident, $scope:expr, $leaf:literal, $labels:expr) => {{
        let l = $labels;
        match $scope {
            Scope::Server => $kind!(concat!("rt:server:", $leaf), "rt" => l[0].1.clone(), "server" => l[1].1.clone()),
            Scope::Service => $kind!(concat!("rt:service:", $leaf), "rt" => l[0].1.clone(), "service" => l[1].1.clone()),
            Scope::Client => $kind!(concat!("rt:client:", $leaf), "rt" => l[0].1.clone(), "client" => l[1].1.clone()),
        }
    }};
}

impl ScopeStats {
    /// Registers the stats of `scope` `id` (without its leading `/`) of router `rt`;
    /// with `activity`, every request stamps the scope as used.
    pub fn new(rt: &str, scope: Scope, id: &str, activity: Option<&Activity>) -> Self {
        let trimmed = id.trim_start_matches('/');
        let last_used = activity.map(|a| (a.stamp(scope, trimmed), a.origin));
        let labels = [
            ("rt".to_string(), rt.to_string()),
            (
                scope.key().to_string(),
                id.trim_start_matches('/').to_string(),
            ),
        ];
        ScopeStats {
            requests: scoped!(counter, scope, "requests", &labels),
            latency: scoped!(histogram, scope, "request_latency_ms", &labels),
            ends: Arc::new(Ends {
                success: scoped!(counter, scope, "success", &labels),
                failures: scoped!(counter, scope, "failures", &labels),
                pending: scoped!(gauge, scope, "pending", &labels),
                scope,
                labels,
                by_failure: Mutex::default(),
            }),
            scope,
            last_used,
            by_status: RefCell::new(Vec::new()),
        }
    }

    /// A request started: counted now, and finished (or, if its future is dropped
    /// because the client went away, counted as cancelled) through the guard.
    pub fn start(&self) -> InFlight<'_> {
        self.start_at(Instant::now())
    }

    /// A request started at `now` (read by the caller, who shares one reading between
    /// the scopes a request enters at once); see [`ScopeStats::start`].
    pub fn start_at(&self, now: Instant) -> InFlight<'_> {
        self.requests.increment(1);
        self.ends.pending.increment(1.0);
        if let Some((last, origin)) = &self.last_used {
            last.store(
                now.saturating_duration_since(*origin).as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        InFlight {
            stats: self,
            started: now,
            done: false,
        }
    }

    fn end(
        &self,
        latency: Duration,
        status: Option<u16>,
        success: bool,
        failure: Option<&'static str>,
    ) {
        self.answered(latency, status);
        self.ends.end(success, failure);
    }

    /// The latency and status of a request answered (or failed).
    fn answered(&self, latency: Duration, status: Option<u16>) {
        self.latency.record(latency.as_secs_f64() * 1000.0);
        if let Some(code) = status {
            let mut by_status = self.by_status.borrow_mut();
            let i = match by_status.iter().position(|(c, ..)| *c == code) {
                Some(i) => i,
                None => {
                    let exact = format!("rt:{}:status:{code}", self.scope.key());
                    let class = format!("rt:{}:status:{}XX", self.scope.key(), code / 100);
                    let labels: Vec<(String, String)> = self.ends.labels.to_vec();
                    by_status.push((code, counter!(exact, &labels), counter!(class, &labels)));
                    by_status.len() - 1
                }
            };
            let (_, exact, class) = &by_status[i];
            exact.increment(1);
            class.increment(1);
        }
    }
}

/// A request being counted; see [`ScopeStats::start`].
pub struct InFlight<'a> {
    stats: &'a ScopeStats,
    started: Instant,
    done: bool,
}

impl InFlight<'_> {
    /// Ends with an HTTP status (`None`: failed without one); a 5XX or a failure kind
    /// counts as a failure.
    pub fn finish(mut self, status: Option<u16>, failure: Option<&'static str>) {
        self.done = true;
        let success = failure.is_none() && status.is_some_and(|s| s < 500);
        self.stats
            .end(self.started.elapsed(), status, success, failure);
    }

    /// Ends without a status (Thrift) at `at`: a success, or a failure of kind `failure`.
    pub fn finish_outcome(mut self, success: bool, failure: Option<&'static str>, at: Instant) {
        self.done = true;
        self.stats.end(self.since(at), None, success, failure);
    }

    /// Ends with an HTTP status the classifier judged, answered at `at`.
    pub fn finish_classified(mut self, status: u16, success: bool, at: Instant) {
        self.done = true;
        self.stats.end(self.since(at), Some(status), success, None);
    }

    /// Answered with `status` at `at`, whose success is known only when the response
    /// stream ends: the latency and the status count now, success or failure (and the
    /// end of `pending`) when the returned [`Deferred`] is finished or dropped. Until
    /// then the request is in neither `success` nor `failures`: `requests` = `success` +
    /// `failures` + `pending` holds at every moment.
    pub fn defer(mut self, status: u16, at: Instant) -> Deferred {
        self.done = true;
        self.stats.answered(self.since(at), Some(status));
        Deferred {
            ends: Some(self.stats.ends.clone()),
        }
    }

    /// The time from the start to `at`.
    fn since(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.started)
    }
}

/// The end of a request whose response is still streaming; see [`InFlight::defer`].
/// Dropped unfinished, it counts as a failure of kind `CancelledRequestException`.
pub struct Deferred {
    ends: Option<Arc<Ends>>,
}

impl Deferred {
    /// The stream ended: a success, or a failure (of `failure`'s kind, if given).
    pub fn finish(mut self, success: bool, failure: Option<&'static str>) {
        if let Some(ends) = self.ends.take() {
            ends.end(success, failure);
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if let Some(ends) = self.ends.take() {
            ends.end(false, Some(CANCELLED));
        }
    }
}

/// The failure kind of a request whose client went away first.
pub const CANCELLED: &str = "CancelledRequestException";

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stats
                .end(self.started.elapsed(), None, false, Some(CANCELLED));
        }
    }
}

/// Requests a server received in one protocol (`http/1.1` or `h2`).
pub fn protocol_requests(rt: &str, server: &str, protocol: &'static str) -> metrics::Counter {
    metrics::counter!(
        "rt:server:protocol:requests",
        "rt" => rt.to_string(),
        "server" => server.to_string(),
        "protocol" => protocol,
    )
}

/// TLS connections a server accepted (`rt/<router>/server/<ip>/<port>/tls/connections`).
pub fn tls_connections(rt: &str, server: &std::net::SocketAddr) -> metrics::Counter {
    metrics::counter!(
        "rt:server:tls:connections",
        "rt" => rt.to_string(),
        "server" => format!("{}/{}", server.ip(), server.port()),
    )
}

/// TLS handshakes a server refused, by why (`.../tls/handshake_failures/<kind>`).
pub fn tls_failures(
    rt: &str,
    server: &std::net::SocketAddr,
    kind: &'static str,
) -> metrics::Counter {
    metrics::counter!(
        "rt:server:tls:handshake_failures",
        "rt" => rt.to_string(),
        "server" => format!("{}/{}", server.ip(), server.port()),
        "kind" => kind,
    )
}

/// The connections gauge of a server.
pub fn connections(rt: &str, server: &str) -> Gauge {
    gauge!("rt:server:connections", "rt" => rt.to_string(), "server" => server.to_string())
}
