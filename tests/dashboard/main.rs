//! The dashboard and the dtab playground in a real headless Chromium, driven over
//! WebDriver (chromedriver), against a running `plexus` with live traffic.
//!
//! The page must show what `/admin/metrics.json` says: the test compares the numbers a
//! user reads on the cards and in the tables with the metrics endpoint for the same router,
//! service and client, checks the page's own arithmetic (rates across counter resets,
//! never NaN) in the browser, runs a delegation in the playground, and keeps screenshots
//! in `target/test-artifacts/`. Chromium and chromedriver are Debian's `chromium` and
//! `chromium-driver`, which `scripts/test.sh` installs; without them the test fails.

#[path = "../support/mod.rs"]
mod support;
mod webdriver;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::{Proc, backend, curl, free_port, listening, plexus_bin, scratch, wait_for};
use webdriver::{Driver, Session};

/// A router config with the services the test sends traffic to.
struct Mesh {
    admin: u16,
    outgoing: u16,
    incoming: u16,
    web: backend::Backend,
    api: backend::Backend,
    dead: SocketAddr,
    plexus: Proc,
}

fn write_service(disco: &Path, name: &str, endpoints: &[SocketAddr]) {
    let text: String = endpoints
        .iter()
        .map(|a| format!("{} {}\n", a.ip(), a.port()))
        .collect();
    std::fs::write(disco.join(name), text).expect("service file");
}

fn mesh(dir: &Path) -> Mesh {
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    let web = backend::start();
    let api = backend::start();
    // Nobody listens here: requests to `broken` fail and its instance is ejected.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    write_service(&disco, "web", &[web.addr]);
    write_service(&disco, "api", &[api.addr]);
    write_service(&disco, "broken", &[dead]);
    // The incoming router reaches the same backends under other names.
    write_service(&disco, "hello", &[web.addr]);
    write_service(&disco, "world", &[api.addr]);
    write_service(&disco, "api-v2", &[api.addr]);
    let (admin, outgoing, incoming) = (free_port(), free_port(), free_port());
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {admin}}}\n\
         namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
         routers:\n\
         - protocol: http\n  label: outgoing\n  dtab: |\n    /srv => /#/io.l5d.fs;\n    /svc => /srv;\n\
         \x20   /svc/web => /srv/web-canary | /srv/web;\n    /svc/api => 9 * /srv/api & 1 * /srv/api-v2;\n\
         \x20 client:\n    loadBalancer: {{kind: ewma}}\n\
         \x20 servers:\n  - ip: 127.0.0.1\n    port: {outgoing}\n\
         - protocol: http\n  label: incoming\n  dtab: /svc => /#/io.l5d.fs\n\
         \x20 servers:\n  - ip: 127.0.0.1\n    port: {incoming}\n",
        disco = disco.display()
    );
    let file = dir.join("plexus.yaml");
    std::fs::write(&file, config).expect("config");
    let plexus = Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(&file)
            .env("RUST_LOG", "info"),
        dir.join("plexus.log"),
    );
    let ready: SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
    wait_for("plexus to serve", || listening(ready));
    Mesh {
        admin,
        outgoing,
        incoming,
        web,
        api,
        dead,
        plexus,
    }
}

impl Mesh {
    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    fn metrics(&self) -> BTreeMap<String, Value> {
        let rsp = curl(&[&self.admin_url("/admin/metrics.json")]);
        assert_eq!(rsp.status, 200, "{}", rsp.body);
        serde_json::from_str(&rsp.body).expect("metrics.json")
    }
}

