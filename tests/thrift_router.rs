//! Thrift routers end to end, with real sockets: one Plexus in front of a Thrift
//! backend (framed and unframed, pipelined calls, oneway, application and proxy
//! failures, TTwitter), and two Plexus peers carrying Thrift over one Mux session
//! (`peerUpgrades: [mux]`), falling back to plain Thrift toward an endpoint that is not
//! a Plexus, and inside TLS; the TTwitter upgrade toward Finagle-style servers; retries
//! of idempotent methods. The Python interop matrix is in `thrift_interop.rs`.

mod support;

use std::process::Command;

use plexus_thrift::{ExceptionKind, MessageKind, ttwitter};
use support::thrift::{Backend, Client, Node, backend, call, framed, reply_text, ttwitter_backend};
use support::{curl, plexus_bin, scratch, wait_for};

/// A Plexus on `ip` with one thrift router (see [`support::thrift::node`]).
fn node(name: &str, ip: &str, label: &str, keys: &str, server_keys: &str) -> Node {
    support::thrift::node(name, "thrift", ip, label, keys, server_keys)
}

fn to(b: &Backend) -> String {
    format!(
        "  dtab: /svc => /$/inet/{}/{}\n",
        b.addr.ip(),
        b.addr.port()
    )
}

fn metrics(node: &Node) -> serde_json::Value {
    serde_json::from_str(&curl(&["-sS", &format!("http://{}/admin/metrics.json", node.admin)]).body)
        .unwrap_or_default()
}

