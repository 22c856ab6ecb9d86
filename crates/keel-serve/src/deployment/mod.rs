//! `Deployment`: champion answers, a challenger shadows or takes a canary slice, promotion only
//! through gates (or a recorded override), atomic rollback, state in the registry's aliases.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use keel_core::{Clock, SystemClock, ValueRef};
use keel_monitor::PredictionRecord;
use keel_registry::Registry;
use keel_store::{FeatureRef, Store, Value};

use crate::{Result, ServeError};
use keel_model::{Input, Model, ServedModel};

mod config;
mod evidence;
mod follow;
mod inputs;
mod rollout;
mod shadow;
mod telemetry;
mod types;

pub use config::*;
pub use evidence::{Evidence, FleetEvidence};
pub use follow::{FollowStatus, Follower};
pub(crate) use shadow::lower_priority;
pub use shadow::ShadowStats;
use shadow::{Mirrored, Shadow, ShadowJob};
use telemetry::{Counters, Hist, Log};
pub use types::*;

/// The rollout alias names, owned by `keel_registry::rollout`.
pub use keel_registry::rollout::{CANARY, CHAMPION, SHADOW};

struct State {
    champion: Model,
    challenger: Option<(Model, Stage)>,
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
    /// The registry, its moves recorded as made by `actor` through this replica.
    registry: Registry,
    /// Who the registry handle given to this deployment acted as.
    actor: String,
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
    /// Held while the served state moves (admin moves, following the registry): one at a time.
    moving: Mutex<()>,
    /// How this replica stands with its registry.
    following: follow::FollowState,
    /// This replica's name in published gate evidence.
    replica: String,
    /// The challenger stint the counted evidence belongs to (see `evidence`).
    stint: Mutex<Option<String>>,
    /// The last models that stopped serving, newest last (at most [`RETIRED`]): a rollback or
    /// a re-shadow swaps them back in without loading them again.
    retired: Mutex<Vec<Model>>,
}

