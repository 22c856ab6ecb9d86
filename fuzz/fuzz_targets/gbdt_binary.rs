//! keel's binary GBDT format (envelope), then scoring and a round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(model) = keel_gbdt::GbdtModel::from_bytes(data).ok() {
        keel_gbdt::fuzzing::exercise(&model);
    }
});
