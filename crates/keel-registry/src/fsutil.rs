//! Crash-safe file primitives: write to a temporary name, fsync, rename, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{RegistryError, Result};

static NONCE: AtomicU64 = AtomicU64::new(0);

/// A name unique within this process and unlikely across processes.
pub(crate) fn nonce() -> String {
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{:x}-{n:x}", std::process::id(), t)
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// fsyncs a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `bytes` to `dir/name` atomically: readers see the old content or the new, never a
/// mix, and a crash leaves one of the two.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".tmp-{name}-{}", nonce()));
    write_synced(&tmp, bytes)?;
    let dst = dir.join(name);
    fs::rename(&tmp, &dst).map_err(io(&dst))?;
    sync_dir(dir)
}

/// Creates `path` with `bytes` and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Reads a file, bounded: registry records are small, blobs are checked against their
/// manifest size before reading.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.len() > limit {
        return Err(RegistryError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{} bytes, more than the {limit} expected", meta.len()),
        });
    }
    fs::read(path).map_err(io(path))
}

/// Removes leftovers of interrupted writes (`.tmp-*` files, `.staging-*` directories).
pub(crate) fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") {
            let _ = fs::remove_file(e.path());
        } else if name.starts_with(".staging-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// An advisory lock on `dir/LOCK`, held for the guard's lifetime. Exclusive: read-modify-write
/// cycles (aliases, version numbers) and the sweep of leftovers at open. Shared: writes that
/// only add or atomically replace their own files (run records, artifacts), so any number run
/// at once while a sweep never deletes a temporary file another process is about to rename.
pub(crate) struct DirLock {
    file: File,
}

impl DirLock {
    /// Takes the exclusive lock (waits for every holder).
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        DirLock::take(dir, true)
    }

    /// Takes a shared lock (waits only for an exclusive holder).
    pub(crate) fn shared(dir: &Path) -> Result<DirLock> {
        DirLock::take(dir, false)
    }

    fn take(dir: &Path, exclusive: bool) -> Result<DirLock> {
        let path: PathBuf = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        if exclusive {
            file.lock().map_err(io(&path))?;
        } else {
            file.lock_shared().map_err(io(&path))?;
        }
        Ok(DirLock { file })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Checks a user-supplied name used as a path component.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName {
            what,
            name: name.chars().take(140).collect(),
        })
    }
}
