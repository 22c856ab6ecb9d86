//! Bounded-memory, mergeable data profiles: the reference profile stored with a model version,
//! and the current windows built from the prediction log.

use std::collections::{BTreeMap, HashMap};

use keel_core::{Frame, Kind, Persisted, ValueRef};
use serde::{Deserialize, Serialize};

use crate::drift::{self, ColumnKind, DriftOptions, DriftReport, Values};
use crate::{MonitorError, Result};

/// Default reservoir size per numerical column.
pub const DEFAULT_SAMPLE: usize = 5_000;
/// Most distinct labels kept per categorical column; the rest are counted under
/// [`OTHER_LABEL`].
pub const MAX_LABELS: usize = 1_000;
/// The label rare categories are folded into once [`MAX_LABELS`] is reached.
pub const OTHER_LABEL: &str = "__other__";

/// Reservoir sampling's generator (its state is part of a persisted profile).
type Rng = keel_core::SplitMix64;

/// The profile of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnProfile {
    /// Numbers: a uniform reservoir sample plus exact moments.
    Numerical {
        /// Uniform sample of the present values (at most `cap`).
        sample: Vec<f64>,
        /// Reservoir capacity.
        cap: usize,
        /// Present values seen.
        count: u64,
        /// Missing values seen.
        missing: u64,
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// Sum of values.
        sum: f64,
        /// Sum of squares.
        sum_sq: f64,
    },
    /// Labels: exact counts (up to [`MAX_LABELS`] distinct).
    Categorical {
        /// Count per label.
        counts: BTreeMap<String, u64>,
        /// Missing values seen.
        missing: u64,
    },
}

impl ColumnProfile {
    fn new(kind: ColumnKind, cap: usize) -> ColumnProfile {
        match kind {
            ColumnKind::Numerical => ColumnProfile::Numerical {
                sample: Vec::new(),
                cap,
                count: 0,
                missing: 0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                sum: 0.0,
                sum_sq: 0.0,
            },
            ColumnKind::Categorical => ColumnProfile::Categorical {
                counts: BTreeMap::new(),
                missing: 0,
            },
        }
    }

    /// The column kind.
    pub fn kind(&self) -> ColumnKind {
        match self {
            ColumnProfile::Numerical { .. } => ColumnKind::Numerical,
            ColumnProfile::Categorical { .. } => ColumnKind::Categorical,
        }
    }

    /// Present values seen.
    pub fn count(&self) -> u64 {
        match self {
            ColumnProfile::Numerical { count, .. } => *count,
            ColumnProfile::Categorical { counts, .. } => counts.values().sum(),
        }
    }

    /// Mean of a numerical column.
    pub fn mean(&self) -> Option<f64> {
        match self {
            ColumnProfile::Numerical { count, sum, .. } if *count > 0 => Some(sum / *count as f64),
            _ => None,
        }
    }

    fn add(&mut self, v: ValueRef<'_>, rng: &mut Rng) {
        match self {
            ColumnProfile::Numerical {
                sample,
                cap,
                count,
                missing,
                min,
                max,
                sum,
                sum_sq,
            } => {
                let x = match v {
                    ValueRef::F32(x) => f64::from(x),
                    ValueRef::F64(x) => x,
                    ValueRef::I64(x) => x as f64,
                    ValueRef::Bool(b) => f64::from(u8::from(b)),
                    ValueRef::Str(s) => s.trim().parse().unwrap_or(f64::NAN),
                    _ => f64::NAN,
                };
                if !x.is_finite() {
                    *missing += 1;
                    return;
                }
                *count += 1;
                *min = min.min(x);
                *max = max.max(x);
                *sum += x;
                *sum_sq += x * x;
                if sample.len() < *cap {
                    sample.push(x);
                } else {
                    let j = rng.below(*count) as usize;
                    if j < *cap {
                        sample[j] = x;
                    }
                }
            }
            ColumnProfile::Categorical { counts, missing } => match drift::label(v) {
                None => *missing += 1,
                Some(l) => count_label(counts, l, 1),
            },
        }
    }

