//! Load generation. The throughput run is Debian's `wrk` (closed loop, as many requests
//! as the connections can carry), whose summary is parsed here. The fixed-rate run is
//! this program's own open-loop generator: a fixed schedule of `GET /` sends spread
//! over several keep-alive connections, each on its own thread with blocking sockets,
//! and every latency measured from the request's *scheduled* send time, so a stall
//! delays and counts every request behind it (no coordinated omission), as wrk2 does.
//! The generator runs as a separate, pinned process (this binary with
//! `PLEXUS_BENCH_ROLE=loadgen`) and prints its summary as JSON.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::procs::{Proc, ROLE_ENV};

/// How long a request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A minimal HTTP/1.1 keep-alive client for `GET /` (Content-Length and chunked
/// responses).
pub(crate) struct HttpConn {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl HttpConn {
    /// Connects to `addr`.
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
        let stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
        Ok(HttpConn {
            stream,
            request,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `GET /` and reads the whole response; returns its status. An error means
    /// the connection cannot be used again.
    pub(crate) fn get(&mut self) -> io::Result<u16> {
        self.stream.write_all(&self.request)?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        self.buf.drain(..head_end);
        if let Some(len) = header("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            self.consume(len)?;
        } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            self.consume_chunked()?;
        } else {
            return Err(bad("response without length"));
        }
        if header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed"));
        }
        Ok(status)
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn consume(&mut self, len: usize) -> io::Result<()> {
        while self.buf.len() < len {
            self.fill()?;
        }
        self.buf.drain(..len);
        Ok(())
    }

    fn consume_chunked(&mut self) -> io::Result<()> {
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill()?;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            break i;
                        }
                        self.fill()?;
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(());
                    }
                }
            }
            self.consume(size + 2)?;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// What a fixed-rate run asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FixedRate {
    /// Requests per second, over all connections.
    pub(crate) rate: u64,
    /// Length of the run.
    pub(crate) secs: u64,
    /// Keep-alive connections.
    pub(crate) conns: u64,
}

/// What one fixed-rate slice measured: the raw latencies, so slices merge exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct FixedRateSample {
    /// Requests scheduled.
    pub(crate) scheduled: u64,
    /// Responses with another status than 200.
    pub(crate) non_200: u64,
    /// Requests that failed (connect, read, write, timeout) or were never sent
    /// because the run overran its deadline.
    pub(crate) errors: u64,
    /// Latency of every answered request from its scheduled send time, in ns.
    pub(crate) latencies_ns: Vec<u64>,
}

/// The summary of the fixed-rate slices of one target, latencies in microseconds.
#[derive(Clone, Debug, Default)]
pub(crate) struct FixedRateResult {
    /// Requests scheduled.
    pub(crate) scheduled: u64,
    /// Responses with another status than 200.
    pub(crate) non_200: u64,
    /// Requests that failed or were never sent.
    pub(crate) errors: u64,
    /// Median latency of answered requests.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// Slowest.
    pub(crate) max_us: f64,
}

impl FixedRateResult {
    /// Merges slices.
    pub(crate) fn from_samples(samples: &[FixedRateSample]) -> FixedRateResult {
        let mut latencies: Vec<u64> = samples
            .iter()
            .flat_map(|s| s.latencies_ns.iter().copied())
            .collect();
        latencies.sort_unstable();
        let pct = |p: f64| {
            if latencies.is_empty() {
                f64::NAN
            } else {
                percentile(&latencies, p) as f64 / 1000.0
            }
        };
        FixedRateResult {
            scheduled: samples.iter().map(|s| s.scheduled).sum(),
            non_200: samples.iter().map(|s| s.non_200).sum(),
            errors: samples.iter().map(|s| s.errors).sum(),
            p50_us: pct(50.0),
            p99_us: pct(99.0),
            p999_us: pct(99.9),
            max_us: pct(100.0),
        }
    }
}

