//! The fitted, frozen pipeline: what serving runs. Nothing here can fit.

use keel_core::{envelope, Column, DType, Frame, Kind, Persisted, Schema, ValueRef};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::spec::{Spec, Unknown};
use crate::{murmur3_32, Result, TransformError};

/// Whether a column enters its chain as a number or as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputKind {
    /// f32, f64, i64 and bool columns.
    Number,
    /// Categorical and string columns.
    Label,
}

impl InputKind {
    /// The kind a column of `dtype` enters its chain as.
    pub fn of(dtype: DType) -> InputKind {
        match dtype {
            DType::Categorical | DType::String => InputKind::Label,
            _ => InputKind::Number,
        }
    }
}

/// One fitted step: the constants learned at fit time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FittedStep {
    /// Fill a missing number.
    ImputeNumber(f64),
    /// Fill a missing label.
    ImputeLabel(String),
    /// `(x - center) / scale` (standardize, robust scale).
    Center {
        /// Subtracted first.
        center: f64,
        /// Then divided by.
        scale: f64,
    },
    /// `x * mul + add` (min-max, as scikit-learn computes it).
    MulAdd {
        /// Multiplied first.
        mul: f64,
        /// Then added.
        add: f64,
    },
    /// `ln(1 + x)`.
    Log1p,
    /// Clamp into `[min, max]`.
    Clip {
        /// Lower bound (`-inf` when none).
        min: f64,
        /// Upper bound (`+inf` when none).
        max: f64,
    },
    /// Bin index: the number of inner edges `<= x`.
    Bucket {
        /// All bin edges, strictly increasing; `edges.len() - 1` bins.
        edges: Vec<f64>,
    },
    /// Indicator columns.
    OneHot {
        /// Frequent categories, sorted; one column each.
        categories: Vec<String>,
        /// Infrequent categories, sorted; when present, one extra last column for all of them.
        infrequent: Option<Vec<String>>,
        /// Unseen-category policy.
        unknown: Unknown,
    },
    /// Category index, `categories.len()` for unseen ones.
    Ordinal {
        /// Sorted categories.
        categories: Vec<String>,
    },
    /// Signed MurmurHash3 buckets.
    Hash {
        /// Number of columns.
        n_features: usize,
    },
}

impl FittedStep {
    fn takes(&self) -> Option<InputKind> {
        match self {
            FittedStep::ImputeLabel(_)
            | FittedStep::OneHot { .. }
            | FittedStep::Ordinal { .. }
            | FittedStep::Hash { .. } => Some(InputKind::Label),
            FittedStep::ImputeNumber(_) => Some(InputKind::Number),
            _ => Some(InputKind::Number),
        }
    }

    fn width(&self) -> Option<usize> {
        match self {
            FittedStep::OneHot {
                categories,
                infrequent,
                ..
            } => Some(categories.len() + usize::from(infrequent.is_some())),
            FittedStep::Hash { n_features } => Some(*n_features),
            _ => None,
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        fn sorted_unique(v: &[String]) -> bool {
            v.windows(2).all(|w| w[0] < w[1])
        }
        match self {
            FittedStep::ImputeNumber(v) if !v.is_finite() => Err("non-finite fill value".into()),
            FittedStep::Center { center, scale }
                if !center.is_finite() || !scale.is_finite() || *scale == 0.0 =>
            {
                Err("scaler needs a finite center and a finite non-zero scale".into())
            }
            FittedStep::MulAdd { mul, add } if !mul.is_finite() || !add.is_finite() => {
                Err("min-max needs finite constants".into())
            }
            FittedStep::Clip { min, max } if min.is_nan() || max.is_nan() || min > max => {
                Err("clip bounds must be ordered".into())
            }
            FittedStep::Bucket { edges }
                if edges.len() < 2
                    || edges.iter().any(|e| !e.is_finite())
                    || !edges.windows(2).all(|w| w[0] <= w[1]) =>
            {
                Err("bucket edges must be finite, sorted, at least 2".into())
            }
            FittedStep::OneHot {
                categories,
                infrequent,
                ..
            } if !sorted_unique(categories)
                || infrequent.as_ref().is_some_and(|i| !sorted_unique(i)) =>
            {
                Err("one-hot categories must be sorted and unique".into())
            }
            FittedStep::Ordinal { categories } if !sorted_unique(categories) => {
                Err("ordinal categories must be sorted and unique".into())
            }
            FittedStep::Hash { n_features } if *n_features == 0 || *n_features > MAX_HASH => {
                Err(format!("hash width must be in 1..={MAX_HASH}"))
            }
            _ => Ok(()),
        }
    }
}

/// Largest accepted `n_features` of a hashing step.
pub const MAX_HASH: usize = 1 << 20;

/// One fitted input column and its chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedColumn {
    /// Input column name.
    pub name: String,
    /// Index of the column in the pipeline's input schema.
    pub input: usize,
    /// How the value enters the chain.
    pub kind: InputKind,
    /// The fitted steps.
    pub steps: Vec<FittedStep>,
    /// Number of output columns.
    pub width: usize,
}

