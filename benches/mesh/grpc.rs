//! The gRPC call the h2 benchmarks send, and a check that it really succeeds. h2load
//! only sees HTTP statuses, and a failed gRPC call is usually an HTTP 200 with a
//! non-zero `grpc-status`, so before and after the measurements every target is
//! called once with a small HTTP/2 client (hyper) that reads the `grpc-status` (from
//! the trailers, or from the headers of a trailers-only answer).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::procs::Proc;

/// The method called: the World service of the helloworld example
/// (`helloworld -protocol grpc -text world`).
pub(crate) const PATH: &str = "/helloworld.World/Greeting";

/// One gRPC message frame holding an empty `GreetingRequest`: not compressed (0),
/// length 0 (big-endian u32).
pub(crate) const EMPTY_REQUEST: [u8; 5] = [0, 0, 0, 0, 0];

/// Writes the request body h2load sends to `path`.
pub(crate) fn write_body(path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, EMPTY_REQUEST).with_context(|| format!("writing {}", path.display()))
}

/// What one call answered.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// `grpc-status`, from the trailers or a trailers-only answer.
    pub(crate) grpc_status: Option<String>,
    /// The response message's bytes (after the 5-byte frame prefix).
    pub(crate) message: Vec<u8>,
}

/// Makes one unary call to `addr` over a new h2c connection.
pub(crate) fn call(addr: SocketAddr) -> anyhow::Result<Answer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        tokio::time::timeout(Duration::from_secs(5), call_async(addr))
            .await
            .context("no answer within 5 s")?
    })
}

async fn call_async(addr: SocketAddr) -> anyhow::Result<Answer> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let request = http::Request::post(format!("http://{addr}{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&EMPTY_REQUEST)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let header_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let collected = response.into_body().collect().await?;
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = collected.to_bytes();
    Ok(Answer {
        status,
        grpc_status: trailer_status.or(header_status),
        message: body.get(5..).unwrap_or_default().to_vec(),
    })
}

/// Calls `addr` until a call succeeds (HTTP 200, `grpc-status: 0`), for up to ten
/// seconds, checking that `proc` still runs; the error tells what was answered last.
pub(crate) fn wait_ok(proc: &mut Proc, addr: SocketAddr) -> anyhow::Result<Answer> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        proc.check_alive()?;
        match call(addr) {
            Ok(a) if a.status == 200 && a.grpc_status.as_deref() == Some("0") => return Ok(a),
            Ok(a) => last = format!("{a:?}"),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{} did not answer {PATH} on {addr} with grpc-status 0 ({last}); end of its log:\n{}",
        proc.name(),
        proc.log_tail(20)
    )
}
