//! `keel runs`, `keel models`, `keel train`: tracking, registry and training jobs.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keel::core::Frame;
use keel::registry::signing::{public_path, SigningKey, TrustedKeys};
use keel::registry::{Registry, RunFilter, RunId};
use keel::train::{TrainingData, TrainingJob};
use std::path::PathBuf;

/// Where the registry lives (`--registry`, default `keel-data/registry`).
#[derive(Args, Clone)]
pub struct RegistryArg {
    /// Registry directory.
    #[arg(long, default_value = "keel-data/registry", global = true)]
    registry: PathBuf,
}

impl RegistryArg {
    fn open(&self) -> Result<Registry> {
        Registry::open(&self.registry)
            .with_context(|| format!("opening registry {}", self.registry.display()))
    }
}

#[derive(Subcommand)]
pub enum RunsCmd {
    /// List runs, optionally filtered: `experiment=fraud params.num_leaves=31
    /// metrics.test.auc>=0.8 status=finished order_by=metrics.test.auc desc limit=10`.
    List {
        /// Query terms.
        query: Vec<String>,
    },
    /// Show one run: params, metrics, data versions, artifacts.
    Show {
        /// Run id.
        id: String,
    },
    /// Compare runs side by side (params that differ are marked `*`).
    Compare {
        /// Run ids.
        #[arg(required = true, num_args = 2..)]
        ids: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// List models with their versions and aliases.
    List,
    /// Show a version's manifest (default: the latest).
    Show {
        /// Model name.
        name: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Move or roll back aliases.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Verify the whole registry: every run and artifact, every version's files (sha256),
    /// every alias state. Lists damaged entries; exits 1 when there is any.
    Verify {
        /// Also require every version to be signed by one of these public keys.
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
    },
    /// Write a new ed25519 key pair: the private key to OUT (mode 0600), the public to OUT.pub.
    Keygen {
        /// Private key file to create.
        out: PathBuf,
    },
    /// Sign an existing version (e.g. registered before signing was adopted).
    Sign {
        /// Model name.
        name: String,
        /// Version.
        version: u32,
        /// Private key file.
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum AliasCmd {
    /// Point an alias at a version.
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
    History {
        /// Model name.
        name: String,
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
        RunsCmd::List { query } => {
            let filter = RunFilter::parse(&query.join(" "))?;
            println!(
                "{:<18} {:<16} {:<9} {:>10}  metrics",
                "run", "experiment", "status", "ms"
            );
            let (runs, damaged) = r.search_runs_reporting(&filter)?;
            for d in &damaged {
                eprintln!(
                    "warning: skipping damaged run {}: {} (see `keel models verify`)",
                    d.path.display(),
                    d.problem
                );
            }
            for run in runs {
                let metrics: Vec<String> = run
                    .metrics
                    .iter()
                    .filter(|(k, _)| !k.starts_with("rows."))
                    .map(|(k, v)| format!("{k}={:.4}", v.last().map_or(f64::NAN, |p| p.value)))
                    .collect();
                println!(
                    "{:<18} {:<16} {:<9} {:>10}  {}",
                    run.id,
                    run.experiment,
                    run.status.to_string(),
                    run.duration_ms().map_or("-".into(), |d| d.to_string()),
                    metrics.join(" ")
                );
            }
        }
        RunsCmd::Show { id } => {
            let run = r.run(&RunId(id))?;
            println!("{}", serde_json::to_string_pretty(&run)?);
        }
        RunsCmd::Compare { ids } => {
            let ids: Vec<RunId> = ids.into_iter().map(RunId).collect();
            let c = r.compare_runs(&ids)?;
            let cell = |s: Option<String>| s.unwrap_or_else(|| "-".into());
            print!("{:<24}", "");
            for id in &c.runs {
                print!(" {:>18}", id.0);
            }
            println!();
            for (k, vals) in &c.params {
                let mark = if c.differing_params.contains(k) {
                    "*"
                } else {
                    " "
                };
                print!(
                    "{mark}{:<23}",
                    format!("params.{k}").chars().take(23).collect::<String>()
                );
                for v in vals {
                    print!(
                        " {:>18}",
                        cell(v.clone()).chars().take(18).collect::<String>()
                    );
                }
                println!();
            }
            for (k, vals) in &c.metrics {
                print!(
                    " {:<23}",
                    format!("metrics.{k}").chars().take(23).collect::<String>()
                );
                for v in vals {
                    print!(" {:>18}", cell(v.map(|x| format!("{x:.6}"))));
                }
                println!();
            }
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
        ModelsCmd::List => {
            for m in r.models()? {
                let versions = r.versions(&m)?;
                let aliases: Vec<String> = r
                    .aliases(&m)?
                    .into_iter()
                    .map(|(a, v)| format!("{a}=v{v}"))
                    .collect();
                println!(
                    "{m}: versions {} {}",
                    versions
                        .iter()
                        .map(|v| format!("v{v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    aliases.join(" ")
                );
            }
        }
        ModelsCmd::Show { name, version } => {
            let v = match version {
                Some(v) => v,
                None => *r
                    .versions(&name)?
                    .last()
                    .with_context(|| format!("model {name} has no versions"))?,
            };
            let mv = r.version(&name, v)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "name": mv.name, "version": mv.version, "run_id": mv.run_id.0,
                    "created_ms": mv.created_ms, "flavor": mv.meta.flavor,
                    "feature_service": mv.meta.feature_service,
                    "input_schema": mv.meta.input_schema.as_ref().map(|s| s.to_string()),
                    "eval": mv.meta.eval, "seed": mv.meta.seed, "data_version": mv.meta.data_version,
                    "files": mv.files.iter().map(|f| serde_json::json!({"name": f.name, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>(),
                }))?
            );
        }
        ModelsCmd::Alias(AliasCmd::Set {
            name,
            alias,
            version,
            reason,
        }) => {
            let ev = r.set_alias(&name, &alias, version, &reason)?;
            println!("{name}@{alias}: {:?} -> v{version}", ev.from);
        }
        ModelsCmd::Alias(AliasCmd::Rollback {
            name,
            alias,
            reason,
        }) => {
            let ev = r.rollback(&name, &alias, &reason)?;
            println!("{name}@{alias}: rolled back {:?} -> {:?}", ev.from, ev.to);
        }
        ModelsCmd::Alias(AliasCmd::History { name }) => {
            for ev in r.audit(&name)? {
                println!(
                    "{} {:<12} {:>6} -> {:<6} {}{}",
                    ev.at_ms,
                    ev.alias,
                    ev.from.map_or("-".into(), |v| format!("v{v}")),
                    ev.to.map_or("-".into(), |v| format!("v{v}")),
                    if ev.rollback { "[rollback] " } else { "" },
                    ev.reason
                );
            }
            println!("audit chain head {}", r.audit_head(&name)?);
        }
    }
    Ok(())
}

pub fn train(reg: &RegistryArg, args: TrainArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let job = TrainingJob::from_toml(&text)?;
    let frame = Frame::from_csv_path(&args.data, None)
        .with_context(|| format!("reading {}", args.data.display()))?;
    let mut registry = reg.open()?;
    if let Some(k) = &args.signing_key {
        registry = registry.with_signing_key(SigningKey::from_file(k)?);
    }
    let out = job.run(&registry, &TrainingData::from_frame(frame))?;
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
