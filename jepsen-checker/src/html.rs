//! Self-contained HTML reports: a timeline of the failing part of a non-linearizable
//! history (one lane per process; the op that cannot be placed in red, the longest
//! linearizable prefix numbered in linearization order), or a list of anomalies.
//! Inline CSS and SVG only: no scripts, no external assets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{History, OpType};
use crate::linear::Violation;
use crate::report::Anomaly;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222}\
h1{font-size:20px}pre,.mono{font-family:ui-monospace,monospace;font-size:12px}\
.legend span{display:inline-block;padding:2px 8px;margin-right:8px;border-radius:3px;font-size:12px}\
svg text{font-family:ui-monospace,monospace;font-size:11px}\
li{margin:6px 0}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\n<body><h1>{t}</h1>\n{body}</body></html>\n",
        t = esc(title)
    )
}

/// The timeline of a linearizability violation.
pub fn timeline(h: &History, v: &Violation, explanation: &[String]) -> String {
    let ops: Vec<usize> = v.part_ops.clone();
    // Compress time: distinct event positions of the part, in order.
    let mut stamps: Vec<usize> = Vec::new();
    for &id in &ops {
        let o = &h.ops[id];
        stamps.push(o.call);
        if let Some(r) = o.ret {
            stamps.push(r);
        }
    }
    stamps.sort_unstable();
    stamps.dedup();
    let x_of = |t: usize| stamps.binary_search(&t).unwrap_or_else(|i| i);
    let end = stamps.len();
    let mut lanes: BTreeMap<i64, usize> = BTreeMap::new();
    for &id in &ops {
        let n = lanes.len();
        lanes.entry(h.ops[id].process).or_insert(n);
    }
    for (i, v) in lanes.values_mut().enumerate() {
        *v = i;
    }
    let order: BTreeMap<usize, usize> = v.prefix.iter().enumerate().map(|(i, &id)| (id, i + 1)).collect();
    let (col, lane_h, left, top) = (26.0_f64, 34.0_f64, 70.0_f64, 20.0_f64);
    let width = left + col * (end as f64 + 1.0) + 20.0;
    let height = top + lane_h * lanes.len() as f64 + 20.0;
    let mut svg = String::new();
    let _ = write!(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\">");
    for (p, &lane) in &lanes {
        let y = top + lane as f64 * lane_h;
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{}\">p{p}</text><line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#eee\"/>",
            y + 18.0,
            y + lane_h - 2.0,
            width - 10.0,
            y + lane_h - 2.0
        );
    }
    for &id in &ops {
        let o = &h.ops[id];
        let y = top + lanes[&o.process] as f64 * lane_h + 4.0;
        let x0 = left + col * x_of(o.call) as f64;
        let x1 = left + col * o.ret.map_or(end as f64, |r| x_of(r) as f64) + col * 0.8;
        let (fill, stroke) = if id == v.stuck {
            ("#f8c9c4", "#c0392b")
        } else if order.contains_key(&id) {
            ("#cfe8d5", "#2e7d32")
        } else {
            ("#e8e8e8", "#888")
        };
        let dash = if o.outcome == OpType::Ok { "" } else { " stroke-dasharray=\"4 3\"" };
        let val = if o.outcome == OpType::Ok { &o.value } else { &o.invoke_value };
        let mut label = format!("{} {}", o.f, val);
        if let Some(n) = order.get(&id) {
            label = format!("#{n} {label}");
        }
        let _ = write!(
            svg,
            "<g><title>{}</title><rect x=\"{x0}\" y=\"{y}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"{fill}\" stroke=\"{stroke}\"{dash}/><text x=\"{}\" y=\"{}\">{}</text></g>",
            esc(&o.describe()),
            (x1 - x0).max(6.0),
            lane_h - 10.0,
            x0 + 3.0,
            y + 16.0,
            esc(&label)
        );
    }
    svg.push_str("</svg>");
    let mut body = String::new();
    body.push_str("<div class=\"legend\"><span style=\"background:#cfe8d5\">linearized prefix (#n = order)</span><span style=\"background:#f8c9c4\">cannot be placed</span><span style=\"background:#e8e8e8\">not reached</span><span style=\"border:1px dashed #888\">unknown outcome (info)</span></div>\n");
    body.push_str("<pre>");
    for l in explanation {
        body.push_str(&esc(l));
        body.push('\n');
    }
    body.push_str("</pre>\n<div style=\"overflow-x:auto\">");
    body.push_str(&svg);
    body.push_str("</div>\n");
    let title = match &v.key {
        Some(k) => format!("Not linearizable: key {k}"),
        None => "Not linearizable".to_string(),
    };
    page(&title, &body)
}

/// A list of anomalies (transactional or bank checks).
pub fn anomalies(title: &str, lines: &[String], anomalies: &[Anomaly]) -> String {
    let mut body = String::from("<pre>");
    for l in lines {
        body.push_str(&esc(l));
        body.push('\n');
    }
    body.push_str("</pre><ol>");
    for a in anomalies {
        let _ = write!(body, "<li><b>{}</b>: {}</li>", esc(&a.kind), esc(&a.explanation));
    }
    body.push_str("</ol>");
    page(title, &body)
}
