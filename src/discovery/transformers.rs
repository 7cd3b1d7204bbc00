//! Linkerd's generic transformers (`io.l5d.port`, `io.l5d.localhost`,
//! `io.l5d.specificHost`, `io.l5d.replace`, `io.l5d.const`) and the wrapper that applies
//! a namer's own `transformers:` to what it binds.
//!
//! Each rewritten leaf's id gets the transformer's prefix under `/%`
//! (`/%/io.l5d.port/4141/#/io.l5d.fs/web`), so client ids, metrics and `l5d-dst-client`
//! say which transformers were involved.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Mutex};

use super::k8s::{Backends, DaemonsetTransformer, LocalnodeTransformer};
use crate::config;
use crate::naming::{
    Activity, Addr, Bound, Dtab, Name, NameTree, Namer, Namers, Path, Transformer, map_leaves,
    transform_all,
};

fn prefixed(prefix: &Path, extra: Option<&str>, id: &Path) -> Path {
    let mut p = Path::from_strs(["%"]).concat(prefix);
    if let Some(e) = extra {
        p = p.concat(&Path::from_strs([e]));
    }
    p.concat(id)
}

fn with_addrs(
    b: &Bound,
    id: Path,
    f: impl Fn(&[crate::naming::Address]) -> Vec<crate::naming::Address>,
) -> Bound {
    let addr = match &b.addr {
        Addr::Bound(a) => Addr::Bound(f(a)),
        other => other.clone(),
    };
    Bound {
        id,
        residual: b.residual.clone(),
        addr,
    }
}

/// `io.l5d.port`: every address gets `port`.
pub struct PortTransformer {
    prefix: Path,
    port: u16,
}

impl Transformer for PortTransformer {
    fn name(&self) -> &str {
        "PortTransformer"
    }
    fn transform_leaf(&self, b: &Bound) -> NameTree<Bound> {
        let id = prefixed(&self.prefix, Some(&self.port.to_string()), &b.id);
        let port = self.port;
        NameTree::Leaf(with_addrs(b, id, |a| {
            a.iter()
                .map(|x| {
                    let mut y = x.clone();
                    y.addr.set_port(port);
                    y
                })
                .collect()
        }))
    }
}

/// Keeps only the addresses in `keep` (a host's addresses, or this machine's).
pub struct FilterTransformer {
    name: &'static str,
    prefix: Path,
    extra: Option<String>,
    keep: Box<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl Transformer for FilterTransformer {
    fn name(&self) -> &str {
        self.name
    }
    fn transform_leaf(&self, b: &Bound) -> NameTree<Bound> {
        let id = prefixed(&self.prefix, self.extra.as_deref(), &b.id);
        NameTree::Leaf(with_addrs(b, id, |a| {
            a.iter()
                .filter(|x| (self.keep)(x.addr.ip()))
                .cloned()
                .collect()
        }))
    }
}

/// Whether `ip` belongs to this machine: loopback, or an address a socket can bind to.
fn is_local(ip: IpAddr, cache: &Mutex<HashMap<IpAddr, bool>>) -> bool {
    if ip.is_loopback() {
        return true;
    }
    if let Ok(c) = cache.lock()
        && let Some(&known) = c.get(&ip)
    {
        return known;
    }
    let local = UdpSocket::bind((ip, 0)).is_ok();
    if let Ok(mut c) = cache.lock() {
        c.insert(ip, local);
    }
    local
}

/// `io.l5d.replace` and `io.l5d.const`: the binding of a fixed path (through the system
/// namer, as Linkerd does), instead of each leaf or instead of the whole tree.
pub struct PathTransformer {
    name: &'static str,
    prefix: Path,
    path: Path,
    whole_tree: bool,
}

impl PathTransformer {
    fn bound(&self) -> NameTree<Bound> {
        match Namers::default().bind(&Dtab::empty(), &self.path) {
            Activity::Ok(tree) => map_leaves(&tree, &mut |b| {
                NameTree::Leaf(Bound {
                    id: prefixed(&self.prefix, None, &b.id),
                    ..b.clone()
                })
            }),
            _ => NameTree::Neg,
        }
    }
}

impl Transformer for PathTransformer {
    fn name(&self) -> &str {
        self.name
    }
    fn transform_leaf(&self, _: &Bound) -> NameTree<Bound> {
        self.bound()
    }
    fn transform(&self, tree: &NameTree<Bound>) -> NameTree<Bound> {
        if self.whole_tree {
            return self.bound().simplified();
        }
        map_leaves(tree, &mut |b| self.transform_leaf(b)).simplified()
    }
}

fn default_prefix(kind: &str, prefix: &Option<Path>) -> Path {
    prefix.clone().unwrap_or_else(|| Path::from_strs([kind]))
}

/// Builds a configured transformer; the Kubernetes ones get their API connection from
/// `k8s`.
pub fn build(t: &config::Transformer, k8s: &mut Backends) -> Result<Arc<dyn Transformer>, String> {
    Ok(match t {
        config::Transformer::Port(p) => Arc::new(PortTransformer {
            prefix: default_prefix("io.l5d.port", &p.prefix),
            port: p.port,
        }),
        config::Transformer::Localhost(p) => {
            let cache = Mutex::new(HashMap::new());
            Arc::new(FilterTransformer {
                name: "LocalhostTransformer",
                prefix: default_prefix("io.l5d.localhost", &p.prefix),
                extra: None,
                keep: Box::new(move |ip| is_local(ip, &cache)),
            })
        }
        config::Transformer::SpecificHost(h) => {
            let ips: Vec<IpAddr> = (h.host.as_str(), 0)
                .to_socket_addrs()
                .map_err(|e| format!("io.l5d.specificHost: cannot resolve {}: {e}", h.host))?
                .map(|a| a.ip())
                .collect();
            Arc::new(FilterTransformer {
                name: "SpecificHostTransformer",
                prefix: default_prefix("io.l5d.specificHost", &h.prefix),
                extra: Some(h.host.clone()),
                keep: Box::new(move |ip| ips.contains(&ip)),
            })
        }
        config::Transformer::Replace(p) => Arc::new(PathTransformer {
            name: "ReplaceTransformer",
            prefix: default_prefix("io.l5d.replace", &p.prefix),
            path: p.path.clone(),
            whole_tree: false,
        }),
        config::Transformer::Const(p) => Arc::new(PathTransformer {
            name: "ConstTransformer",
            prefix: default_prefix("io.l5d.const", &p.prefix),
            path: p.path.clone(),
            whole_tree: true,
        }),
        config::Transformer::K8sDaemonset(d) => Arc::new(DaemonsetTransformer::new(
            k8s.for_transformer(d.k8s_host.as_deref(), d.k8s_port)?,
            &d.namespace,
            &d.service,
            &d.port,
            d.host_network,
            d.prefix.clone(),
        )),
        config::Transformer::K8sLocalnode(l) => Arc::new(LocalnodeTransformer::from_env(
            l.host_network,
            l.prefix.clone(),
        )?),
    })
}

/// A namer whose bound results pass through its own transformers.
pub struct TransformingNamer {
    inner: Arc<dyn Namer>,
    transformers: Vec<Arc<dyn Transformer>>,
}

impl TransformingNamer {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Namer>, transformers: Vec<Arc<dyn Transformer>>) -> Self {
        TransformingNamer {
            inner,
            transformers,
        }
    }
}

