//! Test-only Thrift values: proptest strategies for random well-typed structs, and a small
//! encoder for them written from the binary and compact protocol specs, independent of
//! the crate under test (which has no general encoder).

#![allow(dead_code, unreachable_pub)]

use proptest::collection::vec;
use proptest::prelude::*;

/// A value type.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    Bool,
    Byte,
    I16,
    I32,
    I64,
    Double,
    Str,
    Uuid,
    Struct(Vec<(i16, Ty)>),
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
}

/// A value; containers carry their element types (needed when they are empty).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Byte(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(f64),
    Str(Vec<u8>),
    Uuid([u8; 16]),
    Struct(Vec<(i16, Value)>),
    List(Ty, Vec<Value>),
    Set(Ty, Vec<Value>),
    Map(Ty, Ty, Vec<(Value, Value)>),
}

impl Ty {
    fn is_leaf(&self) -> bool {
        !matches!(self, Ty::Struct(_) | Ty::List(_) | Ty::Set(_) | Ty::Map(..))
    }
}

fn leaf_ty(with_uuid: bool) -> BoxedStrategy<Ty> {
    let mut leaves = vec![
        Ty::Bool,
        Ty::Byte,
        Ty::I16,
        Ty::I32,
        Ty::I64,
        Ty::Double,
        Ty::Str,
    ];
    if with_uuid {
        leaves.push(Ty::Uuid);
    }
    proptest::sample::select(leaves).boxed()
}

/// Field ids: mostly small and increasing-ish (short compact headers), sometimes far
/// apart (long form: 0, negative, big jumps). Kept within ±16000 because the `thrift`
/// crate's compact writer computes id deltas in i16 and overflows beyond.
fn field_id() -> impl Strategy<Value = i16> {
    prop_oneof![4 => 1i16..20, 1 => -16000i16..16000]
}

/// Random types nested a few levels deep.
pub fn ty(with_uuid: bool) -> BoxedStrategy<Ty> {
    leaf_ty(with_uuid)
        .prop_recursive(4, 24, 5, |inner| {
            prop_oneof![
                vec((field_id(), inner.clone()), 0..5).prop_map(Ty::Struct),
                inner.clone().prop_map(|t| Ty::List(Box::new(t))),
                inner.clone().prop_map(|t| Ty::Set(Box::new(t))),
                (inner.clone(), inner).prop_map(|(k, v)| Ty::Map(Box::new(k), Box::new(v))),
            ]
        })
        .boxed()
}

/// Random values of type `ty`.
pub fn value_of(ty: &Ty) -> BoxedStrategy<Value> {
    // Lists of leaves are sometimes long enough for the compact long size form (>= 15).
    let count = |t: &Ty| if t.is_leaf() { 0..20usize } else { 0..4usize };
    match ty {
        Ty::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Ty::Byte => any::<i8>().prop_map(Value::Byte).boxed(),
        Ty::I16 => any::<i16>().prop_map(Value::I16).boxed(),
        Ty::I32 => any::<i32>().prop_map(Value::I32).boxed(),
        Ty::I64 => any::<i64>().prop_map(Value::I64).boxed(),
        Ty::Double => any::<f64>().prop_map(Value::Double).boxed(),
        Ty::Str => prop_oneof![
            8 => vec(any::<u8>(), 0..20),
            1 => vec(any::<u8>(), 100..400),
        ]
        .prop_map(Value::Str)
        .boxed(),
        Ty::Uuid => any::<[u8; 16]>().prop_map(Value::Uuid).boxed(),
        Ty::Struct(fields) => {
            let fields: Vec<_> = fields
                .iter()
                .map(|(id, t)| {
                    let id = *id;
                    proptest::option::of(value_of(t)).prop_map(move |v| v.map(|v| (id, v)))
                })
                .collect();
            fields
                .prop_map(|fs| Value::Struct(fs.into_iter().flatten().collect()))
                .boxed()
        }
        Ty::List(t) => {
            let t2 = (**t).clone();
            vec(value_of(t), count(t))
                .prop_map(move |vs| Value::List(t2.clone(), vs))
                .boxed()
        }
        Ty::Set(t) => {
            let t2 = (**t).clone();
            vec(value_of(t), count(t))
                .prop_map(move |vs| Value::Set(t2.clone(), vs))
                .boxed()
        }
        Ty::Map(k, v) => {
            let (k2, v2) = ((**k).clone(), (**v).clone());
            vec((value_of(k), value_of(v)), count(v))
                .prop_map(move |kvs| Value::Map(k2.clone(), v2.clone(), kvs))
                .boxed()
        }
    }
}

/// Random struct values (the body of a message).
pub fn struct_value(with_uuid: bool) -> BoxedStrategy<Value> {
    vec((field_id(), ty(with_uuid)), 0..6)
        .prop_map(Ty::Struct)
        .prop_flat_map(|t| value_of(&t))
        .boxed()
}

pub fn binary_type(t: &Ty) -> u8 {
    match t {
        Ty::Bool => 2,
        Ty::Byte => 3,
        Ty::Double => 4,
        Ty::I16 => 6,
        Ty::I32 => 8,
        Ty::I64 => 10,
        Ty::Str => 11,
        Ty::Struct(_) => 12,
        Ty::Map(..) => 13,
        Ty::Set(_) => 14,
        Ty::List(_) => 15,
        Ty::Uuid => 16,
    }
}

