//! Routing around broken instances, end to end: real processes, real sockets.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use support::{Proc, curl, free_port, helloworld_bin, listening, plexus_bin, scratch, wait_for};

fn start_world(dir: &std::path::Path, name: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut cmd = Command::new(helloworld_bin());
    cmd.arg(format!("-addr={addr}"))
        .args(extra)
        .env_clear()
        .env("TARGET_WORLD", name);
    let p = Proc::spawn(&mut cmd, dir.join(format!("{name}.log")));
    wait_for(&format!("{name} to listen"), || listening(addr));
    (p, addr)
}

struct Router {
    proxy: String,
    admin: String,
    _plexus: Proc,
}

fn start_router(dir: &std::path::Path, worlds: &[SocketAddr], client: &str) -> Router {
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    let lines: String = worlds
        .iter()
        .map(|a| format!("{} {}\n", a.ip(), a.port()))
        .collect();
    std::fs::write(disco.join("world"), lines).expect("world file");
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {admin}}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n\
         routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n{client}  servers:\n  - port: {port}\n",
        disco = disco.display()
    );
    let file = dir.join("plexus.yaml");
    std::fs::write(&file, config).expect("config");
    let plexus = Proc::spawn(
        Command::new(plexus_bin()).arg("run").arg(&file),
        dir.join("plexus.log"),
    );
    wait_for("plexus to serve", || {
        listening(format!("127.0.0.1:{admin}").parse().expect("addr"))
    });
    let r = Router {
        proxy: format!("http://127.0.0.1:{port}"),
        admin: format!("http://127.0.0.1:{admin}"),
        _plexus: plexus,
    };
    wait_for("world to be bound", || {
        curl(&["-x", &r.proxy, "http://world/"]).status == 200
    });
    r
}

fn metric(r: &Router, name: &str) -> f64 {
    let body = curl(&[&format!("{}/admin/metrics.json", r.admin)]).body;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v.get(name)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

#[test]
fn killing_one_of_three_instances_fails_no_request() {
    let dir = scratch("resilience-kill");
    let (a, a_addr) = start_world(&dir, "a", &[]);
    let (mut b, b_addr) = start_world(&dir, "b", &[]);
    let (c, c_addr) = start_world(&dir, "c", &[]);
    let r = start_router(&dir, &[a_addr, b_addr, c_addr], "");
    let mut statuses = Vec::new();
    for i in 0..90 {
        if i == 30 {
            let _ = b.child.kill();
            let _ = b.child.wait();
        }
        statuses.push(curl(&["-x", &r.proxy, "http://world/"]).status);
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Requests that met the dead instance's refused connections were requeued.
    assert!(metric(&r, "rt/http/client/#/io.l5d.fs/world/retries/requeues") >= 1.0);
    drop((a, c));
}

#[test]
fn a_failing_instance_is_ejected_then_probed_and_revived() {
    let dir = scratch("resilience-eject");
    let (good, good_addr) = start_world(&dir, "good", &[]);
    let (bad, bad_addr) = start_world(&dir, "bad", &["-failure-rate=1"]);
    let client = "  client:\n    failureAccrual:\n      kind: io.l5d.consecutiveFailures\n      failures: 5\n      \
                  backoff: {kind: constant, ms: 300}\n";
    let r = start_router(&dir, &[good_addr, bad_addr], client);
    let removals = "rt/http/client/#/io.l5d.fs/world/failure_accrual/removals";
    wait_for("the failing instance to be ejected", || {
        curl(&["-x", &r.proxy, "http://world/"]);
        metric(&r, removals) >= 1.0
    });
    // Only the bad instance fails, so it took five failures in a row to eject it.
    let failures = metric(&r, "rt/http/client/#/io.l5d.fs/world/failures");
    assert!(failures >= 5.0, "ejected after {failures} failures");
    // Once ejected, traffic goes to the good instance only (probes aside, which the
    // 300 ms backoff keeps rare): far fewer failures than the half a balancer would send.
    let statuses: Vec<u16> = (0..40)
        .map(|_| curl(&["-x", &r.proxy, "http://world/"]).status)
        .collect();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert!(
        failed <= 8,
        "{failed} of 40 failed after ejection: {statuses:?}"
    );
    let state = curl(&[&format!("{}/client_state.json", r.admin)]).body;
    assert!(
        state.contains(&bad_addr.to_string()) && state.contains("ejected"),
        "{state}"
    );

    // The instance recovers: a probe after the backoff revives it.
    let fix = curl(&[
        "-X",
        "POST",
        &format!("http://{bad_addr}/setFailureRate?failureRate=0"),
    ]);
    assert_eq!(fix.status, 200);
    wait_for("the recovered instance to be revived", || {
        curl(&["-x", &r.proxy, "http://world/"]);
        metric(
            &r,
            "rt/http/client/#/io.l5d.fs/world/failure_accrual/revivals",
        ) >= 1.0
    });
    assert!(
        metric(
            &r,
            "rt/http/client/#/io.l5d.fs/world/failure_accrual/probes"
        ) >= 1.0
    );
    drop((good, bad));
}
