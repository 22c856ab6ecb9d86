//! `Deployment`: champion answers, a challenger shadows or takes a canary slice, promotion only
//! through gates (or a recorded override), atomic rollback, state in the registry's aliases.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use hdrhistogram::Histogram;
use keel_core::{Clock, SystemClock, ValueRef};
use keel_monitor::PredictionRecord;
use keel_registry::Registry;
use keel_store::{FeatureRef, Status, Store, Value};
use serde::{Deserialize, Serialize};

use crate::metrics::Family;
use crate::{Result, ServeError};
use keel_model::ServedModel;

/// Registry alias of the model answering traffic.
pub const CHAMPION: &str = "champion";
/// Registry alias of a challenger in shadow.
pub const SHADOW: &str = "shadow";
/// Registry alias of a challenger taking a canary slice.
pub const CANARY: &str = "canary";

/// A request's id: the caller's string, shared (not copied) by the rows of a batch, each row
/// being `{id}-{row}`. Labels join on its text ([`RequestId`]'s `Display`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestId {
    base: Arc<str>,
    row: Option<u32>,
}

impl RequestId {
    /// Row `row` of the batched request `base`: `{base}-{row}`.
    pub fn row(base: Arc<str>, row: u32) -> RequestId {
        RequestId {
            base,
            row: Some(row),
        }
    }

    /// Whether no id was given.
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.row.is_none()
    }

    /// FNV-1a of the id's text, computed without building it (canary routing, log sampling).
    pub fn fnv1a(&self) -> u64 {
        match self.row {
            None => keel_core::fnv1a(self.base.as_bytes()),
            Some(r) => {
                let mut digits = [0u8; 10];
                let mut n = r;
                let mut at = digits.len();
                loop {
                    at -= 1;
                    digits[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                keel_core::fnv1a_parts([self.base.as_bytes(), b"-", &digits[at..]])
            }
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row {
            None => f.write_str(&self.base),
            Some(r) => write!(f, "{}-{r}", self.base),
        }
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> RequestId {
        RequestId {
            base: s.into(),
            row: None,
        }
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> RequestId {
        RequestId {
            base: s.into(),
            row: None,
        }
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        match self.row {
            None => &*self.base == *other,
            Some(r) => other
                .strip_prefix(&*self.base)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| {
                    n.bytes().all(|b| b.is_ascii_digit())
                        && (n == "0" || !n.starts_with('0'))
                        && n.parse::<u32>().ok() == Some(r)
                }),
        }
    }
}

/// One prediction request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Caller's id (labels join on it); generated when empty.
    pub request_id: RequestId,
    /// Entity key for the feature-service lookup (empty: no lookup).
    pub entity: Vec<Value>,
    /// Request-time features by name (they win over stored ones).
    pub features: Vec<(String, Value)>,
    /// Canary routing key (sticky); the request id when absent.
    pub routing_key: Option<String>,
}

/// Which model answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// The champion.
    Champion,
    /// The challenger, on the canary slice.
    Canary,
    /// The challenger in shadow (never answers; metrics only).
    Shadow,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Champion => "champion",
            Route::Canary => "canary",
            Route::Shadow => "shadow",
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request id.
    pub request_id: RequestId,
    /// Model outputs (probability, class probabilities or value).
    pub scores: Vec<f64>,
    /// Registry version that answered.
    pub model_version: u32,
    /// Route taken.
    pub route: Route,
    /// Age of the oldest stored feature used, ms (`None` without a store lookup).
    pub freshness_ms: Option<i64>,
    /// Stored features the model read as missing: no row for the entity, or the row is older
    /// than the view's TTL (empty without a store lookup or when all were present).
    pub missing_features: Vec<MissingFeature>,
}

/// A stored feature a request was scored without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFeature {
    /// The model input (feature name).
    pub name: String,
    /// [`Status::NotFound`] or [`Status::Expired`].
    pub status: Status,
}

/// What a deployment does with a request whose entity has no stored row at all (every stored
/// feature the model reads is [`Status::NotFound`]).
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

struct State {
    champion: ServedModel,
    challenger: Option<(ServedModel, Stage)>,
}

struct Hist(Mutex<Histogram<u64>>);

