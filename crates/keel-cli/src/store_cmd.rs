//! `keel store ...`: the feature store from the command line.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use keel_core::{ColumnBuilder, DType, Field, Frame, Schema, ValueRef};
use keel_store::{
    Definitions, Entity, FeatureRef, FeatureService, FeatureView, HistoricalOptions, Store, Value,
};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Apply entity, view and service definitions from a TOML file.
    Apply {
        /// Store directory (created if missing).
        #[arg(long)]
        path: PathBuf,
        /// TOML with `[[entities]]`, `[[views]]` and `[[services]]` tables.
        #[arg(long)]
        definitions: PathBuf,
    },
    /// Write a CSV of rows into a view: join keys, `event_timestamp` [, `created_timestamp`],
    /// features. Timestamps are RFC 3339 or integer Unix milliseconds; empty fields are missing.
    Ingest {
        #[arg(long)]
        path: PathBuf,
        /// View name, `name@version` (default version 1).
        #[arg(long)]
        view: String,
        #[arg(long)]
        input: PathBuf,
    },
    /// Latest values of a feature service for one entity key.
    Get {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        service: String,
        /// Join key values, `name=value`, repeated.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
    /// Point-in-time join of an entity CSV (join keys + `event_timestamp`) with features.
    Historical {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        entities: PathBuf,
        /// Comma-separated `view[@version]:feature` refs, or a service name.
        #[arg(long)]
        features: String,
        #[arg(long)]
        output: PathBuf,
        /// Ignore rows created after each entity timestamp.
        #[arg(long)]
        no_backfill_leak: bool,
    },
    /// Write a read-only snapshot; prints its id (the data version).
    Checkpoint {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(serde::Deserialize)]
struct DefsToml {
    #[serde(default)]
    entities: Vec<Entity>,
    #[serde(default)]
    views: Vec<FeatureView>,
    #[serde(default)]
    services: Vec<ServiceToml>,
}

#[derive(serde::Deserialize)]
struct ServiceToml {
    name: String,
    features: Vec<String>,
}

fn parse_view(s: &str) -> Result<(String, u32)> {
    Ok(match s.split_once('@') {
        Some((v, ver)) => (
            v.to_string(),
            ver.trim_start_matches('v')
                .parse()
                .context("view version")?,
        ),
        None => (s.to_string(), 1),
    })
}

/// Unix ms from an integer or an RFC 3339 string.
fn parse_ts(s: &str) -> Result<i64> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s.trim()).with_context(|| format!("timestamp `{s}`"))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .context("timestamp before 1970")?;
    Ok(i64::try_from(d.as_millis())?)
}

