//! `cargo sim -- run --report OUT.html`: one self-contained page (inline CSS and SVG; no
//! scripts, no external assets) to read a run at a glance — a timeline over simulated time
//! with every fault as a shaded band on the nodes it hit, leader changes per region,
//! throughput and latency per simulated second, and the verdict with jepsen-checker's own
//! page of the counterexample. What the page draws is also embedded as JSON (an inert
//! `application/json` block), so tools and tests read the data instead of scraping markup.

use crate::runner::RunSummary;
use keel_types::trace::Event;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The trace event kinds a report is drawn from (see [`keel_types::trace::keep_events`]).
pub const KINDS: &[&str] = &["sim.add", "nemesis.start", "nemesis.end", "raft.leader", "history.start"];

/// The helper node the nemesis asks PD from: never faulted, not drawn.
const HELPER: &str = "nemesis";
/// Id of the embedded data block.
const DATA_ID: &str = "run-data";
/// Width of the time axis, in pixels.
const PLOT_W: f64 = 900.0;
/// Left margin for lane names, in pixels.
const LEFT: f64 = 110.0;

/// One fault over one node's lane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// The node.
    pub node: String,
    /// The fault's label (family/variant and its targets).
    pub label: String,
    /// Simulated seconds it started.
    pub from: f64,
    /// Simulated seconds it ended (the run's end if it never did).
    pub to: f64,
}

/// A region's replica on `store` became leader at `t`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderChange {
    /// Region id.
    pub region: u64,
    /// Store id of the new leader.
    pub store: u64,
    /// Simulated seconds.
    pub t: f64,
}

/// One simulated second of the workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Second since the run started.
    pub t: u64,
    /// Operations completed ok in it.
    pub ok: u64,
    /// Their mean latency, milliseconds.
    pub mean_latency_ms: f64,
}

/// What a report shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    /// The run's summary line.
    pub summary: RunSummary,
    /// Nodes, in the order they were added.
    pub nodes: Vec<String>,
    /// Faults per node.
    pub bands: Vec<Band>,
    /// Leader changes.
    pub leaders: Vec<LeaderChange>,
    /// Throughput and latency per second.
    pub seconds: Vec<Second>,
}

/// Gathers the report's data from the run's kept trace events and its history (keel JSONL).
pub fn data(summary: &RunSummary, events: &[Event], history: Option<&str>) -> ReportData {
    let end = summary.sim_seconds.max(events.last().map_or(0.0, |e| e.t));
    let mut nodes: Vec<String> = Vec::new();
    let mut open: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut faults: Vec<(String, f64, f64)> = Vec::new();
    let mut leaders = Vec::new();
    let mut history_start = 0.0;
    for e in events {
        match e.kind.as_str() {
            "sim.add" => {
                let name = e.text.split(' ').next().unwrap_or_default().to_string();
                if name != HELPER && !nodes.contains(&name) {
                    nodes.push(name);
                }
            }
            "nemesis.start" => match e.text.rsplit_once(" for ") {
                // A fault with nothing to undo (a split, a leader transfer) is an instant.
                Some((label, "0ns")) => faults.push((label.to_string(), e.t, e.t)),
                Some((label, _)) => open.entry(label.to_string()).or_default().push(e.t),
                None => open.entry(e.text.clone()).or_default().push(e.t),
            },
            "nemesis.end" => {
                if let Some(from) = open.get_mut(&e.text).filter(|v| !v.is_empty()).map(|v| v.remove(0)) {
                    faults.push((e.text.clone(), from, e.t));
                }
            }
            "raft.leader" => {
                let mut it = e.text.split(' ');
                let store = it.next().and_then(|s| s.strip_prefix('s')).and_then(|s| s.parse().ok());
                let region = it.next().and_then(|r| r.parse().ok());
                if let (Some(store), Some(region)) = (store, region) {
                    leaders.push(LeaderChange { region, store, t: e.t });
                }
            }
            "history.start" => history_start = e.t,
            _ => {}
        }
    }
    for (label, starts) in open {
        faults.extend(starts.into_iter().map(|from| (label.clone(), from, end)));
    }
    faults.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut bands = Vec::new();
    for (label, from, to) in faults {
        let tokens: Vec<&str> = label.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).collect();
        let hit: Vec<&String> = nodes.iter().filter(|n| tokens.contains(&n.as_str())).collect();
        // A fault that names no node (loss, latency, a power loss) hits every node.
        let hit = if hit.is_empty() { nodes.iter().collect() } else { hit };
        bands.extend(hit.into_iter().map(|node| Band { node: node.clone(), label: label.clone(), from, to }));
    }
    let seconds = history.map_or_else(Vec::new, |h| per_second(h, history_start));
    ReportData { summary: summary.clone(), nodes, bands, leaders, seconds }
}

