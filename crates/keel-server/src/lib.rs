//! The serving command: the Open Inference Protocol (V2) HTTP server over registered models,
//! as `keel serve` (the full CLI) and as the `keel-serve` executable, which links no training
//! code. [`ServeArgs`] are its flags; [`run`] serves until the process stops.

#![deny(missing_docs)]

use anyhow::{bail, Context, Result};
use clap::Args;
use keel::registry::signing::TrustedKeys;
use keel::registry::Registry;
use keel::serve::http::{self, ServerConfig};
use keel::serve::{Deployment, DeploymentConfigs, Follower};
use keel::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// `keel serve` arguments.
#[derive(Args)]
pub struct ServeArgs {
    /// Model registry: a directory, or an MLflow tracking server shared by a fleet
    /// (`http://HOST:PORT` or `mlflow+http://HOST:PORT`).
    #[arg(long, default_value = "keel-data/registry")]
    registry: String,
    /// Seconds between reads of each model's rollout aliases in the registry: a move made by
    /// another replica, the CLI, MLflow's UI or the retraining job is served within about two
    /// intervals. `0` reads them only at start.
    #[arg(long, default_value_t = 2.0)]
    follow_interval_secs: f64,
    /// This replica's name in the gate evidence it publishes through the registry (default:
    /// `KEEL_REPLICA`, else `HOSTNAME-PID`): gates merge every replica's evidence.
    #[arg(long)]
    replica: Option<String>,
    /// Model to serve, by registry name, as its aliases describe it (`champion` required;
    /// `shadow` or `canary` when set). `NAME:SERVICE` reads each request's entity from the
    /// feature service SERVICE of `--store`. Repeat for several models.
    #[arg(long = "model", required = true)]
    models: Vec<String>,
    /// Serve only versions signed by one of these ed25519 public keys (one hex key per line),
    /// at start and at every shadow, promotion and rollback.
    #[arg(long)]
    trusted_keys: Option<PathBuf>,
    /// Feature store (for `NAME:SERVICE` models): a directory (embedded RocksDB), or a Redis
    /// URL (`redis://HOST:PORT`, `redis+cluster://H1:P1,H2:P2`) shared by a fleet.
    #[arg(long)]
    store: Option<String>,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Also serve the protocol over gRPC (KServe's / Triton's `GRPCInferenceService`) on
    /// this address, e.g. `--grpc-addr 127.0.0.1:8001`; same models, limits and in-flight cap.
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// Log format on stderr: `text` for people, `json` (one object per line) for log
    /// pipelines. Every inference logs its model, version, request id, rows, routes, status
    /// and latency (target `keel::request`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level: `error`, `warn`, `info` (default), `debug`, `trace` or `off`; the `KEEL_LOG`
    /// environment variable, when set, overrides it with a filter (`keel::request=warn,info`).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Environment variable holding the admin bearer token (never pass secrets as arguments).
    /// When it is unset, a fresh token is written to `--admin-token-file`.
    #[arg(long, default_value = "KEEL_ADMIN_TOKEN")]
    admin_token_env: String,
    /// Where a generated admin token is written (mode 0600, replaced at every start).
    #[arg(long, default_value = "keel-data/admin-token")]
    admin_token_file: PathBuf,
    /// Disable the admin endpoints (they answer 403).
    #[arg(long)]
    no_admin: bool,
    /// `Host` names admin calls may address (repeat; default: localhost, 127.0.0.1, [::1]).
    /// `*` allows any (only behind a proxy that checks it).
    #[arg(long = "admin-host")]
    admin_hosts: Vec<String>,
    /// Deployment configuration (TOML): gates, canary share, log bounds. A `[defaults]` table
    /// applies to every model; a `[models.NAME]` table replaces it for one model.
    #[arg(long)]
    deployment_config: Option<PathBuf>,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Most rows in one inference request.
    #[arg(long, default_value_t = 65_536)]
    max_rows: usize,
    /// Most values in one response (rows x model outputs).
    #[arg(long, default_value_t = 4 << 20)]
    max_response_values: usize,
    /// Seconds allowed for a request's headers, and for an idle connection's next request.
    #[arg(long, default_value_t = 10.0)]
    header_timeout_secs: f64,
    /// Seconds allowed for a request's body.
    #[arg(long, default_value_t = 30.0)]
    body_timeout_secs: f64,
    /// Open connections at most (default: 4,096, less under a lower descriptor limit).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Requests in flight at most; more get 503.
    #[arg(long, default_value_t = 512)]
    max_concurrent_requests: usize,
    /// Runtime worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn secs(name: &str, v: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds"))
}

