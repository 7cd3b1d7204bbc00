//! HTTP/2 to endpoints, on the `h2` crate directly.
//!
//! One multiplexed connection per endpoint, TLS identity and worker, driven by a task of
//! its own, made once however many requests arrive while it is being made, and forgotten
//! when it ends. More only when it is full: a stream beyond the endpoint's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` would wait for another call to finish, so it goes
//! on another connection instead (up to [`MAX_CONNECTIONS_PER_ENDPOINT`]), and calls
//! go to the connection with the fewest streams. A request's own future opens its
//! stream, sends a body that is already complete without any task, and waits for the
//! response head itself; only a request body still streaming when the response head
//! arrives gets a task, to go on sending.
//!
//! This is the hot path of every gRPC call, which is why it is not hyper's client: that
//! passes each request through a channel to the connection's task, spawns a task per
//! request to wait for the response and answers through a oneshot (three wake-ups and a
//! task per request, measured in `benches/README.md`).
//!
//! What a proxy owes both sides of a stream is kept: a request dropped before its
//! response (the client went away, a timeout fired) resets its stream with `CANCEL`,
//! and a reset reaches the other side with its reason (see [`crate::router::h2body`],
//! which the server shares).

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{LocalBoxFuture, Shared};
use h2::client::SendRequest;
use http::{Method, Request, Response, header};
use http_body::Body;
use http_body_util::BodyExt;

use super::{Dial, PoolKey, ProxyBody, SendError, connect_failed, open, with_sources};
use crate::router::error::{ErrorKind, ProxyError};
use crate::router::h2body::{RecvBody, SendBody};
use crate::router::policy::ClientTlsTarget;

/// Each stream's receive window: large, so one stream can fill a fast link.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// The connection's receive window, shared by its streams.
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// The largest response head accepted from an endpoint.
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Request data buffered per stream beyond what the endpoint's window lets out.
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// Streams opened before the endpoint's SETTINGS say how many it takes (RFC 9113's
/// recommended minimum, so a new connection is not refused streams). An endpoint whose
/// SETTINGS name no limit has none (`h2` then takes any number).
const INITIAL_MAX_SEND_STREAMS: usize = 100;
/// Connections to one endpoint on one worker, at most. Beyond them, a stream over the
/// endpoint's limit waits (in `h2`) for one of the connection's streams to end.
const MAX_CONNECTIONS_PER_ENDPOINT: usize = 16;

type Sender = SendRequest<Bytes>;
type Connecting = Shared<LocalBoxFuture<'static, Result<(), ProxyError>>>;

/// An endpoint's connections on this worker.
#[derive(Default)]
struct Endpoint {
    open: Vec<Open>,
    /// The one being made, if any: requests that find the others full wait for it.
    connecting: Option<Connecting>,
}

/// An open connection, and how many of Plexus's streams are on it.
struct Open {
    id: u64,
    sender: Sender,
    /// Shared with the streams' [`OpenStream`]s. Atomic only because response bodies
    /// must be `Send`: it is only ever touched on this worker's thread.
    streams: Arc<AtomicUsize>,
    /// Whether a stream was given the connection yet. The first puts the names of
    /// Plexus's per-request headers in its HPACK table
    /// ([`plexus_http::headers::seed_per_request_names`]); only the first: `h2` keeps
    /// every value it was let index until the table is full, chained by name, and
    /// walks the chain on each later request with that name.
    used: Cell<bool>,
}

impl Open {
    fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }
}

