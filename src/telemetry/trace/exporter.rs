//! The Zipkin exporter: one task that takes finished spans from a bounded queue, batches
//! them and POSTs each batch as Zipkin v2 JSON to `/api/v2/spans`.
//!
//! Requests never wait for it. The request path only offers a span to the queue; when
//! the queue is full the span is dropped and counted. A collector that is down, slow or
//! answering errors costs a batch (counted as dropped) and a connection, never a request.
//! Counters: `zipkin:spans:sent` and `zipkin:spans:dropped`.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use metrics::Counter;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::span::Span;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How spans are batched and sent.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// The collector's host.
    pub host: String,
    /// The collector's HTTP port.
    pub port: u16,
    /// Spans waiting to be sent; more are dropped.
    pub queue: usize,
    /// Spans per POST at most.
    pub batch: usize,
    /// How long the first span of a batch waits for others.
    pub interval: Duration,
    /// How long one POST (connecting included) may take.
    pub timeout: Duration,
}

impl ExportSettings {
    /// The defaults for a collector at `host:port`: queue 1000, batches of 100 or one
    /// second, 5 s per POST.
    pub fn new(host: &str, port: u16) -> Self {
        ExportSettings {
            host: host.to_string(),
            port,
            queue: 1000,
            batch: 100,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The sending half, owned by the exporter task.
pub struct Exporter {
    queue: mpsc::Receiver<Span>,
    settings: ExportSettings,
    authority: String,
    sent: Counter,
    dropped: Counter,
    conn: Option<SendRequest<Full<Bytes>>>,
    healthy: bool,
}

impl Exporter {
    pub(super) fn new(
        queue: mpsc::Receiver<Span>,
        settings: ExportSettings,
        sent: Counter,
        dropped: Counter,
    ) -> Self {
        let authority = if settings.host.contains(':') {
            format!("[{}]:{}", settings.host, settings.port)
        } else {
            format!("{}:{}", settings.host, settings.port)
        };
        Exporter {
            queue,
            settings,
            authority,
            sent,
            dropped,
            conn: None,
            healthy: true,
        }
    }

    /// Sends batches until `stop` completes, then sends what is still queued (each POST
    /// still bounded by the timeout) and returns.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        loop {
            let first = if stopping {
                self.queue.recv().await
            } else {
                tokio::select! {
                    span = self.queue.recv() => span,
                    () = &mut stop => {
                        stopping = true;
                        self.queue.close();
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let mut batch = Vec::with_capacity(self.settings.batch);
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.settings.interval;
            while batch.len() < self.settings.batch {
                let next = if stopping {
                    self.queue.try_recv().ok()
                } else {
                    tokio::select! {
                        span = tokio::time::timeout_at(deadline, self.queue.recv()) => span.ok().flatten(),
                        () = &mut stop => {
                            stopping = true;
                            self.queue.close();
                            self.queue.try_recv().ok()
                        }
                    }
                };
                match next {
                    Some(span) => batch.push(span),
                    None => break,
                }
            }
            self.send(batch).await;
        }
    }

    async fn send(&mut self, batch: Vec<Span>) {
        let n = batch.len() as u64;
        let body = match serde_json::to_vec(&batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode spans; dropping them");
                self.dropped.increment(n);
                return;
            }
        };
        let result = match tokio::time::timeout(self.settings.timeout, self.post(body)).await {
            Ok(Ok(status)) if status.is_success() => Ok(()),
            Ok(Ok(status)) => Err(format!("the collector answered {status}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.settings.timeout.as_millis()
            )),
        };
        match result {
            Ok(()) => {
                self.sent.increment(n);
                if !self.healthy {
                    tracing::info!(collector = %self.authority, "sending spans to Zipkin again");
                }
                self.healthy = true;
            }
            Err(why) => {
                self.dropped.increment(n);
                self.conn = None;
                if self.healthy {
                    tracing::warn!(collector = %self.authority, error = %why, spans = n, "cannot send spans to Zipkin; dropping them until it answers");
                } else {
                    tracing::debug!(collector = %self.authority, error = %why, spans = n, "dropped spans");
                }
                self.healthy = false;
            }
        }
    }

    async fn post(&mut self, body: Vec<u8>) -> Result<StatusCode, BoxError> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await?;
        let req = Request::post("/api/v2/spans")
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let rsp = sender.send_request(req).await?;
        let status = rsp.status();
        // Read the (small) answer to its end so the connection can carry the next batch.
        Limited::new(rsp.into_body(), 64 * 1024).collect().await?;
        self.conn = Some(sender);
        Ok(status)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, BoxError> {
        let stream = TcpStream::connect((self.settings.host.as_str(), self.settings.port)).await?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Zipkin connection closed");
            }
        });
        Ok(sender)
    }
}
