//! Feature store semantics: definitions, writes, online / as-of / historical reads, faults.

use crate::common::*;
use keel_core::{DType, Field, Frame};
use keel_store::*;

fn row(card: &str, event: i64, created: i64, spend: f64, count: i64, country: &str) -> Row {
    Row {
        key: vec![card.into()],
        event_ms: event,
        created_ms: Some(created),
        values: vec![spend.into(), count.into(), country.into()],
    }
}

#[test]
fn definitions_are_validated_and_versioned() {
    on_each_backend(|place| {
        let (store, _) = place.open(10 * DAY);
        store.apply(&defs()).unwrap();
        store.apply(&defs()).unwrap(); // identical: no-op

        let mut changed = defs();
        changed.views[0]
            .features
            .push(Field::new("new_feature", DType::F64));
        let err = store.apply(&changed).unwrap_err();
        assert!(err.to_string().contains("apply a new version"), "{err}");

        changed.views[0].version = 2;
        store.apply(&changed).unwrap();
        assert_eq!(store.view("card_stats", 1).unwrap().features.len(), 3);
        assert_eq!(store.view("card_stats", 2).unwrap().features.len(), 4);

        // Reads resolve a service once and cache it; re-applying the service must be seen at once.
        let key = [vec![Value::from("c1")]];
        assert_eq!(store.get_online("fraud", &key).unwrap().values[0].len(), 3);
        let mut moved = defs();
        moved.views.clear();
        moved.services[0].features = vec![
            FeatureRef::parse("card_stats@2:new_feature").unwrap(),
            FeatureRef::parse("card_stats@1:spend_24h").unwrap(),
        ];
        store.apply(&moved).unwrap();
        let r = store.get_online("fraud", &key).unwrap();
        assert_eq!(r.features.len(), 2);
        assert_eq!(r.features[0].to_string(), "card_stats@2:new_feature");
        assert_eq!(r.values[0].len(), 2);

        let mut unknown = defs();
        unknown.views[0].entities = vec!["nobody".into()];
        unknown.views[0].version = 9;
        assert!(matches!(
            store.apply(&unknown),
            Err(StoreError::Unknown { kind: "entity", .. })
        ));
        let mut bad_ref = defs();
        bad_ref.services[0]
            .features
            .push(FeatureRef::parse("card_stats@1:nope").unwrap());
        assert!(matches!(
            store.apply(&bad_ref),
            Err(StoreError::Unknown {
                kind: "feature",
                ..
            })
        ));
        let mut bad_key = defs();
        bad_key.entities[0].join_keys[0].dtype = DType::F64;
        assert!(matches!(
            store.apply(&bad_key),
            Err(StoreError::Definition(_))
        ));

        // Definitions persist.
        drop(store);
        let (store, _) = place.open(10 * DAY);
        assert_eq!(store.service("fraud").unwrap().features.len(), 2);
        assert!(store.view("card_stats", 2).is_ok());
    });
}

#[test]
fn online_and_as_of_reads_with_ttl_and_status() {
    on_each_backend(|place| {
        let (store, clock) = place.open(10 * DAY);
        store.apply(&defs()).unwrap();
        store
            .write(
                "card_stats",
                1,
                &[
                    row("c1", 5 * DAY, 5 * DAY, 10.0, 1, "FR"),
                    row("c1", 9 * DAY, 9 * DAY, 30.0, 3, "FR"),
                    // late, out-of-order event: lands in history at its event time
                    row("c1", 7 * DAY, 9 * DAY + 5, 20.0, 2, "DE"),
                    row("c2", 2 * DAY, 2 * DAY, 99.0, 9, "US"),
                ],
            )
            .unwrap();
        let keys = vec![
            vec![Value::from("c1")],
            vec!["c2".into()],
            vec!["c3".into()],
        ];
        let r = store.get_online("fraud", &keys).unwrap();
        assert_eq!(
            r.values[0][0],
            FeatureValue {
                value: 30.0.into(),
                status: Status::Present,
                event_ms: Some(9 * DAY)
            }
        );
        assert_eq!(r.values[0][1].value, "FR".into());
        assert_eq!(r.values[1][0].status, Status::Expired);
        assert_eq!(r.values[1][0].value, Value::Null);
        assert_eq!(r.values[2][2].status, Status::NotFound);

        let past = store.get_as_of("fraud", &keys, 8 * DAY).unwrap();
        assert_eq!(past.values[0][0].value, 20.0.into());
        assert_eq!(past.values[0][1].value, "DE".into());
        assert_eq!(
            store.get_as_of("fraud", &keys, 5 * DAY - 1).unwrap().values[0][0].status,
            Status::NotFound
        );

        // TTL is enforced on every read as the clock moves.
        clock.set(9 * DAY + DAY);
        assert_eq!(
            store.get_online("fraud", &keys).unwrap().values[0][0].status,
            Status::Present
        );
        clock.set(9 * DAY + DAY + 1);
        assert_eq!(
            store.get_online("fraud", &keys).unwrap().values[0][0].status,
            Status::Expired
        );
    });
}