/// The working value of a chain.
pub(crate) enum Cell<'a> {
    Missing,
    Num(f64),
    Label(std::borrow::Cow<'a, str>),
}

impl<'a> Cell<'a> {
    pub(crate) fn from_value(v: ValueRef<'a>) -> Cell<'a> {
        match v {
            ValueRef::Null => Cell::Missing,
            ValueRef::F32(x) if x.is_nan() => Cell::Missing,
            ValueRef::F64(x) if x.is_nan() => Cell::Missing,
            ValueRef::F32(x) => Cell::Num(f64::from(x)),
            ValueRef::F64(x) => Cell::Num(x),
            ValueRef::I64(x) => Cell::Num(x as f64),
            ValueRef::Bool(b) => Cell::Num(f64::from(u8::from(b))),
            ValueRef::Category(_, s) | ValueRef::Str(s) => Cell::Label(s.into()),
            _ => Cell::Missing,
        }
    }
}

/// The decimal text an encoder sees for a number: integers without a fraction (`3`, not
/// `3.0`), other values in Rust's shortest round-trip form.
pub fn number_label(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl FittedColumn {
    /// Runs the chain on one value, writing `self.width` outputs into `out`. The single code
    /// path of both batch and single-row transforms.
    fn apply(&self, value: ValueRef<'_>, out: &mut [f64], row: usize) -> Result<()> {
        let (last, head) = match self.steps.split_last() {
            Some((l, h)) if is_encoder(l) => (Some(l), h),
            _ => (None, self.steps.as_slice()),
        };
        let cell = run_chain(&self.name, head, Cell::from_value(value))?;
        match last {
            None => {
                out[0] = match cell {
                    Cell::Num(x) => x,
                    Cell::Missing => f64::NAN,
                    Cell::Label(l) => {
                        return Err(TransformError::Invalid(format!(
                            "column `{}`: label {l:?} reached the output without an encoder",
                            self.name
                        )))
                    }
                };
                Ok(())
            }
            Some(enc) => self.encode(enc, &cell, out, row),
        }
    }

    fn encode(&self, step: &FittedStep, c: &Cell<'_>, out: &mut [f64], row: usize) -> Result<()> {
        match step {
            FittedStep::Ordinal { categories } => {
                out[0] = match label_of(c) {
                    None => f64::NAN,
                    Some(l) => match categories.binary_search_by(|k| k.as_str().cmp(&l)) {
                        Ok(i) => i as f64,
                        Err(_) => categories.len() as f64,
                    },
                };
            }
            FittedStep::OneHot {
                categories,
                infrequent,
                unknown,
            } => {
                out.fill(0.0);
                let Some(l) = label_of(c) else {
                    return Ok(());
                };
                if let Ok(i) = categories.binary_search_by(|k| k.as_str().cmp(&l)) {
                    out[i] = 1.0;
                } else if infrequent.as_ref().is_some_and(|inf| {
                    inf.binary_search_by(|k| k.as_str().cmp(&l)).is_ok()
                        || *unknown == Unknown::Infrequent
                }) {
                    out[categories.len()] = 1.0;
                } else if *unknown == Unknown::Error {
                    return Err(self.unknown(row, &l));
                }
            }
            FittedStep::Hash { n_features } => {
                out.fill(0.0);
                if let Some(l) = label_of(c) {
                    let (idx, sign) = hash_bucket(&l, *n_features);
                    out[idx] += sign;
                }
            }
            _ => {
                return Err(TransformError::Invalid(format!(
                    "column `{}`: {step:?} is not an encoder",
                    self.name
                )))
            }
        }
        Ok(())
    }

    fn unknown(&self, row: usize, label: &str) -> TransformError {
        TransformError::UnknownCategory {
            column: self.name.clone(),
            row,
            value: label.chars().take(64).collect(),
        }
    }

    /// Checks the chain's shape: kinds flow, encoders last, widths consistent.
    fn check(&self, ncols: usize) -> std::result::Result<(), String> {
        if self.input >= ncols {
            return Err(format!("input index {} out of range", self.input));
        }
        let mut kind = self.kind;
        let mut width = 1;
        for (i, s) in self.steps.iter().enumerate() {
            s.check()?;
            let last = i + 1 == self.steps.len();
            let encoder = s.width().is_some() || is_ordinal(s);
            if encoder && !last {
                return Err("an encoder must be the last step".into());
            }
            match (s, kind) {
                (FittedStep::ImputeNumber(_), InputKind::Number)
                | (FittedStep::ImputeLabel(_), InputKind::Label) => {}
                (FittedStep::ImputeNumber(_), _) | (FittedStep::ImputeLabel(_), _) => {
                    return Err("imputer of the wrong kind".into())
                }
                _ if encoder => {
                    kind = InputKind::Number;
                    width = s.width().unwrap_or(1);
                }
                _ if s.takes() == Some(kind) => {}
                _ => return Err(format!("step {s:?} needs a number, gets a label")),
            }
        }
        if kind == InputKind::Label && !self.steps.last().is_some_and(is_encoder) {
            return Err("a label column must end with an encoder (one_hot, ordinal, hash)".into());
        }
        if width != self.width {
            return Err(format!(
                "declares width {}, chain gives {width}",
                self.width
            ));
        }
        Ok(())
    }
}

/// Runs non-encoding steps on a value. Shared by transform and by fitting (each step is fitted
/// on the output of the already-fitted steps before it, through this same function).
pub(crate) fn run_chain<'a>(
    name: &str,
    steps: &[FittedStep],
    mut cell: Cell<'a>,
) -> Result<Cell<'a>> {
    for step in steps {
        cell = match (step, cell) {
            (FittedStep::ImputeNumber(v), Cell::Missing) => Cell::Num(*v),
            (FittedStep::ImputeLabel(v), Cell::Missing) => Cell::Label(v.clone().into()),
            (_, Cell::Missing) => Cell::Missing,
            (FittedStep::ImputeNumber(_), c) | (FittedStep::ImputeLabel(_), c) => c,
            (FittedStep::Center { center, scale }, Cell::Num(x)) => num((x - center) / scale),
            (FittedStep::MulAdd { mul, add }, Cell::Num(x)) => num(x * mul + add),
            (FittedStep::Log1p, Cell::Num(x)) => num(x.ln_1p()),
            (FittedStep::Clip { min, max }, Cell::Num(x)) => num(x.max(*min).min(*max)),
            (FittedStep::Bucket { edges }, Cell::Num(x)) => {
                let inner = &edges[1..edges.len() - 1];
                Cell::Num(inner.partition_point(|e| *e <= x) as f64)
            }
            (step, _) => {
                return Err(TransformError::Invalid(format!(
                    "column `{name}`: step {step:?} got a value of the wrong kind"
                )))
            }
        };
    }
    Ok(cell)
}

