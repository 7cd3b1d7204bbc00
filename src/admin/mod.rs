//! The admin server (default 127.0.0.1:9990): Linkerd's admin endpoints.
//!
//! `/admin/ping`, `/config.json`, `/delegator.json` (the delegation explanation with a
//! router's real namers), `/client_state.json`, `/admin/shutdown` (POST), `/logging.json`
//! and, from the telemetry module, the metrics endpoints. `/` is the dashboard and
//! `/delegator` the dtab playground (both in `dashboard`); `/admin` lists the endpoints.
//! Small and hand-routed: a dozen endpoints need no framework.

mod dashboard;
mod logging;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use logging::{LogControl, init_logging};

use crate::naming::{DelegateError, Dtab, Path, transform_explanation};
use crate::router::Router;
use crate::runtime::{NamerHandle, Shutdown};
use crate::telemetry::{RecentRequests, Registry};

/// What the admin endpoints read.
pub struct AdminState {
    routers: Vec<Arc<Router>>,
    config: Value,
    shutdown: Shutdown,
    registry: Registry,
    namers: Vec<NamerHandle>,
    prometheus_path: String,
    prometheus_prefix: String,
    recent: Option<Arc<RecentRequests>>,
}

/// Where Prometheus text is served unless `io.l5d.prometheus` says otherwise.
pub const PROMETHEUS_PATH: &str = "/admin/metrics/prometheus";

impl AdminState {
    /// The state for a running configuration. `prometheus` is the `io.l5d.prometheus`
    /// telemeter's `(path, prefix)`, if configured.
    pub fn new(
        routers: Vec<Arc<Router>>,
        config: Value,
        shutdown: Shutdown,
        registry: Registry,
        namers: Vec<NamerHandle>,
        prometheus: Option<(Option<String>, String)>,
    ) -> Self {
        let (path, prefix) = prometheus.unwrap_or((None, String::new()));
        AdminState {
            routers,
            config,
            shutdown,
            registry,
            namers,
            prometheus_path: path.unwrap_or_else(|| PROMETHEUS_PATH.to_string()),
            prometheus_prefix: prefix,
            recent: None,
        }
    }

    /// Serves `/requests.json` from the `io.l5d.recentRequests` table, if configured.
    pub fn with_recent_requests(mut self, recent: Option<Arc<RecentRequests>>) -> Self {
        self.recent = recent;
        self
    }
}

const ENDPOINTS: &[(&str, &str)] = &[
    ("/", "the dashboard: live success rates, volumes, latencies"),
    (
        "/delegator",
        "the dtab playground: explain a path as a router would",
    ),
    ("/admin/ping", "liveness: answers pong"),
    (
        "/admin/metrics.json",
        "metrics in Linkerd's names: ?q=<prefix> subtree, ?tree=1 nested, ?pretty=1",
    ),
    (
        "/admin/metrics/prometheus",
        "metrics in Prometheus text format",
    ),
    (
        "/namer_state/io.l5d.fs.json",
        "what each file namer currently reads",
    ),
    ("/config.json", "the configuration, as JSON"),
    (
        "/requests.json",
        "recently sampled requests, newest first (io.l5d.recentRequests)",
    ),
    (
        "/delegator.json",
        "explain a path: ?namespace=<router>&path=<path>[&dtab=<dtab>] (GET or POST JSON)",
    ),
    (
        "/client_state.json",
        "the clients each router has bound, with their addresses",
    ),
    (
        "/logging.json",
        "log level: GET, or POST ?logger=root&level=DEBUG",
    ),
    ("/admin/shutdown", "POST: drain and exit"),
];

type AdminResponse = Response<Full<Bytes>>;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> AdminResponse {
    let mut rsp = Response::new(Full::new(body.into()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    rsp
}

fn json_response(status: StatusCode, value: &Value) -> AdminResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    respond(status, "application/json", body)
}

fn text(status: StatusCode, body: impl Into<String>) -> AdminResponse {
    respond(status, "text/plain; charset=utf-8", body.into())
}

/// Query parameters, percent-decoded (`+` is a space, as browsers send forms).
pub fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: AdminState) {
    let state = Rc::new(state);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::task::spawn_local(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(state: &AdminState, req: Request<Incoming>) -> AdminResponse {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/admin" | "/admin/index.txt") => index(),
        (Method::GET, p) if dashboard::serves(p) => dashboard::respond(p, req.headers())
            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, format!("not found: {p}\n"))),
        (Method::GET, "/admin/ping") => text(StatusCode::OK, "pong"),
        (Method::GET, "/admin/metrics.json" | "/metrics.json") => {
            metrics_json(state, req.uri().query())
        }
        (Method::GET, p) if p == state.prometheus_path || p == PROMETHEUS_PATH => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state
                .registry
                .prometheus(&state.prometheus_prefix, Instant::now()),
        ),
        (Method::GET, p) if p.starts_with("/namer_state/") => namer_state(state, p),
        (Method::GET, "/config.json") => json_response(StatusCode::OK, &state.config),
        (Method::GET, "/requests.json") => match &state.recent {
            Some(recent) => json_response(StatusCode::OK, &recent.to_json()),
            None => text(
                StatusCode::NOT_FOUND,
                "the io.l5d.recentRequests telemeter is not configured\n",
            ),
        },
        (Method::GET | Method::POST, "/delegator.json") => delegator(state, req).await,
        (Method::GET, "/client_state.json") => client_state(state),
        (Method::GET | Method::POST, "/logging.json") => logging::handle(&req),
        (Method::POST, "/admin/shutdown") => {
            state.shutdown.trigger();
            text(StatusCode::OK, "quitting\n")
        }
        (_, "/admin/shutdown") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        _ => text(StatusCode::NOT_FOUND, format!("not found: {path}\n")),
    }
}

