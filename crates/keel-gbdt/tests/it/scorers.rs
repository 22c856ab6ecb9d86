//! The bit-vector scorer against the tree-walking scorer: on every fixture model (LightGBM and
//! XGBoost, categorical, linear, DART, multiclass, random forest...) and on rows built to hit
//! every decision path (NaN, infinities, zeros inside LightGBM's zero band, negative and
//! out-of-range categories, values equal to thresholds), both give bit-identical raw scores,
//! batched and one row at a time.

use keel_gbdt::fuzzing::{assert_scorers_agree, uses_bitvectors};
use keel_gbdt::GbdtModel;
use proptest::prelude::*;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    crate::manifest_dir().join("tests/fixtures")
}

fn models() -> Vec<(String, GbdtModel)> {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.to_string_lossy();
            !n.ends_with(".expected.json") && !n.ends_with(".py") && !n.ends_with(".csv")
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let m = GbdtModel::from_path(&p).ok()?;
            Some((p.file_name().unwrap().to_string_lossy().into_owned(), m))
        })
        .collect()
}

/// Values that sit on every edge the scorers treat specially.
const EDGES: [f64; 14] = [
    f64::NAN,
    0.0,
    -0.0,
    1e-36,
    -1e-36,
    -0.5,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e300,
    -1e300,
    3.0,
    31.0,
    64.0,
    1.0e7,
];

/// Deterministic rows: edges, small integers (categories) and the model's own thresholds'
/// neighbourhood (uniform in [-3, 3]).
fn rows(nf: usize, n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n * nf)
        .map(|_| {
            let r = next();
            match r % 4 {
                0 => EDGES[(r >> 8) as usize % EDGES.len()],
                1 => ((r >> 8) % 40) as f64 - 4.0,
                _ => ((r >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0,
            }
        })
        .collect()
}

#[test]
fn bitvector_scorer_matches_the_walk_on_every_fixture() {
    let models = models();
    assert!(models.len() >= 40, "{} models", models.len());
    let fast = models.iter().filter(|(_, m)| uses_bitvectors(m)).count();
    // Fixture trees have at most 64 leaves except a few deliberately deep ones.
    assert!(
        fast * 10 >= models.len() * 8,
        "{fast} of {} use bit vectors",
        models.len()
    );
    for (name, m) in &models {
        let nf = m.num_features();
        // 1, 63, 64, 65, 130 rows: single-row path, partial and whole row groups.
        for (i, n) in [1usize, 63, 64, 65, 130].into_iter().enumerate() {
            let x = rows(nf, n, i as u64 + 1);
            let r = std::panic::catch_unwind(|| assert_scorers_agree(m, &x));
            assert!(r.is_ok(), "{name}: {n} rows disagree");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn scorers_agree_on_random_rows(model in 0usize..1000, seed in any::<u64>(), n in 1usize..80) {
        let models = MODELS.with(|m| m.clone());
        let (_, m) = &models[model % models.len()];
        assert_scorers_agree(m, &rows(m.num_features(), n, seed));
    }
}

thread_local! {
    static MODELS: Vec<(String, GbdtModel)> = models();
}
