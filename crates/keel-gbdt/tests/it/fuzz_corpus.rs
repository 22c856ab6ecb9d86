//! Replays the cargo-fuzz seed corpora of the GBDT loaders through the calls the fuzz targets
//! make (load, score, leaf, SHAP, keel round trip), so CI catches regressions without a fuzzer.

use keel_gbdt::GbdtModel;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = crate::manifest_dir().join("../../fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn exercise(loaded: Result<GbdtModel, keel_gbdt::GbdtError>) -> bool {
    let Ok(m) = loaded else { return false };
    keel_gbdt::fuzzing::exercise(&m);
    true
}

#[test]
fn replay_gbdt_corpora() {
    let mut loaded = 0;
    for data in corpus("lightgbm_text") {
        loaded += usize::from(exercise(
            std::str::from_utf8(&data)
                .map_err(|_| keel_gbdt::GbdtError::UnknownFormat)
                .and_then(GbdtModel::from_lightgbm_text),
        ));
    }
    for data in corpus("xgboost_json") {
        loaded += usize::from(exercise(GbdtModel::from_xgboost_json(&data)));
    }
    for data in corpus("xgboost_ubjson") {
        loaded += usize::from(exercise(GbdtModel::from_xgboost_ubjson(&data)));
    }
    for data in corpus("gbdt_binary") {
        exercise(GbdtModel::from_bytes(&data));
    }
    assert!(loaded >= 10, "the fixture seeds must load ({loaded})");
}
