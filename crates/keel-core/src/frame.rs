//! [`Frame`]: a columnar batch of rows.

use crate::error::{Error, Result};
use crate::schema::{DType, Field, Schema};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Which rows of a column hold a value. `None` inside means "all valid".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Validity(Option<Vec<bool>>);

impl Validity {
    /// Every row valid.
    pub fn all_valid() -> Self {
        Validity(None)
    }

    /// From a per-row mask; collapses to "all valid" when no row is missing.
    pub fn from_mask(mask: Vec<bool>) -> Self {
        if mask.iter().all(|&v| v) {
            Validity(None)
        } else {
            Validity(Some(mask))
        }
    }

    /// Whether row `i` holds a value.
    #[inline]
    pub fn is_valid(&self, i: usize) -> bool {
        match &self.0 {
            None => true,
            Some(m) => m.get(i).copied().unwrap_or(false),
        }
    }

    /// Number of missing rows among the first `len`.
    pub fn null_count(&self, len: usize) -> usize {
        match &self.0 {
            None => 0,
            Some(m) => m.iter().take(len).filter(|v| !**v).count(),
        }
    }

    fn mask_len(&self) -> Option<usize> {
        self.0.as_ref().map(Vec::len)
    }

    fn slice(&self, start: usize, len: usize) -> Self {
        match &self.0 {
            None => Validity(None),
            Some(m) => Validity::from_mask(m[start..start + len].to_vec()),
        }
    }

    fn take(&self, idx: &[usize]) -> Self {
        match &self.0 {
            None => Validity(None),
            Some(m) => Validity::from_mask(idx.iter().map(|&i| m[i]).collect()),
        }
    }
}

/// One column of a [`Frame`].
///
/// Floating columns mark a missing value with NaN; the other types carry a [`Validity`] mask
/// (the value stored under a missing slot is unspecified and ignored everywhere).
///
/// Equality is by content: missing equals missing (whatever NaN bits or masked value lie
/// underneath), floats compare by bits, categoricals compare labels rather than codes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Column {
    /// 32-bit floats; NaN is missing.
    F32(Array1<f32>),
    /// 64-bit floats; NaN is missing.
    F64(Array1<f64>),
    /// 64-bit integers.
    I64 {
        /// Values.
        values: Array1<i64>,
        /// Which rows hold a value.
        validity: Validity,
    },
    /// Booleans.
    Bool {
        /// Values.
        values: Vec<bool>,
        /// Which rows hold a value.
        validity: Validity,
    },
    /// Dictionary-encoded strings.
    Categorical {
        /// Codes into `vocabulary`.
        codes: Vec<u32>,
        /// The distinct labels; a code is an index into it.
        vocabulary: Arc<Vec<String>>,
        /// Which rows hold a value.
        validity: Validity,
    },
    /// UTF-8 strings.
    String {
        /// Values.
        values: Vec<String>,
        /// Which rows hold a value.
        validity: Validity,
    },
}

impl PartialEq for Column {
    fn eq(&self, other: &Column) -> bool {
        self.dtype() == other.dtype()
            && self.len() == other.len()
            && (0..self.len()).all(|i| match (self.get(i), other.get(i)) {
                (ValueRef::F32(a), ValueRef::F32(b)) => a.to_bits() == b.to_bits(),
                (ValueRef::F64(a), ValueRef::F64(b)) => a.to_bits() == b.to_bits(),
                (ValueRef::Category(_, a), ValueRef::Category(_, b)) => a == b,
                (a, b) => a == b,
            })
    }
}

