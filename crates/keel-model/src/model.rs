//! Every flavor behind one loader: [`Model::load`] turns a verified registry version into
//! something that scores, whatever it reads (tabular columns, texts, image or other tensors).

use std::sync::Arc;

use keel_core::{DType, Frame};
use keel_deep::{Cnn, OnnxModel, SeqModel};
use keel_registry::LoadedVersion;

use crate::{bundle, Flavor, ModelError, Result, ServedModel};

/// Most rows one batch may hold (a bound on what a request makes the model allocate).
pub const MAX_BATCH_ROWS: usize = 1 << 16;

/// What a model reads per row.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InputSpec {
    /// Raw tabular columns, transformed by the bundle's frozen pipeline.
    Tabular(keel_core::Schema),
    /// One UTF-8 text (the model tokenizes it).
    Text,
    /// One f32 tensor of this shape (images: `[channels, height, width]`).
    Tensor(Vec<usize>),
}

impl InputSpec {
    /// Values per row of a [`Input::Tensors`] batch (`None` for tabular and text).
    pub fn tensor_len(&self) -> Option<usize> {
        match self {
            InputSpec::Tensor(shape) => Some(shape.iter().product()),
            _ => None,
        }
    }
}

/// A batch to score, in the form [`Model::input`] asks for.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Raw columns by the pipeline's input names.
    Frame(&'a Frame),
    /// One text per row.
    Texts(&'a [&'a str]),
    /// `rows` tensors, row-major, each [`InputSpec::Tensor`]-shaped.
    Tensors {
        /// The values.
        data: &'a [f32],
        /// How many rows.
        rows: usize,
    },
}

impl Input<'_> {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        match self {
            Input::Frame(f) => f.nrows(),
            Input::Texts(t) => t.len(),
            Input::Tensors { rows, .. } => *rows,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Input::Frame(_) => "tabular columns",
            Input::Texts(_) => "texts",
            Input::Tensors { .. } => "tensors",
        }
    }
}

/// The model of one flavor.
#[derive(Clone)]
enum Kind {
    Tabular(ServedModel),
    Sequence(Arc<SeqModel>),
    Cnn(Arc<Cnn>),
    Onnx {
        graph: Arc<OnnxModel>,
        shape: Vec<usize>,
        outputs: usize,
    },
}

/// A loaded model version of any flavor.
#[derive(Clone)]
pub struct Model {
    version: u32,
    flavor: Flavor,
    kind: Kind,
    /// The name of a text or tensor model's one input (its declared column, else `text` /
    /// `input`).
    input_name: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("version", &self.version)
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
}

fn incompatible(v: &LoadedVersion, reason: String) -> ModelError {
    ModelError::IncompatibleBundle {
        model: v.version.name.clone(),
        version: v.version.version,
        reason,
    }
}

