//! Following the registry: a replica reads its model's rollout aliases and swaps what it serves
//! when another replica, the CLI, MLflow's UI or the retraining job moved them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel_model::Model;
use keel_registry::rollout::Rollout;

use super::{Deployment, Stage, State};
use crate::metrics::Family;
use crate::{Result, ServeError};

/// A refused version is downloaded and verified again after this long.
const RETRY_REFUSED: Duration = Duration::from_secs(60);

/// How a deployment stands with its registry ([`Deployment::follow_status`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FollowStatus {
    /// The last time the aliases were read successfully, ms since the Unix epoch.
    pub last_sync_ms: Option<i64>,
    /// Whether the last read failed (the registry is unreachable or answered an error): the
    /// deployment keeps serving the last verified models.
    pub stale: bool,
    /// The last read's error, when it failed.
    pub last_error: Option<String>,
    /// Versions the aliases named that failed to load or verify, with why: never swapped in.
    pub refused: BTreeMap<u32, String>,
    /// Swaps made because the aliases moved.
    pub swaps: u64,
    /// Reads that failed.
    pub failures: u64,
}

#[derive(Debug, Default)]
pub(super) struct Following {
    status: FollowStatus,
    /// When each refused version was last tried.
    refused_at: BTreeMap<u32, Instant>,
}

pub(super) type FollowState = Mutex<Following>;

impl Deployment {
    /// Reads the model's rollout aliases and makes the served state match them: champion,
    /// and the challenger in shadow or on canary. Bundles not served yet are loaded and
    /// verified before anything changes; a version that fails is refused (kept out, reported
    /// in [`Deployment::follow_status`], tried again after a minute) and the previous models
    /// keep serving. Requests in flight finish on the models they started with. Returns
    /// whether the served state changed.
    ///
    /// A registry that cannot be read leaves everything as it is and marks the deployment
    /// stale until a read succeeds.
    pub fn follow(&self) -> Result<bool> {
        let _moving = self.moving.lock().unwrap_or_else(|p| p.into_inner());
        let read = Rollout::new(&self.registry, &self.name).state();
        let now = self.clock.now_ms();
        let aliases = match read {
            Ok(a) => a,
            Err(e) => {
                let mut f = self.following.lock().unwrap_or_else(|p| p.into_inner());
                f.status.stale = true;
                f.status.failures += 1;
                f.status.last_error = Some(e.to_string());
                return Err(e.into());
            }
        };
        {
            let mut f = self.following.lock().unwrap_or_else(|p| p.into_inner());
            f.status.stale = false;
            f.status.last_error = None;
            f.status.last_sync_ms = Some(now);
        }
        let Some(champion) = aliases.champion else {
            return Err(ServeError::Stage(format!(
                "model {} has no champion alias: keeping the served models",
                self.name
            )));
        };
        // A multi-alias move on a shared registry lands alias by alias: a challenger alias
        // still naming the new champion is the tail of a promotion, not a challenger.
        let challenger = match (
            aliases.canary.filter(|v| *v != champion),
            aliases.shadow.filter(|v| *v != champion),
        ) {
            (Some(v), _) => Some((
                v,
                Stage::Canary {
                    percent: self.cfg.canary_percent,
                },
            )),
            (None, Some(v)) => Some((v, Stage::Shadow)),
            (None, None) => None,
        };
        let cur = self.state();
        let serving = (
            cur.champion.version(),
            cur.challenger.as_ref().map(|(m, s)| (m.version(), *s)),
        );
        if serving == (champion, challenger) {
            return Ok(false);
        }
        let champion = self.served(&cur, champion)?;
        let challenger = match challenger {
            Some((v, stage)) => match self.served(&cur, v) {
                Ok(m) => Some((m, stage)),
                // A challenger that does not load is left out; the champion still moves.
                Err(_) => None,
            },
            None => None,
        };
        let changed = (
            champion.version(),
            challenger.as_ref().map(|(m, s)| (m.version(), *s)),
        ) != serving;
        if changed {
            tracing::info!(
                model = %self.name,
                champion = champion.version(),
                challenger = ?challenger.as_ref().map(|(m, s)| (m.version(), *s)),
                "following the registry's aliases"
            );
            self.swap(State {
                champion,
                challenger,
            });
            let mut f = self.following.lock().unwrap_or_else(|p| p.into_inner());
            f.status.swaps += 1;
        }
        Ok(changed)
    }

