//! Latency histograms, counters, the bounded prediction log and the Prometheus families.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use keel_monitor::PredictionRecord;
use keel_store::Value;

use super::{Deployment, Key, Route};
use crate::metrics::Family;

pub(super) struct Hist(pub(super) Mutex<Histogram<u64>>);

impl Hist {
    pub(super) fn new() -> Hist {
        Hist(Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds"),
        ))
    }
    pub(super) fn record(&self, v: u64) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = h.record(v.clamp(1, 60_000_000_000));
    }
    pub(super) fn quantile(&self, q: f64) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .value_at_quantile(q)
    }
    pub(super) fn len(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    /// `(count, mean)` of the recorded values.
    pub(super) fn count_mean(&self) -> (u64, f64) {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (h.len(), h.mean())
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) errors: AtomicU64,
}

/// The sampled prediction log: bounded in records and in bytes.
#[derive(Default)]
pub(super) struct Log {
    pub(super) records: VecDeque<(PredictionRecord, usize)>,
    pub(super) bytes: usize,
}

impl Log {
    pub(super) fn push(&mut self, rec: PredictionRecord, max_records: usize, max_bytes: usize) {
        let size = record_bytes(&rec);
        while !self.records.is_empty()
            && (self.records.len() >= max_records || self.bytes + size > max_bytes)
        {
            if let Some((_, n)) = self.records.pop_front() {
                self.bytes -= n;
            }
        }
        if size <= max_bytes {
            self.bytes += size;
            self.records.push_back((rec, size));
        }
    }
}

/// Estimated heap footprint of a logged record.
pub(super) fn record_bytes(r: &PredictionRecord) -> usize {
    let value = |v: &Value| match v {
        Value::Str(s) => s.capacity(),
        _ => 0,
    };
    std::mem::size_of::<PredictionRecord>()
        + r.request_id.capacity()
        + r.route.capacity()
        + r.inputs
            .iter()
            .map(|(n, v)| std::mem::size_of::<(String, Value)>() + n.capacity() + value(v))
            .sum::<usize>()
}

impl Deployment {
    pub(super) fn metrics_for(&self, key: Key) -> Arc<(Hist, Counters)> {
        if let Some(m) = self
            .latency
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return m.clone();
        }
        self.latency
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new((Hist::new(), Counters::default())))
            .clone()
    }

    /// `(requests, errors, p50 us, p99 us)` of a version on a route.
    pub fn route_stats(&self, version: u32, route: Route) -> (u64, u64, f64, f64) {
        let m = self.metrics_for((version, route));
        (
            m.1.requests.load(Ordering::Relaxed),
            m.1.errors.load(Ordering::Relaxed),
            m.0.quantile(0.5) as f64 / 1e3,
            m.0.quantile(0.99) as f64 / 1e3,
        )
    }

    /// Takes the logged predictions (oldest first), e.g. for a `keel_monitor::Monitor`.
    pub fn drain_log(&self) -> Vec<PredictionRecord> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.bytes = 0;
        log.records.drain(..).map(|(r, _)| r).collect()
    }

    /// Prometheus text exposition (format 0.0.4, with HELP and TYPE) of this deployment's
    /// counters, latency summaries per version and route, missing-feature counts and shadow
    /// statistics.
    pub fn prometheus(&self) -> String {
        crate::metrics::render(self.metric_families())
    }

    pub(crate) fn metric_families(&self) -> Vec<Family> {
        let mut requests = Family::new(
            "keel_requests_total",
            "counter",
            "Requests answered, by model version and route.",
        );
        let mut errors = Family::new(
            "keel_errors_total",
            "counter",
            "Requests that failed, by model version and route.",
        );
        let mut latency = Family::new(
            "keel_latency_seconds",
            "summary",
            "Time to answer a request in process (lookup, transforms, model).",
        );
        let map = self.latency.read().unwrap_or_else(|p| p.into_inner());
        for ((v, r), m) in map.iter() {
            let l = format!(
                "model=\"{}\",version=\"{v}\",route=\"{}\"",
                self.name,
                r.as_str()
            );
            requests.samples.push(format!(
                "keel_requests_total{{{l}}} {}",
                m.1.requests.load(Ordering::Relaxed)
            ));
            errors.samples.push(format!(
                "keel_errors_total{{{l}}} {}",
                m.1.errors.load(Ordering::Relaxed)
            ));
            for q in [0.5, 0.99, 0.999] {
                latency.samples.push(format!(
                    "keel_latency_seconds{{{l},quantile=\"{q}\"}} {:e}",
                    m.0.quantile(q) as f64 / 1e9
                ));
            }
            let (count, mean) = m.0.count_mean();
            latency.samples.push(format!(
                "keel_latency_seconds_sum{{{l}}} {:e}",
                mean * count as f64 / 1e9
            ));
            latency
                .samples
                .push(format!("keel_latency_seconds_count{{{l}}} {count}"));
        }
        let model = |name: &'static str, kind: &'static str, help: &'static str, v: String| {
            Family::of_model(name, kind, help, &self.name, v)
        };
        let sh = self.shadow_stats();
        let agreement = if sh.compared == 0 {
            0.0
        } else {
            sh.agreed as f64 / sh.compared as f64
        };
        let mut families = vec![
            requests,
            errors,
            latency,
            model(
                "keel_missing_features_total",
                "counter",
                "Stored features scored as missing (not found or expired).",
                self.missing_features.load(Ordering::Relaxed).to_string(),
            ),
            model(
                "keel_unknown_entities_total",
                "counter",
                "Requests whose entity had no stored row at all (refused or imputed per on_missing).",
                self.unknown_entities.load(Ordering::Relaxed).to_string(),
            ),
            model(
                "keel_shadow_compared_total",
                "counter",
                "Mirrored requests scored by both champion and shadow challenger.",
                sh.compared.to_string(),
            ),
            model(
                "keel_shadow_dropped_total",
                "counter",
                "Mirrored requests dropped because the shadow queue was full.",
                sh.dropped.to_string(),
            ),
            model(
                "keel_shadow_agreement",
                "gauge",
                "Share of compared requests on which champion and shadow agree.",
                agreement.to_string(),
            ),
        ];
        families.extend(self.follow_families());
        families
    }
}