#[test]
fn ties_break_by_created_and_rewrites_are_idempotent() {
    on_each_backend(|place| {
        let (store, _) = place.open(10 * DAY);
        store.apply(&defs()).unwrap();
        let a = row("c1", 9 * DAY, 9 * DAY, 1.0, 1, "FR");
        let b = row("c1", 9 * DAY, 9 * DAY + 1, 2.0, 2, "FR");
        store
            .write("card_stats", 1, &[b.clone(), a.clone()])
            .unwrap();
        store.write("card_stats", 1, &[a.clone(), a]).unwrap();
        let r = store.get_online("fraud", &[vec!["c1".into()]]).unwrap();
        assert_eq!(r.values[0][0].value, 2.0.into());
        assert_eq!(
            store
                .history("card_stats", 1, &["c1".into()])
                .unwrap()
                .len(),
            2
        );
    });
}

/// A batch is applied in key order (it is sorted before it reaches the memtable): a key written
/// twice in one batch still keeps its later value, whatever rows of other entities lie between.
#[test]
fn a_key_written_twice_in_one_batch_keeps_the_later_value() {
    on_each_backend(|place| {
        let (store, _) = place.open(10 * DAY);
        store.apply(&defs()).unwrap();
        let mut batch = Vec::new();
        for i in 0..50 {
            batch.push(row(&format!("c{i}"), 9 * DAY, 9 * DAY, i as f64, i, "FR"));
        }
        batch.push(row("c7", 9 * DAY, 9 * DAY, 700.0, 7, "DE"));
        batch.push(row("c3", 8 * DAY, 8 * DAY, 300.0, 3, "DE"));
        batch.insert(0, row("c9", 9 * DAY, 9 * DAY, 900.0, 9, "DE"));
        store.write("card_stats", 1, &batch).unwrap();
        let keys: Vec<Vec<Value>> = ["c7", "c9", "c3"]
            .iter()
            .map(|c| vec![(*c).into()])
            .collect();
        let r = store.get_online("fraud", &keys).unwrap();
        // c7: the later write of the same key; c9: the first write was replaced by the later one;
        // c3: an older event in the same batch does not replace the newest row.
        assert_eq!(r.values[0][0].value, 700.0.into());
        assert_eq!(r.values[1][0].value, 9.0.into());
        assert_eq!(r.values[2][0].value, 3.0.into());
        let h = store.history("card_stats", 1, &["c7".into()]).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(
            store
                .history("card_stats", 1, &["c3".into()])
                .unwrap()
                .len(),
            2
        );
    });
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    on_each_backend(|place| {
        let (store, _) = place.open(10 * DAY);
        store.apply(&defs()).unwrap();
        let good = row("c1", DAY, DAY, 1.0, 1, "FR");
        let cases: Vec<(Row, &str)> = vec![
            (
                Row {
                    values: vec![1.0.into(), "x".into(), "FR".into()],
                    ..good.clone()
                },
                "txn_count",
            ),
            (
                Row {
                    values: vec![1.0.into(), 1i64.into(), Value::Null],
                    ..good.clone()
                },
                "non-nullable",
            ),
            (
                Row {
                    values: vec![1.0.into()],
                    ..good.clone()
                },
                "values for 3",
            ),
            (
                Row {
                    key: vec![5i64.into()],
                    ..good.clone()
                },
                "join key",
            ),
            (
                Row {
                    event_ms: -1,
                    ..good.clone()
                },
                "timestamp",
            ),
            (
                Row {
                    event_ms: MAX_TS + 1,
                    ..good.clone()
                },
                "timestamp",
            ),
            (
                Row {
                    key: vec!["k".repeat(2000).as_str().into()],
                    ..good.clone()
                },
                "too large",
            ),
            (
                Row {
                    values: vec![
                        1.0.into(),
                        1i64.into(),
                        "x".repeat(MAX_VALUE + 1).as_str().into(),
                    ],
                    ..good.clone()
                },
                "too large",
            ),
        ];
        for (bad, what) in cases {
            let err = store
                .write("card_stats", 1, &[good.clone(), bad])
                .unwrap_err();
            assert!(
                err.to_string().to_lowercase().contains(what),
                "{what}: {err}"
            );
        }
        assert!(
            store
                .history("card_stats", 1, &["c1".into()])
                .unwrap()
                .is_empty(),
            "no partial batch"
        );
        assert!(matches!(
            store.write("nope", 1, std::slice::from_ref(&good)),
            Err(StoreError::Unknown { .. })
        ));
        assert!(matches!(
            store.write("card_stats", 7, &[good]),
            Err(StoreError::Unknown { .. })
        ));
        assert!(matches!(
            store.get_online("nope", &[]),
            Err(StoreError::Unknown { .. })
        ));
    });
}

