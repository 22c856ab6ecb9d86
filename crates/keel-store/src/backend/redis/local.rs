//! Throwaway `redis-server` processes on free loopback ports, for tests, benchmarks and demos:
//! nothing depends on a system service. Each lives in its own temporary directory and is
//! killed when dropped.

use crate::error::{Result, StoreError};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn unavailable(why: impl std::fmt::Display) -> StoreError {
    StoreError::backend("redis", format!("local redis-server: {why}"))
}

/// A port nobody listens on right now (the OS picks it; a race with another process taking
/// it in between is retried by the callers).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// One `redis-server` on `127.0.0.1`, without persistence unless asked.
#[derive(Debug)]
pub struct LocalRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    owned_dir: bool,
}

impl LocalRedis {
    /// Starts `redis-server` (from `PATH`) on a free loopback port in a new temporary
    /// directory; `extra` are more `--option value` arguments (`["--appendonly", "yes"]`).
    pub fn start(extra: &[&str]) -> Result<LocalRedis> {
        let dir = std::env::temp_dir().join(format!(
            "keel-redis-{}-{}",
            std::process::id(),
            keel_core::fnv1a(format!("{:?}", Instant::now()).as_bytes())
        ));
        std::fs::create_dir_all(&dir)?;
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut r = LocalRedis {
                child: None,
                port,
                dir: dir.clone(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                owned_dir: true,
            };
            match r.spawn() {
                Ok(()) => return Ok(r),
                Err(e) => {
                    r.owned_dir = false;
                    last = Some(e);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| unavailable("did not start")))
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--dir", &self.dir.to_string_lossy(), "--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| unavailable(format!("cannot run redis-server ({e}); install Debian's redis-server package (scripts/bootstrap.sh does)")))?;
        self.child = Some(child);
        wait_ready(self.port, self.child.as_mut())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's working directory (its append-only file, with `--appendonly yes`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server (SIGKILL: no shutdown save). [`LocalRedis::restart`] starts it again on
    /// the same port.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory (after [`LocalRedis::kill`]).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.kill();
        if self.owned_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits up to 10 s for a server on `port` to answer `PING`.
fn wait_ready(port: u16, mut child: Option<&mut Child>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = child.as_deref_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(unavailable(format!("exited with {status}")));
            }
        }
        if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err(unavailable(format!("port {port} did not answer in 10 s")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Redis Cluster of `n` masters (no replicas) on free loopback ports, created with
/// `redis-cli --cluster create`.
#[derive(Debug)]
pub struct LocalRedisCluster {
    nodes: Vec<LocalRedis>,
}

impl LocalRedisCluster {
    /// Starts `masters` cluster-enabled servers and joins them into one cluster (every slot
    /// assigned, `cluster_state:ok`).
    pub fn start(masters: usize) -> Result<LocalRedisCluster> {
        if !(3..=16).contains(&masters) {
            return Err(unavailable("a cluster needs 3..=16 masters"));
        }
        let nodes = (0..masters)
            .map(|_| {
                LocalRedis::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| unavailable(format!("cannot run redis-cli: {e}")))?;
        if !out.status.success() {
            return Err(unavailable(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        let cluster = LocalRedisCluster { nodes };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn wait_ok(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().all(|n| {
                redis::Client::open(n.url())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(unavailable(
                    "the cluster did not reach cluster_state:ok in 20 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }

    /// The master servers.
    pub fn nodes(&self) -> &[LocalRedis] {
        &self.nodes
    }
}
