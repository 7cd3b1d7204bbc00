//! `Dtab::read` and `Dentry::read` on arbitrary text: never panic; whatever parses shows
//! in a form that reads back, and that form is a fixpoint of show-then-read. Looking up
//! a path built from each entry's prefix must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::naming::{Dentry, Dtab, Path, PrefixElem};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match Dentry::read(input) {
        Ok(dentry) => {
            let s1 = dentry.show();
            let d2 = Dentry::read(&s1)
                .unwrap_or_else(|e| panic!("{s1:?} (from {input:?}) does not read back: {e}"));
            let s2 = d2.show();
            let d3 = Dentry::read(&s2)
                .unwrap_or_else(|e| panic!("{s2:?} (from {input:?}) does not read back: {e}"));
            assert_eq!(d3, d2, "{input:?}: {s1:?} -> {s2:?}");
            assert_eq!(d3.show(), s2);
        }
        Err(e) => assert!(e.offset() <= input.chars().count(), "{input:?}: {e:?}"),
    }
    let dtab = match Dtab::read(input) {
        Ok(dtab) => dtab,
        Err(e) => {
            assert!(e.offset() <= input.chars().count(), "{input:?}: {e:?}");
            return;
        }
    };
    let s1 = dtab.show();
    let d2 = Dtab::read(&s1)
        .unwrap_or_else(|e| panic!("{s1:?} (from {input:?}) does not read back: {e}"));
    assert_eq!(d2.len(), dtab.len());
    let s2 = d2.show();
    let d3 = Dtab::read(&s2)
        .unwrap_or_else(|e| panic!("{s2:?} (from {input:?}) does not read back: {e}"));
    assert_eq!(d3, d2, "{input:?}: {s1:?} -> {s2:?}");
    assert_eq!(d3.show(), s2);

    for entry in dtab.entries().iter().take(8) {
        let elems: Vec<&[u8]> = entry
            .prefix
            .elems()
            .iter()
            .map(|e| match e {
                PrefixElem::Label(l) => &l[..],
                PrefixElem::Any => b"any",
            })
            .chain([&b"rest"[..]])
            .collect();
        let path = Path::from_elems(elems);
        assert!(entry.prefix.matches(&path));
        let _ = dtab.lookup(&path).show();
    }
});
