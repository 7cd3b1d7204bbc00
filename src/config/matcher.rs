//! Prefix matchers of `io.l5d.static` service and client blocks, with `*` wildcards
//! and `{var}` captures usable in settings such as `tls.commonName: "{service}"`.
//!
//! A matcher is a path whose segments may be `*` (any one segment), or text with
//! `{name}` captures (`{service}`, `{name}.example.com`). It matches a name when its
//! segments match the name's first segments, so `/$/inet/{host}` matches the client
//! `/$/inet/api.example.com/443` with `host = api.example.com`. A capture within a
//! segment is greedy: it takes as much of the segment as still lets the rest match.

use std::collections::BTreeMap;
use std::fmt;

use crate::naming::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Any,
    Pattern(Vec<Part>),
}

/// A parsed `prefix:` of a static block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathMatcher {
    text: String,
    segments: Vec<Segment>,
}

/// A `prefix:` that is not a valid matcher.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid prefix {text:?}: {why}")]
pub struct MatcherError {
    text: String,
    why: String,
}

fn segment(s: &str, text: &str) -> Result<Segment, MatcherError> {
    let err = |why: &str| MatcherError {
        text: text.to_string(),
        why: why.to_string(),
    };
    if s == "*" {
        return Ok(Segment::Any);
    }
    let mut parts = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}').ok_or_else(|| err("'{' without '}'"))?;
                let name = &rest[1..end];
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(err("capture names are letters, digits, '_' and '-'"));
                }
                if matches!(parts.last(), Some(Part::Var(_))) {
                    return Err(err("two captures must be separated by text"));
                }
                parts.push(Part::Var(name.to_string()));
                rest = &rest[end + 1..];
            }
            Some(i) => {
                parts.push(Part::Text(rest[..i].to_string()));
                rest = &rest[i..];
            }
            None => {
                if rest.contains('}') {
                    return Err(err("'}' without '{'"));
                }
                parts.push(Part::Text(rest.to_string()));
                rest = "";
            }
        }
    }
    Ok(Segment::Pattern(parts))
}

/// Matches `parts` against `s`, filling `caps`; captures are greedy and non-empty.
fn match_parts(parts: &[Part], s: &str, caps: &mut Vec<(String, String)>) -> bool {
    match parts.split_first() {
        None => s.is_empty(),
        Some((Part::Text(t), rest)) => s
            .strip_prefix(t.as_str())
            .is_some_and(|r| match_parts(rest, r, caps)),
        Some((Part::Var(name), rest)) => {
            // Greedy: try the longest capture first.
            let ends: Vec<usize> = s
                .char_indices()
                .map(|(i, _)| i)
                .skip(1)
                .chain([s.len()])
                .collect();
            for &end in ends.iter().rev() {
                let before = caps.len();
                caps.push((name.clone(), s[..end].to_string()));
                if match_parts(rest, &s[end..], caps) {
                    return true;
                }
                caps.truncate(before);
            }
            false
        }
    }
}

impl PathMatcher {
    /// Parses a prefix such as `/$/inet/{service}` or `/svc/*/web`.
    pub fn parse(text: &str) -> Result<Self, MatcherError> {
        let err = |why: &str| MatcherError {
            text: text.to_string(),
            why: why.to_string(),
        };
        let body = text
            .trim()
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/'"))?;
        let segments = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/')
                .map(|s| {
                    if s.is_empty() {
                        Err(err("empty segment"))
                    } else {
                        segment(s, text)
                    }
                })
                .collect::<Result<_, _>>()?
        };
        Ok(PathMatcher {
            text: text.trim().to_string(),
            segments,
        })
    }

    /// The captures if `name` starts with what this matcher describes.
    pub fn matches(&self, name: &Path) -> Option<BTreeMap<String, String>> {
        if name.len() < self.segments.len() {
            return None;
        }
        let mut caps = Vec::new();
        for (seg, elem) in self.segments.iter().zip(name.elems()) {
            let Segment::Pattern(parts) = seg else {
                continue;
            };
            let elem = std::str::from_utf8(elem).ok()?;
            if !match_parts(parts, elem, &mut caps) {
                return None;
            }
        }
        Some(caps.into_iter().collect())
    }
}

impl fmt::Display for PathMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Replaces every `{name}` in `template` by its capture; unknown names stay as written.
pub fn substitute(template: &str, captures: &BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in captures {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> Option<BTreeMap<String, String>> {
        PathMatcher::parse(p)
            .unwrap()
            .matches(&Path::read(name).unwrap())
    }

    fn caps(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn prefixes_wildcards_and_captures() {
        assert_eq!(m("/svc/hello", "/svc/hello"), caps(&[]));
        assert_eq!(m("/svc", "/svc/hello/extra"), caps(&[]));
        assert_eq!(m("/svc/hello", "/svc/world"), None);
        assert_eq!(m("/svc/hello/x", "/svc/hello"), None);
        assert_eq!(m("/svc/*/web", "/svc/any/web"), caps(&[]));
        assert_eq!(
            m(
                "/$/io.buoyant.rinet/443/{service}",
                "/$/io.buoyant.rinet/443/api.example.com"
            ),
            caps(&[("service", "api.example.com")])
        );
        assert_eq!(
            m("/$/inet/{service}", "/$/inet/api.example.com/443"),
            caps(&[("service", "api.example.com")])
        );
        assert_eq!(
            m("/#/io.l5d.fs/{name}.{zone}", "/#/io.l5d.fs/web.east.1"),
            caps(&[("name", "web.east"), ("zone", "1")])
        );
        assert_eq!(
            m(
                "/%/io.l5d.port/4141/#/io.l5d.fs/{svc}",
                "/%/io.l5d.port/4141/#/io.l5d.fs/x"
            ),
            caps(&[("svc", "x")])
        );
        assert_eq!(m("/", "/anything"), caps(&[]));
    }

    #[test]
    fn bad_prefixes_are_refused_with_a_reason() {
        for bad in ["svc", "/a//b", "/{}", "/{a}{b}", "/{a", "/a}"] {
            assert!(PathMatcher::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PathMatcher::parse("svc").unwrap_err().to_string(),
            "invalid prefix \"svc\": must start with '/'"
        );
    }

    #[test]
    fn templates_take_captures() {
        let c = m("/$/inet/{service}", "/$/inet/api.example.com/443").unwrap();
        assert_eq!(substitute("{service}", &c), "api.example.com");
        assert_eq!(
            substitute("{service}.internal/{other}", &c),
            "api.example.com.internal/{other}"
        );
    }
}
