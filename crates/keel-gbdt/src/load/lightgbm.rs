//! LightGBM text model loader (`save_model` output, versions v3 and v4).

use crate::error::{invalid, Result};
use crate::model::*;
use std::collections::HashMap;

const FMT: &str = "LightGBM";

fn parse_list<T: std::str::FromStr>(
    kv: &HashMap<&str, &str>,
    key: &str,
    tree: usize,
    expect: Option<usize>,
) -> Result<Vec<T>> {
    let raw = kv.get(key).copied().unwrap_or("");
    let mut out = Vec::new();
    for (i, tok) in raw.split_ascii_whitespace().enumerate() {
        if expect.is_some_and(|n| i >= n) {
            return Err(invalid(
                FMT,
                format!(
                    "tree {tree}: `{key}` has more than {} values",
                    expect.unwrap_or(0)
                ),
            ));
        }
        out.push(tok.parse::<T>().map_err(|_| {
            invalid(
                FMT,
                format!("tree {tree}: `{key}` value {i} ({tok:.32}) does not parse"),
            )
        })?);
    }
    if let Some(n) = expect {
        if out.len() != n {
            return Err(invalid(
                FMT,
                format!(
                    "tree {tree}: `{key}` has {} values, expected {n}",
                    out.len()
                ),
            ));
        }
    }
    Ok(out)
}

fn key_values(block: &str) -> HashMap<&str, &str> {
    let mut kv = HashMap::new();
    for line in block.lines() {
        let line = line.trim_end_matches('\r');
        match line.split_once('=') {
            Some((k, v)) => kv.insert(k.trim(), v),
            None => kv.insert(line.trim(), ""),
        };
    }
    kv
}

fn parse_one<T: std::str::FromStr>(kv: &HashMap<&str, &str>, key: &str, tree: usize) -> Result<T> {
    let v = kv
        .get(key)
        .ok_or_else(|| invalid(FMT, format!("tree {tree}: missing `{key}`")))?;
    v.trim()
        .parse()
        .map_err(|_| invalid(FMT, format!("tree {tree}: `{key}={v:.32}` does not parse")))
}

/// Parses a LightGBM text model.
pub(crate) fn load(text: &str) -> Result<Model> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // LightGBM writes this line after the last tree; without it the file was cut short.
    let end = text
        .find("\nend of trees")
        .ok_or_else(|| invalid(FMT, "no `end of trees` line: the file is truncated"))?;
    let body = &text[..end];
    let first_tree = body.find("\nTree=").map_or(body.len(), |i| i + 1);
    let header = key_values(&body[..first_tree]);
    if !header.contains_key("tree") && !header.contains_key("version") {
        return Err(invalid(FMT, "missing the `tree` header"));
    }
    if let Some(v) = header.get("version") {
        if !matches!(v.trim(), "v2" | "v3" | "v4") {
            return Err(crate::model::unsupported(format!(
                "LightGBM model version {v}"
            )));
        }
    }
    let max_feature_idx: usize = parse_one(&header, "max_feature_idx", 0)?;
    let num_features = max_feature_idx
        .checked_add(1)
        .filter(|&n| n <= MAX_FEATURES)
        .ok_or_else(|| invalid(FMT, "max_feature_idx out of range"))?;
    let num_class: usize = parse_one(&header, "num_class", 0)?;
    let per_iter: usize = match header.get("num_tree_per_iteration") {
        Some(_) => parse_one(&header, "num_tree_per_iteration", 0)?,
        None => num_class,
    };
    if per_iter == 0 || per_iter > MAX_OUTPUTS {
        return Err(invalid(FMT, format!("num_tree_per_iteration={per_iter}")));
    }
    let mut b = Builder::new(FMT, Source::LightGbm, num_features, per_iter)?;
    if let Some(names) = header.get("feature_names") {
        let names: Vec<String> = names.split_ascii_whitespace().map(str::to_string).collect();
        if names.len() != num_features {
            return Err(invalid(
                FMT,
                format!("{} feature names for {num_features} features", names.len()),
            ));
        }
        b.model.feature_names = names;
    }
    b.model.average_output = header.contains_key("average_output");
    let objective = header
        .get("objective")
        .copied()
        .unwrap_or("regression")
        .trim()
        .to_string();
    b.model.transform = transform_for(&objective, per_iter)?;
    b.model.objective = objective;

    let trees_text = &body[first_tree..];
    if let Some(sizes) = header.get("tree_sizes") {
        check_tree_sizes(sizes, trees_text)?;
    }
    let mut count = 0usize;
    for (t, block) in trees_text.split("\nTree=").enumerate() {
        let block = if t == 0 {
            block.strip_prefix("Tree=").unwrap_or(block)
        } else {
            block
        };
        if block.trim().is_empty() {
            continue;
        }
        let kv = key_values(block);
        let raw = parse_tree(&kv, t, num_features)?;
        b.push_tree(raw, t % per_iter, 1.0)?;
        count += 1;
        if count.is_multiple_of(per_iter) {
            b.end_iteration();
        }
    }
    if !count.is_multiple_of(per_iter) {
        return Err(invalid(
            FMT,
            format!("{count} trees is not a multiple of {per_iter} trees per iteration"),
        ));
    }
    let mut model = b.finish()?;
    if let Some(pc) = text.rfind("\npandas_categorical:") {
        let line = text[pc + 20..].lines().next().unwrap_or("").trim();
        // Categorical features are those whose `feature_infos` entry is a category list.
        let declared: Option<Vec<usize>> = header.get("feature_infos").map(|infos| {
            infos
                .split_ascii_whitespace()
                .enumerate()
                .filter(|(_, i)| !i.starts_with('[') && *i != "none")
                .map(|(f, _)| f)
                .collect()
        });
        let cats = declared.unwrap_or_else(|| categorical_features(&model));
        apply_pandas_categorical(&mut model, &cats, line)?;
    }
    Ok(model)
}