impl Namer for TransformingNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        match self.inner.lookup(path) {
            Activity::Ok(tree) => {
                // Only bound leaves can be transformed; paths are bound later, elsewhere.
                let all_bound = tree.leaves().iter().all(|n| matches!(n, Name::Bound(_)));
                if !all_bound {
                    return Activity::Ok(tree);
                }
                let bound = tree.map(&mut |n| match n {
                    Name::Bound(b) => b.clone(),
                    Name::Path(p) => Bound::new(p.clone(), Addr::Neg),
                });
                let out = transform_all(bound, &self.transformers);
                Activity::Ok(out.map(&mut |b| Name::Bound(b.clone())))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Epoch;
    use crate::naming::Address;

    fn build(t: &config::Transformer) -> Result<Arc<dyn Transformer>, String> {
        super::build(t, &mut Backends::new(Epoch::new()))
    }

    fn leaf(port: u16) -> NameTree<Bound> {
        NameTree::Leaf(Bound::new(
            Path::read("/#/io.l5d.fs/web").unwrap(),
            Addr::Bound(vec![
                Address::new(([127, 0, 0, 1], port).into()),
                Address::new(([192, 0, 2, 7], port).into()),
            ]),
        ))
    }

    fn addrs(t: &NameTree<Bound>) -> Vec<String> {
        match &t.leaves()[0].addr {
            Addr::Bound(a) => a.iter().map(|x| x.addr.to_string()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn port_rewrites_ports_and_prefixes_the_id() {
        let t = build(&config::Transformer::Port(config::PortTransformer {
            port: 4141,
            prefix: None,
        }))
        .unwrap();
        let out = t.transform(&leaf(8080));
        assert_eq!(out.show(), "/%/io.l5d.port/4141/#/io.l5d.fs/web");
        assert_eq!(addrs(&out), ["127.0.0.1:4141", "192.0.2.7:4141"]);
    }

    #[test]
    fn localhost_and_specific_host_keep_matching_addresses() {
        let t = build(&config::Transformer::Localhost(config::PrefixOnly {
            prefix: None,
        }))
        .unwrap();
        let out = t.transform(&leaf(80));
        assert_eq!(out.show(), "/%/io.l5d.localhost/#/io.l5d.fs/web");
        assert_eq!(addrs(&out), ["127.0.0.1:80"]);
        let t = build(&config::Transformer::SpecificHost(
            config::SpecificHostTransformer {
                host: "192.0.2.7".into(),
                prefix: None,
            },
        ))
        .unwrap();
        let out = t.transform(&leaf(80));
        assert_eq!(
            out.show(),
            "/%/io.l5d.specificHost/192.0.2.7/#/io.l5d.fs/web"
        );
        assert_eq!(addrs(&out), ["192.0.2.7:80"]);
    }

    #[test]
    fn replace_and_const_bind_a_fixed_path() {
        let path = Path::read("/$/inet/127.0.0.1/4141").unwrap();
        let t = build(&config::Transformer::Replace(config::PathTransformer {
            path: path.clone(),
            prefix: None,
        }))
        .unwrap();
        assert_eq!(
            t.transform(&leaf(80)).show(),
            "/%/io.l5d.replace/$/inet/127.0.0.1/4141"
        );
        assert_eq!(t.transform(&NameTree::Neg), NameTree::Neg);
        let t = build(&config::Transformer::Const(config::PathTransformer {
            path,
            prefix: None,
        }))
        .unwrap();
        assert_eq!(
            t.transform(&NameTree::Neg).show(),
            "/%/io.l5d.const/$/inet/127.0.0.1/4141"
        );
    }
}
