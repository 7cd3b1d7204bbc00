//! The demo's cluster: which nodes, pods and services exist, where each listens, and the
//! Plexus configuration each node runs (the tutorial's DaemonSet config, with loopback
//! addresses). Pure data: [`super::run`] turns it into processes.
//!
//! Node N owns 127.0.N.0/24: its Plexus binds 127.0.N.1 (HTTP outgoing 4140 and incoming
//! 4141, Thrift outgoing 4114 and incoming 4115, admin 9990) and its pods bind
//! 127.0.N.10 and up, so the daemonset and localnode transformers see one /24 per node,
//! as on a real cluster. The Thrift hello and world pods call each other through the
//! Thrift routers, which carry the calls between nodes over ThriftMux.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::sim::{Cluster, EndpointAddress, EndpointPort, Node, Pod, Service, ServicePort};

/// The outgoing router's port (apps' `http_proxy`).
pub const OUTGOING_PORT: u16 = 4140;
/// The incoming router's port (other nodes' Plexus send here).
pub const INCOMING_PORT: u16 = 4141;
/// The admin port (dashboard, metrics, delegator).
pub const ADMIN_PORT: u16 = 9990;
/// The outgoing Thrift router's port (Thrift apps call out through it).
pub const THRIFT_OUTGOING_PORT: u16 = 4114;
/// The incoming Thrift router's port (other nodes' Plexus send here, over Mux).
pub const THRIFT_INCOMING_PORT: u16 = 4115;

/// One demo app (a `helloworld` process) and its pod.
#[derive(Clone, Debug)]
pub struct App {
    /// The pod name (`hello-2`).
    pub pod: String,
    /// The service it belongs to (`hello`, `world-v1`, ...).
    pub service: &'static str,
    /// Its node (1-based).
    pub node: u8,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `helloworld` arguments after `-addr`.
    pub args: Vec<String>,
    /// `TARGET_WORLD`, when set.
    pub target_world: Option<&'static str>,
    /// Whether it calls another service (and so needs `http_proxy`).
    pub calls_out: bool,
    /// A Thrift app (`-protocol thrift`): it calls out through its node's Thrift router.
    pub thrift: bool,
}

impl App {
    /// The `helloworld` command line that runs this pod: its address, arguments and
    /// environment (`POD_IP`, `TARGET_WORLD`, and `http_proxy` naming its node's Plexus
    /// when it calls out). One definition for the demo and the tests.
    pub fn command(&self, helloworld: &std::path::Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(helloworld);
        cmd.arg(format!("-addr={}", self.addr))
            .args(&self.args)
            .env_clear()
            .env("POD_IP", self.addr.ip().to_string());
        if let Some(world) = self.target_world {
            cmd.env("TARGET_WORLD", world);
        }
        if self.calls_out && self.thrift {
            cmd.arg(format!(
                "-target={}:{THRIFT_OUTGOING_PORT}",
                plexus_ip(self.node)
            ));
        } else if self.calls_out {
            cmd.env(
                "http_proxy",
                format!("{}:{OUTGOING_PORT}", plexus_ip(self.node)),
            );
        }
        cmd
    }
}

/// The whole demo cluster.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Node numbers, 1-based.
    pub nodes: Vec<u8>,
    /// Every app pod.
    pub apps: Vec<App>,
    /// Where the simulated Kubernetes API listens.
    pub api: SocketAddr,
}

/// One service of the tutorial and how its pods run.
struct ServiceSpec {
    name: &'static str,
    port: u16,
    /// Pods listen on 127.0.N.<host>.
    host: u8,
    args: &'static [&'static str],
    target_world: Option<&'static str>,
    calls_out: bool,
    thrift: bool,
}

const SERVICES: [ServiceSpec; 6] = [
    ServiceSpec {
        name: "hello",
        port: 7777,
        host: 10,
        args: &["-text=Hello", "-target=world"],
        target_world: None,
        calls_out: true,
        thrift: false,
    },
    ServiceSpec {
        name: "world-v1",
        port: 7778,
        host: 11,
        args: &[],
        target_world: Some("world"),
        calls_out: false,
        thrift: false,
    },
    ServiceSpec {
        name: "world-v2",
        port: 7778,
        host: 12,
        args: &[],
        target_world: Some("earth"),
        calls_out: false,
        thrift: false,
    },
    ServiceSpec {
        name: "api",
        port: 7779,
        host: 13,
        args: &["-text=api", "-target=hello", "-json"],
        target_world: None,
        calls_out: true,
        thrift: false,
    },
    ServiceSpec {
        name: "thrift-hello",
        port: 7780,
        host: 14,
        args: &["-protocol=thrift", "-text=Hello"],
        target_world: None,
        calls_out: true,
        thrift: true,
    },
    ServiceSpec {
        name: "thrift-world",
        port: 7781,
        host: 15,
        args: &["-protocol=thrift"],
        target_world: Some("world"),
        calls_out: false,
        thrift: true,
    },
];

