//! Field-level reading and writing for the few structs this crate decodes or builds
//! itself (TApplicationException, TTwitter headers, a reply's first field), in binary or
//! compact protocol. Everything else is skipped, never decoded, so this stays small.

use bytes::{BufMut, BytesMut};

use crate::Limits;
use crate::error::ThriftError;
use crate::header::Protocol;
use crate::skip::{Skip, SkipError, SkipErrorKind, Skipper};

/// A Thrift value type, independent of how a protocol numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TType {
    Bool,
    Byte,
    Double,
    I16,
    I32,
    I64,
    String,
    Struct,
    Map,
    Set,
    List,
    Uuid,
}

impl TType {
    /// The binary protocol's type id.
    pub(crate) fn from_binary(id: u8) -> Option<TType> {
        Some(match id {
            2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::Double,
            6 => TType::I16,
            8 => TType::I32,
            10 => TType::I64,
            11 => TType::String,
            12 => TType::Struct,
            13 => TType::Map,
            14 => TType::Set,
            15 => TType::List,
            16 => TType::Uuid,
            _ => return None,
        })
    }

    pub(crate) fn binary_id(self) -> u8 {
        match self {
            TType::Bool => 2,
            TType::Byte => 3,
            TType::Double => 4,
            TType::I16 => 6,
            TType::I32 => 8,
            TType::I64 => 10,
            TType::String => 11,
            TType::Struct => 12,
            TType::Map => 13,
            TType::Set => 14,
            TType::List => 15,
            TType::Uuid => 16,
        }
    }

    /// The compact protocol's type nibble. Both bool ids (1 true, 2 false) mean bool:
    /// in a field header they carry the value, as a collection element type writers
    /// disagree on which one to use.
    pub(crate) fn from_compact(id: u8) -> Option<TType> {
        Some(match id {
            1 | 2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::I16,
            5 => TType::I32,
            6 => TType::I64,
            7 => TType::Double,
            8 => TType::String,
            9 => TType::List,
            10 => TType::Set,
            11 => TType::Map,
            12 => TType::Struct,
            13 => TType::Uuid,
            _ => return None,
        })
    }

    /// The compact type nibble for anything but a bool field header (bool elements are
    /// written as 1, as the Java and Python libraries do).
    pub(crate) fn compact_id(self) -> u8 {
        match self {
            TType::Bool => 1,
            TType::Byte => 3,
            TType::I16 => 4,
            TType::I32 => 5,
            TType::I64 => 6,
            TType::Double => 7,
            TType::String => 8,
            TType::List => 9,
            TType::Set => 10,
            TType::Map => 11,
            TType::Struct => 12,
            TType::Uuid => 13,
        }
    }
}

/// The outcome of reading an unsigned LEB128 varint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Varint {
    /// The value and the number of bytes it took.
    Done(u64, usize),
    /// The buffer ends inside the varint.
    NeedMore,
    /// The varint is longer than `max_bytes`.
    Bad,
}

/// Reads a varint at the start of `buf`, at most `max_bytes` long (5 for 32-bit values,
/// 10 for 64-bit ones). Bits beyond 64 are dropped, as the reference libraries do.
pub(crate) fn read_varint(buf: &[u8], max_bytes: usize) -> Varint {
    let mut value = 0u64;
    for (i, &b) in buf.iter().take(max_bytes).enumerate() {
        if i < 10 {
            value |= u64::from(b & 0x7f) << (7 * i);
        }
        if b & 0x80 == 0 {
            return Varint::Done(value, i + 1);
        }
    }
    if buf.len() >= max_bytes {
        Varint::Bad
    } else {
        Varint::NeedMore
    }
}

pub(crate) fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

pub(crate) fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

pub(crate) fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A field header read by [`Reader::field`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) id: i16,
    pub(crate) ttype: TType,
    /// For a compact bool field, its value (carried in the header).
    pub(crate) compact_bool: Option<bool>,
}

