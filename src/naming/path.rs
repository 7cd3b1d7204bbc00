//! `Path`: the hierarchical names every request, dtab entry and namer speaks.
//!
//! A path is a sequence of non-empty byte strings. Its canonical text form is Finagle's
//! `Path.show`: an element whose bytes are all "showable" is printed as is, any other
//! element is printed entirely as lowercase `\xNN` escapes. Parsing lives in `parse`.

use std::fmt;
use std::sync::Arc;

/// One element of a [`Path`]: a non-empty byte string, cheap to clone.
pub type Label = Arc<[u8]>;

/// A Finagle path such as `/svc/hello`; the empty path is written `/`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path {
    elems: Vec<Label>,
}

/// Whether `b` may appear unescaped in a shown path element.
pub(crate) fn is_showable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'#' | b'$' | b'%' | b'-')
}

impl Path {
    /// The empty path, `/`.
    pub fn empty() -> Self {
        Path { elems: Vec::new() }
    }

    /// Builds a path from its elements.
    ///
    /// # Panics
    /// If an element is empty: Finagle paths never contain empty elements, and every
    /// parser in this crate rejects them before they get here.
    pub fn from_elems<I, E>(elems: I) -> Self
    where
        I: IntoIterator<Item = E>,
        E: Into<Label>,
    {
        let elems: Vec<Label> = elems.into_iter().map(Into::into).collect();
        assert!(
            elems.iter().all(|e| !e.is_empty()),
            "path elements are never empty"
        );
        Path { elems }
    }

    /// Builds a path from UTF-8 segments, for callers that already hold strings.
    /// Empty segments are skipped, so `from_strs(["a", "", "b"])` is `/a/b`.
    pub fn from_strs<'a>(segments: impl IntoIterator<Item = &'a str>) -> Self {
        Path::empty().join(segments)
    }

    /// Parses Finagle path syntax (`/a/b`, whitespace and `#` comments around it allowed).
    pub fn read(s: &str) -> Result<Self, super::ParseError> {
        super::parse::read_path(s)
    }

    /// The elements, in order.
    pub fn elems(&self) -> &[Label] {
        &self.elems
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.elems.len()
    }

    /// Whether this is the empty path `/`.
    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// Element-wise prefix test: `/ab` does not start with `/a`.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.elems.starts_with(&prefix.elems)
    }

    /// The first `n` elements (all of them if `n` is larger).
    pub fn take(&self, n: usize) -> Path {
        Path {
            elems: self.elems[..n.min(self.len())].to_vec(),
        }
    }

    /// All but the first `n` elements (the empty path if `n` is larger).
    pub fn drop(&self, n: usize) -> Path {
        Path {
            elems: self.elems[n.min(self.len())..].to_vec(),
        }
    }

    /// `self ++ other`.
    pub fn concat(&self, other: &Path) -> Path {
        if other.is_empty() {
            return self.clone();
        }
        let mut elems = Vec::with_capacity(self.len() + other.len());
        elems.extend_from_slice(&self.elems);
        elems.extend_from_slice(&other.elems);
        Path { elems }
    }

    /// This path followed by `segments` as elements (empty ones skipped): a request's
    /// name under the router's prefix, made in one allocation for the list.
    pub fn join<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Path {
        let segments = segments.into_iter();
        let mut elems = Vec::with_capacity(self.len() + segments.size_hint().0);
        elems.extend_from_slice(&self.elems);
        elems.extend(
            segments
                .filter(|s| !s.is_empty())
                .map(|s| Label::from(s.as_bytes())),
        );
        Path { elems }
    }

    /// Appends one element.
    pub fn push(&mut self, elem: impl Into<Label>) {
        let elem = elem.into();
        assert!(!elem.is_empty(), "path elements are never empty");
        self.elems.push(elem);
    }

    /// The canonical text form (Finagle's `Path.show`).
    pub fn show(&self) -> String {
        self.to_string()
    }

    /// The elements as UTF-8 text where they are valid UTF-8 (lossy otherwise).
    pub fn elems_lossy(&self) -> Vec<String> {
        self.elems
            .iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    }

    /// The element at `i` as UTF-8, if it exists and is valid UTF-8.
    pub fn elem_str(&self, i: usize) -> Option<&str> {
        self.elems.get(i).and_then(|e| std::str::from_utf8(e).ok())
    }
}

/// Writes one element as Finagle shows it.
pub(crate) fn write_label(f: &mut impl fmt::Write, label: &[u8]) -> fmt::Result {
    if label.iter().copied().all(is_showable) {
        // Showable bytes are ASCII, so this cannot fail.
        f.write_str(std::str::from_utf8(label).map_err(|_| fmt::Error)?)
    } else {
        label.iter().try_for_each(|b| write!(f, "\\x{b:02x}"))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.elems.is_empty() {
            return f.write_str("/");
        }
        for e in &self.elems {
            f.write_str("/")?;
            write_label(f, e)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl std::str::FromStr for Path {
    type Err = super::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::read(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::read(s).unwrap()
    }

    #[test]
    fn show_escapes_the_whole_element_when_one_byte_is_not_showable() {
        assert_eq!(
            Path::from_elems([&b"foo bar"[..]]).show(),
            r"/\x66\x6f\x6f\x20\x62\x61\x72"
        );
        assert_eq!(Path::from_elems(["é".as_bytes()]).show(), r"/\xc3\xa9");
        assert_eq!(p(r"/\x41").show(), "/A");
        assert_eq!(p(r"/\xAb").show(), r"/\xab");
        assert_eq!(Path::empty().show(), "/");
    }

    #[test]
    fn element_wise_operations() {
        assert!(!p("/ab").starts_with(&p("/a")));
        assert!(p("/a/b").starts_with(&p("/a")));
        assert!(p("/a").starts_with(&Path::empty()));
        assert_eq!(p("/a/b/c").take(2), p("/a/b"));
        assert_eq!(p("/a/b/c").drop(2), p("/c"));
        assert_eq!(p("/a").drop(5), Path::empty());
        assert_eq!(p("/a").concat(&Path::empty()), p("/a"));
        assert_eq!(p("/a").concat(&p("/b/c")), p("/a/b/c"));
        assert_eq!(p("/svc").join(["b", "", "c"]), p("/svc/b/c"));
        assert_eq!(Path::empty().join(["b"]), p("/b"));
        assert_eq!(p("/svc").join([]), p("/svc"));
    }
}
