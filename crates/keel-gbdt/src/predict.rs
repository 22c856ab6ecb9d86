//! The scorer: tree traversal, raw sums, output transforms, batches and threads.

use crate::error::{GbdtError, Result};
use crate::model::*;
use crate::scorer::Scorer;
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

/// `v` as the library reads it: XGBoost rounds inputs to float32, LightGBM keeps doubles.
#[inline(always)]
pub(crate) fn read<const XGB: bool, F: FeatureValue>(v: F) -> f64 {
    let x = v.to_f64();
    if XGB {
        x as f32 as f64
    } else {
        x
    }
}

/// `len` values of scratch: the front of `stack` when it is long enough, else `heap` grown to
/// `len` (filled with `fill`), so small models score without allocating.
#[inline(always)]
pub(crate) fn scratch<'a, T: Copy>(
    stack: &'a mut [T],
    heap: &'a mut Vec<T>,
    len: usize,
    fill: T,
) -> &'a mut [T] {
    if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, fill);
        heap
    }
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
        PredictOptions {
            output: Output::Transformed,
            start_iteration: 0,
            num_iteration: None,
            threads: 1,
        }
    }
}

impl PredictOptions {
    /// Raw scores.
    pub fn raw() -> Self {
        PredictOptions {
            output: Output::Raw,
            ..Default::default()
        }
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
/// Chunks of a threaded batch per thread (see [`Model::score`]).
const CHUNKS_PER_THREAD: usize = 8;

/// Batches smaller than this never leave the calling thread.
const MIN_ROWS_PER_THREAD: usize = 512;

/// Split decisions: facts of the IR, shared by the scorer and TreeSHAP.
impl Model {
    #[inline(always)]
    pub(crate) fn xgb(&self) -> bool {
        self.source == Source::XgBoost
    }

    /// Whether a split (of `nodes`, not the derived scoring table) sends `x` (already rounded
    /// as the library reads it) to its first child. Shared by leaf lookup and TreeSHAP.
    #[inline(always)]
    pub(crate) fn goes_first(&self, n: Node, x: f64) -> bool {
        if n.flags() & SPECIAL == 0 {
            (x <= n.value) | ((n.flags() & NAN_FIRST != 0) & x.is_nan())
        } else {
            self.decide_special(n, x)
        }
    }

    /// The general split decision: NaN, categorical, zero-as-missing. Kept out of
    /// line so the hot walk stays small.
    #[inline(never)]
    pub(crate) fn decide_special(&self, n: Node, x: f64) -> bool {
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
        x <= n.value
    }
}

impl Scorer {
    /// Index of the leaf reached from `root` for `row`.
    #[inline(always)]
    pub(crate) fn find_leaf<const XGB: bool, F: FeatureValue>(
        &self,
        root: usize,
        row: &[F],
    ) -> usize {
        let nodes = self.nodes.as_slice();
        let mut i = root;
        loop {
            let n = nodes[i];
            let flags = n.flags();
            if flags & LEAF != 0 {
                return i;
            }
            let x = read::<XGB, F>(row[n.feature()]);
            i = if self.goes_first(n, x) {
                i + 1
            } else {
                n.second as usize
            };
        }
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
    pub(crate) fn tree_range(
        &self,
        start: usize,
        num: Option<usize>,
    ) -> Result<(Range<usize>, usize)> {
        let iters = self.iteration_ptr.len() - 1;
        if start > iters {
            return Err(GbdtError::Input(format!(
                "start_iteration {start} beyond {iters} iterations"
            )));
        }
        let n = match num {
            None | Some(0) => iters - start,
            Some(n) => n.min(iters - start),
        };
        let r = self.iteration_ptr[start] as usize..self.iteration_ptr[start + n] as usize;
        Ok((r, n))
    }

    /// Writes the scorer's view of `row` into `out` (`2 * num_features` values): the values as
    /// the library reads them (float32-rounded for XGBoost), first with NaN as +inf, then with
    /// NaN as -inf. A split whose NaN goes first reads the second half, every other split the
    /// first, so a plain `x <= threshold` sends NaN the right way without a NaN test.
    #[inline(always)]
    fn prepare_row<const XGB: bool, F: FeatureValue>(&self, row: &[F], out: &mut [f64]) {
        let f = self.num_features;
        let (hi, lo) = out[..2 * f].split_at_mut(f);
        for ((h, l), &v) in hi.iter_mut().zip(lo.iter_mut()).zip(&row[..f]) {
            let x = read::<XGB, F>(v);
            let nan = x.is_nan();
            *h = if nan { f64::INFINITY } else { x };
            *l = if nan { f64::NEG_INFINITY } else { x };
        }
    }

    /// One step from node `i` (in `fast`): the next node and whether `i` is a leaf (leaves loop
    /// on themselves). `xs` is the prepared row ([`Model::prepare_row`]), `orig` the caller's.
    /// Plain splits are one comparison and a select; categorical and zero-as-missing splits
    /// take the general path.
    ///
    /// # Safety
    /// `i` must be reachable from a root of this model, `xs` must point to `2 * num_features`
    /// values and `orig` to `num_features`. [`Model::validate`] guarantees reachable indices
    /// and features are in bounds ([`Model::prepare`] maps features into `0..2F`); the entry
    /// points check row lengths.
    #[inline(always)]
    unsafe fn step<const XGB: bool, F: FeatureValue>(
        &self,
        i: u32,
        xs: *const f64,
        orig: *const F,
    ) -> (u32, bool) {
        // SAFETY: see the function's contract.
        let n = unsafe { *self.fast.as_ptr().add(i as usize) };
        let flags = n.flags();
        let first = if flags & SPECIAL == 0 {
            // SAFETY: plain splits and leaves carry a feature below 2 * num_features.
            unsafe { *xs.add(n.feature()) <= n.value }
        } else {
            // SAFETY: special splits keep their original feature, below num_features.
            let x = read::<XGB, F>(unsafe { *orig.add(n.feature()) });
            self.decide_special(self.nodes[i as usize], x)
        };
        let a = i + 1;
        let b = n.second;
        (
            b ^ ((a ^ b) & u32::from(first).wrapping_neg()),
            flags & LEAF != 0,
        )
    }

    /// Finds the leaf of `count` work items (item `j` starts at `root_at(j)` on row `row_of(j)`
    /// of the prepared rows `xs` / original rows `orig`), writing leaf node indices to
    /// `leaf_out[j]`.
    ///
    /// `L` lanes walk interleaved, so their dependent loads overlap; a lane that reaches its
    /// leaf is refilled with the next item in the same step (trees are unbalanced: no lane
    /// waits for the deepest). Child choice is a select, not a branch; the refill is a branch
    /// taken about once per tree-row (measured faster than a select, which chains every lane
    /// through the shared item counter). `leaf_out` needs `L` slots of slack past `count`.
    ///
    /// # Safety
    /// `root_at(j)` must be a root and `row_of(j)` a row present in `xs` (`2F` values each)
    /// and `orig` (`stride >= F` values each) for every `j < count`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn walk_items<const L: usize, const XGB: bool, F: FeatureValue>(
        &self,
        count: usize,
        root_at: impl Fn(usize) -> u32,
        row_of: impl Fn(usize) -> usize,
        xs: &[f64],
        orig: &[F],
        stride: usize,
        leaf_out: &mut [u32],
    ) {
        assert!(leaf_out.len() >= count + L);
        let f2 = 2 * self.num_features;
        let ptrs = |j: usize| {
            let r = row_of(j);
            debug_assert!((r + 1) * f2 <= xs.len() && r * stride + self.num_features <= orig.len());
            // SAFETY: the caller guarantees row r exists in both buffers.
            unsafe { (xs.as_ptr().add(r * f2), orig.as_ptr().add(r * stride)) }
        };
        let finish = |mut i: u32, (x, o): (*const f64, *const F)| loop {
            // SAFETY: the caller's contract.
            let (next, leaf) = unsafe { self.step::<XGB, F>(i, x, o) };
            if leaf {
                return i;
            }
            i = next;
        };
        if count < 2 * L {
            for (j, out) in leaf_out.iter_mut().enumerate().take(count) {
                *out = finish(root_at(j), ptrs(j));
            }
            return;
        }
        let last = count - 1;
        let mut item: [usize; L] = std::array::from_fn(|l| l);
        let mut idx: [u32; L] = std::array::from_fn(&root_at);
        let mut rows: [(*const f64, *const F); L] = std::array::from_fn(&ptrs);
        let mut next = L;
        while next < count {
            for l in 0..L {
                let it = item[l];
                // SAFETY: lanes hold rows of items <= last; `it` may pass `last` only by the
                // lanes refilled in this sweep, whose slots are leaf_out's slack.
                let (nxt, leaf) = unsafe { self.step::<XGB, F>(idx[l], rows[l].0, rows[l].1) };
                unsafe { *leaf_out.get_unchecked_mut(it) = idx[l] };
                if leaf {
                    let j = next.min(last);
                    item[l] = next;
                    idx[l] = root_at(j);
                    rows[l] = ptrs(j);
                    next += 1;
                } else {
                    idx[l] = nxt;
                }
            }
        }
        for l in 0..L {
            if item[l] < count {
                leaf_out[item[l]] = finish(idx[l], rows[l]);
            }
        }
    }

    /// Adds the leaf at node `leaf` for `row` to `out` with the library's arithmetic.
    #[inline(always)]
    pub(crate) fn accumulate<const XGB: bool, F: FeatureValue>(
        &self,
        t: &TreeMeta,
        leaf: u32,
        row: &[F],
        out: &mut f64,
    ) {
        if XGB {
            let v = self.nodes[leaf as usize].value as f32;
            let w = t.weight as f32;
            let v = if w == 1.0 { v } else { v * w };
            *out = f64::from(*out as f32 + v);
        } else {
            *out += self.leaf_value(leaf as usize, row);
        }
    }

    /// Raw scores of a block of rows into `out` (row-major, `num_outputs` per row): the rows
    /// are prepared once, then each tree walks all of them and adds their leaves in row order.
    fn raw_block<const XGB: bool, F: FeatureValue>(
        &self,
        rows: &[F],
        nrows: usize,
        stride: usize,
        trees: Range<usize>,
        xs: &mut Vec<f64>,
        out: &mut [f64],
    ) {
        const L: usize = 8;
        let k = self.num_outputs;
        let f2 = 2 * self.num_features;
        assert!(nrows <= BLOCK && rows.len() >= nrows * stride && stride >= self.num_features);
        xs.resize(nrows * f2, 0.0);
        for r in 0..nrows {
            self.prepare_row::<XGB, F>(
                &rows[r * stride..r * stride + stride],
                &mut xs[r * f2..(r + 1) * f2],
            );
            out[r * k..(r + 1) * k].copy_from_slice(&self.base_margin);
        }
        let mut leaves = [0u32; BLOCK + L];
        for t in &self.trees[trees] {
            let root = t.root;
            let g = t.group as usize;
            // SAFETY: `root` is a root; rows r < nrows exist in `xs` and `rows` (asserted).
            unsafe {
                self.walk_items::<L, XGB, F>(nrows, |_| root, |r| r, xs, rows, stride, &mut leaves)
            };
            for r in 0..nrows {
                self.accumulate::<XGB, F>(
                    t,
                    leaves[r],
                    &rows[r * stride..r * stride + stride],
                    &mut out[r * k + g],
                );
            }
        }
    }

    /// Raw scores of one row: the trees are the work items, walked interleaved, then their
    /// leaves are added in tree order, as the libraries do. Allocates only for models wider
    /// than 256 features.
    pub(crate) fn raw_one<const XGB: bool, F: FeatureValue>(
        &self,
        row: &[F],
        trees: Range<usize>,
        out: &mut [f64],
    ) {
        const L: usize = 8;
        const CHUNK: usize = 256;
        const STACK_FEATURES: usize = 256;
        let f = self.num_features;
        assert!(row.len() >= f);
        if trees == (0..self.trees.len()) {
            out.copy_from_slice(&self.base_margin);
            if self.qs_raw(row, 1, f, out) {
                return;
            }
        }
        let mut stack = [0.0f64; 2 * STACK_FEATURES];
        let mut heap = Vec::new();
        let xs = scratch(&mut stack, &mut heap, 2 * f, 0.0);
        self.prepare_row::<XGB, F>(row, xs);
        out.copy_from_slice(&self.base_margin);
        let mut leaves = [0u32; CHUNK + L];
        let mut t0 = trees.start;
        while t0 < trees.end {
            let n = CHUNK.min(trees.end - t0);
            let ts = &self.trees[t0..t0 + n];
            // SAFETY: every item is a tree root; the single row is prepared and long enough.
            unsafe {
                self.walk_items::<L, XGB, F>(n, |j| ts[j].root, |_| 0, xs, row, f, &mut leaves)
            };
            for j in 0..n {
                self.accumulate::<XGB, F>(&ts[j], leaves[j], row, &mut out[ts[j].group as usize]);
            }
            t0 += n;
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
        self.score_serial_by(rows, stride, trees, iterations, output, out, true)
    }

    /// [`Model::score_serial`], by bit vectors when `bitvectors` and the model has their
    /// tables and every tree is used, otherwise by walking the trees.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn score_serial_by<F: FeatureValue>(
        &self,
        rows: &[F],
        stride: usize,
        trees: Range<usize>,
        iterations: usize,
        output: Output,
        out: &mut [f64],
        bitvectors: bool,
    ) {
        let k = self.num_outputs;
        let nrows = out.len() / k;
        if bitvectors && trees == (0..self.trees.len()) && self.qs.is_some() {
            for o in out.chunks_mut(k) {
                o.copy_from_slice(&self.base_margin);
            }
            self.qs_raw(rows, nrows, stride, out);
            for o in out.chunks_mut(k) {
                self.finish_row(o, iterations, output);
            }
            return;
        }
        let mut xs = Vec::with_capacity(BLOCK * 2 * self.num_features);
        let mut start = 0;
        while start < nrows {
            let n = BLOCK.min(nrows - start);
            let block_rows = &rows[start * stride..(start + n) * stride];
            let block_out = &mut out[start * k..(start + n) * k];
            if self.xgb() {
                self.raw_block::<true, F>(block_rows, n, stride, trees.clone(), &mut xs, block_out);
            } else {
                self.raw_block::<false, F>(
                    block_rows,
                    n,
                    stride,
                    trees.clone(),
                    &mut xs,
                    block_out,
                );
            }
            for r in 0..n {
                self.finish_row(&mut block_out[r * k..(r + 1) * k], iterations, output);
            }
            start += n;
        }
    }

    /// Scores a batch, splitting it across `opts.threads` scoped threads when it is large.
    pub(crate) fn score<F: FeatureValue>(
        &self,
        rows: &[F],
        opts: &PredictOptions,
        out: &mut [f64],
    ) -> Result<()> {
        let stride = self.num_features;
        if !rows.len().is_multiple_of(stride) {
            return Err(GbdtError::Input(format!(
                "{} values is not a whole number of rows of {stride} features",
                rows.len()
            )));
        }
        let nrows = rows.len() / stride;
        let k = self.num_outputs;
        if out.len() != nrows * k {
            return Err(GbdtError::Input(format!(
                "output buffer holds {}, need {}",
                out.len(),
                nrows * k
            )));
        }
        let (trees, iters) = self.tree_range(opts.start_iteration, opts.num_iteration)?;
        let threads = opts.threads.max(1).min(nrows / MIN_ROWS_PER_THREAD).max(1);
        if threads == 1 {
            self.score_serial(rows, stride, trees, iters, opts.output, out);
            return Ok(());
        }
        // Chunks taken from a shared queue, several per thread: when one core is slowed (a
        // busy neighbour, an interrupt), the other takes more chunks instead of waiting for a
        // fixed half. Multiples of 64 rows, the row-group size.
        let chunk = nrows
            .div_ceil(threads * CHUNKS_PER_THREAD)
            .next_multiple_of(64);
        let queue =
            std::sync::Mutex::new(rows.chunks(chunk * stride).zip(out.chunks_mut(chunk * k)));
        let work = || loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((chunk_rows, chunk_out)) = next else {
                break;
            };
            self.score_serial(
                chunk_rows,
                stride,
                trees.clone(),
                iters,
                opts.output,
                chunk_out,
            );
        };
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(work);
            }
            // The calling thread works too: one thread fewer to start.
            work();
        });
        Ok(())
    }

    /// Leaf ids for a batch: `nrows x trees` in the range, row-major.
    pub(crate) fn leaves<F: FeatureValue>(
        &self,
        rows: &[F],
        opts: &PredictOptions,
    ) -> Result<Vec<u32>> {
        let stride = self.num_features;
        if !rows.len().is_multiple_of(stride) {
            return Err(GbdtError::Input(
                "input is not a whole number of rows".into(),
            ));
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
        Transform::Sigmoid { alpha } => out
            .iter_mut()
            .for_each(|x| *x = 1.0 / (1.0 + (-alpha * *x).exp())),
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
        Transform::Hinge => out
            .iter_mut()
            .for_each(|x| *x = if *x > 0.0 { 1.0 } else { 0.0 }),
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
            out.iter_mut()
                .for_each(|x| *x = f64::from((*x as f32 - max).exp() / sum));
        }
        Transform::ArgMax => argmax(out),
        Transform::Exp => out
            .iter_mut()
            .for_each(|x| *x = f64::from((*x as f32).exp())),
        Transform::Log1pExp => out
            .iter_mut()
            .for_each(|x| *x = f64::from((*x as f32).exp().ln_1p())),
        Transform::SignSquare => out.iter_mut().for_each(|x| *x = x.signum() * *x * *x),
        Transform::Hinge => out
            .iter_mut()
            .for_each(|x| *x = if *x > 0.0 { 1.0 } else { 0.0 }),
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
