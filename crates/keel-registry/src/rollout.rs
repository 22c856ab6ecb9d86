//! The one owner of a model's rollout aliases: their names, the moves allowed between them
//! (shadow -> canary -> champion, withdrawing a challenger, rolling the champion back) and
//! their audit. Serving (`keel-serve`'s `Deployment`), the retraining loop (`keel-train`) and
//! the retraining loop move rollout aliases only through [`Rollout`]; each move is checked
//! against the aliases as they are in the registry now (another process may have moved them),
//! so a stale caller gets [`RegistryError::Transition`] instead of overwriting a newer state.
//! The check and the write happen under the registry's writer lock (a file lock in a
//! directory, a lease on MLflow), so two writers never interleave.

use crate::registry::AliasMove::{Remove, Set};
use crate::{AliasEvent, Registry, RegistryError, Result};

/// The alias of the version answering traffic.
pub const CHAMPION: &str = "champion";
/// The alias of a challenger scored beside the champion without answering.
pub const SHADOW: &str = "shadow";
/// The alias of a challenger answering a slice of traffic.
pub const CANARY: &str = "canary";

/// Whether an alias name belongs to the rollout (moved only through [`Rollout`]).
pub fn is_rollout_alias(alias: &str) -> bool {
    matches!(alias, CHAMPION | SHADOW | CANARY)
}

/// Where a model's rollout stands, as the registry holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RolloutState {
    /// The champion's version.
    pub champion: Option<u32>,
    /// The challenger in shadow.
    pub shadow: Option<u32>,
    /// The challenger on canary.
    pub canary: Option<u32>,
}

/// The rollout of one registered model.
#[derive(Debug, Clone, Copy)]
pub struct Rollout<'r> {
    registry: &'r Registry,
    model: &'r str,
}

impl<'r> Rollout<'r> {
    /// The rollout of `model` in `registry`.
    pub fn new(registry: &'r Registry, model: &'r str) -> Rollout<'r> {
        Rollout { registry, model }
    }

    /// The rollout aliases now.
    pub fn state(&self) -> Result<RolloutState> {
        let a = self.registry.aliases(self.model)?;
        Ok(RolloutState {
            champion: a.get(CHAMPION).copied(),
            shadow: a.get(SHADOW).copied(),
            canary: a.get(CANARY).copied(),
        })
    }

    fn refuse(&self, reason: String) -> RegistryError {
        RegistryError::Transition {
            model: self.model.to_string(),
            reason,
        }
    }

    /// Sets the first champion of a model that has none (a deployment's start). Later
    /// champions come from [`Rollout::promote`] or [`Rollout::rollback_champion`].
    pub fn first_champion(&self, version: u32, reason: &str) -> Result<AliasEvent> {
        let mut evs = self.registry.move_aliases(self.model, |a| {
            if let Some(c) = a.get(CHAMPION) {
                return Err(self.refuse(format!(
                    "it already has a champion (v{c}): promote a challenger instead"
                )));
            }
            Ok(vec![(Set(CHAMPION.into(), version), reason.to_string())])
        })?;
        Ok(evs.remove(0))
    }

    /// Puts `version` in shadow. Refused while a canary runs (one challenger at a time) and
    /// for the champion's own version.
    pub fn shadow(&self, version: u32, reason: &str) -> Result<AliasEvent> {
        let mut evs = self.registry.move_aliases(self.model, |a| {
            if let Some(c) = a.get(CANARY) {
                return Err(self.refuse(format!(
                    "v{c} is on canary: promote or withdraw it before shadowing another version"
                )));
            }
            if a.get(CHAMPION) == Some(&version) {
                return Err(self.refuse(format!("v{version} is already the champion")));
            }
            Ok(vec![(Set(SHADOW.into(), version), reason.to_string())])
        })?;
        Ok(evs.remove(0))
    }

    /// Shadow -> canary for `version`, which must be the shadow now: the canary alias is set
    /// and the shadow alias removed in one step under the registry's writer lock.
    pub fn to_canary(&self, version: u32, audit: &str) -> Result<Vec<AliasEvent>> {
        self.registry.move_aliases(self.model, |a| {
            if a.get(SHADOW) != Some(&version) {
                return Err(self.refuse(format!(
                    "v{version} is not in shadow (shadow is {:?})",
                    a.get(SHADOW)
                )));
            }
            Ok(vec![
                (Set(CANARY.into(), version), audit.to_string()),
                (Remove(SHADOW.into()), "moved to canary".to_string()),
            ])
        })
    }

    /// Canary -> champion for `version`, which must be on canary now (one step, like
    /// [`Rollout::to_canary`]).
    pub fn promote(&self, version: u32, audit: &str) -> Result<Vec<AliasEvent>> {
        self.registry.move_aliases(self.model, |a| {
            if a.get(CANARY) != Some(&version) {
                return Err(self.refuse(format!(
                    "v{version} is not on canary (canary is {:?})",
                    a.get(CANARY)
                )));
            }
            Ok(vec![
                (Set(CHAMPION.into(), version), audit.to_string()),
                (Remove(CANARY.into()), "promoted".to_string()),
            ])
        })
    }

    /// Withdraws the challenger (shadow or canary): returns its version, `None` when there was
    /// none.
    pub fn withdraw(&self, reason: &str) -> Result<Option<u32>> {
        let mut out = None;
        self.registry.move_aliases(self.model, |a| {
            for alias in [CANARY, SHADOW] {
                if let Some(&v) = a.get(alias) {
                    out = Some(v);
                    return Ok(vec![(Remove(alias.into()), reason.to_string())]);
                }
            }
            Ok(Vec::new())
        })?;
        Ok(out)
    }

    /// Where a champion rollback would go (the champion before its last move); verify that
    /// version's bundle, then call [`Rollout::rollback_champion`] with it.
    pub fn rollback_target(&self) -> Result<Option<u32>> {
        self.registry.rollback_target(self.model, CHAMPION)
    }

    /// Moves the champion back to `to`, provided that is still where a rollback goes
    /// (compare-and-swap; [`RegistryError::AliasMoved`] otherwise).
    pub fn rollback_champion(&self, to: Option<u32>, reason: &str) -> Result<AliasEvent> {
        self.registry.rollback_to(self.model, CHAMPION, to, reason)
    }
}
