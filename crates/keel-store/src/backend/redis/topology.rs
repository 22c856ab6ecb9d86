//! Which server holds a key, and pooled connections to each: one server owning every slot, or
//! a cluster's masters with its slot map (refreshed on `MOVED`/`ASK` and on connection errors).

use super::resp::Packed;
use super::{err, first_error, protocol, RedisOptions, Txn};
use crate::error::{Result, StoreError};
use redis::{ConnectionLike, Value as Reply};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const SLOTS: usize = 16_384;

/// Opens connections with a connect timeout and sets the per-reply timeouts.
#[derive(Debug)]
struct Manager {
    client: redis::Client,
    connect: Duration,
    io: Duration,
}

impl r2d2::ManageConnection for Manager {
    type Connection = redis::Connection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<redis::Connection, redis::RedisError> {
        let c = self.client.get_connection_with_timeout(self.connect)?;
        c.set_read_timeout(Some(self.io))?;
        c.set_write_timeout(Some(self.io))?;
        Ok(c)
    }

    fn is_valid(&self, conn: &mut redis::Connection) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query::<()>(conn)
    }

    fn has_broken(&self, conn: &mut redis::Connection) -> bool {
        !conn.is_open()
    }
}

/// One server and its connection pool.
pub(super) struct Node {
    addr: String,
    pool: r2d2::Pool<Manager>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

impl Node {
    fn open(addr: &str, opts: &RedisOptions) -> Result<Node> {
        let client = redis::Client::open(addr).map_err(err)?;
        let pool = r2d2::Pool::builder()
            .max_size(opts.pool_size)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(opts.connect_timeout)
            .build_unchecked(Manager {
                client,
                connect: opts.connect_timeout,
                io: opts.io_timeout,
            });
        Ok(Node {
            addr: addr.to_string(),
            pool,
        })
    }

