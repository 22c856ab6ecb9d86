//! The listener: one hyper HTTP/1.1 connection per accepted socket, with the limits of
//! [`ServerConfig`] enforced before any handler runs.
//!
//! - **Connections** beyond [`ServerConfig::max_connections`] are answered `503` at once and
//!   closed, so a flood of idle sockets cannot exhaust the process's descriptors; accept errors
//!   (`EMFILE` when descriptors run out anyway) back off 50 ms and the loop carries on.
//! - **Headers** must arrive within [`ServerConfig::header_timeout`]; the same clock runs while
//!   a keep-alive connection waits for its next request, so it is also the idle timeout
//!   (slow-header clients and idle sockets are closed).
//! - **Bodies** must arrive within [`ServerConfig::body_timeout`] (`408` otherwise).
//! - **Requests in flight** beyond [`ServerConfig::max_concurrent_requests`] get `503` at once
//!   (load shedding: nothing queues without bound).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::AdminAccess;
use crate::deployment::Deployment;
use crate::{Result, ServeError};

/// Largest request head (request line and headers) read, bytes.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// Server settings: address, admin access and every limit a client could otherwise push.
/// Build it from [`ServerConfig::default`] and override fields.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address (default `127.0.0.1:8000`; port 0 picks a free port).
    pub addr: SocketAddr,
    /// Bearer token for `/admin` calls. `None` (the default) disables the admin endpoints:
    /// they answer 403. [`crate::http::generate_admin_token`] writes a fresh one to a private
    /// file.
    pub admin_token: Option<String>,
    /// `Host` header values (without port) admin calls may carry; empty: any. The default
    /// lists the loopback names, which defeats DNS rebinding against a loopback server.
    pub admin_hosts: Vec<String>,
    /// Largest request body accepted, bytes (default 16 MiB).
    pub max_body_bytes: usize,
    /// Most rows one inference request may carry (default 65,536).
    pub max_rows: usize,
    /// Most values one response may hold: rows times the model's outputs per row (default
    /// 4,194,304, about 32 MiB as binary FP64). A multi-class model's batch over this is
    /// refused before scoring.
    pub max_response_values: usize,
    /// Time allowed for a request's headers, and for an idle keep-alive connection to start
    /// its next request (default 10 s).
    pub header_timeout: Duration,
    /// Time allowed for a request's body to arrive (default 30 s).
    pub body_timeout: Duration,
    /// Open connections at most (default 4,096, or less when the descriptor limit is lower:
    /// the limit minus 64 reserved for the process's own files).
    pub max_connections: usize,
    /// Requests handled at once at most; more get 503 (default 512).
    pub max_concurrent_requests: usize,
    /// Runtime worker threads (0: one per core).
    pub threads: usize,
    /// Where to serve the same protocol over gRPC as well (feature `grpc`; default `None`:
    /// HTTP only). Requests share the models, limits and in-flight cap with HTTP.
    pub grpc_addr: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            admin_token: None,
            admin_hosts: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
            max_body_bytes: 16 << 20,
            max_rows: 65_536,
            max_response_values: 4 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: default_max_connections(),
            max_concurrent_requests: 512,
            threads: 0,
            grpc_addr: None,
        }
    }
}

/// 4,096, or the soft descriptor limit minus 64 when that is lower (at least 16).
fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|v| v.parse::<usize>().ok());
    match soft {
        Some(n) => n.saturating_sub(64).clamp(16, 4096),
        None => 4096,
    }
}

