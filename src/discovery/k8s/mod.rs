//! `io.l5d.k8s` and `io.l5d.k8s.ns`: service discovery from the Kubernetes API.
//!
//! Lookups follow Linkerd 1.x: `io.l5d.k8s` binds `/<namespace>/<port>/<service>`
//! (and, with `labelSelector: <label>`, a fourth segment holding the label's value), and
//! `io.l5d.k8s.ns` binds `/<port>/<service>[/<label value>]` in the namespace named by an
//! environment variable (`POD_NAMESPACE` by default). Segments are lower-cased. A port
//! name matches the endpoints' port names; a port number is a *service* port, mapped
//! through the service's `targetPort`. Only ready endpoints are bound; each address
//! carries its node name (`nodeName` metadata), which the daemonset transformer uses.
//!
//! The namer answers synchronously from the namespace model ([`model`]); the first lookup
//! in a namespace asks the connection's [`K8sDiscovery`] actor to start watching it and
//! is pending until the first lists arrive ([`watch`] has the watch semantics). Namers
//! and transformers that use the same API connection share one [`K8sBackend`], so each
//! namespace is watched once per process.
//!
//! The connection ([`Connection`]) is plain HTTP to `host:port` when a host is configured
//! (a `kubectl proxy` sidecar, as Linkerd deployments do), otherwise the pod's
//! service-account credentials, or `localhost:8001` outside a pod.

pub mod model;
mod transform;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use model::{Namespace, PortRef, Resolution};
pub use transform::{DaemonsetTransformer, LocalNode, LocalnodeTransformer, same_subnet};
pub use watch::K8sDiscovery;

use super::Epoch;
use crate::naming::{Activity, Addr, Bound, Name, NameTree, Namer, NamingError, Path};

/// Where the Kubernetes API is and how to reach it.
#[derive(Clone)]
pub struct Connection {
    config: kube::Config,
    description: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// The port of `kubectl proxy`, Linkerd's default.
pub const DEFAULT_PROXY_PORT: u16 = 8001;

impl Connection {
    /// The connection for a namer's `host`/`port` (or a transformer's
    /// `k8sHost`/`k8sPort`). Without a host: in-cluster credentials when running in a pod
    /// (`KUBERNETES_SERVICE_HOST` is set), else `localhost:8001`.
    pub fn resolve(host: Option<&str>, port: Option<u16>) -> Result<Connection, String> {
        match host {
            Some(host) => Connection::proxy(host, port.unwrap_or(DEFAULT_PROXY_PORT)),
            None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                let mut config = kube::Config::incluster().map_err(|e| {
                    format!(
                        "running in a pod but cannot use its service account for the Kubernetes API ({e}); \
                         mount the token or set host/port to a kubectl proxy"
                    )
                })?;
                config.connect_timeout = Some(Duration::from_secs(5));
                let description = format!("in-cluster {}", config.cluster_url);
                Ok(Connection {
                    config,
                    description,
                })
            }
            None => Connection::proxy("localhost", port.unwrap_or(DEFAULT_PROXY_PORT)),
        }
    }

    /// Plain HTTP to a `kubectl proxy` (or any unauthenticated API endpoint).
    pub fn proxy(host: &str, port: u16) -> Result<Connection, String> {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let url = format!("http://{host}:{port}");
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid Kubernetes API address {url}: {e}"))?;
        let mut config = kube::Config::new(uri);
        config.connect_timeout = Some(Duration::from_secs(5));
        Ok(Connection {
            config,
            description: url,
        })
    }

    /// `http://host:port` or `in-cluster https://...`, for logs and the admin view.
    pub fn describe(&self) -> &str {
        &self.description
    }
}

/// How one watch is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatchState {
    /// Started, no answer yet.
    Starting,
    /// Listing (first time, or after a 410 Gone / restart).
    Listing,
    /// Listed and following changes.
    Watching,
    /// The latest attempt failed; retrying with backoff.
    Retrying,
}

impl WatchState {
    fn as_str(self) -> &'static str {
        match self {
            WatchState::Starting => "starting",
            WatchState::Listing => "listing",
            WatchState::Watching => "watching",
            WatchState::Retrying => "retrying",
        }
    }
}

/// The status of one watch, for the admin view.
#[derive(Clone, Debug)]
pub(crate) struct WatchStatus {
    pub(crate) resource: &'static str,
    pub(crate) state: WatchState,
    pub(crate) errors: u64,
    pub(crate) restarts: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) last_change: Option<SystemTime>,
}

impl Default for WatchStatus {
    fn default() -> Self {
        WatchStatus {
            resource: "",
            state: WatchState::Starting,
            errors: 0,
            restarts: 0,
            last_error: None,
            last_change: None,
        }
    }
}

#[derive(Default)]
struct NsData {
    model: Namespace,
    watches: BTreeMap<&'static str, WatchStatus>,
}

/// One watched namespace: its model and the status of its watches.
#[derive(Default)]
pub(crate) struct NsEntry {
    data: Mutex<NsData>,
}

