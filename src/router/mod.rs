//! The request phases of a router, in the order a request meets them.
//!
//! A [`Router`] is one `routers:` entry: its label, base dtab, identifiers, namers and
//! servers. The phases are modules: `identify` (name the request), `binding` (dtab +
//! namers, cached per worker and refreshed when discovery changes), `choose` (pick a
//! bound leaf and an endpoint), `client` (connections to endpoints), and `http` (the
//! HTTP pipeline that runs them for each request). Errors from any phase become
//! responses in one place, [`error`].
//!
//! Shared state is immutable (`Arc<Router>`); what changes per request lives in
//! per-worker caches, so the hot path takes no lock.

pub mod accrual;
pub mod balance;
pub mod binding;
pub mod choose;
pub mod client;
pub mod error;
pub mod h2body;
pub mod http;
pub mod identify;
pub mod peer;
pub mod policy;
pub mod retry;
pub mod route;
pub mod stats;
pub mod thrift;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, HttpRouter};
use crate::discovery::Epoch;
use crate::naming::{Dtab, Namers, Path};

pub use error::{ErrorKind, ProxyError};

/// Boxes the future `make` makes, allocating first so that it is written straight into
/// its box. `Box::pin(make())` builds it on the stack and then copies it, all of it:
/// kilobytes for a request's futures, on every request (see `benches/README.md`).
#[inline(always)]
pub fn boxed<F>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// One listening socket of a router.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Where to listen.
    pub addr: SocketAddr,
    /// TLS to accept (server `tls:`), certificates reloaded when their files change.
    pub tls: Option<Arc<plexus_tls::ServerTls>>,
    /// With `tls`: plaintext is accepted too (`acceptPlaintext`), for peers that have
    /// not negotiated TLS.
    pub accept_plaintext: bool,
    /// Strip inbound `l5d-*` headers and sanitise responses (edge servers).
    pub clear_context: bool,
    /// Refuse requests that passed more proxies than this (`Via` entries).
    pub max_call_depth: usize,
    /// Add a `Forwarded` header to requests (`addForwardedHeader`).
    pub forwarded: Option<plexus_http::forwarded::ForwardedSpec>,
    /// HTTP/2 settings, for servers of h2 routers.
    pub h2: Option<H2Settings>,
    /// Thrift routers: messages arrive framed (`thriftFramed`, default true).
    pub thrift_framed: bool,
}

/// How many streams an HTTP/2 connection (server or client side) remembers having
/// reset in the last second, so that frames the peer sent before it learnt of a reset
/// are ignored, as RFC 9113 (section 5.4.2) asks. The `h2` crate remembers 50, and does
/// not remember a stream reset once that many are: each late frame on such a stream is
/// answered with a reset of its own, counted as the peer's error, and 1024 of those
/// close the connection (GOAWAY `ENHANCE_YOUR_CALM`) with every call on it. A proxy
/// resets streams by the thousand a second when it answers uploads early (a service
/// with no endpoints) or cancels calls upstream (timeouts, clients gone). Each stream
/// remembered costs a few hundred bytes for that second: a few MiB at the most, on a
/// connection that resets 10,000 streams a second.
pub(crate) const H2_RESET_STREAMS_REMEMBERED: usize = 10_000;

/// The HTTP/2 settings a server advertises (Linkerd's h2 server keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Settings {
    /// `maxConcurrentStreamsPerConnection` (default 1000).
    pub max_concurrent_streams: u32,
    /// `initialStreamWindowBytes` (default 65535, the protocol's).
    pub initial_stream_window: u32,
    /// `maxFrameBytes` (default 16384, the protocol's).
    pub max_frame_size: u32,
    /// `maxHeaderListBytes` (default 16 KiB).
    pub max_header_list_size: u32,
}

impl H2Settings {
    /// `maxConcurrentStreamsPerConnection`'s default, as in Linkerd.
    const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1000;
    /// HTTP/2's smallest frame size, which is also its default.
    const MIN_FRAME_SIZE: u32 = 16_384;
    /// `maxHeaderListBytes`'s default.
    const DEFAULT_MAX_HEADER_LIST: u32 = 16 << 10;

