//! The Kubernetes manifests in `k8s/` are what users apply to a real cluster, and no
//! cluster runs here, so this test checks them the way the cluster would: it renders
//! them with `kubectl kustomize`, validates every document against the Kubernetes 1.33
//! API schemas with `kubernetes-validate --strict`, asserts the facts the mesh depends
//! on (host ports, the `incoming` port of Service `l5d`, RBAC for endpoint watches,
//! the apps' `http_proxy`), and runs `plexus check` on the configuration the ConfigMap
//! carries.
//!
//! The tools are required, not optional: `scripts/test.sh` installs them and exports
//! `PLEXUS_KUBECTL` and `PLEXUS_KUBERNETES_VALIDATE`; without those variables the test
//! looks in `target/tools/venv/bin`, then on `PATH`, and fails if a tool is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The Kubernetes version the manifests must be valid for.
const KUBERNETES_VERSION: &str = "1.33.0";

/// The API groups/versions the manifests may use: current, non-deprecated ones.
const CURRENT_APIS: &[&str] = &["v1", "apps/v1", "rbac.authorization.k8s.io/v1"];

/// The l5d DaemonSet's ports, by name: each is a container and host port, and a port of
/// the `l5d` Service.
const L5D_PORTS: [(&str, u16); 5] = [
    ("outgoing", 4140),
    ("incoming", 4141),
    ("thrift-outgoing", 4114),
    ("thrift-incoming", 4115),
    ("admin", 9990),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Finds a tool: the environment variable, then the venv `scripts/test.sh` makes, then
/// `PATH`. Missing tools fail the test loudly.
fn tool(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{variable}={} is not a file",
            path.display()
        );
        return path;
    }
    let venv = repo().join("target/tools/venv/bin").join(name);
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run ./scripts/test.sh (it installs it) or set {variable}"
            )
        })
}

fn run(command: &mut Command) -> (bool, String, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The output of `kubectl kustomize k8s`, rendered once for all tests.
fn rendered() -> &'static str {
    static RENDERED: OnceLock<String> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let kubectl = tool("PLEXUS_KUBECTL", "kubectl");
        let (ok, stdout, stderr) = run(Command::new(&kubectl)
            .arg("kustomize")
            .arg(repo().join("k8s")));
        assert!(ok, "{} kustomize k8s failed: {stderr}", kubectl.display());
        stdout
    })
}

/// The rendered documents, parsed.
fn documents() -> &'static [Value] {
    static DOCUMENTS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(rendered()).expect("kubectl kustomize prints valid YAML");
        let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
        assert!(!docs.is_empty(), "kubectl kustomize rendered nothing");
        docs
    })
}

fn find(kind: &str, name: &str) -> &'static Value {
    documents()
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

/// The one document of a kind (its name may carry a generated suffix).
fn only(kind: &str) -> &'static Value {
    let mut of_kind = documents().iter().filter(|d| d["kind"] == kind);
    let doc = of_kind
        .next()
        .unwrap_or_else(|| panic!("no {kind} in the rendered manifests"));
    assert!(of_kind.next().is_none(), "more than one {kind}");
    doc
}

fn str_list(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, got {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {v}"))
        })
        .collect()
}

/// The pod template's only container.
fn container(workload: &Value) -> &Value {
    let containers = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(
        containers.len(),
        1,
        "one container in {}",
        workload["metadata"]
    );
    &containers[0]
}

/// An env entry by name, with its position.
fn env<'a>(container: &'a Value, name: &str) -> Option<(usize, &'a Value)> {
    container["env"]
        .as_array()?
        .iter()
        .enumerate()
        .find(|(_, e)| e["name"] == name)
}

fn field_ref(container: &Value, name: &str) -> String {
    let (_, entry) = env(container, name).unwrap_or_else(|| panic!("env {name} is missing"));
    entry["valueFrom"]["fieldRef"]["fieldPath"]
        .as_str()
        .unwrap_or_else(|| panic!("env {name} is not from the downward API: {entry}"))
        .to_string()
}

