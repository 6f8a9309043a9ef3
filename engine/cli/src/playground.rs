//! `keel playground`: PD and N storage nodes in one process on loopback, for trying keel.

use crate::process::{shutdown_signal, start_pd, start_server, PdArgs, ServerArgs};
use clap::Args;
use std::path::PathBuf;

/// First storage node port; node i listens on `STORE_PORT_BASE + i`.
const STORE_PORT_BASE: u16 = 20160;
/// First storage node status port; node i serves HTTP on `STATUS_PORT_BASE + i`.
const STATUS_PORT_BASE: u16 = 20180;
/// PD's status address.
const PD_STATUS_ADDR: &str = "127.0.0.1:2381";
/// Most nodes a playground starts.
const PLAYGROUND_NODES_MAX: usize = 16;

/// Flags of `keel playground`.
#[derive(Args, Clone)]
pub struct PlaygroundArgs {
    /// Root directory for the cluster's data (pd/ and store-N/ inside).
    #[arg(long, default_value = "./keel-data")]
    pub data_dir: PathBuf,
    /// Number of storage nodes (regions are replicated 3 ways, or N ways if N < 3).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// PD address.
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub pd_addr: String,
    /// Number of PD members. PD is not replicated yet, so only 1 is accepted; the flag
    /// exists so that asking for more is a clear error rather than an unknown flag.
    #[arg(long = "pd", default_value_t = 1)]
    pub pd_members: usize,
}

/// Runs the playground until Ctrl-C.
pub async fn run(args: PlaygroundArgs) -> Result<(), String> {
    if args.nodes == 0 || args.nodes > PLAYGROUND_NODES_MAX {
        return Err(format!("--nodes must be 1..={PLAYGROUND_NODES_MAX}, got {}", args.nodes));
    }
    if args.pd_members != 1 {
        return Err(format!(
            "--pd {}: PD is not replicated yet, a playground runs exactly one PD member (--pd 1)",
            args.pd_members
        ));
    }
    let pd = PdArgs {
        addr: args.pd_addr.clone(),
        advertise_addr: None,
        data_dir: args.data_dir.join("pd"),
        max_replicas: args.nodes.min(3),
        merge_regions: false,
        status_addr: PD_STATUS_ADDR.to_string(),
    };
    let mut tasks = vec![tokio::spawn(start_pd(pd))];
    let mut endpoints = Vec::new();
    for i in 0..args.nodes {
        let addr = format!("127.0.0.1:{}", STORE_PORT_BASE + i as u16);
        endpoints.push(addr.clone());
        let server = ServerArgs {
            pd: vec![args.pd_addr.clone()],
            addr,
            advertise_addr: None,
            data_dir: args.data_dir.join(format!("store-{}", i + 1)),
            labels: vec![format!("host=h{}", i + 1)],
            status_addr: format!("127.0.0.1:{}", STATUS_PORT_BASE + i as u16),
            hibernate_regions: false,
        };
        tasks.push(tokio::spawn(start_server(server, false)));
    }
    println!(
        "keel playground: pd {} | stores {} | status http {} and 127.0.0.1:{}-{} | data {}",
        args.pd_addr,
        endpoints.join(" "),
        PD_STATUS_ADDR,
        STATUS_PORT_BASE,
        STATUS_PORT_BASE + args.nodes as u16 - 1,
        args.data_dir.display()
    );
    println!("try: keel ctl --pd {} put hello world && keel ctl --pd {} get hello", args.pd_addr, args.pd_addr);
    tokio::select! {
        (first, _, _) = futures::future::select_all(tasks) => Err(match first {
            Ok(Ok(())) => "a playground process exited".to_string(),
            Ok(Err(e)) => format!("a playground process stopped: {e}"),
            Err(e) => format!("a playground process panicked: {e}"),
        }),
        _ = shutdown_signal() => { println!("keel playground: stopped"); Ok(()) }
    }
}
