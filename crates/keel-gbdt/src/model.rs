//! The internal representation every loader translates into, and its validation.
//!
//! # Layout
//! All trees' nodes live in one vector, each tree contiguous and in pre-order, so a split's
//! first child is the next node and only the second child's index is stored. A node is 16 bytes:
//!
//! | field | split node | leaf |
//! |---|---|---|
//! | `value: f64` | threshold (`x <= value` goes first); for categorical splits the bitset's `(offset << 32) \| len` as bits | the leaf value |
//! | `word: u32` | bits 0..24 feature index, bits 24..32 [flags](self#flags) | bits 0..24 linear-model index when `LINEAR`, flags |
//! | `second: u32` | index of the second child | the id reported by leaf prediction (LightGBM leaf ordinal, XGBoost node id) |
//!
//! # Flags
//! `LEAF`; `NAN_FIRST` (a NaN goes to the first child); `CATEGORICAL` (a category in the bitset
//! goes first; NaN per `NAN_FIRST`; negative, out-of-range and non-finite categories go second);
//! `CAT_NEG_INVALID` (XGBoost: any value below zero is an invalid category, so -0.5 is not
//! category 0 as it is for LightGBM's truncation); `ZERO_MISSING` (LightGBM missing type Zero:
//! |x| <= 1e-35f goes the default way, `DEFAULT_FIRST`); `LINEAR` (leaf with a linear model);
//! `GENERAL` (only in the derived scoring table: take the general decision path).
//!
//! LightGBM reads |x| <= 1e-35f as 0 before comparing. That matters only for thresholds inside
//! that band, and there it is equivalent to a shifted plain threshold, so the loader rewrites
//! those thresholds and no node needs a flag for it.
//!
//! Both libraries' semantics normalise to "first child when `x <= threshold`": XGBoost's
//! `x < t` on float32 becomes `x <= prev_f32(t)` once `x` is rounded to float32, which the
//! scorer does for XGBoost models.

use crate::error::{invalid, GbdtError, Result};
use serde::{Deserialize, Serialize};

pub(crate) const LEAF: u8 = 1;
pub(crate) const NAN_FIRST: u8 = 2;
pub(crate) const CATEGORICAL: u8 = 4;
pub(crate) const ZERO_MISSING: u8 = 8;
pub(crate) const DEFAULT_FIRST: u8 = 16;
pub(crate) const GENERAL: u8 = 32;
pub(crate) const CAT_NEG_INVALID: u8 = 64;
pub(crate) const LINEAR: u8 = 128;
/// Flags that need the general decision path.
pub(crate) const SPECIAL: u8 = CATEGORICAL | ZERO_MISSING | GENERAL;
pub(crate) const FEATURE_MASK: u32 = 0x00FF_FFFF;

/// LightGBM's `kZeroThreshold` (`1e-35f`, a float widened to double).
pub(crate) const K_ZERO: f64 = 1e-35_f32 as f64;

/// Most features a model may use (the scorer addresses `2 * MAX_FEATURES` prepared values).
pub const MAX_FEATURES: usize = 1 << 23;
/// Deepest tree accepted (root at depth 0).
pub const MAX_DEPTH: usize = 512;
/// Most nodes accepted in one model.
pub const MAX_NODES: usize = 1 << 28;
/// Most outputs (classes) accepted.
pub const MAX_OUTPUTS: usize = 1 << 16;
/// Most 32-bit words in one categorical bitset (2^20 categories).
pub const MAX_BITSET_WORDS: usize = 1 << 15;
/// Most 32-bit bitset words in one model (64 MiB).
pub const MAX_TOTAL_BITSET_WORDS: usize = 1 << 24;

/// One node; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Node {
    pub value: f64,
    pub word: u32,
    pub second: u32,
}

impl Node {
    #[inline(always)]
    pub fn flags(self) -> u8 {
        (self.word >> 24) as u8
    }
    #[inline(always)]
    pub fn feature(self) -> usize {
        (self.word & FEATURE_MASK) as usize
    }
    #[inline(always)]
    pub fn bitset(self) -> (usize, usize) {
        let b = self.value.to_bits();
        ((b >> 32) as usize, (b & 0xFFFF_FFFF) as usize)
    }
}

