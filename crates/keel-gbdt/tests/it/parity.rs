//! Parity with the libraries' own outputs on committed fixtures (see tests/fixtures/generate.py).
//! Every case also runs through the keel binary format (save -> load -> score).

use keel_gbdt::{GbdtModel, Output, PredictOptions};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    crate::manifest_dir().join("tests/fixtures")
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

struct Case {
    name: String,
    lib: String,
    doc: Value,
    model: GbdtModel,
    x: Vec<f64>,
    nrows: usize,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    paths.sort();
    for p in paths {
        let doc: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let name = doc["case"].as_str().unwrap().to_string();
        let model = GbdtModel::from_path(fixtures().join(doc["model"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows = matrix(&doc["X"]);
        let nrows = rows.len();
        let x: Vec<f64> = rows.into_iter().flatten().collect();
        assert_eq!(x.len(), nrows * model.num_features(), "{name}");
        out.push(Case {
            lib: doc["library"].as_str().unwrap().to_string(),
            name,
            doc,
            model,
            x,
            nrows,
        });
    }
    assert!(
        out.len() >= 30,
        "expected the committed fixtures, found {}",
        out.len()
    );
    out
}

/// Largest relative error (absolute below 1): `|a - b| / max(1, |b|)`.
fn compare(name: &str, what: &str, got: &[f64], want: &[Vec<f64>], tol: f64) -> f64 {
    let want: Vec<f64> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), want.len(), "{name} {what}: length");
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g.is_nan() && w.is_nan() {
            continue;
        }
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(
            err <= tol,
            "{name} {what}[{i}]: keel {g:e} vs library {w:e} (err {err:e} > {tol:e})"
        );
        worst = worst.max(err);
    }
    worst
}

fn tolerance(lib: &str, what: &str) -> f64 {
    match (lib, what) {
        ("lightgbm", "contrib") => 1e-10,
        ("lightgbm", _) => 1e-12,
        ("xgboost", "contrib") => 2e-5,
        ("xgboost", _) => 1e-6,
        _ => unreachable!(),
    }
}

fn check_all(model: &GbdtModel, c: &Case, label: &str) -> Vec<(String, f64)> {
    let name = format!("{} ({label})", c.name);
    let mut report = Vec::new();
    let raw = model.predict(&c.x, &PredictOptions::raw()).unwrap();
    report.push((
        "raw".into(),
        compare(
            &name,
            "raw",
            &raw,
            &matrix(&c.doc["raw"]),
            tolerance(&c.lib, "raw"),
        ),
    ));
    let pred = model.predict(&c.x, &PredictOptions::default()).unwrap();
    report.push((
        "pred".into(),
        compare(
            &name,
            "pred",
            &pred,
            &matrix(&c.doc["pred"]),
            tolerance(&c.lib, "pred"),
        ),
    ));
    // Single-row API agrees with the batch bit for bit.
    let w = model.output_width(Output::Transformed);
    let mut one = vec![0.0; w];
    for r in 0..c.nrows {
        model
            .predict_row(
                &c.x[r * model.num_features()..(r + 1) * model.num_features()],
                &mut one,
            )
            .unwrap();
        for k in 0..w {
            assert_eq!(
                one[k].to_bits(),
                pred[r * w + k].to_bits(),
                "{name}: row {r} single vs batch"
            );
        }
    }
    // Threads give the same bits.
    let big: Vec<f64> = c.x.iter().copied().cycle().take(c.x.len() * 40).collect();
    let serial = model.predict(&big, &PredictOptions::default()).unwrap();
    let parallel = model
        .predict(&big, &PredictOptions::default().with_threads(3))
        .unwrap();
    assert!(
        serial
            .iter()
            .zip(&parallel)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{name}: threads"
    );
    if let Some(leaf) = c.doc.get("leaf") {
        let got: Vec<f64> = model
            .predict_leaf(&c.x, &PredictOptions::default())
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        report.push((
            "leaf".into(),
            compare(&name, "leaf", &got, &matrix(leaf), 0.0),
        ));
    }
    if let Some(s) = c.doc.get("slice") {
        let (start, num) = (
            s[0].as_u64().unwrap() as usize,
            s[1].as_u64().unwrap() as usize,
        );
        let opts = PredictOptions::raw().with_iterations(start, Some(num));
        let got = model.predict(&c.x, &opts).unwrap();
        report.push((
            "slice".into(),
            compare(
                &name,
                "slice_raw",
                &got,
                &matrix(&c.doc["slice_raw"]),
                tolerance(&c.lib, "raw"),
            ),
        ));
    }
    if let Some(contrib) = c.doc.get("contrib") {
        let got = model
            .predict_contrib(&c.x, &PredictOptions::default())
            .unwrap();
        report.push((
            "contrib".into(),
            compare(
                &name,
                "contrib",
                &got,
                &matrix(contrib),
                tolerance(&c.lib, "contrib"),
            ),
        ));
    }
    report
}

#[test]
fn parity_with_lightgbm_and_xgboost() {
    for c in cases() {
        let report = check_all(&c.model, &c, "file");
        // Round trip through keel's binary format scores identically.
        let bytes = c.model.to_bytes().unwrap();
        let back = GbdtModel::from_bytes(&bytes).unwrap();
        assert_eq!(back, c.model, "{}: binary round trip", c.name);
        check_all(&back, &c, "keel binary");
        let summary: Vec<String> = report.iter().map(|(k, v)| format!("{k} {v:.1e}")).collect();
        eprintln!("{:<28} {}", c.name, summary.join("  "));
    }
}

#[test]
fn pandas_categorical_labels_map_to_codes() {
    let c = cases()
        .into_iter()
        .find(|c| c.name == "lgb_pandas_categorical")
        .unwrap();
    let labels = c
        .model
        .category_labels(4)
        .expect("merchant labels recorded");
    assert_eq!(labels[0], "m0");
    assert_eq!(c.model.category_labels(5).unwrap()[0], "DE");
    // Build a frame with labels instead of codes; predict_frame maps them with the model's lists.
    let names = c.model.feature_names().to_vec();
    let lab = &c.doc["labels"];
    let mut csv = names.join(",") + "\n";
    for r in 0..c.nrows {
        let mut fields = Vec::new();
        for j in 0..4 {
            let v = c.x[r * 6 + j];
            fields.push(if v.is_nan() {
                String::new()
            } else {
                format!("{v:?}")
            });
        }
        fields.push(lab["merchant"][r].as_str().unwrap_or("").to_string());
        fields.push(lab["country"][r].as_str().unwrap_or("").to_string());
        csv += &(fields.join(",") + "\n");
    }
    let schema = keel_core::Schema::new(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                keel_core::Field::new(
                    n.clone(),
                    if i < 4 {
                        keel_core::DType::F64
                    } else {
                        keel_core::DType::Categorical
                    },
                )
            })
            .collect(),
    )
    .unwrap();
    let frame = keel_core::Frame::from_csv_reader(csv.as_bytes(), Some(&schema)).unwrap();
    let got = c
        .model
        .predict_frame(&frame, &PredictOptions::raw())
        .unwrap();
    compare("pandas", "raw", &got, &matrix(&c.doc["raw"]), 1e-12);
}
