//! Arbitrary bytes as trace context header values (`l5d-ctx-trace`, `b3`): never
//! panics; what reads as a span context is written back by Plexus in a form that reads
//! back to the same ids and decision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::telemetry::trace::context::{Propagated, SpanContext};
use plexus::telemetry::trace::{b3, l5d};

fn writes_back(p: Propagated) {
    let Some(ids) = p.ids else {
        return;
    };
    let ctx = SpanContext {
        ids,
        sampled: p.sampled.unwrap_or(false),
        debug: p.debug,
    };
    let again = l5d::decode(l5d::encode(&ctx).as_bytes())
        .unwrap_or_else(|e| panic!("{ctx:?} does not read back: {e}"));
    assert_eq!(again.ids, Some(ids));
    assert_eq!(again.sampled, Some(ctx.sampled));
    assert_eq!(again.debug, ctx.debug);
    assert_eq!(l5d::header_value(&ctx), l5d::encode(&ctx).as_str());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = l5d::decode(data) {
        writes_back(p);
    }
    if let Ok(p) = l5d::deserialize(data) {
        writes_back(p);
    }
    if let Ok(p) = b3::decode_single(data) {
        writes_back(p);
    }
});
