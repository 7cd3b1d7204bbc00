//! Identifiers: how an HTTP request becomes a logical name.
//!
//! An identifier reads the request (after absolute-form normalisation) and returns the
//! name's segments, which the router prefixes with its `dstPrefix` (default `/svc`).
//! Requests that cannot be named are answered 400 by the router. The kinds and their
//! rules are Linkerd 1.x's.

use std::borrow::Cow;

use http::request::Parts;
use http::{Uri, Version};

/// A configured identifier.
#[derive(Clone, Debug, PartialEq)]
pub enum Identifier {
    /// `io.l5d.header.token`: one header's value as one segment (default header `Host`).
    HeaderToken {
        /// The header to read.
        header: String,
    },
    /// `io.l5d.methodAndHost`: `/1.1/<METHOD>/<host>[/<uri segments>]` (HTTP/1.0:
    /// `/1.0/<METHOD>[/<uri segments>]`).
    MethodAndHost {
        /// Append the URI path's segments.
        http_uri_in_dst: bool,
    },
    /// `io.l5d.path`: the first `segments` segments of the URI path.
    Path {
        /// How many segments name the service.
        segments: usize,
        /// Remove them from the URI that is forwarded.
        consume: bool,
    },
    /// `io.l5d.header`: a header whose value is a whole path (default `l5d-name`).
    Header {
        /// The header to read.
        header: String,
    },
    /// `io.l5d.static`: the same name for every request.
    Static {
        /// The path, as written in the configuration.
        path: String,
    },
    /// `io.l5d.header.path` (h2): the first `segments` segments of `:path`, or all of
    /// them (gRPC: `/helloworld.Hello/Greeting` with 1 segment is `/helloworld.Hello`).
    HeaderPath {
        /// How many leading segments; `None` for all.
        segments: Option<usize>,
    },
}

/// The name an identifier produced, before the router's `dstPrefix` is prepended. It
/// borrows from the request (and the identifier) where it can: a request is named on
/// every call, and the router copies the name once, into its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameSpec<'a> {
    /// Path segments, each one element.
    Segments(Vec<Cow<'a, str>>),
    /// Path text still to be parsed (from `io.l5d.header` or `io.l5d.static`).
    PathText(Cow<'a, str>),
}

/// What identification produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identified<'a> {
    /// The name.
    pub name: NameSpec<'a>,
    /// A new request URI, when the identifier consumes part of it.
    pub uri: Option<Uri>,
}

/// Why a request cannot be named (answered 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    /// The header the identifier reads is missing or empty.
    #[error("{0} header is absent")]
    MissingHeader(String),
    /// A header value is not text.
    #[error("{0} header is not valid text")]
    BadHeader(String),
    /// The URI path has fewer segments than the identifier needs.
    #[error("Unable to identify request: {wanted} path segments expected in {path}")]
    TooFewSegments {
        /// Segments needed.
        wanted: usize,
        /// The request path.
        path: String,
    },
    /// None of the router's identifiers could name the request.
    #[error("Unable to identify request")]
    Unidentified,
}

/// The URI path's non-empty segments.
fn path_segments(uri: &Uri) -> impl Iterator<Item = &str> {
    uri.path().split('/').filter(|s| !s.is_empty())
}

fn header_text<'a>(parts: &'a Parts, header: &str) -> Result<&'a str, IdentifyError> {
    // HTTP/2 carries the authority as a pseudo-header, which hyper puts in the URI;
    // HTTP/1.1 requests sent to an h2 name still have `Host`.
    if header == ":authority" {
        if let Some(authority) = parts.uri.authority() {
            return Ok(authority.as_str());
        }
        return header_text(parts, "host")
            .map_err(|_| IdentifyError::MissingHeader(":authority".to_string()));
    }
    // An HTTP/2 request's host is its authority (`Host`, if it came too, must name the
    // same, RFC 9113 section 8.3.1): h2 routers do not copy it into `Host`.
    if parts.version == Version::HTTP_2
        && header.eq_ignore_ascii_case("host")
        && let Some(authority) = parts.uri.authority()
    {
        return Ok(authority.as_str());
    }
    let value = parts
        .headers
        .get(header)
        .ok_or_else(|| IdentifyError::MissingHeader(header.to_string()))?;
    let text = value
        .to_str()
        .map_err(|_| IdentifyError::BadHeader(header.to_string()))?
        .trim();
    if text.is_empty() {
        return Err(IdentifyError::MissingHeader(header.to_string()));
    }
    Ok(text)
}

