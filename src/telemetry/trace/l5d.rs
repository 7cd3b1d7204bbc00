//! The `l5d-ctx-trace` header: Finagle's serialised trace id, base64-encoded, so a trace
//! keeps one id across Linkerd 1.x and Plexus hops.
//!
//! Layout (big-endian, 8 bytes each): span id, parent id, trace id, flags, and, for a
//! 128-bit trace, the trace id's high half: 32 or 40 bytes. A root span repeats its
//! span id as parent. Flags: 1 debug, 2 sampling known, 4 sampled.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderValue;

use super::context::{ContextError, Propagated, SpanContext, TraceIds};

/// Finagle's debug flag.
pub const FLAG_DEBUG: u64 = 1;
/// Finagle's "a sampling decision was made" flag.
pub const FLAG_SAMPLING_KNOWN: u64 = 2;
/// Finagle's "sampled" flag (meaningful with [`FLAG_SAMPLING_KNOWN`]).
pub const FLAG_SAMPLED: u64 = 4;

/// Standard base64; padding optional when reading (some clients drop it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The bytes of a span context in Finagle's layout. Plexus always decides sampling, so
/// "sampling known" is always set.
pub fn serialize(ctx: &SpanContext) -> Vec<u8> {
    let ids = &ctx.ids;
    let mut flags = FLAG_SAMPLING_KNOWN;
    if ctx.sampled {
        flags |= FLAG_SAMPLED;
    }
    if ctx.debug {
        flags |= FLAG_DEBUG;
    }
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&ids.span_id.to_be_bytes());
    out.extend_from_slice(&ids.parent_id.unwrap_or(ids.span_id).to_be_bytes());
    out.extend_from_slice(&ids.trace_id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    if ids.trace_id_high != 0 {
        out.extend_from_slice(&ids.trace_id_high.to_be_bytes());
    }
    out
}

/// Reads bytes in Finagle's layout.
pub fn deserialize(bytes: &[u8]) -> Result<Propagated, ContextError> {
    if bytes.len() != 32 && bytes.len() != 40 {
        return Err(ContextError::Length(bytes.len()));
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_be_bytes(b)
    };
    let (span_id, parent_id, trace_id, flags) = (word(0), word(1), word(2), word(3));
    let trace_id_high = if bytes.len() == 40 { word(4) } else { 0 };
    if span_id == 0 || trace_id == 0 {
        return Err(ContextError::ZeroId("l5d-ctx-trace"));
    }
    Ok(Propagated {
        ids: Some(TraceIds {
            trace_id_high,
            trace_id,
            span_id,
            parent_id: TraceIds::parent_of(span_id, parent_id),
        }),
        sampled: (flags & FLAG_SAMPLING_KNOWN != 0).then_some(flags & FLAG_SAMPLED != 0),
        debug: flags & FLAG_DEBUG != 0,
    })
}

/// The header value for a span context, as text.
pub fn encode(ctx: &SpanContext) -> String {
    BASE64.encode(serialize(ctx))
}

/// The header value for a span context, encoded on the stack (one allocation: the
/// value's own).
pub fn header_value(ctx: &SpanContext) -> HeaderValue {
    let ids = &ctx.ids;
    let mut flags = FLAG_SAMPLING_KNOWN;
    if ctx.sampled {
        flags |= FLAG_SAMPLED;
    }
    if ctx.debug {
        flags |= FLAG_DEBUG;
    }
    let mut raw = [0u8; 40];
    let words = [
        ids.span_id,
        ids.parent_id.unwrap_or(ids.span_id),
        ids.trace_id,
        flags,
        ids.trace_id_high,
    ];
    for (chunk, w) in raw.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    let len = if ids.trace_id_high == 0 { 32 } else { 40 };
    let mut text = [0u8; 56];
    match BASE64.encode_slice(&raw[..len], &mut text) {
        Ok(n) => {
            HeaderValue::from_bytes(&text[..n]).unwrap_or_else(|_| HeaderValue::from_static(""))
        }
        Err(_) => HeaderValue::from_static(""),
    }
}

