//! The official TiKV Rust client (tikv-client 0.4, unmodified) against a keel cluster: PD and
//! three storage nodes in this process on loopback, real tokio and fjall, split thresholds
//! small enough (`test_min`) that regions split under the client while it works.
#![cfg(not(madsim))]

use keel_client::PdClient;
use keel_kvproto::convert::peer_to_pb;
use keel_kvproto::kvrpcpb::{self, Op};
use keel_kvproto::metapb;
use keel_kvproto::tikvpb::tikv_client::TikvClient;
use keel_pd::PdConfig;
use keel_rpc::RpcClient;
use keel_server::NodeConfig;
use keel_storage::FjallEngine;
use keel_types::keys::encode_bytes;
use keel_types::proto::store::{Context, StoreError, StoreRequest, StoreResponse, StoreResult};
use keel_types::proto::txn::{Mutation, MutationOp, TxnCommand, TxnResponse};
use keel_types::{Clock, Peer, Region, Timestamp};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tikv_client::{CheckLevel, ColumnFamily, RawClient, TimestampExt, TransactionClient, TransactionOptions};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const NODES: usize = 3;
/// How long a cluster may take to serve its first write.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running cluster; dropping it stops nothing (its tasks end with the test's runtime) but
/// removes its data.
struct Cluster {
    pd_addr: String,
    pd: PdClient,
    _dirs: Vec<tempfile::TempDir>,
}

async fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    listener.local_addr().expect("local addr").to_string()
}

