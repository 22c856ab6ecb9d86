//! The tabular MLP: parameters as candle `Var`s (training, batch scoring) and a packed copy for
//! the single-example path that never touches a thread pool.

use candle_core::{DType, Tensor, Var, D};

use crate::config::{Head, MlpConfig};
use crate::fast::Packed;
use crate::rng::{rng, Rng};
use crate::{DeepError, Result};

/// One hidden block's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub w: Var,
    pub b: Var,
    pub norm: Option<(Var, Var)>,
    pub residual: bool,
}

/// The model: config, trainable parameters and the packed inference copy.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub(crate) cfg: MlpConfig,
    pub(crate) emb: Vec<Var>,
    pub(crate) blocks: Vec<Block>,
    pub(crate) head: (Var, Var),
    pub(crate) packed: Packed,
}

/// Layer-norm epsilon (PyTorch's default).
pub const LN_EPS: f64 = 1e-5;

/// Layer normalisation over the last dimension (PyTorch's `LayerNorm`, biased variance).
pub(crate) fn layer_norm(x: &Tensor, gamma: &Var, beta: &Var) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let c = x.broadcast_sub(&mean)?;
    let var = c.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(c.broadcast_div(&(var + LN_EPS)?.sqrt()?)?
        .broadcast_mul(gamma.as_tensor())?
        .broadcast_add(beta.as_tensor())?)
}

/// Training-time inverted dropout drawn from the seeded generator (`None`: evaluation).
pub(crate) fn dropout(x: Tensor, p: f32, rng: Option<&mut Rng>) -> Result<Tensor> {
    match rng {
        Some(rng) if p > 0.0 => {
            let scale = 1.0 / (1.0 - p);
            let mask: Vec<f32> = (0..x.elem_count())
                .map(|_| {
                    if (rng.uniform() as f32) < p {
                        0.0
                    } else {
                        scale
                    }
                })
                .collect();
            Ok(x.mul(&Tensor::from_vec(mask, x.shape(), crate::device())?)?)
        }
        _ => Ok(x),
    }
}

fn uniform(rng: &mut Rng, n: usize, bound: f32) -> Vec<f32> {
    (0..n)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) as f32) * bound)
        .collect()
}

fn var(data: Vec<f32>, shape: &[usize]) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        data,
        shape,
        crate::device(),
    )?)?)
}

impl Mlp {
    /// A freshly initialised model (PyTorch's defaults: linear weights and biases uniform in
    /// `+-1/sqrt(fan_in)`, embeddings standard normal, layer norm 1/0), from `seed`.
    pub fn new(cfg: MlpConfig, seed: u64) -> Result<Mlp> {
        cfg.validate()?;
        let mut rng = rng(seed);
        let mut emb = Vec::new();
        for e in &cfg.embeddings {
            let n = (e.cardinality + 1) * e.dim;
            let data: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            emb.push(var(data, &[e.cardinality + 1, e.dim])?);
        }
        let mut blocks = Vec::new();
        let mut width = cfg.input_width();
        for &h in &cfg.hidden {
            let bound = 1.0 / (width as f32).sqrt();
            let w = var(uniform(&mut rng, h * width, bound), &[h, width])?;
            let b = var(uniform(&mut rng, h, bound), &[h])?;
            let norm = if cfg.layer_norm {
                Some((var(vec![1.0; h], &[h])?, var(vec![0.0; h], &[h])?))
            } else {
                None
            };
            blocks.push(Block {
                w,
                b,
                norm,
                residual: cfg.residual && h == width,
            });
            width = h;
        }
        let out = cfg.head.outputs();
        let bound = 1.0 / (width as f32).sqrt();
        let head = (
            var(uniform(&mut rng, out * width, bound), &[out, width])?,
            var(uniform(&mut rng, out, bound), &[out])?,
        );
        let mut m = Mlp {
            cfg,
            emb,
            blocks,
            head,
            packed: Packed::default(),
        };
        m.repack()?;
        Ok(m)
    }

    /// The config.
    pub fn config(&self) -> &MlpConfig {
        &self.cfg
    }

    /// Parameters with their PyTorch-style names, in a fixed order.
    pub fn named_parameters(&self) -> Vec<(String, &Var)> {
        let mut v = Vec::new();
        for (i, e) in self.emb.iter().enumerate() {
            v.push((format!("embeddings.{i}.weight"), e));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            v.push((format!("blocks.{i}.linear.weight"), &b.w));
            v.push((format!("blocks.{i}.linear.bias"), &b.b));
            if let Some((g, be)) = &b.norm {
                v.push((format!("blocks.{i}.norm.weight"), g));
                v.push((format!("blocks.{i}.norm.bias"), be));
            }
        }
        v.push(("head.weight".into(), &self.head.0));
        v.push(("head.bias".into(), &self.head.1));
        v
    }

