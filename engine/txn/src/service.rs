//! The entry point the server calls for every transactional command: validate, serialize on
//! latches, read a linearizable snapshot, run the action, propose its writes through raft
//! as one batch, answer.

use crate::actions::{self, CheckTxnStatusArgs, PrewriteMode, PrewriteProps, ScanArgs};
use crate::concurrency_manager::{ConcurrencyManager, MemoryLockGuard};
use crate::latches::Latches;
use crate::mvcc::{MvccReader, MvccTxn};
use keel_raftstore::cmd::{CmdBody, CmdResult, Request};
use keel_raftstore::StoreHandle;
use keel_storage::Snapshot;
use keel_types::error::{InvalidArgument, KeyError, LockInfo};
use keel_types::limits::{BATCH_KEYS_MAX, KEY_SIZE_MAX_BYTES, SCAN_LIMIT_MAX, VALUE_SIZE_MAX_BYTES};
use keel_types::planted::{enabled, PlantedBug};
use keel_types::proto::store::{Context, StoreError};
use keel_types::proto::txn::{Mutation, MutationOp, TxnCommand, TxnResponse};
use keel_types::{Region, RegionError, Timestamp};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most locks one round of a region-wide `ResolveLock` settles (one raft command each).
pub const RESOLVE_LOCK_BATCH_MAX: usize = 256;

/// Runs transactional commands against a store. One per node (it owns the node's latches
/// and concurrency manager).
pub struct TxnService {
    latches: Latches,
    cm: ConcurrencyManager,
    /// The GC safe point as this node last heard it from PD: versions below it may be gone,
    /// so reads and prewrites of transactions that started below it are refused.
    gc_safe_point: AtomicU64,
}

/// What a command decided, before its writes are proposed.
pub struct Executed {
    /// The writes, to be proposed as one batch (empty: nothing to write).
    pub requests: Vec<Request>,
    /// The answer once the writes are applied.
    pub response: TxnResponse,
    /// In-memory locks (async commit / 1PC) to hold until the writes are applied.
    pub memory_locks: Option<MemoryLockGuard>,
}

impl TxnService {
    /// A service over the node's concurrency manager.
    pub fn new(cm: ConcurrencyManager) -> TxnService {
        TxnService { latches: Latches::default(), cm, gc_safe_point: AtomicU64::new(0) }
    }

    /// The node's concurrency manager (the server syncs its max_ts on leadership changes).
    pub fn concurrency_manager(&self) -> &ConcurrencyManager {
        &self.cm
    }

    /// Raises the GC safe point this node enforces (the GC worker calls it with what PD says,
    /// before it collects anything below it). Never lowers it.
    pub fn raise_gc_safe_point(&self, safe_point: Timestamp) {
        self.gc_safe_point.fetch_max(safe_point.0, Ordering::Relaxed);
    }

    /// Refuses a read or prewrite of a transaction that started below the GC safe point: the
    /// versions it would read may be collected, and so may the rollback record that stops
    /// its late prewrite. (TiKV: "GC safe point exceeded", txn too old.)
    fn check_above_safe_point(&self, cmd: &TxnCommand) -> Result<(), StoreError> {
        let start_ts = match cmd {
            TxnCommand::Get { start_ts, .. }
            | TxnCommand::BatchGet { start_ts, .. }
            | TxnCommand::Scan { start_ts, .. }
            | TxnCommand::Prewrite { start_ts, .. } => *start_ts,
            _ => return Ok(()),
        };
        let safe_point = Timestamp(self.gc_safe_point.load(Ordering::Relaxed));
        if start_ts < safe_point {
            return Err(invalid(format!(
                "start_ts {start_ts} is below the GC safe point {safe_point}: the transaction is too old"
            )));
        }
        Ok(())
    }

