//! A simulated Kubernetes API server, for tests and the local demo.
//!
//! Plexus discovers endpoints by listing and watching the Kubernetes API. Testing that
//! against a real cluster is slow and nondeterministic, so this module serves the few
//! resources Plexus reads (`Endpoints`, `EndpointSlice`, `Service`, `Pod`, `Node`) over
//! HTTP in their Kubernetes wire shapes, with list and watch semantics that follow the
//! real API: one global resource version, watches resuming from a version, 410 Gone for
//! a forgotten version, bookmarks. Tests drive it through [`Cluster`] (add, change and
//! delete objects, cut watches, restart the server, compact the history). It is a
//! development and test tool and is never presented as a real cluster: there is no
//! authentication, no writes over HTTP and no persistence.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use plexus::sim::{Cluster, EndpointAddress, EndpointPort};
//! let cluster = Cluster::new();
//! let running = cluster.start(([127, 0, 0, 1], 0).into()).await?;
//! cluster.set_endpoints(
//!     "default",
//!     "web",
//!     vec![EndpointAddress::ready("127.0.1.10", "node-1")],
//!     vec![EndpointPort::tcp("http", 8080)],
//! );
//! println!("serving on {}", running.addr());
//! running.stop().await;
//! # Ok(())
//! # }
//! ```

mod http;
mod model;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use model::{
    EndpointAddress, EndpointPort, Kind, Node, Pod, SERVICE_NAME_LABEL, Service, ServicePort,
    TargetPort, slice_name,
};
pub use store::EventType;

use store::Store;

/// How a simulated cluster behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many change events are kept for watches to resume from.
    pub history_limit: usize,
    /// How often a watch asking for bookmarks receives one.
    pub bookmark_interval: Duration,
    /// Whether `discovery.k8s.io/v1` is served. Clusters older than Kubernetes 1.21 have
    /// only `v1` `Endpoints`; turning this off answers 404 for EndpointSlices, as they do.
    pub endpoint_slices: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(60),
            endpoint_slices: true,
        }
    }
}

/// State shared by the control API and the HTTP server.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// Bumped by [`Cluster::drop_watches`]; every open watch ends when it moves.
    drops: watch::Sender<u64>,
    bookmark_interval: Duration,
    endpoint_slices: bool,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        // The store is left consistent by every operation, so a poisoned lock is usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A simulated cluster: its objects, and the control API tests drive it with.
///
/// Cloning gives another handle to the same cluster.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster::new()
    }
}

impl Cluster {
    /// An empty cluster with the default configuration.
    pub fn new() -> Cluster {
        Cluster::with_config(SimConfig::default())
    }

    /// An empty cluster.
    pub fn with_config(config: SimConfig) -> Cluster {
        Cluster {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new(config.history_limit)),
                drops: watch::Sender::new(0),
                bookmark_interval: config.bookmark_interval.max(Duration::from_millis(1)),
                endpoint_slices: config.endpoint_slices,
            }),
        }
    }

    /// Serves the cluster's API on `addr` (port 0 picks a free port) until stopped.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<Running> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (alive, drained) = mpsc::channel(1);
        let task = tokio::spawn(http::serve(
            listener,
            self.shared.clone(),
            shutdown_rx,
            alive,
        ));
        Ok(Running {
            addr,
            cluster: self.clone(),
            shutdown,
            task,
            drained,
        })
    }

    /// The current global resource version.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv()
    }

    /// An object as the API would serve it (`namespace` is ignored for nodes).
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let namespace = if kind.namespaced() { namespace } else { "" };
        self.shared.store().get(kind, namespace, name)
    }

    /// Creates or replaces a pod; returns its resource version.
    pub fn apply_pod(&self, pod: &Pod) -> u64 {
        self.shared
            .store()
            .put(Kind::Pod, &pod.namespace, &pod.name, pod.to_json())
    }

    /// Deletes a pod; returns the deletion's version, `None` if there was no such pod.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> Option<u64> {
        self.shared.store().delete(Kind::Pod, namespace, name)
    }

    /// Creates or replaces a service; returns its resource version.
    pub fn apply_service(&self, service: &Service) -> u64 {
        self.shared.store().put(
            Kind::Service,
            &service.namespace,
            &service.name,
            service.to_json(),
        )
    }

    /// Deletes a service (not its endpoints); returns the deletion's version.
    pub fn delete_service(&self, namespace: &str, name: &str) -> Option<u64> {
        self.shared.store().delete(Kind::Service, namespace, name)
    }

    /// Creates or replaces a node; returns its resource version.
    pub fn apply_node(&self, node: &Node) -> u64 {
        self.shared
            .store()
            .put(Kind::Node, "", &node.name, node.to_json())
    }

    /// Deletes a node; returns the deletion's version.
    pub fn delete_node(&self, name: &str) -> Option<u64> {
        self.shared.store().delete(Kind::Node, "", name)
    }

    /// Sets the endpoints of a service: its `Endpoints` object and its `EndpointSlice`
    /// (labelled `kubernetes.io/service-name`) are written together, under one lock, so
    /// no list sees one without the other. Returns the newest resource version.
    pub fn set_endpoints(
        &self,
        namespace: &str,
        service: &str,
        addresses: Vec<EndpointAddress>,
        ports: Vec<EndpointPort>,
    ) -> u64 {
        let mut store = self.shared.store();
        let labels: BTreeMap<String, String> = store
            .get(Kind::Service, namespace, service)
            .and_then(|s| serde_json::from_value(s["metadata"]["labels"].clone()).ok())
            .unwrap_or_default();
        let endpoints = model::endpoints_json(namespace, service, &labels, &addresses, &ports);
        let slice = model::endpoint_slice_json(namespace, service, &labels, &addresses, &ports);
        store.put(Kind::Endpoints, namespace, service, endpoints);
        store.put(Kind::EndpointSlice, namespace, &slice_name(service), slice);
        store.rv()
    }

    /// Deletes a service's `Endpoints` and `EndpointSlice` together; returns the newest
    /// version, `None` if neither existed.
    pub fn delete_endpoints(&self, namespace: &str, service: &str) -> Option<u64> {
        let mut store = self.shared.store();
        let a = store.delete(Kind::Endpoints, namespace, service);
        let b = store.delete(Kind::EndpointSlice, namespace, &slice_name(service));
        a.max(b)
    }

    /// Ends every open watch stream; clients must watch again.
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|n| *n += 1);
    }

    /// Forgets all but the newest `keep` change events: a watch from an older version
    /// is answered with 410 Gone.
    pub fn compact(&self, keep: usize) {
        self.shared.store().compact(keep);
    }
}

/// A running API server for a [`Cluster`]; stop it with [`Running::stop`].
///
/// Dropping it without stopping also stops the server, without waiting.
pub struct Running {
    addr: SocketAddr,
    cluster: Cluster,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Yields `None` once every task of the server (acceptor, connections, watches)
    /// has ended.
    drained: mpsc::Receiver<()>,
}

impl Running {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster served.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Stops the server: closes the listener and every connection and watch, and waits
    /// for all its tasks to end. The cluster's state is kept.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        let _ = (&mut self.task).await;
        while self.drained.recv().await.is_some() {}
    }

    /// Stops the server and serves the same cluster again on the same address; state
    /// and resource versions are kept.
    pub async fn restart(self) -> std::io::Result<Running> {
        let addr = self.addr;
        let cluster = self.cluster.clone();
        self.stop().await;
        cluster.start(addr).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

#[cfg(test)]
mod tests;
