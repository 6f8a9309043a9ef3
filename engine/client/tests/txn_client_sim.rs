//! TransactionClient in the simulator against a real cluster (PD + three keel-server
//! storage nodes): 2PC commit and snapshot reads, read-your-writes, scans, rollback, a write
//! conflict, async commit and 1PC, and lock resolution — a lock whose primary committed is
//! committed by the reader, an expired abandoned lock is rolled back. And the nodes' GC
//! worker: it collects nothing until PD's safe point moves, then settles the locks below it
//! before it drops old versions, and refuses reads below it.
#![cfg(madsim)]

use keel_client::{PdClient, TransactionClient, TransactionOptions};
use keel_pd::{run_pd, PdConfig};
use keel_rpc::RpcClient;
use keel_server::{run_node, NodeConfig};
use keel_storage::SimEngine;
use keel_types::proto::store::{Context, StoreRequest, StoreResponse, StoreResult};
use keel_types::proto::txn::{Mutation, MutationOp, TxnCommand, TxnResponse};
use keel_types::{Clock, Timestamp};
use madsim::runtime::{Handle, Runtime};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const PD_ADDR: &str = "10.0.0.1:2379";

/// Starts PD and three stores; returns once the cluster serves a transactional read.
async fn start_cluster() {
    let handle = Handle::current();
    let pd_disk = SimEngine::new();
    handle
        .create_node()
        .name("pd")
        .ip("10.0.0.1".parse().unwrap())
        .init(move || {
            let disk = pd_disk.clone();
            async move {
                let listener = TcpListener::bind(PD_ADDR).await.expect("bind");
                let mut config = PdConfig::test_min(PD_ADDR.to_string());
                config.cluster_id = Some(1);
                config.max_replicas = 3;
                let result = run_pd(config, Arc::new(disk), Clock::new(), listener).await;
                panic!("pd stopped: {result:?}");
            }
        })
        .build();
    for i in 1..=3 {
        let ip = format!("10.0.1.{i}");
        let disk = SimEngine::new();
        handle
            .create_node()
            .name(format!("store{i}"))
            .ip(ip.parse().unwrap())
            .init(move || {
                let (disk, addr) = (disk.clone(), format!("{ip}:20160"));
                async move {
                    let mut config = NodeConfig::new(addr, vec![PD_ADDR.to_string()]);
                    config.test_min = true;
                    let result = run_node(config, Arc::new(disk), Clock::new()).await;
                    panic!("store stopped: {result:?}");
                }
            })
            .build();
    }
}

