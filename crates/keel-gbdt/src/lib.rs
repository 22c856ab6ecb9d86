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
mod lightgbm;
mod model;
mod predict;
mod qs;
mod shap;
#[cfg(feature = "train")]
mod train;
mod ubjson;
mod xgboost;

pub use error::{GbdtError, Result};
pub use model::{Source, Transform, MAX_DEPTH, MAX_FEATURES, MAX_NODES};
pub use predict::{FeatureValue, Output, PredictOptions};
#[cfg(feature = "train")]
pub use train::{train, train_dense, TrainConfig, Trained};

use keel_core::envelope::{self, Kind, Persisted};
use keel_core::{Column, DType, Field, Frame, Schema, ValueRef};
use model::Model;
use std::path::Path;

/// A loaded GBDT model, ready to score. `Send + Sync`: share one across request threads.
#[derive(Clone, PartialEq)]
pub struct GbdtModel {
    inner: Model,
}

impl std::fmt::Debug for GbdtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.info();
        f.debug_struct("GbdtModel")
            .field("source", &i.source)
            .field("objective", &i.objective)
            .field("outputs", &i.num_outputs)
            .field("trees", &i.num_trees)
            .field("features", &i.num_features)
            .finish()
    }
}

/// Facts about a model, as `keel gbdt inspect` prints them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelInfo {
    /// Library the model came from.
    pub source: Source,
    /// Objective as written in the file.
    pub objective: String,
    /// Output transform.
    pub transform: Transform,
    /// Raw outputs per row (classes for multiclass).
    pub num_outputs: usize,
    /// Boosting iterations.
    pub num_iterations: usize,
    /// Trees.
    pub num_trees: usize,
    /// Leaves over all trees.
    pub num_leaves: usize,
    /// Deepest tree (root at depth 0).
    pub max_depth: usize,
    /// Input features.
    pub num_features: usize,
    /// Their names.
    pub feature_names: Vec<String>,
    /// Features used by categorical splits.
    pub categorical_features: Vec<usize>,
    /// Whether any tree has linear leaves.
    pub linear_leaves: bool,
}

/// The persisted form: the internal representation, validated on decode.
#[derive(serde::Serialize, serde::Deserialize)]
struct Persist(Model);

impl Persisted for Persist {
    const KIND: Kind = Kind(*b"GBDT");
    const FORMAT_VERSION: u16 = 1;
}

/// File formats [`GbdtModel::from_bytes`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// LightGBM `save_model` text.
    LightGbmText,
    /// XGBoost JSON.
    XgBoostJson,
    /// XGBoost UBJSON.
    XgBoostUbjson,
    /// keel's envelope (`GBDT` kind).
    Keel,
}

impl Format {
    /// Guesses the format from the first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        let trimmed = {
            let mut b = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            while let [first, rest @ ..] = b {
                if first.is_ascii_whitespace() {
                    b = rest;
                } else {
                    break;
                }
            }
            b
        };
        if bytes.starts_with(&envelope::MAGIC) {
            Some(Format::Keel)
        } else if trimmed.starts_with(b"tree") || trimmed.starts_with(b"version=") {
            Some(Format::LightGbmText)
        } else if trimmed.starts_with(b"{\"")
            || trimmed.starts_with(b"{\n")
            || trimmed.starts_with(b"{ ")
        {
            Some(Format::XgBoostJson)
        } else if bytes.first() == Some(&b'{') {
            Some(Format::XgBoostUbjson)
        } else {
            None
        }
    }
}

