//! The settings of the tracing telemeters, `io.l5d.zipkin` and `io.l5d.recentRequests`,
//! with their defaults and range checks, so the runtime receives values it can use as
//! they are and a bad value is named with its key before anything starts.

use serde::Deserialize;

/// Where spans go unless `port` says otherwise: Zipkin's HTTP port (Linkerd's 9410 was
/// the Scribe port, a transport Plexus does not speak).
pub const DEFAULT_ZIPKIN_PORT: u16 = 9411;
/// The share of new traces recorded unless `sampleRate` says otherwise (Linkerd's).
pub const DEFAULT_ZIPKIN_SAMPLE_RATE: f64 = 0.001;
/// Requests the recent-requests table keeps unless `capacity` says otherwise.
pub const DEFAULT_RECENT_CAPACITY: usize = 10;
/// The largest `capacity` accepted, so a typo cannot make the table eat the memory.
pub const MAX_RECENT_CAPACITY: usize = 100_000;

/// `io.l5d.zipkin` settings: spans are sent as Zipkin v2 JSON over HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZipkinTelemeter {
    /// The collector's host name or address (default `localhost`).
    pub host: Option<String>,
    /// The collector's HTTP port (default 9411).
    pub port: Option<u16>,
    /// The share of new traces that are recorded, 0 to 1 (default 0.001).
    pub sample_rate: Option<f64>,
}

impl ZipkinTelemeter {
    /// The collector's host.
    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or("localhost")
    }

    /// The collector's port.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_ZIPKIN_PORT)
    }

    /// The sample rate for requests that arrive without a sampling decision.
    pub fn sample_rate(&self) -> f64 {
        self.sample_rate.unwrap_or(DEFAULT_ZIPKIN_SAMPLE_RATE)
    }

    pub(super) fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = self.sample_rate
            && !rate_ok(r)
        {
            out.push(format!("{at}: sampleRate must be between 0 and 1, not {r}"));
        }
        if self.port == Some(0) {
            out.push(format!("{at}: port must be between 1 and 65535, not 0"));
        }
        if self.host.as_deref().is_some_and(|h| h.trim().is_empty()) {
            out.push(format!("{at}: host must not be empty"));
        }
        out
    }
}

/// `io.l5d.recentRequests` settings: a table of recently sampled requests on the admin
/// server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecentRequestsTelemeter {
    /// The share of requests recorded, 0 to 1 (required, as in Linkerd).
    pub sample_rate: f64,
    /// How many requests the table keeps (default 10).
    pub capacity: Option<usize>,
}

impl RecentRequestsTelemeter {
    /// How many requests the table keeps.
    pub fn capacity(&self) -> usize {
        self.capacity.unwrap_or(DEFAULT_RECENT_CAPACITY)
    }

    pub(super) fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !rate_ok(self.sample_rate) {
            out.push(format!(
                "{at}: sampleRate must be between 0 and 1, not {}",
                self.sample_rate
            ));
        }
        if let Some(c) = self.capacity
            && !(1..=MAX_RECENT_CAPACITY).contains(&c)
        {
            out.push(format!(
                "{at}: capacity must be between 1 and {MAX_RECENT_CAPACITY}, not {c}"
            ));
        }
        out
    }
}

fn rate_ok(r: f64) -> bool {
    r.is_finite() && (0.0..=1.0).contains(&r)
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn problems(telemetry: &str) -> Vec<String> {
        let text = format!(
            "routers:\n- protocol: http\n  servers:\n  - port: 4140\ntelemetry:\n{telemetry}"
        );
        Config::parse(&text).expect("parses").validate()
    }

    #[test]
    fn defaults_are_linkerd_s_except_the_http_port() {
        let text = "routers:\n- protocol: http\n  servers:\n  - port: 4140\ntelemetry:\n- kind: io.l5d.zipkin\n- kind: io.l5d.recentRequests\n  sampleRate: 0.5\n";
        let config = Config::parse(text).expect("parses");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let (zipkin, recent) = (config.zipkin().expect("zipkin"), config.recent_requests());
        assert_eq!(
            (zipkin.host(), zipkin.port(), zipkin.sample_rate()),
            ("localhost", 9411, 0.001)
        );
        let recent = recent.expect("recent");
        assert_eq!((recent.sample_rate, recent.capacity()), (0.5, 10));
    }

    #[test]
    fn out_of_range_values_are_named() {
        assert_eq!(
            problems("- kind: io.l5d.zipkin\n  sampleRate: 1.5\n  port: 0\n  host: ''\n"),
            vec![
                "telemetry[0] (io.l5d.zipkin): sampleRate must be between 0 and 1, not 1.5",
                "telemetry[0] (io.l5d.zipkin): port must be between 1 and 65535, not 0",
                "telemetry[0] (io.l5d.zipkin): host must not be empty",
            ]
        );
        assert_eq!(
            problems("- kind: io.l5d.recentRequests\n  sampleRate: -0.1\n  capacity: 0\n"),
            vec![
                "telemetry[0] (io.l5d.recentRequests): sampleRate must be between 0 and 1, not -0.1",
                "telemetry[0] (io.l5d.recentRequests): capacity must be between 1 and 100000, not 0",
            ]
        );
        assert_eq!(
            problems("- kind: io.l5d.zipkin\n- kind: io.l5d.zipkin\n"),
            vec!["telemetry[1] (io.l5d.zipkin): only one io.l5d.zipkin telemeter is allowed"]
        );
    }

    #[test]
    fn recent_requests_needs_its_sample_rate_and_unknown_keys_are_refused() {
        let text = "routers: []\ntelemetry:\n- kind: io.l5d.recentRequests\n  capacity: 3\n";
        let e = Config::parse(text).expect_err("sampleRate is required");
        assert!(e.to_string().contains("sampleRate"), "{e}");
        let text = "routers: []\ntelemetry:\n- kind: io.l5d.zipkin\n  sampleRat: 1\n";
        let e = Config::parse(text).expect_err("unknown key");
        assert!(e.to_string().contains("sampleRat"), "{e}");
    }
}