/// Throughput and mean latency per simulated second from a keel JSONL history whose time
/// zero is `offset` seconds into the run.
fn per_second(jsonl: &str, offset: f64) -> Vec<Second> {
    let mut invoked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut buckets: BTreeMap<u64, (u64, f64)> = BTreeMap::new();
    for line in jsonl.lines() {
        let Ok(op) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(process), Some(time)) = (op["process"].as_u64(), op["time"].as_u64()) else { continue };
        match op["type"].as_str() {
            Some("invoke") => {
                invoked.insert(process, time);
            }
            Some("ok") => {
                if let Some(start) = invoked.remove(&process) {
                    let t = (offset + time as f64 / 1e9) as u64;
                    let b = buckets.entry(t).or_default();
                    b.0 += 1;
                    b.1 += time.saturating_sub(start) as f64 / 1e6;
                }
            }
            _ => {
                invoked.remove(&process);
            }
        }
    }
    buckets.into_iter().map(|(t, (ok, sum))| Second { t, ok, mean_latency_ms: sum / ok as f64 }).collect()
}

/// Escapes text for HTML (also inside attributes).
fn esc(s: &str) -> String {
    jepsen_checker::html::esc(s)
}

/// A stable colour per fault family.
fn colour(label: &str) -> &'static str {
    const COLOURS: [&str; 8] = ["#e74c3c", "#3498db", "#f39c12", "#8e44ad", "#16a085", "#d35400", "#2c3e50", "#c0392b"];
    let family = label.split('/').next().unwrap_or(label);
    COLOURS[keel_types::trace::fnv1a(0, family.as_bytes()) as usize % COLOURS.len()]
}

/// Renders the page; `counterexample` is jepsen-checker's page for the violation, if any.
pub fn render(d: &ReportData, counterexample: Option<&str>) -> String {
    let end = d.summary.sim_seconds.max(d.bands.iter().map(|b| b.to).fold(0.0, f64::max)).max(1.0);
    let x = |t: f64| LEFT + t / end * PLOT_W;
    let width = LEFT + PLOT_W + 20.0;
    let s = &d.summary;
    let mut body = String::new();
    let _ = write!(
        body,
        "<p class=\"mono\">seed {} · workload {} · nemesis {} · {} stores · buggify {} · {} ops · {:.1} simulated s · {} regions at the end</p>",
        s.seed,
        esc(&s.workload),
        esc(&s.nemesis),
        s.stores,
        s.buggify,
        s.ops,
        s.sim_seconds,
        s.regions
    );
    let ok = s.ok();
    let _ = write!(
        body,
        "<h2 class=\"{}\">Verdict: {}</h2><pre class=\"verdict\">{}</pre>",
        if ok { "ok" } else { "bad" },
        if ok { "ok" } else { "violation" },
        esc(&s.verdict)
    );

    // Faults per node.
    let lane = 22.0;
    let top = 24.0;
    let height = top + lane * d.nodes.len() as f64 + 10.0;
    let _ = write!(body, "<h2>Faults per node</h2><svg width=\"{width}\" height=\"{height}\">");
    axis(&mut body, end, &x, 14.0);
    for (i, node) in d.nodes.iter().enumerate() {
        let y = top + lane * i as f64;
        let _ = write!(
            body,
            "<text x=\"4\" y=\"{}\">{}</text><line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>",
            y + 15.0,
            esc(node),
            y + lane - 1.0,
            LEFT + PLOT_W,
            y + lane - 1.0
        );
        for b in d.bands.iter().filter(|b| &b.node == node) {
            let _ = write!(
                body,
                "<rect class=\"fault\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"0.35\"><title>{} {:.2}–{:.2} s</title></rect>",
                x(b.from),
                y + 2.0,
                (x(b.to) - x(b.from)).max(1.5),
                lane - 4.0,
                colour(&b.label),
                esc(&b.label),
                b.from,
                b.to
            );
        }
    }
    body.push_str("</svg>");

    // Leader changes per region.
    let mut regions: Vec<u64> = d.leaders.iter().map(|l| l.region).collect();
    regions.sort_unstable();
    regions.dedup();
    let lane = 12.0;
    let height = top + lane * regions.len() as f64 + 10.0;
    let _ = write!(
        body,
        "<h2>Leader changes ({} in {} regions)</h2><svg width=\"{width}\" height=\"{height}\">",
        d.leaders.len(),
        regions.len()
    );
    axis(&mut body, end, &x, 14.0);
    for (i, region) in regions.iter().enumerate() {
        let y = top + lane * i as f64;
        let _ = write!(body, "<text x=\"4\" y=\"{}\" class=\"small\">region {region}</text>", y + 9.0);
        for l in d.leaders.iter().filter(|l| l.region == *region) {
            let _ = write!(
                body,
                "<rect class=\"leader\" x=\"{:.1}\" y=\"{y:.1}\" width=\"2\" height=\"{}\" fill=\"#2e7d32\"><title>region {} leader on store {} at {:.2} s</title></rect>",
                x(l.t),
                lane - 2.0,
                l.region,
                l.store,
                l.t
            );
        }
    }
    body.push_str("</svg>");

    // Throughput and latency.
    curve(&mut body, "Throughput (ok operations per simulated second)", &d.seconds, |s| s.ok as f64, end, &x);
    curve(&mut body, "Mean latency of ok operations (ms)", &d.seconds, |s| s.mean_latency_ms, end, &x);

    if let Some(page) = counterexample {
        let _ = write!(
            body,
            "<h2>Counterexample (jepsen-checker)</h2><iframe class=\"counterexample\" srcdoc=\"{}\"></iframe>",
            esc(page)
        );
    }
    let json = serde_json::to_string(d).expect("report data serializes").replace("</", "<\\/");
    let _ = write!(body, "<script type=\"application/json\" id=\"{DATA_ID}\">{json}</script>");
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>keel sim seed {}</title><style>{STYLE}</style></head>\n<body><h1>keel simulation: seed {} ({})</h1>\n{body}\n</body></html>\n",
        s.seed,
        s.seed,
        esc(&s.workload)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}\
