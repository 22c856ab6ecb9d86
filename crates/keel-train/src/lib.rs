//! # keel-train
//!
//! Reproducible training jobs. A [`TrainingJob`] takes a feature service's point-in-time
//! training set from the store (or any `Frame`), splits it by time, fits the transform
//! [`keel_transform::Spec`] on the training rows only, trains a LightGBM model (through
//! `lightgbm3`, scored afterwards by keel's pure-Rust engine), evaluates it with
//! scikit-learn-exact [`metrics`] (from keel-monitor, which serving shares), logs everything (params, seed, data hash, metrics,
//! artifacts) in a tracked run, and registers a model version bundle (model, fitted pipeline,
//! input schema, eval scores) in the [`keel_registry::Registry`].
//!
//! The same data, config and seed give the same data hash, the same model bytes and the same
//! metrics (tested).
//!
//! Every model kind trains from the same job file (`kind = ...`, [`ModelKind`]):
//!
//! | kind | reads | settings | registered flavor |
//! |---|---|---|---|
//! | `gbdt` (default) | the transformed columns | `params` (LightGBM) | `gbdt` |
//! | `mlp` | the transformed columns | `[mlp]` ([`MlpJob`]), `[train]` ([`DeepTrain`]) | `deep` |
//! | `sequence` | one text column | `[sequence]` ([`SequenceJob`]), `[train]` | `sequence` |
//! | `cnn` | one image per row, columns `{prefix}_0..` | `[cnn]` ([`CnnJob`]), `[train]` | `cnn` |
//! | `auto` | chosen from the data: pixel columns -> `cnn`, free text -> `sequence`, else `gbdt`; the run records `kind` and `kind.reason` | all of the above | as chosen |
//!
//! `candidates = ["gbdt", "mlp"]` trains each kind on the same split in its own run and
//! registers the best by `metric` (default `valid.auc` for binary objectives, else
//! `valid.logloss`); every run is tagged `candidate = selected | not selected` with the scores
//! of all.
//!
//! Deep kinds log `epoch.train.loss`, `epoch.valid.loss` and `epoch.valid.accuracy` with the
//! epoch as step. Evaluation,
//! the reference profile and the retraining gate score the trained bundle through the model
//! seam (`keel_model::Model::load` + `score_frame`), exactly as serving loads it.
//!
//! ```no_run
//! use keel_core::Frame;
//! use keel_registry::Registry;
//! use keel_train::{TrainingData, TrainingJob};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let job = TrainingJob::from_toml(r#"
//!     experiment = "fraud"
//!     model = "fraud"
//!     label = "is_fraud"
//!     timestamp = "event_ms"
//!     params = { objective = "binary", num_iterations = 200, learning_rate = 0.05 }
//!     [[transform.columns]]
//!     column = "amount"
//!     steps = [{ op = "impute", strategy = "median" }, { op = "log1p" }]
//!     [[transform.columns]]
//!     column = "country"
//!     steps = [{ op = "one_hot", max_categories = 20 }]
//! "#)?;
//! let registry = Registry::open("keel-data/registry")?;
//! let frame = Frame::from_csv_path("transactions.csv", None)?;
//! let out = job.run(&registry, &TrainingData::from_frame(frame))?;
//! println!("test AUC {:.3}, version {:?}", out.metrics["test.auc"], out.version);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod error;
mod job;
mod kinds;
mod retrain;
pub use error::{Result, TrainError};
pub use keel_monitor::metrics;

pub use job::{evaluate, JobConfig, JobOutcome, Progress, SplitConfig, TrainingData, TrainingJob};
pub use kinds::{CnnJob, DeepTrain, MlpJob, ModelKind, SequenceJob};
pub use retrain::{RetrainLoop, RetrainOutcome, CHAMPION_ALIAS, SHADOW_ALIAS};
