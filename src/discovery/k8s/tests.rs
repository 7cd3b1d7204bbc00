//! The Kubernetes namer and transformers: the pure model, then the real watch actors
//! against the cluster simulator (disconnects, 410 relists, restarts, old clusters).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;

use super::model::{EndpointSet, Namespace, ServicePorts, TargetPort};
use super::*;
use crate::naming::{Address, Transformer};
use crate::sim::{
    Cluster, EndpointAddress, EndpointPort, Running, Service, ServicePort, SimConfig,
};

fn set(service: &str, ports: &[(&str, u16)], ips: &[(&str, &str)]) -> EndpointSet {
    EndpointSet {
        service: service.into(),
        labels: [("app".to_owned(), service.to_owned())].into(),
        ports: ports.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect(),
        endpoints: ips
            .iter()
            .map(|(ip, node)| model::Endpoint {
                ip: ip.parse().unwrap(),
                node: Some((*node).to_owned()),
            })
            .collect(),
    }
}

fn addrs(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Bound(a) => a.iter().map(|a| a.addr.to_string()).collect(),
        other => panic!("expected addresses, got {other:?}"),
    }
}

fn ready_namespace() -> Namespace {
    let mut ns = Namespace::default();
    ns.endpoints.ready = true;
    ns.services.ready = true;
    ns.endpoints.objects.insert(
        "world-abc".into(),
        vec![set(
            "world",
            &[("http", 7778)],
            &[("127.0.2.10", "node-2"), ("127.0.1.10", "node-1")],
        )],
    );
    ns.endpoints.objects.insert(
        "world-def".into(),
        vec![set("world", &[("http", 7778)], &[("127.0.3.10", "node-3")])],
    );
    ns.services.objects.insert(
        "world".into(),
        ServicePorts {
            ports: vec![
                (80, TargetPort::Name("http".into())),
                (8080, TargetPort::Number(9000)),
            ],
        },
    );
    ns
}

#[test]
fn named_ports_bind_every_slice_of_the_service_sorted() {
    let ns = ready_namespace();
    let r = ns.resolve("world", &PortRef::Name("http".into()), None);
    assert_eq!(
        addrs(&r),
        ["127.0.1.10:7778", "127.0.2.10:7778", "127.0.3.10:7778"]
    );
    if let Resolution::Bound(a) = &r {
        assert_eq!(
            a[0].meta.get(model::NODE_NAME_META).map(String::as_str),
            Some("node-1")
        );
    }
    assert_eq!(
        ns.resolve("world", &PortRef::Name("grpc".into()), None),
        Resolution::Neg
    );
    assert_eq!(
        ns.resolve("nope", &PortRef::Name("http".into()), None),
        Resolution::Neg
    );
}

#[test]
fn numbered_ports_go_through_the_service_target_port() {
    let ns = ready_namespace();
    // 80 → targetPort "http" → 7778 on the endpoints.
    assert_eq!(
        addrs(&ns.resolve("world", &PortRef::Number(80), None)).len(),
        3
    );
    assert!(addrs(&ns.resolve("world", &PortRef::Number(80), None))[0].ends_with(":7778"));
    // 8080 → targetPort 9000, used as is.
    assert!(addrs(&ns.resolve("world", &PortRef::Number(8080), None))[0].ends_with(":9000"));
    // Not a service port.
    assert_eq!(
        ns.resolve("world", &PortRef::Number(7778), None),
        Resolution::Neg
    );
}

#[test]
fn lookups_are_pending_until_listed_and_labels_filter() {
    let mut ns = Namespace::default();
    assert_eq!(
        ns.resolve("world", &PortRef::Name("http".into()), None),
        Resolution::Pending
    );
    ns.endpoints.ready = true;
    assert_eq!(
        ns.resolve("world", &PortRef::Name("http".into()), None),
        Resolution::Neg
    );
    let ns = ready_namespace();
    let http = PortRef::Name("http".into());
    assert_eq!(
        addrs(&ns.resolve("world", &http, Some(("app", "world")))).len(),
        3
    );
    assert_eq!(
        ns.resolve("world", &http, Some(("app", "hello"))),
        Resolution::Neg
    );
}

