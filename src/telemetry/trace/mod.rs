//! Distributed tracing for the `io.l5d.zipkin` telemeter.
//!
//! A router reads the caller's trace context from a request ([`propagation`]: B3 and
//! `l5d-ctx-trace`, plus `l5d-sample`), opens a server span as its child, opens a client
//! span per attempt as the server span's child and writes that context on the forwarded
//! request. Sampled spans go to the [`Tracer`]'s bounded queue; the [`Exporter`] task
//! sends them to Zipkin in batches. Unsampled traces are propagated and never recorded.
//!
//! Files: `context` (ids and the sampling decision), `l5d` and `b3` (the header codecs),
//! `propagation` (what is read and written, and in which order), `span` (the Zipkin v2
//! model), `exporter` (the queue consumer and HTTP client).

pub mod b3;
pub mod context;
mod exporter;
pub mod l5d;
pub mod propagation;
pub mod span;

use std::sync::Arc;

use metrics::Counter;
use tokio::sync::mpsc;

pub use context::{Propagated, SpanContext, TraceIds};
pub use exporter::{ExportSettings, Exporter};
pub use span::{Endpoint, Kind, Span};

/// The tracer of a running Plexus: the sample rate and the queue to the exporter.
/// Shared by every router and worker; offering a span never blocks.
#[derive(Debug)]
pub struct Tracer {
    sample_rate: f64,
    queue: mpsc::Sender<Span>,
    dropped: Counter,
}

impl Tracer {
    /// A tracer recording `sample_rate` of new traces, and the exporter that sends its
    /// spans (to be run on some task). Registers the `zipkin:spans:*` counters with the
    /// installed metrics recorder.
    pub fn new(sample_rate: f64, settings: ExportSettings) -> (Arc<Tracer>, Exporter) {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let dropped = metrics::counter!("zipkin:spans:dropped");
        let sent = metrics::counter!("zipkin:spans:sent");
        let tracer = Tracer {
            sample_rate,
            queue: tx,
            dropped: dropped.clone(),
        };
        (Arc::new(tracer), Exporter::new(rx, settings, sent, dropped))
    }

    /// The share of new traces that are recorded.
    pub fn sample_rate(&self) -> f64 {
        self.sample_rate
    }

    /// Offers a finished span to the exporter; drops (and counts) it when the queue is
    /// full or the exporter has stopped.
    pub fn record(&self, span: Span) {
        if self.queue.try_send(span).is_err() {
            self.dropped.increment(1);
        }
    }
}

#[cfg(test)]
mod tests;
