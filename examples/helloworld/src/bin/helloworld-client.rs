//! `helloworld-client`, the command-line client of the gRPC hello world:
//! calls `helloworld.Hello/Greeting` (or, with `-streaming`,
//! `helloworld.Hello/StreamGreeting`) at `host:port` over HTTP/2 without TLS
//! and prints each greeting on its own line. With `-protocol thrift` it calls
//! `Greeter.greet("plexus")` over framed strict binary Thrift instead (the
//! `helloworld -protocol thrift` service, or a Plexus thrift router in front
//! of one) and prints the answer.
//!
//! Pointed at a node's Plexus (`helloworld-client $NODE:4140`) it goes
//! through the mesh, which routes on the request path (or, with
//! `-authority`, on the `:authority` it sets). `-header` adds request
//! metadata, such as `l5d-dtab` for a per-request routing override. Any
//! failure is printed on stderr with its gRPC status (or Thrift
//! `TApplicationException`) and makes the exit status 1; a bad command line
//! exits 2.

use std::process::ExitCode;
use std::time::Duration;

use http::Uri;
use http::header::{HeaderName, HeaderValue};
use plexus_examples::greeter;
use plexus_examples::proto::GreetingRequest;
use plexus_examples::proto::hello_client::HelloClient;
use plexus_examples::{describe_status, duration, error_chain};
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};

/// The name `-protocol thrift` greets.
const THRIFT_NAME: &str = "plexus";

/// The usage text printed on `-h` and on flag errors.
const USAGE: &str = "\
Usage: helloworld-client [flags] host:port
Calls helloworld.Hello/Greeting at host:port (gRPC over HTTP/2 without TLS) and prints the answer.
  -protocol string
    \tgrpc, or thrift: call Greeter.greet(\"plexus\") over framed strict binary Thrift
    \tinstead (-streaming, -authority and -header are gRPC only) (default \"grpc\")
  -streaming
    \tcall helloworld.Hello/StreamGreeting instead and print every greeting streamed
  -authority string
    \tthe :authority to send (default: host:port)
  -header string
    \tmetadata to send, as \"name: value\"; may be repeated (short form -H)
  -timeout duration
    \thow long the whole call may take, e.g. 10s or 1m (default 1m)
";

/// The protocols `-protocol` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// gRPC over HTTP/2 without TLS.
    Grpc,
    /// Thrift, framed transport and strict binary protocol.
    Thrift,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    /// `host:port` to connect to.
    address: String,
    /// The protocol spoken.
    protocol: Protocol,
    /// Whether to call `StreamGreeting`.
    streaming: bool,
    /// The `:authority` to send instead of the address.
    authority: Option<String>,
    /// Request metadata.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The limit on the whole call.
    timeout: Duration,
}

/// Why the command line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ArgsError {
    /// `-h` or `-help`.
    Help,
    /// Anything else, with the message to print before the usage.
    Invalid(String),
}

/// Parses the arguments after the program name, Go `flag` style: one or two
/// dashes, values after `=` or as the next argument; flags may come before
/// or after the address.
fn parse_args<I>(args: I) -> Result<Options, ArgsError>
where
    I: IntoIterator<Item = String>,
{
    let invalid = |message: String| ArgsError::Invalid(message);
    let mut streaming = false;
    let mut authority = None;
    let mut headers = Vec::new();
    let mut timeout = Duration::from_secs(60);
    let mut protocol = Protocol::Grpc;
    let mut positional = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            positional.extend(args.by_ref());
            break;
        }
        let Some(stripped) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
            positional.push(arg);
            continue;
        };
        let stripped = stripped.strip_prefix('-').unwrap_or(stripped);
        if stripped.is_empty() || stripped.starts_with(['-', '=']) {
            return Err(invalid(format!("bad flag syntax: {arg}")));
        }
        let (name, inline_value) = match stripped.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (stripped, None),
        };
        match name {
            "h" | "help" => return Err(ArgsError::Help),
            "streaming" => {
                streaming = match inline_value.as_deref() {
                    None | Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
                    Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
                    Some(value) => {
                        return Err(invalid(format!(
                            "invalid boolean value {value:?} for flag -streaming"
                        )));
                    }
                };
                continue;
            }
            "authority" | "header" | "H" | "timeout" | "protocol" => {}
            _ => return Err(invalid(format!("flag provided but not defined: -{name}"))),
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
            "authority" => {
                if value.contains('@') || value.parse::<http::uri::Authority>().is_err() {
                    return Err(bad_value("expected host or host:port".to_owned()));
                }
                authority = Some(value);
            }
            "timeout" => {
                timeout = duration::parse(&value).map_err(|e| bad_value(e.to_string()))?;
                if timeout.is_zero() {
                    return Err(bad_value("must be more than 0".to_owned()));
                }
            }
            "protocol" => {
                protocol = match value.as_str() {
                    "grpc" => Protocol::Grpc,
                    "thrift" => Protocol::Thrift,
                    _ => return Err(bad_value("expected grpc or thrift".to_owned())),
                }
            }
            _ => headers.push(parse_header(&value).map_err(bad_value)?),
        }
    }
    let address = match positional.as_slice() {
        [address] => address.clone(),
        [] => return Err(invalid("missing host:port".to_owned())),
        [_, extra, ..] => return Err(invalid(format!("unexpected argument: {extra}"))),
    };
    if protocol == Protocol::Thrift {
        let grpc_only = [
            ("-streaming", streaming),
            ("-authority", authority.is_some()),
            ("-header", !headers.is_empty()),
        ];
        if let Some((flag, _)) = grpc_only.iter().find(|(_, given)| *given) {
            return Err(invalid(format!(
                "{flag} is for gRPC only; -protocol thrift calls plain Greeter.greet"
            )));
        }
    }
    Ok(Options {
        address,
        protocol,
        streaming,
        authority,
        headers,
        timeout,
    })
}

