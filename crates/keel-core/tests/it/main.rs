//! Integration tests of `keel-core`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod envelope;
mod frame;
mod fuzz_corpus;
mod hash_props;
