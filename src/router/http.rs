//! The HTTP/1.1 pipeline: every phase, in order, for one request.
//!
//! accept (done by the server) → clear context at edges → read the per-request dtab →
//! check the call depth → identify → bind → choose → forward through the client →
//! respond. Failures at any step are answered by [`ProxyError::response`]; nothing here
//! panics on input from the network.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use plexus_http::headers as h;

use super::balance::{Balancer, Outcome as BalanceOutcome, Pending};
use super::binding::{BindingCache, no_hosts};
use super::client::{self, BoxError, ProxyBody, SendError};
use super::error::{ErrorKind, ProxyError};
use super::policy::ServicePolicy;
use super::retry::StreamEnd;
use super::retry::policy::DEFAULT_RETRY_BUFFER_BYTES;
use super::retry::policy::requeue_limit;
use super::retry::{
    self, AttemptError, BackoffConfig, Deadline, Decision, Exchange, GiveUpReason,
    Outcome as RetryOutcome, RetryBudget, RetryState, deadline,
};
use super::route::{NEVER_SEEN, RouteHandle};
use super::stats::{CANCELLED, Deferred, InFlight, Scope, ScopeStats};
use super::{Router, ServerSpec, choose, identify};
use crate::naming::{self, Addr, Bound, Dtab, NameTree, Path};
use crate::telemetry::{AttemptOutcome, Observation};

mod request_body;
mod stream_end;
pub use request_body::RequestBody;
use stream_end::{End, OnEnd};

/// A router as one worker thread sees it: the shared configuration plus this worker's
/// binding cache and metric handles.
pub struct Worker {
    /// The router.
    pub router: Arc<Router>,
    bindings: RefCell<BindingCache>,
    servers: RefCell<HashMap<SocketAddr, Rc<ScopeStats>>>,
    // Looked up on every request: hashed with foldhash (randomly seeded) rather than
    // SipHash, which costs several times as much on a path's labels.
    services: RefCell<foldhash::HashMap<Path, Rc<ServiceEntry>>>,
    clients: RefCell<foldhash::HashMap<Path, Rc<ClientEntry>>>,
    /// When idle services and clients were last dropped (see [`Worker::sweep`]).
    last_sweep: Cell<Option<Instant>>,
}

/// One service (logical name) as a worker sees it: its stats, its policy (timeout,
/// classifier, retries) and this worker's share of its retry budget.
pub struct ServiceEntry {
    pub(super) stats: Rc<ScopeStats>,
    /// `l5d-dst-service`, ready to send.
    dst_header: HeaderValue,
    pub(super) policy: ServicePolicy,
    pub(super) budget: RefCell<RetryBudget>,
    pub(super) retries_total: metrics::Counter,
    pub(super) retries_per_request: metrics::Histogram,
    pub(super) budget_exhausted: metrics::Counter,
    budget_balance: metrics::Gauge,
    used: Cell<Instant>,
}

/// One client as a worker sees it: its stats, its balancer over the client's endpoints,
/// its requeue budget, and the shared route (circuit breakers).
pub struct ClientEntry {
    pub(super) stats: Rc<ScopeStats>,
    /// `l5d-dst-client`, ready to send.
    id_header: HeaderValue,
    balancer: RefCell<Balancer>,
    endpoints: RefCell<Vec<(SocketAddr, f64)>>,
    /// Shared with the responses judged at the end of their streams.
    route: Arc<RouteHandle>,
    requeue_budget: RefCell<RetryBudget>,
    requeues: metrics::Counter,
    pub(super) attempt_timeout: Option<Duration>,
    /// May carry HTTP/1.1 over HTTP/2 to Plexus peers (`peerUpgrades: [h2]`).
    upgrade_h2: bool,
    /// Uses its TLS only with peers that accept it (`peerUpgrades: [tls]`).
    negotiate_tls: bool,
    /// The client's TLS (`tls:`), if any.
    pub(super) tls: Option<super::policy::ClientTlsTarget>,
    /// How Thrift routers talk to the endpoints (unused by HTTP routers).
    pub(super) thrift: super::route::ThriftClient,
    /// Failure counts this worker last reported a success against, per endpoint
    /// (shared with the responses judged at the end of their streams).
    reported: RefCell<foldhash::HashMap<SocketAddr, Arc<AtomicU64>>>,
    used: Cell<Instant>,
}

impl ClientEntry {
    /// Starts the client stack for one request at `now`: brings the endpoints up to
    /// date and gives the request its requeue state (its share of the requeue budget).
    pub(super) fn begin(&self, addr: &Addr, now: Instant) -> RetryState {
        self.sync(addr, now);
        let limit = requeue_limit(self.requeue_budget.borrow().balance(now));
        self.requeue_budget.borrow_mut().deposit(now);
        RetryState::new(BackoffConfig::default(), limit)
    }

    /// Picks an endpoint for one attempt starting at `now` with the client's balancer,
    /// avoiding ejected endpoints (an ejected one whose probe is open makes this attempt
    /// the probe); the attempt counts as outstanding until [`Outstanding::end`]. `None`:
    /// nothing can take it.
    pub(super) fn pick(&self, now: Instant) -> Option<(SocketAddr, Outstanding<'_>)> {
        let ejected = self.route.shared.ejected.load();
        let endpoint = self
            .balancer
            .borrow_mut()
            .pick(now, &mut choose::uniform, |a| ejected.is_available(a, now))?;
        if ejected.get(endpoint).is_some() {
            ejected.try_acquire(endpoint, now);
        }
        let pending = Outstanding {
            client: self,
            pending: Some(self.balancer.borrow_mut().start(endpoint, now)),
        };
        Some((endpoint, pending))
    }

    /// Whether an attempt `endpoint` did not act on is sent again (a requeue), within
    /// the request's limit and the client's requeue budget. The caller knows how it
    /// failed (`why`): it never got it (`ConnectFailed`), or refused it (`Refused`).
    pub(super) fn requeue(
        &self,
        state: &mut RetryState,
        endpoint: SocketAddr,
        why: AttemptError,
        error: &ProxyError,
    ) -> bool {
        let decision = state.requeue(
            why,
            None,
            &mut self.requeue_budget.borrow_mut(),
            Instant::now(),
        );
        if decision != Decision::Requeue {
            return false;
        }
        tracing::debug!(%endpoint, error = %error, "requeued a request its endpoint did not act on");
        self.requeues.increment(1);
        true
    }

