//! # Serving under load: online scoring vs precomputed predictions, with and without shadow
//!
//! An open-loop harness (fixed arrival rate; latency from each request's scheduled start, so
//! queueing is not hidden) drives one model through three paths:
//!
//! 1. online: feature-service lookup (50 features) + transforms + a 500-tree GBDT, champion only;
//! 2. the same with a challenger in shadow (mirrored off the critical path);
//! 3. precomputed: every entity scored by a multi-threaded batch job into a versioned feature
//!    view, so a request is one store read.
//!
//! `cargo run -p keel-examples --example serve_load --release -- [RATE] [SECONDS] [ROUNDS]`
//! (default 2000 requests/s, 5 s per phase, 3 rounds of shadow off / on). Data lives in `./keel-data/serve_load`.

use anyhow::Result;
use keel::core::{DType, Field, Frame, ManualClock};
use keel::registry::Registry;
use keel::serve::{load, lookup_precomputed, Deployment, DeploymentConfig, Request};
use keel::store::{
    Definitions, Entity, FeatureRef, FeatureService, FeatureView, Row, Store, StoreOptions, Value,
};
use keel::train::{TrainingData, TrainingJob};
use std::sync::Arc;
use std::time::Duration;

const NOW: i64 = 1_800_000_000_000;
const FEATURES: usize = 50;
const ENTITIES: usize = 10_000;

