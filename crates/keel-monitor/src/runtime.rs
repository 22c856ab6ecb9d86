//! The monitor a serving process runs: prediction records in, windows against the reference
//! profile, labels joined by request id, decisions out.

use std::sync::Arc;

use keel_core::{Value, ValueRef};
use serde::{Deserialize, Serialize};

use crate::detect::{Adwin, DecayMetric, DecayMonitor, PageHinkley};
use crate::drift::{ColumnKind, DriftOptions, DriftReport};
use crate::policy::{decide_with, ChangeEvidence, Decision, DecisionLog, LabelJoiner};
use crate::profile::{CountWindow, Profile, TimeWindow};
use crate::Result;

/// The column under which a reference profile keeps the model's prediction distribution.
pub const PREDICTION_COLUMN: &str = "__prediction__";

/// One entry of the prediction log (what keel-serve samples and hands to the monitor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// Request id (labels join on it).
    pub request_id: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Model version that answered.
    pub model_version: u32,
    /// Route (`champion`, `canary`, `shadow`).
    pub route: String,
    /// Raw inputs by column.
    pub inputs: Vec<(String, Value)>,
    /// The score (first output).
    pub score: f64,
}

/// How current windows are cut.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Every `n` records.
    Count(u64),
    /// Every `ms` milliseconds of record time.
    Time(i64),
}

/// Decay rule of a [`Monitor`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecayRule {
    /// Metric watched.
    pub metric: DecayMetric,
    /// The model's registered score.
    pub baseline: f64,
    /// Allowed degradation.
    pub threshold: f64,
    /// Labelled rows kept.
    pub window: usize,
    /// Labelled rows needed before judging.
    pub min_samples: usize,
}

/// A change detector over the per-request loss of labelled predictions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeDetector {
    /// [`PageHinkley`] watching increases: tolerance `delta`, threshold `lambda`.
    PageHinkley {
        /// Tolerated drift of the mean per observation.
        delta: f64,
        /// Alarm threshold on the cumulative deviation.
        lambda: f64,
        /// Observations before any alarm.
        min_samples: u64,
    },
    /// [`Adwin`] at confidence `delta`; only a change to a higher mean loss counts.
    Adwin {
        /// Confidence parameter (0.002 is usual).
        delta: f64,
    },
}

/// The per-request loss a change detector watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossStream {
    /// Binary log loss of a probability (clipped to `[1e-15, 1 - 1e-15]`).
    LogLoss,
    /// Squared error of a regression.
    SquaredError,
    /// Absolute error of a regression.
    AbsoluteError,
}

impl LossStream {
    fn name(self) -> &'static str {
        match self {
            LossStream::LogLoss => "log_loss",
            LossStream::SquaredError => "squared_error",
            LossStream::AbsoluteError => "absolute_error",
        }
    }

    fn loss(self, y: f64, p: f64) -> f64 {
        match self {
            LossStream::LogLoss => {
                let p = p.clamp(1e-15, 1.0 - 1e-15);
                -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
            }
            LossStream::SquaredError => (y - p) * (y - p),
            LossStream::AbsoluteError => (y - p).abs(),
        }
    }
}

/// Change detection of a [`Monitor`]: each labelled prediction's loss feeds the detector; a
/// detected increase joins the next decision as [`ChangeEvidence`] (and makes it a retrain).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChangeRule {
    /// The detector.
    pub detector: ChangeDetector,
    /// The loss it watches.
    pub stream: LossStream,
}

enum Detector {
    PageHinkley(PageHinkley),
    Adwin(Adwin),
}

struct ChangeWatch {
    rule: ChangeRule,
    detector: Detector,
    samples: u64,
    found: Vec<ChangeEvidence>,
}

impl ChangeWatch {
    fn new(rule: ChangeRule) -> ChangeWatch {
        let detector = match rule.detector {
            ChangeDetector::PageHinkley {
                delta,
                lambda,
                min_samples,
            } => Detector::PageHinkley(PageHinkley::new(delta, lambda, min_samples)),
            ChangeDetector::Adwin { delta } => Detector::Adwin(Adwin::new(delta)),
        };
        ChangeWatch {
            rule,
            detector,
            samples: 0,
            found: Vec::new(),
        }
    }

    fn push(&mut self, y: f64, p: f64) {
        let x = self.rule.stream.loss(y, p);
        self.samples += 1;
        let (name, fired, mean_after) = match &mut self.detector {
            Detector::PageHinkley(ph) => {
                let fired = ph.update(x);
                ("page_hinkley", fired, x)
            }
            Detector::Adwin(a) => {
                let before = a.mean();
                let fired = a.update(x) && a.mean() > before;
                ("adwin", fired, a.mean())
            }
        };
        // Bounded: a burst of alarms between two decisions keeps the first few.
        if fired && self.found.len() < 16 {
            self.found.push(ChangeEvidence {
                detector: name.to_string(),
                stream: self.rule.stream.name().to_string(),
                samples: self.samples,
                mean_after,
            });
        }
    }
}

