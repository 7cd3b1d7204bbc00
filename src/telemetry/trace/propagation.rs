//! Which trace headers a router reads from a request and writes on what it forwards.
//!
//! Read, in order of precedence: the single `b3` header, the `x-b3-*` headers, then
//! `l5d-ctx-trace`. The first reading that carries ids gives the caller's span; the
//! first that carries a decision gives the decision. B3 goes first because an
//! application instrumented with a Zipkin library writes B3 for its own span while
//! forwarding the `l5d-ctx-*` headers it received unchanged: its B3 names the nearer
//! parent. A reading that does not parse is ignored (and logged at debug level).
//! `l5d-sample` overrides the sample rate for the request. All of these are removed from
//! the request; [`inject`] writes the forwarded request's own.

use http::header::{HeaderMap, HeaderName};
use plexus_http::headers as h;

use super::context::{ContextError, Propagated, SpanContext, parse_sample_rate};
use super::{b3, l5d};

const L5D_CTX_TRACE: HeaderName = HeaderName::from_static(h::L5D_CTX_TRACE);
const L5D_SAMPLE: HeaderName = HeaderName::from_static(h::L5D_SAMPLE);
const L5D_REQID: HeaderName = HeaderName::from_static(h::L5D_REQID);
const B3: HeaderName = HeaderName::from_static(h::B3);

/// What a request carried: the caller's context and the `l5d-sample` rate.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Extracted {
    /// The caller's span and decision.
    pub propagated: Propagated,
    /// `l5d-sample`, clamped to 0..1.
    pub sample_rate: Option<f64>,
}

fn ignore<T>(header: &str, r: Result<T, ContextError>) -> Option<T> {
    r.map_err(|e| tracing::debug!(header, error = %e, "ignoring a trace header"))
        .ok()
}

/// Which trace headers a request has, found in one pass over its headers (cheaper than
/// looking up each of the eight names, and most requests have few headers).
#[derive(Default)]
struct Present {
    l5d: bool,
    sample: bool,
    single: bool,
    multi: bool,
}

impl Present {
    fn scan(headers: &HeaderMap) -> Present {
        let mut p = Present::default();
        for name in headers.keys() {
            match name.as_str() {
                h::L5D_CTX_TRACE => p.l5d = true,
                h::L5D_SAMPLE => p.sample = true,
                h::B3 => p.single = true,
                n if n.starts_with("x-b3-") => p.multi = true,
                _ => {}
            }
        }
        p
    }
}

/// Reads the trace headers (only when `trust`: edge servers with `clearContext` start
/// new traces) and removes them all.
pub fn extract(headers: &mut HeaderMap, trust: bool) -> Extracted {
    let mut out = Extracted::default();
    let present = Present::scan(headers);
    if trust {
        let single = present
            .single
            .then(|| headers.get(B3))
            .flatten()
            .and_then(|v| ignore(h::B3, b3::decode_single(v.as_bytes())));
        let multi = if present.multi {
            ignore("x-b3-*", b3::decode_multi(headers)).flatten()
        } else {
            None
        };
        let l5d = present
            .l5d
            .then(|| headers.get(L5D_CTX_TRACE))
            .flatten()
            .and_then(|v| ignore(h::L5D_CTX_TRACE, l5d::decode(v.as_bytes())));
        out.propagated = [single, multi, l5d]
            .into_iter()
            .flatten()
            .fold(Propagated::default(), Propagated::or);
        out.sample_rate = present
            .sample
            .then(|| headers.get(L5D_SAMPLE))
            .flatten()
            .and_then(|v| parse_sample_rate(v.as_bytes()));
    }
    if present.l5d {
        headers.remove(L5D_CTX_TRACE);
    }
    if present.sample {
        headers.remove(L5D_SAMPLE);
    }
    if present.single {
        headers.remove(B3);
    }
    if present.multi {
        b3::remove_multi(headers);
    }
    out
}

