//! Models behind one trait, and the bundle a registry version loads into.

use std::sync::Arc;

use keel_core::ValueRef;
use keel_gbdt::GbdtModel;
use keel_registry::LoadedVersion;
use keel_transform::FittedPipeline;

use crate::{Result, ServeError};

/// Anything that scores one row of model-ready features (the pipeline's outputs).
pub trait Predictor: Send + Sync {
    /// Scores `features` into `out` (`outputs()` values).
    fn predict(&self, features: &[f64], out: &mut [f64]) -> Result<()>;
    /// Values per prediction.
    fn outputs(&self) -> usize;
    /// Features per row the model reads (checked against the pipeline's width at load).
    fn inputs(&self) -> usize;
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
}

/// A keel-deep MLP: the first `numeric` features are numeric inputs, the remaining ones
/// category codes.
#[derive(Debug, Clone)]
pub struct DeepPredictor(pub keel_deep::Mlp);

impl Predictor for DeepPredictor {
    fn predict(&self, features: &[f64], out: &mut [f64]) -> Result<()> {
        let n = self.0.config().numeric;
        if features.len() != n + self.0.config().embeddings.len() {
            return Err(ServeError::BadRequest(format!(
                "deep model expects {} features, got {}",
                n + self.0.config().embeddings.len(),
                features.len()
            )));
        }
        let num: Vec<f32> = features[..n].iter().map(|x| *x as f32).collect();
        let codes: Vec<u32> = features[n..]
            .iter()
            .map(|x| {
                if x.is_finite() && *x >= 0.0 {
                    *x as u32
                } else {
                    u32::MAX
                }
            })
            .collect();
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
    /// Refused with [`ServeError::IncompatibleBundle`] when the model does not read as many
    /// features as the pipeline writes (every request would fail).
    pub fn from_bundle(v: &LoadedVersion) -> Result<ServedModel> {
        let pipeline = FittedPipeline::from_bytes(v.file("pipeline")?)?;
        let predictor: Arc<dyn Predictor> = match v.version.meta.flavor.as_str() {
            "gbdt" => Arc::new(GbdtPredictor(GbdtModel::from_bytes(v.file("model")?)?)),
            "deep" => Arc::new(DeepPredictor(
                keel_deep::Mlp::from_parts(v.file("model")?, v.file("weights")?)?.0,
            )),
            other => {
                return Err(ServeError::Unsupported(format!(
                    "model flavor `{other}` (gbdt and deep are served)"
                )))
            }
        };
        if predictor.inputs() != pipeline.width() {
            return Err(ServeError::IncompatibleBundle {
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

    /// Transforms raw inputs (in the pipeline's input order) and scores them.
    pub fn score(&self, inputs: &[ValueRef<'_>]) -> Result<Vec<f64>> {
        let x = self.pipeline.transform_row(inputs)?;
        let mut out = vec![0.0; self.predictor.outputs()];
        self.predictor.predict(&x, &mut out)?;
        Ok(out)
    }
}
