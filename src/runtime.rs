//! The root of the supervision tree: starts everything a configuration asks for, and
//! stops it cleanly.
//!
//! ```text
//! root (this module, on the main arbiter)
//! ├── discovery: one watch actor per namer (supervised, restarted on failure)
//! ├── per router: one ServerActor per server ── HttpConnection actors on the workers
//! ├── worker arbiters (one per core): connections, pools and binding caches
//! ├── Zipkin exporter (with io.l5d.zipkin): batches and sends spans
//! └── admin server
//! ```
//! Shutdown (SIGTERM, SIGINT or `POST /admin/shutdown`) stops accepting, lets open
//! connections finish their in-flight requests within `admin.shutdownGraceMs`, then
//! stops the workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::Arbiter;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::config::{Config, Interpreter, Namer as NamerConfig, Telemeter};
use crate::discovery::Epoch;
use crate::discovery::fs::{FsNamer, FsWatch};
use crate::discovery::k8s::{Backends, K8sDiscovery, K8sNamer};
use crate::discovery::transformers::{self, TransformingNamer};
use crate::naming::{Namer, Namers, Path, SystemNamer};
use crate::router::Router;
use crate::server::{Drain, ServerActor, StopAccepting, Workers};
use crate::telemetry::trace::{ExportSettings, Exporter, Tracer};
use crate::telemetry::{RecentRequests, Registry, RequestTelemetry};

/// Why Plexus could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A plugin could not be set up (e.g. a host name that does not resolve).
    #[error("{0}")]
    Plugin(String),
    /// A port could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Which server wanted it.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Requests a shutdown from anywhere (the admin endpoint, tests).
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Sender<bool>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(watch::channel(false).0)
    }
}

impl Shutdown {
    /// Asks the process to shut down gracefully.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Listen {
        addr,
        what: what.to_string(),
        source,
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    // The default backlog (128) overflows under connection bursts; the kernel caps this
    // at net.core.somaxconn.
    socket.listen(LISTEN_BACKLOG).map_err(err)
}

/// Connections the kernel may queue before Plexus accepts them.
const LISTEN_BACKLOG: u32 = 4096;

/// How file namers are kept current.
enum Watching {
    /// A supervised watch actor per namer (a running proxy).
    Actors,
    /// One scan now, nothing after (command-line tools).
    ScanOnce,
}

