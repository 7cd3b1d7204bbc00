//! Property tests for `plexus::naming`: show/read round trips, `simplified` idempotence,
//! robustness of lookup, binding and delegation, and parser robustness on arbitrary text.
//!
//! Case counts are proptest's default (256, or `PROPTEST_CASES`); the suite runs in seconds.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use plexus::naming::{
    Activity, Address, Bound, Dentry, Dtab, NameTree, Namers, ParseError, Path, Prefix, PrefixElem,
    StaticNamer, SystemNamer, Weighted, local_dtab, read_tree,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// One non-empty path element: showable text, arbitrary bytes, or a troublesome byte
/// (`*`, `#`, space, backslash, slash, non-ASCII, NUL, ...).
fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[a-zA-Z0-9_:.#$%-]{1,8}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 1..6),
        2 => select(vec![
            &b"*"[..], b"#", b"##", b"a#b", b" ", b"a b", b"\\", b"\\x41", b"/", b"\x00",
            b"\xff", "\u{e9}".as_bytes(), b"$", b"%", b"=>", b";", b"|", b"&", b"(", b"!",
            b"~", b"0.5", b"\n", b"\t",
        ])
        .prop_map(<[u8]>::to_vec),
    ]
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(label(), 0..6).prop_map(Path::from_elems)
}

/// `None` is the `*` wildcard. (`PrefixElem` has no `Debug`, so strategies cannot yield
/// it directly.)
fn prefix_elem() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        3 => label().prop_map(Some),
        1 => Just(None),
    ]
}

fn to_prefix(elems: Vec<Option<Vec<u8>>>) -> Prefix {
    Prefix::new(
        elems
            .into_iter()
            .map(|e| match e {
                Some(l) => PrefixElem::Label(Arc::from(l)),
                None => PrefixElem::Any,
            })
            .collect(),
    )
}

fn prefix() -> impl Strategy<Value = Prefix> {
    prop::collection::vec(prefix_elem(), 0..5).prop_map(to_prefix)
}

/// Weights `show` prints exactly: at most two decimals.
fn exact_weight() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..100_000).prop_map(|k| f64::from(k) / 100.0),
        select(vec![0.0, 0.5, 1.0, 2.0, 0.01, 0.99, 1.01]),
    ]
}

/// Any finite, non-negative weight (the parser cannot produce anything else), including
/// ones that round to `1.00` or have many digits.
fn any_weight() -> impl Strategy<Value = f64> {
    use prop::num::f64 as pf;
    prop_oneof![
        2 => exact_weight(),
        2 => (pf::POSITIVE | pf::NORMAL | pf::SUBNORMAL | pf::ZERO).prop_map(f64::abs),
        1 => 0.0f64..10.0,
        1 => select(vec![0.995, 0.999, 1.004, 1.005, 0.125, 0.875, 9.995, 1e20, f64::MAX, 5e-324]),
    ]
}

/// Name trees over `leaf` paths. `min_children` is 2 for trees that show exactly, 1 to
/// include the single-child nodes that `show` collapses.
fn tree_with(
    leaf: BoxedStrategy<Path>,
    weight: BoxedStrategy<f64>,
    min_children: usize,
    depth: u32,
    size: u32,
) -> BoxedStrategy<NameTree<Path>> {
    let base = prop_oneof![
        4 => leaf.prop_map(NameTree::Leaf),
        1 => Just(NameTree::Neg),
        1 => Just(NameTree::Fail),
        1 => Just(NameTree::Empty),
    ];
    base.prop_recursive(depth, size, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), min_children..5).prop_map(NameTree::Alt),
            prop::collection::vec(
                (weight.clone(), inner).prop_map(|(weight, tree)| Weighted { weight, tree }),
                min_children..5,
            )
            .prop_map(NameTree::Union),
        ]
    })
    .boxed()
}

