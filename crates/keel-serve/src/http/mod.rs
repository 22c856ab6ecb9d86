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
//! model answered it. On request, `missing` (`BYTES`, `[N]`): per row the stored features scored
//! as missing (`amount:expired,risk:not_found`; empty when none). An entity with no stored row
//! at all is refused with 404 unless the deployment's `on_missing` is `impute`.
//!
//! **Errors.** A malformed request, wrong shape or datatype, missing or unknown input: 400;
//! unknown model or version: 404; a body over the configured limit: 413; admin calls without the
//! token: 401; a failed gate or wrong stage: 409. Every error body is `{"error": "..."}` and the
//! server keeps serving.
//!
//! **Limits.** Every limit a client could push has a default and a [`ServerConfig`] field:
//! body bytes, rows per request, header/idle and body timeouts, open connections and requests
//! in flight (beyond the last two: 503 at once). Requested outputs are named at most once.
//!
//! **Admin.** Disabled unless [`ServerConfig::admin_token`] is set (403 otherwise); with a token,
//! admin calls need `Authorization: Bearer <token>`, a JSON body (`Content-Type:
//! application/json`) on POST, no `Origin` header (browsers send one: a web page cannot drive
//! the admin API) and a `Host` from [`ServerConfig::admin_hosts`]. `keel serve` generates a
//! token into a 0600 file ([`generate_admin_token`]). See `docs/security.md`.

mod admin;
#[cfg(feature = "grpc")]
pub mod grpc;
mod server;

pub use admin::generate_admin_token;
pub use server::{start, RunningServer, ServerConfig};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use keel_core::{DType, Field};
use keel_model::InputSpec;
use keel_store::{StoreError, Value};
use serde_json::{json, Value as Json};

use crate::deployment::{Deployment, Request, RequestId, Route};
use crate::{Result, ServeError};
use server::ListenerStats;

/// Requests with more rows than this are bulk work (see [`bulk`]), so a large batch does not
/// hold a runtime worker that small requests are waiting for.
const INLINE_ROWS: usize = 64;

struct Served {
    deployment: Arc<Deployment>,
    keys: Vec<Field>,
}

/// Who may call `/admin`.
#[derive(Debug, Clone)]
struct AdminAccess {
    /// `None`: admin disabled.
    token: Option<String>,
    /// Allowed `Host` names (empty: any).
    hosts: Vec<String>,
}