impl Layout {
    /// `nodes` nodes, each running one pod of every service; the API on `api_port`.
    pub fn new(nodes: u8, api_port: u16) -> Layout {
        let nodes: Vec<u8> = (1..=nodes.max(1)).collect();
        let mut apps = Vec::new();
        for spec in &SERVICES {
            for &n in &nodes {
                apps.push(App {
                    pod: format!("{}-{n}", spec.name),
                    service: spec.name,
                    node: n,
                    addr: SocketAddr::new(node_ip(n, spec.host), spec.port),
                    args: spec.args.iter().map(|a| (*a).to_owned()).collect(),
                    target_world: spec.target_world,
                    calls_out: spec.calls_out,
                    thrift: spec.thrift,
                });
            }
        }
        Layout {
            nodes,
            apps,
            api: SocketAddr::from(([127, 0, 0, 1], api_port)),
        }
    }

    /// Every address the demo listens on, with what it is (to check before starting).
    pub fn listeners(&self) -> Vec<(SocketAddr, String)> {
        let mut out = vec![(self.api, "the simulated Kubernetes API".to_owned())];
        for &n in &self.nodes {
            let ip = plexus_ip(n);
            out.push((
                SocketAddr::new(ip, OUTGOING_PORT),
                format!("node-{n}'s outgoing router"),
            ));
            out.push((
                SocketAddr::new(ip, INCOMING_PORT),
                format!("node-{n}'s incoming router"),
            ));
            out.push((
                SocketAddr::new(ip, THRIFT_OUTGOING_PORT),
                format!("node-{n}'s outgoing Thrift router"),
            ));
            out.push((
                SocketAddr::new(ip, THRIFT_INCOMING_PORT),
                format!("node-{n}'s incoming Thrift router"),
            ));
            out.push((
                SocketAddr::new(ip, ADMIN_PORT),
                format!("node-{n}'s admin server"),
            ));
        }
        for app in &self.apps {
            out.push((app.addr, format!("the {} pod", app.pod)));
        }
        out
    }

    /// Fills `cluster` with the nodes, services, pods and endpoints of the layout.
    pub fn populate(&self, cluster: &Cluster) {
        for &n in &self.nodes {
            cluster.apply_node(&Node::new(&node_name(n), &plexus_ip(n).to_string()));
            cluster.apply_pod(&Pod::running(
                "default",
                &format!("l5d-{n}"),
                &node_name(n),
                &plexus_ip(n).to_string(),
            ));
        }
        cluster.apply_service(&Service::new(
            "default",
            "l5d",
            vec![
                ServicePort::new("outgoing", OUTGOING_PORT, OUTGOING_PORT),
                ServicePort::new("incoming", INCOMING_PORT, INCOMING_PORT),
                ServicePort::new("admin", ADMIN_PORT, ADMIN_PORT),
                ServicePort::new(
                    "thrift-outgoing",
                    THRIFT_OUTGOING_PORT,
                    THRIFT_OUTGOING_PORT,
                ),
                ServicePort::new(
                    "thrift-incoming",
                    THRIFT_INCOMING_PORT,
                    THRIFT_INCOMING_PORT,
                ),
            ],
        ));
        cluster.set_endpoints(
            "default",
            "l5d",
            self.nodes
                .iter()
                .map(|n| EndpointAddress::ready(&plexus_ip(*n).to_string(), &node_name(*n)))
                .collect(),
            vec![
                EndpointPort::tcp("outgoing", OUTGOING_PORT),
                EndpointPort::tcp("incoming", INCOMING_PORT),
                EndpointPort::tcp("admin", ADMIN_PORT),
                EndpointPort::tcp("thrift-outgoing", THRIFT_OUTGOING_PORT),
                EndpointPort::tcp("thrift-incoming", THRIFT_INCOMING_PORT),
            ],
        );
        for spec in &SERVICES {
            let (service, port) = (spec.name, spec.port);
            let port_name = if spec.thrift { "thrift" } else { "http" };
            cluster.apply_service(&Service::new(
                "default",
                service,
                vec![ServicePort::new(port_name, port, port)],
            ));
            let pods: Vec<&App> = self.apps.iter().filter(|a| a.service == service).collect();
            for app in &pods {
                cluster.apply_pod(&Pod::running(
                    "default",
                    &app.pod,
                    &node_name(app.node),
                    &app.addr.ip().to_string(),
                ));
            }
            cluster.set_endpoints(
                "default",
                service,
                pods.iter()
                    .map(|a| EndpointAddress::ready(&a.addr.ip().to_string(), &node_name(a.node)))
                    .collect(),
                vec![EndpointPort::tcp(port_name, port)],
            );
        }
    }

    /// The Plexus configuration of node `n`: the tutorial's DaemonSet config (linkerd.yml)
    /// with this node's addresses and the simulated API as its `kubectl proxy`.
    pub fn node_config(&self, n: u8) -> String {
        self.node_config_with(n, None)
    }