    fn from_config(s: &config::Server) -> H2Settings {
        H2Settings {
            max_concurrent_streams: s
                .max_concurrent_streams_per_connection
                .unwrap_or(Self::DEFAULT_MAX_CONCURRENT_STREAMS),
            initial_stream_window: s.initial_stream_window_bytes.unwrap_or(65_535),
            max_frame_size: s
                .max_frame_bytes
                .unwrap_or(Self::MIN_FRAME_SIZE)
                .clamp(Self::MIN_FRAME_SIZE, 16_777_215),
            max_header_list_size: s
                .max_header_list_bytes
                .unwrap_or(Self::DEFAULT_MAX_HEADER_LIST),
        }
    }

    /// For HTTP/2 that a Plexus peer brings to an HTTP/1.1 router (the upgraded hop):
    /// the h2 router's defaults, except a 1 MiB stream window, so that one large body
    /// crossing hosts is not held to 64 KiB a round trip, and a header list as large as
    /// the router takes in HTTP/1.1 (`max_head_bytes`), at least the default 16 KiB.
    pub fn peer_hop(max_head_bytes: usize) -> H2Settings {
        H2Settings {
            max_concurrent_streams: Self::DEFAULT_MAX_CONCURRENT_STREAMS,
            initial_stream_window: 1024 * 1024,
            max_frame_size: Self::MIN_FRAME_SIZE,
            max_header_list_size: u32::try_from(max_head_bytes)
                .unwrap_or(u32::MAX)
                .max(Self::DEFAULT_MAX_HEADER_LIST),
        }
    }
}

fn labeler(l: &Option<config::Labeler>) -> plexus_http::forwarded::Labeler {
    use plexus_http::forwarded::Labeler as L;
    match l {
        None | Some(config::Labeler::RequestRandom(_)) => L::RequestRandom,
        Some(config::Labeler::Ip(_)) => L::Ip,
        Some(config::Labeler::IpPort(_)) => L::IpPort,
        Some(config::Labeler::ConnectionRandom(_)) => L::ConnectionRandom,
        Some(config::Labeler::Router(_)) => L::Router,
        Some(config::Labeler::Static(s)) => L::Static(s.label.clone()),
    }
}

/// Size limits for HTTP/1.1 messages, from the router's `max*KB` keys.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Request line plus headers, in bytes.
    pub max_head_bytes: usize,
    /// Headers Plexus writes (`l5d-err`), in bytes.
    pub max_header_bytes: usize,
    /// Bodies of the errors Plexus generates, in bytes.
    pub max_err_body_bytes: usize,
}

/// A configured router, shared by every worker.
pub struct Router {
    /// Stats scope and `namespace` of the delegator.
    pub label: String,
    /// The router's `dtab:`.
    pub base_dtab: Dtab,
    /// Prefix of identified names (default `/svc`).
    pub dst_prefix: Path,
    /// Tried in order; the first that names the request wins.
    pub identifiers: Vec<plexus_http::Identifier>,
    /// HTTP/1.1 (`protocol: http`) or HTTP/2 (`protocol: h2`), on both sides.
    pub version: config::HttpVersion,
    /// Configured namers and the system namer.
    pub namers: Namers,
    /// Discovery changes; cached bindings older than it are re-bound.
    pub epoch: Epoch,
    /// Where it listens.
    pub servers: Vec<ServerSpec>,
    /// Message size limits.
    pub limits: HttpLimits,
    /// Idle bindings and clients are dropped after this long.
    pub idle_ttl: Duration,
    /// How long to wait for a connection to an endpoint.
    pub connect_timeout: Duration,
    /// How long a request may wait for discovery to answer (`bindingTimeoutMs`).
    pub binding_timeout: Duration,
    /// How many worker threads share this router's traffic (and so its budgets).
    pub workers: std::sync::atomic::AtomicUsize,
    /// The clients bindings have produced, for `/client_state.json`.
    pub clients: ClientRegistry,
    /// The interpreter's transformers, applied in order to every bound tree.
    pub transformers: Vec<Arc<dyn crate::naming::Transformer>>,
    /// When each service and client was last used, for idle eviction.
    pub activity: stats::Activity,
    /// The `client:` blocks, to find each client's policy.
    pub client_blocks: policy::ClientBlocks,
    /// One route (shared circuit-breaker state) per client in use.
    pub routes: route::Routes,
    /// The `service:` blocks, to find each service's policy.
    pub service_blocks: policy::ServiceBlocks,
    /// The telemeters requests are reported to (tracing, recent requests).
    pub telemetry: crate::telemetry::RequestTelemetry,
    /// Set for Thrift routers: how calls are read and named. `version`, `identifiers`
    /// and `limits` are HTTP's and unused then.
    pub thrift: Option<thrift::Settings>,
}

