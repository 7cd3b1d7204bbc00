//! B3 propagation, Zipkin's headers: the multi-header form (`x-b3-traceid`,
//! `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, `x-b3-flags`) and the single
//! `b3` header (`{traceid}-{spanid}[-{sampled}[-{parentspanid}]]`, or just the
//! decision `0`, `1` or `d`), so applications instrumented with Zipkin libraries continue
//! Plexus's traces and Plexus continues theirs.
//!
//! Reading is lenient where clients differ (upper-case hex, ids shorter than 16 digits,
//! `true`/`false` for the decision) and strict about what cannot be an id; writing is
//! always the canonical lower-hex form.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use plexus_http::headers as h;

use super::context::{ContextError, Propagated, SpanContext, TraceIds};

const X_B3_TRACEID: HeaderName = HeaderName::from_static(h::X_B3_TRACEID);
const X_B3_SPANID: HeaderName = HeaderName::from_static(h::X_B3_SPANID);
const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static(h::X_B3_PARENTSPANID);
const X_B3_SAMPLED: HeaderName = HeaderName::from_static(h::X_B3_SAMPLED);
const X_B3_FLAGS: HeaderName = HeaderName::from_static(h::X_B3_FLAGS);
const B3: HeaderName = HeaderName::from_static(h::B3);

fn bad(header: &'static str, why: &'static str) -> ContextError {
    ContextError::B3 { header, why }
}

/// A 64-bit id: 1 to 16 hex digits, not zero.
fn span_id(header: &'static str, v: &[u8]) -> Result<u64, ContextError> {
    if v.is_empty() || v.len() > 16 {
        return Err(bad(header, "an id has 1 to 16 hex digits"));
    }
    let s = std::str::from_utf8(v).map_err(|_| bad(header, "not hex"))?;
    match u64::from_str_radix(s, 16) {
        Ok(0) => Err(bad(header, "the id is zero")),
        Ok(id) if s.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(id),
        _ => Err(bad(header, "not hex")),
    }
}

/// A trace id: up to 16 hex digits (64-bit) or exactly 32 (128-bit); `(high, low)`.
fn trace_id(header: &'static str, v: &[u8]) -> Result<(u64, u64), ContextError> {
    if v.len() == 32 {
        let high = match span_id(header, &v[..16]) {
            Ok(high) => high,
            Err(ContextError::B3 {
                why: "the id is zero",
                ..
            }) => 0,
            Err(e) => return Err(e),
        };
        Ok((high, span_id(header, &v[16..])?))
    } else if v.len() <= 16 {
        Ok((0, span_id(header, v)?))
    } else {
        Err(bad(
            header,
            "a trace id has up to 16 or exactly 32 hex digits",
        ))
    }
}

/// `1`/`true` or `0`/`false` (older clients wrote booleans).
fn decision(v: &[u8]) -> Option<bool> {
    match v.trim_ascii() {
        b"1" => Some(true),
        b"0" => Some(false),
        t if t.eq_ignore_ascii_case(b"true") => Some(true),
        t if t.eq_ignore_ascii_case(b"false") => Some(false),
        _ => None,
    }
}

/// Reads the single `b3` header.
pub fn decode_single(value: &[u8]) -> Result<Propagated, ContextError> {
    let value = value.trim_ascii();
    let state = |s: &[u8]| -> Result<Propagated, ContextError> {
        match s {
            b"0" | b"1" => Ok(Propagated {
                ids: None,
                sampled: Some(s == b"1"),
                debug: false,
            }),
            b"d" => Ok(Propagated {
                ids: None,
                sampled: Some(true),
                debug: true,
            }),
            _ => Err(bad(h::B3, "the sampling state is 0, 1 or d")),
        }
    };
    let fields: Vec<&[u8]> = value.split(|&b| b == b'-').collect();
    let (trace, span, sampling, parent) = match fields.as_slice() {
        [one] => return state(one),
        [t, s] => (t, s, None, None),
        [t, s, d] => (t, s, Some(state(d)?), None),
        [t, s, d, p] => (t, s, Some(state(d)?), Some(span_id(h::B3, p)?)),
        _ => return Err(bad(h::B3, "too many fields")),
    };
    let (trace_id_high, trace_id) = trace_id(h::B3, trace)?;
    let sampling = sampling.unwrap_or_default();
    let span = span_id(h::B3, span)?;
    Ok(Propagated {
        ids: Some(TraceIds {
            trace_id_high,
            trace_id,
            span_id: span,
            parent_id: parent.and_then(|p| TraceIds::parent_of(span, p)),
        }),
        ..sampling
    })
}

