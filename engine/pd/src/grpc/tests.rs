//! The `pdpb.PD` adapter called directly (no network) over a PD on a simulated disk.
use super::*;
use crate::{PdConfig, ScheduleConfig};
use keel_storage::SimEngine;
use keel_types::keys::encode_bytes;
use keel_types::timestamp::LOGICAL_MAX;
use keel_types::{Clock, Peer, Region as KeelRegion, RegionEpoch};
use std::sync::{Arc, Mutex};

fn adapter() -> PdGrpc {
    adapter_on(&SimEngine::new())
}

/// The adapter over a PD opened (or reopened) on `disk`.
fn adapter_on(disk: &SimEngine) -> PdGrpc {
    let config = PdConfig { schedule: ScheduleConfig::disabled(), ..PdConfig::new("10.0.0.1:2379") };
    let pd = crate::Pd::open(config, Arc::new(disk.clone()), Clock::new()).expect("open");
    PdGrpc { caller: PdCaller::lone(Arc::new(Mutex::new(pd))) }
}

/// A pdpb timestamp as keel's u64.
fn as_u64(ts: &keel_kvproto::pdpb::Timestamp) -> u64 {
    ((ts.physical as u64) << keel_types::timestamp::LOGICAL_BITS) | ts.logical as u64
}

/// The last timestamp of a batch of `count`.
async fn tso(a: &PdGrpc, count: u32) -> u64 {
    as_u64(&a.tso_response(TsoRequest { header: None, count, dc_location: String::new() }).await.timestamp.unwrap())
}

#[tokio::test]
async fn tso_and_cluster_id_survive_a_pd_restart() {
    let disk = SimEngine::new();
    let before = adapter_on(&disk);
    let last = tso(&before, 100).await;
    let cluster_id = before.caller.cluster_id();
    drop(before);
    disk.crash_keeping(0);
    let after = adapter_on(&disk);
    assert_eq!(after.caller.cluster_id(), cluster_id);
    assert!(tso(&after, 1).await > last, "a timestamp repeated across the restart");
}

async fn native(a: &PdGrpc, req: PdRequest) -> PdResponse {
    a.caller.call(req).await.expect("native call")
}

/// Three stores (so the cluster bootstraps) and a split at "m".
async fn split_cluster() -> (PdGrpc, KeelRegion, KeelRegion) {
    let a = adapter();
    for _ in 0..3 {
        let PdResponse::Ids { first, .. } = native(&a, PdRequest::AllocId { count: 1 }).await else { panic!("ids") };
        let store = Store { id: first, address: format!("10.0.1.{first}:20160"), ..Default::default() };
        native(&a, PdRequest::PutStore(store)).await;
    }
    let PdResponse::BootstrapRegion(Some(region)) = native(&a, PdRequest::GetBootstrapRegion).await else {
        panic!("not bootstrapped")
    };
    let PdResponse::SplitIds { new_region_id, new_peer_ids } =
        native(&a, PdRequest::AskSplit { region: region.clone() }).await
    else {
        panic!("split ids")
    };
    let epoch = RegionEpoch { version: region.epoch.version + 1, ..region.epoch };
    let left = KeelRegion { end_key: b"m".to_vec(), epoch, ..region.clone() };
    let right = KeelRegion {
        id: new_region_id,
        start_key: b"m".to_vec(),
        end_key: vec![],
        epoch,
        peers: region.peers.iter().zip(new_peer_ids).map(|(p, id)| Peer { id, ..*p }).collect(),
    };
    native(&a, PdRequest::ReportSplit { left: left.clone(), right: right.clone() }).await;
    (a, left, right)
}

fn by_key(key: Vec<u8>) -> Request<GetRegionRequest> {
    Request::new(GetRegionRequest { header: None, region_key: key, need_buckets: false })
}

#[tokio::test]
async fn members_are_dialable_and_every_header_carries_the_cluster_id() {
    let a = adapter();
    assert_ne!(a.caller.cluster_id(), 0);
    let members = a.get_members(Request::new(GetMembersRequest::default())).await.unwrap().into_inner();
    assert_eq!(members.header.unwrap().cluster_id, a.caller.cluster_id());
    assert_eq!(members.leader.unwrap().client_urls, vec!["http://10.0.0.1:2379".to_string()]);
    let missing = a.get_store(Request::new(GetStoreRequest { header: None, store_id: 999 })).await.unwrap();
    let header = missing.into_inner().header.unwrap();
    assert_eq!(header.cluster_id, a.caller.cluster_id());
    assert!(header.error.unwrap().message.contains("999"));
}

