//! The last step of the `text_classifier` and `image_classifier` examples: serve a registered
//! champion over the V2 protocol on loopback (what `keel serve --model NAME` does) and send one
//! inference request.

use anyhow::{Context, Result};
use keel::registry::Registry;
use keel::serve::http::{self, ServerConfig};
use keel::serve::{Deployment, DeploymentConfig};
use serde_json::Value;
use std::sync::Arc;

/// Serves `model` from `registry`, POSTs `body` to its `infer` endpoint and returns the
/// `predict` output's values (every class of every row, row-major).
pub fn serve_and_ask(registry: &Registry, model: &str, body: &Value) -> Result<Vec<f64>> {
    let deployment = Arc::new(Deployment::from_registry(
        registry.clone(),
        model,
        None,
        DeploymentConfig::default(),
    )?);
    let server = http::start(
        vec![deployment],
        ServerConfig {
            addr: "127.0.0.1:0".parse()?,
            threads: 2,
            ..ServerConfig::default()
        },
    )?;
    let answer: Value = ureq::post(&format!("http://{}/v2/models/{model}/infer", server.addr()))
        .send_json(body)?
        .body_mut()
        .read_json()?;
    server.stop()?;
    Ok(answer["outputs"][0]["data"]
        .as_array()
        .context("a predict output")?
        .iter()
        .filter_map(Value::as_f64)
        .collect())
}

/// The most probable class of a row and its probability.
pub fn best(row: &[f64]) -> (usize, f64) {
    row.iter().enumerate().fold(
        (0, f64::MIN),
        |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
    )
}
