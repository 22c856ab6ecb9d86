//! Errors of keel-gbdt.

/// Everything that can go wrong loading or scoring a GBDT model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GbdtError {
    /// The bytes are none of the supported formats.
    #[error("unrecognised model format (expected LightGBM text, XGBoost JSON/UBJSON or a keel GBDT blob)")]
    UnknownFormat,
    /// A model file is malformed; `what` names the field or structure at fault.
    #[error("invalid {format} model: {what}")]
    Invalid {
        /// "LightGBM", "XGBoost" or "keel".
        format: &'static str,
        /// What is wrong, with its location (tree, node, key).
        what: String,
    },
    /// The model uses a feature keel does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An input does not match the model.
    #[error("input: {0}")]
    Input(String),
    /// Reading a file failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// XGBoost JSON could not be parsed.
    #[error("XGBoost JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A keel blob failed to decode.
    #[error(transparent)]
    Envelope(#[from] keel_core::EnvelopeError),
    /// A frame operation failed.
    #[error(transparent)]
    Core(#[from] keel_core::Error),
    /// LightGBM's C API reported an error while training (its last error message).
    #[cfg(feature = "train")]
    #[error("lightgbm: {0}")]
    Lightgbm(String),
}

pub(crate) fn invalid(format: &'static str, what: impl Into<String>) -> GbdtError {
    GbdtError::Invalid {
        format,
        what: what.into(),
    }
}

/// Result alias for keel-gbdt.
pub type Result<T, E = GbdtError> = std::result::Result<T, E>;