pub fn compact_type(t: &Ty) -> u8 {
    match t {
        // The spec's element type for bools (writers in the wild use 1).
        Ty::Bool => 2,
        Ty::Byte => 3,
        Ty::I16 => 4,
        Ty::I32 => 5,
        Ty::I64 => 6,
        Ty::Double => 7,
        Ty::Str => 8,
        Ty::List(_) => 9,
        Ty::Set(_) => 10,
        Ty::Map(..) => 11,
        Ty::Struct(_) => 12,
        Ty::Uuid => 13,
    }
}

pub fn type_of(v: &Value) -> Ty {
    match v {
        Value::Bool(_) => Ty::Bool,
        Value::Byte(_) => Ty::Byte,
        Value::I16(_) => Ty::I16,
        Value::I32(_) => Ty::I32,
        Value::I64(_) => Ty::I64,
        Value::Double(_) => Ty::Double,
        Value::Str(_) => Ty::Str,
        Value::Uuid(_) => Ty::Uuid,
        // Only the kind matters for type ids.
        Value::Struct(_) => Ty::Struct(Vec::new()),
        Value::List(t, _) => Ty::List(Box::new(t.clone())),
        Value::Set(t, _) => Ty::Set(Box::new(t.clone())),
        Value::Map(k, v, _) => Ty::Map(Box::new(k.clone()), Box::new(v.clone())),
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn zz32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn zz64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Encodes `v` in binary (`compact == false`) or compact protocol.
pub fn encode(v: &Value, compact: bool, out: &mut Vec<u8>) {
    match v {
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::Byte(b) => out.push(*b as u8),
        Value::I16(i) if compact => varint(out, zz32(i32::from(*i))),
        Value::I16(i) => out.extend_from_slice(&i.to_be_bytes()),
        Value::I32(i) if compact => varint(out, zz32(*i)),
        Value::I32(i) => out.extend_from_slice(&i.to_be_bytes()),
        Value::I64(i) if compact => varint(out, zz64(*i)),
        Value::I64(i) => out.extend_from_slice(&i.to_be_bytes()),
        Value::Double(d) if compact => out.extend_from_slice(&d.to_le_bytes()),
        Value::Double(d) => out.extend_from_slice(&d.to_be_bytes()),
        Value::Str(s) => {
            if compact {
                varint(out, s.len() as u64);
            } else {
                out.extend_from_slice(&(s.len() as i32).to_be_bytes());
            }
            out.extend_from_slice(s);
        }
        Value::Uuid(u) => out.extend_from_slice(u),
        Value::Struct(fields) => {
            let mut last = 0i16;
            for (id, fv) in fields {
                let t = type_of(fv);
                if compact {
                    let ct = match fv {
                        Value::Bool(true) => 1,
                        Value::Bool(false) => 2,
                        _ => compact_type(&t),
                    };
                    let delta = i32::from(*id) - i32::from(last);
                    if (1..=15).contains(&delta) {
                        out.push(((delta as u8) << 4) | ct);
                    } else {
                        out.push(ct);
                        varint(out, zz32(i32::from(*id)));
                    }
                    last = *id;
                    if matches!(fv, Value::Bool(_)) {
                        continue;
                    }
                } else {
                    out.push(binary_type(&t));
                    out.extend_from_slice(&id.to_be_bytes());
                }
                encode(fv, compact, out);
            }
            out.push(0);
        }
        Value::List(t, vs) | Value::Set(t, vs) => {
            if compact {
                if vs.len() < 15 {
                    out.push(((vs.len() as u8) << 4) | compact_type(t));
                } else {
                    out.push(0xf0 | compact_type(t));
                    varint(out, vs.len() as u64);
                }
            } else {
                out.push(binary_type(t));
                out.extend_from_slice(&(vs.len() as i32).to_be_bytes());
            }
            for v in vs {
                encode(v, compact, out);
            }
        }
        Value::Map(k, v, kvs) => {
            if compact {
                if kvs.is_empty() {
                    out.push(0);
                } else {
                    varint(out, kvs.len() as u64);
                    out.push((compact_type(k) << 4) | compact_type(v));
                }
            } else {
                out.push(binary_type(k));
                out.push(binary_type(v));
                out.extend_from_slice(&(kvs.len() as i32).to_be_bytes());
            }
            for (kv, vv) in kvs {
                encode(kv, compact, out);
                encode(vv, compact, out);
            }
        }
    }
}

/// Message types 1..=4.
pub fn kind_byte() -> impl Strategy<Value = u8> {
    1u8..=4
}

/// Encodes a message header: 0 strict binary, 1 non-strict binary, 2 compact.
pub fn encode_header(variant: u8, name: &str, kind: u8, seqid: i32, out: &mut Vec<u8>) {
    match variant {
        0 => {
            out.extend_from_slice(&[0x80, 0x01, 0x00, kind]);
            out.extend_from_slice(&(name.len() as i32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&seqid.to_be_bytes());
        }
        1 => {
            out.extend_from_slice(&(name.len() as i32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(kind);
            out.extend_from_slice(&seqid.to_be_bytes());
        }
        _ => {
            out.push(0x82);
            out.push((kind << 5) | 1);
            varint(out, u64::from(seqid as u32));
            varint(out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
        }
    }
}

/// Split points for feeding `len` bytes in chunks: sorted, deduplicated, inside 1..len.
pub fn splits(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw
        .iter()
        .filter(|_| len > 1)
        .map(|r| 1 + r % (len.max(2) - 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}
