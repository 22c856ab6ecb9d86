//! A small CNN for images: convolution blocks (`conv 'same' -> ReLU -> [max pool]`), global
//! average pooling, dropout and a binary / multiclass / regression head. Trained by the shared
//! deterministic loop; saved as safetensors (PyTorch-style names) plus a `DCNN` manifest.

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::config::{Head, TrainConfig, MAX_LAYERS, MAX_WIDTH};
use crate::model::dropout;
use crate::rng::{rng, Rng};
use crate::train::{check_targets, fit, EpochReport, Split, TrainReport};
use crate::{DeepError, Result};

/// One convolution block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Output channels.
    pub filters: usize,
    /// Square kernel size (odd; padding keeps the spatial size).
    pub kernel: usize,
    /// Max-pooling window and stride after the block (1: none).
    pub pool: usize,
}

/// A CNN over `channels x height x width` images (row-major, channel first, as PyTorch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    /// Input channels.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Convolution blocks, in order.
    pub conv: Vec<ConvSpec>,
    /// Dropout before the head, during training.
    #[serde(default)]
    pub dropout: f32,
    /// Output head.
    pub head: Head,
}

/// Most parameters a CNN config may ask for (2^26 f32).
pub const MAX_CNN_PARAMS: usize = 1 << 26;

impl CnnConfig {
    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Checks bounds, so an untrusted config cannot request absurd allocations.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DeepError::Config(m));
        if self.channels == 0 || self.channels > 64 {
            return bad(format!("{} channels (1..=64)", self.channels));
        }
        if self.height == 0 || self.width == 0 || self.height > 4096 || self.width > 4096 {
            return bad(format!("image {}x{} (1..=4096)", self.height, self.width));
        }
        if self.conv.is_empty() || self.conv.len() > MAX_LAYERS {
            return bad(format!(
                "{} conv blocks (1..={MAX_LAYERS})",
                self.conv.len()
            ));
        }
        let (mut h, mut w, mut c, mut params) = (self.height, self.width, self.channels, 0usize);
        for (i, b) in self.conv.iter().enumerate() {
            if b.filters == 0 || b.filters > MAX_WIDTH || b.kernel == 0 || b.kernel % 2 == 0 {
                return bad(format!("conv {i}: filters 1..={MAX_WIDTH}, odd kernel"));
            }
            if b.kernel > 31 || b.pool == 0 || b.pool > h || b.pool > w {
                return bad(format!(
                    "conv {i}: kernel {} (<= 31) or pool {} larger than the {h}x{w} map",
                    b.kernel, b.pool
                ));
            }
            params = params.saturating_add((c * b.kernel * b.kernel + 1).saturating_mul(b.filters));
            c = b.filters;
            h /= b.pool;
            w /= b.pool;
        }
        params = params.saturating_add((c + 1) * self.head.outputs());
        if params > MAX_CNN_PARAMS {
            return bad(format!("{params} parameters (at most {MAX_CNN_PARAMS})"));
        }
        crate::config::check_dropout_and_head(self.dropout, self.head)
    }
}

/// A trained (or loaded) CNN. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Cnn {
    cfg: CnnConfig,
    convs: Vec<(Var, Var)>,
    head: (Var, Var),
}

fn uniform_var(rng: &mut Rng, shape: &[usize], fan_in: usize) -> Result<Var> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) as f32) * bound)
        .collect();
    Ok(Var::from_tensor(&Tensor::from_vec(
        data,
        shape,
        crate::device(),
    )?)?)
}

impl Cnn {
    /// A freshly initialised model from `seed` (PyTorch's defaults: uniform in
    /// `+-1/sqrt(fan_in)`).
    pub fn new(cfg: CnnConfig, seed: u64) -> Result<Cnn> {
        cfg.validate()?;
        let mut rng = rng(seed);
        let mut convs = Vec::with_capacity(cfg.conv.len());
        let mut c = cfg.channels;
        for b in &cfg.conv {
            let fan_in = c * b.kernel * b.kernel;
            convs.push((
                uniform_var(&mut rng, &[b.filters, c, b.kernel, b.kernel], fan_in)?,
                uniform_var(&mut rng, &[b.filters], fan_in)?,
            ));
            c = b.filters;
        }
        let out = cfg.head.outputs();
        let head = (
            uniform_var(&mut rng, &[out, c], c)?,
            uniform_var(&mut rng, &[out], c)?,
        );
        Ok(Cnn { cfg, convs, head })
    }

    /// The config.
    pub fn config(&self) -> &CnnConfig {
        &self.cfg
    }

    /// Parameters with PyTorch-style names, in a fixed order.
    pub fn named_parameters(&self) -> Vec<(String, &Var)> {
        let mut v = Vec::with_capacity(2 * self.convs.len() + 2);
        for (i, (w, b)) in self.convs.iter().enumerate() {
            v.push((format!("convs.{i}.weight"), w));
            v.push((format!("convs.{i}.bias"), b));
        }
        v.push(("head.weight".into(), &self.head.0));
        v.push(("head.bias".into(), &self.head.1));
        v
    }

