//! The shared registry on an MLflow tracking server (REST API, no Python at serving time).
//!
//! What lives where:
//!
//! | keel | MLflow |
//! |---|---|
//! | run (params, metric histories, tags, seed, data versions, code version) | a run: params, metrics with steps, tags `keel.seed`, `keel.data.<name>`, `mlflow.source.git.commit` |
//! | run artifact | a file under the run's artifacts, sha256 and size in tag `keel.artifact.<name>` |
//! | model version | a registered model version whose `source` holds the bundle's files and keel's `MANIFEST` (uploaded through the artifact proxy); tags `keel.sha256.<file>`, `keel.manifest.sha256`, `keel.flavor`, `keel.ready` (set last: a version without it never loads) |
//! | alias | MLflow's own registered-model alias (`models:/fraud@champion`) |
//! | alias audit | registered-model tags `keel.audit.<seq>`, one JSON event each, hash-chained |
//!
//! Writers of aliases serialise on a lease: the registered model `keel-lock.<model>`, which
//! MLflow creates for one caller only (names are unique); it is deleted when the move ends and
//! broken after [`LOCK_LEASE_MS`] if its holder died.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keel_core::{envelope, Clock, SystemClock};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::mlflow::{artifact_rel, MlflowClient};
use crate::registry::{AliasEvent, AliasState, Change as RunChange, Damaged, ModelVersion};
use crate::run::{ArtifactRef, DataRef, MetricPoint, Run, RunId, RunStatus};
use crate::signing::SigningKey;
use crate::{RegistryError, Result};

const READY: &str = "keel.ready";
const MANIFEST_SHA: &str = "keel.manifest.sha256";
const SHA_TAG: &str = "keel.sha256.";
const AUDIT_TAG: &str = "keel.audit.";
const EVIDENCE_TAG: &str = "keel.evidence.";
const ARTIFACT_TAG: &str = "keel.artifact.";
const DATA_TAG: &str = "keel.data.";
const SEED_TAG: &str = "keel.seed";
const GIT_TAG: &str = "mlflow.source.git.commit";
/// Registered models named so are move locks, not models.
pub(crate) const LOCK_PREFIX: &str = "keel-lock.";
/// A lock older than this is taken to belong to a dead writer and is broken.
pub(crate) const LOCK_LEASE_MS: i64 = 30_000;
/// How long a writer waits for another's move to end.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// Page size of MLflow searches.
const PAGE: usize = 1000;
/// Most entries one listing reads (runs, versions, models).
const MAX_LIST: usize = 100_000;
/// Largest manifest or signature.
const MAX_RECORD: u64 = 64 << 20;

/// The registry half that talks to MLflow.
#[derive(Debug)]
pub(crate) struct MlflowRegistry {
    client: MlflowClient,
    /// Experiment id -> name.
    experiments: Mutex<HashMap<String, String>>,
    /// Registered models known to exist (never deleted by keel).
    known: Mutex<std::collections::HashSet<String>>,
}

impl MlflowRegistry {
    /// Connects to `base` (`http://host:port`) and checks the server answers.
    pub(crate) fn connect(base: &str) -> Result<MlflowRegistry> {
        let reg = MlflowRegistry {
            client: MlflowClient::with_timeout(base, Duration::from_secs(10)),
            experiments: Mutex::new(HashMap::new()),
            known: Mutex::new(Default::default()),
        };
        reg.client
            .get("experiments/search", &[("max_results", "1")])?;
        Ok(reg)
    }

    pub(crate) fn base(&self) -> &str {
        self.client.base_url()
    }

    /// A display path for an entry (errors and `check` reports).
    pub(crate) fn entry(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{}/{rel}", self.base()))
    }

    // ------------------------------------------------------------ runs

