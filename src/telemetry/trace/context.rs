//! Trace identities: the ids a span is known by, what a request carried in from its
//! caller, and the sampling decision, kept apart from any header format so that the
//! `l5d-ctx-trace` and B3 codecs read into and write from the same values.
//!
//! Ids follow Finagle and Zipkin: 64-bit span ids, a 64-bit trace id with an optional
//! high half (128-bit traces), zero meaning "no id". A decision, once made, travels with
//! the trace so every hop records all of a trace or none of it.

use std::cell::Cell;

/// The ids of one span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceIds {
    /// The high 64 bits of a 128-bit trace id; 0 for a 64-bit trace id.
    pub trace_id_high: u64,
    /// The (low 64 bits of the) trace id, shared by every span of the trace.
    pub trace_id: u64,
    /// This span's id.
    pub span_id: u64,
    /// The span that caused this one; `None` for the root span.
    pub parent_id: Option<u64>,
}

impl TraceIds {
    /// A span's parent, as Finagle reads one: `l5d-ctx-trace` writes a root span with its
    /// own id as parent, so a span naming itself as parent (from any header) has none,
    /// and neither has parent id 0. Every reader goes through this, so a context reads
    /// the same whichever header carried it.
    pub fn parent_of(span_id: u64, parent_id: u64) -> Option<u64> {
        (parent_id != span_id && parent_id != 0).then_some(parent_id)
    }

    /// The trace id as Zipkin writes it: 16 lower-hex digits, or 32 for a 128-bit id.
    pub fn trace_id_hex(&self) -> String {
        if self.trace_id_high == 0 {
            format!("{:016x}", self.trace_id)
        } else {
            format!("{:016x}{:016x}", self.trace_id_high, self.trace_id)
        }
    }
}

/// What a request carried from its caller: the caller's span, if it sent one, and a
/// sampling decision, if one was made. Either may be missing (a B3 `b3: 0` header
/// carries a decision without ids).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Propagated {
    /// The caller's span.
    pub ids: Option<TraceIds>,
    /// Whether the trace is recorded; `None` when the caller left it to us.
    pub sampled: Option<bool>,
    /// A debug trace: always recorded.
    pub debug: bool,
}

impl Propagated {
    /// Combines two readings of one request, `self` taking precedence: ids from the
    /// first that has them, the decision from the first that knows it.
    pub fn or(self, other: Propagated) -> Propagated {
        Propagated {
            ids: self.ids.or(other.ids),
            sampled: self.sampled.or(other.sampled),
            debug: self.debug || other.debug,
        }
    }
}

/// A span of this process: its ids and the trace's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    /// The ids.
    pub ids: TraceIds,
    /// Whether the trace is recorded.
    pub sampled: bool,
    /// A debug trace (forces `sampled`).
    pub debug: bool,
}

impl SpanContext {
    /// Whether spans of this trace are recorded.
    pub fn recorded(&self) -> bool {
        self.sampled || self.debug
    }

    /// A new span of the same trace whose parent is this one.
    pub fn child(&self) -> SpanContext {
        SpanContext {
            ids: TraceIds {
                parent_id: Some(self.ids.span_id),
                span_id: random_id(),
                ..self.ids
            },
            ..*self
        }
    }

    /// The span a server opens for a request that carried `incoming`: a child of the
    /// caller's span (or the root of a new trace), recorded when the trace is debug, else
    /// as `l5d-sample` says when given, else as the caller decided, else with
    /// probability `rate`.
    pub fn for_request(incoming: Propagated, sample_override: Option<f64>, rate: f64) -> Self {
        let ids = match incoming.ids {
            Some(caller) => TraceIds {
                parent_id: Some(caller.span_id),
                span_id: random_id(),
                ..caller
            },
            None => {
                let id = random_id();
                TraceIds {
                    trace_id_high: 0,
                    trace_id: id,
                    span_id: id,
                    parent_id: None,
                }
            }
        };
        let sampled = match (sample_override, incoming.sampled) {
            (Some(r), _) => uniform() < r,
            (None, Some(decided)) => decided,
            (None, None) => uniform() < rate,
        };
        SpanContext {
            ids,
            sampled: sampled || incoming.debug,
            debug: incoming.debug,
        }
    }
}