/// Checks the header's `tree_sizes` (the byte length of each tree's text, which LightGBM writes
/// and its own loader relies on) against the trees in the file: the count and every length must
/// match, so a file cut or spliced between trees is refused instead of loading fewer trees.
fn check_tree_sizes(declared: &str, trees_text: &str) -> Result<()> {
    let declared: Vec<usize> = declared
        .split_ascii_whitespace()
        .map(|v| {
            v.parse()
                .map_err(|_| invalid(FMT, format!("tree_sizes entry `{v:.32}` does not parse")))
        })
        .collect::<Result<_>>()?;
    let mut starts: Vec<usize> = Vec::with_capacity(declared.len());
    if trees_text.starts_with("Tree=") {
        starts.push(0);
    }
    starts.extend(trees_text.match_indices("\nTree=").map(|(i, _)| i + 1));
    if starts.len() != declared.len() {
        return Err(invalid(
            FMT,
            format!(
                "tree_sizes lists {} trees but the file has {}: it is truncated or damaged",
                declared.len(),
                starts.len()
            ),
        ));
    }
    // Each tree runs to the next one; the last to the newline before `end of trees`.
    let ends = starts.iter().skip(1).copied().chain([trees_text.len() + 1]);
    for (t, ((&start, end), &want)) in starts.iter().zip(ends).zip(&declared).enumerate() {
        if end - start != want {
            return Err(invalid(
                FMT,
                format!(
                    "tree {t}: tree_sizes says {want} bytes, the file has {}",
                    end - start
                ),
            ));
        }
    }
    Ok(())
}

/// Squared-error objective names and aliases (the ones `reg_sqrt` applies to).
const L2_NAMES: &[&str] = &[
    "regression",
    "regression_l2",
    "l2",
    "mean_squared_error",
    "mse",
    "l2_root",
    "root_mean_squared_error",
    "rmse",
];
/// Other objectives whose output is the raw score.
const IDENTITY_NAMES: &[&str] = &[
    "regression_l1",
    "l1",
    "mean_absolute_error",
    "mae",
    "huber",
    "fair",
    "quantile",
    "mape",
    "mean_absolute_percentage_error",
    "lambdarank",
    "rank_xendcg",
    "xendcg",
    "xe_ndcg",
    "xe_ndcg_mart",
    "xendcg_mart",
    "custom",
    "none",
    "null",
    "na",
];

fn transform_for(objective: &str, outputs: usize) -> Result<Transform> {
    let mut parts = objective.split_ascii_whitespace();
    let name = parts.next().unwrap_or("regression");
    let mut sigmoid = 1.0;
    let mut sqrt = false;
    for p in parts {
        if let Some(v) = p.strip_prefix("sigmoid:") {
            sigmoid = v
                .parse()
                .map_err(|_| invalid(FMT, format!("objective parameter {p}")))?;
        }
        sqrt |= p == "sqrt";
    }
    Ok(match name {
        "binary" => Transform::Sigmoid { alpha: sigmoid },
        "multiclass" | "softmax" => Transform::Softmax,
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => Transform::Sigmoid { alpha: sigmoid },
        "cross_entropy" | "xentropy" => Transform::Sigmoid { alpha: 1.0 },
        "cross_entropy_lambda" | "xentlambda" => Transform::Log1pExp,
        "poisson" | "gamma" | "tweedie" => Transform::Exp,
        n if L2_NAMES.contains(&n) && sqrt => Transform::SignSquare,
        n if L2_NAMES.contains(&n) || IDENTITY_NAMES.contains(&n) => Transform::Identity,
        other => {
            return Err(crate::model::unsupported(format!(
                "LightGBM objective `{other}` ({outputs} outputs)"
            )))
        }
    })
}

