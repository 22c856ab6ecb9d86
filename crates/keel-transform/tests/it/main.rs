//! Integration tests of `keel-transform`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod golden_and_corpus;
mod properties;
mod sklearn_parity;
