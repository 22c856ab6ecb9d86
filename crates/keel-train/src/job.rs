//! `TrainingJob`: data -> time split -> fit transforms on train -> train -> evaluate -> track ->
//! register.

use std::collections::BTreeMap;

use keel_core::{Column, DataHash, Field, Frame};
use keel_gbdt::{GbdtModel, PredictOptions};
use keel_registry::{ActiveRun, Bundle, ModelMeta, ModelVersion, Registry, Run};
use keel_store::{FeatureRef, HistoricalOptions, Store};
use keel_transform::{FittedPipeline, Spec};
use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::{Result, TrainError};

/// Fractions of the (time-ordered) rows held out for validation and test; the earliest rows
/// train, the latest test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Validation share (early stopping, model selection).
    pub valid: f64,
    /// Test share (the scores recorded with the model version).
    pub test: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            valid: 0.15,
            test: 0.15,
        }
    }
}

/// A training job, as read from a config file (`keel train --config job.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Experiment the run is tracked under.
    pub experiment: String,
    /// Registry model name the version is registered under.
    pub model: String,
    /// Label column (0/1 for binary, class index for multiclass, a number for regression).
    pub label: String,
    /// Time column (i64 ms or a number) ordering the split; row order when absent.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Hold-out fractions.
    #[serde(default)]
    pub split: SplitConfig,
    /// Feature transforms, fitted on the training rows only.
    pub transform: Spec,
    /// LightGBM parameters (`objective` defaults to `binary`).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Seed of every random choice.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Feature service the model consumes (recorded with the version).
    #[serde(default)]
    pub feature_service: Option<String>,
    /// Register a model version when the run finishes (default true).
    #[serde(default = "yes")]
    pub register: bool,
}

fn default_seed() -> u64 {
    42
}
fn yes() -> bool {
    true
}

/// A job's input: a frame and the versions it was derived from.
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// Rows: features, label, optional timestamp.
    pub frame: Frame,
    /// Extra data versions to record (e.g. `("store", "seq-42")`).
    pub versions: Vec<(String, String)>,
}

impl TrainingData {
    /// Wraps a frame.
    pub fn from_frame(frame: Frame) -> TrainingData {
        TrainingData {
            frame,
            versions: Vec::new(),
        }
    }

    /// Builds the training set by a point-in-time join of `entities` (join keys, timestamp,
    /// label...) with the features of a store's feature service. `version` names the store
    /// state read (a checkpoint id, for reproducibility) and is recorded with the run.
    pub fn from_store(
        store: &Store,
        entities: &Frame,
        service: &str,
        opts: HistoricalOptions,
        version: Option<String>,
    ) -> Result<TrainingData> {
        let refs: Vec<FeatureRef> = store.service(service)?.features;
        let frame = store.historical(entities, &refs, opts)?;
        let mut versions = vec![("feature_service".to_string(), service.to_string())];
        if let Some(v) = version {
            versions.push(("store".to_string(), v));
        }
        Ok(TrainingData { frame, versions })
    }
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// The tracked run (finished).
    pub run: Run,
    /// The registered version, when `register` was set.
    pub version: Option<ModelVersion>,
    /// Evaluation scores (`valid.*`, `test.*`).
    pub metrics: BTreeMap<String, f64>,
    /// Hash of the full training frame (before the split).
    pub data_hash: DataHash,
    /// The fitted transforms.
    pub pipeline: FittedPipeline,
    /// The model, scored in pure Rust.
    pub model: GbdtModel,
    /// The monitoring reference profile: training inputs plus the model's prediction
    /// distribution (column `keel_monitor::PREDICTION_COLUMN`); stored as `reference`.
    pub reference: keel_monitor::Profile,
    /// The model in keel's envelope (what the registry stores as `model`).
    pub model_bytes: Vec<u8>,
    /// LightGBM's text form of the model.
    pub lightgbm_text: String,
}

/// Runs a [`JobConfig`] against a registry.
#[derive(Debug, Clone)]
pub struct TrainingJob {
    config: JobConfig,
}

impl TrainingJob {
    /// A job for `config`.
    pub fn new(config: JobConfig) -> TrainingJob {
        TrainingJob { config }
    }

    /// Parses a TOML job description.
    pub fn from_toml(text: &str) -> Result<TrainingJob> {
        Ok(TrainingJob::new(toml::from_str(text)?))
    }

    /// The job's config.
    pub fn config(&self) -> &JobConfig {
        &self.config
    }

    /// Runs the job: tracks everything in a new run, ends it finished or failed, and registers
    /// the model version when asked.
    pub fn run(&self, registry: &Registry, data: &TrainingData) -> Result<JobOutcome> {
        let mut run = registry.start_run(&self.config.experiment)?;
        match self.run_tracked(&mut run, data) {
            Ok(mut out) => {
                let record = run.finish()?;
                out.run = record;
                if self.config.register {
                    out.version = Some(self.register(registry, &out)?);
                }
                Ok(out)
            }
            Err(e) => {
                run.fail(&e.to_string())?;
                Err(e)
            }
        }
    }

