//! `Path::read` and `Prefix::read` on arbitrary text: never panic; whatever parses shows
//! in a form that reads back to the same value and shows the same again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::naming::{Path, Prefix};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match Path::read(input) {
        Ok(path) => {
            let shown = path.show();
            let back = Path::read(&shown)
                .unwrap_or_else(|e| panic!("{shown:?} (from {input:?}) does not read back: {e}"));
            assert_eq!(back, path, "{input:?} shown as {shown:?}");
            assert_eq!(back.show(), shown);
            // A path is also a prefix without wildcards.
            let prefix = Prefix::read(&shown).expect("a shown path is a prefix");
            assert_eq!(prefix, Prefix::from(&path));
            assert!(prefix.matches(&path));
        }
        Err(e) => assert!(e.offset() <= input.chars().count(), "{input:?}: {e:?}"),
    }
    match Prefix::read(input) {
        Ok(prefix) => {
            let shown = prefix.show();
            let back = Prefix::read(&shown)
                .unwrap_or_else(|e| panic!("{shown:?} (from {input:?}) does not read back: {e}"));
            assert_eq!(back, prefix, "{input:?} shown as {shown:?}");
            assert_eq!(back.show(), shown);
        }
        Err(e) => assert!(e.offset() <= input.chars().count(), "{input:?}: {e:?}"),
    }
});
