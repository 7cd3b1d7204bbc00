//! The Kubernetes watch actors: one discovery actor per API connection, and under it one
//! supervised watch actor per (namespace, resource).
//!
//! A namespace is watched from its first lookup on. Its endpoints watch lists and watches
//! `EndpointSlice`s (`discovery.k8s.io/v1`), falling back to v1 `Endpoints` when the API
//! answers 404 for slices (clusters older than 1.21); its services watch keeps the port
//! mappings that numbered ports need. `kube`'s watcher does the protocol work: it resumes
//! from the last `resourceVersion` after a disconnect, relists on 410 Gone, and retries
//! with the jittered backoff below. A relist is buffered and swapped in whole when
//! complete, so an endpoint deleted while the watch was down disappears then, and lookups
//! keep the last known endpoints meanwhile. Every applied change bumps the discovery
//! [`Epoch`](crate::discovery::Epoch) once.
//!
//! Failures stay local: a watch that keeps failing only marks its own status (shown at
//! `/namer_state/...` and in the `namer:namespace:watch:*` metrics); if its stream ever
//! ends or the actor panics, [`actix::Supervisor`] restarts it after a backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::{
    Actor, ActorContext, AsyncContext, Context, SpawnHandle, StreamHandler, Supervised, Supervisor,
};
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};

use super::model::{self, EndpointSet, ServicePorts};
use super::{Backend, NsEntry, WatchState};

/// What a watch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// `discovery.k8s.io/v1` `EndpointSlice`s.
    EndpointSlices,
    /// v1 `Endpoints`, for clusters without slices.
    Endpoints,
    /// v1 `Service`s (port mappings).
    Services,
}

impl Source {
    /// The resource name, as in the API path and the admin view.
    pub(super) fn resource(self) -> &'static str {
        match self {
            Source::EndpointSlices => "endpointslices",
            Source::Endpoints => "endpoints",
            Source::Services => "services",
        }
    }

    /// The admin/metrics name of the watch this source feeds.
    fn watch(self) -> &'static str {
        match self {
            Source::EndpointSlices | Source::Endpoints => "endpoints",
            Source::Services => "services",
        }
    }
}

/// One object as the namespace model keeps it.
#[derive(Debug)]
enum Converted {
    Endpoints(Vec<EndpointSet>),
    Service(ServicePorts),
}

/// A watch event, converted.
#[derive(Debug)]
enum Change {
    /// A (re)list starts: buffer until [`Change::ListDone`].
    Restart,
    Listed(String, Converted),
    ListDone,
    Applied(String, Converted),
    Deleted(String),
}

type Item = Result<Change, watcher::Error>;

/// Jittered exponential backoff, 100 ms doubling to 10 s, reset after a success.
#[derive(Debug, Default)]
pub(super) struct WatchBackoff {
    attempt: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let ceiling = Duration::from_millis(100)
            .saturating_mul(1u32 << self.attempt.min(7))
            .min(Duration::from_secs(10));
        self.attempt = self.attempt.saturating_add(1);
        // Full jitter between half the ceiling and the ceiling.
        let jitter = 0.5 + crate::router::choose::uniform() / 2.0;
        Some(ceiling.mul_f64(jitter))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn convert<K: ResourceExt + Send + 'static>(
    stream: impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    f: fn(&K) -> Converted,
) -> BoxStream<'static, Item> {
    stream
        .backoff(WatchBackoff::default())
        .map(move |r| {
            r.map(|event| match event {
                Event::Init => Change::Restart,
                Event::InitApply(o) => Change::Listed(o.name_any(), f(&o)),
                Event::InitDone => Change::ListDone,
                Event::Apply(o) => Change::Applied(o.name_any(), f(&o)),
                Event::Delete(o) => Change::Deleted(o.name_any()),
            })
        })
        .boxed()
}

fn changes(client: Client, namespace: &str, source: Source) -> BoxStream<'static, Item> {
    let config = watcher::Config::default();
    match source {
        Source::EndpointSlices => convert(
            watcher(Api::<EndpointSlice>::namespaced(client, namespace), config),
            |s| Converted::Endpoints(model::from_slice(s).into_iter().collect()),
        ),
        Source::Endpoints => convert(
            watcher(Api::<Endpoints>::namespaced(client, namespace), config),
            |e| Converted::Endpoints(model::from_endpoints(e)),
        ),
        Source::Services => convert(
            watcher(Api::<Service>::namespaced(client, namespace), config),
            |s| Converted::Service(model::from_service(s)),
        ),
    }
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config)
}

