//! Watching a response stream to its end.
//!
//! A gRPC call that streamed messages reports its status in the trailers, after the
//! response head was passed on (and after retries were ruled out). [`OnEnd`] passes a
//! body through unchanged and calls its callback exactly once, with how the stream
//! ended: trailers, the end without trailers, a failure, or the body dropped before its
//! end (the client went away). The router uses it only for responses whose classifier
//! must see the end ([`Classifier::judges_stream_end`](crate::router::retry::Classifier));
//! every other response is passed on as it came, without a wrapper.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// How a watched stream ended.
#[derive(Debug)]
pub(super) enum End<'a> {
    /// The trailers, the stream's last frame.
    Trailers(&'a HeaderMap),
    /// The end of the stream, without trailers.
    Eos,
    /// The stream failed (reset, or its connection was lost).
    Failed,
    /// The body was dropped before its end: the client went away.
    Dropped,
}

/// A body passed through unchanged, with `on_end` called once when it ends.
pub(super) struct OnEnd<B, F>
where
    B: Body,
    F: FnOnce(End<'_>),
{
    inner: B,
    on_end: Option<F>,
}

impl<B, F> OnEnd<B, F>
where
    B: Body,
    F: FnOnce(End<'_>),
{
    /// Watches `inner`.
    pub(super) fn new(inner: B, on_end: F) -> Self {
        OnEnd {
            inner,
            on_end: Some(on_end),
        }
    }

    fn end(&mut self, end: End<'_>) {
        if let Some(f) = self.on_end.take() {
            f(end);
        }
    }
}

impl<B, F> Body for OnEnd<B, F>
where
    B: Body + Unpin,
    F: FnOnce(End<'_>) + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) => this.end(End::Trailers(trailers)),
                // The last data frame: whoever sends the body may stop here.
                None if this.inner.is_end_stream() => this.end(End::Eos),
                None => {}
            },
            Poll::Ready(Some(Err(_))) => this.end(End::Failed),
            Poll::Ready(None) => this.end(End::Eos),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, F> Drop for OnEnd<B, F>
where
    B: Body,
    F: FnOnce(End<'_>),
{
    fn drop(&mut self) {
        if self.on_end.is_some() {
            // A body already at its end may be dropped unpolled (hyper ends the stream
            // when `is_end_stream` says so); anything else was abandoned.
            let end = if self.inner.is_end_stream() {
                End::Eos
            } else {
                End::Dropped
            };
            self.end(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use futures::SinkExt;
    use futures::channel::mpsc;
    use http::HeaderValue;
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    type Item = Result<Frame<Bytes>, &'static str>;

    /// What the callback saw, one line per call.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl Seen {
        fn callback(&self) -> impl FnOnce(End<'_>) + Unpin + use<> {
            let seen = self.0.clone();
            move |end: End<'_>| {
                let line = match end {
                    End::Trailers(t) => format!(
                        "trailers {}",
                        t.get("grpc-status")
                            .map_or("-", |v| v.to_str().unwrap_or("?"))
                    ),
                    other => format!("{other:?}"),
                };
                seen.lock().expect("seen").push(line);
            }
        }

        fn lines(&self) -> Vec<String> {
            self.0.lock().expect("seen").clone()
        }
    }

    fn channel() -> (mpsc::Sender<Item>, StreamBody<mpsc::Receiver<Item>>) {
        let (tx, rx) = mpsc::channel(8);
        (tx, StreamBody::new(rx))
    }

    fn status(code: &'static str) -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(code));
        trailers
    }

    #[tokio::test]
    async fn trailers_end_the_stream_once_and_pass_unchanged() {
        let seen = Seen::default();
        let (mut tx, inner) = channel();
        let mut body = OnEnd::new(inner, seen.callback());
        tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
            .await
            .expect("send");
        tx.send(Ok(Frame::data(Bytes::from_static(b"two"))))
            .await
            .expect("send");
        tx.send(Ok(Frame::trailers(status("14"))))
            .await
            .expect("send");
        drop(tx);
        let collected = (&mut body).collect().await.expect("body");
        assert_eq!(collected.trailers().expect("trailers")["grpc-status"], "14");
        assert_eq!(collected.to_bytes(), "onetwo");
        assert_eq!(seen.lines(), ["trailers 14"]);
        drop(body);
        assert_eq!(seen.lines(), ["trailers 14"], "called again when dropped");
    }

    #[tokio::test]
    async fn a_stream_without_trailers_ends_at_its_last_frame() {
        // A body that knows its end: seen with the last data frame, before any poll
        // returns `None` (a sender may stop polling there).
        let seen = Seen::default();
        let mut body = OnEnd::new(Full::new(Bytes::from_static(b"all")), seen.callback());
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().expect("data"), "all");
        assert_eq!(seen.lines(), ["Eos"]);
        assert!(body.frame().await.is_none());
        drop(body);
        assert_eq!(seen.lines(), ["Eos"]);

        // One that learns it only from the next poll.
        let seen = Seen::default();
        let (mut tx, inner) = channel();
        let mut body = OnEnd::new(inner, seen.callback());
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .expect("send");
        drop(tx);
        assert!(body.frame().await.is_some());
        assert!(seen.lines().is_empty());
        assert!(body.frame().await.is_none());
        assert_eq!(seen.lines(), ["Eos"]);
    }

    #[tokio::test]
    async fn failures_and_drops() {
        let seen = Seen::default();
        let (mut tx, inner) = channel();
        let mut body = OnEnd::new(inner, seen.callback());
        tx.send(Ok(Frame::data(Bytes::from_static(b"partial"))))
            .await
            .expect("send");
        tx.send(Err("reset")).await.expect("send");
        assert!(body.frame().await.expect("frame").is_ok());
        assert_eq!(body.frame().await.expect("frame").err(), Some("reset"));
        assert_eq!(seen.lines(), ["Failed"]);
        drop(body);
        assert_eq!(seen.lines(), ["Failed"]);

        // Dropped mid-stream: the client went away.
        let seen = Seen::default();
        let (mut tx, inner) = channel();
        let mut body = OnEnd::new(inner, seen.callback());
        tx.send(Ok(Frame::data(Bytes::from_static(b"partial"))))
            .await
            .expect("send");
        assert!(body.frame().await.is_some());
        drop(body);
        assert_eq!(seen.lines(), ["Dropped"]);

        // Dropped unpolled, but already at its end (nothing left to send).
        let seen = Seen::default();
        drop(OnEnd::new(Full::new(Bytes::new()), seen.callback()));
        assert_eq!(seen.lines(), ["Eos"]);
    }

    #[test]
    fn it_is_transparent() {
        let body = OnEnd::new(Full::new(Bytes::from_static(b"12345")), |_: End<'_>| {});
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let empty = OnEnd::new(Full::new(Bytes::new()), |_: End<'_>| {});
        assert!(empty.is_end_stream());
    }
}
