//! First-frame detection on a ThriftMux port: Mux, framed Thrift of every protocol,
//! unframed Thrift and garbage are told apart, and nothing waits for bytes that cannot
//! come.

use bytes::BytesMut;
use plexus_mux::codec::{Frame, Message, Request};
use plexus_mux::downgrade::{DetectError, Detected, detect};

const MAX: u32 = 16 << 20;

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A strict-binary message header with an empty struct.
fn binary(kind: u8, name: &str) -> Vec<u8> {
    let mut out = vec![0x80, 0x01, 0x00, kind];
    out.extend((name.len() as u32).to_be_bytes());
    out.extend(name.as_bytes());
    out.extend([0, 0, 0, 1, 0]);
    out
}

fn mux(messages: &[Message]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for m in messages {
        m.encode(&mut buf).unwrap();
    }
    buf.to_vec()
}

#[test]
fn framed_thrift_of_every_protocol() {
    // Strict binary CALL and ONEWAY read as Rerr tags 65537 and 65540.
    assert_eq!(
        detect(&framed(&binary(1, "ping")), MAX),
        Ok(Detected::FramedThrift)
    );
    assert_eq!(
        detect(&framed(&binary(4, "log")), MAX),
        Ok(Detected::FramedThrift)
    );
    // Finagle's TTwitter upgrade probe.
    assert_eq!(
        detect(&framed(&binary(1, "__can__finagle__trace__v3__")), MAX),
        Ok(Detected::FramedThrift)
    );
    // Compact CALL: 82, type 1 << 5 | version 1, seqid 1, name "ping", empty struct.
    let compact = [0x82, 0x21, 0x01, 0x04, b'p', b'i', b'n', b'g', 0x00];
    assert_eq!(detect(&framed(&compact), MAX), Ok(Detected::FramedThrift));
    // Old non-strict binary: name length first, then name, type, seqid.
    let mut non_strict = 4u32.to_be_bytes().to_vec();
    non_strict.extend(b"ping");
    non_strict.extend([1, 0, 0, 0, 7, 0]);
    assert_eq!(
        detect(&framed(&non_strict), MAX),
        Ok(Detected::FramedThrift)
    );
}

#[test]
fn mux_openings() {
    let probe = Message::Rerr {
        tag: 1,
        message: "tinit check".into(),
    };
    assert_eq!(detect(&mux(&[probe]), MAX), Ok(Detected::Mux));
    let dispatch = Message::Tdispatch {
        tag: 2,
        request: Request {
            body: bytes::Bytes::from(binary(1, "ping")),
            ..Request::default()
        },
    };
    assert_eq!(
        detect(&mux(std::slice::from_ref(&dispatch)), MAX),
        Ok(Detected::Mux)
    );
    assert_eq!(
        detect(&mux(&[Message::Tping { tag: 1 }]), MAX),
        Ok(Detected::Mux)
    );
    // The first fragment of a long Tdispatch.
    let mut first = BytesMut::new();
    let frame = dispatch.to_frame().unwrap();
    plexus_mux::codec::fragments(frame, 10)
        .next()
        .unwrap()
        .encode(&mut first)
        .unwrap();
    assert_eq!(first[5] & 0x80, 0x80);
    assert_eq!(detect(&first, MAX), Ok(Detected::Mux));
    // A fragment of an unknown type is not Mux.
    let mut odd = BytesMut::new();
    Frame::new(0x30, 0x80_0002, bytes::Bytes::from_static(b"x"))
        .encode(&mut odd)
        .unwrap();
    assert_eq!(detect(&odd, MAX), Ok(Detected::FramedThrift));
}

#[test]
fn unframed_thrift_is_recognised_at_once() {
    let call = binary(1, "ping");
    assert_eq!(detect(&call[..4], MAX), Ok(Detected::UnframedThrift));
    assert_eq!(detect(&call, MAX), Ok(Detected::UnframedThrift));
    assert_eq!(
        detect(&[0x82, 0x81, 0x01, 0x04], MAX),
        Ok(Detected::UnframedThrift),
        "compact ONEWAY"
    );
}

#[test]
fn incomplete_and_invalid_input() {
    let whole = framed(&binary(1, "ping"));
    for n in 0..whole.len() {
        assert_eq!(
            detect(&whole[..n], MAX),
            Ok(Detected::NeedMore),
            "{n} bytes"
        );
    }
    // A length past the limit fails at once rather than waiting for 2 GB.
    assert_eq!(
        detect(&[0x7f, 0xff, 0xff, 0xff], MAX),
        Err(DetectError::TooLarge {
            size: 0x7fff_ffff,
            max: MAX
        })
    );
    // So does an HTTP request sent to the port by mistake.
    assert!(matches!(
        detect(b"GET / HTTP/1.1\r\n", MAX),
        Err(DetectError::TooLarge { .. })
    ));
    assert_eq!(
        detect(&[0, 0, 0, 2, 0x41, 0], MAX),
        Err(DetectError::TooSmall { size: 2 })
    );
    // An unknown strict-binary type byte is not unframed Thrift.
    assert!(detect(&[0x80, 0x01, 0x00, 0x09], MAX).is_err());
}
