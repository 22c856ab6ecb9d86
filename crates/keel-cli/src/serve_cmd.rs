//! `keel serve`: the Open Inference Protocol (V2) HTTP server over registered models.

use anyhow::{bail, Context, Result};
use clap::Args;
use keel::registry::Registry;
use keel::serve::http::{self, ServerConfig};
use keel::serve::{Deployment, DeploymentConfig};
use keel::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// `keel serve` arguments.
#[derive(Args)]
pub struct ServeArgs {
    /// Model registry directory.
    #[arg(long, default_value = "keel-data/registry")]
    registry: PathBuf,
    /// Model to serve, by registry name, as its aliases describe it (`champion` required;
    /// `shadow` or `canary` when set). `NAME:SERVICE` reads each request's entity from the
    /// feature service SERVICE of `--store`. Repeat for several models.
    #[arg(long = "model", required = true)]
    models: Vec<String>,
    /// Feature store directory (for `NAME:SERVICE` models).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Listen address. Anything but loopback needs an admin token.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Environment variable holding the admin bearer token (never pass secrets as arguments).
    #[arg(long, default_value = "KEEL_ADMIN_TOKEN")]
    admin_token_env: String,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Runtime worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Runs the server until the process is stopped.
pub fn run(a: ServeArgs) -> Result<()> {
    let registry = Registry::open(&a.registry)
        .with_context(|| format!("opening registry {}", a.registry.display()))?;
    let store = match &a.store {
        Some(p) => Some(Arc::new(
            Store::open(p).with_context(|| format!("opening store {}", p.display()))?,
        )),
        None => None,
    };
    let mut deployments = Vec::new();
    for m in &a.models {
        let (name, service) = match m.split_once(':') {
            Some((n, s)) => (n, Some(s)),
            None => (m.as_str(), None),
        };
        let lookup = match (service, &store) {
            (Some(s), Some(st)) => Some((Arc::clone(st), s.to_string())),
            (Some(_), None) => bail!("model `{m}` names a feature service: pass --store"),
            (None, _) => None,
        };
        let d =
            Deployment::from_registry(registry.clone(), name, lookup, DeploymentConfig::default())
                .with_context(|| format!("loading model `{name}`"))?;
        let (champion, challenger) = d.versions();
        eprintln!("model {name}: champion v{champion}, challenger {challenger:?}");
        deployments.push(Arc::new(d));
    }
    let token = std::env::var(&a.admin_token_env)
        .ok()
        .filter(|t| !t.is_empty());
    let server = http::start(
        deployments,
        ServerConfig {
            addr: a.addr,
            admin_token: token,
            max_body_bytes: a.max_body_bytes,
            threads: a.threads,
        },
    )?;
    eprintln!(
        "keel serving the V2 protocol on http://{}/v2 (metrics on /metrics)",
        server.addr()
    );
    server.wait()?;
    Ok(())
}
