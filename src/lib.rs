//! Plexus: a service mesh for Kubernetes that speaks Linkerd 1.x.
//!
//! Every request is routed by name through Finagle dtabs ([`naming`]); the command line
//! ([`cli`]) exposes the tools and, as later parts land, the proxy itself.

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod naming;
pub mod net;
pub mod router;
pub mod runtime;
pub mod server;
pub mod sim;
pub mod telemetry;
