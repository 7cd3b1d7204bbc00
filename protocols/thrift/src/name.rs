//! Turning a Thrift request into the segments of its logical name (the Dst path), as the
//! Linkerd 1.x thrift router does: `dstPrefix ++ TTwitter dest ++ [/service] ++ [/method]`.
//!
//! The service comes from a multiplexed name (`TMultiplexedProtocol` writes
//! `service:method`) and is appended whether or not `thriftMethodInDst` is set; the method
//! only with `thriftMethodInDst`. The TTwitter `dest` (a Finagle path a Finagle client
//! puts in its request header) goes first. The router prepends its `dstPrefix`.

use crate::error::ThriftError;

/// Splits a multiplexed method name `service:method` into its parts. A name with no
/// colon, more than one, or an empty side is not multiplexed.
pub fn split_multiplexed(name: &str) -> Option<(&str, &str)> {
    let (service, method) = name.split_once(':')?;
    if service.is_empty() || method.is_empty() || method.contains(':') {
        return None;
    }
    Some((service, method))
}

/// The name segments a message name adds to the Dst: `[service]` or `[service, method]`
/// for a multiplexed name, `[]` or `[method]` otherwise (the method only with
/// `method_in_dst`). An empty method name adds nothing.
pub fn name_segments(name: &str, method_in_dst: bool) -> Vec<String> {
    match split_multiplexed(name) {
        Some((service, method)) if method_in_dst => vec![service.to_owned(), method.to_owned()],
        Some((service, _)) => vec![service.to_owned()],
        None if method_in_dst && !name.is_empty() => vec![name.to_owned()],
        None => Vec::new(),
    }
}

/// Reads a TTwitter `dest` (Finagle path syntax: `/a/b`, elements of letters, digits and
/// `_:.#$%-`, other bytes as `\xHH` escapes) into its segments. Empty text and `/` are
/// the empty path.
pub fn parse_dest(dest: &str) -> Result<Vec<String>, ThriftError> {
    let bad = |why| ThriftError::BadDest {
        dest: dest.to_owned(),
        why,
    };
    let text = dest.trim();
    if text.is_empty() || text == "/" {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(bad("a path starts with '/'"));
    };
    rest.split('/')
        .map(|elem| {
            if elem.is_empty() {
                return Err(bad("empty path element"));
            }
            let bytes = unescape(elem).ok_or_else(|| bad("invalid character or escape"))?;
            String::from_utf8(bytes).map_err(|_| bad("path element is not UTF-8"))
        })
        .collect()
}

fn showable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'#' | b'$' | b'%' | b'-')
}

/// Decodes `\xHH` escapes; `None` on a character that is neither showable nor escaped.
fn unescape(elem: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(elem.len());
    let mut bytes = elem.bytes();
    while let Some(b) = bytes.next() {
        if b == b'\\' {
            if bytes.next()? != b'x' {
                return None;
            }
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else if showable(b) {
            out.push(b);
        } else {
            return None;
        }
    }
    Some(out)
}

/// The Dst segments after the router's `dstPrefix`: the TTwitter dest (if the client
/// sent one), then [`name_segments`]. A dest that is not a path is an error (Finagle
/// fails such a request too).
pub fn dst_segments(
    ttwitter_dest: Option<&str>,
    name: &str,
    method_in_dst: bool,
) -> Result<Vec<String>, ThriftError> {
    let mut segments = match ttwitter_dest {
        Some(dest) => parse_dest(dest)?,
        None => Vec::new(),
    };
    segments.extend(name_segments(name, method_in_dst));
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(dest: Option<&str>, name: &str, method: bool) -> Vec<String> {
        dst_segments(dest, name, method).unwrap()
    }

    #[test]
    fn multiplexed_names() {
        assert_eq!(split_multiplexed("Calc:add"), Some(("Calc", "add")));
        assert_eq!(split_multiplexed("ping"), None);
        assert_eq!(split_multiplexed("a:b:c"), None);
        assert_eq!(split_multiplexed(":add"), None);
        assert_eq!(split_multiplexed("Calc:"), None);
    }

    #[test]
    fn linkerd_examples() {
        // plain client, method ping: /svc or /svc/ping
        assert!(segs(None, "ping", false).is_empty());
        assert_eq!(segs(None, "ping", true), ["ping"]);
        // multiplexed Calc:add: /svc/Calc or /svc/Calc/add
        assert_eq!(segs(None, "Calc:add", false), ["Calc"]);
        assert_eq!(segs(None, "Calc:add", true), ["Calc", "add"]);
        // TTwitter client with dest /s/users: /svc/s/users[/ping]
        assert_eq!(segs(Some("/s/users"), "ping", false), ["s", "users"]);
        assert_eq!(segs(Some("/s/users"), "ping", true), ["s", "users", "ping"]);
        assert_eq!(
            segs(Some("/s/users"), "Calc:add", true),
            ["s", "users", "Calc", "add"]
        );
    }

    #[test]
    fn odd_names_keep_to_non_empty_segments() {
        assert!(segs(None, "", true).is_empty());
        assert_eq!(segs(None, "a:b:c", true), ["a:b:c"]);
        assert!(segs(Some("/"), "ping", false).is_empty());
        assert!(segs(Some(""), "ping", false).is_empty());
    }

    #[test]
    fn dests_are_finagle_paths() {
        assert_eq!(
            parse_dest("/a/b.c/$/inet").unwrap(),
            ["a", "b.c", "$", "inet"]
        );
        assert_eq!(parse_dest("/a\\x2fb").unwrap(), ["a/b"]);
        assert_eq!(parse_dest(" /x ").unwrap(), ["x"]);
        for bad in [
            "a/b", "/a//b", "/a/", "/a b", "/a\\x2", "/a\\y20", "/\\xff", "/é",
        ] {
            assert!(
                matches!(parse_dest(bad), Err(ThriftError::BadDest { .. })),
                "{bad:?}"
            );
        }
        assert!(dst_segments(Some("nope"), "ping", true).is_err());
    }
}
