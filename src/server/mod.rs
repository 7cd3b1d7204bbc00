//! Accept: the listening sockets of routers and one actor per connection.
//!
//! A [`ServerActor`] (one per router server, on the main arbiter) accepts connections
//! and hands each to a worker arbiter in turn, where an [`HttpConnection`] actor serves
//! it: h2 routers, and the HTTP/2 that upgraded Plexus peers bring to HTTP/1.1 routers,
//! with Plexus's own HTTP/2 server ([`http2`]), the only one; HTTP/1.1 from
//! applications with hyper; Thrift routers with [`crate::router::thrift`]. Workers are
//! single-threaded (actix arbiters), so a connection's requests, its pooled upstream
//! connections and its caches never cross threads. The
//! [`Drain`] signal makes every connection finish its in-flight requests and close;
//! the runtime waits for them within the grace period.

use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use actix_rt::ArbiterHandle;
use http::{Request, Response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod http2;

use crate::router::client::ProxyBody;
use crate::router::http::{ConnInfo, RequestBody, handle, worker_for};
use crate::router::stats::ScopeStats;
use crate::router::{H2Settings, Router, ServerSpec, stats};

/// How long a client may take to send a request head before the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Tells connections to finish what they are doing and close; counts those still open.
#[derive(Clone, Debug)]
pub struct Drain {
    signal: watch::Sender<bool>,
    active: Arc<AtomicUsize>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            signal: watch::channel(false).0,
            active: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Drain {
    /// Starts draining: idle keep-alive connections close now, busy ones after their
    /// in-flight requests.
    pub fn start(&self) {
        self.signal.send_replace(true);
    }

    /// Connections still open.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn watch(&self) -> watch::Receiver<bool> {
        self.signal.subscribe()
    }
}

/// Counts a connection as open (for draining and the `connections` gauge) until it
/// ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>, metrics::Gauge);

impl ActiveGuard {
    fn new(active: &Arc<AtomicUsize>, gauge: metrics::Gauge) -> Self {
        active.fetch_add(1, Ordering::AcqRel);
        gauge.increment(1.0);
        ActiveGuard(active.clone(), gauge)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.decrement(1.0);
    }
}

/// The worker arbiters connections are spread over.
#[derive(Clone)]
pub struct Workers {
    arbiters: Arc<Vec<ArbiterHandle>>,
    next: Arc<AtomicUsize>,
}

impl Workers {
    /// Uses `arbiters` in turn.
    pub fn new(arbiters: Vec<ArbiterHandle>) -> Self {
        Workers {
            arbiters: Arc::new(arbiters),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn pick(&self) -> Option<&ArbiterHandle> {
        if self.arbiters.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters.get(i)
    }
}

/// Accepts the connections of one router server.
pub struct ServerActor {
    listener: Option<TcpListener>,
    router: Arc<Router>,
    spec: ServerSpec,
    workers: Workers,
    drain: Drain,
}

impl ServerActor {
    /// An acceptor for `listener` (already bound).
    pub fn new(
        listener: TcpListener,
        router: Arc<Router>,
        spec: ServerSpec,
        workers: Workers,
        drain: Drain,
    ) -> Self {
        ServerActor {
            listener: Some(listener),
            router,
            spec,
            workers,
            drain,
        }
    }
}

/// Stops accepting (the listening socket is closed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Actor for ServerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let (router, spec, workers, drain) = (
            self.router.clone(),
            self.spec.clone(),
            self.workers.clone(),
            self.drain.clone(),
        );
        ctx.spawn(accept_loop(listener, router, spec, workers, drain).into_actor(self));
    }
}

impl Handler<StopAccepting> for ServerActor {
    type Result = ();