/// A borrowed cell value, as returned by [`Frame::row`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ValueRef<'a> {
    /// Missing.
    Null,
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A 64-bit integer.
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A category: its code and label.
    Category(u32, &'a str),
    /// A string.
    Str(&'a str),
}

impl Column {
    /// The column's logical type.
    pub fn dtype(&self) -> DType {
        match self {
            Column::F32(_) => DType::F32,
            Column::F64(_) => DType::F64,
            Column::I64 { .. } => DType::I64,
            Column::Bool { .. } => DType::Bool,
            Column::Categorical { .. } => DType::Categorical,
            Column::String { .. } => DType::String,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::F32(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::I64 { values, .. } => values.len(),
            Column::Bool { values, .. } => values.len(),
            Column::Categorical { codes, .. } => codes.len(),
            Column::String { values, .. } => values.len(),
        }
    }

    /// Whether the column has no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether row `i` holds a value.
    #[inline]
    pub fn is_valid(&self, i: usize) -> bool {
        match self {
            Column::F32(v) => v.get(i).is_some_and(|x| !x.is_nan()),
            Column::F64(v) => v.get(i).is_some_and(|x| !x.is_nan()),
            Column::I64 { validity, .. }
            | Column::Bool { validity, .. }
            | Column::Categorical { validity, .. }
            | Column::String { validity, .. } => i < self.len() && validity.is_valid(i),
        }
    }

    /// Number of missing rows.
    pub fn null_count(&self) -> usize {
        (0..self.len()).filter(|&i| !self.is_valid(i)).count()
    }

    /// The value at row `i` (`Null` when missing or out of range).
    pub fn get(&self, i: usize) -> ValueRef<'_> {
        if !self.is_valid(i) {
            return ValueRef::Null;
        }
        match self {
            Column::F32(v) => ValueRef::F32(v[i]),
            Column::F64(v) => ValueRef::F64(v[i]),
            Column::I64 { values, .. } => ValueRef::I64(values[i]),
            Column::Bool { values, .. } => ValueRef::Bool(values[i]),
            Column::Categorical {
                codes, vocabulary, ..
            } => {
                let c = codes[i];
                ValueRef::Category(c, vocabulary.get(c as usize).map_or("", String::as_str))
            }
            Column::String { values, .. } => ValueRef::Str(&values[i]),
        }
    }

    /// The value at row `i` as an `f64` (NaN when missing); `None` for string columns.
    #[inline]
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        Some(match self.get(i) {
            ValueRef::Null => f64::NAN,
            ValueRef::F32(x) => f64::from(x),
            ValueRef::F64(x) => x,
            ValueRef::I64(x) => x as f64,
            ValueRef::Bool(b) => f64::from(u8::from(b)),
            ValueRef::Category(c, _) => f64::from(c),
            ValueRef::Str(_) => return None,
        })
    }

    fn validity_len_ok(&self) -> bool {
        match self {
            Column::I64 { validity, .. }
            | Column::Bool { validity, .. }
            | Column::Categorical { validity, .. }
            | Column::String { validity, .. } => {
                validity.mask_len().is_none_or(|l| l == self.len())
            }
            _ => true,
        }
    }

    fn slice(&self, start: usize, len: usize) -> Column {
        let r = start..start + len;
        match self {
            Column::F32(v) => Column::F32(v.slice(ndarray::s![r]).to_owned()),
            Column::F64(v) => Column::F64(v.slice(ndarray::s![r]).to_owned()),
            Column::I64 { values, validity } => Column::I64 {
                values: values.slice(ndarray::s![r]).to_owned(),
                validity: validity.slice(start, len),
            },
            Column::Bool { values, validity } => Column::Bool {
                values: values[r].to_vec(),
                validity: validity.slice(start, len),
            },
            Column::Categorical {
                codes,
                vocabulary,
                validity,
            } => Column::Categorical {
                codes: codes[r].to_vec(),
                vocabulary: Arc::clone(vocabulary),
                validity: validity.slice(start, len),
            },
            Column::String { values, validity } => Column::String {
                values: values[r].to_vec(),
                validity: validity.slice(start, len),
            },
        }
    }

    fn take(&self, idx: &[usize]) -> Column {
        match self {
            Column::F32(v) => Column::F32(idx.iter().map(|&i| v[i]).collect()),
            Column::F64(v) => Column::F64(idx.iter().map(|&i| v[i]).collect()),
            Column::I64 { values, validity } => Column::I64 {
                values: idx.iter().map(|&i| values[i]).collect(),
                validity: validity.take(idx),
            },
            Column::Bool { values, validity } => Column::Bool {
                values: idx.iter().map(|&i| values[i]).collect(),
                validity: validity.take(idx),
            },
            Column::Categorical {
                codes,
                vocabulary,
                validity,
            } => Column::Categorical {
                codes: idx.iter().map(|&i| codes[i]).collect(),
                vocabulary: Arc::clone(vocabulary),
                validity: validity.take(idx),
            },
            Column::String { values, validity } => Column::String {
                values: idx.iter().map(|&i| values[i].clone()).collect(),
                validity: validity.take(idx),
            },
        }
    }
}

/// A columnar batch of rows with a [`Schema`].
///
/// Invariants (checked by [`Frame::new`]): one column per field, of the field's type, all
/// columns of the same length, categorical codes within their vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FrameRepr")]
pub struct Frame {
    schema: Schema,
    columns: Vec<Column>,
    nrows: usize,
}

