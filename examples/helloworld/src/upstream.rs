//! The client that asks the `-target` service for its answer.
//!
//! Each call opens one HTTP/1.1 connection and sends `GET /`. Without a proxy
//! it connects to the target itself and sends the origin-form request line;
//! with `http_proxy` set (as in a Linkerd mesh, where it names the node's
//! router) it connects to the proxy and sends the absolute form
//! `GET http://<target>/ HTTP/1.1`, always with `Host: <target>`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a whole upstream call may take; above the 10s latency cap so a
/// slow but working target still answers.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest upstream body read.
const MAX_BODY: usize = 1 << 20;

/// Why the target's answer could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled (the target or the proxy).
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The body could not be read or was too large.
    #[error("cannot read the response body: {0}")]
    Body(String),
    /// The target answered, but not with 200.
    #[error("upstream answered {status}: {body}")]
    Status {
        /// The status answered.
        status: StatusCode,
        /// The body answered, decoded lossily.
        body: String,
    },
    /// No answer within [`UPSTREAM_TIMEOUT`].
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A `-target` authority, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The authority as given, sent as the `Host` header.
    host: HeaderValue,
    /// `http://<authority>/`, the absolute-form request target.
    uri: Uri,
    /// `host:port` to dial when no proxy is used (port 80 by default).
    dial: String,
}

impl Target {
    /// Validates a target authority such as `world` or `127.0.0.1:7778`.
    pub(crate) fn parse(authority: &str) -> Result<Target, String> {
        let uri: Uri = format!("http://{authority}/")
            .parse()
            .map_err(|_| "expected host or host:port".to_owned())?;
        let (dial, parsed_authority) = dial_address(&uri)?;
        if parsed_authority != authority
            || authority.contains('@')
            || uri.path() != "/"
            || uri.query().is_some()
        {
            return Err("expected host or host:port".to_owned());
        }
        let host = HeaderValue::from_str(authority)
            .map_err(|_| "expected host or host:port".to_owned())?;
        Ok(Target { host, uri, dial })
    }
}

/// The `http_proxy` setting, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// `host:port` of the proxy.
    dial: String,
}

impl Proxy {
    /// Parses `host:port` or `http://host:port[/]`; port 80 by default.
    pub(crate) fn parse(value: &str) -> Result<Proxy, String> {
        let value = value.trim();
        let with_scheme = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|_| format!("invalid proxy address {value:?}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("unsupported proxy scheme in {value:?}"));
        }
        let (dial, _) = dial_address(&uri)?;
        Ok(Proxy { dial })
    }
}

/// The `host:port` to dial for an `http://` URI, and its authority text.
fn dial_address(uri: &Uri) -> Result<(String, &str), String> {
    let authority = uri
        .authority()
        .ok_or_else(|| "expected host or host:port".to_owned())?;
    let host = authority.host();
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    let port = authority.port_u16().unwrap_or(80);
    Ok((format!("{host}:{port}"), authority.as_str()))
}

/// Calls one target, directly or through a proxy.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    target: Target,
    proxy: Option<Proxy>,
}

impl Upstream {
    /// A client for `target`, going through `proxy` when given.
    pub(crate) fn new(target: Target, proxy: Option<Proxy>) -> Self {
        Upstream { target, proxy }
    }

    /// The URL requested, for messages.
    pub(crate) fn url(&self) -> &Uri {
        &self.target.uri
    }

    /// Sends `GET /` with the given extra headers and returns the body of a
    /// 200 answer.
    pub(crate) async fn get(&self, extra_headers: HeaderMap) -> Result<Bytes, UpstreamError> {
        tokio::time::timeout(UPSTREAM_TIMEOUT, self.exchange(extra_headers))
            .await
            .unwrap_or(Err(UpstreamError::Timeout(UPSTREAM_TIMEOUT)))
    }

    async fn exchange(&self, extra_headers: HeaderMap) -> Result<Bytes, UpstreamError> {
        let (dial, request_target) = match &self.proxy {
            Some(proxy) => (&proxy.dial, self.target.uri.clone()),
            None => (&self.target.dial, Uri::from_static("/")),
        };
        let stream =
            TcpStream::connect(dial.as_str())
                .await
                .map_err(|source| UpstreamError::Connect {
                    addr: dial.clone(),
                    source,
                })?;
        // Best effort: a failure only costs latency.
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);

        let mut request = Request::new(Empty::<Bytes>::new());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = request_target;
        *request.headers_mut() = extra_headers;
        request.headers_mut().insert(HOST, self.target.host.clone());

        let result = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| UpstreamError::Body(e.to_string()))?
                .to_bytes();
            if status == StatusCode::OK {
                Ok(body)
            } else {
                Err(UpstreamError::Status {
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                })
            }
        }
        .await;
        drop(sender);
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let target = Target::parse("world").expect("valid");
        assert_eq!(target.dial, "world:80");
        assert_eq!(target.uri.to_string(), "http://world/");
        let target = Target::parse("127.0.0.1:7778").expect("valid");
        assert_eq!(target.dial, "127.0.0.1:7778");
        assert_eq!(target.host, "127.0.0.1:7778");
        let target = Target::parse("[::1]:7778").expect("valid");
        assert_eq!(target.dial, "[::1]:7778");
        for bad in [
            "a b",
            "world/path",
            "world?x",
            "",
            "http://world",
            "u@world",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn proxies() {
        assert_eq!(
            Proxy::parse("127.0.1.1:4140").map(|p| p.dial),
            Ok("127.0.1.1:4140".to_owned())
        );
        assert_eq!(
            Proxy::parse("http://127.0.1.1:4140/").map(|p| p.dial),
            Ok("127.0.1.1:4140".to_owned())
        );
        assert_eq!(
            Proxy::parse("node").map(|p| p.dial),
            Ok("node:80".to_owned())
        );
        assert!(Proxy::parse("https://node:4140").is_err());
        assert!(Proxy::parse("not a proxy").is_err());
    }
}
