//! `protocol: h2` end to end: a real `plexus run` between an HTTP/2 client and an
//! HTTP/2 (h2c, prior knowledge) backend, both hyper, on loopback. Trailers, `te`,
//! `:authority` and `:path` identification, many concurrent streams on one connection,
//! and a stream reset reaching the other side.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Proc, free_port, listening, plexus_bin, scratch, wait_for};

type Body = BoxBody<Bytes, Infallible>;

/// An h2c backend: answers `<name> <method> <path> te=<te>` with trailers
/// `grpc-status: 0` and `x-backend: <name>`; `/big` answers 1 MiB.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let te = req
                        .headers()
                        .get("te")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned();
                    let text = if req.uri().path() == "/big" {
                        "x".repeat(1 << 20)
                    } else {
                        format!("{name} {} {} te={te}", req.method(), req.uri().path())
                    };
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    trailers.insert("x-backend", HeaderValue::from_static(name));
                    let frames = vec![
                        Ok::<_, Infallible>(Frame::data(Bytes::from(text))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    let body: Body = BodyExt::boxed(StreamBody::new(futures::stream::iter(frames)));
                    Ok::<_, Infallible>(Response::new(body))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Proxy {
    addr: SocketAddr,
    _plexus: Proc,
}

fn start_plexus(name: &str, backends: &[(&str, SocketAddr)], identifier: &str) -> Proxy {
    let dir = scratch(name);
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    for (file, addr) in backends {
        std::fs::write(disco.join(file), format!("{} {}\n", addr.ip(), addr.port()))
            .expect("write");
    }
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {admin}}}\n\
namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
routers:\n- protocol: h2\n  dtab: /svc => /#/io.l5d.fs;\n{identifier}  servers:\n  - port: {port}\n    maxConcurrentStreamsPerConnection: 500\n",
        disco = disco.display()
    );
    std::fs::write(dir.join("plexus.yaml"), config).expect("config");
    let plexus = Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(dir.join("plexus.yaml")),
        dir.join("plexus.log"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_for("plexus to serve h2", || listening(addr));
    Proxy {
        addr,
        _plexus: plexus,
    }
}

async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

fn get(authority: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://{authority}{path}"))
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_requests_route_by_authority_with_trailers_and_many_streams() {
    let world = backend("world").await;
    let proxy = start_plexus("h2-authority", &[("world", world)], "");
    let mut client = h2_client(proxy.addr).await;

    let rsp = client
        .send_request(get("world", "/helloworld.World/Greeting"))
        .await
        .expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    let collected = rsp.into_body().collect().await.expect("body");
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers reach the client");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert_eq!(
        trailers.get("x-backend").map(|v| v.as_bytes()),
        Some(&b"world"[..])
    );
    let body = String::from_utf8(collected.to_bytes().to_vec()).expect("utf8");
    assert_eq!(body, "world GET /helloworld.World/Greeting te=trailers");

    // An unknown authority is not routed (no such service).
    let rsp = client
        .send_request(get("nowhere", "/"))
        .await
        .expect("response");
    assert_eq!(rsp.status(), 502);

    // Hundreds of concurrent streams on the one client connection, and a body far larger
    // than the 64 KiB default window.
    let mut tasks = Vec::new();
    for i in 0..300 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.ready().await.expect("ready");
            let rsp = c
                .send_request(get("world", &format!("/n/{i}")))
                .await
                .expect("response");
            assert_eq!(rsp.status(), 200);
            let body = rsp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(body, Bytes::from(format!("world GET /n/{i} te=trailers")));
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("streams finish")
            .expect("stream task");
    }
    let rsp = client
        .send_request(get("world", "/big"))
        .await
        .expect("response");
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_style_paths_route_with_the_header_path_identifier() {
    let hello = backend("hello").await;
    let world = backend("world").await;
    let proxy = start_plexus(
        "h2-path",
        &[("helloworld.Hello", hello), ("helloworld.World", world)],
        "  identifier:\n    kind: io.l5d.header.path\n    segments: 1\n",
    );
    let mut client = h2_client(proxy.addr).await;
    for (service, expect) in [("helloworld.Hello", "hello"), ("helloworld.World", "world")] {
        let rsp = client
            .send_request(get("anything", &format!("/{service}/Greeting")))
            .await
            .expect("response");
        assert_eq!(rsp.status(), 200);
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        assert!(body.starts_with(expect.as_bytes()), "{body:?}");
    }
}

/// A connection's bytes as a server read them.
struct Recording {
    inner: tokio::net::TcpStream,
    read: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncRead for Recording {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let fresh = buf.filled()[before..].to_vec();
        self.read.lock().expect("log").extend_from_slice(&fresh);
        polled
    }
}

