//! The `keel gbdt` commands end to end, against the LightGBM/XGBoost fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    crate::manifest_dir()
        .join("../keel-gbdt/tests/fixtures")
        .join(name)
}

fn keel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .unwrap()
}

fn expected(case: &str, key: &str) -> (Vec<Vec<Option<f64>>>, Vec<Vec<f64>>) {
    let doc: serde_json_lite::Value = serde_json_lite::parse(
        &std::fs::read_to_string(fixture(&format!("{case}.expected.json"))).unwrap(),
    );
    (
        doc.rows("X"),
        doc.rows(key)
            .into_iter()
            .map(|r| r.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            .collect(),
    )
}

/// Writes the fixture's inputs as CSV with the given header.
fn write_input(dir: &Path, header: &[String], x: &[Vec<Option<f64>>]) -> PathBuf {
    let mut s = header.join(",") + "\n";
    for (i, row) in x.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .map(|v| match v {
                None if i % 2 == 0 => String::new(),
                None => "NaN".into(),
                Some(v) => format!("{v:?}"),
            })
            .collect();
        s += &(cells.join(",") + "\n");
    }
    let p = dir.join("in.csv");
    std::fs::write(&p, s).unwrap();
    p
}

fn read_output(p: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(p).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(|c| c.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    (header, rows)
}

fn predict_args<'a>(model: &'a Path, input: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "gbdt",
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]
}

#[test]
fn predict_matches_lightgbm_by_name_and_by_explicit_position() {
    let dir = tempfile::tempdir().unwrap();
    let (x, want) = expected("lgb_multiclass", "pred");
    let model = fixture("lgb_multiclass.txt");
    let out = dir.path().join("out.csv");
    let names: Vec<String> = (0..10).map(|i| format!("Column_{i}")).collect();
    // Reversed header order, and an extra id column: matched by name, the id ignored.
    let mut rev_x: Vec<Vec<Option<f64>>> = x.clone();
    rev_x.iter_mut().enumerate().for_each(|(i, r)| {
        r.reverse();
        r.push(Some(i as f64));
    });
    let mut rev_names = names.clone();
    rev_names.reverse();
    rev_names.push("id".into());
    let input = write_input(dir.path(), &rev_names, &rev_x);
    let o = keel(&predict_args(&model, &input, &out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (header, got) = read_output(&out);
    assert_eq!(header, ["class_0", "class_1", "class_2"]);
    assert_eq!(got, want);

    // No header at all: only with --by-position, columns are the features in order.
    let input = write_input(dir.path(), &[], &x);
    let text = std::fs::read_to_string(&input).unwrap();
    std::fs::write(&input, text.trim_start_matches('\n')).unwrap();
    let mut args = predict_args(&model, &input, &out);
    args.push("--by-position");
    let o = keel(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_output(&out).1, want);
}

/// Issue 23, item 1: a CSV with an extra `id` column and 9 of the 10 features was matched by
/// position (40 of 40 predictions wrong, exit code 0). Now it is refused, naming the missing
/// feature, and nothing is written.
#[test]
fn predict_with_an_extra_column_and_a_missing_feature_is_refused_not_matched_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let (x, _) = expected("lgb_multiclass", "pred");
    let model = fixture("lgb_multiclass.txt");
    let out = dir.path().join("out.csv");
    let mut header: Vec<String> = vec!["id".into()];
    header.extend((0..9).map(|i| format!("Column_{i}")));
    let rows: Vec<Vec<Option<f64>>> = x
        .iter()
        .enumerate()
        .map(|(i, r)| {
            std::iter::once(Some(i as f64))
                .chain(r[..9].iter().copied())
                .collect()
        })
        .collect();
    let input = write_input(dir.path(), &header, &rows);
    let o = keel(&predict_args(&model, &input, &out));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("`Column_9`") && err.contains("--by-position"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written on error");
    // Other names, all ten columns: still refused (the caller must say --by-position).
    let other: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    let input = write_input(dir.path(), &other, &x);
    let o = keel(&predict_args(&model, &input, &out));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("10 of the model's 10 features"));
}

/// Issue 23, item 2: non-numeric cells (`abc`, `n/a`, `0x10`) were read as missing values and
/// changed 25 of 40 predictions. Now each is an error naming its row and column, unless the
/// text is declared missing with `--na-values`.
#[test]
fn non_numeric_cells_are_errors_naming_row_and_column_unless_declared_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (x, want) = expected("lgb_multiclass", "pred");
    let model = fixture("lgb_multiclass.txt");
    let out = dir.path().join("out.csv");
    let names: Vec<String> = (0..10).map(|i| format!("Column_{i}")).collect();
    for bad in ["abc", "n/a", "0x10"] {
        let input = write_input(dir.path(), &names, &x);
        let text = std::fs::read_to_string(&input).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut cells: Vec<String> = lines[4].split(',').map(str::to_string).collect();
        cells[3] = bad.into();
        lines[4] = cells.join(",");
        std::fs::write(&input, lines.join("\n") + "\n").unwrap();
        let o = keel(&predict_args(&model, &input, &out));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bad} was accepted");
        assert!(
            err.contains("Column_3") && err.contains("row 3") && err.contains(bad),
            "{bad}: {err}"
        );
    }
    // Declared missing: the cell scores exactly as an empty field.
    let mut scores = Vec::new();
    for (cell, na) in [("n/a", Some("n/a,NULL")), ("", None)] {
        let input = write_input(dir.path(), &names, &x);
        let text = std::fs::read_to_string(&input).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut cells: Vec<String> = lines[4].split(',').map(str::to_string).collect();
        cells[3] = cell.into();
        lines[4] = cells.join(",");
        std::fs::write(&input, lines.join("\n") + "\n").unwrap();
        let mut args = predict_args(&model, &input, &out);
        if let Some(na) = na {
            args.extend(["--na-values", na]);
        }
        let o = keel(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        scores.push(read_output(&out).1);
    }
    assert_eq!(scores[0].len(), want.len());
    assert_eq!(scores[0], scores[1]);
}

