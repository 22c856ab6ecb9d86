//! Shared fixtures for the store tests.
#![allow(dead_code)]

use keel_core::{DType, Field, ManualClock};
use keel_store::{
    Definitions, Entity, FeatureRef, FeatureService, FeatureView, NewestLayout, Store, StoreOptions,
};
use std::sync::Arc;

pub const DAY: i64 = 86_400_000;

pub fn defs() -> Definitions {
    Definitions {
        entities: vec![
            Entity {
                name: "card".into(),
                join_keys: vec![Field::required("card_id", DType::String)],
            },
            Entity {
                name: "merchant".into(),
                join_keys: vec![Field::required("merchant_id", DType::I64)],
            },
        ],
        views: vec![
            FeatureView {
                name: "card_stats".into(),
                version: 1,
                entities: vec!["card".into()],
                features: vec![
                    Field::new("spend_24h", DType::F64),
                    Field::new("txn_count", DType::I64),
                    Field::required("country", DType::Categorical),
                ],
                ttl_ms: Some(DAY),
                retention_ms: None,
                owner: "risk".into(),
                description: "rolling card aggregates".into(),
                tags: Default::default(),
            },
            FeatureView {
                name: "merchant_risk".into(),
                version: 1,
                entities: vec!["merchant".into()],
                features: vec![
                    Field::new("chargeback_rate", DType::F64),
                    Field::new("flagged", DType::Bool),
                ],
                ttl_ms: None,
                retention_ms: Some(30 * DAY),
                owner: "risk".into(),
                description: String::new(),
                tags: Default::default(),
            },
        ],
        services: vec![FeatureService {
            name: "fraud".into(),
            features: [
                "card_stats@1:spend_24h",
                "card_stats@1:country",
                "card_stats@1:txn_count",
            ]
            .iter()
            .map(|s| FeatureRef::parse(s).unwrap())
            .collect(),
        }],
    }
}

pub fn open(dir: &std::path::Path, now: i64) -> (Store, Arc<ManualClock>) {
    open_cached(dir, now, StoreOptions::default().row_cache_entries)
}

/// [`open`] with a row cache of `row_cache_entries` (0: every online read goes to storage).
pub fn open_cached(
    dir: &std::path::Path,
    now: i64,
    row_cache_entries: usize,
) -> (Store, Arc<ManualClock>) {
    open_layout(dir, now, row_cache_entries, NewestLayout::default())
}

/// [`open_cached`] with newest rows stored in `newest_layout`.
pub fn open_layout(
    dir: &std::path::Path,
    now: i64,
    row_cache_entries: usize,
    newest_layout: NewestLayout,
) -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now));
    let store = Store::open_with(
        dir,
        StoreOptions {
            clock: clock.clone(),
            durability: keel_store::Durability::Buffered,
            row_cache_entries,
            newest_layout,
            ..Default::default()
        },
    )
    .unwrap();
    (store, clock)
}

/// Opens a store (or checkpoint) read-only at `now`, without a row cache: every online read
/// goes to storage.
pub fn open_read_only(dir: &std::path::Path, now: i64) -> Store {
    Store::open_read_only(
        dir,
        StoreOptions {
            clock: Arc::new(ManualClock::new(now)),
            row_cache_entries: 0,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Opens a store's RocksDB directly (every column family, writable), as a tool outside keel
/// would: newest-row families (`newest:`) with their table format (PlainTable, read through
/// mmap), the others with default options. Nothing keel-specific runs on these handles: no
/// merge operator or compaction filter, so callers only read, drop or add families.
pub fn open_raw(dir: &std::path::Path) -> (rocksdb::DB, Vec<String>) {
    let mut opts = rocksdb::Options::default();
    opts.set_allow_mmap_reads(true);
    let cfs = rocksdb::DB::list_cf(&opts, dir).unwrap();
    let descriptors = cfs.iter().map(|name| {
        let o = if name.starts_with("newest:") {
            plain_table_options()
        } else {
            rocksdb::Options::default()
        };
        rocksdb::ColumnFamilyDescriptor::new(name, o)
    });
    let db = rocksdb::DB::open_cf_descriptors(&opts, dir, descriptors).unwrap();
    (db, cfs)
}

/// Column family options that read and write PlainTable files as keel's mapped newest-row
/// families do (no merge operator).
pub fn plain_table_options() -> rocksdb::Options {
    let mut o = rocksdb::Options::default();
    o.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(8));
    o.set_plain_table_factory(&rocksdb::PlainTableFactoryOptions {
        user_key_length: 0,
        bloom_bits_per_key: 0,
        hash_table_ratio: 0.75,
        index_sparseness: 16,
        huge_page_tlb_size: 0,
        encoding_type: rocksdb::KeyEncodingType::Plain,
        full_scan_mode: false,
        store_index_in_file: true,
    });
    o
}

/// The backends every semantic test runs on: one test body, parametrised by backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Embedded RocksDB in a temporary directory.
    Rocks,
    /// A `redis-server` started for the test on a free loopback port.
    Redis,
}

/// Where one test's store lives; opening it twice opens the same store.
pub enum Place {
    Rocks(tempfile::TempDir),
    Redis(keel_store::redis::LocalRedis),
}

impl Place {
    pub fn new(kind: Kind) -> Place {
        match kind {
            Kind::Rocks => Place::Rocks(tempfile::tempdir().unwrap()),
            Kind::Redis => {
                Place::Redis(keel_store::redis::LocalRedis::start(&[]).expect(
                    "redis-server (Debian package redis-server; scripts/test.sh installs it)",
                ))
            }
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Place::Rocks(_) => Kind::Rocks,
            Place::Redis(_) => Kind::Redis,
        }
    }

    /// Opens the store at `now` with the default row cache (Redis: none, it is shared).
    pub fn open(&self, now: i64) -> (Store, Arc<ManualClock>) {
        self.open_cached(now, StoreOptions::default().row_cache_entries)
    }

    /// [`Place::open`] with a row cache of `row_cache_entries`.
    pub fn open_cached(&self, now: i64, row_cache_entries: usize) -> (Store, Arc<ManualClock>) {
        match self {
            Place::Rocks(dir) => open_cached(dir.path(), now, row_cache_entries),
            Place::Redis(r) => {
                let clock = Arc::new(ManualClock::new(now));
                let store = Store::connect(
                    &r.url(),
                    StoreOptions {
                        clock: clock.clone(),
                        row_cache_entries,
                        ..Default::default()
                    },
                )
                .unwrap();
                (store, clock)
            }
        }
    }
}

/// Runs `test` on each backend in turn, each with a new, empty store.
pub fn on_each_backend(test: impl Fn(&Place)) {
    for kind in [Kind::Rocks, Kind::Redis] {
        let place = Place::new(kind);
        test(&place);
    }
}
