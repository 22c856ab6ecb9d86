//! # keel quickstart: fraud scoring on embedded defaults
//!
//! The lifecycle grows with the project; today it runs the parts that have landed:
//!
//! 1. a synthetic but realistic card-transaction stream (cards, merchants, a fraud pattern);
//! 2. a [`Frame`] of it, fingerprinted with a [`DataHash`] (the data version);
//! 3. rolling per-card aggregates written into the embedded feature store as they were known at
//!    each moment, with a checkpoint as the training-data version;
//! 4. a point-in-time-correct training set from the store (no future leakage);
//! 5. LightGBM trained through `lightgbm3` (seeded, deterministic), then scored by keel's
//!    pure-Rust engine with the same numbers;
//! 6. online scoring: store lookup + GBDT per request, with p50/p99 latency.
//!
//! Run with `scripts/demo.sh`. Everything lives in `./keel-data/quickstart` (recreated on each
//! run, so reruns start clean).

use anyhow::{Context, Result};
use keel_core::{Column, DType, DataHash, Field, Frame};
use keel_gbdt::{train, GbdtModel, PredictOptions, TrainConfig};
use keel_store::{
    Definitions, Entity, FeatureRef, FeatureService, FeatureView, HistoricalOptions, Row, Store,
    StoreOptions, Value,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// SplitMix64: deterministic data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Txn {
    card: String,
    merchant: i64,
    ts: i64,
    amount: f64,
    online: bool,
    fraud: bool,
}

/// 30 days of transactions for 400 cards at 40 merchants. Fraud is more likely online, on large
/// amounts, at three risky merchants, and in bursts on a card that just spent a lot.
fn transactions(n: usize) -> Vec<Txn> {
    let mut rng = Rng(7);
    let mut out = Vec::with_capacity(n);
    let mut recent: HashMap<String, f64> = HashMap::new();
    for i in 0..n {
        let ts = START + (i as f64 / n as f64 * 30.0 * DAY as f64) as i64;
        let card = format!("card{:03}", (rng.next() * 400.0) as u32);
        let merchant = (rng.next() * 40.0) as i64;
        let amount = (rng.next() * 5.5).exp().min(2_000.0);
        let online = rng.next() < 0.35;
        let burst = recent.get(&card).copied().unwrap_or(0.0);
        let logit = -5.0
            + 1.6 * f64::from(u8::from(online))
            + 0.012 * amount.min(300.0)
            + if merchant % 13 == 0 { 1.5 } else { 0.0 }
            + (burst / 400.0).min(2.0);
        let fraud = rng.next() < 1.0 / (1.0 + (-logit).exp());
        *recent.entry(card.clone()).or_default() = burst * 0.7 + amount;
        out.push(Txn {
            card,
            merchant,
            ts,
            amount,
            online,
            fraud,
        });
    }
    out
}

fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut pos) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum += avg;
                pos += 1.0;
            }
        }
        i = j + 1;
    }
    let neg = labels.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

fn definitions() -> Definitions {
    Definitions {
        entities: vec![Entity {
            name: "card".into(),
            join_keys: vec![Field::required("card_id", DType::String)],
        }],
        views: vec![FeatureView {
            name: "card_activity".into(),
            version: 1,
            entities: vec!["card".into()],
            features: vec![
                Field::new("spend_24h", DType::F64),
                Field::new("txn_count_24h", DType::I64),
                Field::new("online_share_24h", DType::F64),
                Field::new("max_amount_24h", DType::F64),
            ],
            ttl_ms: Some(2 * DAY),
            retention_ms: None,
            owner: "fraud-team".into(),
            description: "rolling 24h card aggregates, updated on every transaction".into(),
            tags: Default::default(),
        }],
        services: vec![FeatureService {
            name: "fraud_v1".into(),
            features: [
                "spend_24h",
                "txn_count_24h",
                "online_share_24h",
                "max_amount_24h",
            ]
            .iter()
            .map(|f| FeatureRef {
                view: "card_activity".into(),
                version: 1,
                feature: (*f).into(),
            })
            .collect(),
        }],
    }
}

