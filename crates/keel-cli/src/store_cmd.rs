//! `keel store ...`: the feature store from the command line.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use keel::core::{
    parse_timestamp_ms, Column, ColumnBuilder, DType, Field, Frame, Schema, TimeUnit, ValueRef,
};
use keel::store::{
    Definitions, Durability, FeatureRef, HistoricalOptions, MaterializeOptions, Store,
    StoreOptions, Value,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::output::OutputFormat;
use crate::output::Records;

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Apply entity, view and service definitions from a TOML file.
    #[command(
        after_help = "Example:\n  keel store apply --path keel-data/store --definitions defs.toml"
    )]
    Apply {
        #[command(flatten)]
        store: StoreAt,
        /// TOML with `[[entities]]`, `[[views]]` and `[[services]]` tables.
        #[arg(long)]
        definitions: PathBuf,
    },
    /// Write a CSV of rows into a view: join keys, `event_timestamp` [, `created_timestamp`],
    /// features. Timestamps are RFC 3339 with any offset, or integers in `--time-unit`
    /// (integers outside 1975..2200 are refused with a hint); empty fields are missing. Each
    /// batch is synced to disk before the command reports it written.
    #[command(
        after_help = "Example:\n  keel store ingest --url redis://127.0.0.1:6379 --view card_stats@1 --input rows.csv --time-unit s"
    )]
    Ingest {
        #[command(flatten)]
        store: StoreAt,
        /// View name, `name@version` (default version 1).
        #[arg(long)]
        view: String,
        /// CSV with a header.
        #[arg(long)]
        input: PathBuf,
        /// Unit of integer timestamps: s, ms, us, ns.
        #[arg(long, default_value = "ms")]
        time_unit: TimeUnit,
    },
    /// Latest values of a feature service for one entity key.
    #[command(
        after_help = "Example:\n  keel store get --path keel-data/store --service fraud --key card_id=card42 --at 2026-01-05T00:00:00Z --format json"
    )]
    Get {
        #[command(flatten)]
        store: StoreAt,
        /// Feature service to read (`keel store apply` defines it).
        #[arg(long)]
        service: String,
        /// Join key values, `name=value`, repeated.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Read as of this time (RFC 3339, or an integer in `--time-unit`) instead of now: the
        /// newest row at or before it, TTL judged against it.
        #[arg(long)]
        at: Option<String>,
        /// Unit of an integer `--at`: s, ms, us, ns.
        #[arg(long, default_value = "ms")]
        time_unit: TimeUnit,
        /// `table` for people, `json` or `csv` for scripts.
        #[arg(long, default_value = "table")]
        format: OutputFormat,
    },
    /// Point-in-time join of an entity CSV (join keys + `event_timestamp`, any other columns
    /// such as labels kept as they are, in order) with features. Output times are written as
    /// they came in.
    #[command(
        after_help = "Example:\n  keel store historical --path keel-data/store --entities labels.csv --features fraud --output train.csv --no-backfill-leak"
    )]
    Historical {
        #[command(flatten)]
        store: StoreAt,
        /// Entity CSV with a header.
        #[arg(long)]
        entities: PathBuf,
        /// Comma-separated `view[@version]:feature` refs, or a service name.
        #[arg(long)]
        features: String,
        /// Output CSV: the entity rows, then one column per feature.
        #[arg(long)]
        output: PathBuf,
        /// Ignore rows created after each entity timestamp.
        #[arg(long)]
        no_backfill_leak: bool,
        /// Unit of integer timestamps: s, ms, us, ns.
        #[arg(long, default_value = "ms")]
        time_unit: TimeUnit,
    },
    /// List what the store defines: entities (join keys), view versions (features, TTL) and
    /// feature services.
    #[command(after_help = "Example:\n  keel store list --path keel-data/store --format csv")]
    List {
        #[command(flatten)]
        store: StoreAt,
        /// `table` for people, `json` for scripts (the definitions as `keel store apply` takes
        /// them, in JSON).
        #[arg(long, default_value = "table")]
        format: OutputFormat,
    },
    /// Describe one view version (`NAME[@VERSION]`: schema, TTL, retention, entity count,
    /// watermark) or feature service (its features).
    #[command(
        after_help = "Example:\n  keel store describe --path keel-data/store card_stats@1 --format json"
    )]
    Describe {
        #[command(flatten)]
        store: StoreAt,
        /// A view (`name` or `name@version`) or a feature service.
        name: String,
        /// `table` for people, `json` or `csv` for scripts.
        #[arg(long, default_value = "table")]
        format: OutputFormat,
    },
    /// Copy a view's rows from an embedded store into another (a shared Redis one), from the
    /// target's watermark (or `--since`) up to `--until` (default now), then move the
    /// watermark: Feast's `materialize-incremental`. Each entity's newest row in the window,
    /// or with `--history` every row still within the view's TTL.
    #[command(
        after_help = "Example:\n  keel store materialize --from keel-data/store --to redis://127.0.0.1:6379 --view card_stats@1 --until 2026-01-05T00:00:00Z"
    )]
    Materialize {
        /// The embedded store to copy from (a directory; must exist).
        #[arg(long)]
        from: PathBuf,
        /// The store to copy into: a directory, or `redis://HOST:PORT` /
        /// `redis+cluster://HOST:PORT,...` (optionally `?prefix=NAME`).
        #[arg(long)]
        to: String,
        /// View name, `name@version` (default version 1).
        #[arg(long)]
        view: String,
        /// Copy rows with event time after this (RFC 3339, or an integer in `--time-unit`)
        /// instead of after the target's watermark.
        #[arg(long)]
        since: Option<String>,
        /// Copy rows up to this event time (default now).
        #[arg(long)]
        until: Option<String>,
        /// Copy every row within the view's TTL, not only each entity's newest.
        #[arg(long)]
        history: bool,
        /// Unit of integer times: s, ms, us, ns.
        #[arg(long, default_value = "ms")]
        time_unit: TimeUnit,
    },
    /// Write a read-only snapshot; prints its id (the data version).
    #[command(
        after_help = "Example:\n  keel store checkpoint --path keel-data/store --to keel-data/cp-2026-01-05"
    )]
    Checkpoint {
        #[command(flatten)]
        store: StoreAt,
        /// Snapshot directory (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
}

