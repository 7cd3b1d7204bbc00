//! Routers, their servers, identifiers and interpreters (Linkerd's `routers:` list).

use std::net::IpAddr;

use serde::Deserialize;

use super::stack::{ClientConfig, ServiceConfig};
use super::value::{self, NotYet};
use crate::naming::{Dtab, Path};

/// One router, chosen by its `protocol`.
#[derive(Debug, Deserialize)]
#[serde(tag = "protocol")]
pub enum Router {
    /// `protocol: http`: HTTP/1.1.
    #[serde(rename = "http")]
    Http(Box<HttpRouter>),
    /// `protocol: h2`: HTTP/2 (h2c with prior knowledge), gRPC included.
    #[serde(rename = "h2")]
    H2(Box<HttpRouter>),
    /// `protocol: thrift`: Thrift, framed or not, binary or compact.
    #[serde(rename = "thrift")]
    Thrift(Box<ThriftRouter>),
    /// `protocol: thriftmux`: ThriftMux (and framed Thrift) in, Thrift out.
    #[serde(rename = "thriftmux")]
    ThriftMux(Box<ThriftRouter>),
    /// `protocol: mux`: not implemented yet.
    #[serde(rename = "mux")]
    Mux(serde::de::IgnoredAny),
}

/// Which HTTP an HTTP-family router speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// `protocol: http`: HTTP/1.1.
    Http1,
    /// `protocol: h2`: HTTP/2.
    H2,
}

impl HttpVersion {
    /// The protocol name, which is also the default router label.
    pub fn protocol(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "http",
            HttpVersion::H2 => "h2",
        }
    }

    /// Linkerd's default server port for the protocol.
    pub fn default_port(self) -> u16 {
        match self {
            HttpVersion::Http1 => 4140,
            HttpVersion::H2 => 4142,
        }
    }
}

impl Router {
    /// An HTTP or h2 router's settings and version; `None` for other protocols.
    pub fn http(&self) -> Option<(&HttpRouter, HttpVersion)> {
        match self {
            Router::Http(r) => Some((r, HttpVersion::Http1)),
            Router::H2(r) => Some((r, HttpVersion::H2)),
            _ => None,
        }
    }

    /// A thrift or thriftmux router's settings and which of the two it is; `None` for
    /// other protocols.
    pub fn thrift(&self) -> Option<(&ThriftRouter, ThriftFlavor)> {
        match self {
            Router::Thrift(r) => Some((r, ThriftFlavor::Thrift)),
            Router::ThriftMux(r) => Some((r, ThriftFlavor::ThriftMux)),
            _ => None,
        }
    }

    /// The router's label as configured, or its protocol name.
    pub fn label(&self) -> &str {
        let label = match self {
            Router::Http(r) | Router::H2(r) => r.label.as_deref(),
            Router::Thrift(r) | Router::ThriftMux(r) => r.label.as_deref(),
            Router::Mux(_) => None,
        };
        label.unwrap_or(self.protocol())
    }

    /// The protocol name as written in the file.
    pub fn protocol(&self) -> &'static str {
        match self {
            Router::Http(_) => "http",
            Router::H2(_) => "h2",
            Router::Thrift(_) => "thrift",
            Router::ThriftMux(_) => "thriftmux",
            Router::Mux(_) => "mux",
        }
    }
}

/// Which Thrift router: `thrift` or `thriftmux`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThriftFlavor {
    /// `protocol: thrift`.
    Thrift,
    /// `protocol: thriftmux`: servers take ThriftMux sessions and framed Thrift.
    ThriftMux,
}

impl ThriftFlavor {
    /// The protocol name, which is also the default router label.
    pub fn protocol(self) -> &'static str {
        match self {
            ThriftFlavor::Thrift => "thrift",
            ThriftFlavor::ThriftMux => "thriftmux",
        }
    }

    /// Linkerd's default server port for the protocol.
    pub fn default_port(self) -> u16 {
        match self {
            ThriftFlavor::Thrift => 4114,
            ThriftFlavor::ThriftMux => 4144,
        }
    }
}

/// `thriftProtocol`: how messages Plexus writes itself (errors) are encoded. Messages
/// from applications are forwarded as they are; their first byte tells the protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum ThriftProtocol {
    /// `binary` (the default).
    #[default]
    #[serde(rename = "binary")]
    Binary,
    /// `compact`.
    #[serde(rename = "compact")]
    Compact,
}

