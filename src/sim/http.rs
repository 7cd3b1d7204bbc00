//! The simulator's HTTP front: Kubernetes API paths, lists, gets and watch streams.
//!
//! Plexus's Kubernetes client speaks plain HTTP/1.1 to the API; this file answers it
//! from the simulated [`Store`](super::store::Store) the way the real API server would
//! for the paths Plexus uses. Watches are newline-delimited JSON events streamed in a
//! chunked body by a task that ends when the client goes away, when the test cuts
//! watches, on `timeoutSeconds`, or when the server stops. Test tool only.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::Shared;
use super::model::{Kind, status};
use super::store::{Event, Expired, Filter, Selector};

type ResponseBody = BoxBody<Bytes, Infallible>;

/// What every connection and watch task holds: the cluster, the stop signal, and a
/// sender whose drop tells [`Running::stop`](super::Running::stop) the task has ended.
#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

/// Accepts connections until the shutdown signal, serving each on its own task.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let ctx = Ctx {
        shared,
        shutdown,
        _alive: alive,
    };
    let mut stop = ctx.shutdown.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, ctx.clone()));
                }
                Err(error) => {
                    // Out of descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(%error, "sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// Resolves once the server is told to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, before any await.
    let _ = stop.wait_for(|s| *s).await.is_ok();
}

async fn connection(stream: tokio::net::TcpStream, ctx: Ctx) {
    let mut stop = ctx.shutdown.clone();
    let handler = ctx.clone();
    let svc = service_fn(move |req| {
        let ctx = handler.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, &req)) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = stopped(&mut stop) => {}
    }
    drop(ctx);
}

/// The parsed query string: only the parameters the simulator honours.
#[derive(Default)]
struct Query {
    watch: bool,
    resource_version: Option<String>,
    bookmarks: bool,
    label_selector: Option<String>,
    field_selector: Option<String>,
    timeout: Option<Duration>,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut q = Query::default();
        let truthy = |v: &str| v == "1" || v.eq_ignore_ascii_case("true");
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "watch" => q.watch = truthy(&v),
                "resourceVersion" => q.resource_version = Some(v),
                "allowWatchBookmarks" => q.bookmarks = truthy(&v),
                "labelSelector" => q.label_selector = Some(v),
                "fieldSelector" => q.field_selector = Some(v),
                "timeoutSeconds" => q.timeout = v.parse().ok().map(Duration::from_secs),
                _ => {}
            }
        }
        q
    }
}

/// Decodes `%XX` escapes and `+`; malformed escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The resource a path names.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => (false, rest),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => (true, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (*plural, None),
        [plural, name] => (*plural, Some((*name).to_owned())),
        _ => return None,
    };
    let kind = Kind::from_plural(plural, group)?;
    match (kind.namespaced(), &namespace, &name) {
        // Cluster-scoped kinds have no namespace; named namespaced objects need one.
        (false, Some(_), _) | (true, None, Some(_)) => None,
        _ => Some(Target {
            kind,
            namespace,
            name,
        }),
    }
}

fn handle(ctx: &Ctx, req: &Request<Incoming>) -> Response<ResponseBody> {
    if req.method() != Method::GET {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &status(
                405,
                "MethodNotAllowed",
                "the simulator is read-only over HTTP",
            ),
        );
    }
    let path = req.uri().path();
    let served = |t: &Target| ctx.shared.endpoint_slices || t.kind != Kind::EndpointSlice;
    let Some(target) = route(path).filter(served) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &status(
                404,
                "NotFound",
                &format!("the server could not find {path}"),
            ),
        );
    };
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let labels = match Selector::parse(query.label_selector.as_deref().unwrap_or("")) {
        Some(labels) => labels,
        None => return bad_request("unsupported labelSelector"),
    };
    let mut filter = Filter {
        kind: target.kind,
        namespace: target.namespace,
        name: target.name,
        labels,
    };
    if let Some(fields) = &query.field_selector {
        for part in fields.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("metadata.name", v)) => filter.name = Some(v.to_owned()),
                Some(("metadata.namespace", v)) => filter.namespace = Some(v.to_owned()),
                _ => return bad_request("unsupported fieldSelector"),
            }
        }
    }
    if query.watch {
        return start_watch(ctx, filter, &query);
    }
    if let (Some(name), false) = (&filter.name, query.field_selector.is_some()) {
        let ns = filter.namespace.as_deref().unwrap_or("");
        return match ctx.shared.store().get(filter.kind, ns, name) {
            Some(object) => json_response(StatusCode::OK, &object),
            None => {
                let plural = path.rsplit('/').nth(1).unwrap_or("object");
                json_response(
                    StatusCode::NOT_FOUND,
                    &status(404, "NotFound", &format!("{plural} \"{name}\" not found")),
                )
            }
        };
    }
    let (items, rv) = ctx.shared.store().list(&filter);
    let list = json!({
        "kind": filter.kind.list_name(),
        "apiVersion": filter.kind.api_version(),
        "metadata": { "resourceVersion": rv.to_string() },
        "items": items,
    });
    json_response(StatusCode::OK, &list)
}

