//! HTTP response classifiers (`service.responseClassifier`): success, failure, and
//! whether a failure may be retried.
//!
//! A classifier looks at one finished attempt: the request method and either the
//! response status or the kind of transport error. The five Linkerd 1.x kinds agree that
//! a 5XX response or an error is a failure and differ in which methods may be retried:
//!
//! | kind | retryable for |
//! |---|---|
//! | `io.l5d.http.nonRetryable5XX` (default) | nothing |
//! | `io.l5d.http.retryableRead5XX` | GET, HEAD, OPTIONS, TRACE |
//! | `io.l5d.http.retryableIdempotent5XX` | the above, PUT, DELETE |
//! | `io.l5d.http.retryableAll5XX` | the above, POST, PATCH |
//! | `io.l5d.http.allSuccessful` | nothing; every response is a success |
//!
//! Errors follow the same method rule: a connect failure, a connection lost after the
//! request was written, and a per-attempt timeout are retryable for the listed methods;
//! [`AttemptError::Other`] never is. Under `allSuccessful` responses of any status succeed
//! but errors still fail (Linkerd's code, where its table says "none").
//!
//! The HTTP router then applies two rules, in this order (Linkerd's `HeaderRetryable`
//! inside `NonRetryableChunked`):
//! 1. a non-retryable failure whose response carries `l5d-retryable: true` (a downstream
//!    Linkerd saying it never sent the request) becomes retryable;
//! 2. a request without a replayable body (chunked) is never retryable.
//!
//! Separately, [`is_requeueable`] says which errors the server certainly did not act on
//! (it never got the request, or refused it unprocessed); those are requeued by the
//! client whatever the method and the classifier.
//!
//! The gRPC kinds ([`GrpcRule`]) judge `grpc-status` when the response head carries it.
//! When it does not (a call that streams messages reports its status in the trailers),
//! the head is only provisionally a success: [`Classifier::classify_end`] gives the
//! final class from how the stream ended ([`StreamEnd`]), for the metrics and failure
//! accrual; retries are decided on the head alone.

use http::{Method, StatusCode};

/// How an attempt is counted and whether it may be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseClass {
    /// Counted in `success`.
    Success,
    /// Counted in `failures`.
    Failure {
        /// The retry policy may try the request again.
        retryable: bool,
    },
}

impl ResponseClass {
    /// A failure that may be retried.
    pub const RETRYABLE_FAILURE: ResponseClass = ResponseClass::Failure { retryable: true };
    /// A failure that may not be retried.
    pub const NON_RETRYABLE_FAILURE: ResponseClass = ResponseClass::Failure { retryable: false };

    /// Whether this is [`ResponseClass::Success`].
    pub fn is_success(self) -> bool {
        self == ResponseClass::Success
    }

    /// Whether this is a retryable failure.
    pub fn is_retryable(self) -> bool {
        self == ResponseClass::RETRYABLE_FAILURE
    }
}

/// How an attempt failed without a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptError {
    /// Not a byte of the request was written: the connection could not be made (refused,
    /// unreachable, connect timeout), or a pooled connection was found closed before
    /// writing. [Requeueable](is_requeueable).
    ConnectFailed,
    /// The connection failed after the request was (partly) written: reset, closed before
    /// or during the response, or a malformed response. The server may have acted on it.
    FailedAfterSend,
    /// The endpoint did not process the HTTP/2 stream and said so: `RST_STREAM` with
    /// `REFUSED_STREAM`, or a `GOAWAY` whose last stream id is below the stream's (RFC 9113,
    /// sections 8.7 and 6.8). [Requeueable](is_requeueable).
    Refused,
    /// No response within the per-attempt timeout (`requestAttemptTimeoutMs`).
    Timeout,
    /// Anything else (a local failure): a failure, never retryable.
    Other,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A response arrived with this status.
    Status(StatusCode),
    /// No response.
    Error(AttemptError),
}

/// One finished attempt, as the classifier sees it.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The response status, or the error.
    pub outcome: Outcome,
    /// The response carried `l5d-retryable: true` (see [`l5d_retryable`]). Ignored for
    /// errors.
    pub l5d_retryable: bool,
    /// The request body can be sent again. False for chunked requests, which Linkerd
    /// never retries.
    pub body_replayable: bool,
    /// The response's `grpc-status` header, when it is in the headers (a gRPC
    /// "trailers-only" response: a call that failed before any message).
    pub grpc_status: Option<u32>,
}

