//! The shadow: a bounded queue of mirrored requests, an idle-priority worker, statistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, TryRecvError, TrySendError};
use std::time::Instant;

use keel_core::ValueRef;
use keel_store::Value;
use serde::{Deserialize, Serialize};

use super::telemetry::Hist;
use super::Deployment;
use keel_model::{Input, Model};

/// Shadow comparison statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ShadowStats {
    /// Requests scored by both.
    pub compared: u64,
    /// Of which agreed.
    pub agreed: u64,
    /// Mirrored requests dropped because the queue was full.
    pub dropped: u64,
    /// Challenger errors in shadow.
    pub errors: u64,
    /// Mean absolute score difference.
    pub mean_abs_diff: f64,
    /// p99 of the absolute score difference.
    pub p99_abs_diff: f64,
    /// Challenger p99 latency in shadow, microseconds.
    pub p99_us: f64,
}

pub(super) struct Shadow {
    pub(super) compared: AtomicU64,
    pub(super) agreed: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) diff_sum_micro: AtomicU64,
    pub(super) diff: Hist,
    pub(super) latency: Hist,
}

impl Shadow {
    pub(super) fn new() -> Shadow {
        Shadow {
            compared: AtomicU64::new(0),
            agreed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            diff_sum_micro: AtomicU64::new(0),
            diff: Hist::new(),
            latency: Hist::new(),
        }
    }
}

impl Shadow {
    /// Zeroes every counter and histogram (a new challenger stint).
    pub(super) fn reset(&self) {
        for c in [
            &self.compared,
            &self.agreed,
            &self.dropped,
            &self.errors,
            &self.diff_sum_micro,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        for h in [&self.diff, &self.latency] {
            h.0.lock().unwrap_or_else(|p| p.into_inner()).reset();
        }
    }
}

pub(super) struct ShadowJob {
    pub(super) model: Model,
    pub(super) input: Mirrored,
    /// The champion's scores: every output of every row.
    pub(super) champion: Vec<f64>,
}

/// A mirrored request's input, owned by the queue.
pub(super) enum Mirrored {
    /// One tabular row's raw inputs.
    Row(Vec<Value>),
    /// A batch of texts.
    Texts(Vec<String>),
    /// A batch of tensors, row-major.
    Tensors(Vec<f32>, usize),
    /// Tabular columns (a batch that is a frame).
    Frame(keel_core::Frame),
}

impl Mirrored {
    /// An owned copy of a batch.
    pub(super) fn of(input: Input<'_>) -> Mirrored {
        match input {
            Input::Frame(f) => Mirrored::Frame(f.clone()),
            Input::Texts(t) => Mirrored::Texts(t.iter().map(|s| s.to_string()).collect()),
            Input::Tensors { data, rows } => Mirrored::Tensors(data.to_vec(), rows),
        }
    }

    /// Scores it with `model`: every output of every row.
    fn score(&self, model: &Model) -> keel_model::Result<Vec<f64>> {
        match self {
            Mirrored::Row(values) => {
                let refs: Vec<ValueRef<'_>> = values.iter().map(Value::as_ref).collect();
                match model.tabular() {
                    Some(m) => m.score(&refs),
                    None => Err(keel_model::ModelError::Shape(
                        "a tabular row mirrored to a model that reads no rows".into(),
                    )),
                }
            }
            Mirrored::Texts(t) => {
                let refs: Vec<&str> = t.iter().map(String::as_str).collect();
                model.score_batch(Input::Texts(&refs))
            }
            Mirrored::Tensors(data, rows) => {
                model.score_batch(Input::Tensors { data, rows: *rows })
            }
            Mirrored::Frame(f) => model.score_batch(Input::Frame(f)),
        }
    }
}

/// Puts the calling (shadow) thread in the lowest scheduling class: on Linux `SCHED_IDLE`, so
/// it runs only on cycles no request thread wants and a mirrored request never preempts the
/// champion; elsewhere the lowest priority. Best effort: failure leaves the default. Also used
/// by the HTTP server's bulk requests.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadPriority, ThreadSchedulePolicy,
        };
        let _ = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    }
}

impl Deployment {
    pub(super) fn mirror(&self, job: ShadowJob) {
        // No lock per mirrored request: the queue is created once, then only `try_send`.
        let tx = self.shadow_tx.get_or_init(|| {
            let (s, r) = sync_channel::<ShadowJob>(self.cfg.shadow_queue.max(1));
            let stats = self.shadow.clone();
            let tol = self.cfg.agreement_tolerance;
            std::thread::Builder::new()
                .name("keel-shadow".into())
                .spawn(move || {
                    lower_priority();
                    // Under load the worker polls (1 ms naps) instead of blocking, so a
                    // mirrored request never pays for waking it: `try_send` stays a queue
                    // push. After 100 ms without work it blocks until the next job.
                    let mut idle = 0u32;
                    loop {
                        let job = match r.try_recv() {
                            Ok(job) => {
                                idle = 0;
                                job
                            }
                            Err(TryRecvError::Empty) if idle < 100 => {
                                idle += 1;
                                std::thread::sleep(std::time::Duration::from_millis(1));
                                continue;
                            }
                            Err(TryRecvError::Empty) => match r.recv() {
                                Ok(job) => {
                                    idle = 0;
                                    job
                                }
                                Err(_) => break,
                            },
                            Err(TryRecvError::Disconnected) => break,
                        };
                        let t = Instant::now();
                        match job.input.score(&job.model) {
                            // Row by row: a batch counts one comparison per row, each over
                            // every output of its row.
                            Ok(s) if s.len() == job.champion.len() && !s.is_empty() => {
                                stats.latency.record(t.elapsed().as_nanos() as u64);
                                let width = job.model.outputs().max(1);
                                for (s, c) in s.chunks(width).zip(job.champion.chunks(width)) {
                                    let d = s
                                        .iter()
                                        .zip(c)
                                        .map(|(a, b)| (a - b).abs())
                                        .fold(0.0, f64::max);
                                    let same_side = s.len() == 1 && (s[0] >= 0.5) == (c[0] >= 0.5);
                                    stats.compared.fetch_add(1, Ordering::Relaxed);
                                    if d <= tol || same_side {
                                        stats.agreed.fetch_add(1, Ordering::Relaxed);
                                    }
                                    let micro = (d * 1e6).round().min(6e10) as u64;
                                    stats.diff_sum_micro.fetch_add(micro, Ordering::Relaxed);
                                    stats.diff.record(micro.max(1));
                                }
                            }
                            _ => {
                                stats.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
                .ok();
            s
        });
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shadow.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Shadow statistics so far.
    pub fn shadow_stats(&self) -> ShadowStats {
        let s = &self.shadow;
        let compared = s.compared.load(Ordering::Relaxed);
        ShadowStats {
            compared,
            agreed: s.agreed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            mean_abs_diff: if compared == 0 {
                0.0
            } else {
                s.diff_sum_micro.load(Ordering::Relaxed) as f64 / 1e6 / compared as f64
            },
            p99_abs_diff: if s.diff.len() == 0 {
                0.0
            } else {
                s.diff.quantile(0.99) as f64 / 1e6
            },
            p99_us: s.latency.quantile(0.99) as f64 / 1e3,
        }
    }
}
