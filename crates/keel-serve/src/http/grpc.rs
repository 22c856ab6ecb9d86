//! The Open Inference Protocol over gRPC (feature `grpc`): the `inference.GRPCInferenceService`
//! calls KServe's and Triton's clients make (`ServerLive`, `ServerReady`, `ModelReady`,
//! `ServerMetadata`, `ModelMetadata`, `ModelInfer` with typed or raw tensor contents), served
//! by the same runtime as HTTP: the same models, limits, in-flight cap and bulk lane, so a
//! request means the same on both transports.

use std::sync::Arc;

use axum::http::StatusCode;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::{
    answer, bulk, log_answered, log_refused, metadata, overloaded, parse_version, prepare_request,
    served, Answered, AppState, HttpError, HttpResult, BULK_BYTES, INLINE_ROWS,
};

/// The protocol's messages and service, generated from `proto/inference_v2.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};

/// The gRPC service over the shared runtime.
pub(super) struct Grpc {
    state: Arc<AppState>,
}

/// The service, with message sizes bounded by the server's body limit.
pub(super) fn service(state: Arc<AppState>) -> GrpcInferenceServiceServer<Grpc> {
    let limit = state.max_body;
    GrpcInferenceServiceServer::new(Grpc { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
}

impl From<HttpError> for Status {
    fn from(e: HttpError) -> Status {
        let HttpError(code, msg) = e;
        match code {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Status::invalid_argument(msg)
            }
            StatusCode::NOT_FOUND => Status::not_found(msg),
            StatusCode::PAYLOAD_TOO_LARGE => Status::resource_exhausted(msg),
            StatusCode::SERVICE_UNAVAILABLE => Status::unavailable(msg),
            StatusCode::REQUEST_TIMEOUT => Status::deadline_exceeded(msg),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Status::permission_denied(msg),
            _ => Status::internal(msg),
        }
    }
}

fn version_of(v: &str) -> HttpResult<Option<u32>> {
    if v.is_empty() {
        Ok(None)
    } else {
        parse_version(v).map(Some)
    }
}

/// The gRPC request as the decoded request HTTP builds: tensors from `raw_input_contents`
/// (in input order) or from each input's typed `contents`.
fn decode(req: pb::ModelInferRequest) -> HttpResult<keel_v2::InferRequest> {
    if !req.raw_input_contents.is_empty() && req.raw_input_contents.len() != req.inputs.len() {
        return Err(HttpError::bad(format!(
            "{} raw_input_contents for {} inputs",
            req.raw_input_contents.len(),
            req.inputs.len()
        )));
    }
    if req.inputs.is_empty() {
        return Err(HttpError::bad("a request needs at least one input"));
    }
    if req.id.len() > keel_v2::MAX_ID_BYTES {
        return Err(HttpError::bad(format!(
            "request id over {} bytes",
            keel_v2::MAX_ID_BYTES
        )));
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, t) in req.inputs.iter().enumerate() {
        let tensor = match req.raw_input_contents.get(i) {
            Some(raw) => keel_v2::tensor_from_raw(&t.name, &t.datatype, &t.shape, raw),
            None => {
                let c = t.contents.clone().unwrap_or_default();
                keel_v2::tensor_from_contents(
                    &t.name,
                    &t.datatype,
                    &t.shape,
                    &keel_v2::Contents {
                        bools: &c.bool_contents,
                        ints: &c.int_contents,
                        int64s: &c.int64_contents,
                        uints: &c.uint_contents,
                        uint64s: &c.uint64_contents,
                        fp32s: &c.fp32_contents,
                        fp64s: &c.fp64_contents,
                        bytes: &c.bytes_contents,
                    },
                )
            }
        }
        .map_err(|e| HttpError::bad(e.0))?;
        inputs.push(tensor);
    }
    let outputs = (!req.outputs.is_empty())
        .then(|| req.outputs.iter().map(|o| (o.name.clone(), true)).collect());
    let layout = req
        .parameters
        .get("layout")
        .and_then(|p| match &p.parameter_choice {
            Some(pb::infer_parameter::ParameterChoice::StringParam(s)) => {
                Some(s.chars().take(16).collect())
            }
            _ => None,
        });
    Ok(keel_v2::InferRequest {
        id: (!req.id.is_empty()).then_some(req.id),
        inputs,
        outputs,
        binary_output: true,
        layout,
    })
}

/// An answer as the protocol's response: every output in `raw_output_contents`.
fn encode(a: Answered) -> pb::ModelInferResponse {
    use keel_v2::OutputData;
    let mut outputs = Vec::with_capacity(a.outputs.len());
    let mut raw = Vec::with_capacity(a.outputs.len());
    for o in a.outputs {
        let (datatype, bytes) = match &o.data {
            OutputData::Fp64(v) => ("FP64", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            OutputData::Int64(v) => ("INT64", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            OutputData::Bytes(v) => {
                let mut b = Vec::new();
                for s in v {
                    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    b.extend_from_slice(s.as_bytes());
                }
                ("BYTES", b)
            }
        };
        outputs.push(pb::model_infer_response::InferOutputTensor {
            name: o.name,
            datatype: datatype.into(),
            shape: o.shape.iter().map(|&d| d as i64).collect(),
            parameters: Default::default(),
            contents: None,
        });
        raw.push(bytes);
    }
    pb::ModelInferResponse {
        model_name: a.name,
        model_version: a.version.unwrap_or_default(),
        id: a.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    }
}

impl Grpc {
    async fn infer(&self, r: pb::ModelInferRequest, name: &str) -> HttpResult<Answered> {
        let version = version_of(&r.model_version)?;
        let size: usize = r.raw_input_contents.iter().map(Vec::len).sum();
        let decoded = decode(r)?;
        let p = prepare_request(&self.state, name, version, decoded)?;
        let big = size > BULK_BYTES || p.parsed.requests.len() > INLINE_ROWS;
        if big {
            let _bulk = self.state.bulk.acquire().await.map_err(|_| overloaded())?;
            bulk(move || answer(p)).await
        } else {
            answer(p)
        }
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(
        &self,
        _: GrpcRequest<pb::ServerLiveRequest>,
    ) -> Result<GrpcResponse<pb::ServerLiveResponse>, Status> {
        Ok(GrpcResponse::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: GrpcRequest<pb::ServerReadyRequest>,
    ) -> Result<GrpcResponse<pb::ServerReadyResponse>, Status> {
        Ok(GrpcResponse::new(pb::ServerReadyResponse {
            ready: !self.state.models.is_empty(),
        }))
    }

    async fn model_ready(
        &self,
        req: GrpcRequest<pb::ModelReadyRequest>,
    ) -> Result<GrpcResponse<pb::ModelReadyResponse>, Status> {
        let r = req.into_inner();
        let sv = served(&self.state, &r.name)?;
        sv.deployment
            .model(version_of(&r.version)?)
            .map_err(HttpError::from)?;
        Ok(GrpcResponse::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: GrpcRequest<pb::ServerMetadataRequest>,
    ) -> Result<GrpcResponse<pb::ServerMetadataResponse>, Status> {
        Ok(GrpcResponse::new(pb::ServerMetadataResponse {
            name: "keel".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        req: GrpcRequest<pb::ModelMetadataRequest>,
    ) -> Result<GrpcResponse<pb::ModelMetadataResponse>, Status> {
        let r = req.into_inner();
        let m = metadata(served(&self.state, &r.name)?, version_of(&r.version)?)?;
        let tensors = |key: &str| -> Vec<pb::model_metadata_response::TensorMetadata> {
            m[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| pb::model_metadata_response::TensorMetadata {
                            name: t["name"].as_str().unwrap_or_default().into(),
                            datatype: t["datatype"].as_str().unwrap_or_default().into(),
                            shape: t["shape"]
                                .as_array()
                                .map(|d| d.iter().filter_map(|x| x.as_i64()).collect())
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(GrpcResponse::new(pb::ModelMetadataResponse {
            name: m["name"].as_str().unwrap_or_default().into(),
            versions: m["versions"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            platform: m["platform"].as_str().unwrap_or_default().into(),
            inputs: tensors("inputs"),
            outputs: tensors("outputs"),
        }))
    }

    async fn model_infer(
        &self,
        req: GrpcRequest<pb::ModelInferRequest>,
    ) -> Result<GrpcResponse<pb::ModelInferResponse>, Status> {
        // The same in-flight cap as HTTP: beyond it, UNAVAILABLE at once (nothing queues).
        let Ok(_permit) = Arc::clone(&self.state.in_flight).try_acquire_owned() else {
            self.state
                .shed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Status::unavailable(
                "too many requests in flight; retry later",
            ));
        };
        let started = std::time::Instant::now();
        let r = req.into_inner();
        let name = r.model_name.clone();
        match self.infer(r, &name).await {
            Ok(a) => {
                log_answered("grpc", started, &a);
                Ok(GrpcResponse::new(encode(a)))
            }
            Err(e) => {
                log_refused("grpc", &name, started, &e);
                Err(e.into())
            }
        }
    }
}