fn num<'a>(x: f64) -> Cell<'a> {
    if x.is_nan() {
        Cell::Missing
    } else {
        Cell::Num(x)
    }
}

/// The output column and sign of a label under signed feature hashing (MurmurHash3 x86 32-bit,
/// seed 0, as scikit-learn's `FeatureHasher`).
pub fn hash_bucket(label: &str, n_features: usize) -> (usize, f64) {
    let h = murmur3_32(label.as_bytes(), 0) as i32;
    let idx = (i64::from(h).unsigned_abs() % n_features.max(1) as u64) as usize;
    (idx, if h < 0 { -1.0 } else { 1.0 })
}

fn is_ordinal(s: &FittedStep) -> bool {
    matches!(s, FittedStep::Ordinal { .. })
}

fn is_encoder(s: &FittedStep) -> bool {
    s.width().is_some() || is_ordinal(s)
}

fn label_of<'a>(c: &'a Cell<'_>) -> Option<std::borrow::Cow<'a, str>> {
    match c {
        Cell::Missing => None,
        Cell::Num(x) => Some(number_label(*x).into()),
        Cell::Label(l) => Some(l.as_ref().into()),
    }
}

/// A fitted transform pipeline, frozen at training time and shipped with the model.
///
/// It carries the schema of its inputs and the names of its outputs. Batch
/// ([`FittedPipeline::transform`]) and single-row ([`FittedPipeline::transform_row`])
/// transforms run the same per-value code, so row `i` of a batch equals the single-row result
/// bit for bit. Persisted in the core envelope (kind `XPIP`); decoding re-checks every
/// invariant, so a forged pipeline is refused rather than mis-scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PipelineRepr")]
pub struct FittedPipeline {
    input: Schema,
    columns: Vec<FittedColumn>,
    outputs: Vec<String>,
    #[serde(with = "spec_json")]
    spec: Spec,
    fitted_rows: u64,
}

