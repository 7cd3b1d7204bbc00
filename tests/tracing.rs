//! Distributed tracing and recent requests end to end: real `plexus run` processes as two
//! hosts on loopback (host N owns 127.0.N.0/24: its Plexus on 127.0.N.1, its apps on
//! 127.0.N.10), a small Zipkin-compatible collector in the test that checks every posted
//! span against the Zipkin v2 model, and the real `curl`.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use support::{
    Proc, backend, curl, free_port, helloworld_bin, listening, plexus_bin, scratch, wait_for,
};

// ---------------------------------------------------------------------------------
// The collector

/// Spans the collector accepted, and everything it found wrong.
#[derive(Default)]
struct Received {
    spans: Vec<Value>,
    problems: Vec<String>,
}

struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Collector {
    /// Starts on 127.0.0.1, on its own thread and runtime.
    fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Received>> = Arc::default();
        let r = received.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let r = r.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let r = r.clone();
                            async move { Ok::<_, Infallible>(collect(&r, req).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        Collector { addr, received }
    }

    fn spans(&self) -> Vec<Value> {
        self.received.lock().unwrap().spans.clone()
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Value> {
        self.spans()
            .into_iter()
            .filter(|s| s["traceId"] == trace_id)
            .collect()
    }

    /// Waits until `n` spans of `trace_id` arrived, and checks no span was malformed.
    fn wait_for_trace(&self, trace_id: &str, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} spans of trace {trace_id}"), || {
            self.of_trace(trace_id).len() >= n
        });
        let problems = self.received.lock().unwrap().problems.clone();
        assert!(problems.is_empty(), "invalid spans: {problems:#?}");
        let spans = self.of_trace(trace_id);
        assert_eq!(spans.len(), n, "{spans:#?}");
        spans
    }
}

async fn collect(r: &Mutex<Received>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut problems = Vec::new();
    if req.method() != http::Method::POST || req.uri().path() != "/api/v2/spans" {
        problems.push(format!("{} {}", req.method(), req.uri()));
    }
    if req.headers().get("content-type").map(|v| v.as_bytes()) != Some(b"application/json") {
        problems.push(format!(
            "content-type {:?}",
            req.headers().get("content-type")
        ));
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let spans = match body.map(|b| serde_json::from_slice::<Value>(&b)) {
        Ok(Ok(Value::Array(spans))) => spans,
        other => {
            problems.push(format!("not a JSON array: {other:?}"));
            Vec::new()
        }
    };
    for span in &spans {
        if let Err(e) = check_span(span) {
            problems.push(format!("{e}: {span}"));
        }
    }
    let status = if problems.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut received = r.lock().unwrap();
    received.spans.extend(spans);
    received.problems.extend(problems);
    let mut rsp = Response::new(Full::new(Bytes::new()));
    *rsp.status_mut() = status;
    rsp
}

fn lower_hex(v: &Value, lens: &[usize]) -> Result<(), String> {
    let s = v.as_str().ok_or("not a string")?;
    if !lens.contains(&s.len()) {
        return Err(format!("{s:?} has {} digits", s.len()));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("{s:?} is not lower-hex"));
    }
    if s.bytes().all(|b| b == b'0') {
        return Err(format!("{s:?} is zero"));
    }
    Ok(())
}

fn check_endpoint(v: &Value, local: bool) -> Result<(), String> {
    let o = v.as_object().ok_or("endpoint is not an object")?;
    for k in o.keys() {
        if !["serviceName", "ipv4", "ipv6", "port"].contains(&k.as_str()) {
            return Err(format!("unknown endpoint key {k}"));
        }
    }
    if local
        && o.get("serviceName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err("the local endpoint has no serviceName".into());
    }
    if let Some(ip) = o.get("ipv4") {
        ip.as_str()
            .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
            .ok_or("bad ipv4")?;
    }
    if let Some(ip) = o.get("ipv6") {
        ip.as_str()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .ok_or("bad ipv6")?;
    }
    if let Some(p) = o.get("port") {
        p.as_u64()
            .filter(|p| (1..=65535).contains(p))
            .ok_or("bad port")?;
    }
    Ok(())
}

