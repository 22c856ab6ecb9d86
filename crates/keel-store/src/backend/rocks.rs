//! The embedded RocksDB backend (the default).

use super::{newest_from_history, Backend, Batch, Found, Lookup, RowRef};
use crate::error::Result;
use crate::key;
use keel_core::Clock;
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options,
    SliceTransform, WriteBatch, WriteOptions,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

type Db = DBWithThreadMode<MultiThreaded>;
const REGISTRY: &str = "registry";

/// How the newest rows of each view version are stored (`docs/store.md`, "Newest rows").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NewestLayout {
    /// Block-based tables (family `nw:NAME:vN`): every block carries a checksum, so damaged
    /// bytes on disk are a typed error for the read that meets them. The default.
    #[default]
    Checked,
    /// RocksDB's PlainTable files read through mmap (family `newest:NAME:vN`): a lookup goes
    /// from a hash bucket straight to the row in the mapped file, about a third faster on
    /// cold online reads. The table's own structure (lengths, index) carries no checksum, and
    /// RocksDB trusts it: a damaged file can crash the process instead of failing one read.
    /// For stores on checksumming storage, or where the family is rebuilt after a crash.
    Mapped,
}

impl NewestLayout {
    /// Name prefix of this layout's newest-row column families.
    fn prefix(self) -> &'static str {
        match self {
            NewestLayout::Checked => "nw:",
            NewestLayout::Mapped => "newest:",
        }
    }

    /// The other layout.
    fn other(self) -> NewestLayout {
        match self {
            NewestLayout::Checked => NewestLayout::Mapped,
            NewestLayout::Mapped => NewestLayout::Checked,
        }
    }

    /// The newest-row column family of a view version's column family (`fv:NAME:vN` ->
    /// `nw:NAME:vN` or `newest:NAME:vN`): key = entity prefix, value = event (8) ++
    /// created (8) ++ row, kept at the greatest (event, created) by a merge operator.
    pub(crate) fn family(self, view: &str) -> String {
        format!(
            "{}{}",
            self.prefix(),
            view.strip_prefix("fv:").unwrap_or(view)
        )
    }
}

/// Registry key prefix marking the newest rows of a history column family (named after it)
/// for a rebuild at the next writable open (a bulk load in progress).
const REBUILD_NEWEST: &str = "rebuild-newest/";

/// Merge operator of the newest-row column families: of the existing value and the operands
/// (oldest first), the one with the greatest (event, created), which is the greatest 16-byte
/// header; on a tie the later write wins, as a re-written row key does in history. Never
/// fails (a failed merge would make the key unreadable): a short, damaged value sorts lowest
/// and is reported by the read that meets it.
fn newest_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    Some(newest_of(existing, operands.iter()))
}

/// [`newest_merge`]'s choice: of `existing` and `operands` (oldest first), the value with the
/// greatest 16-byte header, the later one on a tie; empty when there is none.
pub(crate) fn newest_of<'a>(
    existing: Option<&'a [u8]>,
    operands: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut best: Option<&[u8]> = existing;
    for op in operands {
        if best.is_none_or(|b| op.get(..16) >= b.get(..16)) {
            best = Some(op);
        }
    }
    best.map(<[u8]>::to_vec).unwrap_or_default()
}

/// What opening a store had to repair. RocksDB replays its write-ahead log at open; a damaged or
/// incomplete tail (a torn write at a crash, a flipped byte) ends the replay there, and every
/// batch from that point on is dropped. keel first opens requiring an intact log, so it knows
/// when that happened, and says so here instead of answering as if nothing was lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log's tail was damaged and the batches from the damage on were dropped.
    pub wal_tail_dropped: bool,
    /// RocksDB's description of the damage (empty when nothing was dropped).
    pub detail: String,
}

