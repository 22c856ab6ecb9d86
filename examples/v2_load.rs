//! # The V2 HTTP server under a real load generator
//!
//! Trains a 100-tree LightGBM model over 10 features (tracked, registered, champion), serves
//! it with `keel_serve::http` on loopback, and drives it with [`oha`](https://crates.io/crates/oha)
//! at a fixed request rate (`-q`, with latency correction, so queueing behind a slow response is
//! counted rather than hidden). Each request is one V2 inference of one row (a `[1, 10]` FP64
//! tensor) in JSON. The in-process latency of the same model is printed alongside, so the cost
//! of HTTP is visible.
//!
//! ```text
//! cargo install oha --locked          # once (or set OHA=/path/to/oha)
//! cargo run --release -p keel-examples --example v2_load -- [RATE] [SECONDS] [CONNECTIONS]
//! ```
//! Defaults: 5000 requests/s for 10 s over 32 connections. Data lives in `./keel-data/v2_load`.

use anyhow::{bail, Context, Result};
use keel::registry::Registry;
use keel::serve::http::{self, ServerConfig};
use keel::serve::{Deployment, DeploymentConfig, Request};
use keel::store::Value;
use std::sync::Arc;
use std::time::Instant;

#[path = "shared/tabular.rs"]
mod tabular;
use tabular::{value, FEATURES};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rate: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let secs: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let conns: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let root = std::path::Path::new("keel-data/v2_load");
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }

    // A 100-tree model (model A of the GBDT benchmarks' size) trained on a fixed rule.
    let names: Vec<String> = (0..FEATURES).map(|f| format!("f{f}")).collect();
    let registry = Registry::open(root.join("registry"))?;
    let version = tabular::train(&registry, "v2", "tabular")?;
    let d = Arc::new(Deployment::from_registry(
        registry,
        "tabular",
        None,
        DeploymentConfig {
            log_sample_rate: 0.0,
            ..Default::default()
        },
    )?);

    // In process, one request at a time: the floor HTTP adds to.
    let row: Vec<f64> = (0..FEATURES).map(|f| value(123, f)).collect();
    let mut lat = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let r = Request {
            features: names
                .iter()
                .zip(&row)
                .map(|(n, x)| (n.clone(), Value::F64(*x)))
                .collect(),
            ..Default::default()
        };
        let t = Instant::now();
        std::hint::black_box(d.predict(r)?);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "in process (100 trees, 10 features): p50 {:.1} us, p99 {:.1} us",
        q(0.5),
        q(0.99)
    );

    let server = http::start(
        vec![d.clone()],
        ServerConfig {
            addr: "127.0.0.1:0".parse()?,
            threads: 2,
            ..Default::default()
        },
    )?;
    let url = format!("http://{}/v2/models/tabular/infer", server.addr());
    let body = serde_json::json!({
        "inputs": [{ "name": "x", "shape": [1, FEATURES], "datatype": "FP64", "data": row }]
    })
    .to_string();
    let oha = std::env::var("OHA").unwrap_or_else(|_| "oha".into());
    println!("oha: {rate} requests/s for {secs} s over {conns} connections -> {url}");
    let run = std::process::Command::new(&oha)
        .args(["-z", &format!("{secs}s"), "-q", &rate.to_string()])
        .args(["-c", &conns.to_string(), "--latency-correction", "--no-tui"])
        .args(["--output-format", "json", "-m", "POST"])
        .args(["-T", "application/json", "-d", &body, &url])
        .output()
        .with_context(|| format!("running `{oha}` (cargo install oha --locked, or set OHA)"))?;
    if !run.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&run.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&run.stdout)?;
    let p = &report["latencyPercentiles"];
    let ms = |k: &str| p[k].as_f64().unwrap_or(f64::NAN) * 1e3;
    println!(
        "over HTTP: {:.0} requests/s achieved, success {:.4}, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
        report["summary"]["requestsPerSec"].as_f64().unwrap_or(f64::NAN),
        report["summary"]["successRate"].as_f64().unwrap_or(f64::NAN),
        ms("p50"),
        ms("p99"),
        ms("p99.9"),
    );
    println!("status codes: {}", report["statusCodeDistribution"]);
    let (n, errors, p50, p99) = d.route_stats(version, keel::serve::Route::Champion);
    println!(
        "server side (model only): {n} requests, {errors} errors, p50 {p50:.1} us, p99 {p99:.1} us"
    );
    server.stop()?;
    Ok(())
}
