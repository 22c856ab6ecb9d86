//! # keel-v2
//!
//! Decoding of Open Inference Protocol ("V2", as KServe and Triton speak it) inference
//! requests, for `keel serve` and anyone embedding a V2 endpoint: the JSON body, nested or flat
//! row-major `data`, `null` for a missing numeric element, and Triton's binary tensor extension
//! (`binary_data_size` per input, the JSON header's length in the
//! `Inference-Header-Content-Length` HTTP header, little-endian elements, `BYTES` as 4-byte
//! length + bytes). Requested outputs and `binary_data` / `binary_data_output` flags are read
//! too. Responses are encoded here as well ([`encode_infer_response`]: JSON outputs, or binary
//! ones after the JSON header), so this crate holds the whole protocol.
//!
//! The input is untrusted: every shape is checked against the data it claims, element counts
//! are bounded before anything is reserved, integers are range-checked per datatype, and any
//! fault is a [`V2Error`] naming the input. Never a panic (fuzzed: `fuzz/fuzz_targets/v2_request.rs`).
//!
//! ```
//! let body = br#"{"id": "r1", "inputs": [
//!     {"name": "amount", "shape": [2, 1], "datatype": "FP32", "data": [[12.5], [null]]},
//!     {"name": "country", "shape": [2], "datatype": "BYTES", "data": ["FR", "US"]}]}"#;
//! let req = keel_v2::parse_infer_request(body, &[])?;
//! assert_eq!(req.id.as_deref(), Some("r1"));
//! assert_eq!(req.inputs[0].values, vec![keel_v2::Value::F64(12.5), keel_v2::Value::Null]);
//! assert_eq!(req.inputs[1].rows(), 2);
//! # Ok::<(), keel_v2::V2Error>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod fuzzing;
use serde_json::Value as Json;

/// A request the server cannot take; the message names the input and the fault (sent back as
/// a 400 body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct V2Error(pub String);

fn bad(msg: impl Into<String>) -> V2Error {
    V2Error(msg.into())
}

/// Tensor elements are keel's one scalar, [`keel_core::Value`], decoded by datatype: `null`
/// in JSON (or NaN in binary floats) is `Null`, `FP32`/`FP64` are `F64`, `INT*`/`UINT*`
/// (within `i64`) are `I64`, `BOOL` is `Bool`, `BYTES` (UTF-8) is `Str`.
pub use keel_core::Value;

/// One decoded input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Input name.
    pub name: String,
    /// Shape (1 to [`MAX_DIMS`] dimensions; the first is the batch).
    pub shape: Vec<usize>,
    /// V2 datatype as sent (`FP32`, `BYTES`...).
    pub datatype: String,
    /// Elements, row-major.
    pub values: Vec<Value>,
}

impl Tensor {
    /// The first dimension.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Elements per row (the product of the other dimensions).
    pub fn width(&self) -> usize {
        self.shape[1..].iter().product()
    }
}

/// A decoded inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The request's `id`, echoed in the response.
    pub id: Option<String>,
    /// Inputs, in request order (at least one).
    pub inputs: Vec<Tensor>,
    /// Requested outputs and whether each is wanted as binary data (`None`: all, JSON or
    /// per `binary_output`).
    pub outputs: Option<Vec<(String, bool)>>,
    /// Request-level `binary_data_output`.
    pub binary_output: bool,
    /// Request-level `layout` parameter (`"NHWC"` for an image batch sent channels-last).
    pub layout: Option<String>,
}

/// Most elements one tensor may declare (the body size bounds the data itself).
pub const MAX_ELEMENTS: usize = 1 << 28;
/// Deepest nesting of `data` arrays accepted.
pub const MAX_DEPTH: usize = 8;
/// Longest request `id` accepted, in bytes (it is echoed in the response and logged).
pub const MAX_ID_BYTES: usize = 256;

