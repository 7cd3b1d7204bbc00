//! The Thrift `Greeter` service of `proto/helloworld.thrift`
//! (`string greet(1: string name)`), encoded by hand on the `thrift` crate's
//! binary protocol, and its framed transport on tokio sockets.
//!
//! Every message travels in a frame: a 4-byte big-endian length, then the
//! message, as Linkerd 1.x's thrift router expects by default. Messages are
//! written in the strict binary protocol (the `0x8001` version header);
//! both strict and old non-strict messages are read. The structs are the ones
//! the Thrift compiler would generate: the call's `greet_args { 1: string
//! name }`, the reply's `greet_result { 0: string success }`, and
//! `TApplicationException { 1: string message, 2: i32 type }` for failures.
//!
//! Frames longer than [`MAX_FRAME`] are refused before anything is
//! allocated for them, and decoding never allocates more than the frame
//! holds, so nothing a peer sends can make this code panic or balloon.

use std::fmt;
use std::io;

use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol,
    TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};
use thrift::{ApplicationErrorKind, TConfiguration};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The service name, for messages (`Greeter.greet`).
pub const SERVICE: &str = "Greeter";

/// The one method.
pub const GREET: &str = "greet";

/// The largest frame read, length prefix excluded: far above any greeting.
pub const MAX_FRAME: usize = 1 << 20;

/// A `TApplicationException`: what a Thrift server answers instead of a
/// result when the call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationException {
    /// The `type` field; see [`ApplicationErrorKind`] for the known values.
    pub kind: i32,
    /// The `message` field.
    pub message: String,
}

impl ApplicationException {
    /// An exception of a known kind.
    pub fn new(kind: ApplicationErrorKind, message: impl Into<String>) -> Self {
        ApplicationException {
            kind: kind as i32,
            message: message.into(),
        }
    }

    /// An `INTERNAL_ERROR` (6), the kind every greeting failure is.
    pub fn internal_error(message: impl Into<String>) -> Self {
        ApplicationException::new(ApplicationErrorKind::InternalError, message)
    }
}

/// `InternalError (6): <message>`, worded like gRPC statuses are.
impl fmt::Display for ApplicationException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ApplicationErrorKind::try_from(self.kind) {
            Ok(kind) => write!(f, "{kind:?} ({})", self.kind)?,
            Err(_) => write!(f, "TApplicationException type {}", self.kind)?,
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// What a server found in a frame whose message header it could read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method name, as sent.
    pub method: String,
    /// The sequence id, echoed in the reply.
    pub seq: i32,
    /// Whether the caller expects no reply (a `ONEWAY` message).
    pub oneway: bool,
    /// What the message asks for.
    pub kind: RequestKind,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// `greet(name)`; a missing `name` reads as empty.
    Greet {
        /// The `name` argument.
        name: String,
    },
    /// A call to a method `Greeter` does not have (for example Finagle's
    /// `__can__finagle__trace__v3__` upgrade probe).
    UnknownMethod,
    /// A reply or an exception, which a server does not expect.
    NotACall,
    /// `greet` with arguments that cannot be read.
    BadArguments(String),
}

/// Why a call to `greet` failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server closed the connection instead of replying.
    #[error("the connection was closed before the reply")]
    Closed,
    /// The server replied with an exception.
    #[error("{0}")]
    Exception(ApplicationException),
    /// The reply could not be understood.
    #[error("bad reply: {0}")]
    BadReply(String),
}

impl CallError {
    /// Whether the connection was lost (closed or reset by the peer) rather
    /// than answered: on a connection kept open between calls, the sign that
    /// the server closed it meanwhile.
    pub fn connection_lost(&self) -> bool {
        match self {
            CallError::Closed => true,
            CallError::Io(error) => matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            CallError::Exception(_) | CallError::BadReply(_) => false,
        }
    }

    /// Whether the connection can carry further calls: after an exception
    /// reply it can; after anything else its state is unknown.
    pub fn connection_reusable(&self) -> bool {
        matches!(self, CallError::Exception(_))
    }
}

/// The decoding limits: nothing may be longer than a frame.
fn limits() -> TConfiguration {
    TConfiguration::builder()
        .max_frame_size(Some(MAX_FRAME))
        .max_message_size(Some(MAX_FRAME))
        .max_string_size(Some(MAX_FRAME))
        .max_container_size(Some(MAX_FRAME))
        .build()
        .unwrap_or_default()
}

/// A reader of one frame's message, strict or not.
fn input(frame: &[u8]) -> TBinaryInputProtocol<&[u8]> {
    TBinaryInputProtocol::with_config(frame, false, limits())
}