/// Whether an error says the API does not serve the resource at all.
fn not_served(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404
    )
}

/// Watches one resource in one namespace and keeps its table in the namespace model.
pub(super) struct ResourceWatch {
    backend: Arc<Backend>,
    entry: Arc<NsEntry>,
    namespace: String,
    source: Source,
    client: Client,
    /// Objects received during a (re)list, swapped in when it completes.
    buffer: Option<HashMap<String, Converted>>,
    stream: Option<SpawnHandle>,
    restarts: u32,
}

impl ResourceWatch {
    fn start(
        backend: Arc<Backend>,
        entry: Arc<NsEntry>,
        namespace: String,
        source: Source,
        client: Client,
    ) -> actix::Addr<ResourceWatch> {
        Supervisor::start(move |_| ResourceWatch {
            backend,
            entry,
            namespace,
            source,
            client,
            buffer: None,
            stream: None,
            restarts: 0,
        })
    }

    fn subscribe(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.stream.take() {
            ctx.cancel_future(handle);
        }
        let stream = changes(self.client.clone(), &self.namespace, self.source);
        self.stream = Some(ctx.add_stream(stream));
        self.entry.set_watch(self.source.watch(), |w| {
            w.resource = self.source.resource();
        });
    }

    fn apply(&mut self, change: Change) {
        let watch = self.source.watch();
        match change {
            Change::Restart => {
                self.buffer = Some(HashMap::new());
                self.entry
                    .set_watch(watch, |w| w.state = WatchState::Listing);
                return;
            }
            Change::Listed(name, object) => {
                self.buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(name, object);
                return;
            }
            Change::ListDone => {
                let listed = self.buffer.take().unwrap_or_default();
                let count = listed.len();
                self.entry.update(|ns| match self.source {
                    Source::Services => {
                        ns.services.objects = listed
                            .into_iter()
                            .filter_map(|(k, v)| match v {
                                Converted::Service(s) => Some((k, s)),
                                Converted::Endpoints(_) => None,
                            })
                            .collect();
                        ns.services.ready = true;
                    }
                    Source::EndpointSlices | Source::Endpoints => {
                        ns.endpoints.objects = listed
                            .into_iter()
                            .filter_map(|(k, v)| match v {
                                Converted::Endpoints(e) => Some((k, e)),
                                Converted::Service(_) => None,
                            })
                            .collect();
                        ns.endpoints.ready = true;
                    }
                });
                tracing::info!(
                    namespace = %self.namespace,
                    resource = self.source.resource(),
                    objects = count,
                    api = %self.backend.connection.describe(),
                    "k8s: listed; watching for changes"
                );
            }
            Change::Applied(name, object) => self.entry.update(|ns| match object {
                Converted::Endpoints(e) => {
                    ns.endpoints.objects.insert(name, e);
                }
                Converted::Service(s) => {
                    ns.services.objects.insert(name, s);
                }
            }),
            Change::Deleted(name) => self.entry.update(|ns| match self.source {
                Source::Services => {
                    ns.services.objects.remove(&name);
                }
                Source::EndpointSlices | Source::Endpoints => {
                    ns.endpoints.objects.remove(&name);
                }
            }),
        }
        self.entry.set_watch(watch, |w| {
            w.state = WatchState::Watching;
            w.last_change = Some(SystemTime::now());
        });
        self.backend.gauge(&self.namespace, watch, 1.0);
        self.backend.epoch.bump();
    }

