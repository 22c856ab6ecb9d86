//! One connection to one server, and the replies it reads, decoded where they landed.
//!
//! A request is a [`Packed`] pipeline written in one `write`; its replies are read into the
//! connection's buffer and indexed without copying: a [`Response`] owns that buffer and a flat
//! list of tokens, and rows are decoded straight from it. (redis-rs parses each reply into its
//! own allocations; with this reader keel's 100-entity read went from 485-616 us to 413-441 us
//! p50 in `benches/src/bin/redis_load.rs`.)
//!
//! Every length the server sends is bounded before anything is allocated for it.

use super::resp::Packed;
use crate::error::{Result, StoreError};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest bulk string accepted (a row is at most 1 MiB plus its 16-byte header).
const MAX_BULK: usize = 64 << 20;
/// Most elements in one array reply.
const MAX_ARRAY: usize = 1 << 24;
/// Deepest nesting of arrays (EXEC of ZRANGE replies is 2).
const MAX_DEPTH: usize = 8;

fn proto(what: impl std::fmt::Display) -> StoreError {
    StoreError::backend("redis", format!("protocol: {what}"))
}

/// How to reach a server (parsed from a `redis://` URL by redis-rs).
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Target> {
        use redis::IntoConnectionInfo;
        let info = url
            .into_connection_info()
            .map_err(|e| StoreError::Definition(format!("Redis URL `{url:.200}`: {e}")))?;
        let (host, port) = match info.addr() {
            redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
            other => {
                return Err(StoreError::Definition(format!(
                    "Redis URL `{url:.200}`: only plain TCP is supported, not {other:?}"
                )))
            }
        };
        let r = info.redis_settings();
        Ok(Target {
            host,
            port,
            db: r.db(),
            username: r.username().map(str::to_string),
            password: r.password().map(str::to_string),
        })
    }
}

/// One open connection.
pub(super) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Set when a request failed midway: the stream's state is unknown, the pool drops it.
    pub(super) broken: bool,
    /// The invalidation listener generation this connection's `CLIENT TRACKING` redirects to
    /// (see `tracking.rs`), when it has been set up.
    pub(super) tracked: Option<u64>,
}

