//! The bank scenario: PD, three storage nodes and [`PROCESSES`] client processes transferring
//! money between [`ACCOUNTS`] accounts in transactions (2PC, async commit and 1PC mixed) and
//! reading all accounts in snapshot transactions, under the run's nemeses. After healing every process
//! must make progress in bounded time; the history is checked by jepsen-checker's bank
//! checker (every snapshot read sums to the total, no negative balance). Transaction
//! counters (committed, conflicts, lock resolutions, ...) go to the run summary's `stats`.
//! A GC leader ([`gc_advancer`]) advances PD's GC safe point during the run, so the nodes'
//! GC workers collect old versions under the faults.

use crate::cluster::Cluster;
use crate::runner::{add_stat, CheckModel, RunConfig, ScenarioOutcome};
use crate::scenario::register::{start_cluster, Knobs};
use crate::scenario::{await_progress, faults_then_heal, gc_advancer};
use keel_client::{PdClient, TransactionClient, TransactionStats};
use keel_workloads::bank::{account_key, run_process, setup, BankConfig};
use keel_workloads::register::Progress;
use keel_workloads::History;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::sleep;

/// Client processes of the bank scenario: enough that transfers overlap on the same
/// accounts (conflicts, lock resolution) and a run commits thousands of them.
const PROCESSES: u64 = 64;
/// Accounts: four per process. About a quarter of the transfers still conflict and the
/// snapshot read of every account meets many live locks, while the throughput is not capped
/// by a few hot keys: with 64 accounts, 32, 64 or 96 processes all committed ~1,500
/// transfers in 30 fault-free seconds (seed 1), against 3,500 with 256.
const ACCOUNTS: u64 = 256;
/// After healing, every process must complete an operation within this much simulated time.
const LIVENESS_DEADLINE: Duration = Duration::from_secs(60);

/// What a transactional process gets besides its connected client: the shared history and
/// progress map, its id, a seed and the stop flag.
pub(crate) struct ProcessArgs {
    pub history: History,
    pub progress: Progress,
    pub process: u64,
    pub seed: u64,
    pub stop: Arc<AtomicBool>,
}

/// Runs a transactional workload: `setup` once on a quiet cluster, then `process` on
/// `processes` client nodes (each with a client connected from its node) under the
/// nemeses, then the liveness check. Returns the
/// outcome with the history for `model` and reports the summed transaction counters.
pub(crate) async fn run_txn_scenario<S, SF, P, PF>(
    cfg: &RunConfig,
    processes: u64,
    keys: Vec<Vec<u8>>,
    model: CheckModel,
    setup: S,
    process: P,
) -> ScenarioOutcome
where
    S: FnOnce(TransactionClient) -> SF + Send + 'static,
    SF: Future<Output = Result<(), String>> + Send + 'static,
    P: Fn(TransactionClient, ProcessArgs) -> PF + Clone + Send + Sync + 'static,
    PF: Future<Output = TransactionStats> + Send + 'static,
{
    let mut cluster = Cluster::new();
    let (pd_addr, stores) = start_cluster(&mut cluster, cfg.stores, cfg.stores, Knobs::CHECKED);
    cluster.set_workload_keys(keys);
    cluster.add_client("setup");
    let pd = pd_addr.clone();
    let set_up = cluster
        .spawn_on("setup", async move { setup(connect(pd).await).await })
        .await
        .unwrap_or_else(|e| Err(format!("setup task: {e:?}")));
    if let Err(e) = set_up {
        return ScenarioOutcome {
            violation: Some(format!("setup failed on a healthy cluster: {e}")),
            ..Default::default()
        };
    }

    let history = History::new();
    let progress = Progress::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = gc_advancer::Clients::default();
    cluster.add_client("gc");
    // Detached: it stops with the processes.
    drop(cluster.spawn_on("gc", gc_advancer::run(pd_addr.clone(), clients.clone(), stop.clone())));
    let mut tasks = Vec::new();
    for p in 0..processes {
        let name = format!("client-{p}");
        cluster.add_client(&name);
        let seed: u64 = madsim::rand::random();
        let args =
            ProcessArgs { history: history.clone(), progress: progress.clone(), process: p, seed, stop: stop.clone() };
        let (pd, process, clients) = (pd_addr.clone(), process.clone(), clients.clone());
        tasks.push(cluster.spawn_on(&name, async move {
            let client = connect(pd).await;
            clients.lock().expect("clients lock").push(client.clone());
            process(client, args).await
        }));
    }

    let healed_at = faults_then_heal(&mut cluster, &stores, cfg).await;
    let violation =
        await_progress(processes, healed_at, LIVENESS_DEADLINE, |p| progress.lock().unwrap().get(&p).copied()).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = TransactionStats::default();
    for task in tasks {
        if let Ok(s) = task.await {
            total.committed += s.committed;
            total.conflicts += s.conflicts;
            total.unknown += s.unknown;
            total.failed += s.failed;
            total.locks_resolved += s.locks_resolved;
            total.lock_waits += s.lock_waits;
            total.one_pc += s.one_pc;
            total.async_commits += s.async_commits;
            total.fallbacks += s.fallbacks;
            total.commit_ts_retries += s.commit_ts_retries;
        }
    }
    for (name, value) in [
        ("txn_committed", total.committed),
        ("txn_conflicts", total.conflicts),
        ("txn_unknown", total.unknown),
        ("txn_failed", total.failed),
        ("locks_resolved", total.locks_resolved),
        ("lock_waits", total.lock_waits),
        ("one_pc", total.one_pc),
        ("async_commits", total.async_commits),
        ("fallbacks", total.fallbacks),
        ("commit_ts_retries", total.commit_ts_retries),
    ] {
        add_stat(name, value);
    }
    let pd = pd_addr.clone();
    let regions = cluster
        .spawn_on("setup", async move {
            PdClient::new(crate::cluster::pd_endpoints(&pd))
                .scan_regions(b"", b"", 0)
                .await
                .map_or(0, |r| r.len() as u64)
        })
        .await
        .unwrap_or(0);
    let (ok, fail, info) = history.outcomes();
    keel_types::trace_event!("txn.final", "{ok} {fail} {info} {}", total.committed);
    ScenarioOutcome { ops: ok + fail + info, regions, violation, history: Some((history.to_jsonl(), model)) }
}

/// Connects a transactional client to PD at `pd_addr` (retrying until PD answers).
pub(crate) async fn connect(pd_addr: String) -> TransactionClient {
    loop {
        match TransactionClient::connect(crate::cluster::pd_endpoints(&pd_addr)).await {
            Ok(client) => return client,
            Err(_) => sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Runs the scenario.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let bank = BankConfig { accounts: ACCOUNTS, ..BankConfig::default() };
    let keys = (0..bank.accounts).map(account_key).collect();
    let setup_cfg = bank.clone();
    run_txn_scenario(
        cfg,
        PROCESSES,
        keys,
        CheckModel::Bank { total: bank.total() },
        move |client| async move { setup(&client, &setup_cfg, 50).await.map_err(|e| e.to_string()) },
        move |client, a: ProcessArgs| {
            run_process(client, a.history, a.progress, a.process, bank.clone(), a.seed, a.stop)
        },
    )
    .await
}
