//! The grpc section's second reference: a bare HTTP/2 forwarder on the `h2` crate, the
//! crate Plexus's HTTP/2 side is built on, run as this binary with
//! `PLEXUS_BENCH_ROLE=h2-forward`. It does what every HTTP/2 proxy must and nothing
//! else: it takes streams from its clients on one tokio thread, sends each on one
//! shared connection to the server, and relays bodies, trailers and resets back. No
//! naming, routing, metrics, retries or requeues. It relays a request's body before it
//! waits for the answer: enough for the unary calls the bench sends, not for
//! bidirectional streams.
//!
//! With `PLEXUS_BENCH_FORWARD_HEADERS=1` it also writes the headers Linkerd's semantics
//! put on every proxied call, as Plexus writes them: `l5d-dst-service`,
//! `l5d-dst-client`, a fresh `l5d-reqid` (never indexed, its name put in the HPACK
//! table by the connection's first request) and `Via` on the request; `Via` and
//! `l5d-success-class` on the response. The two variants beside Plexus split what a
//! proxied call costs in the layout into what any h2 proxy pays, what Linkerd's
//! headers add (mostly at the server, which decodes them), and what Plexus's own work
//! adds.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::task::Poll;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderName, HeaderValue};
use plexus_http::headers as h;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::procs::{Proc, ROLE_ENV};
use crate::setup::{Ready, wait};

/// Flow-control windows, as Plexus's own (1 MiB a connection and a stream).
const WINDOW: u32 = 1024 * 1024;

/// Starts the forwarder on `addr` in front of `server`, pinned to `cpu`, and waits until
/// a gRPC call through it succeeds.
pub(crate) fn start(
    name: &str,
    addr: SocketAddr,
    server: SocketAddr,
    headers: bool,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env(ROLE_ENV, "h2-forward")
        .env("PLEXUS_BENCH_ADDR", addr.to_string())
        .env("PLEXUS_BENCH_SERVER", server.to_string());
    if headers {
        cmd.env("PLEXUS_BENCH_FORWARD_HEADERS", "1");
    }
    let mut proc = Proc::spawn(name, &cmd, cpu, &dir.join(format!("{name}.log")), None)?;
    wait(&mut proc, &Ready::Grpc(addr))?;
    Ok(proc)
}

