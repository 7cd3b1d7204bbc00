//! The system namer: everything under `/$/`, always available.
//!
//! `/$/inet` and `/$/fixedinet` bind host and port, `/$/nil` and `/$/fail` are the empty
//! and failing names, and `/$/<class>/...` reaches one of Linkerd's built-in namer
//! classes. Finagle loads `<class>` reflectively; here the set is fixed, and any other
//! class is the same `Unknown namer` error Linkerd gives.

use std::sync::Arc;

use super::addr::{Addr, Bound, Name};
use super::namer::{Activity, LiteralResolver, NamingError, Resolve};
use super::path::Path;
use super::tree::NameTree;

/// The class names `/$/<class>` accepts, besides `inet`, `fixedinet`, `nil` and `fail`.
pub const SYSTEM_NAMER_CLASSES: &[&str] = &[
    "io.buoyant.rinet",
    "io.buoyant.hostportPfx",
    "io.buoyant.porthostPfx",
    "io.buoyant.http.anyMethod",
    "io.buoyant.http.anyMethodPfx",
    "io.buoyant.http.anyHost",
    "io.buoyant.http.anyHostPfx",
    "io.buoyant.http.subdomainOf",
    "io.buoyant.http.subdomainOfPfx",
    "io.buoyant.http.domainToPath",
    "io.buoyant.http.domainToPathPfx",
];

/// The `/$/` namer.
#[derive(Clone)]
pub struct SystemNamer {
    resolver: Arc<dyn Resolve>,
}

impl Default for SystemNamer {
    fn default() -> Self {
        SystemNamer::new(Arc::new(LiteralResolver))
    }
}

impl std::fmt::Debug for SystemNamer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemNamer")
    }
}

/// Java's `Integer.parseInt`: optional sign, decimal digits, fits in an `i32`.
fn parse_java_int(s: &str) -> Option<i32> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i32>().ok()
}

fn elem(path: &Path, i: usize) -> Option<&str> {
    path.elem_str(i)
}

/// Service-name-like port labels: `[a-z0-9][-a-z0-9]*[a-z0-9]?`, at most 63 characters.
fn is_port_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && b.len() <= 63 && ok(&b[0]) && b[1..].iter().all(|c| ok(c) || *c == b'-')
}

fn leaf(path: Path) -> Activity<NameTree<Name>> {
    Activity::Ok(NameTree::Leaf(Name::Path(path)))
}

fn neg() -> Activity<NameTree<Name>> {
    Activity::Ok(NameTree::Neg)
}

impl SystemNamer {
    /// A system namer that resolves `/$/inet` hosts with `resolver`.
    pub fn new(resolver: Arc<dyn Resolve>) -> Self {
        SystemNamer { resolver }
    }

    /// Looks up a whole path (starting with `/$`); anything else is `Neg`.
    pub fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        if elem(path, 0) != Some("$") || path.len() < 2 {
            return neg();
        }
        let kind = elem(path, 1);
        if let Some(kind @ ("inet" | "fixedinet")) = kind
            && let Some(bound) = self.inet(kind, &path.drop(2))
        {
            return bound;
        }
        match kind {
            Some("fail") => return Activity::Ok(NameTree::Fail),
            Some("nil") => return Activity::Ok(NameTree::Empty),
            _ => {}
        }
        let rest = path.drop(2);
        let Some(class) = kind.filter(|k| SYSTEM_NAMER_CLASSES.contains(k)) else {
            let class = String::from_utf8_lossy(&path.elems()[1]).into_owned();
            return Activity::Failed(NamingError::UnknownNamer {
                class,
                path: path.show(),
            });
        };
        if rest.is_empty() {
            return neg();
        }
        match class {
            "io.buoyant.rinet" => self.rinet(&rest),
            "io.buoyant.hostportPfx" => host_port_pfx(&rest, false),
            "io.buoyant.porthostPfx" => host_port_pfx(&rest, true),
            "io.buoyant.http.anyMethod" => any_method(Path::empty(), &rest),
            "io.buoyant.http.anyMethodPfx" => with_pfx(&rest, any_method),
            "io.buoyant.http.anyHost" => any_host(Path::empty(), &rest),
            "io.buoyant.http.anyHostPfx" => with_pfx(&rest, any_host),
            "io.buoyant.http.subdomainOf" => subdomain_of(&rest, false),
            "io.buoyant.http.subdomainOfPfx" => subdomain_of(&rest, true),
            "io.buoyant.http.domainToPath" => domain_to_path(Path::empty(), &rest),
            "io.buoyant.http.domainToPathPfx" => with_pfx(&rest, domain_to_path),
            _ => neg(),
        }
    }

    /// `inet`/`fixedinet` forms: `<host>/<port>/rest`, or (inet only) `<port>/rest`.
    fn inet(&self, kind: &str, rest: &Path) -> Option<Activity<NameTree<Name>>> {
        if let (Some(host), Some(port)) = (elem(rest, 0), elem(rest, 1).and_then(parse_java_int)) {
            let id = Path::from_strs(["$", kind, host, &port.to_string()]);
            return Some(self.bind_inet(id, host, port, rest.drop(2)));
        }
        if kind == "inet"
            && let Some(port) = elem(rest, 0).and_then(parse_java_int)
        {
            let id = Path::from_strs(["$", kind, &port.to_string()]);
            return Some(self.bind_inet(id, "0.0.0.0", port, rest.drop(1)));
        }
        None
    }

    fn bind_inet(
        &self,
        id: Path,
        host: &str,
        port: i32,
        residual: Path,
    ) -> Activity<NameTree<Name>> {
        let addr = match u16::try_from(port) {
            Ok(port) => self.resolver.resolve(host, port),
            Err(_) => Addr::Failed(format!("port out of range:{port}")),
        };
        Activity::Ok(NameTree::Leaf(Name::Bound(Bound { id, residual, addr })))
    }

    /// `io.buoyant.rinet/<port>/<host>/rest`: inet with the arguments swapped.
    fn rinet(&self, rest: &Path) -> Activity<NameTree<Name>> {
        let (Some(port), Some(host)) = (elem(rest, 0), elem(rest, 1)) else {
            return neg();
        };
        let Some(port_num) = parse_java_int(port) else {
            return neg();
        };
        let id = Path::from_strs(["$", "io.buoyant.rinet", port, host]);
        self.bind_inet(id, host, port_num, rest.drop(2))
    }
}