/// Parses `name: value` (or `name=value`) into a metadata entry.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .or_else(|| text.split_once('='))
        .ok_or_else(|| "expected \"name: value\"".to_owned())?;
    let name = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("invalid metadata name {:?}", name.trim()))?;
    if name.as_str().starts_with("grpc-") {
        return Err(format!("{name} is reserved by gRPC"));
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid metadata value {:?}", value.trim()))?;
    Ok((name, value))
}

/// `http://<address>/`, once `address` is checked to be `host:port`.
fn address_uri(address: &str) -> Result<Uri, String> {
    let uri: Uri = format!("http://{address}/")
        .parse()
        .map_err(|_| format!("invalid address {address:?}: expected host:port"))?;
    let parsed = uri.authority().map(|a| a.as_str());
    if parsed != Some(address) || address.contains('@') || uri.port_u16().is_none() {
        return Err(format!("invalid address {address:?}: expected host:port"));
    }
    Ok(uri)
}

/// The endpoint for `host:port`, sending `authority` when given.
fn endpoint(options: &Options) -> Result<Endpoint, String> {
    let uri = address_uri(&options.address)?;
    let mut endpoint = Endpoint::from(uri)
        .connect_timeout(options.timeout)
        .tcp_nodelay(true);
    if let Some(authority) = &options.authority {
        let origin: Uri = format!("http://{authority}")
            .parse()
            .map_err(|_| format!("invalid authority {authority:?}"))?;
        endpoint = endpoint.origin(origin);
    }
    Ok(endpoint)
}

/// Connects, calls `Greeter.greet`, and prints; returns the failure in
/// words.
async fn run_thrift(options: &Options) -> Result<(), String> {
    let address = &options.address;
    address_uri(address)?;
    let mut stream = tokio::net::TcpStream::connect(address.as_str())
        .await
        .map_err(|error| format!("cannot connect to {address}: {}", error_chain(&error)))?;
    // Best effort: a failure only costs latency.
    let _ = stream.set_nodelay(true);
    let answer = greeter::call_greet(&mut stream, 1, THRIFT_NAME)
        .await
        .map_err(|error| {
            let error = match error {
                greeter::CallError::Io(error) => {
                    format!("connection error: {}", error_chain(&error))
                }
                other => other.to_string(),
            };
            format!("{}.{} failed: {error}", greeter::SERVICE, greeter::GREET)
        })?;
    println!("{answer}");
    Ok(())
}

