//! PD's schedulers against a hand-driven model cluster: stores heartbeat (or die), region
//! leaders heartbeat, and every operator step PD answers is applied to the model the way
//! the raftstore would (peers, epoch, leader), then reported in the next heartbeat.
//! Time moves only by skewing PD's clock. Pure state-machine tests: no runtime.

use keel_pd::{OperatorKind, Pd, PdConfig, ScheduleConfig};
use keel_storage::SimEngine;
use keel_types::proto::pd::{
    ManualOperator, Operator, PdError, PdRequest, PdResponse, RegionHeartbeat, Store, StoreState, StoreStats,
};
use keel_types::{Clock, Peer, PeerRole, Region, RegionEpoch, StoreId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Heartbeat period of the model (one round).
const ROUND_MS: u64 = 1000;
/// Rounds a new learner stays pending (catching up from a snapshot).
const CATCH_UP_ROUNDS: u32 = 2;

struct ModelStore {
    alive: bool,
    /// When it died (PD clock ms), for the leader's down-peer report.
    died_ms: u64,
}

struct ModelRegion {
    region: Region,
    leader: u64,
    term: u64,
    /// Learners still catching up: peer id → rounds left.
    pending: BTreeMap<u64, u32>,
    /// Every step applied to this region, in order.
    applied: Vec<Operator>,
}

struct Model {
    clock: Clock,
    pd: Pd,
    stores: BTreeMap<StoreId, ModelStore>,
    regions: BTreeMap<u64, ModelRegion>,
    /// Regions whose steps the model ignores (a stuck raftstore).
    stuck: BTreeSet<u64>,
    /// Largest number of operators seen in flight after any heartbeat.
    max_in_flight: usize,
    /// Largest number of learners seen on one store at the start of a round.
    max_learners: usize,
}

fn labels(spec: &str) -> Vec<(String, String)> {
    spec.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            (k.to_string(), v.to_string())
        })
        .collect()
}

impl Model {
    /// A PD with `config` and one store per label spec (e.g. "zone=a,host=h1"); bootstraps
    /// on the first three stores.
    fn new(mut config: PdConfig, store_labels: &[&str]) -> Model {
        // The model applies membership and leader steps; merges have their own tests.
        config.schedule.merge_checker = false;
        let clock = Clock::new();
        let pd = Pd::open(config, Arc::new(SimEngine::new()), clock.clone()).expect("open");
        let mut m = Model {
            clock,
            pd,
            stores: BTreeMap::new(),
            regions: BTreeMap::new(),
            stuck: BTreeSet::new(),
            max_in_flight: 0,
            max_learners: 0,
        };
        for spec in store_labels {
            m.add_store(spec);
        }
        let region = match m.call(PdRequest::GetBootstrapRegion) {
            PdResponse::BootstrapRegion(Some(r)) => r,
            other => panic!("not bootstrapped: {other:?}"),
        };
        let leader = region.peers[0].id;
        m.regions
            .insert(region.id, ModelRegion { region, leader, term: 1, pending: BTreeMap::new(), applied: Vec::new() });
        m
    }