impl GbdtModel {
    /// Loads a model from a file in any supported format (detected from its content).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GbdtError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Loads a model from bytes in any supported format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        match Format::sniff(bytes) {
            Some(Format::Keel) => {
                let p: Persist = envelope::decode(bytes)?;
                p.0.validate("keel")?;
                Ok(p.0.into()) // `into` prepares the runtime tables
            }
            Some(Format::LightGbmText) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| error::invalid("LightGBM", format!("not UTF-8: {e}")))?;
                Self::from_lightgbm_text(text)
            }
            Some(Format::XgBoostJson) => Self::from_xgboost_json(bytes),
            Some(Format::XgBoostUbjson) => Self::from_xgboost_ubjson(bytes),
            None => Err(GbdtError::UnknownFormat),
        }
    }

    /// Parses LightGBM's text format.
    pub fn from_lightgbm_text(text: &str) -> Result<Self> {
        lightgbm::load(text).map(Into::into)
    }

    /// Parses XGBoost's JSON format.
    pub fn from_xgboost_json(bytes: &[u8]) -> Result<Self> {
        let doc: serde_json::Value = serde_json::from_slice(&xgboost::sanitize_json(bytes))?;
        xgboost::load_value(&doc).map(Into::into)
    }

    /// Parses XGBoost's UBJSON format.
    pub fn from_xgboost_ubjson(bytes: &[u8]) -> Result<Self> {
        let doc = ubjson::parse(bytes)?;
        xgboost::load_value(&doc).map(Into::into)
    }

    /// Encodes the model in keel's envelope (kind `GBDT`, format version 1).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(envelope::encode(&Persist(self.inner.clone()))?)
    }

    /// Writes [`GbdtModel::to_bytes`] to a file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|source| GbdtError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Number of input features a row must have.
    pub fn num_features(&self) -> usize {
        self.inner.num_features
    }

    /// Raw outputs per row (1, or the number of classes).
    pub fn num_outputs(&self) -> usize {
        self.inner.num_outputs
    }

    /// Values per row that [`GbdtModel::predict`] returns for `output`: 1 for XGBoost's
    /// `multi:softmax` class index, otherwise [`GbdtModel::num_outputs`].
    pub fn output_width(&self, output: Output) -> usize {
        if output == Output::Transformed && self.inner.transform == Transform::ArgMax {
            1
        } else {
            self.inner.num_outputs
        }
    }

    /// Boosting iterations.
    pub fn num_iterations(&self) -> usize {
        self.inner.iteration_ptr.len() - 1
    }

    /// Feature names, in input order.
    pub fn feature_names(&self) -> &[String] {
        &self.inner.feature_names
    }

    /// Category labels of feature `f` when the model recorded them (LightGBM `pandas_categorical`);
    /// a label's position is the code the model expects.
    pub fn category_labels(&self, f: usize) -> Option<&[String]> {
        self.inner.categories.get(f).and_then(|c| c.as_deref())
    }

    /// Summary facts.
    pub fn info(&self) -> ModelInfo {
        let m = &self.inner;
        ModelInfo {
            source: m.source,
            objective: m.objective.clone(),
            transform: m.transform,
            num_outputs: m.num_outputs,
            num_iterations: self.num_iterations(),
            num_trees: m.trees.len(),
            num_leaves: m.trees.iter().map(|t| t.num_leaves as usize).sum(),
            max_depth: m.trees.iter().map(|t| t.depth as usize).max().unwrap_or(0),
            num_features: m.num_features,
            feature_names: m.feature_names.clone(),
            categorical_features: lightgbm::categorical_features(m),
            linear_leaves: !m.linear.is_empty(),
        }
    }

    fn check_row<F>(&self, row: &[F], out: &[f64], width: usize) -> Result<()> {
        if row.len() != self.inner.num_features {
            return Err(GbdtError::Input(format!(
                "row has {} values, the model takes {}",
                row.len(),
                self.inner.num_features
            )));
        }
        if out.len() != width {
            return Err(GbdtError::Input(format!(
                "output holds {}, need {width}",
                out.len()
            )));
        }
        Ok(())
    }

    /// Scores one row into `out` (`num_outputs` values; 1 for `multi:softmax`), all iterations,
    /// transformed. Allocates nothing and never leaves the calling thread.
    pub fn predict_row<F: FeatureValue>(&self, row: &[F], out: &mut [f64]) -> Result<()> {
        self.predict_row_with(row, Output::Transformed, out)
    }

    /// Like [`GbdtModel::predict_row`], with the choice of raw or transformed scores.
    pub fn predict_row_with<F: FeatureValue>(
        &self,
        row: &[F],
        output: Output,
        out: &mut [f64],
    ) -> Result<()> {
        let width = self.output_width(output);
        self.check_row(row, out, width)?;
        let m = &self.inner;
        let k = m.num_outputs;
        if width == k {
            m.score_one(row, output, out);
        } else {
            // multi:softmax: the class index. Up to 64 classes on the stack.
            let mut buf = [0.0f64; 64];
            if k <= buf.len() {
                m.score_one(row, output, &mut buf[..k]);
                out[0] = buf[0];
            } else {
                let mut v = vec![0.0; k];
                m.score_one(row, output, &mut v);
                out[0] = v[0];
            }
        }
        Ok(())
    }

    /// Scores a row-major batch (`rows.len()` a multiple of [`GbdtModel::num_features`]);
    /// returns `nrows x output_width` values, row-major.
    pub fn predict<F: FeatureValue>(&self, rows: &[F], opts: &PredictOptions) -> Result<Vec<f64>> {
        let k = self.inner.num_outputs;
        let nrows = rows.len() / self.inner.num_features.max(1);
        let mut out = vec![0.0; nrows * k];
        self.inner.score(rows, opts, &mut out)?;
        if self.output_width(opts.output) != k {
            out = out.chunks(k).map(|c| c[0]).collect();
        }
        Ok(out)
    }

    /// Scores a batch into a caller-provided buffer of `nrows x num_outputs` (for
    /// `multi:softmax`, the class index is written in each row's first slot).
    pub fn predict_into<F: FeatureValue>(
        &self,
        rows: &[F],
        opts: &PredictOptions,
        out: &mut [f64],
    ) -> Result<()> {
        self.inner.score(rows, opts, out)
    }

    /// Leaf reached in every tree of the iteration range: `nrows x trees`, row-major.
    /// LightGBM reports the leaf ordinal, XGBoost the node id, as each library does.
    pub fn predict_leaf<F: FeatureValue>(
        &self,
        rows: &[F],
        opts: &PredictOptions,
    ) -> Result<Vec<u32>> {
        self.inner.leaves(rows, opts)
    }

    /// TreeSHAP contributions: per row, `num_outputs` blocks of `num_features + 1` values (bias
    /// last), matching LightGBM's `pred_contrib` and XGBoost's `pred_contribs`.
    pub fn predict_contrib<F: FeatureValue>(
        &self,
        rows: &[F],
        opts: &PredictOptions,
    ) -> Result<Vec<f64>> {
        let m = &self.inner;
        let f = m.num_features;
        if !rows.len().is_multiple_of(f) {
            return Err(GbdtError::Input(
                "input is not a whole number of rows".into(),
            ));
        }
        let (trees, _) = m.tree_range(opts.start_iteration, opts.num_iteration)?;
        let width = m.num_outputs * (f + 1);
        let mut out = vec![0.0; rows.len() / f * width];
        let mut scratch = Vec::new();
        for (row, o) in rows.chunks(f).zip(out.chunks_mut(width)) {
            shap::contributions(m, row, trees.clone(), &mut scratch, o)?;
        }
        Ok(out)
    }

    /// The schema of this model's input as a table: one nullable column per feature, named as
    /// the model names it, `f64` for numbers and `string` for categorical features whose labels
    /// the model recorded (pandas categories, XGBoost's categories). Reading a CSV with it
    /// ([`Frame::from_csv_path`]) matches columns by name, ignores other columns and refuses a
    /// field that does not parse, naming its row and column. Fails only for a model whose
    /// feature names repeat.
    pub fn input_schema(&self) -> Result<Schema> {
        let m = &self.inner;
        let fields = m
            .feature_names
            .iter()
            .zip(&m.categories)
            .map(|(name, labels)| {
                let dtype = if labels.is_some() {
                    DType::String
                } else {
                    DType::F64
                };
                Field::new(name.clone(), dtype)
            })
            .collect();
        Ok(Schema::new(fields)?)
    }

    /// Builds the dense input matrix for this model from a frame, matching columns to features
    /// by name: every feature must be a column (other columns, such as ids or labels, are
    /// ignored), else [`GbdtError::Input`] names the missing features. A frame whose columns
    /// carry other names must be matched explicitly with
    /// [`GbdtModel::frame_matrix_by_position`]. Categorical columns use the model's recorded
    /// labels when it has them (unknown labels become NaN, as in LightGBM), else their codes; a
    /// text value in a numeric feature is an error naming its row and column.
    pub fn frame_matrix(&self, frame: &Frame) -> Result<Vec<f64>> {
        self.require_columns(frame.schema().names())?;
        let names = &self.inner.feature_names;
        let cols = names
            .iter()
            .map(|n| frame.column(n))
            .collect::<keel_core::Result<Vec<_>>>()?;
        self.matrix_of(&cols, frame.nrows())
    }

    /// Checks that every model feature is among `columns` (a table's column names), else
    /// [`GbdtError::Input`] names the missing features (the first eight, and how many more).
    pub fn require_columns<'a>(&self, columns: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let have: std::collections::HashSet<&str> = columns.into_iter().collect();
        let names = &self.inner.feature_names;
        let missing: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !have.contains(n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 8;
        let mut list = format!("`{}`", missing[..missing.len().min(SHOWN)].join("`, `"));
        if missing.len() > SHOWN {
            list.push_str(&format!(" and {} more", missing.len() - SHOWN));
        }
        Err(GbdtError::Input(format!(
            "{} of the model's {} features are not columns of the input: {list}; columns are \
             matched by name (match by position only explicitly)",
            missing.len(),
            names.len(),
        )))
    }

    /// Builds the dense input matrix from a frame whose columns are the model's features in
    /// order, whatever their names (a file without a header): the frame must have exactly
    /// [`GbdtModel::num_features`] columns.
    pub fn frame_matrix_by_position(&self, frame: &Frame) -> Result<Vec<f64>> {
        let want = self.inner.num_features;
        if frame.ncols() != want {
            return Err(GbdtError::Input(format!(
                "matching by position needs exactly {want} columns (the model's features); the \
                 input has {}",
                frame.ncols()
            )));
        }
        let cols: Vec<&Column> = frame.columns().iter().collect();
        self.matrix_of(&cols, frame.nrows())
    }

    fn matrix_of(&self, cols: &[&Column], n: usize) -> Result<Vec<f64>> {
        let m = &self.inner;
        let mut out = vec![f64::NAN; n * m.num_features];
        for (j, col) in cols.iter().enumerate() {
            let labels = m.categories[j].as_ref();
            let index: Option<std::collections::HashMap<&str, usize>> =
                labels.map(|l| l.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect());
            for i in 0..n {
                out[i * m.num_features + j] = match (col.get(i), &index) {
                    (ValueRef::Category(_, s) | ValueRef::Str(s), Some(ix)) => {
                        ix.get(s).map_or(f64::NAN, |&c| c as f64)
                    }
                    (ValueRef::Str(s), None) => s.trim().parse().map_err(|_| {
                        GbdtError::Input(format!(
                            "row {i}, feature `{}`: {s:?} is not a number",
                            m.feature_names[j]
                        ))
                    })?,
                    _ => col.get_f64(i).unwrap_or(f64::NAN),
                };
            }
        }
        Ok(out)
    }

    /// Scores every row of a frame; see [`GbdtModel::frame_matrix`] for column matching.
    pub fn predict_frame(&self, frame: &Frame, opts: &PredictOptions) -> Result<Vec<f64>> {
        self.predict(&self.frame_matrix(frame)?, opts)
    }
}

impl Model {
    /// One row, all trees, into `out` (`num_outputs` values).
    #[inline]
    fn score_one<F: FeatureValue>(&self, row: &[F], output: Output, out: &mut [f64]) {
        let iters = self.iteration_ptr.len() - 1;
        if self.source == Source::XgBoost {
            self.raw_one::<true, F>(row, 0..self.trees.len(), out);
        } else {
            self.raw_one::<false, F>(row, 0..self.trees.len(), out);
        }
        self.finish_row(out, iters, output);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<super::GbdtModel>();
    }
}
