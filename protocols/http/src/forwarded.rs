//! The `Forwarded` header (RFC 7239) a server adds with `addForwardedHeader`, naming the
//! proxy (`by`) and the client (`for`) with Linkerd's labelers.

use std::net::SocketAddr;

/// How a node is named in `by=` or `for=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Labeler {
    /// The address without the port.
    Ip,
    /// The address and port.
    IpPort,
    /// An obfuscated identifier, random per connection.
    ConnectionRandom,
    /// An obfuscated identifier, random per request (the default).
    RequestRandom,
    /// The router's label, obfuscated (`_outgoing`).
    Router,
    /// A fixed obfuscated label.
    Static(String),
}

/// `addForwardedHeader` of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedSpec {
    /// Names this proxy.
    pub by: Labeler,
    /// Names the client.
    pub for_: Labeler,
}

/// A node in RFC 7239 syntax: IPv4 bare, with a port or IPv6 quoted (`"[::1]:80"`).
pub fn node(addr: SocketAddr, with_port: bool) -> String {
    match (addr, with_port) {
        (SocketAddr::V4(a), false) => a.ip().to_string(),
        (SocketAddr::V4(a), true) => format!("\"{a}\""),
        (SocketAddr::V6(a), false) => format!("\"[{}]\"", a.ip()),
        (SocketAddr::V6(a), true) => format!("\"[{}]:{}\"", a.ip(), a.port()),
    }
}

/// An obfuscated identifier (`_` + token characters), as RFC 7239 section 6.3 allows.
pub fn obfuscated(label: &str) -> String {
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("_{clean}")
}

impl Labeler {
    /// The label for `addr`; `connection` is this connection's random id, `random` makes
    /// a fresh one.
    pub fn label(
        &self,
        addr: SocketAddr,
        router: &str,
        connection: &str,
        random: &mut dyn FnMut() -> String,
    ) -> String {
        match self {
            Labeler::Ip => node(addr, false),
            Labeler::IpPort => node(addr, true),
            Labeler::ConnectionRandom => obfuscated(connection),
            Labeler::RequestRandom => obfuscated(&random()),
            Labeler::Router => obfuscated(router),
            Labeler::Static(label) => obfuscated(label),
        }
    }
}

/// One `Forwarded` element: `by=..;for=..;host=..;proto=http`. The host is quoted when
/// it is not a plain token (it usually carries a `:port`).
pub fn element(by: &str, for_: &str, host: Option<&str>) -> String {
    let mut e = format!("by={by};for={for_}");
    if let Some(h) = host {
        let token = h
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
        if token {
            e.push_str(&format!(";host={h}"));
        } else {
            e.push_str(&format!(
                ";host=\"{}\"",
                h.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
    }
    e.push_str(";proto=http");
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_follow_rfc_7239() {
        let v4: SocketAddr = "192.0.2.43:47011".parse().unwrap();
        let v6: SocketAddr = "[2001:db8:cafe::17]:4711".parse().unwrap();
        assert_eq!(node(v4, false), "192.0.2.43");
        assert_eq!(node(v4, true), "\"192.0.2.43:47011\"");
        assert_eq!(node(v6, false), "\"[2001:db8:cafe::17]\"");
        assert_eq!(node(v6, true), "\"[2001:db8:cafe::17]:4711\"");
        assert_eq!(obfuscated("out going"), "_out_going");
    }

    #[test]
    fn elements_name_both_ends_host_and_proto() {
        let a: SocketAddr = "127.0.0.1:4140".parse().unwrap();
        let mut n = 0;
        let mut random = || {
            n += 1;
            format!("r{n}")
        };
        let by = Labeler::Router.label(a, "outgoing", "c1", &mut random);
        let for_ = Labeler::RequestRandom.label(a, "outgoing", "c1", &mut random);
        assert_eq!(
            element(&by, &for_, Some("world:7778")),
            "by=_outgoing;for=_r1;host=\"world:7778\";proto=http"
        );
        assert_eq!(
            element("_x", "_y", Some("world")),
            "by=_x;for=_y;host=world;proto=http"
        );
        assert_eq!(
            Labeler::ConnectionRandom.label(a, "r", "abc", &mut random),
            "_abc"
        );
        assert_eq!(
            Labeler::Static("edge".into()).label(a, "r", "c", &mut random),
            "_edge"
        );
    }
}
