//! Issue 22, finding 2: the server's limits over raw loopback sockets. Slow headers and idle
//! keep-alive connections are closed after the header timeout, a slow body gets 408, the
//! connection cap answers 503 at once, the in-flight cap sheds load with 503, and the server
//! keeps serving throughout.
#![cfg(feature = "http")]

use crate::common::*;
use keel_serve::http::{RunningServer, ServerConfig};
use keel_serve::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INFER: &str =
    r#"{"inputs":[{"name":"card_id","shape":[1],"datatype":"BYTES","data":["card1"]}]}"#;

fn server(dir: &std::path::Path, cfg: ServerConfig) -> RunningServer {
    let (reg, store) = setup(dir);
    let d = Arc::new(deployment(&reg, &store, DeploymentConfig::default()));
    serve_on_loopback(d, cfg).unwrap()
}

fn connect(s: &RunningServer) -> TcpStream {
    let c = TcpStream::connect(s.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn infer_request() -> String {
    format!(
        "POST /v2/models/fraud/infer HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{INFER}",
        INFER.len()
    )
}

/// Reads one response (status and body) from a connection whose server closes or answers with
/// a content length.
fn read_response(c: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = c.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(usize::MAX);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Whether the server closed the connection (EOF) within `within`.
fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 from hyper, then the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn alive(s: &RunningServer) {
    let mut c = connect(s);
    c.write_all(infer_request().as_bytes()).unwrap();
    let (status, body) = read_response(&mut c);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn slow_headers_idle_connections_and_slow_bodies_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        dir.path(),
        ServerConfig {
            header_timeout: Duration::from_millis(400),
            body_timeout: Duration::from_millis(400),
            ..Default::default()
        },
    );
    // Slowloris: half a request head, then silence.
    let mut slow = connect(&s);
    slow.write_all(b"POST /v2/models/fraud/infer HTTP/1.1\r\nhost: loc")
        .unwrap();
    // Idle: connected, nothing sent.
    let mut idle = connect(&s);
    // Keep-alive: one request answered, then idle.
    let mut kept = connect(&s);
    kept.write_all(infer_request().as_bytes()).unwrap();
    assert_eq!(read_response(&mut kept).0, 200);
    let t = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "slow header"
    );
    assert!(closed_within(&mut idle, Duration::from_secs(5)), "idle");
    assert!(
        closed_within(&mut kept, Duration::from_secs(5)),
        "idle keep-alive"
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // Slow body: the head arrives, the body never does.
    let mut body = connect(&s);
    body.write_all(
        b"POST /v2/models/fraud/infer HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inp",
    )
    .unwrap();
    let (status, text) = read_response(&mut body);
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("\"error\""), "{text}");
    alive(&s);
    s.stop().unwrap();
}

#[test]
fn connections_over_the_cap_get_503_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        dir.path(),
        ServerConfig {
            max_connections: 4,
            ..Default::default()
        },
    );
    let held: Vec<TcpStream> = (0..4).map(|_| connect(&s)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect(&s);
    extra.write_all(infer_request().as_bytes()).unwrap();
    let t = Instant::now();
    let (status, body) = read_response(&mut extra);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many connections"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(held);
    // Slots come back when connections close.
    std::thread::sleep(Duration::from_millis(200));
    alive(&s);
    s.stop().unwrap();
}

#[test]
fn requests_over_the_in_flight_cap_are_shed_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        dir.path(),
        ServerConfig {
            max_concurrent_requests: 1,
            ..Default::default()
        },
    );
    // A request in flight: its head is in, its body still arriving.
    let mut first = connect(&s);
    let req = infer_request();
    let (head, rest) = req.split_at(req.len() - 10);
    first.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut second = connect(&s);
    second.write_all(infer_request().as_bytes()).unwrap();
    let (status, body) = read_response(&mut second);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("in flight"), "{body}");
    first.write_all(rest.as_bytes()).unwrap();
    assert_eq!(read_response(&mut first).0, 200);
    alive(&s);
    let mut m = connect(&s);
    m.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let (_, text) = read_response(&mut m);
    assert!(text.contains("keel_http_shed_total 1"), "{text}");
    s.stop().unwrap();
}

/// Issue 22, finding 10: a long URI (414), headers over 64 KiB (431) and unparsable requests
/// (400) had plain or empty bodies; they carry the JSON error body now.
#[test]
fn protocol_errors_answer_the_documented_json_body() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), ServerConfig::default());
    let long_uri = format!(
        "GET /v2/{} HTTP/1.1\r\nhost: localhost\r\n\r\n",
        "a".repeat(10_000)
    );
    let big_header = format!(
        "GET /v2 HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    for (req, status, needle) in [
        (long_uri.as_bytes(), 414, "URI too long"),
        (big_header.as_bytes(), 431, "header fields too large"),
        (&b"GARBAGE\r\n\r\n"[..], 400, "malformed HTTP"),
    ] {
        let mut c = connect(&s);
        let _ = c.write_all(req);
        let (got, body) = read_response(&mut c);
        assert_eq!(got, status, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"].as_str().unwrap().contains(needle), "{body}");
    }
    alive(&s);
    s.stop().unwrap();
}