fn metrics_json(state: &AdminState, query: Option<&str>) -> AdminResponse {
    let params = query_params(query);
    let flag = |k: &str| params.get(k).is_some_and(|v| v == "1" || v == "true");
    match state.registry.metrics_json(
        params.get("q").map(String::as_str),
        flag("tree"),
        Instant::now(),
    ) {
        Ok(v) => {
            let body = if flag("pretty") {
                serde_json::to_vec_pretty(&v)
            } else {
                serde_json::to_vec(&v)
            };
            respond(StatusCode::OK, "application/json", body.unwrap_or_default())
        }
        Err(e) => json_response(StatusCode::NOT_FOUND, &json!({"error": e.to_string()})),
    }
}

fn namer_state(state: &AdminState, path: &str) -> AdminResponse {
    match state.namers.iter().find(|n| n.admin_path() == path) {
        Some(n) => json_response(StatusCode::OK, &n.state_json()),
        None => text(StatusCode::NOT_FOUND, format!("no namer state at {path}\n")),
    }
}

fn index() -> AdminResponse {
    let mut body = String::from("Plexus admin endpoints:\n\n");
    for (path, what) in ENDPOINTS {
        body.push_str(&format!("  {path:<22} {what}\n"));
    }
    text(StatusCode::OK, body)
}

/// `GET ?namespace=&path=&dtab=` or `POST {"namespace","path","dtab"}`. The dtab, when
/// given, replaces the router's dtab for this explanation (the dashboard sends the
/// router's dtab with the user's edits).
async fn delegator(state: &AdminState, req: Request<Incoming>) -> AdminResponse {
    let params: BTreeMap<String, String> = if req.method() == Method::POST {
        let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "request body too large or unreadable\n",
                );
            }
        };
        match serde_json::from_slice::<BTreeMap<String, Value>>(&body) {
            Ok(m) => m
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_default()))
                .collect(),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid JSON: {e}\n")),
        }
    } else {
        query_params(req.uri().query())
    };
    let namespace = params.get("namespace").cloned().unwrap_or_default();
    let Some(router) = state.routers.iter().find(|r| r.label == namespace) else {
        let known: Vec<&str> = state.routers.iter().map(|r| r.label.as_str()).collect();
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "Unknown namespace {namespace:?}; routers: {}\n",
                known.join(", ")
            ),
        );
    };
    let path = match Path::read(params.get("path").map_or("", String::as_str)) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid path: {e}")),
    };
    let dtab = match params.get("dtab") {
        Some(d) => match Dtab::read(d) {
            Ok(d) => d,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid dtab: {e}")),
        },
        None => router.base_dtab.clone(),
    };
    match router.namers.delegate(&dtab, &path) {
        Ok(tree) => {
            let tree = router
                .transformers
                .iter()
                .fold(tree, |t, x| transform_explanation(t, x.as_ref()));
            json_response(StatusCode::OK, &tree.to_json())
        }
        Err(DelegateError::Pending) => text(StatusCode::SERVICE_UNAVAILABLE, "Request timed out."),
        Err(DelegateError::Failed(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn client_state(state: &AdminState) -> AdminResponse {
    let now = Instant::now();
    let mut out = serde_json::Map::new();
    for router in &state.routers {
        let ejected = router.routes.ejected(now);
        for (id, addrs) in router.clients.snapshot() {
            let out_of_rotation = ejected.get(&id).cloned().unwrap_or_default();
            // What was negotiated with each endpoint that is a Plexus peer (or not).
            let peers: serde_json::Map<String, Value> = addrs
                .iter()
                .filter_map(|a| {
                    let addr = a.parse().ok()?;
                    Some((a.clone(), json!(crate::router::peer::negotiated(addr)?)))
                })
                .collect();
            out.insert(
                id,
                json!({"router": router.label, "state": "bound", "addresses": addrs, "ejected": out_of_rotation, "protocols": peers}),
            );
        }
    }
    json_response(StatusCode::OK, &Value::Object(out))
}
