//! An open-loop load harness: requests are scheduled at a fixed arrival rate and latency is
//! measured from each request's *scheduled* start, so queueing behind a slow request is counted
//! (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// What a load run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Target arrival rate, requests per second.
    pub rate: f64,
    /// Requests scheduled.
    pub sent: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Achieved completion rate, requests per second.
    pub achieved_rate: f64,
    /// Latency quantiles from the scheduled start, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// Calls `request(i)` for `i` in `0..rate*duration`, the i-th at `start + i / rate`, from
/// `workers` threads. Latency of each call is measured from its scheduled time.
pub fn open_loop<F>(rate: f64, duration: Duration, workers: usize, request: F) -> LoadReport
where
    F: Fn(u64) -> bool + Sync,
{
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let next = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let hist = Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds"),
    );
    let start = Instant::now() + Duration::from_millis(5);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                let mut local =
                    Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("bounds");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    // Sleep most of the way (the OS wakes late by tens of microseconds), then
                    // spin, so the harness does not add its own wake-up latency.
                    let now = Instant::now();
                    if at > now + Duration::from_micros(300) {
                        std::thread::sleep(at - now - Duration::from_micros(300));
                    }
                    while Instant::now() < at {
                        std::hint::spin_loop();
                    }
                    if !request(i) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    let lat = Instant::now().saturating_duration_since(at).as_nanos() as u64;
                    let _ = local.record(lat.max(1));
                }
                let mut h = hist.lock().unwrap_or_else(|p| p.into_inner());
                let _ = h.add(&local);
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let h = hist.into_inner().unwrap_or_else(|p| p.into_inner());
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    LoadReport {
        rate,
        sent: total,
        errors: errors.load(Ordering::Relaxed),
        achieved_rate: total as f64 / elapsed,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: h.max() as f64 / 1e3,
    }
}
