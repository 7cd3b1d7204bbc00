//! End-to-end tests of the Thrift mode (`helloworld -protocol thrift`) and
//! of `helloworld-client -protocol thrift`: real processes on kernel-chosen
//! 127.0.0.1 ports, called either with the client binary or with a client
//! built here from the `thrift` crate's own framed transport and binary
//! protocol, so the service's hand-written encoding is checked against an
//! independent implementation. Every wait is bounded by socket timeouts or
//! the client's `-timeout`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;

use common::{ClientRun, Proc, client, closed_port, connect, request};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol,
    TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};
use thrift::transport::{TFramedReadTransport, TFramedWriteTransport};
use thrift::{ApplicationError, ApplicationErrorKind};

/// A `-protocol thrift` service on a free port.
fn thrift(args: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let mut all = vec!["-protocol=thrift"];
    all.extend_from_slice(args);
    Proc::serve(&all, env)
}

/// Runs `helloworld-client -protocol thrift` against `addr`.
fn thrift_client(addr: SocketAddr) -> ClientRun {
    client(&["-protocol", "thrift", &addr.to_string()])
}

/// Asserts a client run succeeded and returns its output lines.
fn lines(run: &ClientRun) -> Vec<&str> {
    assert_eq!(run.code, Some(0), "{run:?}");
    run.stdout.lines().collect()
}

/// Asserts a client run failed (exit 1) with all of `needles` on stderr.
fn assert_failed(run: &ClientRun, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    for needle in needles {
        assert!(run.stderr.contains(needle), "{needle:?} missing: {run:?}");
    }
}

/// A Thrift client made of the `thrift` crate's framed transport and binary
/// protocol over one connection, one call at a time.
struct Oracle {
    input: TBinaryInputProtocol<TFramedReadTransport<TcpStream>>,
    output: TBinaryOutputProtocol<TFramedWriteTransport<TcpStream>>,
    seq: i32,
}

impl Oracle {
    /// Connects; `strict` chooses the strict or the old binary protocol
    /// for calls (replies are read either way).
    fn connect(addr: SocketAddr, strict: bool) -> Oracle {
        let stream = connect(addr);
        // The crate writes the frame length and the message separately.
        stream.set_nodelay(true).expect("nodelay");
        let reader = stream.try_clone().expect("clone the stream");
        Oracle {
            input: TBinaryInputProtocol::new(TFramedReadTransport::new(reader), false),
            output: TBinaryOutputProtocol::new(TFramedWriteTransport::new(stream), strict),
            seq: 0,
        }
    }

    /// Calls `method(1: string name)` and returns the string result or the
    /// `TApplicationException` answered; panics on anything else.
    fn call(&mut self, method: &str, name: &str) -> Result<String, ApplicationError> {
        self.seq += 1;
        let o = &mut self.output;
        o.write_message_begin(&TMessageIdentifier::new(
            method,
            TMessageType::Call,
            self.seq,
        ))
        .expect("write");
        o.write_struct_begin(&TStructIdentifier::new("args"))
            .expect("write");
        o.write_field_begin(&TFieldIdentifier::new("name", TType::String, 1))
            .expect("write");
        o.write_string(name).expect("write");
        o.write_field_end().expect("write");
        o.write_field_stop().expect("write");
        o.write_struct_end().expect("write");
        o.write_message_end().expect("write");
        o.flush().expect("send the call");

        let i = &mut self.input;
        let header = i.read_message_begin().expect("a reply");
        assert_eq!(header.sequence_number, self.seq, "{header:?}");
        assert_eq!(header.name, method, "{header:?}");
        match header.message_type {
            TMessageType::Reply => {}
            TMessageType::Exception => {
                let exception = thrift::Error::read_application_error_from_in_protocol(i)
                    .expect("an exception");
                i.read_message_end().expect("read");
                return Err(exception);
            }
            other => panic!("unexpected {other} message"),
        }
        let mut success = None;
        i.read_struct_begin().expect("read");
        loop {
            let field = i.read_field_begin().expect("read");
            if field.field_type == TType::Stop {
                break;
            }
            if field.id == Some(0) && field.field_type == TType::String {
                success = Some(i.read_string().expect("read"));
            } else {
                i.skip(field.field_type).expect("skip");
            }
            i.read_field_end().expect("read");
        }
        i.read_struct_end().expect("read");
        i.read_message_end().expect("read");
        Ok(success.expect("a success field"))
    }

