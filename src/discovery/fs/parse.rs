//! The `io.l5d.fs` file format: one endpoint per line, parsed without any I/O.
//!
//! A service file lists `host port` lines, each optionally followed by `* weight`;
//! blank lines and lines starting with `#` are ignored. Parsing is pure so that every
//! malformed input can be tested directly and reported with its line number: the
//! watcher keeps a file's last good endpoints when its new contents do not parse.
//!
//! Hosts are IP literals (IPv6 optionally in brackets) or `localhost` (127.0.0.1).
//! Other host names are refused rather than resolved: parsing stays free of I/O, a
//! file's meaning never changes behind the watcher's back, and DNS-backed names are
//! what `/$/inet/<host>/<port>` is for.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::naming::Address;

/// Why a line of a service file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct FsParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub kind: FsParseErrorKind,
}

/// The ways a line can be malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsParseErrorKind {
    /// The line has a host but no port.
    #[error("expected `host port [* weight]`, found only `{0}`")]
    MissingPort(String),
    /// The host is neither an IP address nor `localhost`.
    #[error(
        "bad host `{0}`: expected an IP address or localhost (io.l5d.fs does not resolve host names)"
    )]
    BadHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("bad port `{0}`: expected a number from 1 to 65535")]
    BadPort(String),
    /// `*` is not followed by a weight.
    #[error("`*` must be followed by a weight")]
    MissingWeight,
    /// The weight is not a finite, non-negative number.
    #[error("bad weight `{0}`: expected a finite number >= 0")]
    BadWeight(String),
    /// Something follows the endpoint (and its weight).
    #[error("unexpected `{0}` after the endpoint; expected `host port [* weight]`")]
    ExtraTokens(String),
    /// The bytes on this line are not UTF-8.
    #[error("the file is not valid UTF-8")]
    NotUtf8,
}

/// Parses a service file's bytes; invalid UTF-8 is reported at the line it occurs on.
pub fn parse_endpoint_bytes(bytes: &[u8]) -> Result<Vec<Address>, FsParseError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_endpoints(text),
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            // Report a syntax error on an earlier line first, as a reader would see it.
            let before = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let good_lines =
                std::str::from_utf8(valid.get(..before).unwrap_or_default()).map_err(|_| {
                    FsParseError {
                        line: 1,
                        kind: FsParseErrorKind::NotUtf8,
                    }
                })?;
            parse_endpoints(good_lines)?;
            Err(FsParseError {
                line: valid.iter().filter(|b| **b == b'\n').count() + 1,
                kind: FsParseErrorKind::NotUtf8,
            })
        }
    }
}

/// Parses a service file: one `host port [* weight]` endpoint per line, blank lines and
/// `#` comment lines ignored. The first malformed line fails the whole file.
pub fn parse_endpoints(text: &str) -> Result<Vec<Address>, FsParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let address = parse_line(line).map_err(|kind| FsParseError { line: i + 1, kind })?;
        out.push(address);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Address, FsParseErrorKind> {
    let mut tokens = line.split_whitespace();
    let host = tokens.next().unwrap_or_default();
    let Some(port) = tokens.next() else {
        return Err(FsParseErrorKind::MissingPort(host.to_string()));
    };
    let ip = parse_host(host).ok_or_else(|| FsParseErrorKind::BadHost(host.to_string()))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| FsParseErrorKind::BadPort(port.to_string()))?;
    let mut address = Address::new(SocketAddr::new(ip, port));
    if let Some(star) = tokens.next() {
        let Some(attached) = star.strip_prefix('*') else {
            return Err(FsParseErrorKind::ExtraTokens(rest(star, tokens)));
        };
        let weight = if attached.is_empty() {
            tokens.next().ok_or(FsParseErrorKind::MissingWeight)?
        } else {
            attached
        };
        address.weight = parse_weight(weight)?;
    }
    match tokens.next() {
        None => Ok(address),
        Some(extra) => Err(FsParseErrorKind::ExtraTokens(rest(extra, tokens))),
    }
}