fn write_tmp(name: &str, text: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("write to the test directory");
    path
}

fn kubernetes_validate(file: &Path) -> (bool, String, String) {
    run(
        Command::new(tool("PLEXUS_KUBERNETES_VALIDATE", "kubernetes-validate"))
            .args(["-k", KUBERNETES_VERSION, "--strict"])
            .arg(file),
    )
}

#[test]
fn every_rendered_document_is_valid_for_kubernetes_1_33() {
    let file = write_tmp("k8s-rendered.yaml", rendered());
    let (ok, stdout, stderr) = kubernetes_validate(&file);
    assert!(ok, "kubernetes-validate failed:\n{stdout}{stderr}");
    // One "passed" line per document: nothing was skipped as unknown.
    let passed = format!("{stdout}{stderr}")
        .lines()
        .filter(|l| l.contains("passed for resource") && l.contains("against version 1.33"))
        .count();
    assert_eq!(
        passed,
        documents().len(),
        "every document validated:\n{stdout}{stderr}"
    );

    // The validator is strict: an unknown field in the DaemonSet is refused.
    let mut broken: Vec<Value> = documents().to_vec();
    let daemonset = broken
        .iter_mut()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    daemonset["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPrt"] = json!(4140);
    let text: Vec<String> = broken.iter().map(Value::to_string).collect();
    let file = write_tmp("k8s-broken.yaml", &text.join("\n---\n"));
    let (ok, stdout, stderr) = kubernetes_validate(&file);
    assert!(!ok, "a misspelt field must not validate:\n{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("hostPrt"),
        "the error names the field:\n{stdout}{stderr}"
    );
}

#[test]
fn manifests_use_current_apis_in_the_default_namespace() {
    for doc in documents() {
        let api = doc["apiVersion"].as_str().expect("apiVersion");
        assert!(CURRENT_APIS.contains(&api), "{api} in {}", doc["metadata"]);
        let cluster_scoped = matches!(
            doc["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding")
        );
        if !cluster_scoped {
            assert_eq!(
                doc["metadata"]["namespace"], "default",
                "{}",
                doc["metadata"]
            );
        }
    }
    let kinds: Vec<&str> = documents()
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    for kind in [
        "DaemonSet",
        "ConfigMap",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "Deployment").count(), 4);
    assert_eq!(kinds.iter().filter(|k| **k == "Service").count(), 5);
}

#[test]
fn daemonset_runs_plexus_on_every_host_with_the_mesh_ports() {
    let ds = find("DaemonSet", "l5d");
    assert_eq!(ds["apiVersion"], "apps/v1");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "l5d");
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"]["app"],
        ds["spec"]["template"]["metadata"]["labels"]["app"]
    );

    let c = container(ds);
    assert_eq!(c["image"], "plexus/plexus:0.1.0");
    let mut command = str_list(&c["command"]);
    command.extend(str_list(&c["args"]));
    assert_eq!(command, ["plexus", "run", "/config/config.yaml"]);

    let ports = c["ports"].as_array().expect("ports");
    for (name, port) in L5D_PORTS {
        let p = ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"));
        assert_eq!(p["containerPort"], port, "{name}");
        assert_eq!(p["hostPort"], port, "{name} is a hostPort");
    }

    assert_eq!(field_ref(c, "POD_IP"), "status.podIP");
    assert_eq!(field_ref(c, "NODE_NAME"), "spec.nodeName");

    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/admin/ping", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    for bound in ["requests", "limits"] {
        assert!(
            c["resources"][bound]["memory"].is_string(),
            "{bound}.memory"
        );
        assert!(!c["resources"][bound]["cpu"].is_null(), "{bound}.cpu");
    }

    // The config volume names the generated ConfigMap (with its content hash, so a
    // config change rolls the pods) and is mounted where `plexus run` reads it.
    let config_map = only("ConfigMap");
    let generated = config_map["metadata"]["name"].as_str().expect("name");
    assert!(
        generated.starts_with("l5d-config-") && generated.len() > "l5d-config-".len(),
        "the ConfigMap name carries a content hash: {generated}"
    );
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"]["name"] == generated)
        .unwrap_or_else(|| panic!("no volume from ConfigMap {generated}"));
    let mount = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the config volume is mounted");
    assert_eq!(mount["mountPath"], "/config");
}

