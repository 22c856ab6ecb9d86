//! `keel store` end to end: apply TOML definitions, ingest CSV, online get, historical join,
//! checkpoint.

use crate::keel;

/// `keel store get` of service `fraud` for one card.
fn get(db: &str, card: &str) -> (bool, String, String) {
    let key = format!("card_id={card}");
    keel(&[
        "store",
        "get",
        "--path",
        db,
        "--service",
        "fraud",
        "--key",
        &key,
    ])
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
    let (ok, out, err) = get(dbs, "c1");
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "card_stats@1:spend_24h\t20.5\tpresent\t1767312000000\t2026-01-02T00:00:00.000Z"
        ),
        "{out}"
    );
    assert!(out.starts_with("FEATURE\tVALUE\tSTATUS"), "{out}");
    // Issue 24: `--at` reads as of a time (the older row), `--format json` for scripts.
    let (ok, out, err) = keel(&[
        "store",
        "get",
        "--path",
        dbs,
        "--service",
        "fraud",
        "--key",
        "card_id=c1",
        "--at",
        "2026-01-01T12:00:00Z",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["value"], 10.5, "{out}");
    assert_eq!(rows[0]["status"], "present");
    assert_eq!(rows[1]["value"], 1.0);
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
    assert_eq!(lines[1], "c1,2026-01-01T12:00:00Z,10.5,1");
    assert_eq!(lines[2], "c1,2026-01-05T00:00:00Z,20.5,");
    assert_eq!(lines[3], "c3,2026-01-05T00:00:00Z,,");
    // Issue 24: the store is discoverable: list and describe, for people and for scripts.
    let (ok, out, err) = keel(&["store", "list", "--path", dbs]);
    assert!(ok, "{err}");
    assert!(out.starts_with("KIND"), "{out}");
    assert!(out.contains("join keys card_id:string"), "{out}");
    assert!(out.contains("card_stats@1"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("service") && l.contains("fraud")),
        "{out}"
    );
    let (ok, out, err) = keel(&["store", "list", "--path", dbs, "--format", "json"]);
    assert!(ok, "{err}");
    let defs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(defs["views"][0]["name"], "card_stats");
    assert_eq!(defs["services"][0]["name"], "fraud");
    let (ok, out, err) = keel(&["store", "describe", "--path", dbs, "card_stats@1"]);
    assert!(ok, "{err}");
    assert!(out.contains("(2 keys with rows)"), "{out}");
    assert!(out.contains("txn_count"), "{out}");
    let (ok, out, err) = keel(&[
        "store", "describe", "--path", dbs, "fraud", "--format", "json",
    ]);
    assert!(ok, "{err}");
    let svc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(svc["key"], serde_json::json!(["card_id:string"]));
    let (ok, out, err) = keel(&["store", "list", "--path", dbs, "--format", "csv"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("kind,name,details\nentity,card,join keys card_id:string\n"),
        "{out}"
    );
    let (ok, out, err) = keel(&[
        "store",
        "describe",
        "--path",
        dbs,
        "card_stats@1",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("entities_with_rows,2\n") && out.contains("feature.txn_count,i64"),
        "{out}"
    );
    let (ok, out, err) = keel(&[
        "store",
        "get",
        "--path",
        dbs,
        "--service",
        "fraud",
        "--key",
        "card_id=c1",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(
            "feature,value,status,event_ms,event_time\ncard_stats@1:spend_24h,20.5,present,"
        ),
        "{out}"
    );
    let (ok, _, err) = keel(&["store", "describe", "--path", dbs, "nothing"]);
    assert!(!ok);
    assert!(err.contains("unknown"), "{err}");
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
    let (_, out, _) = get(dbs, "c9");
    assert!(out.contains("not_found"), "{out}");
}

fn apply(dir: &std::path::Path, defs: &str) -> (bool, String, String) {
    let file = dir.join("defs.toml");
    std::fs::write(&file, defs).unwrap();
    let db = dir.join("db");
    keel(&[
        "store",
        "apply",
        "--path",
        db.to_str().unwrap(),
        "--definitions",
        file.to_str().unwrap(),
    ])
}

/// Issue 23, item 5: a misspelt key in store definitions was ignored (a view with no TTL was
/// created), and durations existed only in milliseconds. Unknown keys are now errors naming the
/// key, and `ttl = "7d"` works.
#[test]
fn definitions_refuse_unknown_keys_and_take_human_durations() {
    let dir = tempfile::tempdir().unwrap();
    let misspelt = DEFS.replace("ttl_ms = 864000000000", "tll = \"7d\"");
    let (ok, _, err) = apply(dir.path(), &misspelt);
    assert!(!ok, "a misspelt key was accepted");
    assert!(err.contains("tll"), "{err}");
    assert!(!dir.path().join("db").exists() || !ok);
    let typo_in_field = DEFS.replace("dtype = \"i64\"", "type = \"i64\"");
    let (ok, _, err) = apply(dir.path(), &typo_in_field);
    assert!(!ok && err.contains("type"), "{err}");
    let both = DEFS.replace("ttl_ms = 864000000000", "ttl = \"7d\"\nttl_ms = 5");
    let (ok, _, err) = apply(dir.path(), &both);
    assert!(!ok && err.contains("not both"), "{err}");
    let human = DEFS.replace(
        "ttl_ms = 864000000000",
        "ttl = \"36h\"\nretention = \"90d\"",
    );
    let (ok, out, err) = apply(dir.path(), &human);
    assert!(ok, "{err}");
    assert!(out.contains("applied 1 entities, 1 views"), "{out}");
    let defs = keel::store::Definitions::from_toml(&human).unwrap();
    assert_eq!(defs.views[0].ttl_ms, Some(36 * 3_600_000));
    assert_eq!(defs.views[0].retention_ms, Some(90 * 86_400_000));
}

/// Applies `DEFS` to a new store `dir/db`; returns its path.
fn applied_store(dir: &std::path::Path) -> String {
    let (ok, _, err) = apply(dir, DEFS);
    assert!(ok, "{err}");
    dir.join("db").to_str().unwrap().to_string()
}

/// `keel store ingest` of `rows` (CSV text) into `card_stats`, with extra arguments.
fn ingest(db: &str, rows: &str, extra: &[&str]) -> (bool, String, String) {
    let src = std::path::Path::new(db).with_extension("csv");
    std::fs::write(&src, rows).unwrap();
    let src = src.to_str().unwrap();
    let mut args = vec![
        "store",
        "ingest",
        "--path",
        db,
        "--view",
        "card_stats",
        "--input",
        src,
    ];
    args.extend_from_slice(extra);
    keel(&args)
}

const HEADER: &str = "card_id,event_timestamp,spend_24h,txn_count\n";

/// Issue 23, item 6: timestamps in seconds were taken as milliseconds (the join then returned
/// all-empty features without a word), and RFC 3339 with an offset was refused.
#[test]
fn second_timestamps_are_refused_with_a_hint_and_offsets_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let db = applied_store(dir.path());
    let seconds = format!("{HEADER}c1,1769189814,1.5,1\n");
    let (ok, _, err) = ingest(&db, &seconds, &[]);
    assert!(!ok, "seconds read as milliseconds");
    assert!(
        err.contains("looks like seconds: use --time-unit s"),
        "{err}"
    );
    let (ok, out, err) = ingest(&db, &seconds, &["--time-unit", "s"]);
    assert!(ok && out.contains("wrote 1 rows"), "{err}");
    let offset = format!("{HEADER}c2,2026-01-23T22:36:54+05:00,2.5,2\n");
    let (ok, _, err) = ingest(&db, &offset, &[]);
    assert!(ok, "{err}");
    let (ok, out, err) = get(&db, "c2");
    assert!(ok, "{err}");
    assert!(
        out.contains("spend_24h\t2.5\tpresent\t1769189814000"),
        "{out}"
    );
}

/// Issue 23, item 7: a misspelt `--path` on a read command created a new, empty store (also
/// inside a directory that is no store) and then said `unknown feature view`.
#[test]
fn read_commands_refuse_a_directory_that_is_not_a_store_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), "hello").unwrap();
    for path in [&missing, &plain] {
        let p = path.to_str().unwrap();
        for args in [
            vec![
                "store",
                "get",
                "--path",
                p,
                "--service",
                "fraud",
                "--key",
                "card_id=c1",
            ],
            vec![
                "store",
                "checkpoint",
                "--path",
                p,
                "--to",
                "/nonexistent/cp",
            ],
        ] {
            let (ok, _, err) = keel(&args);
            assert!(!ok);
            assert!(err.contains("is not a keel feature store"), "{err}");
        }
    }
    assert!(!missing.exists(), "nothing is created");
    let names: Vec<_> = std::fs::read_dir(&plain).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing is added to a plain directory");
}

