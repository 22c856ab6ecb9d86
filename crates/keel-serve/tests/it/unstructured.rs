//! Issue 21: text and image models are deployed like tabular ones. A sequence encoder and a CNN
//! are registered, served through `Deployment` (champion, shadow, canary, pinned versions) and
//! over the V2 protocol (texts as BYTES, images as FP32 `[N, C, H, W]` or `[N, H, W, C]` with
//! `"layout": "NHWC"`); every class comes back, bit for bit the flavor's own scores.
#![cfg(feature = "http")]

use keel_core::{DType, Field, Schema};
use keel_deep::{Cnn, CnnConfig, ConvSpec, Head, Pooling, SeqConfig, SeqModel, Tokenizer};
use keel_model::Input;
use keel_registry::rollout::Rollout;
use keel_registry::{Bundle, Registry};
use keel_serve::http::ServerConfig;
use keel_serve::*;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

fn register(
    reg: &Registry,
    name: &str,
    flavor: &str,
    parts: (Vec<u8>, Vec<u8>),
    schema: Option<Schema>,
) -> u32 {
    let run = reg.start_run(name).unwrap();
    let id = run.id().clone();
    run.finish().unwrap();
    let mut b = Bundle::new(flavor)
        .with_file("model", parts.0)
        .with_file("weights", parts.1);
    b.meta.input_schema = schema;
    reg.register(name, &id, b).unwrap().version
}

fn seq(seed: u64) -> SeqModel {
    SeqModel::new(
        SeqConfig {
            tokenizer: Tokenizer::HashedWords { buckets: 256 },
            max_len: 16,
            d_model: 16,
            heads: 2,
            layers: 1,
            ff: 32,
            dropout: 0.0,
            pooling: Pooling::Mean,
            head: Head::Multiclass { classes: 3 },
        },
        seed,
    )
    .unwrap()
}

fn cnn() -> Cnn {
    Cnn::new(
        CnnConfig {
            channels: 2,
            height: 4,
            width: 4,
            conv: vec![ConvSpec {
                filters: 4,
                kernel: 3,
                pool: 2,
            }],
            dropout: 0.0,
            head: Head::Multiclass { classes: 3 },
        },
        7,
    )
    .unwrap()
}

fn widen(v: Vec<f32>) -> Vec<f64> {
    v.into_iter().map(f64::from).collect()
}

fn post(base: &str, path: &str, body: &Json) -> (u16, Json) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(&format!("{base}{path}"))
        .send_json(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap())
}

