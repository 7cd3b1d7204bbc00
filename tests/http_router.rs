//! `plexus run` end to end: real processes, real sockets, the real `curl`.
//!
//! A one-host mesh on 127.0.0.1: the tutorial's hello and world apps (`helloworld`)
//! find each other through Plexus with an `io.l5d.fs` config, the way the first
//! Linkerd tutorial runs.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{
    Proc, backend, curl, free_port, helloworld_bin, listening, plexus_bin, scratch, wait_for,
};

struct Mesh {
    disco: PathBuf,
    outgoing: u16,
    edge: u16,
    admin: u16,
    plexus: Proc,
    _apps: Vec<Proc>,
}

fn write_service(disco: &std::path::Path, name: &str, endpoints: &[SocketAddr]) {
    let text: String = endpoints
        .iter()
        .map(|a| format!("{} {}\n", a.ip(), a.port()))
        .collect();
    // Write-then-rename, as deployment tools do, so the namer never sees half a file.
    let tmp = disco.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write service file");
    std::fs::rename(&tmp, disco.join(name)).expect("rename service file");
}

fn start_app(
    dir: &std::path::Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Proc, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut cmd = Command::new(helloworld_bin());
    cmd.arg(format!("-addr={addr}"))
        .args(args)
        .env_clear()
        .env("POD_IP", "127.0.0.1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let p = Proc::spawn(&mut cmd, dir.join(format!("{name}.log")));
    wait_for(&format!("{name} to listen"), || listening(addr));
    (p, addr)
}

fn start_plexus(dir: &std::path::Path, config: &str) -> Proc {
    let file = dir.join("plexus.yaml");
    std::fs::write(&file, config).expect("config");
    Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(&file)
            .env("RUST_LOG", "info"),
        dir.join("plexus.log"),
    )
}

fn mesh(name: &str) -> Mesh {
    let dir = scratch(name);
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco dir");
    let (outgoing, edge, admin) = (free_port(), free_port(), free_port());
    let proxy = format!("127.0.0.1:{outgoing}");
    let (hello, hello_addr) = start_app(
        &dir,
        "hello",
        &["-text=Hello", "-target=world"],
        &[("http_proxy", &proxy)],
    );
    let (world, world_addr) = start_app(&dir, "world", &[], &[("TARGET_WORLD", "world")]);
    let (earth, earth_addr) = start_app(&dir, "earth", &[], &[("TARGET_WORLD", "earth")]);
    write_service(&disco, "hello", &[hello_addr]);
    write_service(&disco, "world-v1", &[world_addr]);
    write_service(&disco, "world-v2", &[earth_addr]);
    write_service(&disco, "empty", &[]);
    let config = format!(
        "admin:\n  ip: 127.0.0.1\n  port: {admin}\n  shutdownGraceMs: 10000\n\
         namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
         routers:\n- protocol: http\n  label: outgoing\n  dtab: |\n    /srv => /#/io.l5d.fs;\n    /host => /srv;\n    /svc => /host;\n    /host/world => /srv/world-v1;\n\
         \x20 servers:\n  - ip: 127.0.0.1\n    port: {outgoing}\n    addForwardedHeader:\n      by: {{kind: router}}\n      for: {{kind: ip}}\n\
         \x20 - ip: 127.0.0.1\n    port: {edge}\n    clearContext: true\n",
        disco = disco.display()
    );
    let plexus = start_plexus(&dir, &config);
    let ready: SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
    wait_for("plexus to serve", || listening(ready));
    Mesh {
        disco,
        outgoing,
        edge,
        admin,
        plexus,
        _apps: vec![hello, world, earth],
    }
}

impl Mesh {
    fn proxy(&self) -> String {
        format!("http://127.0.0.1:{}", self.outgoing)
    }
    fn edge_proxy(&self) -> String {
        format!("http://127.0.0.1:{}", self.edge)
    }
    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }
}

