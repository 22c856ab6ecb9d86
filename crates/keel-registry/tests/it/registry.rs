//! Tracking, registration rules, tamper detection, aliases with audit and rollback, and crash
//! safety of the registry under SIGKILL.

use keel_core::ManualClock;
use keel_registry::{Bundle, Registry, RegistryError, RunFilter, RunId, RunStatus};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

fn open(dir: &std::path::Path) -> (Registry, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    (
        Registry::open_with_clock(dir, clock.clone()).unwrap(),
        clock,
    )
}

fn finished_run(reg: &Registry, clock: &ManualClock, depth: u32, auc: f64) -> RunId {
    clock.advance(1000);
    let mut r = reg.start_run("fraud").unwrap();
    r.set_seed(7).unwrap();
    r.log_params([("max_depth", depth.to_string()), ("lr", "0.1".to_string())])
        .unwrap();
    for step in 0..3 {
        clock.advance(10);
        r.log_metric("train.loss", 1.0 / (step + 1) as f64, step)
            .unwrap();
    }
    r.log_metrics([("valid.auc", auc), ("valid.logloss", 1.0 - auc)], 0)
        .unwrap();
    r.log_data("train", "ab12cd").unwrap();
    r.log_artifact("notes.txt", b"hello").unwrap();
    let id = r.id().clone();
    clock.advance(5);
    let done = r.finish().unwrap();
    assert_eq!(done.status, RunStatus::Finished);
    assert_eq!(done.duration_ms(), Some(35));
    id
}

#[test]
fn runs_are_persisted_searchable_and_comparable() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, clock) = open(dir.path());
    let a = finished_run(&reg, &clock, 4, 0.81);
    let b = finished_run(&reg, &clock, 6, 0.86);
    let c = finished_run(&reg, &clock, 8, 0.84);
    let mut other = reg.start_run("churn").unwrap();
    other.log_metric("valid.auc", 0.99, 0).unwrap();

    // Reopen: everything is on disk.
    let (reg, _) = open(dir.path());
    let run = reg.run(&a).unwrap();
    assert_eq!(run.params["max_depth"], "4");
    assert_eq!(run.metrics["train.loss"].len(), 3);
    assert_eq!(run.metrics["train.loss"][2].step, 2);
    assert_eq!(run.seed, Some(7));
    assert_eq!(run.data[0].version, "ab12cd");
    assert_eq!(reg.artifact(&a, "notes.txt").unwrap(), b"hello");

    let best = reg
        .search_runs(
            &RunFilter::parse("experiment=fraud order_by=metrics.valid.auc desc limit=2").unwrap(),
        )
        .unwrap();
    assert_eq!(
        best.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![b.clone(), c.clone()]
    );
    let deep = reg
        .search_runs(&RunFilter::parse("params.max_depth=8 metrics.valid.auc>=0.8").unwrap())
        .unwrap();
    assert_eq!(deep.len(), 1);
    assert_eq!(deep[0].id, c);
    let running = reg
        .search_runs(&RunFilter::parse("status=running").unwrap())
        .unwrap();
    assert_eq!(running.len(), 1);
    assert!(RunFilter::parse("metrics.auc>>1").is_err());

    let cmp = reg.compare_runs(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(cmp.differing_params, vec!["max_depth".to_string()]);
    assert_eq!(cmp.metrics["valid.auc"], vec![Some(0.81), Some(0.86)]);

    // Non-finite metrics are refused.
    assert!(matches!(
        other.log_metric("x", f64::NAN, 0),
        Err(RegistryError::NonFiniteMetric(_))
    ));
}

