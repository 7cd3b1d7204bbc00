//! The hooks a router calls for each request so tracing and the recent-requests table
//! see it: [`Observation::start`] when it arrives, [`Observation::service`] and
//! [`Observation::client`] as it is routed, [`Observation::attempt`] for each attempt
//! sent to an endpoint, and [`Observation::finish`] with the response.
//!
//! Cost is the point of this module's shape. Without telemeters every hook is a branch
//! on `None`. With `io.l5d.zipkin`, an unsampled request reads and writes the trace
//! headers (the decision must travel) and records nothing. Only a sampled request
//! allocates: one [`Record`] holding what its spans and table row need.

use std::cell::RefCell;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};

use super::recent::{RecentRequest, RecentRequests};
use super::trace::{Endpoint, Kind, Span, SpanContext, Tracer, propagation};

/// The telemeters a router reports requests to.
#[derive(Clone, Debug, Default)]
pub struct RequestTelemetry {
    /// `io.l5d.zipkin`.
    pub tracer: Option<Arc<Tracer>>,
    /// `io.l5d.recentRequests`.
    pub recent: Option<Arc<RecentRequests>>,
}

impl RequestTelemetry {
    /// Whether trace context is read from requests and written on forwarded ones (then
    /// `l5d-reqid` carries the trace id).
    pub fn propagates(&self) -> bool {
        self.tracer.is_some()
    }
}

/// What a sampled request's spans and table row need, taken when it arrives.
struct Record {
    router: Arc<str>,
    start: SystemTime,
    started: Instant,
    method: http::Method,
    path: String,
    uri: String,
    host: Option<String>,
    peer: SocketAddr,
    local: SocketAddr,
    zipkin: bool,
    recent: bool,
    service: RefCell<Option<HeaderValue>>,
    client: RefCell<Option<HeaderValue>>,
}

fn text(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

impl Record {
    fn local_endpoint(&self) -> Endpoint {
        Endpoint {
            service_name: Some(self.router.clone()),
            addr: self.local,
        }
    }

    /// The tags every span of the request carries.
    fn tags(&self) -> Vec<(&'static str, String)> {
        let mut tags = vec![
            ("http.method", self.method.to_string()),
            ("http.path", self.path.clone()),
            ("http.uri", self.uri.clone()),
            ("router.label", self.router.to_string()),
        ];
        if let Some(h) = &self.host {
            tags.push(("http.host", h.clone()));
        }
        if let Some(s) = &*self.service.borrow() {
            tags.push(("l5d.dst.service", text(s)));
        }
        if let Some(c) = &*self.client.borrow() {
            tags.push(("l5d.dst.client", text(c)));
        }
        tags
    }

    fn span(&self, context: SpanContext, kind: Kind, start: SystemTime, started: Instant) -> Span {
        Span {
            context,
            kind,
            name: self.method.as_str().to_ascii_lowercase(),
            start,
            duration: started.elapsed(),
            local: self.local_endpoint(),
            remote: None,
            tags: self.tags(),
        }
    }
}

/// One request as the telemeters see it.
pub struct Observation<'a> {
    telemetry: &'a RequestTelemetry,
    context: Option<SpanContext>,
    record: Option<Box<Record>>,
}

/// How an attempt ended.
pub enum AttemptOutcome<'e> {
    /// The endpoint answered; `success` is the classifier's verdict.
    Response {
        /// The status.
        status: u16,
        /// Whether it counts as a success.
        success: bool,
    },
    /// No response.
    Failed(&'e dyn Display),
}

/// One attempt to send the request to an endpoint: its client span, if recorded.
pub struct Attempt<'o> {
    observation: &'o Observation<'o>,
    context: Option<SpanContext>,
    endpoint: SocketAddr,
    started: Option<(SystemTime, Instant)>,
}

