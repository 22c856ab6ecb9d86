//! LightGBM text loader, then scoring and a keel round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = std::str::from_utf8(data).map_err(|_| ()).and_then(|t| keel_gbdt::GbdtModel::from_lightgbm_text(t).map_err(|_| ())) {
        let row = vec![0.5; m.num_features()];
        let opts = keel_gbdt::PredictOptions::default();
        let _ = m.predict(&row, &opts);
        let _ = m.predict_leaf(&row, &opts);
        let _ = m.predict_contrib(&row, &opts);
        let bytes = m.to_bytes().expect("a loaded model encodes");
        let back = keel_gbdt::GbdtModel::from_bytes(&bytes).expect("and decodes");
        assert_eq!(back, m);
    }
});
