//! Code shared by the `helloworld` and `helloworld-client` binaries (and
//! their tests): the gRPC messages, clients and servers generated from
//! `proto/helloworld.proto` at build time, the hand-written Thrift encoding
//! of `proto/helloworld.thrift`, Go-style durations, and the way gRPC errors
//! are worded.

use std::error::Error as _;
use std::fmt::Write as _;

pub mod duration;
pub mod greeter;

/// The `helloworld` protobuf package: `GreetingRequest`, `GreetingResponse`,
/// the `hello_client`/`world_client` stubs and the
/// `hello_server`/`world_server` service wrappers.
pub mod proto {
    #![allow(missing_docs, unreachable_pub, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/helloworld.rs"));
}

/// Words a gRPC status for a person: `Unavailable (14): <message>`, followed
/// by the chain of underlying errors (a refused connection, a reset stream)
/// when the status carries one.
pub fn describe_status(status: &tonic::Status) -> String {
    let code = status.code();
    let mut text = format!("{code:?} ({})", code as i32);
    if !status.message().is_empty() {
        let _ = write!(text, ": {}", status.message());
    }
    if let Some(source) = status.source() {
        let chain = error_chain(source);
        if !text.contains(&chain) {
            let _ = write!(text, ": {chain}");
        }
    }
    text
}

/// An error and its sources joined with `: `, leaving out the texts that a
/// neighbour already includes (many errors repeat their source's text).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        match parts.last_mut() {
            Some(last) if text.contains(last.as_str()) => *last = text,
            Some(last) if last.contains(&text) => {}
            _ => parts.push(text),
        }
        next = error.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_name_their_code_and_message() {
        let status = tonic::Status::unavailable("world is down");
        assert_eq!(describe_status(&status), "Unavailable (14): world is down");
        assert_eq!(
            describe_status(&tonic::Status::new(tonic::Code::Internal, "")),
            "Internal (13)"
        );
    }

    /// An error whose text repeats its source's, as connect errors do.
    #[derive(Debug)]
    struct Wrapper(&'static str, std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.0, self.1)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn chains_skip_repeated_texts() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            error_chain(&Wrapper("tcp connect error", refused())),
            "tcp connect error: refused"
        );
        assert_eq!(error_chain(&refused()), "refused");
    }

    #[test]
    fn sources_are_appended_once() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let status = tonic::Status::from_error(Box::new(cause));
        let text = describe_status(&status);
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert!(text.starts_with("Unknown (2)"), "{text}");
    }
}
