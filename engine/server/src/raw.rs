//! RawKV commands: validated here, writes proposed through raft (compare-and-swap is
//! evaluated at apply time, so it is atomic), reads served from a ReadIndex view.
//!
//! Time to live: a write with a TTL expires at the node's clock reading when the command
//! arrives plus the TTL; reads judge expiry by the same clock (see [`crate::raw_read`]).

use crate::raw_read;
use keel_raftstore::cmd::{CmdBody, CmdResult, Request, RequestResult};
use keel_raftstore::raw_ttl::{delete_range_requests, expiry_of};
use keel_raftstore::StoreHandle;
use keel_types::error::InvalidArgument;
use keel_types::limits::{BATCH_KEYS_MAX, KEY_SIZE_MAX_BYTES, SCAN_LIMIT_MAX, VALUE_SIZE_MAX_BYTES};
use keel_types::proto::store::{Context, RawCommand, RawResponse, StoreError};
use keel_types::{Region, RegionError};

fn invalid(msg: String) -> StoreError {
    InvalidArgument(msg).into()
}

fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(invalid("key is empty".into()));
    }
    if key.len() > KEY_SIZE_MAX_BYTES {
        return Err(invalid(format!("key of {} bytes exceeds the {KEY_SIZE_MAX_BYTES}-byte limit", key.len())));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > VALUE_SIZE_MAX_BYTES {
        return Err(invalid(format!("value of {} bytes exceeds the {VALUE_SIZE_MAX_BYTES}-byte limit", value.len())));
    }
    Ok(())
}

fn check_batch(len: usize) -> Result<(), StoreError> {
    if len == 0 {
        return Err(invalid("empty batch".into()));
    }
    if len > BATCH_KEYS_MAX {
        return Err(invalid(format!("batch of {len} keys exceeds the {BATCH_KEYS_MAX}-key limit")));
    }
    Ok(())
}

fn check_in_region(region: &Region, key: &[u8]) -> Result<(), StoreError> {
    if region.contains(key) {
        Ok(())
    } else {
        Err(RegionError::KeyNotInRegion {
            key: key.to_vec(),
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        }
        .into())
    }
}

/// Validates and executes one RawKV command at `now_ms` (the node's clock).
pub async fn handle(
    store: &StoreHandle,
    ctx: Context,
    cmd: RawCommand,
    now_ms: u64,
) -> Result<RawResponse, StoreError> {
    match cmd {
        RawCommand::Get { key } => {
            check_key(&key)?;
            let view = store.read(ctx).await?;
            check_in_region(&view.region, &key)?;
            Ok(RawResponse::Value(raw_read::get(&*view.snapshot, &key, now_ms)?))
        }
        RawCommand::GetKeyTtl { key } => {
            check_key(&key)?;
            let view = store.read(ctx).await?;
            check_in_region(&view.region, &key)?;
            Ok(RawResponse::Ttl(raw_read::ttl(&*view.snapshot, &key, now_ms)?))
        }
        RawCommand::BatchGet { keys } => {
            check_batch(keys.len())?;
            keys.iter().try_for_each(|k| check_key(k))?;
            let view = store.read(ctx).await?;
            let mut pairs = Vec::with_capacity(keys.len());
            for key in keys {
                check_in_region(&view.region, &key)?;
                if let Some(v) = raw_read::get(&*view.snapshot, &key, now_ms)? {
                    pairs.push((key, v));
                }
            }
            Ok(RawResponse::Pairs(pairs))
        }
        RawCommand::Scan { start_key, end_key, limit, reverse, key_only } => {
            if limit == 0 || limit as usize > SCAN_LIMIT_MAX {
                return Err(invalid(format!("scan limit {limit} must be 1..={SCAN_LIMIT_MAX}")));
            }
            let view = store.read(ctx).await?;
            let region = &view.region;
            let start = start_key.max(region.start_key.clone());
            let end = match (end_key.is_empty(), region.end_key.is_empty()) {
                (true, _) => region.end_key.clone(),
                (false, true) => end_key,
                (false, false) => end_key.min(region.end_key.clone()),
            };
            if !end.is_empty() && start >= end {
                return Ok(RawResponse::Pairs(vec![]));
            }
            let upper = (!end.is_empty()).then_some(end.as_slice());
            let mut pairs = raw_read::scan(&*view.snapshot, &start, upper, reverse, limit as usize, now_ms)?;
            if key_only {
                pairs.iter_mut().for_each(|(_, v)| v.clear());
            }
            Ok(RawResponse::Pairs(pairs))
        }
        RawCommand::Put { key, value, ttl_ms } => {
            check_key(&key)?;
            check_value(&value)?;
            write(store, ctx, vec![Request::RawPut { key, value, expire_ms: expiry_of(now_ms, ttl_ms) }]).await
        }
        RawCommand::BatchPut { pairs, ttls_ms } => {
            check_batch(pairs.len())?;
            for (k, v) in &pairs {
                check_key(k)?;
                check_value(v)?;
            }
            if !ttls_ms.is_empty() && ttls_ms.len() != pairs.len() {
                return Err(invalid(format!("batch of {} pairs with {} TTLs", pairs.len(), ttls_ms.len())));
            }
            let ttls = ttls_ms.into_iter().chain(std::iter::repeat(0));
            let reqs = pairs
                .into_iter()
                .zip(ttls)
                .map(|((key, value), ttl_ms)| Request::RawPut { key, value, expire_ms: expiry_of(now_ms, ttl_ms) })
                .collect();
            write(store, ctx, reqs).await
        }
        RawCommand::Delete { key } => {
            check_key(&key)?;
            write(store, ctx, vec![Request::RawDelete { key }]).await
        }
        RawCommand::BatchDelete { keys } => {
            check_batch(keys.len())?;
            keys.iter().try_for_each(|k| check_key(k))?;
            write(store, ctx, keys.into_iter().map(|key| Request::RawDelete { key }).collect()).await
        }
        RawCommand::DeleteRange { start_key, end_key } => {
            if !end_key.is_empty() && start_key >= end_key {
                return Err(invalid("delete_range: start must be below end".into()));
            }
            write(store, ctx, delete_range_requests(start_key, end_key).into()).await
        }
        RawCommand::CompareAndSwap { key, expected, value, ttl_ms } => {
            check_key(&key)?;
            check_value(&value)?;
            if let Some(e) = &expected {
                check_value(e)?;
            }
            let cas = Request::RawCompareAndSwap { key, expected, value, expire_ms: expiry_of(now_ms, ttl_ms), now_ms };
            let results = propose(store, ctx, vec![cas]).await?;
            match results.into_iter().next() {
                Some(RequestResult::Cas { succeeded, previous }) => Ok(RawResponse::Cas { succeeded, previous }),
                other => Err(StoreError::Unavailable(format!("unexpected cas result {other:?}"))),
            }
        }
    }
}

async fn propose(store: &StoreHandle, ctx: Context, reqs: Vec<Request>) -> Result<Vec<RequestResult>, StoreError> {
    match store.propose(ctx, CmdBody::Write(reqs)).await? {
        CmdResult::Write(results) => Ok(results),
        other => Err(StoreError::Unavailable(format!("unexpected result {other:?}"))),
    }
}

async fn write(store: &StoreHandle, ctx: Context, reqs: Vec<Request>) -> Result<RawResponse, StoreError> {
    propose(store, ctx, reqs).await.map(|_| RawResponse::Done)
}
