//! Replays the `store_bytes` fuzz target's seed corpus (stored rows, newest-row values, merge
//! operands, registry records and row keys taken from a real store) through the same calls,
//! so CI catches regressions without a fuzzer. `KEEL_WRITE_CORPUS=1` rewrites the seeds.

use crate::common::*;
use keel_store::Row;
use std::path::PathBuf;

fn dir() -> PathBuf {
    crate::manifest_dir().join("../../fuzz/corpus/store_bytes")
}

/// Seeds: every key and value of a small store's column families.
fn seeds() -> Vec<Vec<u8>> {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(tmp.path(), 10 * DAY);
        store.apply(&defs()).unwrap();
        let row = |card: &str, event: i64, spend: f64| Row {
            key: vec![card.into()],
            event_ms: event,
            created_ms: Some(event),
            values: vec![spend.into(), 3i64.into(), "FR".into()],
        };
        store
            .write(
                "card_stats",
                1,
                &[row("c1", DAY, 1.5), row("c1", 2 * DAY, 2.5)],
            )
            .unwrap();
        store
            .write("card_stats", 1, &[row("c2", DAY, -0.5)])
            .unwrap();
        // Folds newest-row merge operands into values (read below without keel's operator).
        store.compact("card_stats", 1).unwrap();
    }
    let (db, cfs) = open_raw(tmp.path());
    let mut out = Vec::new();
    for cf in &cfs {
        let Some(h) = db.cf_handle(cf) else { continue };
        let mut values = Vec::new();
        for item in db.iterator_cf(&h, rocksdb::IteratorMode::Start) {
            let (k, v) = item.unwrap();
            out.push(k.to_vec());
            out.push(v.to_vec());
            values.push(v.to_vec());
        }
        // Merge operands as the target splits them.
        if values.len() > 1 {
            out.push(values.join(&0xFF));
        }
    }
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

#[test]
fn replay_store_bytes_corpus() {
    if std::env::var_os("KEEL_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (i, s) in seeds().iter().enumerate() {
            std::fs::write(dir().join(format!("seed-{i:03}")), s).unwrap();
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 8, "seed corpus missing: {}", dir().display());
    for f in files {
        keel_store::fuzzing::stored_bytes(&std::fs::read(f).unwrap());
    }
    // Mangled versions of every seed too (truncations, flipped bytes).
    for s in seeds() {
        for cut in [0, 1, s.len() / 2, s.len().saturating_sub(1)] {
            keel_store::fuzzing::stored_bytes(&s[..cut]);
        }
        let mut flipped = s.clone();
        for b in flipped.iter_mut().step_by(7) {
            *b ^= 0x5A;
        }
        keel_store::fuzzing::stored_bytes(&flipped);
    }
}
