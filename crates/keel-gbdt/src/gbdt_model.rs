//! [`GbdtModel`]: a loaded model (its IR and the scorer compiled from it) and everything a
//! user does with one: load, save, inspect, score rows, batches and frames, explain.

use crate::error::{GbdtError, Result};
use crate::load::{self, lightgbm};
use crate::model::{Model, Source, Transform};
use crate::predict::{FeatureValue, Output, PredictOptions};
use crate::scorer::Scorer;
use crate::shap;
use keel_core::{Column, DType, Field, Frame, Schema, ValueRef};
use std::path::Path;

/// A loaded GBDT model, ready to score. `Send + Sync`: share one across request threads.
#[derive(Clone, PartialEq)]
pub struct GbdtModel {
    pub(crate) inner: Scorer,
}

impl From<Model> for GbdtModel {
    /// Compiles a validated IR.
    fn from(ir: Model) -> GbdtModel {
        GbdtModel {
            inner: Scorer::compile(ir),
        }
    }
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

    /// Loads a model from bytes in any supported format (see [`Format::sniff`](crate::Format::sniff)).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        load::parse(bytes).map(Into::into)
    }

    /// Parses LightGBM's text format.
    pub fn from_lightgbm_text(text: &str) -> Result<Self> {
        load::lightgbm::load(text).map(Into::into)
    }

    /// Parses XGBoost's JSON format.
    pub fn from_xgboost_json(bytes: &[u8]) -> Result<Self> {
        load::xgboost::load_json(bytes).map(Into::into)
    }

    /// Parses XGBoost's UBJSON format.
    pub fn from_xgboost_ubjson(bytes: &[u8]) -> Result<Self> {
        load::xgboost::load_ubjson(bytes).map(Into::into)
    }

    /// Encodes the model in keel's envelope (kind `GBDT`, format version 1).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        load::keel::encode(self.inner.ir())
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

impl Scorer {
    /// One row, all trees, into `out` (`num_outputs` values).
    #[inline]
    pub(crate) fn score_one<F: FeatureValue>(&self, row: &[F], output: Output, out: &mut [f64]) {
        let iters = self.iteration_ptr.len() - 1;
        if self.source == Source::XgBoost {
            self.raw_one::<true, F>(row, 0..self.trees.len(), out);
        } else {
            self.raw_one::<false, F>(row, 0..self.trees.len(), out);
        }
        self.finish_row(out, iters, output);
    }
}
