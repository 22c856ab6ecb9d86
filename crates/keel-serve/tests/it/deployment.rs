//! Deployments end to end: store lookup + pipeline + GBDT, shadow (bounded, never slowing the
//! champion), sticky canary, gated promotion with recorded overrides, atomic rollback under
//! load, restart from the registry, prediction log and Prometheus metrics.

use crate::common::*;
use keel_serve::*;
use keel_store::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A deployment configuration that logs nothing (tests that do not read the log).
fn unlogged() -> DeploymentConfig {
    DeploymentConfig {
        log_sample_rate: 0.0,
        ..DeploymentConfig::default()
    }
}

/// The entity keys `card0..card{n-1}`.
fn card_keys(n: usize) -> Vec<Vec<Value>> {
    (0..n)
        .map(|i| vec![Value::Str(format!("card{i}"))])
        .collect()
}

fn req(i: usize) -> Request {
    Request {
        request_id: format!("req-{i}").into(),
        entity: vec![Value::Str(format!("card{}", i % 200))],
        ..Default::default()
    }
}

#[test]
fn champion_answers_with_store_features_version_route_and_freshness() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let d = deployment(&reg, &store, DeploymentConfig::default());
    let r = d.predict(req(7)).unwrap();
    assert_eq!((r.model_version, r.route), (1, Route::Champion));
    assert_eq!(r.freshness_ms, Some(60_000));
    assert!(r.missing_features.is_empty());
    assert!(r.scores[0] > 0.0 && r.scores[0] < 1.0);
    // Request-time features override stored ones; an unknown entity is served with missing
    // features (the model's NaN handling), and says so.
    let mut q = req(7);
    q.features = vec![("amount".into(), Value::F64(1e6))];
    let r2 = d.predict(q).unwrap();
    assert_ne!(r2.scores, r.scores);
    // Issue 22, finding 9: an unknown entity was scored as if imputed, silently. The default
    // policy refuses it; `impute` scores it and lists what was missing.
    let nobody = || Request {
        entity: vec![Value::Str("nobody".into())],
        ..Default::default()
    };
    let err = d.predict(nobody()).unwrap_err();
    assert!(
        matches!(&err, ServeError::UnknownEntity { entity, .. } if entity.contains("nobody")),
        "{err}"
    );
    let imputing = deployment(
        &reg,
        &store,
        DeploymentConfig {
            on_missing: OnMissing::Impute,
            log_sample_rate: 0.0,
            ..DeploymentConfig::default()
        },
    );
    let r3 = imputing.predict(nobody()).unwrap();
    let names: Vec<&str> = r3
        .missing_features
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["amount", "risk", "country"]);
    assert!(r3
        .missing_features
        .iter()
        .all(|m| m.status == keel_store::Status::NotFound));
    assert!(imputing
        .prometheus()
        .contains("keel_unknown_entities_total{model=\"fraud\"} 1"));
    // Wrong feature types are typed errors, and counted.
    let mut bad = req(1);
    bad.features = vec![("country".into(), Value::F64(1.0))];
    assert!(matches!(d.predict(bad), Err(ServeError::Transform(_))));
    assert_eq!(d.route_stats(1, Route::Champion).1, 2);
    let log = d.drain_log();
    assert_eq!(log.len(), 2, "failed requests are not logged");
    assert_eq!(log[0].request_id, "req-7");
    assert_eq!(log[0].inputs.len(), 3);
    let prom = d.prometheus();
    assert!(
        prom.contains("keel_requests_total{model=\"fraud\",version=\"1\",route=\"champion\"} 4"),
        "{prom}"
    );
    assert!(prom.contains("quantile=\"0.99\""));
}

