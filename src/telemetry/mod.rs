//! Telemetry: metrics in Linkerd's tree, Prometheus exposition (placeholder while it lands).