/// Where the model came from; fixes the arithmetic that reproduces the library's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Source {
    /// LightGBM: double-precision inputs, thresholds and sums.
    LightGbm,
    /// XGBoost: inputs rounded to float32, float32 sums.
    XgBoost,
}

/// The output transform applied to raw scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Transform {
    /// Raw score as is.
    Identity,
    /// `1 / (1 + exp(-alpha * x))` per output.
    Sigmoid {
        /// LightGBM's `sigmoid` parameter; 1 for XGBoost.
        alpha: f64,
    },
    /// Softmax across outputs.
    Softmax,
    /// Index of the largest output (XGBoost `multi:softmax`).
    ArgMax,
    /// `exp(x)`.
    Exp,
    /// `log(1 + exp(x))` (LightGBM `cross_entropy_lambda`).
    Log1pExp,
    /// `sign(x) * x^2` (LightGBM regression with `reg_sqrt`).
    SignSquare,
    /// `1` when `x > 0`, else `0` (XGBoost `binary:hinge`).
    Hinge,
}

/// A linear model in a leaf (LightGBM `linear_tree`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LinearLeaf {
    pub constant: f64,
    pub features: Vec<u32>,
    pub coeffs: Vec<f64>,
}

/// Per-tree facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TreeMeta {
    /// Index of the root in `nodes`; the tree spans `root..root + len`.
    pub root: u32,
    pub len: u32,
    /// Output (class) this tree adds to.
    pub group: u32,
    /// Multiplier for the leaf value (XGBoost DART `weight_drop`; 1 otherwise).
    pub weight: f64,
    pub depth: u32,
    pub num_leaves: u32,
}

/// A GBDT model in keel's internal representation (see the [module docs](self)).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Model {
    pub source: Source,
    pub num_features: usize,
    pub feature_names: Vec<String>,
    pub num_outputs: usize,
    pub objective: String,
    pub transform: Transform,
    /// Added to each output's raw sum before the transform (XGBoost base margin).
    pub base_margin: Vec<f64>,
    /// Divide raw sums by the number of iterations used (LightGBM random forest).
    pub average_output: bool,
    pub nodes: Vec<Node>,
    /// Cover of each node (data count or hessian sum), for TreeSHAP.
    pub covers: Vec<f64>,
    pub trees: Vec<TreeMeta>,
    /// Trees of iteration `i` are `iteration_ptr[i]..iteration_ptr[i + 1]`.
    pub iteration_ptr: Vec<u32>,
    pub cat_bits: Vec<u32>,
    pub linear: Vec<LinearLeaf>,
    /// Per feature: category labels when the model was trained on pandas categoricals.
    pub categories: Vec<Option<Vec<String>>>,
}

impl PartialEq for Model {
    /// Equal when every field is (node values compared by bits).
    fn eq(&self, o: &Model) -> bool {
        let nodes_eq = self.nodes.len() == o.nodes.len()
            && self.nodes.iter().zip(&o.nodes).all(|(a, b)| {
                a.value.to_bits() == b.value.to_bits() && a.word == b.word && a.second == b.second
            });
        nodes_eq
            && self.source == o.source
            && self.num_features == o.num_features
            && self.feature_names == o.feature_names
            && self.num_outputs == o.num_outputs
            && self.objective == o.objective
            && self.transform == o.transform
            && self.base_margin == o.base_margin
            && self.average_output == o.average_output
            && self.covers == o.covers
            && self.trees == o.trees
            && self.iteration_ptr == o.iteration_ptr
            && self.cat_bits == o.cat_bits
            && self.linear == o.linear
            && self.categories == o.categories
    }
}

