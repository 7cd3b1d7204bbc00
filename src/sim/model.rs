//! The Kubernetes object shapes the simulator serves.
//!
//! Plexus reads only a handful of fields from the Kubernetes API; this file holds the
//! typed inputs tests use to describe pods, services, nodes and endpoints, and renders
//! them into the JSON wire shapes the real API server would send (`v1` objects and
//! `discovery.k8s.io/v1` `EndpointSlice`). Only the fields Plexus reads are produced:
//! this is a development and test tool, not a faithful copy of a cluster.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The kinds of object the simulator stores, each with its API group and path name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` `Pod`.
    Pod,
    /// `v1` `Service`.
    Service,
    /// `v1` `Node` (cluster scoped).
    Node,
    /// `v1` `Endpoints`.
    Endpoints,
    /// `discovery.k8s.io/v1` `EndpointSlice`.
    EndpointSlice,
}

impl Kind {
    /// The object's `kind` field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Node => "Node",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
        }
    }

    /// The object's `apiVersion` field.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            _ => "v1",
        }
    }

    /// The `kind` of a list of these objects (`PodList`, ...).
    pub fn list_name(self) -> String {
        format!("{}List", self.name())
    }

    /// The kind named by a path segment (`pods`, `endpointslices`, ...), with whether
    /// it lives in the `discovery.k8s.io/v1` group rather than the core group.
    pub(crate) fn from_plural(plural: &str, discovery_group: bool) -> Option<Kind> {
        match (plural, discovery_group) {
            ("pods", false) => Some(Kind::Pod),
            ("services", false) => Some(Kind::Service),
            ("nodes", false) => Some(Kind::Node),
            ("endpoints", false) => Some(Kind::Endpoints),
            ("endpointslices", true) => Some(Kind::EndpointSlice),
            _ => None,
        }
    }

    /// Whether objects of this kind belong to a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Node)
    }
}

/// A pod: where it runs and its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeName`, once scheduled.
    pub node_name: Option<String>,
    /// `status.podIP`, once it has one.
    pub pod_ip: Option<String>,
    /// `status.phase` (`Pending`, `Running`, ...).
    pub phase: String,
}

impl Pod {
    /// A running pod on `node` with address `ip`, without labels.
    pub fn running(namespace: &str, name: &str, node: &str, ip: &str) -> Pod {
        Pod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            labels: BTreeMap::new(),
            node_name: Some(node.to_owned()),
            pod_ip: Some(ip.to_owned()),
            phase: "Running".to_owned(),
        }
    }

    /// The same pod with one more label.
    pub fn with_label(mut self, key: &str, value: &str) -> Pod {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut spec = Map::new();
        if let Some(node) = &self.node_name {
            spec.insert("nodeName".into(), json!(node));
        }
        let mut status = Map::new();
        status.insert("phase".into(), json!(self.phase));
        if let Some(ip) = &self.pod_ip {
            status.insert("podIP".into(), json!(ip));
        }
        json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata(Some(&self.namespace), &self.name, &self.labels),
            "spec": spec,
            "status": status,
        })
    }
}

/// A service port's `targetPort`: a number or the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port.
    Name(String),
}

/// One port of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `name`, required by Kubernetes when a service has several ports.
    pub name: Option<String>,
    /// `port`, the service's port.
    pub port: u16,
    /// `targetPort`, the pods' port.
    pub target_port: TargetPort,
}

impl ServicePort {
    /// A named port forwarding `port` to the pods' numbered `target`.
    pub fn new(name: &str, port: u16, target: u16) -> ServicePort {
        ServicePort {
            name: Some(name.to_owned()),
            port,
            target_port: TargetPort::Number(target),
        }
    }
}

/// A service and its ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `metadata.labels`, copied to the service's `Endpoints` and `EndpointSlice` as the
    /// real controllers do.
    pub labels: BTreeMap<String, String>,
}

impl Service {
    /// A service with the given ports.
    pub fn new(namespace: &str, name: &str, ports: Vec<ServicePort>) -> Service {
        Service {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ports,
            labels: BTreeMap::new(),
        }
    }

    /// The same service with one more label.
    pub fn with_label(mut self, key: &str, value: &str) -> Service {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                let mut port = Map::new();
                if let Some(name) = &p.name {
                    port.insert("name".into(), json!(name));
                }
                port.insert("port".into(), json!(p.port));
                port.insert("protocol".into(), json!("TCP"));
                let target = match &p.target_port {
                    TargetPort::Number(n) => json!(n),
                    TargetPort::Name(s) => json!(s),
                };
                port.insert("targetPort".into(), target);
                Value::Object(port)
            })
            .collect();
        json!({
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": metadata(Some(&self.namespace), &self.name, &self.labels),
            "spec": { "ports": ports },
        })
    }
}

/// A node and its internal address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// The `InternalIP` entry of `status.addresses`.
    pub internal_ip: String,
}

