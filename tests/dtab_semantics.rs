//! Independent conformance tests for `plexus::naming` against the naming-semantics
//! reference shared with the project, `dtab-semantics.md` ("the spec").
//!
//! Test names starting with `rule_NN_` check item NN of the spec's section 10
//! ("Things an implementer is likely to get wrong"); the others check the concrete
//! examples of sections 1-9 (the section is named in each test).
//!
//! Expected values are derived from the spec (and, for parse-error texts, from
//! Finagle's `NameTreeParsers` error format described in section 1), never from the
//! implementation's output.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use plexus::naming::{
    Activity, Addr, Address, Bound, DelegateTree, Dentry, Dtab, Name, NameTree, Namer, Namers,
    NamingError, Path, Prefix, StaticNamer, SystemNamer, Weighted, choose, ctx_dtab_value,
    local_dtab, read_tree, shares,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn p(s: &str) -> Path {
    Path::read(s).unwrap_or_else(|e| panic!("Path::read({s:?}) failed: {e}"))
}

fn t(s: &str) -> NameTree<Path> {
    read_tree(s).unwrap_or_else(|e| panic!("read_tree({s:?}) failed: {e}"))
}

fn d(s: &str) -> Dtab {
    Dtab::read(s).unwrap_or_else(|e| panic!("Dtab::read({s:?}) failed: {e}"))
}

fn pfx(s: &str) -> Prefix {
    Prefix::read(s).unwrap_or_else(|e| panic!("Prefix::read({s:?}) failed: {e}"))
}

fn leaf(s: &str) -> NameTree<Path> {
    NameTree::Leaf(p(s))
}

fn alt<T>(v: Vec<NameTree<T>>) -> NameTree<T> {
    NameTree::Alt(v)
}

fn union<T>(v: Vec<(f64, NameTree<T>)>) -> NameTree<T> {
    NameTree::Union(
        v.into_iter()
            .map(|(weight, tree)| Weighted { weight, tree })
            .collect(),
    )
}

fn path_err(s: &str) -> String {
    match Path::read(s) {
        Ok(x) => panic!("Path::read({s:?}) should fail, got {}", x.show()),
        Err(e) => e.to_string(),
    }
}

fn prefix_err(s: &str) -> String {
    match Prefix::read(s) {
        Ok(x) => panic!("Prefix::read({s:?}) should fail, got {}", x.show()),
        Err(e) => e.to_string(),
    }
}

fn tree_err(s: &str) -> String {
    match read_tree(s) {
        Ok(x) => panic!("read_tree({s:?}) should fail, got {}", x.show()),
        Err(e) => e.to_string(),
    }
}

fn dtab_err(s: &str) -> String {
    match Dtab::read(s) {
        Ok(x) => panic!("Dtab::read({s:?}) should fail, got {:?}", x.show()),
        Err(e) => e.to_string(),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A bound leaf for comparisons (bound names compare by id only).
fn bl(id: &str) -> NameTree<Bound> {
    NameTree::Leaf(Bound::new(p(id), Addr::Neg))
}

fn fs_services() -> BTreeMap<Path, Vec<Address>> {
    let mut s = BTreeMap::new();
    s.insert(p("/web"), vec![Address::new(sa("10.0.0.1:80"))]);
    s.insert(p("/api"), vec![Address::new(sa("10.0.0.2:80"))]);
    s.insert(p("/db"), vec![Address::new(sa("10.0.0.3:5432"))]);
    s.insert(p("/empty"), vec![]);
    s
}

/// The system namer plus a static "fs" namer at `/#/io.l5d.fs` serving
/// `web`, `api`, `db` and `empty` (no addresses).
fn namers() -> Namers {
    Namers::new(SystemNamer::default()).mount(
        p("/#/io.l5d.fs"),
        Arc::new(StaticNamer::new(p("/#/io.l5d.fs"), 1, fs_services())),
    )
}

fn bind(n: &Namers, dtab: &str, path: &str) -> Activity<NameTree<Bound>> {
    n.bind(&d(dtab), &p(path))
}

fn bind_ok(n: &Namers, dtab: &str, path: &str) -> NameTree<Bound> {
    match bind(n, dtab, path) {
        Activity::Ok(tree) => tree,
        other => panic!("bind({dtab:?}, {path:?}) should succeed, got {other:?}"),
    }
}

fn bind_failure(n: &Namers, dtab: &str, path: &str) -> String {
    match bind(n, dtab, path) {
        Activity::Failed(e) => e.to_string(),
        other => panic!("bind({dtab:?}, {path:?}) should fail, got {other:?}"),
    }
}

fn the_leaf(tree: &NameTree<Bound>) -> &Bound {
    match tree {
        NameTree::Leaf(b) => b,
        other => panic!("expected a bound leaf, got {other:?}"),
    }
}

fn delegate_json(n: &Namers, dtab: &str, path: &str) -> Value {
    match n.delegate(&d(dtab), &p(path)) {
        Ok(tree) => tree.to_json(),
        Err(e) => panic!("delegate({dtab:?}, {path:?}) failed: {e}"),
    }
}

fn fs_bound(id: &str, ip: &str, port: u16, residual: &str) -> Value {
    json!({
        "addr": {"type": "bound", "addrs": [{"ip": ip, "port": port, "meta": {}}], "meta": {}},
        "id": id,
        "path": residual,
    })
}

fn web_bound() -> Value {
    fs_bound("/#/io.l5d.fs/web", "10.0.0.1", 80, "/")
}

fn api_bound() -> Value {
    fs_bound("/#/io.l5d.fs/api", "10.0.0.2", 80, "/")
}

fn sys(path: &str) -> Activity<NameTree<Name>> {
    SystemNamer::default().lookup(&p(path))
}

fn assert_rewrites(path: &str, to: &str) {
    assert_eq!(
        sys(path),
        Activity::Ok(NameTree::Leaf(Name::Path(p(to)))),
        "system namer lookup of {path}"
    );
}

fn assert_sys_neg(path: &str) {
    assert_eq!(
        sys(path),
        Activity::Ok(NameTree::Neg),
        "system namer lookup of {path}"
    );
}

fn assert_shares(actual: Vec<(Path, f64)>, expected: &[(&str, f64)]) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "shares {actual:?} vs expected {expected:?}"
    );
    for ((id, share), (eid, eshare)) in actual.iter().zip(expected) {
        assert_eq!(
            id.show(),
            *eid,
            "shares {actual:?} vs expected {expected:?}"
        );
        assert!(
            (share - eshare).abs() < 1e-9,
            "share of {eid}: {share} != {eshare} (all: {actual:?})"
        );
    }
}

/// A namer that fails every lookup.
struct FailingNamer(&'static str);
impl Namer for FailingNamer {
    fn lookup(&self, _path: &Path) -> Activity<NameTree<Name>> {
        Activity::Failed(NamingError::Failed(self.0.to_string()))
    }
}

/// A namer mounted at `/#/rec` that records what it is asked; binds `/<svc>/...` when
/// `<svc>` is in `known` (id `/#/rec/<svc>`), otherwise answers `Neg`.
struct RecordingNamer {
    known: Vec<&'static str>,
    seen: Mutex<Vec<String>>,
}
impl RecordingNamer {
    fn new(known: Vec<&'static str>) -> Arc<Self> {
        Arc::new(RecordingNamer {
            known,
            seen: Mutex::new(Vec::new()),
        })
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}
impl Namer for RecordingNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        self.seen.lock().unwrap().push(path.show());
        let first = path.take(1);
        if !path.is_empty() && self.known.iter().any(|k| Path::from_strs([*k]) == first) {
            Activity::Ok(NameTree::Leaf(Name::Bound(Bound {
                id: p("/#/rec").concat(&first),
                residual: path.drop(1),
                addr: Addr::Bound(vec![]),
            })))
        } else {
            Activity::Ok(NameTree::Neg)
        }
    }
}

