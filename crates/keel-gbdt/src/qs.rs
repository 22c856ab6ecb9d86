//! Bit-vector scoring: QuickScorer's idea, vectorised over rows, with exact comparisons.
//!
//! Instead of walking each tree from its root, every split node carries a bit mask over its
//! tree's leaves (leaves numbered in depth-first order, first child first) with the leaves of
//! its first subtree cleared. A row starts every tree with all bits set; each split that sends
//! the row to its second child ANDs its mask in; the leaf the walk would reach is then the
//! lowest bit still set. The nodes no longer depend on one another, so there is no chain of
//! dependent loads and no unpredictable branch: the work is a stream of compare-and-mask
//! operations that the compiler turns into SIMD instructions over a block of rows.
//!
//! Comparisons are exact for any input type: plain split thresholds on a feature are replaced
//! by their rank among the feature's distinct thresholds, and a row's value by the number of
//! those thresholds strictly below it (one binary search per feature and row). Then
//! `x > threshold` holds exactly when `rank(x) > rank(threshold)`, and ranks are small integers
//! held exactly in `f32` (`f64` for trees of more than 32 leaves), so one SIMD float compare
//! serves eight (four) rows. NaN reads as `+inf` or `-inf` per node as in the walking scorer.
//! Splits that are not plain (categorical, zero-as-missing, odd thresholds) are evaluated one
//! by one with the general decision and AND their mask the same way.
//!
//! Nodes are grouped in blocks of trees (so one block's masks stay in L1), within a block by
//! feature, within a feature by threshold: a block of rows stops scanning a feature at the first
//! threshold none of its rows exceeds. Leaves are added in tree order, so sums are bit-identical
//! to the walking scorer's.

use crate::model::{Model, Node, Source, CATEGORICAL, CAT_NEG_INVALID, LEAF, NAN_FIRST};
use crate::predict::{read, scratch, FeatureValue};
use crate::scorer::Scorer;
use std::fmt::Debug;
use std::ops::BitAnd;

/// Trees per block are `BLOCK_BYTES / (16 * mask size)`: 128 narrow or 64 wide trees, whose
/// masks for a group of 64 rows take 32 KiB.
const BLOCK_BYTES: usize = 8 * 1024;
/// Cuts per segment of the two-level rank index.
const SEG: usize = 16;
/// Longest coarse index scanned linearly (longer ones are binary-searched).
const LINEAR_COARSE: usize = 64;
/// Splits per step of the single-row prefix tables (see [`Block::dense`]).
const GROUP: usize = 8;
/// Most bytes the single-row prefix tables of a model may take.
const DENSE_BYTES: usize = 64 << 20;
/// Most distinct thresholds per feature for ranks to stay exact in `f32`.
const MAX_CUTS: usize = 1 << 24;

/// A leaf mask: `u32` for trees of up to 32 leaves, `u64` up to 64.
pub(crate) trait Mask:
    Copy + Send + Sync + Debug + PartialEq + BitAnd<Output = Self> + 'static
{
    /// A rank, as the float type the compare runs in (same width as the mask).
    type Rank: Copy + PartialOrd + Send + Sync + Debug + 'static;
    /// All leaves possible.
    const ONES: Self;
    /// No bit set.
    const ZERO: Self;
    /// Most leaves a tree may have.
    const LEAVES: usize;
    /// `i` as a rank (exact below 2^24).
    fn rank(i: usize) -> Self::Rank;
    /// A rank back as an index.
    fn index(r: Self::Rank) -> usize;
    /// The mask from its low bits.
    fn from_u64(b: u64) -> Self;
    /// Index of the lowest set bit.
    fn lowest(self) -> u32;
}

/// The two widths differ only in their types and bit count.
macro_rules! mask {
    ($mask:ty, $rank:ty) => {
        impl Mask for $mask {
            type Rank = $rank;
            const ONES: Self = <$mask>::MAX;
            const ZERO: Self = 0;
            const LEAVES: usize = <$mask>::BITS as usize;
            #[inline(always)]
            fn rank(i: usize) -> $rank {
                i as $rank
            }
            #[inline(always)]
            fn index(r: $rank) -> usize {
                r as usize
            }
            #[inline(always)]
            fn from_u64(b: u64) -> Self {
                b as $mask
            }
            #[inline(always)]
            fn lowest(self) -> u32 {
                self.trailing_zeros()
            }
        }
    };
}
mask!(u32, f32);
mask!(u64, f64);

