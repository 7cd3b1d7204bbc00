//! ThriftMux interop with a Mux peer that is not Plexus: `tests/thrift/mux_peer.py`, a
//! small Python (standard library only) Mux implementation written from the reference
//! notes, plays a Finagle ThriftMux client against Plexus's `thriftmux` and `thrift`
//! routers (every Thrift port also takes Mux), and a Finagle ThriftMux server behind a
//! Plexus client with `peerUpgrades: [mux]`.
//!
//! The peer runs scenarios and prints `ok …` / `FAIL …` lines and `N passed, N failed`;
//! these tests run it and read that last line. Python is `$PLEXUS_PYTHON`, or `python3`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_thrift::MessageKind;
use support::thrift::{Backend, Client, Node, backend, reply_text};
use support::{Proc, curl, free_port, listening, scratch, wait_for};

fn python() -> String {
    std::env::var("PLEXUS_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/thrift/mux_peer.py")
}

/// A Plexus on 127.0.0.1 with one router of `protocol` (`thrift` or `thriftmux`); see
/// [`support::thrift::node`].
fn node(name: &str, protocol: &str, label: &str, keys: &str) -> Node {
    support::thrift::node(name, protocol, "127.0.0.1", label, keys, "")
}

fn inet(addr: SocketAddr) -> String {
    format!("/$/inet/{}/{}", addr.ip(), addr.port())
}

fn to(b: &Backend) -> String {
    format!("  dtab: /svc => {}\n", inet(b.addr))
}

