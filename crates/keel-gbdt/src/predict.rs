//! The scorer: tree traversal, raw sums, output transforms, batches and threads.

use crate::error::{GbdtError, Result};
use crate::model::*;
use std::ops::Range;

/// An input element type: `f32` or `f64`.
pub trait FeatureValue: Copy + Send + Sync + private::Sealed {
    /// Widens to `f64`.
    fn to_f64(self) -> f64;
}
impl FeatureValue for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}
impl FeatureValue for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}
mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Which scores to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Output {
    /// After the objective's transform (probabilities, expected counts...).
    #[default]
    Transformed,
    /// Raw margins (sums of leaf values plus base score).
    Raw,
}

/// Options for batch prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictOptions {
    /// Transformed or raw scores.
    pub output: Output,
    /// First boosting iteration used.
    pub start_iteration: usize,
    /// Number of iterations used from `start_iteration`; `None` (or 0) means all the rest.
    pub num_iteration: Option<usize>,
    /// Worker threads for batches; 1 scores on the calling thread. Small batches always do.
    pub threads: usize,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions { output: Output::Transformed, start_iteration: 0, num_iteration: None, threads: 1 }
    }
}

impl PredictOptions {
    /// Raw scores.
    pub fn raw() -> Self {
        PredictOptions { output: Output::Raw, ..Default::default() }
    }
    /// Sets the thread count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
    /// Restricts to iterations `start..start + num`.
    pub fn with_iterations(mut self, start: usize, num: Option<usize>) -> Self {
        self.start_iteration = start;
        self.num_iteration = num;
        self
    }
}

/// Rows per block: every tree is applied to a whole block before the next tree, so a tree's
/// nodes stay in L1 while rows stream through.
const BLOCK: usize = 64;
/// Batches smaller than this never leave the calling thread.
const MIN_ROWS_PER_THREAD: usize = 512;

impl Model {
    #[inline(always)]
    fn xgb(&self) -> bool {
        self.source == Source::XgBoost
    }

    /// Index of the leaf reached from `root` for `row`.
    #[inline(always)]
    pub(crate) fn find_leaf<const XGB: bool, F: FeatureValue>(&self, root: usize, row: &[F]) -> usize {
        let nodes = self.nodes.as_slice();
        let mut i = root;
        loop {
            let n = nodes[i];
            let flags = n.flags();
            if flags & LEAF != 0 {
                return i;
            }
            let mut x = row[n.feature()].to_f64();
            if XGB {
                x = x as f32 as f64;
            }
            let first = if flags & SPECIAL == 0 {
                (x <= n.value) | ((flags & NAN_FIRST != 0) & x.is_nan())
            } else {
                self.decide_special(n, x)
            };
            i = if first { i + 1 } else { n.second as usize };
        }
    }

    /// The general split decision: categorical, zero-as-missing, zero snapping.
    #[inline]
    pub(crate) fn decide_special(&self, n: Node, mut x: f64) -> bool {
        let flags = n.flags();
        if x.is_nan() {
            return flags & NAN_FIRST != 0;
        }
        if flags & CATEGORICAL != 0 {
            if flags & CAT_NEG_INVALID != 0 && x < 0.0 {
                return false;
            }
            let c = x.trunc();
            let (off, words) = n.bitset();
            if !(c >= 0.0 && c < (words * 32) as f64) {
                return false;
            }
            let c = c as usize;
            return (self.cat_bits[off + c / 32] >> (c % 32)) & 1 == 1;
        }
        if flags & ZERO_MISSING != 0 && x.abs() <= K_ZERO {
            return flags & DEFAULT_FIRST != 0;
        }
        if flags & ZERO_SNAP != 0 && x.abs() <= K_ZERO {
            x = 0.0;
        }
        x <= n.value
    }

    /// The value of the leaf at node `i` for `row` (linear leaves evaluate their model).
    #[inline(always)]
    fn leaf_value<F: FeatureValue>(&self, i: usize, row: &[F]) -> f64 {
        let n = self.nodes[i];
        if n.flags() & LINEAR == 0 {
            return n.value;
        }
        let l = &self.linear[n.feature()];
        let mut out = l.constant;
        for (&f, &c) in l.features.iter().zip(&l.coeffs) {
            let mut x = row[f as usize].to_f64();
            if x.is_nan() {
                return n.value;
            }
            if x.abs() <= K_ZERO {
                x = 0.0;
            }
            out += c * x;
        }
        out
    }

