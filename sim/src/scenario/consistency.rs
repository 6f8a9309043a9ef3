//! The end-of-run replica consistency check, shared by the cluster scenarios: once the
//! workload has stopped, within a deadline every region PD knows must have `replicas`
//! voters; each of its peers' stores must hold a live replica of it at PD's epoch; all of
//! those replicas must hold identical data (digests over every data column family of the
//! region's range, compared while nothing writes); no store may keep a live replica PD no
//! longer lists for it; and no store may keep data outside the regions it hosts.

use crate::cluster::Cluster;
use keel_client::PdClient;
use keel_raftstore::inspect::{local_replicas, orphan_keys, region_digest};
use keel_types::proto::pd::{RegionInfo, StoreState};
use keel_types::{PeerRole, Region, StoreId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Waits until the replicas are consistent, or describes what is not after `deadline`.
pub(crate) async fn check_replicas(
    cluster: &Cluster,
    pd_addr: &str,
    replicas: usize,
    deadline: Duration,
) -> Option<String> {
    let start = Instant::now();
    loop {
        let problems = match pd_view(cluster, pd_addr).await {
            Some((regions, stores)) => problems(cluster, &regions, &stores, replicas),
            None => vec!["PD does not answer".to_string()],
        };
        if problems.is_empty() {
            return None;
        }
        if start.elapsed() > deadline {
            let shown: Vec<&String> = problems.iter().take(8).collect();
            return Some(format!(
                "replicas inconsistent {deadline:?} after the workload stopped ({} problems): {shown:?}",
                problems.len()
            ));
        }
        sleep(Duration::from_millis(500)).await;
    }
}

/// PD's regions and its live stores (store id → node name), asked from a client node. A
/// store whose node has since had its disk replaced (it serves on another port now) is gone:
/// its replicas count as missing until PD has replaced them.
async fn pd_view(cluster: &Cluster, pd_addr: &str) -> Option<(Vec<RegionInfo>, BTreeMap<StoreId, String>)> {
    let node = cluster.roles().clients.first().cloned()?;
    let pd = PdClient::new(crate::cluster::pd_endpoints(pd_addr));
    let (regions, stores) = cluster
        .spawn_on(&node, async move {
            let regions = pd.scan_regions(b"", b"", 0).await.ok()?;
            let stores = pd.get_all_stores().await.ok()?;
            Some((regions, stores))
        })
        .await
        .ok()??;
    let mut names = BTreeMap::new();
    for store in stores.into_iter().filter(|s| s.state != StoreState::Tombstone) {
        let addr: SocketAddr = store.address.parse().ok()?;
        let node = cluster.node_by_ip(addr.ip())?;
        if addr.port() == super::register::store_port(&cluster.env(&node).disk) {
            names.insert(store.id, node);
        }
    }
    Some((regions, names))
}

fn problems(
    cluster: &Cluster,
    regions: &[RegionInfo],
    stores: &BTreeMap<StoreId, String>,
    replicas: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    // Each store's live replicas, by region id.
    let mut local: BTreeMap<StoreId, BTreeMap<u64, Region>> = BTreeMap::new();
    for (&id, node) in stores {
        match local_replicas(&cluster.env(node).disk) {
            Ok(list) => {
                local.insert(id, list.into_iter().filter(|r| r.live).map(|r| (r.region.id, r.region)).collect());
            }
            Err(e) => out.push(format!("store {id}: unreadable region states: {e}")),
        }
    }
    for info in regions {
        let region = &info.region;
        let voters = region.peers.iter().filter(|p| p.role == PeerRole::Voter).count();
        if voters != replicas || region.peers.len() != replicas {
            out.push(format!(
                "region {} has {voters} voters of {} peers, not {replicas}",
                region.id,
                region.peers.len()
            ));
        }
        let mut digests = Vec::new();
        for peer in &region.peers {
            let Some(node) = stores.get(&peer.store_id) else {
                out.push(format!("region {} peer {} on unknown store {}", region.id, peer.id, peer.store_id));
                continue;
            };
            match local.get(&peer.store_id).and_then(|l| l.get(&region.id)) {
                Some(held) if held.epoch == region.epoch && held.peer(peer.id).is_some() => {
                    match region_digest(&cluster.env(node).disk, region) {
                        Ok(d) => digests.push((peer.store_id, d)),
                        Err(e) => out.push(format!("store {}: unreadable data: {e}", peer.store_id)),
                    }
                }
                Some(held) => out.push(format!(
                    "region {} on store {} is at {:?} (PD: {:?})",
                    region.id, peer.store_id, held.epoch, region.epoch
                )),
                None => out.push(format!("region {} has no live replica on store {}", region.id, peer.store_id)),
            }
        }
        if digests.windows(2).any(|w| w[0].1 != w[1].1) {
            out.push(format!("region {} replicas differ: (store, (digest, keys)) {digests:?}", region.id));
        }
    }
    for (&store, held) in &local {
        for (id, region) in held {
            let listed = regions.iter().any(|r| r.region.id == *id && r.region.peer_on_store(store).is_some());
            if !listed {
                out.push(format!(
                    "store {store} still holds region {id} ({:?}) that PD does not place there",
                    region.epoch
                ));
            }
        }
        let ranges: Vec<Region> = held.values().cloned().collect();
        match orphan_keys(&cluster.env(&stores[&store]).disk, &ranges, 3) {
            Ok(orphans) if !orphans.is_empty() => {
                out.push(format!("store {store} holds data outside its regions: {orphans:?}"));
            }
            Ok(_) => {}
            Err(e) => out.push(format!("store {store}: unreadable data: {e}")),
        }
    }
    out
}