    /// The served model of `version`: reused when it serves already, else loaded and verified
    /// (refusals recorded).
    fn served(&self, cur: &State, version: u32) -> Result<Model> {
        if cur.champion.version() == version {
            return Ok(cur.champion.clone());
        }
        if let Some((m, _)) = cur
            .challenger
            .as_ref()
            .filter(|(m, _)| m.version() == version)
        {
            return Ok(m.clone());
        }
        if let Some(m) = self
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|m| m.version() == version)
        {
            return Ok(m.clone());
        }
        {
            let f = self.following.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(why), Some(at)) =
                (f.status.refused.get(&version), f.refused_at.get(&version))
            {
                if at.elapsed() < RETRY_REFUSED {
                    return Err(ServeError::Stage(format!("v{version} was refused: {why}")));
                }
            }
        }
        let loaded = self
            .registry
            .load(&self.name, version)
            .map_err(ServeError::from)
            .and_then(|b| Model::load(&b).map_err(ServeError::from));
        let mut f = self.following.lock().unwrap_or_else(|p| p.into_inner());
        match loaded {
            Ok(m) => {
                f.status.refused.remove(&version);
                f.refused_at.remove(&version);
                Ok(m)
            }
            Err(e) => {
                if f.status.refused.insert(version, e.to_string()).is_none() {
                    tracing::error!(model = %self.name, version, error = %e,
                        "refusing a version the aliases name: it does not load or verify");
                }
                f.refused_at.insert(version, Instant::now());
                Err(e)
            }
        }
    }

    /// The message that tells the replicas sharing this deployment's store that its rollout
    /// moved.
    fn moved_message(&self) -> Vec<u8> {
        format!("keel.rollout:{}", self.name).into_bytes()
    }

    /// After a move made through this replica: tells the others at once, when the features
    /// live in a shared store (Redis pub/sub), instead of leaving them to their next poll.
    pub(super) fn announce_move(&self) {
        if let Some((store, _)) = self.store.as_ref().filter(|(s, _)| s.is_shared()) {
            if let Err(e) = store.publish(&self.moved_message()) {
                tracing::debug!(model = %self.name, error = %e, "announcing a rollout move");
            }
        }
    }

    /// How this deployment stands with its registry.
    pub fn follow_status(&self) -> FollowStatus {
        self.following
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .clone()
    }

    pub(super) fn follow_families(&self) -> Vec<Family> {
        let st = self.follow_status();
        let model = |name: &'static str, kind: &'static str, help: &'static str, v: String| {
            Family::of_model(name, kind, help, &self.name, v)
        };
        let age = st
            .last_sync_ms
            .map_or(f64::NAN, |t| (self.clock.now_ms() - t).max(0) as f64 / 1e3);
        vec![
            model(
                "keel_registry_stale",
                "gauge",
                "1 while the last read of the registry's aliases failed (the last verified models keep serving).",
                u8::from(st.stale).to_string(),
            ),
            model(
                "keel_registry_sync_age_seconds",
                "gauge",
                "Seconds since the registry's aliases were last read successfully.",
                age.to_string(),
            ),
            model(
                "keel_registry_follow_swaps_total",
                "counter",
                "Served-model swaps made because the registry's aliases moved.",
                st.swaps.to_string(),
            ),
            model(
                "keel_registry_follow_failures_total",
                "counter",
                "Reads of the registry's aliases that failed.",
                st.failures.to_string(),
            ),
            model(
                "keel_registry_refused_versions",
                "gauge",
                "Versions the aliases name that failed to load or verify (never swapped in).",
                st.refused.len().to_string(),
            ),
        ]
    }
}

/// A background thread calling [`Deployment::follow`] and [`Deployment::publish_evidence`]
/// every interval; stops when dropped.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Follows `deployment`'s registry every `interval` (at least 50 ms), and at once when
    /// another replica announces a move through the shared store (Redis pub/sub) the
    /// deployment reads its features from.
    pub fn start(deployment: Arc<Deployment>, interval: Duration) -> Result<Follower> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let interval = interval.max(Duration::from_millis(50));
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        if let Some((store, _)) = deployment.store.as_ref().filter(|(s, _)| s.is_shared()) {
            let want = deployment.moved_message();
            store.subscribe(Arc::new(move |m: &[u8]| {
                if m == want.as_slice() {
                    let _ = wake.try_send(());
                }
            }))?;
        }
        let thread = std::thread::Builder::new()
            .name(format!("keel-follow-{}", deployment.name()))
            .spawn(move || {
                // Fixed rate: the work of one round does not push the next one back.
                let mut next = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    next += interval;
                    if let Err(e) = deployment.follow() {
                        tracing::debug!(model = %deployment.name(), error = %e, "follow");
                    }
                    // The fleet's gates merge what every replica publishes.
                    if let Err(e) = deployment.publish_evidence() {
                        tracing::debug!(model = %deployment.name(), error = %e,
                            "publishing gate evidence");
                    }
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    while !flag.load(Ordering::Relaxed) && Instant::now() < next {
                        let nap = next
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(50));
                        if woken.recv_timeout(nap).is_ok() {
                            // Another replica announced a move: follow now; the regular
                            // rounds keep their schedule.
                            if let Err(e) = deployment.follow() {
                                tracing::debug!(model = %deployment.name(), error = %e, "follow");
                            }
                        }
                    }
                }
            })?;
        Ok(Follower {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
