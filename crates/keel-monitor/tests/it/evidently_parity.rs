//! The drift policy agrees with Evidently's DataDriftPreset (tests/fixtures/generate_evidently.py).

use keel_core::Frame;
use keel_monitor::{detect_drift, DriftOptions};
use serde_json::Value;

#[test]
fn drift_reports_match_evidently() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/evidently.json")).unwrap())
            .unwrap();
    for (case, w) in want["cases"].as_object().unwrap() {
        let r =
            Frame::from_csv_path(format!("{dir}/evidently_{case}_reference.csv"), None).unwrap();
        let c = Frame::from_csv_path(format!("{dir}/evidently_{case}_current.csv"), None).unwrap();
        let got = detect_drift(&r, &c, &DriftOptions::default()).unwrap();
        assert_eq!(
            got.dataset_drift,
            w["dataset_drift"].as_bool().unwrap(),
            "{case}"
        );
        assert!(
            (got.share_of_drifted_columns - w["share_of_drifted_columns"].as_f64().unwrap()).abs()
                < 1e-12,
            "{case}"
        );
        for col in &got.columns {
            let e = &w["columns"][&col.column];
            assert_eq!(
                col.test.display_name(),
                e["test"].as_str().unwrap(),
                "{case}/{}",
                col.column
            );
            assert_eq!(
                col.threshold,
                e["threshold"].as_f64().unwrap(),
                "{case}/{}",
                col.column
            );
            assert_eq!(
                col.drift,
                e["drift"].as_bool().unwrap(),
                "{case}/{}",
                col.column
            );
            let ws = e["score"].as_f64().unwrap();
            assert!(
                (col.score - ws).abs() <= 1e-9 * ws.abs().max(1e-300) + 1e-13,
                "{case}/{}: keel {} evidently {ws}",
                col.column,
                col.score
            );
        }
        assert_eq!(got.columns.len(), w["columns"].as_object().unwrap().len());
    }
}

/// Issue 23, item 11: PSI was implemented but never checked. Evidently's own PSI (every column
/// forced to `stattest="psi"`, tests/fixtures/generate_evidently_psi.py) on the same data:
/// same score, threshold and verdict per column, same dataset verdict.
#[test]
fn psi_matches_evidently_on_every_column() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/evidently_psi.json")).unwrap(),
    )
    .unwrap();
    for (case, w) in want["cases"].as_object().unwrap() {
        let r =
            Frame::from_csv_path(format!("{dir}/evidently_{case}_reference.csv"), None).unwrap();
        let c = Frame::from_csv_path(format!("{dir}/evidently_{case}_current.csv"), None).unwrap();
        let mut opts = DriftOptions::default();
        for name in r.schema().names() {
            let kind = match w["columns"][name]["type"].as_str().unwrap() {
                "cat" => keel_monitor::ColumnKind::Categorical,
                _ => keel_monitor::ColumnKind::Numerical,
            };
            opts.per_column.insert(
                name.to_string(),
                keel_monitor::ColumnOptions {
                    kind: Some(kind),
                    test: Some(keel_monitor::DriftTest::Psi),
                    threshold: None,
                },
            );
        }
        let got = detect_drift(&r, &c, &opts).unwrap();
        assert_eq!(
            got.dataset_drift,
            w["dataset_drift"].as_bool().unwrap(),
            "{case}"
        );
        for col in &got.columns {
            let e = &w["columns"][&col.column];
            assert_eq!(
                col.test.display_name(),
                e["test"].as_str().unwrap(),
                "{case}/{}",
                col.column
            );
            assert_eq!(
                col.threshold,
                e["threshold"].as_f64().unwrap(),
                "{case}/{}",
                col.column
            );
            assert_eq!(
                col.drift,
                e["drift"].as_bool().unwrap(),
                "{case}/{}",
                col.column
            );
            let ws = e["score"].as_f64().unwrap();
            assert!(
                (col.score - ws).abs() <= 1e-9 * ws.abs().max(1e-300) + 1e-13,
                "{case}/{}: keel PSI {} evidently {ws}",
                col.column,
                col.score
            );
        }
        assert_eq!(got.columns.len(), w["columns"].as_object().unwrap().len());
    }
}
