//! ONNX import through `candle-onnx`, hardened for untrusted files.
//!
//! [`OnnxModel::from_bytes`] decodes a `ModelProto`, then checks the whole graph before anything
//! runs: every node's operator is in [`SUPPORTED_OPS`] (the first one that is not is named in
//! [`DeepError::UnsupportedOp`]), its input count is what the operator takes, every input is
//! defined before it is used, initializers and `Constant` values are f32/f64/i64 tensors whose
//! byte length matches their shape, and pooling/convolution attributes are in range. Weights are
//! converted to tensors once, at load.
//!
//! Evaluation walks the graph node by node through `candle-onnx`'s evaluator; before each node
//! the size of its output is bounded from its inputs' shapes (broadcasts, matrix products,
//! convolutions, concatenations, gathers), so a graph cannot ask for an unbounded allocation.
//! A panic inside the evaluator becomes a typed error.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use candle_core::{DType, Device, Tensor};
use candle_onnx::onnx::{self, tensor_proto::DataType, GraphProto, ModelProto, NodeProto};
use prost::Message;

use crate::{DeepError, Result};

/// Largest ONNX file accepted (1 GiB).
pub const MAX_ONNX_BYTES: usize = 1 << 30;
/// Most elements any tensor of an evaluation may hold (2^28 f32, 1 GiB).
pub const MAX_ELEMENTS: usize = 1 << 28;
/// Largest kernel, stride, dilation or padding accepted in pooling and convolution.
const MAX_WINDOW: i64 = 256;

/// Operators keel evaluates, with the number of inputs each takes (`min..=max`).
///
/// The list is narrower than `candle-onnx`'s: operators whose output size comes from tensor
/// *values* (`Expand`, `Tile`, `Range`, `ConstantOfShape`, `Pad`, `Resize`, `OneHot`) and control
/// flow or recurrent operators are left out, so the size of every output is bounded by its
/// inputs' shapes.
pub const SUPPORTED_OPS: &[(&str, usize, usize)] = &[
    ("Abs", 1, 1),
    ("Add", 2, 2),
    ("ArgMax", 1, 1),
    ("AveragePool", 1, 1),
    ("BatchNormalization", 5, 5),
    ("Cast", 1, 1),
    ("Ceil", 1, 1),
    ("Clip", 1, 3),
    ("Concat", 1, 64),
    ("Constant", 0, 0),
    ("Conv", 2, 3),
    ("Div", 2, 2),
    ("Dropout", 1, 3),
    ("Equal", 2, 2),
    ("Erf", 1, 1),
    ("Exp", 1, 1),
    ("Flatten", 1, 1),
    ("Floor", 1, 1),
    ("Gather", 2, 2),
    ("Gelu", 1, 1),
    ("Gemm", 3, 3),
    ("Greater", 2, 2),
    ("Identity", 1, 1),
    ("LeakyRelu", 1, 1),
    ("Less", 2, 2),
    ("Log", 1, 1),
    ("LogSoftmax", 1, 1),
    ("MatMul", 2, 2),
    ("MaxPool", 1, 1),
    ("Min", 2, 2),
    ("Mul", 2, 2),
    ("Neg", 1, 1),
    ("Pow", 2, 2),
    ("PRelu", 2, 2),
    ("ReduceMax", 1, 1),
    ("ReduceMean", 1, 1),
    ("ReduceMin", 1, 1),
    ("ReduceSum", 1, 2),
    ("Relu", 1, 1),
    ("Reshape", 2, 2),
    ("Shape", 1, 1),
    ("Sigmoid", 1, 1),
    ("Softmax", 1, 1),
    ("Sqrt", 1, 1),
    ("Squeeze", 1, 2),
    ("Sub", 2, 2),
    ("Tanh", 1, 1),
    ("Transpose", 1, 1),
    ("Unsqueeze", 1, 2),
    ("Where", 3, 3),
];

/// An imported ONNX graph: validated, weights converted once, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    nodes: Vec<NodeProto>,
    weights: HashMap<String, Tensor>,
    inputs: Vec<(String, Vec<Option<usize>>)>,
    outputs: Vec<String>,
}

fn bad(m: impl Into<String>) -> DeepError {
    DeepError::Onnx(m.into())
}

