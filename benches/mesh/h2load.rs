//! The HTTP/2 load generator: Debian's `h2load` (nghttp2-client) sending one gRPC
//! unary call per request (a POST of a gRPC-framed body with `content-type:
//! application/grpc` and `te: trailers`), closed loop over several connections with
//! several streams each. This module runs it for a duration and reads its summary.
//! h2load counts HTTP statuses only; the gRPC status of the calls is checked apart
//! ([`crate::grpc`]).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::procs::Proc;

/// What one h2load run reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct H2loadResult {
    /// Requests completed (`done`).
    pub(crate) requests: u64,
    /// Requests that got a response (`succeeded`).
    pub(crate) succeeded: u64,
    /// `failed + errored + timeout`.
    pub(crate) failed: u64,
    /// Responses with a status other than 2xx.
    pub(crate) non_2xx: u64,
    /// Length of the measured run, seconds (`finished in`).
    pub(crate) secs: f64,
    /// Mean time per request, microseconds (h2load reports no percentiles).
    pub(crate) mean_us: f64,
}

/// What to send: `url` (`http://host:port/package.Service/Method`), the body in
/// `body`, over `conns` connections with `streams` concurrent streams each.
#[derive(Clone, Debug)]
pub(crate) struct H2loadSpec<'a> {
    pub(crate) url: &'a str,
    pub(crate) body: &'a Path,
    pub(crate) conns: u64,
    pub(crate) streams: u64,
}

/// Runs `h2load -D <secs>` pinned to `cpu`, its output kept in `dir`.
pub(crate) fn h2load(
    spec: &H2loadSpec<'_>,
    secs: u64,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<H2loadResult> {
    let mut cmd = Command::new("h2load");
    cmd.args(["-t1", &format!("-c{}", spec.conns)])
        .arg(format!("-m{}", spec.streams))
        .arg(format!("-D{secs}"))
        .arg("-d")
        .arg(spec.body)
        .args(["-H", "content-type: application/grpc"])
        .args(["-H", "te: trailers"])
        .arg(spec.url);
    let out = dir.join("h2load.txt");
    let mut proc = Proc::spawn("h2load", &cmd, cpu, &dir.join("h2load.log"), Some(&out))?;
    if !proc.wait(Duration::from_secs(secs + 30))? {
        bail!("h2load failed:\n{}", proc.log_tail(20));
    }
    let text = std::fs::read_to_string(&out)?;
    parse(&text).with_context(|| format!("cannot read h2load's output:\n{text}"))
}

/// Reads the parts of h2load's summary the report uses.
fn parse(text: &str) -> anyhow::Result<H2loadResult> {
    let mut r = H2loadResult::default();
    let mut seen_requests = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let t = rest.split(',').next().unwrap_or("").trim();
            r.secs = duration_us(t)? / 1e6;
        } else if let Some(rest) = line.strip_prefix("requests:") {
            // "60001 total, 60033 started, 60001 done, 60001 succeeded, 0 failed, ..."
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().with_context(|| format!("count in {part:?}"))?;
                match what {
                    "done" => r.requests = n,
                    "succeeded" => r.succeeded = n,
                    "failed" | "errored" | "timeout" => r.failed += n,
                    _ => {}
                }
            }
            seen_requests = true;
        } else if let Some(rest) = line.strip_prefix("status codes:") {
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(class)) = (words.next(), words.next())
                    && class != "2xx"
                {
                    r.non_2xx += n.parse::<u64>().with_context(|| format!("in {part:?}"))?;
                }
            }
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            // min, max, mean, sd, +/- sd
            let mean = rest.split_whitespace().nth(2).context("no mean")?;
            r.mean_us = duration_us(mean)?;
        }
    }
    if !seen_requests || r.secs <= 0.0 {
        bail!("no summary");
    }
    if r.requests == 0 {
        bail!("no requests completed");
    }
    Ok(r)
}

/// h2load's durations: `812us`, `1.23ms`, `3.00s`.
fn duration_us(v: &str) -> anyhow::Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("duration without unit: {v:?}"))?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().with_context(|| format!("duration {v:?}"))?;
    Ok(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => bail!("unknown unit in {v}"),
    })
}

/// Checks of the parser, run by `cargo test --benches`; panics on a mismatch.
pub(crate) fn self_check() {
    let text = include_str!("h2load-sample.txt");
    let r = parse(text).expect("h2load summary parses");
    assert_eq!(r.requests, 82_003);
    assert_eq!(r.succeeded, 82_003);
    assert_eq!(r.failed, 0);
    assert_eq!(r.non_2xx, 0);
    assert!((r.secs - 3.0).abs() < 1e-9, "{r:?}");
    assert!((r.mean_us - 1110.0).abs() < 1e-9, "{r:?}");
    let broken = text
        .replace("0 4xx", "12 4xx")
        .replace("0 errored", "3 errored");
    let b = parse(&broken).expect("parses");
    assert_eq!((b.non_2xx, b.failed), (12, 3));
    assert!(parse("starting benchmark...\n").is_err());
    assert!((duration_us("812us").expect("us") - 812.0).abs() < 1e-9);
    assert!((duration_us("1.5s").expect("s") - 1.5e6).abs() < 1e-3);
}
