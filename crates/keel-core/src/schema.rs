//! Logical types and schemas.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A column's logical type. Serialised by name in lower case (`"f64"`, `"categorical"`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DType {
    /// 32-bit float; missing is NaN.
    F32,
    /// 64-bit float; missing is NaN.
    F64,
    /// 64-bit signed integer with a validity mask.
    I64,
    /// Boolean with a validity mask.
    Bool,
    /// Dictionary-encoded strings: `u32` codes into a per-column vocabulary.
    Categorical,
    /// UTF-8 strings with a validity mask.
    String,
}

impl DType {
    /// The stable one-byte tag used in [`crate::DataHash`]'s canonical encoding.
    pub fn tag(self) -> u8 {
        match self {
            DType::F32 => 1,
            DType::F64 => 2,
            DType::I64 => 3,
            DType::Bool => 4,
            DType::Categorical => 5,
            DType::String => 6,
        }
    }

    /// Whether values of this type export to a numeric matrix.
    pub fn is_numeric(self) -> bool {
        !matches!(self, DType::String)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::Categorical => "categorical",
            DType::String => "string",
        })
    }
}

/// One named, typed column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Column name, unique within a schema.
    pub name: String,
    /// Logical type.
    pub dtype: DType,
    /// Whether missing values are allowed (default `true` when deserialising).
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

impl Field {
    /// A nullable field.
    pub fn new(name: impl Into<String>, dtype: DType) -> Self {
        Field {
            name: name.into(),
            dtype,
            nullable: true,
        }
    }

    /// A field that must have a value in every row.
    pub fn required(name: impl Into<String>, dtype: DType) -> Self {
        Field {
            name: name.into(),
            dtype,
            nullable: false,
        }
    }
}

/// An ordered list of fields with unique names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Schema {
    fields: Vec<Field>,
}

impl Schema {
    /// Builds a schema; names must be unique.
    pub fn new(fields: Vec<Field>) -> crate::Result<Self> {
        let mut seen = std::collections::HashSet::new();
        for f in &fields {
            if !seen.insert(f.name.as_str()) {
                return Err(crate::Error::DuplicateColumn(f.name.clone()));
            }
        }
        Ok(Schema { fields })
    }

    /// The fields in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the schema has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Position of a field by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Field names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{}: {}{}",
                field.name,
                field.dtype,
                if field.nullable { "?" } else { "" }
            )?;
        }
        Ok(())
    }
}
