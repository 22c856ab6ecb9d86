//! The inference paths of the MLP, outside candle.
//!
//! - One example: weights packed input-major (`W^T`, so each input adds a scaled contiguous row
//!   to the outputs: an axpy the compiler vectorises without reassociating sums), zero
//!   activations skipped (half the inputs after a ReLU), no thread pool, no tensor dispatch.
//! - Batches: a register-blocked matrix product. Weights are packed once into panels of
//!   [`NR`] output columns (`K x 16`, contiguous); each block of [`MR`] rows is packed `K x 6`
//!   and multiplied into a 6 x 16 tile of accumulators held in registers (12 AVX registers), so
//!   every weight loaded feeds 6 fused multiply-adds. Bias, layer norm, ReLU and the residual run
//!   on each finished row while it is in cache; rows go through all layers in chunks of
//!   [`CHUNK`] so activations stay in L2; threads take contiguous row ranges.
//!
//! Both paths have an AVX2+FMA build picked at run time and a portable one. They agree with the
//! candle path to float rounding (tested at 1e-5).

use crate::config::{Head, MlpConfig};
use crate::model::{Mlp, LN_EPS};
use crate::Result;

/// Rows of a register tile.
pub(crate) const MR: usize = 6;
/// Columns of a register tile (two AVX registers).
pub(crate) const NR: usize = 16;
/// Rows that go through all layers together in a batch (a multiple of [`MR`]).
pub(crate) const CHUNK: usize = 96;

#[derive(Debug, Clone, Default)]
pub(crate) struct PackedLayer {
    w: Vec<f32>,
    /// `W^T` in panels of `NR` columns: panel `p` is `inputs x NR`, zero-padded past `outputs`.
    panels: Vec<f32>,
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

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `W^T` (`k x n`, row-major) as `NR`-column panels.
fn pack_panels(wt: &[f32], k: usize, n: usize) -> Vec<f32> {
    let np = n.div_ceil(NR);
    let mut p = vec![0.0; np * k * NR];
    for (pi, panel) in p.chunks_exact_mut(k * NR).enumerate() {
        for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let c = pi * NR + j;
                if c < n {
                    *v = wt[kk * n + c];
                }
            }
        }
    }
    p
}

