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
//! let same = stats::ks_2samp(&reference, &reference).unwrap();
//! assert_eq!(same.pvalue, 1.0);
//! let moved = stats::ks_2samp(&reference, &shifted).unwrap();
//! assert!(moved.exact && moved.pvalue < 1e-6);
//! ```
//!
//! Work in progress: reference profiles, windows, decay detectors and the drift report land
//! with issue 8.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod detect;
mod drift;
pub mod metrics;
mod policy;
mod profile;
pub mod stats;
pub mod synth;

pub use detect::{Adwin, DecayEvidence, DecayMetric, DecayMonitor, PageHinkley};
pub use drift::{
    default_kind, default_test, detect_drift, ColumnDrift, ColumnKind, ColumnOptions, DriftOptions,
    DriftReport, DriftTest,
};
pub use policy::{
    decide, drift_summary, Action, AlertSink, CallbackSink, Decision, DecisionLog, GateCheck,
    GateConfig, GateResult, LabelJoiner, TracingSink,
};
pub use profile::{ColumnProfile, CountWindow, Profile, DEFAULT_SAMPLE, MAX_LABELS, OTHER_LABEL};

/// Errors of keel-monitor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// Inputs cannot be compared (missing column, empty column, wrong kind...).
    #[error("input: {0}")]
    Input(String),
    /// A metric cannot be computed on these inputs.
    #[error("metric: {0}")]
    Metric(String),
    /// A core error.
    #[error(transparent)]
    Core(#[from] keel_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = MonitorError> = std::result::Result<T, E>;
