//! XGBoost JSON loader, then scoring and a keel round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(model) = keel_gbdt::GbdtModel::from_xgboost_json(data).ok() {
        keel_gbdt::fuzzing::exercise(&model);
    }
});
