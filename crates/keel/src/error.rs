//! The facade's umbrella error: any keel crate's error, its cause kept as the typed source.

/// An error from any keel crate this build enables; `?` converts each crate's error into it.
/// Match on the variant to reach the crate's own typed error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// keel-core: frames, CSV, schemas, envelopes.
    #[error(transparent)]
    Core(#[from] keel_core::Error),
    /// keel-core: a persisted blob failed to decode.
    #[error(transparent)]
    Envelope(#[from] keel_core::EnvelopeError),
    /// keel-gbdt: model files and scoring.
    #[cfg(feature = "gbdt")]
    #[error(transparent)]
    Gbdt(#[from] keel_gbdt::GbdtError),
    /// keel-deep: candle models.
    #[cfg(feature = "deep")]
    #[error(transparent)]
    Deep(#[from] keel_deep::DeepError),
    /// keel-store: the feature store.
    #[cfg(feature = "store")]
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
    /// keel-transform: transforms.
    #[cfg(feature = "transform")]
    #[error(transparent)]
    Transform(#[from] keel_transform::TransformError),
    /// keel-registry: runs, versions, aliases.
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Registry(#[from] keel_registry::RegistryError),
    /// keel-monitor: drift, decay, policy.
    #[cfg(feature = "monitor")]
    #[error(transparent)]
    Monitor(#[from] keel_monitor::MonitorError),
    /// keel-model: loading and scoring a registered bundle.
    #[cfg(feature = "model")]
    #[error(transparent)]
    Model(#[from] keel_model::ModelError),
    /// keel-train: training jobs and the retraining loop.
    #[cfg(feature = "train")]
    #[error(transparent)]
    Train(#[from] keel_train::TrainError),
    /// keel-serve: deployments and the server.
    #[cfg(feature = "serve")]
    #[error(transparent)]
    Serve(#[from] keel_serve::ServeError),
}

/// Result alias of the facade.
pub type Result<T, E = Error> = std::result::Result<T, E>;
