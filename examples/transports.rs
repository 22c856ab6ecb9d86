//! # The V2 protocol over HTTP and over gRPC, same model, same run
//!
//! Trains the 100-tree, 10-feature model of `v2_load`, serves it with both transports of
//! `keel serve` (HTTP/1.1 JSON, and gRPC with raw tensor contents as Triton's and KServe's
//! clients send them), and drives each for a few seconds with the same number of concurrent
//! closed-loop clients (each waits for its answer before sending again), one row per request.
//! Prints requests/s and p50/p99 latency for both.
//!
//! ```text
//! cargo run --release -p keel-examples --example transports -- [SECONDS] [CLIENTS]
//! ```
//! Defaults: 5 s per transport, 8 clients. Data lives in `./keel-data/transports`.

use anyhow::Result;
use keel::registry::Registry;
use keel::serve::http::grpc::pb;
use keel::serve::http::{self, ServerConfig};
use keel::serve::{Deployment, DeploymentConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "shared/tabular.rs"]
mod tabular;
use tabular::{value, FEATURES};

fn summary(name: &str, mut lat: Vec<f64>, secs: f64) {
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "| {name} | {:.0} | {:.0} | {:.0} |",
        lat.len() as f64 / secs,
        q(0.5),
        q(0.99)
    );
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let root = std::path::Path::new("keel-data/transports");
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }
    let registry = Registry::open(root.join("registry"))?;
    tabular::train(&registry, "transports", "tabular")?;
    let d = Arc::new(Deployment::from_registry(
        registry,
        "tabular",
        None,
        DeploymentConfig {
            log_sample_rate: 0.0,
            ..Default::default()
        },
    )?);
    let server = http::start(
        vec![d],
        ServerConfig {
            addr: "127.0.0.1:0".parse()?,
            grpc_addr: Some("127.0.0.1:0".parse()?),
            threads: 2,
            ..Default::default()
        },
    )?;
    let row: Vec<f64> = (0..FEATURES).map(|f| value(123, f)).collect();
    println!(
        "{clients} closed-loop clients, {secs} s per transport, one [1, {FEATURES}] FP64 row per request"
    );
    println!("| transport | requests/s | p50 us | p99 us |");
    println!("|---|---|---|---|");

    // HTTP/1.1, JSON, one keep-alive connection per client.
    let url = format!("http://{}/v2/models/tabular/infer", server.addr());
    let body = serde_json::json!({
        "inputs": [{ "name": "x", "shape": [1, FEATURES], "datatype": "FP64", "data": row }]
    })
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let lat: Vec<f64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let agent = ureq::Agent::new_with_defaults();
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let ok = agent
                            .post(&url)
                            .header("content-type", "application/json")
                            .send(body.as_bytes())
                            .and_then(|mut r| r.body_mut().read_to_vec());
                        if ok.is_ok() {
                            lat.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                    }
                    lat
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    summary("HTTP/1.1 JSON", lat, secs as f64);

    // gRPC, raw FP64 contents, one HTTP/2 connection per client.
    let grpc = format!(
        "http://{}",
        server.grpc_addr().expect("the server was asked for gRPC")
    );
    let raw: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lat: Vec<f64> = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (grpc, raw) = (grpc.clone(), raw.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let Ok(mut c) =
                    pb::grpc_inference_service_client::GrpcInferenceServiceClient::connect(grpc)
                        .await
                else {
                    return lat;
                };
                while tokio::time::Instant::now() < deadline {
                    let req = pb::ModelInferRequest {
                        model_name: "tabular".into(),
                        inputs: vec![pb::model_infer_request::InferInputTensor {
                            name: "x".into(),
                            datatype: "FP64".into(),
                            shape: vec![1, FEATURES as i64],
                            ..Default::default()
                        }],
                        raw_input_contents: vec![raw.clone()],
                        ..Default::default()
                    };
                    let t = Instant::now();
                    if c.model_infer(req).await.is_ok() {
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    });
    summary("gRPC raw contents", lat, secs as f64);
    server.stop()?;
    Ok(())
}
