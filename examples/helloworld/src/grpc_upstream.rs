//! The client that asks the `-target` instance for its greeting in gRPC
//! mode, by calling `/helloworld.World/Greeting`.
//!
//! It keeps one HTTP/2 connection (prior knowledge, no TLS) to the target,
//! opened on the first call and reopened after a failure. In the mesh the
//! target is the node's Plexus (`-target=$NODE_NAME:4140`), whose h2 router
//! picks the World instance from the request path; `http_proxy` plays no
//! part here. The `:authority` sent is the target as given.

use std::time::Duration;

use plexus_examples::describe_status;
use plexus_examples::proto::GreetingRequest;
use plexus_examples::proto::world_client::WorldClient;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};

use crate::upstream::Target;

/// How long a whole call may take; above the 10s latency cap so a slow but
/// working target still answers.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);

/// How long opening the connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The method called.
const METHOD: &str = "/helloworld.World/Greeting";

/// Calls `helloworld.World/Greeting` on one target.
#[derive(Debug, Clone)]
pub(crate) struct WorldUpstream {
    client: WorldClient<Channel>,
    /// `http://<target>`, for messages.
    origin: String,
}

impl WorldUpstream {
    /// A client for `target` (`host` or `host:port`, port 80 by default).
    /// Connects lazily, so it must be created inside the runtime but needs
    /// no running target.
    pub(crate) fn new(target: &str) -> Result<Self, String> {
        Target::parse(target)?;
        let origin = format!("http://{target}");
        let endpoint = Endpoint::from_shared(origin.clone())
            .map_err(|e| format!("invalid target: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(UPSTREAM_TIMEOUT)
            .tcp_nodelay(true);
        Ok(WorldUpstream {
            client: WorldClient::new(endpoint.connect_lazy()),
            origin,
        })
    }

    /// `http://<target>/helloworld.World/Greeting`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("{}{METHOD}", self.origin)
    }

    /// Calls the target with the given metadata and returns its message, or
    /// the failure in words.
    pub(crate) async fn greeting(&self, metadata: MetadataMap) -> Result<String, String> {
        let mut request = tonic::Request::new(GreetingRequest {});
        *request.metadata_mut() = metadata;
        let mut client = self.client.clone();
        match tokio::time::timeout(UPSTREAM_TIMEOUT, client.greeting(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner().message),
            Ok(Err(status)) => Err(describe_status(&status)),
            Err(_) => Err(format!("no answer within {UPSTREAM_TIMEOUT:?}")),
        }
    }
}