#[test]
fn slices_keep_only_ready_tcp_endpoints() {
    let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "w-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "world", "version": "v1"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["127.0.1.10"], "conditions": {"ready": true}, "nodeName": "node-1"},
            {"addresses": ["127.0.1.11"], "conditions": {"ready": false}, "nodeName": "node-1"},
            {"addresses": ["127.0.2.10"], "nodeName": "node-2"},
            {"addresses": ["not-an-ip"]}
        ],
        "ports": [{"name": "http", "port": 7778}, {"name": "dns", "port": 53, "protocol": "UDP"}]
    }))
    .unwrap();
    let s = model::from_slice(&slice).unwrap();
    assert_eq!(s.service, "world");
    assert_eq!(s.ports.len(), 1);
    let ips: Vec<String> = s.endpoints.iter().map(|e| e.ip.to_string()).collect();
    assert_eq!(ips, ["127.0.1.10", "127.0.2.10"]);
}

#[test]
fn lookup_paths_follow_linkerd() {
    let backend = K8sBackend::new(Connection::proxy("127.0.0.1", 1).unwrap(), Epoch::new());
    backend
        .entry("default")
        .update(|ns| *ns = ready_namespace());
    let namer = K8sNamer::new(
        Arc::clone(&backend),
        Path::read("/#/io.l5d.k8s").unwrap(),
        None,
    );
    let Activity::Ok(NameTree::Leaf(Name::Bound(b))) =
        namer.lookup(&Path::read("/Default/HTTP/World/extra").unwrap())
    else {
        panic!("not bound");
    };
    assert_eq!(b.id.show(), "/#/io.l5d.k8s/default/http/world");
    assert_eq!(b.residual.show(), "/extra");
    assert_eq!(
        namer.lookup(&Path::read("/default/http").unwrap()),
        Activity::Ok(NameTree::Neg)
    );
    let ns_namer = K8sNamer::in_namespace(
        Arc::clone(&backend),
        Path::read("/#/io.l5d.k8s.ns").unwrap(),
        "default".into(),
        Some("app".into()),
    );
    let Activity::Ok(NameTree::Leaf(Name::Bound(b))) =
        ns_namer.lookup(&Path::read("/http/world/world").unwrap())
    else {
        panic!("not bound");
    };
    assert_eq!(b.id.show(), "/#/io.l5d.k8s.ns/http/world/world");
    assert_eq!(
        ns_namer.lookup(&Path::read("/http/world/other").unwrap()),
        Activity::Ok(NameTree::Neg)
    );
    // A namespace never looked up before is pending (its watch is requested).
    assert_eq!(
        namer.lookup(&Path::read("/other/http/world").unwrap()),
        Activity::Pending
    );
}

fn bound(ips: &[(&str, &str)], port: u16) -> Bound {
    Bound::new(
        Path::read("/#/io.l5d.k8s/default/http/world").unwrap(),
        Addr::Bound(
            ips.iter()
                .map(|(ip, node)| {
                    let mut a = Address::new(SocketAddr::new(ip.parse().unwrap(), port));
                    a.meta.insert(model::NODE_NAME_META.into(), (*node).into());
                    a
                })
                .collect(),
        ),
    )
}