    /// Validates and executes one command in the context's region. `current_ts_ms` is the
    /// node's clock, used for TTL checks of commands whose `current_ts` is zero.
    pub async fn handle(
        &self,
        store: &StoreHandle,
        ctx: Context,
        cmd: TxnCommand,
        current_ts_ms: u64,
    ) -> Result<TxnResponse, StoreError> {
        validate(&cmd)?;
        self.check_above_safe_point(&cmd)?;
        if is_read(&cmd) {
            // max_ts is bumped (and in-memory locks checked) before the snapshot is taken.
            if let Some(answer) = self.check_memory_locks(&cmd)? {
                return Ok(answer);
            }
            let view = store.read(ctx).await?;
            return Ok(self.execute(&view.region, &*view.snapshot, &cmd, current_ts_ms)?.response);
        }
        if let TxnCommand::ResolveLock { start_ts, commit_ts, keys } = &cmd {
            if keys.is_empty() {
                return self.resolve_region(store, ctx, *start_ts, *commit_ts, current_ts_ms).await;
            }
        }
        if settles_by_writing_only(&cmd) {
            // Most checks of another transaction's status find it decided, or already pushed
            // above the caller, and write nothing: answer those without queueing on the
            // latches of a hot primary. Only a check that must write (push, roll back) takes
            // the latches and runs again on a fresh snapshot.
            //
            // The answer comes from the leader's applied state without a ReadIndex round
            // (`read_for_write`): every answer of these commands that writes nothing is a
            // fact no later entry can undo, so a view that lags the log (a deposed leader's)
            // still tells the truth. Committed and rolled back are final; a lock whose
            // min_commit_ts is above the caller can only commit above it (min_commit_ts only
            // grows, and a commit below it is refused); "not found" and "alive" only make the
            // caller wait and ask again; an async-commit secondary seen locked was
            // prewritten, which is all the secondaries' verdict needs (a rollback that could
            // undo that verdict must have found one of them unlocked, and that one then
            // never gets locked).
            let view = store.read_for_write(ctx.clone()).await?;
            let executed = self.execute(&view.region, &*view.snapshot, &cmd, current_ts_ms)?;
            if executed.requests.is_empty() {
                return Ok(executed.response);
            }
        }
        let _latches = self.latches.acquire(&latch_keys(&cmd)).await;
        self.execute_and_propose(store, ctx, &cmd, current_ts_ms).await
    }

    async fn execute_and_propose(
        &self,
        store: &StoreHandle,
        ctx: Context,
        cmd: &TxnCommand,
        current_ts_ms: u64,
    ) -> Result<TxnResponse, StoreError> {
        // Computed on the leader's applied state (no ReadIndex round) when it proposes what
        // it computed; an answer that writes nothing comes from a linearizable snapshot.
        let view = store.read_for_write(ctx.clone()).await?;
        let local = self.execute(&view.region, &*view.snapshot, cmd, current_ts_ms);
        drop(view);
        let executed = match local {
            Ok(executed) if !executed.requests.is_empty() => executed,
            // Its answers that write nothing hold on any prefix of the log (see `handle`):
            // a check queued behind another's push needs no ReadIndex round under the latch.
            Ok(executed) if settles_by_writing_only(cmd) => executed,
            other => {
                drop(other);
                let view = store.read(ctx.clone()).await?;
                self.execute(&view.region, &*view.snapshot, cmd, current_ts_ms)?
            }
        };
        let Executed { requests, response, memory_locks } = executed;
        if !requests.is_empty() {
            match store.propose(ctx, CmdBody::Write(requests)).await? {
                CmdResult::Write(_) => {}
                other => return Err(StoreError::Unavailable(format!("unexpected result {other:?}"))),
            }
        }
        drop(memory_locks);
        Ok(response)
    }