/// Where a store lives: an embedded store's directory, or a shared store's URL.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub(crate) struct StoreAt {
    /// Embedded store directory (RocksDB).
    #[arg(long)]
    path: Option<PathBuf>,
    /// Shared store: `redis://HOST:PORT`, or `redis+cluster://HOST:PORT,HOST:PORT,...`;
    /// optionally `?prefix=NAME` (default keys start with `keel:`).
    #[arg(long)]
    url: Option<String>,
}

impl StoreAt {
    fn describe(&self) -> String {
        match (&self.path, &self.url) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(u)) => u.clone(),
            (None, None) => String::new(),
        }
    }
}

fn ms_text(ms: Option<i64>) -> String {
    ms.map_or("-".into(), keel::core::format_timestamp_ms)
}

fn list(store: &Store, format: OutputFormat) -> Result<()> {
    let defs = store.definitions()?;
    let mut rows = Vec::new();
    for e in &defs.entities {
        let keys: Vec<String> = e
            .join_keys
            .iter()
            .map(|k| format!("{}:{}", k.name, k.dtype))
            .collect();
        rows.push(vec![
            "entity".into(),
            e.name.clone(),
            format!("join keys {}", keys.join(", ")),
        ]);
    }
    for v in &defs.views {
        rows.push(vec![
            "view".into(),
            format!("{}@{}", v.name, v.version),
            format!(
                "{} features, entities {}, ttl {}",
                v.features.len(),
                v.entities.join("+"),
                v.ttl_ms.map_or("none".into(), |t| format!("{t} ms"))
            ),
        ]);
    }
    for sv in &defs.services {
        rows.push(vec![
            "service".into(),
            sv.name.clone(),
            format!("{} features", sv.features.len()),
        ]);
    }
    // JSON: the definitions as `keel store apply` takes them.
    Records::new(&["kind", "name", "details"], rows)
        .with_json(serde_json::to_value(&defs)?)
        .print(format)
}

