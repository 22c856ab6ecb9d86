//! The three model manifests (`DEEP`, `DSEQ`, `DCNN`) keep their committed v1 blobs readable,
//! byte for byte.

use keel_core::envelope::assert_golden;
use keel_deep::{CnnManifest, Manifest, SeqManifest};
use std::collections::BTreeMap;

fn golden(name: &str) -> std::path::PathBuf {
    crate::manifest_dir().join("tests/golden").join(name)
}

#[test]
fn golden_manifests_v1_read_back() {
    let metadata = BTreeMap::from([
        ("run".to_string(), "555e1927ab7f2a78".to_string()),
        ("data_version".to_string(), "seq-40003".to_string()),
    ]);
    let mlp = Manifest {
        config_json: r#"{"numeric":2,"hidden":[16]}"#.into(),
        metadata: metadata.clone(),
        tensors: vec!["layers.0.weight".into(), "layers.0.bias".into()],
    };
    assert_golden(&golden("mlp_manifest_v1.bin"), &mlp);
    let seq = SeqManifest {
        config_json: r#"{"max_len":32}"#.into(),
        metadata: metadata.clone(),
    };
    assert_golden(&golden("seq_manifest_v1.bin"), &seq);
    let cnn = CnnManifest {
        config_json: r#"{"channels":1}"#.into(),
        metadata,
    };
    assert_golden(&golden("cnn_manifest_v1.bin"), &cnn);
}
