//! # keel-registry
//!
//! Experiment tracking and the model registry, embedded in a directory:
//!
//! - **Runs** ([`Registry::start_run`] -> [`ActiveRun`]): params, metric histories with step and
//!   timestamp, tags, seed, data versions (`DataHash`, store checkpoint ids), code version,
//!   artifacts with sha256, status, start and end. Every call persists at once. Search with
//!   [`RunFilter`] (by experiment, params, metric conditions, ordered by a metric), compare with
//!   [`Registry::compare_runs`], export to MLflow with [`MlflowClient`] (feature `mlflow`).
//! - **Model versions** ([`Registry::register`]): only from a *finished* run; a bundle of named
//!   opaque files (model, fitted pipeline, reference profile...) with metadata (feature
//!   service, input schema, eval scores, params, seed, data version). Every file's sha256 is
//!   checked on [`Registry::load`]; a tampered bundle is refused.
//! - **Aliases** (`champion`, `challenger`, any name) with a persisted audit log and
//!   [`Registry::rollback`], which undoes the last move of an alias.
//!
//! The registry stores bytes and metadata, never model types: it links no ML library.
//!
//! ```
//! use keel_registry::{Bundle, Registry, RegistryError};
//!
//! # fn main() -> Result<(), RegistryError> {
//! let dir = tempfile::tempdir().unwrap();
//! let reg = Registry::open(dir.path())?;
//!
//! let mut run = reg.start_run("fraud")?;
//! run.set_seed(42)?;
//! run.log_params([("num_leaves", "31"), ("learning_rate", "0.05")])?;
//! run.log_metric("valid.auc", 0.91, 0)?;
//! let run_id = run.id().clone();
//! // Registering from a running run is refused.
//! let bundle = Bundle::new("gbdt").with_file("model", b"model bytes".to_vec());
//! assert!(matches!(reg.register("fraud", &run_id, bundle.clone()),
//!                  Err(RegistryError::RunNotFinished { .. })));
//! run.finish()?;
//!
//! let v1 = reg.register("fraud", &run_id, bundle.clone())?;
//! let v2 = reg.register("fraud", &run_id, bundle)?;
//! reg.set_alias("fraud", "champion", v1.version, "first model")?;
//! reg.set_alias("fraud", "champion", v2.version, "better AUC")?;
//! reg.rollback("fraud", "champion", "p99 regression")?;
//! assert_eq!(reg.alias("fraud", "champion")?, Some(1));
//! assert_eq!(reg.audit("fraud")?.len(), 3);
//! assert_eq!(reg.load("fraud", 1)?.file("model")?, b"model bytes");
//! # Ok(())
//! # }
//! ```
//!
//! ## Crate features
//! - `mlflow` (default): [`MlflowClient`], a plain-HTTP REST client (pure Rust, no TLS).
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod fsutil;
#[cfg(feature = "mlflow")]
mod mlflow;
mod registry;
mod run;

#[cfg(feature = "mlflow")]
pub use mlflow::MlflowClient;
pub use registry::{
    ActiveRun, AliasEvent, Bundle, FileEntry, LoadedVersion, ModelMeta, ModelVersion, Registry,
};
pub use run::{
    ArtifactRef, Cmp, Comparison, DataRef, MetricPoint, Run, RunFilter, RunId, RunStatus,
};

use std::path::PathBuf;

/// Errors of keel-registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be decoded.
    #[error(transparent)]
    Envelope(#[from] keel_core::EnvelopeError),
    /// A record is inconsistent.
    #[error("{path}: corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A bundle file does not match its manifest.
    #[error("{path}: tampered: {reason}")]
    Tampered {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A name that cannot be used (path separators, leading dot, too long...).
    #[error("invalid {what} name {name:?}: use 1-128 of [A-Za-z0-9_.-], not starting with '.'")]
    InvalidName {
        /// What the name is for.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// No such run.
    #[error("no run {0}")]
    UnknownRun(RunId),
    /// Registration from a run that has not finished successfully.
    #[error("run {run} is {status}: only finished runs can be registered")]
    RunNotFinished {
        /// The run.
        run: RunId,
        /// Its status.
        status: RunStatus,
    },
    /// A bundle without files.
    #[error("a bundle needs at least one file")]
    EmptyBundle,
    /// No such model version.
    #[error("model {name} has no version {version}")]
    UnknownVersion {
        /// Model.
        name: String,
        /// Version.
        version: u32,
    },
    /// No such alias.
    #[error("model {name} has no alias {alias}")]
    UnknownAlias {
        /// Model.
        name: String,
        /// Alias.
        alias: String,
    },
    /// Rollback with nothing to undo.
    #[error("alias {alias} of model {name} has no earlier position to roll back to")]
    NothingToRollBack {
        /// Model.
        name: String,
        /// Alias.
        alias: String,
    },
    /// A bundle or run file is absent.
    #[error("no file {0}")]
    MissingFile(String),
    /// A metric value is NaN or infinite.
    #[error("metric {0}: value must be finite")]
    NonFiniteMetric(String),
    /// A run query could not be parsed.
    #[error("run query: {0}")]
    Query(String),
    /// The MLflow server refused or could not be reached.
    #[error("mlflow: {0}")]
    Mlflow(String),
}

#[doc(hidden)]
/// Entry point shared by the fuzz target and the corpus replay test.
pub mod fuzzing {
    /// Decodes `data` as every record kind the registry reads from disk, directly and wrapped
    /// in a valid envelope header (so the payload decoder is reached past the checksum).
    pub fn exercise(data: &[u8]) {
        crate::registry::fuzz_records(data);
    }
}

/// Result alias of this crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
