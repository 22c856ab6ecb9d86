//! keel-transform: decoding fitted pipelines from bytes, and fitting specs parsed from JSON.
#![no_main]
use keel_core::envelope::{self, Persisted};
use keel_transform::{fuzzing, FittedPipeline};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::exercise_bytes(data);
    // Past the checksum, straight into the payload decoder and the invariant checks.
    fuzzing::exercise_bytes(&envelope::wrap(FittedPipeline::KIND, 1, data));
    fuzzing::exercise_spec(data);
});