/// How a response stream ended, for the classifiers that judge a response again at its
/// end ([`Classifier::judges_stream_end`]): gRPC servers send a call's status in the
/// trailers, after the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamEnd {
    /// Trailers arrived, with this `grpc-status` (`None`: absent or unreadable).
    Trailers(Option<u32>),
    /// The stream ended without trailers.
    NoTrailers,
    /// The stream failed: reset by the endpoint, or its connection was lost.
    Failed,
    /// The client went away before the end (the response was dropped).
    Cancelled,
}

/// A response classifier kind (`responseClassifier.kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Classifier {
    /// `io.l5d.http.nonRetryable5XX`: 5XX and errors fail, nothing is retried.
    #[default]
    NonRetryable5XX,
    /// `io.l5d.http.retryableRead5XX`: GET, HEAD, OPTIONS and TRACE are retried.
    RetryableRead5XX,
    /// `io.l5d.http.retryableIdempotent5XX`: also PUT and DELETE.
    RetryableIdempotent5XX,
    /// `io.l5d.http.retryableAll5XX`: also POST and PATCH.
    RetryableAll5XX,
    /// `io.l5d.http.allSuccessful`: every response succeeds; errors fail, not retryable.
    AllSuccessful,
    /// `io.l5d.h2.grpc.*`: judged by `grpc-status`.
    Grpc(GrpcRule),
}

/// Which gRPC classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcKind {
    /// `io.l5d.h2.grpc.default`: UNAVAILABLE (14) is retryable.
    Default,
    /// `io.l5d.h2.grpc.compliant`: UNAVAILABLE, a stream the endpoint refused
    /// (`REFUSED_STREAM`), and HTTP 429/502/503/504 without a `grpc-status` (a proxy's
    /// answer) are retryable.
    Compliant,
    /// `io.l5d.h2.grpc.alwaysRetryable`: every failure is retryable.
    AlwaysRetryable,
    /// `io.l5d.h2.grpc.neverRetryable`: nothing is retried.
    NeverRetryable,
    /// `io.l5d.h2.grpc.retryableStatusCodes`: the listed codes are retryable.
    RetryableStatusCodes,
}

/// A set of gRPC status codes (0 to 31).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodeSet(u32);

impl CodeSet {
    /// The codes listed (codes above 31 are ignored; validation refuses codes above 16).
    pub fn of(codes: &[u32]) -> CodeSet {
        CodeSet(codes.iter().filter(|c| **c < 32).fold(0, |s, c| s | 1 << c))
    }

    /// Whether `code` is in the set.
    pub fn contains(self, code: u32) -> bool {
        code < 32 && self.0 & (1 << code) != 0
    }
}

/// The gRPC status UNAVAILABLE, retried by the default gRPC classifier.
pub const GRPC_UNAVAILABLE: u32 = 14;

/// A gRPC classifier with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GrpcRule {
    /// Which classifier.
    pub kind: GrpcKind,
    /// `successStatusCodes` (default `[0]`).
    pub success: CodeSet,
    /// `retryableStatusCodes` (for [`GrpcKind::RetryableStatusCodes`]).
    pub retryable: CodeSet,
}

impl GrpcRule {
    /// The gRPC classifier named `kind` (`None` for other names).
    pub fn from_kind(kind: &str, success: &[u32], retryable: &[u32]) -> Option<GrpcRule> {
        let kind = match kind {
            "io.l5d.h2.grpc.default" => GrpcKind::Default,
            "io.l5d.h2.grpc.compliant" => GrpcKind::Compliant,
            "io.l5d.h2.grpc.alwaysRetryable" => GrpcKind::AlwaysRetryable,
            "io.l5d.h2.grpc.neverRetryable" => GrpcKind::NeverRetryable,
            "io.l5d.h2.grpc.retryableStatusCodes" => GrpcKind::RetryableStatusCodes,
            _ => return None,
        };
        Some(GrpcRule {
            kind,
            success: CodeSet::of(if success.is_empty() { &[0] } else { success }),
            retryable: CodeSet::of(retryable),
        })
    }

