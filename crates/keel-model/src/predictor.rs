//! Models behind one trait, and the bundle a registry version loads into.

use std::sync::Arc;

use keel_core::ValueRef;
use keel_gbdt::GbdtModel;
use keel_registry::LoadedVersion;
use keel_transform::FittedPipeline;

use crate::{bundle, Flavor, ModelError, Result};

/// Anything that scores one row of model-ready features (the pipeline's outputs).
pub trait Predictor: Send + Sync {
    /// Scores `features` into `out` (`outputs()` values).
    fn predict(&self, features: &[f64], out: &mut [f64]) -> Result<()>;
    /// Values per prediction.
    fn outputs(&self) -> usize;
    /// Features per row the model reads (checked against the pipeline's width at load).
    fn inputs(&self) -> usize;
    /// Scores `rows` rows of `inputs()` features each (row-major) into `out` (`rows *
    /// outputs()` values), as one batch. The default scores row by row.
    fn predict_batch(&self, features: &[f64], rows: usize, out: &mut [f64]) -> Result<()> {
        check_batch(self.inputs(), self.outputs(), features, rows, out)?;
        let (w, k) = (self.inputs(), self.outputs());
        for (x, o) in features.chunks(w.max(1)).zip(out.chunks_mut(k.max(1))) {
            self.predict(x, o)?;
        }
        Ok(())
    }
}

/// The shape every `predict_batch` takes: `rows * inputs` features, `rows * outputs` values.
fn check_batch(
    inputs: usize,
    outputs: usize,
    features: &[f64],
    rows: usize,
    out: &[f64],
) -> Result<()> {
    if features.len() != rows * inputs || out.len() != rows * outputs {
        return Err(ModelError::Shape(format!(
            "a batch of {rows} rows needs {} features and {} outputs, got {} and {}",
            rows * inputs,
            rows * outputs,
            features.len(),
            out.len()
        )));
    }
    Ok(())
}

/// A GBDT scored by keel's pure-Rust engine.
#[derive(Debug, Clone)]
pub struct GbdtPredictor(pub GbdtModel);

impl Predictor for GbdtPredictor {
    fn predict(&self, features: &[f64], out: &mut [f64]) -> Result<()> {
        Ok(self.0.predict_row(features, out)?)
    }
    fn outputs(&self) -> usize {
        self.0.num_outputs()
    }
    fn inputs(&self) -> usize {
        self.0.num_features()
    }
    fn predict_batch(&self, features: &[f64], rows: usize, out: &mut [f64]) -> Result<()> {
        check_batch(self.inputs(), self.outputs(), features, rows, out)?;
        let scores = self
            .0
            .predict(features, &keel_gbdt::PredictOptions::default())?;
        // XGBoost's `multi:softmax` answers one class index per row, not `outputs()` values.
        if scores.len() != out.len() {
            return Err(ModelError::Shape(format!(
                "a batch of {rows} rows scored into {} values, expected {}",
                scores.len(),
                out.len()
            )));
        }
        out.copy_from_slice(&scores);
        Ok(())
    }
}

/// A keel-deep MLP: the first `numeric` features are numeric inputs, the remaining ones
/// category codes.
#[derive(Debug, Clone)]
pub struct DeepPredictor(pub keel_deep::Mlp);

impl DeepPredictor {
    /// Splits pipeline outputs into the MLP's numeric inputs and category codes (the first
    /// `numeric` values, then one code per embedding; a missing or negative code is
    /// `u32::MAX`, which the model reads as unknown), appending to `num` and `codes`.
    fn split(&self, features: &[f64], num: &mut Vec<f32>, codes: &mut Vec<u32>) {
        let n = self.0.config().numeric;
        num.extend(features[..n].iter().map(|x| *x as f32));
        codes.extend(features[n..].iter().map(|x| {
            if x.is_finite() && *x >= 0.0 {
                *x as u32
            } else {
                u32::MAX
            }
        }));
    }
}

