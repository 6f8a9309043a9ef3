//! TiKV's `tikvpb.Tikv` gRPC service in front of a keel storage node: each RPC becomes the
//! native [`StoreRequest`] it means and goes through [`crate::service::handle`], the path the
//! native protocol takes, so nothing here implements storage behaviour. Production build
//! only.
//!
//! Region errors go out in errorpb shape with region boundaries in the encoding the RPC's
//! client expects: raw keys for `Raw*`, memcomparable-encoded keys for `Kv*` (TiKV's
//! transactional clients decode them). RPCs this service does not list answer gRPC
//! `Unimplemented` (tonic's generated router does that).

mod raw;
mod txn;

use keel_client::PdClient;
use keel_kvproto::convert::{context_from_pb, key_error_to_pb, region_error_to_pb, retryable_region_error};
use keel_kvproto::errorpb;
use keel_kvproto::kvrpcpb::{self, *};
use keel_kvproto::tikvpb::tikv_server::{Tikv, TikvServer};
use keel_raftstore::StoreHandle;
use keel_txn::TxnService;
use keel_types::error::InvalidArgument;
use keel_types::proto::store::{RawCommand, RawResponse, StoreError, StoreRequest, StoreResponse};
use keel_types::proto::txn::{TxnCommand, TxnResponse};
use keel_types::Clock;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The adapter: what [`crate::service::handle`] needs.
#[derive(Clone)]
pub(crate) struct TikvGrpc {
    store: StoreHandle,
    pd: PdClient,
    txn: Arc<TxnService>,
    clock: Clock,
}

/// The generated server around the adapter, ready for `serve_grpc`.
pub(crate) fn service(store: StoreHandle, pd: PdClient, txn: Arc<TxnService>, clock: Clock) -> TikvServer<TikvGrpc> {
    TikvServer::new(TikvGrpc { store, pd, txn, clock })
}

fn invalid(msg: impl Into<String>) -> StoreError {
    InvalidArgument(msg.into()).into()
}

fn unexpected(resp: StoreResponse) -> StoreError {
    StoreError::Unavailable(format!("unexpected store answer {resp:?}"))
}

