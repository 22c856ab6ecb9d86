//! Export of tracked runs to an MLflow tracking server over its REST API (`/api/2.0/mlflow`).
//!
//! Params, metric histories (value, step, timestamp), tags and artifacts are pushed; keel's
//! seed, data versions, code version and run id travel as tags (`keel.seed`, `keel.data.<name>`,
//! `mlflow.source.git.commit`, `keel.run_id`). Artifacts go through the server's artifact proxy
//! (`mlflow server` serves artifacts by default since MLflow 2). Re-exporting a run finds the
//! MLflow run it made before (tag `keel.run_id`) instead of making another.
//!
//! [`MlflowClient::export_model`] copies a directory registry's model (versions and aliases)
//! into the server's registry, for a team moving from one process to a fleet.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::registry::ModelVersion;
use crate::remote::status_name;
use crate::run::{Run, RunId};
use crate::{Registry, RegistryError, Result};

/// The version tag naming the directory version an MLflow version was exported from.
const EXPORTED_FROM: &str = "keel.exported_from";

/// What [`MlflowClient::export_model`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelExport {
    /// Local version -> MLflow version, for every version exported (now or before).
    pub versions: BTreeMap<u32, u32>,
    /// Versions created by this call (0 on a re-export).
    pub created: usize,
    /// Alias -> MLflow version, as now set in MLflow.
    pub aliases: BTreeMap<String, u32>,
}

/// Largest JSON answer read from the server.
const MAX_ANSWER: u64 = 64 << 20;
/// MLflow caps per `log-batch` call.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;

/// A client of one MLflow tracking server.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    base: String,
    agent: ureq::Agent,
}

