//! `keel playground`: PD (alone or replicated) and N storage nodes in one process on loopback,
//! for trying keel.

use crate::process::{shutdown_signal, start_pd, start_server, PdArgs, ServerArgs};
use clap::Args;
use std::path::PathBuf;

/// First storage node port; node i listens on `STORE_PORT_BASE + i`.
const STORE_PORT_BASE: u16 = 20160;
/// First storage node status port; node i serves HTTP on `STATUS_PORT_BASE + i`.
const STATUS_PORT_BASE: u16 = 20180;
/// The first PD member's status port; member i serves HTTP on `PD_STATUS_PORT_BASE + 10 * i`.
const PD_STATUS_PORT_BASE: u16 = 2381;
/// Ports between one PD member and the next (member i listens on `--pd-addr`'s port + 10 * i).
const PD_PORT_STEP: u16 = 10;
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
    /// PD address (of the first member; member i listens 10 × i ports above it).
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub pd_addr: String,
    /// Number of PD members: 1 runs PD alone, 3 or 5 replicate it (PD keeps serving while a
    /// minority of its members is down).
    #[arg(long = "pd", default_value_t = 1)]
    pub pd_members: usize,
}

/// Runs the playground until Ctrl-C.
pub async fn run(args: PlaygroundArgs) -> Result<(), String> {
    if args.nodes == 0 || args.nodes > PLAYGROUND_NODES_MAX {
        return Err(format!("--nodes must be 1..={PLAYGROUND_NODES_MAX}, got {}", args.nodes));
    }
    if ![1, 3, 5].contains(&args.pd_members) {
        return Err(format!("--pd must be 1, 3 or 5 (PD members), got {}", args.pd_members));
    }
    let (host, port) = args
        .pd_addr
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("--pd-addr must be host:port, got {}", args.pd_addr))?;
    let step = |i: usize| PD_PORT_STEP * i as u16;
    if port.checked_add(step(args.pd_members - 1)).is_none() {
        return Err(format!("--pd-addr port {port} leaves no room for {} PD members", args.pd_members));
    }
    let members: Vec<String> = (0..args.pd_members).map(|i| format!("{host}:{}", port + step(i))).collect();
    let mut tasks = Vec::new();
    for (i, addr) in members.iter().enumerate() {
        let pd = PdArgs {
            addr: addr.clone(),
            advertise_addr: None,
            data_dir: if args.pd_members == 1 {
                args.data_dir.join("pd")
            } else {
                args.data_dir.join(format!("pd-{}", i + 1))
            },
            max_replicas: args.nodes.min(3),
            merge_regions: false,
            status_addr: format!("127.0.0.1:{}", PD_STATUS_PORT_BASE + step(i)),
            members: if args.pd_members == 1 { Vec::new() } else { members.clone() },
        };
        tasks.push(tokio::spawn(start_pd(pd)));
    }
    let mut endpoints = Vec::new();
    for i in 0..args.nodes {
        let addr = format!("127.0.0.1:{}", STORE_PORT_BASE + i as u16);
        endpoints.push(addr.clone());
        let server = ServerArgs {
            pd: members.clone(),
            addr,
            advertise_addr: None,
            data_dir: args.data_dir.join(format!("store-{}", i + 1)),
            labels: vec![format!("host=h{}", i + 1)],
            status_addr: format!("127.0.0.1:{}", STATUS_PORT_BASE + i as u16),
            hibernate_regions: false,
        };
        tasks.push(tokio::spawn(start_server(server, false)));
    }
    let pd = members.join(",");
    println!(
        "keel playground: pd {pd} | stores {} | status http 127.0.0.1:{}.. and 127.0.0.1:{}-{} | data {}",
        endpoints.join(" "),
        PD_STATUS_PORT_BASE,
        STATUS_PORT_BASE,
        STATUS_PORT_BASE + args.nodes as u16 - 1,
        args.data_dir.display()
    );
    println!("try: keel ctl --pd {pd} put hello world && keel ctl --pd {pd} get hello");
    tokio::select! {
        (first, _, _) = futures::future::select_all(tasks) => Err(match first {
            Ok(Ok(())) => "a playground process exited".to_string(),
            Ok(Err(e)) => format!("a playground process stopped: {e}"),
            Err(e) => format!("a playground process panicked: {e}"),
        }),
        _ = shutdown_signal() => { println!("keel playground: stopped"); Ok(()) }
    }
}
