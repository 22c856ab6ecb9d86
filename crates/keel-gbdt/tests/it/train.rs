//! Training through lightgbm3: deterministic, and scored by the pure-Rust engine exactly as
//! LightGBM scores it.
#![cfg(feature = "train")]

use keel_core::{DType, Field, Frame, Schema};
use keel_gbdt::{train, PredictOptions, TrainConfig};

fn frame(n: usize, seed: u64) -> Frame {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut csv = String::from("amount,age,country,online,fraud\n");
    let countries = ["FR", "DE", "US", "GB"];
    for _ in 0..n {
        let amount = (next() * 5.0).exp();
        let age = if next() < 0.05 {
            String::new()
        } else {
            format!("{:.1}", 18.0 + next() * 60.0)
        };
        let c = countries[(next() * 4.0) as usize];
        let online = next() < 0.4;
        let p = 0.05
            + if amount > 60.0 && online { 0.5 } else { 0.0 }
            + if c == "US" { 0.1 } else { 0.0 };
        let fraud = u8::from(next() < p);
        csv += &format!("{amount},{age},{c},{online},{fraud}\n");
    }
    let schema = Schema::new(vec![
        Field::new("amount", DType::F64),
        Field::new("age", DType::F64),
        Field::new("country", DType::Categorical),
        Field::new("online", DType::Bool),
        Field::new("fraud", DType::I64),
    ])
    .unwrap();
    Frame::from_csv_reader(csv.as_bytes(), Some(&schema)).unwrap()
}

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        features: ["amount", "age", "country", "online"]
            .map(String::from)
            .to_vec(),
        label: "fraud".into(),
        params: serde_json::json!({"objective": "binary", "num_iterations": 30, "num_leaves": 7,
                                    "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8}),
        seed,
    }
}

#[test]
fn training_is_deterministic_and_seed_sensitive() {
    let data = frame(2000, 1);
    let a = train(&data, None, &config(7)).unwrap();
    let b = train(&data, None, &config(7)).unwrap();
    assert_eq!(a.lightgbm_text, b.lightgbm_text);
    assert_eq!(a.model.to_bytes().unwrap(), b.model.to_bytes().unwrap());
    let c = train(&data, None, &config(8)).unwrap();
    assert_ne!(a.lightgbm_text, c.lightgbm_text);
    // The categorical column trains as a LightGBM categorical feature: the dataset is built
    // with the parameters, so some trees split on it by category.
    assert!(
        a.model.info().categorical_features.contains(&2),
        "{:?}",
        a.model.info().categorical_features
    );
    assert!(a
        .lightgbm_text
        .lines()
        .any(|l| l.starts_with("num_cat=") && l != "num_cat=0"));
}

#[test]
fn pure_rust_scores_equal_lightgbm() {
    let data = frame(2000, 1);
    let valid = frame(500, 2);
    let t = train(&data, Some(&valid), &config(7)).unwrap();
    let x = t.model.frame_matrix(&valid).unwrap();
    let ours = t.model.predict(&x, &PredictOptions::default()).unwrap();
    let booster = lightgbm3::Booster::from_string(&t.lightgbm_text).unwrap();
    let theirs = booster
        .predict_with_params(&x, 4, true, "num_threads=1")
        .unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
    }
}

#[test]
fn missing_labels_are_refused() {
    let mut data = frame(100, 1);
    data = data
        .select(&["amount", "age", "country", "online", "fraud"])
        .unwrap();
    let cfg = TrainConfig {
        label: "age".into(),
        ..config(7)
    };
    assert!(train(&data, None, &cfg)
        .unwrap_err()
        .to_string()
        .contains("missing"));
}

/// Issue 24: keel runs the boosting loop and read only `num_iterations`, so `n_estimators = 7`
/// (or any other LightGBM alias, or a numeric string) silently trained 100 rounds. Aliases are
/// honoured now, and two different spellings of one parameter are refused.
#[test]
fn lightgbm_parameter_aliases_are_honoured_and_conflicts_refused() {
    let data = frame(800, 3);
    let with = |params: serde_json::Value| TrainConfig {
        params,
        ..config(7)
    };
    for (params, rounds) in [
        (
            serde_json::json!({"objective": "binary", "n_estimators": 7}),
            7,
        ),
        (
            serde_json::json!({"objective": "binary", "num_boost_round": "9"}),
            9,
        ),
        (
            serde_json::json!({"objective": "binary", "num_trees": 4, "num_iterations": 4}),
            4,
        ),
        (serde_json::json!({"objective": "binary"}), 100),
    ] {
        let t = train(&data, None, &with(params.clone())).unwrap();
        assert_eq!(t.model.num_iterations(), rounds, "{params}");
    }
    for bad in [
        serde_json::json!({"objective": "binary", "num_iterations": 5, "n_estimators": 7}),
        serde_json::json!({"objective": "binary", "n_estimators": "many"}),
        serde_json::json!({"objective": "binary", "n_estimators": 0}),
    ] {
        let err = train(&data, None, &with(bad.clone())).unwrap_err();
        assert!(
            matches!(err, keel_gbdt::GbdtError::Input(_)),
            "{bad}: {err}"
        );
    }
}