    /// Every trainable variable.
    pub(crate) fn vars(&self) -> Vec<Var> {
        self.named_parameters()
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Rebuilds the packed single-example copy from the current parameters.
    pub(crate) fn repack(&mut self) -> Result<()> {
        self.packed = Packed::from_model(self)?;
        Ok(())
    }

    /// Forward pass on a batch: `numeric` is `[rows, numeric]`, `codes` one `[rows]` u32
    /// tensor per embedding (already mapped to `0..=cardinality`). With `dropout`, applies
    /// training-time dropout from that generator. Returns logits `[rows, outputs]`.
    pub(crate) fn forward(
        &self,
        numeric: &Tensor,
        codes: &[Tensor],
        mut dropout_rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(1 + codes.len());
        if self.cfg.numeric > 0 {
            parts.push(numeric.clone());
        }
        for (e, c) in self.emb.iter().zip(codes) {
            parts.push(e.as_tensor().index_select(c, 0)?);
        }
        let mut h = if parts.len() == 1 {
            parts.remove(0)
        } else {
            Tensor::cat(&parts, 1)?
        };
        for b in &self.blocks {
            let mut z = h
                .matmul(&b.w.as_tensor().t()?)?
                .broadcast_add(b.b.as_tensor())?;
            if let Some((g, be)) = &b.norm {
                z = layer_norm(&z, g, be)?;
            }
            z = z.relu()?;
            z = dropout(z, self.cfg.dropout, dropout_rng.as_deref_mut())?;
            h = if b.residual { (h + z)? } else { z };
        }
        Ok(h.matmul(&self.head.0.as_tensor().t()?)?
            .broadcast_add(self.head.1.as_tensor())?)
    }

    /// Maps raw codes to embedding rows (unknown -> the extra row) and builds the input
    /// tensors of a batch.
    pub(crate) fn inputs(
        &self,
        numeric: &[f32],
        codes: &[u32],
        rows: usize,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        self.check_batch(numeric, codes, rows)?;
        let (f, c) = (self.cfg.numeric, self.cfg.embeddings.len());
        let x = Tensor::from_slice(numeric, (rows, f), crate::device())?;
        let mut cols = Vec::with_capacity(c);
        for (j, e) in self.cfg.embeddings.iter().enumerate() {
            let col: Vec<u32> = (0..rows)
                .map(|r| {
                    let v = codes[r * c + j];
                    if (v as usize) < e.cardinality {
                        v
                    } else {
                        e.cardinality as u32
                    }
                })
                .collect();
            cols.push(Tensor::from_vec(col, rows, crate::device())?);
        }
        Ok((x, cols))
    }

    /// Output transform of logits: sigmoid, softmax or identity.
    pub(crate) fn finish(&self, logits: &Tensor) -> Result<Tensor> {
        Ok(match self.cfg.head {
            Head::Binary => candle_nn::ops::sigmoid(logits)?,
            Head::Multiclass { .. } => candle_nn::ops::softmax_last_dim(logits)?,
            Head::Regression => logits.clone(),
        })
    }

    /// Scores a batch on the caller's thread (row-major inputs: `rows x numeric` floats and
    /// `rows x embeddings` codes); returns `rows x outputs` predictions. Runs the packed
    /// matrix-product path, not candle (see [`Mlp::predict_batch_threads`]).
    pub fn predict_batch(&self, numeric: &[f32], codes: &[u32], rows: usize) -> Result<Vec<f32>> {
        self.predict_batch_threads(numeric, codes, rows, 1)
    }

    /// Scores a batch on `threads` threads (contiguous row ranges; `1` never leaves the
    /// caller's thread, small batches use fewer threads than asked).
    pub fn predict_batch_threads(
        &self,
        numeric: &[f32],
        codes: &[u32],
        rows: usize,
        threads: usize,
    ) -> Result<Vec<f32>> {
        self.check_batch(numeric, codes, rows)?;
        let mut out = vec![0.0; rows * self.outputs()];
        self.packed
            .predict_batch(&self.cfg, numeric, codes, rows, &mut out, threads);
        Ok(out)
    }

    /// The same batch through candle's tensor ops (what training evaluates); kept for
    /// comparison with the packed path.
    pub fn predict_batch_candle(
        &self,
        numeric: &[f32],
        codes: &[u32],
        rows: usize,
    ) -> Result<Vec<f32>> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        let (x, c) = self.inputs(numeric, codes, rows)?;
        let y = self.finish(&self.forward(&x, &c, None)?)?;
        Ok(y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    fn check_batch(&self, numeric: &[f32], codes: &[u32], rows: usize) -> Result<()> {
        let (f, c) = (self.cfg.numeric, self.cfg.embeddings.len());
        if Some(numeric.len()) != rows.checked_mul(f) || Some(codes.len()) != rows.checked_mul(c) {
            return Err(DeepError::Shape(format!(
                "{rows} rows need {} numeric and {} categorical values, got {} and {}",
                rows.saturating_mul(f),
                rows.saturating_mul(c),
                numeric.len(),
                codes.len()
            )));
        }
        Ok(())
    }

    /// Scores one example on the packed path: no allocation beyond two scratch buffers, no
    /// thread pool, no candle dispatch. `out` holds `outputs` values.
    pub fn predict_one(&self, numeric: &[f32], codes: &[u32], out: &mut [f32]) -> Result<()> {
        if numeric.len() != self.cfg.numeric || codes.len() != self.cfg.embeddings.len() {
            return Err(DeepError::Shape(format!(
                "one example needs {} numeric and {} categorical values, got {} and {}",
                self.cfg.numeric,
                self.cfg.embeddings.len(),
                numeric.len(),
                codes.len()
            )));
        }
        if out.len() != self.cfg.head.outputs() {
            return Err(DeepError::Shape(format!(
                "output buffer holds {}, needs {}",
                out.len(),
                self.cfg.head.outputs()
            )));
        }
        self.packed.predict(&self.cfg, numeric, codes, out);
        Ok(())
    }

    /// Number of outputs per example.
    pub fn outputs(&self) -> usize {
        self.cfg.head.outputs()
    }
}
