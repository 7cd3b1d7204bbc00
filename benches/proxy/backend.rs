//! The backend every target sends to: a minimal hyper HTTP/1.1 server that answers
//! every request with `200 OK` and the 12-byte body `Hello world\n`, on a
//! multi-threaded tokio runtime. It runs as a separate, pinned process (this binary
//! with `PLEXUS_BENCH_ROLE=backend`) until it is killed.

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The response body.
const BODY: &[u8] = b"Hello world\n";

/// The backend process: `PLEXUS_BENCH_PORT` and `PLEXUS_BENCH_THREADS` from the
/// environment.
pub(crate) fn backend_main() -> ExitCode {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let Some(port) = var("PLEXUS_BENCH_PORT").and_then(|p| u16::try_from(p).ok()) else {
        eprintln!("backend: PLEXUS_BENCH_PORT must be set");
        return ExitCode::FAILURE;
    };
    let threads = var("PLEXUS_BENCH_THREADS").unwrap_or(2).max(1);
    match serve(port, threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(port: u16, threads: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("backend: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