    /// Tree range of iterations `start..start+num` (all remaining when `num` is None or 0).
    pub(crate) fn tree_range(&self, start: usize, num: Option<usize>) -> Result<(Range<usize>, usize)> {
        let iters = self.iteration_ptr.len() - 1;
        if start > iters {
            return Err(GbdtError::Input(format!("start_iteration {start} beyond {iters} iterations")));
        }
        let n = match num {
            None | Some(0) => iters - start,
            Some(n) => n.min(iters - start),
        };
        let r = self.iteration_ptr[start] as usize..self.iteration_ptr[start + n] as usize;
        Ok((r, n))
    }

    /// Raw scores of a block of rows into `out` (row-major, `num_outputs` per row).
    fn raw_block<const XGB: bool, F: FeatureValue>(
        &self,
        rows: &[F],
        nrows: usize,
        stride: usize,
        trees: Range<usize>,
        out: &mut [f64],
    ) {
        let k = self.num_outputs;
        for r in 0..nrows {
            out[r * k..(r + 1) * k].copy_from_slice(&self.base_margin);
        }
        for t in &self.trees[trees] {
            let root = t.root as usize;
            let g = t.group as usize;
            if XGB {
                let w = t.weight as f32;
                for r in 0..nrows {
                    let row = &rows[r * stride..r * stride + stride];
                    let leaf = self.find_leaf::<true, F>(root, row);
                    let v = self.nodes[leaf].value as f32;
                    let v = if w == 1.0 { v } else { v * w };
                    let o = &mut out[r * k + g];
                    *o = f64::from(*o as f32 + v);
                }
            } else {
                for r in 0..nrows {
                    let row = &rows[r * stride..r * stride + stride];
                    let leaf = self.find_leaf::<false, F>(root, row);
                    out[r * k + g] += self.leaf_value(leaf, row);
                }
            }
        }
    }

    /// Applies averaging and the objective's transform to one row's raw outputs, in place.
    #[inline]
    pub(crate) fn finish_row(&self, out: &mut [f64], iterations: usize, output: Output) {
        // As LightGBM: raw scores of a random forest are sums; only predictions average.
        if output == Output::Raw {
            return;
        }
        if self.average_output && iterations > 0 {
            for o in out.iter_mut() {
                *o /= iterations as f64;
            }
        }
        if self.xgb() {
            xgb_transform(self.transform, out);
        } else {
            lgb_transform(self.transform, out);
        }
    }

    /// Scores `rows` (row-major, `stride` values per row) into `out` on this thread.
    pub(crate) fn score_serial<F: FeatureValue>(
        &self,
        rows: &[F],
        stride: usize,
        trees: Range<usize>,
        iterations: usize,
        output: Output,
        out: &mut [f64],
    ) {
        let k = self.num_outputs;
        let nrows = out.len() / k;
        let mut start = 0;
        while start < nrows {
            let n = BLOCK.min(nrows - start);
            let block_rows = &rows[start * stride..(start + n) * stride];
            let block_out = &mut out[start * k..(start + n) * k];
            if self.xgb() {
                self.raw_block::<true, F>(block_rows, n, stride, trees.clone(), block_out);
            } else {
                self.raw_block::<false, F>(block_rows, n, stride, trees.clone(), block_out);
            }
            for r in 0..n {
                self.finish_row(&mut block_out[r * k..(r + 1) * k], iterations, output);
            }
            start += n;
        }
    }

