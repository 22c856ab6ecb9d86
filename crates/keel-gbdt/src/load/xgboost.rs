//! XGBoost JSON / UBJSON model loader (`save_model` of XGBoost 2.x and 3.x, gbtree and dart).

use crate::error::{invalid, Result};
use crate::model::*;
use serde_json::Value;

const FMT: &str = "XGBoost";

fn field<'a>(v: &'a Value, path: &[&str]) -> Result<&'a Value> {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        cur = cur
            .get(k)
            .ok_or_else(|| invalid(FMT, format!("missing `{}`", path[..=i].join("."))))?;
    }
    Ok(cur)
}

/// XGBoost 2.x writes bare `NaN` (not JSON) as the split condition of categorical nodes.
/// Rewrites every `NaN` token outside strings to `null`; borrows when there is none.
pub(crate) fn sanitize_json(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !bytes.windows(3).any(|w| w == b"NaN") {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let (mut in_str, mut escaped, mut i) = (false, false, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if bytes[i..].starts_with(b"NaN") {
            out.extend_from_slice(b"null");
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// A number written as a JSON number or as a string (XGBoost writes parameters as strings);
/// `null` (a sanitised `NaN`) reads as NaN.
fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Null => Some(f64::NAN),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn usize_of(v: &Value, what: &str) -> Result<usize> {
    num(v)
        .filter(|x| *x >= 0.0 && x.fract() == 0.0 && *x < 1e15)
        .map(|x| x as usize)
        .ok_or_else(|| invalid(FMT, format!("`{what}` is not a count")))
}

fn array<'a>(v: &'a Value, key: &str, tree: usize) -> Result<&'a Vec<Value>> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(FMT, format!("tree {tree}: missing array `{key}`")))
}

fn nums(v: &Value, key: &str, tree: usize, len: Option<usize>) -> Result<Vec<f64>> {
    let a = array(v, key, tree)?;
    if let Some(n) = len {
        if a.len() != n {
            return Err(invalid(
                FMT,
                format!("tree {tree}: `{key}` has {} entries, expected {n}", a.len()),
            ));
        }
    }
    a.iter()
        .enumerate()
        .map(|(i, x)| {
            num(x).ok_or_else(|| invalid(FMT, format!("tree {tree}: `{key}`[{i}] is not a number")))
        })
        .collect()
}

fn ints(v: &Value, key: &str, tree: usize, len: Option<usize>) -> Result<Vec<i64>> {
    nums(v, key, tree, len)?
        .into_iter()
        .enumerate()
        .map(|(i, x)| {
            if x.fract() == 0.0 && x.abs() < 9e15 {
                Ok(x as i64)
            } else {
                Err(invalid(
                    FMT,
                    format!("tree {tree}: `{key}`[{i}] is not an integer"),
                ))
            }
        })
        .collect()
}

/// The largest float32 strictly below `t`: `x < t` equals `x <= prev_f32(t)` for float32 `x`.
fn prev_f32(t: f32) -> f64 {
    if t.is_nan() || t == f32::NEG_INFINITY {
        return f64::NAN; // nothing compares below; `x <= NaN` is false
    }
    if t == 0.0 {
        return f64::from(-f32::from_bits(1));
    }
    let bits = t.to_bits();
    let prev = if t > 0.0 {
        f32::from_bits(bits - 1)
    } else {
        f32::from_bits(bits + 1)
    };
    f64::from(prev)
}

fn parse_base_score(v: &Value) -> Result<Vec<f32>> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => {
            return a
                .iter()
                .map(|x| {
                    num(x)
                        .map(|x| x as f32)
                        .ok_or_else(|| invalid(FMT, "base_score entry"))
                })
                .collect()
        }
        _ => return Err(invalid(FMT, "base_score is not a number")),
    };
    let inner = s.trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f32>()
                .map_err(|_| invalid(FMT, format!("base_score `{s:.40}`")))
        })
        .collect()
}

/// Objective name -> (transform, how base_score becomes a margin).
fn objective(name: &str) -> Result<(Transform, Margin)> {
    Ok(match name {
        "binary:logistic" | "reg:logistic" => (Transform::Sigmoid { alpha: 1.0 }, Margin::Logit),
        "binary:logitraw" => (Transform::Identity, Margin::Identity),
        "binary:hinge" => (Transform::Hinge, Margin::Identity),
        "multi:softprob" => (Transform::Softmax, Margin::Identity),
        "multi:softmax" => (Transform::ArgMax, Margin::Identity),
        "count:poisson" | "reg:gamma" | "reg:tweedie" | "survival:cox" => {
            (Transform::Exp, Margin::Log)
        }
        "reg:squarederror"
        | "reg:linear"
        | "reg:squaredlogerror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror"
        | "rank:pairwise"
        | "rank:ndcg"
        | "rank:map" => (Transform::Identity, Margin::Identity),
        other => return Err(unsupported(format!("XGBoost objective `{other}`"))),
    })
}

#[derive(Clone, Copy)]
enum Margin {
    Identity,
    Logit,
    Log,
}