impl Node {
    /// A node with the given internal address.
    pub fn new(name: &str, internal_ip: &str) -> Node {
        Node {
            name: name.to_owned(),
            internal_ip: internal_ip.to_owned(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": metadata(None, &self.name, &BTreeMap::new()),
            "status": {
                "addresses": [
                    { "type": "InternalIP", "address": self.internal_ip },
                    { "type": "Hostname", "address": self.name },
                ],
            },
        })
    }
}

/// One address behind a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointAddress {
    /// The pod's IP.
    pub ip: String,
    /// The node the pod runs on.
    pub node: Option<String>,
    /// Whether the address is ready to receive traffic.
    pub ready: bool,
}

impl EndpointAddress {
    /// A ready address on `node`.
    pub fn ready(ip: &str, node: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.to_owned(),
            node: Some(node.to_owned()),
            ready: true,
        }
    }

    /// An address on `node` that is not ready.
    pub fn not_ready(ip: &str, node: &str) -> EndpointAddress {
        EndpointAddress {
            ready: false,
            ..EndpointAddress::ready(ip, node)
        }
    }
}

/// One port of the endpoints behind a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPort {
    /// The port's name (the service port's name).
    pub name: Option<String>,
    /// The pods' port number.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

impl EndpointPort {
    /// A named TCP port.
    pub fn tcp(name: &str, port: u16) -> EndpointPort {
        EndpointPort {
            name: Some(name.to_owned()),
            port,
            protocol: "TCP".to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        let mut port = Map::new();
        if let Some(name) = &self.name {
            port.insert("name".into(), json!(name));
        }
        port.insert("port".into(), json!(self.port));
        port.insert("protocol".into(), json!(self.protocol));
        Value::Object(port)
    }
}

/// The name the simulator gives the one `EndpointSlice` of a service.
pub fn slice_name(service: &str) -> String {
    format!("{service}-sim")
}

/// The label tying an `EndpointSlice` to its service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The `v1` `Endpoints` object of a service: ready and not-ready addresses in one subset,
/// labelled with the service's `labels`.
pub(crate) fn endpoints_json(
    namespace: &str,
    service: &str,
    labels: &BTreeMap<String, String>,
    addresses: &[EndpointAddress],
    ports: &[EndpointPort],
) -> Value {
    let address = |a: &EndpointAddress| {
        let mut m = Map::new();
        m.insert("ip".into(), json!(a.ip));
        if let Some(node) = &a.node {
            m.insert("nodeName".into(), json!(node));
        }
        Value::Object(m)
    };
    let ready: Vec<Value> = addresses.iter().filter(|a| a.ready).map(address).collect();
    let not_ready: Vec<Value> = addresses.iter().filter(|a| !a.ready).map(address).collect();
    let mut subsets = Vec::new();
    if !addresses.is_empty() {
        let mut subset = Map::new();
        if !ready.is_empty() {
            subset.insert("addresses".into(), Value::Array(ready));
        }
        if !not_ready.is_empty() {
            subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
        }
        subset.insert(
            "ports".into(),
            Value::Array(ports.iter().map(EndpointPort::to_json).collect()),
        );
        subsets.push(Value::Object(subset));
    }
    let mut object = json!({
        "kind": "Endpoints",
        "apiVersion": "v1",
        "metadata": metadata(Some(namespace), service, labels),
    });
    if !subsets.is_empty()
        && let Some(obj) = object.as_object_mut()
    {
        obj.insert("subsets".into(), Value::Array(subsets));
    }
    object
}

/// The `discovery.k8s.io/v1` `EndpointSlice` of a service, holding the same addresses,
/// labelled with the service's `labels` plus the slice controller's own.
pub(crate) fn endpoint_slice_json(
    namespace: &str,
    service: &str,
    service_labels: &BTreeMap<String, String>,
    addresses: &[EndpointAddress],
    ports: &[EndpointPort],
) -> Value {
    let mut labels = service_labels.clone();
    labels.insert(SERVICE_NAME_LABEL.to_owned(), service.to_owned());
    labels.insert(
        "endpointslice.kubernetes.io/managed-by".to_owned(),
        "plexus-sim".to_owned(),
    );
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| {
            let mut m = Map::new();
            m.insert("addresses".into(), json!([a.ip]));
            m.insert("conditions".into(), json!({ "ready": a.ready }));
            if let Some(node) = &a.node {
                m.insert("nodeName".into(), json!(node));
            }
            Value::Object(m)
        })
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": metadata(Some(namespace), &slice_name(service), &labels),
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports.iter().map(EndpointPort::to_json).collect::<Vec<_>>(),
    })
}

/// A `Status` object, as the API server answers failures.
pub(crate) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn metadata(namespace: Option<&str>, name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), json!(ns));
    }
    if !labels.is_empty() {
        m.insert("labels".into(), json!(labels));
    }
    Value::Object(m)
}
