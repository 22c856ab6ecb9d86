//! Gate evidence across a fleet: each replica publishes what it saw of the challenger (shadow
//! comparisons, canary requests, errors, latency histograms) through the registry; a gate
//! merges every replica's before it decides. Counters add; HDR histograms merge exactly (each
//! recorded bucket with its count).

use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;
use keel_registry::rollout::{CANARY, SHADOW};
use serde::{Deserialize, Serialize};

use super::telemetry::Hist;
use super::{Deployment, Route, ShadowStats, Stage, State};
use crate::{Result, ServeError};

/// Most distinct histogram buckets one replica publishes per histogram (the registry bounds
/// evidence at `keel_registry::MAX_EVIDENCE` bytes).
const MAX_BUCKETS: usize = 1200;

/// One replica's evidence about the challenger it serves, as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The replica that saw it.
    pub replica: String,
    /// When it was taken, ms since the Unix epoch.
    pub at_ms: i64,
    /// The challenger's version.
    pub challenger: u32,
    /// `shadow` or `canary`.
    pub stage: String,
    /// The audit chain link (hex) of the move that put the challenger in this stage: evidence
    /// counts only within the same stint.
    pub stint: String,
    /// Shadow: requests scored by both.
    pub compared: u64,
    /// Shadow: of which agreed.
    pub agreed: u64,
    /// Shadow: mirrored requests dropped.
    pub dropped: u64,
    /// Shadow: challenger errors.
    pub shadow_errors: u64,
    /// Shadow: sum of absolute score differences, in millionths.
    pub diff_sum_micro: u64,
    /// Shadow: absolute score difference histogram (millionths): `(bucket value, count)`.
    pub diff: Vec<(u64, u64)>,
    /// Shadow: challenger latency histogram (ns).
    pub shadow_latency: Vec<(u64, u64)>,
    /// Canary: requests the challenger answered.
    pub requests: u64,
    /// Canary: of which failed.
    pub errors: u64,
    /// Canary: latency histogram (ns).
    pub latency: Vec<(u64, u64)>,
}

/// The fleet's merged evidence a gate decided on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetEvidence {
    /// Replicas whose evidence was merged (this one included).
    pub replicas: usize,
    /// Merged shadow statistics.
    pub shadow: ShadowStats,
    /// Merged canary requests.
    pub canary_requests: u64,
    /// Merged canary errors.
    pub canary_errors: u64,
    /// Merged canary p99 latency, microseconds.
    pub canary_p99_us: f64,
}

impl FleetEvidence {
    /// The audit's summary: how many replicas and samples the gate saw.
    pub fn summary(&self) -> String {
        format!(
            "fleet evidence: {} replica(s), {} shadow comparisons, {} canary requests",
            self.replicas, self.shadow.compared, self.canary_requests
        )
    }
}

fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = h
        .iter_recorded()
        .map(|b| (b.value_iterated_to(), b.count_at_value()))
        .collect();
    // Over the bound, neighbouring buckets fold into the higher one (quantiles stay upper
    // bounds).
    while v.len() > MAX_BUCKETS {
        v = v
            .chunks(2)
            .map(|c| (c[c.len() - 1].0, c.iter().map(|b| b.1).sum()))
            .collect();
    }
    v
}

