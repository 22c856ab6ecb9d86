//! Integration tests of `keel-cli`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod cli;
mod drift_cli;
mod fleet;
mod ml_cli;
mod store_cli;

/// Store definitions of the CLI tests that serve a model from a store: entity `user`, view
/// `user_stats@1` (`x` f64, `c` string), service `svc` reading both.
pub const USER_DEFS: &str = r#"
[[entities]]
name = "user"
join_keys = [{ name = "user_id", dtype = "string", nullable = false }]

[[views]]
name = "user_stats"
version = 1
entities = ["user"]
features = [{ name = "x", dtype = "f64" }, { name = "c", dtype = "string" }]
owner = "risk"

[[services]]
name = "svc"
features = ["user_stats@1:x", "user_stats@1:c"]
"#;

/// Runs the `keel` binary: `(success, stdout, stderr)`.
pub fn keel(args: &[&str]) -> (bool, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("the keel binary runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The tested crate's directory, read when the test runs (cargo sets it): a test binary that
/// cargo reuses from a build in another checkout (they share one target directory) still reads
/// the fixtures of the checkout under test.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .expect("cargo sets CARGO_MANIFEST_DIR for tests")
}
