//! Which server holds a key, and pooled connections to each: one server owning every slot, or
//! a cluster's masters with its slot map (refreshed on `MOVED`/`ASK` and on connection errors).

use super::conn::{Conn, Reply, Response, Target};
use super::resp::Packed;
use super::tracking::{SinkSlot, Tracking};
use super::{protocol, RedisOptions, Txn};
use crate::error::{Result, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const SLOTS: usize = 16_384;

/// Opens connections for the pool.
#[derive(Debug)]
struct Manager {
    target: Target,
    connect: Duration,
    io: Duration,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = StoreError;

    fn connect(&self) -> Result<Conn> {
        Conn::open(&self.target, self.connect, self.io)
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<()> {
        let mut ping = Packed::default();
        ping.cmd(&[b"PING"]);
        conn.request(&ping).map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
}

/// One server, its connection pool and, with the client cache on, its invalidation listener.
pub(super) struct Node {
    addr: String,
    pool: r2d2::Pool<Manager>,
    tracking: Option<Arc<Tracking>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(t) = &self.tracking {
            t.stop();
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

impl Node {
    fn open(url: &str, opts: &RedisOptions, sink: Option<&SinkSlot>) -> Result<Node> {
        let target = Target::parse(url)?;
        let tracking = match sink {
            Some(sink) if opts.client_cache => Some(Tracking::start(
                target.clone(),
                opts.connect_timeout,
                Arc::clone(sink),
                &opts.prefix,
            )),
            _ => None,
        };
        let addr = format!("{}:{}", target.host, target.port);
        let pool = r2d2::Pool::builder()
            .max_size(opts.pool_size)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(opts.connect_timeout)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(Manager {
                target,
                connect: opts.connect_timeout,
                io: opts.io_timeout,
            });
        Ok(Node {
            addr,
            pool,
            tracking,
        })
    }

    /// See [`super::tracking::Tracking::token`]; `Some(0)` without a client cache.
    pub(super) fn cache_token(&self) -> Option<u64> {
        match &self.tracking {
            Some(t) => t.token(),
            None => Some(0),
        }
    }

    /// Sends a pipeline and returns its replies (server errors are replies too). A connection
    /// that failed (a server restarted since it was pooled) is dropped and the pipeline sent
    /// once more on a new one: every pipeline keel sends is idempotent.
    pub(super) fn query(&self, pipe: &Packed) -> Result<Response> {
        let mut last = None;
        for _ in 0..2 {
            let mut conn = self.pool.get().map_err(|e| {
                StoreError::backend("redis", format!("no connection to {}: {e}", self.addr))
            })?;
            if let Some(t) = &self.tracking {
                // Reads through a connection whose tracking is not on fill no cache.
                match t.prepare(&mut conn) {
                    Ok(true) => {}
                    Ok(false) => t.spoil(),
                    Err(e) => {
                        t.spoil();
                        last = Some(e);
                        continue;
                    }
                }
            }
            match conn.request(pipe) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| protocol("no reply")))
    }
}

/// Nodes and, on a cluster, the node of every slot.
#[derive(Debug)]
struct Map {
    nodes: Vec<Node>,
    /// Slot -> index in `nodes`; empty for a single server.
    slots: Vec<u16>,
}

/// The servers of a store.
pub(super) struct Topology {
    seeds: Vec<String>,
    cluster: bool,
    opts: RedisOptions,
    map: RwLock<Arc<Map>>,
    /// Where the nodes' invalidation listeners report (the store's row cache).
    pub(super) sink: SinkSlot,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("seeds", &self.seeds)
            .field("cluster", &self.cluster)
            .field("map", &self.current())
            .finish_non_exhaustive()
    }
}

/// The hash slot of a key (CRC16/XMODEM of its hash tag, as Redis Cluster computes it).
pub(super) fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS as u16
}

/// Replies gathered from several nodes, in the order of the keys asked for.
pub(super) struct Gathered {
    responses: Vec<Response>,
    /// Per key: (response, reply index within what the node's closure selected).
    at: Vec<(usize, usize)>,
    /// Per response: the replies the closure selected (top-level, or an EXEC's items).
    picks: Vec<Pick>,
}

/// Which replies of a response answer the keys: every top-level reply, or the items of the
/// last one (a transaction's EXEC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    All,
    Exec,
}

impl Gathered {
    /// The replies, one per key asked for.
    pub(super) fn replies(&self) -> Result<Vec<Reply<'_>>> {
        let mut per: Vec<Vec<Reply<'_>>> = Vec::with_capacity(self.responses.len());
        for (r, pick) in self.responses.iter().zip(&self.picks) {
            per.push(match pick {
                Pick::All => r.replies(),
                Pick::Exec => match r.last() {
                    Some(exec) => match exec.items() {
                        Some(items) => items,
                        None => return Err(exec.first_error().unwrap_or_else(|| protocol("EXEC"))),
                    },
                    None => return Err(protocol("no reply")),
                },
            });
        }
        self.at
            .iter()
            .map(|&(r, i)| {
                per[r]
                    .get(i)
                    .copied()
                    .ok_or_else(|| protocol("reply count"))
            })
            .collect()
    }
}

