//! `keel ctl` cluster operations: look up a region, split it, move its leader, drain and
//! remove a store, and show or advance PD's GC safe point.

use keel_client::{PdClient, RawClient, TransactionClient};
use keel_rpc::RpcClient;
use keel_types::proto::pd::{ManualOperator, RegionInfo, StoreState};
use keel_types::proto::store::{Context, StoreError, StoreRequest, StoreResponse, StoreResult};
use keel_types::{PeerRole, RegionId, StoreId, Timestamp};
use std::time::Duration;

/// How long an operation keeps retrying through leader changes and unreachable stores.
const ADMIN_DEADLINE: Duration = Duration::from_secs(15);
/// Pause between retries.
const ADMIN_RETRY_INTERVAL: Duration = Duration::from_millis(200);
/// Timeout of one call to a store.
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Which region an operation addresses.
pub enum RegionRef {
    /// The region holding this key.
    Key(Vec<u8>),
    /// The region with this id.
    Id(RegionId),
}

/// One line describing a region: id, range, epoch, leader and peers.
pub fn format_region(r: &RegionInfo) -> String {
    let peers: Vec<String> = r.region.peers.iter().map(|p| format!("{}@{}", p.id, p.store_id)).collect();
    let leader = r.leader.map_or("-".to_string(), |l| format!("{}@{}", l.id, l.store_id));
    format!(
        "{}\t[{:?}, {:?})\tv{}/c{}\tleader {}\tpeers {}",
        r.region.id,
        String::from_utf8_lossy(&r.region.start_key),
        String::from_utf8_lossy(&r.region.end_key),
        r.region.epoch.version,
        r.region.epoch.conf_ver,
        leader,
        peers.join(",")
    )
}

async fn lookup(pd: &PdClient, region: &RegionRef) -> Result<Option<RegionInfo>, String> {
    match region {
        RegionRef::Key(key) => pd.get_region(key).await,
        RegionRef::Id(id) => pd.get_region_by_id(*id).await,
    }
    .map_err(|e| format!("pd: {e}"))
}

/// `keel ctl region KEY`.
pub async fn region(pd: &PdClient, key: Vec<u8>) -> Result<(), String> {
    let info = lookup(pd, &RegionRef::Key(key)).await?.ok_or("no region (is the cluster bootstrapped?)")?;
    println!("{}", format_region(&info));
    Ok(())
}

/// Sends the request `make` builds to the region's leader, retrying through leader changes
/// and stale routing until it answers or [`ADMIN_DEADLINE`] passes. Bad input is not retried.
async fn call_leader(
    pd: &PdClient,
    region: RegionRef,
    make: impl Fn(Context) -> StoreRequest,
) -> Result<StoreResponse, String> {
    let start = tokio::time::Instant::now();
    let mut last = String::from("no attempt made");
    while start.elapsed() < ADMIN_DEADLINE {
        match attempt(pd, &region, &make).await {
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(StoreError::Invalid(e))) => return Err(e.0),
            Ok(Err(e)) => last = e.to_string(),
            Err(e) => last = e,
        }
        tokio::time::sleep(ADMIN_RETRY_INTERVAL).await;
    }
    Err(format!("gave up after {ADMIN_DEADLINE:?}: {last}"))
}

async fn attempt(
    pd: &PdClient,
    region: &RegionRef,
    make: &impl Fn(Context) -> StoreRequest,
) -> Result<StoreResult, String> {
    let info = lookup(pd, region).await?.ok_or("no such region")?;
    let leader = info.leader.ok_or("region has no known leader yet")?;
    let store = pd.get_store(leader.store_id).await.map_err(|e| format!("pd: {e}"))?.ok_or("leader's store unknown")?;
    let ctx = Context { region_id: info.region.id, region_epoch: info.region.epoch, peer: Some(leader) };
    let client: RpcClient<StoreRequest, StoreResult> = RpcClient::new(store.address.clone());
    client.call(make(ctx), ADMIN_CALL_TIMEOUT).await.map_err(|e| format!("{}: {e}", store.address))
}