/// Issue 23, item 8: `store historical` dropped every extra entity column (labels and ids were
/// lost; Feast keeps them) and wrote RFC 3339 input times back as integers.
#[test]
fn historical_keeps_every_entity_column_in_order_and_times_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let db = applied_store(dir.path());
    let dbs = db.as_str();
    let (ok, _, err) = ingest(
        dbs,
        &format!("{HEADER}c1,2026-01-01T00:00:00Z,10.5,1\n"),
        &[],
    );
    assert!(ok, "{err}");
    let ents = dir.path().join("ents.csv");
    std::fs::write(
        &ents,
        "request_id,label,event_timestamp,card_id\nr-1,0.10,2026-01-02T05:00:00+05:00,c1\nr-2,1,2026-01-03T00:00:00Z,c9\n",
    )
    .unwrap();
    let out = dir.path().join("out.csv");
    let (ok, _, err) = keel(&[
        "store",
        "historical",
        "--path",
        dbs,
        "--entities",
        ents.to_str().unwrap(),
        "--features",
        "fraud",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "request_id,label,event_timestamp,card_id,spend_24h,txn_count"
    );
    assert_eq!(lines[1], "r-1,0.10,2026-01-02T05:00:00+05:00,c1,10.5,1");
    assert_eq!(lines[2], "r-2,1,2026-01-03T00:00:00Z,c9,,");
}