    pub(crate) fn create_run(&self, run: &Run) -> Result<RunId> {
        let exp = self.client.experiment_id(&run.experiment)?;
        let mut tags = vec![json!({"key": "keel.experiment", "value": run.experiment})];
        if let Some(c) = &run.code_version {
            tags.push(json!({"key": GIT_TAG, "value": c}));
        }
        let mut body = json!({"experiment_id": exp, "start_time": run.start_ms, "tags": tags});
        if let Some(n) = &run.name {
            body["run_name"] = json!(n);
        }
        let v = self.client.post("runs/create", &body)?;
        let id = str_at(&v["run"]["info"]["run_id"], "runs/create: run_id")?;
        Ok(RunId(id))
    }

    pub(crate) fn push(&self, run: &Run, change: RunChange<'_>) -> Result<()> {
        let id = &run.id.0;
        let tag = |k: &str, v: &str| {
            self.client
                .post("runs/set-tag", &json!({"run_id": id, "key": k, "value": v}))
                .map(drop)
        };
        match change {
            RunChange::Name => tag("mlflow.runName", run.name.as_deref().unwrap_or("")),
            RunChange::Params(ps) => {
                for chunk in ps.chunks(100) {
                    let p: Vec<Value> = chunk
                        .iter()
                        .map(|(k, v)| json!({"key": k, "value": v}))
                        .collect();
                    self.client
                        .post("runs/log-batch", &json!({"run_id": id, "params": p}))?;
                }
                Ok(())
            }
            RunChange::Metrics(ms) => {
                for chunk in ms.chunks(PAGE) {
                    let m: Vec<Value> = chunk
                        .iter()
                        .map(|(k, p)| {
                            json!({"key": k, "value": p.value, "timestamp": p.timestamp_ms,
                                   "step": p.step})
                        })
                        .collect();
                    self.client
                        .post("runs/log-batch", &json!({"run_id": id, "metrics": m}))?;
                }
                Ok(())
            }
            RunChange::Tag(k, v) => tag(k, v),
            RunChange::Seed => tag(
                SEED_TAG,
                &run.seed.map(|s| s.to_string()).unwrap_or_default(),
            ),
            RunChange::Data(d) => tag(&format!("{DATA_TAG}{}", d.name), &d.version),
            RunChange::Artifact(a, bytes) => {
                let uri = self.run_artifact_uri(&run.id)?;
                self.client
                    .put_artifact(&format!("{uri}/{}", a.name), bytes)?;
                tag(
                    &format!("{ARTIFACT_TAG}{}", a.name),
                    &format!("{}:{}", a.sha256, a.size),
                )
            }
            RunChange::End => {
                let mut body = json!({"run_id": id, "status": status_name(run.status)});
                if let Some(e) = run.end_ms {
                    body["end_time"] = json!(e);
                }
                self.client.post("runs/update", &body).map(drop)
            }
        }
    }

    fn run_artifact_uri(&self, id: &RunId) -> Result<String> {
        let v = self.get_run_json(id)?;
        str_at(&v["info"]["artifact_uri"], "runs/get: artifact_uri")
    }

    fn get_run_json(&self, id: &RunId) -> Result<Value> {
        match self.client.get("runs/get", &[("run_id", &id.0)]) {
            Ok(mut v) => Ok(v["run"].take()),
            Err(e) if e.is_mlflow_not_found() || is_bad_param(&e) => {
                Err(RegistryError::UnknownRun(id.clone()))
            }
            Err(e) => Err(e),
        }
    }

    /// A run with every metric's full history.
    pub(crate) fn run(&self, id: &RunId) -> Result<Run> {
        let v = self.get_run_json(id)?;
        let mut run = self.run_from_json(&v)?;
        self.fill_history(&mut run)?;
        Ok(run)
    }