/// Reads a CSV with the given typed columns plus timestamp columns (as text, converted to ms).
fn read_typed(path: &Path, fields: Vec<Field>, ts_cols: &[&str]) -> Result<Frame> {
    let header: Vec<String> = csv::Reader::from_path(path)?
        .headers()?
        .iter()
        .map(str::to_string)
        .collect();
    let mut schema_fields = fields;
    for c in ts_cols {
        if header.iter().any(|h| h == c) {
            schema_fields.push(Field::new(*c, DType::String));
        }
    }
    let frame = Frame::from_csv_path(path, Some(&Schema::new(schema_fields.clone())?))?;
    let mut out_fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in schema_fields.iter().zip(frame.columns()) {
        if ts_cols.contains(&f.name.as_str()) {
            let mut b = ColumnBuilder::new(DType::I64);
            for i in 0..frame.nrows() {
                match c.get(i) {
                    ValueRef::Str(s) => {
                        b.push_value(ValueRef::I64(
                            parse_ts(s).with_context(|| format!("row {i}, `{}`", f.name))?,
                        ));
                    }
                    _ => b.push_null(),
                }
            }
            out_fields.push(Field::new(f.name.clone(), DType::I64));
            cols.push(b.finish());
        } else {
            out_fields.push(f.clone());
            cols.push(c.clone());
        }
    }
    Ok(Frame::new(out_fields, cols)?)
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::F64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

pub fn run(cmd: StoreCmd) -> Result<()> {
    match cmd {
        StoreCmd::Apply { path, definitions } => {
            let text = std::fs::read_to_string(&definitions)
                .with_context(|| format!("reading {}", definitions.display()))?;
            let d: DefsToml = toml::from_str(&text)
                .with_context(|| format!("parsing {}", definitions.display()))?;
            let services = d
                .services
                .into_iter()
                .map(|s| {
                    Ok(FeatureService {
                        name: s.name,
                        features: s
                            .features
                            .iter()
                            .map(|r| FeatureRef::parse(r))
                            .collect::<Result<_, _>>()?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let defs = Definitions {
                entities: d.entities,
                views: d.views,
                services,
            };
            Store::open(&path)?.apply(&defs)?;
            println!(
                "applied {} entities, {} views, {} services",
                defs.entities.len(),
                defs.views.len(),
                defs.services.len()
            );
        }
        StoreCmd::Ingest { path, view, input } => {
            let store = Store::open(&path)?;
            let (name, version) = parse_view(&view)?;
            let v = store.view(&name, version)?;
            let mut fields = store.join_keys(&v)?;
            fields.extend(v.features.iter().cloned());
            let frame = read_typed(&input, fields, &["event_timestamp", "created_timestamp"])?;
            let rows = store.rows_from_frame(&v, &frame)?;
            store.write(&name, version, &rows)?;
            println!("wrote {} rows into {}@{}", rows.len(), name, version);
        }
        StoreCmd::Get {
            path,
            service,
            keys,
        } => {
            let store = Store::open(&path)?;
            let s = store.service(&service)?;
            let first = s.features.first().context("empty service")?;
            let view = store.view(&first.view, first.version)?;
            let join = store.join_keys(&view)?;
            let mut key = Vec::new();
            for f in &join {
                let raw = keys
                    .iter()
                    .find_map(|k| k.strip_prefix(&format!("{}=", f.name)))
                    .with_context(|| format!("missing --key {}=...", f.name))?;
                key.push(match f.dtype {
                    DType::I64 => Value::I64(
                        raw.parse()
                            .with_context(|| format!("{} is an integer key", f.name))?,
                    ),
                    _ => Value::Str(raw.to_string()),
                });
            }
            let r = store.get_online(&service, &[key])?;
            for (f, v) in r.features.iter().zip(&r.values[0]) {
                println!(
                    "{f}\t{}\t{:?}\t{}",
                    fmt_value(&v.value),
                    v.status,
                    v.event_ms.map_or(String::new(), |t| t.to_string())
                );
            }
        }
        StoreCmd::Historical {
            path,
            entities,
            features,
            output,
            no_backfill_leak,
        } => {
            let store = Store::open(&path)?;
            let refs: Vec<FeatureRef> = if features.contains(':') {
                features
                    .split(',')
                    .map(|r| FeatureRef::parse(r.trim()))
                    .collect::<Result<_, _>>()?
            } else {
                store.service(&features)?.features
            };
            let first = refs.first().context("no features")?;
            let mut fields = Vec::new();
            for r in &refs {
                for k in store.join_keys(&store.view(&r.view, r.version)?)? {
                    if !fields.iter().any(|f: &Field| f.name == k.name) {
                        fields.push(k);
                    }
                }
            }
            let _ = first;
            let ents = read_typed(&entities, fields, &["event_timestamp"])?;
            let out = store.historical(
                &ents,
                &refs,
                HistoricalOptions {
                    no_backfill_leak,
                    ..Default::default()
                },
            )?;
            out.to_csv_path(&output)?;
            println!(
                "wrote {} rows x {} columns to {}",
                out.nrows(),
                out.ncols(),
                output.display()
            );
        }
        StoreCmd::Checkpoint { path, to } => {
            if to.exists() {
                bail!("{} exists", to.display());
            }
            let id = Store::open(&path)?.checkpoint(&to)?;
            println!("{id}\t{}", id.path.display());
        }
    }
    Ok(())
}