impl Hist {
    fn new() -> Hist {
        Hist(Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds"),
        ))
    }
    fn record(&self, v: u64) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = h.record(v.clamp(1, 60_000_000_000));
    }
    fn quantile(&self, q: f64) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .value_at_quantile(q)
    }
    fn len(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    /// `(count, mean)` of the recorded values.
    fn count_mean(&self) -> (u64, f64) {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (h.len(), h.mean())
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
}

/// Shadow comparison statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ShadowStats {
    /// Requests scored by both.
    pub compared: u64,
    /// Of which agreed.
    pub agreed: u64,
    /// Mirrored requests dropped because the queue was full.
    pub dropped: u64,
    /// Challenger errors in shadow.
    pub errors: u64,
    /// Mean absolute score difference.
    pub mean_abs_diff: f64,
    /// p99 of the absolute score difference.
    pub p99_abs_diff: f64,
    /// Challenger p99 latency in shadow, microseconds.
    pub p99_us: f64,
}

struct Shadow {
    compared: AtomicU64,
    agreed: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    diff_sum_micro: AtomicU64,
    diff: Hist,
    latency: Hist,
}

impl Shadow {
    fn new() -> Shadow {
        Shadow {
            compared: AtomicU64::new(0),
            agreed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            diff_sum_micro: AtomicU64::new(0),
            diff: Hist::new(),
            latency: Hist::new(),
        }
    }
}

struct ShadowJob {
    model: ServedModel,
    inputs: Vec<Value>,
    champion: Vec<f64>,
}

type Key = (u32, Route);

/// A scored request before routing metadata is attached.
struct Answer {
    inputs: Vec<Value>,
    scores: Vec<f64>,
    freshness_ms: Option<i64>,
    missing: Vec<MissingFeature>,
}

/// A model deployment: see the module docs. `Send + Sync`; share it across request threads.
pub struct Deployment {
    name: String,
    registry: Registry,
    store: Option<(Arc<Store>, String)>,
    clock: Arc<dyn Clock>,
    cfg: DeploymentConfig,
    state: RwLock<Arc<State>>,
    latency: RwLock<BTreeMap<Key, Arc<(Hist, Counters)>>>,
    shadow: Arc<Shadow>,
    /// The shadow worker's queue, started on first use.
    shadow_tx: OnceLock<SyncSender<ShadowJob>>,
    log: Mutex<Log>,
    next_id: AtomicU64,
    /// Stored features scored as missing (not found or expired), all requests.
    missing_features: AtomicU64,
    /// Requests whose entity had no stored row at all (refused or imputed per `on_missing`).
    unknown_entities: AtomicU64,
    /// Pipeline input -> service feature positions, per (version, resolved service).
    input_maps: RwLock<Vec<InputMapEntry>>,
}

/// The sampled prediction log: bounded in records and in bytes.
#[derive(Default)]
struct Log {
    records: VecDeque<(PredictionRecord, usize)>,
    bytes: usize,
}

impl Log {
    fn push(&mut self, rec: PredictionRecord, max_records: usize, max_bytes: usize) {
        let size = record_bytes(&rec);
        while !self.records.is_empty()
            && (self.records.len() >= max_records || self.bytes + size > max_bytes)
        {
            if let Some((_, n)) = self.records.pop_front() {
                self.bytes -= n;
            }
        }
        if size <= max_bytes {
            self.bytes += size;
            self.records.push_back((rec, size));
        }
    }
}

/// Estimated heap footprint of a logged record.
fn record_bytes(r: &PredictionRecord) -> usize {
    let value = |v: &Value| match v {
        Value::Str(s) => s.capacity(),
        _ => 0,
    };
    std::mem::size_of::<PredictionRecord>()
        + r.request_id.capacity()
        + r.route.capacity()
        + r.inputs
            .iter()
            .map(|(n, v)| std::mem::size_of::<(String, Value)>() + n.capacity() + value(v))
            .sum::<usize>()
}

