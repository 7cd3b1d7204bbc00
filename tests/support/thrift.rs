//! A small Thrift backend and client for end-to-end tests, on plexus-thrift's codec
//! (strict binary): the backend answers by method name, as an application would.
//!
//! - `echo`: REPLY, success field 0 = the backend's name;
//! - `fail`: REPLY with declared exception field 1;
//! - `crash`: EXCEPTION (a `TApplicationException`);
//! - `notify` (ONEWAY): counted, no reply;
//! - `count`: REPLY, success field 0 = the number of `notify` calls seen (i32);
//! - `slow`: like `echo` after 300 ms;
//! - `flaky`: every other call (the 1st, 3rd, ...) closes the connection unanswered;
//! - `__can__finagle__trace__v3__`: refused with UNKNOWN_METHOD, as a plain Thrift server
//!   does, unless the backend speaks TTwitter ([`ttwitter_backend`]), which accepts the
//!   upgrade and records each call's request header.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use plexus_thrift::{Decoder, Limits, Message, MessageHeader, MessageKind, Protocol};

/// A running backend.
pub struct Backend {
    pub addr: SocketAddr,
    pub notified: Arc<AtomicUsize>,
    pub calls: Arc<AtomicUsize>,
    /// The TTwitter request headers received (TTwitter backends only).
    pub headers: Arc<std::sync::Mutex<Vec<plexus_thrift::ttwitter::RequestHeader>>>,
}

/// What a backend's connections share.
#[derive(Clone)]
struct Shared {
    name: String,
    framed: bool,
    ttwitter: bool,
    notified: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    flaky: Arc<AtomicUsize>,
    headers: Arc<std::sync::Mutex<Vec<plexus_thrift::ttwitter::RequestHeader>>>,
}

/// A result struct with a string in field `id`.
fn string_result(id: i16, s: &str) -> Vec<u8> {
    let mut b = vec![0x0b];
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&(s.len() as i32).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
    b.push(0);
    b
}

/// The reply the backend named `name` gives to `call`.
fn answer(name: &str, call: &MessageHeader, notified: &AtomicUsize) -> Option<Message> {
    if plexus_thrift::ttwitter::is_upgrade_request(call) {
        let e = plexus_thrift::ApplicationException::new(
            plexus_thrift::ExceptionKind::UnknownMethod,
            format!("Invalid method name: '{}'", call.name),
        );
        return Some(plexus_thrift::exception_reply(call, &e));
    }
    let reply = |body: Vec<u8>| {
        Some(Message::from_header_and_body(
            call.with_kind(MessageKind::Reply),
            &body,
        ))
    };
    match call.name.rsplit(':').next().unwrap_or("") {
        "notify" => {
            notified.fetch_add(1, Ordering::SeqCst);
            None
        }
        "count" => {
            let mut b = vec![0x08, 0, 0];
            b.extend_from_slice(&(notified.load(Ordering::SeqCst) as i32).to_be_bytes());
            b.push(0);
            reply(b)
        }
        "fail" => {
            // Field 1 (a declared exception struct {1: string why}).
            let mut b = vec![0x0c, 0, 1];
            b.extend_from_slice(&string_result(1, "bad"));
            b.push(0);
            reply(b)
        }
        "crash" => Some(plexus_thrift::internal_error_reply(call, "it broke")),
        "slow" => {
            std::thread::sleep(Duration::from_millis(300));
            reply(string_result(0, name))
        }
        _ => reply(string_result(0, name)),
    }
}

/// Starts a backend named `name` on `ip`, framed or not.
pub fn backend(ip: &str, name: &str, framed: bool) -> Backend {
    start(ip, name, framed, false)
}

/// Starts a framed backend that accepts Finagle's TTwitter upgrade, as a Finagle server
/// does, and records the request header of every call.
pub fn ttwitter_backend(ip: &str, name: &str) -> Backend {
    start(ip, name, true, true)
}

fn start(ip: &str, name: &str, framed: bool, ttwitter: bool) -> Backend {
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shared = Shared {
        name: name.to_string(),
        framed,
        ttwitter,
        notified: Arc::new(AtomicUsize::new(0)),
        calls: Arc::new(AtomicUsize::new(0)),
        flaky: Arc::new(AtomicUsize::new(0)),
        headers: Arc::default(),
    };
    let backend = Backend {
        addr,
        notified: shared.notified.clone(),
        calls: shared.calls.clone(),
        headers: shared.headers.clone(),
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let shared = shared.clone();
            std::thread::spawn(move || serve(stream, &shared));
        }
    });
    backend
}

