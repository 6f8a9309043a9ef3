//! Scenarios: a cluster shape, a workload and its checks, run under the chosen nemeses.

mod bank;
mod consistency;
mod counter;
mod gc_advancer;
mod list_append;
mod regions;
pub mod register;
mod repair;
mod scan;

use crate::cluster::Cluster;
use crate::runner::{RunConfig, ScenarioOutcome};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Workloads `cargo sim -- run --workload W` accepts.
pub const WORKLOADS: &[&str] = &["counter", "register", "scan", "repair", "bank", "list-append", "regions"];

/// Fault families the scenarios understand.
pub const NEMESES: &[&str] = &["kill", "partition", "loss", "pause", "skew"];

/// Runs the scenario `cfg.workload` names. Call inside a madsim runtime.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    match cfg.workload.as_str() {
        "counter" => counter::run(cfg).await,
        "register" => register::run(cfg).await,
        "scan" => scan::run(cfg).await,
        "bank" => bank::run(cfg).await,
        "list-append" => list_append::run(cfg).await,
        "repair" => repair::run(cfg).await,
        "regions" => regions::run(cfg).await,
        other => ScenarioOutcome { violation: Some(format!("unknown workload {other}")), ..Default::default() },
    }
}

/// The storage nodes the scenario `cfg.workload` runs: `cfg.stores` for the workloads that
/// take a shape, the scenario's own count for the rest (none for the counter self-test).
pub fn stores(cfg: &RunConfig) -> usize {
    match cfg.workload.as_str() {
        "counter" => 0,
        "scan" => scan::STORES,
        "repair" => repair::STORES,
        "regions" => regions::STORES,
        _ => cfg.stores,
    }
}

/// The safety phase of a cluster scenario: the run's nemeses against the stores and PD for
/// `cfg.duration_s` simulated seconds, then everything healed. Returns when it healed.
pub(crate) async fn faults_then_heal(cluster: &mut Cluster, stores: &[String], cfg: &RunConfig) -> Instant {
    let mut rng = ChaCha8Rng::seed_from_u64(madsim::rand::random());
    let mut targets = stores.to_vec();
    targets.extend(cluster.roles().pd.iter().cloned());
    let until = Instant::now() + Duration::from_secs(cfg.duration_s);
    crate::faults::run(cluster, &targets, &cfg.nemesis, until, &mut rng).await;
    cluster.heal_all();
    Instant::now()
}

/// The liveness check after healing: waits until every process `0..processes` has succeeded
/// after `healed_at` (`last_success(p)` says when it last did), or names the ones that did not
/// within `deadline`.
pub(crate) async fn await_progress(
    processes: u64,
    healed_at: Instant,
    deadline: Duration,
    last_success: impl Fn(u64) -> Option<Instant>,
) -> Option<String> {
    loop {
        let stuck: Vec<u64> = (0..processes).filter(|p| last_success(*p).is_none_or(|t| t <= healed_at)).collect();
        if stuck.is_empty() {
            return None;
        }
        if healed_at.elapsed() > deadline {
            return Some(format!("liveness: processes {stuck:?} made no progress within {deadline:?} of healing"));
        }
        sleep(Duration::from_millis(200)).await;
    }
}

/// Connects a raw client to PD at `pd_addr` (comma-separated endpoints), retrying until PD
/// answers: a workload process may start inside a partition that keeps it from every PD
/// member for longer than one connect's deadline.
pub(crate) async fn connect_raw(pd_addr: &str) -> keel_client::RawClient {
    loop {
        match keel_client::RawClient::connect(crate::cluster::pd_endpoints(pd_addr)).await {
            Ok(client) => return client,
            Err(_) => sleep(Duration::from_millis(200)).await,
        }
    }
}

/// PD's region count at the end of a run (0 when PD does not answer), asked from the
/// scenario's first client node.
pub(crate) async fn count_regions(cluster: &Cluster, pd_addr: &str) -> u64 {
    let Some(node) = cluster.roles().clients.first().cloned() else { return 0 };
    let pd = keel_client::PdClient::new(crate::cluster::pd_endpoints(pd_addr));
    cluster
        .spawn_on(&node, async move { pd.scan_regions(b"", b"", 0).await.map_or(0, |r| r.len() as u64) })
        .await
        .unwrap_or(0)
}
