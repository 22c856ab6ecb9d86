//! keel-store's Redis backend parsers: RESP replies read into one buffer, store URLs, history
//! members.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keel_store::fuzzing::redis_bytes(data);
});