/// The nodes of a run of consecutive trees.
#[derive(Debug, Clone)]
struct Block<M: Mask> {
    /// First tree (global index) and number of trees.
    first_tree: usize,
    num_trees: usize,
    /// Plain splits by prepared feature `f` (0..2F: NaN taking the second child for `f < F`,
    /// the first for `f >= F`), sorted by threshold rank, with their tables: the rank -> cut
    /// table (for a row rank `r`, the number of the feature's splits with a threshold rank
    /// below `r`, i.e. those `x > threshold` holds for; empty when too large, then `thr` is
    /// binary-searched) and the single-row prefix tables (for `q >= 1`, row `q - 1` holds per
    /// tree of the block the AND of the masks of the feature's first `q * GROUP` splits, so one
    /// row applies a whole prefix with one vector AND over the block's trees and at most
    /// `GROUP - 1` single splits; empty when over [`DENSE_BYTES`]).
    prepared: Prefix<M>,
    /// Per plain split (in `prepared` order): its threshold's rank.
    thr: Vec<M::Rank>,
    /// Single-row tables over each original feature's plain splits of both NaN directions
    /// (see [`Prefix`]): a row whose value is not NaN has one rank for both, so it applies
    /// one prefix per feature instead of two. `None` without prefix tables.
    merged: Option<Prefix<M>>,
    /// Categorical splits whose categories fit a mask (see [`Qs::cat_features`]): the slot of
    /// their feature, the set of categories that go first (plus the NaN bit when NaN goes
    /// first), tree within the block, mask.
    cat: Vec<(u32, M, u16, M)>,
    /// Other splits: node index (in `Model::nodes`), tree within the block, mask.
    special: Vec<(u32, u16, M)>,
}

/// Plain splits grouped by feature and sorted by threshold rank, with their single-row
/// tables: feature `f`'s splits are `feat_ptr[f]..feat_ptr[f + 1]` (`mask`, `tree`), its rank
/// -> cut table starts at `below[below_ptr[f]]` and its prefix table at `dense[dense_ptr[f]]`
/// (layouts as in [`Block`]).
#[derive(Debug, Clone)]
struct Prefix<M: Mask> {
    feat_ptr: Vec<u32>,
    below_ptr: Vec<u32>,
    below: Vec<u32>,
    dense_ptr: Vec<u32>,
    dense: Vec<M>,
    mask: Vec<M>,
    tree: Vec<u16>,
}

impl<M: Mask> Prefix<M> {
    /// Tables over `items` (`(feature, rank, tree, mask)`, sorted by feature then rank) for
    /// `features` features whose cut counts are `cuts(f)`, over a block of `trees` trees.
    fn build(
        items: &[(usize, usize, u16, M)],
        features: usize,
        cuts: impl Fn(usize) -> usize,
        trees: usize,
        (with_below, with_dense): (bool, bool),
    ) -> Option<Prefix<M>> {
        let mut feat_ptr = vec![0u32; features + 1];
        for &(f, ..) in items {
            feat_ptr[f + 1] += 1;
        }
        for f in 0..features {
            feat_ptr[f + 1] += feat_ptr[f];
        }
        let (mut below_ptr, mut below) = (vec![0u32], Vec::new());
        let (mut dense_ptr, mut dense) = (vec![0u32], Vec::new());
        for f in 0..features {
            let nodes = &items[feat_ptr[f] as usize..feat_ptr[f + 1] as usize];
            if with_below {
                below.extend(
                    (0..=cuts(f)).map(|r| nodes.partition_point(|&(_, nr, ..)| nr < r) as u32),
                );
                below_ptr.push(u32::try_from(below.len()).ok()?);
            }
            if !with_dense {
                continue;
            }
            let mut acc = vec![M::ONES; trees];
            for (j, &(_, _, t, mk)) in nodes.iter().enumerate() {
                acc[t as usize] = acc[t as usize] & mk;
                if (j + 1) % GROUP == 0 {
                    dense.extend_from_slice(&acc);
                }
            }
            dense_ptr.push(u32::try_from(dense.len()).ok()?);
        }
        Some(Prefix {
            feat_ptr,
            below_ptr,
            below,
            dense_ptr,
            dense,
            mask: items.iter().map(|&(.., mk)| mk).collect(),
            tree: items.iter().map(|&(_, _, t, _)| t).collect(),
        })
    }

