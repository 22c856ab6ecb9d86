//! `keel runs`, `keel models`, `keel train`: tracking, registry and training jobs.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keel::registry::signing::{public_path, SigningKey, TrustedKeys};
use keel::registry::{Registry, RunFilter, RunId};
use keel::train::{TrainingData, TrainingJob};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::output::{OutputFormat, Records};

/// Where the registry lives (`--registry`, default `keel-data/registry`).
#[derive(Args, Clone)]
pub struct RegistryArg {
    /// Registry: a directory, or an MLflow tracking server (`http://HOST:PORT`,
    /// `mlflow+http://HOST:PORT`).
    #[arg(long, default_value = "keel-data/registry", global = true)]
    registry: String,
}

impl RegistryArg {
    fn open(&self) -> Result<Registry> {
        Registry::at(&self.registry).with_context(|| format!("opening registry {}", self.registry))
    }
}

#[derive(Subcommand)]
pub enum RunsCmd {
    /// List runs, optionally filtered: `experiment=fraud params.num_leaves=31
    /// metrics.test.auc>=0.8 status=finished order_by=metrics.test.auc desc limit=10`.
    #[command(
        after_help = "Example:\n  keel runs list experiment=fraud metrics.test.auc>=0.8 order_by=metrics.test.auc desc limit=5"
    )]
    List {
        /// Query terms, e.g. `experiment=fraud metrics.test.auc>=0.8 order_by=metrics.test.auc desc`.
        query: Vec<String>,
        /// `table` for people, `json` or `csv` for scripts (fields: run, experiment, name,
        /// status, duration_ms, metrics).
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Show one run: params, metrics, data versions, artifacts.
    #[command(after_help = "Example:\n  keel runs show 20261205-0932-ab12 --format json")]
    Show {
        /// Run id, e.g. `keel runs show --registry keel-data/registry 20261205-0932-ab12`.
        id: String,
        /// `table` (field / value lines), `json` (the whole run record) or `csv`.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Compare runs side by side (params that differ are marked `*`).
    #[command(after_help = "Example:\n  keel runs compare RUN_A RUN_B --format csv")]
    Compare {
        /// Run ids (two or more).
        #[arg(required = true, num_args = 2..)]
        ids: Vec<String>,
        /// `table`, `json` (runs, params, metrics, differing_params) or `csv`.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
}

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// List models with their versions and aliases.
    #[command(after_help = "Example:\n  keel models list --format json")]
    List {
        /// `table`, `json` or `csv` (fields: model, versions, aliases).
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Show a version's manifest (default: the latest).
    #[command(after_help = "Example:\n  keel models show fraud --version 3")]
    Show {
        /// Model name.
        name: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<u32>,
        /// `table` (field / value lines), `json` (the manifest document) or `csv`.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Move or roll back aliases other than the rollout's (champion, shadow and canary move
    /// only through `keel models rollout`).
    #[command(subcommand)]
    Alias(AliasCmd),
    /// The rollout of a model: its champion, shadow and canary, moved only as the rollout
    /// allows (shadow -> canary -> champion, withdraw, rollback).
    #[command(
        after_help = "Example:\n  keel models rollout fraud promote 3 --reason \"canary gate passed\""
    )]
    Rollout {
        /// Model name.
        name: String,
        #[command(subcommand)]
        step: RolloutStep,
    },
    /// Verify the whole registry: every run and artifact, every version's files (sha256),
    /// every alias state. Lists damaged entries; exits 1 when there is any.
    #[command(after_help = "Example:\n  keel models verify --trusted-keys release.pub")]
    Verify {
        /// Also require every version to be signed by one of these public keys.
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
    },
    /// Write a new ed25519 key pair: the private key to OUT (mode 0600), the public to OUT.pub.
    #[command(after_help = "Example:\n  keel models keygen release.key")]
    Keygen {
        /// Private key file to create.
        out: PathBuf,
    },
    /// Sign an existing version (e.g. registered before signing was adopted).
    #[command(after_help = "Example:\n  keel models sign fraud 3 --key release.key")]
    Sign {
        /// Model name.
        name: String,
        /// Version.
        version: u32,
        /// Private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Copy a model of this (directory) registry into an MLflow server's registry: its
    /// versions' runs, the versions (verified on the way out and in) and its aliases. Safe to
    /// repeat: nothing is created twice.
    #[command(after_help = "Example:
  keel models export fraud --registry keel-data/registry --to http://127.0.0.1:5000")]
    Export {
        /// Model name.
        name: String,
        /// The MLflow tracking server, `http://HOST:PORT`.
        #[arg(long)]
        to: String,
    },
    /// Score every entity of a CSV with the champion, exactly as online requests are scored
    /// (store lookup + frozen transforms + model), and write every output into the store as
    /// view `NAME_predictions` (version = the champion's) served by `NAME_precomputed`.
    #[command(
        after_help = "Example:\n  keel models precompute fraud --service fraud_v1 --path keel-data/store \\\n    --view card_stats@1 --entities cards.csv"
    )]
    Precompute {
        /// Model name.
        name: String,
        /// The feature service the model reads.
        #[arg(long)]
        service: String,
        /// The store.
        #[command(flatten)]
        store: crate::store_cmd::StoreAt,
        /// The view whose entities are scored, `VIEW@VERSION` (the predictions are keyed alike).
        #[arg(long)]
        view: String,
        /// CSV of entity keys: a header naming the service's join keys, one entity per row.
        #[arg(long)]
        entities: PathBuf,
        /// Scoring threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// `table`, `json` or `csv` (fields: view, service, model_version, scored, errors, seconds).
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
}

/// One rollout move (`keel models rollout NAME ...`).
#[derive(Subcommand)]
pub enum RolloutStep {
    /// Print the champion, shadow and canary versions.
    #[command(after_help = "Example:\n  keel models rollout fraud status --format json")]
    Status {
        /// `table`, `json` or `csv` (fields: champion, shadow, canary).
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Set the first champion of a model that has none.
    #[command(
        after_help = "Example:\n  keel models rollout fraud first-champion 1 --reason \"initial release\""
    )]
    FirstChampion {
        /// Version.
        version: u32,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Put a version in shadow beside the champion.
    #[command(
        after_help = "Example:\n  keel models rollout fraud shadow 2 --reason \"retrained on July\""
    )]
    Shadow {
        /// Version.
        version: u32,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Move the version in shadow to canary.
    #[command(
        after_help = "Example:\n  keel models rollout fraud canary 2 --reason \"shadow agreement 0.97\""
    )]
    Canary {
        /// Version (must be the shadow).
        version: u32,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Make the version on canary the champion.
    #[command(
        after_help = "Example:\n  keel models rollout fraud promote 2 --reason \"canary p99 and AUC held\""
    )]
    Promote {
        /// Version (must be on canary).
        version: u32,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Withdraw the challenger (shadow or canary).
    #[command(
        after_help = "Example:\n  keel models rollout fraud withdraw --reason \"p99 regression\""
    )]
    Withdraw {
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Move the champion back to the version before its last move (its bundle is verified
    /// first).
    #[command(
        after_help = "Example:\n  keel models rollout fraud rollback --reason \"precision dropped\""
    )]
    Rollback {
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum AliasCmd {
    /// Point an alias at a version.
    #[command(
        after_help = "Example:\n  keel models alias set fraud champion 3 --reason \"better AUC on the July holdout\""
    )]
    Set {
        /// Model name.
        name: String,
        /// Alias (champion, challenger, ...).
        alias: String,
        /// Version.
        version: u32,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Move an alias back to where it pointed before its last move.
    #[command(
        after_help = "Example:\n  keel models alias rollback fraud champion --reason \"p99 regression\""
    )]
    Rollback {
        /// Model name.
        name: String,
        /// Alias.
        alias: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Print the audit log of a model's aliases.
    #[command(after_help = "Example:\n  keel models alias history fraud --format json")]
    History {
        /// Model name.
        name: String,
        /// `table` (then the audit chain head), `json` (events and chain head) or `csv`.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
}

/// `keel train` arguments.
#[derive(Args)]
pub struct TrainArgs {
    /// Job description (TOML): experiment, model, label, timestamp, split, transform, params.
    #[arg(long)]
    config: PathBuf,
    /// Training data (CSV with a header).
    #[arg(long)]
    data: PathBuf,
    /// Sign the registered version with this ed25519 private key (`keel models keygen`).
    #[arg(long)]
    signing_key: Option<PathBuf>,
}

pub fn runs(reg: &RegistryArg, cmd: RunsCmd) -> Result<()> {
    let r = reg.open()?;
    match cmd {
        RunsCmd::List { query, format } => {
            let filter = RunFilter::parse(&query.join(" "))?;
            let (runs, damaged) = r.search_runs_reporting(&filter)?;
            for d in &damaged {
                eprintln!(
                    "warning: skipping damaged run {}: {} (see `keel models verify`)",
                    d.path.display(),
                    d.problem
                );
            }
            let last = |run: &keel::registry::Run| -> Vec<(String, f64)> {
                run.metrics
                    .iter()
                    .filter(|(k, _)| !k.starts_with("rows."))
                    .map(|(k, v)| (k.clone(), v.last().map_or(f64::NAN, |p| p.value)))
                    .collect()
            };
            let rows = runs
                .iter()
                .map(|run| {
                    let metrics: Vec<String> = last(run)
                        .iter()
                        .map(|(k, v)| format!("{k}={v:.4}"))
                        .collect();
                    vec![
                        run.id.to_string(),
                        run.experiment.clone(),
                        run.name.clone().unwrap_or_default(),
                        run.status.to_string(),
                        run.duration_ms().map_or(String::new(), |d| d.to_string()),
                        metrics.join(" "),
                    ]
                })
                .collect();
            let json: Vec<Json> = runs
                .iter()
                .map(|run| {
                    json!({
                        "run": run.id.to_string(), "experiment": run.experiment, "name": run.name,
                        "status": run.status.to_string(), "duration_ms": run.duration_ms(),
                        "metrics": last(run).into_iter().collect::<BTreeMap<_, _>>(),
                    })
                })
                .collect();
            Records::new(
                &[
                    "run",
                    "experiment",
                    "name",
                    "status",
                    "duration_ms",
                    "metrics",
                ],
                rows,
            )
            .with_json(Json::Array(json))
            .print(format)?;
        }
        RunsCmd::Show { id, format } => {
            let run = r.run(&RunId(id))?;
            let mut rows = vec![
                vec!["run".into(), run.id.to_string()],
                vec!["experiment".into(), run.experiment.clone()],
                vec!["name".into(), run.name.clone().unwrap_or_default()],
                vec!["status".into(), run.status.to_string()],
                vec![
                    "start".into(),
                    keel::core::format_timestamp_ms(run.start_ms),
                ],
                vec![
                    "end".into(),
                    run.end_ms
                        .map_or(String::new(), keel::core::format_timestamp_ms),
                ],
                vec![
                    "seed".into(),
                    run.seed.map_or(String::new(), |s| s.to_string()),
                ],
                vec![
                    "code_version".into(),
                    run.code_version.clone().unwrap_or_default(),
                ],
            ];
            rows.extend(
                run.params
                    .iter()
                    .map(|(k, v)| vec![format!("params.{k}"), v.clone()]),
            );
            rows.extend(run.metrics.iter().map(|(k, v)| {
                vec![
                    format!("metrics.{k}"),
                    v.last().map_or(String::new(), |p| p.value.to_string()),
                ]
            }));
            rows.extend(
                run.tags
                    .iter()
                    .map(|(k, v)| vec![format!("tags.{k}"), v.clone()]),
            );
            rows.extend(
                run.data
                    .iter()
                    .map(|d| vec![format!("data.{}", d.name), d.version.clone()]),
            );
            rows.extend(
                run.artifacts
                    .iter()
                    .map(|a| vec![format!("artifacts.{}", a.name), a.sha256.clone()]),
            );
            Records::new(&["field", "value"], rows)
                .with_json(serde_json::to_value(&run)?)
                .print(format)?;
        }
        RunsCmd::Compare { ids, format } => {
            let ids: Vec<RunId> = ids.into_iter().map(RunId).collect();
            let c = r.compare_runs(&ids)?;
            let mut columns = vec!["name".to_string()];
            columns.extend(c.runs.iter().map(|id| id.0.clone()));
            let mut rows = Vec::new();
            for (k, vals) in &c.params {
                let mark = if c.differing_params.contains(k) {
                    "*"
                } else {
                    ""
                };
                let mut row = vec![format!("{mark}params.{k}")];
                row.extend(vals.iter().map(|v| v.clone().unwrap_or_else(|| "-".into())));
                rows.push(row);
            }
            for (k, vals) in &c.metrics {
                let mut row = vec![format!("metrics.{k}")];
                row.extend(
                    vals.iter()
                        .map(|v| v.map_or_else(|| "-".into(), |x| format!("{x:.6}"))),
                );
                rows.push(row);
            }
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            Records::new(&names, rows)
                .with_json(serde_json::to_value(&c)?)
                .print(format)?;
        }
    }
    Ok(())
}

pub fn models(reg: &RegistryArg, cmd: ModelsCmd) -> Result<()> {
    let r = reg.open()?;
    match cmd {
        ModelsCmd::Keygen { out } => {
            let key = SigningKey::write_new(&out)?;
            println!(
                "private key {} (0600), public key {} in {}",
                out.display(),
                key.public(),
                public_path(&out).display()
            );
        }
        ModelsCmd::Sign { name, version, key } => {
            let key = SigningKey::from_file(&key)?;
            r.sign(&name, version, &key)?;
            println!("signed {name} v{version} with {}", key.public());
        }
        ModelsCmd::Export { name, to } => {
            let client =
                keel::registry::MlflowClient::new(to.strip_prefix("mlflow+").unwrap_or(&to));
            let out = client.export_model(&r, &name)?;
            for (local, remote) in &out.versions {
                println!("{name} v{local} -> {to} v{remote}");
            }
            for (alias, v) in &out.aliases {
                println!("{name}@{alias} -> v{v}");
            }
            println!(
                "{} versions created ({} already there)",
                out.created,
                out.versions.len() - out.created
            );
        }
        ModelsCmd::Precompute {
            name,
            service,
            store,
            view,
            entities,
            threads,
            format,
        } => {
            use keel::store::{StoreOptions, Value};
            let st = std::sync::Arc::new(crate::store_cmd::open_store(
                &store,
                StoreOptions::default(),
                false,
            )?);
            let keys = st.service_keys(&service)?;
            let schema = keel::core::Schema::new(keys.clone())?;
            let frame = crate::progress::read_csv(&entities, Some(&schema))?;
            let cols = keys
                .iter()
                .map(|k| frame.column(&k.name))
                .collect::<keel::core::Result<Vec<_>>>()?;
            let rows: Vec<Vec<Value>> = (0..frame.nrows())
                .map(|i| cols.iter().map(|c| Value::from(c.get(i))).collect())
                .collect();
            let d = keel::serve::Deployment::from_registry(
                r,
                &name,
                Some((std::sync::Arc::clone(&st), service)),
                keel::serve::DeploymentConfig::default(),
            )?;
            let (v, ver) = crate::store_cmd::parse_view(&view)?;
            let threads = match threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let rep = d.precompute(&st, (&v, ver), &rows, now, threads)?;
            Records::new(
                &[
                    "view",
                    "service",
                    "model_version",
                    "scored",
                    "errors",
                    "seconds",
                ],
                vec![vec![
                    rep.view.clone(),
                    rep.service.clone(),
                    rep.model_version.to_string(),
                    rep.scored.to_string(),
                    rep.errors.to_string(),
                    format!("{:.3}", rep.seconds),
                ]],
            )
            .with_json(json!({
                "view": rep.view, "service": rep.service, "model_version": rep.model_version,
                "scored": rep.scored, "errors": rep.errors, "seconds": rep.seconds,
            }))
            .print(format)?;
        }
        ModelsCmd::Verify { trusted_keys } => {
            let r = match trusted_keys {
                Some(p) => r.with_trusted_keys(TrustedKeys::from_file(&p)?),
                None => r,
            };
            let report = r.check()?;
            for d in &report.damaged {
                println!("DAMAGED {}: {}", d.path.display(), d.problem);
            }
            println!(
                "{} runs, {} versions, {} models verified; {} damaged",
                report.runs,
                report.versions,
                report.models,
                report.damaged.len()
            );
            if !report.is_clean() {
                std::process::exit(1);
            }
        }
        ModelsCmd::List { format } => {
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for m in r.models()? {
                let versions = r.versions(&m)?;
                let aliases = r.aliases(&m)?;
                rows.push(vec![
                    m.clone(),
                    versions
                        .iter()
                        .map(|v| format!("v{v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    aliases
                        .iter()
                        .map(|(a, v)| format!("{a}=v{v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ]);
                json.push(json!({ "model": m, "versions": versions, "aliases": aliases }));
            }
            Records::new(&["model", "versions", "aliases"], rows)
                .with_json(Json::Array(json))
                .print(format)?;
        }
        ModelsCmd::Show {
            name,
            version,
            format,
        } => {
            let v = match version {
                Some(v) => v,
                None => *r
                    .versions(&name)?
                    .last()
                    .with_context(|| format!("model {name} has no versions"))?,
            };
            let mv = r.version(&name, v)?;
            let doc = json!({
                "name": mv.name, "version": mv.version, "run_id": mv.run_id.0,
                "created_ms": mv.created_ms, "flavor": mv.meta.flavor,
                "feature_service": mv.meta.feature_service,
                "input_schema": mv.meta.input_schema.as_ref().map(|s| s.to_string()),
                "eval": mv.meta.eval, "seed": mv.meta.seed, "data_version": mv.meta.data_version,
                "files": mv.files.iter().map(|f| json!({"name": f.name, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>(),
            });
            let mut rows = vec![
                vec!["name".into(), mv.name.clone()],
                vec!["version".into(), mv.version.to_string()],
                vec!["run_id".into(), mv.run_id.0.clone()],
                vec![
                    "created".into(),
                    keel::core::format_timestamp_ms(mv.created_ms),
                ],
                vec!["flavor".into(), mv.meta.flavor.clone()],
                vec![
                    "feature_service".into(),
                    mv.meta.feature_service.clone().unwrap_or_default(),
                ],
                vec![
                    "input_schema".into(),
                    mv.meta
                        .input_schema
                        .as_ref()
                        .map_or(String::new(), |s| s.to_string()),
                ],
                vec![
                    "seed".into(),
                    mv.meta.seed.map_or(String::new(), |s| s.to_string()),
                ],
                vec![
                    "data_version".into(),
                    mv.meta.data_version.clone().unwrap_or_default(),
                ],
            ];
            rows.extend(
                mv.meta
                    .eval
                    .iter()
                    .map(|(k, v)| vec![format!("eval.{k}"), v.to_string()]),
            );
            rows.extend(mv.files.iter().map(|f| {
                vec![
                    format!("files.{}", f.name),
                    format!("sha256 {} ({} bytes)", f.sha256, f.size),
                ]
            }));
            Records::new(&["field", "value"], rows)
                .with_json(doc)
                .print(format)?;
        }
        ModelsCmd::Rollout { name, step } => rollout(&r, &name, step)?,
        ModelsCmd::Alias(AliasCmd::Set {
            name,
            alias,
            version,
            reason,
        }) => {
            refuse_rollout_alias(&alias)?;
            let ev = r.set_alias(&name, &alias, version, &reason)?;
            println!("{name}@{alias}: {:?} -> v{version}", ev.from);
        }
        ModelsCmd::Alias(AliasCmd::Rollback {
            name,
            alias,
            reason,
        }) => {
            refuse_rollout_alias(&alias)?;
            let ev = r.rollback(&name, &alias, &reason)?;
            println!("{name}@{alias}: rolled back {:?} -> {:?}", ev.from, ev.to);
        }
        ModelsCmd::Alias(AliasCmd::History { name, format }) => {
            let events = r.audit(&name)?;
            let head = r.audit_head(&name)?;
            let rows = events
                .iter()
                .map(|ev| {
                    vec![
                        keel::core::format_timestamp_ms(ev.at_ms),
                        ev.alias.clone(),
                        ev.from.map_or("-".into(), |v| format!("v{v}")),
                        ev.to.map_or("-".into(), |v| format!("v{v}")),
                        if ev.rollback { "rollback" } else { "move" }.into(),
                        ev.who.clone(),
                        ev.reason.clone(),
                    ]
                })
                .collect();
            let json = json!({
                "events": events.iter().map(|ev| json!({
                    "at_ms": ev.at_ms, "alias": ev.alias, "from": ev.from, "to": ev.to,
                    "rollback": ev.rollback, "who": ev.who, "reason": ev.reason,
                })).collect::<Vec<_>>(),
                "chain_head": head,
            });
            Records::new(
                &["at", "alias", "from", "to", "kind", "who", "reason"],
                rows,
            )
            .with_json(json)
            .print(format)?;
            if format == OutputFormat::Table {
                println!("audit chain head {head}");
            }
        }
    }
    Ok(())
}

/// Rollout aliases move only through `keel models rollout` (one owner of the rollout).
fn refuse_rollout_alias(alias: &str) -> Result<()> {
    if keel::registry::rollout::is_rollout_alias(alias) {
        anyhow::bail!(
            "`{alias}` is a rollout alias: move it with `keel models rollout NAME shadow|canary|promote|withdraw|rollback`"
        );
    }
    Ok(())
}

fn rollout(r: &Registry, name: &str, step: RolloutStep) -> Result<()> {
    let ro = keel::registry::rollout::Rollout::new(r, name);
    let v = |x: Option<u32>| x.map_or("-".to_string(), |v| format!("v{v}"));
    match step {
        RolloutStep::Status { format } => {
            let s = ro.state()?;
            Records::new(
                &["champion", "shadow", "canary"],
                vec![vec![v(s.champion), v(s.shadow), v(s.canary)]],
            )
            .with_json(json!({ "champion": s.champion, "shadow": s.shadow, "canary": s.canary }))
            .print(format)?;
        }
        RolloutStep::FirstChampion { version, reason } => {
            ro.first_champion(version, &reason)?;
            println!("{name}: champion v{version}");
        }
        RolloutStep::Shadow { version, reason } => {
            r.load(name, version)?; // verified before it is named
            ro.shadow(version, &reason)?;
            println!("{name}: v{version} in shadow");
        }
        RolloutStep::Canary { version, reason } => {
            ro.to_canary(version, &reason)?;
            println!("{name}: v{version} on canary");
        }
        RolloutStep::Promote { version, reason } => {
            ro.promote(version, &reason)?;
            println!("{name}: v{version} is the champion");
        }
        RolloutStep::Withdraw { reason } => match ro.withdraw(&reason)? {
            Some(w) => println!("{name}: v{w} withdrawn"),
            None => println!("{name}: no challenger to withdraw"),
        },
        RolloutStep::Rollback { reason } => {
            let target = ro.rollback_target()?;
            if let Some(t) = target {
                r.load(name, t)?; // the target's bundle must verify before the alias moves
            }
            ro.rollback_champion(target, &reason)?;
            println!("{name}: champion rolled back to {}", v(target));
        }
    }
    Ok(())
}

pub fn train(reg: &RegistryArg, args: TrainArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let job = TrainingJob::from_toml(&text)?;
    let frame = crate::progress::read_csv(&args.data, None)?;
    let mut registry = reg.open()?;
    if let Some(k) = &args.signing_key {
        registry = registry.with_signing_key(SigningKey::from_file(k)?);
    }
    // A bar over epochs (deep kinds) or the one LightGBM call, with rate and ETA.
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (t, d) = (total.clone(), done.clone());
    let job = job.on_progress(move |p| {
        t.store(p.total.max(1), std::sync::atomic::Ordering::Relaxed);
        d.store(p.done, std::sync::atomic::Ordering::Relaxed);
    });
    let data = TrainingData::from_frame(frame);
    let out = crate::progress::watch("train", "epochs", &total, &done, || {
        job.run(&registry, &data)
    })?;
    println!(
        "run {} finished (data {})",
        out.run.id,
        out.data_hash.to_hex()
    );
    for (k, v) in &out.metrics {
        println!("  {k:<16} {v:.6}");
    }
    if let Some(v) = out.version {
        println!("registered {} v{}", v.name, v.version);
    }
    Ok(())
}
