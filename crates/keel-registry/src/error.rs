//! The errors of keel-registry.

use crate::{RunId, RunStatus};
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
    /// A rollout move that the model's aliases do not allow now (see `rollout`): nothing was
    /// changed.
    #[error("rollout of model {model}: {reason}")]
    Transition {
        /// Model.
        model: String,
        /// Why the move is refused.
        reason: String,
    },
    /// The alias moved between reading its rollback target and rolling back (another process
    /// or thread changed it): nothing was changed; read the target again.
    #[error("alias {alias} of model {name} moved meanwhile: expected to restore {expected:?}, the rollback target is now {found:?}")]
    AliasMoved {
        /// Model.
        name: String,
        /// Alias.
        alias: String,
        /// The target the caller verified.
        expected: Option<u32>,
        /// The target now.
        found: Option<u32>,
    },
    /// Trusted keys are configured and the version carries no signature.
    #[error("model {name} v{version} is not signed (this registry only loads signed versions)")]
    Unsigned {
        /// Model.
        name: String,
        /// Version.
        version: u32,
    },
    /// The version's signature is not by a trusted key or does not match its manifest.
    #[error("model {name} v{version}: bad signature: {reason}")]
    BadSignature {
        /// Model.
        name: String,
        /// Version.
        version: u32,
        /// What failed.
        reason: String,
    },
    /// A key file cannot be used.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
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
    /// The MLflow server answered in a way keel cannot use.
    #[error("mlflow: {0}")]
    Mlflow(String),
    /// The MLflow server refused a call with one of its error codes
    /// (`RESOURCE_DOES_NOT_EXIST`, `INVALID_PARAMETER_VALUE`...).
    #[error("mlflow {what}: HTTP {status} {code}: {message}")]
    MlflowApi {
        /// The REST path.
        what: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code`.
        code: String,
        /// MLflow's message (first 300 characters).
        message: String,
    },
    /// The MLflow registry's move lock is held by another writer for longer than the wait.
    #[error("mlflow: model {model} is being changed by another writer (lock held for over {waited_ms} ms)")]
    Busy {
        /// The model.
        model: String,
        /// How long this writer waited.
        waited_ms: u64,
    },
    /// An MLflow call failed on the wire (connection, TLS, status, body limit).
    #[cfg(feature = "mlflow")]
    #[error("mlflow {what}: {source}")]
    MlflowHttp {
        /// The REST path or artifact.
        what: String,
        /// The HTTP client's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// An MLflow answer was not the JSON its API documents.
    #[error("mlflow {what}: {source}")]
    MlflowJson {
        /// The REST path.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl RegistryError {
    /// Whether the shared registry could not be reached at all (connection refused, timeout):
    /// a serving replica keeps its last verified models and retries.
    pub fn is_unreachable(&self) -> bool {
        #[cfg(feature = "mlflow")]
        if let RegistryError::MlflowHttp { .. } = self {
            return true;
        }
        matches!(self, RegistryError::MlflowApi { status, .. } if *status >= 500)
    }

    /// Whether MLflow answered `RESOURCE_DOES_NOT_EXIST`.
    pub(crate) fn is_mlflow_not_found(&self) -> bool {
        matches!(self, RegistryError::MlflowApi { code, status, .. }
            if code == "RESOURCE_DOES_NOT_EXIST" || *status == 404)
    }
}

/// Result alias of this crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
