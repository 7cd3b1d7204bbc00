//! HTTP/2 stream halves as message bodies, both ways.
//!
//! The client (streams to endpoints) and the server (streams from clients) each read
//! one half of a stream and write the other, so what a proxy owes the two sides lives
//! here once: a received half is a [`RecvBody`] that returns flow-control capacity as
//! it is read; a body is written to a sending half by a [`SendBody`], as the peer's
//! flow control allows; and a reset passes from one side to the other with its reason
//! (`CANCEL` stays `CANCEL`), so a body cut short never passes for a whole one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use http_body::{Body, Frame, SizeHint};

use super::client::http2::OpenStream;
use super::client::{BoxError, ProxyBody};

/// The receiving half of a stream as a body, returning flow-control capacity to the
/// peer as it is read. A reset arrives as an error with the peer's reason, so the
/// other side's stream is reset with it too (see [`cut_short`]).
pub struct RecvBody {
    recv: RecvStream,
    data_done: bool,
    /// The declared `Content-Length` (h2 checks the data against it).
    length: Option<u64>,
    /// A response's stream, counted on its connection to the endpoint until the body
    /// is dropped (see [`crate::router::client::http2`]).
    counted: Option<OpenStream>,
}

impl RecvBody {
    /// Reads `recv`, whose head declared `length`.
    pub fn new(recv: RecvStream, length: Option<u64>) -> Self {
        RecvBody {
            recv,
            data_done: false,
            length,
            counted: None,
        }
    }

    /// Keeps the stream counted on its connection while the body lives.
    pub(crate) fn counted(mut self, stream: OpenStream) -> Self {
        self.counted = Some(stream);
        self
    }
}

impl Body for RecvBody {
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

/// The error of a body that a reset ended before its end. `NO_ERROR` is the one reason
/// not passed on: a peer means by it "stop sending, my message is complete" (RFC 9113
/// section 8.1), but h2 reports a reset as an error only when the message was not
/// complete, and a peer told `NO_ERROR` would take the truncated body for a whole one.
/// Without an h2 error among its sources, the other side's stream is reset with
/// `INTERNAL_ERROR`.
fn cut_short(e: h2::Error) -> BoxError {
    if e.reason() == Some(Reason::NO_ERROR) {
        format!("the peer ended the stream before its end: {e}").into()
    } else {
        Box::new(e)
    }
}

/// The reason to reset a stream with when its other side failed: the HTTP/2 reason
/// that side's error carries (a client's `CANCEL` stays `CANCEL`), else
/// `INTERNAL_ERROR`.
pub fn reset_reason(error: &(dyn std::error::Error + 'static)) -> Reason {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(reason) = e.downcast_ref::<h2::Error>().and_then(h2::Error::reason) {
            return reason;
        }
        cause = e.source();
    }
    Reason::INTERNAL_ERROR
}

/// The largest first chunk of a body sent before the stream has capacity for it (the
/// default HTTP/2 frame size).
const FIRST_CHUNK_AT_ONCE: usize = 16 * 1024;

/// Writes a body to the sending half of its stream, as the peer's flow control allows.
/// A body that fails resets the stream with the failure's reason; a peer that resets
/// the stream ends the sending, and the body is dropped (which resets its own source).
///
/// The body's first chunk, when small, is handed to the stream at once, capacity or
/// not: `h2` keeps it until the stream is open and the window lets it out. A request's
/// stream is given capacity only once its connection's task has sent the stream's
/// head, so waiting for it would cost every request with a body (every gRPC call) a
/// second turn through the request's futures, after that task. Later chunks wait for
/// capacity, which is what bounds what `h2` holds for a stream.
pub struct SendBody {
    body: ProxyBody,
    stream: SendStream<Bytes>,
    /// A chunk taken from the body, waiting for the stream to have capacity.
    waiting: Option<(Bytes, bool)>,
    /// Whether a chunk was handed to the stream yet.
    started: bool,
    /// What the body is, for the log: "request body", "response body".
    what: &'static str,
}

impl SendBody {
    /// Sends `body` on `stream`, whose head went without `END_STREAM`.
    pub fn new(body: ProxyBody, stream: SendStream<Bytes>, what: &'static str) -> Self {
        SendBody {
            body,
            stream,
            waiting: None,
            started: false,
            what,
        }
    }