/// The embedded RocksDB backend: one column family per view version (history) plus its
/// newest-row column family, one for the registry.
pub struct RocksBackend {
    /// What the open's recovery did.
    recovery: RecoveryReport,
    /// Newest-row column families are kept (see [`RocksOptions::newest_rows`]).
    newest_rows: bool,
    /// Their layout.
    layout: NewestLayout,
    db: Db,
    cache: rocksdb::Cache,
    retention: Arc<RwLock<HashMap<String, i64>>>,
    clock: Arc<dyn Clock>,
    path: std::path::PathBuf,
    /// Default read options, made once: `get_pinned_cf` would create and free a C++
    /// `ReadOptions` on every online read.
    point_reads: rocksdb::ReadOptions,
    /// History families whose newest rows a read-only open found marked for a rebuild (a
    /// checkpoint taken during a bulk load): online reads of those search history.
    stale_newest: std::collections::HashSet<String>,
}

impl std::fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBackend")
            .field("path", &self.path)
            .finish()
    }
}

/// Options of a view version's history column family (`newest: None`) or of its newest-row
/// column family in a layout.
fn family_options(
    view: &str,
    newest: Option<NewestLayout>,
    retention: &Arc<RwLock<HashMap<String, i64>>>,
    clock: &Arc<dyn Clock>,
    cache: &rocksdb::Cache,
) -> Options {
    let mut o = Options::default();
    // Keys start with the entity's 8-byte hash: a hash index over it finds the data block
    // without a binary search of the index (each search step of a large index is a cache miss).
    o.set_prefix_extractor(SliceTransform::create_fixed_prefix(8));
    let block_based = || {
        let mut t = BlockBasedOptions::default();
        t.set_bloom_filter(10.0, false);
        t.set_index_type(rocksdb::BlockBasedIndexType::HashSearch);
        t.set_block_cache(cache);
        t
    };
    if newest.is_some() {
        // While writes stream in, a whole-key bloom over the memtable lets reads of entities
        // not in it skip the skip-list search.
        o.set_memtable_prefix_bloom_ratio(0.1);
        o.set_memtable_whole_key_filtering(true);
        o.set_compression_type(rocksdb::DBCompressionType::None);
        o.set_merge_operator("keel-newest", newest_merge, newest_merge);
    }
    match newest {
        Some(NewestLayout::Checked) => {
            // Point lookups: whole-key bloom filter (the default), hash index inside data blocks,
            // uncompressed blocks.
            let mut t = block_based();
            t.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
            // Every row its own restart point: the in-block hash index then lands on the row
            // instead of on a run of up to 16 rows to decode one by one (each ~0.5 KB apart).
            t.set_block_restart_interval(1);
            // Online reads ask for entities that exist: no filter in the last level (where
            // compaction leaves almost every row), so a hit skips the filter's cache miss; a miss
            // still ends at the hash index when no block holds the entity's hash.
            o.set_optimize_filters_for_hits(true);
            o.set_block_based_table_factory(&t);
        }
        Some(NewestLayout::Mapped) => {
            // Point lookups only: RocksDB's PlainTable, read through mmap. A lookup hashes the
            // entity's 8-byte prefix to a bucket of the file's index and lands on the row's offset;
            // the value is lent straight from the mapped file. No block cache lookup, block
            // handle, data-block iterator or per-block hash index on the way (cold 1x50 reads:
            // 3.2-4.2 -> 1.9-2.7 us). The index is built when the file is written and mapped with
            // it; no bloom filter: online reads ask for entities that exist, and a miss ends at an
            // empty bucket. No checksums on the table's structure (see `NewestLayout::Mapped`).
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
        }
        None => {
            let mut t = block_based();
            // Prefix seeks: prefix blooms, and short restart intervals shorten the in-block scan
            // to the entity's newest row.
            o.set_memtable_prefix_bloom_ratio(0.1);
            t.set_whole_key_filtering(false);
            t.set_block_restart_interval(4);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_max_bytes_for_level_base(512 << 20);
            o.set_block_based_table_factory(&t);
        }
    }
    // Bulk ingest: larger memtables mean fewer, larger flushes and less write amplification
    // in level 0 (10M rows x 20 features: 429k -> about 470k rows/s here, ~530k with copy-free
    // row encoding). The newest-row family gets one operand per row too, so the same sizes and
    // level-0 triggers keep it from stalling writers first.
    o.set_write_buffer_size(128 << 20);
    o.set_max_write_buffer_number(4);
    o.set_level_zero_slowdown_writes_trigger(40);
    o.set_level_zero_stop_writes_trigger(64);
    // Retention: history older than the view's retention is dropped when compaction reaches it.
    // A factory (owned by RocksDB through a shared pointer), not a bare filter: RocksDB keeps
    // only a raw pointer to a bare filter, which would dangle once these options are dropped.
    o.set_compaction_filter_factory(RetentionFactory {
        view: view.to_string(),
        retention: Arc::clone(retention),
        clock: Arc::clone(clock),
        newest: newest.is_some(),
    });
    o
}