    /// Reports an outcome of `endpoint` to its circuit breaker.
    pub(super) fn outcome(&self, endpoint: SocketAddr, success: bool) {
        let mut reported = self.reported.borrow_mut();
        let seen = reported
            .entry(endpoint)
            .or_insert_with(|| Arc::new(AtomicU64::new(NEVER_SEEN)));
        self.route.outcome(endpoint, success, seen);
    }

    /// This worker's memory of what it reported about `endpoint`, to report later.
    fn seen(&self, endpoint: SocketAddr) -> Arc<AtomicU64> {
        self.reported
            .borrow_mut()
            .entry(endpoint)
            .or_insert_with(|| Arc::new(AtomicU64::new(NEVER_SEEN)))
            .clone()
    }

    /// Brings the balancer and the route up to date with the bound endpoints.
    fn sync(&self, addr: &Addr, now: Instant) {
        let fresh: &[crate::naming::Address] = match addr {
            Addr::Bound(a) => a,
            _ => &[],
        };
        let unchanged = {
            let known = self.endpoints.borrow();
            known.len() == fresh.len()
                && known
                    .iter()
                    .zip(fresh)
                    .all(|((a, w), x)| *a == x.addr && *w == x.weight)
        };
        if unchanged {
            return;
        }
        let current: Vec<(SocketAddr, f64)> = fresh.iter().map(|x| (x.addr, x.weight)).collect();
        self.balancer.borrow_mut().set_endpoints(&current, now);
        self.route
            .set_endpoints(current.iter().map(|(a, _)| *a).collect());
        *self.endpoints.borrow_mut() = current;
    }
}

impl Worker {
    fn new(router: Arc<Router>) -> Self {
        Worker {
            router,
            bindings: RefCell::default(),
            servers: RefCell::default(),
            services: RefCell::default(),
            clients: RefCell::default(),
            last_sweep: Cell::new(None),
        }
    }

    /// Drops the services and clients idle for the idle TTL, when a new one is made,
    /// at most once per tenth of the TTL, as the binding cache does: sweeping on every
    /// new name made a stream of distinct names (random `Host` values at an edge) cost
    /// time in proportion to the names already kept, for each new one.
    fn sweep(&self, now: Instant) {
        let ttl = self.router.idle_ttl;
        if !super::binding::sweep_due(self.last_sweep.get(), ttl, now) {
            return;
        }
        self.last_sweep.set(Some(now));
        let live = |used: Instant| now.saturating_duration_since(used) <= ttl;
        self.services.borrow_mut().retain(|_, e| live(e.used.get()));
        self.clients.borrow_mut().retain(|_, c| live(c.used.get()));
    }

    /// The stats of a server of this router (`rt/<label>/server/<ip>/<port>`).
    pub fn server_stats(&self, addr: SocketAddr) -> Rc<ScopeStats> {
        self.servers
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| {
                let id = format!("{}/{}", addr.ip(), addr.port());
                Rc::new(ScopeStats::new(
                    &self.router.label,
                    Scope::Server,
                    &id,
                    None,
                ))
            })
            .clone()
    }

    /// This worker's entry for service `name`, used `now`; made again when unused for
    /// the idle TTL.
    pub(super) fn service(&self, name: &Path, now: Instant) -> Rc<ServiceEntry> {
        if let Some(e) = self.services.borrow().get(name)
            && now.saturating_duration_since(e.used.get()) <= self.router.idle_ttl
        {
            e.used.set(now);
            return e.clone();
        }
        let router = &self.router;
        let policy = router.service_blocks.policy(name);
        let (ttl, min, pct) = policy.retry_budget;
        let label = name.show();
        let id = label.trim_start_matches('/').to_string();
        let rt = router.label.clone();
        let entry = Rc::new(ServiceEntry {
            dst_header: header_value(&label),
            stats: Rc::new(ScopeStats::new(
                &router.label,
                Scope::Service,
                &label,
                Some(&router.activity),
            )),
            budget: RefCell::new(
                RetryBudget::new(ttl, router.reserve_share(min), pct).unwrap_or_default(),
            ),
            retries_total: metrics::counter!("rt:service:retries:total", "rt" => rt.clone(), "service" => id.clone()),
            retries_per_request: metrics::histogram!("rt:service:retries:per_request", "rt" => rt.clone(), "service" => id.clone()),
            budget_exhausted: metrics::counter!("rt:service:retries:budget_exhausted", "rt" => rt.clone(), "service" => id.clone()),
            budget_balance: metrics::gauge!("rt:service:retries:budget", "rt" => rt, "service" => id),
            policy,
            used: Cell::new(now),
        });
        self.sweep(now);
        self.services
            .borrow_mut()
            .insert(name.clone(), entry.clone());
        entry
    }

    /// This worker's entry for client `id`, used `now`; made again when unused for the
    /// idle TTL.
    pub(super) fn client(&self, id: &Path, now: Instant) -> Rc<ClientEntry> {
        if let Some(c) = self.clients.borrow().get(id)
            && now.saturating_duration_since(c.used.get()) <= self.router.idle_ttl
        {
            c.used.set(now);
            return c.clone();
        }
        let router = &self.router;
        let policy = router.client_blocks.policy(id);
        let (ttl, min, pct) = policy.requeue_budget;
        let label = id.show();
        let entry = Rc::new(ClientEntry {
            id_header: header_value(&label),
            stats: Rc::new(ScopeStats::new(
                &router.label,
                Scope::Client,
                &label,
                Some(&router.activity),
            )),
            balancer: RefCell::new(Balancer::new(policy.balancer.clone())),
            endpoints: RefCell::default(),
            route: Arc::new(router.routes.get_or_start(&router.label, id, &policy)),
            requeue_budget: RefCell::new(
                RetryBudget::new(ttl, router.reserve_share(min), pct).unwrap_or_default(),
            ),
            requeues: metrics::counter!(
                "rt:client:retries:requeues",
                "rt" => router.label.clone(),
                "client" => label.trim_start_matches('/').to_string()
            ),
            attempt_timeout: policy.attempt_timeout,
            upgrade_h2: policy.upgrade_h2,
            negotiate_tls: policy.negotiate_tls,
            tls: policy.tls.clone(),
            thrift: policy.thrift,
            reported: RefCell::default(),
            used: Cell::new(now),
        });
        self.sweep(now);
        self.clients.borrow_mut().insert(id.clone(), entry.clone());
        entry
    }
}

