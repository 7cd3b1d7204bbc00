//! The responses Plexus itself generates when it cannot route or forward a request.
//!
//! Each carries `l5d-err` (the message URL-encoded as Linkerd does: ISO-8859-1, `+` for
//! space, cut to the header size limit) and the message as a `text/plain` body, so both
//! tools and people see why. `l5d-retryable: true` marks requests that were never sent.

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::headers::{L5D_ERR, L5D_RETRYABLE};

/// Characters `java.net.URLEncoder` leaves alone: letters, digits, `.`, `-`, `*`, `_`.
const URL_ENCODER: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'*')
    .remove(b'_')
    .remove(b' ');

/// Encodes a message for `l5d-err` like `URLEncoder.encode(msg, "ISO-8859-1")`: spaces
/// become `+`, characters beyond Latin-1 become `?`, and the result is cut to
/// `max_len` bytes without splitting an escape.
pub fn encode_l5d_err(message: &str, max_len: usize) -> String {
    let latin1: String = message
        .chars()
        .map(|c| if (c as u32) < 256 { c } else { '?' })
        .collect();
    let mut out = String::with_capacity(latin1.len());
    for c in latin1.chars() {
        let piece = if c == ' ' {
            "+".to_string()
        } else if (c as u32) < 128 {
            let mut buf = [0u8; 4];
            utf8_percent_encode(c.encode_utf8(&mut buf), URL_ENCODER).to_string()
        } else {
            format!("%{:02X}", c as u32)
        };
        if out.len() + piece.len() > max_len {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// An error response Plexus answers with instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The status (400, 502, 503, ...).
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// Whether the request certainly never reached a server (safe to retry).
    pub retryable: bool,
}

impl ErrorResponse {
    /// An error response.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ErrorResponse {
            status,
            message: message.into(),
            retryable: false,
        }
    }

    /// Marks the request as never sent.
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// The response head and body. `max_header_bytes` bounds `l5d-err`,
    /// `max_body_bytes` the body.
    pub fn into_parts(
        self,
        max_header_bytes: usize,
        max_body_bytes: usize,
    ) -> (http::response::Parts, Bytes) {
        let mut body = self.message.clone().into_bytes();
        body.truncate(max_body_bytes);
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = self.status;
        let encoded = encode_l5d_err(&self.message, max_header_bytes);
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            parts.headers.insert(L5D_ERR, v);
        }
        if self.retryable {
            parts
                .headers
                .insert(L5D_RETRYABLE, HeaderValue::from_static("true"));
        }
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        // An origin's answer (RFC 9110 section 6.6.1): Plexus is the origin of this one.
        // HTTP/1.1 servers add it too, but not Plexus's own HTTP/2 server.
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
            parts.headers.insert(header::DATE, date);
        }
        (parts, Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l5d_err_is_url_encoded_like_java() {
        assert_eq!(
            encode_l5d_err(
                "No hosts are available for /svc/x, Dtab.base=[/svc=>/#/io.l5d.fs]",
                8192
            ),
            "No+hosts+are+available+for+%2Fsvc%2Fx%2C+Dtab.base%3D%5B%2Fsvc%3D%3E%2F%23%2Fio.l5d.fs%5D"
        );
        assert_eq!(encode_l5d_err("é ☃ a*b_c-d.e", 100), "%E9+%3F+a*b_c-d.e");
        assert_eq!(encode_l5d_err("a/b", 3), "a");
        assert_eq!(encode_l5d_err("a/b", 4), "a%2F");
    }

    #[test]
    fn error_responses_carry_the_message_twice() {
        let (parts, body) = ErrorResponse::new(StatusCode::BAD_GATEWAY, "no hosts")
            .retryable()
            .into_parts(8192, 5);
        assert_eq!(parts.status, 502);
        assert_eq!(parts.headers["l5d-err"], "no+hosts");
        assert_eq!(parts.headers["l5d-retryable"], "true");
        assert_eq!(parts.headers["content-length"], "5");
        assert_eq!(&body[..], b"no ho");
        let date = parts.headers["date"].to_str().unwrap();
        let sent = httpdate::parse_http_date(date).unwrap();
        let age = SystemTime::now().duration_since(sent).unwrap_or_default();
        assert!(age.as_secs() < 3600, "{date}");
    }
}
