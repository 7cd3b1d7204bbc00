//! Per-request dtab overrides carried in `l5d-ctx-dtab` and `l5d-dtab` headers.
//!
//! A request's local dtab is every `l5d-ctx-dtab` value (in header order) followed by
//! every `l5d-dtab` value (in header order), whatever order the two headers arrive in,
//! so a user's override beats the context it arrived with. Each value is one whole dtab;
//! commas are not separators. Forwarded hops carry the local dtab as `l5d-ctx-dtab`.

use std::borrow::Cow;

use super::dtab::Dtab;
use super::parse::ParseError;

/// The user override header.
pub const DTAB_HEADER: &str = "l5d-dtab";
/// The propagated context header.
pub const CTX_DTAB_HEADER: &str = "l5d-ctx-dtab";

/// A header value that is not a dtab; the request must be answered with 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {header} header: {error}")]
pub struct HeaderDtabError {
    /// Which header held the bad value (`l5d-dtab` or `l5d-ctx-dtab`).
    pub header: &'static str,
    /// The parse error, worded as Finagle words it.
    pub error: ParseError,
}

impl HeaderDtabError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        400
    }
}

/// Header values arrive as bytes; like the JVM's HTTP stacks we read them as ISO-8859-1,
/// so any byte sequence becomes text and non-ASCII characters fail to parse by name.
fn latin1(value: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(s) if s.is_ascii() => Cow::Borrowed(s),
        _ => Cow::Owned(value.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Builds the request's local dtab from its headers, given as `(name, value)` pairs in
/// the order they arrived. Header names are compared case-insensitively; other headers
/// are ignored. An empty value contributes nothing.
pub fn local_dtab<'a, I>(headers: I) -> Result<Dtab, HeaderDtabError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut ctx = Dtab::empty();
    let mut user = Dtab::empty();
    for (name, value) in headers {
        let (header, acc) = if name.eq_ignore_ascii_case(CTX_DTAB_HEADER) {
            (CTX_DTAB_HEADER, &mut ctx)
        } else if name.eq_ignore_ascii_case(DTAB_HEADER) {
            (DTAB_HEADER, &mut user)
        } else {
            continue;
        };
        let dtab = Dtab::read(&latin1(value)).map_err(|error| HeaderDtabError { header, error })?;
        *acc = acc.concat(&dtab);
    }
    Ok(ctx.concat(&user))
}

/// The `l5d-ctx-dtab` value to send downstream: the local dtab's canonical form, or
/// `None` when it is empty (then the header is not sent).
pub fn ctx_dtab_value(local: &Dtab) -> Option<String> {
    if local.is_empty() {
        None
    } else {
        Some(local.show())
    }
}
