//! # keel-registry
//!
//! Experiment tracking and the model registry, embedded in a directory ([`Registry::open`]) or
//! shared by a fleet on an MLflow tracking server ([`Registry::mlflow`], [`Registry::at`]): the
//! same calls, the same errors, the same checks on either.
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
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
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
//! - `mlflow` (default): the registry on an MLflow server ([`Registry::mlflow`]: runs as MLflow
//!   runs, versions as registered model versions whose artifacts are the bundle's files, MLflow's
//!   own aliases, the audit as hash-chained model tags; see `docs/fleet.md`), [`MlflowClient`]
//!   (a plain-HTTP REST client, pure Rust, no TLS) and [`LocalMlflow`] (a throwaway server for
//!   tests and demos).
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod check;
mod error;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "mlflow")]
mod local_mlflow;
#[cfg(feature = "mlflow")]
mod mlflow;
mod registry;
#[cfg(feature = "mlflow")]
mod remote;
pub mod rollout;
mod run;
pub mod signing;

pub use check::CheckReport;
pub use error::{RegistryError, Result};
#[cfg(feature = "mlflow")]
pub use local_mlflow::LocalMlflow;
#[cfg(feature = "mlflow")]
pub use mlflow::{MlflowClient, ModelExport};
pub use registry::{
    ActiveRun, AliasEvent, Bundle, Damaged, FileEntry, LoadedVersion, ModelMeta, ModelVersion,
    Registry, MAX_EVIDENCE,
};
pub use run::{
    ArtifactRef, Cmp, Comparison, DataRef, MetricPoint, Run, RunFilter, RunId, RunStatus,
};
