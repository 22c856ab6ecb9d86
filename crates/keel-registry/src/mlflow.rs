//! Export of tracked runs to an MLflow tracking server over its REST API (`/api/2.0/mlflow`).
//!
//! Params, metric histories (value, step, timestamp), tags and artifacts are pushed; keel's
//! seed, data versions, code version and run id travel as tags (`keel.seed`, `keel.data.<name>`,
//! `mlflow.source.git.commit`, `keel.run_id`). Artifacts go through the server's artifact proxy
//! (`mlflow server` serves artifacts by default since MLflow 2).

use std::time::Duration;

use serde_json::{json, Value};

use crate::run::{Run, RunStatus};
use crate::{Registry, RegistryError, Result};

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
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        MlflowClient {
            base: base_url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/2.0/mlflow/{path}", self.base)
    }

    fn check(what: &str, mut resp: ureq::http::Response<ureq::Body>) -> Result<Value> {
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| http_err(what, e))?;
        if !(200..300).contains(&status) {
            return Err(RegistryError::Mlflow(format!(
                "{what}: HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|source| RegistryError::MlflowJson {
            what: what.to_string(),
            source,
        })
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let resp = self
            .agent
            .post(&self.url(path))
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
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{exp}/{id}/artifacts/{}",
                self.base, a.name
            );
            let resp = self
                .agent
                .put(&url)
                .send(&bytes[..])
                .map_err(|e| http_err(&format!("artifact {}", a.name), e))?;
            Self::check("artifact upload", resp)?;
        }
        let status = match run.status {
            RunStatus::Running => "RUNNING",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        };
        let mut update = json!({"run_id": id, "status": status});
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
