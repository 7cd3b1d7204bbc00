//! HTTP/2 from clients, on the `h2` crate directly: the server of h2 routers.
//!
//! Every stream is a future of its connection's own task (all of them in one
//! `FuturesUnordered`), not a task of its own: the stream's request goes through the
//! router's pipeline, and its response head and body go back on the stream from the
//! same future. A connection's task is woken once for whatever its streams and its
//! socket have ready, and polls only the streams that can go on, so a stalled stream
//! holds back no other. This is the other half of every gRPC call's hot path (the
//! client half is `crate::router::client::http2`), which is why it is not hyper's
//! server: that spawns a task per stream, wraps each request body and pipes each
//! response through more futures of its own (measured in `benches/README.md`).
//!
//! What a proxy owes a client is kept: a client that resets its stream (or closes the
//! connection) drops the request's future, which resets the stream to the endpoint with
//! `CANCEL`; a response body that fails resets the client's stream with the reason
//! (see [`crate::router::h2body`]); a drain sends GOAWAY and lets the streams in flight
//! finish.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{Request, Response, header};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::{HEADER_READ_TIMEOUT, Requests};
use crate::router::H2Settings;
use crate::router::client::ProxyBody;
use crate::router::h2body::{RecvBody, SendBody};
use crate::router::http::RequestBody;

/// The connection's receive window, shared by its streams (as hyper's server had it).
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Response data buffered per stream beyond what the client's window lets out.
const MAX_SEND_BUFFER: usize = 400 * 1024;

/// Serves one client connection until it ends, or until a drain has let its streams
/// finish.
pub(super) async fn serve<IO>(
    io: IO,
    settings: &H2Settings,
    requests: &Requests,
    mut drain: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(settings.initial_stream_window)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(settings.max_frame_size)
        .max_header_list_size(settings.max_header_list_size)
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_reset_streams(crate::router::H2_RESET_STREAMS_REMEMBERED)
        .handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(HEADER_READ_TIMEOUT, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "HTTP/2 handshake with a client failed");
            return;
        }
        Err(_) => {
            tracing::debug!(
                after = ?HEADER_READ_TIMEOUT,
                "a client sent no HTTP/2 connection preface; closing"
            );
            return;
        }
    };
    let mut streams = FuturesUnordered::new();
    let mut draining = *drain.borrow();
    if draining {
        conn.graceful_shutdown();
    }
    loop {
        tokio::select! {
            biased;
            // The connection: its frames read and written, its new streams taken, and
            // the streams that can go on polled. Ready when it has ended (the streams
            // still open are dropped, which cancels them).
            () = poll_fn(|cx| {
                loop {
                    match conn.poll_accept(cx) {
                        Poll::Ready(Some(Ok((req, respond)))) => {
                            streams.push(open(requests, req, respond));
                        }
                        Poll::Ready(Some(Err(e))) => {
                            tracing::debug!(error = %e, "client HTTP/2 connection failed");
                            return Poll::Ready(());
                        }
                        Poll::Ready(None) => return Poll::Ready(()),
                        Poll::Pending => break,
                    }
                }
                // What the streams write wakes this task again, to send it.
                while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
                Poll::Pending
            }) => return,
            changed = drain.changed(), if !draining => {
                if changed.is_err() || *drain.borrow() {
                    draining = true;
                    conn.graceful_shutdown();
                }
            }
        }
    }
}

/// Opens a stream: its request goes to the router.
fn open(
    requests: &Requests,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Stream<impl Future<Output = Response<ProxyBody>> + use<>> {
    let (parts, recv) = req.into_parts();
    if parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        // The router takes the body itself and does not forward `Expect`, so it answers
        // for the endpoint at once, as hyper's HTTP/1.1 server does when a body is read;
        // a client would otherwise wait for its own timeout before sending the body.
        let mut go_on = Response::new(());
        *go_on.status_mut() = http::StatusCode::CONTINUE;
        let _ = respond.send_informational(go_on);
    }
    let length = plexus_http::headers::content_length(&parts.headers);
    let req = Box::new(Request::from_parts(
        parts,
        RequestBody::H2(RecvBody::new(recv, length)),
    ));
    Stream::Answering {
        answer: crate::router::boxed(|| requests.serve(req)),
        respond,
    }
}

/// One stream, from the router's answer to the end of its response. Written out as
/// states rather than as an `async fn`: a stream is moved whole into the connection's
/// set when it opens, and this keeps it to a few words.
enum Stream<A> {
    /// Waiting for the router's answer. The request's state is boxed: it is kilobytes.
    Answering {
        answer: Pin<Box<A>>,
        respond: SendResponse<Bytes>,
    },
    /// Sending the response body.
    Sending(SendBody),
    /// Over.
    Done,
}

impl<A: Future<Output = Response<ProxyBody>>> Future for Stream<A> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match this {
            Stream::Answering { answer, respond } => {
                let Poll::Ready(rsp) = answer.as_mut().poll(cx) else {
                    // The client reset the stream, or its connection ended: the request
                    // is dropped, which cancels it upstream.
                    if respond.poll_reset(cx).is_ready() {
                        *this = Stream::Done;
                        return Poll::Ready(());
                    }
                    return Poll::Pending;
                };
                match respond_with(respond, rsp) {
                    Some(body) => {
                        *this = Stream::Sending(body);
                        Pin::new(this).poll(cx)
                    }
                    None => {
                        *this = Stream::Done;
                        Poll::Ready(())
                    }
                }
            }
            Stream::Sending(body) => Pin::new(body).poll(cx),
            Stream::Done => Poll::Ready(()),
        }
    }
}

/// Sends the response head; what is left to send of the body, if anything.
fn respond_with(respond: &mut SendResponse<Bytes>, rsp: Response<ProxyBody>) -> Option<SendBody> {
    let (mut parts, body) = rsp.into_parts();
    // HTTP/2 has no connection-specific headers (RFC 9113 section 8.2.2).
    plexus_http::headers::strip_hop_by_hop(&mut parts.headers, Default::default());
    let eos = body.is_end_stream();
    if !eos && let Some(len) = body.size_hint().exact() {
        parts
            .headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| len.into());
    }
    match respond.send_response(Response::from_parts(parts, ()), eos) {
        Ok(sending) => (!eos).then(|| SendBody::new(body, sending, "response body")),
        // The client reset the stream as the answer came, or the connection is gone.
        Err(e) if e.is_reset() || e.is_go_away() || e.is_io() => {
            tracing::debug!(error = %e, "response not sent: the stream has ended");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "HTTP/2 cannot carry a response head; resetting the stream");
            respond.send_reset(Reason::INTERNAL_ERROR);
            None
        }
    }
}
