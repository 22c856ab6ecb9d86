//! TreeSHAP (Lundberg et al., "Consistent Individualized Feature Attribution for Tree
//! Ensembles", algorithm 2): exact Shapley values of a tree's output in polynomial time, using
//! each node's cover (LightGBM: data counts; XGBoost: hessian sums) as the background weights.

use crate::error::{GbdtError, Result};
use crate::model::*;
use crate::predict::FeatureValue;

/// One element of a unique path.
#[derive(Clone, Copy, Default)]
pub(crate) struct PathElem {
    feature: i64,
    zero: f64,
    one: f64,
    weight: f64,
}

fn extend(path: &mut [PathElem], depth: usize, zero: f64, one: f64, feature: i64) {
    path[depth] = PathElem {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let d1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / d1;
        path[i].weight = zero * path[i].weight * (depth - i) as f64 / d1;
    }
}

fn unwind(path: &mut [PathElem], depth: usize, index: usize) {
    let (one, zero) = (path[index].one, path[index].zero);
    let d1 = (depth + 1) as f64;
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].weight;
            path[i].weight = next * d1 / ((i + 1) as f64 * one);
            next = tmp - path[i].weight * zero * (depth - i) as f64 / d1;
        } else {
            path[i].weight = path[i].weight * d1 / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

fn unwound_sum(path: &[PathElem], depth: usize, index: usize) -> f64 {
    let (one, zero) = (path[index].one, path[index].zero);
    let d1 = (depth + 1) as f64;
    let mut next = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = next * d1 / ((i + 1) as f64 * one);
            total += tmp;
            next = path[i].weight - tmp * zero * ((depth - i) as f64 / d1);
        } else {
            total += (path[i].weight / zero) / ((depth - i) as f64 / d1);
        }
    }
    total
}

struct Ctx<'a, F> {
    model: &'a Model,
    row: &'a [F],
    phi: &'a mut [f64],
    scale: f64,
    xgb: bool,
}

impl<F: FeatureValue> Ctx<'_, F> {
    fn hot_first(&self, n: Node) -> bool {
        let mut x = self.row[n.feature()].to_f64();
        if self.xgb {
            x = x as f32 as f64;
        }
        self.model.goes_first(n, x)
    }

    /// `parent` is the parent's unique path (its length is this node's depth); `scratch` has
    /// room for this level and every level below.
    fn recurse(
        &mut self,
        node: usize,
        parent: &[PathElem],
        scratch: &mut [PathElem],
        zero: f64,
        one: f64,
        feature: i64,
    ) {
        let mut depth = parent.len();
        let (path, rest) = scratch.split_at_mut(depth + 1);
        path[..depth].copy_from_slice(parent);
        extend(path, depth, zero, one, feature);
        let n = self.model.nodes[node];
        if n.flags() & LEAF != 0 {
            let v = n.value * self.scale;
            for i in 1..=depth {
                let w = unwound_sum(path, depth, i);
                let el = path[i];
                self.phi[el.feature as usize] += w * (el.one - el.zero) * v;
            }
            return;
        }
        let (first, second) = (node + 1, n.second as usize);
        let (hot, cold) = if self.hot_first(n) {
            (first, second)
        } else {
            (second, first)
        };
        let covers = &self.model.covers;
        let w = covers[node];
        let hot_zero = covers[hot] / w;
        let cold_zero = covers[cold] / w;
        let (mut in_zero, mut in_one) = (1.0, 1.0);
        let f = n.feature() as i64;
        if let Some(k) = (1..=depth).find(|&k| path[k].feature == f) {
            in_zero = path[k].zero;
            in_one = path[k].one;
            unwind(path, depth, k);
            depth -= 1;
        }
        let path = &path[..depth + 1];
        self.recurse(hot, path, rest, hot_zero * in_zero, in_one, f);
        self.recurse(cold, path, rest, cold_zero * in_zero, 0.0, f);
    }
}

/// Expected value of a tree under its covers: LightGBM sums leaves weighted by their share of
/// the root's count; XGBoost averages children recursively by cover.
fn expected_value(model: &Model, root: usize) -> f64 {
    let n = model.nodes[root];
    if n.flags() & LEAF != 0 {
        return n.value;
    }
    match model.source {
        Source::XgBoost => {
            let (a, b) = (root + 1, n.second as usize);
            let (ca, cb) = (model.covers[a], model.covers[b]);
            (ca * expected_value(model, a) + cb * expected_value(model, b)) / model.covers[root]
        }
        _ => {
            let total = model.covers[root];
            let mut sum = 0.0;
            let mut stack = vec![root];
            let mut leaves = Vec::new();
            while let Some(i) = stack.pop() {
                let m = model.nodes[i];
                if m.flags() & LEAF != 0 {
                    leaves.push(i);
                } else {
                    stack.push(m.second as usize);
                    stack.push(i + 1);
                }
            }
            // LightGBM sums in leaf-ordinal order.
            leaves.sort_by_key(|&i| model.nodes[i].second);
            for i in leaves {
                sum += (model.covers[i] / total) * model.nodes[i].value;
            }
            sum
        }
    }
}

/// SHAP values of one row into `out`: `num_outputs` blocks of `num_features + 1`, bias last.
pub(crate) fn contributions<F: FeatureValue>(
    model: &Model,
    row: &[F],
    trees: std::ops::Range<usize>,
    scratch: &mut Vec<PathElem>,
    out: &mut [f64],
) -> Result<()> {
    if !model.linear.is_empty() {
        return Err(GbdtError::Unsupported(
            "SHAP contributions for linear trees".into(),
        ));
    }
    let width = model.num_features + 1;
    out.iter_mut().for_each(|x| *x = 0.0);
    let xgb = model.source == Source::XgBoost;
    if xgb {
        for g in 0..model.num_outputs {
            out[g * width + model.num_features] = model.base_margin[g];
        }
    }
    let max_depth = model.trees[trees.clone()]
        .iter()
        .map(|t| t.depth as usize)
        .max()
        .unwrap_or(0);
    let need = (max_depth + 2) * (max_depth + 3) / 2;
    if scratch.len() < need {
        scratch.resize(need, PathElem::default());
    }
    for t in &model.trees[trees] {
        let g = t.group as usize;
        let root = t.root as usize;
        let block = &mut out[g * width..(g + 1) * width];
        block[model.num_features] += expected_value(model, root) * t.weight;
        if model.nodes[root].flags() & LEAF != 0 {
            continue;
        }
        let mut ctx = Ctx {
            model,
            row,
            phi: block,
            scale: t.weight,
            xgb,
        };
        ctx.recurse(root, &[], scratch.as_mut_slice(), 1.0, 1.0, -1);
    }
    Ok(())
}
