//! `keel store` end to end: apply TOML definitions, ingest CSV, online get, historical join,
//! checkpoint.

use std::process::Command;

fn keel(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const DEFS: &str = r#"
[[entities]]
name = "card"
join_keys = [{ name = "card_id", dtype = "string", nullable = false }]

[[views]]
name = "card_stats"
version = 1
entities = ["card"]
features = [{ name = "spend_24h", dtype = "f64" }, { name = "txn_count", dtype = "i64" }]
ttl_ms = 864000000000
owner = "risk"

[[services]]
name = "fraud"
features = ["card_stats@1:spend_24h", "card_stats:txn_count"]
"#;

#[test]
fn store_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(p("defs.toml"), DEFS).unwrap();
    std::fs::write(
        p("source.csv"),
        "card_id,event_timestamp,created_timestamp,spend_24h,txn_count\n\
         c1,2026-01-01T00:00:00Z,,10.5,1\n\
         c1,1767312000000,1767312000000,20.5,\n\
         c2,2026-01-03T12:30:00.250Z,,,7\n",
    )
    .unwrap();
    std::fs::write(p("entities.csv"), "card_id,event_timestamp\nc1,2026-01-01T12:00:00Z\nc1,2026-01-05T00:00:00Z\nc3,2026-01-05T00:00:00Z\n").unwrap();
    let dbs = db.to_str().unwrap();

    let (ok, out, err) = keel(&[
        "store",
        "apply",
        "--path",
        dbs,
        "--definitions",
        &p("defs.toml"),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("applied 1 entities, 1 views, 1 services"),
        "{out}"
    );
    let (ok, out, err) = keel(&[
        "store",
        "ingest",
        "--path",
        dbs,
        "--view",
        "card_stats@1",
        "--input",
        &p("source.csv"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("wrote 3 rows"), "{out}");
    let (ok, out, err) = keel(&[
        "store",
        "get",
        "--path",
        dbs,
        "--service",
        "fraud",
        "--key",
        "card_id=c1",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("card_stats@1:spend_24h\t20.5\tPresent\t1767312000000"),
        "{out}"
    );
    let (ok, out, err) = keel(&[
        "store",
        "historical",
        "--path",
        dbs,
        "--entities",
        &p("entities.csv"),
        "--features",
        "fraud",
        "--output",
        &p("train.csv"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("3 rows x 4 columns"), "{out}");
    let train = std::fs::read_to_string(p("train.csv")).unwrap();
    let lines: Vec<&str> = train.lines().collect();
    assert_eq!(lines[0], "card_id,event_timestamp,spend_24h,txn_count");
    assert_eq!(lines[1], "c1,1767268800000,10.5,1");
    assert_eq!(lines[2], "c1,1767571200000,20.5,");
    assert_eq!(lines[3], "c3,1767571200000,,");
    let (ok, out, err) = keel(&["store", "checkpoint", "--path", dbs, "--to", &p("cp")]);
    assert!(ok, "{err}");
    assert!(out.starts_with("seq-"), "{out}");
    // Bad input: a type error names the row, and nothing is written.
    std::fs::write(p("bad.csv"), "card_id,event_timestamp,spend_24h,txn_count\nc9,1767312000000,1.0,1\nc9,1767312000001,x,1\n").unwrap();
    let (ok, _, err) = keel(&[
        "store",
        "ingest",
        "--path",
        dbs,
        "--view",
        "card_stats",
        "--input",
        &p("bad.csv"),
    ]);
    assert!(!ok && err.contains("spend_24h"), "{err}");
    let (_, out, _) = keel(&[
        "store",
        "get",
        "--path",
        dbs,
        "--service",
        "fraud",
        "--key",
        "card_id=c9",
    ]);
    assert!(out.contains("NotFound"), "{out}");
}
