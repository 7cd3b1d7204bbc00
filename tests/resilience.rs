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
                  backoff: {kind: constant, ms: 1000}\n";
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
    // 1 s backoff keeps rare): far fewer failures than the half a balancer would send.
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

#[test]
fn reads_are_retried_under_retryable_read5xx_and_posts_are_not() {
    let dir = scratch("resilience-retry");
    let (good, good_addr) = start_world(&dir, "good", &[]);
    let (bad, bad_addr) = start_world(&dir, "bad", &["-failure-rate=1"]);
    let config = "  service:\n    responseClassifier: {kind: io.l5d.http.retryableRead5XX}\n  \
                  client:\n    failureAccrual: {kind: none}\n";
    let r = start_router(&dir, &[good_addr, bad_addr], config);
    let total = "rt/http/service/svc/world/retries/total";
    let gets: Vec<u16> = (0..30)
        .map(|_| curl(&["-x", &r.proxy, "http://world/"]).status)
        .collect();
    assert!(gets.iter().all(|s| *s == 200), "{gets:?}");
    let retried = metric(&r, total);
    assert!(retried >= 1.0, "the failing instance was never picked?");
    let posts: Vec<u16> = (0..30)
        .map(|_| curl(&["-x", &r.proxy, "-d", "x=1", "http://world/"]).status)
        .collect();
    assert!(posts.contains(&500), "{posts:?}");
    assert_eq!(metric(&r, total), retried, "a POST was retried");
    drop((good, bad));
}

#[test]
fn a_retry_storm_is_stopped_by_the_budget() {
    let dir = scratch("resilience-budget");
    let (bad, bad_addr) = start_world(&dir, "bad", &["-failure-rate=1"]);
    let config = "  service:\n    responseClassifier: {kind: io.l5d.http.retryableRead5XX}\n    \
                  retries:\n      budget: {ttlSecs: 10, minRetriesPerSec: 0, percentCanRetry: 0.2}\n  \
                  client:\n    failureAccrual: {kind: none}\n";
    let r = {
        // The router's readiness probe must see a 200; bind a good instance first, then swap.
        let (good, good_addr) = start_world(&dir, "good", &[]);
        let r = start_router(&dir, &[good_addr], config);
        drop(good);
        std::fs::write(
            dir.join("disco").join("world"),
            format!("{} {}\n", bad_addr.ip(), bad_addr.port()),
        )
        .expect("swap");
        wait_for("the failing instance to take over", || {
            curl(&["-x", &r.proxy, "http://world/"]).status == 500
        });
        r
    };
    let before = metric(&r, "rt/http/service/svc/world/retries/total");
    let statuses: Vec<u16> = (0..50)
        .map(|_| curl(&["-x", &r.proxy, "http://world/"]).status)
        .collect();
    assert!(statuses.iter().all(|s| *s == 500), "{statuses:?}");
    let retries = metric(&r, "rt/http/service/svc/world/retries/total") - before;
    // At most 20 % of the requests may be retried (no per-second reserve), per worker.
    assert!(
        retries <= 0.2 * 60.0 + 2.0,
        "{retries} retries for 50 requests"
    );
    assert!(metric(&r, "rt/http/service/svc/world/retries/budget_exhausted") >= 30.0);
    drop(bad);
}

#[test]
fn a_total_timeout_answers_503_and_the_deadline_travels() {
    let dir = scratch("resilience-timeout");
    let (slow, slow_addr) = start_world(&dir, "slow", &[]);
    let config = "  service:\n    totalTimeoutMs: 300\n";
    let r = start_router(&dir, &[slow_addr], config);
    let set = curl(&[
        "-X",
        "POST",
        &format!("http://{slow_addr}/setLatency?latency=5s"),
    ]);
    assert_eq!(set.status, 200);
    let rsp = curl(&["-x", &r.proxy, "http://world/"]);
    assert_eq!(rsp.status, 503, "{rsp:?}");
    assert!(
        rsp.body.contains("exceeded 300 ms to /svc/world"),
        "{}",
        rsp.body
    );
    assert!(rsp.header("l5d-err").is_some());
    assert!(
        metric(
            &r,
            "rt/http/service/svc/world/failures/RequestTimeoutException"
        ) >= 1.0
    );
    // A request whose deadline has already passed fails at once.
    let expired = curl(&[
        "-x",
        &r.proxy,
        "-H",
        "l5d-ctx-deadline: 1000 2000",
        "http://world/",
    ]);
    assert_eq!(expired.status, 503);
    assert!(expired.body.contains("deadline"), "{}", expired.body);
    drop(slow);
}

#[test]
fn the_deadline_is_forwarded_to_the_next_hop() {
    let dir = scratch("resilience-deadline");
    let b = support::backend::start();
    let r = start_router(&dir, &[b.addr], "  service:\n    totalTimeoutMs: 5000\n");
    let rsp = curl(&["-x", &r.proxy, "http://world/echo"]);
    let line = rsp
        .body
        .lines()
        .find(|l| l.starts_with("l5d-ctx-deadline: "))
        .unwrap_or_else(|| panic!("{}", rsp.body));
    let fields: Vec<u128> = line["l5d-ctx-deadline: ".len()..]
        .split(' ')
        .map(|f| f.parse().expect("ns"))
        .collect();
    assert_eq!(fields.len(), 2);
    let budget_ms = (fields[1] - fields[0]) / 1_000_000;
    assert!((4000..=5000).contains(&budget_ms), "{budget_ms} ms");
}

