//! Records the git commit the CLI is built from, for `keel --version` ("unknown" outside a
//! git checkout or without git).
fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEEL_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout); outside a checkout, only when this
    // script changes (a missing path would rerun it on every build).
    println!("cargo:rerun-if-changed=build.rs");
    for p in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