/// A Thrift router (`protocol: thrift` or `thriftmux`): Linkerd's keys, plus Plexus's
/// service and client keys for idempotent methods and the peer upgrade to Mux.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThriftRouter {
    /// Stats scope `rt/<label>`; defaults to the protocol name.
    pub label: Option<String>,
    /// Where it listens (at least one).
    pub servers: Vec<Server>,
    /// The base dtab.
    #[serde(default, deserialize_with = "value::dtab")]
    pub dtab: Dtab,
    /// Prefix of the names requests are given (default `/svc`).
    #[serde(default, deserialize_with = "value::opt_path")]
    pub dst_prefix: Option<Path>,
    /// Append the method name to the name (default false).
    pub thrift_method_in_dst: Option<bool>,
    /// `binary` (default) or `compact`.
    pub thrift_protocol: Option<ThriftProtocol>,
    /// How names are bound (default: the configured namers).
    pub interpreter: Option<Interpreter>,
    /// How long binding may take before a request fails (default 10 s).
    pub binding_timeout_ms: Option<u64>,
    /// Per logical name settings.
    pub service: Option<ServiceConfig>,
    /// Per client settings.
    pub client: Option<ClientConfig>,
    /// Marks a router as originating traffic (a gauge only).
    pub originator: Option<bool>,
    /// Opt-in for experimental plugins (Linkerd requires it for thriftmux).
    pub experimental: Option<bool>,
    /// Cache sizes (accepted) and `idleTtlSecs`.
    pub binding_cache: Option<BindingCache>,
    /// Not implemented yet.
    pub announcers: NotYet,
    /// Not implemented yet.
    pub trace_propagator: NotYet,
}

/// An HTTP/1.1 (`protocol: http`) or HTTP/2 (`protocol: h2`) router: the keys are
/// Linkerd's for both; validation refuses the ones that belong to the other protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouter {
    /// Stats scope `rt/<label>`; defaults to the protocol name.
    pub label: Option<String>,
    /// Where it listens (at least one).
    pub servers: Vec<Server>,
    /// The base dtab.
    #[serde(default, deserialize_with = "value::dtab")]
    pub dtab: Dtab,
    /// Prefix of the names identifiers produce (default `/svc`).
    #[serde(default, deserialize_with = "value::opt_path")]
    pub dst_prefix: Option<Path>,
    /// How requests are named: one identifier or a list (the first that identifies wins).
    pub identifier: Option<OneOrMany<Identifier>>,
    /// How names are bound (default: the configured namers).
    pub interpreter: Option<Interpreter>,
    /// How long binding may take before a request fails (default 10 s).
    pub binding_timeout_ms: Option<u64>,
    /// Per logical name settings.
    pub service: Option<ServiceConfig>,
    /// Per client settings.
    pub client: Option<ClientConfig>,
    /// Marks a router as originating traffic (a gauge only).
    pub originator: Option<bool>,
    /// Opt-in for experimental plugins.
    pub experimental: Option<bool>,
    /// Biggest request/response body held before streaming (KB); bodies always stream here.
    #[serde(rename = "streamAfterContentLengthKB")]
    pub stream_after_content_length_kb: Option<u64>,
    /// Whether bodies stream (always true in Plexus).
    pub streaming_enabled: Option<bool>,
    /// Request header size limit in KB (default 8).
    #[serde(rename = "maxHeadersKB")]
    pub max_headers_kb: Option<u64>,
    /// Request line size limit in KB (default 4).
    #[serde(rename = "maxInitialLineKB")]
    pub max_initial_line_kb: Option<u64>,
    /// Biggest error body Plexus generates, in KB (default 5120).
    #[serde(rename = "maxErrResponseKB")]
    pub max_err_response_kb: Option<u64>,
    /// Cache sizes (accepted; Plexus evicts by idle time only) and `idleTtlSecs`, after
    /// which idle bindings, clients and their metrics are dropped (default 600).
    pub binding_cache: Option<BindingCache>,
    /// Not implemented yet.
    pub announcers: NotYet,
    /// Not implemented yet.
    pub http_access_log: NotYet,
    /// Not implemented yet.
    pub http_access_log_roll_policy: NotYet,
    /// Not implemented yet.
    pub http_access_log_append: NotYet,
    /// Not implemented yet.
    pub http_access_log_rotate_count: NotYet,
    /// Not implemented yet.
    pub compression_level: NotYet,
    /// Not implemented yet.
    pub trace_propagator: NotYet,
    /// Not implemented yet (h2).
    pub h2_access_log: NotYet,
    /// Not implemented yet (h2).
    pub h2_access_log_roll_policy: NotYet,
    /// Not implemented yet (h2).
    pub h2_access_log_append: NotYet,
    /// Not implemented yet (h2).
    pub h2_access_log_rotate_count: NotYet,
}

