//! Training through LightGBM's C API as `lightgbm3-sys` builds it (feature `train`). The
//! result is loaded by the pure-Rust scorer: LightGBM's C++ is used to fit, never to score.

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
    let valid = valid.map(|v| matrix(v, cfg)).transpose()?;
    let valid = valid
        .as_ref()
        .map(|(vx, vy, _)| (vx.as_slice(), vy.as_slice()));
    train_dense(
        &x,
        &y,
        valid,
        &cfg.features,
        &categorical,
        &cfg.params,
        cfg.seed,
    )
}

/// LightGBM's aliases of `num_iterations` (its documentation, "Core Parameters").
const NUM_ITERATIONS_ALIASES: &[&str] = &[
    "num_iteration",
    "n_iter",
    "num_tree",
    "num_trees",
    "num_round",
    "num_rounds",
    "nrounds",
    "num_boost_round",
    "n_estimators",
    "max_iter",
];
/// LightGBM's aliases of `early_stopping_round` (keel also took `early_stopping_rounds`).
const EARLY_STOPPING_ALIASES: &[&str] = &[
    "early_stopping_rounds",
    "early_stopping",
    "n_iter_no_change",
];
/// LightGBM's aliases of `metric`.
const METRIC_ALIASES: &[&str] = &["metrics", "metric_types"];

/// Moves a parameter given under an alias to its canonical name; two spellings with different
/// values are refused (LightGBM would pick one silently).
fn canonicalize(
    params: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    aliases: &[&str],
) -> Result<()> {
    for alias in aliases {
        let Some(v) = params.remove(*alias) else {
            continue;
        };
        match params.get(name) {
            Some(existing) if existing != &v => {
                return Err(GbdtError::Input(format!(
                    "parameter `{name}` given twice: {name} = {existing} and {alias} = {v}"
                )))
            }
            _ => {
                params.insert(name.to_string(), v);
            }
        }
    }
    Ok(())
}

/// An integer parameter (a number or a numeric string), `None` when absent.
fn integer(params: &serde_json::Map<String, serde_json::Value>, name: &str) -> Result<Option<i64>> {
    let Some(v) = params.get(name) else {
        return Ok(None);
    };
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .map(Some)
        .ok_or_else(|| GbdtError::Input(format!("parameter `{name}` = {v}: expected an integer")))
}

/// [`train`] on a dense row-major matrix: `x` holds `names.len()` values per row, `y` one label
/// per row, `valid` an optional validation matrix and labels in the same layout; columns
/// `categorical` (indices) hold integer category codes and train as LightGBM categorical
/// features. Same determinism as [`train`].
pub fn train_dense(
    x: &[f64],
    y: &[f32],
    valid: Option<(&[f64], &[f32])>,
    names: &[String],
    categorical: &[usize],
    params: &serde_json::Value,
    seed: u64,
) -> Result<Trained> {
    if names.is_empty() {
        return Err(GbdtError::Input("no feature columns".into()));
    }
    if let Some(&c) = categorical.iter().find(|&&c| c >= names.len()) {
        return Err(GbdtError::Input(format!(
            "categorical column {c} beyond {} features",
            names.len()
        )));
    }
    let nf = i32::try_from(names.len())
        .map_err(|_| GbdtError::Input("more than 2^31 features".into()))?;
    let mut params = match params {
        serde_json::Value::Object(m) => m.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        _ => return Err(GbdtError::Input("params must be a JSON object".into())),
    };
    params.insert("seed".into(), seed.into());
    params.insert("deterministic".into(), true.into());
    params.insert("num_threads".into(), 1.into());
    params.entry("verbose").or_insert((-1).into());
    if !categorical.is_empty() {
        let list: Vec<String> = categorical.iter().map(usize::to_string).collect();
        params.insert("categorical_feature".into(), list.join(",").into());
    }
    // keel runs the boosting loop itself, so the parameters it reads must be found under any
    // of LightGBM's aliases (`n_estimators = 50` must not silently train 100 rounds).
    canonicalize(&mut params, "num_iterations", NUM_ITERATIONS_ALIASES)?;
    canonicalize(&mut params, "early_stopping_round", EARLY_STOPPING_ALIASES)?;
    canonicalize(&mut params, "metric", METRIC_ALIASES)?;
    let early_stopping = integer(&params, "early_stopping_round")?;
    let higher_better = matches!(
        params
            .get("metric")
            .and_then(|v| v.as_str())
            .unwrap_or_default(),
        "auc" | "average_precision" | "map" | "ndcg" | "accuracy"
    );
    let num_iterations = integer(&params, "num_iterations")?.unwrap_or(100);
    if num_iterations < 1 {
        return Err(GbdtError::Input(format!(
            "num_iterations = {num_iterations}: at least 1"
        )));
    }
    let params = ffi::param_string(&params)?;
    // The dataset is built with the parameters (as LightGBM's Python package does): binning
    // options and `categorical_feature` act only there. lightgbm3's `Dataset` constructors
    // pass none, which silently trained categorical columns as numeric.
    let data = ffi::Dataset::new(x, y, nf, names, &params, None)?;
    let vdata = match valid {
        Some((vx, vy)) => Some(ffi::Dataset::new(vx, vy, nf, names, &params, Some(&data))?),
        None => None,
    };
    let text = ffi::train(
        &data,
        vdata.as_ref(),
        &params,
        num_iterations,
        early_stopping,
        higher_better,
    )?;
    let model = GbdtModel::from_lightgbm_text(&text)?;
    Ok(Trained {
        model,
        lightgbm_text: text,
    })
}