impl Conn {
    /// Connects with a timeout, sets the per-read/write timeouts, authenticates and selects
    /// the database when the URL asks.
    pub(super) fn open(t: &Target, connect: Duration, io: Duration) -> Result<Conn> {
        let unavailable = |e: std::io::Error| {
            StoreError::backend("redis", format!("connecting to {}:{}: {e}", t.host, t.port))
        };
        let addrs = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(unavailable)?;
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, connect) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                return Err(unavailable(last.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                })))
            }
        };
        stream.set_nodelay(true).map_err(unavailable)?;
        stream.set_read_timeout(Some(io)).map_err(unavailable)?;
        stream.set_write_timeout(Some(io)).map_err(unavailable)?;
        let mut c = Conn {
            stream,
            buf: Vec::with_capacity(16 << 10),
            broken: false,
            tracked: None,
        };
        let mut hello = Packed::default();
        if let Some(p) = &t.password {
            match &t.username {
                Some(u) => hello.cmd(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
                None => hello.cmd(&[b"AUTH", p.as_bytes()]),
            };
        }
        if t.db != 0 {
            hello.cmd(&[b"SELECT", t.db.to_string().as_bytes()]);
        }
        if hello.count > 0 {
            let r = c.request(&hello)?;
            if let Some(e) = r.first_error() {
                return Err(e);
            }
        }
        Ok(c)
    }

    /// Sends `p` and reads its replies. An I/O failure (timeout, reset) marks the connection
    /// broken.
    pub(super) fn request(&mut self, p: &Packed) -> Result<Response> {
        let r = self.exchange(p);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// Sends `p` without reading its replies (a subscribed connection reads them with
    /// [`Conn::poll`]).
    pub(super) fn send(&mut self, p: &Packed) -> Result<()> {
        self.stream
            .write_all(&p.bytes)
            .map_err(|e| StoreError::backend("redis", e))
    }

    /// The next complete reply on a subscribed connection, or `None` when nothing complete
    /// arrived within the read timeout.
    pub(super) fn poll(&mut self) -> Result<Option<Response>> {
        let mut chunk = [0u8; 16 << 10];
        loop {
            if let Some(end) = skip(&self.buf, 0, 0)? {
                let rest = self.buf.split_off(end);
                let buf = std::mem::replace(&mut self.buf, rest);
                return Response::index(buf, 1).map(Some);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(StoreError::backend(
                        "redis",
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(StoreError::backend("redis", e)),
            }
        }
    }

    fn exchange(&mut self, p: &Packed) -> Result<Response> {
        let io = |e: std::io::Error| StoreError::backend("redis", e);
        self.stream.write_all(&p.bytes).map_err(io)?;
        self.buf.clear();
        let mut pos = 0;
        let mut done = 0;
        let mut chunk = [0u8; 64 << 10];
        while done < p.count {
            match skip(&self.buf, pos, 0)? {
                Some(next) => {
                    pos = next;
                    done += 1;
                }
                None => {
                    let n = self.stream.read(&mut chunk).map_err(io)?;
                    if n == 0 {
                        return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        if pos != self.buf.len() {
            return Err(proto("more bytes than the replies asked for"));
        }
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(pos.max(16 << 10)));
        Response::index(buf, p.count)
    }
}

/// One token of a reply, in pre-order; byte ranges point into the response's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Nil,
    Int(i64),
    Status(u32, u32),
    Error(u32, u32),
    Bulk(u32, u32),
    /// An array of `n` elements; its subtree ends before token `end`.
    Array {
        n: u32,
        end: u32,
    },
}

/// The replies of one request: the bytes as received, and their tokens.
#[derive(Debug)]
pub(super) struct Response {
    buf: Vec<u8>,
    toks: Vec<Tok>,
    /// Token index of each top-level reply.
    tops: Vec<u32>,
}

/// One reply of a [`Response`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply<'a> {
    resp: &'a Response,
    at: u32,
}

impl Response {
    fn index(buf: Vec<u8>, count: usize) -> Result<Response> {
        let mut toks = Vec::with_capacity(count * 2);
        let mut tops = Vec::with_capacity(count);
        let mut pos = 0;
        for _ in 0..count {
            tops.push(toks.len() as u32);
            pos = tokens(&buf, pos, &mut toks, 0)?;
        }
        Ok(Response { buf, toks, tops })
    }

    /// The top-level replies.
    pub(super) fn replies(&self) -> Vec<Reply<'_>> {
        self.tops
            .iter()
            .map(|&at| Reply { resp: self, at })
            .collect()
    }

    /// The last top-level reply.
    pub(super) fn last(&self) -> Option<Reply<'_>> {
        self.tops.last().map(|&at| Reply { resp: self, at })
    }

    /// Whether any error reply starts with `code` (`NOSCRIPT`).
    pub(super) fn has_error(&self, code: &[u8]) -> bool {
        self.toks.iter().any(|t| match *t {
            Tok::Error(s, e) => self.buf[s as usize..e as usize].starts_with(code),
            _ => false,
        })
    }

    /// The first server error anywhere in the replies.
    pub(super) fn first_error(&self) -> Option<StoreError> {
        self.toks.iter().find_map(|t| match *t {
            Tok::Error(s, e) => Some(server_error(&self.buf[s as usize..e as usize])),
            _ => None,
        })
    }
}

/// A server's error reply as a typed error (its text kept, e.g. `WRONGTYPE ...`).
pub(super) fn server_error(text: &[u8]) -> StoreError {
    StoreError::backend("redis", String::from_utf8_lossy(text).into_owned())
}

impl<'a> Reply<'a> {
    fn tok(&self) -> Tok {
        self.resp.toks[self.at as usize]
    }

    fn bytes(&self, s: u32, e: u32) -> &'a [u8] {
        &self.resp.buf[s as usize..e as usize]
    }

    /// Whether it is a nil bulk string or nil array.
    pub(super) fn is_nil(&self) -> bool {
        self.tok() == Tok::Nil
    }

    /// The bytes of a bulk string.
    pub(super) fn bulk(&self) -> Option<&'a [u8]> {
        match self.tok() {
            Tok::Bulk(s, e) => Some(self.bytes(s, e)),
            _ => None,
        }
    }

    /// A status reply (`+OK`) or bulk string, as bytes.
    pub(super) fn text(&self) -> Option<&'a [u8]> {
        match self.tok() {
            Tok::Bulk(s, e) | Tok::Status(s, e) => Some(self.bytes(s, e)),
            _ => None,
        }
    }

    /// An integer reply.
    pub(super) fn int(&self) -> Option<i64> {
        match self.tok() {
            Tok::Int(i) => Some(i),
            _ => None,
        }
    }

    /// An error reply's text (`NOSCRIPT ...`, `MOVED 3999 127.0.0.1:6381`).
    pub(super) fn error(&self) -> Option<&'a [u8]> {
        match self.tok() {
            Tok::Error(s, e) => Some(self.bytes(s, e)),
            _ => None,
        }
    }

    /// The elements of an array reply (`None` for anything else).
    pub(super) fn items(&self) -> Option<Vec<Reply<'a>>> {
        let Tok::Array { n, .. } = self.tok() else {
            return None;
        };
        let mut out = Vec::with_capacity(n as usize);
        let mut at = self.at + 1;
        for _ in 0..n {
            out.push(Reply {
                resp: self.resp,
                at,
            });
            at = match self.resp.toks[at as usize] {
                Tok::Array { end, .. } => end,
                _ => at + 1,
            };
        }
        Some(out)
    }

    /// The first element of an array reply: `Some(None)` for an empty array.
    pub(super) fn first_item(&self) -> Option<Option<Reply<'a>>> {
        match self.tok() {
            Tok::Array { n: 0, .. } => Some(None),
            Tok::Array { .. } => Some(Some(Reply {
                resp: self.resp,
                at: self.at + 1,
            })),
            _ => None,
        }
    }

    /// A server error anywhere in this reply, as a typed error.
    pub(super) fn first_error(&self) -> Option<StoreError> {
        let end = match self.tok() {
            Tok::Array { end, .. } => end,
            _ => self.at + 1,
        };
        self.resp.toks[self.at as usize..end as usize]
            .iter()
            .find_map(|t| match *t {
                Tok::Error(s, e) => Some(server_error(self.bytes(s, e))),
                _ => None,
            })
    }
}

