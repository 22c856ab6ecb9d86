//! The registry's records (`MVER`, `RUN_`; `MALS` in a unit test, its type is crate-private)
//! keep their committed v1 blobs readable, byte for byte.

use keel_core::envelope::assert_golden;
use keel_core::{DType, Field, Schema};
use keel_registry::{
    ArtifactRef, DataRef, FileEntry, MetricPoint, ModelMeta, ModelVersion, Run, RunId, RunStatus,
};
use std::collections::BTreeMap;

fn golden(name: &str) -> std::path::PathBuf {
    crate::manifest_dir().join("tests/golden").join(name)
}

#[test]
fn golden_records_v1_read_back() {
    let run_id = RunId("555e1927ab7f2a78".into());
    let version = ModelVersion {
        name: "fraud".into(),
        version: 2,
        run_id: run_id.clone(),
        created_ms: 1_767_225_600_000,
        meta: ModelMeta {
            flavor: "gbdt".into(),
            feature_service: Some("fraud".into()),
            input_schema: Some(
                Schema::new(vec![Field::new("amount", DType::F64)]).expect("one field"),
            ),
            eval: BTreeMap::from([("test.auc".to_string(), 0.802)]),
            params: BTreeMap::from([("num_leaves".to_string(), "31".to_string())]),
            seed: Some(42),
            data_version: Some("seq-40003".into()),
            description: "first model".into(),
        },
        files: vec![FileEntry {
            name: "model".into(),
            sha256: "ab".repeat(32),
            size: 1234,
        }],
    };
    assert_golden(&golden("model_version_v1.bin"), &version);
    let run = Run {
        id: run_id,
        experiment: "fraud".into(),
        name: Some("nightly".into()),
        status: RunStatus::Finished,
        start_ms: 1_767_225_600_000,
        end_ms: Some(1_767_225_601_100),
        params: BTreeMap::from([("learning_rate".to_string(), "0.05".to_string())]),
        metrics: BTreeMap::from([(
            "valid.auc".to_string(),
            vec![MetricPoint {
                value: 0.91,
                step: 3,
                timestamp_ms: 1_767_225_600_500,
            }],
        )]),
        tags: BTreeMap::from([("owner".to_string(), "risk".to_string())]),
        seed: Some(42),
        data: vec![DataRef {
            name: "train".into(),
            version: "blake3:00ff".into(),
        }],
        code_version: Some("5f75659".into()),
        artifacts: vec![ArtifactRef {
            name: "model.txt".into(),
            sha256: "cd".repeat(32),
            size: 99,
        }],
    };
    assert_golden(&golden("run_v1.bin"), &run);
}