struct RetentionFactory {
    /// The history column family whose retention applies.
    view: String,
    retention: Arc<RwLock<HashMap<String, i64>>>,
    clock: Arc<dyn Clock>,
    /// Filtering a newest-row column family (event time in the value, not the key).
    newest: bool,
}

struct RetentionFilter {
    cutoff: Option<i64>,
    newest: bool,
}

impl rocksdb::compaction_filter::CompactionFilter for RetentionFilter {
    fn filter(&mut self, _level: u32, k: &[u8], v: &[u8]) -> rocksdb::compaction_filter::Decision {
        use rocksdb::compaction_filter::Decision;
        let Some(cutoff) = self.cutoff else {
            return Decision::Keep;
        };
        // History: the event time is the 8 bytes before the last 8 of the key (see key.rs).
        // Newest rows: the first 8 bytes of the value; when it is older than the cutoff, so
        // is every row of the entity.
        let event = if self.newest {
            (v.len() >= 16).then(|| key::ts_from(v))
        } else {
            key::event_of(k)
        };
        if event.is_some_and(|e| e < cutoff) {
            Decision::Remove
        } else {
            Decision::Keep
        }
    }
    fn name(&self) -> &std::ffi::CStr {
        c"keel-retention"
    }
}

impl rocksdb::compaction_filter_factory::CompactionFilterFactory for RetentionFactory {
    type Filter = RetentionFilter;
    fn create(
        &mut self,
        _ctx: rocksdb::compaction_filter_factory::CompactionFilterContext,
    ) -> RetentionFilter {
        let keep = self
            .retention
            .read()
            .ok()
            .and_then(|m| m.get(&self.view).copied());
        RetentionFilter {
            cutoff: keep.map(|ms| self.clock.now_ms().saturating_sub(ms)),
            newest: self.newest,
        }
    }
    fn name(&self) -> &std::ffi::CStr {
        c"keel-retention-factory"
    }
}

/// How [`RocksBackend::open_with`] opens a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RocksOptions {
    /// Block cache shared by every view, in bytes (default 256 MiB).
    pub cache_bytes: usize,
    /// Open read-only (checkpoints): reads work, writes fail.
    pub read_only: bool,
    /// Keep a newest-row column family per view version (default `true`; see
    /// `docs/store.md`). A writable open with `false` drops existing ones (online reads then
    /// search history), with `true` builds missing ones from history.
    pub newest_rows: bool,
    /// How newest rows are stored (default [`NewestLayout::Checked`]). A writable open in one
    /// layout drops the other's families and builds its own from history.
    pub newest_layout: NewestLayout,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            cache_bytes: 256 << 20,
            read_only: false,
            newest_rows: true,
            newest_layout: NewestLayout::Checked,
        }
    }
}

