//! CheckTxnStatus: what a reader (or resolver) blocked by a lock asks the transaction's
//! primary. Settles the transaction when its TTL has run out, and pushes a live primary's
//! min_commit_ts above the reader so the reader need not wait for it.

use super::{put_rollback_record, rollback_lock};
use crate::error::Result;
use crate::mvcc::{MvccReader, MvccTxn, TxnCommitRecord};
use keel_types::error::KeyError;
use keel_types::proto::txn::{RollbackReason, TxnStatus};
use keel_types::Timestamp;

/// The arguments of [`check_txn_status`].
#[derive(Clone, Debug)]
pub struct CheckTxnStatusArgs<'a> {
    /// The primary key.
    pub primary: &'a [u8],
    /// The transaction's start timestamp.
    pub lock_ts: Timestamp,
    /// The caller's read timestamp (ZERO / MAX: no push).
    pub caller_start_ts: Timestamp,
    /// The caller's "now" from PD (ZERO: unknown). A push goes up to it too (as TiKV's),
    /// so readers that started before it skip the lock without pushing it again.
    pub current_ts: Timestamp,
    /// Physical time for the TTL check, ms.
    pub now_ms: u64,
    /// Roll back when nothing is found (else `TxnNotFound`).
    pub rollback_if_not_exist: bool,
    /// Treat an async-commit primary lock as a 2PC one.
    pub force_sync_commit: bool,
}

