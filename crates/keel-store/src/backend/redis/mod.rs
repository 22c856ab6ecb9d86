//! The shared online store: a [`Backend`] on Redis, Valkey or a Redis Cluster (feature
//! `redis`), so every replica of a service reads the features a stream or batch job writes.
//!
//! The client: [redis-rs](https://docs.rs/redis) parses the URLs (auth, database) and serves
//! the test helpers; the requests themselves go over keel's own connections (`conn.rs`, in an
//! `r2d2` pool per server). redis-rs (and fred, async-only) parse every reply into its own
//! allocations; the online read is the hot path, so replies are read into one buffer and rows
//! decoded where they landed (keel's 100-entity read: 485-616 -> 413-441 us p50 when this
//! replaced redis-rs' pipelines). Cluster routing (slot map, per-shard pipelines sent in
//! parallel, `MOVED` refreshes) is done here too, so one code path serves a single server (one
//! node owning every slot) and a cluster.
//!
//! Layout, key by key, in `docs/store.md` ("Redis layout"). In short, with prefix `P` and
//! `T` the hex of an entity's 8-byte hash (a hash tag: an entity's keys in every view live on
//! one shard):
//!
//! - `P:{T}:h:VIEW:ENTITY`: the entity's history in one sorted set, every score 0, members
//!   `desc(event) ++ desc(created) ++ row`, so the newest row is the first member (an online
//!   read is one `ZRANGE key 0 0`) and "the newest at or before T" one range lookup;
//! - `P:{reg}:defs` (hash) and `P:{reg}:gen` (counter): definitions and watermarks, and a
//!   generation bumped by every `apply` so other processes reload their catalog.

mod conn;
mod local;
mod messages;
mod resp;
mod scripts;
mod topology;
mod tracking;

pub use local::{LocalRedis, LocalRedisCluster};

use super::{Backend, Batch, Found, Lookup, ManyFound, NewestRead, RowRef};
use crate::error::{Result, StoreError};
use crate::key;
use conn::{Reply, Response};
use keel_core::Clock;
use resp::Packed;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use topology::{Node, Pick, Topology};

#[doc(hidden)]
pub use conn::fuzz_replies;

/// How [`RedisBackend::connect`] talks to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key keel writes (default `keel`; `[A-Za-z0-9_.-]`, at most 64
    /// characters). Stores with different prefixes share a server without seeing each other.
    pub prefix: String,
    /// Connections kept per server (default 16). A caller waits at most `connect_timeout`
    /// for one when all are busy.
    pub pool_size: u32,
    /// Time to open a connection, or to wait for a pooled one (default 2 s).
    pub connect_timeout: Duration,
    /// Time allowed for each reply (default 2 s): a server that stops answering fails the
    /// call with a typed error instead of hanging it.
    pub io_timeout: Duration,
    /// Rows per `ZADD` (default 1,000): an entity with more rows in one batch is written in
    /// several commands of the same transaction.
    pub rows_per_call: usize,
    /// Keep the store's row cache on this shared store, kept right by Redis' server-assisted
    /// client-side caching (`CLIENT TRACKING`; default `true`): one listener connection per
    /// server hears which entities other processes change. Hot entities are then answered
    /// without a round trip; see `docs/store.md` for what it guarantees.
    pub client_cache: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "keel".into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            rows_per_call: 1000,
            client_cache: true,
        }
    }
}

/// Where a store lives, parsed from a URL: `redis://HOST:PORT[/DB]` (one server),
/// `redis+cluster://HOST:PORT,HOST:PORT,...` (a cluster, seeded by any of its masters), each
/// optionally ending in `?prefix=NAME` (see [`RedisOptions::prefix`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// The server URLs given (`redis://...`), one for a single server.
    pub seeds: Vec<String>,
    /// Whether the seeds are cluster nodes.
    pub cluster: bool,
    /// The key prefix from `?prefix=`, when given.
    pub prefix: Option<String>,
}