/// Encodes one strict binary message with `write` and frames it: the
/// returned bytes start with the length prefix.
fn framed(
    write: impl FnOnce(&mut TBinaryOutputProtocol<&mut Vec<u8>>) -> thrift::Result<()>,
) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; 4];
    write(&mut TBinaryOutputProtocol::new(&mut bytes, true)).map_err(io::Error::other)?;
    let length = i32::try_from(bytes.len() - 4)
        .map_err(|_| io::Error::other("message too long for a frame"))?;
    bytes[..4].copy_from_slice(&length.to_be_bytes());
    Ok(bytes)
}

/// Writes a struct with one string field.
fn string_struct(
    o: &mut dyn TOutputProtocol,
    name: &str,
    field: &str,
    id: i16,
    value: &str,
) -> thrift::Result<()> {
    o.write_struct_begin(&TStructIdentifier::new(name))?;
    o.write_field_begin(&TFieldIdentifier::new(field, TType::String, id))?;
    o.write_string(value)?;
    o.write_field_end()?;
    o.write_field_stop()?;
    o.write_struct_end()
}

/// The frame of the call `greet(name)` with sequence id `seq`.
pub fn greet_call(seq: i32, name: &str) -> io::Result<Vec<u8>> {
    framed(|o| {
        o.write_message_begin(&TMessageIdentifier::new(GREET, TMessageType::Call, seq))?;
        string_struct(o, "greet_args", "name", 1, name)?;
        o.write_message_end()
    })
}

/// The frame of a successful reply to `greet` call `seq`.
pub fn greet_reply(seq: i32, answer: &str) -> io::Result<Vec<u8>> {
    framed(|o| {
        o.write_message_begin(&TMessageIdentifier::new(GREET, TMessageType::Reply, seq))?;
        string_struct(o, "greet_result", "success", 0, answer)?;
        o.write_message_end()
    })
}

/// The frame of an exception reply to call `seq` of `method`.
pub fn exception_reply(
    method: &str,
    seq: i32,
    exception: &ApplicationException,
) -> io::Result<Vec<u8>> {
    framed(|o| {
        o.write_message_begin(&TMessageIdentifier::new(
            method,
            TMessageType::Exception,
            seq,
        ))?;
        o.write_struct_begin(&TStructIdentifier::new("TApplicationException"))?;
        o.write_field_begin(&TFieldIdentifier::new("message", TType::String, 1))?;
        o.write_string(&exception.message)?;
        o.write_field_end()?;
        o.write_field_begin(&TFieldIdentifier::new("type", TType::I32, 2))?;
        o.write_i32(exception.kind)?;
        o.write_field_end()?;
        o.write_field_stop()?;
        o.write_struct_end()?;
        o.write_message_end()
    })
}

/// Reads a struct, handing each field to `field` (which must consume the
/// field's value, by reading or skipping it).
fn read_struct(
    i: &mut dyn TInputProtocol,
    mut field: impl FnMut(&mut dyn TInputProtocol, Option<i16>, TType) -> thrift::Result<()>,
) -> thrift::Result<()> {
    i.read_struct_begin()?;
    loop {
        let ident = i.read_field_begin()?;
        if ident.field_type == TType::Stop {
            break;
        }
        field(i, ident.id, ident.field_type)?;
        i.read_field_end()?;
    }
    i.read_struct_end()
}

/// Reads the string field `id` of a struct, skipping every other field;
/// `None` if absent.
fn read_string_field(i: &mut dyn TInputProtocol, id: i16) -> thrift::Result<Option<String>> {
    let mut value = None;
    read_struct(i, |i, field, kind| {
        if field == Some(id) && kind == TType::String {
            value = Some(i.read_string()?);
            Ok(())
        } else {
            i.skip(kind)
        }
    })?;
    Ok(value)
}

/// Decodes a frame received by a server. An error means the frame does not
/// start with a readable message header, so there is no call to answer.
pub fn decode_request(frame: &[u8]) -> Result<Request, String> {
    let mut i = input(frame);
    let header = i
        .read_message_begin()
        .map_err(|e| format!("not a Thrift binary message: {e}"))?;
    let oneway = header.message_type == TMessageType::OneWay;
    let kind = match header.message_type {
        TMessageType::Call | TMessageType::OneWay if header.name == GREET => {
            match read_string_field(&mut i, 1) {
                Ok(name) => RequestKind::Greet {
                    name: name.unwrap_or_default(),
                },
                Err(error) => RequestKind::BadArguments(error.to_string()),
            }
        }
        TMessageType::Call | TMessageType::OneWay => RequestKind::UnknownMethod,
        TMessageType::Reply | TMessageType::Exception => RequestKind::NotACall,
    };
    Ok(Request {
        method: header.name,
        seq: header.sequence_number,
        oneway,
        kind,
    })
}