/// Checks (and maybe settles) the transaction `args.lock_ts` from its primary lock.
///
/// - Async-commit primary (unless `force_sync_commit`): reported as is, never rolled
///   back nor pushed — its fate is decided by its secondaries.
/// - TTL expired: rolled back (protected).
/// - Alive: when min_commit_ts is not above `caller_start_ts`, pushed above it and up to
///   `current_ts` (above every other timestamp PD had handed out when the caller asked,
///   so the other readers of that time need no push of their own).
/// - No lock: the commit or rollback record decides; with none, roll back if
///   `rollback_if_not_exist`, else `TxnNotFound`.
pub fn check_txn_status(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    args: &CheckTxnStatusArgs<'_>,
) -> Result<TxnStatus> {
    let primary = args.primary;
    match reader.load_lock(primary)? {
        Some(mut lock) if lock.start_ts == args.lock_ts => {
            if lock.use_async_commit && !args.force_sync_commit {
                return Ok(TxnStatus::Locked { lock: lock.info(primary), min_commit_ts_pushed: false });
            }
            if lock.is_expired(args.now_ms) {
                rollback_lock(txn, reader, primary, &lock)?;
                return Ok(TxnStatus::RolledBack { reason: RollbackReason::TtlExpired });
            }
            let caller = args.caller_start_ts;
            let pushed = caller != Timestamp::ZERO && caller != Timestamp::MAX && lock.min_commit_ts <= caller;
            if pushed {
                lock.min_commit_ts = caller.next().max(args.current_ts);
                txn.put_lock(primary, &lock);
            }
            Ok(TxnStatus::Locked { lock: lock.info(primary), min_commit_ts_pushed: pushed })
        }
        _ => match reader.txn_commit_record(primary, args.lock_ts)? {
            TxnCommitRecord::Committed { commit_ts, .. } => Ok(TxnStatus::Committed { commit_ts }),
            TxnCommitRecord::RolledBack => Ok(TxnStatus::RolledBack { reason: RollbackReason::AlreadyRolledBack }),
            TxnCommitRecord::None if args.rollback_if_not_exist => {
                put_rollback_record(txn, reader, primary, args.lock_ts)?;
                Ok(TxnStatus::RolledBack { reason: RollbackReason::LockNotExist })
            }
            TxnCommitRecord::None => {
                Err(KeyError::TxnNotFound { start_ts: args.lock_ts, primary: primary.to_vec() }.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{commit, get, prewrite, PrewriteMode, PrewriteProps};
    use crate::error::Error;
    use keel_storage::SimEngine;
    use keel_types::proto::txn::{Mutation, MutationOp};

    fn args(
        lock_ts: Timestamp,
        caller: Timestamp,
        now_ms: u64,
        rollback_if_not_exist: bool,
    ) -> CheckTxnStatusArgs<'static> {
        CheckTxnStatusArgs {
            primary: b"p",
            lock_ts,
            caller_start_ts: caller,
            current_ts: Timestamp::ZERO,
            now_ms,
            rollback_if_not_exist,
            force_sync_commit: false,
        }
    }

    fn lock_primary(e: &SimEngine, start: Timestamp, mode: PrewriteMode) {
        let p = PrewriteProps { primary: b"p".to_vec(), start_ts: start, ttl_ms: 100, txn_size: 1, mode };
        let m = [Mutation { op: MutationOp::Put, key: b"p".to_vec(), value: b"v".to_vec() }];
        assert!(run(e, |t, r| prewrite(t, r, &p, &m)).unwrap().errors.is_empty());
    }

    #[test]
    fn pushes_expires_and_reports() {
        let e = SimEngine::new();
        let start = Timestamp::compose(1000, 0);
        lock_primary(&e, start, PrewriteMode::TwoPc { min_commit_ts: start.next() });
        let reader_ts = Timestamp::compose(1010, 0);
        let s = run(&e, |t, r| check_txn_status(t, r, &args(start, reader_ts, 1010, false))).unwrap();
        assert!(
            matches!(s, TxnStatus::Locked { min_commit_ts_pushed: true, ref lock } if lock.min_commit_ts == reader_ts.next())
        );
        // The reader no longer sees the lock; the writer can't commit below the push.
        assert_eq!(run(&e, |_, r| get(r, b"p", reader_ts)).unwrap(), None);
        let err = run(&e, |t, r| commit(t, r, b"p", start, reader_ts)).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::CommitTsExpired { .. })));
        // Expired: rolled back, then reported as such.
        let s = run(&e, |t, r| check_txn_status(t, r, &args(start, Timestamp::ZERO, 1101, false))).unwrap();
        assert_eq!(s, TxnStatus::RolledBack { reason: RollbackReason::TtlExpired });
        let s = run(&e, |t, r| check_txn_status(t, r, &args(start, Timestamp::ZERO, 1101, false))).unwrap();
        assert_eq!(s, TxnStatus::RolledBack { reason: RollbackReason::AlreadyRolledBack });
    }

    #[test]
    fn a_push_covers_every_reader_up_to_current_ts() {
        let e = SimEngine::new();
        let start = Timestamp::compose(1000, 0);
        lock_primary(&e, start, PrewriteMode::TwoPc { min_commit_ts: start.next() });
        let (reader, now) = (Timestamp::compose(1010, 0), Timestamp::compose(1020, 0));
        let pushing = CheckTxnStatusArgs { current_ts: now, ..args(start, reader, 1020, false) };
        let s = run(&e, |t, r| check_txn_status(t, r, &pushing)).unwrap();
        assert!(matches!(s, TxnStatus::Locked { min_commit_ts_pushed: true, ref lock } if lock.min_commit_ts == now));
        // A reader that started before `now` finds the lock above it: nothing to write.
        let later_reader = Timestamp::compose(1015, 0);
        let s = run(&e, |t, r| {
            let status = check_txn_status(t, r, &args(start, later_reader, 1020, false));
            assert!(t.is_empty(), "no push, no write");
            status
        })
        .unwrap();
        assert!(matches!(s, TxnStatus::Locked { min_commit_ts_pushed: false, .. }));
        assert_eq!(run(&e, |_, r| get(r, b"p", Timestamp(now.0 - 1))).unwrap(), None);
    }

    #[test]
    fn missing_lock_and_async_commit() {
        let e = SimEngine::new();
        let t1 = Timestamp::compose(1000, 0);
        let err = run(&e, |t, r| check_txn_status(t, r, &args(t1, Timestamp::ZERO, 1000, false))).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::TxnNotFound { .. })));
        let s = run(&e, |t, r| check_txn_status(t, r, &args(t1, Timestamp::ZERO, 1000, true))).unwrap();
        assert_eq!(s, TxnStatus::RolledBack { reason: RollbackReason::LockNotExist });
        // The late prewrite fails.
        let p = PrewriteProps {
            primary: b"p".to_vec(),
            start_ts: t1,
            ttl_ms: 100,
            txn_size: 1,
            mode: PrewriteMode::TwoPc { min_commit_ts: t1.next() },
        };
        let m = [Mutation { op: MutationOp::Put, key: b"p".to_vec(), value: b"v".to_vec() }];
        assert!(matches!(
            run(&e, |t, r| prewrite(t, r, &p, &m)).unwrap().errors.as_slice(),
            [KeyError::RolledBack { .. }]
        ));

        let t2 = Timestamp::compose(2000, 0);
        lock_primary(&e, t2, PrewriteMode::Async { min_commit_ts: t2.next(), secondaries: vec![] });
        // Expired but async: left alone.
        let s = run(&e, |t, r| check_txn_status(t, r, &args(t2, Timestamp::ZERO, 9999, false))).unwrap();
        assert!(matches!(s, TxnStatus::Locked { min_commit_ts_pushed: false, .. }));
        let forced = CheckTxnStatusArgs { force_sync_commit: true, ..args(t2, Timestamp::ZERO, 9999, false) };
        let s = run(&e, |t, r| check_txn_status(t, r, &forced)).unwrap();
        assert_eq!(s, TxnStatus::RolledBack { reason: RollbackReason::TtlExpired });
        // Committed.
        let t3 = Timestamp::compose(3000, 0);
        lock_primary(&e, t3, PrewriteMode::TwoPc { min_commit_ts: t3.next() });
        run(&e, |t, r| commit(t, r, b"p", t3, t3.next())).unwrap();
        let s = run(&e, |t, r| check_txn_status(t, r, &args(t3, Timestamp::ZERO, 9999, false))).unwrap();
        assert_eq!(s, TxnStatus::Committed { commit_ts: t3.next() });
    }
}