/// Decodes a request: `json` is the JSON header (the whole body without the binary
/// extension), `binary` the bytes after it (empty without the extension). Every byte of
/// `binary` must be claimed by an input's `binary_data_size`.
pub fn parse_infer_request(json: &[u8], binary: &[u8]) -> Result<InferRequest, V2Error> {
    let req: Json =
        serde_json::from_slice(json).map_err(|e| bad(format!("request is not valid JSON: {e}")))?;
    let obj = req
        .as_object()
        .ok_or_else(|| bad("request must be a JSON object"))?;
    let inputs = obj
        .get("inputs")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("`inputs` (an array of tensors) is required"))?;
    if inputs.is_empty() {
        return Err(bad("`inputs` is empty"));
    }
    let mut cursor = 0usize;
    let mut tensors = Vec::with_capacity(inputs.len().min(1024));
    let mut seen = std::collections::HashSet::with_capacity(inputs.len().min(1024));
    for t in inputs {
        let tensor = parse_tensor(t, binary, &mut cursor)?;
        if !seen.insert(tensor.name.clone()) {
            return Err(bad(format!("input `{:.64}` is given twice", tensor.name)));
        }
        tensors.push(tensor);
    }
    if cursor != binary.len() {
        return Err(bad(format!(
            "{} bytes of binary data not claimed by any input",
            binary.len() - cursor
        )));
    }
    let binary_output = obj
        .get("parameters")
        .and_then(|p| p.get("binary_data_output"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let layout = obj
        .get("parameters")
        .and_then(|p| p.get("layout"))
        .and_then(Json::as_str)
        .map(|l| l.chars().take(16).collect());
    let outputs = match obj.get("outputs") {
        None | Some(Json::Null) => None,
        Some(Json::Array(list)) => {
            let mut out = Vec::with_capacity(list.len().min(64));
            let mut seen = std::collections::HashSet::with_capacity(list.len().min(64));
            for o in list {
                let name = o
                    .get("name")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("every requested output needs a `name`"))?;
                let binary = o
                    .get("parameters")
                    .and_then(|p| p.get("binary_data"))
                    .and_then(Json::as_bool)
                    .unwrap_or(binary_output);
                if !seen.insert(name) {
                    return Err(bad(format!("output `{name:.64}` is requested twice")));
                }
                out.push((name.to_string(), binary));
            }
            Some(out)
        }
        Some(_) => return Err(bad("`outputs` must be an array")),
    };
    let id = match obj.get("id") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s.len() <= MAX_ID_BYTES => Some(s.clone()),
        Some(Json::String(s)) => {
            return Err(bad(format!(
                "`id` is {} bytes; at most {MAX_ID_BYTES}",
                s.len()
            )))
        }
        Some(_) => return Err(bad("`id` must be a string")),
    };
    Ok(InferRequest {
        id,
        inputs: tensors,
        outputs,
        binary_output,
        layout,
    })
}

fn parse_tensor(t: &Json, binary: &[u8], cursor: &mut usize) -> Result<Tensor, V2Error> {
    let name = t
        .get("name")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("every input needs a `name`"))?
        .to_string();
    let shape: Vec<usize> = t
        .get("shape")
        .and_then(Json::as_array)
        .ok_or_else(|| bad(format!("input `{name}` needs a `shape`")))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            bad(format!(
                "input `{name}`: shape must be non-negative integers"
            ))
        })?;
    let datatype = t
        .get("datatype")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("input `{name}` needs a `datatype`")))?
        .to_string();
    let (count, size) = header(&name, &shape, &datatype)?;
    let binary_size = t
        .get("parameters")
        .and_then(|p| p.get("binary_data_size"))
        .map(|v| {
            v.as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| bad(format!("input `{name}`: bad binary_data_size")))
        })
        .transpose()?;
    let values = match binary_size {
        Some(n) => {
            let end = cursor
                .checked_add(n)
                .filter(|&e| e <= binary.len())
                .ok_or_else(|| {
                    bad(format!(
                        "input `{name}`: binary_data_size {n} runs past the body"
                    ))
                })?;
            let bytes = &binary[*cursor..end];
            *cursor = end;
            decode_binary(&name, &datatype, size, bytes, count)?
        }
        None => {
            let data = t
                .get("data")
                .ok_or_else(|| bad(format!("input `{name}` has no `data`")))?;
            let mut flat = Vec::with_capacity(count.min(1 << 16));
            flatten(data, &mut flat, 0, &name, count)?;
            if flat.len() != count {
                return Err(bad(format!(
                    "input `{name}`: shape {shape:?} needs {count} elements, data has {}",
                    flat.len()
                )));
            }
            flat.into_iter()
                .map(|v| json_element(v, &datatype, &name))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    Ok(Tensor {
        name,
        shape,
        datatype,
        values,
    })
}

/// Most dimensions of an input (`[N, C, H, W]`: an image batch).
pub const MAX_DIMS: usize = 4;

/// Checks an input's shape (`[N]`, `[N,F]`, `[N,C,H,W]`..., at most [`MAX_ELEMENTS`]) and datatype;
/// returns its element count and the byte size of one element (0 for `BYTES`).
fn header(name: &str, shape: &[usize], datatype: &str) -> Result<(usize, usize), V2Error> {
    if shape.is_empty() || shape.len() > MAX_DIMS {
        return Err(bad(format!(
            "input `{name}` has shape {shape:?}; expected [N], [N,F] or an image batch \
             [N,C,H,W] (at most {MAX_DIMS} dimensions)"
        )));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| bad(format!("input `{name}`: shape {shape:?} is too large")))?;
    let size = match datatype {
        "BOOL" | "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        "BYTES" => 0,
        "FP16" | "BF16" => {
            return Err(bad(format!(
                "input `{name}`: datatype {datatype} is not supported (send FP32 or FP64)"
            )))
        }
        other => return Err(bad(format!("input `{name}`: unknown datatype `{other}`"))),
    };
    Ok((count, size))
}

/// A tensor's shape as the gRPC protocol sends it (`int64`), checked non-negative.
fn shape_of(name: &str, shape: &[i64]) -> Result<Vec<usize>, V2Error> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            bad(format!(
                "input `{name}`: shape must be non-negative integers"
            ))
        })
}

