//! # Feature store: versioned views, point-in-time joins, online and as-of reads
//!
//! The store is RocksDB embedded in your process. This tutorial:
//!
//! 1. defines an entity (`card`), a versioned feature view with a TTL, and a feature service;
//! 2. writes history, including a late event that lands in the right place;
//! 3. reads online (latest as of now, TTL enforced, status per value) and as of a past time;
//! 4. builds a training set with a point-in-time join (greatest event time <= the entity row's
//!    time, within TTL, ties to the later write; optionally ignoring backfilled rows);
//! 5. takes a checkpoint: the training-data version a model records.
//!
//! `cargo run -p keel-examples --example feature_store`; data in `./keel-data/feature_store`.

use anyhow::Result;
use keel::core::{DType, Field, Frame, ManualClock};
use keel::store::{
    Definitions, Entity, FeatureRef, FeatureService, FeatureView, HistoricalOptions, Row, Store,
    StoreOptions, Value,
};
use std::sync::Arc;

const H: i64 = 3_600_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01

fn row(card: &str, event: i64, created: i64, spend: f64, n: i64) -> Row {
    Row {
        key: vec![Value::Str(card.into())],
        event_ms: event,
        created_ms: Some(created),
        values: vec![Value::F64(spend), Value::I64(n)],
    }
}

fn main() -> Result<()> {
    let dir = std::path::Path::new("keel-data/feature_store");
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let clock = Arc::new(ManualClock::new(T0 + 10 * H));
    let store = Store::open_with(
        dir.join("db"),
        StoreOptions {
            clock: clock.clone(),
            durability: keel::store::Durability::Synced,
            ..Default::default()
        },
    )?;

    // 1. Definitions live in the database's own registry and are validated on apply.
    store.apply(&Definitions {
        entities: vec![Entity {
            name: "card".into(),
            join_keys: vec![Field::required("card_id", DType::String)],
        }],
        views: vec![FeatureView {
            name: "card_stats".into(),
            version: 1,
            entities: vec!["card".into()],
            features: vec![
                Field::new("spend_24h", DType::F64),
                Field::new("txn_count_24h", DType::I64),
            ],
            ttl_ms: Some(6 * H),
            retention_ms: None,
            owner: "fraud-team".into(),
            description: "rolling card spend".into(),
            tags: Default::default(),
        }],
        services: vec![FeatureService {
            name: "fraud".into(),
            features: vec![
                FeatureRef::parse("card_stats@1:spend_24h")?,
                FeatureRef::parse("card_stats@1:txn_count_24h")?,
            ],
        }],
    })?;

    // 2. History: atomic batches; a late event (written at 9h about 2h) lands at 2h.
    store.write(
        "card_stats",
        1,
        &[
            row("c1", T0 + H, T0 + H, 10.0, 1),
            row("c1", T0 + 5 * H, T0 + 5 * H, 90.0, 4),
            row("c2", T0 + H, T0 + H, 5.0, 1),
        ],
    )?;
    store.write(
        "card_stats",
        1,
        &[row("c1", T0 + 2 * H, T0 + 9 * H, 40.0, 2)],
    )?;

    // 3. Online (now = 10h): c1's latest is 5h (within the 6h TTL); c2's 1h row has expired.
    let now = store.get_online(
        "fraud",
        &[
            vec![Value::Str("c1".into())],
            vec![Value::Str("c2".into())],
            vec![Value::Str("c3".into())],
        ],
    )?;
    for (card, vals) in ["c1", "c2", "c3"].iter().zip(&now.values) {
        println!(
            "online {card}: spend {:?} ({:?}, event {:?})",
            vals[0].value,
            vals[0].status,
            vals[0].event_ms.map(|e| (e - T0) / H)
        );
    }
    let past = store.get_as_of("fraud", &[vec![Value::Str("c1".into())]], T0 + 3 * H)?;
    println!(
        "as of 3h, c1 spend {:?} (the late event)",
        past.values[0][0].value
    );

    // 4. Point-in-time join for training rows at 3h and 6h; with no_backfill_leak the late row
    //    (created at 9h) is invisible to the 3h training row, as it was to serving at 3h.
    let entities = Frame::from_csv_reader(
        format!(
            "card_id,event_timestamp,label\nc1,{},0\nc1,{},1\n",
            T0 + 3 * H,
            T0 + 6 * H
        )
        .as_bytes(),
        None,
    )?;
    let refs = store.service("fraud")?.features;
    for leak in [false, true] {
        let t = store.historical(
            &entities,
            &refs,
            HistoricalOptions {
                no_backfill_leak: leak,
                ..Default::default()
            },
        )?;
        let s = t.column("spend_24h")?;
        println!(
            "historical (no_backfill_leak={leak}): spend at 3h = {:?}, at 6h = {:?}",
            s.get_f64(0),
            s.get_f64(1)
        );
    }

    // 5. A checkpoint: a read-only snapshot whose id is the training-data version.
    let cp = store.checkpoint(dir.join("checkpoint"))?;
    println!("checkpoint {cp} at {}", cp.path.display());
    Ok(())
}