/// `keel ctl split KEY`: splits the region holding KEY so that KEY starts a new region.
pub async fn split(pd: &PdClient, key: Vec<u8>) -> Result<(), String> {
    if key.is_empty() {
        return Err("split key is empty".into());
    }
    let resp =
        call_leader(pd, RegionRef::Key(key.clone()), |ctx| StoreRequest::SplitRegion { ctx, key: key.clone() }).await?;
    let StoreResponse::Split(regions) = resp else { return Err(format!("unexpected answer {resp:?}")) };
    for r in regions {
        println!("{}\t[{:?}, {:?})", r.id, String::from_utf8_lossy(&r.start_key), String::from_utf8_lossy(&r.end_key));
    }
    Ok(())
}

/// `keel ctl transfer-leader REGION STORE`: asks PD for a manual transfer-leader operator
/// and waits until PD sees the new leader. An operator already in flight on the region is
/// waited out (PD refuses a second one until it finishes).
pub async fn transfer_leader(pd: &PdClient, region_id: RegionId, to_store: StoreId) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    let mut last = String::from("no attempt made");
    while start.elapsed() < ADMIN_DEADLINE {
        let info = lookup(pd, &RegionRef::Id(region_id)).await?.ok_or(format!("no region {region_id}"))?;
        if info.leader.is_some_and(|l| l.store_id == to_store) {
            println!("OK: region {region_id} is led by store {to_store}");
            return Ok(());
        }
        match info.region.peer_on_store(to_store) {
            None => return Err(format!("region {region_id} has no peer on store {to_store}")),
            Some(p) if p.role != PeerRole::Voter => {
                return Err(format!("region {region_id}'s peer on store {to_store} is a learner; only voters lead"))
            }
            Some(_) => {}
        }
        if let Err(e) = pd.add_operator(region_id, ManualOperator::TransferLeader { to_store }).await {
            last = format!("pd: {e}");
        }
        tokio::time::sleep(ADMIN_RETRY_INTERVAL * 2).await;
    }
    Err(format!("region {region_id} not led by store {to_store} after {ADMIN_DEADLINE:?}: {last}"))
}

/// `keel ctl remove-store STORE`: marks the store Offline; PD moves its replicas to other
/// stores and then marks it Tombstone (watch with `keel ctl stores`).
pub async fn remove_store(pd: &PdClient, id: StoreId) -> Result<(), String> {
    let mut store = pd.get_store(id).await.map_err(|e| format!("pd: {e}"))?.ok_or(format!("no store {id}"))?;
    match store.state {
        StoreState::Tombstone => println!("store {id} is already tombstone"),
        StoreState::Offline => println!("store {id} is already being removed"),
        StoreState::Up => {
            store.state = StoreState::Offline;
            pd.put_store(store).await.map_err(|e| format!("pd: {e}"))?;
            println!("store {id} is now Offline: PD moves its replicas away, then marks it Tombstone");
        }
    }
    Ok(())
}

/// `keel ctl gc-safepoint [--set TS]`: prints PD's GC safe point, after advancing it to TS
/// if given (it never moves back). Before advancing, it settles every lock of a transaction
/// that started below TS in the whole key space, and refuses while one may still commit:
/// the nodes' GC workers drop the commit records such locks are decided by.
pub async fn gc_safe_point(pd: &PdClient, set: Option<u64>) -> Result<(), String> {
    let ts = match set {
        Some(ts) => {
            let client = TransactionClient::with_raw(RawClient::with_pd(pd.clone()));
            let alive = client.resolve_locks_below(Timestamp(ts), b"", b"").await.map_err(|e| e.to_string())?;
            if alive > 0 {
                return Err(format!(
                    "{alive} transactions that started below {ts} still hold locks and may commit; try again later"
                ));
            }
            pd.update_gc_safe_point(Timestamp(ts)).await
        }
        None => pd.get_gc_safe_point().await,
    }
    .map_err(|e| format!("pd: {e}"))?;
    println!("{ts}");
    Ok(())
}