struct AppState {
    models: BTreeMap<String, Served>,
    admin: AdminAccess,
    max_body: usize,
    max_rows: usize,
    max_response_values: usize,
    body_timeout: Duration,
    /// Requests in flight; `try_acquire` fails beyond the cap (503).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Bulk requests scored at once (the others wait their turn).
    bulk: tokio::sync::Semaphore,
    /// Responses by status class: 2xx, 4xx, 5xx, other.
    statuses: [AtomicU64; 4],
    /// Requests shed with 503 because the in-flight cap was reached.
    shed: AtomicU64,
    listener: Arc<ListenerStats>,
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
        if matches!(
            self.0,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
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
            ServeError::BadRequest(_)
            | ServeError::Transform(_)
            | ServeError::Model(keel_model::ModelError::Shape(_)) => StatusCode::BAD_REQUEST,
            ServeError::Store(StoreError::BadValue { .. } | StoreError::TooLarge(_)) => {
                StatusCode::BAD_REQUEST
            }
            ServeError::NotServing { .. } | ServeError::UnknownEntity { .. } => {
                StatusCode::NOT_FOUND
            }
            ServeError::Model(keel_model::ModelError::IncompatibleBundle { .. })
            | ServeError::Registry(
                keel_registry::RegistryError::Unsigned { .. }
                | keel_registry::RegistryError::BadSignature { .. }
                | keel_registry::RegistryError::Tampered { .. },
            ) => StatusCode::UNPROCESSABLE_ENTITY,
            ServeError::GateFailed(_)
            | ServeError::Stage(_)
            | ServeError::Registry(
                keel_registry::RegistryError::AliasMoved { .. }
                | keel_registry::RegistryError::Transition { .. }
                | keel_registry::RegistryError::Busy { .. },
            ) => StatusCode::CONFLICT,
            // A shared system (Redis, MLflow) that does not answer: retry later.
            ServeError::Store(StoreError::Backend { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Registry(r) if r.is_unreachable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError(status, e.to_string())
    }
}

type HttpResult<T> = std::result::Result<T, HttpError>;

/// The V2 router over `deployments` (one per model name), to mount in an existing axum
/// application (or serve with [`start`]). `cfg`'s admin access, body and row limits, body
/// timeout and in-flight cap apply; connection limits and header timeouts are the host
/// server's.
pub fn router(deployments: Vec<Arc<Deployment>>, cfg: &ServerConfig) -> Result<Router> {
    let admin = AdminAccess {
        token: cfg.admin_token.clone(),
        hosts: cfg.admin_hosts.clone(),
    };
    router_with(deployments, admin, cfg, Arc::default())
}

fn router_with(
    deployments: Vec<Arc<Deployment>>,
    admin: AdminAccess,
    cfg: &ServerConfig,
    listener: Arc<ListenerStats>,
) -> Result<Router> {
    Ok(routes(app_state(deployments, admin, cfg, listener)?))
}

/// The runtime every transport shares: the served models, limits and counters.
fn app_state(
    deployments: Vec<Arc<Deployment>>,
    admin: AdminAccess,
    cfg: &ServerConfig,
    listener: Arc<ListenerStats>,
) -> Result<Arc<AppState>> {
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
        admin,
        max_body: cfg.max_body_bytes,
        max_rows: cfg.max_rows,
        max_response_values: cfg.max_response_values,
        body_timeout: cfg.body_timeout,
        in_flight: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent_requests)),
        bulk: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
        ),
        statuses: Default::default(),
        shed: AtomicU64::new(0),
        listener,
    });
    Ok(state)
}

/// The HTTP routes over a shared runtime.
fn routes(state: Arc<AppState>) -> Router {
    Router::new()
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
        .route("/admin/models/{name}", get(admin::state))
        .route("/admin/models/{name}/shadow", post(admin::shadow))
        .route("/admin/models/{name}/promote", post(admin::promote))
        .route("/admin/models/{name}/override", post(admin::override_gate))
        .route("/admin/models/{name}/rollback", post(admin::rollback))
        .fallback(|| async { HttpError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            admit,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&state),
            count_status,
        ))
        .with_state(state)
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

/// Longest request URI (path and query) accepted, bytes (414 beyond).
const MAX_URI_BYTES: usize = 8 << 10;

