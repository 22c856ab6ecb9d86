//! Training determinism, artifact round trips, the packed single-example path, typed errors.

use keel_deep::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;

/// Two numeric features and one categorical (5 categories); class depends on both.
fn data(rows: usize, seed: u64, head: Head) -> Dataset {
    let mut rng = keel_deep::rng(seed);
    let (mut numeric, mut codes, mut targets) = (vec![], vec![], vec![]);
    for _ in 0..rows {
        let (a, b) = (rng.normal() as f32, rng.normal() as f32);
        let c = (rng.uniform() * 5.0) as u32;
        let z = a + 0.5 * b + if c >= 3 { 1.0 } else { -0.5 };
        numeric.extend([a, b]);
        codes.push(c);
        targets.push(match head {
            Head::Binary => f32::from(u8::from(z + 0.3 * rng.normal() as f32 > 0.0)),
            Head::Multiclass { classes } => ((z + 2.0).clamp(0.0, classes as f32 - 0.01)).floor(),
            Head::Regression => z,
        });
    }
    Dataset {
        numeric,
        codes,
        targets,
        rows,
    }
}

fn cfg(head: Head) -> MlpConfig {
    MlpConfig {
        numeric: 2,
        embeddings: vec![EmbeddingSpec {
            cardinality: 5,
            dim: 3,
        }],
        hidden: vec![16, 16],
        layer_norm: true,
        residual: true,
        dropout: 0.1,
        head,
    }
}

fn tc(seed: u64) -> TrainConfig {
    TrainConfig {
        optimizer: OptimizerConfig::AdamW {
            lr: 0.01,
            weight_decay: 0.01,
        },
        epochs: 8,
        batch_size: 64,
        warmup_steps: 5,
        clip_norm: Some(1.0),
        early_stopping: Some(EarlyStopping {
            patience: 3,
            min_delta: 0.0,
        }),
        class_weights: Some(vec![1.0, 2.0]),
        seed,
    }
}