#[test]
fn point_in_time_join_matches_feast_semantics() {
    on_each_backend(|place| {
        let (store, _) = place.open(100 * DAY);
        store.apply(&defs()).unwrap();
        store
            .write(
                "card_stats",
                1,
                &[
                    row("c1", 10 * DAY, 10 * DAY, 1.0, 1, "FR"),
                    row("c1", 12 * DAY, 12 * DAY, 2.0, 2, "FR"),
                    // backfilled later (created on day 30) for an event at day 12, 6 h
                    row("c1", 12 * DAY + DAY / 4, 30 * DAY, 3.0, 3, "DE"),
                ],
            )
            .unwrap();
        let entities = Frame::from_csv_reader(
            format!(
                "card_id,event_timestamp\nc1,{}\nc1,{}\nc1,{}\nc1,{}\nc1,{}\nc9,{}\n",
                10 * DAY - 1,
                10 * DAY,
                12 * DAY + 5,
                12 * DAY + DAY / 2,
                20 * DAY,
                12 * DAY
            )
            .as_bytes(),
            None,
        )
        .unwrap();
        let refs: Vec<FeatureRef> = ["card_stats@1:spend_24h", "card_stats@1:country"]
            .iter()
            .map(|s| FeatureRef::parse(s).unwrap())
            .collect();
        let out = store
            .historical(&entities, &refs, HistoricalOptions::default())
            .unwrap();
        let spend: Vec<f64> = (0..6)
            .map(|i| out.column("spend_24h").unwrap().get_f64(i).unwrap())
            .collect();
        assert!(spend[0].is_nan(), "before the first event");
        assert_eq!(&spend[1..4], &[1.0, 2.0, 3.0]);
        assert!(
            spend[4].is_nan(),
            "latest row is older than the TTL counted back from the entity time"
        );
        assert!(spend[5].is_nan(), "unknown entity");
        assert_eq!(out.nrows(), 6);
        assert_eq!(
            out.schema().names().collect::<Vec<_>>(),
            ["card_id", "event_timestamp", "spend_24h", "country"]
        );

        let strict = store
            .historical(
                &entities,
                &refs,
                HistoricalOptions {
                    no_backfill_leak: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            strict.column("spend_24h").unwrap().get_f64(3),
            Some(2.0),
            "backfilled row ignored"
        );
    });
}

#[test]
fn checkpoints_are_read_only_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("db"), 10 * DAY);
    store.apply(&defs()).unwrap();
    store
        .write(
            "card_stats",
            1,
            &[row("c1", 9 * DAY, 9 * DAY, 1.0, 1, "FR")],
        )
        .unwrap();
    let id = store.checkpoint(dir.path().join("cp")).unwrap();
    store
        .write(
            "card_stats",
            1,
            &[row("c1", 9 * DAY + 1, 9 * DAY + 1, 2.0, 2, "FR")],
        )
        .unwrap();
    assert!(id.to_string().starts_with("seq-"));
    let snap = Store::open_read_only(
        &id.path,
        StoreOptions {
            clock: std::sync::Arc::new(keel_core::ManualClock::new(10 * DAY)),
            durability: keel_store::Durability::Buffered,
            ..Default::default()
        },
    )
    .unwrap();
    let r = snap.get_online("fraud", &[vec!["c1".into()]]).unwrap();
    assert_eq!(r.values[0][0].value, 1.0.into());
    assert!(snap
        .write("card_stats", 1, &[row("c1", DAY, DAY, 0.0, 0, "FR")])
        .is_err());
}

#[test]
fn delete_entity_forgets_it_everywhere() {
    on_each_backend(|place| {
        let (store, _) = place.open(10 * DAY);
        store.apply(&defs()).unwrap();
        store
            .write(
                "card_stats",
                1,
                &[
                    row("c1", 9 * DAY, 9 * DAY, 1.0, 1, "FR"),
                    row("c10", 9 * DAY, 9 * DAY, 5.0, 1, "FR"),
                ],
            )
            .unwrap();
        store.delete_entity("card", &["c1".into()]).unwrap();
        let r = store
            .get_online("fraud", &[vec!["c1".into()], vec!["c10".into()]])
            .unwrap();
        assert_eq!(r.values[0][0].status, Status::NotFound);
        assert_eq!(
            r.values[1][0].value,
            5.0.into(),
            "neighbouring keys untouched"
        );
    });
}