#[test]
fn only_finished_runs_register() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, clock) = open(dir.path());
    let bundle = Bundle::new("gbdt").with_file("model", vec![1, 2, 3]);
    let running = reg.start_run("fraud").unwrap();
    let err = reg
        .register("fraud", running.id(), bundle.clone())
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::RunNotFinished {
                status: RunStatus::Running,
                ..
            }
        ),
        "{err}"
    );
    let failed_id = running.id().clone();
    running.fail("out of memory").unwrap();
    let err = reg
        .register("fraud", &failed_id, bundle.clone())
        .unwrap_err();
    assert!(matches!(
        err,
        RegistryError::RunNotFinished {
            status: RunStatus::Failed,
            ..
        }
    ));
    let err = reg
        .register("fraud", &RunId("0123456789abcdef".into()), bundle.clone())
        .unwrap_err();
    assert!(matches!(err, RegistryError::UnknownRun(_)));
    let ok = finished_run(&reg, &clock, 4, 0.8);
    let err = reg.register("fraud", &ok, Bundle::new("gbdt")).unwrap_err();
    assert!(matches!(err, RegistryError::EmptyBundle));
    // Metadata defaults come from the run.
    let v = reg.register("fraud", &ok, bundle).unwrap();
    assert_eq!(v.version, 1);
    assert_eq!(v.meta.params["max_depth"], "4");
    assert_eq!(v.meta.seed, Some(7));
    assert_eq!(v.meta.data_version.as_deref(), Some("ab12cd"));
    assert_eq!(reg.models().unwrap(), vec!["fraud".to_string()]);
}

#[test]
fn tampered_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, clock) = open(dir.path());
    let run = finished_run(&reg, &clock, 4, 0.8);
    let bundle = Bundle::new("gbdt")
        .with_file("model", vec![7; 1000])
        .with_file("pipeline", b"pipe".to_vec());
    reg.register("fraud", &run, bundle).unwrap();
    let loaded = reg.load("fraud", 1).unwrap();
    assert_eq!(loaded.file("model").unwrap(), &[7u8; 1000][..]);
    let vdir = dir.path().join("models/fraud/v1");
    // Same size, one byte changed.
    let mut bytes = std::fs::read(vdir.join("model")).unwrap();
    bytes[500] ^= 1;
    std::fs::write(vdir.join("model"), &bytes).unwrap();
    assert!(matches!(
        reg.load("fraud", 1),
        Err(RegistryError::Tampered { .. })
    ));
    bytes[500] ^= 1;
    // Truncated, then grown.
    std::fs::write(vdir.join("model"), &bytes[..999]).unwrap();
    assert!(matches!(
        reg.load("fraud", 1),
        Err(RegistryError::Tampered { .. })
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    std::fs::write(vdir.join("model"), &longer).unwrap();
    assert!(matches!(
        reg.load("fraud", 1),
        Err(RegistryError::Tampered { .. })
    ));
    std::fs::write(vdir.join("model"), &bytes).unwrap();
    assert!(reg.load("fraud", 1).is_ok());
    // A corrupted manifest is an envelope error, not a panic.
    let mut m = std::fs::read(vdir.join("MANIFEST")).unwrap();
    let k = m.len() / 2;
    m[k] ^= 0x40;
    std::fs::write(vdir.join("MANIFEST"), &m).unwrap();
    assert!(matches!(
        reg.load("fraud", 1),
        Err(RegistryError::Envelope(_))
    ));
}

#[test]
fn aliases_move_with_audit_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, clock) = open(dir.path());
    let run = finished_run(&reg, &clock, 4, 0.8);
    for _ in 0..3 {
        reg.register(
            "fraud",
            &run,
            Bundle::new("gbdt").with_file("model", vec![1]),
        )
        .unwrap();
    }
    assert!(matches!(
        reg.set_alias("fraud", "champion", 9, "nope"),
        Err(RegistryError::UnknownVersion { version: 9, .. })
    ));
    assert!(matches!(
        reg.rollback("fraud", "champion", "nothing yet"),
        Err(RegistryError::NothingToRollBack { .. })
    ));
    reg.set_alias("fraud", "champion", 1, "first").unwrap();
    reg.set_alias("fraud", "challenger", 2, "shadow").unwrap();
    reg.set_alias("fraud", "champion", 2, "promoted after canary")
        .unwrap();
    reg.set_alias("fraud", "champion", 3, "override: hotfix")
        .unwrap();
    assert_eq!(reg.alias("fraud", "champion").unwrap(), Some(3));
    let ev = reg.rollback("fraud", "champion", "p99 regression").unwrap();
    assert_eq!((ev.from, ev.to, ev.rollback), (Some(3), Some(2), true));
    reg.rollback("fraud", "champion", "again").unwrap();
    assert_eq!(reg.alias("fraud", "champion").unwrap(), Some(1));
    reg.rollback("fraud", "champion", "to nothing").unwrap();
    assert_eq!(reg.alias("fraud", "champion").unwrap(), None);
    // State survives a reopen.
    let (reg, _) = open(dir.path());
    assert_eq!(reg.alias("fraud", "challenger").unwrap(), Some(2));
    let audit = reg.audit("fraud").unwrap();
    assert_eq!(audit.len(), 7);
    assert_eq!(audit[3].reason, "override: hotfix");
    assert!(audit.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert_eq!(
        reg.load_alias("fraud", "challenger")
            .unwrap()
            .version
            .version,
        2
    );
}