#[test]
fn hello_calls_world_through_plexus_and_the_override_propagates() {
    let m = mesh("hello-world");
    let rsp = curl(&["-x", &m.proxy(), "http://hello"]);
    assert_eq!(
        (rsp.status, rsp.body.as_str()),
        (200, "Hello (127.0.0.1) world (127.0.0.1)!!"),
        "{}",
        m.plexus.log_text()
    );

    // The override reaches the inner call (hello forwards l5d-ctx-dtab): world-v2 is earth.
    let rsp = curl(&[
        "-x",
        &m.proxy(),
        "-H",
        "l5d-dtab: /host/world => /srv/world-v2",
        "http://hello",
    ]);
    assert_eq!(rsp.body, "Hello (127.0.0.1) earth (127.0.0.1)!!");

    // An edge server with clearContext ignores it, so outsiders cannot steer routing.
    let rsp = curl(&[
        "-x",
        &m.edge_proxy(),
        "-H",
        "l5d-dtab: /host/world => /srv/world-v2",
        "http://hello",
    ]);
    assert_eq!(rsp.body, "Hello (127.0.0.1) world (127.0.0.1)!!");
}

#[test]
fn errors_are_answered_like_linkerd_with_l5d_err() {
    let m = mesh("errors");
    let rsp = curl(&[
        "-x",
        &m.proxy(),
        "-H",
        "l5d-dtab: /host/world =>",
        "http://hello",
    ]);
    assert_eq!(rsp.status, 400);
    assert!(
        rsp.body
            .starts_with("Invalid l5d-dtab header: simple expected but end of input found"),
        "{}",
        rsp.body
    );
    assert!(
        rsp.header("l5d-err")
            .is_some_and(|e| e.starts_with("Invalid+l5d-dtab+header"))
    );

    let rsp = curl(&["-x", &m.proxy(), "http://empty"]);
    assert_eq!(rsp.status, 502);
    assert!(
        rsp.body
            .starts_with("No hosts are available for /svc/empty, Dtab.base=[/srv=>/#/io.l5d.fs;"),
        "{}",
        rsp.body
    );
    assert!(rsp.header("l5d-err").is_some());

    let rsp = curl(&["-x", &m.proxy(), "http://nowhere"]);
    assert_eq!(rsp.status, 502);

    // An origin-form request without Host cannot be identified.
    let rsp = curl(&["-H", "Host:", &format!("http://127.0.0.1:{}/", m.outgoing)]);
    assert_eq!(rsp.status, 400);
    assert!(
        rsp.header("l5d-err")
            .is_some_and(|e| e.starts_with("Unable+to+identify")),
        "{rsp:?}"
    );

    // The edge hides Plexus's error details.
    let rsp = curl(&["-x", &m.edge_proxy(), "http://empty"]);
    assert_eq!(
        (rsp.status, rsp.body.as_str(), rsp.header("l5d-err")),
        (502, "", None)
    );

    // An endpoint that refuses connections.
    write_service(
        &m.disco,
        "dead",
        &[format!("127.0.0.1:{}", free_port()).parse().expect("addr")],
    );
    let mut rsp = curl(&["-x", &m.proxy(), "http://dead"]);
    wait_for("the dead service to be bound", || {
        rsp = curl(&["-x", &m.proxy(), "http://dead"]);
        rsp.body.contains("Unable to connect")
    });
    assert_eq!(rsp.status, 502);
    assert_eq!(rsp.header("l5d-retryable"), Some("true"));
}

#[test]
fn editing_a_service_file_moves_traffic_without_a_restart() {
    let m = mesh("fs-edit");
    assert_eq!(
        curl(&["-x", &m.proxy(), "http://world-v1"]).body,
        "world (127.0.0.1)!"
    );
    let earth = std::fs::read_to_string(m.disco.join("world-v2")).expect("read");
    std::fs::write(m.disco.join("world-v1"), earth).expect("edit");
    wait_for("traffic to move to earth", || {
        curl(&["-x", &m.proxy(), "http://world-v1"]).body == "earth (127.0.0.1)!"
    });
}