/// Sends one transactional command for the region of `key` to whichever store leads it.
async fn send(pd: &PdClient, key: &[u8], cmd: TxnCommand) -> TxnResponse {
    for _ in 0..100 {
        let info = pd.get_region(key).await.unwrap().expect("region");
        for store in pd.get_all_stores().await.unwrap() {
            let ctx = Context { region_id: info.region.id, region_epoch: info.region.epoch, peer: None };
            let rpc: RpcClient<StoreRequest, StoreResult> = RpcClient::new(store.address.clone());
            let req = StoreRequest::Txn { ctx, cmd: cmd.clone() };
            if let Ok(Ok(StoreResponse::Txn(resp))) = rpc.call(req, Duration::from_secs(1)).await {
                return resp;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no store served {cmd:?}");
}

fn put(key: &[u8], value: &[u8]) -> Mutation {
    Mutation { op: MutationOp::Put, key: key.to_vec(), value: value.to_vec() }
}

/// Prewrites `mutations` (primary: the first) as a 2PC transaction that then stops.
async fn prewrite(pd: &PdClient, mutations: Vec<Mutation>, ttl_ms: u64) -> Timestamp {
    let start_ts = pd.get_ts().await.unwrap();
    let primary = mutations[0].key.clone();
    let cmd = TxnCommand::Prewrite {
        txn_size: mutations.len() as u64,
        mutations,
        primary: primary.clone(),
        start_ts,
        lock_ttl_ms: ttl_ms,
        min_commit_ts: Timestamp::ZERO,
        use_async_commit: false,
        secondaries: vec![],
        try_one_pc: false,
        max_commit_ts: Timestamp::ZERO,
    };
    match send(pd, &primary, cmd).await {
        TxnResponse::Prewrite { errors, .. } => assert!(errors.is_empty(), "{errors:?}"),
        other => panic!("{other:?}"),
    }
    start_ts
}

async fn scenario() {
    start_cluster().await;
    let client_node = Handle::current().create_node().name("client").ip("10.0.2.1".parse().unwrap()).build();
    client_node
        .spawn(async move {
            let client = loop {
                match TransactionClient::connect(vec![PD_ADDR.to_string()]).await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            // 2PC: a transaction's writes become visible together.
            let mut t = loop {
                let mut t = client.begin().await.unwrap();
                match t.get(b"a".to_vec()).await {
                    Ok(None) => break t,
                    Ok(v) => panic!("fresh cluster has a = {v:?}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await, // still electing
                }
                t.rollback().await.unwrap();
            };
            let before = client.begin().await.unwrap();
            t.put(b"a".to_vec(), b"1".to_vec()).unwrap();
            t.put(b"b".to_vec(), b"2".to_vec()).unwrap();
            let commit_ts = t.commit().await.unwrap();
            assert!(commit_ts > t.start_ts());
            assert!(t.commit().await.unwrap_err().is_invalid(), "commit twice");
            assert_eq!(before.get(b"a".to_vec()).await.unwrap(), None, "an older snapshot");
            let r = client.begin().await.unwrap();
            assert_eq!(
                r.batch_get([b"a".to_vec(), b"b".to_vec(), b"zz".to_vec()]).await.unwrap(),
                vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]
            );

            // Read-your-writes, scans over buffered writes, rollback.
            let mut t = client.begin().await.unwrap();
            t.put(b"a".to_vec(), b"9".to_vec()).unwrap();
            t.delete(b"b".to_vec()).unwrap();
            t.put(b"c".to_vec(), b"3".to_vec()).unwrap();
            assert_eq!(t.get(b"a".to_vec()).await.unwrap(), Some(b"9".to_vec()));
            assert_eq!(t.get(b"b".to_vec()).await.unwrap(), None);
            assert_eq!(
                t.scan(b"a".to_vec(), b"d".to_vec(), 10).await.unwrap(),
                vec![(b"a".to_vec(), b"9".to_vec()), (b"c".to_vec(), b"3".to_vec())]
            );
            assert_eq!(t.scan(b"a".to_vec(), Vec::new(), 1).await.unwrap().len(), 1);
            t.rollback().await.unwrap();
            let r = client.begin().await.unwrap();
            assert_eq!(
                r.scan(b"".to_vec(), Vec::new(), 10).await.unwrap(),
                vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]
            );

            // Two writers of one key: the second to commit conflicts, nothing of it applies.
            let mut t1 = client.begin().await.unwrap();
            let mut t2 = client.begin().await.unwrap();
            t1.put(b"x".to_vec(), b"t1".to_vec()).unwrap();
            t2.put(b"x".to_vec(), b"t2".to_vec()).unwrap();
            t2.put(b"y".to_vec(), b"t2".to_vec()).unwrap();
            t1.commit().await.unwrap();
            let err = t2.commit().await.unwrap_err();
            assert!(err.is_conflict() && err.definitely_failed(), "{err}");
            let r = client.begin().await.unwrap();
            assert_eq!(
                r.batch_get([b"x".to_vec(), b"y".to_vec()]).await.unwrap(),
                vec![(b"x".to_vec(), b"t1".to_vec())]
            );

            // lock_keys turns a concurrent write of a read key into a conflict.
            let mut reader = client.begin().await.unwrap();
            reader.lock_keys([b"x".to_vec()]).unwrap();
            reader.put(b"z".to_vec(), b"r".to_vec()).unwrap();
            let mut writer = client.begin().await.unwrap();
            writer.put(b"x".to_vec(), b"w".to_vec()).unwrap();
            writer.commit().await.unwrap();
            assert!(reader.commit().await.unwrap_err().is_conflict());

            // Async commit and 1PC.
            let mut t = client
                .begin_with_options(TransactionOptions { async_commit: true, ..TransactionOptions::default() })
                .await
                .unwrap();
            t.put(b"p".to_vec(), b"async".to_vec()).unwrap();
            t.put(b"q".to_vec(), b"async".to_vec()).unwrap();
            let async_ts = t.commit().await.unwrap();
            let mut t = client
                .begin_with_options(TransactionOptions { try_one_pc: true, ..TransactionOptions::default() })
                .await
                .unwrap();
            assert!(t.start_ts() > async_ts);
            t.put(b"p".to_vec(), b"1pc".to_vec()).unwrap();
            t.put(b"r".to_vec(), b"1pc".to_vec()).unwrap();
            t.commit().await.unwrap();
            let stats = client.stats();
            assert_eq!((stats.async_commits, stats.one_pc), (1, 1), "{stats:?}");
            let r = client.begin().await.unwrap();
            assert_eq!(
                r.batch_get([b"p".to_vec(), b"q".to_vec(), b"r".to_vec()]).await.unwrap(),
                vec![
                    (b"p".to_vec(), b"1pc".to_vec()),
                    (b"q".to_vec(), b"async".to_vec()),
                    (b"r".to_vec(), b"1pc".to_vec())
                ]
            );

            // A writer that committed its primary and died: a reader reads the secondary's
            // value through its lock at once, and leaves the lock to its owner while the TTL
            // runs; once the TTL is out, a reader commits the secondary (in the background).
            let pd = client.pd().clone();
            let start_ts = prewrite(&pd, vec![put(b"l1", b"v1"), put(b"l2", b"v2")], 1_000).await;
            let commit_ts = pd.get_ts().await.unwrap();
            let cmd = TxnCommand::Commit { keys: vec![b"l1".to_vec()], start_ts, commit_ts };
            assert_eq!(send(&pd, b"l1", cmd).await, TxnResponse::Done);
            let resolved = client.stats().locks_resolved;
            let r = client.begin().await.unwrap();
            assert_eq!(r.get(b"l2".to_vec()).await.unwrap(), Some(b"v2".to_vec()));
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(client.stats().locks_resolved, resolved, "a live owner's lock was resolved by a reader");
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            let r = client.begin().await.unwrap();
            assert_eq!(r.get(b"l2".to_vec()).await.unwrap(), Some(b"v2".to_vec()));
            let mut polls = 0;
            while client.stats().locks_resolved == resolved {
                polls += 1;
                assert!(polls < 50, "no reader resolved the expired lock");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let scan = TxnCommand::ScanLock {
                max_ts: Timestamp::MAX,
                start_key: b"l2".to_vec(),
                end_key: b"l3".to_vec(),
                limit: 10,
            };
            assert_eq!(send(&pd, b"l2", scan).await, TxnResponse::Locks(vec![]), "the secondary is still locked");

            // A writer that died after prewriting. A reader pushes its primary's
            // min_commit_ts above the read and reads past the live lock without waiting...
            prewrite(&pd, vec![put(b"m1", b"v1"), put(b"m2", b"v2")], 500).await;
            let r = client.begin().await.unwrap();
            let waited = tokio::time::Instant::now();
            let waits = client.stats().lock_waits;
            assert_eq!(r.get(b"m2".to_vec()).await.unwrap(), None);
            assert!(waited.elapsed() < Duration::from_millis(500), "the reader waited for the TTL");
            assert_eq!(client.stats().lock_waits, waits);
            // ... while a writer of the key waits out the TTL and rolls the lock back.
            let mut attempts = 0;
            loop {
                attempts += 1;
                let mut w = client.begin().await.unwrap();
                w.put(b"m1".to_vec(), b"new".to_vec()).unwrap();
                match w.commit().await {
                    Ok(_) => break,
                    Err(e) if e.is_conflict() && attempts < 10 => {}
                    Err(e) => panic!("writer of a dead txn's key: {e}"),
                }
            }
            assert!(client.stats().lock_waits > waits);
            assert!(waited.elapsed() >= Duration::from_millis(400), "the writer got through a live lock");
            let r = client.begin().await.unwrap();
            assert_eq!(
                r.batch_get([b"m1".to_vec(), b"m2".to_vec()]).await.unwrap(),
                vec![(b"m1".to_vec(), b"new".to_vec())]
            );
        })
        .await
        .unwrap();
}

/// A connected client, once the cluster serves a transactional read.
async fn ready_client() -> TransactionClient {
    let client = loop {
        match TransactionClient::connect(vec![PD_ADDR.to_string()]).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    while client.begin().await.unwrap().get(b"a".to_vec()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(200)).await; // still electing
    }
    client
}

async fn commit_put(client: &TransactionClient, key: &[u8], value: &[u8]) -> Timestamp {
    let mut t = client.begin().await.unwrap();
    t.put(key.to_vec(), value.to_vec()).unwrap();
    t.commit().await.unwrap()
}

/// The records the nodes' GC workers deleted so far in this run.
fn gc_deleted() -> u64 {
    keel_types::trace::take_counts().into_iter().filter(|(n, _)| *n == "gc_deleted").map(|(_, v)| v).sum()
}

async fn gc_scenario() {
    keel_types::trace::reset();
    start_cluster().await;
    let client_node = Handle::current().create_node().name("client").ip("10.0.2.1".parse().unwrap()).build();
    client_node
        .spawn(async move {
            let client = ready_client().await;
            let pd = client.pd().clone();
            let c1 = commit_put(&client, b"g", b"1").await;
            commit_put(&client, b"g", b"2").await;
            commit_put(&client, b"s2", b"old").await;
            // A writer that committed its primary s1 and died before its secondary s2; then
            // s1 is overwritten, so GC drops the commit record s2's lock is decided by.
            let start_ts = prewrite(&pd, vec![put(b"s1", b"new"), put(b"s2", b"new")], 60_000).await;
            let commit_ts = pd.get_ts().await.unwrap();
            let cmd = TxnCommand::Commit { keys: vec![b"s1".to_vec()], start_ts, commit_ts };
            assert_eq!(send(&pd, b"s1", cmd).await, TxnResponse::Done);
            commit_put(&client, b"s1", b"newer").await;
            commit_put(&client, b"g", b"3").await;

            // No safe point yet: the workers collect nothing, old snapshots still read.
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert_eq!(gc_deleted(), 0);
            let old = client.snapshot_at(c1, TransactionOptions::default());
            assert_eq!(old.get(b"g".to_vec()).await.unwrap(), Some(b"1".to_vec()));
            drop(old);

            let safe_point = pd.get_ts().await.unwrap();
            assert_eq!(pd.update_gc_safe_point(safe_point).await.unwrap(), safe_point);
            let mut deleted = 0;
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                deleted += gc_deleted();
                if deleted >= 4 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            deleted += gc_deleted();
            // g@1, g@2, s1's first commit record, s2's "old" — and nothing else.
            assert_eq!(deleted, 4);
            let r = client.begin().await.unwrap();
            assert_eq!(
                r.batch_get([b"g".to_vec(), b"s1".to_vec(), b"s2".to_vec()]).await.unwrap(),
                vec![
                    (b"g".to_vec(), b"3".to_vec()),
                    (b"s1".to_vec(), b"newer".to_vec()),
                    // The worker committed the lock before GC lost its primary's record.
                    (b"s2".to_vec(), b"new".to_vec()),
                ]
            );
            let locks = send(
                &pd,
                b"g",
                TxnCommand::ScanLock { max_ts: safe_point, start_key: vec![], end_key: vec![], limit: 10 },
            )
            .await;
            assert_eq!(locks, TxnResponse::Locks(vec![]));
            // A reader below the safe point gets a clear refusal, not a collected snapshot.
            let too_old = client.snapshot_at(c1, TransactionOptions::default());
            let err = too_old.get(b"g".to_vec()).await.unwrap_err();
            assert!(err.to_string().contains("GC safe point"), "{err}");
        })
        .await
        .unwrap();
}

#[test]
fn gc_worker_collects_below_the_safe_point_after_resolving_locks() {
    for seed in [1, 2] {
        Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(gc_scenario());
    }
}

#[test]
fn transactions_against_a_real_cluster() {
    for seed in [1, 2, 3] {
        Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(scenario());
    }
}