/// Decodes the reply to `greet` call `seq`: the answer, or why there is
/// none.
pub fn decode_greet_reply(frame: &[u8], seq: i32) -> Result<String, CallError> {
    let bad = |e: thrift::Error| CallError::BadReply(e.to_string());
    let mut i = input(frame);
    let header = i.read_message_begin().map_err(bad)?;
    if header.sequence_number != seq {
        return Err(CallError::BadReply(format!(
            "sequence id {} answers no call (expected {seq})",
            header.sequence_number
        )));
    }
    match header.message_type {
        TMessageType::Reply => {}
        TMessageType::Exception => {
            let mut exception = ApplicationException::new(ApplicationErrorKind::Unknown, "");
            read_struct(&mut i, |i, field, kind| match (field, kind) {
                (Some(1), TType::String) => {
                    exception.message = i.read_string()?;
                    Ok(())
                }
                (Some(2), TType::I32) => {
                    exception.kind = i.read_i32()?;
                    Ok(())
                }
                _ => i.skip(kind),
            })
            .map_err(bad)?;
            return Err(CallError::Exception(exception));
        }
        other => {
            return Err(CallError::BadReply(format!(
                "a {other} message instead of a reply"
            )));
        }
    }
    if header.name != GREET {
        return Err(CallError::BadReply(format!(
            "a reply to {:?} instead of {GREET:?}",
            header.name
        )));
    }
    read_string_field(&mut i, 0)
        .map_err(bad)?
        .ok_or_else(|| CallError::BadReply(format!("{GREET} returned no result")))
}

/// Reads one frame. `Ok(None)` when the peer closed the connection cleanly
/// between frames; `UnexpectedEof` when it closed mid-frame; `InvalidData`
/// for a negative length or one above [`MAX_FRAME`] (nothing is read past
/// the length then, so the connection must be closed).
pub async fn read_frame<R>(reader: &mut R) -> io::Result<Option<Vec<u8>>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut prefix = [0u8; 4];
    let first = reader.read(&mut prefix).await?;
    if first == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut prefix[first..]).await?;
    let length = i32::from_be_bytes(prefix);
    let length = usize::try_from(length)
        .ok()
        .filter(|length| *length <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame length {length} is not between 0 and {MAX_FRAME}"),
            )
        })?;
    let mut frame = vec![0u8; length];
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