#[test]
fn shadow_canary_promotion_and_rollback_through_gates() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    // Issue 22, finding 5: the gates are the deployment's configuration; a caller cannot bring
    // its own (all-zero) thresholds, and passing a failed gate is its own audited action.
    let cfg = DeploymentConfig {
        shadow_gate: ShadowGate {
            min_samples: 100_000,
            min_agreement: 0.9,
            max_mean_diff: 0.2,
        },
        canary_gate: CanaryGate {
            min_samples: 50,
            max_p99_us: 1e6,
            max_error_rate: 0.01,
            metric_margin: 0.01,
            require_labels: true,
        },
        ..DeploymentConfig::default()
    };
    let d = deployment(&reg, &store, cfg.clone());
    d.start_shadow(2, "retrained").unwrap();
    for i in 0..400 {
        let r = d.predict(req(i)).unwrap();
        assert_eq!(r.model_version, 1, "shadow never answers");
    }
    // Let the shadow worker drain.
    for _ in 0..200 {
        if d.shadow_stats().compared + d.shadow_stats().dropped >= 400 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let st = d.shadow_stats();
    assert_eq!(st.compared + st.dropped, 400, "{st:?}");
    assert!(st.agreed as f64 / st.compared as f64 > 0.8, "{st:?}");
    assert!(
        matches!(d.promote_to_canary(), Err(ServeError::GateFailed(m)) if m.contains("compared < 100000"))
    );
    assert!(matches!(
        d.override_to_canary("  "),
        Err(ServeError::BadRequest(_))
    ));
    assert_eq!(d.versions().1, Some((2, Stage::Shadow)), "nothing moved");
    d.override_to_canary("offline evaluation covers it")
        .unwrap();
    let audit = reg.audit("fraud").unwrap();
    assert!(
        audit.iter().any(|e| e.reason.starts_with(
            "shadow -> canary: OVERRIDE (offline evaluation covers it); failed checks: "
        )),
        "{audit:?}"
    );
    assert_eq!(
        d.versions(),
        (1, Some((2, Stage::Canary { percent: 10.0 })))
    );
    // Canary: ~10% of keys, sticky per key.
    let mut canary = 0;
    for i in 0..2000 {
        let mut q = req(i);
        q.routing_key = Some(format!("user{}", i % 500));
        let r = d.predict(q.clone()).unwrap();
        let again = d.predict(q).unwrap();
        assert_eq!(r.route, again.route, "sticky");
        canary += usize::from(r.route == Route::Canary);
        assert_eq!(
            r.model_version,
            if r.route == Route::Canary { 2 } else { 1 }
        );
    }
    let share = canary as f64 / 2000.0;
    assert!((0.05..0.15).contains(&share), "canary share {share}");
    assert!(
        matches!(d.promote_to_champion(None), Err(ServeError::GateFailed(m)) if m.contains("label"))
    );
    let worse = LabelEvidence {
        champion: 0.80,
        challenger: 0.70,
    };
    assert!(d.promote_to_champion(Some(worse)).is_err());
    d.override_to_champion("incident 42: ship the fix", Some(worse))
        .unwrap();
    assert_eq!(d.versions(), (2, None));
    let audit = reg.audit("fraud").unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.reason.contains("OVERRIDE (incident 42")),
        "{audit:?}"
    );
    // Restart: comes back from the registry as it was.
    drop(d);
    let d = deployment(&reg, &store, DeploymentConfig::default());
    assert_eq!(d.versions(), (2, None));
    // Rollback moves the champion back.
    assert_eq!(d.rollback("p99 regression").unwrap(), 1);
    assert_eq!(d.versions(), (1, None));
    assert_eq!(reg.alias("fraud", CHAMPION).unwrap(), Some(1));
    assert!(matches!(d.rollback("again"), Err(ServeError::Stage(_))));
    assert_eq!(
        reg.alias("fraud", CHAMPION).unwrap(),
        Some(1),
        "never left without a champion"
    );
}

