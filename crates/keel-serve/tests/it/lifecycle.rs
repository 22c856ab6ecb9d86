//! Issue 21: every model kind goes through the same lifecycle, on the same code path:
//! `TrainingJob` (kind from the job file) -> registry -> `Deployment` shadow -> canary ->
//! champion -> `RetrainLoop` (gated, scored through the model seam) -> shadow again ->
//! rollback. GBDT and MLP read tabular rows, the sequence encoder texts, the CNN images.

use keel_core::{Column, DType, Field, Frame, Validity, Value};
use keel_model::Input;
use keel_monitor::synth::{self, Shift};
use keel_monitor::{Action, DecayMetric, Decision, DecisionLog, GateConfig};
use keel_registry::rollout::Rollout;
use keel_registry::Registry;
use keel_serve::*;
use keel_train::{ModelKind, RetrainLoop, TrainingData, TrainingJob};

const TRANSFORMS: &str = r#"
[[transform.columns]]
column = "amount"
steps = [{ op = "log1p" }]
[[transform.columns]]
column = "risk"
[[transform.columns]]
column = "country"
steps = [{ op = "one_hot" }]
"#;

const SEQUENCE: &str = r#"
[sequence]
column = "ticket"
[sequence.config]
tokenizer = { kind = "hashed_words", buckets = 64 }
max_len = 8
d_model = 8
heads = 2
layers = 1
ff = 16
dropout = 0.0
pooling = "mean"
head = { kind = "binary" }
"#;

const CNN: &str = r#"
[cnn]
prefix = "px"
[cnn.config]
channels = 1
height = 4
width = 4
conv = [{ filters = 2, kernel = 3, pool = 2 }]
head = { kind = "binary" }
"#;

const DEEP_TRAIN: &str = r#"
[train]
epochs = 3
batch_size = 32
optimizer = { kind = "adam_w", lr = 0.01 }
"#;

/// The job file of `kind`: top-level keys first, then the kind's tables.
fn job(kind: &str, seed: u64) -> TrainingJob {
    let tables = match kind {
        "gbdt" => TRANSFORMS.to_string(),
        "mlp" => format!("{TRANSFORMS}\n[mlp]\nhidden = [8]\nhead = {{ kind = \"binary\" }}\n"),
        "sequence" => SEQUENCE.to_string(),
        _ => CNN.to_string(),
    };
    let toml = format!(
        "experiment = \"lifecycle\"\nmodel = \"{kind}-model\"\nlabel = \"label\"\nkind = \"{kind}\"\nseed = {seed}\nparams = {{ objective = \"binary\", num_iterations = 10, num_leaves = 7 }}\n{tables}{DEEP_TRAIN}"
    );
    TrainingJob::from_toml(&toml).unwrap_or_else(|e| panic!("{kind}: {e}\n{toml}"))
}

/// Texts whose label is whether they ask for money back.
fn tickets(n: usize, seed: u64) -> Frame {
    let words = [
        "refund", "crash", "login", "money", "slow", "thanks", "back", "error",
    ];
    let (mut text, mut label) = (Vec::new(), Vec::new());
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    for _ in 0..n {
        let mut t = Vec::new();
        for _ in 0..4 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t.push(words[(s >> 33) as usize % words.len()]);
        }
        label.push(i64::from(t.contains(&"refund") || t.contains(&"money")));
        text.push(t.join(" "));
    }
    Frame::new(
        vec![
            Field::new("ticket", DType::String),
            Field::new("label", DType::I64),
        ],
        vec![
            Column::String {
                values: text,
                validity: Validity::all_valid(),
            },
            Column::I64 {
                values: label.into(),
                validity: Validity::all_valid(),
            },
        ],
    )
    .unwrap()
}

