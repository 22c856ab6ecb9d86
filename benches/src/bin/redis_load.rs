//! keel's shared online store on Redis against what a fleet would use instead, in one run on
//! one `redis-server` (started here on a loopback port, no persistence):
//!
//! - Feast's own Python SDK (`get_online_features(...).to_dict()` on Feast's Redis online
//!   store; `benches/feast/redis_online.py`, feast from PyPI via `scripts/feast-env.sh`);
//! - the floor: a raw `GET` of one pre-packed value per entity from Rust (redis-rs, one
//!   connection), and one pipelined round trip of 100 such `GET`s.
//!
//! Same data for all: 10,000 entities x 50 f64 features (3 history rows each for keel; Feast
//! and the floor hold the newest). keel is measured as shipped (its row cache kept right by
//! Redis' client-side caching; the 10k entities fit its default 16k entries) and with the
//! client cache off (every read a round trip). Ingest: 200,000 rows x 20 features.
//!
//! `cargo run --release -p keel-benches --bin redis_load -- [ITERATIONS]` (default 20,000).
use keel_benches::store::{definitions, load, rows};
use keel_store::redis::{LocalRedis, RedisOptions};
use keel_store::{Store, StoreOptions, Value};
use std::time::{Duration, Instant};

const ENTITIES: i64 = 10_000;
const FEATURES: usize = 50;
const HISTORY: i64 = 3;

struct Lat {
    p50: f64,
    p99: f64,
}

fn lat(mut d: Vec<Duration>) -> Lat {
    d.sort();
    let p = |q: f64| d[((d.len() as f64 * q) as usize).min(d.len() - 1)].as_secs_f64() * 1e6;
    Lat {
        p50: p(0.5),
        p99: p(0.99),
    }
}

/// Entity ids in `0..ENTITIES`, uniformly random (xorshift), the same sequence each call.
fn random_entities() -> impl FnMut() -> i64 {
    let mut x = 88_172_645_463_325_252u64;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % ENTITIES as u64) as i64
    }
}

