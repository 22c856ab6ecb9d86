//! A throwaway `mlflow server` on a free loopback port, for tests, demos and benchmarks: a
//! SQLite backend store and a local artifact root in its own temporary directory, the whole
//! process group killed when dropped. Nothing depends on a system service.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{MlflowClient, RegistryError, Result};

/// How long a fresh server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// One `mlflow server` on `127.0.0.1`.
#[derive(Debug)]
pub struct LocalMlflow {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

fn unavailable(why: impl std::fmt::Display) -> RegistryError {
    RegistryError::Mlflow(format!("local mlflow server: {why}"))
}

impl LocalMlflow {
    /// The `mlflow` executable: `$KEEL_MLFLOW`, else the venv `scripts/mlflow-env.sh` makes
    /// (`~/.cache/keel/venv-mlflow/bin/mlflow`), else `mlflow` on `PATH`.
    pub fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("KEEL_MLFLOW") {
            return p.into();
        }
        if let Some(home) = std::env::var_os("HOME") {
            let p = PathBuf::from(home).join(".cache/keel/venv-mlflow/bin/mlflow");
            if p.exists() {
                return p;
            }
        }
        PathBuf::from("mlflow")
    }

    /// Starts a server in a new temporary directory and waits until it answers.
    pub fn start() -> Result<LocalMlflow> {
        let dir = std::env::temp_dir().join(format!(
            "keel-mlflow-{}-{}",
            std::process::id(),
            crate::fsutil::nonce()
        ));
        std::fs::create_dir_all(&dir).map_err(crate::fsutil::io(&dir))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| unavailable(format!("no free port: {e}")))?
            .port();
        let mut m = LocalMlflow {
            child: None,
            port,
            dir,
            bin: LocalMlflow::binary(),
        };
        m.spawn()?;
        Ok(m)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("server.log"))
            .map_err(crate::fsutil::io(&self.dir))?;
        let child = Command::new(&self.bin)
            .args(["server", "--host", "127.0.0.1", "--workers", "1"])
            .args(["--port", &self.port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}/mlflow.db", self.dir.display()))
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                unavailable(format!(
                    "cannot run {} ({e}); run scripts/mlflow-env.sh or set KEEL_MLFLOW",
                    self.bin.display()
                ))
            })?;
        self.child = Some(child);
        let client = MlflowClient::with_timeout(&self.url(), Duration::from_secs(5));
        let start = Instant::now();
        loop {
            if client
                .get("experiments/search", &[("max_results", "1")])
                .is_ok()
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(unavailable(format!(
                    "exited with {status} (see {})",
                    self.dir.join("server.log").display()
                )));
            }
            if start.elapsed() > START_TIMEOUT {
                self.kill();
                return Err(unavailable("did not answer within 120 s"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its directory (database, artifacts, `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (its data stays); [`LocalMlflow::restart`] brings it back on the same
    /// port.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data after [`LocalMlflow::kill`].
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for LocalMlflow {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