#[test]
fn same_seed_same_bits_other_seed_other_weights() {
    let (d, v) = (data(800, 1, Head::Binary), data(200, 2, Head::Binary));
    let mut epochs = 0;
    let (a, ra) = train(cfg(Head::Binary), &tc(42), &d, Some(&v), &mut |e| {
        epochs += 1;
        assert!(e.rows_per_sec > 0.0 && e.lr > 0.0);
    })
    .unwrap();
    assert_eq!(epochs, ra.epochs.len());
    let (b, rb) = train(cfg(Head::Binary), &tc(42), &d, Some(&v), &mut |_| {}).unwrap();
    assert_eq!(
        a.weights_safetensors().unwrap(),
        b.weights_safetensors().unwrap()
    );
    let strip = |r: &TrainReport| {
        r.epochs
            .iter()
            .map(|e| (e.train_loss, e.valid_loss, e.valid_accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&ra), strip(&rb));
    let (c, _) = train(cfg(Head::Binary), &tc(43), &d, Some(&v), &mut |_| {}).unwrap();
    assert_ne!(
        a.weights_safetensors().unwrap(),
        c.weights_safetensors().unwrap()
    );
    // It learned something.
    let last = ra.epochs[ra.best_epoch - 1].valid_accuracy.unwrap();
    assert!(last > 0.75, "valid accuracy {last}");
}

#[test]
fn artifacts_round_trip_bit_identically() {
    let d = data(400, 3, Head::Binary);
    let (m, _) = train(cfg(Head::Binary), &tc(1), &d, None, &mut |_| {}).unwrap();
    let meta = BTreeMap::from([("run".to_string(), "abc".to_string())]);
    let (manifest, weights) = m.to_parts(meta.clone()).unwrap();
    let (back, meta2) = Mlp::from_parts(&manifest, &weights).unwrap();
    assert_eq!(meta2, meta);
    assert_eq!(back.config(), m.config());
    let a = m.predict_batch(&d.numeric, &d.codes, d.rows).unwrap();
    let b = back.predict_batch(&d.numeric, &d.codes, d.rows).unwrap();
    assert_eq!(
        a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    let (mut p, mut q) = ([0f32], [0f32]);
    m.predict_one(&d.numeric[..2], &d.codes[..1], &mut p)
        .unwrap();
    back.predict_one(&d.numeric[..2], &d.codes[..1], &mut q)
        .unwrap();
    assert_eq!(p[0].to_bits(), q[0].to_bits());
}

#[test]
fn the_packed_path_agrees_with_candle() {
    for head in [
        Head::Binary,
        Head::Multiclass { classes: 3 },
        Head::Regression,
    ] {
        let d = data(300, 4, head);
        let mut t = tc(5);
        t.class_weights = None;
        t.epochs = 3;
        let (m, _) = train(cfg(head), &t, &d, None, &mut |_| {}).unwrap();
        let k = m.outputs();
        let batch = m.predict_batch(&d.numeric, &d.codes, d.rows).unwrap();
        // The packed matrix product agrees with candle's forward pass...
        let candle = m
            .predict_batch_candle(&d.numeric, &d.codes, d.rows)
            .unwrap();
        for (i, (a, b)) in batch.iter().zip(&candle).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{head:?} value {i}: packed {a} vs candle {b}"
            );
        }
        // ...and gives the same bits on any number of threads.
        for threads in [2, 3, 8] {
            let p = m
                .predict_batch_threads(&d.numeric, &d.codes, d.rows, threads)
                .unwrap();
            assert_eq!(
                p.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                batch.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{threads} threads"
            );
        }
        let mut out = vec![0f32; k];
        for r in 0..d.rows {
            // Unknown categories (code 99) use the extra embedding row on both paths.
            let code = if r % 7 == 0 { 99 } else { d.codes[r] };
            m.predict_one(&d.numeric[r * 2..r * 2 + 2], &[code], &mut out)
                .unwrap();
            let want = if r % 7 == 0 {
                m.predict_batch(&d.numeric[r * 2..r * 2 + 2], &[99], 1)
                    .unwrap()
            } else {
                batch[r * k..(r + 1) * k].to_vec()
            };
            for (a, b) in out.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{head:?} row {r}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn untrusted_weights_and_configs_get_typed_errors() {
    let m = Mlp::new(cfg(Head::Binary), 1).unwrap();
    let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
    // Missing tensor.
    let one = [0u8; 4 * 2];
    let partial = safetensors::serialize(
        vec![(
            "head.bias".to_string(),
            TensorView::new(Dtype::F32, vec![1], &one[..4]).unwrap(),
        )],
        None,
    )
    .unwrap();
    assert!(
        matches!(Mlp::from_parts(&manifest, &partial), Err(DeepError::MissingTensor(n)) if n == "embeddings.0.weight")
    );
    // Wrong shape: weights of another config.
    let mut other = cfg(Head::Binary);
    other.hidden = vec![8, 8];
    let (_, w2) = Mlp::new(other, 1)
        .unwrap()
        .to_parts(BTreeMap::new())
        .unwrap();
    assert!(matches!(
        Mlp::from_parts(&manifest, &w2),
        Err(DeepError::WrongShape { .. })
    ));
    // Wrong dtype.
    let params = m.named_parameters();
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .iter()
        .map(|(n, v)| {
            let dims = v.as_tensor().dims().to_vec();
            let count: usize = dims.iter().product();
            (n.clone(), dims, vec![0u8; count * 8])
        })
        .collect();
    let f64s = safetensors::serialize(
        bufs.iter().map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F64, s.clone(), b).unwrap(),
            )
        }),
        None,
    )
    .unwrap();
    assert!(matches!(
        Mlp::from_parts(&manifest, &f64s),
        Err(DeepError::WrongDtype { .. })
    ));
    // Garbage.
    assert!(matches!(
        Mlp::from_parts(&manifest, b"not safetensors"),
        Err(DeepError::Safetensors(_))
    ));
    assert!(Mlp::from_parts(b"KEEL garbage", &weights).is_err());
    // Absurd config.
    let mut huge = cfg(Head::Binary);
    huge.hidden = vec![1 << 30];
    assert!(matches!(Mlp::new(huge, 1), Err(DeepError::Config(_))));
    // Bad inputs.
    let mut out = [0f32];
    assert!(matches!(
        m.predict_one(&[1.0], &[0], &mut out),
        Err(DeepError::Shape(_))
    ));
    assert!(matches!(
        m.predict_batch(&[1.0; 3], &[0], 1),
        Err(DeepError::Shape(_))
    ));
    let mut bad = data(10, 1, Head::Binary);
    bad.targets[0] = 2.0;
    assert!(matches!(
        train(cfg(Head::Binary), &tc(1), &bad, None, &mut |_| {}),
        Err(DeepError::Data(_))
    ));
    bad.targets[0] = 1.0;
    bad.numeric[0] = f32::NAN;
    assert!(matches!(
        train(cfg(Head::Binary), &tc(1), &bad, None, &mut |_| {}),
        Err(DeepError::Data(_))
    ));
}

#[test]
fn sgd_early_stopping_and_shared_inference() {
    let (d, v) = (
        data(600, 8, Head::Regression),
        data(200, 9, Head::Regression),
    );
    let t = TrainConfig {
        optimizer: OptimizerConfig::Sgd { lr: 0.05 },
        epochs: 60,
        batch_size: 32,
        warmup_steps: 0,
        clip_norm: None,
        early_stopping: Some(EarlyStopping {
            patience: 2,
            min_delta: 1e-3,
        }),
        class_weights: None,
        seed: 3,
    };
    let (m, rep) = train(cfg(Head::Regression), &t, &d, Some(&v), &mut |_| {}).unwrap();
    assert!(rep.stopped_early, "{} epochs", rep.epochs.len());
    let best = rep.epochs[rep.best_epoch - 1].valid_loss.unwrap();
    assert!(rep.epochs.iter().all(|e| e.valid_loss.unwrap() >= best));
    let m = std::sync::Arc::new(m);
    let hs: Vec<_> = (0..2)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut o = [0f32];
                m.predict_one(&[t as f32, 0.5], &[1], &mut o).unwrap();
                o[0]
            })
        })
        .collect();
    for h in hs {
        assert!(h.join().unwrap().is_finite());
    }
}

