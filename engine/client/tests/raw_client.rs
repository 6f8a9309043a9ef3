//! RawClient against a real PD and three scripted fake stores (see `common`) on loopback
//! (tokio): leader hints, splits, timeouts, deadlines and what each error says about the
//! outcome.
#![cfg(not(madsim))]

mod common;

use common::{handle, Fake, Fault, SharedFake};

use keel_client::{ClientError, PdClient, RawClient, RawClientConfig};
use keel_pd::{run_pd, PdConfig};
use keel_storage::SimEngine;
use keel_types::proto::pd::Store;
use keel_types::proto::store::{StoreError, StoreRequest};
use keel_types::{Clock, Peer, Region, RegionEpoch, RegionError, StoreId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(fut)
}

struct Cluster {
    fake: SharedFake,
    pd: PdClient,
    pd_addr: String,
    /// Store id → the task serving it.
    servers: BTreeMap<StoreId, JoinHandle<()>>,
    /// The bootstrap region.
    region: Region,
}

impl Cluster {
    /// A PD on loopback and three fake stores registered with it, so the cluster bootstraps
    /// one region with a peer on each store. The leader is the region's second peer, which
    /// PD does not know (no heartbeat): the client's first guess (the first voter) is wrong.
    async fn start() -> Cluster {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pd_addr = listener.local_addr().unwrap().to_string();
        let config = PdConfig::new(pd_addr.clone());
        tokio::spawn(async move {
            let _ = run_pd(config, Arc::new(SimEngine::new()), Clock::new(), listener).await;
        });
        let pd = PdClient::new(vec![pd_addr.clone()]);
        let fake = SharedFake::default();
        let mut servers = BTreeMap::new();
        for _ in 0..3 {
            let id = pd.alloc_id().await.unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            let shared = fake.clone();
            let handler = move |req: StoreRequest| handle(shared.clone(), id, req);
            servers.insert(id, tokio::spawn(keel_rpc::serve(listener, handler)));
            pd.put_store(Store { id, address, ..Default::default() }).await.unwrap();
        }
        let region = pd.get_bootstrap_region().await.unwrap().expect("bootstrapped");
        fake.lock().unwrap().regions = vec![(region.clone(), region.peers[1])];
        Cluster { fake, pd, pd_addr, servers, region }
    }

    /// Splits the bootstrap region at `key` on the stores only (PD is not told, so it keeps
    /// serving the unsplit region until [`Cluster::report_split`]). Returns the halves.
    async fn split(&self, key: &[u8]) -> (Region, Region) {
        let ids = self.pd.ask_split(self.region.clone()).await.unwrap();
        let epoch = RegionEpoch { version: self.region.epoch.version + 1, ..self.region.epoch };
        let left = Region { end_key: key.to_vec(), epoch, ..self.region.clone() };
        let right = Region {
            id: ids.new_region_id,
            start_key: key.to_vec(),
            end_key: Vec::new(),
            epoch,
            peers: self.region.peers.iter().zip(&ids.new_peer_ids).map(|(p, &id)| Peer { id, ..*p }).collect(),
        };
        let leader_store = self.region.peers[1].store_id;
        let right_leader = *right.peer_on_store(leader_store).unwrap();
        self.fake.lock().unwrap().regions = vec![(left.clone(), self.region.peers[1]), (right.clone(), right_leader)];
        (left, right)
    }

    async fn report_split(&self, left: Region, right: Region) {
        self.pd.report_split(left, right).await.unwrap();
    }

    fn client(&self, config: RawClientConfig) -> RawClient {
        RawClient::with_pd_and_config(self.pd.clone(), config)
    }

    fn fake(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.fake.lock().unwrap()
    }
}