fn get(base: &str, path: &str) -> Json {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(&format!("{base}{path}"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

fn floats(v: &Json) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn text_and_image_models_are_deployed_and_served_over_v2() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let (s1, s2) = (seq(7), seq(8));
    let text = Schema::new(vec![Field::required("ticket", DType::String)]).unwrap();
    let v1 = register(
        &reg,
        "tickets",
        "sequence",
        s1.to_parts(BTreeMap::new()).unwrap(),
        Some(text.clone()),
    );
    let v2 = register(
        &reg,
        "tickets",
        "sequence",
        s2.to_parts(BTreeMap::new()).unwrap(),
        Some(text),
    );
    let c = cnn();
    let img = register(
        &reg,
        "digits",
        "cnn",
        c.to_parts(BTreeMap::new()).unwrap(),
        None,
    );
    Rollout::new(&reg, "tickets")
        .first_champion(v1, "first")
        .unwrap();
    Rollout::new(&reg, "digits")
        .first_champion(img, "first")
        .unwrap();
    let cfg = DeploymentConfig {
        canary_percent: 50.0,
        log_sample_rate: 0.0,
        ..DeploymentConfig::default()
    };
    let tickets =
        Arc::new(Deployment::from_registry(reg.clone(), "tickets", None, cfg.clone()).unwrap());
    let digits = Arc::new(Deployment::from_registry(reg.clone(), "digits", None, cfg).unwrap());

    // In process: one batch, every class, the flavor's own numbers.
    let texts = ["refund please", "the app crashes on login", "thanks!"];
    let own1 = widen(s1.predict_texts(&texts).unwrap());
    let own2 = widen(s2.predict_texts(&texts).unwrap());
    let b = tickets
        .predict_batch(None, "req-1", Input::Texts(&texts))
        .unwrap();
    assert_eq!(
        (b.outputs, b.model_version, b.route),
        (3, v1, Route::Champion)
    );
    assert_eq!(b.scores, own1);
    // A tabular request to a text model is a clear error.
    let err = tickets.predict(Request::default()).unwrap_err();
    assert!(err.to_string().contains("reads texts `ticket`"), "{err}");

    // Shadow: v2 sees every row off the critical path; canary: half of the request ids.
    tickets.start_shadow(v2, "retrained").unwrap();
    let b = tickets
        .predict_batch(None, "req-2", Input::Texts(&texts))
        .unwrap();
    assert_eq!(b.scores, own1, "the shadow never answers");
    for _ in 0..400 {
        if tickets.shadow_stats().compared >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(tickets.shadow_stats().compared, 3, "one comparison per row");
    tickets.override_to_canary("test").unwrap();
    let mut routes = std::collections::BTreeSet::new();
    for i in 0..40 {
        let b = tickets
            .predict_batch(None, &format!("req-{i}"), Input::Texts(&texts))
            .unwrap();
        assert_eq!(
            b.scores,
            if b.model_version == v2 { &own2 } else { &own1 }.clone()
        );
        routes.insert(b.route);
    }
    assert_eq!(routes.len(), 2, "both routes taken: {routes:?}");
    let pinned = tickets
        .predict_batch(Some(v2), "x", Input::Texts(&texts))
        .unwrap();
    assert_eq!((pinned.scores, pinned.route), (own2.clone(), Route::Canary));

    // Over V2.
    let server = keel_serve::http::start(
        vec![Arc::clone(&tickets), Arc::clone(&digits)],
        ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let base = format!("http://{}", server.addr());
    let meta = get(&base, "/v2/models/tickets");
    assert_eq!(
        meta["inputs"],
        json!([{"name": "ticket", "datatype": "BYTES", "shape": [-1]}])
    );
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 3]));
    let (s, r) = post(
        &base,
        &format!("/v2/models/tickets/versions/{v2}/infer"),
        &json!({"inputs": [{"name": "ticket", "shape": [3], "datatype": "BYTES", "data": texts}]}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["outputs"][0]["shape"], json!([3, 3]));
    assert_eq!(floats(&r["outputs"][0]["data"]), own2);
    let (s, r) = post(
        &base,
        "/v2/models/tickets/infer",
        &json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
    );
    assert_eq!(s, 400, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("takes one input, `ticket`"),
        "{r}"
    );

    let meta = get(&base, "/v2/models/digits");
    assert_eq!(
        meta["inputs"],
        json!([{"name": "input", "datatype": "FP32", "shape": [-1, 2, 4, 4]}])
    );
    let px: Vec<f32> = (0..2 * 32)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();
    let own = widen(c.predict_images(&px, 2).unwrap());
    let (s, r) = post(
        &base,
        "/v2/models/digits/infer",
        &json!({"inputs": [{"name": "input", "shape": [2, 2, 4, 4], "datatype": "FP32", "data": px}]}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(floats(&r["outputs"][0]["data"]), own);
    // The same images channels-last.
    let mut nhwc = vec![0f32; px.len()];
    for n in 0..2 {
        for ch in 0..2 {
            for y in 0..4 {
                for x in 0..4 {
                    nhwc[n * 32 + (y * 4 + x) * 2 + ch] = px[n * 32 + (ch * 4 + y) * 4 + x];
                }
            }
        }
    }
    let (s, r) = post(
        &base,
        "/v2/models/digits/infer",
        &json!({"parameters": {"layout": "NHWC"},
                "inputs": [{"name": "input", "shape": [2, 4, 4, 2], "datatype": "FP32", "data": nhwc}]}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(floats(&r["outputs"][0]["data"]), own);
    let (s, r) = post(
        &base,
        "/v2/models/digits/infer",
        &json!({"inputs": [{"name": "input", "shape": [2, 4, 4, 2], "datatype": "FP32", "data": nhwc}]}),
    );
    assert_eq!(s, 400, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("\"layout\": \"NHWC\""),
        "{r}"
    );
    server.stop().unwrap();
}
