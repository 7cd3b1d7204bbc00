//! The new-connection-per-request load: each request opens a TCP connection (and, for
//! TLS, does a full handshake), sends `GET /` with `Connection: close`, reads the
//! answer and closes. This measures what accepting a connection costs a router, with
//! and without TLS. It runs as a separate, pinned process (this binary with
//! `PLEXUS_BENCH_ROLE=connect`): several tasks on one tokio thread, each opening its
//! connections one after another, for a fixed time; it prints its counts as JSON.
//!
//! With TLS, every connection gets a fresh client configuration (Plexus's own client
//! TLS, `plexus_tls::ClientTls`, trusting the bench's CA), so no session is ever
//! resumed: each connection is a full handshake, the cost a new peer connection pays.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::procs::{Proc, ROLE_ENV};

/// How long one connection may take, from connect to the end of the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// What to connect to.
#[derive(Clone, Debug)]
pub(crate) struct ConnectSpec {
    pub(crate) addr: SocketAddr,
    /// TLS: the CA file to trust and the name the certificate must carry.
    pub(crate) tls: Option<(PathBuf, String)>,
    /// Connections open at once.
    pub(crate) concurrency: u64,
}

/// What one run counted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ConnectResult {
    /// Connections that ended with a `200` answer.
    pub(crate) requests: u64,
    /// Connections that failed (connect, handshake, I/O, timeout) or were answered
    /// with another status.
    pub(crate) errors: u64,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
    /// Length of the run, seconds.
    pub(crate) secs: f64,
}

/// Runs the client process for `secs` seconds, pinned to `cpu`, and reads its counts.
pub(crate) fn run(
    spec: &ConnectSpec,
    secs: u64,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<ConnectResult> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env(ROLE_ENV, "connect")
        .env("PLEXUS_BENCH_ADDR", spec.addr.to_string())
        .env("PLEXUS_BENCH_SECS", secs.to_string())
        .env("PLEXUS_BENCH_CONNS", spec.concurrency.to_string());
    if let Some((ca, name)) = &spec.tls {
        cmd.env("PLEXUS_BENCH_CA", ca)
            .env("PLEXUS_BENCH_NAME", name);
    }
    let out = dir.join("connect.json");
    let mut proc = Proc::spawn("connect", &cmd, cpu, &dir.join("connect.log"), Some(&out))?;
    if !proc.wait(Duration::from_secs(secs + 30))? {
        bail!("the connect client failed:\n{}", proc.log_tail(20));
    }
    let text = std::fs::read_to_string(&out)?;
    let r: ConnectResult =
        serde_json::from_str(text.trim()).context("reading the connect client's output")?;
    if r.requests == 0 {
        bail!(
            "no connection succeeded; first error: {}",
            r.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(r)
}

/// The client process: settings from the environment, counts as JSON on stdout.
pub(crate) fn connect_main() -> ExitCode {
    match connect_process() {
        Ok(r) => match serde_json::to_string(&r) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("connect: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("connect: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn connect_process() -> anyhow::Result<ConnectResult> {
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} must be set"));
    let addr: SocketAddr = var("PLEXUS_BENCH_ADDR")?.parse()?;
    let secs: u64 = var("PLEXUS_BENCH_SECS")?.parse()?;
    let conns: u64 = var("PLEXUS_BENCH_CONNS")?.parse()?;
    let tls = match (
        std::env::var_os("PLEXUS_BENCH_CA"),
        std::env::var("PLEXUS_BENCH_NAME"),
    ) {
        (Some(ca), Ok(name)) => Some(Tls {
            settings: serde_json::from_value(serde_json::json!({
                "commonName": name,
                "trustCertsBundle": PathBuf::from(ca),
            }))?,
            name,
        }),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..conns.max(1))
            .map(|_| {
                let (tls, request) = (tls.clone(), request.clone());
                tokio::spawn(async move {
                    let mut r = ConnectResult::default();
                    while Instant::now() < deadline {
                        let one = tokio::time::timeout(
                            CONNECTION_TIMEOUT,
                            one_connection(addr, tls.as_ref(), request.as_bytes()),
                        )
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
                        match one {
                            Ok(()) => r.requests += 1,
                            Err(e) => {
                                r.errors += 1;
                                r.first_error.get_or_insert_with(|| format!("{e:#}"));
                            }
                        }
                    }
                    r
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await);
        }
        all
    });
    let mut total = ConnectResult {
        secs: start.elapsed().as_secs_f64(),
        ..ConnectResult::default()
    };
    for r in results {
        let r = r.context("a client task panicked")?;
        total.requests += r.requests;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    Ok(total)
}

/// The client's TLS settings and the server name to check.
#[derive(Clone)]
struct Tls {
    settings: plexus_tls::ClientTlsSettings,
    name: String,
}

/// One connection: connect, handshake (TLS), request, answer, close.
async fn one_connection(addr: SocketAddr, tls: Option<&Tls>, request: &[u8]) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => exchange(tcp, request).await,
        Some(tls) => {
            // A fresh configuration, hence an empty session cache: a full handshake.
            let client = plexus_tls::ClientTls::new(&tls.settings, &[b"http/1.1"])?;
            let stream = client.connect(&tls.name, tcp).await?;
            exchange(stream, request).await
        }
    }
}

/// Sends the request and reads the answer (by its Content-Length, or to the end).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
) -> anyhow::Result<()> {
    s.write_all(request).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before the response head");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        bail!("status {status}");
    }
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(len) => {
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    bail!("closed in the body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None => loop {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(_) => {}
                // A peer that closes without close_notify ends the body all the same.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
        },
    }
    let _ = s.shutdown().await;
    Ok(())
}