    /// [`Layout::node_config`] with the hop between nodes upgraded: when `certs` (a
    /// directory from `plexus tls init` + `plexus tls issue DIR linkerd`) is given, the
    /// outgoing router negotiates TLS and HTTP/2 with the other nodes' incoming routers
    /// (`peerUpgrades: [h2, tls]`), which take TLS and plaintext on one port. The Thrift
    /// routers always carry calls between nodes over one Mux session per peer
    /// (`peerUpgrades: [mux]`).
    pub fn node_config_with(&self, n: u8, certs: Option<&std::path::Path>) -> String {
        let ip = plexus_ip(n);
        let (client, server) = match certs {
            None => (String::new(), String::new()),
            Some(dir) => (
                format!(
                    "  client:\n    peerUpgrades: [h2, tls]\n    tls:\n      commonName: linkerd\n      trustCertsBundle: {}\n",
                    dir.join("ca.pem").display()
                ),
                format!(
                    "    tls:\n      certPath: {}\n      keyPath: {}\n    acceptPlaintext: true\n",
                    dir.join("linkerd.pem").display(),
                    dir.join("linkerd-key.pk8.pem").display()
                ),
            ),
        };
        let dtab = "    /srv        => /#/io.l5d.k8s/default/http;\n    \
                    /host       => /srv;\n    \
                    /svc        => /host;\n    \
                    /host/world => /srv/world-v1;\n";
        // Thrift calls are named by method (`thriftMethodInDst`): greet goes to world.
        let thrift_dtab = "    /srv       => /#/io.l5d.k8s/default/thrift;\n    \
                           /svc/greet => /srv/thrift-world;\n";
        format!(
            "# node-{n} of the Plexus demo: the tutorial's DaemonSet config on loopback.\n\
admin:\n  ip: {ip}\n  port: {ADMIN_PORT}\n\n\
namers:\n- kind: io.l5d.k8s\n  host: {api_ip}\n  port: {api_port}\n\n\
telemetry:\n- kind: io.l5d.prometheus\n\n\
routers:\n\
- protocol: http\n  label: outgoing\n  dtab: |\n{dtab}  interpreter:\n    kind: default\n    transformers:\n    - kind: io.l5d.k8s.daemonset\n      namespace: default\n      port: incoming\n      service: l5d\n  servers:\n  - port: {OUTGOING_PORT}\n    ip: {ip}\n  service:\n    responseClassifier:\n      kind: io.l5d.http.retryableRead5XX\n{client}\n\
- protocol: http\n  label: incoming\n  dtab: |\n{dtab}  interpreter:\n    kind: default\n    transformers:\n    - kind: io.l5d.k8s.localnode\n  servers:\n  - port: {INCOMING_PORT}\n    ip: {ip}\n{server}\n\
- protocol: thrift\n  label: thrift-outgoing\n  thriftMethodInDst: true\n  dtab: |\n{thrift_dtab}  interpreter:\n    kind: default\n    transformers:\n    - kind: io.l5d.k8s.daemonset\n      namespace: default\n      port: thrift-incoming\n      service: l5d\n  servers:\n  - port: {THRIFT_OUTGOING_PORT}\n    ip: {ip}\n  client:\n    peerUpgrades: [mux]\n\n\
- protocol: thrift\n  label: thrift-incoming\n  thriftMethodInDst: true\n  dtab: |\n{thrift_dtab}  interpreter:\n    kind: default\n    transformers:\n    - kind: io.l5d.k8s.localnode\n  servers:\n  - port: {THRIFT_INCOMING_PORT}\n    ip: {ip}\n",
            api_ip = self.api.ip(),
            api_port = self.api.port(),
        )
    }
}

/// `node-N`.
pub fn node_name(n: u8) -> String {
    format!("node-{n}")
}

/// `127.0.N.host`.
pub fn node_ip(n: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, n, host))
}

/// Where node N's Plexus listens: 127.0.N.1.
pub fn plexus_ip(n: u8) -> IpAddr {
    node_ip(n, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn every_listener_is_distinct_and_node_configs_are_valid() {
        let layout = Layout::new(3, 8001);
        let listeners = layout.listeners();
        let mut addrs: Vec<SocketAddr> = listeners.iter().map(|(a, _)| *a).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), listeners.len());
        assert_eq!(layout.apps.len(), 18);
        for n in layout.nodes.clone() {
            let config = Config::parse(&layout.node_config(n)).expect("parses");
            assert_eq!(config.validate(), Vec::<String>::new());
            let dir = std::path::Path::new("/certs");
            let upgraded = layout.node_config_with(n, Some(dir));
            let config = Config::parse(&upgraded).expect("parses");
            assert_eq!(config.validate(), Vec::<String>::new(), "{upgraded}");
            assert!(
                upgraded.contains("peerUpgrades: [h2, tls]")
                    && upgraded.contains("acceptPlaintext: true")
            );
        }
    }
}