thread_local! {
    static WORKERS: RefCell<HashMap<String, Rc<Worker>>> = RefCell::new(HashMap::new());
}

/// This thread's worker for `router` (created on first use).
pub fn worker_for(router: &Arc<Router>) -> Rc<Worker> {
    WORKERS.with(|w| {
        w.borrow_mut()
            .entry(router.label.clone())
            .or_insert_with(|| Rc::new(Worker::new(router.clone())))
            .clone()
    })
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| -> BoxError { match never {} })
        .boxed_unsync()
}

/// The response for a failure, with `l5d-err`.
fn error_response(router: &Router, e: &ProxyError) -> Response<ProxyBody> {
    let (parts, body) = e.response().into_parts(
        router.limits.max_header_bytes,
        router.limits.max_err_body_bytes,
    );
    Response::from_parts(parts, full(body))
}

/// Makes an error response a gRPC one (for a gRPC request): the status and `l5d-err`
/// stay, the text body goes, and `grpc-status` (the gRPC status the HTTP status maps to,
/// as gRPC's own HTTP-to-gRPC mapping has it) and `grpc-message` join the headers, as a
/// "trailers-only" response. Without this a gRPC client tries to read the text as a
/// message and reports a protocol error instead of, say, UNAVAILABLE.
fn grpc_error(rsp: &mut Response<ProxyBody>, e: &ProxyError) {
    let code = match rsp.status().as_u16() {
        400 => "13",
        401 => "16",
        403 => "7",
        404 => "12",
        429 | 502 | 503 | 504 => "14",
        _ => "2",
    };
    // grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2).
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    let message = percent_encoding::utf8_percent_encode(&e.message, RESERVED).to_string();
    let headers = rsp.headers_mut();
    headers.insert(GRPC_STATUS, HeaderValue::from_static(code));
    if let Ok(v) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", v);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    *rsp.body_mut() = full(Bytes::new());
}

/// Serves one request received by `server`, counted in `stats` (the server's, from
/// [`Worker::server_stats`]: looked up once per connection, not per request).
pub async fn handle(
    worker: Rc<Worker>,
    server: Rc<ServerSpec>,
    conn: Rc<ConnInfo>,
    stats: Rc<ScopeStats>,
    mut req: Box<Request<RequestBody>>,
) -> Response<ProxyBody> {
    let router = &worker.router;
    // The clock is read once as the request starts, for every scope it enters and every
    // phase up to its first attempt, once as the answer comes (see `forward`), and once
    // as the server counts it: a reading costs about as much as a header lookup, and a
    // call used to make seventeen.
    let started = Instant::now();
    let inflight = stats.start_at(started);
    // A Plexus peer offering to upgrade: HTTP/1.1 routers also take HTTP/2 on this
    // port, so say yes (edges, which clear context, never advertise).
    let offered = req.headers_mut().remove(h::L5D_PEER_UPGRADE).is_some()
        && router.version == crate::config::HttpVersion::Http1
        && !server.clear_context;
    // gRPC clients read a status, not an error text: see `grpc_error`.
    let grpc = router.version == crate::config::HttpVersion::H2
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let obs = Observation::start(
        &router.telemetry,
        &router.label,
        !server.clear_context,
        conn.peer,
        conn.local,
        &mut req,
    );
    let (mut rsp, failure) = match route(&worker, &server, &conn, &obs, started, req).await {
        Ok(rsp) => {
            obs.finish(rsp.status().as_u16(), None);
            (rsp, None)
        }
        Err(e) => {
            tracing::debug!(router = %router.label, error = %e, "request failed");
            let mut rsp = error_response(router, &e);
            if grpc {
                grpc_error(&mut rsp, &e);
            }
            obs.finish(rsp.status().as_u16(), Some(&e));
            (rsp, Some(e.metric_label()))
        }
    };
    inflight.finish(Some(rsp.status().as_u16()), failure);
    if offered {
        // h2 always (this port takes it); tls when this server can also do TLS.
        let answer = if server.tls.is_some() && server.accept_plaintext {
            "h2, tls"
        } else {
            "h2"
        };
        rsp.headers_mut()
            .insert(h::L5D_PEER_UPGRADE, HeaderValue::from_static(answer));
    }
    if server.clear_context {
        // Edges never leak routing details: drop l5d-* headers, and Plexus's error text.
        let had_error = rsp.headers().contains_key(h::L5D_ERR);
        h::strip_l5d(rsp.headers_mut());
        if had_error {
            rsp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            *rsp.body_mut() = full(Bytes::new());
        }
    }
    rsp
}

/// Reads and removes the dtab headers: `l5d-ctx-dtab` values then `l5d-dtab` values.
/// Most requests carry neither: then nothing is removed (a removal looks the name up).
fn take_local_dtab(headers: &mut http::HeaderMap) -> Result<Dtab, ProxyError> {
    let mut found = false;
    let local = naming::local_dtab(
        headers
            .iter()
            .filter(|&(n, _)| *n == name::L5D_CTX_DTAB || *n == name::L5D_DTAB)
            .inspect(|_| found = true)
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
    )
    .map_err(|e| ProxyError::new(ErrorKind::BadRequest, e.to_string()))?;
    if found {
        headers.remove(name::L5D_CTX_DTAB);
        headers.remove(name::L5D_DTAB);
    }
    Ok(local)
}

