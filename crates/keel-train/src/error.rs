//! The errors of keel-train.

/// Errors of keel-train.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The job description is invalid.
    #[error("job config: {0}")]
    Config(String),
    /// A metric cannot be computed, or monitoring failed.
    #[error(transparent)]
    Monitor(#[from] keel_monitor::MonitorError),
    /// Data access failed.
    #[error(transparent)]
    Core(#[from] keel_core::Error),
    /// The feature store failed.
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
    /// Fitting or applying transforms failed.
    #[error(transparent)]
    Transform(#[from] keel_transform::TransformError),
    /// Training or scoring failed.
    #[error(transparent)]
    Gbdt(#[from] keel_gbdt::GbdtError),
    /// Tracking or registration failed.
    #[error(transparent)]
    Registry(#[from] keel_registry::RegistryError),
    /// Loading or scoring a registered model through the model seam failed.
    #[error(transparent)]
    Model(#[from] keel_model::ModelError),
    /// A deep model failed.
    #[error(transparent)]
    Deep(#[from] keel_deep::DeepError),
    /// JSON encoding failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A TOML job description does not parse (unknown keys included).
    #[error("job TOML: {0}")]
    Toml(#[from] toml::de::Error),
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
