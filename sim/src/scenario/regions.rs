//! The region-scaling benchmark (`--workload regions --regions N`): three stores, the key
//! space pre-split into N regions, then 30 simulated seconds idle and 30 under the register
//! load. Reports, as stats, the process CPU time each phase cost (read from
//! /proc/self/stat: the simulator's clock is simulated, the CPU is not) and the peak
//! resident memory, so the note can say how simulation cost grows with the region count.
//! Not part of the swarm (it checks nothing but that the cluster kept serving).

use crate::cluster::Cluster;
use crate::runner::{add_stat, RunConfig, ScenarioOutcome};
use crate::scenario::register::{spawn_processes, start_cluster};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::sleep;

const STORES: usize = 3;
const PHASE: Duration = Duration::from_secs(30);
const PROCESSES: u64 = 5;

/// Runs the benchmark.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let mut cluster = Cluster::new();
    let (pd_addr, _) = start_cluster(&mut cluster, STORES, STORES);
    cluster.add_client("loader");
    let target = cfg.regions.max(1);
    let cpu = cpu_ms();
    let pd = pd_addr.clone();
    let failed = cluster
        .spawn_on("loader", async move {
            let mut failed = 0u64;
            for i in 1..target {
                if crate::faults::split_at(pd.clone(), format!("r/{i:07}").into_bytes()).await.is_err() {
                    failed += 1;
                }
            }
            failed
        })
        .await
        .unwrap_or(u64::MAX);
    add_stat("split_failures", failed);
    add_stat("cpu_ms_split", cpu_ms() - cpu);
    let cpu = cpu_ms();
    sleep(PHASE).await;
    add_stat("cpu_ms_idle_30s", cpu_ms() - cpu);

    let cpu = cpu_ms();
    let (history, _progress, stop, tasks) = spawn_processes(&mut cluster, &pd_addr, PROCESSES);
    sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    add_stat("cpu_ms_load_30s", cpu_ms() - cpu);
    add_stat("peak_rss_mb", peak_rss_mb());
    let (ok, fail, info) = history.outcomes();
    let regions = crate::scenario::count_regions(&cluster, &pd_addr).await;
    let violation = (ok == 0).then(|| "no operation succeeded under load".to_string());
    ScenarioOutcome { ops: ok + fail + info, regions, violation, history: None }
}

/// This process's user + system CPU time so far, milliseconds (0 if /proc is unreadable).
fn cpu_ms() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0 };
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    fields.iter().sum::<u64>() * 1000 / 100
}

/// Peak resident memory of this process, MiB (0 if /proc is unreadable).
fn peak_rss_mb() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}
