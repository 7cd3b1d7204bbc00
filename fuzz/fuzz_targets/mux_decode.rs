//! Arbitrary bytes as a Mux byte stream: the decoder, the first-frame downgrade test
//! and both session roles never panic; every message that decodes encodes back to bytes
//! that decode to the same message; whatever a session writes is well-formed Mux.
//!
//! Input layout: byte 0 picks the read size (1 + byte % 64) and whether the sessions
//! start with a handshake probe; the rest is the stream.
#![no_main]

use std::time::Instant;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use plexus_mux::codec::{Decoder, Limits, Message};
use plexus_mux::downgrade::detect;
use plexus_mux::session::{ClientSession, ServerSession, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let read = 1 + usize::from(mode % 64);
    let limits = Limits {
        max_frame: 1 << 16,
        max_message: 1 << 17,
        max_buffered: 1 << 18,
    };
    let _ = detect(stream, limits.max_frame);

    let mut decoder = Decoder::new(limits);
    'feed: for chunk in stream.chunks(read) {
        decoder.extend(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    let mut wire = BytesMut::new();
                    message.encode(&mut wire).expect("a decoded message encodes");
                    let mut again = Decoder::new(Limits::default());
                    again.extend(&wire);
                    let back: Option<Message> = again.next_message().expect("re-encoded bytes decode");
                    assert_eq!(back.as_ref(), Some(&message));
                }
                Ok(None) => break,
                Err(e) if e.tag().is_some() => {}
                Err(_) => break 'feed,
            }
        }
    }

    let now = Instant::now();
    let config = SessionConfig {
        limits,
        ..SessionConfig::default()
    };
    let mut server = ServerSession::new(config.clone(), now);
    let mut client = ClientSession::new(config, now);
    let _ = client.dispatch(Default::default());
    if mode & 0x80 != 0 {
        let mut probe = BytesMut::new();
        Message::Rerr {
            tag: 1,
            message: "tinit check".into(),
        }
        .encode(&mut probe)
        .expect("the probe encodes");
        server.receive(&probe, now);
        client.receive(&probe, now);
    }
    for chunk in stream.chunks(read) {
        server.receive(chunk, now);
        client.receive(chunk, now);
        while let Some(_event) = server.poll_event() {}
        while let Some(_event) = client.poll_event() {}
    }
    server.receive_eof(now);
    client.receive_eof(now);
    for out in [drain(|b| server.poll_transmit(b)), drain(|b| client.poll_transmit(b))] {
        let mut written = Decoder::new(Limits::default());
        written.extend(&out);
        while written.next_message().expect("sessions write well-formed Mux").is_some() {}
        assert!(written.is_idle());
    }
});

fn drain(mut transmit: impl FnMut(&mut BytesMut) -> bool) -> Vec<u8> {
    let mut buf = BytesMut::new();
    while transmit(&mut buf) {}
    buf.to_vec()
}
