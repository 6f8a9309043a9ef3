//! The repair scenario: five storage nodes (regions keep three replicas), clients adding
//! thousands of keys so regions split and PD balances them; then one storage node dies for
//! good. Checks: within bounded simulated time PD's replica checker has every region back
//! to three healthy voters on live stores (learner added, caught up by snapshot, promoted,
//! the dead peer removed); after load stops, replica and leader counts per live store converge
//! within a small bound, and then for a quiet stretch no operator runs or starts (PD's
//! operator status) and no region, epoch or leader changes; every acknowledged add survives.

use crate::cluster::{pd_endpoints, Cluster};
use crate::runner::{add_stat, RunConfig, ScenarioOutcome};
use crate::scenario::register::{start_cluster, Knobs};
use crate::scenario::scan::spawn_set_processes;
use keel_client::{PdClient, RawClient};
use keel_types::proto::pd::{OperatorStatus, RegionInfo};
use keel_types::{PeerRole, StoreId};
use keel_workloads::set::{check_scan, final_scan};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Storage nodes: five, so three replicas survive a dead store with room to move.
pub(crate) const STORES: usize = 5;
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
/// How long PD may take to answer one of the observer's questions (it is up and reachable
/// once the safety phase healed everything); past it, the run is a liveness violation
/// instead of a wait that only the global time limit ended.
const PD_ANSWER_DEADLINE: Duration = Duration::from_secs(60);
/// How long the cluster must stay quiet at the end: no operator running or started, no
/// region, epoch or leader changed.
const QUIET_STRETCH: Duration = Duration::from_secs(20);