    fn failed(&mut self, error: watcher::Error, ctx: &mut Context<Self>) {
        let watch = self.source.watch();
        if self.source == Source::EndpointSlices && not_served(&error) {
            tracing::warn!(
                namespace = %self.namespace,
                api = %self.backend.connection.describe(),
                "k8s: the API does not serve discovery.k8s.io/v1 EndpointSlices; watching v1 Endpoints instead"
            );
            self.source = Source::Endpoints;
            self.buffer = None;
            self.subscribe(ctx);
            return;
        }
        let message = error.to_string();
        tracing::warn!(
            namespace = %self.namespace,
            resource = self.source.resource(),
            api = %self.backend.connection.describe(),
            error = %message,
            "k8s: watch failed; retrying with backoff, last known endpoints stay in use"
        );
        self.entry.set_watch(watch, |w| {
            w.state = WatchState::Retrying;
            w.errors += 1;
            w.last_error = Some(message);
        });
        self.backend.gauge(&self.namespace, watch, 0.0);
        metrics::counter!(
            "namer:namespace:watch:errors",
            "namer" => self.backend.label.clone(),
            "namespace" => self.namespace.clone(),
            "watch" => watch,
        )
        .increment(1);
    }
}

impl Actor for ResourceWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.restarts == 0 {
            self.subscribe(ctx);
            return;
        }
        // Restarted by the supervisor: wait a backoff first, so a watch that keeps dying
        // cannot spin.
        let delay = WatchBackoff {
            attempt: self.restarts.min(7),
        }
        .next()
        .unwrap_or(Duration::from_secs(1));
        ctx.run_later(delay, |act, ctx| act.subscribe(ctx));
    }
}

impl Supervised for ResourceWatch {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.restarts = self.restarts.saturating_add(1);
        self.stream = None;
        self.buffer = None;
        self.entry.set_watch(self.source.watch(), |w| {
            w.restarts += 1;
            w.state = WatchState::Retrying;
        });
        tracing::warn!(
            namespace = %self.namespace,
            resource = self.source.resource(),
            "k8s: watch restarted by its supervisor; last known endpoints stay in use"
        );
    }
}

impl StreamHandler<Item> for ResourceWatch {
    fn handle(&mut self, item: Item, ctx: &mut Self::Context) {
        match item {
            Ok(change) => self.apply(change),
            Err(error) => self.failed(error, ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // kube's watcher never ends by itself; if it does, start over under supervision.
        ctx.stop();
    }
}

/// A request to the discovery actor to watch a namespace.
#[derive(Debug)]
pub(super) struct WatchNamespace(pub(super) String);

/// Owns the API client of one connection and the watches of every namespace looked up
/// through it.
pub struct K8sDiscovery {
    backend: Arc<Backend>,
    client: Option<Client>,
    watches: Vec<actix::Addr<ResourceWatch>>,
}

impl std::fmt::Debug for K8sDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sDiscovery")
            .field("api", &self.backend.connection.describe())
            .field("watches", &self.watches.len())
            .finish_non_exhaustive()
    }
}

impl K8sDiscovery {
    pub(super) fn new(backend: Arc<Backend>) -> Self {
        K8sDiscovery {
            backend,
            client: None,
            watches: Vec::new(),
        }
    }
}

impl Actor for K8sDiscovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The client's worker task lives on this arbiter, as long as this actor does.
        match Client::try_from(self.backend.connection.config.clone()) {
            Ok(client) => self.client = Some(client),
            Err(e) => {
                let message = format!(
                    "cannot create a client for the Kubernetes API at {}: {e}",
                    self.backend.connection.describe()
                );
                tracing::error!("{message}");
                self.backend.fail(message);
            }
        }
        if let Some(requests) = self.backend.take_requests() {
            ctx.add_stream(futures::stream::unfold(requests, |mut rx| async move {
                rx.recv().await.map(|ns| (WatchNamespace(ns), rx))
            }));
        }
    }
}

impl StreamHandler<WatchNamespace> for K8sDiscovery {
    fn handle(&mut self, WatchNamespace(namespace): WatchNamespace, _ctx: &mut Self::Context) {
        let Some(client) = &self.client else { return };
        let entry = self.backend.entry(&namespace);
        tracing::info!(%namespace, api = %self.backend.connection.describe(), "k8s: watching namespace");
        for source in [Source::EndpointSlices, Source::Services] {
            self.watches.push(ResourceWatch::start(
                Arc::clone(&self.backend),
                Arc::clone(&entry),
                namespace.clone(),
                source,
                client.clone(),
            ));
        }
    }

    /// The request channel closed: the backend is gone, the watches keep running.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}
