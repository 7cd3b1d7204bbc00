//! The per-host transformers of the DaemonSet deployment.
//!
//! `io.l5d.k8s.daemonset` (on the outgoing router) replaces every bound endpoint with the
//! Plexus of the daemonset running on the endpoint's node: the daemonset service's
//! endpoints that share the endpoint's /24 subnet (the usual one-/24-per-node pod
//! network), or, with `hostNetwork: true`, the same `nodeName`. Endpoints with no
//! daemonset pod beside them are dropped; no daemonset pods at all binds nothing.
//! `io.l5d.k8s.localnode` (on the incoming router) keeps only the endpoints on this
//! node: in the /24 of `POD_IP`, or with `hostNetwork: true`, whose `nodeName` is
//! `NODE_NAME`. IPv6 addresses match on their /64 (there is no /24 convention there).
//!
//! Rewritten ids carry the transformer's prefix under `/%` (for example
//! `/%/io.l5d.k8s.daemonset/default/incoming/l5d/#/io.l5d.k8s/default/http/world`), so
//! client metrics say which hop a client is.

use std::net::IpAddr;
use std::sync::Arc;

use super::model::NODE_NAME_META;
use super::{K8sBackend, PortRef, Resolution};
use crate::naming::{Addr, Address, Bound, NameTree, Path, Transformer};

/// Whether two addresses are on the same node's pod network (/24 for IPv4, /64 for IPv6).
pub fn same_subnet(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..8] == b.octets()[..8],
        _ => false,
    }
}

fn node(a: &Address) -> Option<&String> {
    a.meta.get(NODE_NAME_META)
}

fn prefixed(prefix: &Path, id: &Path) -> Path {
    Path::from_strs(["%"]).concat(prefix).concat(id)
}

/// `io.l5d.k8s.daemonset`.
pub struct DaemonsetTransformer {
    backend: Arc<K8sBackend>,
    namespace: String,
    service: String,
    port: PortRef,
    host_network: bool,
    prefix: Path,
}

impl DaemonsetTransformer {
    /// Maps endpoints to the pods of `namespace/service` (port `port`) beside them;
    /// `prefix` defaults to `/io.l5d.k8s.daemonset/<namespace>/<port>/<service>`.
    pub fn new(
        backend: Arc<K8sBackend>,
        namespace: &str,
        service: &str,
        port: &str,
        host_network: bool,
        prefix: Option<Path>,
    ) -> DaemonsetTransformer {
        let prefix = prefix
            .unwrap_or_else(|| Path::from_strs(["io.l5d.k8s.daemonset", namespace, port, service]));
        DaemonsetTransformer {
            backend,
            namespace: namespace.to_lowercase(),
            service: service.to_lowercase(),
            port: PortRef::parse(&port.to_lowercase()),
            host_network,
            prefix,
        }
    }

    fn beside(&self, endpoint: &Address, daemon: &Address) -> bool {
        if self.host_network {
            node(endpoint) == node(daemon)
        } else {
            same_subnet(endpoint.addr.ip(), daemon.addr.ip())
        }
    }
}

impl Transformer for DaemonsetTransformer {
    fn name(&self) -> &str {
        "DaemonSetTransformer"
    }

    fn transform_leaf(&self, bound: &Bound) -> NameTree<Bound> {
        let addr = match &bound.addr {
            Addr::Bound(endpoints) => {
                match self
                    .backend
                    .resolve(&self.namespace, &self.service, &self.port, None)
                {
                    Ok(Resolution::Bound(daemons)) => {
                        let mut selected: Vec<Address> = Vec::new();
                        for endpoint in endpoints {
                            for daemon in daemons.iter().filter(|d| self.beside(endpoint, d)) {
                                if !selected.iter().any(|s| s.addr == daemon.addr) {
                                    selected.push(daemon.clone());
                                }
                            }
                        }
                        Addr::Bound(selected)
                    }
                    Ok(Resolution::Neg) => Addr::Bound(Vec::new()),
                    Ok(Resolution::Pending) => Addr::Pending,
                    Err(e) => Addr::Failed(e),
                }
            }
            other => other.clone(),
        };
        NameTree::Leaf(Bound {
            id: prefixed(&self.prefix, &bound.id),
            residual: bound.residual.clone(),
            addr,
        })
    }
}

/// What "this node" is for `io.l5d.k8s.localnode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalNode {
    /// Pods in the /24 of this IP (the Plexus pod's `POD_IP`).
    Subnet(IpAddr),
    /// Pods whose `nodeName` is this (`NODE_NAME`; for `hostNetwork`).
    Node(String),
}

/// `io.l5d.k8s.localnode`.
pub struct LocalnodeTransformer {
    local: LocalNode,
    prefix: Path,
}

impl LocalnodeTransformer {
    /// Keeps endpoints on `local`; `prefix` defaults to
    /// `/io.l5d.k8s.localnode/<ip or node name>`.
    pub fn new(local: LocalNode, prefix: Option<Path>) -> LocalnodeTransformer {
        let prefix = prefix.unwrap_or_else(|| {
            let which = match &local {
                LocalNode::Subnet(ip) => ip.to_string(),
                LocalNode::Node(n) => n.clone(),
            };
            Path::from_strs(["io.l5d.k8s.localnode", &which])
        });
        LocalnodeTransformer { local, prefix }
    }

    /// This node from the environment: `NODE_NAME` with `host_network`, else `POD_IP`
    /// (set both from the downward API in the DaemonSet).
    pub fn from_env(host_network: bool, prefix: Option<Path>) -> Result<Self, String> {
        let local = if host_network {
            let node = std::env::var("NODE_NAME").map_err(|_| {
                "io.l5d.k8s.localnode with hostNetwork: true needs the NODE_NAME environment variable (fieldRef spec.nodeName)".to_owned()
            })?;
            LocalNode::Node(node)
        } else {
            let ip = std::env::var("POD_IP").map_err(|_| {
                "io.l5d.k8s.localnode needs the POD_IP environment variable (fieldRef status.podIP)".to_owned()
            })?;
            LocalNode::Subnet(
                ip.trim().parse().map_err(|_| {
                    format!("io.l5d.k8s.localnode: POD_IP {ip:?} is not an IP address")
                })?,
            )
        };
        Ok(LocalnodeTransformer::new(local, prefix))
    }

    fn local(&self, a: &Address) -> bool {
        match &self.local {
            LocalNode::Subnet(ip) => same_subnet(*ip, a.addr.ip()),
            LocalNode::Node(n) => node(a) == Some(n),
        }
    }
}

impl Transformer for LocalnodeTransformer {
    fn name(&self) -> &str {
        "LocalNodeTransformer"
    }

    fn transform_leaf(&self, bound: &Bound) -> NameTree<Bound> {
        let addr = match &bound.addr {
            Addr::Bound(a) => Addr::Bound(a.iter().filter(|x| self.local(x)).cloned().collect()),
            other => other.clone(),
        };
        NameTree::Leaf(Bound {
            id: prefixed(&self.prefix, &bound.id),
            residual: bound.residual.clone(),
            addr,
        })
    }
}