fn describe(store: &Store, name: &str, format: OutputFormat) -> Result<()> {
    if !name.contains('@') {
        if let Ok(svc) = store.service(name) {
            let refs: Vec<String> = svc.features.iter().map(ToString::to_string).collect();
            let keys: Vec<String> = store
                .service_keys(name)?
                .iter()
                .map(|k| format!("{}:{}", k.name, k.dtype))
                .collect();
            if format == OutputFormat::Json {
                println!(
                    "{}",
                    serde_json::json!({"service": svc.name, "key": keys, "features": refs})
                );
            } else if format == OutputFormat::Csv {
                let mut rows = vec![
                    vec!["service".to_string(), svc.name.clone()],
                    vec!["key".to_string(), keys.join(" ")],
                ];
                rows.extend(refs.iter().map(|r| vec!["feature".to_string(), r.clone()]));
                Records::new(&["field", "value"], rows).print(format)?;
            } else {
                println!(
                    "service {}
key     {}",
                    svc.name,
                    keys.join(", ")
                );
                println!("FEATURE");
                for r in refs {
                    println!("{r}");
                }
            }
            return Ok(());
        }
    }
    let (view, version) = parse_view(name)?;
    let v = store.view(&view, version)?;
    let stats = store.view_stats(&view, version)?;
    if format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::json!({
                "view": v,
                "entities_with_rows": stats.entities,
                "watermark_ms": stats.watermark_ms,
            })
        );
        return Ok(());
    }
    if format == OutputFormat::Csv {
        let mut rows = vec![
            vec!["view".to_string(), format!("{}@{}", v.name, v.version)],
            vec!["entities".to_string(), v.entities.join("+")],
            vec!["entities_with_rows".to_string(), stats.entities.to_string()],
            vec![
                "ttl_ms".to_string(),
                v.ttl_ms.map_or(String::new(), |t| t.to_string()),
            ],
            vec![
                "retention_ms".to_string(),
                v.retention_ms.map_or(String::new(), |t| t.to_string()),
            ],
            vec![
                "watermark_ms".to_string(),
                stats.watermark_ms.map_or(String::new(), |t| t.to_string()),
            ],
            vec!["owner".to_string(), v.owner.clone()],
        ];
        rows.extend(
            v.features
                .iter()
                .map(|f| vec![format!("feature.{}", f.name), f.dtype.to_string()]),
        );
        return Records::new(&["field", "value"], rows).print(format);
    }
    println!("view       {}@{}", v.name, v.version);
    println!(
        "entities   {} ({} keys with rows)",
        v.entities.join("+"),
        stats.entities
    );
    println!(
        "ttl        {}",
        v.ttl_ms.map_or("none".into(), |t| format!("{t} ms"))
    );
    println!(
        "retention  {}",
        v.retention_ms.map_or("none".into(), |t| format!("{t} ms"))
    );
    println!("watermark  {}", ms_text(stats.watermark_ms));
    println!("owner      {}", v.owner);
    println!("{:<28} TYPE", "FEATURE");
    for f in &v.features {
        println!("{:<28} {}", f.name, f.dtype);
    }
    Ok(())
}

