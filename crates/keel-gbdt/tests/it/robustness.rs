//! Untrusted model files: typed errors naming the fault, never a panic.

use keel_gbdt::{GbdtError, GbdtModel, PredictOptions};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(crate::manifest_dir().join("tests/fixtures").join(name)).unwrap()
}

const ONE_SPLIT: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
max_feature_idx=1\nobjective=regression\nfeature_names=a b\n\nTree=0\nnum_leaves=3\nnum_cat=0\n\
split_feature=0 1\nthreshold=0.5 1.5\ndecision_type=2 2\nleft_child=1 -1\nright_child=-3 -2\n\
leaf_value=1 2 3\nleaf_count=1 1 1\ninternal_count=3 2\nis_linear=0\nshrinkage=1\n\nend of trees\n";

fn invalid_msg(text: &str) -> String {
    match GbdtModel::from_lightgbm_text(text) {
        Err(GbdtError::Invalid { what, .. }) => what,
        Err(other) => panic!("expected Invalid, got {other}"),
        Ok(_) => panic!("accepted a broken model"),
    }
}

#[test]
fn baseline_is_valid() {
    let m = GbdtModel::from_lightgbm_text(ONE_SPLIT).unwrap();
    assert_eq!(
        m.predict(&[0.0, 0.0, 0.0, 2.0, 0.9, 0.0], &PredictOptions::default())
            .unwrap(),
        vec![1.0, 2.0, 3.0]
    );
}

#[test]
fn cycles_and_shared_children_are_refused() {
    let msg = invalid_msg(&ONE_SPLIT.replace("left_child=1 -1", "left_child=1 0"));
    assert!(msg.contains("reached twice"), "{msg}");
    let msg = invalid_msg(&ONE_SPLIT.replace("left_child=1 -1", "left_child=1 -3"));
    assert!(msg.contains("reached twice"), "{msg}");
}

#[test]
fn out_of_range_references_are_refused() {
    assert!(
        invalid_msg(&ONE_SPLIT.replace("left_child=1 -1", "left_child=7 -1")).contains("child 7")
    );
    assert!(
        invalid_msg(&ONE_SPLIT.replace("right_child=-3 -2", "right_child=-9 -2"))
            .contains("leaf 8")
    );
    assert!(
        invalid_msg(&ONE_SPLIT.replace("split_feature=0 1", "split_feature=0 5"))
            .contains("feature 5")
    );
    assert!(
        invalid_msg(&ONE_SPLIT.replace("leaf_value=1 2 3", "leaf_value=1 2"))
            .contains("leaf_value")
    );
    assert!(
        invalid_msg(&ONE_SPLIT.replace("threshold=0.5 1.5", "threshold=0.5 x"))
            .contains("threshold")
    );
    assert!(
        invalid_msg(&ONE_SPLIT.replace("num_leaves=3", "num_leaves=90000000"))
            .contains("leaf_value")
    );
    assert!(
        invalid_msg(&ONE_SPLIT.replace("num_leaves=3", "num_leaves=900000000"))
            .contains("num_leaves")
    );
    let cat = ONE_SPLIT
        .replace("decision_type=2 2", "decision_type=1 2")
        .replace(
            "num_cat=0",
            "num_cat=1\ncat_boundaries=0 4\ncat_threshold=1",
        );
    assert!(invalid_msg(&cat).contains("cat_boundaries"));
}

#[test]
fn wrong_inputs_are_typed_errors() {
    let m = GbdtModel::from_lightgbm_text(ONE_SPLIT).unwrap();
    let mut out = [0.0];
    assert!(matches!(
        m.predict_row(&[1.0], &mut out),
        Err(GbdtError::Input(_))
    ));
    assert!(matches!(
        m.predict_row(&[1.0, 2.0], &mut [0.0, 0.0]),
        Err(GbdtError::Input(_))
    ));
    assert!(matches!(
        m.predict(&[1.0, 2.0, 3.0], &PredictOptions::default()),
        Err(GbdtError::Input(_))
    ));
    let opts = PredictOptions::default().with_iterations(5, None);
    assert!(matches!(
        m.predict(&[1.0, 2.0], &opts),
        Err(GbdtError::Input(_))
    ));
    assert!(matches!(
        GbdtModel::from_bytes(b"hello"),
        Err(GbdtError::UnknownFormat)
    ));
    assert!(matches!(
        GbdtModel::from_bytes(b""),
        Err(GbdtError::UnknownFormat)
    ));
}

