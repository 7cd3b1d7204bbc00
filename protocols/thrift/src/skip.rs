//! A resumable struct skipper: the only way to find where an unframed Thrift message ends,
//! since nothing but the body's own type tags delimits it.
//!
//! [`Skipper`] walks binary or compact encoded values with an explicit stack instead of
//! recursion. It is fed a buffer that only ever grows at the end (the caller's read
//! buffer); when the bytes run out it returns [`Skip::NeedMore`] and, on the next call,
//! continues where it stopped, so a message arriving in many reads costs one pass in
//! total. At most a varint or a container header (a few bytes) is read again after a
//! pause. Depth, total size and container element counts are bounded by [`Limits`], and
//! the only allocation is the stack, bounded by the depth limit: declared sizes are
//! checked against the limits before anything is trusted.

use std::fmt;

use crate::Limits;
use crate::header::Protocol;
use crate::wire::{TType, Varint, read_varint};

/// The outcome of [`Skipper::skip`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The value ends at this offset of the buffer (its length when it starts at 0).
    Complete(usize),
    /// The buffer ends inside the value; call again with more bytes appended.
    NeedMore,
    /// The bytes are not a valid value, or break a limit.
    Error(SkipError),
}

/// Why a value could not be skipped, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkipError {
    /// What went wrong.
    pub kind: SkipErrorKind,
    /// The buffer offset of the offending byte.
    pub offset: usize,
}

/// The kinds of [`SkipError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipErrorKind {
    /// A type id that the protocol does not define: the stream is out of sync.
    UnknownType(u8),
    /// Structs and containers nested deeper than the limit.
    TooDeep(usize),
    /// The value would extend past the size limit.
    TooLarge(usize),
    /// A container declaring more elements than the limit.
    TooManyElements {
        /// The declared count.
        declared: u64,
        /// The limit in force.
        max: usize,
    },
    /// A negative string length or container size.
    NegativeSize(i64),
    /// A varint longer than its type allows.
    BadVarint,
}

impl fmt::Display for SkipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SkipErrorKind::UnknownType(t) => write!(f, "unknown type id {t}"),
            SkipErrorKind::TooDeep(max) => write!(f, "nested deeper than {max} levels"),
            SkipErrorKind::TooLarge(max) => write!(f, "longer than the limit of {max} bytes"),
            SkipErrorKind::TooManyElements { declared, max } => {
                write!(f, "a container of {declared} elements (limit {max})")
            }
            SkipErrorKind::NegativeSize(n) => write!(f, "negative size {n}"),
            SkipErrorKind::BadVarint => f.write_str("malformed varint"),
        }?;
        write!(f, " at byte {}", self.offset)
    }
}

impl std::error::Error for SkipError {}

/// One open struct or container.
#[derive(Clone, Copy, Debug)]
enum Frame {
    Struct,
    /// A list, set or map: `remaining` values to go, alternating `types[0]` and
    /// `types[1]` (key and value for a map, twice the element type otherwise).
    Elems {
        types: [TType; 2],
        remaining: u64,
    },
}

/// What the skipper does next.
#[derive(Clone, Copy, Debug)]
enum Pending {
    /// Read the next field header or element (top of the stack), or finish.
    Next,
    /// Read a value of this type.
    Value(TType),
    /// Step over this many more raw bytes.
    Bytes(u64),
}

/// A resumable walker over one Thrift value (normally a struct).
#[derive(Clone, Debug)]
pub struct Skipper {
    compact: bool,
    limits: Limits,
    pos: usize,
    pending: Pending,
    stack: Vec<Frame>,
    outcome: Option<Skip>,
}

impl Skipper {
    /// A skipper for one struct at the start of the buffer.
    pub fn new(protocol: Protocol, limits: Limits) -> Self {
        Self::starting_at(protocol, limits, 0)
    }