/// Why a trace context header was not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    /// Not base64.
    #[error("l5d-ctx-trace is not base64")]
    Base64,
    /// Decoded to a length Finagle never writes.
    #[error("l5d-ctx-trace has {0} bytes; expected 32 or 40")]
    Length(usize),
    /// An id that is required is zero.
    #[error("{0} has a zero id")]
    ZeroId(&'static str),
    /// A B3 value that does not parse.
    #[error("{header}: {why}")]
    B3 {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Reads an `l5d-sample` value: a float, clamped to 0..1; `None` if it is not a number.
pub fn parse_sample_rate(value: &[u8]) -> Option<f64> {
    let r: f64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    (!r.is_nan()).then(|| r.clamp(0.0, 1.0))
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A different seed per thread and process (std's hasher keys are random).
fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1
}

/// The next output of this thread's xorshift64* generator. Its state is never zero and
/// the multiplier is odd, so neither is its output: every id it makes is valid.
fn next() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A random non-zero id for a span or a trace.
pub fn random_id() -> u64 {
    next()
}

/// A uniform number in `[0, 1)`.
pub fn uniform() -> f64 {
    (next() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> TraceIds {
        TraceIds {
            trace_id_high: 7,
            trace_id: 1,
            span_id: 2,
            parent_id: Some(3),
        }
    }

    #[test]
    fn a_server_span_is_a_child_of_the_caller_and_keeps_the_trace() {
        let ctx = SpanContext::for_request(
            Propagated {
                ids: Some(caller()),
                sampled: Some(true),
                debug: false,
            },
            None,
            0.0,
        );
        assert_eq!(
            (ctx.ids.trace_id_high, ctx.ids.trace_id, ctx.ids.parent_id),
            (7, 1, Some(2))
        );
        assert!(ctx.ids.span_id != 2 && ctx.ids.span_id != 0);
        assert!(ctx.recorded());
        let child = ctx.child();
        assert_eq!(child.ids.parent_id, Some(ctx.ids.span_id));
        assert_eq!(child.ids.trace_id, 1);
        assert!(child.sampled);
    }

    #[test]
    fn a_request_without_context_starts_a_root_span() {
        let ctx = SpanContext::for_request(Propagated::default(), None, 1.0);
        assert_eq!(ctx.ids.parent_id, None);
        assert_eq!(ctx.ids.trace_id, ctx.ids.span_id);
        assert!(ctx.sampled);
        assert_eq!(ctx.ids.trace_id_hex().len(), 16);
        let never = SpanContext::for_request(Propagated::default(), None, 0.0);
        assert!(!never.recorded());
    }

    #[test]
    fn the_decision_comes_from_debug_then_l5d_sample_then_the_caller_then_the_rate() {
        let decided = |sampled, debug, over, rate| {
            SpanContext::for_request(
                Propagated {
                    ids: None,
                    sampled,
                    debug,
                },
                over,
                rate,
            )
            .recorded()
        };
        assert!(decided(Some(false), true, Some(0.0), 0.0), "debug wins");
        assert!(
            decided(Some(false), false, Some(1.0), 0.0),
            "l5d-sample overrides"
        );
        assert!(
            !decided(Some(true), false, Some(0.0), 1.0),
            "l5d-sample overrides"
        );
        assert!(
            !decided(Some(false), false, None, 1.0),
            "the caller's decision"
        );
        assert!(
            decided(Some(true), false, None, 0.0),
            "the caller's decision"
        );
        assert!(decided(None, false, None, 1.0) && !decided(None, false, None, 0.0));
    }

    #[test]
    fn l5d_sample_values_are_clamped_and_garbage_is_ignored() {
        assert_eq!(parse_sample_rate(b"0.25"), Some(0.25));
        assert_eq!(parse_sample_rate(b" 1.0 "), Some(1.0));
        assert_eq!(parse_sample_rate(b"7"), Some(1.0));
        assert_eq!(parse_sample_rate(b"-1"), Some(0.0));
        assert_eq!(parse_sample_rate(b"NaN"), None);
        assert_eq!(parse_sample_rate(b"yes"), None);
        assert_eq!(parse_sample_rate(&[0xff, 0xfe]), None);
    }

    #[test]
    fn readings_combine_in_precedence_order() {
        let b3 = Propagated {
            ids: None,
            sampled: Some(false),
            debug: false,
        };
        let l5d = Propagated {
            ids: Some(caller()),
            sampled: Some(true),
            debug: false,
        };
        let both = b3.or(l5d);
        assert_eq!((both.ids, both.sampled), (Some(caller()), Some(false)));
    }

    #[test]
    fn ids_are_never_zero_and_uniform_stays_in_range() {
        for _ in 0..10_000 {
            assert_ne!(random_id(), 0);
            let u = uniform();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
