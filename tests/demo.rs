//! `plexus demo` as a newcomer runs it: started as a subprocess, the printed walk-through
//! performed with curl, then stopped with Ctrl-C (SIGINT), leaving nothing behind.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use support::{Proc, curl, helloworld_bin, listening, plexus_bin, scratch, wait_for};

/// Every address the demo listens on (plus the simulated API on 127.0.0.1:8001).
fn demo_addrs() -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = vec!["127.0.0.1:8001".parse().unwrap()];
    for n in 1..=3 {
        for port in [4140, 4141, 4114, 4115, 9990] {
            out.push(format!("127.0.{n}.1:{port}").parse().unwrap());
        }
        for (host, port) in [
            (10, 7777),
            (11, 7778),
            (12, 7778),
            (13, 7779),
            (14, 7780),
            (15, 7781),
        ] {
            out.push(format!("127.0.{n}.{host}:{port}").parse().unwrap());
        }
    }
    out
}

fn demo_cmd() -> Command {
    let mut cmd = Command::new(plexus_bin());
    cmd.arg("demo").arg("--app").arg(helloworld_bin());
    cmd
}

fn hello(extra: &[&str]) -> (u16, String) {
    let mut args = vec!["-sS", "-x", "http://127.0.1.1:4140"];
    args.extend_from_slice(extra);
    args.push("http://hello");
    let r = curl(&args);
    (r.status, r.body)
}

/// `Hello (127.0.a.10) world (127.0.b.11)!!`-shaped, with `word` for world.
fn is_reply(body: &str, word: &str) -> bool {
    let parts: Vec<&str> = body.split(['(', ')']).collect();
    parts.len() == 5
        && parts[0] == "Hello "
        && parts[1].starts_with("127.0.")
        && parts[2] == format!(" {word} ")
        && parts[3].starts_with("127.0.")
        && parts[4] == "!!"
}

#[test]
fn the_demo_walk_through_works_and_ctrl_c_leaves_nothing_behind() {
    let dir = scratch("demo");

    // A port already taken is refused with its name, before anything starts.
    let blocker = std::net::TcpListener::bind("127.0.2.1:9990").expect("bind the blocker");
    let out = demo_cmd().output().expect("demo runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("127.0.2.1:9990")
            && stderr.contains("node-2's admin server")
            && stderr.contains("already in use"),
        "{stderr}"
    );
    drop(blocker);

    let mut demo = Proc::spawn(&mut demo_cmd(), dir.join("demo.log"));
    wait_for("the demo to be ready", || {
        demo.log_text().contains("plexus demo: ready")
    });
    let printed = demo.log_text();
    assert!(
        printed.contains("curl -s -x http://127.0.1.1:4140 http://hello"),
        "{printed}"
    );
    assert!(
        printed.contains("http://127.0.1.1:9990/delegator"),
        "{printed}"
    );

    // A second demo says so instead of failing obscurely.
    let out = demo_cmd().output().expect("second demo runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");

    // 1. Through node-1's outgoing router.
    let (status, body) = hello(&[]);
    assert_eq!(status, 200);
    assert!(is_reply(&body, "world"), "{body:?}");

    // 2. The per-request override reaches world-v2.
    let (status, body) = hello(&["-H", "l5d-dtab: /host/world => /srv/world-v2;"]);
    assert_eq!(status, 200);
    assert!(is_reply(&body, "earth"), "{body:?}");

    // 3. The dashboard and the playground are served.
    assert_eq!(curl(&["-sS", "http://127.0.1.1:9990/"]).status, 200);
    let delegation = curl(&[
        "-sS",
        "http://127.0.1.1:9990/delegator.json?namespace=outgoing&path=/svc/world",
    ]);
    assert_eq!(delegation.status, 200);
    assert!(delegation.body.contains("world-v1"), "{}", delegation.body);

    // 5 (printed last). Thrift: hello calls world through the Thrift routers, and the
    // hop between nodes' Plexus is ThriftMux.
    assert!(
        printed.contains("helloworld-client -protocol thrift 127.0.1.14:7780"),
        "{printed}"
    );
    assert!(
        printed.contains("Hello (127.0.1.14) world (127.0."),
        "{printed}"
    );
    let mux_calls: f64 = (1..=3)
        .map(|n| {
            let m: serde_json::Value = serde_json::from_str(
                &curl(&[
                    "-sS",
                    &format!("http://127.0.{n}.1:9990/admin/metrics.json"),
                ])
                .body,
            )
            .unwrap_or_default();
            m[format!("rt/thrift-incoming/server/127.0.{n}.1/4115/protocol/thriftmux/requests")]
                .as_f64()
                .unwrap_or(0.0)
        })
        .sum();
    assert!(mux_calls >= 1.0, "the Thrift hop rode Mux");

    // 4. A failing world instance: every request still succeeds, and the mesh takes the
    // failing node's Plexus out of rotation for world-v1.
    let r = curl(&[
        "-sS",
        "-X",
        "POST",
        "http://127.0.2.11:7778/setFailureRate?failureRate=1.0",
    ]);
    assert_eq!(r.status, 200);
    let ejected = || {
        (1..=3).any(|n| {
            let state = curl(&["-sS", &format!("http://127.0.{n}.1:9990/client_state.json")]).body;
            let v: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
            v.as_object().into_iter().flatten().any(|(id, c)| {
                id.ends_with("/world-v1")
                    && c["ejected"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|x| x["address"] == "127.0.2.1:4141"))
            })
        })
    };
    let mut sent = 0;
    while !ejected() {
        for _ in 0..5 {
            let (status, body) = hello(&[]);
            assert_eq!(
                status, 200,
                "a request failed although healthy instances remain: {body}"
            );
            assert!(is_reply(&body, "world"), "{body:?}");
            sent += 1;
        }
        assert!(
            sent < 300,
            "the failing instance was never taken out of rotation"
        );
    }
    for _ in 0..10 {
        let (status, body) = hello(&[]);
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("127.0.2.11"), "{body}");
    }

    // Ctrl-C: everything stops and every port is free again.
    let pid = demo.pid().to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert_eq!(demo.wait_exit(), Some(0), "{}", demo.log_text());
    assert!(demo.log_text().contains("stopped:"), "{}", demo.log_text());
    for addr in demo_addrs() {
        assert!(
            !listening(addr),
            "{addr} still listening after the demo stopped"
        );
    }
    let left = Command::new("pgrep")
        .args(["-f", "addr=127\\.0\\.[123]\\.1[0-3]:|plexus-demo-"])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "processes left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
