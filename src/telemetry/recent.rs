//! The `io.l5d.recentRequests` telemeter: a small ring of recently sampled requests,
//! newest first, for the admin server's `/requests.json` and the dashboard's table.
//!
//! Only sampled requests touch it (one short lock to push); the rest pay one random
//! draw. The ring never grows beyond its capacity.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::trace::context::uniform;

/// One recorded request, as the router received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecentRequest {
    /// When it arrived, in milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// The router's label.
    pub router: String,
    /// The HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The `Host` (or absolute-form authority), if any.
    pub host: Option<String>,
    /// The logical name it was routed by, once identified.
    pub dst_service: Option<String>,
    /// The client it was sent to, once bound.
    pub dst_client: Option<String>,
    /// The status answered.
    pub status: u16,
    /// From arrival to the response head, in milliseconds.
    pub duration_ms: f64,
    /// The downstream client's address.
    pub source: SocketAddr,
}

impl RecentRequest {
    fn to_json(&self) -> Value {
        json!({
            "timestampMs": self.timestamp_ms,
            "router": self.router,
            "method": self.method,
            "uri": self.uri,
            "host": self.host,
            "dstService": self.dst_service,
            "dstClient": self.dst_client,
            "status": self.status,
            "durationMs": self.duration_ms,
            "source": self.source.to_string(),
        })
    }
}

/// The ring of recent requests, shared by every router.
#[derive(Debug)]
pub struct RecentRequests {
    sample_rate: f64,
    capacity: usize,
    ring: Mutex<VecDeque<RecentRequest>>,
}

impl RecentRequests {
    /// A ring keeping `capacity` (at least 1) requests, recording `sample_rate` of them.
    pub fn new(sample_rate: f64, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        RecentRequests {
            sample_rate,
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// Whether to record the request that just arrived.
    pub fn sample(&self) -> bool {
        self.sample_rate > 0.0 && uniform() < self.sample_rate
    }

    /// Records a request, forgetting the oldest when full.
    pub fn push(&self, request: RecentRequest) {
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        if ring.len() == self.capacity {
            ring.pop_back();
        }
        ring.push_front(request);
    }

    /// The recorded requests, newest first.
    pub fn snapshot(&self) -> Vec<RecentRequest> {
        self.ring
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `{"requests": [...]}`, newest first: what `/requests.json` serves.
    pub fn to_json(&self) -> Value {
        let requests: Vec<Value> = self.snapshot().iter().map(RecentRequest::to_json).collect();
        json!({ "requests": requests })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(i: u64) -> RecentRequest {
        RecentRequest {
            timestamp_ms: 1_700_000_000_000 + i,
            router: "outgoing".into(),
            method: "GET".into(),
            uri: format!("/{i}"),
            host: Some("hello".into()),
            dst_service: Some("/svc/hello".into()),
            dst_client: None,
            status: 200,
            duration_ms: 1.5,
            source: "127.0.0.1:40000".parse().unwrap(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_first_within_capacity() {
        let ring = RecentRequests::new(1.0, 3);
        for i in 0..5 {
            ring.push(request(i));
        }
        let uris: Vec<String> = ring.snapshot().into_iter().map(|r| r.uri).collect();
        assert_eq!(uris, ["/4", "/3", "/2"]);
        let v = ring.to_json();
        assert_eq!(
            v["requests"][0],
            json!({"timestampMs": 1_700_000_000_004u64, "router": "outgoing", "method": "GET",
                   "uri": "/4", "host": "hello", "dstService": "/svc/hello", "dstClient": null,
                   "status": 200, "durationMs": 1.5, "source": "127.0.0.1:40000"})
        );
        assert_eq!(v["requests"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn sampling_follows_the_rate() {
        assert!(RecentRequests::new(1.0, 1).sample());
        assert!(!RecentRequests::new(0.0, 1).sample());
        let half = RecentRequests::new(0.5, 1);
        let n = (0..10_000).filter(|_| half.sample()).count();
        assert!((4000..6000).contains(&n), "{n}");
    }
}
