//! A finished span and its Zipkin v2 JSON form (the model `POST /api/v2/spans` accepts):
//! hex ids, `kind`, epoch `timestamp` and `duration` in microseconds, the local and
//! remote endpoints and string tags.
//!
//! Spans are built on the request path only when the trace is sampled, and turned into
//! JSON by the exporter, off the request path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::context::SpanContext;

/// Which side of a call a span records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A request as a router received it.
    Server,
    /// One attempt to send it to an endpoint.
    Client,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "SERVER",
            Kind::Client => "CLIENT",
        }
    }
}

/// A network endpoint of a span; the local one carries the service name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `serviceName` (the router label for the local endpoint).
    pub service_name: Option<Arc<str>>,
    /// Address and port.
    pub addr: SocketAddr,
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(name) = &self.service_name {
            m.serialize_entry("serviceName", &**name)?;
        }
        match self.addr {
            SocketAddr::V4(a) => m.serialize_entry("ipv4", &a.ip().to_string())?,
            SocketAddr::V6(a) => m.serialize_entry("ipv6", &a.ip().to_string())?,
        }
        if self.addr.port() != 0 {
            m.serialize_entry("port", &self.addr.port())?;
        }
        m.end()
    }
}

/// A finished span.
#[derive(Clone, Debug)]
pub struct Span {
    /// Its ids and whether it is a debug trace.
    pub context: SpanContext,
    /// Server or client side.
    pub kind: Kind,
    /// The operation: the HTTP method, lower case, as Zipkin's HTTP instrumentation names it.
    pub name: String,
    /// When it started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// This router.
    pub local: Endpoint,
    /// The peer: the downstream client for a server span, the endpoint for a client span.
    pub remote: Option<Endpoint>,
    /// Tags, in the order they are written.
    pub tags: Vec<(&'static str, String)>,
}

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

impl Span {
    /// Microseconds since the epoch.
    pub fn timestamp_micros(&self) -> u64 {
        self.start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }

    /// The duration in microseconds; at least 1, since Zipkin reads 0 as "unknown".
    pub fn duration_micros(&self) -> u64 {
        (self.duration.as_micros() as u64).max(1)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ids = &self.context.ids;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("traceId", &ids.trace_id_hex())?;
        m.serialize_entry("id", &hex(ids.span_id))?;
        if let Some(p) = ids.parent_id {
            m.serialize_entry("parentId", &hex(p))?;
        }
        m.serialize_entry("kind", self.kind.as_str())?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("timestamp", &self.timestamp_micros())?;
        m.serialize_entry("duration", &self.duration_micros())?;
        m.serialize_entry("localEndpoint", &self.local)?;
        if let Some(r) = &self.remote {
            m.serialize_entry("remoteEndpoint", r)?;
        }
        if self.context.debug {
            m.serialize_entry("debug", &true)?;
        }
        if !self.tags.is_empty() {
            m.serialize_entry("tags", &Tags(&self.tags))?;
        }
        m.end()
    }
}

struct Tags<'a>(&'a [(&'static str, String)]);

impl Serialize for Tags<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::TraceIds;
    use super::*;
    use serde_json::json;

    #[test]
    fn spans_serialise_to_the_zipkin_v2_model() {
        let span = Span {
            context: SpanContext {
                ids: TraceIds {
                    trace_id_high: 0,
                    trace_id: 0xabc,
                    span_id: 0x1,
                    parent_id: Some(0x2),
                },
                sampled: true,
                debug: true,
            },
            kind: Kind::Client,
            name: "get".into(),
            start: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            duration: Duration::from_nanos(10),
            local: Endpoint {
                service_name: Some("outgoing".into()),
                addr: "127.0.1.1:4140".parse().unwrap(),
            },
            remote: Some(Endpoint {
                service_name: None,
                addr: "[::1]:80".parse().unwrap(),
            }),
            tags: vec![("http.method", "GET".into()), ("error", "boom".into())],
        };
        assert_eq!(
            serde_json::to_value(&span).unwrap(),
            json!({
                "traceId": "0000000000000abc", "id": "0000000000000001",
                "parentId": "0000000000000002", "kind": "CLIENT", "name": "get",
                "timestamp": 1_700_000_000_123_456u64, "duration": 1,
                "localEndpoint": {"serviceName": "outgoing", "ipv4": "127.0.1.1", "port": 4140},
                "remoteEndpoint": {"ipv6": "::1", "port": 80},
                "debug": true,
                "tags": {"http.method": "GET", "error": "boom"}
            })
        );
    }
}