/// Reads fields and values from a buffer that holds them whole: running out of bytes is
/// an error here, not a reason to wait.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    compact: bool,
    limits: Limits,
    last_id: i16,
    outer_ids: Vec<i16>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], protocol: Protocol, limits: Limits) -> Self {
        Reader {
            buf,
            pos: 0,
            compact: protocol.is_compact(),
            limits,
            last_id: 0,
            outer_ids: Vec::new(),
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ThriftError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(ThriftError::Truncated(what))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ThriftError> {
        Ok(self.take(1, what)?[0])
    }

    fn varint(&mut self, max_bytes: usize, what: &'static str) -> Result<u64, ThriftError> {
        match read_varint(&self.buf[self.pos..], max_bytes) {
            Varint::Done(v, n) => {
                self.pos += n;
                Ok(v)
            }
            Varint::NeedMore => Err(ThriftError::Truncated(what)),
            Varint::Bad => Err(self.malformed(SkipErrorKind::BadVarint)),
        }
    }

    fn malformed(&self, kind: SkipErrorKind) -> ThriftError {
        ThriftError::Malformed(SkipError {
            kind,
            offset: self.pos,
        })
    }

    /// Enters a struct (the compact field-id delta restarts at 0).
    pub(crate) fn struct_begin(&mut self) {
        self.outer_ids.push(self.last_id);
        self.last_id = 0;
    }

    /// Reads the next field header, or `None` at the struct's STOP (which also leaves
    /// the struct).
    pub(crate) fn field(&mut self) -> Result<Option<Field>, ThriftError> {
        let b = self.u8("field header")?;
        if b == 0 {
            self.last_id = self.outer_ids.pop().unwrap_or(0);
            return Ok(None);
        }
        if !self.compact {
            let ttype = TType::from_binary(b).ok_or_else(|| self.unknown_type(b))?;
            let id = self.take(2, "field id")?;
            return Ok(Some(Field {
                id: i16::from_be_bytes([id[0], id[1]]),
                ttype,
                compact_bool: None,
            }));
        }
        let nibble = b & 0x0f;
        let ttype = TType::from_compact(nibble).ok_or_else(|| self.unknown_type(nibble))?;
        let delta = b >> 4;
        let id = if delta == 0 {
            unzigzag(self.varint(5, "field id")?) as i16
        } else {
            self.last_id.wrapping_add(i16::from(delta))
        };
        self.last_id = id;
        let compact_bool = match nibble {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        };
        Ok(Some(Field {
            id,
            ttype,
            compact_bool,
        }))
    }

    fn unknown_type(&self, id: u8) -> ThriftError {
        ThriftError::Malformed(SkipError {
            kind: SkipErrorKind::UnknownType(id),
            offset: self.pos.saturating_sub(1),
        })
    }

    /// Skips the value of `field`.
    pub(crate) fn skip_field(&mut self, field: &Field) -> Result<(), ThriftError> {
        if field.compact_bool.is_some() {
            return Ok(());
        }
        self.skip(field.ttype)
    }

    /// Skips one value of type `ttype` (for a bool, an element-style bool byte).
    pub(crate) fn skip(&mut self, ttype: TType) -> Result<(), ThriftError> {
        let protocol = if self.compact {
            Protocol::Compact
        } else {
            Protocol::Binary
        };
        let limits = Limits {
            max_message_bytes: self.buf.len(),
            ..self.limits
        };
        let mut skipper = Skipper::value(protocol, ttype, limits, self.pos);
        match skipper.skip(self.buf) {
            Skip::Complete(end) => {
                self.pos = end;
                Ok(())
            }
            Skip::NeedMore => Err(ThriftError::Truncated("value")),
            Skip::Error(e) => Err(ThriftError::Malformed(e)),
        }
    }

    pub(crate) fn bool(&mut self, field: &Field) -> Result<bool, ThriftError> {
        match field.compact_bool {
            Some(v) => Ok(v),
            None => Ok(self.u8("bool")? != 0),
        }
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ThriftError> {
        if self.compact {
            Ok(unzigzag(self.varint(5, "i32")?) as i32)
        } else {
            self.i32_raw("i32")
        }
    }

    pub(crate) fn i64(&mut self) -> Result<i64, ThriftError> {
        if self.compact {
            Ok(unzigzag(self.varint(10, "i64")?))
        } else {
            let b = self.take(8, "i64")?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(i64::from_be_bytes(a))
        }
    }

    /// A size (string length or element count), checked against the bytes left so a
    /// declared size never drives an allocation.
    fn size(&mut self, what: &'static str) -> Result<usize, ThriftError> {
        let size = if self.compact {
            self.varint(5, what)? as u32 as i32
        } else {
            self.i32_raw(what)?
        };
        let size = usize::try_from(size)
            .map_err(|_| self.malformed(SkipErrorKind::NegativeSize(i64::from(size))))?;
        if size > self.buf.len() - self.pos {
            return Err(ThriftError::Truncated(what));
        }
        Ok(size)
    }

    fn i32_raw(&mut self, what: &'static str) -> Result<i32, ThriftError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn binary(&mut self) -> Result<&'a [u8], ThriftError> {
        let len = self.size("binary")?;
        self.take(len, "binary")
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, ThriftError> {
        let bytes = self.binary()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ThriftError::NotUtf8(field))
    }

    /// Reads a list or set header: element type and count. The element type of an
    /// empty list is not checked (writers put anything there) and reads as byte.
    pub(crate) fn list_begin(&mut self) -> Result<(TType, usize), ThriftError> {
        let (elem, count) = if self.compact {
            let b = self.u8("list header")?;
            let count = if b >> 4 == 15 {
                self.varint(5, "list size")? as u32 as i32
            } else {
                i32::from(b >> 4)
            };
            (b & 0x0f, count)
        } else {
            let t = self.u8("list header")?;
            (t, self.i32_raw("list size")?)
        };
        let count = usize::try_from(count)
            .map_err(|_| self.malformed(SkipErrorKind::NegativeSize(i64::from(count))))?;
        let max = self.limits.max_container_elements;
        if count > max {
            return Err(self.malformed(SkipErrorKind::TooManyElements {
                declared: count as u64,
                max,
            }));
        }
        // Every element takes at least one byte, so a count above the bytes left is a lie.
        if count > self.buf.len() - self.pos {
            return Err(ThriftError::Truncated("list"));
        }
        if count == 0 {
            return Ok((TType::Byte, 0));
        }
        let ttype = if self.compact {
            TType::from_compact(elem)
        } else {
            TType::from_binary(elem)
        };
        let ttype = ttype.ok_or_else(|| self.malformed(SkipErrorKind::UnknownType(elem)))?;
        Ok((ttype, count))
    }
}

/// Writes fields and values in binary or compact protocol.
pub(crate) struct Writer<'a> {
    out: &'a mut BytesMut,
    compact: bool,
    last_id: i16,
    outer_ids: Vec<i16>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut BytesMut, protocol: Protocol) -> Self {
        Writer {
            out,
            compact: protocol.is_compact(),
            last_id: 0,
            outer_ids: Vec::new(),
        }
    }

    pub(crate) fn struct_begin(&mut self) {
        self.outer_ids.push(self.last_id);
        self.last_id = 0;
    }

    /// Writes the STOP byte and leaves the struct.
    pub(crate) fn struct_end(&mut self) {
        self.out.put_u8(0);
        self.last_id = self.outer_ids.pop().unwrap_or(0);
    }

    fn field_header(&mut self, compact_type: u8, binary_type: u8, id: i16) {
        if !self.compact {
            self.out.put_u8(binary_type);
            self.out.put_i16(id);
            return;
        }
        let delta = i32::from(id) - i32::from(self.last_id);
        if (1..=15).contains(&delta) {
            self.out.put_u8(((delta as u8) << 4) | compact_type);
        } else {
            self.out.put_u8(compact_type);
            put_varint(self.out, zigzag32(i32::from(id)));
        }
        self.last_id = id;
    }

    /// A field header for any type but bool.
    pub(crate) fn field(&mut self, ttype: TType, id: i16) {
        self.field_header(ttype.compact_id(), ttype.binary_id(), id);
    }

    pub(crate) fn bool_field(&mut self, id: i16, value: bool) {
        if self.compact {
            self.field_header(if value { 1 } else { 2 }, 0, id);
        } else {
            self.field_header(0, TType::Bool.binary_id(), id);
            self.out.put_u8(u8::from(value));
        }
    }

    pub(crate) fn i32(&mut self, v: i32) {
        if self.compact {
            put_varint(self.out, zigzag32(v));
        } else {
            self.out.put_i32(v);
        }
    }

    pub(crate) fn i64(&mut self, v: i64) {
        if self.compact {
            put_varint(self.out, zigzag64(v));
        } else {
            self.out.put_i64(v);
        }
    }

    fn size(&mut self, n: usize) {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        if self.compact {
            put_varint(self.out, u64::from(n as u32));
        } else {
            self.out.put_i32(n);
        }
    }

    /// Writes a string or binary value; values over 2 GiB are cut (nothing this crate
    /// writes comes close).
    pub(crate) fn binary(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(i32::MAX as usize)];
        self.size(v.len());
        self.out.put_slice(v);
    }

    pub(crate) fn list_begin(&mut self, elem: TType, len: usize) {
        if self.compact {
            if len < 15 {
                self.out.put_u8(((len as u8) << 4) | elem.compact_id());
            } else {
                self.out.put_u8(0xf0 | elem.compact_id());
                self.size(len);
            }
        } else {
            self.out.put_u8(elem.binary_id());
            self.size(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(read_varint(&[0x01], 5), Varint::Done(1, 1));
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], 5),
            Varint::Done(0xffff_ffff, 5)
        );
        assert_eq!(read_varint(&[0xff, 0xff], 5), Varint::NeedMore);
        assert_eq!(read_varint(&[], 5), Varint::NeedMore);
        assert_eq!(read_varint(&[0x80; 5], 5), Varint::Bad);
        assert_eq!(read_varint(&[0x80; 11], 10), Varint::Bad);
        let mut out = BytesMut::new();
        put_varint(&mut out, 300);
        assert_eq!(&out[..], &[0xac, 0x02]);
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag64(v)), v);
        }
        for v in [0i32, 1, -1, i32::MAX, i32::MIN] {
            assert_eq!(unzigzag(zigzag32(v)) as i32, v);
        }
        assert_eq!(zigzag32(-1), 1);
        assert_eq!(zigzag32(1), 2);
    }

    #[test]
    fn compact_field_ids_use_deltas_and_long_form() {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out, Protocol::Compact);
        w.struct_begin();
        w.field(TType::String, 0); // long form for id 0
        w.binary(b"ok");
        w.field(TType::I32, 2); // delta 2
        w.i32(6);
        w.bool_field(40, true); // delta 38: long form
        w.struct_end();
        assert_eq!(
            &out[..],
            &[0x08, 0x00, 0x02, b'o', b'k', 0x25, 0x0c, 0x01, 0x50, 0x00]
        );
        let mut r = Reader::new(&out, Protocol::Compact, Limits::default());
        r.struct_begin();
        let f = r.field().unwrap().unwrap();
        assert_eq!((f.id, f.ttype), (0, TType::String));
        assert_eq!(r.string("s").unwrap(), "ok");
        let f = r.field().unwrap().unwrap();
        assert_eq!((f.id, f.ttype), (2, TType::I32));
        assert_eq!(r.i32().unwrap(), 6);
        let f = r.field().unwrap().unwrap();
        assert_eq!((f.id, f.compact_bool), (40, Some(true)));
        assert!(r.field().unwrap().is_none());
        assert_eq!(r.pos(), out.len());
    }

    #[test]
    fn reader_refuses_sizes_beyond_the_buffer() {
        // binary string claiming 1 GiB
        let buf = [0x40, 0x00, 0x00, 0x00, b'x'];
        let mut r = Reader::new(&buf, Protocol::Binary, Limits::default());
        assert!(matches!(r.binary(), Err(ThriftError::Truncated(_))));
        let buf = [0x0c, 0x7f, 0xff, 0xff, 0xff];
        let mut r = Reader::new(&buf, Protocol::Binary, Limits::default());
        assert!(matches!(
            r.list_begin(),
            Err(ThriftError::Malformed(SkipError {
                kind: SkipErrorKind::TooManyElements { .. },
                ..
            }))
        ));
        let buf = [0x0c, 0x00, 0x00, 0x01, 0x00];
        let mut r = Reader::new(&buf, Protocol::Binary, Limits::default());
        assert_eq!(r.list_begin(), Err(ThriftError::Truncated("list")));
    }

    #[test]
    fn reader_list_headers() {
        let l = Limits::default();
        let mut r = Reader::new(&[0x0c, 0, 0, 0, 1, 0], Protocol::Binary, l);
        assert_eq!(r.list_begin(), Ok((TType::Struct, 1)));
        // An empty list's element type is not checked.
        let mut r = Reader::new(&[0x63, 0, 0, 0, 0], Protocol::Binary, l);
        assert_eq!(r.list_begin(), Ok((TType::Byte, 0)));
        let mut r = Reader::new(&[0x07, 0, 0, 0, 1, 0], Protocol::Binary, l);
        assert!(matches!(
            r.list_begin(),
            Err(ThriftError::Malformed(SkipError {
                kind: SkipErrorKind::UnknownType(7),
                ..
            }))
        ));
        let mut r = Reader::new(&[0x08, 0xff, 0xff, 0xff, 0xff], Protocol::Binary, l);
        assert!(matches!(
            r.list_begin(),
            Err(ThriftError::Malformed(SkipError {
                kind: SkipErrorKind::NegativeSize(-1),
                ..
            }))
        ));
        // compact: short and long size forms
        let mut r = Reader::new(&[0x2c, 0, 0], Protocol::Compact, l);
        assert_eq!(r.list_begin(), Ok((TType::Struct, 2)));
        let mut buf = vec![0xfc, 0x10];
        buf.resize(2 + 16, 0);
        let mut r = Reader::new(&buf, Protocol::Compact, l);
        assert_eq!(r.list_begin(), Ok((TType::Struct, 16)));
    }
}