    fn merge(&mut self, other: &ColumnProfile, rng: &mut Rng) -> Result<()> {
        match (self, other) {
            (
                ColumnProfile::Numerical {
                    sample,
                    cap,
                    count,
                    missing,
                    min,
                    max,
                    sum,
                    sum_sq,
                },
                ColumnProfile::Numerical {
                    sample: s2,
                    count: c2,
                    missing: m2,
                    min: mn2,
                    max: mx2,
                    sum: su2,
                    sum_sq: sq2,
                    ..
                },
            ) => {
                // Merge two uniform samples into one uniform sample of the union: draw each
                // slot from either side with probability proportional to the counts it stands
                // for.
                let (n1, n2) = (*count, *c2);
                let mut a = std::mem::take(sample);
                let mut b = s2.clone();
                let want = (*cap).min(a.len() + b.len());
                // Each kept value stands for count / sample-size values of its side.
                let wa = if a.is_empty() {
                    0.0
                } else {
                    n1 as f64 / a.len() as f64
                };
                let wb = if b.is_empty() {
                    0.0
                } else {
                    n2 as f64 / b.len() as f64
                };
                let mut out = Vec::with_capacity(want);
                while out.len() < want {
                    let (ma, mb) = (a.len() as f64 * wa, b.len() as f64 * wb);
                    let u = rng.uniform();
                    let src = if b.is_empty() || (!a.is_empty() && u * (ma + mb) < ma) {
                        &mut a
                    } else {
                        &mut b
                    };
                    let i = rng.below(src.len() as u64) as usize;
                    out.push(src.swap_remove(i));
                }
                *sample = out;
                *count = n1 + n2;
                *missing += m2;
                *min = min.min(*mn2);
                *max = max.max(*mx2);
                *sum += su2;
                *sum_sq += sq2;
                Ok(())
            }
            (
                ColumnProfile::Categorical { counts, missing },
                ColumnProfile::Categorical {
                    counts: c2,
                    missing: m2,
                },
            ) => {
                for (k, v) in c2 {
                    count_label(counts, k.clone(), *v);
                }
                *missing += m2;
                Ok(())
            }
            _ => Err(MonitorError::Input(
                "cannot merge profiles of different column kinds".into(),
            )),
        }
    }

    fn values(&self) -> Values {
        match self {
            ColumnProfile::Numerical { sample, .. } => Values::Num(sample.clone()),
            ColumnProfile::Categorical { counts, .. } => Values::Cat(
                counts
                    .iter()
                    .map(|(k, v)| (k.clone(), *v as usize))
                    .collect::<HashMap<_, _>>(),
            ),
        }
    }
}

/// Adds `n` to a label's count; past [`MAX_LABELS`] distinct labels, new ones fold into
/// [`OTHER_LABEL`].
fn count_label(counts: &mut BTreeMap<String, u64>, label: String, n: u64) {
    let key = if counts.contains_key(&label) || counts.len() < MAX_LABELS {
        label
    } else {
        OTHER_LABEL.to_string()
    };
    *counts.entry(key).or_insert(0) += n;
}

/// A profile of a dataset: one [`ColumnProfile`] per column. Persisted in the core envelope
/// (kind `PROF`) so a model version carries its reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    columns: BTreeMap<String, ColumnProfile>,
    order: Vec<String>,
    rows: u64,
    rng: Rng,
}

impl Persisted for Profile {
    const KIND: Kind = Kind(*b"PROF");
    const FORMAT_VERSION: u16 = 1;
}

impl Profile {
    /// An empty profile for columns of the given kinds; numerical reservoirs hold `sample`
    /// values; `seed` makes the sampling reproducible.
    pub fn new(columns: &[(String, ColumnKind)], sample: usize, seed: u64) -> Profile {
        Profile {
            columns: columns
                .iter()
                .map(|(n, k)| (n.clone(), ColumnProfile::new(*k, sample.max(1))))
                .collect(),
            order: columns.iter().map(|(n, _)| n.clone()).collect(),
            rows: 0,
            rng: Rng::new(seed),
        }
    }

