//! The dtab tools on the command line, run as a user runs them: the real `plexus`
//! binary, its stdout, stderr and exit status.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn plexus(args: &[&str]) -> Output {
    plexus_stdin(args, None)
}

fn plexus_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plexus starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("plexus runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

fn json_out(args: &[&str]) -> Value {
    serde_json::from_str(&stdout(&plexus(args))).expect("valid JSON")
}

fn catalog(name: &str, yaml: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, yaml).expect("write catalog");
    path.to_string_lossy().into_owned()
}

const CATALOG: &str = "\
- prefix: /#/io.l5d.fs
  services:
    /hello: [\"127.0.0.1:7777\"]
    /world-v1: [\"127.0.1.10:7778\", \"127.0.2.10:7778 * 2\"]
    /world-v2: []
";

const DTAB: &str = "/srv=>/#/io.l5d.fs;/host=>/srv;/svc=>/host;\
                    /host/world=>0.9*/srv/world-v1 & 0.1*/srv/world-v2";

#[test]
fn path_show_prints_the_canonical_form_and_json() {
    assert_eq!(
        stdout(&plexus(&["path", "show", r"  /a/\x41/\xc3\xa9  "])).trim(),
        r"/a/A/\xc3\xa9"
    );
    assert_eq!(
        json_out(&["path", "show", "--json", r"/a/\x41/\xc3\xa9"]),
        json!({"show": r"/a/A/\xc3\xa9", "elems": ["a", "A", "é"], "elems_hex": ["61", "41", "c3a9"]})
    );
}

#[test]
fn dtab_show_canonicalises_and_lists_entries() {
    assert_eq!(
        stdout(&plexus(&[
            "dtab",
            "show",
            " /a => /b ; /t=>0.3*/x&0.7*/y ; "
        ]))
        .trim(),
        "/a=>/b;/t=>0.30*/x & 0.70*/y"
    );
    assert_eq!(
        json_out(&[
            "dtab",
            "show",
            "--json",
            "/svc=>/#/io.l5d.fs # comment\n;/svc/world=>/srv/w"
        ]),
        json!({
            "show": "/svc=>/#/io.l5d.fs;/svc/world=>/srv/w",
            "entries": [
                {"prefix": "/svc", "dst": "/#/io.l5d.fs"},
                {"prefix": "/svc/world", "dst": "/srv/w"},
            ]
        })
    );
}

#[test]
fn nametree_show_and_simplify() {
    assert_eq!(
        stdout(&plexus(&["nametree", "simplify", "~ | $ | /blah"])).trim(),
        "$ | /blah"
    );
    assert_eq!(
        stdout(&plexus(&["nametree", "show", "0.5 * /a"])).trim(),
        "/a"
    );
    assert_eq!(
        json_out(&["nametree", "show", "--json", "~ | /a & 2*/b | !"]),
        json!({"show": "~ | /a & 2.00*/b | !", "simplified": "/a & 2.00*/b | !", "eval": ["/a", "/b"]})
    );
    assert_eq!(
        json_out(&["nametree", "simplify", "--json", "! | /a"])["eval"],
        Value::Null
    );
}

#[test]
fn dtab_lookup_returns_every_match_last_first() {
    assert_eq!(
        json_out(&["dtab", "lookup", "--json", "/a=>/b|/c;/a=>/d|/e", "/a"]),
        json!({"show": "(/d | /e) | (/b | /c)", "simplified": "(/d | /e) | (/b | /c)"})
    );
    assert_eq!(
        stdout(&plexus(&["dtab", "lookup", "/a=>/b;/a/c=>/d", "/a/c"])).trim(),
        "/d | /b/c"
    );
}

#[test]
fn dtab_bind_uses_the_catalog() {
    let cat = catalog("bind.yaml", CATALOG);
    assert_eq!(
        json_out(&[
            "dtab",
            "bind",
            "--json",
            DTAB,
            "/svc/world/extra",
            "--catalog",
            &cat
        ]),
        json!({
            "tree": "0.90*/#/io.l5d.fs/world-v1 & 0.10*/#/io.l5d.fs/world-v2",
            "leaves": [
                {"id": "/#/io.l5d.fs/world-v1", "residual": "/extra",
                 "addrs": ["127.0.1.10:7778", "127.0.2.10:7778"], "state": "bound", "share": 0.9},
                {"id": "/#/io.l5d.fs/world-v2", "residual": "/extra",
                 "addrs": [], "state": "bound", "share": 0.1},
            ]
        })
    );
    // A name no namer knows binds to nothing.
    assert_eq!(
        json_out(&[
            "dtab",
            "bind",
            "--json",
            DTAB,
            "/svc/nope",
            "--catalog",
            &cat
        ])["tree"],
        "~"
    );
    // System namers need no catalog entry.
    let text = stdout(&plexus(&[
        "dtab",
        "bind",
        "/svc=>/$/inet/127.0.0.1/80",
        "/svc/x",
        "--catalog",
        &cat,
    ]));
    assert!(text.starts_with("/$/inet/127.0.0.1/80\n"), "{text}");
    assert!(
        text.contains("residual /x (100.0% of requests): 127.0.0.1:80"),
        "{text}"
    );
}

#[test]
fn dtab_delegate_prints_the_delegator_json() {
    let cat = catalog("delegate.yaml", CATALOG);
    let out = json_out(&[
        "dtab",
        "delegate",
        "--json",
        "/svc=>/#/io.l5d.fs",
        "/svc/hello",
        "--catalog",
        &cat,
    ]);
    assert_eq!(
        out,
        json!({
            "type": "delegate",
            "path": "/svc/hello",
            "delegate": {
                "type": "leaf",
                "path": "/#/io.l5d.fs/hello",
                "dentry": {"prefix": "/svc", "dst": "/#/io.l5d.fs"},
                "bound": {
                    "addr": {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": 7777, "meta": {}}], "meta": {}},
                    "id": "/#/io.l5d.fs/hello",
                    "path": "/",
                }
            }
        })
    );
    let text = stdout(&plexus(&[
        "dtab",
        "delegate",
        DTAB,
        "/svc/world",
        "--catalog",
        &cat,
    ]));
    assert!(text.contains("alternatives"), "{text}");
    assert!(
        text.contains("bound /#/io.l5d.fs/world-v2: no endpoints"),
        "{text}"
    );
    assert!(
        text.contains("/#/io.l5d.fs/world  (via /srv=>/#/io.l5d.fs)  ~ (neg)"),
        "{text}"
    );
}

#[test]
fn arguments_can_come_from_stdin() {
    let out = plexus_stdin(&["dtab", "show", "-"], Some("/a=>/b;\n/c=>/d;\n"));
    assert_eq!(stdout(&out).trim(), "/a=>/b;/c=>/d");
    let out = plexus_stdin(&["dtab", "lookup", "/a=>/b", "-"], Some("/a/x\n"));
    assert_eq!(stdout(&out).trim(), "/b/x");
    let out = plexus_stdin(&["dtab", "lookup", "-", "-"], Some("/a=>/b"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only one argument"));
}

#[test]
fn syntax_errors_show_where_and_exit_2() {
    let out = plexus(&["dtab", "show", "/a=>/b\n/c=>/d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid dtab: end of input expected but '/' found at '/a=>/b\n[/]c=>/d'"),
        "{err}"
    );
    assert!(
        err.contains("at line 2, column 1 (offset 7):\n    /c=>/d\n    ^"),
        "{err}"
    );

    let out = plexus(&["path", "show", "invalid"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'/' expected but 'i' found at '[i]nvalid'")
    );
}

#[test]
fn binding_failures_exit_1_and_bad_catalogs_exit_2() {
    let cat = catalog("ok.yaml", CATALOG);
    let out = plexus(&["dtab", "bind", "/svc=>/$/foo", "/svc/x", "--catalog", &cat]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown namer: foo for path: /$/foo/x"));

    let bad = catalog("bad.yaml", "- prefix: /#/io.l5d.fs\n  servicez: {}\n");
    let out = plexus(&[
        "dtab",
        "bind",
        "/svc=>/#/io.l5d.fs",
        "/svc/x",
        "--catalog",
        &bad,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("servicez") && err.contains("line 2"), "{err}");

    let bad = catalog(
        "bad-addr.yaml",
        "- prefix: /#/x\n  services: {/a: [\"nowhere\"]}\n",
    );
    let out = plexus(&["dtab", "bind", "/svc=>/#/x", "/svc/a", "--catalog", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nowhere\" is not an ip:port address"));
}

#[test]
fn delegate_and_bind_can_use_a_configs_router() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-config");
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).expect("dirs");
    std::fs::write(disco.join("world-v1"), "127.0.1.10 7778\n").expect("file");
    std::fs::write(disco.join("world-v2"), "127.0.2.10 7778 * 3\n").expect("file");
    let config = dir.join("linkerd.yaml");
    std::fs::write(
        &config,
        format!(
            "namers:\n- kind: io.l5d.fs\n  rootDir: {}\nrouters:\n- protocol: http\n  label: outgoing\n  \
             dtab: /svc=>/#/io.l5d.fs/world-v1\n  interpreter:\n    kind: default\n    transformers:\n    \
             - kind: io.l5d.port\n      port: 4141\n  servers: [{{port: 4140}}]\n",
            disco.display()
        ),
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let base = ["--config", config.as_str(), "--router", "outgoing"];

    let bound = json_out(&[&["dtab", "bind", "--json"][..], &base, &["", "/svc/x"]].concat());
    assert_eq!(bound["tree"], "/%/io.l5d.port/4141/#/io.l5d.fs/world-v1");
    assert_eq!(bound["leaves"][0]["addrs"], json!(["127.0.1.10:4141"]));
    assert_eq!(bound["leaves"][0]["residual"], "/x");

    // The DTAB argument is appended to the router's dtab, like an l5d-dtab override.
    let over = json_out(
        &[
            &["dtab", "delegate", "--json"][..],
            &base,
            &["/svc=>/#/io.l5d.fs/world-v2", "/svc"],
        ]
        .concat(),
    );
    assert_eq!(over["type"], "alt", "{over}");
    assert_eq!(over["alt"][0]["type"], "transformation");
    assert_eq!(over["alt"][0]["bound"]["id"], "/#/io.l5d.fs/world-v2");
    assert_eq!(
        over["alt"][0]["tree"]["bound"]["id"],
        "/%/io.l5d.port/4141/#/io.l5d.fs/world-v2"
    );

    let out = plexus(
        &[
            &["dtab", "bind"][..],
            &["--config", config.as_str(), "--router", "nope"],
            &["", "/svc"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no router \"nope\" (routers: outgoing)")
    );
}