    /// A skipper for one struct starting at offset `start`, e.g. after a message header.
    /// The size limit counts from offset 0, so it covers the header too.
    pub fn starting_at(protocol: Protocol, limits: Limits, start: usize) -> Self {
        Self::value(protocol, TType::Struct, limits, start)
    }

    pub(crate) fn value(protocol: Protocol, ttype: TType, limits: Limits, start: usize) -> Self {
        Skipper {
            compact: protocol.is_compact(),
            limits,
            pos: start,
            pending: Pending::Value(ttype),
            stack: Vec::new(),
            outcome: None,
        }
    }

    /// How far the skipper has got: every byte before this offset has been accounted for.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Continues the walk over `buf`. Each call must pass the same bytes as the previous
    /// one, possibly followed by more. Once complete or failed, the answer is final.
    pub fn skip(&mut self, buf: &[u8]) -> Skip {
        if let Some(outcome) = self.outcome {
            return outcome;
        }
        // Bytes past the size limit are never looked at: the answer depends only on the
        // bytes within it, so it is the same however the buffer grew.
        let within = &buf[..buf.len().min(self.limits.max_message_bytes)];
        let step = self.run(within);
        let outcome = match step {
            Ok(true) => Skip::Complete(self.pos),
            Ok(false) if buf.len() >= self.limits.max_message_bytes => {
                // More bytes are needed, but the buffer already reaches the limit.
                Skip::Error(self.error(SkipErrorKind::TooLarge(self.limits.max_message_bytes)))
            }
            Ok(false) => return Skip::NeedMore,
            Err(e) => Skip::Error(e),
        };
        self.outcome = Some(outcome);
        outcome
    }

    fn error(&self, kind: SkipErrorKind) -> SkipError {
        SkipError {
            kind,
            offset: self.pos,
        }
    }

    /// Walks until done (`true`), out of bytes (`false`) or an error.
    fn run(&mut self, buf: &[u8]) -> Result<bool, SkipError> {
        loop {
            match self.pending {
                Pending::Bytes(n) => {
                    let avail = buf.len().saturating_sub(self.pos);
                    // `n` was checked against the size limit, so it fits in usize.
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(avail);
                    self.pos += take;
                    let left = n - take as u64;
                    if left > 0 {
                        self.pending = Pending::Bytes(left);
                        return Ok(false);
                    }
                    self.pending = Pending::Next;
                }
                Pending::Value(t) => {
                    if !self.start_value(t, &buf[self.pos.min(buf.len())..])? {
                        return Ok(false);
                    }
                }
                Pending::Next => match self.stack.last_mut() {
                    None => return Ok(true),
                    Some(Frame::Elems { types, remaining }) => {
                        if *remaining == 0 {
                            self.stack.pop();
                        } else {
                            let t = types[(*remaining % 2) as usize];
                            *remaining -= 1;
                            self.pending = Pending::Value(t);
                        }
                    }
                    Some(Frame::Struct) => {
                        if !self.field_header(&buf[self.pos.min(buf.len())..])? {
                            return Ok(false);
                        }
                    }
                },
            }
        }
    }

    /// Checks that `n` more bytes from the current position stay within the size limit.
    fn within_limit(&self, n: u64) -> Result<(), SkipError> {
        let max = self.limits.max_message_bytes;
        if (self.pos as u64).saturating_add(n) > max as u64 {
            return Err(self.error(SkipErrorKind::TooLarge(max)));
        }
        Ok(())
    }

