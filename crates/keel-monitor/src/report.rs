//! Drift reports for people and machines: JSON with Evidently-like keys, and a self-contained
//! HTML page (inline SVG, no scripts, no network) with each feature's reference and current
//! distributions.

use std::fmt::Write;

use keel_core::Frame;
use serde_json::json;

use crate::drift::{self, ColumnKind, DriftReport, Values};
use crate::Result;

/// The report as JSON: `dataset_drift`, `share_of_drifted_columns`, `drift_share`,
/// `number_of_drifted_columns`, `columns` (per column: `test`, `score`, `threshold`,
/// `drift`, `kind`, `sizes`) and `skipped` (column name -> why it was not tested).
pub fn to_json(report: &DriftReport) -> serde_json::Value {
    let columns: serde_json::Map<String, serde_json::Value> = report
        .columns
        .iter()
        .map(|c| {
            (
                c.column.clone(),
                json!({
                    "test": c.test.display_name(),
                    "score": c.score,
                    "threshold": c.threshold,
                    "drift": c.drift,
                    "kind": c.kind,
                    "sizes": {"reference": c.sizes.0, "current": c.sizes.1},
                }),
            )
        })
        .collect();
    json!({
        "dataset_drift": report.dataset_drift,
        "share_of_drifted_columns": report.share_of_drifted_columns,
        "number_of_drifted_columns": report.number_of_drifted_columns,
        "drift_share": report.drift_share,
        "columns": columns,
        "skipped": report
            .skipped
            .iter()
            .map(|s| (s.column.clone(), json!(s.reason)))
            .collect::<serde_json::Map<_, _>>(),
        "warnings": report.warnings,
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Two overlaid bar series (reference blue, current orange) as an SVG.
fn bars_svg(labels: &[String], a: &[f64], b: &[f64]) -> String {
    let (w, h, pad) = (560.0, 180.0, 24.0);
    let n = a.len().max(1) as f64;
    let max = a.iter().chain(b).copied().fold(1e-12, f64::max);
    let bw = (w - 2.0 * pad) / n;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\">",
        h + 30.0
    );
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let x0 = pad + i as f64 * bw;
        for (k, (v, color)) in [(x, "#1f77b4"), (y, "#ff7f0e")].into_iter().enumerate() {
            let bh = v / max * (h - pad);
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\" fill-opacity=\"0.75\"><title>{}: {:.4}</title></rect>",
                x0 + k as f64 * bw / 2.0,
                h - bh,
                (bw / 2.0 - 1.0).max(0.5),
                bh,
                esc(labels.get(i).map_or("", String::as_str)),
                v
            );
        }
    }
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{h}\" x2=\"{}\" y2=\"{h}\" stroke=\"#333\"/>",
        w - pad
    );
    if let (Some(first), Some(last)) = (labels.first(), labels.last()) {
        let _ = write!(
            s,
            "<text x=\"{pad}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            h + 16.0,
            esc(first),
            w - pad,
            h + 16.0,
            esc(last)
        );
    }
    s.push_str("</svg>");
    s
}

/// Shares per bin of a column in both frames: 20 equal-width bins over both samples for
/// numbers, the 20 most frequent labels for categories.
fn distribution(r: &Values, c: &Values) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    match (r, c) {
        (Values::Num(a), Values::Num(b)) => {
            let all: Vec<f64> = a.iter().chain(b).copied().collect();
            let (lo, hi) = all
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                    (l.min(*v), h.max(*v))
                });
            let (lo, hi) = if lo == hi {
                (lo - 0.5, hi + 0.5)
            } else {
                (lo, hi)
            };
            let edges: Vec<f64> = (0..=20).map(|i| lo + (hi - lo) * i as f64 / 20.0).collect();
            let share = |x: &[f64]| {
                drift::histogram(x, &edges)
                    .into_iter()
                    .map(|k| k as f64 / x.len().max(1) as f64)
                    .collect::<Vec<_>>()
            };
            let labels = edges[..20].iter().map(|e| format!("{e:.4}")).collect();
            (labels, share(a), share(b))
        }
        (Values::Cat(a), Values::Cat(b)) => {
            let (na, nb) = (r.len().max(1) as f64, c.len().max(1) as f64);
            let mut keys: Vec<(&String, usize)> = a
                .iter()
                .map(|(k, v)| (k, *v + b.get(k).copied().unwrap_or(0)))
                .chain(
                    b.iter()
                        .filter(|(k, _)| !a.contains_key(*k))
                        .map(|(k, v)| (k, *v)),
                )
                .collect();
            keys.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
            keys.truncate(20);
            let labels: Vec<String> = keys.iter().map(|(k, _)| (*k).clone()).collect();
            let sa = labels
                .iter()
                .map(|k| *a.get(k).unwrap_or(&0) as f64 / na)
                .collect();
            let sb = labels
                .iter()
                .map(|k| *b.get(k).unwrap_or(&0) as f64 / nb)
                .collect();
            (labels, sa, sb)
        }
        _ => (Vec::new(), Vec::new(), Vec::new()),
    }
}

/// The report as one self-contained HTML page: verdict, a table of every column's test, score
/// and threshold, and per column an SVG of the reference and current distributions.
pub fn to_html(report: &DriftReport, reference: &Frame, current: &Frame) -> Result<String> {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>keel drift report</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.d{color:#b00;font-weight:bold}\
         .legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}</style></head><body>",
    );
    let _ = write!(
        h,
        "<h1>Data drift</h1><p class=\"{}\">Dataset drift: {} ({} of {} columns drifted, share {:.3}, threshold {:.2})</p>",
        if report.dataset_drift { "d" } else { "" },
        if report.dataset_drift { "DETECTED" } else { "not detected" },
        report.number_of_drifted_columns,
        report.columns.len(),
        report.share_of_drifted_columns,
        report.drift_share
    );
    h.push_str("<table><tr><th>column</th><th>kind</th><th>test</th><th>score</th><th>threshold</th><th>drift</th></tr>");
    for c in &report.columns {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:?}</td><td>{}</td><td>{:.6}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&c.column),
            c.kind,
            c.test.display_name(),
            c.score,
            c.threshold,
            if c.drift { "d" } else { "" },
            if c.drift { "yes" } else { "no" }
        );
    }
    h.push_str("</table>");
    if !report.skipped.is_empty() {
        h.push_str("<p>Not tested: ");
        let list: Vec<String> = report
            .skipped
            .iter()
            .map(|s| format!("{} ({})", esc(&s.column), esc(&s.reason)))
            .collect();
        h.push_str(&list.join(", "));
        h.push_str("</p>");
    }
    h.push_str("<p class=\"legend\"><span style=\"background:#1f77b4\"></span>reference<span style=\"background:#ff7f0e\"></span>current</p>");
    for c in &report.columns {
        let (Ok(rc), Ok(cc)) = (reference.column(&c.column), current.column(&c.column)) else {
            continue;
        };
        let kind: ColumnKind = c.kind;
        let (r, cu) = (
            drift::column_values(rc, kind),
            drift::column_values(cc, kind),
        );
        let (labels, a, b) = distribution(&r, &cu);
        let _ = write!(
            h,
            "<h2>{}</h2><p>{} = {:.6} (threshold {}){}</p>{}",
            esc(&c.column),
            c.test.display_name(),
            c.score,
            c.threshold,
            if c.drift {
                " <span class=\"d\">drift</span>"
            } else {
                ""
            },
            bars_svg(&labels, &a, &b)
        );
    }
    h.push_str("</body></html>\n");
    Ok(h)
}
