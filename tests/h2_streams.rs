//! HTTP/2 stream semantics through `protocol: h2` routers, end to end. One real `plexus
//! run` serves two chained h2 routers (`outer` forwards to `inner`, which forwards to an
//! h2c backend written here with hyper), so every shape is checked through one hop and
//! through two: client, server and bidirectional streaming with gRPC-framed messages,
//! 10 MiB bodies both ways, no head-of-line blocking between the streams of a connection,
//! cancellation both ways (a client's reset reaches the backend; a backend's reset or a
//! dead backend connection reaches the client as a stream error), deadlines (the client's
//! own and `totalTimeoutMs`), many concurrent streams with `h2load`,
//! `maxConcurrentStreamsPerConnection` as seen on the wire, and graceful drain with GOAWAY.
//! Every wait is bounded and nothing asserts a duration.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::SinkExt;
use futures::channel::mpsc;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Proc, example_bin, free_port, h2load_summary, listening, plexus_bin, scratch};
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;
type FrameSender = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// The bound on any one wait: generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// Awaits `fut`, failing the test with `what` if it takes longer than [`PATIENCE`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `cond` until it holds, within [`PATIENCE`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Bodies, data and gRPC framing
// ---------------------------------------------------------------------------------------

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| -> BoxError { match never {} })
        .boxed_unsync()
}

/// A body fed through a channel: the test (or the backend) sends frames, or an error
/// to reset the stream; dropping the sender ends the body cleanly.
fn channel_body(capacity: usize) -> (FrameSender, Body) {
    let (tx, rx) = mpsc::channel(capacity);
    (tx, StreamBody::new(rx).boxed_unsync())
}

/// The byte at `offset` of every large body in these tests.
fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(31) % 251) as u8
}

fn pattern_chunk(offset: u64, len: usize) -> Bytes {
    (offset..offset + len as u64).map(pattern).collect()
}

/// Checks a body against [`pattern`] as it arrives.
#[derive(Default)]
struct PatternCheck {
    offset: u64,
}

impl PatternCheck {
    fn feed(&mut self, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let at = self.offset + i as u64;
            assert_eq!(*b, pattern(at), "byte {at} of the body is wrong");
        }
        self.offset += data.len() as u64;
    }
}

/// FNV-1a, to compare message contents without keeping them.
fn fnv(mut hash: u64, data: &[u8]) -> u64 {
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// One gRPC length-prefixed message (uncompressed).
fn grpc_message(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 5);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Takes one whole gRPC message off the front of `buf`, if it holds one.
fn take_message(buf: &mut BytesMut) -> Option<Bytes> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return None;
    }
    buf.advance(5);
    Some(buf.split_to(len).freeze())
}

/// Reads frames until one whole gRPC message is in `buf`, and returns it.
async fn read_message(body: &mut Incoming, buf: &mut BytesMut) -> Bytes {
    loop {
        if let Some(message) = take_message(buf) {
            return message;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            other => panic!("the stream ended before a whole message: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------

/// What the backend saw, for the test to wait on; and the test's signals to it.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<String>>,
    /// Requests served, of any kind.
    requests: AtomicUsize,
    /// Requests waiting in `/hold`.
    held: AtomicUsize,
    /// Lets `/hold` requests answer.
    release: AtomicBool,
}

impl Log {
    fn record(&self, event: impl Into<String>) {
        self.events.lock().expect("log").push(event.into());
    }

    fn count(&self, event: &str) -> usize {
        let events = self.events.lock().expect("log");
        events.iter().filter(|e| e.as_str() == event).count()
    }

    fn has(&self, event: &str) -> bool {
        self.count(event) > 0
    }

    fn dump(&self) -> String {
        self.events.lock().expect("log").join("\n")
    }

    /// Waits (bounded) until `event` was recorded `n` times.
    async fn wait_n(&self, event: &str, n: usize) {
        let done = tokio::time::timeout(PATIENCE, async {
            while self.count(event) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            done.is_ok(),
            "the backend never saw {event:?} ({n} times); it saw:\n{}",
            self.dump()
        );
    }

    async fn wait(&self, event: &str) {
        self.wait_n(event, 1).await;
    }

    /// Waits, unbounded, for a signal from the test (backend side).
    async fn until(&self, event: &str) {
        while !self.has(event) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Records an event when dropped: the backend's view of a request future cancelled.
struct OnDrop(Arc<Log>, String);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.record(std::mem::take(&mut self.1));
    }
}

struct Backend {
    addr: SocketAddr,
    log: Arc<Log>,
}

/// Starts the h2c backend (prior knowledge) on the test's runtime. Requests are
/// `/<kind>/<id>`; events name the id:
/// - `/echo/<id>` streams every request data frame back as it comes, then trailers
///   `grpc-status: 0` and `x-echo-bytes`; `upload-error <id>` if the request body fails,
///   `sender-error <id>` if the response body is cancelled;
/// - `/count/<id>` reads gRPC messages to the end of the request and answers
///   `messages=<n> payload=<bytes> hash=<fnv> leftover=<bytes>`; `upload-bytes <id>` on the
///   first data, then `upload-end <id>` or `upload-error <id>`;
/// - `/big/<n>` streams `n` bytes of [`pattern`];
/// - `/forever/<id>` streams data until the response is cancelled (`sender-error <id>`);
/// - `/stall/<id>` (and the helloworld `Greeting` call) never answers: `stall-start <id>
///   grpc-timeout=<header>`, then `stall-cancel <id>` when the request is dropped;
/// - `/hold/<id>` answers once the test sets `release`;
/// - `/reset/<id>` and `/die/<id>` send `partial`, wait for `go <id>` from the test, then
///   reset the stream or close the whole connection;
/// - `/refuse/<id>` resets the stream before answering;
/// - `/flaky/<id>` reads the request to its end, answers the first attempt for an id
///   UNAVAILABLE (`grpc-status: 14`, trailers-only) and later ones `attempt=<n>
///   hash=<fnv of the body>` (`flaky-attempt <id>` each time);
/// - `/stream-fail/<id>` and `/stream-ok/<id>` stream the gRPC messages `message 1` and
///   `message 2`, then end with `grpc-status` 14 (UNAVAILABLE) or 0 in the trailers;
///   `helloworld.Hello/StreamGreeting` does the same as the first with the greetings
///   `greeting 1` and `greeting 2` (protobuf);
/// - `/whoami/<id>` answers `authority=<:authority> path=<:path>` as it arrived;
/// - anything else answers `ok`.
async fn backend() -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = Arc::new(Log::default());
    let shared = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (log, kill) = (shared.clone(), Arc::new(Notify::new()));
            let conn_kill = kill.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| serve(log.clone(), kill.clone(), req));
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(10_000)
                    .serve_connection(TokioIo::new(stream), svc);
                // Dropping the connection closes its socket: the backend "dies".
                tokio::select! {
                    _ = conn => {}
                    () = conn_kill.notified() => {}
                }
            });
        }
    });
    Backend { addr, log }
}

async fn serve(
    log: Arc<Log>,
    kill: Arc<Notify>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    log.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let (kind, id) = path.split_once('/').unwrap_or((&path, ""));
    let id = id.to_owned();
    match kind {
        "echo" => Ok(echo(log, id, req.into_body())),
        "count" => Ok(count(log, id, req.into_body()).await),
        "big" => Ok(big(id.parse().unwrap_or(0))),
        "forever" => Ok(forever(log, id)),
        "stream-fail" => Ok(stream_then_status(
            [grpc_message(b"message 1"), grpc_message(b"message 2")],
            "14",
        )),
        "stream-ok" => Ok(stream_then_status(
            [grpc_message(b"message 1"), grpc_message(b"message 2")],
            "0",
        )),
        "helloworld.Hello" if id == "StreamGreeting" => Ok(stream_then_status(
            [greeting("greeting 1"), greeting("greeting 2")],
            "14",
        )),
        "stall" | "helloworld.Hello" => {
            let timeout = req
                .headers()
                .get("grpc-timeout")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_else(|| "-".into());
            log.record(format!("stall-start {id} grpc-timeout={timeout}"));
            let _cancelled = OnDrop(log.clone(), format!("stall-cancel {id}"));
            let never: Infallible = futures::future::pending().await;
            match never {}
        }
        "hold" => {
            log.held.fetch_add(1, Ordering::SeqCst);
            while !log.release.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Response::new(full(format!("released {id}"))))
        }
        "reset" => Ok(fail_midway(log, id, None)),
        "die" => Ok(fail_midway(log, id, Some(kill))),
        "refuse" => Err(std::io::Error::other("the backend refuses this stream")),
        "flaky" => Ok(flaky(log, id, req.into_body()).await),
        "whoami" => Ok(Response::new(full(format!(
            "authority={} path={}",
            req.uri().authority().map_or("-", |a| a.as_str()),
            req.uri().path()
        )))),
        _ => Ok(Response::new(full("ok"))),
    }
}

fn echo(log: Arc<Log>, id: String, mut body: Incoming) -> Response<Body> {
    let (mut tx, rsp) = channel_body(4);
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            match body.frame().await {
                None => {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    trailers.insert("x-echo-bytes", HeaderValue::from(n));
                    let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                    return;
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    n += data.len() as u64;
                    if tx.send(Ok(Frame::data(data))).await.is_err() {
                        log.record(format!("sender-error {id}"));
                        return;
                    }
                }
                Some(Err(e)) => {
                    log.record(format!("upload-error {id}"));
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
    });
    Response::new(rsp)
}