impl Identifier {
    /// `io.l5d.header.token` on `Host`, the default.
    pub fn default_http() -> Self {
        Identifier::HeaderToken {
            header: "host".into(),
        }
    }

    /// Names the request, or says why it cannot.
    pub fn identify<'a>(&'a self, parts: &'a Parts) -> Result<Identified<'a>, IdentifyError> {
        let plain = |name| Ok(Identified { name, uri: None });
        match self {
            Identifier::HeaderToken { header } => plain(NameSpec::Segments(vec![Cow::Borrowed(
                header_text(parts, header)?,
            )])),
            Identifier::MethodAndHost { http_uri_in_dst } => {
                let mut segs = Vec::new();
                if parts.version == Version::HTTP_10 {
                    segs.push(Cow::Borrowed("1.0"));
                    segs.push(Cow::Borrowed(parts.method.as_str()));
                } else {
                    let host = header_text(parts, "host")?;
                    segs.push(Cow::Borrowed("1.1"));
                    segs.push(Cow::Borrowed(parts.method.as_str()));
                    segs.push(if host.bytes().any(|b| b.is_ascii_uppercase()) {
                        Cow::Owned(host.to_ascii_lowercase())
                    } else {
                        Cow::Borrowed(host)
                    });
                }
                if *http_uri_in_dst {
                    segs.extend(path_segments(&parts.uri).map(Cow::Borrowed));
                }
                plain(NameSpec::Segments(segs))
            }
            Identifier::Path { segments, consume } => {
                let all: Vec<&str> = path_segments(&parts.uri).collect();
                if all.len() < *segments {
                    return Err(IdentifyError::TooFewSegments {
                        wanted: *segments,
                        path: parts.uri.path().to_string(),
                    });
                }
                let name = NameSpec::Segments(
                    all[..*segments]
                        .iter()
                        .copied()
                        .map(Cow::Borrowed)
                        .collect(),
                );
                let uri = if *consume {
                    Some(consumed_uri(&parts.uri, &all[*segments..]))
                } else {
                    None
                };
                Ok(Identified { name, uri })
            }
            Identifier::Header { header } => plain(NameSpec::PathText(Cow::Borrowed(header_text(
                parts, header,
            )?))),
            Identifier::Static { path } => plain(NameSpec::PathText(Cow::Borrowed(path))),
            Identifier::HeaderPath { segments } => {
                let name: Vec<Cow<'a, str>> = path_segments(&parts.uri)
                    .take(segments.unwrap_or(usize::MAX))
                    .map(Cow::Borrowed)
                    .collect();
                // Too few for the count asked, or none at all (`segments: 0` still
                // needs a path that names something).
                let n = segments.unwrap_or(0);
                if name.len() < n || (name.is_empty() && path_segments(&parts.uri).next().is_none())
                {
                    return Err(IdentifyError::TooFewSegments {
                        wanted: n.max(1),
                        path: parts.uri.path().to_string(),
                    });
                }
                plain(NameSpec::Segments(name))
            }
        }
    }
}

