//! Request decoding: JSON and binary tensors, typed errors for every malformed part, and the
//! fuzz seed corpus replayed.

use keel_v2::*;

fn parse(j: &str) -> Result<InferRequest, V2Error> {
    parse_infer_request(j.as_bytes(), &[])
}

#[test]
fn json_and_binary_tensors_decode() {
    let r = parse(
        r#"{"id":"x","inputs":[{"name":"m","shape":[2,2],"datatype":"INT16","data":[[1,-2],[3,4]]},
             {"name":"b","shape":[2],"datatype":"BOOL","data":[true,null]}],
           "outputs":[{"name":"predict","parameters":{"binary_data":true}},{"name":"route"}],
           "parameters":{"binary_data_output":false}}"#,
    )
    .unwrap();
    assert_eq!(r.inputs[0].values, [1, -2, 3, 4].map(Value::I64).to_vec());
    assert_eq!((r.inputs[0].rows(), r.inputs[0].width()), (2, 2));
    assert_eq!(r.inputs[1].values, vec![Value::Bool(true), Value::Null]);
    assert_eq!(
        r.outputs,
        Some(vec![("predict".into(), true), ("route".into(), false)])
    );

    let mut bin = Vec::new();
    for s in ["a", "", "héllo"] {
        bin.extend_from_slice(&(s.len() as u32).to_le_bytes());
        bin.extend_from_slice(s.as_bytes());
    }
    let floats: Vec<u8> = [1.5f32, f32::NAN]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let head = format!(
        r#"{{"inputs":[{{"name":"s","shape":[3],"datatype":"BYTES","parameters":{{"binary_data_size":{}}}}},
                      {{"name":"f","shape":[2],"datatype":"FP32","parameters":{{"binary_data_size":8}}}}]}}"#,
        bin.len()
    );
    bin.extend_from_slice(&floats);
    let r = parse_infer_request(head.as_bytes(), &bin).unwrap();
    assert_eq!(r.inputs[0].values[2], Value::Str("héllo".into()));
    assert_eq!(r.inputs[1].values, vec![Value::F64(1.5), Value::Null]);
}

#[test]
fn malformed_requests_are_typed_errors() {
    let cases = [
        ("[]", "JSON object"),
        ("{}", "`inputs`"),
        (r#"{"inputs":[]}"#, "empty"),
        (
            r#"{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}"#,
            "`name`",
        ),
        (
            r#"{"inputs":[{"name":"a","datatype":"FP32","data":[1]}]}"#,
            "`shape`",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
            "non-negative",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1,1,1,1,1],"datatype":"FP32","data":[1]}]}"#,
            "expected [N]",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[4294967296,4294967296],"datatype":"FP32","data":[]}]}"#,
            "too large",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"data":[1]}]}"#,
            "`datatype`",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP16","data":[1]}]}"#,
            "FP16",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"COMPLEX","data":[1]}]}"#,
            "unknown datatype",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32"}]}"#,
            "no `data`",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","data":[1]}]}"#,
            "needs 2",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1,2]}]}"#,
            "more than",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"INT8","data":[300]}]}"#,
            "not a INT8",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"UINT8","data":[-1]}]}"#,
            "not a UINT8",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":["x"]}]}"#,
            "not a FP32",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"BYTES","data":[null]}]}"#,
            "not a BYTES",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[[[[[[[[[1]]]]]]]]]}]}"#,
            "too deep",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#,
            "runs past",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]}],"outputs":{}}"#,
            "array",
        ),
        (
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]}],"id":5}"#,
            "`id`",
        ),
    ];
    for (body, needle) in cases {
        let e = parse(body).expect_err(body);
        assert!(e.0.contains(needle), "{body}: `{e}` lacks `{needle}`");
    }
    // Unclaimed binary bytes and bad binary payloads.
    let ok = r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    assert!(parse_infer_request(ok.as_bytes(), &[0])
        .unwrap_err()
        .0
        .contains("not claimed"));
    let b = r#"{"inputs":[{"name":"a","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":9}}]}"#;
    let mut data = 1u32.to_le_bytes().to_vec();
    data.push(b'x');
    data.extend_from_slice(&100u32.to_le_bytes());
    assert!(parse_infer_request(b.as_bytes(), &data)
        .unwrap_err()
        .0
        .contains("runs past"));
    let f = r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP64","parameters":{"binary_data_size":8}}]}"#;
    assert!(parse_infer_request(f.as_bytes(), &[0; 8])
        .unwrap_err()
        .0
        .contains("shape needs"));
    let u = r#"{"inputs":[{"name":"a","shape":[1],"datatype":"UINT64","parameters":{"binary_data_size":8}}]}"#;
    assert!(parse_infer_request(u.as_bytes(), &u64::MAX.to_le_bytes()).is_err());
}

/// Replays `fuzz/corpus/v2_request` through the fuzz target's entry point.
#[test]
fn fuzz_corpus_replays() {
    let dir = crate::manifest_dir().join("../../fuzz/corpus/v2_request");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus committed") {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        keel_v2::fuzzing::exercise(&data);
        n += 1;
    }
    assert!(n >= 5, "{n} seeds");
}

