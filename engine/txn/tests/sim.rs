//! `TxnService` over a real single-store raftstore region in the simulator: 2PC prewrite and
//! commit, a conflicting prewrite, a read that hits a lock, async commit, 1PC, latches under
//! concurrent conflicting prewrites, and input validation — every write going through raft.
#![cfg(madsim)]

use keel_raftstore::{PdReporter, Store, StoreConfig, StoreHandle, Transport};
use keel_storage::SimEngine;
use keel_txn::{ConcurrencyManager, TxnService};
use keel_types::error::KeyError;
use keel_types::proto::pd::RegionHeartbeat;
use keel_types::proto::store::{Context, RaftEnvelope, StoreError};
use keel_types::proto::txn::{Mutation, MutationOp, TxnCommand, TxnResponse};
use keel_types::{Peer, PeerRole, Region, RegionEpoch, Timestamp};
use madsim::runtime::Runtime;
use std::sync::Arc;
use std::time::Duration;

struct NoTransport;
impl Transport for NoTransport {
    fn send(&self, _to: u64, _msgs: Vec<RaftEnvelope>) {}
}

struct NoPd;
impl PdReporter for NoPd {
    fn region_heartbeat(&self, _hb: RegionHeartbeat) {}
    fn report_split(&self, _left: Region, _right: Region) {}
    fn ask_split(&self, _region: Region, _split_key: Vec<u8>) {}
    fn became_leader(&self, _region: &Region) {}
    fn check_stale_peer(&self, _region: &Region, _peer: keel_types::Peer) {}
    fn check_removal(&self, _region_id: u64, _peer: keel_types::Peer) {}
}

fn region() -> Region {
    Region {
        id: 1,
        start_key: vec![],
        end_key: vec![],
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: vec![Peer { id: 11, store_id: 1, role: PeerRole::Voter }],
    }
}

fn ctx() -> Context {
    Context { region_id: 1, region_epoch: RegionEpoch { conf_ver: 1, version: 1 }, peer: None }
}