async fn count(log: Arc<Log>, id: String, mut body: Incoming) -> Response<Body> {
    let mut buf = BytesMut::new();
    let (mut messages, mut payload, mut hash) = (0u64, 0u64, FNV_START);
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if buf.is_empty() && messages == 0 {
                    log.record(format!("upload-bytes {id}"));
                }
                buf.extend_from_slice(&data);
                while let Some(message) = take_message(&mut buf) {
                    messages += 1;
                    payload += message.len() as u64;
                    hash = fnv(hash, &message);
                }
            }
            Some(Err(_)) => {
                log.record(format!("upload-error {id}"));
                return Response::new(full("upload failed"));
            }
        }
    }
    log.record(format!("upload-end {id}"));
    Response::new(full(format!(
        "messages={messages} payload={payload} hash={hash:x} leftover={}",
        buf.len()
    )))
}

async fn flaky(log: Arc<Log>, id: String, body: Incoming) -> Response<Body> {
    let Ok(body) = body.collect().await else {
        return Response::new(full("upload failed"));
    };
    let event = format!("flaky-attempt {id}");
    log.record(event.as_str());
    let attempt = log.count(&event);
    if attempt == 1 {
        return Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .body(full(""))
            .expect("response");
    }
    let hash = fnv(FNV_START, &body.to_bytes());
    Response::new(full(format!("attempt={attempt} hash={hash:x}")))
}

/// A `helloworld.GreetingResponse` with `message` (field 1, a short string), framed.
fn greeting(message: &str) -> Bytes {
    let mut encoded = vec![0x0a, u8::try_from(message.len()).expect("a short message")];
    encoded.extend_from_slice(message.as_bytes());
    grpc_message(&encoded)
}

/// A gRPC server stream: `messages`, then the status `code` in the trailers (a gRPC
/// server's way to fail a call after it has sent messages).
fn stream_then_status(messages: [Bytes; 2], code: &'static str) -> Response<Body> {
    let (mut tx, body) = channel_body(4);
    tokio::spawn(async move {
        for message in messages {
            if tx.send(Ok(Frame::data(message))).await.is_err() {
                return;
            }
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(code));
        if code != "0" {
            trailers.insert(
                "grpc-message",
                HeaderValue::from_static("the backend is going away"),
            );
        }
        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
    });
    Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("response")
}

fn big(n: u64) -> Response<Body> {
    let (mut tx, rsp) = channel_body(2);
    tokio::spawn(async move {
        let mut offset = 0;
        while offset < n {
            let len = (n - offset).min(64 * 1024) as usize;
            if tx
                .send(Ok(Frame::data(pattern_chunk(offset, len))))
                .await
                .is_err()
            {
                return;
            }
            offset += len as u64;
        }
    });
    Response::new(rsp)
}

fn forever(log: Arc<Log>, id: String) -> Response<Body> {
    let (mut tx, rsp) = channel_body(2);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'f'; 16 * 1024]);
        loop {
            if tx.send(Ok(Frame::data(chunk.clone()))).await.is_err() {
                log.record(format!("sender-error {id}"));
                return;
            }
        }
    });
    Response::new(rsp)
}

