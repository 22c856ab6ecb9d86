//! Synthetic drift: every shift is detected by the right signal, no-drift controls stay within
//! the configured false-alarm level, and the policy retrains only on decay.

use keel_core::ValueRef;
use keel_monitor::synth::{self, Gen, Shift};
use keel_monitor::{
    decide, detect_drift, Action, Adwin, CallbackSink, CountWindow, DecayMetric, DecayMonitor,
    DecisionLog, DriftOptions, GateConfig, LabelJoiner, PageHinkley, Profile,
};
use std::sync::{Arc, Mutex};

fn inputs(f: &keel_core::Frame) -> keel_core::Frame {
    f.select(&["amount", "risk", "country"]).unwrap()
}

/// The model is the generator's true reference log-odds: perfect before concept drift.
fn scores(f: &keel_core::Frame) -> Vec<f64> {
    let (a, r, c) = (
        f.column("amount").unwrap(),
        f.column("risk").unwrap(),
        f.column("country").unwrap(),
    );
    (0..f.nrows())
        .map(|i| {
            let country = match c.get(i) {
                keel_core::ValueRef::Str(s) => ["FR", "DE", "US", "BR", "NG", "IN"]
                    .iter()
                    .position(|x| *x == s)
                    .unwrap(),
                _ => 0,
            };
            let z = synth::logit(
                a.get_f64(i).unwrap(),
                r.get_f64(i).unwrap(),
                country,
                Shift::None,
            );
            1.0 / (1.0 + (-z).exp())
        })
        .collect()
}

fn labels(f: &keel_core::Frame) -> Vec<f64> {
    let l = f.column("label").unwrap();
    (0..f.nrows()).map(|i| l.get_f64(i).unwrap()).collect()
}

#[test]
fn covariate_shift_is_detected_as_input_drift_and_only_alerts() {
    let reference = synth::transactions(800, Shift::None, 1);
    let current = synth::transactions(600, Shift::Covariate(0.6), 2);
    let report = detect_drift(
        &inputs(&reference),
        &inputs(&current),
        &DriftOptions::default(),
    )
    .unwrap();
    let drifted: Vec<&str> = report
        .columns
        .iter()
        .filter(|c| c.drift)
        .map(|c| c.column.as_str())
        .collect();
    assert!(
        drifted.contains(&"amount") && drifted.contains(&"country"),
        "{drifted:?}"
    );
    assert!(!drifted.contains(&"risk"));
    assert!(report.dataset_drift);
    // Performance holds (P(y|x) unchanged): the policy alerts, never retrains.
    let baseline =
        keel_monitor::metrics::roc_auc(&labels(&reference), &scores(&reference)).unwrap();
    let mut decay = DecayMonitor::new(DecayMetric::Auc, baseline, 0.05, 5000, 200).unwrap();
    for (y, p) in labels(&current).into_iter().zip(scores(&current)) {
        decay.push(y, p);
    }
    let evidence = decay.evaluate().unwrap();
    assert!(!evidence.decayed, "{evidence:?}");
    let d = decide(0, Some(&report), Some(&evidence));
    assert_eq!(d.action, Action::Alert, "{}", d.reason);
}

#[test]
fn prior_shift_is_detected_on_the_label_and_the_predictions() {
    let reference = synth::transactions(800, Shift::None, 3);
    let current = synth::transactions(600, Shift::Prior(1.5), 4);
    let r = reference.select(&["label"]).unwrap();
    let c = current.select(&["label"]).unwrap();
    let report = detect_drift(&r, &c, &DriftOptions::default()).unwrap();
    assert!(report.columns[0].drift, "{:?}", report.columns[0]);
    // Inputs do not move.
    let inputs_report = detect_drift(
        &inputs(&reference),
        &inputs(&current),
        &DriftOptions::default(),
    )
    .unwrap();
    assert!(!inputs_report.dataset_drift);
}

