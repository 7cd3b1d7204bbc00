//! `service:` and `client:` settings: one global block, or `io.l5d.static` blocks chosen
//! by prefix (every matching block applies, later ones win).

use serde::Deserialize;

use super::value::NotYet;

/// `kind` of a service or client block.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
pub enum StackKind {
    /// One block for every name (the default).
    #[serde(rename = "io.l5d.global")]
    Global,
    /// `configs:`, each with a `prefix`.
    #[serde(rename = "io.l5d.static")]
    Static,
}

/// Settings per logical name (the service stack). Also the shape of each `configs` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceConfig {
    /// `io.l5d.global` (default) or `io.l5d.static`.
    pub kind: Option<StackKind>,
    /// The blocks of `io.l5d.static`.
    pub configs: Option<Vec<ServiceConfig>>,
    /// Which names a `configs` entry applies to (`*` and `{var}` allowed).
    pub prefix: Option<String>,
    /// Not implemented yet.
    pub total_timeout_ms: NotYet,
    /// Not implemented yet.
    pub retries: NotYet,
    /// Not implemented yet.
    pub response_classifier: NotYet,
}

/// Settings per client (bound name). Also the shape of each `configs` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConfig {
    /// `io.l5d.global` (default) or `io.l5d.static`.
    pub kind: Option<StackKind>,
    /// The blocks of `io.l5d.static`.
    pub configs: Option<Vec<ClientConfig>>,
    /// Which clients a `configs` entry applies to (`*` and `{var}` allowed).
    pub prefix: Option<String>,
    /// Not implemented yet.
    pub load_balancer: NotYet,
    /// Not implemented yet.
    pub failure_accrual: NotYet,
    /// Not implemented yet.
    pub requeue_budget: NotYet,
    /// Not implemented yet.
    pub request_attempt_timeout_ms: NotYet,
    /// Not implemented yet.
    pub fail_fast: NotYet,
    /// Not implemented yet.
    pub host_connection_pool: NotYet,
    /// Not implemented yet.
    pub client_session: NotYet,
    /// Not implemented yet.
    pub socket_options: NotYet,
    /// Not implemented yet.
    pub tls: NotYet,
    /// Not implemented yet.
    pub forward_client_cert: NotYet,
    /// Not implemented yet.
    pub request_authorizers: NotYet,
}
