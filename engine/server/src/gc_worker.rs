//! The GC worker: every interval it reads PD's GC safe point, and once the safe point has
//! moved past what a region this store leads was last collected at, it first settles every
//! lock in the region of a transaction that started below the safe point (the client's lock
//! resolution: `CheckTxnStatus` on the primary, then `ResolveLock`), then runs the region's
//! `Gc` command at the safe point through raft, so every replica drops the same versions
//! (per key, all but the newest one at or below the safe point, with the rollback and lock
//! records there). A region with a lock that may still commit is left for the next round.
//! Whoever advances PD's safe point must keep it below every running transaction's start_ts
//! and resolve the key space's older locks first (TiDB's GC leader; the simulator's
//! scenarios; `keel ctl gc-safepoint --set`): this worker repeats that resolution only as a
//! second line for locks written after it.

use keel_client::{PdClient, RawClient, TransactionClient};
use keel_raftstore::StoreHandle;
use keel_txn::TxnService;
use keel_types::proto::store::Context;
use keel_types::proto::txn::{TxnCommand, TxnResponse};
use keel_types::{Clock, Region, RegionId, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the worker looks at PD's safe point.
#[derive(Clone, Copy, Debug)]
pub struct GcConfig {
    /// Time between rounds (one PD call each; GC runs only when the safe point moved).
    pub interval: Duration,
}

impl GcConfig {
    /// Production: TiKV polls PD's safe point every 10 s too; the safe point itself moves
    /// as often as its owner advances it (TiDB: every 10 min).
    pub fn production() -> GcConfig {
        GcConfig { interval: Duration::from_secs(10) }
    }

    /// The simulator's: rounds every 2 s, so GC runs many times under the faults of a run.
    pub fn test_min() -> GcConfig {
        GcConfig { interval: Duration::from_secs(2) }
    }
}

/// How long one `Gc` command may take to apply before the round moves on (a leader cut off
/// from its followers never commits it; the next round tries again).
const GC_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs GC rounds forever (the node aborts the task when it stops).
pub async fn run(store: StoreHandle, txn: Arc<TxnService>, pd: PdClient, clock: Clock, cfg: GcConfig) {
    let client = TransactionClient::with_raw(RawClient::with_pd(pd.clone()));
    // The safe point each led region was last collected at.
    let mut collected: BTreeMap<RegionId, Timestamp> = BTreeMap::new();
    loop {
        tokio::time::sleep(cfg.interval).await;
        let safe_point = match pd.get_gc_safe_point().await {
            Ok(sp) => sp,
            Err(e) => {
                tracing::debug!(%e, "gc: no safe point from pd");
                continue;
            }
        };
        if safe_point == Timestamp::ZERO {
            continue;
        }
        txn.raise_gc_safe_point(safe_point);
        let leading: Vec<Region> = store.status().await.into_iter().filter(|s| s.is_leader).map(|s| s.region).collect();
        collected.retain(|id, _| leading.iter().any(|r| r.id == *id));
        for region in leading {
            if collected.get(&region.id).is_some_and(|done| *done >= safe_point) {
                continue;
            }
            match gc_region(&store, &txn, &client, &clock, &region, safe_point).await {
                Ok(deleted) => {
                    collected.insert(region.id, safe_point);
                    keel_types::trace::count("gc_regions_collected", 1);
                    keel_types::trace::count("gc_deleted", deleted);
                    tracing::debug!(region = region.id, %safe_point, deleted, "gc: region collected");
                }
                Err(e) => tracing::debug!(region = region.id, %safe_point, %e, "gc: region left for the next round"),
            }
        }
    }
}

/// Settles the region's locks below `safe_point`, then collects it; returns the records
/// deleted.
async fn gc_region(
    store: &StoreHandle,
    txn: &TxnService,
    client: &TransactionClient,
    clock: &Clock,
    region: &Region,
    safe_point: Timestamp,
) -> Result<u64, String> {
    let alive = client
        .resolve_locks_below(safe_point, &region.start_key, &region.end_key)
        .await
        .map_err(|e| format!("resolving locks: {e}"))?;
    if alive > 0 {
        return Err(format!("{alive} transactions below the safe point may still commit"));
    }
    let ctx = Context {
        region_id: region.id,
        region_epoch: region.epoch,
        peer: region.peer_on_store(store.store_id()).copied(),
    };
    let mut deleted = 0;
    loop {
        let cmd = TxnCommand::Gc { safe_point };
        match tokio::time::timeout(GC_COMMAND_TIMEOUT, txn.handle(store, ctx.clone(), cmd, clock.now_ms())).await {
            Err(_) => return Err("gc command timed out".into()),
            Ok(Ok(TxnResponse::Gc { deleted: d, more })) => {
                deleted += d;
                if !more {
                    return Ok(deleted);
                }
            }
            Ok(Ok(other)) => return Err(format!("unexpected answer {other:?}")),
            Ok(Err(e)) => return Err(format!("gc: {e}")),
        }
    }
}
