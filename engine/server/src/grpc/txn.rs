//! `Kv*` RPCs → native [`TxnCommand`]s. Keys are user keys (as TiKV takes them); region
//! boundaries in errors are memcomparable-encoded (see the module above).

use super::{invalid, KvReply, RawReply, TikvGrpc};
use keel_kvproto::convert::{key_error_to_pb, lock_to_pb};
use keel_kvproto::kvrpcpb::{self, *};
use keel_types::limits::SCAN_LIMIT_MAX;
use keel_types::proto::store::StoreError;
use keel_types::proto::txn::{
    Mutation as NativeMutation, MutationOp, RollbackReason, SecondaryLocksStatus, TxnCommand, TxnResponse, TxnStatus,
};
use keel_types::Timestamp;

/// What `KvPessimisticLock` / `KVPessimisticRollback` and pessimistic prewrites answer.
pub(super) const PESSIMISTIC_UNSUPPORTED: &str =
    "pessimistic transactions are not supported by keel yet: use optimistic transactions";

fn unexpected(resp: TxnResponse) -> StoreError {
    StoreError::Unavailable(format!("unexpected txn answer {resp:?}"))
}

/// Runs a command whose success answer `ok` turns into the response.
async fn run<R: KvReply>(
    svc: &TikvGrpc,
    ctx: Option<Context>,
    cmd: TxnCommand,
    ok: impl FnOnce(TxnResponse) -> Result<R, TxnResponse>,
) -> R {
    match svc.txn(ctx, cmd).await {
        Ok(resp) => ok(resp).unwrap_or_else(|other| R::failed(unexpected(other))),
        Err(e) => R::failed(e),
    }
}

/// Pairs plus the locks that hid keys, the latter as `KvPair`s carrying a `locked` error
/// (how TiKV reports them, so the client resolves them and reads again).
fn pairs_to_pb(pairs: Vec<(Vec<u8>, Vec<u8>)>, locks: Vec<keel_types::error::LockInfo>) -> Vec<KvPair> {
    let locked = locks.into_iter().map(|lock| KvPair {
        error: Some(kvrpcpb::KeyError { locked: Some(lock_to_pb(&lock)), ..Default::default() }),
        key: lock.key,
        value: vec![],
    });
    pairs.into_iter().map(|(key, value)| KvPair { error: None, key, value }).chain(locked).collect()
}

pub(super) async fn get(svc: &TikvGrpc, req: GetRequest) -> GetResponse {
    let cmd = TxnCommand::Get { key: req.key, start_ts: Timestamp(req.version) };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::Value(value) => {
            Ok(GetResponse { not_found: value.is_none(), value: value.unwrap_or_default(), ..Default::default() })
        }
        other => Err(other),
    })
    .await
}

pub(super) async fn batch_get(svc: &TikvGrpc, req: BatchGetRequest) -> BatchGetResponse {
    // keel's kvproto subset carries no `Context.resolved_locks`: the read skips no locks.
    let cmd = TxnCommand::BatchGet { keys: req.keys, start_ts: Timestamp(req.version), resolved_locks: vec![] };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::Pairs { pairs, locks, .. } => {
            Ok(BatchGetResponse { pairs: pairs_to_pb(pairs, locks), ..Default::default() })
        }
        other => Err(other),
    })
    .await
}

pub(super) async fn scan(svc: &TikvGrpc, req: ScanRequest) -> ScanResponse {
    if req.limit == 0 {
        return ScanResponse::default();
    }
    // kvproto's reverse scans name the upper bound `start_key`.
    let (start_key, end_key) = if req.reverse { (req.end_key, req.start_key) } else { (req.start_key, req.end_key) };
    let cmd = TxnCommand::Scan {
        start_key,
        end_key,
        limit: req.limit,
        start_ts: Timestamp(req.version),
        reverse: req.reverse,
        key_only: req.key_only,
    };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::Pairs { pairs, locks, .. } => {
            Ok(ScanResponse { pairs: pairs_to_pb(pairs, locks), ..Default::default() })
        }
        other => Err(other),
    })
    .await
}

fn mutation_from_pb(m: kvrpcpb::Mutation) -> Result<NativeMutation, StoreError> {
    let op = match Op::try_from(m.op) {
        Ok(Op::Put) => MutationOp::Put,
        Ok(Op::Del) => MutationOp::Delete,
        Ok(Op::Lock) => MutationOp::Lock,
        Ok(Op::Insert) => MutationOp::Insert,
        Ok(Op::PessimisticLock) => return Err(invalid(PESSIMISTIC_UNSUPPORTED)),
        Ok(other) => return Err(invalid(format!("mutation op {} is not supported by keel", other.as_str_name()))),
        Err(_) => return Err(invalid(format!("unknown mutation op {}", m.op))),
    };
    Ok(NativeMutation { op, key: m.key, value: m.value })
}

