//! The seam loads every unstructured flavor from a registered bundle, and scores bit for bit
//! as the flavor's own API does; a one-row call equals its row of the batch; inputs of the
//! wrong kind or size, and bundles that contradict their schema, are typed errors.

use keel_core::{DType, Field, Schema};
use keel_deep::{
    Cnn, CnnConfig, ConvSpec, Head, OnnxModel, Pooling, SeqConfig, SeqModel, Tokenizer,
};
use keel_model::{Flavor, Input, InputSpec, Model, ModelError, ServedModel};
use keel_registry::{Bundle, LoadedVersion, Registry};
use std::collections::BTreeMap;

fn register(
    reg: &Registry,
    name: &str,
    flavor: &str,
    files: Vec<(&str, Vec<u8>)>,
    schema: Option<Schema>,
) -> LoadedVersion {
    let run = reg.start_run(name).unwrap();
    let id = run.id().clone();
    run.finish().unwrap();
    let mut b = Bundle::new(flavor);
    for (n, bytes) in files {
        b = b.with_file(n, bytes);
    }
    b.meta.input_schema = schema;
    let v = reg.register(name, &id, b).unwrap();
    reg.load(name, v.version).unwrap()
}

fn text_schema() -> Schema {
    Schema::new(vec![Field::required("text", DType::String)]).unwrap()
}

fn seq() -> SeqModel {
    SeqModel::new(
        SeqConfig {
            tokenizer: Tokenizer::HashedWords { buckets: 256 },
            max_len: 16,
            d_model: 16,
            heads: 2,
            layers: 1,
            ff: 32,
            dropout: 0.0,
            pooling: Pooling::Mean,
            head: Head::Multiclass { classes: 3 },
        },
        7,
    )
    .unwrap()
}