    /// One row (lane 0): ANDs into `masks` the prefix-table row covering the first
    /// `GROUP`-multiple of feature `f`'s first `cut` splits, and returns the index of the first
    /// split it did not cover (the feature's first split when there is no such row).
    #[inline(always)]
    fn apply_dense<const R: usize>(&self, f: usize, cut: usize, masks: &mut [[M; R]]) -> usize {
        let s = self.feat_ptr[f] as usize;
        if cut < GROUP || self.dense.is_empty() {
            return s;
        }
        let q = cut / GROUP;
        let nt = masks.len();
        let off = self.dense_ptr[f] as usize + (q - 1) * nt;
        for (lane, &d) in masks.iter_mut().zip(&self.dense[off..off + nt]) {
            lane[0] = lane[0] & d;
        }
        s + q * GROUP
    }

    /// ANDs into `masks` (one lane per tree of the block) the masks of feature `f`'s splits
    /// whose threshold rank is below `rank`: the prefix-table row covering the first
    /// `GROUP`-multiple of them, then the rest one by one.
    #[inline(always)]
    fn apply_one<const R: usize>(&self, f: usize, rank: usize, masks: &mut [[M; R]]) {
        let s = self.feat_ptr[f] as usize;
        if s == self.feat_ptr[f + 1] as usize {
            return;
        }
        let cut = self.below[self.below_ptr[f] as usize + rank] as usize;
        let from = self.apply_dense(f, cut, masks);
        for (&mk, &t) in self.mask[from..s + cut]
            .iter()
            .zip(&self.tree[from..s + cut])
        {
            debug_assert!((t as usize) < masks.len());
            // SAFETY: every tree index of a block is below its `num_trees` (built so), and
            // `masks` holds `num_trees` lanes.
            let lane = unsafe { masks.get_unchecked_mut(t as usize) };
            lane[0] = lane[0] & mk;
        }
    }
}

/// Per-thread scratch of a row group: ranks (`2F`), one block's masks, categorical codes.
type Scratch<'a, M, const R: usize> = (
    &'a mut [[<M as Mask>::Rank; R]],
    &'a mut [[M; R]],
    &'a mut [[M; R]],
);

/// `R` lanes of a row group, 64-byte aligned.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Lanes<T, const R: usize>([T; R]);

impl<T, const R: usize> Lanes<T, R> {
    /// The lanes as plain arrays (the group loop indexes those); `R` must fill whole lines.
    fn as_arrays(v: &mut [Self]) -> &mut [[T; R]] {
        assert_eq!(
            std::mem::size_of::<Self>(),
            std::mem::size_of::<[T; R]>(),
            "lanes must fill whole cache lines"
        );
        // SAFETY: `Lanes` is `repr(C)` around `[T; R]` and (checked above) has no padding, so
        // a slice of it has the layout of a slice of `[T; R]` with a stricter alignment; the
        // borrow of `v` carries over.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<[T; R]>(), v.len()) }
    }
}

/// Blocks with the mask width the model needs.
#[derive(Debug, Clone)]
enum Blocks {
    Narrow(Vec<Block<u32>>),
    Wide(Vec<Block<u64>>),
}

/// The bit-vector tables of a model (derived at load, never persisted).
#[derive(Debug, Clone)]
pub(crate) struct Qs {
    /// Distinct plain thresholds of original feature `f`, ascending:
    /// `cuts[cut_ptr[f]..cut_ptr[f + 1]]`.
    cut_ptr: Vec<u32>,
    cuts: Vec<f64>,
    /// The last cut of every full run of [`SEG`] cuts of feature `f`:
    /// `coarse[coarse_ptr[f]..coarse_ptr[f + 1]]` (a two-level index for [`Qs::rank`]).
    coarse_ptr: Vec<u32>,
    coarse: Vec<f64>,
    blocks: Blocks,
    /// Leaf `j` of tree `t` is node `leaf_nodes[leaf_base[t] + j]` with value
    /// `leaf_values[leaf_base[t] + j]`.
    leaf_base: Vec<u32>,
    leaf_nodes: Vec<u32>,
    leaf_values: Vec<f64>,
    /// LightGBM without linear leaves: a tree adds its leaf value, nothing else.
    plain_leaves: bool,
    /// Features with vectorised categorical splits; a row's value of each becomes a one-bit
    /// code: category `c` below `bits - 1` is bit `c`, NaN the top bit, anything else (an
    /// invalid category, or one no such split names) no bit.
    cat_features: Vec<u32>,
}

type LeafRanges = (Vec<(u32, u32)>, Vec<u32>);