fn leaf_addrs(t: &NameTree<Bound>) -> (String, Addr) {
    match t {
        NameTree::Leaf(b) => (b.id.show(), b.addr.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn daemonset_maps_endpoints_to_the_proxy_beside_them() {
    let backend = K8sBackend::new(Connection::proxy("127.0.0.1", 1).unwrap(), Epoch::new());
    let ds = DaemonsetTransformer::new(
        Arc::clone(&backend),
        "default",
        "l5d",
        "incoming",
        false,
        None,
    );
    let endpoints = bound(
        &[
            ("127.0.2.10", "node-2"),
            ("127.0.2.11", "node-2"),
            ("127.0.9.10", "node-9"),
        ],
        7778,
    );
    // The daemonset service is not listed yet: pending, never a guess.
    assert_eq!(leaf_addrs(&ds.transform_leaf(&endpoints)).1, Addr::Pending);
    backend.entry("default").update(|ns| {
        ns.endpoints.ready = true;
        ns.endpoints.objects.insert(
            "l5d".into(),
            vec![set(
                "l5d",
                &[("incoming", 4141)],
                &[
                    ("127.0.1.1", "node-1"),
                    ("127.0.2.1", "node-2"),
                    ("127.0.3.1", "node-3"),
                ],
            )],
        );
    });
    let (id, addr) = leaf_addrs(&ds.transform_leaf(&endpoints));
    assert_eq!(
        id,
        "/%/io.l5d.k8s.daemonset/default/incoming/l5d/#/io.l5d.k8s/default/http/world"
    );
    let Addr::Bound(a) = addr else { panic!() };
    // Two endpoints on node 2 → its proxy once; node 9 has none → dropped.
    assert_eq!(
        a.iter().map(|a| a.addr.to_string()).collect::<Vec<_>>(),
        ["127.0.2.1:4141"]
    );

    // hostNetwork: match by node name, not subnet.
    let by_node = DaemonsetTransformer::new(backend, "default", "l5d", "incoming", true, None);
    let (_, addr) = leaf_addrs(&by_node.transform_leaf(&bound(&[("10.9.9.9", "node-3")], 7778)));
    let Addr::Bound(a) = addr else { panic!() };
    assert_eq!(
        a.iter().map(|a| a.addr.to_string()).collect::<Vec<_>>(),
        ["127.0.3.1:4141"]
    );
}

#[test]
fn localnode_keeps_this_nodes_endpoints() {
    let endpoints = bound(
        &[
            ("127.0.2.10", "node-2"),
            ("127.0.1.10", "node-1"),
            ("127.0.1.11", "node-1"),
        ],
        7778,
    );
    let t = LocalnodeTransformer::new(LocalNode::Subnet("127.0.1.1".parse().unwrap()), None);
    let (id, addr) = leaf_addrs(&t.transform_leaf(&endpoints));
    assert_eq!(
        id,
        "/%/io.l5d.k8s.localnode/127.0.1.1/#/io.l5d.k8s/default/http/world"
    );
    let Addr::Bound(a) = addr else { panic!() };
    assert_eq!(a.len(), 2);
    let t = LocalnodeTransformer::new(LocalNode::Node("node-2".into()), None);
    let Addr::Bound(a) = leaf_addrs(&t.transform_leaf(&endpoints)).1 else {
        panic!()
    };
    assert_eq!(
        a.iter().map(|a| a.addr.to_string()).collect::<Vec<_>>(),
        ["127.0.2.10:7778"]
    );
}

// ---- the watch actors against the simulator ----

struct Harness {
    running: Option<Running>,
    cluster: Cluster,
    backend: Arc<K8sBackend>,
    epoch: Epoch,
    namer: K8sNamer,
    _discovery: actix::Addr<K8sDiscovery>,
}

async fn harness(config: SimConfig) -> Harness {
    let cluster = Cluster::with_config(config);
    cluster.apply_service(&Service::new(
        "default",
        "world",
        vec![ServicePort::new("http", 80, 7778)],
    ));
    let running = cluster.start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let epoch = Epoch::new();
    let backend = K8sBackend::new(
        Connection::proxy("127.0.0.1", running.addr().port()).unwrap(),
        epoch.clone(),
    );
    let discovery = backend.discovery().start();
    let namer = K8sNamer::new(
        Arc::clone(&backend),
        Path::read("/#/io.l5d.k8s").unwrap(),
        None,
    );
    Harness {
        running: Some(running),
        cluster,
        backend,
        epoch,
        namer,
        _discovery: discovery,
    }
}

fn world(ips: &[&str]) -> Vec<EndpointAddress> {
    ips.iter()
        .map(|ip| EndpointAddress::ready(ip, "node-1"))
        .collect()
}

impl Harness {
    fn set_world(&self, ips: &[&str]) {
        self.cluster.set_endpoints(
            "default",
            "world",
            world(ips),
            vec![EndpointPort::tcp("http", 7778)],
        );
    }

    fn lookup(&self, path: &str) -> Option<Vec<String>> {
        match self.namer.lookup(&Path::read(path).unwrap()) {
            Activity::Ok(NameTree::Leaf(Name::Bound(b))) => match b.addr {
                Addr::Bound(a) => Some(a.iter().map(|a| a.addr.ip().to_string()).collect()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Waits (up to a generous deadline; nothing measures it) until `path` binds to `ips`.
    async fn expect(&self, path: &str, ips: &[&str]) {
        let want: Vec<String> = ips.iter().map(|s| (*s).to_owned()).collect();
        for _ in 0..3000 {
            if self.lookup(path).as_ref() == Some(&want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{path} never bound to {want:?}; last {:?}; state {}",
            self.lookup(path),
            self.backend.state_json()
        );
    }
}

#[actix_rt::test]
async fn watches_follow_changes_and_bump_the_epoch() {
    let h = harness(SimConfig::default()).await;
    h.set_world(&["127.0.1.10", "127.0.2.10"]);
    assert_eq!(
        h.namer.lookup(&Path::read("/default/http/world").unwrap()),
        Activity::Pending
    );
    h.expect("/default/http/world", &["127.0.1.10", "127.0.2.10"])
        .await;
    // Port 80 of the service maps to targetPort 7778.
    h.expect("/default/80/world", &["127.0.1.10", "127.0.2.10"])
        .await;
    let before = h.epoch.current();
    h.set_world(&["127.0.2.10"]);
    h.expect("/default/http/world", &["127.0.2.10"]).await;
    assert!(h.epoch.current() > before);
    // Not-ready endpoints never get traffic.
    h.cluster.set_endpoints(
        "default",
        "world",
        vec![
            EndpointAddress::ready("127.0.2.10", "node-2"),
            EndpointAddress::not_ready("127.0.3.10", "node-3"),
        ],
        vec![EndpointPort::tcp("http", 7778)],
    );
    h.expect("/default/http/world", &["127.0.2.10"]).await;
    let state = h.backend.state_json();
    assert_eq!(
        state["namespaces"]["default"]["watches"]["endpoints"]["state"],
        "watching"
    );
    assert_eq!(
        state["namespaces"]["default"]["watches"]["endpoints"]["resource"],
        "endpointslices"
    );
}

#[actix_rt::test]
async fn resumes_after_disconnects_and_relists_after_410() {
    let mut h = harness(SimConfig::default()).await;
    h.set_world(&["127.0.1.10", "127.0.1.11", "127.0.1.12"]);
    h.expect(
        "/default/http/world",
        &["127.0.1.10", "127.0.1.11", "127.0.1.12"],
    )
    .await;

    // Watches cut: the watcher resumes from its resourceVersion and sees what changed.
    h.cluster.drop_watches();
    h.set_world(&["127.0.1.10", "127.0.1.11"]);
    h.expect("/default/http/world", &["127.0.1.10", "127.0.1.11"])
        .await;

    // The API server goes away; a pod is deleted meanwhile; the last known endpoints
    // stay in use until the server is back, then the deletion is seen.
    let running = h.running.take().unwrap();
    let addr = running.addr();
    running.stop().await;
    h.set_world(&["127.0.1.10"]);
    assert_eq!(
        h.lookup("/default/http/world"),
        Some(vec!["127.0.1.10".to_owned(), "127.0.1.11".to_owned()])
    );
    // History compacted while away: resuming gets 410 Gone and the watcher relists.
    h.cluster.compact(0);
    h.running = Some(h.cluster.start(addr).await.unwrap());
    h.expect("/default/http/world", &["127.0.1.10"]).await;
    let state = h.backend.state_json();
    let endpoints = &state["namespaces"]["default"]["watches"]["endpoints"];
    assert_eq!(endpoints["state"], "watching", "{state}");
}

#[actix_rt::test]
async fn falls_back_to_v1_endpoints_on_clusters_without_slices() {
    let h = harness(SimConfig {
        endpoint_slices: false,
        ..SimConfig::default()
    })
    .await;
    h.set_world(&["127.0.2.10"]);
    h.expect("/default/http/world", &["127.0.2.10"]).await;
    h.set_world(&["127.0.2.10", "127.0.2.11"]);
    h.expect("/default/http/world", &["127.0.2.10", "127.0.2.11"])
        .await;
    let state = h.backend.state_json();
    assert_eq!(
        state["namespaces"]["default"]["watches"]["endpoints"]["resource"],
        "endpoints"
    );
}

#[actix_rt::test]
async fn an_unreachable_api_keeps_lookups_pending_and_shows_why() {
    // Nothing listens on this port (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = K8sBackend::new(Connection::proxy("127.0.0.1", port).unwrap(), Epoch::new());
    let _discovery = backend.discovery().start();
    let namer = K8sNamer::new(
        Arc::clone(&backend),
        Path::read("/#/io.l5d.k8s").unwrap(),
        None,
    );
    assert_eq!(
        namer.lookup(&Path::read("/default/http/world").unwrap()),
        Activity::Pending
    );
    for _ in 0..3000 {
        let state = backend.state_json();
        if state["namespaces"]["default"]["watches"]["endpoints"]["errors"].as_u64() >= Some(1) {
            assert_eq!(
                state["namespaces"]["default"]["watches"]["endpoints"]["state"],
                "retrying"
            );
            assert!(
                state["namespaces"]["default"]["watches"]["endpoints"]["lastError"].is_string()
            );
            assert_eq!(
                namer.lookup(&Path::read("/default/http/world").unwrap()),
                Activity::Pending
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no watch error recorded: {}", backend.state_json());
}