/// `n` chained dentries `/p0=>/p1; ...; /p{n-1}=>end`.
fn chain(n: usize, end: &str) -> String {
    (0..n)
        .map(|i| {
            if i + 1 == n {
                format!("/p{i}=>{end}")
            } else {
                format!("/p{i}=>/p{}", i + 1)
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

// =======================================================================================
// Section 10, rule 1: '#' is both a label character and the comment introducer.
// =======================================================================================

#[test]
fn rule_01_hash_is_label_char_and_comment() {
    // Inside a label '#' is an ordinary character.
    let x = p("/a#b");
    assert_eq!(x.len(), 1);
    assert_eq!(&*x.elems()[0], b"a#b");
    assert_eq!(x.show(), "/a#b");
    // After whitespace it starts a comment.
    assert_eq!(p("/a #b"), Path::from_strs(["a"]));
    assert_eq!(p("# c\n/foo"), Path::from_strs(["foo"]));
    assert_eq!(p("/foo #c"), Path::from_strs(["foo"]));
    // The comment swallows the rest of the line, including later dentries.
    let one = d("/a=>/b;#/c=>/d");
    assert_eq!(one.len(), 1);
    assert_eq!(one.show(), "/a=>/b");
    // ...but only up to (and including) the newline.
    let two = d("/a=>/b;#/x=>/y\n/c=>/d");
    assert_eq!(two.len(), 2);
    assert_eq!(two.show(), "/a=>/b;/c=>/d");
    assert_eq!(d("/a=>/b #c\n;/c=>/d").show(), "/a=>/b;/c=>/d");
    // '#' inside a prefix label.
    assert_eq!(d("/a#b=>/c").show(), "/a#b=>/c");
    assert_eq!(
        dtab_err("/a #b=>/c"),
        "'=' expected but end of input found at '/a #b=>/c[]'"
    );
    // In trees.
    assert_eq!(t("/a#x | /b"), alt(vec![leaf("/a#x"), leaf("/b")]));
    assert_eq!(t("/a #| /b"), leaf("/a"));
    assert_eq!(t("/a #c\n| /b"), alt(vec![leaf("/a"), leaf("/b")]));
    assert_eq!(
        tree_err("/a=>/b"),
        "end of input expected but '=' found at '/a[=]>/b'"
    );
    // A tree that is only a comment fails with "end of input".
    assert_eq!(
        tree_err("#"),
        "simple expected but end of input found at '#[]'"
    );
    // Comment-only dtabs are empty.
    assert_eq!(d("# nothing here").len(), 0);
    assert_eq!(d("#a\n#b\n").len(), 0);
    // A comment can not sit between '=' and '>'.
    assert_eq!(
        dtab_err("/a=#\n>/b"),
        "'>' expected but '#' found at '/a=[#]\n>/b'"
    );
}

// =======================================================================================
// Rule 2: whitespace is Java's Character.isWhitespace.
// =======================================================================================

#[test]
fn rule_02_whitespace_is_java_not_unicode() {
    let java_ws = [
        ' ', '\t', '\n', '\u{0B}', '\u{0C}', '\r', '\u{1C}', '\u{1D}', '\u{1E}', '\u{1F}',
        '\u{2003}', '\u{2028}', '\u{2029}', '\u{3000}', '\u{1680}',
    ];
    for ws in java_ws {
        let s = format!("{ws}/a{ws}");
        assert_eq!(
            Path::read(&s).map(|x| x.show()).ok(),
            Some("/a".to_string()),
            "U+{:04X} must be whitespace",
            ws as u32
        );
        let s = format!("{ws}/a{ws}=>{ws}/b{ws};{ws}/c=>/d{ws}");
        assert_eq!(
            Dtab::read(&s).map(|x| x.show()).ok(),
            Some("/a=>/b;/c=>/d".to_string()),
            "U+{:04X} must be whitespace in a dtab",
            ws as u32
        );
        let s = format!("{ws}/a{ws}|{ws}0.5{ws}*{ws}/b{ws}&{ws}/c{ws}");
        assert_eq!(
            read_tree(&s).ok(),
            Some(alt(vec![
                leaf("/a"),
                union(vec![(0.5, leaf("/b")), (1.0, leaf("/c"))])
            ])),
            "U+{:04X} must be whitespace in a tree",
            ws as u32
        );
    }
    // Rust's char::is_whitespace says yes to these; Java says no.
    let not_ws = [
        '\u{A0}', '\u{2007}', '\u{202F}', '\u{85}', '\u{FEFF}', '\u{200B}', '\u{180E}',
    ];
    for c in not_ws {
        assert_eq!(
            path_err(&format!("{c}/a")),
            format!("'/' expected but '{c}' found at '[{c}]/a'"),
            "U+{:04X} is not whitespace",
            c as u32
        );
        assert_eq!(
            path_err(&format!("/a{c}")),
            format!("end of input expected but '{c}' found at '/a[{c}]'"),
            "U+{:04X} is not whitespace",
            c as u32
        );
        assert_eq!(
            dtab_err(&format!("/a=>/b;{c}/c=>/d")),
            format!("'/' expected but '{c}' found at '/a=>/b;[{c}]/c=>/d'"),
            "U+{:04X} is not whitespace",
            c as u32
        );
    }
}

// =======================================================================================
// Rule 3: show escapes the whole element, lowercase \xNN.
// =======================================================================================

#[test]
fn rule_03_show_escapes_whole_element_lowercase() {
    assert_eq!(
        Path::from_elems([b"foo bar".to_vec()]).show(),
        "/\\x66\\x6f\\x6f\\x20\\x62\\x61\\x72"
    );
    assert_eq!(Path::from_strs(["é"]).show(), "/\\xc3\\xa9");
    assert_eq!(p("/\\x41"), Path::from_strs(["A"]));
    assert_eq!(p("/\\x41").show(), "/A");
    assert_eq!(p("/\\xAb").elems()[0].as_ref(), &[0xabu8][..]);
    assert_eq!(p("/\\xAb").show(), "/\\xab");
    assert_eq!(p("/\\x66\\x6f\\x6F"), Path::from_strs(["foo"]));
    // Only the element with an unshowable byte is escaped, but all of it.
    let mixed = Path::from_elems([b"ok".to_vec(), b"a/b".to_vec(), b"x*".to_vec()]);
    assert_eq!(mixed.show(), "/ok/\\x61\\x2f\\x62/\\x78\\x2a");
    assert_eq!(p(&mixed.show()), mixed);
    // Any byte value, invalid UTF-8 included.
    let raw = p("/\\xff\\x00");
    assert_eq!(raw.elems()[0].as_ref(), &[0xffu8, 0x00][..]);
    assert_eq!(raw.show(), "/\\xff\\x00");
    // The showable set is printed verbatim.
    assert_eq!(Path::from_strs(["aZ09_:.#$%-"]).show(), "/aZ09_:.#$%-");
    assert_eq!(Path::from_strs(["a+b"]).show(), "/\\x61\\x2b\\x62");
    // Same rule inside trees, prefixes and dtabs.
    assert_eq!(t("/a\\x20b & /c").show(), "/\\x61\\x20\\x62 & /c");
    assert_eq!(d("/\\x2a=>/x\\x20").show(), "/\\x2a=>/\\x78\\x20");
}

// =======================================================================================
// Rule 4: '*' is a wildcard only as a whole prefix element; \x2a is a literal label.
// =======================================================================================

#[test]
fn rule_04_star_is_wildcard_only_as_whole_prefix_element() {
    let w = pfx("/*/b");
    assert_eq!(w.show(), "/*/b");
    assert!(w.matches(&p("/x/b")));
    assert!(w.matches(&p("/x/b/c")));
    assert!(!w.matches(&p("/x/c")));
    assert!(!w.matches(&p("/x")));

    let lit = pfx("/\\x2a");
    assert_eq!(lit.show(), "/\\x2a");
    assert!(lit.matches(&Path::from_strs(["*"])));
    assert!(!lit.matches(&p("/x")));

    assert_eq!(
        prefix_err("/a*"),
        "end of input expected but '*' found at '/a[*]'"
    );
    assert_eq!(
        prefix_err("/*b"),
        "end of input expected but 'b' found at '/*[b]'"
    );
    assert_eq!(
        prefix_err("/a/**"),
        "end of input expected but '*' found at '/a/*[*]'"
    );
    assert_eq!(
        dtab_err("/a*=>/b"),
        "'=' expected but '*' found at '/a[*]=>/b'"
    );
    // Paths never accept '*'.
    assert_eq!(
        path_err("/*"),
        "end of input expected but '*' found at '/[*]'"
    );
    assert_eq!(
        dtab_err("/a=>/*"),
        "end of input expected but '*' found at '/a=>/[*]'"
    );

    // Lookups.
    assert_eq!(d("/*/b=>/z").lookup(&p("/x/b/c")), leaf("/z/c"));
    assert_eq!(d("/*/b=>/z").lookup(&p("/x/c")), NameTree::Neg);
    assert_eq!(d("/a/*=>/z").lookup(&p("/a")), NameTree::Neg);
    assert_eq!(d("/\\x2a/b=>/z").lookup(&p("/x/b")), NameTree::Neg);
    assert_eq!(
        d("/\\x2a/b=>/z").lookup(&Path::from_strs(["*", "b", "q"])),
        leaf("/z/q")
    );
    assert_eq!(d("/\\x2a/b=>/z").show(), "/\\x2a/b=>/z");
}

// =======================================================================================
// Rule 5: '=>' has no inner whitespace; newline is not a separator; trailing ';' ok,
// ';;' not.
// =======================================================================================

#[test]
fn rule_05_arrow_and_separators() {
    assert_eq!(
        dtab_err("/a = > /b"),
        "'>' expected but ' ' found at '/a =[ ]> /b'"
    );
    assert_eq!(
        dtab_err("/a=\n>/b"),
        "'>' expected but '\n' found at '/a=[\n]>/b'"
    );
    assert_eq!(
        dtab_err("/a->/b"),
        "'=' expected but '>' found at '/a-[>]/b'"
    );
    assert_eq!(d("/a  =>  /b").show(), "/a=>/b");
    assert_eq!(
        dtab_err("/a=>/b\n/c=>/d"),
        "end of input expected but '/' found at '/a=>/b\n[/]c=>/d'"
    );
    assert_eq!(
        dtab_err("/a=>/b,/c=>/d"),
        "end of input expected but ',' found at '/a=>/b[,]/c=>/d'"
    );
    assert_eq!(d("/a=>/b;").len(), 1);
    assert_eq!(d("/a=>/b;").show(), "/a=>/b");
    assert_eq!(d("/a=>/b ;  \n").len(), 1);
    assert_eq!(
        dtab_err("/a=>/b;;"),
        "'/' expected but ';' found at '/a=>/b;[;]'"
    );
    assert_eq!(
        dtab_err("/a=>/b; ;/c=>/d"),
        "'/' expected but ';' found at '/a=>/b; [;]/c=>/d'"
    );
    assert_eq!(dtab_err(";"), "'/' expected but ';' found at '[;]'");
    assert_eq!(dtab_err(";;"), "'/' expected but ';' found at '[;];'");
    assert_eq!(
        dtab_err(";/a=>/b"),
        "'/' expected but ';' found at '[;]/a=>/b'"
    );
    assert_eq!(
        dtab_err("/a=>"),
        "simple expected but end of input found at '/a=>[]'"
    );
    // Empty, whitespace-only and comment-only input: the empty dtab.
    for s in ["", "   ", "\n\t ", "# c", "  # c\n  "] {
        let x = d(s);
        assert_eq!(x.len(), 0, "{s:?}");
        assert_eq!(x.show(), "", "{s:?}");
    }
    assert_eq!(d(" /a => /b ; /c => /d ; ").show(), "/a=>/b;/c=>/d");
}

// =======================================================================================
// Rule 6: weights.
// =======================================================================================

#[test]
fn rule_06_single_operand_weight_dropped_at_parse() {
    assert_eq!(t("0.5 * /a"), leaf("/a"));
    assert_eq!(t("(0.5*/a)"), leaf("/a"));
    assert_eq!(t("0.5*/a | /b"), alt(vec![leaf("/a"), leaf("/b")]));
    assert_eq!(
        t("0.5*/a & /b"),
        union(vec![(0.5, leaf("/a")), (1.0, leaf("/b"))])
    );
    assert_eq!(
        t("5.*/a & .5*/b & 007*/c"),
        union(vec![
            (5.0, leaf("/a")),
            (0.5, leaf("/b")),
            (7.0, leaf("/c"))
        ])
    );
    // "after a weight and after its `*`" whitespace and comments are skipped.
    assert_eq!(
        t("0.5 # w\n * # s\n /a & /b"),
        union(vec![(0.5, leaf("/a")), (1.0, leaf("/b"))])
    );
}

#[test]
fn rule_06_weight_one_never_printed_and_percent_2f_half_up() {
    assert_eq!(t("1*/a & 1.0*/b & 1.00*/c").show(), "/a & /b & /c");
    assert_eq!(t("1.00*/a & 2*/b").show(), "/a & 2.00*/b");
    assert_eq!(d("/t=>0.3*/x&0.7*/y").show(), "/t=>0.30*/x & 0.70*/y");
    assert_eq!(d("/a=>0.125*/b & 0.875*/c").show(), "/a=>0.13*/b & 0.88*/c");
    let weights = [0.3, 0.125, 0.875, 0.005, 2.0, 0.0, 1e20, 1.0];
    let names = ["/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h"];
    let u = union(
        weights
            .iter()
            .copied()
            .zip(names.iter().map(|n| leaf(n)))
            .collect(),
    );
    assert_eq!(
        u.show(),
        "0.30*/a & 0.13*/b & 0.88*/c & 0.01*/d & 2.00*/e & 0.00*/f & \
         100000000000000000000.00*/g & /h"
    );
    assert_eq!(
        t("100000000000000000000*/a & /b").show(),
        "100000000000000000000.00*/a & /b"
    );
    // A single-child union hides its weight.
    assert_eq!(union(vec![(0.5, leaf("/a"))]).show(), "/a");
}

#[test]
fn rule_06_show_read_round_trip_rounds_weights() {
    let x = t("0.333*/a & 0.6666*/b");
    assert_eq!(x.show(), "0.33*/a & 0.67*/b");
    let back = t(&x.show());
    assert_eq!(back, union(vec![(0.33, leaf("/a")), (0.67, leaf("/b"))]));
    assert_ne!(back, x);
    // Weights with at most two decimals do round-trip.
    let y = t("0.25*/a & 0.75*(/b | ~ | !) & $");
    assert_eq!(t(&y.show()), y);
}

#[test]
fn rule_06_weight_syntax_errors() {
    assert_eq!(
        tree_err("1e3 * /a"),
        "'*' expected but 'e' found at '1[e]3 * /a'"
    );
    assert_eq!(
        tree_err("-1*/a"),
        "simple expected but '-' found at '[-]1*/a'"
    );
    assert_eq!(
        tree_err("1.2.3*/a"),
        "number char expected but '.' found at '1.2[.]3*/a'"
    );
    // Quirk: the marker of a lone '.' weight points one character past the '.'.
    assert_eq!(
        tree_err(".*/a"),
        "weight expected but '.' found at '.[*]/a'"
    );
    assert_eq!(tree_err("."), "weight expected but '.' found at '.[]'");
    assert_eq!(
        tree_err("0.5 * 0.5 * /a"),
        "simple expected but '0' found at '0.5 * [0].5 * /a'"
    );
    // Unicode digits are not weights (section 4: "treat the number as ASCII only").
    assert!(read_tree("\u{0661}*/a").is_err());
    assert!(read_tree("1\u{0661}*/a & /b").is_err());
}

/// Section 4 says `W` is Java's `"%.2f"`. Its parenthetical "HALF_UP applied to the exact
/// binary value" is contradicted by the JVM itself: `String.format("%.2f", x)` rounds the
/// shortest decimal representation HALF_UP (checked with `java` 17 while writing this
/// test: 1.005 -> 1.01, 0.015 -> 0.02, 2.675 -> 2.68, 0.045 -> 0.05, 0.995 -> 1.00).
/// The reference behaviour is Finagle on a JVM, so the JVM output is expected here.
#[test]
fn rule_06_weight_format_matches_java_percent_2f_on_ties() {
    let weights = [1.005, 0.015, 2.675, 0.045, 0.995];
    let names = ["/a", "/b", "/c", "/d", "/e"];
    let u = union(
        weights
            .iter()
            .copied()
            .zip(names.iter().map(|n| leaf(n)))
            .collect(),
    );
    assert_eq!(u.show(), "1.01*/a & 0.02*/b & 2.68*/c & 0.05*/d & 1.00*/e");
}

// =======================================================================================
// Rule 7: lookup returns all matches, last first, as one Alt.
// =======================================================================================

#[test]
fn rule_07_lookup_returns_all_matches_last_first() {
    let x = d("/a=>/b|/c;/a=>/d|/e").lookup(&p("/a"));
    assert_eq!(
        x,
        alt(vec![
            alt(vec![leaf("/d"), leaf("/e")]),
            alt(vec![leaf("/b"), leaf("/c")])
        ])
    );
    assert_eq!(x.show(), "(/d | /e) | (/b | /c)");

    // Positional, not longest-prefix.
    let y = d("/a/c=>/d;/a=>/b").lookup(&p("/a/c"));
    assert_eq!(y, alt(vec![leaf("/b/c"), leaf("/d")]));
    assert_eq!(y.show(), "/b/c | /d");
    // ... and the other order.
    assert_eq!(
        d("/a=>/b;/a/c=>/d").lookup(&p("/a/c")),
        alt(vec![leaf("/d"), leaf("/b/c")])
    );

    assert_eq!(
        d("/a=>/b;/a=>~").lookup(&p("/a")),
        alt(vec![NameTree::Neg, leaf("/b")])
    );
    assert_eq!(d("/a=>/b;/a=>~").lookup(&p("/a")).show(), "~ | /b");
    assert_eq!(d("/a=>/b;/a=>!").lookup(&p("/a")).show(), "! | /b");
    assert_eq!(
        d("/a=>/1;/b=>/2;/a=>/3;/=>/4").lookup(&p("/a/q")),
        alt(vec![leaf("/4/a/q"), leaf("/3/q"), leaf("/1/q")])
    );
    assert_eq!(
        d("/a=>/b;/a=>/b").lookup(&p("/a")),
        alt(vec![leaf("/b"), leaf("/b")])
    );
    let cat = d("/a=>/1").concat(&d("/a=>/2"));
    assert_eq!(cat.show(), "/a=>/1;/a=>/2");
    assert_eq!(cat.lookup(&p("/a")), alt(vec![leaf("/2"), leaf("/1")]));
}

#[test]
fn section_5_lookup_single_match_unwrapped_and_residual_appended() {
    // Exactly one match: the mapped tree itself, so a lone `~` is exactly Neg.
    assert_eq!(d("/a=>~").lookup(&p("/a/b")), NameTree::Neg);
    assert_eq!(d("/a=>!").lookup(&p("/a")), NameTree::Fail);
    assert_eq!(d("/a=>$").lookup(&p("/a")), NameTree::Empty);
    assert_eq!(d("/a=>/b").lookup(&p("/x")), NameTree::Neg);
    assert_eq!(d("").lookup(&p("/x")), NameTree::Neg);
    assert_eq!(d("/a=>/b").lookup(&p("/a/x/y")), leaf("/b/x/y"));
    assert_eq!(d("/a/b=>/x").lookup(&p("/a")), NameTree::Neg);
    assert_eq!(d("/a=>/x").lookup(&p("/ab")), NameTree::Neg);
    assert_eq!(d("/=>/r").lookup(&p("/a/b")), leaf("/r/a/b"));
    assert_eq!(d("/a=>/r").lookup(&p("/a")), leaf("/r"));
    // The residual goes onto every leaf; no simplification.
    assert_eq!(
        d("/a=>/b & 0.5*/c | ~ | /$/nil | (! | $)").lookup(&p("/a/z")),
        alt(vec![
            union(vec![(1.0, leaf("/b/z")), (0.5, leaf("/c/z"))]),
            NameTree::Neg,
            leaf("/$/nil/z"),
            alt(vec![NameTree::Fail, NameTree::Empty]),
        ])
    );
}

// =======================================================================================
// Rule 8: simplification.
// =======================================================================================

#[test]
fn rule_08_alt_keeps_fail_and_truncates_union_drops_fail_and_neg() {
    assert_eq!(
        t("~ | $ | /blah").simplified(),
        alt(vec![NameTree::Empty, leaf("/blah")])
    );
    assert_eq!(t("~ | $ | /blah").simplified().show(), "$ | /blah");
    assert_eq!(
        t("/a | ! | /b").simplified(),
        alt(vec![leaf("/a"), NameTree::Fail])
    );
    assert_eq!(t("/a | ! | /b").simplified().show(), "/a | !");
    assert_eq!(t("! | /a").simplified(), NameTree::Fail);
    assert_eq!(t("~ | ! | /a").simplified(), NameTree::Fail);
    // A union of failures is Neg, so the enclosing Alt continues.
    assert_eq!(t("(! & !) | /a").simplified(), leaf("/a"));
    assert_eq!(t("! & !").simplified(), NameTree::Neg);
    assert_eq!(t("~ & !").simplified(), NameTree::Neg);
    assert_eq!(t("/a & !").simplified(), leaf("/a"));
    assert_eq!(
        t("2*/a & 3*~ & 4*! & 5*/b").simplified(),
        union(vec![(2.0, leaf("/a")), (5.0, leaf("/b"))])
    );
    // Empty is kept in unions; a single survivor loses its weight.
    assert_eq!(
        t("/a & 0.5*$").simplified(),
        union(vec![(1.0, leaf("/a")), (0.5, NameTree::Empty)])
    );
    assert_eq!(t("0.5*/a & 0.5*~").simplified(), leaf("/a"));
    assert_eq!(t("~ & 0.3*$").simplified(), NameTree::Empty);
    // An Alt that simplifies to Fail inside a union is dropped.
    assert_eq!(t("(! | /a) & /b").simplified(), leaf("/b"));
}

#[test]
fn section_4_simplified_examples() {
    assert_eq!(NameTree::<Path>::Alt(vec![]).simplified(), NameTree::Neg);
    assert_eq!(NameTree::<Path>::Union(vec![]).simplified(), NameTree::Neg);
    assert_eq!(alt(vec![leaf("/a")]).simplified(), leaf("/a"));
    assert_eq!(union(vec![(0.3, leaf("/a"))]).simplified(), leaf("/a"));
    assert_eq!(
        union(vec![(0.3, alt(vec![NameTree::Neg, leaf("/a")]))]).simplified(),
        leaf("/a")
    );
    // Nested Alts are not flattened.
    let nested = t("/a | (/b | /c)");
    assert_eq!(
        nested,
        alt(vec![leaf("/a"), alt(vec![leaf("/b"), leaf("/c")])])
    );
    assert_eq!(nested.simplified(), nested);
    assert_eq!(t("~ | (~ | /b)").simplified(), leaf("/b"));
    assert_eq!(t("~ | ~").simplified(), NameTree::Neg);
    assert_eq!(
        t("(/a & ~) | /b").simplified(),
        alt(vec![leaf("/a"), leaf("/b")])
    );
    for s in [NameTree::Neg, NameTree::Fail, NameTree::Empty, leaf("/x")] {
        assert_eq!(s.simplified(), s);
    }
    // Fixpoint.
    for s in [
        "~ | $ | /blah",
        "(! & !) | /a",
        "(~ | (/a & ~)) & 2*(/b | !) | /c",
        "/a | (/b | (~ | /c))",
    ] {
        let once = t(s).simplified();
        assert_eq!(once.simplified(), once, "{s}");
    }
}

#[test]
fn section_4_eval_examples() {
    let v = |xs: &[&str]| Some(xs.iter().map(|s| p(s)).collect::<Vec<_>>());
    assert_eq!(t("/a").eval(), v(&["/a"]));
    assert_eq!(t("/a | /b").eval(), v(&["/a"]));
    assert_eq!(t("~ | /b").eval(), v(&["/b"]));
    assert_eq!(t("! | /b").eval(), None);
    assert_eq!(t("~ | ! | /b").eval(), None);
    assert_eq!(t("(! | /a) | /b").eval(), None);
    assert_eq!(t("/a & /b & /a").eval(), v(&["/a", "/b"]));
    assert_eq!(t("/b & /a").eval(), v(&["/b", "/a"]));
    assert_eq!(t("/a & ~ & !").eval(), v(&["/a"]));
    assert_eq!(t("~ & !").eval(), None);
    assert_eq!(t("(~ & !) | /a").eval(), v(&["/a"]));
    assert_eq!(t("$").eval(), v(&[]));
    assert_eq!(t("$ | /a").eval(), v(&[]));
    assert_eq!(t("$ & /a").eval(), v(&["/a"]));
    assert_eq!(t("~").eval(), None);
    assert_eq!(t("!").eval(), None);
    assert_eq!(t("(/a | /b) & (~ | /c)").eval(), v(&["/a", "/c"]));
    assert_eq!(t("0.1*/a & 9*/b").eval(), v(&["/a", "/b"]));
    assert_eq!(NameTree::<Path>::Alt(vec![]).eval(), None);
    assert_eq!(NameTree::<Path>::Union(vec![]).eval(), None);
}

// =======================================================================================
// Rule 9: binding.
// =======================================================================================

#[test]
fn rule_09_single_neg_match_falls_back_to_namers() {
    let n = namers();
    let tree = bind_ok(&n, "/#/io.l5d.fs=>~", "/#/io.l5d.fs/web");
    assert_eq!(tree, bl("/#/io.l5d.fs/web"));
    let b = the_leaf(&tree);
    assert_eq!(b.residual, Path::empty());
    assert_eq!(b.addr, Addr::Bound(vec![Address::new(sa("10.0.0.1:80"))]));
}

#[test]
fn rule_09_two_neg_matches_do_not_fall_back() {
    let n = namers();
    assert_eq!(
        bind_ok(&n, "/#/io.l5d.fs=>~;/#/io.l5d.fs=>~", "/#/io.l5d.fs/web"),
        NameTree::Neg
    );
    // A single entry whose destination is `~ | ~` is not the Neg singleton either.
    assert_eq!(
        bind_ok(&n, "/#/io.l5d.fs=>~ | ~", "/#/io.l5d.fs/web"),
        NameTree::Neg
    );
}

#[test]
fn rule_09_exception_in_reached_alt_branch_fails_bind() {
    let n = namers();
    assert_eq!(
        bind_failure(&n, "/svc=>/$/x/y | /#/io.l5d.fs/web", "/svc"),
        "Unknown namer: x for path: /$/x/y"
    );
    // Not reached: the earlier branch is chosen, so the failing one is never looked up.
    assert_eq!(
        bind_ok(&n, "/svc=>/#/io.l5d.fs/web | /$/x/y", "/svc"),
        bl("/#/io.l5d.fs/web")
    );
    // Reached after a Neg branch.
    assert_eq!(
        bind_failure(
            &n,
            "/svc=>/#/io.l5d.fs/missing | /$/x/y | /#/io.l5d.fs/web",
            "/svc"
        ),
        "Unknown namer: x for path: /$/x/y"
    );
    // A failing configured namer behaves the same way.
    let n2 = namers().mount(p("/#/boom"), Arc::new(FailingNamer("boom!")));
    assert_eq!(
        bind_failure(&n2, "/svc=>/#/boom/x | /#/io.l5d.fs/web", "/svc"),
        "boom!"
    );
}

#[test]
fn rule_09_alt_branches_after_the_chosen_one_are_never_looked_up() {
    let rec = RecordingNamer::new(vec!["a", "b"]);
    let n = Namers::new(SystemNamer::default()).mount(p("/#/rec"), rec.clone());
    let tree = bind_ok(&n, "/svc=>/#/rec/zz | /#/rec/a/x | /#/rec/b", "/svc");
    assert_eq!(tree, bl("/#/rec/a"));
    assert_eq!(the_leaf(&tree).residual, p("/x"));
    assert_eq!(rec.seen(), vec!["/zz".to_string(), "/a/x".to_string()]);
    // Union branches are all looked up.
    let rec2 = RecordingNamer::new(vec!["a", "b"]);
    let n2 = Namers::new(SystemNamer::default()).mount(p("/#/rec"), rec2.clone());
    let tree = bind_ok(&n2, "/svc=>/#/rec/a & /#/rec/b", "/svc");
    assert_eq!(
        tree,
        union(vec![(1.0, bl("/#/rec/a")), (1.0, bl("/#/rec/b"))])
    );
    assert_eq!(rec2.seen(), vec!["/a".to_string(), "/b".to_string()]);
}

#[test]
fn rule_09_failing_union_branches_are_dropped() {
    let n = namers();
    assert_eq!(
        bind_ok(&n, "/svc=>/$/x/y & /#/io.l5d.fs/web", "/svc"),
        bl("/#/io.l5d.fs/web")
    );
    assert_eq!(
        bind_ok(
            &n,
            "/svc=>0.2*/#/io.l5d.fs/web & 0.3*/$/x/y & 0.8*/#/io.l5d.fs/api",
            "/svc"
        ),
        union(vec![
            (0.2, bl("/#/io.l5d.fs/web")),
            (0.8, bl("/#/io.l5d.fs/api"))
        ])
    );
    // Neg and Fail results vanish too; weights are kept as written.
    assert_eq!(
        bind_ok(
            &n,
            "/svc=>0.2*/#/io.l5d.fs/web & 0.3*/#/io.l5d.fs/missing & 0.5*! & 0.8*/#/io.l5d.fs/api",
            "/svc"
        ),
        union(vec![
            (0.2, bl("/#/io.l5d.fs/web")),
            (0.8, bl("/#/io.l5d.fs/api"))
        ])
    );
    // None OK: the first failure.
    assert_eq!(
        bind_failure(&n, "/svc=>/$/x/a & /$/y/b", "/svc"),
        "Unknown namer: x for path: /$/x/a"
    );
    // A union of Neg/Fail is Neg, so an enclosing Alt continues.
    assert_eq!(
        bind_ok(
            &n,
            "/svc=>(! & /$/fail & /#/io.l5d.fs/missing) | /#/io.l5d.fs/web",
            "/svc"
        ),
        bl("/#/io.l5d.fs/web")
    );
}

#[test]
fn rule_09_empty_union_branches_are_kept_and_take_traffic() {
    let n = namers();
    let tree = bind_ok(&n, "/svc=>/$/nil & /#/io.l5d.fs/web", "/svc");
    assert_eq!(
        tree,
        union(vec![(1.0, NameTree::Empty), (1.0, bl("/#/io.l5d.fs/web"))])
    );
    let tree2 = bind_ok(&n, "/svc=>3*$ & /#/io.l5d.fs/web", "/svc");
    assert_eq!(
        tree2,
        union(vec![(3.0, NameTree::Empty), (1.0, bl("/#/io.l5d.fs/web"))])
    );
    // Empty takes its share: requests routed there fail.
    assert_shares(shares(&tree2), &[("/#/io.l5d.fs/web", 0.25)]);
    let (mut failed, mut web) = (0, 0);
    for i in 0..1000 {
        let x = (i as f64 + 0.5) / 1000.0;
        match choose(&tree2, &mut || x) {
            None => failed += 1,
            Some(b) => {
                assert_eq!(b.id, p("/#/io.l5d.fs/web"));
                web += 1
            }
        }
    }
    assert!((740..=760).contains(&failed), "failed {failed}, web {web}");
}

#[test]
fn rule_09_weights_normalised_per_level_over_survivors() {
    let n = namers();
    let tree = bind_ok(
        &n,
        "/svc=>1*/$/x/y & 1*/#/io.l5d.fs/web & 5*/#/io.l5d.fs/missing & 3*/#/io.l5d.fs/api",
        "/svc",
    );
    assert_shares(
        shares(&tree),
        &[("/#/io.l5d.fs/web", 0.25), ("/#/io.l5d.fs/api", 0.75)],
    );
    let nested = bind_ok(
        &n,
        "/svc=>1*/#/io.l5d.fs/web & 1*(1*/#/io.l5d.fs/api & 3*/#/io.l5d.fs/db)",
        "/svc",
    );
    assert_eq!(
        nested,
        union(vec![
            (1.0, bl("/#/io.l5d.fs/web")),
            (
                1.0,
                union(vec![
                    (1.0, bl("/#/io.l5d.fs/api")),
                    (3.0, bl("/#/io.l5d.fs/db"))
                ])
            ),
        ])
    );
    assert_shares(
        shares(&nested),
        &[
            ("/#/io.l5d.fs/web", 0.5),
            ("/#/io.l5d.fs/api", 0.125),
            ("/#/io.l5d.fs/db", 0.375),
        ],
    );
    // Identical ids in different branches add up.
    let dup = bind_ok(
        &n,
        "/svc=>/#/io.l5d.fs/web & (/#/io.l5d.fs/web & /#/io.l5d.fs/api)",
        "/svc",
    );
    assert_shares(
        shares(&dup),
        &[("/#/io.l5d.fs/web", 0.75), ("/#/io.l5d.fs/api", 0.25)],
    );
    // choose follows the same distribution.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..4000 {
        let x = (i as f64 + 0.5) / 4000.0;
        // Each level draws once; use a fixed pair of draws derived from x.
        let draws = [x, (x * 7.0).fract()];
        let mut k = 0;
        let b = choose(&nested, &mut || {
            let v = draws[k.min(1)];
            k += 1;
            v
        })
        .expect("every member is bound");
        *counts.entry(b.id.show()).or_default() += 1;
    }
    let web = counts["/#/io.l5d.fs/web"] as f64 / 4000.0;
    let api = counts["/#/io.l5d.fs/api"] as f64 / 4000.0;
    let db = counts["/#/io.l5d.fs/db"] as f64 / 4000.0;
    assert!((web - 0.5).abs() < 0.02, "{counts:?}");
    assert!((api - 0.125).abs() < 0.02, "{counts:?}");
    assert!((db - 0.375).abs() < 0.02, "{counts:?}");
}

#[test]
fn rule_09_uniform_when_all_weights_zero() {
    let n = namers();
    let tree = bind_ok(&n, "/svc=>0*/#/io.l5d.fs/web & 0*/#/io.l5d.fs/api", "/svc");
    assert_eq!(
        tree,
        union(vec![
            (0.0, bl("/#/io.l5d.fs/web")),
            (0.0, bl("/#/io.l5d.fs/api"))
        ])
    );
    assert_shares(
        shares(&tree),
        &[("/#/io.l5d.fs/web", 0.5), ("/#/io.l5d.fs/api", 0.5)],
    );
    let mut web = 0;
    for i in 0..1000 {
        let x = (i as f64 + 0.5) / 1000.0;
        if choose(&tree, &mut || x).unwrap().id == p("/#/io.l5d.fs/web") {
            web += 1;
        }
    }
    assert!((490..=510).contains(&web), "web chosen {web}/1000");
}

// =======================================================================================
// Rule 10: the depth limit counts every lookup; limit 100 with '>'.
// =======================================================================================

#[test]
fn rule_10_depth_limit_counts_every_lookup() {
    let n = namers();
    // 99 dentry rewrites + 1 namer lookup = 100 lookups: binds.
    let ok = bind_ok(&n, &chain(99, "/$/inet/127.0.0.1/80"), "/p0");
    assert_eq!(ok, bl("/$/inet/127.0.0.1/80"));
    // 100 + 1 = 101 lookups: fails.
    assert_eq!(
        bind_failure(&n, &chain(100, "/$/inet/127.0.0.1/80"), "/p0"),
        "Max recursion level: 100 reached in Namer lookup"
    );
    // Same with a configured namer at the end.
    assert_eq!(
        bind_ok(&n, &chain(99, "/#/io.l5d.fs/web"), "/p0"),
        bl("/#/io.l5d.fs/web")
    );
    assert_eq!(
        bind_failure(&n, &chain(100, "/#/io.l5d.fs/web"), "/p0"),
        "Max recursion level: 100 reached in Namer lookup"
    );
    // Rewriting system namers count as lookups too: 98 rewrites + anyMethod + inet.
    let via_rewriter = chain(98, "/$/io.buoyant.http.anyMethod/GET/$/inet/127.0.0.1/80");
    assert_eq!(
        bind_ok(&n, &via_rewriter, "/p0"),
        bl("/$/inet/127.0.0.1/80")
    );
    let via_rewriter = chain(99, "/$/io.buoyant.http.anyMethod/GET/$/inet/127.0.0.1/80");
    assert_eq!(
        bind_failure(&n, &via_rewriter, "/p0"),
        "Max recursion level: 100 reached in Namer lookup"
    );
}

#[test]
fn rule_10_root_prefix_captures_everything_and_loops() {
    let n = namers();
    assert_eq!(
        bind_failure(&n, "/=>/#/io.l5d.fs/web", "/svc"),
        "Max recursion level: 100 reached in Namer lookup"
    );
}

#[test]
fn rule_10_delegator_depth_limit() {
    let n = namers();
    assert!(
        n.delegate(&d(&chain(99, "/$/inet/127.0.0.1/80")), &p("/p0"))
            .is_ok()
    );
    match n.delegate(&d(&chain(100, "/$/inet/127.0.0.1/80")), &p("/p0")) {
        Ok(tree) => panic!("expected failure, got {}", tree.to_json()),
        Err(e) => assert_eq!(e.to_string(), "Max recursion level reached."),
    }
}

// =======================================================================================
// Rule 11: the delegator.
// =======================================================================================

#[test]
fn rule_11_delegator_neg_from_explicit_tilde_has_path_tilde() {
    let n = namers();
    assert_eq!(
        delegate_json(&n, "/svc=>~", "/svc/web"),
        json!({
            "type": "delegate", "path": "/svc/web",
            "delegate": {"type": "neg", "path": "~", "dentry": {"prefix": "/svc", "dst": "~"}}
        })
    );
    // A Neg from "nothing matched, no namer" carries the path.
    assert_eq!(
        delegate_json(&n, "", "/svc/web"),
        json!({"type": "neg", "path": "/svc/web"})
    );
    assert_eq!(
        delegate_json(&n, "/svc=>/#/io.l5d.fs", "/svc/missing"),
        json!({
            "type": "delegate", "path": "/svc/missing",
            "delegate": {"type": "neg", "path": "/#/io.l5d.fs/missing",
                         "dentry": {"prefix": "/svc", "dst": "/#/io.l5d.fs"}}
        })
    );
}

#[test]
fn rule_11_delegator_no_namer_fallback_after_tilde_match() {
    let n = namers();
    // bind falls back to the namer ...
    assert_eq!(
        bind_ok(&n, "/#/io.l5d.fs=>~", "/#/io.l5d.fs/web"),
        bl("/#/io.l5d.fs/web")
    );
    // ... the delegator does not.
    assert_eq!(
        delegate_json(&n, "/#/io.l5d.fs=>~", "/#/io.l5d.fs/web"),
        json!({
            "type": "delegate", "path": "/#/io.l5d.fs/web",
            "delegate": {"type": "neg", "path": "~",
                         "dentry": {"prefix": "/#/io.l5d.fs", "dst": "~"}}
        })
    );
}

#[test]
fn rule_11_delegator_fail_path_is_bang_unless_from_dollar_fail() {
    let n = namers();
    assert_eq!(
        delegate_json(&n, "/svc=>!", "/svc/x"),
        json!({
            "type": "delegate", "path": "/svc/x",
            "delegate": {"type": "fail", "path": "!", "dentry": {"prefix": "/svc", "dst": "!"}}
        })
    );
    assert_eq!(
        delegate_json(&n, "/svc=>/$/fail", "/svc/x"),
        json!({
            "type": "delegate", "path": "/svc/x",
            "delegate": {"type": "fail", "path": "/$/fail/x",
                         "dentry": {"prefix": "/svc", "dst": "/$/fail"}}
        })
    );
}

#[test]
fn rule_11_delegator_delegate_collapses_into_child_with_same_path() {
    let n = namers();
    // Alt with the Delegate's path: the Delegate is replaced by it (root dentry: omitted).
    assert_eq!(
        delegate_json(&n, "/a=>/b|/c", "/a"),
        json!({
            "type": "alt", "path": "/a",
            "alt": [
                {"type": "neg", "path": "/b", "dentry": {"prefix": "/a", "dst": "/b | /c"}},
                {"type": "neg", "path": "/c", "dentry": {"prefix": "/a", "dst": "/b | /c"}}
            ]
        })
    );
    // Empty with the same path: the Delegate stays.
    assert_eq!(
        delegate_json(&n, "/svc=>$", "/svc"),
        json!({
            "type": "delegate", "path": "/svc",
            "delegate": {"type": "empty", "path": "/svc", "dentry": {"prefix": "/svc", "dst": "$"}}
        })
    );
    // A single-child Alt destination expands to a Delegate, which then collapses into
    // the root Delegate (same path) and takes the root's (omitted) dentry.
    let one_child = Dtab::new(vec![Dentry::new(pfx("/a"), alt(vec![leaf("/b")]))]);
    assert_eq!(
        n.delegate(&one_child, &p("/a")).unwrap().to_json(),
        json!({
            "type": "delegate", "path": "/a",
            "delegate": {"type": "neg", "path": "/b", "dentry": {"prefix": "/a", "dst": "/b"}}
        })
    );
}

#[test]
fn rule_11_delegator_alt_splices_children_with_same_path() {
    let n = namers();
    let e1 = json!({"prefix": "/a", "dst": "/b | /c"});
    let e2 = json!({"prefix": "/a", "dst": "/d | /e"});
    assert_eq!(
        delegate_json(&n, "/a=>/b|/c;/a=>/d|/e", "/a"),
        json!({
            "type": "alt", "path": "/a",
            "alt": [
                {"type": "neg", "path": "/d", "dentry": e2},
                {"type": "neg", "path": "/e", "dentry": e2},
                {"type": "neg", "path": "/b", "dentry": e1},
                {"type": "neg", "path": "/c", "dentry": e1}
            ]
        })
    );
    // Two matching entries, last first; Neg children are kept.
    assert_eq!(
        delegate_json(&n, "/a=>/#/io.l5d.fs/web;/a=>~", "/a"),
        json!({
            "type": "alt", "path": "/a",
            "alt": [
                {"type": "neg", "path": "~", "dentry": {"prefix": "/a", "dst": "~"}},
                {"type": "leaf", "path": "/#/io.l5d.fs/web",
                 "dentry": {"prefix": "/a", "dst": "/#/io.l5d.fs/web"},
                 "bound": web_bound()}
            ]
        })
    );
}

#[test]
fn rule_11_delegator_exception_takes_enclosing_alt_path_and_dentry() {
    let n = namers();
    let dst = "/loop | /#/io.l5d.fs/web";
    assert_eq!(
        delegate_json(&n, &format!("/svc=>{dst};/loop=>/loop"), "/svc"),
        json!({
            "type": "alt", "path": "/svc",
            "alt": [
                {"type": "exception", "path": "/svc", "dentry": {"prefix": "/svc", "dst": dst},
                 "message": "Max recursion level reached."},
                {"type": "leaf", "path": "/#/io.l5d.fs/web",
                 "dentry": {"prefix": "/svc", "dst": dst}, "bound": web_bound()}
            ]
        })
    );
}

#[test]
fn rule_11_delegator_exception_takes_enclosing_union_path_and_dentry() {
    let n = namers();
    let dst = "/loop & 0.50*/#/io.l5d.fs/web";
    assert_eq!(
        delegate_json(
            &n,
            "/svc=>/loop & 0.5*/#/io.l5d.fs/web;/loop=>/loop",
            "/svc"
        ),
        json!({
            "type": "union", "path": "/svc",
            "union": [
                {"weight": 1.0, "tree":
                    {"type": "exception", "path": "/svc", "dentry": {"prefix": "/svc", "dst": dst},
                     "message": "Max recursion level reached."}},
                {"weight": 0.5, "tree":
                    {"type": "leaf", "path": "/#/io.l5d.fs/web",
                     "dentry": {"prefix": "/svc", "dst": dst}, "bound": web_bound()}}
            ]
        })
    );
}

#[test]
fn rule_11_delegator_namer_error_in_alt_branch_is_an_exception_node_not_a_failure() {
    let n = namers();
    // bind fails ...
    assert_eq!(
        bind_failure(&n, "/svc=>/$/x/y | /#/io.l5d.fs/web", "/svc"),
        "Unknown namer: x for path: /$/x/y"
    );
    // ... the delegator shows every branch.
    let dst = "/$/x/y | /#/io.l5d.fs/web";
    assert_eq!(
        delegate_json(&n, &format!("/svc=>{dst}"), "/svc"),
        json!({
            "type": "alt", "path": "/svc",
            "alt": [
                {"type": "exception", "path": "/$/x/y", "dentry": {"prefix": "/svc", "dst": dst},
                 "message": "Unknown namer: x for path: /$/x/y"},
                {"type": "leaf", "path": "/#/io.l5d.fs/web",
                 "dentry": {"prefix": "/svc", "dst": dst}, "bound": web_bound()}
            ]
        })
    );
    // At the root, with no dentry.
    assert_eq!(
        delegate_json(&n, "", "/$/x/y"),
        json!({"type": "exception", "path": "/$/x/y", "message": "Unknown namer: x for path: /$/x/y"})
    );
}

// =======================================================================================
// Rule 12: headers.
// =======================================================================================

fn headers<'a>(hs: &[(&'a str, &'a str)]) -> Result<Dtab, plexus::naming::HeaderDtabError> {
    local_dtab(hs.iter().map(|(k, v)| (*k, v.as_bytes())))
}

#[test]
fn rule_12_ctx_dtab_before_l5d_dtab_regardless_of_order() {
    let local = headers(&[
        ("l5d-dtab", "/a=>/user1"),
        ("Content-Type", "text/plain"),
        ("L5D-CTX-DTAB", "/a=>/ctx1;/b=>/ctx1b"),
        ("dtab-local", "/a=>/ignored"),
        ("L5d-Dtab", "/a=>/user2"),
        ("l5d-ctx-dtab", "/a=>/ctx2"),
    ])
    .unwrap();
    assert_eq!(
        local.show(),
        "/a=>/ctx1;/b=>/ctx1b;/a=>/ctx2;/a=>/user1;/a=>/user2"
    );
    assert_eq!(
        local.lookup(&p("/a")),
        alt(vec![
            leaf("/user2"),
            leaf("/user1"),
            leaf("/ctx2"),
            leaf("/ctx1")
        ])
    );
    // Forwarded as l5d-ctx-dtab = Dtab.local.show.
    assert_eq!(
        ctx_dtab_value(&local).as_deref(),
        Some("/a=>/ctx1;/b=>/ctx1b;/a=>/ctx2;/a=>/user1;/a=>/user2")
    );
}

#[test]
fn rule_12_no_comma_splitting_and_400_on_parse_errors() {
    let e = headers(&[("l5d-dtab", "/a=>/b,/c=>/d")]).unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(e.header, "l5d-dtab");
    assert_eq!(
        e.error.to_string(),
        "end of input expected but ',' found at '/a=>/b[,]/c=>/d'"
    );
    let e = headers(&[("l5d-dtab", "/ok=>/fine"), ("l5d-ctx-dtab", "/a=>/b;;")]).unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(e.header, "l5d-ctx-dtab");
    assert_eq!(
        e.error.to_string(),
        "'/' expected but ';' found at '/a=>/b;[;]'"
    );
}

#[test]
fn rule_12_empty_headers_contribute_nothing_and_forward_only_when_non_empty() {
    let local = headers(&[("l5d-dtab", ""), ("l5d-ctx-dtab", "")]).unwrap();
    assert_eq!(local.len(), 0);
    assert_eq!(ctx_dtab_value(&local), None);
    assert_eq!(ctx_dtab_value(&Dtab::empty()), None);
    let local = headers(&[("l5d-dtab", ""), ("l5d-ctx-dtab", "/a=>/b")]).unwrap();
    assert_eq!(ctx_dtab_value(&local).as_deref(), Some("/a=>/b"));
    // Weights are rounded to two decimals when forwarded.
    let local = headers(&[("l5d-dtab", "/a => 0.333*/b & 0.667*/c ; ")]).unwrap();
    assert_eq!(
        ctx_dtab_value(&local).as_deref(),
        Some("/a=>0.33*/b & 0.67*/c")
    );
}

#[test]
fn section_9_header_overrides_beat_base_dtab() {
    let n = namers();
    let base = d("/svc/web=>/#/io.l5d.fs/web");
    let run = |local: &str| {
        n.bind(
            &base.concat(&headers(&[("l5d-dtab", local)]).unwrap()),
            &p("/svc/web"),
        )
    };
    assert_eq!(
        run("/svc/web=>/#/io.l5d.fs/api"),
        Activity::Ok(bl("/#/io.l5d.fs/api"))
    );
    // `~` does not remove the base route ...
    assert_eq!(run("/svc/web=>~"), Activity::Ok(bl("/#/io.l5d.fs/web")));
    // ... `!` blocks it.
    assert_eq!(run("/svc/web=>!"), Activity::Ok(NameTree::Fail));
}

// =======================================================================================
// Section 1/2: parse errors verbatim, ParseError accessors, Path basics.
// =======================================================================================

#[test]
fn section_1_parse_error_messages_verbatim() {
    assert_eq!(
        path_err("invalid-param"),
        "'/' expected but 'i' found at '[i]nvalid-param'"
    );
    assert_eq!(
        path_err("/foo/bar/"),
        "label char expected but end of input found at '/foo/bar/[]'"
    );
    assert_eq!(
        path_err("/foo/"),
        "label char expected but end of input found at '/foo/[]'"
    );
    assert_eq!(path_err(""), "'/' expected but end of input found at '[]'");
    assert_eq!(
        path_err("/a//b"),
        "label char expected but '/' found at '/a/[/]b'"
    );
    assert_eq!(
        path_err("//"),
        "end of input expected but '/' found at '/[/]'"
    );
    assert_eq!(
        path_err("/ x"),
        "end of input expected but 'x' found at '/ [x]'"
    );
    assert_eq!(
        path_err("/a b"),
        "end of input expected but 'b' found at '/a [b]'"
    );
    assert_eq!(
        path_err("/a+b"),
        "end of input expected but '+' found at '/a[+]b'"
    );
    assert_eq!(
        path_err("/a/@"),
        "label char expected but '@' found at '/a/[@]'"
    );
    assert_eq!(path_err("/\\y"), "'x' expected but 'y' found at '/\\[y]'");
    assert_eq!(
        path_err("/\\X41"),
        "'x' expected but 'X' found at '/\\[X]41'"
    );
    assert_eq!(
        path_err("/\\x4g"),
        "hex char expected but 'g' found at '/\\x4[g]'"
    );
    assert_eq!(
        path_err("/é"),
        "end of input expected but 'é' found at '/[é]'"
    );
    assert_eq!(
        path_err("/a/é/b"),
        "label char expected but 'é' found at '/a/[é]/b'"
    );
    for c in ["=", "&", "|", "!", "~", "(", ")", ",", ";", "{", "}"] {
        assert_eq!(
            path_err(&format!("/a/{c}")),
            format!("label char expected but '{c}' found at '/a/[{c}]'")
        );
    }
    assert_eq!(
        tree_err(""),
        "simple expected but end of input found at '[]'"
    );
    assert_eq!(tree_err("()"), "simple expected but ')' found at '([)]'");
    assert_eq!(
        tree_err("/a || /b"),
        "simple expected but '|' found at '/a |[|] /b'"
    );
    assert_eq!(
        tree_err("/a && /b"),
        "simple expected but '&' found at '/a &[&] /b'"
    );
    assert_eq!(
        tree_err("(/a | /b"),
        "')' expected but end of input found at '(/a | /b[]'"
    );
    assert_eq!(
        tree_err("/a )"),
        "end of input expected but ')' found at '/a [)]'"
    );
}

#[test]
fn section_1_parse_error_accessors() {
    let e = Path::read("invalid-param").unwrap_err();
    assert_eq!(e.offset(), 0);
    assert_eq!(e.found(), Some('i'));
    assert_eq!(e.expected(), "'/'");
    let e = Path::read("/foo/bar/").unwrap_err();
    assert_eq!(e.offset(), 9);
    assert_eq!(e.found(), None);
    assert_eq!(e.expected(), "label char");
    // Offsets count characters; non-ASCII is fine inside comments.
    let e = Path::read("# é\n/a b").unwrap_err();
    assert_eq!(
        e.to_string(),
        "end of input expected but 'b' found at '# é\n/a [b]'"
    );
    assert_eq!(e.offset(), 7);
    assert_eq!(e.found(), Some('b'));
    assert_eq!(e.expected(), "end of input");
}

#[test]
fn section_2_path_basics() {
    assert_eq!(p("/"), Path::empty());
    assert_eq!(Path::empty().show(), "/");
    assert_eq!(Path::empty().len(), 0);
    assert_eq!(p("  /foo/bar  "), Path::from_strs(["foo", "bar"]));
    assert_eq!(Path::from_strs(["a", "b"]).show(), "/a/b");
    assert_eq!(format!("{}", p("/a/b")), "/a/b");
    let x = p("/a/b/c");
    assert_eq!(x.len(), 3);
    assert_eq!(x.take(2), p("/a/b"));
    assert_eq!(x.drop(2), p("/c"));
    assert_eq!(x.drop(3), Path::empty());
    assert_eq!(x.concat(&Path::empty()), x);
    assert_eq!(Path::empty().concat(&x), x);
    assert_eq!(p("/a").concat(&p("/b/c")), x);
    assert!(x.starts_with(&p("/a/b")));
    assert!(x.starts_with(&Path::empty()));
    assert!(!p("/ab").starts_with(&p("/a")));
    assert!(!p("/a").starts_with(&p("/a/b")));
    let elems: Vec<&[u8]> = x.elems().iter().map(|e| e.as_ref()).collect();
    assert_eq!(elems, vec![&b"a"[..], &b"b"[..], &b"c"[..]]);
    assert_eq!(
        Path::from_elems([&b"a"[..], &b"b c"[..]]).show(),
        "/a/\\x62\\x20\\x63"
    );
}

// =======================================================================================
// Section 3: prefixes, dentries, dtabs.
// =======================================================================================

#[test]
fn section_3_prefix_dentry_dtab_show_and_concat() {
    assert!(pfx("/").matches(&Path::empty()));
    assert!(pfx("/").matches(&p("/a/b")));
    assert!(!pfx("/*").matches(&Path::empty()));
    assert!(pfx("/a").matches(&p("/a")));
    assert!(!pfx("/a").matches(&p("/ab")));
    assert_eq!(pfx(" /a/*/c ").show(), "/a/*/c");
    assert_eq!(pfx("/").show(), "/");

    let e = Dentry::read("/s => /a|/b").unwrap();
    assert_eq!(e.show(), "/s=>/a | /b");
    assert_eq!(e.prefix.show(), "/s");
    assert_eq!(e.dst, alt(vec![leaf("/a"), leaf("/b")]));
    assert_eq!(d("/s=>/a|/b").show(), "/s=>/a | /b");

    let a = d("/a=>/b;/c=>/d");
    let b = d("/a=>/b;/e=>/f");
    let ab = a.concat(&b);
    assert_eq!(ab.len(), 4);
    assert_eq!(ab.show(), "/a=>/b;/c=>/d;/a=>/b;/e=>/f");
    let shows: Vec<String> = ab.entries().iter().map(|e| e.show()).collect();
    assert_eq!(shows, vec!["/a=>/b", "/c=>/d", "/a=>/b", "/e=>/f"]);
    assert_eq!(Dtab::empty().show(), "");
    assert_eq!(Dtab::empty().concat(&a).show(), a.show());
}

// =======================================================================================
// Section 4: NameTree grammar and show.
// =======================================================================================

#[test]
fn section_4_tree_precedence_and_structure() {
    assert_eq!(
        t("/a & /b | /c"),
        alt(vec![
            union(vec![(1.0, leaf("/a")), (1.0, leaf("/b"))]),
            leaf("/c")
        ])
    );
    assert_eq!(
        t("/a | /b & /c"),
        alt(vec![
            leaf("/a"),
            union(vec![(1.0, leaf("/b")), (1.0, leaf("/c"))])
        ])
    );
    assert_eq!(
        t("/a | /b | /c"),
        alt(vec![leaf("/a"), leaf("/b"), leaf("/c")])
    );
    assert_eq!(
        t("/a | (/b | /c)"),
        alt(vec![leaf("/a"), alt(vec![leaf("/b"), leaf("/c")])])
    );
    assert_eq!(
        t("(/a | /b) & /c"),
        union(vec![
            (1.0, alt(vec![leaf("/a"), leaf("/b")])),
            (1.0, leaf("/c"))
        ])
    );
    assert_eq!(
        t("/a & (/b & /c)"),
        union(vec![
            (1.0, leaf("/a")),
            (1.0, union(vec![(1.0, leaf("/b")), (1.0, leaf("/c"))]))
        ])
    );
    assert_eq!(
        t("! | ~ | $ | /"),
        alt(vec![
            NameTree::Fail,
            NameTree::Neg,
            NameTree::Empty,
            NameTree::Leaf(Path::empty())
        ])
    );
}

#[test]
fn section_4_show_forms() {
    for s in [
        "/a & /b | /c",
        "(/a | /b) & /c",
        "/a & (/b & /c)",
        "0.30*(/a | /b) & 0.70*/c",
        "/foo & 2.00*/bar | 0.50*/bar & 0.50*/baz",
        "/a | (/b | /c)",
        "! | ~ | $",
        "0.50*(/a & /b) & /c",
        "/a | /b & (/c | ~)",
    ] {
        assert_eq!(t(s).show(), s, "show(read({s:?}))");
    }
    assert_eq!(t("( /a | /b )").show(), "/a | /b");
    assert_eq!(t("((/a))").show(), "/a");
    assert_eq!(t("/a&/b|/c").show(), "/a & /b | /c");
    // Single-child nodes render as their child in every context.
    assert_eq!(alt(vec![leaf("/a")]).show(), "/a");
    assert_eq!(
        union(vec![
            (1.0, leaf("/x")),
            (2.0, union(vec![(0.7, alt(vec![leaf("/a"), leaf("/b")]))]))
        ])
        .show(),
        "/x & 2.00*(/a | /b)"
    );
    assert_eq!(
        alt(vec![
            alt(vec![union(vec![(1.0, leaf("/a")), (1.0, leaf("/b"))])]),
            leaf("/c")
        ])
        .show(),
        "/a & /b | /c"
    );
    assert_eq!(format!("{}", t("/a & /b | /c")), "/a & /b | /c");
}

// =======================================================================================
// Section 6: binding details.
// =======================================================================================

#[test]
fn section_6_bind_basics() {
    let n = namers();
    let tree = bind_ok(&n, "/svc=>/#/io.l5d.fs", "/svc/web/extra/rest");
    let b = the_leaf(&tree);
    assert_eq!(b.id, p("/#/io.l5d.fs/web"));
    assert_eq!(b.residual, p("/extra/rest"));
    assert_eq!(format!("{b}"), "/#/io.l5d.fs/web");
    assert_eq!(tree.show(), "/#/io.l5d.fs/web");
    // No Alt in the result.
    assert_eq!(
        bind_ok(
            &n,
            "/svc=>/#/io.l5d.fs/missing | /#/io.l5d.fs/web | /#/io.l5d.fs/api",
            "/svc"
        ),
        bl("/#/io.l5d.fs/web")
    );
    assert_eq!(
        bind_ok(
            &n,
            "/svc=>(/#/io.l5d.fs/missing | /#/io.l5d.fs/web) & /#/io.l5d.fs/api",
            "/svc"
        ),
        union(vec![
            (1.0, bl("/#/io.l5d.fs/web")),
            (1.0, bl("/#/io.l5d.fs/api"))
        ])
    );
    assert_eq!(
        bind_ok(
            &n,
            "/svc=>(/#/io.l5d.fs/missing | /#/io.l5d.fs/web) & /#/io.l5d.fs/api",
            "/svc"
        )
        .show(),
        "/#/io.l5d.fs/web & /#/io.l5d.fs/api"
    );
    // Alt stops at Fail / Empty.
    assert_eq!(
        bind_ok(&n, "/svc=>! | /#/io.l5d.fs/web", "/svc"),
        NameTree::Fail
    );
    assert_eq!(
        bind_ok(&n, "/svc=>$ | /#/io.l5d.fs/web", "/svc"),
        NameTree::Empty
    );
    assert_eq!(
        bind_ok(&n, "/svc=>/$/nil | /#/io.l5d.fs/web", "/svc"),
        NameTree::Empty
    );
    assert_eq!(bind_ok(&n, "/svc=>~ | ~", "/svc"), NameTree::Neg);
    assert_eq!(bind_ok(&n, "", "/svc"), NameTree::Neg);
    // Later entries win, a later `~` falls through, a later `!` blocks.
    assert_eq!(
        bind_ok(&n, "/a=>/#/io.l5d.fs/web;/a=>~", "/a"),
        bl("/#/io.l5d.fs/web")
    );
    assert_eq!(
        bind_ok(&n, "/a=>/#/io.l5d.fs/web;/a=>!", "/a"),
        NameTree::Fail
    );
    assert_eq!(
        bind_ok(&n, "/a=>/#/io.l5d.fs/web;/a=>/#/io.l5d.fs/api", "/a"),
        bl("/#/io.l5d.fs/api")
    );
    // An empty "file" is a bound leaf with no addresses, not Empty.
    let empty = bind_ok(&n, "", "/#/io.l5d.fs/empty");
    assert_eq!(empty, bl("/#/io.l5d.fs/empty"));
    assert_eq!(the_leaf(&empty).addr, Addr::Bound(vec![]));
}

#[test]
fn section_6_dtab_is_consulted_before_namers_for_every_path() {
    let n = namers();
    assert_eq!(
        bind_ok(&n, "/#/io.l5d.fs/web=>/#/io.l5d.fs/api", "/#/io.l5d.fs/web"),
        bl("/#/io.l5d.fs/api")
    );
    assert_eq!(
        bind_ok(&n, "/$/inet=>/#/io.l5d.fs/db", "/$/inet/127.0.0.1/80"),
        bl("/#/io.l5d.fs/db")
    );
    // Output of a rewriting namer is looked up in the dtab again.
    assert_eq!(
        bind_ok(
            &n,
            "/svc=>/#/io.l5d.fs",
            "/$/io.buoyant.http.anyMethodPfx/svc/GET/web"
        ),
        bl("/#/io.l5d.fs/web")
    );
}

#[test]
fn section_6_configured_namers_in_order_neg_moves_on_error_stops() {
    let first = RecordingNamer::new(vec!["a"]);
    let second = RecordingNamer::new(vec!["b"]);
    let n = Namers::new(SystemNamer::default())
        .mount(p("/#/rec"), first.clone())
        .mount(p("/#/rec"), second.clone());
    let tree = bind_ok(&n, "", "/#/rec/b/x");
    assert_eq!(tree, bl("/#/rec/b"));
    assert_eq!(the_leaf(&tree).residual, p("/x"));
    // Each namer is called with the path minus its prefix.
    assert_eq!(first.seen(), vec!["/b/x".to_string()]);
    assert_eq!(second.seen(), vec!["/b/x".to_string()]);
    assert_eq!(bind_ok(&n, "", "/#/rec/a"), bl("/#/rec/a"));
    assert_eq!(second.seen(), vec!["/b/x".to_string()]);
    // Prefix matching is element-wise.
    assert_eq!(bind_ok(&n, "", "/#/recx/a"), NameTree::Neg);
    assert_eq!(first.seen().len(), 2);
    // An error from an earlier namer is the answer.
    let third = RecordingNamer::new(vec!["a"]);
    let n2 = Namers::new(SystemNamer::default())
        .mount(p("/#/rec"), Arc::new(FailingNamer("kaput")))
        .mount(p("/#/rec"), third.clone());
    assert_eq!(bind_failure(&n2, "", "/#/rec/a"), "kaput");
    assert!(third.seen().is_empty());
}

// =======================================================================================
// Section 8: the system namer.
// =======================================================================================

#[test]
fn section_8_inet() {
    let n = namers();
    let tree = bind_ok(&n, "", "/$/inet/127.0.0.1/8080/rest/x");
    let b = the_leaf(&tree);
    assert_eq!(b.id, p("/$/inet/127.0.0.1/8080"));
    assert_eq!(b.id.show(), "/$/inet/127.0.0.1/8080");
    assert_eq!(b.residual, p("/rest/x"));
    assert_eq!(
        b.addr,
        Addr::Bound(vec![Address::new(sa("127.0.0.1:8080"))])
    );

    let tree = bind_ok(&n, "", "/$/inet/localhost/80");
    assert_eq!(the_leaf(&tree).id.show(), "/$/inet/localhost/80");
    assert_eq!(
        the_leaf(&tree).addr,
        Addr::Bound(vec![Address::new(sa("127.0.0.1:80"))])
    );

    let tree = bind_ok(&n, "", "/$/fixedinet/127.0.0.1/80/r");
    let b = the_leaf(&tree);
    assert_eq!(b.id.show(), "/$/fixedinet/127.0.0.1/80");
    assert_eq!(b.residual, p("/r"));
    assert_eq!(b.addr, Addr::Bound(vec![Address::new(sa("127.0.0.1:80"))]));

    // Host-less form.
    let tree = bind_ok(&n, "", "/$/inet/8080");
    assert_eq!(the_leaf(&tree).id.show(), "/$/inet/8080");
    assert_eq!(the_leaf(&tree).residual, Path::empty());
    let tree = bind_ok(&n, "", "/$/inet/8080/x/y");
    assert_eq!(the_leaf(&tree).id.show(), "/$/inet/8080");
    assert_eq!(the_leaf(&tree).residual, p("/x/y"));
    // `/$/inet/1234/5678` is host 1234, port 5678.
    let tree = bind_ok(&n, "", "/$/inet/1234/5678");
    assert_eq!(the_leaf(&tree).id.show(), "/$/inet/1234/5678");
    assert_eq!(the_leaf(&tree).residual, Path::empty());
    // No port: class `inet` is unknown.
    assert_eq!(
        bind_failure(&n, "", "/$/inet/localhost"),
        "Unknown namer: inet for path: /$/inet/localhost"
    );
}

#[test]
fn section_8_nil_fail_and_neg() {
    let n = namers();
    assert_eq!(bind_ok(&n, "", "/$/nil"), NameTree::Empty);
    assert_eq!(bind_ok(&n, "", "/$/nil/x/y"), NameTree::Empty);
    assert_eq!(bind_ok(&n, "", "/$/fail"), NameTree::Fail);
    assert_eq!(bind_ok(&n, "", "/$/fail/x"), NameTree::Fail);
    assert_eq!(
        bind_failure(&n, "", "/$/failure"),
        "Unknown namer: failure for path: /$/failure"
    );
    assert_eq!(bind_ok(&n, "", "/$"), NameTree::Neg);
    assert_eq!(bind_ok(&n, "", "/#/io.l5d.unconfigured/x"), NameTree::Neg);
    assert_eq!(bind_ok(&n, "", "/#/io.l5d.fs/missing"), NameTree::Neg);
    assert_eq!(sys("/$/nil/x"), Activity::Ok(NameTree::Empty));
    assert_eq!(sys("/$/fail/x"), Activity::Ok(NameTree::Fail));
    assert_sys_neg("/$");
    assert_sys_neg("/svc/x");
}

#[test]
fn section_8_unknown_namer_message() {
    let n = namers();
    assert_eq!(
        bind_failure(&n, "", "/$/x/y"),
        "Unknown namer: x for path: /$/x/y"
    );
    assert_eq!(
        bind_failure(&n, "", "/$/x"),
        "Unknown namer: x for path: /$/x"
    );
    assert_eq!(
        bind_failure(&n, "/svc=>/$/com.example.Nope", "/svc/a/b"),
        "Unknown namer: com.example.Nope for path: /$/com.example.Nope/a/b"
    );
    match sys("/$/x/y") {
        Activity::Failed(e) => {
            assert_eq!(e.to_string(), "Unknown namer: x for path: /$/x/y");
            assert_eq!(
                e,
                NamingError::UnknownNamer {
                    class: "x".to_string(),
                    path: "/$/x/y".to_string()
                }
            );
        }
        other => panic!("expected failure, got {other:?}"),
    }
}

#[test]
fn section_8_rinet() {
    let n = namers();
    let tree = bind_ok(&n, "", "/$/io.buoyant.rinet/8080/127.0.0.1/rest");
    let b = the_leaf(&tree);
    assert_eq!(b.id.show(), "/$/io.buoyant.rinet/8080/127.0.0.1");
    assert_eq!(b.residual, p("/rest"));
    assert_eq!(
        b.addr,
        Addr::Bound(vec![Address::new(sa("127.0.0.1:8080"))])
    );
    assert_eq!(bind_ok(&n, "", "/$/io.buoyant.rinet/8080"), NameTree::Neg);
    assert_eq!(bind_ok(&n, "", "/$/io.buoyant.rinet"), NameTree::Neg);
}

#[test]
fn section_8_hostport_and_porthost_pfx() {
    assert_rewrites(
        "/$/io.buoyant.hostportPfx/inet/web.svc:8080/rest",
        "/inet/web.svc/8080/rest",
    );
    assert_rewrites(
        "/$/io.buoyant.porthostPfx/inet/web.svc:8080/rest",
        "/inet/8080/web.svc/rest",
    );
    assert_rewrites("/$/io.buoyant.hostportPfx/pfx/web:http", "/pfx/web/http");
    assert_rewrites("/$/io.buoyant.porthostPfx/pfx/web:http", "/pfx/http/web");
    assert_sys_neg("/$/io.buoyant.hostportPfx/inet/web:HTTP");
    assert_sys_neg("/$/io.buoyant.hostportPfx/inet/web:80:90");
    assert_sys_neg("/$/io.buoyant.hostportPfx/inet/web");
    assert_sys_neg("/$/io.buoyant.hostportPfx/inet/web:-80");
    assert_sys_neg("/$/io.buoyant.porthostPfx/inet/web:Http");
    assert_sys_neg("/$/io.buoyant.hostportPfx/inet");
    assert_sys_neg("/$/io.buoyant.hostportPfx");
    // The output is bound from scratch (dtab first).
    let n = namers();
    let tree = bind_ok(
        &n,
        "/inet=>/$/inet",
        "/$/io.buoyant.hostportPfx/inet/127.0.0.1:8080/x",
    );
    assert_eq!(tree, bl("/$/inet/127.0.0.1/8080"));
    assert_eq!(the_leaf(&tree).residual, p("/x"));
}

#[test]
fn section_8_http_any_method_and_pfx() {
    assert_rewrites("/$/io.buoyant.http.anyMethod/GET/svc/web", "/svc/web");
    assert_rewrites("/$/io.buoyant.http.anyMethod/DELETE/x", "/x");
    assert_sys_neg("/$/io.buoyant.http.anyMethod/get/svc/web");
    assert_sys_neg("/$/io.buoyant.http.anyMethod/GET1/svc");
    assert_sys_neg("/$/io.buoyant.http.anyMethod");
    assert_rewrites("/$/io.buoyant.http.anyMethodPfx/svc/POST/web", "/svc/web");
    assert_sys_neg("/$/io.buoyant.http.anyMethodPfx/svc/Post/web");
    assert_sys_neg("/$/io.buoyant.http.anyMethodPfx");
}

#[test]
fn section_8_http_any_host_and_pfx() {
    assert_rewrites(
        "/$/io.buoyant.http.anyHost/example.com:8080/svc/web",
        "/svc/web",
    );
    assert_rewrites("/$/io.buoyant.http.anyHost/A-b_c.D:1/x", "/x");
    assert_sys_neg("/$/io.buoyant.http.anyHost/a%b/svc");
    assert_sys_neg("/$/io.buoyant.http.anyHost/a$b/svc");
    assert_sys_neg("/$/io.buoyant.http.anyHost");
    assert_rewrites(
        "/$/io.buoyant.http.anyHostPfx/svc/example.com/web",
        "/svc/web",
    );
    assert_sys_neg("/$/io.buoyant.http.anyHostPfx/svc/a%b/web");
}

#[test]
fn section_8_http_subdomain_of_and_pfx() {
    assert_rewrites(
        "/$/io.buoyant.http.subdomainOf/buoyant.io/foo.buoyant.io:8080/rest",
        "/foo/rest",
    );
    assert_rewrites(
        "/$/io.buoyant.http.subdomainOf/buoyant.io/a.b.buoyant.io",
        "/a.b",
    );
    assert_sys_neg("/$/io.buoyant.http.subdomainOf/buoyant.io/buoyant.io/rest");
    assert_sys_neg("/$/io.buoyant.http.subdomainOf/buoyant.io/foobuoyant.io/rest");
    assert_sys_neg("/$/io.buoyant.http.subdomainOf/buoyant.io/foo.example.com/rest");
    assert_sys_neg("/$/io.buoyant.http.subdomainOf");
    assert_rewrites(
        "/$/io.buoyant.http.subdomainOfPfx/buoyant.io/svc/foo.buoyant.io/rest",
        "/svc/foo/rest",
    );
    assert_rewrites(
        "/$/io.buoyant.http.subdomainOfPfx/buoyant.io/svc/foo.buoyant.io:80",
        "/svc/foo",
    );
    assert_sys_neg("/$/io.buoyant.http.subdomainOfPfx/buoyant.io/svc/buoyant.io/rest");
}

#[test]
fn section_8_http_domain_to_path_and_pfx() {
    assert_rewrites(
        "/$/io.buoyant.http.domainToPath/foo.buoyant.io/rest",
        "/io/buoyant/foo/rest",
    );
    assert_rewrites("/$/io.buoyant.http.domainToPath/foo.io:80", "/io:80/foo");
    assert_rewrites(
        "/$/io.buoyant.http.domainToPath/localhost/x",
        "/localhost/x",
    );
    assert_sys_neg("/$/io.buoyant.http.domainToPath");
    assert_rewrites(
        "/$/io.buoyant.http.domainToPathPfx/svc/foo.buoyant.io/rest",
        "/svc/io/buoyant/foo/rest",
    );
    assert_sys_neg("/$/io.buoyant.http.domainToPathPfx");
    // End to end: Host header routing through a dtab.
    let n = namers();
    let tree = bind_ok(
        &n,
        "/svc=>/$/io.buoyant.http.domainToPathPfx/host;/host/com/example=>/#/io.l5d.fs",
        "/svc/web.example.com/path",
    );
    assert_eq!(tree, bl("/#/io.l5d.fs/web"));
    assert_eq!(the_leaf(&tree).residual, p("/path"));
}

// =======================================================================================
// Section 7: delegator JSON shapes.
// =======================================================================================

#[test]
fn section_7_delegator_json_shapes() {
    let n = namers();
    // Root dentry omitted; leaf path is what the namer was handed.
    assert_eq!(
        delegate_json(&n, "/svc=>/#/io.l5d.fs", "/svc/web"),
        json!({
            "type": "delegate", "path": "/svc/web",
            "delegate": {"type": "leaf", "path": "/#/io.l5d.fs/web",
                         "dentry": {"prefix": "/svc", "dst": "/#/io.l5d.fs"},
                         "bound": web_bound()}
        })
    );
    // Residual shows up in bound.path.
    assert_eq!(
        delegate_json(&n, "/svc=>/#/io.l5d.fs", "/svc/web/x/y"),
        json!({
            "type": "delegate", "path": "/svc/web/x/y",
            "delegate": {"type": "leaf", "path": "/#/io.l5d.fs/web/x/y",
                         "dentry": {"prefix": "/svc", "dst": "/#/io.l5d.fs"},
                         "bound": fs_bound("/#/io.l5d.fs/web", "10.0.0.1", 80, "/x/y")}
        })
    );
    // A path bound directly by a namer at the root.
    assert_eq!(
        delegate_json(&n, "", "/#/io.l5d.fs/web"),
        json!({"type": "leaf", "path": "/#/io.l5d.fs/web", "bound": web_bound()})
    );
    // inet.
    assert_eq!(
        delegate_json(&n, "/svc=>/$/inet/127.0.0.1/8080", "/svc"),
        json!({
            "type": "delegate", "path": "/svc",
            "delegate": {"type": "leaf", "path": "/$/inet/127.0.0.1/8080",
                         "dentry": {"prefix": "/svc", "dst": "/$/inet/127.0.0.1/8080"},
                         "bound": {"addr": {"type": "bound",
                                            "addrs": [{"ip": "127.0.0.1", "port": 8080, "meta": {}}],
                                            "meta": {}},
                                   "id": "/$/inet/127.0.0.1/8080", "path": "/"}}
        })
    );
    // Union (collapsed into the root Delegate: same path), weights as doubles.
    let dst = "0.30*/#/io.l5d.fs/web & 0.70*/#/io.l5d.fs/api";
    assert_eq!(
        delegate_json(
            &n,
            "/svc=>0.3*/#/io.l5d.fs/web & 0.7*/#/io.l5d.fs/api",
            "/svc"
        ),
        json!({
            "type": "union", "path": "/svc",
            "union": [
                {"weight": 0.3, "tree": {"type": "leaf", "path": "/#/io.l5d.fs/web",
                                         "dentry": {"prefix": "/svc", "dst": dst},
                                         "bound": web_bound()}},
                {"weight": 0.7, "tree": {"type": "leaf", "path": "/#/io.l5d.fs/api",
                                         "dentry": {"prefix": "/svc", "dst": dst},
                                         "bound": api_bound()}}
            ]
        })
    );
    // Empty from /$/nil.
    assert_eq!(
        delegate_json(&n, "/svc=>/$/nil", "/svc"),
        json!({
            "type": "delegate", "path": "/svc",
            "delegate": {"type": "empty", "path": "/$/nil",
                         "dentry": {"prefix": "/svc", "dst": "/$/nil"}}
        })
    );
}

#[test]
fn section_7_delegator_rewriting_namer_leaves_no_node_of_its_own() {
    let n = namers();
    assert_eq!(
        delegate_json(
            &n,
            "/svc=>/$/io.buoyant.hostportPfx/inet;/inet=>/$/inet",
            "/svc/127.0.0.1:8080"
        ),
        json!({
            "type": "delegate", "path": "/svc/127.0.0.1:8080",
            "delegate": {
                "type": "delegate", "path": "/inet/127.0.0.1/8080",
                "dentry": {"prefix": "/svc", "dst": "/$/io.buoyant.hostportPfx/inet"},
                "delegate": {
                    "type": "leaf", "path": "/$/inet/127.0.0.1/8080",
                    "dentry": {"prefix": "/inet", "dst": "/$/inet"},
                    "bound": {"addr": {"type": "bound",
                                       "addrs": [{"ip": "127.0.0.1", "port": 8080, "meta": {}}],
                                       "meta": {}},
                              "id": "/$/inet/127.0.0.1/8080", "path": "/"}
                }
            }
        })
    );
}

#[test]
fn section_7_delegate_tree_root_has_no_dentry() {
    let n = namers();
    let tree = n
        .delegate(&d("/svc=>/#/io.l5d.fs"), &p("/svc/web"))
        .unwrap();
    assert!(tree.dentry().is_none());
    assert_eq!(tree.path(), &p("/svc/web"));
    match &tree {
        DelegateTree::Delegate { child, .. } => {
            assert_eq!(
                child.dentry().map(|e| e.show()),
                Some("/svc=>/#/io.l5d.fs".to_string())
            );
            assert_eq!(child.path(), &p("/#/io.l5d.fs/web"));
        }
        other => panic!("expected a Delegate at the root, got {other:?}"),
    }
}

// =======================================================================================
// Additional spec examples (sections 4, 6, 7, 8, 9).
// =======================================================================================

/// A namer that never answers.
struct PendingNamer;
impl Namer for PendingNamer {
    fn lookup(&self, _path: &Path) -> Activity<NameTree<Name>> {
        Activity::Pending
    }
}

#[test]
fn section_6_union_pending_and_failed_branches() {
    let n = namers()
        .mount(p("/#/wait"), Arc::new(PendingNamer))
        .mount(p("/#/boom"), Arc::new(FailingNamer("boom!")));
    // At least one OK branch: pending/failed branches are dropped.
    assert_eq!(
        bind_ok(&n, "/svc=>/#/wait/x & /#/io.l5d.fs/web", "/svc"),
        bl("/#/io.l5d.fs/web")
    );
    // None OK: the first failure (or pending), in branch order.
    assert_eq!(
        bind(&n, "/svc=>/#/wait/x & /#/boom/y", "/svc"),
        Activity::Pending
    );
    assert_eq!(
        bind_failure(&n, "/svc=>/#/boom/y & /#/wait/x", "/svc"),
        "boom!"
    );
}

#[test]
fn section_6_bind_degenerate_alt_and_union_destinations() {
    let n = namers();
    // A lookup result that is Alt() is not the Neg singleton: no namer fallback, binds Neg.
    let empty_alt = Dtab::new(vec![Dentry::new(
        pfx("/#/io.l5d.fs"),
        NameTree::Alt(vec![]),
    )]);
    assert_eq!(
        n.bind(&empty_alt, &p("/#/io.l5d.fs/web")),
        Activity::Ok(NameTree::Neg)
    );
    let empty_union = Dtab::new(vec![Dentry::new(
        pfx("/#/io.l5d.fs"),
        NameTree::Union(vec![]),
    )]);
    assert_eq!(
        n.bind(&empty_union, &p("/#/io.l5d.fs/web")),
        Activity::Ok(NameTree::Neg)
    );
    // Union(w*t) binds t.
    let single = Dtab::new(vec![Dentry::new(
        pfx("/svc"),
        union(vec![(0.5, leaf("/#/io.l5d.fs/web"))]),
    )]);
    assert_eq!(
        n.bind(&single, &p("/svc")),
        Activity::Ok(bl("/#/io.l5d.fs/web"))
    );
    // Alt(t) binds t.
    let single_alt = Dtab::new(vec![Dentry::new(
        pfx("/svc"),
        alt(vec![leaf("/#/io.l5d.fs/api")]),
    )]);
    assert_eq!(
        n.bind(&single_alt, &p("/svc")),
        Activity::Ok(bl("/#/io.l5d.fs/api"))
    );
}

#[test]
fn section_8_inet_port_must_be_a_java_int() {
    let n = namers();
    // 99999999999 does not fit an int: neither inet form matches, class `inet` is unknown.
    assert_eq!(
        bind_failure(&n, "", "/$/inet/127.0.0.1/99999999999"),
        "Unknown namer: inet for path: /$/inet/127.0.0.1/99999999999"
    );
    assert_eq!(
        bind_failure(&n, "", "/$/inet/127.0.0.1/http"),
        "Unknown namer: inet for path: /$/inet/127.0.0.1/http"
    );
}

#[test]
fn section_8_hostport_port_label_at_most_63_chars() {
    let p63 = "a".repeat(63);
    let p64 = "a".repeat(64);
    assert_rewrites(
        &format!("/$/io.buoyant.hostportPfx/pfx/web:{p63}"),
        &format!("/pfx/web/{p63}"),
    );
    assert_sys_neg(&format!("/$/io.buoyant.hostportPfx/pfx/web:{p64}"));
    assert_rewrites("/$/io.buoyant.hostportPfx/pfx/web:h-2/x", "/pfx/web/h-2/x");
}

#[test]
fn section_9_non_ascii_header_value_is_a_400() {
    let e = local_dtab([("l5d-dtab", &b"/a=>/b\xe9"[..])]).unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(e.header, "l5d-dtab");
}

#[test]
fn section_7_delegator_shows_every_branch_and_namer_answers() {
    let n = namers().mount(p("/#/boom"), Arc::new(FailingNamer("boom!")));
    let dst = "/#/io.l5d.fs/missing | /#/io.l5d.fs/web";
    assert_eq!(
        delegate_json(&n, &format!("/svc=>{dst}"), "/svc"),
        json!({
            "type": "alt", "path": "/svc",
            "alt": [
                {"type": "neg", "path": "/#/io.l5d.fs/missing",
                 "dentry": {"prefix": "/svc", "dst": dst}},
                {"type": "leaf", "path": "/#/io.l5d.fs/web",
                 "dentry": {"prefix": "/svc", "dst": dst}, "bound": web_bound()}
            ]
        })
    );
    // A configured namer's error becomes an Exception node for the path it was handed.
    assert_eq!(
        delegate_json(&n, "/svc=>/#/boom", "/svc/x"),
        json!({
            "type": "delegate", "path": "/svc/x",
            "delegate": {"type": "exception", "path": "/#/boom/x",
                         "dentry": {"prefix": "/svc", "dst": "/#/boom"},
                         "message": "boom!"}
        })
    );
    // A rewriting namer answering Neg.
    assert_eq!(
        delegate_json(&n, "/svc=>/$/io.buoyant.http.anyMethod", "/svc/get/x"),
        json!({
            "type": "delegate", "path": "/svc/get/x",
            "delegate": {"type": "neg", "path": "/$/io.buoyant.http.anyMethod/get/x",
                         "dentry": {"prefix": "/svc", "dst": "/$/io.buoyant.http.anyMethod"}}
        })
    );
}

#[test]
fn section_4_show_operators_without_spaces() {
    assert_eq!(t("/a|!|~|$").show(), "/a | ! | ~ | $");
    assert_eq!(
        t("/a|!|~|$"),
        alt(vec![
            leaf("/a"),
            NameTree::Fail,
            NameTree::Neg,
            NameTree::Empty
        ])
    );
    assert_eq!(t("(/a)&(/b|/c)").show(), "/a & (/b | /c)");
}

#[test]
fn section_7_delegator_alt_splicing_vs_union_no_splicing() {
    let n = namers();
    // A nested Alt produced by the same dentry has the same path: spliced.
    let dst = "/b | (/c | /d)";
    let e = json!({"prefix": "/a", "dst": dst});
    assert_eq!(
        delegate_json(&n, &format!("/a=>{dst}"), "/a"),
        json!({
            "type": "alt", "path": "/a",
            "alt": [
                {"type": "neg", "path": "/b", "dentry": e},
                {"type": "neg", "path": "/c", "dentry": e},
                {"type": "neg", "path": "/d", "dentry": e}
            ]
        })
    );
    // Unions are never spliced.
    let dst = "(/#/io.l5d.fs/web & /#/io.l5d.fs/api) & /#/io.l5d.fs/db";
    let e = json!({"prefix": "/a", "dst": dst});
    assert_eq!(
        delegate_json(&n, &format!("/a=>{dst}"), "/a"),
        json!({
            "type": "union", "path": "/a",
            "union": [
                {"weight": 1.0, "tree": {
                    "type": "union", "path": "/a", "dentry": e,
                    "union": [
                        {"weight": 1.0, "tree": {"type": "leaf", "path": "/#/io.l5d.fs/web",
                                                 "dentry": e, "bound": web_bound()}},
                        {"weight": 1.0, "tree": {"type": "leaf", "path": "/#/io.l5d.fs/api",
                                                 "dentry": e, "bound": api_bound()}}
                    ]}},
                {"weight": 1.0, "tree": {"type": "leaf", "path": "/#/io.l5d.fs/db", "dentry": e,
                                         "bound": fs_bound("/#/io.l5d.fs/db", "10.0.0.3", 5432, "/")}}
            ]
        })
    );
}

#[test]
fn section_6_bound_names_are_equal_by_id_only() {
    let a = Bound {
        id: p("/#/io.l5d.fs/web"),
        residual: p("/x"),
        addr: Addr::Neg,
    };
    let b = Bound {
        id: p("/#/io.l5d.fs/web"),
        residual: p("/y"),
        addr: Addr::Bound(vec![Address::new(sa("10.0.0.1:80"))]),
    };
    let c = Bound::new(p("/#/io.l5d.fs/api"), Addr::Neg);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(format!("{a}"), "/#/io.l5d.fs/web");
}
