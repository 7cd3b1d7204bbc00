//! The pure core of Kubernetes discovery: what Plexus keeps of each watched object, and
//! how a lookup (`service`, `port`, optional label value) becomes a set of addresses.
//!
//! Watches feed [`Namespace`] through [`Table`]s (one per resource kind) and never hold
//! anything else, so every rule about readiness, named and numbered ports, and labels is
//! here and tested without a network.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::naming::Address;

/// The metadata key carrying an address's node, as Linkerd names it.
pub const NODE_NAME_META: &str = "nodeName";

/// One ready endpoint: an IP and the node it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's IP.
    pub ip: IpAddr,
    /// `nodeName`, when the API says.
    pub node: Option<String>,
}

/// A group of endpoints sharing ports: one `EndpointSlice`, or one subset of a v1
/// `Endpoints` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSet {
    /// The service the endpoints belong to.
    pub service: String,
    /// The object's labels (the controllers copy the service's labels here).
    pub labels: BTreeMap<String, String>,
    /// Named TCP ports.
    pub ports: BTreeMap<String, u16>,
    /// Ready endpoints only: the others never get traffic.
    pub endpoints: Vec<Endpoint>,
}

fn tcp(protocol: Option<&String>) -> bool {
    protocol.is_none_or(|p| p.eq_ignore_ascii_case("TCP"))
}

fn port_u16(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// The endpoint set of an `EndpointSlice` (`None` for slices of another address type or
/// without the service-name label).
pub fn from_slice(slice: &EndpointSlice) -> Option<EndpointSet> {
    if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
        return None;
    }
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    let service = labels.get("kubernetes.io/service-name")?.clone();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter(|p| tcp(p.protocol.as_ref()))
        .filter_map(|p| Some((p.name.clone()?, port_u16(p.port?)?)))
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        // A missing `ready` means ready (the API's own rule).
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| {
            e.addresses.iter().filter_map(|a| {
                Some(Endpoint {
                    ip: a.parse().ok()?,
                    node: e.node_name.clone(),
                })
            })
        })
        .collect();
    Some(EndpointSet {
        service,
        labels,
        ports,
        endpoints,
    })
}

/// The endpoint sets of a v1 `Endpoints` object: one per subset, ready addresses only.
pub fn from_endpoints(endpoints: &Endpoints) -> Vec<EndpointSet> {
    let Some(service) = endpoints.metadata.name.clone() else {
        return Vec::new();
    };
    let labels = endpoints.metadata.labels.clone().unwrap_or_default();
    endpoints
        .subsets
        .iter()
        .flatten()
        .map(|subset| EndpointSet {
            service: service.clone(),
            labels: labels.clone(),
            ports: subset
                .ports
                .iter()
                .flatten()
                .filter(|p| tcp(p.protocol.as_ref()))
                .filter_map(|p| Some((p.name.clone()?, port_u16(p.port)?)))
                .collect(),
            endpoints: subset
                .addresses
                .iter()
                .flatten()
                .filter_map(|a| {
                    Some(Endpoint {
                        ip: a.ip.parse().ok()?,
                        node: a.node_name.clone(),
                    })
                })
                .collect(),
        })
        .collect()
}

/// Where a service port sends traffic on the pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port, resolved through the endpoints' port names.
    Name(String),
}

/// A service's port mappings (`port` → `targetPort`), for lookups by port number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePorts {
    /// `(port, targetPort)` pairs of TCP ports.
    pub ports: Vec<(u16, TargetPort)>,
}

/// The port mappings of a `Service`.
pub fn from_service(service: &Service) -> ServicePorts {
    let ports = service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter(|p| tcp(p.protocol.as_ref()))
        .filter_map(|p| {
            let port = port_u16(p.port)?;
            let target = match &p.target_port {
                None => TargetPort::Number(port),
                Some(IntOrString::Int(n)) => TargetPort::Number(port_u16(*n)?),
                Some(IntOrString::String(s)) => match s.parse::<u16>() {
                    Ok(n) => TargetPort::Number(n),
                    Err(_) => TargetPort::Name(s.clone()),
                },
            };
            Some((port, target))
        })
        .collect();
    ServicePorts { ports }
}

/// The objects of one kind in one namespace, as the latest complete list plus the watch
/// events since.
#[derive(Debug)]
pub struct Table<V> {
    /// By object name.
    pub objects: HashMap<String, V>,
    /// Whether a complete list has been received (lookups are pending until then).
    pub ready: bool,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            objects: HashMap::new(),
            ready: false,
        }
    }
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// The watches have not listed the namespace yet.
    Pending,
    /// No such service, port or label value.
    Neg,
    /// The ready addresses (possibly none), sorted.
    Bound(Vec<Address>),
}

/// A port as written in a lookup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    /// A port name, matched against the endpoints' port names.
    Name(String),
    /// A service port number, mapped through the service's `targetPort`.
    Number(u16),
}

impl PortRef {
    /// Numbers are service ports; anything else is a port name.
    pub fn parse(segment: &str) -> PortRef {
        match segment.parse::<u16>() {
            Ok(n) => PortRef::Number(n),
            Err(_) => PortRef::Name(segment.to_owned()),
        }
    }
}

/// The discovery state of one namespace.
#[derive(Debug, Default)]
pub struct Namespace {
    /// Endpoint sets by object (`EndpointSlice` or `Endpoints`) name.
    pub endpoints: Table<Vec<EndpointSet>>,
    /// Service port mappings by service name.
    pub services: Table<ServicePorts>,
}

impl Namespace {
    /// The ready addresses of `service` on `port`, restricted to sets labelled
    /// `label = value` when a label is given.
    pub fn resolve(
        &self,
        service: &str,
        port: &PortRef,
        label: Option<(&str, &str)>,
    ) -> Resolution {
        if !self.endpoints.ready {
            return Resolution::Pending;
        }
        let sets: Vec<&EndpointSet> = self
            .endpoints
            .objects
            .values()
            .flatten()
            .filter(|s| s.service == service)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k).is_some_and(|x| x == v)))
            .collect();
        if sets.is_empty() {
            return Resolution::Neg;
        }
        let target = match port {
            PortRef::Name(name) => TargetPort::Name(name.clone()),
            PortRef::Number(number) => {
                if !self.services.ready {
                    return Resolution::Pending;
                }
                let mapped = self
                    .services
                    .objects
                    .get(service)
                    .and_then(|s| s.ports.iter().find(|(p, _)| p == number));
                match mapped {
                    Some((_, target)) => target.clone(),
                    None => return Resolution::Neg,
                }
            }
        };
        let mut found_port = false;
        let mut addrs: Vec<Address> = Vec::new();
        for set in sets {
            let port = match &target {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(name) => set.ports.get(name).copied(),
            };
            let Some(port) = port else { continue };
            found_port = true;
            for e in &set.endpoints {
                let mut a = Address::new(SocketAddr::new(e.ip, port));
                if let Some(node) = &e.node {
                    a.meta.insert(NODE_NAME_META.to_owned(), node.clone());
                }
                if !addrs.iter().any(|x| x.addr == a.addr) {
                    addrs.push(a);
                }
            }
        }
        if !found_port {
            return Resolution::Neg;
        }
        addrs.sort_by_key(|a| a.addr);
        Resolution::Bound(addrs)
    }
}
