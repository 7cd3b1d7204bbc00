//! The gRPC mode (`-protocol grpc`), the counterpart of the tutorial's gRPC
//! hello world.
//!
//! An instance whose text is "hello" (any case) serves `helloworld.Hello`
//! (`Greeting`, and `StreamGreeting`, which sends five greetings); any other
//! serves `helloworld.World` (`Greeting`). A greeting is built as in HTTP
//! mode: wait the configured latency, fail at the configured rate, answer
//! `<text> (<POD_IP>)`, then — with `-target` — a space and the target
//! World's answer, and `!`. The inbound `l5d-ctx-*` metadata is forwarded to
//! the target so the mesh's request context survives the hop.
//!
//! Failures are gRPC status `UNAVAILABLE` (14): an injected one is what
//! HTTP mode answers as 500, a failed call to the target what it answers as
//! 503. `UNAVAILABLE` is the status the `io.l5d.h2.grpc.default` classifier
//! retries, so the mesh routes around failing instances as it does for
//! HTTP's `GET` 5xx.
//!
//! The connection speaks HTTP/2 without TLS (prior knowledge, as gRPC
//! clients and the mesh's h2 routers send it) and HTTP/1.1, so the control
//! endpoints `POST /setLatency` and `POST /setFailureRate` work as in HTTP
//! mode, from `curl` or from an HTTP/2 client.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use plexus_examples::proto::hello_server::{Hello, HelloServer};
use plexus_examples::proto::world_server::{World, WorldServer};
use plexus_examples::proto::{GreetingRequest, GreetingResponse};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::codegen::Service as _;
use tonic::metadata::MetadataMap;
use tonic::{Status, body::Body};

use crate::grpc_upstream::WorldUpstream;
use crate::handler;
use crate::settings::Settings;

/// How many greetings `StreamGreeting` sends.
pub(crate) const STREAM_GREETINGS: usize = 5;

/// Which gRPC service an instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// `helloworld.Hello`, for the text "hello" in any case.
    Hello,
    /// `helloworld.World`, for any other text.
    World,
}

impl Served {
    /// The service for a text (before the ` (<POD_IP>)` suffix).
    pub(crate) fn for_text(text: &str) -> Served {
        if text.eq_ignore_ascii_case("hello") {
            Served::Hello
        } else {
            Served::World
        }
    }

    /// The fully qualified service name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Served::Hello => plexus_examples::proto::hello_server::SERVICE_NAME,
            Served::World => plexus_examples::proto::world_server::SERVICE_NAME,
        }
    }
}

/// Everything a gRPC call needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct GrpcApp {
    /// The service served.
    served: Served,
    /// The text answered, with the ` (<POD_IP>)` suffix already applied.
    text: String,
    /// Latency and failure rate.
    pub(crate) settings: Settings,
    /// The World to call, if any.
    upstream: Option<WorldUpstream>,
}

impl GrpcApp {
    /// An app serving the service that `base_text` selects, answering
    /// `text`.
    pub(crate) fn new(
        base_text: &str,
        text: String,
        settings: Settings,
        upstream: Option<WorldUpstream>,
    ) -> Self {
        GrpcApp {
            served: Served::for_text(base_text),
            text,
            settings,
            upstream,
        }
    }

    /// The settings, for the startup line.
    pub(crate) fn describe(&self) -> String {
        format!(
            "grpc, service {}, text {:?}, target {:?}, latency {:?}, failure rate {}",
            self.served.name(),
            self.text,
            self.upstream
                .as_ref()
                .map_or_else(String::new, |u| u.describe()),
            self.settings.latency(),
            self.settings.failure_rate(),
        )
    }

    /// Waits the configured latency.
    async fn delay(&self) {
        let latency = self.settings.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// An injected failure, at the configured rate.
    fn maybe_fail(&self) -> Result<(), Status> {
        if self.settings.should_fail() {
            Err(Status::unavailable(self.settings.injected_failure()))
        } else {
            Ok(())
        }
    }

    /// The greeting itself: the text, the target's answer if any, and `!`.
    async fn compose(&self, context: &MetadataMap) -> Result<String, Status> {
        let mut result = self.text.clone();
        if let Some(upstream) = &self.upstream {
            match upstream.greeting(context.clone()).await {
                Ok(answer) => {
                    result.push(' ');
                    result.push_str(&answer);
                }
                Err(error) => {
                    let message = format!("helloworld: {} failed: {error}", upstream.describe());
                    eprintln!("{message}");
                    return Err(Status::unavailable(message));
                }
            }
        }
        result.push('!');
        Ok(result)
    }

    /// One unary greeting.
    async fn greeting(&self, request: tonic::Request<GreetingRequest>) -> GrpcResult<String> {
        self.delay().await;
        self.maybe_fail()?;
        self.compose(&forwarded_context(request.metadata())).await
    }
}

/// What the service methods return.
type GrpcResult<T> = Result<T, Status>;

/// The inbound metadata forwarded to the target: every `l5d-ctx-*` entry.
fn forwarded_context(metadata: &MetadataMap) -> MetadataMap {
    let mut forwarded = HeaderMap::new();
    for (name, value) in metadata.as_ref() {
        if name.as_str().starts_with("l5d-ctx") {
            forwarded.append(name.clone(), value.clone());
        }
    }
    MetadataMap::from_headers(forwarded)
}

/// The service implementation, for both `Hello` and `World`.
#[derive(Debug, Clone)]
pub(crate) struct Greeter(Arc<GrpcApp>);

#[tonic::async_trait]
impl Hello for Greeter {
    async fn greeting(
        &self,
        request: tonic::Request<GreetingRequest>,
    ) -> GrpcResult<tonic::Response<GreetingResponse>> {
        let message = self.0.greeting(request).await?;
        Ok(tonic::Response::new(GreetingResponse { message }))
    }

