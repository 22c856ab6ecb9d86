//! The work every fuzz target and its corpus replay do with a model that loaded: score, leaves,
//! SHAP, and a round trip through keel's binary format that must give the same model. Not part of
//! the stable API.

use crate::{GbdtModel, PredictOptions};

/// Raw scores of `rows` by walking every tree, never by bit vectors: the reference the
/// bit-vector scorer is tested against.
pub fn walk_raw(model: &GbdtModel, rows: &[f64]) -> Vec<f64> {
    let m = &model.inner;
    let k = m.num_outputs;
    let nf = m.num_features.max(1);
    let mut out = vec![0.0; rows.len() / nf * k];
    let iters = m.iteration_ptr.len() - 1;
    m.score_serial_by(
        rows,
        m.num_features,
        0..m.trees.len(),
        iters,
        crate::Output::Raw,
        &mut out,
        false,
    );
    out
}

/// Whether `model` scores by bit vectors (all trees of at most 64 leaves).
pub fn uses_bitvectors(model: &GbdtModel) -> bool {
    model.inner.qs.is_some()
}

/// Asserts that both scorers give bit-identical raw scores on `rows`, batched and one
/// row at a time.
pub fn assert_scorers_agree(model: &GbdtModel, rows: &[f64]) {
    let nf = model.num_features();
    if nf == 0 || !rows.len().is_multiple_of(nf) {
        return;
    }
    let walked = walk_raw(model, rows);
    let batch = model
        .predict(rows, &PredictOptions::raw())
        .expect("rows are whole");
    let k = model.inner.num_outputs;
    let same = |a: &[f64], b: &[f64]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    assert!(same(&walked, &batch), "batch: {walked:?} != {batch:?}");
    let mut one = vec![0.0; k];
    for (r, row) in rows.chunks(nf).enumerate() {
        model.inner.score_one(row, crate::Output::Raw, &mut one);
        assert!(same(&walked[r * k..(r + 1) * k], &one), "row {r}");
    }
}

/// Exercises `model`; panics only on a real bug (a loaded model that fails to round-trip,
/// or scorers that disagree).
pub fn exercise(model: &GbdtModel) {
    let nf = model.num_features();
    if nf <= 4096 {
        let probes = [
            0.5,
            f64::NAN,
            -0.5,
            0.0,
            1e-36,
            3.0,
            -1e300,
            f64::INFINITY,
            31.0,
        ];
        let rows: Vec<f64> = (0..probes.len() * nf)
            .map(|i| probes[(i * 7 + i / nf) % probes.len()])
            .collect();
        assert_scorers_agree(model, &rows);
    }
    let row = vec![0.5; model.num_features()];
    let opts = PredictOptions::default();
    let _ = model.predict(&row, &opts);
    let _ = model.predict_leaf(&row, &opts);
    let _ = model.predict_contrib(&row, &opts);
    let bytes = model.to_bytes().expect("a loaded model encodes");
    let back = GbdtModel::from_bytes(&bytes).expect("and decodes");
    assert_eq!(&back, model);
}
