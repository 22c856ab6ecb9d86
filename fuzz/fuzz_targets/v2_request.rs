//! V2 inference requests (JSON header + Triton binary tensors) as `keel serve` receives them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keel_v2::fuzzing::exercise(data));