impl Model {
    /// Loads a verified registry bundle of any flavor ([`Flavor`]; files named by
    /// [`bundle`]), checked against the bundle's declared input schema when it has one: a text
    /// model declares one string column, a tensor model none or one f32 column; a tabular model
    /// must read as many features as its pipeline writes.
    pub fn load(v: &LoadedVersion) -> Result<Model> {
        let flavor = Flavor::parse(&v.version.meta.flavor).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "model flavor `{}` (one of gbdt, deep, sequence, cnn, onnx)",
                v.version.meta.flavor
            ))
        })?;
        let kind = match flavor {
            Flavor::Gbdt | Flavor::Mlp => Kind::Tabular(ServedModel::from_bundle(v)?),
            Flavor::Sequence => {
                check_single_column(
                    v,
                    "a sequence model reads one string column",
                    &[DType::String],
                )?;
                let (m, _) =
                    SeqModel::from_parts(v.file(bundle::MODEL)?, v.file(bundle::WEIGHTS)?)?;
                Kind::Sequence(Arc::new(m))
            }
            Flavor::Cnn => {
                check_single_column(v, TENSOR_COLUMN, &[DType::F32, DType::F64])?;
                let (m, _) = Cnn::from_parts(v.file(bundle::MODEL)?, v.file(bundle::WEIGHTS)?)?;
                Kind::Cnn(Arc::new(m))
            }
            Flavor::Onnx => {
                check_single_column(v, TENSOR_COLUMN, &[DType::F32, DType::F64])?;
                let graph = OnnxModel::from_bytes(v.file(bundle::MODEL)?)?;
                let [(_, dims)] = graph.inputs() else {
                    return Err(incompatible(
                        v,
                        format!(
                            "an ONNX graph served here has one input, this one has {}",
                            graph.inputs().len()
                        ),
                    ));
                };
                // `[batch, d1, d2, ...]` with every dimension after the batch declared.
                let shape: Option<Vec<usize>> = dims.iter().skip(1).copied().collect();
                let shape = match shape {
                    Some(s) if !dims.is_empty() && !s.is_empty() => s,
                    _ => {
                        return Err(incompatible(
                            v,
                            format!(
                            "the ONNX input must be [batch, fixed dims...], it declares {dims:?}"
                        ),
                        ))
                    }
                };
                // One zero row tells the output width (and that the graph runs at all).
                let len: usize = shape.iter().product();
                let mut full = vec![1];
                full.extend(&shape);
                let outputs = graph.predict(&vec![0.0; len], &full)?.len();
                Kind::Onnx {
                    graph: Arc::new(graph),
                    shape,
                    outputs,
                }
            }
        };
        let declared = v
            .version
            .meta
            .input_schema
            .as_ref()
            .and_then(|s| s.fields().first().map(|f| f.name.clone()));
        let input_name = match &kind {
            Kind::Tabular(_) => String::new(),
            Kind::Sequence(_) => declared.unwrap_or_else(|| "text".into()),
            Kind::Cnn(_) | Kind::Onnx { .. } => declared.unwrap_or_else(|| "input".into()),
        };
        Ok(Model {
            version: v.version.version,
            flavor,
            kind,
            input_name,
        })
    }

    /// The name of a text or tensor model's one input, what a request names it by (its
    /// declared column, else `text` for text models and `input` for tensor models); empty for
    /// tabular models, whose inputs are the pipeline's columns.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The registry version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The flavor.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// What a row of input is.
    pub fn input(&self) -> InputSpec {
        match &self.kind {
            Kind::Tabular(m) => InputSpec::Tabular(m.pipeline.input_schema().clone()),
            Kind::Sequence(_) => InputSpec::Text,
            Kind::Cnn(m) => {
                let c = m.config();
                InputSpec::Tensor(vec![c.channels, c.height, c.width])
            }
            Kind::Onnx { shape, .. } => InputSpec::Tensor(shape.clone()),
        }
    }

    /// Values per scored row (every class, every target).
    pub fn outputs(&self) -> usize {
        match &self.kind {
            Kind::Tabular(m) => m.outputs(),
            Kind::Sequence(m) => m.outputs(),
            Kind::Cnn(m) => m.outputs(),
            Kind::Onnx { outputs, .. } => *outputs,
        }
    }

    /// The tabular model (pipeline and predictor), for the code that serves store rows.
    pub fn tabular(&self) -> Option<&ServedModel> {
        match &self.kind {
            Kind::Tabular(m) => Some(m),
            _ => None,
        }
    }

    /// Scores a batch as one batch: `rows * outputs()` values, row-major. The input must be
    /// the kind [`Model::input`] names; a batch over [`MAX_BATCH_ROWS`] rows, or tensors of
    /// the wrong length, are typed errors.
    pub fn score_batch(&self, input: Input<'_>) -> Result<Vec<f64>> {
        let rows = input.rows();
        if rows > MAX_BATCH_ROWS {
            return Err(ModelError::Shape(format!(
                "a batch of {rows} rows (limit {MAX_BATCH_ROWS})"
            )));
        }
        let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        let out = match (&self.kind, input) {
            (Kind::Tabular(m), Input::Frame(f)) => m.score_batch(f)?,
            (Kind::Sequence(m), Input::Texts(t)) => widen(m.predict_texts(t)?),
            (Kind::Cnn(m), Input::Tensors { data, rows }) => {
                self.check_tensors(data, rows)?;
                widen(m.predict_images(data, rows)?)
            }
            (Kind::Onnx { graph, shape, .. }, Input::Tensors { data, rows }) => {
                self.check_tensors(data, rows)?;
                if rows == 0 {
                    Vec::new()
                } else {
                    let mut full = vec![rows];
                    full.extend(shape);
                    widen(graph.predict(data, &full)?)
                }
            }
            (_, other) => {
                return Err(ModelError::Shape(format!(
                    "this {} model reads {:?}, not {}",
                    self.flavor.as_str(),
                    self.input(),
                    other.kind()
                )))
            }
        };
        if out.len() != rows * self.outputs() {
            return Err(ModelError::Shape(format!(
                "{rows} rows scored into {} values, expected {}",
                out.len(),
                rows * self.outputs()
            )));
        }
        Ok(out)
    }

    /// Scores a frame as one batch, whatever the flavor reads: a tabular model its pipeline's
    /// columns; a text model the string column named [`Model::input_name`]; a tensor model the
    /// numeric columns `{input_name}_0`, `{input_name}_1`, ... (one per tensor element, in
    /// row-major order). The one way training, retraining and batch jobs score a frame.
    pub fn score_frame(&self, frame: &Frame) -> Result<Vec<f64>> {
        match self.input() {
            InputSpec::Tabular(_) => self.score_batch(Input::Frame(frame)),
            InputSpec::Text => {
                let col = frame.column(&self.input_name)?;
                let texts: Vec<&str> = (0..frame.nrows())
                    .map(|i| match col.get(i) {
                        keel_core::ValueRef::Str(s) => Ok(s),
                        other => Err(ModelError::Shape(format!(
                            "column `{}` row {i}: {other:?} is not a text",
                            self.input_name
                        ))),
                    })
                    .collect::<Result<_>>()?;
                self.score_batch(Input::Texts(&texts))
            }
            InputSpec::Tensor(_) => {
                let data = tensor_columns(
                    frame,
                    &self.input_name,
                    self.input().tensor_len().unwrap_or(0),
                )?;
                self.score_batch(Input::Tensors {
                    data: &data,
                    rows: frame.nrows(),
                })
            }
        }
    }

    /// Scores one row: every output. Equal to [`Model::score_batch`] of a one-row batch.
    pub fn score_row(&self, input: Input<'_>) -> Result<Vec<f64>> {
        if input.rows() != 1 {
            return Err(ModelError::Shape(format!(
                "score_row takes one row, got {}",
                input.rows()
            )));
        }
        self.score_batch(input)
    }

    fn check_tensors(&self, data: &[f32], rows: usize) -> Result<()> {
        let len = self.input().tensor_len().unwrap_or(0);
        if Some(data.len()) != rows.checked_mul(len) {
            return Err(ModelError::Shape(format!(
                "{rows} tensors of {len} values need {} values, got {}",
                rows.saturating_mul(len),
                data.len()
            )));
        }
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(ModelError::Shape(format!(
                "tensor value {i} is {} (inputs must be finite)",
                data[i]
            )));
        }
        Ok(())
    }
}