fn parse_tree(kv: &HashMap<&str, &str>, t: usize, num_features: usize) -> Result<RawTree> {
    let num_leaves: usize = parse_one(kv, "num_leaves", t)?;
    if num_leaves == 0 || num_leaves > MAX_NODES / 2 {
        return Err(invalid(FMT, format!("tree {t}: num_leaves={num_leaves}")));
    }
    let leaf_value: Vec<f64> = parse_list(kv, "leaf_value", t, Some(num_leaves))?;
    let leaf_count: Vec<f64> = if kv.contains_key("leaf_count") {
        parse_list(kv, "leaf_count", t, Some(num_leaves))?
    } else {
        vec![0.0; num_leaves]
    };
    let is_linear = kv.get("is_linear").is_some_and(|v| v.trim() == "1");
    let linear = if is_linear {
        Some(parse_linear(kv, t, num_leaves, num_features)?)
    } else {
        None
    };
    let n_internal = num_leaves - 1;
    // Raw node order: internal nodes 0..n_internal, then leaves n_internal..n_internal+num_leaves.
    let mut nodes = Vec::with_capacity(n_internal + num_leaves);
    if n_internal > 0 {
        let split_feature: Vec<usize> = parse_list(kv, "split_feature", t, Some(n_internal))?;
        let threshold: Vec<f64> = parse_list(kv, "threshold", t, Some(n_internal))?;
        let decision_type: Vec<i16> = parse_list(kv, "decision_type", t, Some(n_internal))?;
        let left: Vec<i64> = parse_list(kv, "left_child", t, Some(n_internal))?;
        let right: Vec<i64> = parse_list(kv, "right_child", t, Some(n_internal))?;
        let internal_count: Vec<f64> = if kv.contains_key("internal_count") {
            parse_list(kv, "internal_count", t, Some(n_internal))?
        } else {
            vec![0.0; n_internal]
        };
        let num_cat: usize = kv
            .get("num_cat")
            .map_or(Ok(0), |_| parse_one(kv, "num_cat", t))?;
        let (cat_boundaries, cat_threshold): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
            if num_cat > n_internal {
                return Err(invalid(FMT, format!("tree {t}: num_cat={num_cat}")));
            }
            let cb: Vec<usize> = parse_list(kv, "cat_boundaries", t, Some(num_cat + 1))?;
            let ct: Vec<u32> = parse_list(kv, "cat_threshold", t, None)?;
            if cb.windows(2).any(|w| w[0] > w[1]) || cb.last().is_some_and(|&l| l > ct.len()) {
                return Err(invalid(
                    FMT,
                    format!("tree {t}: cat_boundaries out of bounds"),
                ));
            }
            (cb, ct)
        } else {
            (Vec::new(), Vec::new())
        };
        let child = |c: i64, i: usize| -> Result<usize> {
            if c >= 0 {
                let c = c as usize;
                if c >= n_internal {
                    return Err(invalid(
                        FMT,
                        format!("tree {t}: node {i} has child {c} of {n_internal}"),
                    ));
                }
                Ok(c)
            } else {
                let leaf = (!c) as usize;
                if leaf >= num_leaves {
                    return Err(invalid(
                        FMT,
                        format!("tree {t}: node {i} has leaf {leaf} of {num_leaves}"),
                    ));
                }
                Ok(n_internal + leaf)
            }
        };
        for i in 0..n_internal {
            let dt = decision_type[i];
            let categorical = dt & 1 != 0;
            let default_left = dt & 2 != 0;
            let missing = (dt >> 2) & 3;
            let feature = split_feature[i];
            if feature >= num_features {
                return Err(invalid(
                    FMT,
                    format!("tree {t}: node {i} splits on feature {feature} of {num_features}"),
                ));
            }
            let mut flags = 0u8;
            let (thr, bitset) = if categorical {
                let ci = threshold[i];
                if !(ci >= 0.0 && ci < num_cat as f64) || ci.fract() != 0.0 {
                    return Err(invalid(
                        FMT,
                        format!("tree {t}: node {i}: category set {ci} of {num_cat}"),
                    ));
                }
                let ci = ci as usize;
                let words = cat_threshold[cat_boundaries[ci]..cat_boundaries[ci + 1]].to_vec();
                if words.is_empty() {
                    return Err(invalid(
                        FMT,
                        format!("tree {t}: node {i}: empty category set"),
                    ));
                }
                // NaN, negative and unknown categories go right (second).
                (0.0, Some(words))
            } else {
                let thr = threshold[i];
                match missing {
                    0 => {
                        // None: NaN reads as 0.
                        if 0.0 <= thr {
                            flags |= NAN_FIRST;
                        }
                    }
                    1 => {
                        flags |= ZERO_MISSING;
                        if default_left {
                            flags |= NAN_FIRST | DEFAULT_FIRST;
                        }
                    }
                    2 => {
                        if default_left {
                            flags |= NAN_FIRST;
                        }
                    }
                    _ => {
                        return Err(invalid(
                            FMT,
                            format!("tree {t}: node {i}: decision_type {dt}"),
                        ))
                    }
                }
                if thr.is_nan() {
                    return Err(invalid(FMT, format!("tree {t}: node {i}: NaN threshold")));
                }
                // LightGBM reads |x| <= K as 0. For a threshold in [-K, K) that changes the
                // decision, but only as a shifted plain comparison: with t >= 0, snap(x) <= t
                // iff x <= K; with t < 0, iff x < -K, i.e. x <= the double just below -K.
                let thr = if (-K_ZERO..K_ZERO).contains(&thr) {
                    if thr >= 0.0 {
                        K_ZERO
                    } else {
                        f64::from_bits((-K_ZERO).to_bits() + 1)
                    }
                } else {
                    thr
                };
                (thr, None)
            };
            nodes.push(RawNode::Split {
                feature,
                threshold: thr,
                bitset,
                first: child(left[i], i)?,
                second: child(right[i], i)?,
                flags,
                cover: internal_count[i],
            });
        }
    }
    let mut linear = linear;
    for leaf in 0..num_leaves {
        nodes.push(RawNode::Leaf {
            value: leaf_value[leaf],
            id: leaf as u32,
            linear: linear.as_mut().map(|l| std::mem::take(&mut l[leaf])),
            cover: leaf_count[leaf],
        });
    }
    Ok(RawTree { nodes, root: 0 })
}