/// Per node of one tree: leaf ordinal range `[lo, hi)` of its subtree, and the tree's leaves
/// (node indices) in that order.
fn leaf_ranges(m: &Model, root: usize, len: usize) -> Option<LeafRanges> {
    let mut range = vec![(u32::MAX, 0u32); len];
    let mut leaves = Vec::new();
    // (node, children done)
    let mut stack = vec![(root, false)];
    while let Some((i, done)) = stack.pop() {
        let local = i.checked_sub(root).filter(|&l| l < len)?;
        let n = m.nodes[i];
        if n.flags() & LEAF != 0 {
            if range[local].0 != u32::MAX {
                return None; // shared node: not a tree
            }
            let j = leaves.len() as u32;
            range[local] = (j, j + 1);
            leaves.push(i as u32);
            continue;
        }
        if done {
            let a = range[(i + 1).checked_sub(root)?];
            let b = range[(n.second as usize).checked_sub(root)?];
            range[local] = (a.0, b.1);
            continue;
        }
        if range[local].0 != u32::MAX || range[local].1 != 0 {
            return None;
        }
        range[local].1 = 1; // visiting
        stack.push((i, true));
        stack.push((n.second as usize, false));
        stack.push((i + 1, false));
    }
    Some((range, leaves))
}

impl Qs {
    /// Builds the tables, or `None` when the model does not fit them (a tree with more than 64
    /// leaves, a node shared between paths, a feature with too many distinct thresholds).
    pub fn build(m: &Model, fast: &[Node]) -> Option<Qs> {
        let max_leaves = m.trees.iter().map(|t| t.num_leaves).max().unwrap_or(0) as usize;
        if max_leaves <= 32 {
            Self::build_with::<u32>(m, fast, Blocks::Narrow)
        } else if max_leaves <= 64 {
            Self::build_with::<u64>(m, fast, Blocks::Wide)
        } else {
            None
        }
    }

