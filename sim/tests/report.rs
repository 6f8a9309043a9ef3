//! `run --report`: the page is written, and the data it embeds (what it draws) holds the
//! run's verdict, a fault band for every fault on the nodes it hit, and — for a failing run —
//! the checker's counterexample.
#![cfg(madsim)]

use keel_sim::report::parse_data;
use keel_sim::runner::{run, RunConfig};
use keel_types::planted::PlantedBug;

fn report_of(mut cfg: RunConfig, name: &str) -> (keel_sim::runner::RunSummary, String) {
    let path = std::env::temp_dir().join(format!("keel-report-{}-{name}.html", std::process::id()));
    cfg.report_out = Some(path.clone());
    let summary = run(&cfg);
    let page = std::fs::read_to_string(&path).expect("the report was written");
    std::fs::remove_file(&path).ok();
    (summary, page)
}

#[test]
fn report_holds_verdict_fault_bands_leaders_and_throughput() {
    let cfg = RunConfig::new(1, "register", &["kill", "partition"], 15);
    let (summary, page) = report_of(cfg, "ok");
    assert!(summary.ok(), "{}", summary.verdict);
    let data = parse_data(&page).expect("the page embeds its data");
    assert_eq!(data.summary, summary, "the page reports this run's summary and verdict");
    let fired: u64 = summary.faults.values().sum();
    assert!(fired > 0, "{summary:?}");
    for family in summary.faults.keys() {
        assert!(data.bands.iter().any(|b| b.label.starts_with(family.as_str())), "no band of {family}");
    }
    for b in &data.bands {
        assert!(data.nodes.contains(&b.node), "band on an unknown node {b:?}");
        assert!(b.from <= b.to && b.to <= summary.sim_seconds + 1.0, "{b:?}");
    }
    // A kill names its node: its band sits on that node's lane only.
    let kill = data.bands.iter().find(|b| b.label.starts_with("kill/")).expect("a kill band");
    assert_eq!(kill.label, format!("kill/{}", kill.node));
    // Every band is drawn.
    assert_eq!(page.matches("<rect class=\"fault\"").count(), data.bands.len());
    assert!(!data.leaders.is_empty(), "a register run elects leaders");
    assert_eq!(page.matches("<rect class=\"leader\"").count(), data.leaders.len());
    let ok_ops: u64 = data.seconds.iter().map(|s| s.ok).sum();
    assert!(ok_ops > 100 && ok_ops <= summary.ops, "{ok_ops} ok of {}", summary.ops);
    assert!(!page.contains("class=\"counterexample\""), "no counterexample for a valid history");
}

#[test]
fn report_of_a_violation_embeds_the_counterexample() {
    let mut cfg = RunConfig::new(1, "register", &["kill", "partition"], 30);
    cfg.planted = Some(PlantedBug::AckBeforeCommit);
    let (summary, page) = report_of(cfg, "bad");
    assert!(summary.verdict.starts_with("not linearizable"), "{}", summary.verdict);
    let data = parse_data(&page).expect("the page embeds its data");
    assert_eq!(data.summary.verdict, summary.verdict);
    let frame = page.find("<iframe class=\"counterexample\" srcdoc=\"").expect("a counterexample frame");
    let srcdoc = &page[frame..page[frame..].find("</iframe>").map_or(page.len(), |e| frame + e)];
    assert!(srcdoc.contains("Not linearizable"), "the checker's own page is embedded");
}
