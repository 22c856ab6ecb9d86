//! LightGBM text loader, then scoring and a keel round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(model) = std::str::from_utf8(data).ok().and_then(|t| keel_gbdt::GbdtModel::from_lightgbm_text(t).ok()) {
        keel_gbdt::fuzzing::exercise(&model);
    }
});
