//! What only a shared Redis store has: several processes on one store, a cluster, a server
//! that goes away, operations with no Redis meaning.

use crate::common::*;
use keel_store::redis::{LocalRedis, LocalRedisCluster, RedisBackend, RedisOptions, RedisUrl};
use keel_store::*;
use std::sync::Arc;
use std::time::Duration;

fn row(card: &str, event: i64, spend: f64) -> Row {
    Row {
        key: vec![card.into()],
        event_ms: event,
        created_ms: Some(event),
        values: vec![spend.into(), 1i64.into(), "FR".into()],
    }
}

/// A store on `url` whose calls give up fast (a test kills the server under it), with the
/// client cache on or off.
fn connect_impatient(url: &str, client_cache: bool) -> Store {
    let mut o = RedisOptions::default();
    o.connect_timeout = Duration::from_millis(300);
    o.io_timeout = Duration::from_millis(500);
    o.client_cache = client_cache;
    Store::connect_with(
        url,
        StoreOptions {
            clock: Arc::new(keel_core::ManualClock::new(10 * DAY)),
            ..Default::default()
        },
        o,
    )
    .unwrap()
}

fn connect(url: &str, now: i64) -> Store {
    Store::connect(
        url,
        StoreOptions {
            clock: Arc::new(keel_core::ManualClock::new(now)),
            catalog_refresh: Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn an_apply_in_one_process_is_seen_by_another_without_restart() {
    let redis = LocalRedis::start(&[]).unwrap();
    let a = connect(&redis.url(), 10 * DAY);
    let b = connect(&redis.url(), 10 * DAY);
    assert!(matches!(
        b.get_online("fraud", &[vec!["c1".into()]]),
        Err(StoreError::Unknown { .. })
    ));
    a.apply(&defs()).unwrap();
    a.write("card_stats", 1, &[row("c1", 9 * DAY, 5.0)])
        .unwrap();
    // b learns the definitions at its next read (catalog_refresh 0 here; 1 s by default).
    let r = b.get_online("fraud", &[vec!["c1".into()]]).unwrap();
    assert_eq!(r.values[0][0].value, 5.0.into());
    // A redefined service moves in b too.
    let mut moved = defs();
    moved.views.clear();
    moved.services[0].features = vec![FeatureRef::parse("card_stats@1:country").unwrap()];
    a.apply(&moved).unwrap();
    let r = b.get_online("fraud", &[vec!["c1".into()]]).unwrap();
    assert_eq!(r.features.len(), 1);
    assert_eq!(r.values[0][0].value, "FR".into());
    // And a write through b is read by a at once (no row cache on a shared store).
    b.write("card_stats", 1, &[row("c1", 9 * DAY + 1, 6.0)])
        .unwrap();
    let h = a.history("card_stats", 1, &["c1".into()]).unwrap();
    assert_eq!(h.len(), 2);
    // Stores under other prefixes on the same server see nothing of it.
    let other = connect(&format!("{}?prefix=other", redis.url()), 10 * DAY);
    assert!(other.definitions().unwrap().views.is_empty());
}

#[test]
fn operations_without_a_redis_meaning_are_typed_unsupported() {
    let redis = LocalRedis::start(&[]).unwrap();
    let store = connect(&redis.url(), 10 * DAY);
    store.apply(&defs()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    match store.checkpoint(dir.path().join("cp")) {
        Err(StoreError::Unsupported {
            operation: "checkpoint",
            backend: "redis",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match store.bulk_load("card_stats", 1, &[row("c1", DAY, 1.0)]) {
        Err(StoreError::Unsupported {
            operation: "SST bulk load",
            instead,
            ..
        }) => assert!(instead.contains("materialize"), "{instead}"),
        other => panic!("{other:?}"),
    }
    assert!(store
        .history("card_stats", 1, &["c1".into()])
        .unwrap()
        .is_empty());
}

#[test]
fn bad_urls_and_prefixes_are_refused() {
    for url in [
        "http://x",
        "redis://",
        "redis://a:1,b:2",
        "redis://127.0.0.1:1?db=2",
    ] {
        assert!(
            matches!(RedisUrl::parse(url), Err(StoreError::Definition(_))),
            "{url}"
        );
    }
    let u = RedisUrl::parse("redis+cluster://a:1,b:2?prefix=p1").unwrap();
    assert!(u.cluster);
    assert_eq!(u.seeds, ["redis://a:1", "redis://b:2"]);
    assert_eq!(u.prefix.as_deref(), Some("p1"));
    let clock = Arc::new(keel_core::ManualClock::new(0));
    let err = RedisBackend::connect(
        "redis://127.0.0.1:1?prefix=a*b",
        clock.clone(),
        RedisOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("prefix"), "{err}");
    // Nobody listens on port 1: a typed backend error, quickly.
    let t = std::time::Instant::now();
    let err =
        RedisBackend::connect("redis://127.0.0.1:1", clock, RedisOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Backend {
                backend: "redis",
                ..
            }
        ),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// A Redis that goes away: each read fails with a typed error (no hang, no panic) and the
/// store answers again once the server is back, without being reopened.
#[test]
fn reads_fail_typed_while_redis_is_down_and_recover_after() {
    let mut redis = LocalRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]).unwrap();
    // Every read goes to Redis (a warm client cache would answer, correctly, until its
    // listener notices the server is gone: the cache test covers that).
    let store = connect_impatient(&redis.url(), false);
    store.apply(&defs()).unwrap();
    store
        .write("card_stats", 1, &[row("c1", 9 * DAY, 5.0)])
        .unwrap();
    let key = [vec![Value::from("c1")]];
    let (mut ok, mut failed) = (0, 0);
    for i in 0..60 {
        if i == 10 {
            redis.kill();
        }
        if i == 30 {
            redis.restart().unwrap();
        }
        let t = std::time::Instant::now();
        match store.get_online("fraud", &key) {
            Ok(r) => {
                assert_eq!(
                    r.values[0][0].value,
                    5.0.into(),
                    "the append-only file kept it"
                );
                ok += 1;
            }
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        StoreError::Backend {
                            backend: "redis",
                            ..
                        }
                    ),
                    "{e}"
                );
                assert!(
                    (10..30).contains(&i),
                    "read {i} failed after the restart: {e}"
                );
                failed += 1;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(3), "read {i} hung");
    }
    assert_eq!(failed, 20, "every read while down failed, typed");
    assert_eq!(ok, 40);
}

/// A batch is all or nothing for readers: a reader polling while big batches land never
/// sees part of one (every entity of a batch carries the batch's number).
#[test]
fn readers_never_see_half_a_batch() {
    let redis = LocalRedis::start(&[]).unwrap();
    let writer = connect(&redis.url(), 10 * DAY);
    writer.apply(&defs()).unwrap();
    let mut opts = RedisOptions::default();
    opts.rows_per_call = 7; // many script calls per batch, inside one transaction
    let url = redis.url();
    let done = std::sync::atomic::AtomicBool::new(false);
    let keys: Vec<Vec<Value>> = (0..200).map(|i| vec![format!("c{i}").into()]).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let w = Store::connect_with(
                &url,
                StoreOptions {
                    clock: Arc::new(keel_core::ManualClock::new(10 * DAY)),
                    ..Default::default()
                },
                opts,
            )
            .unwrap();
            for b in 1..=30 {
                let rows: Vec<Row> = (0..200)
                    .map(|i| row(&format!("c{i}"), DAY + b, b as f64))
                    .collect();
                w.write("card_stats", 1, &rows).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let reader = connect(&url, 10 * DAY);
        let mut seen = 0;
        // Until the writer is done, and at least once after a batch landed.
        while !done.load(std::sync::atomic::Ordering::SeqCst) || seen == 0 {
            let r = reader.get_as_of("fraud", &keys, 2 * DAY).unwrap();
            let first = &r.values[0][0].value;
            for v in &r.values {
                assert_eq!(&v[0].value, first, "a batch was half visible");
            }
            if matches!(first, Value::F64(_)) {
                seen += 1;
            }
        }
    });
}

/// A real 3-master Redis Cluster: an entity's views share a slot, reads of many entities fan
/// out per shard, and the suite's semantics hold.
#[test]
fn a_three_master_cluster_keeps_the_semantics() {
    let cluster = LocalRedisCluster::start(3).unwrap();
    let url = cluster.url();
    let store = connect(&url, 10 * DAY);
    store.apply(&defs()).unwrap();
    let rows: Vec<Row> = (0..300)
        .flat_map(|i| {
            [
                row(&format!("c{i}"), 5 * DAY, i as f64),
                row(&format!("c{i}"), 9 * DAY, 1000.0 + i as f64),
            ]
        })
        .collect();
    store.write("card_stats", 1, &rows).unwrap();
    let keys: Vec<Vec<Value>> = (0..300).map(|i| vec![format!("c{i}").into()]).collect();
    let online = store.get_online("fraud", &keys).unwrap();
    let past = store.get_as_of("fraud", &keys, 6 * DAY).unwrap();
    for i in 0..300 {
        assert_eq!(online.values[i][0].value, (1000.0 + i as f64).into());
        assert_eq!(past.values[i][0].value, (i as f64).into());
    }
    // Rows are spread over every master.
    for node in cluster.nodes() {
        let mut c = ::redis::Client::open(node.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let n: i64 = ::redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert!(n > 50, "a master holds only {n} keys");
    }
    // Deletes, definitions from another process, history, retention: as on one server.
    assert_eq!(store.delete_entity("card", &["c7".into()]).unwrap(), 1);
    let other = connect(&url, 10 * DAY);
    let r = other
        .get_online("fraud", &[vec!["c7".into()], vec!["c8".into()]])
        .unwrap();
    assert_eq!(r.values[0][0].status, Status::NotFound);
    assert_eq!(r.values[1][0].value, 1008.0.into());
    assert_eq!(store.view_stats("card_stats", 1).unwrap().entities, 299);
    assert_eq!(
        other
            .history("card_stats", 1, &["c8".into()])
            .unwrap()
            .len(),
        2
    );
}

/// A write cut by the server dying (SIGKILL, append-only file synced on every write) is, after
/// the restart, either wholly there or not at all: every entity of a batch carries the batch's
/// number, and all entities agree.
#[test]
fn a_write_cut_by_a_redis_crash_is_all_or_nothing() {
    let mut redis = LocalRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]).unwrap();
    let url = redis.url();
    let store = connect(&url, 10 * DAY);
    store.apply(&defs()).unwrap();
    let keys: Vec<Vec<Value>> = (0..500).map(|i| vec![format!("c{i}").into()]).collect();
    let writer = connect_impatient(&url, true);
    let mut acknowledged = 0;
    std::thread::scope(|s| {
        let w = &writer;
        let keys = &keys;
        let handle = s.spawn(move || {
            let mut last_ok = 0;
            for b in 1..=100_000i64 {
                let rows: Vec<Row> = keys
                    .iter()
                    .map(|k| {
                        let Value::Str(c) = &k[0] else { unreachable!() };
                        row(c, DAY + b, b as f64)
                    })
                    .collect();
                match w.write("card_stats", 1, &rows) {
                    Ok(()) => last_ok = b,
                    Err(_) => return last_ok,
                }
            }
            last_ok
        });
        std::thread::sleep(Duration::from_millis(400));
        redis.kill();
        acknowledged = handle.join().unwrap();
    });
    assert!(acknowledged > 0, "some batches landed before the crash");
    redis.restart().unwrap();
    let reader = connect(&url, 10 * DAY);
    let r = reader.get_as_of("fraud", &keys, 2 * DAY).unwrap();
    let first = r.values[0][0].value.clone();
    let Value::F64(b) = first else {
        panic!("nothing survived: {first:?}")
    };
    for v in &r.values {
        assert_eq!(v[0].value, first, "a batch survived the crash in part");
    }
    // Every acknowledged batch survived (appendfsync always); at most the one in flight more.
    assert!(
        b as i64 == acknowledged || b as i64 == acknowledged + 1,
        "acknowledged {acknowledged}, found {b}"
    );
}

/// Bytes in Redis that are not keel's (a damaged or foreign value under keel's prefix) are a
/// typed error for the reads that meet them; other entities read as before.
#[test]
fn foreign_bytes_under_the_prefix_are_typed_corrupt_errors() {
    let redis = LocalRedis::start(&[]).unwrap();
    let store = connect(&redis.url(), 10 * DAY);
    store.apply(&defs()).unwrap();
    store
        .write(
            "card_stats",
            1,
            &[row("c1", 9 * DAY, 1.0), row("c2", 9 * DAY, 2.0)],
        )
        .unwrap();
    let mut c = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS")
        .arg("keel:{*}:h:*")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys.len(), 2);
    let damaged = keys.iter().find(|k| k.ends_with(b"c1\x00\x01")).unwrap();
    for junk in [&b"short"[..], &[0u8; 40][..]] {
        let _: () = ::redis::cmd("DEL").arg(damaged).query(&mut c).unwrap();
        let _: () = ::redis::cmd("ZADD")
            .arg(damaged)
            .arg(0)
            .arg(junk)
            .query(&mut c)
            .unwrap();
        let err = store.get_online("fraud", &[vec!["c1".into()]]).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        let ok = store.get_online("fraud", &[vec!["c2".into()]]).unwrap();
        assert_eq!(ok.values[0][0].value, 2.0.into());
    }
    // A key of the wrong type: a typed backend error, not a panic.
    let _: () = ::redis::cmd("DEL").arg(damaged).query(&mut c).unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(damaged)
        .arg("x")
        .query(&mut c)
        .unwrap();
    let err = store.get_online("fraud", &[vec!["c1".into()]]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Backend {
                backend: "redis",
                ..
            }
        ),
        "{err}"
    );
}

