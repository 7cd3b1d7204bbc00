//! Which settings apply to a client: the router's `client:` block (global, or the
//! `io.l5d.static` blocks whose prefix matches the client id, later ones winning per
//! key) turned into the cores' configurations.

use std::time::Duration;

use super::accrual::{AccrualConfig, Backoff, Policy};
use super::balance::{ApertureConfig, BalancerConfig, EwmaConfig, Kind};
use super::retry::{BackoffConfig, Classifier};
use super::route::ClientPolicy;
use crate::config::{self, ClientConfig, PathMatcher, ServiceConfig, StackKind};
use crate::naming::Path;

/// A router's client blocks, ready to match client ids.
#[derive(Debug, Default)]
pub struct ClientBlocks {
    blocks: Vec<(Option<PathMatcher>, Settings)>,
}

/// A client block's TLS, built once when the router starts (certificates loaded): one
/// configuration per protocol a connection may negotiate by ALPN.
pub struct TlsSetup {
    settings: plexus_tls::ClientTlsSettings,
    /// For HTTP/1.1 connections (ALPN `http/1.1`).
    pub http1: plexus_tls::ClientTls,
    /// For HTTP/2 connections (ALPN `h2`).
    pub h2: plexus_tls::ClientTls,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("common_name", &self.settings.common_name)
            .finish_non_exhaustive()
    }
}

impl TlsSetup {
    fn new(settings: &plexus_tls::ClientTlsSettings) -> Result<TlsSetup, String> {
        let build = |alpn: &[&[u8]]| {
            plexus_tls::ClientTls::new(settings, alpn).map_err(|e| format!("client tls: {e}"))
        };
        Ok(TlsSetup {
            settings: settings.clone(),
            http1: build(&[b"http/1.1"])?,
            h2: build(&[b"h2"])?,
        })
    }
}

/// A client's TLS: the configurations and the name its endpoints' certificates must
/// carry (also sent as SNI); `None` when validation is off and no name is given (the
/// endpoint's IP is used for SNI then).
#[derive(Clone, Debug)]
pub struct ClientTlsTarget {
    /// The configurations.
    pub setup: std::sync::Arc<TlsSetup>,
    /// `commonName`, with the client prefix's captures filled in.
    pub server_name: Option<std::sync::Arc<str>>,
    /// Why `commonName` could not be filled in: every connection then fails with it
    /// (never falls back to plaintext).
    pub error: Option<std::sync::Arc<str>>,
}

/// The keys of one block that Plexus applies.
#[derive(Debug, Default, Clone)]
struct Settings {
    load_balancer: Option<config::LoadBalancer>,
    failure_accrual: Option<config::FailureAccrual>,
    requeue_budget: Option<config::Budget>,
    attempt_timeout_ms: Option<u64>,
    peer_upgrades: Option<Vec<String>>,
    tls: Option<std::sync::Arc<TlsSetup>>,
    thrift_framed: Option<bool>,
    ttwitter: Option<bool>,
}

