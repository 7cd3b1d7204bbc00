//! The Thrift mode (`-protocol thrift`): the `Greeter` service of
//! `proto/helloworld.thrift` over framed transport and the strict binary
//! protocol, Linkerd 1.x's thrift defaults.
//!
//! `greet(name)` is built as in HTTP mode: wait the configured latency, fail
//! at the configured rate, answer `<text> (<POD_IP>)`, then — with
//! `-target` — a space and the target's answer to `greet(name)`, and `!`.
//! Failures, injected ones and failed calls to the target, are
//! `TApplicationException` `INTERNAL_ERROR` (6) replies naming the cause;
//! a call to another method gets `UNKNOWN_METHOD` (1), so Finagle clients
//! that probe for TTwitter fall back to plain Thrift.
//!
//! A connection carries any number of calls, one at a time, each answered
//! before the next frame is read. A frame that is not a Thrift message, or
//! longer than [`greeter::MAX_FRAME`], closes the connection. A connection
//! whose first byte is an ASCII letter is HTTP/1.1 instead (no Thrift frame
//! starts that way: its length would be over 1 GB), which serves the control
//! endpoints `POST /setLatency` and `POST /setFailureRate` as in HTTP mode.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use plexus_examples::greeter::{self, ApplicationException, RequestKind};
use thrift::ApplicationErrorKind;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::handler;
use crate::settings::Settings;
use crate::thrift_upstream::GreeterUpstream;

/// Everything a Thrift call needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct ThriftApp {
    /// The text answered, with the ` (<POD_IP>)` suffix already applied.
    text: String,
    /// Latency and failure rate.
    settings: Settings,
    /// The target to call, if any.
    upstream: Option<GreeterUpstream>,
}

impl ThriftApp {
    /// An app answering `text`.
    pub(crate) fn new(text: String, settings: Settings, upstream: Option<GreeterUpstream>) -> Self {
        ThriftApp {
            text,
            settings,
            upstream,
        }
    }

    /// The settings, for the startup line.
    pub(crate) fn describe(&self) -> String {
        format!(
            "thrift (framed, binary), service {}, text {:?}, target {:?}, latency {:?}, failure rate {}",
            greeter::SERVICE,
            self.text,
            self.upstream
                .as_ref()
                .map_or_else(String::new, GreeterUpstream::describe),
            self.settings.latency(),
            self.settings.failure_rate(),
        )
    }

    /// The greeting: the text, the target's answer if any, and `!`.
    async fn greet(&self, name: &str) -> Result<String, ApplicationException> {
        let latency = self.settings.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.settings.should_fail() {
            return Err(ApplicationException::internal_error(
                self.settings.injected_failure(),
            ));
        }
        let mut result = self.text.clone();
        if let Some(upstream) = &self.upstream {
            match upstream.greet(name).await {
                Ok(answer) => {
                    result.push(' ');
                    result.push_str(&answer);
                }
                Err(error) => {
                    let message = format!("helloworld: {} failed: {error}", upstream.describe());
                    eprintln!("{message}");
                    return Err(ApplicationException::internal_error(message));
                }
            }
        }
        result.push('!');
        Ok(result)
    }

    /// The frame answering one request frame: `Ok(None)` when no reply is
    /// owed (a oneway call), `Err` when the frame holds no Thrift message.
    async fn answer(&self, frame: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let request = greeter::decode_request(frame)?;
        if request.oneway {
            // Greeter.greet is not oneway: nobody waits for this call.
            return Ok(None);
        }
        let exception = |kind, message: String| ApplicationException::new(kind, message);
        let outcome = match request.kind {
            RequestKind::Greet { name } => self.greet(&name).await,
            RequestKind::UnknownMethod => Err(exception(
                ApplicationErrorKind::UnknownMethod,
                format!(
                    "unknown method {:?}: {} has only {}",
                    request.method,
                    greeter::SERVICE,
                    greeter::GREET
                ),
            )),
            RequestKind::NotACall => Err(exception(
                ApplicationErrorKind::InvalidMessageType,
                "expected a call".to_owned(),
            )),
            RequestKind::BadArguments(error) => Err(exception(
                ApplicationErrorKind::ProtocolError,
                format!("cannot read the arguments of {}: {error}", greeter::GREET),
            )),
        };
        let reply = match outcome {
            Ok(answer) => greeter::greet_reply(request.seq, &answer),
            Err(exception) => greeter::exception_reply(&request.method, request.seq, &exception),
        };
        reply
            .map(Some)
            .map_err(|e| format!("cannot encode the reply: {e}"))
    }
}

/// Serves one connection: Thrift calls, one at a time, until the client
/// closes it or `stop_rx` changes between calls; or HTTP/1.1 for the
/// control endpoints.
pub(crate) async fn serve_connection(
    app: Arc<ThriftApp>,
    mut stream: TcpStream,
    mut stop_rx: watch::Receiver<bool>,
) {
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = stream.peek(&mut first) => peeked,
        _ = stop_rx.changed() => return,
    };
    match peeked {
        Ok(0) | Err(_) => return,
        Ok(_) if first[0].is_ascii_alphabetic() => {
            return control_connection(app, stream, stop_rx).await;
        }
        Ok(_) => {}
    }
    loop {
        let frame = tokio::select! {
            frame = greeter::read_frame(&mut stream) => frame,
            _ = stop_rx.changed() => return,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(error) => {
                if !quietly_closed(&error) {
                    eprintln!("helloworld: thrift connection closed: {error}");
                }
                return;
            }
        };
        let reply = match app.answer(&frame).await {
            Ok(Some(reply)) => reply,
            Ok(None) => continue,
            Err(error) => {
                eprintln!("helloworld: thrift connection closed: {error}");
                return;
            }
        };
        if let Err(error) = stream.write_all(&reply).await {
            if !quietly_closed(&error) {
                eprintln!("helloworld: thrift connection closed: {error}");
            }
            return;
        }
    }
}

/// Whether an I/O error is just the client going away.
fn quietly_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// HTTP/1.1 on the Thrift port: the control endpoints, and a 404 naming
/// the protocol for anything else.
async fn control_connection(
    app: Arc<ThriftApp>,
    stream: TcpStream,
    mut stop_rx: watch::Receiver<bool>,
) {
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let response =
            handler::control_endpoint(&app.settings, &request).unwrap_or_else(not_thrift_over_http);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop_rx.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result
        && !error.is_incomplete_message()
    {
        eprintln!("helloworld: connection error: {error}");
    }
}

/// The answer to an HTTP request other than the control endpoints.
fn not_thrift_over_http() -> Response<handler::Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"this port serves Thrift (framed transport, binary protocol); over HTTP only \
          POST /setLatency and POST /setFailureRate\n",
    )));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