    /// Logits `[n, outputs]` of images `[n, channels, height, width]`.
    fn forward(&self, x: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let mut h = x.clone();
        for ((w, b), spec) in self.convs.iter().zip(&self.cfg.conv) {
            h = h
                .conv2d(w.as_tensor(), spec.kernel / 2, 1, 1, 1)?
                .broadcast_add(&b.as_tensor().reshape((1, spec.filters, 1, 1))?)?
                .relu()?;
            if spec.pool > 1 {
                h = h.max_pool2d(spec.pool)?;
            }
        }
        // Global average pooling: one value per channel.
        let pooled = h.mean(3)?.mean(2)?;
        let pooled = dropout(pooled, self.cfg.dropout, rng)?;
        Ok(pooled
            .matmul(&self.head.0.as_tensor().t()?)?
            .broadcast_add(self.head.1.as_tensor())?)
    }

    /// Checks `n` images' worth of pixels once: length and finiteness.
    fn check_images(&self, pixels: &[f32], n: usize) -> Result<()> {
        let len = self.cfg.image_len();
        if Some(pixels.len()) != n.checked_mul(len) {
            return Err(DeepError::Shape(format!(
                "{n} images of {}x{}x{} need {} values, got {}",
                self.cfg.channels,
                self.cfg.height,
                self.cfg.width,
                n.saturating_mul(len),
                pixels.len()
            )));
        }
        if pixels.iter().any(|v| !v.is_finite()) {
            return Err(DeepError::Data("pixels must be finite".into()));
        }
        Ok(())
    }

    /// The `[n, channels, height, width]` tensor of already-checked pixels.
    fn tensor(&self, pixels: &[f32], n: usize) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            pixels,
            (n, self.cfg.channels, self.cfg.height, self.cfg.width),
            crate::device(),
        )?)
    }

    /// Scores `n` images (row-major, channel first): `n x outputs` values (probability, class
    /// probabilities or value).
    pub fn predict_images(&self, pixels: &[f32], n: usize) -> Result<Vec<f32>> {
        self.check_images(pixels, n)?;
        let len = self.cfg.image_len();
        let mut out = Vec::with_capacity(n * self.outputs());
        for start in (0..n).step_by(256) {
            let m = (n - start).min(256);
            let x = self.tensor(&pixels[start * len..(start + m) * len], m)?;
            let logits = self.forward(&x, None)?;
            let y = match self.cfg.head {
                Head::Binary => candle_nn::ops::sigmoid(&logits)?,
                Head::Multiclass { .. } => candle_nn::ops::softmax_last_dim(&logits)?,
                Head::Regression => logits,
            };
            out.extend(y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// [`Cnn::predict_images`] with candle's kernels bounded to `threads` threads.
    pub fn predict_images_threads(
        &self,
        pixels: &[f32],
        n: usize,
        threads: usize,
    ) -> Result<Vec<f32>> {
        crate::threads::with_threads(threads, || self.predict_images(pixels, n))?
    }

    /// Number of outputs per image.
    pub fn outputs(&self) -> usize {
        self.cfg.head.outputs()
    }
}

/// Labelled images: `pixels` holds `targets.len()` images, row-major, channel first.
#[derive(Debug, Clone, Copy)]
pub struct ImageData<'a> {
    /// Pixel values.
    pub pixels: &'a [f32],
    /// One target per image.
    pub targets: &'a [f32],
}

/// Trains a fresh CNN. Deterministic: the same images, configs and seed give bit-identical
/// weights and reports. `progress` is called after every epoch.
pub fn train_images(
    cfg: CnnConfig,
    tc: &TrainConfig,
    data: ImageData<'_>,
    valid: Option<ImageData<'_>>,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<(Cnn, TrainReport)> {
    let model = Cnn::new(cfg, tc.seed)?;
    let len = model.cfg.image_len();
    for (d, what) in std::iter::once((&data, "train")).chain(valid.as_ref().map(|v| (v, "valid"))) {
        model.check_images(d.pixels, d.targets.len())?;
        check_targets(model.cfg.head, d.targets, what)?;
    }
    let report = {
        let m = &model;
        let mut forward = |split: Split, idx: &[usize], rng: Option<&mut Rng>| {
            let d = match (split, &valid) {
                (Split::Valid, Some(v)) => v,
                _ => &data,
            };
            let mut px = Vec::with_capacity(idx.len() * len);
            for &i in idx {
                px.extend_from_slice(&d.pixels[i * len..(i + 1) * len]);
            }
            // Checked once up front, not per batch and epoch.
            let x = m.tensor(&px, idx.len())?;
            let y = idx.iter().map(|&i| d.targets[i]).collect();
            Ok((m.forward(&x, rng)?, y))
        };
        let vars: Vec<Var> = m
            .named_parameters()
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect();
        fit(
            vars,
            m.cfg.head,
            tc,
            data.targets.len(),
            valid.map(|v| v.targets.len()),
            &mut forward,
            progress,
        )?
    };
    Ok((model, report))
}

crate::artifact::config_artifact!(Cnn, CnnConfig, CnnManifest, b"DCNN", "CNN");
