//! The errors of keel-monitor.

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
