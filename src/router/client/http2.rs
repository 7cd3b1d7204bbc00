//! HTTP/2 to endpoints, on the `h2` crate directly.
//!
//! One multiplexed connection per endpoint, TLS identity and worker, driven by a task of
//! its own, made once however many requests arrive while it is being made, and forgotten
//! when it ends. A request's own future opens its stream, sends a body that is already
//! complete without any task, and waits for the response head itself; only a request
//! body still streaming when the response head arrives gets a task, to go on sending.
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
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
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
/// recommended minimum, so a new connection is not refused streams).
const INITIAL_MAX_SEND_STREAMS: usize = 100;

type Sender = SendRequest<Bytes>;
type Connecting = Shared<LocalBoxFuture<'static, Result<Sender, ProxyError>>>;

/// An endpoint's connection on this worker: open, or being made.
enum Slot {
    Open { id: u64, sender: Sender },
    Connecting(Connecting),
}

thread_local! {
    static CONNECTIONS: RefCell<HashMap<PoolKey, Slot>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// Sends `req` on a stream of the endpoint's connection (made if there is none).
pub(super) async fn send(
    dial: &Dial<'_>,
    req: Box<Request<ProxyBody>>,
) -> Result<Response<ProxyBody>, SendError> {
    let addr = dial.addr;
    let mut sender = match ready_connection(dial).await {
        Ok(sender) => sender,
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
            Ok(rsp.map(|recv| RecvBody::new(recv, length).boxed_unsync()))
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

/// The endpoint's connection, ready for a new stream: the open one, or the one being
/// made (by this request or another), or a new one.
async fn ready_connection(dial: &Dial<'_>) -> Result<Sender, ProxyError> {
    let key = dial.key();
    // Twice at most: an open connection may turn out to have ended since.
    for _ in 0..2 {
        let found = CONNECTIONS.with(|c| match c.borrow().get(&key) {
            Some(Slot::Open { id, sender }) => Found::Open(*id, sender.clone()),
            Some(Slot::Connecting(made)) => Found::Connecting(made.clone()),
            None => Found::Nothing,
        });
        let mut sender = match found {
            Found::Open(id, mut sender) => {
                if poll_fn(|cx| sender.poll_ready(cx)).await.is_ok() {
                    return Ok(sender);
                }
                // It ended (its task forgets it soon); nothing was sent on it.
                forget(&key, id);
                continue;
            }
            Found::Connecting(made) => made.await?,
            Found::Nothing => connecting(dial, key.clone()).await?,
        };
        return match poll_fn(|cx| sender.poll_ready(cx)).await {
            Ok(()) => Ok(sender),
            Err(e) => Err(connect_failed(
                dial.addr,
                format!("the new HTTP/2 connection closed: {e}"),
            )),
        };
    }
    Err(connect_failed(
        dial.addr,
        "the HTTP/2 connection closed".into(),
    ))
}

/// What [`ready_connection`] found for an endpoint.
enum Found {
    Open(u64, Sender),
    Connecting(Connecting),
    Nothing,
}

/// Forgets the endpoint's connection `id`, if it is still the one on record.
fn forget(key: &PoolKey, id: u64) {
    CONNECTIONS.with(|c| {
        let mut c = c.borrow_mut();
        if matches!(c.get(key), Some(Slot::Open { id: open, .. }) if *open == id) {
            c.remove(key);
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
    CONNECTIONS.with(|c| c.borrow_mut().insert(key, Slot::Connecting(made.clone())));
    made
}

/// What a connection is made to, owned: it outlives the request that started it.
struct Target {
    addr: std::net::SocketAddr,
    connect_timeout: Duration,
    tls: Option<ClientTlsTarget>,
}

async fn connect(target: Target, key: PoolKey) -> Result<Sender, ProxyError> {
    let made = handshake(&target, key.clone()).await;
    CONNECTIONS.with(|c| {
        let mut c = c.borrow_mut();
        match &made {
            Ok((id, sender)) => {
                c.insert(
                    key,
                    Slot::Open {
                        id: *id,
                        sender: sender.clone(),
                    },
                );
            }
            Err(_) => {
                c.remove(&key);
            }
        }
    });
    made.map(|(_, sender)| sender)
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
    fn empty_bodies_of_methods_without_payload_semantics_get_no_length() {
        for method in [Method::GET, Method::HEAD, Method::DELETE, Method::CONNECT] {
            assert!(!has_payload_semantics(&method), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH] {
            assert!(has_payload_semantics(&method), "{method}");
        }
    }
}