    fn handle(&mut self, _: StopAccepting, ctx: &mut Self::Context) {
        tracing::info!(router = %self.router.label, addr = %self.spec.addr, "no longer accepting connections");
        ctx.stop();
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Arc<Router>,
    spec: ServerSpec,
    workers: Workers,
    drain: Drain,
) {
    let server_id = format!("{}/{}", spec.addr.ip(), spec.addr.port());
    let connections = stats::connections(&router.label, &server_id);
    let protocols = Protocols {
        http1: stats::protocol_requests(&router.label, &server_id, "http/1.1"),
        h2: stats::protocol_requests(&router.label, &server_id, "h2"),
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(std_stream) = stream.into_std() else {
                    continue;
                };
                let (router, spec, drain, gauge, protocols) = (
                    router.clone(),
                    spec.clone(),
                    drain.clone(),
                    connections.clone(),
                    protocols.clone(),
                );
                let start = move || {
                    let guard = ActiveGuard::new(&drain.active, gauge);
                    match TcpStream::from_std(std_stream) {
                        Ok(stream) => {
                            HttpConnection {
                                stream: Some(stream),
                                router,
                                spec: Rc::new(spec),
                                drain: drain.watch(),
                                guard,
                                protocols,
                            }
                            .start();
                        }
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "cannot adopt accepted connection")
                        }
                    }
                };
                match workers.pick() {
                    Some(worker) => {
                        if !worker.spawn_fn(start) {
                            tracing::warn!(%peer, "worker is gone; connection dropped");
                        }
                    }
                    None => start(),
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(router = %router.label, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Requests a server received, by protocol (`rt/<router>/server/<ip>/<port>/protocol/h2/requests`):
/// on an HTTP/1.1 router, the HTTP/2 ones came from Plexus peers that upgraded.
#[derive(Clone)]
struct Protocols {
    http1: metrics::Counter,
    h2: metrics::Counter,
}

/// One client connection, served on a worker arbiter.
pub struct HttpConnection {
    stream: Option<TcpStream>,
    router: Arc<Router>,
    spec: Rc<ServerSpec>,
    drain: watch::Receiver<bool>,
    guard: ActiveGuard,
    protocols: Protocols,
}

impl Actor for HttpConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        crate::net::tune(&stream);
        let conn = match (stream.peer_addr(), stream.local_addr()) {
            (Ok(peer), Ok(local)) => Rc::new(ConnInfo::new(peer, local)),
            _ => return,
        };
        let worker = worker_for(&self.router);
        if self.router.thrift.is_some() {
            let serve = serve_thrift(
                worker,
                self.spec.clone(),
                stream,
                self.drain.clone(),
                self.router.label.clone(),
            );
            ctx.spawn(serve.into_actor(self).map(|(), _, ctx| ctx.stop()));
            return;
        }
        let spec = self.spec.clone();
        let requests = Requests {
            stats: worker.server_stats(self.spec.addr),
            worker,
            spec: spec.clone(),
            conn,
            protocols: self.protocols.clone(),
        };
        let drain = self.drain.clone();
        let head_limit = self.router.limits.max_head_bytes.max(8192);
        let label = self.router.label.clone();
        let serve = async move {
            // How the connection opens, read only where it can vary: with TLS alone
            // every connection starts a handshake, and an h2 router in the clear speaks
            // nothing but HTTP/2.
            let opening = match (&spec.tls, spec.accept_plaintext, spec.h2) {
                (Some(_), false, _) => Opening::Tls,
                (None, _, Some(_)) => Opening::H2,
                _ => opening(&stream).await,
            };
            let tls = match (opening, &spec.tls) {
                (Opening::Nothing, _) => return,
                (Opening::Tls, Some(tls)) => tls,
                // In the clear: from an application, or from a peer that has not
                // negotiated TLS (`acceptPlaintext`).
                (opening, _) => {
                    let h2 = spec.h2.or_else(|| {
                        matches!(opening, Opening::H2).then(|| H2Settings::peer_hop(head_limit))
                    });
                    return serve(stream, h2, requests, head_limit, drain).await;
                }
            };
            let peer = stream.peer_addr().ok();
            match tls.accept(stream).await {
                Ok(stream) => {
                    stats::tls_connections(&label, &spec.addr).increment(1);
                    // A client that negotiated `h2` by ALPN speaks HTTP/2 (RFC 9113
                    // section 3.2); to an HTTP/1.1 router, that is a Plexus peer. Any
                    // other speaks HTTP/1.1: HTTP/2 inside TLS is negotiated by ALPN
                    // or not spoken (section 3.3), as nginx and Envoy have it.
                    let h2 = spec.h2.or_else(|| {
                        (stream.alpn_protocol() == Some(b"h2"))
                            .then(|| H2Settings::peer_hop(head_limit))
                    });
                    serve(stream, h2, requests, head_limit, drain).await;
                }
                Err(e) => {
                    stats::tls_failures(&label, &spec.addr, e.metric_label()).increment(1);
                    tracing::info!(router = %label, server = %spec.addr, peer = ?peer, error = %e, "TLS handshake failed");
                }
            }
        };
        ctx.spawn(serve.into_actor(self).map(|(), _, ctx| ctx.stop()));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let _ = &self.guard;
    }
}

/// Serves a Thrift router's connection, after the TLS handshake when the server has
/// TLS (and the client starts one, with `acceptPlaintext`).
async fn serve_thrift(
    worker: Rc<crate::router::http::Worker>,
    spec: Rc<ServerSpec>,
    stream: TcpStream,
    drain: watch::Receiver<bool>,
    label: String,
) {
    use crate::router::thrift::serve::serve;
    let Some(tls) = spec.tls.clone() else {
        return serve(worker, spec, stream, drain).await;
    };
    if spec.accept_plaintext && !matches!(opening(&stream).await, Opening::Tls) {
        return serve(worker, spec, stream, drain).await;
    }
    let peer = stream.peer_addr().ok();
    match tls.accept(stream).await {
        Ok(stream) => {
            stats::tls_connections(&label, &spec.addr).increment(1);
            serve(worker, spec, stream, drain).await;
        }
        Err(e) => {
            stats::tls_failures(&label, &spec.addr, e.metric_label()).increment(1);
            tracing::info!(router = %label, server = %spec.addr, peer = ?peer, error = %e, "TLS handshake failed");
        }
    }
}

/// HTTP/2's connection preface (RFC 9113 section 3.4): the first bytes of a client
/// that speaks HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a connection opens.
enum Opening {
    /// With a TLS handshake record (content type 22).
    Tls,
    /// With HTTP/2's preface: an h2 client, or to an HTTP/1.1 router, a Plexus peer that
    /// negotiated the upgrade.
    H2,
    /// With anything else (an HTTP/1.1 request line, a Thrift message).
    Other,
    /// With nothing: the client closed, or sent nothing within the header read timeout.
    Nothing,
}

/// Reads how a connection opens, without consuming it: decided by the first byte for
/// TLS, and otherwise by the first byte that differs from HTTP/2's preface, so an
/// HTTP/1.1 request line is known at once.
async fn opening(stream: &TcpStream) -> Opening {
    let sniff = async {
        let mut seen = [0u8; H2_PREFACE.len()];
        let mut pause = Duration::from_millis(1);
        loop {
            match stream.peek(&mut seen).await {
                Ok(0) | Err(_) => return Opening::Nothing,
                Ok(_) if seen[0] == 0x16 => return Opening::Tls,
                Ok(n) if seen[..n] != H2_PREFACE[..n] => return Opening::Other,
                Ok(n) if n == H2_PREFACE.len() => return Opening::H2,
                // Only part of the preface has come. Peeking again would return the
                // same bytes at once, so wait for the rest, longer each time: a
                // client that stops halfway costs a few dozen wake-ups, not thousands.
                Ok(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
            }
        }
    };
    tokio::time::timeout(HEADER_READ_TIMEOUT, sniff)
        .await
        .unwrap_or_else(|_| {
            tracing::debug!(
                after = ?HEADER_READ_TIMEOUT,
                "a client sent nothing after connecting; closing"
            );
            Opening::Nothing
        })
}

/// What a connection's requests are handed to: the router's pipeline, with the
/// server and the connection they arrived on.
struct Requests {
    worker: Rc<crate::router::http::Worker>,
    stats: Rc<ScopeStats>,
    spec: Rc<ServerSpec>,
    conn: Rc<ConnInfo>,
    protocols: Protocols,
}

impl Requests {
    /// The response to `req` (boxed: it passes through three futures before the router
    /// takes it apart, and each would copy it whole).
    fn serve(
        &self,
        req: Box<Request<RequestBody>>,
    ) -> impl Future<Output = Response<ProxyBody>> + use<> {
        if req.version() == http::Version::HTTP_2 {
            self.protocols.h2.increment(1);
        } else {
            self.protocols.http1.increment(1);
        }
        handle(
            self.worker.clone(),
            self.spec.clone(),
            self.conn.clone(),
            self.stats.clone(),
            req,
        )
    }
}

/// Serves one connection (plain or TLS): as HTTP/2 with Plexus's own server
/// ([`http2`]) when `h2` says so (every connection of an h2 router, and HTTP/2 from a
/// Plexus peer that negotiated the upgrade, see [`crate::router::peer`]); otherwise
/// as HTTP/1.1, with hyper.
async fn serve<IO>(
    io: IO,
    h2: Option<H2Settings>,
    requests: Requests,
    head_limit: usize,
    mut drain: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if let Some(h2) = &h2 {
        return http2::serve(io, h2, &requests, drain).await;
    }
    let peer = requests.conn.peer;
    let requests = Rc::new(requests);
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        // Boxed: hyper keeps the answer's future in its connection's state, moved there
        // whole; a pointer moves cheaper than the request's whole state.
        let answer = crate::router::boxed(|| requests.serve(Box::new(req.map(RequestBody::Hyper))));
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(head_limit)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    // Until it ends; a drain lets the request in flight finish, then closes.
    tokio::pin!(conn);
    let mut draining = *drain.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                match result {
                    Err(e) if e.is_parse_version_h2() => tracing::info!(
                        %peer,
                        "a client sent HTTP/2's preface where HTTP/1.1 was expected (inside TLS, HTTP/2 needs ALPN `h2`: RFC 9113 section 3.3); closed its connection"
                    ),
                    Err(e) => tracing::debug!(error = %e, "client connection ended with an error"),
                    Ok(()) => {}
                }
                return;
            }
            changed = drain.changed(), if !draining => {
                if changed.is_err() || *drain.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A connected pair on loopback: (the client's end, the server's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn a_connection_opening_with_the_preface_is_http2_even_in_pieces() {
        let (mut client, server) = pair().await;
        client.write_all(&H2_PREFACE[..9]).await.expect("write");
        let rest = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&H2_PREFACE[9..]).await.expect("write");
        };
        let (opened, ()) = tokio::join!(opening(&server), rest);
        assert!(matches!(opened, Opening::H2));
        // Nothing was consumed: the HTTP/2 server reads the whole preface.
        let mut first = [0u8; 24];
        server.peek(&mut first).await.expect("peek");
        assert_eq!(&first, H2_PREFACE);
    }

    #[tokio::test]
    async fn an_http1_request_line_is_known_by_its_first_bytes() {
        for line in ["GET / HTTP/1.1\r\n", "PRIX", "P"] {
            let (mut client, server) = pair().await;
            client.write_all(line.as_bytes()).await.expect("write");
            if line == "P" {
                // Could still be the preface until the next byte says otherwise.
                let more = async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    client
                        .write_all(b"OST / HTTP/1.1\r\n")
                        .await
                        .expect("write");
                };
                let (opened, ()) = tokio::join!(opening(&server), more);
                assert!(matches!(opened, Opening::Other), "{line:?}");
            } else {
                assert!(matches!(opening(&server).await, Opening::Other), "{line:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_tls_handshake_is_known_by_its_first_byte() {
        let (mut client, server) = pair().await;
        // A handshake record, TLS 1.0 record version, as a ClientHello starts.
        client.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
        assert!(matches!(opening(&server).await, Opening::Tls));
    }

    #[tokio::test]
    async fn a_connection_closed_before_a_byte_is_nothing_to_serve() {
        let (client, server) = pair().await;
        drop(client);
        assert!(matches!(opening(&server).await, Opening::Nothing));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_stopping_halfway_through_the_preface_is_given_up() {
        let (mut client, server) = pair().await;
        client.write_all(&H2_PREFACE[..5]).await.expect("write");
        assert!(matches!(opening(&server).await, Opening::Nothing));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_given_up_after_the_header_read_timeout() {
        let (_client, server) = pair().await;
        assert!(matches!(opening(&server).await, Opening::Nothing));
    }
}
