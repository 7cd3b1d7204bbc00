//! End-to-end tests of the gRPC mode (`helloworld -protocol grpc`) and of
//! `helloworld-client`: real processes on kernel-chosen 127.0.0.1 ports, and
//! where a test must see exactly what crossed the wire, an in-process fake
//! `World` or `Hello` server (built from the same generated code) that
//! records each request's path, `:authority` and metadata.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};

use common::{ClientRun, Proc, WAIT, client, closed_port, request};
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use plexus_examples::proto::hello_server::{Hello, HelloServer};
use plexus_examples::proto::world_server::{World, WorldServer};
use plexus_examples::proto::{GreetingRequest, GreetingResponse};
use tonic::codegen::Service;
use tonic::{Status, body::Body};

/// A `-protocol grpc` service on a free port.
fn grpc(args: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let mut all = vec!["-protocol=grpc"];
    all.extend_from_slice(args);
    Proc::serve(&all, env)
}

/// Asserts a client run succeeded and returns its output lines.
fn lines(run: &ClientRun) -> Vec<&str> {
    assert_eq!(run.code, Some(0), "{run:?}");
    run.stdout.lines().collect()
}

/// Asserts a client run failed (exit 1) with all of `needles` on stderr.
fn assert_failed(run: &ClientRun, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    for needle in needles {
        assert!(run.stderr.contains(needle), "{needle:?} missing: {run:?}");
    }
}

/// What a fake server saw of one request.
#[derive(Debug)]
struct Seen {
    path: String,
    authority: Option<String>,
    headers: HeaderMap,
}

/// An in-process gRPC server on a free 127.0.0.1 port, stopped when dropped
/// (with its runtime).
struct Fake {
    addr: SocketAddr,
    seen: Receiver<Seen>,
    _runtime: tokio::runtime::Runtime,
}

impl Fake {
    /// Serves `service` over HTTP/2 prior knowledge, reporting every request.
    fn start<S>(service: S) -> Fake
    where
        S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind fake server");
        let addr = listener.local_addr().expect("fake server address");
        let (tx, seen) = mpsc::channel();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = service.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handler = service_fn(move |request: Request<Incoming>| {
                        let _ = tx.send(Seen {
                            path: request.uri().path().to_owned(),
                            authority: request.uri().authority().map(|a| a.to_string()),
                            headers: request.headers().clone(),
                        });
                        service.clone().call(request)
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
            }
        });
        Fake {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    /// The next request seen, waiting at most [`WAIT`].
    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(WAIT)
            .expect("the fake server saw a request")
    }

    /// Asserts that no further request was seen (call after the client
    /// finished, so every request it caused has arrived).
    fn assert_no_more(&self) {
        assert!(self.seen.try_recv().is_err(), "unexpected extra request");
    }
}

