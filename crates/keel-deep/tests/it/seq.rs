//! The sequence encoder: tokenizers, learning a text task, determinism, padding invariance,
//! artifact round trip and typed errors for bad artifacts.

use keel_deep::*;
use std::collections::BTreeMap;

fn cfg() -> SeqConfig {
    SeqConfig {
        tokenizer: Tokenizer::HashedWords { buckets: 512 },
        max_len: 24,
        d_model: 32,
        heads: 4,
        layers: 1,
        ff: 64,
        dropout: 0.1,
        pooling: Pooling::Mean,
        head: Head::Multiclass { classes: 3 },
    }
}

fn tc(seed: u64, epochs: usize) -> TrainConfig {
    TrainConfig {
        optimizer: OptimizerConfig::AdamW {
            lr: 0.01,
            weight_decay: 0.01,
        },
        epochs,
        batch_size: 32,
        warmup_steps: 10,
        clip_norm: Some(1.0),
        early_stopping: None,
        class_weights: None,
        seed,
    }
}

#[test]
fn tokenizers_need_no_vocabulary() {
    assert_eq!(
        Tokenizer::Bytes.encode("hé", 10),
        vec![CLS, 2 + 104, 2 + 0xC3, 2 + 0xA9]
    );
    assert_eq!(Tokenizer::Bytes.encode("abcdef", 3).len(), 3);
    assert_eq!(Tokenizer::Bytes.vocab(), 258);
    let w = Tokenizer::HashedWords { buckets: 100 };
    let a = w.encode("Refund, please!", 10);
    assert_eq!(a, w.encode("refund please", 10), "case and punctuation");
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|&t| (t as usize) < w.vocab()));
    assert!(w.encode("", 10) == vec![CLS]);
    assert!(w.encode("x", 0).is_empty());
}

#[test]
fn learns_tickets_deterministically_and_round_trips() {
    let (texts, labels) = ticket_corpus(1200, 1);
    let (vt, vl) = ticket_corpus(300, 2);
    let data = TextData {
        texts: &texts,
        targets: &labels,
    };
    let valid = TextData {
        texts: &vt,
        targets: &vl,
    };
    let mut seen = Vec::new();
    let (m, rep) = train_text(cfg(), &tc(7, 6), data, Some(valid), &mut |e| {
        seen.push(e.epoch)
    })
    .unwrap();
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);
    let acc = rep.epochs.last().unwrap().valid_accuracy.unwrap();
    assert!(acc > 0.85, "valid accuracy {acc}");

    // Same data, config and seed: bit-identical weights and reports; another seed differs.
    let (m2, rep2) = train_text(cfg(), &tc(7, 6), data, Some(valid), &mut |_| {}).unwrap();
    let parts = m.to_parts(BTreeMap::new()).unwrap();
    assert_eq!(parts, m2.to_parts(BTreeMap::new()).unwrap());
    let strip = |r: &TrainReport| {
        r.epochs
            .iter()
            .map(|e| (e.train_loss, e.valid_loss, e.valid_accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&rep), strip(&rep2));
    let (m3, _) = train_text(cfg(), &tc(8, 1), data, None, &mut |_| {}).unwrap();
    let (m4, _) = train_text(cfg(), &tc(7, 1), data, None, &mut |_| {}).unwrap();
    assert_ne!(
        m3.to_parts(BTreeMap::new()).unwrap().1,
        m4.to_parts(BTreeMap::new()).unwrap().1
    );

    // Padding is masked: a text scores the same alone and next to a longer one.
    let alone = m.predict_texts(&["my card was charged twice"]).unwrap();
    let padded = m
        .predict_texts(&[
            "my card was charged twice",
            "hello the app freezes on the login screen since the update again please help",
        ])
        .unwrap();
    for (a, b) in alone.iter().zip(&padded[..3]) {
        assert!((a - b).abs() < 1e-5, "{alone:?} vs {padded:?}");
    }
    let argmax = |p: &[f32]| {
        p.iter()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
            )
            .0
    };
    assert_eq!(argmax(&padded[..3]), 0);
    assert_eq!(argmax(&padded[3..]), 2);
    assert!((padded[..3].iter().sum::<f32>() - 1.0).abs() < 1e-5);

    // Round trip: bit-identical predictions, metadata kept.
    let meta: BTreeMap<String, String> = [("run".to_string(), "r1".to_string())].into();
    let (manifest, weights) = m.to_parts(meta.clone()).unwrap();
    let (back, meta2) = SeqModel::from_parts(&manifest, &weights).unwrap();
    assert_eq!(meta2, meta);
    let texts_ref: Vec<&str> = vt.iter().map(String::as_str).collect();
    assert_eq!(
        m.predict_texts(&texts_ref).unwrap(),
        back.predict_texts(&texts_ref).unwrap()
    );
    assert!(matches!(
        m.predict_ids(&[&[CLS; 25][..]]),
        Err(DeepError::Shape(_))
    ));
}

#[test]
fn bad_configs_and_artifacts_are_typed_errors() {
    let mut c = cfg();
    c.heads = 5;
    assert!(matches!(SeqModel::new(c, 1), Err(DeepError::Config(_))));
    let mut c = cfg();
    c.max_len = 1 << 20;
    assert!(matches!(SeqModel::new(c, 1), Err(DeepError::Config(_))));

    let m = SeqModel::new(cfg(), 3).unwrap();
    let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
    // Another config in the manifest: shapes no longer match the weights.
    let mut wide = cfg();
    wide.d_model = 64;
    let (wide_manifest, _) = SeqModel::new(wide, 3)
        .unwrap()
        .to_parts(BTreeMap::new())
        .unwrap();
    assert!(matches!(
        SeqModel::from_parts(&wide_manifest, &weights),
        Err(DeepError::WrongShape { .. })
    ));
    let mut deeper = cfg();
    deeper.layers = 2;
    let (deep_manifest, _) = SeqModel::new(deeper, 3)
        .unwrap()
        .to_parts(BTreeMap::new())
        .unwrap();
    match SeqModel::from_parts(&deep_manifest, &weights) {
        Err(DeepError::MissingTensor(name)) => assert!(name.starts_with("layers.1."), "{name}"),
        other => panic!("{other:?}"),
    }
    assert!(SeqModel::from_parts(&manifest, &weights[..weights.len() / 2]).is_err());
    assert!(SeqModel::from_parts(&weights, &manifest).is_err());
    // An MLP manifest is another kind.
    assert!(SeqModel::from_parts(&manifest[..8], &weights).is_err());
}

/// `KEEL_BLESS=1` writes sequence-model seeds into `fuzz/corpus/deep_artifact` (replayed by
/// `deep_artifact_corpus_replays`).
#[test]
fn bless_sequence_seeds() {
    if std::env::var_os("KEEL_BLESS").is_none() {
        return;
    }
    let corpus = crate::manifest_dir().join("../../fuzz/corpus/deep_artifact");
    let mut small = cfg();
    small.d_model = 8;
    small.heads = 2;
    small.ff = 8;
    small.tokenizer = Tokenizer::HashedWords { buckets: 16 };
    let m = SeqModel::new(small, 1).unwrap();
    let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
    let mut cut = vec![manifest.len().min(255) as u8];
    cut.extend(&manifest);
    cut.extend(&weights);
    std::fs::write(corpus.join("seq_manifest_and_weights"), cut).unwrap();
    std::fs::write(
        corpus.join("seq_config.json"),
        serde_json::to_vec(m.config()).unwrap(),
    )
    .unwrap();
}