    fn build_with<M: Mask>(
        m: &Model,
        fast: &[Node],
        wrap: fn(Vec<Block<M>>) -> Blocks,
    ) -> Option<Qs> {
        let nf = m.num_features;
        let plain = |i: usize| fast[i].flags() & crate::model::SPECIAL == 0;
        // Distinct thresholds per original feature.
        let mut per_feature: Vec<Vec<f64>> = vec![Vec::new(); nf];
        for (i, n) in fast.iter().enumerate() {
            if n.flags() & LEAF == 0 && plain(i) {
                per_feature[n.feature() % nf].push(n.value);
            }
        }
        let mut cut_ptr = vec![0u32];
        let mut cuts = Vec::new();
        for c in &mut per_feature {
            c.sort_by(f64::total_cmp);
            c.dedup_by(|a, b| a.to_bits() == b.to_bits() || *a == *b);
            if c.len() >= MAX_CUTS {
                return None;
            }
            cuts.extend_from_slice(c);
            cut_ptr.push(u32::try_from(cuts.len()).ok()?);
        }
        let rank_of = |f: usize, v: f64| -> usize {
            let c = &per_feature[f % nf];
            c.partition_point(|&u| u < v)
        };

        let per_block = (BLOCK_BYTES / (16 * std::mem::size_of::<M>())).clamp(1, 1 << 16);
        // Rank -> cut tables cost (cuts + 1) per prepared feature and block; kept when that is
        // within a few times the node count, otherwise cuts are found by binary search.
        let blocks_n = m.trees.len().div_ceil(per_block);
        let table = blocks_n.saturating_mul(2 * (cuts.len() + nf));
        let with_below = table <= 4 * m.nodes.len() + (1 << 16);
        let dense_len = (m.nodes.len() / GROUP).saturating_mul(per_block.min(m.trees.len()));
        // Twice: per prepared feature and merged over both NaN directions.
        let with_dense = dense_len.saturating_mul(2 * std::mem::size_of::<M>()) <= DENSE_BYTES;
        let mut blocks = Vec::new();
        let mut leaf_base = Vec::with_capacity(m.trees.len());
        let mut leaf_nodes = Vec::new();
        let mut cat_features: Vec<u32> = Vec::new();
        let neg_invalid = m.source == Source::XgBoost;
        let nan_bit = 1u64 << (M::LEAVES - 1);
        // A categorical split is vectorised when its set fits below the NaN bit and its rule
        // for negative values is the model's.
        let cat_set = |i: usize| -> Option<u64> {
            let n = m.nodes[i];
            let flags = n.flags();
            if flags & CATEGORICAL == 0 || (flags & CAT_NEG_INVALID != 0) != neg_invalid {
                return None;
            }
            let (off, words) = n.bitset();
            let mut set = 0u64;
            for w in 0..words {
                let word = *m.cat_bits.get(off + w)?;
                if word == 0 {
                    continue;
                }
                let top = w * 32 + 31 - word.leading_zeros() as usize;
                if top >= M::LEAVES - 1 {
                    return None;
                }
                set |= u64::from(word) << (w * 32);
            }
            Some(set | if flags & NAN_FIRST != 0 { nan_bit } else { 0 })
        };
        for (b0, chunk) in m.trees.chunks(per_block).enumerate() {
            let first_tree = b0 * per_block;
            // (feature', rank, tree, mask)
            let mut items: Vec<(usize, usize, u16, M)> = Vec::new();
            let mut special = Vec::new();
            let mut cat = Vec::new();
            for (local, t) in chunk.iter().enumerate() {
                let root = t.root as usize;
                let (ranges, leaves) = leaf_ranges(m, root, t.len as usize)?;
                if leaves.len() > M::LEAVES {
                    return None;
                }
                leaf_base.push(u32::try_from(leaf_nodes.len()).ok()?);
                leaf_nodes.extend_from_slice(&leaves);
                for (off, &(lo, _)) in ranges.iter().enumerate() {
                    let i = root + off;
                    if lo == u32::MAX || m.nodes[i].flags() & LEAF != 0 {
                        continue; // unreachable or a leaf
                    }
                    // Clear the first subtree's leaves.
                    let (flo, fhi) = ranges[off + 1];
                    let bits = if fhi - flo >= 64 {
                        0
                    } else {
                        ((1u64 << (fhi - flo)) - 1) << flo
                    };
                    let mask = M::from_u64(!bits);
                    let tree = local as u16;
                    if plain(i) {
                        let f = fast[i].feature();
                        items.push((f, rank_of(f, fast[i].value), tree, mask));
                    } else if let Some(set) = cat_set(i) {
                        let f = m.nodes[i].feature() as u32;
                        let slot = match cat_features.iter().position(|&c| c == f) {
                            Some(p) => p,
                            None => {
                                cat_features.push(f);
                                cat_features.len() - 1
                            }
                        };
                        cat.push((slot as u32, M::from_u64(set), tree, mask));
                    } else {
                        special.push((i as u32, tree, mask));
                    }
                }
            }
            items.sort_by_key(|&(f, r, t, _)| (f, r, t));
            cat.sort_by_key(|&(slot, _, t, _)| (slot, t));
            let prepared = Prefix::build(
                &items,
                2 * nf,
                |f| per_feature[f % nf].len(),
                chunk.len(),
                (with_below, with_dense),
            )?;
            // Merged tables (both NaN directions of a feature, ranks are shared): only with
            // prefix tables, whose budget they share.
            let merged = if with_below && with_dense {
                let mut both: Vec<(usize, usize, u16, M)> = items
                    .iter()
                    .map(|&(f, r, t, mk)| (f % nf, r, t, mk))
                    .collect();
                both.sort_by_key(|&(f, r, t, _)| (f, r, t));
                Prefix::build(
                    &both,
                    nf,
                    |f| per_feature[f].len(),
                    chunk.len(),
                    (true, true),
                )
            } else {
                None
            };
            blocks.push(Block {
                merged,
                first_tree,
                num_trees: chunk.len(),
                prepared,
                thr: items.iter().map(|&(_, r, ..)| M::rank(r)).collect(),
                cat,
                special,
            });
        }
        leaf_base.push(u32::try_from(leaf_nodes.len()).ok()?);
        let mut coarse_ptr = vec![0u32];
        let mut coarse = Vec::new();
        for c in &per_feature {
            coarse.extend(c.chunks_exact(SEG).map(|seg| seg[SEG - 1]));
            coarse_ptr.push(u32::try_from(coarse.len()).ok()?);
        }
        let leaf_values = leaf_nodes
            .iter()
            .map(|&i| m.nodes[i as usize].value)
            .collect();
        let plain_leaves = m.source == Source::LightGbm && m.linear.is_empty();
        Some(Qs {
            cut_ptr,
            cuts,
            coarse_ptr,
            coarse,
            blocks: wrap(blocks),
            leaf_base,
            leaf_nodes,
            leaf_values,
            plain_leaves,
            cat_features,
        })
    }
}

impl Qs {
    /// The number of feature `f`'s distinct thresholds strictly below `x` (not NaN): whole
    /// segments from the coarse index, then one segment, both by branch-free counting (short
    /// loops the compiler vectorises; a long coarse index is binary-searched).
    #[inline(always)]
    fn rank(&self, f: usize, x: f64) -> usize {
        let c = &self.cuts[self.cut_ptr[f] as usize..self.cut_ptr[f + 1] as usize];
        let coarse = &self.coarse[self.coarse_ptr[f] as usize..self.coarse_ptr[f + 1] as usize];
        let full = if coarse.len() <= LINEAR_COARSE {
            coarse.iter().map(|&u| usize::from(u < x)).sum::<usize>()
        } else {
            coarse.partition_point(|&u| u < x)
        };
        let start = full * SEG;
        let seg = &c[start..(start + SEG).min(c.len())];
        start + seg.iter().map(|&u| usize::from(u < x)).sum::<usize>()
    }
}