    /// Scores a batch, splitting it across `opts.threads` scoped threads when it is large.
    pub(crate) fn score<F: FeatureValue>(&self, rows: &[F], opts: &PredictOptions, out: &mut [f64]) -> Result<()> {
        let stride = self.num_features;
        if rows.len() % stride != 0 {
            return Err(GbdtError::Input(format!(
                "{} values is not a whole number of rows of {stride} features",
                rows.len()
            )));
        }
        let nrows = rows.len() / stride;
        let k = self.num_outputs;
        if out.len() != nrows * k {
            return Err(GbdtError::Input(format!("output buffer holds {}, need {}", out.len(), nrows * k)));
        }
        let (trees, iters) = self.tree_range(opts.start_iteration, opts.num_iteration)?;
        let threads = opts.threads.max(1).min(nrows / MIN_ROWS_PER_THREAD).max(1);
        if threads == 1 {
            self.score_serial(rows, stride, trees, iters, opts.output, out);
            return Ok(());
        }
        let per = nrows.div_ceil(threads);
        std::thread::scope(|s| {
            for (chunk_rows, chunk_out) in rows.chunks(per * stride).zip(out.chunks_mut(per * k)) {
                let trees = trees.clone();
                s.spawn(move || self.score_serial(chunk_rows, stride, trees, iters, opts.output, chunk_out));
            }
        });
        Ok(())
    }

    /// Leaf ids for a batch: `nrows x trees` in the range, row-major.
    pub(crate) fn leaves<F: FeatureValue>(&self, rows: &[F], opts: &PredictOptions) -> Result<Vec<u32>> {
        let stride = self.num_features;
        if rows.len() % stride != 0 {
            return Err(GbdtError::Input("input is not a whole number of rows".into()));
        }
        let (trees, _) = self.tree_range(opts.start_iteration, opts.num_iteration)?;
        let nt = trees.len();
        let mut out = Vec::with_capacity(rows.len() / stride * nt);
        for row in rows.chunks(stride) {
            for t in &self.trees[trees.clone()] {
                let leaf = if self.xgb() {
                    self.find_leaf::<true, F>(t.root as usize, row)
                } else {
                    self.find_leaf::<false, F>(t.root as usize, row)
                };
                out.push(self.nodes[leaf].second);
            }
        }
        Ok(out)
    }
}

/// LightGBM's transforms, in double precision.
fn lgb_transform(t: Transform, out: &mut [f64]) {
    match t {
        Transform::Identity => {}
        Transform::Sigmoid { alpha } => out.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-alpha * *x).exp())),
        Transform::Softmax => {
            let max = out.iter().copied().fold(out[0], f64::max);
            let mut sum = 0.0;
            for x in out.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            out.iter_mut().for_each(|x| *x /= sum);
        }
        Transform::ArgMax => argmax(out),
        Transform::Exp => out.iter_mut().for_each(|x| *x = x.exp()),
        Transform::Log1pExp => out.iter_mut().for_each(|x| *x = x.exp().ln_1p()),
        Transform::SignSquare => out.iter_mut().for_each(|x| *x = x.signum() * *x * *x),
        Transform::Hinge => out.iter_mut().for_each(|x| *x = if *x > 0.0 { 1.0 } else { 0.0 }),
    }
}

/// XGBoost's transforms, in single precision.
fn xgb_transform(t: Transform, out: &mut [f64]) {
    match t {
        Transform::Identity => {}
        Transform::Sigmoid { .. } => out.iter_mut().for_each(|x| {
            let v = *x as f32;
            *x = f64::from(1.0f32 / (1.0f32 + (-v).exp()));
        }),
        Transform::Softmax => {
            let max = out.iter().map(|&x| x as f32).fold(out[0] as f32, f32::max);
            let mut sum = 0.0f32;
            for x in out.iter() {
                sum += (*x as f32 - max).exp();
            }
            out.iter_mut().for_each(|x| *x = f64::from((*x as f32 - max).exp() / sum));
        }
        Transform::ArgMax => argmax(out),
        Transform::Exp => out.iter_mut().for_each(|x| *x = f64::from((*x as f32).exp())),
        Transform::Log1pExp => out.iter_mut().for_each(|x| *x = f64::from((*x as f32).exp().ln_1p())),
        Transform::SignSquare => out.iter_mut().for_each(|x| *x = x.signum() * *x * *x),
        Transform::Hinge => out.iter_mut().for_each(|x| *x = if *x > 0.0 { 1.0 } else { 0.0 }),
    }
}

fn argmax(out: &mut [f64]) {
    let mut best = 0;
    for (i, &x) in out.iter().enumerate() {
        if x > out[best] {
            best = i;
        }
    }
    out.iter_mut().for_each(|x| *x = 0.0);
    out[0] = best as f64;
}
