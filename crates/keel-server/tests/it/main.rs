//! The `keel-serve` executable: its flags, and a clear error for a model it cannot load.

use std::process::Command;

fn keel_serve(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_keel-serve"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_serving_executable_takes_the_serve_flags_and_reports_what_it_cannot_load() {
    let (ok, out, _) = keel_serve(&["--help"]);
    assert!(ok);
    for flag in [
        "--model",
        "--trusted-keys",
        "--deployment-config",
        "--max-concurrent-requests",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    let (ok, _, err) = keel_serve(&[
        "--registry",
        reg.to_str().unwrap(),
        "--model",
        "fraud",
        "--addr",
        "127.0.0.1:0",
        "--no-admin",
    ]);
    assert!(!ok);
    assert!(err.contains("loading model `fraud`"), "{err}");
}