impl<'a> Observation<'a> {
    /// A request arrived at a router labelled `router`, from `peer` on `local`. Reads
    /// and removes the trace headers (the caller's context is ignored unless
    /// `trust_context`: edge servers with `clearContext` start new traces) and decides
    /// what to record.
    pub fn start<B>(
        telemetry: &'a RequestTelemetry,
        router: &str,
        trust_context: bool,
        peer: SocketAddr,
        local: SocketAddr,
        req: &mut http::Request<B>,
    ) -> Observation<'a> {
        let mut obs = Observation {
            telemetry,
            context: None,
            record: None,
        };
        if telemetry.tracer.is_none() && telemetry.recent.is_none() {
            return obs;
        }
        obs.context = telemetry.tracer.as_ref().map(|t| {
            let e = propagation::extract(req.headers_mut(), trust_context);
            SpanContext::for_request(e.propagated, e.sample_rate, t.sample_rate())
        });
        let zipkin = obs.context.is_some_and(|c| c.recorded());
        let recent = telemetry.recent.as_ref().is_some_and(|r| r.sample());
        if zipkin || recent {
            let uri = req.uri();
            let host = match uri.authority() {
                Some(a) => Some(a.to_string()),
                None => req
                    .headers()
                    .get(header::HOST)
                    .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
            };
            obs.record = Some(Box::new(Record {
                router: Arc::from(router),
                start: SystemTime::now(),
                started: Instant::now(),
                method: req.method().clone(),
                path: uri.path().to_string(),
                uri: uri
                    .path_and_query()
                    .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string()),
                host,
                peer,
                local,
                zipkin,
                recent,
                service: RefCell::default(),
                client: RefCell::default(),
            }));
        }
        obs
    }

    /// Whether this request's trace is recorded.
    pub fn traced(&self) -> bool {
        self.record.as_ref().is_some_and(|r| r.zipkin)
    }

    /// The trace context of the request's server span, when tracing is on.
    pub fn context(&self) -> Option<SpanContext> {
        self.context
    }

    /// The request was identified as `service` (`l5d-dst-service`).
    pub fn service(&self, service: &HeaderValue) {
        if let Some(r) = &self.record {
            *r.service.borrow_mut() = Some(service.clone());
        }
    }

    /// The request was bound to `client` (`l5d-dst-client`).
    pub fn client(&self, client: &HeaderValue) {
        if let Some(r) = &self.record {
            *r.client.borrow_mut() = Some(client.clone());
        }
    }

    /// An attempt is about to be sent to `endpoint` with `headers`: opens its client span
    /// and writes its context into the headers.
    pub fn attempt(&self, endpoint: SocketAddr, headers: &mut HeaderMap) -> Attempt<'_> {
        let context = self.context.map(|server| {
            let ctx = server.child();
            propagation::inject(&ctx, headers);
            ctx
        });
        Attempt {
            observation: self,
            context,
            endpoint,
            started: self.traced().then(|| (SystemTime::now(), Instant::now())),
        }
    }

    /// The request was answered with `status` (`error` says why it failed, if it did).
    pub fn finish(mut self, status: u16, error: Option<&dyn Display>) {
        self.complete(Some(status), error);
    }

    fn complete(&mut self, status: Option<u16>, error: Option<&dyn Display>) {
        let Some(record) = self.record.take() else {
            return;
        };
        if let (true, Some(tracer), Some(ctx)) =
            (record.zipkin, &self.telemetry.tracer, self.context)
        {
            let mut span = record.span(ctx, Kind::Server, record.start, record.started);
            span.remote = Some(Endpoint {
                service_name: None,
                addr: record.peer,
            });
            if let Some(s) = status {
                span.tags.push(("http.status_code", s.to_string()));
            }
            if let Some(e) = error {
                span.tags.push(("error", e.to_string()));
            } else if status.is_some_and(|s| s >= 500) {
                span.tags
                    .push(("error", format!("status {}", status.unwrap_or(0))));
            }
            tracer.record(span);
        }
        if let (true, Some(recent), Some(status)) = (record.recent, &self.telemetry.recent, status)
        {
            recent.push(RecentRequest {
                timestamp_ms: record
                    .start
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                router: record.router.to_string(),
                method: record.method.to_string(),
                uri: record.uri.clone(),
                host: record.host.clone(),
                dst_service: record.service.borrow().as_ref().map(text),
                dst_client: record.client.borrow().as_ref().map(text),
                status,
                duration_ms: record.started.elapsed().as_secs_f64() * 1000.0,
                source: record.peer,
            });
        }
    }
}

impl Drop for Observation<'_> {
    /// A request whose handling was abandoned (the client went away) still closes its span.
    fn drop(&mut self) {
        self.complete(None, Some(&"cancelled"));
    }
}

impl Attempt<'_> {
    /// The attempt ended.
    pub fn finish(mut self, outcome: AttemptOutcome<'_>) {
        self.complete(outcome);
    }

    fn complete(&mut self, outcome: AttemptOutcome<'_>) {
        let Some((start, started)) = self.started.take() else {
            return;
        };
        let obs = self.observation;
        let (Some(record), Some(tracer), Some(ctx)) =
            (&obs.record, &obs.telemetry.tracer, self.context)
        else {
            return;
        };
        let mut span = record.span(ctx, Kind::Client, start, started);
        span.remote = Some(Endpoint {
            service_name: None,
            addr: self.endpoint,
        });
        match outcome {
            AttemptOutcome::Response { status, success } => {
                span.tags.push(("http.status_code", status.to_string()));
                if !success {
                    span.tags.push(("error", format!("status {status}")));
                }
            }
            AttemptOutcome::Failed(e) => span.tags.push(("error", e.to_string())),
        }
        tracer.record(span);
    }
}

impl Drop for Attempt<'_> {
    /// An attempt abandoned mid-flight (a timeout, the client went away) still closes its
    /// span.
    fn drop(&mut self) {
        self.complete(AttemptOutcome::Failed(&"cancelled"));
    }
}
