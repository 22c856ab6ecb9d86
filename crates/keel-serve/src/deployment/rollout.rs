//! The rollout: shadow, gated promotion, audited overrides, rollback.

use super::{Deployment, DeploymentConfig, FleetEvidence, LabelEvidence, Stage, State};
use crate::{Result, ServeError};
use keel_model::Model;
use keel_registry::rollout::Rollout;

impl Deployment {
    /// The owner of this model's rollout aliases.
    fn rollout(&self) -> Rollout<'_> {
        Rollout::new(&self.registry, &self.name)
    }

    /// Puts registered version `version` in shadow beside the champion (alias `shadow`).
    pub fn start_shadow(&self, version: u32, reason: &str) -> Result<()> {
        let _moving = self.moving.lock().unwrap_or_else(|p| p.into_inner());
        let m = Model::load(&self.registry.load(&self.name, version)?)?;
        self.rollout().shadow(version, reason)?;
        let s = self.state();
        self.swap(State {
            champion: s.champion.clone(),
            challenger: Some((m, Stage::Shadow)),
        });
        self.announce_move();
        Ok(())
    }

    /// The configuration this deployment runs with (its gates included).
    pub fn config(&self) -> &DeploymentConfig {
        &self.cfg
    }

    /// The checks of the configured [`ShadowGate`] that the shadow evidence fails (empty: it
    /// passes), and the challenger in shadow.
    pub(super) fn shadow_checks(&self, s: &State) -> Result<(Model, Vec<String>, FleetEvidence)> {
        let Some((m, Stage::Shadow)) = &s.challenger else {
            return Err(ServeError::Stage("no challenger in shadow".into()));
        };
        let gate = &self.cfg.shadow_gate;
        let fleet = self.fleet_evidence()?;
        let st = fleet.shadow;
        let agreement = if st.compared == 0 {
            0.0
        } else {
            st.agreed as f64 / st.compared as f64
        };
        let mut failed = Vec::new();
        if st.compared < gate.min_samples {
            failed.push(format!("{} compared < {}", st.compared, gate.min_samples));
        }
        if agreement < gate.min_agreement {
            failed.push(format!("agreement {agreement:.4} < {}", gate.min_agreement));
        }
        if st.mean_abs_diff > gate.max_mean_diff {
            failed.push(format!(
                "mean |diff| {:.4} > {}",
                st.mean_abs_diff, gate.max_mean_diff
            ));
        }
        Ok((m.clone(), failed, fleet))
    }

    /// The checks of the configured [`CanaryGate`] that the canary evidence fails, and the
    /// challenger on canary.
    pub(super) fn canary_checks(
        &self,
        s: &State,
        labels: Option<LabelEvidence>,
    ) -> Result<(Model, Vec<String>, FleetEvidence)> {
        let Some((m, Stage::Canary { .. })) = &s.challenger else {
            return Err(ServeError::Stage("no challenger on canary".into()));
        };
        let gate = &self.cfg.canary_gate;
        let fleet = self.fleet_evidence()?;
        let (n, errors, p99) = (
            fleet.canary_requests,
            fleet.canary_errors,
            fleet.canary_p99_us,
        );
        let mut failed = Vec::new();
        if n < gate.min_samples {
            failed.push(format!("{n} canary requests < {}", gate.min_samples));
        }
        if p99 > gate.max_p99_us {
            failed.push(format!("canary p99 {p99:.1} us > {}", gate.max_p99_us));
        }
        let rate = if n == 0 {
            0.0
        } else {
            errors as f64 / n as f64
        };
        if rate > gate.max_error_rate {
            failed.push(format!("error rate {rate:.4} > {}", gate.max_error_rate));
        }
        match labels {
            Some(l) if !(l.champion.is_finite() && l.challenger.is_finite()) => {
                failed.push("label evidence is not finite".into())
            }
            Some(l) if l.challenger < l.champion - gate.metric_margin => failed.push(format!(
                "challenger metric {:.4} worse than champion {:.4} by more than {}",
                l.challenger, l.champion, gate.metric_margin
            )),
            None if gate.require_labels => failed.push("no label evidence yet".into()),
            _ => {}
        }
        Ok((m.clone(), failed, fleet))
    }

    /// Shadow -> canary through the configured [`ShadowGate`](super::ShadowGate)
    /// ([`DeploymentConfig::shadow_gate`]); [`ServeError::GateFailed`] names the failed
    /// checks.
    pub fn promote_to_canary(&self) -> Result<()> {
        let s = self.state();
        let (m, failed, fleet) = self.shadow_checks(&s)?;
        if !failed.is_empty() {
            return Err(ServeError::GateFailed(format!(
                "{} ({})",
                failed.join("; "),
                fleet.summary()
            )));
        }
        self.move_to_canary(
            &s,
            m,
            &format!("shadow -> canary: gate passed ({})", fleet.summary()),
        )
    }

    /// Shadow -> canary whatever the gate says: an explicit decision with a reason, recorded
    /// in the audit as `OVERRIDE` with the checks that failed.
    pub fn override_to_canary(&self, reason: &str) -> Result<()> {
        let s = self.state();
        let (m, failed, fleet) = self.shadow_checks(&s)?;
        let audit = override_audit("shadow -> canary", reason, &failed, &fleet)?;
        self.move_to_canary(&s, m, &audit)
    }

    pub(super) fn move_to_canary(&self, s: &State, m: Model, audit: &str) -> Result<()> {
        let _moving = self.moving.lock().unwrap_or_else(|p| p.into_inner());
        // The challenger's bundle was verified when it was loaded into shadow; the aliases
        // move first, then the served state (a failed alias write changes nothing).
        self.rollout().to_canary(m.version(), audit)?;
        self.swap(State {
            champion: s.champion.clone(),
            challenger: Some((
                m,
                Stage::Canary {
                    percent: self.cfg.canary_percent,
                },
            )),
        });
        self.announce_move();
        Ok(())
    }

    /// Canary -> champion through the configured [`CanaryGate`](super::CanaryGate)
    /// ([`DeploymentConfig::canary_gate`]), with label evidence when available.
    pub fn promote_to_champion(&self, labels: Option<LabelEvidence>) -> Result<()> {
        let s = self.state();
        let (m, failed, fleet) = self.canary_checks(&s, labels)?;
        if !failed.is_empty() {
            return Err(ServeError::GateFailed(format!(
                "{} ({})",
                failed.join("; "),
                fleet.summary()
            )));
        }
        self.move_to_champion(
            m,
            &format!("canary -> champion: gate passed ({})", fleet.summary()),
        )
    }

    /// Canary -> champion whatever the gate says, recorded as `OVERRIDE` with `reason` and the
    /// checks that failed.
    pub fn override_to_champion(&self, reason: &str, labels: Option<LabelEvidence>) -> Result<()> {
        let s = self.state();
        let (m, failed, fleet) = self.canary_checks(&s, labels)?;
        let audit = override_audit("canary -> champion", reason, &failed, &fleet)?;
        self.move_to_champion(m, &audit)
    }

    pub(super) fn move_to_champion(&self, m: Model, audit: &str) -> Result<()> {
        let _moving = self.moving.lock().unwrap_or_else(|p| p.into_inner());
        self.rollout().promote(m.version(), audit)?;
        self.swap(State {
            champion: m,
            challenger: None,
        });
        self.announce_move();
        Ok(())
    }

    /// Rolls back at once: a challenger is withdrawn; without one, the champion alias moves
    /// back to its previous version. The target bundle is loaded and verified before any alias
    /// moves, and the alias moves before the served state: a failure leaves both as they were.
    /// In-flight requests finish on the model they started with.
    pub fn rollback(&self, reason: &str) -> Result<u32> {
        let _moving = self.moving.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.state();
        if let Some((m, _)) = &s.challenger {
            self.rollout().withdraw(reason)?;
            self.swap(State {
                champion: s.champion.clone(),
                challenger: None,
            });
            self.announce_move();
            return Ok(m.version());
        }
        let Some(v) = self.rollout().rollback_target()? else {
            return Err(ServeError::Stage(
                "no earlier champion to roll back to".into(),
            ));
        };
        let m = Model::load(&self.registry.load(&self.name, v)?)?;
        self.rollout().rollback_champion(Some(v), reason)?;
        self.swap(State {
            champion: m,
            challenger: None,
        });
        self.announce_move();
        Ok(v)
    }
}

/// The audit line of an override; refused without a reason.
pub(super) fn override_audit(
    step: &str,
    reason: &str,
    failed: &[String],
    fleet: &FleetEvidence,
) -> Result<String> {
    if reason.trim().is_empty() {
        return Err(ServeError::BadRequest(
            "an override needs a reason (it is recorded in the audit)".into(),
        ));
    }
    let fleet = fleet.summary();
    Ok(if failed.is_empty() {
        format!("{step}: OVERRIDE ({reason}); the gate would have passed ({fleet})")
    } else {
        format!(
            "{step}: OVERRIDE ({reason}); failed checks: {} ({fleet})",
            failed.join("; ")
        )
    })
}