/// Replays the `redis_reply` fuzz target's seed corpus (raw replies captured from a real
/// `redis-server` for the commands keel sends, store URLs, history members) through the same
/// calls, with truncated and flipped variants. `KEEL_WRITE_CORPUS=1` captures the seeds again.
#[test]
fn replay_redis_reply_corpus() {
    use std::io::{Read, Write};
    let dir = crate::manifest_dir().join("../../fuzz/corpus/redis_reply");
    if std::env::var_os("KEEL_WRITE_CORPUS").is_some() {
        let redis = LocalRedis::start(&[]).unwrap();
        let store = connect(&redis.url(), 10 * DAY);
        store.apply(&defs()).unwrap();
        store
            .write(
                "card_stats",
                1,
                &[row("c1", DAY, 1.5), row("c1", 2 * DAY, 2.5)],
            )
            .unwrap();
        let mut c = ::redis::Client::open(redis.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS")
            .arg("keel:{*}:h:*")
            .query(&mut c)
            .unwrap();
        let mut raw = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
        raw.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        let key = &keys[0][..];
        let cmd = |args: &[&[u8]]| {
            let mut c = ::redis::cmd(std::str::from_utf8(args[0]).unwrap());
            for a in &args[1..] {
                c.arg(*a);
            }
            c.get_packed_command()
        };
        for (count, packed) in [
            (1u8, cmd(&[b"PING"])),
            (1, cmd(&[b"ZRANGE", key, b"0", b"0"])),
            (1, cmd(&[b"ZRANGE", key, b"0", b"-1"])),
            (
                3,
                [
                    cmd(&[b"MULTI"]),
                    cmd(&[b"ZRANGE", key, b"0", b"0"]),
                    cmd(&[b"EXEC"]),
                ]
                .concat(),
            ),
            (1, cmd(&[b"HGETALL", b"keel:{reg}:defs"])),
            (1, cmd(&[b"GET", b"keel:{reg}:gen"])),
            (1, cmd(&[b"GET", b"nothing"])),
            (
                1,
                cmd(&[b"SCAN", b"0", b"MATCH", b"keel:*", b"COUNT", b"10"]),
            ),
            (1, cmd(&[b"GET", key])),
            (1, cmd(&[b"EVALSHA", b"0000", b"0"])),
        ] {
            raw.write_all(&packed).unwrap();
            let mut seed = vec![count - 1];
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match raw.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => seed.extend_from_slice(&buf[..n]),
                    Err(_) if seed.len() > 1 => break,
                    Err(e) => panic!("{e}"),
                }
            }
            seeds.push(seed);
        }
        seeds.push(b"redis+cluster://a:1,b:2?prefix=p".to_vec());
        seeds.push(b"redis://:secret@127.0.0.1:6379/2".to_vec());
        let members: Vec<Vec<u8>> = ::redis::cmd("ZRANGE")
            .arg(&keys[0])
            .arg(0)
            .arg(-1)
            .query(&mut c)
            .unwrap();
        seeds.extend(members);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), s).unwrap();
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "seed corpus missing: {}", dir.display());
    for f in files {
        let s = std::fs::read(f).unwrap();
        keel_store::fuzzing::redis_bytes(&s);
        for cut in [0, 1, s.len() / 2, s.len().saturating_sub(1)] {
            keel_store::fuzzing::redis_bytes(&s[..cut]);
        }
        let mut flipped = s.clone();
        for b in flipped.iter_mut().skip(1).step_by(5) {
            *b ^= 0x5A;
        }
        keel_store::fuzzing::redis_bytes(&flipped);
    }
}

