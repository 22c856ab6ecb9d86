//! # keel-deep
//!
//! Deep models for tabular data, trained and served in pure Rust on `candle-core`/`candle-nn`.
//!
//! - [`MlpConfig`]: a serialisable tabular MLP (numeric inputs, embedded categoricals with an
//!   unknown bucket, hidden blocks with optional layer norm, dropout and residuals; binary,
//!   multiclass or regression head).
//! - [`train()`]: AdamW or SGD, warm-up then cosine learning rate, gradient clipping, early
//!   stopping (best weights kept), class weights, seeded shuffling, initialisation and dropout;
//!   bit-identical weights for the same data, config and seed; a progress callback per epoch.
//! - Artifacts: weights in safetensors with PyTorch-style names, config and metadata in the
//!   core envelope ([`Mlp::to_parts`] / [`Mlp::from_parts`]); missing tensors, other dtypes and
//!   wrong shapes are typed errors.
//! - Inference: [`Mlp::predict_one`] and [`Mlp::predict_batch`] /
//!   [`Mlp::predict_batch_threads`] run on a packed copy of the weights (a register-blocked
//!   AVX2+FMA matrix product for batches, an axpy for one example), never through candle's
//!   thread pool; the sequence encoder, the CNN and ONNX graphs take an explicit thread count
//!   (`*_threads`). Every model is `Send + Sync`.
//! - [`SeqConfig`] / [`train_text`]: a sequence encoder for text or event ids (a [`Tokenizer`]
//!   that needs no download: bytes or hashed words; token embedding, sinusoidal positions,
//!   pre-norm transformer encoder layers with masked multi-head attention, mean or first-token
//!   pooling), trained by the same deterministic loop, saved as safetensors + manifest.
//!
//! ```
//! use keel_deep::{train, Dataset, Head, MlpConfig, OptimizerConfig, TrainConfig};
//!
//! # fn main() -> Result<(), keel_deep::DeepError> {
//! // y = 1 when x0 + x1 > 1.
//! let rows = 256;
//! let numeric: Vec<f32> = (0..rows * 2).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
//! let targets = (0..rows).map(|r| f32::from(u8::from(numeric[2 * r] + numeric[2 * r + 1] > 1.0))).collect();
//! let data = Dataset { numeric, codes: vec![], targets, rows };
//! let cfg = MlpConfig { numeric: 2, embeddings: vec![], hidden: vec![16], layer_norm: false,
//!                       residual: false, dropout: 0.0, head: Head::Binary };
//! let tc = TrainConfig { optimizer: OptimizerConfig::AdamW { lr: 0.05, weight_decay: 0.0 },
//!                        epochs: 30, batch_size: 32, warmup_steps: 10, clip_norm: Some(5.0),
//!                        early_stopping: None, class_weights: None, seed: 7 };
//! let (model, report) = train(cfg, &tc, &data, None, &mut |_| {})?;
//! assert!(report.epochs.last().is_some_and(|e| e.train_loss < 0.3));
//! let mut p = [0.0f32];
//! model.predict_one(&[0.9, 0.8], &[], &mut p)?;
//! assert!(p[0] > 0.5);
//! # Ok(())
//! # }
//! ```
//!
//! - Feature `cuda`: forwards to candle's CUDA backend; models are then created on the first
//!   GPU ([`device()`]). The CPU is the default and what the tests cover.
//! - [`CnnConfig`] / [`train_images`]: a small CNN for images (conv blocks with ReLU and max
//!   pooling, global average pooling, head), same loop, same artifacts.
//!
//! - PyTorch import: [`Mlp::from_safetensors`], [`SeqModel::from_safetensors`] and
//!   [`Cnn::from_safetensors`] read `safetensors.torch.save_file(model.state_dict())` of the
//!   reference modules in `tests/fixtures/torch_reference.py` (tensor names documented there).
//! - [`OnnxModel`] (feature `onnx`, on by default): ONNX graphs through `candle-onnx`, checked
//!   against an operator allow-list ([`SUPPORTED_OPS`]) and bounded before every node runs.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod artifact;
mod cnn;
mod config;
mod error;
mod fast;
#[doc(hidden)]
pub mod fuzzing;
mod model;
#[cfg(feature = "onnx")]
mod onnx;
mod rng;
mod seq;
mod threads;
mod train;

pub use artifact::{Manifest, MAX_WEIGHTS};
pub use cnn::{train_images, Cnn, CnnConfig, CnnManifest, ConvSpec, ImageData, MAX_CNN_PARAMS};
pub use config::{
    EarlyStopping, EmbeddingSpec, Head, MlpConfig, OptimizerConfig, TrainConfig, MAX_LAYERS,
    MAX_WIDTH,
};
pub use error::{DeepError, Result};
pub use model::{Mlp, LN_EPS};
#[cfg(feature = "onnx")]
pub use onnx::{OnnxModel, MAX_ELEMENTS, MAX_ONNX_BYTES, SUPPORTED_OPS};
pub use rng::{rng, Rng};
pub use seq::{
    ticket_corpus, train_text, Pooling, SeqConfig, SeqManifest, SeqModel, TextData, Tokenizer, CLS,
    MAX_PARAMS as MAX_SEQ_PARAMS, MAX_SEQ, PAD,
};
pub use threads::MAX_THREADS;
pub use train::{train, Dataset, EpochReport, TrainReport};

/// The device keel-deep's models are created on: the first CUDA GPU when the crate is built
/// with the `cuda` feature and one is present, the CPU otherwise (the default build, and what
/// the tests cover). The packed MLP paths and ONNX graphs always run on the CPU.
pub fn device() -> &'static candle_core::Device {
    static DEVICE: std::sync::OnceLock<candle_core::Device> = std::sync::OnceLock::new();
    DEVICE.get_or_init(|| {
        if cfg!(feature = "cuda") {
            candle_core::Device::cuda_if_available(0).unwrap_or(candle_core::Device::Cpu)
        } else {
            candle_core::Device::Cpu
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<super::Mlp>();
    }
}