#[test]
fn proxy_headers_are_rewritten_as_linkerd_does() {
    let m = mesh("headers");
    let b = backend::start();
    write_service(&m.disco, "echo", &[b.addr]);
    let want = |rsp: &support::CurlResponse, line: &str| {
        assert!(rsp.body.contains(line), "{line:?} missing in\n{}", rsp.body)
    };
    let mut rsp = curl(&[
        "-x",
        &m.proxy(),
        "http://echo/a/b?c=d",
        "-H",
        "Connection: x-hop",
        "-H",
        "x-hop: 1",
        "-H",
        "l5d-ctx-custom: kept",
    ]);
    wait_for("echo to be known", || {
        rsp = curl(&[
            "-x",
            &m.proxy(),
            "http://echo/a/b?c=d",
            "-H",
            "Connection: x-hop",
            "-H",
            "x-hop: 1",
            "-H",
            "l5d-ctx-custom: kept",
        ]);
        rsp.status == 200
    });
    want(&rsp, "GET /a/b?c=d HTTP/1.1");
    want(&rsp, "host: echo\n");
    want(&rsp, "l5d-dst-service: /svc/echo\n");
    want(&rsp, "l5d-dst-client: /#/io.l5d.fs/echo\n");
    want(&rsp, "via: 1.1 plexus\n");
    want(&rsp, "l5d-ctx-custom: kept\n");
    want(
        &rsp,
        "forwarded: by=_outgoing;for=127.0.0.1;host=echo;proto=http\n",
    );
    assert!(
        rsp.body
            .lines()
            .any(|l| l.starts_with("l5d-reqid: ") && l.len() == "l5d-reqid: ".len() + 16),
        "{}",
        rsp.body
    );
    assert!(!rsp.body.contains("x-hop"), "{}", rsp.body);
    assert_eq!(rsp.header("via"), Some("1.1 plexus"));
    assert_eq!(rsp.header("l5d-success-class"), Some("1.0"));

    // The override is forwarded as context, never as l5d-dtab.
    let rsp = curl(&["-x", &m.proxy(), "-H", "l5d-dtab: /x => /y", "http://echo/"]);
    want(&rsp, "l5d-ctx-dtab: /x=>/y\n");
    assert!(!rsp.body.contains("l5d-dtab:"), "{}", rsp.body);
    // A path residual is passed on.
    let rsp = curl(&[
        "-x",
        &m.proxy(),
        "-H",
        "l5d-dtab: /svc/deep => /srv/echo/more/parts",
        "http://deep/",
    ]);
    want(&rsp, "l5d-dst-residual: /more/parts\n");
}

#[test]
fn connections_plexus_accepts_and_makes_have_tcp_keepalive() {
    let m = mesh("keepalive");
    let b = backend::start();
    write_service(&m.disco, "echo", &[b.addr]);
    wait_for("echo to be known", || {
        curl(&["-x", &m.proxy(), "http://echo/"]).status == 200
    });
    // A client connection kept open after its answer, and Plexus's pooled connection to
    // the backend behind it.
    let mut client = TcpStream::connect(("127.0.0.1", m.outgoing)).expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
        .expect("request");
    let mut head = [0u8; 12];
    client.read_exact(&mut head).expect("response");
    assert_eq!(&head, b"HTTP/1.1 200");
    // Plexus's side of both must carry the keepalive timer (2), the one armed on an idle
    // connection. Until the peer acknowledges the last bytes (a delayed ACK), a
    // connection shows the retransmit timer instead, hence the wait.
    let idle = |conns: &[support::TcpConn]| {
        conns.iter().any(|c| c.local_port == m.outgoing)
            && conns.iter().any(|c| c.remote_port == b.addr.port())
            && conns
                .iter()
                .filter(|c| c.local_port != m.admin)
                .all(|c| c.timer == 2)
    };
    let mut conns = Vec::new();
    wait_for("both connections, all with keepalive", || {
        conns = support::established_tcp(m.plexus.pid());
        idle(&conns)
    });
    assert!(
        idle(&conns),
        "both connections, all with keepalive: {conns:?}"
    );
}

