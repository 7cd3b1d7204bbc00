//! Service catalogs: a what-if service directory for trying dtabs offline.
//!
//! A catalog is a YAML list of namers, tried in order, each mounted at a prefix with a
//! fixed table of services:
//!
//! ```yaml
//! - prefix: /#/io.l5d.fs
//!   segments: 1
//!   services:
//!     /web: ["127.0.1.1:8080", "127.0.1.2:8080 * 2"]
//!     /empty: []
//! ```
//!
//! A service listed with no addresses is bound but empty; a path naming no service is
//! `Neg`. `/$/inet` host names are resolved with the operating system's resolver.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path as FsPath;
use std::sync::Arc;

use serde::Deserialize;

use super::CliError;
use crate::naming::{Addr, Address, Namers, Path, Resolve, StaticNamer, SystemNamer};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct CatalogNamer {
    prefix: String,
    #[serde(default = "one")]
    segments: usize,
    #[serde(default)]
    services: BTreeMap<String, Vec<String>>,
}

fn one() -> usize {
    1
}

/// Resolves `/$/inet` hosts with the operating system (`/etc/hosts`, DNS).
struct OsResolver;

impl Resolve for OsResolver {
    fn resolve(&self, host: &str, port: u16) -> Addr {
        match (host, port).to_socket_addrs() {
            Ok(addrs) => Addr::Bound(addrs.map(Address::new).collect()),
            Err(e) => Addr::Failed(format!("cannot resolve {host}: {e}")),
        }
    }
}

/// Parses `ip:port` or `ip:port * weight`.
fn parse_address(s: &str) -> Result<Address, String> {
    let (addr, weight) = match s.split_once('*') {
        Some((a, w)) => {
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| format!("bad weight in {s:?}"))?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!("weight must be a non-negative number in {s:?}"));
            }
            (a.trim(), w)
        }
        None => (s.trim(), 1.0),
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an ip:port address"))?;
    Ok(Address::new(addr).with_weight(weight))
}

/// Loads a catalog file into namers (plus the system namer).
pub(super) fn load(file: &FsPath) -> Result<Namers, CliError> {
    let bad = |msg: String| CliError::BadInput(format!("catalog {}: {msg}", file.display()));
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let entries: Vec<CatalogNamer> =
        serde_saphyr::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut namers = Namers::new(SystemNamer::new(Arc::new(OsResolver)));
    for (i, entry) in entries.into_iter().enumerate() {
        let at = |msg: String| bad(format!("namer {} ({}): {msg}", i + 1, entry.prefix));
        let prefix = Path::read(&entry.prefix).map_err(|e| at(format!("bad prefix: {e}")))?;
        if prefix.is_empty() {
            return Err(at("the prefix must not be empty".into()));
        }
        let mut services = BTreeMap::new();
        for (name, addrs) in &entry.services {
            let service =
                Path::read(name).map_err(|e| at(format!("bad service name {name:?}: {e}")))?;
            if service.len() != entry.segments {
                return Err(at(format!(
                    "service {name} has {} segments, but the namer's names have {}",
                    service.len(),
                    entry.segments
                )));
            }
            let addrs = addrs
                .iter()
                .map(|a| parse_address(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(at)?;
            services.insert(service, addrs);
        }
        namers = namers.mount(
            prefix.clone(),
            Arc::new(StaticNamer::new(prefix, entry.segments, services)),
        );
    }
    Ok(namers)
}