    fn push(&mut self, frame: Frame) -> Result<(), SkipError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.error(SkipErrorKind::TooDeep(self.limits.max_depth)));
        }
        self.stack.push(frame);
        self.pending = Pending::Next;
        Ok(())
    }

    /// Reads the next field header of the struct on top of the stack from `rest` (the
    /// bytes from the current position). Returns `false`, consuming nothing, when `rest`
    /// ends inside the header.
    fn field_header(&mut self, rest: &[u8]) -> Result<bool, SkipError> {
        let Some(&b) = rest.first() else {
            return Ok(false);
        };
        if b == 0 {
            self.within_limit(1)?;
            self.pos += 1;
            self.stack.pop();
            return Ok(true);
        }
        if !self.compact {
            let t = TType::from_binary(b).ok_or(self.error(SkipErrorKind::UnknownType(b)))?;
            if rest.len() < 3 {
                return Ok(false);
            }
            self.within_limit(3)?;
            self.pos += 3;
            self.pending = Pending::Value(t);
            return Ok(true);
        }
        let nibble = b & 0x0f;
        let t =
            TType::from_compact(nibble).ok_or(self.error(SkipErrorKind::UnknownType(nibble)))?;
        let mut len = 1;
        if b >> 4 == 0 {
            // Long form: the field id follows as a zigzag varint.
            match read_varint(&rest[1..], 5) {
                Varint::Done(_, n) => len += n,
                Varint::NeedMore => return Ok(false),
                Varint::Bad => return Err(self.at(1, SkipErrorKind::BadVarint)),
            }
        }
        self.within_limit(len as u64)?;
        self.pos += len;
        // A bool field carries its value in the type nibble.
        self.pending = if t == TType::Bool {
            Pending::Next
        } else {
            Pending::Value(t)
        };
        Ok(true)
    }

    fn at(&self, delta: usize, kind: SkipErrorKind) -> SkipError {
        SkipError {
            kind,
            offset: self.pos + delta,
        }
    }

    /// Starts a value of type `t` from `rest`. Returns `false`, consuming nothing, when
    /// `rest` ends inside the value's fixed-size prefix (a varint, a length, a container
    /// header).
    fn start_value(&mut self, t: TType, rest: &[u8]) -> Result<bool, SkipError> {
        let compact = self.compact;
        match t {
            TType::Bool | TType::Byte => self.fixed(1),
            TType::Double => self.fixed(8),
            TType::Uuid => self.fixed(16),
            TType::I16 if !compact => self.fixed(2),
            TType::I32 if !compact => self.fixed(4),
            TType::I64 if !compact => self.fixed(8),
            TType::I16 | TType::I32 => self.varint(rest, 5),
            TType::I64 => self.varint(rest, 10),
            TType::String => {
                let Some((len, n)) = self.size(rest, 0)? else {
                    return Ok(false);
                };
                self.within_limit(n as u64 + len)?;
                self.pos += n;
                self.pending = Pending::Bytes(len);
                Ok(true)
            }
            TType::Struct => {
                self.push(Frame::Struct)?;
                Ok(true)
            }
            TType::List | TType::Set => self.start_list(rest),
            TType::Map => self.start_map(rest),
        }
    }

    /// A fixed-size value: `n` bytes to step over, whenever they arrive.
    fn fixed(&mut self, n: u64) -> Result<bool, SkipError> {
        self.within_limit(n)?;
        self.pending = Pending::Bytes(n);
        Ok(true)
    }

    /// A compact integer: a varint of at most `max` bytes.
    fn varint(&mut self, rest: &[u8], max: usize) -> Result<bool, SkipError> {
        match read_varint(rest, max) {
            Varint::Done(_, n) => {
                self.within_limit(n as u64)?;
                self.pos += n;
                self.pending = Pending::Next;
                Ok(true)
            }
            Varint::NeedMore => Ok(false),
            Varint::Bad => Err(self.error(SkipErrorKind::BadVarint)),
        }
    }

    /// Reads a size (string length or element count) at `rest[at..]`: an i32 in binary,
    /// a varint of the i32's bit pattern in compact. Returns the size and the offset just
    /// past it, or `None` when `rest` ends first.
    fn size(&self, rest: &[u8], at: usize) -> Result<Option<(u64, usize)>, SkipError> {
        let (raw, end) = if self.compact {
            match read_varint(rest.get(at..).unwrap_or(&[]), 5) {
                Varint::Done(v, n) => (v as u32 as i32, at + n),
                Varint::NeedMore => return Ok(None),
                Varint::Bad => return Err(self.at(at, SkipErrorKind::BadVarint)),
            }
        } else {
            let Some(b) = rest.get(at..at + 4) else {
                return Ok(None);
            };
            (i32::from_be_bytes([b[0], b[1], b[2], b[3]]), at + 4)
        };
        let size = u64::try_from(raw)
            .map_err(|_| self.at(at, SkipErrorKind::NegativeSize(i64::from(raw))))?;
        Ok(Some((size, end)))
    }

    fn binary_type(&self, b: u8, at: usize) -> Result<TType, SkipError> {
        TType::from_binary(b).ok_or(self.at(at, SkipErrorKind::UnknownType(b)))
    }

    fn compact_type(&self, b: u8, at: usize) -> Result<TType, SkipError> {
        TType::from_compact(b).ok_or(self.at(at, SkipErrorKind::UnknownType(b)))
    }

    fn start_list(&mut self, rest: &[u8]) -> Result<bool, SkipError> {
        let Some(&b) = rest.first() else {
            return Ok(false);
        };
        let (count, header, elem) = if self.compact {
            let (count, header) = if b >> 4 == 15 {
                match self.size(rest, 1)? {
                    Some(s) => s,
                    None => return Ok(false),
                }
            } else {
                (u64::from(b >> 4), 1)
            };
            (count, header, b & 0x0f)
        } else {
            match self.size(rest, 1)? {
                Some((count, header)) => (count, header, b),
                None => return Ok(false),
            }
        };
        let elem = if count == 0 {
            // An empty container's element type is never used; writers put anything.
            TType::Byte
        } else if self.compact {
            self.compact_type(elem, 0)?
        } else {
            self.binary_type(elem, 0)?
        };
        self.start_elems([elem, elem], count, header, 1)
    }

    fn start_map(&mut self, rest: &[u8]) -> Result<bool, SkipError> {
        let (count, header, key, value) = if self.compact {
            let Some((count, n)) = self.size(rest, 0)? else {
                return Ok(false);
            };
            if count == 0 {
                // An empty compact map is the single byte 00, without a types byte.
                (0, n, TType::Byte, TType::Byte)
            } else {
                let Some(&kv) = rest.get(n) else {
                    return Ok(false);
                };
                let key = self.compact_type(kv >> 4, n)?;
                let value = self.compact_type(kv & 0x0f, n)?;
                (count, n + 1, key, value)
            }
        } else {
            let Some(&[k, v]) = rest.get(..2) else {
                return Ok(false);
            };
            let Some((count, n)) = self.size(rest, 2)? else {
                return Ok(false);
            };
            if count == 0 {
                (0, n, TType::Byte, TType::Byte)
            } else {
                (count, n, self.binary_type(k, 0)?, self.binary_type(v, 1)?)
            }
        };
        self.start_elems([key, value], count, header, 2)
    }

    /// Opens a container of `count` entries of `per_entry` values each, after a header
    /// of `header` bytes. Every value takes at least one byte, which bounds the count by
    /// the size limit before any of it is read.
    fn start_elems(
        &mut self,
        types: [TType; 2],
        count: u64,
        header: usize,
        per_entry: u64,
    ) -> Result<bool, SkipError> {
        let max = self.limits.max_container_elements;
        if count > max as u64 {
            return Err(self.error(SkipErrorKind::TooManyElements {
                declared: count,
                max,
            }));
        }
        let values = count * per_entry;
        self.within_limit(header as u64 + values)?;
        self.pos += header;
        if values == 0 {
            self.pending = Pending::Next;
            return Ok(true);
        }
        // Values are taken from `remaining` counting down: an even count starts with
        // `types[0]`, the key of a map.
        self.push(Frame::Elems {
            types,
            remaining: values,
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(protocol: Protocol, buf: &[u8]) -> Skip {
        Skipper::new(protocol, Limits::default()).skip(buf)
    }

    /// The whole buffer is one struct, every strict prefix needs more, and feeding it
    /// one byte at a time to one skipper gives the same answer.
    fn check(protocol: Protocol, buf: &[u8]) {
        assert_eq!(
            skip_all(protocol, buf),
            Skip::Complete(buf.len()),
            "{buf:02x?}"
        );
        for cut in 0..buf.len() {
            assert_eq!(skip_all(protocol, &buf[..cut]), Skip::NeedMore, "cut {cut}");
        }
        let mut s = Skipper::new(protocol, Limits::default());
        for cut in 0..buf.len() {
            assert_eq!(s.skip(&buf[..cut]), Skip::NeedMore, "resumed at {cut}");
        }
        assert_eq!(s.skip(buf), Skip::Complete(buf.len()));
        let mut longer = buf.to_vec();
        longer.extend_from_slice(&[0xde, 0xad]);
        assert_eq!(skip_all(protocol, &longer), Skip::Complete(buf.len()));
    }

    fn err(protocol: Protocol, limits: Limits, buf: &[u8]) -> SkipErrorKind {
        match Skipper::new(protocol, limits).skip(buf) {
            Skip::Error(e) => e.kind,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn binary_every_field_type() {
        #[rustfmt::skip]
        let buf = [
            0x02, 0, 1, 0x01,                                   // bool
            0x03, 0, 2, 0xff,                                   // byte
            0x04, 0, 3, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,           // double
            0x06, 0, 4, 0x12, 0x34,                             // i16
            0x08, 0, 5, 0, 0, 0, 7,                             // i32
            0x0a, 0, 6, 0, 0, 0, 0, 0, 0, 0, 9,                 // i64
            0x0b, 0, 7, 0, 0, 0, 2, b'h', b'i',                 // string
            0x0c, 0, 8, 0x08, 0, 1, 0, 0, 0, 1, 0,              // struct {1: i32}
            0x0d, 0, 9, 0x0b, 0x08, 0, 0, 0, 1, 0, 0, 0, 1, b'k', 0, 0, 0, 5, // map<string,i32>
            0x0e, 0, 10, 0x03, 0, 0, 0, 2, 1, 2,                // set<byte>
            0x0f, 0, 11, 0x02, 0, 0, 0, 3, 1, 0, 1,             // list<bool>
            0x10, 0, 12, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, // uuid
            0x00,
        ];
        check(Protocol::Binary, &buf);
        check(Protocol::BinaryNonStrict, &buf);
    }

    #[test]
    fn binary_nested_containers() {
        #[rustfmt::skip]
        let buf = [
            // 1: list<map<string, list<struct>>>, one map of one entry
            0x0f, 0, 1, 0x0d, 0, 0, 0, 1,
              0x0b, 0x0f, 0, 0, 0, 1,
                0, 0, 0, 1, b'a',
                0x0c, 0, 0, 0, 2,
                  0x0b, 0, 1, 0, 0, 0, 0, 0,
                  0x00,
            // 2: empty map with types 0 0 (as some writers do) and an empty list
            0x0d, 0, 2, 0, 0, 0, 0, 0, 0,
            0x0f, 0, 3, 0x0c, 0, 0, 0, 0,
            0x00,
        ];
        check(Protocol::Binary, &buf);
    }

    #[test]
    fn reference_vectors() {
        // args {1: string "hi"}, binary
        check(Protocol::Binary, &[0x0b, 0, 1, 0, 0, 0, 2, b'h', b'i', 0]);
        // the same, compact
        check(Protocol::Compact, &[0x18, 0x02, b'h', b'i', 0]);
        // TAppExc(6, "no route"), compact
        check(
            Protocol::Compact,
            &[
                0x18, 0x08, b'n', b'o', b' ', b'r', b'o', b'u', b't', b'e', 0x15, 0x0c, 0x00,
            ],
        );
        // compact REPLY declared exception: {1: {1: "bad"}}
        check(
            Protocol::Compact,
            &[0x1c, 0x18, 0x03, b'b', b'a', b'd', 0, 0],
        );
        // compact: 1: list<bool>[true,false], 2: bool true, 20: map{}, 21: double 1.0
        check(
            Protocol::Compact,
            &[
                0x19, 0x21, 0x01, 0x02, 0x11, 0x0b, 0x28, 0x00, 0x17, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,
                0x00,
            ],
        );
    }

    #[test]
    fn compact_every_field_type() {
        #[rustfmt::skip]
        let buf = [
            0x11,                                   // 1: bool true (no value byte)
            0x12,                                   // 2: bool false
            0x13, 0xff,                             // 3: byte
            0x14, 0xfe, 0xff, 0x03,                 // 4: i16 -32768 zigzag
            0x15, 0x80, 0x01,                       // 5: i32
            0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // 6: i64 (10 bytes)
            0x17, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,     // 7: double
            0x18, 0x02, b'h', b'i',                 // 8: binary
            0x19, 0x35, 0x02, 0x04, 0x06,           // 9: list<i32> of 3
            0x1a, 0xf8, 0x0f,                       // 10: set<binary> of 15, long size form
              1, b'a', 1, b'b', 1, b'c', 1, b'd', 1, b'e', 1, b'f', 1, b'g', 1, b'h',
              1, b'i', 1, b'j', 1, b'k', 1, b'l', 1, b'm', 1, b'n', 0,
            0x1b, 0x02, 0x51, 0x02, 0x01, 0x04, 0x02, // 11: map<i32, bool> of 2
            0x1c, 0x15, 0x02, 0x11, 0x00,           // 12: struct {1: i32, 2: bool}
            0x1d, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, // 13: uuid
            0x03, 0x00, 0x01,                       // 0: byte, long form (id 0)
            0x05, 0xf2, 0x07, 0x02,                 // 505: i32, long form
            0x00,
        ];
        check(Protocol::Compact, &buf);
    }

    #[test]
    fn compact_nested_containers_and_bool_elements() {
        #[rustfmt::skip]
        let buf = [
            // 1: list<list<bool>> [[t, f], []], bool element type 2 as the spec says
            0x19, 0x29, 0x22, 0x01, 0x00, 0x02,
            // 2: map<binary, struct> {"k": {1: list<struct>[{}]}}
            0x1b, 0x01, 0x8c, 0x01, b'k', 0x19, 0x1c, 0x00, 0x00,
            0x00,
        ];
        check(Protocol::Compact, &buf);
    }

    #[test]
    fn unknown_types_are_errors() {
        let l = Limits::default();
        assert_eq!(
            err(Protocol::Binary, l, &[0x01, 0, 1]),
            SkipErrorKind::UnknownType(1)
        );
        assert_eq!(
            err(Protocol::Binary, l, &[0x05, 0, 1]),
            SkipErrorKind::UnknownType(5)
        );
        assert_eq!(
            err(Protocol::Binary, l, &[0x11]),
            SkipErrorKind::UnknownType(0x11)
        );
        assert_eq!(
            err(Protocol::Binary, l, &[0x0f, 0, 1, 0x07, 0, 0, 0, 1]),
            SkipErrorKind::UnknownType(7)
        );
        assert_eq!(
            err(Protocol::Compact, l, &[0x1e]),
            SkipErrorKind::UnknownType(14)
        );
        assert_eq!(
            err(Protocol::Compact, l, &[0x10]),
            SkipErrorKind::UnknownType(0)
        );
        assert_eq!(
            err(Protocol::Compact, l, &[0x1b, 0x01, 0xe5]),
            SkipErrorKind::UnknownType(14)
        );
    }

    #[test]
    fn negative_sizes_are_errors() {
        let l = Limits::default();
        assert_eq!(
            err(Protocol::Binary, l, &[0x0b, 0, 1, 0xff, 0xff, 0xff, 0xff]),
            SkipErrorKind::NegativeSize(-1)
        );
        assert_eq!(
            err(Protocol::Binary, l, &[0x0f, 0, 1, 0x08, 0x80, 0, 0, 0]),
            SkipErrorKind::NegativeSize(i64::from(i32::MIN))
        );
        assert_eq!(
            err(Protocol::Compact, l, &[0x18, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            SkipErrorKind::NegativeSize(-1)
        );
        assert_eq!(
            err(Protocol::Compact, l, &[0x18, 0x80, 0x80, 0x80, 0x80, 0x80]),
            SkipErrorKind::BadVarint
        );
        assert_eq!(
            err(
                Protocol::Compact,
                l,
                &[
                    0x16, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80
                ]
            ),
            SkipErrorKind::BadVarint
        );
    }

    #[test]
    fn declared_sizes_are_checked_against_the_limits_at_once() {
        let l = Limits {
            max_message_bytes: 100,
            max_container_elements: 10,
            ..Limits::default()
        };
        // A 1000-byte string in a 100-byte limit fails before the bytes arrive.
        assert_eq!(
            err(Protocol::Binary, l, &[0x0b, 0, 1, 0, 0, 0x03, 0xe8]),
            SkipErrorKind::TooLarge(100)
        );
        assert_eq!(
            err(Protocol::Binary, l, &[0x0f, 0, 1, 0x08, 0, 0, 0, 11]),
            SkipErrorKind::TooManyElements {
                declared: 11,
                max: 10
            }
        );
        // 2^31-1 one-byte elements declared: refused, nothing allocated.
        let big = Limits::default();
        assert_eq!(
            err(
                Protocol::Binary,
                big,
                &[0x0f, 0, 1, 0x03, 0x7f, 0xff, 0xff, 0xff]
            ),
            SkipErrorKind::TooManyElements {
                declared: i32::MAX as u64,
                max: Limits::DEFAULT_MAX_CONTAINER_ELEMENTS
            }
        );
        // 8 i64 elements need 64 bytes: within the count limit, over the size limit.
        let small = Limits {
            max_message_bytes: 40,
            ..Limits::default()
        };
        let buf = [0x0f, 0, 1, 0x0a, 0, 0, 0, 8];
        let mut s = Skipper::new(Protocol::Binary, small);
        assert_eq!(s.skip(&buf), Skip::NeedMore);
        let mut full = buf.to_vec();
        full.resize(40, 0);
        assert_eq!(
            s.skip(&full),
            Skip::Error(SkipError {
                kind: SkipErrorKind::TooLarge(40),
                offset: 40
            })
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let l = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        // struct { 1: struct { 1: struct {} } } is depth 3: fine.
        let ok = [0x0c, 0, 1, 0x0c, 0, 1, 0, 0, 0];
        assert_eq!(
            Skipper::new(Protocol::Binary, l).skip(&ok),
            Skip::Complete(9)
        );
        let deep = [0x0c, 0, 1, 0x0c, 0, 1, 0x0c, 0, 1, 0, 0, 0, 0];
        assert_eq!(err(Protocol::Binary, l, &deep), SkipErrorKind::TooDeep(3));
        // Lists count as levels too.
        let lists = [
            0x0f, 0, 1, 0x0f, 0, 0, 0, 1, 0x0f, 0, 0, 0, 1, 0x03, 0, 0, 0, 1, 7, 0,
        ];
        assert_eq!(err(Protocol::Binary, l, &lists), SkipErrorKind::TooDeep(3));
        // A long run of nested struct openings fails at the limit, not at the end.
        let mut garbage = vec![0x0c];
        for _ in 0..10_000 {
            garbage.extend_from_slice(&[0x1c]);
        }
        assert_eq!(
            err(Protocol::Compact, Limits::default(), &garbage),
            SkipErrorKind::TooDeep(64)
        );
    }

    #[test]
    fn a_message_limit_reached_while_waiting_is_an_error() {
        let l = Limits {
            max_message_bytes: 16,
            ..Limits::default()
        };
        // Many fields, no STOP: once 16 bytes are in and more are needed, give up.
        let buf = [
            0x03, 0, 1, 0x00, 0x03, 0, 2, 0x00, 0x03, 0, 3, 0x00, 0x03, 0, 4, 0x00,
        ];
        assert!(matches!(
            Skipper::new(Protocol::Binary, l).skip(&buf[..12]),
            Skip::NeedMore
        ));
        assert_eq!(err(Protocol::Binary, l, &buf), SkipErrorKind::TooLarge(16));
    }

    #[test]
    fn bytes_past_the_limit_are_never_read() {
        let l = Limits {
            max_message_bytes: 4,
            ..Limits::default()
        };
        // Two byte fields fill the 4-byte limit; byte 4 would be the next field header,
        // and an unknown type there is still "too large", not "unknown type", so the
        // answer does not depend on whether the bytes came in one read or two.
        for protocol in [Protocol::Compact, Protocol::Binary] {
            let buf: &[u8] = match protocol {
                Protocol::Compact => &[0x13, 7, 0x13, 7, 0x0e, 0],
                _ => &[0x03, 0, 1, 7, 0x7f, 0],
            };
            let too_large = Skip::Error(SkipError {
                kind: SkipErrorKind::TooLarge(4),
                offset: 4,
            });
            assert_eq!(
                Skipper::new(protocol, l).skip(buf),
                too_large,
                "{protocol:?}"
            );
            let mut s = Skipper::new(protocol, l);
            assert_eq!(s.skip(&buf[..4]), too_large, "{protocol:?}");
        }
        // A varint straddling the limit is not read past it either.
        let buf = [0x15, 0x80, 0x80, 0x80, 0x80, 0x80];
        assert_eq!(err(Protocol::Compact, l, &buf), SkipErrorKind::TooLarge(4));
    }

    #[test]
    fn starting_at_an_offset_counts_the_header_in_the_limit() {
        let l = Limits {
            max_message_bytes: 12,
            ..Limits::default()
        };
        let buf = [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0x03, 0, 1, 7, 0];
        let mut s = Skipper::starting_at(Protocol::Binary, l, 10);
        assert!(matches!(s.skip(&buf), Skip::Error(_)));
        let mut s = Skipper::starting_at(Protocol::Binary, Limits::default(), 10);
        assert_eq!(s.skip(&buf), Skip::Complete(15));
        assert_eq!(s.position(), 15);
    }

    #[test]
    fn answers_are_final() {
        let mut s = Skipper::new(Protocol::Binary, Limits::default());
        assert_eq!(s.skip(&[0x00]), Skip::Complete(1));
        assert_eq!(s.skip(&[0x00, 0x99]), Skip::Complete(1));
        let mut s = Skipper::new(Protocol::Binary, Limits::default());
        let e = s.skip(&[0x01]);
        assert!(matches!(e, Skip::Error(_)));
        assert_eq!(s.skip(&[0x01, 0x00]), e);
    }

    #[test]
    fn a_long_string_is_resumed_without_rescanning() {
        let mut buf = vec![0x0b, 0, 1, 0, 0, 0x10, 0];
        buf.resize(7 + 4096, b'x');
        buf.push(0);
        let mut s = Skipper::new(Protocol::Binary, Limits::default());
        assert_eq!(s.skip(&buf[..100]), Skip::NeedMore);
        assert_eq!(s.position(), 100);
        assert_eq!(s.skip(&buf[..4000]), Skip::NeedMore);
        assert_eq!(s.position(), 4000);
        assert_eq!(s.skip(&buf), Skip::Complete(buf.len()));
    }

    #[test]
    fn error_display_names_the_offset() {
        let e = SkipError {
            kind: SkipErrorKind::UnknownType(9),
            offset: 12,
        };
        assert_eq!(e.to_string(), "unknown type id 9 at byte 12");
    }
}
