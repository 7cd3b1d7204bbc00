//! End-to-end tests of the registry through the `metrics` macros: windows, eviction,
//! concurrency, and the Prometheus text checked by `promtool` itself.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use serde_json::json;

use super::Registry;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn counters_gauges_histograms_through_macros() {
    let reg = Registry::new();
    let t0 = Instant::now();
    reg.rotate(t0);
    metrics::with_local_recorder(&reg, || {
        let c = counter!("rt:server:status:200", "rt" => "r", "server" => "0.0.0.0/4140");
        c.increment(2);
        c.absolute(1); // never rewinds
        // Registering again finds the same series, whatever the label order.
        counter!("rt:server:status:200", "server" => "0.0.0.0/4140", "rt" => "r").increment(1);
        let pending = gauge!("rt:service:pending", "rt" => "r", "service" => "svc/a");
        pending.increment(3.0);
        pending.decrement(1.0);
        gauge!("rt:server:connections", "rt" => "r", "server" => "0.0.0.0/4140").set(4.0);
        let h = histogram!("rt:service:request_latency_ms", "rt" => "r", "service" => "svc/a");
        h.record(10.0);
        h.record_many(20.0, 3);
        // The same key as another kind is tolerated but not exported.
        gauge!("rt:server:status:200", "rt" => "r", "server" => "0.0.0.0/4140").set(9.0);
    });
    let got = reg.metrics_json(None, false, t0 + MINUTE).unwrap();
    assert_eq!(got["rt/r/server/0.0.0.0/4140/status/200"], 3);
    assert_eq!(got["rt/r/service/svc/a/pending"], 2.0);
    assert_eq!(got["rt/r/server/0.0.0.0/4140/connections"], 4.0);
    assert_eq!(got["rt/r/service/svc/a/request_latency_ms.count"], 4);
    assert_eq!(got["rt/r/service/svc/a/request_latency_ms.sum"], 70);
    assert_eq!(got["rt/r/service/svc/a/request_latency_ms.p50"], 20);
    assert_eq!(got["rt/r/service/svc/a/request_latency_ms.min"], 10);
}

#[test]
fn windows_rotate_with_explicit_time() {
    let reg = Registry::new();
    let t0 = Instant::now();
    reg.rotate(t0);
    let h = metrics::with_local_recorder(&reg, || histogram!("lat_ms"));
    let stat = |now| {
        let v = reg.metrics_json(None, false, now).unwrap();
        (
            v["lat_ms.count"].as_u64().unwrap(),
            v.get("lat_ms.max").and_then(|m| m.as_u64()),
        )
    };
    h.record(5.0);
    assert_eq!(
        stat(t0 + MINUTE - Duration::from_millis(1)),
        (0, None),
        "window still open"
    );
    assert_eq!(stat(t0 + MINUTE), (1, Some(5)), "first minute closed");
    h.record(8.0);
    h.record(9.0);
    assert_eq!(
        stat(t0 + MINUTE + MINUTE / 2),
        (1, Some(5)),
        "served from the snapshot"
    );
    assert_eq!(stat(t0 + 2 * MINUTE), (2, Some(9)));
    // An idle gap: the next report shows an empty window, and the grid is kept.
    assert_eq!(stat(t0 + 5 * MINUTE + MINUTE / 2), (0, None));
    h.record(1.0);
    assert_eq!(stat(t0 + 6 * MINUTE - Duration::from_millis(1)), (0, None));
    assert_eq!(stat(t0 + 6 * MINUTE), (1, Some(1)));
    // Time going backwards changes nothing.
    assert_eq!(stat(t0), (1, Some(1)));
    // Prometheus totals are cumulative across windows.
    let text = reg.prometheus("", t0 + 6 * MINUTE);
    assert!(text.contains("lat_ms_count 4\n"), "{text}");
    assert!(text.contains("lat_ms_sum 23\n"), "{text}");
}

#[test]
fn custom_window() {
    let reg = Registry::with_window(Duration::from_secs(10));
    let t0 = Instant::now();
    reg.rotate(t0);
    metrics::with_local_recorder(&reg, || histogram!("x").record(2.0));
    let v = reg
        .metrics_json(None, false, t0 + Duration::from_secs(10))
        .unwrap();
    assert_eq!(v["x.count"], 1);
}

