//! The single-example path: weights packed input-major (`W^T`, so each input adds a scaled
//! contiguous row to the outputs: an axpy the compiler vectorises without reassociating sums),
//! zero activations skipped (half the inputs after a ReLU), an AVX2+FMA build of the same loop
//! picked at run time, no thread pool, no tensor dispatch. Agrees with the candle path to float
//! rounding (tested at 1e-5).

use crate::config::{Head, MlpConfig};
use crate::model::{Mlp, LN_EPS};
use crate::Result;

#[derive(Debug, Clone, Default)]
pub(crate) struct PackedLayer {
    w: Vec<f32>,
    b: Vec<f32>,
    inputs: usize,
    norm: Option<(Vec<f32>, Vec<f32>)>,
    residual: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Packed {
    emb: Vec<Vec<f32>>,
    layers: Vec<PackedLayer>,
    head: PackedLayer,
    width: usize,
}

fn data(v: &candle_core::Var) -> Result<Vec<f32>> {
    Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)
}

/// `out = b + W x` with `wt` = `W^T` (`inputs x outputs`, row-major).
fn axpy_layer(wt: &[f32], x: &[f32], b: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above); the function only
            // does safe slice arithmetic compiled with those features enabled.
            #[allow(unsafe_code)]
            unsafe {
                axpy_layer_avx2(wt, x, b, out)
            };
            return;
        }
    }
    out.copy_from_slice(b);
    let n = out.len();
    for (xi, row) in x.iter().zip(wt.chunks_exact(n)) {
        if *xi != 0.0 {
            for (o, w) in out.iter_mut().zip(row) {
                *o += xi * w;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_layer_avx2(wt: &[f32], x: &[f32], b: &[f32], out: &mut [f32]) {
    out.copy_from_slice(b);
    let n = out.len();
    for (xi, row) in x.iter().zip(wt.chunks_exact(n)) {
        if *xi != 0.0 {
            for (o, w) in out.iter_mut().zip(row) {
                *o = xi.mul_add(*w, *o);
            }
        }
    }
}

impl PackedLayer {
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        axpy_layer(&self.w, &x[..self.inputs], &self.b, out);
    }
}

/// `W` (`outputs x inputs`) transposed to `inputs x outputs`.
fn transpose(w: &[f32], outputs: usize, inputs: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for o in 0..outputs {
        for i in 0..inputs {
            t[i * outputs + o] = w[o * inputs + i];
        }
    }
    t
}

impl Packed {
    pub(crate) fn from_model(m: &Mlp) -> Result<Packed> {
        let mut layers = Vec::with_capacity(m.blocks.len());
        let mut width = m.cfg.input_width();
        let mut max = width;
        for b in &m.blocks {
            let norm = match &b.norm {
                Some((g, be)) => Some((data(g)?, data(be)?)),
                None => None,
            };
            let bias = data(&b.b)?;
            let outw = bias.len();
            layers.push(PackedLayer {
                w: transpose(&data(&b.w)?, outw, width),
                b: bias,
                inputs: width,
                norm,
                residual: b.residual,
            });
            width = outw;
            max = max.max(width);
        }
        let hb = data(&m.head.1)?;
        let head = PackedLayer {
            w: transpose(&data(&m.head.0)?, hb.len(), width),
            b: hb,
            inputs: width,
            norm: None,
            residual: false,
        };
        Ok(Packed {
            emb: m.emb.iter().map(data).collect::<Result<_>>()?,
            layers,
            head,
            width: max,
        })
    }

    pub(crate) fn predict(&self, cfg: &MlpConfig, numeric: &[f32], codes: &[u32], out: &mut [f32]) {
        let mut a = vec![0.0f32; self.width];
        let mut b = vec![0.0f32; self.width];
        a[..numeric.len()].copy_from_slice(numeric);
        let mut at = numeric.len();
        for ((e, spec), &c) in self.emb.iter().zip(&cfg.embeddings).zip(codes) {
            let row = (c as usize).min(spec.cardinality);
            a[at..at + spec.dim].copy_from_slice(&e[row * spec.dim..(row + 1) * spec.dim]);
            at += spec.dim;
        }
        let mut w = at;
        for l in &self.layers {
            let h = l.b.len();
            l.apply(&a[..w], &mut b[..h]);
            if let Some((g, be)) = &l.norm {
                let z = &mut b[..h];
                let mean = z.iter().sum::<f32>() / h as f32;
                let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
                let inv = 1.0 / (var + LN_EPS as f32).sqrt();
                for ((v, g), be) in z.iter_mut().zip(g).zip(be) {
                    *v = (*v - mean) * inv * g + be;
                }
            }
            for v in &mut b[..h] {
                *v = v.max(0.0);
            }
            if l.residual {
                for (v, x) in b[..h].iter_mut().zip(&a[..h]) {
                    *v += x;
                }
            }
            std::mem::swap(&mut a, &mut b);
            w = h;
        }
        self.head.apply(&a[..w], out);
        match cfg.head {
            Head::Binary => out[0] = 1.0 / (1.0 + (-out[0]).exp()),
            Head::Multiclass { .. } => {
                let m = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut s = 0.0;
                for v in out.iter_mut() {
                    *v = (*v - m).exp();
                    s += *v;
                }
                for v in out.iter_mut() {
                    *v /= s;
                }
            }
            Head::Regression => {}
        }
    }
}