#[test]
fn names_cannot_escape_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, clock) = open(dir.path());
    let run = finished_run(&reg, &clock, 4, 0.8);
    for bad in ["../evil", "a/b", ".hidden", "", "x\0y"] {
        assert!(matches!(
            reg.register(bad, &run, Bundle::new("gbdt").with_file("model", vec![1])),
            Err(RegistryError::InvalidName { .. })
        ));
        assert!(reg.start_run(bad).is_err());
    }
    let evil = Bundle::new("gbdt").with_file("../model", vec![1]);
    assert!(matches!(
        reg.register("ok", &run, evil),
        Err(RegistryError::InvalidName { .. })
    ));
    assert!(matches!(
        reg.run(&RunId("../../etc".into())),
        Err(RegistryError::InvalidName { .. })
    ));
}

#[test]
fn registry_is_send_sync_and_concurrent_registrations_get_distinct_versions() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Registry>();
    let dir = tempfile::tempdir().unwrap();
    let (reg, clock) = open(dir.path());
    let run = finished_run(&reg, &clock, 4, 0.8);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let reg = reg.clone();
            let run = run.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| {
                        reg.register("m", &run, Bundle::new("x").with_file("model", vec![t]))
                            .unwrap()
                            .version
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=20).collect::<Vec<_>>());
}

/// Child side of the crash test: registers versions and moves aliases until killed.
#[test]
fn crash_registry_child_process() {
    let Some(dir) = std::env::var_os("KEEL_CRASH_DIR") else {
        return;
    };
    let reg = Registry::open(&dir).unwrap();
    let run = RunId(std::env::var("KEEL_CRASH_RUN").unwrap());
    for i in 0u64.. {
        let payload = vec![(i % 251) as u8; 64 * 1024];
        let v = reg
            .register(
                "m",
                &run,
                Bundle::new("x")
                    .with_file("model", payload)
                    .with_file("pipeline", i.to_le_bytes().to_vec()),
            )
            .unwrap();
        reg.set_alias("m", "champion", v.version, &format!("step {i}"))
            .unwrap();
        println!("ACK {}", v.version);
    }
}