/// Replays `fuzz/corpus/deep_artifact`; `KEEL_BLESS=1` writes seeds from a real artifact.
#[test]
fn deep_artifact_corpus_replays() {
    let corpus = crate::manifest_dir().join("../../fuzz/corpus/deep_artifact");
    if std::env::var_os("KEEL_BLESS").is_some() {
        let m = Mlp::new(cfg(Head::Binary), 1).unwrap();
        let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
        let mut joined = vec![0u8];
        joined.extend(&weights);
        std::fs::write(corpus.join("weights"), joined).unwrap();
        std::fs::write(
            corpus.join("config.json"),
            serde_json::to_vec(m.config()).unwrap(),
        )
        .unwrap();
        let mut with_manifest = manifest.clone();
        with_manifest.extend(&weights);
        let mut cut = vec![manifest.len().min(255) as u8];
        cut.extend(&with_manifest);
        std::fs::write(corpus.join("manifest_and_weights"), cut).unwrap();
    }
    let mut n = 0;
    for e in std::fs::read_dir(&corpus).unwrap() {
        keel_deep::fuzzing::exercise(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 2, "seed corpus missing");
}

/// keel's MLP forward pass agrees with onnxruntime running the same weights exported to ONNX
/// (`tests/fixtures/onnxruntime_mlp.py parity`). `KEEL_BLESS=1` rewrites the weights and config
/// the script reads; then rerun the script to refresh `mlp_small_ort.json`.
#[test]
fn forward_pass_matches_onnxruntime() {
    let dir = crate::manifest_dir().join("tests/fixtures");
    let cfg = MlpConfig {
        numeric: 8,
        embeddings: vec![],
        hidden: vec![16, 16],
        layer_norm: false,
        residual: false,
        dropout: 0.0,
        head: Head::Binary,
    };
    if std::env::var_os("KEEL_BLESS").is_some() {
        let m = Mlp::new(cfg.clone(), 11).unwrap();
        std::fs::write(
            dir.join("mlp_small.safetensors"),
            m.weights_safetensors().unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("mlp_small.json"),
            serde_json::to_vec(&cfg).unwrap(),
        )
        .unwrap();
    }
    let m = Mlp::from_safetensors(
        cfg,
        &std::fs::read(dir.join("mlp_small.safetensors")).unwrap(),
    )
    .unwrap();
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("mlp_small_ort.json")).unwrap()).unwrap();
    let x: Vec<f32> = want["x"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let y: Vec<f32> = want["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let batch = m.predict_batch(&x, &[], y.len()).unwrap();
    let mut one = [0f32];
    for (i, w) in y.iter().enumerate() {
        assert!(
            (batch[i] - w).abs() <= 1e-5,
            "row {i}: candle {} onnxruntime {w}",
            batch[i]
        );
        m.predict_one(&x[i * 8..(i + 1) * 8], &[], &mut one)
            .unwrap();
        assert!(
            (one[0] - w).abs() <= 1e-5,
            "row {i}: packed {} onnxruntime {w}",
            one[0]
        );
    }
}

#[test]
fn packed_batches_agree_with_candle_on_odd_shapes() {
    // Widths that are not multiples of the 16-column panels, row counts that are not multiples
    // of the 6-row tiles or 96-row chunks, with and without layer norm and residuals.
    for (hidden, ln, residual, rows) in [
        (vec![37, 37], true, true, 97),
        (vec![5], false, false, 1),
        (vec![17, 33, 33], true, true, 200),
        (vec![64], false, true, 13),
    ] {
        let cfg = MlpConfig {
            numeric: 5,
            embeddings: vec![EmbeddingSpec {
                cardinality: 3,
                dim: 4,
            }],
            hidden,
            layer_norm: ln,
            residual,
            dropout: 0.0,
            head: Head::Multiclass { classes: 3 },
        };
        let m = Mlp::new(cfg, 11).unwrap();
        let x: Vec<f32> = (0..rows * 5)
            .map(|i| ((i * 7919) % 997) as f32 / 300.0 - 1.5)
            .collect();
        let codes: Vec<u32> = (0..rows as u32).map(|i| i % 5).collect();
        let a = m.predict_batch(&x, &codes, rows).unwrap();
        let b = m.predict_batch_candle(&x, &codes, rows).unwrap();
        assert_eq!(a.len(), rows * 3);
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() <= 1e-5, "value {i}: packed {p} vs candle {q}");
        }
    }
}
