//! Parity with scikit-learn's estimators on committed fixtures (tests/fixtures/generate.py).
#![cfg(feature = "fit")]

use keel_core::Frame;
use keel_transform::{ColumnSpec, FittedStep, Impute, Spec, Step, Unknown};
use serde_json::Value;

fn load() -> (Frame, Frame, Value) {
    let dir = &format!("{}/tests/fixtures", crate::manifest_dir().display());
    let train = Frame::from_csv_path(format!("{dir}/train.csv"), None).expect("train.csv");
    let test = Frame::from_csv_path(format!("{dir}/test.csv"), None).expect("test.csv");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/sklearn.json")).unwrap())
            .unwrap();
    (train, test, json["cases"].clone())
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
}

fn expected(case: &Value) -> Vec<Vec<f64>> {
    case["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

/// Fits `steps` on `column` of train, transforms test, compares with the case's output.
fn check(name: &str, column: &str, steps: Vec<Step>) -> keel_transform::FittedPipeline {
    check_on(name, column, steps, None)
}

fn check_on(
    name: &str,
    column: &str,
    steps: Vec<Step>,
    frames: Option<(&Frame, &Frame)>,
) -> keel_transform::FittedPipeline {
    let (train, test, cases) = load();
    let (train, test) = frames.unwrap_or((&train, &test));
    let spec = Spec {
        columns: vec![ColumnSpec::new(column, steps)],
    };
    let fitted = spec.fit(train).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = fitted.transform(test).unwrap();
    let want = expected(&cases[name]);
    assert_eq!(got.nrows(), want.len(), "{name}: rows");
    for (i, row) in want.iter().enumerate() {
        assert_eq!(got.ncols(), row.len(), "{name}: width");
        for (j, w) in row.iter().enumerate() {
            let g = got[[i, j]];
            assert!(
                close(g, *w),
                "{name}: row {i} col {j}: keel {g} sklearn {w}"
            );
        }
    }
    fitted
}

fn consts(name: &str, key: &str) -> Vec<f64> {
    let (_, _, cases) = load();
    cases[name]["consts"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn standard_scaler() {
    let p = check("standard_x", "x", vec![Step::Standardize]);
    let FittedStep::Center { center, scale } = p.columns()[0].steps[0] else {
        panic!()
    };
    assert!(close(center, consts("standard_x", "mean")[0]));
    assert!(close(scale, consts("standard_x", "scale")[0]));
}

#[test]
fn min_max_scaler() {
    check("minmax_y", "y", vec![Step::MinMax]);
}

#[test]
fn min_max_constant_column_gets_scale_one() {
    let rows: String = "v\n".to_string() + &"7\n".repeat(50);
    let train = Frame::from_csv_reader(rows.as_bytes(), None).unwrap();
    let test = Frame::from_csv_reader("v\n7\n8\n".as_bytes(), None).unwrap();
    check_on(
        "minmax_const",
        "v",
        vec![Step::MinMax],
        Some((&train, &test)),
    );
}

#[test]
fn robust_scaler() {
    check(
        "robust_x",
        "x",
        vec![Step::RobustScale {
            q_low: 25.0,
            q_high: 75.0,
        }],
    );
    check(
        "robust_y_10_90",
        "y",
        vec![Step::RobustScale {
            q_low: 10.0,
            q_high: 90.0,
        }],
    );
}

#[test]
fn simple_imputer_numeric() {
    for (case, s) in [
        ("impute_mean_x", Impute::Mean),
        ("impute_median_x", Impute::Median),
        ("impute_most_frequent_x", Impute::MostFrequent),
        ("impute_constant_x", Impute::Constant(-1.0)),
    ] {
        check(case, "x", vec![Step::Impute { strategy: s }]);
    }
    check(
        "impute_most_frequent_z",
        "z",
        vec![Step::Impute {
            strategy: Impute::MostFrequent,
        }],
    );
}

#[test]
fn simple_imputer_labels() {
    let (train, _, cases) = load();
    let spec = Spec {
        columns: vec![ColumnSpec::new(
            "cm",
            vec![
                Step::Impute {
                    strategy: Impute::MostFrequent,
                },
                Step::Ordinal,
            ],
        )],
    };
    let p = spec.fit(&train).unwrap();
    let FittedStep::ImputeLabel(fill) = &p.columns()[0].steps[0] else {
        panic!()
    };
    assert_eq!(
        fill,
        cases["impute_most_frequent_cm"]["fill_label"]
            .as_str()
            .unwrap()
    );
}

#[test]
fn kbins_quantile() {
    let p = check("kbins5_y", "y", vec![Step::QuantileBucket { n_bins: 5 }]);
    let FittedStep::Bucket { edges } = &p.columns()[0].steps[0] else {
        panic!()
    };
    let want = consts("kbins5_y", "edges");
    assert_eq!(edges.len(), want.len());
    assert!(edges.iter().zip(&want).all(|(a, b)| close(*a, *b)));
    // Duplicate edges are merged away as scikit-learn does.
    let p = check("kbins4_z", "z", vec![Step::QuantileBucket { n_bins: 4 }]);
    let FittedStep::Bucket { edges } = &p.columns()[0].steps[0] else {
        panic!()
    };
    assert_eq!(edges.len(), consts("kbins4_z", "edges").len());
}

#[test]
fn kbins_quantile_ten_bins_ignores_missing() {
    // scikit-learn was fitted on the present values and given the test column with NaN
    // replaced by 10.0; do the same here.
    let (train, test, _) = load();
    let x = test.column("x").unwrap();
    let filled: Vec<String> = (0..test.nrows())
        .map(|i| {
            let v = x.get_f64(i).unwrap();
            format!("{:?}", if v.is_nan() { 10.0 } else { v })
        })
        .collect();
    let test2 =
        Frame::from_csv_reader(format!("x\n{}\n", filled.join("\n")).as_bytes(), None).unwrap();
    check_on(
        "kbins10_x",
        "x",
        vec![Step::QuantileBucket { n_bins: 10 }],
        Some((&train, &test2)),
    );
}

#[test]
fn one_hot_encoder() {
    let p = check(
        "onehot_c",
        "c",
        vec![Step::OneHot {
            max_categories: None,
            unknown: Unknown::Ignore,
        }],
    );
    let (_, _, cases) = load();
    let names: Vec<String> = cases["onehot_c"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("c={}", v.as_str().unwrap()))
        .collect();
    assert_eq!(p.output_names(), names.as_slice());
}

#[test]
fn one_hot_encoder_infrequent() {
    let p = check(
        "onehot_c_max4",
        "c",
        vec![Step::OneHot {
            max_categories: Some(4),
            unknown: Unknown::Infrequent,
        }],
    );
    let (_, _, cases) = load();
    let FittedStep::OneHot { infrequent, .. } = &p.columns()[0].steps[0] else {
        panic!()
    };
    let want: Vec<&str> = cases["onehot_c_max4"]["infrequent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(infrequent.as_deref().unwrap(), want.as_slice());
}

#[test]
fn feature_hasher() {
    check("hash16_c", "c", vec![Step::Hash { n_features: 16 }]);
}

#[test]
fn imputer_then_scaler_pipeline() {
    check(
        "median_then_standard_x",
        "x",
        vec![
            Step::Impute {
                strategy: Impute::Median,
            },
            Step::Standardize,
        ],
    );
}