impl Model {
    /// Checks every structural invariant; run after translation and after decoding, so the
    /// scorer can index without further checks failing.
    pub fn validate(&self, format: &'static str) -> Result<()> {
        let bad = |what: String| Err(invalid(format, what));
        if self.num_features == 0 || self.num_features > MAX_FEATURES {
            return bad(format!(
                "{} features (1..={MAX_FEATURES} supported)",
                self.num_features
            ));
        }
        if self.feature_names.len() != self.num_features {
            return bad(format!(
                "{} feature names for {} features",
                self.feature_names.len(),
                self.num_features
            ));
        }
        if self.categories.len() != self.num_features {
            return bad("category table does not match the feature count".into());
        }
        if self.num_outputs == 0 || self.num_outputs > MAX_OUTPUTS {
            return bad(format!("{} outputs", self.num_outputs));
        }
        if self.base_margin.len() != self.num_outputs {
            return bad(format!(
                "{} base margins for {} outputs",
                self.base_margin.len(),
                self.num_outputs
            ));
        }
        if self.nodes.len() > MAX_NODES || self.covers.len() != self.nodes.len() {
            return bad("node table too large or covers mismatched".into());
        }
        // NaN would score (or explain) every row it touches as NaN without a word.
        if self.base_margin.iter().any(|b| b.is_nan()) {
            return bad("a base score is NaN".into());
        }
        if self.covers.iter().any(|c| c.is_nan()) {
            return bad("a node's cover (hessian sum) is NaN".into());
        }
        if self.iteration_ptr.first() != Some(&0)
            || self.iteration_ptr.last().map(|&l| l as usize) != Some(self.trees.len())
            || self.iteration_ptr.windows(2).any(|w| w[0] > w[1])
        {
            return bad("iteration boundaries are not a partition of the trees".into());
        }
        let mut expected_root = 0usize;
        for (t, tree) in self.trees.iter().enumerate() {
            let (root, len) = (tree.root as usize, tree.len as usize);
            if root != expected_root || len == 0 || root + len > self.nodes.len() {
                return bad(format!(
                    "tree {t}: node range {root}+{len} is not contiguous"
                ));
            }
            expected_root = root + len;
            if tree.group as usize >= self.num_outputs {
                return bad(format!(
                    "tree {t}: output {} of {}",
                    tree.group, self.num_outputs
                ));
            }
            if !tree.weight.is_finite() {
                return bad(format!("tree {t}: weight {}", tree.weight));
            }
            self.validate_tree(t, root, len)
                .map_err(|w| invalid(format, w))?;
        }
        if expected_root != self.nodes.len() {
            return bad("nodes outside every tree".into());
        }
        for (i, l) in self.linear.iter().enumerate() {
            if l.features.len() != l.coeffs.len()
                || l.features.iter().any(|&f| f as usize >= self.num_features)
            {
                return bad(format!("linear leaf model {i} has bad features"));
            }
        }
        Ok(())
    }

