//! The DaemonSet mesh of the Kubernetes tutorial on one machine: three "nodes" on
//! loopback (node N owns 127.0.N.0/24: its Plexus on 127.0.N.1, its pods from
//! 127.0.N.10), a simulated Kubernetes API describing them (the layout `plexus demo`
//! runs), and the real `plexus` and `helloworld` binaries. Requests enter node 1's outgoing router, cross to the incoming
//! router of the node running the destination pod, and reach only pods on that node;
//! the test proves each hop from Plexus's own metrics.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use plexus::demo::Layout;
use plexus::sim::{Cluster, EndpointAddress, EndpointPort, Running};
use serde_json::Value;
use support::{Proc, curl, free_port, helloworld_bin, listening, plexus_bin, scratch, wait_for};

const NODES: [u8; 3] = [1, 2, 3];

fn plexus_ip(node: u8) -> String {
    format!("127.0.{node}.1")
}

fn hello_ip(node: u8) -> String {
    format!("127.0.{node}.10")
}

fn world_ip(node: u8) -> String {
    format!("127.0.{node}.11")
}

struct Mesh {
    rt: tokio::runtime::Runtime,
    cluster: Cluster,
    api: Option<Running>,
    api_addr: SocketAddr,
    /// Node → its Plexus.
    _plexus: Vec<Proc>,
    _apps: Vec<Proc>,
}

impl Mesh {
    fn start() -> Mesh {
        let dir = scratch("k8s_mesh");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        // The demo's layout: the same cluster objects and per-node configs users get.
        let layout = Layout::new(3, free_port());
        let cluster = Cluster::new();
        layout.populate(&cluster);
        let api = rt
            .block_on(cluster.start(layout.api))
            .expect("simulated API server starts");
        let api_addr = api.addr();
        let mut mesh = Mesh {
            rt,
            cluster,
            api: Some(api),
            api_addr,
            _plexus: Vec::new(),
            _apps: Vec::new(),
        };
        for n in NODES {
            let config = dir.join(format!("node-{n}.yaml"));
            std::fs::write(&config, layout.node_config(n)).expect("config");
            let mut cmd = Command::new(plexus_bin());
            cmd.arg("run")
                .arg(&config)
                .env("POD_IP", plexus_ip(n))
                .env("NODE_NAME", format!("node-{n}"))
                .env("RUST_LOG", "info");
            mesh._plexus
                .push(Proc::spawn(&mut cmd, dir.join(format!("plexus-{n}.log"))));
        }
        // Only hello and world-v1 run: nothing here routes to world-v2 or api.
        for app in layout
            .apps
            .iter()
            .filter(|a| matches!(a.service, "hello" | "world-v1"))
        {
            let mut cmd = app.command(&helloworld_bin());
            mesh._apps
                .push(Proc::spawn(&mut cmd, dir.join(format!("{}.log", app.pod))));
        }
        for n in NODES {
            for addr in [
                format!("{}:4140", plexus_ip(n)),
                format!("{}:4141", plexus_ip(n)),
                format!("{}:9990", plexus_ip(n)),
                format!("{}:7777", hello_ip(n)),
                format!("{}:7778", world_ip(n)),
            ] {
                let addr: SocketAddr = addr.parse().expect("addr");
                wait_for(&format!("{addr} to listen"), || listening(addr));
            }
        }
        mesh
    }

    fn set_worlds(&self, nodes: &[u8]) {
        let addrs = nodes
            .iter()
            .map(|n| EndpointAddress::ready(&world_ip(*n), &format!("node-{n}")))
            .collect();
        self.cluster.set_endpoints(
            "default",
            "world-v1",
            addrs,
            vec![EndpointPort::tcp("http", 7778)],
        );
    }

