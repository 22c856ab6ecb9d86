//! Integration tests of `keel-model`, in one test binary.

mod flavors;

/// The tested crate's directory, read when the test runs (a binary reused from another
/// checkout still reads this checkout's fixtures).
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .expect("cargo sets CARGO_MANIFEST_DIR for tests")
}