fn bad_request(message: &str) -> Response<ResponseBody> {
    json_response(StatusCode::BAD_REQUEST, &status(400, "BadRequest", message))
}

fn json_response(code: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Where a watch begins: at a version, or with the current objects as `ADDED` events.
enum Start {
    After(u64),
    Current,
}

fn start_watch(ctx: &Ctx, filter: Filter, query: &Query) -> Response<ResponseBody> {
    let start = match query.resource_version.as_deref() {
        None | Some("") | Some("0") => Start::Current,
        Some(v) => match v.parse() {
            Ok(rv) => Start::After(rv),
            Err(_) => return bad_request("resourceVersion is not a number"),
        },
    };
    let (tx, rx) = mpsc::channel(64);
    // Subscribed now, so a `drop_watches` after this response is never missed.
    let out = Out {
        tx,
        drops: ctx.shared.drops.subscribe(),
        stop: ctx.shutdown.clone(),
    };
    tokio::spawn(run_watch(
        ctx.clone(),
        filter,
        start,
        query.bookmarks,
        query.timeout,
        out,
    ));
    let mut response = Response::new(ChannelBody(rx).boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A watch's output, with the signals that end it.
struct Out {
    tx: mpsc::Sender<Bytes>,
    drops: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
}

impl Out {
    /// Sends one event; `false` when the watch must end instead (client gone, watches
    /// cut, server stopping), even while waiting for a slow client.
    async fn send(&mut self, line: Bytes) -> bool {
        tokio::select! {
            sent = self.tx.send(line) => sent.is_ok(),
            _ = self.drops.changed() => false,
            _ = stopped(&mut self.stop) => false,
        }
    }
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({ "type": event_type, "object": object }).to_string();
    line.push('\n');
    Bytes::from(line)
}

async fn run_watch(
    ctx: Ctx,
    filter: Filter,
    start: Start,
    bookmarks: bool,
    timeout: Option<Duration>,
    mut out: Out,
) {
    let mut changes = ctx.shared.store().subscribe();
    changes.mark_unchanged();

    let mut last = match start {
        Start::After(rv) => rv,
        Start::Current => {
            let (items, rv) = ctx.shared.store().list(&filter);
            for item in &items {
                if !out.send(event_line("ADDED", item)).await {
                    return;
                }
            }
            rv
        }
    };

    let period = ctx.shared.bookmark_interval;
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut bookmark_due = false;

    loop {
        changes.mark_unchanged();
        let drained = ctx.shared.store().events_since(last, &filter);
        match drained {
            Ok((events, now)) => {
                for Event {
                    event_type, object, ..
                } in events
                {
                    if !out.send(event_line(event_type.as_str(), &object)).await {
                        return;
                    }
                }
                last = last.max(now);
            }
            Err(Expired { oldest }) => {
                let message = format!("too old resource version: {last} ({oldest})");
                out.send(event_line("ERROR", &status(410, "Expired", &message)))
                    .await;
                return;
            }
        }
        if bookmark_due {
            bookmark_due = false;
            let bookmark = json!({
                "kind": filter.kind.name(),
                "apiVersion": filter.kind.api_version(),
                "metadata": { "resourceVersion": last.to_string() },
            });
            if !out.send(event_line("BOOKMARK", &bookmark)).await {
                return;
            }
        }
        let timed_out = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = ticker.tick(), if bookmarks => bookmark_due = true,
            _ = out.drops.changed() => return,
            _ = stopped(&mut out.stop) => return,
            _ = out.tx.closed() => return,
            _ = timed_out => return,
        }
    }
}

/// A response body fed by a channel: each message is one chunk; the body ends when
/// the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn routes() {
        let t = route("/api/v1/namespaces/ns/endpoints/web").expect("routes");
        assert_eq!(
            (t.kind, t.namespace.as_deref(), t.name.as_deref()),
            (Kind::Endpoints, Some("ns"), Some("web"))
        );
        let t = route("/apis/discovery.k8s.io/v1/endpointslices").expect("routes");
        assert_eq!((t.kind, t.namespace), (Kind::EndpointSlice, None));
        assert!(route("/api/v1/nodes").is_some());
        assert!(route("/api/v1/namespaces/ns/nodes").is_none());
        assert!(route("/api/v1/endpointslices").is_none());
        assert!(route("/api/v1/namespaces/ns/pods/a/b").is_none());
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(
            percent_decode("kubernetes.io%2Fservice-name%3Dweb"),
            "kubernetes.io/service-name=web"
        );
        assert_eq!(percent_decode("a+b%zz%4"), "a b%zz%4");
    }
}
