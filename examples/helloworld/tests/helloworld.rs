//! End-to-end tests of the `helloworld` binary: each test starts real
//! processes on 127.0.0.1 ports chosen by the kernel (`-addr=127.0.0.1:0`,
//! read back from the startup line), talks plain HTTP/1.1 to them over std
//! sockets, and kills them when done. Waits are bounded: on the startup line,
//! on the end of the process's stderr, or on socket timeouts, never on sleeps.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use common::{Proc, WAIT, closed_port, connect, exchange, get, read_head, request};

#[test]
fn answers_text_with_target_world_and_pod_ip() {
    let (_world, addr) = Proc::serve(&[], &[("TARGET_WORLD", "world"), ("POD_IP", "10.0.2.7")]);
    let reply = get(addr);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "world (10.0.2.7)!");
    assert!(reply.content_type.starts_with("text/plain"), "{reply:?}");
    // Any path gets the greeting.
    let reply = request(addr, "GET", "/some/path?x=1", &[]);
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "world (10.0.2.7)!")
    );

    let (_plain, addr) = Proc::serve(&["-text", "Hola"], &[]);
    assert_eq!(get(addr).body, "Hola!");
}

#[test]
fn keeps_connections_alive() {
    let (_hello, addr) = Proc::serve(&["--text=Hi"], &[]);
    let mut stream = connect(addr);
    for _ in 0..3 {
        let reply = exchange(&mut stream, "GET", "/", &[], false);
        assert_eq!((reply.status, reply.body.as_str()), (200, "Hi!"));
    }
    let reply = exchange(&mut stream, "GET", "/", &[], true);
    assert_eq!(reply.body, "Hi!");
}

#[test]
fn json_answer_is_escaped() {
    let (_hello, addr) = Proc::serve(&["-json", "-text", "He said \"hi\""], &[]);
    let reply = get(addr);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(reply.body, r#"{"api_result":"He said \"hi\"!"}"#);
    let parsed: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    assert_eq!(parsed["api_result"], "He said \"hi\"!");

    let (_hello, addr) = Proc::serve(&["-json=true"], &[("POD_IP", "10.0.1.5")]);
    assert_eq!(get(addr).body, r#"{"api_result":"Hello (10.0.1.5)!"}"#);
}

#[test]
fn hello_calls_world_directly() {
    let (_world, world) = Proc::serve(&[], &[("TARGET_WORLD", "world"), ("POD_IP", "10.0.2.7")]);
    let target = format!("-target={world}");
    let (_hello, hello) = Proc::serve(&["-text", "Hello", &target], &[("POD_IP", "10.0.1.5")]);
    let reply = get(hello);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "Hello (10.0.1.5) world (10.0.2.7)!!");
}

#[test]
fn hello_calls_world_through_the_proxy() {
    let proxy = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let proxy_addr = proxy.local_addr().expect("proxy addr");
    let (heads, received) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut stream, _)) = proxy.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(WAIT));
        let head = read_head(&mut stream);
        let body = "world (10.0.2.7)!";
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes());
        let _ = heads.send(head);
    });

    let proxy_env = format!("http://{proxy_addr}");
    let (_hello, hello) = Proc::serve(
        &["-target", "world"],
        &[("POD_IP", "10.0.1.5"), ("http_proxy", &proxy_env)],
    );
    let dtab = "/svc=>/#/io.l5d.k8s/default/http";
    let reply = request(
        hello,
        "GET",
        "/",
        &[
            ("L5d-Ctx-Dtab", dtab),
            ("l5d-ctx-trace", "abc"),
            ("l5d-dtab", "/not=>/forwarded"),
            ("x-other", "nope"),
        ],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "Hello (10.0.1.5) world (10.0.2.7)!!");

    let head = received
        .recv_timeout(WAIT)
        .expect("the proxy saw a request");
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("GET http://world/ HTTP/1.1"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("host"), Some("world"), "{head}");
    assert_eq!(header("l5d-ctx-dtab"), Some(dtab), "{head}");
    assert_eq!(header("l5d-ctx-trace"), Some("abc"), "{head}");
    assert_eq!(header("l5d-dtab"), None, "{head}");
    assert_eq!(header("x-other"), None, "{head}");
}

