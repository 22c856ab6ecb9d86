//! The stored row format (feature values are [`keel_core::Value`]).

use keel_core::envelope::{Kind, Persisted};
use serde::{Deserialize, Serialize};

pub use keel_core::Value;

/// Bytes a value takes in a stored row, about (capacity hint for encoding).
pub(crate) fn encoded_size(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len() + 8,
        _ => 9,
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
        let size: usize = values.iter().map(encoded_size).sum();
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
