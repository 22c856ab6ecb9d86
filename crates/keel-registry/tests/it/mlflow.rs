//! Integration with a real MLflow tracking server: `mlflow server` on loopback (installed by
//! `scripts/python-env.sh`, which `.ci/run` calls), a keel run exported over REST, then read
//! back through MLflow's own REST API.
#![cfg(feature = "mlflow")]

use keel_core::ManualClock;
use keel_registry::rollout::Rollout;
use keel_registry::signing::{public_path, SigningKey, TrustedKeys};
use keel_registry::{Bundle, LocalMlflow, MlflowClient, Registry, RegistryError, RunFilter, RunId};
use std::sync::Arc;

#[test]
fn runs_round_trip_through_a_real_mlflow_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = LocalMlflow::start().expect("start mlflow server");
    let client = MlflowClient::new(&server.url());
    let reg = Registry::open(tmp.path().join("keel")).unwrap();
    let mut run = reg.start_run("fraud-detection").unwrap();
    run.set_name("lgbm-baseline").unwrap();
    run.set_seed(42).unwrap();
    run.log_params([("num_leaves", "31"), ("learning_rate", "0.05")])
        .unwrap();
    for step in 0..5u64 {
        run.log_metric("train.logloss", 0.7 - 0.1 * step as f64, step)
            .unwrap();
    }
    run.log_metric("test.auc", 0.912, 0).unwrap();
    run.set_tag("team", "risk").unwrap();
    run.log_data("train", "9f86d081884c7d65").unwrap();
    run.log_artifact("feature_importance.json", br#"{"amount": 0.4}"#)
        .unwrap();
    let record = run.finish().unwrap();

    let id = client.export_run(&reg, &record).unwrap();

    // Read back through MLflow's API.
    let got = client.get("runs/get", &[("run_id", &id)]).unwrap();
    let info = &got["run"]["info"];
    assert_eq!(info["status"], "FINISHED");
    assert_eq!(info["run_name"], "lgbm-baseline");
    assert_eq!(info["start_time"].as_i64(), Some(record.start_ms));
    let data = &got["run"]["data"];
    let find = |arr: &serde_json::Value, key: &str| -> serde_json::Value {
        arr.as_array()
            .unwrap()
            .iter()
            .find(|x| x["key"] == key)
            .unwrap_or_else(|| panic!("{key} missing in {arr}"))["value"]
            .clone()
    };
    assert_eq!(find(&data["params"], "num_leaves"), "31");
    assert_eq!(find(&data["params"], "learning_rate"), "0.05");
    assert_eq!(find(&data["tags"], "team"), "risk");
    assert_eq!(find(&data["tags"], "keel.seed"), "42");
    assert_eq!(find(&data["tags"], "keel.run_id"), record.id.0.as_str());
    assert_eq!(find(&data["tags"], "keel.data.train"), "9f86d081884c7d65");
    assert_eq!(find(&data["metrics"], "test.auc").as_f64(), Some(0.912));

    let hist = client
        .get(
            "metrics/get-history",
            &[("run_id", &id), ("metric_key", "train.logloss")],
        )
        .unwrap();
    let mut pts: Vec<(i64, f64)> = hist["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["step"].as_i64().unwrap(), m["value"].as_f64().unwrap()))
        .collect();
    pts.sort_by_key(|p| p.0);
    assert_eq!(pts.len(), 5);
    for (i, (step, v)) in pts.iter().enumerate() {
        assert_eq!(*step, i as i64);
        assert!((v - (0.7 - 0.1 * i as f64)).abs() < 1e-12);
    }

    let arts = client.get("artifacts/list", &[("run_id", &id)]).unwrap();
    let files: Vec<&str> = arts["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, vec!["feature_importance.json"]);
    let size = arts["files"][0]["file_size"].as_i64().unwrap();
    assert_eq!(size, br#"{"amount": 0.4}"#.len() as i64);

    // A model of the directory registry: versions and aliases go to MLflow's registry, once.
    let mut run2 = reg.start_run("fraud-detection").unwrap();
    run2.log_param("num_leaves", "63").unwrap();
    let run2 = run2.finish().unwrap();
    reg.register(
        "fraud",
        &record.id,
        Bundle::new("gbdt").with_file("model", b"v1".to_vec()),
    )
    .unwrap();
    reg.register(
        "fraud",
        &run2.id,
        Bundle::new("gbdt").with_file("model", b"v2".to_vec()),
    )
    .unwrap();
    reg.set_alias("fraud", "champion", 2, "better").unwrap();
    let first = client.export_model(&reg, "fraud").unwrap();
    assert_eq!(first.created, 2);
    assert_eq!(first.versions.len(), 2);
    let again = client.export_model(&reg, "fraud").unwrap();
    assert_eq!(
        (again.created, &again.versions),
        (0, &first.versions),
        "nothing twice"
    );
    let shared = Registry::at(&server.url()).unwrap();
    assert_eq!(shared.versions("fraud").unwrap().len(), 2);
    let champion = first.versions[&2];
    assert_eq!(first.aliases["champion"], champion);
    assert_eq!(shared.alias("fraud", "champion").unwrap(), Some(champion));
    assert_eq!(
        shared
            .load("fraud", champion)
            .unwrap()
            .file("model")
            .unwrap(),
        b"v2"
    );
    assert_eq!(
        shared.audit("fraud").unwrap().len(),
        1,
        "one alias move, not two"
    );
    let exported_run = shared.version("fraud", first.versions[&1]).unwrap().run_id;
    assert_eq!(exported_run.0, id, "the version names the exported run");

    // Exporting into the same experiment again reuses it.
    let again = client.export_run(&reg, &record).unwrap();
    assert_eq!(again, id, "a re-export updates the run it made before");
    let exp = client
        .get(
            "experiments/get-by-name",
            &[("experiment_name", "fraud-detection")],
        )
        .unwrap();
    assert_eq!(exp["experiment"]["experiment_id"], info["experiment_id"]);
}

fn finished_run(reg: &Registry, clock: &ManualClock, depth: u32, auc: f64) -> RunId {
    clock.advance(1000);
    let mut r = reg.start_run("fraud").unwrap();
    r.set_name(&format!("depth-{depth}")).unwrap();
    r.set_seed(7).unwrap();
    r.log_params([("max_depth", depth.to_string()), ("lr", "0.1".to_string())])
        .unwrap();
    for step in 0..3 {
        clock.advance(10);
        r.log_metric("train.loss", 1.0 / (step + 1) as f64, step)
            .unwrap();
    }
    r.log_metrics([("valid.auc", auc)], 0).unwrap();
    r.set_tag("team", "risk").unwrap();
    r.log_data("train", "ab12cd").unwrap();
    r.log_artifact("notes.txt", b"hello").unwrap();
    let id = r.id().clone();
    clock.advance(5);
    r.finish().unwrap();
    id
}

/// The same calls give the same answers on a directory and on a real MLflow server: runs
/// (params, metric histories, tags, seed, data, artifacts, search), versions (files verified),
/// aliases with their hash-chained audit and rollback, the rollout's moves, signatures.
#[test]
fn the_registry_on_mlflow_answers_like_the_directory() {
    let server = LocalMlflow::start().expect("start mlflow server");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let local = Registry::open_with_clock(dir.path().join("reg"), clock.clone()).unwrap();
    let shared = Registry::at(&format!("mlflow+{}", server.url()))
        .unwrap()
        .with_clock(clock.clone());
    assert!(shared.is_shared() && !local.is_shared());
    assert!(shared.root().is_none());

    for reg in [&local, &shared] {
        let a = finished_run(reg, &clock, 4, 0.81);
        let b = finished_run(reg, &clock, 6, 0.86);
        let run = reg.run(&a).unwrap();
        assert_eq!(run.experiment, "fraud");
        assert_eq!(run.name.as_deref(), Some("depth-4"));
        assert_eq!(run.params["max_depth"], "4");
        let loss: Vec<(u64, f64)> = run.metrics["train.loss"]
            .iter()
            .map(|p| (p.step, p.value))
            .collect();
        assert_eq!(loss, vec![(0, 1.0), (1, 0.5), (2, 1.0 / 3.0)]);
        assert_eq!(run.seed, Some(7));
        assert_eq!(run.tags.get("team").map(String::as_str), Some("risk"));
        assert_eq!(run.data[0].version, "ab12cd");
        assert_eq!(run.duration_ms(), Some(35));
        assert_eq!(reg.artifact(&a, "notes.txt").unwrap(), b"hello");
        let best = reg
            .search_runs(
                &RunFilter::parse("experiment=fraud order_by=valid.auc desc limit=1").unwrap(),
            )
            .unwrap();
        assert_eq!(best.len(), 1);
        assert_eq!(best[0].id, b);
        assert_eq!(
            best[0].metrics["train.loss"].len(),
            3,
            "histories, not the latest point"
        );

        // Registration from a running run is refused; versions verify.
        let open_run = reg.start_run("fraud").unwrap();
        let bundle = Bundle::new("gbdt").with_file("model", b"model bytes".to_vec());
        assert!(matches!(
            reg.register("fraud", open_run.id(), bundle.clone()),
            Err(RegistryError::RunNotFinished { .. })
        ));
        for i in 1..=3u8 {
            let v = reg
                .register("fraud", &a, bundle.clone().with_file("extra", vec![i]))
                .unwrap();
            assert_eq!(v.version, u32::from(i));
        }
        assert_eq!(reg.versions("fraud").unwrap(), vec![1, 2, 3]);
        assert_eq!(reg.models().unwrap(), vec!["fraud".to_string()]);
        let loaded = reg.load("fraud", 2).unwrap();
        assert_eq!(loaded.file("model").unwrap(), b"model bytes");
        assert_eq!(loaded.file("extra").unwrap(), [2]);
        assert_eq!(loaded.version.meta.seed, Some(7));
        assert!(matches!(
            reg.load("fraud", 9),
            Err(RegistryError::UnknownVersion { version: 9, .. })
        ));

        // The rollout and its audit.
        let ro = Rollout::new(reg, "fraud");
        ro.first_champion(1, "first").unwrap();
        assert!(matches!(
            ro.first_champion(2, "again"),
            Err(RegistryError::Transition { .. })
        ));
        ro.shadow(2, "retrained").unwrap();
        ro.to_canary(2, "shadow gate passed").unwrap();
        assert!(matches!(
            ro.shadow(3, "no"),
            Err(RegistryError::Transition { .. })
        ));
        ro.promote(2, "canary gate passed").unwrap();
        let st = ro.state().unwrap();
        assert_eq!((st.champion, st.shadow, st.canary), (Some(2), None, None));
        assert_eq!(ro.rollback_target().unwrap(), Some(1));
        assert!(matches!(
            ro.rollback_champion(Some(3), "stale"),
            Err(RegistryError::AliasMoved { .. })
        ));
        ro.rollback_champion(Some(1), "p99 regression").unwrap();
        assert_eq!(reg.alias("fraud", "champion").unwrap(), Some(1));
        let audit = reg.audit("fraud").unwrap();
        let moves: Vec<(&str, Option<u32>, Option<u32>, bool)> = audit
            .iter()
            .map(|e| (e.alias.as_str(), e.from, e.to, e.rollback))
            .collect();
        assert_eq!(
            moves,
            vec![
                ("champion", None, Some(1), false),
                ("shadow", None, Some(2), false),
                ("canary", None, Some(2), false),
                ("shadow", Some(2), None, false),
                ("champion", Some(1), Some(2), false),
                ("canary", Some(2), None, false),
                ("champion", Some(2), Some(1), true),
            ]
        );
        assert_eq!(audit[4].reason, "canary gate passed");
        assert_eq!(reg.audit_head("fraud").unwrap().len(), 64);
        assert!(reg.check().unwrap().is_clean(), "{:?}", reg.check());
    }
    // The two registries recorded the same moves with the same reasons.
    let strip = |reg: &Registry| {
        reg.audit("fraud")
            .unwrap()
            .into_iter()
            .map(|e| (e.alias, e.from, e.to, e.reason, e.rollback))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&local), strip(&shared));

    // MLflow's own view: the alias is MLflow's (models:/fraud@champion), the files are the
    // version's artifacts, the sha256 of each is a version tag.
    let client = MlflowClient::new(&server.url());
    let alias = client
        .get(
            "registered-models/alias",
            &[("name", "fraud"), ("alias", "champion")],
        )
        .unwrap();
    assert_eq!(alias["model_version"]["version"], "1");
    let tags = &alias["model_version"]["tags"];
    assert!(tags
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "keel.sha256.model"));

    // A file changed behind the registry's back is refused like a tampered directory.
    let artifacts = server.dir().join("artifacts");
    let victim = walk(&artifacts)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "extra") && std::fs::read(p).unwrap() == [3])
        .expect("v3's extra file on the server's disk");
    std::fs::write(&victim, [4]).unwrap();
    assert!(matches!(
        shared.load("fraud", 3),
        Err(RegistryError::Tampered { .. })
    ));
    assert!(!shared.check().unwrap().is_clean());

    // Signed versions: only trusted signatures load.
    let key_path = dir.path().join("signing.key");
    SigningKey::write_new(&key_path).unwrap();
    let trusted = TrustedKeys::from_file(&public_path(&key_path)).unwrap();
    let run = finished_run(&shared, &clock, 5, 0.8);
    let signer = shared
        .clone()
        .with_signing_key(SigningKey::from_file(&key_path).unwrap());
    let signed = signer
        .register(
            "signed",
            &run,
            Bundle::new("gbdt").with_file("model", vec![1]),
        )
        .unwrap();
    let unsigned = shared
        .register(
            "signed",
            &run,
            Bundle::new("gbdt").with_file("model", vec![2]),
        )
        .unwrap();
    let verifying = shared.clone().with_trusted_keys(trusted);
    assert!(verifying.load("signed", signed.version).is_ok());
    assert!(matches!(
        verifying.load("signed", unsigned.version),
        Err(RegistryError::Unsigned { .. })
    ));

    // Writers in parallel (separate handles, as separate replicas would be) serialise on the
    // move lock: every move lands, the chain holds.
    std::thread::scope(|s| {
        for t in 0..4 {
            let reg = Registry::at(&server.url()).unwrap();
            s.spawn(move || {
                for i in 0..3 {
                    reg.set_alias("signed", &format!("a{t}"), 1 + (i % 2), "parallel")
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(shared.audit("signed").unwrap().len(), 12);

    // Unreachable: a typed error that says so.
    let url = server.url();
    drop(server);
    let err = shared.alias("fraud", "champion").unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(Registry::at(&url).unwrap_err().is_unreachable());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
