//! Crash safety: a child process writes synced batches and is killed with SIGKILL at random
//! moments; after reopening, every acknowledged batch is there in full and no batch is partial.

use crate::common::*;
use keel_store::{Row, Status, Store, StoreOptions, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

const ROWS_PER_BATCH: usize = 10;

fn batch(b: usize) -> Vec<Row> {
    (0..ROWS_PER_BATCH)
        .map(|j| Row {
            key: vec![format!("b{b}-{j}").as_str().into()],
            event_ms: DAY,
            created_ms: Some(DAY),
            values: vec![(b as f64).into(), (j as i64).into(), "FR".into()],
        })
        .collect()
}

/// The child side: only does work when the parent set KEEL_CRASH_DIR; otherwise it is a no-op
/// helper, not a test of its own.
#[test]
fn crash_writer_child_process() {
    let Some(dir) = std::env::var_os("KEEL_CRASH_DIR") else {
        return;
    };
    let start: usize = std::env::var("KEEL_CRASH_START").unwrap().parse().unwrap();
    let clock = Arc::new(keel_core::ManualClock::new(2 * DAY));
    let store = Store::open_with(
        &dir,
        StoreOptions {
            clock,
            durability: keel_store::Durability::Synced,
            ..Default::default()
        },
    )
    .unwrap();
    for b in start.. {
        store.write("card_stats", 1, &batch(b)).unwrap();
        println!("ACK {b}");
    }
}

fn present(store: &Store, b: usize) -> usize {
    let keys: Vec<Vec<Value>> = (0..ROWS_PER_BATCH)
        .map(|j| vec![format!("b{b}-{j}").as_str().into()])
        .collect();
    let r = store.get_as_of("fraud", &keys, 2 * DAY).unwrap();
    r.values
        .iter()
        .filter(|v| v[0].status == Status::Present && v[0].value == Value::F64(b as f64))
        .count()
}

#[test]
fn killed_writers_leave_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path(), 2 * DAY);
        store.apply(&defs()).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut next = 0usize;
    for (round, delay_ms) in [150u64, 420, 260].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_writer_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KEEL_CRASH_DIR", dir.path())
            .env("KEEL_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(b) = line.strip_prefix("ACK ") {
                    acked.push(b.trim().parse::<usize>().unwrap());
                }
            }
            acked
        });
        // Let it write for a while (opening takes part of the delay), then SIGKILL.
        std::thread::sleep(std::time::Duration::from_millis(300 + delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(
            !acked.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        let store = Store::open_with(
            dir.path(),
            StoreOptions {
                clock: Arc::new(keel_core::ManualClock::new(2 * DAY)),
                durability: keel_store::Durability::Buffered,
                ..Default::default()
            },
        )
        .unwrap();
        let last = *acked.last().unwrap();
        for &b in &acked {
            assert_eq!(
                present(&store, b),
                ROWS_PER_BATCH,
                "round {round}: acknowledged batch {b} incomplete"
            );
        }
        // The batch in flight when killed (and anything after) is all or nothing.
        for b in last + 1..last + 4 {
            let n = present(&store, b);
            assert!(
                n == 0 || n == ROWS_PER_BATCH,
                "round {round}: batch {b} is partial ({n} rows)"
            );
        }
        next = last + 10;
    }
}

/// Issue 23, item 10: damage in the write-ahead log's tail silently dropped the last
/// acknowledged batches at open (no word, exit code 0). The open now reports it
/// (`Store::recovery`), and a clean log reports nothing.
#[test]
fn wal_tail_damage_is_reported_by_the_open_not_dropped_silently() {
    let dir = tempfile::tempdir().unwrap();
    let synced = || StoreOptions {
        clock: Arc::new(keel_core::ManualClock::new(2 * DAY)),
        durability: keel_store::Durability::Synced,
        ..Default::default()
    };
    {
        let store = Store::open_with(dir.path(), synced()).unwrap();
        store.apply(&defs()).unwrap();
        for b in 0..3 {
            store.write("card_stats", 1, &batch(b)).unwrap();
        }
    }
    let wal = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a write-ahead log with the batches");
    let mut bytes = std::fs::read(&wal).unwrap();
    assert!(bytes.len() > 64, "the batches are in the log");
    let n = bytes.len();
    bytes[n - 20] ^= 0xFF;
    std::fs::write(&wal, &bytes).unwrap();
    let store = Store::open_with(dir.path(), synced()).unwrap();
    let r = store.recovery();
    assert!(r.wal_tail_dropped, "{r:?}");
    assert!(!r.detail.is_empty());
    assert_eq!(
        present(&store, 2),
        0,
        "the damaged batch is gone, and the report says so"
    );
    drop(store);
    // The repaired store opens clean.
    let store = Store::open_with(dir.path(), synced()).unwrap();
    assert_eq!(store.recovery(), keel_store::RecoveryReport::default());
}