fn feast(port: u16, iterations: usize) -> Option<serde_json::Value> {
    let python = std::env::var("KEEL_FEAST_PYTHON").ok().or_else(|| {
        let out = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scripts/feast-env.sh"
            ))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    })?;
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/feast/redis_online.py"
        ))
        .args([
            port.to_string(),
            ENTITIES.to_string(),
            FEATURES.to_string(),
            HISTORY.to_string(),
            (iterations / 10).max(500).to_string(),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("feast failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(out.stdout.trim_ascii()).ok()
}

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let redis = LocalRedis::start(&[]).expect("redis-server (scripts/bootstrap.sh installs it)");
    let connect = |prefix: &str| {
        Store::connect(
            &format!("{}?prefix={prefix}", redis.url()),
            StoreOptions::default(),
        )
        .expect("connect")
    };

    // Ingest: 200k rows x 20 features, batches of 10k rows.
    let ingest = connect("ingest");
    ingest.apply(&definitions(20)).expect("apply");
    let data = rows(0..100_000, 2, 20);
    let t = Instant::now();
    load(&ingest, &data, 10_000);
    let ingest_rate = data.len() as f64 / t.elapsed().as_secs_f64();
    drop(data);
    if std::env::var_os("KEEL_REDIS_STATS").is_some() {
        let mut c = redis::Client::open(redis.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut c)
            .unwrap();
        eprintln!(
            "ingest {ingest_rate:.0} rows/s in {:?}\n{info}",
            t.elapsed()
        );
        return;
    }

    // Reads: 10k entities x 50 features. `store` is keel as shipped (row cache kept right by
    // Redis' client-side caching); `uncached` reads the same keys with it off: every read a
    // round trip.
    let store = connect("keel");
    store.apply(&definitions(FEATURES)).expect("apply");
    load(&store, &rows(0..ENTITIES, HISTORY, FEATURES), 10_000);
    let mut no_cache = RedisOptions::default();
    no_cache.client_cache = false;
    let uncached = Store::connect_with(
        &format!("{}?prefix=keel", redis.url()),
        StoreOptions::default(),
        no_cache,
    )
    .expect("connect");
    // The floor's values: one string per entity, as long as keel's newest-row value (16-byte
    // header + the encoded row of 50 f64).
    let client = redis::Client::open(redis.url()).expect("client");
    let mut raw = client.get_connection().expect("connection");
    let packed = 16 + 4 + FEATURES * 9;
    for chunk in (0..ENTITIES).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("SET")
                .arg(format!("floor:{id}"))
                .arg(vec![(*id % 251) as u8; packed])
                .ignore();
        }
        pipe.query::<()>(&mut raw).expect("set");
    }
    let check = store
        .get_online("svc", &[vec![Value::I64(3)]])
        .expect("read");
    assert_eq!(
        check.values[0][0].value,
        Value::F64((3 * 31 + HISTORY - 1) as f64 * 0.5)
    );

    // A serving replica in steady state: its hot entities are cached (here all 10k fit the
    // default 16k entries), so the cached store reads every entity once first. Misses (cold
    // keys) cost what the uncached column shows.
    for chunk in (0..ENTITIES).collect::<Vec<_>>().chunks(500) {
        let keys: Vec<Vec<Value>> = chunk.iter().map(|&id| vec![Value::I64(id)]).collect();
        store.get_online("svc", &keys).expect("warm");
    }
    // 1 entity: keel (cached, uncached) and the floor interleaved, so all see the same machine.
    let (mut k1, mut u1, mut g1) = (Vec::new(), Vec::new(), Vec::new());
    let mut next = random_entities();
    for i in 0..iterations + iterations / 10 {
        let id = next();
        let key = [vec![Value::I64(id)]];
        let t = Instant::now();
        std::hint::black_box(store.get_online("svc", &key).expect("read"));
        let dk = t.elapsed();
        let t = Instant::now();
        std::hint::black_box(uncached.get_online("svc", &key).expect("read"));
        let du = t.elapsed();
        let t = Instant::now();
        let v: Vec<u8> = redis::cmd("GET")
            .arg(format!("floor:{id}"))
            .query(&mut raw)
            .expect("get");
        let dg = t.elapsed();
        std::hint::black_box(v);
        if i >= iterations / 10 {
            k1.push(dk);
            u1.push(du);
            g1.push(dg);
        }
    }
    // 100 entities: keel's one round trip against one pipelined round trip of 100 GETs.
    let (mut k100, mut u100, mut g100) = (Vec::new(), Vec::new(), Vec::new());
    let n100 = (iterations / 10).max(200);
    for i in 0..n100 + n100 / 10 {
        let ids: Vec<i64> = (0..100).map(|_| next()).collect();
        let keys: Vec<Vec<Value>> = ids.iter().map(|&id| vec![Value::I64(id)]).collect();
        let t = Instant::now();
        std::hint::black_box(store.get_online("svc", &keys).expect("read"));
        let dk = t.elapsed();
        let t = Instant::now();
        std::hint::black_box(uncached.get_online("svc", &keys).expect("read"));
        let du = t.elapsed();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("GET").arg(format!("floor:{id}"));
        }
        let t = Instant::now();
        let v: Vec<Vec<u8>> = pipe.query(&mut raw).expect("get");
        let dg = t.elapsed();
        std::hint::black_box(v);
        if i >= n100 / 10 {
            k100.push(dk);
            u100.push(du);
            g100.push(dg);
        }
    }
    let (k1, u1, g1) = (lat(k1), lat(u1), lat(g1));
    let (k100, u100, g100) = (lat(k100), lat(u100), lat(g100));
    let feast = feast(redis.port(), iterations);

    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut raw)
        .unwrap_or_default();
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    println!(
        "keel on Redis (redis-server {version} on loopback, no persistence), {ENTITIES} entities x {FEATURES} f64 features, random keys, {iterations} reads"
    );
    println!("| read | keel p50 / p99 (client cache, default) | keel p50 / p99 (client cache off) | raw GET floor p50 / p99 | Feast SDK p50 / p99 | keel default / floor (p99) | keel uncached / floor (p99) | Feast / keel default (p99) | Feast / keel uncached (p99) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let f = |b: &str| -> (String, f64) {
        feast
            .as_ref()
            .and_then(|j| Some((j[b]["p50_us"].as_f64()?, j[b]["p99_us"].as_f64()?)))
            .map_or(("n/a".into(), f64::NAN), |(p50, p99)| {
                (format!("{p50:.0} / {p99:.0} us"), p99)
            })
    };
    let (f1, f1p99) = f("get_1");
    let (f100, f100p99) = f("get_100");
    for (name, k, u, g, fs, fp99) in [
        ("1 x 50", &k1, &u1, &g1, &f1, f1p99),
        ("100 x 50", &k100, &u100, &g100, &f100, f100p99),
    ] {
        println!(
            "| {name} | {:.1} / {:.1} us | {:.1} / {:.1} us | {:.1} / {:.1} us | {fs} | {:.2}x | {:.2}x | {:.1}x | {:.1}x |",
            k.p50,
            k.p99,
            u.p50,
            u.p99,
            g.p50,
            g.p99,
            k.p99 / g.p99,
            u.p99 / g.p99,
            fp99 / k.p99,
            fp99 / u.p99
        );
    }
    println!(
        "ingest, 200,000 rows x 20 features, batches of 10,000: keel {ingest_rate:.0} rows/s; Feast write_to_online_store (10,000 x 50): {}",
        feast
            .as_ref()
            .and_then(|j| j["write_rows_per_s"].as_f64())
            .map_or("n/a".into(), |r| format!("{r:.0} rows/s"))
    );
    if let Some(j) = &feast {
        println!(
            "feast {}; the raw-GET floor itself is {:.1}x faster than Feast's SDK at p99 (1 x 50): a client that makes a round trip per read cannot be more",
            j["feast"],
            f1p99 / g1.p99
        );
    }
}