/// Issue 22, findings 3 and 10: duplicate input tensors were accepted (the first won),
/// repeated requested outputs multiplied the response, and a request id of any length was
/// copied into the response and the log. Each is refused now, naming what is wrong.
#[test]
fn duplicate_inputs_repeated_outputs_and_long_ids_are_refused() {
    let t = r#"{"name":"a","shape":[1],"datatype":"FP32","data":[1.0]}"#;
    let e = parse(&format!(r#"{{"inputs":[{t},{t}]}}"#)).unwrap_err();
    assert!(e.to_string().contains("input `a` is given twice"), "{e}");
    let e = parse(&format!(
        r#"{{"inputs":[{t}],"outputs":[{{"name":"predict"}},{{"name":"predict"}}]}}"#
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("output `predict` is requested twice"),
        "{e}"
    );
    let long = "x".repeat(MAX_ID_BYTES + 1);
    let e = parse(&format!(r#"{{"id":"{long}","inputs":[{t}]}}"#)).unwrap_err();
    assert!(e.to_string().contains("at most 256"), "{e}");
    let ok = "x".repeat(MAX_ID_BYTES);
    assert!(parse(&format!(r#"{{"id":"{ok}","inputs":[{t}]}}"#)).is_ok());
}

#[test]
fn responses_encode_json_and_binary_outputs() {
    use keel_v2::{encode_infer_response, OutputData, OutputTensor};
    let outputs = vec![
        OutputTensor {
            name: "predict".into(),
            shape: vec![2],
            data: OutputData::Fp64(vec![0.25, f64::NAN]),
            binary: false,
        },
        OutputTensor {
            name: "route".into(),
            shape: vec![2],
            data: OutputData::Bytes(vec!["champion".into(), "canary".into()]),
            binary: true,
        },
    ];
    let r = encode_infer_response("fraud", Some("3"), Some("req-1"), &outputs).unwrap();
    let head_len = r.header_len.expect("a binary output follows the header");
    let head: serde_json::Value = serde_json::from_slice(&r.body[..head_len]).unwrap();
    assert_eq!(head["model_name"], "fraud");
    assert_eq!(head["model_version"], "3");
    assert_eq!(head["id"], "req-1");
    assert_eq!(head["outputs"][0]["data"], serde_json::json!([0.25, null]));
    assert_eq!(
        head["outputs"][1]["parameters"]["binary_data_size"],
        4 + 8 + 4 + 6
    );
    let tail = &r.body[head_len..];
    assert_eq!(&tail[..4], &8u32.to_le_bytes());
    assert_eq!(&tail[4..12], b"champion");
    // All JSON: no header length.
    let json = encode_infer_response("fraud", None, None, &outputs[..1]).unwrap();
    assert_eq!(json.header_len, None);
    assert!(serde_json::from_slice::<serde_json::Value>(&json.body).is_ok());
}

/// Issue 24: tensors as the gRPC protocol carries them, raw bytes or typed lists, decode to the
/// same values as the HTTP forms; shapes, datatypes and lengths are checked the same way.
#[test]
fn grpc_tensors_decode_like_http_ones() {
    use keel_v2::{tensor_from_contents, tensor_from_raw, Contents, Value};
    let raw: Vec<u8> = [1.5f32, f32::NAN]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let t = tensor_from_raw("x", "FP32", &[2], &raw).unwrap();
    assert_eq!(t.values, vec![Value::F64(1.5), Value::Null]);
    let mut bytes = Vec::new();
    for s in ["ab", "é"] {
        bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
        bytes.extend_from_slice(s.as_bytes());
    }
    let t = tensor_from_raw("s", "BYTES", &[2, 1], &bytes).unwrap();
    assert_eq!(
        t.values,
        vec![Value::Str("ab".into()), Value::Str("é".into())]
    );
    assert_eq!(t.shape, vec![2, 1]);
    let ints = [7i64, -3];
    let t = tensor_from_contents(
        "i",
        "INT64",
        &[2],
        &Contents {
            int64s: &ints,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(t.values, vec![Value::I64(7), Value::I64(-3)]);
    let t = tensor_from_contents(
        "u",
        "UINT8",
        &[1],
        &Contents {
            uints: &[200],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(t.values, vec![Value::I64(200)]);
    // Image batches have up to 4 dimensions.
    let img = tensor_from_raw("x", "FP32", &[1, 1, 2], &raw).unwrap();
    assert_eq!((img.rows(), img.width()), (1, 2));
    // Refusals: negative or empty shapes, 5 dimensions, FP16, lengths that disagree, UINT64
    // over i64, bytes that are not UTF-8.
    assert!(tensor_from_raw("x", "FP32", &[-1], &raw).is_err());
    assert!(tensor_from_raw("x", "FP32", &[], &raw).is_err());
    assert!(tensor_from_raw("x", "FP32", &[1, 1, 1, 1, 2], &raw).is_err());
    assert!(tensor_from_raw("x", "FP16", &[2], &raw).is_err());
    assert!(tensor_from_raw("x", "FP32", &[3], &raw).is_err());
    assert!(tensor_from_raw("x", "FP32", &[i64::MAX], &raw).is_err());
    let big = Contents {
        uint64s: &[u64::MAX],
        ..Default::default()
    };
    assert!(tensor_from_contents("u", "UINT64", &[1], &big).is_err());
    let bad = vec![vec![0xFFu8]];
    let c = Contents {
        bytes: &bad,
        ..Default::default()
    };
    assert!(tensor_from_contents("b", "BYTES", &[1], &c).is_err());
    assert!(tensor_from_contents("i", "INT64", &[3], &Contents::default()).is_err());
}
