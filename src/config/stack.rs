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
    /// The time a request (with all its retries) may take, ms; 503 after.
    pub total_timeout_ms: Option<u64>,
    /// Retries of failed requests the classifier says are retryable.
    pub retries: Option<Retries>,
    /// Which responses are failures, and which failures may be retried.
    pub response_classifier: Option<ResponseClassifier>,
    /// Plexus only, Thrift routers: methods that are safe to call twice, so a call that
    /// failed after it was sent (connection lost, attempt timeout) may be retried.
    pub idempotent_methods: Option<Vec<String>>,
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
    /// How requests are spread over the client's endpoints (default p2c).
    pub load_balancer: Option<LoadBalancer>,
    /// When endpoints are ejected (circuit breaking; default 5 consecutive failures).
    pub failure_accrual: Option<FailureAccrual>,
    /// Budget for immediate retries of requests that never reached an endpoint.
    pub requeue_budget: Option<Budget>,
    /// The time one attempt may take, ms (retries get their own).
    pub request_attempt_timeout_ms: Option<u64>,
    /// Plexus only: upgrades this client may negotiate with endpoints that are Plexus
    /// peers (`[h2]`: carry HTTP/1.1 over one HTTP/2 connection). Off by default; an
    /// endpoint that is not a Plexus gets exactly what the application sent.
    pub peer_upgrades: Option<Vec<String>>,
    /// Thrift: messages to endpoints carry a 4-byte length (default true).
    pub thrift_framed: Option<bool>,
    /// Thrift: try Finagle's TTwitter upgrade on each connection (default false).
    #[serde(rename = "attemptTTwitterUpgrade")]
    pub attempt_ttwitter_upgrade: Option<bool>,
    /// Not implemented yet.
    pub fail_fast: NotYet,
    /// Not implemented yet.
    pub host_connection_pool: NotYet,
    /// Not implemented yet.
    pub client_session: NotYet,
    /// Not implemented yet.
    pub socket_options: NotYet,
    /// Originate TLS to the endpoints (Linkerd's client `tls:` keys; `commonName` may use
    /// the `{var}` captures of a static block's prefix).
    pub tls: Option<plexus_tls::ClientTlsSettings>,
    /// Not implemented yet.
    pub forward_client_cert: NotYet,
    /// Not implemented yet.
    pub request_authorizers: NotYet,
}

/// `loadBalancer:` of a client.
#[derive(Debug, Deserialize, Clone)]
#[serde(tag = "kind", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum LoadBalancer {
    /// Power of two choices over the least outstanding requests.
    #[serde(rename = "p2c")]
    P2c {
        /// Picks tried to avoid an unavailable endpoint (default 5).
        max_effort: Option<u32>,
        /// Accepted; probation is never enabled.
        enable_probation: Option<bool>,
    },
    /// Power of two choices over peak-EWMA latency.
    #[serde(rename = "ewma")]
    Ewma {
        /// Picks tried to avoid an unavailable endpoint (default 5).
        max_effort: Option<u32>,
        /// Decay of the latency estimate, ms (default 10000).
        decay_time_ms: Option<u64>,
        /// Accepted; probation is never enabled.
        enable_probation: Option<bool>,
    },
    /// A subset sized to the load.
    #[serde(rename = "aperture")]
    Aperture {
        /// Picks tried to avoid an unavailable endpoint (default 5).
        max_effort: Option<u32>,
        /// Load smoothing window, ms (default 5000).
        smooth_window_ms: Option<u64>,
        /// Shrink below this load per endpoint (default 0.5).
        low_load: Option<f64>,
        /// Grow above this load per endpoint (default 2.0).
        high_load: Option<f64>,
        /// The smallest aperture (default 1).
        min_aperture: Option<u32>,
        /// Accepted; probation is never enabled.
        enable_probation: Option<bool>,
    },
    /// The least loaded endpoint.
    #[serde(rename = "heap")]
    Heap {
        /// Accepted; probation is never enabled.
        enable_probation: Option<bool>,
    },
    /// Endpoints in turn.
    #[serde(rename = "roundRobin")]
    RoundRobin {
        /// Picks tried to avoid an unavailable endpoint (default 5).
        max_effort: Option<u32>,
        /// Accepted; probation is never enabled.
        enable_probation: Option<bool>,
    },
}

/// `failureAccrual:` of a client.
#[derive(Debug, Deserialize, Clone)]
#[serde(tag = "kind", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum FailureAccrual {
    /// Eject after this many failures in a row.
    #[serde(rename = "io.l5d.consecutiveFailures")]
    ConsecutiveFailures {
        /// Failures in a row (default 5).
        failures: Option<u32>,
        /// Time out of rotation.
        backoff: Option<Backoff>,
    },
    /// Eject when the success rate over the last `requests` falls below `successRate`.
    #[serde(rename = "io.l5d.successRate")]
    SuccessRate {
        /// The threshold, 0 to 1.
        success_rate: f64,
        /// Requests the rate is computed over.
        requests: u32,
        /// Time out of rotation.
        backoff: Option<Backoff>,
    },
    /// Eject when the success rate over the last `window` seconds falls below `successRate`.
    #[serde(rename = "io.l5d.successRateWindowed")]
    SuccessRateWindowed {
        /// The threshold, 0 to 1.
        success_rate: f64,
        /// The window, seconds.
        window: u64,
        /// Time out of rotation.
        backoff: Option<Backoff>,
    },
    /// Never eject.
    #[serde(rename = "none")]
    None {},
}

/// A backoff schedule.
#[derive(Debug, Deserialize, Clone)]
#[serde(tag = "kind", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum Backoff {
    /// Always the same delay.
    #[serde(rename = "constant")]
    Constant {
        /// The delay, ms.
        ms: u64,
    },
    /// Growing, randomised delays between two bounds.
    #[serde(rename = "jittered")]
    Jittered {
        /// The smallest delay, ms.
        min_ms: u64,
        /// The largest delay, ms.
        max_ms: u64,
    },
}

/// A retry budget (`retries.budget`, `requeueBudget`).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Budget {
    /// The window deposits count in, seconds (default 10).
    pub ttl_secs: Option<u64>,
    /// Retries always allowed per second (default 10).
    pub min_retries_per_sec: Option<u32>,
    /// Retries allowed per request, on top (default 0.2).
    pub percent_can_retry: Option<f64>,
}

/// `retries:` of a service.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// How many retries are allowed (default: 20 % of requests plus 10 per second).
    pub budget: Option<Budget>,
    /// The wait before each retry (default: none).
    pub backoff: Option<Backoff>,
}

/// `responseClassifier:` of a service.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResponseClassifier {
    /// `io.l5d.http.nonRetryable5XX` (default), `io.l5d.http.retryableRead5XX`,
    /// `io.l5d.http.retryableIdempotent5XX`, `io.l5d.http.retryableAll5XX` or
    /// `io.l5d.http.allSuccessful`; their `io.l5d.h2.*` twins; or for gRPC
    /// `io.l5d.h2.grpc.default`, `.compliant`, `.alwaysRetryable`, `.neverRetryable`,
    /// `.retryableStatusCodes`.
    pub kind: String,
    /// gRPC: the `grpc-status` codes that count as success (default `[0]`).
    pub success_status_codes: Option<Vec<u32>>,
    /// `io.l5d.h2.grpc.retryableStatusCodes`: the codes that may be retried.
    pub retryable_status_codes: Option<Vec<u32>>,
}