/// The Zipkin v2 span model (zipkin2 `Span`): field names, id formats, kinds, and epoch
/// microseconds.
fn check_span(s: &Value) -> Result<(), String> {
    const KEYS: [&str; 12] = [
        "traceId",
        "id",
        "parentId",
        "kind",
        "name",
        "timestamp",
        "duration",
        "localEndpoint",
        "remoteEndpoint",
        "tags",
        "annotations",
        "debug",
    ];
    let o = s.as_object().ok_or("span is not an object")?;
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key {k}"));
    }
    lower_hex(&s["traceId"], &[16, 32]).map_err(|e| format!("traceId {e}"))?;
    lower_hex(&s["id"], &[16]).map_err(|e| format!("id {e}"))?;
    if let Some(p) = o.get("parentId") {
        lower_hex(p, &[16]).map_err(|e| format!("parentId {e}"))?;
        if p == &s["id"] {
            return Err("a span is its own parent".into());
        }
    }
    let kind = s["kind"].as_str().ok_or("no kind")?;
    if !["CLIENT", "SERVER", "PRODUCER", "CONSUMER"].contains(&kind) {
        return Err(format!("kind {kind}"));
    }
    s["name"].as_str().ok_or("no name")?;
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let ts = s["timestamp"]
        .as_u64()
        .ok_or("timestamp is not an integer")?;
    // Microseconds since 2020 and not in the future (milliseconds or nanoseconds fail).
    if !(1_577_836_800_000_000..=now_us).contains(&ts) {
        return Err(format!("timestamp {ts} is not epoch microseconds"));
    }
    let d = s["duration"].as_u64().ok_or("duration is not an integer")?;
    if d == 0 || ts + d > now_us {
        return Err(format!("duration {d} is not microseconds"));
    }
    check_endpoint(&s["localEndpoint"], true)?;
    if let Some(r) = o.get("remoteEndpoint") {
        check_endpoint(r, false)?;
    }
    if let Some(t) = o.get("tags") {
        let t = t.as_object().ok_or("tags is not an object")?;
        if t.values().any(|v| !v.is_string()) {
            return Err("tag values must be strings".into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Processes and helpers

fn start_plexus(dir: &Path, name: &str, admin: SocketAddr, config: &str) -> Proc {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, config).expect("config");
    let p = Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(&file)
            .env("RUST_LOG", "info"),
        dir.join(format!("{name}.log")),
    );
    wait_for(&format!("{name} to serve"), || listening(admin));
    p
}

fn zipkin(collector: SocketAddr, rate: &str) -> String {
    format!(
        "telemetry:\n- kind: io.l5d.zipkin\n  host: {}\n  port: {}\n  sampleRate: {rate}\n",
        collector.ip(),
        collector.port()
    )
}

/// One router on `ip:port` sending `/svc/<name>` to `to`.
fn router(label: &str, ip: &str, port: u16, routes: &[(&str, SocketAddr)]) -> String {
    let dtab: String = routes
        .iter()
        .map(|(name, to)| format!("    /svc/{name} => /$/inet/{}/{};\n", to.ip(), to.port()))
        .collect();
    format!(
        "- protocol: http\n  label: {label}\n  dtab: |\n{dtab}  servers:\n  - ip: {ip}\n    port: {port}\n"
    )
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().expect("ip"), port)
}

fn metrics(admin: SocketAddr) -> Value {
    let rsp = curl(&[&format!("http://{admin}/admin/metrics.json")]);
    serde_json::from_str(&rsp.body).expect("metrics.json")
}

fn counter(admin: SocketAddr, name: &str) -> u64 {
    metrics(admin)[name].as_u64().unwrap_or(0)
}

fn tag<'a>(span: &'a Value, key: &str) -> &'a str {
    span["tags"][key].as_str().unwrap_or_default()
}

/// The request head the echo backend saw, as lower-case header → value.
fn echoed_headers(body: &str) -> HashMap<String, String> {
    body.lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect()
}

/// Finagle's layout read independently of Plexus: (span, parent, trace, flags, high).
fn finagle_ids(l5d_ctx_trace: &str) -> (u64, u64, u64, u64, Option<u64>) {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD
        .decode(l5d_ctx_trace)
        .expect("base64");
    assert!(b.len() == 32 || b.len() == 40, "{} bytes", b.len());
    let w = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    (w(0), w(1), w(2), w(3), (b.len() == 40).then(|| w(4)))
}

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

// ---------------------------------------------------------------------------------
// Tests

