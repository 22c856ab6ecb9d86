//! The Open Inference Protocol (KServe / Triton "V2") over HTTP, for [`Deployment`]s
//! (feature `http`; axum on a tokio runtime).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /v2/health/live`, `GET /v2/health/ready` | liveness, readiness |
//! | `GET /v2` | server metadata |
//! | `GET /v2/models/{name}[/versions/{v}]` | model metadata: inputs, outputs, versions |
//! | `GET /v2/models/{name}[/versions/{v}]/ready` | model readiness |
//! | `POST /v2/models/{name}[/versions/{v}]/infer` | inference |
//! | `GET /metrics` | Prometheus text: every deployment, plus HTTP status counters |
//! | `GET /admin/models/{name}` | deployment state and shadow statistics |
//! | `POST /admin/models/{name}/shadow` | `{"version": 3, "reason": "..."}` |
//! | `POST /admin/models/{name}/promote` | `{"to": "canary"\|"champion", "gate": {...}, "override_reason": "...", "labels": {...}}` |
//! | `POST /admin/models/{name}/rollback` | `{"reason": "..."}` |
//!
//! **Inputs.** One tensor per raw model input, named as the model's pipeline inputs (shape
//! `[N]` or `[N, 1]`), or a single `[N, F]` tensor holding all of them in the order the model
//! metadata lists. With a feature store, tensors named as the entity's join keys select the
//! entity whose stored features are read, and any feature sent with the request overrides the
//! stored value (a `null` element leaves the stored value in place). Optional `BYTES` tensors `request_id` and `routing_key` (canary stickiness).
//! Datatypes `BOOL`, `INT8`..`INT64`, `UINT8`..`UINT64`, `FP32`, `FP64`, `BYTES`; JSON data
//! flat or nested row-major, `null` for a missing numeric value; Triton's binary tensor
//! extension (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data`,
//! `binary_data_output`) for inputs and outputs.
//!
//! **Outputs.** `predict` (`FP64`, `[N]`, or `[N, C]` for C class scores), `model_version`
//! (`INT64`, `[N]`) and `route` (`BYTES`, `[N]`: champion, canary or shadow): each row says which
//! model answered it.
//!
//! **Errors.** A malformed request, wrong shape or datatype, missing or unknown input: 400;
//! unknown model or version: 404; a body over the configured limit: 413; admin calls without the
//! token: 401; a failed gate or wrong stage: 409. Every error body is `{"error": "..."}` and the
//! server keeps serving.
//!
//! **Admin.** Bound to loopback by default. [`start`] refuses a non-loopback address without an
//! admin token; with a token, admin calls need `Authorization: Bearer <token>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use keel_core::{DType, Field};
use keel_store::{StoreError, Value};
use serde_json::{json, Map, Value as Json};

use crate::deployment::{CanaryGate, Deployment, LabelEvidence, Request, Route, ShadowGate, Stage};
use crate::{Result, ServeError};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address (default `127.0.0.1:8000`; port 0 picks a free port).
    pub addr: SocketAddr,
    /// Bearer token for `/admin` calls; required when `addr` is not loopback.
    pub admin_token: Option<String>,
    /// Largest request body accepted, bytes (default 16 MiB).
    pub max_body_bytes: usize,
    /// Runtime worker threads (0: one per core).
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            admin_token: None,
            max_body_bytes: 16 << 20,
            threads: 0,
        }
    }
}

/// Requests with more rows than this are scored on the blocking pool, so a large batch does
/// not hold a runtime worker that small requests are waiting for.
const INLINE_ROWS: usize = 64;

struct Served {
    deployment: Arc<Deployment>,
    keys: Vec<Field>,
}

struct AppState {
    models: BTreeMap<String, Served>,
    admin_token: Option<String>,
    max_body: usize,
    /// Responses by status class: 2xx, 4xx, 5xx, other.
    statuses: [AtomicU64; 4],
}

/// An HTTP error: status and message (sent as `{"error": message}`).
#[derive(Debug)]
struct HttpError(StatusCode, String);