#[test]
fn concept_drift_decays_performance_and_triggers_retraining() {
    let reference = synth::transactions(800, Shift::None, 5);
    let current = synth::transactions(1500, Shift::Concept(1.0), 6);
    let report = detect_drift(
        &inputs(&reference),
        &inputs(&current),
        &DriftOptions::default(),
    )
    .unwrap();
    assert!(
        !report.dataset_drift,
        "inputs unchanged under concept drift"
    );
    let baseline =
        keel_monitor::metrics::roc_auc(&labels(&reference), &scores(&reference)).unwrap();
    let mut decay = DecayMonitor::new(DecayMetric::Auc, baseline, 0.05, 1000, 200).unwrap();
    let mut joiner = LabelJoiner::new(10_000);
    let s = scores(&current);
    for (i, p) in s.iter().enumerate() {
        joiner.prediction(&format!("req-{i}"), *p);
    }
    for (i, y) in labels(&current).into_iter().enumerate() {
        let (y, p) = joiner.label(&format!("req-{i}"), y).unwrap();
        decay.push(y, p);
    }
    assert_eq!(joiner.pending(), 0);
    let evidence = decay.evaluate().unwrap();
    assert!(evidence.decayed, "{evidence:?}");
    let alerts = Arc::new(Mutex::new(0));
    let a2 = alerts.clone();
    let log = DecisionLog::new(Box::new(CallbackSink(
        move |_d: &keel_monitor::Decision| *a2.lock().unwrap() += 1,
    )));
    let d = decide(42, Some(&report), Some(&evidence));
    assert_eq!(d.action, Action::Retrain);
    log.record(d);
    log.record(decide(43, Some(&report), None));
    assert_eq!(*alerts.lock().unwrap(), 1);
    assert_eq!(log.decisions().len(), 2);
    assert_eq!(log.to_json_lines().unwrap().lines().count(), 2);
}

/// With Evidently's default policy the KS columns hold the level; its one-sample chi-square
/// treats reference counts as exact and over-alarms on small references (about 20% here), so
/// categorical columns use the two-sample chi-square override for a calibrated level.
#[test]
fn no_drift_false_alarms_stay_within_the_configured_level() {
    let (runs, alpha) = (200u64, 0.05);
    let (mut column_alarms, mut dataset_alarms, mut columns) = (0usize, 0usize, 0usize);
    let mut opts = DriftOptions::default();
    opts.per_column.insert(
        "country".into(),
        keel_monitor::ColumnOptions {
            test: Some(keel_monitor::DriftTest::ChiSquareTwoSample),
            ..Default::default()
        },
    );
    for seed in 0..runs {
        let r = synth::transactions(300, Shift::None, 1000 + seed);
        let c = synth::transactions(200, Shift::None, 5000 + seed);
        let rep = detect_drift(&inputs(&r), &inputs(&c), &opts).unwrap();
        columns += rep.columns.len();
        column_alarms += rep.number_of_drifted_columns;
        dataset_alarms += usize::from(rep.dataset_drift);
    }
    let col_rate = column_alarms as f64 / columns as f64;
    let ds_rate = dataset_alarms as f64 / runs as f64;
    // Binomial tolerance of three standard deviations around the nominal level.
    let tol = 3.0 * (alpha * (1.0 - alpha) / columns as f64).sqrt();
    assert!(
        col_rate <= alpha + tol,
        "column false-alarm rate {col_rate}"
    );
    assert!(ds_rate <= alpha, "dataset false-alarm rate {ds_rate}");
}

#[test]
fn detectors_find_mean_shifts_and_stay_quiet_otherwise() {
    let mut quiet_ph = 0;
    let mut quiet_adwin = 0;
    for seed in 0..20 {
        let mut g = Gen::new(seed);
        let mut ph = PageHinkley::new(0.005, 20.0, 30);
        let mut adwin = Adwin::new(0.002);
        let mut ph_hit = None;
        let mut ad_hit = None;
        for t in 0..4000 {
            let x = if t < 2000 { 0.2 } else { 0.5 } + 0.1 * g.normal();
            if ph.update(x) && t >= 2000 && ph_hit.is_none() {
                ph_hit = Some(t);
            }
            if adwin.update(x) && t >= 2000 && ad_hit.is_none() {
                ad_hit = Some(t);
            }
            if t == 1999 {
                quiet_ph += usize::from(ph_hit.is_none());
                quiet_adwin += usize::from(adwin.detections == 0);
            }
        }
        let (p, a) = (
            ph_hit.expect("PH missed the shift"),
            ad_hit.expect("ADWIN missed the shift"),
        );
        assert!(p < 2200 && a < 2300, "late detection: PH {p}, ADWIN {a}");
        assert!(
            (adwin.mean() - 0.5).abs() < 0.05,
            "ADWIN keeps only the new regime"
        );
    }
    assert!(
        quiet_ph >= 19 && quiet_adwin >= 19,
        "false alarms: PH {quiet_ph}/20, ADWIN {quiet_adwin}/20 quiet"
    );
}