#[test]
fn service_l5d_names_the_incoming_port_for_the_daemonset_transformer() {
    let svc = find("Service", "l5d");
    assert_eq!(svc["spec"]["selector"]["app"], "l5d");
    let ports = svc["spec"]["ports"].as_array().expect("ports");
    for (name, port) in L5D_PORTS {
        let p = ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("Service l5d has no port named {name}"));
        assert_eq!(p["port"], port, "{name}");
        assert_eq!(p["targetPort"], name, "{name}");
    }
}

#[test]
fn rbac_lets_plexus_list_and_watch_what_discovery_reads() {
    let role = find("ClusterRole", "plexus-endpoints-reader");
    let rules = role["rules"].as_array().expect("rules");
    let allows = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            str_list(&r["apiGroups"]).contains(&group)
                && str_list(&r["resources"]).contains(&resource)
                && str_list(&r["verbs"]).contains(&verb)
        })
    };
    for verb in ["get", "list", "watch"] {
        assert!(allows("discovery.k8s.io", "endpointslices", verb), "{verb}");
        for resource in ["endpoints", "services", "pods", "nodes"] {
            assert!(allows("", resource, verb), "{verb} {resource}");
        }
    }
    // Read-only.
    for rule in rules {
        for verb in str_list(&rule["verbs"]) {
            assert!(["get", "list", "watch"].contains(&verb), "{verb}");
        }
    }

    let binding = find("ClusterRoleBinding", "plexus-endpoints-reader");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "plexus-endpoints-reader");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "l5d", "namespace": "default"}])
    );
    find("ServiceAccount", "l5d");
}

#[test]
fn demo_apps_run_three_replicas_behind_their_node_plexus() {
    let apps = [
        ("hello", 7777, "-addr=:7777 -text=Hello -target=world", None),
        ("world-v1", 7778, "-addr=:7778", Some("world")),
        ("world-v2", 7778, "-addr=:7778", Some("earth")),
        (
            "api",
            7779,
            "-addr=:7779 -text=api -target=hello -json",
            None,
        ),
    ];
    for (name, port, args, world) in apps {
        let deployment = find("Deployment", name);
        assert_eq!(deployment["apiVersion"], "apps/v1");
        assert_eq!(deployment["spec"]["replicas"], 3, "{name}");
        let c = container(deployment);
        assert_eq!(c["image"], "plexus/helloworld:0.1.0", "{name}");
        assert_eq!(str_list(&c["command"]), ["helloworld"], "{name}");
        assert_eq!(str_list(&c["args"]).join(" "), args, "{name}");
        assert_eq!(c["ports"][0]["name"], "http", "{name}");
        assert_eq!(c["ports"][0]["containerPort"], port, "{name}");
        assert_eq!(field_ref(c, "POD_IP"), "status.podIP", "{name}");
        assert_eq!(field_ref(c, "NODE_NAME"), "spec.nodeName", "{name}");

        // Apps that call another send through their node's Plexus. Kubernetes expands
        // $(NODE_NAME) only if NODE_NAME is defined earlier in the list.
        if args.contains("-target=") {
            let (node_at, _) = env(c, "NODE_NAME").expect("NODE_NAME");
            let (proxy_at, proxy) =
                env(c, "http_proxy").unwrap_or_else(|| panic!("{name} has no http_proxy"));
            assert_eq!(proxy["value"], "$(NODE_NAME):4140", "{name}");
            assert!(node_at < proxy_at, "{name}: NODE_NAME before http_proxy");
        }
        match world {
            Some(text) => assert_eq!(
                env(c, "TARGET_WORLD").expect("TARGET_WORLD").1["value"],
                text
            ),
            None => assert!(env(c, "TARGET_WORLD").is_none(), "{name}"),
        }

        // The namer's paths use the port name: /#/io.l5d.k8s/default/http/<name>.
        let svc = find("Service", name);
        assert_eq!(svc["spec"]["selector"]["app"], name);
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "http", "port": port, "targetPort": "http"}]),
            "{name}"
        );
    }
    assert_eq!(find("Service", "hello")["spec"]["clusterIP"], "None");
}

