//! The sequence encoder for text and event sequences: a tokenizer that needs no download,
//! token embedding, fixed sinusoidal positions, pre-norm transformer encoder layers
//! (multi-head self-attention with a padding mask, GELU feed-forward), masked mean or
//! first-token pooling, and a binary / multiclass / regression head.
//!
//! Trained by the same loop as the MLP (seeded shuffling and dropout, AdamW/SGD, warm-up +
//! cosine, clipping, class weights, early stopping): the same texts, config and seed give
//! bit-identical weights. Saved as safetensors plus an envelope manifest (kind `DSEQ`).

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::config::{Head, TrainConfig, MAX_LAYERS, MAX_WIDTH};
use crate::model::{dropout, layer_norm};
use crate::rng::{rng, Rng};
use crate::train::{check_targets, fit, EpochReport, Split, TrainReport};
use crate::{DeepError, Result};

/// Padding token.
pub const PAD: u32 = 0;
/// First token of every sequence (what `Pooling::First` reads).
pub const CLS: u32 = 1;
const SPECIAL: u32 = 2;
/// Longest sequence a config may ask for.
pub const MAX_SEQ: usize = 4096;

/// Text to token ids, without a vocabulary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Tokenizer {
    /// UTF-8 bytes: 256 ids, any language, no out-of-vocabulary words.
    Bytes,
    /// Lower-cased words (runs of alphanumerics; every other character is a separator),
    /// hashed with FNV-1a into `buckets` ids.
    HashedWords {
        /// Number of hash buckets.
        buckets: usize,
    },
}

impl Tokenizer {
    /// Ids used, including the padding and first tokens.
    pub fn vocab(self) -> usize {
        SPECIAL as usize
            + match self {
                Tokenizer::Bytes => 256,
                Tokenizer::HashedWords { buckets } => buckets,
            }
    }

    /// `[CLS, tokens...]`, truncated to `max_len` ids.
    pub fn encode(self, text: &str, max_len: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(max_len.min(text.len() + 1));
        if max_len == 0 {
            return out;
        }
        out.push(CLS);
        match self {
            Tokenizer::Bytes => out.extend(
                text.bytes()
                    .take(max_len - 1)
                    .map(|b| SPECIAL + u32::from(b)),
            ),
            Tokenizer::HashedWords { buckets } => {
                for w in text
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .take(max_len - 1)
                {
                    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                    for c in w.chars().flat_map(char::to_lowercase) {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            h ^= u64::from(b);
                            h = h.wrapping_mul(0x0100_0000_01b3);
                        }
                    }
                    out.push(SPECIAL + (h % buckets.max(1) as u64) as u32);
                }
            }
        }
        out
    }
}

/// How the encoder's outputs become one vector per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the real (non-padding) positions.
    Mean,
    /// The first position (the `CLS` token).
    First,
}

/// A sequence classifier / regressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqConfig {
    /// Text to ids.
    pub tokenizer: Tokenizer,
    /// Longest sequence, ids (including `CLS`); longer texts are truncated.
    pub max_len: usize,
    /// Model width.
    pub d_model: usize,
    /// Attention heads (`d_model` must be a multiple).
    pub heads: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Feed-forward width.
    pub ff: usize,
    /// Dropout probability during training.
    #[serde(default)]
    pub dropout: f32,
    /// Pooling.
    pub pooling: Pooling,
    /// Output head.
    pub head: Head,
}

/// Most parameters (and position-table entries) a sequence config may ask for: 2^27 f32, 512 MiB.
pub const MAX_PARAMS: usize = 1 << 27;

