//! The Mux byte vectors of the reference (thrift-mux.md §4.3, §4.9 and the appendix),
//! each decoded and encoded.

use bytes::{Bytes, BytesMut};
use plexus_mux::codec::{
    self, CONTROL_TAG, Decoder, FRAGMENT_BIT, Frame, HEADER_LEN, Init, Limits, MAX_TAG,
    MIN_REQUEST_TAG, Message, Reply, Request, Response, VERSION, types,
};
use plexus_mux::context::{self, Deadline, MuxFailure};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split(['|', ' ', '\n']).collect();
    assert!(s.len().is_multiple_of(2), "odd hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Hex with quoted ASCII pieces, as the reference writes some vectors.
fn mixed(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in s.split('"').enumerate() {
        if i % 2 == 1 {
            out.extend_from_slice(part.as_bytes());
        } else {
            out.extend(hex(part));
        }
    }
    out
}

fn decode_one(bytes: &[u8]) -> Message {
    let mut buf = BytesMut::from(bytes);
    let frame = Frame::decode(&mut buf, u32::MAX)
        .unwrap()
        .expect("a whole frame");
    assert!(buf.is_empty(), "trailing bytes after the frame");
    Message::decode(frame).unwrap()
}

fn encode_one(message: &Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    message.encode(&mut buf).unwrap();
    buf.to_vec()
}

/// Decodes `wire` to `message` and encodes `message` to `wire`.
fn both_ways(wire: &[u8], message: Message) {
    assert_eq!(decode_one(wire), message, "decode");
    assert_eq!(encode_one(&message), wire, "encode of {message}");
}

fn init(framer: u32, tls: &str) -> Init {
    Init {
        version: VERSION,
        headers: vec![
            (
                Bytes::from_static(b"mux-framer"),
                Bytes::copy_from_slice(&framer.to_be_bytes()),
            ),
            (
                Bytes::from_static(b"tls"),
                Bytes::copy_from_slice(tls.as_bytes()),
            ),
        ],
    }
}

const PING_CALL: &str =
    "80 01 00 01 00 00 00 04 70 69 6e 67 00 00 00 01 0b 00 01 00 00 00 02 68 69 00";
const PING_REPLY: &str =
    "80 01 00 02 00 00 00 04 70 69 6e 67 00 00 00 01 0b 00 00 00 00 00 02 6f 6b 00";

#[test]
fn marker_probe_uses_the_legacy_rerr_number() {
    let wire = hex("00 00 00 0f 7f 00 00 01 74 69 6e 69 74 20 63 68 65 63 6b");
    let probe = Message::Rerr {
        tag: 1,
        message: "tinit check".into(),
    };
    both_ways(&wire, probe.clone());
    // The documented number −128 reads the same.
    let mut documented = wire.clone();
    documented[4] = 0x80;
    assert_eq!(decode_one(&documented), probe);
}

#[test]
fn tinit_and_rinit() {
    let body = "00 01 00 00 00 0a 6d 75 78 2d 66 72 61 6d 65 72 00 00 00 04 00 01 00 00 00 00 00 03 74 6c 73 00 00 00 03 6f 66 66";
    let tinit = hex(&format!("00 00 00 2a 44 00 00 01 {body}"));
    let rinit = hex(&format!("00 00 00 2a bc 00 00 01 {body}"));
    both_ways(
        &tinit,
        Message::Tinit {
            tag: 1,
            init: init(65536, "off"),
        },
    );
    both_ways(
        &rinit,
        Message::Rinit {
            tag: 1,
            init: init(65536, "off"),
        },
    );
    let Message::Tinit { init, .. } = decode_one(&tinit) else {
        unreachable!()
    };
    assert_eq!(init.header("tls").map(|v| v.as_ref()), Some(&b"off"[..]));
    assert_eq!(init.header("compress"), None);
}

#[test]
fn finagle_default_client_tinit() {
    let wire = mixed(
        "00 00 00 2a 44 00 00 01 00 01 | 00 00 00 0a \"mux-framer\" 00 00 00 04 7f ff ff ff | 00 00 00 03 \"tls\" 00 00 00 03 \"off\"",
    );
    both_ways(
        &wire,
        Message::Tinit {
            tag: 1,
            init: init(i32::MAX as u32, "off"),
        },
    );
}

#[test]
fn tdispatch_bare() {
    let wire = hex(&format!(
        "00 00 00 24 02 00 00 02 00 00 00 00 00 00 {PING_CALL}"
    ));
    both_ways(
        &wire,
        Message::Tdispatch {
            tag: 2,
            request: Request {
                body: Bytes::from(hex(PING_CALL)),
                ..Request::default()
            },
        },
    );
}

#[test]
fn tdispatch_with_deadline_dst_and_dtab() {
    let wire = mixed(&format!(
        "00 00 00 71 02 00 00 02 | 00 01 | 00 1c \"com.twitter.finagle.Deadline\" 00 10 17 97 9c fe 36 2a 00 00 17 97 9c fe 71 c4 ca 00 \
         | 00 09 \"/svc/echo\" | 00 01 00 04 \"/svc\" 00 0c \"/#/io.l5d.fs\" | {PING_CALL}"
    ));
    let deadline = Deadline {
        timestamp_ns: 0x1797_9cfe_362a_0000,
        deadline_ns: 0x1797_9cfe_71c4_ca00,
    };
    let message = Message::Tdispatch {
        tag: 2,
        request: Request {
            contexts: vec![(
                Bytes::from_static(context::DEADLINE.as_bytes()),
                deadline.encode(),
            )],
            dst: "/svc/echo".into(),
            dtab: vec![("/svc".into(), "/#/io.l5d.fs".into())],
            body: Bytes::from(hex(PING_CALL)),
        },
    };
    both_ways(&wire, message);
    let Message::Tdispatch { request, .. } = decode_one(&wire) else {
        unreachable!()
    };
    let value = context::find(&request.contexts, context::DEADLINE).unwrap();
    assert_eq!(Deadline::decode(value), Some(deadline));
}

#[test]
fn rdispatch_ok_error_nack() {
    both_ways(
        &hex(&format!("00 00 00 21 fe 00 00 02 00 00 00 {PING_REPLY}")),
        Message::Rdispatch {
            tag: 2,
            response: Response::ok(Bytes::from(hex(PING_REPLY))),
        },
    );
    both_ways(
        &hex("00 00 00 0b fe 00 00 02 01 00 00 62 6f 6f 6d"),
        Message::Rdispatch {
            tag: 2,
            response: Response::error("boom"),
        },
    );
    let nack = hex(
        "00 00 00 1d fe 00 00 02 02 00 01 00 0a 4d 75 78 46 61 69 6c 75 72 65 00 08 00 00 00 00 00 00 00 03",
    );
    let failure = MuxFailure(MuxFailure::RETRYABLE | MuxFailure::REJECTED);
    both_ways(
        &nack,
        Message::Rdispatch {
            tag: 2,
            response: Response {
                contexts: vec![failure.context()],
                reply: Reply::Nack,
            },
        },
    );
    let Message::Rdispatch { response, .. } = decode_one(&nack) else {
        unreachable!()
    };
    let flags =
        MuxFailure::decode(context::find(&response.contexts, context::MUX_FAILURE).unwrap());
    assert_eq!(flags, Some(failure));
    assert!(failure.is_retryable());
    assert!(!MuxFailure(MuxFailure::RETRYABLE | MuxFailure::NON_RETRYABLE).is_retryable());
}

#[test]
fn ping_and_drain() {
    both_ways(&hex("00 00 00 04 41 00 00 01"), Message::Tping { tag: 1 });
    both_ways(&hex("00 00 00 04 bf 00 00 01"), Message::Rping { tag: 1 });
    both_ways(&hex("00 00 00 04 40 00 00 01"), Message::Tdrain { tag: 1 });
    both_ways(&hex("00 00 00 04 c0 00 00 01"), Message::Rdrain { tag: 1 });
}

#[test]
fn tdiscarded_uses_the_legacy_number_and_reads_both() {
    let wire = hex("00 00 00 0e c2 00 00 00 00 00 02 74 69 6d 65 6f 75 74");
    let message = Message::Tdiscarded {
        discard_tag: 2,
        reason: "timeout".into(),
    };
    both_ways(&wire, message.clone());
    let mut documented = wire.clone();
    documented[4] = 0x42;
    assert_eq!(decode_one(&documented), message);
    both_ways(
        &hex("00 00 00 04 be 00 00 02"),
        Message::Rdiscarded { tag: 2 },
    );
}

#[test]
fn rerr_uses_the_legacy_number_and_reads_both() {
    let wire = hex("00 00 00 08 7f 00 00 02 62 6f 6f 6d");
    let message = Message::Rerr {
        tag: 2,
        message: "boom".into(),
    };
    both_ways(&wire, message.clone());
    let mut documented = wire.clone();
    documented[4] = 0x80;
    assert_eq!(decode_one(&documented), message);
}

#[test]
fn tlease() {
    both_ways(
        &hex("00 00 00 0d 43 00 00 00 00 00 00 00 00 00 00 13 88"),
        Message::Tlease {
            unit: 0,
            amount: 5000,
        },
    );
}

#[test]
fn treq_and_rreq() {
    both_ways(
        &hex("00 00 00 07 01 00 00 02 00 ca fe"),
        Message::Treq {
            tag: 2,
            keys: vec![],
            body: Bytes::from_static(&[0xca, 0xfe]),
        },
    );
    both_ways(
        &hex("00 00 00 07 ff 00 00 02 00 ca fe"),
        Message::Rreq {
            tag: 2,
            reply: Reply::Ok(Bytes::from_static(&[0xca, 0xfe])),
        },
    );
}

#[test]
fn first_tdispatch_in_16_byte_fragments() {
    let whole = hex(&format!(
        "00 00 00 24 02 00 00 02 00 00 00 00 00 00 {PING_CALL}"
    ));
    let first = hex("00 00 00 14 02 80 00 02 | 00 00 00 00 00 00 80 01 00 01 00 00 00 04 70 69");
    let second = hex("00 00 00 14 02 00 00 02 | 6e 67 00 00 00 01 0b 00 01 00 00 00 02 68 69 00");

    // Encode: split the whole frame.
    let frame = decode_frame(&whole);
    let mut wire = BytesMut::new();
    for f in codec::fragments(frame.clone(), 16) {
        f.encode(&mut wire).unwrap();
    }
    assert_eq!(wire.to_vec(), [first.clone(), second.clone()].concat());

    // Decode: the two fragments reassemble to the whole message.
    let mut decoder = Decoder::new(Limits::default());
    decoder.extend(&first);
    assert_eq!(decoder.next_frame().unwrap(), None);
    assert!(decoder.is_partial(2));
    decoder.extend(&second);
    let reassembled = decoder.next_frame().unwrap().unwrap();
    assert_eq!(reassembled, frame);
    assert_eq!(Message::decode(reassembled).unwrap(), decode_one(&whole));
    assert!(decoder.is_idle());
}

fn decode_frame(bytes: &[u8]) -> Frame {
    Frame::decode(&mut BytesMut::from(bytes), u32::MAX)
        .unwrap()
        .unwrap()
}

#[test]
fn appendix_numbers() {
    assert_eq!(HEADER_LEN, 8);
    assert_eq!(CONTROL_TAG, 1);
    assert_eq!(MIN_REQUEST_TAG, 2);
    assert_eq!(MAX_TAG, 8_388_607);
    assert_eq!(FRAGMENT_BIT, 0x80_0000);
    assert_eq!(VERSION, 1);
    let bytes = [
        (types::TREQ, 0x01),
        (types::RREQ, 0xff),
        (types::TDISPATCH, 0x02),
        (types::RDISPATCH, 0xfe),
        (types::TDRAIN, 0x40),
        (types::RDRAIN, 0xc0),
        (types::TPING, 0x41),
        (types::RPING, 0xbf),
        (types::TDISCARDED, 0x42),
        (types::TDISCARDED_LEGACY, 0xc2),
        (types::RDISCARDED, 0xbe),
        (types::TLEASE, 0x43),
        (types::TINIT, 0x44),
        (types::RINIT, 0xbc),
        (types::RERR, 0x80),
        (types::RERR_LEGACY, 0x7f),
    ];
    for (kind, byte) in bytes {
        assert_eq!(kind as u8, byte, "{}", codec::type_name(kind));
    }
    // Each message is written with the number Finagle expects.
    let written: Vec<(Message, u8)> = vec![
        (
            Message::Treq {
                tag: 2,
                keys: vec![],
                body: Bytes::new(),
            },
            0x01,
        ),
        (
            Message::Rreq {
                tag: 2,
                reply: Reply::Nack,
            },
            0xff,
        ),
        (
            Message::Tdispatch {
                tag: 2,
                request: Request::default(),
            },
            0x02,
        ),
        (
            Message::Rdispatch {
                tag: 2,
                response: Response::nack(),
            },
            0xfe,
        ),
        (Message::Tdrain { tag: 1 }, 0x40),
        (Message::Rdrain { tag: 1 }, 0xc0),
        (Message::Tping { tag: 1 }, 0x41),
        (Message::Rping { tag: 1 }, 0xbf),
        (
            Message::Tdiscarded {
                discard_tag: 2,
                reason: String::new(),
            },
            0xc2,
        ),
        (Message::Rdiscarded { tag: 2 }, 0xbe),
        (Message::Tlease { unit: 0, amount: 1 }, 0x43),
        (
            Message::Tinit {
                tag: 1,
                init: init(1, "off"),
            },
            0x44,
        ),
        (
            Message::Rinit {
                tag: 1,
                init: init(1, "off"),
            },
            0xbc,
        ),
        (
            Message::Rerr {
                tag: 1,
                message: String::new(),
            },
            0x7f,
        ),
    ];
    for (message, byte) in written {
        let wire = encode_one(&message);
        assert_eq!(wire[4], byte, "{message}");
        let size = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
        assert_eq!(size, wire.len() - 4, "{message}");
        assert_eq!(decode_one(&wire), message);
    }
}

#[test]
fn thrift_binary_call_reads_as_rerr_65537() {
    // A framed strict-binary CALL, read as Mux: type 0x80 (Rerr), tag 0x010001.
    let wire = hex(&format!("00 00 00 1a {PING_CALL}"));
    match decode_one(&wire) {
        Message::Rerr { tag, .. } => assert_eq!(tag, 65537),
        other => panic!("{other:?}"),
    }
}