async fn route(
    worker: &Worker,
    server: &ServerSpec,
    conn: &ConnInfo,
    obs: &Observation<'_>,
    started: Instant,
    req: Box<Request<RequestBody>>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let router = &worker.router;
    let (mut parts, body) = req.into_parts();

    if server.clear_context {
        h::strip_l5d(&mut parts.headers);
    }
    let local = take_local_dtab(&mut parts.headers)?;
    let depth = h::via_depth(&parts.headers);
    if depth > server.max_call_depth {
        return Err(ProxyError::new(
            ErrorKind::CallDepth,
            format!(
                "Maximum number of hops exceeded: {depth} > {}",
                server.max_call_depth
            ),
        ));
    }

    // Identify on the request as the app sent it to its destination. HTTP/1.1 routers
    // see it in origin form with `Host`, as an app's server would; an h2 router's
    // requests are already in the form they leave in (`:authority` in the URI), and are
    // left so rather than turned into `Host` and back on every call.
    let mut parts = if router.version == crate::config::HttpVersion::H2 {
        parts
    } else {
        let mut head = Request::from_parts(parts, ());
        h::normalize_absolute_form(&mut head);
        head.into_parts().0
    };
    let (dst, new_uri) = identify::identify(router, &parts)?;
    if let Some(uri) = new_uri {
        // Only `io.l5d.path` consumes, and only HTTP/1.1 routers have it: the request
        // is in origin form.
        parts.uri = uri;
    }

    let service = worker.service(&dst, started);
    obs.service(&service.dst_header);
    // The request's deadline: the strictest of the one it carries and the total timeout.
    let carried = parts.headers.get_all(name::L5D_CTX_DEADLINE);
    let present = carried.iter().next().is_some();
    let inbound = deadline::parse(carried.iter().map(|v| v.as_bytes()));
    if present {
        parts.headers.remove(name::L5D_CTX_DEADLINE);
    }
    let starting = Deadline::starting(inbound, service.policy.total_timeout);
    let deadline = starting.map(|(d, _)| d);
    let inflight = service.stats.start_at(started);
    let answer = match starting.map(|(_, left)| left) {
        Some(None) => Err(ProxyError::new(
            ErrorKind::Timeout,
            format!("the deadline of the request to {dst} has passed"),
        )),
        remaining => {
            // Boxed: the rest of the request's state (the service and client stacks) is
            // kilobytes, and every future that holds a future inline is copied whole
            // when it is made; this keeps the request's outer futures small.
            let attempt = super::boxed(|| {
                dispatch(
                    worker, server, conn, obs, &service, &dst, &local, deadline, started, parts,
                    body,
                )
            });
            match remaining.flatten() {
                None => attempt.await,
                Some(left) => match tokio::time::timeout(left, attempt).await {
                    Ok(r) => r,
                    Err(_) => Err(ProxyError::new(
                        ErrorKind::Timeout,
                        format!(
                            "exceeded {} ms to {dst} while waiting for a response",
                            left.as_millis()
                        ),
                    )),
                },
            }
        }
    };
    let at = answer
        .as_ref()
        .map_or_else(|_| Instant::now(), |a| a.answered);
    service
        .budget_balance
        .set(service.budget.borrow().balance(at) as f64);
    service_finish(inflight, service.policy.classifier, answer)
}

/// Counts the request in the service's stats, as the classifier judged its response;
/// a response judged at the end of its stream is counted then, with its client's share.
fn service_finish(
    inflight: InFlight<'_>,
    classifier: retry::Classifier,
    answer: Result<Answer, ProxyError>,
) -> Result<Response<ProxyBody>, ProxyError> {
    match answer {
        Ok(Answer {
            rsp,
            at_end: Some(client),
            answered,
            ..
        }) => {
            let judge = AtEnd {
                classifier,
                service: inflight.defer(rsp.status().as_u16(), answered),
                client,
            };
            Ok(rsp.map(|body| OnEnd::new(body, move |end| judge.settle(end)).boxed_unsync()))
        }
        Ok(Answer {
            rsp,
            class,
            answered,
            ..
        }) => {
            inflight.finish_classified(rsp.status().as_u16(), class.is_success(), answered);
            Ok(rsp)
        }
        Err(e) => {
            inflight.finish(None, Some(e.metric_label()));
            Err(e)
        }
    }
}

/// A response as the service stack answers it: its class, judged on its head, what is
/// left to count when its stream ends if its classifier must see that end, and when its
/// head arrived.
struct Answer {
    rsp: Response<ProxyBody>,
    class: retry::ResponseClass,
    at_end: Option<ClientEnd>,
    answered: Instant,
}

/// The failure kind of a stream the endpoint failed after its head (as an
/// [`ErrorKind::Upstream`] error is counted).
const STREAM_FAILED: &str = "UpstreamFailure";

/// What the client stack left to count of a response judged at the end of its stream:
/// the client's stats and the endpoint's failure accrual. (Its balancer and its trace
/// span took the head's verdict: they live on the worker, the body may end anywhere.)
struct ClientEnd {
    stats: Deferred,
    route: Arc<RouteHandle>,
    endpoint: SocketAddr,
    /// The worker's memory of the failure count it last reported a success against.
    seen: Arc<AtomicU64>,
}

/// The final judgement of a response stream: made once, when it ends.
struct AtEnd {
    classifier: retry::Classifier,
    service: Deferred,
    client: ClientEnd,
}

impl AtEnd {
    fn settle(self, end: End<'_>) {
        let (end, kind) = match end {
            End::Trailers(trailers) => (StreamEnd::Trailers(grpc_status(trailers)), None),
            End::Eos => (StreamEnd::NoTrailers, None),
            End::Failed => (StreamEnd::Failed, Some(STREAM_FAILED)),
            End::Dropped => (StreamEnd::Cancelled, Some(CANCELLED)),
        };
        let success = self.classifier.classify_end(end).is_success();
        // A client that went away says nothing about the endpoint (as for a request
        // cancelled before its answer).
        if end != StreamEnd::Cancelled {
            let ClientEnd {
                route,
                endpoint,
                seen,
                ..
            } = &self.client;
            route.outcome(*endpoint, success, seen);
        }
        self.client.stats.finish(success, kind);
        self.service.finish(success, kind);
    }
}

/// Headers the proxy adds to every request it sends on: `l5d-dst-service`,
/// `l5d-dst-client`, `l5d-reqid` and `Via`.
const ADDED_HEADERS: usize = 4;

/// What trace propagation adds besides: `l5d-ctx-trace` and up to five `x-b3-*`
/// headers.
const TRACE_HEADERS: usize = 6;

/// `grpc-status`, pre-built: it is looked up in every gRPC response's head and
/// trailers, and a `&str` name would be parsed each time.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static(h::GRPC_STATUS);

