//! [`DataHash`]: a content hash of a dataset, independent of how it was chunked.
//!
//! # Canonical encoding (version 1)
//!
//! The hash is BLAKE3 over a header followed by one BLAKE3 digest per column:
//!
//! ```text
//! header  = b"keel.datahash.v1\0"
//!           u64le(ncols)
//!           for each field: u64le(len(name)) name  u8(dtype tag)  u8(nullable)
//!           u64le(nrows)
//! column  = BLAKE3 over the column's cells in row order, each cell:
//!           missing                 -> 0x00
//!           f32                     -> 0x01 f32 bits, little-endian (4 bytes)
//!           f64                     -> 0x01 f64 bits, little-endian (8 bytes)
//!           i64                     -> 0x01 i64 little-endian (8 bytes)
//!           bool                    -> 0x02 (false) | 0x03 (true)
//!           categorical and string  -> 0x01 u64le(len) utf-8 bytes   (the label, never the code)
//! hash    = BLAKE3(header || column_0 || ... || column_{n-1})
//! ```
//!
//! Dtype tags are [`DType::tag`](crate::DType::tag). Every NaN is "missing" and encodes as
//! `0x00`, so NaN payload bits never matter. Categorical cells hash their label, so two frames
//! with the same labels under different vocabulary orders hash alike. Because each column is a
//! single byte stream, feeding the rows in any number of chunks ([`DataHasher::update`]) yields
//! the same hash; nothing depends on threads, platform or endianness.

use crate::error::{Error, Result};
use crate::frame::{Column, Frame};
use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A 32-byte content hash of a dataset; displays as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DataHash(pub [u8; 32]);

impl DataHash {
    /// The hash of a whole frame.
    pub fn of(frame: &Frame) -> DataHash {
        let mut h = DataHasher::new(frame.schema());
        // A frame always matches its own schema.
        let _ = h.update(frame);
        h.finish()
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<DataHash> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(DataHash(out))
    }
}

impl fmt::Display for DataHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DataHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataHash({self})")
    }
}

/// Incremental [`DataHash`]: feed chunks of rows with the same schema, in order.
#[derive(Debug, Clone)]
pub struct DataHasher {
    schema: Schema,
    columns: Vec<blake3::Hasher>,
    nrows: u64,
    buf: Vec<u8>,
}

impl DataHasher {
    /// A hasher for frames of `schema`.
    pub fn new(schema: &Schema) -> Self {
        DataHasher {
            schema: schema.clone(),
            columns: vec![blake3::Hasher::new(); schema.len()],
            nrows: 0,
            buf: Vec::new(),
        }
    }

    /// Feeds the next rows. The frame's schema must equal the hasher's.
    pub fn update(&mut self, frame: &Frame) -> Result<()> {
        if frame.schema() != &self.schema {
            return Err(Error::Validation {
                column: String::new(),
                row: usize::MAX,
                reason: format!(
                    "schema [{}] differs from the hasher's [{}]",
                    frame.schema(),
                    self.schema
                ),
            });
        }
        for (col, hasher) in frame.columns().iter().zip(&mut self.columns) {
            self.buf.clear();
            encode_column(col, &mut self.buf);
            hasher.update(&self.buf);
        }
        self.nrows += frame.nrows() as u64;
        Ok(())
    }

    /// The hash of every row fed so far.
    pub fn finish(&self) -> DataHash {
        let mut h = blake3::Hasher::new();
        h.update(b"keel.datahash.v1\0");
        h.update(&(self.schema.len() as u64).to_le_bytes());
        for f in self.schema.fields() {
            h.update(&(f.name.len() as u64).to_le_bytes());
            h.update(f.name.as_bytes());
            h.update(&[f.dtype.tag(), u8::from(f.nullable)]);
        }
        h.update(&self.nrows.to_le_bytes());
        for c in &self.columns {
            h.update(c.finalize().as_bytes());
        }
        DataHash(*h.finalize().as_bytes())
    }
}

fn encode_column(col: &Column, out: &mut Vec<u8>) {
    let n = col.len();
    match col {
        Column::F32(v) => v.iter().for_each(|x| {
            if x.is_nan() {
                out.push(0);
            } else {
                out.push(1);
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
        }),
        Column::F64(v) => v.iter().for_each(|x| {
            if x.is_nan() {
                out.push(0);
            } else {
                out.push(1);
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
        }),
        Column::I64 { values, validity } => (0..n).for_each(|i| {
            if validity.is_valid(i) {
                out.push(1);
                out.extend_from_slice(&values[i].to_le_bytes());
            } else {
                out.push(0);
            }
        }),
        Column::Bool { values, validity } => (0..n).for_each(|i| {
            out.push(if !validity.is_valid(i) {
                0
            } else if values[i] {
                3
            } else {
                2
            });
        }),
        Column::Categorical { .. } | Column::String { .. } => {
            (0..n).for_each(|i| match col.get(i) {
                crate::ValueRef::Category(_, s) | crate::ValueRef::Str(s) => {
                    out.push(1);
                    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                _ => out.push(0),
            })
        }
    }
}

/// FNV-1a, 64 bits: a small, stable, non-cryptographic hash (store key prefixes, canary
/// routing, log sampling). Its values are part of on-disk keys: never change it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_parts([bytes])
}

/// [`fnv1a`] of the concatenation of `parts`, without building it.
pub fn fnv1a_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