    /// Whether a failing `grpc-status` may be retried.
    fn retryable_code(self, code: u32) -> bool {
        match self.kind {
            GrpcKind::Default | GrpcKind::Compliant => code == GRPC_UNAVAILABLE,
            GrpcKind::AlwaysRetryable => true,
            GrpcKind::NeverRetryable => false,
            GrpcKind::RetryableStatusCodes => self.retryable.contains(code),
        }
    }

    /// The end of a response stream whose headers had no `grpc-status`: the status in
    /// the trailers decides, as for a trailers-only response. A stream that ends
    /// without one, fails or is cancelled fails, never retryable (Linkerd's
    /// `streamClassifier`): its messages have already been passed on.
    fn classify_end(self, end: StreamEnd) -> ResponseClass {
        match end {
            StreamEnd::Trailers(Some(code)) if self.success.contains(code) => {
                ResponseClass::Success
            }
            StreamEnd::Trailers(Some(code)) => ResponseClass::Failure {
                retryable: self.retryable_code(code),
            },
            _ => ResponseClass::NON_RETRYABLE_FAILURE,
        }
    }

    /// One attempt, by `grpc-status` when the headers carry it, else by HTTP status;
    /// a 200 without `grpc-status` succeeds here (its status comes in the trailers).
    fn classify(self, outcome: Outcome, grpc_status: Option<u32>) -> ResponseClass {
        match (outcome, grpc_status) {
            (Outcome::Error(e), _) => ResponseClass::Failure {
                retryable: match self.kind {
                    GrpcKind::AlwaysRetryable => e != AttemptError::Other,
                    GrpcKind::Compliant => e == AttemptError::Refused,
                    _ => false,
                },
            },
            (Outcome::Status(_), Some(code)) if self.success.contains(code) => {
                ResponseClass::Success
            }
            (Outcome::Status(_), Some(code)) => ResponseClass::Failure {
                retryable: self.retryable_code(code),
            },
            (Outcome::Status(s), None) => {
                let proxy_refusal = matches!(s.as_u16(), 429 | 502 | 503 | 504);
                if s.is_success() {
                    ResponseClass::Success
                } else if self.kind == GrpcKind::Compliant && proxy_refusal {
                    ResponseClass::RETRYABLE_FAILURE
                } else if s.is_server_error() || proxy_refusal {
                    ResponseClass::Failure {
                        retryable: self.kind == GrpcKind::AlwaysRetryable,
                    }
                } else {
                    ResponseClass::Success
                }
            }
        }
    }
}

impl Classifier {
    /// Every kind, in the order of the table above.
    pub const ALL: [Classifier; 5] = [
        Classifier::NonRetryable5XX,
        Classifier::RetryableRead5XX,
        Classifier::RetryableIdempotent5XX,
        Classifier::RetryableAll5XX,
        Classifier::AllSuccessful,
    ];

    /// The classifier a `responseClassifier:` block names (`None` for an unknown kind).
    pub fn from_config(c: &crate::config::ResponseClassifier) -> Option<Classifier> {
        if let Some(rule) = GrpcRule::from_kind(
            &c.kind,
            c.success_status_codes.as_deref().unwrap_or(&[]),
            c.retryable_status_codes.as_deref().unwrap_or(&[]),
        ) {
            return Some(Classifier::Grpc(rule));
        }
        Classifier::from_kind(&c.kind)
    }

    /// The HTTP kind named by a config `kind:` value; `None` for any other name. The h2
    /// twins (`io.l5d.h2.retryableRead5XX`, ...) are the same rules.
    pub fn from_kind(kind: &str) -> Option<Classifier> {
        let http = match kind.strip_prefix("io.l5d.h2.") {
            Some(rest) => format!("io.l5d.http.{rest}"),
            None => kind.to_owned(),
        };
        Classifier::ALL.into_iter().find(|c| c.kind() == http)
    }

