//! # Drift report: is today's traffic still the data the model was trained on?
//!
//! keel-monitor compares a *current* window with a *reference* (usually the training set),
//! column by column, choosing each test the way Evidently's data-drift preset does:
//! Kolmogorov-Smirnov or chi-square/Z for small references, Wasserstein or Jensen-Shannon for
//! large ones. The dataset drifts when at least half the columns do.
//!
//! This tutorial generates a reference, a current window with covariate shift (bigger baskets,
//! a different country mix), writes both as CSV, and produces the same report three ways: as a
//! table, as JSON for machines and as an offline HTML page with a plot per feature. The same
//! report comes from the command line:
//! `keel drift --reference reference.csv --current current.csv --json drift.json --html drift.html`.
//!
//! `cargo run -p keel-examples --example drift_report`; files land in `./keel-data/drift_report`.

use anyhow::Result;
use keel::monitor::synth::{self, Shift};
use keel::monitor::{detect_drift, report, ColumnOptions, DriftOptions, DriftTest};

fn main() -> Result<()> {
    let dir = std::path::Path::new("keel-data/drift_report");
    std::fs::create_dir_all(dir)?;

    // 1. Data: 900 reference rows (small enough for the p-value tests), 600 shifted rows.
    let reference =
        synth::transactions(900, Shift::None, 1).select(&["amount", "risk", "country"])?;
    let current = synth::transactions(600, Shift::Covariate(0.5), 2)
        .select(&["amount", "risk", "country"])?;
    reference.to_csv_path(dir.join("reference.csv"))?;
    current.to_csv_path(dir.join("current.csv"))?;

    // 2. The default policy, exactly Evidently's preset.
    let rep = detect_drift(&reference, &current, &DriftOptions::default())?;
    println!(
        "{:<10} {:<28} {:>12} {:>10}  drift",
        "column", "test", "score", "threshold"
    );
    for c in &rep.columns {
        println!(
            "{:<10} {:<28} {:>12.3e} {:>10}  {}",
            c.column,
            c.test.display_name(),
            c.score,
            c.threshold,
            if c.drift { "YES" } else { "no" }
        );
    }
    println!(
        "dataset drift: {} (share {:.2}, threshold {})",
        rep.dataset_drift, rep.share_of_drifted_columns, rep.drift_share
    );

    // 3. Per-column overrides: a calibrated two-sample chi-square for the categorical column
    //    (Evidently's one-sample test over-alarms on small references) and a PSI on amount.
    let mut opts = DriftOptions::default();
    opts.per_column.insert(
        "country".into(),
        ColumnOptions {
            test: Some(DriftTest::ChiSquareTwoSample),
            ..Default::default()
        },
    );
    opts.per_column.insert(
        "amount".into(),
        ColumnOptions {
            test: Some(DriftTest::Psi),
            threshold: Some(0.2),
            ..Default::default()
        },
    );
    let tuned = detect_drift(&reference, &current, &opts)?;
    println!(
        "with overrides: {}",
        tuned
            .columns
            .iter()
            .map(|c| format!("{}={}:{:.3}", c.column, c.test.display_name(), c.score))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 4. JSON for machines, HTML for people (inline SVG, no scripts, no network).
    std::fs::write(
        dir.join("drift.json"),
        serde_json::to_string_pretty(&report::to_json(&rep))?,
    )?;
    std::fs::write(
        dir.join("drift.html"),
        report::to_html(&rep, &reference, &current)?,
    )?;
    println!("wrote {}/drift.json and drift.html", dir.display());
    Ok(())
}
