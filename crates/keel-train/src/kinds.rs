//! What a [`crate::TrainingJob`] trains: `kind = "gbdt" | "mlp" | "sequence" | "cnn" |
//! "auto"`, each kind's settings, and the choice `auto` makes from the data.

use keel_core::{DType, Frame};
use keel_deep::{CnnConfig, EarlyStopping, Head, OptimizerConfig, SeqConfig};
use serde::{Deserialize, Serialize};

/// The model family a job trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// LightGBM on the transformed columns (`[params]`).
    #[default]
    Gbdt,
    /// keel-deep's MLP on the transformed columns (`[mlp]`, `[train]`).
    Mlp,
    /// keel-deep's sequence encoder on one text column (`[sequence]`, `[train]`).
    Sequence,
    /// keel-deep's CNN on one image per row (`[cnn]`, `[train]`).
    Cnn,
    /// Chosen from the data: pixel columns of a `[cnn]` section -> `cnn`; a `[sequence]` column
    /// of free text -> `sequence`; otherwise `gbdt` (the run records the choice and why).
    Auto,
}

impl ModelKind {
    /// The job-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Gbdt => "gbdt",
            ModelKind::Mlp => "mlp",
            ModelKind::Sequence => "sequence",
            ModelKind::Cnn => "cnn",
            ModelKind::Auto => "auto",
        }
    }
}

/// `[mlp]`: the network over the transformed columns (their count is the input width).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpJob {
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Layer normalisation in each block.
    #[serde(default)]
    pub layer_norm: bool,
    /// Residual connections where widths match.
    #[serde(default)]
    pub residual: bool,
    /// Dropout during training.
    #[serde(default)]
    pub dropout: f32,
    /// Output head (`{ kind = "binary" }`, `{ kind = "multiclass", classes = 3 }`,
    /// `{ kind = "regression" }`).
    pub head: Head,
}

/// `[sequence]`: the text column and the encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceJob {
    /// The text column.
    pub column: String,
    /// The encoder (tokenizer, widths, head).
    pub config: SeqConfig,
}

/// `[cnn]`: the image columns and the network. Images are the numeric columns
/// `{prefix}_0 .. {prefix}_{C*H*W-1}`, channel first (as `keel_model::Model::score_frame`
/// reads them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnJob {
    /// The pixel columns' prefix (default `input`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The network.
    pub config: CnnConfig,
}

fn default_prefix() -> String {
    "input".into()
}

/// `[train]`: how a deep model trains (the job's `seed` seeds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepTrain {
    /// Optimiser (default AdamW, lr 1e-3).
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerConfig,
    /// Epochs (default 10).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Mini-batch size (default 64).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Linear warm-up steps.
    #[serde(default)]
    pub warmup_steps: usize,
    /// Gradient-norm clipping.
    #[serde(default)]
    pub clip_norm: Option<f64>,
    /// Early stopping on the validation loss.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
}

impl Default for DeepTrain {
    fn default() -> Self {
        DeepTrain {
            optimizer: default_optimizer(),
            epochs: default_epochs(),
            batch_size: default_batch(),
            warmup_steps: 0,
            clip_norm: None,
            early_stopping: None,
        }
    }
}

fn default_optimizer() -> OptimizerConfig {
    OptimizerConfig::AdamW {
        lr: 1e-3,
        weight_decay: 0.01,
    }
}
fn default_epochs() -> usize {
    10
}
fn default_batch() -> usize {
    64
}

impl DeepTrain {
    /// keel-deep's training config, seeded.
    pub(crate) fn config(&self, seed: u64) -> keel_deep::TrainConfig {
        keel_deep::TrainConfig {
            optimizer: self.optimizer,
            epochs: self.epochs,
            batch_size: self.batch_size,
            warmup_steps: self.warmup_steps,
            clip_norm: self.clip_norm,
            early_stopping: self.early_stopping,
            class_weights: None,
            seed,
        }
    }
}

/// The evaluation objective of a deep head.
pub(crate) fn objective_of(head: Head) -> &'static str {
    match head {
        Head::Binary => "binary",
        Head::Multiclass { .. } => "multiclass",
        Head::Regression => "regression",
    }
}

/// Mean length in characters of a string column's non-empty values, over at most 1,000 rows.
fn mean_text_len(frame: &Frame, column: &str) -> f64 {
    let Ok(col) = frame.column(column) else {
        return 0.0;
    };
    let n = frame.nrows().min(1000);
    let (mut total, mut seen) = (0usize, 0usize);
    for i in 0..n {
        if let keel_core::ValueRef::Str(s) = col.get(i) {
            total += s.chars().count();
            seen += 1;
        }
    }
    if seen == 0 {
        0.0
    } else {
        total as f64 / seen as f64
    }
}

/// What `kind = "auto"` trains, and why: a `[cnn]` section whose pixel columns are all in the
/// data -> CNN; a `[sequence]` section whose column holds free text (mean length over 20
/// characters with spaces: words, not category labels) -> sequence encoder; otherwise the
/// tabular rule, GBDT.
pub(crate) fn choose(
    frame: &Frame,
    sequence: Option<&SequenceJob>,
    cnn: Option<&CnnJob>,
) -> (ModelKind, String) {
    if let Some(c) = cnn {
        let len = c.config.channels * c.config.height * c.config.width;
        let present = (0..len).all(|j| frame.column(&format!("{}_{j}", c.prefix)).is_ok());
        if len > 0 && present {
            return (
                ModelKind::Cnn,
                format!(
                    "{len} pixel columns `{}_*` hold one {}x{}x{} image per row",
                    c.prefix, c.config.channels, c.config.height, c.config.width
                ),
            );
        }
    }
    if let Some(s) = sequence {
        let is_text = frame
            .schema()
            .field(&s.column)
            .is_some_and(|f| matches!(f.dtype, DType::String | DType::Categorical));
        let len = mean_text_len(frame, &s.column);
        if is_text && len > 20.0 {
            return (
                ModelKind::Sequence,
                format!(
                    "column `{}` holds free text (mean {len:.0} characters)",
                    s.column
                ),
            );
        }
    }
    (
        ModelKind::Gbdt,
        "tabular columns: gradient-boosted trees".into(),
    )
}