pub(super) async fn prewrite(svc: &TikvGrpc, req: PrewriteRequest) -> PrewriteResponse {
    let failed = |err: StoreError| {
        let (region_error, errors) = match (super::region_error_of(&err, true), err) {
            (Some(region_error), _) => (Some(region_error), vec![]),
            (None, StoreError::Key(e)) => (None, vec![key_error_to_pb(&e)]),
            (None, other) => (None, vec![kvrpcpb::KeyError { abort: other.to_string(), ..Default::default() }]),
        };
        PrewriteResponse { region_error, errors, ..Default::default() }
    };
    if req.for_update_ts != 0 || req.pessimistic_actions.iter().any(|a| *a != 0) {
        return failed(invalid(PESSIMISTIC_UNSUPPORTED));
    }
    let mutations = match req.mutations.into_iter().map(mutation_from_pb).collect::<Result<Vec<_>, _>>() {
        Ok(mutations) => mutations,
        Err(e) => return failed(e),
    };
    let cmd = TxnCommand::Prewrite {
        mutations,
        primary: req.primary_lock,
        start_ts: Timestamp(req.start_version),
        lock_ttl_ms: req.lock_ttl,
        txn_size: req.txn_size,
        min_commit_ts: Timestamp(req.min_commit_ts),
        use_async_commit: req.use_async_commit,
        secondaries: req.secondaries,
        try_one_pc: req.try_one_pc,
        max_commit_ts: Timestamp(req.max_commit_ts),
    };
    match svc.txn(req.context, cmd).await {
        Ok(TxnResponse::Prewrite { errors, min_commit_ts, one_pc_commit_ts }) => PrewriteResponse {
            region_error: None,
            errors: errors.iter().map(key_error_to_pb).collect(),
            min_commit_ts: min_commit_ts.0,
            one_pc_commit_ts: one_pc_commit_ts.0,
        },
        Ok(other) => failed(unexpected(other)),
        Err(e) => failed(e),
    }
}

pub(super) async fn commit(svc: &TikvGrpc, req: CommitRequest) -> CommitResponse {
    let commit_ts = Timestamp(req.commit_version);
    let cmd = TxnCommand::Commit { keys: req.keys, start_ts: Timestamp(req.start_version), commit_ts };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::Done => Ok(CommitResponse { commit_version: commit_ts.0, ..Default::default() }),
        other => Err(other),
    })
    .await
}

pub(super) async fn batch_rollback(svc: &TikvGrpc, req: BatchRollbackRequest) -> BatchRollbackResponse {
    let cmd = TxnCommand::BatchRollback { keys: req.keys, start_ts: Timestamp(req.start_version) };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::Done => Ok(BatchRollbackResponse::default()),
        other => Err(other),
    })
    .await
}

pub(super) async fn cleanup(svc: &TikvGrpc, req: CleanupRequest) -> CleanupResponse {
    let cmd = TxnCommand::Cleanup {
        key: req.key,
        start_ts: Timestamp(req.start_version),
        current_ts: Timestamp(req.current_ts),
    };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::Cleanup(committed) => {
            Ok(CleanupResponse { commit_version: committed.map_or(0, |ts| ts.0), ..Default::default() })
        }
        other => Err(other),
    })
    .await
}

pub(super) async fn check_txn_status(svc: &TikvGrpc, req: CheckTxnStatusRequest) -> CheckTxnStatusResponse {
    let cmd = TxnCommand::CheckTxnStatus {
        primary: req.primary_key,
        lock_ts: Timestamp(req.lock_ts),
        caller_start_ts: Timestamp(req.caller_start_ts),
        current_ts: Timestamp(req.current_ts),
        rollback_if_not_exist: req.rollback_if_not_exist,
        force_sync_commit: req.force_sync_commit,
    };
    run(svc, req.context, cmd, |resp| {
        let TxnResponse::TxnStatus(status) = resp else { return Err(resp) };
        // The client reads: commit_version > 0 committed; else lock_ttl == 0 rolled back;
        // else locked (lock_info).
        Ok(match status {
            TxnStatus::Locked { lock, min_commit_ts_pushed } => CheckTxnStatusResponse {
                lock_ttl: lock.ttl_ms.max(1),
                action: if min_commit_ts_pushed { Action::MinCommitTsPushed } else { Action::NoAction } as i32,
                lock_info: Some(lock_to_pb(&lock)),
                ..Default::default()
            },
            TxnStatus::Committed { commit_ts } => {
                CheckTxnStatusResponse { commit_version: commit_ts.0, ..Default::default() }
            }
            TxnStatus::RolledBack { reason } => {
                let action = match reason {
                    RollbackReason::AlreadyRolledBack => Action::NoAction,
                    RollbackReason::TtlExpired => Action::TtlExpireRollback,
                    RollbackReason::LockNotExist => Action::LockNotExistRollback,
                };
                CheckTxnStatusResponse { action: action as i32, ..Default::default() }
            }
        })
    })
    .await
}

