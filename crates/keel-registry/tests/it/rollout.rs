//! The rollout's alias moves: shadow -> canary -> champion, withdraw, rollback; moves the
//! aliases do not allow now are typed refusals that change nothing.

use keel_registry::rollout::{Rollout, RolloutState};
use keel_registry::{Bundle, Registry, RegistryError};

fn registry_with_versions(dir: &std::path::Path, n: u32) -> Registry {
    let reg = Registry::open(dir).unwrap();
    let run = reg.start_run("fraud").unwrap();
    let id = run.id().clone();
    run.finish().unwrap();
    for i in 0..n {
        let b = Bundle::new("gbdt").with_file("model", vec![i as u8]);
        reg.register("fraud", &id, b).unwrap();
    }
    reg
}

#[test]
fn moves_follow_shadow_canary_champion_and_refuse_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry_with_versions(dir.path(), 3);
    let r = Rollout::new(&reg, "fraud");
    r.first_champion(1, "first model").unwrap();
    let refused = |e: RegistryError| matches!(e, RegistryError::Transition { .. });
    assert!(refused(r.first_champion(2, "again").unwrap_err()));
    assert!(refused(r.shadow(1, "the champion itself").unwrap_err()));
    // Only the shadow moves to canary, only the canary to champion.
    r.shadow(2, "retrained").unwrap();
    assert!(refused(r.to_canary(3, "not in shadow").unwrap_err()));
    assert!(refused(r.promote(2, "not on canary").unwrap_err()));
    r.to_canary(2, "gate passed").unwrap();
    assert_eq!(
        r.state().unwrap(),
        RolloutState {
            champion: Some(1),
            shadow: None,
            canary: Some(2)
        }
    );
    // One challenger at a time.
    assert!(refused(r.shadow(3, "while a canary runs").unwrap_err()));
    r.promote(2, "gate passed").unwrap();
    assert_eq!(
        r.state().unwrap(),
        RolloutState {
            champion: Some(2),
            shadow: None,
            canary: None
        }
    );
    // Withdraw a challenger; roll the champion back (compare-and-swap on the target).
    r.shadow(3, "try").unwrap();
    assert_eq!(r.withdraw("p99 regression").unwrap(), Some(3));
    assert_eq!(r.withdraw("nothing left").unwrap(), None);
    assert_eq!(r.rollback_target().unwrap(), Some(1));
    assert!(matches!(
        r.rollback_champion(Some(3), "stale target"),
        Err(RegistryError::AliasMoved { .. })
    ));
    r.rollback_champion(Some(1), "regression").unwrap();
    assert_eq!(r.state().unwrap().champion, Some(1));
    // Every move is in the audit.
    assert_eq!(reg.audit("fraud").unwrap().len(), 9);
}