/// The bound clients of a router and their current addresses. Written when a binding is
/// (re)computed, which happens once per discovery change, never per request.
#[derive(Debug, Default)]
pub struct ClientRegistry(std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>);

impl ClientRegistry {
    /// Records every leaf of a freshly bound tree.
    pub fn record(&self, tree: &crate::naming::NameTree<crate::naming::Bound>) {
        let Ok(mut clients) = self.0.lock() else {
            return;
        };
        for bound in tree.leaves() {
            let addrs = match &bound.addr {
                crate::naming::Addr::Bound(a) => a.iter().map(|a| a.addr.to_string()).collect(),
                _ => Vec::new(),
            };
            clients.insert(bound.id.show(), addrs);
        }
    }

    /// Forgets a client (evicted when idle).
    pub fn forget(&self, id: &str) {
        if let Ok(mut clients) = self.0.lock() {
            clients.remove(id);
        }
    }

    /// Client id → addresses.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("label", &self.label)
            .field("servers", &self.servers)
            .finish()
    }
}

impl Router {
    /// A worker's share of a budget's per-second reserve, so that the workers together
    /// allow what the configuration says (rounded up, so a reserve is never lost).
    pub fn reserve_share(&self, min_retries_per_sec: u32) -> u32 {
        let workers = self
            .workers
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1) as u32;
        min_retries_per_sec.div_ceil(workers)
    }

    /// Drops services and clients idle for longer than the idle TTL: their metrics
    /// series and their `/client_state.json` entries. Returns how many were evicted.
    pub fn evict_idle(
        &self,
        registry: &crate::telemetry::Registry,
        now: std::time::Instant,
    ) -> usize {
        let idle = self.activity.take_idle(self.idle_ttl, now);
        for (scope, id) in &idle {
            registry.remove_matching(&[("rt", self.label.as_str()), (scope.key(), id.as_str())]);
            if *scope == stats::Scope::Client {
                self.clients.forget(&format!("/{id}"));
                self.routes.forget(&format!("/{id}"));
            }
            tracing::debug!(router = %self.label, scope = scope.key(), %id, "evicted idle");
        }
        idle.len()
    }
}

/// The default `dstPrefix`.
fn svc() -> Path {
    Path::from_strs(["svc"])
}

fn identifier(
    id: &config::Identifier,
    version: config::HttpVersion,
) -> Option<plexus_http::Identifier> {
    use plexus_http::Identifier as H;
    Some(match id {
        config::Identifier::HeaderToken(h) => H::HeaderToken {
            header: h
                .header
                .clone()
                .unwrap_or_else(|| default_token_header(version).into())
                .to_ascii_lowercase(),
        },
        config::Identifier::HeaderPath(p) => H::HeaderPath {
            segments: p.segments,
        },
        config::Identifier::MethodAndHost(m) => H::MethodAndHost {
            http_uri_in_dst: m.http_uri_in_dst,
        },
        config::Identifier::Path(p) => H::Path {
            segments: p.segments.unwrap_or(1),
            consume: p.consume,
        },
        config::Identifier::Header(h) => H::Header {
            header: h
                .header
                .clone()
                .unwrap_or_else(|| "l5d-name".into())
                .to_ascii_lowercase(),
        },
        config::Identifier::Static(s) => H::Static {
            path: s.path.show(),
        },
        config::Identifier::Ingress(_) => return None,
    })
}

/// The header `io.l5d.header.token` reads unless told: `Host`, or h2's `:authority`.
fn default_token_header(version: config::HttpVersion) -> &'static str {
    match version {
        config::HttpVersion::Http1 => "host",
        config::HttpVersion::H2 => ":authority",
    }
}