    /// Profiles every column of a frame (kinds inferred from dtypes).
    pub fn of_frame(frame: &Frame, sample: usize, seed: u64) -> Profile {
        let cols: Vec<(String, ColumnKind)> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name.clone(), drift::default_kind(f.dtype)))
            .collect();
        let mut p = Profile::new(&cols, sample, seed);
        p.update_frame(frame);
        p
    }

    /// Adds the rows of a frame (columns matched by name; absent ones count as missing).
    pub fn update_frame(&mut self, frame: &Frame) {
        let cols: Vec<Option<&keel_core::Column>> =
            self.order.iter().map(|n| frame.column(n).ok()).collect();
        for i in 0..frame.nrows() {
            for (name, col) in self.order.iter().zip(&cols) {
                let v = col.map_or(ValueRef::Null, |c| c.get(i));
                if let Some(p) = self.columns.get_mut(name) {
                    p.add(v, &mut self.rng);
                }
            }
            self.rows += 1;
        }
    }

    /// Adds one row given as `(column, value)` pairs (e.g. a logged request).
    pub fn update_row(&mut self, row: &[(&str, ValueRef<'_>)]) {
        for (name, v) in row {
            if let Some(p) = self.columns.get_mut(*name) {
                p.add(*v, &mut self.rng);
            }
        }
        self.rows += 1;
    }

    /// Merges another profile of the same columns (e.g. from another replica).
    pub fn merge(&mut self, other: &Profile) -> Result<()> {
        for (name, p) in &other.columns {
            match self.columns.get_mut(name) {
                Some(mine) => mine.merge(p, &mut self.rng)?,
                None => {
                    return Err(MonitorError::Input(format!(
                        "profile has no column `{name}`"
                    )))
                }
            }
        }
        self.rows += other.rows;
        Ok(())
    }

    /// Rows seen.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// A column's profile.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.get(name)
    }

    /// Column names in order.
    pub fn column_names(&self) -> &[String] {
        &self.order
    }

    /// Drift of `current` against this reference profile, column by column, with the same
    /// policy as [`crate::detect_drift`] (numerical tests run on the reservoir samples, so
    /// their p-values reflect the sample sizes, not the full counts).
    pub fn drift(&self, current: &Profile, opts: &DriftOptions) -> Result<DriftReport> {
        let mut columns = Vec::new();
        let mut skipped = Vec::new();
        let mut skip = |name: &str, reason: String| {
            skipped.push(drift::SkippedColumn {
                column: name.to_string(),
                reason,
            })
        };
        for name in &self.order {
            if let Some(cols) = &opts.columns {
                if !cols.contains(name) {
                    continue;
                }
            }
            if let Some(role) = opts.exclude.get(name) {
                skip(name, format!("excluded ({role})"));
                continue;
            }
            let (Some(r), Some(c)) = (self.columns.get(name), current.columns.get(name)) else {
                skip(name, "not in current".into());
                continue;
            };
            let (rv, cv) = (r.values(), c.values());
            if rv.len() == 0 || cv.len() == 0 {
                let side = if rv.len() == 0 {
                    "reference"
                } else {
                    "current"
                };
                skip(name, format!("no present value in {side}"));
                continue;
            }
            let o = opts.per_column.get(name).cloned().unwrap_or_default();
            columns.push(drift::judge(name, r.kind(), &rv, &cv, &o)?);
        }
        Ok(drift::report(columns, skipped, opts.drift_share))
    }
}

/// A window of current traffic: closes after `size` rows and yields its profile.
#[derive(Debug, Clone)]
pub struct CountWindow {
    template: Vec<(String, ColumnKind)>,
    size: u64,
    sample: usize,
    seed: u64,
    current: Profile,
}

impl CountWindow {
    /// Windows of `size` rows over the given columns.
    pub fn new(columns: Vec<(String, ColumnKind)>, size: u64, sample: usize, seed: u64) -> Self {
        let current = Profile::new(&columns, sample, seed);
        CountWindow {
            template: columns,
            size: size.max(1),
            sample,
            seed,
            current,
        }
    }

    /// Adds a row; returns the finished window's profile when this row completes it.
    pub fn push(&mut self, row: &[(&str, ValueRef<'_>)]) -> Option<Profile> {
        self.current.update_row(row);
        if self.current.rows() >= self.size {
            self.seed = self.seed.wrapping_add(1);
            let next = Profile::new(&self.template, self.sample, self.seed);
            return Some(std::mem::replace(&mut self.current, next));
        }
        None
    }

    /// The window being filled.
    pub fn current(&self) -> &Profile {
        &self.current
    }
}

/// A window of current traffic by time: rows whose timestamp falls in
/// `[start, start + width_ms)`; the first row at or after the end closes it.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    template: Vec<(String, ColumnKind)>,
    width_ms: i64,
    sample: usize,
    seed: u64,
    start_ms: Option<i64>,
    current: Profile,
}

impl TimeWindow {
    /// Windows of `width_ms` over the given columns.
    pub fn new(
        columns: Vec<(String, ColumnKind)>,
        width_ms: i64,
        sample: usize,
        seed: u64,
    ) -> Self {
        let current = Profile::new(&columns, sample, seed);
        TimeWindow {
            template: columns,
            width_ms: width_ms.max(1),
            sample,
            seed,
            start_ms: None,
            current,
        }
    }

    /// Adds a row seen at `at_ms`; returns `(window start, profile)` of the window this row
    /// closed. Rows older than the open window are counted in it (late arrivals).
    pub fn push(&mut self, at_ms: i64, row: &[(&str, ValueRef<'_>)]) -> Option<(i64, Profile)> {
        let start = *self.start_ms.get_or_insert(at_ms);
        let mut closed = None;
        if at_ms >= start.saturating_add(self.width_ms) && self.current.rows() > 0 {
            self.seed = self.seed.wrapping_add(1);
            let next = Profile::new(&self.template, self.sample, self.seed);
            closed = Some((start, std::mem::replace(&mut self.current, next)));
            // Align the next window on the grid of width_ms from the first start.
            let k = (at_ms - start) / self.width_ms;
            self.start_ms = Some(start + k * self.width_ms);
        }
        self.current.update_row(row);
        closed
    }

    /// The window being filled.
    pub fn current(&self) -> &Profile {
        &self.current
    }
}
