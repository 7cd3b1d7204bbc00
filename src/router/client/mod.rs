//! Phase 7, the client: connections to endpoints, kept alive and reused.
//!
//! Each worker thread has its own connections per endpoint (no lock, no cross-thread
//! hop), like the worker model of nginx and Envoy. HTTP/1.1 connections are pooled: one
//! returns to the pool only when the response body has been read to the end, and a
//! request that a stale pooled connection could not send is retried once on a fresh
//! connection, since it certainly never left. HTTP/2 (h2 routers, and HTTP/1.1 between
//! Plexus peers) uses one multiplexed connection per endpoint and worker, replaced when
//! it closes; streams beyond the peer's concurrency limit wait for a free one (see
//! [`http2`]).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::{ErrorKind, ProxyError};
use super::policy::ClientTlsTarget;

pub(crate) mod http2;

/// Errors carried by proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A body as it travels through the proxy (single-threaded: bodies stay on their worker).
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Idle connections kept per endpoint and worker.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

type Sender = SendRequest<ProxyBody>;

/// Connections are kept per endpoint and TLS identity: plaintext, or TLS to a name.
type PoolKey = (SocketAddr, Option<Arc<str>>);

thread_local! {
    // Looked up on every request: foldhash (randomly seeded), not SipHash.
    static POOL: RefCell<foldhash::HashMap<PoolKey, Vec<Sender>>> =
        RefCell::new(foldhash::HashMap::default());
}

/// How to reach one endpoint: its address, the router's protocol, whether HTTP/1.1 may
/// ride HTTP/2 to a Plexus peer, and the client's TLS.
#[derive(Clone, Copy)]
pub struct Dial<'a> {
    /// The endpoint.
    pub addr: SocketAddr,
    /// The limit on making a connection (TCP and TLS handshakes each).
    pub connect_timeout: Duration,
    /// The router's HTTP version.
    pub version: crate::config::HttpVersion,
    /// `peerUpgrades: [h2]`.
    pub upgrade_h2: bool,
    /// `peerUpgrades: [tls]`: the client's TLS is used only with peers that accept it.
    pub negotiate_tls: bool,
    /// The client's `tls:`.
    pub tls: Option<&'a ClientTlsTarget>,
}

impl Dial<'_> {
    fn key(&self) -> PoolKey {
        let identity = self.tls.map(|t| {
            t.server_name
                .clone()
                .unwrap_or_else(|| Arc::from(self.addr.ip().to_string()))
        });
        (self.addr, identity)
    }
}

/// Either side of a connection: plaintext TCP or TLS over it.
pub(crate) trait Io:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// TCP, then TLS when the client has it (ALPN `h2` for HTTP/2 connections).
///
/// Boxed, as every connection set-up is: the TCP and TLS handshakes' state would
/// otherwise sit inline in the future of every request or call that might connect
/// (kilobytes that the runtime copies whenever it moves the task), for a path taken once
/// per connection.
pub(super) fn open<'a>(
    dial: &'a Dial<'_>,
    h2: bool,
) -> futures::future::LocalBoxFuture<'a, Result<Box<dyn Io>, ProxyError>> {
    Box::pin(open_unboxed(dial, h2))
}

async fn open_unboxed(dial: &Dial<'_>, h2: bool) -> Result<Box<dyn Io>, ProxyError> {
    let stream = tcp(dial.addr, dial.connect_timeout).await?;
    let Some(tls) = dial.tls else {
        return Ok(Box::new(stream));
    };
    if let Some(why) = &tls.error {
        return Err(connect_failed(dial.addr, format!("TLS: {why}")));
    }
    let config = if h2 { &tls.setup.h2 } else { &tls.setup.http1 };
    let name = tls
        .server_name
        .as_deref()
        .map_or_else(|| dial.addr.ip().to_string(), str::to_owned);
    match config.connect(&name, stream).await {
        Ok(s) => Ok(Box::new(s)),
        Err(e) => Err(ProxyError::new(
            ErrorKind::Connect,
            format!(
                "Unable to connect to {}: TLS handshake failed: {e}",
                dial.addr
            ),
        )),
    }
}

fn checkout(key: &PoolKey) -> Option<Sender> {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let idle = pool.get_mut(key)?;
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    })
}

