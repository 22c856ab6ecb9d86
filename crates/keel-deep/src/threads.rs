//! Explicit thread counts for the models that run through candle (sequence encoder, CNN).
//!
//! candle's CPU kernels split work with rayon on the *current* pool, sized by
//! `RAYON_NUM_THREADS` or the machine. Running a call inside a pool of `n` threads bounds it to
//! `n`; pools are built once per size and reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::{DeepError, Result};

/// Largest thread count accepted.
pub const MAX_THREADS: usize = 256;

pub(crate) fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("keel-deep-{threads}-{i}"))
            .build()
            .map_err(|e| DeepError::Config(format!("thread pool: {e}")))?,
    );
    pools.insert(threads, p.clone());
    Ok(p)
}

/// Runs `f` with candle's parallelism bounded to `threads` threads.
pub(crate) fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    if threads == 0 || threads > MAX_THREADS {
        return Err(DeepError::Config(format!(
            "{threads} threads (1..={MAX_THREADS})"
        )));
    }
    Ok(pool(threads)?.install(f))
}
