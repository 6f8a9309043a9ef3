//! The register scenario: PD, three storage nodes and five client processes on their own
//! nodes; processes read, write and compare-and-swap a few raw keys while storage nodes and
//! PD are killed (torn disk tails), partitioned, paused and behind a lossy network. Then
//! everything heals and every process must make progress in bounded time, the replicas must
//! converge to identical data, and the history must be linearizable per key.

use crate::cluster::{pd_endpoints, Cluster};
use crate::runner::{CheckModel, RunConfig, ScenarioOutcome};
use crate::scenario::consistency::check_replicas;
use crate::scenario::{await_progress, faults_then_heal};
use keel_pd::PdConfig;
use keel_server::{run_node, NodeConfig};
use keel_workloads::register::{run_process, Progress, RegisterConfig};
use keel_workloads::History;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const PD_PORT: u16 = 2379;
const STORE_PORT: u16 = 20160;
const PROCESSES: u64 = 5;
/// After healing, every process must complete an operation within this much simulated time.
const LIVENESS_DEADLINE: Duration = Duration::from_secs(60);
/// After the workload stops, replicas must be consistent within this much time. PD waits
/// `max_store_down_time` (10 s in the simulator) before replacing a silent replica, and
/// repairs at most `store_limit` (2) replicas per store at a time, each a few heartbeats
/// long: membership churn followed by a split storm can leave ~40 regions short of a
/// replica on the same store (register seed 28 needed ~70 s).
pub(crate) const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(150);

/// The port a storage node serves on: a node whose disk was replaced joins as a new store,
/// on a new port (PD keeps the old store's address until the old store is removed).
pub(crate) fn store_port(disk: &keel_storage::SimEngine) -> u16 {
    STORE_PORT + disk.stats().replacements as u16
}

/// What a scenario's cluster runs beyond the `test_min` configurations.
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    /// Idle regions sleep (the server's hibernate-regions, off by default while register
    /// seed 27 under suspend fails with it).
    pub hibernate: bool,
    /// PD's merge checker merges small neighbours (on in `test_min`).
    pub merge: bool,
}

impl Knobs {
    /// What the checked scenarios run: merges on, hibernation off (as the server's default).
    pub const CHECKED: Knobs = Knobs { hibernate: false, merge: true };
}

/// PD's members in every keel scenario: PD is replicated, as in production, so the cluster
/// keeps its timestamps and routing while one member is down or cut off.
pub(crate) const PD_MEMBERS: usize = 3;

/// Starts PD's members (`pd-1..`) and `stores` storage nodes, regions replicated `replicas`
/// ways, set up as `knobs` says; returns PD's endpoints (comma-separated) and the store names.
pub fn start_cluster(cluster: &mut Cluster, stores: usize, replicas: usize, knobs: Knobs) -> (String, Vec<String>) {
    let Knobs { hibernate, merge } = knobs;
    // Members learn each other's addresses once all are added (their programs first run
    // when this function has returned and the runtime polls them).
    let members: Arc<OnceLock<Vec<String>>> = Arc::new(OnceLock::new());
    let mut pd_names = Vec::new();
    let mut pd_addrs = Vec::new();
    for i in 1..=PD_MEMBERS {
        let name = format!("pd-{i}");
        let members = members.clone();
        let pd = cluster.add_node(&name, move |env| {
            let members = members.clone();
            async move {
                let listener = tokio::net::TcpListener::bind(env.addr(PD_PORT)).await.expect("bind pd");
                let mut config = PdConfig::test_min(env.addr(PD_PORT));
                config.cluster_id = Some(1);
                config.schedule.merge_checker = merge;
                config.max_replicas = replicas;
                config.members = members.get().expect("pd members set at start").clone();
                if let Err(e) = keel_pd::run_pd(config, Arc::new(env.disk.clone()), env.clock.clone(), listener).await {
                    tracing::warn!(%e, "pd stopped");
                }
            }
        });
        pd_names.push(name);
        pd_addrs.push(pd.addr(PD_PORT));
    }
    members.set(pd_addrs.clone()).expect("members set once");
    let pd_addr = pd_addrs.join(",");
    let mut names = Vec::new();
    for i in 1..=stores {
        let name = format!("store-{i}");
        let pd_addr = pd_addr.clone();
        cluster.add_node(&name, move |env| {
            let pd_addr = pd_addr.clone();
            async move {
                let mut config = NodeConfig::new(env.addr(store_port(&env.disk)), pd_endpoints(&pd_addr));
                config.test_min = true;
                config.hibernate_regions = hibernate;
                config.store_heartbeat_interval = Duration::from_secs(1);
                if let Err(e) = run_node(config, Arc::new(env.disk.clone()), env.clock.clone()).await {
                    tracing::warn!(%e, "store stopped");
                }
            }
        });
        names.push(name);
    }
    cluster.set_servers(&names, &pd_names, Some(&pd_addr));
    cluster.set_replicas(replicas);
    (pd_addr, names)
}

/// Starts `processes` register clients on nodes `client-0..`, each on its own seed; returns
/// their shared history and progress, the flag that stops them, and their tasks.
pub(crate) fn spawn_processes(
    cluster: &mut Cluster,
    pd_addr: &str,
    processes: u64,
) -> (History, Progress, Arc<AtomicBool>, Vec<madsim::task::JoinHandle<()>>) {
    let history = History::new();
    let progress = Progress::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..processes {
        let name = format!("client-{p}");
        cluster.add_client(&name);
        let (history, progress, stop, pd_addr) = (history.clone(), progress.clone(), stop.clone(), pd_addr.to_string());
        let seed: u64 = madsim::rand::random();
        tasks.push(cluster.spawn_on(&name, async move {
            let client = crate::scenario::connect_raw(&pd_addr).await;
            run_process(client, history, progress, p, RegisterConfig::default(), seed, stop).await;
        }));
    }
    (history, progress, stop, tasks)
}

/// Runs the scenario.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let mut cluster = Cluster::new();
    let (pd_addr, stores) = start_cluster(&mut cluster, cfg.stores, cfg.stores, Knobs::CHECKED);
    cluster.set_workload_keys((0..RegisterConfig::default().keys).map(|k| format!("reg-{k}").into_bytes()).collect());
    let (history, progress, stop, tasks) = spawn_processes(&mut cluster, &pd_addr, PROCESSES);

    let healed_at = faults_then_heal(&mut cluster, &stores, cfg).await;
    let mut violation =
        await_progress(PROCESSES, healed_at, LIVENESS_DEADLINE, |p| progress.lock().unwrap().get(&p).copied()).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    if violation.is_none() {
        violation = check_replicas(&cluster, &pd_addr, cfg.stores, CONVERGENCE_DEADLINE).await;
    }
    let (ok, fail, info) = history.outcomes();
    keel_types::trace_event!("register.final", "{ok} {fail} {info}");
    let regions = crate::scenario::count_regions(&cluster, &pd_addr).await;
    ScenarioOutcome {
        ops: ok + fail + info,
        regions,
        violation,
        history: Some((history.to_jsonl(), CheckModel::CasRegister)),
    }
}