#[test]
fn profiles_merge_and_detect_drift_in_bounded_memory() {
    let reference = synth::transactions(5000, Shift::None, 7);
    let ref_profile = Profile::of_frame(&inputs(&reference), 2000, 1);
    // Two replicas each profile half of the current traffic, then merge.
    let current = synth::transactions(4000, Shift::Covariate(0.5), 8);
    let cols = ref_profile
        .column_names()
        .iter()
        .map(|n| (n.clone(), ref_profile.column(n).unwrap().kind()))
        .collect::<Vec<_>>();
    let mut a = Profile::new(&cols, 2000, 2);
    let mut b = Profile::new(&cols, 2000, 3);
    a.update_frame(&inputs(&current).slice(0, 2000).unwrap());
    b.update_frame(&inputs(&current).slice(2000, 2000).unwrap());
    a.merge(&b).unwrap();
    assert_eq!(a.rows(), 4000);
    assert_eq!(a.column("amount").unwrap().count(), 4000);
    let rep = ref_profile.drift(&a, &DriftOptions::default()).unwrap();
    assert!(
        rep.columns.iter().any(|c| c.column == "amount" && c.drift),
        "{rep:?}"
    );
    // Profiles persist in the envelope.
    let bytes = keel_core::envelope::encode(&ref_profile).unwrap();
    let back: Profile = keel_core::envelope::decode(&bytes).unwrap();
    assert_eq!(back, ref_profile);
    // Count windows close every n rows.
    let mut w = CountWindow::new(cols, 100, 50, 9);
    let mut closed = 0;
    for i in 0..250 {
        let v = i as f64;
        if w.push(&[
            ("amount", ValueRef::F64(v)),
            ("risk", ValueRef::F64(0.5)),
            ("country", ValueRef::Str("FR")),
        ])
        .is_some()
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 2);
    assert_eq!(w.current().rows(), 50);
}

#[test]
fn the_gate_checks_margin_guards_and_latency() {
    let f = synth::transactions(2000, Shift::None, 11);
    let y = labels(&f);
    let good = scores(&f);
    let noisy: Vec<f64> = good
        .iter()
        .enumerate()
        .map(|(i, p)| if i % 3 == 0 { 1.0 - p } else { *p })
        .collect();
    let gate = GateConfig {
        metric: DecayMetric::Auc,
        margin: 0.01,
        guards: vec![(DecayMetric::Logloss, 0.05)],
        latency_budget_us: Some(100.0),
    };
    let pass = gate.evaluate(&y, &noisy, &good, Some(20.0)).unwrap();
    assert!(pass.passed, "{pass:?}");
    let slow = gate.evaluate(&y, &noisy, &good, Some(500.0)).unwrap();
    assert!(!slow.passed);
    let worse = gate.evaluate(&y, &good, &noisy, Some(20.0)).unwrap();
    assert!(!worse.passed && !worse.checks[0].passed);
}

#[test]
fn reports_render_as_json_and_offline_html() {
    let r = synth::transactions(800, Shift::None, 21);
    let c = synth::transactions(600, Shift::Covariate(0.8), 22);
    let rep = detect_drift(&inputs(&r), &inputs(&c), &DriftOptions::default()).unwrap();
    let j = keel_monitor::report::to_json(&rep);
    assert_eq!(j["dataset_drift"], true);
    assert!(j["share_of_drifted_columns"].as_f64().unwrap() > 0.5);
    for col in ["amount", "risk", "country"] {
        for key in ["test", "score", "threshold", "drift"] {
            assert!(!j["columns"][col][key].is_null(), "{col}.{key}");
        }
    }
    let html = keel_monitor::report::to_html(&rep, &r, &c).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(
        !html.contains("http://")
            || html.matches("http://").count()
                == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "no network resources"
    );
    assert!(!html.contains("<script"));
}

