//! CSV loading with inference, then with the inferred schema, then CSV and envelope round trips.
#![no_main]
use keel_core::{envelope, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::from_csv_reader(data, None) {
        let _ = keel_core::DataHash::of(&frame);
        let mut out = Vec::new();
        frame.to_csv_writer(&mut out).expect("writing a loaded frame");
        let _ = Frame::from_csv_reader(data, Some(frame.schema()));
        let bytes = envelope::encode(&frame).expect("encoding a loaded frame");
        let back: Frame = envelope::decode(&bytes).expect("decoding what we encoded");
        assert_eq!(back, frame);
    }
});
