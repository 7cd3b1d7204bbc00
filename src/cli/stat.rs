//! `plexus stat`: the top-line numbers of a running Plexus in the terminal, refreshed
//! live, for people who live in a shell (like `linkerd viz stat`).
//!
//! It polls the admin server's `/admin/metrics.json` and shows, per router and per
//! service: requests per second over the last interval, the success rate over the same
//! requests, latency percentiles (Plexus's last complete minute) and total requests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::CliError;

/// One row: a router's total or one of its services.
#[derive(Clone, Debug, Default, PartialEq)]
struct Counts {
    requests: f64,
    success: f64,
    failures: f64,
}

/// Reads `/admin/metrics.json` (a plain HTTP/1.0 GET: no client library needed).
fn fetch(admin: &str) -> Result<BTreeMap<String, Value>, CliError> {
    let failed = |e: String| CliError::Failed(format!("cannot read metrics from {admin}: {e}"));
    let addr = admin
        .to_socket_addrs()
        .map_err(|e| failed(e.to_string()))?
        .next()
        .ok_or_else(|| failed("no address".into()))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| failed(e.to_string()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| failed(e.to_string()))?;
    write!(
        s,
        "GET /admin/metrics.json HTTP/1.0\r\nHost: {admin}\r\n\r\n"
    )
    .map_err(|e| failed(e.to_string()))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| failed("malformed response".into()))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(failed(head.lines().next().unwrap_or("").to_string()));
    }
    serde_json::from_str(body).map_err(|e| failed(e.to_string()))
}

/// Counters per (router, service) from `rt/<router>/service/<name>/<leaf>` keys; a
/// router's total is the sum of its services.
fn service_counts(metrics: &BTreeMap<String, Value>) -> BTreeMap<(String, String), Counts> {
    let mut out: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for (key, value) in metrics {
        let Some(rest) = key.strip_prefix("rt/") else {
            continue;
        };
        let Some((router, rest)) = rest.split_once("/service/") else {
            continue;
        };
        let Some(v) = value.as_f64() else { continue };
        let (name, leaf) = match rest.rsplit_once('/') {
            Some(pair) => pair,
            None => continue,
        };
        let entry = out
            .entry((router.to_string(), name.to_string()))
            .or_default();
        match leaf {
            "requests" => entry.requests = v,
            "success" => entry.success = v,
            "failures" => entry.failures = v,
            _ => {}
        }
    }
    out
}

fn latency(metrics: &BTreeMap<String, Value>, router: &str, service: &str, p: &str) -> String {
    metrics
        .get(&format!(
            "rt/{router}/service/{service}/request_latency_ms.{p}"
        ))
        .and_then(Value::as_f64)
        .map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
}

fn rate(success: f64, failures: f64) -> String {
    let total = success + failures;
    if total <= 0.0 {
        "-".to_string()
    } else {
        format!("{:.2}%", 100.0 * success / total)
    }
}

/// The table for two samples `secs` apart.
fn render(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>, secs: f64) -> String {
    let (old, new) = (service_counts(before), service_counts(after));
    let mut rows = Vec::new();
    let mut totals: BTreeMap<String, (Counts, Counts)> = BTreeMap::new();
    for ((router, service), now) in &new {
        let was = old
            .get(&(router.clone(), service.clone()))
            .cloned()
            .unwrap_or_default();
        let t = totals.entry(router.clone()).or_default();
        t.0.requests += was.requests;
        t.0.success += was.success;
        t.0.failures += was.failures;
        t.1.requests += now.requests;
        t.1.success += now.success;
        t.1.failures += now.failures;
        rows.push((router.clone(), format!("/{service}"), was, now.clone()));
    }
    let mut out = format!(
        "{:<14} {:<28} {:>9} {:>9} {:>7} {:>7} {:>7} {:>10}\n",
        "ROUTER", "SERVICE", "RPS", "SUCCESS", "P50ms", "P95ms", "P99ms", "REQUESTS"
    );
    for (router, (was, now)) in &totals {
        let d = |a: f64, b: f64| (b - a).max(0.0);
        out.push_str(&format!(
            "{:<14} {:<28} {:>9.1} {:>9} {:>7} {:>7} {:>7} {:>10}\n",
            router,
            "(all services)",
            d(was.requests, now.requests) / secs,
            rate(d(was.success, now.success), d(was.failures, now.failures)),
            "",
            "",
            "",
            now.requests
        ));
    }
    for (router, service, was, now) in rows {
        let d = |a: f64, b: f64| (b - a).max(0.0);
        let name = service.trim_start_matches('/');
        out.push_str(&format!(
            "{:<14} {:<28} {:>9.1} {:>9} {:>7} {:>7} {:>7} {:>10}\n",
            router,
            service,
            d(was.requests, now.requests) / secs,
            rate(d(was.success, now.success), d(was.failures, now.failures)),
            latency(after, &router, name, "p50"),
            latency(after, &router, name, "p95"),
            latency(after, &router, name, "p99"),
            now.requests
        ));
    }
    out
}

/// Shows the table every `interval` until interrupted, or once (after one interval)
/// with `once`.
pub(super) fn run(admin: String, interval: f64, once: bool) -> Result<String, CliError> {
    if !(interval.is_finite() && interval > 0.0) {
        return Err(CliError::BadInput(format!(
            "--interval must be a positive number of seconds, not {interval}"
        )));
    }
    let wait = Duration::from_secs_f64(interval);
    let mut before = fetch(&admin)?;
    loop {
        std::thread::sleep(wait);
        let after = fetch(&admin)?;
        let table = render(&before, &after, interval);
        if once {
            return Ok(table.trim_end().to_string());
        }
        let mut out = std::io::stdout().lock();
        let clear = if std::io::IsTerminal::is_terminal(&out) {
            "\x1b[2J\x1b[H"
        } else {
            ""
        };
        if writeln!(out, "{clear}{table}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(String::new());
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metrics(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rates_come_from_the_interval_and_totals_sum_services() {
        let before = metrics(json!({
            "rt/out/service/svc/a/requests": 10, "rt/out/service/svc/a/success": 10, "rt/out/service/svc/a/failures": 0,
            "rt/out/service/svc/b/requests": 5, "rt/out/service/svc/b/success": 4, "rt/out/service/svc/b/failures": 1,
        }));
        let after = metrics(json!({
            "rt/out/service/svc/a/requests": 30, "rt/out/service/svc/a/success": 29, "rt/out/service/svc/a/failures": 1,
            "rt/out/service/svc/a/request_latency_ms.p50": 3, "rt/out/service/svc/a/request_latency_ms.p99": 12,
            "rt/out/service/svc/b/requests": 5, "rt/out/service/svc/b/success": 4, "rt/out/service/svc/b/failures": 1,
            "rt/out/server/127.0.0.1/4140/requests": 35,
        }));
        let table = render(&before, &after, 2.0);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ROUTER"));
        let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            cols(lines[1]),
            ["out", "(all", "services)", "10.0", "95.00%", "35"]
        );
        assert_eq!(
            cols(lines[2]),
            ["out", "/svc/a", "10.0", "95.00%", "3", "-", "12", "30"]
        );
        assert_eq!(
            cols(lines[3]),
            ["out", "/svc/b", "0.0", "-", "-", "-", "-", "5"]
        );
    }
}
