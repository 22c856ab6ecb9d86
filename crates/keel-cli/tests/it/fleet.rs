//! Issue 20's fleet test: two `keel serve` replicas on loopback share one MLflow registry and
//! one Redis feature store. Under constant load on both, v2 is shadowed through replica A,
//! promoted to canary and champion through replica B by gates judging both replicas' merged
//! evidence, rolled back with the CLI; MLflow then goes away and comes back. Both replicas
//! follow every move within two follow intervals (moves made through a replica at once: it
//! announces them on the store's Redis channel), no request fails, and the audit lists every
//! move with its evidence.

use keel::registry::LocalMlflow;
use keel::store::redis::LocalRedis;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The replicas' follow interval.
const INTERVAL: Duration = Duration::from_secs(1);
const TOKEN: &str = "fleet-admin-token";

use crate::keel;

fn ok(args: &[&str]) -> String {
    let (ok, out, err) = keel(args);
    assert!(ok, "keel {args:?}: {err}");
    out
}

const JOB: &str = r#"
experiment = "fleet"
model = "demo"
label = "y"
params = { objective = "binary", num_iterations = ITERS, num_leaves = 7, min_data_in_leaf = 5 }
[[transform.columns]]
column = "x"
steps = [{ op = "standardize" }]
[[transform.columns]]
column = "c"
steps = [{ op = "one_hot" }]
"#;

const DEPLOY: &str = r#"
[defaults]
canary_percent = 50.0
[defaults.shadow_gate]
min_samples = 150
min_agreement = 0.5
max_mean_diff = 1.0
[defaults.canary_gate]
min_samples = 100
max_p99_us = 10000000.0
max_error_rate = 0.0
require_labels = false
"#;

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

impl Replica {
    fn start(name: &str, registry: &str, store: &str, deploy: &str) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["serve", "--registry", registry, "--store", store])
            .args(["--model", "demo:svc", "--addr", "127.0.0.1:0"])
            .args(["--replica", name, "--deployment-config", deploy])
            .args([
                "--follow-interval-secs",
                &INTERVAL.as_secs_f64().to_string(),
            ])
            .args(["--log-level", "warn"])
            .env("KEEL_ADMIN_TOKEN", TOKEN)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("keel serve ended").unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        // Keep draining its stderr so the replica never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Replica {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn get(&self, path: &str) -> Value {
        let mut r = agent()
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap();
        r.body_mut().read_json().unwrap()
    }

    fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let mut r = agent()
            .post(&format!("{}/admin/models/demo/{path}", self.base))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }

    /// `(champion, challenger)` as the replica serves them.
    fn serving(&self) -> (u64, Option<u64>) {
        let r = self.get("/v2/health/ready");
        let m = &r["registry"]["demo"];
        (m["champion"].as_u64().unwrap(), m["challenger"].as_u64())
    }
}

