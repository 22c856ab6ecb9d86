//! Messages between the processes that share a store: Redis pub/sub on one channel per store
//! (`{prefix}:{reg}:messages`). Replicas use it as the fast path of news that lives elsewhere
//! ("the rollout of model X moved"): a message is a hint to look now, never the state itself,
//! so a lost message costs only the wait until the next poll.
//!
//! One subscriber connection per store, opened on the first [`Messages::add`]; it reconnects
//! after a failure or a silence (it pings its server, so silence means a lost connection).

use super::super::MessageSink;
use super::conn::{Conn, Response, Target};
use super::resp::Packed;
use crate::error::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How often a subscribed connection pings its server.
pub(super) const PING_EVERY: Duration = Duration::from_millis(250);
/// How long a subscribed connection may hear nothing (not even its pings' answers) before it
/// counts as lost.
pub(super) const SILENCE: Duration = Duration::from_millis(1500);
/// Largest message delivered (longer ones are dropped: they are hints, not payloads).
pub(super) const MAX_MESSAGE: usize = 4096;

/// The subscriber of one store's channel.
pub(super) struct Messages {
    stop: AtomicBool,
    sinks: RwLock<Vec<MessageSink>>,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").finish_non_exhaustive()
    }
}

impl Messages {
    /// Starts the subscriber thread for `channel` on the server at `target`.
    pub(super) fn start(
        target: Target,
        connect: Duration,
        channel: String,
    ) -> std::io::Result<Arc<Messages>> {
        let m = Arc::new(Messages {
            stop: AtomicBool::new(false),
            sinks: RwLock::new(Vec::new()),
        });
        let bg = Arc::clone(&m);
        std::thread::Builder::new()
            .name("keel-redis-messages".into())
            .spawn(move || bg.run(&target, connect, &channel))?;
        Ok(m)
    }

    /// Adds a receiver of every message.
    pub(super) fn add(&self, sink: MessageSink) {
        match self.sinks.write() {
            Ok(mut s) => s.push(sink),
            Err(p) => p.into_inner().push(sink),
        }
    }

    /// Stops the subscriber (within one read timeout).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn run(&self, target: &Target, connect: Duration, channel: &str) {
        while !self.stop.load(Ordering::SeqCst) {
            // A failed or silent connection: reconnect after a pause.
            let _ = self.listen(target, connect, channel);
            for _ in 0..4 {
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn listen(&self, target: &Target, connect: Duration, channel: &str) -> Result<()> {
        let mut conn = Conn::open(target, connect, PING_EVERY)?;
        let mut sub = Packed::default();
        sub.cmd(&[b"SUBSCRIBE", channel.as_bytes()]);
        conn.send(&sub)?;
        pump(&mut conn, &self.stop, |msg| {
            // ["message", channel, payload]
            let parts = msg.last().and_then(|r| r.items());
            let kind = parts.as_ref().and_then(|p| p.first()?.text());
            let payload = parts.as_ref().and_then(|p| p.get(2)?.bulk());
            if let (Some(b"message"), Some(payload)) = (kind, payload) {
                if payload.len() <= MAX_MESSAGE {
                    let sinks = match self.sinks.read() {
                        Ok(s) => s.clone(),
                        Err(p) => p.into_inner().clone(),
                    };
                    for s in sinks {
                        s(payload);
                    }
                }
            }
        })
    }
}

/// Reads a subscribed connection until `stop`, handing each message to `on`, pinging every
/// [`PING_EVERY`]; fails when the connection fails or stays silent for [`SILENCE`] (a
/// subscribed server answers pings, so silence means the connection is gone).
pub(super) fn pump(
    conn: &mut Conn,
    stop: &AtomicBool,
    mut on: impl FnMut(&Response),
) -> Result<()> {
    let mut heard = Instant::now();
    let mut pinged = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        match conn.poll()? {
            Some(msg) => {
                heard = Instant::now();
                on(&msg);
            }
            None if heard.elapsed() > SILENCE => {
                return Err(super::protocol("a subscribed connection fell silent"))
            }
            None => {}
        }
        if pinged.elapsed() >= PING_EVERY {
            let mut ping = Packed::default();
            ping.cmd(&[b"PING"]);
            conn.send(&ping)?;
            pinged = Instant::now();
        }
    }
}
