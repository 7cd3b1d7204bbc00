//! The Linkerd 1.x configuration file, as Plexus reads it.
//!
//! A Linkerd user's `config.yaml` is the input: `admin`, `namers`, `routers`,
//! `telemetry`, `usage`, with plugins chosen by `kind` (routers by `protocol`). Reading
//! is strict like Linkerd: an unknown key is an error with its line and column. A key or
//! kind that Linkerd knows but Plexus does not implement yet is read, then rejected by
//! name by [`Config::validate`], so nothing in a file is ever silently ignored.

mod matcher;
mod namer;
mod router;
mod stack;
mod telemeter;
mod value;

use std::net::IpAddr;

use serde::Deserialize;

pub use matcher::{MatcherError, PathMatcher, substitute};
pub use namer::{
    FsNamer, Namer, PathTransformer, PortTransformer, PrefixOnly, SpecificHostTransformer,
    Transformer,
};
pub use router::{
    AddForwardedHeader, BindingCache, DefaultInterpreter, HeaderPathIdentifier, HeaderToken,
    HttpRouter, HttpVersion, Identifier, Interpreter, Labeler, MethodAndHost, NoSettings,
    OneOrMany, PathIdentifier, Router, Server, StaticIdentifier, StaticLabel, ThriftFlavor,
    ThriftProtocol, ThriftRouter,
};
pub use stack::{
    Backoff, Budget, ClientConfig, FailureAccrual, LoadBalancer, ResponseClassifier, ServiceConfig,
    StackKind,
};
pub use telemeter::{
    DEFAULT_RECENT_CAPACITY, DEFAULT_ZIPKIN_PORT, DEFAULT_ZIPKIN_SAMPLE_RATE, MAX_RECENT_CAPACITY,
    RecentRequestsTelemeter, ZipkinTelemeter,
};
use value::NotYet;

/// The `responseClassifier` kinds HTTP routers apply.
pub const HTTP_CLASSIFIERS: &[&str] = &[
    "io.l5d.http.nonRetryable5XX",
    "io.l5d.http.retryableRead5XX",
    "io.l5d.http.retryableIdempotent5XX",
    "io.l5d.http.retryableAll5XX",
    "io.l5d.http.allSuccessful",
];

/// The gRPC classifiers of h2 routers (`successStatusCodes`, and for the last
/// `retryableStatusCodes`).
pub const GRPC_CLASSIFIERS: &[&str] = &[
    "io.l5d.h2.grpc.default",
    "io.l5d.h2.grpc.compliant",
    "io.l5d.h2.grpc.alwaysRetryable",
    "io.l5d.h2.grpc.neverRetryable",
    "io.l5d.h2.grpc.retryableStatusCodes",
];

/// The upgrades `peerUpgrades` may name on HTTP routers.
pub const PEER_UPGRADES: &[&str] = &["h2", "tls"];

/// The upgrades `peerUpgrades` may name on Thrift routers.
pub const THRIFT_PEER_UPGRADES: &[&str] = &["mux"];

/// The response classifiers of h2 routers: the twins of [`HTTP_CLASSIFIERS`].
pub const H2_CLASSIFIERS: &[&str] = &[
    "io.l5d.h2.nonRetryable5XX",
    "io.l5d.h2.retryableRead5XX",
    "io.l5d.h2.retryableIdempotent5XX",
    "io.l5d.h2.retryableAll5XX",
    "io.l5d.h2.allSuccessful",
];

/// A whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The admin server (default 127.0.0.1:9990).
    #[serde(default)]
    pub admin: Admin,
    /// Service discovery, mounted under `/#/<prefix>`.
    #[serde(default)]
    pub namers: Vec<Namer>,
    /// The routers (at least one).
    pub routers: Vec<Router>,
    /// Metrics and tracing exporters.
    #[serde(default)]
    pub telemetry: Vec<Telemeter>,
    /// Accepted for compatibility; Plexus never reports usage anywhere.
    pub usage: Option<Usage>,
}