type InputMap = Arc<[Option<usize>]>;
/// `(raw inputs, freshness ms, missing stored features, entity unknown)`.
type Inputs = (Vec<Value>, Option<i64>, Vec<MissingFeature>, bool);
/// `(model version, the resolved service's refs, the map)`.
type InputMapEntry = (u32, Arc<[FeatureRef]>, InputMap);

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// Opens the deployment of `name` as the registry's aliases describe it (`champion`
    /// required; `shadow` or `canary` when set), so a restarted service comes back as it was.
    /// With `store = Some((store, service))`, requests look their entity up in that feature
    /// service.
    pub fn from_registry(
        registry: Registry,
        name: &str,
        store: Option<(Arc<Store>, String)>,
        cfg: DeploymentConfig,
    ) -> Result<Deployment> {
        cfg.validate()?;
        let champion = ServedModel::from_bundle(&registry.load_alias(name, CHAMPION)?)?;
        let challenger = if let Some(v) = registry.alias(name, CANARY)? {
            Some((
                ServedModel::from_bundle(&registry.load(name, v)?)?,
                Stage::Canary {
                    percent: cfg.canary_percent,
                },
            ))
        } else if let Some(v) = registry.alias(name, SHADOW)? {
            Some((
                ServedModel::from_bundle(&registry.load(name, v)?)?,
                Stage::Shadow,
            ))
        } else {
            None
        };
        Ok(Deployment {
            name: name.to_string(),
            registry,
            store,
            clock: Arc::new(SystemClock),
            cfg,
            state: RwLock::new(Arc::new(State {
                champion,
                challenger,
            })),
            latency: RwLock::new(BTreeMap::new()),
            shadow: Arc::new(Shadow::new()),
            shadow_tx: OnceLock::new(),
            log: Mutex::new(Log::default()),
            next_id: AtomicU64::new(0),
            missing_features: AtomicU64::new(0),
            unknown_entities: AtomicU64::new(0),
            input_maps: RwLock::new(Vec::new()),
        })
    }

    /// The model's registry name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The champion alone: no canary routing, no shadow mirror, no log (batch jobs).
    pub(crate) fn predict_champion(&self, req: Request) -> Result<Response> {
        let state = self.state();
        let model = &state.champion;
        let a = self.answer(model, &req)?;
        Ok(Response {
            request_id: req.request_id,
            scores: a.scores,
            model_version: model.version,
            route: Route::Champion,
            freshness_ms: a.freshness_ms,
            missing_features: a.missing,
        })
    }

    /// Assembles `req`'s raw inputs for `model` and scores them. The one scoring path of online
    /// and batch requests.
    fn answer(&self, model: &ServedModel, req: &Request) -> Result<Answer> {
        let (inputs, freshness_ms, missing, unknown) = self.inputs(model, req)?;
        if unknown {
            self.unknown_entities.fetch_add(1, Ordering::Relaxed);
            if self.cfg.on_missing == OnMissing::Error {
                return Err(ServeError::UnknownEntity {
                    model: self.name.clone(),
                    entity: req
                        .entity
                        .iter()
                        .map(|v| format!("{v:?}").chars().take(64).collect::<String>())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        self.missing_features
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        let refs: Vec<ValueRef<'_>> = inputs.iter().map(Value::as_ref).collect();
        let scores = model.score(&refs)?;
        Ok(Answer {
            inputs,
            scores,
            freshness_ms,
            missing,
        })
    }

    /// Replaces the clock (freshness and log timestamps).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Deployment {
        self.clock = clock;
        self
    }

    fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn swap(&self, s: State) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }

    /// The versions serving: `(champion, challenger and its stage)`.
    pub fn versions(&self) -> (u32, Option<(u32, Stage)>) {
        let s = self.state();
        (
            s.champion.version,
            s.challenger.as_ref().map(|(m, st)| (m.version, *st)),
        )
    }

    /// Assembles the raw inputs of `model`'s pipeline for a request: request-time features
    /// first, then the feature service's stored values. Also returns the freshness, the stored
    /// features read as missing, and whether the entity has no stored row at all (every
    /// stored feature read is `NotFound`).
    fn inputs(&self, model: &ServedModel, req: &Request) -> Result<Inputs> {
        let fields = model.pipeline.input_schema().fields();
        let stored = match (&self.store, req.entity.is_empty()) {
            (Some((store, service)), false) => {
                Some(store.get_online(service, std::slice::from_ref(&req.entity))?)
            }
            _ => None,
        };
        let row = stored.as_ref().and_then(|r| r.values.first());
        let map = stored.as_ref().map(|r| self.input_map(model, &r.features));
        let now = self.clock.now_ms();
        let mut oldest: Option<i64> = None;
        let mut missing = Vec::new();
        let (mut read, mut not_found) = (0usize, 0usize);
        let mut out = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            if let Some((_, v)) = req.features.iter().find(|(n, _)| *n == f.name) {
                out.push(v.clone());
                continue;
            }
            match (row, map.as_ref().and_then(|m| m[i])) {
                (Some(row), Some(j)) => {
                    let fv = &row[j];
                    read += 1;
                    if fv.status == Status::Present {
                        if let Some(e) = fv.event_ms {
                            oldest = Some(oldest.map_or(e, |o: i64| o.min(e)));
                        }
                    } else {
                        not_found += usize::from(fv.status == Status::NotFound);
                        missing.push(MissingFeature {
                            name: f.name.clone(),
                            status: fv.status,
                        });
                    }
                    out.push(fv.value.clone());
                }
                _ => out.push(Value::Null),
            }
        }
        let freshness = row
            .filter(|r| !r.is_empty())
            .map(|_| oldest.map_or(0, |o| now - o));
        let unknown = read > 0 && not_found == read;
        Ok((out, freshness, missing, unknown))
    }

    /// For each pipeline input of `model`, its position among the feature service's features,
    /// matched by name once per (version, resolved service) instead of on every request.
    fn input_map(&self, model: &ServedModel, features: &Arc<[FeatureRef]>) -> InputMap {
        if let Some((_, _, m)) = self
            .input_maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(v, f, _)| *v == model.version && Arc::ptr_eq(f, features))
        {
            return Arc::clone(m);
        }
        let m: InputMap = model
            .pipeline
            .input_schema()
            .fields()
            .iter()
            .map(|f| features.iter().position(|r| r.feature == f.name))
            .collect();
        let mut maps = self.input_maps.write().unwrap_or_else(|p| p.into_inner());
        // A re-applied service has a new resolution: maps of the old one are dropped.
        maps.retain(|(_, f, _)| Arc::ptr_eq(f, features));
        maps.truncate(16);
        maps.push((model.version, Arc::clone(features), Arc::clone(&m)));
        m
    }

    fn metrics_for(&self, key: Key) -> Arc<(Hist, Counters)> {
        if let Some(m) = self
            .latency
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return m.clone();
        }
        self.latency
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new((Hist::new(), Counters::default())))
            .clone()
    }

    /// Answers a request: champion (or the challenger on the canary slice); mirrors it to a
    /// shadow challenger off the critical path; logs a sample.
    pub fn predict(&self, mut req: Request) -> Result<Response> {
        let t0 = Instant::now();
        self.assign_id(&mut req);
        let state = self.state();
        let route = match &state.challenger {
            Some((_, Stage::Canary { percent })) => {
                let hash = match &req.routing_key {
                    Some(k) => keel_core::fnv1a(k.as_bytes()),
                    None => req.request_id.fnv1a(),
                };
                if (hash % 10_000) as f64 / 100.0 < *percent {
                    Route::Canary
                } else {
                    Route::Champion
                }
            }
            _ => Route::Champion,
        };
        let model = match (route, &state.challenger) {
            (Route::Canary, Some((m, _))) => m,
            _ => &state.champion,
        };
        let shadow = match &state.challenger {
            Some((challenger, Stage::Shadow)) => Some(challenger),
            _ => None,
        };
        self.respond(t0, model, route, shadow, req)
    }

    /// Answers with registered version `version` alone, whatever its role (champion, shadow or
    /// canary challenger): no canary routing, no shadow mirror. The route reports the
    /// version's role. This is V2's `/versions/{v}/infer`.
    pub fn predict_version(&self, version: u32, mut req: Request) -> Result<Response> {
        let t0 = Instant::now();
        self.assign_id(&mut req);
        let state = self.state();
        let (model, route) = self.role(&state, version)?;
        self.respond(t0, model, route, None, req)
    }

    /// The served model of `version` (`None`: the champion) and its role.
    pub fn model(&self, version: Option<u32>) -> Result<(ServedModel, Route)> {
        let state = self.state();
        let (m, r) = self.role(&state, version.unwrap_or(state.champion.version))?;
        Ok((m.clone(), r))
    }

    /// The feature service's key (empty without a store): the join keys of every entity its
    /// views are keyed by, what a request must name for the lookup.
    pub fn entity_keys(&self) -> Result<Vec<keel_core::Field>> {
        let Some((store, service)) = &self.store else {
            return Ok(Vec::new());
        };
        Ok(store.service_keys(service)?)
    }

    fn role<'s>(&self, state: &'s State, version: u32) -> Result<(&'s ServedModel, Route)> {
        if state.champion.version == version {
            return Ok((&state.champion, Route::Champion));
        }
        match &state.challenger {
            Some((m, Stage::Shadow)) if m.version == version => Ok((m, Route::Shadow)),
            Some((m, Stage::Canary { .. })) if m.version == version => Ok((m, Route::Canary)),
            _ => Err(ServeError::NotServing {
                model: self.name.clone(),
                version,
            }),
        }
    }

    fn assign_id(&self, req: &mut Request) {
        if req.request_id.is_empty() {
            req.request_id = RequestId::from(format!(
                "{}-{}",
                self.name,
                self.next_id.fetch_add(1, Ordering::Relaxed)
            ));
        }
    }

    /// Scores `req` with `model` on `route`: metrics, optional shadow mirror, sampled log.
    fn respond(
        &self,
        t0: Instant,
        model: &ServedModel,
        route: Route,
        shadow: Option<&ServedModel>,
        req: Request,
    ) -> Result<Response> {
        let metrics = self.metrics_for((model.version, route));
        metrics.1.requests.fetch_add(1, Ordering::Relaxed);
        let Answer {
            inputs,
            scores,
            freshness_ms,
            missing,
        } = match self.answer(model, &req) {
            Ok(r) => r,
            Err(e) => {
                metrics.1.errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        metrics.0.record(t0.elapsed().as_nanos() as u64);
        if let Some(challenger) = shadow {
            self.mirror(ShadowJob {
                model: challenger.clone(),
                inputs: inputs.clone(),
                champion: scores.clone(),
            });
        }
        if self.cfg.log_sample_rate > 0.0
            && (req.request_id.fnv1a() % 1_000_000) as f64 / 1e6 < self.cfg.log_sample_rate
        {
            let names = model.pipeline.input_schema().names();
            let rec = PredictionRecord {
                // The log is sampled and bounded in bytes: the row's id text is built here.
                request_id: req.request_id.to_string(),
                at_ms: self.clock.now_ms(),
                model_version: model.version,
                route: route.as_str().into(),
                inputs: names
                    .zip(&inputs)
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .collect(),
                score: scores.first().copied().unwrap_or(f64::NAN),
            };
            self.log.lock().unwrap_or_else(|p| p.into_inner()).push(
                rec,
                self.cfg.log_capacity.max(1),
                self.cfg.log_max_bytes,
            );
        }
        Ok(Response {
            request_id: req.request_id,
            scores,
            model_version: model.version,
            route,
            freshness_ms,
            missing_features: missing,
        })
    }

    fn mirror(&self, job: ShadowJob) {
        // No lock per mirrored request: the queue is created once, then only `try_send`.
        let tx = self.shadow_tx.get_or_init(|| {
            let (s, r) = sync_channel::<ShadowJob>(self.cfg.shadow_queue.max(1));
            let stats = self.shadow.clone();
            let tol = self.cfg.agreement_tolerance;
            std::thread::Builder::new()
                .name("keel-shadow".into())
                .spawn(move || {
                    lower_priority();
                    // Under load the worker polls (1 ms naps) instead of blocking, so a
                    // mirrored request never pays for waking it: `try_send` stays a queue
                    // push. After 100 ms without work it blocks until the next job.
                    let mut idle = 0u32;
                    loop {
                        let job = match r.try_recv() {
                            Ok(job) => {
                                idle = 0;
                                job
                            }
                            Err(TryRecvError::Empty) if idle < 100 => {
                                idle += 1;
                                std::thread::sleep(std::time::Duration::from_millis(1));
                                continue;
                            }
                            Err(TryRecvError::Empty) => match r.recv() {
                                Ok(job) => {
                                    idle = 0;
                                    job
                                }
                                Err(_) => break,
                            },
                            Err(TryRecvError::Disconnected) => break,
                        };
                        let t = Instant::now();
                        let refs: Vec<ValueRef<'_>> =
                            job.inputs.iter().map(Value::as_ref).collect();
                        match job.model.score(&refs) {
                            Ok(s) => {
                                stats.latency.record(t.elapsed().as_nanos() as u64);
                                let d = s
                                    .iter()
                                    .zip(&job.champion)
                                    .map(|(a, b)| (a - b).abs())
                                    .fold(0.0, f64::max);
                                let same_side =
                                    s.len() == 1 && (s[0] >= 0.5) == (job.champion[0] >= 0.5);
                                stats.compared.fetch_add(1, Ordering::Relaxed);
                                if d <= tol || same_side {
                                    stats.agreed.fetch_add(1, Ordering::Relaxed);
                                }
                                let micro = (d * 1e6).round().min(6e10) as u64;
                                stats.diff_sum_micro.fetch_add(micro, Ordering::Relaxed);
                                stats.diff.record(micro.max(1));
                            }
                            Err(_) => {
                                stats.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
                .ok();
            s
        });
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shadow.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Shadow statistics so far.
    pub fn shadow_stats(&self) -> ShadowStats {
        let s = &self.shadow;
        let compared = s.compared.load(Ordering::Relaxed);
        ShadowStats {
            compared,
            agreed: s.agreed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            mean_abs_diff: if compared == 0 {
                0.0
            } else {
                s.diff_sum_micro.load(Ordering::Relaxed) as f64 / 1e6 / compared as f64
            },
            p99_abs_diff: if s.diff.len() == 0 {
                0.0
            } else {
                s.diff.quantile(0.99) as f64 / 1e6
            },
            p99_us: s.latency.quantile(0.99) as f64 / 1e3,
        }
    }

    /// `(requests, errors, p50 us, p99 us)` of a version on a route.
    pub fn route_stats(&self, version: u32, route: Route) -> (u64, u64, f64, f64) {
        let m = self.metrics_for((version, route));
        (
            m.1.requests.load(Ordering::Relaxed),
            m.1.errors.load(Ordering::Relaxed),
            m.0.quantile(0.5) as f64 / 1e3,
            m.0.quantile(0.99) as f64 / 1e3,
        )
    }

    /// Takes the logged predictions (oldest first), e.g. for a `keel_monitor::Monitor`.
    pub fn drain_log(&self) -> Vec<PredictionRecord> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.bytes = 0;
        log.records.drain(..).map(|(r, _)| r).collect()
    }

    /// Prometheus text exposition (format 0.0.4, with HELP and TYPE) of this deployment's
    /// counters, latency summaries per version and route, missing-feature counts and shadow
    /// statistics.
    pub fn prometheus(&self) -> String {
        crate::metrics::render(self.metric_families())
    }

    pub(crate) fn metric_families(&self) -> Vec<Family> {
        let mut requests = Family::new(
            "keel_requests_total",
            "counter",
            "Requests answered, by model version and route.",
        );
        let mut errors = Family::new(
            "keel_errors_total",
            "counter",
            "Requests that failed, by model version and route.",
        );
        let mut latency = Family::new(
            "keel_latency_seconds",
            "summary",
            "Time to answer a request in process (lookup, transforms, model).",
        );
        let map = self.latency.read().unwrap_or_else(|p| p.into_inner());
        for ((v, r), m) in map.iter() {
            let l = format!(
                "model=\"{}\",version=\"{v}\",route=\"{}\"",
                self.name,
                r.as_str()
            );
            requests.samples.push(format!(
                "keel_requests_total{{{l}}} {}",
                m.1.requests.load(Ordering::Relaxed)
            ));
            errors.samples.push(format!(
                "keel_errors_total{{{l}}} {}",
                m.1.errors.load(Ordering::Relaxed)
            ));
            for q in [0.5, 0.99, 0.999] {
                latency.samples.push(format!(
                    "keel_latency_seconds{{{l},quantile=\"{q}\"}} {:e}",
                    m.0.quantile(q) as f64 / 1e9
                ));
            }
            let (count, mean) = m.0.count_mean();
            latency.samples.push(format!(
                "keel_latency_seconds_sum{{{l}}} {:e}",
                mean * count as f64 / 1e9
            ));
            latency
                .samples
                .push(format!("keel_latency_seconds_count{{{l}}} {count}"));
        }
        let model = |name: &'static str, kind: &'static str, help: &'static str, v: String| {
            let mut f = Family::new(name, kind, help);
            f.samples
                .push(format!("{name}{{model=\"{}\"}} {v}", self.name));
            f
        };
        let sh = self.shadow_stats();
        let agreement = if sh.compared == 0 {
            0.0
        } else {
            sh.agreed as f64 / sh.compared as f64
        };
        vec![
            requests,
            errors,
            latency,
            model(
                "keel_missing_features_total",
                "counter",
                "Stored features scored as missing (not found or expired).",
                self.missing_features.load(Ordering::Relaxed).to_string(),
            ),
            model(
                "keel_unknown_entities_total",
                "counter",
                "Requests whose entity had no stored row at all (refused or imputed per on_missing).",
                self.unknown_entities.load(Ordering::Relaxed).to_string(),
            ),
            model(
                "keel_shadow_compared_total",
                "counter",
                "Mirrored requests scored by both champion and shadow challenger.",
                sh.compared.to_string(),
            ),
            model(
                "keel_shadow_dropped_total",
                "counter",
                "Mirrored requests dropped because the shadow queue was full.",
                sh.dropped.to_string(),
            ),
            model(
                "keel_shadow_agreement",
                "gauge",
                "Share of compared requests on which champion and shadow agree.",
                agreement.to_string(),
            ),
        ]
    }

    /// Puts registered version `version` in shadow beside the champion (alias `shadow`).
    pub fn start_shadow(&self, version: u32, reason: &str) -> Result<()> {
        let m = ServedModel::from_bundle(&self.registry.load(&self.name, version)?)?;
        self.registry
            .set_alias(&self.name, SHADOW, version, reason)?;
        let s = self.state();
        self.swap(State {
            champion: s.champion.clone(),
            challenger: Some((m, Stage::Shadow)),
        });
        Ok(())
    }

    /// The configuration this deployment runs with (its gates included).
    pub fn config(&self) -> &DeploymentConfig {
        &self.cfg
    }

    /// The checks of the configured [`ShadowGate`] that the shadow evidence fails (empty: it
    /// passes), and the challenger in shadow.
    fn shadow_checks(&self, s: &State) -> Result<(ServedModel, Vec<String>)> {
        let Some((m, Stage::Shadow)) = &s.challenger else {
            return Err(ServeError::Stage("no challenger in shadow".into()));
        };
        let gate = &self.cfg.shadow_gate;
        let st = self.shadow_stats();
        let agreement = if st.compared == 0 {
            0.0
        } else {
            st.agreed as f64 / st.compared as f64
        };
        let mut failed = Vec::new();
        if st.compared < gate.min_samples {
            failed.push(format!("{} compared < {}", st.compared, gate.min_samples));
        }
        if agreement < gate.min_agreement {
            failed.push(format!("agreement {agreement:.4} < {}", gate.min_agreement));
        }
        if st.mean_abs_diff > gate.max_mean_diff {
            failed.push(format!(
                "mean |diff| {:.4} > {}",
                st.mean_abs_diff, gate.max_mean_diff
            ));
        }
        Ok((m.clone(), failed))
    }

    /// The checks of the configured [`CanaryGate`] that the canary evidence fails, and the
    /// challenger on canary.
    fn canary_checks(
        &self,
        s: &State,
        labels: Option<LabelEvidence>,
    ) -> Result<(ServedModel, Vec<String>)> {
        let Some((m, Stage::Canary { .. })) = &s.challenger else {
            return Err(ServeError::Stage("no challenger on canary".into()));
        };
        let gate = &self.cfg.canary_gate;
        let (n, errors, _, p99) = self.route_stats(m.version, Route::Canary);
        let mut failed = Vec::new();
        if n < gate.min_samples {
            failed.push(format!("{n} canary requests < {}", gate.min_samples));
        }
        if p99 > gate.max_p99_us {
            failed.push(format!("canary p99 {p99:.1} us > {}", gate.max_p99_us));
        }
        let rate = if n == 0 {
            0.0
        } else {
            errors as f64 / n as f64
        };
        if rate > gate.max_error_rate {
            failed.push(format!("error rate {rate:.4} > {}", gate.max_error_rate));
        }
        match labels {
            Some(l) if !(l.champion.is_finite() && l.challenger.is_finite()) => {
                failed.push("label evidence is not finite".into())
            }
            Some(l) if l.challenger < l.champion - gate.metric_margin => failed.push(format!(
                "challenger metric {:.4} worse than champion {:.4} by more than {}",
                l.challenger, l.champion, gate.metric_margin
            )),
            None if gate.require_labels => failed.push("no label evidence yet".into()),
            _ => {}
        }
        Ok((m.clone(), failed))
    }

    /// Shadow -> canary through the configured [`ShadowGate`]
    /// ([`DeploymentConfig::shadow_gate`]); [`ServeError::GateFailed`] names the failed
    /// checks.
    pub fn promote_to_canary(&self) -> Result<()> {
        let s = self.state();
        let (m, failed) = self.shadow_checks(&s)?;
        if !failed.is_empty() {
            return Err(ServeError::GateFailed(failed.join("; ")));
        }
        self.move_to_canary(&s, m, "shadow -> canary: gate passed")
    }

    /// Shadow -> canary whatever the gate says: an explicit decision with a reason, recorded
    /// in the audit as `OVERRIDE` with the checks that failed.
    pub fn override_to_canary(&self, reason: &str) -> Result<()> {
        let s = self.state();
        let (m, failed) = self.shadow_checks(&s)?;
        let audit = override_audit("shadow -> canary", reason, &failed)?;
        self.move_to_canary(&s, m, &audit)
    }

    fn move_to_canary(&self, s: &State, m: ServedModel, audit: &str) -> Result<()> {
        // The challenger's bundle was verified when it was loaded into shadow; the aliases
        // move first, then the served state (a failed alias write changes nothing).
        self.registry
            .set_alias(&self.name, CANARY, m.version, audit)?;
        self.registry
            .remove_alias(&self.name, SHADOW, "moved to canary")?;
        self.swap(State {
            champion: s.champion.clone(),
            challenger: Some((
                m,
                Stage::Canary {
                    percent: self.cfg.canary_percent,
                },
            )),
        });
        Ok(())
    }

    /// Canary -> champion through the configured [`CanaryGate`]
    /// ([`DeploymentConfig::canary_gate`]), with label evidence when available.
    pub fn promote_to_champion(&self, labels: Option<LabelEvidence>) -> Result<()> {
        let s = self.state();
        let (m, failed) = self.canary_checks(&s, labels)?;
        if !failed.is_empty() {
            return Err(ServeError::GateFailed(failed.join("; ")));
        }
        self.move_to_champion(m, "canary -> champion: gate passed")
    }

    /// Canary -> champion whatever the gate says, recorded as `OVERRIDE` with `reason` and the
    /// checks that failed.
    pub fn override_to_champion(&self, reason: &str, labels: Option<LabelEvidence>) -> Result<()> {
        let s = self.state();
        let (m, failed) = self.canary_checks(&s, labels)?;
        let audit = override_audit("canary -> champion", reason, &failed)?;
        self.move_to_champion(m, &audit)
    }

    fn move_to_champion(&self, m: ServedModel, audit: &str) -> Result<()> {
        self.registry
            .set_alias(&self.name, CHAMPION, m.version, audit)?;
        self.registry.remove_alias(&self.name, CANARY, "promoted")?;
        self.swap(State {
            champion: m,
            challenger: None,
        });
        Ok(())
    }

    /// Rolls back at once: a challenger is withdrawn; without one, the champion alias moves
    /// back to its previous version. The target bundle is loaded and verified before any alias
    /// moves, and the alias moves before the served state: a failure leaves both as they were.
    /// In-flight requests finish on the model they started with.
    pub fn rollback(&self, reason: &str) -> Result<u32> {
        let s = self.state();
        if let Some((m, stage)) = &s.challenger {
            let alias = if matches!(stage, Stage::Shadow) {
                SHADOW
            } else {
                CANARY
            };
            self.registry.remove_alias(&self.name, alias, reason)?;
            self.swap(State {
                champion: s.champion.clone(),
                challenger: None,
            });
            return Ok(m.version);
        }
        let Some(v) = self.registry.rollback_target(&self.name, CHAMPION)? else {
            return Err(ServeError::Stage(
                "no earlier champion to roll back to".into(),
            ));
        };
        let m = ServedModel::from_bundle(&self.registry.load(&self.name, v)?)?;
        self.registry
            .rollback_to(&self.name, CHAMPION, Some(v), reason)?;
        self.swap(State {
            champion: m,
            challenger: None,
        });
        Ok(v)
    }
}

/// The audit line of an override; refused without a reason.
fn override_audit(step: &str, reason: &str, failed: &[String]) -> Result<String> {
    if reason.trim().is_empty() {
        return Err(ServeError::BadRequest(
            "an override needs a reason (it is recorded in the audit)".into(),
        ));
    }
    Ok(if failed.is_empty() {
        format!("{step}: OVERRIDE ({reason}); the gate would have passed")
    } else {
        format!(
            "{step}: OVERRIDE ({reason}); failed checks: {}",
            failed.join("; ")
        )
    })
}

/// Puts the calling (shadow) thread in the lowest scheduling class: on Linux `SCHED_IDLE`, so
/// it runs only on cycles no request thread wants and a mirrored request never preempts the
/// champion; elsewhere the lowest priority. Best effort: failure leaves the default. Also used
/// by the HTTP server's bulk requests.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadPriority, ThreadSchedulePolicy,
        };
        let _ = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    }
}
