//! The PD state machine against its contracts: TSO and id allocation across restarts and
//! clock jumps, bootstrap, store rules, region epoch rules, GC safe point, storage failure.
//! Pure state-machine tests (no runtime), so they run unchanged under `--cfg madsim`.

use keel_pd::{Pd, PdConfig, ScheduleConfig, TSO_COUNT_MAX};
use keel_storage::SimEngine;
use keel_types::proto::pd::{
    PdError, PdRequest, PdResponse, RegionHeartbeat, RegionInfo, Store, StoreState, StoreStats,
};
use keel_types::timestamp::LOGICAL_MAX;
use keel_types::{Clock, Peer, PeerRole, Region, RegionEpoch, Timestamp};
use std::sync::Arc;

struct Harness {
    disk: SimEngine,
    clock: Clock,
    config: PdConfig,
    pd: Pd,
}

impl Harness {
    fn new() -> Harness {
        let disk = SimEngine::new();
        let clock = Clock::new();
        // Scheduling has its own tests (tests/scheduler.rs); here heartbeats only record.
        let config = PdConfig { schedule: ScheduleConfig::disabled(), ..PdConfig::new("10.0.0.1:2379") };
        let pd = Pd::open(config.clone(), Arc::new(disk.clone()), clock.clone()).expect("open");
        Harness { disk, clock, config, pd }
    }

    /// Kills the PD (the disk loses whatever was not synced) and reopens it.
    fn restart(&mut self) {
        self.disk.crash_keeping(0);
        self.pd = Pd::open(self.config.clone(), Arc::new(self.disk.clone()), self.clock.clone()).expect("reopen");
    }

    fn call(&mut self, req: PdRequest) -> PdResponse {
        self.pd.handle(req.clone()).unwrap_or_else(|e| panic!("{req:?} failed: {e}"))
    }

    fn tso(&mut self, count: u32) -> Timestamp {
        match self.call(PdRequest::Tso { count }) {
            PdResponse::Tso { ts, count: c } => {
                assert_eq!(c, count);
                assert!(ts.logical() <= LOGICAL_MAX);
                ts
            }
            other => panic!("{other:?}"),
        }
    }

    fn alloc(&mut self, count: u32) -> u64 {
        match self.call(PdRequest::AllocId { count }) {
            PdResponse::Ids { first, count: c } => {
                assert_eq!(c, count);
                first
            }
            other => panic!("{other:?}"),
        }
    }

    fn add_store(&mut self) -> u64 {
        let id = self.alloc(1);
        let store = Store { id, address: format!("10.0.1.{id}:20160"), ..Default::default() };
        assert_eq!(self.call(PdRequest::PutStore(store)), PdResponse::Ok);
        id
    }