impl NsEntry {
    fn lock(&self) -> MutexGuard<'_, NsData> {
        // Every update leaves the model consistent, so a poisoned lock is still usable.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Namespace)) {
        f(&mut self.lock().model);
    }

    pub(crate) fn set_watch(&self, watch: &'static str, f: impl FnOnce(&mut WatchStatus)) {
        f(self.lock().watches.entry(watch).or_default());
    }
}

/// The discovery state of one API connection, shared by its namers, transformers, the
/// discovery actor and the watches.
pub struct K8sBackend {
    pub(crate) connection: Connection,
    pub(crate) label: String,
    pub(crate) epoch: Epoch,
    namespaces: Mutex<HashMap<String, Arc<NsEntry>>>,
    requests: mpsc::UnboundedSender<String>,
    pending_requests: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    failure: Mutex<Option<String>>,
}

/// [`K8sBackend`] under its crate-internal name.
pub(crate) type Backend = K8sBackend;

impl std::fmt::Debug for K8sBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sBackend")
            .field("api", &self.connection.description)
            .finish_non_exhaustive()
    }
}

impl K8sBackend {
    /// A backend for `connection`; nothing is watched until its [`K8sDiscovery`] actor
    /// runs (see [`K8sBackend::discovery`]) and a lookup asks.
    pub fn new(connection: Connection, epoch: Epoch) -> Arc<K8sBackend> {
        let (requests, rx) = mpsc::unbounded_channel();
        Arc::new(K8sBackend {
            connection,
            label: "io.l5d.k8s".to_owned(),
            epoch,
            namespaces: Mutex::new(HashMap::new()),
            requests,
            pending_requests: Mutex::new(Some(rx)),
            failure: Mutex::new(None),
        })
    }

    /// The actor that will watch for this backend (start it on an actix arbiter).
    pub fn discovery(self: &Arc<Self>) -> K8sDiscovery {
        K8sDiscovery::new(Arc::clone(self))
    }

    /// The API connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    fn namespaces(&self) -> MutexGuard<'_, HashMap<String, Arc<NsEntry>>> {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn take_requests(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.pending_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub(crate) fn fail(&self, message: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
        self.epoch.bump();
    }

    /// The namespace's entry, created (and its watch requested) on first use.
    pub(crate) fn entry(&self, namespace: &str) -> Arc<NsEntry> {
        let mut namespaces = self.namespaces();
        if let Some(entry) = namespaces.get(namespace) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(NsEntry::default());
        namespaces.insert(namespace.to_owned(), Arc::clone(&entry));
        // Nobody listening means the process is shutting down (or a tool that watches
        // nothing): lookups stay pending, which is the truth.
        let _ = self.requests.send(namespace.to_owned());
        entry
    }

    /// The ready addresses of `service`'s `port` in `namespace`, optionally restricted to
    /// endpoints labelled `label = value`.
    pub fn resolve(
        &self,
        namespace: &str,
        service: &str,
        port: &PortRef,
        label: Option<(&str, &str)>,
    ) -> Result<Resolution, String> {
        if let Some(failure) = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(failure);
        }
        let entry = self.entry(namespace);
        let data = entry.lock();
        Ok(data.model.resolve(service, port, label))
    }

    pub(crate) fn gauge(&self, namespace: &str, watch: &'static str, value: f64) {
        metrics::gauge!(
            "namer:namespace:watch:connected",
            "namer" => self.label.clone(),
            "namespace" => namespace.to_owned(),
            "watch" => watch,
        )
        .set(value);
    }

    /// Everything watched through this connection, for `/namer_state/...json`.
    pub fn state_json(&self) -> Value {
        let namespaces: Vec<(String, Arc<NsEntry>)> = self
            .namespaces()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut out = serde_json::Map::new();
        let mut sorted = namespaces;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, entry) in sorted {
            let data = entry.lock();
            let watches: serde_json::Map<String, Value> = data
                .watches
                .iter()
                .map(|(k, w)| {
                    (
                        (*k).to_owned(),
                        json!({
                            "resource": w.resource,
                            "state": w.state.as_str(),
                            "errors": w.errors,
                            "restarts": w.restarts,
                            "lastError": w.last_error,
                            "lastChangeUnixMs": w.last_change.and_then(unix_ms),
                        }),
                    )
                })
                .collect();
            let mut services: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
            for set in data.model.endpoints.objects.values().flatten() {
                services.entry(&set.service).or_default().push(json!({
                    "ports": set.ports,
                    "labels": set.labels,
                    "endpoints": set.endpoints.iter().map(|e| json!({
                        "ip": e.ip.to_string(),
                        "nodeName": e.node,
                    })).collect::<Vec<_>>(),
                }));
            }
            out.insert(
                name,
                json!({
                    "ready": data.model.endpoints.ready,
                    "watches": watches,
                    "services": services,
                }),
            );
        }
        json!({
            "api": self.connection.description,
            "failure": self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "namespaces": out,
        })
    }
}