    /// Region-wide ResolveLock: find the transaction's locks, latch them, settle them, in
    /// rounds of at most [`RESOLVE_LOCK_BATCH_MAX`].
    async fn resolve_region(
        &self,
        store: &StoreHandle,
        ctx: Context,
        start_ts: Timestamp,
        commit_ts: Timestamp,
        current_ts_ms: u64,
    ) -> Result<TxnResponse, StoreError> {
        loop {
            let keys = {
                let view = store.read(ctx.clone()).await?;
                locks_of_txn(&view.region, &*view.snapshot, start_ts, RESOLVE_LOCK_BATCH_MAX)?
            };
            if keys.is_empty() {
                return Ok(TxnResponse::Done);
            }
            let full = keys.len() >= RESOLVE_LOCK_BATCH_MAX;
            let cmd = TxnCommand::ResolveLock { start_ts, commit_ts, keys };
            let _latches = self.latches.acquire(&latch_keys(&cmd)).await;
            self.execute_and_propose(store, ctx.clone(), &cmd, current_ts_ms).await?;
            if !full {
                return Ok(TxnResponse::Done);
            }
        }
    }

    /// For reads: bumps max_ts to the read's timestamp and checks the in-memory locks of
    /// async-commit / 1PC prewrites in flight. `Some(answer)` when one blocks the read (a
    /// `Get` fails with `Locked`; batch reads answer the locks alone). Must run before the
    /// read's snapshot is taken.
    pub fn check_memory_locks(&self, cmd: &TxnCommand) -> Result<Option<TxnResponse>, StoreError> {
        let ignore = enabled(PlantedBug::ReadIgnoresLock);
        let locks: Vec<LockInfo> = match cmd {
            TxnCommand::Get { key, start_ts } => match self.cm.read_key_check(key, *start_ts) {
                Err(lock) if !ignore => return Err(KeyError::Locked { lock }.into()),
                _ => vec![],
            },
            TxnCommand::BatchGet { keys, start_ts, .. } => {
                keys.iter().filter_map(|k| self.cm.read_key_check(k, *start_ts).err()).collect()
            }
            TxnCommand::Scan { start_key, end_key, start_ts, .. } => {
                self.cm.read_range_check(start_key, end_key, *start_ts)
            }
            _ => vec![],
        };
        if locks.is_empty() || ignore {
            return Ok(None);
        }
        Ok(Some(TxnResponse::Pairs { pairs: vec![], locks, locked_reads: vec![] }))
    }