#[test]
fn materialize_is_incremental() {
    on_each_backend(|place| {
        let (store, _) = place.open(100 * DAY);
        store.apply(&defs()).unwrap();
        let csv = format!(
            "card_id,event_timestamp,created_timestamp,spend_24h,txn_count,country\nc1,{},{},1.5,1,FR\nc1,{},,2.5,2,DE\nc2,{},,3.5,,US\n",
            DAY, DAY, 3 * DAY, 5 * DAY
        );
        let source = Frame::from_csv_reader(csv.as_bytes(), None).unwrap();
        assert_eq!(
            store
                .materialize("card_stats", 1, &source, 4 * DAY)
                .unwrap(),
            2
        );
        assert_eq!(store.watermark("card_stats", 1).unwrap(), Some(4 * DAY));
        assert_eq!(
            store
                .materialize("card_stats", 1, &source, 6 * DAY)
                .unwrap(),
            1,
            "only rows after the watermark"
        );
        assert_eq!(
            store
                .materialize("card_stats", 1, &source, 6 * DAY)
                .unwrap(),
            0
        );
        let r = store
            .get_as_of("fraud", &[vec!["c2".into()]], 5 * DAY)
            .unwrap();
        assert_eq!(r.values[0][0].value, 3.5.into());
        assert_eq!(r.values[0][2].value, Value::Null);
    });
}

#[test]
fn bulk_load_appears_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), 10 * DAY);
    store.apply(&defs()).unwrap();
    let rows: Vec<Row> = (0..500)
        .map(|i| row(&format!("c{i}"), 9 * DAY, 9 * DAY, i as f64, i, "FR"))
        .collect();
    store.bulk_load("card_stats", 1, &rows).unwrap();
    let keys: Vec<Vec<Value>> = (0..500)
        .map(|i| vec![format!("c{i}").as_str().into()])
        .collect();
    let r = store.get_online("fraud", &keys).unwrap();
    assert!(r
        .values
        .iter()
        .enumerate()
        .all(|(i, v)| v[0].value == (i as f64).into()));
}

const H: i64 = 3_600_000;

#[test]
fn bulk_load_keeps_newer_rows_and_takes_each_entitys_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_cached(dir.path(), 10 * DAY, 0);
    store.apply(&defs()).unwrap();
    store
        .write(
            "card_stats",
            1,
            &[row("c0", 10 * DAY - H, 10 * DAY - H, 80.0, 1, "FR")],
        )
        .unwrap();
    // c0: older than what is stored; c1: three rows, the newest in the middle of the input.
    let rows = [
        row("c0", 10 * DAY - 5 * H, 10 * DAY, 20.0, 1, "FR"),
        row("c1", 10 * DAY - 6 * H, 10 * DAY, 30.0, 1, "FR"),
        row("c1", 10 * DAY - 2 * H, 10 * DAY, 70.0, 1, "FR"),
        row("c1", 10 * DAY - 4 * H, 10 * DAY, 50.0, 1, "FR"),
    ];
    store.bulk_load("card_stats", 1, &rows).unwrap();
    let keys = [vec!["c0".into()], vec!["c1".into()]];
    let online = store.get_online("fraud", &keys).unwrap();
    assert_eq!(online.values[0][0].value, 80.0.into());
    assert_eq!(online.values[1][0].value, 70.0.into());
    assert_eq!(online, store.get_as_of("fraud", &keys, 10 * DAY).unwrap());
    // And after compaction folds the merge operands.
    store.compact("card_stats", 1).unwrap();
    assert_eq!(online, store.get_online("fraud", &keys).unwrap());
}

/// A bulk load writes history (an SST file) and newest rows (a write batch) in two steps; a
/// process that dies between them leaves a marker, and the next writable open rebuilds that
/// view's newest rows from history.
#[test]
fn a_bulk_load_cut_short_gets_its_newest_rows_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let keys = [vec!["c1".into()], vec!["c2".into()]];
    let want = {
        let (store, _) = open_cached(dir.path(), 10 * DAY, 0);
        store.apply(&defs()).unwrap();
        let rows = [
            row("c1", 10 * DAY - H, 10 * DAY, 9.0, 1, "FR"),
            row("c2", 10 * DAY - 2 * H, 10 * DAY, 3.0, 1, "FR"),
        ];
        store.bulk_load("card_stats", 1, &rows).unwrap();
        let want = store.get_online("fraud", &keys).unwrap();
        store.compact("card_stats", 1).unwrap();
        want
    };
    // The state a kill between the two steps leaves: the marker set and the newest rows not
    // matching history (here c1's newest row replaced by a later, unreadable one).
    {
        let (db, _) = open_raw(dir.path());
        let newest = db.cf_handle("nw:card_stats:v1").unwrap();
        let registry = db.cf_handle("registry").unwrap();
        let keys: Vec<Box<[u8]>> = db
            .iterator_cf(&newest, rocksdb::IteratorMode::Start)
            .map(|kv| kv.unwrap().0)
            .collect();
        assert_eq!(keys.len(), 2);
        for k in keys {
            db.put_cf(&newest, k, [0xFFu8; 24]).unwrap();
        }
        db.put_cf(&registry, b"rebuild-newest/fv:card_stats:v1", b"")
            .unwrap();
    }
    // A read-only open (a checkpoint taken mid-load) cannot rebuild: it reads history.
    let ro = open_read_only(dir.path(), 10 * DAY);
    assert_eq!(ro.get_online("fraud", &keys).unwrap(), want);
    drop(ro);
    let (store, _) = open_cached(dir.path(), 10 * DAY, 0);
    assert_eq!(store.get_online("fraud", &keys).unwrap(), want);
    drop(store);
    // The marker is gone: the rebuild happens once.
    let (db, _) = open_raw(dir.path());
    let registry = db.cf_handle("registry").unwrap();
    assert!(db
        .get_cf(&registry, b"rebuild-newest/fv:card_stats:v1")
        .unwrap()
        .is_none());
}