#[derive(Deserialize)]
struct PipelineRepr {
    input: Schema,
    columns: Vec<FittedColumn>,
    outputs: Vec<String>,
    #[serde(with = "spec_json")]
    spec: Spec,
    fitted_rows: u64,
}

impl TryFrom<PipelineRepr> for FittedPipeline {
    type Error = TransformError;
    fn try_from(r: PipelineRepr) -> Result<Self> {
        FittedPipeline::from_parts(r.input, r.columns, r.outputs, r.spec, r.fitted_rows)
    }
}

impl Persisted for FittedPipeline {
    const KIND: Kind = Kind(*b"XPIP");
    const FORMAT_VERSION: u16 = 1;
}

impl FittedPipeline {
    /// Assembles a pipeline from its parts, checking every invariant.
    pub fn from_parts(
        input: Schema,
        columns: Vec<FittedColumn>,
        outputs: Vec<String>,
        spec: Spec,
        fitted_rows: u64,
    ) -> Result<Self> {
        let mut total = 0usize;
        for c in &columns {
            c.check(input.len())
                .map_err(|e| TransformError::Invalid(format!("column `{}`: {e}", c.name)))?;
            let field = &input.fields()[c.input];
            if field.name != c.name || InputKind::of(field.dtype) != c.kind {
                return Err(TransformError::Invalid(format!(
                    "column `{}` does not match input field `{}`",
                    c.name, field.name
                )));
            }
            total = total.saturating_add(c.width);
        }
        if total != outputs.len() {
            return Err(TransformError::Invalid(format!(
                "{} output names for {total} outputs",
                outputs.len()
            )));
        }
        Ok(FittedPipeline {
            input,
            columns,
            outputs,
            spec,
            fitted_rows,
        })
    }

    /// The columns the pipeline reads, with the types it was fitted on.
    pub fn input_schema(&self) -> &Schema {
        &self.input
    }

    /// Output feature names, in output order (one-hot columns are `column=category`, the
    /// infrequent column `column=__infrequent__`, hashed columns `column#i`).
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Number of output features.
    pub fn width(&self) -> usize {
        self.outputs.len()
    }

    /// The fitted columns.
    pub fn columns(&self) -> &[FittedColumn] {
        &self.columns
    }

    /// The spec this pipeline was fitted from.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Number of training rows it was fitted on.
    pub fn fitted_rows(&self) -> u64 {
        self.fitted_rows
    }

