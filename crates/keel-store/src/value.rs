//! Feature values and the stored row format.

use keel_core::envelope::{Kind, Persisted};
use keel_core::DType;
use serde::{Deserialize, Serialize};

/// One feature or join-key value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Value {
    /// Missing.
    Null,
    /// A float (f32 and f64 features).
    F64(f64),
    /// An integer.
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A string or category label.
    Str(String),
}

impl Value {
    /// Whether the value is `Null` (or a NaN float).
    pub fn is_null(&self) -> bool {
        match self {
            Value::Null => true,
            Value::F64(x) => x.is_nan(),
            _ => false,
        }
    }

    /// Whether the value may be stored under `dtype`.
    pub(crate) fn fits(&self, dtype: DType) -> bool {
        matches!(
            (self, dtype),
            (Value::Null, _)
                | (Value::F64(_), DType::F32 | DType::F64)
                | (Value::I64(_), DType::I64)
                | (Value::Bool(_), DType::Bool)
                | (Value::Str(_), DType::String | DType::Categorical)
        )
    }

    /// The value as an `f64` where it is numeric (NaN for null).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Null => Some(f64::NAN),
            Value::F64(x) => Some(*x),
            Value::I64(x) => Some(*x as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Str(_) => None,
        }
    }

    pub(crate) fn size(&self) -> usize {
        match self {
            Value::Str(s) => s.len() + 8,
            _ => 9,
        }
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::F64(x)
    }
}
impl From<i64> for Value {
    fn from(x: i64) -> Self {
        Value::I64(x)
    }
}
impl From<bool> for Value {
    fn from(x: bool) -> Self {
        Value::Bool(x)
    }
}
impl From<&str> for Value {
    fn from(x: &str) -> Self {
        Value::Str(x.to_string())
    }
}

/// What one key holds: the feature values of a view row, in view order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredRow(pub Vec<Value>);

impl Persisted for StoredRow {
    const KIND: Kind = Kind(*b"FROW");
    const FORMAT_VERSION: u16 = 1;
}

impl StoredRow {
    /// The envelope bytes of `StoredRow(values.to_vec())`, without copying the values first
    /// (the write path encodes every row of a batch).
    pub(crate) fn encode_slice(values: &[Value]) -> Result<Vec<u8>, keel_core::EnvelopeError> {
        let size: usize = values.iter().map(Value::size).sum();
        let mut out = Vec::with_capacity(keel_core::envelope::HEADER_LEN + size + 16);
        // A newtype around a Vec and a bare slice have the same bincode layout. Encoded
        // straight into the envelope: no payload buffer of its own, no copy.
        keel_core::envelope::wrap_into(Self::KIND, Self::FORMAT_VERSION, &mut out, |o| {
            bincode::serde::encode_into_std_write(values, o, bincode::config::standard())
                .map(drop)
                .map_err(keel_core::EnvelopeError::Encode)
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_encoding_is_the_envelope_encoding() {
        let v = vec![
            Value::Null,
            Value::F64(1.5),
            Value::I64(-3),
            Value::Bool(true),
            Value::Str("x\0y".into()),
        ];
        assert_eq!(
            StoredRow::encode_slice(&v).unwrap(),
            keel_core::envelope::encode(&StoredRow(v)).unwrap()
        );
    }
}

#[cfg(test)]
mod golden {
    use super::{StoredRow, Value};

    /// A stored row (`FROW`) keeps its committed v1 blob readable, byte for byte: every value
    /// variant in declaration order (the order is part of the format).
    #[test]
    fn golden_stored_row_v1_reads_back() {
        let row = StoredRow(vec![
            Value::Null,
            Value::F64(-1.5),
            Value::F64(f64::MAX),
            Value::I64(-42),
            Value::I64(i64::MAX),
            Value::Bool(true),
            Value::Str("card-é".into()),
            Value::Str(String::new()),
        ]);
        let path =
            std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
                .join("tests/golden/stored_row_v1.bin");
        keel_core::envelope::assert_golden(&path, &row);
    }
}