impl Margin {
    fn apply(self, p: f32) -> f32 {
        match self {
            Margin::Identity => p,
            Margin::Logit => -(1.0f32 / p - 1.0f32).ln(),
            Margin::Log => p.ln(),
        }
    }
}

/// Loads an XGBoost model from its parsed JSON (or UBJSON) document.
pub(crate) fn load_value(doc: &Value) -> Result<Model> {
    let learner = field(doc, &["learner"])?;
    let lmp = field(learner, &["learner_model_param"])?;
    let num_features = usize_of(field(lmp, &["num_feature"])?, "num_feature")?;
    let num_class = lmp
        .get("num_class")
        .map_or(Ok(0), |v| usize_of(v, "num_class"))?;
    let num_target = lmp
        .get("num_target")
        .map_or(Ok(1), |v| usize_of(v, "num_target"))?;
    let outputs = if num_class > 0 {
        num_class
    } else {
        num_target.max(1)
    };
    let obj_name = field(learner, &["objective", "name"])?
        .as_str()
        .ok_or_else(|| invalid(FMT, "objective.name is not a string"))?
        .to_string();
    let (transform, margin) = objective(&obj_name)?;

    let gb = field(learner, &["gradient_booster"])?;
    let gb_name = gb.get("name").and_then(Value::as_str).unwrap_or("gbtree");
    let (model_v, weights) = match gb_name {
        "gbtree" => (field(gb, &["model"])?, None),
        "dart" => {
            let w = nums(gb, "weight_drop", 0, None)?;
            (field(gb, &["gbtree", "model"])?, Some(w))
        }
        other => return Err(unsupported(format!("XGBoost booster `{other}`"))),
    };
    let trees = model_v
        .get("trees")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(FMT, "missing trees"))?;
    let tree_info = ints(model_v, "tree_info", 0, Some(trees.len()))?;
    // The declared tree count must match the trees present (a spliced or cut document is refused).
    if let Some(v) = model_v
        .get("gbtree_model_param")
        .and_then(|p| p.get("num_trees"))
    {
        let declared = usize_of(v, "num_trees")?;
        if declared != trees.len() {
            return Err(invalid(
                FMT,
                format!(
                    "num_trees is {declared} but {} trees are present",
                    trees.len()
                ),
            ));
        }
    }
    if let Some(w) = &weights {
        if w.len() != trees.len() {
            return Err(invalid(
                FMT,
                format!("{} DART weights for {} trees", w.len(), trees.len()),
            ));
        }
    }
    let parallel = model_v
        .get("gbtree_model_param")
        .and_then(|p| p.get("num_parallel_tree"))
        .map_or(Ok(1), |v| usize_of(v, "num_parallel_tree"))?
        .max(1);
    let indptr: Vec<usize> = match model_v.get("iteration_indptr") {
        Some(_) => ints(model_v, "iteration_indptr", 0, None)?
            .into_iter()
            .map(|x| usize::try_from(x).map_err(|_| invalid(FMT, "negative iteration_indptr")))
            .collect::<Result<_>>()?,
        None => {
            let per = outputs * parallel;
            if !trees.len().is_multiple_of(per) {
                return Err(invalid(
                    FMT,
                    format!("{} trees is not a multiple of {per}", trees.len()),
                ));
            }
            (0..=trees.len() / per).map(|i| i * per).collect()
        }
    };
    if indptr.first() != Some(&0)
        || indptr.last() != Some(&trees.len())
        || indptr.windows(2).any(|w| w[0] > w[1])
    {
        return Err(invalid(FMT, "iteration_indptr does not cover the trees"));
    }

    let mut b = Builder::new(FMT, Source::XgBoost, num_features, outputs)?;
    b.model.transform = transform;
    b.model.objective = obj_name;
    let base = parse_base_score(field(lmp, &["base_score"])?)?;
    b.model.base_margin = match base.len() {
        1 => vec![f64::from(margin.apply(base[0])); outputs],
        n if n == outputs => base.iter().map(|&p| f64::from(margin.apply(p))).collect(),
        n => {
            return Err(invalid(
                FMT,
                format!("{n} base scores for {outputs} outputs"),
            ))
        }
    };
    if let Some(names) = learner.get("feature_names").and_then(Value::as_array) {
        if names.len() == num_features {
            b.model.feature_names = names
                .iter()
                .map(|n| n.as_str().unwrap_or_default().to_string())
                .collect();
        } else if !names.is_empty() {
            return Err(invalid(
                FMT,
                format!("{} feature names for {num_features} features", names.len()),
            ));
        }
    }
    let mut it = 1;
    for (t, tree) in trees.iter().enumerate() {
        let group = usize::try_from(tree_info[t])
            .ok()
            .filter(|&g| g < outputs)
            .ok_or_else(|| {
                invalid(
                    FMT,
                    format!("tree {t}: tree_info {} of {outputs} outputs", tree_info[t]),
                )
            })?;
        let raw = parse_tree(tree, t, num_features)?;
        let w = weights.as_ref().map_or(1.0, |w| f64::from(w[t] as f32));
        b.push_tree(raw, group, w)?;
        while it < indptr.len() && indptr[it] == t + 1 {
            b.end_iteration();
            it += 1;
        }
    }
    if trees.is_empty() {
        for _ in 1..indptr.len() {
            b.end_iteration();
        }
    }
    b.finish()
}