    fn objective(&self) -> String {
        self.config
            .params
            .get("objective")
            .and_then(|v| v.as_str())
            .unwrap_or("binary")
            .to_string()
    }

    fn run_tracked(&self, run: &mut ActiveRun, data: &TrainingData) -> Result<JobOutcome> {
        let cfg = &self.config;
        run.set_seed(cfg.seed)?;
        let mut params: BTreeMap<String, String> = cfg
            .params
            .iter()
            .map(|(k, v)| (format!("lgbm.{k}"), json_text(v)))
            .collect();
        params.insert("objective".into(), self.objective());
        params.insert("label".into(), cfg.label.clone());
        params.insert("split.valid".into(), cfg.split.valid.to_string());
        params.insert("split.test".into(), cfg.split.test.to_string());
        params.insert("transform".into(), serde_json::to_string(&cfg.transform)?);
        run.log_params(params)?;

        let frame = &data.frame;
        let data_hash = DataHash::of(frame);
        run.log_data("dataset", &data_hash.to_hex())?;
        for (k, v) in &data.versions {
            run.log_data(k, v)?;
        }

        let (train, valid, test) = split(frame, cfg)?;
        run.log_metrics(
            [
                ("rows.train", train.nrows() as f64),
                ("rows.valid", valid.nrows() as f64),
                ("rows.test", test.nrows() as f64),
            ],
            0,
        )?;

        let pipeline = cfg.transform.fit(&train)?;
        let features: Vec<String> = pipeline.output_names().to_vec();
        // Each split is transformed once; the matrices feed training, scoring and the profile.
        let (mtrain, mvalid, mtest) = (
            pipeline.transform(&train)?,
            pipeline.transform(&valid)?,
            pipeline.transform(&test)?,
        );
        let (ytrain, yvalid, ytest) = (
            labels(&train, &cfg.label)?,
            labels(&valid, &cfg.label)?,
            labels(&test, &cfg.label)?,
        );
        let xtrain = with_label(&pipeline.output_frame(&mtrain)?, &ytrain, &cfg.label)?;
        let xvalid = with_label(&pipeline.output_frame(&mvalid)?, &yvalid, &cfg.label)?;
        let mut lgbm = cfg.params.clone();
        lgbm.entry("objective").or_insert("binary".into());
        let trained = keel_gbdt::train(
            &xtrain,
            (valid.nrows() > 0).then_some(&xvalid),
            &keel_gbdt::TrainConfig {
                features,
                label: cfg.label.clone(),
                params: serde_json::Value::Object(lgbm),
                seed: cfg.seed,
            },
        )?;
        let model = trained.model;

        let mut scores = BTreeMap::new();
        for (name, x, y) in [("valid", &mvalid, &yvalid), ("test", &mtest, &ytest)] {
            if x.nrows() == 0 {
                continue;
            }
            let p = model.predict(x.as_slice().unwrap_or(&[]), &PredictOptions::default())?;
            for (k, v) in evaluate(&self.objective(), y, &p, model.num_outputs())? {
                scores.insert(format!("{name}.{k}"), v);
            }
        }
        run.log_metrics(scores.iter().map(|(k, v)| (k.as_str(), *v)), 0)?;
        let reference = reference_profile(&pipeline, &model, &train, &mtrain, cfg.seed)?;
        let model_bytes = model.to_bytes()?;
        run.log_artifact("model.txt", trained.lightgbm_text.as_bytes())?;
        run.log_artifact("pipeline.bin", &pipeline.to_bytes()?)?;
        Ok(JobOutcome {
            run: run.record().clone(),
            version: None,
            metrics: scores,
            data_hash,
            pipeline,
            model,
            reference,
            model_bytes,
            lightgbm_text: trained.lightgbm_text,
        })
    }

