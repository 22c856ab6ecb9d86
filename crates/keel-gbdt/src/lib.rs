//! # keel-gbdt
//!
//! Pure-Rust scoring of real LightGBM and XGBoost model files, with the libraries' own numbers:
//! LightGBM text models (v3/v4) in double precision, bit for bit; XGBoost JSON and UBJSON models
//! (2.x/3.x) in float32 exactly as XGBoost computes them. Raw and transformed scores, leaf
//! indices, TreeSHAP contributions, iteration ranges, single rows without allocation, batches on
//! an explicit number of threads. No C or C++ in the scoring build.
//!
//! Loaders parse a file format and translate it into one internal representation; the scorer
//! only knows that representation, which also persists in keel's versioned envelope
//! ([`GbdtModel::to_bytes`]) so a service loads a large model in milliseconds.
//!
//! ```
//! use keel_gbdt::{GbdtModel, PredictOptions};
//!
//! # fn main() -> Result<(), keel_gbdt::GbdtError> {
//! // A one-split LightGBM model: x0 <= 0.5 -> 1.0, else 3.0 (NaN goes left by default).
//! let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
//!     max_feature_idx=0\nobjective=regression\nfeature_names=x0\n\nTree=0\nnum_leaves=2\n\
//!     num_cat=0\nsplit_feature=0\nthreshold=0.5\ndecision_type=10\nleft_child=-1\n\
//!     right_child=-2\nleaf_value=1 3\nleaf_count=5 5\ninternal_count=10\nis_linear=0\n\
//!     shrinkage=1\n\nend of trees\n";
//! let model = GbdtModel::from_bytes(text.as_bytes())?;
//!
//! let mut out = [0.0];
//! model.predict_row(&[0.2], &mut out)?; // one row, no allocation
//! assert_eq!(out, [1.0]);
//!
//! let batch = model.predict(&[0.2, 0.9, f64::NAN], &PredictOptions::default().with_threads(2))?;
//! assert_eq!(batch, vec![1.0, 3.0, 1.0]);
//!
//! // Persist in keel's envelope and load back.
//! let again = GbdtModel::from_bytes(&model.to_bytes()?)?;
//! assert_eq!(again.predict(&[0.9], &PredictOptions::default())?, vec![3.0]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Crate features
//! - `train`: train through LightGBM's C API (`lightgbm3-sys`, links LightGBM's C++). Scoring
//!   never needs it.
#![deny(missing_docs)]

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gbdt_model;
mod load;
mod model;
mod predict;
mod qs;
mod scorer;
mod shap;
#[cfg(feature = "train")]
mod train;

pub use error::{GbdtError, Result};
pub use gbdt_model::{GbdtModel, ModelInfo};
pub use load::Format;
pub use model::{Source, Transform, MAX_DEPTH, MAX_FEATURES, MAX_NODES};
pub use predict::{FeatureValue, Output, PredictOptions};
#[cfg(feature = "train")]
pub use train::{train, train_dense, TrainConfig, Trained};

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<super::GbdtModel>();
    }
}