impl SeqConfig {
    /// Trainable parameters plus the fixed position table, saturating (for the budget check).
    pub fn parameters(&self) -> usize {
        let d = self.d_model;
        let per_layer = (4 * d + 4)
            .saturating_mul(d)
            .saturating_add(d.saturating_mul(self.ff).saturating_mul(2))
            .saturating_add(self.ff + 5 * d);
        self.tokenizer
            .vocab()
            .saturating_mul(d)
            .saturating_add(per_layer.saturating_mul(self.layers))
            .saturating_add(self.max_len.saturating_mul(d))
            .saturating_add((d + 1) * (self.head.outputs() + 2))
    }

    /// Checks bounds, so an untrusted config cannot request absurd allocations.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DeepError::Config(m));
        if let Tokenizer::HashedWords { buckets } = self.tokenizer {
            if buckets == 0 || buckets > MAX_WIDTH * 16 {
                return bad(format!("{buckets} hash buckets (1..={})", MAX_WIDTH * 16));
            }
        }
        if self.max_len < 2 || self.max_len > MAX_SEQ {
            return bad(format!("max_len {} (2..={MAX_SEQ})", self.max_len));
        }
        if self.d_model == 0 || self.d_model > MAX_WIDTH || self.ff == 0 || self.ff > MAX_WIDTH {
            return bad("d_model and ff must be in 1..=65536".into());
        }
        if self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return bad(format!(
                "d_model {} is not a multiple of {} heads",
                self.d_model, self.heads
            ));
        }
        if self.layers > MAX_LAYERS {
            return bad(format!("{} layers (at most {MAX_LAYERS})", self.layers));
        }
        if self.parameters() > MAX_PARAMS {
            return bad(format!(
                "{} parameters (at most {MAX_PARAMS})",
                self.parameters()
            ));
        }
        crate::config::check_dropout_and_head(self.dropout, self.head)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    ln1: (Var, Var),
    qkv: (Var, Var),
    out: (Var, Var),
    ln2: (Var, Var),
    ff1: (Var, Var),
    ff2: (Var, Var),
}

/// A trained (or loaded) sequence model. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct SeqModel {
    cfg: SeqConfig,
    tokens: Var,
    positions: Tensor,
    layers: Vec<Layer>,
    norm: (Var, Var),
    head: (Var, Var),
}

fn var(data: Vec<f32>, shape: &[usize]) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        data,
        shape,
        crate::device(),
    )?)?)
}

fn linear_init(rng: &mut Rng, out: usize, inp: usize) -> Result<(Var, Var)> {
    let bound = 1.0 / (inp as f32).sqrt();
    let mut u = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| ((rng.uniform() * 2.0 - 1.0) as f32) * bound)
            .collect()
    };
    Ok((var(u(out * inp), &[out, inp])?, var(u(out), &[out])?))
}

fn norm_init(d: usize) -> Result<(Var, Var)> {
    Ok((var(vec![1.0; d], &[d])?, var(vec![0.0; d], &[d])?))
}

fn linear(x: &Tensor, (w, b): &(Var, Var)) -> Result<Tensor> {
    Ok(x.broadcast_matmul(&w.as_tensor().t()?)?
        .broadcast_add(b.as_tensor())?)
}

/// Fixed sinusoidal position encodings `[max_len, d]` (Vaswani et al.).
fn sinusoids(max_len: usize, d: usize) -> Result<Tensor> {
    let mut v = vec![0f32; max_len * d];
    for p in 0..max_len {
        for i in 0..d {
            let rate = 1.0 / 10_000f64.powf((2 * (i / 2)) as f64 / d as f64);
            let a = p as f64 * rate;
            v[p * d + i] = if i % 2 == 0 { a.sin() } else { a.cos() } as f32;
        }
    }
    Ok(Tensor::from_vec(v, (max_len, d), crate::device())?)
}