/// An input sent as raw little-endian bytes (the gRPC protocol's `raw_input_contents`; `BYTES`
/// elements as a 4-byte length then the bytes), decoded as the HTTP binary extension is.
pub fn tensor_from_raw(
    name: &str,
    datatype: &str,
    shape: &[i64],
    raw: &[u8],
) -> Result<Tensor, V2Error> {
    let shape = shape_of(name, shape)?;
    let (count, size) = header(name, &shape, datatype)?;
    Ok(Tensor {
        name: name.to_string(),
        values: decode_binary(name, datatype, size, raw, count)?,
        shape,
        datatype: datatype.to_string(),
    })
}

/// The typed element lists of an input (the gRPC protocol's `contents`), one of which holds
/// the data for the tensor's datatype.
#[derive(Debug, Clone, Copy, Default)]
pub struct Contents<'a> {
    /// `BOOL` elements.
    pub bools: &'a [bool],
    /// `INT8`, `INT16`, `INT32` elements.
    pub ints: &'a [i32],
    /// `INT64` elements.
    pub int64s: &'a [i64],
    /// `UINT8`, `UINT16`, `UINT32` elements.
    pub uints: &'a [u32],
    /// `UINT64` elements.
    pub uint64s: &'a [u64],
    /// `FP32` elements.
    pub fp32s: &'a [f32],
    /// `FP64` elements.
    pub fp64s: &'a [f64],
    /// `BYTES` elements.
    pub bytes: &'a [Vec<u8>],
}

/// An input sent as typed element lists (see [`Contents`]).
pub fn tensor_from_contents(
    name: &str,
    datatype: &str,
    shape: &[i64],
    c: &Contents<'_>,
) -> Result<Tensor, V2Error> {
    let shape = shape_of(name, shape)?;
    let (count, _) = header(name, &shape, datatype)?;
    let float = |x: f64| {
        if x.is_nan() {
            Value::Null
        } else {
            Value::F64(x)
        }
    };
    let values: Vec<Value> = match datatype {
        "BOOL" => c.bools.iter().map(|&b| Value::Bool(b)).collect(),
        "INT8" | "INT16" | "INT32" => c.ints.iter().map(|&i| Value::I64(i64::from(i))).collect(),
        "INT64" => c.int64s.iter().map(|&i| Value::I64(i)).collect(),
        "UINT8" | "UINT16" | "UINT32" => {
            c.uints.iter().map(|&i| Value::I64(i64::from(i))).collect()
        }
        "UINT64" => c
            .uint64s
            .iter()
            .map(|&i| {
                i64::try_from(i)
                    .map(Value::I64)
                    .map_err(|_| bad(format!("input `{name}`: {i} does not fit an INT64")))
            })
            .collect::<Result<_, _>>()?,
        "FP32" => c.fp32s.iter().map(|&x| float(f64::from(x))).collect(),
        "FP64" => c.fp64s.iter().map(|&x| float(x)).collect(),
        _ => c
            .bytes
            .iter()
            .map(|b| {
                std::str::from_utf8(b)
                    .map(|s| Value::Str(s.to_string()))
                    .map_err(|_| bad(format!("input `{name}`: BYTES element is not UTF-8")))
            })
            .collect::<Result<_, _>>()?,
    };
    if values.len() != count {
        return Err(bad(format!(
            "input `{name}`: shape {shape:?} needs {count} elements, contents hold {}",
            values.len()
        )));
    }
    Ok(Tensor {
        name: name.to_string(),
        shape,
        datatype: datatype.to_string(),
        values,
    })
}