/// 4x4 images whose label is whether the left half is brighter.
fn images(n: usize, seed: u64) -> Frame {
    let mut cols: Vec<Vec<f64>> = (0..16).map(|_| Vec::with_capacity(n)).collect();
    let mut label = Vec::new();
    let mut s = seed.wrapping_add(99);
    for _ in 0..n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let left = (s >> 63) == 1;
        for (j, c) in cols.iter_mut().enumerate() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((s >> 40) % 100) as f64 / 400.0;
            let bright = (j % 4 < 2) == left;
            c.push(if bright { 0.75 } else { 0.25 } + noise);
        }
        label.push(i64::from(left));
    }
    let mut fields: Vec<Field> = (0..16)
        .map(|j| Field::new(format!("px_{j}"), DType::F64))
        .collect();
    fields.push(Field::new("label", DType::I64));
    let mut columns: Vec<Column> = cols.into_iter().map(|c| Column::F64(c.into())).collect();
    columns.push(Column::I64 {
        values: label.into(),
        validity: Validity::all_valid(),
    });
    Frame::new(fields, columns).unwrap()
}

fn data(kind: &str, n: usize, seed: u64) -> Frame {
    match kind {
        "sequence" => tickets(n, seed),
        "cnn" => images(n, seed),
        _ => synth::transactions(n, Shift::None, seed),
    }
}

/// Sends every row of `f` through the deployment as live traffic would come.
fn traffic(d: &Deployment, kind: &str, f: &Frame) {
    match kind {
        "sequence" => {
            let c = f.column("ticket").unwrap();
            let texts: Vec<&str> = (0..f.nrows())
                .map(|i| match c.get(i) {
                    keel_core::ValueRef::Str(s) => s,
                    _ => "",
                })
                .collect();
            for (i, chunk) in texts.chunks(10).enumerate() {
                d.predict_batch(None, &format!("b{i}"), Input::Texts(chunk))
                    .unwrap();
            }
        }
        "cnn" => {
            let px = keel_model::tensor_columns(f, "px", 16).unwrap();
            for (i, chunk) in px.chunks(16 * 10).enumerate() {
                d.predict_batch(
                    None,
                    &format!("b{i}"),
                    Input::Tensors {
                        data: chunk,
                        rows: chunk.len() / 16,
                    },
                )
                .unwrap();
            }
        }
        _ => {
            for i in 0..f.nrows() {
                let features = ["amount", "risk", "country"]
                    .iter()
                    .map(|n| {
                        let v = match f.column(n).unwrap().get(i) {
                            keel_core::ValueRef::F64(x) => Value::F64(x),
                            keel_core::ValueRef::Str(s) => Value::Str(s.to_string()),
                            _ => Value::Null,
                        };
                        (n.to_string(), v)
                    })
                    .collect();
                d.predict(Request {
                    request_id: format!("r{i}").into(),
                    features,
                    ..Default::default()
                })
                .unwrap();
            }
        }
    }
}

