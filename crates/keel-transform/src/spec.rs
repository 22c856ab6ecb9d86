//! The declarative description of a transform: what to do with each column, before fitting.

use serde::{Deserialize, Serialize};

/// A transform specification: one [`ColumnSpec`] per input column, in output order.
///
/// A `Spec` is plain data (serde), so it lives in a config file next to the training job. It
/// is fitted once, on training data only, into a [`crate::FittedPipeline`] (the `fit` feature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The columns, in the order their outputs appear.
    pub columns: Vec<ColumnSpec>,
}

/// What happens to one input column: a chain of steps applied in order.
///
/// The chain starts with the column's value (a number for numeric and boolean columns, a
/// label for categorical and string columns). Numeric steps (`standardize`, `min_max`,
/// `robust_scale`, `log1p`, `clip`, `quantile_bucket`) need a number; encoders (`one_hot`,
/// `ordinal`, `hash`) take a label (a number is encoded by its decimal text) and must come
/// last. An empty chain passes the value through as a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Input column name.
    pub column: String,
    /// Output name (prefix of encoder outputs); defaults to `column`. Needed when one input
    /// column feeds two chains.
    #[serde(default)]
    pub name: Option<String>,
    /// Steps, in application order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

impl ColumnSpec {
    /// A column with the given steps.
    pub fn new(column: impl Into<String>, steps: Vec<Step>) -> Self {
        ColumnSpec {
            column: column.into(),
            name: None,
            steps,
        }
    }

    /// Sets the output name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The output name: `name` when set, else the input column.
    pub fn output_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.column)
    }
}

/// One step of a column's chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
#[serde(deny_unknown_fields)]
pub enum Step {
    /// Replace missing values (scikit-learn's `SimpleImputer`).
    Impute {
        /// How the fill value is chosen.
        strategy: Impute,
    },
    /// `(x - mean) / std` with the population standard deviation (`StandardScaler`);
    /// a constant column gets scale 1.
    Standardize,
    /// Scale the training range onto `[0, 1]` (`MinMaxScaler`); a constant column gets scale 1.
    MinMax,
    /// `(x - median) / (q_high - q_low)` (`RobustScaler`), quantiles in percent.
    RobustScale {
        /// Lower quantile of the range, in percent (default 25).
        #[serde(default = "default_q_low")]
        q_low: f64,
        /// Upper quantile of the range, in percent (default 75).
        #[serde(default = "default_q_high")]
        q_high: f64,
    },
    /// `ln(1 + x)`; values below -1 become NaN.
    Log1p,
    /// Clamp into `[min, max]` (either bound optional).
    Clip {
        /// Lower bound.
        #[serde(default)]
        min: Option<f64>,
        /// Upper bound.
        #[serde(default)]
        max: Option<f64>,
    },
    /// Replace a value by the index of its quantile bin (`KBinsDiscretizer(strategy="quantile",
    /// encode="ordinal")`, linear quantiles); bins narrower than 1e-8 are merged away.
    QuantileBucket {
        /// Number of bins requested (at least 2).
        n_bins: usize,
    },
    /// One indicator column per training category, sorted (`OneHotEncoder`). Missing values
    /// give all zeros.
    OneHot {
        /// Keep at most this many output columns: the `max_categories - 1` most frequent
        /// categories plus one column for all the others (scikit-learn's infrequent category).
        #[serde(default)]
        max_categories: Option<usize>,
        /// What an unseen category does at transform time.
        #[serde(default)]
        unknown: Unknown,
    },
    /// The category's index among the sorted training categories; an unseen category gets the
    /// extra index `n` (the unknown bucket); a missing value gives NaN.
    Ordinal,
    /// Signed feature hashing into `n_features` columns (scikit-learn's `FeatureHasher` with
    /// `input_type="string"`, `alternate_sign=True`: MurmurHash3, seed 0).
    Hash {
        /// Number of output columns.
        n_features: usize,
    },
}

fn default_q_low() -> f64 {
    25.0
}
fn default_q_high() -> f64 {
    75.0
}

/// How an imputer chooses its fill value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Impute {
    /// Mean of the present values (numeric only).
    Mean,
    /// Median of the present values (numeric only).
    Median,
    /// The most frequent present value; ties go to the smallest.
    MostFrequent,
    /// A fixed number.
    Constant(f64),
    /// A fixed label (for categorical and string columns).
    ConstantLabel(String),
}

/// What a one-hot encoder does with a category it did not see in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// All indicator columns are zero (scikit-learn's `handle_unknown="ignore"`).
    #[default]
    Ignore,
    /// Count it as infrequent when an infrequent column exists, else ignore it
    /// (`"infrequent_if_exist"`).
    Infrequent,
    /// Refuse the row with [`crate::TransformError::UnknownCategory`].
    Error,
}

// Used by fitting only.
#[cfg(feature = "fit")]
impl Step {
    /// Whether the step encodes a categorical column (one-hot, ordinal, hash).
    pub(crate) fn is_encoder(&self) -> bool {
        matches!(
            self,
            Step::OneHot { .. } | Step::Ordinal | Step::Hash { .. }
        )
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Step::Impute { .. } => "impute",
            Step::Standardize => "standardize",
            Step::MinMax => "min_max",
            Step::RobustScale { .. } => "robust_scale",
            Step::Log1p => "log1p",
            Step::Clip { .. } => "clip",
            Step::QuantileBucket { .. } => "quantile_bucket",
            Step::OneHot { .. } => "one_hot",
            Step::Ordinal => "ordinal",
            Step::Hash { .. } => "hash",
        }
    }
}