    /// Sends a pipeline and returns every reply; server errors come back as
    /// [`Reply::ServerError`] items. A connection that failed (a server restarted since it was
    /// pooled) is dropped and the pipeline sent once more on a new one: every pipeline keel
    /// sends is idempotent.
    pub(super) fn query(&self, pipe: &Packed) -> Result<Vec<Reply>> {
        let mut last = None;
        for _ in 0..2 {
            let mut conn = self.pool.get().map_err(|e| {
                StoreError::backend("redis", format!("no connection to {}: {e}", self.addr))
            })?;
            match conn.req_packed_commands(&pipe.bytes, 0, pipe.count) {
                Ok(r) => return Ok(r),
                Err(e) if e.is_io_error() || e.is_connection_dropped() => last = Some(e),
                Err(e) => return Err(err(e)),
            }
        }
        Err(last.map(err).unwrap_or_else(|| protocol("no reply")))
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
#[derive(Debug)]
pub(super) struct Topology {
    seeds: Vec<String>,
    cluster: bool,
    opts: RedisOptions,
    map: RwLock<Arc<Map>>,
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
        };
        t.refresh()?;
        Ok(t)
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
            let node = Node::open(&self.seeds[0], &self.opts)?;
            let mut ping = Packed::default();
            ping.cmd(&[b"PING"]);
            if let Some(e) = node.query(&ping)?.iter().find_map(first_error) {
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
        Ok(())
    }

    fn cluster_map(&self) -> Result<Map> {
        let known: Vec<String> = self
            .current()
            .nodes
            .iter()
            .map(|n| n.addr.clone())
            .chain(self.seeds.iter().cloned())
            .collect();
        let mut last = None;
        for addr in known {
            let node = Node::open(&addr, &self.opts)?;
            let mut q = Packed::default();
            q.cmd(&[b"CLUSTER", b"SLOTS"]);
            match node.query(&q) {
                Ok(mut r) => match r.pop() {
                    Some(Reply::Array(ranges)) => return self.build_map(&ranges),
                    Some(other) => last = first_error(&other),
                    None => last = Some(protocol("CLUSTER SLOTS")),
                },
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| protocol("no cluster node answered")))
    }

    fn build_map(&self, ranges: &[Reply]) -> Result<Map> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut slots = vec![u16::MAX; SLOTS];
        for r in ranges {
            let Reply::Array(parts) = r else {
                return Err(protocol("CLUSTER SLOTS range"));
            };
            let (Some(Reply::Int(from)), Some(Reply::Int(to)), Some(Reply::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return Err(protocol("CLUSTER SLOTS range"));
            };
            let host = match master.first() {
                Some(Reply::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                _ => return Err(protocol("CLUSTER SLOTS host")),
            };
            let Some(Reply::Int(port)) = master.get(1) else {
                return Err(protocol("CLUSTER SLOTS port"));
            };
            let addr = format!("redis://{host}:{port}");
            let idx = match nodes.iter().position(|n| n.addr == addr) {
                Some(i) => i,
                None => {
                    nodes.push(Node::open(&addr, &self.opts)?);
                    nodes.len() - 1
                }
            };
            let (from, to) = (*from as usize, *to as usize);
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

    /// Whether replies say the slot map is stale.
    fn redirected(replies: &[Reply]) -> bool {
        fn moved(r: &Reply) -> bool {
            match r {
                Reply::ServerError(e) => matches!(e.code(), "MOVED" | "ASK" | "CLUSTERDOWN"),
                Reply::Array(items) => items.iter().any(moved),
                _ => false,
            }
        }
        replies.iter().any(moved)
    }

    /// Sends `pipe` to the node holding `key` (every key of the pipeline must share its slot).
    pub(super) fn query_key(&self, key: &[u8], pipe: &Packed) -> Result<Vec<Reply>> {
        self.fan_out(std::iter::once(key), |node, _| node.query(pipe))
    }

    /// Groups `keys` by node, calls `f(node, indices)` for each group (in parallel on a
    /// cluster) and returns the replies in key order: `f` returns one reply per index. A
    /// redirect or a failed node refreshes the slot map and retries once.
    pub(super) fn fan_out<'k, F>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
        f: F,
    ) -> Result<Vec<Reply>>
    where
        F: Fn(&Node, &[usize]) -> Result<Vec<Reply>> + Sync,
    {
        let keys: Vec<&[u8]> = keys.collect();
        let mut attempt = 0;
        loop {
            let map = self.current();
            let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                groups.entry(Self::node_index(&map, k)).or_default().push(i);
            }
            let run = |(node, idx): (&usize, &Vec<usize>)| -> Result<Vec<Reply>> {
                let r = f(&map.nodes[*node], idx)?;
                if r.len() != idx.len() {
                    return Err(protocol("reply count"));
                }
                Ok(r)
            };
            let results: Vec<Result<Vec<Reply>>> = if groups.len() <= 1 {
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
                    Ok(replies) => Self::redirected(replies),
                    Err(StoreError::Backend { .. }) => true,
                    Err(_) => false,
                });
            if stale && attempt == 0 {
                attempt += 1;
                self.refresh()?;
                continue;
            }
            let mut out = vec![Reply::Nil; keys.len()];
            for ((_, idx), r) in groups.iter().zip(results) {
                for (&i, reply) in idx.iter().zip(r?) {
                    out[i] = reply;
                }
            }
            return Ok(out);
        }
    }

    /// Runs each transaction (`MULTI` ... `EXEC`, every key in its group), one pipeline per
    /// node, nodes in parallel. Fails with the first error any command returned.
    pub(super) fn transact(&self, groups: Vec<(u16, Txn)>) -> Result<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let replies = self.fan_out(groups.iter().map(|(_, t)| &t.route[..]), |node, idx| {
            let mut pipe = Packed::default();
            for &i in idx {
                pipe.cmd(&[b"MULTI"]);
                pipe.append(&groups[i].1.commands);
                pipe.cmd(&[b"EXEC"]);
            }
            let replies = node.query(&pipe)?;
            // One reply per transaction: EXEC's (the last of its commands' replies).
            let mut out = Vec::with_capacity(idx.len());
            let mut at = 0;
            for &i in idx {
                let n = groups[i].1.commands.count + 2;
                let part = replies
                    .get(at..at + n)
                    .ok_or_else(|| protocol("transaction replies"))?;
                at += n;
                out.push(Reply::Array(part.to_vec()));
            }
            Ok(out)
        })?;
        match replies.iter().find_map(first_error) {
            Some(e) => Err(e),
            None => Ok(()),
        }
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
                let reply = node.query(&pipe)?.pop();
                let Some(Reply::Array(parts)) = reply else {
                    return Err(reply
                        .as_ref()
                        .and_then(first_error)
                        .unwrap_or_else(|| protocol("SCAN")));
                };
                let (Some(Reply::BulkString(next)), Some(Reply::Array(keys))) =
                    (parts.first(), parts.get(1))
                else {
                    return Err(protocol("SCAN"));
                };
                for k in keys {
                    if let Reply::BulkString(k) = k {
                        out.push(k.clone());
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
