//! # keel quickstart: a fraud model's whole lifecycle on embedded defaults
//!
//! 1. a synthetic card-transaction stream (cards, merchants, a fraud pattern) and its
//!    `DataHash`; rolling per-card aggregates written into the embedded feature store as they
//!    were known at each moment; a checkpoint as the training-data version;
//! 2. a point-in-time-correct training set from the store (no future leakage);
//! 3. a tracked `TrainingJob`: time split, transforms fitted on the training rows only,
//!    LightGBM, scikit-learn-exact metrics, a registered bundle; keel's pure-Rust scores
//!    checked bit for bit against LightGBM's own;
//! 4. the bundle served as champion (store lookup + request-time features + pipeline + model);
//! 5. a candle MLP challenger, trained deterministically and registered;
//! 6. shadow -> 10% canary -> promotion through the gates (with label evidence);
//! 7. covariate drift injected: the monitor alerts, nothing is retrained;
//! 8. concept drift injected: performance decays, the retraining loop trains, gates and
//!    deploys a challenger as shadow (never as champion);
//! 9. rollback, and the audit trail.
//!
//! Run with `scripts/demo.sh`. Everything lives in `./keel-data/quickstart` (recreated on each
//! run, so reruns start clean).

use anyhow::{Context, Result};
use keel::core::{DType, Field};
use keel::core::{DataHash, Frame, ManualClock};
use keel::monitor::{
    DecayMetric, DecayRule, DecisionLog, GateConfig, Monitor, MonitorConfig, Profile, WindowSpec,
};
use keel::registry::Registry;
use keel::serve::{
    CanaryGate, Deployment, DeploymentConfig, LabelEvidence, Request, Route, ShadowGate,
};
use keel::store::{
    Definitions, Entity, FeatureRef, FeatureService, FeatureView, HistoricalOptions, Row, Store,
    StoreOptions, Value,
};
use keel::train::{RetrainLoop, TrainingData, TrainingJob};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Deterministic data: keel's SplitMix64, uniform in [0, 1) per draw.
struct Rng(keel::core::SplitMix64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0.uniform()
    }
}

#[derive(Clone)]
struct Txn {
    card: String,
    merchant: i64,
    ts: i64,
    amount: f64,
    online: bool,
    fraud: bool,
}

/// Which world the transactions come from.
#[derive(Clone, Copy, PartialEq)]
enum Regime {
    /// The training world.
    Normal,
    /// Covariate shift: bigger baskets, more online shopping; fraud follows the same rules.
    Covariate,
    /// Concept drift: fraudsters move to small, in-store purchases at other merchants.
    Concept,
}

