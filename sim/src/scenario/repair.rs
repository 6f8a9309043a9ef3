//! The repair scenario: five storage nodes (regions keep three replicas), clients adding
//! thousands of keys so regions split and PD balances them; then one storage node dies for
//! good. Checks: within bounded simulated time PD's replica checker has every region back
//! to three healthy voters on live stores (learner added, caught up by snapshot, promoted,
//! the dead peer removed); after load stops, replica and leader counts per live store converge
//! within a small bound, and then for a quiet stretch no operator runs or starts (PD's
//! operator status) and no region, epoch or leader changes; every acknowledged add survives.

use crate::cluster::Cluster;
use crate::runner::{add_stat, RunConfig, ScenarioOutcome};
use crate::scenario::register::start_cluster;
use keel_client::{PdClient, RawClient};
use keel_types::proto::pd::{OperatorStatus, RegionInfo};
use keel_types::{PeerRole, StoreId};
use keel_workloads::set::{check_scan, final_scan, run_process, SharedSet};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep, Instant};

const STORES: usize = 5;
const PROCESSES: u64 = 3;
/// After a store dies, every region must be whole again within this much simulated time
/// (PD waits `max_store_down_time`, 10 s in the simulator, before replacing).
const REPAIR_DEADLINE: Duration = Duration::from_secs(120);
/// After load stops, replica counts per live store must be this close...
const BALANCE_SPREAD_MAX: usize = 3;
/// ...and leader counts per live store this close.
const LEADER_SPREAD_MAX: usize = 3;
/// The final scan (every acknowledged add still there) must complete within this much
/// simulated time: the cluster is whole by then.
const FINAL_SCAN_DEADLINE: Duration = Duration::from_secs(60);
/// How long the cluster must stay quiet at the end: no operator running or started, no
/// region, epoch or leader changed.
const QUIET_STRETCH: Duration = Duration::from_secs(20);

/// Runs the scenario.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let mut cluster = Cluster::new();
    let (pd_addr, _) = start_cluster(&mut cluster, STORES, 3, false);
    cluster.add_client("observer");
    let pd = PdClient::new(vec![pd_addr.clone()]);
    let state = SharedSet::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..PROCESSES {
        let name = format!("client-{p}");
        cluster.add_client(&name);
        let (state, stop, pd_addr) = (state.clone(), stop.clone(), pd_addr.clone());
        let seed: u64 = madsim::rand::random();
        tasks.push(cluster.spawn_on(&name, async move {
            let client = RawClient::connect(vec![pd_addr]).await.expect("connect");
            run_process(client, state, p, seed, stop).await;
        }));
    }
    // Load (and the run's nemeses, against PD only: store faults would blur the repair).
    let mut rng = ChaCha8Rng::seed_from_u64(madsim::rand::random());
    let until = Instant::now() + Duration::from_secs(cfg.duration_s);
    let families: Vec<String> = cfg.nemesis.iter().filter(|f| f.as_str() != "kill").cloned().collect();
    crate::faults::run(&mut cluster, &["pd".to_string()], &families, until, &mut rng).await;
    cluster.heal_all();

    // One store dies for good: the one holding the most replicas.
    let regions = observe(&cluster, &pd).await;
    let victim_id = busiest_store(&regions);
    let victim = store_name(&cluster, &pd, victim_id).await;
    cluster.kill(&victim, &mut rng);
    keel_types::trace_event!("repair.kill", "{victim} (store {victim_id})");
    let killed_at = Instant::now();
    let mut violation = None;
    loop {
        let regions = observe(&cluster, &pd).await;
        if regions.iter().all(|r| healthy(r, victim_id)) {
            break;
        }
        if killed_at.elapsed() > REPAIR_DEADLINE {
            let bad: Vec<String> = regions.iter().filter(|r| !healthy(r, victim_id)).map(describe).collect();
            violation = Some(format!(
                "repair: {} regions not whole {REPAIR_DEADLINE:?} after store {victim_id} died: {}",
                bad.len(),
                bad.join("; ")
            ));
            break;
        }
        sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }

    // Balance converges and then nothing moves.
    if violation.is_none() {
        violation = check_converged(&cluster, &pd, victim_id).await;
    }
    let final_regions = observe(&cluster, &pd).await;

    // Every acknowledged add is still there.
    let (final_state, pd_addr2, pd2) = (state.clone(), pd_addr.clone(), pd.clone());
    let final_violation = cluster
        .spawn_on("observer", async move {
            let client = RawClient::connect(vec![pd_addr2]).await.expect("connect");
            match final_scan(&client, &pd2, FINAL_SCAN_DEADLINE).await {
                Ok(seen) => {
                    let s = final_state.lock().unwrap();
                    check_scan(&s, &seen, &s.acked)
                }
                Err(liveness) => Some(liveness),
            }
        })
        .await
        .expect("observer task");
    let s = state.lock().unwrap();
    let violation = violation.or_else(|| s.violation.clone()).or(final_violation);
    ScenarioOutcome { ops: s.ops, regions: final_regions.len() as u64, violation, ..Default::default() }
}