/// Issue 19: every verb takes `--url redis://...`; `materialize` copies a view from an
/// embedded store into Redis incrementally, behind a watermark.
#[test]
fn store_commands_on_redis_and_incremental_materialize() {
    let redis = keel::store::redis::LocalRedis::start(&[]).unwrap();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(p("defs.toml"), DEFS).unwrap();
    std::fs::write(
        p("day1.csv"),
        "card_id,event_timestamp,spend_24h,txn_count\n\
         c1,2026-01-01T00:00:00Z,10.5,1\n\
         c1,2026-01-02T00:00:00Z,20.5,2\n\
         c2,2026-01-02T06:00:00Z,3.0,3\n",
    )
    .unwrap();
    std::fs::write(
        p("day3.csv"),
        "card_id,event_timestamp,spend_24h,txn_count\nc1,2026-01-03T00:00:00Z,30.5,3\n",
    )
    .unwrap();
    let db = p("db");
    let ok = |args: &[&str]| {
        let (ok, out, err) = keel(args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    ok(&[
        "store",
        "apply",
        "--path",
        &db,
        "--definitions",
        &p("defs.toml"),
    ]);
    ok(&[
        "store",
        "ingest",
        "--path",
        &db,
        "--view",
        "card_stats",
        "--input",
        &p("day1.csv"),
    ]);
    // The service is applied on Redis; materialize brings the view's rows.
    ok(&[
        "store",
        "apply",
        "--url",
        &url,
        "--definitions",
        &p("defs.toml"),
    ]);
    let out = ok(&[
        "store",
        "materialize",
        "--from",
        &db,
        "--to",
        &url,
        "--view",
        "card_stats@1",
        "--until",
        "2026-01-02T12:00:00Z",
    ]);
    assert!(out.contains("materialized 2 rows of 2 entities"), "{out}");
    assert!(
        out.contains("watermark none -> 2026-01-02T12:00:00.000Z"),
        "{out}"
    );
    let get = |card: &str| {
        ok(&[
            "store",
            "get",
            "--url",
            &url,
            "--service",
            "fraud",
            "--key",
            &format!("card_id={card}"),
            "--format",
            "json",
        ])
    };
    let rows: serde_json::Value = serde_json::from_str(&get("c1")).unwrap();
    assert_eq!(rows[0]["value"], 20.5, "the newest row of c1");
    // Nothing new: nothing copied. A later row: only it.
    let out = ok(&[
        "store",
        "materialize",
        "--from",
        &db,
        "--to",
        &url,
        "--view",
        "card_stats@1",
        "--until",
        "2026-01-02T12:00:00Z",
    ]);
    assert!(out.contains("materialized 0 rows"), "{out}");
    ok(&[
        "store",
        "ingest",
        "--path",
        &db,
        "--view",
        "card_stats",
        "--input",
        &p("day3.csv"),
    ]);
    let out = ok(&[
        "store",
        "materialize",
        "--from",
        &db,
        "--to",
        &url,
        "--view",
        "card_stats@1",
        "--until",
        "2026-01-04T00:00:00Z",
    ]);
    assert!(out.contains("materialized 1 rows of 1 entities"), "{out}");
    let rows: serde_json::Value = serde_json::from_str(&get("c1")).unwrap();
    assert_eq!(rows[0]["value"], 30.5);
    let out = ok(&["store", "list", "--url", &url, "--format", "json"]);
    assert!(out.contains("card_stats"), "{out}");
    let out = ok(&["store", "describe", "--url", &url, "card_stats@1"]);
    assert!(out.contains("2026-01-04"), "the watermark: {out}");
    // Checkpoints have no Redis meaning: a typed refusal naming what to do instead.
    let (done, _, err) = keel(&["store", "checkpoint", "--url", &url, "--to", &p("cp")]);
    assert!(!done);
    assert!(
        err.contains("checkpoint is not supported on redis"),
        "{err}"
    );
    // --path and --url together, or neither: refused by the parser.
    let (done, _, err) = keel(&["store", "list", "--path", &db, "--url", &url]);
    assert!(!done && err.contains("cannot be used with"), "{err}");
    let (done, _, err) = keel(&["store", "list"]);
    assert!(!done && err.contains("required"), "{err}");
    // A Redis nobody runs: a clear error, quickly.
    let (done, _, err) = keel(&["store", "list", "--url", "redis://127.0.0.1:1"]);
    assert!(
        !done && err.contains("connecting to redis://127.0.0.1:1"),
        "{err}"
    );
}