impl RedisUrl {
    /// Parses a store URL; anything else is a typed [`StoreError::Definition`].
    pub fn parse(url: &str) -> Result<RedisUrl> {
        let bad = |why: &str| StoreError::Definition(format!("store URL `{url:.200}`: {why}"));
        let (body, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let mut prefix = None;
        if let Some(q) = query {
            for pair in q.split('&') {
                match pair.split_once('=') {
                    Some(("prefix", p)) => prefix = Some(p.to_string()),
                    _ => return Err(bad("the only query parameter is prefix=NAME")),
                }
            }
        }
        let (cluster, rest) = if let Some(r) = body.strip_prefix("redis+cluster://") {
            (true, r)
        } else if let Some(r) = body.strip_prefix("redis://") {
            (false, r)
        } else {
            return Err(bad(
                "expected redis://HOST:PORT or redis+cluster://HOST:PORT,...",
            ));
        };
        let seeds: Vec<String> = rest
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| format!("redis://{s}"))
            .collect();
        if seeds.is_empty() || (!cluster && seeds.len() > 1) {
            return Err(bad(
                "one HOST:PORT for redis://, one or more for redis+cluster://",
            ));
        }
        if seeds.len() > 64 {
            return Err(bad("at most 64 seed nodes"));
        }
        Ok(RedisUrl {
            seeds,
            cluster,
            prefix,
        })
    }
}

/// A [`Backend`] on Redis / Valkey (one server) or a Redis Cluster. `Send + Sync`; calls
/// from many threads share a connection pool per server.
pub struct RedisBackend {
    topology: Topology,
    prefix: String,
    clock: Arc<dyn Clock>,
    opts: RedisOptions,
    /// View storage name -> history retention (ms), from the definitions in Redis.
    retention: RwLock<HashMap<String, Option<i64>>>,
    /// SHA-1 of [`scripts::LATEST`] (loaded on demand).
    latest_sha: String,
    /// The subscriber of the store's message channel, started by the first `subscribe`.
    messages: std::sync::Mutex<Option<Arc<messages::Messages>>>,
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        if let Ok(Some(m)) = self.messages.get_mut().map(|m| m.take()) {
            m.stop();
        }
    }
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("topology", &self.topology)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn protocol(what: &str) -> StoreError {
    StoreError::backend("redis", format!("unexpected reply: {what}"))
}

/// A reply's error, or a protocol error naming what was expected.
fn unexpected(r: &Reply<'_>, what: &str) -> StoreError {
    r.first_error().unwrap_or_else(|| protocol(what))
}