    fn greet(&mut self, name: &str) -> Result<String, ApplicationError> {
        self.call("greet", name)
    }
}

/// A world on a free port and a hello calling it.
fn hello_and_world() -> (Proc, Proc, SocketAddr, SocketAddr) {
    let (world, world_addr) = thrift(&[], &[("TARGET_WORLD", "world"), ("POD_IP", "127.0.0.7")]);
    let target = format!("-target={world_addr}");
    let (hello, hello_addr) = thrift(&["-text", "Hello", &target], &[("POD_IP", "127.0.0.5")]);
    (hello, world, hello_addr, world_addr)
}

const HELLO_WORLD: &str = "Hello (127.0.0.5) world (127.0.0.7)!!";

#[test]
fn hello_calls_world_over_thrift() {
    let (_hello, _world, hello, world) = hello_and_world();
    assert_eq!(lines(&thrift_client(hello)), [HELLO_WORLD]);
    // Again, over the connection hello keeps to world.
    assert_eq!(lines(&thrift_client(hello)), [HELLO_WORLD]);
    assert_eq!(lines(&thrift_client(world)), ["world (127.0.0.7)!"]);
    // The thrift crate's own client agrees, strict or not.
    for strict in [true, false] {
        let mut oracle = Oracle::connect(hello, strict);
        assert_eq!(oracle.greet("anyone").as_deref(), Ok(HELLO_WORLD));
    }
}

#[test]
fn many_sequential_calls_on_one_connection() {
    let (_hello, _world, hello, _) = hello_and_world();
    let mut oracle = Oracle::connect(hello, true);
    for _ in 0..200 {
        assert_eq!(oracle.greet("plexus").as_deref(), Ok(HELLO_WORLD));
    }
}

#[test]
fn twenty_concurrent_clients() {
    const CLIENTS: usize = 20;
    let (_hello, _world, hello, _) = hello_and_world();
    let start = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let start = start.clone();
            thread::spawn(move || {
                let mut oracle = Oracle::connect(hello, n % 2 == 0);
                start.wait();
                (0..10).map(|_| oracle.greet("plexus")).collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        let answers = thread.join().expect("a client thread");
        assert_eq!(answers.len(), 10);
        for answer in answers {
            assert_eq!(answer.as_deref(), Ok(HELLO_WORLD));
        }
    }
}

#[test]
fn an_unreachable_world_is_an_internal_error() {
    let closed = closed_port();
    let target = format!("-target={closed}");
    let (_hello, hello) = thrift(&[&target], &[]);
    let expected = format!("thrift://{closed} Greeter.greet failed");
    let connect = format!("cannot connect to {closed}");
    assert_failed(
        &thrift_client(hello),
        &[
            "Greeter.greet failed: InternalError (6)",
            &expected,
            &connect,
        ],
    );
    // An exception leaves the connection open for the next call.
    let mut oracle = Oracle::connect(hello, true);
    for _ in 0..3 {
        let exception = oracle.greet("plexus").expect_err("an exception");
        assert_eq!(exception.kind, ApplicationErrorKind::InternalError);
        assert!(exception.message.contains(&expected), "{exception:?}");
    }
}

#[test]
fn a_world_that_went_away_is_an_internal_error() {
    let (_hello, world, hello, world_addr) = hello_and_world();
    let mut oracle = Oracle::connect(hello, true);
    assert_eq!(oracle.greet("plexus").as_deref(), Ok(HELLO_WORLD));
    // Hello keeps its connection to world; world goes away meanwhile.
    drop(world);
    let exception = oracle.greet("plexus").expect_err("an exception");
    assert_eq!(exception.kind, ApplicationErrorKind::InternalError);
    let expected = format!("thrift://{world_addr} Greeter.greet failed");
    assert!(exception.message.contains(&expected), "{exception:?}");
    assert!(
        exception.message.contains("cannot connect"),
        "{exception:?}"
    );
}

#[test]
fn failures_are_internal_errors() {
    let (_world, world) = thrift(&["-text=world", "-failure-rate=1"], &[]);
    assert_failed(
        &thrift_client(world),
        &[
            "Greeter.greet failed: InternalError (6)",
            "injected failure (failure rate 1)",
        ],
    );
    let target = format!("-target={world}");
    let (_hello, hello) = thrift(&[&target], &[]);
    let expected = format!("thrift://{world} Greeter.greet failed: InternalError (6)");
    assert_failed(
        &thrift_client(hello),
        &["InternalError (6)", &expected, "injected failure"],
    );
}

#[test]
fn control_endpoints_work_on_the_thrift_port() {
    let (_hello, addr) = thrift(&["-latency=1ms"], &[]);
    assert_eq!(lines(&thrift_client(addr)), ["Hello!"]);

    let set = request(addr, "POST", "/setFailureRate?failureRate=1", &[]);
    assert_eq!((set.status, set.body.as_str()), (200, "ok"));
    assert_failed(
        &thrift_client(addr),
        &["InternalError (6)", "injected failure"],
    );
    let set = request(addr, "POST", "/setFailureRate?failureRate=0", &[]);
    assert_eq!((set.status, set.body.as_str()), (200, "ok"));
    let set = request(addr, "POST", "/setLatency?latency=0", &[]);
    assert_eq!((set.status, set.body.as_str()), (200, "ok"));
    assert_eq!(lines(&thrift_client(addr)), ["Hello!"]);

    let other = request(addr, "GET", "/", &[]);
    assert_eq!(other.status, 404, "{other:?}");
    assert!(other.body.contains("Thrift"), "{other:?}");
}

#[test]
fn unknown_methods_leave_the_connection_open() {
    let (_hello, addr) = thrift(&[], &[]);
    let mut oracle = Oracle::connect(addr, true);
    // Finagle's TTwitter probe, which a plain Thrift server refuses.
    let exception = oracle
        .call("__can__finagle__trace__v3__", "")
        .expect_err("an exception");
    assert_eq!(exception.kind, ApplicationErrorKind::UnknownMethod);
    assert!(exception.message.contains("greet"), "{exception:?}");
    assert_eq!(oracle.greet("plexus").as_deref(), Ok("Hello!"));
}

/// Reads until the server closes the connection (bounded by the socket's
/// read timeout); panics if it answers instead.
fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
}