/// Runs a rewriting namer that takes a `<pfx>` first element.
fn with_pfx(
    rest: &Path,
    f: fn(Path, &Path) -> Activity<NameTree<Name>>,
) -> Activity<NameTree<Name>> {
    if rest.len() < 2 {
        return neg();
    }
    f(rest.take(1), &rest.drop(1))
}

/// `hostportPfx/<pfx>/<host>:<port>/rest` → `/<pfx>/<host>/<port>/rest` (swapped for porthost).
fn host_port_pfx(rest: &Path, port_first: bool) -> Activity<NameTree<Name>> {
    let (Some(pfx), Some(hostport)) = (elem(rest, 0), elem(rest, 1)) else {
        return neg();
    };
    let mut parts = hostport.split(':');
    let (Some(host), Some(port), None) = (parts.next(), parts.next(), parts.next()) else {
        return neg();
    };
    if host.is_empty() || !is_port_label(port) {
        return neg();
    }
    let (a, b) = if port_first {
        (port, host)
    } else {
        (host, port)
    };
    leaf(Path::from_strs([pfx, a, b]).concat(&rest.drop(2)))
}

/// `anyMethod/<METHOD>/rest` → `<pfx>/rest` when the method is upper-case letters.
fn any_method(pfx: Path, rest: &Path) -> Activity<NameTree<Name>> {
    match elem(rest, 0) {
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            leaf(pfx.concat(&rest.drop(1)))
        }
        _ => neg(),
    }
}

/// `anyHost/<host>/rest` → `<pfx>/rest` when the host looks like a host name.
fn any_host(pfx: Path, rest: &Path) -> Activity<NameTree<Name>> {
    let host_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'_' | b'-');
    match elem(rest, 0) {
        Some(h) if !h.is_empty() && h.bytes().all(host_char) => leaf(pfx.concat(&rest.drop(1))),
        _ => neg(),
    }
}

/// `subdomainOf/<domain>/<host>/rest` → `/<sub>/rest`; the Pfx form takes `<domain>/<pfx>`.
fn subdomain_of(rest: &Path, with_pfx: bool) -> Activity<NameTree<Name>> {
    let (pfx, host_at) = if with_pfx {
        (rest.drop(1).take(1), 2)
    } else {
        (Path::empty(), 1)
    };
    if with_pfx && pfx.is_empty() {
        return neg();
    }
    let (Some(domain), Some(host)) = (elem(rest, 0), elem(rest, host_at)) else {
        return neg();
    };
    let host = host.split_once(':').map_or(host, |(h, _)| h);
    let suffix = format!(".{domain}");
    match host.strip_suffix(&suffix) {
        Some(sub) if !sub.is_empty() => leaf(
            pfx.concat(&Path::from_strs([sub]))
                .concat(&rest.drop(host_at + 1)),
        ),
        _ => neg(),
    }
}

/// `domainToPath/<a.b.c>/rest` → `<pfx>/c/b/a/rest`.
fn domain_to_path(pfx: Path, rest: &Path) -> Activity<NameTree<Name>> {
    match elem(rest, 0) {
        Some(host) if host.split('.').any(|l| !l.is_empty()) => leaf(
            pfx.concat(&Path::from_strs(host.split('.').rev()))
                .concat(&rest.drop(1)),
        ),
        _ => neg(),
    }
}