#[test]
fn overloaded_shadow_drops_work_instead_of_slowing_the_champion() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let d = deployment(
        &reg,
        &store,
        DeploymentConfig {
            shadow_queue: 1,
            ..DeploymentConfig::default()
        },
    );
    d.start_shadow(2, "tiny queue").unwrap();
    for i in 0..2000 {
        d.predict(req(i)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let st = d.shadow_stats();
    assert_eq!(st.compared + st.dropped, 2000);
    assert!(st.dropped > 0, "a queue of 1 must overflow: {st:?}");
}

#[test]
fn rollback_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let d = Arc::new(deployment(
        &reg,
        &store,
        DeploymentConfig {
            log_sample_rate: 0.0,
            shadow_gate: ShadowGate {
                min_samples: 0,
                min_agreement: 0.0,
                max_mean_diff: 1.0,
            },
            ..DeploymentConfig::default()
        },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let (d, stop, served) = (d.clone(), stop.clone(), served.clone());
            std::thread::spawn(move || {
                let mut i = t * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let r = d.predict(req(i)).expect("no request fails during rollback");
                    assert!(r.model_version == 1 || r.model_version == 2);
                    served.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for round in 0..5 {
        d.start_shadow(2, "load test").unwrap();
        d.promote_to_canary().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(d.rollback(&format!("round {round}")).unwrap(), 2);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(served.load(Ordering::Relaxed) > 100);
    assert_eq!(d.versions(), (1, None));
}

#[test]
fn precomputed_predictions_match_online_and_the_open_loop_harness_measures_both() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let d = deployment(&reg, &store, unlogged());
    let keys = card_keys(200);
    let rep = d
        .precompute(&store, ("card_features", 1), &keys, NOW - 1000, 2)
        .unwrap();
    assert_eq!((rep.scored, rep.errors, rep.model_version), (200, 0, 1));
    assert_eq!(rep.view, "fraud_predictions");
    for i in [0usize, 57, 199] {
        let online = d.predict(req(i)).unwrap();
        let p = lookup_precomputed(&store, "fraud", &keys[i])
            .unwrap()
            .unwrap();
        assert_eq!(p.model_version, 1);
        assert_eq!(p.scores.len(), 1);
        assert_eq!(p.scores[0].to_bits(), online.scores[0].to_bits(), "card{i}");
    }
    assert_eq!(
        lookup_precomputed(&store, "fraud", &[Value::Str("nobody".into())]).unwrap(),
        None
    );
    let online = load::open_loop(1000.0, std::time::Duration::from_millis(300), 2, |i| {
        d.predict(req(i as usize)).is_ok()
    });
    let pre = load::open_loop(1000.0, std::time::Duration::from_millis(300), 2, |i| {
        lookup_precomputed(&store, "fraud", &keys[i as usize % 200]).is_ok_and(|r| r.is_some())
    });
    for r in [&online, &pre] {
        assert_eq!((r.sent, r.errors), (300, 0), "{r:?}");
        assert!(
            r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.p999_us,
            "{r:?}"
        );
    }
}

/// Issue 22, finding 6: a rollback whose target bundle is tampered used to move the alias and
/// then fail, so registry and server disagreed and the next restart failed. The target is
/// verified first now: the error changes nothing.
#[test]
fn a_rollback_to_a_tampered_bundle_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    reg.set_alias("fraud", CHAMPION, 2, "v2 ships").unwrap();
    let d = deployment(&reg, &store, DeploymentConfig::default());
    assert_eq!(d.versions(), (2, None));
    // Flip a byte of every file of v1's bundle except its manifest.
    let v1 = reg
        .root()
        .expect("a directory registry")
        .join("models/fraud/v1");
    for f in std::fs::read_dir(&v1).unwrap().flatten() {
        if f.file_name() != "MANIFEST" {
            let mut b = std::fs::read(f.path()).unwrap();
            let last = b.len() - 1;
            b[last] ^= 0x55;
            std::fs::write(f.path(), b).unwrap();
        }
    }
    let err = d.rollback("p99 alert").unwrap_err();
    assert!(
        matches!(
            err,
            ServeError::Registry(keel_registry::RegistryError::Tampered { .. })
        ),
        "{err}"
    );
    assert_eq!(d.versions(), (2, None), "still serving v2");
    assert_eq!(
        reg.alias("fraud", CHAMPION).unwrap(),
        Some(2),
        "alias unmoved"
    );
    // A restart comes back as it was.
    drop(d);
    let d = deployment(&reg, &store, DeploymentConfig::default());
    assert_eq!(d.versions(), (2, None));
    assert!(d.predict(req(1)).is_ok());
}

/// Issue 22, finding 3: the prediction log is bounded in bytes as well as in records, so long
/// request ids cannot grow memory without bound.
#[test]
fn the_prediction_log_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let d = deployment(
        &reg,
        &store,
        DeploymentConfig {
            log_max_bytes: 64 << 10,
            ..DeploymentConfig::default()
        },
    );
    let long = "x".repeat(4096);
    for i in 0..1_000 {
        let mut r = req(i);
        r.request_id = format!("{long}-{i}").into();
        d.predict(r).unwrap();
    }
    let log = d.drain_log();
    let bytes: usize = log
        .iter()
        .map(|r| r.request_id.len() + r.inputs.iter().map(|(n, _)| n.len() + 32).sum::<usize>())
        .sum();
    assert!(!log.is_empty() && log.len() < 16, "{} records", log.len());
    assert!(bytes <= 64 << 10, "{bytes} bytes logged");
    assert!(
        log.last().unwrap().request_id.ends_with("-999"),
        "newest kept"
    );
}

/// Issue 22, finding 8: a bundle whose model reads a different number of features than its
/// pipeline writes used to load, then fail every request. It is refused at load now, and
/// putting it in shadow moves nothing.
#[test]
fn a_bundle_whose_model_and_pipeline_disagree_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let v1 = reg.load("fraud", 1).unwrap();
    // A pipeline of another width: amount and risk only.
    let narrow = keel_train::TrainingJob::from_toml(
        r#"
experiment = "fraud"
model = "narrow"
label = "label"
params = { objective = "binary", num_iterations = 5, num_leaves = 7 }
[[transform.columns]]
column = "amount"
[[transform.columns]]
column = "risk"
"#,
    )
    .unwrap()
    .run(
        &reg,
        &keel_train::TrainingData::from_frame(keel_monitor::synth::transactions(
            500,
            keel_monitor::synth::Shift::None,
            3,
        )),
    )
    .unwrap()
    .version
    .unwrap();
    let narrow = reg.load("narrow", narrow.version).unwrap();
    let mixed = reg
        .register(
            "fraud",
            &narrow.version.run_id,
            keel_registry::Bundle::new("gbdt")
                .with_file("model", v1.file("model").unwrap().to_vec())
                .with_file("pipeline", narrow.file("pipeline").unwrap().to_vec()),
        )
        .unwrap();
    let err = ServedModel::from_bundle(&reg.load("fraud", mixed.version).unwrap()).unwrap_err();
    assert!(
        matches!(&err, ModelError::IncompatibleBundle { reason, .. } if reason.contains("pipeline writes 2")),
        "{err}"
    );
    let d = deployment(&reg, &store, DeploymentConfig::default());
    assert!(d.start_shadow(mixed.version, "bad bundle").is_err());
    assert_eq!(d.versions(), (1, None));
    assert_eq!(reg.alias("fraud", SHADOW).unwrap(), None);
}

/// Issue 22, finding 8: with trusted keys a deployment serves only signed versions, at start and
/// at every shadow; an unsigned challenger moves nothing.
#[test]
fn a_deployment_with_trusted_keys_serves_signed_versions_only() {
    use keel_registry::signing::{SigningKey, TrustedKeys};
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let key = SigningKey::generate().unwrap();
    let trusted = TrustedKeys::new([key.public()]);
    let open = |reg: &keel_registry::Registry| {
        Deployment::from_registry(
            reg.clone().with_trusted_keys(trusted.clone()),
            "fraud",
            Some((store.clone(), "fraud".into())),
            DeploymentConfig::default(),
        )
    };
    assert!(matches!(
        open(&reg),
        Err(ServeError::Registry(
            keel_registry::RegistryError::Unsigned { version: 1, .. }
        ))
    ));
    reg.sign("fraud", 1, &key).unwrap();
    let d = open(&reg).unwrap();
    assert!(d.predict(req(3)).is_ok());
    assert!(matches!(
        d.start_shadow(2, "unsigned challenger"),
        Err(ServeError::Registry(
            keel_registry::RegistryError::Unsigned { version: 2, .. }
        ))
    ));
    assert_eq!(d.versions(), (1, None));
    assert_eq!(reg.alias("fraud", SHADOW).unwrap(), None);
}

/// Issue 21: precomputed predictions kept `scores[0]` only, so a multiclass model lost its
/// classes. Every output is written and read back now.
#[test]
fn precomputed_predictions_keep_every_class_of_a_multiclass_model() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let data = keel_train::TrainingData::from_frame(keel_monitor::synth::transactions(
        2000,
        keel_monitor::synth::Shift::None,
        9,
    ));
    let v =
        job_with("objective = \"multiclass\", num_class = 2, num_iterations = 10, num_leaves = 7")
            .run(&reg, &data)
            .unwrap()
            .version
            .unwrap();
    reg.set_alias("fraud", CHAMPION, v.version, "multiclass")
        .unwrap();
    let d = deployment(&reg, &store, unlogged());
    let keys = card_keys(20);
    let rep = d
        .precompute(&store, ("card_features", 1), &keys, NOW - 1000, 2)
        .unwrap();
    assert_eq!((rep.scored, rep.errors), (20, 0));
    for (i, k) in keys.iter().enumerate() {
        let online = d.predict(req(i)).unwrap();
        assert_eq!(online.scores.len(), 2);
        let p = lookup_precomputed(&store, "fraud", k).unwrap().unwrap();
        assert_eq!(p.model_version, v.version);
        let bits = |s: &[f64]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&p.scores), bits(&online.scores), "card{i}");
    }
}