#[test]
fn every_kind_is_trained_served_rolled_out_retrained_and_rolled_back_the_same_way() {
    for kind in ["gbdt", "mlp", "sequence", "cnn"] {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let name = format!("{kind}-model");
        let train = TrainingData::from_frame(data(kind, 400, 1));
        let first = job(kind, 1).run(&reg, &train).unwrap();
        assert_eq!(first.kind.as_str(), kind);
        assert!(
            first.metrics["test.auc"] > 0.6,
            "{kind}: {:?}",
            first.metrics
        );
        assert!(first.run.params.contains_key("kind.reason"));
        let v1 = first.version.unwrap().version;
        Rollout::new(&reg, &name)
            .first_champion(v1, "first")
            .unwrap();
        // Same inputs and seed give the same bytes.
        let again = job(kind, 1).run(&reg, &train).unwrap();
        assert_eq!(again.files, first.files, "{kind}: not deterministic");
        let v2 = again.version.unwrap().version;

        let cfg = DeploymentConfig {
            canary_percent: 50.0,
            log_sample_rate: 0.0,
            shadow_gate: ShadowGate {
                min_samples: 50,
                min_agreement: 0.0,
                max_mean_diff: 1.0,
            },
            canary_gate: CanaryGate {
                min_samples: 10,
                max_p99_us: 1e9,
                max_error_rate: 0.0,
                metric_margin: 1.0,
                require_labels: false,
            },
            ..DeploymentConfig::default()
        };
        let d = Deployment::from_registry(reg.clone(), &name, None, cfg).unwrap();
        let live = data(kind, 200, 5);
        d.start_shadow(v2, "same job, same seed").unwrap();
        traffic(&d, kind, &live);
        for _ in 0..400 {
            if d.shadow_stats().compared + d.shadow_stats().dropped >= 200 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            d.shadow_stats().agreed,
            d.shadow_stats().compared,
            "{kind}: identical models agree"
        );
        d.promote_to_canary()
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        traffic(&d, kind, &live);
        d.promote_to_champion(None)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(d.versions(), (v2, None));

        // Decay -> retrain through the loop -> gated -> shadow; the deployment follows.
        let log = DecisionLog::default();
        let gate = GateConfig {
            metric: DecayMetric::Auc,
            margin: -1.0,
            guards: Vec::new(),
            latency_budget_us: None,
        };
        let decision = Decision {
            at_ms: 0,
            action: Action::Retrain,
            reason: "test".into(),
            drifted_columns: Vec::new(),
            drift_share: None,
            decay: None,
            changes: Vec::new(),
        };
        let out = RetrainLoop::new(&reg, job(kind, 3), gate, &log)
            .handle(
                decision,
                &TrainingData::from_frame(data(kind, 400, 7)),
                &data(kind, 200, 9),
            )
            .unwrap();
        let v3 = out
            .registered
            .unwrap_or_else(|| panic!("{kind}: {:?}", out.gate))
            .version;
        assert!(d.follow().unwrap());
        assert_eq!(d.versions(), (v2, Some((v3, Stage::Shadow))), "{kind}");
        // Rollback: the challenger goes, then the champion moves back.
        assert_eq!(d.rollback("withdraw").unwrap(), v3);
        assert_eq!(d.rollback("regression").unwrap(), v1);
        assert_eq!(d.versions(), (v1, None), "{kind}");
        assert!(matches!(ModelKind::Auto.as_str(), "auto"));
    }
}

/// `kind = "auto"` picks by modality and records why: free text -> sequence encoder, pixel
/// columns -> CNN, plain columns -> GBDT.
#[test]
fn auto_chooses_by_modality_and_records_why() {
    for (kind, frame) in [
        ("sequence", tickets(300, 1)),
        ("cnn", images(300, 1)),
        ("gbdt", synth::transactions(300, Shift::None, 1)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        // One job file with every section; `auto` picks.
        let text = format!(
            "experiment = \"auto\"\nmodel = \"auto\"\nlabel = \"label\"\nkind = \"auto\"\nparams = {{ objective = \"binary\", num_iterations = 5 }}\n[[transform.columns]]\ncolumn = \"amount\"\n[[transform.columns]]\ncolumn = \"risk\"\n{SEQUENCE}{CNN}{DEEP_TRAIN}"
        );
        let out = TrainingJob::from_toml(&text)
            .unwrap()
            .run(&reg, &TrainingData::from_frame(frame))
            .unwrap();
        assert_eq!(out.kind.as_str(), kind);
        assert_eq!(out.run.params["kind"], kind);
        assert!(!out.run.params["kind.reason"].is_empty());
    }
}

/// The text and image models a `TrainingJob` trained, served over V2 (HTTP and gRPC), answer
/// NVIDIA's `tritonclient`: texts as BYTES, images as FP32 NCHW and, with `layout = NHWC`,
/// channels-last; every class equal to the seam's in-process scores.
#[cfg(feature = "grpc")]
#[test]
fn trained_text_and_image_models_answer_tritonclient() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let mut deployments = Vec::new();
    let mut expected = Vec::new();
    let (texts, images) = (tickets(5, 21), images(4, 22));
    for (kind, probe) in [("sequence", &texts), ("cnn", &images)] {
        let out = job(kind, 1)
            .run(&reg, &TrainingData::from_frame(data(kind, 300, 1)))
            .unwrap();
        Rollout::new(&reg, &format!("{kind}-model"))
            .first_champion(out.version.as_ref().unwrap().version, "first")
            .unwrap();
        expected.push(out.model().unwrap().score_frame(probe).unwrap());
        deployments.push(std::sync::Arc::new(
            Deployment::from_registry(
                reg.clone(),
                &format!("{kind}-model"),
                None,
                DeploymentConfig::default(),
            )
            .unwrap(),
        ));
    }
    let server = keel_serve::http::start(
        deployments,
        keel_serve::http::ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let c = texts.column("ticket").unwrap();
    let text_values: Vec<String> = (0..texts.nrows())
        .map(|i| match c.get(i) {
            keel_core::ValueRef::Str(s) => s.to_string(),
            _ => String::new(),
        })
        .collect();
    let spec = serde_json::json!({
        "text_model": "sequence-model", "text_input": "ticket", "texts": text_values,
        "want_text": expected[0],
        "image_model": "cnn-model", "image_input": "px", "shape": [1, 4, 4], "classes": 1,
        "images": keel_model::tensor_columns(&images, "px", 16).unwrap(),
        "want_image": expected[1],
    });
    let python = std::env::var_os("KEEL_TRITON_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/keel/venv-triton/bin/python")
        });
    let out = std::process::Command::new(python)
        .arg(crate::manifest_dir().join("tests/v2_unstructured_client.py"))
        .arg(server.addr().to_string())
        .arg(server.grpc_addr().unwrap().to_string())
        .arg(spec.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("ok\n"));
    server.stop().unwrap();
}

