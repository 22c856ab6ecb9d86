//! # keel-model
//!
//! The one seam between a registered model version and the code that scores it: serving
//! (`keel-serve`), batch jobs (precomputed predictions) and the retraining gate (`keel-train`)
//! all load a bundle through [`ServedModel::from_bundle`] and score through
//! [`ServedModel::score`] (one row) or [`ServedModel::score_batch`] (a frame, as one batch), so
//! they cannot disagree about a model.
//!
//! A bundle is a registry version whose files are named by [`bundle`]: the frozen
//! `pipeline` plus, by [`Flavor`], a GBDT `model` (keel, LightGBM or XGBoost bytes) or an MLP
//! (`model` manifest + `weights` safetensors). Loading checks that the model reads as many
//! features as the pipeline writes.
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
mod predictor;

pub use error::{ModelError, Result};
pub use predictor::{DeepPredictor, GbdtPredictor, Predictor, ServedModel};

/// The file names of a registered bundle.
pub mod bundle {
    /// The frozen transform pipeline (`XPIP` envelope).
    pub const PIPELINE: &str = "pipeline";
    /// The model: keel GBDT envelope, LightGBM text or XGBoost JSON/UBJSON; or a deep model's
    /// manifest.
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
}

impl Flavor {
    /// The registry's flavor text (`"gbdt"`, `"deep"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Gbdt => "gbdt",
            Flavor::Mlp => "deep",
        }
    }

    /// Reads a registry flavor text; `None` for one this build does not load.
    pub fn parse(text: &str) -> Option<Flavor> {
        match text {
            "gbdt" => Some(Flavor::Gbdt),
            "deep" => Some(Flavor::Mlp),
            _ => None,
        }
    }
}