/// One stream counted on its connection while it lives: dropped (with the response
/// body, or the call if it fails first), it frees its place.
pub(crate) struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(streams: &Arc<AtomicUsize>) -> OpenStream {
        streams.fetch_add(1, Ordering::Relaxed);
        OpenStream(streams.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What [`Endpoint::next`] says to do.
enum Next {
    /// Open the stream on this connection.
    Use {
        /// The connection's id.
        id: u64,
        sender: Sender,
        /// The stream, counted on the connection.
        counted: OpenStream,
        /// The connection's first stream: it seeds the HPACK table.
        seed: bool,
    },
    /// Wait for the connection being made, then look again.
    Wait(Connecting),
    /// Make another connection, then look again.
    Connect,
}

impl Endpoint {
    /// The connection a new stream goes on: one with room (see [`with_room`]);
    /// otherwise the one being made, or a new one, below the cap; at the cap, the
    /// least busy of those that take streams at all (the stream waits there, in `h2`,
    /// for a free place).
    fn next(&self) -> Next {
        let mut heard = [(0, 0); MAX_CONNECTIONS_PER_ENDPOINT];
        for (h, o) in heard.iter_mut().zip(&self.open) {
            *h = (o.streams(), o.sender.current_max_send_streams());
        }
        let heard = &heard[..self.open.len().min(MAX_CONNECTIONS_PER_ENDPOINT)];
        let usable = |i: usize| {
            let o = &self.open[i];
            Next::Use {
                id: o.id,
                sender: o.sender.clone(),
                counted: OpenStream::new(&o.streams),
                seed: !o.used.replace(true),
            }
        };
        if let Some(i) = with_room(heard) {
            return usable(i);
        }
        match &self.connecting {
            Some(made) => Next::Wait(made.clone()),
            None if self.open.len() < MAX_CONNECTIONS_PER_ENDPOINT => Next::Connect,
            None => {
                tracing::debug!(
                    connections = heard.len(),
                    "every HTTP/2 connection to the endpoint is at its stream limit; the call waits for a free stream"
                );
                (0..heard.len())
                    .min_by_key(|&i| (heard[i].1 == 0, heard[i].0))
                    .map_or(Next::Connect, usable)
            }
        }
    }
}

/// Which of an endpoint's connections, given as (streams on it, the limit it heard in
/// `SETTINGS_MAX_CONCURRENT_STREAMS`), has room for a new stream: the one with the
/// fewest streams among those under their own limit and under the lowest non-zero
/// limit of them all. They all reach the same server, and a connection that has not
/// heard its limit yet holds the initial 100; a connection told 0 takes nothing.
fn with_room(heard: &[(usize, usize)]) -> Option<usize> {
    let endpoint = heard
        .iter()
        .map(|&(_, limit)| limit)
        .filter(|&limit| limit > 0)
        .min()?;
    (0..heard.len())
        .filter(|&i| heard[i].0 < heard[i].1.min(endpoint))
        .min_by_key(|&i| heard[i].0)
}

thread_local! {
    // Looked up on every request: foldhash (randomly seeded), not SipHash.
    static CONNECTIONS: RefCell<foldhash::HashMap<PoolKey, Endpoint>> =
        RefCell::new(foldhash::HashMap::default());
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// Sends `req` on a stream of the endpoint's connection (made if there is none).
pub(super) async fn send(
    dial: &Dial<'_>,
    req: Box<Request<ProxyBody>>,
) -> Result<Response<ProxyBody>, SendError> {
    let addr = dial.addr;
    let (mut sender, counted, seed) = match ready_connection(dial).await {
        Ok(ready) => ready,
        Err(error) => {
            return Err(SendError {
                error,
                unsent: Some(req),
            });
        }
    };
    let (parts, body) = req.into_parts();
    let mut head = Request::from_parts(parts, ());
    if let Some(len) = body.size_hint().exact()
        && (len != 0 || has_payload_semantics(head.method()))
    {
        head.headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| len.into());
    }
    if seed {
        plexus_http::headers::seed_per_request_names(head.headers_mut());
    }
    let eos = body.is_end_stream();
    // Cannot fail for the connection's sake: `ready_connection` just saw it open, and
    // nothing ran since. What is left is a head that HTTP/2 cannot carry.
    let (response, stream) = sender.send_request(head, eos).map_err(|e| SendError {
        error: failure(addr, &e),
        unsent: None,
    })?;
    let mut pipe = (!eos).then(|| SendBody::new(body, stream, "request body"));
    let mut response = response;
    // The response head, while sending what the body has ready.
    let answered = poll_fn(|cx| {
        if let Some(p) = pipe.as_mut()
            && Pin::new(p).poll(cx).is_ready()
        {
            pipe = None;
        }
        Pin::new(&mut response).poll(cx)
    })
    .await;
    match answered {
        Ok(rsp) => {
            // The response came first (a server or bidirectional stream): the request
            // body goes on in a task of its own.
            if let Some(pipe) = pipe {
                tokio::task::spawn_local(pipe);
            }
            let length = plexus_http::headers::content_length(rsp.headers());
            Ok(rsp.map(|recv| RecvBody::new(recv, length).counted(counted).boxed_unsync()))
        }
        Err(e) => Err(SendError {
            error: failure(addr, &e),
            unsent: None,
        }),
    }
}

/// Whether an empty body of this method still says "empty" with `Content-Length: 0`.
fn has_payload_semantics(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

/// A connection to the endpoint ready for a new stream, with the stream counted on it
/// and whether it seeds the connection's HPACK table: an open one with room, or one
/// being made (by this request or another), or a new one (see [`Endpoint::next`]).
async fn ready_connection(dial: &Dial<'_>) -> Result<(Sender, OpenStream, bool), ProxyError> {
    let key = dial.key();
    // Connections found closed: after two, the endpoint is failing (the call is
    // requeued elsewhere); looks in all, in case connections keep ending as they come.
    let (mut closed, mut looks) = (0, 0);
    while closed < 2 && looks < 4 * MAX_CONNECTIONS_PER_ENDPOINT {
        looks += 1;
        let next = CONNECTIONS.with(|c| match c.borrow().get(&key) {
            Some(endpoint) => endpoint.next(),
            None => Next::Connect,
        });
        match next {
            Next::Use {
                id,
                mut sender,
                counted,
                seed,
            } => {
                if poll_fn(|cx| sender.poll_ready(cx)).await.is_ok() {
                    return Ok((sender, counted, seed));
                }
                // It ended (its task forgets it soon); nothing was sent on it.
                forget(&key, id);
                closed += 1;
            }
            Next::Wait(made) => made.await?,
            Next::Connect => connecting(dial, key.clone()).await?,
        }
    }
    Err(connect_failed(
        dial.addr,
        "the HTTP/2 connection closed".into(),
    ))
}

/// Forgets the endpoint's connection `id`, if it is still on record.
fn forget(key: &PoolKey, id: u64) {
    CONNECTIONS.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(endpoint) = c.get_mut(key) {
            endpoint.open.retain(|o| o.id != id);
            if endpoint.open.is_empty() && endpoint.connecting.is_none() {
                c.remove(key);
            }
        }
    });
}

/// Starts making a connection that every request to the endpoint can wait for.
fn connecting(dial: &Dial<'_>, key: PoolKey) -> Connecting {
    let target = Target {
        addr: dial.addr,
        connect_timeout: dial.connect_timeout,
        tls: dial.tls.cloned(),
    };
    let made = connect(target, key.clone()).boxed_local().shared();
    CONNECTIONS.with(|c| {
        let mut c = c.borrow_mut();
        let endpoint = c.entry(key).or_default();
        if let Some(first) = endpoint.open.first() {
            tracing::debug!(
                endpoint = %dial.addr,
                open = endpoint.open.len(),
                limit = first.sender.current_max_send_streams(),
                "every HTTP/2 connection to the endpoint is at its stream limit; opening another"
            );
        }
        endpoint.connecting = Some(made.clone());
    });
    made
}

/// What a connection is made to, owned: it outlives the request that started it.
struct Target {
    addr: std::net::SocketAddr,
    connect_timeout: Duration,
    tls: Option<ClientTlsTarget>,
}

/// Makes a connection and puts it on record with the endpoint's others.
async fn connect(target: Target, key: PoolKey) -> Result<(), ProxyError> {
    let made = handshake(&target, key.clone()).await;
    CONNECTIONS.with(|c| {
        let mut c = c.borrow_mut();
        let endpoint = c.entry(key.clone()).or_default();
        endpoint.connecting = None;
        if let Ok((id, sender)) = &made {
            endpoint.open.push(Open {
                id: *id,
                sender: sender.clone(),
                streams: Arc::default(),
                used: Cell::new(false),
            });
        } else if endpoint.open.is_empty() {
            c.remove(&key);
        }
    });
    made.map(|_| ())
}

/// TCP, TLS when the client has it, and the HTTP/2 handshake; the connection then runs
/// in a task of its own, which forgets it when it ends.
async fn handshake(target: &Target, key: PoolKey) -> Result<(u64, Sender), ProxyError> {
    let dial = Dial {
        addr: target.addr,
        connect_timeout: target.connect_timeout,
        version: crate::config::HttpVersion::H2,
        upgrade_h2: false,
        negotiate_tls: false,
        tls: target.tls.as_ref(),
    };
    let addr = target.addr;
    let io = open(&dial, true).await?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_reset_streams(crate::router::H2_RESET_STREAMS_REMEMBERED)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| connect_failed(addr, format!("HTTP/2 handshake: {e}")))?;
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    tokio::task::spawn_local(async move {
        if let Err(e) = connection.await {
            tracing::debug!(endpoint = %addr, error = %e, "h2 endpoint connection closed with an error");
        }
        forget(&key, id);
    });
    Ok((id, sender))
}