/// `candidates`: every kind trains on the same split in its own run; the best by the job's
/// metric is registered and every run says whether it was selected.
#[test]
fn candidates_train_on_the_same_split_and_the_best_is_registered() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let text = format!(
        "experiment = \"pick\"\nmodel = \"pick\"\nlabel = \"label\"\ncandidates = [\"gbdt\", \"mlp\"]\nmetric = \"valid.logloss\"\nparams = {{ objective = \"binary\", num_iterations = 10, num_leaves = 7 }}\n{TRANSFORMS}\n[mlp]\nhidden = [8]\nhead = {{ kind = \"binary\" }}\n{DEEP_TRAIN}"
    );
    let out = TrainingJob::from_toml(&text)
        .unwrap()
        .run(&reg, &TrainingData::from_frame(data("gbdt", 400, 1)))
        .unwrap();
    let runs = reg
        .search_runs(&keel_registry::RunFilter::parse("experiment=pick").unwrap())
        .unwrap();
    assert_eq!(runs.len(), 2);
    let selected: Vec<&keel_registry::Run> = runs
        .iter()
        .filter(|r| r.tags.get("candidate").map(String::as_str) == Some("selected"))
        .collect();
    assert_eq!(selected.len(), 1);
    assert_eq!(selected[0].id, out.run.id);
    let best = runs
        .iter()
        .map(|r| r.metric("valid.logloss").unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(out.metrics["valid.logloss"], best, "lower logloss wins");
    assert!(runs
        .iter()
        .all(|r| r.tags["candidates"].starts_with("by valid.logloss: gbdt=")));
    assert_eq!(out.version.unwrap().meta.flavor, out.flavor);
    assert_eq!(
        reg.versions("pick").unwrap(),
        vec![1],
        "only the best is registered"
    );
}

/// A job reports its progress: every epoch of a deep kind, and around a GBDT's one call.
#[test]
fn jobs_report_progress_per_epoch() {
    use std::sync::{Arc, Mutex};
    for (kind, want) in [("mlp", vec![1, 2, 3]), ("gbdt", vec![0, 1])] {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        job(kind, 1)
            .on_progress(move |p| {
                s.lock()
                    .unwrap()
                    .push((p.done, p.total, p.train_loss.is_some()))
            })
            .run(&reg, &TrainingData::from_frame(data(kind, 300, 1)))
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.iter().map(|p| p.0).collect::<Vec<_>>(), want, "{kind}");
        assert!(seen
            .iter()
            .all(|p| p.1 == if kind == "mlp" { 3 } else { 1 }));
        assert!(
            seen.iter().all(|p| p.2 == (kind == "mlp")),
            "{kind}: losses only for epochs"
        );
    }
}