fn quick() -> RawClientConfig {
    RawClientConfig {
        deadline: Duration::from_millis(1500),
        rpc_timeout: Duration::from_millis(200),
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        ..RawClientConfig::default()
    }
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[test]
fn not_leader_hint_redirects_once_and_every_operation_works() {
    block_on(async {
        let cluster = Cluster::start().await;
        let client = RawClient::connect(vec![cluster.pd_addr.clone()]).await.unwrap();
        client.put(b"k1".to_vec(), b"v1".to_vec()).await.unwrap();
        assert_eq!(cluster.fake().count("put", "not_leader"), 1, "first guess was a follower");
        let leader = cluster.region.peers[1];
        assert_eq!(client.region_cache().cached_by_key(b"k1").unwrap().leader, Some(leader));

        assert_eq!(client.get(b"k1".to_vec()).await.unwrap(), Some(b"v1".to_vec()));
        assert_eq!(client.get(b"nope".to_vec()).await.unwrap(), None);
        client.batch_put(vec![kv("k2", "v2"), kv("k3", "v3"), kv("k2", "v2b")]).await.unwrap();
        assert_eq!(
            client.batch_get(vec![b"k3".to_vec(), b"k2".to_vec(), b"k9".to_vec(), b"k3".to_vec()]).await.unwrap(),
            vec![kv("k2", "v2b"), kv("k3", "v3")],
            "found pairs in key order, duplicates once, last put wins"
        );
        assert_eq!(
            client.compare_and_swap(b"k1".to_vec(), None, b"x".to_vec()).await.unwrap(),
            (Some(b"v1".to_vec()), false)
        );
        assert_eq!(
            client.compare_and_swap(b"k1".to_vec(), Some(b"v1".to_vec()), b"x".to_vec()).await.unwrap(),
            (Some(b"v1".to_vec()), true)
        );
        assert_eq!(client.compare_and_swap(b"new".to_vec(), None, b"n".to_vec()).await.unwrap(), (None, true));
        client.delete(b"new".to_vec()).await.unwrap();
        assert_eq!(
            client.scan(b"k".to_vec(), b"l".to_vec(), 10).await.unwrap(),
            vec![kv("k1", "x"), kv("k2", "v2b"), kv("k3", "v3")]
        );
        assert_eq!(
            client.scan_reverse(b"".to_vec(), b"k3".to_vec(), 10).await.unwrap(),
            vec![kv("k2", "v2b"), kv("k1", "x")]
        );
        client.batch_delete(vec![b"k1".to_vec(), b"k2".to_vec()]).await.unwrap();
        assert_eq!(client.scan(Vec::new(), Vec::new(), 10).await.unwrap(), vec![kv("k3", "v3")]);
        client.delete_range(Vec::new(), Vec::new()).await.unwrap();
        assert_eq!(client.scan(Vec::new(), Vec::new(), 10).await.unwrap(), vec![]);
        assert_eq!(cluster.fake().answers("not_leader"), 1, "the hint was remembered");

        // Clones share the cache.
        let clone = client.clone();
        clone.put(b"k4".to_vec(), b"v4".to_vec()).await.unwrap();
        assert_eq!(cluster.fake().answers("not_leader"), 1);
    });
}

#[test]
fn epoch_not_match_after_a_split_refreshes_and_operations_span_both_regions() {
    block_on(async {
        let cluster = Cluster::start().await;
        let client = cluster.client(quick());
        client.put(b"a".to_vec(), b"1".to_vec()).await.unwrap();
        assert_eq!(client.region_cache().region_count(), 1);

        let (left, right) = cluster.split(b"m").await;
        // The cached region is stale: the store answers EpochNotMatch with both halves.
        client.batch_put(vec![kv("b", "2"), kv("n", "3"), kv("z", "4"), kv("m", "5")]).await.unwrap();
        assert_eq!(cluster.fake().answers("epoch_not_match"), 1);
        let cached: Vec<Region> = client.region_cache().regions().into_iter().map(|c| c.region).collect();
        assert_eq!(cached, vec![left.clone(), right.clone()]);
        // Each half got exactly the keys inside it.
        assert_eq!(cluster.fake().answers("key_not_in_region"), 0);
        assert_eq!(cluster.fake().count("batch_put", "ok"), 2);

        let all = vec![kv("a", "1"), kv("b", "2"), kv("m", "5"), kv("n", "3"), kv("z", "4")];
        assert_eq!(client.scan(Vec::new(), Vec::new(), 100).await.unwrap(), all);
        assert_eq!(
            client.scan(b"b".to_vec(), Vec::new(), 3).await.unwrap(),
            all[1..4].to_vec(),
            "limit across regions"
        );
        assert_eq!(client.scan(b"c".to_vec(), b"n".to_vec(), 10).await.unwrap(), vec![kv("m", "5")]);
        assert_eq!(client.scan(Vec::new(), b"m".to_vec(), 10).await.unwrap(), all[..2].to_vec(), "ends at the split");
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(client.scan_reverse(Vec::new(), Vec::new(), 100).await.unwrap(), reversed);
        assert_eq!(client.scan_reverse(Vec::new(), Vec::new(), 3).await.unwrap(), reversed[..3].to_vec());
        assert_eq!(
            client.scan_reverse(b"b".to_vec(), b"n".to_vec(), 10).await.unwrap(),
            vec![kv("m", "5"), kv("b", "2")]
        );
        assert_eq!(client.scan_reverse(Vec::new(), b"m".to_vec(), 10).await.unwrap(), vec![kv("b", "2"), kv("a", "1")]);
        assert_eq!(
            client.batch_get(vec![b"z".to_vec(), b"a".to_vec(), b"q".to_vec()]).await.unwrap(),
            vec![kv("a", "1"), kv("z", "4")]
        );

        // The right half drops out of the cache while PD still serves the unsplit region:
        // the lookup routes by PD's stale answer (evicting the fresh left half), follows the
        // leader hint and learns both halves again from the store.
        client.region_cache().invalidate_region(right.id);
        let stale_answers = cluster.fake().answers("epoch_not_match");
        assert_eq!(client.get(b"z".to_vec()).await.unwrap(), Some(b"4".to_vec()));
        assert_eq!(cluster.fake().answers("epoch_not_match"), stale_answers + 1);
        assert_eq!(client.region_cache().region_count(), 2);

        // A client whose PD still serves the unsplit region finds its way too.
        let fresh = cluster.client(quick());
        assert_eq!(fresh.get(b"z".to_vec()).await.unwrap(), Some(b"4".to_vec()));
        assert_eq!(fresh.scan_reverse(Vec::new(), Vec::new(), 2).await.unwrap(), reversed[..2].to_vec());

        // Once PD knows the split, a new client routes both halves from PD, reverse too.
        cluster.report_split(left, right).await;
        let before = cluster.fake().answers("epoch_not_match");
        let routed = cluster.client(quick());
        assert_eq!(routed.scan_reverse(Vec::new(), Vec::new(), 100).await.unwrap(), reversed);
        assert_eq!(routed.scan(Vec::new(), Vec::new(), 100).await.unwrap(), all);
        assert_eq!(cluster.fake().answers("epoch_not_match"), before, "routing from PD is current");

        client.batch_delete(vec![b"a".to_vec(), b"z".to_vec()]).await.unwrap();
        client.delete_range(b"b".to_vec(), b"n\x00".to_vec()).await.unwrap();
        assert_eq!(client.scan(Vec::new(), Vec::new(), 100).await.unwrap(), vec![]);
        assert_eq!(cluster.fake().answers("key_not_in_region"), 0);
    });
}

#[test]
fn cas_timeout_is_unknown_and_never_retried() {
    block_on(async {
        let cluster = Cluster::start().await;
        let client = cluster.client(quick());
        client.put(b"reg".to_vec(), b"0".to_vec()).await.unwrap();
        // The store applies the swap but answers too late.
        cluster.fake().script("cas", [Fault::Hang(Duration::from_millis(600))]);
        let err = client.compare_and_swap(b"reg".to_vec(), Some(b"0".to_vec()), b"1".to_vec()).await.unwrap_err();
        assert!(err.outcome_unknown(), "{err}");
        assert!(matches!(err, ClientError::OutcomeUnknown { op: "compare_and_swap", attempts: 1, .. }), "{err:?}");
        assert_eq!(cluster.fake().log.iter().filter(|(_, k, _)| *k == "cas").count(), 1, "not retried");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(client.get(b"reg".to_vec()).await.unwrap(), Some(b"1".to_vec()), "it had applied");

        // The store itself losing track of a CAS is unknown too.
        cluster.fake().script("cas", [Fault::Error(StoreError::OutcomeUnknown("stopping".into()))]);
        let err = client.compare_and_swap(b"reg".to_vec(), Some(b"1".to_vec()), b"2".to_vec()).await.unwrap_err();
        assert!(err.outcome_unknown(), "{err}");

        // Definite refusals before the swap are retried, and the CAS then succeeds.
        cluster.fake().script(
            "cas",
            [
                Fault::Error(RegionError::StaleCommand.into()),
                Fault::Error(RegionError::ServerIsBusy { reason: "test".into() }.into()),
                Fault::Error(StoreError::Unavailable("disk".into())),
            ],
        );
        assert_eq!(
            client.compare_and_swap(b"reg".to_vec(), Some(b"1".to_vec()), b"3".to_vec()).await.unwrap(),
            (Some(b"1".to_vec()), true)
        );
    });
}

#[test]
fn writes_report_unknown_outcomes_by_default_and_retry_only_when_configured() {
    block_on(async {
        let cluster = Cluster::start().await;
        let client = cluster.client(RawClientConfig { retry_writes_after_unknown: true, ..quick() });
        client.put(b"w".to_vec(), b"0".to_vec()).await.unwrap();
        cluster.fake().script("put", [Fault::Hang(Duration::from_millis(400))]);
        client.put(b"w".to_vec(), b"1".to_vec()).await.unwrap();
        assert!(cluster.fake().count("put", "hang") == 1 && cluster.fake().count("put", "ok") >= 2);
        // Reads retry as well.
        cluster.fake().script("get", [Fault::Hang(Duration::from_millis(400))]);
        assert_eq!(client.get(b"w".to_vec()).await.unwrap(), Some(b"1".to_vec()));

        let strict = cluster.client(quick());
        strict.get(b"w".to_vec()).await.unwrap();
        cluster.fake().script("delete", [Fault::Hang(Duration::from_millis(400))]);
        let err = strict.delete(b"w".to_vec()).await.unwrap_err();
        assert!(matches!(err, ClientError::OutcomeUnknown { op: "delete", attempts: 1, .. }), "{err:?}");
    });
}

#[test]
fn deadline_errors_say_whether_any_attempt_may_have_applied() {
    block_on(async {
        let cluster = Cluster::start().await;
        let config = RawClientConfig { deadline: Duration::from_millis(400), ..quick() };
        let client = cluster.client(config);
        client.put(b"k".to_vec(), b"0".to_vec()).await.unwrap();

        // Every attempt refused: certainly not applied.
        let unavailable = Fault::Error(StoreError::Unavailable("disk".into()));
        cluster.fake().script("put", vec![unavailable.clone(); 10_000]);
        let err = client.put(b"k".to_vec(), b"1".to_vec()).await.unwrap_err();
        assert!(matches!(err, ClientError::Failed { op: "put", .. }), "{err:?}");
        assert!(!err.outcome_unknown());
        let ClientError::Failed { attempts, .. } = err else { unreachable!() };
        assert!(attempts > 2, "retried until the deadline: {attempts}");
        cluster.fake().faults.clear();

        // One unknown attempt, then refusals until the deadline: unknown.
        let mut faults = vec![Fault::Error(StoreError::OutcomeUnknown("stopping".into()))];
        faults.extend(vec![unavailable; 10_000]);
        cluster.fake().script("put", faults);
        let err = client.put(b"k".to_vec(), b"2".to_vec()).await.unwrap_err();
        assert!(err.outcome_unknown(), "{err:?}");
        cluster.fake().faults.clear();

        // A multi-region batch that applied in one region and then failed: unknown.
        cluster.split(b"m").await;
        client.get(b"a".to_vec()).await.unwrap();
        client.get(b"z".to_vec()).await.unwrap();
        cluster.fake().script("batch_delete", [Fault::Hang(Duration::ZERO)]);
        cluster.fake().script("batch_delete", vec![Fault::Error(StoreError::Unavailable("disk".into())); 10_000]);
        let err = client.batch_delete(vec![b"a".to_vec(), b"z".to_vec()]).await.unwrap_err();
        assert!(err.outcome_unknown(), "{err:?}");
        cluster.fake().faults.clear();

        // Server-side refusals of the arguments are Invalid, not retried.
        cluster
            .fake()
            .script("get", [Fault::Error(StoreError::Invalid(keel_types::error::InvalidArgument("no".into())))]);
        assert!(client.get(b"k".to_vec()).await.unwrap_err().is_invalid());
    });
}

#[test]
fn an_unreachable_leader_is_a_definite_failure() {
    block_on(async {
        let cluster = Cluster::start().await;
        let leader_store = cluster.region.peers[1].store_id;
        cluster.servers[&leader_store].abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let client = cluster.client(RawClientConfig { deadline: Duration::from_millis(500), ..quick() });
        let err = client.put(b"k".to_vec(), b"v".to_vec()).await.unwrap_err();
        assert!(matches!(err, ClientError::Failed { .. }), "{err:?}");
        let ClientError::Failed { attempts, .. } = err else { unreachable!() };
        assert!(attempts > 2, "kept trying the peers: {attempts}");
        // Followers kept redirecting to the dead leader; nothing applied.
        assert!(cluster.fake().answers("not_leader") >= 2);
        assert!(cluster.fake().data.is_empty());
    });
}
