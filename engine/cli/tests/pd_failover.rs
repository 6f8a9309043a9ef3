//! A replicated PD under SIGKILL: three PD members and three storage nodes as separate `keel`
//! processes on loopback run the bank workload while the PD leader is killed with SIGKILL and
//! restarted, cycle after cycle. Transactions keep completing while the leader is down (the
//! other two members elect a new one, which resumes the TSO above everything served), and
//! jepsen-checker finds every bank read summing to the total.

mod common;

use common::{http_get, Cluster};
use keel_client::{RawClientConfig, TransactionClient};
use keel_workloads::bank::BankConfig;
use keel_workloads::check::{check_history, CheckModel};
use keel_workloads::register::Progress;
use keel_workloads::History;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CYCLES: usize = 4;
/// How long the killed leader stays down: long enough for an election (1–2 s) and then some.
const DOWN_TIME: Duration = Duration::from_secs(4);
/// How long every member runs between kills.
const UP_TIME: Duration = Duration::from_secs(2);
const BANK_PROCESSES: u64 = 3;
/// Longest wait for a member to name a leader.
const LEADER_DEADLINE: Duration = Duration::from_secs(30);

/// The index of the PD member the first answering member names as leader.
fn leader(cluster: &Cluster) -> usize {
    let started = Instant::now();
    loop {
        for status in &cluster.pd_statuses {
            let Ok((200, body)) = http_get(status, "/status") else { continue };
            let page: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
            if let Some(leader) = page["pd_leader"].as_str() {
                if let Some(i) = cluster.pd_addrs.iter().position(|a| a == leader) {
                    return i;
                }
            }
        }
        assert!(started.elapsed() < LEADER_DEADLINE, "no PD member names a leader; logs in {:?}", cluster.dir);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bank_completes_transactions_while_the_pd_leader_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start_with_pd_members(dir.path(), 3, 3, &[]);
    cluster.wait_ready();
    eprintln!("pd_failover: logs in {}", dir.path().display());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let endpoints = cluster.pd_addrs.clone();
    let config = RawClientConfig { deadline: Duration::from_secs(5), ..RawClientConfig::default() };
    let history = History::new();
    let bank = BankConfig::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = rt.block_on(async {
        let setup = TransactionClient::connect_with_config(endpoints.clone(), config.clone()).await.expect("connect");
        keel_workloads::bank::setup(&setup, &bank, 50).await.expect("bank setup");
        let mut workers = Vec::new();
        for p in 0..BANK_PROCESSES {
            let client =
                TransactionClient::connect_with_config(endpoints.clone(), config.clone()).await.expect("connect");
            let (h, st, cfg) = (history.clone(), stop.clone(), bank.clone());
            workers.push(tokio::spawn(async move {
                keel_workloads::bank::run_process(client, h, Progress::default(), p, cfg, 7 + p, st).await;
            }));
        }
        workers
    });

    let mut completed_while_down = Vec::new();
    for cycle in 0..CYCLES {
        std::thread::sleep(UP_TIME);
        let victim = leader(&cluster);
        let before = history.outcomes().0;
        eprintln!("pd_failover: cycle {cycle}: kill -9 the PD leader, member {victim}");
        cluster.pds[victim].kill9();
        std::thread::sleep(DOWN_TIME);
        completed_while_down.push(history.outcomes().0 - before);
        cluster.pds[victim].restart();
    }
    std::thread::sleep(UP_TIME);
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in workers {
            w.await.expect("workload process panicked");
        }
    });

    let (ok, fail, info) = history.outcomes();
    eprintln!("pd_failover: bank ok/fail/info {ok}/{fail}/{info}; completed while the leader was down {completed_while_down:?}");
    let jsonl = history.to_jsonl();
    std::fs::write(dir.path().join("bank.jsonl"), &jsonl).expect("save history");
    if let Some(violation) = check_history(&jsonl, CheckModel::Bank { total: bank.total() }) {
        let kept = dir.keep();
        panic!("bank history: {violation}; history in {}", kept.display());
    }
    assert!(
        completed_while_down.iter().all(|n| *n > 0),
        "some PD leader outage stopped every transaction: {completed_while_down:?}; logs in {:?}",
        dir.keep()
    );
}
