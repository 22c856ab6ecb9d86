//! The automated retraining loop: a monitor decision in, and when it says retrain, a tracked
//! training job on the latest data, the validation gate against the champion on a fresh
//! holdout, registration, and deployment as *shadow* (never as champion).

use std::time::Instant;

use keel_core::{Frame, ValueRef};
use keel_monitor::{Action, Decision, DecisionLog, GateConfig, GateResult};
use keel_registry::{ModelVersion, Registry};

use crate::job::{labels, JobOutcome, TrainingData, TrainingJob};
use crate::{Result, TrainError};

/// The alias the serving champion is read from (`keel_registry::rollout::CHAMPION`).
pub use keel_registry::rollout::CHAMPION as CHAMPION_ALIAS;
/// The alias a gated challenger is deployed under (`keel_registry::rollout::SHADOW`).
pub use keel_registry::rollout::SHADOW as SHADOW_ALIAS;

/// What one turn of the loop did.
#[derive(Debug, Clone)]
pub struct RetrainOutcome {
    /// The decision acted on.
    pub decision: Decision,
    /// The retrained challenger, when the decision was to retrain.
    pub challenger: Option<JobOutcome>,
    /// The gate's verdict, when a challenger was trained.
    pub gate: Option<GateResult>,
    /// The registered version, when the gate passed.
    pub registered: Option<ModelVersion>,
}

/// Joins monitor decisions, training jobs, the gate and the registry.
#[derive(Debug)]
pub struct RetrainLoop<'a> {
    registry: &'a Registry,
    job: TrainingJob,
    gate: GateConfig,
    log: &'a DecisionLog,
}

impl<'a> RetrainLoop<'a> {
    /// A loop retraining with `job` (its `register` flag is ignored: only gated challengers
    /// are registered), gating with `gate`, recording every decision in `log`.
    pub fn new(
        registry: &'a Registry,
        job: TrainingJob,
        gate: GateConfig,
        log: &'a DecisionLog,
    ) -> RetrainLoop<'a> {
        let mut cfg = job.config().clone();
        cfg.register = false;
        RetrainLoop {
            registry,
            job: TrainingJob::new(cfg),
            gate,
            log,
        }
    }

    /// Acts on `decision`: records it; on [`Action::Retrain`] trains on `latest`, gates the
    /// challenger against the champion on `holdout` (labelled, never seen in training), and
    /// when the gate passes registers it and points the `shadow` alias at it. The gate's
    /// evidence is stored with the challenger's run (`gate.json`, tag `gate`).
    pub fn handle(
        &self,
        decision: Decision,
        latest: &TrainingData,
        holdout: &Frame,
    ) -> Result<RetrainOutcome> {
        self.log.record(decision.clone());
        if decision.action != Action::Retrain {
            return Ok(RetrainOutcome {
                decision,
                challenger: None,
                gate: None,
                registered: None,
            });
        }
        let model = self.job.config().model.clone();
        let label = self.job.config().label.clone();
        let out = self.job.run(self.registry, latest)?;
        let champion = self.registry.load_alias(&model, CHAMPION_ALIAS)?;
        let y = labels(holdout, &label)?;
        // Champion and challenger, whatever their flavors, are scored through the model seam,
        // as serving scores them (a deep champion gets its category codes); the gate compares
        // first outputs.
        let first = |m: &keel_model::Model| -> Result<Vec<f64>> {
            let k = m.outputs().max(1);
            Ok(m.score_frame(holdout)?.chunks(k).map(|r| r[0]).collect())
        };
        let champion_scores = first(&keel_model::Model::load(&champion)?)?;
        let challenger = out.model()?;
        let challenger_scores = first(&challenger)?;
        let p99 = single_row_p99_us(&challenger, holdout)?;
        let gate = self
            .gate
            .evaluate(&y, &champion_scores, &challenger_scores, Some(p99))?;
        let mut run = self.registry.resume_run(&out.run.id)?;
        run.log_artifact("gate.json", &serde_json::to_vec_pretty(&gate)?)?;
        run.set_tag("gate", if gate.passed { "passed" } else { "failed" })?;
        run.set_tag("trigger", &decision.reason)?;
        let mut out = out;
        out.run = run.record().clone();
        let registered = if gate.passed {
            let v = self.job.register(self.registry, &out)?;
            keel_registry::rollout::Rollout::new(self.registry, &model).shadow(
                v.version,
                &format!("retrained after: {}; gate passed", decision.reason),
            )?;
            Some(v)
        } else {
            None
        };
        Ok(RetrainOutcome {
            decision,
            challenger: Some(out),
            gate: Some(gate),
            registered,
        })
    }
}

/// p99 of scoring one row at a time over (up to 500) holdout rows, in microseconds: the path
/// a request takes (a tabular row: transform + score from its values; otherwise the model's
/// one-row batch).
fn single_row_p99_us(m: &keel_model::Model, holdout: &Frame) -> Result<f64> {
    let n = holdout.nrows().min(500);
    if n == 0 {
        return Err(TrainError::Config("empty holdout".into()));
    }
    let mut times = Vec::with_capacity(n);
    match m.tabular() {
        Some(tab) => {
            let cols = tab
                .pipeline
                .input_schema()
                .fields()
                .iter()
                .map(|f| holdout.column(&f.name))
                .collect::<keel_core::Result<Vec<_>>>()?;
            for i in 0..n {
                let row: Vec<ValueRef<'_>> = cols.iter().map(|c| c.get(i)).collect();
                let t = Instant::now();
                tab.score(&row)?;
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        None => {
            for i in 0..n {
                let one = holdout.slice(i, 1)?;
                let t = Instant::now();
                m.score_frame(&one)?;
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1])
}