impl MlflowClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:5000`), 30 s timeout per call.
    pub fn new(base_url: &str) -> MlflowClient {
        MlflowClient::with_timeout(base_url, Duration::from_secs(30))
    }

    /// A client for `base_url` with `timeout` per call (connect, send and receive).
    pub fn with_timeout(base_url: &str, timeout: Duration) -> MlflowClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        MlflowClient {
            base: base_url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/2.0/mlflow/{path}", self.base)
    }

    fn check(what: &str, mut resp: ureq::http::Response<ureq::Body>) -> Result<Value> {
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| http_err(what, e))?;
        if !(200..300).contains(&status) {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = v["error_code"].as_str().unwrap_or("").to_string();
            let message = v["message"]
                .as_str()
                .unwrap_or(&text)
                .chars()
                .take(300)
                .collect();
            return Err(RegistryError::MlflowApi {
                what: what.to_string(),
                status,
                code,
                message,
            });
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|source| RegistryError::MlflowJson {
            what: what.to_string(),
            source,
        })
    }

    /// POSTs a JSON body to an MLflow REST path.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let resp = self
            .agent
            .post(&self.url(path))
            .send_json(body)
            .map_err(|e| http_err(path, e))?;
        Self::check(path, resp)
    }

    /// DELETEs with a JSON body (MLflow's delete calls read their arguments from the body).
    pub(crate) fn delete(&self, path: &str, body: &Value) -> Result<Value> {
        let resp = self
            .agent
            .delete(&self.url(path))
            .force_send_body()
            .send_json(body)
            .map_err(|e| http_err(path, e))?;
        Self::check(path, resp)
    }

    /// GETs an MLflow REST path (`runs/get`, `experiments/get-by-name`...) with query params.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut req = self.agent.get(&self.url(path));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let resp = req.call().map_err(|e| http_err(path, e))?;
        Self::check(path, resp)
    }

    /// The proxied-artifact URL of an `mlflow-artifacts:` location.
    fn artifact_url(&self, location: &str) -> Result<String> {
        let rel = artifact_rel(location)?;
        Ok(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{rel}",
            self.base
        ))
    }

    /// Uploads one file to an `mlflow-artifacts:/...` location through the server's proxy.
    pub(crate) fn put_artifact(&self, location: &str, bytes: &[u8]) -> Result<()> {
        let url = self.artifact_url(location)?;
        let resp = self
            .agent
            .put(&url)
            .send(bytes)
            .map_err(|e| http_err(location, e))?;
        Self::check("artifact upload", resp).map(drop)
    }

    /// Downloads one file of at most `limit` bytes from an `mlflow-artifacts:/...` location.
    pub(crate) fn get_artifact(&self, location: &str, limit: u64) -> Result<Vec<u8>> {
        let url = self.artifact_url(location)?;
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| http_err(location, e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Self::check(location, resp).map(|_| Vec::new());
        }
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| http_err(location, e))
    }

    /// The id of experiment `name`, created when absent.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        if let Ok(v) = self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            if let Some(id) = v["experiment"]["experiment_id"].as_str() {
                return Ok(id.to_string());
            }
        }
        let v = self.post("experiments/create", &json!({ "name": name }))?;
        v["experiment_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Mlflow("experiments/create: no experiment_id".into()))
    }

    /// Copies model `name` of a directory `registry` into this server's registry: each
    /// version's run ([`MlflowClient::export_run`]), each version (files verified on the way
    /// out, then uploaded and verified like any registration; tag `keel.exported_from` = the
    /// local version), then the aliases as they stand (one audit event each, reason `exported
    /// from <directory>`). Re-exporting creates nothing twice: versions already exported are
    /// found by their tag, aliases already in place are left alone.
    pub fn export_model(&self, registry: &Registry, name: &str) -> Result<ModelExport> {
        let target = Registry::mlflow(&self.base)?;
        let remote = target
            .mlflow_place()
            .ok_or_else(|| RegistryError::Mlflow("not an MLflow registry".into()))?;
        let mut done: BTreeMap<u32, u32> = remote
            .versions_tagged(name)?
            .into_iter()
            .filter_map(|(v, tags)| Some((tags.get(EXPORTED_FROM)?.parse().ok()?, v)))
            .collect();
        let mut created = 0;
        for v in registry.versions(name)? {
            if done.contains_key(&v) {
                continue;
            }
            let loaded = registry.load(name, v)?;
            let run = registry.run(&loaded.version.run_id)?;
            let run_id = RunId(self.export_run(registry, &run)?);
            let mv = ModelVersion {
                run_id,
                ..loaded.version
            };
            let out = remote.register(mv, &loaded.files, None)?;
            remote.version_tag(name, out.version, EXPORTED_FROM, &v.to_string())?;
            done.insert(v, out.version);
            created += 1;
        }
        let now = target.aliases(name)?;
        let reason = format!("exported from {}", registry.location());
        let mut aliases = BTreeMap::new();
        for (alias, v) in registry.aliases(name)? {
            let Some(&to) = done.get(&v) else { continue };
            if now.get(&alias) != Some(&to) {
                target.set_alias(name, &alias, to, &reason)?;
            }
            aliases.insert(alias, to);
        }
        Ok(ModelExport {
            versions: done,
            created,
            aliases,
        })
    }

    /// Pushes one run (with its artifacts read from `registry`); returns the MLflow run id.
    pub fn export_run(&self, registry: &Registry, run: &Run) -> Result<String> {
        let exp = self.experiment_id(&run.experiment)?;
        let mut tags: Vec<(String, String)> = run
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.push(("keel.run_id".into(), run.id.0.clone()));
        if let Some(s) = run.seed {
            tags.push(("keel.seed".into(), s.to_string()));
        }
        for d in &run.data {
            tags.push((format!("keel.data.{}", d.name), d.version.clone()));
        }
        if let Some(c) = &run.code_version {
            tags.push(("mlflow.source.git.commit".into(), c.clone()));
        }
        // A run exported before is found by its keel.run_id tag: re-exporting finishes it
        // (status, end time) instead of creating a duplicate.
        let found = self.post(
            "runs/search",
            &json!({"experiment_ids": [exp], "max_results": 1,
                    "filter": format!("tags.`keel.run_id` = '{}'", run.id.0)}),
        )?;
        if let Some(id) = found["runs"][0]["info"]["run_id"].as_str() {
            let mut update = json!({"run_id": id, "status": status_name(run.status)});
            if let Some(e) = run.end_ms {
                update["end_time"] = json!(e);
            }
            self.post("runs/update", &update)?;
            return Ok(id.to_string());
        }
        let mut create = json!({
            "experiment_id": exp,
            "start_time": run.start_ms,
        });
        if let Some(n) = &run.name {
            create["run_name"] = json!(n);
        }
        let v = self.post("runs/create", &create)?;
        let id = v["run"]["info"]["run_id"]
            .as_str()
            .ok_or_else(|| RegistryError::Mlflow("runs/create: no run_id".into()))?
            .to_string();

        let kv = |(k, v): &(String, String)| json!({"key": k, "value": v});
        let params: Vec<(String, String)> = run
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.chars().take(6000).collect()))
            .collect();
        for chunk in params.chunks(MAX_PARAMS) {
            let p: Vec<Value> = chunk.iter().map(kv).collect();
            self.post("runs/log-batch", &json!({"run_id": id, "params": p}))?;
        }
        for chunk in tags.chunks(MAX_TAGS) {
            let t: Vec<Value> = chunk.iter().map(kv).collect();
            self.post("runs/log-batch", &json!({"run_id": id, "tags": t}))?;
        }
        let metrics: Vec<Value> = run
            .metrics
            .iter()
            .flat_map(|(k, pts)| {
                pts.iter().map(move |p| {
                    json!({"key": k, "value": p.value, "timestamp": p.timestamp_ms, "step": p.step})
                })
            })
            .collect();
        for chunk in metrics.chunks(MAX_METRICS) {
            self.post("runs/log-batch", &json!({"run_id": id, "metrics": chunk}))?;
        }
        for a in &run.artifacts {
            let bytes = registry.artifact(&run.id, &a.name)?;
            self.put_artifact(
                &format!("mlflow-artifacts:/{exp}/{id}/artifacts/{}", a.name),
                &bytes,
            )?;
        }
        let mut update = json!({"run_id": id, "status": status_name(run.status)});
        if let Some(e) = run.end_ms {
            update["end_time"] = json!(e);
        }
        self.post("runs/update", &update)?;
        Ok(id)
    }
}

fn http_err(what: &str, source: ureq::Error) -> RegistryError {
    RegistryError::MlflowHttp {
        what: what.to_string(),
        source: Box::new(source),
    }
}

/// The path under the artifact proxy of an `mlflow-artifacts:` location
/// (`mlflow-artifacts:/1/abc/artifacts/x` -> `1/abc/artifacts/x`).
pub(crate) fn artifact_rel(location: &str) -> Result<&str> {
    let rel = location
        .strip_prefix("mlflow-artifacts:")
        .map(|r| r.trim_start_matches('/'))
        .ok_or_else(|| {
            RegistryError::Mlflow(format!(
                "artifact location {location:?} is not served by the tracking server: start \
                 `mlflow server` with its artifact proxy (the default, `--serve-artifacts`)"
            ))
        })?;
    if rel.is_empty()
        || rel
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(RegistryError::Mlflow(format!(
            "artifact location {location:?} is not a plain path"
        )));
    }
    Ok(rel)
}