/// Refuses URIs over [`MAX_URI_BYTES`] (414); admits a request while fewer than
/// `max_concurrent_requests` are in flight; beyond that, 503 at once (nothing queues).
async fn admit(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    if req.uri().path().len() + req.uri().query().map_or(0, str::len) > MAX_URI_BYTES {
        return HttpError(
            StatusCode::URI_TOO_LONG,
            format!("request URI too long (at most {MAX_URI_BYTES} bytes)"),
        )
        .into_response();
    }
    let Ok(_permit) = Arc::clone(&s.in_flight).try_acquire_owned() else {
        s.shed.fetch_add(1, Ordering::Relaxed);
        let mut r = HttpError(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry later".into(),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    next.run(req).await
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

// ---------------------------------------------------------------------------------------------
// Health and metadata

async fn live() -> axum::Json<Json> {
    axum::Json(json!({ "live": true }))
}

async fn ready(State(s): State<Arc<AppState>>) -> axum::Json<Json> {
    // Deployments are loaded before the router exists: serving means ready. A stale registry
    // (unreachable since the last read) does not make a replica unready: it keeps serving the
    // last verified models, and says so per model under `registry`.
    let registry: serde_json::Map<String, Json> = s
        .models
        .iter()
        .map(|(name, sv)| {
            let f = sv.deployment.follow_status();
            let (champion, challenger) = sv.deployment.versions();
            (
                name.clone(),
                json!({
                    "stale": f.stale,
                    "last_sync_ms": f.last_sync_ms,
                    "last_error": f.last_error,
                    "refused": f.refused.iter()
                        .map(|(v, why)| json!({"version": v, "reason": why}))
                        .collect::<Vec<_>>(),
                    "champion": champion,
                    "challenger": challenger.map(|(v, _)| v),
                }),
            )
        })
        .collect();
    axum::Json(json!({ "ready": !s.models.is_empty(), "registry": registry }))
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
    let inputs: Vec<Json> = match model.input() {
        InputSpec::Text => vec![json!({ "name": model.input_name(), "datatype": "BYTES",
                                        "shape": [-1] })],
        InputSpec::Tensor(dims) => {
            let mut shape = vec![-1i64];
            shape.extend(dims.iter().map(|&d| d as i64));
            vec![json!({ "name": model.input_name(), "datatype": "FP32", "shape": shape })]
        }
        _ => {
            let mut inputs: Vec<Json> = sv
                .keys
                .iter()
                .map(|k| json!({ "name": k.name, "datatype": datatype(k.dtype), "shape": [-1] }))
                .collect();
            if let Some(tab) = model.tabular() {
                inputs.extend(tab.pipeline.input_schema().fields().iter().map(
                    |f| json!({ "name": f.name, "datatype": datatype(f.dtype), "shape": [-1] }),
                ));
            }
            inputs
        }
    };
    let c = model.outputs();
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
            { "name": "missing", "datatype": "BYTES", "shape": [-1] },
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

/// Reads a body of at most `limit` bytes within the body timeout (413 / 408 otherwise).
async fn read_body(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> HttpResult<Bytes> {
    let too_big = || {
        HttpError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    match tokio::time::timeout(s.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(r) => r.map_err(|_| too_big()),
        Err(_) => Err(HttpError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                s.body_timeout.as_secs_f64()
            ),
        )),
    }
}

/// Bodies larger than this, and requests of more than [`INLINE_ROWS`] rows, are bulk work.
const BULK_BYTES: usize = 64 << 10;

async fn run_infer(
    s: Arc<AppState>,
    name: String,
    version: Option<u32>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<HttpResponse> {
    let started = std::time::Instant::now();
    let logged = name.clone();
    let r = infer_body(s, name, version, headers, body, started).await;
    if let Err(e) = &r {
        log_refused("http", &logged, started, e);
    }
    r
}

/// One request's log event (target `keel::request`): transport, model, version, the client's
/// request id, rows, routes taken, status and latency. Successful requests log at `info`.
fn log_answered(transport: &str, started: std::time::Instant, a: &Answered) {
    tracing::info!(
        target: "keel::request",
        transport,
        model = %a.name,
        version = a.version.as_deref().unwrap_or(""),
        id = a.id.as_deref().unwrap_or(""),
        rows = a.rows,
        routes = %a.routes,
        status = 200u16,
        latency_us = started.elapsed().as_micros() as u64,
        "inference"
    );
}

/// A refused or failed request's log event: `warn` for client errors, `error` for the rest.
fn log_refused(transport: &str, model: &str, started: std::time::Instant, e: &HttpError) {
    let status = e.0.as_u16();
    let latency_us = started.elapsed().as_micros() as u64;
    if e.0.is_client_error() || e.0 == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(target: "keel::request", transport, model, status, latency_us, error = %e.1, "inference refused");
    } else {
        tracing::error!(target: "keel::request", transport, model, status, latency_us, error = %e.1, "inference failed");
    }
}

async fn infer_body(
    s: Arc<AppState>,
    name: String,
    version: Option<u32>,
    headers: HeaderMap,
    body: Body,
    started: std::time::Instant,
) -> HttpResult<HttpResponse> {
    served(&s, &name)?;
    let bytes = read_body(&s, &headers, body, s.max_body).await?;
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
    if bytes.len() > BULK_BYTES {
        let _bulk = s.bulk.acquire().await.map_err(|_| overloaded())?;
        let st = Arc::clone(&s);
        return bulk(move || score(prepare(&st, &name, version, header_len, &bytes)?, started))
            .await;
    }
    let p = prepare(&s, &name, version, header_len, &bytes)?;
    if p.parsed.requests.len() > INLINE_ROWS {
        let _bulk = s.bulk.acquire().await.map_err(|_| overloaded())?;
        return bulk(move || score(p, started)).await;
    }
    score(p, started)
}

fn overloaded() -> HttpError {
    HttpError(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is shutting down".into(),
    )
}

/// Runs bulk work (large bodies, many rows) on its own thread at the lowest scheduling
/// priority, so it never delays small requests on the runtime's workers: on Linux the thread
/// runs only on cycles no one else wants. At most `bulk` permits of such work run at once,
/// which bounds the memory large requests take.
async fn bulk<T: Send + 'static>(
    work: impl FnOnce() -> HttpResult<T> + Send + 'static,
) -> HttpResult<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("keel-bulk".into())
        .spawn(move || {
            crate::deployment::lower_priority();
            let _ = tx.send(work());
        })
        .map_err(|_| overloaded())?;
    rx.await
        .map_err(|_| HttpError(StatusCode::INTERNAL_SERVER_ERROR, "scoring failed".into()))?
}

/// A decoded request, ready to score.
struct Prepared {
    deployment: Arc<Deployment>,
    name: String,
    version: Option<u32>,
    id: Option<String>,
    parsed: Parsed,
}

fn prepare(
    s: &AppState,
    name: &str,
    version: Option<u32>,
    header_len: Option<usize>,
    bytes: &[u8],
) -> HttpResult<Prepared> {
    let (json_part, binary) = bytes.split_at(header_len.unwrap_or(bytes.len()));
    let req = keel_v2::parse_infer_request(json_part, binary).map_err(|e| HttpError::bad(e.0))?;
    prepare_request(s, name, version, req)
}

/// A decoded request (from any transport) checked against the model and the limits.
fn prepare_request(
    s: &AppState,
    name: &str,
    version: Option<u32>,
    req: keel_v2::InferRequest,
) -> HttpResult<Prepared> {
    let sv = served(s, name)?;
    let (model, _) = sv.deployment.model(version)?;
    let id = req.id.clone();
    let parsed = match model.tabular() {
        Some(tab) => parse_request(req, sv, tab, s.max_rows)?,
        None => parse_batch(req, &model, s.max_rows)?,
    };
    let rows = parsed.rows();
    let values = rows.saturating_mul(model.outputs());
    if values > s.max_response_values {
        return Err(HttpError::bad(format!(
            "the response would hold {values} values ({rows} rows x {} outputs); at most {} (split the batch)",
            model.outputs(),
            s.max_response_values
        )));
    }
    Ok(Prepared {
        deployment: Arc::clone(&sv.deployment),
        name: name.to_string(),
        version,
        id,
        parsed,
    })
}

fn score(p: Prepared, started: std::time::Instant) -> HttpResult<HttpResponse> {
    let a = answer(p)?;
    log_answered("http", started, &a);
    encode(&a)
}

/// Scored rows as output tensors, ready for any transport.
struct Answered {
    name: String,
    id: Option<String>,
    version: Option<String>,
    outputs: Vec<keel_v2::OutputTensor>,
    /// Rows answered.
    rows: usize,
    /// Routes taken, `champion:3,canary:1`.
    routes: String,
}

fn answer(p: Prepared) -> HttpResult<Answered> {
    let Prepared {
        deployment,
        name,
        version,
        id,
        parsed,
    } = p;
    if let Some(batch) = parsed.batch {
        return answer_batch(
            deployment,
            name,
            version,
            id,
            batch,
            parsed.outputs,
            parsed.binary_all,
        );
    }
    let responses = parsed
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
        .collect::<HttpResult<Vec<_>>>()?;
    let mut routes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &responses {
        *routes.entry(route_name(r.route)).or_default() += 1;
    }
    Ok(Answered {
        rows: responses.len(),
        routes: routes
            .iter()
            .map(|(r, n)| format!("{r}:{n}"))
            .collect::<Vec<_>>()
            .join(","),
        version: responses.first().map(|r| r.model_version.to_string()),
        outputs: output_tensors(parsed.outputs, parsed.binary_all, &responses)?,
        name,
        id,
    })
}

/// What one request asks for, ready to score.
struct Parsed {
    requests: Vec<Request>,
    /// For a model that reads texts or tensors: the batch (`requests` is then empty).
    batch: Option<Batch>,
    /// Requested outputs and whether each is binary (`None`: all three).
    outputs: Option<Vec<(String, bool)>>,
    binary_all: bool,
}

/// Maps decoded tensors onto requests: entity keys, features (one per tensor, or one `[N, F]`
/// matrix), request ids and routing keys.
fn parse_request(
    req: keel_v2::InferRequest,
    sv: &Served,
    model: &keel_model::ServedModel,
    max_rows: usize,
) -> HttpResult<Parsed> {
    let tensors = req.inputs;
    let rows = tensors.first().map_or(0, keel_v2::Tensor::rows);
    if rows > max_rows {
        return Err(HttpError::bad(format!(
            "{rows} rows in one request; at most {max_rows} (split the batch)"
        )));
    }
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
    // The request's id is shared by its rows (row i answers as `{id}-{i}`), never copied.
    let id: Arc<str> = req.id.as_deref().unwrap_or("").into();
    let mut requests: Vec<Request> = (0..rows)
        .map(|i| Request {
            request_id: match (id.is_empty(), rows) {
                (true, _) => RequestId::default(),
                (false, 1) => RequestId::from(&*id),
                (false, _) => RequestId::row(Arc::clone(&id), i as u32),
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
                    if matches!(v, Value::Null) && !sv.keys.is_empty() {
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
                        let v = it.next().unwrap_or(Value::Null);
                        r.features
                            .push((f.name.clone(), coerce(v, f.dtype, &t.name)?));
                    }
                }
            }
            Role::RequestId | Role::RoutingKey => {
                for (r, v) in requests.iter_mut().zip(t.values) {
                    let Value::Str(s) = v else {
                        return Err(HttpError::bad(format!("input `{}` must be BYTES", t.name)));
                    };
                    match role {
                        Role::RequestId => r.request_id = s.into(),
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
        .find(|(o, _)| !OUTPUTS.contains(&o.as_str()) && o != "missing")
    {
        return Err(HttpError::bad(format!(
            "unknown output `{}` (outputs: {}, missing)",
            o.0,
            OUTPUTS.join(", ")
        )));
    }
    Ok(Parsed {
        requests,
        batch: None,
        outputs: req.outputs,
        binary_all: req.binary_output,
    })
}

/// One request's batch for a text or tensor model.
enum Batch {
    Texts(Vec<String>),
    Tensors { data: Vec<f32>, rows: usize },
}

impl Parsed {
    fn rows(&self) -> usize {
        match &self.batch {
            Some(Batch::Texts(t)) => t.len(),
            Some(Batch::Tensors { rows, .. }) => *rows,
            None => self.requests.len(),
        }
    }
}

/// Maps a request onto a text or tensor model's one input (named as the model's metadata
/// says): texts as `BYTES [N]`, tensors as `FP32 [N, ...dims]` in the model's layout, or
/// `[N, H, W, C]` with the request parameter `"layout": "NHWC"` for an image model declared
/// `[C, H, W]`.
fn parse_batch(
    req: keel_v2::InferRequest,
    model: &keel_model::Model,
    max_rows: usize,
) -> HttpResult<Parsed> {
    let name = model.input_name();
    let mut tensors = req.inputs.into_iter();
    let t = match (tensors.next(), tensors.next()) {
        (Some(t), None) if t.name == name => t,
        _ => {
            return Err(HttpError::bad(format!(
                "model `{}` v{} takes one input, `{name}`",
                model.flavor().as_str(),
                model.version()
            )))
        }
    };
    let rows = t.rows();
    if rows > max_rows {
        return Err(HttpError::bad(format!(
            "{rows} rows in one request; at most {max_rows} (split the batch)"
        )));
    }
    let batch = match model.input() {
        InputSpec::Text => {
            if t.shape.len() != 1 && t.width() != 1 {
                return Err(HttpError::bad(format!(
                    "input `{name}` has shape {:?}; a text model takes BYTES [N]",
                    t.shape
                )));
            }
            let texts = t
                .values
                .into_iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s),
                    other => Err(HttpError::bad(format!(
                        "input `{name}`: {other:?} is not a text (send BYTES)"
                    ))),
                })
                .collect::<HttpResult<Vec<String>>>()?;
            Batch::Texts(texts)
        }
        InputSpec::Tensor(dims) => {
            let nhwc = req
                .layout
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case("NHWC"));
            let want: Vec<usize> = if nhwc && dims.len() == 3 {
                vec![dims[1], dims[2], dims[0]]
            } else {
                dims.clone()
            };
            if t.shape[1..] != want[..] {
                return Err(HttpError::bad(format!(
                    "input `{name}` has shape {:?}; this model takes [N, {}]{}",
                    t.shape,
                    want.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if dims.len() == 3 && !nhwc {
                        " (or [N, H, W, C] with the parameter \"layout\": \"NHWC\")"
                    } else {
                        ""
                    }
                )));
            }
            let mut data = Vec::with_capacity(t.values.len());
            for v in t.values {
                match v {
                    Value::F64(x) => data.push(x as f32),
                    Value::I64(x) => data.push(x as f32),
                    other => {
                        return Err(HttpError::bad(format!(
                            "input `{name}`: {other:?} is not a number (send FP32)"
                        )))
                    }
                }
            }
            if nhwc && dims.len() == 3 {
                data = nhwc_to_nchw(&data, rows, dims[0], dims[1], dims[2]);
            }
            Batch::Tensors { data, rows }
        }
        InputSpec::Tabular(_) | _ => {
            return Err(HttpError::bad("this model reads tabular rows".to_string()))
        }
    };
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
        requests: Vec::new(),
        batch: Some(batch),
        outputs: req.outputs,
        binary_all: req.binary_output,
    })
}