fn cnn() -> Cnn {
    Cnn::new(
        CnnConfig {
            channels: 1,
            height: 8,
            width: 8,
            conv: vec![ConvSpec {
                filters: 4,
                kernel: 3,
                pool: 2,
            }],
            dropout: 0.0,
            head: Head::Multiclass { classes: 3 },
        },
        7,
    )
    .unwrap()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn a_sequence_model_scores_texts_as_its_own_api_does() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let m = seq();
    let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
    let v = register(
        &reg,
        "tickets",
        "sequence",
        vec![("model", manifest), ("weights", weights)],
        Some(text_schema()),
    );
    let model = Model::load(&v).unwrap();
    assert_eq!(model.flavor(), Flavor::Sequence);
    assert_eq!(model.input(), InputSpec::Text);
    assert_eq!(model.outputs(), 3, "every class comes back");
    let texts = [
        "refund my card",
        "parcel never arrived",
        "app crashes at login",
        "",
    ];
    let got = model.score_batch(Input::Texts(&texts)).unwrap();
    let own: Vec<f64> = m
        .predict_texts(&texts)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    assert_eq!(bits(&got), bits(&own), "the seam is the flavor's API");
    // One row against its row of the batch: candle's CPU matmul blocks differently for other
    // batch sizes, so the sequence encoder agrees to an f32 rounding step, not bit for bit
    // (the CNN and ONNX paths below do agree bit for bit).
    for (i, t) in texts.iter().enumerate() {
        let one = model.score_row(Input::Texts(&[t])).unwrap();
        for (a, b) in one.iter().zip(&got[i * 3..i * 3 + 3]) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "row {i}: {a} vs {b}"
            );
        }
    }
    // Wrong input kinds are typed errors, not panics.
    assert!(matches!(
        model.score_batch(Input::Tensors {
            data: &[0.0; 4],
            rows: 1
        }),
        Err(ModelError::Shape(_))
    ));
    assert!(matches!(
        model.score_row(Input::Texts(&["a", "b"])),
        Err(ModelError::Shape(_))
    ));
    // The serving path for store rows refuses it with a pointer to the seam.
    match ServedModel::from_bundle(&v) {
        Err(ModelError::Unsupported(why)) => assert!(why.contains("Model::load"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A bundle that declares other inputs than one text is refused at load.
    let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
    let wrong = register(
        &reg,
        "tickets",
        "sequence",
        vec![("model", manifest), ("weights", weights)],
        Some(Schema::new(vec![Field::new("amount", DType::F64)]).unwrap()),
    );
    assert!(matches!(
        Model::load(&wrong),
        Err(ModelError::IncompatibleBundle { .. })
    ));
}

#[test]
fn a_cnn_scores_images_as_its_own_api_does() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let m = cnn();
    let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
    let v = register(
        &reg,
        "digits",
        "cnn",
        vec![("model", manifest), ("weights", weights)],
        None,
    );
    let model = Model::load(&v).unwrap();
    assert_eq!(model.input(), InputSpec::Tensor(vec![1, 8, 8]));
    assert_eq!(model.outputs(), 3);
    let rows = 5;
    let px: Vec<f32> = (0..rows * 64)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();
    let got = model
        .score_batch(Input::Tensors { data: &px, rows })
        .unwrap();
    let own: Vec<f64> = m
        .predict_images(&px, rows)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    assert_eq!(bits(&got), bits(&own));
    for r in 0..rows {
        let one = model
            .score_row(Input::Tensors {
                data: &px[r * 64..(r + 1) * 64],
                rows: 1,
            })
            .unwrap();
        assert_eq!(bits(&one), bits(&got[r * 3..r * 3 + 3]), "row {r}");
    }
    // Wrong lengths and non-finite pixels are typed errors.
    assert!(matches!(
        model.score_batch(Input::Tensors {
            data: &px[..63],
            rows: 1
        }),
        Err(ModelError::Shape(_))
    ));
    let mut bad = px[..64].to_vec();
    bad[9] = f32::NAN;
    assert!(matches!(
        model.score_batch(Input::Tensors {
            data: &bad,
            rows: 1
        }),
        Err(ModelError::Shape(_))
    ));
    assert!(matches!(
        model.score_batch(Input::Texts(&["x"])),
        Err(ModelError::Shape(_))
    ));
}

#[test]
fn an_onnx_graph_scores_tensors_as_its_own_evaluator_does() {
    let bytes =
        std::fs::read(crate::manifest_dir().join("../keel-deep/tests/fixtures/onnx_mlp.onnx"))
            .unwrap();
    let graph = OnnxModel::from_bytes(&bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let v = register(&reg, "mlp", "onnx", vec![("model", bytes)], None);
    let model = Model::load(&v).unwrap();
    let InputSpec::Tensor(shape) = model.input() else {
        panic!("{:?}", model.input())
    };
    let width: usize = shape.iter().product();
    let rows = 4;
    let x: Vec<f32> = (0..rows * width).map(|i| (i as f32 * 0.37).sin()).collect();
    let got = model
        .score_batch(Input::Tensors { data: &x, rows })
        .unwrap();
    let mut full = vec![rows];
    full.extend(&shape);
    let own: Vec<f64> = graph
        .predict(&x, &full)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    assert_eq!(bits(&got), bits(&own));
    let k = model.outputs();
    for r in 0..rows {
        let one = model
            .score_row(Input::Tensors {
                data: &x[r * width..(r + 1) * width],
                rows: 1,
            })
            .unwrap();
        assert_eq!(bits(&one), bits(&got[r * k..(r + 1) * k]), "row {r}");
    }
}

#[test]
fn unknown_flavors_and_broken_bundles_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let v = register(&reg, "x", "prophet", vec![("model", b"?".to_vec())], None);
    assert!(matches!(Model::load(&v), Err(ModelError::Unsupported(_))));
    for flavor in ["sequence", "cnn", "onnx"] {
        let v = register(
            &reg,
            "x",
            flavor,
            vec![("model", b"not a model".to_vec()), ("weights", vec![0; 8])],
            None,
        );
        assert!(Model::load(&v).is_err(), "{flavor}");
    }
    // Every flavor's name round-trips.
    for f in Flavor::ALL {
        assert_eq!(Flavor::parse(f.as_str()), Some(f));
    }
}
