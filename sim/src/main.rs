//! `cargo sim`: run one seed, a swarm of seeds, the regression corpus or the planted-bug
//! (negative) tests on a simulated keel cluster.
//!
//! Contract (DESIGN.md §6): every run ends with one JSON line; exit 0 when every run is ok,
//! 1 on a violation, 2 on a usage error.

#[cfg(not(madsim))]
fn main() {
    eprintln!("keel-sim must be built with --cfg madsim: run it as `cargo sim -- run --seed 1`");
    std::process::exit(2);
}

/// mimalloc instead of glibc malloc, as the `keel` binary: a simulation allocates and frees
/// small buffers (frames, envelopes, keys, tasks) at a high rate, and glibc's malloc and free
/// took about a fifth of the simulator's CPU.
#[cfg(madsim)]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(madsim)]
fn main() {
    std::process::exit(cli::main());
}

#[cfg(madsim)]
mod cli {
    use clap::{Parser, Subcommand};
    use keel_sim::negative::{self, CaseResult};
    use keel_sim::runner::{run, RunConfig, RunSummary, STORES_DEFAULT};
    use keel_sim::scenario::WORKLOADS;
    use keel_types::planted::PlantedBug;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// Workloads whose scenario honours `--stores` (others always run their own shape).
    const SHAPED_WORKLOADS: &[&str] = &["register"];
    /// Workloads a swarm draws from when `--workload` is not given (`counter` is the
    /// harness self-test, not keel; `regions` is a benchmark that checks little).
    fn swarm_workloads() -> Vec<&'static str> {
        WORKLOADS.iter().copied().filter(|w| !matches!(*w, "counter" | "regions")).collect()
    }
    /// Mean gaps between faults a swarm draws from, milliseconds.
    const SWARM_GAPS_MS: &[u64] = &[250, 500, 1_000, 2_000, 4_000];
    /// One seed in this many gets a determinism re-check in a swarm.
    const DETERMINISM_RECHECK_ONE_IN: u64 = 20;

    #[derive(Parser)]
    #[command(name = "cargo sim --", about = "Deterministic simulation of a keel cluster", version)]
    struct Args {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run one seed and print its JSON summary.
        Run {
            /// The seed; the whole run follows from it.
            #[arg(long)]
            seed: u64,
            #[command(flatten)]
            opts: Opts,
            /// Run the seed twice and fail unless both traces hash the same.
            #[arg(long)]
            check_determinism: bool,
        },
        /// Run a range of seeds (e.g. `--seeds 1..200`); each seed draws its own workload,
        /// fault families, fault rate, cluster shape and BUGGIFY from its seed, within what
        /// the flags given allow. Lists failing seeds with their reproduction commands.
        Swarm {
            /// Half-open seed range A..B.
            #[arg(long, value_parser = parse_range)]
            seeds: (u64, u64),
            #[command(flatten)]
            opts: Opts,
            /// Parallel runs (each on its own thread; a run is single-threaded).
            #[arg(long, default_value_t = 2)]
            jobs: usize,
            /// Do not draw: run every seed with exactly the flags given (`run`'s defaults).
            #[arg(long)]
            fixed: bool,
        },
        /// Replay a regression corpus (default ci/seeds.toml), checking determinism of each.
        Replay {
            /// The corpus file.
            #[arg(default_value = "ci/seeds.toml")]
            corpus: std::path::PathBuf,
        },
        /// List the fault families `--nemesis` takes (a swarm draws from all of them).
        Families,
        /// Run every planted bug over its seed budget; fail if one is not caught.
        Negative {
            /// Only this bug.
            #[arg(long)]
            bug: Option<String>,
        },
    }

    #[derive(clap::Args, Clone, Default)]
    struct Opts {
        /// Workload to run (default counter for `run`; a swarm draws one per seed).
        #[arg(long)]
        workload: Option<String>,
        /// Comma-separated fault families, or "none" (default kill,partition,loss for `run`;
        /// a swarm draws a subset per seed). `cargo sim -- families` lists them.
        #[arg(long)]
        nemesis: Option<String>,
        /// Simulated seconds of the safety phase (faults on).
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Storage nodes (3 or 5) for workloads that take a shape; a swarm draws it.
        #[arg(long)]
        stores: Option<usize>,
        /// Switch BUGGIFY sites on (each is then enabled in ~25% of runs).
        #[arg(long)]
        buggify: bool,
        /// Mean simulated milliseconds between fault injections; a swarm draws it.
        #[arg(long)]
        fault_gap: Option<u64>,
        /// Plant a deliberate bug (negative test), e.g. ack-before-commit, skip-read-index.
        #[arg(long)]
        planted_bug: Option<String>,
        /// Write the recorded history (keel JSONL) here (`run` only).
        #[arg(long)]
        history: Option<std::path::PathBuf>,
        /// Write a self-contained HTML page of the run here: faults per node, leader
        /// changes, throughput and latency, the verdict and its counterexample (`run` only).
        #[arg(long)]
        report: Option<std::path::PathBuf>,
        /// Print every trace event (faults, elections, splits, operators, RPC outcomes) to
        /// stderr as it happens, stamped with simulated seconds (`run` only).
        #[arg(long)]
        trace: bool,
        /// Regions to pre-split into (`--workload regions`, the region-scaling benchmark).
        #[arg(long, default_value_t = 100)]
        regions: usize,
    }

    fn parse_range(s: &str) -> Result<(u64, u64), String> {
        let (a, b) = s.split_once("..").ok_or("expected A..B")?;
        let a: u64 = a.parse().map_err(|e| format!("{a}: {e}"))?;
        let b: u64 = b.parse().map_err(|e| format!("{b}: {e}"))?;
        if a >= b {
            return Err(format!("empty range {a}..{b}"));
        }
        Ok((a, b))
    }

    fn split_list(list: &str) -> Vec<String> {
        match list {
            "" | "none" => vec![],
            list => list.split(',').map(|s| s.trim().to_string()).collect(),
        }
    }

    fn config(seed: u64, opts: &Opts) -> Result<RunConfig, String> {
        let workload = opts.workload.clone().unwrap_or_else(|| "counter".into());
        if !WORKLOADS.contains(&workload.as_str()) {
            return Err(format!("unknown workload {workload:?}; known: {}", WORKLOADS.join(", ")));
        }
        let nemesis = split_list(opts.nemesis.as_deref().unwrap_or("kill,partition,loss"));
        keel_nemesis::validate(&nemesis).map_err(|bad| {
            let known: Vec<&str> = keel_nemesis::FAMILIES.iter().map(|(f, _)| *f).collect();
            format!("unknown nemesis {bad:?}; known: {}", known.join(", "))
        })?;
        let planted = match &opts.planted_bug {
            None => None,
            Some(name) => Some(PlantedBug::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
                format!("unknown planted bug {name:?}; known: {}", known.join(", "))
            })?),
        };
        let stores = opts.stores.unwrap_or(STORES_DEFAULT);
        if !(1..=7).contains(&stores) {
            return Err(format!("--stores {stores}: 1 to 7"));
        }
        if stores != STORES_DEFAULT && !SHAPED_WORKLOADS.contains(&workload.as_str()) {
            return Err(format!(
                "workload {workload} has a fixed shape; --stores works with {}",
                SHAPED_WORKLOADS.join(", ")
            ));
        }
        let mut cfg = RunConfig::new(seed, &workload, &[], opts.duration);
        cfg.nemesis = nemesis;
        cfg.planted = planted;
        cfg.history_out = opts.history.clone();
        cfg.report_out = opts.report.clone();
        cfg.print_trace = opts.trace;
        cfg.regions = opts.regions;
        cfg.stores = stores;
        cfg.buggify = opts.buggify;
        if let Some(gap) = opts.fault_gap {
            cfg.fault_gap_ms = gap.max(1);
        }
        Ok(cfg)
    }

    /// A seed's swarm configuration: drawn from the seed (and the flags that pin choices).
    fn draw(seed: u64, opts: &Opts) -> Opts {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7377_6172_6d21_u64.rotate_left(17));
        let mut drawn = opts.clone();
        let workloads = swarm_workloads();
        let workload = opts
            .workload
            .clone()
            .unwrap_or_else(|| workloads.choose(&mut rng).copied().unwrap_or("counter").to_string());
        let pool: Vec<String> = match &opts.nemesis {
            Some(list) => split_list(list),
            // Every family there is.
            None => keel_nemesis::FAMILIES.iter().map(|(f, _)| f.to_string()).collect(),
        };
        // Swarm testing: a random subset of the families (each kept with probability 1/2,
        // never none unless the pool is empty), so some runs hammer one fault hard.
        let mut subset: Vec<String> = pool.iter().filter(|_| rng.gen_bool(0.5)).cloned().collect();
        // Disk replacement and membership churn never share a run (see keel_nemesis::run):
        // keep one of the two.
        if subset.iter().any(|f| f == "corrupt") && subset.iter().any(|f| f == "membership") {
            let drop = if rng.gen_bool(0.5) { "corrupt" } else { "membership" };
            subset.retain(|f| f != drop);
        }
        if subset.is_empty() {
            if let Some(one) = pool.choose(&mut rng) {
                subset.push(one.clone());
            }
        }
        drawn.nemesis = Some(if subset.is_empty() { "none".into() } else { subset.join(",") });
        drawn.fault_gap = Some(opts.fault_gap.unwrap_or_else(|| *SWARM_GAPS_MS.choose(&mut rng).expect("gaps")));
        drawn.stores = Some(match opts.stores {
            Some(n) => n,
            None if SHAPED_WORKLOADS.contains(&workload.as_str()) && rng.gen_bool(0.3) => 5,
            None => STORES_DEFAULT,
        });
        drawn.buggify = opts.buggify || rng.gen_bool(0.5);
        drawn.workload = Some(workload);
        drawn
    }

    fn repro(cfg: &RunConfig) -> String {
        let planted = cfg.planted.map(|b| format!(" --planted-bug {}", b.name())).unwrap_or_default();
        format!(
            "cargo sim -- run --seed {} --workload {} --nemesis {} --duration {} --stores {} --fault-gap {}{}{planted}",
            cfg.seed,
            cfg.workload,
            if cfg.nemesis.is_empty() { "none".to_string() } else { cfg.nemesis.join(",") },
            cfg.duration_s,
            cfg.stores,
            cfg.fault_gap_ms,
            if cfg.buggify { " --buggify" } else { "" },
        )
    }

    fn print_summary(summary: &RunSummary) {
        println!("{}", serde_json::to_string(summary).expect("summary serialises"));
    }

    /// Runs `cfg` twice; `Err` describes a difference.
    fn run_twice(cfg: &RunConfig) -> (RunSummary, Result<(), String>) {
        let first = run(cfg);
        let second = run(cfg);
        if first.fingerprint() == second.fingerprint() {
            (first, Ok(()))
        } else {
            let why = format!(
                "nondeterministic: trace {} ({} events, {:?}) vs {} ({} events, {:?})",
                first.trace_hash,
                first.trace_events,
                first.faults,
                second.trace_hash,
                second.trace_events,
                second.faults
            );
            (first, Err(why))
        }
    }

    fn recheck(seed: u64) -> bool {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).is_multiple_of(DETERMINISM_RECHECK_ONE_IN)
    }

    pub fn main() -> i32 {
        let args = match Args::try_parse() {
            Ok(args) => args,
            Err(err) => {
                let _ = err.print();
                return if err.use_stderr() { 2 } else { 0 };
            }
        };
        match args.command {
            Command::Run { seed, opts, check_determinism } => run_one(seed, &opts, check_determinism),
            Command::Swarm { seeds, opts, jobs, fixed } => swarm(seeds, &opts, jobs, fixed),
            Command::Replay { corpus } => replay(&corpus),
            Command::Negative { bug } => negative_tests(bug.as_deref()),
            Command::Families => {
                for (name, what) in keel_nemesis::FAMILIES {
                    println!("{name:<15} {what}");
                }
                0
            }
        }
    }

    fn run_one(seed: u64, opts: &Opts, check_determinism: bool) -> i32 {
        let cfg = match config(seed, opts) {
            Ok(cfg) => cfg,
            Err(err) => {
                eprintln!("error: {err}");
                return 2;
            }
        };
        eprintln!("seed {seed}: {}", repro(&cfg));
        let first = if check_determinism {
            let (first, same) = run_twice(&cfg);
            if let Err(why) = same {
                eprintln!("NONDETERMINISM: seed {seed} ran twice with different traces");
                let mut summary = first;
                summary.verdict = why;
                print_summary(&summary);
                eprintln!("FAILED: reproduce with: {} --check-determinism", repro(&cfg));
                return 1;
            }
            eprintln!("determinism: ok ({} events, trace {})", first.trace_events, first.trace_hash);
            first
        } else {
            run(&cfg)
        };
        print_summary(&first);
        if first.ok() {
            0
        } else {
            eprintln!("FAILED: reproduce with: {}", repro(&cfg));
            1
        }
    }

    fn describe(cfg: &RunConfig) -> String {
        format!(
            "{} stores={} nemesis={} gap={}ms{}",
            cfg.workload,
            keel_sim::scenario::stores(cfg),
            if cfg.nemesis.is_empty() { "none".into() } else { cfg.nemesis.join(",") },
            cfg.fault_gap_ms,
            if cfg.buggify { " buggify" } else { "" }
        )
    }

    fn swarm((from, to): (u64, u64), opts: &Opts, jobs: usize, fixed: bool) -> i32 {
        let cfg_of = |seed: u64| if fixed { config(seed, opts) } else { config(seed, &draw(seed, opts)) };
        if let Err(err) = cfg_of(from) {
            eprintln!("error: {err}");
            return 2;
        }
        let next = Arc::new(AtomicU64::new(from));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicU64::new(0));
        let sim_total = Arc::new(Mutex::new(0.0f64));
        let rechecked = Arc::new(AtomicU64::new(0));
        let total = to - from;
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1) {
                let (next, failures, done, sim_total, rechecked) =
                    (next.clone(), failures.clone(), done.clone(), sim_total.clone(), rechecked.clone());
                let cfg_of = &cfg_of;
                scope.spawn(move || loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= to {
                        break;
                    }
                    let cfg = cfg_of(seed).expect("every drawn configuration is valid");
                    let (summary, verdict) = if recheck(seed) {
                        rechecked.fetch_add(1, Ordering::Relaxed);
                        let (summary, same) = run_twice(&cfg);
                        let verdict = match same {
                            Ok(()) => summary.verdict.clone(),
                            Err(why) => why,
                        };
                        (summary, verdict)
                    } else {
                        let summary = run(&cfg);
                        let verdict = summary.verdict.clone();
                        (summary, verdict)
                    };
                    let mut summary = summary;
                    summary.verdict = verdict;
                    print_summary(&summary);
                    *sim_total.lock().unwrap() += summary.sim_seconds;
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let mut failed = failures.lock().unwrap();
                    if !summary.ok() {
                        failed.push((seed, repro(&cfg), summary.verdict.clone()));
                    }
                    let elapsed = started.elapsed().as_secs_f64();
                    let eta = elapsed / n as f64 * (total - n) as f64;
                    eprintln!(
                        "[{n}/{total} {:.0}s eta {eta:.0}s, {} failed] seed {seed} {}: {} ({:.2}s wall)",
                        elapsed,
                        failed.len(),
                        describe(&cfg),
                        if summary.ok() { "ok" } else { "FAILED" },
                        summary.wall_seconds,
                    );
                });
            }
        });
        let wall = started.elapsed().as_secs_f64();
        let sim = *sim_total.lock().unwrap();
        let mut failures = failures.lock().unwrap().clone();
        failures.sort();
        eprintln!(
            "swarm: {total} seeds in {wall:.1}s wall ({:.0} seeds/min, {:.0} simulated s per wall s over {} jobs), {} re-run for determinism",
            total as f64 / wall * 60.0,
            sim / wall,
            jobs.max(1),
            rechecked.load(Ordering::Relaxed),
        );
        if failures.is_empty() {
            eprintln!("swarm: all {total} seeds ok");
            0
        } else {
            eprintln!("swarm: {} of {total} seeds FAILED:", failures.len());
            for (_, cmd, verdict) in &failures {
                eprintln!("  {verdict}\n    reproduce: {cmd}");
            }
            1
        }
    }

    fn replay(path: &std::path::Path) -> i32 {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return 2;
            }
        };
        let seeds = match keel_sim::corpus::parse(&text) {
            Ok(seeds) => seeds,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return 2;
            }
        };
        let mut failed = 0;
        for entry in &seeds {
            let cfg = match entry.config() {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {}: seed {}: {e}", path.display(), entry.seed);
                    return 2;
                }
            };
            if !WORKLOADS.contains(&cfg.workload.as_str()) {
                eprintln!("error: {}: seed {}: unknown workload {}", path.display(), entry.seed, cfg.workload);
                return 2;
            }
            let (mut summary, same) = run_twice(&cfg);
            // An entry with a planted bug documents a catch: it passes when the run fails.
            let expect_failure = cfg.planted.is_some();
            let pass = same.is_ok() && summary.ok() != expect_failure;
            if let Err(why) = same {
                summary.verdict = why;
            }
            print_summary(&summary);
            if !pass {
                failed += 1;
                eprintln!(
                    "corpus seed {} ({}) FAILED: {}\n    reproduce: {}",
                    entry.seed,
                    entry.note,
                    summary.verdict,
                    repro(&cfg)
                );
            }
        }
        eprintln!("replayed {} corpus seeds from {}, {failed} failed", seeds.len(), path.display());
        i32::from(failed > 0)
    }

    fn negative_tests(only: Option<&str>) -> i32 {
        let mut missed = 0;
        let started = Instant::now();
        for case in negative::CASES.iter().filter(|c| only.is_none_or(|b| b == c.bug.name())) {
            let range = format!("seeds {}..{}", case.first_seed, case.first_seed + case.budget);
            let t = Instant::now();
            match negative::run_case(case, WORKLOADS) {
                CaseResult::Caught { seed, runs, summary } => {
                    let cmd = repro(&negative::config(case, seed));
                    eprintln!(
                        "negative {}: caught at seed {seed} ({runs} of {} runs, {:.1}s): {}\n    reproduce: {cmd}",
                        case.bug.name(),
                        case.budget,
                        t.elapsed().as_secs_f64(),
                        summary.verdict.chars().take(160).collect::<String>(),
                    );
                }
                CaseResult::Missed => {
                    missed += 1;
                    eprintln!(
                        "negative {}: NOT CAUGHT in {range} ({} {}): the checks are blind to it",
                        case.bug.name(),
                        case.workload,
                        case.nemesis.join(",")
                    );
                }
                CaseResult::Skipped(why) => eprintln!("negative {}: skipped: {why}", case.bug.name()),
            }
        }
        eprintln!("negative: {missed} planted bugs missed ({:.1}s)", started.elapsed().as_secs_f64());
        i32::from(missed > 0)
    }
}