/// The `l5d-*` headers every request reads or sets, as pre-built names: a `&str` name
/// is parsed (checked and lower-cased into a buffer) on every lookup, insert or
/// removal. The names are `plexus_http::headers`'.
mod name {
    use http::HeaderName;
    use plexus_http::headers as h;

    pub(super) const L5D_DTAB: HeaderName = HeaderName::from_static(h::L5D_DTAB);
    pub(super) const L5D_CTX_DTAB: HeaderName = HeaderName::from_static(h::L5D_CTX_DTAB);
    pub(super) const L5D_CTX_DEADLINE: HeaderName = HeaderName::from_static(h::L5D_CTX_DEADLINE);
    pub(super) const L5D_REQID: HeaderName = HeaderName::from_static(h::L5D_REQID);
    pub(super) const L5D_DST_SERVICE: HeaderName = HeaderName::from_static(h::L5D_DST_SERVICE);
    pub(super) const L5D_DST_CLIENT: HeaderName = HeaderName::from_static(h::L5D_DST_CLIENT);
    pub(super) const L5D_DST_RESIDUAL: HeaderName = HeaderName::from_static(h::L5D_DST_RESIDUAL);
    pub(super) const L5D_RETRYABLE: HeaderName = HeaderName::from_static(h::L5D_RETRYABLE);
    pub(super) const L5D_SUCCESS_CLASS: HeaderName = HeaderName::from_static(h::L5D_SUCCESS_CLASS);
}

/// The `grpc-status` of a response head or trailers, if there is a readable one.
fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers.get(GRPC_STATUS).and_then(read_grpc_status)
}

/// A response head's `grpc-status`, looked up only for the gRPC classifiers (`grpc`):
/// no other classifier reads it.
fn status_header(rsp: &Response<ProxyBody>, grpc: bool) -> Option<&HeaderValue> {
    if grpc {
        rsp.headers().get(GRPC_STATUS)
    } else {
        None
    }
}

/// A `grpc-status` value, if it is readable.
fn read_grpc_status(value: &HeaderValue) -> Option<u32> {
    value.to_str().ok().and_then(|v| v.trim().parse().ok())
}

