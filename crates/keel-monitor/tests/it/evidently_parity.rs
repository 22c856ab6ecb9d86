//! The drift policy agrees with Evidently's DataDriftPreset (tests/fixtures/generate_evidently.py
//! and generate_evidently_psi.py).

use keel_core::Frame;
use keel_monitor::{detect_drift, ColumnKind, ColumnOptions, DriftOptions, DriftTest};
use serde_json::Value;

/// Runs keel on every case of an Evidently fixture (`options` builds the drift options from the
/// reference frame and the case's expected report) and checks the dataset verdict and share,
/// and per column the test, threshold, verdict and score.
fn check_against_evidently(fixture: &str, options: impl Fn(&Frame, &Value) -> DriftOptions) {
    let dir = &format!("{}/tests/fixtures", crate::manifest_dir().display());
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{fixture}")).unwrap())
            .unwrap();
    for (case, w) in want["cases"].as_object().unwrap() {
        let r =
            Frame::from_csv_path(format!("{dir}/evidently_{case}_reference.csv"), None).unwrap();
        let c = Frame::from_csv_path(format!("{dir}/evidently_{case}_current.csv"), None).unwrap();
        let got = detect_drift(&r, &c, &options(&r, w)).unwrap();
        let share = w["share_of_drifted_columns"].as_f64().unwrap();
        assert_eq!(
            got.dataset_drift,
            w["dataset_drift"].as_bool().unwrap(),
            "{case}"
        );
        assert!(
            (got.share_of_drifted_columns - share).abs() < 1e-12,
            "{case}"
        );
        for col in &got.columns {
            let e = &w["columns"][&col.column];
            let at = format!("{fixture} {case}/{}", col.column);
            assert_eq!(col.test.display_name(), e["test"].as_str().unwrap(), "{at}");
            assert_eq!(col.threshold, e["threshold"].as_f64().unwrap(), "{at}");
            assert_eq!(col.drift, e["drift"].as_bool().unwrap(), "{at}");
            let ws = e["score"].as_f64().unwrap();
            assert!(
                (col.score - ws).abs() <= 1e-9 * ws.abs().max(1e-300) + 1e-13,
                "{at}: keel {} evidently {ws}",
                col.score
            );
        }
        assert_eq!(got.columns.len(), w["columns"].as_object().unwrap().len());
    }
}

#[test]
fn drift_reports_match_evidently() {
    check_against_evidently("evidently.json", |_, _| DriftOptions::default());
}

/// Issue 23, item 11: PSI was implemented but never checked. Evidently's own PSI (every column
/// forced to `stattest="psi"`) on the same data: same score, threshold and verdict per column,
/// same dataset verdict.
#[test]
fn psi_matches_evidently_on_every_column() {
    check_against_evidently("evidently_psi.json", |reference, w| {
        let mut opts = DriftOptions::default();
        for name in reference.schema().names() {
            let kind = match w["columns"][name]["type"].as_str().unwrap() {
                "cat" => ColumnKind::Categorical,
                _ => ColumnKind::Numerical,
            };
            let o = ColumnOptions {
                kind: Some(kind),
                test: Some(DriftTest::Psi),
                threshold: None,
            };
            opts.per_column.insert(name.to_string(), o);
        }
        opts
    });
}