impl RedisBackend {
    /// Connects to the store at `url` (see [`RedisUrl`]); the URL's `?prefix=` overrides
    /// `opts.prefix`. Fails with a typed error when no server answers within the timeouts.
    pub fn connect(url: &str, clock: Arc<dyn Clock>, mut opts: RedisOptions) -> Result<Self> {
        let parsed = RedisUrl::parse(url)?;
        if let Some(p) = parsed.prefix {
            opts.prefix = p;
        }
        let ok = !opts.prefix.is_empty()
            && opts.prefix.len() <= 64
            && opts
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(StoreError::Definition(format!(
                "Redis key prefix `{:.80}` must be 1..=64 characters of [A-Za-z0-9_.-]",
                opts.prefix
            )));
        }
        if opts.pool_size == 0 || opts.rows_per_call == 0 {
            return Err(StoreError::Definition(
                "Redis pool_size and rows_per_call must be at least 1".into(),
            ));
        }
        let topology = Topology::connect(&parsed.seeds, parsed.cluster, &opts)?;
        Ok(RedisBackend {
            topology,
            prefix: opts.prefix.clone(),
            clock,
            opts,
            retention: RwLock::default(),
            latest_sha: sha1(scripts::LATEST),
            messages: std::sync::Mutex::new(None),
        })
    }

    /// Whether this backend talks to a cluster.
    pub fn is_cluster(&self) -> bool {
        self.topology.is_cluster()
    }

    /// Key `P:{T}:h:VIEW:ENTITY` of entity prefix `prefix` (hash ++ entity bytes): the
    /// entity's history in view `view` ([`parse_entity_key`] reads it back).
    fn entity_key(&self, view: &str, prefix: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + view.len() + prefix.len() + 24);
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(b":{");
        let hash = &prefix[..prefix.len().min(8)];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in hash {
            k.push(HEX[usize::from(b >> 4)]);
            k.push(HEX[usize::from(b & 15)]);
        }
        k.extend_from_slice(b"}:h:");
        k.extend_from_slice(view.as_bytes());
        k.push(b':');
        k.extend_from_slice(&prefix[prefix.len().min(8)..]);
        k
    }

    fn registry_key(&self, what: &str) -> String {
        format!("{}:{{reg}}:{what}", self.prefix)
    }

    /// The retention cutoff member of `view` now (`""`: keep everything): members at or after
    /// it in lexicographic order are rows with `event < now - retention`.
    fn cutoff_member(&self, view: &str) -> Result<Vec<u8>> {
        let known = self
            .retention
            .read()
            .ok()
            .and_then(|m| m.get(view).copied());
        let retention = match known {
            Some(r) => r,
            None => self.load_retention(view)?,
        };
        Ok(match retention {
            Some(ms) => {
                let cutoff = self.clock.now_ms().saturating_sub(ms);
                if cutoff <= 0 {
                    Vec::new()
                } else {
                    let mut m = key::desc_ts_bytes(cutoff - 1).to_vec();
                    m.extend_from_slice(&[0; 8]);
                    m
                }
            }
            None => Vec::new(),
        })
    }

    /// Reads every view definition's retention from Redis (a view defined by another process).
    fn load_retention(&self, view: &str) -> Result<Option<i64>> {
        let mut found = None;
        let mut all = HashMap::new();
        for (_, bytes) in self.registry_scan("view/")? {
            if let Ok(v) = keel_core::envelope::decode::<crate::FeatureView>(&bytes) {
                if v.cf_name() == view {
                    found = v.retention_ms;
                }
                all.insert(v.cf_name(), v.retention_ms);
            }
        }
        if let Ok(mut m) = self.retention.write() {
            m.extend(all);
        }
        Ok(found)
    }

    /// Sends a pipeline of reads to `node`; on one server they run as one transaction, so a
    /// read of many entities sees a batch written by another client wholly or not at all (on
    /// a cluster each entity is read by one command, atomic per entity).
    fn read(&self, node: &Node, pipe: &Packed) -> Result<(Response, Pick)> {
        if self.topology.is_cluster() || pipe.count == 1 {
            return Ok((node.query(pipe)?, Pick::All));
        }
        let mut txn = Packed::default();
        txn.cmd(&[b"MULTI"]);
        txn.append(pipe);
        txn.cmd(&[b"EXEC"]);
        Ok((node.query(&txn)?, Pick::Exec))
    }

    /// Runs a pipeline of `EVALSHA` calls on `node` as [`Self::read`] does; a server that lost
    /// its scripts (restarted) gets them loaded again and the calls are retried once.
    fn eval_pipeline(
        &self,
        node: &Node,
        pipe: &Packed,
        scripts: &[&str],
    ) -> Result<(Response, Pick)> {
        let (resp, pick) = self.read(node, pipe)?;
        if !resp.has_error(b"NOSCRIPT") {
            return Ok((resp, pick));
        }
        let mut load = Packed::default();
        for s in scripts {
            load.cmd(&[b"SCRIPT", b"LOAD", s.as_bytes()]);
        }
        if let Some(e) = node.query(&load)?.first_error() {
            return Err(e);
        }
        self.read(node, pipe)
    }

    /// Every history key of a view, over every node (`SCAN`).
    fn scan_view(&self, view: &str) -> Result<Vec<Vec<u8>>> {
        let pattern = format!("{}:{{*}}:h:{}:*", self.prefix, view);
        self.topology.scan(&pattern)
    }
}