/// The forwarder process.
pub(crate) fn forward_main() -> ExitCode {
    let run = || -> anyhow::Result<()> {
        let addr: SocketAddr = std::env::var("PLEXUS_BENCH_ADDR")?.parse()?;
        let server: SocketAddr = std::env::var("PLEXUS_BENCH_SERVER")?.parse()?;
        let headers = std::env::var_os("PLEXUS_BENCH_FORWARD_HEADERS").is_some();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        tokio::task::LocalSet::new().block_on(&runtime, serve(addr, server, headers))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("h2-forward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr, server: SocketAddr, headers: bool) -> anyhow::Result<()> {
    let upstream = Rc::new(Upstream::new(server, headers));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    loop {
        let (io, _) = listener.accept().await?;
        let _ = io.set_nodelay(true);
        tokio::task::spawn_local(client_connection(io, upstream.clone()));
    }
}

/// One client connection: its streams are futures of its own task.
async fn client_connection(io: TcpStream, upstream: Rc<Upstream>) {
    let handshake = h2::server::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .handshake::<_, Bytes>(io);
    let Ok(mut conn) = handshake.await else {
        return;
    };
    let mut streams = FuturesUnordered::new();
    poll_fn(|cx| {
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    streams.push(stream(upstream.clone(), req, respond));
                }
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
        Poll::Pending
    })
    .await;
}

/// One stream: the request to the server, the response back.
async fn stream(
    upstream: Rc<Upstream>,
    req: http::Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let (mut parts, body) = req.into_parts();
    let Some((mut sender, first)) = upstream.ready().await else {
        respond.send_reset(Reason::REFUSED_STREAM);
        return;
    };
    if upstream.headers {
        add_request_headers(&mut parts.headers, first);
    }
    let eos = body.is_end_stream();
    let Ok((answer, send)) = sender.send_request(http::Request::from_parts(parts, ()), eos) else {
        respond.send_reset(Reason::REFUSED_STREAM);
        return;
    };
    if !eos {
        relay(body, send).await;
    }
    let Ok(rsp) = answer.await else {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    };
    let (mut parts, body) = rsp.into_parts();
    if upstream.headers {
        h::append_via(&mut parts.headers);
        parts
            .headers
            .insert(L5D_SUCCESS_CLASS, HeaderValue::from_static("1.0"));
    }
    let eos = body.is_end_stream();
    if let Ok(send) = respond.send_response(http::Response::from_parts(parts, ()), eos)
        && !eos
    {
        relay(body, send).await;
    }
}

/// The names written on every call, built once (a name made at run time is checked
/// each time), as Plexus's router has them.
const L5D_DST_SERVICE: HeaderName = HeaderName::from_static(h::L5D_DST_SERVICE);
const L5D_DST_CLIENT: HeaderName = HeaderName::from_static(h::L5D_DST_CLIENT);
const L5D_REQID: HeaderName = HeaderName::from_static(h::L5D_REQID);
const L5D_SUCCESS_CLASS: HeaderName = HeaderName::from_static(h::L5D_SUCCESS_CLASS);

/// Linkerd's request headers, written as Plexus writes them (its request id too).
fn add_request_headers(headers: &mut http::HeaderMap, first: bool) {
    headers.reserve(4);
    headers.insert(
        L5D_DST_SERVICE,
        HeaderValue::from_static("/svc/helloworld.World"),
    );
    headers.insert(
        L5D_DST_CLIENT,
        HeaderValue::from_static("/#/io.l5d.fs/helloworld.World"),
    );
    if let Ok(v) = HeaderValue::from_bytes(&plexus::router::choose::random_hex()) {
        headers.insert(L5D_REQID, h::per_request(v));
    }
    h::append_via(headers);
    if first {
        h::seed_per_request_names(headers);
    }
}

/// Relays a received half to a sending half: data as flow control allows, then the
/// trailers; a reset or failure resets the other side.
async fn relay(mut from: RecvStream, mut to: SendStream<Bytes>) {
    while let Some(data) = from.data().await {
        let Ok(data) = data else {
            to.send_reset(Reason::CANCEL);
            return;
        };
        let _ = from.flow_control().release_capacity(data.len());
        let eos = from.is_end_stream();
        if to.send_data(data, eos).is_err() || eos {
            return;
        }
    }
    match from.trailers().await {
        Ok(Some(trailers)) => {
            let _ = to.send_trailers(trailers);
        }
        Ok(None) => {
            let _ = to.send_data(Bytes::new(), true);
        }
        Err(_) => to.send_reset(Reason::CANCEL),
    }
}

/// A connection to the server.
#[derive(Clone)]
struct Connection {
    sender: SendRequest<Bytes>,
    /// Whether its first request has been sent.
    used: Rc<Cell<bool>>,
    /// Which dial made it.
    number: u64,
}

/// The one connection to the server, dialled again when it fails.
struct Upstream {
    server: SocketAddr,
    /// Whether to write Linkerd's headers.
    headers: bool,
    /// The connection streams go on; `None` before the first dial and after a failure.
    current: RefCell<Option<Connection>>,
    /// Connections dialled so far.
    dials: Cell<u64>,
    /// A dial is under way: other streams wait for it rather than dial too.
    dialing: Cell<bool>,
    /// Wakes the streams waiting for a dial.
    dialled: Notify,
}

impl Upstream {
    fn new(server: SocketAddr, headers: bool) -> Self {
        Upstream {
            server,
            headers,
            current: RefCell::new(None),
            dials: Cell::new(0),
            dialing: Cell::new(false),
            dialled: Notify::new(),
        }
    }

    /// A sender ready for one more stream, and whether it is the connection's first;
    /// `None` if the server cannot be reached.
    async fn ready(&self) -> Option<(SendRequest<Bytes>, bool)> {
        loop {
            let current = self.current.borrow().clone();
            match current {
                Some(Connection {
                    mut sender,
                    used,
                    number,
                }) => {
                    if poll_fn(|cx| sender.poll_ready(cx)).await.is_ok() {
                        return Some((sender, !used.replace(true)));
                    }
                    // Broken: forget it (unless another stream already has), and dial.
                    let mut current = self.current.borrow_mut();
                    if current.as_ref().is_some_and(|c| c.number == number) {
                        *current = None;
                    }
                }
                None if self.dialing.get() => self.dialled.notified().await,
                None => {
                    self.dialing.set(true);
                    let dialled = self.dial().await;
                    self.dialing.set(false);
                    self.dialled.notify_waiters();
                    match dialled {
                        Ok(sender) => {
                            self.dials.set(self.dials.get() + 1);
                            *self.current.borrow_mut() = Some(Connection {
                                sender,
                                used: Rc::new(Cell::new(false)),
                                number: self.dials.get(),
                            });
                        }
                        Err(e) => {
                            eprintln!("h2-forward: connecting to {}: {e:#}", self.server);
                            return None;
                        }
                    }
                }
            }
        }
    }

    async fn dial(&self) -> anyhow::Result<SendRequest<Bytes>> {
        let io = TcpStream::connect(self.server).await?;
        let _ = io.set_nodelay(true);
        let (sender, conn) = h2::client::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}