#[tokio::test]
async fn tso_echoes_count_and_batches_never_overlap() {
    let a = adapter();
    let mut last = 0u64;
    for count in [1u32, 10, 1000, 1, 1 << 17] {
        let resp = a.tso_response(TsoRequest { header: None, count, dc_location: String::new() }).await;
        assert_eq!(resp.header.as_ref().unwrap().cluster_id, a.caller.cluster_id());
        assert_eq!(resp.count, count);
        let ts = resp.timestamp.unwrap();
        assert!((0..=LOGICAL_MAX as i64).contains(&ts.logical));
        let ts = as_u64(&ts);
        assert!(ts - u64::from(count) + 1 > last, "batch of {count} overlaps the previous one");
        last = ts;
    }
    let refused = a.tso_response(TsoRequest { header: None, count: 0, dc_location: String::new() }).await;
    assert!(refused.timestamp.is_none() && refused.header.unwrap().error.is_some());
}

#[tokio::test]
async fn regions_answer_in_the_askers_encoding() {
    let (a, left, right) = split_cluster().await;
    // A raw client asks with raw keys and gets raw boundaries.
    let raw = a.get_region(by_key(b"z".to_vec())).await.unwrap().into_inner().region.unwrap();
    assert_eq!((raw.id, raw.start_key.as_slice(), raw.end_key.as_slice()), (right.id, &b"m"[..], &b""[..]));
    // A transactional client asks with encoded keys and gets encoded boundaries.
    let txn = a.get_region(by_key(encode_bytes(b"a"))).await.unwrap().into_inner().region.unwrap();
    assert_eq!((txn.id, txn.start_key.clone(), txn.end_key.clone()), (left.id, vec![], encode_bytes(b"m")));
    assert_eq!(txn.region_epoch.unwrap().version, left.epoch.version);
    assert_eq!(txn.peers.len(), 3);

    let prev = a.get_prev_region(by_key(b"z".to_vec())).await.unwrap().into_inner();
    assert_eq!(prev.region.unwrap().id, left.id);
    assert!(a.get_prev_region(by_key(b"a".to_vec())).await.unwrap().into_inner().region.is_none());

    let req = GetRegionByIdRequest { header: None, region_id: right.id, need_buckets: false };
    let by_id = a.get_region_by_id(Request::new(req)).await.unwrap().into_inner().region.unwrap();
    assert_eq!(by_id.start_key, b"m".to_vec());

    let scan = ScanRegionsRequest { header: None, start_key: encode_bytes(b""), limit: 0, end_key: vec![] };
    let scan = a.scan_regions(Request::new(scan)).await.unwrap().into_inner();
    assert_eq!(scan.regions.len(), 2);
    assert_eq!(scan.leaders.len(), 2);
    assert_eq!(scan.region_metas[1].start_key, encode_bytes(b"m"));
    let scan = ScanRegionsRequest { header: None, start_key: b"a".to_vec(), limit: 1, end_key: vec![] };
    assert_eq!(a.scan_regions(Request::new(scan)).await.unwrap().into_inner().regions.len(), 1);
}

#[tokio::test]
async fn stores_and_gc_safe_point() {
    let (a, _, _) = split_cluster().await;
    let all = a.get_all_stores(Request::new(GetAllStoresRequest::default())).await.unwrap().into_inner();
    assert_eq!(all.stores.len(), 3);
    let id = all.stores[0].id;
    let one = a.get_store(Request::new(GetStoreRequest { header: None, store_id: id })).await.unwrap();
    assert_eq!(one.into_inner().store.unwrap().address, format!("10.0.1.{id}:20160"));

    let update = |safe_point| Request::new(UpdateGcSafePointRequest { header: None, safe_point });
    assert_eq!(a.update_gc_safe_point(update(100)).await.unwrap().into_inner().new_safe_point, 100);
    assert_eq!(a.update_gc_safe_point(update(50)).await.unwrap().into_inner().new_safe_point, 100);
    let got = a.get_gc_safe_point(Request::new(GetGcSafePointRequest::default())).await.unwrap();
    assert_eq!(got.into_inner().safe_point, 100);
}
