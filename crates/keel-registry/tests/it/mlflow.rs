//! Integration with a real MLflow tracking server: `mlflow server` on loopback (installed by
//! `scripts/python-env.sh`, which `.ci/run` calls), a keel run exported over REST, then read
//! back through MLflow's own REST API.
#![cfg(feature = "mlflow")]

use keel_registry::{MlflowClient, Registry};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // The server forks workers and job consumers: stop its whole process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn mlflow_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEL_MLFLOW") {
        return p.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p = PathBuf::from(home).join(".cache/keel/venv-mlflow/bin/mlflow");
    assert!(
        p.exists(),
        "MLflow is not installed: run scripts/mlflow-env.sh (or set KEEL_MLFLOW)"
    );
    p
}

#[test]
fn runs_round_trip_through_a_real_mlflow_server() {
    let tmp = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(mlflow_bin())
        .args([
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}/mlflow.db", tmp.path().display()))
        .arg("--artifacts-destination")
        .arg(tmp.path().join("artifacts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start mlflow server");
    let _server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = MlflowClient::new(&base);
    let start = Instant::now();
    while client
        .get("experiments/search", &[("max_results", "1")])
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "mlflow server did not start"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

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

    // Exporting into the same experiment again reuses it.
    let again = client.export_run(&reg, &record).unwrap();
    assert_ne!(again, id);
    let exp = client
        .get(
            "experiments/get-by-name",
            &[("experiment_name", "fraud-detection")],
        )
        .unwrap();
    assert_eq!(exp["experiment"]["experiment_id"], info["experiment_id"]);
}