#[test]
fn large_bodies_stream_both_ways_in_bounded_memory() {
    let m = mesh("streaming");
    let b = backend::start();
    write_service(&m.disco, "files", &[b.addr]);
    wait_for("files to be known", || {
        curl(&["-x", &m.proxy(), "http://files/sink", "-d", "x"]).body == "1"
    });
    let before = m.plexus.rss_kib();

    // 1 GiB up, chunked, from a pipe.
    const GIB: u64 = 1 << 30;
    let mut upload = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "300",
            "-x",
            &m.proxy(),
            "-T",
            "-",
            "http://files/sink",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    let mut stdin = upload.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'u'; 1 << 20];
        for _ in 0..(GIB >> 20) {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    writer.join().expect("writer");
    let out = upload.wait_with_output().expect("upload");
    assert_eq!(String::from_utf8_lossy(&out.stdout), GIB.to_string());

    // 1 GiB down.
    let down = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -s --max-time 300 -x {} 'http://files/big?bytes={GIB}' | wc -c",
            m.proxy()
        ))
        .output()
        .expect("download");
    assert_eq!(
        String::from_utf8_lossy(&down.stdout).trim(),
        GIB.to_string()
    );

    let peak = m.plexus.peak_rss_kib();
    assert!(
        peak < before + 16 * 1024,
        "memory grew from {before} KiB to a peak of {peak} KiB"
    );
}

#[test]
fn shutdown_finishes_in_flight_requests_and_exits_0() {
    let mut m = mesh("shutdown");
    let b = backend::start();
    write_service(&m.disco, "slow", &[b.addr]);
    wait_for("slow to be known", || {
        curl(&["-x", &m.proxy(), "http://slow/echo"]).status == 200
    });
    let proxy = m.proxy();
    let in_flight = std::thread::spawn(move || curl(&["-x", &proxy, "http://slow/hold"]));
    wait_for("the request to reach the backend", || {
        b.control.held.load(Ordering::SeqCst) == 1
    });

    m.plexus.terminate();
    // New connections are refused once draining starts...
    wait_for("the listener to close", || {
        !listening(format!("127.0.0.1:{}", m.outgoing).parse().expect("addr"))
    });
    // ...and the request already in flight still completes.
    b.control.release.store(true, Ordering::SeqCst);
    let rsp = in_flight.join().expect("request thread");
    assert_eq!((rsp.status, rsp.body.as_str()), (200, "released"));
    assert_eq!(m.plexus.wait_exit(), Some(0), "{}", m.plexus.log_text());
}

#[test]
fn admin_endpoints_explain_and_stop() {
    let mut m = mesh("admin");
    assert_eq!(curl(&[&m.admin_url("/admin/ping")]).body, "pong");
    let rsp = curl(&[&m.admin_url("/delegator.json?namespace=outgoing&path=/svc/world")]);
    assert_eq!(rsp.status, 200);
    let tree: serde_json::Value = serde_json::from_str(&rsp.body).expect("json");
    assert_eq!(tree["type"], "delegate");
    assert_eq!(
        tree["delegate"]["alt"][0]["delegate"]["bound"]["id"],
        "/#/io.l5d.fs/world-v1"
    );
    let rsp = curl(&[
        "-X",
        "POST",
        "-d",
        r#"{"namespace":"outgoing","path":"/svc/hello","dtab":"/svc=>/$/inet/127.0.0.1/1"}"#,
        &m.admin_url("/delegator.json"),
    ]);
    let tree: serde_json::Value = serde_json::from_str(&rsp.body).expect("json");
    assert_eq!(tree["delegate"]["bound"]["id"], "/$/inet/127.0.0.1/1");
    assert_eq!(
        curl(&[&m.admin_url("/delegator.json?namespace=outgoing&path=x")]).status,
        400
    );
    assert_eq!(
        curl(&[&m.admin_url("/delegator.json?namespace=nope&path=/x")]).status,
        404
    );

    curl(&["-x", &m.proxy(), "http://hello"]);
    let state: serde_json::Value =
        serde_json::from_str(&curl(&[&m.admin_url("/client_state.json")]).body).expect("json");
    assert_eq!(state["/#/io.l5d.fs/hello"]["state"], "bound");
    assert!(
        curl(&[&m.admin_url("/config.json")])
            .body
            .contains("\"label\":\"outgoing\"")
    );
    assert_eq!(curl(&[&m.admin_url("/admin/shutdown")]).status, 405);
    assert_eq!(
        curl(&["-X", "POST", &m.admin_url("/admin/shutdown")]).body,
        "quitting\n"
    );
    assert_eq!(m.plexus.wait_exit(), Some(0));
}