/// The line starting at `pos` (without CRLF) and the position after it; `None` when the CRLF
/// has not arrived yet.
fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..i], pos + i + 2))
}

fn number(s: &[u8]) -> Result<i64> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| proto("a length or integer that is not a number"))
}

/// Checks that one complete reply starts at `pos`: its end, or `None` when more bytes are
/// needed. Lengths are bounded before they are trusted.
fn skip(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>> {
    if depth > MAX_DEPTH {
        return Err(proto("arrays nested too deep"));
    }
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((head, next)) = line(buf, pos + 1) else {
        // Lengths fit in 64 bytes; status and error lines in 64 KiB.
        let limit = if matches!(kind, b'+' | b'-') {
            64 << 10
        } else {
            64
        };
        if buf.len() - pos > limit {
            return Err(proto("a reply line without its end"));
        }
        return Ok(None);
    };
    match kind {
        b'+' | b'-' => Ok(Some(next)),
        b':' => number(head).map(|_| Some(next)),
        b'$' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Some(next));
            }
            let n = usize::try_from(n).map_err(|_| proto("bulk length"))?;
            if n > MAX_BULK {
                return Err(proto(format!(
                    "a bulk string of {n} bytes (limit {MAX_BULK})"
                )));
            }
            let end = next + n + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(proto("a bulk string without its CRLF"));
            }
            Ok(Some(end))
        }
        b'*' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Some(next));
            }
            let n = usize::try_from(n).map_err(|_| proto("array length"))?;
            if n > MAX_ARRAY {
                return Err(proto(format!(
                    "an array of {n} elements (limit {MAX_ARRAY})"
                )));
            }
            let mut at = next;
            for _ in 0..n {
                match skip(buf, at, depth + 1)? {
                    Some(e) => at = e,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(proto(format!("a reply starting with byte {other:#04x}"))),
    }
}

