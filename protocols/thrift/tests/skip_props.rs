//! Property tests for the skipper and the decoder: random well-typed structs, encoded by
//! the independent test encoder in `common`, are skipped to exactly their length however
//! the bytes are split into reads; every truncation asks for more; random bytes never
//! panic and always end in an answer within the limits; streams of random messages
//! decode back to the same messages in any chunking, framed or not.

mod common;

use bytes::BytesMut;
use common::{encode, encode_header, splits, struct_value};
use plexus_thrift::{
    Decoder, Limits, MessageKind, Protocol, Skip, Skipper, ThriftError, framing::encode_frame,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn protocol(compact: bool) -> Protocol {
    if compact {
        Protocol::Compact
    } else {
        Protocol::Binary
    }
}

/// Feeds `buf` to a decoder `chunk` bytes at a time; returns the messages and the error
/// that stopped it, checking on the way that errors are final and that what stays
/// buffered is at most one partial message within the limits.
fn decode_in_chunks(
    framed: bool,
    limits: Limits,
    buf: &[u8],
    chunk: usize,
) -> Result<(Vec<plexus_thrift::Message>, Option<ThriftError>), TestCaseError> {
    let mut d = Decoder::new(framed, limits);
    let mut pending = BytesMut::new();
    let mut out = Vec::new();
    for piece in buf.chunks(chunk) {
        pending.extend_from_slice(piece);
        loop {
            match d.decode(&mut pending) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    prop_assert_eq!(d.decode(&mut pending).unwrap_err(), e.clone());
                    return Ok((out, Some(e)));
                }
            }
        }
        prop_assert!(
            pending.len() < limits.max_message_bytes + 4,
            "{} bytes buffered",
            pending.len()
        );
    }
    Ok((out, None))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn valid_structs_skip_to_their_exact_length(
        v in struct_value(true),
        compact in any::<bool>(),
        trailing in vec(any::<u8>(), 0..8),
    ) {
        let mut buf = Vec::new();
        encode(&v, compact, &mut buf);
        let len = buf.len();
        buf.extend_from_slice(&trailing);
        let mut s = Skipper::new(protocol(compact), Limits::default());
        prop_assert_eq!(s.skip(&buf), Skip::Complete(len));
    }

    #[test]
    fn skipping_resumes_across_any_split(
        v in struct_value(true),
        compact in any::<bool>(),
        raw_cuts in vec(any::<usize>(), 0..12),
    ) {
        let mut buf = Vec::new();
        encode(&v, compact, &mut buf);
        let mut s = Skipper::new(protocol(compact), Limits::default());
        let mut last = 0;
        for cut in splits(buf.len(), &raw_cuts) {
            prop_assert_eq!(s.skip(&buf[..cut]), Skip::NeedMore, "cut at {}", cut);
            prop_assert!(s.position() >= last && s.position() <= cut);
            last = s.position();
        }
        prop_assert_eq!(s.skip(&buf), Skip::Complete(buf.len()));
    }

    #[test]
    fn every_truncation_needs_more(v in struct_value(true), compact in any::<bool>()) {
        let mut buf = Vec::new();
        encode(&v, compact, &mut buf);
        for cut in 0..buf.len() {
            let mut s = Skipper::new(protocol(compact), Limits::default());
            prop_assert_eq!(s.skip(&buf[..cut]), Skip::NeedMore, "cut at {}", cut);
        }
    }

    #[test]
    fn random_bytes_end_in_an_answer_within_the_limits(
        buf in vec(any::<u8>(), 0..600),
        compact in any::<bool>(),
        raw_cuts in vec(any::<usize>(), 0..8),
        max_message_bytes in 16usize..512,
        max_depth in 1usize..10,
        max_container_elements in 0usize..40,
    ) {
        let limits = Limits { max_depth, max_message_bytes, max_container_elements, ..Limits::default() };
        let whole = Skipper::new(protocol(compact), limits).skip(&buf);
        match whole {
            Skip::Complete(n) => prop_assert!(n <= buf.len() && n <= max_message_bytes),
            Skip::NeedMore => prop_assert!(buf.len() < max_message_bytes),
            Skip::Error(e) => prop_assert!(e.offset <= buf.len().max(max_message_bytes)),
        }
        // Fed in pieces, the answer is the same as in one go, and it is final.
        let mut s = Skipper::new(protocol(compact), limits);
        let mut answer = Skip::NeedMore;
        for cut in splits(buf.len(), &raw_cuts) {
            answer = s.skip(&buf[..cut]);
            if answer != Skip::NeedMore {
                break;
            }
        }
        if answer == Skip::NeedMore {
            answer = s.skip(&buf);
        }
        prop_assert_eq!(answer, whole);
    }

    #[test]
    fn random_bytes_never_break_the_decoder(
        buf in vec(any::<u8>(), 0..600),
        framed in any::<bool>(),
        chunk in 1usize..64,
        small in any::<bool>(),
    ) {
        let limits = if small {
            Limits { max_message_bytes: 256, max_name_bytes: 16, max_depth: 4, max_container_elements: 8 }
        } else {
            Limits::default()
        };
        let (msgs, err) = decode_in_chunks(framed, limits, &buf, chunk)?;
        // Whatever the chunking, the same messages and the same error.
        let (whole, whole_err) = decode_in_chunks(framed, limits, &buf, buf.len().max(1))?;
        prop_assert_eq!(&msgs, &whole);
        prop_assert_eq!(err, whole_err);
        for m in msgs {
            prop_assert!(m.len() <= limits.max_message_bytes);
        }
    }

    #[test]
    fn message_streams_decode_in_any_chunking(
        msgs in vec(
            (0u8..3, "[a-zA-Z_:]{0,12}", 1u8..=4, any::<i32>(), struct_value(true)),
            1..5,
        ),
        framed in any::<bool>(),
        raw_cuts in vec(any::<usize>(), 0..10),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (variant, name, kind, seqid, body) in &msgs {
            let mut m = Vec::new();
            encode_header(*variant, name, *kind, *seqid, &mut m);
            encode(body, *variant == 2, &mut m);
            if framed {
                let mut f = BytesMut::new();
                encode_frame(&m, &mut f).unwrap();
                wire.extend_from_slice(&f);
            } else {
                wire.extend_from_slice(&m);
            }
            let protocol = [Protocol::Binary, Protocol::BinaryNonStrict, Protocol::Compact]
                [usize::from(*variant)];
            expected.push((name.clone(), MessageKind::from_u8(*kind).unwrap(), *seqid, protocol, m));
        }
        let mut d = Decoder::new(framed, Limits::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        let mut cuts = splits(wire.len(), &raw_cuts);
        cuts.push(wire.len());
        for cut in cuts {
            buf.extend_from_slice(&wire[from..cut]);
            from = cut;
            while let Some(m) = d.decode(&mut buf).map_err(|e: ThriftError| TestCaseError::fail(e.to_string()))? {
                let h = m.header().clone();
                got.push((h.name, h.kind, h.seqid, h.protocol, m.bytes().to_vec()));
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, expected);
    }
}
