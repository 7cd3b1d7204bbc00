//! gRPC through an h2 router, end to end, with the tutorial's gRPC apps (tonic): the
//! client calls `helloworld.Hello` through Plexus, hello calls `helloworld.World`
//! through the same Plexus (forwarding `l5d-ctx-*`), routed by `:path` as the gRPC
//! tutorial's config does (`io.l5d.header.path`, one segment). A World instance that
//! fails every call with UNAVAILABLE is retried around by `io.l5d.h2.grpc.default`, and
//! one stopped gracefully under h2load's load costs no call.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use support::{
    Proc, curl, example_bin, free_port, h2load_summary, helloworld_bin, listening, plexus_bin,
    scratch, wait_for,
};

fn app(dir: &std::path::Path, name: &str, args: &[&str]) -> (Proc, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut cmd = Command::new(helloworld_bin());
    cmd.args(["-protocol", "grpc"])
        .arg(format!("-addr={addr}"))
        .args(args)
        .env_clear()
        .env("POD_IP", "127.0.0.1");
    let p = Proc::spawn(&mut cmd, dir.join(format!("{name}.log")));
    wait_for(&format!("{name} to listen"), || listening(addr));
    (p, addr)
}

fn write(dir: &std::path::Path, file: &str, addrs: &[SocketAddr]) {
    let text: String = addrs
        .iter()
        .map(|a| format!("{} {}\n", a.ip(), a.port()))
        .collect();
    std::fs::write(dir.join(file), text).expect("write");
}