fn checkin(key: PoolKey, sender: Sender) {
    // Not necessarily ready yet: the connection task may still be finishing the
    // response it just delivered. `send` waits for readiness when it checks it out.
    if sender.is_closed() {
        return;
    }
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let idle = pool.entry(key).or_default();
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(sender);
        }
    });
}

fn connect_failed(addr: SocketAddr, why: String) -> ProxyError {
    ProxyError::new(
        ErrorKind::Connect,
        format!("Unable to connect to {addr}: {why}"),
    )
}

async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(connect_failed(addr, e.to_string())),
        Err(_) => return Err(connect_failed(addr, format!("timed out after {timeout:?}"))),
    };
    crate::net::tune(&stream);
    Ok(stream)
}

async fn connect(dial: &Dial<'_>) -> Result<Sender, ProxyError> {
    let addr = dial.addr;
    let failed = |why: String| connect_failed(addr, why);
    let stream = open(dial, false).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake::<_, ProxyBody>(TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(endpoint = %addr, error = %e, "endpoint connection closed with an error");
        }
    });
    Ok(sender)
}

/// A request that could not be sent or answered; `unsent` gives the request back when
/// it certainly never left (the connection could not be made), so it can be requeued.
pub struct SendError {
    /// What went wrong.
    pub error: ProxyError,
    /// The request, if it was never sent.
    pub unsent: Option<Box<Request<ProxyBody>>>,
}

/// Sends `req` to `addr` in the router's HTTP version: HTTP/1.1 on a pooled or new
/// connection (the response body returns it to the pool when read to the end), or a
/// stream of the endpoint's HTTP/2 connection.
///
/// With `upgrade_h2`, HTTP/1.1 requests to an endpoint that is a Plexus peer ride an
/// HTTP/2 connection instead, after the negotiation described in [`super::peer`].
pub async fn send(
    dial: &Dial<'_>,
    req: Box<Request<ProxyBody>>,
) -> Result<Response<ProxyBody>, SendError> {
    match dial.version {
        crate::config::HttpVersion::H2 => http2::send(dial, req).await,
        crate::config::HttpVersion::Http1 if stays_http1(&req) => {
            // Never upgraded; plaintext unless the client's TLS is mandatory.
            let plain = Dial {
                tls: if dial.negotiate_tls { None } else { dial.tls },
                ..*dial
            };
            send_http1(&plain, req).await
        }
        crate::config::HttpVersion::Http1 if !dial.upgrade_h2 && !dial.negotiate_tls => {
            send_http1(dial, req).await
        }
        // Boxed: its state (an HTTP/1.1 and an HTTP/2 send) would otherwise make every
        // request's future larger, on h2 routers too, where it is never taken.
        crate::config::HttpVersion::Http1 => crate::router::boxed(|| send_to_peer(dial, req)).await,
    }
}

/// `Upgrade` and `CONNECT` requests never leave HTTP/1.1.
fn stays_http1(req: &Request<ProxyBody>) -> bool {
    req.method() == http::Method::CONNECT || req.headers().contains_key(http::header::UPGRADE)
}