    /// Walks one tree from its root: every node reached exactly once, children inside the tree,
    /// depth bounded, features and bitsets in range.
    fn validate_tree(&self, t: usize, root: usize, len: usize) -> Result<(), String> {
        let end = root + len;
        let mut seen = vec![false; len];
        let mut stack = vec![(root, 0usize)];
        let mut leaves = 0usize;
        let mut depth_max = 0usize;
        while let Some((i, depth)) = stack.pop() {
            if i < root || i >= end {
                return Err(format!("tree {t}: child {i} outside the tree"));
            }
            if std::mem::replace(&mut seen[i - root], true) {
                return Err(format!(
                    "tree {t}: node {} reached twice (cycle or shared child)",
                    i - root
                ));
            }
            if depth > MAX_DEPTH {
                return Err(format!("tree {t}: deeper than {MAX_DEPTH}"));
            }
            depth_max = depth_max.max(depth);
            let n = self.nodes[i];
            let flags = n.flags();
            if flags & LEAF != 0 {
                leaves += 1;
                if n.value.is_nan() {
                    return Err(format!("tree {t}: leaf {} has a NaN value", i - root));
                }
                if flags & LINEAR != 0 && n.feature() >= self.linear.len() {
                    return Err(format!(
                        "tree {t}: leaf {} names a missing linear model",
                        i - root
                    ));
                }
                continue;
            }
            if n.feature() >= self.num_features {
                return Err(format!(
                    "tree {t}: node {} splits on feature {} of {}",
                    i - root,
                    n.feature(),
                    self.num_features
                ));
            }
            if flags & CATEGORICAL == 0 && n.value.is_nan() {
                return Err(format!("tree {t}: node {} has a NaN threshold", i - root));
            }
            if flags & CATEGORICAL != 0 {
                let (off, words) = n.bitset();
                if words == 0 || words > MAX_BITSET_WORDS || off + words > self.cat_bits.len() {
                    return Err(format!(
                        "tree {t}: node {} has a bitset out of bounds",
                        i - root
                    ));
                }
            }
            stack.push((i + 1, depth + 1));
            stack.push((n.second as usize, depth + 1));
        }
        if seen.iter().any(|s| !s) {
            return Err(format!("tree {t}: unreachable nodes"));
        }
        let meta = &self.trees[t];
        if meta.depth as usize != depth_max || meta.num_leaves as usize != leaves {
            return Err(format!("tree {t}: recorded depth or leaf count is wrong"));
        }
        Ok(())
    }
}

/// A tree as a loader reads it, before flattening: any node order, explicit children.
#[derive(Debug, Default)]
pub(crate) struct RawTree {
    pub nodes: Vec<RawNode>,
    pub root: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum RawNode {
    Leaf {
        value: f64,
        id: u32,
        linear: Option<LinearLeaf>,
        cover: f64,
    },
    Split {
        feature: usize,
        /// Threshold for numerical splits: first child when `x <= threshold`.
        threshold: f64,
        /// Bitset for categorical splits: first child when the category is in it.
        bitset: Option<Vec<u32>>,
        first: usize,
        second: usize,
        flags: u8,
        cover: f64,
    },
}

/// Appends trees to a model under construction, flattening each into pre-order.
pub(crate) struct Builder {
    pub model: Model,
    format: &'static str,
}

impl Builder {
    pub fn new(
        format: &'static str,
        source: Source,
        num_features: usize,
        num_outputs: usize,
    ) -> Result<Self> {
        if num_features == 0 || num_features > MAX_FEATURES {
            return Err(invalid(format, format!("{num_features} features")));
        }
        if num_outputs == 0 || num_outputs > MAX_OUTPUTS {
            return Err(invalid(format, format!("{num_outputs} outputs")));
        }
        Ok(Builder {
            model: Model {
                source,
                num_features,
                feature_names: (0..num_features).map(|i| format!("f{i}")).collect(),
                num_outputs,
                objective: String::new(),
                transform: Transform::Identity,
                base_margin: vec![0.0; num_outputs],
                average_output: false,
                nodes: Vec::new(),
                covers: Vec::new(),
                trees: Vec::new(),
                iteration_ptr: vec![0],
                cat_bits: Vec::new(),
                linear: Vec::new(),
                categories: vec![None; num_features],
            },
            format,
        })
    }