/// What a tensor model (CNN, ONNX) declares, if anything: its tensor as one column.
const TENSOR_COLUMN: &str = "a tensor model reads one f32 tensor column";

/// A bundle that declares an input schema must declare one column of one of `dtypes`
/// (`what` says what the model reads).
fn check_single_column(v: &LoadedVersion, what: &str, dtypes: &[DType]) -> Result<()> {
    if let Some(s) = &v.version.meta.input_schema {
        if !(s.len() == 1 && dtypes.contains(&s.fields()[0].dtype)) {
            return Err(incompatible(
                v,
                format!(
                    "{what}, the bundle declares {:?}",
                    s.names().collect::<Vec<_>>()
                ),
            ));
        }
    }
    Ok(())
}

/// The tensors of a frame whose columns `{prefix}_0 .. {prefix}_{len-1}` hold one element each:
/// `rows * len` values, row-major.
pub fn tensor_columns(frame: &Frame, prefix: &str, len: usize) -> Result<Vec<f32>> {
    let cols = (0..len)
        .map(|j| frame.column(&format!("{prefix}_{j}")))
        .collect::<keel_core::Result<Vec<_>>>()?;
    let mut data = Vec::with_capacity(frame.nrows().saturating_mul(len));
    for i in 0..frame.nrows() {
        for (j, c) in cols.iter().enumerate() {
            let v = c.get_f64(i).ok_or_else(|| {
                ModelError::Shape(format!("column `{prefix}_{j}` row {i} is not a number"))
            })?;
            data.push(v as f32);
        }
    }
    Ok(data)
}
