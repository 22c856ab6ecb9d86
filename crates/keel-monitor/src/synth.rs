//! Synthetic data with controlled drift, for testing monitors: covariate shift, prior shift,
//! concept drift, and no-drift controls. Deterministic for a seed.

use keel_core::{Column, DType, Field, Frame, Validity};

/// Which shift to apply to the generated window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shift {
    /// Same distribution as the reference.
    None,
    /// `P(x)` moves (amount scale, country mix), `P(y | x)` unchanged.
    Covariate(f64),
    /// The base rate of positives moves (label prior), inputs unchanged.
    Prior(f64),
    /// `P(y | x)` changes (the amount effect flips sign), inputs unchanged.
    Concept(f64),
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Gen(u64);

impl Gen {
    /// Seeded.
    pub fn new(seed: u64) -> Gen {
        // SplitMix64 of the seed, so nearby seeds give unrelated streams.
        Gen(keel_core::SplitMix64::new(seed).next_u64() | 1)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The true log-odds of fraud for a row under `shift`.
pub fn logit(amount: f64, risk: f64, country: usize, shift: Shift) -> f64 {
    let mut a = 0.9 * (amount.ln() - 3.0);
    let mut base = -1.5;
    match shift {
        Shift::Concept(k) => a *= 1.0 - 2.0 * k.clamp(0.0, 1.0),
        Shift::Prior(k) => base += k,
        _ => {}
    }
    base + a + 1.5 * risk + if country >= 4 { 0.8 } else { 0.0 }
}

/// `n` rows of `amount` (f64), `risk` (f64), `country` (string), `label` (i64) under `shift`.
pub fn transactions(n: usize, shift: Shift, seed: u64) -> Frame {
    let mut g = Gen::new(seed);
    let countries = ["FR", "DE", "US", "BR", "NG", "IN"];
    let (mut amount, mut risk, mut country, mut label) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let (mu, mix) = match shift {
            Shift::Covariate(k) => (3.0 + k, k.clamp(0.0, 1.0)),
            _ => (3.0, 0.0),
        };
        let a = (mu + g.normal()).exp();
        let r = g.uniform();
        let c = if g.uniform() < mix {
            4 + (g.uniform() * 2.0) as usize
        } else {
            (g.uniform() * 6.0) as usize
        }
        .min(5);
        let p = 1.0 / (1.0 + (-logit(a, r, c, shift)).exp());
        amount.push(a);
        risk.push(r);
        country.push(countries[c].to_string());
        label.push(i64::from(g.uniform() < p));
    }
    Frame::new(
        vec![
            Field::new("amount", DType::F64),
            Field::new("risk", DType::F64),
            Field::new("country", DType::String),
            Field::new("label", DType::I64),
        ],
        vec![
            Column::F64(amount.into()),
            Column::F64(risk.into()),
            Column::String {
                values: country,
                validity: Validity::all_valid(),
            },
            Column::I64 {
                values: label.into(),
                validity: Validity::all_valid(),
            },
        ],
    )
    .expect("synthetic frame")
}