async fn start_cluster() -> Cluster {
    let mut dirs = Vec::new();
    let pd_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind pd");
    let pd_addr = pd_listener.local_addr().expect("pd addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(FjallEngine::open(dir.path()).expect("open pd engine"));
    dirs.push(dir);
    tokio::spawn(keel_pd::run_pd(PdConfig::new(pd_addr.clone()), engine, Clock::new(), pd_listener));
    for _ in 0..NODES {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(FjallEngine::open(dir.path()).expect("open store engine"));
        dirs.push(dir);
        let mut config = NodeConfig::new(free_addr().await, vec![pd_addr.clone()]);
        config.test_min = true;
        config.store_heartbeat_interval = Duration::from_secs(1);
        tokio::spawn(keel_server::run_node(config, engine, Clock::new()));
    }
    let cluster = Cluster { pd: PdClient::new(vec![pd_addr.clone()]), pd_addr, _dirs: dirs };
    // Ready when a raw write through the official client succeeds.
    let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
    loop {
        if let Ok(client) = RawClient::new(vec![cluster.pd_addr.clone()]).await {
            if client.put(b"ready".to_vec(), b"1".to_vec()).await.is_ok() {
                return cluster;
            }
        }
        assert!(Instant::now() < deadline, "cluster not ready within {CLUSTER_READY_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Cluster {
    async fn region_count(&self) -> usize {
        self.pd.scan_regions(&[], &[], 0).await.expect("scan regions").len()
    }

    /// Waits until PD knows at least `n` regions (splits happen in the background).
    async fn wait_for_regions(&self, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let count = self.region_count().await;
            if count >= n {
                return count;
            }
            assert!(Instant::now() < deadline, "only {count} regions after 30 s; wanted {n}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A transactional command sent with keel's native protocol to the leader of `key`'s
    /// region — how a test plays a client that prewrote and then vanished.
    async fn native_txn(&self, key: &[u8], cmd: TxnCommand) -> TxnResponse {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = self.pd.get_region(key).await.expect("pd get_region").expect("a region for every key");
            if let Some(leader) = info.leader {
                let store = self.pd.get_store(leader.store_id).await.expect("pd get_store").expect("store");
                let rpc: RpcClient<StoreRequest, StoreResult> = RpcClient::new(store.address);
                let ctx = Context { region_id: info.region.id, region_epoch: info.region.epoch, peer: Some(leader) };
                let req = StoreRequest::Txn { ctx, cmd: cmd.clone() };
                match rpc.call(req, Duration::from_secs(5)).await {
                    Ok(Ok(StoreResponse::Txn(resp))) => return resp,
                    Ok(Err(StoreError::Region(_))) | Err(_) => {}
                    Ok(other) => panic!("native txn command failed: {other:?}"),
                }
            }
            assert!(Instant::now() < deadline, "native txn command found no leader in 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Cluster {
    /// A gRPC client of keel's `tikvpb.Tikv` front on store `store_id`, for RPCs the official
    /// client does not expose and for looking at raw answers.
    async fn grpc(&self, store_id: u64) -> TikvClient<Channel> {
        let store = self.pd.get_store(store_id).await.expect("pd get_store").expect("store");
        let endpoint = Channel::from_shared(format!("http://{}", store.address)).expect("a store's URL");
        TikvClient::new(endpoint.connect().await.expect("connect to a store's gRPC front"))
    }

    /// Calls `call` with `key`'s region, its leader and a client of the leader's store until
    /// it answers `Some`; `None` means "routing moved under me (a leader change or split),
    /// look again" — PD's leader balancer moves leaders while tests run.
    async fn at_leader<T>(
        &self,
        key: &[u8],
        mut call: impl AsyncFnMut(&Region, &Peer, TikvClient<Channel>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = self.pd.get_region(key).await.expect("pd get_region").expect("a region for every key");
            if let Some(leader) = info.leader {
                if let Some(answer) = call(&info.region, &leader, self.grpc(leader.store_id).await).await {
                    return answer;
                }
            }
            assert!(Instant::now() < deadline, "no stable leader for {key:?} in 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A kvrpcpb context aimed at `peer` of `region`.
fn pb_ctx(region: &Region, peer: &Peer) -> kvrpcpb::Context {
    kvrpcpb::Context {
        region_id: region.id,
        region_epoch: Some(metapb::RegionEpoch { conf_ver: region.epoch.conf_ver, version: region.epoch.version }),
        peer: Some(peer_to_pb(peer)),
        term: 0,
    }
}

/// True when a region error says the routing moved (retry with fresh routing).
fn moved(err: &Option<keel_kvproto::errorpb::Error>) -> bool {
    err.as_ref().is_some_and(|e| e.not_leader.is_some() || e.epoch_not_match.is_some())
}

fn key(i: usize) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: usize, round: usize) -> Vec<u8> {
    format!("value-{i}-{round}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raw_client_across_splitting_regions() {
    let cluster = start_cluster().await;
    let client = RawClient::new(vec![cluster.pd_addr.clone()]).await.expect("connect");
    const KEYS: usize = 600;

    // Writes in batches while the regions split under them (test_min splits at 100 keys).
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk.iter().map(|&i| (key(i), value(i, 0))).collect();
        client.batch_put(pairs).await.expect("batch_put");
    }
    let regions = cluster.wait_for_regions(3).await;
    // More writes (single puts) after the splits, through a client whose cache is now stale.
    for i in (0..KEYS).step_by(7) {
        client.put(key(i), value(i, 1)).await.expect("put");
    }
    let expected = |i: usize| if i.is_multiple_of(7) { value(i, 1) } else { value(i, 0) };

    for i in [0, 1, 99, 100, 299, 350, KEYS - 1] {
        assert_eq!(client.get(key(i)).await.expect("get"), Some(expected(i)), "key {i}");
    }
    assert_eq!(client.get(b"absent".to_vec()).await.expect("get absent"), None);

    let keys: Vec<Vec<u8>> = (0..KEYS).step_by(13).map(key).collect();
    let mut got = client.batch_get(keys.clone()).await.expect("batch_get");
    got.sort_by(|a, b| a.key().cmp(b.key()));
    assert_eq!(got.len(), keys.len());
    for pair in &got {
        let i: usize = std::str::from_utf8(&Vec::from(pair.key().clone())[3..]).unwrap().parse().unwrap();
        assert_eq!(pair.value(), &expected(i));
    }

    // A scan across every region returns every key once, in order. (The limit is exact:
    // tikv-client 0.4 restarts a bounded scan from the key space's start when it reaches the
    // last region with the limit not yet filled — a client bug, not a keel one.)
    let all = client.scan(key(0)..key(KEYS), KEYS as u32).await.expect("scan");
    assert_eq!(all.len(), KEYS, "scan over {regions} regions");
    for (i, pair) in all.iter().enumerate() {
        assert_eq!(Vec::from(pair.key().clone()), key(i));
        assert_eq!(pair.value(), &expected(i));
    }
    let tail = client.scan_reverse(key(100)..key(110), 3).await.expect("scan_reverse");
    let tail_keys: Vec<Vec<u8>> = tail.iter().map(|p| Vec::from(p.key().clone())).collect();
    assert_eq!(tail_keys, vec![key(109), key(108), key(107)]);

    // delete_range across region boundaries.
    client.delete_range(key(50)..key(450)).await.expect("delete_range");
    let left = client.scan(key(0)..key(KEYS), KEYS as u32 - 400).await.expect("scan after delete_range");
    let left: Vec<Vec<u8>> = left.iter().map(|p| Vec::from(p.key().clone())).collect();
    assert_eq!(left, (0..50).chain(450..KEYS).map(key).collect::<Vec<_>>());
    assert_eq!(client.get(key(50)).await.expect("get"), None);
    assert_eq!(client.get(key(449)).await.expect("get"), None);
    assert_eq!(client.get(key(450)).await.expect("get"), Some(expected(450)));

    client.batch_delete(vec![key(0), key(1)]).await.expect("batch_delete");
    client.delete(key(2)).await.expect("delete");
    assert_eq!(client.batch_get(vec![key(0), key(1), key(2), key(3)]).await.expect("batch_get").len(), 1);

    // Compare-and-swap (the client's atomic mode): succeeds only against the current value.
    let client = client.with_atomic_for_cas();
    let (prev, swapped) = client.compare_and_swap(key(3), Some(b"wrong".to_vec()), b"cas".to_vec()).await.expect("cas");
    assert!(!swapped);
    assert_eq!(prev, Some(expected(3)));
    let (_, swapped) = client.compare_and_swap(key(3), Some(expected(3)), b"cas".to_vec()).await.expect("cas");
    assert!(swapped);
    let (_, swapped) = client.compare_and_swap(b"fresh".to_vec(), None, b"new".to_vec()).await.expect("cas");
    assert!(swapped);
    assert_eq!(client.get(key(3)).await.expect("get"), Some(b"cas".to_vec()));

    // A key written without a TTL has none.
    assert_eq!(client.get_key_ttl_secs(key(3)).await.expect("ttl"), Some(0));
    assert_eq!(client.get_key_ttl_secs(b"absent".to_vec()).await.expect("ttl"), None);

    // Column families other than `default` are refused by name.
    let err = client.with_cf(ColumnFamily::Write).get(key(3)).await.expect_err("cf write must fail");
    assert!(format!("{err:?}").contains("column family"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raw_ttl_across_splitting_regions() {
    const KEYS: usize = 400;
    /// Short enough to wait out, long enough to read the keys back first.
    const SHORT_TTL_SECS: u64 = 3;
    const LONG_TTL_SECS: u64 = 3600;
    let cluster = start_cluster().await;
    let client = RawClient::new(vec![cluster.pd_addr.clone()]).await.expect("connect");
    let short = |i: usize| i.is_multiple_of(10);
    let long = |i: usize| i % 10 == 5;

    // Keys 5, 15, … with a long TTL, the rest with none, in batches while regions split.
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk.iter().map(|&i| (key(i), value(i, 0))).collect();
        let ttls: Vec<u64> = chunk.iter().map(|&i| if long(i) { LONG_TTL_SECS } else { 0 }).collect();
        client.batch_put_with_ttl(pairs, ttls).await.expect("batch_put_with_ttl");
    }
    let regions = cluster.wait_for_regions(3).await;

    // Keys 0, 10, … get a short TTL (batch, across regions, through a stale route cache), and
    // one more key alone.
    let short_keys: Vec<usize> = (0..KEYS).filter(|&i| short(i)).collect();
    let written = Instant::now();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = short_keys.iter().map(|&i| (key(i), value(i, 1))).collect();
    client.batch_put_with_ttl(pairs, vec![SHORT_TTL_SECS; short_keys.len()]).await.expect("batch_put_with_ttl");
    client.put_with_ttl(b"lone".to_vec(), b"v".to_vec(), SHORT_TTL_SECS).await.expect("put_with_ttl");

    // Until they expire they read back, and their TTL counts down from what was set.
    assert_eq!(client.get(key(0)).await.expect("get"), Some(value(0, 1)));
    assert_eq!(client.get(b"lone".to_vec()).await.expect("get"), Some(b"v".to_vec()));
    for i in [0, 200, 390] {
        let ttl = client.get_key_ttl_secs(key(i)).await.expect("ttl").expect("present");
        assert!((1..=SHORT_TTL_SECS).contains(&ttl), "key {i}: ttl {ttl}");
    }
    let ttl = client.get_key_ttl_secs(key(205)).await.expect("ttl").expect("present");
    assert!((LONG_TTL_SECS - 60..=LONG_TTL_SECS).contains(&ttl), "ttl {ttl}");
    assert_eq!(client.get_key_ttl_secs(key(1)).await.expect("ttl"), Some(0));
    assert!(written.elapsed() < Duration::from_secs(SHORT_TTL_SECS), "too slow to see the keys before expiry");
    assert_eq!(client.scan(key(0)..key(KEYS), KEYS as u32).await.expect("scan").len(), KEYS);

    // More writes split the regions further while the TTL runs out.
    for chunk in (KEYS..2 * KEYS).collect::<Vec<_>>().chunks(50) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk.iter().map(|&i| (key(i), value(i, 0))).collect();
        client.batch_put(pairs).await.expect("batch_put");
    }
    let regions_after = cluster.wait_for_regions(regions + 1).await;
    let expiry = written + Duration::from_secs(SHORT_TTL_SECS) + Duration::from_millis(500);
    tokio::time::sleep(expiry.saturating_duration_since(Instant::now())).await;

    // Expired keys are gone for get, get_key_ttl, batch_get, scans both ways and CAS.
    assert_eq!(client.get(key(0)).await.expect("get"), None);
    assert_eq!(client.get(b"lone".to_vec()).await.expect("get"), None);
    assert_eq!(client.get_key_ttl_secs(key(200)).await.expect("ttl"), None);
    let got = client.batch_get((0..20).map(key).collect::<Vec<_>>()).await.expect("batch_get");
    assert_eq!(got.len(), 18, "keys 0 and 10 expired");
    let live: Vec<Vec<u8>> = (0..KEYS).filter(|&i| !short(i)).map(key).collect();
    let all = client.scan(key(0)..key(KEYS), KEYS as u32).await.expect("scan");
    assert_eq!(all.iter().map(|p| Vec::from(p.key().clone())).collect::<Vec<_>>(), live, "{regions_after} regions");
    // Reverse, within one region: tikv-client 0.4 walks regions upwards even when scanning in
    // reverse, so over several regions it returns the lowest region's tail (a client bug).
    let region = cluster.pd.get_region(&key(311)).await.expect("pd").expect("region").region;
    let from = region.start_key.clone().max(key(300));
    let want: Vec<Vec<u8>> = live.iter().filter(|k| **k >= from && **k < key(312)).rev().take(3).cloned().collect();
    let tail = client.scan_reverse(from..key(312), 3).await.expect("scan_reverse");
    assert_eq!(tail.iter().map(|p| Vec::from(p.key().clone())).collect::<Vec<_>>(), want);
    assert_eq!(client.get(key(205)).await.expect("get"), Some(value(205, 0)), "a long TTL outlives the short one");
    let cas = client.with_atomic_for_cas();
    let (previous, swapped) = cas.compare_and_swap(key(0), None, b"again".to_vec()).await.expect("cas");
    assert!(swapped && previous.is_none(), "an expired key is absent to CAS: {previous:?} {swapped}");
    assert_eq!(cas.get_key_ttl_secs(key(0)).await.expect("ttl"), Some(0), "rewritten without TTL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_conflicts_and_lock_resolution() {
    let cluster = start_cluster().await;
    let client = TransactionClient::new(vec![cluster.pd_addr.clone()]).await.expect("connect");

    // Enough transactional keys that the region splits; then read them back across regions.
    for chunk in (0..400).collect::<Vec<_>>().chunks(50) {
        let mut txn = client.begin_optimistic().await.expect("begin");
        for &i in chunk {
            txn.put(key(i), value(i, 0)).await.expect("put");
        }
        txn.commit().await.expect("commit");
    }
    cluster.wait_for_regions(2).await;
    let mut snapshot = client.begin_optimistic().await.expect("begin");
    let all: Vec<_> = snapshot.scan(key(0)..key(400), 1000).await.expect("scan").collect();
    assert_eq!(all.len(), 400);
    assert_eq!(snapshot.get(key(123)).await.expect("get"), Some(value(123, 0)));
    let got = snapshot.batch_get(vec![key(5), key(250), key(399), b"absent".to_vec()]).await.expect("batch_get");
    assert_eq!(got.count(), 3);
    snapshot.rollback().await.expect("rollback");

    // Two transactions write the same key: the second to commit fails with a write conflict.
    let mut t1 = client.begin_optimistic().await.expect("begin t1");
    let mut t2 = client.begin_optimistic().await.expect("begin t2");
    t1.put(key(7), b"t1".to_vec()).await.expect("put");
    t2.put(key(7), b"t2".to_vec()).await.expect("put");
    t1.commit().await.expect("t1 commits");
    let err = t2.commit().await.expect_err("t2 must fail");
    assert!(format!("{err:?}").to_lowercase().contains("conflict"), "not a write conflict: {err:?}");
    let mut check = client.begin_optimistic().await.expect("begin");
    assert_eq!(check.get(key(7)).await.expect("get"), Some(b"t1".to_vec()));
    check.rollback().await.expect("rollback");

    // A client prewrote k10 (primary) and k300 and vanished: a reader rolls its expired lock
    // back and sees the old values.
    let start_ts = cluster.pd.get_ts().await.expect("ts");
    let put = |k: Vec<u8>| Mutation { op: MutationOp::Put, key: k, value: b"orphan".to_vec() };
    for k in [key(10), key(300)] {
        let cmd = prewrite(vec![put(k.clone())], key(10), start_ts);
        assert!(
            matches!(cluster.native_txn(&k, cmd).await, TxnResponse::Prewrite { ref errors, .. } if errors.is_empty())
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the locks' TTL (100 ms) expires
    let mut reader = client.begin_optimistic().await.expect("begin");
    assert_eq!(reader.get(key(300)).await.expect("read past an orphan lock"), Some(value(300, 0)));
    assert_eq!(reader.get(key(10)).await.expect("read past an orphan lock"), Some(value(10, 0)));
    reader.rollback().await.expect("rollback");

    // Another client prewrote k20 (primary) and k350, committed only the primary and
    // vanished: the reader commits the secondary and sees the new value.
    let start_ts = cluster.pd.get_ts().await.expect("ts");
    for k in [key(20), key(350)] {
        let cmd = prewrite(vec![put(k.clone())], key(20), start_ts);
        assert!(
            matches!(cluster.native_txn(&k, cmd).await, TxnResponse::Prewrite { ref errors, .. } if errors.is_empty())
        );
    }
    let commit_ts = cluster.pd.get_ts().await.expect("ts");
    let commit = TxnCommand::Commit { keys: vec![key(20)], start_ts, commit_ts };
    assert_eq!(cluster.native_txn(&key(20), commit).await, TxnResponse::Done);
    let mut reader = client.begin_optimistic().await.expect("begin");
    assert_eq!(reader.get(key(350)).await.expect("read a half-committed txn"), Some(b"orphan".to_vec()));
    reader.rollback().await.expect("rollback");

    // Async commit (keys in two regions) and 1PC (keys in one). Either may meet
    // `server_is_busy` right after a leader change, which tikv-client does not retry.
    let async_commit = TransactionOptions::new_optimistic().use_async_commit();
    let one_pc = TransactionOptions::new_optimistic().try_one_pc();
    for (options, keys) in [(async_commit, [key(40), key(380)]), (one_pc, [key(41), key(42)])] {
        commit_with_retries(&client, options, keys.iter().map(|k| (k.clone(), b"fast".to_vec())).collect()).await;
        let mut check = client.begin_optimistic().await.expect("begin");
        for k in keys {
            assert_eq!(check.get(k).await.expect("get"), Some(b"fast".to_vec()));
        }
        check.rollback().await.expect("rollback");
    }

    // GC resolves every lock at or below the safe point (here an orphan prewrite) and moves
    // PD's safe point.
    let start_ts = cluster.pd.get_ts().await.expect("ts");
    let cmd = prewrite(vec![put(key(30))], key(30), start_ts);
    assert!(
        matches!(cluster.native_txn(&key(30), cmd).await, TxnResponse::Prewrite { ref errors, .. } if errors.is_empty())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let safe_point = client.current_timestamp().await.expect("tso");
    assert!(client.gc(safe_point.clone()).await.expect("gc"));
    let scan_locks = TxnCommand::ScanLock { max_ts: Timestamp::MAX, start_key: key(30), end_key: key(31), limit: 10 };
    assert_eq!(cluster.native_txn(&key(30), scan_locks).await, TxnResponse::Locks(vec![]));
    assert_eq!(cluster.pd.get_gc_safe_point().await.expect("safe point"), Timestamp(safe_point.version()));

    // Pessimistic transactions are refused with a clear error.
    let pessimistic = TransactionOptions::new_pessimistic().drop_check(CheckLevel::None);
    let mut txn = client.begin_with_options(pessimistic.clone()).await.expect("begin");
    let err = txn.put(key(1), b"p".to_vec()).await.expect_err("pessimistic lock must be refused");
    assert!(format!("{err:?}").contains("pessimistic transactions are not supported"), "{err:?}");
    let mut txn = client.begin_with_options(pessimistic.clone()).await.expect("begin");
    let err = txn.get_for_update(key(2)).await.expect_err("a locking read must be refused");
    assert!(format!("{err:?}").contains("pessimistic transactions are not supported"), "{err:?}");

    // An RPC keel does not serve (UnsafeDestroyRange) answers gRPC Unimplemented.
    let err = client.unsafe_destroy_range(key(0)..key(1)).await.expect_err("unsafe_destroy_range must fail");
    assert!(format!("{err:?}").contains("Unimplemented"), "{err:?}");
}

/// Commits `pairs` in one transaction with `options`, retrying what tikv-client does not.
async fn commit_with_retries(client: &TransactionClient, options: TransactionOptions, pairs: Vec<(Vec<u8>, Vec<u8>)>) {
    let mut last_err = None;
    for _ in 0..20 {
        let mut txn = client.begin_with_options(options.clone()).await.expect("begin");
        for (k, v) in pairs.clone() {
            txn.put(k, v).await.expect("put");
        }
        match txn.commit().await {
            Ok(_) => return,
            Err(e) => last_err = Some(e),
        }
        let _ = txn.rollback().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{options:?} never committed: {last_err:?}");
}

fn prewrite(mutations: Vec<Mutation>, primary: Vec<u8>, start_ts: Timestamp) -> TxnCommand {
    TxnCommand::Prewrite {
        mutations,
        primary,
        start_ts,
        lock_ttl_ms: 100,
        txn_size: 2,
        min_commit_ts: Timestamp::ZERO,
        use_async_commit: false,
        secondaries: vec![],
        try_one_pc: false,
        max_commit_ts: Timestamp::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_transfers_keep_the_total() {
    const ACCOUNTS: usize = 20;
    const BALANCE: u64 = 100;
    const WORKERS: u64 = 4;
    const RUN: Duration = Duration::from_secs(8);
    let cluster = start_cluster().await;
    let client = TransactionClient::new(vec![cluster.pd_addr.clone()]).await.expect("connect");
    let mut init = client.begin_optimistic().await.expect("begin");
    for i in 0..ACCOUNTS {
        init.put(account(i), BALANCE.to_string().into_bytes()).await.expect("put");
    }
    init.commit().await.expect("commit");

    let stop = Instant::now() + RUN;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                let (mut committed, mut failed) = (0u64, 0u64);
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (w + 1);
                while Instant::now() < stop {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let (from, to) = ((rng % ACCOUNTS as u64) as usize, ((rng >> 20) % ACCOUNTS as u64) as usize);
                    if from == to {
                        continue;
                    }
                    // Conflicts (and reads that meet a competitor's lock still in flight) fail
                    // the transfer; a bank client retries with a new one.
                    match transfer(&client, account(from), account(to), (rng >> 40) % 10 + 1).await {
                        Ok(()) => committed += 1,
                        Err(_) => failed += 1,
                    }
                }
                (committed, failed)
            })
        })
        .collect();
    let mut checks = 0;
    while Instant::now() < stop {
        assert_eq!(total(&client, ACCOUNTS).await, ACCOUNTS as u64 * BALANCE, "total drifted mid-run");
        checks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut committed, mut failed) = (0, 0);
    for worker in futures::future::join_all(workers).await {
        let (c, f) = worker.expect("worker");
        committed += c;
        failed += f;
    }
    assert_eq!(total(&client, ACCOUNTS).await, ACCOUNTS as u64 * BALANCE, "total after the run");
    assert!(committed > 20, "only {committed} transfers committed ({failed} failed)");
    assert!(failed > 0, "{WORKERS} workers on {ACCOUNTS} accounts never conflicted in {RUN:?}: conflicts untested");
    assert!(checks > 5);
    eprintln!("bank: {committed} transfers committed, {failed} failed on conflicts, {checks} total checks");
}

fn account(i: usize) -> Vec<u8> {
    format!("acct{i:03}").into_bytes()
}

fn balance(value: Option<Vec<u8>>) -> u64 {
    std::str::from_utf8(&value.expect("every account exists")).expect("utf8").parse().expect("a number")
}

/// Moves `amount` between two accounts in one optimistic transaction (nothing if `from` has
/// too little). An error leaves the transaction rolled back or never committed.
async fn transfer(client: &TransactionClient, from: Vec<u8>, to: Vec<u8>, amount: u64) -> tikv_client::Result<()> {
    let mut txn = client.begin_optimistic().await?;
    let result = async {
        let a = balance(txn.get(from.clone()).await?);
        let b = balance(txn.get(to.clone()).await?);
        if a >= amount {
            txn.put(from, (a - amount).to_string().into_bytes()).await?;
            txn.put(to, (b + amount).to_string().into_bytes()).await?;
        }
        txn.commit().await.map(drop)
    }
    .await;
    if result.is_err() {
        let _ = txn.rollback().await;
    }
    result
}

/// The sum of all balances in one snapshot. A read that meets a lock of a transaction whose
/// outcome is still open fails (tikv-client gives up after its backoff); try again.
async fn total(client: &TransactionClient, accounts: usize) -> u64 {
    let mut last_err = None;
    for _ in 0..50 {
        let mut snap = client.begin_optimistic().await.expect("begin");
        match snap.scan(account(0)..account(accounts), 100).await {
            Ok(pairs) => {
                let pairs: Vec<_> = pairs.collect();
                snap.rollback().await.expect("rollback");
                assert_eq!(pairs.len(), accounts);
                return pairs.iter().map(|p| balance(Some(p.value().clone()))).sum();
            }
            Err(e) => last_err = Some(e),
        }
        let _ = snap.rollback().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no snapshot read of the accounts succeeded: {last_err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_delete_range_and_errors_in_kvproto_shape() {
    let cluster = start_cluster().await;
    let client = TransactionClient::new(vec![cluster.pd_addr.clone()]).await.expect("connect");
    for chunk in (0..300).collect::<Vec<_>>().chunks(50) {
        let mut txn = client.begin_optimistic().await.expect("begin");
        for &i in chunk {
            txn.put(key(i), value(i, 0)).await.expect("put");
        }
        txn.commit().await.expect("commit");
    }
    for i in (100..200).step_by(10) {
        let mut txn = client.begin_optimistic().await.expect("begin");
        txn.put(key(i), value(i, 1)).await.expect("put");
        txn.commit().await.expect("commit");
    }
    cluster.wait_for_regions(2).await;
    let put = |k: Vec<u8>| Mutation { op: MutationOp::Put, key: k, value: b"orphan".to_vec() };
    // An orphan lock inside the range to delete, and one outside it.
    for k in [key(150), key(250)] {
        let start_ts = cluster.pd.get_ts().await.expect("ts");
        let cmd = prewrite(vec![put(k.clone())], k.clone(), start_ts);
        assert!(
            matches!(cluster.native_txn(&k, cmd).await, TxnResponse::Prewrite { ref errors, .. } if errors.is_empty())
        );
    }
    let before_delete = client.current_timestamp().await.expect("tso");

    // KvDeleteRange [key(100), key(200)), region by region as a client sends it.
    let (start, end) = (key(100), key(200));
    let mut cursor = start.clone();
    while cursor < end {
        cursor = cluster
            .at_leader(&cursor, async |region, leader, mut grpc| {
                let upto =
                    if region.end_key.is_empty() { end.clone() } else { region.end_key.clone().min(end.clone()) };
                let req = kvrpcpb::DeleteRangeRequest {
                    context: Some(pb_ctx(region, leader)),
                    start_key: cursor.clone(),
                    end_key: upto.clone(),
                    notify_only: false,
                };
                let resp = grpc.kv_delete_range(req).await.expect("kv_delete_range").into_inner();
                assert!(resp.error.is_empty(), "{resp:?}");
                (resp.region_error.is_none()).then_some(upto)
            })
            .await;
    }
    // Every version is gone (a snapshot from before the delete sees nothing there), the lock
    // in the range too; keys outside it are untouched. The scan stops short of key(250): its
    // orphan lock has a 100 ms TTL, and a scan that met it late would resolve it away.
    let mut old = client.snapshot(before_delete, TransactionOptions::new_optimistic());
    let left: Vec<Vec<u8>> =
        old.scan(key(0)..key(250), 1000).await.expect("scan").map(|p| Vec::from(p.key().clone())).collect();
    assert_eq!(left, (0..100).chain(200..250).map(key).collect::<Vec<_>>());
    let scan_locks = TxnCommand::ScanLock { max_ts: Timestamp::MAX, start_key: key(0), end_key: vec![], limit: 10 };
    let locks = match cluster.native_txn(&key(250), scan_locks).await {
        TxnResponse::Locks(locks) => locks.into_iter().map(|l| l.key).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(locks, vec![key(250)], "the lock in the range went with it");

    // Region errors in errorpb shape (boundaries raw for Raw*, memcomparable for Kv*).
    let resp = cluster
        .at_leader(&key(0), async |region, leader, mut grpc| {
            let ctx = kvrpcpb::Context { region_id: 999_999, ..pb_ctx(region, leader) };
            let req = kvrpcpb::RawGetRequest { context: Some(ctx), key: key(0), cf: String::new() };
            Some(grpc.raw_get(req).await.expect("raw_get").into_inner())
        })
        .await;
    let region_error = resp.region_error.expect("a region error");
    assert_eq!(region_error.region_not_found, Some(keel_kvproto::errorpb::RegionNotFound { region_id: 999_999 }));

    let (region, resp) = cluster
        .at_leader(&key(0), async |region, leader, mut grpc| {
            let mut ctx = pb_ctx(region, leader);
            ctx.region_epoch.as_mut().expect("epoch").version -= 1;
            let req = kvrpcpb::GetRequest { context: Some(ctx), key: key(0), version: u64::MAX };
            let resp = grpc.kv_get(req).await.expect("kv_get").into_inner();
            resp.region_error.as_ref().is_some_and(|e| e.epoch_not_match.is_some()).then(|| (region.clone(), resp))
        })
        .await;
    let current = resp.region_error.and_then(|e| e.epoch_not_match).expect("epoch_not_match").current_regions;
    let mine = current.iter().find(|r| r.id == region.id).expect("the current region");
    assert_eq!(mine.end_key, encode_bytes(&region.end_key), "Kv* boundaries are memcomparable-encoded");

    for kv in [false, true] {
        let resp = cluster
            .at_leader(&key(0), async |region, leader, mut grpc| {
                let context = Some(pb_ctx(region, leader));
                let region_error = if kv {
                    let req = kvrpcpb::GetRequest { context, key: b"zzz".to_vec(), version: u64::MAX };
                    grpc.kv_get(req).await.expect("kv_get").into_inner().region_error
                } else {
                    let req = kvrpcpb::RawGetRequest { context, key: b"zzz".to_vec(), cf: String::new() };
                    grpc.raw_get(req).await.expect("raw_get").into_inner().region_error
                };
                (!moved(&region_error)).then(|| (region.clone(), region_error))
            })
            .await;
        let (region, region_error) = resp;
        let outside = region_error.and_then(|e| e.key_not_in_region).expect("key_not_in_region");
        assert_eq!((outside.key, outside.region_id), (b"zzz".to_vec(), region.id));
        let end = if kv { encode_bytes(&region.end_key) } else { region.end_key.clone() };
        assert_eq!(outside.end_key, end, "kv: {kv}");
    }

    let not_leader = cluster
        .at_leader(&key(0), async |region, leader, _| {
            let follower = region.peers.iter().find(|p| p.store_id != leader.store_id).expect("a follower");
            let req =
                kvrpcpb::RawGetRequest { context: Some(pb_ctx(region, follower)), key: key(0), cf: String::new() };
            let resp = cluster.grpc(follower.store_id).await.raw_get(req).await.expect("raw_get").into_inner();
            resp.region_error.and_then(|e| e.not_leader).map(|n| (region.id, n))
        })
        .await;
    assert_eq!(not_leader.1.region_id, not_leader.0);

    // Key errors in kvrpcpb shape. A read meets the orphan lock:
    let resp = cluster
        .at_leader(&key(250), async |region, leader, mut grpc| {
            let req = kvrpcpb::GetRequest { context: Some(pb_ctx(region, leader)), key: key(250), version: u64::MAX };
            let resp = grpc.kv_get(req).await.expect("kv_get").into_inner();
            (!moved(&resp.region_error)).then_some(resp)
        })
        .await;
    let lock = resp.error.and_then(|e| e.locked).expect("locked");
    assert_eq!((&lock.key, &lock.primary_lock), (&key(250), &key(250)));
    assert!(lock.lock_version > 0 && lock.lock_ttl > 0, "{lock:?}");

    let ts = || async { cluster.pd.get_ts().await.expect("ts").0 };
    let prewrite_one = |op: Op, k: Vec<u8>, start_version: u64, min_commit_ts: u64| {
        let cluster = &cluster;
        async move {
            cluster
                .at_leader(&k, async |region, leader, mut grpc| {
                    let req = kvrpcpb::PrewriteRequest {
                        context: Some(pb_ctx(region, leader)),
                        mutations: vec![kvrpcpb::Mutation { op: op as i32, key: k.clone(), value: b"v".to_vec() }],
                        primary_lock: k.clone(),
                        start_version,
                        lock_ttl: 3000,
                        txn_size: 1,
                        min_commit_ts,
                        ..Default::default()
                    };
                    let resp = grpc.kv_prewrite(req).await.expect("kv_prewrite").into_inner();
                    (!moved(&resp.region_error)).then_some(resp)
                })
                .await
        }
    };
    // A write below a newer commit conflicts.
    let resp = prewrite_one(Op::Put, key(260), 1, 0).await;
    let conflict = resp.errors.first().and_then(|e| e.conflict.clone()).expect("conflict");
    assert_eq!((&conflict.key, conflict.start_ts), (&key(260), 1));
    assert!(conflict.conflict_commit_ts > 1, "{conflict:?}");
    // Inserting an existing key.
    let resp = prewrite_one(Op::Insert, key(261), ts().await, 0).await;
    let exists = resp.errors.first().and_then(|e| e.already_exist.clone()).expect("already_exist");
    assert_eq!(exists.key, key(261));
    // Committing below the lock's min_commit_ts.
    let start = ts().await;
    let min_commit = start + (1000 << 18);
    assert_eq!(prewrite_one(Op::Put, key(263), start, min_commit).await.errors, vec![]);
    let resp = cluster
        .at_leader(&key(263), async |region, leader, mut grpc| {
            let req = kvrpcpb::CommitRequest {
                context: Some(pb_ctx(region, leader)),
                start_version: start,
                keys: vec![key(263)],
                commit_version: start + 1,
            };
            let resp = grpc.kv_commit(req).await.expect("kv_commit").into_inner();
            (!moved(&resp.region_error)).then_some(resp)
        })
        .await;
    let expired = resp.error.and_then(|e| e.commit_ts_expired).expect("commit_ts_expired");
    assert_eq!((expired.start_ts, expired.attempted_commit_ts, expired.min_commit_ts), (start, start + 1, min_commit));
    // The status of a transaction that left nothing behind.
    let lock_ts = ts().await;
    let resp = cluster
        .at_leader(&key(262), async |region, leader, mut grpc| {
            let now = cluster.pd.get_ts().await.expect("ts").0;
            let req = kvrpcpb::CheckTxnStatusRequest {
                context: Some(pb_ctx(region, leader)),
                primary_key: key(262),
                lock_ts,
                caller_start_ts: now,
                current_ts: now,
                rollback_if_not_exist: false,
                ..Default::default()
            };
            let resp = grpc.kv_check_txn_status(req).await.expect("kv_check_txn_status").into_inner();
            (!moved(&resp.region_error)).then_some(resp)
        })
        .await;
    let not_found = resp.error.and_then(|e| e.txn_not_found).expect("txn_not_found");
    assert_eq!((not_found.start_ts, not_found.primary_key), (lock_ts, key(262)));
}
