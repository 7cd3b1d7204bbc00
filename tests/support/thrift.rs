//! A small Thrift backend and client for end-to-end tests, on plexus-thrift's codec
//! (strict binary): the backend answers by method name, as an application would.
//!
//! - `echo`: REPLY, success field 0 = the backend's name;
//! - `fail`: REPLY with declared exception field 1;
//! - `crash`: EXCEPTION (a `TApplicationException`);
//! - `notify` (ONEWAY): counted, no reply;
//! - `count`: REPLY, success field 0 = the number of `notify` calls seen (i32);
//! - `slow`: like `echo` after 300 ms.

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
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let notified = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (n, c, name) = (notified.clone(), calls.clone(), name.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (n, c, name) = (n.clone(), c.clone(), name.clone());
            std::thread::spawn(move || serve(stream, &name, framed, &n, &c));
        }
    });
    Backend {
        addr,
        notified,
        calls,
    }
}

fn serve(mut stream: TcpStream, name: &str, framed: bool, n: &AtomicUsize, c: &AtomicUsize) {
    let mut decoder = Decoder::new(framed, Limits::default());
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(msg)) => {
                c.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = answer(name, msg.header(), n) {
                    let mut out = BytesMut::new();
                    plexus_thrift::encode(&reply, framed, &mut out).expect("encode");
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
