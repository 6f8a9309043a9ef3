//! The scan scenario: processes add thousands of padded keys (so regions split again and
//! again under the simulator's small split thresholds) and scan the whole key space across
//! regions, under the run's nemeses. Checks: every scan holds every add acknowledged before
//! it began and nothing never added; after healing, progress in bounded time, a final full
//! scan holding every acknowledged add, and replicas of every region converge.

use crate::cluster::Cluster;
use crate::runner::{RunConfig, ScenarioOutcome};
use crate::scenario::consistency::check_replicas;
use crate::scenario::register::CONVERGENCE_DEADLINE;
use crate::scenario::register::{start_cluster, Knobs};
use crate::scenario::{await_progress, faults_then_heal};
use keel_client::{PdClient, RawClient};
use keel_workloads::set::{check_scan, final_scan, run_process, set_key, SharedSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PROCESSES: u64 = 5;
/// Storage nodes (every one holds a replica of every region).
pub(crate) const STORES: usize = 3;
const LIVENESS_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the scenario.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let mut cluster = Cluster::new();
    let (pd_addr, stores) = start_cluster(&mut cluster, STORES, STORES, Knobs::CHECKED);
    // Split, transfer and membership faults aim at keys spread over the processes' ranges.
    cluster.set_workload_keys(
        (0..PROCESSES).flat_map(|p| (0..10).map(move |n| set_key(p, n * 100).into_bytes())).collect(),
    );
    let (state, stop, tasks) = spawn_set_processes(&mut cluster, &pd_addr, PROCESSES);
    let healed_at = faults_then_heal(&mut cluster, &stores, cfg).await;
    let mut violation =
        await_progress(PROCESSES, healed_at, LIVENESS_DEADLINE, |p| state.lock().unwrap().progress.get(&p).copied())
            .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    if violation.is_none() {
        violation = check_replicas(&cluster, &pd_addr, STORES, CONVERGENCE_DEADLINE).await;
    }

    // A final quiet scan and the region count, from a fresh client.
    cluster.add_client("checker");
    let (final_state, pd) = (state.clone(), pd_addr.clone());
    let (final_violation, regions) = cluster
        .spawn_on("checker", async move {
            let client = RawClient::connect(crate::cluster::pd_endpoints(&pd)).await.expect("connect");
            let pd = PdClient::new(crate::cluster::pd_endpoints(&pd));
            let v = match final_scan(&client, &pd, LIVENESS_DEADLINE).await {
                Ok(seen) => {
                    let s = final_state.lock().unwrap();
                    check_scan(&s, &seen, &s.acked)
                }
                Err(liveness) => Some(liveness),
            };
            let regions = pd.scan_regions(b"", b"", 0).await.map(|r| r.len() as u64).unwrap_or(0);
            (v, regions)
        })
        .await
        .expect("checker task");
    let s = state.lock().unwrap();
    violation = violation.or_else(|| s.violation.clone()).or(final_violation);
    keel_types::trace_event!("scan.final", "{} {} {} {regions}", s.ops, s.scans, s.acked.len());
    ScenarioOutcome { ops: s.ops, regions, violation, ..Default::default() }
}

/// Starts `processes` set-workload client processes (nodes `client-0`…), each with its own
/// raw client, adding to one shared set until the returned flag is raised.
pub(crate) fn spawn_set_processes(
    cluster: &mut Cluster,
    pd_addr: &str,
    processes: u64,
) -> (SharedSet, Arc<AtomicBool>, Vec<madsim::task::JoinHandle<()>>) {
    let state = SharedSet::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..processes {
        let name = format!("client-{p}");
        cluster.add_client(&name);
        let (state, stop, pd_addr) = (state.clone(), stop.clone(), pd_addr.to_string());
        let seed: u64 = madsim::rand::random();
        tasks.push(cluster.spawn_on(&name, async move {
            let client = crate::scenario::connect_raw(&pd_addr).await;
            run_process(client, state, p, seed, stop).await;
        }));
    }
    (state, stop, tasks)
}