fn settings(c: &ClientConfig) -> Result<Settings, String> {
    let tls = match &c.tls {
        Some(t) if t.enabled => Some(std::sync::Arc::new(TlsSetup::new(t)?)),
        _ => None,
    };
    Ok(Settings {
        tls,
        peer_upgrades: c.peer_upgrades.clone(),
        thrift_framed: c.thrift_framed,
        ttwitter: c.attempt_ttwitter_upgrade,
        load_balancer: c.load_balancer.clone(),
        failure_accrual: c.failure_accrual.clone(),
        requeue_budget: c.requeue_budget.clone(),
        attempt_timeout_ms: c.request_attempt_timeout_ms,
    })
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn backoff(b: &Option<config::Backoff>) -> Backoff {
    match b {
        None => Backoff::default(),
        Some(config::Backoff::Constant { ms: m }) => Backoff::Constant(ms(*m)),
        Some(config::Backoff::Jittered { min_ms, max_ms }) => Backoff::Jittered {
            min: ms(*min_ms),
            max: ms(*max_ms),
        },
    }
}

fn balancer(lb: &config::LoadBalancer) -> BalancerConfig {
    let effort = |e: &Option<u32>| e.unwrap_or(5) as usize;
    match lb {
        config::LoadBalancer::P2c { max_effort, .. } => BalancerConfig {
            kind: Kind::P2c,
            max_effort: effort(max_effort),
        },
        config::LoadBalancer::Ewma {
            max_effort,
            decay_time_ms,
            ..
        } => {
            let mut e = EwmaConfig::default();
            if let Some(d) = decay_time_ms {
                e.decay = ms(*d);
            }
            BalancerConfig {
                kind: Kind::Ewma(e),
                max_effort: effort(max_effort),
            }
        }
        config::LoadBalancer::Aperture {
            max_effort,
            smooth_window_ms,
            low_load,
            high_load,
            min_aperture,
            ..
        } => {
            let mut a = ApertureConfig::default();
            if let Some(v) = smooth_window_ms {
                a.smooth_window = ms(*v);
            }
            if let Some(v) = low_load {
                a.low_load = *v;
            }
            if let Some(v) = high_load {
                a.high_load = *v;
            }
            if let Some(v) = min_aperture {
                a.min_aperture = *v as usize;
            }
            a.seed = std::process::id() as u64;
            BalancerConfig {
                kind: Kind::Aperture(a),
                max_effort: effort(max_effort),
            }
        }
        config::LoadBalancer::Heap { .. } => BalancerConfig {
            kind: Kind::Heap,
            max_effort: 1,
        },
        config::LoadBalancer::RoundRobin { max_effort, .. } => BalancerConfig {
            kind: Kind::RoundRobin,
            max_effort: effort(max_effort),
        },
    }
}

fn accrual(fa: &config::FailureAccrual) -> AccrualConfig {
    match fa {
        config::FailureAccrual::ConsecutiveFailures {
            failures,
            backoff: b,
        } => AccrualConfig {
            policy: Policy::ConsecutiveFailures {
                failures: failures.unwrap_or(5),
            },
            backoff: backoff(b),
        },
        config::FailureAccrual::SuccessRate {
            success_rate,
            requests,
            backoff: b,
        } => AccrualConfig {
            policy: Policy::SuccessRate {
                success_rate: *success_rate,
                requests: *requests,
            },
            backoff: backoff(b),
        },
        config::FailureAccrual::SuccessRateWindowed {
            success_rate,
            window,
            backoff: b,
        } => AccrualConfig {
            policy: Policy::SuccessRateWindowed {
                success_rate: *success_rate,
                window: Duration::from_secs(*window),
            },
            backoff: backoff(b),
        },
        config::FailureAccrual::None {} => AccrualConfig {
            policy: Policy::Disabled,
            backoff: Backoff::default(),
        },
    }
}

impl ClientBlocks {
    /// The blocks of a router's `client:` (validated: static blocks have prefixes). Fails
    /// when a block's TLS cannot be set up (unreadable certificates, ...).
    pub fn new(client: Option<&ClientConfig>) -> Result<Self, String> {
        let Some(c) = client else {
            return Ok(ClientBlocks::default());
        };
        let blocks = match c.kind.unwrap_or(StackKind::Global) {
            StackKind::Global => vec![(None, settings(c)?)],
            StackKind::Static => {
                let mut blocks = Vec::new();
                for b in c.configs.iter().flatten() {
                    let Some(m) = b.prefix.as_deref().and_then(|p| PathMatcher::parse(p).ok())
                    else {
                        continue;
                    };
                    blocks.push((Some(m), settings(b)?));
                }
                blocks
            }
        };
        Ok(ClientBlocks { blocks })
    }

    /// The policy of client `id`: defaults, overridden by every matching block in order.
    pub fn policy(&self, id: &Path) -> ClientPolicy {
        let mut merged = Settings::default();
        let mut tls_captures = std::collections::BTreeMap::new();
        for (matcher, s) in &self.blocks {
            let captures = match matcher {
                None => Some(std::collections::BTreeMap::new()),
                Some(m) => m.matches(id),
            };
            let Some(captures) = captures else {
                continue;
            };
            if s.tls.is_some() {
                merged.tls = s.tls.clone();
                tls_captures = captures;
            }
            if s.load_balancer.is_some() {
                merged.load_balancer = s.load_balancer.clone();
            }
            if s.failure_accrual.is_some() {
                merged.failure_accrual = s.failure_accrual.clone();
            }
            if s.requeue_budget.is_some() {
                merged.requeue_budget = s.requeue_budget.clone();
            }
            if s.attempt_timeout_ms.is_some() {
                merged.attempt_timeout_ms = s.attempt_timeout_ms;
            }
            if s.peer_upgrades.is_some() {
                merged.peer_upgrades = s.peer_upgrades.clone();
            }
            if s.thrift_framed.is_some() {
                merged.thrift_framed = s.thrift_framed;
            }
            if s.ttwitter.is_some() {
                merged.ttwitter = s.ttwitter;
            }
        }
        ClientPolicy {
            balancer: merged
                .load_balancer
                .as_ref()
                .map(balancer)
                .unwrap_or_default(),
            accrual: merged
                .failure_accrual
                .as_ref()
                .map(accrual)
                .unwrap_or_default(),
            requeue_budget: budget_params(merged.requeue_budget),
            attempt_timeout: merged.attempt_timeout_ms.map(ms),
            upgrade_h2: merged.peer_upgrades.iter().flatten().any(|u| u == "h2"),
            negotiate_tls: merged.peer_upgrades.iter().flatten().any(|u| u == "tls"),
            thrift: super::route::ThriftClient {
                framed: merged.thrift_framed.unwrap_or(true),
                ttwitter: merged.ttwitter.unwrap_or(false),
                mux: merged.peer_upgrades.iter().flatten().any(|u| u == "mux"),
            },
            tls: merged.tls.map(|setup| {
                let name = setup
                    .settings
                    .common_name_with(|var| tls_captures.get(var).map(String::as_str));
                match name {
                    Ok(name) => ClientTlsTarget {
                        setup,
                        server_name: name.map(std::sync::Arc::from),
                        error: None,
                    },
                    Err(e) => {
                        tracing::error!(client = %id, error = %e, "client TLS cannot be set up; its requests will fail");
                        ClientTlsTarget {
                            setup,
                            server_name: None,
                            error: Some(std::sync::Arc::from(e.to_string())),
                        }
                    }
                }
            }),
        }
    }
}

/// What one service's requests follow: the total timeout, the classifier and retries.
#[derive(Clone, Debug)]
pub struct ServicePolicy {
    /// `totalTimeoutMs`.
    pub total_timeout: Option<Duration>,
    /// `responseClassifier`.
    pub classifier: Classifier,
    /// `retries.budget`: (ttl, minRetriesPerSec, percentCanRetry).
    pub retry_budget: (Duration, u32, f64),
    /// `retries.backoff`.
    pub backoff: BackoffConfig,
    /// `idempotentMethods` (Thrift): calls that may be retried after they were sent.
    pub idempotent_methods: std::sync::Arc<[String]>,
}

/// A router's service blocks, ready to match service names.
#[derive(Debug, Default)]
pub struct ServiceBlocks {
    blocks: Vec<(Option<PathMatcher>, ServiceSettings)>,
}

#[derive(Debug, Default, Clone)]
struct ServiceSettings {
    total_timeout_ms: Option<u64>,
    classifier: Option<config::ResponseClassifier>,
    budget: Option<config::Budget>,
    backoff: Option<config::Backoff>,
    idempotent_methods: Option<Vec<String>>,
}

fn service_settings(c: &ServiceConfig) -> ServiceSettings {
    ServiceSettings {
        idempotent_methods: c.idempotent_methods.clone(),
        total_timeout_ms: c.total_timeout_ms,
        classifier: c.response_classifier.clone(),
        budget: c.retries.as_ref().and_then(|r| r.budget.clone()),
        backoff: c.retries.as_ref().and_then(|r| r.backoff.clone()),
    }
}

fn budget_params(b: Option<config::Budget>) -> (Duration, u32, f64) {
    let b = b.unwrap_or(config::Budget {
        ttl_secs: None,
        min_retries_per_sec: None,
        percent_can_retry: None,
    });
    (
        Duration::from_secs(b.ttl_secs.unwrap_or(10)),
        b.min_retries_per_sec.unwrap_or(10),
        b.percent_can_retry.unwrap_or(0.2),
    )
}

impl ServiceBlocks {
    /// The blocks of a router's `service:`.
    pub fn new(service: Option<&ServiceConfig>) -> Self {
        let Some(c) = service else {
            return ServiceBlocks::default();
        };
        let blocks = match c.kind.unwrap_or(StackKind::Global) {
            StackKind::Global => vec![(None, service_settings(c))],
            StackKind::Static => c
                .configs
                .iter()
                .flatten()
                .filter_map(|b| {
                    Some((
                        Some(PathMatcher::parse(b.prefix.as_deref()?).ok()?),
                        service_settings(b),
                    ))
                })
                .collect(),
        };
        ServiceBlocks { blocks }
    }

    /// The policy of service `name`: defaults, overridden by every matching block in order.
    pub fn policy(&self, name: &Path) -> ServicePolicy {
        let mut m = ServiceSettings::default();
        for (matcher, s) in &self.blocks {
            if matcher.as_ref().is_some_and(|x| x.matches(name).is_none()) {
                continue;
            }
            if s.total_timeout_ms.is_some() {
                m.total_timeout_ms = s.total_timeout_ms;
            }
            if s.classifier.is_some() {
                m.classifier = s.classifier.clone();
            }
            if s.budget.is_some() {
                m.budget = s.budget.clone();
            }
            if s.backoff.is_some() {
                m.backoff = s.backoff.clone();
            }
            if s.idempotent_methods.is_some() {
                m.idempotent_methods = s.idempotent_methods.clone();
            }
        }
        let backoff = match &m.backoff {
            None => BackoffConfig::default(),
            Some(config::Backoff::Constant { ms: v }) => BackoffConfig::constant(ms(*v)),
            Some(config::Backoff::Jittered { min_ms, max_ms }) => {
                BackoffConfig::jittered(ms(*min_ms), ms(*max_ms))
                    .unwrap_or_else(|_| BackoffConfig::constant(ms(*min_ms)))
            }
        };
        ServicePolicy {
            total_timeout: m.total_timeout_ms.map(ms),
            classifier: m
                .classifier
                .as_ref()
                .and_then(Classifier::from_config)
                .unwrap_or_default(),
            retry_budget: budget_params(m.budget),
            backoff,
            idempotent_methods: m.idempotent_methods.unwrap_or_default().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn blocks(yaml: &str) -> ClientBlocks {
        let config = Config::parse(&format!(
            "routers:\n- protocol: http\n  servers: [{{port: 1}}]\n  client:\n{yaml}"
        ))
        .unwrap();
        let crate::config::Router::Http(r) = &config.routers[0] else {
            panic!()
        };
        ClientBlocks::new(r.client.as_ref()).expect("client blocks")
    }

    #[test]
    fn defaults_are_linkerds() {
        let p = ClientBlocks::default().policy(&Path::read("/#/x").unwrap());
        assert_eq!(p.balancer, BalancerConfig::default());
        assert_eq!(p.accrual, AccrualConfig::default());
        assert_eq!(p.requeue_budget, (Duration::from_secs(10), 10, 0.2));
        assert_eq!(p.attempt_timeout, None);
    }

    #[test]
    fn static_blocks_apply_in_order_later_ones_winning() {
        let b = blocks(
            "    kind: io.l5d.static\n    configs:\n    - prefix: /#/io.l5d.fs\n      loadBalancer: {kind: ewma, decayTimeMs: 500}\n      \
             failureAccrual: {kind: io.l5d.consecutiveFailures, failures: 3, backoff: {kind: constant, ms: 100}}\n    \
             - prefix: /#/io.l5d.fs/special\n      failureAccrual: {kind: none}\n",
        );
        let p = b.policy(&Path::read("/#/io.l5d.fs/web").unwrap());
        let Kind::Ewma(e) = p.balancer.kind else {
            panic!("{:?}", p.balancer)
        };
        assert_eq!(e.decay, Duration::from_millis(500));
        assert_eq!(
            p.accrual,
            AccrualConfig {
                policy: Policy::ConsecutiveFailures { failures: 3 },
                backoff: Backoff::Constant(Duration::from_millis(100))
            }
        );
        let special = b.policy(&Path::read("/#/io.l5d.fs/special").unwrap());
        assert_eq!(special.accrual.policy, Policy::Disabled);
        assert!(matches!(special.balancer.kind, Kind::Ewma(_)));
        let other = b.policy(&Path::read("/$/inet/127.0.0.1/1").unwrap());
        assert_eq!(other.balancer, BalancerConfig::default());
    }
}