fn flatten<'a>(
    v: &'a Json,
    out: &mut Vec<&'a Json>,
    depth: usize,
    name: &str,
    count: usize,
) -> Result<(), V2Error> {
    match v {
        Json::Array(items) if depth < MAX_DEPTH => {
            for i in items {
                flatten(i, out, depth + 1, name, count)?;
            }
            Ok(())
        }
        Json::Array(_) => Err(bad(format!("input `{name}`: data nested too deep"))),
        other if out.len() < count => {
            out.push(other);
            Ok(())
        }
        _ => Err(bad(format!(
            "input `{name}`: data has more than the {count} elements its shape declares"
        ))),
    }
}

fn int_range(datatype: &str) -> (i128, i128) {
    match datatype {
        "INT8" => (i8::MIN.into(), i8::MAX.into()),
        "INT16" => (i16::MIN.into(), i16::MAX.into()),
        "INT32" => (i32::MIN.into(), i32::MAX.into()),
        "UINT8" => (0, u8::MAX.into()),
        "UINT16" => (0, u16::MAX.into()),
        "UINT32" => (0, u32::MAX.into()),
        // UINT64 beyond i64 has no element to go to.
        _ => (i64::MIN.into(), i64::MAX.into()),
    }
}

fn json_element(v: &Json, datatype: &str, name: &str) -> Result<Value, V2Error> {
    let wrong = || bad(format!("input `{name}`: {v} is not a {datatype} element"));
    Ok(match (datatype, v) {
        (_, Json::Null) if datatype != "BYTES" => Value::Null,
        ("BOOL", Json::Bool(b)) => Value::Bool(*b),
        ("FP32" | "FP64", Json::Number(n)) => Value::F64(n.as_f64().ok_or_else(wrong)?),
        ("BYTES", Json::String(s)) => Value::Str(s.clone()),
        (_, Json::Number(n)) if datatype.contains("INT") => {
            let x = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .ok_or_else(wrong)?;
            let (lo, hi) = int_range(datatype);
            if x < lo || x > hi {
                return Err(wrong());
            }
            Value::I64(x as i64)
        }
        _ => return Err(wrong()),
    })
}

fn decode_binary(
    name: &str,
    datatype: &str,
    size: usize,
    bytes: &[u8],
    count: usize,
) -> Result<Vec<Value>, V2Error> {
    if datatype == "BYTES" {
        let mut out = Vec::with_capacity(count.min(bytes.len() / 4 + 1));
        let mut rest = bytes;
        while rest.len() >= 4 {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let s = rest
                .get(4..4usize.saturating_add(n))
                .ok_or_else(|| bad(format!("input `{name}`: BYTES element runs past its data")))?;
            let s = std::str::from_utf8(s)
                .map_err(|_| bad(format!("input `{name}`: BYTES element is not UTF-8")))?;
            out.push(Value::Str(s.to_string()));
            rest = &rest[4 + n..];
        }
        if !rest.is_empty() || out.len() != count {
            return Err(bad(format!(
                "input `{name}`: binary BYTES data holds {} elements, shape needs {count}",
                out.len()
            )));
        }
        return Ok(out);
    }
    if Some(bytes.len()) != count.checked_mul(size) {
        return Err(bad(format!(
            "input `{name}`: {} bytes of binary {datatype} data, shape needs {count} x {size}",
            bytes.len()
        )));
    }
    let hi = int_range(datatype).1;
    bytes
        .chunks_exact(size)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(c);
            Ok(match datatype {
                "BOOL" => Value::Bool(c[0] != 0),
                "FP32" => {
                    let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    if x.is_nan() {
                        Value::Null
                    } else {
                        Value::F64(f64::from(x))
                    }
                }
                "FP64" => {
                    let x = f64::from_le_bytes(b);
                    if x.is_nan() {
                        Value::Null
                    } else {
                        Value::F64(x)
                    }
                }
                "INT8" => Value::I64(i64::from(c[0] as i8)),
                "INT16" => Value::I64(i64::from(i16::from_le_bytes([c[0], c[1]]))),
                "INT32" => Value::I64(i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
                "INT64" => Value::I64(i64::from_le_bytes(b)),
                _ => {
                    let x = u64::from_le_bytes(b);
                    if i128::from(x) > hi {
                        return Err(bad(format!("input `{name}`: {x} does not fit an INT64")));
                    }
                    Value::I64(x as i64)
                }
            })
        })
        .collect()
}