impl Router {
    /// Builds a router from its (validated) configuration; `transformers` are its
    /// interpreter's, already built; `telemetry` receives its requests.
    pub fn from_config(
        cfg: &HttpRouter,
        version: config::HttpVersion,
        namers: Namers,
        epoch: Epoch,
        transformers: Vec<Arc<dyn crate::naming::Transformer>>,
        telemetry: crate::telemetry::RequestTelemetry,
    ) -> Result<Arc<Router>, String> {
        let identifiers: Vec<_> = match &cfg.identifier {
            None => vec![plexus_http::Identifier::HeaderToken {
                header: default_token_header(version).into(),
            }],
            Some(ids) => ids
                .as_slice()
                .iter()
                .filter_map(|id| identifier(id, version))
                .collect(),
        };
        let label = cfg
            .label
            .clone()
            .unwrap_or_else(|| version.protocol().into());
        // h2 routers negotiate h2 by ALPN; HTTP/1.1 routers also take h2 from peers.
        let alpn: &[&[u8]] = match version {
            config::HttpVersion::H2 => &[b"h2"],
            config::HttpVersion::Http1 => &[b"h2", b"http/1.1"],
        };
        let mut servers = Vec::new();
        for s in &cfg.servers {
            let addr = SocketAddr::new(
                s.ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                s.port.unwrap_or(version.default_port()),
            );
            let tls = match &s.tls {
                Some(t) => Some(Arc::new(
                    plexus_tls::ServerTls::new(t, alpn)
                        .map_err(|e| format!("router {label}, server {addr}: tls: {e}"))?,
                )),
                None => None,
            };
            servers.push(ServerSpec {
                addr,
                tls,
                accept_plaintext: s.accept_plaintext.unwrap_or(false),
                clear_context: s.clear_context.unwrap_or(false),
                max_call_depth: s.max_call_depth.unwrap_or(1000) as usize,
                h2: (version == config::HttpVersion::H2).then(|| H2Settings::from_config(s)),
                thrift_framed: true,
                forwarded: s.add_forwarded_header.as_ref().map(|f| {
                    plexus_http::forwarded::ForwardedSpec {
                        by: labeler(&f.by),
                        for_: labeler(&f.for_),
                    }
                }),
            });
        }
        let client_blocks = policy::ClientBlocks::new(cfg.client.as_ref())
            .map_err(|e| format!("router {label}: {e}"))?;
        let kb =
            |v: Option<u64>, default: u64| (v.unwrap_or(default) as usize).saturating_mul(1024);
        let mut router = Router::common(
            Common {
                label,
                dtab: &cfg.dtab,
                dst_prefix: cfg.dst_prefix.as_ref(),
                binding_cache: cfg.binding_cache.as_ref(),
                binding_timeout_ms: cfg.binding_timeout_ms,
                service: cfg.service.as_ref(),
                client_blocks,
                servers,
            },
            namers,
            epoch,
            transformers,
            telemetry,
        );
        router.version = version;
        router.identifiers = identifiers;
        router.limits = HttpLimits {
            max_head_bytes: kb(cfg.max_headers_kb, 8) + kb(cfg.max_initial_line_kb, 4),
            max_header_bytes: kb(cfg.max_headers_kb, 8),
            max_err_body_bytes: kb(cfg.max_err_response_kb, 5120),
        };
        Ok(Arc::new(router))
    }

    /// A router with the settings every protocol shares; the protocol's own (HTTP
    /// version, identifiers and limits, or Thrift settings) are filled in by the caller.
    fn common(
        c: Common<'_>,
        namers: Namers,
        epoch: Epoch,
        transformers: Vec<Arc<dyn crate::naming::Transformer>>,
        telemetry: crate::telemetry::RequestTelemetry,
    ) -> Router {
        Router {
            label: c.label,
            version: config::HttpVersion::Http1,
            base_dtab: c.dtab.clone(),
            dst_prefix: c.dst_prefix.cloned().unwrap_or_else(svc),
            identifiers: Vec::new(),
            namers,
            epoch,
            servers: c.servers,
            limits: HttpLimits {
                max_head_bytes: 0,
                max_header_bytes: 0,
                max_err_body_bytes: 0,
            },
            idle_ttl: Duration::from_secs(
                c.binding_cache.and_then(|b| b.idle_ttl_secs).unwrap_or(600),
            ),
            connect_timeout: Duration::from_secs(5),
            workers: std::sync::atomic::AtomicUsize::new(1),
            binding_timeout: Duration::from_millis(c.binding_timeout_ms.unwrap_or(10_000)),
            clients: ClientRegistry::default(),
            transformers,
            activity: stats::Activity::default(),
            client_blocks: c.client_blocks,
            routes: route::Routes::new(),
            service_blocks: policy::ServiceBlocks::new(c.service),
            telemetry,
            thrift: None,
        }
    }
}

/// The keys every router has, whatever its protocol, as [`Router::common`] takes them.
struct Common<'a> {
    label: String,
    dtab: &'a Dtab,
    dst_prefix: Option<&'a Path>,
    binding_cache: Option<&'a config::BindingCache>,
    binding_timeout_ms: Option<u64>,
    service: Option<&'a config::ServiceConfig>,
    client_blocks: policy::ClientBlocks,
    servers: Vec<ServerSpec>,
}