/// An HTTP/1.1 request to an endpoint that may be a Plexus peer (see [`super::peer`]).
async fn send_to_peer(
    dial: &Dial<'_>,
    req: Box<Request<ProxyBody>>,
) -> Result<Response<ProxyBody>, SendError> {
    use super::peer::{self, PeerState, Upgrades};
    use plexus_http::headers as h;
    let addr = dial.addr;
    let offer = Upgrades {
        h2: dial.upgrade_h2,
        tls: dial.negotiate_tls && dial.tls.is_some(),
        mux: false,
    };
    // Before (or without) an upgrade: TLS only when the client's TLS is not negotiated.
    let plain = Dial {
        tls: if dial.negotiate_tls { None } else { dial.tls },
        ..*dial
    };
    let now = std::time::Instant::now();
    match peer::state(addr, now) {
        PeerState::Peer(accepted) => {
            let using = accepted.and(offer);
            let upgraded = Dial {
                tls: if using.tls { dial.tls } else { plain.tls },
                ..*dial
            };
            let sent = if using.h2 {
                let (mut parts, body) = req.into_parts();
                h::to_h2_request(&mut parts);
                http2::send(&upgraded, Box::new(Request::from_parts(parts, body))).await
            } else {
                send_http1(&upgraded, req).await
            };
            match sent {
                Err(SendError {
                    error,
                    unsent: Some(unsent),
                }) => {
                    // The upgraded connection could not be made: negotiate again, and
                    // give the request back as HTTP/1.1 so it can be requeued.
                    peer::learn(addr, PeerState::Unknown);
                    let (mut parts, body) = unsent.into_parts();
                    h::to_h1_request(&mut parts);
                    Err(SendError {
                        error,
                        unsent: Some(Box::new(Request::from_parts(parts, body))),
                    })
                }
                other => other,
            }
        }
        PeerState::Plain { .. } => send_http1(&plain, req).await,
        PeerState::Unknown => {
            let mut req = req;
            if let Some(value) = offer.header() {
                req.headers_mut()
                    .insert(h::L5D_PEER_UPGRADE, http::HeaderValue::from_static(value));
            }
            let mut rsp = match send_http1(&plain, req).await {
                Ok(rsp) => rsp,
                Err(mut e) => {
                    if let Some(unsent) = e.unsent.as_mut() {
                        unsent.headers_mut().remove(h::L5D_PEER_UPGRADE);
                    }
                    return Err(e);
                }
            };
            let learned = match peer::parse(rsp.headers()) {
                Some(accepted) => PeerState::Peer(accepted),
                None => PeerState::Plain {
                    until: now + peer::PLAIN_RECHECK,
                    protocol: "http/1.1",
                },
            };
            rsp.headers_mut().remove(h::L5D_PEER_UPGRADE);
            peer::learn(addr, learned);
            Ok(rsp)
        }
    }
}

async fn send_http1(
    dial: &Dial<'_>,
    req: Box<Request<ProxyBody>>,
) -> Result<Response<ProxyBody>, SendError> {
    let (addr, key) = (dial.addr, dial.key());
    let mut req = *req;
    while let Some(mut sender) = checkout(&key) {
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(req).await {
            Ok(rsp) => return Ok(pooled(key, sender, rsp)),
            Err(mut e) => match e.take_message() {
                // Never sent (the endpoint closed the idle connection): use another.
                Some(unsent) => req = unsent,
                None => {
                    return Err(SendError {
                        error: upstream(addr, e.into_error()),
                        unsent: None,
                    });
                }
            },
        }
    }
    // Boxed for the same reason as `open`: the HTTP/1.1 handshake's state.
    let mut sender = match Box::pin(connect(dial)).await {
        Ok(s) => s,
        Err(error) => {
            return Err(SendError {
                error,
                unsent: Some(Box::new(req)),
            });
        }
    };
    match sender.try_send_request(req).await {
        Ok(rsp) => Ok(pooled(key, sender, rsp)),
        Err(mut e) => {
            let unsent = e.take_message().map(Box::new);
            let mut error = upstream(addr, e.into_error());
            if unsent.is_some() {
                error.kind = ErrorKind::Connect;
            }
            Err(SendError { error, unsent })
        }
    }
}

fn upstream(addr: SocketAddr, e: hyper::Error) -> ProxyError {
    let kind = if e.is_canceled() {
        ErrorKind::Connect
    } else {
        ErrorKind::Upstream
    };
    ProxyError::new(kind, format!("{addr}: {}", with_sources(&e)))
}

/// An error's text followed by its sources': hyper's own text is generic ("http2
/// error"), and the reason is in the sources.
fn with_sources(e: &(dyn std::error::Error + 'static)) -> String {
    let mut why = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        why = format!("{why}: {cause}");
        source = cause.source();
    }
    why
}

fn pooled(key: PoolKey, sender: Sender, rsp: Response<Incoming>) -> Response<ProxyBody> {
    let upgrade = rsp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    rsp.map(|body| {
        let mut body = PooledBody {
            inner: body,
            release: Some((key, sender)),
        };
        if upgrade {
            // The connection now belongs to the upgraded stream.
            body.release = None;
        } else if body.inner.is_end_stream() {
            body.release();
        }
        body.boxed_unsync()
    })
}

/// A response body that hands its connection back to the pool when fully read.
struct PooledBody {
    inner: Incoming,
    release: Option<(PoolKey, Sender)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((key, sender)) = self.release.take() {
            checkin(key, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                self.release();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if self.inner.is_end_stream() {
                    self.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // A broken body means a broken connection: never reuse it.
                self.release = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