fn parse_linear(
    kv: &HashMap<&str, &str>,
    t: usize,
    num_leaves: usize,
    num_features: usize,
) -> Result<Vec<LinearLeaf>> {
    let constants: Vec<f64> = parse_list(kv, "leaf_const", t, Some(num_leaves))?;
    let counts: Vec<usize> = parse_list(kv, "num_features", t, Some(num_leaves))?;
    let total = counts.iter().try_fold(0usize, |a, &c| a.checked_add(c));
    let total = total
        .filter(|&n| n <= num_leaves.saturating_mul(num_features))
        .ok_or_else(|| {
            invalid(
                FMT,
                format!("tree {t}: linear leaves use more features than exist"),
            )
        })?;
    let features: Vec<u32> = parse_list(kv, "leaf_features", t, Some(total))?;
    let coeffs: Vec<f64> = parse_list(kv, "leaf_coeff", t, Some(total))?;
    let mut out = Vec::with_capacity(num_leaves);
    let mut at = 0;
    for (leaf, &c) in counts.iter().enumerate() {
        let f = features[at..at + c].to_vec();
        if f.iter().any(|&x| x as usize >= num_features) {
            return Err(invalid(
                FMT,
                format!("tree {t}: linear leaf {leaf} uses an unknown feature"),
            ));
        }
        out.push(LinearLeaf {
            constant: constants[leaf],
            features: f,
            coeffs: coeffs[at..at + c].to_vec(),
        });
        at += c;
    }
    Ok(out)
}

impl Default for LinearLeaf {
    fn default() -> Self {
        LinearLeaf {
            constant: 0.0,
            features: Vec::new(),
            coeffs: Vec::new(),
        }
    }
}

/// `pandas_categorical:[["a","b"],["x"]]` or `null`: category labels per categorical feature,
/// in feature order.
fn apply_pandas_categorical(model: &mut Model, cat_features: &[usize], line: &str) -> Result<()> {
    if line.is_empty() || line == "null" {
        return Ok(());
    }
    let lists: Vec<Vec<serde_json::Value>> =
        serde_json::from_str(line).map_err(|e| invalid(FMT, format!("pandas_categorical: {e}")))?;
    if lists.len() != cat_features.len() || cat_features.iter().any(|&f| f >= model.num_features) {
        // LightGBM records lists for the pandas categorical columns; when they cannot be matched
        // to the categorical features unambiguously, keep codes only.
        return Ok(());
    }
    for (&f, list) in cat_features.iter().zip(lists) {
        let labels = list
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect();
        model.categories[f] = Some(labels);
    }
    Ok(())
}

/// Features used by a categorical split anywhere in the model, ascending.
pub(crate) fn categorical_features(model: &Model) -> Vec<usize> {
    let mut is_cat = vec![false; model.num_features];
    for n in &model.nodes {
        if n.flags() & LEAF == 0 && n.flags() & CATEGORICAL != 0 {
            is_cat[n.feature()] = true;
        }
    }
    (0..model.num_features).filter(|&f| is_cat[f]).collect()
}
