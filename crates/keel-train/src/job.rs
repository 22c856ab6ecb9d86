//! `TrainingJob`: data -> time split -> fit transforms on train -> train -> evaluate -> track ->
//! register.

use std::collections::BTreeMap;

use keel_core::{Column, DataHash, Field, Frame, Schema};
use keel_registry::{ActiveRun, Bundle, LoadedVersion, ModelMeta, ModelVersion, Registry, Run};
use keel_store::{FeatureRef, HistoricalOptions, Store};
use keel_transform::{FittedPipeline, Spec};
use serde::{Deserialize, Serialize};

use keel_model::{bundle, Flavor};

use crate::kinds::{self, CnnJob, DeepTrain, MlpJob, ModelKind, SequenceJob};
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
    /// What to train (default `gbdt`); `auto` chooses from the data ([`ModelKind::Auto`]).
    #[serde(default)]
    pub kind: ModelKind,
    /// Feature transforms of tabular kinds (gbdt, mlp), fitted on the training rows only.
    #[serde(default)]
    pub transform: Spec,
    /// LightGBM parameters (`objective` defaults to `binary`).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `kind = "mlp"`: the network.
    #[serde(default)]
    pub mlp: Option<MlpJob>,
    /// `kind = "sequence"` (or `auto` on text): the text column and the encoder.
    #[serde(default)]
    pub sequence: Option<SequenceJob>,
    /// `kind = "cnn"` (or `auto` on images): the pixel columns and the network.
    #[serde(default)]
    pub cnn: Option<CnnJob>,
    /// How deep kinds train (epochs, batch, optimiser...).
    #[serde(default)]
    pub train: DeepTrain,
    /// Kinds to train on the same split, one tracked run each; the best by `metric` is
    /// registered, every run tagged `candidate = selected | not selected` (empty: train
    /// `kind` alone).
    #[serde(default)]
    pub candidates: Vec<ModelKind>,
    /// The metric candidates are compared on (default `valid.auc` for binary objectives,
    /// `valid.logloss` otherwise); `*loss`, `rmse` and `mae` metrics are lower-is-better.
    #[serde(default)]
    pub metric: Option<String>,
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
    /// What was trained (`auto` resolved).
    pub kind: ModelKind,
    /// The bundle's flavor (`keel_model::Flavor` text).
    pub flavor: String,
    /// The bundle's files (model, weights, pipeline... not yet `reference`).
    pub files: BTreeMap<String, Vec<u8>>,
    /// What the model reads (recorded with the version).
    pub input_schema: Schema,
    /// The fitted transforms (tabular kinds).
    pub pipeline: Option<FittedPipeline>,
    /// The monitoring reference profile: training inputs (tabular kinds) plus the model's
    /// prediction distribution (column `keel_monitor::PREDICTION_COLUMN`); stored as
    /// `reference`.
    pub reference: keel_monitor::Profile,
    /// LightGBM's text form of the model (`gbdt`).
    pub lightgbm_text: Option<String>,
}

impl JobOutcome {
    /// The trained model through the model seam (`keel_model::Model::load`), exactly as
    /// serving and the retraining gate load it.
    pub fn model(&self) -> Result<keel_model::Model> {
        seam_model(&self.run.id, &self.flavor, &self.files, &self.input_schema)
    }
}

/// A bundle's files loaded through the model seam as an (unregistered) version would be.
fn seam_model(
    run_id: &keel_registry::RunId,
    flavor: &str,
    files: &BTreeMap<String, Vec<u8>>,
    input_schema: &Schema,
) -> Result<keel_model::Model> {
    let version = LoadedVersion {
        version: ModelVersion {
            name: String::new(),
            version: 0,
            run_id: run_id.clone(),
            created_ms: 0,
            meta: ModelMeta {
                flavor: flavor.to_string(),
                input_schema: Some(input_schema.clone()),
                ..ModelMeta::default()
            },
            files: files
                .iter()
                .map(|(n, b)| keel_registry::FileEntry {
                    name: n.clone(),
                    sha256: String::new(),
                    size: b.len() as u64,
                })
                .collect(),
        },
        files: files.clone(),
    };
    Ok(keel_model::Model::load(&version)?)
}

/// Where a running job is, for progress displays ([`TrainingJob::on_progress`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// What is training.
    pub kind: ModelKind,
    /// Epochs done (deep kinds), or 0 / 1 around a GBDT's single LightGBM call.
    pub done: u64,
    /// Epochs planned (an upper bound with early stopping), or 1.
    pub total: u64,
    /// The last epoch's training loss (deep kinds).
    pub train_loss: Option<f64>,
    /// The last epoch's validation loss (deep kinds).
    pub valid_loss: Option<f64>,
}

