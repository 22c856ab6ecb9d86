//! Envelope decoding of arbitrary bytes, and of arbitrary payloads under a valid header.
#![no_main]
use keel_core::envelope::{self, Persisted};
use keel_core::{Frame, Schema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = envelope::decode::<Frame>(data);
    let _ = envelope::decode::<Schema>(data);
    // Reach the payload decoder past the checksum too.
    let _ = envelope::decode::<Frame>(&envelope::wrap(Frame::KIND, 1, data));
});