fn metric(node: &Node, key: &str) -> f64 {
    let body = curl(&["-sS", &format!("http://{}/admin/metrics.json", node.admin)]).body;
    serde_json::from_str::<serde_json::Value>(&body)
        .unwrap_or_default()
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

fn mux_requests(node: &Node) -> f64 {
    metric(
        node,
        &format!(
            "rt/{}/server/{}/{}/protocol/thriftmux/requests",
            node.label,
            node.router.ip(),
            node.router.port()
        ),
    )
}

/// Runs the Python peer as a client: `scenario` against `target`, with `extra` arguments.
/// Panics (with the peer's output and Plexus's log) unless every check passed.
fn run_scenario(node: Option<&Node>, target: SocketAddr, scenario: &str, extra: &[String]) {
    let dir = scratch(&format!("mux-peer-{scenario}-{}", target.port()));
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(python())
        .arg(peer_script())
        .args([
            "client",
            "--target",
            &target.to_string(),
            "--scenario",
            scenario,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("python runs (set PLEXUS_PYTHON to a Python 3)");
    // Every read of the peer is bounded (20 s); this only guards against a stuck process.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let last = stdout.lines().last().unwrap_or("");
    let counts: Vec<u32> = last
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let passed = last.ends_with(" failed") && counts.len() == 2 && counts[0] > 0 && counts[1] == 0;
    let log = node.map(|n| n.plexus.log_text()).unwrap_or_default();
    assert!(
        passed && status.is_some_and(|s| s.success()),
        "mux peer scenario {scenario} against {target}: {status:?}\n--- peer stdout\n{stdout}\
--- peer stderr\n{stderr}--- plexus log\n{log}"
    );
}

/// What a Finagle ThriftMux client does against one router of `protocol`.
fn finagle_clients_against(protocol: &str) {
    let app = backend("127.0.0.1", "app", true);
    let label = format!("{protocol}-in");
    let n = node(
        &format!("mux-interop-{protocol}"),
        protocol,
        &label,
        &to(&app),
    );
    let expect = ["--expect".to_string(), "app".to_string()];
    for scenario in [
        "basic",
        "concurrent",
        "ping",
        "nohandshake",
        "discard",
        "bad-version",
        "legacy-rerr-decoding",
        "fragments",
    ] {
        run_scenario(Some(&n), n.router, scenario, &expect);
    }
    // basic 3, concurrent 20, ping 1, nohandshake 2, discard 2 (one discarded),
    // legacy-rerr-decoding 1, fragments 1.
    assert_eq!(
        mux_requests(&n),
        30.0,
        "every Tdispatch counted as thriftmux"
    );

    // A Tdispatch dtab overrides the router's dtab, for that call only.
    let keys = "  dtab: /svc => /$/inet/127.0.0.1/1\n";
    let dead = node(
        &format!("mux-interop-{protocol}-dtab"),
        protocol,
        &label,
        keys,
    );
    let mut extra = expect.to_vec();
    extra.extend(["--backend-port".to_string(), app.addr.port().to_string()]);
    run_scenario(Some(&dead), dead.router, "dtab", &extra);
}

#[test]
fn the_peer_agrees_with_the_reference_byte_vectors() {
    // Checks the peer itself (no server): its encoder and decoder on the reference's
    // Mux vectors, so the scenarios below measure Plexus against the spec.
    let unused: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    run_scenario(None, unused, "vectors", &[]);
}

#[test]
fn a_thriftmux_router_serves_finagle_thriftmux_clients() {
    finagle_clients_against("thriftmux");
}

#[test]
fn a_thrift_router_serves_finagle_thriftmux_clients_too() {
    finagle_clients_against("thrift");
}

#[test]
fn a_draining_router_sends_tdrain_and_answers_what_is_in_flight() {
    let app = backend("127.0.0.1", "app", true);
    let mut n = node("mux-interop-drain", "thriftmux", "drain", &to(&app));
    let extra = [
        "--expect".to_string(),
        "app".to_string(),
        "--admin".to_string(),
        n.admin.to_string(),
    ];
    run_scenario(Some(&n), n.router, "drain", &extra);
    assert_eq!(n.plexus.wait_exit(), Some(0), "{}", n.plexus.log_text());
}

/// A Python ThriftMux server (a Finagle server, as far as Plexus can tell).
struct MuxServer {
    addr: SocketAddr,
    proc: Proc,
}

fn mux_server(name: &str) -> MuxServer {
    let dir = scratch("python-mux-server");
    let port = free_port();
    let proc = Proc::spawn(
        Command::new(python()).arg(peer_script()).args([
            "server",
            "--port",
            &port.to_string(),
            "--name",
            name,
        ]),
        dir.join("server.log"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_for("the python mux server", || {
        proc.log_text().starts_with("ready") && listening(addr)
    });
    MuxServer { addr, proc }
}

#[test]
fn a_plexus_client_upgrades_to_a_non_plexus_mux_server() {
    let server = mux_server("python-mux");
    let keys = format!(
        "  dtab: /svc => {}\n  client:\n    peerUpgrades: [mux]\n",
        inet(server.addr)
    );
    let n = node("mux-interop-upgrade", "thrift", "outgoing", &keys);
    let mut client = Client::connect(n.router, true);
    for seqid in [1, 2, -5] {
        let reply = client.call("echo", seqid);
        assert_eq!(
            (reply.header().name.as_str(), reply.header().seqid),
            ("echo", seqid),
            "{}",
            server.proc.log_text()
        );
        assert_eq!(reply_text(&reply), "python-mux");
    }
    let log = server.proc.log_text();
    assert!(
        log.contains("probe, type byte 0x7f") && log.contains("Tinit version 1"),
        "Plexus negotiated as Finagle does: {log}"
    );
    assert_eq!(
        log.matches("Tdispatch tag").count(),
        3,
        "every call rode the session: {log}"
    );

    // The server's Rerr, with either type byte, and its RdispatchError fail the call
    // only: the client gets a TApplicationException with the call's name and seqid.
    for (seqid, method) in [(10, "rerr7f"), (11, "rerr80"), (12, "error")] {
        let reply = client.call(method, seqid);
        assert_eq!(reply.header().kind, MessageKind::Exception, "{method}");
        assert_eq!(
            (reply.header().name.as_str(), reply.header().seqid),
            (method, seqid)
        );
        let exc = plexus_thrift::ApplicationException::from_message(&reply).expect("exception");
        assert!(exc.message.contains("boom"), "{method}: {}", exc.message);
    }
    assert_eq!(reply_text(&client.call("echo", 13)), "python-mux");

    // A reply larger than the mux-framer Plexus advertised comes in fragments.
    let big = client.call("big", 14);
    assert_eq!(reply_text(&big), "x".repeat(200_000));
    assert!(
        server.proc.log_text().contains("fragmented"),
        "{}",
        server.proc.log_text()
    );

    let state = curl(&["-sS", &format!("http://{}/client_state.json", n.admin)]).body;
    let state: serde_json::Value = serde_json::from_str(&state).expect("json");
    let protocols: Vec<&serde_json::Value> = state
        .as_object()
        .expect("an object")
        .values()
        .filter_map(|c| c["protocols"].get(server.addr.to_string()))
        .collect();
    assert_eq!(protocols, [&serde_json::json!("thriftmux")], "{state}");

    // A nack (MuxFailure Rejected|Retryable) is not an answer: the call may be requeued,
    // and fails as a proxy failure when every attempt is nacked.
    let reply = client.call("nack", 20);
    assert_eq!(reply.header().kind, MessageKind::Exception);
    assert_eq!(reply.header().seqid, 20);
}