#[test]
fn killed_writers_leave_the_old_or_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let run = {
        let (reg, clock) = open(dir.path());
        finished_run(&reg, &clock, 4, 0.8)
    };
    let exe = std::env::current_exe().unwrap();
    for (round, delay) in [120u64, 330, 210].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "registry::crash_registry_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KEEL_CRASH_DIR", dir.path())
            .env("KEEL_CRASH_RUN", &run.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    l.strip_prefix("ACK ")
                        .map(|v| v.trim().parse::<u32>().unwrap())
                })
                .collect::<Vec<_>>()
        });
        std::thread::sleep(std::time::Duration::from_millis(200 + delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
        let reg = Registry::open(dir.path()).unwrap();
        let versions = reg.versions("m").unwrap();
        // Versions are contiguous from 1 and every one loads with verified files.
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
        for &v in &versions {
            let l = reg
                .load("m", v)
                .unwrap_or_else(|e| panic!("round {round}: v{v}: {e}"));
            assert_eq!(l.file("model").unwrap().len(), 64 * 1024);
        }
        let last = *acked.last().unwrap();
        assert!(versions.len() as u32 >= last, "acknowledged v{last} lost");
        // The alias points at an acknowledged version or the one in flight.
        let champ = reg.alias("m", "champion").unwrap().unwrap();
        assert!(
            champ >= last && champ <= last + 1,
            "champion {champ}, last ack {last}"
        );
        // No leftovers of the interrupted write remain visible.
        let leftovers = std::fs::read_dir(dir.path().join("models/m"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(leftovers, 0);
    }
}

/// Replays the fuzz seed corpus (`fuzz/corpus/registry_records`); `KEEL_BLESS=1` rewrites it
/// from a freshly written registry.
#[test]
fn registry_records_corpus_replays() {
    let corpus = crate::manifest_dir().join("../../fuzz/corpus/registry_records");
    if std::env::var_os("KEEL_BLESS").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, clock) = open(dir.path());
        let run = finished_run(&reg, &clock, 4, 0.8);
        reg.register("m", &run, Bundle::new("gbdt").with_file("model", vec![1]))
            .unwrap();
        reg.set_alias("m", "champion", 1, "x").unwrap();
        for (src, name) in [
            (format!("runs/{}/run", run.0), "run"),
            ("models/m/v1/MANIFEST".to_string(), "manifest"),
            ("models/m/ALIASES".to_string(), "aliases"),
        ] {
            std::fs::copy(dir.path().join(src), corpus.join(name)).unwrap();
        }
    }
    let mut n = 0;
    for e in std::fs::read_dir(&corpus).unwrap() {
        keel_registry::fuzzing::exercise(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 3, "seed corpus missing");
}

/// Child side of the concurrency test: `KEEL_CONC_ROLE=writer` tracks and registers runs,
/// `reader` opens the registry (which sweeps leftovers) and lists, searches and loads, both in
/// a loop of `KEEL_CONC_N`; each prints `DONE <count>` or `FAIL <error>`.
#[test]
fn concurrent_registry_child_process() {
    let (Some(dir), Ok(role)) = (
        std::env::var_os("KEEL_CONC_DIR"),
        std::env::var("KEEL_CONC_ROLE"),
    ) else {
        return;
    };
    let n: usize = std::env::var("KEEL_CONC_N").unwrap().parse().unwrap();
    let mut done = 0;
    let outcome = (|| -> Result<(), RegistryError> {
        for i in 0..n {
            if role == "writer" {
                let reg = Registry::open(&dir)?;
                let mut run = reg.start_run("conc")?;
                run.log_params([("i", i.to_string())])?;
                for step in 0..5 {
                    run.log_metric("loss", 1.0 / (step + 1) as f64, step)?;
                }
                run.log_artifact("notes", format!("run {i}").as_bytes())?;
                let run = run.finish()?;
                reg.register(
                    "m",
                    &run.id,
                    Bundle::new("x").with_file("model", vec![i as u8; 4096]),
                )?;
                println!("RUN {}", run.id.0);
            } else {
                let reg = Registry::open(&dir)?;
                reg.search_runs(&RunFilter::parse("experiment=conc")?)?;
                for m in reg.models()? {
                    if let Some(&v) = reg.versions(&m)?.last() {
                        reg.load(&m, v)?;
                    }
                }
            }
            done += 1;
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => println!("DONE {done}"),
        Err(e) => println!("FAIL {e}"),
    }
}

/// Issue 22, finding 7: `keel train` failed whenever another `keel` command opened the
/// registry (its open swept the writer's temporary files), and one empty run directory made
/// every listing fail. Now: 3 writer and 3 reader processes at once, no failure, every
/// finished run present; a damaged run is skipped by listings and reported by `check`.
#[test]
fn concurrent_writers_and_readers_in_separate_processes_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    Registry::open(dir.path()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let spawn = |role: &str| {
        Command::new(&exe)
            .args([
                "--exact",
                "registry::concurrent_registry_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KEEL_CONC_DIR", dir.path())
            .env("KEEL_CONC_ROLE", role)
            .env("KEEL_CONC_N", if role == "writer" { "15" } else { "40" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = ["writer", "reader", "writer", "reader", "writer", "reader"]
        .iter()
        .map(|r| spawn(r))
        .collect();
    let mut finished = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(!text.contains("FAIL"), "{text}");
        assert!(text.contains("DONE"), "{text}");
        finished.extend(
            text.lines()
                // libtest's "test name ... " may precede the first line on the same line.
                .filter_map(|l| l.split_once("RUN ").map(|(_, id)| id))
                .map(|id| id.split_whitespace().next().unwrap_or("").to_string()),
        );
    }
    assert_eq!(finished.len(), 45);
    let reg = Registry::open(dir.path()).unwrap();
    let runs = reg
        .search_runs(&RunFilter::parse("experiment=conc").unwrap())
        .unwrap();
    assert_eq!(runs.len(), 45);
    for id in &finished {
        let r = reg.run(&RunId(id.clone())).unwrap();
        assert_eq!(r.status, RunStatus::Finished);
    }
    assert_eq!(reg.versions("m").unwrap(), (1..=45).collect::<Vec<_>>());
    assert!(reg.check().unwrap().is_clean());

    // A damaged run: an empty directory, and a record of garbage.
    std::fs::create_dir(dir.path().join("runs/emptyrun")).unwrap();
    std::fs::create_dir(dir.path().join("runs/garbled")).unwrap();
    std::fs::write(dir.path().join("runs/garbled/run"), b"not a record").unwrap();
    let (runs, damaged) = reg.search_runs_reporting(&RunFilter::default()).unwrap();
    assert_eq!(runs.len(), 45);
    assert_eq!(damaged.len(), 2, "{damaged:?}");
    let report = reg.check().unwrap();
    assert_eq!((report.runs, report.versions, report.models), (45, 45, 1));
    assert_eq!(report.damaged.len(), 2, "{report:?}");
    // A tampered version is reported too.
    let model = dir.path().join("models/m/v3/model");
    let mut b = std::fs::read(&model).unwrap();
    b[0] ^= 1;
    std::fs::write(&model, b).unwrap();
    let report = reg.check().unwrap();
    assert_eq!(report.versions, 44);
    assert!(
        report
            .damaged
            .iter()
            .any(|d| d.path.ends_with("models/m/v3")),
        "{report:?}"
    );
}

/// Issue 22, finding 8: integrity is not authenticity. Rewriting a model together with its
/// manifest's sha256, size and CRC passed verification; with trusted keys the forged version
/// is refused, as are unsigned versions and versions signed by an untrusted key.
#[test]
fn signed_bundles_refuse_forgeries_unsigned_and_untrusted_versions() {
    use keel_registry::signing::{public_path, SigningKey, TrustedKeys};
    use keel_registry::ModelVersion;
    let dir = tempfile::tempdir().unwrap();
    let (plain, clock) = open(dir.path());
    let run = finished_run(&plain, &clock, 4, 0.8);
    let key_path = dir.path().join("signing.key");
    let key = SigningKey::write_new(&key_path).unwrap();
    let trusted = TrustedKeys::from_file(&public_path(&key_path)).unwrap();
    assert_eq!(trusted.keys(), [key.public()]);
    let signer = plain
        .clone()
        .with_signing_key(SigningKey::from_file(&key_path).unwrap());
    let bundle = || Bundle::new("gbdt").with_file("model", b"honest model".to_vec());
    signer.register("m", &run, bundle()).unwrap(); // v1, signed
    plain.register("m", &run, bundle()).unwrap(); // v2, unsigned
    let other = SigningKey::generate().unwrap();
    plain
        .clone()
        .with_signing_key(other)
        .register("m", &run, bundle())
        .unwrap(); // v3, signed by an untrusted key
    let verifying = plain.clone().with_trusted_keys(trusted.clone());
    assert!(verifying.load("m", 1).is_ok());
    assert!(matches!(
        verifying.load("m", 2),
        Err(RegistryError::Unsigned { version: 2, .. })
    ));
    assert!(matches!(
        verifying.load("m", 3),
        Err(RegistryError::BadSignature { reason, .. }) if reason.contains("not a trusted key")
    ));
    // The forgery: new model bytes, a manifest with their sha256 and size, a valid envelope.
    let v1 = dir.path().join("models/m/v1");
    let evil = b"evil model".to_vec();
    std::fs::write(v1.join("model"), &evil).unwrap();
    let mut mv: ModelVersion =
        keel_core::envelope::decode(&std::fs::read(v1.join("MANIFEST")).unwrap()).unwrap();
    mv.files[0].sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&evil))
    };
    mv.files[0].size = evil.len() as u64;
    std::fs::write(
        v1.join("MANIFEST"),
        keel_core::envelope::encode(&mv).unwrap(),
    )
    .unwrap();
    assert_eq!(
        plain.load("m", 1).unwrap().file("model").unwrap(),
        b"evil model",
        "integrity alone passes"
    );
    assert!(matches!(
        verifying.load("m", 1),
        Err(RegistryError::BadSignature { reason, .. }) if reason.contains("does not match")
    ));
    // Adopting signing for an existing version; check reports what does not verify.
    plain
        .sign("m", 2, &SigningKey::from_file(&key_path).unwrap())
        .unwrap();
    assert!(verifying.load("m", 2).is_ok());
    let report = verifying.check().unwrap();
    assert_eq!(report.versions, 1);
    assert_eq!(report.damaged.len(), 2, "{report:?}");
    // A private key others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SigningKey::from_file(&key_path),
            Err(RegistryError::KeyFile { .. })
        ));
    }
}