/// Both newest-row layouts answer alike through writes, bulk loads, deletes and compaction,
/// and switching layout at open rebuilds the family in the new one and drops the old.
#[test]
fn newest_row_layouts_answer_alike_and_switch_at_open() {
    let families = |dir: &std::path::Path, prefix: &str| {
        rocksdb::DB::list_cf(&rocksdb::Options::default(), dir)
            .unwrap()
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    };
    let keys: Vec<Vec<Value>> = (0..6)
        .map(|i| vec![format!("c{i}").as_str().into()])
        .collect();
    let mut answers = Vec::new();
    for layout in [NewestLayout::Checked, NewestLayout::Mapped] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_layout(dir.path(), 10 * DAY, 0, layout);
        store.apply(&defs()).unwrap();
        store
            .write(
                "card_stats",
                1,
                &[
                    row("c0", 10 * DAY - 2 * H, 10 * DAY, 1.0, 1, "FR"),
                    row("c0", 10 * DAY - 5 * H, 10 * DAY, 2.0, 1, "FR"),
                    row("c1", 10 * DAY - H, 10 * DAY, 3.0, 1, "FR"),
                    row("c2", 11 * DAY, 10 * DAY, 4.0, 1, "FR"),
                ],
            )
            .unwrap();
        let bulk: Vec<Row> = (3..6)
            .map(|i| row(&format!("c{i}"), 9 * DAY, 9 * DAY, i as f64, i, "DE"))
            .collect();
        store.bulk_load("card_stats", 1, &bulk).unwrap();
        store.delete_entity("card", &["c1".into()]).unwrap();
        let online = store.get_online("fraud", &keys).unwrap();
        store.compact("card_stats", 1).unwrap();
        assert_eq!(store.get_online("fraud", &keys).unwrap(), online);
        drop(store);
        // Reopen in the other layout: rebuilt from history, same answers.
        let other = match layout {
            NewestLayout::Checked => NewestLayout::Mapped,
            _ => NewestLayout::Checked,
        };
        let (store, _) = open_layout(dir.path(), 10 * DAY, 0, other);
        assert_eq!(store.get_online("fraud", &keys).unwrap(), online);
        drop(store);
        let (nw, mapped) = (families(dir.path(), "nw:"), families(dir.path(), "newest:"));
        match other {
            NewestLayout::Mapped => assert_eq!((nw, mapped), (0, 2)),
            _ => assert_eq!((nw, mapped), (2, 0)),
        }
        answers.push(online);
    }
    assert_eq!(answers[0], answers[1]);
    let r = &answers[0];
    assert_eq!(r.values[0][0].value, 1.0.into());
    assert_eq!(r.values[1][0].status, Status::NotFound, "deleted");
    assert_eq!(r.values[3][0].value, 3.0.into(), "bulk loaded");
}

#[test]
fn stores_without_newest_rows_get_them_built_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let keys = [vec!["c1".into()], vec!["c2".into()], vec!["c3".into()]];
    let before = {
        let (store, _) = open_cached(dir.path(), 10 * DAY, 0);
        store.apply(&defs()).unwrap();
        store
            .write(
                "card_stats",
                1,
                &[
                    row("c1", 10 * DAY - H, 10 * DAY, 9.0, 1, "FR"),
                    row("c1", 10 * DAY - 8 * H, 10 * DAY, 4.0, 1, "FR"),
                    row("c2", 11 * DAY, 11 * DAY, 11.0, 1, "FR"),
                    row("c2", 10 * DAY - 3 * H, 10 * DAY, 3.0, 1, "FR"),
                ],
            )
            .unwrap();
        let before = store.get_online("fraud", &keys).unwrap();
        store.compact("card_stats", 1).unwrap();
        before
    };
    assert_eq!(before.values[0][0].value, 9.0.into());
    assert_eq!(
        before.values[1][0].value,
        3.0.into(),
        "c2's newest row is in the future"
    );
    assert_eq!(before.values[2][0].status, Status::NotFound);
    // Make it a store without newest rows in its layout: drop the newest-row column families
    // and add ones in the other layout (`newest:`, PlainTable, holding a stale row) that must
    // not be read. (Everything was flushed by keel first: opening the files with other
    // options must not write SST files keel would not have written.)
    {
        let (db, cfs) = open_raw(dir.path());
        for cf in cfs.iter().filter(|c| c.starts_with("nw:")) {
            db.drop_cf(cf).unwrap();
            let other = cf.replace("nw:", "newest:");
            db.create_cf(&other, &plain_table_options()).unwrap();
            let handle = db.cf_handle(&other).unwrap();
            db.put_cf(&handle, b"stale-entity", b"not a newest row")
                .unwrap();
            db.flush_cf(&handle).unwrap();
        }
    }
    // Read-only: answered from history.
    let ro = open_read_only(dir.path(), 10 * DAY);
    assert_eq!(ro.get_online("fraud", &keys).unwrap(), before);
    drop(ro);
    // Writable: the other layout is dropped, newest rows are rebuilt from history at open.
    let (store, _) = open_cached(dir.path(), 10 * DAY, 0);
    assert_eq!(store.get_online("fraud", &keys).unwrap(), before);
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
    assert!(
        !families.iter().any(|c| c.starts_with("newest:")),
        "{families:?}"
    );
    assert_eq!(
        families.iter().filter(|c| c.starts_with("nw:")).count(),
        2,
        "{families:?}"
    );
    store
        .write(
            "card_stats",
            1,
            &[row("c1", 10 * DAY - 5 * H, 10 * DAY, 5.0, 1, "FR")],
        )
        .unwrap();
    assert_eq!(
        store.get_online("fraud", &keys).unwrap().values[0][0].value,
        9.0.into(),
        "an older late row does not replace the newest"
    );
}

