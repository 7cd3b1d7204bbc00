//! Phase 2, identify: the request's logical name, `dstPrefix` ++ what the protocol's
//! identifier read from the request.

use plexus_http::{IdentifyError, NameSpec, identify::identify_first};

use super::Router;
use super::error::{ErrorKind, ProxyError};
use crate::naming::Path;

/// Names an HTTP request (after absolute-form normalisation); a new URI is returned when
/// the identifier consumes part of it.
pub fn identify(
    router: &Router,
    parts: &http::request::Parts,
) -> Result<(Path, Option<http::Uri>), ProxyError> {
    let found = identify_first(&router.identifiers, parts).map_err(|e: IdentifyError| {
        ProxyError::new(
            ErrorKind::Unidentified,
            format!("Unable to identify request: {e}"),
        )
    })?;
    let dst = match found.name {
        NameSpec::Segments(segs) => router.dst_prefix.join(segs.iter().map(|s| s.as_ref())),
        NameSpec::PathText(text) => {
            router.dst_prefix.concat(&Path::read(&text).map_err(|e| {
                ProxyError::new(ErrorKind::Unidentified, format!("Invalid path: {e}"))
            })?)
        }
    };
    Ok((dst, found.uri))
}
