//! The one parser for Finagle's naming syntax: paths, dentry prefixes, name trees, dentries
//! and dtabs, character for character as Finagle's `NameTreeParsers` reads them.
//!
//! Whitespace is Java's (`Character.isWhitespace`), `#` starts a comment wherever
//! whitespace may appear, and errors read exactly like Finagle's
//! (`'/' expected but 'i' found at '[i]nvalid'`), with the offset kept for tools.

use std::fmt;

use super::path::{Label, Path, is_showable};
use super::prefix::{Prefix, PrefixElem};
use super::tree::{NameTree, Weighted};
use super::{Dentry, Dtab};

/// A syntax error in a path, prefix, name tree or dtab, worded as Finagle words it.
#[derive(Clone, PartialEq, Eq)]
pub struct ParseError {
    expected: String,
    found: Option<char>,
    offset: usize,
    message: String,
}

impl ParseError {
    /// What the parser expected at the error position (`'/'`, `label char`, ...).
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// The character found instead, or `None` at the end of the input.
    pub fn found(&self) -> Option<char> {
        self.found
    }

    /// The position of the error, counted in characters from the start of the input.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParseError({:?} at {})", self.message, self.offset)
    }
}

impl std::error::Error for ParseError {}

/// Java's `Character.isWhitespace`, which differs from Rust's `char::is_whitespace`
/// (no-break spaces are not whitespace; the information separators U+001C..U+001F are).
pub(crate) fn is_java_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\r'
            | '\u{1C}'..='\u{1F}'
            | ' '
            | '\u{1680}'
            | '\u{2000}'..='\u{2006}'
            | '\u{2008}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

fn is_label_char(b: Option<u8>) -> bool {
    matches!(b, Some(b) if is_showable(b) || b == b'\\')
}

fn is_number_char(b: Option<u8>) -> bool {
    matches!(b, Some(b) if b.is_ascii_digit() || b == b'.')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

type Result<T> = std::result::Result<T, ParseError>;

/// A cursor over the input. It works on bytes: everything meaningful is ASCII, and any
/// other character is either whitespace, inside a comment, or an error.
struct Reader<'a> {
    input: &'a str,
    pos: usize,
    nesting: usize,
}

/// How deeply parentheses may nest. Finagle has no limit (and overflows its stack on
/// hostile input); real dtabs nest a few levels, and a header must not crash the proxy.
pub(crate) const MAX_NESTING: usize = 100;

