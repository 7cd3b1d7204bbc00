//! Request handling: the greeting itself and the two control endpoints.
//!
//! Every path answers the greeting: wait the configured latency, fail with
//! 500 at the configured rate, otherwise answer the text, followed by the
//! target's answer when `-target` is set, and `!`. `POST /setLatency` and
//! `POST /setFailureRate` change those two settings while running.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::flags::parse_failure_rate;
use crate::settings::Settings;
use crate::upstream::Upstream;
use plexus_examples::duration;

/// The body type of every answer.
pub(crate) type Body = Full<Bytes>;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct App {
    /// The text answered, with the ` (<POD_IP>)` suffix already applied.
    pub(crate) text: String,
    /// Whether to answer `{"api_result": ...}` as JSON.
    pub(crate) json: bool,
    /// Latency and failure rate.
    pub(crate) settings: Settings,
    /// The target to call, if any.
    pub(crate) upstream: Option<Upstream>,
}

/// Answers one request; never fails at the HTTP level.
pub(crate) async fn handle<B>(
    app: Arc<App>,
    request: Request<B>,
) -> Result<Response<Body>, Infallible> {
    Ok(match control_endpoint(&app.settings, &request) {
        Some(response) => response,
        None => greet(&app, request.headers()).await,
    })
}

/// Answers `/setLatency` and `/setFailureRate` (the gRPC mode serves them
/// too); `None` for every other path.
pub(crate) fn control_endpoint<B>(
    settings: &Settings,
    request: &Request<B>,
) -> Option<Response<Body>> {
    match request.uri().path() {
        "/setLatency" => Some(control(request, "latency", |value| {
            let latency = duration::parse(value).map_err(|e| e.to_string())?;
            settings.set_latency(latency);
            Ok(())
        })),
        "/setFailureRate" => Some(control(request, "failureRate", |value| {
            let rate = parse_failure_rate(value)
                .map_err(|reason| format!("invalid failure rate {value:?}: {reason}"))?;
            settings.set_failure_rate(rate);
            Ok(())
        })),
        _ => None,
    }
}

/// Handles a control endpoint: `POST` only, with one query parameter.
fn control<B>(
    request: &Request<B>,
    param: &str,
    apply: impl FnOnce(&str) -> Result<(), String>,
) -> Response<Body> {
    if request.method() != Method::POST {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} only accepts POST\n", request.uri().path()),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let Some(value) = query_param(request.uri().query().unwrap_or(""), param) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("missing query parameter {param}\n"),
        );
    };
    match apply(&value) {
        Ok(()) => text(StatusCode::OK, "ok".to_owned()),
        Err(message) => text(StatusCode::BAD_REQUEST, format!("{message}\n")),
    }
}

/// The greeting.
async fn greet(app: &App, headers: &HeaderMap) -> Response<Body> {
    let latency = app.settings.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if app.settings.should_fail() {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}\n", app.settings.injected_failure()),
        );
    }

    let mut result = app.text.clone();
    if let Some(upstream) = &app.upstream {
        let forwarded: HeaderMap = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("l5d-ctx"))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        match upstream.get(forwarded).await {
            Ok(body) => {
                result.push(' ');
                result.push_str(&String::from_utf8_lossy(&body));
            }
            Err(error) => {
                eprintln!("helloworld: GET {} failed: {error}", upstream.url());
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("helloworld: GET {} failed: {error}\n", upstream.url()),
                );
            }
        }
    }
    result.push('!');

    if app.json {
        let body = serde_json::json!({ "api_result": result }).to_string();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    } else {
        text(StatusCode::OK, result)
    }
}

/// A `text/plain` answer.
fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The first value of `name` in a URL query string, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key)? == name).then_some(value)
        })
        .next()
        .and_then(percent_decode)
}

/// Decodes `%XX` escapes and `+` (as a space); `None` if malformed.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'%' => {
                let high = char::from(input.next()?).to_digit(16)?;
                let low = char::from(input.next()?).to_digit(16)?;
                bytes.push(u8::try_from(high * 16 + low).ok()?);
            }
            b'+' => bytes.push(b' '),
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("latency=500ms", "latency").as_deref(),
            Some("500ms")
        );
        assert_eq!(
            query_param("a=1&latency=10%C2%B5s&latency=2s", "latency").as_deref(),
            Some("10µs")
        );
        assert_eq!(
            query_param("failureRate", "failureRate").as_deref(),
            Some("")
        );
        assert_eq!(query_param("other=1", "latency"), None);
        assert_eq!(query_param("latency=%zz", "latency"), None);
    }
}
