//! Deployment configuration: gates, canary share, log bounds, the missing-entity policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Result, ServeError};

/// What a deployment does with a request whose entity has no stored row at all (every stored
/// feature the model reads is [`Status::NotFound`](keel_store::Status::NotFound)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// Refuse it: [`ServeError::UnknownEntity`] (HTTP 404). The default: an unknown key is
    /// more often a caller's bug than a new customer.
    #[default]
    Error,
    /// Score it with the missing values imputed by the pipeline (the response lists them).
    Impute,
}

/// Where the challenger is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Stage {
    /// Mirrored traffic, off the critical path.
    Shadow,
    /// Answers `percent` % of routing keys.
    Canary {
        /// Share of traffic in percent.
        percent: f64,
    },
}

/// Deployment settings: a service's configuration, never a request's. Missing fields in a
/// TOML or JSON file take their defaults; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Shadow queue capacity; beyond it mirrored requests are dropped (and counted).
    pub shadow_queue: usize,
    /// Scores within this absolute difference agree (binary: same side of 0.5 also agrees).
    pub agreement_tolerance: f64,
    /// Canary share when a challenger is promoted to canary.
    pub canary_percent: f64,
    /// Prediction-log capacity in records (oldest entries dropped).
    pub log_capacity: usize,
    /// Prediction-log capacity in bytes (estimated heap size of the records; oldest dropped).
    pub log_max_bytes: usize,
    /// Share of requests logged, by a hash of the request id.
    pub log_sample_rate: f64,
    /// A request for an entity with no stored row at all: refused (default) or imputed.
    pub on_missing: OnMissing,
    /// The evidence a shadow challenger needs to move to canary.
    pub shadow_gate: ShadowGate,
    /// The evidence a canary challenger needs to become champion.
    pub canary_gate: CanaryGate,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        DeploymentConfig {
            shadow_queue: 1024,
            agreement_tolerance: 0.05,
            canary_percent: 10.0,
            log_capacity: 100_000,
            log_max_bytes: 64 << 20,
            log_sample_rate: 1.0,
            on_missing: OnMissing::Error,
            shadow_gate: ShadowGate::default(),
            canary_gate: CanaryGate::default(),
        }
    }
}

impl DeploymentConfig {
    /// Checks ranges: percentages and rates in `[0, 100]` / `[0, 1]`, finite thresholds,
    /// non-zero capacities.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ServeError::Config(m));
        if self.shadow_queue == 0 || self.log_capacity == 0 || self.log_max_bytes == 0 {
            return bad("shadow_queue, log_capacity and log_max_bytes must be at least 1".into());
        }
        if !(0.0..=100.0).contains(&self.canary_percent) {
            return bad(format!(
                "canary_percent {} is not in [0, 100]",
                self.canary_percent
            ));
        }
        for (name, v) in [
            ("log_sample_rate", self.log_sample_rate),
            ("shadow_gate.min_agreement", self.shadow_gate.min_agreement),
            (
                "canary_gate.max_error_rate",
                self.canary_gate.max_error_rate,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} {v} is not in [0, 1]"));
            }
        }
        for (name, v) in [
            ("agreement_tolerance", self.agreement_tolerance),
            ("shadow_gate.max_mean_diff", self.shadow_gate.max_mean_diff),
            ("canary_gate.max_p99_us", self.canary_gate.max_p99_us),
            ("canary_gate.metric_margin", self.canary_gate.metric_margin),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} {v} must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

/// The deployment configurations of a server, read from TOML: `[defaults]` applies to every
/// model, a `[models.NAME]` table replaces it for one model (tables take
/// [`DeploymentConfig`]'s fields; missing fields take their defaults, unknown ones are
/// refused).
///
/// ```
/// let c = keel_serve::DeploymentConfigs::from_toml(
///     "[defaults.shadow_gate]\nmin_samples = 5000\n[models.fraud]\ncanary_percent = 5.0\n",
/// )?;
/// assert_eq!(c.for_model("churn").shadow_gate.min_samples, 5000);
/// assert_eq!(c.for_model("fraud").canary_percent, 5.0);
/// # Ok::<(), keel_serve::ServeError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfigs {
    /// For every model without its own table.
    #[serde(default)]
    pub defaults: DeploymentConfig,
    /// Per model, by registry name.
    #[serde(default)]
    pub models: BTreeMap<String, DeploymentConfig>,
}

impl DeploymentConfigs {
    /// Parses and validates ([`DeploymentConfig::validate`]) a TOML document.
    pub fn from_toml(text: &str) -> Result<DeploymentConfigs> {
        let c: DeploymentConfigs = toml::from_str(text).map_err(ServeError::ConfigFile)?;
        c.defaults.validate()?;
        for (name, m) in &c.models {
            m.validate()
                .map_err(|e| ServeError::Config(format!("[models.{name}]: {e}")))?;
        }
        Ok(c)
    }

    /// The configuration of model `name`.
    pub fn for_model(&self, name: &str) -> &DeploymentConfig {
        self.models.get(name).unwrap_or(&self.defaults)
    }
}

/// Evidence a shadow challenger needs to move to canary (part of [`DeploymentConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowGate {
    /// Compared requests at least (default 1,000).
    pub min_samples: u64,
    /// Agreement rate at least (default 0.95).
    pub min_agreement: f64,
    /// Mean absolute score difference at most (default 0.05).
    pub max_mean_diff: f64,
}

impl Default for ShadowGate {
    fn default() -> Self {
        ShadowGate {
            min_samples: 1000,
            min_agreement: 0.95,
            max_mean_diff: 0.05,
        }
    }
}

/// Evidence a canary challenger needs to become champion (part of [`DeploymentConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryGate {
    /// Canary requests at least (default 1,000).
    pub min_samples: u64,
    /// Canary p99 latency at most, microseconds (default 50,000).
    pub max_p99_us: f64,
    /// Canary error rate at most (default 0.01).
    pub max_error_rate: f64,
    /// When labels are in: challenger metric not worse than the champion's by more than this
    /// (higher-is-better metric such as AUC; default 0).
    pub metric_margin: f64,
    /// Refuse promotion without label evidence (default true).
    pub require_labels: bool,
}

impl Default for CanaryGate {
    fn default() -> Self {
        CanaryGate {
            min_samples: 1000,
            max_p99_us: 50_000.0,
            max_error_rate: 0.01,
            metric_margin: 0.0,
            require_labels: true,
        }
    }
}

/// Labelled comparison of champion and challenger on the same window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelEvidence {
    /// Champion's metric (higher is better).
    pub champion: f64,
    /// Challenger's metric.
    pub challenger: f64,
}