fn parse_tree(tree: &Value, t: usize, num_features: usize) -> Result<RawTree> {
    if let Some(p) = tree.get("tree_param") {
        if let Some(v) = p.get("size_leaf_vector") {
            if num(v).unwrap_or(1.0) > 1.0 {
                return Err(unsupported("XGBoost multi-target (vector-leaf) trees"));
            }
        }
    }
    let left = ints(tree, "left_children", t, None)?;
    let n = left.len();
    if n == 0 || n > MAX_NODES {
        return Err(invalid(FMT, format!("tree {t}: {n} nodes")));
    }
    let right = ints(tree, "right_children", t, Some(n))?;
    let split_index = ints(tree, "split_indices", t, Some(n))?;
    let cond = nums(tree, "split_conditions", t, Some(n))?;
    let default_left = ints(tree, "default_left", t, Some(n))?;
    let hess = if tree.get("sum_hessian").is_some() {
        nums(tree, "sum_hessian", t, Some(n))?
    } else {
        vec![0.0; n]
    };
    let split_type = if tree.get("split_type").is_some() {
        ints(tree, "split_type", t, Some(n))?
    } else {
        vec![0; n]
    };
    let mut bitsets: Vec<Option<Vec<u32>>> = vec![None; n];
    if split_type.contains(&1) {
        let cats = ints(tree, "categories", t, None)?;
        let nodes = ints(tree, "categories_nodes", t, None)?;
        let segs = ints(tree, "categories_segments", t, Some(nodes.len()))?;
        let sizes = ints(tree, "categories_sizes", t, Some(nodes.len()))?;
        for k in 0..nodes.len() {
            let (node, seg, size) = (nodes[k], segs[k], sizes[k]);
            if node < 0
                || node as usize >= n
                || seg < 0
                || size < 0
                || (seg + size) as usize > cats.len()
            {
                return Err(invalid(
                    FMT,
                    format!("tree {t}: categorical split table entry {k} out of range"),
                ));
            }
            let set = &cats[seg as usize..(seg + size) as usize];
            let max = set.iter().copied().max().unwrap_or(0);
            if set.iter().any(|&c| c < 0) || max as usize >= MAX_BITSET_WORDS * 32 {
                return Err(invalid(
                    FMT,
                    format!("tree {t}: category out of range at node {node}"),
                ));
            }
            let mut bits = vec![0u32; max as usize / 32 + 1];
            for &c in set {
                bits[c as usize / 32] |= 1 << (c % 32);
            }
            bitsets[node as usize] = Some(bits);
        }
    }
    let child = |c: i64, i: usize| -> Result<usize> {
        usize::try_from(c)
            .ok()
            .filter(|&c| c < n)
            .ok_or_else(|| invalid(FMT, format!("tree {t}: node {i} has child {c} of {n}")))
    };
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        if left[i] == -1 {
            nodes.push(RawNode::Leaf {
                value: f64::from(cond[i] as f32),
                id: i as u32,
                linear: None,
                cover: hess[i],
            });
            continue;
        }
        let feature = usize::try_from(split_index[i])
            .ok()
            .filter(|&f| f < num_features)
            .ok_or_else(|| {
                invalid(
                    FMT,
                    format!("tree {t}: node {i} splits on feature {}", split_index[i]),
                )
            })?;
        let (l, r) = (child(left[i], i)?, child(right[i], i)?);
        let dl = default_left[i] != 0;
        let node = if split_type[i] == 1 {
            let bits = bitsets[i].take().ok_or_else(|| {
                invalid(
                    FMT,
                    format!("tree {t}: categorical node {i} has no category set"),
                )
            })?;
            // In the set goes right in XGBoost: make the right child the first.
            RawNode::Split {
                feature,
                threshold: 0.0,
                bitset: Some(bits),
                first: r,
                second: l,
                flags: CAT_NEG_INVALID | if dl { 0 } else { NAN_FIRST },
                cover: hess[i],
            }
        } else {
            RawNode::Split {
                feature,
                threshold: prev_f32(cond[i] as f32),
                bitset: None,
                first: l,
                second: r,
                flags: if dl { NAN_FIRST } else { 0 },
                cover: hess[i],
            }
        };
        nodes.push(node);
    }
    Ok(RawTree { nodes, root: 0 })
}

/// Parses XGBoost's JSON format into the IR.
pub(crate) fn load_json(bytes: &[u8]) -> Result<Model> {
    let doc: Value = serde_json::from_slice(&sanitize_json(bytes))?;
    load_value(&doc)
}

/// Parses XGBoost's UBJSON format into the IR.
pub(crate) fn load_ubjson(bytes: &[u8]) -> Result<Model> {
    load_value(&super::ubjson::parse(bytes)?)
}
