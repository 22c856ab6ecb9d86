//! Integration tests of `keel-serve`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod common;
mod deployment;
mod http;
mod lifecycle;
mod limits;
mod unstructured;

/// The tested crate's directory, read when the test runs (cargo sets it): a test binary that
/// cargo reuses from a build in another checkout (they share one target directory) still reads
/// the fixtures of the checkout under test.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .expect("cargo sets CARGO_MANIFEST_DIR for tests")
}
