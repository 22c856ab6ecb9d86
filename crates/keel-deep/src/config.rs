//! Serialisable model and training configuration.

use serde::{Deserialize, Serialize};

use crate::{DeepError, Result};

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Head {
    /// One logit; sigmoid probability.
    Binary,
    /// `classes` logits; softmax probabilities.
    Multiclass {
        /// Number of classes (>= 2).
        classes: usize,
    },
    /// One value; identity.
    Regression,
}

impl Head {
    /// Width of the output layer.
    pub fn outputs(self) -> usize {
        match self {
            Head::Multiclass { classes } => classes,
            _ => 1,
        }
    }
}

/// An embedded categorical input: codes `0..cardinality`; any other code (unknown) maps to
/// the extra row `cardinality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingSpec {
    /// Number of known categories.
    pub cardinality: usize,
    /// Embedding width.
    pub dim: usize,
}

/// A tabular MLP: numeric inputs and embedded categorical inputs, concatenated, then hidden
/// blocks `linear -> [layer norm] -> relu -> [dropout]` (a block whose input and output widths
/// match adds its input back when `residual`), then the head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Numeric input features.
    pub numeric: usize,
    /// Categorical inputs, in input order.
    #[serde(default)]
    pub embeddings: Vec<EmbeddingSpec>,
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Layer normalisation in each block.
    #[serde(default)]
    pub layer_norm: bool,
    /// Residual connections where widths match.
    #[serde(default)]
    pub residual: bool,
    /// Dropout probability during training.
    #[serde(default)]
    pub dropout: f32,
    /// Output head.
    pub head: Head,
}

/// The checks every architecture's config shares: dropout in `[0, 1)` and, for a multiclass
/// head, 2..=[`MAX_WIDTH`] classes.
pub(crate) fn check_dropout_and_head(dropout: f32, head: Head) -> Result<()> {
    if !(0.0..1.0).contains(&dropout) {
        return Err(DeepError::Config(format!("dropout {dropout} (0 <= p < 1)")));
    }
    if let Head::Multiclass { classes } = head {
        if !(2..=MAX_WIDTH).contains(&classes) {
            return Err(DeepError::Config(format!(
                "{classes} classes (a multiclass head needs 2..={MAX_WIDTH})"
            )));
        }
    }
    Ok(())
}

/// Largest width of any layer and largest embedding table accepted from a config.
pub const MAX_WIDTH: usize = 1 << 16;
/// Largest number of layers accepted from a config.
pub const MAX_LAYERS: usize = 64;

impl MlpConfig {
    /// Width after concatenating numeric inputs and embeddings.
    pub fn input_width(&self) -> usize {
        self.numeric + self.embeddings.iter().map(|e| e.dim).sum::<usize>()
    }

    /// Checks bounds, so an untrusted config cannot request absurd allocations.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DeepError::Config(m));
        if self.numeric + self.embeddings.len() == 0 {
            return bad("the model has no input".into());
        }
        if self.hidden.len() > MAX_LAYERS || self.embeddings.len() > MAX_LAYERS {
            return bad(format!("at most {MAX_LAYERS} layers and embeddings"));
        }
        for &w in self
            .hidden
            .iter()
            .chain(std::iter::once(&self.numeric))
            .chain(std::iter::once(&self.input_width()))
        {
            if w > MAX_WIDTH {
                return bad(format!("width {w} above {MAX_WIDTH}"));
            }
        }
        if self.hidden.contains(&0) {
            return bad("a hidden layer has width 0".into());
        }
        for e in &self.embeddings {
            if e.dim == 0 || e.dim > MAX_WIDTH || e.cardinality > MAX_WIDTH * 16 {
                return bad(format!("embedding {e:?} out of bounds"));
            }
        }
        check_dropout_and_head(self.dropout, self.head)?;
        Ok(())
    }
}

/// Optimiser choice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// AdamW.
    AdamW {
        /// Peak learning rate.
        lr: f64,
        /// Decoupled weight decay.
        #[serde(default = "default_wd")]
        weight_decay: f64,
    },
    /// Plain SGD.
    Sgd {
        /// Peak learning rate.
        lr: f64,
    },
}

fn default_wd() -> f64 {
    0.01
}

/// Early stopping on the validation loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest decrease that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Epochs (upper bound with early stopping).
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Linear warm-up steps; afterwards cosine decay to 10% of the peak over the run.
    #[serde(default)]
    pub warmup_steps: usize,
    /// Clip the global gradient norm to this.
    #[serde(default)]
    pub clip_norm: Option<f64>,
    /// Early stopping on the validation loss (the best epoch's weights are kept).
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Loss weight per class (binary: `[negative, positive]`).
    #[serde(default)]
    pub class_weights: Option<Vec<f64>>,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
}
