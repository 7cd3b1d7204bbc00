//! Property tests: every message kind survives encode → decode; fragments of any size,
//! interleaved across tags and cut into arbitrary reads, reassemble to the same
//! messages; arbitrary bytes never panic the decoder, the downgrade test or a session.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use plexus_mux::codec::{
    self, DecodeError, Decoder, Frame, Init, Limits, MAX_TAG, Message, Reassembler, Reply, Request,
    Response,
};
use plexus_mux::downgrade::{self, Detected};
use plexus_mux::session::{ClientSession, ServerEvent, ServerSession, SessionConfig};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn tag() -> impl Strategy<Value = u32> {
    prop_oneof![0..=MAX_TAG, 0u32..8, Just(MAX_TAG)]
}

fn contexts() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
    vec((bytes(24), bytes(48)), 0..4)
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        bytes(200).prop_map(Reply::Ok),
        text().prop_map(Reply::Error),
        Just(Reply::Nack)
    ]
}

fn request(max_body: usize) -> impl Strategy<Value = Request> {
    (
        contexts(),
        text(),
        vec((text(), text()), 0..3),
        bytes(max_body),
    )
        .prop_map(|(contexts, dst, dtab, body)| Request {
            contexts,
            dst,
            dtab,
            body,
        })
}

fn response(max_body: usize) -> impl Strategy<Value = Response> {
    (
        contexts(),
        prop_oneof![
            bytes(max_body).prop_map(Reply::Ok),
            text().prop_map(Reply::Error),
            Just(Reply::Nack)
        ],
    )
        .prop_map(|(contexts, reply)| Response { contexts, reply })
}

fn init() -> impl Strategy<Value = Init> {
    (any::<u16>(), vec((bytes(16), bytes(16)), 0..4))
        .prop_map(|(version, headers)| Init { version, headers })
}

/// Any message of any kind.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (tag(), vec((any::<u8>(), bytes(255)), 0..4), bytes(100))
            .prop_map(|(tag, keys, body)| Message::Treq { tag, keys, body }),
        (tag(), reply()).prop_map(|(tag, reply)| Message::Rreq { tag, reply }),
        (tag(), request(300)).prop_map(|(tag, request)| Message::Tdispatch { tag, request }),
        (tag(), response(300)).prop_map(|(tag, response)| Message::Rdispatch { tag, response }),
        tag().prop_map(|tag| Message::Tdrain { tag }),
        tag().prop_map(|tag| Message::Rdrain { tag }),
        tag().prop_map(|tag| Message::Tping { tag }),
        tag().prop_map(|tag| Message::Rping { tag }),
        (tag(), text()).prop_map(|(discard_tag, reason)| Message::Tdiscarded {
            discard_tag,
            reason
        }),
        tag().prop_map(|tag| Message::Rdiscarded { tag }),
        (any::<u8>(), any::<u64>()).prop_map(|(unit, amount)| Message::Tlease { unit, amount }),
        (tag(), init()).prop_map(|(tag, init)| Message::Tinit { tag, init }),
        (tag(), init()).prop_map(|(tag, init)| Message::Rinit { tag, init }),
        (tag(), text()).prop_map(|(tag, message)| Message::Rerr { tag, message }),
    ]
}

