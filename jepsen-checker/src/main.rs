//! `jepsen-checker FILE --model M [...]`: checks one history file. Prints explanation
//! lines, then one JSON line `{"valid":…,"ops":…,"anomalies":[…],"elapsed_ms":…}`.
//! Exit status: 0 valid, 1 invalid, 3 unknown, 2 bad input or usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use jepsen_checker::elle::{Consistency, TxnModel};
use jepsen_checker::linear::{LinConfig, LinModel, LinVerdict, NilRead};
use jepsen_checker::report::{Anomaly, Validity, Verdict};
use jepsen_checker::{bank, edn, elle, html, linear, Format, History};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelArg {
    /// read / write register
    Register,
    /// read / write / cas register
    CasRegister,
    /// per-key string registers with get / put / append
    Kv,
    /// add / read set
    Set,
    /// Elle list-append transactions
    ListAppend,
    /// Elle rw-register transactions
    RwRegister,
    /// bank: snapshot reads must sum to the total
    Bank,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum NilReadArg {
    /// `nil` means the register is absent
    Absent,
    /// `nil` matches any value (Knossos)
    Any,
}

/// Checks a Jepsen-style history for linearizability or transactional anomalies.
#[derive(Parser, Debug)]
#[command(name = "jepsen-checker", version)]
struct Args {
    /// The history file (EDN, Jepsen log lines, or keel JSONL).
    file: PathBuf,
    /// The model to check against.
    #[arg(long, value_enum)]
    model: ModelArg,
    /// For list-append / rw-register: which consistency model's anomalies count.
    #[arg(long, default_value = "strict-serializable")]
    consistency_model: Consistency,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Input format (edn, log, jsonl); detected from the content when absent.
    #[arg(long)]
    format: Option<Format>,
    /// Give up with "unknown" after this many seconds.
    #[arg(long)]
    time_limit: Option<f64>,
    /// Initial register value, as EDN (default: absent).
    #[arg(long)]
    initial: Option<String>,
    /// What a nil read means.
    #[arg(long, value_enum, default_value = "absent")]
    nil_read: NilReadArg,
    /// Check a multi-key history as one whole map instead of key by key.
    #[arg(long)]
    no_partition: bool,
    /// Cap on memoised search configurations (memory budget).
    #[arg(long, default_value_t = linear::wgl::MAX_CONFIGS_DEFAULT)]
    max_configs: usize,
    /// Worker threads for independent keys (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Bank: the invariant total (default: the first read's sum).
    #[arg(long)]
    total: Option<i64>,
    /// Bank: balances must never be negative.
    #[arg(long)]
    no_negative: bool,
}

fn run(args: &Args, h: &History) -> Result<(Verdict, Option<String>), String> {
    let mut extra = serde_json::Map::new();
    let ops = h.len();
    match args.model {
        ModelArg::Register | ModelArg::CasRegister | ModelArg::Kv | ModelArg::Set => {
            let initial = match &args.initial {
                Some(s) => Some(edn::parse_one(s).map_err(|e| format!("--initial: {}", e.message))?),
                None => None,
            };
            let cfg = LinConfig {
                model: match args.model {
                    ModelArg::Register => LinModel::Register,
                    ModelArg::CasRegister => LinModel::CasRegister,
                    ModelArg::Kv => LinModel::Kv,
                    _ => LinModel::Set,
                },
                initial,
                nil_read: match args.nil_read {
                    NilReadArg::Absent => NilRead::Absent,
                    NilReadArg::Any => NilRead::Any,
                },
                partition: !args.no_partition,
                time_limit: args.time_limit.map(Duration::from_secs_f64),
                max_configs: args.max_configs,
                threads: args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                ..LinConfig::default()
            };
            let rep = linear::check(h, &cfg).map_err(|e| e.to_string())?;
            extra.insert("parts".into(), rep.parts.into());
            extra.insert("configs".into(), rep.configs.into());
            Ok(match rep.verdict {
                LinVerdict::Valid => (
                    Verdict {
                        validity: Validity::Valid,
                        ops,
                        anomalies: vec![],
                        lines: vec![format!(
                            "Linearizable: {} ops in {} part(s), {} configurations explored.",
                            rep.checked_ops, rep.parts, rep.configs
                        )],
                        extra,
                    },
                    None,
                ),
                LinVerdict::Unknown(why) => (
                    Verdict {
                        validity: Validity::Unknown,
                        ops,
                        anomalies: vec![],
                        lines: vec![format!("Unknown: {why}.")],
                        extra,
                    },
                    None,
                ),
                LinVerdict::Invalid(v) => {
                    let lines = linear::explain(h, &v);
                    let page = html::timeline(h, &v, &lines);
                    if let Some(k) = &v.key {
                        extra.insert("key".into(), k.clone().into());
                    }
                    let anomaly =
                        Anomaly { kind: "nonlinearizable".into(), txns: vec![v.stuck], explanation: lines.join(" ") };
                    (Verdict { validity: Validity::Invalid, ops, anomalies: vec![anomaly], lines, extra }, Some(page))
                }
            })
        }
        ModelArg::ListAppend | ModelArg::RwRegister => {
            let model = match args.model {
                ModelArg::ListAppend => TxnModel::ListAppend,
                _ => TxnModel::RwRegister,
            };
            let rep = elle::check(h, model, args.consistency_model).map_err(|e| e.to_string())?;
            let ruled: Vec<&str> = rep.ruled_out.iter().map(|c| c.name()).collect();
            extra.insert("ruled_out".into(), ruled.clone().into());
            extra.insert("consistency_model".into(), args.consistency_model.name().into());
            let mut lines = vec![format!("{} transactions checked.", rep.txns)];
            for a in &rep.anomalies {
                let counts = if elle::weakest_violated(&a.kind) <= args.consistency_model {
                    ""
                } else {
                    " (allowed by the chosen model)"
                };
                lines.push(format!("{}{counts}: {}", a.kind, a.explanation));
            }
            if ruled.is_empty() {
                lines.push("No anomalies: consistent with every model checked.".into());
            } else {
                lines.push(format!("Ruled out: {}.", ruled.join(", ")));
            }
            lines.push(format!(
                "{} under {}.",
                if rep.valid { "Valid" } else { "Invalid" },
                args.consistency_model.name()
            ));
            let page = html::anomalies("Transactional anomalies", &lines, &rep.anomalies);
            // Only the anomalies that count under the chosen model go in the JSON.
            let counted: Vec<Anomaly> = rep
                .anomalies
                .into_iter()
                .filter(|a| elle::weakest_violated(&a.kind) <= args.consistency_model)
                .collect();
            Ok((
                Verdict {
                    validity: if rep.valid { Validity::Valid } else { Validity::Invalid },
                    ops,
                    anomalies: counted,
                    lines,
                    extra,
                },
                Some(page),
            ))
        }
        ModelArg::Bank => {
            let cfg = bank::BankConfig { total: args.total, negative_forbidden: args.no_negative };
            let rep = bank::check(h, &cfg).map_err(|e| e.to_string())?;
            let mut lines = vec![format!(
                "{} reads checked against total {}.",
                rep.reads,
                rep.total.map_or("(none: no reads)".to_string(), |t| t.to_string())
            )];
            for a in &rep.anomalies {
                lines.push(format!("{}: {}", a.kind, a.explanation));
            }
            let page = html::anomalies("Bank check", &lines, &rep.anomalies);
            Ok((
                Verdict {
                    validity: if rep.anomalies.is_empty() { Validity::Valid } else { Validity::Invalid },
                    ops,
                    anomalies: rep.anomalies,
                    lines,
                    extra,
                },
                Some(page),
            ))
        }
    }
}

fn fail(start: Instant, msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    let j = serde_json::json!({
        "valid": "unknown",
        "ops": 0,
        "anomalies": [],
        "elapsed_ms": start.elapsed().as_millis() as u64,
        "error": msg,
    });
    println!("{j}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let start = Instant::now();
    let args = Args::parse();
    let src = match std::fs::read_to_string(&args.file) {
        Ok(s) => s,
        Err(e) => return fail(start, &format!("cannot read {}: {e}", args.file.display())),
    };
    let h = match jepsen_checker::parse(&src, args.format) {
        Ok(h) => h,
        Err(e) => return fail(start, &format!("{}: {e}", args.file.display())),
    };
    let (verdict, page) = match run(&args, &h) {
        Ok(v) => v,
        Err(e) => return fail(start, &format!("{}: {e}", args.file.display())),
    };
    if let Some(path) = &args.html {
        let page = page.unwrap_or_else(|| html::anomalies("No violation", &verdict.lines, &[]));
        if let Err(e) = std::fs::write(path, page) {
            return fail(start, &format!("cannot write {}: {e}", path.display()));
        }
    }
    for l in &verdict.lines {
        println!("{l}");
    }
    println!("{}", verdict.json_line(start.elapsed().as_millis()));
    // Freeing a large history takes a while and nothing needs it: skip it.
    std::mem::forget(h);
    ExitCode::from(verdict.validity.exit_code() as u8)
}
