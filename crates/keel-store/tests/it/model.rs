//! Model-based test: random writes and as-of reads against an in-memory reference with the same
//! semantics (latest event <= t, ties by created, TTL from the read time).

use crate::common::*;
use keel_core::Frame;
use keel_core::ManualClock;
use keel_store::{FeatureRef, HistoricalOptions, NewestLayout, Row, Status, Store, Value};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<(u8, i64, i64, f64)>),
    Read(Vec<u8>, i64),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, 0i64..20, 0i64..5, -100.0f64..100.0), 1..6).prop_map(Op::Write),
        4 => (prop::collection::vec(0u8..7, 1..4), 0i64..25).prop_map(|(k, t)| Op::Read(k, t)),
        1 => (0u8..6).prop_map(Op::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn store_matches_reference(
        ops in prop::collection::vec(op(), 1..30),
        cache in any::<bool>(),
        mapped in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Without the row cache every online read asks the newest-row column family, in
        // either layout.
        let layout = if mapped { NewestLayout::Mapped } else { NewestLayout::Checked };
        let (store, clock) = open_layout(dir.path(), 100 * DAY, if cache { 64 } else { 0 }, layout);
        check(&store, &clock, ops)?;
    }

    /// The same model on Redis (the backend every replica of a fleet shares).
    #[test]
    fn redis_store_matches_reference(ops in prop::collection::vec(op(), 1..30)) {
        let place = Place::new(Kind::Redis);
        let (store, clock) = place.open(100 * DAY);
        check(&store, &clock, ops)?;
    }
}

/// Runs `ops` on `store` and on the in-memory reference, comparing every read.
fn check(store: &Store, clock: &ManualClock, ops: Vec<Op>) -> Result<(), TestCaseError> {
    store.apply(&defs()).unwrap();
    // (card, event, created) -> spend
    let mut reference: BTreeMap<(u8, i64, i64), f64> = BTreeMap::new();
    let ttl = DAY;
    let unit = DAY / 4; // event times in quarter days, so TTL matters
    for op in ops {
        match op {
            Op::Write(rows) => {
                let batch: Vec<Row> = rows
                    .iter()
                    .map(|&(c, e, cr, v)| Row {
                        key: vec![format!("card{c}").as_str().into()],
                        event_ms: e * unit,
                        created_ms: Some(cr),
                        values: vec![v.into(), 1i64.into(), "FR".into()],
                    })
                    .collect();
                store.write("card_stats", 1, &batch).unwrap();
                for (c, e, cr, v) in rows {
                    reference.insert((c, e * unit, cr), v);
                }
            }
            Op::Delete(c) => {
                store
                    .delete_entity("card", &[format!("card{c}").as_str().into()])
                    .unwrap();
                reference.retain(|k, _| k.0 != c);
            }
            Op::Read(cards, t) => {
                let at = t * unit;
                let keys: Vec<Vec<Value>> = cards
                    .iter()
                    .map(|c| vec![format!("card{c}").as_str().into()])
                    .collect();
                let got = store.get_as_of("fraud", &keys, at).unwrap();
                // Online reads go through the row cache (filled by earlier reads, dropped by
                // writes) and the newest rows (history when the newest row lies in the
                // future): same answers.
                clock.set(at);
                let online = store.get_online("fraud", &keys).unwrap();
                prop_assert_eq!(&online.values, &got.values);
                // The point-in-time join (several workers, rows in key order internally)
                // must give the same values, in input order.
                let mut csv = String::from("card_id,event_timestamp\n");
                for c in &cards {
                    csv.push_str(&format!("card{c},{at}\n"));
                }
                let entities = Frame::from_csv_reader(csv.as_bytes(), None).unwrap();
                let refs = [FeatureRef::parse("card_stats@1:spend_24h").unwrap()];
                let joined = store
                    .historical(
                        &entities,
                        &refs,
                        HistoricalOptions {
                            threads: 3,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                let spend = joined.column("spend_24h").unwrap();
                for (i, fv) in got.values.iter().enumerate() {
                    let j = spend.get_f64(i).unwrap();
                    match &fv[0].value {
                        Value::F64(v) => prop_assert_eq!(j, *v),
                        _ => prop_assert!(j.is_nan()),
                    }
                }
                for (i, c) in cards.iter().enumerate() {
                    let want = reference
                        .range((*c, i64::MIN, i64::MIN)..=(*c, at, i64::MAX))
                        .next_back();
                    let fv = &got.values[i][0];
                    match want {
                        None => prop_assert_eq!(fv.status, Status::NotFound),
                        Some((&(_, e, _), _)) if at - e > ttl => {
                            prop_assert_eq!(fv.status, Status::Expired)
                        }
                        Some((&(_, e, _), &v)) => {
                            prop_assert_eq!(fv.status, Status::Present);
                            prop_assert_eq!(&fv.value, &Value::F64(v));
                            prop_assert_eq!(fv.event_ms, Some(e));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
