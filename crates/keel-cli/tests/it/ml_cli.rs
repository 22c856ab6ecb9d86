//! `keel train`, `keel runs`, `keel models` end to end on a generated CSV.

use std::process::Command;

use crate::keel;

const JOB: &str = r#"
experiment = "cli"
model = "demo"
label = "y"
timestamp = "t"
params = { objective = "binary", num_iterations = 20, num_leaves = 7, min_data_in_leaf = 5 }
[[transform.columns]]
column = "x"
steps = [{ op = "impute", strategy = "mean" }, { op = "standardize" }]
[[transform.columns]]
column = "c"
steps = [{ op = "one_hot" }]
"#;

#[test]
fn train_runs_models_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let mut csv = String::from("t,x,c,y\n");
    for i in 0..600u64 {
        let x = ((i * 7919) % 1000) as f64 / 100.0;
        let c = ["a", "b", "c"][(i % 3) as usize];
        let y = u8::from(x + if c == "a" { 3.0 } else { 0.0 } > 6.0 && i % 11 != 0);
        let xs = if i % 17 == 0 {
            String::new()
        } else {
            x.to_string()
        };
        csv.push_str(&format!("{i},{xs},{c},{y}\n"));
    }
    std::fs::write(p("data.csv"), csv).unwrap();
    std::fs::write(p("job.toml"), JOB).unwrap();
    let reg = p("registry");

    let (ok, out, err) = keel(&[
        "train",
        "--registry",
        &reg,
        "--config",
        &p("job.toml"),
        "--data",
        &p("data.csv"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("registered demo v1"), "{out}");
    assert!(out.contains("test.auc"), "{out}");
    let run1 = out.split_whitespace().nth(1).unwrap().to_string();
    let (ok, out, _) = keel(&[
        "train",
        "--registry",
        &reg,
        "--config",
        &p("job.toml"),
        "--data",
        &p("data.csv"),
    ]);
    assert!(ok);
    let run2 = out.split_whitespace().nth(1).unwrap().to_string();

    let (ok, out, err) = keel(&[
        "runs",
        "list",
        "--registry",
        &reg,
        "experiment=cli",
        "order_by=metrics.test.auc",
        "desc",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&run1) && out.contains(&run2), "{out}");
    let (ok, out, _) = keel(&["runs", "show", "--registry", &reg, &run1]);
    assert!(ok);
    assert!(out.starts_with("FIELD"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("seed") && l.ends_with("42")),
        "{out}"
    );
    // Issue 24: --format json|csv on every command that prints data.
    let (ok, out, _) = keel(&[
        "runs",
        "show",
        "--registry",
        &reg,
        &run1,
        "--format",
        "json",
    ]);
    assert!(ok);
    let run: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["seed"], 42, "{out}");
    let (ok, out, _) = keel(&["runs", "list", "--registry", &reg, "--format", "csv"]);
    assert!(ok);
    assert!(
        out.starts_with("run,experiment,name,status,duration_ms,metrics\n"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let (ok, out, _) = keel(&["runs", "list", "--registry", &reg, "--format", "json"]);
    assert!(ok);
    let runs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(runs[0]["metrics"]["test.auc"].is_number(), "{out}");
    let (ok, out, err) = keel(&["runs", "compare", "--registry", &reg, &run1, &run2]);
    assert!(ok, "{err}");
    assert!(out.contains("metrics.test.auc"), "{out}");

    let (ok, out, _) = keel(&["models", "list", "--registry", &reg]);
    assert!(ok);
    assert!(out.starts_with("MODEL") && out.contains("v1,v2"), "{out}");
    let (ok, out, _) = keel(&["models", "list", "--registry", &reg, "--format", "csv"]);
    assert!(ok);
    assert_eq!(out, "model,versions,aliases\ndemo,\"v1,v2\",\n");
    let (ok, out, _) = keel(&["models", "list", "--registry", &reg, "--format", "json"]);
    assert!(ok);
    let models: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(models[0]["versions"], serde_json::json!([1, 2]));
    let (ok, out, _) = keel(&["models", "show", "--registry", &reg, "demo"]);
    assert!(ok);
    assert!(
        out.contains("sha256")
            && out
                .lines()
                .any(|l| l.starts_with("version") && l.ends_with('2')),
        "{out}"
    );
    let (ok, out, _) = keel(&[
        "models",
        "show",
        "--registry",
        &reg,
        "demo",
        "--format",
        "json",
    ]);
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["version"], 2);
    // The rollout moves only as it allows; `alias set` refuses rollout aliases.
    let (ok, _, err) = keel(&[
        "models",
        "alias",
        "set",
        "--registry",
        &reg,
        "demo",
        "champion",
        "1",
        "--reason",
        "x",
    ]);
    assert!(!ok && err.contains("keel models rollout"), "{err}");
    let step = |args: &[&str]| {
        let mut all = vec!["models", "rollout", "--registry", &reg, "demo"];
        all.extend_from_slice(args);
        keel(&all)
    };
    for args in [
        &["first-champion", "1", "--reason", "first"][..],
        &["shadow", "2", "--reason", "better"],
        &["canary", "2", "--reason", "shadow agreed"],
        &["promote", "2", "--reason", "canary held"],
    ] {
        let (ok, _, err) = step(args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, _, err) = step(&["promote", "1", "--reason", "not on canary"]);
    assert!(!ok && err.contains("not on canary"), "{err}");
    let (ok, out, err) = step(&["rollback", "--reason", "regression"]);
    assert!(ok, "{err}");
    assert!(out.contains("rolled back to v1"), "{out}");
    let (ok, out, _) = step(&["status", "--format", "json"]);
    assert!(ok);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["champion"], 1, "{out}");
    let (ok, out, _) = keel(&["models", "alias", "history", "--registry", &reg, "demo"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 9, "header, 7 moves, chain head: {out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" rollback ") && l.ends_with("  regression")),
        "{out}"
    );
    assert!(
        out.lines().last().unwrap().starts_with("audit chain head "),
        "{out}"
    );
    let (ok, out, _) = keel(&[
        "models",
        "alias",
        "history",
        "--registry",
        &reg,
        "demo",
        "--format",
        "json",
    ]);
    assert!(ok);
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["events"].as_array().unwrap().len(), 7);
    assert_eq!(h["events"][6]["rollback"], true);
    assert_eq!(h["chain_head"].as_str().unwrap().len(), 64, "{out}");
    // Issue 24: `keel serve` logs every inference as structured JSON on stderr.
    serve_logs_each_request_as_json(&reg);
    // Signing: a key pair, unsigned versions fail verification with the key, signed ones pass.
    let key = dir.path().join("release.key");
    let key = key.to_str().unwrap();
    let (ok, out, err) = keel(&["models", "keygen", key]);
    assert!(ok, "{err}");
    assert!(out.contains("release.key.pub"), "{out}");
    let pubkey = format!("{key}.pub");
    let verify = || {
        keel(&[
            "models",
            "verify",
            "--registry",
            &reg,
            "--trusted-keys",
            &pubkey,
        ])
    };
    let (ok, out, _) = verify();
    assert!(!ok, "unsigned versions must fail: {out}");
    assert!(out.contains("is not signed"), "{out}");
    for v in ["1", "2"] {
        let (ok, _, err) = keel(&[
            "models",
            "sign",
            "--registry",
            &reg,
            "demo",
            v,
            "--key",
            key,
        ]);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = verify();
    assert!(ok, "{out}{err}");
    assert!(out.contains("0 damaged"), "{out}");
    // Errors are messages, not panics.
    let (ok, _, err) = keel(&[
        "models",
        "alias",
        "set",
        "--registry",
        &reg,
        "demo",
        "staging",
        "9",
        "--reason",
        "x",
    ]);
    assert!(!ok && err.contains("no version 9"), "{err}");
}

/// Serves `demo` from `reg` with `--log-format json`, sends one good and one bad request over
/// a raw loopback connection, and finds both log events on stderr with their fields.
fn serve_logs_each_request_as_json(reg: &str) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "serve",
            "--registry",
            reg,
            "--model",
            "demo",
            "--addr",
            "127.0.0.1:0",
            "--no-admin",
            "--log-format",
            "json",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("keel serve ended").unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    let post = |body: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /v2/models/demo/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let ok = post(
        r#"{"id": "log-1", "inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [3.5, 8.0]}, {"name": "c", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}"#,
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let bad =
        post(r#"{"inputs": [{"name": "nope", "shape": [1], "datatype": "FP64", "data": [1]}]}"#);
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let mut events: Vec<serde_json::Value> = Vec::new();
    while events.len() < 2 {
        let line = lines.next().expect("keel serve ended").unwrap();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["target"] == "keel::request" {
                events.push(v);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let (good, refused) = (&events[0], &events[1]);
    assert_eq!(good["message"], "inference", "{good}");
    assert_eq!(good["level"], "INFO");
    assert_eq!(good["model"], "demo");
    assert_eq!(good["id"], "log-1");
    assert_eq!(good["rows"], 2);
    assert_eq!(good["routes"], "champion:2");
    assert_eq!(good["status"], 200);
    assert!(good["latency_us"].as_u64().is_some(), "{good}");
    assert_eq!(refused["level"], "WARN", "{refused}");
    assert_eq!(refused["status"], 400);
    assert!(
        refused["error"].as_str().unwrap().contains("nope"),
        "{refused}"
    );
}

/// `keel models precompute`: the champion scores every listed entity through the store, and
/// the predictions are one lookup away.
#[test]
fn precompute_writes_the_champions_predictions_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let mut csv = String::from("t,x,c,y\n");
    for i in 0..400u64 {
        let x = ((i * 7919) % 1000) as f64 / 100.0;
        let c = ["a", "b", "c"][(i % 3) as usize];
        csv.push_str(&format!("{i},{x},{c},{}\n", u8::from(x > 5.0)));
    }
    std::fs::write(p("data.csv"), csv).unwrap();
    std::fs::write(p("job.toml"), JOB).unwrap();
    let reg = p("registry");
    let (ok, _, err) = keel(&[
        "train",
        "--registry",
        &reg,
        "--config",
        &p("job.toml"),
        "--data",
        &p("data.csv"),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = keel(&[
        "models",
        "rollout",
        "demo",
        "first-champion",
        "1",
        "--registry",
        &reg,
        "--reason",
        "first",
    ]);
    assert!(ok, "{err}");
    std::fs::write(p("defs.toml"), crate::USER_DEFS).unwrap();
    let store = p("store");
    let (ok, _, err) = keel(&[
        "store",
        "apply",
        "--path",
        &store,
        "--definitions",
        &p("defs.toml"),
    ]);
    assert!(ok, "{err}");
    std::fs::write(
        p("rows.csv"),
        "user_id,event_timestamp,x,c\nu1,2026-01-01T00:00:00Z,9.5,a\nu2,2026-01-01T00:00:00Z,0.5,b\n",
    )
    .unwrap();
    let (ok, _, err) = keel(&[
        "store",
        "ingest",
        "--path",
        &store,
        "--view",
        "user_stats@1",
        "--input",
        &p("rows.csv"),
    ]);
    assert!(ok, "{err}");
    std::fs::write(p("keys.csv"), "user_id\nu1\nu2\n").unwrap();
    let (ok, out, err) = keel(&[
        "models",
        "precompute",
        "demo",
        "--registry",
        &reg,
        "--service",
        "svc",
        "--path",
        &store,
        "--view",
        "user_stats@1",
        "--entities",
        &p("keys.csv"),
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (rep["scored"].as_u64(), rep["errors"].as_u64()),
        (Some(2), Some(0)),
        "{out}"
    );
    assert_eq!(rep["service"], "demo_precomputed");
    let score = |user: &str| -> f64 {
        let (ok, out, err) = keel(&[
            "store",
            "get",
            "--path",
            &store,
            "--service",
            "demo_precomputed",
            "--key",
            &format!("user_id={user}"),
            "--format",
            "json",
        ]);
        assert!(ok, "{err}");
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["feature"].as_str().unwrap().ends_with(":score"))
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert!(score("u1") > score("u2"), "x = 9.5 scores above x = 0.5");
}
