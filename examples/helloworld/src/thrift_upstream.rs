//! The client that asks the `-target` instance for its greeting in Thrift
//! mode, by calling `Greeter.greet` over framed strict binary Thrift.
//!
//! Connections are pooled: a call takes an idle connection or opens a new
//! one, and a connection that carried a call to its end (a result or an
//! exception reply) goes back to the pool, which keeps at most
//! [`MAX_IDLE`]. Each connection carries one call at a time. A pooled
//! connection that the target closed while it was idle shows up as a lost
//! connection on the next call, which is then made once more on a new
//! connection. In the mesh the target is the node's Plexus thrift router
//! (`-target=$NODE_NAME:4114`), which needs nothing more than a plain
//! `greet` call: it routes on its `dstPrefix` (and the method name, with
//! `thriftMethodInDst`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use plexus_examples::error_chain;
use plexus_examples::greeter::{self, CallError};
use tokio::net::TcpStream;

use crate::upstream::Target;

/// How long a whole call may take; above the 10s latency cap so a slow but
/// working target still answers.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many idle connections are kept.
const MAX_IDLE: usize = 16;

/// Calls `Greeter.greet` on one target, over pooled connections.
#[derive(Debug)]
pub(crate) struct GreeterUpstream {
    /// `host:port`, as given.
    target: String,
    /// Connections between calls.
    idle: Mutex<Vec<TcpStream>>,
    /// The next sequence id.
    seq: AtomicI32,
}

impl GreeterUpstream {
    /// A client for `target`, which must be `host:port`. Connects lazily.
    pub(crate) fn new(target: &str) -> Result<Self, String> {
        Target::parse(target)?;
        let authority: http::uri::Authority = target
            .parse()
            .map_err(|_| "expected host:port".to_owned())?;
        if authority.port_u16().is_none() {
            return Err("thrift mode needs host:port".to_owned());
        }
        Ok(GreeterUpstream {
            target: target.to_owned(),
            idle: Mutex::new(Vec::new()),
            seq: AtomicI32::new(1),
        })
    }

    /// `thrift://<target> Greeter.greet`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "thrift://{} {}.{}",
            self.target,
            greeter::SERVICE,
            greeter::GREET
        )
    }

    /// Calls `greet(name)` and returns the answer, or the failure in words.
    pub(crate) async fn greet(&self, name: &str) -> Result<String, String> {
        match tokio::time::timeout(UPSTREAM_TIMEOUT, self.call(name)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {UPSTREAM_TIMEOUT:?}")),
        }
    }

    async fn call(&self, name: &str) -> Result<String, String> {
        let mut pooled = self.take_idle();
        loop {
            let reused = pooled.is_some();
            let mut stream = match pooled.take() {
                Some(stream) => stream,
                None => self.connect().await?,
            };
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let result = greeter::call_greet(&mut stream, seq, name).await;
            match result {
                Ok(answer) => {
                    self.put_idle(stream);
                    return Ok(answer);
                }
                // Closed while idle: once more, on a new connection.
                Err(error) if reused && error.connection_lost() => continue,
                Err(error) => {
                    if error.connection_reusable() {
                        self.put_idle(stream);
                    }
                    return Err(describe(&error));
                }
            }
        }
    }

    /// Opens a new connection.
    async fn connect(&self) -> Result<TcpStream, String> {
        let connect = TcpStream::connect(self.target.as_str());
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                return Err(format!(
                    "cannot connect to {}: {}",
                    self.target,
                    error_chain(&error)
                ));
            }
            Err(_) => {
                return Err(format!(
                    "cannot connect to {} within {CONNECT_TIMEOUT:?}",
                    self.target
                ));
            }
        };
        // Best effort: a failure only costs latency.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn take_idle(&self) -> Option<TcpStream> {
        self.idle.lock().ok()?.pop()
    }

    fn put_idle(&self, stream: TcpStream) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(stream);
        }
    }
}

/// A failed call in words: an exception as the target worded it, anything
/// else with what it was.
fn describe(error: &CallError) -> String {
    match error {
        CallError::Io(error) => format!("connection error: {}", error_chain(error)),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_a_port() {
        assert!(GreeterUpstream::new("127.0.0.1:4114").is_ok());
        assert!(GreeterUpstream::new("world:7778").is_ok());
        assert!(GreeterUpstream::new("[::1]:7778").is_ok());
        for bad in ["world", "a b:1", "world:x", "u@world:1", ""] {
            assert!(GreeterUpstream::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            GreeterUpstream::new("127.0.0.1:4114")
                .expect("valid")
                .describe(),
            "thrift://127.0.0.1:4114 Greeter.greet"
        );
    }
}