#[test]
fn upgrade_requests_pass_through() {
    let m = mesh("upgrade");
    let b = backend::start();
    write_service(&m.disco, "ws", &[b.addr]);
    wait_for("ws to be known", || {
        curl(&["-x", &m.proxy(), "http://ws/echo"]).status == 200
    });
    let mut s = TcpStream::connect(("127.0.0.1", m.outgoing)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    s.write_all(b"ping over the upgraded stream")
        .expect("write");
    let mut echoed = [0u8; 29];
    s.read_exact(&mut echoed).expect("echo");
    assert_eq!(&echoed, b"ping over the upgraded stream");
}

#[test]
fn metrics_count_requests_per_server_service_and_client() {
    let m = mesh("metrics");
    for _ in 0..3 {
        assert_eq!(curl(&["-x", &m.proxy(), "http://hello"]).status, 200);
    }
    assert_eq!(curl(&["-x", &m.proxy(), "http://empty"]).status, 502);
    let metrics: serde_json::Value =
        serde_json::from_str(&curl(&[&m.admin_url("/admin/metrics.json")]).body).expect("json");
    let n = |k: &str| {
        metrics
            .get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{k} missing in {metrics}"))
    };
    // hello's own call to world goes through the same router, so the server saw 3 + 3 + 1.
    let server = format!("rt/outgoing/server/127.0.0.1/{}", m.outgoing);
    assert_eq!(n(&format!("{server}/requests")), 7.0);
    assert_eq!(n(&format!("{server}/success")), 6.0);
    assert_eq!(n(&format!("{server}/failures")), 1.0);
    assert_eq!(n(&format!("{server}/status/502")), 1.0);
    assert_eq!(n(&format!("{server}/status/2XX")), 6.0);
    assert_eq!(n("rt/outgoing/service/svc/hello/requests"), 3.0);
    assert_eq!(n("rt/outgoing/service/svc/world/success"), 3.0);
    assert_eq!(
        n("rt/outgoing/service/svc/empty/failures/NoBrokersAvailableException"),
        1.0
    );
    assert_eq!(n("rt/outgoing/client/#/io.l5d.fs/world-v1/requests"), 3.0);
    assert_eq!(n("rt/outgoing/client/#/io.l5d.fs/hello/status/200"), 3.0);
    assert_eq!(
        n("rt/outgoing/service/svc/hello/request_latency_ms.count"),
        0.0,
        "the minute window has not closed yet"
    );

    let subtree: serde_json::Value = serde_json::from_str(
        &curl(&[&m.admin_url("/admin/metrics.json?q=rt/outgoing/service/svc/hello")]).body,
    )
    .expect("json");
    assert_eq!(subtree["requests"], 3);
    assert_eq!(
        curl(&[&m.admin_url("/admin/metrics.json?q=no/such/scope")]).status,
        404
    );

    let prom = curl(&[&m.admin_url("/admin/metrics/prometheus")]).body;
    assert!(
        prom.contains("rt:service:requests{rt=\"outgoing\",service=\"svc/hello\"} 3"),
        "{prom}"
    );
    assert!(
        prom.contains(&format!(
            "rt:server:connections{{rt=\"outgoing\",server=\"127.0.0.1/{}\"}}",
            m.outgoing
        )),
        "{prom}"
    );
    support::promtool_check(&prom);
}

#[test]
fn transformers_rewrite_bound_names_and_show_in_the_delegator() {
    let dir = scratch("transformers");
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    let b = backend::start();
    // The file names a port nobody listens on; the port transformer sends to the backend.
    write_service(
        &disco,
        "web",
        &[format!("127.0.0.1:{}", free_port()).parse().expect("addr")],
    );
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {admin}}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
         routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n  interpreter:\n    kind: default\n    transformers:\n\
         \x20   - kind: io.l5d.port\n      port: {bport}\n    - kind: io.l5d.localhost\n  servers:\n  - port: {port}\n",
        disco = disco.display(),
        bport = b.addr.port()
    );
    let _plexus = start_plexus(&dir, &config);
    wait_for("plexus to serve", || {
        listening(format!("127.0.0.1:{admin}").parse().expect("addr"))
    });
    let proxy = format!("http://127.0.0.1:{port}");
    let mut rsp = curl(&["-x", &proxy, "http://web/"]);
    wait_for("web to be bound", || {
        rsp = curl(&["-x", &proxy, "http://web/"]);
        rsp.status == 200
    });
    let client = format!(
        "l5d-dst-client: /%/io.l5d.localhost/%/io.l5d.port/{}/#/io.l5d.fs/web\n",
        b.addr.port()
    );
    assert!(rsp.body.contains(&client), "{}", rsp.body);

    let rsp = curl(&[&format!(
        "http://127.0.0.1:{admin}/delegator.json?namespace=http&path=/svc/web"
    )]);
    let tree: serde_json::Value = serde_json::from_str(&rsp.body).expect("json");
    let outer = &tree["delegate"];
    // Applied in order: the port transformer's result goes through the localhost one.
    assert_eq!(outer["type"], "transformation", "{tree}");
    assert_eq!(outer["name"], "PortTransformer");
    assert_eq!(outer["bound"]["id"], "/#/io.l5d.fs/web");
    let inner = &outer["tree"];
    assert_eq!(inner["name"], "LocalhostTransformer");
    assert_eq!(
        inner["bound"]["id"],
        format!("/%/io.l5d.port/{}/#/io.l5d.fs/web", b.addr.port())
    );
    assert_eq!(
        inner["tree"]["bound"]["addr"]["addrs"][0]["port"],
        b.addr.port()
    );
}