/// The inverse of [`RedisBackend::entity_key`]: `P:{T}:h:fv:NAME:vN:ENTITY` -> (`fv:NAME:vN`,
/// hash ++ ENTITY), with `prefix` the key prefix and its colon (`P:`); `None` for any other
/// key.
pub(super) fn parse_entity_key(prefix: &str, key: &[u8]) -> Option<(String, Vec<u8>)> {
    let rest = key.strip_prefix(prefix.as_bytes())?.strip_prefix(b"{")?;
    let (tag, rest) = (rest.get(..16)?, rest.get(16..)?);
    let rest = rest.strip_prefix(b"}:h:fv:")?;
    let name_end = rest.iter().position(|&b| b == b':')?;
    let after = &rest[name_end + 1..];
    let version = after.strip_prefix(b"v")?;
    let digits = version.iter().position(|&b| b == b':')?;
    if digits == 0 || !version[..digits].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let view_len = 3 + name_end + 1 + 1 + digits;
    let view = std::str::from_utf8(&key[prefix.len() + 1 + 16 + 4..][..view_len]).ok()?;
    let entity = &version[digits + 1..];
    let mut out = Vec::with_capacity(8 + entity.len());
    for pair in tag.chunks(2) {
        out.push(u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?);
    }
    out.extend_from_slice(entity);
    Some((view.to_string(), out))
}

fn sha1(script: &str) -> String {
    redis::Script::new(script).get_hash().to_string()
}

/// A history member's (event, created).
fn member_times(m: &[u8]) -> Option<(i64, i64)> {
    (m.len() == 16).then(|| (key::desc_ts_from(&m[..8]), key::desc_ts_from(&m[8..])))
}

#[doc(hidden)]
/// Decodes a history member as reads do (the fuzz target's entry).
pub fn fuzz_member(m: &[u8]) -> bool {
    member_row("fuzz", m).is_ok()
}

/// A member (`desc(event) ++ desc(created) ++ row`) lent as a row.
fn member_row<'a>(view: &str, m: &'a [u8]) -> Result<RowRef<'a>> {
    let (event, created) =
        m.get(..16)
            .and_then(member_times)
            .ok_or_else(|| StoreError::Corrupt {
                view: view.to_string(),
                source: keel_core::EnvelopeError::Corrupt("history member header".into()),
            })?;
    Ok(RowRef {
        event,
        created,
        value: &m[16..],
    })
}