/// Binds the name (asked `now`), waiting (within the binding timeout) while discovery
/// is pending.
pub(super) async fn bind(
    worker: &Worker,
    local: &Dtab,
    dst: &Path,
    mut now: Instant,
) -> Result<Rc<NameTree<Bound>>, ProxyError> {
    let router = &worker.router;
    let deadline = now + router.binding_timeout;
    loop {
        let result = worker.bindings.borrow_mut().bind(router, local, dst, now);
        match result {
            Err(e) if e.kind == ErrorKind::Pending => {
                if now >= deadline {
                    return Err(ProxyError::new(
                        ErrorKind::Timeout,
                        format!("binding {dst} timed out: {e}"),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                now = Instant::now();
            }
            other => return other,
        }
    }
}

/// Phases 4 to 8 for an identified request: bind, choose, then the service stack
/// (classification and retries) around the client stack, and the response.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    worker: &Worker,
    server: &ServerSpec,
    conn: &ConnInfo,
    obs: &Observation<'_>,
    service: &ServiceEntry,
    dst: &Path,
    local: &Dtab,
    deadline: Option<Deadline>,
    started: Instant,
    mut parts: http::request::Parts,
    body: RequestBody,
) -> Result<Answer, ProxyError> {
    let router = &worker.router;
    let tree = bind(worker, local, dst, started).await?;
    let none = || no_hosts(dst, &router.base_dtab, local);
    let bound = choose::leaf(&tree, none)?;

    let h2 = router.version == crate::config::HttpVersion::H2;
    let upgrade = !h2 && h::is_upgrade(&parts.headers);
    h::strip_hop_by_hop(
        &mut parts.headers,
        h::Keep {
            upgrade,
            // The one TE value HTTP/2 allows; gRPC peers expect it.
            te_trailers: h2,
        },
    );
    // Room for what the proxy adds below (`l5d-dst-*`, the request id, the deadline,
    // `Via`, trace context) at once: the map otherwise grows, and rehashes every
    // header, more than once. No more than that: a larger map costs more to grow and to
    // copy (a kept head is).
    let tracing = router.telemetry.propagates();
    parts.headers.reserve(
        ADDED_HEADERS
            + usize::from(!bound.residual.is_empty())
            + usize::from(deadline.is_some())
            + usize::from(server.forwarded.is_some())
            + if tracing { TRACE_HEADERS } else { 0 },
    );
    if h2 {
        h::to_h2_request(&mut parts);
    } else {
        // It may have arrived over HTTP/2 from a Plexus peer; it leaves as the HTTP/1.1
        // request the application sent.
        parts.version = http::Version::HTTP_11;
    }
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    parts.headers.remove(header::EXPECT);
    let client = worker.client(&bound.id, started);
    obs.client(&client.id_header);
    set_dst_headers(
        &mut parts.headers,
        &service.dst_header,
        &client.id_header,
        &bound.residual,
        local,
    );
    // With tracing on, each attempt carries the trace id as its request id instead.
    if !tracing
        && let header::Entry::Vacant(vacant) = parts.headers.entry(name::L5D_REQID)
        && let Ok(v) = HeaderValue::from_bytes(&choose::random_hex())
    {
        vacant.insert(h::per_request(v));
    }
    if let Some(spec) = &server.forwarded {
        add_forwarded(&mut parts.headers, spec, &worker.router.label, conn);
    }
    if let Some(d) = deadline
        && let Ok(v) = HeaderValue::from_str(&d.encode())
    {
        parts
            .headers
            .insert(name::L5D_CTX_DEADLINE, h::per_request(v));
    }
    h::append_via(&mut parts.headers);

    // What `hyper::upgrade::on` takes from a request, taken from its head.
    let inbound_upgrade = if upgrade {
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let classifier = service.policy.classifier;
    // A request can be sent again only if its body can: empty, or small enough to keep.
    // Bodies are kept for a classifier that may retry their method, and for an endpoint
    // that may refuse an HTTP/2 stream unprocessed, so the refusal can be requeued
    // whatever the classifier; otherwise they stream.
    let refusable = h2 || client.upgrade_h2;
    // A tunnel (an upgrade, or CONNECT) is never sent again, and its bytes are not kept.
    let tunnel = upgrade || parts.method == http::Method::CONNECT;
    // When the next attempt starts: the request's start for the first (or when its body
    // was read, if that waited for the client), the clock after a retry's wait for the
    // others.
    let mut attempt_at = started;
    let replay = if tunnel || !(refusable || classifier.retries_method(&parts.method)) {
        Replay::Stream(Some(body))
    } else {
        Replay::buffer(body, h2, &mut attempt_at).await?
    };
    let method = parts.method.clone();
    let grpc = classifier.judges_stream_end();
    let classify = |rsp: &Response<ProxyBody>, status: Option<&HeaderValue>, replayable: bool| {
        let l5d_retryable = rsp
            .headers()
            .get(name::L5D_RETRYABLE)
            .is_some_and(|v| retry::classify::l5d_retryable(v.as_bytes()));
        let grpc_status = status.and_then(read_grpc_status);
        classifier.classify(&Exchange {
            method: &method,
            outcome: RetryOutcome::Status(rsp.status()),
            l5d_retryable,
            body_replayable: replayable,
            grpc_status,
        })
    };

    let mut state = RetryState::new(service.policy.backoff, 0);
    service.budget.borrow_mut().deposit(started);
    let mut replay = replay;
    let mut kept_head = Some(parts);
    // The class the judge gave the attempt's response head. Whether the body can be
    // sent again is known only once the attempt is over, and matters only to a failure
    // (whether it is retryable): a success is not classified a second time.
    let judged = Cell::new(None);
    let result = loop {
        let Some(body) = replay.next() else {
            break Err(ProxyError::new(
                ErrorKind::Upstream,
                "request body already sent",
            ));
        };
        // The head is kept for another attempt only when one is possible.
        let head = if replay.may_replay() {
            kept_head.clone()
        } else {
            kept_head.take()
        };
        let Some(head) = head else {
            break Err(ProxyError::new(
                ErrorKind::Upstream,
                "request head already sent",
            ));
        };
        // Boxed: the request passes through four futures on its way to the endpoint,
        // and each would copy it whole.
        let attempt = Box::new(Request::from_parts(head, body));
        // Another copy for a requeue, once the attempt has been answered with a refusal:
        // the body kept while it streamed is whole by then, or never will be.
        let mut again = || {
            let head = kept_head.as_ref().filter(|_| replay.replayable())?.clone();
            let body = replay.next()?;
            Some(Box::new(Request::from_parts(head, body)))
        };
        let result = forward(
            worker,
            obs,
            &client,
            &bound.addr,
            attempt_at,
            attempt,
            &mut again,
            none,
            &|r| {
                let status = status_header(r, grpc);
                let class = classify(r, status, false);
                judged.set(Some(class));
                let success = class.is_success();
                // A gRPC call whose status is still to come, after its messages: only
                // the end of its stream can tell (see `AtEnd`).
                if success && grpc && r.status() == StatusCode::OK && status.is_none() {
                    Verdict::AtEnd
                } else {
                    Verdict::Now(success)
                }
            },
        )
        .await;
        // Known only now for a body kept while it streamed: whether all of it was kept.
        let replayable = replay.replayable();
        let class = match &result {
            Ok(_) if judged.take().is_some_and(retry::ResponseClass::is_success) => {
                retry::ResponseClass::Success
            }
            Ok((rsp, ..)) => classify(rsp, status_header(rsp, grpc), replayable),
            Err(e) => classifier.classify(&Exchange {
                method: &method,
                outcome: RetryOutcome::Error(attempt_error(e)),
                l5d_retryable: false,
                body_replayable: replayable,
                grpc_status: None,
            }),
        };
        let time_left = deadline.map(|d| d.time_left(SystemTime::now()));
        let now = match &result {
            Ok((.., answered)) => *answered,
            Err(_) => Instant::now(),
        };
        let decision = state.retry(
            class,
            replayable,
            time_left,
            &mut service.budget.borrow_mut(),
            now,
            choose::uniform(),
        );
        match decision {
            Decision::Retry { after } => {
                service.retries_total.increment(1);
                tracing::debug!(service = %dst, ?after, "retrying a failed request");
                drop(result);
                attempt_at = now;
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                    attempt_at = Instant::now();
                }
            }
            Decision::GiveUp {
                reason: GiveUpReason::BudgetExhausted,
            } => {
                service.budget_exhausted.increment(1);
                break result.map(|r| (r, class));
            }
            _ => break result.map(|r| (r, class)),
        }
    };
    service
        .retries_per_request
        .record(f64::from(state.retries()));
    let ((mut rsp, at_end, answered), class) = result?;

    let switching = rsp.status() == StatusCode::SWITCHING_PROTOCOLS;
    h::strip_hop_by_hop(
        rsp.headers_mut(),
        h::Keep {
            upgrade: switching,
            te_trailers: false,
        },
    );
    if switching {
        rsp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if let (true, Some(inbound_upgrade)) = (switching, inbound_upgrade) {
        splice_upgrade(inbound_upgrade, hyper::upgrade::on(&mut rsp));
    }
    h::append_via(rsp.headers_mut());
    // For a response judged at its end: the head's verdict (the header leaves first).
    rsp.headers_mut().insert(
        name::L5D_SUCCESS_CLASS,
        HeaderValue::from_static(retry::classify::success_class_header(class)),
    );
    Ok(Answer {
        rsp,
        class,
        at_end,
        answered,
    })
}

/// What a response's head says about its attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Success (`true`) or failure, final.
    Now(bool),
    /// A success so far; the end of the stream decides.
    AtEnd,
}

/// What kind of failure a routing error is, for the classifier.
fn attempt_error(e: &ProxyError) -> AttemptError {
    match e.kind {
        ErrorKind::Connect => AttemptError::ConnectFailed,
        ErrorKind::Timeout => AttemptError::Timeout,
        ErrorKind::Upstream => AttemptError::FailedAfterSend,
        ErrorKind::Refused => AttemptError::Refused,
        _ => AttemptError::Other,
    }
}

/// A request body for one or more attempts.
enum Replay {
    /// Kept in memory: every attempt gets a copy.
    Buffered(Bytes),
    /// Streamed: only the first attempt gets it.
    Stream(Option<RequestBody>),
    /// Streamed to the first attempt as it arrives while a copy is kept (an HTTP/2 body
    /// of unknown length, as gRPC requests are): later attempts get the copy if the body
    /// ended within the bound by the time the first attempt was answered.
    Teed {
        first: Option<Tee>,
        copy: Arc<std::sync::Mutex<TeeCopy>>,
    },
}

impl Replay {
    /// Keeps the body when it is empty or declared small enough; streams it otherwise.
    /// HTTP/2 bodies of unknown length (gRPC requests) are streamed at once and kept up
    /// to the bound as they pass: waiting for them to end first would hold back every
    /// streaming call whose client waits for an answer before it sends more. An HTTP/2
    /// body that has already arrived whole (a unary call's message, read with its head)
    /// is kept as it is, without a copy. HTTP/1.1 chunked bodies are never kept: Linkerd
    /// never retries them. A body read whole after waiting for it sets `read_at` to the
    /// moment it was.
    async fn buffer(
        mut body: RequestBody,
        h2: bool,
        read_at: &mut Instant,
    ) -> Result<Replay, ProxyError> {
        if body.is_end_stream() {
            return Ok(Replay::Buffered(Bytes::new()));
        }
        // The declared `Content-Length`, as the server that read the head parsed it.
        let length = body.size_hint().exact();
        let keepable = length.map_or(h2, |n| n <= DEFAULT_RETRY_BUFFER_BYTES as u64);
        if !keepable {
            return Ok(Replay::Stream(Some(body)));
        }
        // What has arrived, without waiting for more.
        let mut pending = None;
        if h2 {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(None) => return Ok(Replay::Buffered(Bytes::new())),
                Poll::Ready(Some(Ok(frame))) if body.is_end_stream() => match frame.into_data() {
                    Ok(data) => return Ok(Replay::Buffered(data)),
                    Err(trailers) => pending = Some(Ok(trailers)),
                },
                Poll::Ready(Some(frame)) => pending = Some(frame),
                Poll::Pending => {}
            }
        }
        if length.is_none() {
            let copy = Arc::default();
            return Ok(Replay::Teed {
                first: Some(Tee {
                    pending,
                    inner: body,
                    copy: Arc::clone(&copy),
                }),
                copy,
            });
        }
        let unreadable = |e: &dyn std::fmt::Display| {
            ProxyError::new(
                ErrorKind::BadRequest,
                format!("cannot read the request body: {e}"),
            )
        };
        let first = match pending {
            Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
            Some(Err(e)) => return Err(unreadable(&e)),
            None => Bytes::new(),
        };
        let rest = http_body_util::Limited::new(
            body,
            DEFAULT_RETRY_BUFFER_BYTES.saturating_sub(first.len()),
        )
        .collect()
        .await
        .map_err(|e| unreadable(&e))?
        .to_bytes();
        *read_at = Instant::now();
        Ok(Replay::Buffered(if first.is_empty() {
            rest
        } else {
            [first, rest].concat().into()
        }))
    }

    /// Whether another attempt might get the body (so its head is worth keeping).
    fn may_replay(&self) -> bool {
        match self {
            Replay::Buffered(_) => true,
            Replay::Stream(_) => false,
            Replay::Teed { copy, .. } => !lock(copy).spoiled,
        }
    }

    /// Whether another attempt can get the whole body now.
    fn replayable(&self) -> bool {
        match self {
            Replay::Buffered(_) => true,
            Replay::Stream(_) => false,
            Replay::Teed { copy, .. } => lock(copy).whole(),
        }
    }

    /// The body of the next attempt, if there can be one.
    fn next(&mut self) -> Option<ProxyBody> {
        match self {
            Replay::Buffered(b) => Some(full(b.clone())),
            Replay::Teed { first, copy } => match first.take() {
                Some(tee) => Some(tee.boxed_unsync()),
                None => {
                    let copy = lock(copy);
                    copy.whole()
                        .then(|| full(Bytes::copy_from_slice(&copy.kept)))
                }
            },
            Replay::Stream(s) => s.take().map(BodyExt::boxed_unsync),
        }
    }
}

/// What a [`Tee`] kept of the body it passed on.
#[derive(Default)]
struct TeeCopy {
    kept: bytes::BytesMut,
    /// The body ended (all of it passed).
    ended: bool,
    /// Not replayable: the body outgrew the bound, had trailers, or failed.
    spoiled: bool,
}

impl TeeCopy {
    fn whole(&self) -> bool {
        self.ended && !self.spoiled
    }
}

/// The copy, even if a thread panicked holding it (the copy stays consistent).
fn lock(copy: &std::sync::Mutex<TeeCopy>) -> std::sync::MutexGuard<'_, TeeCopy> {
    copy.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request body passed on frame by frame, copying its data while it fits the bound.
struct Tee {
    /// A frame already read from `inner`, passed on first.
    pending: Option<Result<http_body::Frame<Bytes>, BoxError>>,
    inner: RequestBody,
    copy: Arc<std::sync::Mutex<TeeCopy>>,
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match this.pending.take() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        let mut copy = lock(&this.copy);
        match &polled {
            Poll::Ready(None) => copy.ended = true,
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data)
                    if !copy.spoiled
                        && copy.kept.len() + data.len() <= DEFAULT_RETRY_BUFFER_BYTES =>
                {
                    copy.kept.extend_from_slice(data);
                }
                // Request trailers cannot be replayed from bytes; a long body is not kept.
                _ => {
                    copy.spoiled = true;
                    copy.kept = bytes::BytesMut::new();
                }
            },
            Poll::Ready(Some(Err(_))) => copy.spoiled = true,
            Poll::Pending => {}
        }
        if this.pending.is_none() && this.inner.is_end_stream() {
            copy.ended = true;
        }
        drop(copy);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Phase 7, the client stack: pick an endpoint (balancer, avoiding ejected ones), send,