#[test]
fn contrib_raw_and_leaf_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("xgb_binary.json");
    let (x, _) = expected("xgb_binary", "raw");
    let names: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
    let input = write_input(dir.path(), &names, &x);
    let out = dir.path().join("out.csv");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    for (flag, key) in [
        ("--raw", "raw"),
        ("--contrib", "contrib"),
        ("--leaf", "leaf"),
    ] {
        let r = keel(&[
            "gbdt",
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            i,
            "--output",
            o,
            flag,
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let (header, got) = read_output(&out);
        let (_, want) = expected("xgb_binary", key);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!(
                (g - w).abs() <= 2e-5 * w.abs().max(1.0),
                "{flag}: {g} vs {w}"
            );
        }
        if key == "contrib" {
            assert_eq!(header.last().unwrap(), "bias");
        }
    }
}

#[test]
fn inspect_and_errors() {
    let o = keel(&[
        "gbdt",
        "inspect",
        fixture("lgb_categorical.txt").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(
        text.contains("trees:        20") && text.contains("categorical:  Column_4"),
        "{text}"
    );
    let o = keel(&["gbdt", "inspect", "/nonexistent/model.txt"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/model.txt"));
}

/// A tiny reader for the fixture JSON (arrays of arrays of numbers or null), so the CLI crate
/// needs no JSON dependency.
mod serde_json_lite {
    pub struct Value(String);
    pub fn parse(s: &str) -> Value {
        Value(s.to_string())
    }
    impl Value {
        pub fn rows(&self, key: &str) -> Vec<Vec<Option<f64>>> {
            let start = self.0.find(&format!("\"{key}\": [[")).unwrap() + key.len() + 6;
            let end = start + self.0[start..].find("]]").unwrap();
            self.0[start..end]
                .split("], [")
                .map(|r| r.split(", ").map(|c| c.trim().parse().ok()).collect())
                .collect()
        }
    }
}

/// Issue 24: `keel --version` names the commit it was built from, and shell completions are
/// one command away.
#[test]
fn version_names_the_commit_and_completions_are_generated() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!("keel {} (", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{shell}");
        assert!(
            script.contains("keel") && script.contains("store"),
            "{shell}: {script:.200}"
        );
    }
}

/// Issue 24: exit codes are documented in `--help` and hold: 0 ok, 1 error, 2 usage.
#[test]
fn exit_codes_are_documented_and_kept() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Exit codes: 0 ok; 1 error"), "{text}");
    assert!(text.contains("--format table|json|csv"), "{text}");
    assert_eq!(
        run(&["runs", "list", "--format", "yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(run(&["no-such-command"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none");
    assert_eq!(
        run(&["store", "list", "--path", missing.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
}
