//! Reading Linkerd 1.x configuration files: the tutorials' real files, strictness about
//! unknown keys, and naming every kind and key Plexus cannot run yet.

use std::path::PathBuf;

use plexus::config::{Config, Namer, Router};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/linkerd-examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".l5d-config.config.yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_tutorial_config_is_read_and_whatever_cannot_run_is_named() {
    let files = examples();
    assert_eq!(files.len(), 14, "the tutorial configs: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for problem in config.validate() {
            assert!(
                problem.ends_with("is not supported yet"),
                "{}: {problem}",
                file.display()
            );
        }
    }
}

#[test]
fn the_daemonset_tutorial_config_runs_as_it_is() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/linkerd-examples/linkerd.l5d-config.config.yaml");
    let config = Config::parse(&std::fs::read_to_string(file).expect("read")).expect("parses");
    assert_eq!(config.validate(), Vec::<String>::new());
    let Router::Http(outgoing) = &config.routers[0] else {
        panic!("http router")
    };
    assert_eq!(outgoing.label.as_deref(), Some("outgoing"));
    assert_eq!(outgoing.servers[0].port, Some(4140));
}

const FS_CONFIG: &str = "\
admin:
  port: 9990
namers:
- kind: io.l5d.fs
  rootDir: disco
routers:
- protocol: http
  label: outgoing
  dtab: |
    /svc => /#/io.l5d.fs ;   # every service is a file
  identifier:
  - kind: io.l5d.header.token
  - kind: io.l5d.path
    segments: 2
  servers:
  - port: 4140
    ip: 0.0.0.0
    clearContext: true
telemetry:
- kind: io.l5d.prometheus
usage:
  orgId: plexus-tests
";

#[test]
fn a_file_namer_config_is_valid() {
    let config = Config::parse(FS_CONFIG).expect("parses");
    assert_eq!(config.validate(), Vec::<String>::new());
    let Namer::Fs(fs) = &config.namers[0] else {
        panic!("fs namer")
    };
    assert_eq!(fs.root_dir, PathBuf::from("disco"));
    let Router::Http(r) = &config.routers[0] else {
        panic!("http router")
    };
    assert_eq!(r.dtab.show(), "/svc=>/#/io.l5d.fs");
    assert_eq!(r.identifier.as_ref().map(|i| i.as_slice().len()), Some(2));
    assert_eq!(r.servers[0].clear_context, Some(true));
}

#[test]
fn json_files_are_read_too() {
    let json = r#"{"routers": [{"protocol": "http", "dtab": "/svc=>/$/inet/127.0.0.1/8080", "servers": [{"port": 4140}]}]}"#;
    assert_eq!(
        Config::parse(json).expect("parses").validate(),
        Vec::<String>::new()
    );
}

#[test]
fn unknown_keys_are_errors_with_line_and_column() {
    let bad = FS_CONFIG.replace("rootDir", "rootDirectory");
    let err = Config::parse(&bad).expect_err("unknown key").to_string();
    assert!(
        err.contains("unknown field `rootDirectory`, expected one of rootDir"),
        "{err}"
    );
    assert!(err.contains("line 4 column 3"), "{err}");

    let bad = FS_CONFIG.replace("kind: io.l5d.fs", "kind: io.l5d.fss");
    let err = Config::parse(&bad).expect_err("unknown kind").to_string();
    assert!(err.contains("unknown variant `io.l5d.fss`"), "{err}");

    let bad = FS_CONFIG.replace("/svc => /#/io.l5d.fs ;", "/svc -> /#/io.l5d.fs ;");
    let err = Config::parse(&bad).expect_err("bad dtab").to_string();
    assert!(
        err.contains("invalid dtab: '=' expected but '-' found at '/svc [-]> /#/io.l5d.fs"),
        "{err}"
    );
}