#[test]
fn malformed_frames_close_the_connection_only() {
    let (_hello, addr) = thrift(&[], &[]);
    // A frame that holds no Thrift message.
    let mut stream = connect(addr);
    stream.write_all(&[0, 0, 0, 3, 1, 2, 3]).expect("send");
    assert_closed(&mut stream);
    // A frame length past the 1 MiB limit, then nothing.
    let mut stream = connect(addr);
    stream.write_all(&[0, 0xff, 0, 0]).expect("send");
    assert_closed(&mut stream);
    // A frame cut short by the client.
    let mut stream = connect(addr);
    stream.write_all(&[0, 0, 0, 30, 0x80, 1]).expect("send");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half close");
    assert_closed(&mut stream);
    // The server still serves.
    assert_eq!(lines(&thrift_client(addr)), ["Hello!"]);
}

#[test]
fn thrift_mode_exits_cleanly_on_sigterm_with_an_idle_connection() {
    let (hello, addr) = thrift(&[], &[]);
    let mut oracle = Oracle::connect(addr, true);
    assert_eq!(oracle.greet("plexus").as_deref(), Ok("Hello!"));
    hello.signal("TERM");
    let (status, stderr) = hello.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("thrift (framed, binary)"), "{stderr}");
}

#[test]
fn thrift_targets_need_a_port() {
    let (status, stderr) = Proc::spawn(&["-protocol=thrift", "-target=world"], &[]).finish();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("thrift mode needs host:port"), "{stderr}");
}

#[test]
fn client_refuses_grpc_only_flags_with_thrift() {
    for args in [
        &["-protocol=thrift", "-streaming", "127.0.0.1:1"][..],
        &["-protocol=thrift", "-authority=hello", "127.0.0.1:1"],
        &["-protocol=thrift", "-H", "l5d-dtab: /a=>/b", "127.0.0.1:1"],
        &["-protocol=http", "127.0.0.1:1"],
    ] {
        let run = client(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("Usage: helloworld-client"),
            "{args:?}: {run:?}"
        );
    }
    let closed = closed_port();
    assert_failed(
        &thrift_client(closed),
        &[&format!("cannot connect to {closed}"), "refused"],
    );
}

#[test]
fn the_usage_names_thrift() {
    let (status, stderr) = Proc::spawn(&["-h"], &[]).finish();
    assert_eq!(status.code(), Some(0));
    assert!(stderr.contains("thrift (service Greeter"), "{stderr}");
    let run = client(&["-h"]);
    assert!(run.stderr.contains("-protocol"), "{run:?}");
}
