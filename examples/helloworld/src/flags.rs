//! Command-line flags, parsed the way Go's `flag` package does.
//!
//! Flags take one or two dashes and their value either after `=` or as the
//! next argument (`-addr=:7777`, `-addr :7777`, `--addr :7777`). The boolean
//! `-json` takes no separate argument: `-json` or `-json=true`. Parsing stops
//! at `--`; positional arguments are refused because the service takes none.
//! A problem yields a [`FlagError`], which `main` reports with the usage text
//! and exit code 2.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use plexus_examples::duration;

/// The longest latency a request may be delayed by; longer values are capped.
pub(crate) const MAX_LATENCY: Duration = Duration::from_secs(10);

/// The usage text printed on `-h` and on flag errors.
pub(crate) const USAGE: &str = "\
Usage of helloworld:
  -addr string
    \taddress to serve on, \":port\" for all interfaces or \"ip:port\" (default \":7777\")
  -failure-rate float
    \tshare of requests, between 0 and 1, that fail (HTTP 500, gRPC UNAVAILABLE, Thrift INTERNAL_ERROR)
  -json
    \tanswer {\"api_result\":\"...\"} as JSON instead of plain text
  -latency duration
    \thow long each request waits before answering, e.g. 500ms or 1.5s (at most 10s)
  -protocol string
    \tprotocol to serve: http; grpc (h2c); or thrift (service Greeter, framed transport, strict
    \tbinary protocol); grpc and thrift serve the HTTP/1.1 control endpoints on the same port,
    \twhose default is the same :7777 (default \"http\")
  -target string
    \tauthority (host or host:port) whose answer is appended to ours; in grpc mode, where helloworld.World is called;
    \tin thrift mode, the host:port where Greeter.greet is called (such as the node's Plexus thrift router)
  -text string
    \ttext to answer with; the TARGET_WORLD environment variable overrides it; in grpc mode
    \t\"hello\" (any case) serves helloworld.Hello, anything else helloworld.World (default \"Hello\")
";

/// The protocols `-protocol` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Plain HTTP/1.1.
    Http,
    /// gRPC over HTTP/2 without TLS (h2c, prior knowledge).
    Grpc,
    /// Thrift, framed transport and strict binary protocol.
    Thrift,
}

/// The service configuration taken from the command line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Flags {
    /// Where to listen.
    pub(crate) addr: SocketAddr,
    /// The text answered, before environment overrides.
    pub(crate) text: String,
    /// The authority of the service whose answer is appended, if any.
    pub(crate) target: Option<String>,
    /// How long each request waits before answering (already capped).
    pub(crate) latency: Duration,
    /// The share of requests that fail.
    pub(crate) failure_rate: f64,
    /// Whether to answer JSON instead of plain text.
    pub(crate) json: bool,
    /// The protocol to serve.
    pub(crate) protocol: Protocol,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7777)),
            text: "Hello".to_owned(),
            target: None,
            latency: Duration::ZERO,
            failure_rate: 0.0,
            json: false,
            protocol: Protocol::Http,
        }
    }
}

/// Why the command line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlagError {
    /// `-h` or `-help` was given: print the usage and exit.
    Help,
    /// Anything else, with the message to print before the usage.
    Invalid(String),
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::Help => f.write_str("help requested"),
            FlagError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for FlagError {}

/// Parses the arguments that follow the program name.
pub(crate) fn parse<I>(args: I) -> Result<Flags, FlagError>
where
    I: IntoIterator<Item = String>,
{
    let mut flags = Flags::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let Some(stripped) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
            return Err(invalid(format!("unexpected argument: {arg}")));
        };
        let stripped = stripped.strip_prefix('-').unwrap_or(stripped);
        if stripped.is_empty() || stripped.starts_with('-') || stripped.starts_with('=') {
            return Err(invalid(format!("bad flag syntax: {arg}")));
        }
        let (name, inline_value) = match stripped.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (stripped, None),
        };
        if name == "h" || name == "help" {
            return Err(FlagError::Help);
        }
        if name == "json" {
            flags.json = match inline_value {
                None => true,
                Some(value) => parse_bool(&value).ok_or_else(|| {
                    invalid(format!(
                        "invalid boolean value {value:?} for flag -json: parse error"
                    ))
                })?,
            };
            continue;
        }
        if !matches!(
            name,
            "addr" | "text" | "target" | "latency" | "failure-rate" | "protocol"
        ) {
            return Err(invalid(format!("flag provided but not defined: -{name}")));
        }
        let value = match inline_value {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| invalid(format!("flag needs an argument: -{name}")))?,
        };
        let bad_value = |reason: String| {
            invalid(format!(
                "invalid value {value:?} for flag -{name}: {reason}"
            ))
        };
        match name {
            "addr" => flags.addr = parse_addr(&value).map_err(bad_value)?,
            "text" => flags.text = value,
            "target" => {
                flags.target = if value.is_empty() {
                    None
                } else {
                    crate::upstream::Target::parse(&value).map_err(bad_value)?;
                    Some(value)
                }
            }
            "latency" => {
                flags.latency = duration::parse(&value)
                    .map_err(|e| bad_value(e.to_string()))?
                    .min(MAX_LATENCY)
            }
            "failure-rate" => flags.failure_rate = parse_failure_rate(&value).map_err(bad_value)?,
            _ => {
                flags.protocol = match value.as_str() {
                    "http" => Protocol::Http,
                    "grpc" => Protocol::Grpc,
                    "thrift" => Protocol::Thrift,
                    _ => return Err(bad_value("expected http, grpc or thrift".to_owned())),
                }
            }
        }
    }
    if let Some(extra) = args.next() {
        return Err(invalid(format!("unexpected argument: {extra}")));
    }
    Ok(flags)
}