/// `admin:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Admin {
    /// Address (default 127.0.0.1).
    pub ip: Option<IpAddr>,
    /// Port (default 9990).
    pub port: Option<u16>,
    /// Grace period for draining on shutdown (default 10000).
    pub shutdown_grace_ms: Option<u64>,
    /// Accepted for compatibility; the proxy sizes its own worker pool.
    pub worker_threads: Option<u32>,
    /// Not implemented yet.
    pub socket_options: NotYet,
    /// Not implemented yet.
    pub tls: NotYet,
    /// Not implemented yet.
    pub http_identifier_port: NotYet,
    /// Not implemented yet.
    pub security: NotYet,
}

/// A telemeter, chosen by its `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Telemeter {
    /// Prometheus text on the admin server.
    #[serde(rename = "io.l5d.prometheus")]
    Prometheus(PrometheusTelemeter),
    /// The recent requests table (`/requests.json` on the admin server).
    #[serde(rename = "io.l5d.recentRequests")]
    RecentRequests(RecentRequestsTelemeter),
    /// Zipkin tracing: spans as Zipkin v2 JSON over HTTP.
    #[serde(rename = "io.l5d.zipkin")]
    Zipkin(ZipkinTelemeter),
    /// Trace logging: not implemented yet.
    #[serde(rename = "io.l5d.tracelog")]
    TraceLog(serde::de::IgnoredAny),
    /// StatsD: not implemented yet.
    #[serde(rename = "io.l5d.statsd")]
    Statsd(serde::de::IgnoredAny),
    /// InfluxDB line protocol: not implemented yet.
    #[serde(rename = "io.l5d.influxdb")]
    InfluxDb(serde::de::IgnoredAny),
}

impl Telemeter {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Telemeter::Prometheus(_) => "io.l5d.prometheus",
            Telemeter::RecentRequests(_) => "io.l5d.recentRequests",
            Telemeter::Zipkin(_) => "io.l5d.zipkin",
            Telemeter::TraceLog(_) => "io.l5d.tracelog",
            Telemeter::Statsd(_) => "io.l5d.statsd",
            Telemeter::InfluxDb(_) => "io.l5d.influxdb",
        }
    }
}

/// `io.l5d.prometheus` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusTelemeter {
    /// Where the admin server serves it (default `/admin/metrics/prometheus`).
    pub path: Option<String>,
    /// Prepended to every metric name.
    pub prefix: Option<String>,
}

/// `usage:`: accepted so existing files load; Plexus never phones home.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Usage {
    /// Organisation id (unused).
    pub org_id: Option<String>,
    /// Whether reporting is on (it is always off in Plexus).
    pub enabled: Option<bool>,
}