impl tokio::io::AsyncWrite for Recording {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The header blocks of the HEADERS frames in the bytes an HTTP/2 server read (after
/// the connection preface).
fn header_blocks(bytes: &[u8]) -> Vec<&[u8]> {
    let mut rest = bytes.get(24..).unwrap_or_default();
    let mut blocks = Vec::new();
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        let payload = rest.get(9..9 + len).unwrap_or_default();
        if kind == 1 {
            assert_eq!(flags & 0x28, 0, "no padding or priority in a HEADERS frame");
            blocks.push(payload);
        }
        rest = rest.get(9 + len..).unwrap_or_default();
    }
    blocks
}

/// How an HPACK header field is represented (RFC 7541, section 6), and whether its name
/// is a reference to the static or dynamic table rather than spelled out.
#[derive(Debug, PartialEq)]
enum Field {
    Indexed,
    Inserted { name_indexed: bool },
    NotIndexed { name_indexed: bool },
    NeverIndexed { name_indexed: bool },
    TableSizeUpdate,
}

/// The representations of a header block's fields, in order (strings are skipped, not
/// decoded).
fn hpack_fields(mut block: &[u8]) -> Vec<Field> {
    fn integer(b: &mut &[u8], prefix: u32) -> usize {
        let max = (1usize << prefix) - 1;
        let mut value = usize::from(b[0]) & max;
        *b = &b[1..];
        if value == max {
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                value += (usize::from(byte) & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        value
    }
    fn skip_string(b: &mut &[u8]) {
        let len = integer(b, 7);
        *b = &b[len..];
    }
    fn literal(b: &mut &[u8], prefix: u32) -> bool {
        let name_indexed = integer(b, prefix) != 0;
        if !name_indexed {
            skip_string(b);
        }
        skip_string(b);
        name_indexed
    }
    let mut fields = Vec::new();
    while let Some(&first) = block.first() {
        fields.push(if first & 0x80 != 0 {
            integer(&mut block, 7);
            Field::Indexed
        } else if first & 0x40 != 0 {
            Field::Inserted {
                name_indexed: literal(&mut block, 6),
            }
        } else if first & 0x20 != 0 {
            integer(&mut block, 5);
            Field::TableSizeUpdate
        } else if first & 0x10 != 0 {
            Field::NeverIndexed {
                name_indexed: literal(&mut block, 4),
            }
        } else {
            Field::NotIndexed {
                name_indexed: literal(&mut block, 4),
            }
        });
    }
    fields
}

/// The values new on every request (here `l5d-reqid`) are sent never-indexed: were they
/// added to the connection's HPACK table, each would push older entries out, and every
/// few dozen requests the `l5d-dst-*` headers, evicted, would be sent again in full.
/// Only the connection's first request lets its value in, which puts the name in the
/// table: every later one refers to the name instead of spelling it out. With that,
/// every request after the first has a header block of the same size, give or take the
/// Huffman coding of its random id, and inserts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_values_stay_out_of_the_hpack_table() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let backend = listener.local_addr().expect("addr");
    let recorded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = recorded.clone();
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let io = Recording {
            inner: stream,
            read: log,
        };
        let svc = service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(io), svc)
            .await;
    });
    let proxy = start_plexus("h2-hpack", &[("world", backend)], "");
    let mut client = h2_client(proxy.addr).await;
    for i in 0..200 {
        let rsp = client
            .send_request(get("world", "/greeting"))
            .await
            .expect("response");
        assert_eq!(rsp.status(), 200, "request {i}");
        rsp.into_body().collect().await.expect("body");
    }
    let recorded = recorded.lock().expect("log").clone();
    let blocks = header_blocks(&recorded);
    assert_eq!(blocks.len(), 200, "one HEADERS frame per request");
    let first = hpack_fields(blocks[0]);
    assert!(
        !first
            .iter()
            .any(|f| matches!(f, Field::NeverIndexed { .. })),
        "the first request lets its request id into the table: {first:?}"
    );
    for (i, block) in blocks.iter().enumerate().skip(1) {
        let fields = hpack_fields(block);
        let never: Vec<_> = fields
            .iter()
            .filter(|f| matches!(f, Field::NeverIndexed { .. }))
            .collect();
        assert_eq!(
            never,
            [&Field::NeverIndexed { name_indexed: true }],
            "request {i}: the request id, its name referred to: {fields:?}"
        );
        assert!(
            !fields.iter().any(|f| matches!(f, Field::Inserted { .. })),
            "request {i} inserts nothing into the table: {fields:?}"
        );
    }
    let steady: Vec<usize> = blocks[1..].iter().map(|b| b.len()).collect();
    let (min, max) = (
        steady.iter().min().expect("lengths"),
        steady.iter().max().expect("lengths"),
    );
    assert!(
        max - min <= 3,
        "header blocks of requests 2 to 200 range from {min} to {max} bytes: {steady:?}"
    );
}
