//! Progress of long commands on stderr: on a terminal an indicatif bar with rate and ETA; in
//! a log (not a terminal) one plain line every few seconds, so CI logs show the work moving
//! without redraw noise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Runs `work` while a watcher reports `done` out of `total` units of `what` (for example
/// "lookups"), then clears the bar. `work` advances `done` (from any thread) and may set
/// `total` once it knows it.
pub fn watch<T>(
    label: &str,
    what: &str,
    total: &AtomicU64,
    done: &AtomicU64,
    work: impl FnOnce() -> T,
) -> T {
    let finished = AtomicBool::new(false);
    let terminal = std::io::stderr().is_terminal();
    std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            let bar = terminal.then(|| {
                let b = ProgressBar::with_draw_target(
                    Some(total.load(Ordering::Relaxed)),
                    ProgressDrawTarget::stderr(),
                );
                b.set_style(
                    ProgressStyle::with_template(&format!(
                        "{label} {{bar:30}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}})"
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            });
            let mut last_line = Instant::now();
            while !finished.load(Ordering::Acquire) {
                let total = total.load(Ordering::Relaxed);
                let n = done.load(Ordering::Relaxed).min(total);
                match &bar {
                    Some(b) => {
                        b.set_length(total);
                        b.set_position(n);
                    }
                    None if last_line.elapsed() >= Duration::from_secs(5) => {
                        let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
                        eprintln!("{label}: {n}/{total} {what} ({rate:.0}/s)");
                        last_line = Instant::now();
                    }
                    None => {}
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        let out = work();
        finished.store(true, Ordering::Release);
        out
    })
}

/// A reader that adds the bytes it reads to `done` (the progress of a file being parsed).
pub struct Counting<'a, R> {
    pub inner: R,
    pub done: &'a AtomicU64,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads a CSV file into a frame with a progress bar over its bytes.
pub fn read_csv(
    path: &std::path::Path,
    schema: Option<&keel::core::Schema>,
) -> anyhow::Result<keel::core::Frame> {
    use anyhow::Context;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let total = AtomicU64::new(file.metadata().map_or(0, |m| m.len()));
    let done = AtomicU64::new(0);
    let label = format!("reading {}", path.display());
    watch(&label, "bytes", &total, &done, || {
        keel::core::Frame::from_csv_reader(
            Counting {
                inner: std::io::BufReader::with_capacity(1 << 20, file),
                done: &done,
            },
            schema,
        )
    })
    .with_context(|| format!("reading {}", path.display()))
}