impl HttpError {
    fn bad(msg: impl Into<String>) -> HttpError {
        HttpError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> HttpResponse {
        let mut r = (self.0, axum::Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read: the connection cannot carry another request.
            // Saying so keeps clients from reusing it (a pooled keep-alive connection would
            // fail on the next request).
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

impl From<ServeError> for HttpError {
    fn from(e: ServeError) -> HttpError {
        let status = match &e {
            ServeError::BadRequest(_) | ServeError::Transform(_) => StatusCode::BAD_REQUEST,
            ServeError::Store(StoreError::BadValue { .. } | StoreError::TooLarge(_)) => {
                StatusCode::BAD_REQUEST
            }
            ServeError::NotServing { .. } => StatusCode::NOT_FOUND,
            ServeError::GateFailed(_) | ServeError::Stage(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError(status, e.to_string())
    }
}

type HttpResult<T> = std::result::Result<T, HttpError>;

/// The V2 router over `deployments` (one per model name), to mount in an existing axum
/// application or serve with [`start`].
pub fn router(
    deployments: Vec<Arc<Deployment>>,
    admin_token: Option<String>,
    max_body_bytes: usize,
) -> Result<Router> {
    let mut models = BTreeMap::new();
    for d in deployments {
        let keys = d.entity_keys()?;
        let name = d.name().to_string();
        if models
            .insert(
                name.clone(),
                Served {
                    deployment: d,
                    keys,
                },
            )
            .is_some()
        {
            return Err(ServeError::Config(format!("model `{name}` given twice")));
        }
    }
    let state = Arc::new(AppState {
        models,
        admin_token,
        max_body: max_body_bytes,
        statuses: Default::default(),
    });
    Ok(Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(version_infer),
        )
        .route("/metrics", get(metrics))
        .route("/admin/models/{name}", get(admin_state))
        .route("/admin/models/{name}/shadow", post(admin_shadow))
        .route("/admin/models/{name}/promote", post(admin_promote))
        .route("/admin/models/{name}/rollback", post(admin_rollback))
        .fallback(|| async { HttpError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&state),
            count_status,
        ))
        .with_state(state))
}

/// Every error leaves as the documented JSON body, including the ones axum answers itself in
/// plain text (405 with its `Allow` header kept, extractor rejections such as bad
/// percent-encoding, body limits): the text becomes the `error` message.
async fn json_errors(r: HttpResponse) -> HttpResponse {
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if r.status().is_success() || json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase(),
        t => t.to_string(),
    };
    let mut out = HttpError(parts.status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

async fn count_status(State(s): State<Arc<AppState>>, r: HttpResponse) -> HttpResponse {
    let class = match r.status().as_u16() {
        200..=299 => 0,
        400..=499 => 1,
        500..=599 => 2,
        _ => 3,
    };
    s.statuses[class].fetch_add(1, Ordering::Relaxed);
    r
}

/// A server running on its own thread and runtime.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl RunningServer {
    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes in-flight requests, and joins the server thread.
    pub fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    /// Blocks until the server ends (it runs until [`RunningServer::stop`] or process exit).
    pub fn wait(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => Ok(r?),
            Some(Err(_)) => Err(ServeError::Config("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `cfg.addr` and serves `deployments` on a new thread with its own runtime. Refuses a
/// non-loopback address without an admin token (the admin endpoints move traffic).
pub fn start(deployments: Vec<Arc<Deployment>>, cfg: ServerConfig) -> Result<RunningServer> {
    if !cfg.addr.ip().is_loopback() && cfg.admin_token.as_deref().is_none_or(str::is_empty) {
        return Err(ServeError::Config(format!(
            "{} is not a loopback address: set an admin token to expose the admin endpoints",
            cfg.addr
        )));
    }
    let app = router(deployments, cfg.admin_token.clone(), cfg.max_body_bytes)?;
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("keel-http")
        .enable_io()
        // axum backs off from accept errors (EMFILE when descriptors run out) with a timer:
        // without a timer driver that back-off panicked and took the server down.
        .enable_time()
        .build()?;
    let listener = std::net::TcpListener::bind(cfg.addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("keel-http-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await
            })
        })?;
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

// ---------------------------------------------------------------------------------------------
// Health and metadata

async fn live() -> axum::Json<Json> {
    axum::Json(json!({ "live": true }))
}

async fn ready(State(s): State<Arc<AppState>>) -> axum::Json<Json> {
    // Deployments are loaded before the router exists: serving means ready.
    axum::Json(json!({ "ready": !s.models.is_empty() }))
}

async fn server_metadata() -> axum::Json<Json> {
    axum::Json(json!({
        "name": "keel",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

fn served<'a>(s: &'a AppState, name: &str) -> HttpResult<&'a Served> {
    s.models
        .get(name)
        .ok_or_else(|| HttpError(StatusCode::NOT_FOUND, format!("unknown model `{name}`")))
}

fn parse_version(v: &str) -> HttpResult<u32> {
    v.parse()
        .map_err(|_| HttpError(StatusCode::NOT_FOUND, format!("unknown version `{v}`")))
}

fn datatype(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::F64 => "FP64",
        DType::I64 => "INT64",
        DType::Bool => "BOOL",
        _ => "BYTES",
    }
}

fn metadata(sv: &Served, version: Option<u32>) -> HttpResult<Json> {
    let d = &sv.deployment;
    let (model, _) = d.model(version)?;
    let (champion, challenger) = d.versions();
    let mut versions = vec![champion.to_string()];
    if let Some((v, _)) = challenger {
        versions.push(v.to_string());
    }
    let mut inputs: Vec<Json> = sv
        .keys
        .iter()
        .map(|k| json!({ "name": k.name, "datatype": datatype(k.dtype), "shape": [-1] }))
        .collect();
    inputs.extend(
        model
            .pipeline
            .input_schema()
            .fields()
            .iter()
            .map(|f| json!({ "name": f.name, "datatype": datatype(f.dtype), "shape": [-1] })),
    );
    let c = model.predictor.outputs();
    let shape = if c == 1 { json!([-1]) } else { json!([-1, c]) };
    Ok(json!({
        "name": d.name(),
        "versions": versions,
        "platform": "keel",
        "inputs": inputs,
        "outputs": [
            { "name": "predict", "datatype": "FP64", "shape": shape },
            { "name": "model_version", "datatype": "INT64", "shape": [-1] },
            { "name": "route", "datatype": "BYTES", "shape": [-1] },
        ],
    }))
}

async fn model_metadata(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> HttpResult<axum::Json<Json>> {
    Ok(axum::Json(metadata(served(&s, &name)?, None)?))
}

async fn version_metadata(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> HttpResult<axum::Json<Json>> {
    let v = parse_version(&version)?;
    Ok(axum::Json(metadata(served(&s, &name)?, Some(v))?))
}

async fn model_ready(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> HttpResult<axum::Json<Json>> {
    served(&s, &name)?;
    Ok(axum::Json(json!({ "name": name, "ready": true })))
}

async fn version_ready(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> HttpResult<axum::Json<Json>> {
    let v = parse_version(&version)?;
    served(&s, &name)?.deployment.model(Some(v))?;
    Ok(axum::Json(
        json!({ "name": name, "version": version, "ready": true }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Inference

async fn infer(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<HttpResponse> {
    run_infer(s, name, None, headers, body).await
}

async fn version_infer(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<HttpResponse> {
    let v = parse_version(&version)?;
    run_infer(s, name, Some(v), headers, body).await
}

async fn read_body(s: &AppState, headers: &HeaderMap, body: Body) -> HttpResult<Bytes> {
    let too_big = || {
        HttpError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {} bytes", s.max_body),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_body as u64) {
        return Err(too_big());
    }
    axum::body::to_bytes(body, s.max_body)
        .await
        .map_err(|_| too_big())
}

async fn run_infer(
    s: Arc<AppState>,
    name: String,
    version: Option<u32>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<HttpResponse> {
    let sv = served(&s, &name)?;
    let bytes = read_body(&s, &headers, body).await?;
    let header_len = match headers.get("inference-header-content-length") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n <= bytes.len())
                .ok_or_else(|| HttpError::bad("bad Inference-Header-Content-Length"))?,
        ),
        None => None,
    };
    let (json_part, binary) = bytes.split_at(header_len.unwrap_or(bytes.len()));
    let req = keel_v2::parse_infer_request(json_part, binary).map_err(|e| HttpError::bad(e.0))?;
    let (model, _) = sv.deployment.model(version)?;
    let id = req.id.clone();
    let parsed = parse_request(req, sv, &model)?;
    let deployment = Arc::clone(&sv.deployment);
    let rows = parsed.requests.len();
    let run = move || -> HttpResult<Vec<crate::Response>> {
        parsed
            .requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                match version {
                    Some(v) => deployment.predict_version(v, r),
                    None => deployment.predict(r),
                }
                .map_err(|e| {
                    let e = HttpError::from(e);
                    HttpError(e.0, format!("row {i}: {}", e.1))
                })
            })
            .collect()
    };
    let responses = if rows > INLINE_ROWS {
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|_| HttpError(StatusCode::INTERNAL_SERVER_ERROR, "scoring failed".into()))??
    } else {
        run()?
    };
    respond(
        &name,
        id.as_deref(),
        parsed.outputs,
        parsed.binary_all,
        &responses,
    )
}

/// What one request asks for, ready to score.
struct Parsed {
    requests: Vec<Request>,
    /// Requested outputs and whether each is binary (`None`: all three).
    outputs: Option<Vec<(String, bool)>>,
    binary_all: bool,
}

/// Maps decoded tensors onto requests: entity keys, features (one per tensor, or one `[N, F]`
/// matrix), request ids and routing keys.
fn parse_request(
    req: keel_v2::InferRequest,
    sv: &Served,
    model: &crate::ServedModel,
) -> HttpResult<Parsed> {
    let tensors = req.inputs;
    let rows = tensors.first().map_or(0, keel_v2::Tensor::rows);
    let schema = model.pipeline.input_schema();
    let features = schema.fields();
    // Where each input goes.
    enum Role<'a> {
        Key(usize),
        Feature(&'a Field),
        Matrix,
        RequestId,
        RoutingKey,
    }
    let mut roles = Vec::with_capacity(tensors.len());
    for t in &tensors {
        if t.shape.first() != Some(&rows) {
            return Err(HttpError::bad(format!(
                "input `{}` has shape {:?}; every input needs the same first dimension ({rows})",
                t.name, t.shape
            )));
        }
        let width = t.width();
        let role = if let Some(k) = sv.keys.iter().position(|k| k.name == t.name) {
            Role::Key(k)
        } else if let Some(f) = features.iter().find(|f| f.name == t.name) {
            Role::Feature(f)
        } else if t.name == "request_id" {
            Role::RequestId
        } else if t.name == "routing_key" {
            Role::RoutingKey
        } else if tensors.len() == 1 && t.shape.len() == 2 && width == features.len() {
            Role::Matrix
        } else {
            let mut names: Vec<&str> = sv.keys.iter().map(|k| k.name.as_str()).collect();
            names.extend(features.iter().map(|f| f.name.as_str()));
            return Err(HttpError::bad(format!(
                "unknown input `{}` (shape {:?}); the model takes {} (each [N] or [N,1]), or one [N,{}] tensor",
                t.name,
                t.shape,
                names.join(", "),
                features.len()
            )));
        };
        if !matches!(role, Role::Matrix) && width != 1 {
            return Err(HttpError::bad(format!(
                "input `{}` has shape {:?}; expected [N] or [N,1]",
                t.name, t.shape
            )));
        }
        if matches!(role, Role::RequestId | Role::RoutingKey) && t.datatype != "BYTES" {
            return Err(HttpError::bad(format!("input `{}` must be BYTES", t.name)));
        }
        roles.push(role);
    }
    // Required inputs: the entity keys with a store, every feature without one.
    let has_matrix = roles.iter().any(|r| matches!(r, Role::Matrix));
    for (i, k) in sv.keys.iter().enumerate() {
        if !roles.iter().any(|r| matches!(r, Role::Key(j) if *j == i)) {
            return Err(HttpError::bad(format!(
                "missing input `{}` (entity key)",
                k.name
            )));
        }
    }
    if sv.keys.is_empty() && !has_matrix {
        if let Some(f) = features.iter().find(|f| {
            !roles
                .iter()
                .any(|r| matches!(r, Role::Feature(g) if g.name == f.name))
        }) {
            return Err(HttpError::bad(format!("missing input `{}`", f.name)));
        }
    }
    let id = req.id.as_deref().unwrap_or("");
    let mut requests: Vec<Request> = (0..rows)
        .map(|i| Request {
            request_id: match (id.is_empty(), rows) {
                (true, _) => String::new(),
                (false, 1) => id.to_string(),
                (false, _) => format!("{id}-{i}"),
            },
            entity: vec![Value::Null; sv.keys.len()],
            features: Vec::new(),
            routing_key: None,
        })
        .collect();
    for (t, role) in tensors.into_iter().zip(&roles) {
        match role {
            Role::Key(k) => {
                let dtype = sv.keys[*k].dtype;
                for (r, v) in requests.iter_mut().zip(t.values) {
                    r.entity[*k] = coerce(v, dtype, &t.name)?;
                }
            }
            Role::Feature(f) => {
                for (r, v) in requests.iter_mut().zip(t.values) {
                    // With a store, a missing request-time value leaves the stored one in place.
                    if matches!(v, keel_v2::Element::Null) && !sv.keys.is_empty() {
                        continue;
                    }
                    r.features
                        .push((f.name.clone(), coerce(v, f.dtype, &t.name)?));
                }
            }
            Role::Matrix => {
                let mut it = t.values.into_iter();
                for r in requests.iter_mut() {
                    for f in features {
                        let v = it.next().unwrap_or(keel_v2::Element::Null);
                        r.features
                            .push((f.name.clone(), coerce(v, f.dtype, &t.name)?));
                    }
                }
            }
            Role::RequestId | Role::RoutingKey => {
                for (r, v) in requests.iter_mut().zip(t.values) {
                    let keel_v2::Element::Str(s) = v else {
                        return Err(HttpError::bad(format!("input `{}` must be BYTES", t.name)));
                    };
                    match role {
                        Role::RequestId => r.request_id = s,
                        _ => r.routing_key = Some(s),
                    }
                }
            }
        }
    }
    if let Some(o) = req
        .outputs
        .iter()
        .flatten()
        .find(|(o, _)| !OUTPUTS.contains(&o.as_str()))
    {
        return Err(HttpError::bad(format!(
            "unknown output `{}` (outputs: {})",
            o.0,
            OUTPUTS.join(", ")
        )));
    }
    Ok(Parsed {
        requests,
        outputs: req.outputs,
        binary_all: req.binary_output,
    })
}

const OUTPUTS: [&str; 3] = ["predict", "model_version", "route"];

/// Converts a tensor element to the dtype of the key or feature it feeds.
fn coerce(v: keel_v2::Element, dtype: DType, name: &str) -> HttpResult<Value> {
    use keel_v2::Element as E;
    let wrong = |v: &E| {
        HttpError::bad(format!(
            "input `{name}`: {v:?} does not fit feature type {dtype}"
        ))
    };
    Ok(match (dtype, v) {
        (_, E::Null) => Value::Null,
        (DType::F32 | DType::F64, E::F64(x)) => Value::F64(x),
        (DType::F32 | DType::F64, E::I64(x)) => Value::F64(x as f64),
        (DType::F32 | DType::F64, E::Bool(b)) => Value::F64(f64::from(u8::from(b))),
        (DType::I64, E::I64(x)) => Value::I64(x),
        (DType::I64, E::F64(x)) if x.fract() == 0.0 && x.abs() < 9.0e15 => Value::I64(x as i64),
        (DType::Bool, E::Bool(b)) => Value::Bool(b),
        (DType::String | DType::Categorical, E::Str(s)) => Value::Str(s),
        (_, v) => return Err(wrong(&v)),
    })
}

fn respond(
    name: &str,
    id: Option<&str>,
    requested: Option<Vec<(String, bool)>>,
    binary_all: bool,
    responses: &[crate::Response],
) -> HttpResult<HttpResponse> {
    let n = responses.len();
    let width = responses.first().map_or(1, |r| r.scores.len());
    let requested = requested.unwrap_or_else(|| {
        OUTPUTS
            .iter()
            .map(|o| (o.to_string(), binary_all))
            .collect()
    });
    let mut outputs = Vec::with_capacity(requested.len());
    let mut blob: Vec<u8> = Vec::new();
    for (out, bin) in &requested {
        let (datatype, shape, data, raw): (&str, Json, Json, Vec<u8>) = match out.as_str() {
            "predict" => {
                let flat: Vec<f64> = responses
                    .iter()
                    .flat_map(|r| r.scores.iter().copied())
                    .collect();
                if flat.len() != n * width {
                    return Err(HttpError(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "rows answered with different output widths".into(),
                    ));
                }
                let shape = if width == 1 {
                    json!([n])
                } else {
                    json!([n, width])
                };
                let raw = if *bin {
                    flat.iter().flat_map(|x| x.to_le_bytes()).collect()
                } else {
                    Vec::new()
                };
                // JSON has no NaN: a non-finite score is sent as null.
                let data = if *bin { Json::Null } else { json!(flat) };
                ("FP64", shape, data, raw)
            }
            "model_version" => {
                let v: Vec<i64> = responses
                    .iter()
                    .map(|r| i64::from(r.model_version))
                    .collect();
                let raw = if *bin {
                    v.iter().flat_map(|x| x.to_le_bytes()).collect()
                } else {
                    Vec::new()
                };
                (
                    "INT64",
                    json!([n]),
                    if *bin { Json::Null } else { json!(v) },
                    raw,
                )
            }
            _ => {
                let v: Vec<&str> = responses.iter().map(|r| route_name(r.route)).collect();
                let raw = if *bin {
                    v.iter()
                        .flat_map(|s| (s.len() as u32).to_le_bytes().into_iter().chain(s.bytes()))
                        .collect()
                } else {
                    Vec::new()
                };
                (
                    "BYTES",
                    json!([n]),
                    if *bin { Json::Null } else { json!(v) },
                    raw,
                )
            }
        };
        let mut o = Map::new();
        o.insert("name".into(), json!(out));
        o.insert("datatype".into(), json!(datatype));
        o.insert("shape".into(), shape);
        if *bin {
            o.insert(
                "parameters".into(),
                json!({ "binary_data_size": raw.len() }),
            );
            blob.extend_from_slice(&raw);
        } else {
            o.insert("data".into(), data);
        }
        outputs.push(Json::Object(o));
    }
    let mut body = Map::new();
    body.insert("model_name".into(), json!(name));
    if let Some(r) = responses.first() {
        body.insert("model_version".into(), json!(r.model_version.to_string()));
    }
    if let Some(id) = id {
        body.insert("id".into(), json!(id));
    }
    body.insert("outputs".into(), Json::Array(outputs));
    let head = serde_json::to_vec(&Json::Object(body))
        .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if blob.is_empty() && !requested.iter().any(|(_, b)| *b) {
        let mut r = HttpResponse::new(Body::from(head));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    let head_len = head.len();
    let mut all = head;
    all.extend_from_slice(&blob);
    let mut r = HttpResponse::new(Body::from(all));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut().insert(
        "inference-header-content-length",
        HeaderValue::from(head_len),
    );
    Ok(r)
}

fn route_name(r: Route) -> &'static str {
    match r {
        Route::Champion => "champion",
        Route::Canary => "canary",
        Route::Shadow => "shadow",
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

async fn metrics(State(s): State<Arc<AppState>>) -> HttpResponse {
    let mut text = String::new();
    let mut typed = std::collections::HashSet::new();
    for sv in s.models.values() {
        for line in sv.deployment.prometheus().lines() {
            // One TYPE line per metric name across all models.
            if line.starts_with("# TYPE") && !typed.insert(line.to_string()) {
                continue;
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str("# TYPE keel_http_responses_total counter\n");
    for (class, c) in ["2xx", "4xx", "5xx", "other"].iter().zip(&s.statuses) {
        text.push_str(&format!(
            "keel_http_responses_total{{class=\"{class}\"}} {}\n",
            c.load(Ordering::Relaxed)
        ));
    }
    let mut r = HttpResponse::new(Body::from(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Admin

fn authorize(s: &AppState, headers: &HeaderMap) -> HttpResult<()> {
    let Some(token) = &s.admin_token else {
        return Ok(()); // loopback only: enforced by `start`
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare without an early exit on the first differing byte.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(HttpError(
            StatusCode::UNAUTHORIZED,
            "admin calls need `Authorization: Bearer <token>`".into(),
        ))
    }
}

fn admin_body(bytes: &[u8]) -> HttpResult<Map<String, Json>> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(bytes) {
        Ok(Json::Object(m)) => Ok(m),
        _ => Err(HttpError::bad("admin body must be a JSON object")),
    }
}

/// Checks the token, finds the model and parses the JSON body of an admin call.
fn admin_call<'a>(
    s: &'a AppState,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> HttpResult<(&'a Deployment, Map<String, Json>)> {
    authorize(s, headers)?;
    Ok((&served(s, name)?.deployment, admin_body(body)?))
}

fn state_json(d: &Deployment) -> Json {
    let (champion, challenger) = d.versions();
    let challenger = challenger.map(|(v, st)| match st {
        Stage::Shadow => json!({ "version": v, "stage": "shadow" }),
        Stage::Canary { percent } => json!({ "version": v, "stage": "canary", "percent": percent }),
    });
    json!({
        "model": d.name(),
        "champion": champion,
        "challenger": challenger,
        "shadow": d.shadow_stats(),
    })
}

async fn admin_state(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> HttpResult<axum::Json<Json>> {
    authorize(&s, &headers)?;
    Ok(axum::Json(state_json(&served(&s, &name)?.deployment)))
}

fn reason(body: &Map<String, Json>, key: &str) -> HttpResult<String> {
    body.get(key)
        .and_then(Json::as_str)
        .filter(|r| !r.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| HttpError::bad(format!("`{key}` (why) is required")))
}

async fn admin_shadow(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResult<axum::Json<Json>> {
    let (d, b) = admin_call(&s, &name, &headers, &body)?;
    let version = b
        .get("version")
        .and_then(Json::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| HttpError::bad("`version` is required"))?;
    d.start_shadow(version, &reason(&b, "reason")?)?;
    Ok(axum::Json(state_json(d)))
}

async fn admin_promote(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResult<axum::Json<Json>> {
    let (d, b) = admin_call(&s, &name, &headers, &body)?;
    let override_reason = b.get("override_reason").and_then(Json::as_str);
    let gate = b.get("gate").cloned();
    let parse = |what: &str| {
        HttpError::bad(format!(
            "`gate` must be a {what} object, or give `override_reason`"
        ))
    };
    match b.get("to").and_then(Json::as_str) {
        Some("canary") => {
            let g: ShadowGate = match (gate, override_reason) {
                (Some(g), _) => serde_json::from_value(g).map_err(|_| parse("ShadowGate"))?,
                (None, Some(_)) => ShadowGate {
                    min_samples: u64::MAX,
                    min_agreement: 1.0,
                    max_mean_diff: 0.0,
                },
                (None, None) => return Err(parse("ShadowGate")),
            };
            d.promote_to_canary(&g, override_reason)?;
        }
        Some("champion") => {
            let g: CanaryGate = match (gate, override_reason) {
                (Some(g), _) => serde_json::from_value(g).map_err(|_| parse("CanaryGate"))?,
                (None, Some(_)) => CanaryGate {
                    min_samples: u64::MAX,
                    max_p99_us: 0.0,
                    max_error_rate: 0.0,
                    metric_margin: 0.0,
                    require_labels: true,
                },
                (None, None) => return Err(parse("CanaryGate")),
            };
            let labels: Option<LabelEvidence> = match b.get("labels") {
                None | Some(Json::Null) => None,
                Some(l) => Some(serde_json::from_value(l.clone()).map_err(|_| {
                    HttpError::bad("`labels` must be {\"champion\": f64, \"challenger\": f64}")
                })?),
            };
            d.promote_to_champion(&g, labels, override_reason)?;
        }
        _ => return Err(HttpError::bad("`to` must be \"canary\" or \"champion\"")),
    }
    Ok(axum::Json(state_json(d)))
}

async fn admin_rollback(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResult<axum::Json<Json>> {
    let (d, b) = admin_call(&s, &name, &headers, &body)?;
    let to = d.rollback(&reason(&b, "reason")?)?;
    let mut st = state_json(d);
    st["rolled_back_to"] = json!(to);
    Ok(axum::Json(st))
}
