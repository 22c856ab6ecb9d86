//! The CNN: learns a small image task, deterministic, artifact round trip, typed errors.

use keel_deep::*;
use std::collections::BTreeMap;

/// 8x8 one-channel images: a horizontal bar (0), a vertical bar (1) or a diagonal (2) at a
/// random place, over uniform noise.
fn bars(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = keel_deep::rng(seed);
    let mut px = Vec::with_capacity(n * 64);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let class = (rng.next_u64() % 3) as usize;
        let at = (rng.next_u64() % 6) as usize + 1;
        let mut img: Vec<f32> = (0..64).map(|_| rng.uniform() as f32 * 0.5).collect();
        for k in 0..8 {
            let (r, c) = match class {
                0 => (at, k),
                1 => (k, at),
                _ => (k, k),
            };
            img[r * 8 + c] += 1.0;
        }
        px.extend(img);
        y.push(class as f32);
    }
    (px, y)
}

fn cfg() -> CnnConfig {
    CnnConfig {
        channels: 1,
        height: 8,
        width: 8,
        conv: vec![
            ConvSpec {
                filters: 8,
                kernel: 3,
                pool: 2,
            },
            ConvSpec {
                filters: 16,
                kernel: 3,
                pool: 1,
            },
        ],
        dropout: 0.1,
        head: Head::Multiclass { classes: 3 },
    }
}

fn tc(seed: u64) -> TrainConfig {
    TrainConfig {
        optimizer: OptimizerConfig::AdamW {
            lr: 0.01,
            weight_decay: 0.0,
        },
        epochs: 8,
        batch_size: 32,
        warmup_steps: 10,
        clip_norm: Some(5.0),
        early_stopping: None,
        class_weights: None,
        seed,
    }
}

#[test]
fn learns_bars_deterministically_and_round_trips() {
    let (px, y) = bars(900, 1);
    let (vpx, vy) = bars(300, 2);
    let data = ImageData {
        pixels: &px,
        targets: &y,
    };
    let valid = ImageData {
        pixels: &vpx,
        targets: &vy,
    };
    let (m, rep) = train_images(cfg(), &tc(3), data, Some(valid), &mut |_| {}).unwrap();
    let acc = rep.epochs.last().unwrap().valid_accuracy.unwrap();
    assert!(acc > 0.9, "valid accuracy {acc}");
    let (m2, _) = train_images(cfg(), &tc(3), data, Some(valid), &mut |_| {}).unwrap();
    assert_eq!(
        m.to_parts(BTreeMap::new()).unwrap(),
        m2.to_parts(BTreeMap::new()).unwrap(),
        "same seed, same weights"
    );
    let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
    let (back, _) = Cnn::from_parts(&manifest, &weights).unwrap();
    assert_eq!(
        m.predict_images(&vpx, 300).unwrap(),
        back.predict_images(&vpx, 300).unwrap()
    );
    let p = back.predict_images(&vpx[..64], 1).unwrap();
    assert_eq!(p.len(), 3);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(matches!(
        back.predict_images(&vpx[..63], 1),
        Err(DeepError::Shape(_))
    ));
}

#[test]
fn bad_configs_and_artifacts_are_typed_errors() {
    let mut c = cfg();
    c.conv[0].kernel = 2;
    assert!(matches!(Cnn::new(c, 1), Err(DeepError::Config(_))));
    let mut c = cfg();
    c.conv[0].pool = 16;
    assert!(matches!(Cnn::new(c, 1), Err(DeepError::Config(_))));
    let mut c = cfg();
    c.conv[1].filters = 60_000;
    c.conv.push(ConvSpec {
        filters: 60_000,
        kernel: 31,
        pool: 1,
    });
    assert!(
        matches!(Cnn::new(c, 1), Err(DeepError::Config(_))),
        "parameter budget"
    );
    let m = Cnn::new(cfg(), 1).unwrap();
    let (manifest, weights) = m.to_parts(BTreeMap::new()).unwrap();
    let mut wider = cfg();
    wider.conv[0].filters = 4;
    let (wm, _) = Cnn::new(wider, 1)
        .unwrap()
        .to_parts(BTreeMap::new())
        .unwrap();
    assert!(matches!(
        Cnn::from_parts(&wm, &weights),
        Err(DeepError::WrongShape { .. })
    ));
    let mut deeper = cfg();
    deeper.conv.push(ConvSpec {
        filters: 4,
        kernel: 1,
        pool: 1,
    });
    let (dm, _) = Cnn::new(deeper, 1)
        .unwrap()
        .to_parts(BTreeMap::new())
        .unwrap();
    assert!(matches!(
        Cnn::from_parts(&dm, &weights),
        Err(DeepError::MissingTensor(_))
    ));
    assert!(Cnn::from_parts(&manifest, &weights[..10]).is_err());
    let (px, y) = bars(10, 1);
    let bad = ImageData {
        pixels: &px[..639],
        targets: &y,
    };
    assert!(matches!(
        train_images(cfg(), &tc(1), bad, None, &mut |_| {}),
        Err(DeepError::Shape(_))
    ));
}
