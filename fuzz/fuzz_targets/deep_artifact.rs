//! keel-deep: decoding a model manifest (config JSON in the envelope) and safetensors weights.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keel_deep::fuzzing::exercise(data));