#[test]
fn rule_violations_are_reported_together() {
    let config = Config::parse(
        "routers:\n- protocol: http\n  servers: [{port: 1}]\n- protocol: http\n  servers: [{port: 1}]\n\
         - protocol: http\n  label: x\n  servers: []\n  client:\n    kind: io.l5d.static\n",
    )
    .expect("parses");
    assert_eq!(
        config.validate(),
        vec![
            "routers[1] (http): label http is used by another router; labels must be unique",
            "routers[1] (http).servers[0]: 127.0.0.1:1 is already used by another server",
            "routers[2] (x): servers: at least one server is required",
            "routers[2] (x).client: kind io.l5d.static needs configs",
        ]
    );
    assert_eq!(
        Config::parse("routers: []\n").expect("parses").validate(),
        vec!["routers: at least one router is required"]
    );
}

#[test]
fn static_block_prefixes_must_be_matchers() {
    let config = Config::parse(
        "routers:\n- protocol: http\n  servers: [{port: 1}]\n  client:\n    kind: io.l5d.static\n    configs:\n    \
         - prefix: \"/$/inet/{service}\"\n    - prefix: \"no-slash\"\n",
    )
    .expect("parses");
    assert_eq!(
        config.validate(),
        vec![
            "routers[0] (http).client.configs[1]: invalid prefix \"no-slash\": must start with '/'"
        ]
    );
}

#[test]
fn resilience_settings_out_of_range_are_named() {
    let config = Config::parse(
        "routers:\n- protocol: http\n  servers: [{port: 1}]\n  service:\n    retries:\n      \
         budget: {ttlSecs: 0, percentCanRetry: -1}\n      backoff: {kind: jittered, minMs: 10, maxMs: 5}\n  \
         client:\n    failureAccrual: {kind: io.l5d.successRate, successRate: 1.5, requests: 0}\n    \
         requeueBudget: {ttlSecs: 61}\n",
    )
    .expect("parses");
    assert_eq!(
        config.validate(),
        vec![
            "routers[0] (http).service.retries.budget: ttlSecs must be between 1 and 60, not 0",
            "routers[0] (http).service.retries.budget: percentCanRetry must be between 0 and 1000, not -1",
            "routers[0] (http).service.retries.backoff: minMs (10) must not be above maxMs (5)",
            "routers[0] (http).client.requeueBudget: ttlSecs must be between 1 and 60, not 61",
            "routers[0] (http).client.failureAccrual: successRate must be between 0 and 1, not 1.5",
            "routers[0] (http).client.failureAccrual: requests must be at least 1",
        ]
    );
}

#[test]
fn h2_routers_take_h2_keys_and_refuse_http_ones() {
    let good = "routers:\n- protocol: h2\n  dtab: /svc => /#/io.l5d.fs;\n  identifier:\n    kind: io.l5d.header.path\n    segments: 1\n  service:\n    responseClassifier:\n      kind: io.l5d.h2.retryableRead5XX\n  servers:\n  - port: 4142\n    maxConcurrentStreamsPerConnection: 100\n    initialStreamWindowBytes: 1048576\n";
    let config = Config::parse(good).expect("parses");
    assert_eq!(config.validate(), Vec::<String>::new());
    let bad = "routers:\n- protocol: h2\n  maxHeadersKB: 16\n  identifier:\n    kind: io.l5d.methodAndHost\n  service:\n    responseClassifier:\n      kind: io.l5d.http.retryableRead5XX\n  servers:\n  - port: 4142\n- protocol: http\n  servers:\n  - port: 4140\n    maxFrameBytes: 32768\n";
    let problems = Config::parse(bad).expect("parses").validate();
    assert_eq!(
        problems,
        vec![
            "routers[0] (h2): key maxHeadersKB is for http routers; this is an h2 router",
            "routers[0] (h2).identifier: identifier kind io.l5d.methodAndHost is for http routers; this is an h2 router",
            "routers[0] (h2).service: responseClassifier kind io.l5d.http.retryableRead5XX is for http routers",
            "routers[1] (http).servers[0]: key maxFrameBytes is for h2 routers; this is an http router",
        ]
    );
}