    /// The synchronous core: runs `cmd` against `snapshot` of `region` and returns the
    /// writes to propose and the answer. [`TxnService::handle`] wraps it with latches, the
    /// linearizable read and the proposal; tests call it directly and apply the writes
    /// themselves. Reads must have passed [`TxnService::check_memory_locks`] first.
    pub fn execute(
        &self,
        region: &Region,
        snapshot: &dyn Snapshot,
        cmd: &TxnCommand,
        current_ts_ms: u64,
    ) -> Result<Executed, StoreError> {
        check_in_region(region, cmd)?;
        let reader = MvccReader::new(snapshot);
        let mut txn = MvccTxn::new();
        let mut memory_locks = None;
        let response = match cmd {
            TxnCommand::Get { key, start_ts } => TxnResponse::Value(actions::get(&reader, key, *start_ts)?),
            TxnCommand::BatchGet { keys, start_ts, resolved_locks } => {
                let read = actions::batch_get(&reader, keys, *start_ts, resolved_locks)?;
                TxnResponse::Pairs { pairs: read.pairs, locks: read.locks, locked_reads: read.locked_reads }
            }
            TxnCommand::Scan { start_key, end_key, limit, start_ts, reverse, key_only } => {
                let (start, end) = clip(region, start_key, end_key);
                if !end.is_empty() && start >= end {
                    TxnResponse::Pairs { pairs: vec![], locks: vec![], locked_reads: vec![] }
                } else {
                    let args = ScanArgs {
                        start: &start,
                        end: &end,
                        ts: *start_ts,
                        limit: *limit as usize,
                        reverse: *reverse,
                        key_only: *key_only,
                    };
                    let (pairs, locks) = actions::scan(&reader, &args)?;
                    TxnResponse::Pairs { pairs, locks, locked_reads: vec![] }
                }
            }
            TxnCommand::Prewrite {
                mutations,
                primary,
                start_ts,
                lock_ttl_ms,
                txn_size,
                min_commit_ts,
                use_async_commit,
                secondaries,
                try_one_pc,
                max_commit_ts,
            } => {
                let base_min_commit_ts = (*min_commit_ts).max(start_ts.next());
                let mut mode = PrewriteMode::TwoPc { min_commit_ts: base_min_commit_ts };
                if *use_async_commit || *try_one_pc {
                    if !self.cm.is_max_ts_synced() {
                        return Err(RegionError::ServerIsBusy {
                            reason: "max_ts not synced yet after a leadership change; retry".into(),
                        }
                        .into());
                    }
                    let mut computed = Timestamp::ZERO;
                    let guard = self.cm.lock_keys(*start_ts, |max_ts| {
                        let above_reads =
                            if enabled(PlantedBug::AsyncCommitNoMaxTs) { Timestamp::ZERO } else { max_ts.next() };
                        computed = above_reads.max(base_min_commit_ts);
                        memory_locks_of(mutations, primary, *start_ts, *lock_ttl_ms, computed, secondaries)
                    });
                    if *max_commit_ts != Timestamp::ZERO && computed > *max_commit_ts {
                        // Too far ahead of the client's bound: fall back to plain 2PC.
                        drop(guard);
                    } else {
                        memory_locks = Some(guard);
                        mode = if *try_one_pc {
                            PrewriteMode::OnePc { commit_ts: computed }
                        } else {
                            PrewriteMode::Async { min_commit_ts: computed, secondaries: secondaries.clone() }
                        };
                    }
                }
                let props = PrewriteProps {
                    primary: primary.clone(),
                    start_ts: *start_ts,
                    ttl_ms: *lock_ttl_ms,
                    txn_size: *txn_size,
                    mode,
                };
                let r = actions::prewrite(&mut txn, &reader, &props, mutations)?;
                if !r.errors.is_empty() || txn.is_empty() {
                    memory_locks = None;
                }
                // min_commit_ts is only meaningful to a client that asked for async commit.
                let min_commit_ts = if *use_async_commit { r.min_commit_ts } else { Timestamp::ZERO };
                TxnResponse::Prewrite { errors: r.errors, min_commit_ts, one_pc_commit_ts: r.one_pc_commit_ts }
            }
            TxnCommand::Commit { keys, start_ts, commit_ts } => {
                for key in dedup(keys) {
                    actions::commit(&mut txn, &reader, key, *start_ts, *commit_ts)?;
                }
                TxnResponse::Done
            }
            TxnCommand::BatchRollback { keys, start_ts } => {
                for key in dedup(keys) {
                    actions::rollback(&mut txn, &reader, key, *start_ts)?;
                }
                TxnResponse::Done
            }
            TxnCommand::Cleanup { key, start_ts, current_ts } => {
                let now_ms = (*current_ts != Timestamp::ZERO).then(|| current_ts.physical_ms());
                TxnResponse::Cleanup(actions::cleanup(&mut txn, &reader, key, *start_ts, now_ms)?)
            }
            TxnCommand::CheckTxnStatus {
                primary,
                lock_ts,
                caller_start_ts,
                current_ts,
                rollback_if_not_exist,
                force_sync_commit,
            } => {
                // The caller reads at caller_start_ts: later async commits must land above it.
                self.cm.update_max_ts(*caller_start_ts);
                let now_ms = if *current_ts == Timestamp::ZERO { current_ts_ms } else { current_ts.physical_ms() };
                let args = CheckTxnStatusArgs {
                    primary,
                    lock_ts: *lock_ts,
                    caller_start_ts: *caller_start_ts,
                    current_ts: *current_ts,
                    now_ms,
                    rollback_if_not_exist: *rollback_if_not_exist,
                    force_sync_commit: *force_sync_commit,
                };
                TxnResponse::TxnStatus(actions::check_txn_status(&mut txn, &reader, &args)?)
            }
            TxnCommand::CheckSecondaryLocks { keys, start_ts } => {
                let keys: Vec<Vec<u8>> = dedup(keys).into_iter().cloned().collect();
                TxnResponse::SecondaryLocks(actions::check_secondary_locks(&mut txn, &reader, &keys, *start_ts)?)
            }
            TxnCommand::ResolveLock { start_ts, commit_ts, keys } => {
                let keys: Vec<Vec<u8>> = if keys.is_empty() {
                    locks_of_txn(region, snapshot, *start_ts, RESOLVE_LOCK_BATCH_MAX)?
                } else {
                    dedup(keys).into_iter().cloned().collect()
                };
                actions::resolve_lock(&mut txn, &reader, &keys, *start_ts, *commit_ts)?;
                keel_metrics::TXN_LOCK_RESOLUTIONS.inc_by(keys.len() as u64);
                TxnResponse::Done
            }
            TxnCommand::TxnHeartBeat { primary, start_ts, advise_ttl_ms } => TxnResponse::HeartBeat {
                lock_ttl_ms: actions::txn_heartbeat(&mut txn, &reader, primary, *start_ts, *advise_ttl_ms)?,
            },
            TxnCommand::ScanLock { max_ts, start_key, end_key, limit } => {
                let (start, end) = clip(region, start_key, end_key);
                if !end.is_empty() && start >= end {
                    TxnResponse::Locks(vec![])
                } else {
                    TxnResponse::Locks(actions::scan_lock(&reader, &start, &end, *max_ts, *limit as usize)?)
                }
            }
            TxnCommand::Gc { safe_point } => {
                let (deleted, more) = actions::gc(&mut txn, &reader, &region.start_key, &region.end_key, *safe_point)?;
                TxnResponse::Gc { deleted, more }
            }
            TxnCommand::DeleteRange { start_key, end_key } => {
                actions::delete_range(&mut txn, start_key, end_key);
                TxnResponse::Done
            }
        };
        Ok(Executed { requests: txn.into_requests(), response, memory_locks })
    }
}