/// Appends the tokens of the complete reply at `pos` (checked by [`skip`]); returns its end.
fn tokens(buf: &[u8], pos: usize, toks: &mut Vec<Tok>, depth: usize) -> Result<usize> {
    if depth > MAX_DEPTH || buf.len() > u32::MAX as usize {
        return Err(proto("reply too large or too deep"));
    }
    let kind = *buf.get(pos).ok_or_else(|| proto("truncated reply"))?;
    let (head, next) = line(buf, pos + 1).ok_or_else(|| proto("truncated reply"))?;
    let range = |s: usize, e: usize| (s as u32, e as u32);
    match kind {
        b'+' => {
            let (s, e) = range(pos + 1, next - 2);
            toks.push(Tok::Status(s, e));
            Ok(next)
        }
        b'-' => {
            let (s, e) = range(pos + 1, next - 2);
            toks.push(Tok::Error(s, e));
            Ok(next)
        }
        b':' => {
            toks.push(Tok::Int(number(head)?));
            Ok(next)
        }
        b'$' => {
            let n = number(head)?;
            if n < 0 {
                toks.push(Tok::Nil);
                return Ok(next);
            }
            let end = next + n as usize;
            if end + 2 > buf.len() {
                return Err(proto("truncated bulk string"));
            }
            let (s, e) = range(next, end);
            toks.push(Tok::Bulk(s, e));
            Ok(end + 2)
        }
        b'*' => {
            let n = number(head)?;
            if n < 0 {
                toks.push(Tok::Nil);
                return Ok(next);
            }
            let at = toks.len();
            toks.push(Tok::Array {
                n: n as u32,
                end: 0,
            });
            let mut p = next;
            for _ in 0..n {
                p = tokens(buf, p, toks, depth + 1)?;
            }
            let end = toks.len() as u32;
            toks[at] = Tok::Array { n: n as u32, end };
            Ok(p)
        }
        other => Err(proto(format!("a reply starting with byte {other:#04x}"))),
    }
}

#[doc(hidden)]
/// Indexes `count` replies from raw bytes: the fuzz target's entry (no panic, no unbounded
/// allocation, whatever the bytes).
pub fn fuzz_replies(bytes: &[u8], count: usize) -> bool {
    let mut pos = 0;
    for _ in 0..count.min(64) {
        match skip(bytes, pos, 0) {
            Ok(Some(next)) => pos = next,
            _ => return false,
        }
    }
    Response::index(bytes[..pos].to_vec(), count.min(64)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_indexed_in_place() {
        let raw = b"+OK\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n*1\r\n$1\r\nx\r\n-ERR no\r\n*0\r\n";
        assert_eq!(skip(raw, 0, 0).unwrap(), Some(5));
        let r = Response::index(raw.to_vec(), 6).unwrap();
        let rs = r.replies();
        assert_eq!(rs[0].text(), Some(&b"OK"[..]));
        assert_eq!(rs[1].int(), Some(42));
        assert_eq!(rs[2].bulk(), Some(&b"abc"[..]));
        assert!(rs[3].is_nil());
        let items = rs[4].items().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].first_item().unwrap().unwrap().bulk(),
            Some(&b"x"[..])
        );
        assert_eq!(items[1].error(), Some(&b"ERR no"[..]));
        assert!(rs[4].first_error().is_some());
        assert!(matches!(rs[5].first_item(), Some(None)));
        assert!(rs[2].first_error().is_none());
    }

    #[test]
    fn partial_and_hostile_replies() {
        for cut in 0..12 {
            let raw = b"*1\r\n$3\r\nabc\r\n";
            assert_eq!(skip(&raw[..cut], 0, 0).unwrap(), None, "cut at {cut}");
        }
        assert!(skip(b"$99999999999\r\n", 0, 0).is_err());
        assert!(skip(b"*99999999999\r\n", 0, 0).is_err());
        assert!(skip(b"$3\r\nabcXY", 0, 0).is_err());
        assert!(skip(b"?\r\n", 0, 0).is_err());
        assert!(skip(b"$x\r\n", 0, 0).is_err());
        let deep = "*1\r\n".repeat(20);
        assert!(skip(deep.as_bytes(), 0, 0).is_err());
        assert!(!fuzz_replies(b"*1\r\n", 1));
        assert!(fuzz_replies(b":1\r\n", 1));
    }
}
