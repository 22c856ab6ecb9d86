//! [`Value`]: the one owned scalar of keel — a feature value, a join key, a request input, a
//! logged input. [`ValueRef`] is its borrowed view.

use serde::{Deserialize, Serialize};

use crate::{DType, ValueRef};

/// One owned scalar. The variants and their order are part of keel's stored formats (the
/// feature store's rows encode it with bincode): never reorder them.
///
/// ```
/// use keel_core::{DType, Value, ValueRef};
/// let v = Value::from(2.5);
/// assert!(v.fits(DType::F64) && !v.fits(DType::String));
/// assert_eq!(v.as_ref(), ValueRef::F64(2.5));
/// assert_eq!(Value::from(ValueRef::Str("fr")), Value::Str("fr".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum Value {
    /// Missing.
    #[default]
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

    /// Whether the value may be held by a field of `dtype` (null fits every type).
    pub fn fits(&self, dtype: DType) -> bool {
        matches!(
            (self, dtype),
            (Value::Null, _)
                | (Value::F64(_), DType::F32 | DType::F64)
                | (Value::I64(_), DType::I64)
                | (Value::Bool(_), DType::Bool)
                | (Value::Str(_), DType::String | DType::Categorical)
        )
    }

    /// The value as an `f64` where it is numeric (NaN for null; `None` for strings).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Null => Some(f64::NAN),
            Value::F64(x) => Some(*x),
            Value::I64(x) => Some(*x as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Str(_) => None,
        }
    }

    /// The borrowed view (what transforms and profiles read).
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::F64(x) => ValueRef::F64(*x),
            Value::I64(x) => ValueRef::I64(*x),
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Str(s) => ValueRef::Str(s),
        }
    }
}

impl From<ValueRef<'_>> for Value {
    /// An owned copy: `F32` widens to `F64`, a NaN float is `Null` (missing), a category
    /// becomes its label.
    fn from(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::F32(x) if x.is_nan() => Value::Null,
            ValueRef::F64(x) if x.is_nan() => Value::Null,
            ValueRef::F32(x) => Value::F64(f64::from(x)),
            ValueRef::F64(x) => Value::F64(x),
            ValueRef::I64(x) => Value::I64(x),
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Category(_, s) | ValueRef::Str(s) => Value::Str(s.to_string()),
            _ => Value::Null,
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

impl From<String> for Value {
    fn from(x: String) -> Self {
        Value::Str(x)
    }
}
