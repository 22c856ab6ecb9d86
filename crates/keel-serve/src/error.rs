//! The errors of keel-serve.

/// Errors of keel-serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The request cannot be served as sent.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A promotion gate failed (and no override was given).
    #[error("gate failed: {0}")]
    GateFailed(String),
    /// The deployment is not in the stage the call needs.
    #[error("stage: {0}")]
    Stage(String),
    /// The version is neither the champion nor the challenger of the deployment.
    #[error("model `{model}` does not serve version {version}")]
    NotServing {
        /// Model name.
        model: String,
        /// Version asked for.
        version: u32,
    },
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
    /// The request's entity has no stored row at all and the deployment's `on_missing`
    /// policy is `error`.
    #[error("model `{model}`: no stored features for entity [{entity}] (unknown entity; on_missing = \"error\")")]
    UnknownEntity {
        /// Model name.
        model: String,
        /// The entity key as sent.
        entity: String,
    },
    /// Invalid server or deployment configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// A deployment configuration file is not valid TOML of the documented shape.
    #[error("deployment configuration: {0}")]
    ConfigFile(#[source] toml::de::Error),
    /// I/O failure (binding a socket...).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A model flavor this runtime cannot serve.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Feature store failure.
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
    /// Transform failure (unknown category with the error policy, wrong types...).
    #[error(transparent)]
    Transform(#[from] keel_transform::TransformError),
    /// GBDT failure.
    #[error(transparent)]
    Gbdt(#[from] keel_gbdt::GbdtError),
    /// Deep model failure.
    #[error(transparent)]
    Deep(#[from] keel_deep::DeepError),
    /// Registry failure.
    #[error(transparent)]
    Registry(#[from] keel_registry::RegistryError),
}

/// Result alias of this crate.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