/// Configuration of a [`Monitor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Window cutting.
    pub window: WindowSpec,
    /// Drift policy.
    pub drift: DriftOptions,
    /// Performance decay rule, when labels come back.
    pub decay: Option<DecayRule>,
    /// Change detection on the per-request loss, when labels come back.
    #[serde(default)]
    pub change: Option<ChangeRule>,
    /// Reservoir size per numerical column in windows.
    pub sample: usize,
    /// Most predictions waiting for a label.
    pub pending_labels: usize,
    /// Seed of the window sampling.
    pub seed: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            window: WindowSpec::Count(10_000),
            drift: DriftOptions::default(),
            decay: None,
            change: None,
            sample: crate::DEFAULT_SAMPLE,
            pending_labels: 100_000,
            seed: 0,
        }
    }
}

enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

/// What closing a window produced.
#[derive(Debug, Clone)]
pub struct WindowVerdict {
    /// Drift of the window against the reference.
    pub drift: DriftReport,
    /// The decision taken (also recorded in the log).
    pub decision: Decision,
}

/// Bounded-memory monitoring of one model version: feed it prediction records and labels; each
/// closed window yields a drift report and a decision (recorded in the [`DecisionLog`]).
pub struct Monitor {
    reference: Profile,
    cfg: MonitorConfig,
    window: Window,
    joiner: LabelJoiner,
    decay: Option<DecayMonitor>,
    change: Option<ChangeWatch>,
    log: Arc<DecisionLog>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor comparing traffic with `reference` (the profile stored with the model
    /// version, including [`PREDICTION_COLUMN`] when present).
    pub fn new(reference: Profile, cfg: MonitorConfig, log: Arc<DecisionLog>) -> Result<Monitor> {
        let cols: Vec<(String, ColumnKind)> = reference
            .column_names()
            .iter()
            .filter_map(|n| reference.column(n).map(|c| (n.clone(), c.kind())))
            .collect();
        let window = match cfg.window {
            WindowSpec::Count(n) => Window::Count(CountWindow::new(cols, n, cfg.sample, cfg.seed)),
            WindowSpec::Time(ms) => Window::Time(TimeWindow::new(cols, ms, cfg.sample, cfg.seed)),
        };
        let decay = match cfg.decay {
            Some(r) => Some(DecayMonitor::new(
                r.metric,
                r.baseline,
                r.threshold,
                r.window,
                r.min_samples,
            )?),
            None => None,
        };
        Ok(Monitor {
            joiner: LabelJoiner::new(cfg.pending_labels),
            change: cfg.change.map(ChangeWatch::new),
            reference,
            cfg,
            window,
            decay,
            log,
        })
    }

    /// Adds a logged prediction; returns the verdict when it closed a window.
    pub fn observe(&mut self, rec: &PredictionRecord) -> Result<Option<WindowVerdict>> {
        self.joiner.prediction(&rec.request_id, rec.score);
        let mut row: Vec<(&str, ValueRef<'_>)> = rec
            .inputs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref()))
            .collect();
        row.push((PREDICTION_COLUMN, ValueRef::F64(rec.score)));
        let closed = match &mut self.window {
            Window::Count(w) => w.push(&row),
            Window::Time(w) => w.push(rec.at_ms, &row).map(|(_, p)| p),
        };
        let Some(profile) = closed else {
            return Ok(None);
        };
        let drift = self.reference.drift(&profile, &self.cfg.drift)?;
        let evidence = self.decay.as_ref().and_then(DecayMonitor::evaluate);
        let changes = self
            .change
            .as_mut()
            .map(|c| std::mem::take(&mut c.found))
            .unwrap_or_default();
        let decision = decide_with(rec.at_ms, Some(&drift), evidence.as_ref(), &changes);
        self.log.record(decision.clone());
        Ok(Some(WindowVerdict { drift, decision }))
    }

    /// A label arrives for a logged request.
    pub fn label(&mut self, request_id: &str, label: f64) {
        if let Some((y, p)) = self.joiner.label(request_id, label) {
            if let Some(d) = &mut self.decay {
                d.push(y, p);
            }
            if let Some(c) = &mut self.change {
                c.push(y, p);
            }
        }
    }

    /// The label joiner's counters (pending, evicted, orphans).
    pub fn joiner(&self) -> &LabelJoiner {
        &self.joiner
    }
}
