//! `Raw*` RPCs → native [`RawCommand`]s. Keys and region boundaries are raw bytes. TTLs
//! are whole seconds in kvproto and milliseconds in keel's protocol.

use super::{region_error_or_status, RawReply, TikvGrpc};
use keel_kvproto::kvrpcpb::*;
use keel_types::proto::store::{RawCommand, RawResponse, StoreError};
use tonic::Status;

fn ttl_ms(ttl_secs: u64) -> u64 {
    ttl_secs.saturating_mul(1000)
}

/// kvproto's remaining TTL in whole seconds, rounded up: a key with time left never reads
/// as 0, which means "no TTL".
fn ttl_secs(ttl_ms: u64) -> u64 {
    ttl_ms.div_ceil(1000)
}

fn unexpected(resp: RawResponse) -> StoreError {
    StoreError::Unavailable(format!("unexpected raw answer {resp:?}"))
}

fn pairs_to_pb(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<KvPair> {
    pairs.into_iter().map(|(key, value)| KvPair { error: None, key, value }).collect()
}

/// A command that answers `Done` on success.
async fn write<R: RawReply>(svc: &TikvGrpc, ctx: Option<Context>, cf: &str, cmd: RawCommand) -> R {
    match svc.raw(ctx, cf, cmd).await {
        Ok(RawResponse::Done) => R::default(),
        Ok(other) => R::failed(unexpected(other)),
        Err(e) => R::failed(e),
    }
}

/// Native scan of one range: kvproto's reverse scans name the upper bound `start_key`.
fn scan_command(start_key: Vec<u8>, end_key: Vec<u8>, limit: u32, reverse: bool, key_only: bool) -> RawCommand {
    let (start_key, end_key) = if reverse { (end_key, start_key) } else { (start_key, end_key) };
    RawCommand::Scan { start_key, end_key, limit, reverse, key_only }
}

async fn scan_pairs(
    svc: &TikvGrpc,
    ctx: Option<Context>,
    cf: &str,
    cmd: RawCommand,
) -> Result<Vec<KvPair>, StoreError> {
    match svc.raw(ctx, cf, cmd).await? {
        RawResponse::Pairs(pairs) => Ok(pairs_to_pb(pairs)),
        other => Err(unexpected(other)),
    }
}

pub(super) async fn get(svc: &TikvGrpc, req: RawGetRequest) -> RawGetResponse {
    match svc.raw(req.context, &req.cf, RawCommand::Get { key: req.key }).await {
        Ok(RawResponse::Value(value)) => {
            RawGetResponse { not_found: value.is_none(), value: value.unwrap_or_default(), ..Default::default() }
        }
        Ok(other) => RawGetResponse::failed(unexpected(other)),
        Err(e) => RawGetResponse::failed(e),
    }
}

pub(super) async fn batch_get(svc: &TikvGrpc, req: RawBatchGetRequest) -> Result<RawBatchGetResponse, Status> {
    match scan_pairs(svc, req.context, &req.cf, RawCommand::BatchGet { keys: req.keys }).await {
        Ok(pairs) => Ok(RawBatchGetResponse { region_error: None, pairs }),
        Err(e) => Ok(RawBatchGetResponse { region_error: region_error_or_status(e, false)?, pairs: vec![] }),
    }
}

pub(super) async fn put(svc: &TikvGrpc, req: RawPutRequest) -> RawPutResponse {
    let cmd = RawCommand::Put { key: req.key, value: req.value, ttl_ms: ttl_ms(req.ttl) };
    write(svc, req.context, &req.cf, cmd).await
}

/// TTLs come per pair (`ttls`, as tikv-client sends them) or, in older clients, as one `ttl`
/// for the whole batch.
pub(super) async fn batch_put(svc: &TikvGrpc, req: RawBatchPutRequest) -> RawBatchPutResponse {
    let ttls_ms = match (req.ttls.is_empty(), req.ttl) {
        (true, 0) => vec![],
        (true, ttl) => vec![ttl_ms(ttl); req.pairs.len()],
        (false, _) => req.ttls.into_iter().map(ttl_ms).collect(),
    };
    let pairs = req.pairs.into_iter().map(|p| (p.key, p.value)).collect();
    write(svc, req.context, &req.cf, RawCommand::BatchPut { pairs, ttls_ms }).await
}

pub(super) async fn delete(svc: &TikvGrpc, req: RawDeleteRequest) -> RawDeleteResponse {
    write(svc, req.context, &req.cf, RawCommand::Delete { key: req.key }).await
}

pub(super) async fn batch_delete(svc: &TikvGrpc, req: RawBatchDeleteRequest) -> RawBatchDeleteResponse {
    write(svc, req.context, &req.cf, RawCommand::BatchDelete { keys: req.keys }).await
}

pub(super) async fn delete_range(svc: &TikvGrpc, req: RawDeleteRangeRequest) -> RawDeleteRangeResponse {
    let cmd = RawCommand::DeleteRange { start_key: req.start_key, end_key: req.end_key };
    write(svc, req.context, &req.cf, cmd).await
}

pub(super) async fn scan(svc: &TikvGrpc, req: RawScanRequest) -> Result<RawScanResponse, Status> {
    if req.limit == 0 {
        return Ok(RawScanResponse::default());
    }
    let cmd = scan_command(req.start_key, req.end_key, req.limit, req.reverse, req.key_only);
    match scan_pairs(svc, req.context, &req.cf, cmd).await {
        Ok(kvs) => Ok(RawScanResponse { region_error: None, kvs }),
        Err(e) => Ok(RawScanResponse { region_error: region_error_or_status(e, false)?, kvs: vec![] }),
    }
}

/// Every range is scanned in the context's region, in request order.
pub(super) async fn batch_scan(svc: &TikvGrpc, req: RawBatchScanRequest) -> Result<RawBatchScanResponse, Status> {
    let mut kvs = Vec::new();
    if req.each_limit == 0 {
        return Ok(RawBatchScanResponse::default());
    }
    for range in req.ranges {
        let cmd = scan_command(range.start_key, range.end_key, req.each_limit, req.reverse, req.key_only);
        match scan_pairs(svc, req.context, &req.cf, cmd).await {
            Ok(pairs) => kvs.extend(pairs),
            Err(e) => return Ok(RawBatchScanResponse { region_error: region_error_or_status(e, false)?, kvs: vec![] }),
        }
    }
    Ok(RawBatchScanResponse { region_error: None, kvs })
}

pub(super) async fn get_key_ttl(svc: &TikvGrpc, req: RawGetKeyTtlRequest) -> RawGetKeyTtlResponse {
    match svc.raw(req.context, &req.cf, RawCommand::GetKeyTtl { key: req.key }).await {
        Ok(RawResponse::Ttl(ttl)) => {
            RawGetKeyTtlResponse { not_found: ttl.is_none(), ttl: ttl.map_or(0, ttl_secs), ..Default::default() }
        }
        Ok(other) => RawGetKeyTtlResponse::failed(unexpected(other)),
        Err(e) => RawGetKeyTtlResponse::failed(e),
    }
}

pub(super) async fn compare_and_swap(svc: &TikvGrpc, req: RawCasRequest) -> RawCasResponse {
    let expected = (!req.previous_not_exist).then_some(req.previous_value);
    let cmd = RawCommand::CompareAndSwap { key: req.key, expected, value: req.value, ttl_ms: ttl_ms(req.ttl) };
    match svc.raw(req.context, &req.cf, cmd).await {
        Ok(RawResponse::Cas { succeeded, previous }) => RawCasResponse {
            succeed: succeeded,
            previous_not_exist: previous.is_none(),
            previous_value: previous.unwrap_or_default(),
            ..Default::default()
        },
        Ok(other) => RawCasResponse::failed(unexpected(other)),
        Err(e) => RawCasResponse::failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_convert_between_seconds_and_milliseconds() {
        assert_eq!(ttl_ms(0), 0);
        assert_eq!(ttl_ms(3), 3000);
        assert_eq!(ttl_ms(u64::MAX), u64::MAX);
        assert_eq!(ttl_secs(0), 0);
        assert_eq!(ttl_secs(1), 1, "time left never reads as \"no TTL\"");
        assert_eq!(ttl_secs(1000), 1);
        assert_eq!(ttl_secs(1001), 2);
    }
}