/// The row cache on a shared Redis (client-side caching, on by default): a replica answers hot
/// entities from memory, another replica's write reaches it as an invalidation, and a lost
/// invalidation listener drops the cache instead of serving what it can no longer vouch for.
#[test]
fn the_client_cache_follows_other_replicas_writes() {
    let redis = LocalRedis::start(&[]).unwrap();
    let url = redis.url();
    let a = connect(&url, 10 * DAY);
    let b = connect(&url, 10 * DAY);
    a.apply(&defs()).unwrap();
    a.write("card_stats", 1, &[row("c1", 9 * DAY, 1.0)])
        .unwrap();
    let key = [vec![Value::from("c1")]];
    let spend = |s: &Store| {
        s.get_online("fraud", &key).unwrap().values[0][0]
            .value
            .clone()
    };
    // Wait for a's listener, then fill its cache.
    let t = std::time::Instant::now();
    let mut c = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let tracked = || -> i64 {
        let info: String = ::redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("tracking_total_keys:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut tracked = tracked;
    while tracked() == 0 {
        assert_eq!(spend(&a), 1.0.into());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "nothing was ever tracked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // b writes: a sees it once the invalidation lands, never an older value after that.
    for (i, v) in [2.0, 3.0, 4.0].into_iter().enumerate() {
        b.write("card_stats", 1, &[row("c1", 9 * DAY + 1 + i as i64, v)])
            .unwrap();
        let t = std::time::Instant::now();
        while spend(&a) != v.into() {
            assert!(t.elapsed() < Duration::from_secs(2), "a never saw {v}");
            std::thread::sleep(Duration::from_millis(2));
        }
        for _ in 0..20 {
            assert_eq!(spend(&a), v.into(), "a went back to an older value");
        }
    }
    // a's own writes are visible to a at once.
    a.write("card_stats", 1, &[row("c1", 9 * DAY + 10, 5.0)])
        .unwrap();
    assert_eq!(spend(&a), 5.0.into());
    // Kill a's listener (and every pub/sub client), then change c1 behind it: a drops its
    // cache when it sees the listener gone, and reads Redis again.
    let _: () = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    b.write("card_stats", 1, &[row("c1", 9 * DAY + 11, 6.0)])
        .unwrap();
    assert_eq!(
        spend(&a),
        6.0.into(),
        "served from a cache nobody vouches for"
    );
    // A flush from outside reaches the cache too.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(spend(&a), 6.0.into());
    let _: () = ::redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let t = std::time::Instant::now();
    loop {
        match a.get_online("fraud", &key) {
            Err(StoreError::Unknown { .. }) => break, // definitions gone, caught by the refresh
            Ok(r) if r.values[0][0].status == Status::NotFound => break,
            Ok(_) => assert!(t.elapsed() < Duration::from_secs(3), "stale after FLUSHALL"),
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Messages between processes sharing a store (Redis pub/sub): every subscriber, this process
/// included, hears each message; a subscriber reconnects after the server restarts; a store
/// with another prefix does not hear them; the embedded store has none; oversized ones are
/// refused.
#[test]
fn messages_reach_every_process_on_the_store() {
    use std::sync::mpsc::channel;
    let mut redis = LocalRedis::start(&["--appendonly", "yes"]).unwrap();
    let a = connect_impatient(&redis.url(), true);
    let b = connect_impatient(&redis.url(), true);
    let other = connect_impatient(&format!("{}?prefix=other", redis.url()), true);
    let (ta, ra) = channel::<Vec<u8>>();
    let (tb, rb) = channel::<Vec<u8>>();
    let (to, ro) = channel::<Vec<u8>>();
    let sink = |t: std::sync::mpsc::Sender<Vec<u8>>| -> MessageSink {
        let t = std::sync::Mutex::new(t);
        Arc::new(move |m: &[u8]| {
            let _ = t.lock().unwrap().send(m.to_vec());
        })
    };
    assert!(a.subscribe(sink(ta)).unwrap());
    assert!(b.subscribe(sink(tb)).unwrap());
    assert!(other.subscribe(sink(to)).unwrap());
    let wait = Duration::from_secs(5);
    // The subscriptions come up in the background: publish until the first one lands.
    let mut heard = None;
    for _ in 0..50 {
        a.publish(b"hello").unwrap();
        if let Ok(m) = rb.recv_timeout(Duration::from_millis(100)) {
            heard = Some(m);
            break;
        }
    }
    assert_eq!(heard.as_deref(), Some(&b"hello"[..]));
    // The next message that is not one of the probes above (they may still be in flight).
    let next = |rx: &std::sync::mpsc::Receiver<Vec<u8>>| loop {
        let m = rx.recv_timeout(wait).unwrap();
        if m != b"hello" {
            return m;
        }
    };
    b.publish(b"keel.rollout:fraud").unwrap();
    assert_eq!(next(&ra), b"keel.rollout:fraud");
    assert_eq!(next(&rb), b"keel.rollout:fraud");
    assert!(ro.try_recv().is_err(), "another prefix is another store");
    assert!(matches!(
        a.publish(&vec![b'x'; 5000]),
        Err(StoreError::TooLarge(_))
    ));

    // The server restarts: the subscriber comes back by itself.
    redis.restart().unwrap();
    let mut back = false;
    for _ in 0..100 {
        if a.publish(b"again").is_ok() && rb.recv_timeout(Duration::from_millis(100)).is_ok() {
            back = true;
            break;
        }
    }
    assert!(back, "the subscriber never reconnected");

    let dir = tempfile::tempdir().unwrap();
    let embedded = Store::open(dir.path()).unwrap();
    assert!(!embedded.is_shared());
    assert!(!embedded.subscribe(Arc::new(|_: &[u8]| {})).unwrap());
    assert!(matches!(
        embedded.publish(b"x"),
        Err(StoreError::Unsupported { .. })
    ));
}
