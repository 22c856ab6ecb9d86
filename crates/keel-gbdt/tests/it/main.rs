//! Integration tests of `keel-gbdt`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod fuzz_corpus;
mod golden;
mod parity;
mod robustness;
mod scorers;
mod train;