/// Sends `partial`, waits for the test's `go <id>`, then resets the stream (`kill` is
/// `None`) or closes the connection under it.
fn fail_midway(log: Arc<Log>, id: String, kill: Option<Arc<Notify>>) -> Response<Body> {
    let (mut tx, rsp) = channel_body(1);
    tokio::spawn(async move {
        let _ = tx
            .send(Ok(Frame::data(Bytes::from_static(b"partial"))))
            .await;
        log.until(&format!("go {id}")).await;
        match kill {
            None => {
                let _ = tx.send(Err("the backend gives up".into())).await;
            }
            Some(kill) => {
                kill.notify_one();
                // Keep the body open (no clean end) until the dead connection drops it.
                while !tx.is_closed() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    Response::new(rsp)
}

// ---------------------------------------------------------------------------------------
// Plexus
// ---------------------------------------------------------------------------------------

/// One `plexus run` with the two chained h2 routers.
struct Mesh {
    /// `inner`: identifies by `:authority`, sends to the backend (one hop).
    inner: SocketAddr,
    /// `outer`: sends everything to `inner` (two hops).
    outer: SocketAddr,
    admin: SocketAddr,
    plexus: Proc,
}

impl Mesh {
    /// Services (authorities) `world`, `slow` (`totalTimeoutMs: 300` on `inner`),
    /// `grpc` (`io.l5d.h2.grpc.default` classifier on both routers), `compliant`
    /// (`io.l5d.h2.grpc.compliant` on `inner`) and `strict` (`io.l5d.h2.grpc.default`)
    /// all reach `backend`; `inner`'s clients of `compliant` and `strict` have no
    /// requeue budget.
    /// `max_streams` sets `inner`'s `maxConcurrentStreamsPerConnection`.
    fn start(name: &str, backend: SocketAddr, max_streams: Option<u32>) -> Mesh {
        let dir = scratch(name);
        let disco = dir.join("disco");
        std::fs::create_dir_all(&disco).expect("disco");
        for service in ["world", "slow", "grpc", "compliant", "strict"] {
            std::fs::write(
                disco.join(service),
                format!("{} {}\n", backend.ip(), backend.port()),
            )
            .expect("write");
        }
        let (inner, outer, admin) = (free_port(), free_port(), free_port());
        let limit = max_streams
            .map(|n| format!("    maxConcurrentStreamsPerConnection: {n}\n"))
            .unwrap_or_default();
        let grpc = "    - prefix: /svc/grpc\n      responseClassifier:\n        kind: io.l5d.h2.grpc.default\n";
        let config = format!(
            r#"admin:
  ip: 127.0.0.1
  port: {admin}
  shutdownGraceMs: 60000
namers:
- kind: io.l5d.fs
  rootDir: {disco}
routers:
- protocol: h2
  label: inner
  dtab: /svc => /#/io.l5d.fs;
  service:
    kind: io.l5d.static
    configs:
    - prefix: /svc/slow
      totalTimeoutMs: 300
    - prefix: /svc/compliant
      responseClassifier:
        kind: io.l5d.h2.grpc.compliant
    - prefix: /svc/strict
      responseClassifier:
        kind: io.l5d.h2.grpc.default
{grpc}  client:
    kind: io.l5d.static
    configs:
    - prefix: /#/io.l5d.fs/compliant
      requeueBudget: {{percentCanRetry: 0.0, minRetriesPerSec: 0}}
    - prefix: /#/io.l5d.fs/strict
      requeueBudget: {{percentCanRetry: 0.0, minRetriesPerSec: 0}}
  servers:
  - port: {inner}
{limit}- protocol: h2
  label: outer
  dtab: /svc => /$/inet/127.0.0.1/{inner};
  service:
    kind: io.l5d.static
    configs:
{grpc}  servers:
  - port: {outer}
"#,
            disco = disco.display()
        );
        std::fs::write(dir.join("plexus.yaml"), config).expect("config");
        let plexus = Proc::spawn(
            Command::new(plexus_bin())
                .arg("run")
                .arg(dir.join("plexus.yaml")),
            dir.join("plexus.log"),
        );
        let addr = |port: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], port)) };
        let mesh = Mesh {
            inner: addr(inner),
            outer: addr(outer),
            admin: addr(admin),
            plexus,
        };
        tokio::task::block_in_place(|| {
            for a in [mesh.inner, mesh.outer, mesh.admin] {
                support::wait_for(&format!("plexus to listen on {a}"), || listening(a));
            }
        });
        mesh
    }

    /// The two ways in: through one router, and through two.
    fn entries(&self) -> [(&'static str, SocketAddr); 2] {
        [("one hop", self.inner), ("two hops", self.outer)]
    }
}

type Client = hyper::client::conn::http2::SendRequest<Body>;

/// One h2c connection (prior knowledge) to `addr`.
async fn connect(addr: SocketAddr) -> Client {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// A gRPC-style request (`POST`, `te: trailers`) to `authority` for `path`.
fn request(authority: &str, path: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(body)
        .expect("request")
}

async fn send(client: &mut Client, req: Request<Body>) -> Response<Incoming> {
    within("the client to be ready", client.ready())
        .await
        .expect("connection open");
    within("response headers", client.send_request(req))
        .await
        .expect("response")
}

// ---------------------------------------------------------------------------------------
// Streams in every shape, far larger than the window
// ---------------------------------------------------------------------------------------

/// Client streaming: 1000 gRPC messages (about 10 MB) in one request, counted and hashed
/// by the backend after the request ends.
async fn client_streaming(client: &mut Client, authority: &str, tag: &str) {
    let (mut tx, body) = channel_body(4);
    let sender = tokio::spawn(async move {
        let (mut payload, mut hash, mut offset) = (0u64, FNV_START, 0u64);
        for i in 0..1000u64 {
            let len = ((i * 7919) % 20_000 + 1) as usize;
            let message = pattern_chunk(offset, len);
            offset += len as u64;
            payload += len as u64;
            hash = fnv(hash, &message);
            tx.send(Ok(Frame::data(grpc_message(&message))))
                .await
                .expect("request body open");
        }
        (payload, hash)
    });
    let rsp = send(client, request(authority, &format!("/count/{tag}"), body)).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let text = within("the count", rsp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    let (payload, hash) = within("the sender", sender).await.expect("sender");
    assert!(payload > 9_000_000, "{payload}");
    assert_eq!(
        String::from_utf8_lossy(&text),
        format!("messages=1000 payload={payload} hash={hash:x} leftover=0"),
        "{tag}"
    );
}

/// Bidirectional streaming, ping-pong: each message is sent only after the previous one
/// came back, so nothing on the way may wait for the request to end.
async fn bidi_ping_pong(client: &mut Client, authority: &str, tag: &str) {
    let (mut tx, body) = channel_body(1);
    let rsp = send(client, request(authority, &format!("/echo/{tag}"), body)).await;
    assert_eq!(rsp.status(), StatusCode::OK, "{tag}");
    let mut body = rsp.into_body();
    let mut buf = BytesMut::new();
    for i in 0..20 {
        let ping = format!("ping {i} of {tag}");
        tx.send(Ok(Frame::data(grpc_message(ping.as_bytes()))))
            .await
            .expect("request body open");
        let pong = within(
            &format!("echo {i} of {tag}"),
            read_message(&mut body, &mut buf),
        )
        .await;
        assert_eq!(pong, ping.as_bytes(), "{tag}");
    }
    drop(tx);
    let rest = within("the end of the echo", body.collect())
        .await
        .expect("body");
    let trailers = rest.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0", "{tag}");
    assert_eq!(rest.to_bytes().len(), 0, "{tag}");
}

/// 10 MiB up and 10 MiB down on one stream at once: the backend echoes as it reads.
async fn echo_10_mib(client: &mut Client, authority: &str, tag: &str) {
    let (mut tx, body) = channel_body(4);
    let sender = tokio::spawn(async move {
        let mut offset = 0;
        while offset < 10 * MIB {
            let chunk = pattern_chunk(offset, 64 * 1024);
            offset += chunk.len() as u64;
            tx.send(Ok(Frame::data(chunk)))
                .await
                .expect("request body open");
        }
    });
    let rsp = send(client, request(authority, &format!("/echo/{tag}"), body)).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let mut body = rsp.into_body();
    let mut check = PatternCheck::default();
    let mut trailers = None;
    within(&format!("10 MiB echoed ({tag})"), async {
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("echo stream");
            match frame.into_data() {
                Ok(data) => check.feed(&data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
    })
    .await;
    within("the sender", sender).await.expect("sender");
    assert_eq!(check.offset, 10 * MIB, "{tag}");
    let trailers = trailers.expect("trailers after the echo");
    assert_eq!(trailers["x-echo-bytes"], (10 * MIB).to_string().as_str());
    assert_eq!(trailers["grpc-status"], "0");
}

/// An h2 router takes each request as it came, `:authority` in its URI and no `Host`:
/// an identifier reading `host` reads the authority, and the request goes on with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_identifier_reading_host_reads_the_authority() {
    let backend = backend().await;
    let (_plexus, entry) = one_router(
        "h2s-host",
        "- protocol: h2\n  identifier:\n    kind: io.l5d.header.token\n    header: host\n",
        &[("world", backend.addr)],
    );
    let mut client = connect(entry).await;
    let rsp = send(&mut client, request("world", "/whoami/1", full(""))).await;
    assert_eq!(rsp.status(), StatusCode::OK, "{:?}", rsp.headers());
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body, "authority=world path=/whoami/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_bidirectional_streams_carry_10_mib_each_way() {
    let backend = backend().await;
    let mesh = Mesh::start("h2s-shapes", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let mut client = connect(entry).await;
        let tag = hops.replace(' ', "-");
        client_streaming(&mut client, "world", &format!("count-{tag}")).await;
        bidi_ping_pong(&mut client, "world", &format!("ping-{tag}")).await;
        echo_10_mib(&mut client, "world", &format!("echo-{tag}")).await;
    }
}

/// The gRPC classifiers retry, so the request body is kept for a retry: that must not
/// hold the request back while the client waits for an answer to its first message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_flow_through_services_with_a_retrying_grpc_classifier() {
    let backend = backend().await;
    let mesh = Mesh::start("h2s-grpc-classifier", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let mut client = connect(entry).await;
        let tag = hops.replace(' ', "-");
        bidi_ping_pong(&mut client, "grpc", &format!("ping-{tag}")).await;
        client_streaming(&mut client, "grpc", &format!("count-{tag}")).await;
        echo_10_mib(&mut client, "grpc", &format!("echo-{tag}")).await;
    }
}

/// A streamed request body (no length declared) is kept as it passes, up to 64 KiB: a
/// call answered UNAVAILABLE after its body ended is retried with the same body; a
/// longer one is not retried, and the client gets the UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_retries_replay_a_streamed_body_only_within_the_bound() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mesh = Mesh::start("h2s-grpc-retry", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let mut client = connect(entry).await;
        for (size, retried) in [(1000usize, true), (100 * 1024, false)] {
            let id = format!("{}-{size}", hops.replace(' ', "-"));
            let message = grpc_message(&pattern_chunk(0, size));
            let hash = fnv(FNV_START, &message);
            let (mut tx, body) = channel_body(2);
            let sender = tokio::spawn(async move {
                let (a, b) = message.split_at(message.len() / 2);
                for part in [a, b] {
                    tx.send(Ok(Frame::data(Bytes::copy_from_slice(part))))
                        .await
                        .expect("request body open");
                    tokio::task::yield_now().await;
                }
            });
            let rsp = send(&mut client, request("grpc", &format!("/flaky/{id}"), body)).await;
            within("the sender", sender).await.expect("sender");
            let status = rsp.headers().get("grpc-status").cloned();
            let text = within("the answer", rsp.into_body().collect())
                .await
                .expect("body")
                .to_bytes();
            if retried {
                assert_eq!(status, None, "{id}");
                assert_eq!(text, format!("attempt=2 hash={hash:x}"), "{id}");
            } else {
                assert_eq!(
                    status.as_ref().map(|v| v.as_bytes()),
                    Some(&b"14"[..]),
                    "{id}"
                );
            }
            assert_eq!(
                log.count(&format!("flaky-attempt {id}")),
                if retried { 2 } else { 1 },
                "{id}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// No head-of-line blocking
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_does_not_block_the_others_on_its_connection() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mesh = Mesh::start("h2s-hol", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let mut client = connect(entry).await;
        // A stream whose backend never answers...
        let stalled_id = format!("hol {hops}");
        let mut c = client.clone();
        let stalled_path = format!("/stall/{stalled_id}").replace(' ', "-");
        let stalled = tokio::spawn(async move {
            c.send_request(request("world", &stalled_path, full("")))
                .await
        });
        log.wait(&format!(
            "stall-start {} grpc-timeout=-",
            stalled_id.replace(' ', "-")
        ))
        .await;
        // ...and a 10 MiB response nobody reads: its window fills and stays full.
        let unread = send(
            &mut client,
            request("world", &format!("/big/{}", 10 * MIB), full("")),
        )
        .await;
        assert_eq!(unread.status(), StatusCode::OK);

        // Meanwhile 100 streams of 128 KiB each (twice the default window) complete.
        let mut tasks = Vec::new();
        for i in 0..100 {
            let mut c = client.clone();
            tasks.push(tokio::spawn(async move {
                let rsp = send(&mut c, request("world", "/big/131072", full(""))).await;
                assert_eq!(rsp.status(), StatusCode::OK, "stream {i}");
                let body = rsp.into_body().collect().await.expect("body").to_bytes();
                let mut check = PatternCheck::default();
                check.feed(&body);
                assert_eq!(check.offset, 131_072, "stream {i}");
            }));
        }
        for t in tasks {
            within(&format!("the other streams ({hops})"), t)
                .await
                .expect("stream");
        }
        assert!(!stalled.is_finished(), "the stalled stream got an answer");

        // The unread stream was only paused: all of it is still there.
        let mut body = unread.into_body();
        let mut check = PatternCheck::default();
        within("the unread 10 MiB", async {
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.expect("big stream").into_data() {
                    check.feed(&data);
                }
            }
        })
        .await;
        assert_eq!(check.offset, 10 * MIB, "{hops}");
        stalled.abort();
        log.wait(&format!("stall-cancel {}", stalled_id.replace(' ', "-")))
            .await;
    }
}

// ---------------------------------------------------------------------------------------
// Cancellation, both ways
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancel_resets_the_stream_upstream() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mesh = Mesh::start("h2s-cancel", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let tag = hops.replace(' ', "-");
        let mut client = connect(entry).await;

        // Before the response: the client drops the call while the backend thinks.
        let mut c = client.clone();
        let path = format!("/stall/{tag}");
        let call =
            tokio::spawn(async move { c.send_request(request("world", &path, full(""))).await });
        log.wait(&format!("stall-start {tag} grpc-timeout=-")).await;
        call.abort();
        log.wait(&format!("stall-cancel {tag}")).await;

        // During the response: the client stops reading a server stream and drops it.
        let rsp = send(
            &mut client,
            request("world", &format!("/forever/{tag}"), full("")),
        )
        .await;
        let mut body = rsp.into_body();
        for _ in 0..2 {
            let frame = within("server stream data", body.frame())
                .await
                .expect("a frame")
                .expect("data");
            assert!(frame.is_data());
        }
        drop(body);
        log.wait(&format!("sender-error {tag}")).await;

        // During the request: the client gives up on a client stream it is still sending.
        let (mut tx, req_body) = channel_body(1);
        let mut c = client.clone();
        let path = format!("/count/{tag}");
        let call =
            tokio::spawn(async move { c.send_request(request("world", &path, req_body)).await });
        tx.send(Ok(Frame::data(grpc_message(b"first"))))
            .await
            .expect("request body open");
        log.wait(&format!("upload-bytes {tag}")).await;
        call.abort();
        let _ = call.await;
        log.wait(&format!("upload-error {tag}")).await;
        assert!(
            !log.has(&format!("upload-end {tag}")),
            "a cancelled upload looked complete to the backend"
        );
        drop(tx);

        // The connection is still good for new streams.
        let rsp = send(&mut client, request("world", "/ok", full(""))).await;
        assert_eq!(rsp.status(), StatusCode::OK);
    }
}

/// Reads a stream that delivers `partial`, then tells the backend to fail it: the client
/// must see an error, neither a clean end nor a hang.
async fn partial_then_error(log: &Log, client: &mut Client, kind: &str, tag: &str) {
    let rsp = send(
        client,
        request("world", &format!("/{kind}/{tag}"), full("")),
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let mut body = rsp.into_body();
    let first = within("the first chunk", body.frame())
        .await
        .expect("a frame")
        .expect("data")
        .into_data()
        .expect("data");
    assert_eq!(first, "partial");
    log.record(format!("go {tag}"));
    let mut seen = Vec::new();
    let end = within(&format!("the {kind} to reach the client ({tag})"), async {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => seen.push(frame),
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await;
    let error = end.unwrap_or_else(|| panic!("{kind}: the stream ended cleanly after {seen:?}"));
    assert!(seen.is_empty(), "{kind}: {seen:?}");
    // hyper names the HTTP/2 error in the error's sources.
    let mut why = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        why = format!("{why}: {e}");
        source = e.source();
    }
    assert!(why.contains("stream error received"), "{kind}: {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_or_crash_reaches_the_client_as_a_stream_error() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mesh = Mesh::start("h2s-upstream-reset", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let tag = hops.replace(' ', "-");
        let mut client = connect(entry).await;

        // The backend resets the stream mid-response.
        partial_then_error(&log, &mut client, "reset", &format!("reset-{tag}")).await;
        // The backend's connection dies mid-response (as when its process crashes).
        partial_then_error(&log, &mut client, "die", &format!("die-{tag}")).await;

        // A reset before any response is an error response, with Plexus's reason.
        let rsp = send(
            &mut client,
            request("world", &format!("/refuse/{tag}"), full("")),
        )
        .await;
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY, "{hops}");
        assert!(rsp.headers().contains_key("l5d-err"), "{:?}", rsp.headers());
        assert_grpc_unavailable(rsp, "stream error received").await;

        // Plexus connects to the backend again: the same client connection still works.
        let rsp = send(&mut client, request("world", "/ok", full(""))).await;
        assert_eq!(rsp.status(), StatusCode::OK, "{hops}");
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, "ok");
    }
}

/// A Plexus error answering a gRPC request: `grpc-status` UNAVAILABLE and the reason in
/// `grpc-message` in the headers ("trailers-only"), and no body for a client to misread.
async fn assert_grpc_unavailable(rsp: Response<Incoming>, reason: &str) {
    let headers = rsp.headers().clone();
    assert_eq!(headers["grpc-status"], "14", "{headers:?}");
    assert_eq!(headers["content-type"], "application/grpc", "{headers:?}");
    let message = headers["grpc-message"].to_str().expect("ascii");
    let message = percent_encoding::percent_decode_str(message).decode_utf8_lossy();
    assert!(message.contains(reason), "{message}");
    let body = within("the error body", rsp.into_body().collect())
        .await
        .expect("body");
    assert!(body.to_bytes().is_empty());
}

/// A backend on the `h2` crate, for what hyper cannot show: hyper's server resets only
/// with `INTERNAL_ERROR`, and hyper's client takes a `NO_ERROR` reset for a clean end.
/// It counts the connections it accepts; `/cancel/<id>` and `/no-error/<id>` send
/// `partial`, wait for the test's `cut` notice, then reset the stream with `CANCEL` or
/// `NO_ERROR`; `/refuse-once/<id>` refuses its first stream for an id with
/// `REFUSED_STREAM` before answering, and answers later ones; a CONNECT is answered
/// `200` and echoes what it receives until its end; anything else answers `ok`.
/// `attempts` counts the streams opened per path.
struct H2Backend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    cut: Arc<Notify>,
    attempts: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

impl H2Backend {
    fn attempts(&self, path: &str) -> usize {
        let attempts = self.attempts.lock().expect("attempts");
        attempts.get(path).copied().unwrap_or(0)
    }
}

async fn h2_backend() -> H2Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (connections, cut) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let attempts = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let (count, notice, seen) = (connections.clone(), cut.clone(), attempts.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (notice, seen) = (notice.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let notice = notice.clone();
                    let attempt = {
                        let mut seen = seen.lock().expect("attempts");
                        let n = seen.entry(req.uri().path().to_owned()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    tokio::spawn(async move {
                        if req.method() == http::Method::CONNECT {
                            echo_tunnel(req, respond).await;
                            return;
                        }
                        let path = req.uri().path();
                        if path.starts_with("/refuse-once/") && attempt == 1 {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            return;
                        }
                        let reset = if path.starts_with("/cancel/") {
                            Some(h2::Reason::CANCEL)
                        } else if path.starts_with("/no-error/") {
                            Some(h2::Reason::NO_ERROR)
                        } else {
                            None
                        };
                        let Ok(mut stream) = respond.send_response(Response::new(()), false) else {
                            return;
                        };
                        let Some(reason) = reset else {
                            let _ = stream.send_data(Bytes::from_static(b"ok"), true);
                            return;
                        };
                        let _ = stream.send_data(Bytes::from_static(b"partial"), false);
                        notice.notified().await;
                        stream.send_reset(reason);
                    });
                }
            });
        }
    });
    H2Backend {
        addr,
        connections,
        cut,
        attempts,
    }
}

