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
pub mod metrics;
mod policy;
mod profile;
pub mod report;
mod runtime;
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
pub use profile::{
    ColumnProfile, CountWindow, Profile, TimeWindow, DEFAULT_SAMPLE, MAX_LABELS, OTHER_LABEL,
};
pub use runtime::{
    DecayRule, LoggedValue, Monitor, MonitorConfig, PredictionRecord, WindowSpec, WindowVerdict,
    PREDICTION_COLUMN,
};

#[doc(hidden)]
/// Entry point shared by the fuzz target and the corpus replay test.
pub mod fuzzing {
    use super::{DriftOptions, Profile};
    use keel_core::envelope::{self, Persisted};

    /// Decodes `data` as a profile (directly and past a valid header) and, when it decodes,
    /// merges it, updates it and runs drift against itself: errors allowed, panics not.
    pub fn exercise(data: &[u8]) {
        for bytes in [data.to_vec(), envelope::wrap(Profile::KIND, 1, data)] {
            if let Ok(p) = envelope::decode::<Profile>(&bytes) {
                let _ = p.drift(&p, &DriftOptions::default());
                let mut q = p.clone();
                let _ = q.merge(&p);
                q.update_row(&[("x", keel_core::ValueRef::F64(1.0))]);
            }
        }
    }
}

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