#[test]
fn grpc_hello_world_through_an_h2_router_with_retries_on_unavailable() {
    let dir = scratch("grpc-mesh");
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    let (port, admin) = (free_port(), free_port());
    let plexus_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (_world, world) = app(&dir, "world", &["-text=world"]);
    let (_broken, broken) = app(&dir, "world-broken", &["-text=world", "-failure-rate=1"]);
    let (_hello, hello) = app(
        &dir,
        "hello",
        &["-text=hello", &format!("-target={plexus_addr}")],
    );
    write(&disco, "helloworld.Hello", &[hello]);
    write(&disco, "helloworld.World", &[world, broken]);
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {admin}}}\n\
namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
routers:\n- protocol: h2\n  label: grpc\n  dtab: /svc => /#/io.l5d.fs;\n  identifier:\n    kind: io.l5d.header.path\n    segments: 1\n  service:\n    responseClassifier:\n      kind: io.l5d.h2.grpc.default\n  client:\n    failureAccrual:\n      kind: none\n  servers:\n  - port: {port}\n",
        disco = disco.display()
    );
    std::fs::write(dir.join("plexus.yaml"), config).expect("config");
    let _plexus = Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(dir.join("plexus.yaml")),
        dir.join("plexus.log"),
    );
    wait_for("plexus to serve", || listening(plexus_addr));

    let client = example_bin("helloworld-client");
    for _ in 0..12 {
        let out = Command::new(&client)
            .arg(plexus_addr.to_string())
            .output()
            .expect("client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), "hello (127.0.0.1) world (127.0.0.1)!!");
    }
    let out = Command::new(&client)
        .args(["-streaming", &plexus_addr.to_string()])
        .output()
        .expect("client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);

    // The broken instance answered UNAVAILABLE (trailers-only); the classifier retried.
    let metrics: serde_json::Value = serde_json::from_str(
        &curl(&[
            "-sS",
            &format!("http://127.0.0.1:{admin}/admin/metrics.json"),
        ])
        .body,
    )
    .expect("json");
    let n = |k: &str| {
        metrics
            .get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    assert!(
        n("rt/grpc/service/svc/helloworld.World/retries/total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        n("rt/grpc/service/svc/helloworld.World/failures"),
        0.0,
        "{metrics}"
    );
    assert!(
        n("rt/grpc/service/svc/helloworld.Hello/success") >= 13.0,
        "{metrics}"
    );
}

/// An h2 router with the gRPC tutorial's identifier, sending each service to its
/// instances; its address and its admin port.
fn h2_router(
    dir: &std::path::Path,
    name: &str,
    ip: &str,
    services: &[(&str, &[SocketAddr])],
) -> (Proc, SocketAddr, u16) {
    let disco = dir.join(format!("{name}-disco"));
    std::fs::create_dir_all(&disco).expect("disco");
    for (file, addrs) in services {
        write(&disco, file, addrs);
    }
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "admin: {{ip: {ip}, port: {admin}}}\n\
namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
routers:\n- protocol: h2\n  label: {name}\n  dtab: /svc => /#/io.l5d.fs;\n  identifier:\n    kind: io.l5d.header.path\n    segments: 1\n  servers:\n  - ip: {ip}\n    port: {port}\n",
        disco = disco.display()
    );
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, config).expect("config");
    let p = Proc::spawn(
        Command::new(plexus_bin()).arg("run").arg(&file),
        dir.join(format!("{name}.log")),
    );
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    wait_for(&format!("{name} to serve"), || listening(addr));
    (p, addr, admin)
}

#[test]
fn grpc_through_two_plexus_hops() {
    let dir = scratch("grpc-two-hops");
    // Node 2: the apps and their incoming router.
    let (_world, world) = app(&dir, "world", &["-text=world"]);
    let outgoing_port = free_port();
    let outgoing_addr: SocketAddr = format!("127.0.1.1:{outgoing_port}").parse().expect("addr");
    let (_hello, hello) = app(
        &dir,
        "hello",
        &["-text=hello", &format!("-target={outgoing_addr}")],
    );
    let (_incoming, incoming, _) = h2_router(
        &dir,
        "incoming",
        "127.0.2.1",
        &[
            ("helloworld.Hello", &[hello]),
            ("helloworld.World", &[world]),
        ],
    );
    // Node 1: the outgoing router sends both services to node 2's incoming router.
    let disco = dir.join("outgoing-disco");
    std::fs::create_dir_all(&disco).expect("disco");
    write(&disco, "helloworld.Hello", &[incoming]);
    write(&disco, "helloworld.World", &[incoming]);
    let config = format!(
        "admin: {{ip: 127.0.1.1, port: {}}}\n\
namers:\n- kind: io.l5d.fs\n  rootDir: {}\n\
routers:\n- protocol: h2\n  label: outgoing\n  dtab: /svc => /#/io.l5d.fs;\n  identifier:\n    kind: io.l5d.header.path\n    segments: 1\n  servers:\n  - ip: 127.0.1.1\n    port: {outgoing_port}\n",
        free_port(),
        disco.display()
    );
    std::fs::write(dir.join("outgoing.yaml"), config).expect("config");
    let _outgoing = Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(dir.join("outgoing.yaml")),
        dir.join("outgoing.log"),
    );
    wait_for("outgoing to serve", || listening(outgoing_addr));

    let client = example_bin("helloworld-client");
    let out = Command::new(&client)
        .arg(outgoing_addr.to_string())
        .output()
        .expect("client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello (127.0.0.1) world (127.0.0.1)!!"
    );
    let out = Command::new(&client)
        .args(["-streaming", &outgoing_addr.to_string()])
        .output()
        .expect("client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
}

/// A gRPC server stopping gracefully under load loses no call. Two World instances are
/// behind an h2 router (default classifier, which retries nothing) and h2load sends
/// unary calls; midway one instance gets SIGTERM. It drains: `GOAWAY`, refusing
/// unprocessed the streams that crossed it, then its port closes. Plexus requeues both
/// (the refused streams on a new connection, the refused connections to the other
/// instance), so every call is answered.
#[test]
fn a_grpc_server_stopping_gracefully_under_load_loses_no_call() {
    let dir = scratch("grpc-graceful-stop");
    let (mut stopping, a) = app(&dir, "world-a", &["-text=world"]);
    let (_staying, b) = app(&dir, "world-b", &["-text=world"]);
    let (_plexus, addr, admin) = h2_router(
        &dir,
        "incoming",
        "127.0.0.1",
        &[("helloworld.World", &[a, b])],
    );
    // One gRPC frame holding an empty GreetRequest.
    let call = dir.join("call.bin");
    std::fs::write(&call, [0u8; 5]).expect("call");
    let n: u64 = 20_000;
    let load = Command::new("h2load")
        .args(["-n", &n.to_string(), "-c", "4", "-m", "32", "-d"])
        .arg(&call)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("http://{addr}/helloworld.World/Greeting"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("h2load runs (install nghttp2-client)");
    let answered = || {
        let text = curl(&[
            "-sS",
            &format!("http://127.0.0.1:{admin}/admin/metrics.json"),
        ])
        .body;
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|m| {
                m.get("rt/incoming/service/svc/helloworld.World/requests")?
                    .as_f64()
            })
            .unwrap_or(0.0)
    };
    wait_for("a quarter of the calls", || answered() >= (n / 4) as f64);
    stopping.terminate();
    let out = load.wait_with_output().expect("h2load ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let summary = h2load_summary(&text);
    let count = |name: &str| -> u64 {
        *summary
            .get(name)
            .unwrap_or_else(|| panic!("no {name:?} in:\n{text}"))
    };
    assert_eq!(count("succeeded"), n, "{text}");
    assert_eq!(count("2xx"), n, "{text}");
    assert_eq!(count("failed"), 0, "{text}");
    assert_eq!(stopping.wait_exit(), Some(0), "{}", stopping.log_text());
}
