//! The V2 HTTP server end to end over loopback: health and metadata, JSON and binary inference
//! equal to in-process predictions, version-pinned inference, bad requests answered 400/404/413
//! while the server keeps serving, token-protected admin calls, Prometheus metrics, and a real
//! third-party V2 client (NVIDIA's `tritonclient[http]`).
#![cfg(feature = "http")]

use crate::common::*;
use keel_serve::http::ServerConfig;
use keel_serve::*;
use keel_store::Value;
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

const TOKEN: &str = "test-admin-token-0123";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            base: format!("http://{addr}"),
            agent: agent(),
        }
    }

    fn get(&self, path: &str) -> (u16, Json) {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap();
        let s = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap();
        (s, serde_json::from_str(&body).unwrap_or(Json::String(body)))
    }

    fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Vec<u8>, Option<usize>) {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut r = req.send(&body[..]).unwrap();
        let s = r.status().as_u16();
        let head = r
            .headers()
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = r.body_mut().read_to_vec().unwrap();
        (s, bytes, head)
    }

    fn post(&self, path: &str, body: &Json) -> (u16, Json) {
        self.post_auth(path, body, None)
    }

    fn post_auth(&self, path: &str, body: &Json, token: Option<&str>) -> (u16, Json) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let (s, bytes, _) = self.post_raw(path, &headers, serde_json::to_vec(body).unwrap());
        (s, serde_json::from_slice(&bytes).unwrap())
    }
}