/// Runs the generator process (pinned to `cpu`) against `port` and reads what it
/// measured.
pub(crate) fn fixed_rate(
    spec: FixedRate,
    port: u16,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<FixedRateSample> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env(ROLE_ENV, "loadgen")
        .env("PLEXUS_BENCH_PORT", port.to_string())
        .env("PLEXUS_BENCH_RATE", spec.rate.to_string())
        .env("PLEXUS_BENCH_RATE_SECS", spec.secs.to_string())
        .env("PLEXUS_BENCH_RATE_CONNS", spec.conns.to_string());
    let out = dir.join("loadgen.json");
    let mut proc = Proc::spawn("loadgen", &cmd, cpu, &dir.join("loadgen.log"), Some(&out))?;
    if !proc.wait(Duration::from_secs(spec.secs + 30))? {
        bail!("load generator failed:\n{}", proc.log_tail(20));
    }
    let text = std::fs::read_to_string(&out)?;
    serde_json::from_str(text.trim()).context("reading the load generator's output")
}

/// The load generator process: reads its settings from the environment, runs, prints
/// its [`FixedRateSample`] as JSON.
pub(crate) fn loadgen_main() -> ExitCode {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let (Some(port), Some(rate), Some(secs), Some(conns)) = (
        var("PLEXUS_BENCH_PORT"),
        var("PLEXUS_BENCH_RATE"),
        var("PLEXUS_BENCH_RATE_SECS"),
        var("PLEXUS_BENCH_RATE_CONNS"),
    ) else {
        eprintln!("loadgen: PLEXUS_BENCH_PORT/RATE/RATE_SECS/RATE_CONNS must be set");
        return ExitCode::FAILURE;
    };
    let Ok(port) = u16::try_from(port) else {
        eprintln!("loadgen: bad port");
        return ExitCode::FAILURE;
    };
    let spec = FixedRate {
        rate: rate.max(1),
        secs,
        conns: conns.max(1),
    };
    let sample = run_open_loop(SocketAddr::from(([127, 0, 0, 1], port)), spec);
    match serde_json::to_string(&sample) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The open loop: request `i` is due at `start + i / rate` on connection `i % conns`.
fn run_open_loop(addr: SocketAddr, spec: FixedRate) -> FixedRateSample {
    let total = spec.rate * spec.secs;
    let start = Instant::now() + Duration::from_millis(100);
    // Bounded: a run that falls far behind stops here and counts the rest as errors.
    let deadline = start + Duration::from_secs(spec.secs + 10);
    let threads: Vec<_> = (0..spec.conns)
        .map(|k| {
            thread::spawn(move || {
                let mut out = FixedRateSample::default();
                let mut conn: Option<HttpConn> = None;
                let mut i = k;
                while i < total {
                    let due = start + Duration::from_nanos(i * 1_000_000_000 / spec.rate);
                    i += spec.conns;
                    let now = Instant::now();
                    if now > deadline {
                        out.errors += 1;
                        continue;
                    }
                    if due > now {
                        thread::sleep(due - now);
                    }
                    let c = match conn.take() {
                        Some(c) => Ok(c),
                        None => HttpConn::connect(addr),
                    };
                    match c.and_then(|mut c| c.get().map(|s| (s, c))) {
                        Ok((status, c)) => {
                            out.latencies_ns.push(due.elapsed().as_nanos() as u64);
                            if status != 200 {
                                out.non_200 += 1;
                            }
                            conn = Some(c);
                        }
                        Err(_) => out.errors += 1,
                    }
                }
                out
            })
        })
        .collect();
    let mut sample = FixedRateSample {
        scheduled: total,
        ..FixedRateSample::default()
    };
    for t in threads {
        let Ok(r) = t.join() else {
            continue;
        };
        sample.latencies_ns.extend(r.latencies_ns);
        sample.non_200 += r.non_200;
        sample.errors += r.errors;
    }
    sample
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // In thousandths, in integers: 99.9% of 1000 values is rank 999 exactly.
    let per_mille = (p * 10.0).round() as usize;
    let rank = (per_mille * sorted.len()).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What a wrk run reported, latencies in microseconds.
#[derive(Clone, Debug, Default)]
pub(crate) struct WrkResult {
    /// Requests completed.
    pub(crate) requests: u64,
    /// Length of the run as wrk measured it, seconds.
    pub(crate) secs: f64,
    /// Requests per second.
    pub(crate) rps: f64,
    /// Median latency.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// `Non-2xx or 3xx responses`.
    pub(crate) non_2xx: u64,
    /// The `Socket errors` line, if any.
    pub(crate) socket_errors: Option<String>,
}

impl WrkResult {
    /// Merges runs: counts add up, the rate is over their total time, and each
    /// percentile is the median of the runs' (wrk gives no histogram to merge).
    pub(crate) fn combine(runs: &[WrkResult]) -> WrkResult {
        let median = |f: fn(&WrkResult) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            match v.len() {
                0 => f64::NAN,
                n if n % 2 == 1 => v[n / 2],
                n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
            }
        };
        let requests = runs.iter().map(|r| r.requests).sum();
        let secs: f64 = runs.iter().map(|r| r.secs).sum();
        let errors: Vec<String> = runs
            .iter()
            .filter_map(|r| r.socket_errors.clone())
            .collect();
        WrkResult {
            requests,
            secs,
            rps: requests as f64 / secs,
            p50_us: median(|r| r.p50_us),
            p99_us: median(|r| r.p99_us),
            non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
            socket_errors: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }
}

/// Runs `wrk -t1 -c<conns> -d<secs>s --latency` against `http://127.0.0.1:<port>/`,
/// pinned to `cpu`.
pub(crate) fn wrk(
    port: u16,
    conns: u64,
    secs: u64,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<WrkResult> {
    let url = format!("http://127.0.0.1:{port}/");
    wrk_url(&url, &[], conns, secs, cpu, dir)
}

/// Runs `wrk -t1 -c<conns> -d<secs>s --latency` against `url` (`http://` or
/// `https://`) with extra request `headers` (`Name: value`), pinned to `cpu`.
pub(crate) fn wrk_url(
    url: &str,
    headers: &[String],
    conns: u64,
    secs: u64,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s")])
        .args(["--latency", "--timeout", "2s"]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    cmd.arg(url);
    let out = dir.join("wrk.txt");
    let mut proc = Proc::spawn("wrk", &cmd, cpu, &dir.join("wrk.log"), Some(&out))?;
    if !proc.wait(Duration::from_secs(secs + 30))? {
        bail!("wrk failed:\n{}", proc.log_tail(20));
    }
    let text = std::fs::read_to_string(&out)?;
    parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))
}

/// Reads the parts of wrk's summary the report uses.
fn parse_wrk(text: &str) -> anyhow::Result<WrkResult> {
    let mut r = WrkResult::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50_us = duration_us(v)?,
            ["99%", v] => r.p99_us = duration_us(v)?,
            ["Requests/sec:", v] => r.rps = v.parse()?,
            [n, "requests", "in", t, ..] => {
                r.requests = n.parse()?;
                r.secs = duration_us(t.trim_end_matches(','))? / 1e6;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse()?,
            ["Socket", "errors:", ..] => r.socket_errors = Some(line.to_string()),
            _ => {}
        }
    }
    if r.requests == 0 {
        bail!("no requests completed");
    }
    Ok(r)
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`, `1.00m`.
fn duration_us(v: &str) -> anyhow::Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .context("duration without unit")?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse()?;
    Ok(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        "h" => n * 3600e6,
        _ => bail!("unknown unit in {v}"),
    })
}

/// Checks of the parsers, run by `cargo test --benches` (which runs this program
/// without `--bench`); panics on a mismatch.
pub(crate) fn self_check() {
    let text = "Running 10s test @ http://127.0.0.1:1/\n  1 threads and 32 connections\n\
      Latency Distribution\n     50%  812.00us\n     75%    1.00ms\n     99%    2.50ms\n\
      \x20 12345 requests in 10.00s, 1.23MB read\n  Non-2xx or 3xx responses: 7\n\
      Requests/sec:   1234.50\n";
    let r = parse_wrk(text).expect("wrk summary parses");
    assert_eq!(r.requests, 12345);
    assert!((r.secs - 10.0).abs() < 1e-9);
    let both = WrkResult::combine(&[r.clone(), r.clone()]);
    assert_eq!(both.requests, 24690);
    assert!((both.rps - 1234.5).abs() < 1e-9 && (both.p99_us - 2500.0).abs() < 1e-9);
    assert_eq!(r.non_2xx, 7);
    assert!((r.p50_us - 812.0).abs() < 1e-9 && (r.p99_us - 2500.0).abs() < 1e-9);
    assert!((r.rps - 1234.5).abs() < 1e-9);
    let v: Vec<u64> = (1..=1000).collect();
    assert_eq!(percentile(&v, 50.0), 500);
    assert_eq!(percentile(&v, 99.9), 999);
    assert_eq!(percentile(&[], 50.0), 0);
}