    /// Serialises into the core envelope.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(envelope::encode(self)?)
    }

    /// Decodes from the core envelope, re-checking every invariant.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(envelope::decode(bytes)?)
    }

    /// Transforms a batch into a row-major `nrows x width` matrix. The frame must hold every
    /// input column with a type of the same kind (number or label) as at fit time; extra
    /// columns are ignored.
    pub fn transform(&self, frame: &Frame) -> Result<Array2<f64>> {
        let mut out = Array2::<f64>::zeros((frame.nrows(), self.width()));
        self.transform_into(frame, out.as_slice_mut().unwrap_or(&mut []))?;
        Ok(out)
    }

    /// Transforms a batch into a [`Frame`] of f64 columns named by
    /// [`FittedPipeline::output_names`] (missing values are NaN).
    pub fn transform_frame(&self, frame: &Frame) -> Result<Frame> {
        self.output_frame(&self.transform(frame)?)
    }

    /// Wraps an already transformed `nrows x width` matrix as a [`Frame`] named by
    /// [`FittedPipeline::output_names`] (so a caller that needs both the matrix and the frame
    /// transforms once).
    pub fn output_frame(&self, m: &Array2<f64>) -> Result<Frame> {
        if m.ncols() != self.width() {
            return Err(TransformError::Shape(format!(
                "matrix has {} columns, the pipeline outputs {}",
                m.ncols(),
                self.width()
            )));
        }
        let fields = self
            .outputs
            .iter()
            .map(|n| keel_core::Field::new(n.clone(), DType::F64))
            .collect();
        let columns = (0..self.width())
            .map(|j| Column::F64(m.column(j).to_owned()))
            .collect();
        Ok(Frame::new(fields, columns)?)
    }

    /// Transforms a batch into `out` (row-major, `nrows * width` values).
    pub fn transform_into(&self, frame: &Frame, out: &mut [f64]) -> Result<()> {
        let cols = self.resolve(frame)?;
        let w = self.width();
        if out.len() != frame.nrows() * w {
            return Err(TransformError::Shape(format!(
                "output buffer holds {} values, needs {} x {w}",
                out.len(),
                frame.nrows()
            )));
        }
        if w == 0 {
            return Ok(());
        }
        for (row, dst) in out.chunks_exact_mut(w).enumerate() {
            let mut at = 0;
            for (c, col) in self.columns.iter().zip(&cols) {
                c.apply(col.get(row), &mut dst[at..at + c.width], row)?;
                at += c.width;
            }
        }
        Ok(())
    }

    /// Transforms one row whose values follow [`FittedPipeline::input_schema`]'s order.
    pub fn transform_row(&self, values: &[ValueRef<'_>]) -> Result<Vec<f64>> {
        let mut out = vec![0.0; self.width()];
        self.transform_row_into(values, &mut out)?;
        Ok(out)
    }

    /// Like [`FittedPipeline::transform_row`], into a caller's buffer of `width` values.
    pub fn transform_row_into(&self, values: &[ValueRef<'_>], out: &mut [f64]) -> Result<()> {
        if values.len() != self.input.len() {
            return Err(TransformError::Shape(format!(
                "row has {} values, the pipeline reads {}",
                values.len(),
                self.input.len()
            )));
        }
        if out.len() != self.width() {
            return Err(TransformError::Shape(format!(
                "output buffer holds {} values, needs {}",
                out.len(),
                self.width()
            )));
        }
        for (field, v) in self.input.fields().iter().zip(values) {
            check_value(field.name.as_str(), field.dtype, v)?;
        }
        let mut at = 0;
        for c in &self.columns {
            c.apply(values[c.input], &mut out[at..at + c.width], 0)?;
            at += c.width;
        }
        Ok(())
    }

    fn resolve<'f>(&self, frame: &'f Frame) -> Result<Vec<&'f Column>> {
        let mut by_input = Vec::with_capacity(self.input.len());
        for f in self.input.fields() {
            let col = frame
                .column(&f.name)
                .map_err(|_| TransformError::MissingColumn(f.name.clone()))?;
            if InputKind::of(col.dtype()) != InputKind::of(f.dtype) {
                return Err(TransformError::WrongType {
                    column: f.name.clone(),
                    expected: f.dtype,
                    found: col.dtype(),
                });
            }
            by_input.push(col);
        }
        Ok(self.columns.iter().map(|c| by_input[c.input]).collect())
    }
}

fn check_value(name: &str, dtype: DType, v: &ValueRef<'_>) -> Result<()> {
    let kind = match v {
        ValueRef::Null => return Ok(()),
        ValueRef::Category(..) | ValueRef::Str(_) => InputKind::Label,
        _ => InputKind::Number,
    };
    if kind != InputKind::of(dtype) {
        return Err(TransformError::WrongValue {
            column: name.to_string(),
            expected: dtype,
        });
    }
    Ok(())
}

/// The spec is stored as JSON text inside the binary payload: its steps are an internally
/// tagged enum (readable configs), which a non-self-describing format cannot carry.
mod spec_json {
    use super::Spec;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(spec: &Spec, s: S) -> Result<S::Ok, S::Error> {
        serde_json::to_string(spec)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Spec, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}