/// `y = x W^T + b` for `rows` rows: `x` is `rows x k`, `y` is `rows x n` (both row-major).
/// `apack` is scratch of `MR * k`.
#[inline(always)]
fn gemm_body<const FMA: bool>(
    l: &PackedLayer,
    x: &[f32],
    rows: usize,
    apack: &mut [f32],
    y: &mut [f32],
) {
    let (k, n) = (l.inputs, l.b.len());
    for r0 in (0..rows).step_by(MR) {
        let mr = (rows - r0).min(MR);
        // Pack the row block k-major: apack[kk][r] = x[r0 + r][kk] (zeros past the last row).
        let (ablocks, _) = apack.as_chunks_mut::<MR>();
        let ablocks = &mut ablocks[..k];
        if mr < MR {
            ablocks.fill([0.0; MR]);
        }
        for r in 0..mr {
            for (a, v) in ablocks.iter_mut().zip(&x[(r0 + r) * k..(r0 + r + 1) * k]) {
                a[r] = *v;
            }
        }
        let (ablocks, _) = apack.as_chunks::<MR>();
        for (pi, panel) in l.panels.chunks_exact(k * NR).enumerate() {
            let (bblocks, _) = panel.as_chunks::<NR>();
            let mut acc = [[0f32; NR]; MR];
            for (a, b) in ablocks.iter().zip(bblocks) {
                for r in 0..MR {
                    for j in 0..NR {
                        acc[r][j] = if FMA {
                            a[r].mul_add(b[j], acc[r][j])
                        } else {
                            acc[r][j] + a[r] * b[j]
                        };
                    }
                }
            }
            let c0 = pi * NR;
            let w = (n - c0).min(NR);
            for (r, tile) in acc.iter().enumerate().take(mr) {
                let out = &mut y[(r0 + r) * n + c0..(r0 + r) * n + c0 + w];
                for ((o, t), b) in out.iter_mut().zip(tile).zip(&l.b[c0..c0 + w]) {
                    *o = t + b;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gemm_avx2(l: &PackedLayer, x: &[f32], rows: usize, apack: &mut [f32], y: &mut [f32]) {
    gemm_body::<true>(l, x, rows, apack, y);
}

fn gemm(l: &PackedLayer, x: &[f32], rows: usize, apack: &mut [f32], y: &mut [f32], avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2 {
            // SAFETY: `avx2` is true only when the CPU supports AVX2 and FMA (has_avx2_fma);
            // the function does safe slice arithmetic compiled with those features.
            #[allow(unsafe_code)]
            unsafe {
                gemm_avx2(l, x, rows, apack, y)
            };
            return;
        }
    }
    let _ = avx2;
    gemm_body::<false>(l, x, rows, apack, y);
}

/// Layer norm (when the layer has one), ReLU and the residual on one finished row.
fn finish_row(l: &PackedLayer, z: &mut [f32], x: &[f32]) {
    let h = z.len();
    if let Some((g, be)) = &l.norm {
        let mean = z.iter().sum::<f32>() / h as f32;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + LN_EPS as f32).sqrt();
        for ((v, g), be) in z.iter_mut().zip(g).zip(be) {
            *v = (*v - mean) * inv * g + be;
        }
    }
    for v in z.iter_mut() {
        *v = v.max(0.0);
    }
    if l.residual {
        for (v, x) in z.iter_mut().zip(x) {
            *v += x;
        }
    }
}

/// Output transform in place: sigmoid, softmax or identity.
fn transform(head: Head, out: &mut [f32]) {
    match head {
        Head::Binary => {
            for v in out.iter_mut() {
                *v = 1.0 / (1.0 + (-*v).exp());
            }
        }
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

fn data(v: &candle_core::Var) -> Result<Vec<f32>> {
    Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)
}

/// `out = b + W x` with `wt` = `W^T` (`inputs x outputs`, row-major).
fn axpy_layer(wt: &[f32], x: &[f32], b: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
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
            let wt = transpose(&data(&b.w)?, outw, width);
            layers.push(PackedLayer {
                panels: pack_panels(&wt, width, outw),
                w: wt,
                b: bias,
                inputs: width,
                norm,
                residual: b.residual,
            });
            width = outw;
            max = max.max(width);
        }
        let hb = data(&m.head.1)?;
        let wt = transpose(&data(&m.head.0)?, hb.len(), width);
        let head = PackedLayer {
            panels: pack_panels(&wt, width, hb.len()),
            w: wt,
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

    /// Writes one example's input row (numeric values, then each code's embedding; unknown
    /// codes read the extra row) into `row`; returns its width.
    fn input_row(&self, cfg: &MlpConfig, numeric: &[f32], codes: &[u32], row: &mut [f32]) -> usize {
        row[..numeric.len()].copy_from_slice(numeric);
        let mut at = numeric.len();
        for ((e, spec), &c) in self.emb.iter().zip(&cfg.embeddings).zip(codes) {
            let i = (c as usize).min(spec.cardinality);
            row[at..at + spec.dim].copy_from_slice(&e[i * spec.dim..(i + 1) * spec.dim]);
            at += spec.dim;
        }
        at
    }

    pub(crate) fn predict(&self, cfg: &MlpConfig, numeric: &[f32], codes: &[u32], out: &mut [f32]) {
        let mut a = vec![0.0f32; self.width];
        let mut b = vec![0.0f32; self.width];
        let mut w = self.input_row(cfg, numeric, codes, &mut a);
        for l in &self.layers {
            let h = l.b.len();
            l.apply(&a[..w], &mut b[..h]);
            finish_row(l, &mut b[..h], &a[..h]);
            std::mem::swap(&mut a, &mut b);
            w = h;
        }
        self.head.apply(&a[..w], out);
        transform(cfg.head, out);
    }

    /// Scores `rows` examples (already checked: `rows x numeric` values, `rows x embeddings`
    /// codes, `out` of `rows x outputs`) on `threads` threads (1: the caller's thread).
    pub(crate) fn predict_batch(
        &self,
        cfg: &MlpConfig,
        numeric: &[f32],
        codes: &[u32],
        rows: usize,
        out: &mut [f32],
        threads: usize,
    ) {
        let (f, c, o) = (cfg.numeric, cfg.embeddings.len(), cfg.head.outputs());
        // Threads get contiguous ranges of whole 6-row tiles, at least one chunk each.
        let threads = threads.clamp(1, rows.div_ceil(CHUNK).max(1));
        if threads == 1 {
            self.batch_range(cfg, numeric, codes, rows, out);
            return;
        }
        let per = rows.div_ceil(MR).div_ceil(threads) * MR;
        // A pool built once per thread count: no thread is created per call.
        let Ok(pool) = crate::threads::pool(threads) else {
            self.batch_range(cfg, numeric, codes, rows, out);
            return;
        };
        pool.scope(|s| {
            let mut rest = out;
            for start in (0..rows).step_by(per) {
                let m = per.min(rows - start);
                let (mine, tail) = rest.split_at_mut(m * o);
                rest = tail;
                let num = &numeric[start * f..(start + m) * f];
                let cod = &codes[start * c..(start + m) * c];
                s.spawn(move |_| self.batch_range(cfg, num, cod, m, mine));
            }
        });
    }

    fn batch_range(
        &self,
        cfg: &MlpConfig,
        numeric: &[f32],
        codes: &[u32],
        rows: usize,
        out: &mut [f32],
    ) {
        let (f, c, o) = (cfg.numeric, cfg.embeddings.len(), cfg.head.outputs());
        let avx2 = has_avx2_fma();
        let input = cfg.input_width();
        let mut a = vec![0.0f32; CHUNK * self.width];
        let mut b = vec![0.0f32; CHUNK * self.width];
        let mut apack = vec![0.0f32; MR * self.width];
        for start in (0..rows).step_by(CHUNK) {
            let m = CHUNK.min(rows - start);
            for r in 0..m {
                self.input_row(
                    cfg,
                    &numeric[(start + r) * f..(start + r + 1) * f],
                    &codes[(start + r) * c..(start + r + 1) * c],
                    &mut a[r * input..(r + 1) * input],
                );
            }
            let mut w = input;
            for l in &self.layers {
                let h = l.b.len();
                gemm(l, &a[..m * w], m, &mut apack, &mut b[..m * h], avx2);
                for r in 0..m {
                    let x = &a[r * w..(r + 1) * w];
                    finish_row(l, &mut b[r * h..(r + 1) * h], x);
                }
                std::mem::swap(&mut a, &mut b);
                w = h;
            }
            let y = &mut out[start * o..(start + m) * o];
            gemm(&self.head, &a[..m * w], m, &mut apack, y, avx2);
            for row in y.chunks_exact_mut(o) {
                transform(cfg.head, row);
            }
        }
    }
}
