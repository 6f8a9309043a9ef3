//! `keel pd` and `keel server`: one long-running process each, stopped by Ctrl-C/SIGTERM
//! (a server first hands its leaders to other stores).

use crate::status::{Status, Target};
use clap::Args;
use keel_pd::{Pd, PdConfig};
use keel_server::NodeConfig;
use keel_storage::FjallEngine;
use keel_types::Clock;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a SIGTERM'd server waits for its leaders to move to other stores.
const SHUTDOWN_TRANSFER_MAX: Duration = Duration::from_secs(10);

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
    /// Address of the status HTTP server (/metrics, /status, /ready, /regions).
    #[arg(long, default_value = "127.0.0.1:2381")]
    pub status_addr: String,
    /// Merge small adjacent regions back together (checked in the simulator under every
    /// fault family; off by default until it has run in production).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub merge_regions: bool,
    /// Run as one member of a replicated PD: every member's advertised address,
    /// comma-separated, the same list in the same order on every member, this PD's own
    /// among them (3 or 5 members keep PD serving while a minority is down). Without it PD
    /// runs alone.
    #[arg(long, value_delimiter = ',')]
    pub members: Vec<String>,
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
    /// Address of the status HTTP server (/metrics, /status, /ready, /regions).
    #[arg(long, default_value = "127.0.0.1:20180")]
    pub status_addr: String,
    /// Let idle regions stop ticking raft until work, a message or a lost store wakes them.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub hibernate_regions: bool,
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

/// Starts a PD (and its status server) and serves until its disk fails.
pub async fn start_pd(args: PdArgs) -> Result<(), String> {
    let engine = open_engine(&args.data_dir)?;
    let listener =
        tokio::net::TcpListener::bind(&args.addr).await.map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let status = Status::start(&args.status_addr, "pd").await?;
    let mut config = PdConfig::new(args.advertise_addr.clone().unwrap_or_else(|| args.addr.clone()));
    config.max_replicas = args.max_replicas;
    config.schedule.merge_checker = args.merge_regions;
    config.members = args.members.clone();
    if config.is_replicated() {
        let (member, replica) =
            keel_pd::start_member(config, engine, Clock::new()).map_err(|e| format!("pd cannot start: {e}"))?;
        status.attach(Target::PdMember(member.clone()));
        eprintln!(
            "keel pd listening on {} as a member of {} (status {}, data in {})",
            args.addr,
            args.members.join(","),
            args.status_addr,
            args.data_dir.display()
        );
        return keel_pd::serve_member(member, replica, listener).await.map_err(|e| format!("pd stopped: {e}"));
    }
    let pd = Pd::open(config, engine, Clock::new()).map_err(|e| format!("pd cannot start: {e}"))?;
    tracing::info!(cluster_id = pd.cluster_id(), addr = %args.addr, "pd: serving");
    let pd = Arc::new(Mutex::new(pd));
    status.attach(Target::Pd(pd.clone()));
    eprintln!("keel pd listening on {} (status {}, data in {})", args.addr, args.status_addr, args.data_dir.display());
    keel_pd::serve_pd(pd, listener).await.map_err(|e| format!("pd stopped: {e}"))
}

/// Starts a storage node (and its status server) and serves until its disk fails or, with
/// `graceful`, until Ctrl-C/SIGTERM (then hands its leaders away before it returns).
pub async fn start_server(args: ServerArgs, graceful: bool) -> Result<(), String> {
    if args.pd.is_empty() {
        return Err("no PD endpoints: give --pd or pd-endpoints in --config".into());
    }
    let engine = open_engine(&args.data_dir)?;
    let status = Status::start(&args.status_addr, "store").await?;
    let mut config = NodeConfig::new(args.addr.clone(), args.pd.clone());
    config.advertise_addr = args.advertise_addr.clone().unwrap_or_else(|| args.addr.clone());
    config.labels = parse_labels(&args.labels)?;
    config.hibernate_regions = args.hibernate_regions;
    let mut node =
        keel_server::start_node(config, engine, Clock::new()).await.map_err(|e| format!("server cannot start: {e}"))?;
    status.attach(Target::Store { store: node.store().clone(), data_dir: args.data_dir.clone() });
    eprintln!(
        "keel server listening on {} (status {}, pd {}, data in {})",
        args.addr,
        args.status_addr,
        args.pd.join(","),
        args.data_dir.display()
    );
    if !graceful {
        return node.wait().await.map_err(|e| format!("server stopped: {e}"));
    }
    tokio::select! {
        r = node.wait() => r.map_err(|e| format!("server stopped: {e}")),
        _ = shutdown_signal() => {
            eprintln!("keel server: shutting down (moving leaders to other stores)");
            let left = node.shutdown(SHUTDOWN_TRANSFER_MAX).await;
            if left > 0 {
                eprintln!("keel server: still led {left} region(s) after {SHUTDOWN_TRANSFER_MAX:?}; they re-elect");
            }
            eprintln!("keel server: stopped");
            Ok(())
        }
    }
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
    start_server(args, true).await
}
