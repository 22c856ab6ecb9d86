//! Experiment tracking: runs with params, metrics, tags, seed, data versions and artifacts.

use std::collections::BTreeMap;
use std::fmt;

use keel_core::{Kind, Persisted};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A run's identifier (16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunId(pub String);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RunId {
    pub(crate) fn fresh() -> RunId {
        let h = Sha256::digest(crate::fsutil::nonce().as_bytes());
        RunId(hex::encode(&h[..8]))
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Started, not ended.
    Running,
    /// Ended successfully: the only status a model version can be registered from.
    Finished,
    /// Ended with an error.
    Failed,
    /// Abandoned (e.g. the process died; set by whoever notices).
    Killed,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Killed => "killed",
        })
    }
}

/// One logged value of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// The value.
    pub value: f64,
    /// Step (epoch, iteration); 0 for a final score.
    pub step: u64,
    /// When it was logged, ms since the Unix epoch.
    pub timestamp_ms: i64,
}

/// A dataset version the run consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRef {
    /// Role, e.g. `train`, `validation`, `store`.
    pub name: String,
    /// A `DataHash` in hex, a store checkpoint id, or any version string.
    pub version: String,
}

/// An artifact stored with a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// File name under the run's artifact directory.
    pub name: String,
    /// sha256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A tracked run: everything needed to reproduce and compare it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Identifier.
    pub id: RunId,
    /// Experiment it belongs to.
    pub experiment: String,
    /// Optional human name.
    pub name: Option<String>,
    /// Life-cycle status.
    pub status: RunStatus,
    /// Start, ms since the Unix epoch.
    pub start_ms: i64,
    /// End, when ended.
    pub end_ms: Option<i64>,
    /// Hyper-parameters and configuration, as text.
    pub params: BTreeMap<String, String>,
    /// Metric histories, by key.
    pub metrics: BTreeMap<String, Vec<MetricPoint>>,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
    /// The seed every random choice derived from.
    pub seed: Option<u64>,
    /// Data versions consumed.
    pub data: Vec<DataRef>,
    /// Code version (git commit) when known.
    pub code_version: Option<String>,
    /// Artifacts stored with the run.
    pub artifacts: Vec<ArtifactRef>,
}

impl Persisted for Run {
    const KIND: Kind = Kind(*b"RUN_");
    const FORMAT_VERSION: u16 = 1;
}

impl Run {
    /// The last logged value of `key`.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.get(key)?.last().map(|p| p.value)
    }

    /// Duration in ms, when ended.
    pub fn duration_ms(&self) -> Option<i64> {
        self.end_ms.map(|e| e - self.start_ms)
    }
}

/// A comparison operator of a [`RunFilter`] metric condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

/// Which runs [`crate::Registry::search_runs`] returns, and in which order.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this experiment.
    pub experiment: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Every `(key, value)` param must match exactly.
    pub params: Vec<(String, String)>,
    /// Every `(metric, op, value)` must hold on the metric's last value.
    pub metrics: Vec<(String, Cmp, f64)>,
    /// Order by this metric's last value (runs without it last); otherwise by start time.
    pub order_by: Option<String>,
    /// Descending order.
    pub descending: bool,
    /// At most this many runs.
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Parses a compact query: `experiment=fraud params.max_depth=6 metrics.auc>=0.8
    /// status=finished order_by=metrics.auc desc limit=10` (space-separated terms).
    pub fn parse(query: &str) -> crate::Result<RunFilter> {
        let mut f = RunFilter::default();
        let bad = |t: &str| crate::RegistryError::Query(format!("cannot read term `{t}`"));
        for term in query.split_whitespace() {
            if term == "desc" {
                f.descending = true;
                continue;
            }
            if term == "asc" {
                continue;
            }
            let ops = [
                (">=", Cmp::Ge),
                ("<=", Cmp::Le),
                ("==", Cmp::Eq),
                (">", Cmp::Gt),
                ("<", Cmp::Lt),
                ("=", Cmp::Eq),
            ];
            let (key, op, value) = ops
                .iter()
                .find_map(|(s, op)| term.split_once(s).map(|(k, v)| (k, *op, v)))
                .ok_or_else(|| bad(term))?;
            match key {
                "experiment" if op == Cmp::Eq => f.experiment = Some(value.to_string()),
                "status" if op == Cmp::Eq => {
                    f.status = Some(match value {
                        "running" => RunStatus::Running,
                        "finished" => RunStatus::Finished,
                        "failed" => RunStatus::Failed,
                        "killed" => RunStatus::Killed,
                        _ => return Err(bad(term)),
                    })
                }
                "order_by" if op == Cmp::Eq => {
                    f.order_by = Some(value.strip_prefix("metrics.").unwrap_or(value).into())
                }
                "limit" if op == Cmp::Eq => f.limit = Some(value.parse().map_err(|_| bad(term))?),
                k if k.starts_with("params.") && op == Cmp::Eq => f
                    .params
                    .push((k["params.".len()..].to_string(), value.to_string())),
                k if k.starts_with("metrics.") => f.metrics.push((
                    k["metrics.".len()..].to_string(),
                    op,
                    value.parse().map_err(|_| bad(term))?,
                )),
                _ => return Err(bad(term)),
            }
        }
        Ok(f)
    }

    pub(crate) fn matches(&self, r: &Run) -> bool {
        self.experiment.as_ref().is_none_or(|e| *e == r.experiment)
            && self.status.is_none_or(|s| s == r.status)
            && self
                .params
                .iter()
                .all(|(k, v)| r.params.get(k).is_some_and(|x| x == v))
            && self.metrics.iter().all(|(k, op, v)| {
                r.metric(k).is_some_and(|x| match op {
                    Cmp::Lt => x < *v,
                    Cmp::Le => x <= *v,
                    Cmp::Gt => x > *v,
                    Cmp::Ge => x >= *v,
                    Cmp::Eq => x == *v,
                })
            })
    }
}

/// Side-by-side view of several runs: the union of their param and metric keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Run ids, in the order asked.
    pub runs: Vec<RunId>,
    /// Param key -> value per run (`None` when a run lacks it).
    pub params: BTreeMap<String, Vec<Option<String>>>,
    /// Metric key -> last value per run.
    pub metrics: BTreeMap<String, Vec<Option<f64>>>,
    /// Param keys whose values differ between runs.
    pub differing_params: Vec<String>,
}

impl Comparison {
    pub(crate) fn of(runs: &[Run]) -> Comparison {
        let mut params: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        let mut metrics: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
        for r in runs {
            for k in r.params.keys() {
                params.entry(k.clone()).or_default();
            }
            for k in r.metrics.keys() {
                metrics.entry(k.clone()).or_default();
            }
        }
        for (k, v) in params.iter_mut() {
            *v = runs.iter().map(|r| r.params.get(k).cloned()).collect();
        }
        for (k, v) in metrics.iter_mut() {
            *v = runs.iter().map(|r| r.metric(k)).collect();
        }
        let differing_params = params
            .iter()
            .filter(|(_, v)| v.windows(2).any(|w| w[0] != w[1]))
            .map(|(k, _)| k.clone())
            .collect();
        Comparison {
            runs: runs.iter().map(|r| r.id.clone()).collect(),
            params,
            metrics,
            differing_params,
        }
    }
}