impl<'a> Reader<'a> {
    fn new(input: &'a str) -> Self {
        Reader {
            input,
            pos: 0,
            nesting: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn maybe_eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat(&mut self, b: u8) -> Result<()> {
        if self.maybe_eat(b) {
            Ok(())
        } else {
            Err(self.illegal(&format!("'{}'", b as char)))
        }
    }

    fn eat_whitespace(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'#' {
                // A comment runs to and includes the next newline.
                match self.input.as_bytes()[self.pos..]
                    .iter()
                    .position(|&c| c == b'\n')
                {
                    Some(n) => self.pos += n + 1,
                    None => self.pos = self.input.len(),
                }
            } else if b < 0x80 {
                if !is_java_whitespace(b as char) {
                    return;
                }
                self.pos += 1;
            } else {
                match self.input[self.pos..].chars().next() {
                    Some(c) if is_java_whitespace(c) => self.pos += c.len_utf8(),
                    _ => return,
                }
            }
        }
    }

    fn ensure_end(&self) -> Result<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.illegal("end of input"))
        }
    }

    /// An error at the current position naming the character found there.
    fn illegal(&self, expected: &str) -> ParseError {
        let found = self.input.get(self.pos..).and_then(|s| s.chars().next());
        self.illegal_found(expected, found)
    }

    fn illegal_found(&self, expected: &str, found: Option<char>) -> ParseError {
        let (before, here, after) =
            match self.input[self.pos.min(self.input.len())..].chars().next() {
                Some(c) if self.pos < self.input.len() => (
                    &self.input[..self.pos],
                    c.to_string(),
                    &self.input[self.pos + c.len_utf8()..],
                ),
                _ => (self.input, String::new(), ""),
            };
        let found_text = match found {
            Some(c) => format!("'{c}'"),
            None => "end of input".to_string(),
        };
        ParseError {
            expected: expected.to_string(),
            found,
            offset: self.input[..self.pos.min(self.input.len())].chars().count(),
            message: format!(
                "{expected} expected but {found_text} found at '{before}[{here}]{after}'"
            ),
        }
    }

    fn hex_digit(&mut self) -> Result<u8> {
        match self.peek().and_then(hex_value) {
            Some(v) => {
                self.pos += 1;
                Ok(v)
            }
            None => Err(self.illegal("hex char")),
        }
    }

    fn label(&mut self) -> Result<Label> {
        let start = self.pos;
        // Fast path: a run of showable bytes is the label itself.
        while matches!(self.peek(), Some(b) if is_showable(b)) {
            self.pos += 1;
        }
        if self.peek() != Some(b'\\') {
            if self.pos == start {
                return Err(self.illegal("label char"));
            }
            return Ok(Label::from(&self.input.as_bytes()[start..self.pos]));
        }
        let mut bytes = self.input.as_bytes()[start..self.pos].to_vec();
        loop {
            match self.peek() {
                Some(b) if is_showable(b) => {
                    bytes.push(b);
                    self.pos += 1;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.eat(b'x')?;
                    let hi = self.hex_digit()?;
                    let lo = self.hex_digit()?;
                    bytes.push(hi << 4 | lo);
                }
                _ => return Err(self.illegal("label char")),
            }
            if !is_label_char(self.peek()) {
                return Ok(Label::from(bytes));
            }
        }
    }

    fn path(&mut self) -> Result<Path> {
        self.eat_whitespace();
        self.eat(b'/')?;
        let mut path = Path::empty();
        if !is_label_char(self.peek()) {
            return Ok(path);
        }
        loop {
            path.push(self.label()?);
            if !self.maybe_eat(b'/') {
                return Ok(path);
            }
        }
    }

    fn prefix(&mut self) -> Result<Prefix> {
        self.eat_whitespace();
        self.eat(b'/')?;
        let mut elems = Vec::new();
        if !(is_label_char(self.peek()) || self.peek() == Some(b'*')) {
            return Ok(Prefix::new(elems));
        }
        loop {
            if self.maybe_eat(b'*') {
                elems.push(PrefixElem::Any);
            } else {
                elems.push(PrefixElem::Label(self.label()?));
            }
            if !self.maybe_eat(b'/') {
                return Ok(Prefix::new(elems));
            }
        }
    }

    fn number(&mut self) -> Result<f64> {
        let start = self.pos;
        let mut seen_dot = false;
        while is_number_char(self.peek()) {
            if self.peek() == Some(b'.') {
                if seen_dot {
                    return Err(self.illegal("number char"));
                }
                seen_dot = true;
            }
            self.pos += 1;
        }
        let text = &self.input[start..self.pos];
        if text == "." {
            // Finagle reports this one after consuming the dot.
            return Err(self.illegal_found("weight", Some('.')));
        }
        // ASCII digits with at most one dot always parse, but enough digits overflow to
        // infinity. Finagle accepts that and then prints `Infinity`, which no parser reads
        // back (a forwarded l5d-ctx-dtab would be refused by the next hop): refuse it here.
        match text.parse::<f64>() {
            Ok(w) if w.is_finite() => Ok(w),
            _ => {
                self.pos = start;
                Err(self.illegal("finite weight"))
            }
        }
    }

    fn tree(&mut self) -> Result<NameTree<Path>> {
        let mut alts = Vec::new();
        loop {
            alts.push(self.union()?);
            self.eat_whitespace();
            if !self.maybe_eat(b'|') {
                break;
            }
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(NameTree::Neg)
        } else {
            NameTree::Alt(alts)
        })
    }

    fn union(&mut self) -> Result<NameTree<Path>> {
        let mut branches = Vec::new();
        loop {
            branches.push(self.weighted()?);
            self.eat_whitespace();
            if !self.maybe_eat(b'&') {
                break;
            }
        }
        Ok(if branches.len() == 1 {
            // A weight on a lone operand is discarded, as Finagle does.
            branches.pop().map(|w| w.tree).unwrap_or(NameTree::Neg)
        } else {
            NameTree::Union(branches)
        })
    }

    fn weighted(&mut self) -> Result<Weighted<Path>> {
        self.eat_whitespace();
        let weight = if is_number_char(self.peek()) {
            let w = self.number()?;
            self.eat_whitespace();
            self.eat(b'*')?;
            self.eat_whitespace();
            w
        } else {
            Weighted::<Path>::DEFAULT_WEIGHT
        };
        Ok(Weighted {
            weight,
            tree: self.simple()?,
        })
    }

    fn simple(&mut self) -> Result<NameTree<Path>> {
        self.eat_whitespace();
        match self.peek() {
            Some(b'(') => {
                if self.nesting >= MAX_NESTING {
                    return Err(self.illegal(&format!("at most {MAX_NESTING} nested parentheses")));
                }
                self.nesting += 1;
                self.pos += 1;
                let tree = self.tree()?;
                self.nesting -= 1;
                self.eat_whitespace();
                self.eat(b')')?;
                Ok(tree)
            }
            Some(b'/') => Ok(NameTree::Leaf(self.path()?)),
            Some(b'!') => {
                self.pos += 1;
                Ok(NameTree::Fail)
            }
            Some(b'~') => {
                self.pos += 1;
                Ok(NameTree::Neg)
            }
            Some(b'$') => {
                self.pos += 1;
                Ok(NameTree::Empty)
            }
            _ => Err(self.illegal("simple")),
        }
    }

    fn dentry(&mut self) -> Result<Dentry> {
        let prefix = self.prefix()?;
        self.eat_whitespace();
        self.eat(b'=')?;
        self.eat(b'>')?;
        let dst = self.tree()?;
        Ok(Dentry::new(prefix, dst))
    }

    fn dtab(&mut self) -> Result<Dtab> {
        let mut entries = Vec::new();
        loop {
            self.eat_whitespace();
            if !self.at_end() {
                entries.push(self.dentry()?);
                self.eat_whitespace();
            }
            if !self.maybe_eat(b';') {
                return Ok(Dtab::new(entries));
            }
        }
    }

    /// Runs `f`, then requires that only whitespace and comments remain.
    fn all<T>(mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let value = f(&mut self)?;
        self.eat_whitespace();
        self.ensure_end()?;
        Ok(value)
    }
}