/// Issue 20: replicas of one model share a registry. One replica's move reaches the other by
/// `follow`; the gates merge both replicas' published evidence and say how much they saw; a
/// version that does not verify is never swapped in, and the refusal is reported.
#[test]
fn replicas_follow_the_aliases_merge_their_evidence_and_refuse_tampered_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let cfg = DeploymentConfig {
        shadow_gate: ShadowGate {
            min_samples: 300,
            min_agreement: 0.0,
            max_mean_diff: 1.0,
        },
        canary_gate: CanaryGate {
            min_samples: 0,
            max_p99_us: 1e9,
            max_error_rate: 1.0,
            metric_margin: 1.0,
            require_labels: false,
        },
        ..unlogged()
    };
    let a = deployment(&reg, &store, cfg.clone()).with_replica("replica-a");
    let b = deployment(&reg, &store, cfg.clone()).with_replica("replica-b");

    a.start_shadow(2, "retrained").unwrap();
    assert_eq!(b.versions(), (1, None));
    assert!(b.follow().unwrap(), "B follows A's shadow");
    assert_eq!(b.versions(), (1, Some((2, Stage::Shadow))));
    assert!(!b.follow().unwrap(), "nothing moved since");

    // 200 mirrored requests on each replica: not enough alone, enough together.
    for d in [&a, &b] {
        for i in 0..200 {
            d.predict(req(i)).unwrap();
        }
        for _ in 0..400 {
            if d.shadow_stats().compared + d.shadow_stats().dropped >= 200 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let alone = b.shadow_stats().compared;
    assert!(alone < 300);
    assert!(
        matches!(b.promote_to_canary(), Err(ServeError::GateFailed(m)) if m.contains("1 replica(s)")),
        "B alone has too little evidence"
    );
    a.publish_evidence().unwrap();
    let fleet = b.fleet_evidence().unwrap();
    assert_eq!(fleet.replicas, 2);
    assert_eq!(
        fleet.shadow.compared,
        alone + a.shadow_stats().compared,
        "counters add up exactly"
    );
    assert!(fleet.shadow.compared >= 300, "{fleet:?}");
    b.promote_to_canary().unwrap();
    let audit = reg.audit("fraud").unwrap();
    let gate = &audit[audit.len() - 2];
    assert_eq!((gate.alias.as_str(), gate.to), ("canary", Some(2)));
    assert!(
        gate.reason.contains(&format!(
            "fleet evidence: 2 replica(s), {} shadow comparisons",
            fleet.shadow.compared
        )),
        "{}",
        gate.reason
    );
    // A follows, and its counters restart with the canary stint: A's old shadow evidence
    // does not count for the canary.
    assert!(a.follow().unwrap());
    assert!(matches!(a.versions(), (1, Some((2, Stage::Canary { .. })))));
    assert_eq!(a.fleet_evidence().unwrap().shadow.compared, 0);

    b.promote_to_champion(None).unwrap();
    assert!(a.follow().unwrap());
    assert_eq!(a.versions(), (2, None));
    assert_eq!(
        a.follow_status().swaps,
        2,
        "canary and champion, both followed"
    );

    // A replica started now holds v2 only. v1's bundle is tampered with, then the champion
    // alias is moved back to it behind the replicas' backs: the new replica refuses it and
    // keeps serving v2; A still holds v1 as it verified it and swaps it back in.
    let c = deployment(&reg, &store, cfg).with_replica("replica-c");
    let v1 = reg
        .root()
        .expect("a directory registry")
        .join("models/fraud/v1");
    for f in std::fs::read_dir(&v1).unwrap().flatten() {
        if f.file_name() != "MANIFEST" {
            let mut bytes = std::fs::read(f.path()).unwrap();
            bytes[0] ^= 0x55;
            std::fs::write(f.path(), bytes).unwrap();
        }
    }
    keel_registry::rollout::Rollout::new(&reg, "fraud")
        .rollback_champion(Some(1), "p99 alert")
        .unwrap();
    assert!(c.follow().is_err());
    assert_eq!(
        c.versions(),
        (2, None),
        "the tampered version is never served"
    );
    let st = c.follow_status();
    assert!(!st.stale);
    assert!(st.refused[&1].contains("tampered"), "{st:?}");
    assert!(c.predict(req(3)).is_ok());
    assert!(c
        .prometheus()
        .contains("keel_registry_refused_versions{model=\"fraud\"} 1"));
    assert!(a.follow().unwrap());
    assert_eq!(a.versions(), (1, None));
}
