//! Integration tests of `keel-train`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod job;
mod retrain;