/// A request on an `h2` crate client, which reports every reset as an error.
/// Answers a CONNECT with `200`, then sends back each chunk as it comes, and ends when
/// the client does. Only a target, no scheme or path, is a valid CONNECT (RFC 9113,
/// section 8.5): `h2` refuses anything else before it gets here.
async fn echo_tunnel(req: Request<h2::RecvStream>, mut respond: h2::server::SendResponse<Bytes>) {
    let Ok(mut down) = respond.send_response(Response::new(()), false) else {
        return;
    };
    let mut up = req.into_body();
    while let Some(Ok(chunk)) = up.data().await {
        let _ = up.flow_control().release_capacity(chunk.len());
        if down.send_data(chunk, false).is_err() {
            return;
        }
    }
    let _ = down.send_data(Bytes::new(), true);
}

async fn h2_call(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> Response<h2::RecvStream> {
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://world{path}"))
        .body(())
        .expect("request");
    h2_send(client, req).await
}

/// Sends `req` (without a body) on an `h2` crate client and waits for its head.
async fn h2_send(
    client: &h2::client::SendRequest<Bytes>,
    req: Request<()>,
) -> Response<h2::RecvStream> {
    let (response, _) = h2_open(client, req, true).await;
    within("response headers", response)
        .await
        .expect("response")
}

/// Opens a stream for `req` on an `h2` crate client (`end`: the head ends it): the
/// response to wait for, and the way to send the body.
async fn h2_open(
    client: &h2::client::SendRequest<Bytes>,
    req: Request<()>,
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut ready = within("the h2 client to be ready", client.clone().ready())
        .await
        .expect("connection open");
    ready.send_request(req, end).expect("stream opened")
}

/// The whole body of an `h2` crate response.
async fn h2_body(rsp: Response<h2::RecvStream>) -> BytesMut {
    let mut body = BytesMut::new();
    let mut recv = rsp.into_body();
    while let Some(chunk) = within("the body", recv.data()).await {
        body.extend_from_slice(&chunk.expect("data"));
    }
    body
}

async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(conn);
    client
}

/// A CONNECT stream is a tunnel: it reaches the endpoint with only its target (no
/// `:scheme` or `:path`, which an HTTP/2 server refuses in a CONNECT), and each chunk
/// goes through as it comes, both ways, through one hop and two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_chunks_both_ways_through_one_hop_and_two() {
    let backend = h2_backend().await;
    let mesh = Mesh::start("h2s-connect", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let client = h2_connect(entry).await;
        let req = Request::builder()
            .method("CONNECT")
            .uri("world")
            .body(())
            .expect("request");
        let (response, mut up) = h2_open(&client, req, false).await;
        let rsp = within("the tunnel", response).await.expect("response");
        assert_eq!(rsp.status(), StatusCode::OK, "{hops}: {:?}", rsp.headers());
        let mut down = rsp.into_body();
        // Each chunk comes back before the next is sent: nothing waits for the end.
        for chunk in ["ping", "pong", "done"] {
            up.send_data(Bytes::from(chunk), false).expect("sent");
            let echoed = within("the echo", down.data())
                .await
                .expect("a chunk")
                .expect("data");
            let _ = down.flow_control().release_capacity(echoed.len());
            assert_eq!(echoed, chunk, "{hops}");
        }
        up.send_data(Bytes::new(), true).expect("ended");
        while let Some(rest) = within("the tunnel's end", down.data()).await {
            assert!(rest.expect("data").is_empty(), "{hops}");
        }
    }
}

/// A client that asks to be told to go on (`expect: 100-continue`) gets `100 Continue`
/// from the router before it sends its body, through one hop and two, then its answer.
/// The router reads the body itself and does not forward `Expect`, so it answers for the
/// endpoint; without it such a client waits for its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_expecting_100_continue_is_told_to_go_on() {
    let backend = backend().await;
    let mesh = Mesh::start("h2s-expect", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let client = h2_connect(entry).await;
        let req = Request::builder()
            .method("POST")
            .uri(format!(
                "http://world/echo/expect-{}",
                hops.replace(' ', "-")
            ))
            .header("expect", "100-continue")
            .header("content-length", "5")
            .body(())
            .expect("request");
        let (mut response, mut up) = h2_open(&client, req, false).await;
        let go_on = within(
            "100 Continue",
            std::future::poll_fn(|cx| response.poll_informational(cx)),
        )
        .await
        .expect("an interim response")
        .expect("no error");
        assert_eq!(go_on.status(), StatusCode::CONTINUE, "{hops}");
        up.send_data(Bytes::from_static(b"hello"), true)
            .expect("body sent");
        let rsp = within("the answer", response).await.expect("response");
        assert_eq!(rsp.status(), StatusCode::OK, "{hops}");
        assert_eq!(h2_body(rsp).await, "hello", "{hops}");
    }
}

