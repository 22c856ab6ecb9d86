//! Entry point shared by the fuzz target and the corpus replay test. Not part of the stable API.

/// Splits `data` at the position its first byte names (the JSON header length, as the
/// HTTP header would give it) and decodes; errors allowed, panics not.
pub fn exercise(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let (json, binary) = if cut == 0 {
        (rest, &[][..])
    } else {
        rest.split_at((cut as usize).min(rest.len()))
    };
    if let Ok(r) = crate::parse_infer_request(json, binary) {
        for t in &r.inputs {
            assert_eq!(t.values.len(), t.rows() * t.width());
        }
    }
    // The same bytes as a gRPC raw tensor of every datatype, shaped by the first byte.
    let rows = i64::from(cut % 16);
    for datatype in [
        "BOOL", "INT8", "INT32", "INT64", "UINT64", "FP32", "FP64", "BYTES",
    ] {
        for shape in [&[rows][..], &[rows, 2][..], &[-rows, 1][..]] {
            if let Ok(t) = crate::tensor_from_raw("x", datatype, shape, rest) {
                assert_eq!(t.values.len(), t.rows() * t.width());
            }
        }
    }
}