impl Topology {
    pub(super) fn connect(seeds: &[String], cluster: bool, opts: &RedisOptions) -> Result<Self> {
        let t = Topology {
            seeds: seeds.to_vec(),
            cluster,
            opts: opts.clone(),
            map: RwLock::new(Arc::new(Map {
                nodes: Vec::new(),
                slots: Vec::new(),
            })),
            sink: SinkSlot::default(),
        };
        t.refresh()?;
        Ok(t)
    }

    /// The first seed URL (a cluster broadcasts pub/sub messages to every node: any will do).
    pub(super) fn first_seed(&self) -> &str {
        &self.seeds[0]
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }

    fn current(&self) -> Arc<Map> {
        match self.map.read() {
            Ok(m) => Arc::clone(&m),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Reads the slot map from the first seed (or known node) that answers; a single server
    /// is checked with `PING`.
    fn refresh(&self) -> Result<()> {
        let map = if self.cluster {
            self.cluster_map()?
        } else {
            let node = Node::open(&self.seeds[0], &self.opts, Some(&self.sink))?;
            let mut ping = Packed::default();
            ping.cmd(&[b"PING"]);
            if let Some(e) = node.query(&ping)?.first_error() {
                return Err(e);
            }
            Map {
                nodes: vec![node],
                slots: Vec::new(),
            }
        };
        match self.map.write() {
            Ok(mut m) => *m = Arc::new(map),
            Err(p) => *p.into_inner() = Arc::new(map),
        }
        // Other nodes, other listeners: nothing cached under the old map stays.
        if let Some(sink) = self.sink.read().ok().and_then(|s| s.clone()) {
            sink(super::super::Invalidation::All);
        }
        Ok(())
    }

    /// Every node's cache token combined: `Some` only while every listener is up.
    pub(super) fn cache_token(&self) -> Option<u64> {
        let map = self.current();
        let mut acc = 0u64;
        for n in &map.nodes {
            acc = acc.rotate_left(7) ^ n.cache_token()?;
        }
        Some(acc)
    }

    fn cluster_map(&self) -> Result<Map> {
        let known: Vec<String> = self
            .current()
            .nodes
            .iter()
            .map(|n| format!("redis://{}", n.addr))
            .chain(self.seeds.iter().cloned())
            .collect();
        let mut last = None;
        for addr in known {
            // A probe only: no listener.
            let node = Node::open(&addr, &self.opts, None)?;
            let mut q = Packed::default();
            q.cmd(&[b"CLUSTER", b"SLOTS"]);
            match node.query(&q) {
                Ok(r) => match r.last().and_then(|slots| slots.items()) {
                    Some(ranges) => return self.build_map(&ranges),
                    None => {
                        last = Some(r.first_error().unwrap_or_else(|| protocol("CLUSTER SLOTS")))
                    }
                },
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| protocol("no cluster node answered")))
    }

    fn build_map(&self, ranges: &[Reply<'_>]) -> Result<Map> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut slots = vec![u16::MAX; SLOTS];
        for r in ranges {
            let parts = r.items().ok_or_else(|| protocol("CLUSTER SLOTS range"))?;
            let (Some(from), Some(to), Some(master)) = (
                parts.first().and_then(Reply::int),
                parts.get(1).and_then(Reply::int),
                parts.get(2).and_then(Reply::items),
            ) else {
                return Err(protocol("CLUSTER SLOTS range"));
            };
            let host = master
                .first()
                .and_then(Reply::text)
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .ok_or_else(|| protocol("CLUSTER SLOTS host"))?;
            let port = master
                .get(1)
                .and_then(Reply::int)
                .ok_or_else(|| protocol("CLUSTER SLOTS port"))?;
            let addr = format!("{host}:{port}");
            let idx = match nodes.iter().position(|n| n.addr == addr) {
                Some(i) => i,
                None => {
                    nodes.push(Node::open(
                        &format!("redis://{addr}"),
                        &self.opts,
                        Some(&self.sink),
                    )?);
                    nodes.len() - 1
                }
            };
            let (from, to) = (from as usize, to as usize);
            if from > to || to >= SLOTS {
                return Err(protocol("CLUSTER SLOTS range bounds"));
            }
            slots[from..=to].fill(idx as u16);
        }
        if slots.contains(&u16::MAX) {
            return Err(StoreError::backend(
                "redis",
                "the cluster does not cover every slot (cluster_state is not ok)",
            ));
        }
        Ok(Map { nodes, slots })
    }

    /// The transaction group of a key: its slot on a cluster, 0 on one server (one
    /// transaction holds everything).
    pub(super) fn group_of(&self, key: &[u8]) -> u16 {
        if self.cluster {
            slot(key)
        } else {
            0
        }
    }

    fn node_index(map: &Map, key: &[u8]) -> usize {
        if map.slots.is_empty() {
            0
        } else {
            map.slots[slot(key) as usize] as usize
        }
    }

    /// Sends `pipe` to the node holding `key` (every key of the pipeline must share its slot)
    /// and returns its top-level replies.
    pub(super) fn query_key(&self, key: &[u8], pipe: &Packed) -> Result<Gathered> {
        self.fan_out(std::iter::once(key), |node, _| {
            Ok((node.query(pipe)?, Pick::All))
        })
    }

    /// Groups `keys` by node, calls `f(node, indices)` for each group (in parallel on a
    /// cluster): `f` returns one reply per index (all top-level replies, or an EXEC's items).
    /// A redirect or a failed node refreshes the slot map and retries once.
    pub(super) fn fan_out<'k, F>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
        f: F,
    ) -> Result<Gathered>
    where
        F: Fn(&Node, &[usize]) -> Result<(Response, Pick)> + Sync,
    {
        let keys: Vec<&[u8]> = keys.collect();
        let mut attempt = 0;
        loop {
            let map = self.current();
            let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                groups.entry(Self::node_index(&map, k)).or_default().push(i);
            }
            let run = |(node, idx): (&usize, &Vec<usize>)| f(&map.nodes[*node], idx);
            let results: Vec<Result<(Response, Pick)>> = if groups.len() <= 1 {
                groups.iter().map(run).collect()
            } else {
                std::thread::scope(|s| {
                    let handles: Vec<_> = groups.iter().map(|g| s.spawn(move || run(g))).collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(protocol("a shard worker panicked")))
                        })
                        .collect()
                })
            };
            let stale = self.cluster
                && results.iter().any(|r| match r {
                    Ok((resp, _)) => redirected(resp),
                    Err(StoreError::Backend { .. }) => true,
                    Err(_) => false,
                });
            if stale && attempt == 0 {
                attempt += 1;
                self.refresh()?;
                continue;
            }
            let mut gathered = Gathered {
                responses: Vec::with_capacity(groups.len()),
                at: vec![(0, 0); keys.len()],
                picks: Vec::with_capacity(groups.len()),
            };
            for ((_, idx), r) in groups.iter().zip(results) {
                let (resp, pick) = r?;
                let n = gathered.responses.len();
                for (j, &i) in idx.iter().enumerate() {
                    gathered.at[i] = (n, j);
                }
                gathered.responses.push(resp);
                gathered.picks.push(pick);
            }
            return Ok(gathered);
        }
    }

    /// Runs each transaction (`MULTI` ... `EXEC`, every key in its group), one pipeline per
    /// node, nodes in parallel. Fails with the first error any command returned.
    pub(super) fn transact(&self, mut groups: Vec<(u16, Txn)>) -> Result<()> {
        if groups.is_empty() {
            return Ok(());
        }
        for (_, t) in &mut groups {
            t.commands.cmd(&[b"EXEC"]);
        }
        let groups = &groups;
        self.fan_out(groups.iter().map(|(_, t)| &t.route[..]), |node, idx| {
            // One transaction (always, on one server) is sent from its own buffer.
            let resp = if let [one] = idx {
                node.query(&groups[*one].1.commands)?
            } else {
                let mut pipe = Packed::default();
                for &i in idx {
                    pipe.append(&groups[i].1.commands);
                }
                node.query(&pipe)?
            };
            if let Some(e) = resp.first_error() {
                return Err(e);
            }
            Ok((resp, Pick::All))
        })?;
        Ok(())
    }

    /// Every key matching `pattern` on every node (`SCAN`, 1,000 keys a step).
    pub(super) fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let map = self.current();
        let mut out = Vec::new();
        for node in &map.nodes {
            let mut cursor = 0u64;
            loop {
                let mut pipe = Packed::default();
                pipe.cmd(&[
                    b"SCAN",
                    cursor.to_string().as_bytes(),
                    b"MATCH",
                    pattern.as_bytes(),
                    b"COUNT",
                    b"1000",
                ]);
                let resp = node.query(&pipe)?;
                let reply = resp.last().ok_or_else(|| protocol("SCAN"))?;
                let parts = reply
                    .items()
                    .ok_or_else(|| reply.first_error().unwrap_or_else(|| protocol("SCAN")))?;
                let (Some(next), Some(keys)) = (
                    parts.first().and_then(Reply::bulk),
                    parts.get(1).and_then(Reply::items),
                ) else {
                    return Err(protocol("SCAN"));
                };
                for k in keys {
                    if let Some(k) = k.bulk() {
                        out.push(k.to_vec());
                    }
                }
                cursor = std::str::from_utf8(next)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| protocol("SCAN cursor"))?;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// Whether a response says the slot map is stale (`MOVED`, `ASK`, `CLUSTERDOWN`).
fn redirected(resp: &Response) -> bool {
    resp.replies().iter().any(|r| {
        let mut stack = vec![*r];
        while let Some(r) = stack.pop() {
            if let Some(e) = r.error() {
                if e.starts_with(b"MOVED ")
                    || e.starts_with(b"ASK ")
                    || e.starts_with(b"CLUSTERDOWN")
                {
                    return true;
                }
            }
            if let Some(items) = r.items() {
                stack.extend(items);
            }
        }
        false
    })
}
