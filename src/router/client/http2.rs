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
//! and a reset reaches the other side with its reason, `CANCEL` included (so a body cut
//! short never passes for a whole one).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{LocalBoxFuture, Shared};
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::{Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{BoxError, Dial, PoolKey, ProxyBody, SendError, connect_failed, open, with_sources};
use crate::router::error::{ErrorKind, ProxyError};
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
    req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, SendError> {
    let addr = dial.addr;
    let mut sender = match ready_connection(dial).await {
        Ok(sender) => sender,
        Err(error) => {
            return Err(SendError {
                error,
                unsent: Some(Box::new(req)),
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
    let mut pipe = (!eos).then(|| BodyPipe::new(body, stream));
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
            Ok(rsp.map(|recv| ResponseBody::new(recv, length).boxed_unsync()))
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

/// A failed stream, with the HTTP/2 error's reason.
fn failure(addr: std::net::SocketAddr, e: &h2::Error) -> ProxyError {
    ProxyError::new(ErrorKind::Upstream, format!("{addr}: {}", with_sources(e)))
}

/// The reason to reset a stream with when its other side failed: the HTTP/2 reason
/// that side's error carries (a client's `CANCEL` stays `CANCEL`), else
/// `INTERNAL_ERROR`.
fn reset_reason(error: &(dyn std::error::Error + 'static)) -> Reason {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(reason) = e.downcast_ref::<h2::Error>().and_then(h2::Error::reason) {
            return reason;
        }
        cause = e.source();
    }
    Reason::INTERNAL_ERROR
}

/// Sends a request body on its stream, as the endpoint's flow control allows.
struct BodyPipe {
    body: ProxyBody,
    stream: SendStream<Bytes>,
    /// A chunk taken from the body, waiting for the stream to have capacity.
    waiting: Option<(Bytes, bool)>,
}

impl BodyPipe {
    fn new(body: ProxyBody, stream: SendStream<Bytes>) -> Self {
        BodyPipe {
            body,
            stream,
            waiting: None,
        }
    }

    fn pump(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        loop {
            // The endpoint reset the stream: nothing more to send (the response side
            // reports why).
            if let Poll::Ready(reset) = self.stream.poll_reset(cx) {
                return Poll::Ready(Err(match reset {
                    Ok(reason) => format!("the endpoint reset the stream: {reason}"),
                    Err(e) => e.to_string(),
                }));
            }
            if let Some((data, eos)) = self.waiting.take() {
                // An empty chunk (an end of stream of its own) needs no capacity.
                while !data.is_empty() && self.stream.capacity() == 0 {
                    match self.stream.poll_capacity(cx) {
                        Poll::Pending => {
                            self.waiting = Some((data, eos));
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.to_string())),
                        Poll::Ready(None) => {
                            return Poll::Ready(Err("the stream closed while sending".into()));
                        }
                    }
                }
                // h2 keeps what exceeds the capacity, within its send buffer.
                self.stream
                    .send_data(data, eos)
                    .map_err(|e| e.to_string())?;
                if eos {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if !data.is_empty() {
                            // A small claim on the window, not the chunk's size: claims
                            // of streams that wait would otherwise pin the connection's
                            // window.
                            self.stream.reserve_capacity(1);
                        }
                        self.waiting = Some((data, self.body.is_end_stream()));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.stream.reserve_capacity(0);
                            self.stream
                                .send_trailers(trailers)
                                .map_err(|e| e.to_string())?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(e)) => {
                    self.stream.send_reset(reset_reason(&*e));
                    return Poll::Ready(Err(format!("the request body failed: {e}")));
                }
                // The body ended without a frame saying so: an empty one does.
                None => self.waiting = Some((Bytes::new(), true)),
            }
        }
    }
}

impl Future for BodyPipe {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().pump(cx).map(|sent| {
            if let Err(why) = sent {
                tracing::debug!(why, "request body not sent to the end");
            }
        })
    }
}

/// A response body from an endpoint's stream, returning flow-control capacity to the
/// endpoint as it is read. A reset arrives as an error with the endpoint's reason, so
/// the client's stream is reset with it too (see [`cut_short`]).
struct ResponseBody {
    recv: RecvStream,
    data_done: bool,
    length: Option<u64>,
}

impl ResponseBody {
    fn new(recv: RecvStream, length: Option<u64>) -> Self {
        ResponseBody {
            recv,
            data_done: false,
            length,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(cut_short(e)))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(cut_short(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.length
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// The error of a response body that a reset ended before its end. `NO_ERROR` is the
/// one reason not passed on: the endpoint meant "stop sending, the response is
/// complete" (RFC 9113 section 8.1), but h2 reports a reset as an error only when the
/// response was not complete, and a client told `NO_ERROR` would take the truncated
/// body for a whole one. Without an h2 error among its sources, the client's stream is
/// reset with `INTERNAL_ERROR`.
fn cut_short(e: h2::Error) -> BoxError {
    if e.reason() == Some(Reason::NO_ERROR) {
        format!("the endpoint ended the response before its end: {e}").into()
    } else {
        Box::new(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps another, as hyper's errors wrap h2's.
    #[derive(Debug)]
    struct Wrapped(h2::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the client's body failed")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_reset_keeps_the_reason_found_among_the_sources() {
        let cancel = Wrapped(h2::Error::from(Reason::CANCEL));
        assert_eq!(reset_reason(&cancel), Reason::CANCEL);
        let io = std::io::Error::other("broken pipe");
        assert_eq!(reset_reason(&io), Reason::INTERNAL_ERROR);
    }

    #[test]
    fn a_response_cut_short_with_no_error_resets_the_client_with_internal_error() {
        let quiet = cut_short(h2::Error::from(Reason::NO_ERROR));
        assert_eq!(reset_reason(&*quiet), Reason::INTERNAL_ERROR);
        assert!(quiet.to_string().contains("before its end"), "{quiet}");
        let cancelled = cut_short(h2::Error::from(Reason::CANCEL));
        assert_eq!(reset_reason(&*cancelled), Reason::CANCEL);
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