/// `bindingCache:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BindingCache {
    /// Accepted for compatibility.
    pub paths: Option<u64>,
    /// Accepted for compatibility.
    pub trees: Option<u64>,
    /// Accepted for compatibility.
    pub bounds: Option<u64>,
    /// Accepted for compatibility.
    pub clients: Option<u64>,
    /// Seconds of idleness after which bindings, clients and their metrics are dropped.
    pub idle_ttl_secs: Option<u64>,
}

/// `x` or `[x, y]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(ts) => ts,
        }
    }
}

/// One listening socket of a router.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Server {
    /// Port (protocol default: 4140 for http).
    pub port: Option<u16>,
    /// Address (default loopback; `0.0.0.0` for all interfaces).
    pub ip: Option<IpAddr>,
    /// Stats label.
    pub label: Option<String>,
    /// Strip inbound `l5d-*` context and sanitise responses (for edges).
    pub clear_context: Option<bool>,
    /// Add an RFC 7239 `Forwarded` header naming this proxy and the client.
    pub add_forwarded_header: Option<AddForwardedHeader>,
    /// Header carrying the time the request arrived (epoch ms).
    pub timestamp_header: Option<String>,
    /// Limit on `Via` entries before a request is refused (default 1000).
    pub max_call_depth: Option<u32>,
    /// Limit on requests served at once (default unlimited).
    pub max_concurrent_requests: Option<u32>,
    /// Request timeout.
    pub timeout_ms: Option<u64>,
    /// h2: streams a client may have open on one connection (default 1000).
    pub max_concurrent_streams_per_connection: Option<u32>,
    /// h2: the initial flow-control window of each stream, bytes (default 65535).
    pub initial_stream_window_bytes: Option<u32>,
    /// h2: the largest frame accepted, bytes (default 16384).
    pub max_frame_bytes: Option<u32>,
    /// h2: the largest header list accepted, bytes.
    pub max_header_list_bytes: Option<u32>,
    /// h2: the HPACK table size (accepted; the HTTP/2 library manages it).
    pub header_table_bytes: Option<u32>,
    /// h2: when to send window updates (accepted; the HTTP/2 library manages it).
    pub window_update_ratio: Option<f64>,
    /// Accept TLS on this server (Linkerd's server `tls:` keys).
    pub tls: Option<plexus_tls::ServerTlsSettings>,
    /// Plexus only, with `tls`: also accept plaintext on the same port (told apart by
    /// the first byte), so Plexus peers can negotiate TLS (`peerUpgrades: [tls]`).
    pub accept_plaintext: Option<bool>,
    /// Thrift: messages arrive with a 4-byte length (default true); `false` takes
    /// unframed ("buffered") Thrift. A thriftmux server always takes framed Thrift.
    pub thrift_framed: Option<bool>,
    /// Not implemented yet.
    pub socket_options: NotYet,
    /// Not implemented yet.
    pub server_session: NotYet,
    /// Not implemented yet.
    pub announce: NotYet,
}

/// `addForwardedHeader:` of a server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddForwardedHeader {
    /// How this proxy is named (default `requestRandom`).
    pub by: Option<Labeler>,
    /// How the client is named (default `requestRandom`).
    #[serde(rename = "for")]
    pub for_: Option<Labeler>,
}

/// A `Forwarded` node labeler.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Labeler {
    /// The IP address.
    #[serde(rename = "ip")]
    Ip(NoSettings),
    /// The IP address and port.
    #[serde(rename = "ip:port")]
    IpPort(NoSettings),
    /// Random per connection.
    #[serde(rename = "connectionRandom")]
    ConnectionRandom(NoSettings),
    /// Random per request.
    #[serde(rename = "requestRandom")]
    RequestRandom(NoSettings),
    /// The router's label.
    #[serde(rename = "router")]
    Router(NoSettings),
    /// A fixed label.
    #[serde(rename = "static")]
    Static(StaticLabel),
}