#[test]
fn idle_services_and_clients_are_evicted_with_their_metrics() {
    let dir = scratch("evict");
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    let b = backend::start();
    write_service(&disco, "web", &[b.addr]);
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {admin}}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
         routers:\n- protocol: http\n  bindingCache: {{idleTtlSecs: 1}}\n  dtab: /svc => /#/io.l5d.fs\n  servers:\n  - port: {port}\n",
        disco = disco.display()
    );
    let _plexus = start_plexus(&dir, &config);
    wait_for("plexus to serve", || {
        listening(format!("127.0.0.1:{admin}").parse().expect("addr"))
    });
    let proxy = format!("http://127.0.0.1:{port}");
    wait_for("web to answer", || {
        curl(&["-x", &proxy, "http://web/"]).status == 200
    });
    let metrics = |q: &str| {
        curl(&[&format!(
            "http://127.0.0.1:{admin}/admin/metrics.json?q={q}"
        )])
        .status
    };
    let clients = || curl(&[&format!("http://127.0.0.1:{admin}/client_state.json")]).body;
    assert_eq!(metrics("rt/http/service/svc/web"), 200);
    assert_eq!(metrics("rt/http/client/#/io.l5d.fs/web"), 200);
    assert!(clients().contains("/#/io.l5d.fs/web"));
    // Idle for more than a second: gone, series and client state alike.
    wait_for("the idle service to be evicted", || {
        metrics("rt/http/service/svc/web") == 404
    });
    wait_for("the idle client to be evicted", || {
        metrics("rt/http/client/#/io.l5d.fs/web") == 404
    });
    assert!(!clients().contains("/#/io.l5d.fs/web"));
    // Traffic brings them back.
    assert_eq!(curl(&["-x", &proxy, "http://web/"]).status, 200);
    assert_eq!(metrics("rt/http/service/svc/web"), 200);
    let requests: serde_json::Value = serde_json::from_str(
        &curl(&[&format!(
            "http://127.0.0.1:{admin}/admin/metrics.json?q=rt/http/service/svc/web/requests"
        )])
        .body,
    )
    .expect("json");
    // Counted afresh from zero: the evicted series did not survive.
    assert_eq!(requests, serde_json::json!({"": 1}));
}