/// Waits until every replica serves `want`; returns how long the slowest took.
fn converge(replicas: &[&Replica], want: (u64, Option<u64>), from: Instant) -> Duration {
    loop {
        if replicas.iter().all(|r| r.serving() == want) {
            return from.elapsed();
        }
        assert!(
            from.elapsed() < Duration::from_secs(30),
            "replicas never reached {want:?}: {:?}",
            replicas.iter().map(|r| r.serving()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_within_two_intervals(took: Duration, what: &str) {
    eprintln!("fleet: {what} reached every replica in {took:?}");
    assert!(
        took <= 2 * INTERVAL,
        "{what}: replicas took {took:?}, more than two follow intervals ({:?})",
        2 * INTERVAL
    );
}

/// A move made through a replica is announced on the store's Redis channel: the other replica
/// follows at once instead of at its next poll (half an interval is far more than it takes).
fn announced(took: Duration, what: &str) {
    assert!(
        took < INTERVAL / 2,
        "{what}: announced through Redis, yet the other replica took {took:?}"
    );
}

/// Waits until `replica`'s merged evidence shows every replica and `field` reaches `at_least`.
fn await_evidence(replica: &Replica, field: &str, at_least: u64) -> Value {
    let start = Instant::now();
    loop {
        let st = replica.get("/admin/models/demo");
        let fleet = &st["fleet"];
        let n = match field {
            "compared" => fleet["shadow"]["compared"].as_u64(),
            _ => fleet["canary_requests"].as_u64(),
        };
        if fleet["replicas"] == 2 && n.unwrap_or(0) >= at_least {
            return fleet.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "evidence never reached {field} >= {at_least} from 2 replicas: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_fleet_follows_the_rollout_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let mut mlflow = LocalMlflow::start().expect("mlflow server");
    let redis = LocalRedis::start(&[]).expect("redis-server");
    let registry = mlflow.url();
    let store = redis.url();

    // Features of 50 users in Redis; two versions trained and registered in MLflow.
    std::fs::write(p("defs.toml"), crate::USER_DEFS).unwrap();
    ok(&[
        "store",
        "apply",
        "--url",
        &store,
        "--definitions",
        &p("defs.toml"),
    ]);
    let mut rows = String::from("user_id,event_timestamp,x,c\n");
    for u in 0..50 {
        rows.push_str(&format!(
            "u{u},2026-01-01T00:00:00Z,{},{}\n",
            (u * 37 % 100) as f64 / 10.0,
            ["a", "b", "c"][u % 3]
        ));
    }
    std::fs::write(p("rows.csv"), rows).unwrap();
    ok(&[
        "store",
        "ingest",
        "--url",
        &store,
        "--view",
        "user_stats@1",
        "--input",
        &p("rows.csv"),
    ]);
    let mut csv = String::from("x,c,y\n");
    for i in 0..600u64 {
        let x = ((i * 7919) % 1000) as f64 / 100.0;
        let c = ["a", "b", "c"][(i % 3) as usize];
        let y = u8::from(x + if c == "a" { 3.0 } else { 0.0 } > 6.0 && i % 11 != 0);
        csv.push_str(&format!("{x},{c},{y}\n"));
    }
    std::fs::write(p("data.csv"), csv).unwrap();
    for (i, iters) in [20, 30].iter().enumerate() {
        std::fs::write(p("job.toml"), JOB.replace("ITERS", &iters.to_string())).unwrap();
        let out = ok(&[
            "train",
            "--registry",
            &registry,
            "--config",
            &p("job.toml"),
            "--data",
            &p("data.csv"),
        ]);
        assert!(
            out.contains(&format!("registered demo v{}", i + 1)),
            "{out}"
        );
    }
    ok(&[
        "models",
        "rollout",
        "demo",
        "first-champion",
        "1",
        "--registry",
        &registry,
        "--reason",
        "first release",
    ]);
    std::fs::write(p("deploy.toml"), DEPLOY).unwrap();

    let a = Replica::start("replica-a", &registry, &store, &p("deploy.toml"));
    let b = Replica::start("replica-b", &registry, &store, &p("deploy.toml"));
    assert_eq!(a.serving(), (1, None));
    assert_eq!(b.serving(), (1, None));

    // Constant load on both replicas; every answer's version is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for (k, base) in [
        a.base.clone(),
        b.base.clone(),
        a.base.clone(),
        b.base.clone(),
    ]
    .into_iter()
    .enumerate()
    {
        let (stop, failures, answered) = (stop.clone(), failures.clone(), answered.clone());
        load.push(std::thread::spawn(move || {
            let agent = agent();
            let mut i = k;
            while !stop.load(Ordering::Relaxed) {
                i += 4;
                let body = json!({"id": format!("r{i}"), "inputs": [{"name": "user_id", "shape": [1],
                    "datatype": "BYTES", "data": [format!("u{}", i % 50)]}]});
                match agent.post(&format!("{base}/v2/models/demo/infer")).send_json(&body) {
                    Ok(mut r) if r.status() == 200 => {
                        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
                        if v["outputs"][0]["data"][0].is_number() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.lock().unwrap().push(format!("{base}: {v}"));
                        }
                    }
                    Ok(mut r) => failures.lock().unwrap().push(format!(
                        "{base}: HTTP {} {}",
                        r.status(),
                        r.body_mut().read_to_string().unwrap_or_default()
                    )),
                    Err(e) => failures.lock().unwrap().push(format!("{base}: {e}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }

    // Shadow v2 through replica A: A at once, B by following.
    let (s, body) = a.admin("shadow", json!({"version": 2, "reason": "retrained"}));
    let t = Instant::now();
    assert_eq!(s, 200, "{body}");
    assert_within_two_intervals(converge(&[&a, &b], (1, Some(2)), t), "shadow");

    // Shadow -> canary through replica B, once the merged evidence from both replicas
    // suffices; the gate records what it saw.
    let fleet = await_evidence(&b, "compared", 150);
    assert!(
        fleet["shadow"]["compared"].as_u64().unwrap() >= 150,
        "{fleet}"
    );
    let (s, body) = b.admin("promote", json!({"to": "canary"}));
    let t = Instant::now();
    assert_eq!(s, 200, "{body}");
    let canary_stage = |r: &Replica| r.get("/admin/models/demo")["challenger"]["stage"].clone();
    while canary_stage(&a) != "canary" || canary_stage(&b) != "canary" {
        assert!(
            t.elapsed() <= 2 * INTERVAL,
            "the replicas did not both put v2 on canary within two intervals"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    announced(t.elapsed(), "canary");

    // Canary -> champion through replica B, on both replicas' canary requests.
    await_evidence(&b, "canary", 100);
    let (s, body) = b.admin("promote", json!({"to": "champion"}));
    let t = Instant::now();
    assert_eq!(s, 200, "{body}");
    let took = converge(&[&a, &b], (2, None), t);
    assert_within_two_intervals(took, "champion");
    announced(took, "champion");

    // Roll back with the CLI: both replicas serve v1 again. (Every move is timed from when
    // its mover reports it done: the admin call's answer, the CLI's exit.)
    ok(&[
        "models",
        "rollout",
        "demo",
        "rollback",
        "--registry",
        &registry,
        "--reason",
        "p99 regression",
    ]);
    let t = Instant::now();
    assert_within_two_intervals(converge(&[&a, &b], (1, None), t), "rollback");

    // MLflow goes away: both replicas keep serving v1 and report the registry stale.
    mlflow.kill();
    let t = Instant::now();
    for r in [&a, &b] {
        loop {
            let ready = r.get("/v2/health/ready");
            if ready["registry"]["demo"]["stale"] == true {
                assert_eq!(ready["ready"], true, "{ready}");
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "never stale: {ready}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let metrics = agent()
            .get(&format!("{}/metrics", r.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert!(
            metrics.contains("keel_registry_stale{model=\"demo\"} 1"),
            "{metrics}"
        );
    }
    let before = answered.load(Ordering::Relaxed);
    std::thread::sleep(2 * INTERVAL);
    assert!(
        answered.load(Ordering::Relaxed) > before,
        "serving stopped with MLflow down"
    );

    // It comes back: the replicas follow again (a shadow set through the CLI reaches both).
    mlflow.restart().expect("mlflow restarts");
    for r in [&a, &b] {
        let t = Instant::now();
        while r.get("/v2/health/ready")["registry"]["demo"]["stale"] != false {
            assert!(t.elapsed() < Duration::from_secs(30), "never fresh again");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    ok(&[
        "models",
        "rollout",
        "demo",
        "shadow",
        "2",
        "--registry",
        &registry,
        "--reason",
        "again",
    ]);
    let t = Instant::now();
    assert_within_two_intervals(
        converge(&[&a, &b], (1, Some(2)), t),
        "shadow after MLflow returned",
    );

    // A move made in MLflow itself (its UI calls this REST endpoint): the replicas follow it
    // too. Champion = v2 while v2 is also the shadow: served as the champion alone.
    let r = agent()
        .post(&format!(
            "{registry}/api/2.0/mlflow/registered-models/alias"
        ))
        .send_json(json!({"name": "demo", "alias": "champion", "version": "2"}))
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = Instant::now();
    assert_within_two_intervals(converge(&[&a, &b], (2, None), t), "a move made in MLflow");

    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        answered.load(Ordering::Relaxed) > 500,
        "too little load to mean anything"
    );

    // The audit lists every move, the gates' with the fleet evidence they judged.
    let out = ok(&[
        "models",
        "alias",
        "history",
        "demo",
        "--registry",
        &registry,
        "--format",
        "json",
    ]);
    let audit: Value = serde_json::from_str(&out).unwrap();
    let events = audit["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{audit}"));
    let moves: Vec<(String, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["alias"].as_str().unwrap().to_string(),
                e["from"].clone(),
                e["to"].clone(),
            )
        })
        .collect();
    let v = |n: u64| json!(n);
    assert_eq!(
        moves,
        vec![
            ("champion".into(), Value::Null, v(1)),
            ("shadow".into(), Value::Null, v(2)),
            ("canary".into(), Value::Null, v(2)),
            ("shadow".into(), v(2), Value::Null),
            ("champion".into(), v(1), v(2)),
            ("canary".into(), v(2), Value::Null),
            ("champion".into(), v(2), v(1)),
            ("shadow".into(), Value::Null, v(2)),
        ],
        "{audit}"
    );
    for gate in [2, 4] {
        let reason = events[gate]["reason"].as_str().unwrap();
        assert!(
            reason.contains("gate passed (fleet evidence: 2 replica(s)"),
            "{reason}"
        );
        let who = events[gate]["who"].as_str().unwrap();
        assert!(who.ends_with("via replica replica-b"), "{who}");
    }
    assert!(events[1]["who"]
        .as_str()
        .unwrap()
        .ends_with("via replica replica-a"));
    assert!(
        !events[6]["who"].as_str().unwrap().contains("via replica"),
        "the CLI's own"
    );
}

/// MLflow unreachable when a replica starts: a clear error, not a replica serving nothing.
#[test]
fn a_replica_refuses_to_start_without_its_registry() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (ok, _, err) = keel(&["serve", "--registry", &url, "--model", "demo", "--no-admin"]);
    assert!(!ok);
    assert!(err.contains(&format!("opening registry {url}")), "{err}");
    let (ok, _, err) = keel(&["models", "list", "--registry", &url]);
    assert!(!ok && err.contains("mlflow"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    let (ok, _, err) = keel(&[
        "models",
        "export",
        "demo",
        "--registry",
        reg.to_str().unwrap(),
        "--to",
        &url,
    ]);
    assert!(!ok && err.contains("mlflow"), "{err}");
}