/// Writes `ctx` for the next hop: `l5d-ctx-trace` (Linkerd and Plexus), the `x-b3-*`
/// headers (Zipkin-instrumented applications), and `l5d-reqid` (the low 64 bits of the
/// trace id, as Linkerd's default propagator writes it).
pub fn inject(ctx: &SpanContext, headers: &mut HeaderMap) {
    headers.insert(L5D_CTX_TRACE, h::per_request(l5d::header_value(ctx)));
    b3::write(ctx, headers);
    headers.insert(L5D_REQID, h::per_request(b3::hex(ctx.ids.trace_id)));
}

#[cfg(test)]
mod tests {
    use super::super::context::TraceIds;
    use super::*;
    use http::header::HeaderValue;

    fn ctx(trace: u64, span: u64, sampled: bool) -> SpanContext {
        SpanContext {
            ids: TraceIds {
                trace_id_high: 0,
                trace_id: trace,
                span_id: span,
                parent_id: Some(1),
            },
            sampled,
            debug: false,
        }
    }

    #[test]
    fn b3_takes_precedence_over_l5d_and_everything_is_removed() {
        let mut m = HeaderMap::new();
        m.insert(
            h::L5D_CTX_TRACE,
            HeaderValue::from_str(&l5d::encode(&ctx(5, 6, true))).unwrap(),
        );
        b3::write(&ctx(7, 8, false), &mut m);
        m.insert(h::L5D_SAMPLE, HeaderValue::from_static("0.5"));
        m.insert("x-app", HeaderValue::from_static("kept"));
        let e = extract(&mut m, true);
        let ids = e.propagated.ids.unwrap();
        assert_eq!((ids.trace_id, ids.span_id), (7, 8));
        assert_eq!(e.propagated.sampled, Some(false));
        assert_eq!(e.sample_rate, Some(0.5));
        assert_eq!(m.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-app"]);
    }

    #[test]
    fn a_broken_b3_falls_back_to_l5d_and_single_beats_multi() {
        let mut m = HeaderMap::new();
        m.insert(
            h::L5D_CTX_TRACE,
            HeaderValue::from_str(&l5d::encode(&ctx(5, 6, true))).unwrap(),
        );
        m.insert(h::X_B3_TRACEID, HeaderValue::from_static("zz"));
        m.insert(h::X_B3_SPANID, HeaderValue::from_static("zz"));
        let e = extract(&mut m, true);
        assert_eq!(e.propagated.ids.unwrap().trace_id, 5);

        let mut m = HeaderMap::new();
        b3::write(&ctx(7, 8, true), &mut m);
        m.insert(
            h::B3,
            HeaderValue::from_static("0000000000000009-000000000000000a-0"),
        );
        let e = extract(&mut m, true);
        let ids = e.propagated.ids.unwrap();
        assert_eq!((ids.trace_id, ids.span_id), (9, 10));
        assert_eq!(e.propagated.sampled, Some(false));
    }

    #[test]
    fn untrusted_context_is_dropped_unread() {
        let mut m = HeaderMap::new();
        b3::write(&ctx(7, 8, true), &mut m);
        m.insert(h::L5D_SAMPLE, HeaderValue::from_static("1"));
        assert_eq!(extract(&mut m, false), Extracted::default());
        assert!(m.is_empty());
    }

    #[test]
    fn injected_headers_read_back_the_same_context() {
        let c = ctx(0x1234, 0x5678, true);
        let mut m = HeaderMap::new();
        inject(&c, &mut m);
        assert_eq!(m[h::L5D_REQID], "0000000000001234");
        let from_l5d = l5d::decode(m[h::L5D_CTX_TRACE].as_bytes()).unwrap();
        let from_b3 = b3::decode_multi(&m).unwrap().unwrap();
        assert_eq!(from_l5d, from_b3);
        assert_eq!(from_l5d.ids, Some(c.ids));
    }
}