#[test]
fn head_requests_and_oversized_heads() {
    let m = mesh("head");
    let rsp = curl(&["-I", "-x", &m.proxy(), "http://world-v1/"]);
    assert_eq!((rsp.status, rsp.body.as_str()), (200, ""));
    assert_eq!(rsp.header("content-length"), Some("18"), "{rsp:?}");
    // A request head over maxHeadersKB + maxInitialLineKB (12 KiB) is refused.
    let big = format!("x-big: {}", "a".repeat(16 * 1024));
    assert_eq!(
        curl(&["-x", &m.proxy(), "-H", &big, "http://world-v1/"]).status,
        431
    );
    assert_eq!(curl(&["-x", &m.proxy(), "http://world-v1/"]).status, 200);
}

#[test]
fn a_client_that_goes_away_mid_request_leaves_nothing_pending() {
    let m = mesh("cancel");
    let b = backend::start();
    write_service(&m.disco, "held", &[b.addr]);
    wait_for("held to be known", || {
        curl(&["-x", &m.proxy(), "http://held/echo"]).status == 200
    });
    // curl gives up after a second while the backend still holds the request.
    let gave_up = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "1",
            "-x",
            &m.proxy(),
            "http://held/hold",
        ])
        .output()
        .expect("curl");
    assert_eq!(gave_up.status.code(), Some(28), "curl should time out");
    b.control.release.store(true, Ordering::SeqCst);
    let pending = |scope: &str| {
        let body = curl(&[&m.admin_url("/admin/metrics.json")]).body;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v.get(format!("rt/outgoing/{scope}/pending"))
            .and_then(serde_json::Value::as_f64)
    };
    wait_for("pending requests to drain", || {
        pending(&format!("server/127.0.0.1/{}", m.outgoing)) == Some(0.0)
            && pending("service/svc/held") == Some(0.0)
            && pending("client/#/io.l5d.fs/held") == Some(0.0)
    });
}

#[test]
fn plexus_stat_shows_each_service_of_each_router() {
    let m = mesh("stat");
    for _ in 0..4 {
        assert_eq!(curl(&["-x", &m.proxy(), "http://hello"]).status, 200);
    }
    let out = Command::new(plexus_bin())
        .args([
            "stat",
            "--once",
            "--interval",
            "0.2",
            "--admin",
            &format!("127.0.0.1:{}", m.admin),
        ])
        .output()
        .expect("plexus stat");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |service: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(service))
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no {service} row in\n{text}"))
    };
    assert!(text.starts_with("ROUTER"), "{text}");
    assert_eq!(row("/svc/hello").last().map(String::as_str), Some("4"));
    assert_eq!(row("/svc/world").last().map(String::as_str), Some("4"));
    assert!(text.contains("(all services)"), "{text}");
    let bad = Command::new(plexus_bin())
        .args(["stat", "--once", "--admin", "127.0.0.1:1"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot read metrics from 127.0.0.1:1"));
}

#[test]
fn a_taken_port_is_named_and_nothing_panics() {
    let dir = scratch("taken");
    std::fs::create_dir_all(dir.join("disco")).expect("disco");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {port}}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {}\n\
         routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n  servers:\n  - port: {}\n",
        dir.join("disco").display(),
        free_port()
    );
    std::fs::write(dir.join("plexus.yaml"), config).expect("config");
    let out = Command::new(plexus_bin())
        .arg("run")
        .arg(dir.join("plexus.yaml"))
        .output()
        .expect("plexus");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for the admin server"
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