/// Calls `greet(name)` with sequence id `seq` on a connection that is not
/// in the middle of another call, and reads the reply.
pub async fn call_greet<S>(stream: &mut S, seq: i32, name: &str) -> Result<String, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    stream.write_all(&greet_call(seq, name)?).await?;
    stream.flush().await?;
    let frame = read_frame(stream).await?.ok_or(CallError::Closed)?;
    decode_greet_reply(&frame, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `greet("plexus")`, seqid 7, strict binary, framed.
    const CALL: &[u8] = &[
        0, 0, 0, 31, // frame length
        0x80, 0x01, 0x00, 0x01, // strict binary, CALL
        0, 0, 0, 5, b'g', b'r', b'e', b'e', b't', // method name
        0, 0, 0, 7, // seqid
        11, 0, 1, // field 1, string
        0, 0, 0, 6, b'p', b'l', b'e', b'x', b'u', b's', // "plexus"
        0,    // stop
    ];

    #[test]
    fn calls_are_strict_binary_in_a_frame() {
        assert_eq!(greet_call(7, "plexus").expect("encode"), CALL);
        let request = decode_request(&CALL[4..]).expect("decode");
        assert_eq!(
            request,
            Request {
                method: "greet".to_owned(),
                seq: 7,
                oneway: false,
                kind: RequestKind::Greet {
                    name: "plexus".to_owned()
                },
            }
        );
    }

    #[test]
    fn non_strict_calls_are_read() {
        let mut frame = vec![0, 0, 0, 5];
        frame.extend_from_slice(b"greet");
        frame.extend_from_slice(&[1, 0, 0, 0, 9]); // CALL, seqid 9
        frame.extend_from_slice(&[11, 0, 1, 0, 0, 0, 2, b'm', b'e', 0]);
        let request = decode_request(&frame).expect("decode");
        assert_eq!(request.seq, 9);
        assert_eq!(
            request.kind,
            RequestKind::Greet {
                name: "me".to_owned()
            }
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_a_missing_name_is_empty() {
        let mut frame = greet_call(1, "x").expect("encode")[4..].to_vec();
        // Replace the args struct with { 2: i32 5, 3: list<string> ["a"] }.
        let args_at = frame.len() - (3 + 4 + 1 + 1);
        frame.truncate(args_at);
        frame.extend_from_slice(&[8, 0, 2, 0, 0, 0, 5]);
        frame.extend_from_slice(&[15, 0, 3, 11, 0, 0, 0, 1, 0, 0, 0, 1, b'a']);
        frame.push(0);
        let request = decode_request(&frame).expect("decode");
        assert_eq!(
            request.kind,
            RequestKind::Greet {
                name: String::new()
            }
        );
    }

    #[test]
    fn other_methods_and_messages_are_told_apart() {
        let mut probe = vec![0x80, 0x01, 0x00, 0x01, 0, 0, 0, 27];
        probe.extend_from_slice(b"__can__finagle__trace__v3__");
        probe.extend_from_slice(&[0, 0, 0, 1, 0]);
        let request = decode_request(&probe).expect("decode");
        assert_eq!(request.kind, RequestKind::UnknownMethod);
        assert_eq!(request.method, "__can__finagle__trace__v3__");

        let reply = greet_reply(3, "hi").expect("encode");
        assert_eq!(
            decode_request(&reply[4..]).expect("decode").kind,
            RequestKind::NotACall
        );

        let mut oneway = greet_call(4, "x").expect("encode")[4..].to_vec();
        oneway[3] = 4;
        let request = decode_request(&oneway).expect("decode");
        assert!(request.oneway);

        let mut truncated = greet_call(5, "plexus").expect("encode")[4..].to_vec();
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            decode_request(&truncated).expect("header").kind,
            RequestKind::BadArguments(_)
        ));
        assert!(decode_request(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn replies_round_trip() {
        let reply = greet_reply(11, "Hello world!!").expect("encode");
        assert_eq!(
            decode_greet_reply(&reply[4..], 11).expect("reply"),
            "Hello world!!"
        );
        assert!(matches!(
            decode_greet_reply(&reply[4..], 12),
            Err(CallError::BadReply(_))
        ));

        let exception = ApplicationException::internal_error("world is down");
        let reply = exception_reply("greet", 2, &exception).expect("encode");
        match decode_greet_reply(&reply[4..], 2) {
            Err(CallError::Exception(got)) => assert_eq!(got, exception),
            other => panic!("expected the exception, got {other:?}"),
        }
        assert_eq!(exception.to_string(), "InternalError (6): world is down");
        let odd = ApplicationException {
            kind: 99,
            message: String::new(),
        };
        assert_eq!(odd.to_string(), "TApplicationException type 99");
    }

    #[test]
    fn replies_are_what_the_thrift_crate_reads() {
        // The crate's own reader of TApplicationException agrees.
        let exception = ApplicationException::internal_error("boom");
        let reply = exception_reply("greet", 1, &exception).expect("encode");
        let mut i = TBinaryInputProtocol::new(&reply[4..], true);
        let header = i.read_message_begin().expect("header");
        assert_eq!(header.message_type, TMessageType::Exception);
        let read =
            thrift::Error::read_application_error_from_in_protocol(&mut i).expect("exception");
        assert_eq!(read.kind, ApplicationErrorKind::InternalError);
        assert_eq!(read.message, "boom");
    }

    /// Every truncation and many corruptions of valid frames decode to an
    /// error or a value, never a panic or a huge allocation.
    #[test]
    fn damaged_frames_never_panic() {
        let frames = [
            greet_call(1, "plexus").expect("encode"),
            greet_reply(1, "Hello!").expect("encode"),
            exception_reply("greet", 1, &ApplicationException::internal_error("x"))
                .expect("encode"),
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for frame in &frames {
            let body = &frame[4..];
            for end in 0..body.len() {
                let _ = decode_request(&body[..end]);
                let _ = decode_greet_reply(&body[..end], 1);
            }
            for _ in 0..2000 {
                let mut damaged = body.to_vec();
                for _ in 0..3 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let at = (seed % damaged.len() as u64) as usize;
                    damaged[at] = (seed >> 32) as u8;
                }
                let _ = decode_request(&damaged);
                let _ = decode_greet_reply(&damaged, 1);
            }
        }
    }

    #[tokio::test]
    async fn frames_are_bounded() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        let error = read_frame(&mut input).await.expect_err("too long");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut input).await.is_err());
        let mut input: &[u8] = &[];
        assert!(read_frame(&mut input).await.expect("clean end").is_none());
        let mut input: &[u8] = &[0, 0];
        let error = read_frame(&mut input).await.expect_err("cut short");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let mut input: &[u8] = &[0, 0, 0, 2, 1, 2, 0, 0];
        assert_eq!(
            read_frame(&mut input).await.expect("frame"),
            Some(vec![1, 2])
        );
    }
}
