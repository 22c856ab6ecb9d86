//! keel-deep: importing an ONNX model (protobuf decode, graph checks, bounded evaluation).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keel_deep::fuzzing::exercise_onnx(data));
