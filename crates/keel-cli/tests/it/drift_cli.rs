//! `keel drift` on the Evidently fixtures: same verdicts, JSON keys, offline HTML.

use std::process::Command;

#[test]
fn drift_command_reports_json_and_html() {
    let fx = &format!(
        "{}/../keel-monitor/tests/fixtures",
        crate::manifest_dir().display()
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

fn drift(dir: &std::path::Path, reference: &str, current: &str, extra: &[&str]) -> (i32, String) {
    let (r, c) = (dir.join("ref.csv"), dir.join("cur.csv"));
    std::fs::write(&r, reference).unwrap();
    std::fs::write(&c, current).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("drift")
        .arg("--reference")
        .arg(&r)
        .arg("--current")
        .arg(&c)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

/// Issue 23, item 4: `keel drift` said "dataset drift: no (0 of 0 columns)" with exit code 0
/// when reference and current shared no column or current was empty (even with
/// `--fail-on-drift`); a column missing from current was dropped without a word; overrides of
/// misspelt columns were ignored; id/label/timestamp columns could not be excluded.
#[test]
fn drift_refuses_to_compare_nothing_and_reports_every_skipped_column() {
    let dir = tempfile::tempdir().unwrap();
    let reference: String = std::iter::once("id,amount,label,ts\n".to_string())
        .chain((0..60).map(|i| format!("{i},{}.5,{},{}\n", i % 13, i % 2, 1_700_000_000 + i)))
        .collect();
    let current: String = std::iter::once("id,amount,label,ts\n".to_string())
        .chain(
            (0..60).map(|i| format!("{},{}.5,{},{}\n", 100 + i, i % 11, i % 2, 1_800_000_000 + i)),
        )
        .collect();
    // No shared column.
    let (code, out) = drift(
        dir.path(),
        &reference,
        "x,y\n1,2\n3,4\n",
        &["--fail-on-drift"],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("nothing to compare"), "{out}");
    // Current without rows.
    let (code, out) = drift(dir.path(), &reference, "id,amount,label,ts\n", &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("current has no rows"), "{out}");
    // Roles exclude columns; a column missing from current is reported, not dropped silently.
    let cur_without_label: String = current
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            format!("{},{},{}\n", c[0], c[1], c[3])
        })
        .collect();
    let (code, out) = drift(
        dir.path(),
        &reference,
        &cur_without_label,
        &["--id", "id", "--timestamp", "ts"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("not tested: excluded (id)"), "{out}");
    assert!(out.contains("not tested: excluded (timestamp)"), "{out}");
    assert!(
        out.contains("label") && out.contains("not tested: not in current"),
        "{out}"
    );
    assert!(out.contains("1 columns"), "only amount is tested: {out}");
    // Overrides naming a column that is not compared are refused, not ignored.
    for flag in [
        ["--test", "amout=psi"],
        ["--threshold", "amout=0.2"],
        ["--categorical", "amout"],
        ["--exclude", "amout"],
    ] {
        let (code, out) = drift(dir.path(), &reference, &current, &flag);
        assert_ne!(code, 0, "{flag:?} accepted: {out}");
        assert!(out.contains("amout"), "{out}");
    }
}
