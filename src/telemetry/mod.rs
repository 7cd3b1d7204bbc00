//! Telemetry: Linkerd 1.x's metrics, recorded through the `metrics` facade.
//!
//! Code instruments itself with the `metrics` crate's macros, naming each metric by its
//! Linkerd scopes joined with `:` and passing the dynamic scope ids as labels:
//!
//! ```
//! # let registry = plexus::telemetry::Registry::new();
//! # metrics::with_local_recorder(&registry, || {
//! let requests = metrics::counter!("rt:service:requests", "rt" => "outgoing", "service" => "svc/world");
//! requests.increment(1); // keep the handle: recording is lock- and allocation-free
//! # });
//! ```
//!
//! The [`Registry`] is the recorder behind those macros. It exports the same series in
//! both of Linkerd's shapes: `/admin/metrics.json`
//! ([`Registry::metrics_json`], `rt/outgoing/service/svc/world/requests`, optionally as
//! a tree or a subtree) and the `io.l5d.prometheus` text ([`Registry::prometheus`],
//! `rt:service:requests{rt="outgoing",service="svc/world"}`). [`linkerd_name`] gives the
//! mapping between the two. Histograms report Linkerd's stats (`p50` ... `p9999`, `min`,
//! `max`, `sum`, `count`, `avg`) over the last completed minute; the caller passes the
//! time in, so nothing here reads a clock. Evicting an idle client or service drops its
//! series with [`Registry::remove_matching`].
//!
//! Files: `names` (name and label mapping), `histogram` (buckets and windows), `registry`
//! (the recorder and its series), `json` and `prometheus` (the two exporters).
//!
//! Requests are also reported, one by one, to the tracing telemeters: `trace` (Zipkin
//! spans and trace context propagation, `io.l5d.zipkin`) and `recent` (the
//! `io.l5d.recentRequests` table), through the hooks of `observe`.

mod histogram;
mod json;
mod names;
mod observe;
mod prometheus;
pub mod recent;
mod registry;
pub mod trace;

pub use names::linkerd_name;
pub use observe::{Attempt, AttemptOutcome, Observation, RequestTelemetry};
pub use recent::{RecentRequest, RecentRequests};
pub use registry::{NotFound, Registry};

#[cfg(test)]
mod tests;