/// Elements of a shape, or `None` past `MAX_ELEMENTS`.
fn elements(dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}

/// Converts an initializer or `Constant` value, checking dtype, shape and byte length.
fn tensor(t: &onnx::TensorProto, name: &str) -> Result<Tensor> {
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        dims.push(usize::try_from(d).map_err(|_| bad(format!("tensor `{name}`: dim {d}")))?);
    }
    let n = elements(&dims).ok_or_else(|| bad(format!("tensor `{name}` is too large")))?;
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(bad(format!(
            "tensor `{name}` keeps its data in an external file (not supported)"
        )));
    }
    let cpu = &Device::Cpu;
    let out = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) => Tensor::from_vec(
            values(
                name,
                &dims,
                n,
                &t.raw_data,
                &t.float_data,
                f32::from_le_bytes,
            )?,
            dims,
            cpu,
        )?,
        Ok(DataType::Double) => Tensor::from_vec(
            values(
                name,
                &dims,
                n,
                &t.raw_data,
                &t.double_data,
                f64::from_le_bytes,
            )?,
            dims,
            cpu,
        )?,
        Ok(DataType::Int64) => Tensor::from_vec(
            values(
                name,
                &dims,
                n,
                &t.raw_data,
                &t.int64_data,
                i64::from_le_bytes,
            )?,
            dims,
            cpu,
        )?,
        other => {
            return Err(bad(format!(
                "tensor `{name}` has data type {other:?} (f32, f64 and i64 are supported)"
            )))
        }
    };
    Ok(out)
}

/// A tensor's `n` values, from `raw_data` (little-endian) when present, else the typed field;
/// any other count is an error.
fn values<T: Copy, const B: usize>(
    name: &str,
    dims: &[usize],
    n: usize,
    raw: &[u8],
    typed: &[T],
    from_le: fn([u8; B]) -> T,
) -> Result<Vec<T>> {
    let v: Vec<T> = if raw.is_empty() {
        typed.to_vec()
    } else {
        let (chunks, rest) = raw.as_chunks::<B>();
        if !rest.is_empty() {
            return Err(bad(format!(
                "tensor `{name}`: {} bytes of raw data is not a whole number of values",
                raw.len()
            )));
        }
        chunks.iter().map(|c| from_le(*c)).collect()
    };
    if v.len() != n {
        return Err(bad(format!(
            "tensor `{name}`: shape {dims:?} needs {n} values, the file holds {}",
            v.len()
        )));
    }
    Ok(v)
}

/// Static checks of one node: operator, input count, attributes.
fn check_node(node: &NodeProto) -> Result<()> {
    let op = node.op_type.as_str();
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(DeepError::UnsupportedOp {
            op: format!("{}:{op}", node.domain),
            node: node.name.clone(),
        });
    }
    let Some(&(_, min, max)) = SUPPORTED_OPS.iter().find(|(o, _, _)| *o == op) else {
        return Err(DeepError::UnsupportedOp {
            op: op.to_string(),
            node: node.name.clone(),
        });
    };
    let given = node.input.len();
    if given < min || given > max {
        return Err(bad(format!(
            "node `{}` ({op}) has {given} inputs, the operator takes {min}..={max}",
            node.name
        )));
    }
    if node.input.iter().take(min).any(String::is_empty) {
        return Err(bad(format!(
            "node `{}` ({op}) leaves a required input empty",
            node.name
        )));
    }
    if node.output.is_empty() || node.output[0].is_empty() {
        return Err(bad(format!("node `{}` ({op}) has no output", node.name)));
    }
    if op.starts_with("Reduce") && given > 1 && op != "ReduceSum" {
        return Err(bad(format!(
            "node `{}`: {op} with its axes as an input (opset 18) is not supported",
            node.name
        )));
    }
    for a in &node.attribute {
        if a.g.is_some() || !a.graphs.is_empty() {
            return Err(bad(format!(
                "node `{}` ({op}) carries a subgraph",
                node.name
            )));
        }
        let windowed = matches!(op, "Conv" | "MaxPool" | "AveragePool");
        let name = a.name.as_str();
        if windowed && matches!(name, "kernel_shape" | "strides" | "dilations" | "pads") {
            let lo = i64::from(name != "pads");
            if a.ints.iter().any(|&v| v < lo || v > MAX_WINDOW) {
                return Err(bad(format!(
                    "node `{}` ({op}): attribute {name} {:?} out of range {lo}..={MAX_WINDOW}",
                    node.name, a.ints
                )));
            }
        }
        if op == "Conv" && name == "group" && a.i != 1 {
            return Err(bad(format!(
                "node `{}`: grouped convolution (group {}) is not supported",
                node.name, a.i
            )));
        }
    }
    Ok(())
}