/// Parses a failure rate: a finite number between 0 and 1 inclusive.
pub(crate) fn parse_failure_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        Ok(_) => Err("must be between 0 and 1".to_owned()),
        Err(_) => Err("not a number".to_owned()),
    }
}

fn invalid(message: String) -> FlagError {
    FlagError::Invalid(message)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `:port` (all IPv4 interfaces) or `ip:port`.
fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    if let Some(port) = value.strip_prefix(':') {
        let port = port
            .parse::<u16>()
            .map_err(|_| "expected :port or ip:port".to_owned())?;
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    value
        .parse::<SocketAddr>()
        .map_err(|_| "expected :port or ip:port".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults() {
        assert_eq!(parse(args(&[])), Ok(Flags::default()));
        assert_eq!(Flags::default().addr.to_string(), "0.0.0.0:7777");
    }

    #[test]
    fn both_value_styles_and_dash_counts() {
        let flags = parse(args(&[
            "-addr=127.0.0.1:8080",
            "--text",
            "Hi there",
            "-target",
            "world",
            "--latency=1.5s",
            "-failure-rate",
            "0.25",
            "-json",
            "-protocol=http",
        ]))
        .expect("valid flags");
        assert_eq!(flags.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(flags.text, "Hi there");
        assert_eq!(flags.target.as_deref(), Some("world"));
        assert_eq!(flags.latency, Duration::from_millis(1500));
        assert_eq!(flags.failure_rate, 0.25);
        assert!(flags.json);
        assert_eq!(flags.protocol, Protocol::Http);
    }

    #[test]
    fn port_only_address_listens_everywhere() {
        let flags = parse(args(&["-addr", ":9999"])).expect("valid");
        assert_eq!(flags.addr.to_string(), "0.0.0.0:9999");
    }

    #[test]
    fn json_takes_an_inline_boolean_only() {
        assert!(!parse(args(&["-json=false"])).expect("valid").json);
        assert!(parse(args(&["-json=1"])).expect("valid").json);
        assert!(parse(args(&["-json=maybe"])).is_err());
        // Like Go, a separate word after a boolean flag is not its value.
        assert!(parse(args(&["-json", "false"])).is_err());
    }

    #[test]
    fn latency_is_capped() {
        let flags = parse(args(&["-latency=1m"])).expect("valid");
        assert_eq!(flags.latency, MAX_LATENCY);
    }

    #[test]
    fn refusals() {
        for bad in [
            &["-nope"][..],
            &["-addr"],
            &["-addr=7777"],
            &["-latency=5"],
            &["-failure-rate=1.5"],
            &["-failure-rate=NaN"],
            &["-protocol=thrift2"],
            &["-protocol=Thrift"],
            &["---addr=:1"],
            &["-=x"],
            &["positional"],
            &["-target=a b"],
        ] {
            assert!(
                matches!(parse(args(bad)), Err(FlagError::Invalid(_))),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(parse(args(&["-h"])), Err(FlagError::Help));
        assert_eq!(parse(args(&["--help"])), Err(FlagError::Help));
    }

    #[test]
    fn grpc_is_recognised() {
        let flags = parse(args(&["-protocol", "grpc"])).expect("valid");
        assert_eq!(flags.protocol, Protocol::Grpc);
    }

    #[test]
    fn thrift_is_recognised() {
        let flags = parse(args(&["-protocol=thrift", "-target", "127.0.0.1:4114"])).expect("valid");
        assert_eq!(flags.protocol, Protocol::Thrift);
        assert_eq!(flags.addr.to_string(), "0.0.0.0:7777");
    }

    #[test]
    fn double_dash_ends_flags() {
        assert!(parse(args(&["--"])).is_ok());
        assert!(parse(args(&["--", "extra"])).is_err());
    }
}