/// Issue 22, finding 8: the alias audit is a hash chain; an edited history (here one reason
/// rewritten, the envelope's CRC fixed up) is refused when the aliases are read and reported
/// by `check`.
#[test]
fn an_edited_alias_history_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, clock) = open(dir.path());
    let run = finished_run(&reg, &clock, 4, 0.8);
    for _ in 0..2 {
        reg.register("m", &run, Bundle::new("x").with_file("model", vec![1]))
            .unwrap();
    }
    reg.set_alias("m", "champion", 1, "step one").unwrap();
    reg.set_alias("m", "champion", 2, "step two").unwrap();
    let head = reg.audit_head("m").unwrap();
    assert_eq!(head.len(), 64);
    assert!(reg.audit("m").unwrap().iter().all(|e| e.chain != [0; 32]));
    let path = dir.path().join("models/m/ALIASES");
    let bytes = std::fs::read(&path).unwrap();
    let (header, payload) = keel_core::envelope::unwrap(&bytes).unwrap();
    let text = payload.to_vec();
    let at = text
        .windows(8)
        .position(|w| w == b"step one")
        .expect("the reason is in the payload");
    let mut edited = text.clone();
    edited[at..at + 8].copy_from_slice(b"step 0ne");
    std::fs::write(
        &path,
        keel_core::envelope::wrap(header.kind, header.version, &edited),
    )
    .unwrap();
    let err = reg.alias("m", "champion").unwrap_err();
    assert!(
        matches!(&err, RegistryError::Corrupt { reason, .. } if reason.contains("hash chain breaks at event 0")),
        "{err}"
    );
    assert!(reg
        .check()
        .unwrap()
        .damaged
        .iter()
        .any(|d| d.path.ends_with("models/m/ALIASES")));
    // Restored, the chain verifies and the head is the one recorded.
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(reg.audit_head("m").unwrap(), head);
}