/// Bound on the elements a node's output may have, from its inputs' shapes; `None` when the
/// operator's output is never larger than its largest input.
fn output_bound(node: &NodeProto, ins: &[&Tensor]) -> Option<usize> {
    let broadcast = |shapes: &[&[usize]]| -> usize {
        let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut n = 1usize;
        for i in 0..rank {
            let d = shapes
                .iter()
                .map(|s| {
                    let k = rank - s.len();
                    if i < k {
                        1
                    } else {
                        s[i - k]
                    }
                })
                .max()
                .unwrap_or(1);
            n = n.saturating_mul(d);
        }
        n
    };
    let dims: Vec<&[usize]> = ins.iter().map(|t| t.dims()).collect();
    // Spatial size after padding, with the largest pad on both sides of every axis.
    let padded = |x: &[usize]| -> usize {
        let p = attr_ints(node, "pads").iter().copied().max().unwrap_or(0);
        let p = usize::try_from(p.max(0)).unwrap_or(0).saturating_mul(2);
        x.iter()
            .skip(2)
            .fold(1usize, |a, &d| a.saturating_mul(d.saturating_add(p)))
    };
    match node.op_type.as_str() {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Min" | "Where" | "Equal" | "Greater" | "Less"
        | "PRelu" => Some(broadcast(&dims)),
        "Gemm" => {
            // a [m, k] x b [k, n] (either may be transposed), plus c broadcast to [m, n].
            let big = |i: usize| dims.get(i).and_then(|d| d.iter().max().copied());
            let mn = big(0).unwrap_or(1).saturating_mul(big(1).unwrap_or(1));
            Some(mn.max(ins.get(2).map_or(0, |c| c.elem_count())))
        }
        "MatMul" => {
            let (a, b) = (dims.first()?, dims.get(1)?);
            let m = if a.len() >= 2 { a[a.len() - 2] } else { 1 };
            let n = b.last().copied().unwrap_or(1);
            let batch_a = &a[..a.len().saturating_sub(2)];
            let batch_b = &b[..b.len().saturating_sub(2)];
            Some(
                broadcast(&[batch_a, batch_b])
                    .saturating_mul(m)
                    .saturating_mul(n),
            )
        }
        "Concat" => Some(
            ins.iter()
                .fold(0usize, |a, t| a.saturating_add(t.elem_count())),
        ),
        "Gather" => {
            let (data, idx) = (ins.first()?, ins.get(1)?);
            let row = data.elem_count() / data.dims().first().copied().unwrap_or(1).max(1);
            Some(idx.elem_count().saturating_mul(row.max(1)))
        }
        "Conv" => {
            // The output and candle's im2col buffer: n * (padded spatial) * (c*kh*kw + filters).
            let (x, w) = (dims.first()?, dims.get(1)?);
            let per = w
                .iter()
                .skip(1)
                .product::<usize>()
                .saturating_add(w.first().copied().unwrap_or(1));
            Some(
                x.first()
                    .copied()
                    .unwrap_or(1)
                    .saturating_mul(padded(x))
                    .saturating_mul(per),
            )
        }
        "MaxPool" | "AveragePool" => {
            let x = dims.first()?;
            let lead: usize = x.iter().take(2).product();
            Some(lead.saturating_mul(padded(x)))
        }
        _ => None,
    }
}

