//! Three stores in one simulated process, wired by an in-memory transport: election,
//! replication, linearizable reads, restart from disk (with torn tails), log truncation and
//! catch-up by snapshot, membership changes. Raft is driven by the real store loop, so these
//! are the same code paths the server runs.
#![cfg(madsim)]

use keel_raftstore::cmd::{CmdBody, CmdResult, Request, RequestResult};
use keel_raftstore::{PdReporter, Store, StoreConfig, StoreHandle, Transport};
use keel_storage::{CfName, SimEngine};
use keel_types::proto::pd::RegionHeartbeat;
use keel_types::proto::store::{Context, RaftEnvelope, StoreError};
use keel_types::{Peer, PeerRole, Region, RegionEpoch, RegionError, StoreId};
use madsim::runtime::Runtime;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Decides whether the network drops a message on its way to a store (true: dropped).
type Filter = Box<dyn Fn(StoreId, &RaftEnvelope) -> bool + Send>;

#[derive(Default)]
struct Net {
    handles: Mutex<BTreeMap<StoreId, StoreHandle>>,
    down: Mutex<BTreeSet<StoreId>>,
    filter: Mutex<Option<Filter>>,
    /// Raft messages sent (hibernation handshakes and store beacons not counted).
    raft_sent: AtomicU64,
}

struct LocalTransport(Arc<Net>);

impl Transport for LocalTransport {
    fn send(&self, to: StoreId, mut msgs: Vec<RaftEnvelope>) {
        if self.0.down.lock().unwrap().contains(&to) {
            return;
        }
        if let Some(drop) = self.0.filter.lock().unwrap().as_ref() {
            msgs.retain(|env| !drop(to, env));
        }
        let raft = msgs.iter().filter(|m| m.extra.is_none()).count() as u64;
        self.0.raft_sent.fetch_add(raft, Ordering::Relaxed);
        if let Some(h) = self.0.handles.lock().unwrap().get(&to).cloned() {
            tokio::spawn(async move {
                let _ = h.raft(msgs).await;
            });
        }
    }
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

struct Cluster {
    net: Arc<Net>,
    disks: BTreeMap<StoreId, SimEngine>,
    tasks: BTreeMap<StoreId, tokio::task::JoinHandle<Result<(), String>>>,
}

/// Region 1 over the whole key space with a voter (peer 10 + s) on each of stores 1..=`stores`.
fn region(stores: u64) -> Region {
    Region {
        id: 1,
        start_key: vec![],
        end_key: vec![],
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: (1..=stores).map(|s| Peer { id: 10 + s, store_id: s, role: PeerRole::Voter }).collect(),
    }
}

impl Cluster {
    async fn new() -> Cluster {
        Cluster::with_stores(3).await
    }

    async fn with_stores(stores: u64) -> Cluster {
        let mut c = Cluster { net: Arc::default(), disks: BTreeMap::new(), tasks: BTreeMap::new() };
        for s in 1..=stores {
            c.disks.insert(s, SimEngine::new());
            c.start(s);
            let h = c.handle(s);
            assert!(h.create_region(region(stores)).await.unwrap());
        }
        c
    }

    fn start(&mut self, s: StoreId) {
        let (store, handle) = Store::load(
            StoreConfig::test_min(s),
            Arc::new(self.disks[&s].clone()),
            Arc::new(LocalTransport(self.net.clone())),
            Arc::new(NoPd),
        )
        .expect("load store");
        self.net.handles.lock().unwrap().insert(s, handle);
        self.net.down.lock().unwrap().remove(&s);
        self.tasks.insert(s, tokio::spawn(store.run(keel_types::Clock::new())));
    }

    fn crash(&mut self, s: StoreId, keep_pending: usize) {
        self.net.down.lock().unwrap().insert(s);
        self.net.handles.lock().unwrap().remove(&s);
        self.tasks.remove(&s).unwrap().abort();
        self.disks[&s].crash_keeping(keep_pending);
    }

    fn handle(&self, s: StoreId) -> StoreHandle {
        self.net.handles.lock().unwrap()[&s].clone()
    }

    async fn leader(&self) -> StoreId {
        self.leader_of(1).await
    }

