//! Statistics agree with scipy on committed fixtures (tests/fixtures/generate.py).

use keel_monitor::stats;
use serde_json::Value;

fn fixtures() -> Value {
    let p = &format!(
        "{}/tests/fixtures/scipy.json",
        crate::manifest_dir().display()
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn vec(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn rel_close(a: f64, b: f64, rtol: f64, atol: f64) -> bool {
    (a - b).abs() <= atol + rtol * b.abs()
}

const PHI: f64 = 0.618_033_988_749_894_9;

#[test]
fn ks_2samp_matches_scipy() {
    let f = fixtures();
    for (i, c) in f["ks"].as_array().unwrap().iter().enumerate() {
        let (a, b) = if let Some(p) = c.get("formula") {
            let n1 = p[0].as_u64().unwrap();
            let n2 = p[1].as_u64().unwrap();
            let shift = p[2].as_f64().unwrap();
            (
                (0..n1).map(|i| (i as f64 * PHI) % 1.0).collect::<Vec<_>>(),
                (0..n2)
                    .map(|i| (i as f64 * PHI * 1.0001) % 1.0 + shift)
                    .collect::<Vec<_>>(),
            )
        } else {
            (vec(&c["a"]), vec(&c["b"]))
        };
        let r = stats::ks_2samp(&a, &b).unwrap();
        let (ws, wp) = (
            c["statistic"].as_f64().unwrap(),
            c["pvalue"].as_f64().unwrap(),
        );
        assert!(
            rel_close(r.statistic, ws, 1e-12, 1e-15),
            "case {i}: D {} vs {ws}",
            r.statistic
        );
        assert_eq!(r.exact, c["exact"].as_bool().unwrap(), "case {i}");
        // Exact p-values agree to 1e-9; asymptotic ones to 1e-6 relative.
        let (rtol, atol) = if r.exact {
            (1e-9, 1e-12)
        } else {
            (1e-6, 1e-12)
        };
        assert!(
            rel_close(r.pvalue, wp, rtol, atol),
            "case {i}: p {} vs scipy {wp}",
            r.pvalue
        );
    }
}

#[test]
fn chisquare_wasserstein_jensen_shannon_match_scipy() {
    let f = fixtures();
    for c in f["chisquare"].as_array().unwrap() {
        let (s, p) = stats::chisquare(&vec(&c["obs"]), &vec(&c["exp"])).unwrap();
        assert!(rel_close(s, c["stat"].as_f64().unwrap(), 1e-12, 1e-14));
        assert!(
            rel_close(p, c["p"].as_f64().unwrap(), 1e-9, 1e-14),
            "{p} vs {}",
            c["p"]
        );
    }
    for c in f["wasserstein"].as_array().unwrap() {
        let d = stats::wasserstein(&vec(&c["a"]), &vec(&c["b"])).unwrap();
        assert!(
            rel_close(d, c["d"].as_f64().unwrap(), 1e-12, 1e-14),
            "{d} vs {}",
            c["d"]
        );
    }
    for c in f["js"].as_array().unwrap() {
        let d = stats::jensen_shannon(&vec(&c["p"]), &vec(&c["q"]));
        assert!(
            rel_close(d, c["d"].as_f64().unwrap(), 1e-12, 1e-14),
            "{d} vs {}",
            c["d"]
        );
    }
}

#[test]
fn degenerate_inputs() {
    assert!(stats::ks_2samp(&[], &[1.0]).is_none());
    assert!(stats::ks_2samp(&[f64::NAN], &[1.0]).is_none());
    assert_eq!(
        stats::ks_2samp(&[1.0, 2.0], &[1.0, 2.0]).unwrap().pvalue,
        1.0
    );
    assert!(stats::chisquare(&[1.0], &[1.0]).is_none());
    assert_eq!(
        stats::proportions_z_test(5.0, 10.0, 5.0, 10.0).unwrap().1,
        1.0
    );
    assert_eq!(
        stats::proportions_z_test(0.0, 10.0, 0.0, 10.0).unwrap().1,
        1.0
    );
    assert!(stats::wasserstein(&[], &[1.0]).is_none());
}