    fn bootstrap_region(&mut self) -> Option<Region> {
        match self.call(PdRequest::GetBootstrapRegion) {
            PdResponse::BootstrapRegion(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn region_by_key(&mut self, key: &[u8]) -> Option<RegionInfo> {
        match self.call(PdRequest::GetRegion { key: key.to_vec() }) {
            PdResponse::Region(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn region_by_id(&mut self, id: u64) -> Option<RegionInfo> {
        match self.call(PdRequest::GetRegionById(id)) {
            PdResponse::Region(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn scan(&mut self, start: &[u8], end: &[u8], limit: u32) -> Vec<RegionInfo> {
        match self.call(PdRequest::ScanRegions { start_key: start.to_vec(), end_key: end.to_vec(), limit }) {
            PdResponse::Regions(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn heartbeat(&mut self, region: &Region, leader: usize, term: u64) {
        let hb =
            RegionHeartbeat { region: region.clone(), leader: Some(region.peers[leader]), term, ..Default::default() };
        assert_eq!(self.call(PdRequest::RegionHeartbeat(hb)), PdResponse::Operator(None));
    }

    /// A bootstrapped three-store cluster; returns the first region.
    fn bootstrapped() -> (Harness, Region) {
        let mut h = Harness::new();
        for _ in 0..3 {
            h.add_store();
        }
        let region = h.bootstrap_region().expect("bootstrapped");
        (h, region)
    }
}

#[test]
fn tso_strictly_increases_within_batches_and_across_restarts_and_backward_clock_jumps() {
    let mut h = Harness::new();
    let last = std::cell::Cell::new(Timestamp::ZERO);
    let check = |h: &mut Harness, count: u32| {
        let ts = h.tso(count);
        let first = ts.0 - u64::from(count) + 1;
        assert!(first > last.get().0, "batch {first}..={ts} not above {}", last.get());
        last.set(ts);
    };
    let before = h.clock.now_ms();
    for count in [1, 2, 1000, 1, TSO_COUNT_MAX, 7] {
        check(&mut h, count);
    }
    assert!(last.get().physical_ms() >= before);
    h.restart();
    check(&mut h, 1);
    // The clock jumps back five minutes: timestamps keep increasing, within and across restarts.
    h.clock.set_offset_ms(-5 * 60 * 1000);
    for count in [1, 10, TSO_COUNT_MAX, 3] {
        check(&mut h, count);
    }
    h.restart();
    check(&mut h, 5);
    h.restart();
    h.restart();
    check(&mut h, 1);
    // Back to normal and then forward: physical follows the clock again.
    h.clock.set_offset_ms(60 * 1000);
    check(&mut h, 1);
    assert!(last.get().physical_ms() >= before + 60 * 1000);
    // Bad counts are refused, not served.
    assert!(matches!(h.pd.handle(PdRequest::Tso { count: 0 }), Err(PdError::Invalid(_))));
    assert!(matches!(h.pd.handle(PdRequest::Tso { count: TSO_COUNT_MAX + 1 }), Err(PdError::Invalid(_))));
}

#[test]
fn alloc_id_never_repeats_across_restarts() {
    let mut h = Harness::new();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..5 {
        for count in [1u32, 3, 999, 2] {
            let first = h.alloc(count);
            assert!(first > 0);
            for id in first..first + u64::from(count) {
                assert!(seen.insert(id), "id {id} handed out twice (round {round})");
            }
        }
        h.restart();
    }
    assert!(matches!(h.pd.handle(PdRequest::AllocId { count: 0 }), Err(PdError::Invalid(_))));
}

#[test]
fn cluster_id_is_stable_and_configurable() {
    let mut h = Harness::new();
    let id = h.pd.cluster_id();
    assert_ne!(id, 0);
    h.restart();
    assert_eq!(h.pd.cluster_id(), id);
    assert_eq!(h.call(PdRequest::GetMembers), PdResponse::Members { cluster_id: id, leader: "10.0.0.1:2379".into() });
    let fixed = PdConfig { cluster_id: Some(42), ..PdConfig::default() };
    let pd = Pd::open(fixed.clone(), Arc::new(SimEngine::new()), Clock::new()).unwrap();
    assert_eq!(pd.cluster_id(), 42);
    // An id on disk wins over the configured one.
    let pd = Pd::open(PdConfig { cluster_id: Some(7), ..fixed }, Arc::new(h.disk.clone()), Clock::new()).unwrap();
    assert_eq!(pd.cluster_id(), id);
}

#[test]
fn bootstrap_happens_once_when_the_third_store_registers_and_survives_restart() {
    let mut h = Harness::new();
    assert_eq!(h.bootstrap_region(), None);
    let s1 = h.add_store();
    let s2 = h.add_store();
    assert_eq!(h.bootstrap_region(), None);
    assert_eq!(h.region_by_key(b"a"), None);
    // Re-registering an existing store does not count twice.
    let again = Store { id: s2, address: format!("10.0.1.{s2}:20160"), ..Default::default() };
    h.call(PdRequest::PutStore(again));
    assert_eq!(h.bootstrap_region(), None);
    let s3 = h.add_store();
    let region = h.bootstrap_region().expect("bootstrapped by the third store");
    assert_eq!((region.start_key.as_slice(), region.end_key.as_slice()), (&b""[..], &b""[..]));
    assert_eq!(region.epoch, RegionEpoch { conf_ver: 1, version: 1 });
    let stores: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
    assert_eq!(stores, vec![s1, s2, s3]);
    assert!(region.peers.iter().all(|p| p.role == PeerRole::Voter));
    let mut ids: Vec<u64> = region.peers.iter().map(|p| p.id).chain([region.id]).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "region and peer ids are distinct");
    assert!(ids.iter().all(|id| ![s1, s2, s3].contains(id)), "ids come from the shared id space");
    assert_eq!(h.region_by_key(b"anything").unwrap().region, region);

    // A fourth store changes nothing; a restart keeps the same region.
    h.add_store();
    assert_eq!(h.bootstrap_region().as_ref(), Some(&region));
    h.restart();
    assert!(h.pd.is_bootstrapped());
    assert_eq!(h.bootstrap_region().as_ref(), Some(&region));
    assert_eq!(h.region_by_id(region.id).unwrap().region, region);
    let next = h.alloc(1);
    assert!(next > *ids.last().unwrap());
}

#[test]
fn store_rules_tombstone_duplicate_address_and_heartbeats() {
    let mut h = Harness::new();
    let s1 = h.add_store();
    let s2 = h.add_store();
    // Another live store claiming s1's address is refused.
    let thief = Store { id: s2, address: format!("10.0.1.{s1}:20160"), ..Default::default() };
    assert!(matches!(h.pd.handle(PdRequest::PutStore(thief)), Err(PdError::Invalid(_))));
    assert!(matches!(h.pd.handle(PdRequest::PutStore(Store::default())), Err(PdError::Invalid(_))));
    // Heartbeats are recorded with PD's monotonic clock.
    let stats = StoreStats { store_id: s1, capacity_bytes: 100, available_bytes: 40, ..Default::default() };
    h.clock.advance_ms(5_000);
    assert_eq!(h.call(PdRequest::StoreHeartbeat(stats.clone())), PdResponse::Ok);
    let status = h.pd.store_status(s1).unwrap();
    assert_eq!(status.stats, stats);
    assert!(status.last_heartbeat_ms >= 5_000);
    let unknown = StoreStats { store_id: 999_999, ..Default::default() };
    assert!(matches!(h.pd.handle(PdRequest::StoreHeartbeat(unknown)), Err(PdError::Invalid(_))));
    // Removal only moves forward: a store re-registering as Up stays Offline.
    let addr1 = format!("10.0.1.{s1}:20160");
    let offline = Store { id: s1, address: addr1.clone(), state: StoreState::Offline, ..Default::default() };
    h.call(PdRequest::PutStore(offline));
    h.call(PdRequest::PutStore(Store { id: s1, address: addr1.clone(), ..Default::default() }));
    let got = |h: &mut Harness, id| match h.call(PdRequest::GetStore(id)) {
        PdResponse::Store(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(got(&mut h, s1).unwrap().state, StoreState::Offline);
    let tomb = Store { id: s1, address: addr1.clone(), state: StoreState::Tombstone, ..Default::default() };
    h.call(PdRequest::PutStore(tomb));
    h.restart();
    assert_eq!(got(&mut h, s1).unwrap().state, StoreState::Tombstone);
    let back = Store { id: s1, address: addr1.clone(), ..Default::default() };
    assert_eq!(h.pd.handle(PdRequest::PutStore(back)), Err(PdError::StoreTombstone(s1)));
    let hb = StoreStats { store_id: s1, ..Default::default() };
    assert_eq!(h.pd.handle(PdRequest::StoreHeartbeat(hb)), Err(PdError::StoreTombstone(s1)));
    // A tombstone's address may be reused by a new store.
    let s3 = h.alloc(1);
    h.call(PdRequest::PutStore(Store { id: s3, address: addr1, ..Default::default() }));
    match h.call(PdRequest::GetAllStores) {
        PdResponse::Stores(all) => assert_eq!(all.iter().map(|s| s.id).collect::<Vec<_>>(), vec![s1, s2, s3]),
        other => panic!("{other:?}"),
    }
    assert_eq!(got(&mut h, 123_456), None);
}

/// Splits `region` at `key` the way a store would: ids from AskSplit, both epochs' version
/// bumped, the new region on the right.
fn split(h: &mut Harness, region: &Region, key: &[u8]) -> (Region, Region) {
    let (new_region_id, new_peer_ids) = match h.call(PdRequest::AskSplit { region: region.clone() }) {
        PdResponse::SplitIds { new_region_id, new_peer_ids } => (new_region_id, new_peer_ids),
        other => panic!("{other:?}"),
    };
    assert_eq!(new_peer_ids.len(), region.peers.len());
    let epoch = RegionEpoch { version: region.epoch.version + 1, ..region.epoch };
    let left = Region { end_key: key.to_vec(), epoch, ..region.clone() };
    let right = Region {
        id: new_region_id,
        start_key: key.to_vec(),
        end_key: region.end_key.clone(),
        epoch,
        peers: region.peers.iter().zip(new_peer_ids).map(|(p, id)| Peer { id, ..*p }).collect(),
    };
    (left, right)
}

#[test]
fn region_heartbeats_follow_epoch_rules() {
    let (mut h, r1) = Harness::bootstrapped();
    h.heartbeat(&r1, 0, 5);
    assert_eq!(h.region_by_key(b"k").unwrap().leader, Some(r1.peers[0]));
    // Equal epoch: a newer term moves the leader, an older one does not.
    h.heartbeat(&r1, 1, 6);
    h.heartbeat(&r1, 2, 5);
    assert_eq!(h.region_by_key(b"k").unwrap().leader, Some(r1.peers[1]));

    // The leader reports the split before PD hears of it: the left half's heartbeat with
    // the newer epoch replaces the old range; the right half arrives as a new region.
    let (left, right) = split(&mut h, &r1, b"m");
    h.heartbeat(&left, 1, 6);
    assert_eq!(h.region_by_key(b"a").unwrap().region, left);
    assert_eq!(h.region_by_key(b"z"), None, "right half not reported yet");
    h.heartbeat(&right, 1, 6);
    assert_eq!(h.region_by_key(b"z").unwrap().region, right);
    // A stale heartbeat of the pre-split region (old epoch) is ignored.
    h.heartbeat(&r1, 0, 7);
    assert_eq!(h.region_by_key(b"a").unwrap().region, left);
    assert_eq!(h.region_by_key(b"z").unwrap().region, right);
    assert_eq!(h.pd.region_count(), 2);

    // A conf change bumps conf_ver: the newer epoch wins; the older one is then stale.
    let mut moved = right.clone();
    moved.epoch.conf_ver += 1;
    moved.peers[2].role = PeerRole::Learner;
    h.heartbeat(&moved, 0, 9);
    h.heartbeat(&right, 1, 10);
    let info = h.region_by_id(right.id).unwrap();
    assert_eq!((info.region, info.leader), (moved.clone(), Some(moved.peers[0])));

    // A region overlapping a newer one (higher version) is stale even with an unknown id.
    let mut ghost = r1.clone();
    ghost.id = h.alloc(1);
    h.heartbeat(&ghost, 0, 1);
    assert_eq!(h.region_by_id(ghost.id), None);
    assert_eq!(h.pd.region_count(), 2);

    // Scans see regions in key order; limits and ranges apply.
    let all = h.scan(b"", b"", 0);
    assert_eq!(all.iter().map(|i| i.region.id).collect::<Vec<_>>(), vec![left.id, right.id]);
    assert_eq!(h.scan(b"", b"", 1).len(), 1);
    assert_eq!(h.scan(b"n", b"", 0).len(), 1);
    assert_eq!(h.scan(b"a", b"m", 0).len(), 1);
    assert_eq!(h.scan(b"a", b"m\0", 0).len(), 2);
    assert!(h.scan(b"z", b"a", 0).is_empty());

    // Everything but leaders survives a restart; heartbeats bring leaders back.
    h.restart();
    assert_eq!(h.region_by_id(right.id).unwrap().region, moved);
    assert_eq!(h.region_by_key(b"a").unwrap().region, left);
    assert_eq!(h.pd.region_count(), 2);
    // Bad regions are refused.
    let bad = RegionHeartbeat {
        region: Region { id: 77, start_key: b"b".to_vec(), end_key: b"a".to_vec(), ..Default::default() },
        ..Default::default()
    };
    assert!(matches!(h.pd.handle(PdRequest::RegionHeartbeat(bad)), Err(PdError::Invalid(_))));
}

#[test]
fn report_split_installs_both_halves_and_a_merged_region_replaces_them() {
    let (mut h, r1) = Harness::bootstrapped();
    h.heartbeat(&r1, 2, 5);
    let (left, right) = split(&mut h, &r1, b"g");
    let report = PdRequest::ReportSplit { left: left.clone(), right: right.clone() };
    assert_eq!(h.call(report.clone()), PdResponse::Ok);
    assert_eq!(h.call(report), PdResponse::Ok, "a retried report is harmless");
    let l = h.region_by_key(b"a").unwrap();
    let r = h.region_by_key(b"x").unwrap();
    assert_eq!((l.region, l.leader), (left.clone(), Some(left.peers[2])));
    assert_eq!((r.region, r.leader), (right.clone(), Some(right.peers[2])), "leader hint on the same store");
    // The right half's own first heartbeat (a fresh raft group, low term) takes over.
    h.heartbeat(&right, 0, 1);
    assert_eq!(h.region_by_id(right.id).unwrap().leader, Some(right.peers[0]));
    // Split the right half again, then a merge of everything (higher version) replaces all.
    let (rl, rr) = split(&mut h, &right, b"p");
    h.call(PdRequest::ReportSplit { left: rl.clone(), right: rr.clone() });
    assert_eq!(h.scan(b"", b"", 0).len(), 3);
    let merged = Region { epoch: RegionEpoch { conf_ver: 1, version: 10 }, ..r1.clone() };
    h.heartbeat(&merged, 0, 8);
    let all = h.scan(b"", b"", 0);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].region, merged);
    h.restart();
    assert_eq!(h.scan(b"", b"", 0).iter().map(|i| i.region.clone()).collect::<Vec<_>>(), vec![merged]);
    // Halves that do not meet are refused.
    let bad = PdRequest::ReportSplit { left: rl, right: Region { start_key: b"q".to_vec(), ..rr } };
    assert!(matches!(h.pd.handle(bad), Err(PdError::Invalid(_))));
}

#[test]
fn gc_safe_point_never_moves_backwards() {
    let mut h = Harness::new();
    assert_eq!(h.call(PdRequest::GetGcSafePoint), PdResponse::GcSafePoint(Timestamp::ZERO));
    assert_eq!(h.call(PdRequest::UpdateGcSafePoint(Timestamp(100))), PdResponse::GcSafePoint(Timestamp(100)));
    assert_eq!(h.call(PdRequest::UpdateGcSafePoint(Timestamp(50))), PdResponse::GcSafePoint(Timestamp(100)));
    h.restart();
    assert_eq!(h.call(PdRequest::GetGcSafePoint), PdResponse::GcSafePoint(Timestamp(100)));
    assert_eq!(h.call(PdRequest::UpdateGcSafePoint(Timestamp(101))), PdResponse::GcSafePoint(Timestamp(101)));
}

#[test]
fn a_failed_sync_stops_the_pd_until_it_restarts() {
    let mut h = Harness::new();
    let before = h.tso(1);
    h.disk.fail_next_sync();
    // Force a write: an id allocation beyond the persisted window.
    let err = h.pd.handle(PdRequest::AllocId { count: 5000 }).unwrap_err();
    assert!(matches!(err, PdError::Unavailable(_)), "{err:?}");
    assert!(h.pd.failure().is_some());
    assert!(matches!(h.pd.handle(PdRequest::GetMembers), Err(PdError::Unavailable(_))));
    h.restart();
    assert!(h.pd.failure().is_none());
    assert!(h.tso(1) > before);
}

/// The production engine keeps PD's state across a close and reopen of the same directory.
#[cfg(not(madsim))]
#[test]
fn state_survives_reopen_on_fjall() {
    use keel_storage::FjallEngine;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PdConfig::new("127.0.0.1:2379");
    let clock = Clock::new();
    let (cluster_id, ts, id, region) = {
        let engine = Arc::new(FjallEngine::open(dir.path()).expect("open fjall"));
        let mut pd = Pd::open(config.clone(), engine, clock.clone()).expect("open pd");
        let mut first_id = 0;
        for i in 0..3 {
            let id = match pd.handle(PdRequest::AllocId { count: 1 }).unwrap() {
                PdResponse::Ids { first, .. } => first,
                other => panic!("{other:?}"),
            };
            first_id = first_id.max(id);
            let store = Store { id, address: format!("127.0.0.1:{}", 20160 + i), ..Default::default() };
            pd.handle(PdRequest::PutStore(store)).unwrap();
        }
        let ts = match pd.handle(PdRequest::Tso { count: 10 }).unwrap() {
            PdResponse::Tso { ts, .. } => ts,
            other => panic!("{other:?}"),
        };
        let region = match pd.handle(PdRequest::GetBootstrapRegion).unwrap() {
            PdResponse::BootstrapRegion(r) => r.expect("bootstrapped"),
            other => panic!("{other:?}"),
        };
        (pd.cluster_id(), ts, first_id, region)
    };
    // Reopen with the clock ten minutes behind.
    clock.set_offset_ms(-10 * 60 * 1000);
    let engine = Arc::new(FjallEngine::open(dir.path()).expect("reopen fjall"));
    let mut pd = Pd::open(config, engine, clock).expect("reopen pd");
    assert_eq!(pd.cluster_id(), cluster_id);
    match pd.handle(PdRequest::Tso { count: 1 }).unwrap() {
        PdResponse::Tso { ts: again, .. } => assert!(again > ts, "{again} after {ts}"),
        other => panic!("{other:?}"),
    }
    match pd.handle(PdRequest::AllocId { count: 1 }).unwrap() {
        PdResponse::Ids { first, .. } => {
            assert!(first > id && first > region.peers.iter().map(|p| p.id).max().unwrap())
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pd.handle(PdRequest::GetBootstrapRegion).unwrap(), PdResponse::BootstrapRegion(Some(region.clone())));
    match pd.handle(PdRequest::GetRegion { key: b"k".to_vec() }).unwrap() {
        PdResponse::Region(Some(info)) => assert_eq!(info.region, region),
        other => panic!("{other:?}"),
    }
}

/// A store that dies right after heartbeating while PD's wall clock had jumped ahead must
/// still be down once it has been silent for `max_store_down_time` (swarm seed 663: PD's clock
/// jumped 110 s ahead for 1.6 s, a store's last heartbeat was dated 110 s in the future, and
/// PD kept that dead store "alive" — placing new replicas on it — for the rest of the run).
#[test]
fn a_wall_clock_jump_never_hides_a_dead_store() {
    let clock = Clock::new();
    let schedule = ScheduleConfig::test_min();
    let down_ms = schedule.max_store_down_time.as_millis() as u64;
    let config = PdConfig { schedule, ..PdConfig::new("10.0.0.1:2379") };
    let mut pd = Pd::open(config, Arc::new(SimEngine::new()), clock.clone()).expect("open");
    let store = Store { id: 1, address: "10.0.0.2:20160".into(), ..Default::default() };
    pd.handle(PdRequest::PutStore(store)).expect("put store");
    clock.set_offset_ms(110_000);
    pd.handle(PdRequest::StoreHeartbeat(StoreStats { store_id: 1, ..Default::default() })).expect("heartbeat");
    clock.set_offset_ms(0);
    assert!(!pd.store_is_down(1), "just heard from");
    clock.advance_ms(down_ms + 1_000);
    assert!(pd.store_is_down(1), "silent for longer than max_store_down_time");
    // And a jump back does not make a live store look dead.
    pd.handle(PdRequest::StoreHeartbeat(StoreStats { store_id: 1, ..Default::default() })).expect("heartbeat");
    clock.set_offset_ms(-(down_ms as i64) * 10);
    assert!(!pd.store_is_down(1), "a jump back is not silence");
}