/// Runs `promtool check metrics` (Debian package `prometheus`; `scripts/test.sh` installs it)
/// on an exposition and asserts it passes.
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run scripts/test.sh (Debian package `prometheus`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs one of the tritonclient scripts against `addr` with three cards and keel's in-process
/// scores for them; returns what it printed (it fails the test when the script fails).
fn run_triton_client(d: &Deployment, script: &str, addr: std::net::SocketAddr) -> String {
    let cards = ["card3", "card42", "card199"];
    let want: Vec<f64> = cards.iter().map(|c| expected(d, c, None)).collect();
    let out = std::process::Command::new(triton_python())
        .arg(crate::manifest_dir().join(script))
        .arg(addr.to_string())
        .arg(serde_json::to_string(&json!({"cards": cards, "want": want})).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bytes_tensor(name: &str, values: &[&str]) -> Json {
    json!({ "name": name, "shape": [values.len()], "datatype": "BYTES", "data": values })
}

fn expected(d: &Deployment, card: &str, amount: Option<f64>) -> f64 {
    let mut r = Request {
        entity: vec![Value::Str(card.into())],
        ..Default::default()
    };
    if let Some(a) = amount {
        r.features.push(("amount".into(), Value::F64(a)));
    }
    d.predict_version(d.versions().0, r).unwrap().scores[0]
}

#[test]
fn v2_protocol_over_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let d = Arc::new(deployment(&reg, &store, DeploymentConfig::default()));
    let server = serve_on_loopback(
        d.clone(),
        ServerConfig {
            admin_token: Some(TOKEN.into()),
            max_body_bytes: 64 << 10,
            max_rows: 100,
            max_response_values: 50,
            ..Default::default()
        },
    )
    .unwrap();
    let c = Client::new(server.addr());

    // Issue 22, finding 10: the errors axum answers itself (405, bad percent-encoding) were
    // plain text; every non-2xx is the documented JSON body now.
    let (s, body) = c.get("/v2/models/fraud/infer");
    assert_eq!(s, 405);
    assert!(body["error"].is_string(), "{body}");
    let (s, body) = c.get("/v2/models/%ZZ/ready");
    assert!(s == 400 || s == 404, "{s}");
    assert!(body["error"].is_string(), "{body}");

    assert_eq!(c.get("/v2/health/live"), (200, json!({"live": true})));
    let (s, ready) = c.get("/v2/health/ready");
    assert_eq!((s, &ready["ready"]), (200, &json!(true)), "{ready}");
    assert_eq!(ready["registry"]["fraud"]["stale"], false, "{ready}");
    assert_eq!(c.get("/v2").1["name"], "keel");
    let (s, meta) = c.get("/v2/models/fraud");
    assert_eq!(s, 200);
    let inputs: Vec<&str> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["card_id", "amount", "risk", "country"]);
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES");
    assert_eq!(meta["outputs"][0]["name"], "predict");
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(c.get("/v2/models/fraud/ready").0, 200);
    assert_eq!(c.get("/v2/models/fraud/versions/1/ready").0, 200);
    let (s, e) = c.get("/v2/models/nope");
    assert_eq!(s, 404);
    assert!(e["error"].as_str().unwrap().contains("nope"));
    assert_eq!(c.get("/v2/models/fraud/versions/9").0, 404);
    assert_eq!(c.get("/v2/models/fraud/versions/x/ready").0, 404);

    // JSON inference: entity keys select stored features; a request-time value overrides.
    let body = json!({
        "id": "batch-1",
        "inputs": [
            bytes_tensor("card_id", &["card1", "card2", "card3"]),
            { "name": "amount", "shape": [3, 1], "datatype": "FP64", "data": [[null], [5000.0], [null]] },
        ]
    });
    let (s, r) = c.post("/v2/models/fraud/infer", &body);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["id"], "batch-1");
    assert_eq!(r["model_name"], "fraud");
    assert_eq!(r["model_version"], "1");
    let predict = &r["outputs"][0];
    assert_eq!(predict["name"], "predict");
    assert_eq!(predict["shape"], json!([3]));
    let got: Vec<f64> = predict["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // `null` leaves the stored value in place.
    assert_eq!(got[0], expected(&d, "card1", None));
    assert_eq!(got[1], expected(&d, "card2", Some(5000.0)));
    assert_eq!(r["outputs"][1]["data"], json!([1, 1, 1]));
    assert_eq!(
        r["outputs"][2]["data"],
        json!(["champion", "champion", "champion"])
    );

    // Binary tensors in (BYTES) and out (FP64), Triton's extension.
    let mut blob = Vec::new();
    for k in ["card7", "card8"] {
        blob.extend_from_slice(&(k.len() as u32).to_le_bytes());
        blob.extend_from_slice(k.as_bytes());
    }
    let head = serde_json::to_vec(&json!({
        "inputs": [{ "name": "card_id", "shape": [2], "datatype": "BYTES",
                     "parameters": { "binary_data_size": blob.len() } }],
        "outputs": [{ "name": "predict", "parameters": { "binary_data": true } }]
    }))
    .unwrap();
    let hl = head.len().to_string();
    let mut body = head;
    body.extend_from_slice(&blob);
    let (s, bytes, json_len) = c.post_raw(
        "/v2/models/fraud/infer",
        &[
            ("content-type", "application/octet-stream"),
            ("inference-header-content-length", &hl),
        ],
        body,
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&bytes));
    let json_len = json_len.expect("binary response header");
    let head: Json = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 16);
    let scores: Vec<f64> = bytes[json_len..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        scores,
        vec![expected(&d, "card7", None), expected(&d, "card8", None)]
    );

    // Bad requests: typed 4xx with an error body.
    let bad = |body: Json, status: u16, needle: &str| {
        let (s, e) = c.post("/v2/models/fraud/infer", &body);
        assert_eq!(s, status, "{body} -> {e}");
        let msg = e["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(needle), "{msg} lacks {needle}");
    };
    bad(json!({}), 400, "inputs");
    // Issue 22, finding 9: an unknown entity is refused (the default `on_missing`), and the
    // `missing` output lists what a row was scored without.
    bad(
        json!({"inputs": [bytes_tensor("card_id", &["nope"])]}),
        404,
        "unknown entity",
    );
    let (s, r) = c.post(
        "/v2/models/fraud/infer",
        &json!({"inputs": [bytes_tensor("card_id", &["card1"])], "outputs": [{"name": "missing"}]}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["outputs"][0]["data"], json!([""]));
    // A response over max_response_values (50 here) is refused before scoring.
    let rows: Vec<String> = (0..60).map(|i| format!("card{i}")).collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    bad(
        json!({"inputs": [bytes_tensor("card_id", &rows)]}),
        400,
        "would hold 60 values",
    );
    let many: Vec<String> = (0..101).map(|i| format!("card{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    bad(
        json!({"inputs": [bytes_tensor("card_id", &many)]}),
        400,
        "at most 100",
    );
    bad(
        json!({"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
        400,
        "missing input `card_id`",
    );
    bad(
        json!({"inputs": [{"name": "card_id", "shape": [1], "datatype": "FP32", "data": [1.0]}]}),
        400,
        "does not fit",
    );
    bad(
        json!({"inputs": [{"name": "card_id", "shape": [2], "datatype": "BYTES", "data": ["card1"]}]}),
        400,
        "needs 2 elements",
    );
    bad(
        json!({"inputs": [bytes_tensor("card_id", &["card1"]), {"name": "colour", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
        400,
        "unknown input `colour`",
    );
    bad(
        json!({"inputs": [bytes_tensor("card_id", &["card1"]), {"name": "amount", "shape": [1], "datatype": "FP16", "data": [1.0]}]}),
        400,
        "FP16",
    );
    bad(
        json!({"inputs": [bytes_tensor("card_id", &["card1", "card2"]), {"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
        400,
        "same first dimension",
    );
    bad(
        json!({"inputs": [bytes_tensor("card_id", &["card1"])], "outputs": [{"name": "logits"}]}),
        400,
        "unknown output",
    );
    let (s, b, _) = c.post_raw(
        "/v2/models/fraud/infer",
        &[("content-type", "application/json")],
        b"{not json".to_vec(),
    );
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    let (s, b, _) = c.post_raw(
        "/v2/models/fraud/infer",
        &[("content-type", "application/json")],
        vec![b' '; 100 << 10],
    );
    assert_eq!(s, 413);
    assert!(String::from_utf8_lossy(&b).contains("error"));
    let (s, _) = c.post("/v2/models/nope/infer", &json!({"inputs": []}));
    assert_eq!(s, 404);
    // Still serving.
    assert_eq!(
        c.post(
            "/v2/models/fraud/infer",
            &json!({"inputs": [bytes_tensor("card_id", &["card1"])]})
        )
        .0,
        200
    );

    // Admin: token required; shadow, version-pinned inference, canary by override, rollback.
    let shadow = json!({"version": 2, "reason": "challenger"});
    assert_eq!(c.post("/admin/models/fraud/shadow", &shadow).0, 401);
    assert_eq!(
        c.post_auth("/admin/models/fraud/shadow", &shadow, Some("wrong"))
            .0,
        401
    );
    let (s, st) = c.post_auth("/admin/models/fraud/shadow", &shadow, Some(TOKEN));
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["challenger"]["stage"], "shadow");
    let one = json!({"inputs": [bytes_tensor("card_id", &["card9"])]});
    let (_, r) = c.post("/v2/models/fraud/versions/2/infer", &one);
    assert_eq!(r["outputs"][1]["data"], json!([2]));
    assert_eq!(r["outputs"][2]["data"], json!(["shadow"]));
    let (_, r) = c.post("/v2/models/fraud/infer", &one);
    assert_eq!(r["outputs"][2]["data"], json!(["champion"]));
    // Issue 22, finding 5: a request cannot carry gate thresholds; the configured gate
    // (default: 1,000 compared requests) refuses; an override is its own audited call.
    // An admin call with the token: its status and JSON body.
    let admin = |path: &str, body: Json| {
        c.post_auth(&format!("/admin/models/fraud/{path}"), &body, Some(TOKEN))
    };
    let refused = |(s, e): (u16, Json), status: u16, needle: &str| {
        assert_eq!(s, status, "{e}");
        assert!(e["error"].as_str().unwrap().contains(needle), "{e}");
    };
    let gate = json!({"to": "canary", "gate": {"min_samples": 0, "min_agreement": 0.0, "max_mean_diff": 1.0}});
    refused(admin("promote", gate), 400, "configuration");
    refused(
        admin("promote", json!({"to": "canary"})),
        409,
        "compared < 1000",
    );
    refused(admin("override", json!({"to": "canary"})), 400, "reason");
    let (s, st) = admin(
        "override",
        json!({"to": "canary", "reason": "tested offline"}),
    );
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["challenger"]["stage"], "canary");
    let audit = reg.audit("fraud").unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.alias == "canary" && e.reason.contains("OVERRIDE (tested offline)")),
        "{audit:?}"
    );
    // Issue 22, finding 4: browser-shaped admin calls are refused even with the token: an
    // Origin header, a non-JSON body, a foreign Host.
    let body = serde_json::to_vec(&json!({"reason": "csrf"})).unwrap();
    let auth = format!("Bearer {TOKEN}");
    for (headers, want) in [
        (
            vec![
                ("content-type", "text/plain"),
                ("origin", "http://evil.example"),
                ("authorization", auth.as_str()),
            ],
            403,
        ),
        (
            vec![
                ("content-type", "text/plain"),
                ("authorization", auth.as_str()),
            ],
            415,
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("host", "evil.example"),
                ("authorization", auth.as_str()),
            ],
            403,
        ),
    ] {
        let (s, b, _) = c.post_raw("/admin/models/fraud/rollback", &headers, body.clone());
        assert_eq!(s, want, "{headers:?}: {}", String::from_utf8_lossy(&b));
        assert!(serde_json::from_slice::<Json>(&b).unwrap()["error"].is_string());
    }
    assert_eq!(
        d.versions().1.map(|(v, _)| v),
        Some(2),
        "nothing rolled back"
    );
    let (s, st) = c.post_auth(
        "/admin/models/fraud/rollback",
        &json!({"reason": "pager"}),
        Some(TOKEN),
    );
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["challenger"], Json::Null);
    assert_eq!(st["champion"], 1);
    assert_eq!(d.versions(), (1, None));

    // Metrics: deployment counters and HTTP status classes, one TYPE line per metric.
    let mut r = agent()
        .get(format!("http://{}/metrics", server.addr()))
        .call()
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert!(text.contains("keel_requests_total{model=\"fraud\",version=\"1\",route=\"champion\"}"));
    assert!(text.contains("keel_http_responses_total{class=\"4xx\"}"));
    assert_eq!(text.matches("# TYPE keel_requests_total").count(), 1);
    // Issue 22: the exposition passes Prometheus' own linter (HELP and TYPE for every
    // family, summaries with _sum and _count, each family's samples together).
    assert!(
        text.contains("keel_latency_seconds_count{model=\"fraud\""),
        "{text}"
    );
    promtool_check(&text);
    // Every exported family is documented (docs/metrics.md).
    let doc = std::fs::read_to_string(crate::manifest_dir().join("../../docs/metrics.md")).unwrap();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(
            doc.contains(&format!("`{family}`")),
            "{family} is not in docs/metrics.md"
        );
    }
    server.stop().unwrap();

    // Without a token admin is disabled (the default), on any address; short tokens are
    // refused at start.
    let server = serve_on_loopback(
        d.clone(),
        ServerConfig {
            ..Default::default()
        },
    )
    .unwrap();
    let c = Client::new(server.addr());
    let (s, e) = c.post("/admin/models/fraud/rollback", &json!({"reason": "x"}));
    assert_eq!(s, 403, "{e}");
    assert!(e["error"].as_str().unwrap().contains("disabled"), "{e}");
    assert_eq!(c.get("/admin/models/fraud").0, 403);
    server.stop().unwrap();
    let err = serve_on_loopback(
        d,
        ServerConfig {
            admin_token: Some("short".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("16 characters"), "{err}");
}

#[test]
fn store_less_model_takes_every_feature_as_a_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, _store) = setup(dir.path());
    let d = Arc::new(
        Deployment::from_registry(reg, "fraud", None, DeploymentConfig::default()).unwrap(),
    );
    let server = serve_on_loopback(
        d.clone(),
        ServerConfig {
            ..Default::default()
        },
    )
    .unwrap();
    let c = Client::new(server.addr());
    let body = json!({"inputs": [
        {"name": "amount", "shape": [2], "datatype": "FP32", "data": [12.5, 900.0]},
        {"name": "risk", "shape": [2], "datatype": "INT32", "data": [0, 1]},
        {"name": "country", "shape": [2], "datatype": "BYTES", "data": ["FR", "US"]},
    ]});
    let (s, r) = c.post("/v2/models/fraud/infer", &body);
    assert_eq!(s, 200, "{r}");
    let want = d
        .predict(Request {
            features: vec![
                ("amount".into(), Value::F64(900.0)),
                ("risk".into(), Value::F64(1.0)),
                ("country".into(), Value::Str("US".into())),
            ],
            ..Default::default()
        })
        .unwrap()
        .scores[0];
    assert_eq!(r["outputs"][0]["data"][1].as_f64().unwrap(), want);
    let (s, e) = c.post(
        "/v2/models/fraud/infer",
        &json!({"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
    );
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("missing input"));
    // Admin without a token is allowed on loopback only.
    assert_eq!(
        c.get("/admin/models/fraud").0,
        403,
        "admin is off without a token"
    );
    server.stop().unwrap();
}

fn triton_python() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEL_TRITON_PYTHON") {
        return p.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p = PathBuf::from(home).join(".cache/keel/venv-triton/bin/python");
    assert!(
        p.exists(),
        "tritonclient is not installed: run scripts/tritonclient-env.sh (or set KEEL_TRITON_PYTHON)"
    );
    p
}

#[test]
fn tritonclient_speaks_to_keel() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let d = Arc::new(deployment(&reg, &store, DeploymentConfig::default()));
    let server = serve_on_loopback(
        d.clone(),
        ServerConfig {
            ..Default::default()
        },
    )
    .unwrap();
    let report = run_triton_client(&d, "tests/v2_client.py", server.addr());
    assert!(
        report.contains("binary [") && report.contains("json [") && report.ends_with("ok\n"),
        "{report}"
    );
    server.stop().unwrap();
}

/// Issue 24: the same protocol over gRPC on its own port, with NVIDIA's `tritonclient[grpc]`
/// as the client: metadata, BYTES / FP32 / FP64 / INT64 inputs, a batch, malformed requests.
#[cfg(feature = "grpc")]
#[test]
fn tritonclient_grpc_speaks_to_keel() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(dir.path());
    let d = Arc::new(deployment(&reg, &store, DeploymentConfig::default()));
    let server = serve_on_loopback(
        d.clone(),
        ServerConfig {
            grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let grpc = server.grpc_addr().expect("a gRPC address");
    let report = run_triton_client(&d, "tests/v2_grpc_client.py", grpc);
    assert!(
        report.contains("grpc [") && report.ends_with("ok\n"),
        "{report}"
    );
    server.stop().unwrap();
}

/// Issue 22, finding 1: about 1,000 idle connections at the common 1,024 open-file limit made
/// the server panic and exit (axum backs off from accept errors with a timer, and the runtime
/// had no timer driver). A child process serving under a 256-descriptor limit (`prlimit`) gets
/// 400 connections; it must survive running out of descriptors and answer once they close.
#[test]
fn running_out_of_file_descriptors_does_not_kill_the_server() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("prlimit")
        .arg("--nofile=256:256")
        .arg("--")
        .arg(&exe)
        .args([
            "--exact",
            "http::emfile_server_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KEEL_EMFILE_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs the child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = lines
        .by_ref()
        .map_while(Result::ok)
        // The harness may have written `test ... ` on the same line first.
        .find_map(|l| {
            l.split_once("ADDR ")
                .map(|(_, a)| a.trim().parse().unwrap())
        })
        .expect("the child prints its address");
    // Connect until the server's descriptors and its accept backlog are exhausted (a connect
    // then times out instead of completing).
    let timeout = std::time::Duration::from_millis(300);
    let conns: Vec<std::net::TcpStream> = (0..400)
        .map_while(|_| std::net::TcpStream::connect_timeout(&addr, timeout).ok())
        .collect();
    // The child stopped accepting before 400 (its 256 descriptors ran out) after many.
    assert!(
        (100..400).contains(&conns.len()),
        "{} connections",
        conns.len()
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server process died"
    );
    drop(conns);
    let mut status = 0;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let r = agent().get(format!("http://{addr}/v2/health/live")).call();
        if let Ok(r) = r {
            status = r.status().as_u16();
            break;
        }
    }
    drop(child.stdin.take());
    let _ = child.wait();
    assert_eq!(
        status, 200,
        "the server answers again once descriptors are free"
    );
}

/// The server of the test above, run as its own process (returns at once unless started by it).
#[test]
fn emfile_server_child_process() {
    let Some(dir) = std::env::var_os("KEEL_EMFILE_DIR") else {
        return;
    };
    let (reg, store) = setup(std::path::Path::new(&dir));
    let d = Arc::new(deployment(&reg, &store, DeploymentConfig::default()));
    let server = serve_on_loopback(
        d,
        ServerConfig {
            ..Default::default()
        },
    )
    .unwrap();
    println!("ADDR {}", server.addr());
    // Serve until the parent closes stdin.
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    drop(server);
}
