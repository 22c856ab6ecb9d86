//! The committed format-v1 pipeline blob reads back; the fuzz corpus replays without panics.
#![cfg(feature = "fit")]

use keel_core::Frame;
use keel_transform::{fuzzing, ColumnSpec, FittedPipeline, Impute, Spec, Step, Unknown};

fn golden_spec() -> Spec {
    Spec {
        columns: vec![
            ColumnSpec::new(
                "x",
                vec![
                    Step::Impute {
                        strategy: Impute::Median,
                    },
                    Step::Standardize,
                    Step::Clip {
                        min: Some(-3.0),
                        max: Some(3.0),
                    },
                ],
            ),
            ColumnSpec::new("y", vec![Step::Log1p, Step::MinMax]),
            ColumnSpec::new("y", vec![Step::QuantileBucket { n_bins: 5 }]).named("y_q"),
            ColumnSpec::new(
                "z",
                vec![Step::RobustScale {
                    q_low: 10.0,
                    q_high: 90.0,
                }],
            ),
            ColumnSpec::new(
                "c",
                vec![Step::OneHot {
                    max_categories: Some(5),
                    unknown: Unknown::Infrequent,
                }],
            ),
            ColumnSpec::new(
                "cm",
                vec![
                    Step::Impute {
                        strategy: Impute::ConstantLabel("none".into()),
                    },
                    Step::Ordinal,
                ],
            ),
            ColumnSpec::new("c", vec![Step::Hash { n_features: 8 }]).named("c_hash"),
        ],
    }
}

#[test]
fn pipeline_v1_blob_reads_back() {
    let dir = crate::manifest_dir().join("tests");
    let train = Frame::from_csv_path(dir.join("fixtures/train.csv"), None).unwrap();
    let fitted = golden_spec().fit(&train).unwrap();
    let encoded = fitted.to_bytes().unwrap();
    let golden = dir.join("golden/pipeline_v1.bin");
    let corpus = dir.join("../../../fuzz/corpus/transform");
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(&golden, &encoded).unwrap();
        std::fs::write(corpus.join("pipeline_v1.bin"), &encoded).unwrap();
        std::fs::write(
            corpus.join("spec.json"),
            serde_json::to_vec(&golden_spec()).unwrap(),
        )
        .unwrap();
    }
    let bytes = std::fs::read(&golden).expect("golden blob committed (KEEL_BLESS=1 to write)");
    assert_eq!(FittedPipeline::from_bytes(&bytes).unwrap(), fitted);
    assert_eq!(
        bytes, encoded,
        "format v1 changed: bump FittedPipeline's FORMAT_VERSION and keep this blob"
    );
}

#[test]
fn transform_corpus_replays() {
    let dir = crate::manifest_dir().join("../../fuzz/corpus/transform");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        fuzzing::exercise_bytes(&data);
        fuzzing::exercise_bytes(&keel_core::envelope::wrap(
            <FittedPipeline as keel_core::Persisted>::KIND,
            1,
            &data,
        ));
        fuzzing::exercise_spec(&data);
        n += 1;
    }
    assert!(n >= 2, "seed corpus missing");
}