/// The URI without the consumed leading segments (query kept; a trailing slash kept).
fn consumed_uri(uri: &Uri, rest: &[&str]) -> Uri {
    let mut path = String::from("/");
    path.push_str(&rest.join("/"));
    if uri.path().ends_with('/') && !rest.is_empty() {
        path.push('/');
    }
    if let Some(q) = uri.query() {
        path.push('?');
        path.push_str(q);
    }
    path.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

/// Runs identifiers in order; the first that names the request wins. With none that
/// can, the first one's error is returned (it is the most specific for a one-identifier
/// router, the usual case).
pub fn identify_first<'a>(
    identifiers: &'a [Identifier],
    parts: &'a Parts,
) -> Result<Identified<'a>, IdentifyError> {
    let mut first_error = None;
    for id in identifiers {
        match id.identify(parts) {
            Ok(found) => return Ok(found),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(IdentifyError::Unidentified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(req: Request<()>) -> Parts {
        req.into_parts().0
    }

    fn segs(v: &[&str]) -> NameSpec<'static> {
        NameSpec::Segments(v.iter().map(|s| Cow::Owned(s.to_string())).collect())
    }

    #[test]
    fn h2_identifiers_read_authority_and_path_segments() {
        let p = parts(
            Request::builder()
                .uri("http://world:8080/helloworld.World/Greeting")
                .body(())
                .unwrap(),
        );
        let token = Identifier::HeaderToken {
            header: ":authority".into(),
        };
        assert_eq!(token.identify(&p).unwrap().name, segs(&["world:8080"]));
        let one = Identifier::HeaderPath { segments: Some(1) };
        assert_eq!(one.identify(&p).unwrap().name, segs(&["helloworld.World"]));
        let all = Identifier::HeaderPath { segments: None };
        assert_eq!(
            all.identify(&p).unwrap().name,
            segs(&["helloworld.World", "Greeting"])
        );
        let three = Identifier::HeaderPath { segments: Some(3) };
        assert!(three.identify(&p).is_err());
        // Without an authority in the URI, Host stands in.
        let p = parts(
            Request::builder()
                .uri("/x")
                .header("host", "hello")
                .body(())
                .unwrap(),
        );
        assert_eq!(token.identify(&p).unwrap().name, segs(&["hello"]));
        // An HTTP/2 request's host is its authority, whatever `Host` says.
        let p = parts(
            Request::builder()
                .version(Version::HTTP_2)
                .uri("http://world:8080/x")
                .header("host", "other")
                .body(())
                .unwrap(),
        );
        let host = Identifier::default_http();
        assert_eq!(host.identify(&p).unwrap().name, segs(&["world:8080"]));
        let method_and_host = Identifier::MethodAndHost {
            http_uri_in_dst: false,
        };
        assert_eq!(
            method_and_host.identify(&p).unwrap().name,
            segs(&["1.1", "GET", "world:8080"])
        );
    }

    #[test]
    fn header_token_uses_host_with_its_port() {
        let p = parts(
            Request::get("/x")
                .header("host", "world:7778")
                .body(())
                .unwrap(),
        );
        assert_eq!(
            Identifier::default_http().identify(&p).unwrap().name,
            segs(&["world:7778"])
        );
        let p = parts(Request::get("/x").body(()).unwrap());
        assert_eq!(
            Identifier::default_http().identify(&p),
            Err(IdentifyError::MissingHeader("host".into()))
        );
        let p = parts(Request::get("/x").header("host", "").body(()).unwrap());
        assert!(Identifier::default_http().identify(&p).is_err());
    }

    #[test]
    fn method_and_host() {
        let id = Identifier::MethodAndHost {
            http_uri_in_dst: true,
        };
        let p = parts(
            Request::post("/a/b")
                .header("host", "Web.Example")
                .body(())
                .unwrap(),
        );
        assert_eq!(
            id.identify(&p).unwrap().name,
            segs(&["1.1", "POST", "web.example", "a", "b"])
        );
        let p = parts(
            Request::get("/a")
                .version(Version::HTTP_10)
                .body(())
                .unwrap(),
        );
        assert_eq!(id.identify(&p).unwrap().name, segs(&["1.0", "GET", "a"]));
    }

    #[test]
    fn path_identifier_can_consume_segments() {
        let id = Identifier::Path {
            segments: 2,
            consume: true,
        };
        let p = parts(Request::get("/users/v1/42/?q=1").body(()).unwrap());
        let found = id.identify(&p).unwrap();
        assert_eq!(found.name, segs(&["users", "v1"]));
        assert_eq!(found.uri.unwrap(), "/42/?q=1");
        let p = parts(Request::get("/users").body(()).unwrap());
        assert!(matches!(
            id.identify(&p),
            Err(IdentifyError::TooFewSegments { wanted: 2, .. })
        ));
        let keep = Identifier::Path {
            segments: 1,
            consume: false,
        };
        assert_eq!(
            keep.identify(&parts(Request::get("/a/b").body(()).unwrap()))
                .unwrap()
                .uri,
            None
        );
    }

    #[test]
    fn header_and_static_give_path_text() {
        let id = Identifier::Header {
            header: "l5d-name".into(),
        };
        let p = parts(
            Request::get("/")
                .header("l5d-name", "/foo/bar")
                .body(())
                .unwrap(),
        );
        assert_eq!(
            id.identify(&p).unwrap().name,
            NameSpec::PathText("/foo/bar".into())
        );
        let id = Identifier::Static {
            path: "/web".into(),
        };
        assert_eq!(
            id.identify(&p).unwrap().name,
            NameSpec::PathText("/web".into())
        );
    }

    #[test]
    fn the_first_identifier_that_names_the_request_wins() {
        let ids = [
            Identifier::Header {
                header: "l5d-name".into(),
            },
            Identifier::default_http(),
        ];
        let p = parts(Request::get("/").header("host", "web").body(()).unwrap());
        assert_eq!(identify_first(&ids, &p).unwrap().name, segs(&["web"]));
        let p = parts(Request::get("/").body(()).unwrap());
        assert_eq!(
            identify_first(&ids, &p),
            Err(IdentifyError::MissingHeader("l5d-name".into()))
        );
    }
}
