//! keel-monitor: decoding a reference profile (stored with every model version) and using it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keel_monitor::fuzzing::exercise(data));