/// Replays `fuzz/corpus/monitor_profile`; `KEEL_BLESS=1` rewrites its seed from a real profile.
#[test]
fn profile_corpus_replays() {
    let corpus = crate::manifest_dir().join("../../fuzz/corpus/monitor_profile");
    if std::env::var_os("KEEL_BLESS").is_some() {
        let p = Profile::of_frame(&synth::transactions(300, Shift::None, 1), 64, 1);
        std::fs::write(
            corpus.join("profile"),
            keel_core::envelope::encode(&p).unwrap(),
        )
        .unwrap();
    }
    let mut n = 0;
    for e in std::fs::read_dir(&corpus).unwrap() {
        keel_monitor::fuzzing::exercise(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 1, "seed corpus missing");
}

fn records(f: &keel_core::Frame, start: usize, t0: i64) -> Vec<keel_monitor::PredictionRecord> {
    use keel_core::Value;
    use keel_monitor::PredictionRecord;
    let s = scores(f);
    (0..f.nrows())
        .map(|i| PredictionRecord {
            request_id: format!("r{}", start + i),
            at_ms: t0 + i as i64 * 1000,
            model_version: 1,
            route: "champion".into(),
            inputs: vec![
                (
                    "amount".into(),
                    Value::F64(f.column("amount").unwrap().get_f64(i).unwrap()),
                ),
                (
                    "risk".into(),
                    Value::F64(f.column("risk").unwrap().get_f64(i).unwrap()),
                ),
                (
                    "country".into(),
                    Value::from(f.column("country").unwrap().get(i)),
                ),
            ],
            score: s[i],
        })
        .collect()
}

#[test]
fn the_runtime_monitor_alerts_on_covariate_drift_and_retrains_on_decay() {
    use keel_monitor::{DecayRule, Monitor, MonitorConfig, WindowSpec, PREDICTION_COLUMN};
    let reference = synth::transactions(900, Shift::None, 31);
    let mut cols: Vec<(String, keel_monitor::ColumnKind)> = ["amount", "risk"]
        .iter()
        .map(|c| (c.to_string(), keel_monitor::ColumnKind::Numerical))
        .collect();
    cols.push(("country".into(), keel_monitor::ColumnKind::Categorical));
    cols.push((
        PREDICTION_COLUMN.into(),
        keel_monitor::ColumnKind::Numerical,
    ));
    let mut profile = Profile::new(&cols, 5000, 1);
    for r in records(&reference, 0, 0) {
        let mut row: Vec<(&str, ValueRef<'_>)> = r
            .inputs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref()))
            .collect();
        row.push((PREDICTION_COLUMN, ValueRef::F64(r.score)));
        profile.update_row(&row);
    }
    let baseline =
        keel_monitor::metrics::roc_auc(&labels(&reference), &scores(&reference)).unwrap();
    let log = Arc::new(DecisionLog::default());
    let cfg = MonitorConfig {
        window: WindowSpec::Time(600_000),
        decay: Some(DecayRule {
            metric: DecayMetric::Auc,
            baseline,
            threshold: 0.05,
            window: 2000,
            min_samples: 300,
        }),
        ..MonitorConfig::default()
    };
    let mut m = Monitor::new(profile, cfg, log.clone()).unwrap();
    // 10 minutes of covariate-shifted traffic, labels come back: drift, no decay -> alert.
    let shifted = synth::transactions(601, Shift::Covariate(0.8), 32);
    let mut verdicts = vec![];
    for (i, r) in records(&shifted, 0, 0).iter().enumerate() {
        if let Some(v) = m.observe(r).unwrap() {
            verdicts.push(v);
        }
        m.label(&r.request_id, labels(&shifted)[i]);
    }
    assert_eq!(verdicts.len(), 1, "one 10-minute window closed");
    assert_eq!(
        verdicts[0].decision.action,
        Action::Alert,
        "{}",
        verdicts[0].decision.reason
    );
    // Then concept drift: the next window closes with decayed performance -> retrain.
    let concept = synth::transactions(1201, Shift::Concept(1.0), 33);
    let t0 = 601 * 1000;
    let mut last = None;
    for (i, r) in records(&concept, 10_000, t0).iter().enumerate() {
        if let Some(v) = m.observe(r).unwrap() {
            last = Some(v);
        }
        m.label(&r.request_id, labels(&concept)[i]);
    }
    let v = last.expect("a window closed");
    assert_eq!(v.decision.action, Action::Retrain, "{}", v.decision.reason);
    assert_eq!(m.joiner().orphans, 0);
    assert!(log.decisions().len() >= 2);
}