/// A file that cannot be read as a configuration at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads a configuration: JSON when the first non-blank character is `{`, else YAML.
    /// Errors name the offending key with its line and column.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let json = text.trim_start().starts_with('{');
        if json {
            serde_json::from_str(text).map_err(|e| ConfigError(e.to_string()))
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError(e.to_string()))
        }
    }

    /// Everything in the file that Plexus cannot run: unsupported kinds and keys (named),
    /// and rule violations (no routers, duplicate labels, two servers on one port, ...).
    /// Empty when the file is good to run.
    pub fn validate(&self) -> Vec<String> {
        let mut v = Validation::default();
        self.admin_problems(&mut v);
        for (i, namer) in self.namers.iter().enumerate() {
            let at = format!("namers[{i}]");
            match namer {
                Namer::Fs(fs) => v.transformers(&format!("{at} (io.l5d.fs)"), &fs.transformers),
                Namer::K8s(k) => {
                    v.k8s_namer(&format!("{at} (io.l5d.k8s)"), k.label_selector.as_deref());
                    v.transformers(&format!("{at} (io.l5d.k8s)"), &k.transformers);
                }
                Namer::K8sNs(k) => {
                    v.k8s_namer(
                        &format!("{at} (io.l5d.k8s.ns)"),
                        k.label_selector.as_deref(),
                    );
                    v.transformers(&format!("{at} (io.l5d.k8s.ns)"), &k.transformers);
                }
                other => v.kind(&at, "namer", other.kind()),
            }
        }
        if self.routers.is_empty() {
            v.problem("routers: at least one router is required".into());
        }
        let mut labels = Vec::new();
        let mut sockets = Vec::new();
        for (i, router) in self.routers.iter().enumerate() {
            let label = router.label().to_string();
            let at = format!("routers[{i}] ({label})");
            if router.http().is_none() && router.thrift().is_none() {
                v.problem(format!(
                    "routers[{i}]: protocol {} is not supported yet",
                    router.protocol()
                ));
                continue;
            }
            if labels.contains(&label) {
                v.problem(format!(
                    "{at}: label {label} is used by another router; labels must be unique"
                ));
            }
            labels.push(label);
            if let Some((r, version)) = router.http() {
                v.http_router(&at, r, version, &mut sockets);
            } else if let Some((r, flavor)) = router.thrift() {
                v.thrift_router(&at, r, flavor, &mut sockets);
            }
        }
        for (i, t) in self.telemetry.iter().enumerate() {
            let at = format!("telemetry[{i}] ({})", t.kind());
            let problems = match t {
                Telemeter::Prometheus(_) => continue,
                Telemeter::Zipkin(z) => z.problems(&at),
                Telemeter::RecentRequests(r) => r.problems(&at),
                _ => {
                    v.kind(&format!("telemetry[{i}]"), "telemeter", t.kind());
                    continue;
                }
            };
            problems.into_iter().for_each(|p| v.problem(p));
            if self.telemetry[..i].iter().any(|u| u.kind() == t.kind()) {
                v.problem(format!("{at}: only one {} telemeter is allowed", t.kind()));
            }
        }
        v.problems
    }

    /// The `io.l5d.zipkin` telemeter, if configured.
    pub fn zipkin(&self) -> Option<&ZipkinTelemeter> {
        self.telemetry.iter().find_map(|t| match t {
            Telemeter::Zipkin(z) => Some(z),
            _ => None,
        })
    }

    /// The `io.l5d.recentRequests` telemeter, if configured.
    pub fn recent_requests(&self) -> Option<&RecentRequestsTelemeter> {
        self.telemetry.iter().find_map(|t| match t {
            Telemeter::RecentRequests(r) => Some(r),
            _ => None,
        })
    }

    fn admin_problems(&self, v: &mut Validation) {
        let a = &self.admin;
        v.keys(
            "admin",
            &[
                ("socketOptions", a.socket_options.is_some()),
                ("tls", a.tls.is_some()),
                ("httpIdentifierPort", a.http_identifier_port.is_some()),
                ("security", a.security.is_some()),
            ],
        );
    }
}

/// Collects problems with where they are.
#[derive(Default)]
struct Validation {
    problems: Vec<String>,
}

impl Validation {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    fn kind(&mut self, at: &str, what: &str, kind: &str) {
        self.problem(format!("{at}: {what} kind {kind} is not supported yet"));
    }

    fn keys(&mut self, at: &str, present: &[(&str, bool)]) {
        for (key, _) in present.iter().filter(|(_, p)| *p) {
            self.problem(format!("{at}: key {key} is not supported yet"));
        }
    }

    fn transformers(&mut self, at: &str, ts: &[Transformer]) {
        for (i, t) in ts.iter().enumerate() {
            if let Transformer::K8sDaemonset(d) = t {
                let at = format!("{at}.transformers[{i}] (io.l5d.k8s.daemonset)");
                for (key, value) in [
                    ("namespace", &d.namespace),
                    ("service", &d.service),
                    ("port", &d.port),
                ] {
                    if value.is_empty() {
                        self.problem(format!("{at}: {key} must not be empty"));
                    }
                }
            }
        }
    }