/// Runs the scenario.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let mut cluster = Cluster::new();
    let (pd_addr, _) = start_cluster(&mut cluster, STORES, 3, Knobs::CHECKED);
    cluster.add_client("observer");
    let pd = PdClient::new(pd_endpoints(&pd_addr));
    let (state, stop, tasks) = spawn_set_processes(&mut cluster, &pd_addr, PROCESSES);
    // Load (and the run's nemeses, against PD only: store faults would blur the repair).
    let mut rng = ChaCha8Rng::seed_from_u64(madsim::rand::random());
    let until = Instant::now() + Duration::from_secs(cfg.duration_s);
    let families: Vec<String> = cfg.nemesis.iter().filter(|f| f.as_str() != "kill").cloned().collect();
    let pds = cluster.roles().pd.clone();
    crate::faults::run(&mut cluster, &pds, &families, until, &mut rng).await;
    cluster.heal_all();

    let repaired = kill_and_repair(&mut cluster, &pd, &mut rng).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }

    // Balance converges and then nothing moves.
    let mut violation = match repaired {
        Ok(victim_id) => check_converged(&cluster, &pd, victim_id).await.err(),
        Err(violation) => Some(violation),
    };
    let final_regions = observe(&cluster, &pd).await.unwrap_or_else(|e| {
        violation.get_or_insert(e);
        Vec::new()
    });

    // Every acknowledged add is still there.
    let (final_state, pd_addr2, pd2) = (state.clone(), pd_addr.clone(), pd.clone());
    let final_violation = cluster
        .spawn_on("observer", async move {
            let client = RawClient::connect(pd_endpoints(&pd_addr2)).await.expect("connect");
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

/// Kills the store holding the most replicas for good and waits until PD's replica checker
/// has every region whole again on the live stores. Returns the dead store, or the
/// liveness violation.
async fn kill_and_repair(cluster: &mut Cluster, pd: &PdClient, rng: &mut ChaCha8Rng) -> Result<StoreId, String> {
    let victim_id = busiest_store(&observe(cluster, pd).await?);
    let victim = store_name(cluster, pd, victim_id).await?;
    cluster.kill(&victim, rng);
    keel_types::trace_event!("repair.kill", "{victim} (store {victim_id})");
    let killed_at = Instant::now();
    loop {
        let regions = observe(cluster, pd).await?;
        if regions.iter().all(|r| healthy(r, victim_id)) {
            return Ok(victim_id);
        }
        if killed_at.elapsed() > REPAIR_DEADLINE {
            let bad: Vec<String> = regions.iter().filter(|r| !healthy(r, victim_id)).map(describe).collect();
            return Err(format!(
                "repair: {} regions not whole {REPAIR_DEADLINE:?} after store {victim_id} died: {}",
                bad.len(),
                bad.join("; ")
            ));
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// Asks PD `what` from the observer node, retrying failures, for at most
/// [`PD_ANSWER_DEADLINE`] of simulated time; past it, a liveness violation naming the
/// question and the last failure.
async fn ask_pd<T, E, F, Fut>(cluster: &Cluster, pd: &PdClient, what: &'static str, ask: F) -> Result<T, String>
where
    T: Send + 'static,
    E: std::fmt::Display,
    F: Fn(PdClient) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, E>> + Send,
{
    let pd = pd.clone();
    cluster
        .spawn_on("observer", async move {
            let deadline = Instant::now() + PD_ANSWER_DEADLINE;
            loop {
                let last = match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), ask(pd.clone())).await {
                    Ok(Ok(answer)) => return Ok(answer),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer".to_string(),
                };
                if Instant::now() + Duration::from_millis(200) >= deadline {
                    return Err(format!(
                        "liveness: PD did not tell the repair scenario's observer {what} within {PD_ANSWER_DEADLINE:?} (last: {last})"
                    ));
                }
                sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .expect("observer task")
}

/// PD's view of every region.
async fn observe(cluster: &Cluster, pd: &PdClient) -> Result<Vec<RegionInfo>, String> {
    ask_pd(cluster, pd, "its regions", |pd| async move { pd.scan_regions(b"", b"", 0).await }).await
}

/// The name of the simulated node that runs store `store_id`.
async fn store_name(cluster: &Cluster, pd: &PdClient, store_id: StoreId) -> Result<String, String> {
    let store = ask_pd(cluster, pd, "the store to kill", move |pd| async move { pd.get_store(store_id).await }).await?;
    let address =
        store.ok_or_else(|| format!("repair: PD does not know store {store_id}, which holds replicas"))?.address;
    Ok(cluster
        .names()
        .into_iter()
        .find(|n| address.starts_with(&cluster.env(n).ip.to_string()))
        .expect("a node with that address"))
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
/// Returns the liveness violation if not.
async fn check_converged(cluster: &Cluster, pd: &PdClient, dead: StoreId) -> Result<(), String> {
    let stores = ask_pd(cluster, pd, "its stores", |pd| async move { pd.get_all_stores().await }).await?;
    let live: Vec<StoreId> = stores.iter().filter(|s| s.id != dead).map(|s| s.id).collect();
    let start = Instant::now();
    let mut last;
    loop {
        let before = observe(cluster, pd).await?;
        let ops_before = operators(cluster, pd).await?;
        let (replicas, leaders) = per_store(&before, &live);
        if spread(&replicas) <= BALANCE_SPREAD_MAX && spread(&leaders) <= LEADER_SPREAD_MAX && ops_before.in_flight == 0
        {
            sleep(QUIET_STRETCH).await;
            let after = observe(cluster, pd).await?;
            let ops_after = operators(cluster, pd).await?;
            if shape(&before) == shape(&after) && ops_after == ops_before {
                add_stat("final_replica_spread", spread(&replicas) as u64);
                add_stat("final_leader_spread", spread(&leaders) as u64);
                return Ok(());
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
            return Err(format!(
                "balance: did not settle within {REPAIR_DEADLINE:?} (replica spread at most {BALANCE_SPREAD_MAX}, leader spread at most {LEADER_SPREAD_MAX}, then {QUIET_STRETCH:?} without operators): {last}"
            ));
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// PD's operator status.
async fn operators(cluster: &Cluster, pd: &PdClient) -> Result<OperatorStatus, String> {
    ask_pd(cluster, pd, "its operator status", |pd| async move { pd.get_operator_status().await }).await
}

#[cfg(all(test, madsim))]
mod tests {
    use super::*;

    /// PD never answers (nothing listens at its address): the observer's question ends as a
    /// liveness violation once [`PD_ANSWER_DEADLINE`] has passed, not as an endless wait.
    #[test]
    fn a_pd_that_never_answers_is_a_liveness_violation() {
        let run = || {
            madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default()).block_on(async {
                let mut cluster = Cluster::new();
                cluster.add_client("observer");
                let pd = PdClient::new(vec!["10.0.0.250:2379".to_string()]);
                let start = Instant::now();
                let err = observe(&cluster, &pd).await.expect_err("nobody answered");
                let waited = start.elapsed();
                assert!(err.starts_with("liveness: ") && err.contains("its regions"), "{err}");
                assert!(
                    waited >= PD_ANSWER_DEADLINE - Duration::from_millis(200)
                        && waited <= PD_ANSWER_DEADLINE + Duration::from_secs(1),
                    "gave up after {waited:?}"
                );
            })
        };
        std::thread::spawn(run).join().unwrap();
    }
}
