//! Dispatch of the store protocol to raft traffic, RawKV and admin commands.

use crate::raw;
use keel_client::PdClient;
use keel_raftstore::cmd::{AdminRequest, CmdBody, CmdResult};
use keel_raftstore::StoreHandle;
use keel_txn::TxnService;
use keel_types::error::InvalidArgument;
use keel_types::proto::store::{Context, StoreError, StoreRequest, StoreResponse, StoreResult};
use keel_types::{Clock, Region, RegionError};
use std::future::Future;
use std::sync::Arc;

/// Answers one store request (and records its latency per method).
///
/// Raft messages are handed to the store loop right here, when the connection's reader
/// calls this for the request, not when the returned future first runs: the reader takes
/// a connection's requests in order, while the futures run as separate tasks in any order,
/// so only this keeps one peer's pipelined raft batches in the order they were sent.
pub fn handle(
    store: StoreHandle,
    pd: PdClient,
    txn: Arc<TxnService>,
    clock: Clock,
    req: StoreRequest,
) -> impl Future<Output = StoreResult> {
    let method = req.method();
    let start = tokio::time::Instant::now();
    let raft_or_other = match req {
        StoreRequest::Raft(msgs) => Ok(store.try_raft(msgs).map(|()| StoreResponse::Ack)),
        other => Err(other),
    };
    async move {
        let result = match raft_or_other {
            Ok(queued) => queued,
            // Boxed: the dispatch future is ~4 KB (the transactional commands' states), and
            // unboxed it made every request's task that large — raft batches, the bulk of
            // the traffic, included — all of it copied on every spawn.
            Err(req) => Box::pin(dispatch(store, pd, txn, clock, req)).await,
        };
        keel_metrics::RPC_DURATION.with_label_values(&[method]).observe(start.elapsed().as_secs_f64());
        if result.is_err() {
            keel_metrics::RPC_ERRORS.with_label_values(&[method]).inc();
        }
        result
    }
}

async fn dispatch(
    store: StoreHandle,
    pd: PdClient,
    txn: Arc<TxnService>,
    clock: Clock,
    req: StoreRequest,
) -> StoreResult {
    match req {
        StoreRequest::Raft(msgs) => store.try_raft(msgs).map(|()| StoreResponse::Ack),
        StoreRequest::Raw { ctx, cmd } => raw::handle(&store, ctx, cmd, clock.now_ms()).await.map(StoreResponse::Raw),
        StoreRequest::SplitRegion { ctx, key } => split(&store, &pd, ctx, key).await,
        StoreRequest::Txn { ctx, cmd } => txn.handle(&store, ctx, cmd, clock.now_ms()).await.map(StoreResponse::Txn),
    }
}

/// A manual split: PD allocates the ids, the split goes through raft.
async fn split(store: &StoreHandle, pd: &PdClient, ctx: Context, key: Vec<u8>) -> StoreResult {
    if key.is_empty() {
        return Err(InvalidArgument("split key is empty".into()).into());
    }
    // A linearizable view tells us the current region (and that we lead it). Like TiKV's,
    // a split checks only the region's version: a membership change since the caller looked
    // (a conf_ver it has not seen yet) does not matter, so retry with the current conf_ver.
    let view = match store.read(ctx.clone()).await {
        Err(StoreError::Region(RegionError::EpochNotMatch { current_regions })) => {
            let same_version = current_regions
                .iter()
                .find(|r| r.id == ctx.region_id && r.epoch.version == ctx.region_epoch.version)
                .map(|r| r.epoch);
            match same_version {
                Some(epoch) => store.read(Context { region_epoch: epoch, ..ctx }).await?,
                None => return Err(RegionError::EpochNotMatch { current_regions }.into()),
            }
        }
        other => other?,
    };
    // Already split there (a retry, or a second `keel ctl split` of the same key): done.
    if view.region.start_key == key {
        return Ok(StoreResponse::Split(vec![view.region]));
    }
    split_region(store, pd, view.region, key).await.map(StoreResponse::Split)
}

/// Splits `region` (as the caller last saw it) at `key`: ids from PD, then the admin command
/// through raft. Returns the regions after the split. Used by manual and automatic splits.
pub async fn split_region(
    store: &StoreHandle,
    pd: &PdClient,
    region: Region,
    key: Vec<u8>,
) -> Result<Vec<Region>, StoreError> {
    let ids = pd.ask_split(region.clone()).await.map_err(|e| StoreError::Unavailable(format!("pd: {e}")))?;
    let body = CmdBody::Admin(AdminRequest::Split {
        split_key: key,
        new_region_id: ids.new_region_id,
        new_peer_ids: ids.new_peer_ids,
    });
    let ctx = Context { region_id: region.id, region_epoch: region.epoch, peer: None };
    match store.propose(ctx, body).await? {
        CmdResult::Split(regions) => Ok(regions),
        other => Err(StoreError::Unavailable(format!("unexpected split result {other:?}"))),
    }
}
