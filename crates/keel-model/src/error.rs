//! The errors of keel-model.

/// Why a bundle cannot be loaded or a row cannot be scored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A registered bundle whose parts do not fit together (checked when it is loaded).
    #[error("model `{model}` v{version} cannot be served: {reason}")]
    IncompatibleBundle {
        /// Model name.
        model: String,
        /// Version.
        version: u32,
        /// What does not fit.
        reason: String,
    },
    /// A flavor this build cannot load.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Inputs of the wrong shape.
    #[error("shape: {0}")]
    Shape(String),
    /// Registry failure (a missing bundle file...).
    #[error(transparent)]
    Registry(#[from] keel_registry::RegistryError),
    /// Transform failure (unknown category with the error policy, wrong types...).
    #[error(transparent)]
    Transform(#[from] keel_transform::TransformError),
    /// GBDT failure.
    #[error(transparent)]
    Gbdt(#[from] keel_gbdt::GbdtError),
    /// Deep model failure.
    #[error(transparent)]
    Deep(#[from] keel_deep::DeepError),
    /// A frame without a column the model reads.
    #[error(transparent)]
    Frame(#[from] keel_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
