//! The retraining path end to end: concept drift -> decay -> retrain -> gate -> register ->
//! shadow (champion untouched); covariate drift alone -> alert only; a challenger that does
//! not beat the champion is not registered.

use keel_core::Frame;
use keel_gbdt::PredictOptions;
use keel_monitor::synth::{self, Shift};
use keel_monitor::{
    decide, detect_drift, Action, DecayMetric, DecayMonitor, DecisionLog, DriftOptions, GateConfig,
};
use keel_registry::Registry;
use keel_train::{RetrainLoop, TrainingData, TrainingJob, CHAMPION_ALIAS, SHADOW_ALIAS};
use keel_transform::FittedPipeline;

const JOB: &str = r#"
experiment = "fraud"
model = "fraud"
label = "label"
split = { valid = 0.2, test = 0.2 }
params = { objective = "binary", num_iterations = 60, learning_rate = 0.1, num_leaves = 15 }
[[transform.columns]]
column = "amount"
steps = [{ op = "log1p" }]
[[transform.columns]]
column = "risk"
[[transform.columns]]
column = "country"
steps = [{ op = "one_hot" }]
"#;

fn inputs(f: &Frame) -> Frame {
    f.select(&["amount", "risk", "country"]).unwrap()
}

fn champion_scores(reg: &Registry, f: &Frame) -> Vec<f64> {
    let b = reg.load_alias("fraud", CHAMPION_ALIAS).unwrap();
    let p = FittedPipeline::from_bytes(b.file("pipeline").unwrap()).unwrap();
    let m = keel_gbdt::GbdtModel::from_bytes(b.file("model").unwrap()).unwrap();
    let x = p.transform(f).unwrap();
    m.predict(x.as_slice().unwrap(), &PredictOptions::default())
        .unwrap()
}

fn labels(f: &Frame) -> Vec<f64> {
    let c = f.column("label").unwrap();
    (0..f.nrows()).map(|i| c.get_f64(i).unwrap()).collect()
}

fn setup(dir: &std::path::Path) -> (Registry, TrainingJob, f64) {
    let reg = Registry::open(dir).unwrap();
    let job = TrainingJob::from_toml(JOB).unwrap();
    let out = job
        .run(
            &reg,
            &TrainingData::from_frame(synth::transactions(4000, Shift::None, 1)),
        )
        .unwrap();
    let v = out.version.unwrap();
    reg.set_alias("fraud", CHAMPION_ALIAS, v.version, "initial model")
        .unwrap();
    (reg, job, v.meta.eval["test.auc"])
}

/// Evidently's preset, with the calibrated two-sample chi-square for the categorical column
/// (the preset's one-sample test over-alarms on references this small).
fn drift_opts() -> DriftOptions {
    let mut o = DriftOptions::default();
    o.per_column.insert(
        "country".into(),
        keel_monitor::ColumnOptions {
            test: Some(keel_monitor::DriftTest::ChiSquareTwoSample),
            ..Default::default()
        },
    );
    o
}

fn gate() -> GateConfig {
    GateConfig {
        metric: DecayMetric::Auc,
        margin: 0.02,
        guards: vec![(DecayMetric::Logloss, 0.0)],
        latency_budget_us: Some(10_000.0),
    }
}

#[test]
fn concept_drift_retrains_gates_registers_and_shadows() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, job, baseline) = setup(dir.path());
    let reference = synth::transactions(800, Shift::None, 2);
    let traffic = synth::transactions(1500, Shift::Concept(1.0), 3);

    // Monitoring: inputs look the same, labelled performance collapses.
    let drift = detect_drift(&inputs(&reference), &inputs(&traffic), &drift_opts()).unwrap();
    assert!(!drift.dataset_drift);
    let mut decay = DecayMonitor::new(DecayMetric::Auc, baseline, 0.05, 2000, 300).unwrap();
    for (y, p) in labels(&traffic)
        .into_iter()
        .zip(champion_scores(&reg, &traffic))
    {
        decay.push(y, p);
    }
    let evidence = decay.evaluate().unwrap();
    assert!(evidence.decayed, "{evidence:?}");
    let decision = decide(1, Some(&drift), Some(&evidence));
    assert_eq!(decision.action, Action::Retrain);

    let log = DecisionLog::default();
    let lp = RetrainLoop::new(&reg, job, gate(), &log);
    let holdout = synth::transactions(1500, Shift::Concept(1.0), 4);
    let out = lp
        .handle(decision, &TrainingData::from_frame(traffic), &holdout)
        .unwrap();
    let g = out.gate.unwrap();
    assert!(g.passed, "{g:?}");
    let v = out.registered.unwrap();
    assert_eq!(v.version, 2);
    assert_eq!(reg.alias("fraud", SHADOW_ALIAS).unwrap(), Some(2));
    assert_eq!(
        reg.alias("fraud", CHAMPION_ALIAS).unwrap(),
        Some(1),
        "never straight to champion"
    );
    let run = reg.run(&v.run_id).unwrap();
    assert_eq!(run.tags["gate"], "passed");
    assert!(run.artifacts.iter().any(|a| a.name == "gate.json"));
    assert!(reg
        .audit("fraud")
        .unwrap()
        .last()
        .unwrap()
        .reason
        .contains("gate passed"));
    assert_eq!(log.decisions().len(), 1);
}