fn main() -> Result<()> {
    let root = std::path::Path::new("keel-data/quickstart");
    if root.exists() {
        std::fs::remove_dir_all(root).context("cleaning keel-data/quickstart")?;
    }
    std::fs::create_dir_all(root)?;

    // 1-2. The transaction log as a Frame, and its data version.
    let txns = transactions(40_000);
    let mut csv = String::from("card_id,merchant_id,event_timestamp,amount,is_online,is_fraud\n");
    for t in &txns {
        csv += &format!(
            "{},{},{},{:.2},{},{}\n",
            t.card,
            t.merchant,
            t.ts,
            t.amount,
            t.online,
            u8::from(t.fraud)
        );
    }
    let log = Frame::from_csv_reader(csv.as_bytes(), None)?;
    let fraud_rate = txns.iter().filter(|t| t.fraud).count() as f64 / txns.len() as f64;
    println!(
        "1. {} transactions over 30 days, {:.2}% fraud",
        log.nrows(),
        fraud_rate * 100.0
    );
    println!("   schema: {}", log.schema());
    println!("   data version (DataHash): {}", DataHash::of(&log));

    // 3. Rolling 24h aggregates per card, written as of each transaction (what serving knew).
    let store = Store::open_with(root.join("store"), StoreOptions::default())?;
    store.apply(&definitions())?;
    let t0 = Instant::now();
    let mut windows: HashMap<&str, VecDeque<(i64, f64, bool)>> = HashMap::new();
    let mut rows = Vec::with_capacity(txns.len());
    for t in &txns {
        let w = windows.entry(t.card.as_str()).or_default();
        while w.front().is_some_and(|(ts, _, _)| *ts < t.ts - DAY) {
            w.pop_front();
        }
        w.push_back((t.ts, t.amount, t.online));
        let n = w.len() as f64;
        rows.push(Row {
            key: vec![Value::Str(t.card.clone())],
            // Aggregates include this transaction and are usable from the next millisecond on.
            event_ms: t.ts + 1,
            created_ms: Some(t.ts + 1),
            values: vec![
                Value::F64(w.iter().map(|x| x.1).sum()),
                Value::I64(w.len() as i64),
                Value::F64(w.iter().filter(|x| x.2).count() as f64 / n),
                Value::F64(w.iter().map(|x| x.1).fold(0.0, f64::max)),
            ],
        });
    }
    for chunk in rows.chunks(5_000) {
        store.write("card_activity", 1, chunk)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cp = store.checkpoint(root.join("checkpoint"))?;
    println!(
        "2. wrote {} feature rows in {:.2}s ({:.0} rows/s); training-data version {cp}",
        rows.len(),
        secs,
        rows.len() as f64 / secs
    );

    // 4. Point-in-time training set: features as of each transaction's own timestamp.
    let refs = store.service("fraud_v1")?.features;
    let entities = log.select(&[
        "card_id",
        "event_timestamp",
        "amount",
        "is_online",
        "merchant_id",
        "is_fraud",
    ])?;
    let t0 = Instant::now();
    let training = store.historical(
        &entities,
        &refs,
        HistoricalOptions {
            no_backfill_leak: true,
        },
    )?;
    println!(
        "3. point-in-time join: {} rows x {} columns in {:.2}s (no value from the future)",
        training.nrows(),
        training.ncols(),
        t0.elapsed().as_secs_f64()
    );

    // 5. Time-based split; LightGBM trains, keel scores.
    let cut = training.nrows() * 3 / 4;
    let (train_set, test_set) = (
        training.slice(0, cut)?,
        training.slice(cut, training.nrows() - cut)?,
    );
    let features: Vec<String> = [
        "amount",
        "is_online",
        "merchant_id",
        "spend_24h",
        "txn_count_24h",
        "online_share_24h",
        "max_amount_24h",
    ]
    .map(String::from)
    .to_vec();
    let cfg = TrainConfig {
        features: features.clone(),
        label: "is_fraud".into(),
        params: serde_json::json!({"objective": "binary", "num_iterations": 200, "num_leaves": 31,
                                    "learning_rate": 0.05, "min_data_in_leaf": 40}),
        seed: 42,
    };
    let t0 = Instant::now();
    let trained = train(&train_set, None, &cfg)?;
    let model: GbdtModel = trained.model;
    let names: Vec<&str> = features.iter().map(String::as_str).collect();
    let x = test_set.to_matrix_f64(&names)?;
    let x = x.as_slice().context("row-major matrix")?;
    let scores = model.predict(x, &PredictOptions::default())?;
    let labels: Vec<bool> = match test_set.column("is_fraud")? {
        Column::I64 { values, .. } => values.iter().map(|&v| v == 1).collect(),
        _ => anyhow::bail!("label column"),
    };
    let lgb = lightgbm3::Booster::from_string(&trained.lightgbm_text)?;
    let theirs = lgb.predict_with_params(x, names.len() as i32, true, "num_threads=1")?;
    let identical = scores
        .iter()
        .zip(&theirs)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    println!(
        "4. LightGBM trained in {:.2}s ({} trees); test AUC {:.3}; keel's pure-Rust scores bit-identical to LightGBM: {}",
        t0.elapsed().as_secs_f64(),
        model.info().num_trees,
        auc(&scores, &labels),
        identical
    );
    model.save(root.join("model.keel"))?;

    // 6. Online: per request, look up the card's features now, add request-time values, score.
    let store = Arc::new(store);
    let mut lat = Vec::with_capacity(2_000);
    let mut out = [0.0];
    let mut row = vec![0.0; names.len()];
    let now = txns.last().map_or(START, |t| t.ts) + 1;
    for (i, t) in txns.iter().rev().take(2_000).enumerate() {
        let t0 = Instant::now();
        let r = store.get_as_of("fraud_v1", &[vec![Value::Str(t.card.clone())]], now)?;
        row[0] = t.amount;
        row[1] = f64::from(u8::from(t.online));
        row[2] = t.merchant as f64;
        for (j, v) in r.values[0].iter().enumerate() {
            row[3 + j] = v.value.as_f64().unwrap_or(f64::NAN);
        }
        model.predict_row(&row, &mut out)?;
        lat.push(t0.elapsed().as_nanos() as f64 / 1e3);
        if i == 0 {
            println!(
                "   example request: {} spends {:.2} -> fraud probability {:.3}",
                t.card, t.amount, out[0]
            );
        }
    }
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!("5. online scoring (store lookup + 200-tree GBDT), 2000 requests: p50 {:.1} us, p99 {:.1} us", p(0.5), p(0.99));
    println!("   next (open issues): registry, shadow/canary rollout, drift monitoring, retraining, rollback");
    Ok(())
}
