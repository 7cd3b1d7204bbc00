//! `read_tree` on arbitrary text: never panics; whatever parses shows in a form that reads
//! back, and that form is a fixpoint of show-then-read. `simplified` is idempotent and
//! keeps what `eval` finds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::naming::read_tree;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let tree = match read_tree(input) {
        Ok(tree) => tree,
        Err(e) => {
            assert!(e.offset() <= input.chars().count(), "{input:?}: {e:?}");
            return;
        }
    };
    // The first show may round weights (`0.999` prints as `1.00`, which then prints as
    // nothing); from the second show on, the text must be stable.
    let s1 = tree.show();
    let t2 = read_tree(&s1)
        .unwrap_or_else(|e| panic!("{s1:?} (from {input:?}) does not read back: {e}"));
    let s2 = t2.show();
    let t3 = read_tree(&s2)
        .unwrap_or_else(|e| panic!("{s2:?} (from {input:?}) does not read back: {e}"));
    assert_eq!(t3, t2, "{input:?}: {s1:?} -> {s2:?}");
    assert_eq!(t3.show(), s2, "{input:?}: {s1:?} -> {s2:?}");

    let simple = tree.simplified();
    assert_eq!(simple.simplified(), simple, "{input:?}");
    assert_eq!(simple.eval(), tree.eval(), "{input:?}");
});
