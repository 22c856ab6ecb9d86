//! `keel drift`: compare a current CSV with a reference CSV, Evidently's way.

use anyhow::{bail, Context, Result};
use clap::Args;
use keel::core::Frame;
use keel::monitor::{detect_drift, report, ColumnOptions, DriftOptions, DriftTest};
use std::path::PathBuf;

/// `keel drift` arguments.
#[derive(Args)]
pub struct DriftArgs {
    /// Reference data (CSV with a header), e.g. the training set.
    #[arg(long)]
    reference: PathBuf,
    /// Current data (CSV with a header), e.g. last day's requests.
    #[arg(long)]
    current: PathBuf,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Dataset drift when this share of columns drifts.
    #[arg(long, default_value_t = 0.5)]
    drift_share: f64,
    /// Per-column test override, `column=test` (ks, chi_square, chi_square_two_sample,
    /// z_test, jensen_shannon, wasserstein, psi); repeatable.
    #[arg(long = "test", value_name = "COLUMN=TEST")]
    tests: Vec<String>,
    /// Per-column threshold override, `column=value`; repeatable.
    #[arg(long = "threshold", value_name = "COLUMN=VALUE")]
    thresholds: Vec<String>,
    /// Treat these columns as categorical even if numeric; repeatable.
    #[arg(long = "categorical", value_name = "COLUMN")]
    categorical: Vec<String>,
    /// Never test this column (repeatable); it is listed as skipped.
    #[arg(long = "exclude", value_name = "COLUMN")]
    exclude: Vec<String>,
    /// The id column(s): never tested (Evidently's column mapping).
    #[arg(long = "id", value_name = "COLUMN")]
    id: Vec<String>,
    /// The label (target) column(s): never tested as a feature.
    #[arg(long = "label", value_name = "COLUMN")]
    label: Vec<String>,
    /// The timestamp column(s): never tested.
    #[arg(long = "timestamp", value_name = "COLUMN")]
    timestamp: Vec<String>,
    /// Exit with status 3 when dataset drift is detected.
    #[arg(long)]
    fail_on_drift: bool,
}

pub fn run(a: DriftArgs) -> Result<()> {
    let reference = Frame::from_csv_path(&a.reference, None)
        .with_context(|| format!("reading {}", a.reference.display()))?;
    let current = Frame::from_csv_path(&a.current, None)
        .with_context(|| format!("reading {}", a.current.display()))?;
    let mut opts = DriftOptions {
        drift_share: a.drift_share,
        ..DriftOptions::default()
    };
    let entry = |opts: &mut DriftOptions, c: &str| -> ColumnOptions {
        opts.per_column.get(c).cloned().unwrap_or_default()
    };
    for t in &a.tests {
        let Some((c, name)) = t.split_once('=') else {
            bail!("--test expects COLUMN=TEST, got {t:?}");
        };
        let test: DriftTest = serde_json::from_value(serde_json::Value::String(name.into()))
            .with_context(|| format!("unknown test {name:?}"))?;
        let mut o = entry(&mut opts, c);
        o.test = Some(test);
        opts.per_column.insert(c.into(), o);
    }
    for t in &a.thresholds {
        let Some((c, v)) = t.split_once('=') else {
            bail!("--threshold expects COLUMN=VALUE, got {t:?}");
        };
        let mut o = entry(&mut opts, c);
        o.threshold = Some(v.parse().with_context(|| format!("threshold {v:?}"))?);
        opts.per_column.insert(c.into(), o);
    }
    for c in &a.categorical {
        let mut o = entry(&mut opts, c);
        o.kind = Some(keel::monitor::ColumnKind::Categorical);
        opts.per_column.insert(c.clone(), o);
    }
    for (cols, role) in [
        (&a.exclude, "excluded"),
        (&a.id, "id"),
        (&a.label, "label"),
        (&a.timestamp, "timestamp"),
    ] {
        for c in cols {
            if let Some(other) = opts.exclude.insert(c.clone(), role.to_string()) {
                bail!("column {c:?} is given two roles: {other} and {role}");
            }
        }
    }
    let rep = detect_drift(&reference, &current, &opts)?;
    println!(
        "{:<24} {:<12} {:<30} {:>14} {:>10}  drift",
        "column", "kind", "test", "score", "threshold"
    );
    for c in &rep.columns {
        println!(
            "{:<24} {:<12} {:<30} {:>14.6e} {:>10}  {}",
            c.column,
            format!("{:?}", c.kind).to_lowercase(),
            c.test.display_name(),
            c.score,
            c.threshold,
            if c.drift { "YES" } else { "no" }
        );
    }
    for w in &rep.warnings {
        eprintln!("warning: {w}");
    }
    for sk in &rep.skipped {
        println!("{:<24} not tested: {}", sk.column, sk.reason);
    }
    println!(
        "dataset drift: {} ({} of {} columns, share {:.3} >= {}?)",
        if rep.dataset_drift { "YES" } else { "no" },
        rep.number_of_drifted_columns,
        rep.columns.len(),
        rep.share_of_drifted_columns,
        rep.drift_share
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report::to_json(&rep))?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.html {
        std::fs::write(p, report::to_html(&rep, &reference, &current)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if a.fail_on_drift && rep.dataset_drift {
        std::process::exit(3);
    }
    Ok(())
}