    /// `successStatusCodes` / `retryableStatusCodes`: gRPC codes (0 to 16), only on the
    /// gRPC classifiers that take them.
    fn grpc_codes(&mut self, at: &str, c: &ResponseClassifier, h2: bool) {
        let grpc = h2 && GRPC_CLASSIFIERS.contains(&c.kind.as_str());
        let takes_retryable = c.kind == "io.l5d.h2.grpc.retryableStatusCodes";
        for (key, codes, allowed) in [
            ("successStatusCodes", &c.success_status_codes, grpc),
            (
                "retryableStatusCodes",
                &c.retryable_status_codes,
                takes_retryable,
            ),
        ] {
            let Some(codes) = codes else { continue };
            if !allowed {
                self.problem(format!(
                    "{at}.responseClassifier: {key} is not a setting of {}",
                    c.kind
                ));
            } else if let Some(bad) = codes.iter().find(|c| **c > 16) {
                self.problem(format!(
                    "{at}.responseClassifier.{key}: {bad} is not a gRPC status code (0 to 16)"
                ));
            }
        }
        if takes_retryable && h2 && c.retryable_status_codes.is_none() {
            self.problem(format!(
                "{at}.responseClassifier: {} needs retryableStatusCodes",
                c.kind
            ));
        }
    }

    fn k8s_namer(&mut self, at: &str, label_selector: Option<&str>) {
        if label_selector.is_some_and(|l| l.is_empty() || l.contains([',', '=', '!', ' '])) {
            self.problem(format!(
                "{at}: labelSelector must be one label name (lookups supply its value)"
            ));
        }
    }

    /// What every server is checked for, whatever its router's protocol.
    fn server_common(
        &mut self,
        sat: &str,
        s: &Server,
        socket: (IpAddr, u16),
        sockets: &mut Vec<(IpAddr, u16)>,
    ) {
        if sockets.contains(&socket) {
            self.problem(format!(
                "{sat}: {}:{} is already used by another server",
                socket.0, socket.1
            ));
        }
        sockets.push(socket);
        for p in s
            .tls
            .iter()
            .flat_map(plexus_tls::ServerTlsSettings::validate)
        {
            self.problem(format!("{sat}.tls.{}: {}", p.key, p.message));
        }
        if s.accept_plaintext.is_some() && s.tls.is_none() {
            self.problem(format!(
                "{sat}: acceptPlaintext is only meaningful with tls (it lets peers negotiate TLS)"
            ));
        }
        self.keys(
            sat,
            &[
                ("socketOptions", s.socket_options.is_some()),
                ("serverSession", s.server_session.is_some()),
                ("announce", s.announce.is_some()),
                ("timestampHeader", s.timestamp_header.is_some()),
                ("maxConcurrentRequests", s.max_concurrent_requests.is_some()),
                ("timeoutMs", s.timeout_ms.is_some()),
            ],
        );
    }

    /// A router's `interpreter`: the default one (with its transformers) is supported.
    fn interpreter(&mut self, at: &str, interpreter: Option<&Interpreter>) {
        match interpreter {
            None => {}
            Some(Interpreter::Default(d)) => {
                self.transformers(&format!("{at}.interpreter"), &d.transformers)
            }
            Some(other) => self.kind(
                &format!("{at}.interpreter"),
                "interpreter",
                interpreter_kind(other),
            ),
        }
    }

