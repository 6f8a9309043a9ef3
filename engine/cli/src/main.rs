//! `keel`: the production binary — a placement driver, a storage node, a local playground
//! cluster and a control tool, all on real tokio networking and the fjall engine.

mod bench;
mod config;
mod ctl;
mod ctl_admin;
mod playground;
mod process;
mod status;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;
use std::sync::Mutex;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "keel: a distributed transactional key-value store (TiKV-style regions on raft, simulation-tested)",
    long_about = "keel: a distributed transactional key-value store.\n\n\
        A cluster is one placement driver (`keel pd`: timestamps, ids, region routing) and storage\n\
        nodes (`keel server`) that replicate regions of the key space with raft. `keel playground`\n\
        starts a whole local cluster; `keel ctl` reads and writes it."
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log line format: text, or json (one JSON object per line, for log pipelines).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Append logs to this file instead of stderr.
    #[arg(long, global = true)]
    log_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a placement driver.
    Pd {
        #[command(flatten)]
        args: process::PdArgs,
        #[command(flatten)]
        file: config::ConfigFlags,
    },
    /// Run a storage node.
    Server {
        #[command(flatten)]
        args: process::ServerArgs,
        #[command(flatten)]
        file: config::ConfigFlags,
    },
    /// Run PD and N storage nodes on loopback (PD 127.0.0.1:2379, nodes from 127.0.0.1:20160).
    Playground(playground::PlaygroundArgs),
    /// Read and write a running cluster.
    Ctl(ctl::CtlArgs),
    /// Drive a load against keel (or etcd, for comparison) and report throughput and latency.
    Bench(bench::BenchArgs),
}

/// Applies `--config` of `keel pd` / `keel server` (flags given on the command line win).
/// Returns an exit code when the run ends here (`--config-check`).
fn apply_config(cli: &mut Cli, matches: &ArgMatches) -> Result<Option<ExitCode>, String> {
    let Some((_, sub)) = matches.subcommand() else { return Ok(None) };
    let log_level_from_cli =
        [matches, sub].iter().any(|m| m.value_source("log_level") == Some(ValueSource::CommandLine));
    let (path, check) = match &cli.command {
        Command::Pd { file, .. } | Command::Server { file, .. } => match &file.config {
            Some(path) => (path.clone(), file.config_check),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let log_level = match &mut cli.command {
        Command::Pd { args, .. } => {
            let loaded = config::load_pd(&path);
            if check {
                return Ok(Some(config_check_result(&path, loaded.map(drop))));
            }
            let file = loaded?;
            let level = file.log_level.clone();
            config::merge_pd(args, file, sub);
            level
        }
        Command::Server { args, .. } => {
            let loaded = config::load_server(&path);
            if check {
                return Ok(Some(config_check_result(&path, loaded.map(drop))));
            }
            let file = loaded?;
            let level = file.log_level.clone();
            config::merge_server(args, file, sub);
            level
        }
        _ => None,
    };
    if let Some(level) = log_level.filter(|_| !log_level_from_cli) {
        cli.log_level = level;
    }
    Ok(None)
}

fn config_check_result(path: &std::path::Path, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => {
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up `tracing` from `--log-level`, `--log-format` and `--log-file`.
fn init_logging(cli: &Cli) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level).unwrap_or_else(|_| {
        eprintln!("warning: bad --log-level {:?}; using info", cli.log_level);
        tracing_subscriber::EnvFilter::new("info")
    });
    let writer = match &cli.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open --log-file {}: {e}", path.display()))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(Mutex::new(file))
        }
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match cli.log_format {
        LogFormat::Text => builder.with_ansi(cli.log_file.is_none()).init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// mimalloc instead of glibc malloc: the hot paths allocate many small, short-lived buffers
/// (frames, keys, values, raft entries) on one thread and free them on another.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match apply_config(&mut cli, &matches) {
        Ok(None) => {}
        Ok(Some(code)) => return code,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = init_logging(&cli) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Pd { args, .. } => process::run_pd(args).await,
            Command::Server { args, .. } => process::run_server(args).await,
            Command::Playground(args) => playground::run(args).await,
            Command::Ctl(args) => ctl::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