/// Trees whose show/read round trip is exact.
fn canonical_tree() -> BoxedStrategy<NameTree<Path>> {
    tree_with(path().boxed(), exact_weight().boxed(), 2, 4, 24)
}

/// Any tree: single-child nodes and weights `show` rounds.
fn any_tree() -> BoxedStrategy<NameTree<Path>> {
    tree_with(path().boxed(), any_weight().boxed(), 1, 4, 24)
}

fn canonical_dtab() -> impl Strategy<Value = Dtab> {
    prop::collection::vec(
        (prefix(), canonical_tree()).prop_map(|(p, t)| Dentry::new(p, t)),
        0..6,
    )
    .prop_map(Dtab::new)
}

fn any_dtab() -> impl Strategy<Value = Dtab> {
    prop::collection::vec(
        (prefix(), any_tree()).prop_map(|(p, t)| Dentry::new(p, t)),
        0..6,
    )
    .prop_map(Dtab::new)
}

// Dtabs for binding. Arbitrary dtabs may loop; a loop through a union (or, for the
// delegator, through any alternative) is explored exponentially up to the depth limit
// (see the report on the `/=>/a&/a` input), so the binding properties use dtabs that
// cannot loop: layer `i` entries match `/l<i>/...` and rewrite only to higher layers, to
// the static catalog, or to system paths.

const LAYERS: usize = 4;

fn small_tail() -> BoxedStrategy<Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            3 => select(vec!["a", "b", "c"]).prop_map(|s| s.as_bytes().to_vec()),
            1 => label(),
        ],
        0..3,
    )
    .boxed()
}

fn layer_label(i: usize) -> Vec<u8> {
    format!("l{i}").into_bytes()
}

fn strs(segments: &[&str]) -> Vec<Vec<u8>> {
    segments.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn with_tail(mut head: Vec<Vec<u8>>, tail: Vec<Vec<u8>>) -> Path {
    head.extend(tail);
    Path::from_elems(head)
}

/// A destination leaf for an entry of layer `min_layer - 1`.
fn layered_leaf(min_layer: usize) -> BoxedStrategy<Path> {
    let terminal = prop_oneof![
        // The catalog (svc3 and svc4 are unknown to the first namer).
        ((0..5usize), small_tail())
            .prop_map(|(n, tail)| { with_tail(strs(&["#", "cat", &format!("svc{n}")]), tail) }),
        // Terminal system paths, including failures and unknown classes.
        (
            select(vec![
                "/$/inet/127.0.0.1/8080",
                "/$/inet/8080",
                "/$/inet/localhost/80",
                "/$/inet/host.example/80",
                "/$/inet/127.0.0.1/99999",
                "/$/inet/127.0.0.1",
                r"/$/fixedinet/\x5b::1\x5d/443",
                "/$/nil",
                "/$/fail",
                "/$/failure",
                "/$/no.such.Namer",
                "/$",
                "/$/io.buoyant.rinet/80/127.0.0.1",
                "/$/io.buoyant.rinet/80",
                "/#/unmounted/x",
            ]),
            small_tail()
        )
            .prop_map(|(p, tail)| Path::read(p)
                .expect("a valid system path")
                .concat(&Path::from_elems(tail))),
        // Paths nothing matches.
        (label(), small_tail()).prop_map(|(l, tail)| with_tail(vec![b"r".to_vec(), l], tail)),
    ];
    if min_layer >= LAYERS {
        return terminal.boxed();
    }
    let up = ((min_layer..LAYERS), small_tail());
    prop_oneof![
        3 => ((min_layer..LAYERS), matching_tail())
            .prop_map(|(j, tail)| with_tail(vec![layer_label(j)], tail)),
        1 => up.clone().prop_map(|(j, tail)| with_tail(vec![layer_label(j)], tail)),
        3 => terminal,
        // System namers that rewrite to a path that is bound again (upwards only).
        2 => (
            up,
            select(vec![
                "io.buoyant.http.anyMethod/GET/{l}",
                "io.buoyant.http.anyMethod/get/{l}",
                "io.buoyant.http.anyMethodPfx/{l}/POST",
                "io.buoyant.http.anyHost/web.example:80/{l}",
                "io.buoyant.http.anyHostPfx/{l}/web.example",
                "io.buoyant.hostportPfx/{l}/web:http",
                "io.buoyant.porthostPfx/{l}/web:8080",
                "io.buoyant.hostportPfx/{l}/web:HTTP",
                "io.buoyant.http.subdomainOfPfx/example.com/{l}/www.example.com:80",
                "io.buoyant.http.subdomainOfPfx/example.com/{l}/example.com",
                "io.buoyant.http.domainToPathPfx/{l}/a.b..c",
                "io.buoyant.http.domainToPathPfx/{l}/...",
            ])
        )
            .prop_map(|((j, tail), template)| {
                let text = template.replace("{l}", &format!("l{j}"));
                let mut head = strs(&["$"]);
                head.extend(text.split('/').map(|s| s.as_bytes().to_vec()));
                with_tail(head, tail)
            }),
    ]
    .boxed()
}

fn layered_dentry() -> impl Strategy<Value = Dentry> {
    (0..LAYERS).prop_flat_map(|i| {
        let rest = prop::collection::vec(
            prop_oneof![
                2 => select(vec!["a", "b", "c"]).prop_map(|s| Some(s.as_bytes().to_vec())),
                1 => Just(None),
            ],
            0..2,
        );
        let tree = tree_with(layered_leaf(i + 1), exact_weight().boxed(), 1, 3, 8);
        (rest, tree).prop_map(move |(rest, tree)| {
            let mut elems = vec![Some(layer_label(i))];
            elems.extend(rest);
            Dentry::new(to_prefix(elems), tree)
        })
    })
}

fn layered_dtab() -> impl Strategy<Value = Dtab> {
    prop::collection::vec(layered_dentry(), 0..9).prop_map(Dtab::new)
}

/// Tails made only of the labels layered prefixes use, so that most lookups match.
fn matching_tail() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        select(vec!["a", "b", "c"]).prop_map(|s| s.as_bytes().to_vec()),
        0..4,
    )
}