/// A fake `World` and `Hello` answering a fixed text.
#[derive(Debug, Clone)]
struct Canned(&'static str);

#[tonic::async_trait]
impl World for Canned {
    async fn greeting(
        &self,
        _request: tonic::Request<GreetingRequest>,
    ) -> Result<tonic::Response<GreetingResponse>, Status> {
        Ok(tonic::Response::new(GreetingResponse {
            message: self.0.to_owned(),
        }))
    }
}

#[tonic::async_trait]
impl Hello for Canned {
    async fn greeting(
        &self,
        _request: tonic::Request<GreetingRequest>,
    ) -> Result<tonic::Response<GreetingResponse>, Status> {
        Ok(tonic::Response::new(GreetingResponse {
            message: self.0.to_owned(),
        }))
    }

    type StreamGreetingStream = futures::stream::Empty<Result<GreetingResponse, Status>>;

    async fn stream_greeting(
        &self,
        _request: tonic::Request<GreetingRequest>,
    ) -> Result<tonic::Response<Self::StreamGreetingStream>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// One header's value as text, if present.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn hello_calls_world_over_grpc() {
    let (_world, world) = grpc(&[], &[("TARGET_WORLD", "world"), ("POD_IP", "10.0.2.7")]);
    let target = format!("-target={world}");
    let (_hello, hello) = grpc(&["-text", "Hello", &target], &[("POD_IP", "10.0.1.5")]);
    let run = client(&[&hello.to_string()]);
    assert_eq!(lines(&run), ["Hello (10.0.1.5) world (10.0.2.7)!!"]);
    // Twice, over the connection hello keeps to world.
    let run = client(&[&hello.to_string()]);
    assert_eq!(lines(&run), ["Hello (10.0.1.5) world (10.0.2.7)!!"]);
}

#[test]
fn streaming_prints_five_greetings() {
    let (_world, world) = grpc(&["-text=world"], &[]);
    let target = format!("-target={world}");
    let (_hello, hello) = grpc(&[&target, "-latency=1ms"], &[("POD_IP", "10.0.1.5")]);
    let run = client(&["-streaming", &hello.to_string()]);
    assert_eq!(lines(&run), ["Hello (10.0.1.5) world!!"; 5]);
}

#[test]
fn any_case_of_hello_serves_hello_and_anything_else_world() {
    let (_hello, hello) = grpc(&["-text=HELLO"], &[]);
    assert_eq!(lines(&client(&[&hello.to_string()])), ["HELLO!"]);
    assert_eq!(
        lines(&client(&["-streaming", &hello.to_string()])),
        ["HELLO!"; 5]
    );

    // TARGET_WORLD overrides the text, and so the service: this one is a
    // World, which has no helloworld.Hello methods.
    let (_world, world) = grpc(&["-text=hello"], &[("TARGET_WORLD", "earth")]);
    let run = client(&[&world.to_string()]);
    assert_failed(
        &run,
        &["helloworld.Hello/Greeting failed", "Unimplemented (12)"],
    );
}

#[test]
fn l5d_ctx_metadata_reaches_world() {
    let fake = Fake::start(WorldServer::new(Canned("fake world")));
    let target = format!("-target={}", fake.addr);
    let (_hello, hello) = grpc(&[&target], &[]);
    let dtab = "/svc=>/#/io.l5d.k8s/default/grpc";
    let metadata = [
        "-H",
        "l5d-ctx-foo: bar",
        "-H",
        "L5d-Ctx-Dtab: /svc=>/#/io.l5d.k8s/default/grpc",
        "-header=l5d-dtab=/not=>/forwarded",
        "-H",
        "x-other: nope",
    ];

    let mut args = metadata.to_vec();
    let hello_addr = hello.to_string();
    args.push(&hello_addr);
    assert_eq!(lines(&client(&args)), ["Hello fake world!"]);
    let seen = fake.next();
    assert_eq!(seen.path, "/helloworld.World/Greeting");
    assert_eq!(seen.authority, Some(fake.addr.to_string()));
    assert_eq!(
        header(&seen.headers, "content-type"),
        Some("application/grpc")
    );
    assert_eq!(header(&seen.headers, "l5d-ctx-foo"), Some("bar"));
    assert_eq!(header(&seen.headers, "l5d-ctx-dtab"), Some(dtab));
    assert_eq!(header(&seen.headers, "l5d-dtab"), None);
    assert_eq!(header(&seen.headers, "x-other"), None);
    fake.assert_no_more();

    // Each streamed greeting calls World again, with the same context.
    let mut args = vec!["-streaming"];
    args.extend_from_slice(&metadata);
    args.push(&hello_addr);
    assert_eq!(lines(&client(&args)), ["Hello fake world!"; 5]);
    for _ in 0..5 {
        let seen = fake.next();
        assert_eq!(seen.path, "/helloworld.World/Greeting");
        assert_eq!(header(&seen.headers, "l5d-ctx-foo"), Some("bar"));
        assert_eq!(header(&seen.headers, "l5d-dtab"), None);
    }
    fake.assert_no_more();
}

#[test]
fn client_calls_hello_with_the_authority_asked_for() {
    let fake = Fake::start(HelloServer::new(Canned("fake hello")));
    let addr = fake.addr.to_string();

    assert_eq!(lines(&client(&[&addr])), ["fake hello"]);
    let seen = fake.next();
    assert_eq!(seen.path, "/helloworld.Hello/Greeting");
    assert_eq!(seen.authority.as_deref(), Some(addr.as_str()));
    assert_eq!(header(&seen.headers, "te"), Some("trailers"));

    let run = client(&["--authority", "hello.default.svc:4140", &addr]);
    assert_eq!(lines(&run), ["fake hello"]);
    let seen = fake.next();
    assert_eq!(seen.authority.as_deref(), Some("hello.default.svc:4140"));

    let run = client(&["-streaming", "-authority=hello", &addr]);
    assert_failed(
        &run,
        &[
            "helloworld.Hello/StreamGreeting failed",
            "Unimplemented (12): not in this fake",
        ],
    );
    let seen = fake.next();
    assert_eq!(seen.path, "/helloworld.Hello/StreamGreeting");
    assert_eq!(seen.authority.as_deref(), Some("hello"));
    fake.assert_no_more();
}

#[test]
fn injected_failures_are_unavailable() {
    let (_hello, hello) = grpc(&["-failure-rate=1.0"], &[]);
    let hello = hello.to_string();
    assert_failed(
        &client(&[&hello]),
        &[
            "helloworld.Hello/Greeting failed: Unavailable (14)",
            "injected failure (failure rate 1)",
        ],
    );
    assert_failed(
        &client(&["-streaming", &hello]),
        &[
            "helloworld.Hello/StreamGreeting failed: Unavailable (14)",
            "injected failure",
        ],
    );
}

#[test]
fn a_failing_world_makes_hello_unavailable() {
    let (_world, world) = grpc(&["-text=world", "-failure-rate=1"], &[]);
    let target = format!("-target={world}");
    let (_hello, hello) = grpc(&[&target], &[]);
    let hello = hello.to_string();
    let expected = format!("http://{world}/helloworld.World/Greeting failed");
    for streaming in [false, true] {
        let mut args = vec![];
        if streaming {
            args.push("-streaming");
        }
        args.push(&hello);
        assert_failed(
            &client(&args),
            &["Unavailable (14)", &expected, "injected failure"],
        );
    }
}

#[test]
fn an_unreachable_world_makes_hello_unavailable() {
    let closed = closed_port();
    let target = format!("-target={closed}");
    let (_hello, hello) = grpc(&[&target], &[]);
    let expected = format!("http://{closed}/helloworld.World/Greeting failed");
    assert_failed(
        &client(&[&hello.to_string()]),
        &[
            "helloworld.Hello/Greeting failed: Unavailable (14)",
            &expected,
        ],
    );
}

#[test]
fn control_endpoints_work_in_grpc_mode() {
    let (_hello, addr) = grpc(&[], &[]);
    let hello = addr.to_string();
    assert_eq!(lines(&client(&[&hello])), ["Hello!"]);

    let set = request(addr, "POST", "/setFailureRate?failureRate=1", &[]);
    assert_eq!((set.status, set.body.as_str()), (200, "ok"));
    assert_failed(
        &client(&[&hello]),
        &["Unavailable (14)", "injected failure"],
    );

    let set = request(addr, "POST", "/setFailureRate?failureRate=0", &[]);
    assert_eq!((set.status, set.body.as_str()), (200, "ok"));
    let set = request(addr, "POST", "/setLatency?latency=1ms", &[]);
    assert_eq!((set.status, set.body.as_str()), (200, "ok"));
    assert_eq!(lines(&client(&[&hello])), ["Hello!"]);

    let bad = request(addr, "POST", "/setLatency?latency=soon", &[]);
    assert_eq!(bad.status, 400, "{bad:?}");
}

#[test]
fn client_reports_connection_failures() {
    let closed = closed_port().to_string();
    let run = client(&[&closed]);
    assert_failed(&run, &[&format!("cannot connect to {closed}"), "refused"]);
}

#[test]
fn client_usage_errors_exit_2() {
    for args in [
        &[][..],
        &["-nope", "127.0.0.1:1"],
        &["a:1", "b:2"],
        &["-H=x", "a:1"],
    ] {
        let run = client(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("Usage: helloworld-client"),
            "{args:?}: {run:?}"
        );
    }
    let run = client(&["-h"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("-streaming"), "{run:?}");
}

#[test]
fn grpc_mode_exits_cleanly_on_sigterm() {
    let (hello, addr) = grpc(&[], &[]);
    assert_eq!(lines(&client(&[&addr.to_string()])), ["Hello!"]);
    hello.signal("TERM");
    let (status, stderr) = hello.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("service helloworld.Hello"), "{stderr}");
}