#[test]
fn grpc_classifiers_take_their_codes_and_only_theirs() {
    let config = |classifier: &str| {
        format!(
            "routers:\n- protocol: h2\n  service:\n    responseClassifier: {classifier}\n  servers:\n  - port: 4142\n"
        )
    };
    let problems = |classifier: &str| {
        Config::parse(&config(classifier))
            .expect("parses")
            .validate()
    };
    assert!(problems("{kind: io.l5d.h2.grpc.default, successStatusCodes: [0, 5]}").is_empty());
    assert!(
        problems("{kind: io.l5d.h2.grpc.retryableStatusCodes, retryableStatusCodes: [14, 8]}")
            .is_empty()
    );
    assert_eq!(
        problems("{kind: io.l5d.h2.grpc.retryableStatusCodes}"),
        vec![
            "routers[0] (h2).service.responseClassifier: io.l5d.h2.grpc.retryableStatusCodes needs retryableStatusCodes"
        ]
    );
    assert_eq!(
        problems(
            "{kind: io.l5d.h2.grpc.default, retryableStatusCodes: [1], successStatusCodes: [17]}"
        ),
        vec![
            "routers[0] (h2).service.responseClassifier.successStatusCodes: 17 is not a gRPC status code (0 to 16)",
            "routers[0] (h2).service.responseClassifier: retryableStatusCodes is not a setting of io.l5d.h2.grpc.default",
        ]
    );
}

#[test]
fn thrift_routers_take_linkerds_keys_and_refuse_http_ones() {
    // The shape of Linkerd's shipped thrift example, and a thriftmux router.
    let good = "routers:\n- protocol: thrift\n  thriftMethodInDst: true\n  thriftProtocol: binary\n  \
                dtab: /svc => /#/io.l5d.fs/thrift;\n  servers:\n  - port: 4114\n    ip: 0.0.0.0\n    thriftFramed: true\n  \
                client:\n    thriftFramed: true\n    attemptTTwitterUpgrade: true\n  \
                service:\n    totalTimeoutMs: 500\n    idempotentMethods: [get, list]\n\
                - protocol: thriftmux\n  experimental: true\n  thriftProtocol: compact\n  servers:\n  - port: 4144\n  \
                client:\n    peerUpgrades: [mux]\n";
    let config = Config::parse(good).expect("parses");
    assert_eq!(config.validate(), Vec::<String>::new());
    let bad = "routers:\n- protocol: thrift\n  thriftProtocol: json\n  servers: [{port: 4114}]\n";
    let e = Config::parse(bad).expect_err("json is not a Thrift protocol Plexus reads");
    assert!(e.to_string().contains("json"), "{e}");
    let bad = "routers:\n- protocol: thrift\n  service:\n    responseClassifier:\n      kind: io.l5d.http.retryableRead5XX\n  \
               client:\n    peerUpgrades: [h2]\n  servers:\n  - port: 4114\n    clearContext: true\n\
               - protocol: http\n  service:\n    idempotentMethods: [get]\n  client:\n    thriftFramed: false\n    peerUpgrades: [mux]\n  \
               servers:\n  - port: 4140\n    thriftFramed: true\n";
    let problems = Config::parse(bad).expect("parses").validate();
    assert_eq!(
        problems,
        vec![
            "routers[0] (thrift).servers[0]: key clearContext is for http and h2 routers; this is a thrift router",
            "routers[0] (thrift).service: responseClassifier kind io.l5d.http.retryableRead5XX is for http and h2 routers; thrift routers classify replies by their type (see idempotentMethods)",
            "routers[0] (thrift).client.peerUpgrades: unknown upgrade \"h2\" for this router; known: mux",
            "routers[1] (http).servers[0]: key thriftFramed is for thrift routers; this is an http router",
            "routers[1] (http).service: key idempotentMethods is for thrift routers; HTTP methods say whether they are idempotent",
            "routers[1] (http).client: key thriftFramed is for thrift routers; this is an HTTP router",
            "routers[1] (http).client.peerUpgrades: unknown upgrade \"mux\" for this router; known: h2, tls",
        ]
    );
}