fn start_path() -> impl Strategy<Value = Path> {
    prop_oneof![
        6 => ((0..2usize), matching_tail()).prop_map(|(i, tail)| with_tail(vec![layer_label(i)], tail)),
        2 => ((0..LAYERS), small_tail()).prop_map(|(i, tail)| with_tail(vec![layer_label(i)], tail)),
        1 => layered_leaf(0),
        1 => path(),
    ]
}

/// Trees without multi-member unions: binding them through a looping dtab stays cheap,
/// because a failure (such as the depth limit) in a reached alternative ends the binding.
fn union_free_tree() -> BoxedStrategy<NameTree<Path>> {
    let leaf = prop_oneof![
        2 => path(),
        2 => (select(vec!["a", "b", "#", "$"]), small_tail())
            .prop_map(|(h, tail)| with_tail(strs(&[h]), tail)),
    ];
    let base = prop_oneof![
        4 => leaf.prop_map(NameTree::Leaf),
        1 => Just(NameTree::Neg),
        1 => Just(NameTree::Fail),
        1 => Just(NameTree::Empty),
    ];
    base.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(NameTree::Alt),
            (exact_weight(), inner)
                .prop_map(|(weight, tree)| NameTree::Union(vec![Weighted { weight, tree }])),
            Just(NameTree::Union(Vec::new())),
        ]
    })
    .boxed()
}

fn looping_dtab() -> impl Strategy<Value = Dtab> {
    let prefix = prop::collection::vec(
        prop_oneof![
            3 => select(vec!["a", "b", "#", "$", "cat"]).prop_map(|s| Some(s.as_bytes().to_vec())),
            1 => Just(None),
        ],
        0..3,
    )
    .prop_map(to_prefix);
    prop::collection::vec(
        (prefix, union_free_tree()).prop_map(|(p, t)| Dentry::new(p, t)),
        0..6,
    )
    .prop_map(Dtab::new)
}