/// Cuts `data` into reads of the given sizes (cycled), feeding each to `feed`.
fn chunked(data: &[u8], sizes: &[usize], mut feed: impl FnMut(&[u8])) {
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        feed(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
}

proptest! {
    #[test]
    fn every_message_round_trips(m in message()) {
        let mut wire = BytesMut::new();
        m.encode(&mut wire).unwrap();
        let size = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
        prop_assert_eq!(size + 4, wire.len());
        prop_assert_eq!(wire[4] as i8, m.kind());
        let mut src = wire.clone();
        let frame = Frame::decode(&mut src, u32::MAX).unwrap().unwrap();
        prop_assert!(src.is_empty());
        let back = Message::decode(frame).unwrap();
        prop_assert_eq!(&back, &m);
        let mut again = BytesMut::new();
        back.encode(&mut again).unwrap();
        prop_assert_eq!(again, wire);
    }

    #[test]
    fn fragments_of_any_size_reassemble(
        m in message(),
        max_body in 1usize..400,
        reads in vec(1usize..64, 1..8),
    ) {
        let frame = m.to_frame().unwrap();
        let body_len = frame.body.len();
        let parts: Vec<Frame> = codec::fragments(frame.clone(), max_body).collect();
        prop_assert_eq!(parts.len(), body_len.div_ceil(max_body).max(1));
        for (i, p) in parts.iter().enumerate() {
            prop_assert!(p.body.len() <= max_body);
            prop_assert_eq!(p.more_follows(), i + 1 < parts.len());
            prop_assert_eq!(p.id(), m.tag());
        }
        let mut wire = BytesMut::new();
        for p in &parts {
            p.encode(&mut wire).unwrap();
        }
        let mut decoder = Decoder::new(Limits::default());
        let mut got = Vec::new();
        chunked(&wire, &reads, |chunk| {
            decoder.extend(chunk);
            while let Some(m) = decoder.next_message().unwrap() {
                got.push(m);
            }
        });
        prop_assert_eq!(got, vec![m]);
        prop_assert!(decoder.is_idle());
    }

    #[test]
    fn interleaved_fragments_of_many_tags_reassemble(
        messages in vec(
            (prop_oneof![
                request(3000).prop_map(|request| Message::Tdispatch { tag: 0, request }),
                response(3000).prop_map(|response| Message::Rdispatch { tag: 0, response }),
            ], 1usize..700),
            1..12,
        ),
        picks in vec(any::<Index>(), 0..200),
        reads in vec(1usize..2000, 1..6),
    ) {
        // Distinct tags, each message with its own fragment size.
        let mut queues: Vec<std::collections::VecDeque<Frame>> = Vec::new();
        let mut originals = Vec::new();
        for (i, (mut m, max_body)) in messages.into_iter().enumerate() {
            let tag = 2 + i as u32 * 3;
            match &mut m {
                Message::Tdispatch { tag: t, .. } | Message::Rdispatch { tag: t, .. } => *t = tag,
                _ => unreachable!(),
            }
            queues.push(codec::fragments(m.to_frame().unwrap(), max_body).collect());
            originals.push(m);
        }
        // Interleave: pick a non-empty queue at random for each frame.
        let mut wire = BytesMut::new();
        let mut step = 0;
        loop {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            if live.is_empty() {
                break;
            }
            let pick = picks.get(step).map_or(step % live.len(), |p| p.index(live.len()));
            queues[live[pick]].pop_front().unwrap().encode(&mut wire).unwrap();
            step += 1;
        }
        let mut decoder = Decoder::new(Limits::default());
        let mut got = Vec::new();
        chunked(&wire, &reads, |chunk| {
            decoder.extend(chunk);
            while let Some(m) = decoder.next_message().unwrap() {
                got.push(m);
            }
        });
        prop_assert!(decoder.is_idle());
        got.sort_by_key(Message::tag);
        prop_assert_eq!(got, originals);
    }

    #[test]
    fn reassembly_stays_within_its_limits(
        frames in vec((0u32..6, any::<bool>(), 0usize..300), 0..100),
    ) {
        let (max_message, max_buffered) = (700, 1000);
        let mut r = Reassembler::new(max_message, max_buffered);
        for (tag, more, len) in frames {
            let wire_tag = if more { tag | codec::FRAGMENT_BIT } else { tag };
            let frame = Frame::new(codec::types::TDISPATCH, wire_tag, Bytes::from(vec![0; len]));
            match r.push(frame) {
                Ok(Some(whole)) => prop_assert!(whole.body.len() <= max_message),
                Ok(None) => {}
                Err(e) => prop_assert!(
                    matches!(e, DecodeError::MessageTooLarge { .. } | DecodeError::TooMuchBuffered { .. }),
                    "{e}"
                ),
            }
            prop_assert!(r.buffered() <= max_buffered);
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(
        data in vec(any::<u8>(), 0..2000),
        reads in vec(1usize..300, 1..6),
    ) {
        let limits = Limits { max_frame: 1024, max_message: 2048, max_buffered: 4096 };
        let mut decoder = Decoder::new(limits);
        let mut failed = false;
        chunked(&data, &reads, |chunk| {
            if failed {
                return;
            }
            decoder.extend(chunk);
            loop {
                match decoder.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    // Errors about one message leave the stream in step; others end it.
                    Err(e) if e.tag().is_some() => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        });
    }

    #[test]
    fn random_bodies_never_panic_message_decode(kind in any::<i8>(), tag in 0u32..0x100_0000, body in bytes(200)) {
        let _ = Message::decode(Frame::new(kind, tag, body));
    }

    #[test]
    fn mutated_messages_never_panic(m in message(), flips in vec((any::<Index>(), any::<u8>()), 1..6)) {
        let mut wire = BytesMut::new();
        m.encode(&mut wire).unwrap();
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let mut decoder = Decoder::new(Limits::default());
        decoder.extend(&wire);
        let _ = decoder.next_message();
        let _ = downgrade::detect(&wire, 1 << 20);
    }

    #[test]
    fn random_bytes_never_panic_the_downgrade_test(data in vec(any::<u8>(), 0..300)) {
        if let Ok(Detected::NeedMore) = downgrade::detect(&data, 256) {
            // More bytes can only be needed while the first frame is incomplete.
            let len = data.get(..4).map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize + 4);
            prop_assert!(len.is_none_or(|len| data.len() < len));
        }
    }

    #[test]
    fn random_bytes_never_panic_a_session(
        data in vec(any::<u8>(), 0..1500),
        reads in vec(1usize..200, 1..6),
        handshake in any::<bool>(),
    ) {
        let now = Instant::now();
        let mut server = ServerSession::new(SessionConfig::default(), now);
        let mut client = ClientSession::new(SessionConfig::default(), now);
        let _ = client.dispatch(Request::default());
        if handshake {
            let mut open = BytesMut::new();
            Message::Rerr { tag: 1, message: "tinit check".into() }.encode(&mut open).unwrap();
            server.receive(&open, now);
            client.receive(&open, now);
        }
        chunked(&data, &reads, |chunk| {
            server.receive(chunk, now);
            client.receive(chunk, now);
        });
        server.receive_eof(now);
        client.receive_eof(now);
        // Whatever the sessions write is well-formed Mux.
        for out in [
            drain(|b| server.poll_transmit(b)),
            drain(|b| client.poll_transmit(b)),
        ] {
            let mut decoder = Decoder::new(Limits::default());
            decoder.extend(&out);
            while let Some(m) = decoder.next_message().unwrap() {
                let _ = m;
            }
            prop_assert!(decoder.is_idle());
        }
        while server.poll_event().is_some() {}
        while client.poll_event().is_some() {}
        prop_assert!(server.is_closed() && client.is_closed());
    }
}

proptest! {
    /// Well-formed but arbitrary message sequences: the sessions never panic, write
    /// only well-formed Mux, and the server's count of requests in flight matches the
    /// events it gave.
    #[test]
    fn arbitrary_message_sequences_keep_sessions_consistent(
        messages in vec(message(), 0..40),
        handshake in any::<bool>(),
        reads in vec(1usize..100, 1..4),
    ) {
        let now = Instant::now();
        let mut wire = BytesMut::new();
        if handshake {
            Message::Rerr { tag: 1, message: "tinit check".into() }.encode(&mut wire).unwrap();
        }
        for m in &messages {
            m.encode(&mut wire).unwrap();
        }
        let mut server = ServerSession::new(SessionConfig::default(), now);
        let mut client = ClientSession::new(SessionConfig::default(), now);
        let _ = client.dispatch(Request::default());
        let mut in_flight = std::collections::HashSet::new();
        let mut closed = false;
        chunked(&wire, &reads, |chunk| {
            server.receive(chunk, now);
            client.receive(chunk, now);
            while let Some(e) = server.poll_event() {
                match e {
                    ServerEvent::Request { tag, .. } => {
                        assert!(in_flight.insert(tag), "tag {tag} handed out twice");
                    }
                    ServerEvent::Cancelled { tag, .. } => assert!(in_flight.remove(&tag)),
                    ServerEvent::Failed(_) | ServerEvent::Finished => closed = true,
                    _ => {}
                }
            }
            if !closed {
                assert_eq!(server.in_flight(), in_flight.len());
            }
            while client.poll_event().is_some() {}
        });
        for tag in in_flight {
            let answered = server.respond(tag, Response::ok(Bytes::from_static(b"r")));
            prop_assert_eq!(answered.is_ok(), !closed);
        }
        for out in [
            drain(|b| server.poll_transmit(b)),
            drain(|b| client.poll_transmit(b)),
        ] {
            let mut decoder = Decoder::new(Limits::default());
            decoder.extend(&out);
            while decoder.next_message().unwrap().is_some() {}
            prop_assert!(decoder.is_idle());
        }
    }
}

fn drain(mut transmit: impl FnMut(&mut BytesMut) -> bool) -> Vec<u8> {
    let mut buf = BytesMut::new();
    while transmit(&mut buf) {}
    buf.to_vec()
}
