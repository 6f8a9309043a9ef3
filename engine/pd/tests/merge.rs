//! PD's merge checker: which regions it merges, and when it keeps its hands off.

use keel_pd::{OperatorKind, Pd, PdConfig};
use keel_storage::SimEngine;
use keel_types::proto::pd::{Operator, PdRequest, PdResponse, RegionHeartbeat, Store, StoreStats};
use keel_types::{Clock, Peer, PeerRole, Region, RegionEpoch};
use std::sync::Arc;

struct Fixture {
    clock: Clock,
    pd: Pd,
    left: Region,
    right: Region,
}

/// PD with three stores and the bootstrap region split in two at "m".
fn fixture() -> Fixture {
    let clock = Clock::new();
    // Both leaders sit on one store: balance would move one first.
    let mut config = PdConfig::test_min("10.0.0.1:2379");
    config.schedule.balance_leader = false;
    config.schedule.balance_region = false;
    config.schedule.merge_checker = true;
    let mut pd = Pd::open(config, Arc::new(SimEngine::new()), clock.clone()).unwrap();
    for id in 1..=3 {
        let store = Store { id, address: format!("10.0.1.{id}:20160"), ..Default::default() };
        pd.handle(PdRequest::PutStore(store)).unwrap();
    }
    let left = match pd.handle(PdRequest::GetBootstrapRegion).unwrap() {
        PdResponse::BootstrapRegion(Some(r)) => r,
        other => panic!("{other:?}"),
    };
    let mut left = Region { end_key: b"m".to_vec(), epoch: RegionEpoch { version: 2, ..left.epoch }, ..left };
    let right = Region {
        id: 100,
        start_key: b"m".to_vec(),
        end_key: vec![],
        epoch: left.epoch,
        peers: left.peers.iter().map(|p| Peer { id: p.id + 100, ..*p }).collect(),
    };
    pd.handle(PdRequest::ReportSplit { left: left.clone(), right: right.clone() }).unwrap();
    left.epoch = RegionEpoch { version: 2, ..left.epoch };
    Fixture { clock, pd, left, right }
}

impl Fixture {
    /// Store heartbeats, then a leader heartbeat of `region` with `keys` keys; PD's answer.
    fn heartbeat(&mut self, region: &Region, keys: u64) -> Option<Operator> {
        for id in 1..=3 {
            self.pd.handle(PdRequest::StoreHeartbeat(StoreStats { store_id: id, ..Default::default() })).unwrap();
        }
        let hb = RegionHeartbeat {
            region: region.clone(),
            leader: Some(region.peers[0]),
            term: 7,
            approximate_keys: keys,
            approximate_size_bytes: keys * 10,
            ..Default::default()
        };
        match self.pd.handle(PdRequest::RegionHeartbeat(hb)).unwrap() {
            PdResponse::Operator(op) => op,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn two_small_colocated_neighbours_merge_once_the_split_has_aged() {
    let mut f = fixture();
    let (left, right) = (f.left.clone(), f.right.clone());
    assert_eq!(f.heartbeat(&right, 1), None);
    assert_eq!(f.heartbeat(&left, 1), None, "a fresh split is not undone at once");
    let interval = PdConfig::test_min("x").schedule.split_merge_interval.as_millis() as u64;
    f.clock.advance_ms(interval + 1);
    // The last region has no right neighbour: it merges into its left one.
    let step = f.heartbeat(&right, 1);
    assert_eq!(step, Some(Operator::Merge { target: left.clone() }));
    assert_eq!(f.pd.operator_in_flight(right.id), Some(OperatorKind::Merge));
    // The target is spoken for: no second merge (into it, or of it) starts.
    assert_eq!(f.heartbeat(&left, 1), None);
    assert_eq!(f.pd.operator_in_flight(left.id), None);
    // Repeated until the source's PrepareMerge shows in its epoch, then done.
    assert_eq!(f.heartbeat(&right, 1), Some(Operator::Merge { target: left.clone() }));
    let prepared = Region { epoch: RegionEpoch { conf_ver: right.epoch.conf_ver + 1, version: 3 }, ..right.clone() };
    assert_eq!(f.heartbeat(&prepared, 1), None);
    assert_eq!(f.pd.operator_counters(OperatorKind::Merge).finished, 1);
    // The merged target's report replaces both.
    let merged = Region { end_key: vec![], epoch: RegionEpoch { version: 4, ..left.epoch }, ..left };
    f.heartbeat(&merged, 2);
    assert_eq!(f.pd.region_count(), 1);
}

#[test]
fn big_or_unaligned_neighbours_do_not_merge() {
    let mut f = fixture();
    let interval = PdConfig::test_min("x").schedule.split_merge_interval.as_millis() as u64;
    f.clock.advance_ms(interval + 1);
    let (left, mut right) = (f.left.clone(), f.right.clone());
    let max_keys = PdConfig::test_min("x").schedule.max_merge_region_keys;
    f.heartbeat(&right, max_keys + 1);
    assert_eq!(f.heartbeat(&left, 1), None, "the target is too big");
    // Small again, but one replica on another store (a newer conf_ver).
    right.peers[2] = Peer { id: 500, store_id: 9, role: PeerRole::Voter };
    right.epoch.conf_ver += 1;
    f.heartbeat(&right, 1);
    f.clock.advance_ms(interval + 1);
    assert_eq!(f.heartbeat(&left, 1), None, "peers on different stores");
    assert_eq!(f.pd.operator_counters(OperatorKind::Merge).created, 0);
}
