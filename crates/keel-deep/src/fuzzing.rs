//! Entry point shared by the fuzz target and the corpus replay test. Not part of the stable API.

use crate::{Cnn, CnnManifest, Manifest, Mlp, MlpConfig, SeqManifest, SeqModel};
use keel_core::envelope::{self, Persisted};

/// Splits `data` at its first byte's position into a manifest and weights, and tries every
/// decoder: manifest (direct and past a valid header), config JSON, weights for a small
/// fixed config. Errors allowed, panics not; a model that loads must score.
pub fn exercise(data: &[u8]) {
    let cut = data.first().map_or(0, |b| (*b as usize).min(data.len()));
    let (a, b) = data.split_at(cut);
    for m in [a.to_vec(), envelope::wrap(Manifest::KIND, 1, a)] {
        if let Ok((model, _)) = Mlp::from_parts(&m, b) {
            score(&model);
        }
    }
    if let Ok(cfg) = serde_json::from_slice::<MlpConfig>(data) {
        if let Ok(model) = Mlp::new(cfg, 0) {
            score(&model);
        }
    }
    let small = MlpConfig {
        numeric: 2,
        embeddings: vec![super::EmbeddingSpec {
            cardinality: 3,
            dim: 2,
        }],
        hidden: vec![4],
        layer_norm: true,
        residual: false,
        dropout: 0.0,
        head: super::Head::Binary,
    };
    if let Ok(model) = Mlp::from_safetensors(small, data) {
        score(&model);
    }
    for m in [a.to_vec(), envelope::wrap(CnnManifest::KIND, 1, a)] {
        if let Ok((model, _)) = Cnn::from_parts(&m, b) {
            let c = model.config();
            if c.image_len() <= 1 << 12 {
                let px = vec![0.5; c.image_len()];
                let p = model.predict_images(&px, 1).expect("a loaded model scores");
                assert_eq!(p.len(), model.outputs());
            }
        }
    }
    for m in [a.to_vec(), envelope::wrap(SeqManifest::KIND, 1, a)] {
        if let Ok((model, _)) = SeqModel::from_parts(&m, b) {
            let c = model.config();
            if c.d_model * c.max_len <= 1 << 16 && c.layers <= 4 {
                let p = model
                    .predict_texts(&["fuzz"])
                    .expect("a loaded model scores");
                assert_eq!(p.len(), model.outputs());
            }
        }
    }
}

/// Imports `data` as an ONNX model; one that imports must run (or fail with an error) on
/// a small input of its declared shape (symbolic dims as 1).
#[cfg(feature = "onnx")]
pub fn exercise_onnx(data: &[u8]) {
    let Ok(model) = super::OnnxModel::from_bytes(data) else {
        return;
    };
    if let [(_, dims)] = model.inputs() {
        let shape: Vec<usize> = dims.iter().map(|d| d.unwrap_or(1)).collect();
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if let Some(n) = n.filter(|&n| n <= 1 << 12) {
            let _ = model.predict(&vec![0.25; n], &shape);
        }
    }
}

fn score(m: &Mlp) {
    let c = m.config();
    if c.input_width() > 4096 || c.hidden.iter().any(|h| *h > 4096) {
        return;
    }
    let num = vec![0.5; c.numeric];
    let codes = vec![1; c.embeddings.len()];
    let mut out = vec![0.0; m.outputs()];
    m.predict_one(&num, &codes, &mut out)
        .expect("a loaded model scores");
}
