//! # keel-model
//!
//! The one seam between a registered model version and the code that scores it: serving
//! (`keel-serve`), batch jobs (precomputed predictions) and the retraining gate (`keel-train`)
//! all load a bundle through [`Model::load`] (tabular models also as [`ServedModel`], which
//! store-fed serving uses) and score through [`Model::score_batch`] (one batch) or
//! [`Model::score_row`], so they cannot disagree about a model.
//!
//! A bundle is a registry version whose files are named by [`bundle`]. By [`Flavor`]:
//! - `gbdt`: the frozen `pipeline` and a GBDT `model` (keel, LightGBM or XGBoost bytes);
//! - `deep`: the `pipeline` and an MLP (`model` manifest + `weights` safetensors);
//! - `sequence`: a text encoder (`model` manifest + `weights`), one text per row;
//! - `cnn`: an image CNN (`model` manifest + `weights`), one `[C, H, W]` f32 tensor per row;
//! - `onnx`: an ONNX graph (`model`) with one `[batch, ...]` f32 input.
//!
//! Loading checks the model against the bundle: a tabular model reads as many features as the
//! pipeline writes, a text model declares one string column, a tensor model one tensor.
//!
//! ```
//! use keel_model::{bundle, Flavor};
//! assert_eq!(Flavor::parse("gbdt"), Some(Flavor::Gbdt));
//! assert_eq!(bundle::PIPELINE, "pipeline");
//! ```
//!
//! Serving links no training code: this crate depends on keel-transform without `fit` and on
//! keel-gbdt without `train`.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod error;
mod model;
mod predictor;

pub use error::{ModelError, Result};
pub use model::{tensor_columns, Input, InputSpec, Model, MAX_BATCH_ROWS};
pub use predictor::{DeepPredictor, GbdtPredictor, Predictor, ServedModel};

/// The file names of a registered bundle.
pub mod bundle {
    /// The frozen transform pipeline (`XPIP` envelope).
    pub const PIPELINE: &str = "pipeline";
    /// The model: keel GBDT envelope, LightGBM text or XGBoost JSON/UBJSON; a deep model's
    /// manifest (MLP, sequence encoder, CNN); or an ONNX graph.
    pub const MODEL: &str = "model";
    /// A deep model's weights (safetensors).
    pub const WEIGHTS: &str = "weights";
    /// The reference profile for drift monitoring (`PROF` envelope).
    pub const REFERENCE: &str = "reference";
}

/// What kind of model a bundle holds (`ModelMeta::flavor` in the registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Flavor {
    /// Gradient-boosted trees.
    Gbdt,
    /// keel-deep's tabular MLP (numeric inputs and embedded category codes).
    Mlp,
    /// keel-deep's sequence encoder: one text per row.
    Sequence,
    /// keel-deep's image CNN: one `[C, H, W]` tensor per row.
    Cnn,
    /// An ONNX graph with one f32 input, evaluated by keel-deep (pure Rust).
    Onnx,
}

impl Flavor {
    /// The registry's flavor text (`"gbdt"`, `"deep"`, `"sequence"`, `"cnn"`, `"onnx"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Gbdt => "gbdt",
            Flavor::Mlp => "deep",
            Flavor::Sequence => "sequence",
            Flavor::Cnn => "cnn",
            Flavor::Onnx => "onnx",
        }
    }

    /// Every flavor this build loads.
    pub const ALL: [Flavor; 5] = [
        Flavor::Gbdt,
        Flavor::Mlp,
        Flavor::Sequence,
        Flavor::Cnn,
        Flavor::Onnx,
    ];

    /// Reads a registry flavor text; `None` for one this build does not load.
    pub fn parse(text: &str) -> Option<Flavor> {
        match text {
            "gbdt" => Some(Flavor::Gbdt),
            "deep" => Some(Flavor::Mlp),
            "sequence" => Some(Flavor::Sequence),
            "cnn" => Some(Flavor::Cnn),
            "onnx" => Some(Flavor::Onnx),
            _ => None,
        }
    }
}
