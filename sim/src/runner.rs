//! Runs one seed of one scenario inside a fresh madsim runtime and summarises it in the
//! JSON line DESIGN.md §6 promises.

use keel_types::planted::PlantedBug;
use keel_types::trace;
use keel_workloads::check::judge;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The simulation seed: everything in the run follows from it.
    pub seed: u64,
    /// Workload name (see [`crate::scenario::WORKLOADS`]).
    pub workload: String,
    /// Fault families switched on.
    pub nemesis: Vec<String>,
    /// Length of the safety phase (faults on), simulated seconds.
    pub duration_s: u64,
    /// A deliberate bug to plant (negative tests: the checks must catch it).
    pub planted: Option<PlantedBug>,
    /// Where to write the recorded history (keel JSONL), if anywhere.
    pub history_out: Option<std::path::PathBuf>,
    /// Storage nodes, where the scenario lets the shape vary (3 or 5; default 3).
    pub stores: usize,
    /// Switch BUGGIFY sites on (each then enabled in about a quarter of runs).
    pub buggify: bool,
    /// Mean simulated milliseconds between fault injections.
    pub fault_gap_ms: u64,
    /// Print every trace event to stderr as it happens (`run --trace`).
    pub print_trace: bool,
    /// Regions to pre-split into (the `regions` benchmark workload only).
    pub regions: usize,
    /// Where to write the run's HTML report (`run --report`), if anywhere.
    pub report_out: Option<std::path::PathBuf>,
}

/// Storage nodes unless a run asks for another shape.
pub const STORES_DEFAULT: usize = 3;

impl RunConfig {
    /// A run of `workload` under `nemesis` for `duration_s` simulated seconds.
    pub fn new(seed: u64, workload: &str, nemesis: &[&str], duration_s: u64) -> RunConfig {
        RunConfig {
            seed,
            workload: workload.into(),
            nemesis: nemesis.iter().map(|s| s.to_string()).collect(),
            duration_s,
            planted: None,
            history_out: None,
            stores: STORES_DEFAULT,
            buggify: false,
            fault_gap_ms: keel_nemesis::MEAN_GAP_DEFAULT.as_millis() as u64,
            print_trace: false,
            regions: 100,
            report_out: None,
        }
    }
}

pub use keel_workloads::check::CheckModel;

thread_local! {
    static STATS: std::cell::RefCell<BTreeMap<String, u64>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Adds `value` to the run's verdict-neutral counter `name` (committed transactions,
/// conflicts, ...), reported in [`RunSummary::stats`]. Call from inside the simulation.
pub fn add_stat(name: &str, value: u64) {
    STATS.with(|s| *s.borrow_mut().entry(name.to_string()).or_insert(0) += value);
}

/// What a scenario reports back to the runner.
#[derive(Clone, Debug, Default)]
pub struct ScenarioOutcome {
    /// Operations the workload completed (any outcome).
    pub ops: u64,
    /// Regions at the end (0 where the scenario has none).
    pub regions: u64,
    /// `None` when every check passed, else what was violated.
    pub violation: Option<String>,
    /// The recorded history (keel JSONL) and the checker that judges it.
    pub history: Option<(String, CheckModel)>,
}

/// The one JSON line every run ends with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// Seed.
    pub seed: u64,
    /// Workload name.
    pub workload: String,
    /// Comma-separated fault families.
    pub nemesis: String,
    /// Operations completed.
    pub ops: u64,
    /// Simulated seconds the run took.
    pub sim_seconds: f64,
    /// Real seconds the run took.
    pub wall_seconds: f64,
    /// Regions at the end.
    pub regions: u64,
    /// "ok" or the violation.
    pub verdict: String,
    /// Hash of the full event trace, hex.
    pub trace_hash: String,
    /// Number of events folded into the hash.
    pub trace_events: u64,
    /// Storage nodes.
    pub stores: usize,
    /// Whether BUGGIFY was on.
    pub buggify: bool,
    /// Faults injected, per family.
    pub faults: BTreeMap<String, u64>,
    /// Requested fault families this cluster cannot support (they never fired).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults_unsupported: Vec<String>,
    /// BUGGIFY sites that fired (`file:line` → times).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub buggified: BTreeMap<String, u64>,
    /// Verdict-neutral counters the scenario reported (see [`add_stat`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, u64>,
}

impl RunSummary {
    /// True when every check passed.
    pub fn ok(&self) -> bool {
        self.verdict == "ok"
    }