/// Reads the `x-b3-*` headers; `None` when there are none.
pub fn decode_multi(headers: &HeaderMap) -> Result<Option<Propagated>, ContextError> {
    let get = |name: &str| headers.get(name).map(|v| v.as_bytes().trim_ascii());
    let (trace, span, parent) = (
        get(h::X_B3_TRACEID),
        get(h::X_B3_SPANID),
        get(h::X_B3_PARENTSPANID),
    );
    let (sampled, flags) = (get(h::X_B3_SAMPLED), get(h::X_B3_FLAGS));
    if [trace, span, parent, sampled, flags]
        .iter()
        .all(Option::is_none)
    {
        return Ok(None);
    }
    let debug = flags == Some(b"1");
    let ids = match (trace, span) {
        (None, None) => None,
        (Some(t), Some(s)) => {
            let (trace_id_high, trace_id) = trace_id(h::X_B3_TRACEID, t)?;
            let span = span_id(h::X_B3_SPANID, s)?;
            let parent = match parent {
                Some(p) if !p.is_empty() => Some(span_id(h::X_B3_PARENTSPANID, p)?),
                _ => None,
            };
            Some(TraceIds {
                trace_id_high,
                trace_id,
                span_id: span,
                parent_id: parent.and_then(|p| TraceIds::parent_of(span, p)),
            })
        }
        _ => {
            return Err(bad(
                h::X_B3_TRACEID,
                "x-b3-traceid and x-b3-spanid come together",
            ));
        }
    };
    Ok(Some(Propagated {
        ids,
        sampled: if debug {
            Some(true)
        } else {
            sampled.and_then(decision)
        },
        debug,
    }))
}