/// Text over the syntax's own alphabet, so that most inputs get deep into the parser.
fn syntax_text() -> impl Strategy<Value = String> {
    let alphabet: Vec<char> = "/ab*#\\x=>;|&()!~$.0123456789 \n".chars().collect();
    prop::collection::vec(select(alphabet), 0..64).prop_map(|cs| cs.into_iter().collect())
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The five syntaxes that share one parser.
trait Syntax: Sized + PartialEq + Debug {
    fn read(s: &str) -> Result<Self, ParseError>;
    fn show(&self) -> String;
}

impl Syntax for Path {
    fn read(s: &str) -> Result<Self, ParseError> {
        Path::read(s)
    }
    fn show(&self) -> String {
        Path::show(self)
    }
}

impl Syntax for Prefix {
    fn read(s: &str) -> Result<Self, ParseError> {
        Prefix::read(s)
    }
    fn show(&self) -> String {
        Prefix::show(self)
    }
}

impl Syntax for NameTree<Path> {
    fn read(s: &str) -> Result<Self, ParseError> {
        read_tree(s)
    }
    fn show(&self) -> String {
        NameTree::show(self)
    }
}

impl Syntax for Dentry {
    fn read(s: &str) -> Result<Self, ParseError> {
        Dentry::read(s)
    }
    fn show(&self) -> String {
        Dentry::show(self)
    }
}

impl Syntax for Dtab {
    fn read(s: &str) -> Result<Self, ParseError> {
        Dtab::read(s)
    }
    fn show(&self) -> String {
        Dtab::show(self)
    }
}

/// `read(show(v)) == v`.
fn exact_round_trip<T: Syntax>(v: &T) -> Result<(), TestCaseError> {
    let shown = v.show();
    let back = T::read(&shown)
        .map_err(|e| TestCaseError::fail(format!("{shown:?} does not read back: {e}")))?;
    prop_assert_eq!(&back, v, "shown as {:?}", shown);
    Ok(())
}

/// Show, read, show again: the second form reads back to the same value and shows the
/// same. (The first show may differ from the second: weights are rounded to two
/// decimals and a rounded weight of `1.00` is then no longer printed.)
fn show_fixpoint<T: Syntax>(v: &T) -> Result<(), TestCaseError> {
    let s1 = v.show();
    let t2 =
        T::read(&s1).map_err(|e| TestCaseError::fail(format!("{s1:?} does not read back: {e}")))?;
    let s2 = t2.show();
    let t3 =
        T::read(&s2).map_err(|e| TestCaseError::fail(format!("{s2:?} does not read back: {e}")))?;
    prop_assert_eq!(&t3, &t2, "{:?} -> {:?}", s1, s2);
    prop_assert_eq!(t3.show(), s2, "first show {:?}", s1);
    Ok(())
}

fn check_offset(input: &str, r: Result<impl Syntax, ParseError>) -> Result<(), TestCaseError> {
    match r {
        Ok(v) => show_fixpoint(&v),
        Err(e) => {
            let chars = input.chars().count();
            prop_assert!(
                e.offset() <= chars,
                "offset {} > {} chars in {:?}: {}",
                e.offset(),
                chars,
                input,
                e
            );
            // The message must be printable too.
            prop_assert!(!e.to_string().is_empty());
            Ok(())
        }
    }
}

fn parse_everything(input: &str) -> Result<(), TestCaseError> {
    check_offset(input, Path::read(input))?;
    check_offset(input, Prefix::read(input))?;
    check_offset(input, read_tree(input))?;
    check_offset(input, Dentry::read(input))?;
    check_offset(input, Dtab::read(input))?;
    Ok(())
}

fn catalog_namers() -> Namers {
    let addr = |port: u16| Address::new(SocketAddr::from(([127, 0, 0, 1], port)));
    let cat = Path::from_strs(["#", "cat"]);
    let mut services = BTreeMap::new();
    services.insert(Path::from_strs(["svc0"]), vec![addr(8080)]);
    services.insert(Path::from_strs(["svc1"]), vec![addr(8081), addr(8082)]);
    services.insert(Path::from_strs(["svc2"]), Vec::new());
    // A second namer on the same prefix answers what the first one does not know.
    let mut two_segments = BTreeMap::new();
    two_segments.insert(Path::from_strs(["svc3", "a"]), vec![addr(9090)]);
    Namers::new(SystemNamer::default())
        .mount(
            cat.clone(),
            Arc::new(StaticNamer::new(cat.clone(), 1, services)),
        )
        .mount(
            cat.clone(),
            Arc::new(StaticNamer::new(cat, 2, two_segments)),
        )
}

/// A bound tree has no `Alt`, and its unions are simplified (at least two members, none
/// of them `Neg` or `Fail`).
fn check_bound_tree(t: &NameTree<Bound>) -> Result<(), TestCaseError> {
    match t {
        NameTree::Alt(_) => Err(TestCaseError::fail(format!(
            "Alt in bound tree: {}",
            t.show()
        ))),
        NameTree::Union(members) => {
            prop_assert!(members.len() >= 2, "unsimplified union {}", t.show());
            for m in members {
                prop_assert!(
                    !matches!(m.tree, NameTree::Neg | NameTree::Fail),
                    "Neg/Fail member in bound union {}",
                    t.show()
                );
                check_bound_tree(&m.tree)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What `simplified` promises about its result.
fn check_simplified_shape(t: &NameTree<Path>) -> Result<(), TestCaseError> {
    match t {
        NameTree::Alt(ts) => {
            prop_assert!(ts.len() >= 2);
            for (i, c) in ts.iter().enumerate() {
                prop_assert!(!matches!(c, NameTree::Neg));
                // Nothing follows a Fail.
                prop_assert!(!matches!(c, NameTree::Fail) || i == ts.len() - 1);
                check_simplified_shape(c)?;
            }
            Ok(())
        }
        NameTree::Union(ws) => {
            prop_assert!(ws.len() >= 2);
            for w in ws {
                prop_assert!(!matches!(w.tree, NameTree::Neg | NameTree::Fail));
                check_simplified_shape(&w.tree)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn count_matches(dtab: &Dtab, p: &Path) -> usize {
    dtab.entries()
        .iter()
        .filter(|e| e.prefix.matches(p))
        .count()
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    // (a) show/read round trips.

    #[test]
    fn path_round_trips_exactly(p in path()) {
        exact_round_trip(&p)?;
        // Escaping is all or nothing per element, in lowercase.
        prop_assert!(!p.show().contains("\\X"));
    }

    #[test]
    fn prefix_round_trips_exactly(p in prefix()) {
        exact_round_trip(&p)?;
    }

    #[test]
    fn canonical_tree_round_trips_exactly(t in canonical_tree()) {
        exact_round_trip(&t)?;
    }

    #[test]
    fn canonical_dentry_round_trips_exactly(p in prefix(), t in canonical_tree()) {
        exact_round_trip(&Dentry::new(p, t))?;
    }

    #[test]
    fn canonical_dtab_round_trips_exactly(d in canonical_dtab()) {
        exact_round_trip(&d)?;
    }

    #[test]
    fn any_tree_show_is_a_fixpoint(t in any_tree()) {
        show_fixpoint(&t)?;
    }

    #[test]
    fn any_dtab_show_is_a_fixpoint(d in any_dtab()) {
        show_fixpoint(&d)?;
        for e in d.entries() {
            show_fixpoint(e)?;
        }
    }

    // (b) simplification.

    #[test]
    fn simplified_is_idempotent_and_evaluation_equivalent(t in any_tree()) {
        let s = t.simplified();
        prop_assert_eq!(&s.simplified(), &s);
        check_simplified_shape(&s)?;
        prop_assert_eq!(s.eval(), t.eval(), "simplified {} of {}", s.show(), t.show());
    }

    // (c) lookup, bind and delegate never panic.

    #[test]
    fn lookup_collects_every_match_last_first(d in any_dtab(), p in path()) {
        let n = count_matches(&d, &p);
        match d.lookup(&p) {
            NameTree::Neg => prop_assert!(n == 0 || n == 1),
            NameTree::Alt(ts) if n > 1 => {
                prop_assert_eq!(ts.len(), n);
                let expected: Vec<_> = d.entries().iter().rev().filter_map(|e| e.rewrite(&p)).collect();
                prop_assert_eq!(ts, expected);
            }
            t => {
                prop_assert_eq!(n, 1);
                let e = d.entries().iter().find(|e| e.prefix.matches(&p)).expect("one match");
                prop_assert_eq!(Some(t), e.rewrite(&p));
            }
        }
    }

    #[test]
    fn lookup_appends_the_residual(p in path(), q in path(), rest in path(), t in canonical_tree()) {
        let d = Dtab::new(vec![Dentry::new(Prefix::from(&p), t.clone())]);
        let full = p.concat(&rest);
        let expected = t.map(&mut |leaf: &Path| leaf.concat(&rest));
        prop_assert_eq!(d.lookup(&full), expected);
        if !q.starts_with(&p) {
            prop_assert_eq!(d.lookup(&q), NameTree::Neg);
        }
    }

    #[test]
    fn bind_and_delegate_layered_dtabs(d in layered_dtab(), p in start_path()) {
        let namers = catalog_namers();
        match namers.bind(&d, &p) {
            Activity::Ok(t) => {
                check_bound_tree(&t)?;
                let _ = t.show();
            }
            Activity::Failed(e) => {
                // Only a namer can fail here: the dtab cannot loop.
                prop_assert!(e.to_string().starts_with("Unknown namer"), "{}", e);
            }
            Activity::Pending => prop_assert!(false, "static namers are never pending"),
        }
        let explained = namers.delegate(&d, &p);
        prop_assert!(explained.is_ok(), "{:?}", explained);
        if let Ok(tree) = explained {
            let json = tree.to_json();
            prop_assert!(json.get("type").is_some());
            let _ = tree.render();
        }
    }

    #[test]
    fn bind_looping_dtabs_never_panics(d in looping_dtab(), p in prop_oneof![path(), start_path()]) {
        let namers = catalog_namers();
        if let Activity::Ok(t) = namers.bind(&d, &p) {
            check_bound_tree(&t)?;
        }
    }

    // (d) parsing arbitrary text never panics, and errors point into the input.

    #[test]
    fn parsing_any_string_never_panics(s in any::<String>()) {
        parse_everything(&s)?;
    }

    #[test]
    fn parsing_syntax_soup_never_panics(s in syntax_text()) {
        parse_everything(&s)?;
    }

    #[test]
    fn local_dtab_reads_any_header_bytes(
        values in prop::collection::vec(
            (select(vec!["l5d-dtab", "L5D-CTX-DTAB", "l5d-ctx-dtab", "dtab-local"]),
             prop_oneof![
                 prop::collection::vec(any::<u8>(), 0..48),
                 syntax_text().prop_map(String::into_bytes),
             ]),
            0..4,
        )
    ) {
        let headers: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        match local_dtab(headers) {
            Ok(d) => show_fixpoint(&d)?,
            Err(e) => {
                // Header bytes are read as ISO-8859-1: one char per byte.
                let longest = values.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
                prop_assert!(e.error.offset() <= longest);
                prop_assert_eq!(e.status(), 400);
            }
        }
    }
}