/// The few LightGBM C API calls training needs, with handles freed on drop.
mod ffi {
    use crate::error::{GbdtError, Result};
    use lightgbm3_sys as sys;
    use std::ffi::{c_char, c_int, CStr, CString};

    fn check(rc: c_int) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: LightGBM returns a pointer to its thread-local, NUL-terminated last error.
        let msg = unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) };
        Err(GbdtError::Lightgbm(msg.to_string_lossy().into_owned()))
    }

    fn cstring(s: &str) -> Result<CString> {
        CString::new(s).map_err(|_| GbdtError::Input(format!("`{s}` contains a NUL byte")))
    }

    /// `key=value` pairs separated by spaces, strings unquoted.
    pub fn param_string(params: &serde_json::Map<String, serde_json::Value>) -> Result<CString> {
        let mut out = Vec::with_capacity(params.len());
        for (k, v) in params {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            if k.contains([' ', '=']) || v.contains(' ') {
                return Err(GbdtError::Input(format!(
                    "LightGBM parameter `{k}={v}` contains a space or `=`"
                )));
            }
            out.push(format!("{k}={v}"));
        }
        cstring(&out.join(" "))
    }

    /// A LightGBM dataset.
    pub struct Dataset(sys::DatasetHandle);

    impl Drop for Dataset {
        fn drop(&mut self) {
            // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed once.
            unsafe { sys::LGBM_DatasetFree(self.0) };
        }
    }

    impl Dataset {
        /// Row-major `x` (`nf` columns), labels `y`, built with `params` (binned like
        /// `reference` when given).
        pub fn new(
            x: &[f64],
            y: &[f32],
            nf: i32,
            names: &[String],
            params: &CStr,
            reference: Option<&Dataset>,
        ) -> Result<Dataset> {
            let nrows = i32::try_from(y.len())
                .map_err(|_| GbdtError::Input("more than 2^31 training rows".into()))?;
            if nf <= 0 || x.len() != y.len() * nf as usize {
                return Err(GbdtError::Input(
                    "feature matrix does not match labels".into(),
                ));
            }
            let mut handle = std::ptr::null_mut();
            // SAFETY: `x` holds nrows x nf f64 values (checked); `params` is NUL-terminated;
            // `reference` is a live dataset or null.
            check(unsafe {
                sys::LGBM_DatasetCreateFromMat(
                    x.as_ptr().cast(),
                    sys::C_API_DTYPE_FLOAT64 as c_int,
                    nrows,
                    nf,
                    1,
                    params.as_ptr(),
                    reference.map_or(std::ptr::null_mut(), |r| r.0),
                    &mut handle,
                )
            })?;
            let data = Dataset(handle);
            let label = cstring("label")?;
            // SAFETY: `y` holds nrows f32 values; the field name is NUL-terminated.
            check(unsafe {
                sys::LGBM_DatasetSetField(
                    data.0,
                    label.as_ptr(),
                    y.as_ptr().cast(),
                    nrows,
                    sys::C_API_DTYPE_FLOAT32 as c_int,
                )
            })?;
            let names: Vec<CString> = names.iter().map(|n| cstring(n)).collect::<Result<_>>()?;
            let mut ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
            // SAFETY: nf pointers to NUL-terminated names that outlive the call.
            check(unsafe { sys::LGBM_DatasetSetFeatureNames(data.0, ptrs.as_mut_ptr(), nf) })?;
            Ok(data)
        }
    }

    struct Booster(sys::BoosterHandle);

    impl Drop for Booster {
        fn drop(&mut self) {
            // SAFETY: the handle came from LGBM_BoosterCreate and is freed once.
            unsafe { sys::LGBM_BoosterFree(self.0) };
        }
    }

    impl Booster {
        /// The first metric on validation set 1, if any.
        fn valid_metric(&self) -> Result<Option<f64>> {
            let mut n: c_int = 0;
            // SAFETY: a live booster; `n` is written.
            check(unsafe { sys::LGBM_BoosterGetEvalCounts(self.0, &mut n) })?;
            if n <= 0 {
                return Ok(None);
            }
            let mut out = vec![0.0f64; n as usize];
            let mut len: c_int = 0;
            // SAFETY: `out` has room for the `n` metrics LightGBM reported.
            check(unsafe { sys::LGBM_BoosterGetEval(self.0, 1, &mut len, out.as_mut_ptr()) })?;
            Ok(out.first().copied().filter(|_| len > 0))
        }
    }

    /// Boosts up to `num_iterations` rounds (stopping early on the first validation metric
    /// when asked, rolling back the rounds without improvement) and returns the model text.
    pub fn train(
        data: &Dataset,
        valid: Option<&Dataset>,
        params: &CStr,
        num_iterations: i64,
        early_stopping: Option<i64>,
        higher_better: bool,
    ) -> Result<String> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: a live dataset; NUL-terminated parameters.
        check(unsafe { sys::LGBM_BoosterCreate(data.0, params.as_ptr(), &mut handle) })?;
        let booster = Booster(handle);
        if let Some(v) = valid {
            // SAFETY: live booster and dataset (binned like the training set).
            check(unsafe { sys::LGBM_BoosterAddValidData(booster.0, v.0) })?;
        }
        let stop_after = early_stopping.filter(|&r| r > 0 && valid.is_some());
        let mut best: Option<f64> = None;
        let mut stale = 0i64;
        for iter in 1..=num_iterations {
            let mut finished: c_int = 0;
            // SAFETY: a live booster.
            check(unsafe { sys::LGBM_BoosterUpdateOneIter(booster.0, &mut finished) })?;
            if finished != 0 {
                break;
            }
            let Some(rounds) = stop_after else { continue };
            let Some(score) = booster.valid_metric()? else {
                continue;
            };
            let better = best.is_none_or(|b| if higher_better { score > b } else { score < b });
            if better {
                best = Some(score);
                stale = 0;
            } else {
                stale += 1;
                if stale >= rounds {
                    for _ in 0..stale.min(iter) {
                        // SAFETY: a live booster with at least `iter` rounds.
                        check(unsafe { sys::LGBM_BoosterRollbackOneIter(booster.0) })?;
                    }
                    break;
                }
            }
        }
        let mut len: i64 = 0;
        // SAFETY: a size query (buffer length 0, null buffer).
        check(unsafe {
            sys::LGBM_BoosterSaveModelToString(
                booster.0,
                0,
                -1,
                0,
                0,
                &mut len,
                std::ptr::null_mut(),
            )
        })?;
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        // SAFETY: `buf` has the `len` bytes LightGBM asked for.
        check(unsafe {
            sys::LGBM_BoosterSaveModelToString(
                booster.0,
                0,
                -1,
                0,
                buf.len() as i64,
                &mut len,
                buf.as_mut_ptr().cast(),
            )
        })?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
        String::from_utf8(buf).map_err(|_| GbdtError::Lightgbm("model text is not UTF-8".into()))
    }
}
