//! `keel drift` on the Evidently fixtures: same verdicts, JSON keys, offline HTML.

use std::process::Command;

#[test]
fn drift_command_reports_json_and_html() {
    let fx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../keel-monitor/tests/fixtures"
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let html = dir.path().join("r.html");
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "drift",
            "--reference",
            &format!("{fx}/evidently_small_drift_reference.csv"),
        ])
        .args([
            "--current",
            &format!("{fx}/evidently_small_drift_current.csv"),
        ])
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .arg("--fail-on-drift")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("dataset drift: YES"), "{out}");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["dataset_drift"], true);
    assert_eq!(j["columns"]["country"]["test"], "chi-square p_value");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && !page.contains("<script"));
    // Overrides and errors.
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "drift",
            "--reference",
            &format!("{fx}/evidently_small_nodrift_reference.csv"),
        ])
        .args([
            "--current",
            &format!("{fx}/evidently_small_nodrift_current.csv"),
        ])
        .args(["--test", "amount=psi", "--threshold", "amount=0.2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PSI"));
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "drift",
            "--reference",
            "/nonexistent.csv",
            "--current",
            "/nonexistent.csv",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nonexistent"));
}