/// A progress callback.
type ProgressFn = std::sync::Arc<dyn Fn(&Progress) + Send + Sync>;

/// Runs a [`JobConfig`] against a registry.
#[derive(Clone)]
pub struct TrainingJob {
    config: JobConfig,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for TrainingJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainingJob")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TrainingJob {
    /// A job for `config`.
    pub fn new(config: JobConfig) -> TrainingJob {
        TrainingJob {
            config,
            progress: None,
        }
    }

    /// Calls `progress` as training moves: after every epoch of a deep kind, before and after a
    /// GBDT's training (for the CLI's progress bar; any thread).
    pub fn on_progress(mut self, progress: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(std::sync::Arc::new(progress));
        self
    }

    fn report(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(&p);
        }
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
    /// the model version when asked. With `candidates`, trains each kind in its own run on the
    /// same split and registers the best by `metric` (returned, with every run tagged).
    pub fn run(&self, registry: &Registry, data: &TrainingData) -> Result<JobOutcome> {
        if self.config.candidates.is_empty() {
            return self.run_one(registry, data);
        }
        let metric = self.config.metric.clone().unwrap_or_else(|| {
            if self.objective() == "binary" {
                "valid.auc".into()
            } else {
                "valid.logloss".into()
            }
        });
        let lower = ["loss", "rmse", "mae"].iter().any(|m| metric.ends_with(m));
        let mut outs = Vec::with_capacity(self.config.candidates.len());
        for kind in &self.config.candidates {
            let mut cfg = self.config.clone();
            cfg.kind = *kind;
            cfg.candidates.clear();
            cfg.register = false;
            let out = TrainingJob {
                config: cfg,
                progress: self.progress.clone(),
            }
            .run_one(registry, data)?;
            let score = *out.metrics.get(&metric).ok_or_else(|| {
                TrainError::Config(format!(
                    "candidate {} has no metric `{metric}` (it has {:?})",
                    kind.as_str(),
                    out.metrics.keys().collect::<Vec<_>>()
                ))
            })?;
            outs.push((score, out));
        }
        let best = (0..outs.len())
            .reduce(|a, b| {
                let better = if lower {
                    outs[b].0 < outs[a].0
                } else {
                    outs[b].0 > outs[a].0
                };
                if better {
                    b
                } else {
                    a
                }
            })
            .unwrap_or(0);
        let summary = outs
            .iter()
            .map(|(s, o)| format!("{}={s:.6} (run {})", o.kind.as_str(), o.run.id))
            .collect::<Vec<_>>()
            .join(", ");
        for (i, (_, o)) in outs.iter_mut().enumerate() {
            let mut r = registry.resume_run(&o.run.id)?;
            r.set_tag(
                "candidate",
                if i == best {
                    "selected"
                } else {
                    "not selected"
                },
            )?;
            r.set_tag("candidates", &format!("by {metric}: {summary}"))?;
            o.run = r.record().clone();
        }
        let mut out = outs.swap_remove(best).1;
        if self.config.register {
            out.version = Some(self.register(registry, &out)?);
        }
        Ok(out)
    }

