//! Training jobs end to end: tracked, registered, reproducible, failing cleanly.

use keel_core::{Column, DType, Field, Frame, Validity};
use keel_registry::{Registry, RunFilter, RunStatus};
use keel_train::{TrainError, TrainingData, TrainingJob};
use keel_transform::FittedPipeline;

/// A small fraud-like dataset: risk rises with amount, some countries and a merchant score.
fn dataset(n: usize, seed: u64) -> Frame {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let countries = ["FR", "DE", "US", "BR", "NG", "IN"];
    let (mut ts, mut amount, mut country, mut risk, mut label) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let a = (next() * 6.0).exp();
        let c = (next() * countries.len() as f64) as usize;
        let r = next();
        let logit = -3.0 + 0.5 * a.ln() + if c >= 4 { 1.2 } else { 0.0 } + 2.0 * r;
        let y = next() < 1.0 / (1.0 + (-logit).exp());
        ts.push(1_700_000_000_000i64 + i as i64 * 60_000);
        amount.push(if next() < 0.05 { f64::NAN } else { a });
        country.push(countries[c].to_string());
        risk.push(r);
        label.push(i64::from(y));
    }
    Frame::new(
        vec![
            Field::new("event_ms", DType::I64),
            Field::new("amount", DType::F64),
            Field::new("country", DType::String),
            Field::new("merchant_risk", DType::F64),
            Field::new("is_fraud", DType::I64),
        ],
        vec![
            Column::I64 {
                values: ts.into(),
                validity: Validity::all_valid(),
            },
            Column::F64(amount.into()),
            Column::String {
                values: country,
                validity: Validity::all_valid(),
            },
            Column::F64(risk.into()),
            Column::I64 {
                values: label.into(),
                validity: Validity::all_valid(),
            },
        ],
    )
    .unwrap()
}

const JOB: &str = r#"
experiment = "fraud"
model = "fraud"
label = "is_fraud"
timestamp = "event_ms"
seed = 7
feature_service = "fraud_v1"
split = { valid = 0.2, test = 0.2 }
params = { objective = "binary", num_iterations = 40, learning_rate = 0.1, num_leaves = 15, bagging_fraction = 0.8, bagging_freq = 1, feature_fraction = 0.8 }

[[transform.columns]]
column = "amount"
steps = [{ op = "impute", strategy = "median" }, { op = "log1p" }, { op = "standardize" }]

[[transform.columns]]
column = "country"
steps = [{ op = "one_hot", max_categories = 5, unknown = "infrequent" }]

[[transform.columns]]
column = "merchant_risk"
steps = [{ op = "quantile_bucket", n_bins = 10 }]
"#;

#[test]
fn a_job_is_tracked_registered_and_servable_from_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let data = dataset(3000, 1);
    let job = TrainingJob::from_toml(JOB).unwrap();
    let out = job
        .run(&reg, &TrainingData::from_frame(data.clone()))
        .unwrap();

    assert_eq!(out.run.status, RunStatus::Finished);
    assert_eq!(out.run.seed, Some(7));
    assert_eq!(out.run.data[0].version, out.data_hash.to_hex());
    assert_eq!(out.run.metric("rows.train"), Some(1800.0));
    assert!(out.metrics["test.auc"] > 0.7, "{:?}", out.metrics);
    for k in [
        "test.auc",
        "test.pr_auc",
        "test.logloss",
        "test.accuracy",
        "valid.auc",
    ] {
        assert!(out.run.metric(k).is_some(), "{k} not logged");
    }
    // Transforms saw the training rows only.
    assert_eq!(out.pipeline.as_ref().unwrap().fitted_rows(), 1800);

    let v = out.version.clone().unwrap();
    assert_eq!(v.version, 1);
    assert_eq!(v.meta.flavor, "gbdt");
    assert_eq!(v.meta.feature_service.as_deref(), Some("fraud_v1"));
    assert_eq!(v.meta.eval["test.auc"], out.metrics["test.auc"]);
    assert_eq!(v.meta.input_schema.as_ref().unwrap().len(), 3);

    // Serving side: only the bundle, no fitting.
    let loaded = reg.load("fraud", 1).unwrap();
    let reference: keel_monitor::Profile =
        keel_core::envelope::decode(loaded.file("reference").unwrap()).unwrap();
    assert_eq!(reference.rows(), 1800);
    let pred = reference.column(keel_monitor::PREDICTION_COLUMN).unwrap();
    assert_eq!(pred.count(), 1800);
    assert!(pred.mean().unwrap() > 0.0 && pred.mean().unwrap() < 1.0);
    let pipeline = FittedPipeline::from_bytes(loaded.file("pipeline").unwrap()).unwrap();
    let model = keel_gbdt::GbdtModel::from_bytes(loaded.file("model").unwrap()).unwrap();
    let x = pipeline.transform(&data).unwrap();
    let served = model
        .predict(x.as_slice().unwrap(), &keel_gbdt::PredictOptions::default())
        .unwrap();
    let direct = out.model().unwrap().score_frame(&data).unwrap();
    assert_eq!(served, direct);
    let runs = reg
        .search_runs(&RunFilter::parse("experiment=fraud status=finished").unwrap())
        .unwrap();
    assert_eq!(runs.len(), 1);
}

