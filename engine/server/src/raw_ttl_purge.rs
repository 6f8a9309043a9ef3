//! The raw TTL purge. An expired RawKV key is absent to every reader, but its value and
//! expiry stay on disk — and count toward its region's split size — until something deletes
//! them. Every interval this task looks, in each region this store leads, for keys expired
//! by the node's clock ([`expired_keys`], over the local data: the leader's is the newest)
//! and proposes their deletion through raft, in bounded batches, so every replica drops them.
//! Each delete is checked again when applied ([`Request::RawDeleteExpired`]): a write that
//! renewed or cleared the key's TTL after the scan keeps the key. (TiKV drops expired raw
//! keys in a RocksDB compaction filter; keel's engine has no such hook, and a raft-proposed
//! delete keeps the replicas identical.)

use keel_raftstore::cmd::{CmdBody, Request};
use keel_raftstore::raw_ttl::{expired_keys, PurgeStep};
use keel_raftstore::{region_bounds, RegionStatus, StoreHandle};
use keel_storage::{CfName, Engine};
use keel_types::proto::store::Context;
use keel_types::{Clock, Region, RegionId};
use std::collections::BTreeMap;
use std::time::Duration;

/// How the purge paces itself.
#[derive(Clone, Copy, Debug)]
pub struct PurgeConfig {
    /// Time between purge rounds.
    pub interval: Duration,
    /// Expiries one round looks at per region; the next round resumes after them.
    pub scan_entries_max: usize,
    /// Keys one purge command deletes (one command per region per round).
    pub keys_max: usize,
}

impl PurgeConfig {
    /// Production pacing: up to ~100 expired keys a second per region, each round one raft
    /// command of at most 1024 deletes (~tens of KiB) per region.
    pub fn production() -> PurgeConfig {
        PurgeConfig { interval: Duration::from_secs(10), scan_entries_max: 16_384, keys_max: 1024 }
    }

    /// The simulator's: frequent rounds and small batches, so resuming mid-region happens.
    pub fn test_min() -> PurgeConfig {
        PurgeConfig { interval: Duration::from_secs(2), scan_entries_max: 64, keys_max: 16 }
    }
}

/// How long a purge proposal may wait to apply before the round moves on (a leader cut off
/// from its followers never commits it; the next round tries again).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs purge rounds forever (the node aborts the task when it stops).
pub async fn run(store: StoreHandle, engine: std::sync::Arc<dyn Engine>, clock: Clock, cfg: PurgeConfig) {
    let mut cursors = BTreeMap::new();
    loop {
        tokio::time::sleep(cfg.interval).await;
        let leading: Vec<Region> =
            store.status().await.into_iter().filter(|s| s.is_leader).map(|s: RegionStatus| s.region).collect();
        cursors.retain(|id: &RegionId, _| leading.iter().any(|r| r.id == *id));
        for region in leading {
            purge_region(&store, &*engine, &clock, &cfg, &region, &mut cursors).await;
        }
    }
}

/// One round in one region: finds up to `keys_max` expired keys from the region's cursor on
/// and proposes their deletion.
async fn purge_region(
    store: &StoreHandle,
    engine: &dyn Engine,
    clock: &Clock,
    cfg: &PurgeConfig,
    region: &Region,
    cursors: &mut BTreeMap<RegionId, Vec<u8>>,
) {
    let (start, end) = region_bounds(CfName::RawTtl, region);
    // A cursor left outside the region (it split or merged since) starts over.
    let from = match cursors.get(&region.id) {
        Some(c) if *c >= start && (end.is_empty() || *c < end) => c.clone(),
        _ => start,
    };
    let now_ms = clock.now_ms();
    let found = expired_keys(&*engine.snapshot(), &from, &end, now_ms, cfg.scan_entries_max, cfg.keys_max);
    let keys = match found {
        Ok(PurgeStep { keys, next }) => {
            match next {
                Some(next) => cursors.insert(region.id, next),
                None => cursors.remove(&region.id),
            };
            keys
        }
        Err(e) => {
            tracing::warn!(region = region.id, %e, "raw ttl purge: scan failed");
            return;
        }
    };
    if keys.is_empty() {
        return;
    }
    let count = keys.len();
    let ctx = Context {
        region_id: region.id,
        region_epoch: region.epoch,
        peer: region.peer_on_store(store.store_id()).copied(),
    };
    let body = CmdBody::Write(keys.into_iter().map(|key| Request::RawDeleteExpired { key, now_ms }).collect());
    match tokio::time::timeout(PROPOSE_TIMEOUT, store.propose(ctx, body)).await {
        Ok(Ok(_)) => tracing::debug!(region = region.id, count, "raw ttl purge: expired keys deleted"),
        Ok(Err(e)) => tracing::debug!(region = region.id, %e, "raw ttl purge: proposal failed"),
        Err(_) => tracing::debug!(region = region.id, "raw ttl purge: proposal timed out"),
    }
}