/// report the outcome to the balancer and the circuit breaker, and requeue a request
/// that an endpoint did not act on while the requeue budget allows. A request that never
/// left comes back whole; one an endpoint refused was spent, and `again` makes another
/// copy of it (`None`: it cannot, as its body was not all kept). The attempt starts at
/// `now`; the response comes back with the moment its head arrived.
#[allow(clippy::too_many_arguments)]
async fn forward(
    worker: &Worker,
    obs: &Observation<'_>,
    client: &ClientEntry,
    addr: &Addr,
    mut now: Instant,
    mut req: Box<Request<ProxyBody>>,
    again: &mut dyn FnMut() -> Option<Box<Request<ProxyBody>>>,
    no_hosts: impl Fn() -> ProxyError,
    judge: &dyn Fn(&Response<ProxyBody>) -> Verdict,
) -> Result<(Response<ProxyBody>, Option<ClientEnd>, Instant), ProxyError> {
    let mut state = client.begin(addr, now);
    loop {
        let Some((endpoint, pending)) = client.pick(now) else {
            return Err(no_hosts());
        };
        let inflight = client.stats.start_at(now);
        let attempt = obs.attempt(endpoint, req.headers_mut());
        let dial = client::Dial {
            addr: endpoint,
            connect_timeout: worker.router.connect_timeout,
            version: worker.router.version,
            upgrade_h2: client.upgrade_h2,
            negotiate_tls: client.negotiate_tls,
            tls: client.tls.as_ref(),
        };
        let sent = client::send(&dial, req);
        let sent = match client.attempt_timeout {
            None => sent.await,
            Some(limit) => tokio::time::timeout(limit, sent).await.unwrap_or_else(|_| {
                Err(SendError {
                    error: ProxyError::new(
                        ErrorKind::Timeout,
                        format!(
                            "{endpoint} did not answer within requestAttemptTimeoutMs ({} ms)",
                            limit.as_millis()
                        ),
                    ),
                    unsent: None,
                })
            }),
        };
        match sent {
            Ok(rsp) => {
                let answered = Instant::now();
                let status = rsp.status().as_u16();
                let verdict = judge(&rsp);
                let success = verdict != Verdict::Now(false);
                let outcome = if success {
                    BalanceOutcome::SUCCESS
                } else {
                    BalanceOutcome::FAILURE
                };
                pending.end(outcome, answered);
                attempt.finish(AttemptOutcome::Response { status, success });
                if verdict == Verdict::AtEnd {
                    let at_end = ClientEnd {
                        stats: inflight.defer(status, answered),
                        route: client.route.clone(),
                        endpoint,
                        seen: client.seen(endpoint),
                    };
                    return Ok((rsp, Some(at_end), answered));
                }
                client.outcome(endpoint, success);
                inflight.finish_classified(status, success, answered);
                return Ok((rsp, None, answered));
            }
            Err(SendError { error, unsent }) => {
                now = Instant::now();
                pending.end(BalanceOutcome::FAILURE, now);
                client.outcome(endpoint, false);
                inflight.finish(None, Some(error.metric_label()));
                attempt.finish(AttemptOutcome::Failed(&error));
                let (next, why) = match unsent {
                    Some(unsent) => (unsent, AttemptError::ConnectFailed),
                    None if error.kind == ErrorKind::Refused => match again() {
                        Some(copy) => (copy, AttemptError::Refused),
                        None => return Err(error),
                    },
                    None => return Err(error),
                };
                if !client.requeue(&mut state, endpoint, why, &error) {
                    return Err(error);
                }
                req = next;
            }
        }
    }
}

