//! Server-assisted client-side caching (Redis `CLIENT TRACKING`, RESP2 redirect mode): the
//! store keeps its row cache on a shared Redis, and Redis tells it when another process
//! changes an entity it has read.
//!
//! One listener connection per server subscribes to `__redis__:invalidate`; every data
//! connection turns tracking on with `REDIRECT <listener id>` before its first read under the
//! listener's current *generation*. Redis then remembers the keys each data connection reads and
//! sends their names to the listener when anyone writes them (or a null for a flush).
//!
//! The rules that keep cached rows correct:
//! - a read may fill the cache only if the listener was up, with the same generation, before
//!   and after it (`Tracking::token`); the store's row cache already refuses inserts that race
//!   an invalidation (its write epoch), and an invalidation for a key read at server time `t`
//!   is sent after `t`, so it reaches the cache after the reader noted the epoch;
//! - a listener that fails, or hears nothing (not even its own `PING`) for
//!   [`SILENCE`](super::messages::SILENCE), is *down*: the whole cache is dropped and nothing is cached until a new
//!   listener is subscribed (a new generation). Staleness is bounded by that detection time
//!   when only the listener's connection is cut; a restarted server cuts every connection.

use super::super::{Invalidation, InvalidationSink};
use super::conn::{Conn, Response, Target};
use super::resp::Packed;
use crate::error::Result;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::messages::PING_EVERY;

/// The shared sink slot of a backend (set once the store is built).
pub(super) type SinkSlot = Arc<RwLock<Option<InvalidationSink>>>;

/// One server's invalidation listener, shared by its data connections.
pub(super) struct Tracking {
    /// The listener connection's client id, 0 while it is down.
    id: AtomicI64,
    /// Changes whenever the listener comes up or goes down.
    generation: AtomicU64,
    /// Reads that went out untracked (tracking could not be turned on for their connection):
    /// any one of them spoils the token of reads in flight.
    spoiled: AtomicU64,
    stop: AtomicBool,
    sink: SinkSlot,
    /// The key prefix (`P:`) whose keys are keel's.
    prefix: String,
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking")
            .field("id", &self.id.load(Ordering::SeqCst))
            .field("generation", &self.generation.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Tracking {
    /// Starts the listener thread for the server at `target`.
    pub(super) fn start(
        target: Target,
        connect: Duration,
        sink: SinkSlot,
        prefix: &str,
    ) -> Arc<Tracking> {
        let t = Arc::new(Tracking {
            id: AtomicI64::new(0),
            generation: AtomicU64::new(0),
            spoiled: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sink,
            prefix: format!("{prefix}:"),
        });
        let bg = Arc::clone(&t);
        let spawned = std::thread::Builder::new()
            .name("keel-redis-invalidate".into())
            .spawn(move || bg.run(&target, connect));
        if spawned.is_err() {
            // No listener: nothing is ever cached (token stays None).
            t.stop.store(true, Ordering::SeqCst);
        }
        t
    }

    /// Stops the listener (within one read timeout).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// `Some((listener id, generation))` while the listener is up.
    pub(super) fn current(&self) -> Option<(i64, u64)> {
        let g = self.generation.load(Ordering::SeqCst);
        let id = self.id.load(Ordering::SeqCst);
        (id != 0 && g % 2 == 1).then_some((id, g))
    }

    /// What a read notes before and checks after: equal and `Some` means the read was tracked.
    pub(super) fn token(&self) -> Option<u64> {
        let (_, g) = self.current()?;
        Some(g.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.spoiled.load(Ordering::SeqCst))
    }

    /// A read is going out untracked.
    pub(super) fn spoil(&self) {
        self.spoiled.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes `conn` redirect its tracking to the current listener; `Ok(false)` when no listener
    /// is up (the read then fills no cache).
    pub(super) fn prepare(&self, conn: &mut Conn) -> Result<bool> {
        let Some((id, generation)) = self.current() else {
            return Ok(false);
        };
        if conn.tracked == Some(generation) {
            return Ok(true);
        }
        let mut on = Packed::default();
        if conn.tracked.is_some() {
            // Redirected to an older listener: off first, then on with the new one.
            on.cmd(&[b"CLIENT", b"TRACKING", b"OFF"]);
        }
        on.cmd(&[
            b"CLIENT",
            b"TRACKING",
            b"ON",
            b"REDIRECT",
            id.to_string().as_bytes(),
        ]);
        let r = conn.request(&on)?;
        if let Some(e) = r.first_error() {
            return Err(e);
        }
        conn.tracked = Some(generation);
        Ok(true)
    }

    fn notify(&self, what: Invalidation<'_>) {
        let sink = self.sink.read().ok().and_then(|s| s.clone());
        if let Some(sink) = sink {
            sink(what);
        }
    }

    /// Marks the listener down (odd generations are "up") and drops every cached row.
    fn down(&self) {
        self.id.store(0, Ordering::SeqCst);
        if self.generation.load(Ordering::SeqCst) % 2 == 1 {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        self.notify(Invalidation::All);
    }

    fn run(&self, target: &Target, connect: Duration) {
        while !self.stop.load(Ordering::SeqCst) {
            let _ = self.listen(target, connect);
            self.down();
            // Reconnect after a pause, watching for stop.
            for _ in 0..4 {
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// One subscribed session: returns when the connection fails or falls silent.
    fn listen(&self, target: &Target, connect: Duration) -> Result<()> {
        let mut conn = Conn::open(target, connect, PING_EVERY)?;
        let mut hello = Packed::default();
        hello.cmd(&[b"CLIENT", b"ID"]);
        let id = conn
            .request(&hello)?
            .last()
            .and_then(|r| r.int())
            .ok_or_else(|| super::protocol("CLIENT ID"))?;
        let mut sub = Packed::default();
        sub.cmd(&[b"SUBSCRIBE", b"__redis__:invalidate"]);
        conn.send(&sub)?;
        let mut subscribed = false;
        super::messages::pump(&mut conn, &self.stop, |msg| {
            if !subscribed && is_kind(msg, b"subscribe") {
                subscribed = true;
                // Up: data connections redirect to `id` from this generation on.
                self.id.store(id, Ordering::SeqCst);
                self.generation.fetch_add(1, Ordering::SeqCst);
            } else if is_kind(msg, b"message") {
                self.deliver(msg);
            }
        })
    }

    /// An invalidation message: `["message", "__redis__:invalidate", [keys...] | nil]`.
    fn deliver(&self, msg: &Response) {
        let Some(parts) = msg.last().and_then(|r| r.items()) else {
            return;
        };
        let Some(payload) = parts.get(2) else {
            return;
        };
        match payload.items() {
            None => self.notify(Invalidation::All),
            Some(keys) => {
                for k in keys {
                    let Some(k) = k.bulk() else { continue };
                    match super::parse_entity_key(&self.prefix, k) {
                        Some((view, prefix)) => self.notify(Invalidation::Entity {
                            view: &view,
                            prefix: &prefix,
                        }),
                        // A key of keel's we cannot map: drop everything rather than guess.
                        None if k.starts_with(self.prefix.as_bytes()) => {
                            self.notify(Invalidation::All)
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

fn is_kind(msg: &Response, kind: &[u8]) -> bool {
    msg.last()
        .and_then(|r| r.items())
        .and_then(|parts| parts.first().and_then(|p| p.text()))
        .is_some_and(|k| k == kind)
}