impl SeqModel {
    /// A freshly initialised model from `seed` (linear layers uniform in `+-1/sqrt(fan_in)`,
    /// token embeddings normal with standard deviation `1/sqrt(d_model)`, norms 1/0).
    pub fn new(cfg: SeqConfig, seed: u64) -> Result<SeqModel> {
        cfg.validate()?;
        let mut rng = rng(seed);
        let d = cfg.d_model;
        let vocab = cfg.tokenizer.vocab();
        let sd = 1.0 / (d as f64).sqrt();
        let tokens = var(
            (0..vocab * d).map(|_| (rng.normal() * sd) as f32).collect(),
            &[vocab, d],
        )?;
        let mut layers = Vec::with_capacity(cfg.layers);
        for _ in 0..cfg.layers {
            layers.push(Layer {
                ln1: norm_init(d)?,
                qkv: linear_init(&mut rng, 3 * d, d)?,
                out: linear_init(&mut rng, d, d)?,
                ln2: norm_init(d)?,
                ff1: linear_init(&mut rng, cfg.ff, d)?,
                ff2: linear_init(&mut rng, d, cfg.ff)?,
            });
        }
        let head = linear_init(&mut rng, cfg.head.outputs(), d)?;
        Ok(SeqModel {
            positions: sinusoids(cfg.max_len, d)?,
            norm: norm_init(d)?,
            cfg,
            tokens,
            layers,
            head,
        })
    }

    /// The config.
    pub fn config(&self) -> &SeqConfig {
        &self.cfg
    }

    /// Parameters with PyTorch-style names, in a fixed order.
    pub fn named_parameters(&self) -> Vec<(String, &Var)> {
        let mut v = vec![("tokens.weight".to_string(), &self.tokens)];
        for (i, l) in self.layers.iter().enumerate() {
            for (part, (w, b)) in [
                ("ln1", &l.ln1),
                ("attn.qkv", &l.qkv),
                ("attn.out", &l.out),
                ("ln2", &l.ln2),
                ("ff1", &l.ff1),
                ("ff2", &l.ff2),
            ] {
                v.push((format!("layers.{i}.{part}.weight"), w));
                v.push((format!("layers.{i}.{part}.bias"), b));
            }
        }
        v.push(("norm.weight".into(), &self.norm.0));
        v.push(("norm.bias".into(), &self.norm.1));
        v.push(("head.weight".into(), &self.head.0));
        v.push(("head.bias".into(), &self.head.1));
        v
    }