pub(super) async fn check_secondary_locks(
    svc: &TikvGrpc,
    req: CheckSecondaryLocksRequest,
) -> CheckSecondaryLocksResponse {
    let cmd = TxnCommand::CheckSecondaryLocks { keys: req.keys, start_ts: Timestamp(req.start_version) };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::SecondaryLocks(status) => Ok(match status {
            SecondaryLocksStatus::Locked(locks) => {
                CheckSecondaryLocksResponse { locks: locks.iter().map(lock_to_pb).collect(), ..Default::default() }
            }
            SecondaryLocksStatus::Committed(ts) => {
                CheckSecondaryLocksResponse { commit_ts: ts.0, ..Default::default() }
            }
            SecondaryLocksStatus::RolledBack => CheckSecondaryLocksResponse::default(),
        }),
        other => Err(other),
    })
    .await
}

/// One transaction's locks, or (with `txn_infos`) several transactions' locks in the region.
pub(super) async fn resolve_lock(svc: &TikvGrpc, req: ResolveLockRequest) -> ResolveLockResponse {
    let txns: Vec<(u64, u64, Vec<Vec<u8>>)> = if req.txn_infos.is_empty() {
        vec![(req.start_version, req.commit_version, req.keys)]
    } else {
        req.txn_infos.iter().map(|t| (t.txn, t.status, vec![])).collect()
    };
    for (start_ts, commit_ts, keys) in txns {
        let cmd = TxnCommand::ResolveLock { start_ts: Timestamp(start_ts), commit_ts: Timestamp(commit_ts), keys };
        let resp: ResolveLockResponse = run(svc, req.context, cmd, |resp| match resp {
            TxnResponse::Done => Ok(ResolveLockResponse::default()),
            other => Err(other),
        })
        .await;
        if resp.region_error.is_some() || resp.error.is_some() {
            return resp;
        }
    }
    ResolveLockResponse::default()
}

pub(super) async fn scan_lock(svc: &TikvGrpc, req: ScanLockRequest) -> ScanLockResponse {
    let limit = if req.limit == 0 { SCAN_LIMIT_MAX as u32 } else { req.limit };
    let cmd = TxnCommand::ScanLock {
        max_ts: Timestamp(req.max_version),
        start_key: req.start_key,
        end_key: req.end_key,
        limit,
    };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::Locks(locks) => {
            Ok(ScanLockResponse { locks: locks.iter().map(lock_to_pb).collect(), ..Default::default() })
        }
        other => Err(other),
    })
    .await
}

pub(super) async fn txn_heart_beat(svc: &TikvGrpc, req: TxnHeartBeatRequest) -> TxnHeartBeatResponse {
    let cmd = TxnCommand::TxnHeartBeat {
        primary: req.primary_lock,
        start_ts: Timestamp(req.start_version),
        advise_ttl_ms: req.advise_lock_ttl,
    };
    run(svc, req.context, cmd, |resp| match resp {
        TxnResponse::HeartBeat { lock_ttl_ms } => {
            Ok(TxnHeartBeatResponse { lock_ttl: lock_ttl_ms, ..Default::default() })
        }
        other => Err(other),
    })
    .await
}

/// Collects the whole region: the native command stops at a size cap and says `more`.
pub(super) async fn gc(svc: &TikvGrpc, req: GcRequest) -> GcResponse {
    loop {
        let cmd = TxnCommand::Gc { safe_point: Timestamp(req.safe_point) };
        let mut more = false;
        let resp: GcResponse = run(svc, req.context, cmd, |resp| match resp {
            TxnResponse::Gc { more: m, .. } => {
                more = m;
                Ok(GcResponse::default())
            }
            other => Err(other),
        })
        .await;
        if !more || resp.region_error.is_some() || resp.error.is_some() {
            return resp;
        }
    }
}

/// `notify_only` asks TiKV to tell its observers (e.g. TiFlash) of a deletion without deleting
/// anything; keel has no such observers, so there is nothing to do.
pub(super) async fn delete_range(svc: &TikvGrpc, req: DeleteRangeRequest) -> DeleteRangeResponse {
    if req.notify_only {
        return DeleteRangeResponse::default();
    }
    let cmd = TxnCommand::DeleteRange { start_key: req.start_key, end_key: req.end_key };
    match svc.txn(req.context, cmd).await {
        Ok(TxnResponse::Done) => DeleteRangeResponse::default(),
        Ok(other) => DeleteRangeResponse::failed_with(unexpected(other), true),
        Err(e) => DeleteRangeResponse::failed_with(e, true),
    }
}
