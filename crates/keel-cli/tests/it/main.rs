//! Integration tests of `keel-cli`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod cli;
mod drift_cli;
mod ml_cli;
mod store_cli;