    fn call(&mut self, req: PdRequest) -> PdResponse {
        self.pd.handle(req.clone()).unwrap_or_else(|e| panic!("{req:?} failed: {e}"))
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn add_store(&mut self, spec: &str) -> StoreId {
        let id = match self.call(PdRequest::AllocId { count: 1 }) {
            PdResponse::Ids { first, .. } => first,
            other => panic!("{other:?}"),
        };
        let store = Store { id, address: format!("10.0.1.{id}:20160"), labels: labels(spec), ..Default::default() };
        self.call(PdRequest::PutStore(store));
        self.stores.insert(id, ModelStore { alive: true, died_ms: 0 });
        self.call(PdRequest::StoreHeartbeat(StoreStats { store_id: id, ..Default::default() }));
        id
    }

    fn store_ids(&self) -> Vec<StoreId> {
        self.stores.keys().copied().collect()
    }

    fn kill(&mut self, store: StoreId) {
        let now = self.now_ms();
        let s = self.stores.get_mut(&store).unwrap();
        s.alive = false;
        s.died_ms = now;
    }

    /// Runs rounds until PD considers `store` down.
    fn wait_down(&mut self, store: StoreId) {
        for _ in 0..30 {
            if self.pd.store_is_down(store) {
                return;
            }
            self.round();
        }
        panic!("store {store} never went down");
    }

    /// Moves time on with only store heartbeats (no region reports, so no operators)
    /// until PD considers `store` down.
    fn store_rounds_until_down(&mut self, store: StoreId) {
        while !self.pd.store_is_down(store) {
            self.clock.advance_ms(ROUND_MS);
            for s in self.store_ids() {
                if self.alive(s) {
                    self.call(PdRequest::StoreHeartbeat(StoreStats { store_id: s, ..Default::default() }));
                }
            }
        }
    }

    /// Learners (added, not yet promoted) per store.
    fn learners(&self) -> BTreeMap<StoreId, usize> {
        let mut learners: BTreeMap<StoreId, usize> = BTreeMap::new();
        for r in self.regions.values() {
            for p in r.region.peers.iter().filter(|p| p.role == PeerRole::Learner) {
                *learners.entry(p.store_id).or_default() += 1;
            }
        }
        learners
    }

    fn set_state(&mut self, store: StoreId, state: StoreState) {
        let mut s = match self.call(PdRequest::GetStore(store)) {
            PdResponse::Store(Some(s)) => s,
            other => panic!("{other:?}"),
        };
        s.state = state;
        self.call(PdRequest::PutStore(s));
    }

    fn store_state(&mut self, store: StoreId) -> StoreState {
        match self.call(PdRequest::GetStore(store)) {
            PdResponse::Store(Some(s)) => s.state,
            other => panic!("{other:?}"),
        }
    }

    /// Splits the model's regions until there are `n`, each split reported to PD; every
    /// half keeps its leader on the same store.
    fn split_into(&mut self, n: usize) {
        let mut next_key = 0u32;
        while self.regions.len() < n {
            let id = *self.regions.keys().next_back().unwrap();
            let old = self.regions.get(&id).unwrap();
            let region = old.region.clone();
            let (new_region_id, new_peer_ids) = match self.call(PdRequest::AskSplit { region: region.clone() }) {
                PdResponse::SplitIds { new_region_id, new_peer_ids } => (new_region_id, new_peer_ids),
                other => panic!("{other:?}"),
            };
            next_key += 1;
            let key = format!("k{next_key:06}").into_bytes();
            assert!(region.contains(&key));
            let epoch = RegionEpoch { version: region.epoch.version + 1, ..region.epoch };
            let left = Region { end_key: key.clone(), epoch, ..region.clone() };
            let right = Region {
                id: new_region_id,
                start_key: key,
                end_key: region.end_key.clone(),
                epoch,
                peers: region.peers.iter().zip(new_peer_ids).map(|(p, id)| Peer { id, ..*p }).collect(),
            };
            self.call(PdRequest::ReportSplit { left: left.clone(), right: right.clone() });
            let old = self.regions.get_mut(&id).unwrap();
            let leader_store = left.peer(old.leader).unwrap().store_id;
            old.region = left;
            let leader = right.peer_on_store(leader_store).unwrap().id;
            self.regions.insert(
                right.id,
                ModelRegion { region: right, leader, term: 1, pending: BTreeMap::new(), applied: Vec::new() },
            );
        }
    }

    /// Moves every region's leader to its peer on `store` (as if elections went that way).
    fn lead_all_from(&mut self, store: StoreId) {
        for r in self.regions.values_mut() {
            if let Some(p) = r.region.peer_on_store(store) {
                r.leader = p.id;
                r.term += 1;
            }
        }
    }

    fn alive(&self, store: StoreId) -> bool {
        self.stores.get(&store).is_some_and(|s| s.alive)
    }

    /// One heartbeat round: time moves on, live stores heartbeat, each region with a live
    /// leader (re-electing one if a quorum of voters lives) heartbeats and applies the step
    /// PD answers. Returns the steps applied.
    fn round(&mut self) -> usize {
        self.clock.advance_ms(ROUND_MS);
        for id in self.store_ids() {
            if self.alive(id) {
                let hb = PdRequest::StoreHeartbeat(StoreStats { store_id: id, ..Default::default() });
                match self.pd.handle(hb) {
                    Ok(_) => {}
                    Err(PdError::StoreTombstone(_)) => self.stores.get_mut(&id).unwrap().alive = false,
                    Err(e) => panic!("store heartbeat: {e}"),
                }
            }
        }
        self.max_learners = self.max_learners.max(self.learners().values().copied().max().unwrap_or(0));
        let mut applied = 0;
        let ids: Vec<u64> = self.regions.keys().copied().collect();
        for id in ids {
            if self.heartbeat(id) {
                applied += 1;
            }
        }
        for r in self.regions.values_mut() {
            r.pending.retain(|_, left| {
                *left -= 1;
                *left > 0
            });
        }
        applied
    }

    /// Runs rounds until `quiet` consecutive rounds apply nothing and no operator is in
    /// flight; panics after `max` rounds. Returns the rounds run.
    fn run_until_quiet(&mut self, quiet: usize, max: usize) -> usize {
        let mut idle = 0;
        for n in 1..=max {
            if self.round() == 0 && self.pd.operators_in_flight() == 0 {
                idle += 1;
                if idle == quiet {
                    return n;
                }
            } else {
                idle = 0;
            }
        }
        panic!("no quiet stretch of {quiet} rounds within {max}; in flight {}", self.pd.operators_in_flight());
    }

    fn heartbeat(&mut self, id: u64) -> bool {
        let now = self.now_ms();
        let alive: BTreeSet<StoreId> = self.stores.iter().filter(|(_, s)| s.alive).map(|(&i, _)| i).collect();
        let died: BTreeMap<StoreId, u64> = self.stores.iter().map(|(&i, s)| (i, s.died_ms)).collect();
        let r = self.regions.get_mut(&id).unwrap();
        let leader = *r.region.peer(r.leader).expect("leader is a peer");
        if !alive.contains(&leader.store_id) {
            let voters: Vec<Peer> = r.region.peers.iter().filter(|p| p.role == PeerRole::Voter).copied().collect();
            let live: Vec<Peer> = voters.iter().filter(|p| alive.contains(&p.store_id)).copied().collect();
            if live.len() * 2 <= voters.len() {
                return false; // no quorum: no leader, no heartbeat
            }
            r.leader = live[0].id;
            r.term += 1;
        }
        let leader = *r.region.peer(r.leader).unwrap();
        let hb = RegionHeartbeat {
            region: r.region.clone(),
            leader: Some(leader),
            term: r.term,
            down_peers: r
                .region
                .peers
                .iter()
                .filter(|p| !alive.contains(&p.store_id))
                .map(|p| (*p, now.saturating_sub(died[&p.store_id]) / 1000))
                .collect(),
            pending_peers: r.region.peers.iter().filter(|p| r.pending.contains_key(&p.id)).copied().collect(),
            approximate_size_bytes: 1 << 20,
            approximate_keys: 1000,
            written_bytes: 0,
        };
        let step = match self.pd.handle(PdRequest::RegionHeartbeat(hb)).expect("heartbeat") {
            PdResponse::Operator(step) => step,
            other => panic!("{other:?}"),
        };
        self.max_in_flight = self.max_in_flight.max(self.pd.operators_in_flight());
        let Some(step) = step else { return false };
        if self.stuck.contains(&id) {
            return false;
        }
        self.apply(id, step, &alive);
        true
    }

    /// Applies one step as the raftstore would, checking it is legal.
    fn apply(&mut self, id: u64, step: Operator, alive: &BTreeSet<StoreId>) {
        let r = self.regions.get_mut(&id).unwrap();
        let region = &mut r.region;
        match &step {
            Operator::AddLearner(p) => {
                assert_eq!(p.role, PeerRole::Learner, "{step:?}");
                assert!(region.peer_on_store(p.store_id).is_none(), "{step:?} onto a store with a peer: {region:?}");
                assert!(alive.contains(&p.store_id), "{step:?} onto a dead store");
                region.peers.push(*p);
                region.epoch.conf_ver += 1;
                r.pending.insert(p.id, CATCH_UP_ROUNDS);
            }
            Operator::PromoteLearner(p) => {
                assert!(!r.pending.contains_key(&p.id), "{step:?} while the learner catches up");
                let peer = region.peers.iter_mut().find(|q| q.id == p.id).expect("promoted peer exists");
                assert_eq!(peer.role, PeerRole::Learner, "{step:?}");
                peer.role = PeerRole::Voter;
                region.epoch.conf_ver += 1;
            }
            Operator::RemovePeer(p) => {
                assert_ne!(p.id, r.leader, "{step:?}: the leader is never asked to remove itself");
                let before = region.peers.len();
                region.peers.retain(|q| q.id != p.id);
                assert_eq!(region.peers.len() + 1, before, "{step:?} of an absent peer");
                region.epoch.conf_ver += 1;
            }
            Operator::TransferLeader(p) => {
                let peer = region.peer(p.id).expect("transfer target exists");
                assert_eq!(peer.role, PeerRole::Voter, "{step:?}");
                assert!(alive.contains(&p.store_id), "{step:?} to a dead store");
                r.leader = p.id;
                r.term += 1;
            }
            Operator::Split { .. } | Operator::Merge { .. } => panic!("unexpected {step:?}"),
        }
        // Never below a live quorum of voters.
        let voters: Vec<&Peer> = region.peers.iter().filter(|p| p.role == PeerRole::Voter).collect();
        let live = voters.iter().filter(|p| alive.contains(&p.store_id)).count();
        assert!(live * 2 > voters.len(), "region {id} lost its quorum after {step:?}: {region:?}");
        r.applied.push(step);
    }

    fn voter_stores(&self, id: u64) -> BTreeSet<StoreId> {
        self.regions[&id].region.peers.iter().filter(|p| p.role == PeerRole::Voter).map(|p| p.store_id).collect()
    }

    fn region_counts(&self) -> BTreeMap<StoreId, usize> {
        let mut counts: BTreeMap<StoreId, usize> = self.stores.keys().map(|&s| (s, 0)).collect();
        for r in self.regions.values() {
            for p in &r.region.peers {
                *counts.get_mut(&p.store_id).unwrap() += 1;
            }
        }
        counts
    }

    fn leader_counts(&self) -> BTreeMap<StoreId, usize> {
        let mut counts: BTreeMap<StoreId, usize> = self.stores.keys().map(|&s| (s, 0)).collect();
        for r in self.regions.values() {
            *counts.get_mut(&r.region.peer(r.leader).unwrap().store_id).unwrap() += 1;
        }
        counts
    }

    /// Every region has `max_replicas` voters, all on live stores, and no learner.
    fn assert_healthy(&self, replicas: usize) {
        for (id, r) in &self.regions {
            let voters = self.voter_stores(*id);
            assert_eq!(voters.len(), replicas, "region {id}: {:?}", r.region);
            assert_eq!(r.region.peers.len(), replicas, "region {id} keeps a learner: {:?}", r.region);
            assert!(voters.iter().all(|s| self.alive(*s)), "region {id} on a dead store: {:?}", r.region);
        }
    }
}

fn spread(counts: &BTreeMap<StoreId, usize>, only: &[StoreId]) -> usize {
    let vals: Vec<usize> = counts.iter().filter(|(s, _)| only.contains(s)).map(|(_, &c)| c).collect();
    vals.iter().max().unwrap() - vals.iter().min().unwrap()
}

fn config(f: impl FnOnce(&mut ScheduleConfig)) -> PdConfig {
    let mut c = PdConfig::test_min("10.0.0.1:2379");
    f(&mut c.schedule);
    c
}

fn replica_only() -> PdConfig {
    config(|s| {
        s.balance_leader = false;
        s.balance_region = false;
    })
}

#[test]
fn a_dead_stores_peers_are_replaced_learner_then_promote_then_remove() {
    let mut m = Model::new(replica_only(), &["", "", "", ""]);
    let [s1, s2, s3, s4] = m.store_ids()[..] else { panic!() };
    m.split_into(6);
    m.lead_all_from(s2); // the dead store leads everything: leaders must move first
    m.run_until_quiet(3, 20);
    assert_eq!(m.pd.operator_steps_sent(), 0, "a healthy, fully replicated cluster needs nothing");

    m.kill(s2);
    // Not down yet (max_store_down_time is 10 s): nothing is replaced.
    for _ in 0..9 {
        m.round();
        assert!(!m.pd.store_is_down(s2));
    }
    assert_eq!(m.pd.operator_counters(OperatorKind::ReplaceDownPeer).created, 0);
    m.wait_down(s2);
    let rounds = m.run_until_quiet(5, 60);
    m.assert_healthy(3);
    for (id, r) in &m.regions {
        assert_eq!(m.voter_stores(*id), BTreeSet::from([s1, s3, s4]), "region {id}");
        let new = *r.region.peer_on_store(s4).unwrap();
        let steps: Vec<&Operator> = r.applied.iter().collect();
        let learner = Peer { role: PeerRole::Learner, ..new };
        assert_eq!(steps[0], &Operator::AddLearner(learner), "region {id}: {steps:?}");
        assert_eq!(steps[1], &Operator::PromoteLearner(Peer { role: PeerRole::Voter, ..new }), "region {id}");
        assert!(matches!(steps[2], Operator::RemovePeer(p) if p.store_id == s2), "region {id}: {steps:?}");
        assert_eq!(steps.len(), 3, "region {id}: {steps:?}");
    }
    let c = m.pd.operator_counters(OperatorKind::ReplaceDownPeer);
    assert_eq!((c.created, c.finished, c.timed_out, c.cancelled), (6, 6, 0, 0), "{c:?}");
    assert_eq!(m.pd.operators_in_flight(), 0);
    // store_limit (2) bounds the concurrent additions to s4, the only target.
    assert_eq!(m.max_learners, 2, "learners on s4 at once");
    assert!(m.max_in_flight <= 4, "max in flight {}", m.max_in_flight);
    assert!(rounds > 3 * 2, "repair was throttled, took {rounds} rounds");
    assert_eq!(m.pd.store_region_count(s2), 0);
    assert_eq!(m.pd.store_region_count(s4), 6);
}

#[test]
fn a_region_missing_a_replica_gets_one_and_an_extra_replica_is_removed() {
    let mut m = Model::new(replica_only(), &["", "", "", ""]);
    let [_, _, _, s4] = m.store_ids()[..] else { panic!() };
    let id = *m.regions.keys().next().unwrap();
    // The leader reports only two voters (as after a manual removal): one is added.
    {
        let r = m.regions.get_mut(&id).unwrap();
        let victim = r.region.peers.pop().unwrap();
        assert_ne!(victim.id, r.leader);
        r.region.epoch.conf_ver += 1;
    }
    m.run_until_quiet(3, 20);
    m.assert_healthy(3);
    assert_eq!(m.pd.operator_counters(OperatorKind::AddReplica).finished, 1);
    let _ = s4;
    // Four voters: one is removed, never the leader's (a transfer would come first).
    let extra = m.add_store("");
    {
        let r = m.regions.get_mut(&id).unwrap();
        r.region.peers.push(Peer { id: 9_000_001, store_id: extra, role: PeerRole::Voter });
        r.region.epoch.conf_ver += 1;
    }
    m.run_until_quiet(3, 20);
    m.assert_healthy(3);
    assert_eq!(m.pd.operator_counters(OperatorKind::RemoveExtraReplica).finished, 1);
}

#[test]
fn label_isolation_picks_a_store_in_another_zone_then_on_another_host() {
    // Zones: the dead store's replacement must go to zone c (s5), not zone a (s4), even
    // though s4 has the lower id.
    let mut m = Model::new(
        replica_only(),
        &["zone=a,host=h1", "zone=b,host=h2", "zone=c,host=h3", "zone=a,host=h4", "zone=c,host=h5"],
    );
    let [_, _, s3, _, s5] = m.store_ids()[..] else { panic!() };
    m.kill(s3);
    m.wait_down(s3);
    m.run_until_quiet(5, 60);
    m.assert_healthy(3);
    for id in m.regions.keys() {
        assert!(m.voter_stores(*id).contains(&s5), "region {id}: {:?}", m.voter_stores(*id));
    }

    // One zone, several hosts: avoid the host that already holds a replica (s4 shares h1).
    let mut m = Model::new(
        replica_only(),
        &["zone=a,host=h1", "zone=a,host=h2", "zone=a,host=h3", "zone=a,host=h1", "zone=a,host=h9"],
    );
    let [_, _, s3, _, s5] = m.store_ids()[..] else { panic!() };
    m.kill(s3);
    m.wait_down(s3);
    m.run_until_quiet(5, 60);
    m.assert_healthy(3);
    for id in m.regions.keys() {
        assert!(m.voter_stores(*id).contains(&s5), "region {id}: {:?}", m.voter_stores(*id));
    }

    // Remove-extra drops the least isolated voter: of four voters across zones a, b, c, a
    // one of the two in zone a goes (the follower, not the leader).
    let mut m = Model::new(replica_only(), &["zone=a,host=h1", "zone=b,host=h2", "zone=c,host=h3", "zone=a,host=h4"]);
    let [s1, s2, s3, s4] = m.store_ids()[..] else { panic!() };
    let id = *m.regions.keys().next().unwrap();
    {
        let r = m.regions.get_mut(&id).unwrap();
        r.region.peers.push(Peer { id: 9_000_001, store_id: s4, role: PeerRole::Voter });
        r.region.epoch.conf_ver += 1;
        r.leader = r.region.peer_on_store(s4).unwrap().id;
    }
    m.run_until_quiet(3, 20);
    assert_eq!(m.voter_stores(id), BTreeSet::from([s2, s3, s4]), "s1 (zone a, not leading) removed");
    let _ = s1;
}

#[test]
fn balance_leader_converges_within_tolerance_and_stops() {
    let cfg = config(|s| s.balance_region = false);
    let tolerance = cfg.schedule.balance_tolerance(30) as usize;
    let mut m = Model::new(cfg, &["", "", ""]);
    let stores = m.store_ids();
    m.split_into(30);
    m.lead_all_from(stores[0]);
    assert_eq!(spread(&m.leader_counts(), &stores), 30);
    m.run_until_quiet(10, 100);
    let leaders = m.leader_counts();
    assert!(spread(&leaders, &stores) <= tolerance, "{leaders:?} tolerance {tolerance}");
    let c = m.pd.operator_counters(OperatorKind::BalanceLeader);
    assert_eq!(c.created, c.finished, "{c:?}");
    assert!(c.finished >= 19, "{c:?}");
    assert!(m.max_in_flight <= 4, "leader_schedule_limit: {}", m.max_in_flight);
    for s in &stores {
        assert_eq!(m.pd.store_leader_count(*s), leaders[s], "PD's count for store {s}");
    }
    // Quiet means quiet: nothing more for a long stretch.
    let sent = m.pd.operator_steps_sent();
    for _ in 0..30 {
        assert_eq!(m.round(), 0);
    }
    assert_eq!(m.pd.operator_steps_sent(), sent);
}

#[test]
fn balance_region_converges_within_tolerance_and_stops() {
    let cfg = PdConfig::test_min("10.0.0.1:2379");
    let region_limit = cfg.schedule.region_schedule_limit;
    let store_limit = cfg.schedule.store_limit;
    let mut m = Model::new(cfg, &["", "", ""]);
    m.split_into(24);
    m.lead_all_from(m.store_ids()[0]);
    let s4 = m.add_store("");
    let s5 = m.add_store("");
    let stores = m.store_ids();
    let tolerance = PdConfig::test_min("x").schedule.balance_tolerance(24) as usize;
    // Track the limits while it runs: balance-region operators in flight and, per store,
    // pending additions (learners not yet promoted).
    let mut idle = 0;
    let mut rounds = 0;
    while idle < 10 {
        rounds += 1;
        assert!(rounds < 300, "no convergence: {:?}", m.region_counts());
        let applied = m.round();
        idle = if applied == 0 && m.pd.operators_in_flight() == 0 { idle + 1 } else { 0 };
        assert!(m.pd.operators_in_flight() <= region_limit + 4, "in flight {}", m.pd.operators_in_flight());
        let learners = m.learners();
        assert!(learners.values().all(|&n| n <= store_limit), "store limit: {learners:?}");
    }
    let counts = m.region_counts();
    assert!(spread(&counts, &stores) <= tolerance, "{counts:?} tolerance {tolerance}");
    assert!(counts[&s4] >= 12 && counts[&s5] >= 12, "{counts:?}");
    m.assert_healthy(3);
    let c = m.pd.operator_counters(OperatorKind::BalanceRegion);
    assert_eq!((c.created, c.finished, c.timed_out), (c.finished, c.finished, 0), "{c:?}");
    assert!(m.max_in_flight <= region_limit + 4, "{}", m.max_in_flight);
    let leaders = m.leader_counts();
    assert!(spread(&leaders, &stores) <= tolerance, "leaders too: {leaders:?}");
    let sent = m.pd.operator_steps_sent();
    for _ in 0..30 {
        assert_eq!(m.round(), 0);
    }
    assert_eq!(m.pd.operator_steps_sent(), sent);
    for s in &stores {
        assert_eq!(m.pd.store_region_count(*s), counts[s], "PD's count for store {s}");
    }
}

#[test]
fn an_operator_that_makes_no_progress_times_out_and_is_retried() {
    let mut m = Model::new(replica_only(), &["", "", "", ""]);
    let [_, s2, _, s4] = m.store_ids()[..] else { panic!() };
    let id = *m.regions.keys().next().unwrap();
    m.kill(s2);
    m.stuck.insert(id);
    // Down after 10 s; the operator then times out after 30 s of no progress.
    for _ in 0..12 {
        m.round();
    }
    assert_eq!(m.pd.operator_in_flight(id), Some(OperatorKind::ReplaceDownPeer));
    for _ in 0..31 {
        m.round();
    }
    let c = m.pd.operator_counters(OperatorKind::ReplaceDownPeer);
    assert_eq!(c.timed_out, 1, "{c:?}");
    assert!(c.created >= 2, "retried after the timeout: {c:?}");
    // The raftstore recovers: the retry completes.
    m.stuck.clear();
    m.run_until_quiet(3, 30);
    m.assert_healthy(3);
    assert!(m.voter_stores(id).contains(&s4));
}

#[test]
fn an_offline_store_is_drained_then_becomes_tombstone() {
    let mut m = Model::new(replica_only(), &["", "", "", ""]);
    let [s1, _, _, s4] = m.store_ids()[..] else { panic!() };
    m.split_into(4);
    m.lead_all_from(s1);
    m.set_state(s1, StoreState::Offline);
    m.run_until_quiet(3, 60);
    m.assert_healthy(3);
    assert_eq!(m.pd.store_region_count(s1), 0);
    assert_eq!(m.pd.store_region_count(s4), 4);
    assert_eq!(m.store_state(s1), StoreState::Tombstone);
    assert_eq!(m.pd.operator_counters(OperatorKind::ReplaceOfflinePeer).finished, 4);
    // Its leaders moved away before its peers were removed.
    for r in m.regions.values() {
        assert!(r.applied.iter().any(|s| matches!(s, Operator::TransferLeader(_))), "{:?}", r.applied);
    }
}

#[test]
fn orphan_learners_are_promoted_when_needed_and_removed_otherwise() {
    let mut m = Model::new(replica_only(), &["", "", "", "", ""]);
    let [_, _, s3, s4, s5] = m.store_ids()[..] else { panic!() };
    let id = *m.regions.keys().next().unwrap();
    // A learner left behind (e.g. PD restarted mid-operator) next to three healthy voters.
    {
        let r = m.regions.get_mut(&id).unwrap();
        r.region.peers.push(Peer { id: 9_000_001, store_id: s4, role: PeerRole::Learner });
        r.region.epoch.conf_ver += 1;
    }
    m.run_until_quiet(3, 20);
    m.assert_healthy(3);
    assert_eq!(m.pd.operator_counters(OperatorKind::RemoveOrphanLearner).finished, 1);
    // A learner next to a down voter is promoted instead of adding yet another peer.
    m.kill(s3);
    m.store_rounds_until_down(s3);
    {
        let r = m.regions.get_mut(&id).unwrap();
        r.region.peers.push(Peer { id: 9_000_002, store_id: s5, role: PeerRole::Learner });
        r.region.epoch.conf_ver += 1;
    }
    m.run_until_quiet(5, 60);
    m.assert_healthy(3);
    assert!(m.voter_stores(id).contains(&s5));
    let r = &m.regions[&id];
    assert!(!r.applied.iter().any(|s| matches!(s, Operator::AddLearner(_))), "{:?}", r.applied);
}

#[test]
fn only_the_current_leader_gets_operators() {
    let mut m = Model::new(replica_only(), &["", "", "", ""]);
    let [_, s2, _, _] = m.store_ids()[..] else { panic!() };
    let id = *m.regions.keys().next().unwrap();
    m.kill(s2);
    m.store_rounds_until_down(s2);
    let r = &m.regions[&id];
    let (region, leader, term) = (r.region.clone(), *r.region.peer(r.leader).unwrap(), r.term);
    let follower = *region.peers.iter().find(|p| p.id != leader.id && p.store_id != s2).unwrap();
    let hb = |leader: Option<Peer>, term| {
        PdRequest::RegionHeartbeat(RegionHeartbeat { region: region.clone(), leader, term, ..Default::default() })
    };
    // Term 5 from the real leader first, then an older term from someone else: nothing.
    let first = m.call(hb(Some(leader), term + 5));
    assert!(matches!(first, PdResponse::Operator(Some(Operator::AddLearner(_)))), "{first:?}");
    assert_eq!(m.call(hb(Some(follower), term)), PdResponse::Operator(None));
    assert_eq!(m.call(hb(None, term)), PdResponse::Operator(None));
    // The leader asks again: the same step, not a second operator.
    assert_eq!(m.call(hb(Some(leader), term + 5)), first);
    assert_eq!(m.pd.operator_counters(OperatorKind::ReplaceDownPeer).created, 1);
    assert_eq!(m.pd.operators_in_flight(), 1);
}

#[test]
fn schedulers_are_deterministic() {
    let run = || {
        let mut m =
            Model::new(PdConfig::test_min("10.0.0.1:2379"), &["zone=a", "zone=b", "zone=c", "zone=a", "zone=b"]);
        m.split_into(12);
        m.lead_all_from(m.store_ids()[1]);
        m.kill(m.store_ids()[2]);
        m.wait_down(m.store_ids()[2]);
        m.run_until_quiet(10, 200);
        m.regions.values().map(|r| (r.region.clone(), r.leader, r.applied.clone())).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn manual_operators_transfer_move_and_remove_then_the_replica_checker_repairs() {
    let mut m = Model::new(replica_only(), &["", "", "", ""]);
    let [s1, s2, s3, s4] = m.store_ids()[..] else { panic!() };
    let id = *m.regions.keys().next().unwrap();
    let leader_store = |m: &Model| {
        let r = &m.regions[&id];
        r.region.peer(r.leader).unwrap().store_id
    };
    m.run_until_quiet(3, 20);
    let add = |m: &mut Model, op: ManualOperator| m.pd.handle(PdRequest::AddOperator { region_id: id, op });

    // Refused: unknown region, no peer there, already a peer there, a second operator.
    assert!(matches!(
        m.pd.handle(PdRequest::AddOperator { region_id: 999, op: ManualOperator::AddPeer { store: s4 } }),
        Err(PdError::Invalid(_))
    ));
    assert!(matches!(add(&mut m, ManualOperator::TransferLeader { to_store: s4 }), Err(PdError::Invalid(_))));
    assert!(matches!(add(&mut m, ManualOperator::AddPeer { store: s1 }), Err(PdError::Invalid(_))));

    // Transfer the leadership to another voter.
    let to = if leader_store(&m) == s2 { s3 } else { s2 };
    assert_eq!(add(&mut m, ManualOperator::TransferLeader { to_store: to }), Ok(PdResponse::Ok));
    assert!(matches!(add(&mut m, ManualOperator::RemovePeer { store: s1 }), Err(PdError::Invalid(_))));
    m.run_until_quiet(3, 20);
    assert_eq!(leader_store(&m), to);

    // Move the leader's replica to the fourth store: learner, promote, transfer, remove.
    assert_eq!(add(&mut m, ManualOperator::MovePeer { from_store: to, to_store: s4 }), Ok(PdResponse::Ok));
    m.run_until_quiet(3, 30);
    assert!(m.voter_stores(id).contains(&s4));
    assert!(!m.voter_stores(id).contains(&to));
    m.assert_healthy(3);

    // Remove a healthy voter below max_replicas: allowed when asked for; the replica
    // checker then adds one back on the only store without a replica.
    assert_eq!(add(&mut m, ManualOperator::RemovePeer { store: s4 }), Ok(PdResponse::Ok));
    m.run_until_quiet(3, 30);
    m.assert_healthy(3);
    assert!(m.voter_stores(id).contains(&to), "the replica checker re-added on the free store");
    assert_eq!(m.pd.operator_counters(OperatorKind::Manual).finished, 3);
    assert_eq!(m.pd.operator_counters(OperatorKind::AddReplica).finished, 1);
}
