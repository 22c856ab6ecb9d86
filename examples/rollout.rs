//! # Rollout: shadow -> canary -> champion, through gates, with one-call rollback
//!
//! A new model never goes straight to 100% of traffic. This tutorial registers two GBDT
//! versions from tracked training runs, serves v1 as champion, then walks v2 through:
//!
//! 1. **shadow**: v2 scores a mirror of the traffic on a worker thread (a bounded queue; under
//!    overload, shadow work is dropped and counted, never slowing the champion); the deployment
//!    records agreement, score differences and v2's latency;
//! 2. **canary**: a hash of the routing key sends ~10% of users to v2, sticky per user;
//! 3. **promotion**: only through the gates (samples, agreement, p99 latency, error rate, and
//!    label evidence); skipping a gate takes an override whose reason is audited;
//! 4. **rollback**: one call, atomic, no failed request; the registry keeps why.
//!
//! All state lives in the registry's aliases, so a restarted service comes back as it was.
//! `cargo run -p keel-examples --example rollout`; data in `./keel-data/rollout`.

use anyhow::Result;
use keel::monitor::synth::{self, Shift};
use keel::registry::Registry;
use keel::serve::{
    CanaryGate, Deployment, DeploymentConfig, LabelEvidence, Request, Route, ShadowGate,
};
use keel::store::Value;
use keel::train::{TrainingData, TrainingJob};

const JOB: &str = r#"
experiment = "rollout"
model = "fraud"
label = "label"
params = { objective = "binary", num_iterations = ITERS, num_leaves = 15 }
[[transform.columns]]
column = "amount"
steps = [{ op = "log1p" }]
[[transform.columns]]
column = "risk"
[[transform.columns]]
column = "country"
steps = [{ op = "one_hot" }]
"#;

/// Requests carry all features at request time here (no store); see the quickstart for the
/// feature-store lookup.
fn request(f: &keel::core::Frame, i: usize) -> Result<Request> {
    let country = match f.column("country")?.get(i) {
        keel::core::ValueRef::Str(s) => Value::Str(s.into()),
        _ => Value::Null,
    };
    Ok(Request {
        request_id: format!("r{i}").into(),
        entity: vec![],
        features: vec![
            (
                "amount".into(),
                Value::F64(f.column("amount")?.get_f64(i).unwrap_or(f64::NAN)),
            ),
            (
                "risk".into(),
                Value::F64(f.column("risk")?.get_f64(i).unwrap_or(f64::NAN)),
            ),
            ("country".into(), country),
        ],
        routing_key: Some(format!("user{}", i % 1000)),
    })
}

fn main() -> Result<()> {
    let dir = std::path::Path::new("keel-data/rollout");
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    // Two tracked, registered versions of the same model.
    let reg = Registry::open(dir)?;
    let data = TrainingData::from_frame(synth::transactions(6_000, Shift::None, 1));
    let v1 = TrainingJob::from_toml(&JOB.replace("ITERS", "30"))?.run(&reg, &data)?;
    let v2 = TrainingJob::from_toml(&JOB.replace("ITERS", "120"))?.run(&reg, &data)?;
    let (a1, a2) = (v1.metrics["test.auc"], v2.metrics["test.auc"]);
    println!("registered v1 (test AUC {a1:.3}) and v2 (test AUC {a2:.3})");
    keel::registry::rollout::Rollout::new(&reg, "fraud").first_champion(1, "initial release")?;

    // Gates are the deployment's configuration, fixed when it is opened.
    let cfg = DeploymentConfig {
        shadow_gate: ShadowGate {
            min_samples: 1_000,
            min_agreement: 0.9,
            max_mean_diff: 0.1,
        },
        canary_gate: CanaryGate {
            min_samples: 100,
            max_p99_us: 5_000.0,
            max_error_rate: 0.001,
            metric_margin: 0.0,
            require_labels: true,
        },
        ..DeploymentConfig::default()
    };
    let d = Deployment::from_registry(reg.clone(), "fraud", None, cfg.clone())?;
    let traffic = synth::transactions(5_000, Shift::None, 2);

    // 1. Shadow.
    d.start_shadow(2, "v2 trained with more trees")?;
    for i in 0..2_000 {
        assert_eq!(
            d.predict(request(&traffic, i)?)?.model_version,
            1,
            "shadow never answers"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let s = d.shadow_stats();
    println!(
        "shadow: {} compared, agreement {:.1}%, mean |diff| {:.4}, dropped {}",
        s.compared,
        100.0 * s.agreed as f64 / s.compared.max(1) as f64,
        s.mean_abs_diff,
        s.dropped
    );
    d.promote_to_canary()?;

    // 2. Canary.
    let mut on_canary = 0;
    for i in 2_000..5_000 {
        on_canary += usize::from(d.predict(request(&traffic, i)?)?.route == Route::Canary);
    }
    let (n, errors, p50, p99) = d.route_stats(2, Route::Canary);
    println!(
        "canary: {:.1}% of requests, {n} served, {errors} errors, p50 {p50:.1} us, p99 {p99:.1} us",
        100.0 * on_canary as f64 / 3_000.0
    );

    // 3. Promotion through the gate, with label evidence (here: the registered test AUCs).
    let evidence = LabelEvidence {
        champion: a1,
        challenger: a2,
    };
    match d.promote_to_champion(Some(evidence)) {
        Ok(()) => println!("gate passed: v2 is champion"),
        Err(e) => {
            println!("gate refused: {e}; promoting anyway with an audited override");
            d.override_to_champion("tutorial: show the override path", Some(evidence))?;
        }
    }

    // 4. A restart comes back from the registry; rollback is one call.
    drop(d);
    let d = Deployment::from_registry(reg.clone(), "fraud", None, cfg)?;
    println!("after restart: champion v{}", d.versions().0);
    let v = d.rollback("on-call: p99 alert after promotion")?;
    println!("rollback: champion v{v}");
    for e in reg.audit("fraud")? {
        println!(
            "  audit: {:<9} {:?} -> {:?}  {}",
            e.alias, e.from, e.to, e.reason
        );
    }
    Ok(())
}