    /// Trains `kind` (or `auto`'s choice) in one tracked run.
    fn run_one(&self, registry: &Registry, data: &TrainingData) -> Result<JobOutcome> {
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

        let (kind, why) = match cfg.kind {
            ModelKind::Auto => kinds::choose(frame, cfg.sequence.as_ref(), cfg.cnn.as_ref()),
            k => (k, "as configured".to_string()),
        };
        run.log_params([("kind", kind.as_str()), ("kind.reason", why.as_str())])?;
        let y = |f: &Frame| labels(f, &cfg.label);
        let (ytrain, yvalid) = (y(&train)?, y(&valid)?);
        let f32s = |y: &[f64]| y.iter().map(|v| *v as f32).collect::<Vec<f32>>();
        let (ftrain, fvalid) = (f32s(&ytrain), f32s(&yvalid));
        let mut epochs = Vec::new();
        let mut lightgbm_text = None;
        let mut pipeline = None;
        let (flavor, files, input_schema, objective) = match kind {
            ModelKind::Gbdt | ModelKind::Auto => {
                let p = cfg.transform.fit(&train)?;
                let features: Vec<String> = p.output_names().to_vec();
                let (mtrain, mvalid) = (p.transform(&train)?, p.transform(&valid)?);
                let xtrain = with_label(&p.output_frame(&mtrain)?, &ytrain, &cfg.label)?;
                let xvalid = with_label(&p.output_frame(&mvalid)?, &yvalid, &cfg.label)?;
                let mut lgbm = cfg.params.clone();
                lgbm.entry("objective").or_insert("binary".into());
                let step = |done| Progress {
                    kind,
                    done,
                    total: 1,
                    train_loss: None,
                    valid_loss: None,
                };
                self.report(step(0));
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
                let files = BTreeMap::from([
                    (bundle::MODEL.to_string(), trained.model.to_bytes()?),
                    (
                        "model.txt".to_string(),
                        trained.lightgbm_text.as_bytes().to_vec(),
                    ),
                    (bundle::PIPELINE.to_string(), p.to_bytes()?),
                ]);
                self.report(step(1));
                run.log_artifact("model.txt", trained.lightgbm_text.as_bytes())?;
                lightgbm_text = Some(trained.lightgbm_text);
                let schema = p.input_schema().clone();
                pipeline = Some(p);
                (Flavor::Gbdt, files, schema, self.objective())
            }
            ModelKind::Mlp => {
                let job = cfg.mlp.as_ref().ok_or_else(|| {
                    TrainError::Config("kind = \"mlp\" needs an [mlp] section".into())
                })?;
                let p = cfg.transform.fit(&train)?;
                let ds = |f: &Frame, y: &[f64]| -> Result<keel_deep::Dataset> {
                    let x = p.transform(f)?;
                    Ok(keel_deep::Dataset {
                        numeric: x.iter().map(|v| *v as f32).collect(),
                        codes: Vec::new(),
                        targets: y.iter().map(|v| *v as f32).collect(),
                        rows: f.nrows(),
                    })
                };
                let (dtrain, dvalid) = (ds(&train, &ytrain)?, ds(&valid, &yvalid)?);
                let (m, report) = keel_deep::train(
                    keel_deep::MlpConfig {
                        numeric: p.width(),
                        embeddings: Vec::new(),
                        hidden: job.hidden.clone(),
                        layer_norm: job.layer_norm,
                        residual: job.residual,
                        dropout: job.dropout,
                        head: job.head,
                    },
                    &cfg.train.config(cfg.seed),
                    &dtrain,
                    (dvalid.rows > 0).then_some(&dvalid),
                    &mut |e| self.epoch_done(kind, e),
                )?;
                epochs = report.epochs;
                let mut files = deep_files(m.to_parts(BTreeMap::new())?);
                files.insert(bundle::PIPELINE.to_string(), p.to_bytes()?);
                let schema = p.input_schema().clone();
                pipeline = Some(p);
                (
                    Flavor::Mlp,
                    files,
                    schema,
                    kinds::objective_of(job.head).to_string(),
                )
            }
            ModelKind::Sequence => {
                let job = cfg.sequence.as_ref().ok_or_else(|| {
                    TrainError::Config("kind = \"sequence\" needs a [sequence] section".into())
                })?;
                let texts = |f: &Frame| -> Result<Vec<String>> {
                    let c = f.column(&job.column)?;
                    Ok((0..f.nrows())
                        .map(|i| match c.get(i) {
                            keel_core::ValueRef::Str(s) => s.to_string(),
                            _ => String::new(),
                        })
                        .collect())
                };
                let (ttrain, tvalid) = (texts(&train)?, texts(&valid)?);
                let (m, report) = keel_deep::train_text(
                    job.config.clone(),
                    &cfg.train.config(cfg.seed),
                    keel_deep::TextData {
                        texts: &ttrain,
                        targets: &ftrain,
                    },
                    (!tvalid.is_empty()).then_some(keel_deep::TextData {
                        texts: &tvalid,
                        targets: &fvalid,
                    }),
                    &mut |e| self.epoch_done(kind, e),
                )?;
                epochs = report.epochs;
                (
                    Flavor::Sequence,
                    deep_files(m.to_parts(BTreeMap::new())?),
                    one_column(&job.column, keel_core::DType::String)?,
                    kinds::objective_of(job.config.head).to_string(),
                )
            }
            ModelKind::Cnn => {
                let job = cfg.cnn.as_ref().ok_or_else(|| {
                    TrainError::Config("kind = \"cnn\" needs a [cnn] section".into())
                })?;
                let c = &job.config;
                let len = c.channels * c.height * c.width;
                let (ptrain, pvalid) = (
                    keel_model::tensor_columns(&train, &job.prefix, len)?,
                    keel_model::tensor_columns(&valid, &job.prefix, len)?,
                );
                let (m, report) = keel_deep::train_images(
                    c.clone(),
                    &cfg.train.config(cfg.seed),
                    keel_deep::ImageData {
                        pixels: &ptrain,
                        targets: &ftrain,
                    },
                    (!fvalid.is_empty()).then_some(keel_deep::ImageData {
                        pixels: &pvalid,
                        targets: &fvalid,
                    }),
                    &mut |e| self.epoch_done(kind, e),
                )?;
                epochs = report.epochs;
                (
                    Flavor::Cnn,
                    deep_files(m.to_parts(BTreeMap::new())?),
                    one_column(&job.prefix, keel_core::DType::F32)?,
                    kinds::objective_of(c.head).to_string(),
                )
            }
        };
        for e in &epochs {
            let mut m = vec![("epoch.train.loss", e.train_loss)];
            if let Some(v) = e.valid_loss {
                m.push(("epoch.valid.loss", v));
            }
            if let Some(v) = e.valid_accuracy {
                m.push(("epoch.valid.accuracy", v));
            }
            run.log_metrics(m, e.epoch as u64)?;
        }
        if let Some(p) = &pipeline {
            run.log_artifact("pipeline.bin", &p.to_bytes()?)?;
        }
        // Evaluation and the reference profile score through the model seam, as serving does.
        let model = seam_model(&run.record().id, flavor.as_str(), &files, &input_schema)?;
        let k = model.outputs().max(1);
        let mut scores = BTreeMap::new();
        for (name, f) in [("valid", &valid), ("test", &test)] {
            if f.nrows() == 0 {
                continue;
            }
            let p = model.score_frame(f)?;
            for (key, v) in evaluate(&objective, &y(f)?, &p, k)? {
                scores.insert(format!("{name}.{key}"), v);
            }
        }
        run.log_metrics(scores.iter().map(|(k, v)| (k.as_str(), *v)), 0)?;
        let preds = model.score_frame(&train)?;
        let reference = reference_profile(pipeline.as_ref(), &preds, k, &train, cfg.seed)?;
        Ok(JobOutcome {
            run: run.record().clone(),
            version: None,
            metrics: scores,
            data_hash,
            kind,
            flavor: flavor.as_str().to_string(),
            files,
            input_schema,
            pipeline,
            reference,
            lightgbm_text,
        })
    }