/// The serialised shape of a [`Frame`]; deserialising goes through [`Frame::new`] so decoded
/// bytes cannot break the invariants.
#[derive(Deserialize)]
struct FrameRepr {
    schema: Schema,
    columns: Vec<Column>,
    nrows: usize,
}

impl TryFrom<FrameRepr> for Frame {
    type Error = Error;
    fn try_from(r: FrameRepr) -> Result<Frame> {
        let f = Frame::new(r.schema.fields().to_vec(), r.columns)?;
        if f.ncols() > 0 && f.nrows != r.nrows {
            return Err(Error::Shape(format!(
                "declares {} rows, holds {}",
                r.nrows, f.nrows
            )));
        }
        Ok(Frame {
            nrows: r.nrows,
            ..f
        })
    }
}

impl Frame {
    /// Builds a frame from fields and columns, checking the invariants.
    pub fn new(fields: Vec<Field>, columns: Vec<Column>) -> Result<Self> {
        let schema = Schema::new(fields)?;
        if schema.len() != columns.len() {
            return Err(Error::Shape(format!(
                "{} fields but {} columns",
                schema.len(),
                columns.len()
            )));
        }
        let nrows = columns.first().map_or(0, Column::len);
        for (f, c) in schema.fields().iter().zip(&columns) {
            if f.dtype != c.dtype() {
                return Err(Error::Validation {
                    column: f.name.clone(),
                    row: usize::MAX,
                    reason: format!("field says {} but column holds {}", f.dtype, c.dtype()),
                });
            }
            if c.len() != nrows || !c.validity_len_ok() {
                return Err(Error::Shape(format!(
                    "column `{}` has {} rows, expected {nrows}",
                    f.name,
                    c.len()
                )));
            }
            if let Column::Categorical {
                codes,
                vocabulary,
                validity,
            } = c
            {
                if let Some(i) = (0..codes.len())
                    .find(|&i| validity.is_valid(i) && codes[i] as usize >= vocabulary.len())
                {
                    return Err(Error::Validation {
                        column: f.name.clone(),
                        row: i,
                        reason: format!(
                            "code {} outside a vocabulary of {}",
                            codes[i],
                            vocabulary.len()
                        ),
                    });
                }
            }
        }
        Ok(Frame {
            schema,
            columns,
            nrows,
        })
    }