impl Backend for RedisBackend {
    fn registry_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let reg = self.registry_key("defs");
        let mut pipe = Packed::default();
        pipe.cmd(&[b"HGET", reg.as_bytes(), key.as_bytes()]);
        let got = self.topology.query_key(reg.as_bytes(), &pipe)?;
        let r = got.replies()?[0];
        match r.bulk() {
            Some(b) => Ok(Some(b.to_vec())),
            None if r.is_nil() => Ok(None),
            None => Err(unexpected(&r, "HGET")),
        }
    }

    fn registry_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let reg = self.registry_key("defs");
        let mut pipe = Packed::default();
        pipe.cmd(&[b"HGETALL", reg.as_bytes()]);
        let got = self.topology.query_key(reg.as_bytes(), &pipe)?;
        let r = got.replies()?[0];
        let pairs = r.items().ok_or_else(|| unexpected(&r, "HGETALL"))?;
        let mut out = BTreeMap::new();
        for kv in pairs.chunks(2) {
            if let [k, v] = kv {
                let (Some(k), Some(v)) = (k.bulk(), v.bulk()) else {
                    return Err(protocol("HGETALL pair"));
                };
                let k = String::from_utf8_lossy(k).into_owned();
                if k.starts_with(prefix) {
                    out.insert(k, v.to_vec());
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn ensure_view(&self, name: &str, retention_ms: Option<i64>) -> Result<()> {
        if let Ok(mut m) = self.retention.write() {
            m.insert(name.to_string(), retention_ms);
        }
        Ok(())
    }

    fn commit(&self, batch: &Batch, _sync: bool) -> Result<()> {
        for (view, from, to) in &batch.delete_ranges {
            if *to != key::prefix_end(from) {
                return Err(StoreError::Unsupported {
                    operation: "range delete other than one whole entity",
                    backend: "redis",
                    instead: format!("delete entities of `{view}` one by one"),
                });
            }
        }
        // Rows per (view, entity), in batch order (a key written twice keeps the later value).
        let mut entities: BTreeMap<(&str, &[u8]), EntityRows<'_>> = BTreeMap::new();
        for (view, k, v) in &batch.puts {
            let plen = k
                .len()
                .checked_sub(16)
                .ok_or_else(|| protocol("short row key"))?;
            entities
                .entry((view.as_str(), &k[..plen]))
                .or_default()
                .push((&k[plen..], v));
        }
        // One transaction per group of keys that must share a node (and, on a cluster, a
        // slot): the whole batch on one server, each slot on a cluster.
        let mut groups: BTreeMap<u16, Txn> = BTreeMap::new();
        for (view, from, _) in &batch.delete_ranges {
            let key = self.entity_key(view, from);
            let slot = self.topology.group_of(&key);
            groups
                .entry(slot)
                .or_insert_with(|| Txn::new(&key, 0))
                .commands
                .cmd(&[b"DEL", &key]);
        }
        // Room for every row once, with its key and command framing (a transaction per slot on
        // a cluster gets a share as it grows).
        let estimate = if self.topology.is_cluster() {
            0
        } else {
            batch
                .puts
                .iter()
                .map(|(v, k, r)| 2 * (k.len() + v.len() + self.prefix.len() + 32) + r.len() + 96)
                .sum()
        };
        for ((view, prefix), rows) in &mut entities {
            let key = self.entity_key(view, prefix);
            let slot = self.topology.group_of(&key);
            let txn = groups
                .entry(slot)
                .or_insert_with(|| Txn::new(&key, estimate));
            // A member written twice in the batch keeps its later row (stable sort, then the
            // last of each run).
            rows.sort_by(|a, b| a.0.cmp(b.0));
            let mut kept: Vec<(&[u8], &[u8])> = Vec::with_capacity(rows.len());
            for &(t, r) in rows.iter() {
                match kept.last_mut() {
                    Some(last) if last.0 == t => *last = (t, r),
                    _ => kept.push((t, r)),
                }
            }
            // A row stored earlier at the same (event, created) is replaced: members embed
            // the row, so the old member is removed by its 16-byte times prefix.
            for (t, _) in &kept {
                txn.commands
                    .begin(4)
                    .arg(b"ZREMRANGEBYLEX")
                    .arg(&key)
                    .arg2(b"[", t)
                    .arg2(b"(", &times_after(t));
            }
            for chunk in kept.chunks(self.opts.rows_per_call) {
                txn.commands
                    .begin(2 + 2 * chunk.len())
                    .arg(b"ZADD")
                    .arg(&key);
                for (t, r) in chunk {
                    txn.commands.arg(b"0").arg2(t, r);
                }
            }
        }
        if !batch.registry.is_empty() {
            // Definitions and watermarks: with the rows on one server; after them on a cluster
            // (a watermark never runs ahead of the rows it covers).
            let reg = self.registry_key("defs");
            let slot = if self.topology.is_cluster() {
                u16::MAX
            } else {
                self.topology.group_of(reg.as_bytes())
            };
            let txn = groups
                .entry(slot)
                .or_insert_with(|| Txn::new(reg.as_bytes(), 0));
            txn.commands
                .begin(2 + 2 * batch.registry.len())
                .arg(b"HSET")
                .arg(reg.as_bytes());
            for (k, v) in &batch.registry {
                txn.commands.arg(k.as_bytes()).arg(v);
            }
            let defines = batch.registry.iter().any(|(k, _)| {
                ["entity/", "view/", "service/"]
                    .iter()
                    .any(|p| k.starts_with(p))
            });
            if defines {
                txn.commands
                    .cmd(&[b"INCR", self.registry_key("gen").as_bytes()]);
            }
        }
        let registry = groups.remove(&u16::MAX);
        self.topology.transact(groups.into_iter().collect())?;
        if let Some(txn) = registry {
            self.topology.transact(vec![(0, txn)])?;
        }
        Ok(())
    }

    fn latest_each(
        &self,
        view: &str,
        lookups: &[Lookup<'_>],
        found: &mut dyn FnMut(usize, Option<RowRef<'_>>) -> Result<()>,
    ) -> Result<()> {
        let keys: Vec<Vec<u8>> = lookups
            .iter()
            .map(|l| self.entity_key(view, l.prefix))
            .collect();
        let replies = self
            .topology
            .fan_out(keys.iter().map(|k| &k[..]), |node, indices| {
                let mut pipe = Packed::default();
                for &i in indices {
                    let l = &lookups[i];
                    let mut start = Vec::with_capacity(16);
                    start.extend_from_slice(&key::desc_ts_bytes(l.event_bound));
                    start.extend_from_slice(&key::desc_ts_bytes(i64::MAX));
                    let cut = l
                        .created_cutoff
                        .map(|c| key::desc_ts_bytes(c).to_vec())
                        .unwrap_or_default();
                    pipe.cmd(&[
                        b"EVALSHA",
                        self.latest_sha.as_bytes(),
                        b"1",
                        &keys[i],
                        &start,
                        &cut,
                    ]);
                }
                self.eval_pipeline(node, &pipe, &[scripts::LATEST])
            })?;
        for (i, r) in replies.replies()?.iter().enumerate() {
            let row = match r.bulk() {
                Some(m) => Some(member_row(view, m)?),
                None if r.is_nil() => None,
                None => return Err(unexpected(r, "history lookup")),
            };
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
        let read = NewestRead { view, prefixes };
        self.newest_many(std::slice::from_ref(&read), &mut |_, i, row| found(i, row))
    }

    fn newest_many(&self, reads: &[NewestRead<'_>], found: &mut ManyFound<'_>) -> Result<()> {
        let mut keys = Vec::new();
        let mut owner = Vec::new();
        for (r, read) in reads.iter().enumerate() {
            for (i, p) in read.prefixes.iter().enumerate() {
                keys.push(self.entity_key(read.view, p));
                owner.push((r, i));
            }
        }
        let replies = self
            .topology
            .fan_out(keys.iter().map(|k| &k[..]), |node, indices| {
                let mut pipe = Packed::default();
                for &i in indices {
                    pipe.cmd(&[b"ZRANGE", &keys[i], b"0", b"0"]);
                }
                self.read(node, &pipe)
            })?;
        for (reply, &(r, i)) in replies.replies()?.iter().zip(&owner) {
            let row = match reply.first_item() {
                Some(None) => None,
                Some(Some(m)) => match m.bulk() {
                    Some(v) => Some(member_row(reads[r].view, v)?),
                    None => return Err(protocol("ZRANGE member")),
                },
                None => return Err(unexpected(reply, "ZRANGE")),
            };
            found(r, i, row)?;
        }
        Ok(())
    }

    fn history(&self, view: &str, prefix: &[u8]) -> Result<Vec<Found>> {
        let key = self.entity_key(view, prefix);
        let mut pipe = Packed::default();
        pipe.cmd(&[b"ZRANGE", &key, b"0", b"-1"]);
        let got = self.topology.query_key(&key, &pipe)?;
        let r = got.replies()?[0];
        let members = r.items().ok_or_else(|| unexpected(&r, "ZRANGE"))?;
        let mut rows = Vec::with_capacity(members.len());
        // Stored newest first.
        for m in members.iter().rev() {
            let m = m.bulk().ok_or_else(|| protocol("ZRANGE member"))?;
            let row = member_row(view, m)?;
            rows.push(Found {
                event: row.event,
                created: row.created,
                value: row.value.to_vec(),
            });
        }
        Ok(rows)
    }

    fn entities(&self, view: &str) -> Result<Vec<Vec<u8>>> {
        let prefix = format!("{}:", self.prefix);
        let mut out: Vec<Vec<u8>> = self
            .scan_view(view)?
            .iter()
            .filter_map(|k| parse_entity_key(&prefix, k))
            .filter(|(v, _)| v == view)
            .map(|(_, p)| p)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn shared(&self) -> bool {
        true
    }

    fn invalidations(&self) -> bool {
        self.opts.client_cache
    }

    fn on_invalidate(&self, sink: super::InvalidationSink) {
        if let Ok(mut s) = self.topology.sink.write() {
            *s = Some(sink);
        }
    }

    fn cache_token(&self) -> Option<u64> {
        if self.opts.client_cache {
            self.topology.cache_token()
        } else {
            None
        }
    }

    fn publish(&self, message: &[u8]) -> Result<()> {
        if message.len() > messages::MAX_MESSAGE {
            return Err(StoreError::TooLarge(format!(
                "a message is at most {} bytes",
                messages::MAX_MESSAGE
            )));
        }
        let channel = self.registry_key("messages");
        let mut pipe = Packed::default();
        pipe.cmd(&[b"PUBLISH", channel.as_bytes(), message]);
        let got = self.topology.query_key(channel.as_bytes(), &pipe)?;
        let r = got.replies()?[0];
        match r.int() {
            Some(_) => Ok(()),
            None => Err(r.first_error().unwrap_or_else(|| unexpected(&r, "PUBLISH"))),
        }
    }

    fn subscribe(&self, sink: super::MessageSink) -> Result<bool> {
        let mut slot = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let target = conn::Target::parse(self.topology.first_seed())?;
            let m = messages::Messages::start(
                target,
                self.opts.connect_timeout,
                self.registry_key("messages"),
            )?;
            *slot = Some(m);
        }
        if let Some(m) = slot.as_ref() {
            m.add(sink);
        }
        Ok(true)
    }

    fn catalog_generation(&self) -> Result<u64> {
        let gen = self.registry_key("gen");
        let mut pipe = Packed::default();
        pipe.cmd(&[b"GET", gen.as_bytes()]);
        let got = self.topology.query_key(gen.as_bytes(), &pipe)?;
        let r = got.replies()?[0];
        match r.bulk() {
            None if r.is_nil() => Ok(0),
            Some(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| protocol("catalog generation")),
            None => Err(unexpected(&r, "GET")),
        }
    }

    fn compact(&self, view: &str) -> Result<()> {
        let cutoff = self.cutoff_member(view)?;
        if cutoff.is_empty() {
            return Ok(());
        }
        let prefixes = self.entities(view)?;
        let keys: Vec<Vec<u8>> = prefixes.iter().map(|p| self.entity_key(view, p)).collect();
        let from = [b"[".as_slice(), &cutoff].concat();
        for chunk in keys.chunks(1024) {
            let replies =
                self.topology
                    .fan_out(chunk.iter().map(|k| &k[..]), |node, indices| {
                        let mut pipe = Packed::default();
                        for &i in indices {
                            pipe.cmd(&[b"ZREMRANGEBYLEX", &chunk[i], &from, b"+"]);
                        }
                        Ok((node.query(&pipe)?, Pick::All))
                    })?;
            if let Some(e) = replies.replies()?.iter().find_map(Reply::first_error) {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The commands of one transaction (`MULTI` ... `EXEC`).
struct Txn {
    /// A key of the group: where the transaction is sent.
    route: Vec<u8>,
    /// `MULTI` and the commands after it (`EXEC` is added when it is sent).
    commands: Packed,
}

impl Txn {
    /// A transaction routed by `route`, its buffer sized for about `bytes` of commands.
    fn new(route: &[u8], bytes: usize) -> Txn {
        let mut commands = Packed::with_capacity(bytes + 64);
        commands.cmd(&[b"MULTI"]);
        Txn {
            route: route.to_vec(),
            commands,
        }
    }
}

/// Rows of one entity of a batch: `(times, row)` in batch order.
type EntityRows<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The 16-byte times string right after `t` (the exclusive end of the members that start
/// with `t`). Times are `desc()` of non-negative timestamps, whose first byte is at most 0x7F:
/// the increment never overflows.
fn times_after(t: &[u8]) -> Vec<u8> {
    let mut out = t.to_vec();
    for b in out.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_map_back_to_view_and_entity() {
        let key = b"keel:{0011223344556677}:h:fv:card_stats:v12:\x02c1\x00\x01";
        let (view, prefix) = super::parse_entity_key("keel:", key).unwrap();
        assert_eq!(view, "fv:card_stats:v12");
        assert_eq!(
            &prefix[..8],
            &[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]
        );
        assert_eq!(&prefix[8..], b"\x02c1\x00\x01");
        assert!(super::parse_entity_key("keel:", b"keel:{reg}:gen").is_none());
        assert!(super::parse_entity_key("other:", key).is_none());
        assert!(super::parse_entity_key("keel:", b"keel:{0011223344556677}:h:fv:x:v:e").is_none());
    }
}