#[test]
fn the_ewma_balancer_sends_a_slow_instance_less_traffic() {
    let dir = scratch("resilience-ewma");
    let fast = support::backend::start();
    let slow = support::backend::start();
    let r = start_router(
        &dir,
        &[fast.addr, slow.addr],
        "  client:\n    loadBalancer: {kind: ewma}\n",
    );
    slow.control
        .latency_ms
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let (f0, s0) = (
        fast.control
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        slow.control
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    for _ in 0..60 {
        assert_eq!(curl(&["-x", &r.proxy, "http://world/echo"]).status, 200);
    }
    let to_fast = fast
        .control
        .requests
        .load(std::sync::atomic::Ordering::SeqCst)
        - f0;
    let to_slow = slow
        .control
        .requests
        .load(std::sync::atomic::Ordering::SeqCst)
        - s0;
    assert_eq!(to_fast + to_slow, 60);
    // Each worker learns the slow instance's latency from its first requests to it.
    assert!(
        to_slow <= 12,
        "the slow instance got {to_slow} of 60 requests"
    );
}

#[test]
fn an_attempt_that_takes_too_long_is_cut_short() {
    let dir = scratch("resilience-attempt");
    let b = support::backend::start();
    let r = start_router(
        &dir,
        &[b.addr],
        "  client:\n    requestAttemptTimeoutMs: 200\n    failureAccrual: {kind: none}\n",
    );
    b.control
        .latency_ms
        .store(3000, std::sync::atomic::Ordering::SeqCst);
    let rsp = curl(&["-x", &r.proxy, "http://world/echo"]);
    assert_eq!(rsp.status, 503, "{rsp:?}");
    assert!(
        rsp.body
            .contains("did not answer within requestAttemptTimeoutMs (200 ms)"),
        "{}",
        rsp.body
    );
}

#[test]
fn a_slow_chain_shares_one_deadline() {
    // hello calls world through the same router, forwarding l5d-ctx-* headers: the
    // deadline set for /svc/hello travels with hello's own call to world.
    let dir = scratch("resilience-chain");
    let (world, world_addr) = start_world(&dir, "world", &["-latency=5s"]);
    let router_port = free_port();
    let hello_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut cmd = Command::new(helloworld_bin());
    cmd.arg(format!("-addr={hello_addr}"))
        .args(["-text=Hello", "-target=world"])
        .env_clear()
        .env("http_proxy", format!("127.0.0.1:{router_port}"));
    let hello = Proc::spawn(&mut cmd, dir.join("hello.log"));
    wait_for("hello to listen", || listening(hello_addr));
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("disco");
    std::fs::write(
        disco.join("world"),
        format!("{} {}\n", world_addr.ip(), world_addr.port()),
    )
    .expect("world");
    std::fs::write(
        disco.join("hello"),
        format!("{} {}\n", hello_addr.ip(), hello_addr.port()),
    )
    .expect("hello");
    let admin = free_port();
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {admin}}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {}\n\
         routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n  service:\n    kind: io.l5d.static\n    configs:\n    \
         - prefix: /svc/hello\n      totalTimeoutMs: 400\n  servers:\n  - port: {router_port}\n",
        disco.display()
    );
    std::fs::write(dir.join("plexus.yaml"), config).expect("config");
    let _plexus = Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(dir.join("plexus.yaml")),
        dir.join("plexus.log"),
    );
    wait_for("plexus to serve", || {
        listening(format!("127.0.0.1:{admin}").parse().expect("addr"))
    });
    let proxy = format!("http://127.0.0.1:{router_port}");
    let rsp = curl(&["-x", &proxy, "http://hello/"]);
    assert_eq!(rsp.status, 503, "{rsp:?}");
    // Whichever notices first answers: the outer router (for /svc/hello) or, through
    // hello, the inner one (for /svc/world) a moment earlier; both at the one deadline.
    assert!(
        rsp.body.contains("exceeded")
            && (rsp.body.contains("/svc/hello") || rsp.body.contains("/svc/world")),
        "{}",
        rsp.body
    );
    // world's service has no timeout of its own: only the inherited deadline cut it short
    // (world answers after 5 s). The inner router's timer and the outer one fire at the
    // same instant: when the inner one is first, world's request times out; when the
    // outer one is, hello's call is cancelled under it a moment later. On a busy machine
    // either can win.
    wait_for("world's request to end at the shared deadline", || {
        let m: serde_json::Value = serde_json::from_str(
            &curl(&[&format!("http://127.0.0.1:{admin}/admin/metrics.json")]).body,
        )
        .expect("json");
        let failures = |kind: &str| {
            m.get(format!("rt/http/service/svc/world/failures/{kind}"))
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        };
        failures("RequestTimeoutException") + failures("CancelledRequestException") == 1.0
    });
    drop((world, hello));
}
