//! The body of a request as a router receives it, whichever server read it.
//!
//! HTTP/1.1 from applications is served by hyper; HTTP/2 (h2 routers, and Plexus peers
//! that upgraded the hop to an HTTP/1.1 router) by Plexus's own HTTP/2 server on the
//! `h2` crate (`crate::server::http2`). The pipeline takes either as one type, so its
//! phases are written once and compiled once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::router::client::BoxError;
use crate::router::h2body::RecvBody;

/// A request body from hyper's server or from an HTTP/2 stream.
pub enum RequestBody {
    /// Read by hyper.
    Hyper(Incoming),
    /// The receiving half of an HTTP/2 stream.
    H2(RecvBody),
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> Self {
        RequestBody::Hyper(body)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|e| -> BoxError { Box::new(e) }))),
            RequestBody::H2(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Hyper(body) => body.is_end_stream(),
            RequestBody::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Hyper(body) => body.size_hint(),
            RequestBody::H2(body) => body.size_hint(),
        }
    }
}