fn metric(node: &Node, key: &str) -> f64 {
    metrics(node)
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

fn service_metric(node: &Node, service: &str, leaf: &str) -> f64 {
    metric(node, &format!("rt/{}/service/{service}/{leaf}", node.label))
}

#[test]
fn framed_and_unframed_calls_pass_through_unchanged() {
    for framed_transport in [true, false] {
        let app = backend("127.0.0.1", "app", framed_transport);
        let keys = format!(
            "{}  client:\n    thriftFramed: {framed_transport}\n",
            to(&app)
        );
        let server = format!("    thriftFramed: {framed_transport}\n");
        let n = node("thrift-one-hop", "127.0.0.1", "thrift", &keys, &server);
        let mut client = Client::connect(n.router, framed_transport);
        for seqid in [1, 7, -3] {
            let reply = client.call("echo", seqid);
            assert_eq!(reply.header().seqid, seqid);
            assert_eq!(reply.header().name, "echo");
            assert_eq!(reply_text(&reply), "app");
        }
        // Pipelined: five calls written before any reply is read come back in order.
        for seqid in 10..15 {
            client.send(&call(
                if seqid % 2 == 0 { "slow" } else { "echo" },
                MessageKind::Call,
                seqid,
            ));
        }
        for seqid in 10..15 {
            let reply = client.receive().expect("reply");
            assert_eq!(reply.header().seqid, seqid, "replies in call order");
        }
        assert_eq!(service_metric(&n, "svc", "requests"), 8.0);
        assert_eq!(service_metric(&n, "svc", "success"), 8.0);
    }
}

#[test]
fn oneway_calls_get_no_reply_and_still_arrive() {
    let app = backend("127.0.0.1", "app", true);
    let n = node("thrift-oneway", "127.0.0.1", "thrift", &to(&app), "");
    let mut client = Client::connect(n.router, true);
    for seqid in 0..3 {
        client.send(&call("notify", MessageKind::Oneway, seqid));
    }
    // The next reply is count's, not an answer invented for a oneway.
    wait_for("the notifications", || {
        app.notified.load(std::sync::atomic::Ordering::SeqCst) == 3
    });
    let reply = client.call("count", 9);
    assert_eq!(reply.header().seqid, 9);
    assert_eq!(reply.header().name, "count");
}

#[test]
fn failures_are_exceptions_with_the_calls_name_and_seqid_and_are_counted() {
    let app = backend("127.0.0.1", "app", true);
    let at = format!("/$/inet/{}/{}", app.addr.ip(), app.addr.port());
    let keys = format!(
        "  thriftMethodInDst: true\n  dtab: /svc/echo => /$/inet/127.0.0.1/1; /svc/fail => {at}; /svc/crash => {at}\n"
    );
    let n = node("thrift-failures", "127.0.0.1", "thrift", &keys, "");
    let mut client = Client::connect(n.router, true);

    // A proxy failure: Linkerd's TApplicationException (INTERNAL_ERROR).
    let reply = client.call("echo", 41);
    assert_eq!(reply.header().kind, MessageKind::Exception);
    assert_eq!(
        (reply.header().name.as_str(), reply.header().seqid),
        ("echo", 41)
    );
    let exc = plexus_thrift::ApplicationException::from_message(&reply).expect("exception");
    assert_eq!(exc.kind, ExceptionKind::InternalError);
    assert!(
        exc.message.starts_with("Internal error processing echo"),
        "{}",
        exc.message
    );
    assert!(exc.message.contains("127.0.0.1:1"), "{}", exc.message);

    // Unknown names: no route, same shape.
    let reply = client.call("nothing", 42);
    let exc = plexus_thrift::ApplicationException::from_message(&reply).expect("exception");
    assert!(
        exc.message
            .contains("No hosts are available for /svc/nothing"),
        "{}",
        exc.message
    );

    // Application failures pass through unchanged, and count as failures.
    let declared = client.call("fail", 43);
    assert_eq!(declared.header().kind, MessageKind::Reply);
    assert_eq!(
        plexus_thrift::classify(&declared).expect("class"),
        plexus_thrift::ReplyClass::DeclaredException { field_id: 1 }
    );
    let crashed = client.call("crash", 44);
    assert_eq!(crashed.header().kind, MessageKind::Exception);
    assert_eq!(service_metric(&n, "svc/fail", "failures"), 1.0);
    assert_eq!(service_metric(&n, "svc/crash", "failures"), 1.0);
    assert_eq!(service_metric(&n, "svc/echo", "failures"), 1.0);
    let m = metrics(&n);
    assert_eq!(
        m["rt/thrift/service/svc/fail/failures/DeclaredException"].as_f64(),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        m["rt/thrift/service/svc/crash/failures/TApplicationException"].as_f64(),
        Some(1.0),
        "{m}"
    );
    // The connection is still good.
    assert_eq!(client.call("fail", 45).header().seqid, 45);
}

#[test]
fn ttwitter_clients_are_upgraded_and_their_dest_names_the_call() {
    let app = backend("127.0.0.1", "users", true);
    let keys = format!(
        "  dtab: /svc => /$/fail; /svc/s/users => /$/inet/{}/{}\n",
        app.addr.ip(),
        app.addr.port()
    );
    let n = node("thrift-ttwitter", "127.0.0.1", "thrift", &keys, "");
    let mut client = Client::connect(n.router, true);
    let probe = ttwitter::upgrade_request(plexus_thrift::Protocol::Binary);
    client.send_raw(&framed(probe.bytes()));
    let answer = client.receive().expect("upgrade reply");
    assert!(ttwitter::is_upgrade_accepted(answer.header()));
    let header = ttwitter::RequestHeader {
        trace_id: 1,
        span_id: 2,
        dest: Some("/s/users".into()),
        ..Default::default()
    };
    let payload = ttwitter::wrap_request(&header, &call("echo", MessageKind::Call, 5));
    client.send_raw(&framed(&payload));
    // Replies on an upgraded connection start with a ResponseHeader (one STOP byte).
    let reply = client.receive_ttwitter();
    assert_eq!(reply_text(&reply), "users");
    assert_eq!(reply.header().seqid, 5);
}

#[test]
fn peers_carry_thrift_over_one_mux_session_and_fall_back_to_plain() {
    let app = backend("127.0.0.1", "app", true);
    let incoming = node("thrift-peer-in", "127.0.2.1", "incoming", &to(&app), "");
    let upgrades = "  client:\n    peerUpgrades: [mux]\n";
    let keys = format!(
        "  dtab: /svc => /$/inet/{}/{}\n{upgrades}",
        incoming.router.ip(),
        incoming.router.port()
    );
    let outgoing = node("thrift-peer-out", "127.0.1.1", "outgoing", &keys, "");
    let mux_requests = format!(
        "rt/incoming/server/{}/{}/protocol/thriftmux/requests",
        incoming.router.ip(),
        incoming.router.port()
    );
    // Two app connections, calls interleaved: all ride the one Mux session.
    let mut a = Client::connect(outgoing.router, true);
    let mut b = Client::connect(outgoing.router, false);
    for seqid in 0..5 {
        assert_eq!(reply_text(&a.call("echo", seqid)), "app");
        let r = b.call("echo", 100 + seqid);
        assert_eq!(r.header().seqid, 100 + seqid);
    }
    // Oneway rides the session too and reaches the app.
    a.send(&call("notify", MessageKind::Oneway, 50));
    wait_for("the notification", || {
        app.notified.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    assert_eq!(
        metric(&incoming, &mux_requests),
        11.0,
        "every call rode mux"
    );
    // Application failures cross the hop unchanged.
    assert_eq!(a.call("crash", 60).header().kind, MessageKind::Exception);

    // A plain Thrift endpoint (not a Plexus) gets plain Thrift.
    let plain = backend("127.0.0.1", "plain", true);
    let keys = format!(
        "  dtab: /svc => /$/inet/{}/{}\n{upgrades}",
        plain.addr.ip(),
        plain.addr.port()
    );
    let direct = node("thrift-peer-plain", "127.0.1.2", "outgoing", &keys, "");
    let mut c = Client::connect(direct.router, true);
    for seqid in 0..3 {
        assert_eq!(reply_text(&c.call("echo", seqid)), "plain");
    }
    let state = curl(&[
        "-sS",
        &format!("http://{}/client_state.json", outgoing.admin),
    ])
    .body;
    assert!(state.contains("\"thriftmux\""), "{state}");
    let state = curl(&["-sS", &format!("http://{}/client_state.json", direct.admin)]).body;
    assert!(
        state.contains(&format!("\"{}\":\"thrift\"", plain.addr)),
        "the plain endpoint is listed as plain Thrift: {state}"
    );
    drop(direct.plexus);
}

#[test]
fn broken_messages_close_the_connection_without_hanging() {
    let app = backend("127.0.0.1", "app", false);
    let n = node(
        "thrift-broken",
        "127.0.0.1",
        "thrift",
        &format!("{}  client:\n    thriftFramed: false\n", to(&app)),
        "    thriftFramed: false\n",
    );
    // Unframed binary CALL whose args struct nests 200 structs deep: over the limit.
    let mut bytes = call("echo", MessageKind::Call, 3).bytes()[..16].to_vec();
    for _ in 0..200 {
        bytes.extend_from_slice(&[0x0c, 0x00, 0x01]);
    }
    let mut client = Client::connect(n.router, false);
    client.send_raw(&bytes);
    let reply = client.receive().expect("an exception before the close");
    assert_eq!(reply.header().kind, MessageKind::Exception);
    assert_eq!(reply.header().seqid, 3);
    assert!(client.receive().is_none(), "then the connection closes");
    // The router still serves others.
    let mut other = Client::connect(n.router, false);
    assert_eq!(reply_text(&other.call("echo", 1)), "app");
}

#[test]
fn ttwitter_is_attempted_toward_servers_and_carries_the_calls_context() {
    let finagle = ttwitter_backend("127.0.0.1", "finagle");
    let plain = backend("127.0.0.1", "plain", true);
    let keys = format!(
        "  thriftMethodInDst: true\n  dtab: /svc/echo => /$/inet/{}/{}; /svc/count => /$/inet/{}/{}\n  \
         client:\n    attemptTTwitterUpgrade: true\n",
        finagle.addr.ip(),
        finagle.addr.port(),
        plain.addr.ip(),
        plain.addr.port()
    );
    let n = node("thrift-ttwitter-client", "127.0.0.1", "thrift", &keys, "");
    let mut client = Client::connect(n.router, true);
    // The Finagle-style server accepted the upgrade: each call carries a RequestHeader.
    for seqid in 1..=3 {
        assert_eq!(reply_text(&client.call("echo", seqid)), "finagle");
    }
    let headers = finagle.headers.lock().expect("headers").clone();
    assert_eq!(headers.len(), 3, "{headers:?}");
    // A call with a dtab override (from a TTwitter client of Plexus) carries it on.
    let mut upgraded = Client::connect(n.router, true);
    let probe = ttwitter::upgrade_request(plexus_thrift::Protocol::Binary);
    upgraded.send_raw(&framed(probe.bytes()));
    assert!(ttwitter::is_upgrade_accepted(
        upgraded.receive().expect("upgrade").header()
    ));
    let header = ttwitter::RequestHeader {
        trace_id: 77,
        span_id: 5,
        client_id: Some("web".into()),
        delegations: vec![ttwitter::Delegation {
            src: "/x".into(),
            dst: "/y".into(),
        }],
        ..Default::default()
    };
    let payload = ttwitter::wrap_request(&header, &call("echo", MessageKind::Call, 9));
    upgraded.send_raw(&framed(&payload));
    assert_eq!(reply_text(&upgraded.receive_ttwitter()), "finagle");
    let last = finagle
        .headers
        .lock()
        .expect("headers")
        .last()
        .cloned()
        .expect("a header");
    assert_eq!(last.trace_id, 77);
    assert_eq!(last.client_id.as_deref(), Some("web"));
    assert_eq!(last.delegations, header.delegations);
    // A plain server refuses the probe (UNKNOWN_METHOD) and keeps getting plain Thrift.
    for seqid in 10..13 {
        let r = client.call("count", seqid);
        assert_eq!(
            (r.header().kind, r.header().seqid),
            (MessageKind::Reply, seqid)
        );
    }
}

#[test]
fn only_idempotent_methods_are_retried_after_a_lost_connection() {
    let app = backend("127.0.0.1", "app", true);
    let at = format!("/$/inet/{}/{}", app.addr.ip(), app.addr.port());
    // `flaky` drops every other connection with the call unanswered.
    let retried = node(
        "thrift-idempotent",
        "127.0.0.1",
        "thrift",
        &format!("  dtab: /svc => {at}\n  service:\n    idempotentMethods: [flaky]\n"),
        "",
    );
    let mut client = Client::connect(retried.router, true);
    for seqid in 0..4 {
        let r = client.call("flaky", seqid);
        assert_eq!(r.header().kind, MessageKind::Reply, "retried: {r:?}");
    }
    assert!(service_metric(&retried, "svc", "retries/total") >= 4.0);
    let not_retried = node(
        "thrift-not-idempotent",
        "127.0.0.1",
        "thrift",
        &format!("  dtab: /svc => {at}\n"),
        "",
    );
    let mut client = Client::connect(not_retried.router, true);
    let kinds: Vec<MessageKind> = (0..4)
        .map(|seqid| client.call("flaky", seqid).header().kind)
        .collect();
    assert!(
        kinds.contains(&MessageKind::Exception),
        "a call lost after it was sent is not retried: {kinds:?}"
    );
}

#[test]
fn the_hop_between_peers_can_be_mux_inside_tls() {
    let dir = scratch("thrift-tls-pki");
    let d = dir.to_str().expect("utf8");
    for args in [
        vec!["tls", "init", d],
        vec!["tls", "issue", d, "linkerd", "--dns", "linkerd"],
    ] {
        let out = Command::new(plexus_bin())
            .args(&args)
            .output()
            .expect("plexus tls");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let app = backend("127.0.0.1", "app", true);
    let server_tls = format!(
        "    tls:\n      certPath: {}\n      keyPath: {}\n",
        dir.join("linkerd.pem").display(),
        dir.join("linkerd-key.pk8.pem").display()
    );
    let incoming = node(
        "thrift-tls-in",
        "127.0.2.1",
        "incoming",
        &to(&app),
        &server_tls,
    );
    let keys = format!(
        "  dtab: /svc => /$/inet/{}/{}\n  client:\n    peerUpgrades: [mux]\n    tls:\n      \
         commonName: linkerd\n      trustCerts: [{}]\n",
        incoming.router.ip(),
        incoming.router.port(),
        dir.join("ca.pem").display()
    );
    let outgoing = node("thrift-tls-out", "127.0.1.1", "outgoing", &keys, "");
    let mut client = Client::connect(outgoing.router, true);
    for seqid in 0..5 {
        assert_eq!(reply_text(&client.call("echo", seqid)), "app");
    }
    let server = format!("{}/{}", incoming.router.ip(), incoming.router.port());
    assert_eq!(
        metric(
            &incoming,
            &format!("rt/incoming/server/{server}/protocol/thriftmux/requests")
        ),
        5.0
    );
    assert!(
        metric(
            &incoming,
            &format!("rt/incoming/server/{server}/tls/connections")
        ) >= 1.0
    );
    // A plaintext client is refused by the TLS-only port: at most a TLS alert, then the
    // close; never a Thrift reply, never a hang.
    let mut plain = std::net::TcpStream::connect(incoming.router).expect("connect");
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    use std::io::{Read, Write};
    plain
        .write_all(&framed(call("echo", MessageKind::Call, 1).bytes()))
        .expect("write");
    let mut answer = Vec::new();
    plain
        .read_to_end(&mut answer)
        .expect("closed, not timed out");
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "only a TLS alert record: {answer:02x?}"
    );
}

#[test]
fn a_call_the_outgoing_side_gives_up_on_is_discarded_at_the_peer() {
    let app = backend("127.0.0.1", "app", true);
    let incoming = node("thrift-discard-in", "127.0.2.1", "incoming", &to(&app), "");
    let keys = format!(
        "  dtab: /svc => /$/inet/{}/{}\n  \
         client:\n    peerUpgrades: [mux]\n    requestAttemptTimeoutMs: 100\n",
        incoming.router.ip(),
        incoming.router.port()
    );
    let outgoing = node("thrift-discard-out", "127.0.1.1", "outgoing", &keys, "");
    let mut client = Client::connect(outgoing.router, true);
    assert_eq!(reply_text(&client.call("echo", 1)), "app");
    // `slow` takes 300 ms: the outgoing router gives up the attempt at 100 ms (an attempt
    // timeout, which unlike a total timeout does not travel as the call's deadline),
    // answers the app with an exception, and discards the call on the Mux session; the
    // incoming router stops working on it (counted as cancelled) instead of finishing it
    // for nobody.
    let reply = client.call("slow", 2);
    assert_eq!(reply.header().kind, MessageKind::Exception);
    let cancelled = format!(
        "rt/incoming/server/{}/{}/failures/CancelledRequestException",
        incoming.router.ip(),
        incoming.router.port()
    );
    wait_for("the peer to cancel the discarded call", || {
        metric(&incoming, &cancelled) == 1.0
    });
    // The session is still good.
    assert_eq!(reply_text(&client.call("echo", 3)), "app");
}
