//! What to do about drift and decay: the retraining policy, the validation gate, alerts, and
//! the join of labels to logged predictions.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::detect::{DecayEvidence, DecayMetric};
use crate::drift::DriftReport;
use crate::Result;

/// The action a decision takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do.
    None,
    /// Inputs drifted but performance holds: alert, do not retrain blindly.
    Alert,
    /// Performance decayed beyond the threshold: retrain, then gate.
    Retrain,
}

/// A recorded decision with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The action.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// Drifted columns, when drift was checked.
    pub drifted_columns: Vec<String>,
    /// Share of drifted columns, when drift was checked.
    pub drift_share: Option<f64>,
    /// Performance evidence, when labels were available.
    pub decay: Option<DecayEvidence>,
    /// Changes that the change detectors found in the per-request loss since the last decision.
    #[serde(default)]
    pub changes: Vec<ChangeEvidence>,
}

/// A change detector's finding: the per-request loss of the served model went up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvidence {
    /// `page_hinkley` or `adwin`.
    pub detector: String,
    /// The stream watched, e.g. `log_loss`.
    pub stream: String,
    /// Labelled requests the detector had seen when it fired.
    pub samples: u64,
    /// Mean loss after the change (ADWIN's window mean, Page-Hinkley's running mean).
    pub mean_after: f64,
}

/// Decides: decay beyond threshold -> [`Action::Retrain`]; dataset drift without decay ->
/// [`Action::Alert`]; otherwise [`Action::None`]. The same as [`decide_with`] without change
/// detectors.
pub fn decide(at_ms: i64, drift: Option<&DriftReport>, decay: Option<&DecayEvidence>) -> Decision {
    decide_with(at_ms, drift, decay, &[])
}

/// Decides with change-detector evidence too: decay beyond threshold, or a detected increase of
/// the per-request loss (Page-Hinkley, ADWIN) -> [`Action::Retrain`]; dataset drift alone ->
/// [`Action::Alert`]; otherwise [`Action::None`].
pub fn decide_with(
    at_ms: i64,
    drift: Option<&DriftReport>,
    decay: Option<&DecayEvidence>,
    changes: &[ChangeEvidence],
) -> Decision {
    let drifted_columns: Vec<String> = drift
        .map(|d| {
            d.columns
                .iter()
                .filter(|c| c.drift)
                .map(|c| c.column.clone())
                .collect()
        })
        .unwrap_or_default();
    let drift_share = drift.map(|d| d.share_of_drifted_columns);
    let (action, reason) = match (decay, drift) {
        (Some(e), _) if e.decayed => (
            Action::Retrain,
            format!(
                "{:?} fell from {:.4} to {:.4} on {} labelled rows (allowed {:.4})",
                e.metric, e.baseline, e.current, e.samples, e.threshold
            ),
        ),
        _ if !changes.is_empty() => (
            Action::Retrain,
            changes
                .iter()
                .map(|c| {
                    format!(
                        "{} found the {} rising (mean {:.4} after {} labelled requests)",
                        c.detector, c.stream, c.mean_after, c.samples
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (_, Some(d)) if d.dataset_drift => (
            Action::Alert,
            format!(
                "input drift in {} of {} columns ({}) but performance holds",
                d.number_of_drifted_columns,
                d.columns.len(),
                drifted_columns.join(", ")
            ),
        ),
        _ => (Action::None, "no decay, no dataset drift".to_string()),
    };
    Decision {
        at_ms,
        action,
        reason,
        drifted_columns,
        drift_share,
        decay: decay.cloned(),
        changes: changes.to_vec(),
    }
}

/// An alert raised by a decision.
pub trait AlertSink: Send + Sync {
    /// Receives a decision whose action is not [`Action::None`].
    fn alert(&self, decision: &Decision);
}

/// The default sink: a `tracing` warning with the decision as fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl AlertSink for TracingSink {
    fn alert(&self, d: &Decision) {
        tracing::warn!(action = ?d.action, reason = %d.reason, drift_share = ?d.drift_share, "keel-monitor decision");
    }
}

/// A sink calling a closure.
pub struct CallbackSink<F: Fn(&Decision) + Send + Sync>(pub F);

impl<F: Fn(&Decision) + Send + Sync> AlertSink for CallbackSink<F> {
    fn alert(&self, d: &Decision) {
        (self.0)(d)
    }
}

/// Every decision, kept in order (also the ones with no action), and forwarded to a sink when
/// they act.
pub struct DecisionLog {
    sink: Box<dyn AlertSink>,
    decisions: Mutex<Vec<Decision>>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog").finish_non_exhaustive()
    }
}

impl Default for DecisionLog {
    fn default() -> Self {
        DecisionLog::new(Box::new(TracingSink))
    }
}

impl DecisionLog {
    /// A log forwarding to `sink`.
    pub fn new(sink: Box<dyn AlertSink>) -> DecisionLog {
        DecisionLog {
            sink,
            decisions: Mutex::new(Vec::new()),
        }
    }

    /// Records a decision (alerting when it acts).
    pub fn record(&self, d: Decision) {
        if d.action != Action::None {
            self.sink.alert(&d);
        }
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(d);
    }

    /// All decisions so far.
    pub fn decisions(&self) -> Vec<Decision> {
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The decisions as JSON lines.
    pub fn to_json_lines(&self) -> Result<String> {
        let mut s = String::new();
        for d in self.decisions() {
            s.push_str(
                &serde_json::to_string(&d)
                    .map_err(|e| crate::MonitorError::Input(e.to_string()))?,
            );
            s.push('\n');
        }
        Ok(s)
    }
}

/// Joins labels, which arrive late, to logged predictions by request id. Bounded: the oldest
/// pending predictions are evicted (and counted) beyond `capacity`.
#[derive(Debug)]
pub struct LabelJoiner {
    capacity: usize,
    pending: HashMap<String, f64>,
    order: VecDeque<String>,
    /// Predictions evicted before their label came.
    pub evicted: u64,
    /// Labels whose prediction was unknown or evicted.
    pub orphans: u64,
}

impl LabelJoiner {
    /// A joiner holding at most `capacity` unlabelled predictions.
    pub fn new(capacity: usize) -> LabelJoiner {
        LabelJoiner {
            capacity: capacity.max(1),
            pending: HashMap::new(),
            order: VecDeque::new(),
            evicted: 0,
            orphans: 0,
        }
    }

    /// Logs a prediction.
    pub fn prediction(&mut self, request_id: &str, score: f64) {
        if self.pending.insert(request_id.to_string(), score).is_none() {
            self.order.push_back(request_id.to_string());
        }
        while self.pending.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                if self.pending.remove(&old).is_some() {
                    self.evicted += 1;
                }
            }
        }
    }

    /// A label arrives; returns `(label, score)` when its prediction is known.
    pub fn label(&mut self, request_id: &str, label: f64) -> Option<(f64, f64)> {
        match self.pending.remove(request_id) {
            Some(score) => Some((label, score)),
            None => {
                self.orphans += 1;
                None
            }
        }
    }

    /// Predictions waiting for a label.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The validation gate a retrained challenger must pass before it may even shadow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateConfig {
    /// The metric that must improve.
    pub metric: DecayMetric,
    /// By at least this much (absolute; 0 = not worse).
    pub margin: f64,
    /// Guard metrics and the regression each may show at most.
    #[serde(default)]
    pub guards: Vec<(DecayMetric, f64)>,
    /// Challenger p99 latency budget, microseconds.
    #[serde(default)]
    pub latency_budget_us: Option<f64>,
}

/// One check of the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    /// What was checked.
    pub name: String,
    /// Champion value.
    pub champion: f64,
    /// Challenger value.
    pub challenger: f64,
    /// Limit applied.
    pub limit: f64,
    /// Whether it passed.
    pub passed: bool,
}