    /// The fields that must be identical when the same seed runs twice.
    pub fn fingerprint(&self) -> (u64, String, u64, String, u64, String, String) {
        (
            self.ops,
            format!("{:.6}", self.sim_seconds),
            self.regions,
            self.verdict.clone(),
            self.trace_events,
            self.trace_hash.clone(),
            format!("{:?} {:?}", self.faults, self.buggified),
        )
    }
}

/// Simulated time a run may take beyond its safety phase before it counts as a hang.
const RUN_OVERTIME_MAX: Duration = Duration::from_secs(600);

/// Runs one seed and returns its summary. A panic anywhere in the simulation (an assertion
/// in the engine, say) becomes a violation verdict.
///
/// Each run gets a fresh OS thread: thread-locals such as rand's `ThreadRng` (which raft-rs
/// draws election timeouts from) and our trace hash then start from the run's seed instead
/// of carrying state over from an earlier run on the same thread.
pub fn run(cfg: &RunConfig) -> RunSummary {
    let cfg = cfg.clone();
    std::thread::Builder::new()
        .name(format!("sim-seed-{}", cfg.seed))
        .spawn(move || run_on_this_thread(&cfg))
        .expect("spawn simulation thread")
        .join()
        .expect("simulation thread panicked outside the runtime")
}

fn run_on_this_thread(cfg: &RunConfig) -> RunSummary {
    trace::reset();
    STATS.with(|s| s.borrow_mut().clear());
    keel_types::planted::plant(cfg.planted);
    keel_types::buggify::configure(cfg.buggify, cfg.seed);
    crate::faults::set_options(crate::faults::Options { mean_gap: Duration::from_millis(cfg.fault_gap_ms.max(1)) });
    let wall = Instant::now();
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(cfg.seed, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(cfg.duration_s) + RUN_OVERTIME_MAX);
    let scenario_cfg = cfg.clone();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async move {
            trace::print_events(scenario_cfg.print_trace);
            trace::keep_events(scenario_cfg.report_out.is_some().then_some(crate::report::KINDS));
            let start = tokio::time::Instant::now();
            let outcome = crate::scenario::run(&scenario_cfg).await;
            (outcome, start.elapsed())
        })
    }));
    let (outcome, sim_seconds) = match result {
        Ok((outcome, elapsed)) => (outcome, elapsed.as_secs_f64()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            (ScenarioOutcome { violation: Some(format!("panic: {msg}")), ..Default::default() }, 0.0)
        }
    };
    let (hash, events) = trace::snapshot();
    let kept = trace::take_events();
    for (name, value) in trace::take_counts() {
        add_stat(name, value);
    }
    let nemesis = crate::faults::take_report();
    let buggified = keel_types::buggify::fired().into_iter().map(|(site, n)| (site.to_string(), n)).collect();
    keel_types::buggify::configure(false, 0);
    let mut outcome = outcome;
    let mut counterexample = None;
    let history = outcome.history.take();
    if let Some((jsonl, model)) = &history {
        if let Some(path) = &cfg.history_out {
            if let Err(e) = std::fs::write(path, jsonl) {
                eprintln!("could not write history to {}: {e}", path.display());
            }
        }
        if outcome.violation.is_none() {
            let judgement = judge(jsonl, *model);
            outcome.violation = judgement.violation;
            counterexample = judgement.page;
        }
    }
    let summary = RunSummary {
        seed: cfg.seed,
        workload: cfg.workload.clone(),
        nemesis: cfg.nemesis.join(","),
        ops: outcome.ops,
        sim_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        regions: outcome.regions,
        verdict: outcome.violation.unwrap_or_else(|| "ok".into()),
        trace_hash: format!("{hash:016x}"),
        trace_events: events,
        stores: crate::scenario::stores(cfg),
        buggify: cfg.buggify,
        faults: nemesis.fired,
        faults_unsupported: nemesis.unsupported,
        buggified,
        stats: STATS.with(|s| std::mem::take(&mut *s.borrow_mut())),
    };
    if let Some(path) = &cfg.report_out {
        let data = crate::report::data(&summary, &kept, history.as_ref().map(|(jsonl, _)| jsonl.as_str()));
        if let Err(e) = std::fs::write(path, crate::report::render(&data, counterexample.as_deref())) {
            eprintln!("could not write the report to {}: {e}", path.display());
        }
    }
    summary
}