/// A backend's reset mid-response reaches the client as a reset: `CANCEL` as
/// `CANCEL`, and `NO_ERROR` (which would tell the client the body was whole) as
/// `INTERNAL_ERROR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_mid_response_reaches_the_client_with_its_reason() {
    let backend = h2_backend().await;
    let mesh = Mesh::start("h2s-upstream-reasons", backend.addr, None);
    for (hops, entry) in mesh.entries() {
        let mut client = h2_connect(entry).await;
        for (kind, expected) in [
            ("cancel", h2::Reason::CANCEL),
            ("no-error", h2::Reason::INTERNAL_ERROR),
        ] {
            let path = format!("/{kind}/{}", hops.replace(' ', "-"));
            let rsp = h2_call(&mut client, &path).await;
            assert_eq!(rsp.status(), StatusCode::OK, "{hops} {kind}");
            let mut body = rsp.into_body();
            let first = within("the first chunk", body.data())
                .await
                .expect("a chunk")
                .expect("data");
            assert_eq!(first, "partial", "{hops} {kind}");
            backend.cut.notify_one();
            let error = match within("the reset to reach the client", body.data()).await {
                Some(Err(e)) => e,
                other => panic!("{hops} {kind}: a response cut short ended with {other:?}"),
            };
            assert_eq!(error.reason(), Some(expected), "{hops} {kind}: {error}");
        }
    }
}

/// A stream the endpoint refuses (`REFUSED_STREAM`: it did not act on the call) is
/// requeued by the client whatever the classifier, through one hop and two. Without a
/// requeue budget the classifier decides: `io.l5d.h2.grpc.compliant` retries it, as
/// Linkerd's compliant classifier does, and `io.l5d.h2.grpc.default` does not, so the
/// gRPC client gets UNAVAILABLE, marked retryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_requeued_or_left_to_the_classifier() {
    let backend = h2_backend().await;
    let mesh = Mesh::start("h2s-refused", backend.addr, None);
    let [one, two] = mesh.entries();
    let cases = [
        (one, "grpc", true),
        (two, "grpc", true),
        (one, "compliant", true),
        (one, "strict", false),
    ];
    for ((hops, entry), service, answered) in cases {
        let client = h2_connect(entry).await;
        let tag = hops.replace(' ', "-");
        let path = format!("/refuse-once/{service}-{tag}");
        let req = Request::builder()
            .method("POST")
            .uri(format!("http://{service}{path}"))
            .header("content-type", "application/grpc")
            .body(())
            .expect("request");
        let rsp = h2_send(&client, req).await;
        if answered {
            assert_eq!(rsp.status(), StatusCode::OK, "{hops} {service}");
            let mut body = rsp.into_body();
            let data = within("the answer", body.data())
                .await
                .expect("a chunk")
                .expect("data");
            assert_eq!(data, "ok", "{hops} {service}");
        } else {
            assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY, "{hops} {service}");
            let headers = rsp.headers();
            assert_eq!(
                headers["grpc-status"], "14",
                "{hops} {service}: {headers:?}"
            );
            let err = headers["l5d-err"].to_str().expect("ascii");
            assert!(err.contains("refused"), "{err}");
            assert_eq!(headers["l5d-retryable"], "true", "{headers:?}");
        }
        assert_eq!(
            backend.attempts(&path),
            if answered { 2 } else { 1 },
            "{hops} {service}"
        );
    }
    // One refusal per case, on the inner router; the two `grpc` ones were requeued, and
    // nothing else was.
    let text = scrape_until(mesh.admin, |t| {
        prom_sum(t, "rt:client:failures", "inner", Some("RefusedStream")) >= 4.0
    })
    .await;
    let refused = prom_sum(&text, "rt:client:failures", "inner", Some("RefusedStream"));
    assert_eq!(refused, 4.0, "{text}");
    let requeues = prom_sum(&text, "rt:client:retries:requeues", "inner", None);
    assert_eq!(requeues, 2.0, "{text}");
}

/// An endpoint restarting gracefully sends `GOAWAY` with the last stream id it will
/// process, below the stream Plexus just opened: that stream was refused unprocessed, so
/// it is requeued on a new connection and the call answers, whatever its method and
/// classifier (`world` has the default, which retries nothing). A call with a message
/// is requeued with it (the backend echoes it back); one without, without. Each refusal
/// is counted as `RefusedStream`, and each requeue as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_refused_by_goaway_is_requeued_on_a_new_connection() {
    for (call, message) in [("empty", ""), ("message", "a message")] {
        let backend = going_away_backend().await;
        let mesh = Mesh::start(&format!("h2s-goaway-{call}"), backend.addr, None);
        let client = h2_connect(mesh.inner).await;
        let req = Request::builder()
            .method("POST")
            .uri("http://world/restarting")
            .header("content-type", "application/grpc")
            .body(())
            .expect("request");
        let (response, mut body) = h2_open(&client, req, message.is_empty()).await;
        if !message.is_empty() {
            body.send_data(Bytes::from(message), true)
                .expect("message sent");
        }
        let rsp = within("response headers", response)
            .await
            .expect("response");
        assert_eq!(rsp.status(), StatusCode::OK, "{call}: {:?}", rsp.headers());
        let expected = if message.is_empty() { "ok" } else { message };
        assert_eq!(h2_body(rsp).await, expected, "{call}");
        assert_eq!(backend.connections.load(Ordering::SeqCst), 2, "{call}");
        assert_eq!(backend.refused.load(Ordering::SeqCst), 1, "{call}");
        let text = scrape_until(mesh.admin, |t| {
            prom_sum(t, "rt:client:retries:requeues", "inner", None) >= 1.0
        })
        .await;
        let refused = prom_sum(&text, "rt:client:failures", "inner", Some("RefusedStream"));
        assert_eq!(refused, 1.0, "{call}: {text}");
        let requeues = prom_sum(&text, "rt:client:retries:requeues", "inner", None);
        assert_eq!(requeues, 1.0, "{call}: {text}");
    }
}

/// A backend whose first connection is going away: it takes the first stream opened on
/// it and, once the stream's request has ended, answers with `GOAWAY` (`NO_ERROR`)
/// naming the stream before it as the last it processes, then stays open until the
/// client closes. Later connections (on the `h2` crate) answer every stream with its
/// request body, or `ok` when it has none.
struct GoingAway {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Streams refused by the first connection's `GOAWAY`.
    refused: Arc<AtomicUsize>,
}

async fn going_away_backend() -> GoingAway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (connections, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (count, refusals) = (connections.clone(), refused.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::spawn(go_away_once(stream, refusals.clone()));
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        let mut echo = BytesMut::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            echo.extend_from_slice(&chunk);
                        }
                        if echo.is_empty() {
                            echo.extend_from_slice(b"ok");
                        }
                        if let Ok(mut stream) = respond.send_response(Response::new(()), false) {
                            let _ = stream.send_data(echo.freeze(), true);
                        }
                    });
                }
            });
        }
    });
    GoingAway {
        addr,
        connections,
        refused,
    }
}

/// The going-away side of [`going_away_backend`], in raw frames: `h2`'s server cannot
/// name a last stream below one it has read.
async fn go_away_once(stream: tokio::net::TcpStream, refusals: Arc<AtomicUsize>) {
    let Some(mut conn) = raw::Conn::accept(stream).await else {
        return;
    };
    let mut refused = false;
    while let Some(frame) = conn.next().await {
        let ends =
            matches!(frame.kind, raw::HEADERS | raw::DATA) && frame.flags & raw::END_STREAM != 0;
        if ends && !refused {
            refused = true;
            refusals.fetch_add(1, Ordering::SeqCst);
            conn.go_away(frame.stream.saturating_sub(2), 0).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_to_a_new_endpoint_makes_one_connection() {
    let backend = h2_backend().await;
    let mesh = Mesh::start("h2s-one-connection", backend.addr, None);
    let client = h2_connect(mesh.inner).await;
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let rsp = h2_call(&mut client, "/ok").await;
                let status = rsp.status();
                let mut body = rsp.into_body();
                let mut text = Vec::new();
                while let Some(chunk) = within("the body", body.data()).await {
                    text.extend_from_slice(&chunk.expect("data"));
                }
                (status, text)
            })
        })
        .collect();
    for call in calls {
        let (status, text) = call.await.expect("call");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(text, b"ok");
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_end_calls_to_a_slow_backend_and_reset_them_upstream() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mesh = Mesh::start("h2s-deadline", backend.addr, None);
    let hello_client = tokio::task::block_in_place(|| example_bin("helloworld-client"));
    let mut calls = 0;
    for (hops, entry) in mesh.entries() {
        let tag = hops.replace(' ', "-");
        let mut client = connect(entry).await;

        // A gRPC call with a 300 ms deadline: `grpc-timeout` reaches the backend
        // unchanged, the client gives up at its deadline, and its reset reaches the
        // backend.
        let mut req = request("world", &format!("/stall/dl-{tag}"), full(""));
        req.headers_mut()
            .insert("grpc-timeout", HeaderValue::from_static("300m"));
        let deadline = tokio::time::timeout(Duration::from_millis(300), client.send_request(req));
        assert!(deadline.await.is_err(), "the slow backend answered");
        log.wait(&format!("stall-start dl-{tag} grpc-timeout=300m"))
            .await;
        log.wait(&format!("stall-cancel dl-{tag}")).await;

        // The same with a real gRPC client (tonic) and its own timeout.
        let out = tokio::task::block_in_place(|| {
            Command::new(&hello_client)
                .args(["-authority", "world", "-timeout", "500ms"])
                .arg(entry.to_string())
                .output()
                .expect("helloworld-client runs")
        });
        calls += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("no answer within 500ms"), "{stderr}");
        log.wait_n("stall-cancel Greeting", calls).await;

        // `totalTimeoutMs: 300` on the service: Plexus answers 503 with its reason, as a
        // gRPC status for this gRPC request, and resets the call it gave up on.
        let rsp = send(
            &mut client,
            request("slow", &format!("/stall/total-{tag}"), full("")),
        )
        .await;
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE, "{hops}");
        let err = rsp.headers()["l5d-err"].to_str().expect("ascii").to_owned();
        assert!(err.contains("exceeded+300+ms"), "{err}");
        assert_grpc_unavailable(rsp, "exceeded 300 ms").await;
        log.wait(&format!("stall-cancel total-{tag}")).await;

        // A gRPC client sees that 503 as UNAVAILABLE.
        let out = tokio::task::block_in_place(|| {
            Command::new(&hello_client)
                .args(["-authority", "slow", "-timeout", "60s"])
                .arg(entry.to_string())
                .output()
                .expect("helloworld-client runs")
        });
        calls += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("Unavailable (14)"), "{stderr}");
        log.wait_n("stall-cancel Greeting", calls).await;
    }
}

