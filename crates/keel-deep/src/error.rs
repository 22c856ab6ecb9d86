//! The errors of keel-deep.

/// Errors of keel-deep.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeepError {
    /// A config is invalid or out of bounds.
    #[error("config: {0}")]
    Config(String),
    /// Inputs have the wrong size.
    #[error("shape: {0}")]
    Shape(String),
    /// Training data is invalid.
    #[error("data: {0}")]
    Data(String),
    /// A weights file cannot be read.
    #[error("weights: {0}")]
    Weights(String),
    /// A tensor the model needs is absent from the weights.
    #[error("weights: missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor has another dtype than f32.
    #[error("weights: tensor `{name}` is {found}, expected F32")]
    WrongDtype {
        /// Tensor name.
        name: String,
        /// Its dtype.
        found: String,
    },
    /// A tensor has the wrong shape.
    #[error("weights: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// Tensor name.
        name: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// An ONNX file is malformed or asks for something keel refuses.
    #[error("onnx: {0}")]
    Onnx(String),
    /// An ONNX node uses an operator outside [`crate::SUPPORTED_OPS`].
    #[cfg(feature = "onnx")]
    #[error("onnx: operator `{op}` (node `{node}`) is not supported")]
    UnsupportedOp {
        /// The operator (`domain:op` outside the default domain).
        op: String,
        /// The node's name.
        node: String,
    },
    /// candle failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The envelope failed.
    #[error(transparent)]
    Envelope(#[from] keel_core::EnvelopeError),
    /// JSON failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Safetensors weights could not be read or written.
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
}

/// Result alias of this crate.
pub type Result<T, E = DeepError> = std::result::Result<T, E>;
