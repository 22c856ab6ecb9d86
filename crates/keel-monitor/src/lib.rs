//! # keel-monitor
//!
//! Drift statistics that agree with scipy (and, for the column policy, with Evidently):
//! two-sample Kolmogorov-Smirnov (exact and asymptotic p-values, chosen as scipy chooses),
//! chi-square, two-proportion Z-test, PSI, Jensen-Shannon distance, Wasserstein distance.
//!
//! ```
//! use keel_monitor::stats;
//!
//! let reference: Vec<f64> = (0..200).map(|i| i as f64 / 10.0).collect();
//! let shifted: Vec<f64> = reference.iter().map(|x| x + 10.0).collect();
//! let same = stats::ks_2samp(&reference, &reference).ok_or("an empty sample")?;
//! assert_eq!(same.pvalue, 1.0);
//! let moved = stats::ks_2samp(&reference, &shifted).ok_or("an empty sample")?;
//! assert!(moved.exact && moved.pvalue < 1e-6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On top of the statistics:
//! - [`detect_drift`]: Evidently's data-drift preset (test per column by kind, distinct values
//!   and reference size; thresholds; dataset drift at a share of drifted columns), with
//!   per-column overrides; [`report`] renders it as JSON or a self-contained HTML page.
//! - [`Profile`]: bounded-memory, mergeable column profiles (reservoir samples, moments,
//!   category counts) stored with a model version; [`CountWindow`] cuts current traffic.
//! - [`DecayMonitor`], [`PageHinkley`], [`Adwin`], [`LabelJoiner`]: performance decay against
//!   the registered score, change detectors, late labels joined by request id.
//! - [`decide`], [`GateConfig`], [`DecisionLog`]: decay -> retrain, drift alone -> alert, a
//!   validation gate for the retrained challenger, every decision recorded and sent to an
//!   [`AlertSink`].
//! - [`synth`]: covariate, prior and concept drift generators for tests.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod detect;
mod drift;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod policy;
mod profile;
pub mod report;
mod runtime;
pub mod stats;
pub mod synth;

pub use detect::{Adwin, DecayEvidence, DecayMetric, DecayMonitor, Direction, PageHinkley};
pub use drift::{
    default_kind, default_test, detect_drift, ColumnDrift, ColumnKind, ColumnOptions, DriftOptions,
    DriftReport, DriftTest, SkippedColumn, CHI_SQUARE_FALSE_ALARM_RATE,
};
pub use error::{MonitorError, Result};
pub use policy::{
    decide, decide_with, drift_summary, Action, AlertSink, CallbackSink, ChangeEvidence, Decision,
    DecisionLog, GateCheck, GateConfig, GateResult, LabelJoiner, TracingSink,
};
pub use profile::{
    ColumnProfile, CountWindow, Profile, TimeWindow, DEFAULT_SAMPLE, MAX_LABELS, OTHER_LABEL,
};
pub use runtime::{
    ChangeDetector, ChangeRule, DecayRule, LossStream, Monitor, MonitorConfig, PredictionRecord,
    WindowSpec, WindowVerdict, PREDICTION_COLUMN,
};