#[test]
fn newest_rows_can_be_turned_off_and_back_on() {
    let dir = tempfile::tempdir().unwrap();
    let keys = [vec!["c1".into()], vec!["c2".into()]];
    let opts = |newest_rows| StoreOptions {
        clock: std::sync::Arc::new(keel_core::ManualClock::new(10 * DAY)),
        row_cache_entries: 0,
        newest_rows,
        ..Default::default()
    };
    let families = || {
        rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path())
            .unwrap()
            .into_iter()
            .filter(|c| c.starts_with("nw:"))
            .count()
    };
    {
        let store = Store::open_with(dir.path(), opts(true)).unwrap();
        store.apply(&defs()).unwrap();
        store
            .write(
                "card_stats",
                1,
                &[row("c1", 10 * DAY - H, 10 * DAY, 1.0, 1, "FR")],
            )
            .unwrap();
    }
    assert_eq!(families(), 2, "one per view version");
    let want = {
        let store = Store::open_with(dir.path(), opts(false)).unwrap();
        // Written while off: only history has these rows.
        store
            .write(
                "card_stats",
                1,
                &[
                    row("c1", 10 * DAY - 2 * H, 10 * DAY, 2.0, 1, "FR"),
                    row("c2", 10 * DAY - H, 10 * DAY, 3.0, 1, "FR"),
                ],
            )
            .unwrap();
        store.get_online("fraud", &keys).unwrap()
    };
    assert_eq!(want.values[0][0].value, 1.0.into());
    assert_eq!(want.values[1][0].value, 3.0.into());
    assert_eq!(families(), 0, "dropped rather than left stale");
    let store = Store::open_with(dir.path(), opts(true)).unwrap();
    assert_eq!(store.get_online("fraud", &keys).unwrap(), want);
    drop(store);
    assert_eq!(families(), 2, "rebuilt from history");
}

#[test]
fn retention_drops_old_history_on_compaction() {
    on_each_backend(|place| {
        let (store, clock) = place.open_cached(10 * DAY, 0);
        let mut d = defs();
        d.services.push(FeatureService {
            name: "risk".into(),
            features: vec![FeatureRef::parse("merchant_risk@1:chargeback_rate").unwrap()],
        });
        store.apply(&d).unwrap();
        let m = |event: i64, rate: f64| Row {
            key: vec![7i64.into()],
            event_ms: event,
            created_ms: Some(event),
            values: vec![rate.into(), false.into()],
        };
        store
            .write("merchant_risk", 1, &[m(DAY, 0.1), m(5 * DAY, 0.2)])
            .unwrap();
        clock.set(40 * DAY);
        store.compact("merchant_risk", 1).unwrap();
        let h = store.history("merchant_risk", 1, &[7i64.into()]).unwrap();
        assert_eq!(h.len(), 0, "both rows older than 30 days are gone: {h:?}");
        let online = |store: &Store| {
            let r = store.get_online("risk", &[vec![7i64.into()]]).unwrap();
            r.values[0][0].status
        };
        assert_eq!(online(&store), Status::NotFound, "and so is the newest row");
        store
            .write("merchant_risk", 1, &[m(35 * DAY, 0.3)])
            .unwrap();
        store.compact("merchant_risk", 1).unwrap();
        assert_eq!(
            store
                .history("merchant_risk", 1, &[7i64.into()])
                .unwrap()
                .len(),
            1
        );
        assert_eq!(online(&store), Status::Present);
    });
}

