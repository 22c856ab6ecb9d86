//! keel-store's decoders of stored bytes: rows, registry records, key times, the newest-row
//! merge operator.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keel_store::fuzzing::stored_bytes(data);
});