impl RocksBackend {
    /// Opens (creating if needed) a store at `path` with a 256 MiB block cache.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with(path, clock, &RocksOptions::default())
    }

    /// Opens a checkpoint (or any store) read-only.
    pub fn open_read_only(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let opts = RocksOptions {
            read_only: true,
            ..RocksOptions::default()
        };
        Self::open_with(path, clock, &opts)
    }

    /// Opens a store with a block cache of `cache_bytes` shared by every view, optionally
    /// read-only.
    pub fn open_with_cache(
        path: &Path,
        clock: Arc<dyn Clock>,
        cache_bytes: usize,
        read_only: bool,
    ) -> Result<Self> {
        let opts = RocksOptions {
            cache_bytes,
            read_only,
            ..RocksOptions::default()
        };
        Self::open_with(path, clock, &opts)
    }

    /// What recovery did when this store was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Whether `path` holds a keel store (a RocksDB database with keel's catalog family),
    /// without creating or changing anything; the error says what is there instead.
    pub fn check_is_store(path: &Path) -> Result<()> {
        let not = |reason| {
            Err(crate::StoreError::NotAStore {
                path: path.to_path_buf(),
                reason,
            })
        };
        if !path.is_dir() {
            return not(if path.exists() {
                "it is not a directory"
            } else {
                "it does not exist (`keel store apply` creates a store)"
            });
        }
        match Db::list_cf(&Options::default(), path) {
            Ok(families) if families.iter().any(|f| f == REGISTRY) => Ok(()),
            Ok(_) => not("it is a RocksDB database without keel's catalog"),
            Err(_) => not("it holds no RocksDB database"),
        }
    }

    /// Opens a store with options.
    pub fn open_with(path: &Path, clock: Arc<dyn Clock>, options: &RocksOptions) -> Result<Self> {
        let RocksOptions {
            cache_bytes,
            read_only,
            newest_rows,
            newest_layout: layout,
        } = *options;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Flushes and compactions run beside writers instead of queueing behind each other.
        opts.set_max_background_jobs(4);
        let retention = Arc::new(RwLock::new(HashMap::new()));
        // HyperClockCache: lock-free lookups (the LRU cache's sharded mutex and hash chains
        // showed up in cold online reads); 0 = entry size estimated automatically.
        let cache = rocksdb::Cache::new_hyper_clock_cache(cache_bytes, 0);
        let existing = Db::list_cf(&opts, path).unwrap_or_default();
        // PlainTable files are read through mmap: on when that layout is chosen or a family in
        // it is still there (to be dropped).
        let mapped = NewestLayout::Mapped;
        opts.set_allow_mmap_reads(
            layout == mapped || existing.iter().any(|n| n.starts_with(mapped.prefix())),
        );
        // Every family to open: (family, view, newest-row layout or None for history).
        let mut plan: Vec<(String, String, Option<NewestLayout>)> = Vec::new();
        let mut unindexed = Vec::new();
        // Newest-row families in the other layout: a writable open must name every family, so
        // they are opened and dropped below; a read-only open leaves them closed.
        let mut other_layout = Vec::new();
        for name in existing.iter().filter(|n| n.starts_with("fv:")) {
            plan.push((name.clone(), name.clone(), None));
            let nw = layout.family(name);
            if existing.contains(&nw) {
                plan.push((nw, name.clone(), Some(layout)));
            } else {
                unindexed.push(name.clone());
            }
            let other = layout.other().family(name);
            if existing.contains(&other) && !read_only {
                plan.push((other.clone(), name.clone(), Some(layout.other())));
                other_layout.push(other);
            }
        }
        let descriptors = || {
            let mut cfs = vec![ColumnFamilyDescriptor::new(REGISTRY, Options::default())];
            cfs.extend(plan.iter().map(|(family, view, l)| {
                ColumnFamilyDescriptor::new(
                    family,
                    family_options(view, *l, &retention, &clock, &cache),
                )
            }));
            cfs
        };
        let (db, recovery) = if read_only {
            let db = Db::open_cf_descriptors_read_only(&opts, path, descriptors(), false)?;
            (db, RecoveryReport::default())
        } else {
            // First with every WAL record required intact: an open that would silently drop a
            // damaged tail (RocksDB's default, point-in-time recovery) fails here instead, and
            // the point-in-time open that follows reports what it did.
            let mut strict = opts.clone();
            strict.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
            match Db::open_cf_descriptors(&strict, path, descriptors()) {
                Ok(db) => (db, RecoveryReport::default()),
                Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                    let db = Db::open_cf_descriptors(&opts, path, descriptors())?;
                    let report = RecoveryReport {
                        wal_tail_dropped: true,
                        detail: e.into_string(),
                    };
                    (db, report)
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut backend = RocksBackend {
            recovery,
            newest_rows,
            layout,
            db,
            cache,
            retention,
            clock,
            path: path.to_path_buf(),
            point_reads: rocksdb::ReadOptions::default(),
            stale_newest: Default::default(),
        };
        // Retention values live in the registry's view definitions.
        for (_, bytes) in backend.registry_scan("view/")? {
            if let Ok(v) = keel_core::envelope::decode::<crate::FeatureView>(&bytes) {
                if let (Some(ms), Ok(mut m)) = (v.retention_ms, backend.retention.write()) {
                    m.insert(v.cf_name(), ms);
                }
            }
        }
        for name in &other_layout {
            backend.db.drop_cf(name)?;
        }
        // Bulk loads cut short between history and newest rows: a writable open rebuilds
        // those; a read-only one (a checkpoint taken during a bulk load) answers their online
        // reads from history, as their newest rows may lag it.
        for (marker, _) in backend.registry_scan(REBUILD_NEWEST)? {
            let view = &marker[REBUILD_NEWEST.len()..];
            if read_only {
                backend.stale_newest.insert(view.to_string());
                continue;
            }
            if backend.db.cf_handle(&layout.family(view)).is_some() {
                backend.db.drop_cf(&layout.family(view))?;
                if newest_rows {
                    backend.build_newest(view)?;
                }
            }
            backend
                .db
                .delete_cf(&backend.cf(REGISTRY)?, marker.as_bytes())?;
        }
        // Stores written before newest-row column families existed get them built once from
        // history (a read-only open keeps answering online reads from history instead).
        if !read_only && newest_rows {
            for view in &unindexed {
                backend.build_newest(view)?;
            }
        }
        if !read_only && !newest_rows {
            // Writes will not maintain them: drop them rather than let them go stale.
            for view in existing.iter().filter(|n| n.starts_with("fv:")) {
                let nw = layout.family(view);
                if backend.db.cf_handle(&nw).is_some() {
                    backend.db.drop_cf(&nw)?;
                }
            }
        }
        Ok(backend)
    }

    /// Creates the newest-row column family of `view` and fills it from history: the first
    /// key of each entity (history runs newest first) is its newest row.
    fn build_newest(&self, view: &str) -> Result<()> {
        let nw = self.layout.family(view);
        self.db.create_cf(&nw, &self.options(view, true))?;
        let (src, dst) = (self.cf(view)?, self.cf(&nw)?);
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_total_order_seek(true);
        let mut it = self.db.raw_iterator_cf_opt(&src, ro);
        it.seek_to_first();
        let mut wb = WriteBatch::default();
        let mut firsts = FirstOfEntity::default();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if let Some((entity, value)) = firsts.push(k, v) {
                wb.put_cf(&dst, entity, value);
                if wb.len() >= 10_000 {
                    self.db.write(std::mem::take(&mut wb))?;
                }
            }
            it.next();
        }
        it.status()?;
        Ok(self.db.write(wb)?)
    }

    /// [`family_options`] of view `view` with this store's retention, clock and cache.
    fn options(&self, view: &str, newest: bool) -> Options {
        let layout = newest.then_some(self.layout);
        family_options(view, layout, &self.retention, &self.clock, &self.cache)
    }

    fn cf(&self, name: &str) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| crate::StoreError::Unknown {
                kind: "storage",
                name: name.into(),
            })
    }

    /// Writes a RocksDB checkpoint (hard links where possible) to `dir`.
    pub fn checkpoint(&self, dir: &Path) -> Result<u64> {
        self.db.flush_wal(true)?;
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        cp.create_checkpoint(dir)?;
        Ok(self.db.latest_sequence_number())
    }

    /// Bulk-loads sorted `(row key, row)` pairs into a view: the history appears at once
    /// through an SST file, then one write batch of newest-row merge operands (one per
    /// entity, so an entity's newer existing row still wins). Keys must be sorted and unique.
    /// (The newest rows are not ingested as a file: PlainTable files do not carry the
    /// sequence number RocksDB assigns an ingested file, so a tie with a stored row could
    /// resolve differently from history.)
    pub fn ingest_sorted(
        &self,
        view: &str,
        pairs: &[(Vec<u8>, Vec<u8>)],
        tmp: &Path,
    ) -> Result<()> {
        let Some(nw) = self.db.cf_handle(&self.layout.family(view)) else {
            return self.ingest_history(view, pairs, tmp);
        };
        // The two steps are not one write: a synced marker first, deleted in the newest-row
        // batch, makes the next writable open rebuild this view's newest rows if the process
        // dies between them.
        let marker = format!("{REBUILD_NEWEST}{view}");
        let reg = self.cf(REGISTRY)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(&reg, marker.as_bytes(), b"", &wo)?;
        self.ingest_history(view, pairs, tmp)?;
        let mut wb = WriteBatch::default();
        let mut firsts = FirstOfEntity::default();
        for (k, v) in pairs {
            if let Some((entity, value)) = firsts.push(k, v) {
                wb.merge_cf(&nw, entity, value);
            }
        }
        wb.delete_cf(&reg, marker.as_bytes());
        Ok(self.db.write(wb)?)
    }

    /// Writes sorted `pairs` to an SST file and ingests it into history column family `view`.
    fn ingest_history(&self, view: &str, pairs: &[(Vec<u8>, Vec<u8>)], tmp: &Path) -> Result<()> {
        let file = tmp.join(format!("keel-bulk-{}.sst", std::process::id()));
        let handle = self.cf(view)?;
        let opts = self.options(view, false);
        let mut w = rocksdb::SstFileWriter::create(&opts);
        w.open(&file)?;
        let written = pairs
            .iter()
            .try_for_each(|(k, v)| w.put(k, v))
            .and_then(|()| w.finish());
        let r = written.and_then(|()| self.db.ingest_external_file_cf(&handle, vec![&file]));
        let _ = std::fs::remove_file(&file);
        Ok(r?)
    }

    /// Calls `f` on every key/value of column family `cf` starting with `prefix`, in order.
    fn scan_prefix(&self, cf: &str, prefix: &[u8], mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        let cf = self.cf(cf)?;
        let mut it = self.db.raw_iterator_cf(&cf);
        it.seek(prefix);
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !k.starts_with(prefix) {
                break;
            }
            f(k, v);
            it.next();
        }
        Ok(it.status()?)
    }

    /// Runs a full compaction of a view and its newest rows (applies retention now).
    pub fn compact_view(&self, view: &str) -> Result<()> {
        let cf = self.cf(view)?;
        self.db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
        if let Some(nw) = self.db.cf_handle(&self.layout.family(view)) {
            // The first pass folds merge operands into values (the retention filter sees
            // values only), the second filters them.
            for _ in 0..2 {
                self.db.compact_range_cf(&nw, None::<&[u8]>, None::<&[u8]>);
            }
        }
        Ok(())
    }
}

