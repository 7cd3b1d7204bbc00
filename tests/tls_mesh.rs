//! TLS between two Plexus nodes, end to end: node 1's outgoing router originates TLS
//! (`client.tls`), node 2's incoming router accepts it (`servers[].tls`), with
//! certificates minted by `plexus tls`. With `peerUpgrades: [h2]` the hop is TLS and
//! HTTP/2, as node 2's own metrics show; the applications speak plain HTTP/1.1. Failed
//! handshakes (unknown CA, wrong name, missing client certificate) fail fast with a
//! clear error and are counted, never hang. Inside TLS, HTTP/2 is spoken only when
//! negotiated by ALPN.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Proc, backend, curl, free_port, plexus_bin, run_plexus, scratch, wait_for};

struct Node {
    router: SocketAddr,
    admin: SocketAddr,
    plexus: Proc,
}

fn node(
    name: &str,
    ip: &str,
    label: &str,
    target: SocketAddr,
    router_extra: &str,
    server_extra: &str,
) -> Node {
    let dir = scratch(name);
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    std::fs::write(
        disco.join("web"),
        format!("{} {}\n", target.ip(), target.port()),
    )
    .expect("write");
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "admin: {{ip: {ip}, port: {admin}}}\n\
namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
routers:\n- protocol: http\n  label: {label}\n  dtab: /svc => /#/io.l5d.fs;\n{router_extra}  servers:\n  - ip: {ip}\n    port: {port}\n{server_extra}",
        disco = disco.display()
    );
    let router: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    let admin: SocketAddr = format!("{ip}:{admin}").parse().expect("addr");
    let plexus = run_plexus(name, &dir, &config, router, admin);
    Node {
        router,
        admin,
        plexus,
    }
}

