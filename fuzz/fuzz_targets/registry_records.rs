//! keel-registry: decoding run records, version manifests and alias files from disk bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keel_registry::fuzzing::exercise(data));