/// How `keel serve` logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process's log subscriber on stderr (once; a second call keeps the first).
fn init_logs(format: LogFormat, level: &str) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("KEEL_LOG") {
        Ok(f) if !f.trim().is_empty() => {
            EnvFilter::try_new(&f).map_err(|e| anyhow::anyhow!("KEEL_LOG `{f}`: {e}"))?
        }
        _ => {
            EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("--log-level `{level}`: {e}"))?
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    Ok(())
}

/// Runs the server until the process is stopped.
pub fn run(a: ServeArgs) -> Result<()> {
    init_logs(a.log_format, &a.log_level)?;
    let mut registry =
        Registry::at(&a.registry).with_context(|| format!("opening registry {}", a.registry))?;
    if let Some(p) = &a.trusted_keys {
        registry = registry.with_trusted_keys(TrustedKeys::from_file(p)?);
    }
    let store = match &a.store {
        Some(p) if p.starts_with("redis://") || p.starts_with("redis+") => Some(Arc::new(
            Store::connect(p, Default::default())
                .with_context(|| format!("connecting to store {p}"))?,
        )),
        Some(p) => Some(Arc::new(
            Store::open(p).with_context(|| format!("opening store {p}"))?,
        )),
        None => None,
    };
    let file = match &a.deployment_config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            DeploymentConfigs::from_toml(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => DeploymentConfigs::default(),
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
        let cfg = file.for_model(name).clone();
        let mut d = Deployment::from_registry(registry.clone(), name, lookup, cfg)
            .with_context(|| format!("loading model `{name}`"))?;
        if let Some(r) = &a.replica {
            d = d.with_replica(r);
        }
        let (champion, challenger) = d.versions();
        eprintln!("model {name}: champion v{champion}, challenger {challenger:?}");
        deployments.push(Arc::new(d));
    }
    if let Some(unknown) = file.models.keys().find(|m| {
        !a.models
            .iter()
            .any(|x| x.split(':').next() == Some(m.as_str()))
    }) {
        bail!("--deployment-config configures model `{unknown}`, which is not served");
    }
    let token = match std::env::var(&a.admin_token_env)
        .ok()
        .filter(|t| !t.is_empty())
    {
        _ if a.no_admin => None,
        Some(t) => Some(t),
        None => {
            let t = http::generate_admin_token(&a.admin_token_file).with_context(|| {
                format!(
                    "writing the admin token to {}",
                    a.admin_token_file.display()
                )
            })?;
            eprintln!(
                "admin token written to {} (mode 0600); send it as `Authorization: Bearer <token>`",
                a.admin_token_file.display()
            );
            Some(t)
        }
    };
    let defaults = ServerConfig::default();
    let admin_hosts = match a.admin_hosts.as_slice() {
        [] => defaults.admin_hosts.clone(),
        h if h.iter().any(|h| h == "*") => Vec::new(),
        h => h.to_vec(),
    };
    let follow = std::time::Duration::try_from_secs_f64(a.follow_interval_secs)
        .ok()
        .context("--follow-interval-secs must be 0 or a positive number of seconds")?;
    let _followers = if follow.is_zero() {
        Vec::new()
    } else {
        deployments
            .iter()
            .map(|d| Follower::start(Arc::clone(d), follow))
            .collect::<Result<Vec<_>, _>>()?
    };
    let server = http::start(
        deployments,
        ServerConfig {
            addr: a.addr,
            admin_token: token,
            admin_hosts,
            max_body_bytes: a.max_body_bytes,
            max_rows: a.max_rows,
            max_response_values: a.max_response_values,
            header_timeout: secs("header-timeout-secs", a.header_timeout_secs)?,
            body_timeout: secs("body-timeout-secs", a.body_timeout_secs)?,
            max_connections: a.max_connections.unwrap_or(defaults.max_connections),
            max_concurrent_requests: a.max_concurrent_requests,
            threads: a.threads,
            grpc_addr: a.grpc_addr,
        },
    )?;
    eprintln!(
        "keel serving the V2 protocol on http://{}/v2 (metrics on /metrics)",
        server.addr()
    );
    if let Some(g) = server.grpc_addr() {
        eprintln!("keel serving the V2 protocol over gRPC on {g}");
    }
    server.wait()?;
    Ok(())
}