// ---------------------------------------------------------------------------------------
// gRPC statuses in the trailers
// ---------------------------------------------------------------------------------------

/// The sum of the Prometheus series `name` of router `rt` over its scopes (services or
/// clients), restricted to those with `exception` (`None`: those without the label).
fn prom_sum(text: &str, name: &str, rt: &str, exception: Option<&str>) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((metric, labels)) = series.split_once('{') else {
            continue;
        };
        if metric != name {
            continue;
        }
        let labels: std::collections::BTreeMap<&str, &str> = labels
            .trim_end_matches('}')
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        if labels.get("rt") == Some(&rt) && labels.get("exception").copied() == exception {
            sum += value.parse::<f64>().expect("a number");
        }
    }
    sum
}

/// Scrapes `admin` until `settled` holds for the Prometheus text (bounded), and returns
/// the last text read.
async fn scrape_until(admin: SocketAddr, settled: impl Fn(&str) -> bool) -> String {
    let url = format!("http://{admin}/admin/metrics/prometheus");
    let mut text = String::new();
    let done = tokio::time::timeout(PATIENCE, async {
        loop {
            text = tokio::task::block_in_place(|| support::curl(&["-sS", &url]).body);
            if settled(&text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the metrics never settled:\n{text}");
    text
}

/// A gRPC server stream ends with its status in the trailers, after its messages. The
/// client gets the messages and then the status, unchanged. Each router on the way counts
/// the call when its stream ends, as the gRPC classifier judges that status: UNAVAILABLE
/// is a failure of the service and of the client, OK a success, and a client that goes
/// away mid-stream a failure (`CancelledRequestException`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_in_the_trailers_are_counted_when_the_stream_ends() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mesh = Mesh::start("h2s-grpc-trailers", backend.addr, None);
    let hello_client = tokio::task::block_in_place(|| example_bin("helloworld-client"));
    for (hops, entry) in mesh.entries() {
        let tag = hops.replace(' ', "-");
        let mut client = connect(entry).await;
        for (kind, code) in [("stream-fail", "14"), ("stream-ok", "0")] {
            let path = format!("/{kind}/{tag}");
            let rsp = send(&mut client, request("grpc", &path, full(""))).await;
            assert_eq!(rsp.status(), StatusCode::OK, "{hops} {kind}");
            // The head cannot tell yet: its verdict is the one sent.
            assert!(!rsp.headers().contains_key("grpc-status"), "{hops} {kind}");
            assert_eq!(rsp.headers()["l5d-success-class"], "1.0", "{hops} {kind}");
            let mut body = rsp.into_body();
            let mut buf = BytesMut::new();
            for i in 1..=2 {
                let message = within("a message", read_message(&mut body, &mut buf)).await;
                assert_eq!(message, format!("message {i}").as_bytes(), "{hops} {kind}");
            }
            let rest = within("the trailers", body.collect())
                .await
                .expect("a clean end");
            let trailers = rest.trailers().cloned().expect("trailers");
            assert_eq!(trailers["grpc-status"], code, "{hops} {kind}");
            if code == "14" {
                assert_eq!(trailers["grpc-message"], "the backend is going away");
            }
            assert!(
                buf.is_empty() && rest.to_bytes().is_empty(),
                "{hops} {kind}"
            );
        }

        // A real gRPC client (tonic) sees both greetings, then the status.
        let out = tokio::task::block_in_place(|| {
            Command::new(&hello_client)
                .args(["-streaming", "-authority", "grpc"])
                .arg(entry.to_string())
                .output()
                .expect("helloworld-client runs")
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{hops}: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .collect::<Vec<_>>(),
            ["greeting 1", "greeting 2"],
            "{hops}: {stderr}"
        );
        assert!(
            stderr
                .contains("failed after 2 greetings: Unavailable (14): the backend is going away"),
            "{hops}: {stderr}"
        );

        // A client that goes away mid-stream.
        let id = format!("cancel-{tag}");
        let rsp = send(
            &mut client,
            request("grpc", &format!("/forever/{id}"), full("")),
        )
        .await;
        let mut body = rsp.into_body();
        within("a first frame", body.frame())
            .await
            .expect("a frame")
            .expect("data");
        drop(body);
        log.wait(&format!("sender-error {id}")).await;
    }

    // Per router: its calls (`inner` saw both passes, `outer` the second) are all counted,
    // each once, in `success` or `failures`: UNAVAILABLE twice (ours and tonic's) and the
    // cancelled call fail; the OK stream succeeds.
    let expected = [("inner", 8.0, 2.0), ("outer", 4.0, 1.0)];
    let text = scrape_until(mesh.admin, |text| {
        expected.iter().all(|(rt, requests, _)| {
            ["service", "client"].iter().all(|scope| {
                let n = |leaf: &str| prom_sum(text, &format!("rt:{scope}:{leaf}"), rt, None);
                n("requests") == *requests && n("success") + n("failures") == *requests
            })
        })
    })
    .await;
    for (rt, requests, passes) in expected {
        for scope in ["service", "client"] {
            let n = |leaf: &str, exception: Option<&str>| {
                prom_sum(&text, &format!("rt:{scope}:{leaf}"), rt, exception)
            };
            let what = format!("{rt} {scope}s:\n{text}");
            assert_eq!(n("success", None), passes, "{what}");
            assert_eq!(n("failures", None), 3.0 * passes, "{what}");
            assert_eq!(
                n("failures", Some("CancelledRequestException")),
                passes,
                "{what}"
            );
            assert_eq!(n("pending", None), 0.0, "{what}");
            assert_eq!(n("status:200", None), requests, "{what}");
        }
    }

    // Failure accrual hears the same verdict: five calls in a row failing in their
    // trailers eject the endpoint (`io.l5d.consecutiveFailures`, the default).
    let mut client = connect(mesh.inner).await;
    for i in 0..5 {
        let rsp = send(
            &mut client,
            request("grpc", &format!("/stream-fail/accrual-{i}"), full("")),
        )
        .await;
        let rest = within("the stream", rsp.into_body().collect())
            .await
            .expect("a clean end");
        assert_eq!(rest.trailers().expect("trailers")["grpc-status"], "14");
    }
    scrape_until(mesh.admin, |text| {
        prom_sum(text, "rt:client:failure_accrual:removals", "inner", None) >= 1.0
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Many concurrent streams
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_thousands_of_concurrent_streams_without_a_failure() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mesh = Mesh::start("h2s-h2load", backend.addr, None);
    for ((hops, entry), n) in mesh.entries().into_iter().zip([20_000u64, 10_000]) {
        let before = log.requests.load(Ordering::SeqCst) as u64;
        // 4 connections of 250 concurrent streams each (the router allows 1000).
        let child = tokio::process::Command::new("h2load")
            .args(["-n", &n.to_string(), "-c", "4", "-m", "250"])
            .args(["-H", ":authority: world"])
            .arg(format!("http://{entry}/load"))
            .kill_on_drop(true)
            .output();
        let out = within(&format!("h2load ({hops})"), child)
            .await
            .expect("h2load runs (install nghttp2-client)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let s = h2load_summary(&text);
        let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no {k:?} in:\n{text}"));
        assert_eq!(get("total"), n, "{text}");
        assert_eq!(get("succeeded"), n, "{text}");
        assert_eq!(get("2xx"), n, "{text}");
        assert_eq!(get("failed"), 0, "{text}");
        assert_eq!(get("errored"), 0, "{text}");
        assert_eq!(get("timeout"), 0, "{text}");
        // Each request reached the backend once.
        assert_eq!(log.requests.load(Ordering::SeqCst) as u64 - before, n);
    }
}

/// A minimal HTTP/2 client speaking raw frames, to see what a server puts on the wire:
/// its SETTINGS, RST_STREAM and GOAWAY frames, which libraries handle out of sight.
mod raw {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub(super) const DATA: u8 = 0;
    pub(super) const HEADERS: u8 = 1;
    pub(super) const RST_STREAM: u8 = 3;
    pub(super) const SETTINGS: u8 = 4;
    pub(super) const PING: u8 = 6;
    pub(super) const GOAWAY: u8 = 7;
    const WINDOW_UPDATE: u8 = 8;
    pub(super) const END_STREAM: u8 = 0x1;
    const ACK: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    pub(super) const REFUSED_STREAM: u32 = 0x7;
    pub(super) const CANCEL: u32 = 0x8;
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub(super) struct Frame {
        pub(super) kind: u8,
        pub(super) flags: u8,
        pub(super) stream: u32,
        pub(super) payload: Vec<u8>,
    }

    impl Frame {
        fn u32_at(&self, at: usize) -> u32 {
            self.payload
                .get(at..at + 4)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }

        /// RST_STREAM's error code.
        pub(super) fn error_code(&self) -> u32 {
            self.u32_at(0)
        }

        /// GOAWAY's last stream id.
        pub(super) fn last_stream(&self) -> u32 {
            self.u32_at(0) & 0x7fff_ffff
        }
    }

    pub(super) struct Conn {
        io: TcpStream,
        /// The server's SETTINGS_MAX_CONCURRENT_STREAMS, once its SETTINGS arrived.
        pub(super) max_streams: Option<u32>,
    }

    impl Conn {
        pub(super) async fn connect(addr: SocketAddr) -> Conn {
            let mut io = TcpStream::connect(addr).await.expect("connect");
            io.write_all(PREFACE).await.expect("preface");
            let mut conn = Conn {
                io,
                max_streams: None,
            };
            conn.write(SETTINGS, 0, 0, &[]).await;
            conn
        }

        async fn write(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
            let len = payload.len() as u32;
            let mut frame = len.to_be_bytes()[1..].to_vec();
            frame.extend_from_slice(&[kind, flags]);
            frame.extend_from_slice(&stream.to_be_bytes());
            frame.extend_from_slice(payload);
            self.io.write_all(&frame).await.expect("write frame");
        }

        /// Opens stream `id` with a GET of `path` at `authority`, without a body. The
        /// header block is HPACK literals without indexing, so no table is needed.
        pub(super) async fn get(&mut self, id: u32, authority: &str, path: &str) {
            self.open(id, "GET", authority, path, true).await;
        }

        /// Opens stream `id` with a POST whose body is still to come ([`Conn::data`]).
        pub(super) async fn post(&mut self, id: u32, authority: &str, path: &str) {
            self.open(id, "POST", authority, path, false).await;
        }

        async fn open(&mut self, id: u32, method: &str, authority: &str, path: &str, end: bool) {
            let mut block = Vec::new();
            for (name, value) in [
                (":method", method),
                (":scheme", "http"),
                (":authority", authority),
                (":path", path),
            ] {
                assert!(name.len() < 127 && value.len() < 127);
                block.push(0);
                block.push(name.len() as u8);
                block.extend_from_slice(name.as_bytes());
                block.push(value.len() as u8);
                block.extend_from_slice(value.as_bytes());
            }
            let end = if end { END_STREAM } else { 0 };
            self.write(HEADERS, END_HEADERS | end, id, &block).await;
        }

        /// Sends `bytes` on stream `id`, ending it.
        pub(super) async fn data(&mut self, id: u32, bytes: &[u8]) {
            self.write(DATA, END_STREAM, id, bytes).await;
        }

        /// Answers stream `id` with `:status: 200` (the static table's entry 8) and no end
        /// of stream: the body is still to come.
        pub(super) async fn respond_head(&mut self, id: u32) {
            self.write(HEADERS, END_HEADERS, id, &[0x88]).await;
        }

        /// Opens the connection's receive window by `increment` bytes, so that the
        /// server can send more than the first 64 KiB of DATA in all.
        pub(super) async fn open_window(&mut self, increment: u32) {
            self.write(WINDOW_UPDATE, 0, 0, &increment.to_be_bytes())
                .await;
        }

        /// The server side of a connection: reads the client's preface and sends empty
        /// SETTINGS. `None` if the preface is not HTTP/2's.
        pub(super) async fn accept(mut io: TcpStream) -> Option<Conn> {
            let mut preface = [0u8; PREFACE.len()];
            io.read_exact(&mut preface).await.ok()?;
            if preface != *PREFACE {
                return None;
            }
            let mut conn = Conn {
                io,
                max_streams: None,
            };
            conn.write(SETTINGS, 0, 0, &[]).await;
            Some(conn)
        }

        /// Sends GOAWAY with `last` as the last stream id processed, and `error_code`.
        pub(super) async fn go_away(&mut self, last: u32, error_code: u32) {
            let mut payload = last.to_be_bytes().to_vec();
            payload.extend_from_slice(&error_code.to_be_bytes());
            self.write(GOAWAY, 0, 0, &payload).await;
        }

        /// The next frame, or `None` once the peer closed the connection. SETTINGS and
        /// PING are acknowledged (and still returned).
        pub(super) async fn next(&mut self) -> Option<Frame> {
            let mut head = [0u8; 9];
            self.io.read_exact(&mut head).await.ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            self.io.read_exact(&mut payload).await.ok()?;
            let frame = Frame {
                kind: head[3],
                flags: head[4],
                stream,
                payload,
            };
            match frame.kind {
                SETTINGS if frame.flags & ACK == 0 => {
                    for setting in frame.payload.chunks_exact(6) {
                        if setting[..2] == [0, 3] {
                            self.max_streams = Some(u32::from_be_bytes([
                                setting[2], setting[3], setting[4], setting[5],
                            ]));
                        }
                    }
                    self.write(SETTINGS, ACK, 0, &[]).await;
                }
                PING if frame.flags & ACK == 0 => {
                    let payload = frame.payload.clone();
                    self.write(PING, ACK, 0, &payload).await;
                }
                _ => {}
            }
            Some(frame)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_per_connection_is_advertised_and_enforced() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mesh = Mesh::start("h2s-max-streams", backend.addr, Some(20));
    let mut conn = raw::Conn::connect(mesh.inner).await;
    within("the server's SETTINGS", async {
        while conn.max_streams.is_none() {
            conn.next().await.expect("connection open");
        }
    })
    .await;
    assert_eq!(conn.max_streams, Some(20));

    // 25 streams at once, each held by the backend: 20 go through, 5 are refused.
    let ids: Vec<u32> = (0..25).map(|i| 1 + 2 * i).collect();
    for id in &ids {
        conn.get(*id, "world", &format!("/hold/{id}")).await;
    }
    let mut refused = Vec::new();
    within("5 refused streams", async {
        while refused.len() < 5 {
            let frame = conn.next().await.expect("connection open");
            if frame.kind == raw::RST_STREAM {
                assert_eq!(frame.error_code(), raw::REFUSED_STREAM);
                refused.push(frame.stream);
            }
        }
    })
    .await;
    assert_eq!(refused, ids[20..].to_vec());
    eventually("20 requests held at the backend", || {
        log.held.load(Ordering::SeqCst) == 20
    })
    .await;

    // Released, exactly the 20 accepted streams answer.
    log.release.store(true, Ordering::SeqCst);
    let mut answered = Vec::new();
    within("the 20 answers", async {
        while answered.len() < 20 {
            let frame = conn.next().await.expect("connection open");
            if matches!(frame.kind, raw::DATA | raw::HEADERS) && frame.flags & raw::END_STREAM != 0
            {
                answered.push(frame.stream);
            }
            assert_ne!(frame.kind, raw::RST_STREAM, "stream {} reset", frame.stream);
        }
    })
    .await;
    answered.sort_unstable();
    assert_eq!(answered, ids[..20].to_vec());
    assert_eq!(log.requests.load(Ordering::SeqCst), 20);
    assert_eq!(log.held.load(Ordering::SeqCst), 20);
}

/// Runs Plexus with one router: `router` starts its block (`- protocol: ...` and any
/// keys), to which a dtab over an `io.l5d.fs` namer and a server are added; the namer
/// lists `services` (name, endpoint). Returns Plexus and the server's address.
fn one_router(name: &str, router: &str, services: &[(&str, SocketAddr)]) -> (Proc, SocketAddr) {
    let dir = scratch(name);
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    for (service, addr) in services {
        std::fs::write(
            disco.join(service),
            format!("{} {}\n", addr.ip(), addr.port()),
        )
        .expect("write");
    }
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        r#"admin:
  ip: 127.0.0.1
  port: {admin}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
routers:
{router}  dtab: /svc => /#/io.l5d.fs;
  servers:
  - port: {port}
"#,
        disco = disco.display()
    );
    let entry = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    let plexus =
        tokio::task::block_in_place(|| support::run_plexus(name, &dir, &config, entry, admin));
    (plexus, entry)
}

/// Plexus answers some requests before their bodies arrive (here: a service with no
/// endpoints, 502 at once) and resets the rest of each upload; DATA the client had
/// already sent then reaches streams Plexus has closed. RFC 9113 (section 5.4.2) says
/// to ignore such frames. The `h2` crate remembers only the last 50 streams it reset:
/// for older ones it answered each late frame with RST_STREAM `STREAM_CLOSED`, counted
/// as the client's error, and closed the connection after 1024 of them (GOAWAY
/// `ENHANCE_YOUR_CALM`), failing every call on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_data_on_streams_answered_early_is_ignored() {
    let backend = backend().await;
    let mesh = Mesh::start("h2s-late-data", backend.addr, None);
    late_data_is_ignored(mesh.inner, "world").await;
}

/// The same on an HTTP/1.1 router taking HTTP/2 from a Plexus peer (the upgraded hop:
/// prior knowledge in the clear), which is served by the same HTTP/2 server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_data_from_an_upgraded_peer_is_ignored() {
    let (_plexus, entry) = one_router("h2s-late-data-peer", "- protocol: http\n", &[]);
    // No service has endpoints here: the closing call is answered (502) too.
    late_data_is_ignored(entry, "nowhere").await;
}

/// Uploads to `nowhere` (a service without endpoints, answered at once) in batches on
/// one connection to `entry`, each batch's late DATA sent once the next batch has been
/// answered; then a call to `last` must still be answered, and nothing may have been
/// reset with `STREAM_CLOSED` or the connection closed on the way.
async fn late_data_is_ignored(entry: SocketAddr, last: &str) {
    // Streams opened at once, more than `h2` remembered; each batch's late DATA goes
    // out once the next batch has been answered.
    const BATCH: u32 = 64;
    const BATCHES: u32 = 20;
    let mut conn = raw::Conn::connect(entry).await;
    conn.open_window(1 << 30).await;
    let mut late: Vec<u32> = Vec::new();
    let mut next_id = 1;
    for batch in 0..BATCHES {
        let ids: Vec<u32> = (0..BATCH).map(|i| next_id + 2 * i).collect();
        next_id += 2 * BATCH;
        for id in &ids {
            conn.post(*id, "nowhere", "/upload").await;
        }
        let mut answered = 0;
        within(&format!("batch {batch} answered"), async {
            while answered < ids.len() {
                let frame = conn.next().await.expect("connection open");
                assert_ne!(
                    frame.kind,
                    raw::GOAWAY,
                    "GOAWAY in batch {batch}: {:?}",
                    String::from_utf8_lossy(&frame.payload)
                );
                if frame.kind == raw::RST_STREAM {
                    // NO_ERROR after a complete answer: "stop sending".
                    assert_eq!(
                        frame.error_code(),
                        0,
                        "stream {} in batch {batch}",
                        frame.stream
                    );
                }
                let end = frame.flags & raw::END_STREAM != 0;
                if ids.contains(&frame.stream)
                    && matches!(frame.kind, raw::HEADERS | raw::DATA)
                    && end
                {
                    answered += 1;
                }
            }
        })
        .await;
        for id in late.drain(..) {
            conn.data(id, b"late").await;
        }
        late = ids;
    }
    // Late frames ignored, the connection still serves.
    let id = next_id;
    conn.get(id, last, "/ok").await;
    within("an answer after the uploads", async {
        loop {
            let frame = conn.next().await.expect("connection open");
            assert_ne!(frame.kind, raw::GOAWAY);
            if frame.kind == raw::RST_STREAM {
                assert_eq!(frame.error_code(), 0, "stream {}", frame.stream);
            }
            if frame.stream == id && frame.kind == raw::HEADERS {
                return;
            }
        }
    })
    .await;
}

/// The same rule on Plexus's side as a client: it cancels calls upstream (here: the
/// client drops each response as its head arrives), and DATA the endpoint had already
/// sent then reaches streams Plexus has reset. A raw-frame endpoint sends such DATA one
/// batch behind; Plexus must neither reset those streams again (`STREAM_CLOSED`) nor
/// close the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_data_from_an_endpoint_on_cancelled_calls_is_ignored() {
    const BATCH: usize = 64;
    const BATCHES: usize = 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cancels = Arc::new(AtomicUsize::new(0));
    let complaints = Arc::new(Mutex::new(Vec::<String>::new()));
    let (seen, said) = (cancels.clone(), complaints.clone());
    tokio::spawn(async move {
        let Ok((io, _)) = listener.accept().await else {
            return;
        };
        let Some(mut conn) = raw::Conn::accept(io).await else {
            return;
        };
        let (mut cancelled, mut late) = (Vec::new(), Vec::new());
        while let Some(frame) = conn.next().await {
            match frame.kind {
                raw::HEADERS => conn.respond_head(frame.stream).await,
                raw::RST_STREAM if frame.error_code() == raw::CANCEL => {
                    cancelled.push(frame.stream);
                    seen.fetch_add(1, Ordering::SeqCst);
                    if cancelled.len() == BATCH {
                        for id in std::mem::replace(&mut late, std::mem::take(&mut cancelled)) {
                            conn.data(id, b"late").await;
                        }
                    }
                }
                raw::RST_STREAM | raw::GOAWAY => said.lock().unwrap().push(format!(
                    "frame {} on stream {}, code {}",
                    frame.kind,
                    frame.stream,
                    frame.error_code()
                )),
                _ => {}
            }
        }
    });
    let mesh = Mesh::start("h2s-late-endpoint", addr, None);
    let client = connect(mesh.inner).await;
    for batch in 0..BATCHES {
        let calls = (0..BATCH).map(|i| {
            let mut client = client.clone();
            async move {
                let path = format!("/cancel/{batch}-{i}");
                let rsp = send(&mut client, request("world", &path, full(""))).await;
                assert_eq!(rsp.status(), StatusCode::OK, "{path}");
                // Dropped with its body unread: the call is cancelled.
            }
        });
        futures::future::join_all(calls).await;
        let want = BATCH * (batch + 1);
        eventually(&format!("{want} cancels at the endpoint"), || {
            cancels.load(Ordering::SeqCst) == want
        })
        .await;
    }
    assert_eq!(*complaints.lock().unwrap(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Graceful drain
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shutdown_drains_h2_streams_with_goaway_and_exits_zero() {
    let backend = backend().await;
    let log = backend.log.clone();
    let mut mesh = Mesh::start("h2s-drain", backend.addr, None);
    let mut conn = raw::Conn::connect(mesh.inner).await;
    for id in [1, 3, 5] {
        conn.get(id, "world", &format!("/hold/{id}")).await;
    }
    eventually("3 requests held at the backend", || {
        log.held.load(Ordering::SeqCst) == 3
    })
    .await;

    let admin = format!("http://{}/admin/shutdown", mesh.admin);
    let rsp = tokio::task::block_in_place(|| support::curl(&["-X", "POST", &admin]));
    assert_eq!(rsp.status, 200, "{rsp:?}");

    // GOAWAY: first the graceful one (any stream), then the one naming the last stream
    // taken, which covers the three in flight.
    let last = within("GOAWAY naming the last stream", async {
        loop {
            let frame = conn.next().await.expect("connection open until drained");
            if frame.kind == raw::GOAWAY && frame.last_stream() != 0x7fff_ffff {
                return frame.last_stream();
            }
            assert_ne!(frame.kind, raw::RST_STREAM, "stream {} reset", frame.stream);
        }
    })
    .await;
    assert_eq!(last, 5);
    // New connections are refused, and a new stream on this one is not taken.
    eventually("the listener to close", || {
        std::net::TcpStream::connect_timeout(&mesh.inner, Duration::from_millis(200)).is_err()
    })
    .await;
    conn.get(7, "world", "/hold/7").await;

    // The streams in flight complete; then the connection closes.
    log.release.store(true, Ordering::SeqCst);
    let mut answered = Vec::new();
    within("the drained connection to close", async {
        while let Some(frame) = conn.next().await {
            if matches!(frame.kind, raw::DATA | raw::HEADERS) {
                assert_ne!(frame.stream, 7, "a stream after GOAWAY was served");
                if frame.flags & raw::END_STREAM != 0 {
                    answered.push(frame.stream);
                }
            }
            assert_ne!(frame.kind, raw::RST_STREAM, "stream {} reset", frame.stream);
        }
    })
    .await;
    answered.sort_unstable();
    assert_eq!(answered, vec![1, 3, 5]);
    assert_eq!(log.requests.load(Ordering::SeqCst), 3);
    let code = tokio::task::block_in_place(|| mesh.plexus.wait_exit());
    assert_eq!(code, Some(0), "{}", mesh.plexus.log_text());
}

/// An endpoint that takes two streams per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`
/// 2, as servers with a low limit advertise) gets six calls at once from one client
/// connection: Plexus opens another connection to it whenever those it has are full,
/// rather than making calls wait for others to finish. The endpoint answers none until
/// all six are in (a call queued behind another would never be answered) and counts
/// its connections: three, two streams each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_an_endpoints_stream_limit_go_on_another_connection() {
    const CALLS: usize = 6;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(tokio::sync::Barrier::new(CALLS));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let all_in = all_in.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let all_in = all_in.clone();
                    async move {
                        if req.uri().path() != "/warm" {
                            all_in.wait().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(2)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let mesh = Mesh::start("h2s-stream-limit", addr, None);
    let mut client = connect(mesh.inner).await;
    // One call first, so that Plexus's connection has heard the endpoint's limit.
    let rsp = send(&mut client, request("world", "/warm", full(""))).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    // Twice: the streams of the first round free their places when they end, so the
    // second finds room on the same three connections.
    for round in 0..2 {
        let calls = (0..CALLS).map(|i| {
            let mut client = client.clone();
            async move {
                let rsp = send(
                    &mut client,
                    request("world", &format!("/call/{i}"), full("")),
                )
                .await;
                assert_eq!(
                    rsp.status(),
                    StatusCode::OK,
                    "call {i}: {:?}",
                    rsp.headers()
                );
                let body = rsp.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(body, "ok", "call {i}");
            }
        });
        within(
            &format!("round {round}: six calls, two streams per connection"),
            futures::future::join_all(calls),
        )
        .await;
        assert_eq!(connections.load(Ordering::SeqCst), 3, "round {round}");
    }
}