    type StreamGreetingStream = Pin<Box<dyn Stream<Item = GrpcResult<GreetingResponse>> + Send>>;

    /// Waits the latency, maybe fails, and composes the first greeting
    /// before anything is streamed (so these failures are a plain status);
    /// then streams it and [`STREAM_GREETINGS`]` - 1` more, each composed
    /// afresh (calling the target each time) after the latency again. A
    /// failed target call later on ends the stream with its status.
    async fn stream_greeting(
        &self,
        request: tonic::Request<GreetingRequest>,
    ) -> GrpcResult<tonic::Response<Self::StreamGreetingStream>> {
        let app = self.0.clone();
        let context = forwarded_context(request.metadata());
        app.delay().await;
        app.maybe_fail()?;
        let first = app.compose(&context).await?;
        let first = futures::stream::once(async move { Ok(GreetingResponse { message: first }) });
        let rest =
            futures::stream::unfold((app, context, 1usize), |(app, context, sent)| async move {
                if sent >= STREAM_GREETINGS {
                    return None;
                }
                app.delay().await;
                match app.compose(&context).await {
                    Ok(message) => {
                        Some((Ok(GreetingResponse { message }), (app, context, sent + 1)))
                    }
                    Err(status) => Some((Err(status), (app, context, STREAM_GREETINGS))),
                }
            });
        Ok(tonic::Response::new(Box::pin(first.chain(rest))))
    }
}

#[tonic::async_trait]
impl World for Greeter {
    async fn greeting(
        &self,
        request: tonic::Request<GreetingRequest>,
    ) -> GrpcResult<tonic::Response<GreetingResponse>> {
        let message = self.0.greeting(request).await?;
        Ok(tonic::Response::new(GreetingResponse { message }))
    }
}

/// The generated service wrapper for the service served.
#[derive(Debug, Clone)]
enum GrpcService {
    Hello(HelloServer<Greeter>),
    World(WorldServer<Greeter>),
}

impl GrpcService {
    fn new(app: &Arc<GrpcApp>) -> Self {
        let greeter = Greeter(app.clone());
        match app.served {
            Served::Hello => GrpcService::Hello(HelloServer::new(greeter)),
            Served::World => GrpcService::World(WorldServer::new(greeter)),
        }
    }

    /// Sends a request to the control endpoints or the gRPC service (which
    /// answers `UNIMPLEMENTED` for methods it does not have).
    async fn dispatch(
        mut self,
        app: Arc<GrpcApp>,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        if let Some(response) = handler::control_endpoint(&app.settings, &request) {
            return Ok(response.map(Body::new));
        }
        match &mut self {
            GrpcService::Hello(service) => service.call(request).await,
            GrpcService::World(service) => service.call(request).await,
        }
    }
}

/// Serves one connection (HTTP/2 prior knowledge or HTTP/1.1), closed
/// gracefully once `stop_rx` changes.
pub(crate) async fn serve_connection(
    app: Arc<GrpcApp>,
    stream: TcpStream,
    mut stop_rx: watch::Receiver<bool>,
) {
    let grpc = GrpcService::new(&app);
    let service = service_fn(move |request| grpc.clone().dispatch(app.clone(), request));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop_rx.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        let incomplete = error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message);
        if !incomplete {
            eprintln!("helloworld: connection error: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hello_in_any_case_serves_hello() {
        for text in ["hello", "Hello", "HELLO"] {
            assert_eq!(Served::for_text(text), Served::Hello, "{text}");
        }
        for text in ["world", "earth", "hello!", "", "Hello (10.0.1.5)"] {
            assert_eq!(Served::for_text(text), Served::World, "{text}");
        }
        assert_eq!(Served::Hello.name(), "helloworld.Hello");
        assert_eq!(Served::World.name(), "helloworld.World");
    }

    #[test]
    fn only_l5d_ctx_metadata_is_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert("l5d-ctx-dtab", HeaderValue::from_static("/svc=>/x"));
        headers.append("l5d-ctx-foo", HeaderValue::from_static("a"));
        headers.append("l5d-ctx-foo", HeaderValue::from_static("b"));
        headers.insert("l5d-ctx-trace-bin", HeaderValue::from_static("AAEC"));
        headers.insert("l5d-dtab", HeaderValue::from_static("/not=>/this"));
        headers.insert("x-other", HeaderValue::from_static("no"));
        let forwarded = forwarded_context(&MetadataMap::from_headers(headers)).into_headers();
        assert_eq!(forwarded.len(), 4);
        assert_eq!(forwarded["l5d-ctx-dtab"], "/svc=>/x");
        let foo: Vec<_> = forwarded.get_all("l5d-ctx-foo").iter().collect();
        assert_eq!(foo, ["a", "b"]);
        assert_eq!(forwarded["l5d-ctx-trace-bin"], "AAEC");
        assert!(!forwarded.contains_key("l5d-dtab"));
        assert!(!forwarded.contains_key("x-other"));
    }
}