    fn epoch_done(&self, kind: ModelKind, e: &keel_deep::EpochReport) {
        self.report(Progress {
            kind,
            done: e.epoch as u64,
            total: self.config.train.epochs as u64,
            train_loss: Some(e.train_loss),
            valid_loss: e.valid_loss,
        });
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
        let mut files = out.files.clone();
        files.insert(
            bundle::REFERENCE.to_string(),
            keel_core::envelope::encode(&out.reference).map_err(keel_core::Error::from)?,
        );
        let bundle = Bundle {
            files,
            meta: ModelMeta {
                flavor: out.flavor.clone(),
                feature_service: self.config.feature_service.clone(),
                input_schema: Some(out.input_schema.clone()),
                eval,
                params: run.params.clone(),
                seed: Some(self.config.seed),
                data_version: Some(data_version),
                description: format!(
                    "{} {} on {}",
                    out.kind.as_str(),
                    self.objective(),
                    self.config.label
                ),
            },
        };
        Ok(registry.register(&self.config.model, &run.id, bundle)?)
    }
}

/// A deep model's bundle files: its manifest and weights.
fn deep_files((manifest, weights): (Vec<u8>, Vec<u8>)) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        (bundle::MODEL.to_string(), manifest),
        (bundle::WEIGHTS.to_string(), weights),
    ])
}

/// The input schema of a model reading one column.
fn one_column(name: &str, dtype: keel_core::DType) -> Result<Schema> {
    Ok(Schema::new(vec![Field::required(name, dtype)])?)
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
    pipeline: Option<&FittedPipeline>,
    p: &[f64],
    k: usize,
    train: &Frame,
    seed: u64,
) -> Result<keel_monitor::Profile> {
    use keel_monitor::{default_kind, ColumnKind, Profile, DEFAULT_SAMPLE, PREDICTION_COLUMN};
    let fields = pipeline.map_or(&[][..], |p| p.input_schema().fields());
    let mut cols: Vec<(String, ColumnKind)> = fields
        .iter()
        .map(|f| (f.name.clone(), default_kind(f.dtype)))
        .collect();
    cols.push((PREDICTION_COLUMN.to_string(), ColumnKind::Numerical));
    let mut profile = Profile::new(&cols, DEFAULT_SAMPLE, seed);
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