/// The namers a configuration declares, mounted in order, plus the system namer; their
/// admin views and not-yet-started watchers; and the Kubernetes API connections they
/// (and, later, the routers' transformers) use.
fn namers(
    config: &Config,
    epoch: &Epoch,
    watching: Watching,
) -> Result<(Namers, Vec<Unstarted>, Backends), StartError> {
    let mut namers = Namers::new(SystemNamer::default());
    let mut handles = Vec::new();
    let mut k8s = Backends::new(epoch.clone());
    for namer in &config.namers {
        let (prefix, namer, own): (Path, Arc<dyn Namer>, _) = match namer {
            NamerConfig::Fs(fs) => {
                let prefix = mount_prefix(fs.prefix.as_ref(), "io.l5d.fs");
                let (namer, watch) =
                    FsNamer::new(fs.root_dir.clone(), prefix.clone(), epoch.clone());
                let watch = match watching {
                    // Started by the caller once every port is bound.
                    Watching::Actors => Some(watch),
                    Watching::ScanOnce => {
                        watch.scan_now();
                        None
                    }
                };
                handles.push(Unstarted {
                    view: NamerView::Fs(namer.clone()),
                    watch,
                });
                (prefix, Arc::new(namer), &fs.transformers)
            }
            NamerConfig::K8s(k) => {
                let prefix = mount_prefix(k.prefix.as_ref(), "io.l5d.k8s");
                let backend = k8s
                    .for_namer(k.host.as_deref(), k.port)
                    .map_err(StartError::Plugin)?;
                let namer = K8sNamer::new(backend, prefix.clone(), k.label_selector.clone());
                handles.push(Unstarted {
                    view: NamerView::K8s(namer.clone()),
                    watch: None,
                });
                (prefix, Arc::new(namer), &k.transformers)
            }
            NamerConfig::K8sNs(k) => {
                let prefix = mount_prefix(k.prefix.as_ref(), "io.l5d.k8s.ns");
                let var = k.env_var.as_deref().unwrap_or("POD_NAMESPACE");
                let namespace = std::env::var(var).map_err(|_| {
                    StartError::Plugin(format!(
                        "io.l5d.k8s.ns: the environment variable {var} (the namespace to watch) is not set; \
                         set it from the downward API (fieldRef metadata.namespace)"
                    ))
                })?;
                let backend = k8s
                    .for_namer(k.host.as_deref(), k.port)
                    .map_err(StartError::Plugin)?;
                let namer = K8sNamer::in_namespace(
                    backend,
                    prefix.clone(),
                    namespace,
                    k.label_selector.clone(),
                );
                handles.push(Unstarted {
                    view: NamerView::K8s(namer.clone()),
                    watch: None,
                });
                (prefix, Arc::new(namer), &k.transformers)
            }
            _ => continue,
        };
        let own = own
            .iter()
            .map(|t| transformers::build(t, &mut k8s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Plugin)?;
        let namer: Arc<dyn Namer> = if own.is_empty() {
            namer
        } else {
            Arc::new(TransformingNamer::new(namer, own))
        };
        namers = namers.mount(prefix, namer);
    }
    Ok((namers, handles, k8s))
}

/// The routers of a configuration, sharing `namers` and reporting to `telemetry`.
fn routers(
    config: &Config,
    namers: &Namers,
    epoch: &Epoch,
    k8s: &mut Backends,
    telemetry: &RequestTelemetry,
) -> Result<Vec<Arc<Router>>, StartError> {
    let mut routers = Vec::new();
    for router in &config.routers {
        let interpreter = match (router.http(), router.thrift()) {
            (Some((h, _)), _) => &h.interpreter,
            (_, Some((t, _))) => &t.interpreter,
            _ => continue,
        };
        let own = match interpreter {
            Some(Interpreter::Default(d)) => d
                .transformers
                .iter()
                .map(|t| transformers::build(t, k8s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StartError::Plugin)?,
            _ => Vec::new(),
        };
        let built = match (router.http(), router.thrift()) {
            (Some((h, version)), _) => Router::from_config(
                h,
                version,
                namers.clone(),
                epoch.clone(),
                own,
                telemetry.clone(),
            ),
            (_, Some((t, flavor))) => Router::from_thrift_config(
                t,
                flavor,
                namers.clone(),
                epoch.clone(),
                own,
                telemetry.clone(),
            ),
            _ => continue,
        };
        routers.push(built.map_err(StartError::Plugin)?);
    }
    Ok(routers)
}

/// A configuration's routers with their namers read once, for tools that explain or
/// bind names offline (`plexus dtab delegate --config`). Starts nothing: Kubernetes
/// names stay pending.
pub fn offline_routers(config: &Config) -> Result<Vec<Arc<Router>>, StartError> {
    let epoch = Epoch::new();
    let (namers, _, mut k8s) = namers(config, &epoch, Watching::ScanOnce)?;
    routers(
        config,
        &namers,
        &epoch,
        &mut k8s,
        &RequestTelemetry::default(),
    )
}

/// The tracing telemeters of a configuration, and the Zipkin exporter to run if there
/// is one. Call after the metrics recorder is installed (it registers counters).
fn request_telemetry(config: &Config) -> (RequestTelemetry, Option<Exporter>) {
    let recent = config
        .recent_requests()
        .map(|r| Arc::new(RecentRequests::new(r.sample_rate, r.capacity())));
    let Some(z) = config.zipkin() else {
        return (
            RequestTelemetry {
                tracer: None,
                recent,
            },
            None,
        );
    };
    if z.port() == 9410 {
        tracing::warn!(
            "io.l5d.zipkin port 9410 is Zipkin's Scribe port; Plexus sends Zipkin v2 JSON over HTTP (POST /api/v2/spans, usually port 9411)"
        );
    }
    let (tracer, exporter) = Tracer::new(z.sample_rate(), ExportSettings::new(z.host(), z.port()));
    tracing::info!(collector = %format!("{}:{}", z.host(), z.port()), sample_rate = z.sample_rate(), "sending spans to Zipkin");
    (
        RequestTelemetry {
            tracer: Some(tracer),
            recent,
        },
        Some(exporter),
    )
}

/// What the admin server shows of a namer.
enum NamerView {
    Fs(FsNamer),
    K8s(K8sNamer),
}

/// A namer whose watch actor is not started yet.
struct Unstarted {
    view: NamerView,
    watch: Option<FsWatch>,
}

impl Unstarted {
    fn start(self) -> NamerHandle {
        NamerHandle {
            view: self.view,
            _watch: self.watch.map(FsWatch::start),
        }
    }
}

/// A running namer: its state for the admin server, and its watch actor.
pub struct NamerHandle {
    view: NamerView,
    _watch: Option<Addr<FsWatch>>,
}

impl NamerHandle {
    /// Where the admin server shows this namer's state (`/namer_state/io.l5d.fs.json`).
    pub fn admin_path(&self) -> String {
        match &self.view {
            NamerView::Fs(n) => n.admin_path(),
            NamerView::K8s(n) => n.admin_path(),
        }
    }

    /// The namer's state as JSON.
    pub fn state_json(&self) -> serde_json::Value {
        match &self.view {
            NamerView::Fs(n) => n.state_json(),
            NamerView::K8s(n) => n.backend().state_json(),
        }
    }
}

/// `prefix: /x` in a namer's config means `/#/x`.
fn mount_prefix(prefix: Option<&Path>, kind: &str) -> Path {
    let own = prefix.cloned().unwrap_or_else(|| Path::from_strs([kind]));
    Path::from_strs(["#"]).concat(&own)
}

/// Runs `config` until a shutdown is requested. `raw` is the file as JSON, for
/// `/config.json`.
pub async fn run(
    config: Config,
    raw: serde_json::Value,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let epoch = Epoch::new();
    let registry = Registry::new();
    if metrics::set_global_recorder(registry.clone()).is_err() {
        tracing::warn!("a metrics recorder was already installed; metrics endpoints will be empty");
    }
    let (namers, unstarted, mut k8s) = namers(&config, &epoch, Watching::Actors)?;
    let (telemetry, exporter) = request_telemetry(&config);
    let routers = routers(&config, &namers, &epoch, &mut k8s, &telemetry)?;

    // Bind everything before starting anything, so a taken port fails fast and clearly.
    let admin_addr = SocketAddr::new(
        config
            .admin
            .ip
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        config.admin.port.unwrap_or(9990),
    );
    let admin_listener = bind(admin_addr, "the admin server")?;
    let mut listeners = Vec::new();
    for router in &routers {
        for spec in &router.servers {
            let listener = bind(spec.addr, &format!("router {}", router.label))?;
            listeners.push((router.clone(), spec.clone(), listener));
        }
    }

    let namer_handles: Vec<NamerHandle> = unstarted.into_iter().map(Unstarted::start).collect();
    // Kept until shutdown: each owns an API client and its namespaces' watches.
    let _k8s_discovery: Vec<Addr<K8sDiscovery>> =
        k8s.all().iter().map(|b| b.discovery().start()).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for router in &routers {
        router
            .workers
            .store(cores, std::sync::atomic::Ordering::Relaxed);
    }
    let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
    let workers = Workers::new(arbiters.iter().map(Arbiter::handle).collect());
    let drain = Drain::default();
    let mut acceptors = Vec::new();
    for (router, spec, listener) in listeners {
        tracing::info!(router = %router.label, addr = %spec.addr, "serving");
        acceptors
            .push(ServerActor::new(listener, router, spec, workers.clone(), drain.clone()).start());
    }
    let registry_handle = registry.clone();
    let prometheus = config.telemetry.iter().find_map(|t| match t {
        Telemeter::Prometheus(p) => Some((p.path.clone(), p.prefix.clone().unwrap_or_default())),
        _ => None,
    });
    let admin = AdminState::new(
        routers.clone(),
        raw,
        shutdown.clone(),
        registry,
        namer_handles,
        prometheus,
    )
    .with_recent_requests(telemetry.recent.clone());
    let (stop_exporter, exporter_stopped) = tokio::sync::oneshot::channel::<()>();
    let exporter = exporter.map(|e| {
        actix_rt::spawn(e.run(async move {
            let _ = exporter_stopped.await;
        }))
    });
    tracing::info!(addr = %admin_addr, "admin server");
    let admin_task = actix_rt::spawn(admin::serve(admin_listener, admin));
    let evictor = actix_rt::spawn(evict_idle(routers.clone(), registry_handle));

    tokio::select! {
        () = shutdown.wait() => tracing::info!("shutdown requested"),
        () = shutdown_signal() => tracing::info!("signal received, shutting down"),
    }

    for acceptor in &acceptors {
        let _ = acceptor.send(StopAccepting).await;
    }
    drain.start();
    let grace = Duration::from_millis(config.admin.shutdown_grace_ms.unwrap_or(10_000));
    let deadline = tokio::time::Instant::now() + grace;
    while drain.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if drain.active() > 0 {
        tracing::warn!(
            open = drain.active(),
            "grace period over; closing remaining connections"
        );
    }
    // The spans of the last requests are queued by now: send them, within a bound.
    let _ = stop_exporter.send(());
    if let Some(task) = exporter
        && tokio::time::timeout(Duration::from_secs(6), task)
            .await
            .is_err()
    {
        tracing::warn!("gave up sending the last spans to Zipkin");
    }
    admin_task.abort();
    evictor.abort();
    for arbiter in arbiters {
        arbiter.stop();
        let _ = arbiter.join();
    }
    Ok(())
}

/// Evicts idle services and clients (and their metrics) of every router, checking a
/// tenth of the idle TTL apart.
async fn evict_idle(routers: Vec<Arc<Router>>, registry: Registry) {
    let period = routers
        .iter()
        .map(|r| r.idle_ttl / 10)
        .min()
        .unwrap_or(Duration::from_secs(60))
        .clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = std::time::Instant::now();
        for router in &routers {
            router.evict_idle(&registry, now);
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: how `plexus run` and `plexus demo` know to stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

impl From<String> for StartError {
    fn from(e: String) -> Self {
        StartError::Plugin(e)
    }
}
