//! A programmable HTTP backend for end-to-end tests, on its own thread and runtime.
//!
//! `/echo` answers with the request head as text, `/sink` counts the body it receives,
//! `/big?bytes=N` streams N bytes, `/hold` answers only when the test releases it, and
//! an `Upgrade` request is switched and then echoes bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Shared state the test inspects and controls.
#[derive(Default)]
pub struct Control {
    /// Requests currently waiting in `/hold`.
    pub held: AtomicUsize,
    /// Set to let `/hold` requests answer.
    pub release: AtomicBool,
    /// Requests served.
    pub requests: AtomicUsize,
    /// Milliseconds every answer waits (0: none).
    pub latency_ms: std::sync::atomic::AtomicU64,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub control: Arc<Control>,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

/// Starts a backend on 127.0.0.1 (a free port) and returns once it listens.
pub fn start() -> Backend {
    start_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// Starts a backend on `ip` (a loopback address such as 127.0.2.10 for a pod of host 2),
/// on a free port, and returns once it listens.
pub fn start_on(ip: std::net::IpAddr) -> Backend {
    let control = Arc::new(Control::default());
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let c = control.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let c = c.clone();
                        async move { Ok::<_, Infallible>(serve(c, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
    });
    Backend { addr, control }
}

async fn serve(c: Arc<Control>, mut req: Request<Incoming>) -> Response<Body> {
    c.requests.fetch_add(1, Ordering::SeqCst);
    let latency = c.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    if req.headers().contains_key(http::header::UPGRADE) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(full(""))
            .expect("response");
    }
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/sink" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    n += data.len() as u64;
                }
            }
            Response::new(full(n.to_string()))
        }
        "/big" => {
            let bytes: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Response::new(BoxBody::new(BigBody {
                left: bytes,
                chunk: Bytes::from(vec![b'x'; 64 * 1024]),
            }))
        }
        "/hold" => {
            c.held.fetch_add(1, Ordering::SeqCst);
            while !c.release.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Response::new(full("released"))
        }
        _ => {
            let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
            for (k, v) in req.headers() {
                text.push_str(&format!(
                    "{}: {}\n",
                    k,
                    String::from_utf8_lossy(v.as_bytes())
                ));
            }
            Response::new(full(text))
        }
    }
}

/// `left` bytes of `x`, one 64 KiB frame at a time, produced as the reader asks.
struct BigBody {
    left: u64,
    chunk: Bytes,
}

impl http_body::Body for BigBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}