#[test]
fn same_inputs_and_seed_give_the_same_hash_model_and_metrics() {
    let job = TrainingJob::from_toml(JOB).unwrap();
    let data = TrainingData::from_frame(dataset(2000, 3));
    let a = job
        .run(
            &Registry::open(tempfile::tempdir().unwrap().path()).unwrap(),
            &data,
        )
        .unwrap();
    let b = job
        .run(
            &Registry::open(tempfile::tempdir().unwrap().path()).unwrap(),
            &data,
        )
        .unwrap();
    assert_eq!(a.data_hash, b.data_hash);
    assert_eq!(a.files, b.files);
    assert_eq!(a.lightgbm_text, b.lightgbm_text);
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(a.pipeline, b.pipeline);

    // Another seed (bagging and feature sampling are on) gives another model.
    let mut cfg = job.config().clone();
    cfg.seed = 8;
    let c = TrainingJob::new(cfg)
        .run(
            &Registry::open(tempfile::tempdir().unwrap().path()).unwrap(),
            &data,
        )
        .unwrap();
    assert_eq!(c.data_hash, a.data_hash);
    assert_ne!(c.files["model"], a.files["model"]);
}

#[test]
fn a_failing_job_leaves_a_failed_run_and_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let mut cfg = TrainingJob::from_toml(JOB).unwrap().config().clone();
    cfg.label = "no_such_column".into();
    let err = TrainingJob::new(cfg)
        .run(&reg, &TrainingData::from_frame(dataset(500, 2)))
        .unwrap_err();
    assert!(
        matches!(err, TrainError::Core(_) | TrainError::Config(_)),
        "{err}"
    );
    let runs = reg.search_runs(&RunFilter::default()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(runs[0].tags["error"].contains("no_such_column"));
    assert!(reg.versions("fraud").unwrap().is_empty());
}

#[test]
fn bad_configs_are_refused() {
    assert!(matches!(
        TrainingJob::from_toml("experiment = 1"),
        Err(TrainError::Toml(_))
    ));
    // Issue 23, item 5: an unknown (misspelt) key is an error naming it, never ignored.
    let err = TrainingJob::from_toml(&format!("learning_rat = 0.1\n{JOB}")).unwrap_err();
    assert!(
        matches!(err, TrainError::Toml(_)) && err.to_string().contains("learning_rat"),
        "{err}"
    );
    let mut cfg = TrainingJob::from_toml(JOB).unwrap().config().clone();
    cfg.split.valid = 0.6;
    cfg.split.test = 0.5;
    let dir = tempfile::tempdir().unwrap();
    let err = TrainingJob::new(cfg)
        .run(
            &Registry::open(dir.path()).unwrap(),
            &TrainingData::from_frame(dataset(100, 1)),
        )
        .unwrap_err();
    assert!(matches!(err, TrainError::Config(_)), "{err}");
}