    /// Flattens `raw` into the model as the next tree.
    pub fn push_tree(&mut self, raw: RawTree, group: usize, weight: f64) -> Result<()> {
        let t = self.model.trees.len();
        let fmt = self.format;
        if group >= self.model.num_outputs {
            return Err(invalid(
                fmt,
                format!("tree {t}: output {group} of {}", self.model.num_outputs),
            ));
        }
        if raw.nodes.is_empty() || raw.root >= raw.nodes.len() {
            return Err(invalid(fmt, format!("tree {t}: empty")));
        }
        if self.model.nodes.len() + raw.nodes.len() > MAX_NODES {
            return Err(invalid(fmt, "too many nodes"));
        }
        let base = self.model.nodes.len();
        let mut seen = vec![false; raw.nodes.len()];
        // (raw index, depth, parent's flat index whose `second` must point here, or usize::MAX)
        let mut stack = vec![(raw.root, 0usize, usize::MAX)];
        let (mut depth_max, mut leaves) = (0usize, 0usize);
        while let Some((ri, depth, patch)) = stack.pop() {
            let Some(node) = raw.nodes.get(ri) else {
                return Err(invalid(fmt, format!("tree {t}: child {ri} out of range")));
            };
            if std::mem::replace(&mut seen[ri], true) {
                return Err(invalid(
                    fmt,
                    format!("tree {t}: node {ri} reached twice (cycle or shared child)"),
                ));
            }
            if depth > MAX_DEPTH {
                return Err(invalid(fmt, format!("tree {t}: deeper than {MAX_DEPTH}")));
            }
            depth_max = depth_max.max(depth);
            let here = self.model.nodes.len();
            if patch != usize::MAX {
                self.model.nodes[patch].second = (here) as u32;
            }
            match node {
                RawNode::Leaf {
                    value,
                    id,
                    linear,
                    cover,
                } => {
                    leaves += 1;
                    let mut word = u32::from(LEAF) << 24;
                    if let Some(l) = linear {
                        let idx = self.model.linear.len();
                        if idx > FEATURE_MASK as usize {
                            return Err(invalid(fmt, "too many linear leaves"));
                        }
                        self.model.linear.push(l.clone());
                        word |= (u32::from(LINEAR) << 24) | idx as u32;
                    }
                    self.model.nodes.push(Node {
                        value: *value,
                        word,
                        second: *id,
                    });
                    self.model.covers.push(*cover);
                }
                RawNode::Split {
                    feature,
                    threshold,
                    bitset,
                    first,
                    second,
                    flags,
                    cover,
                } => {
                    if *feature >= self.model.num_features {
                        return Err(invalid(
                            fmt,
                            format!(
                                "tree {t}: node {ri} splits on feature {feature} of {}",
                                self.model.num_features
                            ),
                        ));
                    }
                    let mut flags = *flags & !(LEAF | LINEAR);
                    let value = match bitset {
                        Some(bits) => {
                            if bits.is_empty() || bits.len() > MAX_BITSET_WORDS {
                                return Err(invalid(
                                    fmt,
                                    format!("tree {t}: node {ri}: bitset of {} words", bits.len()),
                                ));
                            }
                            flags |= CATEGORICAL;
                            let off = self.model.cat_bits.len();
                            if off + bits.len() > MAX_TOTAL_BITSET_WORDS {
                                return Err(invalid(fmt, "categorical bitsets exceed 64 MiB"));
                            }
                            self.model.cat_bits.extend_from_slice(bits);
                            f64::from_bits(((off as u64) << 32) | bits.len() as u64)
                        }
                        None => {
                            flags &= !CATEGORICAL;
                            *threshold
                        }
                    };
                    self.model.nodes.push(Node {
                        value,
                        word: (u32::from(flags) << 24) | *feature as u32,
                        second: u32::MAX,
                    });
                    self.model.covers.push(*cover);
                    // Pop order: first child next (pre-order), then the second.
                    stack.push((*second, depth + 1, here));
                    stack.push((*first, depth + 1, usize::MAX));
                }
            }
        }
        if seen.iter().any(|s| !s) {
            return Err(invalid(fmt, format!("tree {t}: unreachable nodes")));
        }
        let len = self.model.nodes.len() - base;
        self.model.trees.push(TreeMeta {
            root: base as u32,
            len: len as u32,
            group: group as u32,
            weight,
            depth: depth_max as u32,
            num_leaves: leaves as u32,
        });
        Ok(())
    }

    pub fn end_iteration(&mut self) {
        self.model.iteration_ptr.push(self.model.trees.len() as u32);
    }

    pub fn finish(self) -> Result<Model> {
        self.model.validate(self.format)?;
        Ok(self.model)
    }
}

pub(crate) fn unsupported(what: impl Into<String>) -> GbdtError {
    GbdtError::Unsupported(what.into())
}