/// Convolution and pooling windows must fit their (padded) input: candle computes output sizes
/// with unsigned arithmetic and would underflow otherwise. Checks ranks and channels too.
fn check_window(node: &NodeProto, ins: &[&Tensor]) -> Result<()> {
    let op = node.op_type.as_str();
    if !matches!(op, "Conv" | "MaxPool" | "AveragePool") {
        return Ok(());
    }
    let fail = |why: String| Err(bad(format!("node `{}` ({op}): {why}", node.name)));
    let Some(x) = ins.first().map(|t| t.dims()) else {
        return Ok(());
    };
    let kernel: Vec<usize> = if op == "Conv" {
        let Some(w) = ins.get(1).map(|t| t.dims()) else {
            return Ok(());
        };
        if w.len() != x.len() || w.len() < 3 || w[1] != x[1] {
            return fail(format!("weights {w:?} do not fit input {x:?}"));
        }
        w[2..].to_vec()
    } else {
        attr_ints(node, "kernel_shape")
            .iter()
            .map(|&k| usize::try_from(k).unwrap_or(0))
            .collect()
    };
    let n = x.len().saturating_sub(2);
    if x.len() < 3 || kernel.len() != n {
        return fail(format!("kernel {kernel:?} does not fit input {x:?}"));
    }
    let pads = attr_ints(node, "pads");
    let dilation = attr_ints(node, "dilations")
        .iter()
        .copied()
        .max()
        .unwrap_or(1);
    let dilation = usize::try_from(dilation.max(1)).unwrap_or(1);
    for (i, &k) in kernel.iter().enumerate() {
        let pad = match pads.len() {
            1 => 2 * pads[0],
            l if l == 2 * n => pads[i] + pads[i + n],
            _ => 0,
        };
        let span = dilation.saturating_mul(k.saturating_sub(1)) + 1;
        if k == 0 || x[i + 2] + usize::try_from(pad.max(0)).unwrap_or(0) < span {
            return fail(format!("window {kernel:?} larger than input {x:?}"));
        }
    }
    Ok(())
}

/// An integer-list attribute (empty when absent).
fn attr_ints<'a>(node: &'a NodeProto, name: &str) -> &'a [i64] {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(&[], |a| a.ints.as_slice())
}

impl OnnxModel {
    /// Decodes and validates an ONNX model (see the module docs for what is checked).
    pub fn from_bytes(bytes: &[u8]) -> Result<OnnxModel> {
        if bytes.len() > MAX_ONNX_BYTES {
            return Err(bad("file larger than 1 GiB"));
        }
        let model = ModelProto::decode(bytes).map_err(|e| bad(format!("decode: {e}")))?;
        let graph: GraphProto = model.graph.ok_or_else(|| bad("no graph in the model"))?;
        let mut weights = HashMap::with_capacity(graph.initializer.len());
        for t in &graph.initializer {
            weights.insert(t.name.clone(), tensor(t, &t.name)?);
        }
        let mut defined: HashSet<&str> = weights.keys().map(String::as_str).collect();
        let mut inputs = Vec::new();
        for i in &graph.input {
            if weights.contains_key(&i.name) {
                continue;
            }
            let mut dims = Vec::new();
            if let Some(onnx::type_proto::Value::TensorType(tt)) =
                i.r#type.as_ref().and_then(|t| t.value.as_ref())
            {
                if tt.elem_type != DataType::Float as i32 {
                    return Err(bad(format!(
                        "input `{}` has element type {} (f32 inputs are supported)",
                        i.name, tt.elem_type
                    )));
                }
                for d in tt.shape.iter().flat_map(|s| &s.dim) {
                    dims.push(match d.value {
                        Some(onnx::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                            Some(usize::try_from(v).map_err(|_| bad("negative input dim"))?)
                        }
                        _ => None,
                    });
                }
            }
            defined.insert(&i.name);
            inputs.push((i.name.clone(), dims));
        }
        if inputs.is_empty() {
            return Err(bad("the graph has no runtime input"));
        }
        for node in &graph.node {
            check_node(node)?;
            for a in &node.attribute {
                if let Some(t) = &a.t {
                    tensor(t, &node.name)?;
                }
            }
            for i in node.input.iter().filter(|i| !i.is_empty()) {
                if !defined.contains(i.as_str()) {
                    return Err(bad(format!(
                        "node `{}` ({}) reads `{i}`, which nothing before it defines",
                        node.name, node.op_type
                    )));
                }
            }
            defined.extend(node.output.iter().map(String::as_str));
        }
        let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        if outputs.is_empty() {
            return Err(bad("the graph has no output"));
        }
        if let Some(o) = outputs.iter().find(|o| !defined.contains(o.as_str())) {
            return Err(bad(format!("output `{o}` is never computed")));
        }
        Ok(OnnxModel {
            nodes: graph.node,
            weights,
            inputs,
            outputs,
        })
    }