/// The gate's verdict with every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// All checks passed.
    pub passed: bool,
    /// The checks.
    pub checks: Vec<GateCheck>,
}

impl GateConfig {
    /// Runs the gate on a fresh holdout: labels `y`, champion and challenger scores, and the
    /// challenger's measured p99 latency.
    pub fn evaluate(
        &self,
        y: &[f64],
        champion: &[f64],
        challenger: &[f64],
        challenger_p99_us: Option<f64>,
    ) -> Result<GateResult> {
        let mut checks = Vec::new();
        let better = |m: DecayMetric, ch: f64, ca: f64| match m {
            DecayMetric::Auc | DecayMetric::Accuracy => ca - ch,
            _ => ch - ca,
        };
        let (a, b) = (
            self.metric.compute(y, champion)?,
            self.metric.compute(y, challenger)?,
        );
        checks.push(GateCheck {
            name: format!("{:?} improves by >= {}", self.metric, self.margin),
            champion: a,
            challenger: b,
            limit: self.margin,
            passed: better(self.metric, a, b) >= self.margin,
        });
        for (m, max_reg) in &self.guards {
            let (a, b) = (m.compute(y, champion)?, m.compute(y, challenger)?);
            checks.push(GateCheck {
                name: format!("guard {m:?} regresses by <= {max_reg}"),
                champion: a,
                challenger: b,
                limit: *max_reg,
                passed: -better(*m, a, b) <= *max_reg,
            });
        }
        if let Some(budget) = self.latency_budget_us {
            let p99 = challenger_p99_us.unwrap_or(f64::INFINITY);
            checks.push(GateCheck {
                name: format!("p99 latency <= {budget} us"),
                champion: f64::NAN,
                challenger: p99,
                limit: budget,
                passed: p99 <= budget,
            });
        }
        Ok(GateResult {
            passed: checks.iter().all(|c| c.passed),
            checks,
        })
    }
}

/// Per-window summary used in reports and decisions.
pub fn drift_summary(report: &DriftReport) -> BTreeMap<String, f64> {
    report
        .columns
        .iter()
        .map(|c| (c.column.clone(), c.score))
        .collect()
}