    /// An empty frame with the given schema.
    pub fn empty(schema: &Schema) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| ColumnBuilder::new(f.dtype).finish())
            .collect();
        Frame {
            schema: schema.clone(),
            columns,
            nrows: 0,
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.columns.len()
    }

    /// All columns in schema order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Result<&Column> {
        self.schema
            .index_of(name)
            .map(|i| &self.columns[i])
            .ok_or_else(|| Error::UnknownColumn(name.to_string()))
    }

    /// A new frame with only `names`, in that order.
    pub fn select(&self, names: &[&str]) -> Result<Frame> {
        let mut fields = Vec::with_capacity(names.len());
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let i = self
                .schema
                .index_of(name)
                .ok_or_else(|| Error::UnknownColumn((*name).to_string()))?;
            fields.push(self.schema.fields()[i].clone());
            columns.push(self.columns[i].clone());
        }
        let schema = Schema::new(fields)?;
        Ok(Frame {
            schema,
            columns,
            nrows: self.nrows,
        })
    }

    /// Row `i` as borrowed values in schema order.
    pub fn row(&self, i: usize) -> Result<Vec<ValueRef<'_>>> {
        if i >= self.nrows {
            return Err(Error::Shape(format!(
                "row {i} out of range for {} rows",
                self.nrows
            )));
        }
        Ok(self.columns.iter().map(|c| c.get(i)).collect())
    }

    /// Rows `start..start + len` as a new frame.
    pub fn slice(&self, start: usize, len: usize) -> Result<Frame> {
        if start.checked_add(len).is_none_or(|end| end > self.nrows) {
            return Err(Error::Shape(format!(
                "rows {start}..{start}+{len} out of range for {} rows",
                self.nrows
            )));
        }
        Ok(Frame {
            schema: self.schema.clone(),
            columns: self.columns.iter().map(|c| c.slice(start, len)).collect(),
            nrows: len,
        })
    }

    /// The rows at `indices`, in that order, as a new frame.
    pub fn take(&self, indices: &[usize]) -> Result<Frame> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.nrows) {
            return Err(Error::Shape(format!(
                "row {bad} out of range for {} rows",
                self.nrows
            )));
        }
        Ok(Frame {
            schema: self.schema.clone(),
            columns: self.columns.iter().map(|c| c.take(indices)).collect(),
            nrows: indices.len(),
        })
    }

    /// Appends frames with identical schemas row-wise. Categorical vocabularies are merged
    /// (codes remapped into the union, first appearance first).
    pub fn concat(parts: &[Frame]) -> Result<Frame> {
        let Some(first) = parts.first() else {
            return Err(Error::Shape("concat of zero frames".into()));
        };
        if let Some(p) = parts.iter().find(|p| p.schema != first.schema) {
            return Err(Error::Validation {
                column: String::new(),
                row: usize::MAX,
                reason: format!(
                    "schema mismatch in concat: [{}] vs [{}]",
                    first.schema, p.schema
                ),
            });
        }
        let nrows = parts.iter().map(|p| p.nrows).sum();
        let mut columns = Vec::with_capacity(first.ncols());
        for (ci, field) in first.schema.fields().iter().enumerate() {
            let mut b = ColumnBuilder::with_capacity(field.dtype, nrows);
            for p in parts {
                let col = &p.columns[ci];
                for r in 0..p.nrows {
                    b.push_value(col.get(r));
                }
            }
            columns.push(b.finish());
        }
        Ok(Frame {
            schema: first.schema.clone(),
            columns,
            nrows,
        })
    }

    /// Checks the frame against `schema`: every field present by name with the same type, and
    /// no missing value in a non-nullable field. The error names the column, the row and what
    /// was wrong.
    pub fn validate(&self, schema: &Schema) -> Result<()> {
        for f in schema.fields() {
            let Some(i) = self.schema.index_of(&f.name) else {
                return Err(Error::Validation {
                    column: f.name.clone(),
                    row: usize::MAX,
                    reason: "column missing".into(),
                });
            };
            let col = &self.columns[i];
            if col.dtype() != f.dtype {
                return Err(Error::Validation {
                    column: f.name.clone(),
                    row: usize::MAX,
                    reason: format!("expected {}, found {}", f.dtype, col.dtype()),
                });
            }
            if !f.nullable {
                if let Some(r) = (0..self.nrows).find(|&r| !col.is_valid(r)) {
                    return Err(Error::Validation {
                        column: f.name.clone(),
                        row: r,
                        reason: "missing value in a non-nullable column".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Dense row-major `f32` matrix of the columns `order` (NaN for missing; bool as 0/1;
    /// categorical as its code). String columns are refused.
    pub fn to_matrix_f32(&self, order: &[&str]) -> Result<Array2<f32>> {
        let m = self.to_matrix_f64(order)?;
        Ok(m.mapv(|x| x as f32))
    }

    /// Dense row-major `f64` matrix of the columns `order`; see [`Frame::to_matrix_f32`].
    pub fn to_matrix_f64(&self, order: &[&str]) -> Result<Array2<f64>> {
        let cols = order
            .iter()
            .map(|n| self.column(n))
            .collect::<Result<Vec<_>>>()?;
        for (n, c) in order.iter().zip(&cols) {
            if !c.dtype().is_numeric() {
                return Err(Error::UnsupportedType {
                    column: (*n).to_string(),
                    dtype: c.dtype(),
                    what: "exported as a number",
                });
            }
        }
        let mut out = Array2::<f64>::zeros((self.nrows, cols.len()));
        for (j, c) in cols.iter().enumerate() {
            for i in 0..self.nrows {
                out[[i, j]] = c.get_f64(i).unwrap_or(f64::NAN);
            }
        }
        Ok(out)
    }
}

/// Builds a [`Column`] one value at a time.
#[derive(Debug)]
pub struct ColumnBuilder {
    dtype: DType,
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    i64s: Vec<i64>,
    bools: Vec<bool>,
    codes: Vec<u32>,
    strings: Vec<String>,
    vocab: Vec<String>,
    vocab_index: HashMap<String, u32>,
    valid: Vec<bool>,
}

impl ColumnBuilder {
    /// An empty builder for `dtype`.
    pub fn new(dtype: DType) -> Self {
        Self::with_capacity(dtype, 0)
    }

    /// An empty builder with room for `cap` rows.
    pub fn with_capacity(dtype: DType, cap: usize) -> Self {
        let cap = cap.min(1 << 20);
        ColumnBuilder {
            dtype,
            f32s: Vec::with_capacity(if dtype == DType::F32 { cap } else { 0 }),
            f64s: Vec::with_capacity(if dtype == DType::F64 { cap } else { 0 }),
            i64s: Vec::with_capacity(if dtype == DType::I64 { cap } else { 0 }),
            bools: Vec::new(),
            codes: Vec::new(),
            strings: Vec::new(),
            vocab: Vec::new(),
            vocab_index: HashMap::new(),
            valid: Vec::with_capacity(cap),
        }
    }

    /// The type being built.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Appends a missing value.
    pub fn push_null(&mut self) {
        self.valid.push(false);
        match self.dtype {
            DType::F32 => self.f32s.push(f32::NAN),
            DType::F64 => self.f64s.push(f64::NAN),
            DType::I64 => self.i64s.push(0),
            DType::Bool => self.bools.push(false),
            DType::Categorical => self.codes.push(0),
            DType::String => self.strings.push(String::new()),
        }
    }

    /// Appends a category label (or string, for string columns).
    pub fn push_str(&mut self, s: &str) -> bool {
        match self.dtype {
            DType::Categorical => {
                let code = match self.vocab_index.get(s) {
                    Some(&c) => c,
                    None => {
                        let Ok(c) = u32::try_from(self.vocab.len()) else {
                            return false;
                        };
                        self.vocab.push(s.to_string());
                        self.vocab_index.insert(s.to_string(), c);
                        c
                    }
                };
                self.codes.push(code);
            }
            DType::String => self.strings.push(s.to_string()),
            _ => return false,
        }
        self.valid.push(true);
        true
    }

    /// Appends a value converted to the builder's type; returns `false` (and appends nothing)
    /// when the value does not fit the type.
    pub fn push_value(&mut self, v: ValueRef<'_>) -> bool {
        match (self.dtype, v) {
            (_, ValueRef::Null) => self.push_null(),
            (DType::F32, ValueRef::F32(x)) => self.push_f32(x),
            (DType::F64, ValueRef::F64(x)) => self.push_f64(x),
            (DType::I64, ValueRef::I64(x)) => {
                self.i64s.push(x);
                self.valid.push(true);
            }
            (DType::Bool, ValueRef::Bool(b)) => {
                self.bools.push(b);
                self.valid.push(true);
            }
            (DType::Categorical | DType::String, ValueRef::Category(_, s) | ValueRef::Str(s)) => {
                return self.push_str(s)
            }
            _ => return false,
        }
        true
    }

    fn push_f32(&mut self, x: f32) {
        self.f32s.push(x);
        self.valid.push(!x.is_nan());
    }

    fn push_f64(&mut self, x: f64) {
        self.f64s.push(x);
        self.valid.push(!x.is_nan());
    }

    /// Parses one CSV field into the builder's type. Empty is missing; floats also accept
    /// `NaN`/`nan` (missing) and `inf`; booleans accept `true/false/1/0` in any case.
    pub fn push_parsed(&mut self, field: &str) -> bool {
        if field.is_empty() {
            self.push_null();
            return true;
        }
        match self.dtype {
            DType::F32 => match field.trim().parse::<f32>() {
                Ok(x) => self.push_f32(x),
                Err(_) => return false,
            },
            DType::F64 => match field.trim().parse::<f64>() {
                Ok(x) => self.push_f64(x),
                Err(_) => return false,
            },
            DType::I64 => match field.trim().parse::<i64>() {
                Ok(x) => {
                    self.i64s.push(x);
                    self.valid.push(true);
                }
                Err(_) => return false,
            },
            DType::Bool => match parse_bool(field.trim()) {
                Some(b) => {
                    self.bools.push(b);
                    self.valid.push(true);
                }
                None => return false,
            },
            DType::Categorical | DType::String => return self.push_str(field),
        }
        true
    }

    /// Number of values pushed.
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    /// The finished column.
    pub fn finish(self) -> Column {
        let validity = Validity::from_mask(self.valid);
        match self.dtype {
            DType::F32 => Column::F32(Array1::from(self.f32s)),
            DType::F64 => Column::F64(Array1::from(self.f64s)),
            DType::I64 => Column::I64 {
                values: Array1::from(self.i64s),
                validity,
            },
            DType::Bool => Column::Bool {
                values: self.bools,
                validity,
            },
            DType::Categorical => Column::Categorical {
                codes: self.codes,
                vocabulary: Arc::new(self.vocab),
                validity,
            },
            DType::String => Column::String {
                values: self.strings,
                validity,
            },
        }
    }
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") || s == "1" {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" {
        Some(false)
    } else {
        None
    }
}