/// Reads a header value.
pub fn decode(value: &[u8]) -> Result<Propagated, ContextError> {
    let trimmed = value.trim_ascii();
    // 40 bytes encode to 56 characters; anything much longer is not ours to decode.
    if trimmed.len() > 64 {
        return Err(ContextError::Length(trimmed.len() * 3 / 4));
    }
    let bytes = BASE64.decode(trimmed).map_err(|_| ContextError::Base64)?;
    deserialize(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(high: u64, parent: Option<u64>, sampled: bool, debug: bool) -> SpanContext {
        SpanContext {
            ids: TraceIds {
                trace_id_high: high,
                trace_id: 0x2122_2324_2526_2728,
                span_id: 0x0102_0304_0506_0708,
                parent_id: parent,
            },
            sampled,
            debug,
        }
    }

    #[test]
    fn the_layout_is_finagle_s_byte_for_byte() {
        // span 0102..08, parent 1112..18, trace 2122..28, flags 6 (known + sampled),
        // written out by hand from the layout and base64-encoded independently.
        let c = ctx(0, Some(0x1112_1314_1516_1718), true, false);
        let mut expected = Vec::new();
        for w in [
            0x0102_0304_0506_0708u64,
            0x1112_1314_1516_1718,
            0x2122_2324_2526_2728,
            6,
        ] {
            expected.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(serialize(&c), expected);
        assert_eq!(encode(&c), "AQIDBAUGBwgREhMUFRYXGCEiIyQlJicoAAAAAAAAAAY=");
        let back = decode(b"AQIDBAUGBwgREhMUFRYXGCEiIyQlJicoAAAAAAAAAAY=").unwrap();
        assert_eq!(
            back,
            Propagated {
                ids: Some(c.ids),
                sampled: Some(true),
                debug: false
            }
        );
    }

    #[test]
    fn a_128_bit_root_span_uses_40_bytes_and_repeats_its_id_as_parent() {
        let v = b"AQIDBAUGBwgBAgMEBQYHCAECAwQFBgcIAAAAAAAAAAKhoqOkpaanqA==";
        let p = decode(v).unwrap();
        let ids = p.ids.unwrap();
        assert_eq!(ids.trace_id_high, 0xa1a2_a3a4_a5a6_a7a8);
        assert_eq!((ids.span_id, ids.parent_id), (0x0102_0304_0506_0708, None));
        assert_eq!((p.sampled, p.debug), (Some(false), false));
        assert_eq!(ids.trace_id_hex(), "a1a2a3a4a5a6a7a80102030405060708");
        let root = SpanContext {
            ids: TraceIds {
                trace_id: 0x0102_0304_0506_0708,
                ..ids
            },
            sampled: false,
            debug: false,
        };
        assert_eq!(encode(&root).as_bytes(), v);
    }

    #[test]
    fn round_trips_keep_ids_and_flags() {
        for (high, parent, sampled, debug) in [
            (0, None, false, false),
            (0, Some(9), true, false),
            (5, Some(9), true, true),
            (5, None, false, true),
        ] {
            let c = ctx(high, parent, sampled, debug);
            assert_eq!(header_value(&c), encode(&c).as_str());
            let p = decode(encode(&c).as_bytes()).unwrap();
            assert_eq!(p.ids, Some(c.ids));
            assert_eq!(p.sampled, Some(sampled));
            assert_eq!(p.debug, debug);
        }
    }

    #[test]
    fn unknown_sampling_and_missing_padding_are_read() {
        let mut bytes = serialize(&ctx(0, Some(9), false, false));
        bytes[31] = 0; // no flags at all: the decision is left to us
        let unpadded = BASE64.encode(&bytes);
        let p = decode(unpadded.trim_end_matches('=').as_bytes()).unwrap();
        assert_eq!(p.sampled, None);
    }

    #[test]
    fn bad_values_are_errors_never_panics() {
        assert_eq!(decode(b"not base64!"), Err(ContextError::Base64));
        assert_eq!(decode(b"AAAA"), Err(ContextError::Length(3)));
        assert_eq!(
            decode(BASE64.encode([0u8; 32]).as_bytes()),
            Err(ContextError::ZeroId("l5d-ctx-trace"))
        );
        assert!(decode(&[b'A'; 4096]).is_err());
        assert!(decode(&[0xff, 0x00, 0x80]).is_err());
        assert!(decode(b"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_values_never_panic(v in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = decode(&v);
            let _ = deserialize(&v);
        }
    }
}
