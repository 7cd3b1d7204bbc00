//! The one place where anything that goes wrong while routing becomes a response.
//!
//! Every phase returns a [`ProxyError`] with a kind; [`ProxyError::response`] maps the
//! kind to Linkerd's status codes (400 for requests Plexus cannot name or parse, 502
//! when nothing can take the request, 503 for timeouts), `l5d-err` and whether the
//! request was certainly never sent.

use http::StatusCode;
use plexus_http::ErrorResponse;

/// What kind of failure, which decides the status and retryability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request could not be named (400).
    Unidentified,
    /// An `l5d-dtab` / `l5d-ctx-dtab` header or a named path did not parse (400).
    BadRequest,
    /// Too many proxies in `Via` (400).
    CallDepth,
    /// The name bound to nothing, or to no endpoints (502).
    NoHosts,
    /// Binding failed (502).
    Binding,
    /// Discovery has not answered yet; the router waits, then times out (503).
    Pending,
    /// No connection could be made to the chosen endpoint (502, never sent).
    Connect,
    /// The endpoint failed while the request was in flight (502).
    Upstream,
    /// The endpoint refused the HTTP/2 stream without acting on it (`REFUSED_STREAM`, or
    /// above the last stream id of its `GOAWAY`): requeued; 502 and retryable when not.
    Refused,
    /// A deadline or timeout passed (503).
    Timeout,
}

/// A routing failure and its message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProxyError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl ProxyError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProxyError {
            kind,
            message: message.into(),
        }
    }

    /// The status Linkerd answers with for this kind.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::Unidentified | ErrorKind::BadRequest | ErrorKind::CallDepth => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::NoHosts
            | ErrorKind::Binding
            | ErrorKind::Connect
            | ErrorKind::Upstream
            | ErrorKind::Refused => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout | ErrorKind::Pending => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether no endpoint acted on the request: it never reached one, or one refused
    /// it unprocessed.
    pub fn never_sent(&self) -> bool {
        !matches!(self.kind, ErrorKind::Upstream | ErrorKind::Timeout)
    }

    /// A short label for metrics (`failures/<kind>`).
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            ErrorKind::Unidentified => "UnidentifiedRequest",
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::CallDepth => "CallDepthExceeded",
            ErrorKind::NoHosts => "NoBrokersAvailableException",
            ErrorKind::Binding => "BindingFailed",
            ErrorKind::Pending => "BindingPending",
            ErrorKind::Connect => "ConnectionFailedException",
            ErrorKind::Upstream => "UpstreamFailure",
            ErrorKind::Refused => "RefusedStream",
            ErrorKind::Timeout => "RequestTimeoutException",
        }
    }

    /// The response to send instead of forwarding.
    pub fn response(&self) -> ErrorResponse {
        let r = ErrorResponse::new(self.status(), self.message.clone());
        if self.never_sent() && self.status() == StatusCode::BAD_GATEWAY {
            r.retryable()
        } else {
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_linkerds_statuses() {
        let s = |k| ProxyError::new(k, "x").status().as_u16();
        assert_eq!(
            [
                s(ErrorKind::Unidentified),
                s(ErrorKind::BadRequest),
                s(ErrorKind::CallDepth)
            ],
            [400, 400, 400]
        );
        assert_eq!(
            [
                s(ErrorKind::NoHosts),
                s(ErrorKind::Connect),
                s(ErrorKind::Upstream)
            ],
            [502, 502, 502]
        );
        assert_eq!(s(ErrorKind::Timeout), 503);
        assert!(
            ProxyError::new(ErrorKind::Connect, "x")
                .response()
                .retryable
        );
        assert!(
            !ProxyError::new(ErrorKind::Upstream, "x")
                .response()
                .retryable
        );
        let refused = ProxyError::new(ErrorKind::Refused, "x");
        assert_eq!(refused.status(), 502);
        assert!(refused.response().retryable);
        assert!(
            !ProxyError::new(ErrorKind::BadRequest, "x")
                .response()
                .retryable
        );
    }
}