    /// Replaces each metric's latest point with its whole history.
    pub(crate) fn fill_history(&self, run: &mut Run) -> Result<()> {
        for (key, points) in run.metrics.iter_mut() {
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let page = PAGE.to_string();
                let mut q = vec![
                    ("run_id", run.id.0.as_str()),
                    ("metric_key", key.as_str()),
                    ("max_results", page.as_str()),
                ];
                if !token.is_empty() {
                    q.push(("page_token", token.as_str()));
                }
                let v = self.client.get("metrics/get-history", &q)?;
                for m in v["metrics"].as_array().into_iter().flatten() {
                    if let Some(p) = metric_point(m) {
                        all.push(p);
                    }
                }
                token = v["next_page_token"].as_str().unwrap_or("").to_string();
                if token.is_empty() || all.len() >= MAX_LIST {
                    break;
                }
            }
            all.sort_by_key(|p| (p.step, p.timestamp_ms));
            *points = all;
        }
        Ok(())
    }

    fn experiment_name(&self, id: &str) -> Result<String> {
        let mut cache = self.experiments.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = cache.get(id) {
            return Ok(n.clone());
        }
        let v = self
            .client
            .get("experiments/get", &[("experiment_id", id)])?;
        let name = str_at(&v["experiment"]["name"], "experiments/get: name")?;
        cache.insert(id.to_string(), name.clone());
        Ok(name)
    }

    /// A run from MLflow's JSON, each metric with its latest point only.
    fn run_from_json(&self, v: &Value) -> Result<Run> {
        run_from_json(v, &|id| self.experiment_name(id))
    }

    /// Every run (of `experiment` when given), each metric with its latest point only; runs
    /// that do not convert are reported, not fatal.
    pub(crate) fn search(&self, experiment: Option<&str>) -> Result<(Vec<Run>, Vec<Damaged>)> {
        let ids: Vec<String> = match experiment {
            Some(e) => match self
                .client
                .get("experiments/get-by-name", &[("experiment_name", e)])
            {
                Ok(v) => vec![str_at(&v["experiment"]["experiment_id"], "experiment id")?],
                Err(err) if err.is_mlflow_not_found() => return Ok((Vec::new(), Vec::new())),
                Err(err) => return Err(err),
            },
            None => {
                let v = self
                    .client
                    .post("experiments/search", &json!({"max_results": PAGE}))?;
                v["experiments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["experiment_id"].as_str().map(str::to_string))
                    .collect()
            }
        };
        let (mut runs, mut damaged) = (Vec::new(), Vec::new());
        if ids.is_empty() {
            return Ok((runs, damaged));
        }
        let mut token = String::new();
        loop {
            let mut body = json!({"experiment_ids": ids, "max_results": PAGE});
            if !token.is_empty() {
                body["page_token"] = json!(token);
            }
            let v = self.client.post("runs/search", &body)?;
            for r in v["runs"].as_array().into_iter().flatten() {
                match self.run_from_json(r) {
                    Ok(run) => runs.push(run),
                    Err(e) => damaged.push(Damaged {
                        path: self.entry(&format!(
                            "runs/{}",
                            r["info"]["run_id"].as_str().unwrap_or("?")
                        )),
                        problem: e.to_string(),
                    }),
                }
            }
            token = v["next_page_token"].as_str().unwrap_or("").to_string();
            if token.is_empty() || runs.len() >= MAX_LIST {
                break;
            }
        }
        Ok((runs, damaged))
    }

    pub(crate) fn run_artifact(&self, id: &RunId, a: &ArtifactRef) -> Result<Vec<u8>> {
        let uri = format!("{}/{}", self.run_artifact_uri(id)?, a.name);
        let bytes = self.client.get_artifact(&uri, a.size.saturating_add(1))?;
        verify(&uri, &bytes, &a.sha256, a.size)?;
        Ok(bytes)
    }

    // ------------------------------------------------------------ model versions

    fn ensure_model(&self, name: &str) -> Result<()> {
        if self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
        {
            return Ok(());
        }
        match self
            .client
            .post("registered-models/create", &json!({"name": name}))
        {
            Ok(_) => {}
            Err(RegistryError::MlflowApi { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => {}
            Err(e) => return Err(e),
        }
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
        Ok(())
    }

    /// Uploads the files, creates the MLflow version, then uploads keel's manifest (which
    /// names the version MLflow assigned) and marks the version ready.
    pub(crate) fn register(
        &self,
        mut mv: ModelVersion,
        files: &BTreeMap<String, Vec<u8>>,
        signer: Option<&SigningKey>,
    ) -> Result<ModelVersion> {
        self.ensure_model(&mv.name)?;
        let dir = format!(
            "{}/keel-bundle-{}",
            self.run_artifact_uri(&mv.run_id)?,
            crate::fsutil::nonce()
        );
        artifact_rel(&dir)?;
        for (fname, bytes) in files {
            self.client.put_artifact(&format!("{dir}/{fname}"), bytes)?;
        }
        let mut tags: Vec<Value> = mv
            .files
            .iter()
            .map(|f| json!({"key": format!("{SHA_TAG}{}", f.name), "value": f.sha256}))
            .collect();
        tags.push(json!({"key": "keel.flavor", "value": mv.meta.flavor}));
        if let Some(s) = &mv.meta.feature_service {
            tags.push(json!({"key": "keel.feature_service", "value": s}));
        }
        if let Some(d) = &mv.meta.data_version {
            tags.push(json!({"key": "keel.data_version", "value": d}));
        }
        let v = self.client.post(
            "model-versions/create",
            &json!({"name": mv.name, "source": dir, "run_id": mv.run_id.0, "tags": tags,
                    "description": mv.meta.description}),
        )?;
        let version = str_at(&v["model_version"]["version"], "model-versions/create")?;
        mv.version = version
            .parse()
            .map_err(|_| RegistryError::Mlflow(format!("version {version:?} is not a number")))?;
        let manifest = envelope::encode(&mv)?;
        self.client
            .put_artifact(&format!("{dir}/MANIFEST"), &manifest)?;
        if let Some(key) = signer {
            self.client.put_artifact(
                &format!("{dir}/{}", crate::registry::SIGNATURE),
                key.sign_manifest(&manifest).as_bytes(),
            )?;
        }
        let sha = hex::encode(Sha256::digest(&manifest));
        self.version_tag(&mv.name, mv.version, MANIFEST_SHA, &sha)?;
        self.version_tag(&mv.name, mv.version, READY, "1")?;
        Ok(mv)
    }

    pub(crate) fn version_tag(
        &self,
        name: &str,
        version: u32,
        key: &str,
        value: &str,
    ) -> Result<()> {
        self.client
            .post(
                "model-versions/set-tag",
                &json!({"name": name, "version": version.to_string(), "key": key,
                        "value": value}),
            )
            .map(drop)
    }

    /// Version numbers of `name` whose registration completed, ascending.
    pub(crate) fn versions(&self, name: &str) -> Result<Vec<u32>> {
        Ok(self
            .versions_tagged(name)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    /// Completed versions of `name` with their tags, ascending.
    pub(crate) fn versions_tagged(
        &self,
        name: &str,
    ) -> Result<Vec<(u32, BTreeMap<String, String>)>> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = PAGE.to_string();
            let mut q = vec![("filter", filter.as_str()), ("max_results", page.as_str())];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let v = self.client.get("model-versions/search", &q)?;
            for mv in v["model_versions"].as_array().into_iter().flatten() {
                let tags = pairs(&mv["tags"]);
                let n = mv["version"].as_str().and_then(|s| s.parse().ok());
                if let (true, Some(n)) = (tags.contains_key(READY), n) {
                    out.push((n, tags));
                }
            }
            token = v["next_page_token"].as_str().unwrap_or("").to_string();
            if token.is_empty() || out.len() >= MAX_LIST {
                break;
            }
        }
        out.sort_by_key(|(v, _)| *v);
        out.dedup_by_key(|(v, _)| *v);
        Ok(out)
    }

    /// Registered model names (move locks excluded).
    pub(crate) fn models(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = PAGE.to_string();
            let mut q = vec![("max_results", page.as_str())];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let v = self.client.get("registered-models/search", &q)?;
            for m in v["registered_models"].as_array().into_iter().flatten() {
                if let Some(n) = m["name"].as_str().filter(|n| !n.starts_with(LOCK_PREFIX)) {
                    out.push(n.to_string());
                }
            }
            token = v["next_page_token"].as_str().unwrap_or("").to_string();
            if token.is_empty() || out.len() >= MAX_LIST {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// A version's manifest (decoded and as stored, checked against the version's tags) and
    /// where its files are.
    pub(crate) fn version_bytes(
        &self,
        name: &str,
        version: u32,
    ) -> Result<(ModelVersion, Vec<u8>, String)> {
        let unknown = || RegistryError::UnknownVersion {
            name: name.to_string(),
            version,
        };
        let v = match self.client.get(
            "model-versions/get",
            &[("name", name), ("version", &version.to_string())],
        ) {
            Ok(v) => v,
            Err(e) if e.is_mlflow_not_found() => return Err(unknown()),
            Err(e) => return Err(e),
        };
        let mvj = &v["model_version"];
        let tags = pairs(&mvj["tags"]);
        let here = self.entry(&format!("models/{name}/v{version}"));
        if !tags.contains_key(READY) {
            return Err(RegistryError::Corrupt {
                path: here,
                reason: "not a complete keel bundle (no keel.ready tag): its registration did \
                         not finish, or it was not registered by keel"
                    .into(),
            });
        }
        let source = str_at(&mvj["source"], "model version source")?;
        let manifest = self
            .client
            .get_artifact(&format!("{source}/MANIFEST"), MAX_RECORD)?;
        let sha = hex::encode(Sha256::digest(&manifest));
        if tags.get(MANIFEST_SHA) != Some(&sha) {
            return Err(RegistryError::Tampered {
                path: PathBuf::from(format!("{source}/MANIFEST")),
                reason: "sha256 differs from the version's keel.manifest.sha256 tag".into(),
            });
        }
        let mv: ModelVersion = envelope::decode(&manifest)?;
        if mv.name != name || mv.version != version {
            return Err(RegistryError::Corrupt {
                path: here,
                reason: "manifest names another version".into(),
            });
        }
        let tagged: BTreeMap<&str, &str> = tags
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(SHA_TAG)?, v.as_str())))
            .collect();
        let listed: BTreeMap<&str, &str> = mv
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.sha256.as_str()))
            .collect();
        if tagged != listed {
            return Err(RegistryError::Tampered {
                path: here,
                reason: "the version's keel.sha256.* tags and its manifest disagree".into(),
            });
        }
        Ok((mv, manifest, source))
    }

    /// The signature beside a version's files at `source`, if it has one.
    pub(crate) fn signature(&self, source: &str) -> Result<Option<String>> {
        match self
            .client
            .get_artifact(&format!("{source}/{}", crate::registry::SIGNATURE), 4096)
        {
            Ok(b) => Ok(Some(String::from_utf8(b).unwrap_or_default())),
            Err(e) if e.is_mlflow_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Downloads every file of a manifest, verifying size and sha256.
    pub(crate) fn read_files(
        &self,
        source: &str,
        mv: &ModelVersion,
        max_blob: u64,
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        for f in &mv.files {
            crate::fsutil::check_name("file", &f.name)?;
            let uri = format!("{source}/{}", f.name);
            let bytes = self
                .client
                .get_artifact(&uri, f.size.min(max_blob).saturating_add(1))?;
            verify(&uri, &bytes, &f.sha256, f.size)?;
            files.insert(f.name.clone(), bytes);
        }
        Ok(files)
    }

    pub(crate) fn write_signature(&self, source: &str, signature: &str) -> Result<()> {
        self.client.put_artifact(
            &format!("{source}/{}", crate::registry::SIGNATURE),
            signature.as_bytes(),
        )
    }

    // ------------------------------------------------------------ aliases

    /// The alias state: MLflow's aliases as they are, keel's audit from the model's tags, the
    /// rollback stacks replayed from the audit.
    pub(crate) fn alias_state(&self, name: &str) -> Result<AliasState> {
        let v = match self.client.get("registered-models/get", &[("name", name)]) {
            Ok(v) => v,
            Err(e) if e.is_mlflow_not_found() => return Ok(AliasState::default()),
            Err(e) => return Err(e),
        };
        alias_state_from(
            &v["registered_model"],
            self.entry(&format!("models/{name}/audit")),
        )
    }

    /// Records `events` (numbered after `already` earlier ones) and moves MLflow's aliases to
    /// match: each event's audit tag first, then its alias.
    pub(crate) fn commit(&self, name: &str, already: usize, events: &[AliasEvent]) -> Result<()> {
        for (i, ev) in events.iter().enumerate() {
            let text = serde_json::to_string(ev).map_err(|e| {
                RegistryError::Mlflow(format!("audit event does not serialise: {e}"))
            })?;
            self.client.post(
                "registered-models/set-tag",
                &json!({"name": name, "key": format!("{AUDIT_TAG}{:08}", already + i + 1),
                        "value": text}),
            )?;
            match ev.to {
                Some(v) => self.client.post(
                    "registered-models/alias",
                    &json!({"name": name, "alias": ev.alias, "version": v.to_string()}),
                )?,
                None => self.client.delete(
                    "registered-models/alias",
                    &json!({"name": name, "alias": ev.alias}),
                )?,
            };
        }
        Ok(())
    }

    /// Stores one replica's evidence as the registered-model tag `keel.evidence.<replica>`
    /// (hex).
    pub(crate) fn publish_evidence(&self, name: &str, replica: &str, bytes: &[u8]) -> Result<()> {
        self.ensure_model(name)?;
        self.client
            .post(
                "registered-models/set-tag",
                &json!({"name": name, "key": format!("{EVIDENCE_TAG}{replica}"),
                        "value": hex::encode(bytes)}),
            )
            .map(drop)
    }

    /// Every replica's evidence tag, decoded.
    pub(crate) fn evidence(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let v = match self.client.get("registered-models/get", &[("name", name)]) {
            Ok(v) => v,
            Err(e) if e.is_mlflow_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(pairs(&v["registered_model"]["tags"])
            .into_iter()
            .filter_map(|(k, val)| {
                let replica = k.strip_prefix(EVIDENCE_TAG)?.to_string();
                Some((replica, hex::decode(val).ok()?))
            })
            .collect())
    }

    /// Takes `name`'s move lock (see the module docs).
    pub(crate) fn lock(&self, name: &str) -> Result<MlflowLock<'_>> {
        let lock = format!("{LOCK_PREFIX}{name}");
        let start = Instant::now();
        loop {
            match self.client.post(
                "registered-models/create",
                &json!({"name": lock, "description": "keel: an alias move is in progress"}),
            ) {
                Ok(_) => {
                    return Ok(MlflowLock {
                        registry: self,
                        name: lock,
                    })
                }
                // Held by another writer; MLflow answers "does not exist" when the holder
                // released it between its failed insert and the lookup of the holder.
                Err(RegistryError::MlflowApi { code, .. })
                    if code == "RESOURCE_ALREADY_EXISTS" || code == "RESOURCE_DOES_NOT_EXIST" => {}
                Err(e) => return Err(e),
            }
            if let Ok(v) = self.client.get("registered-models/get", &[("name", &lock)]) {
                let born = int_at(&v["registered_model"]["creation_timestamp"]).unwrap_or(0);
                // The server stamps the lock with its wall clock: compare with ours.
                if SystemClock.now_ms() - born > LOCK_LEASE_MS {
                    tracing::warn!(lock = %lock, "breaking an expired alias-move lock");
                    let _ = self
                        .client
                        .delete("registered-models/delete", &json!({"name": lock}));
                    continue;
                }
            }
            if start.elapsed() > LOCK_WAIT {
                return Err(RegistryError::Busy {
                    model: name.to_string(),
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A held move lock; released on drop.
pub(crate) struct MlflowLock<'a> {
    registry: &'a MlflowRegistry,
    name: String,
}

impl Drop for MlflowLock<'_> {
    fn drop(&mut self) {
        if let Err(e) = self
            .registry
            .client
            .delete("registered-models/delete", &json!({"name": self.name}))
        {
            tracing::warn!(lock = %self.name, error = %e, "could not release an alias-move lock");
        }
    }
}

fn verify(uri: &str, bytes: &[u8], sha: &str, size: u64) -> Result<()> {
    let path = || PathBuf::from(uri);
    if bytes.len() as u64 != size {
        return Err(RegistryError::Tampered {
            path: path(),
            reason: "size differs from the manifest".into(),
        });
    }
    if hex::encode(Sha256::digest(bytes)) != sha {
        return Err(RegistryError::Tampered {
            path: path(),
            reason: "sha256 differs from the manifest".into(),
        });
    }
    Ok(())
}

fn is_bad_param(e: &RegistryError) -> bool {
    matches!(e, RegistryError::MlflowApi { code, .. } if code == "INVALID_PARAMETER_VALUE")
}

pub(crate) fn status_name(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "RUNNING",
        RunStatus::Finished => "FINISHED",
        RunStatus::Failed => "FAILED",
        RunStatus::Killed => "KILLED",
    }
}

fn str_at(v: &Value, what: &str) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| RegistryError::Mlflow(format!("{what}: missing from the answer")))
}

/// MLflow sends int64 fields as numbers or as strings.
fn int_at(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

fn metric_point(m: &Value) -> Option<MetricPoint> {
    let value = m["value"].as_f64().filter(|v| v.is_finite())?;
    Some(MetricPoint {
        value,
        step: int_at(&m["step"]).unwrap_or(0).max(0) as u64,
        timestamp_ms: int_at(&m["timestamp"]).unwrap_or(0),
    })
}

/// `[{"key":..,"value":..}]` -> map.
fn pairs(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["key"].as_str()?.to_string(),
                p["value"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// A run from MLflow's JSON (`runs/get`, `runs/search`), each metric with its latest point only;
/// `experiment` resolves an experiment id when the run has no `keel.experiment` tag.
fn run_from_json(v: &Value, experiment: &dyn Fn(&str) -> Result<String>) -> Result<Run> {
    let info = &v["info"];
    let id = str_at(&info["run_id"], "run: run_id")?;
    let tags: BTreeMap<String, String> = pairs(&v["data"]["tags"]);
    let experiment = match tags.get("keel.experiment") {
        Some(e) => e.clone(),
        None => experiment(&str_at(&info["experiment_id"], "run: experiment")?)?,
    };
    let status = match info["status"].as_str().unwrap_or("") {
        "RUNNING" | "SCHEDULED" => RunStatus::Running,
        "FINISHED" => RunStatus::Finished,
        "FAILED" => RunStatus::Failed,
        _ => RunStatus::Killed,
    };
    let mut metrics = BTreeMap::new();
    for m in v["data"]["metrics"].as_array().into_iter().flatten() {
        if let (Some(k), Some(p)) = (m["key"].as_str(), metric_point(m)) {
            metrics.insert(k.to_string(), vec![p]);
        }
    }
    let mut user_tags = BTreeMap::new();
    let mut data = Vec::new();
    let mut artifacts = Vec::new();
    for (k, val) in &tags {
        if let Some(name) = k.strip_prefix(DATA_TAG) {
            data.push(DataRef {
                name: name.to_string(),
                version: val.clone(),
            });
        } else if let Some(name) = k.strip_prefix(ARTIFACT_TAG) {
            let (sha, size) = val.split_once(':').unwrap_or((val, ""));
            artifacts.push(ArtifactRef {
                name: name.to_string(),
                sha256: sha.to_string(),
                size: size.parse().unwrap_or(0),
            });
        } else if !k.starts_with("mlflow.") && !k.starts_with("keel.") {
            user_tags.insert(k.clone(), val.clone());
        }
    }
    Ok(Run {
        id: RunId(id),
        experiment,
        name: info["run_name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        status,
        start_ms: int_at(&info["start_time"]).unwrap_or(0),
        end_ms: int_at(&info["end_time"]),
        params: pairs(&v["data"]["params"]),
        metrics,
        tags: user_tags,
        seed: tags.get(SEED_TAG).and_then(|s| s.parse().ok()),
        data,
        code_version: tags.get(GIT_TAG).cloned(),
        artifacts,
    })
}

/// The alias state in a `registered-models/get` answer (see [`MlflowRegistry::alias_state`]);
/// `here` names it in errors.
fn alias_state_from(m: &Value, here: PathBuf) -> Result<AliasState> {
    let mut st = AliasState::default();
    for a in m["aliases"].as_array().into_iter().flatten() {
        if let (Some(alias), Some(v)) = (
            a["alias"].as_str(),
            a["version"].as_str().and_then(|s| s.parse().ok()),
        ) {
            st.current.insert(alias.to_string(), v);
        }
    }
    for (k, val) in pairs(&m["tags"]) {
        let Some(seq) = k.strip_prefix(AUDIT_TAG) else {
            continue;
        };
        if seq.parse::<u64>().ok() != Some(st.audit.len() as u64 + 1) {
            return Err(RegistryError::Corrupt {
                path: here,
                reason: format!("audit event {k} is out of sequence"),
            });
        }
        let ev: AliasEvent = serde_json::from_str(&val).map_err(|e| RegistryError::Corrupt {
            path: here.clone(),
            reason: format!("audit event {k}: {e}"),
        })?;
        st.audit.push(ev);
    }
    if let Some(i) = st.broken_link() {
        return Err(RegistryError::Corrupt {
            path: here,
            reason: format!(
                "the alias audit's hash chain breaks at event {i}: the history was edited"
            ),
        });
    }
    for e in &st.audit {
        let stack = st.previous.entry(e.alias.clone()).or_default();
        if e.rollback {
            stack.pop();
        } else {
            stack.push(e.from);
        }
    }
    Ok(st)
}

/// Parses `data` as the MLflow answers keel reads (fuzzing and the corpus replay test).
pub(crate) fn fuzz_answers(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = alias_state_from(&v, PathBuf::from("fuzz"));
    let _ = alias_state_from(&v["registered_model"], PathBuf::from("fuzz"));
    let _ = run_from_json(&v, &|id| Ok(id.to_string()));
    let _ = run_from_json(&v["run"], &|id| Ok(id.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(name: &str) -> Value {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/registry_records")
            .join(name);
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn mlflow_answers_parse_into_keel_records() {
        let run = run_from_json(&corpus("mlflow_run.json")["run"], &|id| {
            Ok(format!("exp{id}"))
        })
        .unwrap();
        assert_eq!(run.experiment, "exp1");
        assert_eq!(
            (run.start_ms, run.end_ms),
            (5, Some(9)),
            "int64 as text or number"
        );
        assert_eq!(run.status, RunStatus::Finished);
        assert_eq!(run.seed, Some(7));
        assert_eq!(run.params["lr"], "0.1");
        assert_eq!(run.metrics["auc"][0].step, 2);
        assert_eq!(run.data[0].version, "ab");
        assert_eq!(run.artifacts[0].size, 5);
        assert_eq!(
            run.tags.keys().collect::<Vec<_>>(),
            ["team"],
            "keel.* tags are fields"
        );

        // The corpus's audit event carries a zero chain link: refused as an edited history.
        let m = corpus("mlflow_registered_model.json");
        let err = alias_state_from(&m["registered_model"], PathBuf::from("x")).unwrap_err();
        assert!(
            err.to_string().contains("hash chain breaks at event 0"),
            "{err}"
        );
        let mut ok = m["registered_model"].clone();
        let mut ev: AliasEvent =
            serde_json::from_str(ok["tags"][0]["value"].as_str().unwrap()).unwrap();
        ev.chain = ev.digest(&[0; 32]);
        ok["tags"][0]["value"] = json!(serde_json::to_string(&ev).unwrap());
        let st = alias_state_from(&ok, PathBuf::from("x")).unwrap();
        assert_eq!(st.current["champion"], 1);
        assert_eq!(st.previous["champion"], vec![None]);
        // A gap in the sequence is refused too.
        ok["tags"][0]["key"] = json!("keel.audit.00000002");
        assert!(alias_state_from(&ok, PathBuf::from("x")).is_err());
    }
}