/// Connects, calls, and prints; returns the failure in words.
async fn run(options: &Options) -> Result<(), String> {
    if options.protocol == Protocol::Thrift {
        return run_thrift(options).await;
    }
    let endpoint = endpoint(options)?;
    let channel: Channel = endpoint.connect().await.map_err(|error| {
        format!(
            "cannot connect to {}: {}",
            options.address,
            error_chain(&error)
        )
    })?;
    let mut client = HelloClient::new(channel);
    let mut request = tonic::Request::new(GreetingRequest {});
    let mut metadata = http::HeaderMap::new();
    for (name, value) in &options.headers {
        metadata.append(name.clone(), value.clone());
    }
    *request.metadata_mut() = MetadataMap::from_headers(metadata);

    if !options.streaming {
        let response = client.greeting(request).await.map_err(|status| {
            format!(
                "helloworld.Hello/Greeting failed: {}",
                describe_status(&status)
            )
        })?;
        println!("{}", response.into_inner().message);
        return Ok(());
    }
    let method = "helloworld.Hello/StreamGreeting";
    let mut stream = client
        .stream_greeting(request)
        .await
        .map_err(|status| format!("{method} failed: {}", describe_status(&status)))?
        .into_inner();
    let mut received = 0usize;
    loop {
        match stream.message().await {
            Ok(Some(greeting)) => {
                println!("{}", greeting.message);
                received += 1;
            }
            Ok(None) => return Ok(()),
            Err(status) => {
                return Err(format!(
                    "{method} failed after {received} greetings: {}",
                    describe_status(&status)
                ));
            }
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(ArgsError::Help) => {
            eprint!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Invalid(message)) => {
            eprintln!("helloworld-client: {message}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("helloworld-client: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::time::timeout(options.timeout, run(&options))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", options.timeout)))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("helloworld-client: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn address_alone() {
        let options = parse_args(args(&["127.0.0.1:4140"])).expect("valid");
        assert_eq!(
            options,
            Options {
                address: "127.0.0.1:4140".to_owned(),
                protocol: Protocol::Grpc,
                streaming: false,
                authority: None,
                headers: Vec::new(),
                timeout: Duration::from_secs(60),
            }
        );
    }

    #[test]
    fn every_flag_in_both_styles() {
        let options = parse_args(args(&[
            "-streaming",
            "--authority",
            "hello",
            "node:4140",
            "-H",
            "L5d-Dtab: /svc/world => /svc/earth",
            "--header=l5d-ctx-foo=bar",
            "-timeout=5s",
        ]))
        .expect("valid");
        assert!(options.streaming);
        assert_eq!(options.address, "node:4140");
        assert_eq!(options.authority.as_deref(), Some("hello"));
        assert_eq!(options.timeout, Duration::from_secs(5));
        let headers: Vec<(&str, &str)> = options
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("?")))
            .collect();
        assert_eq!(
            headers,
            [
                ("l5d-dtab", "/svc/world => /svc/earth"),
                ("l5d-ctx-foo", "bar")
            ]
        );
        assert!(
            !parse_args(args(&["-streaming=false", "a:1"]))
                .expect("valid")
                .streaming
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            &[][..],
            &["a:1", "b:2"],
            &["-nope", "a:1"],
            &["-authority"],
            &["-authority=a b", "a:1"],
            &["-authority=u@a", "a:1"],
            &["-H", "no separator", "a:1"],
            &["-H", "bad name: x", "a:1"],
            &["-H", "grpc-timeout: 1S", "a:1"],
            &["-timeout=0", "a:1"],
            &["-timeout=soon", "a:1"],
            &["-streaming=maybe", "a:1"],
            &["---x", "a:1"],
            &["-protocol=http", "a:1"],
            &["-protocol", "thrift", "-streaming", "a:1"],
            &["-protocol=thrift", "-authority=hello", "a:1"],
            &["-protocol=thrift", "-H", "l5d-dtab: /a=>/b", "a:1"],
        ] {
            assert!(
                matches!(parse_args(args(bad)), Err(ArgsError::Invalid(_))),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(parse_args(args(&["-h"])), Err(ArgsError::Help));
    }

    #[test]
    fn thrift_takes_the_address_and_timeout() {
        let options =
            parse_args(args(&["a:1", "--protocol", "thrift", "-timeout=2s"])).expect("valid");
        assert_eq!(options.protocol, Protocol::Thrift);
        assert_eq!(options.address, "a:1");
        assert_eq!(options.timeout, Duration::from_secs(2));
        assert_eq!(
            parse_args(args(&["-protocol=grpc", "a:1"]))
                .expect("valid")
                .protocol,
            Protocol::Grpc
        );
    }

    #[test]
    fn addresses_need_a_port() {
        let options = |address: &str| Options {
            address: address.to_owned(),
            protocol: Protocol::Grpc,
            streaming: false,
            authority: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        assert!(endpoint(&options("127.0.0.1:4140")).is_ok());
        assert!(endpoint(&options("[::1]:4140")).is_ok());
        for bad in ["node", "http://node:1", "node:1/x", "a b:1", "u@node:1"] {
            assert!(endpoint(&options(bad)).is_err(), "{bad:?}");
        }
    }
}