    /// Registers a finished job's model as a new version (what `run` does when `register` is
    /// set; the retraining loop calls it only after the validation gate passed).
    pub fn register(&self, registry: &Registry, out: &JobOutcome) -> Result<ModelVersion> {
        let run = &out.run;
        let eval = out
            .metrics
            .iter()
            .filter(|(k, _)| k.starts_with("test."))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let data_version = run
            .data
            .iter()
            .find(|d| d.name == "store")
            .unwrap_or(&run.data[0])
            .version
            .clone();
        let bundle = Bundle {
            files: BTreeMap::from([
                ("model".to_string(), out.model_bytes.clone()),
                (
                    "model.txt".to_string(),
                    out.lightgbm_text.as_bytes().to_vec(),
                ),
                ("pipeline".to_string(), out.pipeline.to_bytes()?),
                (
                    "reference".to_string(),
                    keel_core::envelope::encode(&out.reference).map_err(keel_core::Error::from)?,
                ),
            ]),
            meta: ModelMeta {
                flavor: "gbdt".into(),
                feature_service: self.config.feature_service.clone(),
                input_schema: Some(out.pipeline.input_schema().clone()),
                eval,
                params: run.params.clone(),
                seed: Some(self.config.seed),
                data_version: Some(data_version),
                description: format!("{} on {}", self.objective(), self.config.label),
            },
        };
        Ok(registry.register(&self.config.model, &run.id, bundle)?)
    }
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Time-ordered split into train / valid / test.
fn split(frame: &Frame, cfg: &JobConfig) -> Result<(Frame, Frame, Frame)> {
    let n = frame.nrows();
    let s = cfg.split;
    if !(0.0..1.0).contains(&s.valid) || !(0.0..1.0).contains(&s.test) || s.valid + s.test >= 1.0 {
        return Err(TrainError::Config(
            "split: valid and test must be in [0, 1) and sum below 1".into(),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(ts) = &cfg.timestamp {
        let col = frame.column(ts)?;
        let keys: Vec<f64> = (0..n).map(|i| col.get_f64(i).unwrap_or(f64::NAN)).collect();
        if keys.iter().any(|k| k.is_nan()) {
            return Err(TrainError::Config(format!(
                "timestamp column `{ts}` must be numeric and present on every row"
            )));
        }
        order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    }
    let n_test = (n as f64 * s.test).round() as usize;
    let n_valid = (n as f64 * s.valid).round() as usize;
    let n_train = n.saturating_sub(n_test + n_valid);
    if n_train == 0 {
        return Err(TrainError::Config(format!(
            "{n} rows leave nothing to train on"
        )));
    }
    Ok((
        frame.take(&order[..n_train])?,
        frame.take(&order[n_train..n_train + n_valid])?,
        frame.take(&order[n_train + n_valid..])?,
    ))
}

pub(crate) fn labels(frame: &Frame, label: &str) -> Result<Vec<f64>> {
    let col = frame.column(label)?;
    (0..frame.nrows())
        .map(|i| match col.get_f64(i) {
            Some(v) if !v.is_nan() => Ok(v),
            _ => Err(TrainError::Config(format!(
                "label `{label}` is missing or not numeric at row {i}"
            ))),
        })
        .collect()
}

fn with_label(features: &Frame, y: &[f64], label: &str) -> Result<Frame> {
    let mut fields: Vec<Field> = features.schema().fields().to_vec();
    let mut cols: Vec<Column> = features.columns().to_vec();
    if fields.iter().any(|f| f.name == label) {
        return Err(TrainError::Config(format!(
            "label `{label}` is also a transform output"
        )));
    }
    fields.push(Field::new(label, keel_core::DType::F64));
    cols.push(Column::F64(y.to_vec().into()));
    Ok(Frame::new(fields, cols)?)
}

/// The reference profile of the training rows: the pipeline's raw inputs and the first model
/// output (`x` is the training rows already transformed).
fn reference_profile(
    pipeline: &FittedPipeline,
    model: &GbdtModel,
    train: &Frame,
    x: &ndarray::Array2<f64>,
    seed: u64,
) -> Result<keel_monitor::Profile> {
    use keel_monitor::{default_kind, ColumnKind, Profile, DEFAULT_SAMPLE, PREDICTION_COLUMN};
    let fields = pipeline.input_schema().fields();
    let mut cols: Vec<(String, ColumnKind)> = fields
        .iter()
        .map(|f| (f.name.clone(), default_kind(f.dtype)))
        .collect();
    cols.push((PREDICTION_COLUMN.to_string(), ColumnKind::Numerical));
    let mut profile = Profile::new(&cols, DEFAULT_SAMPLE, seed);
    let k = model.num_outputs();
    let p = model.predict(x.as_slice().unwrap_or(&[]), &PredictOptions::default())?;
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let inputs = train.select(&names)?;
    let mut out_fields = inputs.schema().fields().to_vec();
    let mut out_cols = inputs.columns().to_vec();
    out_fields.push(Field::new(PREDICTION_COLUMN, keel_core::DType::F64));
    out_cols.push(Column::F64(p.iter().step_by(k.max(1)).copied().collect()));
    profile.update_frame(&Frame::new(out_fields, out_cols)?);
    Ok(profile)
}

/// Scores for an objective: binary -> auc, pr_auc, logloss, accuracy; multiclass -> logloss,
/// accuracy; anything else -> rmse, mae.
pub fn evaluate(objective: &str, y: &[f64], p: &[f64], k: usize) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    match objective {
        "binary" | "cross_entropy" | "xentropy" => {
            out.push(("auc".into(), metrics::roc_auc(y, p)?));
            out.push(("pr_auc".into(), metrics::average_precision(y, p)?));
            out.push(("logloss".into(), metrics::log_loss(y, p)?));
            out.push(("accuracy".into(), metrics::accuracy(y, p, 0.5)?));
        }
        "multiclass" | "softmax" | "multiclassova" => {
            let yc: Vec<usize> = y.iter().map(|v| *v as usize).collect();
            out.push(("logloss".into(), metrics::log_loss_multiclass(&yc, p, k)?));
            out.push(("accuracy".into(), metrics::accuracy_multiclass(&yc, p, k)?));
        }
        _ => {
            out.push(("rmse".into(), metrics::rmse(y, p)?));
            out.push(("mae".into(), metrics::mae(y, p)?));
        }
    }
    Ok(out)
}
