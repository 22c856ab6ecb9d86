//! Training through `lightgbm3` (feature `train`). The result is loaded by the pure-Rust scorer:
//! LightGBM's C++ is used to fit, never to score.

use crate::error::{GbdtError, Result};
use crate::GbdtModel;
use keel_core::{Column, Frame};

/// What to train: columns, label and LightGBM parameters.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Feature columns, in model input order. Categorical columns train as LightGBM categorical
    /// features (their codes are the values); booleans as 0/1.
    pub features: Vec<String>,
    /// Label column (numeric or boolean).
    pub label: String,
    /// LightGBM parameters (objective, num_iterations, num_leaves, learning_rate...).
    pub params: serde_json::Value,
    /// Seed for every random choice LightGBM makes.
    pub seed: u64,
}

/// A trained model: the pure-Rust scorer and the LightGBM text it was loaded from.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model, scored in pure Rust.
    pub model: GbdtModel,
    /// LightGBM's `save_model` text (the artifact a registry stores).
    pub lightgbm_text: String,
}

fn matrix(frame: &Frame, cfg: &TrainConfig) -> Result<(Vec<f64>, Vec<f32>, Vec<usize>)> {
    let names: Vec<&str> = cfg.features.iter().map(String::as_str).collect();
    let x = frame.to_matrix_f64(&names)?;
    let categorical = names
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(frame.column(n), Ok(Column::Categorical { .. })))
        .map(|(i, _)| i)
        .collect();
    let label = frame.column(&cfg.label)?;
    let mut y = Vec::with_capacity(frame.nrows());
    for i in 0..frame.nrows() {
        let v = label.get_f64(i).unwrap_or(f64::NAN);
        if v.is_nan() {
            return Err(GbdtError::Input(format!(
                "label `{}` is missing at row {i}",
                cfg.label
            )));
        }
        y.push(v as f32);
    }
    Ok((x.into_raw_vec_and_offset().0, y, categorical))
}

/// Trains a LightGBM model on `train` (and reports `valid` metrics / early-stops on it when
/// given). Deterministic: `seed`, `deterministic=true` and one thread are forced, so the same
/// data and config give the same model bytes.
pub fn train(train: &Frame, valid: Option<&Frame>, cfg: &TrainConfig) -> Result<Trained> {
    if cfg.features.is_empty() {
        return Err(GbdtError::Input("no feature columns".into()));
    }
    let (x, y, categorical) = matrix(train, cfg)?;
    let nf = cfg.features.len() as i32;
    let mut params = match &cfg.params {
        serde_json::Value::Object(m) => m.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        _ => return Err(GbdtError::Input("params must be a JSON object".into())),
    };
    params.insert("seed".into(), cfg.seed.into());
    params.insert("deterministic".into(), true.into());
    params.insert("num_threads".into(), 1.into());
    params.entry("verbose").or_insert((-1).into());
    if !categorical.is_empty() {
        let list: Vec<String> = categorical.iter().map(usize::to_string).collect();
        params.insert("categorical_feature".into(), list.join(",").into());
    }
    let params = serde_json::Value::Object(params);
    let mut data = lightgbm3::Dataset::from_slice(&x, &y, nf, true)?;
    data.set_feature_names(&cfg.features)?;
    let booster = match valid {
        Some(v) => {
            let (vx, vy, _) = matrix(v, cfg)?;
            let vdata =
                lightgbm3::Dataset::from_slice_with_reference(&vx, &vy, nf, true, Some(&data))?;
            lightgbm3::Booster::train_with_valid(data, Some(vdata), &params)?
        }
        None => lightgbm3::Booster::train(data, &params)?,
    };
    let text = booster.save_string()?;
    let model = GbdtModel::from_lightgbm_text(&text)?;
    Ok(Trained {
        model,
        lightgbm_text: text,
    })
}