/// How many retired models a deployment keeps loaded.
const RETIRED: usize = 2;

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
        let champion = Model::load(&registry.load_alias(name, CHAMPION)?)?;
        let challenger = if let Some(v) = registry.alias(name, CANARY)? {
            Some((
                Model::load(&registry.load(name, v)?)?,
                Stage::Canary {
                    percent: cfg.canary_percent,
                },
            ))
        } else if let Some(v) = registry.alias(name, SHADOW)? {
            Some((Model::load(&registry.load(name, v)?)?, Stage::Shadow))
        } else {
            None
        };
        let replica = default_replica();
        let actor = registry.actor().to_string();
        Ok(Deployment {
            name: name.to_string(),
            registry: registry.with_actor(&format!("{actor} via replica {replica}")),
            actor,
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
            moving: Mutex::new(()),
            following: Default::default(),
            replica,
            stint: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// `model` as a tabular model (pipeline and predictor), or why it is not one.
    fn tabular<'m>(&self, model: &'m Model) -> Result<&'m ServedModel> {
        model.tabular().ok_or_else(|| {
            ServeError::BadRequest(format!(
                "model `{}` v{} is a {} model: it reads {} `{}`, not store rows and features",
                self.name,
                model.version(),
                model.flavor().as_str(),
                match model.input() {
                    keel_model::InputSpec::Text => "texts",
                    _ => "tensors",
                },
                model.input_name()
            ))
        })
    }

    /// Answers a batch of texts or tensors (models that read no tabular pipeline: sequence,
    /// CNN, ONNX) as one batch: with `version`, that version alone; else the champion, or the
    /// canary challenger for the canary's share of request ids (`request_id` routes the whole
    /// batch), a shadow challenger mirrored off the critical path. Every row counts as a
    /// request in the metrics and the gates.
    pub fn predict_batch(
        &self,
        version: Option<u32>,
        request_id: &str,
        input: Input<'_>,
    ) -> Result<BatchResponse> {
        let t0 = Instant::now();
        let state = self.state();
        let (model, route) = match version {
            Some(v) => self.role(&state, v)?,
            None => match &state.challenger {
                Some((m, Stage::Canary { percent }))
                    if (keel_core::fnv1a(request_id.as_bytes()) % 10_000) as f64 / 100.0
                        < *percent =>
                {
                    (m, Route::Canary)
                }
                _ => (&state.champion, Route::Champion),
            },
        };
        let rows = input.rows() as u64;
        let metrics = self.metrics_for((model.version(), route));
        metrics.1.requests.fetch_add(rows, Ordering::Relaxed);
        let scores = match model.score_batch(input) {
            Ok(s) => s,
            Err(e) => {
                metrics.1.errors.fetch_add(rows, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        metrics.0.record(t0.elapsed().as_nanos() as u64);
        if let (None, Some((challenger, Stage::Shadow))) = (version, &state.challenger) {
            self.mirror(ShadowJob {
                model: challenger.clone(),
                input: Mirrored::of(input),
                champion: scores.clone(),
            });
        }
        Ok(BatchResponse {
            outputs: model.outputs(),
            scores,
            model_version: model.version(),
            route,
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
            model_version: model.version(),
            route: Route::Champion,
            freshness_ms: a.freshness_ms,
            missing_features: a.missing,
        })
    }

    /// Assembles `req`'s raw inputs for `model` and scores them. The one scoring path of online
    /// and batch requests.
    fn answer(&self, model: &Model, req: &Request) -> Result<Answer> {
        let model = self.tabular(model)?;
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

    /// Replaces the served state. A challenger that changes (version or stage) starts a new
    /// stint: what was counted about it before is dropped.
    fn swap(&self, s: State) {
        let key = |s: &State| {
            s.challenger
                .as_ref()
                .map(|(m, st)| (m.version(), matches!(st, Stage::Shadow)))
        };
        let new = key(&s);
        let serving = |st: &State, v: u32| {
            st.champion.version() == v
                || st
                    .challenger
                    .as_ref()
                    .is_some_and(|(m, _)| m.version() == v)
        };
        let (old, leaving) = {
            let mut w = self.state.write().unwrap_or_else(|p| p.into_inner());
            let old = key(&w);
            let mut leaving = vec![w.champion.clone()];
            leaving.extend(w.challenger.as_ref().map(|(m, _)| m.clone()));
            leaving.retain(|m| !serving(&s, m.version()));
            *w = Arc::new(s);
            (old, leaving)
        };
        if !leaving.is_empty() {
            let mut r = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            for m in leaving {
                r.retain(|x| x.version() != m.version());
                r.push(m);
            }
            let extra = r.len().saturating_sub(RETIRED);
            r.drain(..extra);
        }
        if new != old {
            if let Some((v, _)) = new {
                self.reset_challenger_evidence(v);
            }
            *self.stint.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Names this replica in published gate evidence (default: `KEEL_REPLICA`, else
    /// `HOSTNAME-PID`). Use 1-128 of `[A-Za-z0-9_.-]`.
    pub fn with_replica(mut self, replica: &str) -> Deployment {
        self.replica = replica.to_string();
        self.registry = self
            .registry
            .with_actor(&format!("{} via replica {replica}", self.actor));
        self
    }

    /// This replica's name in published gate evidence.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The versions serving: `(champion, challenger and its stage)`.
    pub fn versions(&self) -> (u32, Option<(u32, Stage)>) {
        let s = self.state();
        (
            s.champion.version(),
            s.challenger.as_ref().map(|(m, st)| (m.version(), *st)),
        )
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
    pub fn model(&self, version: Option<u32>) -> Result<(Model, Route)> {
        let state = self.state();
        let (m, r) = self.role(&state, version.unwrap_or(state.champion.version()))?;
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

    fn role<'s>(&self, state: &'s State, version: u32) -> Result<(&'s Model, Route)> {
        if state.champion.version() == version {
            return Ok((&state.champion, Route::Champion));
        }
        match &state.challenger {
            Some((m, Stage::Shadow)) if m.version() == version => Ok((m, Route::Shadow)),
            Some((m, Stage::Canary { .. })) if m.version() == version => Ok((m, Route::Canary)),
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
        model: &Model,
        route: Route,
        shadow: Option<&Model>,
        req: Request,
    ) -> Result<Response> {
        let metrics = self.metrics_for((model.version(), route));
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
                input: Mirrored::Row(inputs.clone()),
                champion: scores.clone(),
            });
        }
        if self.cfg.log_sample_rate > 0.0
            && (req.request_id.fnv1a() % 1_000_000) as f64 / 1e6 < self.cfg.log_sample_rate
        {
            let names = self.tabular(model)?.pipeline.input_schema().names();
            let rec = PredictionRecord {
                // The log is sampled and bounded in bytes: the row's id text is built here.
                request_id: req.request_id.to_string(),
                at_ms: self.clock.now_ms(),
                model_version: model.version(),
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
            model_version: model.version(),
            route,
            freshness_ms,
            missing_features: missing,
        })
    }
}

/// `KEEL_REPLICA`, else `HOSTNAME-PID` (characters a registry name allows).
fn default_replica() -> String {
    let base = std::env::var("KEEL_REPLICA").ok().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_else(|| "replica".into());
        format!("{}-{}", host.trim(), std::process::id())
    });
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    clean.trim_start_matches('.').to_string()
}
