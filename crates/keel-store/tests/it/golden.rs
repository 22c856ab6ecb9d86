//! One committed blob per on-disk kind and format version of the store's catalog, read back by
//! this build (stored rows are checked by a unit test: their type is crate-private).

use keel_core::envelope::assert_golden;
use keel_core::{DType, Field};
use keel_store::{Entity, FeatureRef, FeatureService, FeatureView};
use std::collections::BTreeMap;

fn golden(name: &str) -> std::path::PathBuf {
    crate::manifest_dir().join("tests/golden").join(name)
}

#[test]
fn golden_catalog_v1_blobs_read_back() {
    let entity = Entity {
        name: "card".into(),
        join_keys: vec![Field::required("card_id", DType::String)],
    };
    assert_golden(&golden("entity_v1.bin"), &entity);
    let view = FeatureView {
        name: "card_stats".into(),
        version: 3,
        entities: vec!["card".into(), "merchant".into()],
        features: vec![
            Field::new("spend_24h", DType::F64),
            Field::required("txn_count", DType::I64),
            Field::new("country", DType::Categorical),
        ],
        ttl_ms: Some(86_400_000),
        retention_ms: None,
        owner: "risk".into(),
        description: "card spend".into(),
        tags: BTreeMap::from([("team".to_string(), "fraud".to_string())]),
    };
    assert_golden(&golden("feature_view_v1.bin"), &view);
    let service = FeatureService {
        name: "fraud".into(),
        features: vec![FeatureRef {
            view: "card_stats".into(),
            version: 3,
            feature: "spend_24h".into(),
        }],
    };
    assert_golden(&golden("feature_service_v1.bin"), &service);
}