/// Keys of the transaction `start_ts`'s locks in `region`, at most `limit`.
fn locks_of_txn(
    region: &Region,
    snapshot: &dyn Snapshot,
    start_ts: Timestamp,
    limit: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let reader = MvccReader::new(snapshot);
    let locks = reader.scan_locks(&region.start_key, &region.end_key, |l| l.start_ts == start_ts, limit)?;
    Ok(locks.into_iter().map(|(k, _)| k).collect())
}

/// The in-memory locks of an async-commit / 1PC prewrite (lock-only keys never block
/// readers, so they are left out).
fn memory_locks_of(
    mutations: &[Mutation],
    primary: &[u8],
    start_ts: Timestamp,
    ttl_ms: u64,
    min_commit_ts: Timestamp,
    secondaries: &[Vec<u8>],
) -> Vec<LockInfo> {
    mutations
        .iter()
        .filter(|m| m.op != MutationOp::Lock)
        .map(|m| LockInfo {
            key: m.key.clone(),
            primary: primary.to_vec(),
            start_ts,
            ttl_ms,
            min_commit_ts,
            secondaries: if m.key == primary { secondaries.to_vec() } else { vec![] },
            use_async_commit: true,
        })
        .collect()
}

fn dedup(keys: &[Vec<u8>]) -> Vec<&Vec<u8>> {
    let mut seen = BTreeSet::new();
    keys.iter().filter(|k| seen.insert(k.as_slice())).collect()
}

/// `[start, end)` intersected with the region (empty end: unbounded).
fn clip(region: &Region, start: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let start = start.max(region.start_key.as_slice()).to_vec();
    let end = match (end.is_empty(), region.end_key.is_empty()) {
        (true, _) => region.end_key.clone(),
        (false, true) => end.to_vec(),
        (false, false) => end.min(region.end_key.as_slice()).to_vec(),
    };
    (start, end)
}

fn is_read(cmd: &TxnCommand) -> bool {
    matches!(
        cmd,
        TxnCommand::Get { .. } | TxnCommand::BatchGet { .. } | TxnCommand::Scan { .. } | TxnCommand::ScanLock { .. }
    )
}