    fn vars(&self) -> Vec<Var> {
        self.named_parameters()
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Pads encoded sequences into `[batch, T]` ids and a `[batch, T]` 1/0 mask.
    fn batch(&self, seqs: &[&[u32]]) -> Result<(Tensor, Tensor)> {
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![PAD; seqs.len() * t];
        let mut mask = vec![0f32; seqs.len() * t];
        for (r, s) in seqs.iter().enumerate() {
            for (j, &id) in s.iter().enumerate() {
                ids[r * t + j] = if (id as usize) < self.cfg.tokenizer.vocab() {
                    id
                } else {
                    PAD
                };
                mask[r * t + j] = 1.0;
            }
        }
        Ok((
            Tensor::from_vec(ids, (seqs.len(), t), crate::device())?,
            Tensor::from_vec(mask, (seqs.len(), t), crate::device())?,
        ))
    }

    /// Logits `[batch, outputs]` of padded ids and their mask.
    fn forward(&self, ids: &Tensor, mask: &Tensor, mut rng: Option<&mut Rng>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let d = self.cfg.d_model;
        let h = self.cfg.heads;
        let dh = d / h;
        let p = self.cfg.dropout;
        let emb = self
            .tokens
            .as_tensor()
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let mut x = (emb * (d as f64).sqrt())?.broadcast_add(&self.positions.narrow(0, 0, t)?)?;
        x = dropout(x, p, rng.as_deref_mut())?;
        // Padding positions get -1e9 before the softmax: they receive no attention.
        let bias = ((mask - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?;
        let scale = 1.0 / (dh as f64).sqrt();
        for l in &self.layers {
            let y = layer_norm(&x, &l.ln1.0, &l.ln1.1)?;
            let qkv = linear(&y, &l.qkv)?
                .reshape((b, t, 3, h, dh))?
                .permute((2, 0, 3, 1, 4))?;
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&bias)?;
            let attn = dropout(
                candle_nn::ops::softmax_last_dim(&scores)?,
                p,
                rng.as_deref_mut(),
            )?;
            let ctx = attn
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, d))?;
            x = (x + dropout(linear(&ctx, &l.out)?, p, rng.as_deref_mut())?)?;
            let y = layer_norm(&x, &l.ln2.0, &l.ln2.1)?;
            let f = linear(&linear(&y, &l.ff1)?.gelu_erf()?, &l.ff2)?;
            x = (x + dropout(f, p, rng.as_deref_mut())?)?;
        }
        let x = layer_norm(&x, &self.norm.0, &self.norm.1)?;
        let pooled = match self.cfg.pooling {
            Pooling::First => x.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                let n = mask.sum_keepdim(1)?.clamp(1.0, f64::MAX)?;
                x.broadcast_mul(&m)?.sum(1)?.broadcast_div(&n)?
            }
        };
        linear(&pooled, &self.head)
    }

    fn finish(&self, logits: &Tensor) -> Result<Tensor> {
        Ok(match self.cfg.head {
            Head::Binary => candle_nn::ops::sigmoid(logits)?,
            Head::Multiclass { .. } => candle_nn::ops::softmax_last_dim(logits)?,
            Head::Regression => logits.clone(),
        })
    }

    /// Token ids of a text under this model's tokenizer and length.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.cfg.tokenizer.encode(text, self.cfg.max_len)
    }

    /// Scores texts: `texts.len() x outputs` values (probability, class probabilities or
    /// value), row-major. Each text is scored as if alone (padding is masked out).
    pub fn predict_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.encode(t)).collect();
        self.predict_ids(&seqs.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    /// Scores already-encoded sequences (e.g. event ids); ids beyond the vocabulary read as
    /// padding, sequences longer than `max_len` are refused.
    pub fn predict_ids(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        if let Some(s) = seqs.iter().find(|s| s.len() > self.cfg.max_len) {
            return Err(DeepError::Shape(format!(
                "sequence of {} ids, max_len is {}",
                s.len(),
                self.cfg.max_len
            )));
        }
        let mut out = Vec::with_capacity(seqs.len() * self.cfg.head.outputs());
        for chunk in seqs.chunks(256) {
            let (ids, mask) = self.batch(chunk)?;
            let y = self.finish(&self.forward(&ids, &mask, None)?)?;
            out.extend(y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// [`SeqModel::predict_texts`] with candle's kernels bounded to `threads` threads.
    pub fn predict_texts_threads(&self, texts: &[&str], threads: usize) -> Result<Vec<f32>> {
        crate::threads::with_threads(threads, || self.predict_texts(texts))?
    }

    /// [`SeqModel::predict_ids`] with candle's kernels bounded to `threads` threads.
    pub fn predict_ids_threads(&self, seqs: &[&[u32]], threads: usize) -> Result<Vec<f32>> {
        crate::threads::with_threads(threads, || self.predict_ids(seqs))?
    }

    /// Number of outputs per sequence.
    pub fn outputs(&self) -> usize {
        self.cfg.head.outputs()
    }
}

/// Labelled sequences: texts (tokenised with the config's tokenizer) and targets (0/1, class
/// index, or value).
#[derive(Debug, Clone, Copy)]
pub struct TextData<'a> {
    /// The texts.
    pub texts: &'a [String],
    /// One target per text.
    pub targets: &'a [f32],
}

fn check(cfg: &SeqConfig, d: &TextData<'_>, what: &str) -> Result<()> {
    if d.texts.len() != d.targets.len() {
        return Err(DeepError::Shape(format!(
            "{what}: {} texts, {} targets",
            d.texts.len(),
            d.targets.len()
        )));
    }
    check_targets(cfg.head, d.targets, what)?;
    Ok(())
}

/// Trains a fresh sequence model. Deterministic: the same texts, configs and seed give
/// bit-identical weights and reports. `progress` is called after every epoch.
pub fn train_text(
    cfg: SeqConfig,
    tc: &TrainConfig,
    data: TextData<'_>,
    valid: Option<TextData<'_>>,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<(SeqModel, TrainReport)> {
    check(&cfg, &data, "train")?;
    if let Some(v) = &valid {
        check(&cfg, v, "valid")?;
    }
    let model = SeqModel::new(cfg, tc.seed)?;
    let encode =
        |d: &TextData<'_>| -> Vec<Vec<u32>> { d.texts.iter().map(|t| model.encode(t)).collect() };
    let train_ids = encode(&data);
    let valid_ids = valid.as_ref().map(encode).unwrap_or_default();
    let report = {
        let m = &model;
        let mut forward = |split: Split, idx: &[usize], rng: Option<&mut Rng>| {
            let (ids, targets) = match (split, &valid) {
                (Split::Valid, Some(v)) => (&valid_ids, v.targets),
                _ => (&train_ids, data.targets),
            };
            let seqs: Vec<&[u32]> = idx.iter().map(|&i| ids[i].as_slice()).collect();
            let (x, mask) = m.batch(&seqs)?;
            let y = idx.iter().map(|&i| targets[i]).collect();
            Ok((m.forward(&x, &mask, rng)?, y))
        };
        fit(
            m.vars(),
            m.cfg.head,
            tc,
            data.texts.len(),
            valid.map(|v| v.texts.len()),
            &mut forward,
            progress,
        )?
    };
    Ok((model, report))
}

/// A synthetic support-ticket corpus for examples and tests: `n` short texts in three classes
/// (0 billing, 1 shipping, 2 technical), each mixing class keywords, shared filler words and
/// an occasional keyword of another class; 3% of labels are flipped. Deterministic in `seed`.
pub fn ticket_corpus(n: usize, seed: u64) -> (Vec<String>, Vec<f32>) {
    const CLASSES: [&[&str]; 3] = [
        &[
            "invoice",
            "charged",
            "refund",
            "payment",
            "billing",
            "card",
            "twice",
            "subscription",
            "price",
            "receipt",
            "overcharged",
            "fee",
        ],
        &[
            "package", "delivery", "shipped", "tracking", "courier", "arrived", "late", "parcel",
            "address", "lost", "box", "shipping",
        ],
        &[
            "crash", "error", "login", "password", "app", "bug", "screen", "update", "slow",
            "freezes", "install", "sync",
        ],
    ];
    const FILLER: [&str; 16] = [
        "hello",
        "my",
        "the",
        "is",
        "not",
        "please",
        "help",
        "today",
        "again",
        "order",
        "account",
        "since",
        "yesterday",
        "thanks",
        "why",
        "still",
    ];
    let mut rng = rng(seed);
    let mut pick = |k: usize| (rng.next_u64() % k as u64) as usize;
    let mut texts = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let class = pick(3);
        let words = 6 + pick(9);
        let mut t: Vec<&str> = Vec::with_capacity(words);
        for _ in 0..words {
            let w = match pick(10) {
                0..=3 => CLASSES[class][pick(12)],
                4 => CLASSES[pick(3)][pick(12)],
                _ => FILLER[pick(16)],
            };
            t.push(w);
        }
        let mut s = t.join(" ");
        if pick(2) == 0 {
            s = s[..1].to_uppercase() + &s[1..];
        }
        texts.push(s);
        let flip = pick(100) < 3;
        labels.push(if flip {
            ((class + 1) % 3) as f32
        } else {
            class as f32
        });
    }
    (texts, labels)
}

crate::artifact::config_artifact!(SeqModel, SeqConfig, SeqManifest, b"DSEQ", "sequence-model");
