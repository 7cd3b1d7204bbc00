//! Field types shared by the configuration model: paths, prefixes and dtabs written as
//! text in the file, parsed with the naming parsers so errors read like Linkerd's.

use serde::{Deserialize, Deserializer, de};

use crate::naming::{Dtab, Path};

/// Deserialises a Finagle path written as a string (`/svc`).
pub(crate) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<Path, D::Error> {
    let s = String::deserialize(d)?;
    Path::read(&s).map_err(|e| de::Error::custom(format!("invalid path {s:?}: {e}")))
}

/// Like [`path`], for optional fields.
pub(crate) fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Path>, D::Error> {
    path(d).map(Some)
}

/// Deserialises a dtab written as text (several lines with `;` separators are typical).
pub(crate) fn dtab<'de, D: Deserializer<'de>>(d: D) -> Result<Dtab, D::Error> {
    let s = String::deserialize(d)?;
    Dtab::read(&s).map_err(|e| de::Error::custom(format!("invalid dtab: {e}")))
}

/// A key Linkerd knows and Plexus does not implement yet. It is read (so the rest of
/// the file is still checked) and then rejected by name during validation.
pub(crate) type NotYet = Option<serde::de::IgnoredAny>;

/// Deserialises a name that may be written as a number (`port: incoming` or `port: 4141`).
pub(crate) fn name_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrNumber {
        Name(String),
        Number(u64),
    }
    Ok(match NameOrNumber::deserialize(d)? {
        NameOrNumber::Name(s) => s,
        NameOrNumber::Number(n) => n.to_string(),
    })
}