/// `[N, H, W, C]` -> `[N, C, H, W]`.
fn nhwc_to_nchw(data: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for i in 0..n {
        let base = i * c * h * w;
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out[base + (ch * h + y) * w + x] = data[base + (y * w + x) * c + ch];
                }
            }
        }
    }
    out
}

/// Scores a text or tensor batch as one batch and answers it like rows.
fn answer_batch(
    deployment: Arc<Deployment>,
    name: String,
    version: Option<u32>,
    id: Option<String>,
    batch: Batch,
    outputs: Option<Vec<(String, bool)>>,
    binary_all: bool,
) -> HttpResult<Answered> {
    let key = id
        .clone()
        .unwrap_or_else(|| format!("{name}-batch-{}", batch_nonce()));
    let texts;
    let input = match &batch {
        Batch::Texts(t) => {
            texts = t.iter().map(String::as_str).collect::<Vec<_>>();
            keel_model::Input::Texts(&texts)
        }
        Batch::Tensors { data, rows } => keel_model::Input::Tensors { data, rows: *rows },
    };
    let b = deployment.predict_batch(version, &key, input)?;
    let width = b.outputs.max(1);
    let responses: Vec<crate::Response> = b
        .scores
        .chunks(width)
        .map(|s| crate::Response {
            request_id: RequestId::default(),
            scores: s.to_vec(),
            model_version: b.model_version,
            route: b.route,
            freshness_ms: None,
            missing_features: Vec::new(),
        })
        .collect();
    Ok(Answered {
        rows: responses.len(),
        routes: format!("{}:{}", route_name(b.route), responses.len()),
        version: Some(b.model_version.to_string()),
        outputs: output_tensors(outputs, binary_all, &responses)?,
        name,
        id,
    })
}

