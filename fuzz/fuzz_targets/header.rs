//! Arbitrary bytes as `l5d-dtab` / `l5d-ctx-dtab` header values for `local_dtab`: never
//! panics; a failure is a 400 whose offset points into a value; a success shows in a form
//! that reads back, and the `l5d-ctx-dtab` value forwarded downstream is accepted there.
//!
//! Input layout: the first byte picks each header's name (bit i for value i), the rest is
//! split on NUL bytes into at most eight values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::naming::{CTX_DTAB_HEADER, DTAB_HEADER, Dtab, ctx_dtab_value, local_dtab};

fuzz_target!(|data: &[u8]| {
    let Some((&names, rest)) = data.split_first() else {
        return;
    };
    let headers: Vec<(&str, &[u8])> = rest
        .split(|&b| b == 0)
        .take(8)
        .enumerate()
        .map(|(i, value)| {
            let name = match (names >> i & 1, i % 3) {
                (1, 0) => "L5D-CTX-DTAB",
                (1, _) => CTX_DTAB_HEADER,
                (0, 2) => "L5d-Dtab",
                _ => DTAB_HEADER,
            };
            (name, value)
        })
        .collect();
    let longest = headers.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let local = match local_dtab(headers.iter().copied()) {
        Ok(local) => local,
        Err(e) => {
            assert_eq!(e.status(), 400);
            // Values are read as ISO-8859-1: one char per byte.
            assert!(e.error.offset() <= longest, "{e:?}");
            return;
        }
    };
    let Some(forwarded) = ctx_dtab_value(&local) else {
        assert!(local.is_empty());
        return;
    };
    // The next hop reads what this hop forwards.
    let next = local_dtab([(CTX_DTAB_HEADER, forwarded.as_bytes())])
        .unwrap_or_else(|e| panic!("forwarded l5d-ctx-dtab {forwarded:?} is rejected: {e}"));
    assert_eq!(next.len(), local.len());
    let s2 = next.show();
    let again = Dtab::read(&s2).unwrap_or_else(|e| panic!("{s2:?} does not read back: {e}"));
    assert_eq!(again, next, "{forwarded:?} -> {s2:?}");
    assert_eq!(again.show(), s2);
});
