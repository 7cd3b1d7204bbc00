//! The `Namer` trait: how discovery plugs into binding.
//!
//! A namer answers synchronously from its current snapshot: pending (no answer yet), a
//! tree of names, or a failure. Live namers (files, Kubernetes, namerd) keep their
//! snapshots fresh in the background; binding is re-run when they change.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::addr::{Addr, Address, Bound, Name};
use super::path::Path;
use super::tree::NameTree;

/// The state of a lookup or a binding, like Finagle's `Activity.State`.
#[derive(Clone, Debug, PartialEq)]
pub enum Activity<T> {
    /// No answer yet.
    Pending,
    /// The answer.
    Ok(T),
    /// The lookup failed.
    Failed(NamingError),
}

/// Why naming failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// More than 100 lookups were chained (Finagle's `namerMaxDepth`).
    #[error("Max recursion level: {0} reached in Namer lookup")]
    MaxDepth(usize),
    /// A tree nested so deeply that binding it would exhaust the stack.
    #[error("name tree nested more than {0} levels deep")]
    TooDeep(usize),
    /// Binding would visit more than this many nodes (unions that multiply, usually
    /// through a dtab loop).
    #[error("binding needs more than {0} steps: the dtab is too complex or loops through unions")]
    TooComplex(usize),
    /// `/$/<class>` named no system namer.
    #[error("Unknown namer: {class} for path: {path}")]
    UnknownNamer {
        /// The `<class>` element.
        class: String,
        /// The whole path that was looked up.
        path: String,
    },
    /// A namer failed; the message says why.
    #[error("{0}")]
    Failed(String),
}

/// Discovery for the paths under one prefix.
pub trait Namer: Send + Sync {
    /// Looks up `path`, which is what follows this namer's prefix. `Neg` means "not mine":
    /// the next eligible namer is asked.
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>>;
}

/// Turns `/$/inet` host names into addresses. Binding itself does no I/O, so whoever
/// owns the engine decides how (and whether) names are resolved.
pub trait Resolve: Send + Sync {
    /// The addresses of `host:port`, as a snapshot.
    fn resolve(&self, host: &str, port: u16) -> Addr;
}

/// Resolves IP literals and `localhost` only; any other host name fails with a message
/// saying so. Used where no DNS may be consulted (tests, pure tools).
#[derive(Clone, Copy, Debug, Default)]
pub struct LiteralResolver;

impl Resolve for LiteralResolver {
    fn resolve(&self, host: &str, port: u16) -> Addr {
        let host_ip = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = host_ip.parse::<IpAddr>() {
            return Addr::Bound(vec![Address::new(SocketAddr::new(ip, port))]);
        }
        if host.eq_ignore_ascii_case("localhost") {
            return Addr::Bound(vec![Address::new(SocketAddr::from(([127, 0, 0, 1], port)))]);
        }
        Addr::Failed(format!(
            "cannot resolve host {host}: only IP addresses are resolved here"
        ))
    }
}

/// A namer over a fixed service table: the first `segments` elements of a path name a
/// service, the rest is the residual. A path naming no service is `Neg`; a service
/// listed with no addresses is bound and empty. This is the "catalog" of the
/// command-line dtab tools and a convenient namer for tests.
#[derive(Clone, Debug)]
pub struct StaticNamer {
    prefix: Path,
    segments: usize,
    services: BTreeMap<Path, Vec<Address>>,
}

impl StaticNamer {
    /// A namer mounted at `prefix` (e.g. `/#/io.l5d.fs`) whose service names have
    /// `segments` elements.
    pub fn new(prefix: Path, segments: usize, services: BTreeMap<Path, Vec<Address>>) -> Self {
        StaticNamer {
            prefix,
            segments,
            services,
        }
    }

    /// Where this namer is mounted.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }
}

impl Namer for StaticNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        if path.len() < self.segments {
            return Activity::Ok(NameTree::Neg);
        }
        let service = path.take(self.segments);
        match self.services.get(&service) {
            None => Activity::Ok(NameTree::Neg),
            Some(addrs) => Activity::Ok(NameTree::Leaf(Name::Bound(Bound {
                id: self.prefix.concat(&service),
                residual: path.drop(self.segments),
                addr: Addr::Bound(addrs.clone()),
            }))),
        }
    }
}