/// Issue 23, item 11: Page-Hinkley and ADWIN were implemented but fed nothing. With a
/// `ChangeRule` the monitor feeds each labelled prediction's log loss to the detector, and a
/// detected rise makes the next window's decision a retrain, its evidence recorded, before the
/// decay rule (no decay rule here at all) would have a say.
#[test]
fn change_detectors_feed_the_monitors_decisions() {
    use keel_monitor::{
        ChangeDetector, ChangeRule, ColumnKind, LossStream, Monitor, MonitorConfig,
        PredictionRecord, WindowSpec,
    };
    for detector in [
        ChangeDetector::PageHinkley {
            delta: 0.005,
            lambda: 20.0,
            min_samples: 100,
        },
        ChangeDetector::Adwin { delta: 0.002 },
    ] {
        let mut profile = Profile::new(&[("x".to_string(), ColumnKind::Numerical)], 256, 1);
        for i in 0..500 {
            profile.update_row(&[("x", ValueRef::F64(f64::from(i % 50)))]);
        }
        let log = Arc::new(DecisionLog::default());
        let cfg = MonitorConfig {
            window: WindowSpec::Count(1_000),
            change: Some(ChangeRule {
                detector,
                stream: LossStream::LogLoss,
            }),
            ..MonitorConfig::default()
        };
        let mut m = Monitor::new(profile, cfg, log.clone()).unwrap();
        let mut decisions = vec![];
        for i in 0..3_000u32 {
            // Same inputs throughout; the model is right until request 1,500, then wrong.
            let label = f64::from(i % 2);
            let good = if label == 1.0 { 0.9 } else { 0.1 };
            let score = if i < 1_500 { good } else { 1.0 - good };
            let rec = PredictionRecord {
                request_id: format!("r{i}"),
                at_ms: i64::from(i),
                model_version: 1,
                route: "champion".into(),
                inputs: vec![("x".into(), keel_core::Value::F64(f64::from(i % 50)))],
                score,
            };
            if let Some(v) = m.observe(&rec).unwrap() {
                decisions.push(v.decision);
            }
            m.label(&rec.request_id, label);
        }
        assert_eq!(decisions.len(), 3, "{detector:?}");
        assert_eq!(
            decisions[0].action,
            Action::None,
            "{detector:?}: {}",
            decisions[0].reason
        );
        let retrain = decisions.iter().find(|d| d.action == Action::Retrain);
        let d = retrain.unwrap_or_else(|| panic!("{detector:?}: no retrain in {decisions:?}"));
        assert!(
            !d.changes.is_empty() && d.changes[0].stream == "log_loss",
            "{d:?}"
        );
        assert!(d.changes[0].samples > 1_500, "{d:?}");
        assert!(d.reason.contains("log_loss rising"), "{}", d.reason);
    }
}

/// Issue 23, item 11: Evidently's default one-sample chi-square false-alarms far above its 5%
/// level on small references, and nothing told the user. The rate is measured here on
/// no-drift data (300 reference rows, 200 current), and a report that uses that test says so
/// with the rate this measurement supports (`CHI_SQUARE_FALSE_ALARM_RATE`).
#[test]
fn one_sample_chi_square_false_alarm_rate_is_what_the_warning_says() {
    let runs = 200u64;
    let mut alarms = 0usize;
    let mut warned = 0usize;
    for seed in 0..runs {
        let r = synth::transactions(300, Shift::None, 1000 + seed);
        let c = synth::transactions(200, Shift::None, 5000 + seed);
        let rep = detect_drift(&inputs(&r), &inputs(&c), &DriftOptions::default()).unwrap();
        let country = rep.columns.iter().find(|c| c.column == "country").unwrap();
        assert_eq!(country.test, keel_monitor::DriftTest::ChiSquare);
        alarms += usize::from(country.drift);
        warned += usize::from(rep.warnings.iter().any(|w| {
            w.contains("`country`")
                && w.contains(&format!(
                    "{:.0}%",
                    keel_monitor::CHI_SQUARE_FALSE_ALARM_RATE * 100.0
                ))
        }));
    }
    let rate = alarms as f64 / runs as f64;
    eprintln!("one-sample chi-square false alarms: {alarms} of {runs} no-drift runs ({rate})");
    assert_eq!(warned, runs as usize, "every report warns");
    assert!(
        (rate - keel_monitor::CHI_SQUARE_FALSE_ALARM_RATE).abs() < 0.08,
        "measured {rate}, the warning says {}",
        keel_monitor::CHI_SQUARE_FALSE_ALARM_RATE
    );
    // The two-sample test the warning recommends carries no such warning.
    let r = synth::transactions(300, Shift::None, 1);
    let c = synth::transactions(200, Shift::None, 2);
    let mut opts = DriftOptions::default();
    opts.per_column.insert(
        "country".into(),
        keel_monitor::ColumnOptions {
            test: Some(keel_monitor::DriftTest::ChiSquareTwoSample),
            ..Default::default()
        },
    );
    assert!(detect_drift(&inputs(&r), &inputs(&c), &opts)
        .unwrap()
        .warnings
        .is_empty());
}