/// A plugin with no settings besides its kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// `kind: static` labeler settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticLabel {
    /// The label.
    pub label: String,
}

/// How an HTTP request becomes a logical name.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Identifier {
    /// The value of one header as one path segment (default: `Host`).
    #[serde(rename = "io.l5d.header.token")]
    HeaderToken(HeaderToken),
    /// `/1.1/<METHOD>/<host>[/uri]`.
    #[serde(rename = "io.l5d.methodAndHost")]
    MethodAndHost(MethodAndHost),
    /// The first `segments` URI path segments.
    #[serde(rename = "io.l5d.path")]
    Path(PathIdentifier),
    /// A header's value parsed as a path (default header `l5d-name`).
    #[serde(rename = "io.l5d.header")]
    Header(HeaderPathIdentifier),
    /// A fixed name.
    #[serde(rename = "io.l5d.static")]
    Static(StaticIdentifier),
    /// Kubernetes Ingress resources: not implemented yet.
    #[serde(rename = "io.l5d.ingress")]
    Ingress(serde::de::IgnoredAny),
    /// h2 `:path` segments: for h2 routers, not implemented yet.
    #[serde(rename = "io.l5d.header.path")]
    HeaderPath(HeaderPathSegments),
}

/// `io.l5d.header.path` (h2): the first `segments` segments of `:path` (all by default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderPathSegments {
    /// How many leading segments name the request (default: all).
    pub segments: Option<usize>,
}

impl Identifier {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Identifier::HeaderToken(_) => "io.l5d.header.token",
            Identifier::MethodAndHost(_) => "io.l5d.methodAndHost",
            Identifier::Path(_) => "io.l5d.path",
            Identifier::Header(_) => "io.l5d.header",
            Identifier::Static(_) => "io.l5d.static",
            Identifier::Ingress(_) => "io.l5d.ingress",
            Identifier::HeaderPath(_) => "io.l5d.header.path",
        }
    }
}

/// `io.l5d.header.token` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderToken {
    /// The header (default `Host`).
    pub header: Option<String>,
}

/// `io.l5d.methodAndHost` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MethodAndHost {
    /// Append the URI path to the name.
    #[serde(default)]
    pub http_uri_in_dst: bool,
}

/// `io.l5d.path` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathIdentifier {
    /// How many segments (default 1).
    pub segments: Option<usize>,
    /// Remove them from the forwarded URI.
    #[serde(default)]
    pub consume: bool,
}

/// `io.l5d.header` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderPathIdentifier {
    /// The header name (default `l5d-name`).
    pub header: Option<String>,
}

/// `io.l5d.static` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticIdentifier {
    /// The name (appended to `dstPrefix`).
    #[serde(deserialize_with = "value::path")]
    pub path: Path,
}

/// How a router binds names.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Interpreter {
    /// The configured namers and the system namer.
    #[serde(rename = "default")]
    Default(DefaultInterpreter),
    /// namerd over ThriftMux: not implemented yet.
    #[serde(rename = "io.l5d.namerd")]
    Namerd(serde::de::IgnoredAny),
    /// namerd over HTTP: not implemented yet.
    #[serde(rename = "io.l5d.namerd.http")]
    NamerdHttp(serde::de::IgnoredAny),
    /// namerd over gRPC: not implemented yet.
    #[serde(rename = "io.l5d.mesh")]
    Mesh(serde::de::IgnoredAny),
    /// A dtab file: not implemented yet.
    #[serde(rename = "io.l5d.fs")]
    Fs(serde::de::IgnoredAny),
    /// A dtab in a ConfigMap: not implemented yet.
    #[serde(rename = "io.l5d.k8s.configMap")]
    K8sConfigMap(serde::de::IgnoredAny),
    /// A dtab in Consul: not implemented yet.
    #[serde(rename = "io.l5d.consul.interpreter")]
    Consul(serde::de::IgnoredAny),
}

/// The default interpreter's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultInterpreter {
    /// Applied to every bound tree, in order.
    #[serde(default)]
    pub transformers: Vec<super::namer::Transformer>,
}
