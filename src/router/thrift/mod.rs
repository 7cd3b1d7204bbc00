//! Thrift routers (`protocol: thrift` and `protocol: thriftmux`), on the router phases
//! HTTP uses.
//!
//! A Thrift router forwards messages as bytes; it never transcodes them. From each
//! message it reads only the header (name, type, seqid), which names the call the way
//! Linkerd 1.x does, and from each reply the first field, which says whether the call
//! succeeded. The modules follow a call:
//!
//! - [`serve`]: a client connection: what it speaks (framed or unframed Thrift, the
//!   TTwitter upgrade, or a Mux session from a Plexus peer or a Finagle ThriftMux
//!   client), its calls dispatched concurrently and answered in order;
//! - [`call`]: the context a call carries (TTwitter header or Tdispatch contexts) as one
//!   model;
//! - [`dispatch`]: identify, bind, choose, retries and the client stack;
//! - [`upstream`]: pooled serial Thrift connections to endpoints, with the optional
//!   TTwitter upgrade;
//! - [`mux_client`]: one Mux session per Plexus peer, the Thrift → ThriftMux upgrade.

pub mod call;
pub mod dispatch;
pub mod mux_client;
pub mod serve;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::{Common, Router, ServerSpec, policy};
use crate::config::{self, ThriftFlavor, ThriftRouter};
use crate::discovery::Epoch;
use crate::naming::Namers;

/// What a Thrift router needs beyond the shared router settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// `thrift` or `thriftmux`.
    pub flavor: ThriftFlavor,
    /// `thriftMethodInDst`.
    pub method_in_dst: bool,
    /// `thriftProtocol`: the protocol of errors written before a message's own
    /// protocol is known.
    pub protocol: plexus_thrift::Protocol,
    /// Limits on messages read from clients and endpoints.
    pub limits: plexus_thrift::Limits,
}

impl Router {
    /// Builds a Thrift router from its (validated) configuration; `transformers` are its
    /// interpreter's, already built; `telemetry` receives its requests.
    pub fn from_thrift_config(
        cfg: &ThriftRouter,
        flavor: ThriftFlavor,
        namers: Namers,
        epoch: Epoch,
        transformers: Vec<Arc<dyn crate::naming::Transformer>>,
        telemetry: crate::telemetry::RequestTelemetry,
    ) -> Result<Arc<Router>, String> {
        let label = cfg
            .label
            .clone()
            .unwrap_or_else(|| flavor.protocol().into());
        let mut servers = Vec::new();
        for s in &cfg.servers {
            let addr = SocketAddr::new(
                s.ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                s.port.unwrap_or(flavor.default_port()),
            );
            let tls = match &s.tls {
                Some(t) => Some(Arc::new(
                    plexus_tls::ServerTls::new(t, &[])
                        .map_err(|e| format!("router {label}, server {addr}: tls: {e}"))?,
                )),
                None => None,
            };
            servers.push(ServerSpec {
                addr,
                tls,
                accept_plaintext: s.accept_plaintext.unwrap_or(false),
                clear_context: false,
                max_call_depth: usize::MAX,
                forwarded: None,
                h2: None,
                // A thriftmux port takes Mux and framed Thrift; like Linkerd, it ignores
                // `thriftFramed` (it still recognises unframed strict and compact Thrift).
                thrift_framed: flavor == ThriftFlavor::ThriftMux || s.thrift_framed.unwrap_or(true),
            });
        }
        let client_blocks = policy::ClientBlocks::new(cfg.client.as_ref())
            .map_err(|e| format!("router {label}: {e}"))?;
        let protocol = match cfg.thrift_protocol.unwrap_or_default() {
            config::ThriftProtocol::Binary => plexus_thrift::Protocol::Binary,
            config::ThriftProtocol::Compact => plexus_thrift::Protocol::Compact,
        };
        let mut router = Router::common(
            Common {
                label,
                dtab: &cfg.dtab,
                dst_prefix: cfg.dst_prefix.as_ref(),
                binding_cache: cfg.binding_cache.as_ref(),
                binding_timeout_ms: cfg.binding_timeout_ms,
                service: cfg.service.as_ref(),
                client_blocks,
                servers,
            },
            namers,
            epoch,
            transformers,
            telemetry,
        );
        router.thrift = Some(Settings {
            flavor,
            method_in_dst: cfg.thrift_method_in_dst.unwrap_or(false),
            protocol,
            limits: plexus_thrift::Limits::default(),
        });
        Ok(Arc::new(router))
    }
}