/// A failed stream, with the HTTP/2 error's reason. A stream the endpoint did not
/// process, and said so, is [`ErrorKind::Refused`], which the client requeues (and
/// `io.l5d.h2.grpc.compliant` retries): one it reset with `REFUSED_STREAM`, and one above
/// the last stream id of its `GOAWAY` (RFC 9113, sections 8.7 and 6.8; a graceful
/// restart sends that). `h2` fails a stream with the endpoint's `GOAWAY` only then, or
/// when the stream was never sent; streams at or below the last id go on, and fail as
/// broken pipes if the connection ends first, which may have been acted on.
fn failure(addr: std::net::SocketAddr, e: &h2::Error) -> ProxyError {
    if e.is_remote() && e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM) {
        return ProxyError::new(ErrorKind::Refused, format!("{addr}: {}", with_sources(e)));
    }
    if e.is_remote() && e.is_go_away() {
        return ProxyError::new(
            ErrorKind::Refused,
            format!(
                "{addr}: the endpoint is going away and refused the stream unprocessed: {}",
                with_sources(e)
            ),
        );
    }
    ProxyError::new(ErrorKind::Upstream, format!("{addr}: {}", with_sources(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_goes_where_there_is_room_under_the_endpoints_limit() {
        // The least busy connection with room.
        assert_eq!(with_room(&[(3, 10), (1, 10), (2, 10)]), Some(1));
        assert_eq!(with_room(&[(10, 10), (9, 10)]), Some(1));
        // All full: none.
        assert_eq!(with_room(&[(10, 10), (10, 10)]), None);
        assert_eq!(with_room(&[]), None);
        // A new connection (still at the initial 100) is held to what the others heard.
        assert_eq!(with_room(&[(2, 2), (2, 100)]), None);
        assert_eq!(with_room(&[(2, 2), (1, 100)]), Some(1));
        // A connection told 0 takes nothing, and does not hold back the others.
        assert_eq!(with_room(&[(0, 0), (5, 100)]), Some(1));
        assert_eq!(with_room(&[(0, 0)]), None);
    }

    #[test]
    fn empty_bodies_of_methods_without_payload_semantics_get_no_length() {
        for method in [Method::GET, Method::HEAD, Method::DELETE, Method::CONNECT] {
            assert!(!has_payload_semantics(&method), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH] {
            assert!(has_payload_semantics(&method), "{method}");
        }
    }
}