fn value(e: usize, f: usize) -> f64 {
    let x = ((e * 7919 + f * 104_729) % 10_007) as f64 / 10_007.0;
    x * (1.0 + f as f64 / 10.0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rate: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000.0);
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let root = std::path::Path::new("keel-data/serve_load");
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }
    let names: Vec<String> = (0..FEATURES).map(|f| format!("f{f:02}")).collect();
    // Training data: the same 50 features for 20k rows, label from a fixed rule.
    let mut csv = names.join(",") + ",label\n";
    for r in 0..20_000 {
        let vals: Vec<f64> = (0..FEATURES).map(|f| value(r + 77, f)).collect();
        let y = u8::from(vals[0] + vals[3] - vals[7] * 0.5 + (vals[11] * 6.0).sin() > 1.0);
        csv += &(vals
            .iter()
            .map(|v| format!("{v:.5}"))
            .collect::<Vec<_>>()
            .join(",")
            + &format!(",{y}\n"));
    }
    let frame = Frame::from_csv_reader(csv.as_bytes(), None)?;
    let mut job = String::from(
        "experiment = \"load\"\nmodel = \"load\"\nlabel = \"label\"\nparams = { objective = \"binary\", num_iterations = 500, num_leaves = 31 }\n",
    );
    for n in &names {
        job += &format!("[[transform.columns]]\ncolumn = \"{n}\"\n");
    }
    let reg = Registry::open(root.join("registry"))?;
    let data = TrainingData::from_frame(frame);
    let v1 = TrainingJob::from_toml(&job)?
        .run(&reg, &data)?
        .version
        .expect("registered");
    let mut job2 = job.replace("num_iterations = 500", "num_iterations = 300");
    job2 = job2.replace("num_leaves = 31", "num_leaves = 15");
    let v2 = TrainingJob::from_toml(&job2)?
        .run(&reg, &data)?
        .version
        .expect("registered");
    keel::registry::rollout::Rollout::new(&reg, "load").first_champion(v1.version, "load test")?;

    let clock = Arc::new(ManualClock::new(NOW));
    let store = Arc::new(Store::open_with(
        root.join("store"),
        StoreOptions {
            clock: clock.clone(),
            durability: keel::store::Durability::Buffered,
            ..Default::default()
        },
    )?);
    store.apply(&Definitions {
        entities: vec![Entity {
            name: "user".into(),
            join_keys: vec![Field::required("user_id", DType::I64)],
        }],
        views: vec![FeatureView {
            name: "user_features".into(),
            version: 1,
            entities: vec!["user".into()],
            features: names
                .iter()
                .map(|n| Field::new(n.clone(), DType::F64))
                .collect(),
            ttl_ms: None,
            retention_ms: None,
            owner: "load".into(),
            description: String::new(),
            tags: Default::default(),
        }],
        services: vec![FeatureService {
            name: "load_v1".into(),
            features: names
                .iter()
                .map(|n| FeatureRef {
                    view: "user_features".into(),
                    version: 1,
                    feature: n.clone(),
                })
                .collect(),
        }],
    })?;
    let rows: Vec<Row> = (0..ENTITIES)
        .map(|e| Row {
            key: vec![Value::I64(e as i64)],
            event_ms: NOW - 1000,
            created_ms: Some(NOW - 1000),
            values: (0..FEATURES).map(|f| Value::F64(value(e, f))).collect(),
        })
        .collect();
    for c in rows.chunks(2000) {
        store.write("user_features", 1, c)?;
    }
    // Steady state: the loaded rows sit in SST files, no flush or compaction runs during the
    // measurement.
    store.compact("user_features", 1)?;
    let d = Deployment::from_registry(
        reg.clone(),
        "load",
        Some((store.clone(), "load_v1".into())),
        DeploymentConfig {
            log_sample_rate: 0.01,
            ..DeploymentConfig::default()
        },
    )?
    .with_clock(clock.clone());
    let req = |i: u64| Request {
        request_id: Default::default(),
        entity: vec![Value::I64((i as usize * 7 % ENTITIES) as i64)],
        features: vec![],
        routing_key: None,
    };
    let dur = Duration::from_secs_f64(secs);
    let print = |name: &str, r: &load::LoadReport| {
        println!(
            "{name:<38} {:>7.0} req/s  p50 {:>7.1} us  p99 {:>7.1} us  p999 {:>8.1} us  errors {}",
            r.achieved_rate, r.p50_us, r.p99_us, r.p999_us, r.errors
        )
    };
    // Where the time goes, one request at a time: the store read alone, then the whole path.
    let mut t_store = Vec::new();
    let mut t_all = Vec::new();
    for i in 0..5_000u64 {
        let key = vec![Value::I64((i as usize * 7 % ENTITIES) as i64)];
        let t = std::time::Instant::now();
        store.get_online("load_v1", &[key])?;
        t_store.push(t.elapsed().as_nanos() as f64 / 1e3);
        let t = std::time::Instant::now();
        d.predict(req(i))?;
        t_all.push(t.elapsed().as_nanos() as f64 / 1e3);
    }
    t_store.sort_by(f64::total_cmp);
    t_all.sort_by(f64::total_cmp);
    println!(
        "closed loop, one at a time: store read of {FEATURES} features p50 {:.1} us; whole request p50 {:.1} us",
        t_store[2_500], t_all[2_500]
    );
    println!("open loop at {rate:.0} req/s for {secs:.0} s, 2 workers; model: 500 trees x {FEATURES} features");
    // Shadow off and on, alternated over `rounds` so slow drift of the machine (other tenants,
    // page cache) hits both alike; the effect is judged on the medians.
    let mut off = Vec::new();
    let mut on = Vec::new();
    // Warm-up (not reported): caches, page faults and the CPU governor settle first.
    load::open_loop(rate, Duration::from_secs(1), 2, |i| {
        d.predict(req(i)).is_ok()
    });
    for round in 1..=rounds {
        let online = load::open_loop(rate, dur, 2, |i| d.predict(req(i)).is_ok());
        print(
            &format!("online (lookup + transform + GBDT) #{round}"),
            &online,
        );
        off.push(online.p99_us);
        d.start_shadow(v2.version, "load test shadow")?;
        let shadow = load::open_loop(rate, dur, 2, |i| d.predict(req(i)).is_ok());
        print(&format!("online, challenger in shadow #{round}"), &shadow);
        on.push(shadow.p99_us);
        if round < rounds {
            d.rollback("load test round done")?;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut off), median(&mut on));
    let st = d.shadow_stats();
    println!(
        "  shadow: {} compared, {} dropped; median champion p99 {off:.1} us without, {on:.1} us with shadow ({:+.1}%)",
        st.compared,
        st.dropped,
        100.0 * (on / off - 1.0)
    );
    d.rollback("load test done")?;
    let keys: Vec<Vec<Value>> = (0..ENTITIES).map(|e| vec![Value::I64(e as i64)]).collect();
    let rep = d.precompute(&store, ("user_features", 1), &keys, NOW, 2)?;
    println!(
        "precompute: {} entities in {:.2} s ({:.0}/s) into {} v{}",
        rep.scored,
        rep.seconds,
        rep.scored as f64 / rep.seconds,
        rep.view,
        rep.model_version
    );
    let pre = load::open_loop(rate, dur, 2, |i| {
        lookup_precomputed(
            &store,
            "load",
            &[Value::I64((i as usize * 7 % ENTITIES) as i64)],
        )
        .is_ok_and(|r| r.is_some())
    });
    print("precomputed (one store read)", &pre);
    Ok(())
}
