//! Metrics agree with scikit-learn on committed fixtures (tests/fixtures/generate_metrics.py).

use keel_monitor::metrics::*;
use serde_json::Value;

fn fixtures() -> Value {
    let p = &format!(
        "{}/tests/fixtures/metrics.json",
        crate::manifest_dir().display()
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn vec(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

#[test]
fn binary_and_regression_metrics_match_sklearn() {
    let f = fixtures();
    for (i, c) in f["binary"].as_array().unwrap().iter().enumerate() {
        let (y, p) = (vec(&c["y"]), vec(&c["p"]));
        let (yr, pr) = (vec(&c["yr"]), vec(&c["pr"]));
        for (name, got, want) in [
            ("auc", roc_auc(&y, &p).unwrap(), &c["auc"]),
            ("ap", average_precision(&y, &p).unwrap(), &c["ap"]),
            ("logloss", log_loss(&y, &p).unwrap(), &c["logloss"]),
            ("accuracy", accuracy(&y, &p, 0.5).unwrap(), &c["accuracy"]),
            ("rmse", rmse(&yr, &pr).unwrap(), &c["rmse"]),
            ("mae", mae(&yr, &pr).unwrap(), &c["mae"]),
        ] {
            let want = want.as_f64().unwrap();
            assert!(
                close(got, want),
                "case {i} {name}: keel {got} sklearn {want}"
            );
        }
    }
}

#[test]
fn ndcg_matches_sklearn_with_ties() {
    let f = fixtures();
    for (i, c) in f["ndcg"].as_array().unwrap().iter().enumerate() {
        let (rel, score) = (vec(&c["rel"]), vec(&c["score"]));
        for k in [1usize, 3, 5, 10] {
            let got = ndcg_at_k(&rel, &score, k).unwrap();
            let want = c[format!("ndcg@{k}")].as_f64().unwrap();
            assert!(
                close(got, want),
                "query {i} ndcg@{k}: keel {got} sklearn {want}"
            );
        }
    }
}

#[test]
fn multiclass_metrics_match_sklearn() {
    let f = fixtures();
    let m = &f["multiclass"];
    let y: Vec<usize> = vec(&m["y"]).iter().map(|v| *v as usize).collect();
    let p: Vec<f64> = m["p"].as_array().unwrap().iter().flat_map(vec).collect();
    assert!(close(
        log_loss_multiclass(&y, &p, 4).unwrap(),
        m["logloss"].as_f64().unwrap()
    ));
    assert!(close(
        accuracy_multiclass(&y, &p, 4).unwrap(),
        m["accuracy"].as_f64().unwrap()
    ));
}

#[test]
fn degenerate_inputs_are_errors_not_panics() {
    assert!(roc_auc(&[1.0, 1.0], &[0.2, 0.3]).is_err());
    assert!(roc_auc(&[], &[]).is_err());
    assert!(roc_auc(&[0.0, 2.0], &[0.1, 0.2]).is_err());
    assert!(average_precision(&[0.0, 0.0], &[0.1, 0.2]).is_err());
    assert!(log_loss(&[1.0], &[f64::NAN]).is_err());
    assert!(rmse(&[1.0], &[1.0, 2.0]).is_err());
    assert!(ndcg_grouped(&[1.0, 0.0], &[0.1, 0.2], &[3], 5).is_err());
    assert_eq!(ndcg_at_k(&[0.0, 0.0], &[0.1, 0.2], 5).unwrap(), 0.0);
}