    fn thrift_router(
        &mut self,
        at: &str,
        r: &ThriftRouter,
        flavor: ThriftFlavor,
        sockets: &mut Vec<(IpAddr, u16)>,
    ) {
        let own = flavor.protocol();
        if r.servers.is_empty() {
            self.problem(format!("{at}: servers: at least one server is required"));
        }
        for (j, s) in r.servers.iter().enumerate() {
            let sat = format!("{at}.servers[{j}]");
            let socket = (
                s.ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                s.port.unwrap_or(flavor.default_port()),
            );
            let http_keys = [
                ("clearContext", s.clear_context.is_some()),
                ("addForwardedHeader", s.add_forwarded_header.is_some()),
                ("maxCallDepth", s.max_call_depth.is_some()),
            ];
            for (key, present) in http_keys.into_iter().chain(h2_server_keys(s)) {
                if present {
                    self.problem(format!(
                        "{sat}: key {key} is for http and h2 routers; this is a {own} router"
                    ));
                }
            }
            self.server_common(&sat, s, socket, sockets);
        }
        self.keys(
            at,
            &[
                ("announcers", r.announcers.is_some()),
                ("tracePropagator", r.trace_propagator.is_some()),
            ],
        );
        self.interpreter(at, r.interpreter.as_ref());
        if let Some(s) = &r.service {
            self.thrift_service(&format!("{at}.service"), s, true);
        }
        if let Some(c) = &r.client {
            self.client(&format!("{at}.client"), c, true, Family::Thrift);
        }
    }

    /// A Thrift router's service block: timeouts and retries apply; response
    /// classifiers are HTTP's (Thrift replies are classified by their type).
    fn thrift_service(&mut self, at: &str, s: &ServiceConfig, top: bool) {
        self.prefix(at, &s.prefix);
        if let Some(r) = &s.retries {
            self.budget(&format!("{at}.retries.budget"), &r.budget);
            self.backoff(&format!("{at}.retries.backoff"), &r.backoff);
        }
        if let Some(c) = &s.response_classifier {
            self.problem(format!(
                "{at}: responseClassifier kind {} is for http and h2 routers; thrift routers classify replies by their type (see idempotentMethods)",
                c.kind
            ));
        }
        self.stack_shape(at, s.kind, s.configs.is_some(), s.prefix.is_some(), top);
        for (i, c) in s.configs.iter().flatten().enumerate() {
            self.thrift_service(&format!("{at}.configs[{i}]"), c, false);
        }
    }

