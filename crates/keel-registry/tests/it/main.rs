//! Integration tests of `keel-registry`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod golden;
mod mlflow;
mod registry;