/// The seed's picture: a request to hello crosses host 1's outgoing and host 2's
/// incoming router; hello's call to world crosses host 2's outgoing and host 1's
/// incoming router. Each router records a server and a client span: 8 spans, one trace,
/// one chain of parents.
#[test]
fn a_hello_world_request_across_two_hosts_is_one_trace_of_eight_spans() {
    let dir = scratch("tracing-hello-world");
    let collector = Collector::start();
    let (world_port, hello_port) = (free_port(), free_port());
    let (out1, in1, admin1) = (free_port(), free_port(), free_port());
    let (out2, in2, admin2) = (free_port(), free_port(), free_port());
    let app = |name: &str, ip: &str, port: u16, args: &[&str], env: &[(&str, String)]| {
        let mut cmd = Command::new(helloworld_bin());
        cmd.arg(format!("-addr={ip}:{port}"))
            .args(args)
            .env_clear()
            .env("POD_IP", ip);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let p = Proc::spawn(&mut cmd, dir.join(format!("{name}.log")));
        wait_for(&format!("{name} to listen"), || listening(addr(ip, port)));
        p
    };
    let _world = app(
        "world",
        "127.0.1.10",
        world_port,
        &[],
        &[("TARGET_WORLD", "world".into())],
    );
    let _hello = app(
        "hello",
        "127.0.2.10",
        hello_port,
        &["-text=Hello", "-target=world"],
        &[("http_proxy", format!("http://127.0.2.1:{out2}"))],
    );
    let host = |ip: &str, admin: u16, routers: String| {
        format!(
            "admin:\n  ip: {ip}\n  port: {admin}\nrouters:\n{routers}{}",
            zipkin(collector.addr, "1.0")
        )
    };
    let config1 = host(
        "127.0.1.1",
        admin1,
        router(
            "outgoing",
            "127.0.1.1",
            out1,
            &[("hello", addr("127.0.2.1", in2))],
        ) + &router(
            "incoming",
            "127.0.1.1",
            in1,
            &[("world", addr("127.0.1.10", world_port))],
        ),
    );
    let config2 = host(
        "127.0.2.1",
        admin2,
        router(
            "outgoing",
            "127.0.2.1",
            out2,
            &[("world", addr("127.0.1.1", in1))],
        ) + &router(
            "incoming",
            "127.0.2.1",
            in2,
            &[("hello", addr("127.0.2.10", hello_port))],
        ),
    );
    let host1 = start_plexus(&dir, "host1", addr("127.0.1.1", admin1), &config1);
    let host2 = start_plexus(&dir, "host2", addr("127.0.2.1", admin2), &config2);

    let rsp = curl(&["-x", &format!("http://127.0.1.1:{out1}"), "http://hello/"]);
    assert_eq!(
        (rsp.status, rsp.body.as_str()),
        (200, "Hello (127.0.2.10) world (127.0.1.10)!!"),
        "{}\n{}",
        host1.log_text(),
        host2.log_text()
    );

    wait_for("8 spans", || collector.spans().len() >= 8);
    let spans = collector.spans();
    let trace_id = spans[0]["traceId"].as_str().expect("traceId").to_string();
    let spans = collector.wait_for_trace(&trace_id, 8);
    assert_eq!(collector.spans().len(), 8, "one trace only");

    // Follow the chain from the root: each span's parent is the one before it.
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|s| s.get("parentId").is_none())
        .collect();
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let mut chain = vec![roots[0].clone()];
    while let Some(next) = spans
        .iter()
        .find(|s| s.get("parentId") == chain.last().map(|p| &p["id"]))
    {
        chain.push(next.clone());
    }
    let shape: Vec<(String, &str, String)> = chain
        .iter()
        .map(|s| {
            (
                s["localEndpoint"]["serviceName"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                s["kind"].as_str().unwrap(),
                s["localEndpoint"]["ipv4"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, &str, String)> = [
        ("outgoing", "SERVER", "127.0.1.1"),
        ("outgoing", "CLIENT", "127.0.1.1"),
        ("incoming", "SERVER", "127.0.2.1"),
        ("incoming", "CLIENT", "127.0.2.1"),
        ("outgoing", "SERVER", "127.0.2.1"),
        ("outgoing", "CLIENT", "127.0.2.1"),
        ("incoming", "SERVER", "127.0.1.1"),
        ("incoming", "CLIENT", "127.0.1.1"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), *b, c.to_string()))
    .collect();
    assert_eq!(shape, expected, "{chain:#?}");

    // Every span is within its parent (causal order; 1 ms for rounding to microseconds).
    for pair in chain.windows(2) {
        let (p, c) = (&pair[0], &pair[1]);
        let (pt, pd) = (
            p["timestamp"].as_u64().unwrap(),
            p["duration"].as_u64().unwrap(),
        );
        let (ct, cd) = (
            c["timestamp"].as_u64().unwrap(),
            c["duration"].as_u64().unwrap(),
        );
        assert!(ct + 1000 >= pt && ct + cd <= pt + pd + 1000, "{p}\n{c}");
    }

    // Tags and endpoints.
    let hello_client = format!("/$/inet/127.0.2.1/{in2}");
    for (i, service, client) in [
        (0, "/svc/hello", hello_client.clone()),
        (1, "/svc/hello", hello_client.clone()),
        (4, "/svc/world", format!("/$/inet/127.0.1.1/{in1}")),
        (7, "/svc/world", format!("/$/inet/127.0.1.10/{world_port}")),
    ] {
        let s = &chain[i];
        assert_eq!(tag(s, "http.method"), "GET", "{s}");
        assert_eq!(tag(s, "http.path"), "/", "{s}");
        assert_eq!(tag(s, "http.status_code"), "200", "{s}");
        assert_eq!(
            tag(s, "router.label"),
            s["localEndpoint"]["serviceName"],
            "{s}"
        );
        assert_eq!(tag(s, "l5d.dst.service"), service, "{s}");
        assert_eq!(tag(s, "l5d.dst.client"), client, "{s}");
        assert_eq!(s["name"], "get");
        assert!(s["tags"].get("error").is_none(), "{s}");
    }
    assert_eq!(tag(&chain[0], "http.host"), "hello");
    assert_eq!(chain[1]["remoteEndpoint"]["ipv4"], "127.0.2.1");
    assert_eq!(chain[1]["remoteEndpoint"]["port"], in2);
    assert_eq!(chain[7]["remoteEndpoint"]["ipv4"], "127.0.1.10");
    assert_eq!(chain[7]["remoteEndpoint"]["port"], world_port);
    // The incoming server span's remote endpoint is the outgoing router that called it.
    assert_eq!(chain[2]["remoteEndpoint"]["ipv4"], "127.0.0.1");

    // Each host sent its four spans and dropped none.
    for admin in [addr("127.0.1.1", admin1), addr("127.0.2.1", admin2)] {
        wait_for("the sent counter", || {
            counter(admin, "zipkin/spans/sent") == 4
        });
        assert_eq!(counter(admin, "zipkin/spans/dropped"), 0);
    }
}

/// One hop pair in front of the echo backend: the backend sees the client span's
/// context in B3 and `l5d-ctx-trace`, callers' B3 and `l5d-ctx-trace` contexts are
/// continued, and unsampled requests are propagated but never recorded.
#[test]
fn trace_context_reaches_the_backend_and_callers_traces_are_continued() {
    let dir = scratch("tracing-context");
    let collector = Collector::start();
    let echo = backend::start_on("127.0.2.10".parse().unwrap());
    let (out1, in2, admin1, admin2) = (free_port(), free_port(), free_port(), free_port());
    let config1 = format!(
        "admin:\n  ip: 127.0.1.1\n  port: {admin1}\nrouters:\n{}{}",
        router(
            "outgoing",
            "127.0.1.1",
            out1,
            &[("echo", addr("127.0.2.1", in2))]
        ),
        zipkin(collector.addr, "1.0")
    );
    let config2 = format!(
        "admin:\n  ip: 127.0.2.1\n  port: {admin2}\nrouters:\n{}{}",
        router("incoming", "127.0.2.1", in2, &[("echo", echo.addr)]),
        zipkin(collector.addr, "1.0")
    );
    let _host1 = start_plexus(&dir, "host1", addr("127.0.1.1", admin1), &config1);
    let _host2 = start_plexus(&dir, "host2", addr("127.0.2.1", admin2), &config2);
    let proxy = format!("http://127.0.1.1:{out1}");
    let get = |headers: &[&str]| {
        let mut args = vec!["-x", proxy.as_str()];
        for h in headers {
            args.extend(["-H", h]);
        }
        args.push("http://echo/trace");
        let rsp = curl(&args);
        assert_eq!(rsp.status, 200, "{}", rsp.body);
        echoed_headers(&rsp.body)
    };

    // A caller's 128-bit B3 context.
    let trace128 = "463ac35c9f6413ad48485a3953bb6124";
    let seen = get(&[
        &format!("x-b3-traceid: {trace128}"),
        "x-b3-spanid: a2fb4a1d1a96d312",
        "x-b3-sampled: 1",
    ]);
    let spans = collector.wait_for_trace(trace128, 4);
    let by = |name: &str, kind: &str| {
        spans
            .iter()
            .find(|s| s["localEndpoint"]["serviceName"] == name && s["kind"] == kind)
            .unwrap_or_else(|| panic!("no {name} {kind} span in {spans:#?}"))
            .clone()
    };
    let (out_server, out_client) = (by("outgoing", "SERVER"), by("outgoing", "CLIENT"));
    let (in_server, in_client) = (by("incoming", "SERVER"), by("incoming", "CLIENT"));
    assert_eq!(out_server["parentId"], "a2fb4a1d1a96d312");
    assert_eq!(out_client["parentId"], out_server["id"]);
    assert_eq!(in_server["parentId"], out_client["id"]);
    assert_eq!(in_client["parentId"], in_server["id"]);
    // The backend sees the incoming router's client span, in both formats.
    assert_eq!(seen["x-b3-traceid"], trace128);
    assert_eq!(seen["x-b3-spanid"], in_client["id"].as_str().unwrap());
    assert_eq!(seen["x-b3-parentspanid"], in_server["id"].as_str().unwrap());
    assert_eq!(seen["x-b3-sampled"], "1");
    assert_eq!(seen["l5d-reqid"], "48485a3953bb6124");
    let (span, parent, trace, flags, high) = finagle_ids(&seen["l5d-ctx-trace"]);
    assert_eq!(hex(span), in_client["id"].as_str().unwrap());
    assert_eq!(hex(parent), in_server["id"].as_str().unwrap());
    assert_eq!(format!("{}{}", hex(high.unwrap()), hex(trace)), trace128);
    assert_eq!(flags, 6, "sampling known and sampled");
    assert!(!seen.contains_key("b3") && !seen.contains_key("l5d-sample"));
    assert_eq!(out_server["tags"]["http.uri"], "/trace");

    // A Linkerd caller's l5d-ctx-trace (Finagle's layout, built here by hand).
    let ctx = {
        use base64::Engine as _;
        let mut b = Vec::new();
        for w in [
            0x0a0b_0c0d_0e0f_1011u64,
            0x0101_0101_0101_0101,
            0x7777_0000_0000_0001,
            6,
        ] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    get(&[&format!("l5d-ctx-trace: {ctx}")]);
    let spans = collector.wait_for_trace("7777000000000001", 4);
    let root = spans
        .iter()
        .find(|s| s["kind"] == "SERVER" && s["localEndpoint"]["serviceName"] == "outgoing")
        .expect("outgoing server span");
    assert_eq!(root["parentId"], "0a0b0c0d0e0f1011");

    // Not sampled, by the caller's B3 decision and by l5d-sample: 0 (which overrides
    // the configured rate of 1.0). Both still propagate the decision.
    let unsampled_b3 = get(&["b3: 00000000000000b3-00000000000000b4-0"]);
    assert_eq!(unsampled_b3["x-b3-traceid"], "00000000000000b3");
    assert_eq!(unsampled_b3["x-b3-sampled"], "0");
    assert_eq!(
        finagle_ids(&unsampled_b3["l5d-ctx-trace"]).3,
        2,
        "known, not sampled"
    );
    let unsampled_l5d = get(&["l5d-sample: 0"]);
    assert_eq!(unsampled_l5d["x-b3-sampled"], "0");
    // A sampled request after them: once its spans arrived, theirs would have too.
    let after = get(&[]);
    collector.wait_for_trace(&after["x-b3-traceid"], 4);
    for unsampled in [&unsampled_b3, &unsampled_l5d] {
        assert!(collector.of_trace(&unsampled["x-b3-traceid"]).is_empty());
    }
    // Host 2 has no recentRequests telemeter.
    let rsp = curl(&[&format!("http://127.0.2.1:{admin2}/requests.json")]);
    assert_eq!(rsp.status, 404);
}

/// A collector that is down costs requests nothing: they succeed, and the spans are
/// dropped and counted. `l5d-sample` samples requests the rate (0) would not.
#[test]
fn a_down_collector_drops_and_counts_spans_while_requests_succeed() {
    let dir = scratch("tracing-down");
    let echo = backend::start_on("127.0.1.10".parse().unwrap());
    // Nothing listens on a port that was just free.
    let down = addr("127.0.0.1", free_port());
    let (out, admin) = (free_port(), free_port());
    let config = format!(
        "admin:\n  ip: 127.0.1.1\n  port: {admin}\nrouters:\n{}{}",
        router("outgoing", "127.0.1.1", out, &[("echo", echo.addr)]),
        zipkin(down, "0.0")
    );
    let plexus = start_plexus(&dir, "host1", addr("127.0.1.1", admin), &config);
    let admin = addr("127.0.1.1", admin);
    for i in 0..5 {
        let rsp = curl(&[
            "-x",
            &format!("http://127.0.1.1:{out}"),
            "-H",
            "l5d-sample: 1.0",
            &format!("http://echo/{i}"),
        ]);
        assert_eq!(rsp.status, 200, "{}", plexus.log_text());
    }
    // A server and a client span per request.
    wait_for("10 dropped spans", || {
        counter(admin, "zipkin/spans/dropped") >= 10
    });
    assert_eq!(counter(admin, "zipkin/spans/dropped"), 10);
    assert_eq!(counter(admin, "zipkin/spans/sent"), 0);
    let prom = curl(&[&format!("http://{admin}/admin/metrics/prometheus")]);
    assert!(
        prom.body.lines().any(|l| l == "zipkin:spans:dropped 10"),
        "{}",
        prom.body
    );
    assert!(plexus.log_text().contains("cannot send spans to Zipkin"));
}

/// `io.l5d.recentRequests` keeps the newest sampled requests, newest first, within its
/// capacity, with what the dashboard shows.
#[test]
fn recent_requests_keep_the_newest_within_capacity() {
    let dir = scratch("tracing-recent");
    let echo = backend::start_on("127.0.1.10".parse().unwrap());
    let (out, admin) = (free_port(), free_port());
    let config = format!(
        "admin:\n  ip: 127.0.1.1\n  port: {admin}\nrouters:\n{}telemetry:\n- kind: io.l5d.recentRequests\n  sampleRate: 1.0\n  capacity: 3\n",
        router("outgoing", "127.0.1.1", out, &[("echo", echo.addr)]),
    );
    let _plexus = start_plexus(&dir, "host1", addr("127.0.1.1", admin), &config);
    let proxy = format!("http://127.0.1.1:{out}");
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..4 {
        let rsp = curl(&["-x", &proxy, &format!("http://echo/r{i}?q={i}")]);
        assert_eq!(rsp.status, 200);
    }
    // Unroutable: identified, never bound.
    let rsp = curl(&["-x", &proxy, "http://nowhere/x"]);
    assert_eq!(rsp.status, 502);
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;

    let rsp = curl(&[&format!("http://127.0.1.1:{admin}/requests.json")]);
    assert_eq!(rsp.status, 200);
    let v: Value = serde_json::from_str(&rsp.body).expect("JSON");
    let requests = v["requests"].as_array().expect("requests");
    let uris: Vec<&str> = requests
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["/x", "/r3?q=3", "/r2?q=2"]);
    let newest = &requests[0];
    assert_eq!(
        (
            &newest["host"],
            &newest["dstService"],
            &newest["dstClient"],
            &newest["status"]
        ),
        (
            &Value::from("nowhere"),
            &Value::from("/svc/nowhere"),
            &Value::Null,
            &Value::from(502)
        )
    );
    let r3 = &requests[1];
    assert_eq!(r3["router"], "outgoing");
    assert_eq!(r3["method"], "GET");
    assert_eq!(r3["host"], "echo");
    assert_eq!(r3["dstService"], "/svc/echo");
    assert_eq!(
        r3["dstClient"],
        format!("/$/inet/{}/{}", echo.addr.ip(), echo.addr.port())
    );
    assert_eq!(r3["status"], 200);
    assert!(r3["durationMs"].as_f64().is_some_and(|d| d >= 0.0));
    let ts = r3["timestampMs"].as_u64().expect("timestampMs");
    assert!(
        (before..=after).contains(&ts),
        "{before} <= {ts} <= {after}"
    );
    let source: SocketAddr = r3["source"].as_str().unwrap().parse().expect("source");
    assert!(source.ip().is_loopback());
}