/// A header value of 16 lower-hex digits.
pub(super) fn hex(id: u64) -> HeaderValue {
    let mut buf = [0u8; 16];
    let digits = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = digits[((id >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0000000000000001"))
}

/// Writes `ctx` as `x-b3-*` headers and removes a `b3` header, which readers would
/// otherwise prefer to what is written here.
pub fn write(ctx: &SpanContext, headers: &mut HeaderMap) {
    let ids = &ctx.ids;
    let trace = if ids.trace_id_high == 0 {
        hex(ids.trace_id)
    } else {
        HeaderValue::from_str(&ids.trace_id_hex()).unwrap_or_else(|_| hex(ids.trace_id))
    };
    headers.insert(X_B3_TRACEID, h::per_request(trace));
    headers.insert(X_B3_SPANID, h::per_request(hex(ids.span_id)));
    match ids.parent_id {
        Some(p) => headers.insert(X_B3_PARENTSPANID, h::per_request(hex(p))),
        None => headers.remove(X_B3_PARENTSPANID),
    };
    if ctx.debug {
        // Debug implies sampled; B3 says not to send both.
        headers.insert(X_B3_FLAGS, HeaderValue::from_static("1"));
        headers.remove(X_B3_SAMPLED);
    } else {
        headers.remove(X_B3_FLAGS);
        headers.insert(
            X_B3_SAMPLED,
            HeaderValue::from_static(if ctx.sampled { "1" } else { "0" }),
        );
    }
    headers.remove(B3);
}

/// Removes the `x-b3-*` headers.
pub fn remove_multi(headers: &mut HeaderMap) {
    for name in [
        X_B3_TRACEID,
        X_B3_SPANID,
        X_B3_PARENTSPANID,
        X_B3_SAMPLED,
        X_B3_FLAGS,
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    const T: &str = "463ac35c9f6413ad";
    const T128: &str = "463ac35c9f6413ad48485a3953bb6124";

    /// A span naming itself as its parent has none, as `l5d-ctx-trace` reads it, so the
    /// context writes back to the same ids whichever header carried it (found by the
    /// `trace_context` fuzz target with `b3: 1-1-1-1`).
    #[test]
    fn a_span_that_is_its_own_parent_is_a_root() {
        use crate::telemetry::trace::l5d;
        let single = decode_single(b"1-1-1-1").unwrap().ids.unwrap();
        assert_eq!((single.span_id, single.parent_id), (1, None));
        let multi = decode_multi(&headers(&[
            ("x-b3-traceid", T),
            ("x-b3-spanid", "2"),
            ("x-b3-parentspanid", "2"),
        ]))
        .unwrap()
        .unwrap()
        .ids
        .unwrap();
        assert_eq!(multi.parent_id, None);
        let ctx = SpanContext {
            ids: single,
            sampled: true,
            debug: false,
        };
        let back = l5d::decode(l5d::encode(&ctx).as_bytes()).unwrap();
        assert_eq!(back.ids, Some(single));
        // A real parent stays.
        let child = decode_single(b"1-1-1-3").unwrap().ids.unwrap();
        assert_eq!(child.parent_id, Some(3));
    }

    #[test]
    fn multi_headers_with_every_field() {
        let p = decode_multi(&headers(&[
            ("x-b3-traceid", T128),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-parentspanid", "0020000000000001"),
            ("x-b3-sampled", "1"),
        ]))
        .unwrap()
        .unwrap();
        let ids = p.ids.unwrap();
        assert_eq!(ids.trace_id_high, 0x463a_c35c_9f64_13ad);
        assert_eq!(ids.trace_id, 0x4848_5a39_53bb_6124);
        assert_eq!(ids.span_id, 0xa2fb_4a1d_1a96_d312);
        assert_eq!(ids.parent_id, Some(0x0020_0000_0000_0001));
        assert_eq!((p.sampled, p.debug), (Some(true), false));
        assert_eq!(ids.trace_id_hex(), T128);
    }

    #[test]
    fn multi_header_edge_cases() {
        assert_eq!(decode_multi(&HeaderMap::new()), Ok(None));
        // A decision alone.
        let p = decode_multi(&headers(&[("x-b3-sampled", "0")]))
            .unwrap()
            .unwrap();
        assert_eq!((p.ids, p.sampled), (None, Some(false)));
        // Debug wins over a contradicting decision; booleans and upper case are read.
        let p = decode_multi(&headers(&[
            ("x-b3-traceid", "463AC35C9F6413AD"),
            ("x-b3-spanid", "1"),
            ("x-b3-sampled", "false"),
            ("x-b3-flags", "1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((p.sampled, p.debug), (Some(true), true));
        assert_eq!(p.ids.unwrap().span_id, 1);
        assert_eq!(p.ids.unwrap().parent_id, None);
        // A decision we cannot read is left to us.
        let p = decode_multi(&headers(&[
            ("x-b3-traceid", T),
            ("x-b3-spanid", T),
            ("x-b3-sampled", "maybe"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(p.sampled, None);
        for bad in [
            vec![("x-b3-traceid", T)],
            vec![("x-b3-spanid", T)],
            vec![("x-b3-traceid", "xyz"), ("x-b3-spanid", T)],
            vec![("x-b3-traceid", "0"), ("x-b3-spanid", T)],
            vec![("x-b3-traceid", T), ("x-b3-spanid", "0000000000000000")],
            vec![("x-b3-traceid", "463ac35c9f6413ad4"), ("x-b3-spanid", T)],
            vec![("x-b3-traceid", T), ("x-b3-spanid", "463ac35c9f6413ad00")],
            vec![("x-b3-traceid", "+1"), ("x-b3-spanid", T)],
            vec![
                ("x-b3-traceid", T),
                ("x-b3-spanid", T),
                ("x-b3-parentspanid", "zz"),
            ],
        ] {
            assert!(decode_multi(&headers(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn single_header_forms() {
        let p = decode_single(format!("{T128}-a2fb4a1d1a96d312-1-0020000000000001").as_bytes())
            .unwrap();
        let ids = p.ids.unwrap();
        assert_eq!(ids.trace_id_hex(), T128);
        assert_eq!(ids.parent_id, Some(0x0020_0000_0000_0001));
        assert_eq!(p.sampled, Some(true));
        let p = decode_single(format!("{T}-a2fb4a1d1a96d312").as_bytes()).unwrap();
        assert_eq!((p.sampled, p.ids.unwrap().trace_id_high), (None, 0));
        let p = decode_single(format!("{T}-a2fb4a1d1a96d312-d").as_bytes()).unwrap();
        assert_eq!((p.sampled, p.debug), (Some(true), true));
        assert_eq!(
            decode_single(b"0").unwrap(),
            Propagated {
                ids: None,
                sampled: Some(false),
                debug: false
            }
        );
        assert!(decode_single(b"d").unwrap().debug);
        for bad in [
            "",
            "2",
            "x",
            "-",
            "463ac35c9f6413ad-",
            "463ac35c9f6413ad-a2fb4a1d1a96d312-2",
            "463ac35c9f6413ad-a2fb4a1d1a96d312-1-",
            "463ac35c9f6413ad-a2fb4a1d1a96d312-1-0-1",
            "0-1",
        ] {
            assert!(decode_single(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writing_is_canonical_and_reads_back() {
        let ctx = SpanContext {
            ids: TraceIds {
                trace_id_high: 0,
                trace_id: 0xab,
                span_id: 0x0102_0304_0506_0708,
                parent_id: Some(0xffff_ffff_ffff_ffff),
            },
            sampled: false,
            debug: false,
        };
        let mut m = headers(&[("b3", "1"), ("x-b3-flags", "1")]);
        write(&ctx, &mut m);
        assert_eq!(m["x-b3-traceid"], "00000000000000ab");
        assert_eq!(m["x-b3-spanid"], "0102030405060708");
        assert_eq!(m["x-b3-parentspanid"], "ffffffffffffffff");
        assert_eq!(m["x-b3-sampled"], "0");
        assert!(m.get("b3").is_none() && m.get("x-b3-flags").is_none());
        let back = decode_multi(&m).unwrap().unwrap();
        assert_eq!(
            (back.ids, back.sampled, back.debug),
            (Some(ctx.ids), Some(false), false)
        );

        let debug = SpanContext {
            ids: TraceIds {
                trace_id_high: 1,
                ..ctx.ids
            },
            sampled: true,
            debug: true,
        };
        write(&debug, &mut m);
        assert_eq!(m["x-b3-traceid"], "000000000000000100000000000000ab");
        assert_eq!(m["x-b3-flags"], "1");
        assert!(m.get("x-b3-sampled").is_none());
        let back = decode_multi(&m).unwrap().unwrap();
        assert_eq!((back.ids, back.debug), (Some(debug.ids), true));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_values_never_panic(v in "[0-9a-fA-F-dxz]{0,70}") {
            let _ = decode_single(v.as_bytes());
            let mut m = HeaderMap::new();
            if let Ok(hv) = HeaderValue::from_str(&v) {
                m.insert("x-b3-traceid", hv.clone());
                m.insert("x-b3-spanid", hv.clone());
                m.insert("x-b3-parentspanid", hv.clone());
                m.insert("x-b3-sampled", hv);
            }
            let _ = decode_multi(&m);
        }
    }
}