/// Newest-row entries of history rows read in key order: within an entity, keys run newest
/// first, so an entity's first row is its newest.
#[derive(Default)]
struct FirstOfEntity {
    last: Vec<u8>,
    value: Vec<u8>,
}

impl FirstOfEntity {
    /// `(entity, newest-row value)` when row key `k` (with row `row`) is its entity's first.
    fn push<'k>(&mut self, k: &'k [u8], row: &[u8]) -> Option<(&'k [u8], &[u8])> {
        let (entity, event, created) = key::split_row_key(k)?;
        if entity == self.last.as_slice() {
            return None;
        }
        self.last.clear();
        self.last.extend_from_slice(entity);
        newest_value(&mut self.value, event, created, row);
        Some((entity, &self.value))
    }
}

/// `value = event ++ created ++ row` of a newest-row column family.
fn newest_value(out: &mut Vec<u8>, event: i64, created: i64, row: &[u8]) {
    out.clear();
    out.extend_from_slice(&key::ts_bytes(event));
    out.extend_from_slice(&key::ts_bytes(created));
    out.extend_from_slice(row);
}

impl Backend for RocksBackend {
    fn registry_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let cf = self.cf(REGISTRY)?;
        Ok(self.db.get_cf(&cf, key.as_bytes())?)
    }

    fn registry_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        self.scan_prefix(REGISTRY, prefix.as_bytes(), |k, v| {
            out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
        })?;
        Ok(out)
    }

    fn ensure_view(&self, name: &str, retention_ms: Option<i64>) -> Result<()> {
        if let (Some(ms), Ok(mut m)) = (retention_ms, self.retention.write()) {
            m.insert(name.to_string(), ms);
        }
        if self.db.cf_handle(name).is_none() {
            self.db.create_cf(name, &self.options(name, false))?;
        }
        if self.newest_rows && self.db.cf_handle(&self.layout.family(name)).is_none() {
            self.build_newest(name)?;
        }
        Ok(())
    }

    fn commit(&self, batch: &Batch, sync: bool) -> Result<()> {
        // Sized up front (growing a batch of megabytes copies it at every doubling): room for
        // every row twice (history, and a newest-row operand when each row is its own entity)
        // with RocksDB's record header.
        let rows: usize = batch
            .puts
            .iter()
            .map(|(_, k, v)| 2 * (k.len() + v.len() + 32))
            .sum();
        let rest: usize = batch
            .registry
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .chain(
                batch
                    .delete_ranges
                    .iter()
                    .map(|(_, f, t)| 2 * (f.len() + t.len())),
            )
            .sum();
        let mut wb = WriteBatch::with_capacity_bytes(rows + rest + 64 * batch.registry.len() + 64);
        let reg = self.cf(REGISTRY)?;
        for (k, v) in &batch.registry {
            wb.put_cf(&reg, k.as_bytes(), v);
        }
        // (history, newest rows) per view.
        type Handles<'a> = (
            Arc<rocksdb::BoundColumnFamily<'a>>,
            Option<Arc<rocksdb::BoundColumnFamily<'a>>>,
        );
        let mut handles: HashMap<&str, Handles<'_>> = HashMap::new();
        for (view, _, _) in batch.puts.iter().chain(&batch.delete_ranges) {
            if !handles.contains_key(view.as_str()) {
                let nw = self.db.cf_handle(&self.layout.family(view));
                handles.insert(view, (self.cf(view)?, nw));
            }
        }
        for (view, from, to) in &batch.delete_ranges {
            let (cf, nw) = &handles[view.as_str()];
            wb.delete_range_cf(cf, from, to);
            if let Some(nw) = nw {
                // PlainTable has no range deletes. Newest-row keys are whole entity prefixes,
                // which are self-delimiting: the only one in `from..to` is `from` itself.
                wb.delete_cf(nw, from);
            }
        }
        // One merge operand per run of rows of the same entity: the run's greatest (event,
        // created), later on ties.
        let mut value = Vec::new();
        // (newest-row family, entity, greatest (event, created) so far, its row).
        type Run<'a, 'b> = (
            &'b Option<Arc<rocksdb::BoundColumnFamily<'a>>>,
            &'b [u8],
            (i64, i64),
            &'b [u8],
        );
        let mut flush = |run: Option<Run<'_, '_>>, wb: &mut WriteBatch| {
            if let Some((Some(nw), entity, (event, created), row)) = run {
                newest_value(&mut value, event, created, row);
                wb.merge_cf(nw, entity, &value);
            }
        };
        let mut run: Option<Run<'_, '_>> = None;
        // Rows in key order (stable: a key written twice keeps its last value): the memtable's
        // skip list then inserts each key next to the previous one instead of searching from
        // the top, and each entity's rows form one run (one newest-row operand).
        // (An already sorted batch costs one pass: the stable sort finds the single run.)
        let mut puts: Vec<_> = batch.puts.iter().collect();
        puts.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        // Rows of a view are consecutive: its handles are looked up once per view, not hashed
        // per row.
        let mut current: Option<(&str, &Handles<'_>)> = None;
        for (view, k, v) in puts {
            let (cf, nw) = match current {
                Some((name, h)) if name == view.as_str() => h,
                _ => current.insert((view, &handles[view.as_str()])).1,
            };
            wb.put_cf(cf, k, v);
            let Some((entity, event, created)) = key::split_row_key(k) else {
                continue;
            };
            let times = (event, created);
            match &mut run {
                Some((rn, re, best, row)) if std::ptr::eq(*rn, nw) && *re == entity => {
                    if times >= *best {
                        (*best, *row) = (times, v);
                    }
                }
                _ => flush(run.replace((nw, entity, times, v)), &mut wb),
            }
        }
        flush(run, &mut wb);
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        Ok(self.db.write_opt(wb, &wo)?)
    }

    fn latest_each(
        &self,
        view: &str,
        lookups: &[Lookup<'_>],
        found: &mut dyn FnMut(usize, Option<RowRef<'_>>) -> Result<()>,
    ) -> Result<()> {
        // One iterator for every lookup: creating one costs about as much as a seek.
        let cf = self.cf(view)?;
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        let mut it = self.db.raw_iterator_cf_opt(&cf, ro);
        let mut seek_key = Vec::with_capacity(64);
        for (i, l) in lookups.iter().enumerate() {
            // Keys run newest first: the first key at or after (T, +inf) is the latest row at
            // or before T; step forward past rows created after the cutoff.
            seek_key.clear();
            key::push_row_key(&mut seek_key, l.prefix, l.event_bound, i64::MAX);
            it.seek(&seek_key);
            let mut hit = None;
            while it.valid() {
                let Some(k) = it.key() else { break };
                if !k.starts_with(l.prefix) {
                    break;
                }
                let Some((event, created)) = key::split_times(k, l.prefix.len()) else {
                    break; // not a row key of this entity
                };
                if l.created_cutoff.is_none_or(|c| created <= c) {
                    hit = Some((event, created));
                    break;
                }
                it.next();
            }
            it.status()?;
            let row = hit.map(|(event, created)| RowRef {
                event,
                created,
                value: it.value().unwrap_or_default(),
            });
            found(i, row)?;
        }
        Ok(())
    }

    fn newest_each(
        &self,
        view: &str,
        prefixes: &[&[u8]],
        found: &mut dyn FnMut(usize, Option<RowRef<'_>>) -> Result<()>,
    ) -> Result<()> {
        let nw = self.db.cf_handle(&self.layout.family(view));
        let Some(nw) = nw.filter(|_| !self.stale_newest.contains(view)) else {
            // Newest rows off, a read-only store written before they existed, or a checkpoint
            // taken during a bulk load.
            return newest_from_history(self, view, prefixes, found);
        };
        // One key: a plain point lookup (MultiGet's batching machinery costs more than it
        // saves for a single key).
        let got = if let [one] = prefixes {
            vec![self.db.get_pinned_cf_opt(&nw, one, &self.point_reads)]
        } else {
            let sorted = prefixes.windows(2).all(|w| w[0] <= w[1]);
            let keys = prefixes.iter().copied();
            self.db
                .batched_multi_get_cf_opt(&nw, keys, sorted, &self.point_reads)
        };
        for (i, r) in got.iter().enumerate() {
            let hit = match r.as_ref().map_err(Clone::clone)? {
                None => None,
                Some(v) if v.len() >= 16 => Some(RowRef {
                    event: key::ts_from(&v[..8]),
                    created: key::ts_from(&v[8..16]),
                    value: &v[16..],
                }),
                Some(_) => {
                    return Err(crate::StoreError::Corrupt {
                        view: view.to_string(),
                        source: keel_core::EnvelopeError::Corrupt("newest-row header".into()),
                    })
                }
            };
            found(i, hit)?;
        }
        Ok(())
    }

    fn history(&self, view: &str, prefix: &[u8]) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        self.scan_prefix(view, prefix, |k, v| {
            if let Some((event, created)) = key::split_times(k, prefix.len()) {
                out.push(Found {
                    event,
                    created,
                    value: v.to_vec(),
                });
            }
        })?;
        out.reverse(); // stored newest first
        Ok(out)
    }

    fn compact(&self, view: &str) -> Result<()> {
        self.compact_view(view)
    }

    fn entities(&self, view: &str) -> Result<Vec<Vec<u8>>> {
        let cf = self.cf(view)?;
        // Across prefixes: the prefix extractor must not bound the iteration.
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_total_order_seek(true);
        let mut it = self.db.raw_iterator_cf_opt(&cf, opts);
        it.seek_to_first();
        let mut out: Vec<Vec<u8>> = Vec::new();
        while it.valid() {
            let Some(k) = it.key() else {
                break;
            };
            if k.len() < 24 {
                it.next();
                continue;
            }
            let prefix = k[..k.len() - 16].to_vec();
            // Skip the entity's other rows in one seek.
            it.seek(key::prefix_end(&prefix));
            out.push(prefix);
        }
        it.status()?;
        Ok(out)
    }
}