/// The API connections of one process, each with its backend: namers and transformers
/// naming the same API share one backend (and so one watch per namespace).
#[derive(Debug)]
pub struct Backends {
    epoch: Epoch,
    backends: Vec<Arc<K8sBackend>>,
    /// The first namer's backend: transformers without `k8sHost` use it.
    namer_default: Option<Arc<K8sBackend>>,
}

impl Backends {
    /// No connections yet; every backend will bump `epoch`.
    pub fn new(epoch: Epoch) -> Backends {
        Backends {
            epoch,
            backends: Vec::new(),
            namer_default: None,
        }
    }

    fn get(&mut self, connection: Connection) -> Arc<K8sBackend> {
        if let Some(b) = self
            .backends
            .iter()
            .find(|b| b.connection.description == connection.description)
        {
            return Arc::clone(b);
        }
        let backend = K8sBackend::new(connection, self.epoch.clone());
        self.backends.push(Arc::clone(&backend));
        backend
    }

    /// The backend of a namer's `host`/`port`.
    pub fn for_namer(
        &mut self,
        host: Option<&str>,
        port: Option<u16>,
    ) -> Result<Arc<K8sBackend>, String> {
        let backend = self.get(Connection::resolve(host, port)?);
        self.namer_default
            .get_or_insert_with(|| Arc::clone(&backend));
        Ok(backend)
    }

    /// The backend of a transformer's `k8sHost`/`k8sPort`: without a host, the first
    /// Kubernetes namer's connection, else as a namer without a host.
    pub fn for_transformer(
        &mut self,
        host: Option<&str>,
        port: Option<u16>,
    ) -> Result<Arc<K8sBackend>, String> {
        match (host, &self.namer_default) {
            (None, Some(default)) => Ok(Arc::clone(default)),
            _ => Ok(self.get(Connection::resolve(host, port)?)),
        }
    }

    /// Every backend created, each needing its [`K8sDiscovery`] actor started.
    pub fn all(&self) -> &[Arc<K8sBackend>] {
        &self.backends
    }
}

fn unix_ms(t: SystemTime) -> Option<u64> {
    u64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis()).ok()
}

/// The `io.l5d.k8s` / `io.l5d.k8s.ns` namer.
#[derive(Clone, Debug)]
pub struct K8sNamer {
    backend: Arc<K8sBackend>,
    prefix: Path,
    /// `io.l5d.k8s.ns`: the one namespace; `io.l5d.k8s`: none (the path names it).
    namespace: Option<String>,
    label: Option<String>,
}

impl K8sNamer {
    /// `io.l5d.k8s` mounted at `prefix`.
    pub fn new(backend: Arc<K8sBackend>, prefix: Path, label: Option<String>) -> K8sNamer {
        K8sNamer {
            backend,
            prefix,
            namespace: None,
            label,
        }
    }

    /// `io.l5d.k8s.ns` for `namespace`, mounted at `prefix`.
    pub fn in_namespace(
        backend: Arc<K8sBackend>,
        prefix: Path,
        namespace: String,
        label: Option<String>,
    ) -> K8sNamer {
        K8sNamer {
            backend,
            prefix,
            namespace: Some(namespace.to_lowercase()),
            label,
        }
    }

    /// Where this namer is mounted.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The shared backend.
    pub fn backend(&self) -> &Arc<K8sBackend> {
        &self.backend
    }

    /// `/namer_state/<prefix without /#>.json`.
    pub fn admin_path(&self) -> String {
        admin_path(&self.prefix)
    }
}

/// `/namer_state/<prefix without a leading /#>.json`.
pub fn admin_path(prefix: &Path) -> String {
    let elems = if prefix.elem_str(0) == Some("#") {
        prefix.drop(1)
    } else {
        prefix.clone()
    };
    format!("/namer_state/{}.json", elems.elems_lossy().join("/"))
}

impl Namer for K8sNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let fixed = if self.namespace.is_some() { 2 } else { 3 };
        let len = fixed + usize::from(self.label.is_some());
        if path.len() < len {
            return Activity::Ok(NameTree::Neg);
        }
        let mut segments = Vec::with_capacity(len);
        for i in 0..len {
            match path.elem_str(i) {
                Some(s) => segments.push(s.to_lowercase()),
                None => return Activity::Ok(NameTree::Neg),
            }
        }
        let (namespace, rest) = match &self.namespace {
            Some(ns) => (ns.as_str(), &segments[..]),
            None => (segments[0].as_str(), &segments[1..]),
        };
        let port = PortRef::parse(&rest[0]);
        let service = rest[1].as_str();
        let label = self.label.as_deref().zip(rest.get(2).map(String::as_str));
        match self.backend.resolve(namespace, service, &port, label) {
            Err(e) => Activity::Failed(NamingError::Failed(e)),
            Ok(Resolution::Pending) => Activity::Pending,
            Ok(Resolution::Neg) => Activity::Ok(NameTree::Neg),
            Ok(Resolution::Bound(addrs)) => Activity::Ok(NameTree::Leaf(Name::Bound(Bound {
                id: self
                    .prefix
                    .concat(&Path::from_strs(segments.iter().map(String::as_str))),
                residual: path.drop(len),
                addr: Addr::Bound(addrs),
            }))),
        }
    }
}