    fn http_router(
        &mut self,
        at: &str,
        r: &HttpRouter,
        version: HttpVersion,
        sockets: &mut Vec<(IpAddr, u16)>,
    ) {
        let h2 = version == HttpVersion::H2;
        // Keys Linkerd has for one of the two protocols only.
        let (own, other) = if h2 { ("h2", "http") } else { ("http", "h2") };
        let foreign = |this: &mut Self, at: &str, key: &str, present: bool| {
            if present {
                this.problem(format!(
                    "{at}: key {key} is for {other} routers; this is an {own} router"
                ));
            }
        };
        if r.servers.is_empty() {
            self.problem(format!("{at}: servers: at least one server is required"));
        }
        for (j, s) in r.servers.iter().enumerate() {
            let sat = format!("{at}.servers[{j}]");
            let socket = (
                s.ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                s.port.unwrap_or(version.default_port()),
            );
            if !h2 {
                for (key, present) in h2_server_keys(s) {
                    foreign(self, &sat, key, present);
                }
            }
            if s.thrift_framed.is_some() {
                self.problem(format!(
                    "{sat}: key thriftFramed is for thrift routers; this is an {own} router"
                ));
            }
            self.server_common(&sat, s, socket, sockets);
        }
        self.keys(
            at,
            &[
                ("announcers", r.announcers.is_some()),
                ("httpAccessLog", !h2 && r.http_access_log.is_some()),
                (
                    "httpAccessLogRollPolicy",
                    !h2 && r.http_access_log_roll_policy.is_some(),
                ),
                (
                    "httpAccessLogAppend",
                    !h2 && r.http_access_log_append.is_some(),
                ),
                (
                    "httpAccessLogRotateCount",
                    !h2 && r.http_access_log_rotate_count.is_some(),
                ),
                ("compressionLevel", !h2 && r.compression_level.is_some()),
                ("tracePropagator", r.trace_propagator.is_some()),
                ("h2AccessLog", h2 && r.h2_access_log.is_some()),
                (
                    "h2AccessLogRollPolicy",
                    h2 && r.h2_access_log_roll_policy.is_some(),
                ),
                ("h2AccessLogAppend", h2 && r.h2_access_log_append.is_some()),
                (
                    "h2AccessLogRotateCount",
                    h2 && r.h2_access_log_rotate_count.is_some(),
                ),
            ],
        );
        let http_only = [
            ("httpAccessLog", r.http_access_log.is_some()),
            (
                "httpAccessLogRollPolicy",
                r.http_access_log_roll_policy.is_some(),
            ),
            ("httpAccessLogAppend", r.http_access_log_append.is_some()),
            (
                "httpAccessLogRotateCount",
                r.http_access_log_rotate_count.is_some(),
            ),
            ("compressionLevel", r.compression_level.is_some()),
            (
                "streamAfterContentLengthKB",
                r.stream_after_content_length_kb.is_some(),
            ),
            ("streamingEnabled", r.streaming_enabled.is_some()),
            ("maxHeadersKB", r.max_headers_kb.is_some()),
            ("maxInitialLineKB", r.max_initial_line_kb.is_some()),
            ("maxErrResponseKB", r.max_err_response_kb.is_some()),
        ];
        let h2_only = [
            ("h2AccessLog", r.h2_access_log.is_some()),
            (
                "h2AccessLogRollPolicy",
                r.h2_access_log_roll_policy.is_some(),
            ),
            ("h2AccessLogAppend", r.h2_access_log_append.is_some()),
            (
                "h2AccessLogRotateCount",
                r.h2_access_log_rotate_count.is_some(),
            ),
        ];
        for (key, present) in if h2 { &http_only[..] } else { &h2_only[..] } {
            foreign(self, at, key, *present);
        }
        if !h2 && r.streaming_enabled == Some(false) {
            self.problem(format!(
                "{at}: streamingEnabled: false is not supported; Plexus always streams bodies"
            ));
        }
        for id in r.identifier.iter().flat_map(OneOrMany::as_slice) {
            let wrong_protocol = match id {
                Identifier::HeaderPath(_) => !h2,
                Identifier::MethodAndHost(_) | Identifier::Path(_) => h2,
                _ => false,
            };
            if wrong_protocol {
                self.problem(format!(
                    "{at}.identifier: identifier kind {} is for {other} routers; this is an {own} router",
                    id.kind()
                ));
            } else if matches!(id, Identifier::Ingress(_)) {
                self.kind(&format!("{at}.identifier"), "identifier", id.kind());
            }
        }
        self.interpreter(at, r.interpreter.as_ref());
        if let Some(s) = &r.service {
            self.service(&format!("{at}.service"), s, true, version);
        }
        if let Some(c) = &r.client {
            self.client(&format!("{at}.client"), c, true, Family::Http);
        }
    }

    /// Checks the global/static shape shared by service and client blocks.
    fn stack_shape(
        &mut self,
        at: &str,
        kind: Option<StackKind>,
        has_configs: bool,
        prefix: bool,
        top: bool,
    ) {
        match (top, kind.unwrap_or(StackKind::Global)) {
            (true, StackKind::Global) if has_configs => self.problem(format!(
                "{at}: configs is only allowed with kind io.l5d.static"
            )),
            (true, StackKind::Static) if !has_configs => {
                self.problem(format!("{at}: kind io.l5d.static needs configs"))
            }
            (true, _) if prefix => {
                self.problem(format!("{at}: prefix is only allowed inside configs"))
            }
            (false, _) if kind.is_some() || has_configs => self.problem(format!(
                "{at}: kind and configs are not allowed inside configs"
            )),
            (false, _) if !prefix => {
                self.problem(format!("{at}: every configs entry needs a prefix"))
            }
            _ => {}
        }
    }