/// Write commands that only write to settle or push another transaction, so an answer
/// that writes nothing is a pure read of the snapshot it ran on (a decided transaction
/// stays decided; a lock already pushed above the caller needs no push).
fn settles_by_writing_only(cmd: &TxnCommand) -> bool {
    matches!(cmd, TxnCommand::CheckTxnStatus { .. } | TxnCommand::CheckSecondaryLocks { .. })
}

/// The keys a write command latches.
fn latch_keys(cmd: &TxnCommand) -> Vec<Vec<u8>> {
    match cmd {
        TxnCommand::Prewrite { mutations, .. } => mutations.iter().map(|m| m.key.clone()).collect(),
        TxnCommand::Commit { keys, .. }
        | TxnCommand::BatchRollback { keys, .. }
        | TxnCommand::CheckSecondaryLocks { keys, .. }
        | TxnCommand::ResolveLock { keys, .. } => keys.clone(),
        TxnCommand::Cleanup { key, .. } => vec![key.clone()],
        TxnCommand::CheckTxnStatus { primary, .. } | TxnCommand::TxnHeartBeat { primary, .. } => vec![primary.clone()],
        TxnCommand::Get { .. }
        | TxnCommand::BatchGet { .. }
        | TxnCommand::Scan { .. }
        | TxnCommand::ScanLock { .. }
        | TxnCommand::Gc { .. }
        | TxnCommand::DeleteRange { .. } => vec![],
    }
}

/// The user keys a command addresses in its region.
fn addressed_keys(cmd: &TxnCommand) -> Vec<&[u8]> {
    match cmd {
        TxnCommand::Get { key, .. } | TxnCommand::Cleanup { key, .. } => vec![key],
        TxnCommand::CheckTxnStatus { primary, .. } | TxnCommand::TxnHeartBeat { primary, .. } => vec![primary],
        TxnCommand::Prewrite { mutations, .. } => mutations.iter().map(|m| m.key.as_slice()).collect(),
        TxnCommand::BatchGet { keys, .. }
        | TxnCommand::Commit { keys, .. }
        | TxnCommand::BatchRollback { keys, .. }
        | TxnCommand::CheckSecondaryLocks { keys, .. }
        | TxnCommand::ResolveLock { keys, .. } => keys.iter().map(Vec::as_slice).collect(),
        TxnCommand::Scan { .. }
        | TxnCommand::ScanLock { .. }
        | TxnCommand::Gc { .. }
        | TxnCommand::DeleteRange { .. } => vec![],
    }
}

fn check_in_region(region: &Region, cmd: &TxnCommand) -> Result<(), StoreError> {
    for key in addressed_keys(cmd) {
        if !region.contains(key) {
            return Err(RegionError::KeyNotInRegion {
                key: key.to_vec(),
                region_id: region.id,
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
            }
            .into());
        }
    }
    Ok(())
}

fn invalid(msg: String) -> StoreError {
    InvalidArgument(msg).into()
}

fn check_key(what: &str, key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    if key.len() > KEY_SIZE_MAX_BYTES {
        return Err(invalid(format!("{what} of {} bytes exceeds the {KEY_SIZE_MAX_BYTES}-byte limit", key.len())));
    }
    Ok(())
}

fn check_keys(keys: &[Vec<u8>], allow_empty: bool) -> Result<(), StoreError> {
    if keys.is_empty() && !allow_empty {
        return Err(invalid("empty key list".into()));
    }
    if keys.len() > BATCH_KEYS_MAX {
        return Err(invalid(format!("{} keys exceed the {BATCH_KEYS_MAX}-key limit", keys.len())));
    }
    keys.iter().try_for_each(|k| check_key("key", k))
}

fn check_ts(what: &str, ts: Timestamp) -> Result<(), StoreError> {
    if ts == Timestamp::ZERO {
        return Err(invalid(format!("{what} is zero")));
    }
    Ok(())
}

fn check_limit(limit: u32) -> Result<(), StoreError> {
    if limit == 0 || limit as usize > SCAN_LIMIT_MAX {
        return Err(invalid(format!("limit {limit} must be 1..={SCAN_LIMIT_MAX}")));
    }
    Ok(())
}

