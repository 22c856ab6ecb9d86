//! Integration tests of `keel-monitor`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod evidently_parity;
mod golden;
mod metrics_parity;
mod scipy_parity;
mod synthetic;