impl Scorer {
    /// Raw scores (added to `out`, which holds the base margins, `num_outputs` per row) of
    /// `nrows` rows (`stride` values each) through every tree, by bit vectors. `false` when the
    /// model has no bit-vector tables (the caller walks instead). Allocates nothing for a single
    /// row of up to 256 features.
    pub(crate) fn qs_raw<F: FeatureValue>(
        &self,
        rows: &[F],
        nrows: usize,
        stride: usize,
        out: &mut [f64],
    ) -> bool {
        let Some(qs) = self.qs.as_deref() else {
            return false;
        };
        let xgb = self.source == Source::XgBoost;
        match (&qs.blocks, xgb) {
            (Blocks::Narrow(b), false) => {
                self.qs_dispatch::<u32, false, F>(qs, b, rows, nrows, stride, out)
            }
            (Blocks::Narrow(b), true) => {
                self.qs_dispatch::<u32, true, F>(qs, b, rows, nrows, stride, out)
            }
            (Blocks::Wide(b), false) => {
                self.qs_dispatch::<u64, false, F>(qs, b, rows, nrows, stride, out)
            }
            (Blocks::Wide(b), true) => {
                self.qs_dispatch::<u64, true, F>(qs, b, rows, nrows, stride, out)
            }
        }
        true
    }