/// A test-only backend that corrupts the bytes of one entity's rows on read.
#[derive(Debug)]
struct Corrupting(RocksBackend, Vec<u8>);

impl Backend for Corrupting {
    fn registry_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.0.registry_get(key)
    }
    fn registry_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.0.registry_scan(prefix)
    }
    fn ensure_view(&self, name: &str, r: Option<i64>) -> Result<()> {
        self.0.ensure_view(name, r)
    }
    fn commit(&self, batch: &Batch, sync: bool) -> Result<()> {
        self.0.commit(batch, sync)
    }
    fn latest(
        &self,
        view: &str,
        prefix: &[u8],
        bound: i64,
        cutoff: Option<i64>,
    ) -> Result<Option<Found>> {
        let mut f = self.0.latest(view, prefix, bound, cutoff)?;
        if let Some(found) = f.as_mut() {
            if prefix.ends_with(&self.1) {
                let mid = found.value.len() / 2;
                found.value[mid] ^= 0x55;
            }
        }
        Ok(f)
    }
    fn history(&self, view: &str, prefix: &[u8]) -> Result<Vec<Found>> {
        self.0.history(view, prefix)
    }
    fn entities(&self, view: &str) -> Result<Vec<Vec<u8>>> {
        self.0.entities(view)
    }
}

#[test]
fn corrupt_values_are_typed_errors_and_the_store_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let clock: std::sync::Arc<dyn keel_core::Clock> =
        std::sync::Arc::new(keel_core::ManualClock::new(10 * DAY));
    let rocks = RocksBackend::open(dir.path(), clock.clone()).unwrap();
    // "bad" encodes as 0x02 b a d 0x00 0x01
    let store = Store::with_backend(
        std::sync::Arc::new(Corrupting(rocks, b"\x02bad\x00\x01".to_vec())),
        StoreOptions {
            clock,
            durability: keel_store::Durability::Buffered,
            ..Default::default()
        },
    )
    .unwrap();
    store.apply(&defs()).unwrap();
    store
        .write(
            "card_stats",
            1,
            &[
                row("bad", 9 * DAY, 9 * DAY, 1.0, 1, "FR"),
                row("good", 9 * DAY, 9 * DAY, 2.0, 1, "FR"),
            ],
        )
        .unwrap();
    let err = store
        .get_online("fraud", &[vec!["bad".into()]])
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let ok = store.get_online("fraud", &[vec!["good".into()]]).unwrap();
    assert_eq!(ok.values[0][0].value, 2.0.into());
}

#[test]
fn store_is_send_sync_and_concurrent() {
    fn assert<T: Send + Sync>() {}
    assert::<Store>();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), 10 * DAY);
    store.apply(&defs()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in 0..200 {
                    let card = format!("t{t}c{}", i % 10);
                    store
                        .write(
                            "card_stats",
                            1,
                            &[row(&card, 9 * DAY + i, 9 * DAY + i, i as f64, i, "FR")],
                        )
                        .unwrap();
                    let r = store
                        .get_online("fraud", &[vec![card.as_str().into()]])
                        .unwrap();
                    assert_eq!(r.values[0][0].status, Status::Present);
                }
            });
        }
    });
}

/// Issue 23, item 9 (part): `get_as_of` had no created-time cutoff (only `historical` did), so
/// an as-of read could see a row backfilled after the read time. `get_as_of_with` takes the
/// same `no_backfill_leak` option.
#[test]
fn as_of_reads_take_the_backfill_cutoff_of_historical() {
    on_each_backend(|place| {
        let (store, _) = place.open(10 * DAY);
        store.apply(&defs()).unwrap();
        let row = |event_ms, created_ms, spend: f64| Row {
            key: vec!["c1".into()],
            event_ms,
            created_ms: Some(created_ms),
            values: vec![spend.into(), Value::Null, "FR".into()],
        };
        store.write("card_stats", 1, &[row(DAY, DAY, 1.0)]).unwrap();
        // A backfill written at day 5 for an event at day 1 + 1h.
        store
            .write("card_stats", 1, &[row(DAY + 3_600_000, 5 * DAY, 2.0)])
            .unwrap();
        let key = [vec![Value::from("c1")]];
        let at = DAY + 7_200_000;
        let loose = store.get_as_of("fraud", &key, at).unwrap();
        assert_eq!(
            loose.values[0][0].value,
            Value::F64(2.0),
            "the backfill is seen"
        );
        let strict = store
            .get_as_of_with(
                "fraud",
                &key,
                at,
                &keel_store::AsOfOptions {
                    no_backfill_leak: true,
                },
            )
            .unwrap();
        assert_eq!(
            strict.values[0][0].value,
            Value::F64(1.0),
            "what was known at the time"
        );
    });
}

