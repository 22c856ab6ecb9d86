//! Integration tests of `keel-deep`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod cnn;
mod deep;
mod golden;
mod interop;
mod seq;
