//! The fitting side: learns a [`FittedPipeline`] from training data. Behind the `fit` feature.

use std::collections::{BTreeMap, HashMap};

use keel_core::{Field, Frame, Schema};

use crate::pipeline::{run_chain, Cell, FittedColumn, FittedPipeline, FittedStep, InputKind};
use crate::spec::{Impute, Spec, Step};
use crate::{Result, TransformError, MAX_HASH};

impl Spec {
    /// Fits every column's chain on `frame` (training rows only) and freezes the result.
    ///
    /// Each step is fitted on the output of the fitted steps before it, computed by the same
    /// code that serving runs. Missing values (NaN, nulls) are ignored by every statistic.
    pub fn fit(&self, frame: &Frame) -> Result<FittedPipeline> {
        let mut fields: Vec<Field> = Vec::new();
        let mut columns = Vec::with_capacity(self.columns.len());
        let mut outputs: Vec<String> = Vec::new();
        for cs in &self.columns {
            let col = frame
                .column(&cs.column)
                .map_err(|_| TransformError::MissingColumn(cs.column.clone()))?;
            let field = frame
                .schema()
                .field(&cs.column)
                .cloned()
                .ok_or_else(|| TransformError::MissingColumn(cs.column.clone()))?;
            let input = match fields.iter().position(|f| f.name == field.name) {
                Some(i) => i,
                None => {
                    fields.push(field.clone());
                    fields.len() - 1
                }
            };
            let kind = InputKind::of(field.dtype);
            let spec_err = |reason: String| TransformError::Spec {
                column: cs.column.clone(),
                reason,
            };
            let mut steps: Vec<FittedStep> = Vec::with_capacity(cs.steps.len());
            let mut width = 1;
            let mut names: Option<Vec<String>> = None;
            let mut cur_kind = kind;
            for (i, step) in cs.steps.iter().enumerate() {
                if step.is_encoder() && i + 1 != cs.steps.len() {
                    return Err(spec_err(format!("{} must be the last step", step.name())));
                }
                // Values entering this step, through the steps fitted so far.
                let mut nums: Vec<f64> = Vec::new();
                let mut labels: Vec<String> = Vec::new();
                for r in 0..frame.nrows() {
                    match run_chain(&cs.column, &steps, Cell::from_value(col.get(r)))? {
                        Cell::Missing => {}
                        Cell::Num(x) => nums.push(x),
                        Cell::Label(l) => labels.push(l.into_owned()),
                    }
                }
                let needs_number = |what: &str| -> Result<()> {
                    if cur_kind == InputKind::Label {
                        return Err(spec_err(format!("{what} needs a numeric column")));
                    }
                    Ok(())
                };
                let fitted = match step {
                    Step::Impute { strategy } => match (strategy, cur_kind) {
                        (Impute::Mean, InputKind::Number) => {
                            FittedStep::ImputeNumber(mean(&nums).ok_or_else(|| all_missing(cs))?)
                        }
                        (Impute::Median, InputKind::Number) => FittedStep::ImputeNumber(
                            percentile(&sorted(nums), 50.0).ok_or_else(|| all_missing(cs))?,
                        ),
                        (Impute::MostFrequent, InputKind::Number) => FittedStep::ImputeNumber(
                            most_frequent_num(&nums).ok_or_else(|| all_missing(cs))?,
                        ),
                        (Impute::MostFrequent, InputKind::Label) => FittedStep::ImputeLabel(
                            most_frequent_label(&labels).ok_or_else(|| all_missing(cs))?,
                        ),
                        (Impute::Constant(v), InputKind::Number) if v.is_finite() => {
                            FittedStep::ImputeNumber(*v)
                        }
                        (Impute::ConstantLabel(s), InputKind::Label) => {
                            FittedStep::ImputeLabel(s.clone())
                        }
                        (s, k) => {
                            return Err(spec_err(format!(
                                "impute {s:?} does not apply to a {k:?} column"
                            )))
                        }
                    },
                    Step::Standardize => {
                        needs_number("standardize")?;
                        let m = mean(&nums).ok_or_else(|| all_missing(cs))?;
                        let var =
                            nums.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / nums.len() as f64;
                        // scikit-learn's test for a constant feature (var within rounding of 0).
                        let n = nums.len() as f64;
                        let eps = f64::EPSILON;
                        let constant = var <= n * eps * var + (n * m * eps).powi(2);
                        let scale = if constant { 1.0 } else { var.sqrt() };
                        FittedStep::Center {
                            center: m,
                            scale: nonzero(scale),
                        }
                    }
                    Step::MinMax => {
                        needs_number("min_max")?;
                        let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = nums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        if nums.is_empty() {
                            return Err(all_missing(cs));
                        }
                        let mul = 1.0 / nonzero(hi - lo);
                        FittedStep::MulAdd {
                            mul,
                            add: 0.0 - lo * mul,
                        }
                    }
                    Step::RobustScale { q_low, q_high } => {
                        needs_number("robust_scale")?;
                        if !(0.0..=100.0).contains(q_low)
                            || !(0.0..=100.0).contains(q_high)
                            || q_low >= q_high
                        {
                            return Err(spec_err(
                                "robust_scale needs 0 <= q_low < q_high <= 100".into(),
                            ));
                        }
                        let s = sorted(nums);
                        let center = percentile(&s, 50.0).ok_or_else(|| all_missing(cs))?;
                        let lo = percentile(&s, *q_low).unwrap_or(center);
                        let hi = percentile(&s, *q_high).unwrap_or(center);
                        FittedStep::Center {
                            center,
                            scale: nonzero(hi - lo),
                        }
                    }
                    Step::Log1p => {
                        needs_number("log1p")?;
                        FittedStep::Log1p
                    }
                    Step::Clip { min, max } => {
                        needs_number("clip")?;
                        let (lo, hi) = (
                            min.unwrap_or(f64::NEG_INFINITY),
                            max.unwrap_or(f64::INFINITY),
                        );
                        if lo.is_nan() || hi.is_nan() || lo > hi {
                            return Err(spec_err("clip needs min <= max".into()));
                        }
                        FittedStep::Clip { min: lo, max: hi }
                    }
                    Step::QuantileBucket { n_bins } => {
                        needs_number("quantile_bucket")?;
                        if !(2..=10_000).contains(n_bins) {
                            return Err(spec_err("quantile_bucket needs 2..=10000 bins".into()));
                        }
                        FittedStep::Bucket {
                            edges: quantile_edges(&sorted(nums), *n_bins)
                                .ok_or_else(|| all_missing(cs))?,
                        }
                    }
                    Step::OneHot {
                        max_categories,
                        unknown,
                    } => {
                        let labels = encoder_labels(cur_kind, nums, labels);
                        let counts = count(&labels);
                        let mut categories: Vec<String> = counts.keys().cloned().collect();
                        let mut infrequent = None;
                        if let Some(m) = *max_categories {
                            if m == 0 {
                                return Err(spec_err("max_categories must be at least 1".into()));
                            }
                            if m < categories.len() {
                                // Stable ascending sort by count over sorted categories: the
                                // first n - (m - 1) are infrequent (ties: smaller label first).
                                let mut order: Vec<usize> = (0..categories.len()).collect();
                                order.sort_by_key(|&i| counts[&categories[i]]);
                                let cut = categories.len() - (m - 1);
                                let mut inf: Vec<String> = order[..cut]
                                    .iter()
                                    .map(|&i| categories[i].clone())
                                    .collect();
                                let mut freq: Vec<String> = order[cut..]
                                    .iter()
                                    .map(|&i| categories[i].clone())
                                    .collect();
                                inf.sort();
                                freq.sort();
                                categories = freq;
                                infrequent = Some(inf);
                            }
                        }
                        let mut n: Vec<String> = categories
                            .iter()
                            .map(|c| format!("{}={c}", cs.output_name()))
                            .collect();
                        if infrequent.is_some() {
                            n.push(format!("{}=__infrequent__", cs.output_name()));
                        }
                        width = n.len();
                        names = Some(n);
                        FittedStep::OneHot {
                            categories,
                            infrequent,
                            unknown: *unknown,
                        }
                    }
                    Step::Ordinal => {
                        let labels = encoder_labels(cur_kind, nums, labels);
                        FittedStep::Ordinal {
                            categories: count(&labels).into_keys().collect(),
                        }
                    }
                    Step::Hash { n_features } => {
                        if !(1..=MAX_HASH).contains(n_features) {
                            return Err(spec_err(format!("hash needs 1..={MAX_HASH} features")));
                        }
                        width = *n_features;
                        names = Some(
                            (0..*n_features)
                                .map(|i| format!("{}#{i}", cs.output_name()))
                                .collect(),
                        );
                        FittedStep::Hash {
                            n_features: *n_features,
                        }
                    }
                };
                if step.is_encoder() {
                    cur_kind = InputKind::Number;
                }
                steps.push(fitted);
            }
            if cur_kind == InputKind::Label {
                return Err(spec_err(
                    "a label column must end with an encoder (one_hot, ordinal, hash)".into(),
                ));
            }
            outputs.extend(names.unwrap_or_else(|| vec![cs.output_name().to_string()]));
            columns.push(FittedColumn {
                name: cs.column.clone(),
                input,
                kind,
                steps,
                width,
            });
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = outputs.iter().find(|o| !seen.insert(o.as_str())) {
            return Err(TransformError::Spec {
                column: dup.clone(),
                reason: "output name appears twice".into(),
            });
        }
        FittedPipeline::from_parts(
            Schema::new(fields)?,
            columns,
            outputs,
            self.clone(),
            frame.nrows() as u64,
        )
    }
}

fn all_missing(cs: &crate::ColumnSpec) -> TransformError {
    TransformError::Spec {
        column: cs.column.clone(),
        reason: "no present value to fit on".into(),
    }
}

/// scikit-learn's `_handle_zeros_in_scale`: a scale within rounding of zero becomes 1.
fn nonzero(scale: f64) -> f64 {
    if scale.abs() < 10.0 * f64::EPSILON || !scale.is_finite() {
        1.0
    } else {
        scale
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    Some(pairwise_sum(v) / v.len() as f64)
}

/// numpy's pairwise summation (blocks of 8 partial sums below 128 elements), so means agree
/// with scikit-learn to the last bit on most inputs.
fn pairwise_sum(v: &[f64]) -> f64 {
    let n = v.len();
    if n < 8 {
        v.iter().fold(0.0, |a, b| a + b)
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&v[..8]);
        let mut i = 8;
        while i + 8 <= n {
            for (k, rk) in r.iter_mut().enumerate() {
                *rk += v[i + k];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &v[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&v[..n2]) + pairwise_sum(&v[n2..])
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// numpy's `percentile(method="linear")` on sorted data, with its two-sided lerp.
fn percentile(s: &[f64], q: f64) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let virt = (q / 100.0) * (s.len() - 1) as f64;
    let lo = virt.floor().clamp(0.0, (s.len() - 1) as f64);
    let i = lo as usize;
    let j = (i + 1).min(s.len() - 1);
    let t = virt - lo;
    Some(lerp(s[i], s[j], t))
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// `KBinsDiscretizer(strategy="quantile")` edges: percentiles at `linspace(0, 100, n + 1)`,
/// then edges closer than 1e-8 to their predecessor dropped. A constant column gets one bin.
fn quantile_edges(s: &[f64], n_bins: usize) -> Option<Vec<f64>> {
    let (first, last) = (*s.first()?, *s.last()?);
    if first == last {
        return Some(vec![first, last]);
    }
    let step = 100.0 / n_bins as f64;
    let mut edges: Vec<f64> = Vec::with_capacity(n_bins + 1);
    for k in 0..=n_bins {
        let q = if k == n_bins { 100.0 } else { k as f64 * step };
        let e = percentile(s, q)?;
        if edges.last().is_none_or(|p| e - p > 1e-8) {
            edges.push(e);
        }
    }
    Some(edges)
}

fn most_frequent_num(v: &[f64]) -> Option<f64> {
    let mut counts: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
    for &x in v {
        // Key by an order-preserving bit pattern so ties go to the smallest value.
        let b = x.to_bits();
        let key = if x.is_sign_negative() {
            !b
        } else {
            b | (1 << 63)
        };
        counts.entry(key).or_insert((x, 0)).1 += 1;
    }
    let mut best: Option<(f64, usize)> = None;
    for (x, c) in counts.into_values() {
        if best.is_none_or(|(_, bc)| c > bc) {
            best = Some((x, c));
        }
    }
    best.map(|b| b.0)
}

fn most_frequent_label(v: &[String]) -> Option<String> {
    let counts = count(v);
    let mut best: Option<(&String, usize)> = None;
    for (l, &c) in &counts {
        if best.is_none_or(|(_, bc)| c > bc) {
            best = Some((l, c));
        }
    }
    best.map(|b| b.0.clone())
}

fn count(v: &[String]) -> BTreeMap<String, usize> {
    let mut h: HashMap<&str, usize> = HashMap::new();
    for l in v {
        *h.entry(l.as_str()).or_insert(0) += 1;
    }
    h.into_iter().map(|(k, c)| (k.to_string(), c)).collect()
}

fn encoder_labels(kind: InputKind, nums: Vec<f64>, labels: Vec<String>) -> Vec<String> {
    match kind {
        InputKind::Label => labels,
        InputKind::Number => nums.into_iter().map(crate::number_label).collect(),
    }
}