    fn pump(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        loop {
            if let Some((data, eos)) = self.waiting.take() {
                // An empty chunk (an end of stream of its own) needs no capacity, nor a
                // small first one (see above).
                let at_once = !self.started && data.len() <= FIRST_CHUNK_AT_ONCE;
                while !data.is_empty() && !at_once && self.stream.capacity() == 0 {
                    match self.stream.poll_capacity(cx) {
                        Poll::Pending => {
                            self.waiting = Some((data, eos));
                            return self.wait(cx);
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.to_string())),
                        Poll::Ready(None) => {
                            return Poll::Ready(Err("the stream closed while sending".into()));
                        }
                    }
                }
                // h2 keeps what exceeds the capacity, within its send buffer. A stream
                // the peer reset fails here.
                self.started = true;
                self.stream
                    .send_data(data, eos)
                    .map_err(|e| e.to_string())?;
                if eos {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) else {
                return self.wait(cx);
            };
            match frame {
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
                    return Poll::Ready(Err(format!("the body failed: {e}")));
                }
                // The body ended without a frame saying so: an empty one does.
                None => self.waiting = Some((Bytes::new(), true)),
            }
        }
    }

    /// Waits (for the body, or for the peer's window) unless the peer has reset the
    /// stream, which ends the sending: the body is dropped, and its source reset. Asked
    /// only before waiting: a stream that can go on finds a reset when it sends.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        match self.stream.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => {
                Poll::Ready(Err(format!("the peer reset the stream: {reason}")))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.to_string())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Future for SendBody {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.pump(cx).map(|sent| {
            if let Err(why) = sent {
                tracing::debug!(why, body = this.what, "not sent to the end");
            }
        })
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

    /// A request's stream has no capacity until its connection's task has sent the
    /// head; a small first chunk still goes to `h2` on the first poll, and reaches
    /// the peer whole.
    #[tokio::test(flavor = "current_thread")]
    async fn a_small_first_chunk_goes_before_the_stream_has_capacity() {
        use http_body_util::{BodyExt, Full};

        let (near, far) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(far).await.unwrap();
            let (req, _respond) = conn.accept().await.unwrap().unwrap();
            tokio::spawn(async move { while conn.accept().await.is_some() {} });
            let mut body = req.into_body();
            let mut got = Vec::new();
            while let Some(data) = body.data().await {
                let data = data.unwrap();
                let _ = body.flow_control().release_capacity(data.len());
                got.extend_from_slice(&data);
            }
            got
        });
        let (sender, conn) = h2::client::handshake(near).await.unwrap();
        tokio::spawn(conn);
        let mut sender = sender.ready().await.unwrap();
        let (_response, stream) = sender
            .send_request(http::Request::post("http://x/y").body(()).unwrap(), false)
            .unwrap();
        assert_eq!(stream.capacity(), 0, "the stream is not open yet");
        let body = Full::new(Bytes::from_static(b"hello"))
            .map_err(|e| match e {})
            .boxed_unsync();
        let mut send = SendBody::new(body, stream, "request body");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut send).poll(&mut cx).is_ready());
        assert_eq!(server.await.unwrap(), b"hello");
    }

    #[test]
    fn a_reset_keeps_the_reason_found_among_the_sources() {
        let cancel = Wrapped(h2::Error::from(Reason::CANCEL));
        assert_eq!(reset_reason(&cancel), Reason::CANCEL);
        let io = std::io::Error::other("broken pipe");
        assert_eq!(reset_reason(&io), Reason::INTERNAL_ERROR);
    }

    #[test]
    fn a_body_cut_short_with_no_error_resets_the_other_side_with_internal_error() {
        let quiet = cut_short(h2::Error::from(Reason::NO_ERROR));
        assert_eq!(reset_reason(&*quiet), Reason::INTERNAL_ERROR);
        assert!(quiet.to_string().contains("before its end"), "{quiet}");
        let cancelled = cut_short(h2::Error::from(Reason::CANCEL));
        assert_eq!(reset_reason(&*cancelled), Reason::CANCEL);
    }
}