    /// Runtime inputs: names and declared dimensions (`None`: symbolic, e.g. the batch).
    pub fn inputs(&self) -> &[(String, Vec<Option<usize>>)] {
        &self.inputs
    }

    /// Output names, in the graph's order.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Evaluates the graph on named f32 inputs; returns every graph output.
    pub fn run(&self, feeds: &[(&str, Tensor)]) -> Result<HashMap<String, Tensor>> {
        let mut values: HashMap<String, Tensor> = self.weights.clone();
        for (name, dims) in &self.inputs {
            let (_, t) = feeds
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| bad(format!("missing input `{name}`")))?;
            if t.dtype() != DType::F32 {
                return Err(bad(format!("input `{name}` must be f32")));
            }
            let ok = t.rank() == dims.len()
                && dims
                    .iter()
                    .zip(t.dims())
                    .all(|(d, &n)| d.is_none_or(|d| d == n));
            if !dims.is_empty() && !ok {
                return Err(DeepError::Shape(format!(
                    "input `{name}` has shape {:?}, the graph declares {dims:?}",
                    t.dims()
                )));
            }
            values.insert(name.clone(), t.clone());
        }
        for node in &self.nodes {
            let ins: Vec<&Tensor> = node
                .input
                .iter()
                .filter(|i| !i.is_empty())
                .filter_map(|i| values.get(i))
                .collect();
            check_window(node, &ins)?;
            if let Some(n) = output_bound(node, &ins) {
                if n > MAX_ELEMENTS {
                    return Err(bad(format!(
                        "node `{}` ({}) would produce {n} elements",
                        node.name, node.op_type
                    )));
                }
            }
            let feeds: HashMap<String, Tensor> = node
                .input
                .iter()
                .filter_map(|i| values.get(i).map(|t| (i.clone(), t.clone())))
                .collect();
            let one = ModelProto {
                graph: Some(GraphProto {
                    node: vec![node.clone()],
                    output: node
                        .output
                        .iter()
                        .filter(|o| !o.is_empty())
                        .map(|o| onnx::ValueInfoProto {
                            name: o.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let out = catch_unwind(AssertUnwindSafe(|| candle_onnx::simple_eval(&one, feeds)))
                .map_err(|_| {
                    bad(format!(
                        "node `{}` ({}) failed inside the evaluator",
                        node.name, node.op_type
                    ))
                })?
                .map_err(|e| bad(format!("node `{}` ({}): {e}", node.name, node.op_type)))?;
            values.extend(out);
        }
        self.outputs
            .iter()
            .map(|o| {
                values
                    .remove(o)
                    .map(|t| (o.clone(), t))
                    .ok_or_else(|| bad(format!("output `{o}` was not produced")))
            })
            .collect()
    }

    /// [`OnnxModel::predict`] with candle's kernels bounded to `threads` threads.
    pub fn predict_threads(&self, x: &[f32], shape: &[usize], threads: usize) -> Result<Vec<f32>> {
        crate::threads::with_threads(threads, || self.predict(x, shape))?
    }

    /// Scores a batch: `x` row-major `[rows, features...]` for the graph's single input,
    /// returns the first output as f32 values, row-major.
    pub fn predict(&self, x: &[f32], shape: &[usize]) -> Result<Vec<f32>> {
        if self.inputs.len() != 1 {
            return Err(bad(format!(
                "predict needs a graph with one input, this one has {}",
                self.inputs.len()
            )));
        }
        if elements(shape) != Some(x.len()) {
            return Err(DeepError::Shape(format!(
                "{} values for shape {shape:?}",
                x.len()
            )));
        }
        let t = Tensor::from_slice(x, shape, &Device::Cpu)?;
        let mut out = self.run(&[(self.inputs[0].0.as_str(), t)])?;
        let y = out
            .remove(&self.outputs[0])
            .ok_or_else(|| bad("no output"))?;
        Ok(y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }
}