/// The data of one output tensor of a response.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    /// `FP64` values, row-major (a non-finite value is sent as JSON `null`).
    Fp64(Vec<f64>),
    /// `INT64` values.
    Int64(Vec<i64>),
    /// `BYTES` values (UTF-8).
    Bytes(Vec<String>),
}

/// One output tensor of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    /// Output name.
    pub name: String,
    /// Shape (`[N]` or `[N, C]`).
    pub shape: Vec<usize>,
    /// The values.
    pub data: OutputData,
    /// Sent in Triton's binary extension (after the JSON header) instead of as JSON `data`.
    pub binary: bool,
}

/// An encoded response: the body, and the length of its JSON header when binary outputs follow
/// it (the value of the `Inference-Header-Content-Length` header; `None`: all JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedResponse {
    /// The HTTP body.
    pub body: Vec<u8>,
    /// JSON header length when the body carries binary data.
    pub header_len: Option<usize>,
}

/// Encodes an inference response: `{"model_name", "model_version", "id"?, "outputs": [...]}`,
/// with binary outputs appended after the JSON header (Triton's binary tensor extension, each
/// output's `parameters.binary_data_size` giving its length; `BYTES` elements as a 4-byte
/// little-endian length then the bytes).
pub fn encode_infer_response(
    model_name: &str,
    model_version: Option<&str>,
    id: Option<&str>,
    outputs: &[OutputTensor],
) -> Result<EncodedResponse, V2Error> {
    let mut blob: Vec<u8> = Vec::new();
    let mut list = Vec::with_capacity(outputs.len());
    for o in outputs {
        let datatype = match &o.data {
            OutputData::Fp64(_) => "FP64",
            OutputData::Int64(_) => "INT64",
            OutputData::Bytes(_) => "BYTES",
        };
        let mut t = serde_json::Map::new();
        t.insert("name".into(), serde_json::json!(o.name));
        t.insert("datatype".into(), serde_json::json!(datatype));
        t.insert("shape".into(), serde_json::json!(o.shape));
        if o.binary {
            let start = blob.len();
            match &o.data {
                OutputData::Fp64(v) => blob.extend(v.iter().flat_map(|x| x.to_le_bytes())),
                OutputData::Int64(v) => blob.extend(v.iter().flat_map(|x| x.to_le_bytes())),
                OutputData::Bytes(v) => {
                    for s in v {
                        blob.extend_from_slice(&(s.len() as u32).to_le_bytes());
                        blob.extend_from_slice(s.as_bytes());
                    }
                }
            }
            t.insert(
                "parameters".into(),
                serde_json::json!({ "binary_data_size": blob.len() - start }),
            );
        } else {
            let data = match &o.data {
                OutputData::Fp64(v) => serde_json::json!(v),
                OutputData::Int64(v) => serde_json::json!(v),
                OutputData::Bytes(v) => serde_json::json!(v),
            };
            t.insert("data".into(), data);
        }
        list.push(Json::Object(t));
    }
    let mut body = serde_json::Map::new();
    body.insert("model_name".into(), serde_json::json!(model_name));
    if let Some(v) = model_version {
        body.insert("model_version".into(), serde_json::json!(v));
    }
    if let Some(id) = id {
        body.insert("id".into(), serde_json::json!(id));
    }
    body.insert("outputs".into(), Json::Array(list));
    let mut head = serde_json::to_vec(&Json::Object(body))
        .map_err(|e| bad(format!("encoding the response: {e}")))?;
    if !outputs.iter().any(|o| o.binary) {
        return Ok(EncodedResponse {
            body: head,
            header_len: None,
        });
    }
    let header_len = head.len();
    head.extend_from_slice(&blob);
    Ok(EncodedResponse {
        body: head,
        header_len: Some(header_len),
    })
}