/// PD's view of every region (asked from the observer node).
async fn observe(cluster: &Cluster, pd: &PdClient) -> Vec<RegionInfo> {
    let pd = pd.clone();
    cluster
        .spawn_on("observer", async move {
            loop {
                if let Ok(regions) = pd.scan_regions(b"", b"", 0).await {
                    return regions;
                }
                sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .expect("observer task")
}

async fn store_name(cluster: &Cluster, pd: &PdClient, store_id: StoreId) -> String {
    let pd = pd.clone();
    let address = cluster
        .spawn_on("observer", async move { pd.get_store(store_id).await.ok().flatten().map(|s| s.address) })
        .await
        .expect("observer task")
        .expect("the store is registered");
    cluster
        .names()
        .into_iter()
        .find(|n| address.starts_with(&cluster.env(n).ip.to_string()))
        .expect("a node with that address")
}

fn busiest_store(regions: &[RegionInfo]) -> StoreId {
    let mut counts: BTreeMap<StoreId, usize> = BTreeMap::new();
    for r in regions {
        for p in &r.region.peers {
            *counts.entry(p.store_id).or_default() += 1;
        }
    }
    counts.into_iter().max_by_key(|(id, n)| (*n, std::cmp::Reverse(*id))).map(|(id, _)| id).expect("some region")
}

fn healthy(r: &RegionInfo, dead: StoreId) -> bool {
    r.region.peers.len() == 3
        && r.region.peers.iter().all(|p| p.role == PeerRole::Voter && p.store_id != dead)
        && r.leader.is_some()
}

fn describe(r: &RegionInfo) -> String {
    let peers: Vec<String> = r
        .region
        .peers
        .iter()
        .map(|p| format!("{}@{}{}", p.id, p.store_id, if p.role == PeerRole::Learner { "L" } else { "" }))
        .collect();
    format!("region {} [{}]", r.region.id, peers.join(","))
}

/// Replicas and leaders per live store (every live store listed, with zeros).
fn per_store(regions: &[RegionInfo], live: &[StoreId]) -> (BTreeMap<StoreId, usize>, BTreeMap<StoreId, usize>) {
    let mut replicas: BTreeMap<StoreId, usize> = live.iter().map(|s| (*s, 0)).collect();
    let mut leaders = replicas.clone();
    for r in regions {
        for p in &r.region.peers {
            replicas.entry(p.store_id).and_modify(|n| *n += 1);
        }
        if let Some(l) = r.leader {
            leaders.entry(l.store_id).and_modify(|n| *n += 1);
        }
    }
    (replicas, leaders)
}

fn spread(counts: &BTreeMap<StoreId, usize>) -> usize {
    counts.values().max().copied().unwrap_or(0) - counts.values().min().copied().unwrap_or(0)
}

/// Regions, their epochs and leaders: what any operator step (or election) changes.
fn shape(regions: &[RegionInfo]) -> Vec<(u64, keel_types::RegionEpoch, Option<u64>)> {
    regions.iter().map(|r| (r.region.id, r.region.epoch, r.leader.map(|l| l.id))).collect()
}

/// After load stops: region and leader counts per live store converge within a bound, and
/// then for [`QUIET_STRETCH`] no operator runs or starts and no region or leader changes.
async fn check_converged(cluster: &Cluster, pd: &PdClient, dead: StoreId) -> Option<String> {
    let live: Vec<StoreId> = {
        let pd = pd.clone();
        cluster
            .spawn_on("observer", async move {
                loop {
                    if let Ok(stores) = pd.get_all_stores().await {
                        return stores.iter().filter(|s| s.id != dead).map(|s| s.id).collect();
                    }
                    sleep(Duration::from_millis(200)).await;
                }
            })
            .await
            .expect("observer task")
    };
    let start = Instant::now();
    let mut last;
    loop {
        let before = observe(cluster, pd).await;
        let ops_before = operators(cluster, pd).await;
        let (replicas, leaders) = per_store(&before, &live);
        if spread(&replicas) <= BALANCE_SPREAD_MAX && spread(&leaders) <= LEADER_SPREAD_MAX && ops_before.in_flight == 0
        {
            sleep(QUIET_STRETCH).await;
            let after = observe(cluster, pd).await;
            let ops_after = operators(cluster, pd).await;
            if shape(&before) == shape(&after) && ops_after == ops_before {
                add_stat("final_replica_spread", spread(&replicas) as u64);
                add_stat("final_leader_spread", spread(&leaders) as u64);
                return None;
            }
            let old: BTreeMap<u64, String> = before.iter().map(|r| (r.region.id, describe(r))).collect();
            let changed: Vec<String> = after
                .iter()
                .filter(|r| old.get(&r.region.id) != Some(&describe(r)))
                .map(|r| format!("{} (was {})", describe(r), old.get(&r.region.id).map_or("absent", |s| s.as_str())))
                .collect();
            last = format!(
                "{} operators started, {} in flight; changed: {}",
                ops_after.created - ops_before.created,
                ops_after.in_flight,
                changed.join("; ")
            );
        } else {
            last = format!(
                "replicas per store {replicas:?}, leaders per store {leaders:?}, {} operators in flight",
                ops_before.in_flight
            );
        }
        if start.elapsed() > REPAIR_DEADLINE {
            return Some(format!(
                "balance: did not settle within {REPAIR_DEADLINE:?} (replica spread at most {BALANCE_SPREAD_MAX}, leader spread at most {LEADER_SPREAD_MAX}, then {QUIET_STRETCH:?} without operators): {last}"
            ));
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// PD's operator status (asked from the observer node).
async fn operators(cluster: &Cluster, pd: &PdClient) -> OperatorStatus {
    let pd = pd.clone();
    cluster
        .spawn_on("observer", async move {
            loop {
                if let Ok(status) = pd.get_operator_status().await {
                    return status;
                }
                sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .expect("observer task")
}