#[test]
fn eviction_drops_exactly_the_matching_series() {
    let reg = Registry::new();
    let t0 = Instant::now();
    let kept = metrics::with_local_recorder(&reg, || {
        for client in ["#/io.l5d.fs/a", "#/io.l5d.fs/b"] {
            counter!("rt:client:requests", "rt" => "out", "client" => client).increment(1);
            counter!("rt:client:service:requests", "rt" => "out", "client" => client,
                "service" => "svc/x")
            .increment(1);
            histogram!("rt:client:request_latency_ms", "rt" => "out", "client" => client)
                .record(1.0);
        }
        counter!("rt:client:requests", "rt" => "in", "client" => "#/io.l5d.fs/a")
    });
    assert_eq!(
        reg.remove_matching(&[("rt", "out"), ("client", "#/io.l5d.fs/a")]),
        3
    );
    assert_eq!(
        reg.remove_matching(&[("rt", "out"), ("client", "#/io.l5d.fs/a")]),
        0
    );
    kept.increment(1);
    let got = reg.metrics_json(Some("rt"), false, t0).unwrap();
    assert_eq!(
        got,
        json!({
            "in/client/#/io.l5d.fs/a/requests": 1,
            "out/client/#/io.l5d.fs/b/request_latency_ms.count": 0,
            "out/client/#/io.l5d.fs/b/requests": 1,
            "out/client/#/io.l5d.fs/b/service/svc/x/requests": 1,
        })
    );
    // Evicted handles still work, unexported; re-registering starts from zero.
    let (old, new) = metrics::with_local_recorder(&reg, || {
        let old = counter!("rt:client:requests", "rt" => "in", "client" => "#/io.l5d.fs/a");
        reg.remove_matching(&[("rt", "in")]);
        old.increment(5);
        (
            old,
            counter!("rt:client:requests", "rt" => "in", "client" => "#/io.l5d.fs/a"),
        )
    });
    new.increment(1);
    drop(old);
    let got = reg.metrics_json(Some("rt/in"), false, t0).unwrap();
    assert_eq!(got, json!({"client/#/io.l5d.fs/a/requests": 1}));
}

#[test]
fn concurrent_recording_adds_up_exactly() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 50_000;
    let reg = Registry::new();
    let t0 = Instant::now();
    reg.rotate(t0);
    let (c, g, h) =
        metrics::with_local_recorder(&reg, || (counter!("c"), gauge!("g"), histogram!("h")));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (c, g, h) = (c.clone(), g.clone(), h.clone());
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    c.increment(1);
                    g.increment(1.0);
                    h.record(((t * PER_THREAD + i) % 1000) as f64);
                }
            });
        }
    });
    let got = reg.metrics_json(None, false, t0 + MINUTE).unwrap();
    let n = THREADS * PER_THREAD;
    assert_eq!(got["c"], n);
    assert_eq!(got["g"], n as f64);
    assert_eq!(got["h.count"], n);
    assert_eq!(got["h.sum"], n / 1000 * (999 * 1000 / 2));
    assert_eq!(
        (got["h.min"].as_u64(), got["h.max"].as_u64()),
        (Some(0), Some(999))
    );
}

/// Lint messages promtool raises for every Linkerd-compatible name: Linkerd's metrics use
/// `:` scopes, have no `_total` suffix and keep `ms` in their names. Anything else fails.
const LINKERD_NAMING_LINTS: [&str; 3] = [
    "metric names should not contain ':'",
    "counter metrics should have \"_total\" suffix",
    "metric names should not contain abbreviated units",
];

#[test]
fn promtool_accepts_the_exposition() {
    let required = std::env::var("PLEXUS_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!(
                "promtool not runnable ({e}); skipping (set PLEXUS_REQUIRE_PROMTOOL=1 to fail)"
            );
            return;
        }
        Err(e) => panic!("PLEXUS_REQUIRE_PROMTOOL=1 but promtool cannot run: {e}"),
    };

    let reg = Registry::new();
    let t0 = Instant::now();
    reg.rotate(t0);
    metrics::with_local_recorder(&reg, || {
        let svc = [("rt", "outgoing"), ("service", "svc/world")];
        counter!("rt:service:requests", &svc).increment(12);
        counter!("rt:service:failures", "rt" => "outgoing", "service" => "svc/world",
            "exception" => "com.twitter.finagle.ConnectionFailedException:java.net.ConnectException")
        .increment(1);
        histogram!("rt:service:request_latency_ms", &svc).record(4.0);
        histogram!("rt:service:retries:per_request", &svc).record(0.0);
        for code in ["200", "503"] {
            counter!(format!("rt:server:status:{code}"), "rt" => "outgoing",
                "server" => "0.0.0.0/4140")
            .increment(1);
        }
        gauge!("rt:client:connections", "rt" => "outgoing",
            "client" => "#/io.l5d.k8s/default/http/world-v1")
        .set(3.0);
        gauge!("rt:client:loadbalancer:load", "rt" => "outgoing",
            "client" => "weird \"id\"\\with\nnewline")
        .set(f64::NAN);
        histogram!("rt:client:connect_latency_ms", "rt" => "outgoing",
            "client" => "#/io.l5d.k8s/default/http/world-v1")
        .record(1.0);
        gauge!("process/uptime-ms").set(1234.0);
        // A stat with an empty window: NaN quantiles and mean.
        let _empty =
            histogram!("rt:service:retries:per_request", "rt" => "incoming", "service" => "svc/x");
    });
    let text = reg.prometheus("", t0 + MINUTE);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(3),
        "promtool rejected the text ({code:?}):\n{report}\n---\n{text}"
    );
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !LINKERD_NAMING_LINTS.iter().any(|lint| l.ends_with(lint)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool problems beyond Linkerd's naming:\n{}\n---\n{text}",
        unexpected.join("\n")
    );
}
