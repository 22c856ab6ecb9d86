//! Integration tests of `keel-store`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod common;
mod crash;
mod fuzz_corpus;
mod golden;
mod model;
mod store;