    fn qs_dispatch<M: Mask, const XGB: bool, F: FeatureValue>(
        &self,
        qs: &Qs,
        blocks: &[Block<M>],
        rows: &[F],
        nrows: usize,
        stride: usize,
        out: &mut [f64],
    ) {
        if nrows == 1 {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    unsafe { self.qs_one_avx2::<M, XGB, F>(qs, blocks, rows, out) };
                    return;
                }
            }
            self.qs_one::<M, XGB, F>(qs, blocks, rows, out);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: the CPU supports AVX (checked just above).
                unsafe { self.qs_rows_avx::<M, XGB, F>(qs, blocks, rows, nrows, stride, out) };
                return;
            }
        }
        self.qs_rows::<M, XGB, F>(qs, blocks, rows, nrows, stride, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn qs_one_avx2<M: Mask, const XGB: bool, F: FeatureValue>(
        &self,
        qs: &Qs,
        blocks: &[Block<M>],
        row: &[F],
        out: &mut [f64],
    ) {
        self.qs_one::<M, XGB, F>(qs, blocks, row, out);
    }

    /// One row: scratch on the stack when it fits (sized to the model, so a narrow model
    /// does not clear a wide model's scratch on every call).
    #[inline(always)]
    fn qs_one<M: Mask, const XGB: bool, F: FeatureValue>(
        &self,
        qs: &Qs,
        blocks: &[Block<M>],
        row: &[F],
        out: &mut [f64],
    ) {
        let need = 2 * self.num_features;
        if need <= 32 {
            self.qs_one_in::<M, XGB, F, 32>(qs, blocks, row, out)
        } else if need <= 128 {
            self.qs_one_in::<M, XGB, F, 128>(qs, blocks, row, out)
        } else if need <= 512 {
            self.qs_one_in::<M, XGB, F, 512>(qs, blocks, row, out)
        } else {
            self.qs_one_in::<M, XGB, F, 0>(qs, blocks, row, out)
        }
    }

    /// [`Model::qs_one`] with room for `N` prepared features on the stack (0: on the heap).
    #[inline(always)]
    fn qs_one_in<M: Mask, const XGB: bool, F: FeatureValue, const N: usize>(
        &self,
        qs: &Qs,
        blocks: &[Block<M>],
        row: &[F],
        out: &mut [f64],
    ) {
        const STACK_TREES: usize = 128;
        const STACK_CATS: usize = 16;
        let nf = self.num_features;
        let per_block = blocks.iter().map(|b| b.num_trees).max().unwrap_or(0);
        let (mut rank_stack, mut rank_heap) = ([[M::rank(0); 1]; N], Vec::new());
        let (mut mask_stack, mut mask_heap) = ([[M::ONES; 1]; STACK_TREES], Vec::new());
        let (mut code_stack, mut code_heap) = ([[M::ZERO; 1]; STACK_CATS], Vec::new());
        let ncat = qs.cat_features.len();
        let work = (
            scratch(&mut rank_stack, &mut rank_heap, 2 * nf, [M::rank(0); 1]),
            scratch(&mut mask_stack, &mut mask_heap, per_block, [M::ONES; 1]),
            scratch(&mut code_stack, &mut code_heap, ncat, [M::ZERO; 1]),
        );
        self.qs_group::<M, XGB, F, 1>(qs, blocks, row, &[0], nf, out, work);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    unsafe fn qs_rows_avx<M: Mask, const XGB: bool, F: FeatureValue>(
        &self,
        qs: &Qs,
        blocks: &[Block<M>],
        rows: &[F],
        nrows: usize,
        stride: usize,
        out: &mut [f64],
    ) {
        self.qs_rows::<M, XGB, F>(qs, blocks, rows, nrows, stride, out);
    }

    /// Groups of `R` rows.
    #[inline(always)]
    fn qs_rows<M: Mask, const XGB: bool, F: FeatureValue>(
        &self,
        qs: &Qs,
        blocks: &[Block<M>],
        rows: &[F],
        nrows: usize,
        stride: usize,
        out: &mut [f64],
    ) {
        const R: usize = 64;
        let k = self.num_outputs;
        let per_block = blocks.iter().map(|b| b.num_trees).max().unwrap_or(0);
        // Every lane on its own cache lines: where the allocator puts the scratch must not
        // decide whether each 32-byte load of a lane straddles two lines (it did: 15% on two
        // threads when another library's allocations shifted the heap).
        let mut ranks_buf = vec![Lanes([M::rank(0); R]); 2 * self.num_features];
        let mut masks_buf = vec![Lanes([M::ONES; R]); per_block];
        let mut codes_buf = vec![Lanes([M::ZERO; R]); qs.cat_features.len()];
        let ranks = Lanes::as_arrays(&mut ranks_buf);
        let masks = Lanes::as_arrays(&mut masks_buf);
        let codes = Lanes::as_arrays(&mut codes_buf);
        let mut start = 0;
        while start < nrows {
            let n = R.min(nrows - start);
            // A short last group repeats its first row; those results are dropped.
            let mut idx = [start; R];
            for (j, v) in idx.iter_mut().enumerate().take(n) {
                *v = start + j;
            }
            if n == R {
                let o = &mut out[start * k..(start + R) * k];
                let work = (&mut ranks[..], &mut masks[..], &mut codes[..]);
                self.qs_group::<M, XGB, F, R>(qs, blocks, rows, &idx, stride, o, work);
            } else {
                let mut tmp = vec![0.0; R * k];
                for (j, &i) in idx.iter().enumerate() {
                    tmp[j * k..(j + 1) * k].copy_from_slice(&out[i * k..(i + 1) * k]);
                }
                let work = (&mut ranks[..], &mut masks[..], &mut codes[..]);
                self.qs_group::<M, XGB, F, R>(qs, blocks, rows, &idx, stride, &mut tmp, work);
                out[start * k..(start + n) * k].copy_from_slice(&tmp[..n * k]);
            }
            start += n;
        }
    }

    /// Scores the `R` rows `idx` of `rows` into `out` (`R x num_outputs`, holding base margins),
    /// with scratch for `2F` ranks, one block's masks and the categorical codes.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn qs_group<M: Mask, const XGB: bool, F: FeatureValue, const R: usize>(
        &self,
        qs: &Qs,
        blocks: &[Block<M>],
        rows: &[F],
        idx: &[usize; R],
        stride: usize,
        out: &mut [f64],
        scratch: Scratch<'_, M, R>,
    ) {
        let (ranks, masks, codes) = scratch;
        let nf = self.num_features;
        let k = self.num_outputs;
        let nan_bit = M::from_u64(1u64 << (M::LEAVES - 1));
        let top_cat = (M::LEAVES - 1) as f64;
        for (slot, &f) in qs.cat_features.iter().enumerate() {
            for (r, &i) in idx.iter().enumerate() {
                let x = read::<XGB, F>(rows[i * stride + f as usize]);
                let c = x.trunc();
                codes[slot][r] = if x.is_nan() {
                    nan_bit
                } else if (XGB && x < 0.0) || !(c >= 0.0 && c < top_cat) {
                    M::ZERO
                } else {
                    M::from_u64(1u64 << (c as u32))
                };
            }
        }
        // Ranks of every row's features: prepared feature f (0..2F) holds R ranks.
        for f in 0..nf {
            for (r, &i) in idx.iter().enumerate() {
                let x = read::<XGB, F>(rows[i * stride + f]);
                let (hi, lo) = if x.is_nan() {
                    (qs.rank(f, f64::INFINITY), 0)
                } else {
                    let p = qs.rank(f, x);
                    (p, p)
                };
                ranks[f][r] = M::rank(hi);
                ranks[nf + f][r] = M::rank(lo);
            }
        }
        for b in blocks {
            let masks = &mut masks[..b.num_trees];
            masks.fill([M::ONES; R]);
            let merged = b.merged.as_ref().filter(|_| R == 1);
            if let Some(merged) = merged {
                // One row: a feature whose value is not NaN has one rank for both NaN
                // directions, so one merged prefix covers all of its plain splits.
                for f in 0..nf {
                    let (hi, lo) = (M::index(ranks[f][0]), M::index(ranks[nf + f][0]));
                    if hi == lo {
                        merged.apply_one(f, hi, masks);
                    } else {
                        b.prepared.apply_one(f, hi, masks);
                        b.prepared.apply_one(nf + f, lo, masks);
                    }
                }
            }
            for (f, &x) in ranks.iter().enumerate().filter(|_| merged.is_none()) {
                let (s, e) = (
                    b.prepared.feat_ptr[f] as usize,
                    b.prepared.feat_ptr[f + 1] as usize,
                );
                if s == e {
                    continue;
                }
                let mut top = x[0];
                for &v in &x[1..] {
                    if v > top {
                        top = v;
                    }
                }
                let cut = if b.prepared.below.is_empty() {
                    b.thr[s..e].partition_point(|&v| v < top)
                } else {
                    b.prepared.below[b.prepared.below_ptr[f] as usize + M::index(top)] as usize
                };
                // One row: a whole prefix of GROUP-split steps from the prefix table.
                let from = if R == 1 {
                    b.prepared.apply_dense(f, cut, masks)
                } else {
                    s
                };
                for ((&v, &mk), &t) in b.thr[from..s + cut]
                    .iter()
                    .zip(&b.prepared.mask[from..s + cut])
                    .zip(&b.prepared.tree[from..s + cut])
                {
                    debug_assert!((t as usize) < masks.len());
                    // SAFETY: every tree index of a block is below its `num_trees` (built so),
                    // and `masks` holds `num_trees` lanes.
                    let lane = unsafe { masks.get_unchecked_mut(t as usize) };
                    if R == 1 {
                        // One row: every split below the cut sends it second.
                        lane[0] = lane[0] & mk;
                    } else {
                        for r in 0..R {
                            lane[r] = lane[r] & if x[r] > v { mk } else { M::ONES };
                        }
                    }
                }
            }
            for &(slot, set, t, mk) in &b.cat {
                let code = codes[slot as usize];
                let lane = &mut masks[t as usize];
                for r in 0..R {
                    lane[r] = lane[r]
                        & if code[r] & set == M::ZERO {
                            mk
                        } else {
                            M::ONES
                        };
                }
            }
            for &(node, t, mk) in &b.special {
                let n = self.nodes[node as usize];
                let lane = &mut masks[t as usize];
                for (r, &i) in idx.iter().enumerate() {
                    let x = read::<XGB, F>(rows[i * stride + n.feature()]);
                    if !self.decide_special(n, x) {
                        lane[r] = lane[r] & mk;
                    }
                }
            }
            if qs.plain_leaves && R == 1 && k == 1 {
                // One row, one output: sum in a register, still in tree order.
                let mut acc = out[0];
                for (lt, lane) in masks.iter().enumerate() {
                    let base = qs.leaf_base[b.first_tree + lt] as usize;
                    acc += qs.leaf_values[base + lane[0].lowest() as usize];
                }
                out[0] = acc;
                continue;
            }
            for (lt, lane) in masks.iter().enumerate() {
                let t = b.first_tree + lt;
                let base = qs.leaf_base[t] as usize;
                let meta = &self.trees[t];
                let g = meta.group as usize;
                if qs.plain_leaves {
                    for r in 0..R {
                        out[r * k + g] += qs.leaf_values[base + lane[r].lowest() as usize];
                    }
                } else {
                    for (r, &i) in idx.iter().enumerate() {
                        let leaf = qs.leaf_nodes[base + lane[r].lowest() as usize];
                        let row = &rows[i * stride..i * stride + nf];
                        self.accumulate::<XGB, F>(meta, leaf, row, &mut out[r * k + g]);
                    }
                }
            }
        }
    }
}