    fn budget(&mut self, at: &str, budget: &Option<Budget>) {
        let Some(b) = budget else { return };
        if let Some(t) = b.ttl_secs
            && !(1..=60).contains(&t)
        {
            self.problem(format!("{at}: ttlSecs must be between 1 and 60, not {t}"));
        }
        if let Some(p) = b.percent_can_retry
            && !(p.is_finite() && (0.0..=1000.0).contains(&p))
        {
            self.problem(format!(
                "{at}: percentCanRetry must be between 0 and 1000, not {p}"
            ));
        }
    }

    fn backoff(&mut self, at: &str, backoff: &Option<Backoff>) {
        if let Some(Backoff::Jittered { min_ms, max_ms }) = backoff
            && min_ms > max_ms
        {
            self.problem(format!(
                "{at}: minMs ({min_ms}) must not be above maxMs ({max_ms})"
            ));
        }
    }

    fn prefix(&mut self, at: &str, prefix: &Option<String>) {
        if let Some(p) = prefix
            && let Err(e) = PathMatcher::parse(p)
        {
            self.problem(format!("{at}: {e}"));
        }
    }

    fn service(&mut self, at: &str, s: &ServiceConfig, top: bool, version: HttpVersion) {
        self.prefix(at, &s.prefix);
        if s.idempotent_methods.is_some() {
            self.problem(format!(
                "{at}: key idempotentMethods is for thrift routers; HTTP methods say whether they are idempotent"
            ));
        }
        if let Some(r) = &s.retries {
            self.budget(&format!("{at}.retries.budget"), &r.budget);
            self.backoff(&format!("{at}.retries.backoff"), &r.backoff);
        }
        let h2 = version == HttpVersion::H2;
        let known = |k: &str| match version {
            HttpVersion::Http1 => HTTP_CLASSIFIERS.contains(&k),
            HttpVersion::H2 => H2_CLASSIFIERS.contains(&k) || GRPC_CLASSIFIERS.contains(&k),
        };
        let others = |k: &str| match version {
            HttpVersion::Http1 => H2_CLASSIFIERS.contains(&k) || GRPC_CLASSIFIERS.contains(&k),
            HttpVersion::H2 => HTTP_CLASSIFIERS.contains(&k),
        };
        if let Some(c) = &s.response_classifier {
            self.grpc_codes(at, c, h2);
        }
        if let Some(c) = &s.response_classifier
            && !known(&c.kind)
        {
            let why = if others(&c.kind) {
                format!(
                    "is for {} routers",
                    if version == HttpVersion::H2 {
                        "http"
                    } else {
                        "h2"
                    }
                )
            } else {
                "is not supported yet".to_owned()
            };
            self.problem(format!("{at}: responseClassifier kind {} {why}", c.kind));
        }
        self.stack_shape(at, s.kind, s.configs.is_some(), s.prefix.is_some(), top);
        for (i, c) in s.configs.iter().flatten().enumerate() {
            self.service(&format!("{at}.configs[{i}]"), c, false, version);
        }
    }