fn serve(mut stream: TcpStream, b: &Shared) {
    let limits = Limits::default();
    let mut decoder = Decoder::new(b.framed, limits);
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 16 << 10];
    let mut upgraded = false;
    loop {
        let next = if upgraded {
            plexus_thrift::decode_frame(&mut buf, &limits).and_then(|f| {
                f.map(|payload| {
                    plexus_thrift::ttwitter::split_request(payload, Protocol::Binary, &limits)
                })
                .transpose()
            })
        } else {
            decoder
                .decode(&mut buf)
                .map(|m| m.map(|m| (Default::default(), m)))
        };
        match next {
            Ok(Some((header, msg))) => {
                b.calls.fetch_add(1, Ordering::SeqCst);
                let h = msg.header();
                if b.ttwitter && !upgraded && plexus_thrift::ttwitter::is_upgrade_request(h) {
                    upgraded = true;
                    let mut out = BytesMut::new();
                    let reply = plexus_thrift::ttwitter::upgrade_reply(h);
                    plexus_thrift::encode(&reply, true, &mut out).expect("encode");
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                    continue;
                }
                if upgraded && let Ok(mut seen) = b.headers.lock() {
                    seen.push(header);
                }
                if h.name == "flaky" && b.flaky.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    return;
                }
                if let Some(reply) = answer(&b.name, h, &b.notified) {
                    let mut out = BytesMut::new();
                    if upgraded {
                        let payload = plexus_thrift::ttwitter::wrap_reply(&reply);
                        plexus_thrift::encode_frame(&payload, &mut out).expect("encode");
                    } else {
                        plexus_thrift::encode(&reply, b.framed, &mut out).expect("encode");
                    }
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(_) => return,
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// A CALL (or ONEWAY) with an args struct holding one string in field 1.
pub fn call(name: &str, kind: MessageKind, seqid: i32) -> Message {
    Message::from_header_and_body(
        MessageHeader::new(name, kind, seqid, Protocol::Binary),
        &string_result(1, "plexus"),
    )
}

/// A client connection speaking framed or unframed strict binary.
pub struct Client {
    stream: TcpStream,
    decoder: Decoder,
    framed: bool,
    buf: BytesMut,
}

impl Client {
    pub fn connect(addr: SocketAddr, framed: bool) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Client {
            stream,
            decoder: Decoder::new(framed, Limits::default()),
            framed,
            buf: BytesMut::new(),
        }
    }

    pub fn send(&mut self, msg: &Message) {
        let mut out = BytesMut::new();
        plexus_thrift::encode(msg, self.framed, &mut out).expect("encode");
        self.stream.write_all(&out).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next message, or `None` if the connection closed first.
    pub fn receive(&mut self) -> Option<Message> {
        let mut chunk = [0u8; 16 << 10];
        loop {
            if let Some(m) = self.decoder.decode(&mut self.buf).expect("decodable reply") {
                return Some(m);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    /// The next frame's payload (framed connections), or `None` if the connection closed.
    pub fn receive_frame(&mut self) -> Option<bytes::Bytes> {
        let mut chunk = [0u8; 16 << 10];
        loop {
            if let Some(f) =
                plexus_thrift::decode_frame(&mut self.buf, &Limits::default()).expect("a frame")
            {
                return Some(f);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    /// A reply on a TTwitter-upgraded connection: its ResponseHeader, then the message.
    pub fn receive_ttwitter(&mut self) -> Message {
        let frame = self.receive_frame().expect("a reply frame");
        let (_, msg) =
            plexus_thrift::ttwitter::split_reply(frame, Protocol::Binary, &Limits::default())
                .expect("a ResponseHeader then a reply");
        msg
    }

    /// Sends a call and reads its reply.
    pub fn call(&mut self, name: &str, seqid: i32) -> Message {
        self.send(&call(name, MessageKind::Call, seqid));
        self.receive().expect("a reply")
    }
}

/// The string in field 0 of a REPLY.
pub fn reply_text(m: &Message) -> String {
    let body = m.body();
    assert_eq!(m.header().kind, MessageKind::Reply, "{m:?}");
    assert_eq!(&body[..3], &[0x0b, 0, 0], "{m:?}");
    let len = i32::from_be_bytes([body[3], body[4], body[5], body[6]]) as usize;
    String::from_utf8_lossy(&body[7..7 + len]).into_owned()
}

/// Appends a 4-byte frame length to `payload`.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.to_vec()
}

/// A Plexus started with one Thrift router, and where to reach it.
pub struct Node {
    /// The router's server.
    pub router: SocketAddr,
    /// The admin server.
    pub admin: SocketAddr,
    /// The router's label.
    pub label: String,
    /// The process (stopped when dropped).
    pub plexus: super::Proc,
}

/// Starts a Plexus on `ip` with one router of `protocol` (`thrift` or `thriftmux`)
/// labelled `label`, with the given router keys (YAML lines indented by two spaces, after
/// `protocol`) and server keys (indented by four), and waits until it serves.
pub fn node(
    name: &str,
    protocol: &str,
    ip: &str,
    label: &str,
    keys: &str,
    server_keys: &str,
) -> Node {
    use super::{free_port, run_plexus, scratch};
    let dir = scratch(name);
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "admin: {{ip: {ip}, port: {admin}}}\n\
routers:\n- protocol: {protocol}\n  label: {label}\n{keys}  servers:\n  - ip: {ip}\n    port: {port}\n{server_keys}"
    );
    let router: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    let admin: SocketAddr = format!("{ip}:{admin}").parse().expect("addr");
    let plexus = run_plexus(name, &dir, &config, router, admin);
    Node {
        router,
        admin,
        label: label.into(),
        plexus,
    }
}
