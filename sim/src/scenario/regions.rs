//! The region-scaling benchmark (`--workload regions --regions N`): three stores, the key
//! space pre-split into N regions, then 30 simulated seconds idle and 30 under the register
//! load. Reports, as stats, the process CPU time each phase cost (read from
//! /proc/self/stat: the simulator's clock is simulated, the CPU is not) and the peak
//! resident memory, so the note can say how simulation cost grows with the region count.
//! Not part of the swarm (it checks nothing but that the cluster kept serving).

use crate::cluster::Cluster;
use crate::runner::{add_stat, RunConfig, ScenarioOutcome};
use crate::scenario::register::{spawn_processes, start_cluster, Knobs};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::sleep;

/// Storage nodes.
pub(crate) const STORES: usize = 3;
const PHASE: Duration = Duration::from_secs(30);
const PROCESSES: u64 = 5;
/// Rounds of pre-splitting: each retries the splits the one before could not land.
const SPLIT_PASSES: usize = 3;

/// Runs the benchmark.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let mut cluster = Cluster::new();
    // Pre-split regions stay as split: the benchmark measures that many (no merges).
    let (pd_addr, _) = start_cluster(&mut cluster, STORES, STORES, Knobs { hibernate: true, merge: false });
    cluster.add_client("loader");
    let target = cfg.regions.max(1);
    let cpu = cpu_ms();
    let pd = pd_addr.clone();
    let failed = cluster
        .spawn_on("loader", async move {
            let mut keys: Vec<Vec<u8>> = bisection_order(1, target).map(|i| format!("r/{i:07}").into_bytes()).collect();
            for _ in 0..SPLIT_PASSES {
                let results = crate::faults::split_all(pd.clone(), keys.clone()).await;
                keys = keys.into_iter().zip(results).filter(|(_, r)| r.is_err()).map(|(k, _)| k).collect();
                if keys.is_empty() {
                    break;
                }
            }
            keys.len() as u64
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

/// `lo..hi` with each range's midpoint before either half, so the splits in flight at
/// once mostly fall in different regions (splitting one end first makes every split wait on
/// the one before it, in the same ever-shrinking region).
fn bisection_order(lo: usize, hi: usize) -> impl Iterator<Item = usize> {
    let mut ranges = std::collections::VecDeque::from([(lo, hi)]);
    std::iter::from_fn(move || {
        let (lo, hi) = ranges.pop_front()?;
        let mid = lo + (hi - lo) / 2;
        if lo < mid {
            ranges.push_back((lo, mid));
        }
        if mid + 1 < hi {
            ranges.push_back((mid + 1, hi));
        }
        Some(mid)
    })
    .take(hi.saturating_sub(lo))
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

#[cfg(test)]
mod tests {
    use super::bisection_order;

    #[test]
    fn bisection_order_visits_each_point_once_midpoints_first() {
        let order: Vec<usize> = bisection_order(1, 8).collect();
        assert_eq!(order[0], 4);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (1..8).collect::<Vec<_>>());
        assert_eq!(bisection_order(1, 1).count(), 0);
    }
}