/// The configuration carried by the ConfigMap.
fn plexus_config_text() -> &'static str {
    only("ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("the ConfigMap holds config.yaml")
}

#[test]
fn configmap_holds_the_per_host_mesh_config() {
    let config: Value = serde_saphyr::from_str(plexus_config_text()).expect("config is YAML");
    assert_eq!(config["admin"], json!({"ip": "0.0.0.0", "port": 9990}));
    // In-cluster credentials: no host/port.
    assert_eq!(config["namers"], json!([{"kind": "io.l5d.k8s"}]));
    assert_eq!(config["telemetry"], json!([{"kind": "io.l5d.prometheus"}]));

    let dtab = "/srv=>/#/io.l5d.k8s/default/http;/host=>/srv;/svc=>/host;\
                /host/world=>/srv/world-v1;";
    let routers = config["routers"].as_array().expect("routers");
    assert_eq!(routers.len(), 4);
    let [outgoing, incoming] = [&routers[0], &routers[1]];
    // Thrift: the same two hops, the one between nodes upgraded to Mux.
    let [thrift_out, thrift_in] = [&routers[2], &routers[3]];
    for (router, label, port) in [
        (thrift_out, "thrift-outgoing", 4114),
        (thrift_in, "thrift-incoming", 4115),
    ] {
        assert_eq!(router["protocol"], "thrift");
        assert_eq!(router["label"], label);
        assert_eq!(router["servers"], json!([{"port": port, "ip": "0.0.0.0"}]));
    }
    assert_eq!(thrift_out["client"]["peerUpgrades"], json!(["mux"]));
    assert_eq!(
        thrift_out["interpreter"]["transformers"],
        json!([{"kind": "io.l5d.k8s.daemonset", "namespace": "default",
                "port": "thrift-incoming", "service": "l5d"}])
    );
    assert_eq!(
        thrift_in["interpreter"]["transformers"],
        json!([{"kind": "io.l5d.k8s.localnode"}])
    );
    for (router, label, port) in [(outgoing, "outgoing", 4140), (incoming, "incoming", 4141)] {
        assert_eq!(router["protocol"], "http");
        assert_eq!(router["label"], label);
        assert_eq!(router["servers"], json!([{"port": port, "ip": "0.0.0.0"}]));
        let compact: String = router["dtab"]
            .as_str()
            .expect("dtab")
            .split_whitespace()
            .collect();
        assert_eq!(compact, dtab, "{label}");
    }
    assert_eq!(
        outgoing["interpreter"]["transformers"],
        json!([{"kind": "io.l5d.k8s.daemonset", "namespace": "default",
                "port": "incoming", "service": "l5d"}])
    );
    assert_eq!(
        outgoing["service"]["responseClassifier"]["kind"],
        "io.l5d.http.retryableRead5XX"
    );
    assert_eq!(
        incoming["interpreter"]["transformers"],
        json!([{"kind": "io.l5d.k8s.localnode"}])
    );
}

#[test]
fn plexus_check_accepts_the_configmap_config() {
    let file = write_tmp("k8s-config.yaml", plexus_config_text());
    let (ok, stdout, stderr) = run(Command::new(env!("CARGO_BIN_EXE_plexus"))
        .arg("check")
        .arg(&file));
    assert!(ok, "plexus check failed:\n{stdout}{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(
        stdout.contains("router outgoing (http) on 0.0.0.0:4140"),
        "{stdout}"
    );
    assert!(
        stdout.contains("router incoming (http) on 0.0.0.0:4141"),
        "{stdout}"
    );
    assert!(
        stdout.contains("router thrift-outgoing (thrift) on 0.0.0.0:4114 (framed)"),
        "{stdout}"
    );
}
