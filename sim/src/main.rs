//! `cargo sim`: run one seed, or a swarm of seeds, of a simulated keel cluster.
//!
//! Contract (DESIGN.md §6): every run ends with one JSON line; exit 0 when every run is ok,
//! 1 on a violation, 2 on a usage error.

#[cfg(not(madsim))]
fn main() {
    eprintln!("keel-sim must be built with --cfg madsim: run it as `cargo sim -- run --seed 1`");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    std::process::exit(cli::main());
}

#[cfg(madsim)]
mod cli {
    use clap::{Parser, Subcommand};
    use keel_sim::runner::{run, RunConfig, RunSummary};
    use keel_sim::scenario::{NEMESES, WORKLOADS};
    use keel_types::planted::PlantedBug;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

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
        /// Run a range of seeds (e.g. `--seeds 1..200`) and list the failing ones.
        Swarm {
            /// Half-open seed range A..B.
            #[arg(long, value_parser = parse_range)]
            seeds: (u64, u64),
            #[command(flatten)]
            opts: Opts,
            /// Parallel runs (each on its own thread; a run is single-threaded).
            #[arg(long, default_value_t = 2)]
            jobs: usize,
        },
    }

    #[derive(clap::Args, Clone)]
    struct Opts {
        /// Workload to run.
        #[arg(long, default_value = "counter")]
        workload: String,
        /// Comma-separated fault families (kill, partition, loss, pause, skew), or "none".
        #[arg(long, default_value = "kill,partition,loss")]
        nemesis: String,
        /// Simulated seconds of the safety phase (faults on).
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Plant a deliberate bug (negative test): ack-before-commit, skip-read-index.
        #[arg(long)]
        planted_bug: Option<String>,
        /// Write the recorded history (keel JSONL) here (`run` only).
        #[arg(long)]
        history: Option<std::path::PathBuf>,
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

    fn config(seed: u64, opts: &Opts) -> Result<RunConfig, String> {
        if !WORKLOADS.contains(&opts.workload.as_str()) {
            return Err(format!("unknown workload {:?}; known: {}", opts.workload, WORKLOADS.join(", ")));
        }
        let nemesis: Vec<String> = match opts.nemesis.as_str() {
            "" | "none" => vec![],
            list => list.split(',').map(|s| s.trim().to_string()).collect(),
        };
        if let Some(bad) = nemesis.iter().find(|n| !NEMESES.contains(&n.as_str())) {
            return Err(format!("unknown nemesis {bad:?}; known: {}", NEMESES.join(", ")));
        }
        let planted = match &opts.planted_bug {
            None => None,
            Some(name) => Some(PlantedBug::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
                format!("unknown planted bug {name:?}; known: {}", known.join(", "))
            })?),
        };
        Ok(RunConfig {
            seed,
            workload: opts.workload.clone(),
            nemesis,
            duration_s: opts.duration,
            planted,
            history_out: opts.history.clone(),
        })
    }

    fn repro(cfg: &RunConfig) -> String {
        let planted = cfg.planted.map(|b| format!(" --planted-bug {}", b.name())).unwrap_or_default();
        format!(
            "cargo sim -- run --seed {} --workload {} --nemesis {} --duration {}{planted}",
            cfg.seed,
            cfg.workload,
            if cfg.nemesis.is_empty() { "none".to_string() } else { cfg.nemesis.join(",") },
            cfg.duration_s
        )
    }

    fn print_summary(summary: &RunSummary) {
        println!("{}", serde_json::to_string(summary).expect("summary serialises"));
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
            Command::Run { seed, opts, check_determinism } => {
                let cfg = match config(seed, &opts) {
                    Ok(cfg) => cfg,
                    Err(err) => {
                        eprintln!("error: {err}");
                        return 2;
                    }
                };
                eprintln!("seed {seed}: {}", repro(&cfg));
                let first = run(&cfg);
                if check_determinism {
                    let second = run(&cfg);
                    if first.fingerprint() != second.fingerprint() {
                        eprintln!("NONDETERMINISM: seed {seed} ran twice with different traces");
                        print_summary(&first);
                        let mut second = second;
                        second.verdict = format!(
                            "nondeterministic: trace {} ({} events) vs {} ({} events)",
                            first.trace_hash, first.trace_events, second.trace_hash, second.trace_events
                        );
                        print_summary(&second);
                        return 1;
                    }
                    eprintln!("determinism: ok ({} events, trace {})", first.trace_events, first.trace_hash);
                }
                print_summary(&first);
                if first.ok() {
                    0
                } else {
                    eprintln!("FAILED: reproduce with: {}", repro(&cfg));
                    1
                }
            }
            Command::Swarm { seeds: (from, to), opts, jobs } => {
                if let Err(err) = config(from, &opts) {
                    eprintln!("error: {err}");
                    return 2;
                }
                let next = Arc::new(AtomicU64::new(from));
                let failures = Arc::new(Mutex::new(Vec::new()));
                let done = Arc::new(AtomicU64::new(0));
                let total = to - from;
                std::thread::scope(|scope| {
                    for _ in 0..jobs.max(1) {
                        let (next, failures, done, opts) = (next.clone(), failures.clone(), done.clone(), opts.clone());
                        scope.spawn(move || loop {
                            let seed = next.fetch_add(1, Ordering::Relaxed);
                            if seed >= to {
                                break;
                            }
                            let cfg = config(seed, &opts).expect("validated above");
                            let summary = run(&cfg);
                            print_summary(&summary);
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            eprintln!("[{n}/{total}] seed {seed}: {}", summary.verdict);
                            if !summary.ok() {
                                failures.lock().unwrap().push((seed, repro(&cfg), summary.verdict));
                            }
                        });
                    }
                });
                let mut failures = failures.lock().unwrap().clone();
                failures.sort();
                if failures.is_empty() {
                    eprintln!("swarm: {total} seeds, all ok");
                    0
                } else {
                    eprintln!("swarm: {} of {total} seeds FAILED:", failures.len());
                    for (_, cmd, verdict) in &failures {
                        eprintln!("  {verdict}\n    reproduce: {cmd}");
                    }
                    1
                }
            }
        }
    }
}