#[test]
fn failure_rate_can_be_changed() {
    let (_hello, addr) = Proc::serve(&["-failure-rate=0"], &[]);
    assert_eq!(get(addr).status, 200);

    let set = request(addr, "POST", "/setFailureRate?failureRate=1", &[]);
    assert_eq!((set.status, set.body.as_str()), (200, "ok"));
    for _ in 0..5 {
        let reply = get(addr);
        assert_eq!(reply.status, 500, "{reply:?}");
        assert!(reply.body.contains("failure"), "{reply:?}");
    }

    let set = request(addr, "POST", "/setFailureRate?failureRate=0", &[]);
    assert_eq!((set.status, set.body.as_str()), (200, "ok"));
    for _ in 0..5 {
        assert_eq!(get(addr).body, "Hello!");
    }

    for bad in [
        "failureRate=2",
        "failureRate=-0.1",
        "failureRate=abc",
        "other=1",
        "",
    ] {
        let path = format!("/setFailureRate?{bad}");
        let reply = request(addr, "POST", &path, &[]);
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert!(!reply.body.is_empty());
    }
    assert_eq!(
        request(addr, "GET", "/setFailureRate?failureRate=1", &[]).status,
        405
    );
    // Refused changes left the rate at 0.
    assert_eq!(get(addr).status, 200);
}

#[test]
fn latency_can_be_changed() {
    let (_hello, addr) = Proc::serve(&["-latency", "1ms"], &[]);
    assert_eq!(get(addr).body, "Hello!");
    for good in ["2ms", "0", "1.5ms", "10%C2%B5s"] {
        let path = format!("/setLatency?latency={good}");
        let set = request(addr, "POST", &path, &[]);
        assert_eq!((set.status, set.body.as_str()), (200, "ok"), "{path}");
        assert_eq!(get(addr).body, "Hello!");
    }
    for bad in ["5", "-1s", "fast", ""] {
        let path = format!("/setLatency?latency={bad}");
        let reply = request(addr, "POST", &path, &[]);
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
    }
    assert_eq!(request(addr, "POST", "/setLatency", &[]).status, 400);
}

#[test]
fn unreachable_target_answers_503() {
    let target = format!("-target={}", closed_port());
    let (_hello, hello) = Proc::serve(&[&target], &[]);
    let reply = get(hello);
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.body.contains("cannot connect"), "{reply:?}");
}

#[test]
fn failing_target_answers_503_with_its_status_and_body() {
    let (_world, world) = Proc::serve(&["-failure-rate=1"], &[]);
    let target = format!("-target={world}");
    let (_hello, hello) = Proc::serve(&[&target], &[]);
    let reply = get(hello);
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.body.contains("500"), "{reply:?}");
    assert!(reply.body.contains("injected failure"), "{reply:?}");
}

#[test]
fn bad_flags_exit_2_with_usage() {
    for args in [
        &["-nope"][..],
        &["-latency=fast"],
        &["-addr"],
        &["-failure-rate=2"],
    ] {
        let (status, stderr) = Proc::spawn(args, &[]).finish();
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage of helloworld"), "{args:?}: {stderr}");
    }
    let (status, stderr) = Proc::spawn(&["-nope"], &[]).finish();
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("flag provided but not defined: -nope"),
        "{stderr}"
    );
}

#[test]
fn help_exits_0() {
    let (status, stderr) = Proc::spawn(&["-h"], &[]).finish();
    assert_eq!(status.code(), Some(0));
    assert!(stderr.contains("-failure-rate"), "{stderr}");
}

#[test]
fn exits_cleanly_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let (hello, addr) = Proc::serve(&[], &[]);
        assert_eq!(get(addr).status, 200);
        hello.signal(signal);
        let (status, stderr) = hello.finish();
        assert_eq!(status.code(), Some(0), "SIG{signal}: {stderr}");
    }
}