    async fn leader_of(&self, region_id: u64) -> StoreId {
        for _ in 0..200 {
            let handles = self.net.handles.lock().unwrap().clone();
            for (s, h) in handles {
                if h.status().await.iter().any(|r| r.is_leader && r.region.id == region_id) {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader of region {region_id} elected within 20 s");
    }

    /// Store `s`'s replica of `region_id`, if it has one.
    async fn replica(&self, s: StoreId, region_id: u64) -> Option<keel_raftstore::RegionStatus> {
        self.handle(s).status().await.into_iter().find(|r| r.region.id == region_id)
    }

    /// A context for region 1 with the epoch store `s` currently knows.
    async fn current_ctx(&self, s: StoreId) -> Context {
        self.current_ctx_of(s, 1).await
    }

    /// A context for `region_id` with the epoch store `s` currently knows.
    async fn current_ctx_of(&self, s: StoreId, region_id: u64) -> Context {
        let epoch = self.replica(s, region_id).await.map_or(ctx().region_epoch, |r| r.region.epoch);
        Context { region_id, region_epoch: epoch, peer: None }
    }

    /// Retries on region errors until the command applies somewhere.
    async fn put(&self, key: &[u8], value: &[u8]) {
        self.put_in(1, key, value).await
    }

    /// [`Cluster::put`] through region `region_id`.
    async fn put_in(&self, region_id: u64, key: &[u8], value: &[u8]) {
        for _ in 0..100 {
            let s = self.leader_of(region_id).await;
            let body = CmdBody::Write(vec![Request::Put { cf: CfName::Raw, key: key.to_vec(), value: value.to_vec() }]);
            match self.handle(s).propose(self.current_ctx_of(s, region_id).await, body).await {
                Ok(CmdResult::Write(r)) => {
                    assert_eq!(r, vec![RequestResult::Done]);
                    return;
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(StoreError::Region(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("put failed: {e}"),
            }
        }
        panic!("put never succeeded");
    }

    async fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        for _ in 0..100 {
            let s = self.leader().await;
            match self.handle(s).read(self.current_ctx(s).await).await {
                Ok(view) => return view.snapshot.get(CfName::Raw, key).unwrap(),
                Err(StoreError::Region(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("read failed: {e}"),
            }
        }
        panic!("read never succeeded");
    }
}

fn ctx() -> Context {
    Context { region_id: 1, region_epoch: RegionEpoch { conf_ver: 1, version: 1 }, peer: None }
}

fn sim<F: std::future::Future<Output = ()>>(seed: u64, f: impl FnOnce() -> F + Send + 'static) {
    std::thread::spawn(move || Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(f()))
        .join()
        .unwrap();
}

#[test]
fn replicates_and_reads_linearizably() {
    for seed in 1..4 {
        sim(seed, || async {
            let c = Cluster::new().await;
            for i in 0..50u32 {
                c.put(format!("k{i}").as_bytes(), &i.to_be_bytes()).await;
            }
            for i in 0..50u32 {
                assert_eq!(c.get(format!("k{i}").as_bytes()).await, Some(i.to_be_bytes().to_vec()));
            }
            // Every replica applied everything.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let applied: Vec<u64> = futures_applied(&c).await;
            assert!(applied.windows(2).all(|w| w[0] == w[1]), "replicas diverge: {applied:?}");
        });
    }
}

async fn futures_applied(c: &Cluster) -> Vec<u64> {
    let mut out = vec![];
    for s in 1..=3 {
        out.push(c.handle(s).status().await[0].applied_index);
    }
    out
}

#[test]
fn stale_epoch_and_follower_requests_are_refused() {
    sim(9, || async {
        let c = Cluster::new().await;
        let leader = c.leader().await;
        let follower = (1..=3).find(|s| *s != leader).unwrap();
        let mut stale = ctx();
        stale.region_epoch.version = 0;
        let err = c.handle(leader).read(stale).await.err().unwrap();
        assert!(matches!(err, StoreError::Region(RegionError::EpochNotMatch { .. })), "{err:?}");
        let err = c.handle(follower).read(ctx()).await.err().unwrap();
        match err {
            StoreError::Region(RegionError::NotLeader { leader: Some(hint), .. }) => assert_eq!(hint.store_id, leader),
            other => panic!("expected NotLeader with a hint, got {other:?}"),
        }
        let mut missing = ctx();
        missing.region_id = 99;
        let err = c.handle(leader).read(missing).await.err().unwrap();
        assert!(matches!(err, StoreError::Region(RegionError::RegionNotFound { region_id: 99 })));
    });
}

#[test]
fn acknowledged_writes_survive_crashes_with_torn_tails() {
    for seed in 1..6 {
        sim(seed, || async {
            let mut c = Cluster::new().await;
            let mut acked = 0u32;
            for round in 0..6 {
                for _ in 0..10 {
                    c.put(format!("k{acked}").as_bytes(), b"v").await;
                    acked += 1;
                }
                // Crash the leader, keeping a varying prefix of its unsynced batches.
                let leader = c.leader().await;
                c.crash(leader, round % 3);
                tokio::time::sleep(Duration::from_millis(300)).await;
                c.start(leader);
            }
            for i in 0..acked {
                assert_eq!(c.get(format!("k{i}").as_bytes()).await, Some(b"v".to_vec()), "lost k{i}");
            }
        });
    }
}

#[test]
fn lagging_follower_catches_up_by_snapshot_after_log_truncation() {
    sim(3, || async {
        let mut c = Cluster::new().await;
        let leader = c.leader().await;
        let lagger = (1..=3).find(|s| *s != leader).unwrap();
        c.crash(lagger, 0);
        // Far more entries than the simulator's log GC threshold (64).
        for i in 0..300u32 {
            c.put(format!("k{i}").as_bytes(), &i.to_be_bytes()).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first_index = c.handle(c.leader().await).status().await[0].first_index;
        assert!(first_index > 200, "leader log should be truncated, first index {first_index}");
        c.start(lagger);
        // Wait until the lagger has applied as far as the others.
        let mut caught_up = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let applied = futures_applied(&c).await;
            if applied.iter().all(|a| *a == applied[0]) {
                caught_up = true;
                break;
            }
        }
        assert!(caught_up, "lagging follower never caught up");
        // Its data equals the leader's.
        let snap = keel_storage::Engine::snapshot(&c.disks[&lagger]);
        for i in 0..300u32 {
            assert_eq!(snap.get(CfName::Raw, format!("k{i}").as_bytes()).unwrap(), Some(i.to_be_bytes().to_vec()));
        }
    });
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[test]
fn membership_change_moves_a_replica_to_a_new_store_by_snapshot() {
    use keel_types::proto::pd::Operator;
    for seed in 1..4 {
        sim(seed, || async {
            let mut c = Cluster::new().await;
            c.disks.insert(4, SimEngine::new());
            c.start(4);
            for i in 0..150u32 {
                c.put(format!("k{i}").as_bytes(), &i.to_be_bytes()).await;
            }
            let leader = c.leader().await;
            let learner = Peer { id: 14, store_id: 4, role: PeerRole::Learner };
            c.handle(leader).operator(1, Operator::AddLearner(learner)).await;
            wait_until("the learner catches up by snapshot", || async {
                let s4 = c.handle(4).status().await;
                let lead = c.handle(c.leader().await).status().await;
                s4.first().is_some_and(|r| r.region.peers.len() == 4 && r.applied_index == lead[0].applied_index)
            })
            .await;
            let leader = c.leader().await;
            c.handle(leader).operator(1, Operator::PromoteLearner(learner)).await;
            wait_until("the learner is a voter", || async {
                c.handle(c.leader().await).status().await[0].region.peers.iter().all(|p| p.role == PeerRole::Voter)
            })
            .await;
            let leader = c.leader().await;
            let victim = (1..=3).find(|s| *s != leader).unwrap();
            let victim_peer = Peer { id: 10 + victim, store_id: victim, role: PeerRole::Voter };
            c.handle(leader).operator(1, Operator::RemovePeer(victim_peer)).await;
            wait_until("the removed replica is destroyed", || async { c.handle(victim).status().await.is_empty() })
                .await;
            let region = c.handle(c.leader().await).status().await[0].region.clone();
            assert_eq!(region.peers.len(), 3);
            assert_eq!(region.epoch.conf_ver, 4, "three membership changes");
            // Writes keep flowing and the new replica has all the data.
            for i in 150..200u32 {
                c.put(format!("k{i}").as_bytes(), &i.to_be_bytes()).await;
            }
            wait_until("store 4 has everything", || async {
                let snap = keel_storage::Engine::snapshot(&c.disks[&4]);
                (0..200u32).all(|i| {
                    snap.get(CfName::Raw, format!("k{i}").as_bytes()).unwrap() == Some(i.to_be_bytes().to_vec())
                })
            })
            .await;
            // The removed store kept nothing of the region.
            let snap = keel_storage::Engine::snapshot(&c.disks[&victim]);
            assert_eq!(snap.scan(CfName::Raw, b"", None, false, usize::MAX).unwrap().len(), 0);
        });
    }
}

/// Swarm seed 247 (repair workload), made deterministic. A region has four voters; the leader
/// removes one. The removal commits with the acknowledgements of the leader, the removed
/// replica and the survivors, but only the leader and the removed replica learn that it
/// committed (the network drops every later message from the leader to the two survivors),
/// and the removed replica applies its own removal. Then the leader's store dies. The
/// survivors have the removal in their logs but have not applied it, so they still count
/// four voters and need three votes: with the removed replica gone the region could never
/// elect a leader again. A replica that applied its own removal must keep voting (and
/// acknowledging appends) until every survivor has moved past the removal; here it also
/// restarts in between, so that state must survive on disk.
#[test]
fn a_removed_replica_keeps_the_survivors_of_its_removal_live() {
    use keel_types::proto::pd::Operator;
    use protobuf::Message as _;
    for seed in 1..4 {
        sim(seed, || async {
            let mut c = Cluster::with_stores(4).await;
            for i in 0..20u32 {
                c.put(format!("k{i}").as_bytes(), &i.to_be_bytes()).await;
            }
            wait_until("all four replicas applied everything", || async {
                let mut applied = BTreeSet::new();
                for s in 1..=4 {
                    applied.insert(c.handle(s).status().await[0].applied_index);
                }
                applied.len() == 1
            })
            .await;
            let leader = c.leader().await;
            let committed = c.handle(leader).status().await[0].applied_index;
            let others: Vec<StoreId> = (1..=4).filter(|s| *s != leader).collect();
            let (removed, survivors) = (others[0], [others[1], others[2]]);
            // The survivors get the removal entry (its append carries the old commit index)
            // but never hear that it committed.
            *c.net.filter.lock().unwrap() = Some(Box::new(move |to, env| {
                env.from_peer.store_id == leader
                    && survivors.contains(&to)
                    && raft::eraftpb::Message::parse_from_bytes(&env.message).is_ok_and(|m| m.commit > committed)
            }));
            let removed_peer = Peer { id: 10 + removed, store_id: removed, role: PeerRole::Voter };
            c.handle(leader).operator(1, Operator::RemovePeer(removed_peer)).await;
            let applied_removal = |s: StoreId| {
                let h = c.handle(s);
                async move { h.status().await.iter().all(|r| r.region.id != 1 || r.region.peer(10 + removed).is_none()) }
            };
            for _ in 0..500 {
                if applied_removal(removed).await && applied_removal(leader).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(applied_removal(leader).await && applied_removal(removed).await, "the removal never applied");
            for s in survivors {
                let status = c.handle(s).status().await;
                assert_eq!(status[0].region.epoch.conf_ver, 1, "survivor {s} must not have applied the removal");
            }
            // The removed replica's store restarts (keeping its writes: an unsynced apply may
            // be lost, but is then applied again from the log), then the leader's store dies
            // for good.
            c.crash(removed, usize::MAX);
            c.start(removed);
            let held = c.handle(removed).status().await;
            assert_eq!(held.len(), 1, "the removed replica is kept");
            assert_eq!(held[0].region.epoch.conf_ver, 2, "and restarts as removed");
            assert!(held[0].region.peer(10 + removed).is_none());
            c.crash(leader, 0);
            *c.net.filter.lock().unwrap() = None;
            let start = tokio::time::Instant::now();
            let new_leader = loop {
                let mut found = None;
                for s in survivors {
                    if c.handle(s).status().await.iter().any(|r| r.region.id == 1 && r.is_leader) {
                        found = Some(s);
                    }
                }
                if let Some(s) = found {
                    break s;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no leader among the survivors {survivors:?} 20 s after the leader died"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            // The new leader committed the removal: the region is the three voters left, and
            // the two live ones are a quorum of it.
            wait_until("the survivors apply the removal", || async {
                let mut done = true;
                for s in survivors {
                    done &= c.handle(s).status().await[0].region.epoch.conf_ver == 2;
                }
                done
            })
            .await;
            let region = c.handle(new_leader).status().await[0].region.clone();
            assert_eq!(region.peers.len(), 3);
            assert!(region.peer(10 + removed).is_none());
            c.put(b"after", b"v").await;
            assert_eq!(c.get(b"after").await, Some(b"v".to_vec()));
            // Nobody can tell what the dead store applied, so the removed replica stays...
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(c.handle(removed).status().await.len(), 1, "removed replica destroyed too early");
            // ...until it comes back: then every voter is past the removal, and it goes.
            c.start(leader);
            wait_until("the removed replica is destroyed", || async { c.handle(removed).status().await.is_empty() })
                .await;
        });
    }
}

#[test]
fn an_idle_region_sleeps_wakes_for_work_and_elects_when_its_leader_store_dies() {
    for seed in 1..4 {
        sim(seed, || async {
            let mut c = Cluster::new().await;
            for i in 0..20u32 {
                c.put(format!("k{i}").as_bytes(), &i.to_be_bytes()).await;
            }
            let all_idle = |c: &Cluster| {
                let handles: Vec<StoreHandle> = c.net.handles.lock().unwrap().values().cloned().collect();
                async move {
                    let mut idle = 0;
                    for h in &handles {
                        idle += h.status().await.iter().filter(|r| r.idle).count();
                    }
                    idle == handles.len()
                }
            };
            wait_until("every replica sleeps", || all_idle(&c)).await;
            // Asleep, the region sends no raft message at all.
            let before = c.net.raft_sent.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(c.net.raft_sent.load(Ordering::Relaxed), before, "a sleeping region sent raft messages");
            // A write wakes it, and it falls asleep again afterwards.
            c.put(b"wake", b"up").await;
            assert_eq!(c.get(b"wake").await, Some(b"up".to_vec()));
            assert!(c.net.raft_sent.load(Ordering::Relaxed) > before);
            wait_until("every replica sleeps again", || all_idle(&c)).await;
            // The leader's store dies while all sleep: the followers notice its silence,
            // wake, elect one of themselves, and serve everything acknowledged.
            let old = c.leader().await;
            c.crash(old, 0);
            let start = tokio::time::Instant::now();
            let new = c.leader().await;
            assert_ne!(new, old);
            assert!(start.elapsed() < Duration::from_secs(5), "election took {:?}", start.elapsed());
            for i in 0..20u32 {
                assert_eq!(c.get(format!("k{i}").as_bytes()).await, Some(i.to_be_bytes().to_vec()));
            }
            c.put(b"after", b"failover").await;
        });
    }
}

/// A leader's write reaches the other replicas, but the leader is cut off before it hears
/// that the write committed. The others elect a leader, which commits and applies the write
/// and then removes the old leader's replica; that replica is destroyed (PD says it is stale)
/// without ever applying the write. It can never tell the client the write applied, but it
/// must not say it did not: it answered a region error (RegionNotFound), clients took that
/// for "did not apply" and retried, and a CAS that had applied was reported failed.
#[test]
fn a_write_its_destroyed_replica_never_applied_is_answered_outcome_unknown() {
    use keel_types::proto::pd::Operator;
    use protobuf::Message as _;
    use raft::eraftpb::MessageType;
    for seed in 1..4 {
        sim(seed, move || async move {
            let c = Cluster::new().await;
            c.put(b"before", b"v").await;
            let old = c.leader().await;
            let survivors: Vec<StoreId> = (1..=3).filter(|s| *s != old).collect();
            // The leader hears no append acknowledgement: its write reaches every log but
            // never commits there (heartbeat answers still keep it leading).
            *c.net.filter.lock().unwrap() = Some(Box::new(move |to, env| {
                to == old
                    && raft::eraftpb::Message::parse_from_bytes(&env.message)
                        .is_ok_and(|m| m.get_msg_type() == MessageType::MsgAppendResponse)
            }));
            let (h, ctx) = (c.handle(old), c.current_ctx(old).await);
            let body = CmdBody::Write(vec![Request::Put { cf: CfName::Raw, key: b"k".to_vec(), value: b"v".to_vec() }]);
            let answer = tokio::spawn(async move { h.propose(ctx, body).await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Then it is cut off; the others elect a leader, which commits the write.
            *c.net.filter.lock().unwrap() = Some(Box::new(move |to, env| to == old || env.from_peer.store_id == old));
            let leads = |s: StoreId| {
                let h = c.handle(s);
                async move { h.status().await[0].is_leader }
            };
            wait_until("a survivor leads and the old leader stepped down", || async {
                (leads(survivors[0]).await || leads(survivors[1]).await) && !leads(old).await
            })
            .await;
            let new = if leads(survivors[0]).await { survivors[0] } else { survivors[1] };
            assert_eq!(c.get(b"k").await, Some(b"v".to_vec()), "the write did not apply (seed {seed})");
            assert!(c.handle(old).status().await[0].applied_index < c.handle(new).status().await[0].applied_index);
            // The new leader removes the old leader's replica, which PD then finds stale.
            let removed = Peer { id: 10 + old, store_id: old, role: PeerRole::Voter };
            c.handle(new).operator(1, Operator::RemovePeer(removed)).await;
            wait_until("the survivors apply the removal", || async {
                let mut done = true;
                for s in &survivors {
                    done &= c.handle(*s).status().await[0].region.epoch.conf_ver == 2;
                }
                done
            })
            .await;
            c.handle(old).destroy_stale_peer(1, removed.id, 2).await;
            let answer = tokio::time::timeout(Duration::from_secs(5), answer)
                .await
                .expect("the write was not answered when its replica was destroyed")
                .unwrap();
            assert!(c.handle(old).status().await.is_empty(), "the old leader's replica was not destroyed");
            assert!(
                matches!(answer, Err(StoreError::OutcomeUnknown(_))),
                "a write that applied was answered {answer:?} by its destroyed replica"
            );
        });
    }
}

/// Three stores with region 1 = [.., "m") and region 2 = ["m", ..) (split from it), keys
/// k00..k19 in region 1 and m00..m19 in region 2.
async fn split_cluster() -> Cluster {
    use keel_raftstore::cmd::AdminRequest;
    let c = Cluster::new().await;
    for i in 0..20 {
        c.put(format!("k{i:02}").as_bytes(), b"left").await;
        c.put(format!("m{i:02}").as_bytes(), b"right").await;
    }
    let split = AdminRequest::Split { split_key: b"m".to_vec(), new_region_id: 2, new_peer_ids: vec![21, 22, 23] };
    let s = c.leader().await;
    let done = c.handle(s).propose(c.current_ctx(s).await, CmdBody::Admin(split)).await;
    assert!(matches!(done, Ok(CmdResult::Split(_))), "{done:?}");
    wait_until("every store has both halves", || async {
        let mut all = true;
        for s in 1..=3 {
            all &= c.replica(s, 2).await.is_some() && c.replica(s, 1).await.is_some_and(|r| r.region.end_key == b"m");
        }
        all
    })
    .await;
    c.put_in(2, b"m99", b"right").await;
    c
}

/// Asks region 2's leader to merge it into region 1 until it starts (PD repeats a step the
/// same way until the region shows it done).
async fn start_merge(c: &Cluster) {
    use keel_types::proto::pd::Operator;
    wait_until("the merge is prepared", || async {
        let handles = c.net.handles.lock().unwrap().clone();
        for h in handles.into_values() {
            let status = h.status().await;
            let Some(src) = status.iter().find(|r| r.region.id == 2) else { return true };
            if src.region.epoch.conf_ver > 1 {
                return true;
            }
            if src.is_leader {
                let target = status.iter().find(|r| r.region.id == 1).expect("target replica").region.clone();
                h.operator(2, Operator::Merge { target }).await;
            }
        }
        false
    })
    .await;
}

/// Waits until every live store holds one region covering everything, then checks its data.
async fn assert_merged(c: &Cluster, stores: &[StoreId]) {
    wait_until("every store merged region 2 into region 1", || async {
        let mut all = true;
        for &s in stores {
            let one = c.replica(s, 1).await;
            all &= c.replica(s, 2).await.is_none()
                && one.is_some_and(|r| r.region.start_key.is_empty() && r.region.end_key.is_empty());
        }
        all
    })
    .await;
    for i in 0..20 {
        assert_eq!(c.get(format!("k{i:02}").as_bytes()).await, Some(b"left".to_vec()));
        assert_eq!(c.get(format!("m{i:02}").as_bytes()).await, Some(b"right".to_vec()));
    }
    // The merged region takes writes on the source's old range.
    c.put(b"m50", b"after").await;
    assert_eq!(c.get(b"m50").await, Some(b"after".to_vec()));
    let v = c.replica(c.leader().await, 1).await.unwrap().region.epoch.version;
    assert!(v >= 4, "split (2), prepare (3 on the source), commit (4): got {v}");
}

#[test]
fn merge_absorbs_the_source_on_every_store() {
    for seed in 1..4 {
        sim(seed, || async {
            let c = split_cluster().await;
            start_merge(&c).await;
            assert_merged(&c, &[1, 2, 3]).await;
            // Every store keeps the source's data under the target, and a tombstone.
            for s in 1..=3u64 {
                let snap = keel_storage::Engine::snapshot(&c.disks[&s]);
                assert_eq!(snap.get(CfName::Raw, b"m19").unwrap(), Some(b"right".to_vec()), "store {s}");
            }
        });
    }
}

#[test]
fn merge_completes_when_stores_crash_at_any_point() {
    for seed in 1..9 {
        sim(seed, move || async move {
            let mut c = split_cluster().await;
            // Crash one store (a follower of region 2 or its leader) somewhere between the
            // PrepareMerge and well after the commit, losing a varying unsynced tail.
            let victim = 1 + seed % 3;
            start_merge(&c).await;
            tokio::time::sleep(Duration::from_millis(seed * 40)).await;
            c.crash(victim, (seed % 3) as usize);
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.start(victim);
            assert_merged(&c, &[1, 2, 3]).await;
        });
    }
}

#[test]
fn merge_survives_a_crash_of_every_store_after_prepare() {
    for seed in 1..4 {
        sim(seed, move || async move {
            let mut c = split_cluster().await;
            start_merge(&c).await;
            for s in 1..=3 {
                c.crash(s, seed as usize);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            for s in 1..=3 {
                c.start(s);
            }
            assert_merged(&c, &[1, 2, 3]).await;
        });
    }
}

#[test]
fn a_merge_that_cannot_commit_rolls_back_and_the_source_serves_again() {
    sim(5, || async {
        let mut c = split_cluster().await;
        // A source follower down from the start never holds the PrepareMerge, so the commit
        // is never proposed: the source fences the target and rolls back.
        let leader = c.leader_of(2).await;
        let down = (1..=3).find(|s| *s != leader).unwrap();
        c.crash(down, 0);
        let before = c.replica(leader, 1).await.unwrap().region.epoch.version;
        start_merge(&c).await;
        let err = c
            .handle(c.leader_of(2).await)
            .propose(c.current_ctx_of(c.leader_of(2).await, 2).await, CmdBody::Write(vec![]))
            .await;
        assert!(matches!(err, Err(StoreError::Region(RegionError::ServerIsBusy { .. }))), "frozen: {err:?}");
        wait_until("the merge rolls back", || async {
            let s = c.leader_of(2).await;
            let src = c.replica(s, 2).await.unwrap().region;
            src.epoch.version == 4 && c.replica(s, 1).await.unwrap().region.end_key == b"m"
        })
        .await;
        let s = c.leader_of(2).await;
        assert_eq!(c.replica(s, 1).await.unwrap().region.epoch.version, before + 1, "fenced");
        c.put_in(2, b"m60", b"again").await;
        c.start(down);
        wait_until("the restarted store rolled back too", || async {
            c.replica(down, 2).await.is_some_and(|r| r.region.epoch.version == 4 && r.applied_index >= 1)
        })
        .await;
    });
}