pub(crate) fn read_path(s: &str) -> Result<Path> {
    Reader::new(s).all(Reader::path)
}

pub(crate) fn read_prefix(s: &str) -> Result<Prefix> {
    Reader::new(s).all(Reader::prefix)
}

pub(crate) fn read_tree(s: &str) -> Result<NameTree<Path>> {
    Reader::new(s).all(Reader::tree)
}

pub(crate) fn read_dentry(s: &str) -> Result<Dentry> {
    Reader::new(s).all(Reader::dentry)
}

pub(crate) fn read_dtab(s: &str) -> Result<Dtab> {
    Reader::new(s).all(Reader::dtab)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl fmt::Debug>) -> ParseError {
        r.expect_err("must fail")
    }

    #[test]
    fn errors_read_like_finagles_and_carry_the_offset() {
        let e = err(read_path("invalid-param"));
        assert_eq!(
            e.to_string(),
            "'/' expected but 'i' found at '[i]nvalid-param'"
        );
        assert_eq!((e.offset(), e.expected(), e.found()), (0, "'/'", Some('i')));
        let e = err(read_path("/foo/bar/"));
        assert_eq!(
            e.to_string(),
            "label char expected but end of input found at '/foo/bar/[]'"
        );
        assert_eq!((e.offset(), e.found()), (9, None));
        assert_eq!(
            err(read_tree("1.2.3*/a")).to_string(),
            "number char expected but '.' found at '1.2[.]3*/a'"
        );
        // The lone-dot quirk: Finagle reports it one character late.
        assert_eq!(
            err(read_tree(".*/a")).to_string(),
            "weight expected but '.' found at '.[*]/a'"
        );
        assert_eq!(
            err(read_dtab("/a=>/b;;")).to_string(),
            "'/' expected but ';' found at '/a=>/b;[;]'"
        );
        assert_eq!(
            err(read_dtab("/a = >/b")).to_string(),
            "'>' expected but ' ' found at '/a =[ ]>/b'"
        );
        assert_eq!(
            err(read_path(r"/a\y")).to_string(),
            r"'x' expected but 'y' found at '/a\[y]'"
        );
        assert_eq!(
            err(read_path(r"/a\x4g")).to_string(),
            r"hex char expected but 'g' found at '/a\x4[g]'"
        );
    }

    #[test]
    fn non_ascii_is_an_error_outside_comments_and_whitespace() {
        let e = err(read_path("/é"));
        assert_eq!(
            e.to_string(),
            "end of input expected but 'é' found at '/[é]'"
        );
        assert_eq!(e.offset(), 1);
        assert!(read_dtab("/a=>/b # café\n;/c=>/d").is_ok());
        // U+2003 EM SPACE is Java whitespace; U+00A0 NO-BREAK SPACE is not.
        assert!(read_path("\u{2003}/a\u{2003}").is_ok());
        assert!(read_path("\u{a0}/a").is_err());
        assert!(read_path("\u{1c}/a").is_ok());
    }

    #[test]
    fn java_whitespace_is_exactly_javas_set() {
        // The set a JVM's Character.isWhitespace accepts among the BMP characters.
        let java: Vec<u32> = vec![
            0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x1680, 0x2000, 0x2001,
            0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x205f,
            0x3000,
        ];
        let ours: Vec<u32> = (0..=0xffffu32)
            .filter_map(char::from_u32)
            .filter(|c| is_java_whitespace(*c))
            .map(u32::from)
            .collect();
        assert_eq!(ours, java);
    }

    #[test]
    fn nesting_is_bounded_so_hostile_input_cannot_overflow_the_stack() {
        let ok = format!("{}/a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(read_tree(&ok).is_ok());
        let deep = format!("{}/a{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = err(read_tree(&deep));
        assert_eq!(e.offset(), MAX_NESTING);
        assert!(
            e.to_string()
                .starts_with("at most 100 nested parentheses expected but '(' found")
        );
    }

    #[test]
    fn numbers_are_ascii_and_java_like() {
        let w = |s: &str| match read_tree(s).unwrap() {
            NameTree::Union(ws) => ws[0].weight,
            t => panic!("not a union: {t:?}"),
        };
        assert_eq!(w("5.*/a & /b"), 5.0);
        assert_eq!(w(".5*/a & /b"), 0.5);
        assert_eq!(w("007*/a & /b"), 7.0);
        assert!(read_tree("1e3*/a").is_err());
        assert!(read_tree("-1*/a").is_err());
        assert!(read_tree("0.5*0.5*/a").is_err());
        assert!(read_tree("\u{663}*/a").is_err());
        // Weights that overflow a double are refused: `Infinity` could never be read back.
        let huge = format!("/a & {}*/b", "9".repeat(400));
        let e = err(read_tree(&huge));
        assert_eq!(e.offset(), 5);
        assert!(
            e.to_string()
                .starts_with("finite weight expected but '9' found at '/a & [9]99")
        );
    }
}