fn hist_of(h: &Hist) -> Histogram<u64> {
    h.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn add(into: &mut Histogram<u64>, buckets: &[(u64, u64)]) {
    for &(v, n) in buckets {
        let _ = into.record_n(v.clamp(1, 60_000_000_000), n);
    }
}

impl Deployment {
    /// The stint of the challenger serving in `s`: the chain link of the latest audit event
    /// that moved its stage alias to it.
    fn stint(&self, s: &State) -> Result<Option<(u32, &'static str, String)>> {
        let Some((m, stage)) = &s.challenger else {
            return Ok(None);
        };
        let alias = match stage {
            Stage::Shadow => SHADOW,
            Stage::Canary { .. } => CANARY,
        };
        let audit = self.registry.audit(&self.name)?;
        let link = audit
            .iter()
            .rev()
            .find(|e| e.alias == alias && e.to == Some(m.version()))
            .map(|e| hex::encode(e.chain))
            .unwrap_or_default();
        // A new stint of the same challenger the served state did not see change: what was
        // counted belongs to the old one.
        let mut known = self.stint.lock().unwrap_or_else(|p| p.into_inner());
        match known.as_deref() {
            Some(k) if k != link => {
                self.reset_challenger_evidence(m.version());
                *known = Some(link.clone());
            }
            None => *known = Some(link.clone()),
            _ => {}
        }
        Ok(Some((m.version(), alias, link)))
    }

    /// Forgets what was counted about `version` as a challenger (a new stint starts).
    pub(super) fn reset_challenger_evidence(&self, version: u32) {
        self.shadow.reset();
        self.latency
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(version, Route::Canary));
    }

    /// This replica's evidence about the challenger it serves now (`None` without one).
    pub fn local_evidence(&self) -> Result<Option<Evidence>> {
        let s = self.state();
        let Some((challenger, stage, stint)) = self.stint(&s)? else {
            return Ok(None);
        };
        let sh = &self.shadow;
        let canary = self.metrics_for((challenger, Route::Canary));
        Ok(Some(Evidence {
            replica: self.replica.clone(),
            at_ms: self.clock.now_ms(),
            challenger,
            stage: stage.to_string(),
            stint,
            compared: sh.compared.load(Ordering::Relaxed),
            agreed: sh.agreed.load(Ordering::Relaxed),
            dropped: sh.dropped.load(Ordering::Relaxed),
            shadow_errors: sh.errors.load(Ordering::Relaxed),
            diff_sum_micro: sh.diff_sum_micro.load(Ordering::Relaxed),
            diff: buckets(&hist_of(&sh.diff)),
            shadow_latency: buckets(&hist_of(&sh.latency)),
            requests: canary.1.requests.load(Ordering::Relaxed),
            errors: canary.1.errors.load(Ordering::Relaxed),
            latency: buckets(&hist_of(&canary.0)),
        }))
    }

    /// Publishes this replica's evidence through the registry (nothing without a
    /// challenger).
    pub fn publish_evidence(&self) -> Result<()> {
        let Some(e) = self.local_evidence()? else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&e)
            .map_err(|err| ServeError::Config(format!("evidence does not serialise: {err}")))?;
        Ok(self
            .registry
            .publish_evidence(&self.name, &self.replica, &bytes)?)
    }

    /// The challenger's evidence merged over the fleet: this replica's live counters plus
    /// every other replica's published evidence of the same challenger, stage and stint.
    pub fn fleet_evidence(&self) -> Result<FleetEvidence> {
        let Some(own) = self.local_evidence()? else {
            return Err(ServeError::Stage("no challenger".into()));
        };
        let mut all = vec![own.clone()];
        for (replica, bytes) in self.registry.evidence(&self.name)? {
            if replica == self.replica {
                continue;
            }
            match serde_json::from_slice::<Evidence>(&bytes) {
                Ok(e)
                    if e.challenger == own.challenger
                        && e.stage == own.stage
                        && e.stint == own.stint =>
                {
                    all.push(e)
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(model = %self.name, replica, error = %err,
                        "ignoring unreadable evidence")
                }
            }
        }
        let mut diff = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let mut shadow_latency = diff.clone();
        let mut latency = diff.clone();
        let mut f = FleetEvidence {
            replicas: all.len(),
            ..FleetEvidence::default()
        };
        let mut diff_sum = 0u64;
        for e in &all {
            f.shadow.compared += e.compared;
            f.shadow.agreed += e.agreed;
            f.shadow.dropped += e.dropped;
            f.shadow.errors += e.shadow_errors;
            diff_sum = diff_sum.saturating_add(e.diff_sum_micro);
            f.canary_requests += e.requests;
            f.canary_errors += e.errors;
            add(&mut diff, &e.diff);
            add(&mut shadow_latency, &e.shadow_latency);
            add(&mut latency, &e.latency);
        }
        if f.shadow.compared > 0 {
            f.shadow.mean_abs_diff = diff_sum as f64 / 1e6 / f.shadow.compared as f64;
        }
        if !diff.is_empty() {
            f.shadow.p99_abs_diff = diff.value_at_quantile(0.99) as f64 / 1e6;
        }
        f.shadow.p99_us = shadow_latency.value_at_quantile(0.99) as f64 / 1e3;
        f.canary_p99_us = latency.value_at_quantile(0.99) as f64 / 1e3;
        Ok(f)
    }
}
