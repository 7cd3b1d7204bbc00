//! The HTTP/1.1 → HTTP/2 upgrade between two Plexus peers, end to end: node 1's
//! outgoing router (with `peerUpgrades: [h2]`) sends to node 2's incoming router, which
//! delivers to an HTTP/1.1 backend. The first request carries the offer; every later one
//! rides one HTTP/2 connection and comes out as the HTTP/1.1 request the client sent.
//! An endpoint that is not a Plexus keeps getting HTTP/1.1.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::{Proc, backend, curl, free_port, run_plexus, scratch};

struct Node {
    router: SocketAddr,
    admin: SocketAddr,
    _plexus: Proc,
}

/// A Plexus on `ip` with one http router whose fs namer knows `services`.
fn node(name: &str, ip: &str, label: &str, services: &[(&str, SocketAddr)], client: &str) -> Node {
    let dir = scratch(name);
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    for (file, addr) in services {
        std::fs::write(disco.join(file), format!("{} {}\n", addr.ip(), addr.port()))
            .expect("write");
    }
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "admin: {{ip: {ip}, port: {admin}}}\n\
namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
routers:\n- protocol: http\n  label: {label}\n  dtab: /svc => /#/io.l5d.fs;\n{client}  servers:\n  - ip: {ip}\n    port: {port}\n",
        disco = disco.display()
    );
    let router: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    let admin: SocketAddr = format!("{ip}:{admin}").parse().expect("addr");
    let plexus = run_plexus(name, &dir, &config, router, admin);
    Node {
        router,
        admin,
        _plexus: plexus,
    }
}

const UPGRADES: &str = "  client:\n    peerUpgrades: [h2]\n";

fn metric(node: &Node, key: &str) -> f64 {
    let m: serde_json::Value = serde_json::from_str(
        &curl(&["-sS", &format!("http://{}/admin/metrics.json", node.admin)]).body,
    )
    .unwrap_or_default();
    m.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

fn protocols(node: &Node) -> serde_json::Value {
    let state: serde_json::Value = serde_json::from_str(
        &curl(&["-sS", &format!("http://{}/client_state.json", node.admin)]).body,
    )
    .unwrap_or_default();
    state
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, c)| c["protocols"].clone())
        .find(|p| p.as_object().is_some_and(|o| !o.is_empty()))
        .unwrap_or_default()
}

#[test]
fn http1_rides_http2_between_plexus_peers_and_comes_out_as_http1() {
    let b = backend::start();
    let incoming = node(
        "peer-incoming",
        "127.0.2.1",
        "incoming",
        &[("web", b.addr)],
        "",
    );
    let outgoing = node(
        "peer-outgoing",
        "127.0.1.1",
        "outgoing",
        &[("web", incoming.router)],
        UPGRADES,
    );
    let proxy = format!("http://{}", outgoing.router);
    let h2_requests = format!(
        "rt/incoming/server/{}/{}/protocol/h2/requests",
        incoming.router.ip(),
        incoming.router.port()
    );

    // The first request carries the offer (never seen by the backend) over HTTP/1.1.
    let first = curl(&["-sS", "-x", &proxy, "http://web/echo"]);
    assert_eq!(first.status, 200, "{first:?}");
    assert!(
        first.body.starts_with("GET /echo HTTP/1.1"),
        "{}",
        first.body
    );
    assert!(!first.body.contains("l5d-peer-upgrade"), "{}", first.body);
    assert!(first.header("l5d-peer-upgrade").is_none());
    assert_eq!(metric(&incoming, &h2_requests), 0.0);

    // Then HTTP/2 between the peers; the backend still gets HTTP/1.1 with its Host.
    for i in 0..5 {
        let r = curl(&["-sS", "-x", &proxy, &format!("http://web/echo/{i}")]);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body.starts_with(&format!("GET /echo/{i} HTTP/1.1")),
            "{}",
            r.body
        );
        assert!(r.body.contains("host: web\n"), "{}", r.body);
    }
    assert_eq!(metric(&incoming, &h2_requests), 5.0);
    assert_eq!(
        protocols(&outgoing)[incoming.router.to_string()],
        "h2",
        "{}",
        protocols(&outgoing)
    );

    // A chunked upload of unknown length arrives whole.
    let data = "0123456789".repeat(20_000);
    let file = scratch("peer-upload").join("upload.bin");
    std::fs::write(&file, &data).expect("upload file");
    let r = curl(&[
        "-sS",
        "-x",
        &proxy,
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        "http://web/sink",
    ]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, data.len().to_string());
    assert_eq!(metric(&incoming, &h2_requests), 6.0);

    // An Upgrade request stays HTTP/1.1 end to end, through both peers.
    let mut s = TcpStream::connect(outgoing.router).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    s.write_all(b"ping").expect("write");
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).expect("echo");
    assert_eq!(&echoed, b"ping");
    assert_eq!(
        metric(&incoming, &h2_requests),
        6.0,
        "the upgrade went over HTTP/1.1"
    );
}

#[test]
fn an_endpoint_that_is_not_a_plexus_keeps_getting_http1() {
    let b = backend::start();
    let outgoing = node(
        "peer-plain",
        "127.0.3.1",
        "outgoing",
        &[("web", b.addr)],
        UPGRADES,
    );
    let proxy = format!("http://{}", outgoing.router);
    // The offer goes with the first request only; the backend ignores it.
    let first = curl(&["-sS", "-x", &proxy, "http://web/echo"]);
    assert_eq!(first.status, 200);
    assert!(
        first.body.contains("l5d-peer-upgrade: h2"),
        "{}",
        first.body
    );
    for _ in 0..3 {
        let r = curl(&["-sS", "-x", &proxy, "http://web/echo"]);
        assert_eq!(r.status, 200);
        assert!(r.body.starts_with("GET /echo HTTP/1.1"), "{}", r.body);
        assert!(!r.body.contains("l5d-peer-upgrade"), "{}", r.body);
    }
    assert_eq!(protocols(&outgoing)[b.addr.to_string()], "http/1.1");
}