    /// The config `kind:` value.
    pub fn kind(self) -> &'static str {
        match self {
            Classifier::NonRetryable5XX => "io.l5d.http.nonRetryable5XX",
            Classifier::RetryableRead5XX => "io.l5d.http.retryableRead5XX",
            Classifier::RetryableIdempotent5XX => "io.l5d.http.retryableIdempotent5XX",
            Classifier::RetryableAll5XX => "io.l5d.http.retryableAll5XX",
            Classifier::AllSuccessful => "io.l5d.http.allSuccessful",
            Classifier::Grpc(r) => match r.kind {
                GrpcKind::Default => "io.l5d.h2.grpc.default",
                GrpcKind::Compliant => "io.l5d.h2.grpc.compliant",
                GrpcKind::AlwaysRetryable => "io.l5d.h2.grpc.alwaysRetryable",
                GrpcKind::NeverRetryable => "io.l5d.h2.grpc.neverRetryable",
                GrpcKind::RetryableStatusCodes => "io.l5d.h2.grpc.retryableStatusCodes",
            },
        }
    }

    /// Whether this kind retries failures of `method`. Extension methods and CONNECT are
    /// never retried.
    pub fn retries_method(self, method: &Method) -> bool {
        let read = [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE];
        let idempotent = [Method::PUT, Method::DELETE];
        let unsafe_ = [Method::POST, Method::PATCH];
        let level = match self {
            Classifier::NonRetryable5XX | Classifier::AllSuccessful => return false,
            // gRPC calls are all POSTs; whether one is retried depends on its status.
            Classifier::Grpc(r) => return r.kind != GrpcKind::NeverRetryable,
            Classifier::RetryableRead5XX => 0,
            Classifier::RetryableIdempotent5XX => 1,
            Classifier::RetryableAll5XX => 2,
        };
        read.contains(method)
            || (level >= 1 && idempotent.contains(method))
            || (level >= 2 && unsafe_.contains(method))
    }

    /// Whether this kind judges a response again when its stream ends (the gRPC ones:
    /// the status of a call that streamed messages comes in the trailers). The others
    /// decide on the response head alone, and their responses are never watched.
    pub fn judges_stream_end(self) -> bool {
        matches!(self, Classifier::Grpc(_))
    }

    /// The final class of a response whose head this kind judged a success and which
    /// it [watches to the end](Classifier::judges_stream_end). Kinds that decide on
    /// the head keep that success unless the stream failed.
    pub fn classify_end(self, end: StreamEnd) -> ResponseClass {
        match (self, end) {
            (Classifier::Grpc(rule), _) => rule.classify_end(end),
            (_, StreamEnd::Failed | StreamEnd::Cancelled) => ResponseClass::NON_RETRYABLE_FAILURE,
            _ => ResponseClass::Success,
        }
    }

    /// Classifies one attempt, with the HTTP rules (`l5d-retryable`, replayable body)
    /// applied.
    pub fn classify(self, exchange: &Exchange<'_>) -> ResponseClass {
        let class = match self {
            Classifier::Grpc(rule) => rule.classify(exchange.outcome, exchange.grpc_status),
            _ => self.classify_base(exchange.method, exchange.outcome),
        };
        let class = match (class, exchange.outcome) {
            (ResponseClass::Failure { retryable: false }, Outcome::Status(_))
                if exchange.l5d_retryable =>
            {
                ResponseClass::RETRYABLE_FAILURE
            }
            _ => class,
        };
        if class.is_retryable() && !exchange.body_replayable {
            return ResponseClass::NON_RETRYABLE_FAILURE;
        }
        class
    }

    /// The kind's own rule: method and outcome only.
    fn classify_base(self, method: &Method, outcome: Outcome) -> ResponseClass {
        let failed = match outcome {
            Outcome::Status(status) => {
                status.is_server_error() && self != Classifier::AllSuccessful
            }
            Outcome::Error(_) => true,
        };
        if !failed {
            return ResponseClass::Success;
        }
        let retryable_outcome = !matches!(outcome, Outcome::Error(AttemptError::Other));
        ResponseClass::Failure {
            retryable: retryable_outcome && self.retries_method(method),
        }
    }
}

/// Whether the server certainly did not act on the request (it never reached the
/// server, or the server refused it unprocessed), so it may be sent again whatever its
/// method or classifier (a client *requeue*).
pub fn is_requeueable(error: AttemptError) -> bool {
    matches!(error, AttemptError::ConnectFailed | AttemptError::Refused)
}