fn tls(args: &[&str]) {
    let out = Command::new(plexus_bin())
        .arg("tls")
        .args(args)
        .output()
        .expect("plexus tls");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir` with a server certificate for `linkerd` (and a client certificate).
fn pki(dir: &Path) -> PathBuf {
    let d = dir.to_str().expect("utf8");
    tls(&["init", d]);
    tls(&["issue", d, "linkerd", "--dns", "linkerd"]);
    tls(&["issue", d, "node-1", "--client"]);
    dir.to_path_buf()
}

fn metric(node: &Node, key: &str) -> f64 {
    let m: serde_json::Value = serde_json::from_str(
        &curl(&["-sS", &format!("http://{}/admin/metrics.json", node.admin)]).body,
    )
    .unwrap_or_default();
    m.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

fn server_tls(ca: &Path, mutual: bool) -> String {
    let mut s = format!(
        "    tls:\n      certPath: {}\n      keyPath: {}\n",
        ca.join("linkerd.pem").display(),
        ca.join("linkerd-key.pk8.pem").display()
    );
    if mutual {
        s.push_str(&format!(
            "      caCertPath: {}\n      requireClientAuth: true\n",
            ca.join("ca.pem").display()
        ));
    }
    s
}

fn client_tls(ca: &Path, common_name: &str, client_cert: bool) -> String {
    let mut s = format!(
        "  client:\n    peerUpgrades: [h2]\n    tls:\n      commonName: {common_name}\n      trustCerts: [{}]\n",
        ca.join("ca.pem").display()
    );
    if client_cert {
        s.push_str(&format!(
            "      clientAuth:\n        certPath: {}\n        keyPath: {}\n",
            ca.join("node-1.pem").display(),
            ca.join("node-1-key.pk8.pem").display()
        ));
    }
    s
}

#[test]
fn the_hop_between_nodes_is_tls_and_http2_and_apps_never_notice() {
    let ca = pki(&scratch("tls-pki"));
    let b = backend::start();
    let incoming = node(
        "tls-in",
        "127.0.2.1",
        "incoming",
        b.addr,
        "",
        &server_tls(&ca, false),
    );
    let outgoing = node(
        "tls-out",
        "127.0.1.1",
        "outgoing",
        incoming.router,
        &client_tls(&ca, "linkerd", false),
        "",
    );
    let proxy = format!("http://{}", outgoing.router);
    let server = format!(
        "rt/incoming/server/{}/{}",
        incoming.router.ip(),
        incoming.router.port()
    );
    for i in 0..4 {
        let r = curl(&["-sS", "-x", &proxy, &format!("http://web/echo/{i}")]);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body.starts_with(&format!("GET /echo/{i} HTTP/1.1")),
            "{}",
            r.body
        );
    }
    assert!(metric(&incoming, &format!("{server}/tls/connections")) >= 2.0);
    assert_eq!(
        metric(&incoming, &format!("{server}/protocol/h2/requests")),
        3.0
    );
    assert_eq!(
        metric(&incoming, &format!("{server}/protocol/http/1.1/requests")),
        1.0
    );

    // A plaintext client cannot talk to the TLS server (the handshake fails; curl gets
    // no HTTP response and says so).
    let plain = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "10",
            &format!("http://{}/echo", incoming.router),
        ])
        .output()
        .expect("curl");
    assert!(!plain.status.success());
}

#[test]
fn failed_handshakes_are_clear_fast_and_counted() {
    let ca = pki(&scratch("tls-pki-bad"));
    let other = pki(&scratch("tls-pki-other"));
    let b = backend::start();
    let incoming = node(
        "tls-in-bad",
        "127.0.2.2",
        "incoming",
        b.addr,
        "",
        &server_tls(&ca, false),
    );
    let server = format!(
        "rt/incoming/server/{}/{}",
        incoming.router.ip(),
        incoming.router.port()
    );

    // A CA the client does not trust.
    let wrong_ca = node(
        "tls-wrong-ca",
        "127.0.1.2",
        "outgoing",
        incoming.router,
        &client_tls(&other, "linkerd", false),
        "",
    );
    let r = curl(&[
        "-sS",
        "-m",
        "20",
        "-x",
        &format!("http://{}", wrong_ca.router),
        "http://web/echo",
    ]);
    assert_eq!(r.status, 502, "{r:?}");
    // (Both CAs are named "Plexus mesh CA": the signature, not the name, gives it away.)
    assert!(
        r.body.contains("TLS handshake failed") && r.body.contains("refused"),
        "{}",
        r.body
    );

    // A name the certificate does not carry.
    let wrong_name = node(
        "tls-wrong-name",
        "127.0.1.3",
        "outgoing",
        incoming.router,
        &client_tls(&ca, "world", false),
        "",
    );
    let r = curl(&[
        "-sS",
        "-m",
        "20",
        "-x",
        &format!("http://{}", wrong_name.router),
        "http://web/echo",
    ]);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        r.body.contains("world") && r.body.contains("linkerd"),
        "{}",
        r.body
    );

    // The server saw both refusals.
    let failures: f64 = [
        "unknown_ca",
        "bad_certificate",
        "certificate_rejected",
        "peer_rejected",
        "protocol",
    ]
    .iter()
    .map(|k| metric(&incoming, &format!("{server}/tls/handshake_failures/{k}")))
    .sum();
    assert!(failures >= 2.0, "handshake failures counted: {failures}");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let ca = pki(&scratch("tls-pki-mutual"));
    let b = backend::start();
    let incoming = node(
        "tls-in-mutual",
        "127.0.2.3",
        "incoming",
        b.addr,
        "",
        &server_tls(&ca, true),
    );
    let with_cert = node(
        "tls-with-cert",
        "127.0.1.4",
        "outgoing",
        incoming.router,
        &client_tls(&ca, "linkerd", true),
        "",
    );
    let r = curl(&[
        "-sS",
        "-m",
        "20",
        "-x",
        &format!("http://{}", with_cert.router),
        "http://web/echo",
    ]);
    assert_eq!(r.status, 200, "{r:?}");
    let without = node(
        "tls-without-cert",
        "127.0.1.5",
        "outgoing",
        incoming.router,
        &client_tls(&ca, "linkerd", false),
        "",
    );
    let r = curl(&[
        "-sS",
        "-m",
        "20",
        "-x",
        &format!("http://{}", without.router),
        "http://web/echo",
    ]);
    assert_ne!(r.status, 200, "{r:?}");
}

/// `peerUpgrades: [h2, tls]` with an incoming server that takes TLS and plaintext
/// (`acceptPlaintext`): the first request goes in the clear with the offer, then the hop
/// is TLS + HTTP/2; an endpoint that is not a Plexus keeps getting plain HTTP/1.1.
#[test]
fn tls_and_h2_are_negotiated_with_peers_and_skipped_with_others() {
    let ca = pki(&scratch("tls-pki-negotiated"));
    let b = backend::start();
    let mut server = server_tls(&ca, false);
    server.push_str("    acceptPlaintext: true\n");
    let incoming = node(
        "tls-in-negotiated",
        "127.0.2.4",
        "incoming",
        b.addr,
        "",
        &server,
    );
    let negotiated = format!(
        "  client:\n    peerUpgrades: [h2, tls]\n    tls:\n      commonName: linkerd\n      trustCertsBundle: {}\n",
        ca.join("ca.pem").display()
    );
    let outgoing = node(
        "tls-out-negotiated",
        "127.0.1.6",
        "outgoing",
        incoming.router,
        &negotiated,
        "",
    );
    let proxy = format!("http://{}", outgoing.router);
    let server_key = format!(
        "rt/incoming/server/{}/{}",
        incoming.router.ip(),
        incoming.router.port()
    );
    for i in 0..4 {
        let r = curl(&["-sS", "-x", &proxy, &format!("http://web/echo/{i}")]);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body.starts_with(&format!("GET /echo/{i} HTTP/1.1")),
            "{}",
            r.body
        );
        assert!(!r.body.contains("l5d-peer-upgrade"), "{}", r.body);
    }
    assert_eq!(
        metric(
            &incoming,
            &format!("{server_key}/protocol/http/1.1/requests")
        ),
        1.0
    );
    assert_eq!(
        metric(&incoming, &format!("{server_key}/protocol/h2/requests")),
        3.0
    );
    assert!(metric(&incoming, &format!("{server_key}/tls/connections")) >= 1.0);
    let state: serde_json::Value = serde_json::from_str(
        &curl(&[
            "-sS",
            &format!("http://{}/client_state.json", outgoing.admin),
        ])
        .body,
    )
    .expect("json");
    assert_eq!(
        state["/#/io.l5d.fs/web"]["protocols"][incoming.router.to_string()],
        "h2+tls",
        "{state}"
    );

    // Straight to a backend that is not a Plexus: plain HTTP/1.1, requests work.
    let direct = node(
        "tls-out-plain-peer",
        "127.0.1.7",
        "outgoing",
        b.addr,
        &negotiated,
        "",
    );
    for _ in 0..3 {
        let r = curl(&[
            "-sS",
            "-x",
            &format!("http://{}", direct.router),
            "http://web/echo",
        ]);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.starts_with("GET /echo HTTP/1.1"), "{}", r.body);
    }
}

/// Runs `f` on a fresh TLS connection to `server` (no session resumption), made with
/// the mesh CA in `ca` as trust and `alpn` offered, for the name `linkerd`.
fn over_tls<T>(
    server: SocketAddr,
    ca: &Path,
    alpn: &[&[u8]],
    f: impl AsyncFnOnce(&mut plexus_tls::TlsStream<tokio::net::TcpStream>) -> T,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let settings = plexus_tls::ClientTlsSettings {
            common_name: Some("linkerd".into()),
            trust_certs: vec![ca.join("ca.pem")],
            ..Default::default()
        };
        let client = plexus_tls::ClientTls::new(&settings, alpn).expect("client tls");
        let tcp = tokio::net::TcpStream::connect(server)
            .await
            .expect("connect");
        let mut stream = client.connect("linkerd", tcp).await.expect("handshake");
        f(&mut stream).await
    })
}

/// The certificate a TLS server presents to a fresh handshake.
fn presented(server: SocketAddr, ca: &Path) -> Vec<u8> {
    over_tls(server, ca, &[b"http/1.1"], async |stream| {
        stream.peer_certificates().expect("certificates")[0]
            .as_ref()
            .to_vec()
    })
}

#[test]
fn a_rotated_certificate_is_served_without_a_restart() {
    let ca = pki(&scratch("tls-pki-rotate"));
    let b = backend::start();
    let incoming = node(
        "tls-in-rotate",
        "127.0.2.5",
        "incoming",
        b.addr,
        "",
        &server_tls(&ca, false),
    );
    let first = plexus_tls::load_certificates(&ca.join("linkerd.pem")).expect("cert")[0]
        .as_ref()
        .to_vec();
    assert_eq!(presented(incoming.router, &ca), first);
    // Reissue the certificate in place, as a rotation job would.
    let d = ca.to_str().expect("utf8");
    tls(&["issue", d, "linkerd", "--dns", "linkerd", "--force"]);
    let second = plexus_tls::load_certificates(&ca.join("linkerd.pem")).expect("cert")[0]
        .as_ref()
        .to_vec();
    assert_ne!(first, second);
    wait_for("the new certificate to be served", || {
        presented(incoming.router, &ca) == second
    });
}

/// What a TLS client offering `alpn` reads back after sending `first` to `server`:
/// until the server closes, or until `enough` of an answer has come (an HTTP/2 server
/// keeps the connection open after its SETTINGS), or for 10 s at most.
fn answer_to(
    server: SocketAddr,
    ca: &Path,
    alpn: &[&[u8]],
    first: &[u8],
    enough: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    over_tls(server, ca, alpn, async |stream| {
        stream.write_all(first).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded, so a server that neither answers enough nor closes fails the
        // assertions instead of hanging the test.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !enough(&got) {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        got
    })
}

#[test]
fn http2_inside_tls_is_negotiated_by_alpn_or_not_spoken() {
    let ca = pki(&scratch("tls-pki-alpn"));
    let b = backend::start();
    let incoming = node(
        "tls-in-alpn",
        "127.0.2.6",
        "incoming",
        b.addr,
        "",
        &server_tls(&ca, false),
    );
    // HTTP/2's preface, then an empty SETTINGS frame.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let is_settings = |got: &[u8]| got.len() >= 9 && got[3] == 4;

    // Negotiated by ALPN: HTTP/2, the server's SETTINGS first.
    let negotiated = answer_to(incoming.router, &ca, &[b"h2"], &preface, |got| {
        got.len() >= 9
    });
    assert!(is_settings(&negotiated), "{negotiated:?}");

    // Without ALPN, HTTP/1.1 is served as ever...
    let request = b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n";
    let http1 = answer_to(incoming.router, &ca, &[], request, |_| false);
    let http1 = String::from_utf8_lossy(&http1);
    assert!(http1.starts_with("HTTP/1.1 200"), "{http1}");

    // ...and HTTP/2 with prior knowledge is not (RFC 9113 section 3.3): the connection
    // is closed without an answer, and the log says why.
    let unnegotiated = answer_to(incoming.router, &ca, &[], &preface, |_| false);
    assert!(unnegotiated.is_empty(), "{unnegotiated:?}");
    wait_for("the log to say why", || {
        incoming
            .plexus
            .log_text()
            .contains("HTTP/2 needs ALPN `h2`")
    });
}