async fn start_store() -> StoreHandle {
    let (store, handle) =
        Store::load(StoreConfig::test_min(1), Arc::new(SimEngine::new()), Arc::new(NoTransport), Arc::new(NoPd))
            .expect("load store");
    tokio::spawn(store.run(keel_types::Clock::new()));
    assert!(handle.create_region(region()).await.unwrap());
    for _ in 0..100 {
        if handle.status().await.iter().any(|r| r.is_leader) {
            return handle;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the single voter never led");
}

fn ts(logical: u64) -> Timestamp {
    Timestamp::compose(1_000, logical)
}

fn put(key: &[u8], value: &[u8]) -> Mutation {
    Mutation { op: MutationOp::Put, key: key.to_vec(), value: value.to_vec() }
}

fn prewrite(mutations: Vec<Mutation>, start_ts: Timestamp, async_commit: bool, one_pc: bool) -> TxnCommand {
    let primary = mutations[0].key.clone();
    let secondaries = if async_commit { mutations[1..].iter().map(|m| m.key.clone()).collect() } else { vec![] };
    TxnCommand::Prewrite {
        txn_size: mutations.len() as u64,
        mutations,
        primary,
        start_ts,
        lock_ttl_ms: 3_000,
        min_commit_ts: Timestamp::ZERO,
        use_async_commit: async_commit,
        secondaries,
        try_one_pc: one_pc,
        max_commit_ts: Timestamp::ZERO,
    }
}

fn sim<F: std::future::Future<Output = ()>>(seed: u64, f: impl FnOnce() -> F + Send + 'static) {
    std::thread::spawn(move || Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(f()))
        .join()
        .unwrap();
}

#[test]
fn txn_service_over_a_raft_region() {
    sim(7, || async {
        let store = start_store().await;
        let svc = TxnService::new(ConcurrencyManager::new(ts(0)));
        let run = |cmd: TxnCommand| {
            let (svc, store) = (&svc, &store);
            async move { svc.handle(store, ctx(), cmd, 1_000).await }
        };
        let get = |key: &[u8], at: Timestamp| TxnCommand::Get { key: key.to_vec(), start_ts: at };

        // 2PC: prewrite, commit the primary, then the secondary.
        let r = run(prewrite(vec![put(b"k1", b"v1"), put(b"k2", b"v2")], ts(10), false, false)).await.unwrap();
        assert_eq!(
            r,
            TxnResponse::Prewrite { errors: vec![], min_commit_ts: Timestamp::ZERO, one_pc_commit_ts: Timestamp::ZERO }
        );
        for key in [b"k1", b"k2"] {
            let c = TxnCommand::Commit { keys: vec![key.to_vec()], start_ts: ts(10), commit_ts: ts(11) };
            assert_eq!(run(c).await.unwrap(), TxnResponse::Done);
        }
        assert_eq!(run(get(b"k2", ts(12))).await.unwrap(), TxnResponse::Value(Some(b"v2".to_vec())));
        assert_eq!(run(get(b"k2", ts(10))).await.unwrap(), TxnResponse::Value(None));

        // A conflicting prewrite: another txn's lock, then a newer commit.
        run(prewrite(vec![put(b"k1", b"x")], ts(20), false, false)).await.unwrap();
        match run(prewrite(vec![put(b"k1", b"y")], ts(21), false, false)).await.unwrap() {
            TxnResponse::Prewrite { errors, .. } => {
                assert!(
                    matches!(errors.as_slice(), [KeyError::Locked { lock }] if lock.start_ts == ts(20)),
                    "{errors:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        match run(prewrite(vec![put(b"k2", b"y")], ts(5), false, false)).await.unwrap() {
            TxnResponse::Prewrite { errors, .. } => {
                assert!(matches!(errors.as_slice(), [KeyError::WriteConflict { .. }]), "{errors:?}")
            }
            other => panic!("{other:?}"),
        }

        // A read that hits the lock, then sees the value once it is resolved.
        let err = run(get(b"k1", ts(25))).await.unwrap_err();
        assert!(matches!(err, StoreError::Key(KeyError::Locked { ref lock }) if lock.start_ts == ts(20)), "{err:?}");
        let resolve = TxnCommand::ResolveLock { start_ts: ts(20), commit_ts: ts(22), keys: vec![] };
        assert_eq!(run(resolve).await.unwrap(), TxnResponse::Done);
        assert_eq!(run(get(b"k1", ts(25))).await.unwrap(), TxnResponse::Value(Some(b"x".to_vec())));

        // Async commit: min_commit_ts above every read so far (max_ts = ts(25)).
        let r = run(prewrite(vec![put(b"a1", b"1"), put(b"a2", b"2")], ts(26), true, false)).await.unwrap();
        let TxnResponse::Prewrite { errors, min_commit_ts, .. } = r else { panic!("{r:?}") };
        assert!(errors.is_empty() && min_commit_ts > ts(26), "{min_commit_ts}");
        // A reader above min_commit_ts is blocked until the commit.
        assert!(run(get(b"a2", Timestamp(min_commit_ts.0 + 5))).await.is_err());
        let c = TxnCommand::Commit {
            keys: vec![b"a1".to_vec(), b"a2".to_vec()],
            start_ts: ts(26),
            commit_ts: min_commit_ts,
        };
        run(c).await.unwrap();
        assert_eq!(run(get(b"a2", min_commit_ts)).await.unwrap(), TxnResponse::Value(Some(b"2".to_vec())));

        // 1PC: committed by the prewrite, above every read so far.
        let read_at = Timestamp(min_commit_ts.0 + 5);
        let r = run(prewrite(vec![put(b"o1", b"1"), put(b"o2", b"2")], ts(40), false, true)).await.unwrap();
        let TxnResponse::Prewrite { errors, one_pc_commit_ts, .. } = r else { panic!("{r:?}") };
        assert!(errors.is_empty());
        assert!(one_pc_commit_ts > read_at && one_pc_commit_ts > ts(40), "{one_pc_commit_ts}");
        assert_eq!(run(get(b"o2", one_pc_commit_ts)).await.unwrap(), TxnResponse::Value(Some(b"2".to_vec())));
        let scan = TxnCommand::ScanLock { max_ts: Timestamp::MAX, start_key: vec![], end_key: vec![], limit: 10 };
        assert_eq!(run(scan).await.unwrap(), TxnResponse::Locks(vec![]));

        // A new leader refuses async commit until max_ts is synced.
        let generation = svc.concurrency_manager().begin_max_ts_sync();
        let err = run(prewrite(vec![put(b"s", b"1")], ts(50), true, false)).await.unwrap_err();
        assert!(matches!(err, StoreError::Region(_)), "{err:?}");
        svc.concurrency_manager().finish_max_ts_sync(generation, ts(60));
        let r = run(prewrite(vec![put(b"s", b"1")], ts(50), true, false)).await.unwrap();
        assert!(matches!(r, TxnResponse::Prewrite { min_commit_ts, .. } if min_commit_ts > ts(60)), "{r:?}");

        // Bad input gets a clear error.
        let empty = TxnCommand::Prewrite {
            mutations: vec![],
            primary: b"p".to_vec(),
            start_ts: ts(70),
            lock_ttl_ms: 1,
            txn_size: 0,
            min_commit_ts: Timestamp::ZERO,
            use_async_commit: false,
            secondaries: vec![],
            try_one_pc: false,
            max_commit_ts: Timestamp::ZERO,
        };
        assert!(matches!(run(empty).await.unwrap_err(), StoreError::Invalid(_)));
    });
}

#[test]
fn latches_serialize_concurrent_conflicting_prewrites() {
    for seed in 1..4 {
        sim(seed, || async {
            let store = start_store().await;
            let svc = Arc::new(TxnService::new(ConcurrencyManager::new(ts(0))));
            let mut tasks = vec![];
            for i in 0..8u64 {
                let (svc, store) = (svc.clone(), store.clone());
                tasks.push(tokio::spawn(async move {
                    let cmd = prewrite(
                        vec![put(b"hot", &i.to_be_bytes()), put(&i.to_be_bytes(), b"x")],
                        ts(100 + i),
                        false,
                        false,
                    );
                    svc.handle(&store, ctx(), cmd, 1_000).await.unwrap()
                }));
            }
            let mut winners = 0;
            for t in tasks {
                match t.await.unwrap() {
                    TxnResponse::Prewrite { errors, .. } if errors.is_empty() => winners += 1,
                    TxnResponse::Prewrite { errors, .. } => assert!(matches!(errors[0], KeyError::Locked { .. })),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(winners, 1, "exactly one prewrite may lock the hot key");
        });
    }
}