/// Whether one `l5d-retryable` header value says `true` (ASCII case-insensitive,
/// surrounding whitespace ignored, as Java's `toBoolean`); any other value is false.
pub fn l5d_retryable(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"true")
}

/// The `l5d-success-class` value for a class: `"1.0"` for success, `"0.0"` for failure.
pub fn success_class_header(class: ResponseClass) -> &'static str {
    match class {
        ResponseClass::Success => "1.0",
        ResponseClass::Failure { .. } => "0.0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: ResponseClass = ResponseClass::Success;
    const R: ResponseClass = ResponseClass::RETRYABLE_FAILURE;
    const N: ResponseClass = ResponseClass::NON_RETRYABLE_FAILURE;

    fn status(code: u16) -> Outcome {
        Outcome::Status(StatusCode::from_u16(code).unwrap())
    }

    fn classify(c: Classifier, method: &Method, outcome: Outcome) -> ResponseClass {
        c.classify(&Exchange {
            method,
            outcome,
            l5d_retryable: false,
            body_replayable: true,
            grpc_status: None,
        })
    }

    /// Outcomes in the order of the expectation rows below.
    fn outcomes() -> [Outcome; 7] {
        [
            status(200),
            status(500),
            status(503),
            Outcome::Error(AttemptError::ConnectFailed),
            Outcome::Error(AttemptError::FailedAfterSend),
            Outcome::Error(AttemptError::Timeout),
            Outcome::Error(AttemptError::Other),
        ]
    }

    fn check(c: Classifier, method: Method, expected: [ResponseClass; 7]) {
        for (outcome, want) in outcomes().into_iter().zip(expected) {
            assert_eq!(
                classify(c, &method, outcome),
                want,
                "{} {method} {outcome:?}",
                c.kind()
            );
        }
    }

    #[test]
    fn non_retryable_5xx() {
        let c = Classifier::NonRetryable5XX;
        for m in [Method::GET, Method::PUT, Method::POST] {
            check(c, m, [S, N, N, N, N, N, N]);
        }
        assert_eq!(Classifier::default(), c);
    }

    #[test]
    fn retryable_read_5xx() {
        let c = Classifier::RetryableRead5XX;
        check(c, Method::GET, [S, R, R, R, R, R, N]);
        check(c, Method::PUT, [S, N, N, N, N, N, N]);
        check(c, Method::POST, [S, N, N, N, N, N, N]);
        for m in [Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert_eq!(classify(c, &m, status(502)), R, "{m}");
        }
        assert_eq!(classify(c, &Method::DELETE, status(502)), N);
    }

    #[test]
    fn retryable_idempotent_5xx() {
        let c = Classifier::RetryableIdempotent5XX;
        check(c, Method::GET, [S, R, R, R, R, R, N]);
        check(c, Method::PUT, [S, R, R, R, R, R, N]);
        check(c, Method::POST, [S, N, N, N, N, N, N]);
        assert_eq!(classify(c, &Method::DELETE, status(500)), R);
        assert_eq!(classify(c, &Method::PATCH, status(500)), N);
    }

    #[test]
    fn retryable_all_5xx() {
        let c = Classifier::RetryableAll5XX;
        for m in [Method::GET, Method::PUT, Method::POST, Method::PATCH] {
            check(c, m, [S, R, R, R, R, R, N]);
        }
        assert_eq!(classify(c, &Method::CONNECT, status(500)), N);
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(classify(c, &custom, status(500)), N);
    }

    #[test]
    fn all_successful() {
        let c = Classifier::AllSuccessful;
        for m in [Method::GET, Method::PUT, Method::POST] {
            check(c, m, [S, S, S, N, N, N, N]);
        }
    }

    #[test]
    fn client_errors_and_redirects_succeed() {
        for c in Classifier::ALL {
            for code in [101, 204, 301, 400, 404, 429, 499] {
                assert_eq!(classify(c, &Method::GET, status(code)), S, "{code}");
            }
        }
    }

    #[test]
    fn l5d_retryable_promotes_non_retryable_failures() {
        let promoted = |c: Classifier, method: &Method, outcome: Outcome| {
            c.classify(&Exchange {
                method,
                outcome,
                l5d_retryable: true,
                body_replayable: true,
                grpc_status: None,
            })
        };
        // The default classifier retries nothing, except what the header vouches for.
        let c = Classifier::NonRetryable5XX;
        assert_eq!(promoted(c, &Method::POST, status(502)), R);
        assert_eq!(promoted(c, &Method::GET, status(503)), R);
        // A success stays a success; an error carries no header.
        assert_eq!(promoted(c, &Method::POST, status(200)), S);
        assert_eq!(
            promoted(c, &Method::POST, Outcome::Error(AttemptError::Timeout)),
            N
        );
        assert_eq!(
            promoted(Classifier::RetryableRead5XX, &Method::POST, status(500)),
            R
        );
        // allSuccessful calls the 5XX a success: nothing to promote.
        assert_eq!(
            promoted(Classifier::AllSuccessful, &Method::GET, status(502)),
            S
        );
    }

    #[test]
    fn chunked_requests_are_never_retryable() {
        for c in Classifier::ALL {
            for l5d_retryable in [false, true] {
                for outcome in outcomes() {
                    let class = c.classify(&Exchange {
                        method: &Method::GET,
                        outcome,
                        l5d_retryable,
                        body_replayable: false,
                        grpc_status: None,
                    });
                    assert!(!class.is_retryable(), "{} {outcome:?}", c.kind());
                    // Still counted as it would be otherwise.
                    assert_eq!(
                        class.is_success(),
                        classify(c, &Method::GET, outcome).is_success()
                    );
                }
            }
        }
    }

    #[test]
    fn kinds_round_trip() {
        for c in Classifier::ALL {
            assert_eq!(Classifier::from_kind(c.kind()), Some(c));
        }
        assert_eq!(
            Classifier::from_kind("io.l5d.h2.retryableRead5XX"),
            Some(Classifier::RetryableRead5XX)
        );
        assert_eq!(Classifier::from_kind("io.l5d.h2.grpc.default"), None);
        assert_eq!(Classifier::from_kind("io.l5d.http.retryableread5xx"), None);
    }

    #[test]
    fn only_errors_the_server_did_not_act_on_requeue() {
        assert!(is_requeueable(AttemptError::ConnectFailed));
        assert!(is_requeueable(AttemptError::Refused));
        assert!(!is_requeueable(AttemptError::FailedAfterSend));
        assert!(!is_requeueable(AttemptError::Timeout));
        assert!(!is_requeueable(AttemptError::Other));
    }

    #[test]
    fn l5d_retryable_values() {
        assert!(l5d_retryable(b"true"));
        assert!(l5d_retryable(b"TRUE"));
        assert!(l5d_retryable(b" True "));
        for v in [&b"false"[..], b"1", b"yes", b"", b"truex"] {
            assert!(!l5d_retryable(v), "{v:?}");
        }
    }

    #[test]
    fn success_class_values() {
        assert_eq!(success_class_header(S), "1.0");
        assert_eq!(success_class_header(R), "0.0");
        assert_eq!(success_class_header(N), "0.0");
    }

    fn grpc(kind: &str, success: &[u32], retryable: &[u32]) -> Classifier {
        Classifier::Grpc(GrpcRule::from_kind(kind, success, retryable).expect("grpc kind"))
    }

    fn judge(c: Classifier, status: u16, grpc_status: Option<u32>) -> ResponseClass {
        c.classify(&Exchange {
            method: &Method::POST,
            outcome: Outcome::Status(StatusCode::from_u16(status).unwrap()),
            l5d_retryable: false,
            body_replayable: true,
            grpc_status,
        })
    }

    #[test]
    fn grpc_classifiers_judge_grpc_status() {
        let default = grpc("io.l5d.h2.grpc.default", &[], &[]);
        assert_eq!(judge(default, 200, Some(0)), ResponseClass::Success);
        assert_eq!(
            judge(default, 200, Some(14)),
            ResponseClass::RETRYABLE_FAILURE
        );
        assert_eq!(
            judge(default, 200, Some(13)),
            ResponseClass::NON_RETRYABLE_FAILURE
        );
        // Status still to come in the trailers: not a failure yet.
        assert_eq!(judge(default, 200, None), ResponseClass::Success);
        assert_eq!(
            judge(default, 503, None),
            ResponseClass::NON_RETRYABLE_FAILURE
        );
        assert!(default.retries_method(&Method::POST));

        let compliant = grpc("io.l5d.h2.grpc.compliant", &[], &[]);
        assert_eq!(
            judge(compliant, 503, None),
            ResponseClass::RETRYABLE_FAILURE
        );
        assert_eq!(
            judge(compliant, 500, None),
            ResponseClass::NON_RETRYABLE_FAILURE
        );
        // A refused stream: retried by the compliant classifier (and by
        // alwaysRetryable), a plain failure for the others.
        let refused = |c: Classifier| {
            c.classify(&Exchange {
                method: &Method::POST,
                outcome: Outcome::Error(AttemptError::Refused),
                l5d_retryable: false,
                body_replayable: true,
                grpc_status: None,
            })
        };
        assert_eq!(refused(compliant), ResponseClass::RETRYABLE_FAILURE);
        assert_eq!(
            refused(grpc("io.l5d.h2.grpc.alwaysRetryable", &[], &[])),
            ResponseClass::RETRYABLE_FAILURE
        );
        assert_eq!(refused(default), ResponseClass::NON_RETRYABLE_FAILURE);
        let lost = compliant.classify(&Exchange {
            method: &Method::POST,
            outcome: Outcome::Error(AttemptError::FailedAfterSend),
            l5d_retryable: false,
            body_replayable: true,
            grpc_status: None,
        });
        assert_eq!(lost, ResponseClass::NON_RETRYABLE_FAILURE);

        let listed = grpc("io.l5d.h2.grpc.retryableStatusCodes", &[0, 5], &[4, 8]);
        assert_eq!(judge(listed, 200, Some(5)), ResponseClass::Success);
        assert_eq!(
            judge(listed, 200, Some(8)),
            ResponseClass::RETRYABLE_FAILURE
        );
        assert_eq!(
            judge(listed, 200, Some(14)),
            ResponseClass::NON_RETRYABLE_FAILURE
        );

        let never = grpc("io.l5d.h2.grpc.neverRetryable", &[], &[]);
        assert_eq!(
            judge(never, 200, Some(14)),
            ResponseClass::NON_RETRYABLE_FAILURE
        );
        assert!(!never.retries_method(&Method::POST));
        let always = grpc("io.l5d.h2.grpc.alwaysRetryable", &[], &[]);
        assert_eq!(
            judge(always, 200, Some(3)),
            ResponseClass::RETRYABLE_FAILURE
        );
        assert_eq!(always.kind(), "io.l5d.h2.grpc.alwaysRetryable");
        assert!(GrpcRule::from_kind("io.l5d.h2.grpc.nope", &[], &[]).is_none());
    }

    #[test]
    fn grpc_classifiers_judge_the_end_of_the_stream() {
        use StreamEnd::*;
        let default = grpc("io.l5d.h2.grpc.default", &[], &[]);
        assert!(default.judges_stream_end());
        assert_eq!(default.classify_end(Trailers(Some(0))), S);
        assert_eq!(default.classify_end(Trailers(Some(14))), R);
        assert_eq!(default.classify_end(Trailers(Some(2))), N);
        // No status at all, a failed stream or a cancelled one: a failure, not retried.
        for end in [Trailers(None), NoTrailers, Failed, Cancelled] {
            assert_eq!(default.classify_end(end), N, "{end:?}");
        }
        let listed = grpc("io.l5d.h2.grpc.retryableStatusCodes", &[0, 5], &[4]);
        assert_eq!(listed.classify_end(Trailers(Some(5))), S);
        assert_eq!(listed.classify_end(Trailers(Some(4))), R);
        assert_eq!(listed.classify_end(Trailers(Some(14))), N);

        for c in Classifier::ALL {
            assert!(!c.judges_stream_end(), "{}", c.kind());
            assert_eq!(c.classify_end(Trailers(None)), S);
            assert_eq!(c.classify_end(NoTrailers), S);
            assert_eq!(c.classify_end(Failed), N);
            assert_eq!(c.classify_end(Cancelled), N);
        }
    }
}