#[test]
fn unsupported_objectives_are_named() {
    let err = GbdtModel::from_lightgbm_text(
        &ONE_SPLIT.replace("objective=regression", "objective=mystery"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("mystery"), "{err}");
}

#[test]
fn xgboost_structure_errors() {
    let text = String::from_utf8(fixture("xgb_binary.json")).unwrap();
    let bad = text.replacen("\"left_children\":[1,", "\"left_children\":[0,", 1);
    assert_ne!(bad, text);
    let err = GbdtModel::from_bytes(bad.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("reached twice"), "{err}");
    let bad = text.replacen("\"split_indices\":[", "\"split_indices\":[99,", 1);
    assert!(GbdtModel::from_bytes(bad.as_bytes()).is_err());
    let bad = text.replacen("\"binary:logistic\"", "\"binary:mystery\"", 1);
    assert!(GbdtModel::from_bytes(bad.as_bytes())
        .unwrap_err()
        .to_string()
        .contains("binary:mystery"));
}

fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8)]) -> Vec<u8> {
    for (i, b) in edits {
        let len = bytes.len();
        bytes[i.index(len)] = *b;
    }
    bytes
}

fn exercise(bytes: &[u8]) {
    if let Ok(m) = GbdtModel::from_bytes(bytes) {
        keel_gbdt::fuzzing::exercise(&m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_lightgbm_text_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        exercise(&mutate(fixture("lgb_categorical.txt"), &edits));
    }

    #[test]
    fn mutated_xgboost_json_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), b'0'..=b'9'), 1..8)) {
        exercise(&mutate(fixture("xgb_categorical.json"), &edits));
    }

    #[test]
    fn mutated_ubjson_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        exercise(&mutate(fixture("xgb_softmax.ubj"), &edits));
    }

    #[test]
    fn truncated_files_never_panic(cut in any::<prop::sample::Index>()) {
        for name in ["lgb_linear.txt", "xgb_binary_ubj.ubj", "xgb_forest.json"] {
            let b = fixture(name);
            exercise(&b[..cut.index(b.len())]);
        }
    }

    #[test]
    fn mutated_keel_binary_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let bytes = GbdtModel::from_bytes(&fixture("lgb_multiclass.txt")).unwrap().to_bytes().unwrap();
        exercise(&mutate(bytes, &edits));
    }
}

/// Issue 23, item 3: a LightGBM text model cut short loaded with fewer trees (90 of 220 cut
/// points loaded, down to 0 trees). Now a cut anywhere before `end of trees` is refused (the
/// marker and `tree_sizes` are checked), and a cut after it loads the whole model.
#[test]
fn truncated_lightgbm_models_are_refused_never_loaded_with_fewer_trees() {
    for name in [
        "lgb_binary.txt",
        "lgb_multiclass.txt",
        "lgb_categorical.v3.txt",
    ] {
        let text = String::from_utf8(fixture(name)).unwrap();
        let whole = GbdtModel::from_lightgbm_text(&text).unwrap();
        let trees = whole.info().num_trees;
        let end_of_trees = text.find("\nend of trees").unwrap();
        let (mut refused, mut loaded) = (0, 0);
        for k in 1..220 {
            let mut cut = text.len() * k / 220;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            match GbdtModel::from_lightgbm_text(&text[..cut]) {
                Err(GbdtError::Invalid { .. }) => refused += 1,
                Err(other) => panic!("{name} cut at {cut}: unexpected error {other}"),
                Ok(m) => {
                    assert!(cut > end_of_trees, "{name} cut at {cut} loaded");
                    assert_eq!(m.info().num_trees, trees, "{name} cut at {cut}");
                    loaded += 1;
                }
            }
        }
        assert!(refused > 150, "{name}: {refused} refused, {loaded} loaded");
    }
    // A tree removed whole (sizes no longer match the header) is refused too.
    let text = String::from_utf8(fixture("lgb_binary.txt")).unwrap();
    let t3 = text.find("\nTree=3\n").unwrap();
    let t4 = text.find("\nTree=4\n").unwrap();
    let spliced = format!("{}{}", &text[..t3], &text[t4..]);
    let msg = invalid_msg(&spliced);
    assert!(msg.contains("tree_sizes"), "{msg}");
}