/// A process-unique number for requests without an id (their canary routing key).
fn batch_nonce() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The outputs sent when a request names none. `missing` (per row, the stored features scored
/// as missing: `name:not_found` or `name:expired`, comma-separated) is sent when asked for.
const OUTPUTS: [&str; 3] = ["predict", "model_version", "route"];

fn missing_text(r: &crate::Response) -> String {
    r.missing_features
        .iter()
        .map(|m| {
            let status = match m.status {
                keel_store::Status::Expired => "expired",
                _ => "not_found",
            };
            format!("{}:{status}", m.name)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Converts a tensor element to the dtype of the key or feature it feeds.
fn coerce(v: Value, dtype: DType, name: &str) -> HttpResult<Value> {
    use Value as E;
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

fn output_tensors(
    requested: Option<Vec<(String, bool)>>,
    binary_all: bool,
    responses: &[crate::Response],
) -> HttpResult<Vec<keel_v2::OutputTensor>> {
    use keel_v2::{OutputData, OutputTensor};
    let n = responses.len();
    let width = responses.first().map_or(1, |r| r.scores.len());
    let requested = requested.unwrap_or_else(|| {
        OUTPUTS
            .iter()
            .map(|o| (o.to_string(), binary_all))
            .collect()
    });
    let mut outputs = Vec::with_capacity(requested.len());
    for (out, binary) in requested {
        let (shape, data) = match out.as_str() {
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
                let shape = if width == 1 { vec![n] } else { vec![n, width] };
                (shape, OutputData::Fp64(flat))
            }
            "model_version" => (
                vec![n],
                OutputData::Int64(
                    responses
                        .iter()
                        .map(|r| i64::from(r.model_version))
                        .collect(),
                ),
            ),
            "missing" => (
                vec![n],
                OutputData::Bytes(responses.iter().map(missing_text).collect()),
            ),
            _ => (
                vec![n],
                OutputData::Bytes(
                    responses
                        .iter()
                        .map(|r| route_name(r.route).to_string())
                        .collect(),
                ),
            ),
        };
        outputs.push(OutputTensor {
            name: out,
            shape,
            data,
            binary,
        });
    }
    Ok(outputs)
}

/// An answer as an HTTP response: JSON, or JSON plus Triton's binary tensors.
fn encode(a: &Answered) -> HttpResult<HttpResponse> {
    let encoded =
        keel_v2::encode_infer_response(&a.name, a.version.as_deref(), a.id.as_deref(), &a.outputs)
            .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.0))?;
    let mut r = HttpResponse::new(Body::from(encoded.body));
    match encoded.header_len {
        None => {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Some(len) => {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r.headers_mut()
                .insert("inference-header-content-length", HeaderValue::from(len));
        }
    }
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
    use crate::metrics::Family;
    let mut families: Vec<Family> = s
        .models
        .values()
        .flat_map(|sv| sv.deployment.metric_families())
        .collect();
    let l = &s.listener;
    for (name, help, v) in [
        (
            "keel_http_shed_total",
            "Requests answered 503 because max_concurrent_requests were in flight.",
            s.shed.load(Ordering::Relaxed),
        ),
        (
            "keel_http_connections_refused_total",
            "Connections answered 503 because max_connections were open.",
            l.refused.load(Ordering::Relaxed),
        ),
        (
            "keel_http_accept_errors_total",
            "Accept errors (descriptors exhausted...), each followed by a back-off.",
            l.accept_errors.load(Ordering::Relaxed),
        ),
    ] {
        let mut f = Family::new(name, "counter", help);
        f.samples.push(format!("{name} {v}"));
        families.push(f);
    }
    let mut open = Family::new(
        "keel_http_connections_open",
        "gauge",
        "Connections open now.",
    );
    open.samples.push(format!(
        "keel_http_connections_open {}",
        l.open.load(Ordering::Relaxed)
    ));
    families.push(open);
    let mut responses = Family::new(
        "keel_http_responses_total",
        "counter",
        "HTTP responses by status class.",
    );
    for (class, c) in ["2xx", "4xx", "5xx", "other"].iter().zip(&s.statuses) {
        responses.samples.push(format!(
            "keel_http_responses_total{{class=\"{class}\"}} {}",
            c.load(Ordering::Relaxed)
        ));
    }
    families.push(responses);
    let text = crate::metrics::render(families);
    let mut r = HttpResponse::new(Body::from(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