    /// The world endpoints node `n`'s Plexus currently knows.
    fn known_worlds(&self, n: u8) -> Vec<String> {
        let state = admin_json(n, "/namer_state/io.l5d.k8s.json");
        let mut ips: Vec<String> = state["namespaces"]["default"]["services"]["world-v1"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|set| set["endpoints"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["ip"].as_str().map(str::to_owned))
            .collect();
        ips.sort();
        ips
    }

    fn wait_worlds(&self, nodes: &[u8]) {
        // A namespace is watched from its first lookup on: make sure each node has
        // looked up world (the delegator binds with the router's real namers).
        for n in NODES {
            admin_json(n, "/delegator.json?namespace=outgoing&path=/svc/world");
        }
        let want: Vec<String> = nodes.iter().map(|n| world_ip(*n)).collect();
        for n in NODES {
            wait_for(&format!("node {n} to see worlds {want:?}"), || {
                self.known_worlds(n) == want
            });
        }
    }

    fn stop_api(&mut self) {
        if let Some(api) = self.api.take() {
            self.rt.block_on(api.stop());
        }
    }

    fn start_api(&mut self) {
        let api = self
            .rt
            .block_on(self.cluster.start(self.api_addr))
            .expect("API restarts");
        self.api = Some(api);
    }
}

fn admin_json(node: u8, path: &str) -> Value {
    let r = curl(&["-sS", &format!("http://{}:9990{path}", plexus_ip(node))]);
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

fn metrics(node: u8) -> BTreeMap<String, f64> {
    let v = admin_json(node, "/admin/metrics.json");
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect()
}

/// Requests counted by a router's clients whose id contains `needle`.
fn client_requests(m: &BTreeMap<String, f64>, router: &str, needle: &str) -> f64 {
    let prefix = format!("rt/{router}/client/");
    m.iter()
        .filter(|(k, _)| k.starts_with(&prefix) && k.ends_with("/requests") && k.contains(needle))
        .filter(|(k, _)| !k.contains("/service/"))
        .map(|(_, v)| *v)
        .sum()
}

/// `Hello (127.0.a.10) world (127.0.b.11)!!` → (a, b).
fn parse_reply(body: &str) -> (u8, u8) {
    let ips: Vec<&str> = body.split(['(', ')']).skip(1).step_by(2).collect();
    assert_eq!(ips.len(), 2, "unexpected reply {body:?}");
    let node = |ip: &str| {
        ip.split('.')
            .nth(2)
            .and_then(|n| n.parse().ok())
            .expect("node")
    };
    (node(ips[0]), node(ips[1]))
}

fn hello_via_node1() -> (u16, String) {
    let r = curl(&["-sS", "-x", "http://127.0.1.1:4140", "http://hello/"]);
    (r.status, r.body)
}

#[test]
fn daemonset_mesh_on_three_loopback_nodes() {
    let mut mesh = Mesh::start();
    mesh.wait_worlds(&[1, 2, 3]);

    // 1. The walk-through, with each hop proven by the routers' own counters.
    let mut seen_hello = [false; 4];
    for _ in 0..12 {
        let before: Vec<_> = NODES.iter().map(|n| metrics(*n)).collect();
        let (status, body) = hello_via_node1();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with("Hello (127.0.")
                && body.contains(") world (127.0.")
                && body.ends_with(")!!"),
            "{body:?}"
        );
        let (a, b) = parse_reply(&body);
        seen_hello[a as usize] = true;
        let after: Vec<_> = NODES.iter().map(|n| metrics(*n)).collect();
        let delta = |n: u8, router: &str, needle: &str| {
            let i = usize::from(n - 1);
            client_requests(&after[i], router, needle) - client_requests(&before[i], router, needle)
        };
        // Left node 1 through its outgoing router, towards node a's Plexus ...
        assert_eq!(
            delta(
                1,
                "outgoing",
                "io.l5d.k8s.daemonset/default/incoming/l5d/#/io.l5d.k8s/default/http/hello"
            ),
            1.0
        );
        // ... entered node a's incoming router only, which sent it to a pod on node a.
        for n in NODES {
            let localnode =
                format!("io.l5d.k8s.localnode/127.0.{n}.1/#/io.l5d.k8s/default/http/hello");
            assert_eq!(
                delta(n, "incoming", &localnode),
                if n == a { 1.0 } else { 0.0 },
                "hello hop, node {n}, reply {body}"
            );
        }
        // hello on node a called world through node a's outgoing router ...
        assert_eq!(
            delta(
                a,
                "outgoing",
                "io.l5d.k8s.daemonset/default/incoming/l5d/#/io.l5d.k8s/default/http/world-v1"
            ),
            1.0
        );
        // ... which reached node b's incoming router, and a world pod on node b.
        for n in NODES {
            let localnode =
                format!("io.l5d.k8s.localnode/127.0.{n}.1/#/io.l5d.k8s/default/http/world-v1");
            assert_eq!(
                delta(n, "incoming", &localnode),
                if n == b { 1.0 } else { 0.0 },
                "world hop, node {n}, reply {body}"
            );
        }
    }
    assert!(
        seen_hello.iter().filter(|s| **s).count() >= 2,
        "traffic spread over nodes: {seen_hello:?}"
    );

    // 2. Scale world down to the pod on node 3, then back up.
    mesh.set_worlds(&[3]);
    mesh.wait_worlds(&[3]);
    for _ in 0..6 {
        let (status, body) = hello_via_node1();
        assert_eq!(status, 200, "{body}");
        assert_eq!(parse_reply(&body).1, 3, "{body}");
    }
    mesh.set_worlds(&[1, 2, 3]);
    mesh.wait_worlds(&[1, 2, 3]);
    assert_eq!(hello_via_node1().0, 200);

    // 3. A pod deleted while the watches are cut: resumed from the resourceVersion, the
    // deletion is seen and the pod (still running) never gets traffic again.
    mesh.cluster.drop_watches();
    mesh.set_worlds(&[1, 3]);
    mesh.wait_worlds(&[1, 3]);
    for _ in 0..6 {
        let (status, body) = hello_via_node1();
        assert_eq!(status, 200, "{body}");
        assert_ne!(
            parse_reply(&body).1,
            2,
            "deleted world pod got traffic: {body}"
        );
    }

    // 4. The API server goes away; a pod is deleted and the history compacted meanwhile,
    // so resuming gets 410 Gone and the watches relist. Requests keep flowing from the
    // last known endpoints throughout, then the deletion takes effect.
    mesh.stop_api();
    mesh.set_worlds(&[3]);
    mesh.cluster.compact(0);
    for _ in 0..3 {
        assert_eq!(hello_via_node1().0, 200);
    }
    mesh.start_api();
    mesh.wait_worlds(&[3]);
    for _ in 0..6 {
        let (status, body) = hello_via_node1();
        assert_eq!(status, 200, "{body}");
        assert_eq!(parse_reply(&body).1, 3, "{body}");
    }

    // 5. The API server restarted mid-load: no request fails.
    mesh.set_worlds(&[1, 2, 3]);
    mesh.wait_worlds(&[1, 2, 3]);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = hello_via_node1();
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failures.push(format!("{status} {body}"));
                }
            }
            failures
        })
    };
    let at = |n: usize| {
        let sent = Arc::clone(&sent);
        move || sent.load(Ordering::Relaxed) >= n
    };
    wait_for("load to start", at(5));
    mesh.stop_api();
    wait_for("load while the API is down", at(15));
    mesh.start_api();
    mesh.cluster.drop_watches();
    wait_for("load after the API is back", at(25));
    stop.store(true, Ordering::Relaxed);
    let failures = load.join().expect("load thread");
    assert!(
        failures.is_empty(),
        "requests failed across the API restart: {failures:?}"
    );
    mesh.stop_api();
}
