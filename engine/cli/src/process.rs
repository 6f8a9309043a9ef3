//! `keel pd` and `keel server`: one long-running process each, stopped by Ctrl-C/SIGTERM.

use clap::Args;
use keel_pd::PdConfig;
use keel_server::NodeConfig;
use keel_storage::FjallEngine;
use keel_types::Clock;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags of `keel pd`.
#[derive(Args, Clone)]
pub struct PdArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub addr: String,
    /// Address clients and stores dial (default: --addr).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Directory for PD's data.
    #[arg(long, default_value = "./keel-data/pd")]
    pub data_dir: PathBuf,
    /// Replicas per region; the cluster bootstraps once this many stores have registered.
    #[arg(long, default_value_t = 3)]
    pub max_replicas: usize,
}

/// Flags of `keel server`.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// PD endpoints, comma-separated (required here or as `pd-endpoints` in --config).
    #[arg(long, value_delimiter = ',')]
    pub pd: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:20160")]
    pub addr: String,
    /// Address other stores and clients dial (default: --addr).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Directory for this store's data.
    #[arg(long, default_value = "./keel-data/store")]
    pub data_dir: PathBuf,
    /// Placement labels, e.g. zone=a,host=h1.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
}

fn open_engine(dir: &Path) -> Result<Arc<FjallEngine>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    FjallEngine::open(dir).map(Arc::new).map_err(|e| format!("cannot open data dir {}: {e}", dir.display()))
}

fn parse_labels(labels: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("bad label {l:?}: expected key=value")),
        })
        .collect::<Result<_, _>>()?;
    out.sort();
    Ok(out)
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Starts a PD and serves until its disk fails.
pub async fn start_pd(args: PdArgs) -> Result<(), String> {
    let engine = open_engine(&args.data_dir)?;
    let listener =
        tokio::net::TcpListener::bind(&args.addr).await.map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let mut config = PdConfig::new(args.advertise_addr.clone().unwrap_or_else(|| args.addr.clone()));
    config.max_replicas = args.max_replicas;
    eprintln!("keel pd listening on {} (data in {})", args.addr, args.data_dir.display());
    keel_pd::run_pd(config, engine, Clock::new(), listener).await.map_err(|e| format!("pd stopped: {e}"))
}

/// Starts a storage node and serves until its disk fails.
pub async fn start_server(args: ServerArgs) -> Result<(), String> {
    if args.pd.is_empty() {
        return Err("no PD endpoints: give --pd or pd-endpoints in --config".into());
    }
    let engine = open_engine(&args.data_dir)?;
    let mut config = NodeConfig::new(args.addr.clone(), args.pd.clone());
    config.advertise_addr = args.advertise_addr.clone().unwrap_or_else(|| args.addr.clone());
    config.labels = parse_labels(&args.labels)?;
    eprintln!("keel server listening on {} (pd {}, data in {})", args.addr, args.pd.join(","), args.data_dir.display());
    keel_server::run_node(config, engine, Clock::new()).await.map_err(|e| format!("server stopped: {e}"))
}

/// `keel pd`.
pub async fn run_pd(args: PdArgs) -> Result<(), String> {
    tokio::select! {
        r = start_pd(args) => r,
        _ = shutdown_signal() => { eprintln!("keel pd: shutting down"); Ok(()) }
    }
}

/// `keel server`.
pub async fn run_server(args: ServerArgs) -> Result<(), String> {
    tokio::select! {
        r = start_server(args) => r,
        _ = shutdown_signal() => { eprintln!("keel server: shutting down"); Ok(()) }
    }
}