impl Predictor for DeepPredictor {
    fn predict(&self, features: &[f64], out: &mut [f64]) -> Result<()> {
        if features.len() != self.inputs() {
            return Err(ModelError::Shape(format!(
                "deep model expects {} features, got {}",
                self.inputs(),
                features.len()
            )));
        }
        let (mut num, mut codes) = (Vec::new(), Vec::new());
        self.split(features, &mut num, &mut codes);
        let mut o = vec![0f32; self.0.outputs()];
        self.0.predict_one(&num, &codes, &mut o)?;
        for (d, s) in out.iter_mut().zip(o) {
            *d = f64::from(s);
        }
        Ok(())
    }
    fn outputs(&self) -> usize {
        self.0.outputs()
    }
    fn inputs(&self) -> usize {
        self.0.config().numeric + self.0.config().embeddings.len()
    }
    fn predict_batch(&self, features: &[f64], rows: usize, out: &mut [f64]) -> Result<()> {
        check_batch(self.inputs(), self.outputs(), features, rows, out)?;
        let w = self.inputs();
        let n = self.0.config().numeric;
        let mut num = Vec::with_capacity(rows * n);
        let mut codes = Vec::with_capacity(rows * (w - n));
        for x in features.chunks(w.max(1)) {
            self.split(x, &mut num, &mut codes);
        }
        let scores = self.0.predict_batch(&num, &codes, rows)?;
        for (d, s) in out.iter_mut().zip(scores) {
            *d = f64::from(s);
        }
        Ok(())
    }
}

/// A servable model version: its fitted pipeline and its predictor.
#[derive(Clone)]
pub struct ServedModel {
    /// Registry version.
    pub version: u32,
    /// Frozen transforms (serving never fits).
    pub pipeline: Arc<FittedPipeline>,
    /// The model.
    pub predictor: Arc<dyn Predictor>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ServedModel {
    /// Builds from a verified registry bundle: `pipeline` plus `model` (flavor `gbdt`: keel or
    /// LightGBM/XGBoost bytes) or `model` + `weights` (flavor `deep`: manifest + safetensors).
    /// Refused with [`ModelError::IncompatibleBundle`] when the model does not read as many
    /// features as the pipeline writes (every request would fail).
    pub fn from_bundle(v: &LoadedVersion) -> Result<ServedModel> {
        let (pipeline, predictor): (FittedPipeline, Arc<dyn Predictor>) =
            match Flavor::parse(&v.version.meta.flavor) {
                Some(Flavor::Gbdt) => (
                    FittedPipeline::from_bytes(v.file(bundle::PIPELINE)?)?,
                    Arc::new(GbdtPredictor(GbdtModel::from_bytes(
                        v.file(bundle::MODEL)?,
                    )?)),
                ),
                Some(Flavor::Mlp) => (
                    FittedPipeline::from_bytes(v.file(bundle::PIPELINE)?)?,
                    Arc::new(DeepPredictor(
                        keel_deep::Mlp::from_parts(
                            v.file(bundle::MODEL)?,
                            v.file(bundle::WEIGHTS)?,
                        )?
                        .0,
                    )),
                ),
                Some(other) => {
                    return Err(ModelError::Unsupported(format!(
                        "a {} model reads no tabular pipeline: load it with Model::load",
                        other.as_str()
                    )))
                }
                None => {
                    return Err(ModelError::Unsupported(format!(
                        "model flavor `{}` (one of gbdt, deep, sequence, cnn, onnx)",
                        v.version.meta.flavor
                    )))
                }
            };
        if predictor.inputs() != pipeline.width() {
            return Err(ModelError::IncompatibleBundle {
                model: v.version.name.clone(),
                version: v.version.version,
                reason: format!(
                    "the model reads {} features but the pipeline writes {}",
                    predictor.inputs(),
                    pipeline.width()
                ),
            });
        }
        Ok(ServedModel {
            version: v.version.version,
            pipeline: Arc::new(pipeline),
            predictor,
        })
    }

    /// Transforms raw inputs (in the pipeline's input order) and scores them: every output.
    pub fn score(&self, inputs: &[ValueRef<'_>]) -> Result<Vec<f64>> {
        let x = self.pipeline.transform_row(inputs)?;
        let mut out = vec![0.0; self.predictor.outputs()];
        self.predictor.predict(&x, &mut out)?;
        Ok(out)
    }

    /// Transforms a frame (columns by the pipeline's input names) and scores it as one batch:
    /// `rows * outputs()` values, row-major (every output of every row). Equal to
    /// [`ServedModel::score`] row by row.
    pub fn score_batch(&self, frame: &keel_core::Frame) -> Result<Vec<f64>> {
        let x = self.pipeline.transform(frame)?;
        let rows = x.nrows();
        let flat: Vec<f64> = x.iter().copied().collect();
        let mut out = vec![0.0; rows * self.predictor.outputs()];
        self.predictor.predict_batch(&flat, rows, &mut out)?;
        Ok(out)
    }

    /// Values per scored row.
    pub fn outputs(&self) -> usize {
        self.predictor.outputs()
    }
}