h2{font-size:16px;margin-top:24px}h2.ok{color:#2e7d32}h2.bad{color:#c0392b}\
pre,.mono{font-family:ui-monospace,monospace;font-size:12px}pre.verdict{white-space:pre-wrap}\
svg text{font-family:ui-monospace,monospace;font-size:11px}svg text.small{font-size:9px}\
iframe.counterexample{width:100%;height:600px;border:1px solid #ccc}";

/// Second marks along the top of a timeline.
fn axis(body: &mut String, end: f64, x: &dyn Fn(f64) -> f64, y: f64) {
    let step =
        [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0].into_iter().find(|s| end / s <= 12.0).unwrap_or(600.0);
    let mut t = 0.0;
    while t <= end {
        let _ = write!(body, "<text x=\"{:.1}\" y=\"{y}\" class=\"small\">{t}s</text>", x(t));
        t += step;
    }
}

/// A line chart of one per-second value.
fn curve(
    body: &mut String,
    title: &str,
    seconds: &[Second],
    value: impl Fn(&Second) -> f64,
    end: f64,
    x: &dyn Fn(f64) -> f64,
) {
    let (top, h) = (24.0, 90.0);
    let max = seconds.iter().map(&value).fold(0.0, f64::max).max(1e-9);
    let _ =
        write!(body, "<h2>{}</h2><svg width=\"{}\" height=\"{}\">", esc(title), LEFT + PLOT_W + 20.0, top + h + 10.0);
    axis(body, end, x, 14.0);
    let _ = write!(body, "<text x=\"4\" y=\"{}\">max {max:.1}</text>", top + 10.0);
    let points: Vec<String> =
        seconds.iter().map(|s| format!("{:.1},{:.1}", x(s.t as f64 + 0.5), top + h - value(s) / max * h)).collect();
    let _ = write!(
        body,
        "<polyline fill=\"none\" stroke=\"#3498db\" stroke-width=\"1.5\" points=\"{}\"/>",
        points.join(" ")
    );
    body.push_str("</svg>");
}

/// Reads the data embedded in a page written by [`render`].
pub fn parse_data(page: &str) -> Option<ReportData> {
    let open = format!("<script type=\"application/json\" id=\"{DATA_ID}\">");
    let start = page.find(&open)? + open.len();
    let len = page[start..].find("</script>")?;
    serde_json::from_str(&page[start..start + len]).ok()
}
