//! Interop: weights exported from PyTorch (`save_file(model.state_dict())` of the reference
//! modules in `fixtures/torch_reference.py`) score like PyTorch's forward pass, and ONNX graphs
//! exported by PyTorch score like onnxruntime. Fixtures are committed; the script regenerates
//! them.

use std::path::PathBuf;

use keel_deep::{Cnn, CnnConfig, DeepError, Mlp, MlpConfig, OnnxModel, SeqConfig, SeqModel};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    crate::manifest_dir().join("tests/fixtures").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&read(name)).expect("json fixture")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// Agreement to 1e-5, relative for values above 1.
fn assert_close(ours: &[f32], reference: &[f32], what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let tol = 1e-5 * b.abs().max(1.0);
        assert!(
            (a - b).abs() <= tol,
            "{what}[{i}]: keel {a} vs reference {b}"
        );
    }
}

#[test]
fn mlp_from_pytorch_matches_its_forward_pass() {
    let doc = json("torch_mlp.json");
    let cfg: MlpConfig = serde_json::from_value(doc["config"].clone()).expect("config");
    let model = Mlp::from_safetensors(cfg, &read("torch_mlp.safetensors")).expect("loads");
    let rows = doc["rows"].as_u64().expect("rows") as usize;
    let numeric = floats(&doc["numeric"]);
    let codes: Vec<u32> = doc["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_u64().expect("code") as u32)
        .collect();
    let want = floats(&doc["outputs"]);
    let batch = model.predict_batch(&numeric, &codes, rows).expect("batch");
    assert_close(&batch, &want, "mlp batch");
    // The packed single-example path agrees as well.
    let (f, c) = (numeric.len() / rows, codes.len() / rows);
    for r in 0..rows {
        let mut out = [0f32];
        model
            .predict_one(
                &numeric[r * f..(r + 1) * f],
                &codes[r * c..(r + 1) * c],
                &mut out,
            )
            .expect("one");
        assert_close(&out, &want[r..r + 1], "mlp one");
    }
}

#[test]
fn sequence_encoders_from_pytorch_match_their_forward_pass() {
    for name in ["seq_mean", "seq_first"] {
        let doc = json(&format!("torch_{name}.json"));
        let cfg: SeqConfig = serde_json::from_value(doc["config"].clone()).expect("config");
        let model = SeqModel::from_safetensors(cfg, &read(&format!("torch_{name}.safetensors")))
            .expect("loads");
        let texts: Vec<&str> = doc["texts"]
            .as_array()
            .expect("texts")
            .iter()
            .map(|t| t.as_str().expect("text"))
            .collect();
        // keel's tokenizer gives the ids the reference was fed.
        for (t, ids) in texts.iter().zip(doc["ids"].as_array().expect("ids")) {
            let want: Vec<u32> = ids
                .as_array()
                .expect("ids")
                .iter()
                .map(|i| i.as_u64().expect("id") as u32)
                .collect();
            assert_eq!(model.encode(t), want, "{name}: tokens of {t:?}");
        }
        let ours = model.predict_texts(&texts).expect("scores");
        assert_close(&ours, &floats(&doc["outputs"]), name);
        for threads in [1, 2] {
            let t = model
                .predict_texts_threads(&texts, threads)
                .expect("scores");
            assert_close(&t, &ours, "explicit threads");
        }
        assert!(model.predict_texts_threads(&texts, 0).is_err());
    }
}

#[test]
fn cnn_from_pytorch_matches_its_forward_pass() {
    let doc = json("torch_cnn.json");
    let cfg: CnnConfig = serde_json::from_value(doc["config"].clone()).expect("config");
    let model = Cnn::from_safetensors(cfg, &read("torch_cnn.safetensors")).expect("loads");
    let n = doc["n"].as_u64().expect("n") as usize;
    let ours = model
        .predict_images(&floats(&doc["pixels"]), n)
        .expect("scores");
    assert_close(&ours, &floats(&doc["outputs"]), "cnn");
    let px = floats(&doc["pixels"]);
    for threads in [1, 2] {
        let t = model
            .predict_images_threads(&px, n, threads)
            .expect("scores");
        assert_close(&t, &ours, "explicit threads");
    }
}

#[test]
fn pytorch_weights_of_another_architecture_are_typed_errors() {
    // The CNN's state_dict offered to a sequence config: a missing tensor, named.
    let doc = json("torch_seq_mean.json");
    let cfg: SeqConfig = serde_json::from_value(doc["config"].clone()).expect("config");
    match SeqModel::from_safetensors(cfg.clone(), &read("torch_cnn.safetensors")) {
        Err(DeepError::MissingTensor(t)) => assert_eq!(t, "tokens.weight"),
        other => panic!("expected a missing tensor, got {other:?}"),
    }
    // Same names, other width: a shape error naming the tensor.
    let wider = SeqConfig { d_model: 32, ..cfg };
    match SeqModel::from_safetensors(wider, &read("torch_seq_mean.safetensors")) {
        Err(DeepError::WrongShape { name, .. }) => assert_eq!(name, "tokens.weight"),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn onnx_graphs_exported_by_pytorch_match_onnxruntime() {
    let doc = json("onnx_outputs.json");
    for name in ["mlp", "cnn"] {
        let model = OnnxModel::from_bytes(&read(&format!("onnx_{name}.onnx"))).expect("imports");
        assert_eq!(model.inputs().len(), 1);
        let shape: Vec<usize> = doc[name]["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        let x = floats(&doc[name]["x"]);
        let ours = model.predict(&x, &shape).expect("runs");
        let one_thread = model.predict_threads(&x, &shape, 1).expect("runs");
        assert_close(&one_thread, &ours, "one thread");
        assert_close(&ours, &floats(&doc[name]["y"]), name);
        // One row at a time gives the same numbers (the batch axis is symbolic).
        let per = x.len() / shape[0];
        let outs = ours.len() / shape[0];
        let mut one = shape.clone();
        one[0] = 1;
        let y = model.predict(&x[per..2 * per], &one).expect("one row");
        assert_close(&y, &ours[outs..2 * outs], "one row");
    }
}

#[test]
fn onnx_unsupported_operator_is_named() {
    match OnnxModel::from_bytes(&read("onnx_layernorm.onnx")) {
        Err(DeepError::UnsupportedOp { op, .. }) => assert_eq!(op, "LayerNormalization"),
        other => panic!("expected an unsupported operator, got {other:?}"),
    }
}

#[test]
fn onnx_bad_inputs_are_typed_errors() {
    let model = OnnxModel::from_bytes(&read("onnx_mlp.onnx")).expect("imports");
    // Wrong feature count for the declared input.
    assert!(matches!(
        model.predict(&[0.0; 8], &[2, 4]),
        Err(DeepError::Shape(_))
    ));
    // Values that do not fill the shape.
    assert!(matches!(
        model.predict(&[0.0; 7], &[2, 4]),
        Err(DeepError::Shape(_))
    ));
    // Truncated and garbage files.
    let bytes = read("onnx_mlp.onnx");
    for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(OnnxModel::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
    }
    assert!(OnnxModel::from_bytes(b"not an onnx file at all").is_err());
}

/// Replays `fuzz/corpus/onnx` (seeded from these fixtures): errors allowed, panics not.
#[test]
fn onnx_corpus_replays() {
    let dir = crate::manifest_dir().join("../../fuzz/corpus/onnx");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus dir") {
        let data = std::fs::read(e.expect("entry").path()).expect("seed");
        keel_deep::fuzzing::exercise_onnx(&data);
        n += 1;
    }
    assert!(n >= 3, "corpus has {n} seeds");
}
