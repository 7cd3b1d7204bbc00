//! The exporter against a small in-process collector: batching, the JSON it posts, and
//! that a full queue, a down collector or a failing one drop and count spans instead of
//! waiting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use super::*;
use crate::telemetry::Registry;

/// What the collector received: (path, content type, body as JSON).
type Posts = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn collector(status: StatusCode) -> (SocketAddr, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let posts: Posts = Arc::default();
    let seen = posts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let ct = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        let json = serde_json::from_slice(&body).expect("JSON body");
                        seen.lock().unwrap().push((path, ct, json));
                        let mut rsp = Response::new(Full::new(Bytes::new()));
                        *rsp.status_mut() = status;
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, posts)
}

fn span(i: u64) -> Span {
    Span {
        context: SpanContext {
            ids: TraceIds {
                trace_id_high: 0,
                trace_id: 99,
                span_id: i + 1,
                parent_id: None,
            },
            sampled: true,
            debug: false,
        },
        kind: Kind::Server,
        name: "get".into(),
        start: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        duration: Duration::from_millis(2),
        local: Endpoint {
            service_name: Some("outgoing".into()),
            addr: "127.0.0.1:4140".parse().unwrap(),
        },
        remote: None,
        tags: vec![],
    }
}

fn settings(addr: SocketAddr, queue: usize, batch: usize) -> ExportSettings {
    ExportSettings {
        queue,
        batch,
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        ..ExportSettings::new(&addr.ip().to_string(), addr.port())
    }
}

fn counter(reg: &Registry, name: &str) -> u64 {
    reg.metrics_json(None, false, Instant::now()).unwrap()[name]
        .as_u64()
        .unwrap_or(0)
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn spans_are_posted_in_batches_as_zipkin_v2_json() {
    let (addr, posts) = collector(StatusCode::ACCEPTED).await;
    let reg = Registry::new();
    let (tracer, exporter) =
        metrics::with_local_recorder(&reg, || Tracer::new(1.0, settings(addr, 100, 3)));
    for i in 0..7 {
        tracer.record(span(i));
    }
    let task = tokio::spawn(exporter.run(std::future::pending()));
    until("7 spans", || counter(&reg, "zipkin/spans/sent") == 7).await;
    let posts = posts.lock().unwrap().clone();
    // Queued before the exporter ran: full batches, then the rest after the interval.
    let sizes: Vec<usize> = posts
        .iter()
        .map(|(_, _, v)| v.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [3, 3, 1]);
    for (path, ct, body) in &posts {
        assert_eq!(
            (path.as_str(), ct.as_str()),
            ("/api/v2/spans", "application/json")
        );
        for s in body.as_array().unwrap() {
            assert_eq!(s["traceId"], "0000000000000063");
            assert_eq!(s["kind"], "SERVER");
            assert_eq!(s["duration"], 2000);
            assert_eq!(s["timestamp"], 1_700_000_000_000_000u64);
        }
    }
    assert_eq!(counter(&reg, "zipkin/spans/dropped"), 0);
    task.abort();
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let reg = Registry::new();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // No exporter is running: nothing drains the queue.
    let (tracer, _exporter) =
        metrics::with_local_recorder(&reg, || Tracer::new(1.0, settings(addr, 2, 10)));
    for i in 0..5 {
        tracer.record(span(i));
    }
    assert_eq!(counter(&reg, "zipkin/spans/dropped"), 3);
}

#[tokio::test]
async fn a_down_or_failing_collector_costs_the_spans_and_is_counted() {
    // Nothing listens on a port that was just free.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (failing, posts) = collector(StatusCode::INTERNAL_SERVER_ERROR).await;
    for addr in [down, failing] {
        let reg = Registry::new();
        let (tracer, exporter) =
            metrics::with_local_recorder(&reg, || Tracer::new(1.0, settings(addr, 100, 2)));
        let task = tokio::spawn(exporter.run(std::future::pending()));
        for i in 0..5 {
            tracer.record(span(i));
        }
        until("5 dropped spans", || {
            counter(&reg, "zipkin/spans/dropped") == 5
        })
        .await;
        assert_eq!(counter(&reg, "zipkin/spans/sent"), 0);
        task.abort();
    }
    assert!(
        !posts.lock().unwrap().is_empty(),
        "the failing collector was asked"
    );
}

#[tokio::test]
async fn stopping_sends_what_is_queued() {
    let (addr, posts) = collector(StatusCode::ACCEPTED).await;
    let reg = Registry::new();
    let (tracer, exporter) =
        metrics::with_local_recorder(&reg, || Tracer::new(1.0, settings(addr, 100, 100)));
    for i in 0..4 {
        tracer.record(span(i));
    }
    // Already stopped: the exporter sends the queue and returns.
    exporter.run(std::future::ready(())).await;
    assert_eq!(counter(&reg, "zipkin/spans/sent"), 4);
    assert_eq!(posts.lock().unwrap().len(), 1);
    // After it stopped, spans are dropped, not queued forever.
    tracer.record(span(9));
    assert_eq!(counter(&reg, "zipkin/spans/dropped"), 1);
}
