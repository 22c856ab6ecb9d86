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
    /// Loading or scoring a model failed (keel-model: incompatible bundle, unsupported
    /// flavor, shapes).
    #[error(transparent)]
    Model(keel_model::ModelError),
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

impl From<keel_model::ModelError> for ServeError {
    /// The causes keel-serve already names keep their variant (transform, registry, GBDT,
    /// deep); the seam's own errors are [`ServeError::Model`].
    fn from(e: keel_model::ModelError) -> ServeError {
        use keel_model::ModelError as M;
        match e {
            M::Transform(e) => ServeError::Transform(e),
            M::Registry(e) => ServeError::Registry(e),
            M::Gbdt(e) => ServeError::Gbdt(e),
            M::Deep(e) => ServeError::Deep(e),
            e => ServeError::Model(e),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
