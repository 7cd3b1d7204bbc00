//! Addresses and bound names: what binding produces for the proxy to send to.
//!
//! An [`Addr`] is a snapshot of a bound name's endpoint set (pending, bound, negative or
//! failed). Namers publish new snapshots as discovery changes; the binding engine only
//! ever reads the current one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use super::path::Path;

/// The weight key Finagle stores in an address's metadata.
pub const WEIGHT_META_KEY: &str = "endpoint_addr_weight";

/// One endpoint of a bound name.
#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative load-balancer weight (1.0 unless the namer says otherwise).
    pub weight: f64,
    /// Namer-specific metadata (node name, zone, ...), shown by the delegator.
    pub meta: BTreeMap<String, String>,
}

impl Address {
    /// An address with weight 1.0 and no metadata.
    pub fn new(addr: SocketAddr) -> Self {
        Address {
            addr,
            weight: 1.0,
            meta: BTreeMap::new(),
        }
    }

    /// The same address with another weight.
    pub fn with_weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if self.weight != 1.0 {
            write!(f, " * {}", self.weight)?;
        }
        Ok(())
    }
}

/// A snapshot of a bound name's endpoints.
#[derive(Clone, Debug, PartialEq)]
pub enum Addr {
    /// Discovery has not answered yet.
    Pending,
    /// The current endpoints (possibly none).
    Bound(Vec<Address>),
    /// The name does not exist (any more).
    Neg,
    /// Discovery failed; the message says why.
    Failed(String),
}

/// `pending`, `neg`, `failed: <why>`, `no endpoints`, or the endpoints separated by commas.
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Pending => f.write_str("pending"),
            Addr::Neg => f.write_str("neg"),
            Addr::Failed(m) => write!(f, "failed: {m}"),
            Addr::Bound(a) if a.is_empty() => f.write_str("no endpoints"),
            Addr::Bound(a) => {
                for (i, address) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{address}")?;
                }
                Ok(())
            }
        }
    }
}

/// A name that a namer has bound: the client id, the unused rest of the path, and the
/// current address snapshot. Bound names are equal when their ids are.
#[derive(Clone, Debug)]
pub struct Bound {
    /// The client id, e.g. `/#/io.l5d.fs/world` (metrics label, `l5d-dst-client`).
    pub id: Path,
    /// The path elements the namer did not use (`l5d-dst-residual`).
    pub residual: Path,
    /// The endpoints, as last published.
    pub addr: Addr,
}

impl Bound {
    /// A bound name with an empty residual.
    pub fn new(id: Path, addr: Addr) -> Self {
        Bound {
            id,
            residual: Path::empty(),
            addr,
        }
    }
}

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

/// A name in a tree being bound: still a path to look up, or already bound.
#[derive(Clone, Debug, PartialEq)]
pub enum Name {
    /// A path that must be looked up again (dtab first, then namers).
    Path(Path),
    /// A bound name; binding stops here.
    Bound(Bound),
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Path(p) => write!(f, "{p}"),
            Name::Bound(b) => write!(f, "{b}"),
        }
    }
}