/// Issue 23, item 9: a feature service mixing views of different entities was read with one
/// key for every view (an error, or a lookup of the wrong entity). The service's key is now one
/// value per join key of every entity, and each view reads its own part: online, as-of and in
/// the point-in-time join.
#[test]
fn multi_entity_services_take_one_key_per_entity() {
    on_each_backend(|place| {
        let (store, _) = place.open(DAY + 3_600_000);
        let mut d = defs();
        d.services.push(FeatureService {
            name: "both".into(),
            features: ["card_stats@1:spend_24h", "merchant_risk@1:chargeback_rate"]
                .iter()
                .map(|s| FeatureRef::parse(s).unwrap())
                .collect(),
        });
        store.apply(&d).unwrap();
        let card = Row {
            key: vec!["c1".into()],
            event_ms: DAY,
            created_ms: Some(DAY),
            values: vec![7.0.into(), Value::Null, "FR".into()],
        };
        let merchant = Row {
            key: vec![Value::I64(42)],
            event_ms: DAY,
            created_ms: Some(DAY),
            values: vec![0.25.into(), Value::Null],
        };
        store.write("card_stats", 1, &[card]).unwrap();
        store.write("merchant_risk", 1, &[merchant]).unwrap();
        let names: Vec<String> = store
            .service_keys("both")
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["card_id", "merchant_id"]);
        let key = [vec![Value::from("c1"), Value::I64(42)]];
        let want = [Value::F64(7.0), Value::F64(0.25)];
        for r in [
            store.get_online("both", &key).unwrap(),
            store.get_as_of("both", &key, DAY + 7_200_000).unwrap(),
        ] {
            let got: Vec<Value> = r.values[0].iter().map(|v| v.value.clone()).collect();
            assert_eq!(got, want);
        }
        let err = store
            .get_online("both", &[vec![Value::from("c1")]])
            .unwrap_err();
        assert!(err.to_string().contains("card_id, merchant_id"), "{err}");
        // A single-entity service keeps its key.
        assert_eq!(store.service_keys("fraud").unwrap().len(), 1);
        let entities = Frame::from_csv_reader(
            format!(
                "card_id,merchant_id,event_timestamp\nc1,42,{}\n",
                DAY + 7_200_000
            )
            .as_bytes(),
            None,
        )
        .unwrap();
        let refs = store.service("both").unwrap().features;
        let out = store
            .historical(&entities, &refs, HistoricalOptions::default())
            .unwrap();
        assert_eq!(out.column("spend_24h").unwrap().get_f64(0), Some(7.0));
        assert_eq!(
            out.column("chargeback_rate").unwrap().get_f64(0),
            Some(0.25)
        );
    });
}

/// Issue 23, item 9: `delete_entity` skipped views keyed by several entities, so a forgotten
/// entity stayed in them. Every stored key whose part for the entity matches is deleted now.
#[test]
fn delete_entity_reaches_views_keyed_by_several_entities() {
    on_each_backend(|place| {
        let (store, _) = place.open(DAY + 3_600_000);
        let mut d = defs();
        d.views.push(FeatureView {
            name: "pair_stats".into(),
            version: 1,
            entities: vec!["card".into(), "merchant".into()],
            features: vec![Field::new("pair_spend", DType::F64)],
            ttl_ms: None,
            retention_ms: None,
            owner: String::new(),
            description: String::new(),
            tags: Default::default(),
        });
        d.services.push(FeatureService {
            name: "pair".into(),
            features: vec![FeatureRef::parse("pair_stats:pair_spend").unwrap()],
        });
        store.apply(&d).unwrap();
        let pairs = [("c1", 42), ("c1", 43), ("c2", 42), ("c\0x", 42)];
        let rows: Vec<Row> = pairs
            .iter()
            .enumerate()
            .map(|(i, (c, m))| Row {
                key: vec![Value::from(*c), Value::I64(*m)],
                event_ms: DAY,
                created_ms: Some(DAY),
                values: vec![Value::F64(i as f64)],
            })
            .collect();
        store.write("pair_stats", 1, &rows).unwrap();
        let present = |store: &Store| -> Vec<bool> {
            let keys: Vec<Vec<Value>> = pairs
                .iter()
                .map(|(c, m)| vec![Value::from(*c), Value::I64(*m)])
                .collect();
            let r = store.get_online("pair", &keys).unwrap();
            r.values
                .iter()
                .map(|v| v[0].status == Status::Present)
                .collect()
        };
        assert_eq!(present(&store), [true, true, true, true]);
        store.delete_entity("merchant", &[Value::I64(42)]).unwrap();
        assert_eq!(
            present(&store),
            [false, true, false, false],
            "merchant 42 forgotten"
        );
        store.delete_entity("card", &[Value::from("c1")]).unwrap();
        assert_eq!(
            present(&store),
            [false, false, false, false],
            "card c1 forgotten"
        );
        drop(store);
        let (store, _) = place.open(DAY + 3_600_000);
        assert_eq!(
            present(&store),
            [false, false, false, false],
            "after reopening too"
        );
    });
}