#[test]
fn covariate_drift_alone_only_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, job, baseline) = setup(dir.path());
    let reference = synth::transactions(800, Shift::None, 5);
    let traffic = synth::transactions(1000, Shift::Covariate(0.8), 6);
    let drift = detect_drift(&inputs(&reference), &inputs(&traffic), &drift_opts()).unwrap();
    assert!(drift.dataset_drift);
    let mut decay = DecayMonitor::new(DecayMetric::Auc, baseline, 0.05, 2000, 300).unwrap();
    for (y, p) in labels(&traffic)
        .into_iter()
        .zip(champion_scores(&reg, &traffic))
    {
        decay.push(y, p);
    }
    let decision = decide(2, Some(&drift), decay.evaluate().as_ref());
    assert_eq!(decision.action, Action::Alert, "{}", decision.reason);
    let log = DecisionLog::default();
    let out = RetrainLoop::new(&reg, job, gate(), &log)
        .handle(
            decision,
            &TrainingData::from_frame(traffic.clone()),
            &traffic,
        )
        .unwrap();
    assert!(out.challenger.is_none() && out.registered.is_none());
    assert_eq!(reg.versions("fraud").unwrap(), vec![1]);
    assert_eq!(
        reg.search_runs(&Default::default()).unwrap().len(),
        1,
        "no training run"
    );
}

#[test]
fn a_challenger_that_does_not_beat_the_champion_is_not_registered() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, job, _) = setup(dir.path());
    let mut decision = decide(3, None, None);
    decision.action = Action::Retrain; // forced, e.g. a scheduled retrain
    decision.reason = "scheduled".into();
    let log = DecisionLog::default();
    let out = RetrainLoop::new(&reg, job, gate(), &log)
        .handle(
            decision,
            &TrainingData::from_frame(synth::transactions(4000, Shift::None, 7)),
            &synth::transactions(1500, Shift::None, 8),
        )
        .unwrap();
    let g = out.gate.unwrap();
    assert!(!g.passed, "{g:?}");
    assert!(out.registered.is_none());
    assert_eq!(reg.versions("fraud").unwrap(), vec![1]);
    assert_eq!(reg.alias("fraud", SHADOW_ALIAS).unwrap(), None);
    let run = reg.run(&out.challenger.unwrap().run.id).unwrap();
    assert_eq!(run.tags["gate"], "failed");
}

/// Issue 21: the retraining gate scored a deep champion without its category codes
/// (`predict_batch(&xf, &[], rows)`), unlike serving. It scores through the model seam now:
/// the champion's AUC in the gate is the AUC of the scores serving gives, row by row.
#[test]
fn a_deep_champion_with_embeddings_is_gated_on_the_scores_serving_gives() {
    use keel_deep::{EmbeddingSpec, Head, Mlp, MlpConfig};
    use keel_model::ServedModel;
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    // A pipeline whose last output is the country's category code.
    let job = TrainingJob::from_toml(&JOB.replace("op = \"one_hot\"", "op = \"ordinal\"")).unwrap();
    let data = TrainingData::from_frame(synth::transactions(4000, Shift::None, 11));
    let gbdt = job.run(&reg, &data).unwrap();
    let pipeline = gbdt.pipeline.as_ref().unwrap().to_bytes().unwrap();
    assert_eq!(gbdt.pipeline.as_ref().unwrap().width(), 3);
    // The deep champion: two numeric inputs and one embedded code (random weights suffice).
    let mlp = Mlp::new(
        MlpConfig {
            numeric: 2,
            embeddings: vec![EmbeddingSpec {
                cardinality: 16,
                dim: 4,
            }],
            hidden: vec![8],
            layer_norm: false,
            residual: false,
            dropout: 0.0,
            head: Head::Binary,
        },
        5,
    )
    .unwrap();
    let (manifest, weights) = mlp.to_parts(Default::default()).unwrap();
    let deep = reg
        .register(
            "fraud",
            &gbdt.run.id,
            keel_registry::Bundle::new("deep")
                .with_file("model", manifest)
                .with_file("weights", weights)
                .with_file("pipeline", pipeline),
        )
        .unwrap();
    reg.set_alias("fraud", CHAMPION_ALIAS, deep.version, "deep champion")
        .unwrap();
    let holdout = synth::transactions(1500, Shift::None, 12);
    let mut decision = decide(4, None, None);
    decision.action = Action::Retrain;
    decision.reason = "scheduled".into();
    let log = DecisionLog::default();
    let out = RetrainLoop::new(&reg, job, gate(), &log)
        .handle(decision, &data, &holdout)
        .unwrap();
    let gate_auc = out.gate.unwrap().checks[0].champion;
    // Serving's scores: one row at a time through the same seam.
    let served = ServedModel::from_bundle(&reg.load("fraud", deep.version).unwrap()).unwrap();
    let x = inputs(&holdout);
    let scores: Vec<f64> = (0..x.nrows())
        .map(|i| served.score(&x.row(i).unwrap()).unwrap()[0])
        .collect();
    let auc = keel_monitor::metrics::roc_auc(&labels(&holdout), &scores).unwrap();
    assert!(
        (gate_auc - auc).abs() < 1e-12,
        "gate {gate_auc} vs serving {auc}"
    );
    // The batch path of the seam equals its row path.
    let batch = served.score_batch(&holdout).unwrap();
    for (b, s) in batch.iter().zip(&scores) {
        assert!((b - s).abs() < 1e-6, "{b} vs {s}");
    }
}