/// `first` and the tokens after it, joined by single spaces.
fn rest<'a>(first: &'a str, tokens: impl Iterator<Item = &'a str>) -> String {
    std::iter::once(first)
        .chain(tokens)
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_host(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip);
    }
    host.eq_ignore_ascii_case("localhost")
        .then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn parse_weight(w: &str) -> Result<f64, FsParseErrorKind> {
    w.parse::<f64>()
        .ok()
        .filter(|w| w.is_finite() && *w >= 0.0)
        .ok_or_else(|| FsParseErrorKind::BadWeight(w.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> Address {
        Address::new(s.parse().unwrap())
    }

    fn err(text: &str) -> FsParseError {
        parse_endpoints(text).unwrap_err()
    }

    #[test]
    fn endpoints_weights_comments_and_blank_lines() {
        let text = "# web servers\n\n127.0.0.1 8080\n  127.0.1.10 8080 * 2.5  \r\n\t# off: 10.0.0.1 80\n[::1] 9000 *0.5\n::2 81\nLocalHost 7\n";
        assert_eq!(
            parse_endpoints(text).unwrap(),
            vec![
                addr("127.0.0.1:8080"),
                addr("127.0.1.10:8080").with_weight(2.5),
                addr("[::1]:9000").with_weight(0.5),
                addr("[::2]:81"),
                addr("127.0.0.1:7"),
            ]
        );
    }

    #[test]
    fn empty_and_comment_only_files_have_no_endpoints() {
        assert_eq!(parse_endpoints("").unwrap(), vec![]);
        assert_eq!(parse_endpoints("\n  \n# nothing\n").unwrap(), vec![]);
    }

    #[test]
    fn malformed_lines_name_the_line_and_the_reason() {
        assert_eq!(
            err("127.0.0.1 8080\n127.0.0.1 http\n"),
            FsParseError {
                line: 2,
                kind: FsParseErrorKind::BadPort("http".into())
            }
        );
        assert_eq!(
            err("127.0.0.1 65536").kind,
            FsParseErrorKind::BadPort("65536".into())
        );
        assert_eq!(
            err("127.0.0.1 0").kind,
            FsParseErrorKind::BadPort("0".into())
        );
        assert_eq!(
            err("127.0.0.1 -1").kind,
            FsParseErrorKind::BadPort("-1".into())
        );
        assert_eq!(
            err("\n\n127.0.0.1").to_string(),
            "line 3: expected `host port [* weight]`, found only `127.0.0.1`"
        );
        assert_eq!(
            err("127.0.0.1 80 * x").kind,
            FsParseErrorKind::BadWeight("x".into())
        );
        for w in ["-1", "NaN", "inf", "1e400"] {
            assert_eq!(
                err(&format!("127.0.0.1 80 * {w}")).kind,
                FsParseErrorKind::BadWeight(w.into())
            );
        }
        assert_eq!(err("127.0.0.1 80 *").kind, FsParseErrorKind::MissingWeight);
        assert_eq!(
            err("127.0.0.1 80 extra tokens").to_string(),
            "line 1: unexpected `extra tokens` after the endpoint; expected `host port [* weight]`"
        );
        assert_eq!(
            err("127.0.0.1 80 * 2 3").kind,
            FsParseErrorKind::ExtraTokens("3".into())
        );
        assert_eq!(
            err("127.0.0.1 80 # comment").kind,
            FsParseErrorKind::ExtraTokens("# comment".into())
        );
        assert_eq!(
            err("example.com 80").to_string(),
            "line 1: bad host `example.com`: expected an IP address or localhost (io.l5d.fs does not resolve host names)"
        );
        assert_eq!(
            err("127.0.0.1:80 80").kind,
            FsParseErrorKind::BadHost("127.0.0.1:80".into())
        );
    }

    #[test]
    fn invalid_utf8_is_reported_at_its_line_after_earlier_errors() {
        assert_eq!(
            parse_endpoint_bytes(b"127.0.0.1 80\n10.0.0.1 \xff\n").unwrap_err(),
            FsParseError {
                line: 2,
                kind: FsParseErrorKind::NotUtf8
            }
        );
        assert_eq!(
            parse_endpoint_bytes(b"bad\n\xff").unwrap_err().line,
            1,
            "the earlier syntax error wins"
        );
        assert_eq!(
            parse_endpoint_bytes(b"127.0.0.1 80\n").unwrap(),
            vec![addr("127.0.0.1:80")]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse_endpoints(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_endpoint_bytes(&bytes);
        }

        #[test]
        fn endpoint_like_lines_never_panic(
            lines in proptest::collection::vec(
                "[ \t]*([0-9.:\\[\\]a-f]{0,20}|localhost)[ \t]+[-+0-9]{0,6}([ \t]*\\*[ \t]*[-+0-9.eEinfNa]{0,8})?[ \t#x]*",
                0..8,
            )
        ) {
            let text = lines.join("\n");
            if let Ok(addrs) = parse_endpoints(&text) {
                prop_assert!(addrs.iter().all(|a| a.weight.is_finite() && a.weight >= 0.0 && a.addr.port() != 0));
            }
        }

        #[test]
        fn well_formed_files_round_trip(
            eps in proptest::collection::vec((any::<[u8; 4]>(), 1u16.., proptest::option::of(0.0f64..1e6)), 0..10)
        ) {
            let text: String = eps
                .iter()
                .map(|(ip, port, w)| match w {
                    Some(w) => format!("{} {port} * {w}\n", Ipv4Addr::from(*ip)),
                    None => format!("{} {port}\n", Ipv4Addr::from(*ip)),
                })
                .collect();
            let parsed = parse_endpoints(&text).unwrap();
            prop_assert_eq!(parsed.len(), eps.len());
            for (a, (ip, port, w)) in parsed.iter().zip(&eps) {
                prop_assert_eq!(a.addr, SocketAddr::from((*ip, *port)));
                prop_assert_eq!(a.weight, w.unwrap_or(1.0));
            }
        }
    }
}