    fn client(&mut self, at: &str, c: &ClientConfig, top: bool, family: Family) {
        self.prefix(at, &c.prefix);
        if family == Family::Http {
            for (key, present) in [
                ("thriftFramed", c.thrift_framed.is_some()),
                (
                    "attemptTTwitterUpgrade",
                    c.attempt_ttwitter_upgrade.is_some(),
                ),
            ] {
                if present {
                    self.problem(format!(
                        "{at}: key {key} is for thrift routers; this is an HTTP router"
                    ));
                }
            }
        }
        let known = match family {
            Family::Http => PEER_UPGRADES,
            Family::Thrift => THRIFT_PEER_UPGRADES,
        };
        for p in c
            .tls
            .iter()
            .flat_map(plexus_tls::ClientTlsSettings::validate)
        {
            self.problem(format!("{at}.tls.{}: {}", p.key, p.message));
        }
        for u in c.peer_upgrades.iter().flatten() {
            if u == "tls" && c.tls.is_none() {
                self.problem(format!(
                    "{at}.peerUpgrades: tls needs the client's tls settings (commonName, trust) in this block"
                ));
            }
            if !known.contains(&u.as_str()) {
                self.problem(format!(
                    "{at}.peerUpgrades: unknown upgrade {u:?} for this router; known: {}",
                    known.join(", ")
                ));
            }
        }
        self.budget(&format!("{at}.requeueBudget"), &c.requeue_budget);
        if let Some(fa) = &c.failure_accrual {
            let at = format!("{at}.failureAccrual");
            let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
            match fa {
                FailureAccrual::ConsecutiveFailures { failures, backoff } => {
                    if *failures == Some(0) {
                        self.problem(format!("{at}: failures must be at least 1"));
                    }
                    self.backoff(&format!("{at}.backoff"), backoff);
                }
                FailureAccrual::SuccessRate {
                    success_rate,
                    requests,
                    backoff,
                } => {
                    if !rate_ok(*success_rate) {
                        self.problem(format!(
                            "{at}: successRate must be between 0 and 1, not {success_rate}"
                        ));
                    }
                    if *requests == 0 {
                        self.problem(format!("{at}: requests must be at least 1"));
                    }
                    self.backoff(&format!("{at}.backoff"), backoff);
                }
                FailureAccrual::SuccessRateWindowed {
                    success_rate,
                    window,
                    backoff,
                } => {
                    if !rate_ok(*success_rate) {
                        self.problem(format!(
                            "{at}: successRate must be between 0 and 1, not {success_rate}"
                        ));
                    }
                    if *window == 0 {
                        self.problem(format!("{at}: window must be at least 1 second"));
                    }
                    self.backoff(&format!("{at}.backoff"), backoff);
                }
                FailureAccrual::None {} => {}
            }
        }
        self.stack_shape(at, c.kind, c.configs.is_some(), c.prefix.is_some(), top);
        self.keys(
            at,
            &[
                ("failFast", c.fail_fast.is_some()),
                ("hostConnectionPool", c.host_connection_pool.is_some()),
                ("clientSession", c.client_session.is_some()),
                ("socketOptions", c.socket_options.is_some()),
                ("forwardClientCert", c.forward_client_cert.is_some()),
                ("requestAuthorizers", c.request_authorizers.is_some()),
            ],
        );
        for (i, e) in c.configs.iter().flatten().enumerate() {
            self.client(&format!("{at}.configs[{i}]"), e, false, family);
        }
    }
}

/// The h2 server keys, and whether `s` sets each.
fn h2_server_keys(s: &Server) -> [(&'static str, bool); 6] {
    [
        (
            "maxConcurrentStreamsPerConnection",
            s.max_concurrent_streams_per_connection.is_some(),
        ),
        (
            "initialStreamWindowBytes",
            s.initial_stream_window_bytes.is_some(),
        ),
        ("maxFrameBytes", s.max_frame_bytes.is_some()),
        ("maxHeaderListBytes", s.max_header_list_bytes.is_some()),
        ("headerTableBytes", s.header_table_bytes.is_some()),
        ("windowUpdateRatio", s.window_update_ratio.is_some()),
    ]
}

/// Which family of routers a client or service block belongs to (their keys differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Http,
    Thrift,
}

fn interpreter_kind(i: &Interpreter) -> &'static str {
    match i {
        Interpreter::Default(_) => "default",
        Interpreter::Namerd(_) => "io.l5d.namerd",
        Interpreter::NamerdHttp(_) => "io.l5d.namerd.http",
        Interpreter::Mesh(_) => "io.l5d.mesh",
        Interpreter::Fs(_) => "io.l5d.fs",
        Interpreter::K8sConfigMap(_) => "io.l5d.k8s.configMap",
        Interpreter::Consul(_) => "io.l5d.consul.interpreter",
    }
}
