//! The errors of keel-transform.

use keel_core::DType;

/// Errors of keel-transform.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// The spec cannot be fitted as written.
    #[error("spec, column `{column}`: {reason}")]
    Spec {
        /// Column name.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// An input column is absent.
    #[error("input has no column `{0}`")]
    MissingColumn(String),
    /// An input column has a type of the wrong kind (number vs label).
    #[error("column `{column}`: fitted on {expected}, got {found}")]
    WrongType {
        /// Column name.
        column: String,
        /// Type at fit time.
        expected: DType,
        /// Type given.
        found: DType,
    },
    /// A single-row value has the wrong kind.
    #[error("column `{column}`: value does not fit type {expected}")]
    WrongValue {
        /// Column name.
        column: String,
        /// Type at fit time.
        expected: DType,
    },
    /// A category unseen in training, with [`crate::Unknown::Error`].
    #[error("column `{column}`, row {row}: unknown category {value:?}")]
    UnknownCategory {
        /// Column name.
        column: String,
        /// Row in the batch (0 for a single row).
        row: usize,
        /// The category, truncated to 64 characters.
        value: String,
    },
    /// Buffer or row sizes do not match.
    #[error("shape: {0}")]
    Shape(String),
    /// A pipeline (usually decoded bytes) breaks an invariant.
    #[error("invalid fitted pipeline: {0}")]
    Invalid(String),
    /// A core error (frame access, envelope decoding).
    #[error(transparent)]
    Core(#[from] keel_core::Error),
}

impl From<keel_core::EnvelopeError> for TransformError {
    fn from(e: keel_core::EnvelopeError) -> Self {
        TransformError::Core(e.into())
    }
}

/// Result alias of this crate.
pub type Result<T, E = TransformError> = std::result::Result<T, E>;
