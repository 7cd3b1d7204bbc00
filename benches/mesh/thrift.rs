//! The Thrift load: `Greeter.greet` calls (framed, strict binary) on a fixed number of
//! connections, one call at a time on each, as serial Thrift clients make them. It runs
//! as a separate, pinned process (this binary with `PLEXUS_BENCH_ROLE=thrift-load`):
//! one task per connection on one tokio thread, for a fixed time; it prints its counts
//! and latency percentiles as JSON. Every reply is checked: a REPLY with the call's
//! name and seqid, else it counts as an error.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use plexus_thrift::{Decoder, Limits, MessageKind};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::procs::{Proc, ROLE_ENV};

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What to load.
#[derive(Clone, Debug)]
pub(crate) struct ThriftSpec {
    pub(crate) addr: SocketAddr,
    /// Connections, each with one call in flight.
    pub(crate) conns: u64,
}

/// What one run counted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ThriftResult {
    /// Calls answered with a REPLY matching the call.
    pub(crate) requests: u64,
    /// Calls that failed or got another answer.
    pub(crate) errors: u64,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
    /// Length of the run, seconds.
    pub(crate) secs: f64,
    /// Median and 99th percentile call latency, µs.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

/// Runs the load process for `secs` seconds, pinned to `cpu`, and reads its counts.
pub(crate) fn run(
    spec: &ThriftSpec,
    secs: u64,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<ThriftResult> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env(ROLE_ENV, "thrift-load")
        .env("PLEXUS_BENCH_ADDR", spec.addr.to_string())
        .env("PLEXUS_BENCH_SECS", secs.to_string())
        .env("PLEXUS_BENCH_CONNS", spec.conns.to_string());
    let out = dir.join("thrift.json");
    let mut proc = Proc::spawn(
        "thrift-load",
        &cmd,
        cpu,
        &dir.join("thrift.log"),
        Some(&out),
    )?;
    if !proc.wait(Duration::from_secs(secs + 30))? {
        bail!("the thrift load failed:\n{}", proc.log_tail(20));
    }
    let text = std::fs::read_to_string(&out)?;
    let r: ThriftResult =
        serde_json::from_str(text.trim()).context("reading the thrift load's output")?;
    if r.requests == 0 {
        bail!(
            "no call succeeded; first error: {}",
            r.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(r)
}

/// The load process: settings from the environment, counts as JSON on stdout.
pub(crate) fn thrift_main() -> ExitCode {
    match load_process() {
        Ok(r) => match serde_json::to_string(&r) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("thrift-load: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("thrift-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The demo's `greet("plexus")` ([`plexus::demo::greet_call`]), framed, with `seqid`.
fn greet(seqid: i32) -> BytesMut {
    let mut out = BytesMut::new();
    // A few dozen bytes always encode.
    let _ = plexus_thrift::encode(&plexus::demo::greet_call(seqid), true, &mut out);
    out
}

struct Conn {
    stream: tokio::net::TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            decoder: Decoder::new(true, Limits::default()),
            buf: BytesMut::with_capacity(4096),
        })
    }

    async fn call(&mut self, seqid: i32) -> anyhow::Result<()> {
        self.stream.write_all(&greet(seqid)).await?;
        let reply = loop {
            if let Some(m) = self.decoder.decode(&mut self.buf)? {
                break m;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("closed before the reply");
            }
        };
        let h = reply.header();
        if h.kind != MessageKind::Reply || h.seqid != seqid || h.name != "greet" {
            bail!("answered with {} {:?} seqid {}", h.kind, h.name, h.seqid);
        }
        Ok(())
    }
}

fn load_process() -> anyhow::Result<ThriftResult> {
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} must be set"));
    let addr: SocketAddr = var("PLEXUS_BENCH_ADDR")?.parse()?;
    let secs: u64 = var("PLEXUS_BENCH_SECS")?.parse()?;
    let conns: u64 = var("PLEXUS_BENCH_CONNS")?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..conns.max(1))
            .map(|_| {
                tokio::spawn(async move {
                    let mut r = ThriftResult::default();
                    let mut latencies = Vec::new();
                    let mut conn = None;
                    let mut seqid = 0i32;
                    while Instant::now() < deadline {
                        seqid = seqid.wrapping_add(1);
                        let began = Instant::now();
                        let one = tokio::time::timeout(CALL_TIMEOUT, async {
                            if conn.is_none() {
                                conn = Some(Conn::open(addr).await?);
                            }
                            match conn.as_mut() {
                                Some(c) => c.call(seqid).await,
                                None => bail!("no connection"),
                            }
                        })
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
                        match one {
                            Ok(()) => {
                                r.requests += 1;
                                latencies.push(began.elapsed().as_secs_f64() * 1e6);
                            }
                            Err(e) => {
                                r.errors += 1;
                                r.first_error.get_or_insert_with(|| format!("{e:#}"));
                                conn = None;
                            }
                        }
                    }
                    (r, latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await);
        }
        all
    });
    let mut total = ThriftResult {
        secs: start.elapsed().as_secs_f64(),
        ..ThriftResult::default()
    };
    let mut latencies = Vec::new();
    for r in results {
        let (r, l) = r.context("a load task panicked")?;
        total.requests += r.requests;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        latencies.extend(l);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    total.p50_us = pct(0.5);
    total.p99_us = pct(0.99);
    Ok(total)
}

/// Calls `greet` once at `addr`, for readiness checks.
pub(crate) fn call_once(addr: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::timeout(CALL_TIMEOUT, async {
            Conn::open(addr).await?.call(1).await
        })
        .await
        .context("no answer within 5 s")?
    })
}

/// Waits (10 s at most) until a `greet` call at `addr` is answered.
pub(crate) fn wait_ok(proc: &mut Proc, addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        proc.check_alive()?;
        match call_once(addr) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                bail!(
                    "{} does not answer greet at {addr}: {e:#}; end of its log:\n{}",
                    proc.name(),
                    proc.log_tail(20)
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