/// A request counted in flight by a client's balancer until it ends, or until its
/// future is dropped (the client went away), which ends it as a failure.
pub(super) struct Outstanding<'a> {
    client: &'a ClientEntry,
    pending: Option<Pending>,
}

impl Outstanding<'_> {
    /// The attempt ended at `now` with `outcome`.
    pub(super) fn end(mut self, outcome: BalanceOutcome, now: Instant) {
        if let Some(p) = self.pending.take() {
            self.client.balancer.borrow_mut().end(p, now, outcome);
        }
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            self.client
                .balancer
                .borrow_mut()
                .end(p, Instant::now(), BalanceOutcome::FAILURE);
        }
    }
}

/// What a request handler knows about the client connection it came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The server address it connected to.
    pub local: SocketAddr,
    /// A random id for this connection (`connectionRandom` labels).
    pub id: String,
}

impl ConnInfo {
    /// Information about a new connection.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        ConnInfo {
            peer,
            local,
            id: choose::random_id(),
        }
    }
}

/// Appends an RFC 7239 `Forwarded` element (by this proxy, for the client).
fn add_forwarded(
    headers: &mut http::HeaderMap,
    spec: &plexus_http::forwarded::ForwardedSpec,
    router: &str,
    conn: &ConnInfo,
) {
    let mut random = choose::random_id;
    let by = spec.by.label(conn.local, router, &conn.id, &mut random);
    let for_ = spec.for_.label(conn.peer, router, &conn.id, &mut random);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let element = plexus_http::forwarded::element(&by, &for_, host.as_deref());
    let value = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {element}"),
        _ => element,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::FORWARDED, v);
    }
}

/// Once both sides have switched protocols (WebSocket and other upgrades), copies bytes
/// both ways until either side closes.
fn splice_upgrade(client: hyper::upgrade::OnUpgrade, endpoint: hyper::upgrade::OnUpgrade) {
    tokio::task::spawn_local(async move {
        match (client.await, endpoint.await) {
            (Ok(a), Ok(b)) => {
                let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "protocol upgrade failed"),
        }
    });
}

/// A path shown as a header value (shown paths are printable ASCII).
fn header_value(shown: &str) -> HeaderValue {
    HeaderValue::from_str(shown).unwrap_or(HeaderValue::from_static("/"))
}

fn set_dst_headers(
    headers: &mut http::HeaderMap,
    dst: &HeaderValue,
    client: &HeaderValue,
    residual: &Path,
    local: &Dtab,
) {
    headers.insert(name::L5D_DST_SERVICE, dst.clone());
    headers.insert(name::L5D_DST_CLIENT, client.clone());
    let mut set = |name: http::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    if !residual.is_empty() {
        set(name::L5D_DST_RESIDUAL, residual.show());
    }
    if let Some(ctx) = naming::ctx_dtab_value(local) {
        set(name::L5D_CTX_DTAB, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_stream_counts_as_an_upstream_failure() {
        let e = ProxyError::new(ErrorKind::Upstream, "reset");
        assert_eq!(STREAM_FAILED, e.metric_label());
    }
}