/// Rejects malformed commands with a clear message (never a panic).
pub fn validate(cmd: &TxnCommand) -> Result<(), StoreError> {
    match cmd {
        TxnCommand::Get { key, start_ts } => {
            check_key("key", key)?;
            check_ts("start_ts", *start_ts)
        }
        TxnCommand::BatchGet { keys, start_ts, .. } => {
            check_keys(keys, false)?;
            check_ts("start_ts", *start_ts)
        }
        TxnCommand::Scan { start_key, end_key, limit, start_ts, .. } => {
            check_limit(*limit)?;
            check_ts("start_ts", *start_ts)?;
            if !end_key.is_empty() && start_key >= end_key {
                return Err(invalid("scan: start_key must be below end_key".into()));
            }
            Ok(())
        }
        TxnCommand::Prewrite { mutations, primary, start_ts, secondaries, .. } => {
            if mutations.is_empty() {
                return Err(invalid("prewrite without mutations".into()));
            }
            if mutations.len() > BATCH_KEYS_MAX {
                return Err(invalid(format!("{} mutations exceed the {BATCH_KEYS_MAX}-key limit", mutations.len())));
            }
            check_key("primary", primary)?;
            check_ts("start_ts", *start_ts)?;
            check_keys(secondaries, true)?;
            let mut seen = BTreeSet::new();
            for m in mutations {
                check_key("mutation key", &m.key)?;
                if !seen.insert(m.key.as_slice()) {
                    return Err(invalid(format!("duplicate mutation key {:?}", m.key)));
                }
                match m.op {
                    MutationOp::Put | MutationOp::Insert if m.value.len() > VALUE_SIZE_MAX_BYTES => {
                        return Err(invalid(format!(
                            "value of {} bytes exceeds the {VALUE_SIZE_MAX_BYTES}-byte limit",
                            m.value.len()
                        )));
                    }
                    MutationOp::Delete | MutationOp::Lock if !m.value.is_empty() => {
                        return Err(invalid(format!("{:?} mutation carries a value", m.op)));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        TxnCommand::Commit { keys, start_ts, commit_ts } => {
            check_keys(keys, false)?;
            check_ts("start_ts", *start_ts)?;
            if commit_ts <= start_ts {
                return Err(invalid(format!("commit_ts {commit_ts} must be above start_ts {start_ts}")));
            }
            Ok(())
        }
        TxnCommand::BatchRollback { keys, start_ts } | TxnCommand::CheckSecondaryLocks { keys, start_ts } => {
            check_keys(keys, false)?;
            check_ts("start_ts", *start_ts)
        }
        TxnCommand::Cleanup { key, start_ts, .. } => {
            check_key("key", key)?;
            check_ts("start_ts", *start_ts)
        }
        TxnCommand::CheckTxnStatus { primary, lock_ts, .. } => {
            check_key("primary", primary)?;
            check_ts("lock_ts", *lock_ts)
        }
        TxnCommand::ResolveLock { start_ts, commit_ts, keys } => {
            check_keys(keys, true)?;
            check_ts("start_ts", *start_ts)?;
            if *commit_ts != Timestamp::ZERO && commit_ts <= start_ts {
                return Err(invalid(format!("commit_ts {commit_ts} must be zero or above start_ts {start_ts}")));
            }
            Ok(())
        }
        TxnCommand::TxnHeartBeat { primary, start_ts, .. } => {
            check_key("primary", primary)?;
            check_ts("start_ts", *start_ts)
        }
        TxnCommand::ScanLock { start_key, end_key, limit, .. } => {
            check_limit(*limit)?;
            if !end_key.is_empty() && start_key >= end_key {
                return Err(invalid("scan_lock: start_key must be below end_key".into()));
            }
            Ok(())
        }
        TxnCommand::Gc { .. } => Ok(()),
        TxnCommand::DeleteRange { start_key, end_key } => {
            if !end_key.is_empty() && start_key >= end_key {
                return Err(invalid("delete_range: start_key must be below end_key".into()));
            }
            Ok(())
        }
    }
}
