//! Arbitrary bytes through the Thrift codec: the framed and unframed decoders (fed in
//! chunks), the skipper in both protocols, reply classification and the TTwitter header
//! readers. Nothing panics; decoders keep their buffers within the limits; an unframed
//! decode split into reads finds the same messages as one read; every decoded message
//! parses back whole and re-encodes to the same bytes.
//!
//! Input layout: byte 0 picks the chunk size (1..=64) and byte 1 the limits (small or
//! default); the rest is the stream.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use plexus_thrift::{
    Decoder, Limits, Message, MessageKind, Protocol, Skip, Skipper, ThriftError, classify, encode,
    ttwitter,
};

fn run(
    framed: bool,
    limits: Limits,
    data: &[u8],
    chunk: usize,
) -> (Vec<Message>, Option<ThriftError>) {
    let mut d = Decoder::new(framed, limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.decode(&mut buf).unwrap_err(), e, "errors are final");
                    return (out, Some(e));
                }
            }
        }
        assert!(
            buf.len() < limits.max_message_bytes + 4,
            "buffered {}",
            buf.len()
        );
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let [chunk, small, stream @ ..] = data else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let limits = if small % 2 == 0 {
        Limits {
            max_depth: 8,
            max_message_bytes: 512,
            max_container_elements: 64,
            max_name_bytes: 32,
        }
    } else {
        Limits::default()
    };
    for framed in [false, true] {
        let (msgs, err) = run(framed, limits, stream, chunk);
        let (whole, whole_err) = run(framed, limits, stream, stream.len().max(1));
        assert_eq!(msgs, whole, "chunking changed the messages");
        assert_eq!(err, whole_err, "chunking changed the error");
        for m in &msgs {
            assert!(m.len() <= limits.max_message_bytes);
            let mut out = BytesMut::new();
            encode(m, framed, &mut out).unwrap();
            if !framed {
                assert_eq!(&out[..], &m.bytes()[..]);
                let again = Message::parse(m.bytes().clone(), &limits).unwrap();
                assert_eq!(&again, m);
            }
            if matches!(m.header().kind, MessageKind::Reply | MessageKind::Exception) {
                let _ = classify(m);
            }
        }
    }
    for protocol in [Protocol::Binary, Protocol::Compact] {
        match Skipper::new(protocol, limits).skip(stream) {
            Skip::Complete(n) => assert!(n <= stream.len() && n <= limits.max_message_bytes),
            Skip::NeedMore => assert!(stream.len() < limits.max_message_bytes),
            Skip::Error(_) => {}
        }
        let payload = Bytes::copy_from_slice(stream);
        let _ = ttwitter::split_request(payload.clone(), protocol, &limits);
        let _ = ttwitter::split_reply(payload, protocol, &limits);
    }
});