pub(crate) fn parse_view(s: &str) -> Result<(String, u32)> {
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

/// Opens the store at a directory or URL (an embedded one must exist unless `create`).
pub(crate) fn open_store(at: &StoreAt, opts: StoreOptions, create: bool) -> Result<Store> {
    match (&at.path, &at.url) {
        (Some(path), _) => open_dir(path, opts, create),
        (None, Some(url)) => {
            Store::connect(url, opts).with_context(|| format!("connecting to {url}"))
        }
        (None, None) => bail!("give --path DIR or --url redis://HOST:PORT"),
    }
}

/// Opens an embedded store (only an existing one unless `create`) and says on stderr when
/// recovery had to drop writes after a damaged write-ahead-log tail.
fn open_dir(path: &Path, opts: StoreOptions, create: bool) -> Result<Store> {
    let store = if create {
        Store::open_with(path, opts)?
    } else {
        Store::open_existing(path, opts)?
    };
    let r = store.recovery();
    if r.wal_tail_dropped {
        eprintln!(
            "warning: {}: the write-ahead log's tail was damaged; the writes after the damage \
             were dropped at open ({})",
            path.display(),
            r.detail
        );
    }
    Ok(store)
}

/// Reads a CSV keeping every column in header order: `typed` fields parse as their type,
/// `ts_cols` become i64 Unix milliseconds (see [`parse_timestamp_ms`]), any other column is kept
/// as text. Returns the frame and the timestamp columns' original text, by name.
fn read_typed(
    path: &Path,
    typed: &[Field],
    ts_cols: &[&str],
    unit: TimeUnit,
) -> Result<(Frame, Vec<(String, Column)>)> {
    let header: Vec<String> = csv::Reader::from_path(path)
        .with_context(|| format!("reading {}", path.display()))?
        .headers()?
        .iter()
        .map(str::to_string)
        .collect();
    for f in typed {
        if !header.contains(&f.name) {
            bail!("{}: no column `{}`", path.display(), f.name);
        }
    }
    let schema_fields: Vec<Field> = header
        .iter()
        .map(|h| match typed.iter().find(|f| &f.name == h) {
            Some(f) => f.clone(),
            None => Field::new(h.clone(), DType::String),
        })
        .collect();
    // The bar follows the bytes parsed.
    let frame = crate::progress::read_csv(path, Some(&Schema::new(schema_fields.clone())?))?;
    let mut out_fields = Vec::new();
    let mut cols = Vec::new();
    let mut originals = Vec::new();
    for (f, c) in schema_fields.iter().zip(frame.columns()) {
        if ts_cols.contains(&f.name.as_str()) {
            let mut b = ColumnBuilder::new(DType::I64);
            for i in 0..frame.nrows() {
                match c.get(i) {
                    ValueRef::Str(s) => {
                        let ms = parse_timestamp_ms(s, unit)
                            .with_context(|| format!("row {i}, column `{}`", f.name))?;
                        b.push_value(ValueRef::I64(ms));
                    }
                    _ => b.push_null(),
                }
            }
            out_fields.push(Field::new(f.name.clone(), DType::I64));
            cols.push(b.finish());
            originals.push((f.name.clone(), c.clone()));
        } else {
            out_fields.push(f.clone());
            cols.push(c.clone());
        }
    }
    Ok((Frame::new(out_fields, cols)?, originals))
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
        StoreCmd::Apply { store, definitions } => {
            let text = std::fs::read_to_string(&definitions)
                .with_context(|| format!("reading {}", definitions.display()))?;
            let defs = Definitions::from_toml(&text)
                .with_context(|| format!("parsing {}", definitions.display()))?;
            open_store(&store, StoreOptions::default(), true)?.apply(&defs)?;
            println!(
                "applied {} entities, {} views, {} services",
                defs.entities.len(),
                defs.views.len(),
                defs.services.len()
            );
        }
        StoreCmd::Ingest {
            store,
            view,
            input,
            time_unit,
        } => {
            let synced = StoreOptions {
                durability: Durability::Synced,
                ..StoreOptions::default()
            };
            let store = open_store(&store, synced, true)?;
            let (name, version) = parse_view(&view)?;
            let v = store.view(&name, version)?;
            let mut fields = store.join_keys(&v)?;
            fields.extend(v.features.iter().cloned());
            let ts = ["event_timestamp", "created_timestamp"];
            let (frame, _) = read_typed(&input, &fields, &ts, time_unit)?;
            let rows = store.rows_from_frame(&v, &frame)?;
            store.write(&name, version, &rows)?;
            println!("wrote {} rows into {}@{}", rows.len(), name, version);
        }
        StoreCmd::Get {
            store,
            service,
            keys,
            at,
            time_unit,
            format,
        } => {
            let store = open_store(&store, StoreOptions::default(), false)?;
            // One `--key` per join key of every entity the service's views are keyed by.
            let join = store.service_keys(&service)?;
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
            let r = match &at {
                Some(t) => {
                    let ms =
                        parse_timestamp_ms(t, time_unit).with_context(|| format!("--at {t}"))?;
                    store.get_as_of(&service, &[key], ms)?
                }
                None => store.get_online(&service, &[key])?,
            };
            let status = |s: keel::store::Status| match s {
                keel::store::Status::Present => "present",
                keel::store::Status::Expired => "expired",
                _ => "not_found",
            };
            if format == OutputFormat::Json {
                let rows: Vec<serde_json::Value> = r
                    .features
                    .iter()
                    .zip(&r.values[0])
                    .map(|(f, v)| {
                        serde_json::json!({
                            "feature": f.to_string(),
                            "value": v.value.as_f64().filter(|x| !x.is_nan()).map_or_else(
                                || match &v.value {
                                    Value::Str(s) => serde_json::json!(s),
                                    _ => serde_json::Value::Null,
                                },
                                |x| serde_json::json!(x),
                            ),
                            "status": status(v.status),
                            "event_ms": v.event_ms,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if format == OutputFormat::Csv {
                let rows = r
                    .features
                    .iter()
                    .zip(&r.values[0])
                    .map(|(f, v)| {
                        vec![
                            f.to_string(),
                            fmt_value(&v.value),
                            status(v.status).to_string(),
                            v.event_ms.map_or(String::new(), |t| t.to_string()),
                            v.event_ms
                                .map_or(String::new(), keel::core::format_timestamp_ms),
                        ]
                    })
                    .collect();
                Records::new(
                    &["feature", "value", "status", "event_ms", "event_time"],
                    rows,
                )
                .print(format)?;
            } else {
                println!("FEATURE\tVALUE\tSTATUS\tEVENT_MS\tEVENT_TIME");
                for (f, v) in r.features.iter().zip(&r.values[0]) {
                    println!(
                        "{f}\t{}\t{}\t{}\t{}",
                        fmt_value(&v.value),
                        status(v.status),
                        v.event_ms.map_or(String::new(), |t| t.to_string()),
                        v.event_ms
                            .map_or(String::new(), keel::core::format_timestamp_ms)
                    );
                }
            }
        }
        StoreCmd::Historical {
            store,
            entities,
            features,
            output,
            no_backfill_leak,
            time_unit,
        } => {
            let store = open_store(&store, StoreOptions::default(), false)?;
            let refs: Vec<FeatureRef> = if features.contains(':') {
                features
                    .split(',')
                    .map(|r| FeatureRef::parse(r.trim()))
                    .collect::<Result<_, _>>()?
            } else {
                store.service(&features)?.features
            };
            if refs.is_empty() {
                bail!("no features");
            }
            let mut fields = Vec::new();
            for r in &refs {
                for k in store.join_keys(&store.view(&r.view, r.version)?)? {
                    if !fields.iter().any(|f: &Field| f.name == k.name) {
                        fields.push(k);
                    }
                }
            }
            let (ents, originals) =
                read_typed(&entities, &fields, &["event_timestamp"], time_unit)?;
            if originals.is_empty() {
                bail!("{}: no column `event_timestamp`", entities.display());
            }
            let total = AtomicU64::new(store.historical_lookups(&refs, ents.nrows())?);
            let done = AtomicU64::new(0);
            let out =
                crate::progress::watch("point-in-time join", "lookups", &total, &done, || {
                    store.historical_counted(
                        &ents,
                        &refs,
                        HistoricalOptions {
                            no_backfill_leak,
                            ..Default::default()
                        },
                        &done,
                    )
                })?;
            // Entity rows come back in input order: the times go out as they came in.
            let (fields, cols): (Vec<Field>, Vec<Column>) = out
                .schema()
                .fields()
                .iter()
                .zip(out.columns())
                .map(
                    |(f, c)| match originals.iter().find(|(n, _)| *n == f.name) {
                        Some((_, text)) => {
                            (Field::new(f.name.clone(), DType::String), text.clone())
                        }
                        None => (f.clone(), c.clone()),
                    },
                )
                .unzip();
            let out = Frame::new(fields, cols)?;
            out.to_csv_path(&output)?;
            println!(
                "wrote {} rows x {} columns to {}",
                out.nrows(),
                out.ncols(),
                output.display()
            );
        }
        StoreCmd::List { store, format } => {
            list(&open_store(&store, StoreOptions::default(), false)?, format)?;
        }
        StoreCmd::Describe {
            store,
            name,
            format,
        } => {
            describe(
                &open_store(&store, StoreOptions::default(), false)?,
                &name,
                format,
            )?;
        }
        StoreCmd::Materialize {
            from,
            to,
            view,
            since,
            until,
            history,
            time_unit,
        } => {
            let source = open_dir(&from, StoreOptions::default(), false)?;
            let target = if to.starts_with("redis://") || to.starts_with("redis+cluster://") {
                StoreAt {
                    path: None,
                    url: Some(to.clone()),
                }
            } else {
                StoreAt {
                    path: Some(PathBuf::from(&to)),
                    url: None,
                }
            };
            let target_store = open_store(&target, StoreOptions::default(), true)?;
            let (name, version) = parse_view(&view)?;
            let time = |t: &Option<String>, what: &str| -> Result<Option<i64>> {
                t.as_ref()
                    .map(|t| {
                        parse_timestamp_ms(t, time_unit).with_context(|| format!("{what} {t}"))
                    })
                    .transpose()
            };
            let until_ms = time(&until, "--until")?
                .unwrap_or_else(|| keel::core::Clock::now_ms(&keel::core::SystemClock));
            let opts = MaterializeOptions {
                since_ms: time(&since, "--since")?,
                history,
                ..Default::default()
            };
            let (total, done) = (AtomicU64::new(0), AtomicU64::new(0));
            let report = crate::progress::watch("materialize", "entities", &total, &done, || {
                target_store.materialize_from(
                    &source,
                    &name,
                    version,
                    until_ms,
                    &opts,
                    &mut |d, t| {
                        total.store(t as u64, Ordering::Relaxed);
                        done.store(d as u64, Ordering::Relaxed);
                    },
                )
            })?;
            println!(
                "materialized {} rows of {} entities of {}@{} into {} (watermark {} -> {})",
                report.rows,
                report.entities,
                name,
                version,
                target.describe(),
                report
                    .from_ms
                    .map_or("none".to_string(), keel::core::format_timestamp_ms),
                keel::core::format_timestamp_ms(report.until_ms)
            );
        }
        StoreCmd::Checkpoint { store, to } => {
            if to.exists() {
                bail!("{} exists", to.display());
            }
            let id = open_store(&store, StoreOptions::default(), false)?.checkpoint(&to)?;
            println!("{id}\t{}", id.path.display());
        }
    }
    Ok(())
}