/// One proxied request through a router (absolute-form, as `http_proxy` users send).
fn request(port: u16, host: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    let _ = std::io::copy(&mut s, &mut std::io::sink());
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Requests through both routers until stopped: mostly to `web` and `api` (`hello` and
/// `world` through the incoming router), with varying latency, and now and then to
/// `broken`.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(m: &Mesh) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (outgoing, incoming) = (m.outgoing, m.incoming);
        let (web, api) = (m.web.control.clone(), m.api.control.clone());
        let (s, n) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            // A fixed pseudo-random sequence: latencies of a few ms with a slow tail.
            let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut i: u64 = 0;
            while !s.load(Ordering::SeqCst) {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let r = (seed >> 33) % 100;
                let latency = match r {
                    0..=79 => 1 + r % 4,
                    80..=97 => 6 + r % 10,
                    _ => 30,
                };
                web.latency_ms.store(latency, Ordering::SeqCst);
                api.latency_ms.store(latency / 2 + 1, Ordering::SeqCst);
                let (port, host) = match i % 10 {
                    0..=4 => (outgoing, "web"),
                    5..=7 => (outgoing, "api"),
                    8 => (incoming, "hello"),
                    _ if i % 20 == 9 => (outgoing, "broken"),
                    _ => (incoming, "world"),
                };
                let _ = request(port, host);
                n.fetch_add(1, Ordering::SeqCst);
                i += 1;
                // Pacing only (a few dozen requests a second); nothing is timed.
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        Traffic {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("traffic thread");
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `probe` until it returns `Ok`, for at most `secs`; the last `Err` explains a
/// timeout.
fn eventually<T>(what: &str, secs: u64, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}: {why}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// What the page shows in `field` of the card or row `[data-kind=kind]` with the given
/// router and id (`None`: not on the page).
fn shown(s: &Session, kind: &str, router: &str, id: &str, field: &str) -> Option<String> {
    let v = s.execute(
        "const [kind, router, id, field] = arguments;
         const card = [...document.querySelectorAll('[data-kind=\"' + kind + '\"]')]
           .find(e => (!router || e.dataset.router === router) && (!id || e.dataset.id === id));
         const f = card && card.querySelector('[data-field=\"' + field + '\"]');
         return f ? f.textContent : null;",
        json!([kind, router, id, field]),
    );
    v.as_str().map(str::to_string)
}

fn count(text: &str) -> Option<u64> {
    text.replace(',', "").parse().ok()
}

fn percent(text: &str) -> Option<f64> {
    text.strip_suffix('%')?.parse().ok()
}

fn get(metrics: &BTreeMap<String, Value>, key: &str) -> u64 {
    metrics.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A router's totals as the dashboard defines them: the sum over its servers.
fn router_counts(metrics: &BTreeMap<String, Value>, router: &str) -> (u64, u64, u64) {
    let prefix = format!("rt/{router}/server/");
    let sum = |leaf: &str| -> u64 {
        metrics
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && k.ends_with(leaf))
            .filter(|(k, _)| k[prefix.len()..].matches('/').count() == 2)
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    };
    (sum("/requests"), sum("/success"), sum("/failures"))
}

/// Checks that a card shows `requests` and the all-time success rate of
/// (`success`, `failures`), to the two decimals it displays.
fn matches_counts(
    s: &Session,
    kind: &str,
    router: &str,
    id: &str,
    (requests, success, failures): (u64, u64, u64),
) -> Result<(), String> {
    let what = format!("{kind} {router} {id}");
    let req = shown(s, kind, router, id, "requests").ok_or(format!("no {what} on the page"))?;
    if count(&req) != Some(requests) {
        return Err(format!(
            "{what}: page shows {req} requests, metrics.json {requests}"
        ));
    }
    let rate = shown(s, kind, router, id, "success-all").unwrap_or_default();
    let want = 100.0 * success as f64 / (success + failures) as f64;
    match percent(&rate) {
        Some(got) if (got - want).abs() <= 0.005 + 1e-9 => Ok(()),
        _ => Err(format!(
            "{what}: page shows success {rate}, metrics.json {want:.4}%"
        )),
    }
}

/// The latency text the page shows for a percentile of metrics.json.
fn latency_text(metrics: &BTreeMap<String, Value>, key: &str) -> String {
    match metrics.get(key).and_then(Value::as_u64) {
        Some(ms) => format!("{ms} ms"),
        None => "\u{2014}".to_string(),
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// No text on the page reads NaN, Infinity or undefined.
fn assert_no_garbage(s: &Session) {
    let text = s
        .execute("return document.body.innerText;", json!([]))
        .as_str()
        .unwrap_or_default()
        .to_string();
    for bad in ["NaN", "Infinity", "undefined", "null%"] {
        assert!(!text.contains(bad), "the page shows {bad}:\n{text}");
    }
}

/// The console holds no error but the expected failed loads (404s and 400s the pages
/// handle).
fn assert_no_errors(s: &Session, expected: &str) {
    let severe: Vec<_> = s
        .console()
        .into_iter()
        .filter(|(level, msg)| level == "SEVERE" && !msg.contains(expected))
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
}

/// The page's arithmetic, run in the browser: rates from counter differences survive a
/// reset, windows sum what they cover, and nothing formats as NaN.
fn check_model_in_browser(s: &Session) {
    let v = s.execute(
        r#"
        const M = window.PlexusModel;
        const tree = (req, succ, fail, svcReq) => ({rt: {web: {
          server: {"127.0.0.1/4140": {requests: {counter: req}, success: {counter: succ},
                                       failures: {counter: fail}}},
          service: {"svc/a": {requests: {counter: svcReq}, success: {counter: svcReq},
                              failures: {counter: 0}, retries: {total: {counter: 1}}}},
        }}});
        const a = M.snapshot(tree(100, 90, 10, 50), 1000);
        const b = M.snapshot(tree(130, 115, 15, 70), 3000);
        const c = M.snapshot(tree(7, 7, 0, 4), 4000); // Plexus restarted
        const s1 = M.step(a, b), s2 = M.step(b, c);
        const w = M.windowSum([s1, s2], 4000, 60, s => s.routers.web.total);
        return {
          s1: [s1.dt, s1.all.requests, s1.all.success, s1.all.failures],
          restartedAB: M.restarted(a, b), restartedBC: M.restarted(b, c),
          s2: [s2.dt, s2.all.requests, s2.routers.web.services["svc/a"].requests],
          window: [w.requests, w.secs, M.perSecond(w.requests, w.secs)],
          rate: M.fmtPercent(M.successRate(w.success, w.failures)),
          idle: [M.fmtPercent(M.successRate(0, 0)), M.fmtRate(M.perSecond(5, 0)),
                 M.fmtMs(NaN), M.fmtInt(Infinity), M.fmtRate(1234.4), M.fmtInt(1234567)],
          latency: M.combineLatency([{count: 2, p50: 3, p95: 9, p99: 20, max: 20},
                                     null, {count: 5, p50: 4, p95: 7, p99: 30, max: 31}]),
          balancer: [
            M.balancerFor({client: {kind: "io.l5d.static", configs: [
              {prefix: "/#/io.l5d.fs", loadBalancer: {kind: "ewma"}},
              {prefix: "/#/*/pay{x}", loadBalancer: {kind: "heap"}}]}}, "/#/io.l5d.fs/payments"),
            M.balancerFor({client: {loadBalancer: {kind: "aperture"}}}, "/#/x"),
            M.balancerFor({}, "/#/x")],
          dtab: M.dtabLines("/a=>/b; /c => /d ;"),
        };
        "#,
        json!([]),
    );
    assert_eq!(v["s1"], json!([2, 30, 25, 5]), "{v}");
    assert_eq!(v["restartedAB"], false);
    assert_eq!(v["restartedBC"], true);
    // After the restart the new counters are all counted, never a negative difference.
    assert_eq!(v["s2"], json!([1, 7, 4]), "{v}");
    assert_eq!(v["window"], json!([37, 3, 37.0 / 3.0]), "{v}");
    assert_eq!(v["rate"], "86.49%", "{v}");
    assert_eq!(
        v["idle"],
        json!([
            "\u{2014}",
            "\u{2014}",
            "\u{2014}",
            "\u{2014}",
            "1,234",
            "1,234,567"
        ])
    );
    assert_eq!(v["latency"]["p50"], 4);
    assert_eq!(v["latency"]["p99"], 30);
    assert_eq!(v["latency"]["count"], 7);
    assert_eq!(v["latency"]["combined"], true);
    assert_eq!(v["balancer"], json!(["heap", "aperture", "p2c"]));
    assert_eq!(v["dtab"], "/a=>/b;\n/c => /d;");
}

#[test]
fn the_dashboard_shows_what_the_metrics_say_and_the_playground_delegates() {
    let dir = scratch("dashboard");
    let m = mesh(&dir);
    let driver = Driver::start(&dir);
    let s = driver.session(&dir.join("chromium-profile"), 1440, 2000);
    let mut traffic = Traffic::start(&m);
    wait_for("traffic to flow", || {
        traffic.sent.load(Ordering::SeqCst) > 20
    });

    s.goto(&m.admin_url("/"));
    check_model_in_browser(&s);

    // Live: rates from successive samples, cards for routers and services.
    eventually("live request rates", 60, || {
        let rps = shown(&s, "top", "", "", "rps").unwrap_or_default();
        match rps.parse::<f64>() {
            Ok(r) if r > 0.0 => Ok(()),
            _ => Err(format!("top line shows {rps:?} requests/s")),
        }
    });
    for (kind, router, id) in [
        ("router", "outgoing", ""),
        ("router", "incoming", ""),
        ("service", "outgoing", "svc/web"),
        ("service", "outgoing", "svc/api"),
        ("service", "incoming", "svc/hello"),
    ] {
        eventually(&format!("the {kind} card {router} {id}"), 30, || {
            let rps = shown(&s, kind, router, id, "rps").ok_or("no card")?;
            match rps.parse::<f64>() {
                Ok(r) if r > 0.0 => Ok(()),
                _ => Err(format!("shows {rps:?} requests/s")),
            }
        });
    }

    // Instances: the live one in rotation, the dead one ejected by the circuit breaker.
    let instances = |id: &str| shown(&s, "client", "outgoing", id, "instances").unwrap_or_default();
    eventually("the client table's instances", 60, || {
        let web = instances("/#/io.l5d.fs/web");
        let broken = instances("/#/io.l5d.fs/broken");
        if web.contains(&format!("{}in rotation", m.web.addr))
            && broken.contains(&format!("{}ejected", m.dead))
        {
            Ok(())
        } else {
            Err(format!("web: {web:?}; broken: {broken:?}"))
        }
    });
    assert_eq!(
        shown(&s, "client", "outgoing", "/#/io.l5d.fs/web", "balancer").as_deref(),
        Some("balancer: ewma")
    );

    // Latency: Plexus reports the last complete minute, so the first numbers come after
    // about a minute of traffic; the page then shows the same percentiles.
    let p50_key = "rt/outgoing/service/svc/web/request_latency_ms.p50";
    eventually("the first latency window", 150, || {
        m.metrics()
            .contains_key(p50_key)
            .then_some(())
            .ok_or_else(|| "no p50 in metrics.json yet".to_string())
    });
    eventually("latency on the service card", 30, || {
        let metrics = m.metrics();
        for (field, key) in [
            ("p50", p50_key),
            ("p99", "rt/outgoing/service/svc/web/request_latency_ms.p99"),
        ] {
            let want = latency_text(&metrics, key);
            let got = shown(&s, "service", "outgoing", "svc/web", field).unwrap_or_default();
            if got != want {
                return Err(format!("{field}: page {got:?}, metrics.json {want:?}"));
            }
        }
        Ok(())
    });
    // A few more seconds of latency history, so the screenshot shows it charted.
    eventually("latency history", 60, || {
        let points = s.execute(
            "return window.PlexusDashboard.series.p99.filter(v => v !== null).length;",
            json!([]),
        );
        if points.as_u64().unwrap_or(0) >= 20 {
            Ok(())
        } else {
            Err(format!("{points} points"))
        }
    });
    let top_p99 = shown(&s, "top", "", "", "p99").unwrap_or_default();
    assert!(top_p99.ends_with(" ms"), "top line p99: {top_p99:?}");
    assert_no_garbage(&s);

    let png = s.screenshot();
    let out = artifacts();
    std::fs::write(out.join("dashboard.png"), &png).expect("write screenshot");

    // Traffic stops: the totals on the page settle on exactly what metrics.json counts.
    traffic.stop();
    eventually("the page to match metrics.json", 30, || {
        let metrics = m.metrics();
        for router in ["outgoing", "incoming"] {
            matches_counts(&s, "router", router, "", router_counts(&metrics, router))?;
        }
        for (router, svc) in [
            ("outgoing", "svc/web"),
            ("outgoing", "svc/api"),
            ("outgoing", "svc/broken"),
            ("incoming", "svc/hello"),
            ("incoming", "svc/world"),
        ] {
            let base = format!("rt/{router}/service/{svc}");
            let counts = (
                get(&metrics, &format!("{base}/requests")),
                get(&metrics, &format!("{base}/success")),
                get(&metrics, &format!("{base}/failures")),
            );
            matches_counts(&s, "service", router, svc, counts)?;
        }
        let client = "rt/outgoing/client/#/io.l5d.fs/web/requests";
        let shown_client =
            shown(&s, "client", "outgoing", "/#/io.l5d.fs/web", "requests").unwrap_or_default();
        if count(&shown_client) != Some(get(&metrics, client)) {
            return Err(format!(
                "client web: page {shown_client}, metrics.json {}",
                get(&metrics, client)
            ));
        }
        let all: u64 = ["outgoing", "incoming"]
            .iter()
            .map(|r| router_counts(&metrics, r).0)
            .sum();
        let top = shown(&s, "top", "", "", "requests").unwrap_or_default();
        if count(&top) != Some(all) {
            return Err(format!("top line: page {top}, metrics.json {all}"));
        }
        Ok(())
    });
    // The broken service really failed, and the page says so.
    let broken = shown(&s, "service", "outgoing", "svc/broken", "success-all").unwrap_or_default();
    assert_eq!(broken, "0.00%");

    // Filtering keeps hundreds of services readable: only matching cards stay.
    let filter = s.find("#filter");
    s.type_text(&filter, "broken");
    eventually("the filter to apply", 10, || {
        let ids = s.execute(
            "return [...document.querySelectorAll('#service-cards [data-kind=service]')]
               .map(e => e.dataset.router + ' ' + e.dataset.id);",
            json!([]),
        );
        if ids == json!(["outgoing svc/broken"]) {
            Ok(())
        } else {
            Err(format!("cards: {ids}"))
        }
    });
    s.clear(&filter);
    s.execute(
        "document.getElementById('filter').dispatchEvent(new Event('input'));",
        json!([]),
    );

    // Sorting the client table by a column header, both ways.
    let column = |field: &str| -> Vec<u64> {
        let v = s.execute(
            "return [...document.querySelectorAll('#client-rows tr')]
               .map(tr => tr.querySelector('[data-field=\"' + arguments[0] + '\"]').textContent);",
            json!([field]),
        );
        v.as_array()
            .expect("rows")
            .iter()
            .map(|t| count(t.as_str().unwrap_or_default()).expect("a count"))
            .collect()
    };
    let header = s.find("#client-table th[data-sort=requests]");
    s.click(&header);
    let desc = column("requests");
    assert!(desc.len() >= 4, "{desc:?}");
    assert!(desc.windows(2).all(|w| w[0] >= w[1]), "{desc:?}");
    s.click(&header);
    let asc = column("requests");
    assert!(asc.windows(2).all(|w| w[0] <= w[1]), "{asc:?}");

    // Recent requests: off until the telemeter is configured...
    eventually("the recent-requests notice", 10, || {
        let text = s
            .execute(
                "return document.getElementById('recent-message').textContent;",
                json!([]),
            )
            .as_str()
            .unwrap_or_default()
            .to_string();
        if text.to_lowercase().contains("recent requests are off")
            && text.contains("io.l5d.recentRequests")
        {
            Ok(())
        } else {
            Err(text)
        }
    });
    assert_eq!(curl(&[&m.admin_url("/requests.json")]).status, 404);
    // ...and a table of what /requests.json returns once it is: the page is given the
    // endpoint's documented shape in place of the 404.
    s.execute(
        r#"
        const real = window.fetch;
        window.fetch = (url, opts) => String(url).startsWith("/requests.json")
          ? Promise.resolve(new Response(JSON.stringify({requests: [
              {timestampMs: 1700000000123, router: "outgoing", method: "GET", uri: "/index",
               host: "web", dstService: "/svc/web", dstClient: "/#/io.l5d.fs/web",
               status: 200, durationMs: 1.5, source: "127.0.0.1:40000"},
              {timestampMs: 1700000000001, router: "outgoing", method: "POST", uri: "/pay",
               host: "broken", dstService: "/svc/broken", dstClient: "/#/io.l5d.fs/broken",
               status: 502, durationMs: 0.25, source: "127.0.0.1:40001"}]}),
              {status: 200, headers: {"content-type": "application/json"}}))
          : real(url, opts);
        "#,
        json!([]),
    );
    eventually("the recent requests table", 10, || {
        let rows = s.execute(
            "return [...document.querySelectorAll('#recent-rows tr')].map(tr =>
               [...tr.cells].map(td => td.textContent.trim()));",
            json!([]),
        );
        let ok = rows[0][2] == "GET web/index"
            && rows[0][3] == "/svc/web"
            && rows[0][5] == "200"
            && rows[0][6] == "1.5 ms"
            && rows[1][5] == "502"
            && rows.as_array().is_some_and(|r| r.len() == 2);
        if ok {
            Ok(())
        } else {
            Err(format!("rows: {rows}"))
        }
    });

    // The browser saw no script error and no blocked load (the CSP would report one).
    assert_no_errors(&s, "/requests.json - Failed to load resource");

    // The playground: choose a router, type a path, press Enter, read the tree.
    s.set_window_size(1440, 1150);
    s.goto(&m.admin_url("/delegator"));
    eventually("the router list", 20, || {
        let v = s.execute(
            "return [...document.querySelectorAll('#router option')].map(o => o.value);",
            json!([]),
        );
        if v == json!(["outgoing", "incoming"]) {
            Ok(())
        } else {
            Err(format!("routers: {v}"))
        }
    });
    let dtab = s.execute("return document.getElementById('dtab').value;", json!([]));
    assert_eq!(
        dtab,
        "/srv => /#/io.l5d.fs;\n/svc => /srv;\n/svc/web => /srv/web-canary | /srv/web;\n\
         /svc/api => 9 * /srv/api & 1 * /srv/api-v2;",
        "pre-filled dtab"
    );
    let path = s.find("#path");
    s.clear(&path);
    s.type_text(&path, "/svc/web/index.html\u{E007}");
    let want = m.web.addr.to_string();
    eventually("the delegation tree", 20, || {
        let v = s.execute(
            "const t = document.getElementById('tree');
             return [document.getElementById('summary').textContent, t ? t.textContent : ''];",
            json!([]),
        );
        let (summary, tree) = (
            v[0].as_str().unwrap_or_default(),
            v[1].as_str().unwrap_or_default(),
        );
        if summary.contains(&want)
            && tree.contains("/#/io.l5d.fs/web")
            && tree.contains("via /srv => /#/io.l5d.fs")
            && tree.contains("residual /index.html")
            && tree.contains("/srv/web-canary/index.html")
            && tree.contains("negative: falls through")
        {
            Ok(())
        } else {
            Err(format!("summary {summary:?}; tree {tree:?}"))
        }
    });
    assert_no_garbage(&s);
    std::fs::write(out.join("delegator.png"), s.screenshot()).expect("write screenshot");
    let url = s.execute("return location.search;", json!([]));
    assert!(
        url.as_str()
            .unwrap_or_default()
            .contains("path=%2Fsvc%2Fweb"),
        "{url}"
    );

    // An edited dtab applies to the explanation; mistakes are reported, not rendered.
    let dtab = s.find("#dtab");
    s.clear(&dtab);
    s.type_text(&dtab, "/svc/web => /$/inet/127.0.0.1/1;");
    s.click(&s.find("#go"));
    eventually("the override", 20, || {
        let summary = s.execute(
            "return document.getElementById('summary').textContent;",
            json!([]),
        );
        let text = summary.as_str().unwrap_or_default();
        if text.contains("127.0.0.1:1") && text.contains("/$/inet/127.0.0.1/1") {
            Ok(())
        } else {
            Err(text.to_string())
        }
    });
    for (path, dtab, error) in [
        ("svc/web", "/svc => /srv;", "Invalid path"),
        ("/svc/web", "/svc => => /srv", "Invalid dtab"),
    ] {
        let (p, d) = (s.find("#path"), s.find("#dtab"));
        s.clear(&p);
        s.type_text(&p, path);
        s.clear(&d);
        s.type_text(&d, dtab);
        s.click(&s.find("#go"));
        eventually(&format!("the error {error}"), 20, || {
            let v = s.execute(
                "const e = document.getElementById('error');
                 return [e.hidden, e.textContent, document.getElementById('result').textContent];",
                json!([]),
            );
            if v[0] == false && v[1].as_str().unwrap_or_default().starts_with(error) && v[2] == "" {
                Ok(())
            } else {
                Err(format!("{v}"))
            }
        });
    }
    assert_no_errors(&s, "/delegator.json - Failed to load resource");
    drop(s);
    assert!(
        m.plexus.log_text().lines().all(|l| !l.contains("panicked")),
        "{}",
        m.plexus.log_text()
    );
}