impl TikvGrpc {
    async fn raw(&self, ctx: Option<Context>, cf: &str, cmd: RawCommand) -> Result<RawResponse, StoreError> {
        if !cf.is_empty() && cf != "default" {
            return Err(invalid(format!("column family {cf:?} is not supported: keel's raw API has only \"default\"")));
        }
        let ctx = context_from_pb(ctx).map_err(invalid)?;
        let req = StoreRequest::Raw { ctx, cmd };
        match crate::service::handle(self.store.clone(), self.pd.clone(), self.txn.clone(), self.clock.clone(), req)
            .await?
        {
            StoreResponse::Raw(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, ctx: Option<Context>, cmd: TxnCommand) -> Result<TxnResponse, StoreError> {
        let ctx = context_from_pb(ctx).map_err(invalid)?;
        let req = StoreRequest::Txn { ctx, cmd };
        match crate::service::handle(self.store.clone(), self.pd.clone(), self.txn.clone(), self.clock.clone(), req)
            .await?
        {
            StoreResponse::Txn(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }
}

/// The region error a failure is reported as, if it is one: routing errors, and failures
/// that certainly did not take effect (a message-only region error: clients retry).
fn region_error_of(err: &StoreError, encoded: bool) -> Option<errorpb::Error> {
    match err {
        StoreError::Region(e) => Some(region_error_to_pb(e, encoded)),
        StoreError::Unavailable(msg) => Some(retryable_region_error(format!("store unavailable: {msg}"))),
        _ => None,
    }
}

/// A response that reports failures as `region_error` + a string `error` (the `Raw*` RPCs and
/// `KvDeleteRange`).
trait RawReply: Default {
    fn set_failure(&mut self, region_error: Option<errorpb::Error>, error: String);

    /// The response for a failed `Raw*` call (region boundaries as raw keys).
    fn failed(err: StoreError) -> Self {
        Self::failed_with(err, false)
    }

    /// The response for a failed call, region boundaries memcomparable-`encoded` or not.
    fn failed_with(err: StoreError, encoded: bool) -> Self {
        let mut resp = Self::default();
        match region_error_of(&err, encoded) {
            Some(region_error) => resp.set_failure(Some(region_error), String::new()),
            None => resp.set_failure(None, err.to_string()),
        }
        resp
    }
}

/// A response of a `Kv*` RPC that reports failures as `region_error` + a `KeyError`.
trait KvReply: Default {
    fn set_failure(&mut self, region_error: Option<errorpb::Error>, error: Option<kvrpcpb::KeyError>);

    /// The response for a failed call. Non-transactional failures (bad input, unknown
    /// outcome) become `abort` key errors: the client gives up with that message.
    fn failed(err: StoreError) -> Self {
        let mut resp = Self::default();
        match (region_error_of(&err, true), err) {
            (Some(region_error), _) => resp.set_failure(Some(region_error), None),
            (None, StoreError::Key(e)) => resp.set_failure(None, Some(key_error_to_pb(&e))),
            (None, other) => {
                resp.set_failure(None, Some(kvrpcpb::KeyError { abort: other.to_string(), ..Default::default() }))
            }
        }
        resp
    }
}

macro_rules! replies {
    ($trait:ident, $error:ty: $($resp:ty),* $(,)?) => {$(
        impl $trait for $resp {
            fn set_failure(&mut self, region_error: Option<errorpb::Error>, error: $error) {
                self.region_error = region_error;
                self.error = error;
            }
        }
    )*};
}

replies!(RawReply, String: RawGetResponse, RawPutResponse, RawBatchPutResponse, RawDeleteResponse,
    RawBatchDeleteResponse, RawDeleteRangeResponse, RawGetKeyTtlResponse, RawCasResponse, DeleteRangeResponse);
replies!(KvReply, Option<kvrpcpb::KeyError>: GetResponse, ScanResponse, BatchGetResponse, CommitResponse,
    BatchRollbackResponse, CleanupResponse, CheckTxnStatusResponse, CheckSecondaryLocksResponse,
    ResolveLockResponse, ScanLockResponse, TxnHeartBeatResponse, GcResponse);

/// Failures of RPCs whose response has no error field beyond `region_error` (`RawBatchGet`,
/// `RawScan`, `RawBatchScan`): routing errors in the response, the rest as a gRPC status.
fn region_error_or_status(err: StoreError, encoded: bool) -> Result<Option<errorpb::Error>, Status> {
    match region_error_of(&err, encoded) {
        Some(region_error) => Ok(Some(region_error)),
        None => Err(match err {
            StoreError::Invalid(e) => Status::invalid_argument(e.to_string()),
            other => Status::unknown(other.to_string()),
        }),
    }
}

#[tonic::async_trait]
impl Tikv for TikvGrpc {
    async fn raw_get(&self, r: Request<RawGetRequest>) -> Result<Response<RawGetResponse>, Status> {
        Ok(Response::new(raw::get(self, r.into_inner()).await))
    }
    async fn raw_batch_get(&self, r: Request<RawBatchGetRequest>) -> Result<Response<RawBatchGetResponse>, Status> {
        raw::batch_get(self, r.into_inner()).await.map(Response::new)
    }
    async fn raw_put(&self, r: Request<RawPutRequest>) -> Result<Response<RawPutResponse>, Status> {
        Ok(Response::new(raw::put(self, r.into_inner()).await))
    }
    async fn raw_batch_put(&self, r: Request<RawBatchPutRequest>) -> Result<Response<RawBatchPutResponse>, Status> {
        Ok(Response::new(raw::batch_put(self, r.into_inner()).await))
    }
    async fn raw_delete(&self, r: Request<RawDeleteRequest>) -> Result<Response<RawDeleteResponse>, Status> {
        Ok(Response::new(raw::delete(self, r.into_inner()).await))
    }
    async fn raw_batch_delete(
        &self,
        r: Request<RawBatchDeleteRequest>,
    ) -> Result<Response<RawBatchDeleteResponse>, Status> {
        Ok(Response::new(raw::batch_delete(self, r.into_inner()).await))
    }
    async fn raw_scan(&self, r: Request<RawScanRequest>) -> Result<Response<RawScanResponse>, Status> {
        raw::scan(self, r.into_inner()).await.map(Response::new)
    }
    async fn raw_delete_range(
        &self,
        r: Request<RawDeleteRangeRequest>,
    ) -> Result<Response<RawDeleteRangeResponse>, Status> {
        Ok(Response::new(raw::delete_range(self, r.into_inner()).await))
    }
    async fn raw_batch_scan(&self, r: Request<RawBatchScanRequest>) -> Result<Response<RawBatchScanResponse>, Status> {
        raw::batch_scan(self, r.into_inner()).await.map(Response::new)
    }
    async fn raw_get_key_ttl(&self, r: Request<RawGetKeyTtlRequest>) -> Result<Response<RawGetKeyTtlResponse>, Status> {
        Ok(Response::new(raw::get_key_ttl(self, r.into_inner()).await))
    }
    async fn raw_compare_and_swap(&self, r: Request<RawCasRequest>) -> Result<Response<RawCasResponse>, Status> {
        Ok(Response::new(raw::compare_and_swap(self, r.into_inner()).await))
    }

    async fn kv_get(&self, r: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(txn::get(self, r.into_inner()).await))
    }
    async fn kv_batch_get(&self, r: Request<BatchGetRequest>) -> Result<Response<BatchGetResponse>, Status> {
        Ok(Response::new(txn::batch_get(self, r.into_inner()).await))
    }
    async fn kv_scan(&self, r: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        Ok(Response::new(txn::scan(self, r.into_inner()).await))
    }
    async fn kv_prewrite(&self, r: Request<PrewriteRequest>) -> Result<Response<PrewriteResponse>, Status> {
        Ok(Response::new(txn::prewrite(self, r.into_inner()).await))
    }
    async fn kv_commit(&self, r: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        Ok(Response::new(txn::commit(self, r.into_inner()).await))
    }
    async fn kv_batch_rollback(
        &self,
        r: Request<BatchRollbackRequest>,
    ) -> Result<Response<BatchRollbackResponse>, Status> {
        Ok(Response::new(txn::batch_rollback(self, r.into_inner()).await))
    }
    async fn kv_cleanup(&self, r: Request<CleanupRequest>) -> Result<Response<CleanupResponse>, Status> {
        Ok(Response::new(txn::cleanup(self, r.into_inner()).await))
    }
    async fn kv_check_txn_status(
        &self,
        r: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        Ok(Response::new(txn::check_txn_status(self, r.into_inner()).await))
    }
    async fn kv_check_secondary_locks(
        &self,
        r: Request<CheckSecondaryLocksRequest>,
    ) -> Result<Response<CheckSecondaryLocksResponse>, Status> {
        Ok(Response::new(txn::check_secondary_locks(self, r.into_inner()).await))
    }
    async fn kv_resolve_lock(&self, r: Request<ResolveLockRequest>) -> Result<Response<ResolveLockResponse>, Status> {
        Ok(Response::new(txn::resolve_lock(self, r.into_inner()).await))
    }
    async fn kv_scan_lock(&self, r: Request<ScanLockRequest>) -> Result<Response<ScanLockResponse>, Status> {
        Ok(Response::new(txn::scan_lock(self, r.into_inner()).await))
    }
    async fn kv_txn_heart_beat(
        &self,
        r: Request<TxnHeartBeatRequest>,
    ) -> Result<Response<TxnHeartBeatResponse>, Status> {
        Ok(Response::new(txn::txn_heart_beat(self, r.into_inner()).await))
    }
    async fn kv_gc(&self, r: Request<GcRequest>) -> Result<Response<GcResponse>, Status> {
        Ok(Response::new(txn::gc(self, r.into_inner()).await))
    }
    async fn kv_delete_range(&self, r: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        Ok(Response::new(txn::delete_range(self, r.into_inner()).await))
    }
    async fn kv_pessimistic_lock(
        &self,
        _: Request<PessimisticLockRequest>,
    ) -> Result<Response<PessimisticLockResponse>, Status> {
        Err(Status::unimplemented(txn::PESSIMISTIC_UNSUPPORTED))
    }
    async fn kv_pessimistic_rollback(
        &self,
        _: Request<PessimisticRollbackRequest>,
    ) -> Result<Response<PessimisticRollbackResponse>, Status> {
        Err(Status::unimplemented(txn::PESSIMISTIC_UNSUPPORTED))
    }
}
