//! Transactional actions, one per file. Each reads through an [`MvccReader`] and only
//! collects its writes in an [`MvccTxn`]; none does I/O of its own. Shared building blocks
//! (writing a commit record, rolling a key back) live here.

mod check_secondary_locks;
mod check_txn_status;
mod cleanup;
mod commit;
mod delete_range;
mod gc;
mod get;
mod prewrite;
mod resolve_lock;
mod rollback;
mod scan;
mod scan_lock;
mod txn_heartbeat;

pub use check_secondary_locks::check_secondary_locks;
pub use check_txn_status::{check_txn_status, CheckTxnStatusArgs};
pub use cleanup::cleanup;
pub use commit::commit;
pub use delete_range::delete_range;
pub use gc::{gc, GC_DELETES_MAX};
pub use get::{batch_get, get, BatchRead, ReadResult};
pub use prewrite::{prewrite, PrewriteMode, PrewriteProps, PrewriteResult};
pub use resolve_lock::resolve_lock;
pub use rollback::rollback;
pub use scan::{scan, ScanArgs};
pub use scan_lock::scan_lock;
pub use txn_heartbeat::txn_heartbeat;

use crate::error::Result;
use crate::mvcc::{Lock, LockKind, MvccReader, MvccTxn, Write, WriteKind};
use keel_types::Timestamp;

/// Writes `write` (a commit record of the transaction `write.start_ts`) at `commit_ts`.
/// If another transaction whose start_ts is `commit_ts` left its rollback record at that
/// very storage key, the rollback is kept as `overlapped_rollback` on the commit record.
pub(crate) fn put_commit_record(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    key: &[u8],
    commit_ts: Timestamp,
    mut write: Write,
) -> Result<()> {
    debug_assert!(write.kind != WriteKind::Rollback && commit_ts > write.start_ts);
    if let Some(existing) = reader.get_write(key, commit_ts)? {
        if existing.rolls_back(commit_ts, commit_ts) {
            write.overlapped_rollback = true;
        } else {
            debug_assert_eq!(existing.start_ts, write.start_ts, "two commits of {key:?} at {commit_ts}");
        }
    }
    txn.put_write(key, commit_ts, &write);
    Ok(())
}

/// Records that the transaction `start_ts` is rolled back on `key` (there is no lock of
/// it to remove). If another transaction committed `key` at `commit_ts == start_ts`, the
/// rollback is marked on that commit record instead of replacing it.
pub(crate) fn put_rollback_record(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    key: &[u8],
    start_ts: Timestamp,
) -> Result<()> {
    match reader.get_write(key, start_ts)? {
        None => txn.put_write(key, start_ts, &Write::rollback(start_ts)),
        Some(w) if w.rolls_back(start_ts, start_ts) => {}
        Some(mut w) => {
            debug_assert_ne!(w.start_ts, start_ts, "a transaction never commits at its start_ts");
            w.overlapped_rollback = true;
            txn.put_write(key, start_ts, &w);
        }
    }
    Ok(())
}

/// Rolls back `lock` (which belongs to the transaction being rolled back) on `key`.
pub(crate) fn rollback_lock(txn: &mut MvccTxn, reader: &MvccReader<'_>, key: &[u8], lock: &Lock) -> Result<()> {
    if lock.kind == LockKind::Put && lock.short_value.is_none() {
        txn.delete_value(key, lock.start_ts);
    }
    txn.unlock_key(key);
    put_rollback_record(txn, reader, key, lock.start_ts)
}

/// The commit record a lock turns into.
pub(crate) fn write_of_lock(lock: &Lock) -> Write {
    let kind = match lock.kind {
        LockKind::Put => WriteKind::Put,
        LockKind::Delete => WriteKind::Delete,
        LockKind::Lock => WriteKind::Lock,
    };
    Write::new(kind, lock.start_ts, lock.short_value.clone())
}

#[cfg(test)]
pub(crate) mod test_util {
    //! A tiny in-memory harness for action unit tests: a `SimEngine` the collected
    //! requests are applied to.

    use crate::actions::{commit, prewrite, PrewriteMode, PrewriteProps};
    use crate::mvcc::{MvccReader, MvccTxn};
    use keel_raftstore::cmd::Request;
    use keel_storage::{Engine, SimEngine, Snapshot, WriteBatch, WriteOptions};
    use keel_types::proto::txn::{Mutation, MutationOp};
    use keel_types::Timestamp;

    /// Applies `txn`'s requests to `engine`.
    pub fn apply(engine: &SimEngine, txn: MvccTxn) {
        let mut batch = WriteBatch::new();
        for r in txn.into_requests() {
            match r {
                Request::Put { cf, key, value } => batch.put(cf, &key, &value),
                Request::Delete { cf, key } => batch.delete(cf, &key),
                Request::DeleteRange { cf, start, end } if end.is_empty() => batch.delete_from(cf, &start),
                Request::DeleteRange { cf, start, end } => batch.delete_range(cf, &start, &end),
                other => panic!("actions never emit {other:?}"),
            }
        }
        engine.write(batch, WriteOptions::NO_SYNC).unwrap();
    }

    /// Runs `f` over a fresh snapshot, applies what it collected, returns its result.
    pub fn run<T>(engine: &SimEngine, f: impl FnOnce(&mut MvccTxn, &MvccReader<'_>) -> T) -> T {
        let snap: Box<dyn Snapshot> = engine.snapshot();
        let reader = MvccReader::new(&*snap);
        let mut txn = MvccTxn::new();
        let out = f(&mut txn, &reader);
        apply(engine, txn);
        out
    }

    /// Prewrites `op` of `key` (with `value`) as a one-key 2PC transaction at `start`, its
    /// own primary, asserting no key error; commits it at `commit_at` when given.
    pub fn write_one(
        engine: &SimEngine,
        key: &[u8],
        op: MutationOp,
        value: Vec<u8>,
        start: u64,
        commit_at: Option<u64>,
    ) {
        let p = PrewriteProps {
            primary: key.to_vec(),
            start_ts: Timestamp(start),
            ttl_ms: 1,
            txn_size: 1,
            mode: PrewriteMode::TwoPc { min_commit_ts: Timestamp(start + 1) },
        };
        let m = [Mutation { op, key: key.to_vec(), value }];
        assert!(run(engine, |t, r| prewrite(t, r, &p, &m)).unwrap().errors.is_empty());
        if let Some(c) = commit_at {
            run(engine, |t, r| commit(t, r, key, Timestamp(start), Timestamp(c))).unwrap();
        }
    }
}