/// Counters of the listener, exported on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ListenerStats {
    /// Connections refused with 503 because `max_connections` were open.
    pub refused: AtomicU64,
    /// Accept errors (descriptors exhausted...), each followed by a back-off.
    pub accept_errors: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// A server running on its own thread and runtime.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl RunningServer {
    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound gRPC address, when [`ServerConfig::grpc_addr`] asked for one.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Stops accepting, finishes in-flight requests (10 s at most), and joins the server
    /// thread.
    pub fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    /// Blocks until the server ends (it runs until [`RunningServer::stop`] or process exit).
    pub fn wait(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => Ok(r?),
            Some(Err(_)) => Err(ServeError::Config("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `cfg.addr` and serves `deployments` on a new thread with its own runtime. Refuses a
/// non-loopback address with admin enabled but an empty token, and limits of zero.
pub fn start(deployments: Vec<Arc<Deployment>>, cfg: ServerConfig) -> Result<RunningServer> {
    if cfg
        .admin_token
        .as_deref()
        .is_some_and(|t| t.trim().len() < 16)
    {
        return Err(ServeError::Config(
            "the admin token must have at least 16 characters".into(),
        ));
    }
    for (name, v) in [
        ("max_body_bytes", cfg.max_body_bytes),
        ("max_rows", cfg.max_rows),
        ("max_response_values", cfg.max_response_values),
        ("max_connections", cfg.max_connections),
        ("max_concurrent_requests", cfg.max_concurrent_requests),
    ] {
        if v == 0 {
            return Err(ServeError::Config(format!("{name} must be at least 1")));
        }
    }
    if cfg.header_timeout.is_zero() || cfg.body_timeout.is_zero() {
        return Err(ServeError::Config("timeouts must be positive".into()));
    }
    let stats = Arc::new(ListenerStats::default());
    let admin = AdminAccess {
        token: cfg.admin_token.clone(),
        hosts: cfg.admin_hosts.clone(),
    };
    let state = super::app_state(deployments, admin, &cfg, Arc::clone(&stats))?;
    let app = super::routes(Arc::clone(&state));
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("keel-http")
        .enable_io()
        // Timeouts and the accept back-off need the timer driver.
        .enable_time()
        .build()?;
    let listener = std::net::TcpListener::bind(cfg.addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    #[cfg(not(feature = "grpc"))]
    if cfg.grpc_addr.is_some() {
        return Err(ServeError::Config(
            "gRPC needs keel-serve's `grpc` feature".into(),
        ));
    }
    #[cfg(feature = "grpc")]
    let grpc = match cfg.grpc_addr {
        Some(a) => {
            let l = std::net::TcpListener::bind(a)?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    #[cfg(feature = "grpc")]
    let grpc_addr = grpc.as_ref().map(|l| l.local_addr()).transpose()?;
    #[cfg(not(feature = "grpc"))]
    let grpc_addr = None;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("keel-http-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                #[cfg(feature = "grpc")]
                let (grpc_stop, grpc_task) = match grpc {
                    Some(l) => {
                        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                        let incoming = tokio_stream::wrappers::TcpListenerStream::new(
                            tokio::net::TcpListener::from_std(l)?,
                        );
                        let svc = super::grpc::service(Arc::clone(&state));
                        let task = tokio::spawn(
                            tonic::transport::Server::builder()
                                .concurrency_limit_per_connection(256)
                                .tcp_nodelay(true)
                                .add_service(svc)
                                .serve_with_incoming_shutdown(incoming, async {
                                    let _ = stop_rx.await;
                                }),
                        );
                        (Some(stop_tx), Some(task))
                    }
                    None => (None, None),
                };
                accept_loop(listener, app, cfg, stats, rx).await;
                #[cfg(feature = "grpc")]
                {
                    if let Some(t) = grpc_stop {
                        let _ = t.send(());
                    }
                    if let Some(task) = grpc_task {
                        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
                    }
                }
                #[cfg(not(feature = "grpc"))]
                drop(state);
                Ok(())
            })
        })?;
    Ok(RunningServer {
        addr,
        grpc_addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cfg: ServerConfig,
    stats: Arc<ListenerStats>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    // Connections watch this; sending on it starts their graceful shutdown.
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // EMFILE/ENFILE/ENOBUFS: wait for descriptors to come back; a reset
                    // before accept: just the next one.
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let mut close = close_rx.clone();
        let header_timeout = cfg.header_timeout;
        let stats = Arc::clone(&stats);
        stats.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                // A request head (line and headers) is at most 64 KiB (431 otherwise); the
                // read buffer, so each connection's memory, stays that small.
                .max_buf_size(MAX_HEAD_BYTES)
                .max_header_size(MAX_HEAD_BYTES)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(JsonProtocolErrors::new(stream)), svc);
            tokio::pin!(conn);
            let mut closing = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    changed = close.changed(), if !closing => {
                        let _ = changed;
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    // Stop accepting; let in-flight requests finish (10 s at most).
    drop(listener);
    let _ = close_tx.send(true);
    let all = u32::try_from(cfg.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all)).await;
}

/// Answers a connection over the cap with a JSON 503 and closes it, within a second.
async fn refuse(mut stream: tokio::net::TcpStream) {
    const BODY: &str = r#"{"error":"too many connections; retry later"}"#;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        // Read what the client sent first (a bounded peek), so closing does not reset the
        // connection before the client reads the answer.
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// hyper answers malformed HTTP itself, before any handler runs (400 unparsable request, 414
/// URI too long, 431 headers too large), with an empty body. This writer turns those answers
/// into the documented JSON error body: a response head for a 4xx with `content-length: 0`
/// written in one piece is one of them (keel's own errors always carry a JSON body).
struct JsonProtocolErrors<T> {
    inner: T,
    /// A rewritten response still to be written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonProtocolErrors<T> {
    fn new(inner: T) -> Self {
        JsonProtocolErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The JSON version of one of hyper's empty error responses, or `None` for anything else.
fn rewrite_protocol_error(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.1 4") || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(&buf[..buf.len() - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let headers: Vec<&str> = lines.collect();
    let empty = headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"));
    if !empty {
        return None;
    }
    let message = match status_line.get(9..12)? {
        "400" => "malformed HTTP request",
        "414" => "request URI too long",
        "431" => "request header fields too large",
        _ => status_line.get(13..).unwrap_or("error"),
    };
    let body = format!("{{\"error\":\"{message}\"}}");
    let mut out = format!("{status_line}\r\ncontent-type: application/json\r\n");
    for h in headers {
        if !h.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    Some(out.into_bytes())
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for JsonProtocolErrors<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> JsonProtocolErrors<T> {
    /// Writes what is pending; ready when nothing is.
    fn drain(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.written < self.pending.len() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..])
            {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for JsonProtocolErrors<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        match self.drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some(json) = rewrite_protocol_error(buf) {
            self.pending = json;
            // Start writing now; the rest goes out on the next write, flush or shutdown.
            if let Poll::Ready(Err(e)) = self.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        match self.drain(cx) {
            Poll::Ready(Ok(())) => std::pin::Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        match self.drain(cx) {
            Poll::Ready(Ok(())) => std::pin::Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite_protocol_error;

    #[test]
    fn hypers_empty_error_answers_become_json() {
        let out = rewrite_protocol_error(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let body = r#"{"error":"request header fields too large"}"#;
        assert!(
            text.starts_with(
                "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\ndate: x\r\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("content-length: {}\r\n\r\n{body}", body.len())),
            "{text}"
        );
        // keel's own answers (JSON bodies) and successes pass through.
        assert!(rewrite_protocol_error(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 28\r\n\r\n").is_none());
        assert!(rewrite_protocol_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