/// `days` of transactions for 400 cards at 40 merchants from `start`. Normally fraud is more
/// likely online, on large amounts, at three risky merchants, and in bursts on a card that
/// just spent a lot.
fn transactions(n: usize, seed: u64, start: i64, days: f64, regime: Regime) -> Vec<Txn> {
    let mut rng = Rng(keel::core::SplitMix64::new(seed));
    let mut out = Vec::with_capacity(n);
    let mut recent: HashMap<String, f64> = HashMap::new();
    for i in 0..n {
        let ts = start + (i as f64 / n as f64 * days * DAY as f64) as i64;
        let card = format!("card{:03}", (rng.next() * 400.0) as usize);
        let merchant = (rng.next() * 40.0) as i64;
        let online_p = if regime == Regime::Covariate {
            0.7
        } else {
            0.35
        };
        let online = rng.next() < online_p;
        let scale = if regime == Regime::Covariate {
            1.6
        } else {
            1.0
        };
        let amount = (3.0 + 1.1 * gauss(&mut rng)).exp() * scale;
        let spent = recent.get(&card).copied().unwrap_or(0.0);
        let mut logit = -5.0 + 0.9 * (amount.ln() - 3.0);
        match regime {
            Regime::Concept => {
                logit += if !online { 1.6 } else { -1.0 };
                logit += if (30..34).contains(&merchant) {
                    2.2
                } else {
                    0.0
                };
                logit -= 1.8 * (amount.ln() - 3.0);
            }
            _ => {
                logit += if online { 1.6 } else { 0.0 };
                logit += if [3, 17, 29].contains(&merchant) {
                    1.8
                } else {
                    0.0
                };
                logit += if spent > 300.0 { 1.5 } else { 0.0 };
            }
        }
        let fraud = rng.next() < 1.0 / (1.0 + (-logit).exp());
        *recent.entry(card.clone()).or_insert(0.0) = spent * 0.7 + amount;
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

fn gauss(rng: &mut Rng) -> f64 {
    let (u, v) = (rng.next().max(1e-300), rng.next());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Rolling 24h aggregates per card including each transaction: spend, count, online share, max.
fn aggregates(txns: &[Txn]) -> Vec<[f64; 4]> {
    let mut windows: HashMap<&str, VecDeque<(i64, f64, bool)>> = HashMap::new();
    txns.iter()
        .map(|t| {
            let w = windows.entry(t.card.as_str()).or_default();
            while w.front().is_some_and(|(ts, _, _)| *ts < t.ts - DAY) {
                w.pop_front();
            }
            w.push_back((t.ts, t.amount, t.online));
            let n = w.len() as f64;
            [
                w.iter().map(|x| x.1).sum(),
                n,
                w.iter().filter(|x| x.2).count() as f64 / n,
                w.iter().map(|x| x.1).fold(0.0, f64::max),
            ]
        })
        .collect()
}

/// A labelled frame of transactions with their aggregates (what the store's point-in-time
/// join gives for them).
fn frame(txns: &[Txn]) -> Result<Frame> {
    let aggs = aggregates(txns);
    let mut csv = String::from(
        "card_id,event_timestamp,amount,is_online,merchant_id,spend_24h,txn_count_24h,online_share_24h,max_amount_24h,is_fraud\n",
    );
    for (t, a) in txns.iter().zip(&aggs) {
        csv += &format!(
            "{},{},{:.2},{},{},{},{},{},{},{}\n",
            t.card,
            t.ts,
            t.amount,
            t.online,
            t.merchant,
            a[0],
            a[1] as i64,
            a[2],
            a[3],
            u8::from(t.fraud)
        );
    }
    Ok(Frame::from_csv_reader(csv.as_bytes(), None)?)
}

/// A request: the card to look up, plus what is known at request time.
fn request(t: &Txn, i: usize, with_aggregates: Option<&[f64; 4]>) -> Request {
    let mut features = vec![
        (
            "amount".to_string(),
            Value::F64((t.amount * 100.0).round() / 100.0),
        ),
        ("is_online".to_string(), Value::Bool(t.online)),
        ("merchant_id".to_string(), Value::I64(t.merchant)),
    ];
    if let Some(a) = with_aggregates {
        for (k, v) in [
            "spend_24h",
            "txn_count_24h",
            "online_share_24h",
            "max_amount_24h",
        ]
        .iter()
        .zip(a)
        {
            features.push((k.to_string(), Value::F64(*v)));
        }
    }
    Request {
        request_id: format!("req-{i}").into(),
        entity: if with_aggregates.is_some() {
            vec![]
        } else {
            vec![Value::Str(t.card.clone())]
        },
        features,
        routing_key: Some(t.card.clone()),
    }
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

const JOB: &str = r#"
experiment = "fraud"
model = "fraud"
label = "is_fraud"
timestamp = "event_timestamp"
feature_service = "fraud_v1"
seed = 42
split = { valid = 0.15, test = 0.15 }
params = { objective = "binary", num_iterations = 200, num_leaves = 31, learning_rate = 0.05, min_data_in_leaf = 40 }

[[transform.columns]]
column = "amount"
steps = [{ op = "log1p" }]
[[transform.columns]]
column = "is_online"
[[transform.columns]]
column = "merchant_id"
steps = [{ op = "one_hot", max_categories = 12, unknown = "infrequent" }]
[[transform.columns]]
column = "spend_24h"
steps = [{ op = "impute", strategy = "median" }, { op = "log1p" }]
[[transform.columns]]
column = "txn_count_24h"
steps = [{ op = "impute", strategy = "median" }]
[[transform.columns]]
column = "online_share_24h"
steps = [{ op = "impute", strategy = "median" }]
[[transform.columns]]
column = "max_amount_24h"
steps = [{ op = "impute", strategy = "median" }, { op = "log1p" }]
"#;

/// The MLP challenger's settings, appended to [`JOB`] with `kind = "mlp"`.
const MLP: &str = r#"
[mlp]
hidden = [64, 64]
layer_norm = true
residual = true
dropout = 0.1
head = { kind = "binary" }

[train]
optimizer = { kind = "adam_w", lr = 3e-3, weight_decay = 1e-4 }
epochs = 6
batch_size = 256
warmup_steps = 50
clip_norm = 1.0
early_stopping = { patience = 2, min_delta = 0.0 }
"#;

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q) as usize]
}

fn main() -> Result<()> {
    let started = Instant::now();
    let root = std::path::Path::new("keel-data/quickstart");
    if root.exists() {
        std::fs::remove_dir_all(root).context("cleaning keel-data/quickstart")?;
    }
    std::fs::create_dir_all(root)?;

    // 1. Transactions, their data version, and rolling aggregates in the feature store.
    let txns = transactions(40_000, 7, START, 30.0, Regime::Normal);
    let log = frame(&txns)?;
    let fraud_rate = txns.iter().filter(|t| t.fraud).count() as f64 / txns.len() as f64;
    println!(
        "1. {} transactions over 30 days, {:.2}% fraud; data version {}",
        log.nrows(),
        fraud_rate * 100.0,
        DataHash::of(&log)
    );
    let end = txns.last().map_or(START, |t| t.ts) + 1;
    let clock = Arc::new(ManualClock::new(end));
    let store = Store::open_with(
        root.join("store"),
        StoreOptions {
            clock: clock.clone(),
            durability: keel::store::Durability::Buffered,
            ..Default::default()
        },
    )?;
    store.apply(&definitions())?;
    let t0 = Instant::now();
    let rows: Vec<Row> = txns
        .iter()
        .zip(aggregates(&txns))
        .map(|(t, a)| Row {
            key: vec![Value::Str(t.card.clone())],
            event_ms: t.ts + 1,
            created_ms: Some(t.ts + 1),
            values: vec![
                Value::F64(a[0]),
                Value::I64(a[1] as i64),
                Value::F64(a[2]),
                Value::F64(a[3]),
            ],
        })
        .collect();
    for chunk in rows.chunks(5_000) {
        store.write("card_activity", 1, chunk)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cp = store.checkpoint(root.join("checkpoint"))?;
    println!(
        "   wrote {} feature rows in {:.2}s ({:.0} rows/s); store checkpoint {cp}",
        rows.len(),
        secs,
        rows.len() as f64 / secs
    );

    // 2. Point-in-time training set: features as of each transaction's own timestamp.
    let t0 = Instant::now();
    let entities = log.select(&[
        "card_id",
        "event_timestamp",
        "amount",
        "is_online",
        "merchant_id",
        "is_fraud",
    ])?;
    let refs = store.service("fraud_v1")?.features;
    let training = store.historical(
        &entities,
        &refs,
        HistoricalOptions {
            no_backfill_leak: true,
            ..Default::default()
        },
    )?;
    println!(
        "2. point-in-time join: {} rows x {} columns in {:.2}s (no value from the future)",
        training.nrows(),
        training.ncols(),
        t0.elapsed().as_secs_f64()
    );

    // 3. A tracked, registered training job.
    let registry = Registry::open(root.join("registry"))?;
    let job = TrainingJob::from_toml(JOB)?;
    let t0 = Instant::now();
    let mut data = TrainingData::from_frame(training.clone());
    data.versions.push(("store".into(), cp.to_string()));
    let v1 = job.run(&registry, &data)?;
    let champion_auc = v1.metrics["test.auc"];
    let lgb = lightgbm3::Booster::from_string(v1.lightgbm_text.as_deref().context("gbdt")?)?;
    let pipeline = v1.pipeline.as_ref().context("a tabular job")?;
    let x = pipeline.transform(&training)?;
    let ours = v1.model()?.score_frame(&training)?;
    let theirs = lgb.predict_with_params(
        x.as_slice().context("row-major")?,
        x.ncols() as i32,
        true,
        "num_threads=1",
    )?;
    let identical = ours
        .iter()
        .zip(&theirs)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    let version = v1.version.clone().context("registered")?;
    println!("3. run {} ({:.1}s): {} features after transforms, test AUC {:.3}, PR-AUC {:.3}; registered fraud v{}", v1.run.id, t0.elapsed().as_secs_f64(), pipeline.width(), champion_auc, v1.metrics["test.pr_auc"], version.version);
    println!(
        "   keel's pure-Rust scores bit-identical to LightGBM's own on {} rows: {identical}",
        ours.len()
    );
    keel::registry::rollout::Rollout::new(&registry, "fraud")
        .first_champion(version.version, "first model")?;

    // 4. Serve it: store lookup + request-time features + frozen pipeline + model.
    let store = Arc::new(store);
    // The gates are the deployment's configuration: no caller can bring its own thresholds.
    let cfg = DeploymentConfig {
        canary_percent: 10.0,
        shadow_gate: ShadowGate {
            min_samples: 1_000,
            min_agreement: 0.9,
            max_mean_diff: 0.05,
        },
        canary_gate: CanaryGate {
            min_samples: 100,
            max_p99_us: 5_000.0,
            max_error_rate: 0.001,
            metric_margin: 0.005,
            require_labels: true,
        },
        ..DeploymentConfig::default()
    };
    let deployment = Deployment::from_registry(
        registry.clone(),
        "fraud",
        Some((store.clone(), "fraud_v1".into())),
        cfg.clone(),
    )?
    .with_clock(clock.clone());
    let recent = &txns[txns.len() - 3_000..];
    let mut lat = Vec::with_capacity(recent.len());
    for (i, t) in recent.iter().enumerate() {
        clock.set(t.ts);
        let t0 = Instant::now();
        let r = deployment.predict(request(t, i, None))?;
        lat.push(t0.elapsed().as_nanos() as f64 / 1e3);
        if i == 0 {
            println!("4. champion v{} answers: {} spends {:.2} -> fraud probability {:.4} (stored features {} s old)", r.model_version, t.card, t.amount, r.scores[0], r.freshness_ms.unwrap_or(-1) / 1000);
        }
    }
    println!(
        "   {} requests (store lookup + transforms + 200 trees): p50 {:.1} us, p99 {:.1} us",
        lat.len(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );

    // 5. A candle challenger: the same job file with `kind = "mlp"` (same transforms, fitted on
    // the same training rows), tracked and registered the same way, deterministic.
    let t0 = Instant::now();
    let mlp_job = TrainingJob::from_toml(&format!("kind = \"mlp\"\n{JOB}{MLP}"))?;
    let v2 = mlp_job.run(&registry, &data)?;
    let mlp_auc = v2.metrics["test.auc"];
    for p in v2.run.metrics.get("epoch.train.loss").into_iter().flatten() {
        let valid = v2.run.metrics["epoch.valid.loss"]
            .iter()
            .find(|q| q.step == p.step)
            .map_or(f64::NAN, |q| q.value);
        println!(
            "5. MLP challenger epoch {:>2}: loss {:.4}, valid loss {valid:.4}",
            p.step, p.value
        );
    }
    let v2 = v2.version.context("registered")?;
    println!("   MLP test AUC {:.3} (champion {:.3}), trained in {:.1}s; registered fraud v{} (flavor {})", mlp_auc, champion_auc, t0.elapsed().as_secs_f64(), v2.version, v2.meta.flavor);

    // 6. Shadow -> 10% canary -> promotion through the gates.
    deployment.start_shadow(v2.version, "MLP challenger")?;
    for (i, t) in recent.iter().enumerate() {
        clock.set(t.ts);
        deployment.predict(request(t, 10_000 + i, None))?;
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sh = deployment.shadow_stats();
    println!("6. shadow: {} mirrored requests compared, agreement {:.1}%, mean |diff| {:.4}, {} dropped, challenger p99 {:.1} us", sh.compared, 100.0 * sh.agreed as f64 / sh.compared.max(1) as f64, sh.mean_abs_diff, sh.dropped, sh.p99_us);
    match deployment.promote_to_canary() {
        Ok(()) => {
            let mut canary = 0;
            for (i, t) in recent.iter().enumerate() {
                clock.set(t.ts);
                canary += usize::from(
                    deployment.predict(request(t, 20_000 + i, None))?.route == Route::Canary,
                );
            }
            let (_, errs, _, p99) = deployment.route_stats(v2.version, Route::Canary);
            println!(
                "   canary: {:.1}% of requests (sticky per card), {} errors, p99 {:.1} us",
                100.0 * canary as f64 / recent.len() as f64,
                errs,
                p99
            );
            let evidence = LabelEvidence {
                champion: champion_auc,
                challenger: mlp_auc,
            };
            match deployment.promote_to_champion(Some(evidence)) {
                Ok(()) => println!("   gate passed: MLP v{} is champion", v2.version),
                Err(e) => {
                    println!("   gate refused promotion: {e}");
                    deployment.rollback("challenger refused by the canary gate")?;
                    println!(
                        "   challenger withdrawn; champion stays v{}",
                        deployment.versions().0
                    );
                }
            }
        }
        Err(e) => {
            println!("   shadow gate refused canary: {e}");
            deployment.rollback("challenger refused by the shadow gate")?;
        }
    }

    // 7-8. Monitoring against the champion's reference profile.
    let champ_v = deployment.versions().0;
    let champ = registry.load("fraud", champ_v)?;
    let reference: Profile = keel::core::envelope::decode(champ.file("reference")?)?;
    let baseline = champ
        .version
        .meta
        .eval
        .get("test.auc")
        .copied()
        .unwrap_or(champion_auc);
    let log = Arc::new(DecisionLog::default());
    let mcfg = MonitorConfig {
        window: WindowSpec::Count(4_000),
        decay: Some(DecayRule {
            metric: DecayMetric::Auc,
            baseline,
            threshold: 0.05,
            window: 4_000,
            min_samples: 1_000,
        }),
        ..MonitorConfig::default()
    };
    let mut monitor = Monitor::new(reference, mcfg, log.clone())?;
    deployment.drain_log();
    let phase = |name: &str,
                 regime: Regime,
                 seed: u64,
                 start: i64,
                 monitor: &mut Monitor|
     -> Result<(Vec<Txn>, Option<keel::monitor::WindowVerdict>)> {
        let new = transactions(4_000, seed, start, 2.0, regime);
        let aggs = aggregates(&new);
        let fraud: HashMap<String, bool> = new
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("{name}-{i}"), t.fraud))
            .collect();
        for (i, (t, a)) in new.iter().zip(&aggs).enumerate() {
            clock.set(t.ts);
            let mut r = request(t, i, Some(a));
            r.request_id = format!("{name}-{i}").into();
            deployment.predict(r)?;
        }
        let mut verdict = None;
        for rec in deployment.drain_log() {
            let label = fraud[&rec.request_id];
            if let Some(v) = monitor.observe(&rec)? {
                verdict = Some(v);
            }
            monitor.label(&rec.request_id, f64::from(u8::from(label)));
        }
        Ok((new, verdict))
    };
    let (_, v) = phase("covariate", Regime::Covariate, 11, end + DAY, &mut monitor)?;
    let v = v.context("a window closed")?;
    let drifted: Vec<&str> = v
        .drift
        .columns
        .iter()
        .filter(|c| c.drift)
        .map(|c| c.column.as_str())
        .collect();
    println!("7. covariate drift injected (bigger baskets, more online): drift share {:.2} ({}) -> decision {:?}: {}", v.drift.share_of_drifted_columns, drifted.join(", "), v.decision.action, v.decision.reason);
    let (concept, v) = phase("concept", Regime::Concept, 12, end + 4 * DAY, &mut monitor)?;
    let v = v.context("a window closed")?;
    println!(
        "8. concept drift injected (fraud moves in-store): drift share {:.2} -> decision {:?}: {}",
        v.drift.share_of_drifted_columns, v.decision.action, v.decision.reason
    );
    let retrain = RetrainLoop::new(
        &registry,
        TrainingJob::from_toml(JOB)?,
        GateConfig {
            metric: DecayMetric::Auc,
            margin: 0.02,
            guards: vec![(DecayMetric::Logloss, 0.02)],
            latency_budget_us: Some(2_000.0),
        },
        &log,
    );
    let latest = TrainingData::from_frame(frame(
        &[
            transactions(12_000, 13, end + 6 * DAY, 6.0, Regime::Concept),
            concept,
        ]
        .concat(),
    )?);
    let holdout = frame(&transactions(
        4_000,
        14,
        end + 12 * DAY,
        2.0,
        Regime::Concept,
    ))?;
    let out = retrain.handle(v.decision.clone(), &latest, &holdout)?;
    if let (Some(g), Some(c)) = (&out.gate, &out.challenger) {
        for check in &g.checks {
            let champ = if check.champion.is_nan() {
                "-".to_string()
            } else {
                format!("{:.4}", check.champion)
            };
            println!(
                "   gate: {:<40} champion {:>8}  challenger {:>8.4}  {}",
                check.name,
                champ,
                check.challenger,
                if check.passed { "ok" } else { "FAILED" }
            );
        }
        match &out.registered {
            Some(v) => println!("   retrained in run {}: registered fraud v{} and deployed it as shadow (champion untouched)", c.run.id, v.version),
            None => println!("   retrained in run {}: gate refused, nothing registered", c.run.id),
        }
    }
    let deployment = Deployment::from_registry(
        registry.clone(),
        "fraud",
        Some((store.clone(), "fraud_v1".into())),
        cfg,
    )?
    .with_clock(clock.clone());
    println!(
        "   restarted from the registry: champion v{}, challenger {:?}",
        deployment.versions().0,
        deployment.versions().1
    );

    // 9. Rollback, and the audit trail.
    if deployment.versions().1.is_some() {
        let v = deployment.rollback("operator: hold the retrained model until fraud ops review")?;
        println!(
            "9. rollback: challenger v{v} withdrawn in one call; champion v{}",
            deployment.versions().0
        );
    } else {
        println!(
            "9. rollback: nothing to withdraw; champion v{}",
            deployment.versions().0
        );
    }
    println!("   audit trail of fraud's aliases:");
    for e in registry.audit("fraud")? {
        println!(
            "     {:<9} {:>4} -> {:<4} {}{}",
            e.alias,
            e.from.map_or("-".into(), |v| format!("v{v}")),
            e.to.map_or("-".into(), |v| format!("v{v}")),
            if e.rollback { "[rollback] " } else { "" },
            e.reason
        );
    }
    println!(
        "   decisions recorded: {}; total {:.1}s",
        log.decisions().len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
